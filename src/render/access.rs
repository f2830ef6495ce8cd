//! AccessPolicy → AuthorizationPolicy in every cluster where the service runs.
//! Principals carry each caller cluster's own trust domain
//! (`<trust-domain>/ns/<namespace>/sa/<service-account>`); federation's SNI
//! passthrough keeps the caller's identity across the east-west gateway.

use std::collections::BTreeSet;

use serde_json::json;

use super::{RenderError, RenderedObjects, object};
use crate::inventory::FleetSnapshot;
use crate::plan::AccessPolicy;

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
    for (cluster, presence) in &row.clusters {
        let selector = if presence.selector.is_empty() {
            [("app".to_string(), policy.service.name.clone())].into()
        } else {
            presence.selector.clone()
        };
        out.add(
            cluster,
            object(
                "AuthorizationPolicy",
                &policy.service.namespace,
                &policy.name,
                &policy.name,
                json!({"selector": {"matchLabels": selector}, "action": "ALLOW", "rules": [{"from": [{"source": {"principals": principals}}]}]}),
            ),
        );
    }
    Ok(())
}
