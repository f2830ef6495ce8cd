//! `application/json;as=Table` responses: the columns `kubectl get` prints,
//! per built-in kind, and a CRD's `additionalPrinterColumns`.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::resources::ResourceType;

/// How much of each object a Table row carries (`includeObject`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

struct Col {
    name: &'static str,
    ty: &'static str,
    priority: i64,
}

const fn col(name: &'static str, ty: &'static str, priority: i64) -> Col {
    Col { name, ty, priority }
}

fn builtin_columns(kind: &str) -> Option<Vec<Col>> {
    Some(match kind {
        "Pod" => vec![
            col("Name", "string", 0),
            col("Ready", "string", 0),
            col("Status", "string", 0),
            col("Restarts", "string", 0),
            col("Age", "string", 0),
            col("IP", "string", 1),
            col("Node", "string", 1),
        ],
        "Service" => vec![
            col("Name", "string", 0),
            col("Type", "string", 0),
            col("Cluster-IP", "string", 0),
            col("External-IP", "string", 0),
            col("Port(s)", "string", 0),
            col("Age", "string", 0),
            col("Selector", "string", 1),
        ],
        "Deployment" => vec![
            col("Name", "string", 0),
            col("Ready", "string", 0),
            col("Up-to-date", "integer", 0),
            col("Available", "integer", 0),
            col("Age", "string", 0),
            col("Containers", "string", 1),
            col("Images", "string", 1),
            col("Selector", "string", 1),
        ],
        "Namespace" => vec![col("Name", "string", 0), col("Status", "string", 0), col("Age", "string", 0)],
        "ConfigMap" => vec![col("Name", "string", 0), col("Data", "integer", 0), col("Age", "string", 0)],
        "Secret" => vec![col("Name", "string", 0), col("Type", "string", 0), col("Data", "integer", 0), col("Age", "string", 0)],
        "Endpoints" => vec![col("Name", "string", 0), col("Endpoints", "string", 0), col("Age", "string", 0)],
        "ServiceAccount" => vec![col("Name", "string", 0), col("Secrets", "integer", 0), col("Age", "string", 0)],
        "CustomResourceDefinition" => vec![col("Name", "string", 0), col("Created At", "date", 0)],
        _ => return None,
    })
}

pub fn table(rt: &ResourceType, objects: &[&Value], rv: u64, include: IncludeObject, headers: bool, now: DateTime<Utc>) -> Value {
    let (defs, rows): (Vec<Value>, Vec<Value>) = if let Some(cols) = builtin_columns(&rt.kind) {
        let defs = cols
            .iter()
            .map(|c| json!({"name": c.name, "type": c.ty, "format": if c.name == "Name" {"name"} else {""}, "description": "", "priority": c.priority}))
            .collect();
        let rows = objects.iter().map(|o| row(builtin_cells(&rt.kind, o, now), o, include)).collect();
        (defs, rows)
    } else {
        let mut defs = vec![json!({"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0})];
        for c in &rt.printer_columns {
            defs.push(json!({"name": c.name, "type": c.kind, "format": "", "description": c.description, "priority": c.priority}));
        }
        let has_age = rt.printer_columns.iter().any(|c| c.json_path == ".metadata.creationTimestamp");
        if !has_age {
            defs.push(json!({"name": "Age", "type": "date", "format": "", "description": "", "priority": 0}));
        }
        let rows = objects
            .iter()
            .map(|o| {
                let mut cells = vec![json!(name(o))];
                for c in &rt.printer_columns {
                    let v = json_path(o, &c.json_path);
                    cells.push(match (c.kind.as_str(), v) {
                        ("date", Some(Value::String(ts))) => json!(age(ts, now)),
                        (_, Some(Value::String(s))) => json!(s),
                        (_, Some(Value::Null)) | (_, None) => json!(""),
                        (_, Some(other)) if other.is_array() || other.is_object() => {
                            json!(other.to_string())
                        }
                        (_, Some(other)) => other.clone(),
                    });
                }
                if !has_age {
                    cells.push(json!(age(created(o), now)));
                }
                row(cells, o, include)
            })
            .collect();
        (defs, rows)
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": if headers { Value::Array(defs) } else { json!([]) },
        "rows": rows,
    })
}

fn row(cells: Vec<Value>, o: &Value, include: IncludeObject) -> Value {
    let object = match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => o.clone(),
        IncludeObject::Metadata => {
            let mut meta = o.get("metadata").cloned().unwrap_or(json!({}));
            if let Some(m) = meta.as_object_mut() {
                m.remove("managedFields");
            }
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
        }
    };
    json!({"cells": cells, "object": object})
}

fn name(o: &Value) -> &str {
    o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}

fn created(o: &Value) -> &str {
    o.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or("")
}

fn s<'a>(o: &'a Value, p: &str) -> &'a str {
    o.pointer(p).and_then(Value::as_str).unwrap_or("")
}

fn builtin_cells(kind: &str, o: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let age = age(created(o), now);
    match kind {
        "Pod" => {
            let statuses = o.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
            let total = o.pointer("/spec/containers").and_then(Value::as_array).map_or(0, Vec::len);
            let ready = statuses.iter().filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true)).count();
            let restarts: i64 = statuses.iter().filter_map(|c| c.get("restartCount").and_then(Value::as_i64)).sum();
            let phase = if o.pointer("/metadata/deletionTimestamp").is_some() { "Terminating" } else { s(o, "/status/phase") };
            let ip = s(o, "/status/podIP");
            let node = s(o, "/spec/nodeName");
            vec![
                json!(name(o)),
                json!(format!("{ready}/{total}")),
                json!(phase),
                json!(restarts.to_string()),
                json!(age),
                json!(if ip.is_empty() { "<none>" } else { ip }),
                json!(if node.is_empty() { "<none>" } else { node }),
            ]
        }
        "Service" => {
            let ports: Vec<String> = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let port = p.get("port").map(|v| v.to_string()).unwrap_or_default();
                            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                            match p.get("nodePort") {
                                Some(np) => format!("{port}:{np}/{proto}"),
                                None => format!("{port}/{proto}"),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let external: Vec<&str> = o
                .pointer("/status/loadBalancer/ingress")
                .and_then(Value::as_array)
                .map(|is| is.iter().filter_map(|i| i.get("ip").or_else(|| i.get("hostname")).and_then(Value::as_str)).collect())
                .unwrap_or_default();
            let typ = s(o, "/spec/type");
            let ext = if !external.is_empty() {
                external.join(",")
            } else if typ == "LoadBalancer" {
                "<pending>".into()
            } else {
                "<none>".into()
            };
            let selector = o
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
                .filter(|x| !x.is_empty())
                .unwrap_or_else(|| "<none>".into());
            let ip = s(o, "/spec/clusterIP");
            vec![
                json!(name(o)),
                json!(typ),
                json!(if ip.is_empty() { "<none>" } else { ip }),
                json!(ext),
                json!(if ports.is_empty() { "<none>".to_string() } else { ports.join(",") }),
                json!(age),
                json!(selector),
            ]
        }
        "Deployment" => {
            let n = |p: &str| o.pointer(p).and_then(Value::as_i64).unwrap_or(0);
            let containers = o.pointer("/spec/template/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
            let names: Vec<&str> = containers.iter().filter_map(|c| c.get("name").and_then(Value::as_str)).collect();
            let images: Vec<&str> = containers.iter().filter_map(|c| c.get("image").and_then(Value::as_str)).collect();
            let selector = o
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            vec![
                json!(name(o)),
                json!(format!("{}/{}", n("/status/readyReplicas"), n("/spec/replicas"))),
                json!(n("/status/updatedReplicas")),
                json!(n("/status/availableReplicas")),
                json!(age),
                json!(names.join(",")),
                json!(images.join(",")),
                json!(selector),
            ]
        }
        "Namespace" => vec![json!(name(o)), json!(s(o, "/status/phase")), json!(age)],
        "ConfigMap" => vec![json!(name(o)), json!(o.get("data").and_then(Value::as_object).map_or(0, |m| m.len())), json!(age)],
        "Secret" => {
            vec![json!(name(o)), json!(s(o, "/type")), json!(o.get("data").and_then(Value::as_object).map_or(0, |m| m.len())), json!(age)]
        }
        "Endpoints" => {
            let mut eps = Vec::new();
            for subset in o.get("subsets").and_then(Value::as_array).into_iter().flatten() {
                let ports: Vec<i64> = subset
                    .get("ports")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.get("port").and_then(Value::as_i64))
                    .collect();
                for a in subset.get("addresses").and_then(Value::as_array).into_iter().flatten() {
                    let ip = a.get("ip").and_then(Value::as_str).unwrap_or("");
                    for p in &ports {
                        eps.push(format!("{ip}:{p}"));
                    }
                }
            }
            let shown = if eps.is_empty() {
                "<none>".to_string()
            } else if eps.len() > 3 {
                format!("{} + {} more...", eps[..3].join(","), eps.len() - 3)
            } else {
                eps.join(",")
            };
            vec![json!(name(o)), json!(shown), json!(age)]
        }
        "ServiceAccount" => vec![json!(name(o)), json!(o.get("secrets").and_then(Value::as_array).map_or(0, Vec::len)), json!(age)],
        "CustomResourceDefinition" => vec![json!(name(o)), json!(created(o))],
        _ => vec![json!(name(o)), json!(age)],
    }
}

/// The `.a.b[0].c` subset of JSONPath that printer columns use.
fn json_path<'a>(o: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = o;
    for part in path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        cur = cur.get(key)?;
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

/// kubectl's short durations: 45s, 3m20s, 12m, 5h3m, 3d4h, 40d.
pub fn age(ts: &str, now: DateTime<Utc>) -> String {
    let Ok(t) = DateTime::parse_from_rfc3339(ts) else {
        return "<unknown>".into();
    };
    let secs = (now - t.with_timezone(&Utc)).num_seconds().max(0);
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86400);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{m}m{}s", s % 60),
        s if s < 3 * 3600 => format!("{m}m"),
        s if s < 8 * 3600 => format!("{h}h{}m", m % 60),
        s if s < 48 * 3600 => format!("{h}h"),
        s if s < 8 * 86400 => format!("{d}d{}h", h % 24),
        _ => format!("{d}d"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z").expect("ts").with_timezone(&Utc);
        assert_eq!(age("2026-01-01T23:59:15Z", now), "45s");
        assert_eq!(age("2026-01-01T23:56:40Z", now), "3m20s");
        assert_eq!(age("2026-01-01T19:00:00Z", now), "5h0m");
        assert_eq!(age("2025-12-29T20:00:00Z", now), "3d4h");
    }
}
