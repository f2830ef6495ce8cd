//! A stand-in for each simulated cluster's Prometheus, so the demo shows an
//! observed split: every second the cluster's `productpage` calls `reviews`
//! [`RATE`] times, shared out as the route in force in that cluster says (its
//! oldest VirtualService's catch-all rule, subsets from its DestinationRule,
//! federated `<version>.<svc>.<ns>.svc.<cluster>.global` hosts; else its oldest
//! HTTPRoute on the Service, whose backend Services select a version; without
//! either, its own pods by count), and counted as Istio's source reporter counts
//! (`istio_requests_total`, `istio_request_duration_milliseconds`), each under
//! the `destination_service` of the host it was sent to, as Envoy names it. A
//! destination with no ready pod, or in a cluster that is down, answers 503.
//!
//! Simulated arithmetic, not routed requests: where requests are really routed
//! (by istiod and gRPC's xDS client) is the real test bed's mesh. The admin
//! endpoint answers Prometheus' `/api/v1/query` for range selectors of these
//! series and `up` (what meshdeck asks); nothing else of PromQL.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};

use super::cluster::SimCluster;
use super::faults::Fault;

/// Requests per second from each cluster's caller.
pub const RATE: f64 = 50.0;
/// Seconds of samples kept.
const KEEP: f64 = 900.0;
const BUCKETS: [&str; 9] = ["1", "5", "10", "25", "50", "100", "250", "500", "+Inf"];
const SERVICE: &str = "reviews";
const NAMESPACE: &str = "default";
const JOB: &str = "sim-mesh";

type Labels = BTreeMap<String, String>;

/// One cluster's counters and their samples, one per tick.
#[derive(Default)]
pub struct Traffic {
    counters: BTreeMap<Labels, f64>,
    /// Requests owed to each destination between ticks (fractions carried over).
    carry: BTreeMap<(String, String), f64>,
    samples: BTreeMap<Labels, VecDeque<(f64, f64)>>,
    last: Option<f64>,
    /// Workloads of this cluster answering a share of requests with 500 (`reviews-v3` → 0.2).
    failing: BTreeMap<String, f64>,
    /// Failures owed to each destination between ticks.
    fail_carry: BTreeMap<(String, String), f64>,
    /// The stand-in Prometheus is stopped: queries fail (the callers still count).
    pub stopped: bool,
}

impl Traffic {
    /// Make one of this cluster's `reviews` workloads (`reviews-v3`) answer `fraction`
    /// of its requests with 500, as a bad build would (a 500 is not retried by
    /// Istio's default retry policy, so its callers see it); 0 heals it.
    pub fn fail(&mut self, workload: &str, fraction: f64) {
        if fraction <= 0.0 {
            self.failing.remove(workload);
        } else {
            self.failing.insert(workload.to_string(), fraction.min(1.0));
        }
    }
}

/// Where a caller's requests go: (cluster, version, share of 1, the host sent to).
fn shares(caller: &SimCluster, serving: &std::collections::BTreeSet<(String, String)>) -> Vec<(String, String, f64, String)> {
    let store = caller.store();
    let objects = |group: &str, plural: &str| -> Vec<Value> {
        ["v1", "v1beta1", "v1alpha3"]
            .iter()
            .find_map(|v| store.registry.get(group, v, plural).cloned())
            .map(|rt| store.all_of(&rt).iter().map(|s| s.value()).collect())
            .unwrap_or_default()
    };
    let local = |h: &str| {
        [SERVICE.to_string(), format!("{SERVICE}.{NAMESPACE}"), format!("{SERVICE}.{NAMESPACE}.svc.cluster.local")].contains(&h.to_string())
    };
    let pods = objects("", "pods");
    // Endpoints are ready pods: one restarting takes no requests.
    let ready_versions = |cluster_pods: &[Value]| -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for p in cluster_pods {
            let labels = &p["metadata"]["labels"];
            if p["metadata"]["namespace"] == NAMESPACE && labels["app"] == SERVICE && ready(p) {
                *out.entry(labels["version"].as_str().unwrap_or("unknown").to_string()).or_insert(0) += 1;
            }
        }
        out
    };
    let mut vss: Vec<Value> = objects("networking.istio.io", "virtualservices")
        .into_iter()
        .filter(|v| v["metadata"]["namespace"] == NAMESPACE)
        .filter(|v| v["spec"]["hosts"].as_array().is_some_and(|h| h.iter().any(|h| h.as_str().is_some_and(local))))
        .filter(|v| v["spec"]["gateways"].as_array().is_none_or(|g| g.is_empty()))
        .collect();
    // Istio keeps the oldest VirtualService for a host.
    vss.sort_by_key(|v| v["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string());
    let fqdn = format!("{SERVICE}.{NAMESPACE}.svc.cluster.local");
    let by_pods = |cluster: &str| -> Vec<(String, String, f64, String)> {
        let versions = ready_versions(&pods);
        let total: u32 = versions.values().sum();
        versions.into_iter().map(|(v, n)| (cluster.to_string(), v, f64::from(n) / f64::from(total.max(1)), fqdn.clone())).collect()
    };
    let Some(vs) = vss.first() else {
        return http_route_shares(caller, &objects, serving).unwrap_or_else(|| by_pods(&caller.name));
    };
    let Some(rule) = vs["spec"]["http"].as_array().and_then(|rules| rules.iter().find(|r| r.get("match").is_none())) else {
        return by_pods(&caller.name);
    };
    let subsets: BTreeMap<String, Labels> = objects("networking.istio.io", "destinationrules")
        .iter()
        .filter(|d| d["metadata"]["namespace"] == NAMESPACE && d["spec"]["host"].as_str().is_some_and(local))
        .flat_map(|d| d["spec"]["subsets"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| Some((s["name"].as_str()?.to_string(), serde_json::from_value(s["labels"].clone()).ok()?)))
        .collect();
    let routes = rule["route"].as_array().cloned().unwrap_or_default();
    let weights: Vec<f64> = routes.iter().map(|r| r["weight"].as_f64().unwrap_or(if routes.len() == 1 { 100.0 } else { 0.0 })).collect();
    let total: f64 = weights.iter().sum();
    let mut out = Vec::new();
    for (r, w) in routes.iter().zip(weights) {
        let share = if total > 0.0 { w / total } else { 0.0 };
        let host = r["destination"]["host"].as_str().unwrap_or_default();
        let subset = r["destination"]["subset"].as_str();
        if local(host) {
            match subset.and_then(|s| subsets.get(s)) {
                Some(labels) => {
                    let cluster = labels.get("topology.istio.io/cluster").cloned().unwrap_or_else(|| caller.name.clone());
                    let version = labels.get("version").cloned().unwrap_or_else(|| "unknown".into());
                    out.push((cluster, version, share, fqdn.clone()));
                }
                None if subset.is_some() => out.push(("unknown".into(), "unknown".into(), share, fqdn.clone())),
                None => out.extend(by_pods(&caller.name).into_iter().map(|(c, v, s, h)| (c, v, s * share, h))),
            }
        } else if let Some(rest) = host.strip_suffix(".global") {
            // `<version>.<svc>.<ns>.svc.<cluster>.global`; a failover host's first tier is taken as local.
            let parts: Vec<&str> = rest.split('.').collect();
            match parts.as_slice() {
                [v, svc, ns, "svc", cluster] if *svc == SERVICE && *ns == NAMESPACE => {
                    out.push((cluster.to_string(), v.to_string(), share, host.to_string()))
                }
                _ => out.extend(by_pods(&caller.name).into_iter().map(|(c, v, s, _)| (c, v, s * share, host.to_string()))),
            }
        } else {
            out.push(("unknown".into(), "unknown".into(), share, host.to_string()));
        }
    }
    out
}

/// The caller's oldest HTTPRoute on the Service, if any: its first rule without
/// matches, each backend Service's version (its selector's `version`) served in
/// the caller's cluster if it is ambient and the Service not global, else in
/// every cluster that serves it, evenly.
fn http_route_shares(
    caller: &SimCluster,
    objects: &dyn Fn(&str, &str) -> Vec<Value>,
    serving: &std::collections::BTreeSet<(String, String)>,
) -> Option<Vec<(String, String, f64, String)>> {
    let mut routes: Vec<Value> = objects("gateway.networking.k8s.io", "httproutes")
        .into_iter()
        .filter(|r| r["metadata"]["namespace"] == NAMESPACE)
        .filter(|r| r["spec"]["parentRefs"].as_array().is_some_and(|p| p.iter().any(|p| p["kind"] == "Service" && p["name"] == SERVICE)))
        .collect();
    routes.sort_by_key(|r| r["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string());
    let rule = routes.first()?["spec"]["rules"].as_array()?.iter().find(|r| r["matches"].as_array().is_none_or(|m| m.is_empty()))?.clone();
    let services = objects("", "services");
    let ambient = objects("", "namespaces")
        .iter()
        .any(|n| n["metadata"]["name"] == NAMESPACE && n["metadata"]["labels"]["istio.io/dataplane-mode"] == "ambient");
    let backends = rule["backendRefs"].as_array()?.clone();
    let total: f64 = backends.iter().map(|b| b["weight"].as_f64().unwrap_or(1.0)).sum();
    let mut out = Vec::new();
    for b in &backends {
        let share = if total > 0.0 { b["weight"].as_f64().unwrap_or(1.0) / total } else { 0.0 };
        let name = b["name"].as_str().unwrap_or_default();
        let host = format!("{name}.{NAMESPACE}.svc.cluster.local");
        let svc = services.iter().find(|s| s["metadata"]["namespace"] == NAMESPACE && s["metadata"]["name"] == name);
        let version = svc.and_then(|s| s["spec"]["selector"]["version"].as_str()).map(String::from);
        let local = ambient && svc.is_none_or(|s| s["metadata"]["labels"]["istio.io/global"] != "true");
        let clusters: Vec<&String> = match &version {
            Some(v) => serving.iter().filter(|(c, sv)| sv == v && (!local || *c == caller.name)).map(|(c, _)| c).collect(),
            None => vec![&caller.name],
        };
        let version = version.unwrap_or_else(|| "unknown".into());
        if clusters.is_empty() {
            out.push(("unknown".into(), version, share, host));
            continue;
        }
        for c in &clusters {
            out.push(((*c).clone(), version.clone(), share / clusters.len() as f64, host.clone()));
        }
    }
    Some(out)
}

/// Every (cluster, version) that answers: a ready `reviews` pod of that version
/// in a cluster that is not down. Read once per tick for every caller.
fn serving(fleet: &[std::sync::Arc<SimCluster>]) -> std::collections::BTreeSet<(String, String)> {
    let mut out = std::collections::BTreeSet::new();
    for c in fleet.iter().filter(|c| c.fault() != Fault::Down) {
        let pods = {
            let store = c.store();
            let Some(rt) = store.registry.get("", "v1", "pods").cloned() else { continue };
            store.all_of(&rt)
        };
        for p in pods.iter().map(|p| p.value()) {
            let labels = &p["metadata"]["labels"];
            if p["metadata"]["namespace"] == NAMESPACE && labels["app"] == SERVICE && ready(&p) {
                out.insert((c.name.clone(), labels["version"].as_str().unwrap_or("unknown").to_string()));
            }
        }
    }
    out
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// One second (or however long since the last tick) of every cluster's calls, then a scrape.
pub fn tick(fleet: &[std::sync::Arc<SimCluster>], now: f64) {
    let serving = serving(fleet);
    // What each cluster's workloads fail, read once per tick.
    let failing: BTreeMap<String, BTreeMap<String, f64>> =
        fleet.iter().map(|c| (c.name.clone(), c.traffic.lock().unwrap_or_else(|p| p.into_inner()).failing.clone())).collect();
    for c in fleet {
        let routes = shares(c, &serving);
        let answers: Vec<bool> = routes.iter().map(|(dc, v, _, _)| serving.contains(&(dc.clone(), v.clone()))).collect();
        let mut t = c.traffic.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = t.last.map(|l| (now - l).clamp(0.0, 5.0)).unwrap_or(0.0);
        t.last = Some(now);
        for ((dc, v, share, host), ok) in routes.iter().zip(answers) {
            let owed = t.carry.get(&(dc.clone(), v.clone())).copied().unwrap_or(0.0) + RATE * elapsed * share;
            let whole = owed.floor();
            t.carry.insert((dc.clone(), v.clone()), owed - whole);
            if whole < 1.0 {
                continue;
            }
            // A workload that answers but fails some: 500s naming it, as its sidecar reports them.
            let fraction = failing.get(dc).and_then(|f| f.get(&format!("{SERVICE}-{v}"))).copied().unwrap_or(0.0);
            let owed_failures = t.fail_carry.get(&(dc.clone(), v.clone())).copied().unwrap_or(0.0) + whole * fraction;
            let failed = if ok { owed_failures.floor().min(whole) } else { 0.0 };
            t.fail_carry.insert((dc.clone(), v.clone()), owed_failures - failed);
            let answered = [(whole - failed, true), (failed, false)];
            for (count, good) in answered {
                if count < 1.0 {
                    continue;
                }
                count_requests(&mut t, c, (dc, v, host), ok, good, count);
            }
        }
        scrape(&mut t, c, now);
    }
}

/// `whole` requests from `c`'s caller to `v` in `dc`: reached a workload
/// (`reached`), which answered well (`good`) or with a 500 naming itself; not
/// reached: a 503 with no workload (UH).
fn count_requests(t: &mut Traffic, c: &SimCluster, (dc, v, host): (&str, &str, &str), reached: bool, good: bool, whole: f64) {
    let mut labels: Labels = [
        ("reporter", "source"),
        ("source_workload", "productpage-v1"),
        ("source_workload_namespace", NAMESPACE),
        ("source_cluster", c.name.as_str()),
        ("destination_service", host),
        ("destination_service_namespace", NAMESPACE),
        ("job", JOB),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    labels.insert("instance".into(), format!("{}-productpage", c.name));
    let (workload, cluster, version) = if reached {
        (format!("{SERVICE}-{v}"), dc.to_string(), v.to_string())
    } else {
        ("unknown".into(), "unknown".into(), "unknown".into())
    };
    let code = match (reached, good) {
        (true, true) => "200",
        (true, false) => "500",
        (false, _) => "503",
    };
    labels.insert("response_code".into(), code.into());
    labels.insert("response_flags".into(), if reached { "-" } else { "UH" }.into());
    labels.insert("destination_workload".into(), workload);
    labels.insert("destination_version".into(), version);
    labels.insert("destination_cluster".into(), cluster);
    let mut requests = labels.clone();
    requests.insert("__name__".into(), "istio_requests_total".into());
    *t.counters.entry(requests).or_default() += whole;
    // A hop to another cluster takes longer than one within.
    let latency = if dc == c.name { 4.0 } else { 12.0 };
    for le in BUCKETS {
        let bound: f64 = le.parse().unwrap_or(f64::INFINITY);
        let mut bucket = labels.clone();
        bucket.insert("__name__".into(), "istio_request_duration_milliseconds_bucket".into());
        bucket.insert("le".into(), le.into());
        *t.counters.entry(bucket).or_default() += if latency <= bound { whole } else { 0.0 };
    }
}

/// One scrape of `c`'s caller: every counter's value now, and `up`.
fn scrape(t: &mut Traffic, c: &SimCluster, now: f64) {
    let mut up: Labels = [("__name__", "up"), ("job", JOB)].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    up.insert("instance".into(), format!("{}-productpage", c.name));
    let scrape: Vec<(Labels, f64)> = t.counters.iter().map(|(l, v)| (l.clone(), *v)).chain([(up, 1.0)]).collect();
    for (labels, value) in scrape {
        let series = t.samples.entry(labels).or_default();
        series.push_back((now, value));
        while series.front().is_some_and(|(at, _)| now - at > KEEP) {
            series.pop_front();
        }
    }
}

/// Prometheus' answer to `/api/v1/query?query=SELECTOR[Ns]&time=T` for one cluster.
pub fn query(c: &SimCluster, query: &str, time: Option<f64>, now: f64) -> (u16, Value) {
    let bad = |why: String| (400, json!({"status": "error", "errorType": "bad_data", "error": why}));
    let Some((selector, range)) = query.trim().strip_suffix(']').and_then(|q| q.rsplit_once('[')) else {
        return bad(format!("the sim's Prometheus stand-in answers range selectors only (METRIC{{...}}[Ns]), not {query:?}"));
    };
    let Some(seconds) = range.strip_suffix('s').and_then(|s| s.parse::<f64>().ok()) else {
        return bad(format!("a range in seconds, such as [60s], not [{range}]"));
    };
    let (name, matchers) = match selector.split_once('{') {
        Some((n, m)) => (n.trim(), m.trim_end_matches('}')),
        None => (selector.trim(), ""),
    };
    // Each label's accepted values: one (`k="v"`), or the literals of a regex alternation (`k=~"a|b"`).
    let mut want: BTreeMap<String, Vec<String>> = [("__name__".to_string(), vec![name.to_string()])].into();
    for m in matchers.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let Some((k, v)) = m.split_once('=') else { return bad(format!("a matcher k=\"v\", not {m:?}")) };
        if k.ends_with('!') {
            return bad(format!("only equality matchers and alternations of literals, not {m:?}"));
        }
        let values = match v.strip_prefix('~') {
            Some(regex) => {
                // PromQL's `\\.` is the regex's escaped dot: a literal.
                let literal = regex.trim().trim_matches('"').replace("\\\\.", ".");
                if literal.contains(|c: char| "\\*+?()[]{}^$".contains(c)) {
                    return bad(format!("only alternations of literal values (a|b), not {m:?}"));
                }
                literal.split('|').map(String::from).collect()
            }
            None => vec![v.trim().trim_matches('"').to_string()],
        };
        want.insert(k.trim().to_string(), values);
    }
    let at = time.unwrap_or(now);
    let t = c.traffic.lock().unwrap_or_else(|p| p.into_inner());
    let result: Vec<Value> = t
        .samples
        .iter()
        .filter(|(labels, _)| want.iter().all(|(k, vs)| labels.get(k).is_some_and(|l| vs.contains(l))))
        .filter_map(|(labels, samples)| {
            let values: Vec<Value> =
                samples.iter().filter(|(s, _)| *s > at - seconds && *s <= at).map(|(s, v)| json!([s, format!("{v}")])).collect();
            (!values.is_empty()).then(|| json!({"metric": labels, "values": values}))
        })
        .collect();
    (200, json!({"status": "success", "data": {"resultType": "matrix", "result": result}}))
}

#[cfg(test)]
mod tests {
    #[test]
    fn selectors_that_are_not_a_range_are_refused_with_why() {
        let c = crate::cluster::SimCluster::new(
            "c1",
            crate::store::ClusterStore::new(crate::resources::ResourceRegistry::default(), 1),
            vec![],
        );
        let (code, v) = super::query(&c, "sum(up)", None, 100.0);
        assert_eq!(code, 400, "{v}");
        assert!(v["error"].as_str().unwrap_or_default().contains("range selectors only"));
        let (code, v) = super::query(&c, "up[60s]", None, 100.0);
        assert_eq!((code, v["data"]["result"].as_array().map(Vec::len)), (200, Some(0)));
        // meshdeck asks for a route's hosts as an alternation of literals: answered.
        let hosts = r#"istio_requests_total{reporter="source",destination_service=~"reviews\\.default\\.svc\\.cluster\\.local|reviews-v3\\.default\\.svc\\.cluster\\.local"}[60s]"#;
        assert_eq!(super::query(&c, hosts, None, 100.0).0, 200);
        // Any other regex is not the stand-in's to answer.
        let (code, v) = super::query(&c, r#"istio_requests_total{destination_service=~"reviews.*"}[60s]"#, None, 100.0);
        assert_eq!(code, 400, "{v}");
        assert!(v["error"].as_str().unwrap_or_default().contains("only alternations of literal values"), "{v}");
    }

    #[test]
    fn counts_are_named_after_the_host_they_were_sent_to() {
        let c = crate::cluster::SimCluster::new(
            "c1",
            crate::store::ClusterStore::new(crate::resources::ResourceRegistry::default(), 1),
            vec![],
        );
        let mut t = super::Traffic::default();
        super::count_requests(&mut t, &c, ("c2", "v3", "reviews-v3.default.svc.cluster.local"), true, true, 10.0);
        super::scrape(&mut t, &c, 100.0);
        drop(std::mem::replace(&mut *c.traffic.lock().expect("traffic"), t));
        let one = r#"istio_requests_total{destination_service=~"reviews-v3\\.default\\.svc\\.cluster\\.local"}[60s]"#;
        let (_, v) = super::query(&c, one, None, 100.0);
        assert_eq!(v["data"]["result"][0]["metric"]["destination_version"], "v3", "{v}");
        let other = r#"istio_requests_total{destination_service="reviews.default.svc.cluster.local"}[60s]"#;
        let (_, v) = super::query(&c, other, None, 100.0);
        assert_eq!(v["data"]["result"].as_array().map(Vec::len), Some(0), "{v}");
    }
}
