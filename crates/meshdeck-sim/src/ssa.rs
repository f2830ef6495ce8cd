//! Server-side apply: field ownership (`managedFields`), merging an applied
//! configuration into the live object, conflicts between managers.
//! Lists are atomic (what CRDs without list-type markers get); maps merge per key.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

#[derive(Clone, Debug, PartialEq)]
pub struct ManagerEntry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
    /// `status` for a write through the status subresource (a kubelet's, a controller's).
    pub subresource: Option<String>,
}

/// Another manager owns a field the applier sets to a different value.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub manager: String,
    pub operation: String,
    pub time: String,
    pub api_version: String,
    pub field: String,
    pub path: FieldPath,
}

impl Conflict {
    /// How a real server names the other manager: an Apply manager by name, an
    /// Update manager with the apiVersion and time of its write.
    pub fn who(&self) -> String {
        match (self.operation.as_str(), self.time.as_str()) {
            ("Update", "") => format!("\"{}\" using {}", self.manager, self.api_version),
            ("Update", t) => format!("\"{}\" using {} at {t}", self.manager, self.api_version),
            _ => format!("\"{}\"", self.manager),
        }
    }
}

/// `.spec.http`: how conflicts name a field.
pub fn dotted(path: &FieldPath) -> String {
    path.iter().map(|p| format!(".{p}")).collect()
}

/// The fields a configuration sets: its leaves, with lists and empty maps as leaves.
/// At the root only user metadata (labels, annotations) counts; status is not owned.
pub fn owned_fields(obj: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for key in ["labels", "annotations"] {
                    if let Some(sub) = v.get(key) {
                        collect(sub, &mut vec!["metadata".into(), key.into()], &mut out);
                    }
                }
            }
            _ => collect(v, &mut vec![k.clone()], &mut out),
        }
    }
    out
}

fn collect(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(k.clone());
                collect(child, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

pub fn get_path<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, k| cur.get(k))
}

fn remove_path(v: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = &mut *v;
    for k in parents {
        match cur.get_mut(k) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(m) = cur.as_object_mut() {
        m.remove(last);
    }
    // Drop maps the removal emptied, below the top level (a removed route leaves no `{}`).
    if parents.len() > 1 && get_path(v, parents).is_some_and(|p| p.as_object().is_some_and(Map::is_empty)) {
        remove_path(v, parents);
    }
}

/// Deep merge: maps merge key by key, everything else is replaced.
pub fn merge(target: &mut Value, applied: &Value) {
    match (target, applied) {
        (Value::Object(t), Value::Object(a)) => {
            for (k, v) in a {
                match t.get_mut(k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, a) => *t = a.clone(),
    }
}

fn overlaps(a: &FieldPath, b: &FieldPath) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

pub fn read_managers(obj: &Value) -> Vec<ManagerEntry> {
    let Some(list) = obj.pointer("/metadata/managedFields").and_then(Value::as_array) else {
        return vec![];
    };
    list.iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            let mut fields = FieldSet::new();
            if let Some(f) = e.get("fieldsV1") {
                decode(f, &mut vec![], &mut fields);
            }
            let subresource = e.get("subresource").and_then(Value::as_str).map(String::from);
            ManagerEntry {
                manager: s("manager"),
                operation: s("operation"),
                api_version: s("apiVersion"),
                time: s("time"),
                fields,
                subresource,
            }
        })
        .collect()
}

fn decode(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    let Some(m) = v.as_object() else { return };
    let children: Vec<(&String, &Value)> = m.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    // Keyed list entries ("k:", "v:", "i:") written by a real server: own the whole list.
    let keyed = m.keys().any(|k| !k.starts_with("f:") && k != ".");
    if (children.is_empty() || keyed) && !path.is_empty() {
        out.insert(path.clone());
        return;
    }
    for (k, child) in children {
        path.push(k[2..].to_string());
        decode(child, path, out);
        path.pop();
    }
}

/// `fieldsV1` as a real server writes it: an update's maps below the top level carry `"."`
/// (an apply's do not: it owns what it sets, not the maps around it),
/// lists Kubernetes merges by key list their items as `k:{...}` with every field of
/// each item (see `list_key`), other lists are atomic. `obj` gives the values the
/// item keys and the expanded fields come from; without it every field is a leaf.
fn encode(fields: &FieldSet, obj: Option<&Value>, update: bool) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut cur = &mut root;
        let mut at = obj;
        for (depth, k) in path.iter().enumerate() {
            at = at.and_then(|v| v.get(k));
            let last = depth + 1 == path.len();
            let entry = cur.entry(format!("f:{k}")).or_insert_with(|| match (last, at) {
                (true, Some(v)) => expand(k, v, depth + 1),
                // An update owns the maps it made ("."); an apply owns only what it sets.
                (false, Some(Value::Object(_))) if depth >= 1 && update => json!({".": {}}),
                _ => json!({}),
            });
            let Value::Object(next) = entry else { break };
            cur = next;
        }
    }
    Value::Object(root)
}

/// The fields under an owned value `v` (named `name`, at `depth` below the root).
fn expand(name: &str, v: &Value, depth: usize) -> Value {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let mut out = Map::new();
            if depth >= 2 {
                out.insert(".".into(), json!({}));
            }
            for (k, child) in m {
                out.insert(format!("f:{k}"), expand(k, child, depth + 1));
            }
            Value::Object(out)
        }
        Value::Array(items) => match list_key(name, items) {
            Some(keys) => {
                let mut out = Map::new();
                for item in items {
                    let key: Map<String, Value> = keys.iter().filter_map(|k| item.get(*k).map(|v| (k.to_string(), v.clone()))).collect();
                    let mut fields = Map::new();
                    fields.insert(".".into(), json!({}));
                    if let Some(m) = item.as_object() {
                        for (k, child) in m {
                            fields.insert(format!("f:{k}"), expand(k, child, depth + 2));
                        }
                    }
                    out.insert(format!("k:{}", Value::Object(key)), Value::Object(fields));
                }
                Value::Object(out)
            }
            None => json!({}),
        },
        _ => json!({}),
    }
}

/// The merge key of a list Kubernetes merges by key (its `x-kubernetes-list-map-keys`
/// or patch merge key), by the list's field name and its items' shape; None: atomic.
fn list_key(name: &str, items: &[Value]) -> Option<Vec<&'static str>> {
    let has = |k: &str| items.first().is_some_and(|i| i.get(k).is_some());
    Some(match name {
        "containers" | "initContainers" | "ephemeralContainers" | "env" | "volumes" | "imagePullSecrets" => vec!["name"],
        "ports" if has("containerPort") => vec!["containerPort", "protocol"],
        "ports" if has("port") => vec!["port", "protocol"],
        "volumeMounts" => vec!["mountPath"],
        "conditions" if has("type") => vec!["type"],
        "podIPs" => vec!["ip"],
        "ownerReferences" => vec!["uid"],
        _ => return None,
    })
}

pub fn write_managers(obj: &mut Value, managers: &[ManagerEntry]) {
    let list: Vec<Value> = managers
        .iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut entry = json!({
                "manager": m.manager,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": encode(&m.fields, Some(&*obj), m.operation == "Update"),
            });
            if let Some(s) = &m.subresource {
                entry["subresource"] = json!(s);
            }
            entry
        })
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }
}

/// Apply `applied` as `manager`. Returns the new object (managed fields written) or the conflicts.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    api_version: &str,
    force: bool,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let fields = owned_fields(applied);
    let mut managers = live.map(read_managers).unwrap_or_default();
    let mut conflicts = Vec::new();
    if let Some(live) = live {
        for other in managers.iter().filter(|m| !(m.manager == manager && m.operation == "Apply")) {
            for owned in &other.fields {
                for mine in fields.iter().filter(|f| overlaps(f, owned)) {
                    let shorter = if mine.len() <= owned.len() { mine } else { owned };
                    if get_path(applied, shorter) != get_path(live, shorter) {
                        conflicts.push(Conflict {
                            manager: other.manager.clone(),
                            operation: other.operation.clone(),
                            time: other.time.clone(),
                            api_version: other.api_version.clone(),
                            field: dotted(shorter),
                            path: shorter.clone(),
                        });
                    }
                }
            }
        }
    }
    conflicts.dedup();
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    // Forced: the other managers lose the conflicting fields; equal values stay co-owned.
    for m in managers.iter_mut().filter(|m| !(m.manager == manager && m.operation == "Apply")) {
        m.fields.retain(|owned| !conflicts.iter().any(|c| c.manager == m.manager && overlaps(&c.path, owned)));
    }
    let previous: FieldSet =
        managers.iter().find(|m| m.manager == manager && m.operation == "Apply").map(|m| m.fields.clone()).unwrap_or_default();
    let mut result = live.cloned().unwrap_or_else(|| json!({}));
    for gone in previous.difference(&fields) {
        let shared =
            managers.iter().any(|m| !(m.manager == manager && m.operation == "Apply") && m.fields.iter().any(|f| overlaps(f, gone)));
        if !shared {
            remove_path(&mut result, gone);
        }
    }
    let mut body = applied.clone();
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.retain(|k, _| matches!(k.as_str(), "labels" | "annotations" | "name" | "namespace"));
    }
    merge(&mut result, &body);
    let unchanged = previous == fields && live.is_some_and(|l| strip(l) == strip(&result));
    match managers.iter_mut().find(|m| m.manager == manager && m.operation == "Apply") {
        Some(m) => {
            if !unchanged {
                m.time = now.to_string();
            }
            m.fields = fields;
            m.api_version = api_version.to_string();
        }
        None => managers.push(ManagerEntry {
            manager: manager.into(),
            operation: "Apply".into(),
            api_version: api_version.into(),
            time: now.into(),
            fields,
            subresource: None,
        }),
    }
    write_managers(&mut result, &managers);
    Ok(result)
}

/// Record a non-apply write (create, update, patch): the updater owns what it changed.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, api_version: &str, now: &str) {
    let old_fields = old.map(owned_fields).unwrap_or_default();
    let new_fields = owned_fields(new);
    let changed: FieldSet = new_fields.iter().filter(|p| old.is_none_or(|o| get_path(o, p) != get_path(new, p))).cloned().collect();
    let removed: FieldSet = old_fields.difference(&new_fields).cloned().collect();
    // managedFields sent with a write are taken as given (as a real API server does:
    // that is how ownership is handed back); otherwise the live ones carry over.
    let sent = read_managers(new);
    let mut managers = if sent.is_empty() { old.map(read_managers).unwrap_or_default() } else { sent };
    for m in managers.iter_mut() {
        m.fields.retain(|f| !changed.iter().any(|c| overlaps(c, f)) && !removed.contains(f));
    }
    if !changed.is_empty() {
        add_update(&mut managers, manager, None, changed, api_version, now);
    }
    write_managers(new, &managers);
}

/// The Update entry of `manager` (through `subresource`, if any) gains `changed`.
fn add_update(managers: &mut Vec<ManagerEntry>, manager: &str, subresource: Option<&str>, changed: FieldSet, api_version: &str, now: &str) {
    match managers.iter_mut().find(|m| m.manager == manager && m.operation == "Update" && m.subresource.as_deref() == subresource) {
        Some(m) => {
            m.fields.extend(changed);
            m.time = now.into();
        }
        None => managers.push(ManagerEntry {
            manager: manager.into(),
            operation: "Update".into(),
            api_version: api_version.into(),
            time: now.into(),
            fields: changed,
            subresource: subresource.map(String::from),
        }),
    }
}

/// Record a write through the status subresource (a kubelet's or a controller's): its
/// manager owns the status fields it changed, in an entry of its own.
pub fn record_status(old: &Value, new: &mut Value, manager: &str, api_version: &str, now: &str) {
    let mut fields = FieldSet::new();
    if let Some(status) = new.get("status") {
        collect(status, &mut vec!["status".into()], &mut fields);
    }
    let changed: FieldSet = fields.into_iter().filter(|p| get_path(old, p) != get_path(new, p)).collect();
    if changed.is_empty() {
        return;
    }
    let mut managers = read_managers(old);
    for m in managers.iter_mut().filter(|m| m.manager != manager) {
        m.fields.retain(|f| !changed.iter().any(|c| overlaps(c, f)));
    }
    add_update(&mut managers, manager, Some("status"), changed, api_version, now);
    write_managers(new, &managers);
}

/// The object without server-maintained metadata, for "did anything change" checks.
pub fn strip(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in ["managedFields", "resourceVersion", "generation", "creationTimestamp", "uid"] {
            meta.remove(k);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vs(weight: i64) -> Value {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "r", "labels": {"a": "b"}},
               "spec": {"hosts": ["reviews"], "http": [{"route": [{"weight": weight}]}]}})
    }

    #[test]
    fn same_manager_reapplies_and_drops_fields_it_stopped_setting() {
        let first = apply(None, &vs(100), "meshdeck", "v1", false, "t0").expect("create");
        let mut smaller = vs(100);
        smaller["metadata"]["labels"] = json!({});
        let second = apply(Some(&first), &smaller, "meshdeck", "v1", false, "t1").expect("reapply");
        assert!(second.pointer("/metadata/labels/a").is_none());
        assert_eq!(read_managers(&second).len(), 1);
    }

    #[test]
    fn another_manager_conflicts_on_a_different_value_only() {
        let first = apply(None, &vs(100), "meshdeck", "v1", false, "t0").expect("create");
        assert!(apply(Some(&first), &vs(100), "kubectl", "v1", false, "t1").is_ok(), "same value is shared");
        let err = apply(Some(&first), &vs(50), "kubectl", "v1", false, "t1").expect_err("conflict");
        assert_eq!(err[0].manager, "meshdeck");
        assert_eq!(err[0].field, ".spec.http");
        let forced = apply(Some(&first), &vs(50), "kubectl", "v1", true, "t1").expect("force");
        let owners = read_managers(&forced);
        let meshdeck = owners.iter().find(|m| m.manager == "meshdeck").expect("still owns hosts");
        assert!(!meshdeck.fields.contains(&vec!["spec".to_string(), "http".to_string()]));
        assert!(meshdeck.fields.contains(&vec!["spec".to_string(), "hosts".to_string()]), "equal values stay co-owned");
    }

    #[test]
    fn fields_v1_round_trips() {
        let fields = owned_fields(&vs(1));
        let mut obj = vs(1);
        write_managers(
            &mut obj,
            &[ManagerEntry {
                manager: "m".into(),
                operation: "Apply".into(),
                api_version: "v1".into(),
                time: "t".into(),
                fields: fields.clone(),
                subresource: None,
            }],
        );
        assert_eq!(read_managers(&obj)[0].fields, fields);
    }

    #[test]
    fn keyed_lists_are_written_item_by_item_and_read_back_whole() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "env": [{"name": "E", "value": "1"}], "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}});
        let fields = owned_fields(&pod);
        let entry = ManagerEntry {
            manager: "m".into(),
            operation: "Update".into(),
            api_version: "v1".into(),
            time: "t".into(),
            fields: fields.clone(),
            subresource: Some("status".into()),
        };
        write_managers(&mut pod, &[entry]);
        let v1 = &pod["metadata"]["managedFields"][0];
        assert_eq!(v1["subresource"], "status");
        let c = &v1["fieldsV1"]["f:spec"]["f:containers"]["k:{\"name\":\"c\"}"];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:env"]["k:{\"name\":\"E\"}"]["f:value"], json!({}));
        assert_eq!(c["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]["f:containerPort"], json!({}));
        assert_eq!(v1["fieldsV1"]["f:metadata"]["f:labels"]["."], json!({}));
        assert_eq!(read_managers(&pod)[0].fields, fields, "a keyed list is owned whole");
    }
}
