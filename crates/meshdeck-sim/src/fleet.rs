//! The simulated world: bookinfo on every cluster (the talk's setup), Istio's
//! install facts, optional extra services for scale, and the life that makes
//! the live view move (pod restarts, rollouts, a cluster going away).

use std::sync::Arc;

use rand::{Rng, rngs::StdRng};
use serde_json::{Value, json};

use super::cluster::SimCluster;
use super::faults::Fault;
use super::status::ApiError;
use super::store::{Stored, now_rfc3339};

pub use super::world::{ClusterSpec, ISTIO_VERSION, MeshTopology, eastwest_address, network_of};

/// Load the world into a cluster's store, then do what a real cluster's
/// controllers and kubelet would: pods for each Deployment (copies of its
/// template, running and ready), Deployment status, Endpoints per Service, and
/// the load-balancer address in a Service's status.
pub fn populate(c: &SimCluster, spec: &ClusterSpec) -> Result<(), ApiError> {
    let mut objects = super::world::cluster_objects(spec);
    // What an API server makes for itself at start: the `kubernetes` Service.
    objects.insert(
        3,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"],
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}], "sessionAffinity": "None"}
        }),
    );
    for obj in &objects {
        let Some((group, version, plural)) = super::world::resource_of(obj) else { continue };
        let mut desired = obj.clone();
        let status = desired.as_object_mut().and_then(|m| m.remove("status"));
        c.put(group, version, plural, desired)?;
        if let Some(status) = status {
            let rt = c.resource(group, version, plural).ok_or_else(|| ApiError::not_found("resource", plural))?;
            let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
            let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
            c.store().set_status(&rt, ns, name, status)?;
        }
    }
    let mut pods: Vec<Value> = Vec::new();
    for d in objects.iter().filter(|o| o["kind"] == "Deployment") {
        pods.extend(run_deployment(c, d, spec.index)?);
    }
    for svc in objects.iter().filter(|o| o["kind"] == "Service") {
        endpoints_for(c, svc, &pods)?;
    }
    Ok(())
}

fn short_hash(s: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(s.as_bytes());
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    d.iter().take(10).map(|b| alphabet[*b as usize % alphabet.len()] as char).collect()
}

/// The ReplicaSet controller and kubelet for one Deployment: its pods, running.
fn run_deployment(c: &SimCluster, d: &Value, cluster_index: usize) -> Result<Vec<Value>, ApiError> {
    let s = |p: &str| d.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let (namespace, name) = (s("/metadata/namespace"), s("/metadata/name"));
    let replicas = d.pointer("/spec/replicas").and_then(Value::as_u64).unwrap_or(1) as usize;
    let template = d.pointer("/spec/template").cloned().unwrap_or_default();
    let image = template.pointer("/spec/containers/0/image").and_then(Value::as_str).unwrap_or("");
    let template_hash = short_hash(&format!("{namespace}/{name}/{image}"))[..10].to_string();
    let mut out = Vec::new();
    for r in 0..replicas {
        let suffix = &short_hash(&format!("{namespace}/{name}/{r}/{cluster_index}"))[..5];
        let pod_name = format!("{name}-{template_hash}-{suffix}");
        let p = pod(&namespace, &name, &pod_name, &template, &template_hash, cluster_index);
        c.put("", "v1", "pods", p.clone())?;
        out.push(p);
    }
    let dep_rt = c.resource("apps", "v1", "deployments").ok_or_else(|| ApiError::not_found("resource", "deployments"))?;
    c.store().set_status(&dep_rt, &namespace, &name, deployment_status(replicas, &format!("{name}-{template_hash}")))?;
    Ok(out)
}

/// A Deployment's status as the deployment controller writes it once its pods are ready.
fn deployment_status(replicas: usize, replica_set: &str) -> Value {
    let now = now_rfc3339();
    json!({"replicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas, "availableReplicas": replicas,
           "observedGeneration": 1, "terminatingReplicas": 0,
           "conditions": [
               {"type": "Available", "status": "True", "lastUpdateTime": now, "lastTransitionTime": now,
                "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
               {"type": "Progressing", "status": "True", "lastUpdateTime": now, "lastTransitionTime": now,
                "reason": "NewReplicaSetAvailable", "message": format!("ReplicaSet \"{replica_set}\" has successfully progressed.")}]})
}

/// The endpoints controller for one Service: the ready pods its selector picks.
fn endpoints_for(c: &SimCluster, svc: &Value, pods: &[Value]) -> Result<(), ApiError> {
    let Some(selector) = svc.pointer("/spec/selector").and_then(Value::as_object) else { return Ok(()) };
    let namespace = svc.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    let name = svc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let selected: Vec<Value> = pods
        .iter()
        .filter(|p| p.pointer("/metadata/namespace").and_then(Value::as_str) == Some(namespace))
        .filter(|p| selector.iter().all(|(k, v)| p.pointer(&format!("/metadata/labels/{k}")) == Some(v)))
        .map(|p| {
            json!({"ip": p.pointer("/status/podIP"), "nodeName": p.pointer("/spec/nodeName"),
                   "targetRef": {"kind": "Pod", "name": p.pointer("/metadata/name"), "namespace": namespace}})
        })
        .collect();
    if selected.is_empty() {
        return Ok(());
    }
    let ports: Vec<Value> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter().map(|p| json!({"name": p.get("name"), "port": p.get("targetPort").or(p.get("port")), "protocol": "TCP"})).collect()
        })
        .unwrap_or_default();
    c.put(
        "",
        "v1",
        "endpoints",
        json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": name, "namespace": namespace, "labels": svc.pointer("/metadata/labels")},
            "subsets": [{"addresses": selected, "ports": ports}]
        }),
    )
}

fn pod_ip(cluster_index: usize, pod_name: &str) -> String {
    let h = short_hash(pod_name).bytes().fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    format!("10.{}.{}.{}", 100 + cluster_index % 100, (h >> 8) % 250, 2 + h % 250)
}

/// A pod as the ReplicaSet controller creates it from the template and the
/// kubelet reports it: running, every container started and ready.
fn pod(namespace: &str, deployment: &str, name: &str, template: &Value, hash: &str, cluster_index: usize) -> Value {
    let mut labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
    labels["pod-template-hash"] = json!(hash);
    let annotations = template.pointer("/metadata/annotations").cloned().unwrap_or(json!({}));
    let mut spec = template.get("spec").cloned().unwrap_or(json!({}));
    spec["nodeName"] = json!(format!("node-{cluster_index}"));
    let now = now_rfc3339();
    let ip = pod_ip(cluster_index, name);
    let status_of = |c: &Value, running: bool| {
        let image = c.get("image").cloned().unwrap_or_default();
        let image_id =
            format!("{}@sha256:{}", image.as_str().unwrap_or("").split(':').next().unwrap_or(""), short_hash(&image.to_string()).repeat(6));
        let state = if running {
            json!({"running": {"startedAt": now}})
        } else {
            json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}})
        };
        let container_id = format!("containerd://{}", short_hash(&format!("{name}/{}", c["name"])).repeat(6));
        let mut state = state;
        if let Some(t) = state.get_mut("terminated") {
            t["containerID"] = json!(container_id);
        }
        // A completed init container counts as ready; it is not started any more.
        json!({"name": c.get("name"), "image": image, "imageID": image_id, "ready": true, "started": running,
               "restartCount": 0, "containerID": container_id, "state": state, "lastState": {}})
    };
    let statuses: Vec<Value> =
        spec.get("containers").and_then(Value::as_array).map(|cs| cs.iter().map(|c| status_of(c, true)).collect()).unwrap_or_default();
    let init_statuses: Vec<Value> =
        spec.get("initContainers").and_then(Value::as_array).map(|cs| cs.iter().map(|c| status_of(c, false)).collect()).unwrap_or_default();
    let condition = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    let mut status = json!({
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": format!("172.31.{}.10", cluster_index % 250),
        "hostIPs": [{"ip": format!("172.31.{}.10", cluster_index % 250)}],
        "conditions": [condition("PodReadyToStartContainers"), condition("Initialized"), condition("Ready"), condition("ContainersReady"), condition("PodScheduled")],
        "containerStatuses": statuses, "startTime": now, "qosClass": "Burstable"
    });
    if !init_statuses.is_empty() {
        status["initContainerStatuses"] = json!(init_statuses);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "generateName": format!("{deployment}-{hash}-"), "namespace": namespace, "labels": labels, "annotations": annotations,
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deployment}-{hash}"),
                                          "uid": "00000000-0000-0000-0000-000000000000", "controller": true, "blockOwnerDeletion": true}]},
        "spec": spec,
        "status": status
    })
}

/// One step of the fleet's own life: pods restarted last step come back ready,
/// and one bookinfo pod somewhere restarts (not ready, restart count up).
pub fn life_step(clusters: &[Arc<SimCluster>], rng: &mut StdRng) {
    for c in clusters.iter().filter(|c| c.fault() != Fault::Down) {
        let Some(pods_rt) = c.resource("", "v1", "pods") else {
            continue;
        };
        // Parsing every pod of the fleet each step would cost more than the step.
        let pods = c.store().all_of(&pods_rt);
        for p in pods.iter().filter(|p| p.unready()).map(Stored::value) {
            set_pod_ready(c, &pods_rt, &p, true);
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
    let candidates: Vec<&Stored> = pods.iter().filter(|p| p.namespace() == "default").collect();
    if !candidates.is_empty() {
        let p = candidates[rng.random_range(0..candidates.len())].value();
        set_pod_ready(c, &pods_rt, &p, false);
    }
}

fn set_pod_ready(c: &SimCluster, pods_rt: &super::resources::ResourceType, p: &Value, ready: bool) {
    let mut status = p.get("status").cloned().unwrap_or(json!({}));
    if let Some(containers) = status.get_mut("containerStatuses").and_then(Value::as_array_mut) {
        // The first container restarts; once it is back, every container is ready.
        for (i, c) in containers.iter_mut().enumerate() {
            if ready {
                c["ready"] = json!(true);
            } else if i == 0 {
                c["ready"] = json!(false);
                let n = c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
                c["restartCount"] = json!(n + 1);
            }
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
    let deployments: Vec<Stored> = c.store().all_of(&dep_rt).into_iter().filter(|d| d.namespace() == "default").collect();
    if deployments.is_empty() {
        return;
    }
    let d = &deployments[rng.random_range(0..deployments.len())].value();
    let name = d.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let selector = d.pointer("/spec/selector/matchLabels").cloned().unwrap_or_default();
    let mut restarted = d.clone();
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
        |p: &Stored| selector.as_object().is_some_and(|sel| sel.iter().all(|(k, v)| p.labels().and_then(|l| l.get(k)) == Some(v)));
    let doomed: Vec<String> =
        store.all_of(&pods_rt).iter().filter(|p| p.namespace() == "default" && selected(p)).map(|p| p.name().to_string()).collect();
    for pod in doomed {
        let _ = store.delete(&pods_rt, "default", &pod, &super::store::DeleteOptions::default());
    }
}
