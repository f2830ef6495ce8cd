//! An apply on a bad day (issue #11), from the command line, on the sim and on
//! the real test bed: Ctrl-C and kill -9 mid-apply, a server that never answers,
//! a change between diff and confirm, a user who could not undo, fields owned by
//! others, a corrupt history file, a second apply at once. cluster2 is reached
//! through a proxy the test owns (slow, or stalled), so both fleets are slowed
//! the same way.

mod common;

use std::time::Duration;

use common::{MeshdeckCli, SlowProxy, TestFleet, istio_objects, text};
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::Value;

const CANARY: &str = "examples/reviews-canary.yaml";

fn vs_api(client: kube::Client) -> Api<DynamicObject> {
    let (ar, _) = meshdeck::apply::target::resource("VirtualService").expect("kind");
    Api::namespaced_with(client, "default", &ar)
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill").args([sig, &pid.to_string()]).status().is_ok_and(|s| s.success());
    assert!(ok, "kill {sig} {pid}");
}

/// Wait for a child with a deadline; its exit code.
async fn exit_code(mut child: std::process::Child, secs: u64) -> (Option<i32>, String) {
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return (status.code(), err);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("meshdeck did not end within {secs}s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("joined")
}

fn history(o: &std::process::Output) -> Vec<Value> {
    serde_json::from_slice::<Vec<Value>>(&o.stdout).unwrap_or_else(|e| panic!("history JSON ({e}): {}", text(o)))
}

/// Ctrl-C once the first objects are live: no more writes, every written object
/// restored, the record says RolledBack, exit 130.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ctrl_c_during_a_slow_apply_restores_every_cluster_and_records_it() {
    let fleet = TestFleet::start().await;
    let before = istio_objects(&fleet).await;
    let proxy = SlowProxy::start(fleet.server_addr("cluster2"), Duration::from_millis(500)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let cli = MeshdeckCli::new(fleet.kubeconfig_via("cluster2", proxy.addr, dir.path()));
    let child = cli.command(&["apply", "-f", CANARY, "--yes"]).stderr(std::process::Stdio::piped()).spawn().expect("spawns");
    let pid = child.id();
    common::cluster1_written(&fleet).await;
    // cluster2's writes wait at the proxy, so the signal comes while they are under way.
    proxy.stall.store(true, std::sync::atomic::Ordering::SeqCst);
    signal(pid, "-INT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.stall.store(false, std::sync::atomic::Ordering::SeqCst);
    let (code, stderr) = exit_code(child, 120).await;
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted: no more writes"), "{stderr}");
    assert_eq!(istio_objects(&fleet).await, before, "every cluster is as it was before: {stderr}");
    let records = history(&cli.run(&["history", "-o", "json"]).await);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["report"]["outcome"], "rolledBack", "{}", records[0]["report"]);
}

/// kill -9 mid-apply: the intent was recorded first, the next run says so, and
/// `rollback ID` finishes the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_an_apply_leaves_a_pending_record_that_rollback_finishes() {
    let fleet = TestFleet::start().await;
    let before = istio_objects(&fleet).await;
    let proxy = SlowProxy::start(fleet.server_addr("cluster2"), Duration::from_millis(500)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let cli = MeshdeckCli::new(fleet.kubeconfig_via("cluster2", proxy.addr, dir.path()));
    let child = cli.command(&["apply", "-f", CANARY, "--yes"]).spawn().expect("spawns");
    let pid = child.id();
    common::cluster1_written(&fleet).await;
    proxy.stall.store(true, std::sync::atomic::Ordering::SeqCst);
    signal(pid, "-KILL");
    let (code, _) = exit_code(child, 30).await;
    assert_eq!(code, None, "killed by a signal");
    assert_ne!(istio_objects(&fleet).await, before, "the killed apply left objects behind");

    let records = history(&cli.run(&["history", "-o", "json"]).await);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["report"]["outcome"], "pending", "the intent was recorded before the first write");
    let id = records[0]["id"].as_str().expect("id").to_string();
    drop(proxy);
    let direct = MeshdeckCli::new(fleet.kubeconfig_path());
    std::fs::remove_dir_all(direct.data.path()).expect("rm");
    common::copy_dir(cli.data.path(), direct.data.path());
    let out = direct.run(&["apply", "-f", CANARY, "--dry-run"]).await;
    assert!(text(&out).contains(&format!("apply {id} (reviews-canary) was interrupted")), "{}", text(&out));
    let out = direct.run(&["rollback", &id, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(istio_objects(&fleet).await, before, "the rollback finished what the killed apply left");
    let out = direct.run(&["apply", "-f", CANARY, "--dry-run"]).await;
    assert!(!text(&out).contains("was interrupted"), "finished once rolled back: {}", text(&out));
}

/// cluster2 accepts the write and never answers: the call's deadline ends the
/// apply, cluster1 is restored, and once cluster2 answers again the rollback of
/// the record restores it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_that_never_answers_ends_the_apply_at_its_deadline() {
    let fleet = TestFleet::start().await;
    let before = istio_objects(&fleet).await;
    let proxy = SlowProxy::start(fleet.server_addr("cluster2"), Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().expect("tmp");
    let cli = MeshdeckCli::new(fleet.kubeconfig_via("cluster2", proxy.addr, dir.path()));
    let child = cli
        .command(&["apply", "-f", CANARY, "--yes", "--request-timeout", "3"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    common::cluster1_written(&fleet).await;
    proxy.stall.store(true, std::sync::atomic::Ordering::SeqCst);
    let (code, stderr) = exit_code(child, 120).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no answer within 3s"), "{stderr}");
    let cluster1_now: Vec<String> = istio_objects(&fleet).await.into_keys().filter(|k| k.starts_with("cluster1/")).collect();
    assert!(cluster1_now.is_empty(), "cluster1 was restored: {cluster1_now:?}");
    proxy.stall.store(false, std::sync::atomic::Ordering::SeqCst);
    let records = history(&cli.run(&["history", "-o", "json"]).await);
    let id = records[0]["id"].as_str().expect("id").to_string();
    let out = cli.run(&["rollback", &id, "--yes"]).await;
    assert!(out.status.success() || text(&out).contains("nothing to change"), "{}", text(&out));
    assert_eq!(istio_objects(&fleet).await, before);
}

/// A change by another writer between the diff and the writes stops the apply
/// before anything is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_between_diff_and_write_stops_the_apply() {
    use meshdeck::apply::{ApplyError, ApplyOptions, PruneScope, desired_for_plan, prepare};
    let fleet = TestFleet::start().await;
    let clusters = fleet.registry().await;
    let mut inventory = meshdeck::inventory::Inventory::start(&clusters);
    let inv = inventory.settled(Duration::from_secs(30)).await;
    let text_plan = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CANARY)).expect("plan");
    let plan = meshdeck::plan::load("canary.yaml", &text_plan, &inv).expect("plan");
    let rendered = meshdeck::render::render(&plan, &inv).expect("render");
    let opts = ApplyOptions { concurrency: 8, ..Default::default() };
    let desired = desired_for_plan(&clusters, &plan, &rendered, &PruneScope::default()).await.expect("desired");
    let set = prepare(&clusters, desired, &opts).await.expect("prepared");
    // Someone else creates the VirtualService meanwhile.
    let other: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews-canary", "namespace": "default", "labels": {common::TEST_LABEL: "x"}},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}
    }))
    .expect("object");
    vs_api(fleet.client("cluster1").await)
        .create(&PostParams { field_manager: Some("someone".into()), ..Default::default() }, &other)
        .await
        .expect("created");
    let before = istio_objects(&fleet).await;
    let data = tempfile::tempdir().expect("tmp");
    let pipeline =
        meshdeck::apply::Pipeline::new(&clusters, data.path(), meshdeck::policy::Persona::unrestricted(), opts.clone()).expect("pipeline");
    let prepared = meshdeck::apply::Prepared {
        intent: meshdeck::apply::Intent::apply(vec!["reviews-canary".into()], String::new()),
        changes: set,
        unpruned: Vec::new(),
        swept: Vec::new(),
        persona: "unrestricted".into(),
    };
    let err = pipeline.write(prepared, meshdeck::apply::Confirmation::YesFlag, || Ok(())).await.expect_err("stale");
    assert!(matches!(err, ApplyError::Stale(_)), "{err}");
    assert!(err.to_string().contains("cluster1: VirtualService/default/reviews-canary: changed"), "{err}");
    assert_eq!(istio_objects(&fleet).await, before, "nothing was written");
    // The record tells the truth: stale, and no list of changes that did not happen.
    let records = meshdeck::apply::history::History::open(data.path()).expect("history").list().expect("records");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].report.outcome, meshdeck::apply::write::Outcome::Stale);
    assert!(records[0].changes.steps.is_empty() && records[0].clusters.is_empty(), "{:?}", records[0].changes);
}

/// Fields another manager owned before the apply are its again after the rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rollback_hands_fields_back_to_the_manager_that_owned_them() {
    let fleet = TestFleet::start().await;
    let api = vs_api(fleet.client("cluster1").await);
    let theirs: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews-canary", "namespace": "default", "labels": {common::TEST_LABEL: "x", "team": "bookinfo"}},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}
    }))
    .expect("object");
    api.create(&PostParams { field_manager: Some("helm".into()), ..Default::default() }, &theirs).await.expect("created by helm");
    let before = serde_json::to_value(api.get("reviews-canary").await.expect("get")).expect("json");
    let owners = |o: &Value| meshdeck::apply::write::managers(o).into_iter().map(|m| format!("{}/{}", m.0, m.1)).collect::<Vec<_>>();
    assert_eq!(owners(&before), ["helm/Update"]);

    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let out = cli.run(&["apply", "-f", CANARY, "--yes", "--force-conflicts"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let during = serde_json::to_value(api.get("reviews-canary").await.expect("get")).expect("json");
    assert!(owners(&during).contains(&"meshdeck/Apply".to_string()), "{:?}", owners(&during));
    let id = history(&cli.run(&["history", "-o", "json"]).await)[0]["id"].as_str().expect("id").to_string();
    let out = cli.run(&["rollback", &id, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = serde_json::to_value(api.get("reviews-canary").await.expect("get")).expect("json");
    assert_eq!(meshdeck::apply::target::normalized(&after), meshdeck::apply::target::normalized(&before), "content as before");
    assert_eq!(
        meshdeck::apply::write::managers(&after),
        meshdeck::apply::write::managers(&before),
        "owners as before: {:?}",
        owners(&after)
    );
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"], "the same object, not a re-created one");
}

/// A user who may create but not delete could not undo a create: refused before any write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_could_not_undo_is_refused_at_preflight() {
    let fleet = TestFleet::start().await;
    let before = istio_objects(&fleet).await;
    let mut team = fleet.kubeconfig_path().into_os_string();
    team.push(".team");
    let cli = MeshdeckCli::new(team.into());
    std::fs::write(cli.config.path().join("config.yaml"), "clusters:\n  - {context: cluster1-nodelete, name: cluster1}\n").expect("config");
    let plan = cli.data.path().join("local.yaml");
    std::fs::write(&plan, "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: reviews-local}\nspec:\n  service: reviews.default\n  from: {clusters: [cluster1]}\n  split:\n    - {cluster: cluster1, version: v1, weight: 90}\n    - {cluster: cluster1, version: v2, weight: 10}\n").expect("plan");
    let out = cli.run(&["apply", "-f", plan.to_str().expect("utf8"), "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cluster1: cannot delete virtualservices.networking.istio.io in namespace default"), "{}", text(&out));
    assert_eq!(istio_objects(&fleet).await, before, "nothing was written");
}

/// A second apply while one holds the fleet's lock is refused, naming the holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_apply_at_a_time() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    // Another process holds the lock (an OS advisory lock: the test takes it itself).
    let history = meshdeck::apply::history::History::open(cli.data.path()).expect("history");
    let held = history.lock("apply 20261125-120000-abcd").expect("the lock");
    let before = istio_objects(&fleet).await;
    let out = cli.run(&["apply", "-f", CANARY, "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let holder = format!("pid {} on ", std::process::id());
    assert!(
        text(&out).contains("another change is being written (")
            && text(&out).contains(&holder)
            && text(&out).contains(": apply 20261125-120000-abcd)"),
        "{}",
        text(&out)
    );
    assert_eq!(istio_objects(&fleet).await, before);
    let records: Vec<Value> = serde_json::from_slice(&cli.run(&["history", "-o", "json"]).await.stdout).expect("history");
    assert!(records.is_empty(), "a refused apply left no record: {records:?}");
    drop(held);
    // What a holder that died wrote stays in the file; the lock itself went with it.
    std::fs::write(cli.data.path().join("apply.lock"), "pid 999999999 on elsewhere since 12:00:00: apply x").expect("lock");
    let out = cli.run(&["apply", "-f", CANARY, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Released when the apply ended: the next one takes it.
    let again = history.lock("the test again");
    assert!(again.is_ok(), "{again:?}");
}

/// One corrupt history file is named, and the rest of history still works.
#[test]
fn a_corrupt_history_file_is_named_and_the_rest_still_works() {
    let data = tempfile::tempdir().expect("tmp");
    let dir = data.path().join("history");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let good = serde_json::json!({
        "id": "20261125-120000-0001", "time": "t", "action": "apply", "persona": "p", "plans": ["x"], "clusters": [],
        "report": {"outcome": "applied", "clusters": {}}, "changes": {"steps": []}
    });
    std::fs::write(dir.join("20261125-120000-0001.json"), good.to_string()).expect("write");
    std::fs::write(dir.join("20261125-120001-0002.json"), "{\"id\": \"20261125-120001-0002\", trunc").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meshdeck"))
        .args(["history", "-o", "json"])
        .env("MESHDECK_DATA_DIR", data.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let records = history(&out);
    assert_eq!(records.len(), 1);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains(&format!("{}: not a history record", dir.join("20261125-120001-0002.json").display())),
        "{}",
        text(&out)
    );
}
