//! The validated plan: what the operator asked for, in meshdeck's own terms.
//! (The YAML shapes with positions live in `parse`; these carry no spans.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const API_VERSION: &str = "meshdeck.dev/v1alpha1";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub routes: Vec<TrafficRoute>,
    pub access: Vec<AccessPolicy>,
    /// What validation noticed and resolved (an alias named instead of its cluster).
    #[serde(skip)]
    pub notes: Vec<String>,
    /// Clusters the plan refers to whose inventory could not be seen, with why: the
    /// checks that need their facts were not made, so the plan must not be applied.
    #[serde(skip)]
    pub unseen: std::collections::BTreeMap<String, String>,
}

impl Plan {
    /// The clusters this plan refers to that could not be seen, in one line.
    pub fn unseen_line(&self) -> String {
        let each: Vec<String> = self.unseen.iter().map(|(c, why)| format!("{c} ({why})")).collect();
        format!("could not see {}", each.join("; "))
    }

    /// The kind of the document named `name` (`TrafficRoute` or `AccessPolicy`).
    pub fn kind_of(&self, name: &str) -> Option<&'static str> {
        if self.routes.iter().any(|r| r.name == name) {
            Some("TrafficRoute")
        } else if self.access.iter().any(|a| a.name == name) {
            Some("AccessPolicy")
        } else {
            None
        }
    }

    /// The names of the plan's documents, as history and the plan label record them.
    pub fn names(&self) -> Vec<String> {
        self.routes.iter().map(|r| r.name.clone()).chain(self.access.iter().map(|a| a.name.clone())).collect()
    }
}

/// `reviews.default`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceRef {
    pub name: String,
    pub namespace: String,
}

impl ServiceRef {
    pub fn key(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
    /// The cluster-local FQDN callers address.
    pub fn local_host(&self) -> String {
        format!("{}.{}.svc.cluster.local", self.name, self.namespace)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TopologyChoice {
    /// Decide from the inventory (remote secrets mean shared discovery).
    #[default]
    Auto,
    SharedDiscovery,
    Federation,
}

/// Which API the route is written in: Istio's (VirtualService, DestinationRule,
/// ServiceEntry) or Gateway API's (HTTPRoute with the Service as its parent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Routing {
    /// Istio's, unless every calling cluster's namespace runs in ambient mode.
    #[default]
    Auto,
    Istio,
    GatewayApi,
}

impl Routing {
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Auto => "auto",
            Routing::Istio => "istio",
            Routing::GatewayApi => "gateway-api",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrafficRoute {
    pub name: String,
    pub service: ServiceRef,
    pub from_clusters: Vec<String>,
    pub action: RouteAction,
    pub outlier_detection: Option<OutlierDetection>,
    pub retries: Option<Retries>,
    pub timeout: Option<String>,
    /// Empty: every request. Otherwise the route applies to matching requests only.
    pub matches: Vec<RouteMatch>,
    pub topology: TopologyChoice,
    #[serde(default, skip_serializing_if = "is_auto")]
    pub routing: Routing,
    /// The one Service port routed; None: every port a VirtualService's http routes can carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Target clusters the plan says accept the callers' trust domains, where meshdeck
    /// cannot see it (mesh config delivered another way, or a change rolling out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_accepted_by: Vec<String>,
    /// Step the split in by its metrics (`meshdeck canary`); `apply` refuses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
}

/// How a canary steps a split in: one destination's weight raised step by step
/// (the others keep their proportions), each step held for `interval` and
/// judged by its gates on every calling cluster before the next is written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    /// The split's destination being stepped in.
    pub cluster: String,
    pub version: String,
    /// Its weight at each step, ascending; the last is its weight in the split.
    pub steps: Vec<u32>,
    /// How long each step is held before it is judged (seconds).
    pub interval: u64,
    pub gates: Gates,
    /// Failed checks that roll the route back (Flagger's threshold).
    pub rollback_after: u32,
    pub rollback_to: RollbackTo,
    /// A step not judged within this long (no metrics, too few requests) aborts
    /// the canary back to the start (seconds).
    pub decide_within: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gates {
    /// Least share of the canary's requests answered without a 5xx, in percent.
    pub success_rate: Option<f64>,
    /// Most the canary's p99 latency may be (milliseconds).
    pub p99_ms: Option<f64>,
    /// Requests to the canary a calling cluster must have made in a check before
    /// its gates say anything ("not yet" below it, never "passed").
    pub min_requests: u64,
    /// Judged per calling cluster (each must pass), or over all of them summed.
    pub per: GatePer,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GatePer {
    CallingCluster,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RollbackTo {
    /// The route as it was before the canary's first step.
    Start,
    /// The route as the last step that passed its gates left it.
    LastGoodStep,
}

impl Canary {
    /// The split at step `step` (1-based; 0: none): the canary at its step weight,
    /// the rest shared as the plan's other destinations share it (largest
    /// remainder, so the weights sum to 100).
    pub fn split_at(&self, split: &[Destination], step: usize) -> Vec<Destination> {
        let w = match step {
            0 => 0,
            n => self.steps.get(n - 1).copied().unwrap_or_else(|| self.steps.last().copied().unwrap_or(0)),
        };
        let is_canary = |d: &Destination| d.cluster == self.cluster && d.version == self.version;
        let others: Vec<&Destination> = split.iter().filter(|d| !is_canary(d)).collect();
        let total: u32 = others.iter().map(|d| d.weight).sum();
        let rest = 100u32.saturating_sub(w);
        // Exact shares, then the leftover units to the largest remainders (ties: plan order).
        let exact: Vec<f64> = others
            .iter()
            .map(|d| {
                if total == 0 {
                    f64::from(rest) / others.len().max(1) as f64
                } else {
                    f64::from(rest) * f64::from(d.weight) / f64::from(total)
                }
            })
            .collect();
        let mut given: Vec<u32> = exact.iter().map(|e| e.floor() as u32).collect();
        let mut left = rest.saturating_sub(given.iter().sum());
        let mut order: Vec<usize> = (0..exact.len()).collect();
        order.sort_by(|a, b| (exact[*b] - exact[*b].floor()).total_cmp(&(exact[*a] - exact[*a].floor())).then(a.cmp(b)));
        for i in order {
            if left == 0 {
                break;
            }
            given[i] += 1;
            left -= 1;
        }
        let mut k = 0;
        split
            .iter()
            .map(|d| {
                let weight = if is_canary(d) {
                    w
                } else {
                    k += 1;
                    given[k - 1]
                };
                Destination { weight, ..d.clone() }
            })
            .collect()
    }
}

fn is_auto(r: &Routing) -> bool {
    *r == Routing::Auto
}

impl TrafficRoute {
    /// The API this route is rendered in: the plan's choice, else Gateway API where
    /// every calling cluster runs the service's namespace in ambient mode.
    pub fn routing_in(&self, inv: &crate::inventory::FleetSnapshot) -> Routing {
        match self.routing {
            Routing::Auto => {
                let ambient = |c: &String| {
                    inv.service(&self.service.key())
                        .and_then(|row| row.clusters.get(c))
                        .is_some_and(|p| p.dataplane_mode.as_deref() == Some("ambient"))
                };
                if !self.from_clusters.is_empty() && self.from_clusters.iter().all(ambient) { Routing::GatewayApi } else { Routing::Istio }
            }
            chosen => chosen,
        }
    }

    /// Whether callers in `from` reach `to` through shared discovery (else federation).
    pub fn shared_discovery(&self, inv: &crate::inventory::FleetSnapshot, from: &str, to: &str) -> bool {
        match self.topology {
            TopologyChoice::SharedDiscovery => true,
            TopologyChoice::Federation => from == to,
            TopologyChoice::Auto => inv.shares_discovery(from, to),
        }
    }

    /// Shared discovery only if every caller shares discovery with every target.
    pub fn uses_shared_discovery(&self, inv: &crate::inventory::FleetSnapshot) -> bool {
        let targets: Vec<&str> = match &self.action {
            RouteAction::Split(ds) => ds.iter().map(|d| d.cluster.as_str()).collect(),
            RouteAction::Failover(ts) => ts.iter().map(|t| t.cluster.as_str()).collect(),
        };
        self.from_clusters.iter().all(|f| targets.iter().all(|t| self.shared_discovery(inv, f, t)))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RouteAction {
    Split(Vec<Destination>),
    Failover(Vec<FailoverTarget>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub cluster: String,
    pub version: String,
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverTarget {
    pub cluster: String,
    pub version: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    pub consecutive_5xx_errors: u32,
    pub interval: String,
    pub base_ejection_time: String,
    pub max_ejection_percent: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retries {
    pub attempts: u32,
    pub per_try_timeout: Option<String>,
    pub retry_on: Option<String>,
}

impl OutlierDetection {
    /// The same fields in plans and in Istio's `outlierDetection`.
    pub fn to_value(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"consecutive5xxErrors": self.consecutive_5xx_errors, "interval": self.interval, "baseEjectionTime": self.base_ejection_time});
        if let Some(p) = self.max_ejection_percent {
            v["maxEjectionPercent"] = serde_json::json!(p);
        }
        v
    }
}

impl Retries {
    /// The same fields in plans and in Istio's HTTP `retries`.
    pub fn to_value(&self) -> serde_json::Value {
        let mut v = serde_json::json!({"attempts": self.attempts});
        if let Some(t) = &self.per_try_timeout {
            v["perTryTimeout"] = serde_json::json!(t);
        }
        if let Some(on) = &self.retry_on {
            v["retryOn"] = serde_json::json!(on);
        }
        v
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteMatch {
    pub headers: BTreeMap<String, StringMatch>,
    pub path_prefix: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

impl StringMatch {
    /// `{exact: ...}` / `{prefix: ...}` / `{regex: ...}`: the same shape in plans and in Istio.
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            StringMatch::Exact(s) => serde_json::json!({"exact": s}),
            StringMatch::Prefix(s) => serde_json::json!({"prefix": s}),
            StringMatch::Regex(s) => serde_json::json!({"regex": s}),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccessPolicy {
    pub name: String,
    pub service: ServiceRef,
    pub allow_from: Vec<Caller>,
    /// As `TrafficRoute::trust_accepted_by`, for the service's clusters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_accepted_by: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Caller {
    pub cluster: String,
    pub namespace: String,
    pub service_account: String,
}
