//! Rollback and prune that reason about the fleet (issue #18), from the command
//! line, on the sim and on the real test bed: the whole plan comes back, later
//! applies are named, a record stays with its clusters, personas are checked on
//! every write and delete, and a plan is its kind and its name.

mod common;

use common::{MeshdeckCli, TestFleet, istio_objects, text, write_plan};
use serde_json::Value;

const CANARY: &str = "examples/reviews-canary.yaml";

fn canary_with(weights: (u32, u32, u32)) -> String {
    format!(
        "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {{name: reviews-canary}}\nspec:\n  service: reviews.default\n  from: {{clusters: [cluster1]}}\n  split:\n    - {{cluster: cluster2, version: v3, weight: {}}}\n    - {{cluster: cluster1, version: v1, weight: {}}}\n    - {{cluster: cluster1, version: v2, weight: {}}}\n",
        weights.0, weights.1, weights.2
    )
}

const LOCAL_ONLY: &str = "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: reviews-canary}\nspec:\n  service: reviews.default\n  from: {clusters: [cluster1]}\n  split:\n    - {cluster: cluster1, version: v1, weight: 90}\n    - {cluster: cluster1, version: v2, weight: 10}\n";

async fn last_id(cli: &std::sync::Arc<MeshdeckCli>) -> String {
    let out = cli.run(&["history", "-o", "json"]).await;
    let records: Vec<Value> = serde_json::from_slice(&out.stdout).expect("history");
    records.last().and_then(|r| r["id"].as_str()).expect("a record").to_string()
}

/// Names of the live Istio objects, without resourceVersions.
async fn names(fleet: &TestFleet) -> Vec<String> {
    istio_objects(fleet).await.into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_names_later_applies_and_brings_back_the_whole_plan() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let out = cli.run(&["apply", "-f", CANARY, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let a = last_id(&cli).await;
    let whole = names(&fleet).await;
    let modified = write_plan(&cli, "canary-70.yaml", &canary_with((70, 20, 10)));
    let out = cli.run(&["apply", "-f", &modified, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let a2 = last_id(&cli).await;

    // Rolling back A would silently undo A2: it names A2 and refuses.
    let before = istio_objects(&fleet).await;
    let out = cli.run(&["rollback", &a, "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&format!("changed since by apply {a2} (reviews-canary)")), "{}", text(&out));
    assert_eq!(istio_objects(&fleet).await, before, "nothing was written");

    let out = cli.run(&["rollback", &a, "--yes", "--force"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(names(&fleet).await.is_empty(), "A's before-state: no canary objects");

    // A2 changed 2 objects and left the rest as they were: its before-state is the
    // whole canary, not just the 2 objects it changed (no route to a missing host).
    let out = cli.run(&["rollback", &a2, "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "the rollback of A changed A2's objects since: {}", text(&out));
    let out = cli.run(&["rollback", &a2, "--yes", "--force"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(names(&fleet).await, whole, "every object of the canary is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_from_another_fleet_with_the_same_names_is_refused() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let out = cli.run(&["apply", "-f", CANARY, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let id = last_id(&cli).await;

    // Another fleet, the same context names (staging and prod kubeconfigs do that).
    let other = common::fleet(meshdeck_sim::SimConfig::default()).await;
    let dir = tempfile::tempdir().expect("tmp");
    other.write_kubeconfig(&dir.path().join("kubeconfig")).expect("kubeconfig");
    let prod = MeshdeckCli::new(dir.path().join("kubeconfig"));
    std::fs::create_dir_all(prod.data.path().join("history")).expect("mkdir");
    for e in std::fs::read_dir(cli.data.path().join("history")).expect("history").flatten() {
        std::fs::copy(e.path(), prod.data.path().join("history").join(e.file_name())).expect("copy");
    }
    let out = prod.run(&["apply", "-f", CANARY, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let prod_state = common::fingerprint(&common::client(&other, "cluster1").await).await;
    let out = prod.run(&["rollback", &id, "--yes", "--force"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&format!("{id} was recorded on other clusters than these")), "{}", text(&out));
    assert!(text(&out).contains("cluster1: recorded on"), "{}", text(&out));
    assert_eq!(common::fingerprint(&common::client(&other, "cluster1").await).await, prod_state, "nothing was written on the other fleet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persona_is_checked_on_prunes_and_rollbacks() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    std::fs::write(
        cli.config.path().join("policy.yaml"),
        "personas:\n  - name: local-team\n    routeFrom: [{clusters: [cluster1], namespaces: [default]}]\n    routeTo: [{clusters: [cluster1], services: ['reviews.default']}]\n  - name: admin\n    match: {users: [cluster1-admin]}\n    routeFrom: [{clusters: ['*']}]\n    routeTo: [{clusters: ['*']}]\n    accessPolicies: true\n",
    )
    .expect("policy");
    let out = cli.run(&["apply", "-f", CANARY, "--yes", "--as-persona", "admin"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let id = last_id(&cli).await;
    let before = istio_objects(&fleet).await;

    // Its plan routes only inside cluster1, but applying it prunes cluster2's objects.
    let local = write_plan(&cli, "local.yaml", LOCAL_ONLY);
    let out = cli.run(&["apply", "-f", &local, "--yes", "--as-persona", "local-team"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("persona local-team refuses reviews-canary: may not delete"), "{}", text(&out));
    assert!(text(&out).contains("in cluster2"), "{}", text(&out));
    assert_eq!(istio_objects(&fleet).await, before, "nothing was written");

    // Rolling back the admin's apply would delete in cluster2 too.
    let out = cli.run(&["rollback", &id, "--yes", "--as-persona", "local-team"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&format!("persona local-team refuses rollback of {id}: may not delete")), "{}", text(&out));
    assert_eq!(istio_objects(&fleet).await, before, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_policy_named_like_a_route_never_touches_the_routes_objects() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let out = cli.run(&["apply", "-f", CANARY, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let before = istio_objects(&fleet).await;
    let callers = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reviews-callers.yaml"))
        .expect("example")
        .replace("name: reviews-callers", "name: reviews-canary");
    let clash = write_plan(&cli, "clash.yaml", &callers);
    let out = cli.run(&["apply", "-f", &clash, "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("belongs to the TrafficRoute reviews-canary; this plan's reviews-canary is a AccessPolicy"),
        "{}",
        text(&out)
    );
    assert_eq!(istio_objects(&fleet).await, before, "the route's objects are untouched");

    // In one file, one name is one plan.
    let both = format!("{}\n---\n{callers}", canary_with((75, 15, 10)));
    let file = write_plan(&cli, "both.yaml", &both);
    let out = cli.run(&["render", "-f", &file]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("a TrafficRoute named reviews-canary is already in this file"), "{}", text(&out));
}
