// Command istioctl is Istio's own istioctl, built from the istio.io/istio
// module for meshdeck's tests: `istioctl analyze` judges rendered and applied
// config. A module of its own, since Istio and Kubernetes pin different
// k8s.io versions (DESIGN.md, "Go notes for the test bed").
package main

import (
	"fmt"
	"os"

	_ "k8s.io/client-go/plugin/pkg/client/auth"

	"istio.io/istio/istioctl/cmd"
	"istio.io/istio/pkg/log"
)

func main() {
	if err := cmd.ConfigAndEnvProcessing(); err != nil {
		fmt.Fprintf(os.Stderr, "Could not initialize: %v\n", err)
		os.Exit(cmd.GetExitCode(err))
	}
	root := cmd.GetRootCmd(os.Args[1:])
	log.EnableKlogWithCobra()
	if err := root.Execute(); err != nil {
		os.Exit(cmd.GetExitCode(err))
	}
}
