//! The kinds a simulated cluster serves: the built-in core/apps/rbac kinds and
//! whatever CustomResourceDefinitions are installed, with their schemas.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::schema::Schema;

/// One served resource type at one group/version.
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// Only create (access reviews) or the full CRUD set.
    pub verbs: Vec<&'static str>,
    /// Structural schema of the whole object, when the kind has one.
    pub schema: Option<Arc<Schema>>,
    /// `additionalPrinterColumns` of a CRD version: (name, type, jsonPath, priority).
    pub printer_columns: Vec<PrinterColumn>,
    /// The storage key: every served version of a kind shares one store.
    pub storage: StorageKey,
    /// Versions of the same group are listed in discovery; this one is preferred.
    pub preferred: bool,
    /// Kinds that are not stored (SelfSubjectAccessReview).
    pub virtual_only: bool,
    /// Serves a `/status` subresource (listed in discovery).
    pub status_subresource: bool,
    /// The version objects are stored in (discovery's storageVersionHash).
    pub storage_version: String,
}

#[derive(Clone, Debug)]
pub struct PrinterColumn {
    pub name: String,
    pub kind: String,
    pub json_path: String,
    pub priority: i64,
    pub description: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageKey {
    pub group: String,
    pub plural: String,
}

/// What discovery publishes so clients can tell a storage migration happened:
/// the first 8 bytes of sha256("group/storageVersion/Kind"), base64.
fn storage_version_hash(group: &str, version: &str, kind: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{group}/{version}/{kind}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&d[..8])
}

impl ResourceType {
    /// A kind the API server itself defines (not a CRD's).
    pub fn builtin(&self) -> bool {
        matches!(self.group.as_str(), "" | "apps" | "apiextensions.k8s.io" | "authorization.k8s.io")
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `pods`, or `virtualservices.networking.istio.io`: how Status messages name a resource.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }
}

const CRUD: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool, short: &[&str]) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        kind: kind.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: vec![],
        verbs: CRUD.to_vec(),
        schema: None,
        printer_columns: vec![],
        storage: StorageKey { group: group.into(), plural: plural.into() },
        preferred: true,
        virtual_only: false,
        status_subresource: matches!(kind, "Namespace" | "Service" | "Pod" | "Deployment" | "CustomResourceDefinition"),
        storage_version: version.into(),
    }
}

/// Every resource type a cluster serves, indexed for path lookup.
#[derive(Clone, Debug, Default)]
pub struct ResourceRegistry {
    /// (group, version, plural) → type.
    by_path: BTreeMap<(String, String, String), ResourceType>,
}

impl ResourceRegistry {
    pub fn with_builtins() -> Self {
        let mut reg = Self::default();
        let all = [
            builtin("", "v1", "Namespace", "namespaces", false, &["ns"]),
            builtin("", "v1", "Service", "services", true, &["svc"]),
            builtin("", "v1", "Endpoints", "endpoints", true, &["ep"]),
            builtin("", "v1", "Pod", "pods", true, &["po"]),
            builtin("", "v1", "ConfigMap", "configmaps", true, &["cm"]),
            builtin("", "v1", "Secret", "secrets", true, &[]),
            builtin("", "v1", "ServiceAccount", "serviceaccounts", true, &["sa"]),
            builtin("apps", "v1", "Deployment", "deployments", true, &["deploy"]),
            builtin("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false, &["crd", "crds"]),
        ];
        for mut rt in all {
            if rt.kind == "Endpoints" {
                rt.singular = "endpoints".into();
            }
            if matches!(rt.kind.as_str(), "Pod" | "Service" | "Deployment") {
                rt.categories = vec!["all".into()];
            }
            reg.insert(rt);
        }
        let mut ssar = builtin("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", false, &[]);
        ssar.verbs = vec!["create"];
        ssar.virtual_only = true;
        reg.insert(ssar);
        reg
    }

    pub fn insert(&mut self, rt: ResourceType) {
        self.by_path.insert((rt.group.clone(), rt.version.clone(), rt.plural.clone()), rt);
    }

    pub fn get(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.by_path.get(&(group.to_string(), version.to_string(), plural.to_string()))
    }

    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.by_path.values()
    }

    /// Stop serving every version of `plural` in `group`.
    pub fn remove_kind(&mut self, group: &str, plural: &str) {
        self.by_path.retain(|(g, _, p), _| !(g == group && p == plural));
    }

    /// Drop every version served for a CRD's group and plural.
    pub fn remove_storage(&mut self, key: &StorageKey) {
        self.by_path.retain(|_, rt| &rt.storage != key);
    }

    /// The group's versions in preference order (the CRD storage version first).
    pub fn group_versions(&self, group: &str) -> Vec<String> {
        let mut versions: Vec<(bool, String)> =
            self.by_path.values().filter(|rt| rt.group == group).map(|rt| (!rt.preferred, rt.version.clone())).collect();
        versions.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| version_rank(&b.1).cmp(&version_rank(&a.1))));
        versions.dedup_by(|a, b| a.1 == b.1);
        let mut out: Vec<String> = Vec::new();
        for (_, v) in versions {
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    }

    pub fn groups(&self) -> Vec<String> {
        let mut groups: Vec<String> = self.by_path.values().map(|rt| rt.group.clone()).filter(|g| !g.is_empty()).collect();
        groups.sort();
        groups.dedup();
        groups
    }

    /// Turn a CRD object into the resource types it serves. Errors are 422 messages.
    pub fn types_from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
        let spec = crd.get("spec").ok_or("spec: Required value")?;
        let group = str_at(spec, &["group"]).ok_or("spec.group: Required value")?;
        let names = spec.get("names").ok_or("spec.names: Required value")?;
        let plural = str_at(names, &["plural"]).ok_or("spec.names.plural: Required value")?;
        let kind = str_at(names, &["kind"]).ok_or("spec.names.kind: Required value")?;
        let singular = str_at(names, &["singular"]).map(str::to_string).unwrap_or_else(|| kind.to_lowercase());
        let namespaced = str_at(spec, &["scope"]).unwrap_or("Namespaced") == "Namespaced";
        let expected = format!("{plural}.{group}");
        let name = str_at(crd, &["metadata", "name"]).unwrap_or_default();
        if name != expected {
            return Err(format!("metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"));
        }
        let list = |key: &str| -> Vec<String> {
            names
                .get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default()
        };
        let versions = spec.get("versions").and_then(Value::as_array).ok_or("spec.versions: Required value")?;
        let storage_version = versions
            .iter()
            .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .and_then(|v| str_at(v, &["name"]))
            .unwrap_or_default()
            .to_string();
        let mut out = Vec::new();
        for v in versions {
            let vname = str_at(v, &["name"]).ok_or("spec.versions[].name: Required value")?;
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let schema = match v.pointer("/schema/openAPIV3Schema") {
                Some(s) => Some(Arc::new(Schema::compile(s).map_err(|e| format!("spec.versions[{vname}].schema: {e}"))?)),
                None => None,
            };
            let printer_columns = v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|cols| {
                    cols.iter()
                        .map(|c| PrinterColumn {
                            name: str_at(c, &["name"]).unwrap_or_default().to_string(),
                            kind: str_at(c, &["type"]).unwrap_or("string").to_string(),
                            json_path: str_at(c, &["jsonPath"]).unwrap_or_default().to_string(),
                            priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                            description: str_at(c, &["description"]).unwrap_or_default().to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(ResourceType {
                group: group.into(),
                version: vname.into(),
                kind: kind.into(),
                plural: plural.into(),
                singular: singular.clone(),
                namespaced,
                short_names: list("shortNames"),
                categories: list("categories"),
                verbs: CRUD.to_vec(),
                schema,
                printer_columns,
                storage: StorageKey { group: group.into(), plural: plural.into() },
                preferred: v.get("storage").and_then(Value::as_bool).unwrap_or(false),
                virtual_only: false,
                status_subresource: v.pointer("/subresources/status").is_some(),
                storage_version: storage_version.clone(),
            });
        }
        Ok(out)
    }

    /// `APIResourceList` for one group/version, as `kubectl api-resources` reads it.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let resources: Vec<Value> = self
            .by_path
            .values()
            .filter(|rt| rt.group == group && rt.version == version)
            .map(|rt| {
                let mut r = json!({
                    "name": rt.plural,
                    "singularName": rt.singular,
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": rt.verbs,
                });
                if !rt.short_names.is_empty() {
                    r["shortNames"] = json!(rt.short_names);
                }
                if !rt.categories.is_empty() {
                    r["categories"] = json!(rt.categories);
                }
                if !rt.virtual_only {
                    r["storageVersionHash"] = json!(storage_version_hash(&rt.group, &rt.storage_version, &rt.kind));
                }
                let mut out = vec![r];
                if rt.status_subresource {
                    out.push(json!({"name": format!("{}/status", rt.plural), "singularName": "", "namespaced": rt.namespaced,
                                    "kind": rt.kind, "verbs": ["get", "patch", "update"]}));
                }
                out
            })
            .collect::<Vec<Vec<Value>>>()
            .concat();
        if resources.is_empty() {
            return None;
        }
        let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
    }

    pub fn api_group(&self, group: &str) -> Option<Value> {
        let versions = self.group_versions(group);
        let first = versions.first()?;
        let vs: Vec<Value> = versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
        Some(json!({
            "name": group,
            "versions": vs,
            "preferredVersion": {"groupVersion": format!("{group}/{first}"), "version": first},
        }))
    }

    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self.groups().iter().filter_map(|g| self.api_group(g)).collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }
}

/// v1 > v1beta2 > v1beta1 > v1alpha1, as Kubernetes orders versions.
fn version_rank(v: &str) -> (u32, u32, u32) {
    let rest = v.trim_start_matches('v');
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let major = digits.parse().unwrap_or(0);
    let tail = &rest[digits.len()..];
    let (stage, minor) = if let Some(m) = tail.strip_prefix("beta") {
        (1, m.parse().unwrap_or(0))
    } else if let Some(m) = tail.strip_prefix("alpha") {
        (0, m.parse().unwrap_or(0))
    } else {
        (2, 0)
    };
    (stage, major, minor)
}

pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_rank_like_kubernetes() {
        let mut vs = vec!["v1alpha3", "v1", "v1beta1"];
        vs.sort_by_key(|v| std::cmp::Reverse(version_rank(v)));
        assert_eq!(vs, ["v1", "v1beta1", "v1alpha3"]);
    }

    #[test]
    fn builtins_list_pods_with_short_name() {
        let reg = ResourceRegistry::with_builtins();
        let list = reg.resource_list("", "v1").expect("core group");
        let pods = list["resources"].as_array().expect("array").iter().find(|r| r["name"] == "pods").expect("pods");
        assert_eq!(pods["shortNames"][0], "po");
        assert!(reg.get("apps", "v1", "deployments").is_some());
    }
}
