//! Federation: independent meshes on different networks, one root of trust.
//! Callers reach a remote cluster through its east-west gateway on 15443 (mTLS,
//! SNI passthrough). Each remote version a route uses is a fleet-global host of
//! its own (`v3.reviews.default.svc.cluster2.global`): the caller gets a
//! ServiceEntry for it (endpoint: the remote gateway) and a DestinationRule with
//! ISTIO_MUTUAL; the remote side gets the AUTO_PASSTHROUGH Gateway and a
//! ServiceEntry that maps the host onto its local workloads of that version.
//! A host per version needs no subsets on either side, so nothing depends on
//! ServiceEntry endpoint labels (which `istioctl analyze` does not look at:
//! IST0173 would call such a subset empty).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::{Value, json};

use super::shared_discovery::CLUSTER_LABEL;
use super::{
    EASTWEST_PORT, RenderError, RenderedObjects, RoutedService, cluster_id, destination, object, outlier, routed_service, version_label,
    virtual_service,
};
use crate::inventory::FleetSnapshot;
use crate::plan::{FailoverTarget, RouteAction, ServiceRef, TrafficRoute};

/// `v3.reviews.default.svc.cluster2.global`: one version of the service as cluster2
/// exposes it to the fleet.
pub fn global_host(svc: &ServiceRef, cluster: &str, version: &str) -> String {
    format!("{version}.{}.{}.svc.{cluster}.global", svc.name, svc.namespace)
}

/// `reviews-failover.reviews.default.failover.global`: one host per failover plan
/// whose endpoints are its ranked targets. The plan's name is in it, so two plans'
/// endpoints never mix on a shared host (each plan's ServiceEntry selects its own).
pub fn failover_host(plan: &str, svc: &ServiceRef) -> String {
    format!("{plan}.{}.{}.failover.global", svc.name, svc.namespace)
}

/// The label marking failover tier membership (see `rank_labels`).
pub const RANK_LABEL: &str = "failover.meshdeck.dev/tier";

fn eastwest(inv: &FleetSnapshot, cluster: &str) -> Result<String, RenderError> {
    inv.cluster(cluster)
        .and_then(|c| c.mesh.east_west_gateway.clone())
        .ok_or_else(|| RenderError::Input(format!("{cluster} has no east-west gateway address")))
}

/// STATIC for IP endpoints, DNS when an address is a host name (load balancers often are).
fn resolution(addresses: &[String]) -> &'static str {
    if addresses.iter().all(|a| a.parse::<IpAddr>().is_ok()) { "STATIC" } else { "DNS" }
}

/// The SPIFFE identities of the service's workloads in `cluster`: what a caller's
/// ISTIO_MUTUAL rule should accept as the server (`subjectAltNames`), so that no
/// other workload certified by the shared root can answer for the host.
fn server_identities(inv: &FleetSnapshot, svc: &ServiceRef, cluster: &str) -> Vec<String> {
    let Some(td) = inv.cluster(cluster).and_then(|c| c.mesh.trust_domain.clone()) else { return vec![] };
    let accounts =
        inv.service(&svc.key()).and_then(|row| row.clusters.get(cluster)).map(|p| p.service_accounts.clone()).unwrap_or_default();
    accounts.iter().map(|sa| format!("spiffe://{td}/ns/{}/sa/{sa}", svc.namespace)).collect()
}

/// `tls: ISTIO_MUTUAL` pinned to the servers' identities when they are known.
fn mutual_tls(out: &mut RenderedObjects, route: &TrafficRoute, host: &str, mut identities: Vec<String>) -> Value {
    identities.sort();
    identities.dedup();
    if identities.is_empty() {
        out.notes.push(format!(
            "{}: the service accounts behind {host} are not known; any workload of the shared root is accepted as its server",
            route.name
        ));
        return json!({"mode": "ISTIO_MUTUAL"});
    }
    json!({"mode": "ISTIO_MUTUAL", "subjectAltNames": identities})
}

/// A caller's ServiceEntry for a mesh host whose endpoints are listed (remote gateways).
fn endpoints_entry(ns: &str, name: &str, plan: &str, host: &str, resolution: &str, ports: Value, endpoints: Value) -> Value {
    object(
        "ServiceEntry",
        ns,
        name,
        plan,
        json!({"hosts": [host], "location": "MESH_INTERNAL", "resolution": resolution, "ports": ports, "endpoints": endpoints}),
    )
}

/// One host a target cluster exposes through its east-west gateway, and the
/// version of its workloads it maps to: (label, version).
struct Exposed<'a> {
    host: String,
    version: Option<(&'a str, &'a str)>,
    /// Names the host's ServiceEntry: `<route>-<suffix>`.
    suffix: String,
}

/// What a target cluster needs so its east-west gateway can take each host to
/// local pods: one AUTO_PASSTHROUGH Gateway for all of them, a ServiceEntry each.
fn expose(out: &mut RenderedObjects, route: &TrafficRoute, facts: &RoutedService, cluster: &str, hosts: &[Exposed]) {
    let ns = &route.service.namespace;
    let names: Vec<&str> = hosts.iter().map(|e| e.host.as_str()).collect();
    out.add(
        cluster,
        object(
            "Gateway",
            ns,
            &format!("{}-eastwest", route.name),
            &route.name,
            json!({"selector": {"istio": "eastwestgateway"}, "servers": [{"port": {"number": EASTWEST_PORT, "name": "tls", "protocol": "TLS"}, "tls": {"mode": "AUTO_PASSTHROUGH"}, "hosts": names}]}),
        ),
    );
    for e in hosts {
        let mut selector = facts.selector.clone();
        if let Some((label, v)) = e.version {
            selector.insert(label.to_string(), v.to_string());
        }
        out.add(
            cluster,
            object(
                "ServiceEntry",
                ns,
                &format!("{}-{}", route.name, e.suffix),
                &route.name,
                json!({"hosts": [e.host], "location": "MESH_INTERNAL", "resolution": "STATIC", "ports": facts.entry_ports(true), "workloadSelector": {"labels": selector}}),
            ),
        );
    }
}

pub fn render_route(route: &TrafficRoute, inv: &FleetSnapshot, out: &mut RenderedObjects) -> Result<(), RenderError> {
    match &route.action {
        RouteAction::Split(_) => split(route, inv, out),
        RouteAction::Failover(targets) => failover(route, targets, inv, out),
    }
}

fn split(route: &TrafficRoute, inv: &FleetSnapshot, out: &mut RenderedObjects) -> Result<(), RenderError> {
    let RouteAction::Split(dests) = &route.action else { return Ok(()) };
    let ns = &route.service.namespace;
    let local_host = route.service.local_host();
    for caller in &route.from_clusters {
        let facts = routed_service(route, inv, caller)?;
        let port = facts.dest_port();
        let mut local_subsets = Vec::new();
        let mut remote: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let mut destinations = Vec::new();
        // A caller whose istiod reads other clusters sees their pods under the local host
        // too: each subset is pinned to its cluster, or "v3 in cluster2" would take
        // cluster1's v3 as well (and two clusters' v1 would be two subsets named v1).
        let pinned = inv.cluster(caller).is_some_and(|c| !c.mesh.remote_secrets.is_empty());
        for d in dests {
            if d.cluster == *caller || route.shared_discovery(inv, caller, &d.cluster) {
                let (name, labels) = if pinned {
                    let labels = json!({version_label(inv, &d.cluster): d.version, CLUSTER_LABEL: cluster_id(inv, caller, &d.cluster)?});
                    (format!("{}-{}", d.version, d.cluster), labels)
                } else {
                    (d.version.clone(), json!({version_label(inv, caller): d.version}))
                };
                destinations.push(json!({"destination": destination(&local_host, Some(&name), port), "weight": d.weight}));
                local_subsets.push(json!({"name": name, "labels": labels}));
            } else {
                remote.entry(d.cluster.as_str()).or_default().push(d.version.as_str());
                let host = global_host(&route.service, &d.cluster, &d.version);
                destinations.push(json!({"destination": destination(&host, None, port), "weight": d.weight}));
            }
        }
        if !local_subsets.is_empty() {
            out.add(caller, object("DestinationRule", ns, &route.name, &route.name, json!({"host": local_host, "subsets": local_subsets})));
        }
        for (cluster, versions) in &remote {
            let address = eastwest(inv, cluster)?;
            let label = version_label(inv, cluster);
            let mut exposed = Vec::new();
            for v in versions {
                let host = global_host(&route.service, cluster, v);
                let name = format!("{}-{cluster}-{v}", route.name);
                let endpoints = json!([{"address": address, "ports": facts.endpoint_ports(Some(EASTWEST_PORT))}]);
                let resolve = resolution(std::slice::from_ref(&address));
                out.add(caller, endpoints_entry(ns, &name, &route.name, &host, resolve, facts.entry_ports(false), endpoints));
                let tls = mutual_tls(out, route, &host, server_identities(inv, &route.service, cluster));
                out.add(caller, object("DestinationRule", ns, &name, &route.name, json!({"host": host, "trafficPolicy": {"tls": tls}})));
                exposed.push(Exposed { host, version: Some((label.as_str(), v)), suffix: format!("{v}-global") });
            }
            // The target's own Service says where its pods listen (targetPort).
            expose(out, route, &routed_service(route, inv, cluster)?, cluster, &exposed);
        }
        out.add(caller, virtual_service(route, &local_host, destinations, port));
    }
    Ok(())
}

/// Failover tiers as endpoint labels: tier i carries labels 1..=(n-1-i), and the
/// DestinationRule's `failoverPriority` lists `label=primary` for 1..n-1, so Istio's
/// prefix matching puts tier 0 at priority 0, tier 1 at 1, and so on.
pub fn rank_labels(tier: usize, tiers: usize) -> BTreeMap<String, String> {
    first_rank_labels(tiers.saturating_sub(tier + 1))
}

fn first_rank_labels(count: usize) -> BTreeMap<String, String> {
    (1..=count).map(|j| (format!("{RANK_LABEL}-{j}"), "primary".to_string())).collect()
}

pub fn failover_priority(tiers: usize) -> Vec<String> {
    (1..tiers).map(|j| format!("{RANK_LABEL}-{j}=primary")).collect()
}

/// Istio's endpoint label for the network; first in `failoverPriority`, Istio ranks
/// every endpoint on another network than the caller's after every one on its own,
/// and still orders each group by the labels that follow.
const NETWORK_LABEL: &str = "topology.istio.io/network";

/// The remote tiers around a local tier of pods (which carry none of our labels):
/// on the caller's network, tiers before the local one rank by how many labels they
/// match (more than the pods' zero); on other networks, tiers after it rank among
/// themselves, all after the pods. Returns the endpoint's labels and its network.
fn rank_around_local(
    tier: usize,
    local: usize,
    tiers: usize,
    caller_net: Option<&str>,
    target: (&str, Option<&str>),
) -> (BTreeMap<String, String>, Option<String>) {
    if tier < local {
        return (first_rank_labels(local - tier), caller_net.map(str::to_string));
    }
    let (cluster, own_net) = target;
    // Another network than the caller's: the target's own, or one named for it
    // when they are equal or unknown (no istiod knows a gateway for it, so Istio
    // sends to the address as given).
    let net = match own_net {
        Some(n) if caller_net.is_some_and(|c| c != n) => n.to_string(),
        _ => format!("meshdeck-{cluster}"),
    };
    (first_rank_labels(tiers - 1 - tier), Some(net))
}

fn failover(route: &TrafficRoute, targets: &[FailoverTarget], inv: &FleetSnapshot, out: &mut RenderedObjects) -> Result<(), RenderError> {
    let ns = &route.service.namespace;
    let host = failover_host(&route.name, &route.service);
    let network = |c: &str| inv.cluster(c).and_then(|c| c.mesh.network.clone());
    let mut exposed: BTreeSet<&str> = BTreeSet::new();
    for caller in &route.from_clusters {
        let facts = routed_service(route, inv, caller)?;
        let caller_net = network(caller);
        // Each remote tier's east-west gateway, by cluster.
        let gateways: BTreeMap<&str, String> = targets
            .iter()
            .filter(|t| t.cluster != *caller)
            .map(|t| eastwest(inv, &t.cluster).map(|a| (t.cluster.as_str(), a)))
            .collect::<Result<_, _>>()?;
        let addresses: Vec<String> = gateways.values().cloned().collect();
        // The caller's own tier as its pods, each an endpoint (per-pod balancing and
        // outlier detection), through a second ServiceEntry for the same host that
        // selects them: Istio merges the endpoints of one host's entries in a
        // namespace. A DNS-resolved entry cannot be merged with a selecting one, so
        // gateways known by name keep the local tier as the Service's name.
        let local = targets.iter().position(|t| t.cluster == *caller);
        let per_pod = local.filter(|_| resolution(&addresses) == "STATIC");
        let mut endpoints = Vec::new();
        for (tier, t) in targets.iter().enumerate() {
            if t.cluster == *caller {
                if per_pod.is_none() {
                    out.notes.push(format!(
                        "{}: {caller}'s own tier is one endpoint, {} (an east-west gateway address is a host name): outlier detection sees the Service, not its pods",
                        route.name,
                        route.service.local_host()
                    ));
                    endpoints.push(json!({"address": route.service.local_host(), "ports": facts.endpoint_ports(None), "labels": rank_labels(tier, targets.len())}));
                }
                continue;
            }
            exposed.insert(t.cluster.as_str());
            let mut endpoint = json!({"address": gateways[t.cluster.as_str()], "ports": facts.endpoint_ports(Some(EASTWEST_PORT))});
            match per_pod {
                Some(l) => {
                    let own_net = network(&t.cluster);
                    let (labels, net) = rank_around_local(tier, l, targets.len(), caller_net.as_deref(), (&t.cluster, own_net.as_deref()));
                    endpoint["labels"] = json!(labels);
                    if let Some(n) = net {
                        endpoint["network"] = json!(n);
                    }
                }
                None => endpoint["labels"] = json!(rank_labels(tier, targets.len())),
            }
            endpoints.push(endpoint);
        }
        let name = format!("{}-failover", route.name);
        let (resolve, ports) = match (per_pod, local) {
            (Some(_), _) => ("STATIC", facts.entry_ports(true)),
            // The local tier as the Service's name is a host name.
            (None, Some(_)) => ("DNS", facts.entry_ports(false)),
            (None, None) => (resolution(&addresses), facts.entry_ports(false)),
        };
        if !endpoints.is_empty() {
            out.add(caller, endpoints_entry(ns, &name, &route.name, &host, resolve, ports, Value::Array(endpoints)));
        }
        let mut priority = failover_priority(targets.len());
        if per_pod.is_some() {
            // Every version: validation refuses a version on the local tier.
            let selector = &facts.selector;
            out.add(
                caller,
                object(
                    "ServiceEntry",
                    ns,
                    &format!("{name}-local"),
                    &route.name,
                    json!({"hosts": [host], "location": "MESH_INTERNAL", "resolution": "STATIC", "ports": facts.entry_ports(true), "workloadSelector": {"labels": selector}}),
                ),
            );
            priority.insert(0, NETWORK_LABEL.to_string());
        }
        let identities = targets.iter().flat_map(|t| server_identities(inv, &route.service, &t.cluster)).collect();
        let tls = mutual_tls(out, route, &host, identities);
        let mut policy = json!({"tls": tls, "loadBalancer": {"localityLbSetting": {"enabled": true, "failoverPriority": priority}}});
        if let Some(o) = outlier(route) {
            policy["outlierDetection"] = o;
        }
        out.add(caller, object("DestinationRule", ns, &name, &route.name, json!({"host": host, "trafficPolicy": policy})));
        let port = facts.dest_port();
        let destinations = vec![json!({"destination": destination(&host, None, port)})];
        out.add(caller, virtual_service(route, &route.service.local_host(), destinations, port));
    }
    for t in targets.iter().filter(|t| exposed.contains(t.cluster.as_str())) {
        let facts = routed_service(route, inv, &t.cluster)?;
        let label = version_label(inv, &t.cluster);
        let version = t.version.as_deref().map(|v| (label.as_str(), v));
        expose(out, route, &facts, &t.cluster, &[Exposed { host: host.clone(), version, suffix: "failover".into() }]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_get_decreasing_rank_labels() {
        assert_eq!(failover_priority(3), [format!("{RANK_LABEL}-1=primary"), format!("{RANK_LABEL}-2=primary")]);
        assert_eq!(rank_labels(0, 3).len(), 2);
        assert_eq!(rank_labels(1, 3).keys().collect::<Vec<_>>(), [&format!("{RANK_LABEL}-1")]);
        assert!(rank_labels(2, 3).is_empty());
    }
}
