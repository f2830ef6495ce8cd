//! The Gateway API path (`routing: gateway-api`): in each calling cluster an
//! `HTTPRoute` whose parent is the routed Service (Gateway API for service mesh),
//! with per-version Services as its backends (an HTTPRoute has no subsets), and a
//! DestinationRule only for what Gateway API cannot say (outlier detection,
//! failover). A backend Service carries every endpoint its caller's istiod
//! discovers, in every cluster it reads, so a version can be pinned to one cluster
//! only where no other such cluster runs it; where it cannot, the render says so
//! and names what would work, instead of writing a route that sends elsewhere.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::shared_discovery::CLUSTER_LABEL;
use super::{RenderError, RenderedObjects, RoutedService, cluster_id, object, outlier, routed_service, version_label};
use crate::inventory::{FleetSnapshot, ServicePort};
use crate::plan::{RouteAction, RouteMatch, StringMatch, TrafficRoute};

pub use crate::inventory::facts::GLOBAL_LABEL;

pub const HTTP_ROUTE_API_VERSION: &str = "gateway.networking.k8s.io/v1";

pub fn render_route(route: &TrafficRoute, inv: &FleetSnapshot, out: &mut RenderedObjects) -> Result<(), RenderError> {
    let fail = |why: String| RenderError::Input(format!("{}: routing gateway-api: {why}", route.name));
    if route.retries.is_some() {
        // Gateway API's `retry` is not in its standard channel (the CRDs the clusters serve).
        return Err(fail("HTTPRoute retries are not in Gateway API's standard channel; drop retries, or use routing: istio".into()));
    }
    let row = inv.service(&route.service.key()).ok_or_else(|| fail(format!("{} is not in the inventory", route.service.key())))?;
    // Every version the plan pins, and whether any caller reaches it in another cluster.
    let mut global: BTreeMap<String, bool> = BTreeMap::new();
    for caller in &route.from_clusters {
        for (cluster, version) in pinned(route) {
            let Some(version) = version else { continue };
            *global.entry(version.clone()).or_default() |= cluster != *caller;
        }
    }
    waypoints(route, inv, global.values().any(|g| *g), out).map_err(&fail)?;
    for caller in &route.from_clusters {
        let facts = routed_service(route, inv, caller)?;
        let port = one_port(&facts).map_err(&fail)?;
        for (cluster, version) in pinned(route) {
            if !inv.shares_discovery(caller, &cluster) {
                return Err(fail(format!(
                    "{caller}'s istiod does not read {cluster}'s endpoints (no remote secret for it), and an HTTPRoute backend reaches only what its caller's istiod discovers; use routing: istio (federation through {cluster}'s east-west gateway)"
                )));
            }
            let Some(version) = version else { continue };
            let name = version_service(route, &version);
            if name.len() > 63 || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
                return Err(fail(format!(
                    "version {version}'s backend Service would be named {name}, which is no DNS label (lowercase letters, digits, '-', at most 63); use routing: istio (subsets select by label)"
                )));
            }
            // In ambient mode a Service is the caller's own cluster's unless labelled
            // global; with sidecars every cluster's endpoints of a host are one service.
            let is_global = global.get(&version).copied().unwrap_or(false);
            if ambient(route, inv, caller) && !is_global {
                continue;
            }
            // Where else this caller would find the version: its backend Service takes them all.
            let elsewhere: Vec<&str> = row
                .clusters
                .iter()
                .filter(|(c, p)| **c != cluster && inv.shares_discovery(caller, c) && p.versions.contains_key(&version))
                .map(|(c, _)| c.as_str())
                .collect();
            if !elsewhere.is_empty() {
                let why = if ambient(route, inv, caller) { "it is global, and" } else { "with sidecars" };
                return Err(fail(format!(
                    "cannot pin {} {version} to {cluster} for callers in {caller}: {} run{} {version} too, and {why} {caller}'s istiod gives their endpoints to the same backend {}; use routing: istio (a subset on {CLUSTER_LABEL})",
                    route.service.key(),
                    elsewhere.join(", "),
                    if elsewhere.len() == 1 { "s" } else { "" },
                    version_service(route, &version),
                )));
            }
        }
        let mut rules = Vec::new();
        match &route.action {
            RouteAction::Split(dests) => {
                let mut refs = Vec::new();
                for d in dests {
                    let name = version_service(route, &d.version);
                    let is_global = global.get(&d.version).copied().unwrap_or(false);
                    let svc = per_version_service(route, inv, &facts, &d.version, &name, is_global);
                    out.add(caller, svc.clone());
                    out.add(&d.cluster, svc);
                    refs.push(json!({"name": name, "port": port.number, "weight": d.weight}));
                    if let Some(o) = outlier(route) {
                        let host = format!("{name}.{}.svc.cluster.local", route.service.namespace);
                        let dr_name = format!("{}-{}", route.name, d.version);
                        out.add(
                            caller,
                            object(
                                "DestinationRule",
                                &route.service.namespace,
                                &dr_name,
                                &route.name,
                                json!({"host": host, "trafficPolicy": {"outlierDetection": o}}),
                            ),
                        );
                    }
                }
                rules.extend(matched_rules(route, refs, port.number)?);
            }
            RouteAction::Failover(targets) => {
                let Some(primary) = targets.first() else { return Err(fail("failover without targets".into())) };
                let version = targets.iter().find_map(|t| t.version.clone());
                let backend = match &version {
                    Some(v) => {
                        let name = version_service(route, v);
                        let svc = per_version_service(route, inv, &facts, v, &name, targets.iter().any(|t| t.cluster != *caller));
                        for t in targets {
                            out.add(&t.cluster, svc.clone());
                        }
                        out.add(caller, svc);
                        name
                    }
                    None => route.service.name.clone(),
                };
                // Istio ranks endpoints by the caller's cluster label: the primary first, then the rest.
                let priority = vec![format!("{CLUSTER_LABEL}={}", cluster_id(inv, caller, &primary.cluster)?)];
                let mut policy = json!({"loadBalancer": {"localityLbSetting": {"enabled": true, "failoverPriority": priority}}});
                if let Some(o) = outlier(route) {
                    policy["outlierDetection"] = o;
                }
                let host = format!("{backend}.{}.svc.cluster.local", route.service.namespace);
                out.add(
                    caller,
                    object(
                        "DestinationRule",
                        &route.service.namespace,
                        &route.name,
                        &route.name,
                        json!({"host": host, "trafficPolicy": policy}),
                    ),
                );
                if targets.len() > 2 {
                    let rest: Vec<&str> = targets[1..].iter().map(|t| t.cluster.as_str()).collect();
                    out.notes.push(format!(
                        "{}: the fallbacks {} share one priority after {}",
                        route.name,
                        rest.join(", "),
                        primary.cluster
                    ));
                }
                rules.extend(matched_rules(route, vec![json!({"name": backend, "port": port.number})], port.number)?);
            }
        }
        let parent = json!({"group": "", "kind": "Service", "name": route.service.name, "port": port.number});
        out.add(
            caller,
            object("HTTPRoute", &route.service.namespace, &route.name, &route.name, json!({"parentRefs": [parent], "rules": rules})),
        );
    }
    Ok(())
}

/// The name Istio's docs give a namespace's waypoint (`istioctl waypoint apply`).
pub const DEFAULT_WAYPOINT: &str = "waypoint";

/// In ambient mode only a waypoint applies an HTTPRoute (ztunnel alone ignores it),
/// and ambient multicluster needs the service's waypoint under one name in every
/// cluster. In each cluster of the route where the service runs ambient: the
/// waypoint (a Gateway of class `istio-waypoint`, global where the route crosses
/// clusters) where it is not deployed, and `istio.io/use-waypoint` on the Service
/// where neither it nor its namespace names one. Both are namespace infrastructure
/// other services may come to use: no plan owns them (`render::check`), a plan that
/// stops routing never prunes them, and only rolling back the change that made them
/// removes them (refused while another service uses the waypoint: `apply::rollback`).
fn waypoints(route: &TrafficRoute, inv: &FleetSnapshot, crosses: bool, out: &mut RenderedObjects) -> Result<(), String> {
    let Some(row) = inv.service(&route.service.key()) else { return Ok(()) };
    let ambient_in = |c: &str| row.clusters.get(c).filter(|p| p.dataplane_mode.as_deref() == Some("ambient"));
    // One name fleet-wide: the one any cluster already uses, else Istio's default.
    let named: BTreeMap<&str, &str> = row
        .clusters
        .iter()
        .filter_map(|(c, p)| Some((c.as_str(), p.waypoint.as_deref()?)))
        .filter(|(c, _)| ambient_in(c).is_some())
        .collect();
    let names: BTreeSet<&str> = named.values().copied().collect();
    if names.len() > 1 {
        let each: Vec<String> = named.iter().map(|(c, w)| format!("{w} in {c}")).collect();
        return Err(format!(
            "{} uses waypoint {}; ambient multicluster needs one name in every cluster: label the service {} with one of them everywhere",
            route.service.key(),
            each.join(", "),
            crate::inventory::facts::USE_WAYPOINT_LABEL
        ));
    }
    let name = names.first().copied().unwrap_or(DEFAULT_WAYPOINT);
    let mut clusters: BTreeSet<String> = route.from_clusters.iter().cloned().collect();
    clusters.extend(pinned(route).into_iter().map(|(c, _)| c));
    for cluster in &clusters {
        let Some(p) = ambient_in(cluster) else { continue };
        if p.waypoint.is_none() {
            out.add(cluster, use_waypoint(&route.service.namespace, &route.service.name, name));
        }
        // Not known to be missing (the watch not synced yet): left as it is.
        if p.waypoint.is_none() || p.waypoint_deployed == Some(false) {
            out.add(cluster, waypoint(&route.service.namespace, name, crosses));
        }
    }
    Ok(())
}

/// A waypoint for services, as `istioctl waypoint apply --for service` makes it. Its
/// labels for what Istio deploys for it (`spec.infrastructure`) are given, so the
/// Gateway's own (meshdeck's) are not copied onto the Deployment and Service.
pub fn waypoint(namespace: &str, name: &str, global: bool) -> Value {
    json!({
        "apiVersion": HTTP_ROUTE_API_VERSION,
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace, "labels": {
            super::MANAGED_BY: "meshdeck",
            WAYPOINT_FOR_LABEL: "service",
        }},
        "spec": {
            "gatewayClassName": crate::inventory::watch::WAYPOINT_CLASS,
            "infrastructure": {"labels": {GLOBAL_LABEL: if global { "true" } else { "false" }}},
            "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
        },
    })
}

/// `istio.io/waypoint-for`: which traffic a waypoint takes (services', here).
pub const WAYPOINT_FOR_LABEL: &str = "istio.io/waypoint-for";

/// The routed Service's one label meshdeck sets: the waypoint its traffic goes
/// through. Applied server-side, meshdeck owns that label and no other field.
pub fn use_waypoint(namespace: &str, service: &str, waypoint: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service, "namespace": namespace, "labels": {crate::inventory::facts::USE_WAYPOINT_LABEL: waypoint}},
    })
}

/// Is this rendered object one of the waypoint's (a waypoint, or a Service's
/// `istio.io/use-waypoint` label), which no plan owns?
pub fn is_waypoint_infra(o: &Value) -> bool {
    let kind = o.get("kind").and_then(Value::as_str);
    let api = o.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    (kind == Some("Gateway") && api.starts_with("gateway.networking.k8s.io/")) || (kind == Some("Service") && o.get("spec").is_none())
}

/// `(cluster, version)` of every destination the route names.
fn pinned(route: &TrafficRoute) -> Vec<(String, Option<String>)> {
    match &route.action {
        RouteAction::Split(ds) => ds.iter().map(|d| (d.cluster.clone(), Some(d.version.clone()))).collect(),
        RouteAction::Failover(ts) => ts.iter().map(|t| (t.cluster.clone(), t.version.clone())).collect(),
    }
}

/// The backend Service of one version: `reviews-v3`.
pub fn version_service(route: &TrafficRoute, version: &str) -> String {
    format!("{}-{version}", route.service.name)
}

/// An HTTPRoute's parent and backends name one port: the plan's, or the Service's only HTTP one.
fn one_port(facts: &RoutedService) -> Result<&ServicePort, String> {
    match facts.ports.as_slice() {
        [one] => Ok(one),
        many => Err(format!(
            "an HTTPRoute here routes one port and the service has {}: set port",
            many.iter().map(|p| p.number.to_string()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The Service whose endpoints are one version's pods, with the routed port as declared.
fn per_version_service(route: &TrafficRoute, inv: &FleetSnapshot, facts: &RoutedService, version: &str, name: &str, global: bool) -> Value {
    let mut selector: BTreeMap<String, String> = facts.selector.clone();
    let label = route.from_clusters.first().map(|c| version_label(inv, c)).unwrap_or_else(|| "version".into());
    selector.insert(label, version.to_string());
    let ports: Vec<Value> = facts
        .ports
        .iter()
        .map(|p| {
            let mut v = json!({"name": if p.name.is_empty() { format!("http-{}", p.number) } else { p.name.clone() }, "port": p.number, "protocol": "TCP"});
            if let Some(t) = p.target_port {
                v["targetPort"] = json!(t);
            }
            if let Some(a) = &p.app_protocol {
                v["appProtocol"] = json!(a);
            }
            v
        })
        .collect();
    let mut svc = object("Service", &route.service.namespace, name, &route.name, json!({"selector": selector, "ports": ports}));
    if global {
        svc["metadata"]["labels"][GLOBAL_LABEL] = json!("true");
    }
    svc
}

/// HTTPRoute rules: the plan's (matched, if it says so), then for matched plans a
/// last rule that keeps other requests on the Service itself.
fn matched_rules(route: &TrafficRoute, backends: Vec<Value>, port: u16) -> Result<Vec<Value>, RenderError> {
    let mut main = Map::new();
    if !route.matches.is_empty() {
        let ms: Result<Vec<Value>, RenderError> = route.matches.iter().map(|m| http_route_match(route, m)).collect();
        main.insert("matches".into(), Value::Array(ms?));
    }
    main.insert("backendRefs".into(), Value::Array(backends));
    if let Some(t) = &route.timeout {
        main.insert("timeouts".into(), json!({"request": t}));
    }
    let mut rules = vec![Value::Object(main)];
    if !route.matches.is_empty() {
        rules.push(json!({"backendRefs": [{"name": route.service.name, "port": port}]}));
    }
    Ok(rules)
}

/// A plan match as an HTTPRoute match. Gateway API has no prefix match on headers.
fn http_route_match(route: &TrafficRoute, m: &RouteMatch) -> Result<Value, RenderError> {
    let mut out = Map::new();
    if let Some(p) = &m.path_prefix {
        out.insert("path".into(), json!({"type": "PathPrefix", "value": p}));
    }
    let mut headers = Vec::new();
    let names: BTreeSet<&String> = m.headers.keys().collect();
    for h in names {
        let (kind, value) = match &m.headers[h] {
            StringMatch::Exact(v) => ("Exact", v),
            StringMatch::Regex(v) => ("RegularExpression", v),
            StringMatch::Prefix(_) => {
                return Err(RenderError::Input(format!(
                    "{}: routing gateway-api: header {h:?} is matched by prefix, which HTTPRoute cannot say; match it exactly or by regex, or use routing: istio",
                    route.name
                )));
            }
        };
        headers.push(json!({"type": kind, "name": h, "value": value}));
    }
    if !headers.is_empty() {
        out.insert("headers".into(), Value::Array(headers));
    }
    Ok(Value::Object(out))
}

/// Does `cluster` run the routed service's namespace in ambient mode?
fn ambient(route: &TrafficRoute, inv: &FleetSnapshot, cluster: &str) -> bool {
    inv.service(&route.service.key())
        .and_then(|row| row.clusters.get(cluster))
        .is_some_and(|p| p.dataplane_mode.as_deref() == Some("ambient"))
}
