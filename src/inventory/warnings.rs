//! Fleet warnings: facts that make cross-cluster traffic fail or surprise.
//! Pure over a snapshot; each warning has a short code and the clusters involved.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::model::{ClusterView, FleetSnapshot, FleetWarning, ServiceRow, service_of_host};

fn warn(code: &str, message: String, clusters: Vec<String>) -> FleetWarning {
    FleetWarning { code: code.into(), message, clusters, service: None }
}

fn about(service: String, w: FleetWarning) -> FleetWarning {
    FleetWarning { service: Some(service), ..w }
}

fn group_by<'a>(clusters: &'a [&'a ClusterView], f: impl Fn(&ClusterView) -> Option<String>) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in clusters {
        if let Some(v) = f(c) {
            m.entry(v).or_default().push(c.name.clone());
        }
    }
    m
}

pub fn compute(snap: &FleetSnapshot) -> Vec<FleetWarning> {
    let mut out = Vec::new();
    // Registered twice under different addresses (or CAs): the cluster says it is one.
    let all: Vec<&ClusterView> = snap.clusters.iter().collect();
    for (uid, cs) in group_by(&all, |c| c.cluster_uid.clone()) {
        if cs.len() > 1 {
            out.push(warn(
                "DUP_CLUSTER",
                format!(
                    "{} are one cluster (kube-system uid {uid}) reached through different addresses; register one of them (config.yaml)",
                    cs.join(" and ")
                ),
                cs,
            ));
        }
    }
    // One address, two clusters: the cluster behind it was recreated, or a proxy routes by identity.
    for c in snap.clusters.iter().filter(|c| !c.alias_mismatches.is_empty()) {
        out.push(warn(
            "ALIAS_MISMATCH",
            format!(
                "aliases of {} answer as another cluster (kube-system uid {}; {}): they are not merged safely, check the kubeconfig",
                c.name,
                c.cluster_uid.as_deref().unwrap_or("?"),
                c.alias_mismatches.join(", ")
            ),
            vec![c.name.clone()],
        ));
    }
    // A cluster registered twice counts once in the mesh checks below.
    let mut uids = std::collections::BTreeSet::new();
    let known: Vec<&ClusterView> = snap
        .clusters
        .iter()
        .filter(|c| c.mesh.istio_version.is_some() || c.mesh.trust_domain.is_some())
        .filter(|c| c.cluster_uid.as_ref().is_none_or(|u| uids.insert(u.clone())))
        .collect();
    let roots = group_by(&known, |c| c.mesh.root_cert_fingerprint.clone());
    if roots.len() > 1 {
        let detail: Vec<String> = roots.iter().map(|(fp, cs)| format!("{} {}", &fp[..fp.len().min(19)], cs.join(","))).collect();
        out.push(warn(
            "ROOT_MISMATCH",
            format!("clusters have different root certificates; cross-cluster mTLS will fail ({})", detail.join("; ")),
            roots.values().flatten().cloned().collect(),
        ));
    }
    // Independent meshes (no remote secrets) must not share a trust domain: principals would collide.
    let federated: Vec<&ClusterView> = known.iter().copied().filter(|c| c.mesh.remote_secrets.is_empty()).collect();
    for (td, cs) in group_by(&federated, |c| c.mesh.trust_domain.clone()) {
        if cs.len() > 1 {
            out.push(warn("DUP_TRUST_DOMAIN", format!("trust domain {td} is used by independent meshes {}", cs.join(", ")), cs));
        }
    }
    for (id, cs) in group_by(&known, |c| c.mesh.cluster_id.clone()) {
        if cs.len() > 1 {
            out.push(warn("DUP_CLUSTER_ID", format!("cluster id {id} is used by {}", cs.join(", ")), cs));
        }
    }
    let networks = group_by(&known, |c| c.mesh.network.clone());
    if networks.len() > 1 || !federated.is_empty() && known.len() > 1 {
        let missing: Vec<String> = known.iter().filter(|c| c.mesh.east_west_gateway.is_none()).map(|c| c.name.clone()).collect();
        if !missing.is_empty() {
            out.push(warn(
                "NO_EASTWEST",
                format!("no east-west gateway address in {}: federation cannot reach it", missing.join(", ")),
                missing,
            ));
        }
    }
    let versions = group_by(&known, |c| c.mesh.istio_version.as_ref().map(|v| v.split('.').take(2).collect::<Vec<_>>().join(".")));
    if versions.len() > 1 {
        let detail: Vec<String> = versions.iter().map(|(v, cs)| format!("{v} on {}", cs.join(","))).collect();
        out.push(warn(
            "ISTIO_SKEW",
            format!("Istio minor versions differ: {}", detail.join("; ")),
            versions.values().flatten().cloned().collect(),
        ));
    }
    out.extend(remote_secrets(snap, &known));
    // Mesh-wide mTLS (istio-system's PeerAuthentication without a selector) per live
    // cluster with Istio: a fleet that mixes STRICT and PERMISSIVE accepts plain text
    // in some clusters only.
    let mut modes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in known.iter().filter(|c| matches!(c.state, super::model::ClusterState::Live | super::model::ClusterState::Degraded)) {
        let (mode, _) = super::routes::peer_mode(snap, &c.name, "istio-system", &BTreeMap::new());
        modes.entry(mode).or_default().push(c.name.clone());
    }
    if modes.len() > 1 {
        let detail: Vec<String> = modes.iter().map(|(m, cs)| format!("{m} in {}", cs.join(", "))).collect();
        out.push(warn(
            "MTLS_MISMATCH",
            format!("mesh-wide mTLS differs: {}", detail.join("; ")),
            modes.values().flatten().cloned().collect(),
        ));
    }
    let no_istio: Vec<String> = snap
        .clusters
        .iter()
        .filter(|c| !c.state.pending() && c.state == super::model::ClusterState::Live && c.mesh.istio_version.is_none())
        .map(|c| c.name.clone())
        .collect();
    if !no_istio.is_empty() {
        out.push(warn("NO_ISTIO", format!("no istiod found in {}", no_istio.join(", ")), no_istio));
    }
    let live: Vec<&str> = snap.clusters.iter().filter(|c| c.state == super::model::ClusterState::Live).map(|c| c.name.as_str()).collect();
    for row in &snap.services {
        // Only mesh workloads (with a sidecar) are routed by version.
        let unlabelled: Vec<String> = row.clusters.iter().filter(|(_, p)| p.unversioned.injected > 0).map(|(c, _)| c.clone()).collect();
        if !unlabelled.is_empty() {
            out.push(about(
                row.key(),
                warn("NO_VERSION_LABEL", format!("{}: pods without the version label in {}", row.key(), unlabelled.join(", ")), unlabelled),
            ));
        }
        if row.namespace != "kube-system" && row.namespace != "istio-system" && live.len() > 1 {
            let absent: Vec<String> = live.iter().filter(|c| !row.clusters.contains_key(**c)).map(|c| c.to_string()).collect();
            if !absent.is_empty() && absent.len() < live.len() {
                out.push(about(row.key(), warn("PARTIAL_SERVICE", format!("{} is missing in {}", row.key(), absent.join(", ")), absent)));
            }
        }
        if row.namespace != "kube-system"
            && let Some(w) = inconsistent(row)
        {
            out.push(w);
        }
    }
    out.extend(gateways_without_pods(snap));
    out.extend(super::ambient::compute(snap));
    // Route checks look services up by the hosts of VirtualServices and DestinationRules.
    if snap.istio_objects.iter().any(|o| o.kind == "VirtualService" || o.kind == "DestinationRule") {
        let services: HashMap<String, &ServiceRow> = snap.services.iter().map(|s| (s.key(), s.as_ref())).collect();
        out.extend(route_owners(snap, &services));
        out.extend(subsets(snap, &services));
        out.extend(super::routes::route_problems(snap).into_iter().map(|(svc, p)| about(svc, warn(p.code, p.message, p.clusters))));
    }
    out
}

/// The clusters a subset's pods may be in, as the DestinationRule's cluster sees
/// them: the one its `topology.istio.io/cluster` label names, else that cluster and
/// every cluster its istiod reads a remote secret for (shared discovery).
fn subset_clusters<'a>(snap: &'a FleetSnapshot, cluster: &str, labels: &BTreeMap<String, String>) -> Vec<&'a ClusterView> {
    match labels.get(CLUSTER_LABEL) {
        Some(id) => snap.clusters.iter().filter(|c| snap.cluster_id_from(cluster, &c.name).as_deref() == Some(id.as_str())).collect(),
        None => snap.clusters.iter().filter(|c| snap.shares_discovery(cluster, &c.name)).collect(),
    }
}

const CLUSTER_LABEL: &str = "topology.istio.io/cluster";

/// Subsets judged across the fleet. A DestinationRule subset that selects no pods
/// (istioctl's IST0173) is judged where its pods may be: in shared discovery a
/// cluster's subset may select another cluster's pods, which istioctl, one cluster
/// at a time, calls empty. A route to a subset no DestinationRule defines (IST0101)
/// is judged per cluster, against every rule for the host there. A cluster not live
/// is not judged (unknown is not absent); a subset selecting labels other than the
/// version and cluster labels is not judged (the inventory counts pods by version).
fn subsets(snap: &FleetSnapshot, services: &HashMap<String, &ServiceRow>) -> Vec<FleetWarning> {
    let mut out = Vec::new();
    let live = |c: &ClusterView| c.state == super::model::ClusterState::Live;
    let presence = |svc: &str, cluster: &str| services.get(svc).and_then(|row| row.clusters.get(cluster));
    // Per (cluster, service): the subsets its DestinationRules define.
    let mut defined: BTreeMap<(&str, String), BTreeSet<&str>> = BTreeMap::new();
    for dr in snap.istio_objects.iter().filter(|o| o.kind == "DestinationRule") {
        if let Some(svc) = dr.hosts.first().and_then(|h| service_of_host(h, &dr.namespace)) {
            defined.entry((dr.cluster.as_str(), svc)).or_default().extend(dr.subsets.keys().map(String::as_str));
        }
    }
    for dr in snap.istio_objects.iter().filter(|o| o.kind == "DestinationRule" && !o.subsets.is_empty()) {
        let Some(svc) = dr.hosts.first().and_then(|h| service_of_host(h, &dr.namespace)) else { continue };
        if !services.contains_key(&svc) {
            continue;
        }
        for (subset, labels) in &dr.subsets {
            let candidates = subset_clusters(snap, &dr.cluster, labels);
            if candidates.is_empty() || !candidates.iter().all(|c| live(c)) {
                continue;
            }
            let judged = labels.keys().all(|k| {
                k == CLUSTER_LABEL || candidates.iter().all(|c| *k == c.version_label || (c.version_label.is_empty() && k == "version"))
            });
            if !judged {
                continue;
            }
            let selects = candidates.iter().any(|c| {
                presence(&svc, &c.name).is_some_and(|p| match labels.iter().find(|(k, _)| *k != CLUSTER_LABEL) {
                    Some((_, v)) => p.versions.get(v).is_some_and(|n| n.total > 0),
                    None => p.versions.values().any(|n| n.total > 0) || p.unversioned.total > 0,
                })
            });
            if !selects {
                let names: Vec<&str> = candidates.iter().map(|c| c.name.as_str()).collect();
                out.push(about(
                    svc.clone(),
                    warn(
                        "SUBSET_NO_PODS",
                        format!(
                            "{svc}: subset {subset} of DestinationRule {}/{} in {} selects no pods in {}",
                            dr.namespace,
                            dr.name,
                            dr.cluster,
                            names.join(", ")
                        ),
                        vec![dr.cluster.clone()],
                    ),
                ));
            }
        }
    }
    for vs in snap.istio_objects.iter().filter(|o| o.kind == "VirtualService") {
        for d in &vs.destinations {
            let Some(subset) = &d.subset else { continue };
            let Some(svc) = service_of_host(&d.host, &vs.namespace) else { continue };
            let is_defined = defined.get(&(vs.cluster.as_str(), svc.clone())).is_some_and(|s| s.contains(subset.as_str()));
            if !is_defined && services.contains_key(&svc) {
                out.push(about(
                    svc.clone(),
                    warn(
                        "SUBSET_UNDEFINED",
                        format!(
                            "{svc}: VirtualService {}/{} in {} routes to subset {subset}, which no DestinationRule for the host defines there",
                            vs.namespace, vs.name, vs.cluster
                        ),
                        vec![vs.cluster.clone()],
                    ),
                ));
            }
        }
    }
    out
}

/// A service whose clusters declare it differently: a caller's sidecar builds one
/// cluster for the host from one of them, so a port or protocol that differs routes
/// some endpoints wrongly (istioctl's IST0170, from its experimental multi-cluster
/// mode). Compared without allocating; described only when they differ.
fn inconsistent(row: &ServiceRow) -> Option<FleetWarning> {
    let mut presences = row.clusters.values();
    let first = presences.next()?;
    if presences.all(|p| p.port_details == first.port_details && p.ports == first.ports) {
        return None;
    }
    let mut shapes: BTreeMap<Vec<String>, Vec<String>> = BTreeMap::new();
    for (cluster, p) in &row.clusters {
        let mut ports: Vec<String> = if p.port_details.is_empty() {
            p.ports.iter().map(|n| n.to_string()).collect()
        } else {
            p.port_details
                .iter()
                .map(|d| format!("{}/{}/{}", d.number, if d.name.is_empty() { "-" } else { &d.name }, d.protocol().unwrap_or("?")))
                .collect()
        };
        ports.sort();
        shapes.entry(ports).or_default().push(cluster.clone());
    }
    if shapes.len() < 2 {
        // Only targetPort or appProtocol spelling differs, not what Istio routes on.
        return None;
    }
    let detail: Vec<String> = shapes.iter().map(|(ports, cs)| format!("{} in {}", ports.join(","), cs.join(","))).collect();
    Some(about(
        row.key(),
        warn(
            "INCONSISTENT_SERVICE",
            format!("{}: ports (number/name/protocol) differ: {}", row.key(), detail.join("; ")),
            shapes.into_values().flatten().collect(),
        ),
    ))
}

/// A sidecar follows one VirtualService per host: two owners of one service's route
/// in one cluster (two plans, or a plan and a hand-written object) means one is ignored.
fn route_owners(snap: &FleetSnapshot, services: &HashMap<String, &ServiceRow>) -> Vec<FleetWarning> {
    let mut owners: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for o in snap.istio_objects.iter().filter(|o| o.kind == "VirtualService") {
        // Only hosts of services in the inventory: `reviews` in its namespace, or the FQDN.
        for key in o.hosts.iter().filter_map(|h| service_of_host(h, &o.namespace)).filter(|k| services.contains_key(k)) {
            let who = match (&o.plan, o.managed) {
                (Some(p), true) => format!("plan {p}"),
                _ => format!("VirtualService {}/{}", o.namespace, o.name),
            };
            owners.entry((key, o.cluster.clone())).or_default().insert(who);
        }
    }
    owners
        .into_iter()
        .filter(|(_, who)| who.len() > 1)
        .map(|((svc, cluster), who)| {
            about(
                svc.clone(),
                warn(
                    "MULTI_OWNER",
                    format!(
                        "{svc} from {cluster} is routed by {}: a sidecar follows only one",
                        who.into_iter().collect::<Vec<_>>().join(" and ")
                    ),
                    vec![cluster],
                ),
            )
        })
        .collect()
}

/// Gateways whose selector picks no running gateway pods in their (live) cluster
/// (istioctl's IST0101 for a Gateway). The inventory knows pods through the Services
/// that select them: a Gateway's pods are found when a Service with ready pods
/// selects them on every label the Gateway selects on, which is how Istio's gateway
/// Services are made (`istio: eastwestgateway` on both).
fn gateways_without_pods(snap: &FleetSnapshot) -> Vec<FleetWarning> {
    let mut out = Vec::new();
    for gw in snap.istio_objects.iter().filter(|o| o.kind == "Gateway") {
        if snap.cluster(&gw.cluster).is_none_or(|c| c.state != super::model::ClusterState::Live) {
            continue;
        }
        let spec: serde_json::Value = serde_json::from_str(&gw.spec).unwrap_or_default();
        let selector: BTreeMap<String, String> =
            spec.get("selector").and_then(|s| serde_json::from_value(s.clone()).ok()).unwrap_or_default();
        if selector.is_empty() {
            continue;
        }
        let served = snap.services.iter().any(|row| {
            row.clusters.get(&gw.cluster).is_some_and(|p| {
                let ready = p.versions.values().chain(std::iter::once(&p.unversioned)).any(|n| n.ready > 0);
                ready && selector.iter().all(|(k, v)| p.selector.get(k) == Some(v))
            })
        });
        if !served {
            let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push(warn(
                "GATEWAY_NO_PODS",
                format!(
                    "Gateway {}/{} in {} selects {}, and no Service there selects ready pods with those labels: it configures no gateway",
                    gw.namespace,
                    gw.name,
                    gw.cluster,
                    labels.join(",")
                ),
                vec![gw.cluster.clone()],
            ));
        }
    }
    out
}

/// Shared discovery's remote secrets, judged across the fleet: one naming no
/// registered cluster is stale (the cluster was removed or renamed, or is not
/// registered here); a primary that reads another's secret while that one, a
/// primary too, does not read its own is one-sided, so calls from the second never
/// see the first's endpoints.
fn remote_secrets(snap: &FleetSnapshot, known: &[&ClusterView]) -> Vec<FleetWarning> {
    let mut out = Vec::new();
    let live = |c: &ClusterView| c.state == super::model::ClusterState::Live;
    let id = |c: &ClusterView| c.mesh.cluster_id.clone().unwrap_or_else(|| c.name.clone());
    // Any registered cluster, seen or not: one not seen yet is not gone.
    let find = |r: &str| snap.clusters.iter().find(|c| c.name == r || c.mesh.cluster_id.as_deref() == Some(r));
    for a in known.iter().filter(|c| live(c) && !c.mesh.remote_secrets.is_empty()) {
        for r in &a.mesh.remote_secrets {
            match find(r) {
                None => out.push(warn(
                    "REMOTE_SECRET_STALE",
                    format!(
                        "{} reads a remote secret for {r}, which is no registered cluster: removed, renamed, or not registered here",
                        a.name
                    ),
                    vec![a.name.clone()],
                )),
                Some(b) if live(b) && b.name != a.name && !b.mesh.remote_secrets.is_empty() => {
                    let reads_back = b.mesh.remote_secrets.iter().any(|x| *x == id(a) || *x == a.name);
                    if !reads_back {
                        out.push(warn(
                            "REMOTE_SECRET_MISSING",
                            format!(
                                "{} reads {}'s remote secret but {} has none for {}: calls from {} never see {}'s endpoints",
                                a.name, b.name, b.name, a.name, b.name, a.name
                            ),
                            vec![b.name.clone(), a.name.clone()],
                        ));
                    }
                }
                Some(_) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::model::{ClusterState, MeshFacts};

    fn cluster(name: &str, root: &str, td: &str, version: &str, eastwest: bool) -> ClusterView {
        ClusterView {
            name: name.into(),
            state: ClusterState::Live,
            mesh: MeshFacts {
                istio_version: Some(version.into()),
                trust_domain: Some(td.into()),
                cluster_id: Some(name.into()),
                network: Some(format!("net-{name}")),
                root_cert_fingerprint: Some(root.into()),
                east_west_gateway: eastwest.then(|| "192.0.2.1".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// c1 reads c2's remote secret (shared discovery); reviews runs v1 in c1, v3 in c2.
    fn shared_fleet(objects: Vec<crate::inventory::IstioObject>) -> FleetSnapshot {
        use crate::inventory::model::{ServicePresence, ServiceRow, VersionCount};
        let mut c1 = cluster("c1", "sha256:1", "cluster.local", "1.27.3", true);
        c1.version_label = "version".into();
        c1.mesh.remote_secrets = vec!["c2".into()];
        let mut c2 = cluster("c2", "sha256:1", "cluster.local", "1.27.3", true);
        c2.version_label = "version".into();
        let runs = |v: &str| ServicePresence {
            versions: [(v.to_string(), VersionCount { ready: 1, total: 1, injected: 1 })].into(),
            ..Default::default()
        };
        let row = ServiceRow {
            name: "reviews".into(),
            namespace: "default".into(),
            clusters: [("c1".to_string(), runs("v1")), ("c2".to_string(), runs("v3"))].into(),
        };
        FleetSnapshot { clusters: vec![c1, c2], services: vec![row.into()], istio_objects: objects, ..Default::default() }
    }

    fn dr(cluster: &str, subsets: &[(&str, &[(&str, &str)])]) -> crate::inventory::IstioObject {
        crate::inventory::IstioObject {
            cluster: cluster.into(),
            kind: "DestinationRule".into(),
            namespace: "default".into(),
            name: "reviews".into(),
            hosts: vec!["reviews".into()],
            subsets: subsets
                .iter()
                .map(|(n, ls)| (n.to_string(), ls.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn subsets_are_judged_where_their_pods_may_be_across_clusters() {
        // v3 runs only in c2: a subset naming c2 selects it, one without a cluster label
        // does too through shared discovery (istioctl, judging c1 alone, calls both empty).
        let rule = dr(
            "c1",
            &[("v3", &[("version", "v3"), (CLUSTER_LABEL, "c2")]), ("v3-any", &[("version", "v3")]), ("v9", &[("version", "v9")])],
        );
        let route = crate::inventory::IstioObject {
            cluster: "c1".into(),
            kind: "VirtualService".into(),
            namespace: "default".into(),
            name: "reviews-by-hand".into(),
            hosts: vec!["reviews".into()],
            destinations: ["v3", "v4"]
                .iter()
                .map(|s| crate::inventory::RouteDestination {
                    host: "reviews.default.svc.cluster.local".into(),
                    subset: Some(s.to_string()),
                })
                .collect(),
            ..Default::default()
        };
        let found = compute(&shared_fleet(vec![rule, route]));
        let got: Vec<(&str, &str)> = found.iter().map(|w| (w.code.as_str(), w.message.as_str())).collect();
        assert_eq!(
            got,
            [
                ("SUBSET_NO_PODS", "reviews.default: subset v9 of DestinationRule default/reviews in c1 selects no pods in c1, c2"),
                (
                    "SUBSET_UNDEFINED",
                    "reviews.default: VirtualService default/reviews-by-hand in c1 routes to subset v4, which no DestinationRule for the host defines there"
                ),
            ]
        );
        // Without the remote secret (federation) c1's subset for v3 selects nothing: c1 runs v1.
        let mut fed = shared_fleet(vec![dr("c1", &[("v3-any", &[("version", "v3")])])]);
        fed.clusters[0].mesh.remote_secrets.clear();
        fed.clusters[0].mesh.trust_domain = Some("c1.local".into());
        assert_eq!(codes(&fed), ["SUBSET_NO_PODS"]);
        // A cluster not live is not judged: unknown is not absent.
        let mut dark = shared_fleet(vec![dr("c1", &[("v9", &[("version", "v9")])])]);
        dark.clusters[1].state = ClusterState::Unreachable;
        assert!(codes(&dark).is_empty(), "{:?}", compute(&dark));
    }

    fn codes(snap: &FleetSnapshot) -> Vec<String> {
        compute(snap).into_iter().map(|w| w.code).collect()
    }

    #[test]
    fn remote_secrets_one_sided_or_for_no_registered_cluster_are_named() {
        let mut a = cluster("a", "sha256:1", "mesh.local", "1.27.3", true);
        let mut b = cluster("b", "sha256:1", "mesh.local", "1.27.3", true);
        let mut c = cluster("c", "sha256:1", "mesh.local", "1.27.3", true);
        a.mesh.remote_secrets = vec!["b".into(), "c".into(), "gone".into()];
        b.mesh.remote_secrets = vec!["c".into()];
        c.mesh.remote_secrets = vec!["a".into(), "b".into()];
        let snap = FleetSnapshot { clusters: vec![a, b, c], ..Default::default() };
        let found: Vec<(String, String)> =
            compute(&snap).into_iter().filter(|w| w.code.starts_with("REMOTE_SECRET")).map(|w| (w.code, w.message)).collect();
        assert_eq!(
            found,
            [
                (
                    "REMOTE_SECRET_MISSING".to_string(),
                    "a reads b's remote secret but b has none for a: calls from b never see a's endpoints".to_string()
                ),
                (
                    "REMOTE_SECRET_STALE".to_string(),
                    "a reads a remote secret for gone, which is no registered cluster: removed, renamed, or not registered here"
                        .to_string()
                ),
            ]
        );
        // b not seen: nothing is said about it.
        let mut dark = snap.clone();
        dark.clusters[1].state = ClusterState::Unreachable;
        assert!(compute(&dark).iter().all(|w| w.code != "REMOTE_SECRET_MISSING"), "{:?}", compute(&dark));
    }

    #[test]
    fn one_cluster_registered_twice_is_named_once_and_not_a_mesh_duplicate() {
        let mut a = cluster("a", "sha256:1", "a.local", "1.27.3", true);
        a.cluster_uid = Some("uid-1".into());
        let mut a2 = a.clone();
        a2.name = "a-by-ip".into();
        let snap = FleetSnapshot { clusters: vec![a, a2], ..Default::default() };
        // Not DUP_CLUSTER_ID/DUP_TRUST_DOMAIN: the mesh checks count the cluster once.
        assert_eq!(codes(&snap), ["DUP_CLUSTER"], "{:?}", compute(&snap));
        assert!(compute(&snap)[0].message.starts_with("a and a-by-ip are one cluster (kube-system uid uid-1)"));
    }

    #[test]
    fn distinct_clusters_sharing_an_istio_cluster_id_stay_distinct_and_warned() {
        let mut a = cluster("a", "sha256:1", "a.local", "1.27.3", true);
        a.cluster_uid = Some("uid-1".into());
        let mut b = cluster("b", "sha256:1", "b.local", "1.27.3", true);
        b.cluster_uid = Some("uid-2".into());
        b.mesh.cluster_id = Some("a".into());
        b.alias_mismatches = vec!["b-old: uid-9".into()];
        let snap = FleetSnapshot { clusters: vec![a, b], ..Default::default() };
        assert_eq!(codes(&snap), ["ALIAS_MISMATCH", "DUP_CLUSTER_ID"], "{:?}", compute(&snap));
    }

    #[test]
    fn a_healthy_federation_has_no_warnings() {
        let snap = FleetSnapshot {
            clusters: vec![cluster("a", "sha256:1", "a.local", "1.27.3", true), cluster("b", "sha256:1", "b.local", "1.27.1", true)],
            ..Default::default()
        };
        assert!(codes(&snap).is_empty(), "{:?}", compute(&snap));
    }

    #[test]
    fn mismatched_roots_duplicate_domains_skew_and_missing_gateways_are_named() {
        let snap = FleetSnapshot {
            clusters: vec![cluster("a", "sha256:1", "same.local", "1.27.3", true), cluster("b", "sha256:2", "same.local", "1.26.0", false)],
            ..Default::default()
        };
        let warnings = compute(&snap);
        let c: Vec<&str> = warnings.iter().map(|w| w.code.as_str()).collect();
        assert_eq!(c, ["ROOT_MISMATCH", "DUP_TRUST_DOMAIN", "NO_EASTWEST", "ISTIO_SKEW"]);
        assert_eq!(warnings[2].clusters, ["b"]);
    }
}
