//! What a real API server adds to the built-in objects it stores: field
//! defaults (on every write), and on a pod's creation what the admission
//! plugins every cluster runs add (the service account token volume, default
//! tolerations, priority). tests/differential.rs measures the sim's objects
//! against kube-apiserver's; only absent fields are filled.

use serde_json::{Map, Value, json};

fn set(obj: &mut Map<String, Value>, key: &str, v: Value) {
    obj.entry(key.to_string()).or_insert(v);
}

fn each<'a>(v: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Map<String, Value>> {
    v.get_mut(key).and_then(Value::as_array_mut).into_iter().flatten().filter_map(Value::as_object_mut)
}

/// Defaults of every write, by kind.
pub fn on_write(kind: &str, obj: &mut Value) {
    match kind {
        "Pod" => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
                if let Some(s) = spec.as_object_mut() {
                    set(s, "enableServiceLinks", json!(true));
                }
            }
        }
        "Deployment" => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                set(spec, "replicas", json!(1));
                set(spec, "progressDeadlineSeconds", json!(600));
                set(spec, "revisionHistoryLimit", json!(10));
                set(spec, "strategy", json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}));
            }
            if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
                pod_spec(spec);
            }
        }
        "Service" => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                let external = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
                set(spec, "type", json!("ClusterIP"));
                if !external {
                    set(spec, "sessionAffinity", json!("None"));
                    set(spec, "ipFamilies", json!(["IPv4"]));
                    set(spec, "ipFamilyPolicy", json!("SingleStack"));
                    set(spec, "internalTrafficPolicy", json!("Cluster"));
                }
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        set(p, "protocol", json!("TCP"));
                        if let Some(port) = p.get("port").cloned() {
                            set(p, "targetPort", port);
                        }
                    }
                }
            }
            if let Some(o) = obj.as_object_mut() {
                set(o, "status", json!({"loadBalancer": {}}));
            }
        }
        _ => {}
    }
}

fn probe(p: &mut Map<String, Value>) {
    set(p, "timeoutSeconds", json!(1));
    set(p, "periodSeconds", json!(10));
    set(p, "successThreshold", json!(1));
    set(p, "failureThreshold", json!(3));
    if let Some(h) = p.get_mut("httpGet").and_then(Value::as_object_mut) {
        set(h, "scheme", json!("HTTP"));
    }
}

fn container(c: &mut Map<String, Value>) {
    set(c, "terminationMessagePath", json!("/dev/termination-log"));
    set(c, "terminationMessagePolicy", json!("File"));
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let tagged = image.rsplit('/').next().is_some_and(|last| last.contains(':') && !last.ends_with(":latest"));
    set(c, "imagePullPolicy", json!(if tagged { "IfNotPresent" } else { "Always" }));
    for key in ["readinessProbe", "livenessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(key).and_then(Value::as_object_mut) {
            probe(p);
        }
    }
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            set(p, "protocol", json!("TCP"));
        }
    }
    if let Some(env) = c.get_mut("env").and_then(Value::as_array_mut) {
        for e in env.iter_mut() {
            if let Some(f) = e.pointer_mut("/valueFrom/fieldRef").and_then(Value::as_object_mut) {
                set(f, "apiVersion", json!("v1"));
            }
        }
    }
}

fn pod_spec(spec: &mut Value) {
    for key in ["containers", "initContainers"] {
        for c in each(spec, key) {
            container(c);
        }
    }
    for v in each(spec, "volumes") {
        for source in ["configMap", "secret", "downwardAPI", "projected"] {
            if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
                set(s, "defaultMode", json!(420));
                if source == "downwardAPI" {
                    for item in s.get_mut("items").and_then(Value::as_array_mut).into_iter().flatten() {
                        if let Some(f) = item.pointer_mut("/fieldRef").and_then(Value::as_object_mut) {
                            set(f, "apiVersion", json!("v1"));
                        }
                    }
                }
            }
        }
    }
    let Some(s) = spec.as_object_mut() else { return };
    set(s, "restartPolicy", json!("Always"));
    set(s, "terminationGracePeriodSeconds", json!(30));
    set(s, "dnsPolicy", json!("ClusterFirst"));
    set(s, "securityContext", json!({}));
    set(s, "schedulerName", json!("default-scheduler"));
    if let Some(sa) = s.get("serviceAccountName").cloned() {
        set(s, "serviceAccount", sa);
    }
}

/// A pod's creation: what the ServiceAccount, DefaultTolerationSeconds and
/// Priority admission plugins add. `suffix` names the token volume.
pub fn on_pod_create(obj: &mut Value, suffix: &str) {
    let Some(spec) = obj.get_mut("spec") else { return };
    let volume = format!("kube-api-access-{suffix}");
    let has_token = each(spec, "volumes").any(|v| v.get("name").and_then(Value::as_str).is_some_and(|n| n.starts_with("kube-api-access-")));
    if !has_token {
        let mount = json!({"name": volume, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true});
        for key in ["containers", "initContainers"] {
            for c in each(spec, key) {
                let mounts = c.entry("volumeMounts").or_insert(json!([]));
                if let Some(m) = mounts.as_array_mut() {
                    m.push(mount.clone());
                }
            }
        }
        if let Some(s) = spec.as_object_mut() {
            let volumes = s.entry("volumes").or_insert(json!([]));
            if let Some(vs) = volumes.as_array_mut() {
                vs.push(json!({"name": volume, "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}}]}}));
            }
        }
    }
    let Some(s) = spec.as_object_mut() else { return };
    set(
        s,
        "tolerations",
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ]),
    );
    set(s, "priority", json!(0));
    set(s, "preemptionPolicy", json!("PreemptLowerPriority"));
}

/// Which kinds a real server counts generations for: the ones with a spec a
/// controller acts on (custom resources always).
pub fn tracks_generation(kind: &str, builtin: bool) -> bool {
    !builtin || matches!(kind, "Deployment" | "Pod" | "CustomResourceDefinition")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_only_what_is_absent() {
        let mut pod =
            json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y"}]}});
        on_write("Pod", &mut pod);
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(pod["spec"]["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(pod["spec"]["containers"][1]["imagePullPolicy"], "Always", "an untagged image is pulled always");
        on_pod_create(&mut pod, "abcde");
        assert_eq!(pod["spec"]["containers"][1]["volumeMounts"][0]["name"], "kube-api-access-abcde");
        let again = pod.clone();
        on_pod_create(&mut pod, "fghij");
        assert_eq!(pod, again, "a pod that has its token volume gets no second one");
    }
}
