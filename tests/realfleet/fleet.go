package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"sigs.k8s.io/yaml"
)

type options struct {
	clusters   int
	world      string
	crds       string
	stateDir   string
	kubeconfig string
	etcdMode   string
	mesh       bool
}

func parseOptions(name string, args []string) (*options, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	o := &options{}
	fs.IntVar(&o.clusters, "clusters", 3, "number of clusters (cluster1..N)")
	fs.StringVar(&o.world, "world", "", "directory of <cluster>.yaml world files (meshdeck world --out-dir)")
	fs.StringVar(&o.crds, "crds", "", "directories of CRD YAML files to install, separated as in PATH (Istio's, Gateway API's)")
	fs.StringVar(&o.stateDir, "state-dir", defaultStateDir(), "where certificates, etcd data and logs go")
	fs.StringVar(&o.kubeconfig, "kubeconfig-out", "", "where to write the kubeconfig")
	fs.StringVar(&o.etcdMode, "etcd", "shared", "shared: one etcd, a key prefix per cluster; per-cluster: one etcd each")
	fs.BoolVar(&o.mesh, "mesh", false, "also run the data plane: istiod, the workloads and a caller (proxyless gRPC), Prometheus, per cluster")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if name != "down" {
		if o.clusters < 1 || o.world == "" || o.crds == "" || o.kubeconfig == "" {
			return nil, errors.New("--clusters ≥ 1, --world, --crds and --kubeconfig-out are required")
		}
		if o.etcdMode != "shared" && o.etcdMode != "per-cluster" {
			return nil, fmt.Errorf("--etcd %q: want shared or per-cluster", o.etcdMode)
		}
	}
	abs, err := filepath.Abs(o.stateDir)
	if err != nil {
		return nil, err
	}
	o.stateDir = abs
	return o, nil
}

func defaultStateDir() string {
	if d := os.Getenv("REALFLEET_STATE"); d != "" {
		return d
	}
	return filepath.Join("target", "realfleet", "state")
}

func pidFile(stateDir string) string   { return filepath.Join(stateDir, "realfleet.pid") }
func readyFile(stateDir string) string { return filepath.Join(stateDir, "ready.json") }
func logFile(stateDir string) string   { return filepath.Join(stateDir, "realfleet.log") }

// alive: the process exists and is not a zombie (an exited supervisor whose
// parent, often not a reaping init in containers, has not collected it yet).
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) state ...: the state follows the last ')'.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func readPid(stateDir string) int {
	b, err := os.ReadFile(pidFile(stateDir))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// up starts the supervisor in its own session and waits for it to be ready.
func up(args []string) int {
	o, err := parseOptions("up", args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "realfleet up:", err)
		return 2
	}
	if pid := readPid(o.stateDir); alive(pid) {
		fmt.Fprintf(os.Stderr, "realfleet up: already running (pid %d); run realfleet down first\n", pid)
		return 1
	}
	// A crashed run leaves its state behind: start clean.
	if err := os.RemoveAll(o.stateDir); err != nil {
		fmt.Fprintln(os.Stderr, "realfleet up:", err)
		return 1
	}
	if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, "realfleet up:", err)
		return 1
	}
	log, err := os.Create(logFile(o.stateDir))
	if err != nil {
		fmt.Fprintln(os.Stderr, "realfleet up:", err)
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "realfleet up:", err)
		return 1
	}
	cmd := exec.Command(exe, append([]string{"serve"}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "realfleet up:", err)
		return 1
	}
	started := time.Now()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(10 * time.Minute)
	for {
		select {
		case err := <-exited:
			fmt.Fprintf(os.Stderr, "realfleet up: the supervisor exited (%v); its log, %s:\n%s\n", err, logFile(o.stateDir), tail(logFile(o.stateDir), 40))
			return 1
		case <-deadline:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			fmt.Fprintf(os.Stderr, "realfleet up: not ready within 10 minutes; log tail:\n%s\n", tail(logFile(o.stateDir), 40))
			return 1
		case <-time.After(200 * time.Millisecond):
			if b, err := os.ReadFile(readyFile(o.stateDir)); err == nil {
				fmt.Printf("realfleet: %d clusters ready in %.1fs (pid %d); kubeconfig %s\n%s\n", o.clusters, time.Since(started).Seconds(), cmd.Process.Pid, o.kubeconfig, b)
				return 0
			}
		}
	}
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// down stops the supervisor and waits until it and its children are gone.
func down(args []string) int {
	o, err := parseOptions("down", args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "realfleet down:", err)
		return 2
	}
	pid := readPid(o.stateDir)
	if !alive(pid) {
		fmt.Println("realfleet: not running")
		_ = os.Remove(pidFile(o.stateDir))
		return 0
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 300 && alive(pid); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if alive(pid) {
		// The whole session: the supervisor and anything it started.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	fmt.Println("realfleet: stopped")
	return 0
}

// cluster is one running control plane.
type cluster struct {
	// The fake node's kubelet runs under its own context, restarted with the API server.
	kubeletParent context.Context
	stopKubelet   context.CancelFunc
	name          string
	index         int
	dir           string
	port          int
	adminToken    string
	restricted    string
	team          string
	nodelete      string
	pki           *clusterPKI
	apiserver     *exec.Cmd
	apiArgs       []string
	kcm           *exec.Cmd
	// exited is closed when the current API server process has exited.
	exited chan struct{}
	// mesh is the cluster's data plane, when up --mesh started one.
	mesh *clusterMesh
}

func (c *cluster) server() string { return fmt.Sprintf("https://127.0.0.1:%d", c.port) }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startEtcd(dir string) (*embed.Etcd, string, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.LogLevel = "error"
	cfg.Logger = "zap"
	clientPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	peerPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", peerPort))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	// Test data: a small quota, and compaction so watches can see 410 Gone.
	cfg.QuotaBackendBytes = 2 << 30
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "5m"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", errors.New("etcd not ready within 60s")
	}
	return e, cu.String(), nil
}

// spawn starts this binary as a component, logging to dir/<name>.log; it
// dies with the supervisor.
func spawn(dir, name string, args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	log, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, append([]string{name}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd, cmd.Start()
}

func (c *cluster) startAPIServer(etcdURL, prefix string) error {
	tokens := fmt.Sprintf("%s,admin,admin,system:masters\n%s,restricted,restricted,meshdeck:restricted\n%s,team,team,meshdeck:team\n%s,nodelete,nodelete,meshdeck:nodelete\n", c.adminToken, c.restricted, c.team, c.nodelete)
	if err := os.WriteFile(filepath.Join(c.dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	f := func(name string) string { return filepath.Join(c.dir, name) }
	egress, err := servePodNetwork(c.dir)
	if err != nil {
		return fmt.Errorf("pod network: %w", err)
	}
	c.apiArgs = []string{
		"--egress-selector-config-file=" + egress,
		"--etcd-servers=" + etcdURL,
		"--etcd-prefix=" + prefix,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// Endpoints may not hold loopback addresses: nothing reconciles `kubernetes`'s.
		"--endpoint-reconciler-type=none",
		fmt.Sprintf("--secure-port=%d", c.port),
		"--tls-cert-file=" + f("serving.crt"),
		"--tls-private-key-file=" + f("serving.key"),
		"--token-auth-file=" + f("tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + f("sa.pub"),
		"--service-account-signing-key-file=" + f("sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true",
		"--profiling=false",
		"--v=0",
	}
	return c.runAPIServer()
}

// runAPIServer starts (or restarts) the API server with the flags it was first given.
func (c *cluster) runAPIServer() error {
	cmd, err := spawn(c.dir, "kube-apiserver", c.apiArgs...)
	if err != nil {
		return err
	}
	c.apiserver, c.exited = cmd, make(chan struct{})
	exited := c.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	return nil
}

// stopAPIServer stops the API server and waits until it has exited.
func (c *cluster) stopAPIServer() {
	_ = c.apiserver.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(20 * time.Second):
		_ = c.apiserver.Process.Kill()
		<-c.exited
	}
}

// startKubelet (re)starts the fake node's kubelet under parent.
func (c *cluster) startKubelet(parent context.Context) {
	if c.stopKubelet != nil {
		c.stopKubelet()
	}
	ctx, cancel := context.WithCancel(parent)
	c.kubeletParent, c.stopKubelet = parent, cancel
	go runKubelet(ctx, c)
}

func (c *cluster) startControllerManager() error {
	var err error
	c.kcm, err = spawn(c.dir, "kube-controller-manager",
		"--kubeconfig="+filepath.Join(c.dir, "admin.kubeconfig"),
		"--leader-elect=false",
		// No cloud and no real kubelets: the node controllers would taint and evict.
		"--controllers=*,-node-lifecycle-controller,-node-ipam-controller",
		"--service-account-private-key-file="+filepath.Join(c.dir, "sa.key"),
		"--root-ca-file="+filepath.Join(c.dir, "ca.crt"),
		"--secure-port=0",
		"--concurrent-deployment-syncs=10",
		"--concurrent-replicaset-syncs=10",
		"--v=0",
	)
	return err
}

func (c *cluster) waitReady(ctx context.Context) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.pki.CAPEM)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", c.server()+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+c.adminToken)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-c.exited:
			return fmt.Errorf("%s: kube-apiserver exited; see %s", c.name, filepath.Join(c.dir, "kube-apiserver.log"))
		default:
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: kube-apiserver not ready: %v", c.name, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// teamKubeconfig is the sim's `<kubeconfig>.team`: clusterN-team contexts for a
// user whose rights end at the `default` namespace, clusterN-nodelete for one who
// may create and change Istio objects there but not delete them.
func teamKubeconfig(clusters []*cluster) []byte {
	var cs, us, ctxs []map[string]any
	for _, c := range clusters {
		cs = append(cs, map[string]any{"name": c.name, "cluster": map[string]any{"server": c.server(), "certificate-authority-data": c.pki.CAPEM}})
		for _, u := range [][2]string{{"team", c.team}, {"nodelete", c.nodelete}} {
			user, token := u[0], u[1]
			us = append(us, map[string]any{"name": c.name + "-" + user, "user": map[string]any{"token": token}})
			ctxs = append(ctxs, map[string]any{"name": c.name + "-" + user, "context": map[string]any{"cluster": c.name, "user": c.name + "-" + user, "namespace": "default"}})
		}
	}
	doc := map[string]any{"apiVersion": "v1", "kind": "Config", "current-context": clusters[0].name + "-team", "clusters": cs, "users": us, "contexts": ctxs}
	j, _ := json.Marshal(doc)
	return j
}

// kubeconfig in the sim's contract: cluster1..N admin contexts, clusterN-restricted.
func kubeconfig(clusters []*cluster, only *cluster, control string) ([]byte, error) {
	var cs, us, ctxs []map[string]any
	for _, c := range clusters {
		if only != nil && c != only {
			continue
		}
		cs = append(cs, map[string]any{"name": c.name, "cluster": map[string]any{"server": c.server(), "certificate-authority-data": c.pki.CAPEM}})
		us = append(us, map[string]any{"name": c.name + "-admin", "user": map[string]any{"token": c.adminToken}})
		ctxs = append(ctxs, map[string]any{"name": c.name, "context": map[string]any{"cluster": c.name, "user": c.name + "-admin", "namespace": "default"}})
		if only == nil {
			us = append(us, map[string]any{"name": c.name + "-restricted", "user": map[string]any{"token": c.restricted}})
			ctxs = append(ctxs, map[string]any{"name": c.name + "-restricted", "context": map[string]any{"cluster": c.name, "user": c.name + "-restricted", "namespace": "default"}})
		}
	}
	current := clusters[0].name
	if only != nil {
		current = only.name
	}
	doc := map[string]any{
		"apiVersion": "v1", "kind": "Config", "preferences": map[string]any{}, "current-context": current,
		"clusters": cs, "users": us, "contexts": ctxs,
		"extensions": []map[string]any{{"name": "meshdeck.dev/realfleet", "extension": map[string]any{"stateDir": filepath.Dir(clusters[0].dir), "control": control}}},
	}
	// certificate-authority-data is base64 of the PEM: []byte marshals so.
	j, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(j)
}

// serve is the supervisor: etcd in-process, an API server and a controller
// manager per cluster as children, the kubelet of the fake nodes as goroutines.
func serve(args []string) int {
	o, err := parseOptions("serve", args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "realfleet serve:", err)
		return 2
	}
	if err := os.WriteFile(pidFile(o.stateDir), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.Remove(pidFile(o.stateDir))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	started := time.Now()
	clusters, etcds, err := boot(ctx, o)
	defer func() {
		for _, c := range clusters {
			if c.mesh != nil {
				for _, p := range c.mesh.parts {
					p.stop()
				}
			}
		}
		for _, c := range clusters {
			if c.kcm != nil && c.kcm.Process != nil {
				_ = c.kcm.Process.Signal(syscall.SIGTERM)
			}
		}
		for _, c := range clusters {
			if c.kcm != nil && c.kcm.Process != nil {
				waitOrKill(c.kcm, 15*time.Second)
			}
			if c.apiserver != nil {
				c.stopAPIServer()
			}
		}
		for _, e := range etcds {
			e.Close()
		}
	}()
	if err != nil {
		fmt.Fprintln(os.Stderr, "realfleet:", err)
		return 1
	}
	control, err := startControl(clusters, etcds)
	if err != nil {
		fmt.Fprintln(os.Stderr, "realfleet: control endpoint:", err)
		return 1
	}
	ready := map[string]any{"clusters": len(clusters), "seconds": time.Since(started).Seconds(), "etcd": o.etcdMode, "control": control}
	servers := map[string]string{}
	for _, c := range clusters {
		servers[c.name] = c.server()
	}
	ready["servers"] = servers
	if o.mesh {
		ready["mesh"] = meshReady(clusters)
	}
	b, _ := json.Marshal(ready)
	if err := os.WriteFile(readyFile(o.stateDir), b, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kc, err := kubeconfig(clusters, nil, control)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(o.kubeconfig, kc, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(o.kubeconfig+".team", teamKubeconfig(clusters), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("realfleet: ready %s\n", b)
	// Processes are started from this (locked) thread only: see main.
	for {
		select {
		case <-ctx.Done():
			fmt.Println("realfleet: stopping")
			return 0
		case job := <-onMainThread:
			job()
		}
	}
}

// onMainThread runs jobs (restarting an API server) on the supervisor's main
// thread, so a child's parent-death signal stays tied to a thread that lives.
var onMainThread = make(chan func())

func runOnMainThread(job func()) {
	done := make(chan struct{})
	onMainThread <- func() { job(); close(done) }
	<-done
}

func waitOrKill(p *exec.Cmd, grace time.Duration) {
	done := make(chan struct{})
	go func() { _, _ = p.Process.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		_ = p.Process.Kill()
		<-done
	}
}

func boot(ctx context.Context, o *options) ([]*cluster, []*embed.Etcd, error) {
	var clusters []*cluster
	var etcds []*embed.Etcd
	sharedURL := ""
	if o.etcdMode == "shared" {
		e, u, err := startEtcd(filepath.Join(o.stateDir, "etcd"))
		if err != nil {
			return nil, nil, fmt.Errorf("etcd: %w", err)
		}
		etcds, sharedURL = append(etcds, e), u
	}
	for i := 1; i <= o.clusters; i++ {
		c := &cluster{name: fmt.Sprintf("cluster%d", i), index: i, dir: filepath.Join(o.stateDir, fmt.Sprintf("cluster%d", i))}
		if err := os.MkdirAll(c.dir, 0o700); err != nil {
			return clusters, etcds, err
		}
		var err error
		if c.pki, err = newPKI(c.dir, c.name); err != nil {
			return clusters, etcds, err
		}
		if c.port, err = freePort(); err != nil {
			return clusters, etcds, err
		}
		c.adminToken, c.restricted, c.team, c.nodelete = randomToken(), randomToken(), randomToken(), randomToken()
		etcdURL, prefix := sharedURL, "/"+c.name+"/registry"
		if o.etcdMode == "per-cluster" {
			e, u, err := startEtcd(filepath.Join(c.dir, "etcd"))
			if err != nil {
				return clusters, etcds, fmt.Errorf("%s etcd: %w", c.name, err)
			}
			etcds, etcdURL, prefix = append(etcds, e), u, "/registry"
		}
		if err := c.startAPIServer(etcdURL, prefix); err != nil {
			return clusters, etcds, err
		}
		clusters = append(clusters, c)
	}
	readyCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for _, c := range clusters {
		if err := c.waitReady(readyCtx); err != nil {
			return clusters, etcds, err
		}
		kc, err := kubeconfig(clusters, c, "")
		if err != nil {
			return clusters, etcds, err
		}
		if err := os.WriteFile(filepath.Join(c.dir, "admin.kubeconfig"), kc, 0o600); err != nil {
			return clusters, etcds, err
		}
	}
	// Seed every cluster in parallel: RBAC, CRDs (Established), node, world.
	errs := make([]error, len(clusters))
	var wg sync.WaitGroup
	for i, c := range clusters {
		wg.Add(1)
		go func(i int, c *cluster) {
			defer wg.Done()
			errs[i] = seed(readyCtx, c, o)
		}(i, c)
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return clusters, etcds, err
	}
	for _, c := range clusters {
		if err := c.startControllerManager(); err != nil {
			return clusters, etcds, err
		}
		c.startKubelet(ctx)
	}
	// Ready means the world is running: every Deployment's pods are ready.
	for _, c := range clusters {
		if err := waitWorldRunning(readyCtx, c); err != nil {
			return clusters, etcds, err
		}
	}
	if o.mesh {
		meshStarted := time.Now()
		if err := startMesh(readyCtx, clusters); err != nil {
			return clusters, etcds, fmt.Errorf("mesh: %w", err)
		}
		fmt.Printf("realfleet: mesh ready in %.1fs\n", time.Since(meshStarted).Seconds())
	}
	return clusters, etcds, nil
}
