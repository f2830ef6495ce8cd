package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
)

// startControl serves the test bed's own hooks on 127.0.0.1 (plain HTTP, like
// the sim's admin endpoint): what tests do to a real cluster on a bad day.
//
//	POST /clusters/<name>/apiserver/stop    stop its kube-apiserver (connections refused)
//	POST /clusters/<name>/apiserver/start   start it again on the same port (and restart its controller manager); returns once ready
//	POST /clusters/<name>/<part>/stop|start  part: istiod, node (the workloads and the caller) or prometheus (up --mesh)
//	GET  /mesh                              each cluster's data plane: istiod, xDS, node, Prometheus addresses
//	POST /compact                           compact etcd at its current revision (watches resuming from before get 410)
//	GET  /                                  the clusters and whether each API server runs
func startControl(clusters []*cluster, etcds []*embed.Etcd) (string, error) {
	byName := map[string]*cluster{}
	for _, c := range clusters {
		byName[c.name] = c
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		out := map[string]any{}
		for _, c := range clusters {
			running := true
			select {
			case <-c.exited:
				running = false
			default:
			}
			out[c.name] = map[string]any{"server": c.server(), "apiserverRunning": running}
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("POST /clusters/{name}/apiserver/{action}", func(w http.ResponseWriter, r *http.Request) {
		c := byName[r.PathValue("name")]
		if c == nil {
			http.Error(w, "no such cluster", http.StatusNotFound)
			return
		}
		switch r.PathValue("action") {
		case "stop":
			c.stopAPIServer()
			fmt.Fprintf(w, "%s: kube-apiserver stopped\n", c.name)
		case "start":
			var err error
			restarted := false
			runOnMainThread(func() {
				select {
				case <-c.exited:
					err, restarted = c.runAPIServer(), true
				default:
				}
			})
			if err == nil {
				ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
				defer cancel()
				err = c.waitReady(ctx)
			}
			// The controller manager (and the fake kubelet) restart with the API server, as static pods on a
			// rebooted control-plane node do: after a restart across an etcd compaction
			// its informers can stay behind what it wrote ("read version ... is not as
			// new as written version") and stop reconciling.
			if err == nil && restarted {
				_ = c.kcm.Process.Signal(syscall.SIGTERM)
				waitOrKill(c.kcm, 15*time.Second)
				runOnMainThread(func() { err = c.startControllerManager() })
				c.startKubelet(c.kubeletParent)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			fmt.Fprintf(w, "%s: kube-apiserver ready\n", c.name)
		default:
			http.Error(w, "stop or start", http.StatusNotFound)
		}
	})
	mux.HandleFunc("POST /clusters/{name}/{part}/{action}", func(w http.ResponseWriter, r *http.Request) {
		c := byName[r.PathValue("name")]
		if c == nil {
			http.Error(w, "no such cluster", http.StatusNotFound)
			return
		}
		out, err := meshAction(r.Context(), c, r.PathValue("part"), r.PathValue("action"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, out)
	})
	mux.HandleFunc("GET /mesh", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(meshReady(clusters))
	})
	mux.HandleFunc("POST /compact", func(w http.ResponseWriter, r *http.Request) {
		var done []string
		for _, e := range etcds {
			client := v3client.New(e.Server)
			resp, err := client.Get(r.Context(), "compact-probe")
			if err == nil {
				_, err = client.Compact(r.Context(), resp.Header.Revision)
			}
			if err != nil && !strings.Contains(err.Error(), "already been compacted") {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			done = append(done, fmt.Sprint(resp.Header.Revision))
		}
		fmt.Fprintf(w, "compacted at revision %s\n", strings.Join(done, ", "))
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = http.Serve(l, mux) }()
	return "http://" + l.Addr().String(), nil
}
