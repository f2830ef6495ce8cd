//! A server dry run changes nothing, on every write verb (kube-rs and kubectl),
//! and meshdeck's read-only commands write nothing to any cluster. On both
//! fleets (the sim, and the real test bed with MESHDECK_TEST_FLEET=real).

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn configmap(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {common::TEST_LABEL: "dry-run"}},
        "data": {"key": value}
    }))
    .expect("configmap")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_verb_honours_dry_run_through_kube_rs() {
    let fleet = common::TestFleet::start().await;
    let client = fleet.client("cluster1").await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.create(&PostParams::default(), &configmap("kept-a", "a")).await.expect("create a");
    api.create(&PostParams::default(), &configmap("kept-b", "b")).await.expect("create b");
    let before = common::fingerprint(&client).await;

    let dry = PostParams { dry_run: true, ..Default::default() };
    let created = api.create(&dry, &configmap("never", "x")).await.expect("dry create");
    assert_eq!(created.metadata.name.as_deref(), Some("never"), "a dry create answers the object it would make");

    let mut changed = api.get("kept-a").await.expect("get");
    changed.data = Some([("key".to_string(), "changed".to_string())].into());
    let replaced = api.replace("kept-a", &dry, &changed).await.expect("dry replace");
    assert_eq!(replaced.data.as_ref().and_then(|d| d.get("key")).map(String::as_str), Some("changed"));

    let patch_dry = PatchParams { dry_run: true, ..Default::default() };
    let merge = json!({"data": {"key": "merged"}});
    api.patch("kept-a", &patch_dry, &Patch::Merge(&merge)).await.expect("dry merge patch");
    api.patch("kept-a", &patch_dry, &Patch::Strategic(&merge)).await.expect("dry strategic patch");
    let mut apply = PatchParams::apply("dry-run-test").force();
    apply.dry_run = true;
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept-a"}, "data": {"key": "applied"}});
    api.patch("kept-a", &apply, &Patch::Apply(&applied)).await.expect("dry apply");
    let applied_new = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "never-applied"}, "data": {"key": "x"}});
    api.patch("never-applied", &apply, &Patch::Apply(&applied_new)).await.expect("dry apply of a new object");

    let delete_dry = DeleteParams { dry_run: true, ..Default::default() };
    api.delete("kept-a", &delete_dry).await.expect("dry delete");
    api.delete_collection(&delete_dry, &ListParams::default().labels(common::TEST_LABEL)).await.expect("dry deletecollection");

    let after = common::fingerprint(&client).await;
    assert_eq!(common::fingerprint_changes(&before, &after), Vec::<String>::new(), "dry runs changed the cluster");
    let kept = api.get("kept-a").await.expect("kept-a is still there");
    assert_eq!(kept.data.as_ref().and_then(|d| d.get("key")).map(String::as_str), Some("a"));

    // The same delete without dryRun does delete: the check above could fail.
    api.delete("kept-b", &DeleteParams::default()).await.expect("delete");
    assert!(api.get_opt("kept-b").await.expect("get").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_verb_honours_dry_run_through_kubectl() {
    if !common::tool_available("kubectl", &["version", "--client"]) {
        return;
    }
    let fleet = common::TestFleet::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let kc = fleet.kubeconfig_path();
    let client = fleet.client("cluster1").await;
    let (kc2, home) = (kc.clone(), dir.path().to_path_buf());
    let k = move |args: Vec<&'static str>, stdin: Option<&'static str>| {
        let (kc, home) = (kc2.clone(), home.clone());
        async move { tokio::task::spawn_blocking(move || common::kubectl(&kc, &home, &args, stdin)).await.expect("joined") }
    };
    let kept = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept, namespace: default, labels: {meshdeck.dev/test: dry-run}}\ndata: {key: a}\n";
    common::kubectl_ok(&k(vec!["create", "-f", "-"], Some(kept)).await);
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: dry-run-ns, labels: {meshdeck.dev/test: dry-run}}\n";
    if fleet.is_real() {
        // A namespace's deletion takes a while on a real cluster: a leftover from an earlier run may still be going.
        let _ = k(vec!["delete", "namespace", "dry-run-ns", "--wait=true"], None).await;
    }
    common::kubectl_ok(&k(vec!["create", "-f", "-"], Some(ns)).await);
    let before = common::fingerprint(&client).await;

    let replacement = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept, namespace: default}\ndata: {key: replaced}\n";
    let applied = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kept, namespace: default}\ndata: {key: applied}\n";
    let verbs: Vec<(Vec<&'static str>, Option<&'static str>)> = vec![
        (vec!["create", "configmap", "never", "--from-literal=key=x", "--dry-run=server"], None),
        (vec!["replace", "--dry-run=server", "-f", "-"], Some(replacement)),
        (vec!["patch", "configmap", "kept", "--type=merge", "-p", r#"{"data":{"key":"merge"}}"#, "--dry-run=server"], None),
        (vec!["patch", "configmap", "kept", "--type=strategic", "-p", r#"{"data":{"key":"smp"}}"#, "--dry-run=server"], None),
        (
            vec![
                "patch",
                "configmap",
                "kept",
                "--type=json",
                "-p",
                r#"[{"op":"replace","path":"/data/key","value":"json"}]"#,
                "--dry-run=server",
            ],
            None,
        ),
        (vec!["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-"], Some(applied)),
        (vec!["label", "configmap", "kept", "extra=yes", "--dry-run=server"], None),
        (vec!["delete", "configmap", "kept", "--dry-run=server"], None),
        (vec!["delete", "configmaps", "--all", "--dry-run=server"], None),
        (vec!["delete", "namespace", "dry-run-ns", "--dry-run=server"], None),
    ];
    for (args, stdin) in verbs {
        let shown = args.join(" ");
        let args_are_patch = args[0] == "patch";
        let out = common::kubectl_ok(&k(args, stdin).await);
        // kubectl says so for every verb but patch, whose message has no dry-run suffix.
        assert!(args_are_patch || out.contains("(server dry run)"), "kubectl {shown}: {out}");
        let after = common::fingerprint(&client).await;
        assert_eq!(common::fingerprint_changes(&before, &after), Vec::<String>::new(), "kubectl {shown} changed the cluster");
    }
    let value = common::kubectl_ok(&k(vec!["get", "configmap", "kept", "-o", "jsonpath={.data.key}"], None).await);
    assert_eq!(value, "a");
    // The namespaces a cluster cannot live without may not be deleted, not even on a dry run.
    let refused = k(vec!["delete", "namespace", "default", "--dry-run=server"], None).await;
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("namespaces \"default\" is forbidden: this namespace may not be deleted"), "{err}");
    // Without --dry-run the delete happens: the checks above could fail.
    common::kubectl_ok(&k(vec!["delete", "configmap", "kept"], None).await);
    let after = common::fingerprint(&client).await;
    assert_eq!(common::fingerprint_changes(&before, &after), vec!["ConfigMap/default/kept disappeared".to_string()]);
    // Gone before the fleet is handed on: a namespace still being emptied would show
    // the next test on the real test bed objects disappearing that it never touched.
    common::kubectl_ok(&k(vec!["delete", "namespace", "dry-run-ns", "--wait=true"], None).await);
}

fn meshdeck(kubeconfig: &std::path::Path, config: &std::path::Path, data: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshdeck"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("MESHDECK_CONFIG_DIR", config)
        .env("MESHDECK_DATA_DIR", data)
        .stdin(Stdio::null())
        .output()
        .expect("meshdeck runs")
}

/// Every read-only command, against a fleet holding a live plan and reached
/// through every context of the kubeconfig (aliases included), writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_commands_change_nothing_on_any_cluster() {
    let fleet = common::TestFleet::start().await;
    let kc = fleet.kubeconfig_path();
    let (config, data) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let run = |args: Vec<&'static str>| {
        let (kc, config, data) = (kc.clone(), config.path().to_path_buf(), data.path().to_path_buf());
        async move { tokio::task::spawn_blocking(move || meshdeck(&kc, &config, &data, &args)).await.expect("joined") }
    };
    let admin = ["--context", "cluster1", "--context", "cluster2", "--context", "cluster3"];
    let mut apply = admin.to_vec();
    apply.extend(["apply", "-f", "examples/reviews-canary.yaml", "--yes"]);
    let out = run(apply).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let mut clients = BTreeMap::new();
    for c in ["cluster1", "cluster2", "cluster3"] {
        clients.insert(c, fleet.client(c).await);
    }
    let mut before = BTreeMap::new();
    for (name, client) in &clients {
        before.insert(*name, common::fingerprint(client).await);
    }
    assert!(before["cluster1"].keys().any(|k| k.starts_with("VirtualService/default/reviews-canary")), "the plan is live");

    // A generated root's files are the one thing a trust dry run writes (outside any cluster).
    let keys = Box::leak(Box::new(tempfile::tempdir().expect("tmp")));
    let root_key: &'static str = Box::leak(keys.path().join("root.key").display().to_string().into_boxed_str());
    let root_cert: &'static str = Box::leak(keys.path().join("root.crt").display().to_string().into_boxed_str());
    let read_only: Vec<Vec<&'static str>> = vec![
        vec!["diff", "-f", "examples/reviews-canary.yaml"],
        vec!["diff", "-f", "examples/reviews-failover.yaml"],
        vec!["render", "-f", "examples/reviews-canary.yaml"],
        vec!["inventory", "-o", "json"],
        vec!["clusters", "-o", "json"],
        vec!["analyze", "-o", "json"],
        vec!["routes", "-o", "json"],
        vec!["import", "reviews", "--from", "cluster1"],
        vec!["trust", "status", "-o", "json"],
        vec!["trust", "plan", "--generate-root", root_key, "--dry-run"],
        vec!["trust", "rotate", "trust-both", "--root", root_cert, "--dry-run"],
        vec!["trust", "restart", "--dry-run"],
        vec!["--read-only", "trust", "restart", "--yes"],
        vec!["--read-only", "trust", "plan", "--root", root_cert, "--root-key", root_key, "--yes"],
        vec!["history"],
        vec!["apply", "-f", "examples/reviews-canary.yaml", "--dry-run"],
        vec!["--read-only", "apply", "-f", "examples/reviews-failover.yaml", "--yes"],
    ];
    for args in read_only {
        let shown = args.join(" ");
        let out = run(args).await;
        for (name, client) in &clients {
            let after = common::fingerprint(client).await;
            let changes = common::fingerprint_changes(&before[name], &after);
            assert!(
                changes.is_empty(),
                "`meshdeck {shown}` changed {name}: {changes:?}\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
