//! Personas: who may route what. A policy file (`policy.yaml` in the config
//! directory) names personas, how they are recognised (kubeconfig user or
//! context), and what each may do. A plan outside the persona's rights is
//! refused before any cluster is touched, naming the rule that refused it.
//!
//! ```yaml
//! personas:
//!   - name: bookinfo-team
//!     match: { users: [cluster1-restricted], contexts: [] }
//!     routeFrom: [{ clusters: [cluster1], namespaces: [default] }]
//!     routeTo:   [{ clusters: [cluster1, cluster2], services: ["reviews.default", "ratings.*"] }]
//!     accessPolicies: false
//!     trust: false          # may change the root of trust (`meshdeck trust`)
//! ```
//! Without a policy file every plan is allowed (persona `unrestricted`).

use std::path::Path;

use serde::Deserialize;

use crate::plan::{Plan, RouteAction};

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyFile {
    #[serde(default)]
    pub personas: Vec<Persona>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Persona {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matches: PersonaMatch,
    #[serde(default)]
    pub route_from: Vec<FromRule>,
    #[serde(default)]
    pub route_to: Vec<ToRule>,
    #[serde(default)]
    pub access_policies: bool,
    /// May change the root of trust: Istio's `cacerts` Secrets (`meshdeck trust`).
    #[serde(default)]
    pub trust: bool,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PersonaMatch {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub contexts: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FromRule {
    pub clusters: Vec<String>,
    #[serde(default)]
    pub namespaces: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ToRule {
    pub clusters: Vec<String>,
    #[serde(default)]
    pub services: Vec<String>,
}

/// `*` matches anything; `ratings.*` any namespace; an empty list matches everything.
fn matches(patterns: &[String], value: &str) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|p| p == "*" || p == value || p.strip_suffix('*').is_some_and(|prefix| value.starts_with(prefix)))
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PolicyError {
    #[error("{0}")]
    File(String),
    #[error("no persona matches (contexts: {contexts}; users: {users}); choose one with --as-persona")]
    NoPersona { contexts: String, users: String },
    #[error("unknown persona {0:?}")]
    UnknownPersona(String),
    #[error("persona {persona} refuses {plan}: {reason}")]
    Refused { persona: String, plan: String, reason: String },
}

impl PolicyFile {
    pub fn load(dir: Option<&Path>) -> Result<Option<Self>, PolicyError> {
        let Some(path) = dir.map(|d| d.join("policy.yaml")) else { return Ok(None) };
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_saphyr::from_str(&text).map(Some).map_err(|e| {
                let e = crate::yaml::YamlError::from(e);
                PolicyError::File(format!("{}:{}:{}: {}", path.display(), e.line, e.column, e.message))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PolicyError::File(format!("{}: {e}", path.display()))),
        }
    }

    /// The persona named, or the first whose users or contexts include one of ours.
    pub fn persona(&self, explicit: Option<&str>, contexts: &[String], users: &[String]) -> Result<&Persona, PolicyError> {
        if let Some(name) = explicit {
            return self.personas.iter().find(|p| p.name == name).ok_or_else(|| PolicyError::UnknownPersona(name.into()));
        }
        self.personas
            .iter()
            .find(|p| p.matches.contexts.iter().any(|c| contexts.contains(c)) || p.matches.users.iter().any(|u| users.contains(u)))
            .ok_or_else(|| PolicyError::NoPersona { contexts: contexts.join(","), users: users.join(",") })
    }
}

impl Persona {
    pub fn unrestricted() -> Self {
        Persona {
            name: "unrestricted".into(),
            route_from: vec![],
            route_to: vec![],
            access_policies: true,
            trust: true,
            matches: PersonaMatch::default(),
        }
    }

    fn refuse(&self, plan: &str, reason: String) -> PolicyError {
        PolicyError::Refused { persona: self.name.clone(), plan: plan.into(), reason }
    }

    fn may_route_from(&self, cluster: &str, ns: &str) -> bool {
        self.name == "unrestricted" || self.route_from.iter().any(|r| matches(&r.clusters, cluster) && matches(&r.namespaces, ns))
    }

    fn may_route_to(&self, cluster: &str, service: &str) -> bool {
        self.name == "unrestricted" || self.route_to.iter().any(|r| matches(&r.clusters, cluster) && matches(&r.services, service))
    }

    fn describe_to(&self) -> String {
        self.route_to
            .iter()
            .enumerate()
            .map(|(i, r)| format!("routeTo[{i}] allows clusters [{}] services [{}]", r.clusters.join(", "), r.services.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Check a whole plan; the first refusal names the plan document and the rule.
    pub fn check(&self, plan: &Plan) -> Result<(), PolicyError> {
        for r in &plan.routes {
            for from in &r.from_clusters {
                if !self.may_route_from(from, &r.service.namespace) {
                    let rules: Vec<String> = self
                        .route_from
                        .iter()
                        .enumerate()
                        .map(|(i, f)| {
                            format!("routeFrom[{i}] allows clusters [{}] namespaces [{}]", f.clusters.join(", "), f.namespaces.join(", "))
                        })
                        .collect();
                    return Err(self.refuse(
                        &r.name,
                        format!(
                            "may not route from {from} in namespace {} ({})",
                            r.service.namespace,
                            if rules.is_empty() { "no routeFrom rules".into() } else { rules.join("; ") }
                        ),
                    ));
                }
            }
            let targets: Vec<&str> = match &r.action {
                RouteAction::Split(ds) => ds.iter().map(|d| d.cluster.as_str()).collect(),
                RouteAction::Failover(ts) => ts.iter().map(|t| t.cluster.as_str()).collect(),
            };
            for to in targets {
                if !self.may_route_to(to, &r.service.key()) {
                    return Err(self.refuse(
                        &r.name,
                        format!(
                            "may not route {} to {to} ({})",
                            r.service.key(),
                            if self.route_to.is_empty() { "no routeTo rules".into() } else { self.describe_to() }
                        ),
                    ));
                }
            }
        }
        for a in &plan.access {
            if !self.access_policies {
                return Err(self.refuse(&a.name, "may not write AccessPolicies (accessPolicies: false)".into()));
            }
            let clusters: Vec<&str> = a.allow_from.iter().map(|c| c.cluster.as_str()).collect();
            if let Some(c) = clusters.iter().find(|c| !self.may_route_to(c, &a.service.key())) {
                return Err(self.refuse(&a.name, format!("may not set access for {} in {c} ({})", a.service.key(), self.describe_to())));
            }
        }
        Ok(())
    }
}

/// The persona for a run against `clusters`: none configured means unrestricted.
impl Persona {
    /// May this persona create, change or delete an object of `kind` in `cluster` and
    /// `namespace`? Routing objects live where the persona routes from or to; an
    /// AuthorizationPolicy also needs `accessPolicies`.
    pub fn may_write(&self, cluster: &str, namespace: &str, kind: &str) -> bool {
        if kind == "Secret" || kind == "Deployment" {
            // Secrets meshdeck writes are CAs, and the Deployment is istiod (restarted to
            // read them): a trust right, in istio-system only.
            return self.trust && namespace == "istio-system";
        }
        if self.name == "unrestricted" {
            return true;
        }
        let in_namespace =
            |pattern: &String| pattern == "*" || pattern.rsplit_once('.').is_some_and(|(_, ns)| ns == namespace || ns == "*");
        let routes_here = self.may_route_from(cluster, namespace)
            || self
                .route_to
                .iter()
                .any(|r| matches(&r.clusters, cluster) && (r.services.is_empty() || r.services.iter().any(in_namespace)));
        routes_here && (kind != "AuthorizationPolicy" || self.access_policies)
    }

    /// Refuse one write: `verb` (create, update, delete) of `kind/namespace/name` in
    /// `cluster`, unless this persona may write there. Every object a change creates,
    /// changes or deletes (prunes and rollbacks included) is asked (`apply::pipeline`).
    pub fn check_write(&self, what: &str, verb: &str, cluster: &str, namespace: &str, kind: &str, name: &str) -> Result<(), PolicyError> {
        if self.may_write(cluster, namespace, kind) {
            Ok(())
        } else {
            Err(self.refuse(what, format!("may not {verb} {kind}/{namespace}/{name} in {cluster}")))
        }
    }
}

pub fn persona_for(
    clusters: &[crate::registry::Cluster],
    explicit: Option<&str>,
    config_dir: Option<&Path>,
) -> Result<Persona, PolicyError> {
    let Some(file) = PolicyFile::load(config_dir)? else {
        return match explicit {
            Some(name) => Err(PolicyError::File(format!("--as-persona {name}: there is no policy.yaml in the config directory"))),
            None => Ok(Persona::unrestricted()),
        };
    };
    let contexts: Vec<String> = clusters.iter().map(|c| c.context.name.clone()).collect();
    let users: Vec<String> = clusters.iter().map(|c| c.context.user.clone()).collect();
    file.persona(explicit, &contexts, &users).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Destination, ServiceRef, TopologyChoice, TrafficRoute};

    fn plan(to: &str) -> Plan {
        Plan {
            routes: vec![TrafficRoute {
                name: "canary".into(),
                service: ServiceRef { name: "reviews".into(), namespace: "default".into() },
                from_clusters: vec!["cluster1".into()],
                action: RouteAction::Split(vec![Destination { cluster: to.into(), version: "v3".into(), weight: 100 }]),
                outlier_detection: None,
                retries: None,
                timeout: None,
                matches: vec![],
                topology: TopologyChoice::Auto,
                routing: Default::default(),
                port: None,
                trust_accepted_by: Vec::new(),
                canary: None,
            }],
            notes: vec![],
            unseen: Default::default(),
            access: vec![],
        }
    }

    const FILE: &str = "personas:\n  - name: team\n    match: {users: [cluster1-restricted]}\n    routeFrom: [{clusters: [cluster1], namespaces: [default]}]\n    routeTo: [{clusters: [cluster1, cluster2], services: ['reviews.*']}]\n";

    #[test]
    fn a_persona_is_refused_outside_its_clusters_with_the_rule_named() {
        let file: PolicyFile = serde_saphyr::from_str(FILE).expect("parses");
        let p = file.persona(None, &["cluster1".into()], &["cluster1-restricted".into()]).expect("matched by user");
        assert!(p.check(&plan("cluster2")).is_ok());
        let err = p.check(&plan("cluster3")).expect_err("refused").to_string();
        assert_eq!(
            err,
            "persona team refuses canary: may not route reviews.default to cluster3 (routeTo[0] allows clusters [cluster1, cluster2] services [reviews.*])"
        );
        assert!(matches!(file.persona(None, &["x".into()], &["y".into()]), Err(PolicyError::NoPersona { .. })));
        assert!(Persona::unrestricted().check(&plan("cluster3")).is_ok());
    }
}
