//! Addressing Istio objects in a cluster: the kind's API resource, get, and
//! the server-maintained fields left out of comparisons.

use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::inventory::watch::ISTIO_KINDS;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjRef {
    pub cluster: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}/{}/{}", self.cluster, self.kind, self.namespace, self.name)
    }
}

impl ObjRef {
    pub fn of(cluster: &str, obj: &Value) -> ObjRef {
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        ObjRef { cluster: cluster.into(), kind: s("/kind"), namespace: s("/metadata/namespace"), name: s("/metadata/name") }
    }

    /// Where objects are written, in order: what others refer to comes first.
    pub fn write_order(&self) -> u8 {
        match self.kind.as_str() {
            "Gateway" => 0,
            "ServiceEntry" => 1,
            "DestinationRule" => 2,
            "VirtualService" => 3,
            _ => 4,
        }
    }
}

pub fn resource(kind: &str) -> Option<(ApiResource, &'static str)> {
    ISTIO_KINDS
        .iter()
        .find(|(_, k, _)| *k == kind)
        .map(|(group, k, plural)| (ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", k), plural), *group))
}

pub fn api(client: &kube::Client, target: &ObjRef) -> Result<Api<DynamicObject>, String> {
    let (ar, _) = resource(&target.kind).ok_or_else(|| format!("meshdeck does not manage {}", target.kind))?;
    Ok(Api::namespaced_with(client.clone(), &target.namespace, &ar))
}

/// The live object, `None` if absent. Errors are one line of words.
pub async fn get(client: &kube::Client, target: &ObjRef) -> Result<Option<Value>, String> {
    let api = api(client, target)?;
    match api.get_opt(&target.name).await {
        Ok(Some(o)) => serde_json::to_value(o).map(Some).map_err(|e| e.to_string()),
        Ok(None) => Ok(None),
        Err(e) => Err(crate::registry::ClusterError::describe(&e)),
    }
}

/// The object as the user sees it: apiVersion, kind, name, namespace, labels,
/// annotations and spec. What the server maintains is left out.
pub fn normalized(o: &Value) -> Value {
    let meta = o.get("metadata").cloned().unwrap_or_default();
    let mut m = json!({"name": meta.get("name"), "namespace": meta.get("namespace")});
    for k in ["labels", "annotations"] {
        if let Some(v) = meta.get(k).filter(|v| v.as_object().is_some_and(|m| !m.is_empty())) {
            m[k] = v.clone();
        }
    }
    let mut out = json!({"apiVersion": o.get("apiVersion"), "kind": o.get("kind"), "metadata": m});
    if let Some(spec) = o.get("spec") {
        out["spec"] = spec.clone();
    }
    crate::render::canonicalize(&mut out);
    out
}
