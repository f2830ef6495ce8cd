#!/usr/bin/env bash
# The integration tests on real Kubernetes control planes: builds the test bed
# and meshdeck, writes the sim's world, starts 3 real clusters, runs every test
# that runs on both fleets plus the real-only ones, then the mesh pass (a data
# plane on the shared-discovery world: tests/data_plane.rs, tests/canary.rs), and stops the clusters.
# Needs the machine's Go and Rust toolchains, Debian's prometheus (installed here
# when missing), and kubectl, tmux as the sim run.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
crds="${MESHDECK_ISTIO_CRDS:-$(cd .. && pwd)/shared/istio/crds}"
state="$root/target/realfleet/state"
started=$(date +%s)
command -v prometheus >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null)
command -v prometheus >/dev/null || { echo "prometheus could not be installed: the mesh pass cannot run" >&2; exit 1; }
bash tests/realfleet/build.sh
echo "realfleet: built in $(( $(date +%s) - started ))s"
# Gateway API's standard CRDs (with their CEL rules) from the module Istio builds against.
gateway_api="$(cd tests/realfleet/istioctl && go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)/config/crd/standard"
[ -d "$gateway_api" ] || { echo "Gateway API CRDs not found at $gateway_api" >&2; exit 1; }
crds="$crds:$gateway_api"
cargo build --quiet
target/debug/meshdeck world --clusters 3 --out-dir target/realfleet/world
# A fleet left running by hand is replaced: every run starts from the seeded world.
target/realfleet/realfleet down --state-dir "$state" >/dev/null
trap 'target/realfleet/realfleet down --state-dir "$state"' EXIT
target/realfleet/realfleet up --clusters 3 --world target/realfleet/world --crds "$crds" \
  --state-dir "$state" --kubeconfig-out target/realfleet/kubeconfig
# The test binaries whose tests run on both fleets; `sim_only` tests drive the sim's fault hooks.
export MESHDECK_TEST_FLEET=real MESHDECK_TEST_KUBECONFIG="$root/target/realfleet/kubeconfig"
set +e
cargo test --no-fail-fast --test dry_run --test apply_pipeline --test cli_apply --test inventory_live --test tui_e2e \
  --test real_fleet --test differential --test istio_analyze --test python_client \
  --test cluster_aliases --test completion --test apply_safety --test rollback_fleet --test route_owner --test cli_manners \
  --test outage --test secrets --test istio_runtime --test cli_analyze --test cli_routes --test trust --test transport --test bad_day --test pipeline_persona \
  --test cli_traffic --test gateway_api -- --skip sim_only 2>&1 | tee target/realfleet/test.log
status=${PIPESTATUS[0]}
set -e
# The mesh pass: the shared-discovery world (multi-primary, one network) with the
# data plane: istiod, proxyless gRPC workloads and callers, a Prometheus per cluster.
target/realfleet/realfleet down --state-dir "$state" >/dev/null
target/debug/meshdeck world --clusters 3 --topology shared --out-dir target/realfleet/world-shared
mesh_started=$(date +%s)
target/realfleet/realfleet up --mesh --clusters 3 --world target/realfleet/world-shared --crds "$crds" \
  --state-dir "$state" --kubeconfig-out target/realfleet/mesh.kubeconfig
echo "realfleet: mesh fleet up in $(( $(date +%s) - mesh_started ))s"
# Memory of each cluster's mesh, as the closing notes report it.
for pid in $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["mesh"]; [print(c+"/"+n+"="+str(p)) for c in sorted(d) for n,p in sorted(d[c]["pids"].items())]' "$state/ready.json"); do
  echo "realfleet: RSS ${pid%%=*}: $(awk '/VmRSS/ {print $2 " kB"}' /proc/${pid##*=}/status 2>/dev/null)"
done
set +e
MESHDECK_TEST_MESH_KUBECONFIG="$root/target/realfleet/mesh.kubeconfig" cargo test --no-fail-fast --test data_plane --test canary -- --skip sim_only 2>&1 | tee -a target/realfleet/test.log
mesh_status=${PIPESTATUS[0]}
set -e
[ "$status" -ne 0 ] || status=$mesh_status
awk '/^test result:/ { p += $4; f += $6 } END { printf "realfleet: %d passed, %d failed\n", p, f }' target/realfleet/test.log
exit "$status"
