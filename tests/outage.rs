//! After an outage a cluster is live again, and says so (issue #21), on the sim
//! and on the real test bed: the inventory's state recovers once the cluster
//! answers (a quiet watch is listed again), `inventory --watch` prints both
//! transitions, and the cockpit's log has them with how long the outage lasted.

mod common;

use std::io::BufRead;
use std::time::Duration;

use common::{MeshdeckCli, TestFleet};
use meshdeck::inventory::{ClusterState, Inventory};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_down_for_six_seconds_is_live_again_and_the_watch_prints_both_transitions() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let mut watch = cli
        .command(&["--context", "cluster1", "--context", "cluster2", "--context", "cluster3", "inventory", "--watch"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    let stdout = watch.stdout.take().expect("stdout");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });

    let clusters = fleet.registry().await;
    let mut inv = Inventory::start(&clusters);
    inv.settled(Duration::from_secs(30)).await;
    // Let the watch command settle too (it prints the table first).
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet.take_down("cluster2").await;
    common::snapshot_where(&mut inv, 60, "cluster2 unreachable", |s| {
        s.cluster("cluster2").is_some_and(|c| c.state == ClusterState::Unreachable)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    fleet.bring_up("cluster2").await;
    let snap = common::snapshot_where(&mut inv, 60, "cluster2 live again", |s| {
        s.cluster("cluster2").is_some_and(|c| c.state == ClusterState::Live)
    })
    .await;
    assert!(snap.cluster("cluster2").and_then(|c| c.state_since).is_some());

    let seen = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while std::time::Instant::now() < deadline {
            if let Ok(l) = lines_rx.recv_timeout(Duration::from_millis(200)) {
                seen.push(l);
            }
            let down = seen.iter().position(|l| l.contains("cluster cluster2 unreachable"));
            let up = seen.iter().rposition(|l| l.contains("cluster cluster2 live"));
            if let (Some(d), Some(u)) = (down, up)
                && u > d
            {
                break;
            }
        }
        seen
    })
    .await
    .expect("joined");
    let _ = watch.kill();
    let _ = watch.wait();
    let down = seen.iter().position(|l| l.contains("cluster cluster2 unreachable"));
    let up = seen.iter().rposition(|l| l.contains("cluster cluster2 live"));
    assert!(down.is_some() && up > down, "the watch printed unreachable, then live: {seen:#?}");
}

/// Expired tokens, then valid again: unauthorized, then live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_only_a_401_outage_recovers() {
    let fleet = TestFleet::start().await;
    if fleet.is_real() {
        return;
    }
    let clusters = fleet.registry().await;
    let mut inv = Inventory::start(&clusters);
    inv.settled(Duration::from_secs(30)).await;
    let c2 = fleet.sim().cluster("cluster2").expect("cluster2").clone();
    c2.set_fault(meshdeck_sim::Fault::TokensExpired);
    common::snapshot_where(&mut inv, 60, "cluster2 unauthorized", |s| {
        s.cluster("cluster2").is_some_and(|c| c.state == ClusterState::Unauthorized)
    })
    .await;
    c2.set_fault(meshdeck_sim::Fault::Healthy);
    // A refusal backs off 30 s before the next list; the probe and that list bring it back.
    common::snapshot_where(&mut inv, 90, "cluster2 live again", |s| s.cluster("cluster2").is_some_and(|c| c.state == ClusterState::Live))
        .await;
}
