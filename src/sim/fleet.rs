//! The simulated world: bookinfo on every cluster (the talk's setup), Istio's
//! install facts, optional extra services for scale, and the life that makes
//! the live view move (pod restarts, rollouts, a cluster going away).

use std::sync::Arc;

use rand::{Rng, rngs::StdRng};
use serde_json::{Value, json};

use super::cluster::SimCluster;
use super::faults::Fault;
use super::status::ApiError;
use super::store::now_rfc3339;

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

/// A documentation-range address (RFC 5737): shown, never dialled.
pub fn eastwest_address(index: usize) -> String {
    let (net, host) = (index / 200, 10 + index % 200);
    let prefix = ["192.0.2", "198.51.100", "203.0.113"][net % 3];
    format!("{prefix}.{host}")
}

fn ns(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

pub fn populate(c: &SimCluster, spec: &ClusterSpec) -> Result<(), ApiError> {
    let network = network_of(spec.index, spec.topology);
    c.put("", "v1", "namespaces", ns("kube-system", json!({})))?;
    c.put("", "v1", "namespaces", ns("istio-system", json!({"topology.istio.io/network": network})))?;
    c.put("", "v1", "namespaces", ns("default", json!({"istio-injection": "enabled"})))?;
    install_istio(c, spec, &network)?;
    let bookinfo: Vec<(&str, Vec<&str>)> = vec![
        ("productpage", vec!["v1"]),
        ("details", vec!["v1"]),
        ("ratings", vec!["v1"]),
        ("reviews", reviews_versions(spec.index).to_vec()),
    ];
    for (app, versions) in &bookinfo {
        let replicas: Vec<(&str, usize)> = versions.iter().map(|v| (*v, 1)).collect();
        add_service(c, spec, "default", app, &replicas, 9080)?;
    }
    for i in 0..spec.services {
        let namespace = format!("apps-{}", i % 10);
        if i < 10 {
            c.put("", "v1", "namespaces", ns(&namespace, json!({"istio-injection": "enabled"})))?;
        }
        let name = format!("svc-{i:04}");
        add_service(c, spec, &namespace, &name, &[("v1", 2), ("v2", 1)], 8080)?;
    }
    Ok(())
}

fn install_istio(c: &SimCluster, spec: &ClusterSpec, network: &str) -> Result<(), ApiError> {
    let trust_domain = match spec.topology {
        MeshTopology::Federation => format!("{}.local", spec.name),
        MeshTopology::SharedDiscovery => "cluster.local".into(),
    };
    let mesh = format!(
        "trustDomain: {trust_domain}\ndefaultConfig:\n  meshId: mesh1\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: \"true\"\nenablePrometheusMerge: true\nrootNamespace: istio-system\n"
    );
    c.put(
        "",
        "v1",
        "configmaps",
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "istio", "namespace": "istio-system", "labels": {"istio.io/rev": "default", "release": "istio"}},
            "data": {"mesh": mesh, "meshNetworks": "networks: {}"}
        }),
    )?;
    for namespace in ["istio-system", "default"] {
        c.put(
            "",
            "v1",
            "configmaps",
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "istio-ca-root-cert", "namespace": namespace, "labels": {"istio.io/config": "true"}},
                "data": {"root-cert.pem": spec.root_cert_pem}
            }),
        )?;
    }
    let istiod_env = json!([
        {"name": "CLUSTER_ID", "value": spec.name},
        {"name": "PILOT_ENABLE_CROSS_CLUSTER_WORKLOAD_ENTRY", "value": "true"}
    ]);
    deployment_with_pods(
        c,
        "istio-system",
        "istiod",
        &[("istiod", "app")],
        json!({"app": "istiod", "istio": "pilot", "istio.io/rev": "default", "operator.istio.io/version": ISTIO_VERSION}),
        &format!("docker.io/istio/pilot:{ISTIO_VERSION}"),
        istiod_env,
        1,
        spec.index,
        false,
    )?;
    c.put("", "v1", "services", json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "istiod", "namespace": "istio-system", "labels": {"app": "istiod", "istio": "pilot"}},
        "spec": {"selector": {"app": "istiod"}, "ports": [{"name": "grpc-xds", "port": 15010, "protocol": "TCP"}, {"name": "https-dns", "port": 15012, "protocol": "TCP"}, {"name": "https-webhook", "port": 443, "targetPort": 15017, "protocol": "TCP"}]}
    }))?;
    deployment_with_pods(
        c,
        "istio-system",
        "istio-eastwestgateway",
        &[],
        json!({"app": "istio-eastwestgateway", "istio": "eastwestgateway", "topology.istio.io/network": network}),
        &format!("docker.io/istio/proxyv2:{ISTIO_VERSION}"),
        json!([{"name": "ISTIO_META_REQUESTED_NETWORK_VIEW", "value": network}]),
        1,
        spec.index,
        false,
    )?;
    c.put(
        "",
        "v1",
        "services",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "istio-eastwestgateway", "namespace": "istio-system",
                         "labels": {"app": "istio-eastwestgateway", "istio": "eastwestgateway", "topology.istio.io/network": network}},
            "spec": {"type": "LoadBalancer", "selector": {"istio": "eastwestgateway"}, "ports": [
                {"name": "status-port", "port": 15021, "protocol": "TCP", "nodePort": 31021},
                {"name": "tls", "port": 15443, "protocol": "TCP", "nodePort": 31443},
                {"name": "tls-istiod", "port": 15012, "protocol": "TCP", "nodePort": 31012},
                {"name": "tls-webhook", "port": 15017, "protocol": "TCP", "nodePort": 31017}]},
            "status": {"loadBalancer": {"ingress": [{"ip": eastwest_address(spec.index)}]}}
        }),
    )?;
    set_service_status(
        c,
        "istio-system",
        "istio-eastwestgateway",
        json!({"loadBalancer": {"ingress": [{"ip": eastwest_address(spec.index)}]}}),
    )?;
    if spec.topology == MeshTopology::SharedDiscovery {
        for other in spec.cluster_names.iter().filter(|n| **n != spec.name) {
            c.put(
                "",
                "v1",
                "secrets",
                json!({
                    "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": format!("istio-remote-secret-{other}"), "namespace": "istio-system",
                                 "labels": {"istio/multiCluster": "true"}, "annotations": {"networking.istio.io/cluster": other}},
                    "data": {other.clone(): "cmVtb3RlIGt1YmVjb25maWcgKHNpbXVsYXRlZCk="}
                }),
            )?;
        }
    }
    Ok(())
}

fn set_service_status(c: &SimCluster, namespace: &str, name: &str, status: Value) -> Result<(), ApiError> {
    let rt = c.resource("", "v1", "services").ok_or_else(|| ApiError::not_found("resource", "services"))?;
    c.store().set_status(&rt, namespace, name, status)
}

fn add_service(
    c: &SimCluster,
    spec: &ClusterSpec,
    namespace: &str,
    app: &str,
    versions: &[(&str, usize)],
    port: u16,
) -> Result<(), ApiError> {
    let sa = format!("bookinfo-{app}");
    c.put(
        "",
        "v1",
        "serviceaccounts",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": namespace, "labels": {"account": app}}}),
    )?;
    c.put(
        "",
        "v1",
        "services",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": app, "namespace": namespace, "labels": {"app": app, "service": app}},
            "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": port, "protocol": "TCP", "targetPort": port}]}
        }),
    )?;
    let mut addresses = Vec::new();
    for (version, replicas) in versions {
        let labels = json!({"app": app, "version": version});
        let image = format!("docker.io/istio/examples-bookinfo-{app}-{version}:1.20.3");
        let env = json!([{"name": "LOG_DIR", "value": "/tmp/logs"}]);
        let ips = deployment_with_pods(
            c,
            namespace,
            &format!("{app}-{version}"),
            &[(app, "sa")],
            labels,
            &image,
            env,
            *replicas,
            spec.index,
            true,
        )?;
        addresses.extend(ips);
    }
    let eps: Vec<Value> =
        addresses.iter().map(|(ip, pod)| json!({"ip": ip, "targetRef": {"kind": "Pod", "name": pod, "namespace": namespace}})).collect();
    c.put(
        "",
        "v1",
        "endpoints",
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": app, "namespace": namespace, "labels": {"app": app}},
            "subsets": [{"addresses": eps, "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}]
        }),
    )?;
    Ok(())
}

fn short_hash(s: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(s.as_bytes());
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    d.iter().take(10).map(|b| alphabet[*b as usize % alphabet.len()] as char).collect()
}

/// A Deployment and its running pods; returns the pods' (ip, name).
#[allow(clippy::too_many_arguments)]
fn deployment_with_pods(
    c: &SimCluster,
    namespace: &str,
    name: &str,
    sa: &[(&str, &str)],
    labels: Value,
    image: &str,
    env: Value,
    replicas: usize,
    cluster_index: usize,
    injected: bool,
) -> Result<Vec<(String, String)>, ApiError> {
    let service_account = sa
        .first()
        .map(|(app, kind)| if *kind == "sa" { format!("bookinfo-{app}") } else { app.to_string() })
        .unwrap_or_else(|| "default".into());
    let container_name = labels.get("app").and_then(Value::as_str).unwrap_or(name).to_string();
    let template_hash = short_hash(&format!("{namespace}/{name}/{image}"))[..10].to_string();
    c.put("apps", "v1", "deployments", json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels, "annotations": {"sidecar.istio.io/inject": injected.to_string()}},
                              "spec": {"serviceAccountName": service_account, "containers": [{"name": container_name, "image": image, "env": env}]}}},
    }))?;
    let mut out = Vec::new();
    for r in 0..replicas {
        let suffix = &short_hash(&format!("{namespace}/{name}/{r}/{cluster_index}"))[..5];
        let pod_name = format!("{name}-{template_hash}-{suffix}");
        let ip = pod_ip(cluster_index, &pod_name);
        c.put(
            "",
            "v1",
            "pods",
            pod(
                namespace,
                name,
                &pod_name,
                &labels,
                &template_hash,
                &service_account,
                &container_name,
                image,
                injected,
                &ip,
                cluster_index,
            ),
        )?;
        out.push((ip, pod_name));
    }
    let dep_rt = c.resource("apps", "v1", "deployments").ok_or_else(|| ApiError::not_found("resource", "deployments"))?;
    c.store().set_status(&dep_rt, namespace, name, json!({"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas, "observedGeneration": 1}))?;
    Ok(out)
}

fn pod_ip(cluster_index: usize, pod_name: &str) -> String {
    let h = short_hash(pod_name).bytes().fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    format!("10.{}.{}.{}", 100 + cluster_index % 100, (h >> 8) % 250, 2 + h % 250)
}

#[allow(clippy::too_many_arguments)]
fn pod(
    namespace: &str,
    deployment: &str,
    name: &str,
    labels: &Value,
    hash: &str,
    sa: &str,
    container: &str,
    image: &str,
    injected: bool,
    ip: &str,
    cluster_index: usize,
) -> Value {
    let mut labels = labels.clone();
    labels["pod-template-hash"] = json!(hash);
    let mut containers = vec![json!({"name": container, "image": image})];
    let mut statuses = vec![
        json!({"name": container, "ready": true, "restartCount": 0, "image": image, "started": true, "state": {"running": {"startedAt": now_rfc3339()}}}),
    ];
    let mut annotations = json!({});
    if injected {
        labels["security.istio.io/tlsMode"] = json!("istio");
        labels["service.istio.io/canonical-name"] = labels.get("app").cloned().unwrap_or(json!(container));
        labels["service.istio.io/canonical-revision"] = labels.get("version").cloned().unwrap_or(json!("latest"));
        annotations["sidecar.istio.io/status"] = json!(
            r#"{"initContainers":["istio-init"],"containers":["istio-proxy"],"volumes":["istio-envoy","istio-data","istio-podinfo","istio-token","istiod-ca-cert"]}"#
        );
        containers.push(json!({"name": "istio-proxy", "image": format!("docker.io/istio/proxyv2:{ISTIO_VERSION}")}));
        statuses.push(json!({"name": "istio-proxy", "ready": true, "restartCount": 0, "image": format!("docker.io/istio/proxyv2:{ISTIO_VERSION}"), "started": true, "state": {"running": {"startedAt": now_rfc3339()}}}));
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deployment}-{hash}"), "uid": "00000000-0000-0000-0000-000000000000", "controller": true}]},
        "spec": {"serviceAccountName": sa, "nodeName": format!("node-{}", cluster_index), "containers": containers},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": format!("172.31.{}.10", cluster_index % 250),
                   "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}],
                   "containerStatuses": statuses, "startTime": now_rfc3339()}
    })
}

/// One step of the fleet's own life: pods restarted last step come back ready,
/// and one bookinfo pod somewhere restarts (not ready, restart count up).
pub fn life_step(clusters: &[Arc<SimCluster>], rng: &mut StdRng) {
    for c in clusters.iter().filter(|c| c.fault() != Fault::Down) {
        let Some(pods_rt) = c.resource("", "v1", "pods") else {
            continue;
        };
        let pods = c.store().all_of(&pods_rt);
        for p in pods.iter().filter(|p| p.pointer("/status/containerStatuses/0/ready") == Some(&json!(false))) {
            set_pod_ready(c, &pods_rt, p, true);
        }
    }
    let Some(c) = clusters.get(rng.random_range(0..clusters.len().max(1))) else {
        return;
    };
    if c.fault() == Fault::Down {
        return;
    }
    let Some(pods_rt) = c.resource("", "v1", "pods") else {
        return;
    };
    let pods = c.store().all_of(&pods_rt);
    let candidates: Vec<&Arc<Value>> =
        pods.iter().filter(|p| p.pointer("/metadata/namespace").and_then(Value::as_str) == Some("default")).collect();
    if !candidates.is_empty() {
        let p = candidates[rng.random_range(0..candidates.len())];
        set_pod_ready(c, &pods_rt, p, false);
    }
}

fn set_pod_ready(c: &SimCluster, pods_rt: &super::resources::ResourceType, p: &Value, ready: bool) {
    let mut status = p.get("status").cloned().unwrap_or(json!({}));
    if let Some(first) = status.get_mut("containerStatuses").and_then(Value::as_array_mut).and_then(|l| l.first_mut()) {
        first["ready"] = json!(ready);
        if !ready {
            let n = first.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            first["restartCount"] = json!(n + 1);
        }
    }
    status["conditions"] = json!([{"type": "Ready", "status": if ready { "True" } else { "False" }}, {"type": "ContainersReady", "status": if ready { "True" } else { "False" }}]);
    let namespace = p.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    let name = p.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let _ = c.store().set_status(pods_rt, namespace, name, status);
}

/// Under `--chaos`: take a cluster other than the first down, or bring a down one back.
pub fn chaos_step(clusters: &[Arc<SimCluster>], rng: &mut StdRng) {
    if let Some(down) = clusters.iter().find(|c| c.fault() == Fault::Down) {
        down.set_fault(Fault::Healthy);
        return;
    }
    if clusters.len() > 1 {
        let c = &clusters[rng.random_range(1..clusters.len())];
        c.set_fault(Fault::Down);
    }
}

/// What a ReplicaSet controller would do: a deleted pod that a controller owns is
/// replaced by a new one (new name, not ready yet; the next life step readies it).
pub fn replace_deleted_pod(c: &SimCluster, deleted: &Value) {
    let owned = deleted.pointer("/metadata/ownerReferences/0/controller").and_then(Value::as_bool) == Some(true);
    let Some(pods_rt) = c.resource("", "v1", "pods").filter(|_| owned) else { return };
    let mut pod = deleted.clone();
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some((base, _)) = name.rsplit_once('-') else { return };
    let suffix = &short_hash(&format!("{name}/{}", now_rfc3339()))[..5];
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default().to_string();
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, _| matches!(k.as_str(), "labels" | "annotations" | "ownerReferences" | "namespace"));
        meta.insert("name".into(), json!(format!("{base}-{suffix}")));
    }
    if let Some(statuses) = pod.pointer_mut("/status/containerStatuses").and_then(Value::as_array_mut) {
        for s in statuses {
            s["ready"] = json!(false);
            s["restartCount"] = json!(0);
        }
    }
    pod["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
    pod["status"]["startTime"] = json!(now_rfc3339());
    let opts = super::store::WriteOptions { manager: "sim-controller".into(), ..Default::default() };
    let _ = c.store().create(&pods_rt, &namespace, pod, &opts);
}

/// `kubectl rollout restart` of one bookinfo Deployment: the template gets a
/// restartedAt annotation and its pods are deleted; the ReplicaSet stand-in
/// (`replace_deleted_pod`) brings new ones, not ready until the next life step.
pub fn rollout_step(clusters: &[Arc<SimCluster>], rng: &mut StdRng) {
    let Some(c) = clusters.get(rng.random_range(0..clusters.len().max(1))) else { return };
    let (Some(dep_rt), Some(pods_rt)) = (c.resource("apps", "v1", "deployments"), c.resource("", "v1", "pods")) else { return };
    if c.fault() == Fault::Down {
        return;
    }
    let deployments: Vec<Arc<Value>> = c
        .store()
        .all_of(&dep_rt)
        .into_iter()
        .filter(|d| d.pointer("/metadata/namespace").and_then(Value::as_str) == Some("default"))
        .collect();
    if deployments.is_empty() {
        return;
    }
    let d = &deployments[rng.random_range(0..deployments.len())];
    let name = d.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let selector = d.pointer("/spec/selector/matchLabels").cloned().unwrap_or_default();
    let mut restarted = (**d).clone();
    restarted["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] = json!(now_rfc3339());
    if let Some(m) = restarted.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    let opts = super::store::WriteOptions { manager: "kubectl-rollout".into(), ..Default::default() };
    let mut store = c.store();
    if store.update(&dep_rt, "default", &name, restarted, &opts).is_err() {
        return;
    }
    let selected =
        |p: &Value| selector.as_object().is_some_and(|sel| sel.iter().all(|(k, v)| p.pointer(&format!("/metadata/labels/{k}")) == Some(v)));
    let doomed: Vec<String> = store
        .all_of(&pods_rt)
        .iter()
        .filter(|p| p.pointer("/metadata/namespace").and_then(Value::as_str) == Some("default") && selected(p))
        .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str).map(String::from))
        .collect();
    for pod in doomed {
        let _ = store.delete(&pods_rt, "default", &pod, &super::store::DeleteOptions::default());
    }
}
