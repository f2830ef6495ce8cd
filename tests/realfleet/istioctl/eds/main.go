// Command eds asks Istio's own config generator (istiod's xDS code, through the
// test harness istio.io/istio/pilot/test/xds) which endpoints, at which
// priorities, a sidecar in one cluster gets for each of its outbound clusters.
// meshdeck's tests use it as the oracle for what a rendered failover does at
// runtime, where no Envoy runs: the per-pod endpoints of the local tier, the
// order of the tiers, and whether outlier detection is on.
//
//	eds --cluster-id cluster1 --network network1 --labels app=productpage [--remote cluster2=FILE,...] FILE...
//
// FILEs are YAML: a cluster's world (Namespaces, Services, Deployments, ...) and
// the Istio objects rendered for it. Each --remote is another cluster's world that
// this istiod also reads (a remote secret: shared discovery), on the same network;
// its pods get addresses of their own range (10.2.x.x for the first, and so on). Each Deployment becomes its ready pods and
// each Service its EndpointSlice, as a kubelet and the endpoint controller would.
// Prints one JSON document: the outbound clusters with their endpoints.
//
//	eds --inbound --cluster-id cluster2 --labels app=reviews,version=v3 FILE...
//
// With --inbound the sidecar is the first pod whose labels hold --labels, on its
// own address, and the answer is what Istio's authorization builder made of the
// AuthorizationPolicies for it: each RBAC filter of its inbound listeners (action,
// policy, the SPIFFE identities it matches), as Envoy would enforce them. The
// mesh config (trust domain, aliases) is the world's ConfigMap istio-system/istio.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"

	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbac "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	rbachttp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbactcp "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"istio.io/istio/pkg/config/mesh"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	klabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	meshconfig "istio.io/api/mesh/v1alpha1"
	"istio.io/istio/pilot/pkg/model"
	labelutil "istio.io/istio/pilot/pkg/serviceregistry/util/label"
	"istio.io/istio/pilot/test/xds"
	"istio.io/istio/pkg/cluster"
	"istio.io/istio/pkg/config/mesh/meshwatcher"
	"istio.io/istio/pkg/log"
	"istio.io/istio/pkg/network"
)

// failer is the harness's test.Failer outside `go test`: a failure ends the run.
type failer struct{}

func (f *failer) Fail()                          { f.FailNow() }
func (f *failer) FailNow()                       { f.Fatal("failed") }
func (f *failer) Fatal(args ...any)              { fmt.Fprintln(os.Stderr, args...); os.Exit(1) }
func (f *failer) Fatalf(format string, a ...any) { f.Fatal(fmt.Sprintf(format, a...)) }
func (f *failer) Log(args ...any)                {}
func (f *failer) Logf(string, ...any)            {}
func (f *failer) TempDir() string                { d, _ := os.MkdirTemp("", "eds"); return d }
func (f *failer) Helper()                        {}
func (f *failer) Cleanup(func())                 {}
func (f *failer) Skip(args ...any)               { f.Fatal(args...) }

type doc struct {
	raw  []byte
	kind string
	meta metav1.ObjectMeta
}

type Endpoint struct {
	Address  string            `json:"address"`
	Port     uint32            `json:"port"`
	Priority uint32            `json:"priority"`
	Labels   map[string]string `json:"labels,omitempty"`
}

type Cluster struct {
	Name string `json:"name"`
	// EDS, or how Envoy finds the addresses itself (STRICT_DNS, STATIC, ...).
	Type             string     `json:"type"`
	OutlierDetection bool       `json:"outlierDetection"`
	Endpoints        []Endpoint `json:"endpoints"`
}

func main() {
	clusterID := flag.String("cluster-id", "Kubernetes", "the caller's Istio cluster id")
	net := flag.String("network", "", "the caller's network")
	proxyLabels := flag.String("labels", "app=caller", "the calling sidecar's labels, k=v,...")
	namespace := flag.String("namespace", "default", "the calling sidecar's namespace")
	inbound := flag.Bool("inbound", false, "print the inbound RBAC of the first pod with --labels instead of outbound endpoints")
	var remotes remoteFlags
	flag.Var(&remotes, "remote", "another cluster this istiod reads: ID=FILE[,FILE...] (repeatable)")
	flag.Parse()
	// Istio logs to stdout by default; stdout is the answer.
	logs := log.DefaultOptions()
	logs.OutputPaths = []string{"stderr"}
	logs.SetDefaultOutputLevel("all", log.WarnLevel)
	must(log.Configure(logs))

	podIndex := 0
	var meshConfig *meshconfig.MeshConfig
	kube, istio := readFiles(flag.Args(), 1, &podIndex, &meshConfig)
	kube = append(kube, slices(kube)...)
	byCluster := map[cluster.ID][]runtime.Object{}
	for i, r := range remotes {
		// A remote cluster's Istio config is its own istiod's, not read here.
		objects, _ := readFiles(r.files, 2+i, &podIndex, nil)
		byCluster[cluster.ID(r.id)] = append(objects, slices(objects)...)
	}

	// The cluster's own endpoints are on its network, as istiod knows from the
	// istio-system namespace's label (which the harness does not read).
	networks := &meshconfig.MeshNetworks{Networks: map[string]*meshconfig.Network{}}
	if *net != "" {
		endpoints := []*meshconfig.Network_NetworkEndpoints{{Ne: &meshconfig.Network_NetworkEndpoints_FromRegistry{FromRegistry: *clusterID}}}
		for _, r := range remotes {
			endpoints = append(endpoints, &meshconfig.Network_NetworkEndpoints{Ne: &meshconfig.Network_NetworkEndpoints_FromRegistry{FromRegistry: r.id}})
		}
		networks.Networks[*net] = &meshconfig.Network{Endpoints: endpoints}
	}
	t := &failer{}
	s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
		NetworksWatcher:            meshwatcher.NewFixedNetworksWatcher(networks),
		DefaultClusterName:         cluster.ID(*clusterID),
		KubernetesObjects:          kube,
		KubernetesObjectsByCluster: byCluster,
		ConfigString:               strings.Join(istio, "\n---\n"),
		MeshConfig:                 meshConfig,
	})
	labels := map[string]string{}
	for _, kv := range strings.Split(*proxyLabels, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			labels[k] = v
		}
	}
	ip := "10.99.0.1"
	if *inbound {
		pod := podWith(kube, labels)
		if pod == nil {
			fail("no pod has the labels %v", labels)
		}
		ip, *namespace, labels = pod.Status.PodIP, pod.Namespace, pod.Labels
	}
	// As istiod does for a connecting sidecar: its cluster and network join its labels
	// (failoverPriority compares endpoints' labels with these).
	labels = labelutil.AugmentLabels(labels, cluster.ID(*clusterID), "", "", network.ID(*net))
	proxy := s.SetupProxy(&model.Proxy{
		Labels:          labels,
		ConfigNamespace: *namespace,
		IPAddresses:     []string{ip},
		Metadata: &model.NodeMetadata{
			ClusterID: cluster.ID(*clusterID),
			Network:   network.ID(*net),
			Labels:    labels,
			Namespace: *namespace,
		},
	})
	if *inbound {
		printJSON(inboundRBAC(s.Listeners(proxy)))
		os.Exit(0)
	}
	// EDS clusters get their endpoints from the endpoint builder; DNS and static
	// ones (a ServiceEntry with DNS resolution) carry them inline.
	var out []Cluster
	assignments := map[string]*endpoint.ClusterLoadAssignment{}
	for _, cla := range s.Endpoints(proxy) {
		assignments[cla.ClusterName] = cla
	}
	for _, c := range s.Clusters(proxy) {
		cla := assignments[c.Name]
		if cla == nil {
			cla = c.LoadAssignment
		}
		if cla == nil {
			continue
		}
		out = append(out, describe(c.Name, c.OutlierDetection != nil, c.GetType().String(), cla))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	printJSON(out)
	// The harness's cleanups wait on informers a test would stop; a process just ends.
	os.Exit(0)
}

func printJSON(v any) {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	must(enc.Encode(v))
}

// podWith is the first pod whose labels hold every one of want.
func podWith(objects []runtime.Object, want map[string]string) *corev1.Pod {
	for _, o := range objects {
		if p, ok := o.(*corev1.Pod); ok && klabels.SelectorFromSet(want).Matches(klabels.Set(p.Labels)) {
			return p
		}
	}
	return nil
}

// Rule is one RBAC policy of an inbound listener as Envoy enforces it.
type Rule struct {
	Filter     string   `json:"filter"`
	Action     string   `json:"action"`
	Policy     string   `json:"policy"`
	Principals []string `json:"principals"`
}

// inboundRBAC collects every RBAC filter of the inbound listeners (HTTP and
// network), each policy once, with the SPIFFE identities its principals match.
func inboundRBAC(listeners []*listener.Listener) []Rule {
	seen := map[string]Rule{}
	for _, l := range listeners {
		if l.GetTrafficDirection().String() != "INBOUND" && l.GetName() != "virtualInbound" {
			continue
		}
		for _, chain := range l.GetFilterChains() {
			for _, f := range chain.GetFilters() {
				switch f.GetName() {
				case "envoy.filters.network.rbac":
					var r rbactcp.RBAC
					if f.GetTypedConfig().UnmarshalTo(&r) == nil && r.GetRules() != nil {
						collect(seen, "network", r.GetRules().GetAction().String(), r.GetRules().GetPolicies())
					}
				case "envoy.filters.network.http_connection_manager":
					var h hcm.HttpConnectionManager
					if f.GetTypedConfig().UnmarshalTo(&h) != nil {
						continue
					}
					for _, hf := range h.GetHttpFilters() {
						if hf.GetName() != "envoy.filters.http.rbac" {
							continue
						}
						var r rbachttp.RBAC
						if hf.GetTypedConfig().UnmarshalTo(&r) == nil && r.GetRules() != nil {
							collect(seen, "http", r.GetRules().GetAction().String(), r.GetRules().GetPolicies())
						}
					}
				}
			}
		}
	}
	out := make([]Rule, 0, len(seen))
	for _, r := range seen {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		return a.Filter+a.Action+a.Policy < b.Filter+b.Action+b.Policy
	})
	return out
}

// remoteFlags are the --remote clusters, in the order given.
type remoteFlags []struct {
	id    string
	files []string
}

func (r *remoteFlags) String() string { return fmt.Sprint(len(*r)) }

func (r *remoteFlags) Set(v string) error {
	id, files, ok := strings.Cut(v, "=")
	if !ok || id == "" || files == "" {
		return fmt.Errorf("--remote takes ID=FILE[,FILE...], not %q", v)
	}
	*r = append(*r, struct {
		id    string
		files []string
	}{id, strings.Split(files, ",")})
	return nil
}

// readFiles reads a cluster's YAML files: its Kubernetes objects (each Deployment
// as its ready pods, addressed in 10.<subnet>.x.x) and its Istio objects.
func readFiles(paths []string, subnet int, podIndex *int, meshConfig **meshconfig.MeshConfig) ([]runtime.Object, []string) {
	var kube []runtime.Object
	var istio []string
	for _, path := range paths {
		text, err := os.ReadFile(path)
		if err != nil {
			fail("%v", err)
		}
		for _, part := range bytes.Split(text, []byte("\n---")) {
			var d struct {
				APIVersion string            `json:"apiVersion"`
				Kind       string            `json:"kind"`
				Metadata   metav1.ObjectMeta `json:"metadata"`
			}
			if err := yaml.Unmarshal(part, &d); err != nil || d.Kind == "" {
				continue
			}
			switch {
			case strings.Contains(d.APIVersion, "istio.io"):
				istio = append(istio, string(part))
			case d.Kind == "ConfigMap" && d.Metadata.Name == "istio" && d.Metadata.Namespace == "istio-system" && meshConfig != nil:
				var o corev1.ConfigMap
				must(yaml.Unmarshal(part, &o))
				m, err := mesh.ApplyMeshConfigDefaults(o.Data["mesh"])
				must(err)
				*meshConfig = m
			case d.Kind == "Namespace":
				var o corev1.Namespace
				must(yaml.Unmarshal(part, &o))
				kube = append(kube, &o)
			case d.Kind == "Service":
				var o corev1.Service
				must(yaml.Unmarshal(part, &o))
				kube = append(kube, &o)
			case d.Kind == "ServiceAccount":
				var o corev1.ServiceAccount
				must(yaml.Unmarshal(part, &o))
				kube = append(kube, &o)
			case d.Kind == "Deployment":
				var o struct {
					Spec struct {
						Replicas *int32 `json:"replicas"`
						Template struct {
							Metadata metav1.ObjectMeta `json:"metadata"`
							Spec     corev1.PodSpec    `json:"spec"`
						} `json:"template"`
					} `json:"spec"`
				}
				must(yaml.Unmarshal(part, &o))
				n := int32(1)
				if o.Spec.Replicas != nil {
					n = *o.Spec.Replicas
				}
				for i := int32(0); i < n; i++ {
					*podIndex++
					kube = append(kube, pod(d.Metadata, o.Spec.Template.Metadata, o.Spec.Template.Spec, i, *podIndex, subnet))
				}
			}
		}
	}
	return kube, istio
}

func describe(name string, outlier bool, kind string, cla *endpoint.ClusterLoadAssignment) Cluster {
	if kind == "EDS" || cla.Endpoints == nil {
		kind = "EDS"
	}
	c := Cluster{Name: name, Type: kind, OutlierDetection: outlier, Endpoints: []Endpoint{}}
	for _, group := range cla.Endpoints {
		for _, e := range group.LbEndpoints {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			c.Endpoints = append(c.Endpoints, Endpoint{Address: sa.GetAddress(), Port: sa.GetPortValue(), Priority: group.Priority})
		}
	}
	sort.Slice(c.Endpoints, func(i, j int) bool {
		a, b := c.Endpoints[i], c.Endpoints[j]
		if a.Priority != b.Priority {
			return a.Priority < b.Priority
		}
		return a.Address < b.Address
	})
	return c
}

// pod is replica i of a Deployment, running and ready on an address of its own.
func pod(deploy, tmpl metav1.ObjectMeta, spec corev1.PodSpec, i int32, index int, subnet int) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        fmt.Sprintf("%s-%d", deploy.Name, i),
			Namespace:   deploy.Namespace,
			Labels:      tmpl.Labels,
			Annotations: tmpl.Annotations,
		},
		Spec: spec,
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			PodIP:      fmt.Sprintf("10.%d.%d.%d", subnet, index/250, index%250+1),
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		},
	}
	p.Status.PodIPs = []corev1.PodIP{{IP: p.Status.PodIP}}
	return p
}

// slices are the EndpointSlices the endpoint controller would write: every ready
// pod a Service selects, on each of the Service's ports.
func slices(objects []runtime.Object) []runtime.Object {
	var out []runtime.Object
	ready := true
	for _, o := range objects {
		svc, ok := o.(*corev1.Service)
		if !ok || len(svc.Spec.Selector) == 0 {
			continue
		}
		selector := klabels.SelectorFromSet(svc.Spec.Selector)
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name:      svc.Name + "-slice",
				Namespace: svc.Namespace,
				Labels:    map[string]string{discoveryv1.LabelServiceName: svc.Name},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
		}
		for _, port := range svc.Spec.Ports {
			p := port
			target := p.Port
			if p.TargetPort.IntValue() > 0 {
				target = int32(p.TargetPort.IntValue())
			}
			slice.Ports = append(slice.Ports, discoveryv1.EndpointPort{Name: &p.Name, Port: &target, Protocol: &p.Protocol, AppProtocol: p.AppProtocol})
		}
		for _, o := range objects {
			pod, ok := o.(*corev1.Pod)
			if !ok || pod.Namespace != svc.Namespace || !selector.Matches(klabels.Set(pod.Labels)) {
				continue
			}
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{pod.Status.PodIP},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: pod.Name, Namespace: pod.Namespace},
			})
		}
		out = append(out, slice)
	}
	return out
}

func must(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "eds: "+format+"\n", a...)
	os.Exit(2)
}

// collect adds each policy's identities: every string its principals match that
// is a SPIFFE id (exact or prefix, wherever Istio nests it), "*" for any.
func collect(seen map[string]Rule, filter, action string, policies map[string]*rbac.Policy) {
	for name, p := range policies {
		ids := map[string]bool{}
		for _, pr := range p.GetPrincipals() {
			raw, err := protojson.Marshal(pr)
			must(err)
			var v any
			must(json.Unmarshal(raw, &v))
			spiffeIDs(v, ids)
		}
		r := Rule{Filter: filter, Action: action, Policy: name, Principals: []string{}}
		for id := range ids {
			r.Principals = append(r.Principals, id)
		}
		sort.Strings(r.Principals)
		seen[filter+"|"+action+"|"+name] = r
	}
}

func spiffeIDs(v any, into map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		if x["any"] == true {
			into["*"] = true
		}
		for _, e := range x {
			spiffeIDs(e, into)
		}
	case []any:
		for _, e := range x {
			spiffeIDs(e, into)
		}
	case string:
		if strings.HasPrefix(x, "spiffe://") {
			into[x] = true
		}
	}
}
