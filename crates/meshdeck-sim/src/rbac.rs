//! Bearer-token users and the small RBAC the sim enforces: enough for personas,
//! `kubectl auth can-i` and 403s that read like a real cluster's.

use serde_json::{Value, json};

#[derive(Clone, Debug)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub groups: Vec<String>,
    pub resources: Vec<String>,
    /// Empty: every namespace and cluster-scoped resources.
    pub namespaces: Vec<String>,
}

impl Rule {
    fn new(verbs: &[&str], groups: &[&str], resources: &[&str], namespaces: &[&str]) -> Self {
        let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        Self { verbs: v(verbs), groups: v(groups), resources: v(resources), namespaces: v(namespaces) }
    }

    fn allows(&self, verb: &str, group: &str, resource: &str, ns: Option<&str>) -> bool {
        let any = |list: &[String], x: &str| list.iter().any(|i| i == "*" || i == x);
        any(&self.verbs, verb)
            && any(&self.groups, group)
            && any(&self.resources, resource)
            && (self.namespaces.is_empty() || ns.is_some_and(|n| any(&self.namespaces, n)))
    }
}

#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub token: String,
    pub rules: Vec<Rule>,
}

impl User {
    pub fn admin(token: String) -> Self {
        Self { name: "admin".into(), token, rules: vec![Rule::new(&["*"], &["*"], &["*"], &[])] }
    }

    /// Reads everything; writes Istio networking objects (routes) in `namespace` only:
    /// a team that may route but not set access policies.
    pub fn restricted(token: String, namespace: &str) -> Self {
        Self {
            name: "restricted".into(),
            token,
            rules: vec![
                Rule::new(&["get", "list", "watch"], &["*"], &["*"], &[]),
                Rule::new(&["create"], &["authorization.k8s.io"], &["selfsubjectaccessreviews"], &[]),
                Rule::new(&["create", "update", "patch", "delete", "deletecollection"], &["networking.istio.io"], &["*"], &[namespace]),
            ],
        }
    }

    /// Reads and routes in `namespace` and nowhere else: a team's namespace-scoped rights.
    pub fn team(token: String, namespace: &str) -> Self {
        Self {
            name: "team".into(),
            token,
            rules: vec![
                Rule::new(&["get", "list", "watch"], &["*"], &["*"], &[namespace]),
                Rule::new(&["create"], &["authorization.k8s.io"], &["selfsubjectaccessreviews"], &[]),
                Rule::new(&["create", "update", "patch", "delete", "deletecollection"], &["networking.istio.io"], &["*"], &[namespace]),
            ],
        }
    }

    /// Reads everything; creates and changes Istio objects in `namespace` but may not
    /// delete them: a change it makes could not be undone, so preflight must refuse it.
    pub fn nodelete(token: String, namespace: &str) -> Self {
        Self {
            name: "nodelete".into(),
            token,
            rules: vec![
                Rule::new(&["get", "list", "watch"], &["*"], &["*"], &[]),
                Rule::new(&["create"], &["authorization.k8s.io"], &["selfsubjectaccessreviews"], &[]),
                Rule::new(&["create", "update", "patch"], &["networking.istio.io", "security.istio.io"], &["*"], &[namespace]),
            ],
        }
    }

    pub fn can(&self, verb: &str, group: &str, resource: &str, ns: Option<&str>) -> bool {
        self.rules.iter().any(|r| r.allows(verb, group, resource, ns))
    }
}

pub fn forbidden_message(user: &str, verb: &str, group: &str, resource: &str, name: Option<&str>, ns: Option<&str>) -> String {
    let base = resource.split('/').next().unwrap_or(resource);
    let qualified = if group.is_empty() { base.to_string() } else { format!("{base}.{group}") };
    let what = match name {
        Some(n) => format!("{qualified} \"{n}\""),
        None => qualified,
    };
    let scope = match ns {
        Some(n) => format!("in the namespace \"{n}\""),
        None => "at the cluster scope".into(),
    };
    format!("{what} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}")
}

/// Answer a SelfSubjectAccessReview body for `user`.
pub fn review(user: &User, body: &Value) -> Value {
    let attrs = body.pointer("/spec/resourceAttributes").cloned().unwrap_or(json!({}));
    let s = |k: &str| attrs.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let ns = s("namespace");
    let allowed = user.can(&s("verb"), &s("group"), &s("resource"), if ns.is_empty() { None } else { Some(&ns) });
    let mut out = body.clone();
    out["apiVersion"] = json!("authorization.k8s.io/v1");
    out["kind"] = json!("SelfSubjectAccessReview");
    out["status"] = if allowed {
        json!({"allowed": true, "reason": format!("RBAC: allowed for user \"{}\"", user.name)})
    } else {
        json!({"allowed": false})
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_user_writes_istio_objects_in_its_namespace_only() {
        let u = User::restricted("t".into(), "default");
        assert!(u.can("list", "", "pods", Some("istio-system")));
        assert!(u.can("patch", "networking.istio.io", "virtualservices", Some("default")));
        assert!(!u.can("patch", "networking.istio.io", "gateways", Some("istio-system")));
        assert!(!u.can("delete", "", "pods", Some("default")));
        assert!(!u.can("patch", "security.istio.io", "authorizationpolicies", Some("default")), "routes, not access");
        assert_eq!(
            forbidden_message("restricted", "delete", "", "pods", Some("p"), Some("default")),
            "pods \"p\" is forbidden: User \"restricted\" cannot delete resource \"pods\" in API group \"\" in the namespace \"default\""
        );
    }
}
