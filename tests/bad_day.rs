//! On a bad day (issue #30), from the command line, on the sim and on the real
//! test bed: a dark cluster is drained without waiting for it and what it keeps is
//! named, recorded and removed once it answers; a rollback never undoes a later
//! apply, is written as it was previewed, and leaves what someone else changed
//! meanwhile; a dry run or a declined trust plan writes no key; the conductor
//! checks the persona on every action.

mod common;

use std::time::Duration;

use common::{MeshdeckCli, SlowProxy, TestFleet, istio_objects, text, write_plan};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};

const CANARY: &str = "examples/reviews-canary.yaml";

/// The canary's route, all in cluster1: it writes nothing to cluster2.
const DRAIN: &str = "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: reviews-canary}\nspec:\n  service: reviews.default\n  from: {clusters: [cluster1]}\n  split:\n    - {cluster: cluster1, version: v1, weight: 90}\n    - {cluster: cluster1, version: v2, weight: 10}\n";

/// Another plan, for another service: it writes only to cluster1.
const RATINGS: &str = "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: ratings-route}\nspec:\n  service: ratings.default\n  from: {clusters: [cluster1]}\n  split:\n    - {cluster: cluster1, version: v1, weight: 100}\n";

fn records(o: &std::process::Output) -> Vec<Value> {
    serde_json::from_slice::<Vec<Value>>(&o.stdout).unwrap_or_else(|e| panic!("history JSON ({e}): {}", text(o)))
}

async fn history(cli: &std::sync::Arc<MeshdeckCli>) -> Vec<Value> {
    records(&cli.run(&["history", "-o", "json"]).await)
}

/// The Istio objects of one cluster (kind/namespace/name), asked of it alone.
async fn on(fleet: &TestFleet, cluster: &str) -> Vec<String> {
    let istio = |k: &String| meshdeck::inventory::watch::ISTIO_KINDS.iter().any(|(_, kind, _)| k.starts_with(&format!("{kind}/")));
    common::fingerprint(&fleet.client(cluster).await).await.into_keys().filter(istio).collect()
}

fn vs_api(client: kube::Client) -> Api<DynamicObject> {
    let (ar, _) = meshdeck::apply::target::resource("VirtualService").expect("kind");
    Api::namespaced_with(client, "default", &ar)
}

/// The weights of cluster1's canary VirtualService, in route order.
async fn weights(fleet: &TestFleet) -> Vec<i64> {
    let vs = vs_api(fleet.client("cluster1").await).get("reviews-canary").await.expect("the canary's VirtualService");
    vs.data["spec"]["http"][0]["route"].as_array().into_iter().flatten().map(|r| r["weight"].as_i64().unwrap_or(100)).collect()
}

/// Wait until meshdeck can reach `cluster` again (the real API server takes a moment).

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dark_cluster_is_drained_and_what_it_keeps_is_removed_once_it_answers() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let out = cli.run(&["apply", "-f", CANARY, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let kept = on(&fleet, "cluster2").await;
    assert!(!kept.is_empty(), "the canary writes to cluster2 (its gateway hop)");

    fleet.take_down("cluster2").await;
    let drain = write_plan(&cli, "drain.yaml", DRAIN);
    let out = cli.run(&["apply", "-f", &drain, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "a change that writes only to live clusters goes ahead: {}", text(&out));
    let said = format!("{} objects of reviews-canary on cluster2 not removed: unreachable", kept.len());
    assert!(text(&out).contains(&said), "{}", text(&out));
    assert_eq!(weights(&fleet).await, vec![90, 10], "cluster1 routes only to itself now");
    let last = history(&cli).await.pop().expect("a record");
    assert_eq!(last["report"]["outcome"], "applied", "{last:#}");
    assert_eq!(last["unpruned"][0]["cluster"], "cluster2", "{last:#}");
    assert_eq!(last["unpruned"][0]["objects"].as_array().map(Vec::len), Some(kept.len()), "{last:#}");

    // Registering only the live clusters leaves cluster2's objects too: said the same way.
    let out = cli.run(&["--context", "cluster1", "--context", "cluster3", "apply", "-f", &drain, "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{} objects of reviews-canary on cluster2 not removed: not registered", kept.len())),
        "{}",
        text(&out)
    );

    let out = cli.run(&["analyze"]).await;
    assert!(
        text(&out).contains("UNPRUNED") && text(&out).contains("left on cluster2 by a change that could not reach it (not seen now"),
        "{}",
        text(&out)
    );

    fleet.bring_up("cluster2").await;
    common::answers(&fleet, "cluster2").await;
    assert_eq!(on(&fleet, "cluster2").await, kept, "cluster2 kept the canary's objects while it was dark");
    let out = cli.run(&["analyze"]).await;
    assert!(
        text(&out).contains(&format!("{} objects of reviews-canary left on cluster2 by a change that could not reach it:", kept.len())),
        "{}",
        text(&out)
    );
    // The next change that reaches cluster2 removes them, though it is another plan's.
    let ratings = write_plan(&cli, "ratings.yaml", RATINGS);
    let out = cli.run(&["apply", "-f", &ratings, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("- cluster2: "), "the diff shows what it removes: {}", text(&out));
    assert!(on(&fleet, "cluster2").await.is_empty(), "what the drain could not remove is gone: {}", text(&out));
    let out = cli.run(&["apply", "-f", &drain, "--yes"]).await;
    assert!(text(&out).contains("nothing to change"), "{}", text(&out));
    assert!(!text(&cli.run(&["analyze"]).await).contains("UNPRUNED"), "nothing is left behind now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollback_with_a_dark_cluster_restores_the_live_ones_and_names_what_is_left() {
    let fleet = TestFleet::start().await;
    let before = istio_objects(&fleet).await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let out = cli.run(&["apply", "-f", CANARY, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let id = history(&cli).await[0]["id"].as_str().expect("id").to_string();
    let kept = on(&fleet, "cluster2").await;

    fleet.take_down("cluster2").await;
    let out = cli.run(&["rollback", &id, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains(&format!("{} objects of reviews-canary on cluster2 not removed", kept.len())), "{}", text(&out));
    assert!(on(&fleet, "cluster1").await.is_empty(), "cluster1 is back to before the canary");
    fleet.bring_up("cluster2").await;
    common::answers(&fleet, "cluster2").await;
    let ratings = write_plan(&cli, "ratings.yaml", RATINGS);
    let out = cli.run(&["apply", "-f", &ratings, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(on(&fleet, "cluster2").await.is_empty(), "{}", text(&out));
    let last = history(&cli).await.pop().expect("record")["id"].as_str().expect("id").to_string();
    let out = cli.run(&["rollback", &last, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(istio_objects(&fleet).await.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>(), "the fleet is as it began");
}

/// kill -9 right after the intent is recorded, then the same plan applied again: the
/// rollback the warning would have suggested must not delete the later apply's objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_rollback_of_a_killed_apply_never_undoes_a_later_apply() {
    let fleet = TestFleet::start().await;
    let proxy = SlowProxy::start(fleet.server_addr("cluster2"), Duration::from_millis(500)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let slow = MeshdeckCli::new(fleet.kubeconfig_via("cluster2", proxy.addr, dir.path()));
    let mut child = slow.command(&["apply", "-f", CANARY, "--yes"]).spawn().expect("spawns");
    common::cluster1_written(&fleet).await;
    child.kill().expect("kill -9");
    let _ = child.wait();
    drop(proxy);
    let pending = history(&slow).await;
    assert_eq!(pending[0]["report"]["outcome"], "pending", "{pending:?}");
    let killed = pending[0]["id"].as_str().expect("id").to_string();

    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    std::fs::remove_dir_all(cli.data.path()).expect("rm");
    common::copy_dir(slow.data.path(), cli.data.path());
    let out = cli.run(&["apply", "-f", CANARY, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let later = history(&cli).await.pop().expect("record")["id"].as_str().expect("id").to_string();
    let out = cli.run(&["apply", "-f", CANARY, "--dry-run"]).await;
    assert!(!text(&out).contains("was interrupted"), "a later apply covered every object of it: {}", text(&out));

    let live = istio_objects(&fleet).await;
    let out = cli.run(&["rollback", &killed, "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&format!("changed since by apply {later} (reviews-canary)")), "{}", text(&out));
    assert_eq!(istio_objects(&fleet).await, live, "nothing was written");
}

/// Someone labels the canary's VirtualService by hand; a forced rollback is shown and
/// verified as the request it sends (a PUT), so it is not undone by its own verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_rollback_over_a_hand_edit_is_written_as_previewed() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    assert_eq!(cli.run(&["apply", "-f", CANARY, "--yes"]).await.status.code(), Some(0));
    let seventy = write_plan(
        &cli,
        "canary-70.yaml",
        &std::fs::read_to_string(CANARY).expect("plan").replace("weight: 75", "weight: 70").replace("weight: 15", "weight: 20"),
    );
    let out = cli.run(&["apply", "-f", &seventy, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let second = history(&cli).await.pop().expect("record")["id"].as_str().expect("id").to_string();
    let label = json!({"metadata": {"labels": {"team": "payments", common::TEST_LABEL: "x"}}});
    vs_api(fleet.client("cluster1").await)
        .patch("reviews-canary", &PatchParams { field_manager: Some("kubectl-label".into()), ..Default::default() }, &Patch::Merge(&label))
        .await
        .expect("labelled");
    let out = cli.run(&["rollback", &second, "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "a hand edit since is named: {}", text(&out));
    assert!(text(&out).contains("changed outside meshdeck"), "{}", text(&out));
    let out = cli.run(&["rollback", &second, "--yes", "--force"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let last = history(&cli).await.pop().expect("record");
    assert_eq!(last["report"]["outcome"], "applied", "{last:#}");
    assert_eq!(weights(&fleet).await, vec![75, 15, 10], "back to the first apply's weights");
    // The record names its plan and the plan as it is live again (the composer starts from it).
    assert_eq!(last["plans"], json!(["reviews-canary"]), "{last:#}");
    assert!(last["planYaml"].as_str().is_some_and(|y| y.contains("weight: 75") && !y.contains("weight: 70")), "{last:#}");
    let out = cli.run(&["rollback", &second, "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&format!("{second} was already rolled back by {}", last["id"].as_str().expect("id"))), "{}", text(&out));
}

/// Ctrl-C mid-apply while someone edits an object meshdeck already wrote: the
/// restore leaves their edit and names the object, instead of writing over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restoring_leaves_what_another_writer_changed_meanwhile_and_names_it() {
    let fleet = TestFleet::start().await;
    let proxy = SlowProxy::start(fleet.server_addr("cluster2"), Duration::from_millis(700)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let cli = MeshdeckCli::new(fleet.kubeconfig_via("cluster2", proxy.addr, dir.path()));
    let child = cli.command(&["apply", "-f", CANARY, "--yes"]).stderr(std::process::Stdio::piped()).spawn().expect("spawns");
    common::cluster1_written(&fleet).await;
    let api = vs_api(fleet.client("cluster1").await);
    let edit = json!({"metadata": {"labels": {"edited-by": "someone", common::TEST_LABEL: "x"}}});
    api.patch("reviews-canary", &PatchParams { field_manager: Some("someone".into()), ..Default::default() }, &Patch::Merge(&edit))
        .await
        .expect("edited");
    let ok = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill -INT");
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("waits")).await.expect("joined");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("VirtualService/default/reviews-canary: changed by another writer"), "{}", text(&out));
    let vs = api.get("reviews-canary").await.expect("their edit stays");
    assert_eq!(vs.metadata.labels.unwrap_or_default().get("edited-by").map(String::as_str), Some("someone"));
    let last = history(&cli).await.pop().expect("record");
    assert_eq!(last["report"]["outcome"], "rollbackIncomplete", "{last:#}");
}

/// `inventory --watch -o json` is JSON lines: the fleet on one line, then one object
/// per change with an RFC 3339 time and structured fields; Ctrl-C ends it with 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_json_watch_is_one_object_per_line_and_ctrl_c_exits_130() {
    use std::io::BufRead;
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let mut watch = cli
        .command(&["--context", "cluster1", "--context", "cluster2", "--context", "cluster3", "inventory", "--watch", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    let stdout = watch.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(60)).expect("the fleet, first");
    let fleet_doc: Value = serde_json::from_str(&first).unwrap_or_else(|e| panic!("one JSON object on the first line ({e}): {first}"));
    assert!(fleet_doc["clusters"].as_array().is_some_and(|c| c.len() == 3), "{first}");
    fleet.take_down("cluster2").await;
    let change = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) else { continue };
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("a JSON line ({e}): {line}"));
            if v["change"] == "cluster" && v["cluster"] == "cluster2" && v["state"] == "unreachable" {
                return v;
            }
        }
        panic!("no line said cluster2 went unreachable");
    })
    .await
    .expect("joined");
    let time = change["time"].as_str().expect("time");
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "RFC 3339: {change}");
    fleet.bring_up("cluster2").await;
    let ok = std::process::Command::new("kill").args(["-INT", &watch.id().to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill -INT");
    let status = tokio::task::spawn_blocking(move || watch.wait().expect("waits")).await.expect("joined");
    assert_eq!(status.code(), Some(130), "{status:?}");
}

/// A calling cluster that cannot be seen is unknown, not absent: `routes` and
/// `trust status` say so and fail, as `analyze` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_trust_status_call_a_dark_cluster_unknown_and_fail() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let ctx = ["--context", "cluster1", "--context", "cluster2", "--context", "cluster3"];
    let out = cli.run(&[&ctx[..], &["routes", "reviews"]].concat()).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    fleet.take_down("cluster3").await;
    let out = cli.run(&[&ctx[..], &["routes", "reviews", "--from", "cluster3", "--timeout", "3"]].concat()).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cluster3: unknown (unreachable"), "{}", text(&out));
    assert!(!text(&out).contains("no calling cluster with Istio sees the service"), "{}", text(&out));
    let out = cli.run(&[&ctx[..], &["routes", "reviews", "-o", "json", "--timeout", "3"]].concat()).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["unknown"][0]["from"], "cluster3", "{v:#}");
    assert!(v["routes"].as_array().is_some_and(|r| !r.is_empty()), "the clusters seen still have theirs: {v:#}");
    let out = cli.run(&[&ctx[..], &["trust", "status", "--timeout", "3"]].concat()).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!text(&out).contains("every cluster trusts the same root"), "{}", text(&out));
    assert!(text(&out).contains("cluster3 not read: unknown"), "{}", text(&out));
    fleet.bring_up("cluster3").await;
}

/// `-f -` reads the plan from standard input, as kubectl does: render, diff, apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_on_standard_input_is_rendered_diffed_and_applied() {
    use std::io::Write;
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let plan = std::fs::read_to_string(CANARY).expect("plan");
    for args in [vec!["render", "-f", "-"], vec!["diff", "-f", "-"], vec!["apply", "-f", "-", "--yes"]] {
        let (cli, plan) = (cli.clone(), plan.clone());
        let out = tokio::task::spawn_blocking(move || {
            let mut child = cli
                .command(&args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawns");
            child.stdin.take().expect("stdin").write_all(plan.as_bytes()).expect("written");
            child.wait_with_output().expect("output")
        })
        .await
        .expect("joined");
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    assert_eq!(weights(&fleet).await, vec![75, 15, 10]);
    let records = history(&cli).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let out = cli.run(&["diff", "-f", "-"]).await;
    assert_eq!(out.status.code(), Some(2), "an empty plan is bad input: {}", text(&out));
    assert!(text(&out).contains("<stdin>"), "{}", text(&out));
}

/// Ctrl-C at the prompt that follows a write (trust's "restart istiod?") ends
/// meshdeck at once with 130: the signal handler of the write is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_at_the_prompt_after_a_write_ends_meshdeck() {
    if !common::tool_available("tmux", &["-V"]) {
        return;
    }
    let fleet = TestFleet::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let d = dir.path().display();
    let session = format!("meshdeck-prompt-{}", std::process::id());
    let cmd = format!(
        "env MESHDECK_DATA_DIR={d}/data MESHDECK_STATE_DIR={d}/state MESHDECK_CONFIG_DIR={d}/config {} --kubeconfig {} --context cluster1 trust plan --generate-root {d}/root.key; echo EXIT=$?; sleep 60",
        env!("CARGO_BIN_EXE_meshdeck"),
        fleet.kubeconfig_path().display()
    );
    let ok = std::process::Command::new("tmux")
        .args(["new-session", "-d", "-s", &session, "-x", "160", "-y", "45", &cmd])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "tmux new-session");
    let tmux = common::tmux::Tmux { session };
    tmux.wait_for(&["trust-plan: apply to cluster1? [y/N]"], 30);
    tmux.keys(&["y", "Enter"]);
    tmux.wait_for(&["recorded as", "trust-restart: apply to cluster1? [y/N]"], 30);
    tmux.keys(&["C-c"]);
    let screen = tmux.wait_for(&["EXIT="], 10);
    assert!(screen.contains("EXIT=130"), "{screen}");
    assert!(dir.path().join("root.key").exists(), "the confirmed plan saved its key");
}

/// A cluster dark when the cockpit starts has its CA read as soon as it is live again,
/// not at the next minute's read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_view_reads_a_returning_clusters_ca_at_once() {
    if !common::tool_available("tmux", &["-V"]) {
        return;
    }
    let fleet = TestFleet::start().await;
    fleet.take_down("cluster2").await;
    let dir = tempfile::tempdir().expect("tmp");
    let tmux = common::tmux::start_cockpit(
        "ca-reread",
        dir.path(),
        &fleet.kubeconfig_path(),
        "--context cluster1 --context cluster2 --context cluster3",
        160,
        45,
    );
    tmux.wait_for(&["reviews"], 30);
    tmux.keys(&["g", "c"]);
    let row = |screen: &str| screen.lines().find(|l| l.trim_start().starts_with("cluster2")).map(String::from).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = row(&tmux.screen());
        if r.contains("unreachable") && !r.contains("plugged-in") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "cluster2 never showed as dark with its CA unknown: {r}");
        std::thread::sleep(Duration::from_millis(100));
    }
    fleet.bring_up("cluster2").await;
    // Well inside the minute between two regular reads.
    let deadline = std::time::Instant::now() + Duration::from_secs(25);
    loop {
        let r = row(&tmux.screen());
        if r.contains("plugged-in") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "cluster2's CA was not read again once it was live: {r}\n{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(100));
    }
}
