//! The observed split beside the intended one, per service and calling cluster.
//!
//! Counts come from the calling cluster's own Prometheus, from the source
//! reporter only (the caller's sidecar), so no request is counted twice.
//! Requests in a window are counter differences read from raw samples, series
//! by series ([`count_window`]): exact where `increase()` extrapolates, a series
//! born in the window counts from zero, a counter reset counts what was counted
//! since, and a gap in scraping is said, never filled. The intended weights are those of the
//! route in force (`inventory::routes`), its catch-all rule.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::inventory::routes::EffectiveRoute;

/// z for a two-sided 99.9% bound: drift is flagged only outside it, not on noise.
pub const Z_999: f64 = 3.290_526_731_491_926;

/// What one series counted in a window (a counter's increase).
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One series of a range vector: its raw samples `(time, value)`, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub samples: Vec<(f64, f64)>,
}

/// Parse Prometheus' `/api/v1/query` answer to a range selector (a matrix).
pub fn parse_matrix(body: &[u8]) -> Result<Vec<Series>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not Prometheus' JSON: {e}"))?;
    if v["status"] != "success" {
        return Err(format!("Prometheus: {}", v["error"].as_str().unwrap_or("query failed")));
    }
    let mut out = Vec::new();
    for r in v["data"]["result"].as_array().into_iter().flatten() {
        let labels = r["metric"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        let mut samples = Vec::new();
        for p in r["values"].as_array().into_iter().flatten() {
            let t = p[0].as_f64().ok_or("a sample without a time")?;
            let value = p[1].as_str().and_then(|s| s.parse::<f64>().ok()).ok_or("a sample without a value")?;
            samples.push((t, value));
        }
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        out.push(Series { labels, samples });
    }
    Ok(out)
}

/// What the counters of each set counted in `(start, end]`, and since when the
/// count is whole (None: no sample in the window at all).
///
/// Read from raw samples, target by target (`job`, `instance`), because an
/// instant query's lookback hides gaps: after a Prometheus restart the sample
/// "at the window's start" can be minutes older, and a difference from it would
/// count requests from before the window. When a target was scraped is read
/// from its `up` series (Prometheus writes one at every scrape, whatever the
/// target exports), else from the counters' own samples. So:
/// - a target scraped at the start (a scrape within two scrape intervals)
///   counts from there; one not scraped then (Prometheus or the target resumed,
///   or a fresh Prometheus) counts from its first scrape in the window, never
///   from zero, so nothing from before is counted: the count is whole only
///   since then, and the answer says so;
/// - each series counts from its last sample at or before that point; a series
///   first seen later was born in the window and counts from zero (a first 503,
///   a fresh caller's first requests to a destination).
///
/// Resets (a process restarted) count what was counted since, pair by pair.
pub fn count_window(sets: &[&[Series]], up: &[Series], start: f64, end: f64) -> (Vec<Vec<Sample>>, Option<f64>) {
    let target = |s: &Series| {
        let l = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
        (l("job"), l("instance"))
    };
    let mut targets: BTreeMap<(String, String), Vec<&Series>> = BTreeMap::new();
    for set in sets {
        for s in set.iter() {
            targets.entry(target(s)).or_default().push(s);
        }
    }
    let mut scrapes: BTreeMap<(String, String), Vec<&Series>> = BTreeMap::new();
    for s in up {
        scrapes.entry(target(s)).or_default().push(s);
    }
    // Per target: counted from `from` (the start, or where its scrapes resume).
    let mut from_of: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    for (key, series) in &targets {
        // Its scrapes that succeeded: `up` == 1 where Prometheus gave it (a failed
        // scrape, such as a first one timing out after a restart, writes `up` 0 and
        // no counter sample), else the counters' own samples.
        let seen: Vec<f64> = match scrapes.get(key) {
            Some(up) => up.iter().flat_map(|s| s.samples.iter().filter(|p| p.1 > 0.0).map(|p| p.0)).collect(),
            None => series.iter().flat_map(|s| s.samples.iter().map(|p| p.0)).collect(),
        };
        let mut sorted = seen.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.dedup();
        let mut gaps: Vec<f64> = sorted.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_by(f64::total_cmp);
        // Two scrape intervals (their median); a minute where there is no second sample to tell.
        let bound = gaps.get(gaps.len() / 2).map(|i| 2.0 * i + 0.5).unwrap_or(60.0);
        let times = || seen.iter().copied();
        let live = times().any(|t| t <= start && start - t <= bound);
        let first_inside = times().filter(|t| *t > start && *t <= end).min_by(f64::total_cmp);
        match (live, first_inside) {
            (true, _) => {
                from_of.insert(key.clone(), (start, bound));
            }
            (false, Some(t)) => {
                from_of.insert(key.clone(), (t, bound));
            }
            (false, None) => {}
        }
    }
    let covered = from_of.values().map(|(f, _)| *f).max_by(f64::total_cmp);
    let counted = sets
        .iter()
        .map(|set| {
            set.iter()
                .filter_map(|s| {
                    let &(from, bound) = from_of.get(&target(s))?;
                    let inside: Vec<(f64, f64)> = s.samples.iter().copied().filter(|p| p.0 <= end).collect();
                    // The baseline: the last sample at `from` or before it, if recent.
                    let base = inside.iter().rposition(|p| p.0 <= from + 1e-6).filter(|&i| from - inside[i].0 <= bound);
                    // No sample at `from` while its target was scraped then: the
                    // series was born later (a first 503) and counts from zero.
                    let mut value = match base {
                        Some(_) => 0.0,
                        None => inside.iter().find(|p| p.0 > from).map(|p| p.1).unwrap_or(0.0),
                    };
                    let first = base.unwrap_or_else(|| inside.iter().position(|p| p.0 > from).unwrap_or(inside.len()));
                    for w in inside.get(first..).unwrap_or_default().windows(2) {
                        value += if w[1].1 >= w[0].1 { w[1].1 - w[0].1 } else { w[1].1 };
                    }
                    Some(Sample { labels: s.labels.clone(), value })
                })
                .collect()
        })
        .collect();
    (counted, covered)
}

/// Istio's `destination_service` for a `name.namespace` service.
pub fn service_fqdn(service: &str) -> String {
    format!("{service}.svc.cluster.local")
}

/// Every `destination_service` a route's requests are counted under. A proxy names
/// the service of the upstream it sent to, not the one called: a route to another
/// host (an HTTPRoute's per-version Service `reviews-v3`, federation's
/// `v3.reviews.default.svc.cluster2.global`) counts there (istio#45555).
pub fn route_hosts(route: &EffectiveRoute) -> BTreeSet<String> {
    let ns = route.service.split_once('.').map(|(_, ns)| ns).unwrap_or("default");
    let mut out: BTreeSet<String> = [service_fqdn(&route.service)].into();
    for d in route.rules.iter().flat_map(|r| &r.destinations) {
        // A short host is in the route's namespace, as Istio reads it.
        out.insert(match d.host.split('.').count() {
            1 => format!("{}.{ns}.svc.cluster.local", d.host),
            2 => format!("{}.svc.cluster.local", d.host),
            _ => d.host.clone(),
        });
    }
    out
}

/// Where the calling cluster's counts came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Metrics {
    /// Read from its Prometheus.
    Ok,
    /// No Prometheus configured or found: unknown, not zero.
    None,
    /// Configured or found, and it did not answer.
    Unreachable,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedDestination {
    pub cluster: String,
    /// None: every version there (a destination without a subset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Percent the route in force sends here; none: the route does not send here.
    pub intended: Option<f64>,
    /// Percent of the requests that reached a workload.
    pub observed: Option<f64>,
    pub requests: u64,
    /// The 99.9% Wilson bound of the observed share, in percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound: Option<(f64, f64)>,
    /// Share of requests without a 5xx answer.
    pub success: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The intended share lies outside the bound.
    pub drift: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedRoute {
    pub service: String,
    pub from: String,
    pub metrics: Metrics,
    /// The Prometheus that answered: a URL from config.yaml, or the Service
    /// found in the cluster (through the API server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub window_seconds: u64,
    /// Of the window, the seconds the count is whole for (`count_window`):
    /// shorter where Prometheus has no samples at its start.
    pub counted_seconds: u64,
    pub requests: u64,
    /// Requests per second over the counted seconds.
    pub rate: f64,
    pub success: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Requests that failed before a workload answered (no endpoint, refused, timed out).
    pub unreached: u64,
    pub destinations: Vec<ObservedDestination>,
    pub drift: bool,
}

/// The intended percent per (cluster, version) of a route: its catch-all rule,
/// the first tier of a failover, a subset-less destination spread over its pods.
pub fn intended(route: &EffectiveRoute) -> Vec<(String, Option<String>, f64)> {
    let Some(rule) = route.rules.iter().find(|r| r.matches.is_empty()) else {
        return Vec::new();
    };
    let total: u32 = rule.destinations.iter().map(|d| d.weight).sum();
    let mut out: Vec<(String, Option<String>, f64)> = Vec::new();
    for d in &rule.destinations {
        let share = if total == 0 { 0.0 } else { 100.0 * f64::from(d.weight) / f64::from(total) };
        let first_tier = d.targets.iter().filter_map(|t| t.tier).min();
        let mut targets: Vec<_> = d.targets.iter().filter(|t| t.tier == first_tier && t.cluster != "-").collect();
        // A cluster where the host's Service selects no pod at all has no endpoint to
        // send to (a per-version Service declared beside its caller); one whose pods
        // are all down still is intended, and its requests fail.
        if targets.iter().any(|t| t.pods > 0) {
            targets.retain(|t| t.pods > 0);
        }
        let pods: u32 = targets.iter().map(|t| t.ready.max(1)).sum();
        for t in targets {
            let part = share * f64::from(t.ready.max(1)) / f64::from(pods.max(1));
            match out.iter_mut().find(|(c, v, _)| *c == t.cluster && *v == t.version) {
                Some(entry) => entry.2 += part,
                None => out.push((t.cluster.clone(), t.version.clone(), part)),
            }
        }
    }
    out
}

/// The 99.9% Wilson score interval of k successes in n, as fractions.
pub fn wilson(k: f64, n: f64) -> (f64, f64) {
    if n <= 0.0 {
        return (0.0, 1.0);
    }
    let p = k / n;
    let z2 = Z_999 * Z_999;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z_999 * ((p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt()) / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[derive(Default)]
struct Tally {
    requests: f64,
    failed: f64,
    buckets: BTreeMap<String, f64>,
}

impl Tally {
    fn success(&self) -> Option<f64> {
        (self.requests > 0.0).then(|| 100.0 * (self.requests - self.failed) / self.requests)
    }
    fn p99(&self) -> Option<f64> {
        quantile(0.99, &self.buckets)
    }
}

/// `histogram_quantile` over cumulative buckets keyed by `le`.
pub fn quantile(q: f64, buckets: &BTreeMap<String, f64>) -> Option<f64> {
    let mut bs: Vec<(f64, f64)> = buckets
        .iter()
        .filter_map(|(le, n)| {
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((bound, *n))
        })
        .collect();
    bs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = bs.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (bound, count) in bs {
        if count >= rank {
            if bound.is_infinite() {
                return Some(lower);
            }
            let within = count - below;
            return Some(if within <= 0.0 { bound } else { lower + (bound - lower) * (rank - below) / within });
        }
        (lower, below) = (bound, count);
    }
    Some(lower)
}

/// What the counts say of one route, beside what it intends.
pub fn observe(
    route: &EffectiveRoute,
    window_seconds: u64,
    counted_seconds: f64,
    requests: &[Sample],
    durations: &[Sample],
) -> ObservedRoute {
    let hosts = route_hosts(route);
    let mine = |s: &Sample| {
        s.labels.get("destination_service").is_some_and(|d| hosts.contains(d))
            && s.labels.get("source_cluster").is_some_and(|c| *c == route.from)
            && s.labels.get("reporter").is_none_or(|r| r == "source")
    };
    let key = |s: &Sample| -> Option<(String, String)> {
        let c = s.labels.get("destination_cluster").filter(|c| *c != "unknown")?;
        let v = s.labels.get("destination_version").cloned().unwrap_or_else(|| "unknown".into());
        Some((c.clone(), v))
    };
    let mut all = Tally::default();
    let mut per: BTreeMap<(String, String), Tally> = BTreeMap::new();
    let mut unreached = 0.0;
    for s in requests.iter().filter(|s| mine(s)) {
        let failed = s.labels.get("response_code").is_some_and(|c| c.starts_with('5') || c == "0");
        all.requests += s.value;
        if failed {
            all.failed += s.value;
        }
        match key(s) {
            Some(k) => {
                let t = per.entry(k).or_default();
                t.requests += s.value;
                if failed {
                    t.failed += s.value;
                }
            }
            None => unreached += s.value,
        }
    }
    for s in durations.iter().filter(|s| mine(s)) {
        let Some(le) = s.labels.get("le") else { continue };
        *all.buckets.entry(le.clone()).or_default() += s.value;
        if let Some(k) = key(s) {
            *per.entry(k).or_default().buckets.entry(le.clone()).or_default() += s.value;
        }
    }
    let reached: f64 = per.values().map(|t| t.requests).sum();
    let wanted = intended(route);
    let mut destinations: Vec<ObservedDestination> = Vec::new();
    // Each observed (cluster, version) counts for the intended entry that covers it.
    let mut counted_for: BTreeMap<usize, Vec<&Tally>> = BTreeMap::new();
    let mut unexpected: Vec<(&(String, String), &Tally)> = Vec::new();
    for (k, t) in &per {
        let at = wanted
            .iter()
            .position(|(c, v, _)| *c == k.0 && v.as_deref() == Some(k.1.as_str()))
            .or_else(|| wanted.iter().position(|(c, v, _)| *c == k.0 && v.is_none()));
        match at {
            Some(i) => counted_for.entry(i).or_default().push(t),
            // A series that counted nothing in the window is not a destination.
            None if t.requests > 0.0 => unexpected.push((k, t)),
            None => {}
        }
    }
    let row = |cluster: String, version: Option<String>, intended: Option<f64>, tallies: &[&Tally]| {
        let mut t = Tally::default();
        for x in tallies {
            t.requests += x.requests;
            t.failed += x.failed;
            for (le, n) in &x.buckets {
                *t.buckets.entry(le.clone()).or_default() += n;
            }
        }
        let observed = (reached > 0.0).then(|| 100.0 * t.requests / reached);
        let bound = (reached > 0.0).then(|| {
            let (lo, hi) = wilson(t.requests, reached);
            (100.0 * lo, 100.0 * hi)
        });
        let drift = match (bound, intended) {
            (Some((lo, hi)), Some(i)) => i < lo - 1e-9 || i > hi + 1e-9,
            (Some((lo, _)), None) => lo > 0.0,
            _ => false,
        };
        ObservedDestination {
            cluster,
            version,
            intended,
            observed,
            requests: t.requests.round() as u64,
            bound,
            success: t.success(),
            p99_ms: t.p99(),
            drift,
        }
    };
    for (i, (c, v, share)) in wanted.iter().enumerate() {
        let tallies = counted_for.get(&i).cloned().unwrap_or_default();
        destinations.push(row(c.clone(), v.clone(), Some(*share), &tallies));
    }
    for (k, t) in unexpected {
        destinations.push(row(k.0.clone(), Some(k.1.clone()), None, &[t]));
    }
    let drift = destinations.iter().any(|d| d.drift);
    ObservedRoute {
        service: route.service.clone(),
        from: route.from.clone(),
        metrics: Metrics::Ok,
        source: None,
        // Said, not hidden: a count that covers only part of the window.
        error: (counted_seconds + 2.0 < window_seconds as f64).then(|| {
            if counted_seconds <= 0.0 {
                format!("Prometheus has no samples in the last {window_seconds}s: is it scraping?")
            } else {
                format!("counted over the last {counted_seconds:.0}s of {window_seconds}s: Prometheus has no samples before")
            }
        }),
        window_seconds,
        counted_seconds: counted_seconds.max(0.0).round() as u64,
        requests: all.requests.round() as u64,
        rate: if counted_seconds <= 0.0 { 0.0 } else { all.requests / counted_seconds },
        success: all.success(),
        p99_ms: all.p99(),
        unreached: unreached.round() as u64,
        destinations,
        drift,
    }
}

/// A route whose calling cluster has no counts to give.
pub fn without_metrics(route: &EffectiveRoute, window_seconds: u64, metrics: Metrics, error: String) -> ObservedRoute {
    ObservedRoute {
        service: route.service.clone(),
        from: route.from.clone(),
        metrics,
        source: None,
        error: Some(error),
        window_seconds,
        counted_seconds: 0,
        requests: 0,
        rate: 0.0,
        success: None,
        p99_ms: None,
        unreached: 0,
        destinations: intended(route)
            .into_iter()
            .map(|(cluster, version, share)| ObservedDestination {
                cluster,
                version,
                intended: Some(share),
                observed: None,
                requests: 0,
                bound: None,
                success: None,
                p99_ms: None,
                drift: false,
            })
            .collect(),
        drift: false,
    }
}

/// `1m`, `30s`, `90s`, `2h`, or plain seconds.
pub fn parse_window(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("{s:?}: want a duration such as 30s, 1m or 2h"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?}: the unit is s, m or h")),
    };
    if seconds == 0 {
        return Err(format!("{s:?}: a window of at least 1s"));
    }
    Ok(seconds)
}

/// The PromQL selectors meshdeck asks for: the source reporter, and the hosts of one
/// service's routes (`route_hosts`: a regex of their literal names) or all.
pub fn selector(metric: &str, hosts: Option<&BTreeSet<String>>) -> String {
    match hosts {
        Some(hosts) => {
            // A regex of literals: each dot escaped for the regex, the backslash for PromQL's string.
            let any: Vec<String> = hosts.iter().map(|h| h.replace('.', "\\\\.")).collect();
            format!("{metric}{{reporter=\"source\",destination_service=~\"{}\"}}", any.join("|"))
        }
        None => format!("{metric}{{reporter=\"source\"}}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(x: &str, job: &str, samples: &[(f64, f64)]) -> Series {
        Series {
            labels: [("x", x), ("job", job), ("instance", "i")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            samples: samples.to_vec(),
        }
    }

    fn values(got: &[Sample]) -> Vec<f64> {
        got.iter().map(|s| s.value).collect()
    }

    /// The talk's canary on the Gateway API path, as effective routes read it: each
    /// backend a per-version Service, `reviews-v3` declared in cluster1 too (no pods).
    fn gateway_api_canary() -> EffectiveRoute {
        use crate::inventory::routes::{Destination, Rule, Target};
        let target = |cluster: &str, version: Option<&str>, pods: u32| Target {
            cluster: cluster.into(),
            version: version.map(String::from),
            ready: pods,
            pods,
            via: None,
            tier: None,
        };
        let dest = |host: &str, weight: u32, targets: Vec<Target>| Destination {
            host: host.into(),
            subset: None,
            weight,
            policy: vec![],
            targets,
            outlier_spec: None,
            unmodelled: vec![],
        };
        EffectiveRoute {
            service: "reviews.default".into(),
            from: "cluster1".into(),
            virtual_service: Some("HTTPRoute default/reviews-canary".into()),
            owner: "plan reviews-canary".into(),
            ignored: vec![],
            rules: vec![Rule {
                kind: "http",
                name: None,
                matches: vec![],
                destinations: vec![
                    dest("reviews-v3.default.svc.cluster.local", 75, vec![target("cluster1", None, 0), target("cluster2", Some("v3"), 1)]),
                    dest("reviews-v1.default.svc.cluster.local", 15, vec![target("cluster1", Some("v1"), 1)]),
                    dest("reviews-v2", 10, vec![target("cluster1", Some("v2"), 1)]),
                ],
                timeout: None,
                retries: None,
                fault: None,
                match_spec: vec![],
                retries_spec: None,
            }],
            problems: vec![],
            written: None,
        }
    }

    #[test]
    fn a_route_is_counted_under_every_host_it_sends_to_and_only_where_pods_are() {
        let route = gateway_api_canary();
        let hosts = route_hosts(&route);
        assert_eq!(
            hosts.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "reviews-v1.default.svc.cluster.local",
                "reviews-v2.default.svc.cluster.local",
                "reviews-v3.default.svc.cluster.local",
                "reviews.default.svc.cluster.local"
            ]
        );
        assert_eq!(
            selector("istio_requests_total", Some(&hosts)),
            r#"istio_requests_total{reporter="source",destination_service=~"reviews-v1\\.default\\.svc\\.cluster\\.local|reviews-v2\\.default\\.svc\\.cluster\\.local|reviews-v3\\.default\\.svc\\.cluster\\.local|reviews\\.default\\.svc\\.cluster\\.local"}"#
        );
        // cluster1 declares reviews-v3 but runs no v3: no share of it is intended there.
        assert_eq!(
            intended(&route),
            [
                ("cluster2".to_string(), Some("v3".to_string()), 75.0),
                ("cluster1".into(), Some("v1".into()), 15.0),
                ("cluster1".into(), Some("v2".into()), 10.0)
            ]
        );
        let sample = |host: &str, version: &str, value: f64| Sample {
            labels: [
                ("destination_service", host),
                ("source_cluster", "cluster1"),
                ("reporter", "source"),
                ("destination_cluster", if version == "v3" { "cluster2" } else { "cluster1" }),
                ("destination_version", version),
                ("response_code", "200"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            value,
        };
        let requests = [
            sample("reviews-v3.default.svc.cluster.local", "v3", 750.0),
            sample("reviews-v1.default.svc.cluster.local", "v1", 150.0),
            sample("reviews-v2.default.svc.cluster.local", "v2", 100.0),
            // Another service's requests are not this route's.
            sample("ratings.default.svc.cluster.local", "v1", 500.0),
        ];
        let o = observe(&route, 60, 60.0, &requests, &[]);
        assert_eq!(o.requests, 1000);
        assert!(!o.drift, "{o:?}");
    }

    #[test]
    fn a_window_counts_from_the_sample_at_its_start_with_resets_and_born_series() {
        // Scraped every second; the window is (100, 110].
        let steady: Vec<(f64, f64)> = (95..=110).map(|t| (t as f64, 10.0 * t as f64)).collect();
        let reset: Vec<(f64, f64)> = (95..=110).map(|t| (t as f64, if t < 105 { 500.0 + t as f64 } else { (t - 104) as f64 })).collect();
        let born = vec![(107.0, 3.0), (108.0, 5.0), (109.0, 5.0), (110.0, 6.0)];
        let set = vec![series("a", "j", &steady), series("b", "j", &reset), series("c", "j", &born)];
        let (got, covered) = count_window(&[&set], &[], 100.0, 110.0);
        // a: 1100 - 1000; b: 104 - 100 before the reset, then 6 since; c: a first 503 counts whole.
        assert_eq!(values(&got[0]), vec![100.0, 10.0, 6.0]);
        assert_eq!(covered, Some(100.0));
    }

    #[test]
    fn a_gap_at_the_windows_start_counts_from_where_samples_resume_never_before() {
        // Prometheus was down from 92 to 106: the lookback would answer with 91's sample.
        let mut gap: Vec<(f64, f64)> = (80..=91).map(|t| (t as f64, 10.0 * t as f64)).collect();
        gap.extend((106..=110).map(|t| (t as f64, 10.0 * t as f64)));
        let later = vec![(108.0, 1.0), (110.0, 2.0)];
        let set = vec![series("a", "j", &gap), series("c", "j", &later)];
        let (got, covered) = count_window(&[&set], &[], 100.0, 110.0);
        assert_eq!(values(&got[0]), vec![40.0, 2.0], "from 106 on, and a series born after it whole");
        assert_eq!(covered, Some(106.0));
        // A fresh Prometheus (nothing before the window): the first sample is the baseline, not zero.
        let fresh = vec![series("a", "j", &[(104.0, 5000.0), (105.0, 5010.0)])];
        let (got, covered) = count_window(&[&fresh], &[], 100.0, 110.0);
        assert_eq!((values(&got[0]), covered), (vec![10.0], Some(104.0)));
        // Nothing scraped in the window: no count and no coverage.
        let old = vec![series("a", "j", &[(50.0, 1.0), (51.0, 2.0)])];
        let (got, covered) = count_window(&[&old], &[], 100.0, 110.0);
        assert_eq!((got[0].len(), covered), (0, None));
    }

    fn up(job: &str, times: impl Iterator<Item = u32>) -> Series {
        series("up", job, &times.map(|t| (f64::from(t), 1.0)).collect::<Vec<_>>())
    }

    #[test]
    fn series_born_in_the_window_count_whole_while_their_target_was_scraped_throughout() {
        // A fresh caller: its first request's series was born at 103, the next
        // 500 requests' series at 106. Prometheus scraped the target all along
        // (`up`), so nothing here existed at the window's start: all counts.
        let first = vec![(103.0, 1.0), (104.0, 1.0), (105.0, 1.0), (106.0, 1.0)];
        let burst = vec![(106.0, 71.0), (107.0, 300.0), (108.0, 429.0)];
        let set = vec![series("a", "j", &first), series("b", "j", &burst)];
        let (got, covered) = count_window(&[&set], &[up("j", 80..=110)], 100.0, 110.0);
        assert_eq!(values(&got[0]), vec![1.0, 429.0]);
        assert_eq!(covered, Some(100.0), "the whole window counted");
        // The same samples after a gap in `up` (Prometheus down until 103): the
        // count starts where scraping resumed, and the series there is its baseline.
        let gapped: Vec<u32> = (80..=91).chain(103..=110).collect();
        let (got, covered) = count_window(&[&set], &[up("j", gapped.into_iter())], 100.0, 110.0);
        assert_eq!(values(&got[0]), vec![0.0, 429.0]);
        assert_eq!(covered, Some(103.0));
    }

    #[test]
    fn a_failed_first_scrape_after_a_restart_is_no_baseline() {
        // Prometheus down from 92; its first scrape back (104) failed: `up` 0 and
        // no counter sample. The count starts at the first scrape that read the
        // counters (105), never from zero over what was counted before the gap.
        let mut counter: Vec<(f64, f64)> = (80..=91).map(|t| (t as f64, 10.0 * t as f64)).collect();
        counter.extend((105..=110).map(|t| (t as f64, 2000.0 + t as f64)));
        let mut ups: Vec<(f64, f64)> = (80..=91).map(|t| (t as f64, 1.0)).collect();
        ups.push((104.0, 0.0));
        ups.extend((105..=110).map(|t| (t as f64, 1.0)));
        let set = vec![series("a", "j", &counter)];
        let (got, covered) = count_window(&[&set], &[series("up", "j", &ups)], 100.0, 110.0);
        assert_eq!((values(&got[0]), covered), (vec![5.0], Some(105.0)));
    }

    #[test]
    fn wilson_bounds_hold_the_truth_and_tighten_with_n() {
        let (lo, hi) = wilson(7460.0, 10000.0);
        assert!(lo < 0.75 && 0.75 < hi, "{lo} {hi}");
        let (lo2, hi2) = wilson(746.0, 1000.0);
        assert!(hi2 - lo2 > hi - lo);
        // 70% observed out of 10,000 is not 75%.
        let (lo, hi) = wilson(7000.0, 10000.0);
        assert!(hi < 0.75, "{lo} {hi}");
        assert_eq!(wilson(0.0, 0.0), (0.0, 1.0));
    }

    #[test]
    fn quantile_interpolates_inside_the_bucket_as_prometheus_does() {
        let b: BTreeMap<String, f64> =
            [("1", 50.0), ("5", 90.0), ("10", 100.0), ("+Inf", 100.0)].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(quantile(0.5, &b), Some(1.0));
        let p99 = quantile(0.99, &b).unwrap();
        assert!((p99 - 9.5).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(0.99, &BTreeMap::new()), None);
    }

    #[test]
    fn windows_parse_and_bad_ones_say_why() {
        assert_eq!(parse_window("1m"), Ok(60));
        assert_eq!(parse_window("45"), Ok(45));
        assert_eq!(parse_window("2h"), Ok(7200));
        assert!(parse_window("1d").unwrap_err().contains("unit"));
        assert!(parse_window("0s").is_err());
        assert!(parse_window("m").is_err());
    }
}
