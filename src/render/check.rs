//! The cross-reference check run on every render: within each cluster, every
//! route's host resolves (a ServiceEntry rendered there, or a Service the
//! inventory sees there), every subset is defined by a DestinationRule for that
//! host, weights sum to 100, every Gateway's hosts are served and its gateway
//! exists, every HTTPRoute's parent and backends are Services there, and every
//! object carries meshdeck's labels (a waypoint's: no plan's).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{MANAGED_BY, PLAN_LABEL, RenderedObjects, gateway_api};
use crate::inventory::FleetSnapshot;

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

pub fn cross_references(out: &RenderedObjects, inv: &FleetSnapshot) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for (cluster, objs) in &out.clusters {
        let mut hosts: BTreeSet<String> = inv
            .services
            .iter()
            .filter(|r| r.clusters.contains_key(cluster))
            .map(|r| format!("{}.{}.svc.cluster.local", r.name, r.namespace))
            .collect();
        let mut subsets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for o in objs {
            let spec = o.get("spec");
            match o.get("kind").and_then(Value::as_str) {
                Some("ServiceEntry") => hosts.extend(strings(spec.and_then(|s| s.get("hosts")))),
                Some("Service") => {
                    let s = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
                    hosts.insert(format!("{}.{}.svc.cluster.local", s("/metadata/name"), s("/metadata/namespace")));
                }
                Some("DestinationRule") => {
                    let host = spec.and_then(|s| s.get("host")).and_then(Value::as_str).unwrap_or("").to_string();
                    let names = spec
                        .and_then(|s| s.get("subsets"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.get("name").and_then(Value::as_str).map(String::from));
                    subsets.entry(host).or_default().extend(names);
                }
                _ => {}
            }
            let labels = o.pointer("/metadata/labels");
            let name = o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?");
            let managed = labels.and_then(|l| l.get(MANAGED_BY)).and_then(Value::as_str) == Some("meshdeck");
            let planned = labels.and_then(|l| l.get(PLAN_LABEL)).is_some();
            if gateway_api::is_waypoint_infra(o) {
                // No plan's (never pruned); a Service's label patch marks nothing else as meshdeck's.
                let patch = o.get("kind").and_then(Value::as_str) == Some("Service");
                if planned || managed == patch {
                    problems.push(format!("{cluster}: {name} is a waypoint's and must carry no plan's labels"));
                }
            } else if !managed || !planned {
                problems.push(format!("{cluster}: {name} lacks meshdeck's labels"));
            }
        }
        for o in objs {
            let kind = o.get("kind").and_then(Value::as_str).unwrap_or("");
            let name = o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?");
            let spec = o.get("spec").cloned().unwrap_or_default();
            match kind {
                "VirtualService" => {
                    for h in strings(spec.get("hosts")) {
                        if !hosts.contains(&h) {
                            problems.push(format!("{cluster}: VirtualService {name} host {h} resolves to no Service or ServiceEntry"));
                        }
                    }
                    for http in spec.get("http").and_then(Value::as_array).into_iter().flatten() {
                        let routes = http.get("route").and_then(Value::as_array).cloned().unwrap_or_default();
                        let mut sum = 0;
                        for r in &routes {
                            let host = r.pointer("/destination/host").and_then(Value::as_str).unwrap_or("");
                            if !hosts.contains(host) {
                                problems.push(format!(
                                    "{cluster}: VirtualService {name} routes to {host}, which resolves to no Service or ServiceEntry"
                                ));
                            }
                            if let Some(subset) = r.pointer("/destination/subset").and_then(Value::as_str)
                                && !subsets.get(host).is_some_and(|s| s.contains(subset))
                            {
                                problems.push(format!(
                                    "{cluster}: VirtualService {name} uses subset {subset} of {host}, defined by no DestinationRule there"
                                ));
                            }
                            sum += r.get("weight").and_then(Value::as_u64).unwrap_or(0);
                        }
                        if routes.len() > 1 && sum != 100 {
                            problems.push(format!("{cluster}: VirtualService {name} weights sum to {sum}"));
                        }
                    }
                }
                "Gateway" if !gateway_api::is_waypoint_infra(o) => {
                    if inv.cluster(cluster).and_then(|c| c.mesh.east_west_gateway.as_ref()).is_none() {
                        problems.push(format!("{cluster}: Gateway {name} selects an east-west gateway the cluster does not have"));
                    }
                    for server in spec.get("servers").and_then(Value::as_array).into_iter().flatten() {
                        for h in strings(server.get("hosts")) {
                            if !hosts.contains(&h) {
                                problems.push(format!("{cluster}: Gateway {name} serves {h}, which no ServiceEntry there defines"));
                            }
                        }
                    }
                }
                "HTTPRoute" => {
                    let ns = o.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
                    let fqdn = |r: &Value| format!("{}.{ns}.svc.cluster.local", r.get("name").and_then(Value::as_str).unwrap_or(""));
                    for parent in spec.get("parentRefs").and_then(Value::as_array).into_iter().flatten() {
                        if !hosts.contains(&fqdn(parent)) {
                            problems.push(format!("{cluster}: HTTPRoute {name}'s parent {} is no Service there", fqdn(parent)));
                        }
                    }
                    for rule in spec.get("rules").and_then(Value::as_array).into_iter().flatten() {
                        let refs = rule.get("backendRefs").and_then(Value::as_array).cloned().unwrap_or_default();
                        for r in &refs {
                            if !hosts.contains(&fqdn(r)) {
                                problems.push(format!("{cluster}: HTTPRoute {name} sends to {}, which is no Service there", fqdn(r)));
                            }
                            if r.get("port").is_none() {
                                problems.push(format!("{cluster}: HTTPRoute {name}'s backend {} has no port", fqdn(r)));
                            }
                        }
                        let sum: u64 = refs.iter().map(|r| r.get("weight").and_then(Value::as_u64).unwrap_or(1)).sum();
                        if refs.len() > 1 && sum != 100 {
                            problems.push(format!("{cluster}: HTTPRoute {name} weights sum to {sum}"));
                        }
                    }
                }
                "ServiceEntry" => {
                    let has_endpoints = spec.get("endpoints").and_then(Value::as_array).is_some_and(|e| !e.is_empty());
                    let has_selector = spec.pointer("/workloadSelector/labels").and_then(Value::as_object).is_some_and(|l| !l.is_empty());
                    if has_endpoints == has_selector {
                        problems.push(format!("{cluster}: ServiceEntry {name} needs exactly one of endpoints or workloadSelector"));
                    }
                }
                _ => {}
            }
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems) }
}
