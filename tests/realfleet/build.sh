#!/usr/bin/env bash
# Build the real test bed into target/realfleet/realfleet. Go's module and build
# caches make a second build take seconds. The version is stamped as the
# Kubernetes release build would, so /version answers v1.37.2.
set -euo pipefail
cd "$(dirname "$0")"
out="$(cd ../.. && pwd)/target/realfleet"
mkdir -p "$out"
kube_version="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
minor="$(echo "$kube_version" | cut -d. -f2)"
pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=2026-01-01T00:00:00Z"
go build -trimpath -ldflags "$ldflags" -o "$out/realfleet" .
# istioctl, from istio.io/istio (a module of its own: Istio pins other k8s.io versions).
(cd istioctl && go build -trimpath -ldflags "-s -w" -o "$out/istioctl" .)
# istio-eds: Istio's endpoint generation as an oracle for what a sidecar gets (same module).
(cd istioctl && go build -trimpath -ldflags "-s -w" -o "$out/istio-eds" ./eds)
# istiod (pilot-discovery) and the data plane of `up --mesh`: proxyless gRPC workloads and callers (same module).
(cd istioctl && go build -trimpath -ldflags "-s -w" -o "$out/istiod" ./istiod)
(cd istioctl && go build -trimpath -ldflags "-s -w" -o "$out/mesh" ./mesh)
