//! Kubernetes objects become the small facts the model keeps, here and only
//! here (the edge): a pod is its labels, readiness and sidecar; a service its
//! selector and ports. Pure functions.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use base64::Engine;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::DynamicObject;
use sha2::{Digest, Sha256};

use super::model::{IstioObject, RouteDestination};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodFacts {
    /// Shared by every pod with the same labels (see `LabelSets`).
    pub labels: Arc<BTreeMap<String, String>>,
    pub ready: bool,
    pub injected: bool,
    pub service_account: Option<String>,
}

/// The distinct label sets of one cluster's pods. Pods of one ReplicaSet carry the
/// same labels (pod-template-hash included), so a fleet of 30,000 pods holds a few
/// thousand sets, each once, instead of a map of strings per pod.
#[derive(Debug)]
pub struct LabelSets {
    sets: HashSet<Arc<BTreeMap<String, String>>>,
    /// When the table reaches this size, sets no pod holds any more are dropped.
    sweep_at: usize,
}

impl Default for LabelSets {
    fn default() -> Self {
        Self { sets: HashSet::new(), sweep_at: 64 }
    }
}

impl LabelSets {
    pub fn intern(&mut self, labels: &BTreeMap<String, String>) -> Arc<BTreeMap<String, String>> {
        if let Some(set) = self.sets.get(labels) {
            return set.clone();
        }
        if self.sets.len() >= self.sweep_at {
            self.sets.retain(|s| Arc::strong_count(s) > 1);
            self.sweep_at = (self.sets.len() * 2).max(64);
        }
        let set = Arc::new(labels.clone());
        self.sets.insert(set.clone());
        set
    }

    pub fn len(&self) -> usize {
        self.sets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

impl PodFacts {
    /// The pod's facts, its labels shared through `sets`.
    pub fn of(p: &super::slim::SlimPod, sets: &mut LabelSets) -> Self {
        let mut facts = PodFacts::from(p);
        facts.labels = sets.intern(&facts.labels);
        facts
    }
}

impl From<&super::slim::SlimPod> for PodFacts {
    fn from(p: &super::slim::SlimPod) -> Self {
        let ready = p.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        // A gateway runs the same istio-proxy container as `proxy router`.
        let sidecar = |c: &super::slim::SlimContainer| c.name == "istio-proxy" && !c.args.iter().any(|x| x == "router");
        let injected = p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(super::slim::SIDECAR_STATUS))
            || p.spec.as_ref().is_some_and(|s| s.containers.iter().any(sidecar));
        PodFacts {
            labels: Arc::new(p.metadata.labels.clone().unwrap_or_default()),
            ready,
            injected,
            service_account: p.spec.as_ref().and_then(|s| s.service_account_name.clone()),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceFacts {
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<u16>,
    pub port_details: Vec<super::model::ServicePort>,
    /// The east-west gateway's address, when this is one.
    pub east_west_address: Option<String>,
    /// `istio.io/use-waypoint` on the Service (over its namespace's).
    pub use_waypoint: Option<String>,
    /// `istio.io/global=true`: one service across the clusters (ambient multicluster).
    pub global: bool,
}

impl From<&Service> for ServiceFacts {
    fn from(s: &Service) -> Self {
        let spec = s.spec.as_ref();
        let is_eastwest = s.metadata.labels.as_ref().and_then(|l| l.get("istio")).is_some_and(|v| v == "eastwestgateway");
        let east_west_address = is_eastwest
            .then(|| {
                s.status
                    .as_ref()?
                    .load_balancer
                    .as_ref()?
                    .ingress
                    .as_ref()?
                    .first()
                    .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone()))
            })
            .flatten();
        ServiceFacts {
            selector: spec.and_then(|s| s.selector.clone()).unwrap_or_default(),
            ports: spec
                .and_then(|s| s.ports.as_ref())
                .map(|ps| ps.iter().filter_map(|p| u16::try_from(p.port).ok()).collect())
                .unwrap_or_default(),
            port_details: spec
                .and_then(|s| s.ports.as_ref())
                .map(|ps| {
                    ps.iter()
                        .filter_map(|p| {
                            Some(super::model::ServicePort {
                                number: u16::try_from(p.port).ok()?,
                                name: p.name.clone().unwrap_or_default(),
                                target_port: match &p.target_port {
                                    Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => u16::try_from(*n).ok(),
                                    // A named targetPort is the pods' business; unknown here.
                                    Some(_) => None,
                                    None => u16::try_from(p.port).ok(),
                                },
                                app_protocol: p.app_protocol.clone(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
            east_west_address,
            use_waypoint: s.metadata.labels.as_ref().and_then(|l| l.get(USE_WAYPOINT_LABEL).cloned()),
            global: s.metadata.labels.as_ref().and_then(|l| l.get(GLOBAL_LABEL)).is_some_and(|v| v == "true"),
        }
    }
}

impl ServiceFacts {
    /// An empty selector selects nothing (as for Services).
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        !self.selector.is_empty() && self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// What istiod's Deployment says: version (image tag or label), revision, cluster id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IstiodFacts {
    pub version: Option<String>,
    pub revision: Option<String>,
    pub cluster_id: Option<String>,
    /// `PILOT_SKIP_VALIDATE_TRUST_DOMAIN=true`: sidecars accept peers of any trust domain.
    pub skip_validate_trust_domain: bool,
}

impl From<&Deployment> for IstiodFacts {
    fn from(d: &Deployment) -> Self {
        let labels = d.metadata.labels.clone().unwrap_or_default();
        let container = d.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|s| s.containers.first());
        let tag = container.and_then(|c| c.image.as_deref()).and_then(|i| i.rsplit_once(':')).map(|(_, t)| t.to_string());
        let env = |name: &str| {
            container.and_then(|c| c.env.as_ref()).and_then(|env| env.iter().find(|e| e.name == name)).and_then(|e| e.value.clone())
        };
        IstiodFacts {
            version: labels.get("operator.istio.io/version").cloned().or(tag),
            revision: labels.get("istio.io/rev").cloned(),
            cluster_id: env("CLUSTER_ID"),
            skip_validate_trust_domain: env("PILOT_SKIP_VALIDATE_TRUST_DOMAIN").is_some_and(|v| v.eq_ignore_ascii_case("true")),
        }
    }
}

/// Facts from the ConfigMaps in istio-system.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeshConfigFacts {
    pub trust_domain: Option<String>,
    pub root_cert_fingerprint: Option<String>,
    /// The revision a mesh config belongs to: `istio` is the default one, `istio-<rev>` another.
    pub revision: Option<String>,
    /// Other trust domains this mesh's sidecars accept as peers: `trustDomainAliases`
    /// and the trust domains of `caCertificates` entries.
    pub accepted_trust_domains: Vec<String>,
    /// `trustDomainAliases` alone: what Istio's authorization takes as one identity.
    pub trust_domain_aliases: Vec<String>,
}

pub fn mesh_config_facts(cm: &ConfigMap) -> MeshConfigFacts {
    let data = cm.data.clone().unwrap_or_default();
    let name = cm.metadata.name.as_deref().unwrap_or("");
    match (name, data.get("mesh")) {
        ("istio-ca-root-cert", _) => {
            MeshConfigFacts { root_cert_fingerprint: data.get("root-cert.pem").and_then(|p| pem_fingerprint(p)), ..Default::default() }
        }
        // The mesh config of the default revision (`istio`) or of another (`istio-<rev>`).
        ("istio", Some(mesh)) => mesh_facts(mesh, "default"),
        (n, Some(mesh)) if n.starts_with("istio-") => mesh_facts(mesh, &n["istio-".len()..]),
        _ => MeshConfigFacts::default(),
    }
}

fn mesh_facts(mesh: &str, revision: &str) -> MeshConfigFacts {
    let v: serde_json::Value = serde_saphyr::from_str(mesh).unwrap_or_default();
    let strings = |v: Option<&serde_json::Value>| -> Vec<String> {
        v.and_then(|a| a.as_array()).into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
    };
    let mut aliases = strings(v.get("trustDomainAliases"));
    aliases.sort();
    aliases.dedup();
    let mut accepted = aliases.clone();
    for ca in v.get("caCertificates").and_then(|c| c.as_array()).into_iter().flatten() {
        accepted.extend(strings(ca.get("trustDomains")));
    }
    accepted.sort();
    accepted.dedup();
    MeshConfigFacts {
        trust_domain: trust_domain(mesh).or(Some("cluster.local".into())),
        root_cert_fingerprint: None,
        revision: Some(revision.to_string()),
        accepted_trust_domains: accepted,
        trust_domain_aliases: aliases,
    }
}

/// `trustDomain` from the mesh config YAML (Istio's default is `cluster.local`).
pub fn trust_domain(mesh_yaml: &str) -> Option<String> {
    let v: serde_json::Value = serde_saphyr::from_str(mesh_yaml).ok()?;
    Some(v.get("trustDomain").and_then(|t| t.as_str()).unwrap_or("cluster.local").to_string())
}

/// `sha256:<hex>` of the first certificate's DER bytes.
pub fn pem_fingerprint(pem: &str) -> Option<String> {
    let body: String =
        pem.lines().skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE")).skip(1).take_while(|l| !l.starts_with("-----END")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body.trim()).ok()?;
    let hex: String = Sha256::digest(&der).iter().map(|b| format!("{b:02x}")).collect();
    Some(format!("sha256:{hex}"))
}

/// What a Namespace says to Istio: the network (on `istio-system`), and how its
/// workloads join the mesh.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceFacts {
    pub network: Option<String>,
    /// `ambient` (`istio.io/dataplane-mode=ambient`), `sidecar` (injection on), or none.
    pub dataplane_mode: Option<String>,
    /// `istio.io/use-waypoint`: the waypoint its services' traffic goes through.
    pub use_waypoint: Option<String>,
}

pub fn namespace_facts(ns: &Namespace) -> NamespaceFacts {
    let labels = ns.metadata.labels.clone().unwrap_or_default();
    let get = |k: &str| labels.get(k).cloned();
    // Injected pods keep their sidecar, which takes precedence over ztunnel: a
    // namespace labelled for both (mid-migration) still routes as sidecars do.
    let dataplane_mode = if get("istio-injection").as_deref() == Some("enabled") || labels.contains_key("istio.io/rev") {
        Some("sidecar".to_string())
    } else if get(DATAPLANE_MODE_LABEL).as_deref() == Some("ambient") {
        Some("ambient".to_string())
    } else {
        None
    };
    NamespaceFacts { network: get("topology.istio.io/network"), dataplane_mode, use_waypoint: get(USE_WAYPOINT_LABEL) }
}

pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";
pub const USE_WAYPOINT_LABEL: &str = "istio.io/use-waypoint";

/// Gateway API's mesh route kinds: what Istio turns into a VirtualService for the parent Service.
pub fn is_mesh_route(kind: &str) -> bool {
    matches!(kind, "HTTPRoute" | "GRPCRoute")
}
/// Istio's label that makes a Service global in ambient multicluster: its
/// endpoints in every cluster are one service (sidecar multi-primary merges
/// every Service's endpoints anyway).
pub const GLOBAL_LABEL: &str = "istio.io/global";

/// The Services among Gateway API references (`parentRefs`, `backendRefs`) as hosts:
/// `name.namespace.svc.cluster.local` (a reference's namespace defaults to the route's;
/// its kind to `Service` in backendRefs, to `Gateway` in parentRefs).
pub fn service_refs(refs: Option<&serde_json::Value>, namespace: &str, default_kind: &str) -> Vec<String> {
    let mut hosts: Vec<String> = refs
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .filter(|r| {
            r.get("group").and_then(|g| g.as_str()).unwrap_or("").is_empty()
                && r.get("kind").and_then(|k| k.as_str()).unwrap_or(default_kind) == "Service"
        })
        .filter_map(|r| {
            let ns = r.get("namespace").and_then(|n| n.as_str()).unwrap_or(namespace);
            Some(format!("{}.{ns}.svc.cluster.local", r.get("name")?.as_str()?))
        })
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The backends an HTTPRoute's status says are not resolved (`ResolvedRefs` false,
/// `BackendNotFound`), as hosts: read from `status.parents[].conditions[]`, whose
/// message names the Service.
pub fn unresolved_backends(o: &serde_json::Value, namespace: &str) -> Vec<String> {
    let not_found = o
        .pointer("/status/parents")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .flat_map(|p| p.get("conditions").and_then(|c| c.as_array()).cloned().unwrap_or_default())
        .any(|c| c["type"] == "ResolvedRefs" && c["status"] == "False" && c["reason"] == "BackendNotFound");
    if !not_found {
        return Vec::new();
    }
    // Istio names the host in the message (`backend(reviews-v3.default.svc.cluster.local) not found`).
    let named: std::collections::BTreeSet<String> = o
        .pointer("/status/parents")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .flat_map(|p| p.get("conditions").and_then(|c| c.as_array()).cloned().unwrap_or_default())
        .filter_map(|c| c["message"].as_str().map(String::from))
        .flat_map(|m| m.split("backend(").skip(1).filter_map(|rest| rest.split_once(')').map(|(h, _)| h.to_string())).collect::<Vec<_>>())
        .collect();
    if !named.is_empty() {
        return named.into_iter().collect();
    }
    // Otherwise every backend that is a Service is a candidate.
    o.pointer("/spec/rules")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .flat_map(|rule| service_refs(rule.get("backendRefs"), namespace, "Service"))
        .collect::<std::collections::BTreeSet<String>>()
        .into_iter()
        .collect()
}

/// The summary of an Istio object kept for the service view and drift.
pub fn istio_object(cluster: &str, kind: &str, o: &DynamicObject) -> IstioObject {
    let labels = o.metadata.labels.clone().unwrap_or_default();
    let strings = |v: Option<&serde_json::Value>| -> Vec<String> {
        v.and_then(|h| h.as_array()).into_iter().flatten().filter_map(|h| h.as_str().map(String::from)).collect()
    };
    let hosts = match (kind, o.data.pointer("/spec/hosts")) {
        // A Gateway's hosts are per server.
        ("Gateway", _) => {
            let mut hs: Vec<String> = o
                .data
                .pointer("/spec/servers")
                .and_then(|s| s.as_array())
                .into_iter()
                .flatten()
                .flat_map(|server| strings(server.get("hosts")))
                .collect();
            hs.sort();
            hs.dedup();
            hs
        }
        // A mesh route's host is its parent Service's.
        ("HTTPRoute" | "GRPCRoute", _) => {
            service_refs(o.data.pointer("/spec/parentRefs"), &o.metadata.namespace.clone().unwrap_or_default(), "Gateway")
        }
        (_, Some(h)) => strings(Some(h)),
        (_, None) => o.data.pointer("/spec/host").and_then(|h| h.as_str()).map(|h| vec![h.to_string()]).unwrap_or_default(),
    };
    let subsets = match kind {
        "DestinationRule" => o
            .data
            .pointer("/spec/subsets")
            .and_then(|s| s.as_array())
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let name = s.get("name")?.as_str()?.to_string();
                let labels = s.get("labels").and_then(|l| serde_json::from_value(l.clone()).ok()).unwrap_or_default();
                Some((name, labels))
            })
            .collect(),
        _ => Default::default(),
    };
    let mut destinations: Vec<RouteDestination> = match kind {
        "HTTPRoute" | "GRPCRoute" => o
            .data
            .pointer("/spec/rules")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
            .flat_map(|rule| service_refs(rule.get("backendRefs"), &o.metadata.namespace.clone().unwrap_or_default(), "Service"))
            .map(|host| RouteDestination { host, subset: None })
            .collect(),
        "VirtualService" => ["http", "tls", "tcp"]
            .iter()
            .filter_map(|k| o.data.pointer(&format!("/spec/{k}")).and_then(|r| r.as_array()))
            .flatten()
            .filter_map(|rule| rule.get("route").and_then(|r| r.as_array()))
            .flatten()
            .filter_map(|r| {
                let d = r.get("destination")?;
                Some(RouteDestination {
                    host: d.get("host")?.as_str()?.to_string(),
                    subset: d.get("subset").and_then(|s| s.as_str()).map(String::from),
                })
            })
            .collect(),
        _ => vec![],
    };
    destinations.sort();
    destinations.dedup();
    IstioObject {
        cluster: cluster.into(),
        kind: kind.into(),
        namespace: o.metadata.namespace.clone().unwrap_or_default(),
        name: o.metadata.name.clone().unwrap_or_default(),
        hosts,
        managed: labels.get("app.kubernetes.io/managed-by").is_some_and(|v| v == "meshdeck"),
        plan: labels.get("meshdeck.dev/plan").cloned(),
        subsets,
        destinations,
        unresolved: if is_mesh_route(kind) {
            unresolved_backends(&o.data, &o.metadata.namespace.clone().unwrap_or_default())
        } else {
            Vec::new()
        },
        read_from: None,
        spec: o.data.get("spec").map(|s| s.to_string()).unwrap_or_default().into(),
        created: o.metadata.creation_timestamp.as_ref().map(|t| t.0.as_second()),
        written: o.metadata.managed_fields.iter().flatten().filter_map(|m| m.time.as_ref().map(|t| t.0.as_second())).max().or(o
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_second())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::slim::SlimPod;

    #[test]
    fn pods_with_the_same_labels_share_one_set_and_unheld_sets_are_dropped() {
        let pod = |name: &str, hash: &str| -> SlimPod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": {"app": "reviews", "version": "v1", "pod-template-hash": hash}}
            }))
            .expect("pod")
        };
        let mut sets = LabelSets::default();
        let a = PodFacts::of(&pod("reviews-v1-a", "7d9f"), &mut sets);
        let b = PodFacts::of(&pod("reviews-v1-b", "7d9f"), &mut sets);
        assert!(Arc::ptr_eq(&a.labels, &b.labels), "one ReplicaSet, one label set");
        assert_eq!(a.labels.get("version").map(String::as_str), Some("v1"));
        let c = PodFacts::of(&pod("reviews-v1-c", "5c44"), &mut sets);
        assert!(!Arc::ptr_eq(&a.labels, &c.labels));
        assert_eq!(sets.len(), 2);
        // Pods of old ReplicaSets go; their sets are dropped once the table fills up.
        drop((a, b, c));
        let kept: Vec<PodFacts> = (0..64).map(|i| PodFacts::of(&pod(&format!("p{i}"), &format!("h{i}")), &mut sets)).collect();
        assert_eq!(sets.len(), 64, "the sweep at 64 dropped both unheld sets, kept every held one");
        assert!(kept.iter().all(|p| sets.sets.contains(&p.labels)));
    }

    #[test]
    fn mesh_config_gives_the_trust_domains_a_mesh_accepts() {
        let cm = |name: &str, mesh: &str| -> ConfigMap {
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "data": {"mesh": mesh}})).expect("cm")
        };
        let f = mesh_config_facts(&cm(
            "istio-1-27",
            "trustDomain: east.local\ntrustDomainAliases: [west.local]\ncaCertificates:\n- pem: x\n  trustDomains: [north.local, west.local]\n",
        ));
        assert_eq!(f.trust_domain.as_deref(), Some("east.local"));
        assert_eq!(f.revision.as_deref(), Some("1-27"));
        assert_eq!(f.accepted_trust_domains, ["north.local", "west.local"]);
        assert_eq!(f.trust_domain_aliases, ["west.local"], "the caCertificates' domains are accepted, not aliases");
        assert_eq!(mesh_config_facts(&cm("istio", "{}")).revision.as_deref(), Some("default"));
        let injector: ConfigMap = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "istio-sidecar-injector"}, "data": {"config": "policy: enabled"}}),
        )
        .expect("cm");
        assert_eq!(mesh_config_facts(&injector), MeshConfigFacts::default(), "not a mesh config");
    }

    #[test]
    fn trust_domain_defaults_like_istio() {
        assert_eq!(trust_domain("trustDomain: east.local\n").as_deref(), Some("east.local"));
        assert_eq!(trust_domain("defaultConfig: {}\n").as_deref(), Some("cluster.local"));
    }

    #[test]
    fn pod_facts_read_readiness_and_sidecar() {
        let pod: SlimPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"app": "reviews", "version": "v1"}, "annotations": {"sidecar.istio.io/status": "{}"}},
            "spec": {"containers": [{"name": "reviews"}], "serviceAccountName": "bookinfo-reviews"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .expect("pod");
        let f = PodFacts::from(&pod);
        assert!(f.ready && f.injected);
        assert_eq!(f.service_account.as_deref(), Some("bookinfo-reviews"));
        let svc = ServiceFacts { selector: [("app".to_string(), "reviews".to_string())].into(), ..Default::default() };
        assert!(svc.selects(&f.labels));
        assert!(!ServiceFacts::default().selects(&f.labels), "an empty selector selects nothing");
    }

    #[test]
    fn a_gateway_is_not_a_sidecar() {
        let pod = |args: &[&str]| -> SlimPod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "istio-proxy", "args": args}]}
            }))
            .expect("pod")
        };
        assert!(!PodFacts::from(&pod(&["proxy", "router"])).injected, "an east-west gateway runs `proxy router`");
        assert!(PodFacts::from(&pod(&["proxy", "sidecar"])).injected);
    }
}
