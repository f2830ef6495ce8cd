//! Config pushed, not only stored: each istiod's sync status for its proxies
//! (`/debug/syncz`, what `istioctl proxy-status` reads). A proxy has the new
//! config when istiod sent it every type after the write and the proxy acked
//! what was sent. A proxy a change does not concern (a Sidecar resource scoping
//! it out) gets no push, and shows stale until istiod's next push to it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::source::{self, Unavailable};
use crate::registry::Cluster;

/// One proxy as istiod's `/debug/syncz` reports it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SyncStatus {
    #[serde(default)]
    pub proxy: String,
    #[serde(default)]
    pub proxy_type: String,
    #[serde(default)]
    pub resources: BTreeMap<String, ResourceStatus>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    #[serde(default)]
    pub sent: String,
    #[serde(default)]
    pub acked: String,
    pub sent_time: Option<DateTime<Utc>>,
}

impl SyncStatus {
    /// Every type acked as sent.
    pub fn acked(&self) -> bool {
        self.resources.values().all(|r| r.sent == r.acked)
    }
    /// When istiod last sent this proxy anything.
    pub fn last_sent(&self) -> Option<DateTime<Utc>> {
        self.resources.values().filter_map(|r| r.sent_time).max()
    }
    /// Has the proxy what istiod had after `since`?
    pub fn pushed_since(&self, since: DateTime<Utc>) -> bool {
        self.acked() && self.last_sent().is_some_and(|t| t >= since)
    }
    /// The short type names not acked as sent (`CDS`, `RDS`…).
    pub fn unacked(&self) -> Vec<String> {
        self.resources.iter().filter(|(_, r)| r.sent != r.acked).map(|(t, _)| short_type(t)).collect()
    }
}

fn short_type(t: &str) -> String {
    let name = t.rsplit('.').next().unwrap_or(t);
    match name {
        "Cluster" => "CDS",
        "Listener" => "LDS",
        "RouteConfiguration" => "RDS",
        "ClusterLoadAssignment" => "EDS",
        "ExtensionConfig" | "TypedExtensionConfig" => "ECDS",
        "Secret" => "SDS",
        other => other,
    }
    .to_string()
}

pub fn parse(body: &[u8]) -> Result<Vec<SyncStatus>, String> {
    serde_json::from_slice(body).map_err(|e| format!("not istiod's sync status: {e}"))
}

/// The proxies one cluster's istiod serves, or why they could not be read.
pub async fn read(cluster: &Cluster) -> Result<Vec<SyncStatus>, Unavailable> {
    let istiod = source::istiod(cluster).await?;
    let body = istiod.get("/debug/syncz").await?;
    let mut proxies = parse(&body).map_err(Unavailable::Unreachable)?;
    proxies.sort_by(|a, b| a.proxy.cmp(&b.proxy));
    Ok(proxies)
}

/// Whether a cluster's proxies have a change written at `since`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PushReport {
    pub cluster: String,
    pub proxies: usize,
    pub pushed: usize,
    /// Proxies without it yet, each with what is missing.
    pub stale: Vec<String>,
    /// istiod could not be asked: `push unknown: …` (none found) or `not pushed: …` (it did not answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// From the write until every proxy had it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

impl PushReport {
    pub fn line(&self) -> String {
        if let Some(e) = &self.error {
            return format!("{}: {e}", self.cluster);
        }
        match (self.proxies, self.seconds) {
            (0, _) => format!("{}: istiod has no proxies connected", self.cluster),
            (n, Some(s)) => format!("{}: pushed to {}/{n} proxies ({s:.1}s after the write)", self.cluster, self.pushed),
            (n, None) => format!("{}: pushed to {}/{n} proxies; stale: {}", self.cluster, self.pushed, self.stale.join(", ")),
        }
    }
}

fn report(cluster: &str, proxies: &[SyncStatus], since: DateTime<Utc>, started: Instant) -> PushReport {
    let stale: Vec<String> = proxies
        .iter()
        .filter(|p| !p.pushed_since(since))
        .map(|p| {
            let missing = p.unacked();
            if missing.is_empty() {
                format!("{} (not sent since the write)", p.proxy)
            } else {
                format!("{} ({} not acked)", p.proxy, missing.join(", "))
            }
        })
        .collect();
    PushReport {
        cluster: cluster.to_string(),
        proxies: proxies.len(),
        pushed: proxies.len() - stale.len(),
        seconds: stale.is_empty().then(|| started.elapsed().as_secs_f64()),
        stale,
        error: None,
    }
}

/// Ask each cluster's istiod until its proxies have what was written at `since`
/// (or `wait` is over): every cluster at once, each on its own.
pub async fn wait_pushed(clusters: &[&Cluster], since: DateTime<Utc>, wait: Duration) -> Vec<PushReport> {
    let started = Instant::now();
    let each = clusters.iter().map(|c| async move {
        loop {
            let last = match read(c).await {
                Ok(proxies) => report(&c.name, &proxies, since, started),
                Err(e) => PushReport {
                    cluster: c.name.clone(),
                    proxies: 0,
                    pushed: 0,
                    stale: Vec::new(),
                    error: Some(match e {
                        Unavailable::NotFound(m) => format!("push unknown: {m}"),
                        Unavailable::Unreachable(m) => format!("not pushed: istiod did not answer ({m})"),
                    }),
                    seconds: None,
                },
            };
            // istiod not asked is said at once: waiting would not make it answer sooner.
            let done = last.error.is_some() || (last.stale.is_empty() && last.proxies > 0);
            if done || started.elapsed() >= wait {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    futures::future::join_all(each).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYNCZ: &str = r#"[{"cluster_id":"cluster1","proxy":"productpage-v1-abc.default","proxy_type":"sidecar",
      "resources":{
        "type.googleapis.com/envoy.config.cluster.v3.Cluster":{"sent":"v2/a","acked":"v2/a","sentTime":"2026-12-04T21:06:08.7Z"},
        "type.googleapis.com/envoy.config.route.v3.RouteConfiguration":{"sent":"v2/b","acked":"v1/b","sentTime":"2026-12-04T21:06:09Z"}}}]"#;

    #[test]
    fn a_proxy_has_the_change_when_every_type_sent_after_it_is_acked() {
        let mut p = parse(SYNCZ.as_bytes()).unwrap().remove(0);
        let before: DateTime<Utc> = "2026-12-04T21:06:00Z".parse().unwrap();
        assert!(!p.pushed_since(before), "RDS is not acked");
        assert_eq!(p.unacked(), vec!["RDS"]);
        p.resources.values_mut().for_each(|r| r.acked = r.sent.clone());
        assert!(p.pushed_since(before));
        let after: DateTime<Utc> = "2026-12-04T21:06:10Z".parse().unwrap();
        assert!(!p.pushed_since(after), "nothing sent since a later write");
    }
}
