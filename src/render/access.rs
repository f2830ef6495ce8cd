//! AccessPolicy → AuthorizationPolicy in every cluster where the service runs: on
//! its pods (`selector`), or where it is ambient behind a waypoint, on the waypoint
//! for its Service (`targetRefs`).
//! Principals carry each caller cluster's own trust domain
//! (`<trust-domain>/ns/<namespace>/sa/<service-account>`); federation's SNI
//! passthrough keeps the caller's identity across the east-west gateway.
//!
//! Istio's authorization takes a mesh's trust domain and its `trustDomainAliases`
//! as one (pilot/pkg/security/trustdomain): a principal in any of them admits the
//! same namespace and service account from all of them. Where that admits a
//! cluster the plan does not name, the render says so ([`admitted`] is the set
//! Istio builds, checked against Istio's own builder in the real test bed).

use std::collections::BTreeSet;

use serde_json::json;

use super::{RenderError, RenderedObjects, object};
use crate::inventory::{FleetSnapshot, MeshFacts};
use crate::plan::AccessPolicy;

/// The trust domains a principal of trust domain `td` stands for in a mesh's
/// authorization: every domain of its bundle (trustDomain, then its aliases)
/// when `td` is one of them or `cluster.local`; else `td` alone.
pub fn authorization_domains(target: &MeshFacts, td: &str) -> Vec<String> {
    let Some(own) = target.trust_domain.as_deref() else { return vec![td.to_string()] };
    let bundle: Vec<String> = std::iter::once(own.to_string()).chain(target.trust_domain_aliases.iter().cloned()).collect();
    if td == "cluster.local" || bundle.iter().any(|b| b == td) { bundle } else { vec![td.to_string()] }
}

/// Every SPIFFE identity the policy's AuthorizationPolicy admits in `cluster`,
/// as Istio's authorization builds its RBAC filter there.
pub fn admitted(policy: &AccessPolicy, inv: &FleetSnapshot, cluster: &str) -> Result<BTreeSet<String>, RenderError> {
    let target = inv.cluster(cluster).map(|c| c.mesh.clone()).unwrap_or_default();
    let mut out = BTreeSet::new();
    for c in &policy.allow_from {
        let p = principal(inv, &c.cluster, &c.namespace, &c.service_account)?;
        let (td, rest) = p.split_once('/').unwrap_or((&p, ""));
        for d in authorization_domains(&target, td) {
            out.insert(format!("spiffe://{d}/{rest}"));
        }
    }
    Ok(out)
}

/// Clusters of the fleet, not named by the policy for `namespace/sa`, whose
/// workloads of that account the policy admits in `cluster` all the same.
fn admitted_unnamed(policy: &AccessPolicy, inv: &FleetSnapshot, cluster: &str) -> Result<Vec<(String, Vec<String>)>, RenderError> {
    let ids = admitted(policy, inv, cluster)?;
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    let accounts: BTreeSet<(&str, &str)> = policy.allow_from.iter().map(|c| (c.namespace.as_str(), c.service_account.as_str())).collect();
    for (ns, sa) in accounts {
        let named: BTreeSet<&str> =
            policy.allow_from.iter().filter(|c| c.namespace == ns && c.service_account == sa).map(|c| c.cluster.as_str()).collect();
        let others: Vec<String> = inv
            .clusters
            .iter()
            .filter(|v| !named.contains(v.name.as_str()))
            .filter(|v| v.mesh.trust_domain.as_deref().is_some_and(|td| ids.contains(&format!("spiffe://{td}/ns/{ns}/sa/{sa}"))))
            .map(|v| v.name.clone())
            .collect();
        if !others.is_empty() {
            out.push((format!("{ns}/{sa}"), others));
        }
    }
    Ok(out)
}

pub fn principal(inv: &FleetSnapshot, cluster: &str, namespace: &str, sa: &str) -> Result<String, RenderError> {
    let td = inv
        .cluster(cluster)
        .and_then(|c| c.mesh.trust_domain.clone())
        .ok_or_else(|| RenderError::Input(format!("the trust domain of {cluster} is unknown")))?;
    Ok(format!("{td}/ns/{namespace}/sa/{sa}"))
}

pub fn render_policy(policy: &AccessPolicy, inv: &FleetSnapshot, out: &mut RenderedObjects) -> Result<(), RenderError> {
    let row = inv
        .service(&policy.service.key())
        .ok_or_else(|| RenderError::Input(format!("{} is not in the inventory", policy.service.key())))?;
    let principals: BTreeSet<String> =
        policy.allow_from.iter().map(|c| principal(inv, &c.cluster, &c.namespace, &c.service_account)).collect::<Result<_, _>>()?;
    // One note for the clusters where the same account is admitted the same way.
    let mut unnamed: std::collections::BTreeMap<(String, Vec<String>, Vec<String>), Vec<String>> = Default::default();
    for cluster in row.clusters.keys() {
        let target = inv.cluster(cluster).map(|c| c.mesh.clone()).unwrap_or_default();
        let mut domains = authorization_domains(&target, target.trust_domain.as_deref().unwrap_or_default());
        domains.sort();
        for (account, others) in admitted_unnamed(policy, inv, cluster)? {
            unnamed.entry((account, others, domains.clone())).or_default().push(cluster.clone());
        }
    }
    for ((account, others, domains), at) in unnamed {
        let why = match domains.as_slice() {
            [one] => format!("they share trust domain {one}, so an identity names no cluster"),
            many => format!(
                "Istio's authorization takes trust domains {} as one (trustDomain and its trustDomainAliases), so an identity names no cluster among them",
                many.join(", ")
            ),
        };
        out.notes.push(format!(
            "{} in {}: also admits {account} from {}, which the plan does not name: {why}",
            policy.name,
            at.join(", "),
            others.join(", ")
        ));
    }
    for (cluster, presence) in &row.clusters {
        let rules = json!([{"from": [{"source": {"principals": principals}}]}]);
        // Behind a waypoint (ambient) the pods see the waypoint's identity, not the
        // caller's: the policy is the waypoint's, bound to the Service it serves. So
        // also where this render's route puts the service behind one.
        let behind = presence.waypoint.is_some() || out.labels_use_waypoint(cluster, &policy.service.namespace, &policy.service.name);
        let spec = if presence.dataplane_mode.as_deref() == Some("ambient") && behind {
            json!({"targetRefs": [{"group": "", "kind": "Service", "name": policy.service.name}], "action": "ALLOW", "rules": rules})
        } else {
            let selector = if presence.selector.is_empty() {
                [("app".to_string(), policy.service.name.clone())].into()
            } else {
                presence.selector.clone()
            };
            json!({"selector": {"matchLabels": selector}, "action": "ALLOW", "rules": rules})
        };
        out.add(cluster, object("AuthorizationPolicy", &policy.service.namespace, &policy.name, &policy.name, spec));
    }
    Ok(())
}
