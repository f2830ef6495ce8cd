//! Gateway API's mesh routes as Istio reads them: an HTTPRoute (or GRPCRoute) whose
//! parent is a Service is, to the callers, a VirtualService for that Service's host
//! (Istio's gateway conversion, `pilot/pkg/config/kube/gateway`): its rules in order,
//! each match as a match (a gRPC method as the path `/<service>/<method>`), each
//! backend Service as a destination with its weight (Gateway API's default weight
//! is 1), the request timeout as the timeout. Filters are not modelled.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use super::super::model::{FleetSnapshot, IstioObject};

/// The snapshot with each HTTPRoute on a Service also as the VirtualService Istio makes of it.
pub(super) fn with_mesh_routes(snap: &FleetSnapshot) -> Cow<'_, FleetSnapshot> {
    let derived: Vec<IstioObject> = snap
        .istio_objects
        .iter()
        .filter(|o| super::super::facts::is_mesh_route(&o.kind) && !o.hosts.is_empty())
        .map(as_virtual_service)
        .collect();
    if derived.is_empty() {
        return Cow::Borrowed(snap);
    }
    let mut s = snap.clone();
    s.istio_objects.extend(derived);
    Cow::Owned(s)
}

fn as_virtual_service(o: &IstioObject) -> IstioObject {
    let spec: Value = serde_json::from_str(&o.spec).unwrap_or(Value::Null);
    let ns = o.namespace.as_str();
    let grpc = o.kind == "GRPCRoute";
    let http: Vec<Value> = spec
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|rule| {
            let backends: Vec<&Value> = rule
                .get("backendRefs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|b| b.get("group").and_then(Value::as_str).unwrap_or("").is_empty())
                .filter(|b| b.get("kind").and_then(Value::as_str).unwrap_or("Service") == "Service")
                .collect();
            let single = backends.len() == 1;
            let route: Vec<Value> = backends
                .iter()
                .map(|b| {
                    let name = b.get("name").and_then(Value::as_str).unwrap_or("");
                    let b_ns = b.get("namespace").and_then(Value::as_str).unwrap_or(ns);
                    let mut d = json!({"destination": {"host": format!("{name}.{b_ns}.svc.cluster.local")}});
                    if let Some(p) = b.get("port") {
                        d["destination"]["port"] = json!({"number": p});
                    }
                    if !single {
                        d["weight"] = b.get("weight").cloned().unwrap_or(json!(1));
                    }
                    d
                })
                .collect();
            let mut out = Map::new();
            if let Some(name) = rule.get("name") {
                out.insert("name".into(), name.clone());
            }
            let matches: Vec<Value> =
                rule.get("matches").and_then(Value::as_array).into_iter().flatten().map(|m| as_match(m, grpc)).collect();
            // The API server's default match (path prefix `/`) takes every request: no match.
            let every = matches.iter().any(|m| *m == json!({"uri": {"prefix": "/"}}));
            if !matches.is_empty() && !every {
                out.insert("match".into(), Value::Array(matches));
            }
            out.insert("route".into(), Value::Array(route));
            if let Some(t) = rule.pointer("/timeouts/request") {
                out.insert("timeout".into(), t.clone());
            }
            Value::Object(out)
        })
        .collect();
    IstioObject {
        kind: "VirtualService".into(),
        spec: json!({"hosts": o.hosts, "http": http}).to_string().into(),
        read_from: Some(o.kind.clone()),
        subsets: Default::default(),
        unresolved: Vec::new(),
        ..o.clone()
    }
}

/// An HTTPRoute (or GRPCRoute) match as a VirtualService match.
fn as_match(m: &Value, grpc: bool) -> Value {
    let mut out = Map::new();
    if grpc {
        if let Some(uri) = m.get("method").and_then(grpc_method) {
            out.insert("uri".into(), uri);
        }
    } else if let Some(p) = m.get("path") {
        let value = p.get("value").cloned().unwrap_or(json!("/"));
        let how = match p.get("type").and_then(Value::as_str).unwrap_or("PathPrefix") {
            "Exact" => "exact",
            "RegularExpression" => "regex",
            _ => "prefix",
        };
        out.insert("uri".into(), json!({how: value}));
    }
    let headers: Map<String, Value> = m
        .get("headers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|h| {
            let how = if h.get("type").and_then(Value::as_str) == Some("RegularExpression") { "regex" } else { "exact" };
            Some((h.get("name")?.as_str()?.to_lowercase(), json!({how: h.get("value")?})))
        })
        .collect();
    if !headers.is_empty() {
        out.insert("headers".into(), Value::Object(headers));
    }
    if let Some(method) = m.get("method").filter(|_| !grpc) {
        out.insert("method".into(), json!({"exact": method}));
    }
    Value::Object(out)
}

/// A gRPC method match as the path match Istio makes of it (`createGRPCURIMatch`):
/// gRPC's path is `/<service>/<method>`.
fn grpc_method(m: &Value) -> Option<Value> {
    let service = m.get("service").and_then(Value::as_str);
    let method = m.get("method").and_then(Value::as_str);
    let regex = m.get("type").and_then(Value::as_str) == Some("RegularExpression");
    Some(match (service, method, regex) {
        (None, None, _) => return None,
        (Some(s), None, false) => json!({"prefix": format!("/{s}/")}),
        (Some(s), None, true) => json!({"regex": format!("/{s}/.+")}),
        (None, Some(m), _) => json!({"regex": format!("/[^/]+/{m}")}),
        (Some(s), Some(m), false) => json!({"exact": format!("/{s}/{m}")}),
        (Some(s), Some(m), true) => json!({"regex": format!("/{s}/{m}")}),
    })
}
