//! The transport under each cluster's client: the API server is offered HTTP/2,
//! so one connection per cluster carries every list and watch (kube's own client
//! opened one per watch: 27 to each sim cluster, each with its TLS buffers).
//! On the sim, or the real test bed with MESHDECK_TEST_FLEET=real. Alone in its
//! binary: it counts this process's connections.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use meshdeck::inventory::{ClusterState, Inventory};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_per_cluster_carries_every_watch() {
    let fleet = common::TestFleet::start().await;
    let clusters = fleet.registry().await;
    let ports: Vec<(String, u16)> = clusters
        .iter()
        .map(|c| {
            let server = c.context.server.clone().expect("a server URL");
            let uri: http::Uri = server.parse().expect("server URL parses");
            (c.name.clone(), uri.port_u16().unwrap_or(443))
        })
        .collect();
    // Connections the test's own setup left open (the real bed's reset).
    let before: Vec<usize> = ports.iter().map(|(_, p)| established_to(*p)).collect();

    let mut inv = Inventory::start(&clusters);
    let snap = inv.settled(Duration::from_secs(30)).await;
    assert!(snap.clusters.iter().all(|c| c.state == ClusterState::Live), "{:?}", snap.clusters);
    // The watches are running: pods, services, mesh facts and every Istio kind.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for ((name, port), before) in ports.iter().zip(before) {
        let now = established_to(*port);
        assert!(now >= 1, "{name}: no connection to port {port} while its watches run");
        // Requests that start together, before the first handshake has said the
        // server speaks HTTP/2, may open a second connection; never one per watch.
        assert!(now - before.min(now) <= 2, "{name}: {now} connections to port {port} ({before} before the inventory started)");
    }
    drop(inv);
}

/// This process's established TCP connections to `port` on any address.
fn established_to(port: u16) -> usize {
    let ours: BTreeSet<u64> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| l.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok())
        .collect();
    let mut n = 0;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) = (f.get(2), f.get(3), f.get(9)) else { continue };
            let remote_port = remote.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            // 01: ESTABLISHED.
            if remote_port == Some(port) && *state == "01" && inode.parse().is_ok_and(|i: u64| ours.contains(&i)) {
                n += 1;
            }
        }
    }
    n
}

/// Watched namespace by namespace (`namespaces:` in config.yaml), a cluster has two
/// watches per namespace. A server allows a bounded number of HTTP/2 streams on a
/// connection (RFC 9113 recommends at least 100; the sim, like hyper, allows 200),
/// and a request past the bound waits for a stream to end, which a watch never
/// does: such a cluster is watched over HTTP/1.1, a connection per watch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_watched_in_many_namespaces_still_answers() {
    let fleet = common::TestFleet::start().await;
    let kc = kube::config::Kubeconfig::from_yaml(&fleet.kubeconfig_yaml()).expect("kubeconfig");
    let mut namespaces = vec!["default".to_string()];
    namespaces.extend((0..150).map(|i| format!("team-{i}")));
    let cfg = meshdeck::config::MeshdeckConfig {
        clusters: Some(vec![meshdeck::config::ClusterEntry {
            context: "cluster1".into(),
            name: None,
            namespaces,
            version_label: None,
            accent: None,
            read_only: true,
            ..Default::default()
        }]),
        ..Default::default()
    };
    let clusters = meshdeck::registry::connect(&kc, &[], &cfg, true).await.expect("registry");
    let mut inv = Inventory::start(&clusters);
    let snap = inv.settled(Duration::from_secs(30)).await;
    assert_eq!(snap.clusters[0].state, ClusterState::Live, "{:?}", snap.clusters[0]);
    assert!(snap.service("reviews.default").is_some_and(|s| s.clusters.contains_key("cluster1")), "reviews is listed in default");
}
