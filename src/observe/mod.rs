//! What traffic really does: the observed split beside the intended one, from
//! each calling cluster's own Prometheus ([`traffic`]), and whether each istiod
//! has pushed what was written to its proxies ([`sync`]). Where those endpoints
//! answer is [`source`]'s business. Read-only: nothing here writes to a cluster.

pub mod source;
pub mod sync;
pub mod traffic;

use std::collections::BTreeMap;

use crate::inventory::routes::EffectiveRoute;
use crate::registry::Cluster;
use source::Unavailable;
use traffic::{Metrics, ObservedRoute, Sample, Series};

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

/// What one calling cluster's Prometheus counted in a window: requests,
/// duration buckets, the seconds the count is whole for, and which Prometheus.
type Counted = (Vec<Sample>, Vec<Sample>, f64, String);

/// Requests and duration buckets each calling cluster's Prometheus counted in
/// the `window` seconds before `now` (Unix seconds), from raw samples
/// (`traffic::count_window` says why not from two instant queries).
async fn counts(cluster: &Cluster, service: Option<&str>, window: u64, now: f64) -> Result<Counted, Unavailable> {
    let prom = source::prometheus(cluster).await?;
    let start = now - window as f64;
    let requests = traffic::selector("istio_requests_total", service);
    let buckets = traffic::selector("istio_request_duration_milliseconds_bucket", service);
    let lookback = window + BEFORE_WINDOW;
    // `up`: when each target was scraped, which the counters alone cannot tell
    // from a series born in the window.
    let (r, b, up) =
        futures::join!(range(&prom, &requests, lookback, now), range(&prom, &buckets, lookback, now), range(&prom, "up", lookback, now));
    let (r, b, up) = (r?, b?, up?);
    let (mut counted, covered) = traffic::count_window(&[&r, &b], &up, start, now);
    let durations = counted.pop().unwrap_or_default();
    let requests = counted.pop().unwrap_or_default();
    Ok((requests, durations, covered.map(|from| now - from).unwrap_or(0.0), prom.describe()))
}

/// The observed split of every route, each calling cluster asked at once.
pub async fn observed(clusters: &[Cluster], routes: &[EffectiveRoute], service: Option<&str>, window: u64, now: f64) -> Vec<ObservedRoute> {
    let mut callers: Vec<&str> = routes.iter().map(|r| r.from.as_str()).collect();
    callers.sort();
    callers.dedup();
    let asked = callers.iter().map(|from| async move {
        let answer = match clusters.iter().find(|c| c.name == *from) {
            Some(c) => counts(c, service, window, now).await,
            None => Err(Unavailable::NotFound(format!("{from} is not registered"))),
        };
        (from.to_string(), answer)
    });
    let answers: BTreeMap<String, Result<Counted, Unavailable>> = futures::future::join_all(asked).await.into_iter().collect();
    routes
        .iter()
        .map(|r| match &answers[&r.from] {
            Ok((requests, buckets, counted, source)) => {
                ObservedRoute { source: Some(source.clone()), ..traffic::observe(r, window, *counted, requests, buckets) }
            }
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
