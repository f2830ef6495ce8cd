//! End to end through a real pseudo-terminal: tmux runs `meshdeck` against the
//! fleet (the sim, or the real test bed with MESHDECK_TEST_FLEET=real); keys
//! compose the talk's 75/15/10 canary and apply it; the objects must then be
//! live. Needs tmux on PATH (CI installs it; under CI a missing tmux fails).

mod common;

use common::tmux::start_cockpit;

use std::process::Command;
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compose_the_canary_with_keys_and_apply_it_to_the_fleet() {
    if !common::tool_available("tmux", &["-V"]) {
        return;
    }
    let fleet = common::TestFleet::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = fleet.kubeconfig_path();
    let home = dir.path().to_path_buf();
    let tmux = tokio::task::spawn_blocking(move || {
        let t = start_cockpit("e2e", &home, &kubeconfig, "--context cluster1 --context cluster2 --context cluster3", 120, 36);
        t.wait_for(&["3/3 clusters live", "reviews", "v1 1/1 v2 1/1 v3 1/1", "CLUSTER3"], 30);
        t.compose_canary(&[]);
        t.keys(&["A"]);
        t.wait_for(&["create 6 on cluster1, cluster2"], 20);
        t.keys(&["y"]);
        t.wait_for(&["Applied: recorded as"], 20);
        t
    })
    .await
    .expect("driving the cockpit");

    let (ar, _) = meshdeck::apply::target::resource("VirtualService").expect("kind");
    let vs: Api<DynamicObject> = Api::namespaced_with(fleet.client("cluster1").await, "default", &ar);
    let live = vs.get("reviews-route").await.expect("the VirtualService is live in cluster1");
    let weights: Vec<u64> =
        live.data["spec"]["http"][0]["route"].as_array().expect("routes").iter().filter_map(|r| r["weight"].as_u64()).collect();
    assert_eq!(weights, [15, 10, 75]);
    let (gw, _) = meshdeck::apply::target::resource("Gateway").expect("kind");
    let gws: Api<DynamicObject> = Api::namespaced_with(fleet.client("cluster2").await, "default", &gw);
    assert!(gws.get("reviews-route-eastwest").await.is_ok(), "cluster2's east-west Gateway is live");

    tokio::task::spawn_blocking(move || {
        tmux.keys(&["q"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Command::new("tmux").args(["has-session", "-t", &tmux.session]).status().is_ok_and(|s| s.success()) {
            assert!(Instant::now() < deadline, "q quits the cockpit");
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("quit");
}

/// The kubeconfig as it is (cluster1 and its restricted alias): in the clusters
/// view Enter lets the restricted identity act for cluster1, and the composed
/// canary with an access rule is refused at preflight, naming the permission;
/// Enter again lets the admin act, and the same plan applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acting_as_the_restricted_alias_refuses_and_switching_back_writes() {
    if !common::tool_available("tmux", &["-V"]) {
        return;
    }
    let fleet = common::TestFleet::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = fleet.kubeconfig_path();
    let home = dir.path().to_path_buf();
    let tmux = tokio::task::spawn_blocking(move || {
        let t = start_cockpit("alias", &home, &kubeconfig, "", 160, 40);
        t.wait_for(&["3/3 clusters live", "reviews"], 30);
        t.keys(&["g", "c"]);
        t.wait_for(&["ALIASES", "cluster1-restricted"], 10);
        t.keys(&["Enter"]);
        t.wait_for(&["cluster1: acting as cluster1-restricted"], 20);
        // Its watchers restarted with the restricted credentials: wait until they have listed.
        t.wait_for_row(&["cluster1", "cluster1-restricted", "cluster1", "live"], 30);
        // Escape alone: followed at once by a key, a terminal reads it as Alt+key.
        t.keys(&["Escape"]);
        t.wait_for(&["meshdeck fleet"], 10);
        t.compose_canary(&["a"]);
        t.keys(&["A"]);
        t.wait_for(&["cannot create authorizationpolicies.security.istio.io"], 20);
        t.keys(&["Escape"]);
        t.wait_for(&["meshdeck composer"], 10);
        t.keys(&["g", "c"]);
        t.wait_for(&["ALIASES"], 10);
        t.keys(&["Enter"]);
        t.wait_for(&["cluster1: acting as cluster1 "], 20);
        t.wait_for_row(&["cluster1", "cluster1", "cluster1-restricted", "live"], 30);
        t.keys(&["Escape"]);
        t.wait_for(&["meshdeck composer"], 10);
        t.keys(&["A"]);
        t.wait_for(&["on cluster1, cluster2"], 20);
        t.keys(&["y"]);
        t.wait_for(&["Applied: recorded as"], 20);
        t
    })
    .await
    .expect("driving the cockpit");

    let (ar, _) = meshdeck::apply::target::resource("AuthorizationPolicy").expect("kind");
    let aps: Api<DynamicObject> = Api::namespaced_with(fleet.client("cluster1").await, "default", &ar);
    let live = aps.list(&Default::default()).await.expect("list");
    assert!(!live.items.is_empty(), "the access policy is live in cluster1 once the admin acts again");
    drop(tmux);
}
