//! Fleet analysis (`meshdeck analyze`): every fleet check as a finding with a code
//! of meshdeck's own, a severity, the clusters involved, istioctl's nearest code
//! where there is one, and a one-line fix. Pure over a snapshot, like the warnings
//! it builds on; across clusters is where istioctl, which judges one at a time,
//! cannot look.

use serde::Serialize;

use super::model::{ClusterState, ClusterView, FleetSnapshot};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub code: String,
    pub severity: Severity,
    /// istioctl analyze's nearest message, where one exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub istio_code: Option<&'static str>,
    pub clusters: Vec<String>,
    /// The service it is about (`name.namespace`), when it is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub message: String,
    pub fix: &'static str,
}

/// One code of the catalogue: what it means to an operator.
pub struct Check {
    pub code: &'static str,
    pub severity: Severity,
    pub istio_code: Option<&'static str>,
    pub fix: &'static str,
}

/// Every code `analyze` reports (README, "Analyze", lists the same).
pub const CATALOGUE: &[Check] = &[
    Check {
        code: "UNREACHABLE",
        severity: Severity::Error,
        istio_code: None,
        fix: "check the cluster's API server, network path and credentials (meshdeck clusters shows the error)",
    },
    Check {
        code: "UNPRUNED",
        severity: Severity::Warning,
        istio_code: None,
        fix: "the next apply or rollback that reaches the cluster removes them (its diff shows each one); `meshdeck history` names the change",
    },
    Check {
        code: "ALIAS_MISMATCH",
        severity: Severity::Error,
        istio_code: None,
        fix: "fix the kubeconfig: contexts with one server URL and CA reach different clusters",
    },
    Check {
        code: "ROOT_MISMATCH",
        severity: Severity::Error,
        istio_code: None,
        fix: "one root for every cluster: `meshdeck trust plan --generate-root KEYFILE` (Istio's \"plug in CA certificates\"), then restart istiod",
    },
    Check {
        code: "DUP_TRUST_DOMAIN",
        severity: Severity::Error,
        istio_code: None,
        fix: "give each independent mesh its own meshConfig.trustDomain",
    },
    Check {
        code: "DUP_CLUSTER_ID",
        severity: Severity::Error,
        istio_code: None,
        fix: "give each cluster's istiod its own CLUSTER_ID (values.global.multiCluster.clusterName)",
    },
    Check {
        code: "NO_EASTWEST",
        severity: Severity::Error,
        istio_code: None,
        fix: "install an east-west gateway with an external address (Istio's multi-network install)",
    },
    Check {
        code: "MULTI_OWNER",
        severity: Severity::Error,
        istio_code: Some("IST0109"),
        fix: "keep one VirtualService per host: meshdeck apply --replace PLAN, or remove the hand-written one",
    },
    Check {
        code: "SUBSET_NO_PODS",
        severity: Severity::Error,
        istio_code: Some("IST0173"),
        fix: "match the subset's labels to running pods (or to the cluster that runs them), or route elsewhere: requests get 503",
    },
    Check {
        code: "SUBSET_UNDEFINED",
        severity: Severity::Error,
        istio_code: Some("IST0101"),
        fix: "define the subset in a DestinationRule for the host in that cluster, or route without it",
    },
    Check {
        code: "HOST_UNKNOWN",
        severity: Severity::Error,
        istio_code: Some("IST0101"),
        fix: "route to a host that exists: a Service in the fleet, or a ServiceEntry host in the calling cluster",
    },
    Check {
        code: "NOT_EXPOSED",
        severity: Severity::Error,
        istio_code: None,
        fix: "give the target cluster a ServiceEntry mapping the host to its workloads and an AUTO_PASSTHROUGH Gateway for it (meshdeck renders both)",
    },
    Check {
        code: "CALLER_DENIED",
        severity: Severity::Error,
        istio_code: None,
        fix: "allow the caller's principal (spiffe://<caller trust domain>/ns/<ns>/sa/<account>) in the target's AuthorizationPolicy (an AccessPolicy plan)",
    },
    Check {
        code: "NO_ENDPOINTS",
        severity: Severity::Error,
        istio_code: None,
        fix: "run the service's pods where the caller can reach them, or route elsewhere: requests get 503",
    },
    Check {
        code: "TLS_CONFLICT",
        severity: Severity::Error,
        istio_code: None,
        fix: "let the DestinationRule's tls mode match the target's PeerAuthentication (ISTIO_MUTUAL, or leave tls out for auto mTLS)",
    },
    Check {
        code: "MTLS_MISMATCH",
        severity: Severity::Warning,
        istio_code: None,
        fix: "give every cluster the same mesh-wide PeerAuthentication mode (istio-system), or know why one differs",
    },
    Check {
        code: "GATEWAY_NO_PODS",
        severity: Severity::Warning,
        istio_code: Some("IST0101"),
        fix: "match the Gateway's selector to the gateway pods' labels (istio: eastwestgateway for an east-west gateway), or install the gateway",
    },
    Check {
        code: "REMOTE_SECRET_MISSING",
        severity: Severity::Warning,
        istio_code: None,
        fix: "create the missing remote secret (istioctl create-remote-secret) so both primaries see each other's endpoints",
    },
    Check {
        code: "REMOTE_SECRET_STALE",
        severity: Severity::Warning,
        istio_code: None,
        fix: "delete the remote secret of a cluster that is gone, or register the cluster here",
    },
    Check {
        code: "ROUTE_WEIGHTS",
        severity: Severity::Warning,
        istio_code: None,
        fix: "make the weights of each rule total 100, so the split reads as what it does",
    },
    Check {
        code: "ENDPOINT_UNKNOWN",
        severity: Severity::Warning,
        istio_code: None,
        fix: "point the endpoint at a registered cluster's east-west gateway address (meshdeck clusters shows them)",
    },
    Check {
        code: "INCONSISTENT_SERVICE",
        severity: Severity::Warning,
        istio_code: Some("IST0170"),
        fix: "declare the Service with the same ports, names and protocols in every cluster",
    },
    Check { code: "ISTIO_SKEW", severity: Severity::Warning, istio_code: None, fix: "upgrade the control planes to one minor version" },
    Check {
        code: "DUP_CLUSTER",
        severity: Severity::Warning,
        istio_code: None,
        fix: "register one of the contexts (config.yaml clusters:)",
    },
    Check {
        code: "NO_ISTIO",
        severity: Severity::Warning,
        istio_code: None,
        fix: "install Istio there, or leave the cluster out (--context)",
    },
    Check {
        code: "NO_VERSION_LABEL",
        severity: Severity::Warning,
        istio_code: None,
        fix: "label the pods with their version (the cluster's version label) so routes can pick them",
    },
    Check {
        code: "MIXED_ROUTING",
        severity: Severity::Warning,
        istio_code: None,
        fix: "route the service in one API: remove one of them, or render the plan with `routing: istio` or `routing: gateway-api`",
    },
    Check {
        code: "WAYPOINT_MISSING",
        severity: Severity::Error,
        istio_code: None,
        fix: "deploy the waypoint in that namespace (istioctl waypoint apply -n NAMESPACE --name WAYPOINT --for service, or a `routing: gateway-api` plan for the service: meshdeck renders it), or label the service with one that is",
    },
    Check {
        code: "WAYPOINT_MISMATCH",
        severity: Severity::Error,
        istio_code: None,
        fix: "deploy a waypoint of one name in every cluster (istioctl waypoint apply --for service) and label the service istio.io/use-waypoint with it",
    },
    Check {
        code: "AMBIENT_REMOTE",
        severity: Severity::Error,
        istio_code: None,
        fix: "run istiod in every cluster (multi-primary), or keep the service out of ambient mode there",
    },
    Check {
        code: "ROUTE_STATUS_LOCAL",
        severity: Severity::Info,
        istio_code: None,
        fix: "nothing to fix in the route: create the backend Service (no pods needed) in the route's cluster if the status must read Accepted",
    },
    Check {
        code: "PARTIAL_SERVICE",
        severity: Severity::Info,
        istio_code: None,
        fix: "nothing, if intended: routes can only use the clusters where the service runs",
    },
];

pub fn check(code: &str) -> Option<&'static Check> {
    CATALOGUE.iter().find(|c| c.code == code)
}

/// An object a change should have removed and could not (its cluster was dark), as
/// history remembers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftBehind {
    pub cluster: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub plans: Vec<String>,
}

/// `UNPRUNED`: per cluster, the objects changes left behind that are still there (or
/// may be: a cluster not seen now cannot say).
pub fn left_behind(snap: &FleetSnapshot, items: &[LeftBehind]) -> Vec<Finding> {
    let mut by_cluster: std::collections::BTreeMap<&str, Vec<&LeftBehind>> = Default::default();
    for i in items {
        let seen = snap.cluster(&i.cluster).is_some_and(|c| !unseen(&c));
        let there =
            snap.istio_objects.iter().any(|o| o.cluster == i.cluster && o.kind == i.kind && o.namespace == i.namespace && o.name == i.name);
        if there || !seen {
            by_cluster.entry(i.cluster.as_str()).or_default().push(i);
        }
    }
    by_cluster
        .into_iter()
        .map(|(cluster, objs)| {
            let mut plans: Vec<&str> = objs.iter().flat_map(|o| o.plans.iter().map(String::as_str)).collect();
            plans.sort_unstable();
            plans.dedup();
            let names: Vec<String> = objs.iter().map(|o| format!("{}/{}/{}", o.kind, o.namespace, o.name)).collect();
            let state = if snap.cluster(cluster).is_some_and(|c| !unseen(&c)) { "" } else { " (not seen now: they may be)" };
            let n = objs.len();
            finding(
                "UNPRUNED",
                format!(
                    "{n} object{} of {} left on {cluster} by a change that could not reach it{state}: {}",
                    if n == 1 { "" } else { "s" },
                    plans.join(","),
                    names.join(", ")
                ),
                vec![cluster.to_string()],
            )
        })
        .collect()
}

fn finding(code: &str, message: String, clusters: Vec<String>) -> Finding {
    let c = check(code);
    Finding {
        code: code.to_string(),
        severity: c.map_or(Severity::Warning, |c| c.severity),
        istio_code: c.and_then(|c| c.istio_code),
        clusters,
        service: None,
        message,
        fix: c.map_or("", |c| c.fix),
    }
}

/// A cluster whose objects were not read: nothing in it was checked.
fn unseen(c: &&ClusterView) -> bool {
    c.state != ClusterState::Live && c.state != ClusterState::Degraded
}

/// How many findings are errors or warnings: what the cockpit's title counts.
pub fn problems(snap: &FleetSnapshot) -> (usize, usize) {
    let unseen = snap.clusters.iter().filter(unseen).count();
    let severity = |w: &super::model::FleetWarning| check(&w.code).map_or(Severity::Warning, |c| c.severity);
    let errors = unseen + snap.warnings.iter().filter(|w| severity(w) == Severity::Error).count();
    let warnings = snap.warnings.iter().filter(|w| severity(w) == Severity::Warning).count();
    (errors, warnings)
}

/// The fleet warning `:problems` lists first (errors first, then by code and clusters):
/// what the fleet view's banner shows, so both read in one order.
pub fn first_warning(snap: &FleetSnapshot) -> Option<&super::model::FleetWarning> {
    let severity = |w: &super::model::FleetWarning| check(&w.code).map_or(Severity::Warning, |c| c.severity);
    snap.warnings.iter().min_by(|a, b| (severity(a), &a.code, &a.clusters).cmp(&(severity(b), &b.code, &b.clusters)))
}

/// Every finding, errors first, then by code and clusters.
pub fn analyze(snap: &FleetSnapshot) -> Vec<Finding> {
    let mut out: Vec<Finding> = snap
        .clusters
        .iter()
        .filter(unseen)
        .map(|c| {
            let why = c.error.as_ref().map(|e| e.message()).unwrap_or("no answer yet");
            finding("UNREACHABLE", format!("{} is {}: {why}; nothing in it was checked", c.name, c.state.as_str()), vec![c.name.clone()])
        })
        .collect();
    // The aggregator computes the warnings with every snapshot (INCONSISTENT_SERVICE among them).
    out.extend(
        snap.warnings.iter().map(|w| Finding { service: w.service.clone(), ..finding(&w.code, w.message.clone(), w.clusters.clone()) }),
    );
    out.sort_by(|a, b| (a.severity, &a.code, &a.clusters).cmp(&(b.severity, &b.code, &b.clusters)));
    out
}

/// How many findings are errors: `meshdeck analyze` exits 1 when there is one.
pub fn errors(findings: &[Finding]) -> usize {
    findings.iter().filter(|f| f.severity == Severity::Error).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::model::{ServicePort, ServicePresence, ServiceRow};

    fn live(name: &str) -> ClusterView {
        ClusterView { name: name.into(), context: name.into(), state: ClusterState::Live, ..Default::default() }
    }

    #[test]
    fn the_banner_shows_first_what_problems_lists_first() {
        let w = |code: &str| super::super::model::FleetWarning {
            code: code.into(),
            message: code.into(),
            clusters: vec!["c1".into()],
            service: None,
        };
        let snap =
            FleetSnapshot { clusters: vec![live("c1")], warnings: vec![w("PARTIAL_SERVICE"), w("ROOT_MISMATCH")], ..Default::default() };
        let findings = analyze(&snap);
        assert_eq!(first_warning(&snap).map(|w| w.code.as_str()), Some("ROOT_MISMATCH"));
        assert_eq!(findings.first().map(|f| f.code.as_str()), Some("ROOT_MISMATCH"));
    }

    #[test]
    fn every_code_warnings_can_give_is_in_the_catalogue() {
        // The codes warnings.rs emits: its upper-case string literals (tests aside).
        let mut codes: Vec<&str> = Vec::new();
        for source in [
            include_str!("warnings.rs"),
            include_str!("ambient.rs"),
            include_str!("routes/mod.rs"),
            include_str!("routes/resolve.rs"),
            include_str!("routes/security.rs"),
            include_str!("routes/failover.rs"),
        ] {
            let source = source.split("#[cfg(test)]").next().unwrap_or("");
            codes.extend(
                source
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .filter(|s| s.len() > 3 && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                    // Istio's own enum values, and the route-only code analyze leaves out.
                    .filter(|s| {
                        !["DEST_UNREACHABLE", "ALLOW", "UNSET", "PERMISSIVE", "STRICT", "DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]
                            .contains(s)
                    }),
            );
        }
        assert!(codes.len() >= 18, "{codes:?}");
        for code in codes {
            assert!(check(code).is_some(), "{code} has no catalogue entry");
        }
    }

    #[test]
    fn a_service_declared_differently_across_clusters_is_inconsistent_and_errors_come_first() {
        let port = |name: &str| ServicePresence {
            ports: vec![9080],
            port_details: vec![ServicePort { number: 9080, name: name.into(), ..Default::default() }],
            ..Default::default()
        };
        let row = ServiceRow {
            name: "reviews".into(),
            namespace: "default".into(),
            clusters: [("c1".to_string(), port("http")), ("c2".to_string(), port("tcp-legacy"))].into(),
        };
        let mut down = live("c3");
        down.state = ClusterState::Unreachable;
        let mut snap = FleetSnapshot { clusters: vec![live("c1"), live("c2"), down], services: vec![row.into()], ..Default::default() };
        snap.warnings = crate::inventory::warnings::compute(&snap);
        let found = analyze(&snap);
        let codes: Vec<&str> = found.iter().map(|f| f.code.as_str()).collect();
        assert_eq!(codes[0], "UNREACHABLE", "{found:#?}");
        let inconsistent = found.iter().find(|f| f.code == "INCONSISTENT_SERVICE").expect("found");
        assert_eq!(inconsistent.clusters, ["c1", "c2"]);
        assert!(
            inconsistent.message.contains("9080/http/HTTP in c1") && inconsistent.message.contains("9080/tcp-legacy/TCP in c2"),
            "{}",
            inconsistent.message
        );
        assert_eq!(inconsistent.istio_code, Some("IST0170"));
        assert_eq!(inconsistent.service.as_deref(), Some("reviews.default"));
        assert_eq!(errors(&found), 1);
    }
}
