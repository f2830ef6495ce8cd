// Command istiod is Istio's own control plane (pilot-discovery), built from the
// same istio.io/istio module as istioctl: the test bed runs one per cluster,
// reading that cluster's real API server, and proxyless gRPC workloads take
// their routes from it over xDS.
package main

import (
	"os"

	"istio.io/istio/pilot/cmd/pilot-discovery/app"
	"istio.io/istio/pkg/log"
)

func main() {
	log.EnableKlogWithCobra()
	if err := app.NewRootCommand().Execute(); err != nil {
		log.Error(err)
		os.Exit(1)
	}
}
