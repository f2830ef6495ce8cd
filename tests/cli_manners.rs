//! Real context names and CLI manners (issue #20), on the sim and on the real
//! test bed where a fleet is involved: cloud CLIs' context names, a folder that
//! `render --out-dir` owns, no half-synced answers, a closed pipe, and messages
//! that name the limit, the file, the entry or the flag.

mod common;

use std::process::{Command, Stdio};

use common::{MeshdeckCli, TestFleet, istio_objects, text};
use serde_json::Value;

const CANARY: &str = "examples/reviews-canary.yaml";

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

fn canary() -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(CANARY)).expect("example")
}

/// The fleet's admin contexts under names gcloud and aws write.
fn cloud_kubeconfig(fleet: &TestFleet, dir: &std::path::Path) -> std::path::PathBuf {
    let kc: Value = serde_saphyr::from_str(&fleet.kubeconfig_yaml()).expect("kubeconfig");
    let names = [
        ("cluster1", "gke_my-project_us-central1-a_east"),
        ("cluster2", "arn:aws:eks:us-east-1:123456789012:cluster/west"),
        ("cluster3", "gke_my-project_europe-west1_north"),
    ];
    let contexts: Vec<Value> =
        names.iter().map(|(c, name)| serde_json::json!({"name": name, "context": {"cluster": c, "user": format!("{c}-admin")}})).collect();
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": names[0].1,
        "clusters": kc["clusters"], "users": kc["users"], "contexts": contexts,
    });
    let path = dir.join("kubeconfig-cloud");
    std::fs::write(&path, serde_json::to_string(&doc).expect("json")).expect("write");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloud_cli_context_names_give_registry_names_that_render_and_apply() {
    let fleet = TestFleet::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let cli = MeshdeckCli::new(cloud_kubeconfig(&fleet, dir.path()));
    let out = cli.run(&["clusters", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows: Vec<(String, String)> = serde_json::from_slice::<Vec<Value>>(&out.stdout)
        .expect("json")
        .iter()
        .map(|c| (c["name"].as_str().unwrap_or("").into(), c["context"].as_str().unwrap_or("").into()))
        .collect();
    assert_eq!(
        rows,
        [
            ("east".to_string(), "gke_my-project_us-central1-a_east".to_string()),
            ("west".into(), "arn:aws:eks:us-east-1:123456789012:cluster/west".into()),
            ("north".into(), "gke_my-project_europe-west1_north".into())
        ]
    );
    // The plan may name the clusters by registry name, or by context name (an alias note).
    let plan = canary()
        .replace("clusters: [cluster1]", "clusters: [gke_my-project_us-central1-a_east]")
        .replace("cluster: cluster1", "cluster: east")
        .replace("cluster2", "west");
    let file = write(cli.data.path(), "cloud.yaml", &plan);
    let out = cli.run(&["render", "-f", &file, "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rendered: Value = serde_json::from_slice(&out.stdout).expect("json");
    let schemas = common::istio_schemas();
    for (_, objs) in rendered["clusters"].as_object().expect("clusters") {
        for o in objs.as_array().expect("objects") {
            common::assert_valid_istio(&schemas, o);
            let name = o["metadata"]["name"].as_str().expect("name");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{name}");
        }
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("v3.reviews.default.svc.west.global"));
    let out = cli.run(&["apply", "-f", &file, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_owns_its_out_dir() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let work = tempfile::tempdir().expect("tmp");
    let out_dir = work.path().join("out");
    let files = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> =
            common::files_under(d).into_iter().map(|p| p.strip_prefix(d).expect("under").display().to_string()).collect();
        v.sort();
        v
    };
    let out = cli.run(&["render", "-f", CANARY, "--out-dir", out_dir.to_str().expect("utf8")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(files(&out_dir).iter().any(|f| f.starts_with("cluster2/")), "{:?}", files(&out_dir));
    let local = write(
        cli.data.path(),
        "local.yaml",
        "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: reviews-canary}\nspec:\n  service: reviews.default\n  from: {clusters: [cluster1]}\n  split:\n    - {cluster: cluster1, version: v1, weight: 90}\n    - {cluster: cluster1, version: v2, weight: 10}\n",
    );
    let out = cli.run(&["render", "-f", &local, "--out-dir", out_dir.to_str().expect("utf8")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        files(&out_dir),
        [".meshdeck-render", "cluster1/destinationrule-default-reviews-canary.yaml", "cluster1/virtualservice-default-reviews-canary.yaml"],
        "exactly this render's files: the canary's cluster2 files are gone"
    );

    // A folder with someone else's files is not meshdeck's to clean.
    let foreign = work.path().join("foreign");
    std::fs::create_dir_all(&foreign).expect("mkdir");
    std::fs::write(foreign.join("keep.txt"), "mine").expect("write");
    let out = cli.run(&["render", "-f", CANARY, "--out-dir", foreign.to_str().expect("utf8")]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("holds files meshdeck did not write"), "{}", text(&out));
    assert_eq!(files(&foreign), ["keep.txt"]);

    // A hostile cluster name in an inventory file never becomes a path.
    let out = cli.run(&["inventory", "-o", "json"]).await;
    let inv = String::from_utf8_lossy(&out.stdout).replace("\"cluster2\"", "\"../../x\"");
    let inv_file = write(cli.data.path(), "inv.json", &inv);
    let hostile = write(cli.data.path(), "hostile.yaml", &canary().replace("cluster2", "../../x"));
    let target = work.path().join("hostile");
    let out = cli.run(&["render", "-f", &hostile, "--inventory", &inv_file, "--out-dir", target.to_str().expect("utf8")]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cluster name \"../../x\" cannot be part of object names and hosts"), "{}", text(&out));
    assert!(
        !target.exists() && !work.path().join("x").exists() && !work.path().parent().expect("parent").join("x").exists(),
        "nothing outside the folder"
    );
}

/// Many commands at once, each with a fresh inventory: none judges a plan before
/// the facts are in.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_parallel_renders_all_succeed() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    // A generous --timeout: 30 commands of 3 clusters' watchers at once on 2 cores are slow;
    // what must not happen is an answer before the facts are in.
    const ARGS: [&str; 6] = ["render", "-f", "examples/reviews-callers.yaml", "--timeout", "90", "-o"];
    let runs: Vec<_> = (0..30)
        .map(|_| {
            let cli = cli.clone();
            async move { cli.run(&[ARGS[0], ARGS[1], ARGS[2], ARGS[3], ARGS[4], ARGS[5], "json"]).await }
        })
        .collect();
    let outs = futures::future::join_all(runs).await;
    let failed: Vec<String> = outs.iter().filter(|o| o.status.code() != Some(0)).map(text).collect();
    assert!(failed.is_empty(), "{} of 30 failed: {}", failed.len(), failed.first().cloned().unwrap_or_default());
}

#[test]
fn a_closed_pipe_ends_quietly() {
    let data = tempfile::tempdir().expect("tmp");
    let dir = data.path().join("history");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // Enough output to fill the pipe: the reader leaves after one line.
    for i in 0..400 {
        let rec = serde_json::json!({
            "id": format!("20261125-120000-{i:04x}"), "time": "2026-11-25T12:00:00Z", "action": "apply", "persona": "p",
            "plans": ["x".repeat(200)], "clusters": [], "report": {"outcome": "applied", "clusters": {}}, "changes": {"steps": []}
        });
        std::fs::write(dir.join(format!("20261125-120000-{i:04x}.json")), rec.to_string()).expect("write");
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshdeck"))
        .args(["history", "-o", "json"])
        .env("MESHDECK_DATA_DIR", data.path())
        .env("MESHDECK_STATE_DIR", data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawns");
    {
        use std::io::BufRead;
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line).expect("a line");
        assert_eq!(line.trim(), "[");
    }
    let out = child.wait_with_output().expect("waits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(out.status.code(), Some(141), "SIGPIPE's conventional status: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_name_the_limit_the_file_the_entry_or_the_flag() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let dir = cli.data.path();

    let many: String = (0..1025)
        .map(|i| format!("apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {{name: r{i}}}\nspec: {{}}\n---\n"))
        .collect();
    let out = cli.run(&["render", "-f", &write(dir, "many.yaml", &many)]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("too many documents: a plan file holds at most 1024, this one has 1025"), "{}", text(&out));

    let long =
        format!("apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {{name: {}}}\nspec: {{}}\n", "a".repeat(1_000_000));
    let out = cli.run(&["render", "-f", &write(dir, "long.yaml", &long)]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).len() < 4000 && text(&out).contains("(1000000 bytes)"), "{}", &text(&out)[..text(&out).len().min(400)]);

    let out = cli.run(&["render", "-f", &write(dir, "list.yaml", "- apiVersion: meshdeck.dev/v1alpha1\n  kind: TrafficRoute\n")]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("each document must be a mapping"), "{}", text(&out));

    let out = Command::new(env!("CARGO_BIN_EXE_meshdeck")).args(["clusters"]).env("KUBECONFIG", "/nonexistent").output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("KUBECONFIG names /nonexistent, and none of them exists"), "{}", text(&out));

    let out = cli.run(&["diff", "-f", CANARY, "--as-persona", "nobody"]).await;
    assert_eq!(out.status.code(), Some(2), "a usage error: {}", text(&out));

    let kc =
        fleet.kubeconfig_yaml().replace("cluster: cluster2,", "cluster: cluster9,").replace("cluster: cluster2\n", "cluster: cluster9\n");
    let broken = MeshdeckCli::new(std::path::PathBuf::from(write(dir, "kubeconfig-broken", &kc)));
    let out = broken.run(&["clusters", "-o", "json"]).await;
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let c2 = rows.iter().find(|r| r["name"] == "cluster2").expect("cluster2");
    assert_eq!(c2["error"]["message"], "context cluster2 names cluster \"cluster9\", which is not in the kubeconfig's clusters");

    // Another manager's field: the diff says how to take it.
    let (ar, _) = meshdeck::apply::target::resource("VirtualService").expect("kind");
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(fleet.client("cluster1").await, "default", &ar);
    let theirs: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews-canary", "labels": {common::TEST_LABEL: "x"}},
        "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}
    }))
    .expect("object");
    api.patch("reviews-canary", &kube::api::PatchParams::apply("helm"), &kube::api::Patch::Apply(&theirs)).await.expect("helm's");
    let before = istio_objects(&fleet).await;
    let out = cli.run(&["diff", "-f", CANARY]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("hint: another field manager owns these fields; --force-conflicts"), "{}", text(&out));
    assert_eq!(istio_objects(&fleet).await, before);

    // Gateways list their hosts (from servers[].hosts) in the inventory.
    api.delete("reviews-canary", &Default::default()).await.expect("deleted");
    let out = cli.run(&["apply", "-f", CANARY, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let inv: Value = serde_json::from_slice(&cli.run(&["inventory", "-o", "json"]).await.stdout).expect("inventory");
    let gw = inv["istioObjects"].as_array().expect("objects").iter().find(|o| o["kind"] == "Gateway").expect("a Gateway").clone();
    assert_eq!(gw["hosts"], serde_json::json!(["v3.reviews.default.svc.cluster2.global"]), "{gw}");
}
