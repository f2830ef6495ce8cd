//! A minimal OpenAPI v3 surface: the index of group-versions and, per
//! group-version, each kind's paths and operations with the query parameters
//! the server honours. kubectl reads it to learn that `fieldValidation` is
//! supported, so its default `--validate=strict` runs on the server.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::resources::{ResourceRegistry, ResourceType};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

fn group_versions(reg: &ResourceRegistry) -> Vec<(String, String)> {
    let mut gvs: Vec<(String, String)> = reg.all().map(|rt| (rt.group.clone(), rt.version.clone())).collect();
    gvs.sort();
    gvs.dedup();
    gvs
}

pub fn index(reg: &ResourceRegistry) -> Value {
    let mut paths = Map::new();
    for (g, v) in group_versions(reg) {
        let doc = document(reg, &g, &v).unwrap_or_default();
        let hash = format!("{:X}", Sha256::digest(doc.to_string().as_bytes()));
        let path = gv_path(&g, &v);
        paths.insert(path.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", &hash[..32])}));
    }
    json!({"paths": paths})
}

fn param(name: &str) -> Value {
    json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(rt: &ResourceType, action: &str, params: &[&str]) -> Value {
    json!({
        "operationId": format!("{action}{}", rt.kind),
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
        "parameters": params.iter().map(|p| param(p)).collect::<Vec<_>>(),
        "responses": {"200": {"description": "OK"}},
    })
}

pub fn document(reg: &ResourceRegistry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<&ResourceType> = reg.all().filter(|rt| rt.group == group && rt.version == version).collect();
    if types.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let write = ["dryRun", "fieldManager", "fieldValidation", "pretty"];
    let patch = ["dryRun", "fieldManager", "fieldValidation", "force", "pretty"];
    let list = ["allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit", "resourceVersion", "timeoutSeconds", "watch"];
    let base = format!("/{}", gv_path(group, version));
    for rt in types {
        let collection =
            if rt.namespaced { format!("{base}/namespaces/{{namespace}}/{}", rt.plural) } else { format!("{base}/{}", rt.plural) };
        if rt.virtual_only {
            paths.insert(collection, json!({"post": operation(rt, "post", &write)}));
            continue;
        }
        paths.insert(collection.clone(), json!({"get": operation(rt, "list", &list), "post": operation(rt, "post", &write)}));
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({"get": operation(rt, "get", &[]), "put": operation(rt, "put", &write), "patch": operation(rt, "patch", &patch), "delete": operation(rt, "delete", &["dryRun"])}),
        );
    }
    Some(json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.2"}, "paths": paths, "components": {"schemas": {}}}))
}
