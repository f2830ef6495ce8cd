//! What Istio will do at runtime, not only what its schemas accept (issue #13), on
//! the sim and on the real test bed: a federated peer's trust domain must be one
//! the target accepts; a hand-written DestinationRule for the host is a second
//! owner; remote hosts pin their servers' SPIFFE identities; ports keep their
//! targetPort and protocol, every HTTP-family port is routed unless the plan names one.

mod common;

use common::{MeshdeckCli, TEST_LABEL, TestFleet, istio_objects, text, write_plan};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

const CANARY: &str = "examples/reviews-canary.yaml";

fn rendered(out: &std::process::Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("render -o json: {e}\n{}", text(out)))
}

fn find<'a>(objs: &'a Value, cluster: &str, kind: &str, name: &str) -> &'a Value {
    objs["clusters"][cluster]
        .as_array()
        .and_then(|os| os.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name))
        .unwrap_or_else(|| panic!("no {kind} {name} in {cluster}: {objs}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_route_needs_the_target_to_accept_the_callers_trust_domain() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    // The fleet as built accepts one another's trust domains: the canary is valid.
    let out = cli.run(&["render", "-f", CANARY, "-o", "json"]).await;
    rendered(&out);
    // cluster2 forgets its aliases (as an independently installed mesh would have none).
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(fleet.client("cluster2").await, "istio-system");
    let original = cms.get("istio").await.expect("cluster2's mesh config");
    let mesh = original.data.as_ref().and_then(|d| d.get("mesh")).cloned().expect("mesh");
    assert!(mesh.contains("trustDomainAliases"), "the fleet's world carries the aliases: {mesh}");
    let bare: String = mesh.lines().filter(|l| !l.starts_with("trustDomainAliases")).map(|l| format!("{l}\n")).collect();
    let patch = |m: String| json!({"data": {"mesh": m}});
    cms.patch("istio", &PatchParams::default(), &Patch::Merge(patch(bare))).await.expect("patch");
    let refused = cli.run(&["apply", "-f", CANARY, "--yes"]).await;
    let objects = istio_objects(&fleet).await;
    // The plan may say the change is made where meshdeck cannot see it: a note, not an error.
    let canary = std::fs::read_to_string(CANARY).expect("canary");
    let assumed = write_plan(&cli, "assumed.yaml", &format!("{canary}  trustAcceptedBy: [cluster2]\n"));
    let diffed = cli.run(&["diff", "-f", &assumed]).await;
    cms.patch("istio", &PatchParams::default(), &Patch::Merge(patch(mesh))).await.expect("restore");
    assert_eq!(diffed.status.code(), Some(0), "{}", text(&diffed));
    assert!(
        text(&diffed).contains("cluster2 is taken to accept trust domain cluster1.local (cluster1), as trustAcceptedBy says"),
        "{}",
        text(&diffed)
    );
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("cluster2 does not accept mTLS peers from trust domain cluster1.local (cluster1)")
            && text(&refused).contains("ConfigMap istio-system/istio, key mesh): `trustDomainAliases: [cluster1.local]`"),
        "{}",
        text(&refused)
    );
    assert!(objects.is_empty(), "nothing was written: {objects:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_destination_rule_for_the_host_is_a_second_owner() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let (ar, _) = meshdeck::apply::target::resource("DestinationRule").expect("kind");
    let drs: Api<DynamicObject> = Api::namespaced_with(fleet.client("cluster1").await, "default", &ar);
    let mut dr = DynamicObject::new("reviews-team", &ar).within("default");
    dr.data = json!({"spec": {"host": "reviews", "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 10}}}, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}});
    drs.create(&PostParams::default(), &dr).await.expect("the team's DestinationRule");
    let before = istio_objects(&fleet).await;
    let out = cli.run(&["apply", "-f", CANARY, "--yes"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("reviews.default in cluster1 already has the hand-written DestinationRule default/reviews-team")
            && text(&out).contains("the older one's traffic policy and same-named subsets win"),
        "{}",
        text(&out)
    );
    assert_eq!(istio_objects(&fleet).await, before, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_host_accepts_only_its_servers_identities() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let objs = rendered(&cli.run(&["render", "-f", CANARY, "-o", "json"]).await);
    let dr = find(&objs, "cluster1", "DestinationRule", "reviews-canary-cluster2-v3");
    assert_eq!(
        dr["spec"]["trafficPolicy"]["tls"],
        json!({"mode": "ISTIO_MUTUAL", "subjectAltNames": ["spiffe://cluster2.local/ns/default/sa/bookinfo-reviews"]})
    );
    let out = cli.run(&["apply", "-f", CANARY, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "the API server takes it: {}", text(&out));
}

/// A Service `web` in cluster1 (v1) and cluster2 (v2) with an HTTP port 80 → 8080, a
/// gRPC port 9090 (by appProtocol) and a TCP port 5432.
async fn web_service(fleet: &TestFleet) {
    for (cluster, version) in [("cluster1", "v1"), ("cluster2", "v2")] {
        let client = fleet.client(cluster).await;
        let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
        let svc = serde_json::from_value(json!({
            "metadata": {"name": "web", "labels": {TEST_LABEL: "true", "app": "web"}},
            "spec": {"selector": {"app": "web"}, "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "api", "port": 9090, "targetPort": 9090, "appProtocol": "grpc"},
                {"name": "tcp-db", "port": 5432, "targetPort": 5432}]}
        }))
        .expect("service");
        svcs.create(&PostParams::default(), &svc).await.expect("service");
        let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client, "default");
        let pod = serde_json::from_value(json!({
            "metadata": {"name": format!("web-{version}"), "labels": {TEST_LABEL: "true", "app": "web", "version": version},
                         "annotations": {"sidecar.istio.io/status": "{}"}},
            "spec": {"serviceAccountName": "default", "containers": [{"name": "web", "image": "example/web:1", "ports": [{"containerPort": 8080}, {"containerPort": 9090}]}]}
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod).await.expect("pod");
    }
}

const WEB: &str = "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: web-canary}\nspec:\n  service: web.default\n  from: {clusters: [cluster1]}\n  split:\n    - {cluster: cluster1, version: v1, weight: 50}\n    - {cluster: cluster2, version: v2, weight: 50}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_port_is_routed_with_its_target_port_and_protocol() {
    let fleet = TestFleet::start().await;
    web_service(&fleet).await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    let plan = write_plan(&cli, "web.yaml", WEB);
    let objs = rendered(&cli.run(&["render", "-f", &plan, "-o", "json"]).await);
    let caller = find(&objs, "cluster1", "ServiceEntry", "web-canary-cluster2-v2");
    assert_eq!(
        caller["spec"]["ports"],
        json!([{"name": "http", "number": 80, "protocol": "HTTP"}, {"name": "api", "number": 9090, "protocol": "GRPC"}]),
        "HTTP and gRPC, not the TCP port"
    );
    assert_eq!(caller["spec"]["endpoints"][0]["ports"], json!({"api": 15443, "http": 15443}));
    let target = find(&objs, "cluster2", "ServiceEntry", "web-canary-v2-global");
    assert_eq!(
        target["spec"]["ports"],
        json!([{"name": "http", "number": 80, "protocol": "HTTP", "targetPort": 8080}, {"name": "api", "number": 9090, "protocol": "GRPC"}]),
        "the pods listen on 8080"
    );
    let vs = find(&objs, "cluster1", "VirtualService", "web-canary");
    for d in vs["spec"]["http"][0]["route"].as_array().expect("routes") {
        assert!(d["destination"].get("port").is_none(), "with two ports a request keeps its own: {d}");
    }
    let out = cli.run(&["apply", "-f", &plan, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "the API server takes it: {}", text(&out));

    // The plan names one port: only it.
    let one = write_plan(&cli, "web-api.yaml", &format!("{WEB}  port: 9090\n"));
    let objs = rendered(&cli.run(&["render", "-f", &one, "-o", "json"]).await);
    let caller = find(&objs, "cluster1", "ServiceEntry", "web-canary-cluster2-v2");
    assert_eq!(caller["spec"]["ports"], json!([{"name": "api", "number": 9090, "protocol": "GRPC"}]));
    let vs = find(&objs, "cluster1", "VirtualService", "web-canary");
    assert_eq!(vs["spec"]["http"][0]["route"][0]["destination"]["port"], json!({"number": 9090}));
    // A TCP port cannot carry HTTP routes; a port the Service lacks is named.
    for (port, said) in
        [("5432", "port 5432 of web.default is TCP"), ("81", "port 81 is not a port of the Service (its ports: 80, 5432, 9090)")]
    {
        let bad = write_plan(&cli, "web-bad.yaml", &format!("{WEB}  port: {port}\n"));
        let out = cli.run(&["render", "-f", &bad]).await;
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(said), "{}", text(&out));
    }
}

/// Set `served` on the versions of cluster3's DestinationRule CRD (`served(version)`).
async fn serve_destination_rules(fleet: &TestFleet, served: impl Fn(&str) -> bool) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(fleet.client("cluster3").await);
    let mut crd = crds.get("destinationrules.networking.istio.io").await.expect("the DestinationRule CRD");
    // Istio's own CRDs serve v1beta1 too; the sim's built-in ones only v1.
    if !crd.spec.versions.iter().any(|v| v.name == "v1beta1") {
        let mut beta = crd.spec.versions.iter().find(|v| v.name == "v1").cloned().expect("v1");
        beta.name = "v1beta1".into();
        beta.storage = false;
        crd.spec.versions.push(beta);
    }
    for v in crd.spec.versions.iter_mut() {
        v.served = served(&v.name);
    }
    crds.replace("destinationrules.networking.istio.io", &PostParams::default(), &crd).await.expect("CRD updated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn istio_kinds_are_read_at_the_version_each_cluster_serves_and_again_when_served_again() {
    let fleet = TestFleet::start().await;
    // cluster3 serves DestinationRules at v1beta1 only, as Istio before 1.22 did.
    serve_destination_rules(&fleet, |v| v != "v1").await;
    let ar = kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("networking.istio.io", "v1beta1", "DestinationRule"),
        "destinationrules",
    );
    let drs: Api<DynamicObject> = Api::namespaced_with(fleet.client("cluster3").await, "default", &ar);
    let mut dr = DynamicObject::new("ratings-old-api", &ar).within("default");
    dr.data = json!({"spec": {"host": "ratings"}});
    let created = common::eventually(20, || async { drs.create(&PostParams::default(), &dr).await.ok() }).await;
    assert_eq!(created.metadata.name.as_deref(), Some("ratings-old-api"));
    let mut inv = meshdeck::inventory::Inventory::start(&fleet.registry_of(&["cluster3"]).await);
    let seen = common::snapshot_where(&mut inv, 30, "cluster3's v1beta1 DestinationRule is seen", |s| {
        s.istio_objects.iter().any(|o| o.name == "ratings-old-api")
    })
    .await;
    assert!(seen.clusters[0].mesh.istio_crds, "a kind served at v1beta1 is served");
    // No version served: the kind is absent; served again: read again, without a restart.
    serve_destination_rules(&fleet, |_| false).await;
    common::snapshot_where(&mut inv, 60, "cluster3 says its DestinationRules are not served", |s| !s.clusters[0].mesh.istio_crds).await;
    serve_destination_rules(&fleet, |_| true).await;
    let back = common::snapshot_where(&mut inv, 60, "cluster3's DestinationRules are read again", |s| {
        s.clusters[0].mesh.istio_crds && s.istio_objects.iter().any(|o| o.name == "ratings-old-api")
    })
    .await;
    assert_eq!(back.clusters[0].state, meshdeck::inventory::ClusterState::Live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_is_applied_and_rolled_back_at_the_version_the_cluster_serves() {
    let fleet = TestFleet::start().await;
    let cli = MeshdeckCli::new(fleet.kubeconfig_path());
    // cluster3 serves DestinationRules at v1beta1 only, as Istio before 1.22 did.
    serve_destination_rules(&fleet, |v| v != "v1").await;
    let plan = "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: old-istio}\nspec:\n  service: reviews.default\n  from: {clusters: [cluster3]}\n  split:\n    - {cluster: cluster3, version: v1, weight: 50}\n    - {cluster: cluster3, version: v2, weight: 50}\n";
    let file = write_plan(&cli, "old-istio.yaml", plan);
    let ar = kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("networking.istio.io", "v1beta1", "DestinationRule"),
        "destinationrules",
    );
    let drs: Api<DynamicObject> = Api::namespaced_with(fleet.client("cluster3").await, "default", &ar);
    let ours = kube::api::ListParams::default().labels("meshdeck.dev/plan=old-istio");
    // The CRD update takes effect in discovery within a moment.
    common::eventually(20, || async { drs.list(&Default::default()).await.ok() }).await;

    let dry = cli.run(&["apply", "-f", &file, "--dry-run"]).await;
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(text(&dry).contains("apiVersion: networking.istio.io/v1beta1"), "the diff shows the served version: {}", text(&dry));

    let out = cli.run(&["apply", "-f", &file, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let written = drs.list(&ours).await.expect("DestinationRules at v1beta1");
    assert_eq!(written.items.len(), 1, "one DestinationRule written at v1beta1: {:?}", written.items);
    assert_eq!(written.items[0].data["spec"]["subsets"].as_array().map(Vec::len), Some(2), "{:?}", written.items[0].data);

    let records: Value = serde_json::from_slice(&cli.run(&["history", "-o", "json"]).await.stdout).expect("history json");
    let id = records[0]["id"].as_str().expect("id").to_string();
    let out = cli.run(&["rollback", &id, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(drs.list(&ours).await.expect("list").items.is_empty(), "the rollback removed it at the served version");
    serve_destination_rules(&fleet, |_| true).await;
}
