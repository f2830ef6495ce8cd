//! What only the real test bed (tests/realfleet) can show: the world as real
//! kube-apiserver and kube-controller-manager make it, and how meshdeck copes
//! with a real control plane's behaviour. Every test here is `real_only`; on
//! the sim run each says it did not run (tests/realfleet/test.sh runs them).

mod common;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// The seeded bookinfo pods, as kube-apiserver returns them after the
/// ReplicaSet controller made them and the test bed's kubelet ran them: the
/// shape meshdeck meets in production, and the sim's reference size.
#[tokio::test]
async fn real_only_seeded_pods_are_running_sidecar_injected_and_complete() {
    let Some(fleet) = common::real_fleet_only("pods made by kube-controller-manager").await else { return };
    let client = fleet.client("cluster2").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let listed = pods.list(&ListParams::default().labels("app=reviews")).await.expect("list");
    let mut versions: Vec<String> = listed.items.iter().filter_map(|p| p.metadata.labels.as_ref()?.get("version").cloned()).collect();
    versions.sort();
    assert_eq!(versions, ["v1", "v2", "v3"]);
    for p in &listed.items {
        let status = p.status.as_ref().expect("status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let statuses = status.container_statuses.as_ref().expect("containerStatuses");
        assert!(statuses.iter().all(|s| s.ready && s.image_id.contains("@sha256:")), "{statuses:?}");
        assert!(statuses.iter().any(|s| s.name == "istio-proxy"), "sidecar injected");
        assert!(p.metadata.owner_references.as_ref().is_some_and(|o| o.iter().any(|o| o.kind == "ReplicaSet")));
    }
    // Bytes per pod as the API server sends them (managedFields included): the sim's target size.
    let raw = client
        .request_text(http::Request::get("/api/v1/namespaces/default/pods?labelSelector=app%3Dreviews").body(vec![]).expect("request"))
        .await
        .expect("raw list");
    let v: serde_json::Value = serde_json::from_str(&raw).expect("json");
    let items = v["items"].as_array().expect("items");
    let per_pod = items.iter().map(|p| serde_json::to_vec(p).expect("bytes").len()).sum::<usize>() / items.len();
    println!("real fleet: {per_pod} bytes per seeded bookinfo pod (JSON, managedFields included)");
    assert!(per_pod > 4000, "a real injected pod is several KB: {per_pod}");
}

use std::time::Duration;

use meshdeck::apply::{ApplyOptions, PruneScope, desired_for_plan, prepare};
use meshdeck::inventory::{ClusterState, Inventory};

use common::versions;

async fn scale(fleet: &common::TestFleet, context: &str, deployment: &str, replicas: i32) {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};
    let api: Api<Deployment> = Api::namespaced(fleet.client(context).await, "default");
    api.patch(deployment, &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}})))
        .await
        .expect("scaled");
}

/// A real API server goes away mid-session and comes back after etcd was
/// compacted: its rows go stale (still shown), the other clusters stay live,
/// and once it is back the inventory resumes (re-listing where a watch is too
/// old) and shows a change made after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_only_an_api_server_restarted_mid_session_is_resumed_by_the_inventory() {
    let Some(fleet) = common::real_fleet_only("restarting a kube-apiserver").await else { return };
    let clusters = fleet.registry().await;
    let mut inv = Inventory::start(&clusters);
    inv.settled(Duration::from_secs(30)).await;

    fleet.control("POST", "/clusters/cluster2/apiserver/stop").await;
    let snap = common::snapshot_where(&mut inv, 60, "cluster2 unreachable", |s| {
        s.cluster("cluster2").is_some_and(|c| c.state == ClusterState::Unreachable)
    })
    .await;
    assert_eq!(snap.cluster("cluster1").map(|c| c.state), Some(ClusterState::Live));
    assert_eq!(snap.cluster("cluster3").map(|c| c.state), Some(ClusterState::Live));
    assert_eq!(versions(&snap, "reviews.default", "cluster2"), ["v1", "v2", "v3"], "stale rows stay visible");

    fleet.control("POST", "/compact").await;
    fleet.control("POST", "/clusters/cluster2/apiserver/start").await;
    common::snapshot_where(&mut inv, 60, "cluster2 live again", |s| s.cluster("cluster2").is_some_and(|c| c.state == ClusterState::Live))
        .await;
    scale(&fleet, "cluster2", "reviews-v3", 0).await;
    let snap =
        common::snapshot_where(&mut inv, 120, "v3 gone from cluster2", |s| versions(s, "reviews.default", "cluster2") == ["v1", "v2"])
            .await;
    assert_eq!(snap.cluster("cluster2").map(|c| c.state), Some(ClusterState::Live));
    scale(&fleet, "cluster2", "reviews-v3", 1).await;
    common::snapshot_where(&mut inv, 120, "v3 back in cluster2", |s| {
        s.service("reviews.default")
            .and_then(|r| r.clusters.get("cluster2"))
            .and_then(|p| p.versions.get("v3"))
            .is_some_and(|v| v.ready == 1)
    })
    .await;
}

/// cluster2's API server stops between the dry run and the writes: the check
/// before the first write finds it gone, so nothing is written anywhere (before,
/// cluster1 was written and rolled back, and the report said RollbackIncomplete
/// though nothing had landed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_only_cluster2_down_after_the_dry_run_leaves_every_cluster_as_before() {
    let Some(fleet) = common::real_fleet_only("stopping a kube-apiserver").await else { return };
    let clusters = fleet.registry().await;
    let mut inventory = Inventory::start(&clusters);
    let inv = inventory.settled(Duration::from_secs(30)).await;
    let before = common::istio_objects(&fleet).await;
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reviews-canary.yaml")).expect("example");
    let plan = meshdeck::plan::load("reviews-canary.yaml", &text, &inv).expect("plan");
    let rendered = meshdeck::render::render(&plan, &inv).expect("render");
    let opts = ApplyOptions { force_conflicts: false, concurrency: 8, progress: None, ..Default::default() };
    let set = prepare(&clusters, desired_for_plan(&clusters, &plan, &rendered, &PruneScope::default()).await.expect("desired"), &opts)
        .await
        .expect("prepared");
    drop(inventory);

    fleet.control("POST", "/clusters/cluster2/apiserver/stop").await;
    let result = common::write_confirmed(&clusters, &set, &opts).await;
    fleet.control("POST", "/clusters/cluster2/apiserver/start").await;
    let err = result.expect_err("the apply stops before writing");
    assert!(err.to_string().starts_with("cluster2: ") && err.to_string().contains("nothing was written"), "{err}");
    assert_eq!(common::istio_objects(&fleet).await, before, "every cluster is as it was before");
}
