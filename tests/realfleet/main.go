// Command realfleet runs N real Kubernetes control planes on 127.0.0.1 for
// meshdeck's tests: kube-apiserver and kube-controller-manager from
// k8s.io/kubernetes, etcd embedded from go.etcd.io/etcd/server/v3, Istio's
// CRDs with their CEL rules, fake nodes whose kubelet is played here, and the
// same world as `meshdeck sim` (written by `meshdeck world`). It writes the
// same kubeconfig contract as the sim: contexts cluster1..N (admin) and
// clusterN-restricted.
//
//	realfleet up --clusters 3 --world DIR --crds DIR --kubeconfig-out PATH [--state-dir DIR]
//	realfleet down [--state-dir DIR]
//
// `up` starts a supervisor in the background and returns once every cluster
// is seeded; `down` stops it and every process it started. The API servers and
// controller managers are this same binary re-executed (`realfleet
// kube-apiserver ...`), each dying with the supervisor (PR_SET_PDEATHSIG).
package main

import (
	"fmt"
	"os"
	"runtime"

	"k8s.io/component-base/cli"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	// The parent-death signal of a child is tied to the thread that started
	// it: children are started from main's goroutine, locked to its thread.
	runtime.LockOSThread()
	if len(os.Args) < 2 {
		usage()
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "up":
		os.Exit(up(args))
	case "serve":
		os.Exit(serve(args))
	case "down":
		os.Exit(down(args))
	case "kube-apiserver":
		cmd := apiserver.NewAPIServerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	case "kube-controller-manager":
		cmd := controllermanager.NewControllerManagerCommand()
		cmd.SetArgs(args)
		os.Exit(cli.Run(cmd))
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage:
  realfleet up --clusters N --world DIR --crds DIR --kubeconfig-out PATH [--state-dir DIR] [--etcd shared|per-cluster] [--mesh]
  realfleet down [--state-dir DIR]`)
	os.Exit(2)
}
