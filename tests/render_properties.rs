//! Properties over random fleets and random valid plans: the cross-reference
//! check holds (render succeeds), every object validates against Istio's CRDs,
//! and rendering is deterministic.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use meshdeck::inventory::{ClusterState, ClusterView, FleetSnapshot, MeshFacts, ServicePresence, ServiceRow, VersionCount};
use meshdeck::plan::{Destination, FailoverTarget, OutlierDetection, Plan, RouteAction, ServiceRef, TopologyChoice, TrafficRoute};
use proptest::prelude::*;

/// How the fleet's meshes see one another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Topology {
    /// Independent meshes: every cross-cluster call goes through a gateway.
    Federation,
    /// One mesh: every istiod reads every cluster.
    Shared,
    /// c1 and c2 share discovery; the rest federate with them.
    Mixed,
}

/// Which clusters `n`'s istiod reads besides its own.
fn discovered_by(topo: Topology, names: &[String], n: &str) -> Vec<String> {
    let pair = ["c1", "c2"];
    match topo {
        Topology::Federation => vec![],
        Topology::Shared => names.iter().filter(|o| *o != n).cloned().collect(),
        Topology::Mixed if pair.contains(&n) => names.iter().filter(|o| *o != n && pair.contains(&o.as_str())).cloned().collect(),
        Topology::Mixed => vec![],
    }
}

/// A fleet: `versions[c]` are the versions of `app.default` running in cluster c.
fn fleet(versions: &[Vec<u8>], topo: Topology) -> FleetSnapshot {
    let names: Vec<String> = (1..=versions.len()).map(|i| format!("c{i}")).collect();
    // Clusters that share discovery are one mesh: one trust domain.
    let domain = |n: &str| match topo {
        Topology::Shared => "cluster.local".to_string(),
        Topology::Mixed if n == "c1" || n == "c2" => "pair.local".to_string(),
        _ => format!("{n}.local"),
    };
    let clusters = names
        .iter()
        .enumerate()
        .map(|(i, n)| ClusterView {
            name: n.clone(),
            context: n.clone(),
            state: ClusterState::Live,
            version_label: "version".into(),
            mesh: MeshFacts {
                istio_version: Some("1.27.3".into()),
                trust_domain: Some(domain(n)),
                cluster_id: Some(n.clone()),
                network: Some(format!("net{i}")),
                east_west_gateway: Some(format!("192.0.2.{}", 10 + i)),
                remote_secrets: discovered_by(topo, &names, n),
                istio_crds: true,
                // Federated meshes accept one another's trust domains, as they must.
                trust_domain_aliases: names
                    .iter()
                    .filter(|o| domain(o) != domain(n))
                    .map(|o| domain(o))
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                accepted_trust_domains: {
                    let mut others: Vec<String> = names.iter().filter(|o| domain(o) != domain(n)).map(|o| domain(o)).collect();
                    others.dedup();
                    others
                },
                ..Default::default()
            },
            ..Default::default()
        })
        .collect();
    let presence: BTreeMap<String, ServicePresence> = names
        .iter()
        .zip(versions)
        .map(|(n, vs)| {
            let versions = vs.iter().map(|v| (format!("v{v}"), VersionCount { ready: 1, total: 1, injected: 1 })).collect();
            (
                n.clone(),
                ServicePresence {
                    versions,
                    ports: vec![8080],
                    selector: [("app".to_string(), "app".to_string())].into(),
                    ..Default::default()
                },
            )
        })
        .collect();
    FleetSnapshot {
        clusters,
        services: vec![Arc::new(ServiceRow { name: "app".into(), namespace: "default".into(), clusters: presence })],
        ..Default::default()
    }
}

fn fleet_strategy() -> impl Strategy<Value = (Vec<Vec<u8>>, Topology)> {
    (
        prop::collection::vec(prop::collection::btree_set(1u8..5, 1..4).prop_map(|s| s.into_iter().collect::<Vec<_>>()), 2..6),
        prop_oneof![Just(Topology::Federation), Just(Topology::Shared), Just(Topology::Mixed)],
    )
}

/// A random fleet and a valid plan for it (a mixed fleet's plans are splits).
fn plan_case() -> impl Strategy<Value = (Vec<Vec<u8>>, Topology, Plan)> {
    (fleet_strategy(), prop::collection::vec((0usize..8, 0usize..4), 1..5), prop::collection::vec(0u32..=100, 4), any::<bool>()).prop_map(
        |((versions, topo), picks, cuts, failover)| {
            let plan = plan_for(&versions, topo == Topology::Shared, &picks, &cuts, failover && topo != Topology::Mixed);
            (versions, topo, plan)
        },
    )
}

/// Split `100` into `n` whole weights.
fn weights(n: usize, cuts: &[u32]) -> Vec<u32> {
    let mut points: Vec<u32> = cuts.iter().take(n.saturating_sub(1)).map(|c| c % 101).collect();
    points.sort();
    let mut out = Vec::new();
    let mut last = 0;
    for p in points {
        out.push(p - last);
        last = p;
    }
    out.push(100 - last);
    out
}

fn plan_for(versions: &[Vec<u8>], shared: bool, picks: &[(usize, usize)], cuts: &[u32], failover: bool) -> Plan {
    let mut dests: Vec<(String, String)> = Vec::new();
    for (c, v) in picks {
        let c = c % versions.len();
        let v = versions[c][v % versions[c].len()];
        let d = (format!("c{}", c + 1), format!("v{v}"));
        if !dests.contains(&d) {
            dests.push(d);
        }
    }
    let action = if failover {
        let mut seen = Vec::new();
        let mut targets = Vec::new();
        for (i, (c, v)) in dests.iter().enumerate() {
            if !seen.contains(c) {
                seen.push(c.clone());
                // Shared discovery: one version for all targets (here none). Federation: the
                // primary is the caller's own Service (every version), the others may pick one.
                let version = if shared || i == 0 { None } else { Some(v.clone()) };
                targets.push(FailoverTarget { cluster: c.clone(), version });
            }
        }
        if targets.len() < 2 {
            let other = if targets[0].cluster == "c1" { "c2" } else { "c1" };
            targets.push(FailoverTarget { cluster: other.into(), version: None });
        }
        RouteAction::Failover(targets)
    } else {
        let ws = weights(dests.len(), cuts);
        RouteAction::Split(
            dests.iter().zip(ws).map(|((c, v), w)| Destination { cluster: c.clone(), version: v.clone(), weight: w }).collect(),
        )
    };
    let from = match &action {
        RouteAction::Failover(ts) => ts[0].cluster.clone(),
        RouteAction::Split(_) => "c1".into(),
    };
    let route = TrafficRoute {
        name: "prop".into(),
        service: ServiceRef { name: "app".into(), namespace: "default".into() },
        from_clusters: vec![from],
        action,
        outlier_detection: Some(OutlierDetection {
            consecutive_5xx_errors: 5,
            interval: "10s".into(),
            base_ejection_time: "30s".into(),
            max_ejection_percent: None,
        }),
        retries: None,
        timeout: None,
        matches: vec![],
        topology: TopologyChoice::Auto,
        routing: Default::default(),
        port: None,
        trust_accepted_by: Vec::new(),
        canary: None,
    };
    Plan { routes: vec![route], ..Default::default() }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn renders_pass_the_cross_reference_check_and_are_deterministic(
        (versions, topo, plan) in plan_case(),
    ) {
        let inv = fleet(&versions, topo);
        // The generated plan is one validation accepts, and writing it loses nothing.
        let reloaded = meshdeck::plan::load("generated.yaml", &plan.to_yaml(), &inv)
            .map_err(|e| TestCaseError::fail(format!("generated plan invalid: {e:?}\n{}", plan.to_yaml())))?;
        prop_assert_eq!(&reloaded, &plan);
        if let RouteAction::Split(ds) = &plan.routes[0].action {
            prop_assert_eq!(ds.iter().map(|d| d.weight).sum::<u32>(), 100);
        }
        let a = meshdeck::render::render(&plan, &inv).map_err(|e| TestCaseError::fail(format!("{e}\nplan: {plan:?}")))?;
        let b = meshdeck::render::render(&plan, &inv).expect("second render");
        prop_assert_eq!(a.to_yaml(), b.to_yaml());
        prop_assert!(a.clusters.contains_key(&plan.routes[0].from_clusters[0]), "the caller gets objects");
        let schemas = SCHEMAS.with(|s| s.clone());
        for (_, obj) in a.iter() {
            common::assert_valid_istio(&schemas, obj);
        }
    }
}

thread_local! {
    static SCHEMAS: BTreeMap<String, Arc<meshdeck_sim::schema::Schema>> = common::istio_schemas();
}

fn applied(inv: &FleetSnapshot, plan: &Plan) -> Result<FleetSnapshot, TestCaseError> {
    common::applied(inv, plan).map_err(TestCaseError::fail)
}

/// What an effective route does: per rule, its matches and (weight, tier, cluster, version) of each target.
type Routing = Vec<(Vec<String>, Vec<(u32, Option<usize>, String, Option<String>)>)>;

fn routing(snap: &FleetSnapshot, from: &str) -> (Routing, meshdeck::inventory::routes::EffectiveRoute) {
    let found = meshdeck::inventory::routes::effective_routes(snap, Some("app.default"), Some(from));
    let route = found.into_iter().next().expect("a route from the caller");
    let r = route
        .rules
        .iter()
        .map(|rule| {
            let mut targets: Vec<_> = rule
                .destinations
                .iter()
                .flat_map(|d| d.targets.iter().map(move |t| (d.weight, t.tier, t.cluster.clone(), t.version.clone())))
                .collect();
            targets.sort();
            (rule.matches.clone(), targets)
        })
        .collect();
    (r, route)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, .. ProptestConfig::default() })]

    /// `import` ∘ render is the identity on effective routes: a route rendered from
    /// any valid plan, imported back, validates and renders to the same routing.
    #[test]
    fn an_imported_route_renders_back_to_the_same_effective_routing(
        (versions, topo, plan) in plan_case(),
    ) {
        let inv = fleet(&versions, topo);
        let shared = topo == Topology::Shared;
        let from = plan.routes[0].from_clusters[0].clone();
        let (before, route) = routing(&applied(&inv, &plan)?, &from);
        prop_assert!(route.problems.is_empty(), "a valid plan's route has no problems: {:?}", route.problems);
        if let RouteAction::Split(ds) = &plan.routes[0].action {
            let mut wanted: Vec<_> = ds.iter().map(|d| (d.weight, None, d.cluster.clone(), Some(d.version.clone()))).collect();
            wanted.sort();
            prop_assert_eq!(&before[0].1, &wanted, "the effective split is the plan's");
        }
        let imported = meshdeck::plan::import::import(&route, "prop");
        let tiers = match &plan.routes[0].action {
            RouteAction::Failover(ts) => ts.len(),
            RouteAction::Split(_) => 0,
        };
        // Shared discovery ranks the primary cluster first and every other cluster that
        // runs the service together: an order among fallbacks, or a fallback the plan did
        // not name, is not in the objects, and import says so.
        let fallbacks: std::collections::BTreeSet<&str> =
            route.rules[0].destinations.iter().flat_map(|d| &d.targets).filter(|t| t.tier == Some(1)).map(|t| t.cluster.as_str()).collect();
        if shared && fallbacks.len() > 1 {
            let why = imported.expect_err("the fallbacks' order is not in the objects");
            prop_assert!(why.iter().any(|w| w.contains("failover tier 2 is")), "{why:?}");
            return Ok(());
        }
        prop_assert!(!(shared && tiers > 2), "three tiers with shared discovery leave two fallbacks together");
        let imported = imported.map_err(|why| TestCaseError::fail(format!("{why:?}\nroute: {route:#?}")))?;
        let plan2 = Plan { routes: vec![imported], ..Default::default() };
        let reloaded = meshdeck::plan::load("imported.yaml", &plan2.to_yaml(), &inv)
            .map_err(|e| TestCaseError::fail(format!("imported plan invalid: {e:?}\n{}", plan2.to_yaml())))?;
        let (after, _) = routing(&applied(&inv, &reloaded)?, &from);
        prop_assert_eq!(before, after);
    }
}

/// A canary's step weights: the canary exactly at its step, the others within one
/// point of their share of the rest, 100 in all; the last step is the plan's split.
fn canary_for(weight: u32, mut steps: Vec<u32>) -> meshdeck::plan::Canary {
    steps.retain(|w| *w < weight);
    steps.push(weight);
    meshdeck::plan::Canary {
        cluster: "c0".into(),
        version: "canary".into(),
        steps,
        interval: 60,
        gates: meshdeck::plan::Gates {
            success_rate: Some(99.0),
            p99_ms: None,
            min_requests: 50,
            per: meshdeck::plan::GatePer::CallingCluster,
        },
        rollback_after: 1,
        rollback_to: meshdeck::plan::RollbackTo::Start,
        decide_within: 180,
    }
}

proptest! {
    #[test]
    fn canary_steps_keep_the_rest_in_proportion(
        weight in 1u32..=99,
        others in proptest::collection::vec(0u32..=50, 1..5),
        raw_steps in proptest::collection::btree_set(1u32..=99, 0..5),
    ) {
        // Scale the others to the rest of 100 (largest remainder keeps it exact).
        let rest = 100 - weight;
        let total: u32 = others.iter().sum::<u32>().max(1);
        let mut split = vec![Destination { cluster: "c0".into(), version: "canary".into(), weight }];
        let mut given = 0;
        for (i, o) in others.iter().enumerate() {
            let w = if i + 1 == others.len() { rest - given } else { (rest * o / total).min(rest - given) };
            given += w;
            split.push(Destination { cluster: format!("c{}", i + 1), version: "v1".into(), weight: w });
        }
        let canary = canary_for(weight, raw_steps.into_iter().collect());
        let others_total: u32 = split[1..].iter().map(|d| d.weight).sum();
        for (i, w) in canary.steps.iter().enumerate() {
            let at = canary.split_at(&split, i + 1);
            prop_assert_eq!(at.iter().map(|d| d.weight).sum::<u32>(), 100);
            prop_assert_eq!(at[0].weight, *w);
            for (d, was) in at[1..].iter().zip(&split[1..]) {
                let exact = if others_total == 0 {
                    f64::from(100 - w) / (split.len() - 1) as f64
                } else {
                    f64::from(100 - w) * f64::from(was.weight) / f64::from(others_total)
                };
                prop_assert!((f64::from(d.weight) - exact).abs() < 1.0, "{} for {exact}", d.weight);
            }
        }
        prop_assert_eq!(canary.split_at(&split, canary.steps.len()), split);
    }
}
