package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensions "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

const seedManager = "realfleet-seed"

func restConfig(c *cluster) (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(c.dir, "admin.kubeconfig"))
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 200, 400
	cfg.UserAgent = "realfleet"
	return cfg, nil
}

// clients: the cluster's admin rest config and a typed client for it, as agent.
func clients(c *cluster, agent string) (*rest.Config, kubernetes.Interface, error) {
	cfg, err := restConfig(c)
	if err != nil {
		return nil, nil, err
	}
	cfg.UserAgent = agent
	kube, err := kubernetes.NewForConfig(cfg)
	return cfg, kube, err
}

// readDocuments splits YAML files into objects.
func readDocuments(path string) ([]map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	var out []map[string]any
	for {
		doc, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		var obj map[string]any
		if err := utilyaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if obj != nil {
			out = append(out, obj)
		}
	}
}

func seed(ctx context.Context, c *cluster, o *options) error {
	cfg, kube, err := clients(c, "realfleet")
	if err != nil {
		return err
	}
	if err := seedRBAC(ctx, kube); err != nil {
		return fmt.Errorf("%s RBAC: %w", c.name, err)
	}
	if err := seedCRDs(ctx, cfg, o.crds); err != nil {
		return fmt.Errorf("%s CRDs: %w", c.name, err)
	}
	if err := seedNode(ctx, kube, c); err != nil {
		return fmt.Errorf("%s node: %w", c.name, err)
	}
	if err := seedWorld(ctx, cfg, filepath.Join(o.world, c.name+".yaml")); err != nil {
		return fmt.Errorf("%s world: %w", c.name, err)
	}
	return nil
}

// seedRBAC binds the restricted identity exactly as the sim does: it reads
// everything and writes networking.istio.io objects in `default` only.
func seedRBAC(ctx context.Context, kube kubernetes.Interface) error {
	subject := []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "restricted"}}
	read := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "meshdeck-restricted-read"},
		Rules:      []rbacv1.PolicyRule{{Verbs: []string{"get", "list", "watch"}, APIGroups: []string{"*"}, Resources: []string{"*"}}},
	}
	if _, err := kube.RbacV1().ClusterRoles().Create(ctx, read, metav1.CreateOptions{}); err != nil {
		return err
	}
	readBinding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "meshdeck-restricted-read"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: read.Name},
		Subjects:   subject,
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, readBinding, metav1.CreateOptions{}); err != nil {
		return err
	}
	routes := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "meshdeck-restricted-routes", Namespace: "default"},
		Rules: []rbacv1.PolicyRule{{
			Verbs:     []string{"create", "update", "patch", "delete", "deletecollection"},
			APIGroups: []string{"networking.istio.io"}, Resources: []string{"*"},
		}},
	}
	if _, err := kube.RbacV1().Roles("default").Create(ctx, routes, metav1.CreateOptions{}); err != nil {
		return err
	}
	routesBinding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "meshdeck-restricted-routes", Namespace: "default"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: routes.Name},
		Subjects:   subject,
	}
	if _, err := kube.RbacV1().RoleBindings("default").Create(ctx, routesBinding, metav1.CreateOptions{}); err != nil {
		return err
	}
	// The team user: reads and routes in `default`, nothing elsewhere.
	team := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "meshdeck-team", Namespace: "default"},
		Rules: []rbacv1.PolicyRule{
			{Verbs: []string{"get", "list", "watch"}, APIGroups: []string{"*"}, Resources: []string{"*"}},
			{Verbs: []string{"create", "update", "patch", "delete", "deletecollection"}, APIGroups: []string{"networking.istio.io"}, Resources: []string{"*"}},
		},
	}
	if _, err := kube.RbacV1().Roles("default").Create(ctx, team, metav1.CreateOptions{}); err != nil {
		return err
	}
	teamBinding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "meshdeck-team", Namespace: "default"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: team.Name},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "team"}},
	}
	if _, err := kube.RbacV1().RoleBindings("default").Create(ctx, teamBinding, metav1.CreateOptions{}); err != nil {
		return err
	}
	// The nodelete user: reads everything, creates and changes Istio objects in `default`, never deletes.
	nodelete := []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "nodelete"}}
	readAll := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "meshdeck-nodelete-read"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: read.Name},
		Subjects:   nodelete,
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, readAll, metav1.CreateOptions{}); err != nil {
		return err
	}
	change := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "meshdeck-nodelete", Namespace: "default"},
		Rules: []rbacv1.PolicyRule{{
			Verbs:     []string{"create", "update", "patch"},
			APIGroups: []string{"networking.istio.io", "security.istio.io"}, Resources: []string{"*"},
		}},
	}
	if _, err := kube.RbacV1().Roles("default").Create(ctx, change, metav1.CreateOptions{}); err != nil {
		return err
	}
	changeBinding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "meshdeck-nodelete", Namespace: "default"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: change.Name},
		Subjects:   nodelete,
	}
	_, err := kube.RbacV1().RoleBindings("default").Create(ctx, changeBinding, metav1.CreateOptions{})
	return err
}

func seedCRDs(ctx context.Context, cfg *rest.Config, dir string) error {
	client, err := apiextensions.NewForConfig(cfg)
	if err != nil {
		return err
	}
	// Several directories, as a PATH is written: Istio's CRDs, then Gateway API's.
	var files []string
	for _, d := range filepath.SplitList(dir) {
		found, err := filepath.Glob(filepath.Join(d, "*.yaml"))
		if err != nil {
			return err
		}
		if len(found) == 0 {
			return fmt.Errorf("%s: no CRD files", d)
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	var names []string
	for _, f := range files {
		docs, err := readDocuments(f)
		if err != nil {
			return err
		}
		for _, d := range docs {
			if d["kind"] != "CustomResourceDefinition" {
				continue
			}
			body, err := json.Marshal(d)
			if err != nil {
				return err
			}
			name := d["metadata"].(map[string]any)["name"].(string)
			force := true
			if _, err := client.ApiextensionsV1().CustomResourceDefinitions().Patch(ctx, name, types.ApplyPatchType, body,
				metav1.PatchOptions{FieldManager: seedManager, Force: &force}); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			names = append(names, name)
		}
	}
	for _, name := range names {
		for {
			crd, err := client.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if established(crd) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not Established: %w", name, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

func nodeName(c *cluster) string { return fmt.Sprintf("node-%d", c.index) }
func nodeIP(c *cluster) string   { return fmt.Sprintf("172.31.%d.10", c.index%250) }

// seedNode registers the fake node the test bed's kubelet runs.
func seedNode(ctx context.Context, kube kubernetes.Interface, c *cluster) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName(c), Labels: map[string]string{
		"kubernetes.io/hostname": nodeName(c), "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
		"topology.kubernetes.io/region": "region1", "topology.kubernetes.io/zone": "zone1",
	}}}
	created, err := kube.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	return markNodeReady(ctx, kube, c, created)
}

func markNodeReady(ctx context.Context, kube kubernetes.Interface, c *cluster, node *corev1.Node) error {
	now := metav1.Now()
	node = node.DeepCopy()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourceMemory: resource.MustParse("128Gi"), corev1.ResourcePods: resource.MustParse("1000"),
	}
	node.Status = corev1.NodeStatus{
		Capacity: capacity, Allocatable: capacity, Phase: corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status (realfleet)", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", LastHeartbeatTime: now, LastTransitionTime: now},
			{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", LastHeartbeatTime: now, LastTransitionTime: now},
		},
		Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodeIP(c)}, {Type: corev1.NodeHostName, Address: nodeName(c)}},
		NodeInfo:  corev1.NodeSystemInfo{KubeletVersion: "v1.37.2-realfleet", OperatingSystem: "linux", Architecture: "amd64", ContainerRuntimeVersion: "containerd://2.1.0"},
	}
	_, err := kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

// seedWorld applies the world's objects (server-side apply) and then the
// status of those that carry one (a load balancer's address).
func seedWorld(ctx context.Context, cfg *rest.Config, path string) error {
	docs, err := readDocuments(path)
	if err != nil {
		return err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	force := true
	for _, d := range docs {
		obj := &unstructured.Unstructured{Object: d}
		status, hasStatus := d["status"]
		delete(d, "status")
		gvk := obj.GroupVersionKind()
		mapping, err := mapper.RESTMapping(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, gvk.Version)
		if err != nil {
			return fmt.Errorf("%s: %w", gvk, err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(mapping.Resource)
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dyn.Resource(mapping.Resource).Namespace(obj.GetNamespace())
		}
		body, err := json.Marshal(d)
		if err != nil {
			return err
		}
		opts := metav1.PatchOptions{FieldManager: seedManager, Force: &force}
		if _, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, body, opts); err != nil {
			return fmt.Errorf("%s %s/%s: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
		}
		if hasStatus {
			st := map[string]any{"apiVersion": d["apiVersion"], "kind": d["kind"], "metadata": map[string]any{"name": obj.GetName(), "namespace": obj.GetNamespace()}, "status": status}
			body, _ := json.Marshal(st)
			if _, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, body, opts, "status"); err != nil {
				return fmt.Errorf("%s %s/%s status: %w", gvk.Kind, obj.GetNamespace(), obj.GetName(), err)
			}
		}
	}
	return nil
}

// waitWorldRunning waits until every Deployment has all its replicas ready.
func waitWorldRunning(ctx context.Context, c *cluster) error {
	_, kube, err := clients(c, "realfleet")
	if err != nil {
		return err
	}
	for {
		deps, err := kube.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
		if err == nil {
			var waiting []string
			for _, d := range deps.Items {
				want := int32(1)
				if d.Spec.Replicas != nil {
					want = *d.Spec.Replicas
				}
				if d.Status.ReadyReplicas != want {
					waiting = append(waiting, fmt.Sprintf("%s/%s %d/%d", d.Namespace, d.Name, d.Status.ReadyReplicas, want))
				}
			}
			if len(waiting) == 0 {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: deployments not ready: %s", c.name, strings.Join(waiting, ", "))
			case <-time.After(250 * time.Millisecond):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: listing deployments: %w", c.name, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
