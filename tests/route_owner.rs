//! One owner per route (issue #19), on the sim and on the real test bed: a
//! second plan for the same service and caller is refused, `--replace` swaps
//! owners in one apply, failover plans keep their own hosts, a forced shared
//! topology without remote secrets is refused, and the composer edits the plan
//! that already routes a service.

mod common;

use common::{MeshdeckCli, TestFleet, istio_objects, text, write_plan};
use serde_json::Value;

const CANARY: &str = "examples/reviews-canary.yaml";

fn canary_named(name: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CANARY))
        .expect("example")
        .replace("name: reviews-canary", &format!("name: {name}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_owner_is_refused_and_replace_swaps_owners_in_one_apply() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let out = cli.run(&["apply", "-f", CANARY, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let before = istio_objects(&fleet).await;

    let other = write_plan(&cli, "other.yaml", &canary_named("reviews-other"));
    let out = cli.run(&["apply", "-f", &other, "--yes"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("reviews.default from cluster1 is already routed by plan reviews-canary (VirtualService default/reviews-canary); one owner per route: edit that plan, or replace it: --replace reviews-canary"),
        "{}",
        text(&out)
    );
    assert_eq!(istio_objects(&fleet).await, before, "nothing was written");

    let out = cli.run(&["apply", "-f", &other, "--yes", "--replace", "reviews-canary"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after: Vec<String> = istio_objects(&fleet).await.into_keys().collect();
    assert!(after.iter().all(|k| !k.contains("reviews-canary")), "the replaced plan's objects are pruned: {after:?}");
    assert!(after.iter().any(|k| k.ends_with("VirtualService/default/reviews-other")), "{after:?}");
    let records: Vec<Value> = serde_json::from_slice(&cli.run(&["history", "-o", "json"]).await.stdout).expect("history");
    assert_eq!(records.len(), 2, "one record for the swap");
    assert_eq!(records[1]["plans"], serde_json::json!(["reviews-other", "reviews-canary"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_plans_from_different_callers_keep_their_own_hosts_and_a_forced_shared_topology_needs_remote_secrets() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let failover = |name: &str, from: &str, version: &str| {
        format!(
            "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {{name: {name}}}\nspec:\n  service: reviews.default\n  from: {{clusters: [{from}]}}\n  failover:\n    - {{cluster: {from}}}\n    - {{cluster: cluster2, version: {version}}}\n  outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}\n"
        )
    };
    let mut hosts = Vec::new();
    for (name, from, version) in [("one-failover", "cluster1", "v1"), ("three-failover", "cluster3", "v3")] {
        let file = write_plan(&cli, &format!("{name}.yaml"), &failover(name, from, version));
        let out = cli.run(&["render", "-f", &file, "-o", "json"]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let rendered: Value = serde_json::from_slice(&out.stdout).expect("json");
        let in_cluster2: Vec<String> = rendered["clusters"]["cluster2"]
            .as_array()
            .expect("cluster2 objects")
            .iter()
            .filter(|o| o["kind"] == "ServiceEntry")
            .flat_map(|o| o["spec"]["hosts"].as_array().cloned().unwrap_or_default())
            .filter_map(|h| h.as_str().map(String::from))
            .collect();
        assert_eq!(in_cluster2, [format!("{name}.reviews.default.failover.global")], "{name}");
        hosts.extend(in_cluster2);
    }
    assert_ne!(hosts[0], hosts[1], "their endpoints never mix");

    let forced = canary_named("reviews-canary") + "  topology: sharedDiscovery\n";
    let file = write_plan(&cli, "forced.yaml", &forced);
    let out = cli.run(&["render", "-f", &file]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("topology sharedDiscovery, but cluster1's istiod reads no remote secret for cluster2"), "{}", text(&out));
}

/// The composer on a service that a plan routes opens that plan (its name and its
/// weights), and the fleet warns when a route has two owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_composer_edits_the_owning_plan_and_two_owners_are_warned() {
    use meshdeck::tui::app::{AppState, update};
    use meshdeck::tui::msg::Msg;
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let out = cli.run(&["apply", "-f", CANARY, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    let clusters = fleet.registry().await;
    let mut inv = meshdeck::inventory::Inventory::start(&clusters);
    // Settled too: the composer calls from the first cluster that runs reviews, which is
    // cluster1 only once cluster1's services are listed (its Istio objects may come first).
    let snap = common::snapshot_where(&mut inv, 30, "the canary's VirtualService seen, every cluster settled", |s| {
        s.settled()
            && s.service("reviews.default").is_some_and(|r| r.clusters.contains_key("cluster1"))
            && s.istio_objects.iter().any(|o| o.kind == "VirtualService" && o.plan.as_deref() == Some("reviews-canary"))
    })
    .await;
    let mut app = AppState::for_test((*snap).clone());
    app.filter = "reviews".into();
    app.recompute_rows();
    update(&mut app, Msg::Key(crossterm::event::KeyEvent::from(crossterm::event::KeyCode::Char('r'))));
    let records = meshdeck::apply::history::History::open(cli.data.path()).expect("history").list().expect("records");
    update(&mut app, Msg::History(records));
    let c = app.composer.as_ref().expect("composer");
    assert_eq!(c.plan_name(), "reviews-canary", "composing edits the plan that routes reviews from cluster1");
    let weights: Vec<(String, Option<String>, u32)> =
        c.rows.iter().map(|r| (r.cluster.clone(), r.version.clone(), r.weight)).filter(|r| r.2 > 0).collect();
    assert_eq!(
        weights,
        [
            ("cluster1".to_string(), Some("v1".to_string()), 15),
            ("cluster1".into(), Some("v2".into()), 10),
            ("cluster2".into(), Some("v3".into()), 75)
        ]
    );

    // A hand-written VirtualService for the same host: two owners, warned.
    let (ar, _) = meshdeck::apply::target::resource("VirtualService").expect("kind");
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(fleet.client("cluster1").await, "default", &ar);
    let theirs: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews-by-hand", "labels": {common::TEST_LABEL: "x"}},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}
    }))
    .expect("object");
    api.create(&Default::default(), &theirs).await.expect("created");
    let snap = common::snapshot_where(&mut inv, 30, "two owners warned", |s| s.warnings.iter().any(|w| w.code == "MULTI_OWNER")).await;
    let w = snap.warnings.iter().find(|w| w.code == "MULTI_OWNER").expect("warning");
    assert_eq!(
        w.message,
        "reviews.default from cluster1 is routed by VirtualService default/reviews-by-hand and plan reviews-canary: a sidecar follows only one"
    );
}
