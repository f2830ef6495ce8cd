//! The Gateway API path (`routing: gateway-api`, issue #34): what it renders on an
//! ambient fleet and on a sidecar one, what it refuses and why, and that what it
//! renders passes a real API server's Gateway API CRDs (their CEL rules) and
//! istioctl analyze, as it passes the sim's.

mod common;

use common::{Draw, RUNNING};

use std::path::{Path, PathBuf};
use std::process::Command;

use meshdeck::inventory::FleetSnapshot;
use serde_json::Value;

fn fixture(name: &str) -> FleetSnapshot {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("inventory")
}

/// The shared-discovery fixture with reviews' namespace in ambient mode, behind a waypoint.
fn ambient_fleet(waypoint: Option<&str>) -> FleetSnapshot {
    let mut inv = fixture("inventory-shared.json");
    for row in &mut inv.services {
        for p in std::sync::Arc::make_mut(row).clusters.values_mut() {
            p.dataplane_mode = Some("ambient".into());
            p.waypoint = waypoint.map(String::from);
        }
    }
    inv
}

const CANARY: &str = "apiVersion: meshdeck.dev/v1alpha1
kind: TrafficRoute
metadata: {name: reviews-canary}
spec:
  service: reviews.default
  from: {clusters: [cluster1]}
  split:
    - {cluster: cluster2, version: v3, weight: 75}
    - {cluster: cluster1, version: v1, weight: 15}
    - {cluster: cluster1, version: v2, weight: 10}
";

fn render(plan: &str, inv: &FleetSnapshot) -> Result<meshdeck::render::RenderedObjects, String> {
    let plan = meshdeck::plan::load("plan.yaml", plan, inv).map_err(|e| format!("{e:?}"))?;
    meshdeck::render::render(&plan, inv).map_err(|e| e.to_string())
}

fn named<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} not rendered: {objs:#?}"))
}

#[test]
fn the_talks_canary_on_an_ambient_fleet_is_an_httproute_over_per_version_services() {
    let inv = ambient_fleet(Some("waypoint"));
    let out = render(CANARY, &inv).expect("renders");
    let c1 = &out.clusters["cluster1"];
    let kinds: Vec<&str> = c1.iter().map(|o| o["kind"].as_str().unwrap_or("")).collect();
    assert_eq!(kinds, ["Service", "Service", "Service", "HTTPRoute"], "ambient routes in Gateway API, no Istio kinds: {c1:#?}");
    let route = named(c1, "HTTPRoute", "reviews-canary");
    assert_eq!(route["apiVersion"], "gateway.networking.k8s.io/v1");
    assert_eq!(route["spec"]["parentRefs"], serde_json::json!([{"group": "", "kind": "Service", "name": "reviews", "port": 9080}]));
    let refs: Vec<(String, u64)> = route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .expect("backends")
        .iter()
        .map(|r| (r["name"].as_str().unwrap_or("").to_string(), r["weight"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(refs, [("reviews-v3".to_string(), 75), ("reviews-v1".to_string(), 15), ("reviews-v2".to_string(), 10)]);
    // Only the version reached in another cluster is global; the local ones stay cluster1's.
    let global = |o: &Value| o["metadata"]["labels"]["istio.io/global"] == "true";
    assert!(global(named(c1, "Service", "reviews-v3")));
    assert!(!global(named(c1, "Service", "reviews-v1")) && !global(named(c1, "Service", "reviews-v2")));
    assert_eq!(named(c1, "Service", "reviews-v3")["spec"]["selector"], serde_json::json!({"app": "reviews", "version": "v3"}));
    let c2 = &out.clusters["cluster2"];
    assert_eq!(c2.len(), 1, "cluster2 needs only v3's global Service: {c2:#?}");
    assert_eq!(named(c2, "Service", "reviews-v3"), named(c1, "Service", "reviews-v3"), "one global Service, the same in each cluster");
    assert!(!out.clusters.contains_key("cluster3"));
    assert_eq!(out.routing["reviews-canary"], "gateway-api (auto: ambient in cluster1)", "the choice is always said");
    // Pure: the same plan and inventory, the same bytes.
    assert_eq!(render(CANARY, &inv).expect("renders").to_yaml(), out.to_yaml());
}

/// Ambient without a waypoint: in each cluster of the route the waypoint Istio's docs
/// deploy (class istio-waypoint, for services, global as the route crosses clusters)
/// and the Service's `istio.io/use-waypoint` label, neither carrying a plan's labels;
/// a waypoint named but not deployed is rendered under that name, and one deployed is
/// left alone.
#[test]
fn ambient_without_a_waypoint_gets_one_of_one_name_in_every_cluster_of_the_route() {
    let out = render(CANARY, &ambient_fleet(None)).expect("renders");
    for cluster in ["cluster1", "cluster2"] {
        let objs = &out.clusters[cluster];
        let waypoint = objs.iter().find(|o| o["kind"] == "Gateway").unwrap_or_else(|| panic!("{cluster} gets the waypoint: {objs:#?}"));
        assert_eq!(
            waypoint,
            &serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": "waypoint", "namespace": "default", "labels": {
                    "app.kubernetes.io/managed-by": "meshdeck", "istio.io/waypoint-for": "service"}},
                "spec": {
                    "gatewayClassName": "istio-waypoint",
                    "infrastructure": {"labels": {"istio.io/global": "true"}},
                    "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]
                }
            })
        );
        let label = objs.iter().find(|o| o["kind"] == "Service" && o["metadata"]["name"] == "reviews").expect("the label patch");
        assert_eq!(
            label,
            &serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "reviews", "namespace": "default", "labels": {"istio.io/use-waypoint": "waypoint"}}}),
            "only the label: server-side apply owns that field and no other"
        );
    }
    assert!(!out.clusters.contains_key("cluster3"), "cluster3 is not in the route");
    // An AccessPolicy beside the route is the waypoint's where the route puts reviews
    // behind one (the pods would see the waypoint's identity), on the pods elsewhere.
    let out = render(&format!("{CANARY}---\n{CALLERS}"), &ambient_fleet(None)).expect("renders");
    let ap = |c: &str| named(&out.clusters[c], "AuthorizationPolicy", "reviews-callers")["spec"].clone();
    assert_eq!(ap("cluster1")["targetRefs"], serde_json::json!([{"group": "", "kind": "Service", "name": "reviews"}]));
    assert_eq!(ap("cluster2")["targetRefs"], ap("cluster1")["targetRefs"]);
    assert!(ap("cluster3").get("targetRefs").is_none() && ap("cluster3").get("selector").is_some(), "{}", ap("cluster3"));
    // A route within cluster1: a cluster-local waypoint.
    let local = CANARY.replace("cluster: cluster2, version: v3", "cluster: cluster1, version: v3");
    let mut inv = ambient_fleet(None);
    for row in &mut inv.services {
        if let Some(p) = std::sync::Arc::make_mut(row).clusters.get_mut("cluster1").filter(|p| p.versions.contains_key("v1")) {
            let v3 = p.versions["v1"];
            p.versions.insert("v3".into(), v3);
        }
    }
    let out = render(&local, &inv).expect("renders");
    let waypoint = out.clusters["cluster1"].iter().find(|o| o["kind"] == "Gateway").expect("waypoint");
    assert_eq!(waypoint["spec"]["infrastructure"]["labels"]["istio.io/global"], "false");
    // Named but not deployed in cluster2: that name, there only; no label where one is.
    let mut named_only = ambient_fleet(Some("mesh-wp"));
    for row in &mut named_only.services {
        for (c, p) in std::sync::Arc::make_mut(row).clusters.iter_mut() {
            p.waypoint_deployed = Some(c != "cluster2");
        }
    }
    let out = render(CANARY, &named_only).expect("renders");
    assert!(out.clusters["cluster1"].iter().all(|o| o["kind"] != "Gateway" && o["metadata"]["name"] != "reviews"), "cluster1 has it all");
    let c2: Vec<(&str, &str)> =
        out.clusters["cluster2"].iter().map(|o| (o["kind"].as_str().unwrap_or(""), o["metadata"]["name"].as_str().unwrap_or(""))).collect();
    assert_eq!(c2, [("Gateway", "mesh-wp"), ("Service", "reviews-v3")]);
}

const CALLERS: &str = "apiVersion: meshdeck.dev/v1alpha1
kind: AccessPolicy
metadata: {name: reviews-callers}
spec:
  service: reviews.default
  allowFrom:
    - {cluster: cluster1, namespace: default, serviceAccount: bookinfo-productpage}
";

#[test]
fn an_access_policy_behind_a_waypoint_is_the_waypoints_and_on_pods_otherwise() {
    let mut inv = ambient_fleet(Some("waypoint"));
    // cluster3 keeps sidecars: its policy stays on the pods.
    for row in &mut inv.services {
        if let Some(p) = std::sync::Arc::make_mut(row).clusters.get_mut("cluster3") {
            p.dataplane_mode = Some("sidecar".into());
        }
    }
    let out = render(CALLERS, &inv).expect("renders");
    let ap = |c: &str| named(&out.clusters[c], "AuthorizationPolicy", "reviews-callers")["spec"].clone();
    assert_eq!(ap("cluster1")["targetRefs"], serde_json::json!([{"group": "", "kind": "Service", "name": "reviews"}]));
    assert!(ap("cluster1").get("selector").is_none(), "a waypoint's policy selects no pods: {}", ap("cluster1"));
    assert_eq!(
        ap("cluster1")["rules"][0]["from"][0]["source"]["principals"],
        serde_json::json!(["cluster.local/ns/default/sa/bookinfo-productpage"])
    );
    assert_eq!(ap("cluster3")["selector"], serde_json::json!({"matchLabels": {"app": "reviews"}}));
}

#[test]
fn an_explicit_choice_overrides_the_fleets_mode_both_ways() {
    let ambient = ambient_fleet(Some("waypoint"));
    let istio = render(&format!("{CANARY}  routing: istio\n"), &ambient).expect("renders");
    assert!(istio.iter().any(|(_, o)| o["kind"] == "VirtualService"), "routing: istio on an ambient fleet renders Istio's kinds");
    let sidecars = fixture("inventory-shared.json");
    let auto = render(CANARY, &sidecars).expect("renders");
    assert!(auto.iter().all(|(_, o)| o["kind"] != "HTTPRoute"), "a sidecar fleet defaults to Istio's kinds");
    assert_eq!(auto.routing["reviews-canary"], "istio (auto: not ambient in cluster1)");
    assert_eq!(istio.routing["reviews-canary"], "istio (the plan's choice)");
}

#[test]
fn with_sidecars_a_version_that_runs_in_other_clusters_cannot_be_pinned() {
    let inv = fixture("inventory-shared.json");
    let err = render(&format!("{CANARY}  routing: gateway-api\n"), &inv).expect_err("refused");
    assert_eq!(
        err,
        "reviews-canary: routing gateway-api: cannot pin reviews.default v1 to cluster1 for callers in cluster1: cluster2, cluster3 run v1 too, and with sidecars cluster1's istiod gives their endpoints to the same backend reviews-v1; use routing: istio (a subset on topology.istio.io/cluster)"
    );
    // What only cluster2 runs can be pinned there.
    let v3 = CANARY
        .replace("    - {cluster: cluster1, version: v1, weight: 15}\n    - {cluster: cluster1, version: v2, weight: 10}\n", "")
        .replace("weight: 75", "weight: 100")
        + "  routing: gateway-api\n";
    let out = render(&v3, &inv).expect("v3 runs in cluster2 only");
    assert_eq!(named(&out.clusters["cluster1"], "HTTPRoute", "reviews-canary")["spec"]["rules"][0]["backendRefs"][0]["name"], "reviews-v3");
}

#[test]
fn what_gateway_api_cannot_say_is_refused_with_what_would_work() {
    let federation = fixture("inventory-federation.json");
    let err = render(&format!("{CANARY}  routing: gateway-api\n"), &federation).expect_err("refused");
    assert!(err.contains("cluster1's istiod does not read cluster2's endpoints") && err.contains("use routing: istio"), "{err}");
    let mut two_names = ambient_fleet(Some("waypoint"));
    for row in &mut two_names.services {
        if let Some(p) = std::sync::Arc::make_mut(row).clusters.get_mut("cluster2") {
            p.waypoint = Some("waypoint-b".into());
        }
    }
    let err = render(CANARY, &two_names).expect_err("refused");
    assert!(
        err.contains("reviews.default uses waypoint waypoint in cluster1, waypoint-b in cluster2, waypoint in cluster3; ambient multicluster needs one name in every cluster: label the service istio.io/use-waypoint with one of them everywhere"),
        "{err}"
    );
    let inv = ambient_fleet(Some("waypoint"));
    let prefix = format!("{CANARY}  match:\n    - headers: {{end-user: {{prefix: jas}}}}\n");
    let err = render(&prefix, &inv).expect_err("refused");
    assert!(err.contains("header \"end-user\" is matched by prefix, which HTTPRoute cannot say"), "{err}");
    let mut dotted = ambient_fleet(Some("waypoint"));
    for row in &mut dotted.services {
        if let Some(p) = std::sync::Arc::make_mut(row).clusters.get_mut("cluster2")
            && let Some(c) = p.versions.remove("v3")
        {
            p.versions.insert("v3.1".into(), c);
        }
    }
    let err = render(&CANARY.replace("version: v3", "version: v3.1"), &dotted).expect_err("refused");
    assert!(err.contains("version v3.1's backend Service would be named reviews-v3.1, which is no DNS label"), "{err}");
    let retries = format!("{CANARY}  retries: {{attempts: 3}}\n");
    let err = render(&retries, &inv).expect_err("refused");
    assert!(err.contains("retries are not in Gateway API's standard channel"), "{err}");
}

#[test]
fn a_matched_route_keeps_other_requests_on_the_service_and_says_its_timeout() {
    let inv = ambient_fleet(Some("waypoint"));
    let plan = format!("{CANARY}  timeout: 5s\n  match:\n    - headers: {{end-user: {{exact: jason}}}}\n      pathPrefix: /reviews\n");
    let out = render(&plan, &inv).expect("renders");
    let rules = &named(&out.clusters["cluster1"], "HTTPRoute", "reviews-canary")["spec"]["rules"];
    assert_eq!(
        rules[0]["matches"],
        serde_json::json!([{"headers": [{"name": "end-user", "type": "Exact", "value": "jason"}], "path": {"type": "PathPrefix", "value": "/reviews"}}])
    );
    assert_eq!(rules[0]["timeouts"], serde_json::json!({"request": "5s"}));
    assert_eq!(rules[1], serde_json::json!({"backendRefs": [{"name": "reviews", "port": 9080}]}));
}

#[test]
fn routing_round_trips_and_a_wrong_value_is_named_at_its_line() {
    let inv = ambient_fleet(Some("waypoint"));
    let plan = meshdeck::plan::load("p.yaml", &format!("{CANARY}  routing: gateway-api\n"), &inv).expect("valid");
    assert_eq!(plan.routes[0].routing, meshdeck::plan::Routing::GatewayApi);
    assert_eq!(meshdeck::plan::load("again.yaml", &plan.to_yaml(), &inv).expect("valid"), plan);
    let errs = meshdeck::plan::load("p.yaml", &format!("{CANARY}  routing: gatewayapi\n"), &inv).expect_err("invalid");
    let text = format!("{}", errs[0]);
    assert!(text.starts_with("p.yaml:11:") && text.contains("routing \"gatewayapi\" must be auto, istio or gateway-api"), "{text}");
}

/// `meshdeck render` of the ambient canary (and a failover) into `out/<cluster>/`.
fn render_files(dir: &Path) -> Vec<(String, PathBuf)> {
    let inventory = dir.join("ambient.json");
    std::fs::write(&inventory, serde_json::to_string(&ambient_fleet(Some("waypoint"))).expect("json")).expect("inventory");
    let failover = "apiVersion: meshdeck.dev/v1alpha1
kind: TrafficRoute
metadata: {name: ratings-failover}
spec:
  service: ratings.default
  from: {clusters: [cluster2]}
  failover: [{cluster: cluster2}, {cluster: cluster1}]
  outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
";
    let plan = dir.join("plan.yaml");
    std::fs::write(&plan, format!("{CANARY}---\n{failover}---\n{CALLERS}")).expect("plan");
    let out = dir.join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_meshdeck"))
        .args(["render", "-f"])
        .arg(&plan)
        .arg("--inventory")
        .arg(&inventory)
        .arg("--out-dir")
        .arg(&out)
        .output()
        .expect("meshdeck runs");
    assert!(run.status.success(), "{}", common::text(&run));
    let mut clusters: Vec<(String, PathBuf)> = std::fs::read_dir(&out)
        .expect("rendered")
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    clusters.sort();
    clusters
}

/// `kubectl apply --server-side --dry-run=server` of `path` (a file or directory) to `context`: nothing is stored.
fn dry_run(fleet: &common::TestFleet, context: &str, path: &Path) -> std::process::Output {
    Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(fleet.kubeconfig_path())
        .args(["--context", context, "apply", "--server-side", "--dry-run=server", "--field-manager", "meshdeck-test", "-f"])
        .arg(path)
        .output()
        .expect("kubectl runs")
}

/// Each cluster's rendered objects, sent to that cluster's API server as a
/// server-side dry run: the real test bed serves Gateway API's standard CRDs with
/// their CEL rules, the sim its own schemas. Nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendered_objects_pass_each_clusters_api_server() {
    if !common::tool_available("kubectl", &["version", "--client"]) {
        return;
    }
    let fleet = common::TestFleet::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let clusters = render_files(dir.path());
    assert_eq!(clusters.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), ["cluster1", "cluster2", "cluster3"]);
    for (name, path) in &clusters {
        let dry = dry_run(&fleet, name, path);
        assert!(dry.status.success(), "{} fleet, {name}: {}", fleet.kind(), common::text(&dry));
        let said = String::from_utf8_lossy(&dry.stdout);
        assert!(said.contains("httproute.gateway.networking.k8s.io/") || name != "cluster1", "{said}");
    }
    // A backend without a port is what Gateway API's CEL rules refuse for a Service.
    let broken = dir.path().join("broken.json");
    let route = std::fs::read_to_string(clusters[0].1.join("httproute-default-reviews-canary.yaml")).expect("rendered route");
    let mut value: Value = serde_saphyr::from_str(&route).expect("yaml");
    value["spec"]["rules"][0]["backendRefs"][0].as_object_mut().expect("backend").remove("port");
    std::fs::write(&broken, value.to_string()).expect("broken");
    let dry = dry_run(&fleet, "cluster1", &broken);
    if fleet.is_real() {
        assert!(!dry.status.success(), "Gateway API's CEL rules refuse a Service backend without a port:\n{route}");
        assert!(common::text(&dry).contains("Must have port for Service reference"), "{}", common::text(&dry));
    }
}

/// istioctl analyze, offline, on each cluster's rendered objects beside that
/// cluster's shared-discovery world: no Error or Warning.
#[test]
fn real_only_istioctl_analyze_finds_nothing_in_the_gateway_api_render() {
    if !common::real_fleet_requested() {
        eprintln!("needs istioctl from the real test bed's build: runs with MESHDECK_TEST_FLEET=real (tests/realfleet/test.sh)");
        return;
    }
    let istioctl = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/realfleet/istioctl");
    assert!(istioctl.is_file(), "{} is missing: tests/realfleet/build.sh builds it", istioctl.display());
    let dir = tempfile::tempdir().expect("tmp");
    let world = dir.path().join("world");
    let made = Command::new(env!("CARGO_BIN_EXE_meshdeck"))
        .args(["world", "--clusters", "3", "--topology", "shared", "--out-dir"])
        .arg(&world)
        .output()
        .expect("meshdeck runs");
    assert!(made.status.success(), "{}", common::text(&made));
    for (name, path) in render_files(dir.path()) {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&path).expect("files").flatten().map(|e| e.path()).collect();
        files.sort();
        files.push(world.join(format!("{name}.yaml")));
        let result = Command::new(&istioctl).args(["analyze", "--use-kube=false"]).args(&files).output().expect("istioctl runs");
        let text = common::text(&result);
        let findings: Vec<&str> = text.lines().filter(|l| l.starts_with("Error [") || l.starts_with("Warning [")).collect();
        assert!(findings.is_empty(), "{name}:\n{text}");
    }
}

/// The live fleet (the sim, or the real bed with MESHDECK_TEST_FLEET=real) and a CLI on
/// it; None without kubectl (under CI a missing tool fails instead: `tool_available`).
async fn live() -> Option<(common::TestFleet, std::sync::Arc<common::MeshdeckCli>)> {
    if !common::tool_available("kubectl", &["version", "--client"]) {
        return None;
    }
    let fleet = common::TestFleet::start().await;
    let cli = common::MeshdeckCli::new(fleet.kubeconfig_path());
    Some((fleet, cli))
}

/// `default` in `cluster` in ambient mode (sidecar injection off).
fn make_ambient(fleet: &common::TestFleet, cluster: &str) {
    kubectl(fleet, cluster, &["label", "namespace", "default", "istio-injection-", "istio.io/dataplane-mode=ambient"], None);
}

/// A TrafficRoute from cluster1 to `service`'s versions there, with `extra` spec lines.
fn local_route(name: &str, service: &str, extra: &str, split: &[(&str, u32)]) -> String {
    let mut text = format!(
        "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {{name: {name}}}\nspec:\n  service: {service}.default\n{extra}  from: {{clusters: [cluster1]}}\n  split:\n"
    );
    for (version, weight) in split {
        text.push_str(&format!("    - {{cluster: cluster1, version: {version}, weight: {weight}}}\n"));
    }
    text
}

fn kubectl(fleet: &common::TestFleet, context: &str, args: &[&str], stdin: Option<&str>) {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(fleet.kubeconfig_path())
        .args(["--context", context])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("written");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("kubectl ends");
    assert!(out.status.success(), "kubectl {args:?} on {context}: {}", common::text(&out));
}

fn finding(findings: &Value, code: &str) -> Value {
    findings["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["code"] == code)
        .cloned()
        .unwrap_or_else(|| panic!("no {code}: {findings:#}"))
}

/// On the live fleet (both): a hand-written HTTPRoute beside the talk's canary's
/// VirtualService is MIXED_ROUTING; reviews made global in ambient mode with
/// waypoints of two names is WAYPOINT_MISMATCH (an error: analyze exits 1); the
/// inventory shows each cluster's mesh mode, waypoint and Gateway API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_apis_and_mismatched_waypoints_are_found_with_exact_messages() {
    let Some((fleet, cli)) = live().await else { return };
    let out = cli.run(&["apply", "-f", "examples/reviews-canary.yaml", "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    let route = format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: hand-written, namespace: default, labels: {{{}: x}}}}
spec:
  parentRefs: [{{group: \"\", kind: Service, name: reviews, port: 9080}}]
  rules: [{{backendRefs: [{{name: reviews, port: 9080}}]}}]
",
        common::TEST_LABEL
    );
    kubectl(&fleet, "cluster1", &["apply", "-f", "-"], Some(&route));
    for (cluster, waypoint) in [("cluster1", "waypoint"), ("cluster2", "waypoint-b")] {
        make_ambient(&fleet, cluster);
        kubectl(&fleet, cluster, &["label", "service", "reviews", &format!("istio.io/use-waypoint={waypoint}")], None);
    }
    kubectl(&fleet, "cluster1", &["label", "service", "reviews", "istio.io/global=true"], None);

    let out = cli.run(&["analyze", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(1), "a waypoint mismatch is an error: {}", common::text(&out));
    let findings: Value = serde_json::from_slice(&out.stdout).expect("json");
    let mixed = finding(&findings, "MIXED_ROUTING");
    assert_eq!(
        mixed["message"],
        "reviews.default in cluster1 is routed by both VirtualService/default/reviews-canary and HTTPRoute/default/hand-written: Istio does not define which applies when both APIs route one service"
    );
    assert_eq!(mixed["clusters"], serde_json::json!(["cluster1"]));
    let waypoints = finding(&findings, "WAYPOINT_MISMATCH");
    assert_eq!(
        waypoints["message"],
        "reviews.default is global but its waypoint is waypoint in cluster1, waypoint-b in cluster2: ambient multicluster needs a waypoint of the same name in every cluster"
    );
    assert_eq!(waypoints["severity"], "error");

    let missing = |findings: &Value| -> Vec<String> {
        findings["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["code"] == "WAYPOINT_MISSING")
            .map(|f| f["message"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        missing(&findings),
        [
            "reviews.default in cluster1 uses waypoint waypoint, which is not deployed there (no Gateway default/waypoint of class istio-waypoint)",
            "reviews.default in cluster2 uses waypoint waypoint-b, which is not deployed there (no Gateway default/waypoint-b of class istio-waypoint)"
        ]
    );
    // cluster1's waypoint deployed: only cluster2's is missing.
    let waypoint = format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: waypoint, namespace: default, labels: {{{}: x, istio.io/waypoint-for: service}}}}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{{name: mesh, port: 15008, protocol: HBONE}}]
",
        common::TEST_LABEL
    );
    kubectl(&fleet, "cluster1", &["apply", "-f", "-"], Some(&waypoint));
    let out = cli.run(&["analyze", "-o", "json"]).await;
    let findings: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        missing(&findings),
        [
            "reviews.default in cluster2 uses waypoint waypoint-b, which is not deployed there (no Gateway default/waypoint-b of class istio-waypoint)"
        ]
    );

    let out = cli.run(&["inventory", "-o", "json"]).await;
    let inv: Value = serde_json::from_slice(&out.stdout).expect("inventory json");
    assert_eq!(
        inv["services"].as_array().expect("services").iter().find(|s| s["name"] == "reviews").expect("reviews")["clusters"]["cluster1"]["waypointDeployed"],
        true
    );
    let reviews = inv["services"].as_array().expect("services").iter().find(|s| s["name"] == "reviews").expect("reviews").clone();
    assert_eq!(reviews["clusters"]["cluster1"]["dataplaneMode"], "ambient");
    assert_eq!(reviews["clusters"]["cluster1"]["waypoint"], "waypoint");
    assert_eq!(reviews["clusters"]["cluster1"]["global"], true);
    assert_eq!(reviews["clusters"]["cluster3"]["dataplaneMode"], "sidecar", "cluster3 injects sidecars");
    for c in inv["clusters"].as_array().expect("clusters") {
        assert_eq!(c["mesh"]["gatewayApi"], true, "{} serves HTTPRoute ({} fleet)", c["name"], fleet.kind());
        assert_eq!(c["mesh"]["gatewayApiVersions"], serde_json::json!(["v1", "v1beta1"]), "{} ({} fleet)", c["name"], fleet.kind());
    }
    let objects = inv["istioObjects"].as_array().expect("objects");
    let hand = objects.iter().find(|o| o["kind"] == "HTTPRoute" && o["name"] == "hand-written").expect("the HTTPRoute is in the inventory");
    assert_eq!(hand["hosts"], serde_json::json!(["reviews.default.svc.cluster.local"]));
}

/// Plan `round`: a split over 1–3 drawn destinations with drawn weights from a drawn
/// caller, every fourth a failover, sometimes matched (an exact header, a path
/// prefix) and with a timeout, all on the Gateway API path.
fn random_plan(draw: &mut Draw, round: usize) -> String {
    let caller = ["cluster1", "cluster2", "cluster3"][draw.next(3)];
    let mut text = format!(
        "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {{name: prop}}\nspec:\n  service: reviews.default\n  routing: gateway-api\n  from: {{clusters: [{caller}]}}\n"
    );
    if round % 4 == 3 {
        let other = ["cluster1", "cluster2", "cluster3"].into_iter().filter(|c| *c != caller).nth(draw.next(2)).unwrap_or("cluster2");
        text.push_str(&format!("  failover:\n    - {{cluster: {caller}}}\n    - {{cluster: {other}}}\n"));
        text.push_str("  outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}\n");
        return text;
    }
    let mut all: Vec<(&str, &str)> = RUNNING.iter().flat_map(|(c, vs)| vs.iter().map(move |v| (*c, *v))).collect();
    let count = 1 + draw.next(3);
    let mut left = 100;
    text.push_str("  split:\n");
    for i in 0..count {
        let (c, v) = all.remove(draw.next(all.len()));
        let w = if i + 1 == count { left } else { draw.next(left + 1) };
        left -= w;
        text.push_str(&format!("    - {{cluster: {c}, version: {v}, weight: {w}}}\n"));
    }
    if draw.next(2) == 1 {
        text.push_str("  timeout: 10s\n  match:\n    - headers: {end-user: {exact: jason}}\n    - pathPrefix: /reviews\n");
    }
    text
}

/// Random plans on the Gateway API path, for the ambient shared-discovery fleet (behind
/// waypoints, and without: the render deploys them) and the federated one: each renders, or is refused with what would work; what renders is
/// sent to each cluster's API server as a server-side dry run (the real test bed:
/// Gateway API's and Istio's CRDs with their CEL rules) and, on the real pass,
/// analysed by istioctl beside that cluster's world of the same topology.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_gateway_api_plans_render_or_say_why_and_pass_the_api_server() {
    if !common::tool_available("kubectl", &["version", "--client"]) {
        return;
    }
    let fleet = common::TestFleet::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let istioctl = fleet.is_real().then(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/realfleet/istioctl"));
    // Each topology's world, for istioctl to analyse the render beside.
    let world = |topology: &str| dir.path().join(format!("world-{topology}"));
    if istioctl.is_some() {
        for topology in ["shared", "federation"] {
            let made = Command::new(env!("CARGO_BIN_EXE_meshdeck"))
                .args(["world", "--clusters", "3", "--topology", topology, "--out-dir"])
                .arg(world(topology))
                .output()
                .expect("meshdeck runs");
            assert!(made.status.success(), "{}", common::text(&made));
        }
    }
    let ambient = ambient_fleet(Some("waypoint"));
    let no_waypoints = ambient_fleet(None);
    let federation = fixture("inventory-federation.json");
    let mut draw = Draw(0x5eed_0034);
    let (mut rendered, mut refused) = (0, 0);
    for round in 0..24 {
        let plan = random_plan(&mut draw, round);
        // A federated fleet: only what stays in the caller's cluster can be said.
        for (topology, inv) in
            [("ambient shared discovery", &ambient), ("ambient without waypoints", &no_waypoints), ("federation", &federation)]
        {
            let out = match render(&plan, inv) {
                Ok(out) => out,
                Err(e) => {
                    assert!(e.contains("use routing: istio"), "round {round}, {topology}: a refusal says what would work:\n{plan}\n{e}");
                    refused += 1;
                    continue;
                }
            };
            rendered += 1;
            for (cluster, objs) in &out.clusters {
                let files = dir.path().join(format!("r{round}-{}-{cluster}", topology.len()));
                std::fs::create_dir_all(&files).expect("dir");
                let mut patches = Vec::new();
                for o in objs {
                    let file = files.join(meshdeck::render::file_name(o));
                    std::fs::write(&file, meshdeck::yaml::to_yaml(o)).expect("file");
                    // A Service's use-waypoint label is a patch of the world's Service, not an object of its own.
                    if o["kind"] == "Service" && o.get("spec").is_none() {
                        patches.push(file);
                    }
                }
                let dry = dry_run(&fleet, cluster, &files);
                assert!(
                    dry.status.success(),
                    "round {round}, {topology}, on {cluster} ({} fleet):\n{plan}\n{}",
                    fleet.kind(),
                    common::text(&dry)
                );
                if let Some(istioctl) = istioctl.as_ref() {
                    let mut paths: Vec<PathBuf> =
                        std::fs::read_dir(&files).expect("files").flatten().map(|e| e.path()).filter(|p| !patches.contains(p)).collect();
                    paths.sort();
                    let topology = if topology == "federation" { "federation" } else { "shared" };
                    paths.push(world(topology).join(format!("{cluster}.yaml")));
                    let result = Command::new(istioctl).args(["analyze", "--use-kube=false"]).args(&paths).output().expect("istioctl runs");
                    let text = common::text(&result);
                    let findings: Vec<&str> = text.lines().filter(|l| l.starts_with("Error [") || l.starts_with("Warning [")).collect();
                    assert!(findings.is_empty(), "round {round} on {cluster}:\n{plan}\n{text}");
                }
            }
        }
    }
    eprintln!("gateway-api corpus: {rendered} rendered, {refused} refused with what would work");
    assert!(rendered >= 6 && refused >= 3, "the corpus covers both outcomes: {rendered} rendered, {refused} refused");
}

/// The object `kind/name` in `context`'s default namespace, as JSON.
fn get_json(fleet: &common::TestFleet, context: &str, object: &str) -> Option<Value> {
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(fleet.kubeconfig_path())
        .args(["--context", context, "get", object, "-o", "json", "--ignore-not-found", "--show-managed-fields"])
        .output()
        .expect("kubectl runs");
    assert!(out.status.success(), "{}", common::text(&out));
    (!out.stdout.is_empty()).then(|| serde_json::from_slice(&out.stdout).expect("json"))
}

/// Who manages which fields of an object (manager, fields), times left out.
fn owners(o: &Value) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = o["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| (m["manager"].as_str().unwrap_or("").to_string(), m["fieldsV1"].clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The id of the newest history record of `plan`.
async fn record_of(cli: &std::sync::Arc<common::MeshdeckCli>, plan: &str) -> String {
    let out = cli.run(&["history", "-o", "json"]).await;
    let records: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
    records
        .iter()
        .filter(|r| r["plans"].as_array().is_some_and(|p| p.iter().any(|n| n == plan)) && r["action"] == "apply")
        .max_by_key(|r| r["started"].as_str().unwrap_or("").to_string())
        .unwrap_or_else(|| panic!("no record of {plan}: {records:#?}"))["id"]
        .as_str()
        .expect("id")
        .to_string()
}

/// On the live fleet (both): default ambient in cluster1, no waypoint. A Gateway API
/// route there deploys the waypoint and labels reviews (meshdeck owns that one
/// label); a second plan's service comes to use the same waypoint; rolling back the
/// first is refused while ratings uses it; rolled back newest first, reviews is as
/// before, to its field owners, and the waypoint is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waypoint_meshdeck_deploys_stays_while_another_service_uses_it() {
    let Some((fleet, cli)) = live().await else { return };
    make_ambient(&fleet, "cluster1");
    let before = get_json(&fleet, "cluster1", "service/reviews").expect("reviews");
    let reviews = common::write_plan(&cli, "reviews.yaml", &local_route("reviews-local", "reviews", "", &[("v1", 90), ("v2", 10)]));
    let out = cli.run(&["apply", "-f", &reviews, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{} fleet: {}", fleet.kind(), common::text(&out));
    assert!(common::text(&out).contains("routing: reviews-local: gateway-api (auto: ambient in cluster1)"), "{}", common::text(&out));
    let waypoint = get_json(&fleet, "cluster1", "gateways.gateway.networking.k8s.io/waypoint").expect("the waypoint is deployed");
    assert_eq!(waypoint["spec"]["gatewayClassName"], "istio-waypoint");
    assert_eq!(waypoint["spec"]["infrastructure"]["labels"]["istio.io/global"], "false", "a route within cluster1");
    let labelled = get_json(&fleet, "cluster1", "service/reviews").expect("reviews");
    assert_eq!(labelled["metadata"]["labels"]["istio.io/use-waypoint"], "waypoint");
    assert_eq!(labelled["spec"], before["spec"], "only a label is written");
    let mine: Vec<Value> = owners(&labelled).into_iter().filter(|(m, _)| m == "meshdeck").map(|(_, f)| f).collect();
    assert_eq!(mine, [serde_json::json!({"f:metadata": {"f:labels": {"f:istio.io/use-waypoint": {}}}})], "meshdeck owns that label only");

    let ratings = common::write_plan(&cli, "ratings.yaml", &local_route("ratings-local", "ratings", "", &[("v1", 100)]));
    let out = cli.run(&["apply", "-f", &ratings, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    assert_eq!(
        get_json(&fleet, "cluster1", "service/ratings").expect("ratings")["metadata"]["labels"]["istio.io/use-waypoint"],
        "waypoint"
    );

    let first = record_of(&cli, "reviews-local").await;
    let out = cli.run(&["rollback", &first, "--yes"]).await;
    assert_ne!(out.status.code(), Some(0), "{}", common::text(&out));
    assert!(
        common::text(&out).contains(
            "cluster1: Gateway.gateway.networking.k8s.io/default/waypoint: still the waypoint of Service default/ratings (istio.io/use-waypoint=waypoint)"
        ),
        "{}",
        common::text(&out)
    );
    assert!(get_json(&fleet, "cluster1", "gateways.gateway.networking.k8s.io/waypoint").is_some(), "nothing was written");

    let second = record_of(&cli, "ratings-local").await;
    let out = cli.run(&["rollback", &second, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    assert!(get_json(&fleet, "cluster1", "service/ratings").expect("ratings")["metadata"]["labels"].get("istio.io/use-waypoint").is_none());
    assert!(get_json(&fleet, "cluster1", "gateways.gateway.networking.k8s.io/waypoint").is_some(), "reviews still uses it");
    let out = cli.run(&["rollback", &first, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    assert!(get_json(&fleet, "cluster1", "gateways.gateway.networking.k8s.io/waypoint").is_none(), "the waypoint is gone");
    let after = get_json(&fleet, "cluster1", "service/reviews").expect("reviews");
    assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);
    assert_eq!(owners(&after), owners(&before), "every field back with its owner");
}

/// On the live fleet (both): a hand-written GRPCRoute on details is read as Istio
/// reads it (a method match as the path `/<service>/<method>`, `createGRPCURIMatch`),
/// is MIXED_ROUTING beside a VirtualService, and is not imported (meshdeck renders
/// HTTPRoutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_grpcroute_is_read_as_istio_reads_it() {
    let Some((fleet, cli)) = live().await else { return };
    let route = format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: by-grpc, namespace: default, labels: {{{}: x}}}}
spec:
  parentRefs: [{{group: \"\", kind: Service, name: details, port: 9080}}]
  rules:
    - matches: [{{method: {{service: bookinfo.Details, method: Get}}}}, {{method: {{service: bookinfo.Admin}}}}]
      backendRefs: [{{name: details, port: 9080}}]
",
        common::TEST_LABEL
    );
    kubectl(&fleet, "cluster1", &["apply", "-f", "-"], Some(&route));
    let out = cli.run(&["routes", "details", "--from", "cluster1", "-o", "json"]).await;
    let routes: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
    let first = &routes["routes"][0];
    assert_eq!(first["virtualService"], "GRPCRoute default/by-grpc", "{first:#}");
    let matches: Vec<&str> = first["rules"][0]["matches"].as_array().expect("matches").iter().filter_map(Value::as_str).collect();
    assert_eq!(matches.len(), 2, "{first:#}");
    assert!(matches[0].contains("/bookinfo.Details/Get") && matches[1].contains("/bookinfo.Admin/"), "{matches:?}");
    let out = cli.run(&["import", "details", "--from", "cluster1"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    assert!(
        common::text(&out)
            .contains("GRPCRoute default/by-grpc is a GRPCRoute: a TrafficRoute renders HTTPRoutes, so a gRPC route stays as written"),
        "{}",
        common::text(&out)
    );
    let vs = format!(
        "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: details-vs, namespace: default, labels: {{{}: x}}}}
spec:
  hosts: [details]
  http: [{{route: [{{destination: {{host: details}}}}]}}]
",
        common::TEST_LABEL
    );
    kubectl(&fleet, "cluster1", &["apply", "-f", "-"], Some(&vs));
    let out = cli.run(&["analyze", "-o", "json"]).await;
    let findings: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
    assert_eq!(
        finding(&findings, "MIXED_ROUTING")["message"],
        "details.default in cluster1 is routed by both VirtualService/default/details-vs and GRPCRoute/default/by-grpc: Istio does not define which applies when both APIs route one service"
    );
}

/// On the live fleet (both): a waypoint a rollback could not remove (its cluster
/// dark) is left for a later change to sweep, and that sweep leaves it while a
/// Service names it: reviews was labelled by hand to use `waypoint` before meshdeck
/// deployed it, so removing it later would break reviews' traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_waypoint_left_on_a_dark_cluster_is_not_swept_while_a_service_uses_it() {
    let Some((fleet, cli)) = live().await else { return };
    make_ambient(&fleet, "cluster1");
    kubectl(&fleet, "cluster1", &["label", "service", "reviews", "istio.io/use-waypoint=waypoint"], None);
    let reviews = common::write_plan(&cli, "reviews.yaml", &local_route("reviews-local", "reviews", "", &[("v1", 100)]));
    let out = cli.run(&["apply", "-f", &reviews, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    assert!(common::text(&out).contains("Gateway.gateway.networking.k8s.io/default/waypoint create"), "{}", common::text(&out));
    let first = record_of(&cli, "reviews-local").await;

    fleet.take_down("cluster1").await;
    let out = cli.run(&["rollback", &first, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    assert!(common::text(&out).contains("of reviews-local on cluster1 not removed"), "{}", common::text(&out));
    fleet.bring_up("cluster1").await;
    common::answers(&fleet, "cluster1").await;

    // A later change sweeps what the rollback left, except the waypoint reviews uses.
    let ratings = common::write_plan(&cli, "ratings.yaml", &local_route("ratings-local", "ratings", "  routing: istio\n", &[("v1", 100)]));
    let out = cli.run(&["apply", "-f", &ratings, "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", common::text(&out));
    let said = common::text(&out);
    assert!(
        said.contains("1 object of reviews-local on cluster1 not removed: cluster1: Gateway.gateway.networking.k8s.io/default/waypoint: still the waypoint of Service default/reviews (istio.io/use-waypoint=waypoint)"),
        "{said}"
    );
    assert!(get_json(&fleet, "cluster1", "gateways.gateway.networking.k8s.io/waypoint").is_some(), "reviews' waypoint stays: {said}");
    assert!(get_json(&fleet, "cluster1", "httproute/reviews-local").is_none(), "the rest is swept: {said}");
    assert!(get_json(&fleet, "cluster1", "service/reviews-v1").is_none(), "the rest is swept: {said}");
}
