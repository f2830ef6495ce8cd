//! `meshdeck analyze` (issue #15), on the sim and on the real test bed: the seeded
//! talk fleet has no error (exit 0); two hand-written VirtualServices for one host
//! in one cluster are MULTI_OWNER (istioctl's IST0109), an error: exit 1; a Service
//! declared with other port names in another cluster is INCONSISTENT_SERVICE
//! (IST0170), which `istioctl analyze` of one cluster at a time cannot see.

mod common;

use common::{MeshdeckCli, TEST_LABEL, TestFleet, text};
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};

async fn create(fleet: &TestFleet, context: &str, kind: &str, object: Value) {
    let ar = match kind {
        "Service" => kube::core::ApiResource::erase::<k8s_openapi::api::core::v1::Service>(&()),
        _ => meshdeck::apply::target::resource(kind).expect("kind").0,
    };
    let api: Api<DynamicObject> = Api::namespaced_with(fleet.client(context).await, "default", &ar);
    let object: DynamicObject = serde_json::from_value(object).expect("object");
    api.create(&Default::default(), &object).await.expect("created");
}

fn findings(out: &std::process::Output) -> Vec<Value> {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON ({e}): {}", text(out)));
    v["findings"].as_array().expect("findings").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_passes_the_talk_fleet_and_fails_on_two_route_owners_naming_inconsistent_services() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let out = cli.run(&["analyze", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let clean = findings(&out);
    assert!(clean.iter().all(|f| f["severity"] != "error"), "{clean:#?}");

    for name in ["reviews-by-hand", "reviews-by-hand-too"] {
        let vs = json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "labels": {TEST_LABEL: "x"}},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}
        });
        create(&fleet, "cluster1", "VirtualService", vs).await;
    }
    for (context, port) in [("cluster1", "http-api"), ("cluster2", "tcp-api")] {
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "analyzed", "labels": {TEST_LABEL: "x"}},
            "spec": {"selector": {"app": "analyzed"}, "ports": [{"name": port, "port": 8080, "targetPort": 8080}]}
        });
        create(&fleet, context, "Service", svc).await;
    }
    // The watchers see the new objects within a moment; analyze reads a settled inventory.
    let mut last = None;
    for _ in 0..30 {
        let out = cli.run(&["analyze", "-o", "json"]).await;
        let found = findings(&out);
        let owners = found.iter().find(|f| f["code"] == "MULTI_OWNER");
        let inconsistent = found.iter().find(|f| f["code"] == "INCONSISTENT_SERVICE");
        if let (Some(o), Some(i)) = (owners, inconsistent) {
            assert_eq!(out.status.code(), Some(1), "an error finding fails the command: {}", text(&out));
            assert_eq!(o["severity"], "error");
            assert_eq!(o["istioCode"], "IST0109");
            assert_eq!(o["clusters"], json!(["cluster1"]));
            assert!(
                o["message"]
                    .as_str()
                    .expect("message")
                    .contains("VirtualService default/reviews-by-hand and VirtualService default/reviews-by-hand-too"),
                "{o}"
            );
            assert!(o["fix"].as_str().expect("fix").contains("one VirtualService per host"), "{o}");
            assert_eq!(i["severity"], "warning");
            assert_eq!(i["istioCode"], "IST0170");
            assert_eq!(i["clusters"], json!(["cluster1", "cluster2"]));
            assert_eq!(
                i["message"],
                "analyzed.default: ports (number/name/protocol) differ: 8080/http-api/HTTP in cluster1; 8080/tcp-api/TCP in cluster2"
            );
            let table = cli.run(&["analyze"]).await;
            assert_eq!(table.status.code(), Some(1));
            let t = text(&table);
            assert!(t.contains("SEVERITY") && t.contains("ERROR") && t.contains("MULTI_OWNER") && t.contains("IST0109"), "{t}");
            assert!(t.contains("error: 1 error finding"), "{t}");
            return;
        }
        last = Some(text(&out));
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("analyze never named both problems: {}", last.unwrap_or_default());
}

/// meshdeck's own objects (the talk's canary, with subsets in cluster1) pass; a
/// hand-written DestinationRule whose subset selects no pods (IST0173) and a route to
/// a subset no rule defines (IST0101) are errors, named with their objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_judges_subsets_of_live_objects() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let out = cli.run(&["apply", "-f", "examples/reviews-canary.yaml", "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = cli.run(&["analyze", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "the canary's own subsets select pods: {}", text(&out));

    let dr = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "ratings-by-hand", "labels": {TEST_LABEL: "x"}},
        "spec": {"host": "ratings", "subsets": [{"name": "v9", "labels": {"version": "v9"}}]}
    });
    create(&fleet, "cluster2", "DestinationRule", dr).await;
    let vs = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "ratings-by-hand", "labels": {TEST_LABEL: "x"}},
        "spec": {"hosts": ["ratings"], "http": [{"route": [
            {"destination": {"host": "ratings", "subset": "v9"}, "weight": 50},
            {"destination": {"host": "ratings", "subset": "v1"}, "weight": 50}
        ]}]}
    });
    create(&fleet, "cluster2", "VirtualService", vs).await;
    let mut last = String::new();
    for _ in 0..30 {
        let out = cli.run(&["analyze", "-o", "json"]).await;
        let found = findings(&out);
        let messages: Vec<(String, String)> = found
            .iter()
            .filter(|f| f["code"].as_str().is_some_and(|c| c.starts_with("SUBSET_")))
            .map(|f| (f["code"].as_str().unwrap_or("").to_string(), f["message"].as_str().unwrap_or("").to_string()))
            .collect();
        if messages.len() == 2 {
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            assert_eq!(
                messages,
                [
                    (
                        "SUBSET_NO_PODS".to_string(),
                        "ratings.default: subset v9 of DestinationRule default/ratings-by-hand in cluster2 selects no pods in cluster2".to_string()
                    ),
                    (
                        "SUBSET_UNDEFINED".to_string(),
                        "ratings.default: VirtualService default/ratings-by-hand in cluster2 routes to subset v1, which no DestinationRule for the host defines there".to_string()
                    ),
                ]
            );
            return;
        }
        last = text(&out);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("analyze never named both subset problems: {last}");
}

/// Shared discovery's remote secrets, judged across the fleet: cluster1 reads
/// cluster2's and a cluster9 nobody registered (stale); cluster2, a primary reading
/// cluster3's, has none for cluster1 (one-sided). Only the secrets' metadata is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_secrets_one_sided_or_for_no_registered_cluster_are_findings() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    for (context, remote) in [("cluster1", "cluster2"), ("cluster1", "cluster9"), ("cluster2", "cluster3")] {
        let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("istio-remote-secret-{remote}"), "namespace": "istio-system",
                "labels": {"istio/multiCluster": "true", TEST_LABEL: "x"},
                "annotations": {"networking.istio.io/cluster": remote}},
            "data": {remote: "c2VjcmV0"}
        }))
        .expect("secret");
        let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(fleet.client(context).await, "istio-system");
        api.create(&Default::default(), &secret).await.expect("created");
    }
    let mut last = String::new();
    for _ in 0..30 {
        let out = cli.run(&["analyze", "-o", "json"]).await;
        let found: Vec<(String, String)> = findings(&out)
            .iter()
            .filter(|f| f["code"].as_str().is_some_and(|c| c.starts_with("REMOTE_SECRET")))
            .map(|f| (f["code"].as_str().unwrap_or("").to_string(), f["message"].as_str().unwrap_or("").to_string()))
            .collect();
        if found.len() == 2 {
            assert_eq!(
                found,
                [
                    (
                        "REMOTE_SECRET_MISSING".to_string(),
                        "cluster1 reads cluster2's remote secret but cluster2 has none for cluster1: calls from cluster2 never see cluster1's endpoints".to_string()
                    ),
                    (
                        "REMOTE_SECRET_STALE".to_string(),
                        "cluster1 reads a remote secret for cluster9, which is no registered cluster: removed, renamed, or not registered here".to_string()
                    ),
                ]
            );
            let secret_text = String::from_utf8_lossy(&out.stdout).to_string();
            assert!(!secret_text.contains("c2VjcmV0"), "secret data never appears");
            return;
        }
        last = text(&out);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("analyze never named both remote secret problems: {last}");
}
