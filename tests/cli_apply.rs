//! `meshdeck diff | apply | history | rollback` as a user runs them, against the
//! sim in-process or the real test bed (MESHDECK_TEST_FLEET=real).

mod common;

use std::process::Output;

use common::{MeshdeckCli as Cli, text};

/// The admin contexts only, as this test always ran.
async fn run(cli: &std::sync::Arc<Cli>, args: &[&str]) -> Output {
    let mut all = vec!["--context", "cluster1", "--context", "cluster2", "--context", "cluster3"];
    all.extend_from_slice(args);
    cli.run(&all).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_diff_history_rollback_and_refusals_from_the_command_line() {
    let fleet = common::TestFleet::start().await;
    let kubeconfig = fleet.kubeconfig_path();
    let cli = Cli::new(kubeconfig);

    let out = run(&cli, &["apply", "-f", "examples/reviews-canary.yaml"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("refusing to write without confirmation"), "{}", text(&out));

    let out = run(&cli, &["--read-only", "apply", "-f", "examples/reviews-canary.yaml", "--yes"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("read-only: refusing to write"), "{}", text(&out));

    let out = run(&cli, &["diff", "-f", "examples/reviews-canary.yaml"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("+ cluster2: Gateway/default/reviews-canary-eastwest create"), "{}", text(&out));

    std::fs::write(cli.config.path().join("policy.yaml"), "personas:\n  - name: team\n    match: {contexts: [cluster1]}\n    routeFrom: [{clusters: [cluster1]}]\n    routeTo: [{clusters: [cluster1], services: ['reviews.default']}]\n").expect("policy");
    let out = run(&cli, &["apply", "-f", "examples/reviews-canary.yaml", "--yes"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("persona team refuses reviews-canary: may not route reviews.default to cluster2")
            && text(&out).contains("nothing was written"),
        "{}",
        text(&out)
    );
    std::fs::remove_file(cli.config.path().join("policy.yaml")).expect("rm");

    let out = run(&cli, &["apply", "-f", "examples/reviews-canary.yaml", "--yes"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&cli, &["history", "-o", "json"]).await;
    let records: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = records[0]["id"].as_str().expect("id").to_string();
    assert_eq!(records[0]["report"]["outcome"], "applied");

    let out = run(&cli, &["rollback", &id, "--yes"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&cli, &["diff", "-f", "examples/reviews-canary.yaml"]).await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("create 6"), "after the rollback the canary is gone again: {}", text(&out));
    let out = run(&cli, &["history"]).await;
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.lines().count() == 3 && table.contains("rollback") && table.contains(&id), "{table}");
}
