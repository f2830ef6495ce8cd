//! `bench render`: rendering plans over a synthetic inventory.

use super::*;

/// A synthetic inventory shaped like the sim's: `services` services per cluster with v1 and v2.
pub fn synthetic_inventory(clusters: usize, services: usize) -> crate::inventory::FleetSnapshot {
    use crate::inventory::{ClusterState, ClusterView, FleetSnapshot, MeshFacts, ServicePresence, ServiceRow, VersionCount};
    let names: Vec<String> = (1..=clusters).map(|i| format!("cluster{i}")).collect();
    let views = names
        .iter()
        .enumerate()
        .map(|(i, n)| ClusterView {
            name: n.clone(),
            context: n.clone(),
            state: ClusterState::Live,
            version_label: "version".into(),
            mesh: MeshFacts {
                istio_version: Some("1.27.3".into()),
                trust_domain: Some(format!("{n}.local")),
                cluster_id: Some(n.clone()),
                network: Some(format!("network{}", i + 1)),
                east_west_gateway: Some(meshdeck_sim::fleet::eastwest_address(i + 1)),
                istio_crds: true,
                ..Default::default()
            },
            ..Default::default()
        })
        .collect();
    let count = VersionCount { ready: 1, total: 1, injected: 1 };
    let rows = (0..services)
        .map(|s| {
            let presence = ServicePresence {
                versions: [("v1".to_string(), count), ("v2".to_string(), count)].into(),
                ports: vec![8080],
                selector: [("app".to_string(), format!("svc-{s:04}"))].into(),
                ..Default::default()
            };
            std::sync::Arc::new(ServiceRow {
                name: format!("svc-{s:04}"),
                namespace: format!("apps-{}", s % 10),
                clusters: names.iter().map(|n| (n.clone(), presence.clone())).collect(),
            })
        })
        .collect();
    FleetSnapshot { clusters: views, services: rows, ..Default::default() }
}

pub(super) fn bench_render(size: &RenderSize) -> Result<(), CliError> {
    use crate::plan::{Destination, Plan, RouteAction, ServiceRef, TopologyChoice, TrafficRoute};
    let inv = synthetic_inventory(size.clusters, size.services);
    let plans: Vec<Plan> = (0..size.plans)
        .map(|i| {
            let s = i % size.services;
            let c = |k: usize| format!("cluster{}", (i * 7 + k * 13) % size.clusters + 1);
            let (a, b) = (c(0), c(1));
            let b = if a == b { format!("cluster{}", (i + 1) % size.clusters + 1) } else { b };
            let route = TrafficRoute {
                name: format!("plan-{i}"),
                service: ServiceRef { name: format!("svc-{s:04}"), namespace: format!("apps-{}", s % 10) },
                from_clusters: vec![a.clone()],
                action: RouteAction::Split(vec![
                    Destination { cluster: b.clone(), version: "v2".into(), weight: 60 },
                    Destination { cluster: a.clone(), version: "v1".into(), weight: 30 },
                    Destination { cluster: a, version: "v2".into(), weight: 10 },
                ]),
                outlier_detection: None,
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
        })
        .collect();
    let started = Instant::now();
    let mut objects = 0;
    let mut bytes = 0;
    for p in &plans {
        let out = crate::render::render(p, &inv).map_err(|e| CliError::failed(e.to_string()))?;
        objects += out.object_count();
        bytes += out.to_yaml().len();
    }
    let t = started.elapsed();
    println!(
        "render: {} plans over {} clusters x {} services: {objects} objects ({:.1} MiB of YAML) in {:.3} s ({:.0} us per plan, YAML included)",
        size.plans,
        size.clusters,
        size.services,
        bytes as f64 / 1048576.0,
        t.as_secs_f64(),
        t.as_secs_f64() * 1e6 / size.plans as f64
    );
    Ok(())
}
