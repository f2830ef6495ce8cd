//! Minimal CustomResourceDefinitions for the Istio kinds and Gateway API's route
//! kinds, used when the sim is started without `--crds` (Gateway API's also when
//! the directory given has none). Written for the sim: they type the fields
//! meshdeck renders and keep the rest open; Istio's real CRDs (`--crds`) and
//! Gateway API's (with their CEL rules, in the real test bed) are stricter.

use serde_json::{Value, json};

fn crd(group: &str, kind: &str, plural: &str, short: &[&str], spec: Value, columns: Value) -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}"), "labels": {"app.kubernetes.io/part-of": "meshdeck-sim"}},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List"),
                      "shortNames": short, "categories": [format!("{}-io", group.split('.').next().unwrap_or(group)), "istio-io"]},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": spec,
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }}},
                "subresources": {"status": {}}
            }]
        }
    })
}

fn open() -> Value {
    json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

fn strings() -> Value {
    json!({"type": "array", "items": {"type": "string"}})
}

fn age() -> Value {
    json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})
}

fn destination() -> Value {
    json!({"type": "object", "required": ["host"], "properties": {
        "host": {"type": "string"}, "subset": {"type": "string"},
        "port": {"type": "object", "properties": {"number": {"type": "integer", "minimum": 0, "maximum": 4294967295u64}}}
    }})
}

fn subsets() -> Value {
    json!({"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "trafficPolicy": open()
    }}})
}

pub fn minimal_crds() -> Vec<Value> {
    let mut crds = istio_crds();
    crds.extend(gateway_api_crds());
    crds
}

fn istio_crds() -> Vec<Value> {
    let route = json!({"type": "array", "items": {"type": "object", "required": ["destination"], "properties": {
        "destination": destination(),
        "weight": {"type": "integer", "format": "int32", "minimum": 0, "maximum": 100},
        "headers": open()
    }}});
    let http = json!({"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
        "name": {"type": "string"}, "match": {"type": "array", "items": open()}, "route": route,
        "retries": open(), "timeout": {"type": "string"}, "fault": open(), "mirror": destination()
    }}});
    vec![
        crd(
            "networking.istio.io",
            "VirtualService",
            "virtualservices",
            &["vs"],
            json!({"type": "object", "properties": {"hosts": strings(), "gateways": strings(), "exportTo": strings(), "http": http,
                   "tls": {"type": "array", "items": open()}, "tcp": {"type": "array", "items": open()}}}),
            json!([{"name": "Gateways", "type": "string", "jsonPath": ".spec.gateways"}, {"name": "Hosts", "type": "string", "jsonPath": ".spec.hosts"}, age()]),
        ),
        crd(
            "networking.istio.io",
            "DestinationRule",
            "destinationrules",
            &["dr"],
            json!({"type": "object", "required": ["host"], "properties": {"host": {"type": "string"}, "subsets": subsets(), "trafficPolicy": open(), "exportTo": strings(), "workloadSelector": open()}}),
            json!([{"name": "Host", "type": "string", "jsonPath": ".spec.host"}, age()]),
        ),
        crd(
            "networking.istio.io",
            "ServiceEntry",
            "serviceentries",
            &["se"],
            json!({"type": "object", "required": ["hosts"], "properties": {
                "hosts": strings(), "addresses": strings(), "exportTo": strings(),
                "location": {"type": "string", "enum": ["MESH_EXTERNAL", "MESH_INTERNAL"]},
                "resolution": {"type": "string", "enum": ["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"]},
                "ports": {"type": "array", "items": {"type": "object", "required": ["number", "name"], "properties": {
                    "number": {"type": "integer", "minimum": 1, "maximum": 4294967295u64}, "name": {"type": "string"},
                    "protocol": {"type": "string"}, "targetPort": {"type": "integer"}}}},
                "endpoints": {"type": "array", "items": {"type": "object", "properties": {
                    "address": {"type": "string"}, "ports": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "network": {"type": "string"}, "locality": {"type": "string"}, "weight": {"type": "integer"}}}},
                "workloadSelector": {"type": "object", "properties": {"labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "subjectAltNames": strings()}}),
            json!([{"name": "Hosts", "type": "string", "jsonPath": ".spec.hosts"}, {"name": "Location", "type": "string", "jsonPath": ".spec.location"}, {"name": "Resolution", "type": "string", "jsonPath": ".spec.resolution"}, age()]),
        ),
        crd(
            "networking.istio.io",
            "Gateway",
            "gateways",
            &["gw"],
            json!({"type": "object", "properties": {
                "selector": {"type": "object", "additionalProperties": {"type": "string"}},
                "servers": {"type": "array", "items": {"type": "object", "required": ["port", "hosts"], "properties": {
                    "port": {"type": "object", "required": ["number", "protocol", "name"], "properties": {
                        "number": {"type": "integer", "minimum": 0, "maximum": 4294967295u64}, "protocol": {"type": "string"}, "name": {"type": "string"}, "targetPort": {"type": "integer"}}},
                    "hosts": strings(), "bind": {"type": "string"}, "name": {"type": "string"},
                    "tls": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
                        "mode": {"type": "string", "enum": ["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"]}}}}}}}}),
            json!([age()]),
        ),
        crd("networking.istio.io", "Sidecar", "sidecars", &[], open(), json!([age()])),
        crd("networking.istio.io", "WorkloadEntry", "workloadentries", &["we"], open(), json!([age()])),
        crd(
            "security.istio.io",
            "AuthorizationPolicy",
            "authorizationpolicies",
            &["ap"],
            json!({"type": "object", "properties": {
                "action": {"type": "string", "enum": ["ALLOW", "DENY", "AUDIT", "CUSTOM"]},
                "selector": {"type": "object", "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}},
                "rules": {"type": "array", "items": {"type": "object", "properties": {
                    "from": {"type": "array", "items": {"type": "object", "properties": {"source": {"type": "object", "properties": {
                        "principals": strings(), "notPrincipals": strings(), "namespaces": strings(), "notNamespaces": strings(),
                        "ipBlocks": strings(), "requestPrincipals": strings()}}}}},
                    "to": {"type": "array", "items": open()}, "when": {"type": "array", "items": open()}}}},
                "targetRef": open(), "targetRefs": {"type": "array", "items": open()}, "provider": open()}}),
            json!([{"name": "Action", "type": "string", "jsonPath": ".spec.action"}, age()]),
        ),
        crd("security.istio.io", "PeerAuthentication", "peerauthentications", &["pa"], open(), json!([age()])),
    ]
}

/// A Gateway API kind at `v1` (standard channel), in the `gateway-api` category;
/// Gateway and HTTPRoute also at `v1beta1`, served and not stored, as the standard
/// channel's CRDs serve them (v1.6.0).
fn gateway_api_crd(kind: &str, plural: &str, short: &[&str], spec: Value, columns: Value) -> Value {
    let mut c = crd(GATEWAY_API_GROUP, kind, plural, short, spec, columns);
    c["spec"]["names"]["categories"] = json!(["gateway-api"]);
    if kind != "GRPCRoute"
        && let Some(versions) = c["spec"]["versions"].as_array_mut()
    {
        let mut beta = versions[0].clone();
        beta["name"] = json!("v1beta1");
        beta["storage"] = json!(false);
        versions.push(beta);
    }
    c
}

pub const GATEWAY_API_GROUP: &str = "gateway.networking.k8s.io";

/// Gateway API's `Gateway`, `HTTPRoute` and `GRPCRoute`: what mesh routing (a route
/// whose parent is a Service) and waypoints need.
pub fn gateway_api_crds() -> Vec<Value> {
    let parent_refs = json!({"type": "array", "maxItems": 32, "items": {"type": "object", "required": ["name"], "properties": {
        "group": {"type": "string"}, "kind": {"type": "string"}, "namespace": {"type": "string"}, "name": {"type": "string", "minLength": 1},
        "sectionName": {"type": "string"}, "port": {"type": "integer", "minimum": 1, "maximum": 65535}}}});
    let backend_refs = json!({"type": "array", "maxItems": 16, "items": {"type": "object", "required": ["name"], "properties": {
        "group": {"type": "string"}, "kind": {"type": "string"}, "namespace": {"type": "string"}, "name": {"type": "string", "minLength": 1},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535}, "weight": {"type": "integer", "minimum": 0, "maximum": 1000000},
        "filters": {"type": "array", "items": open()}}}});
    let route_spec = |rules: Value| json!({"type": "object", "properties": {"parentRefs": parent_refs, "hostnames": strings(), "rules": {"type": "array", "maxItems": 16, "items": rules}}});
    let http_rule = json!({"type": "object", "properties": {
        "name": {"type": "string"}, "matches": {"type": "array", "maxItems": 64, "items": open()}, "filters": {"type": "array", "items": open()},
        "backendRefs": backend_refs, "timeouts": {"type": "object", "properties": {"request": {"type": "string"}, "backendRequest": {"type": "string"}}},
        "retry": open(), "sessionPersistence": open()}});
    let grpc_rule = json!({"type": "object", "properties": {
        "name": {"type": "string"}, "matches": {"type": "array", "items": open()}, "filters": {"type": "array", "items": open()}, "backendRefs": backend_refs}});
    let hostnames = json!({"name": "Hostnames", "type": "string", "jsonPath": ".spec.hostnames"});
    vec![
        gateway_api_crd(
            "Gateway",
            "gateways",
            &["gtw"],
            json!({"type": "object", "required": ["gatewayClassName", "listeners"], "properties": {
                "gatewayClassName": {"type": "string", "minLength": 1},
                "listeners": {"type": "array", "minItems": 1, "maxItems": 64, "items": {"type": "object", "required": ["name", "port", "protocol"], "properties": {
                    "name": {"type": "string"}, "hostname": {"type": "string"}, "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                    "protocol": {"type": "string"}, "tls": open(), "allowedRoutes": open()}}},
                "addresses": {"type": "array", "items": open()}, "infrastructure": open()}}),
            json!([{"name": "Class", "type": "string", "jsonPath": ".spec.gatewayClassName"},
                   {"name": "Address", "type": "string", "jsonPath": ".status.addresses[*].value"},
                   {"name": "Programmed", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Programmed\")].status"}, age()]),
        ),
        gateway_api_crd("HTTPRoute", "httproutes", &[], route_spec(http_rule), json!([hostnames.clone(), age()])),
        gateway_api_crd("GRPCRoute", "grpcroutes", &[], route_spec(grpc_rule), json!([hostnames, age()])),
    ]
}
