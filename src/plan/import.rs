//! `meshdeck import`: an effective route (hand-written objects included) back into
//! a TrafficRoute that renders to the same effective routing, so meshdeck can take
//! the route over. What a plan cannot say (fault injection, several rules beyond
//! "matching requests, then the rest to the service", a destination spanning
//! clusters) is refused with the reason, never approximated.

use std::collections::BTreeMap;

use serde_json::Value;

use super::types::*;
use crate::inventory::routes::{Destination as RouteDestination, EffectiveRoute, Rule};

/// What a plan cannot say and the objects still have: traffic policy beyond TLS,
/// outlier detection and failover (a load balancer, connection pools). The routing
/// is the same; these are named so the operator knows what the takeover drops.
pub fn not_carried_over(route: &EffectiveRoute) -> Vec<String> {
    let mut out: Vec<String> = route.rules.iter().flat_map(|r| &r.destinations).flat_map(|d| d.unmodelled.iter().cloned()).collect();
    out.sort();
    out.dedup();
    out
}

/// The plan for `route`, named `name`; or why it cannot be one.
pub fn import(route: &EffectiveRoute, name: &str) -> Result<TrafficRoute, Vec<String>> {
    let Some(vs) = &route.virtual_service else {
        return Err(vec![format!(
            "no VirtualService routes {} from {}: Istio's default route has nothing to import",
            route.service, route.from
        )]);
    };
    if vs.starts_with("GRPCRoute ") {
        return Err(vec![format!("{vs} is a GRPCRoute: a TrafficRoute renders HTTPRoutes, so a gRPC route stays as written")]);
    }
    let mut why = Vec::new();
    let Some((service_name, namespace)) = route.service.split_once('.') else {
        return Err(vec![format!("{}: not name.namespace", route.service)]);
    };
    let local_host = format!("{service_name}.{namespace}.svc.cluster.local");
    let (main, matches) = match route.rules.as_slice() {
        [one] if one.match_spec.is_empty() => (one, vec![]),
        [first, rest] if !first.match_spec.is_empty() && rest_to_service(rest, &local_host) => (first, matches(first, &mut why)),
        rules => {
            why.push(format!(
                "{vs} has {} rules: a TrafficRoute is one rule, or matching requests first and the rest to {local_host}",
                rules.len()
            ));
            return Err(why);
        }
    };
    if main.kind != "http" {
        why.push(format!("{vs} routes {} traffic: a TrafficRoute renders http routes", main.kind));
    }
    if let Some(f) = &main.fault {
        why.push(format!("{vs} injects faults ({f}): a TrafficRoute has no fault injection"));
    }
    let failover = main.destinations.iter().any(|d| d.targets.iter().any(|t| t.tier.is_some()));
    let action = if failover { failover_targets(vs, &main.destinations, &mut why) } else { split(vs, &main.destinations, &mut why) };
    let outlier = main.destinations.iter().find_map(|d| d.outlier_spec.as_ref()).map(|o| outlier_detection(o, &mut why));
    let retries = main.retries_spec.as_ref().map(|r| Retries {
        attempts: r.get("attempts").and_then(Value::as_u64).unwrap_or(0) as u32,
        per_try_timeout: r.get("perTryTimeout").and_then(Value::as_str).map(String::from),
        retry_on: r.get("retryOn").and_then(Value::as_str).map(String::from),
    });
    if !why.is_empty() {
        return Err(why);
    }
    Ok(TrafficRoute {
        name: name.to_string(),
        service: ServiceRef { name: service_name.to_string(), namespace: namespace.to_string() },
        from_clusters: vec![route.from.clone()],
        action,
        outlier_detection: outlier.flatten(),
        retries,
        timeout: main.timeout.clone(),
        matches,
        topology: TopologyChoice::Auto,
        // Taken over in the API it is written in.
        routing: if vs.starts_with("HTTPRoute ") { Routing::GatewayApi } else { Routing::Auto },
        port: None,
        trust_accepted_by: vec![],
        canary: None,
    })
}

/// The second rule of a plan with matches: everything else to the service itself.
fn rest_to_service(rule: &Rule, local_host: &str) -> bool {
    rule.match_spec.is_empty()
        && rule.fault.is_none()
        && matches!(rule.destinations.as_slice(), [d] if d.host == local_host && d.subset.is_none())
}

fn matches(rule: &Rule, why: &mut Vec<String>) -> Vec<RouteMatch> {
    let mut out = Vec::new();
    for m in &rule.match_spec {
        let mut rm = RouteMatch::default();
        for (key, v) in m.as_object().into_iter().flatten() {
            match key.as_str() {
                "headers" => {
                    for (h, cond) in v.as_object().into_iter().flatten() {
                        match string_match(cond) {
                            Some(sm) => {
                                rm.headers.insert(h.clone(), sm);
                            }
                            None => why.push(format!("header {h} is matched by {cond}: a TrafficRoute matches exact, prefix or regex")),
                        }
                    }
                }
                "uri" => match v.get("prefix").and_then(Value::as_str) {
                    Some(p) => rm.path_prefix = Some(p.to_string()),
                    None => why.push(format!("uri is matched by {v}: a TrafficRoute matches a path prefix")),
                },
                "name" => {}
                other => why.push(format!("requests are matched on {other}: a TrafficRoute matches headers and a path prefix")),
            }
        }
        out.push(rm);
    }
    out
}

fn string_match(v: &Value) -> Option<StringMatch> {
    let o = v.as_object()?;
    let (how, value) = o.iter().next()?;
    let value = value.as_str()?.to_string();
    match how.as_str() {
        "exact" => Some(StringMatch::Exact(value)),
        "prefix" => Some(StringMatch::Prefix(value)),
        "regex" => Some(StringMatch::Regex(value)),
        _ => None,
    }
}

fn split(vs: &str, destinations: &[RouteDestination], why: &mut Vec<String>) -> RouteAction {
    let mut out: Vec<super::types::Destination> = Vec::new();
    for d in destinations {
        // A cluster where the host's Service selects no pods gives Istio no endpoints
        // (a per-version Service declared in the caller for Gateway API, say).
        let with_pods: Vec<crate::inventory::routes::Target> = d.targets.iter().filter(|t| t.pods > 0).cloned().collect();
        let targets = if with_pods.is_empty() { d.targets.clone() } else { with_pods };
        match targets.as_slice() {
            [t] if t.cluster != "-" && t.version.is_some() => {
                let version = t.version.clone().unwrap_or_default();
                if out.iter().any(|o| o.cluster == t.cluster && o.version == version) {
                    why.push(format!("{vs} routes to {} {version} twice: a split names each once", t.cluster));
                }
                out.push(super::types::Destination { cluster: t.cluster.clone(), version, weight: d.weight });
            }
            [] => why.push(format!("{vs}: {} resolves to nothing (see meshdeck routes)", d.host)),
            targets => {
                let each: Vec<String> =
                    targets.iter().map(|t| format!("{} {}", t.cluster, t.version.as_deref().unwrap_or("(every version)"))).collect();
                why.push(format!("{vs}: {} goes to {}: a split entry names one cluster and one version", d.host, each.join(", ")));
            }
        }
    }
    let total: u32 = out.iter().map(|d| d.weight).sum();
    if total != 100 && why.is_empty() {
        why.push(format!("{vs}: weights total {total}: a split's weights total 100"));
    }
    RouteAction::Split(out)
}

fn failover_targets(vs: &str, destinations: &[RouteDestination], why: &mut Vec<String>) -> RouteAction {
    let [d] = destinations else {
        why.push(format!("{vs} splits across {} destinations and fails over: a TrafficRoute does one or the other", destinations.len()));
        return RouteAction::Failover(vec![]);
    };
    let mut tiers: BTreeMap<usize, Vec<&crate::inventory::routes::Target>> = BTreeMap::new();
    for t in &d.targets {
        tiers.entry(t.tier.unwrap_or(0)).or_default().push(t);
    }
    let mut out = Vec::new();
    for (tier, ts) in tiers {
        let clusters: Vec<&str> = {
            let mut c: Vec<&str> = ts.iter().map(|t| t.cluster.as_str()).collect();
            c.dedup();
            c
        };
        match (clusters.as_slice(), ts.as_slice()) {
            // A version is the plan's when a subset or a remote mapping picked it; the
            // Service's own endpoints without a subset are every version it has.
            ([c], [t]) if *c != "-" => out.push(FailoverTarget {
                cluster: c.to_string(),
                version: if t.via.is_some() || d.subset.is_some() { t.version.clone() } else { None },
            }),
            // The caller's own tier: its pods of every version, one endpoint each.
            ([c], _) if ts.iter().all(|t| t.via.is_none()) => out.push(FailoverTarget { cluster: c.to_string(), version: None }),
            _ => why.push(format!(
                "{vs}: failover tier {} is {}: a failover tier is one cluster",
                tier + 1,
                ts.iter().map(|t| t.cluster.as_str()).collect::<Vec<_>>().join(" and ")
            )),
        }
    }
    RouteAction::Failover(out)
}

fn outlier_detection(o: &Value, why: &mut Vec<String>) -> Option<OutlierDetection> {
    let errors = o.get("consecutive5xxErrors").or_else(|| o.get("consecutiveErrors")).and_then(Value::as_u64);
    let interval = o.get("interval").and_then(Value::as_str);
    let ejection = o.get("baseEjectionTime").and_then(Value::as_str);
    match (errors, interval, ejection) {
        (Some(e), Some(i), Some(b)) => Some(OutlierDetection {
            consecutive_5xx_errors: e as u32,
            interval: i.to_string(),
            base_ejection_time: b.to_string(),
            max_ejection_percent: o.get("maxEjectionPercent").and_then(Value::as_u64).map(|p| p as u32),
        }),
        _ => {
            why.push(format!("outlier detection {o}: a TrafficRoute sets consecutive5xxErrors, interval and baseEjectionTime together"));
            None
        }
    }
}
