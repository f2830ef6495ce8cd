//! The live inventory: the bookinfo table and mesh facts and live updates (on
//! the sim, or the real test bed with MESHDECK_TEST_FLEET=real), and faults
//! (down, slow, 401) that stay per cluster (`sim_only`: the sim's fault hooks).

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use meshdeck::inventory::{ClusterState, Inventory};
use meshdeck_sim::{Fault, SimConfig};

use common::versions;

#[tokio::test]
async fn bookinfo_across_three_clusters_with_mesh_facts() {
    let fleet = common::TestFleet::start().await;
    let clusters = fleet.registry().await;
    let mut inv = Inventory::start(&clusters);
    let snap = inv.settled(Duration::from_secs(20)).await;
    assert!(snap.clusters.iter().all(|c| c.state == ClusterState::Live), "{:?}", snap.clusters);
    assert_eq!(versions(&snap, "reviews.default", "cluster1"), ["v1", "v2"]);
    assert_eq!(versions(&snap, "reviews.default", "cluster2"), ["v1", "v2", "v3"]);
    assert_eq!(versions(&snap, "reviews.default", "cluster3"), ["v1", "v2"]);
    let reviews = snap.service("reviews.default").expect("reviews");
    assert_eq!(reviews.clusters["cluster2"].versions["v3"].total, 1);
    assert_eq!(reviews.clusters["cluster2"].service_accounts, ["bookinfo-reviews"]);
    assert_eq!(reviews.clusters["cluster2"].ports, [9080]);

    let c2 = snap.cluster("cluster2").expect("cluster2");
    assert_eq!(c2.mesh.trust_domain.as_deref(), Some("cluster2.local"));
    assert_eq!(c2.mesh.network.as_deref(), Some("network2"));
    assert_eq!(c2.mesh.cluster_id.as_deref(), Some("cluster2"));
    assert_eq!(c2.mesh.istio_version.as_deref(), Some(meshdeck_sim::fleet::ISTIO_VERSION));
    assert_eq!(c2.mesh.east_west_gateway.as_deref(), Some(meshdeck_sim::fleet::eastwest_address(2).as_str()));
    assert!(c2.mesh.istio_crds);
    let roots: std::collections::BTreeSet<_> = snap.clusters.iter().map(|c| c.mesh.root_cert_fingerprint.clone()).collect();
    assert_eq!(roots.len(), 1, "one root of trust across the fleet");
    assert!(roots.iter().all(|r| r.as_ref().is_some_and(|r| r.starts_with("sha256:"))));
    assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);

    // Istio's plugged-in CA: an intermediate per cluster, chaining to the one root istiod distributes.
    for c in ["cluster1", "cluster2"] {
        let client = fleet.client(c).await;
        let secret =
            Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), "istio-system").get("cacerts").await.expect("cacerts");
        let data = secret.data.expect("data");
        let text = |k: &str| String::from_utf8(data.get(k).unwrap_or_else(|| panic!("{c}: cacerts lacks {k}")).0.clone()).expect("pem");
        let root =
            Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(client, "istio-system").get("istio-ca-root-cert").await.expect("root");
        assert_eq!(Some(&text("root-cert.pem")), root.data.as_ref().and_then(|d| d.get("root-cert.pem")), "{c}");
        assert_eq!(text("cert-chain.pem"), format!("{}{}", text("ca-cert.pem"), text("root-cert.pem")));
        assert!(text("ca-key.pem").contains("PRIVATE KEY"));
    }

    // A pod of a new version shows up as a change, without a re-scan.
    let pods: Api<Pod> = Api::namespaced(fleet.client("cluster1").await, "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "reviews-v9-abc", "labels": {"app": "reviews", "version": "v9", common::TEST_LABEL: "inventory"}},
        "spec": {"containers": [{"name": "reviews", "image": "x"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("create");
    let snap = common::snapshot_where(&mut inv, 10, "v9 appears in cluster1", |s| {
        versions(s, "reviews.default", "cluster1").contains(&"v9".to_string())
    })
    .await;
    assert_eq!(versions(&snap, "reviews.default", "cluster2"), ["v1", "v2", "v3"], "other clusters untouched");
}

#[tokio::test]
async fn sim_only_a_down_cluster_goes_stale_alone_and_resumes_with_a_relist() {
    let fleet = common::fleet(SimConfig::default()).await;
    let clusters = common::registry(&fleet).await;
    let mut inv = Inventory::start(&clusters);
    inv.settled(Duration::from_secs(20)).await;
    let c2 = fleet.cluster("cluster2").expect("cluster2");
    c2.set_fault(Fault::Down);
    let snap = common::snapshot_where(&mut inv, 20, "cluster2 unreachable", |s| {
        s.cluster("cluster2").is_some_and(|c| c.state == ClusterState::Unreachable)
    })
    .await;
    assert_eq!(snap.cluster("cluster1").map(|c| c.state), Some(ClusterState::Live));
    assert_eq!(snap.cluster("cluster3").map(|c| c.state), Some(ClusterState::Live));
    assert_eq!(versions(&snap, "reviews.default", "cluster2"), ["v1", "v2", "v3"], "stale rows stay visible");
    assert!(snap.cluster("cluster2").and_then(|c| c.last_seen).is_some(), "the stale age is known");

    // While it is down, v3 goes away and history is compacted: coming back needs a re-list (410).
    {
        let pods = c2.resource("", "v1", "pods").expect("pods");
        let mut store = c2.store();
        let v3: Vec<String> = store
            .all_of(&pods)
            .iter()
            .filter(|p| p.labels().and_then(|l| l.get("version")).and_then(|v| v.as_str()) == Some("v3"))
            .map(|p| p.name().to_string())
            .collect();
        for name in v3 {
            store.delete(&pods, "default", &name, &Default::default()).expect("delete");
        }
        store.compact();
    }
    c2.set_fault(Fault::Healthy);
    let snap = common::snapshot_where(&mut inv, 15, "cluster2 live again without v3", |s| {
        s.cluster("cluster2").is_some_and(|c| c.state == ClusterState::Live) && versions(s, "reviews.default", "cluster2") == ["v1", "v2"]
    })
    .await;
    assert!(snap.cluster("cluster2").and_then(|c| c.error.clone()).is_none());
}

#[tokio::test]
async fn sim_only_expired_tokens_and_a_slow_cluster_stay_per_cluster() {
    let fleet = common::fleet(SimConfig::default()).await;
    fleet.cluster("cluster3").expect("cluster3").set_fault(Fault::Slow(Duration::from_secs(3)));
    fleet.cluster("cluster2").expect("cluster2").set_fault(Fault::TokensExpired);
    let clusters = common::registry(&fleet).await;
    let mut inv = Inventory::start(&clusters);
    let snap = common::snapshot_where(&mut inv, 20, "cluster1 live and cluster2 unauthorized", |s| {
        s.cluster("cluster1").is_some_and(|c| c.state == ClusterState::Live)
            && s.cluster("cluster2").is_some_and(|c| c.state == ClusterState::Unauthorized)
    })
    .await;
    assert!(snap.cluster("cluster3").is_some_and(|c| c.state.pending()), "the slow cluster is still syncing while the others are shown");
    assert!(snap.cluster("cluster2").and_then(|c| c.error.as_ref()).is_some_and(|e| e.message().contains("401")));
    assert!(!versions(&snap, "reviews.default", "cluster1").is_empty());
    common::snapshot_where(&mut inv, 30, "the slow cluster arrives", |s| {
        s.cluster("cluster3").is_some_and(|c| c.state == ClusterState::Live)
    })
    .await;
}

/// More clusters that never answer than pod lists may run at once (8 across the
/// fleet): each holds its turn for a few seconds at most, so the one healthy
/// cluster is still shown in full, and the silent ones say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sim_only_clusters_that_never_answer_do_not_hold_up_a_healthy_one() {
    let fleet = common::fleet(SimConfig { clusters: 10, ..Default::default() }).await;
    let clusters = common::registry(&fleet).await;
    for c in fleet.clusters.iter().filter(|c| c.name != "cluster10") {
        c.set_fault(Fault::Slow(Duration::from_secs(600)));
    }
    let started = std::time::Instant::now();
    let mut inv = Inventory::start(&clusters);
    let snap = common::snapshot_where(&mut inv, 20, "cluster10 live with bookinfo", |s| {
        s.cluster("cluster10").is_some_and(|c| c.state == ClusterState::Live) && !versions(s, "reviews.default", "cluster10").is_empty()
    })
    .await;
    eprintln!("cluster10 live after {:.1} s beside 9 silent clusters", started.elapsed().as_secs_f64());
    assert!(snap.clusters.iter().filter(|c| c.name != "cluster10").all(|c| c.state != ClusterState::Live));
    common::snapshot_where(&mut inv, 20, "the silent clusters say they do not answer", |s| {
        s.clusters.iter().filter(|c| c.name != "cluster10").all(|c| c.state == ClusterState::Unreachable)
    })
    .await;
}
