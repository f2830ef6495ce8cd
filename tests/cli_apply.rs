//! `meshdeck diff | apply | history | rollback` as a user runs them, against the
//! sim in-process or the real test bed (MESHDECK_TEST_FLEET=real).

mod common;

use std::process::{Command, Output, Stdio};

struct Cli {
    kubeconfig: std::path::PathBuf,
    config: tempfile::TempDir,
    data: tempfile::TempDir,
}

impl Cli {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_meshdeck"))
            .args([
                "--kubeconfig",
                self.kubeconfig.to_str().expect("utf8"),
                "--context",
                "cluster1",
                "--context",
                "cluster2",
                "--context",
                "cluster3",
            ])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("MESHDECK_CONFIG_DIR", self.config.path())
            .env("MESHDECK_DATA_DIR", self.data.path())
            .stdin(Stdio::null())
            .output()
            .expect("runs")
    }
}

async fn run(cli: &std::sync::Arc<Cli>, args: &[&str]) -> Output {
    let cli = cli.clone();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || cli.run(&args.iter().map(String::as_str).collect::<Vec<_>>())).await.expect("joined")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_diff_history_rollback_and_refusals_from_the_command_line() {
    let fleet = common::TestFleet::start().await;
    let kubeconfig = fleet.kubeconfig_path();
    let cli = std::sync::Arc::new(Cli { kubeconfig, config: tempfile::tempdir().expect("tmp"), data: tempfile::tempdir().expect("tmp") });

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
