//! What security policy does to a route: AuthorizationPolicies that refuse the
//! caller's identity, and TLS modes the target's sidecars refuse (PeerAuthentication).

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::inventory::model::{ClusterView, FleetSnapshot, IstioObject, ServiceRow};

/// Is the caller's identity allowed by the ALLOW AuthorizationPolicies on the
/// target's workloads? With none, everything is allowed; with some, a call is
/// allowed when one rule admits it. A caller's sidecar presents
/// `spiffe://<its trust domain>/ns/<ns>/sa/<account>`; the target accepts its own
/// trust domain's aliases too. Rules on namespaces, IP blocks or request
/// principals cannot be judged from here and count as allowing.
pub(super) fn denied(
    snap: &FleetSnapshot,
    caller: &ClusterView,
    row: &ServiceRow,
    cluster: &str,
    version: Option<&str>,
    problems: &mut Vec<Problem>,
) {
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
pub(super) fn tls_conflict(
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
