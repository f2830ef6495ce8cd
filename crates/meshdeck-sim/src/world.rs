//! The world a fleet starts with, as the objects an operator would apply:
//! namespaces, Istio's install facts, the east-west gateway, bookinfo. One
//! description feeds both fleets: the sim loads it into its stores (and plays
//! the controllers and kubelet itself), and `meshdeck world` writes it out for
//! the real test bed (`tests/realfleet`), whose controllers make the pods.

use serde_json::{Value, json};

/// How the clusters' meshes relate (DESIGN.md, "the two topologies").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MeshTopology {
    /// Independent control planes, one network each, east-west gateways between them.
    #[default]
    Federation,
    /// Multi-primary on one network: istiod in each cluster reads the others' remote secrets.
    SharedDiscovery,
}

pub const ISTIO_VERSION: &str = "1.27.3";

/// What one cluster runs.
pub struct ClusterSpec {
    pub index: usize,
    pub name: String,
    pub services: usize,
    pub topology: MeshTopology,
    pub cluster_names: Vec<String>,
    pub root_cert_pem: String,
    /// The cluster's intermediate CA for Istio's `cacerts`, signed by the root.
    pub intermediate: Option<super::tls::IntermediateCa>,
}

fn reviews_versions(index: usize) -> &'static [&'static str] {
    match index {
        2 => &["v1", "v2", "v3"],
        _ => &["v1", "v2"],
    }
}

pub fn network_of(index: usize, topology: MeshTopology) -> String {
    match topology {
        MeshTopology::Federation => format!("network{index}"),
        MeshTopology::SharedDiscovery => "network1".into(),
    }
}

pub fn trust_domain_of(name: &str, topology: MeshTopology) -> String {
    match topology {
        MeshTopology::Federation => format!("{name}.local"),
        MeshTopology::SharedDiscovery => "cluster.local".into(),
    }
}

/// A documentation-range address (RFC 5737): shown, never dialled.
pub fn eastwest_address(index: usize) -> String {
    let (net, host) = (index / 200, 10 + index % 200);
    let prefix = ["192.0.2", "198.51.100", "203.0.113"][net % 3];
    format!("{prefix}.{host}")
}

/// The API resource of a world object's kind: (group, version, plural).
pub fn resource_of(obj: &Value) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match obj.get("kind")?.as_str()? {
        "Namespace" => ("", "v1", "namespaces"),
        "ConfigMap" => ("", "v1", "configmaps"),
        "Secret" => ("", "v1", "secrets"),
        "ServiceAccount" => ("", "v1", "serviceaccounts"),
        "Service" => ("", "v1", "services"),
        "Deployment" => ("apps", "v1", "deployments"),
        _ => return None,
    })
}

/// Every object of one cluster's world, in an order that applies cleanly
/// (namespaces first). Services that need a load-balancer address carry it in
/// `status`, which the loader writes through the status subresource.
pub fn cluster_objects(spec: &ClusterSpec) -> Vec<Value> {
    let network = network_of(spec.index, spec.topology);
    let mut out = vec![
        namespace("kube-system", json!({})),
        namespace("istio-system", json!({"topology.istio.io/network": network})),
        namespace("default", json!({"istio-injection": "enabled"})),
    ];
    for i in 0..spec.services.min(10) {
        out.push(namespace(&format!("apps-{i}"), json!({"istio-injection": "enabled"})));
    }
    install_istio(&mut out, spec, &network);
    let bookinfo: Vec<(&str, Vec<&str>)> = vec![
        ("productpage", vec!["v1"]),
        ("details", vec!["v1"]),
        ("ratings", vec!["v1"]),
        ("reviews", reviews_versions(spec.index).to_vec()),
    ];
    for (app, versions) in &bookinfo {
        let replicas: Vec<(&str, usize)> = versions.iter().map(|v| (*v, 1)).collect();
        service(&mut out, spec, "default", app, &replicas, 9080);
    }
    for i in 0..spec.services {
        service(&mut out, spec, &format!("apps-{}", i % 10), &format!("svc-{i:04}"), &[("v1", 2), ("v2", 1)], 8080);
    }
    out
}

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn install_istio(out: &mut Vec<Value>, spec: &ClusterSpec, network: &str) {
    let trust_domain = trust_domain_of(&spec.name, spec.topology);
    // Federated meshes with a trust domain each accept one another's (trustDomainAliases):
    // without it a sidecar resets every request from another cluster.
    let aliases: Vec<String> = spec
        .cluster_names
        .iter()
        .filter(|n| **n != spec.name)
        .map(|n| trust_domain_of(n, spec.topology))
        .filter(|t| *t != trust_domain)
        .collect();
    let aliases = if aliases.is_empty() { String::new() } else { format!("trustDomainAliases: [{}]\n", aliases.join(", ")) };
    let mesh = format!(
        "trustDomain: {trust_domain}\n{aliases}defaultConfig:\n  meshId: mesh1\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: \"true\"\nenablePrometheusMerge: true\nrootNamespace: istio-system\n"
    );
    out.push(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "istio", "namespace": "istio-system", "labels": {"istio.io/rev": "default", "release": "istio"}},
        "data": {"mesh": mesh, "meshNetworks": "networks: {}"}
    }));
    for namespace in ["istio-system", "default"] {
        out.push(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istio-ca-root-cert", "namespace": namespace, "labels": {"istio.io/config": "true"}},
            "data": {"root-cert.pem": spec.root_cert_pem}
        }));
    }
    if let Some(ca) = &spec.intermediate {
        // Istio's "plug in CA certificates": istiod signs workload certificates
        // with this intermediate, which chains to the fleet's one root.
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        out.push(json!({
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "cacerts", "namespace": "istio-system"},
            "data": {"ca-cert.pem": b64(&ca.cert_pem), "ca-key.pem": b64(&ca.key_pem), "root-cert.pem": b64(&spec.root_cert_pem),
                     "cert-chain.pem": b64(&format!("{}{}", ca.cert_pem, spec.root_cert_pem))}
        }));
    }
    out.push(json!({
        "apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "istiod"}}
    }));
    let istiod_labels = json!({"app": "istiod", "istio": "pilot", "istio.io/rev": "default", "operator.istio.io/version": ISTIO_VERSION});
    let istiod_env = json!([
        {"name": "CLUSTER_ID", "value": spec.name},
        {"name": "PILOT_ENABLE_CROSS_CLUSTER_WORKLOAD_ENTRY", "value": "true"}
    ]);
    let istiod_container = json!({
        "name": "discovery", "image": format!("docker.io/istio/pilot:{ISTIO_VERSION}"),
        "args": ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info", "--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m"],
        "ports": [{"containerPort": 8080, "protocol": "TCP"}, {"containerPort": 15010, "protocol": "TCP"}, {"containerPort": 15017, "protocol": "TCP"}],
        "env": istiod_env,
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "initialDelaySeconds": 1, "periodSeconds": 3, "timeoutSeconds": 5},
    });
    out.push(deployment("istio-system", "istiod", &istiod_labels, "istiod", vec![istiod_container], 1, None));
    out.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "istiod", "istio": "pilot"}},
        "spec": {"selector": {"app": "istiod"}, "ports": [
            {"name": "grpc-xds", "port": 15010, "protocol": "TCP"},
            {"name": "https-dns", "port": 15012, "protocol": "TCP"},
            {"name": "https-webhook", "port": 443, "targetPort": 15017, "protocol": "TCP"}]}
    }));
    let gw_labels = json!({"app": "istio-eastwestgateway", "istio": "eastwestgateway", "topology.istio.io/network": network});
    let gw_container = json!({
        "name": "istio-proxy", "image": format!("docker.io/istio/proxyv2:{ISTIO_VERSION}"),
        "args": ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning", "--log_output_level=default:info"],
        "env": [
            {"name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": network},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}}
        ],
        "ports": [{"containerPort": 15021, "protocol": "TCP"}, {"containerPort": 15443, "protocol": "TCP"}, {"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
    });
    out.push(deployment("istio-system", "istio-eastwestgateway", &gw_labels, "default", vec![gw_container], 1, None));
    out.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "istio-eastwestgateway", "namespace": "istio-system", "labels": gw_labels},
        "spec": {"type": "LoadBalancer", "selector": {"istio": "eastwestgateway"}, "ports": [
            {"name": "status-port", "port": 15021, "protocol": "TCP", "targetPort": 15021},
            {"name": "tls", "port": 15443, "protocol": "TCP", "targetPort": 15443},
            {"name": "tls-istiod", "port": 15012, "protocol": "TCP", "targetPort": 15012},
            {"name": "tls-webhook", "port": 15017, "protocol": "TCP", "targetPort": 15017}]},
        "status": {"loadBalancer": {"ingress": [{"ip": eastwest_address(spec.index), "ipMode": "VIP"}]}}
    }));
    if spec.topology == MeshTopology::SharedDiscovery {
        for other in spec.cluster_names.iter().filter(|n| **n != spec.name) {
            out.push(json!({
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": format!("istio-remote-secret-{other}"), "namespace": "istio-system",
                             "labels": {"istio/multiCluster": "true"}, "annotations": {"networking.istio.io/cluster": other}},
                "data": {other.clone(): "cmVtb3RlIGt1YmVjb25maWcgKHNpbXVsYXRlZCk="}
            }));
        }
    }
}

fn service(out: &mut Vec<Value>, spec: &ClusterSpec, namespace: &str, app: &str, versions: &[(&str, usize)], port: u16) {
    let sa = format!("bookinfo-{app}");
    out.push(
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": namespace, "labels": {"account": app}}}),
    );
    out.push(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": app, "namespace": namespace, "labels": {"app": app, "service": app}},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": port, "protocol": "TCP", "targetPort": port}]}
    }));
    for (version, replicas) in versions {
        let labels = json!({"app": app, "version": version});
        let app_container = json!({
            "name": app, "image": format!("docker.io/istio/examples-bookinfo-{app}-{version}:1.20.3"), "imagePullPolicy": "IfNotPresent",
            "env": [{"name": "LOG_DIR", "value": "/tmp/logs"}],
            "ports": [{"containerPort": port, "protocol": "TCP"}],
            "securityContext": {"runAsUser": 1000},
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        });
        let sidecar = Sidecar { cluster: &spec.name, network: &network_of(spec.index, spec.topology), app, port };
        out.push(deployment(namespace, &format!("{app}-{version}"), &labels, &sa, vec![app_container], *replicas, Some(&sidecar)));
    }
}

/// What Istio's injector adds to a workload (istioctl kube-inject): the world's
/// pod templates carry it already, since neither fleet runs the webhook.
struct Sidecar<'a> {
    cluster: &'a str,
    network: &'a str,
    app: &'a str,
    port: u16,
}

fn deployment(
    namespace: &str,
    name: &str,
    labels: &Value,
    service_account: &str,
    containers: Vec<Value>,
    replicas: usize,
    sidecar: Option<&Sidecar>,
) -> Value {
    let mut template_labels = labels.clone();
    let mut annotations = json!({});
    let mut spec = json!({"serviceAccountName": service_account, "containers": containers});
    if let Some(s) = sidecar {
        inject(&mut template_labels, &mut annotations, &mut spec, s, namespace, name);
    }
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": template_labels, "annotations": annotations}, "spec": spec}},
    })
}

fn inject(labels: &mut Value, annotations: &mut Value, spec: &mut Value, s: &Sidecar, namespace: &str, workload: &str) {
    let proxy_image = format!("docker.io/istio/proxyv2:{ISTIO_VERSION}");
    labels["sidecar.istio.io/inject"] = json!("true");
    labels["security.istio.io/tlsMode"] = json!("istio");
    labels["service.istio.io/canonical-name"] = labels.get("app").cloned().unwrap_or(json!(s.app));
    labels["service.istio.io/canonical-revision"] = labels.get("version").cloned().unwrap_or(json!("latest"));
    *annotations = json!({
        "sidecar.istio.io/status": r#"{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["workload-socket","credential-socket","workload-certs","istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"],"imagePullSecrets":null,"revision":"default"}"#,
        "istio.io/rev": "default",
        "kubectl.kubernetes.io/default-container": s.app,
        "kubectl.kubernetes.io/default-logs-container": s.app,
        "prometheus.io/path": "/stats/prometheus",
        "prometheus.io/port": "15020",
        "prometheus.io/scrape": "true",
    });
    let field = |path: &str| json!({"fieldRef": {"apiVersion": "v1", "fieldPath": path}});
    let env = json!([
        {"name": "PILOT_CERT_PROVIDER", "value": "istiod"},
        {"name": "CA_ADDR", "value": "istiod.istio-system.svc:15012"},
        {"name": "POD_NAME", "valueFrom": field("metadata.name")},
        {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
        {"name": "INSTANCE_IP", "valueFrom": field("status.podIP")},
        {"name": "SERVICE_ACCOUNT", "valueFrom": field("spec.serviceAccountName")},
        {"name": "HOST_IP", "valueFrom": field("status.hostIP")},
        {"name": "ISTIO_CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"divisor": "0", "resource": "limits.cpu"}}},
        {"name": "PROXY_CONFIG", "value": "{}\n"},
        {"name": "ISTIO_META_POD_PORTS", "value": format!("[\n    {{\"containerPort\":{},\"protocol\":\"TCP\"}}\n]", s.port)},
        {"name": "ISTIO_META_APP_CONTAINERS", "value": s.app},
        {"name": "GOMEMLIMIT", "valueFrom": {"resourceFieldRef": {"divisor": "0", "resource": "limits.memory"}}},
        {"name": "GOMAXPROCS", "valueFrom": {"resourceFieldRef": {"divisor": "0", "resource": "limits.cpu"}}},
        {"name": "ISTIO_META_CLUSTER_ID", "value": s.cluster},
        {"name": "ISTIO_META_NODE_NAME", "valueFrom": field("spec.nodeName")},
        {"name": "ISTIO_META_INTERCEPTION_MODE", "value": "REDIRECT"},
        {"name": "ISTIO_META_WORKLOAD_NAME", "value": workload},
        {"name": "ISTIO_META_OWNER", "value": format!("kubernetes://apis/apps/v1/namespaces/{namespace}/deployments/{workload}")},
        {"name": "ISTIO_META_MESH_ID", "value": "mesh1"},
        {"name": "ISTIO_META_NETWORK", "value": s.network},
        {"name": "TRUST_DOMAIN", "value": "cluster.local"},
        {"name": "ISTIO_META_DNS_CAPTURE", "value": "true"},
    ]);
    let proxy = json!({
        "name": "istio-proxy", "image": proxy_image, "imagePullPolicy": "IfNotPresent",
        "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning",
                 "--proxyComponentLogLevel=misc:error", "--log_output_level=default:info"],
        "env": env,
        "ports": [{"containerPort": 15090, "name": "http-envoy-prom", "protocol": "TCP"}],
        "readinessProbe": {"failureThreshold": 4, "httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                           "periodSeconds": 15, "successThreshold": 1, "timeoutSeconds": 3},
        "startupProbe": {"failureThreshold": 600, "httpGet": {"path": "/healthz/ready", "port": 15021, "scheme": "HTTP"},
                         "periodSeconds": 1, "successThreshold": 1, "timeoutSeconds": 3},
        "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "privileged": false,
                            "readOnlyRootFilesystem": true, "runAsGroup": 1337, "runAsNonRoot": true, "runAsUser": 1337},
        "volumeMounts": [
            {"mountPath": "/var/run/secrets/workload-spiffe-uds", "name": "workload-socket"},
            {"mountPath": "/var/run/secrets/credential-uds", "name": "credential-socket"},
            {"mountPath": "/var/run/secrets/workload-spiffe-credentials", "name": "workload-certs"},
            {"mountPath": "/var/run/secrets/istio", "name": "istiod-ca-cert"},
            {"mountPath": "/var/lib/istio/data", "name": "istio-data"},
            {"mountPath": "/etc/istio/proxy", "name": "istio-envoy"},
            {"mountPath": "/var/run/secrets/tokens", "name": "istio-token"},
            {"mountPath": "/etc/istio/pod", "name": "istio-podinfo"}
        ],
    });
    let init = json!({
        "name": "istio-init", "image": format!("docker.io/istio/proxyv2:{ISTIO_VERSION}"), "imagePullPolicy": "IfNotPresent",
        "args": ["istio-iptables", "-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "", "-b", "*",
                 "-d", "15090,15021,15020", "--log_output_level=default:info"],
        "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]},
                            "privileged": false, "readOnlyRootFilesystem": false, "runAsGroup": 0, "runAsNonRoot": false, "runAsUser": 0},
    });
    if let Some(cs) = spec["containers"].as_array_mut() {
        cs.push(proxy);
    }
    spec["initContainers"] = json!([init]);
    spec["volumes"] = json!([
        {"name": "tmp", "emptyDir": {}},
        {"name": "workload-socket", "emptyDir": {}},
        {"name": "credential-socket", "emptyDir": {}},
        {"name": "workload-certs", "emptyDir": {}},
        {"name": "istio-envoy", "emptyDir": {"medium": "Memory"}},
        {"name": "istio-data", "emptyDir": {}},
        {"name": "istio-podinfo", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}}]}},
        {"name": "istio-token", "projected": {"sources": [
            {"serviceAccountToken": {"audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}},
        {"name": "istiod-ca-cert", "configMap": {"name": "istio-ca-root-cert"}}
    ]);
}

/// The world as multi-document YAML, one cluster per file, for `kubectl apply
/// --server-side -f` or the real test bed's loader.
pub fn to_yaml(objects: &[Value]) -> String {
    objects.iter().map(meshdeck_files::yaml::to_yaml).collect::<Vec<_>>().join("---\n")
}
