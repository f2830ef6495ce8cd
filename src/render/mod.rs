//! The Istio renderer: plan + inventory → the objects each cluster needs.
//! Pure and deterministic: no I/O, no clock, sorted objects and keys, names
//! derived from the plan. Every render ends with the cross-reference check; a
//! render that fails it is a bug, reported as an error, never a warning.

pub mod access;
pub mod check;
pub mod federation;
pub mod gateway_api;
pub mod shared_discovery;
pub mod trust;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::inventory::{FleetSnapshot, ServicePort};
use crate::plan::{Plan, RouteMatch, TrafficRoute};

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const PLAN_LABEL: &str = "meshdeck.dev/plan";
/// The kind of the plan document an object was rendered from: a plan is its kind and name.
pub const PLAN_KIND_LABEL: &str = "meshdeck.dev/plan-kind";

/// The plan kind that renders an Istio kind: AuthorizationPolicies come from
/// AccessPolicies, everything else from TrafficRoutes.
pub fn plan_kind_of(istio_kind: &str) -> &'static str {
    if istio_kind == "AuthorizationPolicy" { "AccessPolicy" } else { "TrafficRoute" }
}
/// The east-west gateway's mTLS passthrough port.
pub const EASTWEST_PORT: u16 = 15443;

/// Objects per cluster, sorted; plus notes on what Istio cannot express exactly.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RenderedObjects {
    pub clusters: BTreeMap<String, Vec<Value>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Per route, the API it is written in and why: always said beside the objects.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub routing: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RenderError {
    #[error("{0}")]
    Input(String),
    #[error("the render failed its cross-reference check (a meshdeck bug):\n  {}", .0.join("\n  "))]
    CrossReference(Vec<String>),
}

impl RenderedObjects {
    fn add(&mut self, cluster: &str, obj: Value) {
        let list = self.clusters.entry(cluster.to_string()).or_default();
        // Two routes may need the same target-side object; keep one.
        if !list.contains(&obj) {
            list.push(obj);
        }
    }

    /// Does this render label `namespace/service` in `cluster` to use a waypoint
    /// (`gateway_api::use_waypoint`)? Its traffic then goes through one once applied.
    pub fn labels_use_waypoint(&self, cluster: &str, namespace: &str, service: &str) -> bool {
        self.clusters.get(cluster).is_some_and(|objs| {
            objs.iter().any(|o| {
                gateway_api::is_waypoint_infra(o)
                    && o["kind"] == "Service"
                    && o["metadata"]["namespace"] == namespace
                    && o["metadata"]["name"] == service
                    && o.pointer("/metadata/labels").and_then(|l| l.get(crate::inventory::facts::USE_WAYPOINT_LABEL)).is_some()
            })
        })
    }

    pub fn object_count(&self) -> usize {
        self.clusters.values().map(Vec::len).sum()
    }

    /// YAML grouped by cluster: a comment naming the cluster, then its documents.
    pub fn to_yaml(&self) -> String {
        let mut text = String::new();
        for (cluster, objs) in &self.clusters {
            text.push_str(&format!("# cluster: {cluster} ({} objects)\n", objs.len()));
            for o in objs {
                text.push_str("---\n");
                text.push_str(&crate::yaml::to_yaml(o));
            }
        }
        text
    }

    /// `{"clusters": {"cluster1": [...], ...}}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(&serde_json::json!({"clusters": self.clusters})).unwrap_or_default()
    }

    /// Every object of every cluster as `(cluster, object)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.clusters.iter().flat_map(|(c, objs)| objs.iter().map(move |o| (c.as_str(), o)))
    }
}

pub fn api_version(kind: &str) -> &'static str {
    match kind {
        "AuthorizationPolicy" | "PeerAuthentication" => "security.istio.io/v1",
        "HTTPRoute" => gateway_api::HTTP_ROUTE_API_VERSION,
        "Service" => "v1",
        _ => "networking.istio.io/v1",
    }
}

/// An Istio object with meshdeck's labels.
pub fn object(kind: &str, namespace: &str, name: &str, plan: &str, spec: Value) -> Value {
    json!({
        "apiVersion": api_version(kind),
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": {MANAGED_BY: "meshdeck", PLAN_LABEL: plan, PLAN_KIND_LABEL: plan_kind_of(kind)}},
        "spec": spec,
    })
}

/// Render every document of a plan.
pub fn render(plan: &Plan, inv: &FleetSnapshot) -> Result<RenderedObjects, RenderError> {
    let mut out = RenderedObjects::default();
    for route in &plan.routes {
        out.routing.insert(route.name.clone(), routing_line(route, inv));
        if route.routing_in(inv) == crate::plan::Routing::GatewayApi {
            gateway_api::render_route(route, inv, &mut out)?;
        } else if route.uses_shared_discovery(inv) {
            shared_discovery::render_route(route, inv, &mut out)?;
        } else {
            federation::render_route(route, inv, &mut out)?;
        }
    }
    for policy in &plan.access {
        access::render_policy(policy, inv, &mut out)?;
    }
    for objs in out.clusters.values_mut() {
        for o in objs.iter_mut() {
            canonicalize(o);
        }
        objs.sort_by_key(sort_key);
    }
    check::cross_references(&out, inv).map_err(RenderError::CrossReference)?;
    Ok(out)
}

/// `gateway-api (auto: reviews.default is ambient in every calling cluster)`.
fn routing_line(route: &TrafficRoute, inv: &FleetSnapshot) -> String {
    use crate::plan::Routing;
    let chosen = route.routing_in(inv);
    let ambient = |c: &String| {
        inv.service(&route.service.key())
            .and_then(|row| row.clusters.get(c))
            .is_some_and(|p| p.dataplane_mode.as_deref() == Some("ambient"))
    };
    let why = match (route.routing, chosen) {
        (Routing::Auto, Routing::GatewayApi) => format!("auto: ambient in {}", route.from_clusters.join(", ")),
        (Routing::Auto, _) => match route.from_clusters.iter().find(|c| !ambient(c)) {
            Some(c) => format!("auto: not ambient in {c}"),
            None => "auto".to_string(),
        },
        _ => "the plan's choice".to_string(),
    };
    format!("{} ({why})", chosen.as_str())
}

fn sort_key(o: &Value) -> (u8, String, String, String) {
    let kind = o.get("kind").and_then(Value::as_str).unwrap_or("");
    let order = match kind {
        "Gateway" | "Service" => 0,
        "ServiceEntry" => 1,
        "DestinationRule" => 2,
        "VirtualService" | "HTTPRoute" => 3,
        "AuthorizationPolicy" => 4,
        _ => 5,
    };
    let s = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    (order, s("/metadata/namespace"), s("/metadata/name"), s("/apiVersion"))
}

/// Sort every map's keys, so output bytes depend on content only.
pub fn canonicalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let mut entries: Vec<(String, Value)> = std::mem::take(m).into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut sorted = Map::new();
            for (k, mut child) in entries {
                canonicalize(&mut child);
                sorted.insert(k, child);
            }
            *m = sorted;
        }
        Value::Array(items) => items.iter_mut().for_each(canonicalize),
        _ => {}
    }
}

/// What every topology needs to know of the routed service (not the inventory's `ServiceFacts`).
pub struct RoutedService {
    /// The ports routed: the plan's `port`, else every port http routes can carry.
    pub ports: Vec<ServicePort>,
    pub selector: BTreeMap<String, String>,
}

impl RoutedService {
    /// A route destination's port: the one routed port. With several there is none,
    /// and Istio keeps the port the request came on.
    pub fn dest_port(&self) -> Option<u16> {
        match self.ports.as_slice() {
            [one] => Some(one.number),
            _ => None,
        }
    }

    /// ServiceEntry `ports`: each with its name and protocol; `with_target` adds the
    /// pods' port where it differs (for entries whose endpoints are the pods).
    pub fn entry_ports(&self, with_target: bool) -> Value {
        let ports: Vec<Value> = self
            .ports
            .iter()
            .map(|p| {
                let mut v = json!({"number": p.number, "name": port_name(p), "protocol": p.protocol().unwrap_or("HTTP")});
                if with_target && let Some(t) = p.target_port.filter(|t| *t != p.number) {
                    v["targetPort"] = json!(t);
                }
                v
            })
            .collect();
        Value::Array(ports)
    }

    /// A ServiceEntry endpoint's `ports`: every routed port's name to `to` (the east-west
    /// gateway's port), or to the port's own number.
    pub fn endpoint_ports(&self, to: Option<u16>) -> Value {
        Value::Object(self.ports.iter().map(|p| (port_name(p), json!(to.unwrap_or(p.number)))).collect())
    }
}

/// A port's name in a ServiceEntry: the Service's own, else the protocol's with the number.
fn port_name(p: &ServicePort) -> String {
    if p.name.is_empty() { format!("{}-{}", p.protocol().unwrap_or("HTTP").to_lowercase(), p.number) } else { p.name.clone() }
}

/// A route destination: host, optional subset, and the port when there is one.
pub fn destination(host: &str, subset: Option<&str>, port: Option<u16>) -> Value {
    let mut d = json!({"host": host});
    if let Some(s) = subset {
        d["subset"] = json!(s);
    }
    if let Some(p) = port {
        d["port"] = json!({"number": p});
    }
    d
}

pub fn routed_service(route: &TrafficRoute, inv: &FleetSnapshot, preferred_cluster: &str) -> Result<RoutedService, RenderError> {
    let route_service = &route.service;
    let row =
        inv.service(&route_service.key()).ok_or_else(|| RenderError::Input(format!("{} is not in the inventory", route_service.key())))?;
    let presence = row
        .clusters
        .get(preferred_cluster)
        .or_else(|| row.clusters.values().next())
        .ok_or_else(|| RenderError::Input(format!("{} has no clusters", route_service.key())))?;
    let selector = row
        .clusters
        .values()
        .map(|p| &p.selector)
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| [("app".to_string(), route_service.name.clone())].into());
    // Ports as the Service declares them; an inventory without details (an older file)
    // gives numbers only, taken as HTTP.
    let declared: Vec<ServicePort> = if presence.port_details.is_empty() {
        let numbers = if presence.ports.is_empty() { vec![80] } else { presence.ports.clone() };
        numbers
            .iter()
            .map(|n| ServicePort { number: *n, name: "http".into(), target_port: Some(*n), app_protocol: None })
            .enumerate()
            .map(|(i, mut p)| {
                if i > 0 {
                    p.name = format!("http-{}", p.number);
                }
                p
            })
            .collect()
    } else {
        presence.port_details.clone()
    };
    let ports: Vec<ServicePort> = match route.port {
        Some(n) => declared.iter().filter(|p| p.number == n).cloned().collect(),
        None => declared.iter().filter(|p| p.routes_http()).cloned().collect(),
    };
    let list = || declared.iter().map(|p| format!("{}/{}", p.number, p.protocol().unwrap_or("unknown"))).collect::<Vec<_>>().join(", ");
    if ports.is_empty() {
        return Err(RenderError::Input(match route.port {
            Some(n) => format!("{} has no port {n} in {preferred_cluster} (its ports: {})", route_service.key(), list()),
            None => format!("{} has no port that HTTP routes can carry (its ports: {})", route_service.key(), list()),
        }));
    }
    if let Some(p) = ports.iter().find(|p| !p.routes_http()) {
        return Err(RenderError::Input(format!(
            "port {} of {} is {}: meshdeck renders HTTP routes, which Istio does not apply to it",
            p.number,
            route_service.key(),
            p.protocol().unwrap_or("unknown")
        )));
    }
    Ok(RoutedService { ports, selector })
}

pub fn version_label(inv: &FleetSnapshot, cluster: &str) -> String {
    inv.cluster(cluster).map(|c| c.version_label.clone()).filter(|l| !l.is_empty()).unwrap_or_else(|| "version".into())
}

/// The cluster id `caller`'s istiod labels `target`'s endpoints with (see
/// `FleetSnapshot::cluster_id_from`); unknown is an error, not a guess: a subset on a
/// wrong id selects nothing.
pub fn cluster_id(inv: &FleetSnapshot, caller: &str, target: &str) -> Result<String, RenderError> {
    inv.cluster_id_from(caller, target).ok_or_else(|| {
        RenderError::Input(format!(
            "the Istio cluster id of {target} as {caller} sees it is not known (no istiod CLUSTER_ID seen in {target}, no remote secret in {caller} names it)"
        ))
    })
}

/// `match` conditions in VirtualService form.
fn http_match(m: &RouteMatch) -> Value {
    let mut out = Map::new();
    if !m.headers.is_empty() {
        let headers: Map<String, Value> = m.headers.iter().map(|(h, sm)| (h.clone(), sm.to_value())).collect();
        out.insert("headers".into(), Value::Object(headers));
    }
    if let Some(p) = &m.path_prefix {
        out.insert("uri".into(), json!({"prefix": p}));
    }
    Value::Object(out)
}

/// The VirtualService's http routes: the plan's route (matched, if the plan says so),
/// then for matched plans a last route that keeps other requests on the local Service.
pub fn http_routes(route: &TrafficRoute, destinations: Vec<Value>, port: Option<u16>) -> Value {
    let mut main = Map::new();
    main.insert("name".into(), json!(route.name));
    if !route.matches.is_empty() {
        main.insert("match".into(), Value::Array(route.matches.iter().map(http_match).collect()));
    }
    main.insert("route".into(), Value::Array(destinations));
    if let Some(r) = &route.retries {
        main.insert("retries".into(), r.to_value());
    }
    if let Some(t) = &route.timeout {
        main.insert("timeout".into(), json!(t));
    }
    let mut routes = vec![Value::Object(main)];
    if !route.matches.is_empty() {
        routes.push(json!({"name": "default", "route": [{"destination": destination(&route.service.local_host(), None, port)}]}));
    }
    Value::Array(routes)
}

/// The calling cluster's VirtualService for `host`, named after the plan.
pub fn virtual_service(route: &TrafficRoute, host: &str, destinations: Vec<Value>, port: Option<u16>) -> Value {
    object(
        "VirtualService",
        &route.service.namespace,
        &route.name,
        &route.name,
        json!({"hosts": [host], "http": http_routes(route, destinations, port)}),
    )
}

pub fn outlier(route: &TrafficRoute) -> Option<Value> {
    route.outlier_detection.as_ref().map(|o| o.to_value())
}

/// Write each object to `DIR/<cluster>/<kind>-<namespace>-<name>.yaml`.
pub fn file_name(obj: &Value) -> String {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    format!("{}-{}-{}.yaml", s("/kind").to_lowercase(), s("/metadata/namespace"), s("/metadata/name"))
}
