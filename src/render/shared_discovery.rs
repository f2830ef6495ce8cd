//! Shared discovery (multi-primary or primary-remote): istiod in the caller's
//! cluster already sees every cluster's endpoints, so a destination in another
//! cluster is a subset on `version` plus `topology.istio.io/cluster`.

use serde_json::{Value, json};

use super::{RenderError, RenderedObjects, cluster_id, destination, object, outlier, routed_service, version_label, virtual_service};
use crate::inventory::FleetSnapshot;
use crate::plan::{RouteAction, TrafficRoute};

pub(super) const CLUSTER_LABEL: &str = "topology.istio.io/cluster";

pub fn render_route(route: &TrafficRoute, inv: &FleetSnapshot, out: &mut RenderedObjects) -> Result<(), RenderError> {
    let ns = &route.service.namespace;
    let host = route.service.local_host();
    for caller in &route.from_clusters {
        let facts = routed_service(route, inv, caller)?;
        let port = facts.dest_port();
        match &route.action {
            RouteAction::Split(dests) => {
                let mut subsets = Vec::new();
                let mut destinations = Vec::new();
                for d in dests {
                    let subset = format!("{}-{}", d.version, d.cluster);
                    let mut labels = json!({version_label(inv, &d.cluster): d.version});
                    // The caller's own pods need no cluster label when its istiod reads no
                    // remote secret: the host has no other cluster's endpoints to exclude.
                    if d.cluster != *caller || inv.cluster(caller).is_some_and(|c| !c.mesh.remote_secrets.is_empty()) {
                        labels[CLUSTER_LABEL] = json!(cluster_id(inv, caller, &d.cluster)?);
                    }
                    subsets.push(json!({"name": subset, "labels": labels}));
                    destinations.push(json!({"destination": destination(&host, Some(&subset), port), "weight": d.weight}));
                }
                let mut dr = json!({"host": host, "subsets": subsets});
                if let Some(o) = outlier(route) {
                    dr["trafficPolicy"] = json!({"outlierDetection": o});
                }
                out.add(caller, object("DestinationRule", ns, &route.name, &route.name, dr));
                out.add(caller, virtual_service(route, &host, destinations, port));
            }
            RouteAction::Failover(targets) => {
                let Some(primary) = targets.first() else { return Err(RenderError::Input("failover without targets".into())) };
                // Istio ranks endpoints by label prefix: one cluster label gives the primary, then the rest.
                let priority = vec![format!("{CLUSTER_LABEL}={}", cluster_id(inv, caller, &primary.cluster)?)];
                // Every other cluster that runs the service is a fallback too: Istio ranks
                // the primary's endpoints first and all others after.
                let named: Vec<&str> = targets.iter().map(|t| t.cluster.as_str()).collect();
                let unnamed: Vec<&str> = inv
                    .service(&route.service.key())
                    .map(|row| {
                        row.clusters.keys().map(String::as_str).filter(|c| !named.contains(c) && inv.shares_discovery(caller, c)).collect()
                    })
                    .unwrap_or_default();
                if targets.len() == 2 && !unnamed.is_empty() {
                    out.notes.push(format!(
                        "{}: with shared discovery {} also run{} {} and take{} failover traffic with {}",
                        route.name,
                        unnamed.join(", "),
                        if unnamed.len() == 1 { "s" } else { "" },
                        route.service.key(),
                        if unnamed.len() == 1 { "s" } else { "" },
                        targets[1].cluster
                    ));
                }
                if targets.len() > 2 {
                    let rest: Vec<&str> = targets[1..].iter().map(|t| t.cluster.as_str()).collect();
                    out.notes.push(format!(
                        "{}: with shared discovery the fallbacks {} share one priority after {}",
                        route.name,
                        rest.join(", "),
                        primary.cluster
                    ));
                }
                let mut policy = json!({"loadBalancer": {"localityLbSetting": {"enabled": true, "failoverPriority": priority}}});
                if let Some(o) = outlier(route) {
                    policy["outlierDetection"] = o;
                }
                let mut dr = json!({"host": host, "trafficPolicy": policy});
                let version = targets.iter().find_map(|t| t.version.clone());
                if let Some(v) = &version {
                    dr["subsets"] = json!([{"name": v, "labels": {version_label(inv, caller): v}}]);
                }
                let destination = destination(&host, version.as_deref(), port);
                out.add(caller, object("DestinationRule", ns, &route.name, &route.name, dr));
                let routes: Vec<Value> = vec![json!({"destination": destination})];
                out.add(caller, virtual_service(route, &host, routes, port));
            }
        }
    }
    Ok(())
}
