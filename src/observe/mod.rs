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
use traffic::{Metrics, ObservedRoute, Sample};

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

async fn instant(prom: &source::Source, query: &str, at: f64) -> Result<Vec<Sample>, Unavailable> {
    let body = prom.get(&format!("/api/v1/query?query={}&time={at:.3}", encode(query))).await?;
    traffic::parse_vector(&body).map_err(|e| Unavailable::Unreachable(format!("{}: {e}", prom.describe())))
}

/// What one calling cluster's Prometheus counted in a window: requests, duration buckets.
type Counted = (Vec<Sample>, Vec<Sample>);

/// Requests and duration buckets each calling cluster's Prometheus counted in
/// the `window` seconds before `now` (Unix seconds).
async fn counts(cluster: &Cluster, service: Option<&str>, window: u64, now: f64) -> Result<Counted, Unavailable> {
    let prom = source::prometheus(cluster).await?;
    let start = now - window as f64;
    let requests = traffic::selector("istio_requests_total", service);
    let buckets = traffic::selector("istio_request_duration_milliseconds_bucket", service);
    let (r0, r1, b0, b1) = futures::join!(
        instant(&prom, &requests, start),
        instant(&prom, &requests, now),
        instant(&prom, &buckets, start),
        instant(&prom, &buckets, now)
    );
    Ok((traffic::counted(&r0?, &r1?), traffic::counted(&b0?, &b1?)))
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
            Ok((requests, buckets)) => traffic::observe(r, window, requests, buckets),
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
