//! What traffic really does: the observed split beside the intended one, from
//! each calling cluster's own Prometheus ([`traffic`]), and whether each istiod
//! has pushed what was written to its proxies ([`sync`]). Where those endpoints
//! answer is [`source`]'s business. Read-only: nothing here writes to a cluster.

pub mod source;
pub mod sync;
pub mod traffic;

use std::collections::{BTreeMap, BTreeSet};

use crate::inventory::routes::EffectiveRoute;
use crate::registry::Cluster;
use source::Unavailable;
use traffic::{Metrics, ObservedRoute, Series};

/// Percent-encode a query parameter (RFC 3986 unreserved characters pass).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The raw samples of `selector` in the `range` seconds before `at`.
async fn range(prom: &source::Source, selector: &str, range: u64, at: f64) -> Result<Vec<Series>, Unavailable> {
    let query = format!("{selector}[{range}s]");
    let body = prom.get(&format!("/api/v1/query?query={}&time={at:.3}", encode(&query))).await?;
    traffic::parse_matrix(&body).map_err(|e| Unavailable::Unreachable(format!("{}: {e}", prom.describe())))
}

/// Samples before the window read to find each series' value at its start:
/// scrape intervals up to half of this are told from gaps.
const BEFORE_WINDOW: u64 = 120;

/// One calling cluster's raw samples of the window and the time before it
/// (requests, duration buckets, `up`), and which Prometheus gave them.
struct Read {
    requests: Vec<Series>,
    buckets: Vec<Series>,
    up: Vec<Series>,
    source: String,
}

/// What each calling cluster's Prometheus holds for the `window` seconds before
/// `now` (Unix seconds), as raw samples (`traffic::count_window` says why).
/// `hosts`: the `destination_service`s to ask for (None: every one).
async fn read(cluster: &Cluster, hosts: Option<&BTreeSet<String>>, window: u64, now: f64) -> Result<Read, Unavailable> {
    let prom = source::prometheus(cluster).await?;
    let requests = traffic::selector("istio_requests_total", hosts);
    let buckets = traffic::selector("istio_request_duration_milliseconds_bucket", hosts);
    let lookback = window + BEFORE_WINDOW;
    // `up`: when each target was scraped, which the counters alone cannot tell
    // from a series born in the window.
    let (r, b, up) =
        futures::join!(range(&prom, &requests, lookback, now), range(&prom, &buckets, lookback, now), range(&prom, "up", lookback, now));
    Ok(Read { requests: r?, buckets: b?, up: up?, source: prom.describe() })
}

/// Seconds after a route's objects were written before its proxies follow it
/// (istiod's debounce and push): requests before then count for the old route.
const PUSH_SECONDS: f64 = 2.0;

/// One route's split from its caller's samples: counted from the window's start,
/// or from when the route in force was written, if that is later.
fn observe_route(r: &EffectiveRoute, read: &Read, window: u64, now: f64) -> ObservedRoute {
    let start = now - window as f64;
    let since = r.written.map(|w| w as f64 + PUSH_SECONDS).filter(|w| *w > start && *w < now);
    let (mut counted, covered) = traffic::count_window(&[&read.requests, &read.buckets], &read.up, since.unwrap_or(start), now);
    let durations = counted.pop().unwrap_or_default();
    let requests = counted.pop().unwrap_or_default();
    let counted_seconds = covered.map(|from| now - from).unwrap_or(0.0);
    let mut o = traffic::observe(r, window, counted_seconds, &requests, &durations);
    o.source = Some(read.source.clone());
    // A count that starts at the route's write is whole for the route: say why it is short.
    if let (Some(since), Some(from)) = (since, covered)
        && from <= since + 1e-6
    {
        o.error = Some(format!("counted since the route in force was written, {:.0}s ago", now - since + PUSH_SECONDS));
    }
    o
}

/// The observed split of every route, each calling cluster asked at once.
pub async fn observed(clusters: &[Cluster], routes: &[EffectiveRoute], service: Option<&str>, window: u64, now: f64) -> Vec<ObservedRoute> {
    let mut callers: Vec<&str> = routes.iter().map(|r| r.from.as_str()).collect();
    callers.sort();
    callers.dedup();
    // For one service: the hosts its routes from each caller are counted under.
    let hosts: BTreeMap<&str, BTreeSet<String>> =
        callers.iter().map(|from| (*from, routes.iter().filter(|r| r.from == *from).flat_map(traffic::route_hosts).collect())).collect();
    let hosts = &hosts;
    let asked = callers.iter().map(|from| async move {
        let answer = match clusters.iter().find(|c| c.name == *from) {
            Some(c) => read(c, service.and(hosts.get(from)), window, now).await,
            None => Err(Unavailable::NotFound(format!("{from} is not registered"))),
        };
        (from.to_string(), answer)
    });
    let answers: BTreeMap<String, Result<Read, Unavailable>> = futures::future::join_all(asked).await.into_iter().collect();
    routes
        .iter()
        .map(|r| match &answers[&r.from] {
            Ok(read) => observe_route(r, read, window, now),
            Err(Unavailable::NotFound(m)) => traffic::without_metrics(r, window, Metrics::None, m.clone()),
            Err(Unavailable::Unreachable(m)) => traffic::without_metrics(r, window, Metrics::Unreachable, m.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn queries_are_encoded_whole() {
        assert_eq!(super::encode("a{b=\"c\"} d"), "a%7Bb%3D%22c%22%7D%20d");
    }
}
