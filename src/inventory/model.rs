//! The fleet model consumers see: clusters with their mesh facts, services with
//! per-cluster versions, Istio objects, warnings. Its JSON (`inventory -o json`)
//! is a documented, stable format that `render --inventory FILE` reads back.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::registry::ClusterError;

pub const INVENTORY_API_VERSION: &str = "meshdeck.dev/v1alpha1";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetSnapshot {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "inventory_kind")]
    pub kind: String,
    pub clusters: Vec<ClusterView>,
    pub services: Vec<Arc<ServiceRow>>,
    #[serde(default)]
    pub istio_objects: Vec<IstioObject>,
    #[serde(default)]
    pub warnings: Vec<FleetWarning>,
}

fn api_version() -> String {
    INVENTORY_API_VERSION.into()
}

fn inventory_kind() -> String {
    "Inventory".into()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClusterState {
    #[default]
    Connecting,
    Syncing,
    Live,
    Degraded,
    Unreachable,
    Unauthorized,
    Forbidden,
    /// The kubeconfig entry could not become a client.
    Error,
}

impl ClusterState {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterState::Connecting => "connecting",
            ClusterState::Syncing => "syncing",
            ClusterState::Live => "live",
            ClusterState::Degraded => "degraded",
            ClusterState::Unreachable => "unreachable",
            ClusterState::Unauthorized => "unauthorized",
            ClusterState::Forbidden => "forbidden",
            ClusterState::Error => "error",
        }
    }

    /// Still waiting for a first answer.
    pub fn pending(self) -> bool {
        matches!(self, ClusterState::Connecting | ClusterState::Syncing)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    pub name: String,
    pub context: String,
    #[serde(default)]
    pub server: Option<String>,
    pub state: ClusterState,
    #[serde(default)]
    pub kubernetes_version: Option<String>,
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Last successful answer; with an error state, rows are stale since then.
    #[serde(default)]
    pub last_seen: Option<DateTime<Utc>>,
    #[serde(default)]
    pub error: Option<ClusterError>,
    pub mesh: MeshFacts,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub accent: Option<String>,
    #[serde(default = "default_version_label")]
    pub version_label: String,
    /// Other contexts that reach this cluster (another identity or another name).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The `kube-system` namespace uid: what the cluster says it is.
    #[serde(default)]
    pub cluster_uid: Option<String>,
    /// Aliases that answered with another cluster's uid (`alias: uid`).
    #[serde(default)]
    pub alias_mismatches: Vec<String>,
    /// Namespaces watched; empty: all.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Facts that could not be read, with why ("mesh config: 403 Forbidden: ...").
    #[serde(default)]
    pub unknown: Vec<String>,
    /// Some fact watch (mesh config, istiod, network, remote secrets, Istio objects)
    /// has neither listed nor failed yet: no plan may be judged against its facts.
    #[serde(default)]
    pub facts_pending: bool,
    /// The context skips TLS verification (`insecure-skip-tls-verify`).
    #[serde(default)]
    pub insecure_skip_tls_verify: bool,
    /// When the cluster entered its current state (an outage's start, a recovery's time).
    #[serde(default)]
    pub state_since: Option<DateTime<Utc>>,
}

impl ClusterView {
    /// The aliases as one cell of a table (`-` for none).
    pub fn aliases_text(&self) -> String {
        if self.aliases.is_empty() { "-".into() } else { self.aliases.join(",") }
    }

    /// Live, but its mesh facts (trust domain, network) are still being read, as after
    /// another identity began acting for it: not yet ready to judge a plan.
    pub fn reading_facts(&self) -> bool {
        self.state == ClusterState::Live && self.facts_pending
    }

    /// Why this cluster's inventory cannot be trusted now (not live), or None.
    /// A plan must not be judged against what meshdeck could not see.
    pub fn unseen(&self) -> Option<String> {
        if self.state == ClusterState::Live {
            return self.facts_pending.then(|| "live, but its mesh facts are still being read".to_string());
        }
        let since = self.last_seen.map(|t| format!(", last seen {}", t.format("%H:%M:%S"))).unwrap_or_default();
        let why = self.error.as_ref().map(|e| format!(": {}", e.message())).unwrap_or_default();
        Some(format!("{}{since}{why}", self.state.as_str()))
    }
}

fn default_version_label() -> String {
    "version".into()
}

/// What Istio in one cluster says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshFacts {
    #[serde(default)]
    pub istio_version: Option<String>,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub trust_domain: Option<String>,
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub network: Option<String>,
    /// `sha256:<hex>` of the root certificate (DER) in `istio-ca-root-cert`.
    #[serde(default)]
    pub root_cert_fingerprint: Option<String>,
    /// The east-west gateway's load-balancer address.
    #[serde(default)]
    pub east_west_gateway: Option<String>,
    /// Clusters whose remote secrets this istiod reads (shared discovery).
    #[serde(default)]
    pub remote_secrets: Vec<String>,
    /// Whether Istio's networking CRDs are served.
    #[serde(default)]
    pub istio_crds: bool,
    /// Whether Gateway API's HTTPRoute is served (and listed): routes in Gateway API can be written.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gateway_api: bool,
    /// The Gateway API versions the cluster serves, newest first (its CRDs' served versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway_api_versions: Vec<String>,
    /// Other trust domains its sidecars accept as mTLS peers (meshConfig
    /// `trustDomainAliases` and `caCertificates[].trustDomains`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_trust_domains: Vec<String>,
    /// `trustDomainAliases`: trust domains Istio's authorization takes as this
    /// one, so `<any of them>/ns/N/sa/S` is one identity to an AuthorizationPolicy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_domain_aliases: Vec<String>,
    /// istiod runs with `PILOT_SKIP_VALIDATE_TRUST_DOMAIN=true`: peers of any trust domain.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_trust_domain_validation: bool,
}

impl MeshFacts {
    /// Will this mesh's sidecars accept an mTLS peer from `trust_domain`? None: not known.
    pub fn accepts_peer_from(&self, trust_domain: &str) -> Option<bool> {
        let own = self.trust_domain.as_deref()?;
        Some(self.skip_trust_domain_validation || own == trust_domain || self.accepted_trust_domains.iter().any(|t| t == trust_domain))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRow {
    pub name: String,
    pub namespace: String,
    /// Per cluster where the Service exists.
    pub clusters: BTreeMap<String, ServicePresence>,
}

impl ServiceRow {
    /// `reviews.default`: how plans name a service.
    pub fn key(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePresence {
    /// Each port as the Service declares it (name, targetPort, appProtocol).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_details: Vec<ServicePort>,
    pub versions: BTreeMap<String, VersionCount>,
    /// Pods behind the service without the version label.
    #[serde(default)]
    pub unversioned: VersionCount,
    #[serde(default)]
    pub ports: Vec<u16>,
    /// The Service's pod selector.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Service accounts the pods run as (for access policies).
    #[serde(default)]
    pub service_accounts: Vec<String>,
    /// How its namespace joins the mesh: `sidecar` (injection on, even beside the ambient
    /// label: a sidecar takes precedence over ztunnel), `ambient`, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataplane_mode: Option<String>,
    /// The waypoint its traffic goes through (`istio.io/use-waypoint`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint: Option<String>,
    /// Labelled `istio.io/global=true`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub global: bool,
    /// Whether the waypoint it names is a Gateway of class `istio-waypoint` in its
    /// namespace there (none: no waypoint named, or not known yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waypoint_deployed: Option<bool>,
}

/// One port of a Service, with what Istio needs to route it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    pub number: u16,
    #[serde(default)]
    pub name: String,
    /// The pods' port, when the Service gives it as a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

impl ServicePort {
    /// The protocol Istio gives the port: `appProtocol`, else the port name's prefix
    /// (`http-web`, `grpc`), else unknown (Istio sniffs; meshdeck routes it as HTTP).
    pub fn protocol(&self) -> Option<&'static str> {
        let by_name = self.name.split('-').next().unwrap_or("");
        let word = self.app_protocol.as_deref().map(|p| p.trim_start_matches("kubernetes.io/")).unwrap_or(by_name);
        Some(match word.to_ascii_lowercase().as_str() {
            "http" | "ws" => "HTTP",
            "http2" | "h2c" => "HTTP2",
            "grpc" => "GRPC",
            "grpc-web" => "GRPC-Web",
            "https" | "wss" => "HTTPS",
            "tcp" => "TCP",
            "tls" => "TLS",
            "mongo" => "MONGO",
            "mysql" => "MYSQL",
            "redis" => "REDIS",
            _ => return None,
        })
    }

    /// Can a VirtualService's `http` routes carry it?
    pub fn routes_http(&self) -> bool {
        matches!(self.protocol(), None | Some("HTTP" | "HTTP2" | "GRPC" | "GRPC-Web"))
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionCount {
    pub ready: u32,
    pub total: u32,
    /// Pods with an Istio sidecar.
    #[serde(default)]
    pub injected: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IstioObject {
    pub cluster: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Labelled `app.kubernetes.io/managed-by: meshdeck`.
    #[serde(default)]
    pub managed: bool,
    #[serde(default)]
    pub plan: Option<String>,
    /// A DestinationRule's subsets: name → the labels they select.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subsets: BTreeMap<String, BTreeMap<String, String>>,
    /// A VirtualService's route destinations (http, tls and tcp), each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<RouteDestination>,
    /// An HTTPRoute's backends its status says are not found (`BackendNotFound`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved: Vec<String>,
    /// The kind this route was read from when it is not a VirtualService: Istio makes a
    /// VirtualService of each HTTPRoute on a Service, and effective routes read it so.
    #[serde(skip)]
    pub read_from: Option<String>,
    /// The object's `spec` as JSON text, for effective routes (`inventory::routes`):
    /// weights, matches, endpoints and policies. Not in the inventory's output.
    #[serde(skip)]
    pub spec: Arc<str>,
    /// `metadata.creationTimestamp` in Unix seconds: of several VirtualServices for
    /// one host, Istio's sidecars use the oldest.
    #[serde(skip)]
    pub created: Option<i64>,
    /// When it was last written, in Unix seconds: the newest `managedFields` time
    /// (else its creation). What traffic observed before then was another route.
    #[serde(skip)]
    pub written: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteDestination {
    pub host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
}

/// The Kubernetes Service a host in an Istio object names (`name.namespace`): a short
/// name is in the object's namespace; `name.ns.svc.cluster.local` is the full form.
/// Other hosts (ServiceEntry hosts, `.global`) name no Service.
pub fn service_of_host(host: &str, object_namespace: &str) -> Option<String> {
    if !host.contains('.') {
        return Some(format!("{host}.{object_namespace}"));
    }
    let rest = host.strip_suffix(".svc.cluster.local")?;
    let (name, ns) = rest.split_once('.')?;
    (!ns.contains('.')).then(|| format!("{name}.{ns}"))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetWarning {
    pub code: String,
    pub message: String,
    pub clusters: Vec<String>,
    /// The service it is about (`name.namespace`), when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

impl FleetSnapshot {
    pub fn cluster(&self, name: &str) -> Option<&ClusterView> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// Look up `name.namespace`.
    pub fn service(&self, key: &str) -> Option<&ServiceRow> {
        let (name, ns) = key.split_once('.')?;
        self.services.iter().map(Arc::as_ref).find(|s| s.name == name && s.namespace == ns)
    }

    /// Does istiod in `from` see `to`'s endpoints (it reads a remote secret for it)?
    pub fn shares_discovery(&self, from: &str, to: &str) -> bool {
        if from == to {
            return true;
        }
        let target_id = self.cluster(to).and_then(|c| c.mesh.cluster_id.clone()).unwrap_or_else(|| to.to_string());
        self.cluster(from).is_some_and(|c| c.mesh.remote_secrets.iter().any(|r| r == to || *r == target_id))
    }

    /// The Istio cluster id that `from`'s istiod gives `to`'s endpoints (their
    /// `topology.istio.io/cluster` label): for another cluster, the id of the remote
    /// secret `from` reads for it; for itself, istiod's CLUSTER_ID (Istio's default is
    /// `Kubernetes`). None: not known (no istiod seen, no remote secret names it).
    pub fn cluster_id_from(&self, from: &str, to: &str) -> Option<String> {
        let target = self.cluster(to)?;
        if from != to {
            let caller = self.cluster(from)?;
            let wanted = [target.mesh.cluster_id.as_deref(), Some(to)];
            if let Some(id) = wanted.into_iter().flatten().find(|w| caller.mesh.remote_secrets.iter().any(|r| r == w)) {
                return Some(id.to_string());
            }
        }
        match &target.mesh.cluster_id {
            Some(id) => Some(id.clone()),
            None if target.mesh.istio_version.is_some() => Some("Kubernetes".into()),
            None => None,
        }
    }

    /// Every cluster answered, one way or the other.
    pub fn settled(&self) -> bool {
        // A live cluster whose mesh facts are still listing would read as "no trust
        // domain": not an answer yet.
        self.clusters.iter().all(|c| !c.state.pending() && !c.reading_facts())
    }

    /// Human lines for what changed between two snapshots (for `inventory --watch`).
    /// One line per cluster whose state changed since `old`: what it is now, why, and
    /// (back to live) how long it was not.
    pub fn state_changes(&self, old: &FleetSnapshot) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.clusters {
            let Some(before) = old.cluster(&c.name) else { continue };
            if before.state == c.state {
                continue;
            }
            let why = c.error.as_ref().map(|e| format!(" ({})", e.message())).unwrap_or_default();
            let lasted = match (before.state_since, c.state_since) {
                (Some(a), Some(b)) if before.state != ClusterState::Connecting => {
                    format!("; it was {} for {}s", before.state.as_str(), (b - a).num_seconds().max(0))
                }
                _ => String::new(),
            };
            out.push(format!("{} {} -> {}{why}{lasted}", c.name, before.state.as_str(), c.state.as_str()));
        }
        out
    }

    /// What changed between two snapshots, one fact each (for `inventory --watch`).
    pub fn changes_since(&self, old: &FleetSnapshot) -> Vec<FleetChange> {
        let mut out = Vec::new();
        for c in &self.clusters {
            let before = old.cluster(&c.name);
            if before.map(|b| b.state) != Some(c.state) {
                let error = c.error.as_ref().map(|e| e.message().to_string());
                out.push(FleetChange::Cluster { cluster: c.name.clone(), state: c.state.as_str().to_string(), error });
            }
        }
        let old_rows: BTreeMap<(&str, &str), &Arc<ServiceRow>> =
            old.services.iter().map(|s| ((s.namespace.as_str(), s.name.as_str()), s)).collect();
        for row in &self.services {
            match old_rows.get(&(row.namespace.as_str(), row.name.as_str())) {
                Some(prev) if Arc::ptr_eq(prev, row) || **prev == *row => {}
                Some(prev) => {
                    for (cluster, p) in &row.clusters {
                        for (v, n) in &p.versions {
                            let was = prev.clusters.get(cluster).and_then(|pp| pp.versions.get(v));
                            if was != Some(n) {
                                out.push(FleetChange::Version {
                                    service: row.key(),
                                    cluster: cluster.clone(),
                                    version: v.clone(),
                                    ready: n.ready,
                                    total: n.total,
                                });
                            }
                        }
                        if let Some(pp) = prev.clusters.get(cluster) {
                            for v in pp.versions.keys().filter(|v| !p.versions.contains_key(*v)) {
                                out.push(FleetChange::VersionGone { service: row.key(), cluster: cluster.clone(), version: v.clone() });
                            }
                        }
                    }
                }
                None => out.push(FleetChange::Service { service: row.key(), clusters: row.clusters.keys().cloned().collect() }),
            }
        }
        out
    }
}

/// One thing that changed in the fleet: structured for `-o json`, a line for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "change")]
pub enum FleetChange {
    /// A cluster's state changed.
    #[serde(rename_all = "camelCase")]
    Cluster {
        cluster: String,
        state: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A version's ready/total pods changed (or it appeared).
    Version { service: String, cluster: String, version: String, ready: u32, total: u32 },
    /// A version has no pods in a cluster any more.
    VersionGone { service: String, cluster: String, version: String },
    /// A service appeared.
    Service { service: String, clusters: Vec<String> },
}

impl std::fmt::Display for FleetChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FleetChange::Cluster { cluster, state, error } => {
                write!(f, "cluster {cluster} {state}")?;
                if let Some(e) = error {
                    write!(f, " ({e})")?;
                }
                Ok(())
            }
            FleetChange::Version { service, cluster, version, ready, total } => write!(f, "{service} {cluster} {version} {ready}/{total}"),
            FleetChange::VersionGone { service, cluster, version } => write!(f, "{service} {cluster} {version} gone"),
            FleetChange::Service { service, clusters } => write!(f, "{service} appeared in {}", clusters.join(",")),
        }
    }
}
