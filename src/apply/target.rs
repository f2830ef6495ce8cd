//! Addressing Istio objects in a cluster: the version it serves each kind at
//! (discovered once), get, and the server-maintained fields left out of comparisons.

use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use std::time::{Duration, Instant};

use crate::inventory::watch::ISTIO_KINDS;
use crate::registry::Cluster;

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

/// What a kept copy's name carries (`cacerts-kept-<hash>`, see `apply::secret`).
pub const KEPT_MARK: &str = "-kept-";

/// A copy of a CA Secret kept beside it so a rollback can restore it (see `apply::secret`).
pub fn is_kept_copy(t: &ObjRef) -> bool {
    t.kind == "Secret" && t.name.contains(KEPT_MARK)
}

impl ObjRef {
    pub fn of(cluster: &str, obj: &Value) -> ObjRef {
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        let mut kind = s("/kind");
        // Two kinds are named Gateway: Istio's, and Gateway API's (a waypoint).
        if kind == "Gateway" && s("/apiVersion").starts_with(GATEWAY_API_GROUP) {
            kind = WAYPOINT_KIND.into();
        }
        ObjRef { cluster: cluster.into(), kind, namespace: s("/metadata/namespace"), name: s("/metadata/name") }
    }

    /// Where objects are written, in order: what others refer to comes first.
    pub fn write_order(&self) -> u8 {
        match self.kind.as_str() {
            // A CA's kept copy before the CA itself (see `apply::secret`).
            "Secret" if is_kept_copy(self) => 0,
            "Secret" => 1,
            "Gateway" | WAYPOINT_KIND => 0,
            "ServiceEntry" => 1,
            "DestinationRule" => 2,
            "VirtualService" | "HTTPRoute" => 3,
            // A route's backend Service before the route.
            "Service" => 1,
            _ => 4,
        }
    }
}

/// The kind's API resource at `v1` (group and plural; see `Served` for the version written).
pub fn resource(kind: &str) -> Option<(ApiResource, &'static str)> {
    resource_at(kind, "v1")
}

fn resource_at(kind: &str, version: &str) -> Option<(ApiResource, &'static str)> {
    // Besides Istio's kinds, meshdeck writes Istio's `cacerts` (see `apply::secret`) and
    // restarts istiod so it reads them (`meshdeck trust`).
    match kind {
        "Secret" => return Some((ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Secret"), "secrets"), "")),
        "Deployment" => {
            return Some((ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", "Deployment"), "deployments"), "apps"));
        }
        WAYPOINT_KIND => {
            let gvk = GroupVersionKind::gvk(GATEWAY_API_GROUP, "v1", "Gateway");
            return Some((ApiResource::from_gvk_with_plural(&gvk, "gateways"), GATEWAY_API_GROUP));
        }
        _ => {}
    }
    ISTIO_KINDS
        .iter()
        .chain(GATEWAY_API_KINDS)
        .find(|(_, k, _)| *k == kind)
        .map(|(group, k, plural)| (ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, k), plural), *group))
}

/// What the Gateway API path renders besides Istio's kinds: the route, and the
/// per-version Services it sends to (`render::gateway_api`). Written at `v1`.
pub const GATEWAY_API_KINDS: &[(&str, &str, &str)] =
    &[("gateway.networking.k8s.io", "HTTPRoute", "httproutes"), ("", "Service", "services")];

/// Gateway API's group.
pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// Gateway API's Gateway, as meshdeck names it beside Istio's Gateway (kubectl's
/// `gateways.gateway.networking.k8s.io`). meshdeck renders it only as a waypoint
/// (`render::waypoint`): namespace infrastructure no plan owns, never pruned.
pub const WAYPOINT_KIND: &str = "Gateway.gateway.networking.k8s.io";

/// Every kind a plan renders and prunes, so every kind a plan's objects are looked for in.
pub fn rendered_kinds() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    ISTIO_KINDS.iter().chain(GATEWAY_API_KINDS)
}

pub use crate::registry::Served;

impl Served {
    /// One discovery round (`watch::served_versions`), timed.
    pub async fn discover(client: &kube::Client) -> Result<Served, String> {
        let started = Instant::now();
        let by_kind = crate::inventory::watch::served_versions(client, None)
            .await
            .map_err(|e| format!("API discovery: {}", crate::registry::ClusterError::describe(&e)))?;
        Ok(Served { by_kind, round_trip: started.elapsed(), found_at: Instant::now() })
    }

    /// The version to use for `kind`; `v1` when the cluster does not serve it (the call then says so).
    pub fn version(&self, kind: &str) -> &'static str {
        self.by_kind.get(kind).copied().unwrap_or("v1")
    }

    /// Kept a minute (Istio may be upgraded, the cluster's network may change), and
    /// 10 s when some of Istio's CRDs are missing (they may be installed meanwhile).
    fn still_good(&self) -> bool {
        let complete = ISTIO_KINDS.iter().all(|(_, k, _)| self.by_kind.contains_key(k));
        self.found_at.elapsed() < if complete { KEEP } else { RECHECK }
    }

    /// How many calls to send this cluster at once. Every call in flight is a
    /// connection (kube speaks HTTP/1.1), and a TLS handshake costs more than a
    /// near cluster's answer; a far cluster is worth them.
    pub fn in_flight(&self) -> usize {
        if self.round_trip >= FAR { IN_FLIGHT } else { NEAR_IN_FLIGHT }
    }
}

const KEEP: Duration = Duration::from_secs(60);
const RECHECK: Duration = Duration::from_secs(10);

/// A cluster whose discovery round takes this long is far: its calls are sent together.
const FAR: Duration = Duration::from_millis(25);

/// Calls in flight at once to a far cluster: a plan's access reviews, reads and dry
/// runs each take one round trip (cluster2 300 ms away: `bench apply --latency 300ms`).
pub const IN_FLIGHT: usize = 16;

/// Calls in flight at once to a near cluster.
pub const NEAR_IN_FLIGHT: usize = 2;

/// The cluster's served versions, discovered once (see `Served::still_good`).
pub async fn served(cluster: &Cluster) -> Result<Served, String> {
    if let Some(s) = cluster.served.lock().ok().and_then(|s| s.clone()).filter(Served::still_good) {
        return Ok(s);
    }
    let client = cluster.client.clone()?;
    let found = Served::discover(&client).await?;
    if let Ok(mut kept) = cluster.served.lock() {
        *kept = Some(found.clone());
    }
    Ok(found)
}

/// Calls to send `cluster` at once, as its last discovery found it (near until known).
pub fn in_flight(cluster: &Cluster) -> usize {
    cluster.served.lock().ok().and_then(|s| s.as_ref().map(Served::in_flight)).unwrap_or(NEAR_IN_FLIGHT)
}

/// One object's address in one cluster, at the version the cluster serves.
pub struct Addressed {
    pub api: Api<DynamicObject>,
    pub resource: ApiResource,
}

impl Addressed {
    /// A body to send: the object at the served version.
    pub fn body(&self, obj: Value) -> Result<DynamicObject, String> {
        let mut o: DynamicObject = serde_json::from_value(obj).map_err(|e| e.to_string())?;
        o.types = Some(kube::core::TypeMeta { api_version: self.resource.api_version.clone(), kind: self.resource.kind.clone() });
        Ok(o)
    }
}

pub async fn api(cluster: &Cluster, target: &ObjRef) -> Result<Addressed, String> {
    let served = served(cluster).await?;
    let (resource, _) =
        resource_at(&target.kind, served.version(&target.kind)).ok_or_else(|| format!("meshdeck does not manage {}", target.kind))?;
    let client = cluster.client.clone()?;
    Ok(Addressed { api: Api::namespaced_with(client, &target.namespace, &resource), resource })
}

/// The live object, `None` if absent. Errors are one line of words.
pub async fn get(cluster: &Cluster, target: &ObjRef) -> Result<Option<Value>, String> {
    let at = api(cluster, target).await?;
    match at.api.get_opt(&target.name).await {
        Ok(Some(o)) => serde_json::to_value(o).map(Some).map_err(|e| e.to_string()),
        Ok(None) => Ok(None),
        Err(e) => Err(crate::registry::ClusterError::describe(&e)),
    }
}

/// Every target's live object (in the order given), as many at a time as `in_flight`
/// allows each cluster (for at most 8 clusters at once), each within `limit`.
pub async fn get_all(clusters: &[Cluster], targets: &[&ObjRef], limit: std::time::Duration) -> Vec<Result<Option<Value>, String>> {
    use futures::StreamExt;
    let mut names: Vec<&str> = targets.iter().map(|t| t.cluster.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let width: usize = clusters.iter().filter(|c| names.contains(&c.name.as_str())).map(in_flight).take(8).sum();
    // Collected first: a lazy map of borrowing futures is not `Send` enough for `tokio::spawn`.
    let reads: Vec<_> = targets
        .iter()
        .map(|t| async move {
            let cluster =
                clusters.iter().find(|c| c.name == t.cluster).ok_or_else(|| format!("{}: not a registered cluster", t.cluster))?;
            match tokio::time::timeout(limit, get(cluster, t)).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {}s", limit.as_secs_f32())),
            }
        })
        .collect();
    futures::stream::iter(reads).buffered(width.max(1)).collect().await
}

/// Annotations a controller writes after meshdeck's write (the Deployment controller
/// counts a restarted istiod's revisions): not meshdeck's to compare or restore.
const CONTROLLER_ANNOTATIONS: &[&str] = &["deployment.kubernetes.io/revision"];

/// The object as the user sees it: apiVersion, kind, name, namespace, labels,
/// annotations and spec (a Secret's type and data). What the server maintains is
/// left out. A Secret's data is here as it is: diffs show it through `secret::redacted`.
/// An object's resourceVersion (None: absent).
pub fn resource_version(o: Option<&Value>) -> Option<String> {
    o.and_then(|o| o.pointer("/metadata/resourceVersion")).and_then(Value::as_str).map(String::from)
}

/// Is `live` still as a write left it (`left`: its resourceVersion then, `wrote`: the
/// object as written)? A controller writing the object's status (istiod does for
/// every HTTPRoute) moves the resourceVersion and leaves what meshdeck wrote.
pub fn still_as_left(live: Option<&Value>, left: Option<&str>, wrote: Option<&Value>) -> bool {
    resource_version(live).as_deref() == left
        || match (live, wrote) {
            (Some(l), Some(w)) => normalized(l) == normalized(w),
            _ => false,
        }
}

/// What the API server allocates in a Service's spec, differently on each create.
const SERVICE_ALLOCATED: &[&str] = &["clusterIP", "clusterIPs"];

pub fn normalized(o: &Value) -> Value {
    let meta = o.get("metadata").cloned().unwrap_or_default();
    let mut m = json!({"name": meta.get("name"), "namespace": meta.get("namespace")});
    for k in ["labels", "annotations"] {
        let mut v = meta.get(k).cloned().unwrap_or_default();
        if let Some(a) = v.as_object_mut() {
            a.retain(|key, _| !CONTROLLER_ANNOTATIONS.contains(&key.as_str()));
        }
        if v.as_object().is_some_and(|m| !m.is_empty()) {
            m[k] = v;
        }
    }
    let mut out = json!({"apiVersion": o.get("apiVersion"), "kind": o.get("kind"), "metadata": m});
    if let Some(spec) = o.get("spec") {
        out["spec"] = spec.clone();
    }
    // A Service's cluster IPs are the server's to allocate (a dry run allocates others).
    if o.get("kind").and_then(Value::as_str) == Some("Service")
        && let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut)
    {
        for k in SERVICE_ALLOCATED {
            spec.remove(*k);
        }
    }
    for k in ["type", "data"] {
        if let Some(v) = o.get(k).filter(|_| o.get("kind").and_then(Value::as_str) == Some("Secret")) {
            out[k] = v.clone();
        }
    }
    crate::render::canonicalize(&mut out);
    out
}
