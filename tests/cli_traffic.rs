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
