//! `meshdeck traffic` and `meshdeck proxy-status` where there is nothing to ask,
//! on the sim and on the real test bed's federation fleet (neither runs a
//! Prometheus nor serves istiod's monitoring port): unknown, never zero; a dark
//! Prometheus answers within its deadline; a bad URL in config.yaml is bad input
//! that names the file and line. What they say of a real mesh is in data_plane.rs.

mod common;

use std::time::{Duration, Instant};

use common::{MeshdeckCli, TestFleet, text};
use serde_json::Value;

fn clusters_config(extra: &str) -> String {
    let mut cfg = String::from("clusters:\n");
    for c in ["cluster1", "cluster2", "cluster3"] {
        cfg.push_str(&format!("  - context: {c}\n"));
        if c == "cluster1" {
            cfg.push_str(extra);
        }
    }
    cfg
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_prometheus_every_calling_cluster_says_no_metrics_not_zero() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let out = cli.run(&["traffic", "reviews", "-o", "json"]).await;
    assert!(out.status.success(), "{} fleet: {}", fleet.kind(), text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let routes = v["routes"].as_array().expect("routes");
    assert_eq!(routes.len(), 3, "one per calling cluster: {v}");
    for r in routes {
        assert_eq!(r["metrics"], "none", "{r}");
        assert!(r["error"].as_str().expect("why").contains("no Service prometheus in istio-system or monitoring"), "{r}");
        assert!(r["destinations"].as_array().expect("d").iter().all(|d| d["observed"].is_null() && d["intended"].is_number()), "{r}");
    }
    let table = text(&cli.run(&["traffic", "reviews"]).await);
    assert!(table.contains("unknown") && table.contains("cluster1: no metrics:"), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dark_prometheus_is_unreachable_within_its_deadline_and_a_failure() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    // A port that takes the connection and never answers: a hung Prometheus.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let url = format!("http://{}", hung.local_addr().expect("addr"));
    std::fs::write(cli.config.path().join("config.yaml"), clusters_config(&format!("    prometheus: {url}\n"))).expect("config");
    let started = Instant::now();
    let out = cli.run(&["traffic", "reviews", "--from", "cluster1", "-o", "json"]).await;
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(took < Duration::from_secs(10), "{took:?}");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["routes"][0]["metrics"], "unreachable", "{v}");
    assert!(v["routes"][0]["error"].as_str().expect("error").contains("no answer within 3s"), "{v}");
    assert!(text(&out).contains("metrics could not be read from cluster1"), "{}", text(&out));
    drop(hung);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_urls_and_windows_are_bad_input_naming_where() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    std::fs::write(cli.config.path().join("config.yaml"), clusters_config("    prometheus: ftp://prom:9090\n")).expect("config");
    let out = cli.run(&["traffic", "reviews"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("config.yaml:3") && said.contains("want an http:// or https:// URL"), "{said}");

    std::fs::remove_file(cli.config.path().join("config.yaml")).expect("rm");
    let out = cli.run(&["traffic", "reviews", "--window", "1d"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--window") && text(&out).contains("unit"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_istiod_s_monitoring_port_push_status_is_unknown_never_pushed() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let out = cli.run(&["proxy-status"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("unknown: Service istio-system/istiod has no monitoring port"), "{said}");
    // After an apply the same is said per written cluster, and the apply still succeeds.
    let plan = common::write_plan(&cli, "reviews-canary", &std::fs::read_to_string("examples/reviews-canary.yaml").expect("example"));
    let out = cli.run(&["--context", "cluster1", "--context", "cluster2", "--context", "cluster3", "apply", "-f", &plan, "--yes"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("push: cluster1: push unknown:"), "{said}");
    assert!(!said.contains("pushed to"), "{said}");
}

/// The sim's Prometheus stand-in (`meshdeck sim --traffic`, the demo): each
/// cluster's productpage calls reviews as the route in force there says, so
/// `meshdeck traffic` shows an applied canary's split, and a destination
/// cluster gone dark as failed requests. Simulated arithmetic, said so in
/// docs/sim.md; routed requests are the real bed's (data_plane.rs).
#[tokio::test(flavor = "multi_thread")]
async fn sim_only_the_stand_in_prometheus_follows_the_route_in_force_and_a_dark_cluster_fails_requests() {
    let fleet = common::fleet(meshdeck_sim::SimConfig { traffic: true, ..Default::default() }).await;
    let dir = tempfile::tempdir().expect("tmp");
    let cli = with_stand_in_prometheus(&fleet, dir.path());
    // Some seconds of Istio's default route (cluster1's v1 and v2) first.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let plan = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reviews-canary.yaml");
    let out = cli.run(&["apply", "-f", plan.to_str().expect("utf8"), "--yes"]).await;
    assert!(out.status.success(), "{}", text(&out));
    // Within a few ticks the last 3 s are all on the canary: 75/15/10.
    let started = Instant::now();
    let v = loop {
        let out = cli.run(&["traffic", "reviews", "--from", "cluster1", "--window", "3s", "-o", "json"]).await;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let on_canary = [("cluster2 v3", 75.0), ("cluster1 v1", 15.0), ("cluster1 v2", 10.0)]
            .iter()
            .all(|(d, want)| observed(&v, d).is_some_and(|o| (o - want).abs() < 1.0));
        if on_canary && v["routes"][0]["countedSeconds"] == 3 {
            assert!(out.status.success(), "no drift: {}", text(&out));
            break v;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the stand-in follows the canary: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(v["routes"][0]["source"], format!("{}", fleet.prometheus_url("cluster1")), "{v}");
    // At least half of what the stand-in sends in the 3 s window (scrapes lag on a busy machine).
    let least = meshdeck_sim::metrics::RATE * 3.0 / 2.0;
    assert!(v["routes"][0]["requests"].as_u64().is_some_and(|n| n as f64 >= least), "{v}");
    // A minute's window also holds the default route's 50/50 before the apply:
    // the count starts when the canary was written, so its split shows, no drift.
    let out = cli.run(&["traffic", "reviews", "--from", "cluster1", "--window", "60s", "-o", "json"]).await;
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(out.status.success(), "no drift: {}", text(&out));
    assert!(v["routes"][0]["error"].as_str().is_some_and(|e| e.contains("counted since the route in force was written")), "{v}");
    assert!(observed(&v, "cluster2 v3").is_some_and(|o| (o - 75.0).abs() < 1.0), "{v}");
    // cluster2 goes dark: its share of cluster1's requests fails, the rest is served.
    fleet.cluster("cluster2").expect("cluster2").set_fault(meshdeck_sim::faults::Fault::Down);
    let started = Instant::now();
    loop {
        let out = cli.run(&["traffic", "reviews", "--from", "cluster1", "--window", "3s", "-o", "json"]).await;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let r = &v["routes"][0];
        if r["success"].as_f64().is_some_and(|s| (s - 25.0).abs() < 1.0) {
            assert!(r["unreached"].as_u64().is_some_and(|n| n > 0), "{v}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "75% of requests fail with cluster2 down: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The talk's canary on an ambient sim fleet (shared discovery, cluster1 and
/// cluster2 ambient): rendered as an HTTPRoute over per-version Services, whose
/// requests Envoy counts under each backend's `destination_service` (`reviews-v3`,
/// not `reviews`). `meshdeck traffic` asks for every host the route sends to and
/// shows the split, 75/15/10, without drift.
#[tokio::test(flavor = "multi_thread")]
async fn sim_only_a_gateway_api_canary_is_observed_under_its_backends_names() {
    let fleet = common::fleet(meshdeck_sim::SimConfig {
        traffic: true,
        topology: meshdeck_sim::world::MeshTopology::SharedDiscovery,
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let cli = with_stand_in_prometheus(&fleet, dir.path());
    let kubeconfig = cli.kubeconfig.clone();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    for c in ["cluster1", "cluster2"] {
        let out = common::kubectl(
            &kubeconfig,
            &home,
            &["--context", c, "label", "namespace", "default", "istio-injection-", "istio.io/dataplane-mode=ambient"],
            None,
        );
        common::kubectl_ok(&out);
    }
    let plan = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reviews-canary.yaml");
    let out = cli.run(&["apply", "-f", plan.to_str().expect("utf8"), "--yes"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("gateway-api (auto: ambient in cluster1)"), "{}", text(&out));
    let started = Instant::now();
    loop {
        let out = cli.run(&["traffic", "reviews", "--from", "cluster1", "--window", "3s", "-o", "json"]).await;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let on_canary = [("cluster2 v3", 75.0), ("cluster1 v1", 15.0), ("cluster1 v2", 10.0)]
            .iter()
            .all(|(d, want)| observed(&v, d).is_some_and(|o| (o - want).abs() < 1.0));
        if on_canary && v["routes"][0]["countedSeconds"] == 3 {
            assert!(out.status.success(), "no drift: {}", text(&out));
            assert_eq!(v["routes"][0]["unreached"], 0, "{v}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the canary's split under its backends' names: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // What the stand-in counted: under the backends' names, as Envoy would.
    let url = fleet.prometheus_url("cluster1");
    let (addr, prefix) = url.trim_start_matches("http://").split_once('/').expect("a path after the address");
    let path = format!(
        "/{prefix}/api/v1/query?query=istio_requests_total%7Bdestination_service%3D%22reviews-v3.default.svc.cluster.local%22%7D%5B3s%5D"
    );
    let addr = addr.to_string();
    let body = tokio::task::spawn_blocking(move || common::mesh::try_http(&addr, &path)).await.expect("joined").unwrap_or_default();
    assert!(body.contains("\"destination_version\":\"v3\""), "{body}");
}

/// A CLI on the sim fleet whose config.yaml names each cluster's Prometheus stand-in.
fn with_stand_in_prometheus(fleet: &meshdeck_sim::SimFleet, dir: &std::path::Path) -> std::sync::Arc<MeshdeckCli> {
    let kubeconfig = dir.join("kubeconfig");
    fleet.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let cli = MeshdeckCli::new(kubeconfig);
    let mut cfg = String::from("clusters:\n");
    for c in ["cluster1", "cluster2", "cluster3"] {
        cfg.push_str(&format!("  - context: {c}\n    prometheus: {}\n", fleet.prometheus_url(c)));
    }
    std::fs::write(cli.config.path().join("config.yaml"), cfg).expect("config");
    cli
}

/// The observed share of `dest` (`cluster2 v3`) in the first route of `traffic -o json`.
fn observed(v: &Value, dest: &str) -> Option<f64> {
    v["routes"][0]["destinations"]
        .as_array()?
        .iter()
        .find(|d| format!("{} {}", d["cluster"].as_str().unwrap_or(""), d["version"].as_str().unwrap_or("")) == dest)?["observed"]
        .as_f64()
}
