//! Clusters as operators have them (issue #10): the contexts that reach one API
//! server are one cluster with aliases; which alias acts is a choice; a cluster
//! that cannot be seen is unknown, not empty. Runs on the sim and on the real
//! test bed (MESHDECK_TEST_FLEET=real).

mod common;

use std::process::Output;

use serde_json::Value;

use common::{MeshdeckCli as Cli, istio_objects, text};

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

async fn run(cli: &std::sync::Arc<Cli>, args: &[&str]) -> Output {
    cli.run(args).await
}

/// Pods per cluster as the admin context lists them.
async fn pod_count(fleet: &common::TestFleet, context: &str) -> u64 {
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(fleet.client(context).await);
    api.list(&Default::default()).await.expect("pods").items.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleets_kubeconfig_gives_three_clusters_with_one_alias_each_and_counts_each_pod_once() {
    let fleet = common::TestFleet::start().await;
    let cli = Cli::new(fleet.kubeconfig_path());

    let out = run(&cli, &["clusters", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let clusters = json(&out);
    let rows: Vec<(String, String, Vec<String>)> = clusters
        .as_array()
        .expect("array")
        .iter()
        .map(|c| {
            let aliases =
                c["aliases"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect()).unwrap_or_default();
            (c["name"].as_str().unwrap_or("").to_string(), c["context"].as_str().unwrap_or("").to_string(), aliases)
        })
        .collect();
    assert_eq!(
        rows,
        [1, 2, 3].map(|n| (format!("cluster{n}"), format!("cluster{n}"), vec![format!("cluster{n}-restricted")])),
        "{} fleet",
        fleet.kind()
    );
    for c in clusters.as_array().expect("array") {
        assert!(c["clusterUid"].as_str().is_some_and(|u| !u.is_empty()), "the kube-system uid confirms the identity: {c}");
    }

    let out = run(&cli, &["clusters"]).await;
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(table.lines().next().is_some_and(|h| h.contains("ALIASES")), "{table}");
    assert!(table.contains("cluster1-restricted"), "{table}");

    let out = run(&cli, &["inventory", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let inv = json(&out);
    assert_eq!(inv["clusters"].as_array().map(Vec::len), Some(3), "{}", inv["clusters"]);
    for cluster in ["cluster1", "cluster2", "cluster3"] {
        // Pods behind Services, counted from the inventory; every pod of the world is behind one.
        let counted: u64 = inv["services"]
            .as_array()
            .expect("services")
            .iter()
            .filter_map(|s| s["clusters"].get(cluster))
            .map(|p| {
                let versions: u64 =
                    p["versions"].as_object().map(|v| v.values().map(|c| c["total"].as_u64().unwrap_or(0)).sum()).unwrap_or(0);
                versions + p["unversioned"]["total"].as_u64().unwrap_or(0)
            })
            .sum();
        let live = pod_count(&fleet, cluster).await;
        assert!(live > 0 && counted <= live, "{cluster}: the inventory counts {counted} pods behind services, the cluster has {live}");
    }
    let reviews = inv["services"].as_array().expect("services").iter().find(|s| s["name"] == "reviews").expect("reviews");
    assert_eq!(reviews["clusters"]["cluster1"]["versions"]["v1"]["total"], 1, "one reviews-v1 pod, counted once: {reviews}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_talks_canary_and_access_policy_apply_with_the_default_kubeconfig_and_the_restricted_alias_is_refused() {
    let fleet = common::TestFleet::start().await;
    let cli = Cli::new(fleet.kubeconfig_path());

    // Acting as the restricted identity for cluster1: preflight names what it may not do.
    let before = istio_objects(&fleet).await;
    let out = run(&cli, &["--context", "cluster1-restricted", "--context", "cluster2", "clusters", "-o", "json"]).await;
    let rows = json(&out);
    assert_eq!(rows[0]["name"], "cluster1", "{rows}");
    assert_eq!(rows[0]["context"], "cluster1-restricted", "{rows}");
    let out = run(
        &cli,
        &[
            "--context",
            "cluster1-restricted",
            "--context",
            "cluster2",
            "--context",
            "cluster3",
            "apply",
            "-f",
            "examples/reviews-callers.yaml",
            "--yes",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("cluster1: cannot create authorizationpolicies.security.istio.io in namespace default"),
        "preflight names the cluster and the missing permission: {}",
        text(&out)
    );
    assert_eq!(istio_objects(&fleet).await, before, "nothing was written");

    // With the kubeconfig as it is: one apply target per cluster, the admin context acts.
    for plan in ["examples/reviews-canary.yaml", "examples/reviews-callers.yaml"] {
        let out = run(&cli, &["apply", "-f", plan, "--yes"]).await;
        assert_eq!(out.status.code(), Some(0), "{plan}: {}", text(&out));
        assert!(!text(&out).contains("restricted"), "no alias is an apply target: {}", text(&out));
    }
    // Re-applying plans nothing: prune goes once through each cluster, not through its alias too.
    let out = run(&cli, &["diff", "-f", "examples/reviews-canary.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let diff = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!diff.lines().any(|l| l.starts_with("- ") || l.starts_with("+ ") || l.starts_with("~ ")), "nothing to change:\n{diff}");

    // A plan may name an alias: it resolves to its cluster, with a note.
    let aliased = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reviews-canary.yaml"))
        .expect("example")
        .replace("clusters: [cluster1]", "clusters: [cluster1-restricted]");
    let file = cli.data.path().join("aliased.yaml");
    std::fs::write(&file, aliased).expect("write");
    let out = run(&cli, &["diff", "-f", file.to_str().expect("utf8")]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("cluster1-restricted is an alias of cluster1"), "{}", text(&out));
}

/// Two names for one API server and a third context for another: two clusters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_names_for_one_server_and_a_third_context_give_two_clusters() {
    let fleet = common::TestFleet::start().await;
    let kc: Value = serde_saphyr::from_str(&fleet.kubeconfig_yaml()).expect("kubeconfig");
    let server =
        |name: &str| kc["clusters"].as_array().and_then(|cs| cs.iter().find(|c| c["name"] == name)).expect("cluster")["cluster"].clone();
    let user = |name: &str| kc["users"].as_array().and_then(|us| us.iter().find(|u| u["name"] == name)).expect("user")["user"].clone();
    // As two cloud CLIs would write them: different cluster entry names, one server.
    let doc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "gke_proj_europe-west1_east",
        "clusters": [
            {"name": "gke_proj_europe-west1_east", "cluster": server("cluster1")},
            {"name": "east-by-hand", "cluster": server("cluster1")},
            {"name": "west", "cluster": server("cluster2")},
        ],
        "users": [
            {"name": "admin1", "user": user("cluster1-admin")},
            {"name": "admin2", "user": user("cluster2-admin")},
        ],
        "contexts": [
            {"name": "gke_proj_europe-west1_east", "context": {"cluster": "gke_proj_europe-west1_east", "user": "admin1"}},
            {"name": "east", "context": {"cluster": "east-by-hand", "user": "admin1", "namespace": "default"}},
            {"name": "west", "context": {"cluster": "west", "user": "admin2"}},
        ],
    });
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, serde_json::to_string(&doc).expect("json")).expect("write");
    let cli = Cli::new(path);
    let out = run(&cli, &["clusters", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows = json(&out);
    let names: Vec<(&str, Value)> =
        rows.as_array().expect("rows").iter().map(|r| (r["name"].as_str().unwrap_or(""), r["aliases"].clone())).collect();
    // The registry name is the cluster part of gcloud's name (a DNS label); the hand-written
    // `east` context is its alias.
    assert_eq!(names, [("east", serde_json::json!(["east"])), ("west", serde_json::json!([]))], "{rows}");
    assert_eq!(rows[0]["context"], "gke_proj_europe-west1_east");
    assert!(text(&out).find("DUP_CLUSTER").is_none(), "one cluster is not reported as two: {}", text(&out));

    // --context east alone: that cluster, acting through the alias.
    let out = run(&cli, &["--context", "east", "clusters", "-o", "json"]).await;
    let rows = json(&out);
    assert_eq!((rows[0]["name"].as_str(), rows[0]["context"].as_str()), (Some("east"), Some("east")), "{rows}");
    assert_eq!(rows.as_array().map(Vec::len), Some(1));
}

/// A plan that targets a cluster meshdeck cannot see fails as an operation (exit
/// 1, the cluster and its error named), not as bad input, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cluster2_down_apply_exits_1_naming_its_error_and_writes_nothing() {
    let fleet = common::TestFleet::start().await;
    let cli = Cli::new(fleet.kubeconfig_path());
    let before = istio_objects(&fleet).await;
    fleet.take_down("cluster2").await;
    let out = run(&cli, &["apply", "-f", "examples/reviews-canary.yaml", "--yes"]).await;
    let render = run(&cli, &["render", "-f", "examples/reviews-canary.yaml"]).await;
    fleet.bring_up("cluster2").await;
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "an operation failure, not bad input: {said}");
    assert!(said.contains("cluster2") && said.contains("unreachable"), "names cluster2 and its state: {said}");
    assert!(!said.contains("has no Service") && !said.contains("no east-west gateway"), "unknown is not absent: {said}");
    assert_eq!(istio_objects(&fleet).await, before, "nothing was written anywhere");
    let said = text(&render);
    assert!(said.contains("could not see cluster2"), "render says which clusters it could not see: {said}");
    assert!(!said.contains("has no Service"), "{said}");
}

const LOCAL_ONLY: &str = "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: reviews-local}\nspec:\n  service: reviews.default\n  from: {clusters: [cluster1]}\n  split:\n    - {cluster: cluster1, version: v1, weight: 90}\n    - {cluster: cluster1, version: v2, weight: 10}\n";

/// A team whose Role ends at `default` (`<kubeconfig>.team` on both fleets): with
/// `namespaces: [default]` its clusters are live, the mesh facts it may not read
/// are unknown with the reason, and a plan in `default` can be diffed (prune
/// lists only that namespace). Watching the whole cluster is refused, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_whose_rights_end_at_default_sees_its_namespace_and_mesh_facts_as_unknown() {
    let fleet = common::TestFleet::start().await;
    let mut team = fleet.kubeconfig_path().into_os_string();
    team.push(".team");
    let cli = Cli::new(team.into());

    let out = run(&cli, &["clusters", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "no cluster can be watched cluster-wide: {}", text(&out));
    for c in json(&out).as_array().expect("rows") {
        assert_eq!(c["state"], "forbidden", "{c}");
        assert!(c["error"]["message"].as_str().is_some_and(|m| m.contains("403")), "{c}");
    }

    std::fs::write(
        cli.config.path().join("config.yaml"),
        "clusters:\n  - {context: cluster1-team, name: cluster1, namespaces: [default]}\n  - {context: cluster2-team, name: cluster2, namespaces: [default]}\n",
    )
    .expect("config");
    let out = run(&cli, &["clusters", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    for c in json(&out).as_array().expect("rows") {
        assert_eq!(c["state"], "live", "a fact it may not read does not make the cluster forbidden: {c}");
        let unknown: Vec<&str> = c["unknown"].as_array().expect("unknown").iter().filter_map(Value::as_str).collect();
        assert!(unknown.iter().any(|u| u.starts_with("mesh config") && u.contains("403")), "{unknown:?}");
    }
    let out = run(&cli, &["inventory", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let inv = json(&out);
    let reviews = inv["services"].as_array().expect("services").iter().find(|s| s["name"] == "reviews").expect("reviews");
    assert_eq!(reviews["clusters"]["cluster1"]["versions"]["v2"]["total"], 1, "{reviews}");
    assert!(inv["services"].as_array().expect("services").iter().all(|s| s["namespace"] == "default"), "only its namespace is watched");

    let plan = cli.data.path().join("local.yaml");
    std::fs::write(&plan, LOCAL_ONLY).expect("plan");
    let out = run(&cli, &["diff", "-f", plan.to_str().expect("utf8")]).await;
    assert_eq!(out.status.code(), Some(0), "the team may route in default: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("+ cluster1: VirtualService/default/reviews-local create"), "{}", text(&out));
}
