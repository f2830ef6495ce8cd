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

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use super::model::{ClusterState, ClusterView, FleetSnapshot, IstioObject, ServicePresence, ServiceRow, service_of_host};

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
    format!("{}/{}", o.namespace, o.name)
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

fn route(snap: &FleetSnapshot, row: &ServiceRow, caller: &ClusterView) -> EffectiveRoute {
    let host = fqdn(&row.name, &row.namespace);
    let vss = virtual_services(snap, &caller.name, &host);
    let mut problems = Vec::new();
    let mut r = EffectiveRoute {
        service: row.key(),
        from: caller.name.clone(),
        virtual_service: vss.first().map(|v| object_name(v)),
        owner: match vss.first() {
            None => "none".into(),
            Some(v) => match (&v.plan, v.managed) {
                (Some(p), true) => format!("plan {p}"),
                _ => "hand-written".into(),
            },
        },
        ignored: vss.iter().skip(1).map(|v| object_name(v)).collect(),
        rules: vec![],
        problems: vec![],
    };
    if !r.ignored.is_empty() {
        problems.push(Problem {
            code: "MULTI_OWNER",
            message: format!(
                "{} VirtualServices for {host} in {}: sidecars use the oldest, {}; {} ignored",
                vss.len(),
                caller.name,
                r.virtual_service.as_deref().unwrap_or("?"),
                r.ignored.join(", ")
            ),
            clusters: vec![caller.name.clone()],
        });
    }
    match vss.first() {
        Some(vs) => {
            let s = spec(vs);
            for kind in ["http", "tls", "tcp"] {
                for (i, rule) in s.get(kind).and_then(Value::as_array).into_iter().flatten().enumerate() {
                    r.rules.push(resolve_rule(snap, caller, vs, kind, i, rule, &mut problems));
                }
            }
        }
        None => {
            let d = resolve_destination(snap, caller, &row.namespace, &host, None, 100, &mut problems);
            r.rules.push(Rule {
                kind: "default",
                name: None,
                matches: vec![],
                destinations: vec![d],
                timeout: None,
                retries: None,
                fault: None,
                match_spec: vec![],
                retries_spec: None,
            });
        }
    }
    problems.sort();
    problems.dedup();
    r.problems = problems;
    r
}

#[allow(clippy::too_many_arguments)]
fn resolve_rule(
    snap: &FleetSnapshot,
    caller: &ClusterView,
    vs: &IstioObject,
    kind: &'static str,
    index: usize,
    rule: &Value,
    problems: &mut Vec<Problem>,
) -> Rule {
    let routes: Vec<&Value> = rule.get("route").and_then(Value::as_array).into_iter().flatten().collect();
    let single = routes.len() == 1;
    let mut destinations = Vec::new();
    let mut total = 0u32;
    for r in &routes {
        let d = r.get("destination").cloned().unwrap_or(Value::Null);
        let Some(h) = d.get("host").and_then(Value::as_str) else { continue };
        // One destination takes everything; of several, a missing weight is 0.
        let weight = r.get("weight").and_then(Value::as_u64).map_or(if single { 100 } else { 0 }, |w| w.min(100) as u32);
        total += weight;
        let subset = d.get("subset").and_then(Value::as_str);
        destinations.push(resolve_destination(snap, caller, &vs.namespace, &fqdn(h, &vs.namespace), subset, weight, problems));
    }
    let label = rule.get("name").and_then(Value::as_str).map_or_else(|| format!("{kind}[{index}]"), String::from);
    if !routes.is_empty() && total != 100 {
        problems.push(Problem {
            code: "ROUTE_WEIGHTS",
            message: format!(
                "{} {} in {}, rule {label}: weights total {total}, not 100{}",
                vs.kind,
                object_name(vs),
                caller.name,
                if total == 0 { ": Istio rejects the route" } else { ": Istio splits in proportion" }
            ),
            clusters: vec![caller.name.clone()],
        });
    }
    Rule {
        kind,
        name: rule.get("name").and_then(Value::as_str).map(String::from),
        matches: rule.get("match").and_then(Value::as_array).into_iter().flatten().map(describe_match).collect(),
        destinations,
        timeout: rule.get("timeout").and_then(Value::as_str).map(String::from),
        retries: rule.get("retries").map(|r| {
            let attempts = r.get("attempts").and_then(Value::as_u64).unwrap_or(0);
            match r.get("perTryTimeout").and_then(Value::as_str) {
                Some(t) => format!("{attempts} attempts, {t} each"),
                None => format!("{attempts} attempts"),
            }
        }),
        fault: rule.get("fault").map(describe_fault),
        match_spec: rule.get("match").and_then(Value::as_array).cloned().unwrap_or_default(),
        retries_spec: rule.get("retries").cloned(),
    }
}

/// `headers end-user exact jason`, `uri prefix /api`, `port 9080`, ...
fn describe_match(m: &Value) -> String {
    let mut parts = Vec::new();
    for (key, v) in m.as_object().into_iter().flatten() {
        match key.as_str() {
            "headers" | "queryParams" => {
                for (name, cond) in v.as_object().into_iter().flatten() {
                    parts.push(format!("{key} {name} {}", string_match(cond)));
                }
            }
            "uri" | "scheme" | "method" | "authority" => parts.push(format!("{key} {}", string_match(v))),
            "name" => {}
            _ => parts.push(format!("{key} {}", compact(v))),
        }
    }
    parts.join(", ")
}

fn string_match(v: &Value) -> String {
    match v.as_object().and_then(|o| o.iter().next()) {
        Some((how, value)) => format!("{how} {}", value.as_str().map_or_else(|| value.to_string(), String::from)),
        None => compact(v),
    }
}

fn compact(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), String::from)
}

fn describe_fault(f: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(d) = f.get("delay") {
        let pct = d.pointer("/percentage/value").and_then(Value::as_f64).unwrap_or(100.0);
        parts.push(format!("delay {} for {pct}%", d.get("fixedDelay").and_then(Value::as_str).unwrap_or("?")));
    }
    if let Some(a) = f.get("abort") {
        let pct = a.pointer("/percentage/value").and_then(Value::as_f64).unwrap_or(100.0);
        parts.push(format!("abort {} for {pct}%", a.get("httpStatus").map(compact).unwrap_or_else(|| "?".into())));
    }
    parts.join(", ")
}

/// The DestinationRule's policy lines, and its failover priority list.
fn policy_of(dr: Option<&IstioObject>) -> (Vec<String>, Vec<String>) {
    let Some(dr) = dr else { return (vec![], vec![]) };
    let s = spec(dr);
    let Some(p) = s.get("trafficPolicy") else { return (vec![], vec![]) };
    let mut lines = Vec::new();
    if let Some(mode) = p.pointer("/tls/mode").and_then(Value::as_str) {
        lines.push(format!("tls {mode}"));
    }
    if let Some(o) = p.get("outlierDetection") {
        let errors = o.get("consecutive5xxErrors").or_else(|| o.get("consecutiveErrors")).map(compact).unwrap_or_else(|| "5".into());
        let eject = o.get("baseEjectionTime").map(compact).unwrap_or_else(|| "30s".into());
        lines.push(format!("outlier: {errors} consecutive 5xx, ejected {eject}"));
    }
    let priority: Vec<String> = p
        .pointer("/loadBalancer/localityLbSetting/failoverPriority")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    if !priority.is_empty() {
        lines.push("failover".to_string());
    }
    (lines, priority)
}

/// The parts of a DestinationRule's traffic policy (its own and its subsets') that
/// a TrafficRoute has no words for, each `DestinationRule ns/name: path value`.
fn unmodelled_policy(dr: &IstioObject) -> Vec<String> {
    let s = spec(dr);
    let mut out = Vec::new();
    let mut visit = |prefix: String, policy: &Value| {
        for (key, v) in policy.as_object().into_iter().flatten() {
            match key.as_str() {
                "tls" | "outlierDetection" => {}
                "loadBalancer" => {
                    for (k, lv) in v.as_object().into_iter().flatten().filter(|(k, _)| k.as_str() != "localityLbSetting") {
                        out.push(format!("DestinationRule {}: {prefix}loadBalancer.{k} {}", object_name(dr), compact(lv)));
                    }
                }
                other => out.push(format!("DestinationRule {}: {prefix}{other}", object_name(dr))),
            }
        }
    };
    if let Some(p) = s.get("trafficPolicy") {
        visit(String::new(), p);
    }
    for sub in s.get("subsets").and_then(Value::as_array).into_iter().flatten() {
        if let Some(p) = sub.get("trafficPolicy") {
            visit(format!("subset {} ", sub.get("name").and_then(Value::as_str).unwrap_or("?")), p);
        }
    }
    out
}

/// What an endpoint offers failover's prefix match: its labels, network and cluster id.
struct Endpoint {
    labels: BTreeMap<String, String>,
    network: Option<String>,
    cluster_id: Option<String>,
}

/// An endpoint's failover priority for a caller (lower first), as Istio computes it
/// (`applyFailoverPriorityPerLocality`): at the first entry of `failoverPriority`
/// whose value differs from the caller's (or from the value the entry gives), the
/// priority is the number of entries left. When the list starts with the bare
/// network label, another network only pushes the endpoint after every one on the
/// caller's network, and the entries that follow still order it.
fn failover_priority(priority: &[String], e: &Endpoint, caller: &Endpoint) -> usize {
    let value = |ep: &'_ Endpoint, label: &str| -> String {
        match label {
            NETWORK_LABEL => ep.network.clone().unwrap_or_default(),
            CLUSTER_LABEL => ep.cluster_id.clone().unwrap_or_default(),
            _ => ep.labels.get(label).cloned().unwrap_or_default(),
        }
    };
    let lowest = priority.len();
    let network_first = priority.first().is_some_and(|p| p == NETWORK_LABEL);
    let mut adjust = 0;
    for (j, entry) in priority.iter().enumerate() {
        let (label, wanted) = match entry.split_once('=') {
            Some((l, v)) => (l, v.to_string()),
            None => (entry.as_str(), value(caller, entry)),
        };
        if value(e, label) != wanted {
            if j == 0 && network_first {
                adjust = lowest;
                continue;
            }
            return lowest - j + adjust;
        }
    }
    adjust
}

/// Turn failover priorities into tiers 0, 1, ... without gaps.
fn assign_tiers(targets: &mut [Target], scores: &[usize]) {
    let mut distinct: Vec<usize> = scores.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    for (t, s) in targets.iter_mut().zip(scores) {
        t.tier = distinct.iter().position(|d| d == s);
    }
    targets.sort_by(|a, b| (a.tier, &a.cluster, &a.version).cmp(&(b.tier, &b.cluster, &b.version)));
}

fn pods_of(p: &ServicePresence, version: Option<&str>) -> (u32, u32) {
    match version {
        Some(v) => p.versions.get(v).map_or((0, 0), |n| (n.ready, n.total)),
        None => {
            let all = p.versions.values().chain(std::iter::once(&p.unversioned));
            all.fold((0, 0), |(r, t), n| (r + n.ready, t + n.total))
        }
    }
}

fn target(row: Option<&ServiceRow>, cluster: &str, version: Option<&str>, via: Option<String>) -> Target {
    let (ready, pods) = row.and_then(|r| r.clusters.get(cluster)).map_or((0, 0), |p| pods_of(p, version));
    Target { cluster: cluster.to_string(), version: version.map(String::from), ready, pods, via, tier: None }
}

fn unreachable(snap: &FleetSnapshot, cluster: &str, host: &str, caller: &str, problems: &mut Vec<Problem>) -> bool {
    let Some(c) = snap.cluster(cluster) else { return false };
    if live(c) {
        return false;
    }
    problems.push(Problem {
        code: "DEST_UNREACHABLE",
        message: format!("{host}: {cluster} is {}: shown as last seen", c.state.as_str()),
        clusters: vec![caller.to_string(), cluster.to_string()],
    });
    true
}

fn resolve_destination(
    snap: &FleetSnapshot,
    caller: &ClusterView,
    ns: &str,
    host: &str,
    subset: Option<&str>,
    weight: u32,
    problems: &mut Vec<Problem>,
) -> Destination {
    let dr = destination_rule(snap, &caller.name, host);
    let (policy, priority) = policy_of(dr);
    let outlier_spec = dr.and_then(|dr| spec(dr).pointer("/trafficPolicy/outlierDetection").cloned());
    let unmodelled = dr.map(unmodelled_policy).unwrap_or_default();
    let mut d =
        Destination { host: host.to_string(), subset: subset.map(String::from), weight, policy, targets: vec![], outlier_spec, unmodelled };
    let row = service_of_host(host, ns).and_then(|k| snap.service(&k));
    let entries: Vec<&IstioObject> =
        objects(snap, &caller.name, "ServiceEntry").into_iter().filter(|se| se.hosts.iter().any(|h| h == host)).collect();
    let me = Endpoint {
        labels: BTreeMap::new(),
        network: caller.mesh.network.clone(),
        cluster_id: snap.cluster_id_from(&caller.name, &caller.name),
    };
    if let Some(row) = row.filter(|_| entries.is_empty()) {
        // A Kubernetes service: its pods in every cluster the caller's istiod sees.
        let labels: Option<BTreeMap<String, String>> = match subset {
            None => Some(BTreeMap::new()),
            Some(s) => dr.and_then(|dr| dr.subsets.get(s)).cloned(),
        };
        let Some(labels) = labels else {
            problems.push(Problem {
                code: "SUBSET_UNDEFINED",
                message: format!(
                    "{host}: subset {} is defined by no DestinationRule for the host in {}: requests get 503",
                    subset.unwrap_or(""),
                    caller.name
                ),
                clusters: vec![caller.name.clone()],
            });
            return d;
        };
        let mut scores = Vec::new();
        let mut judged = true;
        for (cluster, _) in row.clusters.iter().filter(|(c, _)| snap.shares_discovery(&caller.name, c)) {
            let Some(view) = snap.cluster(cluster) else { continue };
            let id = snap.cluster_id_from(&caller.name, cluster);
            if labels.get(CLUSTER_LABEL).is_some_and(|want| id.as_deref() != Some(want.as_str())) {
                continue;
            }
            judged &= !unreachable(snap, cluster, host, &caller.name, problems);
            // A subset's version, else each version the cluster runs (and pods without one).
            let versions: Vec<Option<&str>> = match labels.get(version_label(view)) {
                Some(v) => vec![Some(v.as_str())],
                None => {
                    let p = &row.clusters[cluster];
                    let mut vs: Vec<Option<&str>> = p.versions.keys().map(|v| Some(v.as_str())).collect();
                    if p.unversioned.total > 0 || vs.is_empty() {
                        vs.push(None);
                    }
                    vs
                }
            };
            for version in versions {
                let t = target(Some(row), cluster, version, None);
                if labels.contains_key(version_label(view)) && t.pods == 0 {
                    continue;
                }
                let endpoint = Endpoint { labels: labels.clone(), network: view.mesh.network.clone(), cluster_id: id.clone() };
                scores.push(failover_priority(&priority, &endpoint, &me));
                d.targets.push(t);
            }
        }
        if !priority.is_empty() {
            assign_tiers(&mut d.targets, &scores);
        }
        for t in &d.targets {
            denied(snap, caller, row, &t.cluster, t.version.as_deref(), problems);
            tls_conflict(snap, caller, dr, row, &t.cluster, t.version.as_deref(), problems);
        }
        if judged && d.targets.iter().all(|t| t.pods == 0) {
            let what = match subset {
                Some(s) => format!("subset {s} selects no pods"),
                None => "no pods".to_string(),
            };
            problems.push(Problem {
                code: if subset.is_some() { "SUBSET_NO_PODS" } else { "NO_ENDPOINTS" },
                message: format!("{host}: {what} in the clusters {} sees: requests get 503", caller.name),
                clusters: vec![caller.name.clone()],
            });
        }
        return d;
    }
    if entries.is_empty() {
        problems.push(Problem {
            code: "HOST_UNKNOWN",
            message: format!("{host} is no service in the fleet and no ServiceEntry host in {}", caller.name),
            clusters: vec![caller.name.clone()],
        });
        return d;
    }
    // A ServiceEntry host: its endpoints, listed or selected, and the service each lands on.
    let mut scores = Vec::new();
    let mut rows: Vec<Option<&ServiceRow>> = Vec::new();
    for se in entries {
        let s = spec(se);
        if let Some(selector) = s.pointer("/workloadSelector/labels").and_then(|l| serde_json::from_value(l.clone()).ok()) {
            let (t, r) = selected(snap, &caller.name, &selector, None);
            rows.push(r);
            scores.push(failover_priority(
                &priority,
                &Endpoint { labels: BTreeMap::new(), network: caller.mesh.network.clone(), cluster_id: me.cluster_id.clone() },
                &me,
            ));
            d.targets.push(t);
        }
        for e in s.get("endpoints").and_then(Value::as_array).into_iter().flatten() {
            let address = e.get("address").and_then(Value::as_str).unwrap_or("");
            let labels: BTreeMap<String, String> = e.get("labels").and_then(|l| serde_json::from_value(l.clone()).ok()).unwrap_or_default();
            let network = e.get("network").and_then(Value::as_str).map(String::from);
            let ports: Vec<u64> = e.get("ports").and_then(Value::as_object).into_iter().flatten().filter_map(|(_, p)| p.as_u64()).collect();
            let endpoint = Endpoint { labels, network: network.or_else(|| caller.mesh.network.clone()), cluster_id: None };
            let gateway = snap.clusters.iter().find(|c| c.mesh.east_west_gateway.as_deref() == Some(address));
            let Some(remote) = gateway else {
                // A cluster not seen yet may be the one behind it: unknown, not wrong.
                let unseen: Vec<&str> =
                    snap.clusters.iter().filter(|c| !live(c) && c.mesh.east_west_gateway.is_none()).map(|c| c.name.as_str()).collect();
                if ports.contains(&EASTWEST_PORT) && !unseen.is_empty() {
                    problems.push(Problem {
                        code: "DEST_UNREACHABLE",
                        message: format!(
                            "{host}: endpoint {address}:{EASTWEST_PORT} is no east-west gateway of a cluster seen; not seen: {}",
                            unseen.join(", ")
                        ),
                        clusters: vec![caller.name.clone()],
                    });
                } else if ports.contains(&EASTWEST_PORT) {
                    problems.push(Problem {
                        code: "ENDPOINT_UNKNOWN",
                        message: format!(
                            "{host}: endpoint {address}:{EASTWEST_PORT} of ServiceEntry {} in {} is no registered cluster's east-west gateway",
                            object_name(se),
                            caller.name
                        ),
                        clusters: vec![caller.name.clone()],
                    });
                }
                scores.push(failover_priority(&priority, &endpoint, &me));
                rows.push(None);
                d.targets.push(Target {
                    cluster: "-".into(),
                    version: None,
                    ready: 0,
                    pods: 0,
                    via: Some(address.to_string()),
                    tier: None,
                });
                continue;
            };
            let port = ports.first().copied().unwrap_or(EASTWEST_PORT);
            scores.push(failover_priority(&priority, &Endpoint { cluster_id: Some(remote.name.clone()), ..endpoint }, &me));
            let (t, r) = exposed(snap, &caller.name, remote, host, format!("east-west {address}:{port}"), problems);
            rows.push(r);
            d.targets.push(t);
        }
    }
    for (t, row) in d.targets.iter().zip(&rows) {
        if let Some(row) = row {
            denied(snap, caller, row, &t.cluster, t.version.as_deref(), problems);
            tls_conflict(snap, caller, dr, row, &t.cluster, t.version.as_deref(), problems);
        }
    }
    if !priority.is_empty() {
        assign_tiers(&mut d.targets, &scores);
    }
    d
}

/// The pods a workload selector picks in `cluster`: the service whose selector it
/// extends, of the version it names (every version when it names none).
fn selected<'a>(
    snap: &'a FleetSnapshot,
    cluster: &str,
    selector: &BTreeMap<String, String>,
    via: Option<String>,
) -> (Target, Option<&'a ServiceRow>) {
    let label = snap.cluster(cluster).map_or("version", version_label);
    let version = selector.get(label).map(String::as_str);
    let row = snap.services.iter().map(AsRef::as_ref).find(|r| {
        r.clusters.get(cluster).is_some_and(|p| !p.selector.is_empty() && p.selector.iter().all(|(k, v)| selector.get(k) == Some(v)))
    });
    (target(row, cluster, version, via), row)
}

/// The labels a target's pods are known to carry: the Service's selector, and the
/// version label when the target is one version.
fn workload_labels(snap: &FleetSnapshot, row: &ServiceRow, cluster: &str, version: Option<&str>) -> Option<BTreeMap<String, String>> {
    let mut labels = row.clusters.get(cluster)?.selector.clone();
    if let Some(v) = version {
        labels.insert(version_label(snap.cluster(cluster)?).to_string(), v.to_string());
    }
    Some(labels)
}

/// Is the caller's identity allowed by the ALLOW AuthorizationPolicies on the
/// target's workloads? With none, everything is allowed; with some, a call is
/// allowed when one rule admits it. A caller's sidecar presents
/// `spiffe://<its trust domain>/ns/<ns>/sa/<account>`; the target accepts its own
/// trust domain's aliases too. Rules on namespaces, IP blocks or request
/// principals cannot be judged from here and count as allowing.
fn denied(snap: &FleetSnapshot, caller: &ClusterView, row: &ServiceRow, cluster: &str, version: Option<&str>, problems: &mut Vec<Problem>) {
    let (Some(target), Some(workload)) = (snap.cluster(cluster), workload_labels(snap, row, cluster, version)) else { return };
    let td = caller.mesh.trust_domain.clone().unwrap_or_else(|| "cluster.local".into());
    let own = target.mesh.trust_domain.clone().unwrap_or_else(|| "cluster.local".into());
    let aliased = td == own || target.mesh.accepted_trust_domains.contains(&td);
    let admits = |p: &str| -> bool {
        let p = p.strip_prefix("spiffe://").unwrap_or(p);
        match (p.strip_prefix('*'), p.strip_suffix('*')) {
            (Some(_), _) => true,
            (_, Some(prefix)) => format!("{td}/").starts_with(prefix) || prefix.starts_with(&format!("{td}/")) || prefix.is_empty(),
            _ => p.starts_with(&format!("{td}/")) || (aliased && p.starts_with(&format!("{own}/"))),
        }
    };
    let policies: Vec<&IstioObject> = objects(snap, cluster, "AuthorizationPolicy")
        .into_iter()
        .filter(|ap| ap.namespace == row.namespace || ap.namespace == "istio-system")
        .collect();
    let mut allow = Vec::new();
    for ap in policies {
        let s = spec(ap);
        if s.get("action").and_then(Value::as_str).is_some_and(|a| a != "ALLOW") {
            continue;
        }
        let selector: BTreeMap<String, String> =
            s.pointer("/selector/matchLabels").and_then(|l| serde_json::from_value(l.clone()).ok()).unwrap_or_default();
        if selector.iter().all(|(k, v)| workload.get(k) == Some(v)) {
            allow.push((ap, s));
        }
    }
    if allow.is_empty() {
        return;
    }
    let admitted = allow.iter().any(|(_, s)| {
        s.get("rules").and_then(Value::as_array).into_iter().flatten().any(|rule| {
            let from: Vec<&Value> = rule.get("from").and_then(Value::as_array).into_iter().flatten().collect();
            from.is_empty()
                || from.iter().any(|f| {
                    let source = f.get("source").cloned().unwrap_or(Value::Null);
                    match source.get("principals").and_then(Value::as_array) {
                        Some(ps) => ps.iter().filter_map(Value::as_str).any(admits),
                        None => true,
                    }
                })
        })
    });
    if !admitted {
        let names: Vec<String> = allow.iter().map(|(ap, _)| format!("AuthorizationPolicy {}", object_name(ap))).collect();
        problems.push(Problem {
            code: "CALLER_DENIED",
            message: format!(
                "{} in {cluster}: {} allow{} no identity of {} (trust domain {td}): its calls get 403",
                row.key(),
                names.join(" and "),
                if names.len() == 1 { "s" } else { "" },
                caller.name
            ),
            clusters: vec![caller.name.clone(), cluster.to_string()],
        });
    }
}

/// The mTLS mode a cluster's PeerAuthentications give a workload, and which one
/// decides: the workload's own (a selector it matches) in its namespace, else its
/// namespace's, else the mesh-wide one in istio-system, else Istio's default,
/// PERMISSIVE. `UNSET` inherits.
pub fn peer_mode(snap: &FleetSnapshot, cluster: &str, namespace: &str, workload: &BTreeMap<String, String>) -> (String, Option<String>) {
    let pas = objects(snap, cluster, "PeerAuthentication");
    let mode_of = |o: &IstioObject| -> Option<String> {
        let m = spec(o).pointer("/mtls/mode").and_then(Value::as_str).map(String::from)?;
        (m != "UNSET").then_some(m)
    };
    let selector = |o: &IstioObject| -> Option<BTreeMap<String, String>> {
        spec(o)
            .pointer("/selector/matchLabels")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .filter(|l: &BTreeMap<String, String>| !l.is_empty())
    };
    let own = pas
        .iter()
        .filter(|o| o.namespace == namespace)
        .filter(|o| selector(o).is_some_and(|sel| sel.iter().all(|(k, v)| workload.get(k) == Some(v))))
        .find_map(|o| mode_of(o).map(|m| (m, Some(object_name(o)))));
    let scoped = |ns: &str| {
        pas.iter().filter(|o| o.namespace == ns && selector(o).is_none()).find_map(|o| mode_of(o).map(|m| (m, Some(object_name(o)))))
    };
    own.or_else(|| scoped(namespace)).or_else(|| scoped("istio-system")).unwrap_or_else(|| ("PERMISSIVE".into(), None))
}

/// A DestinationRule's TLS mode the target's sidecars refuse: plain text or TLS of
/// the application's own (DISABLE, SIMPLE, MUTUAL) to STRICT mTLS, or Istio's mTLS
/// to a workload whose PeerAuthentication disables it.
#[allow(clippy::too_many_arguments)]
fn tls_conflict(
    snap: &FleetSnapshot,
    caller: &ClusterView,
    dr: Option<&IstioObject>,
    row: &ServiceRow,
    cluster: &str,
    version: Option<&str>,
    problems: &mut Vec<Problem>,
) {
    let Some(dr) = dr else { return };
    let Some(mode) = spec(dr).pointer("/trafficPolicy/tls/mode").and_then(Value::as_str).map(String::from) else { return };
    let Some(workload) = workload_labels(snap, row, cluster, version) else { return };
    let (peer, by) = peer_mode(snap, cluster, &row.namespace, &workload);
    let refused = match (mode.as_str(), peer.as_str()) {
        ("DISABLE" | "SIMPLE" | "MUTUAL", "STRICT") => Some("accepts Istio mTLS only"),
        ("ISTIO_MUTUAL", "DISABLE") => Some("accepts plain text only"),
        _ => None,
    };
    if let Some(why) = refused {
        problems.push(Problem {
            code: "TLS_CONFLICT",
            message: format!(
                "{} in {cluster} {why} (PeerAuthentication {}: {peer}), but DestinationRule {} in {} sends tls {mode}: calls fail",
                row.key(),
                by.as_deref().unwrap_or("-"),
                object_name(dr),
                caller.name
            ),
            clusters: vec![caller.name.clone(), cluster.to_string()],
        });
    }
}

/// What `remote` does with `host` arriving at its east-west gateway: a ServiceEntry
/// there must map it to local workloads, and a Gateway must pass it through.
fn exposed<'a>(
    snap: &'a FleetSnapshot,
    caller: &str,
    remote: &ClusterView,
    host: &str,
    via: String,
    problems: &mut Vec<Problem>,
) -> (Target, Option<&'a ServiceRow>) {
    let nothing = |via| (Target { cluster: remote.name.clone(), version: None, ready: 0, pods: 0, via: Some(via), tier: None }, None);
    // A cluster not live is resolved as last seen (its objects and pods are kept), and
    // not judged: what it lacks may only be unseen.
    let down = unreachable(snap, &remote.name, host, caller, problems);
    let mapping = objects(snap, &remote.name, "ServiceEntry").into_iter().find(|se| se.hosts.iter().any(|h| h == host));
    let passes = objects(snap, &remote.name, "Gateway")
        .into_iter()
        .any(|g| g.hosts.iter().any(|h| h.rsplit('/').next().is_some_and(|h| h == "*" || host_covers(h, &g.namespace, host))));
    let selector: Option<BTreeMap<String, String>> =
        mapping.and_then(|se| spec(se).pointer("/workloadSelector/labels").and_then(|l| serde_json::from_value(l.clone()).ok()));
    let missing = match (&selector, passes) {
        (None, _) => Some("no ServiceEntry maps it to workloads there"),
        (_, false) => Some("no Gateway there passes it through"),
        _ => None,
    };
    if let Some(why) = missing.filter(|_| !down) {
        problems.push(Problem {
            code: "NOT_EXPOSED",
            message: format!("{host}: {caller} sends it to {}'s east-west gateway, but {why}: requests fail", remote.name),
            clusters: vec![caller.to_string(), remote.name.clone()],
        });
    }
    match selector {
        Some(s) => selected(snap, &remote.name, &s, Some(via)),
        None => nothing(via),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
