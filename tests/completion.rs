//! Shell completion as a kubectl user types it: bash runs meshdeck's registered
//! completion function on the fleet's kubeconfig, and `--context cl<TAB>`
//! offers its contexts. Needs bash (under CI a missing bash fails).

mod common;

use std::process::Command;

/// COMPREPLY of meshdeck's bash completion for `words`, completing the last one.
fn complete(kubeconfig: &std::path::Path, words: &[&str]) -> Vec<String> {
    let script = Command::new(env!("CARGO_BIN_EXE_meshdeck")).args(["completion", "bash"]).output().expect("runs");
    assert!(script.status.success(), "{}", String::from_utf8_lossy(&script.stderr));
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("meshdeck.bash");
    std::fs::write(&path, &script.stdout).expect("write");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={cword}; COMP_TYPE=9; _clap_complete_meshdeck meshdeck '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        path.display(),
        quoted.join(" "),
        words[cword],
        words[cword - 1]
    );
    let out = Command::new("bash")
        .args(["-c", &program])
        .env("KUBECONFIG", kubeconfig)
        .env("MESHDECK_DATA_DIR", dir.path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("bash runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bash_completes_contexts_commands_and_plan_files() {
    if !common::tool_available("bash", &["--version"]) {
        return;
    }
    let fleet = common::TestFleet::start().await;
    let kc = fleet.kubeconfig_path();
    let contexts = tokio::task::spawn_blocking(move || complete(&kc, &["meshdeck", "inventory", "--context", "cl"])).await.expect("joined");
    assert_eq!(
        contexts,
        ["cluster1", "cluster1-restricted", "cluster2", "cluster2-restricted", "cluster3", "cluster3-restricted"],
        "{} fleet",
        fleet.kind()
    );
    let kc = fleet.kubeconfig_path();
    let narrowed = tokio::task::spawn_blocking(move || complete(&kc, &["meshdeck", "--context", "cluster2-"])).await.expect("joined");
    assert_eq!(narrowed, ["cluster2-restricted"]);
    let kc = fleet.kubeconfig_path();
    let commands = tokio::task::spawn_blocking(move || complete(&kc, &["meshdeck", "ro"])).await.expect("joined");
    assert_eq!(commands, ["routes", "rollback"]);
    let kc = fleet.kubeconfig_path();
    let plans =
        tokio::task::spawn_blocking(move || complete(&kc, &["meshdeck", "apply", "-f", "examples/reviews-c"])).await.expect("joined");
    assert_eq!(plans, ["examples/reviews-callers.yaml", "examples/reviews-canary-steps.yaml", "examples/reviews-canary.yaml"]);
}

#[test]
fn an_unknown_shell_is_bad_input() {
    let out = Command::new(env!("CARGO_BIN_EXE_meshdeck")).args(["completion", "tcsh"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown shell \"tcsh\""), "{}", String::from_utf8_lossy(&out.stderr));
}
