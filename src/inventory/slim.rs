//! Narrow shapes of the objects watched in bulk: only the fields the fleet model
//! reads are decoded. A pod from a real API server is 10–17 KB of JSON
//! (managedFields, init and sidecar containers with their env, probes and mounts,
//! volumes, statuses); decoded whole into `k8s_openapi`'s `Pod` it costs several
//! times that in memory while a page of 500 is in flight. Everything else in the
//! JSON is skipped by serde without being built.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::{Deserialize, Deserializer};

/// The annotation meshdeck reads on pods: injected by Istio's sidecar injector.
pub const SIDECAR_STATUS: &str = "sidecar.istio.io/status";

/// A pod as the fleet model needs it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimPod {
    #[serde(deserialize_with = "slim_meta")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<SlimPodSpec>,
    #[serde(default)]
    pub status: Option<SlimPodStatus>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlimPodSpec {
    #[serde(default)]
    pub service_account_name: Option<String>,
    #[serde(default)]
    pub containers: Vec<SlimContainer>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimContainer {
    pub name: String,
    /// The first two arguments only (`proxy router` marks a gateway).
    #[serde(default, deserialize_with = "first_two")]
    pub args: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimPodStatus {
    #[serde(default)]
    pub conditions: Vec<SlimCondition>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct SlimCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
}

impl k8s_openapi::Resource for SlimPod {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for SlimPod {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What a watcher and the model need of `metadata`: identity, version, labels, owners,
/// and the one annotation read. `managedFields` and the other annotations are skipped.
fn slim_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Meta {
        name: Option<String>,
        namespace: Option<String>,
        uid: Option<String>,
        resource_version: Option<String>,
        #[serde(default)]
        labels: Option<BTreeMap<String, String>>,
        #[serde(default, deserialize_with = "read_annotations")]
        annotations: Option<BTreeMap<String, String>>,
        #[serde(default)]
        owner_references: Option<Vec<OwnerReference>>,
    }
    let m = Meta::deserialize(d)?;
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        labels: m.labels,
        annotations: m.annotations,
        owner_references: m.owner_references,
        ..Default::default()
    })
}

fn read_annotations<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Keep;
    impl<'de> serde::de::Visitor<'de> for Keep {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of annotations")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut kept = BTreeMap::new();
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == SIDECAR_STATUS {
                    // Its presence is the fact; the value (a JSON document) is not kept.
                    map.next_value::<serde::de::IgnoredAny>()?;
                    kept.insert(SIDECAR_STATUS.to_string(), String::new());
                } else {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(Some(kept))
        }
    }
    d.deserialize_any(Keep)
}

fn first_two<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct Two;
    impl<'de> serde::de::Visitor<'de> for Two {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a list of arguments")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(vec![])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(2);
            while let Some(arg) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                if out.len() < 2 {
                    out.push(arg.into_owned());
                }
            }
            Ok(out)
        }
    }
    d.deserialize_any(Two)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_keeps_what_the_model_reads_and_nothing_else() {
        let pod: SlimPod = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "u", "resourceVersion": "7",
                "labels": {"app": "reviews"},
                "annotations": {"sidecar.istio.io/status": "{\"initContainers\":[\"istio-init\"]}", "kubectl.kubernetes.io/restartedAt": "x"},
                "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]},
            "spec": {"serviceAccountName": "sa", "containers": [{"name": "istio-proxy", "args": ["proxy", "router", "--domain", "x"], "env": [{"name": "A", "value": "b"}]}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": null}]}
        }))
        .expect("decodes");
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(
            pod.metadata.annotations.as_ref().map(|a| a.keys().cloned().collect::<Vec<_>>()),
            Some(vec![SIDECAR_STATUS.to_string()])
        );
        assert!(pod.metadata.managed_fields.is_none());
        assert_eq!(pod.spec.as_ref().map(|s| s.containers[0].args.clone()), Some(vec!["proxy".to_string(), "router".to_string()]));
        assert_eq!(pod.status.as_ref().map(|s| s.conditions[0].type_.as_str()), Some("Ready"));
    }
}
