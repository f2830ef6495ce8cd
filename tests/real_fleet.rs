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
