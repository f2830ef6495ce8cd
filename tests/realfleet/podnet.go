package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// The pod network as the API server reaches it (a stand-in, named in README):
// an HTTP CONNECT proxy on a Unix socket, which the API server's egress selector
// uses for the "cluster" network as it would Konnectivity's. It makes the bed's
// one step: a pod IP 10.X.Y.Z is served on 127.X.Y.Z. Through it the API
// server's service proxy (`services/NAME:PORT/proxy`) reaches a pod for real.
func servePodNetwork(dir string) (string, error) {
	sock := filepath.Join(dir, "podnet.sock")
	_ = os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		return "", err
	}
	go func() { _ = http.Serve(l, http.HandlerFunc(connect)) }()
	conf := fmt.Sprintf(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %s
`, sock)
	file := filepath.Join(dir, "egress-selector.yaml")
	return file, os.WriteFile(file, []byte(conf), 0o600)
}

func connect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if ip := net.ParseIP(host).To4(); ip != nil && ip[0] == 10 {
		ip[0] = 127
		host = ip.String()
	}
	upstream, err := net.DialTimeout("tcp", net.JoinHostPort(host, port), 5*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		upstream.Close()
		http.Error(w, "no hijacking", http.StatusInternalServerError)
		return
	}
	down, buf, err := hj.Hijack()
	if err != nil {
		upstream.Close()
		return
	}
	_, _ = down.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	go func() {
		// Bytes the client sent after its CONNECT line are already buffered.
		if n := buf.Reader.Buffered(); n > 0 {
			b, _ := buf.Reader.Peek(n)
			_, _ = upstream.Write(b)
		}
		_, _ = io.Copy(upstream, down)
		upstream.Close()
	}()
	_, _ = io.Copy(down, upstream)
	down.Close()
}
