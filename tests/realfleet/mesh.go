package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// The data plane of `up --mesh`, per cluster: Istio's own istiod reading the
// cluster's API server (and, through remote secrets, the others'), the
// cluster's node process (tests/realfleet/istioctl/mesh: its workloads and its
// proxyless gRPC caller) and a real Prometheus scraping that node.
type meshPart struct {
	name    string
	bin     string
	args    []string
	env     []string
	cmd     *exec.Cmd
	exited  chan struct{}
	ready   string // an HTTP URL that answers 200 once the part is ready
	logName string
}

type clusterMesh struct {
	istiodHTTP, xds, monitoring string
	prometheus                  string
	node                        string
	parts                       map[string]*meshPart
}

// meshBin finds a test bed binary built beside realfleet (build.sh), or on PATH.
func meshBin(name string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	if p := filepath.Join(filepath.Dir(exe), name); fileExists(p) {
		return p, nil
	}
	return exec.LookPath(name)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// startMesh starts every cluster's istiod, node and Prometheus, and waits for them.
func startMesh(ctx context.Context, clusters []*cluster) error {
	istiod, err := meshBin("istiod")
	if err != nil {
		return fmt.Errorf("istiod not built (tests/realfleet/build.sh): %w", err)
	}
	node, err := meshBin("mesh")
	if err != nil {
		return fmt.Errorf("mesh not built (tests/realfleet/build.sh): %w", err)
	}
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		return fmt.Errorf("prometheus not found (Debian's prometheus package; .ci/run installs it): %w", err)
	}
	for _, c := range clusters {
		if err := realRemoteSecrets(ctx, c, clusters); err != nil {
			return fmt.Errorf("%s remote secrets: %w", c.name, err)
		}
	}
	for _, c := range clusters {
		m := &clusterMesh{parts: map[string]*meshPart{}}
		c.mesh = m
		ports := make([]int, 5)
		for i := range ports {
			if ports[i], err = freePort(); err != nil {
				return err
			}
		}
		addr := func(p int) string { return fmt.Sprintf("127.0.0.1:%d", p) }
		// Prometheus runs as a pod behind Service monitoring/prometheus, on its pod address.
		promAddr, err := prometheusPod(ctx, c)
		if err != nil {
			return fmt.Errorf("%s prometheus pod: %w", c.name, err)
		}
		m.istiodHTTP, m.xds, m.monitoring = "http://"+addr(ports[0]), addr(ports[1]), "http://"+addr(ports[2])
		m.node, m.prometheus = "http://"+addr(ports[3]), "http://"+promAddr
		kc := filepath.Join(c.dir, "admin.kubeconfig")
		meshFile := filepath.Join(c.dir, "mesh-config-absent") // istiod then reads the `istio` ConfigMap, as in a cluster
		m.parts["istiod"] = &meshPart{
			name: "istiod", bin: istiod, logName: "istiod",
			args: []string{"discovery", "--kubeconfig", kc, "--clusterID", c.name, "--meshConfig", meshFile,
				"--networksConfig", meshFile, "--httpAddr", addr(ports[0]), "--grpcAddr", m.xds, "--secureGRPCAddr", "",
				"--httpsAddr", "", "--monitoringAddr", addr(ports[2]), "--log_output_level", "default:warn,ads:info",
				"--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"},
			env: []string{"POD_NAMESPACE=istio-system", "POD_NAME=istiod-" + c.name, "REVISION=default",
				"CLUSTER_ID=" + c.name, "ENABLE_CA_SERVER=false", "PILOT_ENABLE_ANALYSIS=false",
				"INJECT_ENABLED=false", "ISTIOD_CUSTOM_HOST=istiod." + c.name,
				// Gateway API's mesh routes (HTTPRoute on a Service) become its routes; it deploys no gateways.
				"PILOT_ENABLE_GATEWAY_API=true", "PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER=false",
				"PILOT_REMOTE_CLUSTER_TIMEOUT=30s", "PILOT_DEBOUNCE_AFTER=50ms", "PILOT_DEBOUNCE_MAX=1s",
				"VALIDATION_WEBHOOK_CONFIG_NAME=", "INJECTION_WEBHOOK_CONFIG_NAME=", "PILOT_ENABLE_CONFIG_DISTRIBUTION_TRACKING=false"},
			ready: m.istiodHTTP + "/ready",
		}
		m.parts["node"] = &meshPart{
			name: "node", bin: node, logName: "mesh",
			args:  []string{"--cluster", c.name, "--kubeconfig", kc, "--xds", m.xds, "--listen", addr(ports[3])},
			ready: m.node + "/workloads",
		}
		promDir := filepath.Join(c.dir, "prometheus")
		if err := os.MkdirAll(promDir, 0o700); err != nil {
			return err
		}
		// One Prometheus per cluster, scraping that cluster's data plane, as most fleets run it.
		conf := fmt.Sprintf("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n  external_labels:\n    cluster: %s\nscrape_configs:\n- job_name: mesh\n  static_configs:\n  - targets: ['%s']\n",
			c.name, addr(ports[3]))
		if err := os.WriteFile(filepath.Join(promDir, "prometheus.yml"), []byte(conf), 0o600); err != nil {
			return err
		}
		m.parts["prometheus"] = &meshPart{
			name: "prometheus", bin: prom, logName: "prometheus",
			args: []string{"--config.file=" + filepath.Join(promDir, "prometheus.yml"), "--storage.tsdb.path=" + filepath.Join(promDir, "data"),
				"--web.listen-address=" + promAddr, "--storage.tsdb.retention.time=2h", "--log.level=warn"},
			ready: m.prometheus + "/-/ready",
		}
	}
	// istiod first (the node's caller dials it), then the rest.
	for _, order := range [][]string{{"istiod"}, {"node", "prometheus"}} {
		for _, c := range clusters {
			for _, name := range order {
				if err := c.mesh.parts[name].start(c.dir); err != nil {
					return fmt.Errorf("%s %s: %w", c.name, name, err)
				}
			}
		}
		for _, c := range clusters {
			for _, name := range order {
				if err := c.mesh.parts[name].waitReady(ctx, c.dir); err != nil {
					return fmt.Errorf("%s: %w", c.name, err)
				}
			}
		}
	}
	return nil
}

func (p *meshPart) start(dir string) error {
	log, err := os.OpenFile(filepath.Join(dir, p.logName+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	p.cmd, p.exited = cmd, make(chan struct{})
	exited := p.exited
	go func() { _ = cmd.Wait(); log.Close(); close(exited) }()
	return nil
}

func (p *meshPart) running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (p *meshPart) stop() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *meshPart) waitReady(ctx context.Context, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		if resp, err := client.Get(p.ready); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited; see %s", p.name, filepath.Join(dir, p.logName+".log"))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v; see %s", p.name, ctx.Err(), filepath.Join(dir, p.logName+".log"))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// realRemoteSecrets gives each remote secret the kubeconfig of the real API
// server it names, as `istioctl create-remote-secret` would: the world's
// secrets carry a placeholder.
func realRemoteSecrets(ctx context.Context, c *cluster, clusters []*cluster) error {
	_, kube, err := clients(c, "realfleet")
	if err != nil {
		return err
	}
	list, err := kube.CoreV1().Secrets("istio-system").List(ctx, metav1.ListOptions{LabelSelector: "istio/multiCluster=true"})
	if err != nil {
		return err
	}
	for _, s := range list.Items {
		data := map[string]string{}
		for key := range s.Data {
			for _, other := range clusters {
				if other.name == key && other != c {
					kc, err := kubeconfig(clusters, other, "")
					if err != nil {
						return err
					}
					data[key] = base64.StdEncoding.EncodeToString(kc)
				}
			}
		}
		if len(data) == 0 {
			continue
		}
		patch, _ := json.Marshal(map[string]any{"data": data})
		if _, err := kube.CoreV1().Secrets("istio-system").Patch(ctx, s.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: seedManager}); err != nil {
			return err
		}
	}
	return nil
}

// meshReady is what ready.json says of each cluster's data plane.
func meshReady(clusters []*cluster) map[string]any {
	out := map[string]any{}
	for _, c := range clusters {
		if c.mesh == nil {
			continue
		}
		pids := map[string]int{}
		for name, p := range c.mesh.parts {
			if p.running() {
				pids[name] = p.cmd.Process.Pid
			}
		}
		out[c.name] = map[string]any{"istiod": c.mesh.istiodHTTP, "xds": c.mesh.xds, "istiodMonitoring": c.mesh.monitoring,
			"prometheus": c.mesh.prometheus, "node": c.mesh.node, "pids": pids}
	}
	return out
}

// meshAction stops or starts one part of a cluster's data plane (control endpoint).
func meshAction(ctx context.Context, c *cluster, part, action string) (string, error) {
	if c.mesh == nil {
		return "", fmt.Errorf("%s runs no mesh (up --mesh)", c.name)
	}
	p := c.mesh.parts[part]
	if p == nil {
		return "", fmt.Errorf("no part %q: istiod, node or prometheus", part)
	}
	switch action {
	case "stop":
		p.stop()
		return fmt.Sprintf("%s: %s stopped\n", c.name, part), nil
	case "start":
		var err error
		if !p.running() {
			runOnMainThread(func() { err = p.start(c.dir) })
		}
		if err == nil {
			err = p.waitReady(ctx, c.dir)
		}
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s: %s ready\n", c.name, part), nil
	}
	return "", fmt.Errorf("stop or start, not %q", strings.TrimSpace(action))
}

// prometheusPod registers the cluster's Prometheus as a cluster runs it: pod
// monitoring/prometheus-0 behind Service monitoring/prometheus (port 9090, web),
// so meshdeck can find it and reach it through the API server's service proxy.
// The answer is where it listens: its pod IP's loopback twin (the pod network).
func prometheusPod(ctx context.Context, c *cluster) (string, error) {
	_, kube, err := clients(c, "mesh/realfleet")
	if err != nil {
		return "", err
	}
	created := func(err error) error {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "monitoring"}}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); created(err) != nil {
		return "", err
	}
	labels := map[string]string{"app": "prometheus"}
	pod := &corev1.Pod{
		// The node process plays every other pod on its address; this one Prometheus serves.
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus-0", Namespace: "monitoring", Labels: labels,
			Annotations: map[string]string{"realfleet.meshdeck.dev/served-by": "prometheus"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "prometheus", Image: "prom/prometheus:v2.42.0",
			Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 9090}}}}},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "prometheus", Namespace: "monitoring", Labels: labels},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "web", Port: 9090, TargetPort: intstr.FromInt32(9090)}}},
	}
	if _, err := kube.CoreV1().Services("monitoring").Create(ctx, svc, metav1.CreateOptions{}); created(err) != nil {
		return "", err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		// The namespace's default ServiceAccount comes from the controller manager a moment later.
		_, err := kube.CoreV1().Pods("monitoring").Create(ctx, pod, metav1.CreateOptions{})
		if created(err) == nil {
			break
		}
		if time.Now().After(deadline) {
			return "", err
		}
		time.Sleep(200 * time.Millisecond)
	}
	for {
		p, err := kube.CoreV1().Pods("monitoring").Get(ctx, "prometheus-0", metav1.GetOptions{})
		if err == nil && p.Status.PodIP != "" {
			ip := net.ParseIP(p.Status.PodIP).To4()
			if ip == nil {
				return "", fmt.Errorf("pod IP %q", p.Status.PodIP)
			}
			ip[0] = 127
			return net.JoinHostPort(ip.String(), "9090"), nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("prometheus-0 has no pod IP after 2 minutes: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
