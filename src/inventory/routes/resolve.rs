//! Resolving one calling cluster's route to a service: the VirtualService in force,
//! its rules in order, and each destination down to clusters, versions and pods
//! (through subsets, ServiceEntry endpoints and remote east-west gateways).

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::inventory::model::{ClusterView, FleetSnapshot, IstioObject, ServicePresence, ServiceRow, service_of_host};

pub(super) fn route(snap: &FleetSnapshot, row: &ServiceRow, caller: &ClusterView) -> EffectiveRoute {
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
        written: None,
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
    let hosts: Vec<&str> = r.rules.iter().flat_map(|rule| &rule.destinations).map(|d| d.host.as_str()).collect();
    let rules =
        objects(snap, &caller.name, "DestinationRule").into_iter().filter(|dr| dr.hosts.iter().any(|h| hosts.contains(&h.as_str())));
    r.written = vss.first().copied().into_iter().chain(rules).filter_map(|o| o.written).max();
    r
}

#[allow(clippy::too_many_arguments)]
pub(super) fn resolve_rule(
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
pub(super) fn describe_match(m: &Value) -> String {
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

pub(super) fn string_match(v: &Value) -> String {
    match v.as_object().and_then(|o| o.iter().next()) {
        Some((how, value)) => format!("{how} {}", value.as_str().map_or_else(|| value.to_string(), String::from)),
        None => compact(v),
    }
}

pub(super) fn compact(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), String::from)
}

pub(super) fn describe_fault(f: &Value) -> String {
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
pub(super) fn policy_of(dr: Option<&IstioObject>) -> (Vec<String>, Vec<String>) {
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
pub(super) fn unmodelled_policy(dr: &IstioObject) -> Vec<String> {
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

pub(super) fn pods_of(p: &ServicePresence, version: Option<&str>) -> (u32, u32) {
    match version {
        Some(v) => p.versions.get(v).map_or((0, 0), |n| (n.ready, n.total)),
        None => {
            let all = p.versions.values().chain(std::iter::once(&p.unversioned));
            all.fold((0, 0), |(r, t), n| (r + n.ready, t + n.total))
        }
    }
}

pub(super) fn target(row: Option<&ServiceRow>, cluster: &str, version: Option<&str>, via: Option<String>) -> Target {
    let (ready, pods) = row.and_then(|r| r.clusters.get(cluster)).map_or((0, 0), |p| pods_of(p, version));
    Target { cluster: cluster.to_string(), version: version.map(String::from), ready, pods, via, tier: None }
}

pub(super) fn unreachable(snap: &FleetSnapshot, cluster: &str, host: &str, caller: &str, problems: &mut Vec<Problem>) -> bool {
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

pub(super) fn resolve_destination(
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
        // Clusters the caller's istiod reads that meshdeck does not watch: their pods
        // are unknown, so "no pods" cannot be said.
        let unwatched = caller
            .mesh
            .remote_secrets
            .iter()
            .any(|r| !snap.clusters.iter().any(|v| v.name == *r || v.mesh.cluster_id.as_deref() == Some(r.as_str())));
        let mut judged = !unwatched;
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
pub(super) fn selected<'a>(
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
pub(super) fn workload_labels(
    snap: &FleetSnapshot,
    row: &ServiceRow,
    cluster: &str,
    version: Option<&str>,
) -> Option<BTreeMap<String, String>> {
    let mut labels = row.clusters.get(cluster)?.selector.clone();
    if let Some(v) = version {
        labels.insert(version_label(snap.cluster(cluster)?).to_string(), v.to_string());
    }
    Some(labels)
}

/// What `remote` does with `host` arriving at its east-west gateway: a ServiceEntry
/// there must map it to local workloads, and a Gateway must pass it through.
pub(super) fn exposed<'a>(
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
