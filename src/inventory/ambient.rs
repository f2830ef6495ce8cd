//! Fleet checks of Gateway API routes and ambient mode (issue #34): one service
//! routed in both APIs, a waypoint named and not deployed, a global service whose
//! waypoint differs across clusters,
//! ambient in a topology ambient multicluster does not support, and an HTTPRoute
//! status that is wrong only because it judges one cluster.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{FleetSnapshot, FleetWarning};

fn warning(code: &str, service: String, message: String, clusters: Vec<String>) -> FleetWarning {
    FleetWarning { code: code.into(), message, clusters, service: Some(service) }
}

/// `reviews.default` of `reviews.default.svc.cluster.local`.
fn service_key(host: &str) -> Option<String> {
    let mut parts = host.split('.');
    let (name, ns) = (parts.next()?, parts.next()?);
    (parts.next() == Some("svc")).then(|| format!("{name}.{ns}"))
}

pub fn compute(snap: &FleetSnapshot) -> Vec<FleetWarning> {
    let mut out = mixed_routing(snap);
    out.extend(waypoints(snap));
    out.extend(route_status(snap));
    out
}

/// `MIXED_ROUTING`: a VirtualService and an HTTPRoute route one service in one cluster.
fn mixed_routing(snap: &FleetSnapshot) -> Vec<FleetWarning> {
    let mut by: BTreeMap<(String, String), (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for o in &snap.istio_objects {
        let named = format!("{}/{}/{}", o.kind, o.namespace, o.name);
        for host in &o.hosts {
            // A VirtualService host may be short (`reviews`): in its own namespace.
            let key = service_key(host).or_else(|| (!host.contains('.')).then(|| format!("{host}.{}", o.namespace)));
            let Some(key) = key else { continue };
            let entry = by.entry((key, o.cluster.clone())).or_default();
            match o.kind.as_str() {
                "VirtualService" => {
                    entry.0.insert(named.clone());
                }
                "HTTPRoute" | "GRPCRoute" => {
                    entry.1.insert(named.clone());
                }
                _ => {}
            }
        }
    }
    by.into_iter()
        .filter(|(_, (vs, hr))| !vs.is_empty() && !hr.is_empty())
        .map(|((svc, cluster), (vs, hr))| {
            let both: Vec<String> = vs.into_iter().chain(hr).collect();
            warning(
                "MIXED_ROUTING",
                svc.clone(),
                format!(
                    "{svc} in {cluster} is routed by both {}: Istio does not define which applies when both APIs route one service",
                    both.join(" and ")
                ),
                vec![cluster],
            )
        })
        .collect()
}

/// `WAYPOINT_MISMATCH`: an ambient service that is global (in any cluster) and uses a
/// waypoint must use one of the same name in every cluster that runs it. `AMBIENT_REMOTE`: ambient
/// multicluster runs on multiple primaries only; a cluster without its own istiod
/// (a remote, read by another's) cannot carry a global ambient service.
fn waypoints(snap: &FleetSnapshot) -> Vec<FleetWarning> {
    let mut out = Vec::new();
    for row in &snap.services {
        let ambient: Vec<(&String, &super::model::ServicePresence)> =
            row.clusters.iter().filter(|(_, p)| p.dataplane_mode.as_deref() == Some("ambient")).collect();
        for (cluster, p) in &ambient {
            if let (Some(w), Some(false)) = (&p.waypoint, p.waypoint_deployed) {
                out.push(warning(
                    "WAYPOINT_MISSING",
                    row.key(),
                    format!(
                        "{} in {cluster} uses waypoint {w}, which is not deployed there (no Gateway {}/{w} of class {})",
                        row.key(),
                        row.namespace,
                        super::watch::WAYPOINT_CLASS
                    ),
                    vec![cluster.to_string()],
                ));
            }
        }
        if ambient.is_empty() || !row.clusters.values().any(|p| p.global) {
            continue;
        }
        // A global service without any waypoint is L4 only (a route's backend, say): nothing to match.
        let names: BTreeSet<Option<&str>> = ambient.iter().map(|(_, p)| p.waypoint.as_deref()).collect();
        if names.len() > 1 {
            let each: Vec<String> = ambient.iter().map(|(c, p)| format!("{} in {c}", p.waypoint.as_deref().unwrap_or("none"))).collect();
            out.push(warning(
                "WAYPOINT_MISMATCH",
                row.key(),
                format!(
                    "{} is global but its waypoint is {}: ambient multicluster needs a waypoint of the same name in every cluster",
                    row.key(),
                    each.join(", ")
                ),
                ambient.iter().map(|(c, _)| c.to_string()).collect(),
            ));
        }
        let remotes: Vec<String> = ambient
            .iter()
            .filter(|(c, _)| snap.cluster(c).is_some_and(|v| v.mesh.istio_version.is_none()))
            .filter(|(c, _)| snap.clusters.iter().any(|o| o.mesh.remote_secrets.iter().any(|r| r == *c)))
            .map(|(c, _)| c.to_string())
            .collect();
        if !remotes.is_empty() {
            out.push(warning(
                "AMBIENT_REMOTE",
                row.key(),
                format!(
                    "{} is global in ambient mode, and {} {} a remote (no istiod of its own): ambient multicluster supports multiple primaries only",
                    row.key(),
                    remotes.join(", "),
                    if remotes.len() == 1 { "is" } else { "are" }
                ),
                remotes,
            ));
        }
    }
    out
}

/// `ROUTE_STATUS_LOCAL`: an HTTPRoute whose status says a backend is not found, where
/// that backend runs in a cluster the route's istiod reads: Istio judges a route's
/// references in its own cluster only (istio#60971), so the status is wrong and
/// traffic still flows.
fn route_status(snap: &FleetSnapshot) -> Vec<FleetWarning> {
    let mut out = Vec::new();
    for o in snap.istio_objects.iter().filter(|o| crate::inventory::facts::is_mesh_route(&o.kind) && !o.unresolved.is_empty()) {
        for backend in &o.unresolved {
            let Some(key) = service_key(backend) else { continue };
            let Some(row) = snap.service(&key) else { continue };
            let elsewhere: Vec<String> =
                row.clusters.keys().filter(|c| **c != o.cluster && snap.shares_discovery(&o.cluster, c)).cloned().collect();
            if row.clusters.contains_key(&o.cluster) || elsewhere.is_empty() {
                continue;
            }
            out.push(warning(
                "ROUTE_STATUS_LOCAL",
                key.clone(),
                format!(
                    "{} {}/{} in {} says backend {key} is not found, but it runs in {}, whose endpoints {}'s istiod reads: the status judges one cluster only; traffic reaches it",
                    o.kind,
                    o.namespace,
                    o.name,
                    o.cluster,
                    elsewhere.join(", "),
                    o.cluster
                ),
                vec![o.cluster.clone()],
            ));
        }
    }
    out
}
