//! `meshdeck render` from the command line, offline from an inventory file.

use std::path::Path;
use std::process::Command;

fn meshdeck(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meshdeck"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MESHDECK_CONFIG_DIR", "/nonexistent")
        .output()
        .expect("runs")
}

const INV: &str = "tests/fixtures/inventory-federation.json";

#[test]
fn renders_yaml_json_and_gitops_files() {
    let out = meshdeck(&["render", "-f", "examples/reviews-canary.yaml", "--inventory", INV, "-o", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["clusters"]["cluster1"].as_array().map(Vec::len), Some(4));
    assert_eq!(v["clusters"]["cluster2"].as_array().map(Vec::len), Some(2), "the Gateway and the v3 ServiceEntry");

    let dir = tempfile::tempdir().expect("tmp");
    let out =
        meshdeck(&["render", "-f", "examples/reviews-canary.yaml", "--inventory", INV, "--out-dir", dir.path().to_str().expect("utf8")]);
    assert!(out.status.success());
    let vs = dir.path().join("cluster1/virtualservice-default-reviews-canary.yaml");
    let text = std::fs::read_to_string(&vs).expect("one object per file");
    let docs = meshdeck::yaml::parse_documents(&text).expect("yaml");
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["kind"], "VirtualService");
    assert!(Path::new(&dir.path().join("cluster2/gateway-default-reviews-canary-eastwest.yaml")).is_file());
}

#[test]
fn an_invalid_plan_is_exit_2_with_every_problem_located() {
    let dir = tempfile::tempdir().expect("tmp");
    let plan = dir.path().join("bad.yaml");
    std::fs::write(&plan, "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: bad}\nspec:\n  service: reviews.default\n  from: {clusters: [cluster1]}\n  split:\n    - {cluster: cluster9, version: v1, weight: 50}\n    - {cluster: cluster1, version: v1, weight: 40}\n").expect("write");
    let out = meshdeck(&["render", "-f", plan.to_str().expect("utf8"), "--inventory", INV]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let p = plan.display();
    assert!(err.contains(&format!("{p}:8:17: unknown cluster \"cluster9\"")), "{err}");
    assert!(err.contains(&format!("{p}:8:5: weights sum to 90")), "{err}");
    assert!(out.stdout.is_empty(), "nothing rendered");
}

#[test]
fn a_broken_inventory_file_is_bad_input() {
    let dir = tempfile::tempdir().expect("tmp");
    let inv = dir.path().join("inv.json");
    std::fs::write(&inv, "{\"clusters\": [}").expect("write");
    let out = meshdeck(&["render", "-f", "examples/reviews-canary.yaml", "--inventory", inv.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("inv.json:1:"), "{}", String::from_utf8_lossy(&out.stderr));
}
