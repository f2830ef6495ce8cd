//! A step's gates, judged from the observed split (`observe::traffic`): for each
//! calling cluster (or all of them summed), the canary destination's success
//! rate and p99 latency against their thresholds, and the split against the
//! step's weights. Pure: the same observations give the same verdict.
//!
//! Confidence, as the observed split has it: fewer requests to the canary than
//! `minRequests` is "not yet", never "passed"; a success rate fails only when
//! its 99.9% Wilson bound lies wholly below the threshold (noise is "not yet"),
//! and passes when the rate itself reaches it. Unknown metrics are "not yet".

use serde::{Deserialize, Serialize};

use crate::observe::traffic::{Metrics, ObservedDestination, ObservedRoute, wilson};
use crate::plan::{Canary, GatePer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Passed,
    Failed,
    NotYet,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::NotYet => "not yet",
        }
    }

    /// Failed over not yet over passed: the worse of two.
    fn worst(self, other: Verdict) -> Verdict {
        match (self, other) {
            (Verdict::Failed, _) | (_, Verdict::Failed) => Verdict::Failed,
            (Verdict::NotYet, _) | (_, Verdict::NotYet) => Verdict::NotYet,
            _ => Verdict::Passed,
        }
    }
}

/// One gate on one calling cluster: its value beside its threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateValue {
    /// `successRate`, `p99` or `split`.
    pub gate: String,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub verdict: Verdict,
    /// Why, in an operator's words: `80.0% < 99% (99.9% bound up to 85.2%)`.
    pub why: String,
}

/// What one calling cluster (or `all`) said of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerCheck {
    pub from: String,
    /// Requests to the canary destination counted.
    pub requests: u64,
    /// The canary's observed share beside the step's, in percent.
    pub observed: Option<f64>,
    pub intended: Option<f64>,
    pub counted_seconds: u64,
    pub gates: Vec<GateValue>,
    pub verdict: Verdict,
}

impl CallerCheck {
    /// The first failed gate, else the first undecided one, else "passed".
    pub fn why(&self) -> String {
        let pick = |v: Verdict| self.gates.iter().find(|g| g.verdict == v);
        match pick(Verdict::Failed).or_else(|| pick(Verdict::NotYet)) {
            Some(g) => format!("{}: {}", g.gate, g.why),
            None => "passed".into(),
        }
    }
}

/// One judgement of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// RFC 3339.
    pub time: String,
    pub step: usize,
    pub window_seconds: u64,
    pub verdict: Verdict,
    pub callers: Vec<CallerCheck>,
}

impl Check {
    /// Which gate decided, on which calling cluster, with its value.
    pub fn why(&self) -> String {
        let pick = |v: Verdict| self.callers.iter().find(|c| c.verdict == v);
        match pick(Verdict::Failed).or_else(|| pick(Verdict::NotYet)) {
            Some(c) => format!("{} from {}", c.why(), c.from),
            None if self.callers.is_empty() => "no calling cluster to judge".into(),
            None => format!("every gate passed on {}", self.callers.iter().map(|c| c.from.as_str()).collect::<Vec<_>>().join(", ")),
        }
    }
}

/// The canary destination's row of a route's observation.
fn canary_row<'a>(canary: &Canary, r: &'a ObservedRoute) -> Option<&'a ObservedDestination> {
    r.destinations.iter().find(|d| d.cluster == canary.cluster && d.version.as_deref() == Some(canary.version.as_str()))
}

/// Judge a step from the observed split of its calling clusters' routes.
pub fn judge(canary: &Canary, step: usize, observed: &[ObservedRoute], time: String, window_seconds: u64) -> Check {
    let callers = match canary.gates.per {
        GatePer::CallingCluster => observed.iter().map(|r| judge_caller(canary, r)).collect(),
        GatePer::All => vec![judge_caller(canary, &summed(canary, observed))],
    };
    let verdict = if observed.is_empty() {
        Verdict::NotYet
    } else {
        callers.iter().fold(Verdict::Passed, |v: Verdict, c: &CallerCheck| v.worst(c.verdict))
    };
    Check { time, step, window_seconds, verdict, callers }
}

/// Every calling cluster's counts as one (`per: all`): requests and failures
/// summed, the worst p99 of them (quantiles do not add), any drift. One
/// caller without metrics leaves the sum unknown.
fn summed(canary: &Canary, observed: &[ObservedRoute]) -> ObservedRoute {
    let mut out = observed.first().cloned().unwrap_or_else(|| ObservedRoute {
        service: String::new(),
        from: "all".into(),
        metrics: Metrics::None,
        source: None,
        error: Some("no calling cluster".into()),
        window_seconds: 0,
        counted_seconds: 0,
        requests: 0,
        rate: 0.0,
        success: None,
        p99_ms: None,
        unreached: 0,
        destinations: Vec::new(),
        drift: false,
    });
    out.from = "all".into();
    if let Some(bad) = observed.iter().find(|r| r.metrics != Metrics::Ok) {
        out.metrics = bad.metrics.clone();
        out.error = Some(format!("{}: {}", bad.from, bad.error.clone().unwrap_or_default()));
        return out;
    }
    let (mut n, mut ok, mut all) = (0.0, 0.0, 0.0);
    let mut p99: Option<f64> = None;
    for r in observed {
        all += r.requests as f64;
        if let Some(d) = canary_row(canary, r) {
            n += d.requests as f64;
            ok += d.requests as f64 * d.success.unwrap_or(0.0) / 100.0;
            p99 = match (p99, d.p99_ms) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }
    out.requests = all.round() as u64;
    out.counted_seconds = observed.iter().map(|r| r.counted_seconds).min().unwrap_or(0);
    out.drift = observed.iter().any(|r| r.drift);
    let intended = observed.iter().find_map(|r| canary_row(canary, r).and_then(|d| d.intended));
    out.destinations = vec![ObservedDestination {
        cluster: canary.cluster.clone(),
        version: Some(canary.version.clone()),
        intended,
        observed: (all > 0.0).then(|| 100.0 * n / all),
        requests: n.round() as u64,
        bound: None,
        success: (n > 0.0).then(|| 100.0 * ok / n),
        p99_ms: p99,
        drift: out.drift,
    }];
    out
}

fn judge_caller(canary: &Canary, r: &ObservedRoute) -> CallerCheck {
    let row = canary_row(canary, r);
    let mut check = CallerCheck {
        from: r.from.clone(),
        requests: row.map(|d| d.requests).unwrap_or(0),
        observed: row.and_then(|d| d.observed),
        intended: row.and_then(|d| d.intended),
        counted_seconds: r.counted_seconds,
        gates: Vec::new(),
        verdict: Verdict::NotYet,
    };
    if r.metrics != Metrics::Ok {
        let what = if r.metrics == Metrics::None { "no metrics" } else { "metrics unreachable" };
        check.gates.push(GateValue {
            gate: "metrics".into(),
            value: None,
            threshold: None,
            verdict: Verdict::NotYet,
            why: format!("{what}: {}", r.error.clone().unwrap_or_default()),
        });
        return check;
    }
    let n = check.requests;
    let min = canary.gates.min_requests;
    let too_few = || format!("{n} of the {min} requests to {}@{} a check needs", canary.version, canary.cluster);
    if let Some(threshold) = canary.gates.success_rate {
        let value = row.and_then(|d| d.success);
        let (verdict, why) = match value {
            _ if n < min => (Verdict::NotYet, too_few()),
            None => (Verdict::NotYet, too_few()),
            Some(s) => {
                let ok = (s / 100.0 * n as f64).round();
                let upper = 100.0 * wilson(ok, n as f64).1;
                if upper < threshold {
                    (Verdict::Failed, format!("{s:.1}% < {threshold}% (99.9% bound up to {upper:.1}%, {n} requests)"))
                } else if s >= threshold {
                    (Verdict::Passed, format!("{s:.1}% ≥ {threshold}% ({n} requests)"))
                } else {
                    (Verdict::NotYet, format!("{s:.1}% < {threshold}% but within noise (99.9% bound up to {upper:.1}%, {n} requests)"))
                }
            }
        };
        check.gates.push(GateValue { gate: "successRate".into(), value, threshold: Some(threshold), verdict, why });
    }
    if let Some(threshold) = canary.gates.p99_ms {
        let value = row.and_then(|d| d.p99_ms);
        let (verdict, why) = match value {
            _ if n < min => (Verdict::NotYet, too_few()),
            None => (Verdict::NotYet, too_few()),
            Some(p) if p > threshold => (Verdict::Failed, format!("{p:.1}ms > {threshold}ms ({n} requests)")),
            Some(p) => (Verdict::Passed, format!("{p:.1}ms ≤ {threshold}ms ({n} requests)")),
        };
        check.gates.push(GateValue { gate: "p99".into(), value, threshold: Some(threshold), verdict, why });
    }
    // The split itself: a step whose requests do not follow its weights is no
    // evidence about the canary (a proxy not pushed, a route not in force).
    let (verdict, why) = if r.requests < min {
        (Verdict::NotYet, format!("{} of the {min} requests a check needs", r.requests))
    } else if let Some(off) = r.destinations.iter().find(|d| d.drift) {
        let (lo, hi) = off.bound.unwrap_or_default();
        let dest = format!("{}@{}", off.version.as_deref().unwrap_or("*"), off.cluster);
        let intended = off.intended.map(|i| format!("{i:.1}%")).unwrap_or_else(|| "none".into());
        (
            Verdict::Failed,
            format!("{dest} got {:.1}% of requests (99.9% bound {lo:.1}–{hi:.1}%), the step sends {intended}", off.observed.unwrap_or(0.0)),
        )
    } else {
        (Verdict::Passed, format!("every destination within its 99.9% bound ({} requests)", r.requests))
    };
    check.gates.push(GateValue { gate: "split".into(), value: check.observed, threshold: check.intended, verdict, why });
    check.verdict = check.gates.iter().fold(Verdict::Passed, |v, g| v.worst(g.verdict));
    check
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Gates, RollbackTo};

    fn canary(per: GatePer) -> Canary {
        Canary {
            cluster: "cluster2".into(),
            version: "v3".into(),
            steps: vec![5, 25, 50, 75],
            interval: 30,
            gates: Gates { success_rate: Some(99.0), p99_ms: Some(500.0), min_requests: 50, per },
            rollback_after: 1,
            rollback_to: RollbackTo::Start,
            decide_within: 90,
        }
    }

    fn dest(cluster: &str, version: &str, intended: f64, requests: u64, all: u64, success: f64, p99: f64) -> ObservedDestination {
        let (lo, hi) = wilson(requests as f64, all as f64);
        let bound = (100.0 * lo, 100.0 * hi);
        ObservedDestination {
            cluster: cluster.into(),
            version: Some(version.into()),
            intended: Some(intended),
            observed: Some(100.0 * requests as f64 / all as f64),
            requests,
            bound: Some(bound),
            success: Some(success),
            p99_ms: Some(p99),
            drift: intended < bound.0 || intended > bound.1,
        }
    }

    /// cluster1's route at step 2 (25% to the canary), `fail` of the canary's requests failing.
    fn route(from: &str, canary_requests: u64, fail: f64) -> ObservedRoute {
        let all = canary_requests * 4;
        let destinations = vec![
            dest("cluster2", "v3", 25.0, canary_requests, all, 100.0 * (1.0 - fail), 12.0),
            dest("cluster1", "v1", 45.0, all * 45 / 100, all, 100.0, 4.0),
            dest("cluster1", "v2", 30.0, all - canary_requests - all * 45 / 100, all, 100.0, 4.0),
        ];
        ObservedRoute {
            service: "reviews.default".into(),
            from: from.into(),
            metrics: Metrics::Ok,
            source: None,
            error: None,
            window_seconds: 30,
            counted_seconds: 30,
            requests: all,
            rate: all as f64 / 30.0,
            success: None,
            p99_ms: None,
            unreached: 0,
            drift: destinations.iter().any(|d| d.drift),
            destinations,
        }
    }

    #[test]
    fn a_healthy_canary_passes_and_a_failing_one_fails_naming_gate_caller_and_value() {
        let c = canary(GatePer::CallingCluster);
        let ok = judge(&c, 2, &[route("cluster1", 200, 0.0)], "t".into(), 30);
        assert_eq!(ok.verdict, Verdict::Passed, "{ok:?}");
        let bad = judge(&c, 2, &[route("cluster1", 200, 0.0), route("cluster3", 200, 0.2)], "t".into(), 30);
        assert_eq!(bad.verdict, Verdict::Failed);
        assert!(bad.why().starts_with("successRate: 80.0% < 99%") && bad.why().ends_with("from cluster3"), "{}", bad.why());
    }

    #[test]
    fn too_few_requests_or_unknown_metrics_are_not_yet_never_passed() {
        let c = canary(GatePer::CallingCluster);
        let few = judge(&c, 2, &[route("cluster1", 20, 0.0)], "t".into(), 30);
        assert_eq!(few.verdict, Verdict::NotYet);
        assert!(few.why().contains("20 of the 50 requests"), "{}", few.why());
        let mut dark = route("cluster1", 200, 0.0);
        dark.metrics = Metrics::Unreachable;
        dark.error = Some("no answer within 3s".into());
        let dark = judge(&c, 2, &[dark], "t".into(), 30);
        assert_eq!(dark.verdict, Verdict::NotYet);
        assert!(dark.why().contains("metrics unreachable: no answer within 3s"), "{}", dark.why());
        assert_eq!(judge(&c, 2, &[], "t".into(), 30).verdict, Verdict::NotYet);
    }

    #[test]
    fn a_rate_just_below_the_threshold_is_noise_until_the_bound_says_otherwise() {
        let c = canary(GatePer::CallingCluster);
        // 1 failure in 60: 98.3%, but 99% lies within the 99.9% bound.
        let one = judge(&c, 2, &[route("cluster1", 60, 1.0 / 60.0)], "t".into(), 30);
        assert_eq!(one.verdict, Verdict::NotYet, "{}", one.why());
    }

    #[test]
    fn a_split_off_its_weights_fails_the_step() {
        let c = canary(GatePer::CallingCluster);
        let mut r = route("cluster1", 200, 0.0);
        // Every request still on the old route: the canary got none of its 25%.
        r.destinations[0] = dest("cluster2", "v3", 25.0, 0, 800, 100.0, 0.0);
        r.drift = true;
        let check = judge(&c, 2, &[r], "t".into(), 30);
        assert_eq!(check.verdict, Verdict::Failed);
    }

    #[test]
    fn gates_over_all_callers_sum_their_requests() {
        let c = canary(GatePer::All);
        // 30 requests each: too few alone, enough summed.
        let both = judge(&c, 2, &[route("cluster1", 30, 0.0), route("cluster3", 30, 0.0)], "t".into(), 30);
        assert_eq!(both.callers.len(), 1);
        assert_eq!(both.callers[0].requests, 60);
        assert_eq!(both.verdict, Verdict::Passed, "{}", both.why());
        let per = judge(&canary(GatePer::CallingCluster), 2, &[route("cluster1", 30, 0.0), route("cluster3", 30, 0.0)], "t".into(), 30);
        assert_eq!(per.verdict, Verdict::NotYet);
    }
}
