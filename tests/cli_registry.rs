//! `meshdeck clusters` / `inventory` from the command line: bad input is exit 2
//! with the file and line; an unreachable context is a row, not a crash.

use std::process::Command;

fn meshdeck(args: &[&str], kubeconfig: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_meshdeck"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("MESHDECK_CONFIG_DIR", kubeconfig.parent().expect("dir"))
        .output()
        .expect("runs")
}

#[test]
fn malformed_kubeconfig_is_bad_input_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dir.path().join("config");
    std::fs::write(&kc, "apiVersion: v1\nclusters:\n  - name: a\n   cluster: {server: x}\n").expect("write");
    let out = meshdeck(&["clusters"], &kc);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:4:", kc.display())), "{err}");
}

#[test]
fn unknown_context_is_bad_input() {
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dir.path().join("config");
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\nclusters: [{name: a, cluster: {server: 'https://127.0.0.1:9'}}]\nusers: [{name: u, user: {token: t0ps3cret}}]\ncontexts: [{name: a, context: {cluster: a, user: u}}]\n").expect("write");
    let out = meshdeck(&["inventory", "--context", "nope"], &kc);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("context \"nope\" is not in the kubeconfig (contexts: a)"));
}

#[test]
fn a_refusing_server_is_a_row_with_its_error_and_no_credentials_leak() {
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dir.path().join("config");
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\nclusters: [{name: a, cluster: {server: 'https://127.0.0.1:9', insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: t0ps3cret}}]\ncontexts: [{name: a, context: {cluster: a, user: u}}]\n").expect("write");
    let out = meshdeck(&["clusters", "--timeout", "5"], &kc);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "no cluster answered: {stderr}");
    assert!(stdout.contains("unreachable"), "{stdout}");
    assert!(!stdout.contains("t0ps3cret") && !stderr.contains("t0ps3cret"), "tokens are never printed");
}

#[test]
fn a_bad_config_file_is_bad_input() {
    let dir = tempfile::tempdir().expect("tmp");
    let kc = dir.path().join("config");
    std::fs::write(&kc, "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n").expect("write");
    std::fs::write(dir.path().join("config.yaml"), "readOnly: true\nclustres: []\n").expect("write");
    let out = meshdeck(&["clusters"], &kc);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.yaml:2:") && err.contains("clustres"), "{err}");
}
