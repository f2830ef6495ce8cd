// Command mesh is one cluster's data plane in the test bed: a process per
// cluster, as a node runs its pods. It plays every seeded workload of the
// cluster as a gRPC server on the pod's address, and a caller (the cluster's
// productpage pod) that is a proxyless gRPC client of that cluster's istiod:
// requests go through `xds:///` targets, so only Istio's and gRPC's code
// decides where each one lands.
//
// Stand-ins, named as such in README:
//   - the pod network: pod IP 10.X.Y.Z is served on 127.X.Y.Z (every Linux
//     loopback address is local), and the caller's dialer makes that one step;
//   - Envoy's stats filter: callers and servers count istio_requests_total and
//     istio_request_duration_milliseconds with Istio's standard labels;
//   - peer metadata exchange: the request names its caller, the reply names the
//     workload that served it.
//
// Control (plain HTTP on --listen):
//
//	GET  /metrics                          Prometheus exposition
//	POST /send?target=HOST:PORT&n=N        N requests from the caller; the counts per workload it reached
//	POST /faults?workload=W&kill=1         stop W's servers (connections refused), as if its pods died
//	POST /faults?workload=W&fail=0.3       W answers 30% of requests with UNAVAILABLE (a 503, which
//	                                       Istio's default retry policy retries)
//	POST /faults?workload=W&fail=0.3&code=internal   ... with INTERNAL (a 500: not retried)
//	DELETE /faults?workload=W              W healthy again
//	GET  /workloads                        the servers and their addresses
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // registers the xds:/// resolver and its balancers
	"google.golang.org/protobuf/types/known/wrapperspb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	istiocluster "istio.io/istio/pkg/cluster"
	"istio.io/istio/pkg/istio-agent/grpcxds"
	"istio.io/istio/pkg/model"
	istionetwork "istio.io/istio/pkg/network"
)

// servedBy marks a pod that a process of the test bed serves on its address
// (the cluster's Prometheus): the node does not play it.
const servedBy = "realfleet.meshdeck.dev/served-by"

// The one method every workload serves: the request names the caller, the
// reply names the workload.
const method = "/meshdeck.testbed.Echo/Call"

type peer struct {
	Workload  string `json:"workload"`
	Namespace string `json:"namespace"`
	Cluster   string `json:"cluster"`
	Version   string `json:"version,omitempty"`
	Pod       string `json:"pod,omitempty"`
}

type workload struct {
	me      peer
	addrs   []string
	servers []*grpc.Server
}

type fault struct {
	kill bool
	fail float64
	code codes.Code
}

type node struct {
	cluster  string
	mu       sync.Mutex
	pods     map[string]*workload // by pod UID
	faults   map[string]fault     // by workload name
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	caller   *caller
}

var labels = []string{"reporter", "source_workload", "source_workload_namespace", "source_cluster",
	"destination_service", "destination_service_namespace", "destination_workload", "destination_workload_namespace",
	"destination_version", "destination_cluster", "response_code", "grpc_response_status", "response_flags"}

func main() {
	cluster := flag.String("cluster", "", "this cluster's name (its CLUSTER_ID)")
	kubeconfig := flag.String("kubeconfig", "", "the cluster's admin kubeconfig")
	xds := flag.String("xds", "", "this cluster's istiod xDS address (plaintext gRPC)")
	listen := flag.String("listen", "127.0.0.1:0", "metrics and control address")
	ready := flag.String("ready-file", "", "written with the control address once the caller's bootstrap is set")
	caller := flag.String("caller", "productpage", "the app label of the pod that sends requests")
	flag.Parse()
	if *cluster == "" || *kubeconfig == "" || *xds == "" {
		fmt.Fprintln(os.Stderr, "mesh: --cluster, --kubeconfig and --xds are required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		fail(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fail(err)
	}
	withBootstrap(ctx, kube, *cluster, *caller, *xds)
	reg := prometheus.NewRegistry()
	n := &node{
		cluster: *cluster,
		pods:    map[string]*workload{},
		faults:  map[string]fault{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "istio_requests_total",
			Help: "Requests, as Envoy's Istio stats filter counts them (test bed stand-in)."}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "istio_request_duration_milliseconds",
			Help:    "Request duration in milliseconds (test bed stand-in for Envoy's stats filter).",
			Buckets: []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000}}, labels),
	}
	reg.MustRegister(n.requests, n.duration)

	factory := informers.NewSharedInformerFactory(kube, 30*time.Second)
	pods := factory.Core().V1().Pods().Informer()
	_, _ = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { n.sync(o) },
		UpdateFunc: func(_, o any) { n.sync(o) },
		DeleteFunc: func(o any) { n.gone(o) },
	})
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("POST /send", n.send)
	mux.HandleFunc("POST /faults", n.setFault)
	mux.HandleFunc("DELETE /faults", n.clearFault)
	mux.HandleFunc("GET /workloads", n.list)
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fail(err)
	}
	go func() { _ = http.Serve(l, mux) }()
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte(l.Addr().String()), 0o600); err != nil {
			fail(err)
		}
	}
	fmt.Printf("mesh %s: control on http://%s\n", *cluster, l.Addr())
	<-ctx.Done()
	n.mu.Lock()
	for _, w := range n.pods {
		for _, s := range w.servers {
			s.Stop()
		}
	}
	n.mu.Unlock()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mesh:", err)
	os.Exit(1)
}

// loopback is the pod network's stand-in: pod IP 10.X.Y.Z is served on 127.X.Y.Z.
func loopback(ip string) string {
	if rest, ok := strings.CutPrefix(ip, "10."); ok {
		return "127." + rest
	}
	return ip
}

// workloadName is the pod's Deployment, as Istio's destination_workload names it.
func workloadName(p *corev1.Pod) string {
	rs := strings.TrimSuffix(p.GenerateName, "-")
	if i := strings.LastIndex(rs, "-"); i > 0 {
		return rs[:i]
	}
	if rs != "" {
		return rs
	}
	return p.Name
}

func (n *node) sync(o any) {
	p, ok := o.(*corev1.Pod)
	if !ok || p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		if ok && p.DeletionTimestamp != nil {
			n.gone(p)
		}
		return
	}
	// A pod a real process of the bed serves itself (its Prometheus) is not played here:
	// both would listen on its address.
	if p.Annotations[servedBy] != "" {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, seen := n.pods[string(p.UID)]; seen {
		return
	}
	me := peer{Workload: workloadName(p), Namespace: p.Namespace, Cluster: n.cluster, Version: p.Labels["version"], Pod: p.Name}
	w := &workload{me: me}
	var ports []int32
	for _, c := range p.Spec.Containers {
		for _, port := range c.Ports {
			ports = append(ports, port.ContainerPort)
		}
	}
	if len(ports) == 0 {
		ports = []int32{9080}
	}
	for _, port := range ports {
		w.addrs = append(w.addrs, net.JoinHostPort(loopback(p.Status.PodIP), strconv.Itoa(int(port))))
	}
	n.pods[string(p.UID)] = w
	if !n.faults[me.Workload].kill {
		n.start(w)
	}
	if n.caller == nil && os.Getenv("MESH_CALLER_POD") == p.Namespace+"/"+p.Name {
		n.caller = &caller{n: n, me: me, conns: map[string]*grpc.ClientConn{}}
	}
}

func (n *node) gone(o any) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		if d, isTomb := o.(cache.DeletedFinalStateUnknown); isTomb {
			p, ok = d.Obj.(*corev1.Pod)
		}
		if !ok {
			return
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if w := n.pods[string(p.UID)]; w != nil {
		n.halt(w)
		delete(n.pods, string(p.UID))
	}
}

// start serves w on each of its addresses (called with n.mu held).
func (n *node) start(w *workload) {
	for _, addr := range w.addrs {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mesh %s: %s on %s: %v\n", n.cluster, w.me.Pod, addr, err)
			continue
		}
		s := grpc.NewServer(grpc.UnknownServiceHandler(n.handler(w)))
		w.servers = append(w.servers, s)
		go func() { _ = s.Serve(l) }()
	}
}

func (n *node) halt(w *workload) {
	for _, s := range w.servers {
		s.Stop()
	}
	w.servers = nil
}

func (n *node) handler(w *workload) grpc.StreamHandler {
	return func(_ any, stream grpc.ServerStream) error {
		started := time.Now()
		in := &wrapperspb.StringValue{}
		if err := stream.RecvMsg(in); err != nil {
			return err
		}
		var from peer
		_ = json.Unmarshal([]byte(in.Value), &from)
		service := ""
		if md, ok := metadata.FromIncomingContext(stream.Context()); ok && len(md[":authority"]) > 0 {
			service, _, _ = strings.Cut(md[":authority"][0], ":")
		}
		n.mu.Lock()
		f := n.faults[w.me.Workload]
		n.mu.Unlock()
		var err error
		out, _ := json.Marshal(w.me)
		if f.fail > 0 && rand.Float64() < f.fail {
			// The workload answered, badly: its reply still names it, as a sidecar's
			// metadata exchange does on a 503 (only a request that reached no one is "unknown").
			stream.SetTrailer(metadata.Pairs(peerTrailer, string(out)))
			err = status.Error(f.code, "fault injected by the test bed")
		} else {
			err = stream.SendMsg(&wrapperspb.StringValue{Value: string(out)})
		}
		n.observe("destination", from, service, w.me, err, "-", time.Since(started))
		return err
	}
}

// peerTrailer carries the answering workload's identity on an error reply.
const peerTrailer = "x-realfleet-peer"

// observe counts one request as Istio's stats filter would on that side.
func (n *node) observe(reporter string, from peer, service string, to peer, err error, flags string, took time.Duration) {
	code, grpcCode := "200", status.Code(err)
	switch grpcCode {
	case codes.OK:
	case codes.DeadlineExceeded:
		code = "504"
	case codes.PermissionDenied, codes.Unauthenticated:
		code = "403"
	case codes.Internal, codes.Unknown:
		code = "500"
	default:
		code = "503"
	}
	unknown := func(s string) string {
		if s == "" {
			return "unknown"
		}
		return s
	}
	svcNS := "unknown"
	if parts := strings.Split(service, "."); len(parts) > 1 {
		svcNS = parts[1]
	}
	values := []string{reporter, unknown(from.Workload), unknown(from.Namespace), unknown(from.Cluster),
		unknown(service), svcNS, unknown(to.Workload), unknown(to.Namespace),
		unknown(to.Version), unknown(to.Cluster), code, strconv.Itoa(int(grpcCode)), flags}
	n.requests.WithLabelValues(values...).Inc()
	n.duration.WithLabelValues(values...).Observe(float64(took.Microseconds()) / 1000)
}

func (n *node) setFault(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("workload")
	f := fault{kill: r.URL.Query().Get("kill") != ""}
	if s := r.URL.Query().Get("fail"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v < 0 || v > 1 {
			http.Error(w, "fail: a fraction from 0 to 1", http.StatusBadRequest)
			return
		}
		f.fail = v
		f.code = codes.Unavailable
		switch r.URL.Query().Get("code") {
		case "", "unavailable":
		case "internal":
			f.code = codes.Internal
		default:
			http.Error(w, "code: unavailable or internal", http.StatusBadRequest)
			return
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.faults[name] = f
	hit := 0
	for _, wl := range n.pods {
		if wl.me.Workload == name {
			hit++
			if f.kill {
				n.halt(wl)
			}
		}
	}
	fmt.Fprintf(w, "%s: %d pods %+v\n", name, hit, f)
}

func (n *node) clearFault(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("workload")
	n.mu.Lock()
	defer n.mu.Unlock()
	was := n.faults[name]
	delete(n.faults, name)
	for _, wl := range n.pods {
		if wl.me.Workload == name && was.kill {
			n.start(wl)
		}
	}
	fmt.Fprintf(w, "%s: healthy\n", name)
}

func (n *node) list(w http.ResponseWriter, _ *http.Request) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []map[string]any
	for _, wl := range n.pods {
		out = append(out, map[string]any{"workload": wl.me.Workload, "pod": wl.me.Pod, "version": wl.me.Version,
			"addresses": wl.addrs, "serving": len(wl.servers) > 0})
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i]["pod"]) < fmt.Sprint(out[j]["pod"]) })
	_ = json.NewEncoder(w).Encode(out)
}

// caller is one pod's proxyless gRPC client: its bootstrap is the one Istio's
// agent writes for proxyless gRPC (grpcxds.GenerateBootstrap).
type caller struct {
	n     *node
	me    peer
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// bootstrap is the xDS bootstrap Istio's agent writes for a proxyless gRPC pod.
func bootstrap(cluster, network string, p *corev1.Pod, xds string) (string, error) {
	meta := &model.BootstrapNodeMetadata{InstanceName: p.Name}
	meta.Generator = "grpc"
	meta.Namespace = p.Namespace
	meta.ClusterID = istiocluster.ID(cluster)
	meta.Labels = p.Labels
	meta.InstanceIPs = []string{p.Status.PodIP}
	meta.IstioVersion = "1.31.0"
	meta.Network = istionetwork.ID(network)
	meta.ServiceAccount = p.Spec.ServiceAccountName
	node := &model.Node{ID: fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", p.Status.PodIP, p.Name, p.Namespace, p.Namespace), Metadata: meta}
	b, err := grpcxds.GenerateBootstrap(grpcxds.GenerateBootstrapOptions{Node: node, DiscoveryAddress: xds})
	if err != nil {
		return "", err
	}
	raw, err := json.Marshal(b)
	return string(raw), err
}

// withBootstrap re-executes this process with the caller pod's bootstrap in
// GRPC_XDS_BOOTSTRAP_CONFIG: gRPC reads it once, when its packages load.
func withBootstrap(ctx context.Context, kube kubernetes.Interface, cluster, app, xds string) {
	if os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG") != "" {
		return
	}
	for {
		pods, err := kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err == nil {
			for i := range pods.Items {
				p := &pods.Items[i]
				if p.Status.PodIP != "" && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
					// The pod's network, as the injector sets ISTIO_META_NETWORK: the system namespace's label.
					network := ""
					if ns, err := kube.CoreV1().Namespaces().Get(ctx, "istio-system", metav1.GetOptions{}); err == nil {
						network = ns.Labels["topology.istio.io/network"]
					}
					raw, err := bootstrap(cluster, network, p, xds)
					if err != nil {
						fail(err)
					}
					exe, err := os.Executable()
					if err != nil {
						fail(err)
					}
					env := append(os.Environ(), "GRPC_XDS_BOOTSTRAP_CONFIG="+raw, "MESH_CALLER_POD="+p.Namespace+"/"+p.Name)
					fail(syscall.Exec(exe, os.Args, env))
				}
			}
		}
		select {
		case <-ctx.Done():
			os.Exit(1)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (c *caller) conn(target string) (*grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cc := c.conns[target]; cc != nil {
		return cc, nil
	}
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", net.JoinHostPort(loopback(host), port))
	}
	cc, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial))
	if err != nil {
		return nil, err
	}
	c.conns[target] = cc
	return cc, nil
}

type sendResult struct {
	Sent     int            `json:"sent"`
	OK       int            `json:"ok"`
	Reached  map[string]int `json:"reached"` // "workload@cluster" → requests it served
	Errors   map[string]int `json:"errors"`  // gRPC code → requests
	Took     float64        `json:"seconds"`
	Last     string         `json:"lastError,omitempty"`
	Endpoint string         `json:"target"`
}

func (n *node) send(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	target := q.Get("target")
	count, err := strconv.Atoi(q.Get("n"))
	if target == "" || err != nil || count < 1 {
		http.Error(w, "target=HOST:PORT and n ≥ 1 are required", http.StatusBadRequest)
		return
	}
	workers := 8
	if s := q.Get("concurrency"); s != "" {
		if v, err := strconv.Atoi(s); err == nil && v > 0 {
			workers = v
		}
	}
	n.mu.Lock()
	c := n.caller
	n.mu.Unlock()
	if c == nil {
		http.Error(w, "no caller pod is running in "+n.cluster, http.StatusServiceUnavailable)
		return
	}
	cc, err := c.conn(target)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// The first request on a target waits for the xDS answer; later ones fail fast, as a client's would.
	cc.Connect()
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	for s := cc.GetState(); s != connectivity.Ready && s != connectivity.TransientFailure; s = cc.GetState() {
		if !cc.WaitForStateChange(ctx, s) {
			break
		}
	}
	cancel()
	res := sendResult{Reached: map[string]int{}, Errors: map[string]int{}, Endpoint: target}
	var mu sync.Mutex
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	started := time.Now()
	from, _ := json.Marshal(c.me)
	service, _, _ := strings.Cut(target, ":")
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
				out := &wrapperspb.StringValue{}
				var trailer metadata.MD
				err := cc.Invoke(ctx, method, &wrapperspb.StringValue{Value: string(from)}, out, grpc.Trailer(&trailer))
				cancel()
				var to peer
				flags := "-"
				if err == nil {
					_ = json.Unmarshal([]byte(out.Value), &to)
				} else if named := trailer.Get(peerTrailer); len(named) > 0 {
					_ = json.Unmarshal([]byte(named[0]), &to)
				} else if status.Code(err) == codes.Unavailable {
					flags = "UF"
				}
				n.observe("source", c.me, service, to, err, flags, time.Since(t0))
				mu.Lock()
				res.Sent++
				if err == nil {
					res.OK++
					res.Reached[to.Workload+"@"+to.Cluster]++
				} else {
					res.Errors[status.Code(err).String()]++
					res.Last = err.Error()
				}
				mu.Unlock()
			}
		}()
	}
	for range count {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	res.Took = time.Since(started).Seconds()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}
