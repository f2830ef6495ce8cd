//! Effective routes: where calls to a service from one cluster go now, resolved
//! from the live Istio objects of every cluster (meshdeck's and hand-written alike)
//! the way Istio resolves them: the VirtualService in force for the host, its rules
//! in order, and each destination down to clusters, versions and pods (a subset
//! through the DestinationRule's labels, a ServiceEntry endpoint through the remote
//! east-west gateway to what that cluster exposes). Where a route breaks, the
//! problem is named at the route. Pure over a snapshot.
//!
//! Not modelled (yet): `exportTo`, Sidecar resources, delegate VirtualServices, and
//! subset labels other than the version and cluster labels (the inventory counts
//! pods by version).

mod failover;
mod mesh_routes;
mod resolve;
mod security;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::model::{ClusterState, ClusterView, FleetSnapshot, IstioObject, ServiceRow, service_of_host};

use failover::*;
use resolve::*;
pub use security::peer_mode;
use security::*;

const CLUSTER_LABEL: &str = "topology.istio.io/cluster";
const NETWORK_LABEL: &str = "topology.istio.io/network";
const EASTWEST_PORT: u64 = 15443;

/// Calls to one service from one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveRoute {
    /// `name.namespace`.
    pub service: String,
    /// The calling cluster.
    pub from: String,
    /// `namespace/name` of the VirtualService in force; none: Istio's default route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub virtual_service: Option<String>,
    /// `plan NAME` for meshdeck's objects, `hand-written` otherwise, `none` without a VirtualService.
    pub owner: String,
    /// Other VirtualServices for the host in the calling cluster: sidecars ignore them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignored: Vec<String>,
    pub rules: Vec<Rule>,
    pub problems: Vec<Problem>,
    /// When the objects that make this route (the VirtualService in force and the
    /// caller's DestinationRules for its hosts) were last written, in Unix seconds.
    #[serde(skip)]
    pub written: Option<i64>,
}

/// One rule of the VirtualService, in the order Istio tries them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// `http`, `tls`, `tcp`, or `default` (no VirtualService).
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The match conditions, each one line; empty: every request.
    pub matches: Vec<String>,
    pub destinations: Vec<Destination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The rule's `match` and `retries` as Istio has them (for `import`).
    #[serde(skip)]
    pub match_spec: Vec<Value>,
    #[serde(skip)]
    pub retries_spec: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Percent of the rule's requests (as written; Istio splits in proportion).
    pub weight: u32,
    /// The DestinationRule's traffic policy that matters here: TLS mode, outlier detection, failover.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy: Vec<String>,
    /// Where requests end up. With failover, in priority order (`tier`).
    pub targets: Vec<Target>,
    /// The DestinationRule's `outlierDetection` as Istio has it (for `import`).
    #[serde(skip)]
    pub outlier_spec: Option<Value>,
    /// Traffic policy a plan cannot say (`loadBalancer.simple: RANDOM`,
    /// `connectionPool`), which `import` names as not carried over.
    #[serde(skip)]
    pub unmodelled: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// The cluster whose pods answer; `-` for an endpoint outside the fleet.
    pub cluster: String,
    /// The version its pods carry; none: every version there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub ready: u32,
    pub pods: u32,
    /// How requests get there from the caller, when not directly (`east-west 192.0.2.12:15443`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    /// Failover priority: 0 first; only with a failover policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    pub code: &'static str,
    pub message: String,
    /// The clusters it is about (the caller's first).
    pub clusters: Vec<String>,
}

impl EffectiveRoute {
    /// The cockpit's ROUTE cell: `75/15/10 → cluster2`, `failover c1 › c2`, `hand-written`, `✗ 2 problems`.
    pub fn summary(&self) -> String {
        if !self.problems.is_empty() {
            let n = self.problems.len();
            return format!("✗ {n} problem{}", if n == 1 { "" } else { "s" });
        }
        let Some(first) = self.rules.first() else { return "-".into() };
        if self.virtual_service.is_none() {
            return "default".into();
        }
        if !self.owner.starts_with("plan ") {
            return "hand-written".into();
        }
        let tiers: Vec<&Target> = first.destinations.iter().flat_map(|d| &d.targets).filter(|t| t.tier.is_some()).collect();
        if !tiers.is_empty() {
            let mut order: Vec<(usize, &str)> = tiers.iter().map(|t| (t.tier.unwrap_or(0), t.cluster.as_str())).collect();
            order.sort();
            order.dedup_by(|a, b| a.1 == b.1);
            return format!("failover {}", order.iter().map(|(_, c)| *c).collect::<Vec<_>>().join(" › "));
        }
        let weights: Vec<String> = first.destinations.iter().map(|d| d.weight.to_string()).collect();
        let mut away: Vec<&str> =
            first.destinations.iter().flat_map(|d| &d.targets).map(|t| t.cluster.as_str()).filter(|c| *c != self.from).collect();
        away.sort();
        away.dedup();
        match (weights.len(), away.is_empty()) {
            (1, true) => "local".into(),
            (1, false) => format!("→ {}", away.join(",")),
            (_, true) => weights.join("/"),
            (_, false) => format!("{} → {}", weights.join("/"), away.join(",")),
        }
    }
}

/// `reviews.default.svc.cluster.local` for a host as written in an object in `ns`.
fn fqdn(host: &str, ns: &str) -> String {
    if host.contains('.') { host.to_string() } else { format!("{host}.{ns}.svc.cluster.local") }
}

/// Does a VirtualService host (`*`, `*.suffix`, short or full) cover `fqdn`?
fn host_covers(pattern: &str, ns: &str, fqdn_host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some("") => true,
        Some(suffix) => fqdn_host.ends_with(suffix),
        None => fqdn(pattern, ns) == fqdn_host,
    }
}

fn spec(o: &IstioObject) -> Value {
    serde_json::from_str(&o.spec).unwrap_or(Value::Null)
}

fn object_name(o: &IstioObject) -> String {
    match &o.read_from {
        Some(kind) => format!("{kind} {}/{}", o.namespace, o.name),
        None => format!("{}/{}", o.namespace, o.name),
    }
}

/// Objects of one kind in one cluster, oldest first (Istio's order when several conflict).
fn objects<'a>(snap: &'a FleetSnapshot, cluster: &str, kind: &str) -> Vec<&'a IstioObject> {
    let mut out: Vec<&IstioObject> = snap.istio_objects.iter().filter(|o| o.cluster == cluster && o.kind == kind).collect();
    out.sort_by(|a, b| (a.created, &a.namespace, &a.name).cmp(&(b.created, &b.namespace, &b.name)));
    out
}

/// The VirtualServices that apply to sidecars in `cluster` for `host`, oldest first.
fn virtual_services<'a>(snap: &'a FleetSnapshot, cluster: &str, host: &str) -> Vec<&'a IstioObject> {
    objects(snap, cluster, "VirtualService")
        .into_iter()
        .filter(|vs| vs.hosts.iter().any(|h| host_covers(h, &vs.namespace, host)))
        .filter(|vs| {
            // Bound to gateways only: not a sidecar route.
            let gateways = spec(vs).get("gateways").and_then(Value::as_array).cloned().unwrap_or_default();
            gateways.is_empty() || gateways.iter().any(|g| g.as_str() == Some("mesh"))
        })
        .collect()
}

/// The DestinationRule for `host` in `cluster` (the oldest, if several).
fn destination_rule<'a>(snap: &'a FleetSnapshot, cluster: &str, host: &str) -> Option<&'a IstioObject> {
    objects(snap, cluster, "DestinationRule").into_iter().find(|dr| dr.hosts.first().is_some_and(|h| fqdn(h, &dr.namespace) == host))
}

fn live(c: &ClusterView) -> bool {
    matches!(c.state, ClusterState::Live | ClusterState::Degraded)
}

fn version_label(c: &ClusterView) -> &str {
    if c.version_label.is_empty() { "version" } else { &c.version_label }
}

/// Every effective route: for each service (or the one named, `name.namespace`) and
/// each calling cluster (or the one named) with Istio, where calls to it resolve to
/// something or a VirtualService names it.
pub fn effective_routes(snap: &FleetSnapshot, service: Option<&str>, from: Option<&str>) -> Vec<EffectiveRoute> {
    let snap = &*mesh_routes::with_mesh_routes(snap);
    let callers: Vec<&ClusterView> = snap
        .clusters
        .iter()
        .filter(|c| from.is_none_or(|f| f == c.name))
        .filter(|c| c.mesh.istio_version.is_some() || c.mesh.istio_crds)
        .collect();
    let rows: Vec<&ServiceRow> = match service {
        // One service: looked up, not a `name.namespace` string built per row.
        Some(s) => snap.service(s).into_iter().collect(),
        None => snap.services.iter().map(AsRef::as_ref).filter(|r| r.namespace != "kube-system" && r.namespace != "istio-system").collect(),
    };
    let mut out = Vec::new();
    for row in rows {
        for caller in &callers {
            let host = fqdn(&row.name, &row.namespace);
            let visible = row.clusters.keys().any(|c| snap.shares_discovery(&caller.name, c));
            if !visible && virtual_services(snap, &caller.name, &host).is_empty() {
                continue;
            }
            out.push(route(snap, row, caller));
        }
    }
    out
}

/// The problems of every route a VirtualService makes: what analyze and the cockpit
/// report beside the fleet warnings (which already name conflicting owners and
/// subsets, so those are left out here).
pub fn route_problems(snap: &FleetSnapshot) -> Vec<(String, Problem)> {
    let snap = &*mesh_routes::with_mesh_routes(snap);
    let mut out = Vec::new();
    for (svc, caller) in routed_pairs(snap) {
        let (Some(row), Some(c)) = (snap.service(&svc), snap.cluster(&caller)) else { continue };
        if !live(c) {
            continue;
        }
        for p in route(snap, row, c).problems {
            if !matches!(p.code, "MULTI_OWNER" | "SUBSET_NO_PODS" | "SUBSET_UNDEFINED" | "DEST_UNREACHABLE") {
                out.push((svc.clone(), p));
            }
        }
    }
    out
}

/// Per service that a VirtualService routes: the cockpit's ROUTE cell
/// (`75/15/10 → cluster2`; with the calling cluster when several route it), or the
/// count of problems across its routes.
pub fn route_cells(snap: &FleetSnapshot) -> BTreeMap<String, String> {
    let snap = &*mesh_routes::with_mesh_routes(snap);
    let mut by_service: BTreeMap<String, Vec<EffectiveRoute>> = BTreeMap::new();
    for (svc, caller) in routed_pairs(snap) {
        let (Some(row), Some(c)) = (snap.service(&svc), snap.cluster(&caller)) else { continue };
        by_service.entry(svc).or_default().push(route(snap, row, c));
    }
    by_service
        .into_iter()
        .map(|(svc, routes)| {
            let problems: usize = routes.iter().map(|r| r.problems.len()).sum();
            let cell = if problems > 0 {
                format!("✗ {problems} problem{}", if problems == 1 { "" } else { "s" })
            } else {
                match routes.as_slice() {
                    [one] => one.summary(),
                    _ => routes.iter().map(|r| format!("{} {}", r.from, r.summary())).collect::<Vec<_>>().join("; "),
                }
            };
            (svc, cell)
        })
        .collect()
}

/// (service, calling cluster) for every VirtualService host that names a Kubernetes service.
fn routed_pairs(snap: &FleetSnapshot) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for vs in snap.istio_objects.iter().filter(|o| o.kind == "VirtualService") {
        for h in &vs.hosts {
            if let Some(svc) = service_of_host(h, &vs.namespace) {
                pairs.push((svc, vs.cluster.clone()));
            }
        }
    }
    pairs.sort();
    pairs.dedup();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::model::ServicePresence;

    fn vs(name: &str, created: i64, subset: &str, gateways: &[&str]) -> IstioObject {
        let spec = serde_json::json!({"hosts": ["reviews"], "gateways": gateways,
            "http": [{"route": [{"destination": {"host": "reviews", "subset": subset}}]}]});
        IstioObject {
            cluster: "c1".into(),
            kind: "VirtualService".into(),
            namespace: "default".into(),
            name: name.into(),
            hosts: vec!["reviews".into()],
            spec: spec.to_string().into(),
            created: Some(created),
            ..Default::default()
        }
    }

    fn fleet(objects: Vec<IstioObject>) -> FleetSnapshot {
        use super::super::model::{MeshFacts, VersionCount};
        let presence = ServicePresence {
            versions: [
                ("v1".to_string(), VersionCount { ready: 1, total: 1, injected: 1 }),
                ("v2".to_string(), VersionCount { ready: 0, total: 1, injected: 1 }),
            ]
            .into(),
            selector: [("app".to_string(), "reviews".to_string())].into(),
            ..Default::default()
        };
        let mut dr = IstioObject {
            cluster: "c1".into(),
            kind: "DestinationRule".into(),
            namespace: "default".into(),
            name: "reviews".into(),
            hosts: vec!["reviews".into()],
            ..Default::default()
        };
        dr.subsets =
            [("v1", "v1"), ("v2", "v2")].iter().map(|(s, v)| (s.to_string(), [("version".to_string(), v.to_string())].into())).collect();
        let mut istio_objects = objects;
        istio_objects.push(dr);
        FleetSnapshot {
            clusters: vec![ClusterView {
                name: "c1".into(),
                state: ClusterState::Live,
                mesh: MeshFacts { istio_version: Some("1.27.3".into()), ..Default::default() },
                ..Default::default()
            }],
            services: vec![std::sync::Arc::new(ServiceRow {
                name: "reviews".into(),
                namespace: "default".into(),
                clusters: [("c1".to_string(), presence)].into(),
            })],
            istio_objects,
            ..Default::default()
        }
    }

    #[test]
    fn the_oldest_virtual_service_is_in_force_and_gateway_only_ones_do_not_count() {
        let snap = fleet(vec![vs("newer", 200, "v2", &[]), vs("older", 100, "v1", &[]), vs("ingress", 50, "v2", &["bookinfo-gateway"])]);
        let route = effective_routes(&snap, Some("reviews.default"), Some("c1")).remove(0);
        assert_eq!(route.virtual_service.as_deref(), Some("default/older"));
        assert_eq!(route.ignored, ["default/newer"]);
        assert_eq!(route.rules[0].destinations[0].targets[0].version.as_deref(), Some("v1"));
        assert_eq!(route.problems.iter().map(|p| p.code).collect::<Vec<_>>(), ["MULTI_OWNER"]);
        assert_eq!(route.summary(), "✗ 1 problem");
        // Alone, the newer one routes to v2, whose one pod is not ready: a broken route, not a missing one.
        let snap = fleet(vec![vs("newer", 200, "v2", &[])]);
        let route = effective_routes(&snap, None, None).remove(0);
        assert_eq!(route.rules[0].destinations[0].targets[0].ready, 0);
        assert_eq!(route.summary(), "hand-written");
    }

    #[test]
    fn a_subset_with_no_pods_meshdeck_sees_is_unknown_while_the_callers_istiod_reads_an_unwatched_cluster() {
        // c1's DestinationRule pins v3 to cluster c9, which c1's istiod reads and
        // meshdeck does not watch: its pods are unknown, so no "requests get 503".
        let mut snap = fleet(vec![vs("canary", 100, "v3", &[])]);
        if let Some(dr) = snap.istio_objects.iter_mut().find(|o| o.kind == "DestinationRule") {
            dr.subsets
                .insert("v3".into(), [("version".to_string(), "v3".to_string()), (CLUSTER_LABEL.to_string(), "c9".to_string())].into());
        }
        snap.clusters[0].mesh.remote_secrets = vec!["c9".into()];
        let route = effective_routes(&snap, Some("reviews.default"), Some("c1")).remove(0);
        assert!(codes(&route).is_empty(), "{:?}", route.problems);
        // Without that remote secret, c1 sees c1 alone: no pods there is a finding.
        snap.clusters[0].mesh.remote_secrets.clear();
        let route = effective_routes(&snap, Some("reviews.default"), Some("c1")).remove(0);
        assert_eq!(codes(&route), ["SUBSET_NO_PODS"]);
    }

    fn object(cluster: &str, kind: &str, hosts: &[&str], spec: Value) -> IstioObject {
        IstioObject {
            cluster: cluster.into(),
            kind: kind.into(),
            namespace: "default".into(),
            name: format!("{kind}-{cluster}").to_lowercase(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            spec: spec.to_string().into(),
            ..Default::default()
        }
    }

    /// c1 calls reviews v3 in c2 through c2's east-west gateway (federation).
    fn federated() -> FleetSnapshot {
        use super::super::model::{MeshFacts, VersionCount};
        let host = "v3.reviews.default.svc.c2.global";
        let cluster = |name: &str, gw: &str| ClusterView {
            name: name.into(),
            state: ClusterState::Live,
            mesh: MeshFacts { istio_version: Some("1.27.3".into()), east_west_gateway: Some(gw.into()), ..Default::default() },
            ..Default::default()
        };
        let presence = |v: &str| ServicePresence {
            versions: [(v.to_string(), VersionCount { ready: 1, total: 1, injected: 1 })].into(),
            selector: [("app".to_string(), "reviews".to_string())].into(),
            ..Default::default()
        };
        FleetSnapshot {
            clusters: vec![cluster("c1", "192.0.2.11"), cluster("c2", "192.0.2.12")],
            services: vec![std::sync::Arc::new(ServiceRow {
                name: "reviews".into(),
                namespace: "default".into(),
                clusters: [("c1".to_string(), presence("v1")), ("c2".to_string(), presence("v3"))].into(),
            })],
            istio_objects: vec![
                object(
                    "c1",
                    "VirtualService",
                    &["reviews"],
                    serde_json::json!({"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": host}}]}]}),
                ),
                object(
                    "c1",
                    "ServiceEntry",
                    &[host],
                    serde_json::json!({"hosts": [host], "endpoints": [{"address": "192.0.2.12", "ports": {"http": 15443}}]}),
                ),
                object(
                    "c2",
                    "ServiceEntry",
                    &[host],
                    serde_json::json!({"hosts": [host], "workloadSelector": {"labels": {"app": "reviews", "version": "v3"}}}),
                ),
                object("c2", "Gateway", &[host], serde_json::json!({})),
            ],
            ..Default::default()
        }
    }

    fn codes(route: &EffectiveRoute) -> Vec<&'static str> {
        route.problems.iter().map(|p| p.code).collect()
    }

    #[test]
    fn a_remote_target_resolves_through_the_gateway_and_a_cluster_down_is_shown_as_last_seen() {
        let snap = federated();
        let route = effective_routes(&snap, Some("reviews.default"), Some("c1")).remove(0);
        let t = &route.rules[0].destinations[0].targets[0];
        assert_eq!(
            (t.cluster.as_str(), t.version.as_deref(), t.ready, t.via.as_deref()),
            ("c2", Some("v3"), 1, Some("east-west 192.0.2.12:15443"))
        );
        assert!(codes(&route).is_empty(), "{:?}", route.problems);

        let mut gone = federated();
        gone.istio_objects.retain(|o| o.kind != "Gateway");
        assert_eq!(codes(&effective_routes(&gone, Some("reviews.default"), Some("c1")).remove(0)), ["NOT_EXPOSED"]);

        // Down: its pods and objects as last seen, not judged.
        let mut down = gone.clone();
        down.clusters[1].state = ClusterState::Unreachable;
        let route = effective_routes(&down, Some("reviews.default"), Some("c1")).remove(0);
        assert_eq!(route.rules[0].destinations[0].targets[0].version.as_deref(), Some("v3"));
        assert_eq!(codes(&route), ["DEST_UNREACHABLE"]);

        // Never seen: its gateway address is unknown, so the endpoint is not accused.
        let mut unseen = federated();
        unseen.clusters[1].state = ClusterState::Unreachable;
        unseen.clusters[1].mesh.east_west_gateway = None;
        let route = effective_routes(&unseen, Some("reviews.default"), Some("c1")).remove(0);
        assert_eq!(codes(&route), ["DEST_UNREACHABLE"]);
        assert!(route.problems[0].message.ends_with("not seen: c2"), "{}", route.problems[0].message);
        // Seen, and the address is nobody's gateway: that is wrong.
        unseen.clusters[1].state = ClusterState::Live;
        assert_eq!(codes(&effective_routes(&unseen, Some("reviews.default"), Some("c1")).remove(0)), ["ENDPOINT_UNKNOWN"]);
    }

    #[test]
    fn hosts_cover_like_istio() {
        assert!(host_covers("reviews", "default", "reviews.default.svc.cluster.local"));
        assert!(!host_covers("reviews", "prod", "reviews.default.svc.cluster.local"));
        assert!(host_covers("*.default.svc.cluster.local", "x", "reviews.default.svc.cluster.local"));
        assert!(host_covers("*", "x", "reviews.default.svc.cluster.local"));
        assert!(host_covers("reviews.default.svc.cluster.local", "x", "reviews.default.svc.cluster.local"));
    }

    #[test]
    fn failover_priority_is_istios() {
        let ep = |labels: &[&str], network: &str, id: &str| Endpoint {
            labels: labels.iter().map(|l| (l.to_string(), "primary".to_string())).collect(),
            network: Some(network.into()),
            cluster_id: Some(id.into()),
        };
        let caller = ep(&[], "n1", "c1");
        // What federation renders for `failover: [c2, c1, c3]` from c1.
        let prio: Vec<String> = vec![NETWORK_LABEL.into(), "rank-1=primary".into(), "rank-2=primary".into()];
        let before = ep(&["rank-1", "rank-2"], "n1", "-");
        let local = ep(&[], "n1", "c1");
        let after = ep(&[], "n3", "-");
        assert_eq!(failover_priority(&prio, &before, &caller), 0);
        assert_eq!(failover_priority(&prio, &local, &caller), 2);
        assert_eq!(failover_priority(&prio, &after, &caller), 5, "another network ranks after every endpoint on the caller's");
        let after_first = ep(&["rank-1"], "n2", "-");
        assert_eq!(failover_priority(&prio, &after_first, &caller), 4, "and the labels after the network still order it");
        let by_cluster = vec![format!("{CLUSTER_LABEL}=c2")];
        assert_eq!(failover_priority(&by_cluster, &ep(&[], "n2", "c2"), &caller), 0);
        assert_eq!(failover_priority(&by_cluster, &local, &caller), 1);
    }
}
