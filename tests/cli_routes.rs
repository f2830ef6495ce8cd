//! Effective routes (`meshdeck routes`, issue #15), on the sim and on the real test
//! bed: the talk's canary resolves to 75% cluster2 v3 through its east-west gateway
//! and 15/10 to cluster1's v1/v2; bookinfo's own hand-written samples resolve in
//! the cluster they were applied to; and broken fleets are named at the route: a
//! remote cluster that no longer exposes the host (NOT_EXPOSED), an
//! AuthorizationPolicy that admits no identity of the caller (CALLER_DENIED),
//! weights that do not total 100, a host that does not exist (HOST_UNKNOWN).

mod common;

use common::{MeshdeckCli, TestFleet, shared_dir, text};
use kube::api::{Api, DeleteParams, DynamicObject};
use serde_json::{Value, json};

async fn create(fleet: &TestFleet, context: &str, object: Value) {
    create_in(fleet, context, "default", object).await;
}

async fn create_in(fleet: &TestFleet, context: &str, namespace: &str, object: Value) {
    let kind = object["kind"].as_str().expect("kind").to_string();
    let ar = meshdeck::apply::target::resource(&kind).expect("kind").0;
    let api: Api<DynamicObject> = Api::namespaced_with(fleet.client(context).await, namespace, &ar);
    let object: DynamicObject = serde_json::from_value(object).expect("object");
    api.create(&Default::default(), &object).await.unwrap_or_else(|e| panic!("{context}: creating {kind}: {e}"));
}

/// Every document of one of bookinfo's routing samples, created as a user would.
async fn apply_sample(fleet: &TestFleet, context: &str, file: &str) {
    let path = shared_dir().join("istio/bookinfo/networking").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for doc in meshdeck::yaml::parse_documents(&text).expect("sample YAML") {
        create(fleet, context, doc).await;
    }
}

async fn routes(cli: &std::sync::Arc<MeshdeckCli>, args: &[&str]) -> (Vec<Value>, std::process::Output) {
    let mut all = vec!["routes"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = cli.run(&all).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("JSON ({e}): {}", text(&out)));
    (v["routes"].as_array().expect("routes").clone(), out)
}

/// `(weight, cluster, version, via present)` of each target of a rule.
fn targets(rule: &Value) -> Vec<(u64, String, String, bool)> {
    rule["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .flat_map(|d| {
            d["targets"].as_array().expect("targets").iter().map(move |t| {
                (
                    d["weight"].as_u64().unwrap_or(0),
                    t["cluster"].as_str().unwrap_or("").to_string(),
                    t["version"].as_str().unwrap_or("*").to_string(),
                    t.get("via").is_some(),
                )
            })
        })
        .collect()
}

/// The first rule's targets, in order.
fn split(route: &Value) -> Vec<(u64, String, String, bool)> {
    targets(&route["rules"][0])
}

fn codes(route: &Value) -> Vec<String> {
    route["problems"].as_array().expect("problems").iter().map(|p| p["code"].as_str().unwrap_or("").to_string()).collect()
}

/// Ask until the watchers have seen what a test just wrote and `done` holds.
async fn routes_until(cli: &std::sync::Arc<MeshdeckCli>, args: &[&str], done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..40 {
        let (found, _) = routes(cli, args).await;
        if done(&found) {
            return found;
        }
        last = found;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("routes never got there: {}", serde_json::to_string_pretty(&last).unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_resolve_the_canary_and_bookinfo_samples_to_clusters_versions_and_pods() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let out = cli.run(&["apply", "-f", "examples/reviews-canary.yaml", "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let clusters: Vec<Value> = serde_json::from_slice(&cli.run(&["clusters", "-o", "json"]).await.stdout).expect("clusters");
    let gateway = clusters.iter().find(|c| c["name"] == "cluster2").and_then(|c| c["mesh"]["eastWestGateway"].as_str()).expect("gateway");

    let found =
        routes_until(&cli, &["reviews", "--from", "cluster1"], |r| r.first().is_some_and(|r| r["owner"] == "plan reviews-canary")).await;
    assert_eq!(found.len(), 1, "{found:#?}");
    let canary = &found[0];
    assert_eq!(canary["service"], "reviews.default");
    assert_eq!(canary["virtualService"], "default/reviews-canary");
    assert_eq!(
        split(canary),
        [
            (75, "cluster2".to_string(), "v3".to_string(), true),
            (15, "cluster1".to_string(), "v1".to_string(), false),
            (10, "cluster1".to_string(), "v2".to_string(), false)
        ]
    );
    assert_eq!(canary["rules"][0]["destinations"][0]["targets"][0]["via"], format!("east-west {gateway}:15443"));
    assert_eq!(canary["rules"][0]["destinations"][0]["policy"], json!(["tls ISTIO_MUTUAL"]));
    assert!(codes(canary).is_empty(), "{canary:#}");
    let table = text(&cli.run(&["routes", "reviews.default", "--from", "cluster1"]).await);
    assert!(table.contains("default/reviews-canary (plan reviews-canary)") && table.contains("75%"), "{table}");

    // Bookinfo's samples, by hand, in cluster2: the jason rule first, then v3.
    apply_sample(&fleet, "cluster2", "destination-rule-all.yaml").await;
    apply_sample(&fleet, "cluster2", "virtual-service-reviews-jason-v2-v3.yaml").await;
    let found = routes_until(&cli, &["reviews", "--from", "cluster2"], |r| r.first().is_some_and(|r| r["owner"] == "hand-written")).await;
    let by_hand = &found[0];
    assert_eq!(by_hand["virtualService"], "default/reviews");
    let rules = by_hand["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0]["matches"], json!(["headers end-user exact jason"]));
    assert_eq!(rules[0]["destinations"][0]["targets"], json!([{"cluster": "cluster2", "version": "v2", "ready": 1, "pods": 1}]));
    assert_eq!(rules[1]["matches"], json!([]));
    assert_eq!(rules[1]["destinations"][0]["targets"][0]["version"], "v3");
    assert!(codes(by_hand).is_empty(), "{by_hand:#}");

    // cluster3 has no VirtualService: Istio's default route, every version there.
    let (found, out) = routes(&cli, &["reviews", "--from", "cluster3"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(found[0]["owner"], "none");
    assert_eq!(found[0]["rules"][0]["kind"], "default");
    let versions: Vec<String> = split(&found[0]).into_iter().map(|(_, c, v, _)| format!("{c} {v}")).collect();
    assert_eq!(versions, ["cluster3 v1", "cluster3 v2"], "the world's cluster3 runs reviews v1 and v2");

    let bad = cli.run(&["routes", "nosuch"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("no service nosuch in the fleet"), "{}", text(&bad));
    let bad = cli.run(&["routes", "reviews", "--from", "cluster9"]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("--from cluster9: no such cluster"), "{}", text(&bad));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_routes_are_named_at_the_route_and_fail_analyze() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let out = cli.run(&["apply", "-f", "examples/reviews-canary.yaml", "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = cli.run(&["analyze", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "the canary alone is clean: {}", text(&out));

    // Someone removes cluster2's side of the canary, and locks reviews there to cluster3's callers.
    let ar = meshdeck::apply::target::resource("Gateway").expect("kind").0;
    let gateways: Api<DynamicObject> = Api::namespaced_with(fleet.client("cluster2").await, "default", &ar);
    gateways.delete("reviews-canary-eastwest", &DeleteParams::default()).await.expect("deleted");
    create(
        &fleet,
        "cluster2",
        json!({
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "reviews-from-cluster3"},
            "spec": {"selector": {"matchLabels": {"app": "reviews"}}, "action": "ALLOW",
                     "rules": [{"from": [{"source": {"principals": ["cluster3.local/ns/default/sa/bookinfo-productpage"]}}]}]}
        }),
    )
    .await;
    // And in cluster3, by hand: a split that totals 90, and a route to a host that does not exist.
    create(
        &fleet,
        "cluster3",
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "ratings"},
            "spec": {"host": "ratings", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}
        }),
    )
    .await;
    create(
        &fleet,
        "cluster3",
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "ratings"},
            "spec": {"hosts": ["ratings"], "http": [
                {"match": [{"uri": {"prefix": "/old"}}], "route": [{"destination": {"host": "ratings-legacy"}}]},
                {"route": [{"destination": {"host": "ratings", "subset": "v1"}, "weight": 60},
                           {"destination": {"host": "ratings"}, "weight": 30}]}
            ]}
        }),
    )
    .await;

    // And a Gateway for an ingress gateway cluster3 does not run.
    create(
        &fleet,
        "cluster3",
        json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": {"name": "nowhere"},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]}
        }),
    )
    .await;

    let found = routes_until(&cli, &["reviews", "--from", "cluster1"], |r| {
        r.first().is_some_and(|r| codes(r).contains(&"NOT_EXPOSED".to_string()) && codes(r).contains(&"CALLER_DENIED".to_string()))
    })
    .await;
    let problems = found[0]["problems"].as_array().expect("problems");
    let message = |code: &str| problems.iter().find(|p| p["code"] == code).and_then(|p| p["message"].as_str()).unwrap_or("").to_string();
    assert_eq!(
        message("NOT_EXPOSED"),
        "v3.reviews.default.svc.cluster2.global: cluster1 sends it to cluster2's east-west gateway, but no Gateway there passes it through: requests fail"
    );
    assert_eq!(
        message("CALLER_DENIED"),
        "reviews.default in cluster2: AuthorizationPolicy default/reviews-from-cluster3 allows no identity of cluster1 (trust domain cluster1.local): its calls get 403"
    );
    // The AuthorizationPolicy is judged on the pods it protects: cluster1's own v1 and v2 are not affected.
    assert!(problems.iter().all(|p| p["clusters"] != json!(["cluster1", "cluster1"])), "{problems:#?}");

    let found = routes_until(&cli, &["ratings", "--from", "cluster3"], |r| r.first().is_some_and(|r| r["owner"] == "hand-written")).await;
    assert_eq!(codes(&found[0]), ["HOST_UNKNOWN", "ROUTE_WEIGHTS"], "{:#}", found[0]);
    assert_eq!(found[0]["rules"][0]["matches"], json!(["uri prefix /old"]));

    let out = cli.run(&["analyze", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut found: Vec<(String, String)> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| (f["code"].as_str().unwrap_or("").to_string(), f["severity"].as_str().unwrap_or("").to_string()))
        .collect();
    found.sort();
    for want in [
        ("CALLER_DENIED", "error"),
        ("HOST_UNKNOWN", "error"),
        ("NOT_EXPOSED", "error"),
        ("ROUTE_WEIGHTS", "warning"),
        ("GATEWAY_NO_PODS", "warning"),
    ] {
        assert!(found.contains(&(want.0.to_string(), want.1.to_string())), "{want:?} not in {found:?}");
    }
}

/// What a route does, without who wrote it: per rule, matches and (weight, cluster, version) of each target.
type Routing = Vec<(Value, Vec<(u64, String, String)>)>;

fn routing(route: &Value) -> Routing {
    route["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|rule| {
            let mut found: Vec<(u64, String, String)> = targets(rule).into_iter().map(|(w, c, v, _)| (w, c, v)).collect();
            found.sort();
            (rule["matches"].clone(), found)
        })
        .collect()
}

/// `import` of bookinfo's hand-written 90/10 split gives a plan that, applied with
/// `--force-conflicts`, takes the objects over and routes exactly as before; a
/// sample a plan cannot say (a second rule to a subset) is refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_takes_over_a_hand_written_route_with_the_same_effective_routing() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    apply_sample(&fleet, "cluster2", "destination-rule-all.yaml").await;
    apply_sample(&fleet, "cluster2", "virtual-service-reviews-90-10.yaml").await;
    apply_sample(&fleet, "cluster3", "destination-rule-reviews.yaml").await;
    apply_sample(&fleet, "cluster3", "virtual-service-reviews-jason-v2-v3.yaml").await;
    let before = routes_until(&cli, &["reviews", "--from", "cluster2"], |r| r.first().is_some_and(|r| r["owner"] == "hand-written")).await;
    let before = routing(&before[0]);
    assert_eq!(before[0].1, [(10, "cluster2".to_string(), "v2".to_string()), (90, "cluster2".to_string(), "v1".to_string())]);

    let out = cli.run(&["import", "reviews", "--from", "cluster2"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(plan.contains("name: reviews\n") && plan.contains("weight: 90"), "{plan}");
    let file = common::write_plan(&cli, "imported.yaml", &plan);
    let refused = cli.run(&["apply", "-f", &file, "--yes"]).await;
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("--force-conflicts lets meshdeck take them"),
        "the hand-written objects are not taken silently: {}",
        text(&refused)
    );
    let out = cli.run(&["apply", "-f", &file, "--yes", "--force-conflicts"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = routes_until(&cli, &["reviews", "--from", "cluster2"], |r| r.first().is_some_and(|r| r["owner"] == "plan reviews")).await;
    assert_eq!(routing(&after[0]), before, "the same effective routing, now meshdeck's");
    assert!(codes(&after[0]).is_empty(), "{:#}", after[0]);

    // Each of bookinfo's other weighted samples for reviews, by hand in cluster2 again,
    // round-trips the same way.
    for sample in [
        "virtual-service-reviews-80-20.yaml",
        "virtual-service-reviews-50-v3.yaml",
        "virtual-service-reviews-v2-v3.yaml",
        "virtual-service-reviews-v3.yaml",
    ] {
        for (kind, name) in [("VirtualService", "reviews"), ("DestinationRule", "reviews")] {
            let ar = meshdeck::apply::target::resource(kind).expect("kind").0;
            let api: Api<DynamicObject> = Api::namespaced_with(fleet.client("cluster2").await, "default", &ar);
            api.delete(name, &DeleteParams::default()).await.unwrap_or_else(|e| panic!("{sample}: deleting {kind}: {e}"));
        }
        apply_sample(&fleet, "cluster2", "destination-rule-reviews.yaml").await;
        apply_sample(&fleet, "cluster2", sample).await;
        let before =
            routes_until(&cli, &["reviews", "--from", "cluster2"], |r| r.first().is_some_and(|r| r["owner"] == "hand-written")).await;
        let before = routing(&before[0]);
        let out = cli.run(&["import", "reviews", "--from", "cluster2"]).await;
        assert_eq!(out.status.code(), Some(0), "{sample}: {}", text(&out));
        let plan = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            plan.contains("#   DestinationRule default/reviews: loadBalancer.simple RANDOM"),
            "{sample}: what the takeover drops is said:\n{plan}"
        );
        let file = common::write_plan(&cli, "imported.yaml", &plan);
        let out = cli.run(&["apply", "-f", &file, "--yes", "--force-conflicts"]).await;
        assert_eq!(out.status.code(), Some(0), "{sample}: {}", text(&out));
        let after =
            routes_until(&cli, &["reviews", "--from", "cluster2"], |r| r.first().is_some_and(|r| r["owner"] == "plan reviews")).await;
        assert_eq!(routing(&after[0]), before, "{sample}: the same effective routing");
    }

    let out = cli.run(&["import", "reviews", "--from", "cluster3"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("default/reviews has 2 rules: a TrafficRoute is one rule, or matching requests first and the rest to reviews.default.svc.cluster.local"),
        "{}",
        text(&out)
    );
    let out = cli.run(&["import", "reviews", "--from", "cluster1"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("Istio's default route has nothing to import"), "{}", text(&out));
}

/// A DestinationRule sending plain text to workloads whose PeerAuthentication is
/// STRICT is TLS_CONFLICT at the route; a fleet whose clusters' mesh-wide modes
/// differ is MTLS_MISMATCH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_at_odds_are_named_at_the_route_and_across_clusters() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    create_in(
        &fleet,
        "cluster3",
        "istio-system",
        json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "default"},
               "spec": {"mtls": {"mode": "STRICT"}}}),
    )
    .await;
    create(
        &fleet,
        "cluster3",
        json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "ratings"},
               "spec": {"host": "ratings", "trafficPolicy": {"tls": {"mode": "DISABLE"}}, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}),
    )
    .await;
    create(
        &fleet,
        "cluster3",
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "ratings"},
               "spec": {"hosts": ["ratings"], "http": [{"route": [{"destination": {"host": "ratings", "subset": "v1"}}]}]}}),
    )
    .await;
    let found = routes_until(&cli, &["ratings", "--from", "cluster3"], |r| r.first().is_some_and(|r| !codes(r).is_empty())).await;
    assert_eq!(codes(&found[0]), ["TLS_CONFLICT"], "{:#}", found[0]);
    assert_eq!(
        found[0]["problems"][0]["message"],
        "ratings.default in cluster3 accepts Istio mTLS only (PeerAuthentication istio-system/default: STRICT), but DestinationRule default/ratings in cluster3 sends tls DISABLE: calls fail"
    );
    assert_eq!(found[0]["rules"][0]["destinations"][0]["policy"], json!(["tls DISABLE"]));

    let out = cli.run(&["analyze", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let findings = v["findings"].as_array().expect("findings");
    let mismatch = findings.iter().find(|f| f["code"] == "MTLS_MISMATCH").expect("MTLS_MISMATCH");
    assert_eq!(mismatch["severity"], "warning");
    assert_eq!(mismatch["message"], "mesh-wide mTLS differs: PERMISSIVE in cluster1, cluster2; STRICT in cluster3");
    assert!(findings.iter().any(|f| f["code"] == "TLS_CONFLICT" && f["severity"] == "error"), "{findings:#?}");
}
