//! Istio's own judgement: `istioctl analyze`, built from istio.io/istio by
//! tests/realfleet/build.sh, on every rendered example in both topologies
//! (each cluster's files together with that cluster's world objects, offline)
//! and on the live clusters of the real test bed after an apply. No message
//! of level Error or Warning may appear. Real-only: it runs in the real pass.

mod common;

use common::{Draw, RUNNING};

use std::path::{Path, PathBuf};
use std::process::Command;

fn istioctl() -> PathBuf {
    let p = std::env::var("MESHDECK_ISTIOCTL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/realfleet/istioctl"));
    assert!(p.is_file(), "{} is missing: tests/realfleet/build.sh builds it", p.display());
    p
}

fn meshdeck(args: &[&str]) -> String {
    let out =
        Command::new(env!("CARGO_BIN_EXE_meshdeck")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("meshdeck runs");
    assert!(out.status.success(), "meshdeck {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `meshdeck render` of a plan file for a fixture fleet, into `out/<cluster>/`.
fn render_offline(plan: &Path, inventory: &Path, out: &Path) {
    let arg = |p: &Path| p.to_str().expect("utf8").to_string();
    meshdeck(&["render", "-f", &arg(plan), "--inventory", &arg(inventory), "--out-dir", &arg(out)]);
}

/// `istioctl analyze --all-namespaces` of one live cluster: its whole output.
fn analyze_live(istioctl: &Path, kubeconfig: &Path, context: &str) -> String {
    let result = Command::new(istioctl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--context", context, "analyze", "--all-namespaces"])
        .output()
        .expect("istioctl runs");
    format!("{}{}", String::from_utf8_lossy(&result.stdout), String::from_utf8_lossy(&result.stderr))
}

/// The Error and Warning lines of an analysis.
fn findings(text: &str) -> Vec<String> {
    text.lines().filter(|l| l.starts_with("Error [") || l.starts_with("Warning [")).map(str::to_string).collect()
}

#[test]
fn real_only_istioctl_analyze_finds_nothing_in_any_rendered_example() {
    if !common::real_fleet_requested() {
        eprintln!("needs istioctl from the real test bed's build: runs with MESHDECK_TEST_FLEET=real (tests/realfleet/test.sh)");
        return;
    }
    let istioctl = istioctl();
    let examples: Vec<PathBuf> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples"))
        .expect("examples")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    assert!(examples.len() >= 4, "{examples:?}");
    let mut analysed = 0;
    for (topology, fixture) in [("federation", "inventory-federation.json"), ("shared", "inventory-shared.json")] {
        let dir = tempfile::tempdir().expect("tmp");
        let world = dir.path().join("world");
        meshdeck(&["world", "--clusters", "3", "--topology", topology, "--out-dir", world.to_str().expect("utf8")]);
        let inventory = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(fixture);
        for example in &examples {
            let out = dir.path().join(example.file_stem().expect("name"));
            // Shared discovery ranks failover targets of one version (validation says so):
            // the failover example without its per-target versions.
            let mut plan = example.clone();
            if topology == "shared" && example.ends_with("reviews-failover.yaml") {
                plan = dir.path().join("reviews-failover-shared.yaml");
                let text = std::fs::read_to_string(example).expect("example").replace(", version: v1", "");
                std::fs::write(&plan, text).expect("plan");
            }
            render_offline(&plan, &inventory, &out);
            // One folder per cluster (beside them, the render's `.meshdeck-render` list).
            for cluster in std::fs::read_dir(&out).expect("rendered").flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
                let name = cluster.file_name().to_string_lossy().into_owned();
                let mut files: Vec<PathBuf> = std::fs::read_dir(cluster.path()).expect("files").flatten().map(|e| e.path()).collect();
                files.sort();
                files.push(world.join(format!("{name}.yaml")));
                let result = Command::new(&istioctl).args(["analyze", "--use-kube=false"]).args(&files).output().expect("istioctl runs");
                let text = format!("{}{}", String::from_utf8_lossy(&result.stdout), String::from_utf8_lossy(&result.stderr));
                assert!(findings(&text).is_empty(), "{topology} {} on {name}:\n{text}", example.display());
                assert!(text.contains("No validation issues found") || result.status.success(), "{text}");
                analysed += 1;
            }
        }
    }
    println!("istioctl analyze: {analysed} cluster renders, no Error or Warning");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_only_istioctl_analyze_finds_nothing_on_the_live_clusters_after_an_apply() {
    let Some(fleet) = common::real_fleet_only("istioctl analyze of live clusters").await else { return };
    let istioctl = istioctl();
    let kc = fleet.kubeconfig_path();
    let (config, data) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    for example in ["examples/reviews-canary.yaml", "examples/reviews-callers.yaml"] {
        let out = Command::new(env!("CARGO_BIN_EXE_meshdeck"))
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["--context", "cluster1", "--context", "cluster2", "--context", "cluster3", "apply", "-f", example, "--yes"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("MESHDECK_CONFIG_DIR", config.path())
            .env("MESHDECK_DATA_DIR", data.path())
            .output()
            .expect("meshdeck runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for context in ["cluster1", "cluster2", "cluster3"] {
        let text = analyze_live(&istioctl, &kc, context);
        assert!(findings(&text).is_empty(), "{context}:\n{text}");
        println!("{context}: {}", text.lines().filter(|l| l.starts_with("Info [")).count());
    }
}

/// Plan `round` of the corpus: every third a failover from the caller (itself first,
/// then the other two in a drawn order, each at a drawn version in federation; shared
/// discovery ranks targets of one version), else a split over 1–3 drawn destinations
/// with drawn weights, sometimes with retries and a timeout.
fn random_plan(draw: &mut Draw, round: usize, shared: bool) -> String {
    let head = "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: prop}\nspec:\n  service: reviews.default\n";
    let caller = ["cluster1", "cluster3"][draw.next(2)];
    if round % 3 == 2 {
        let mut others: Vec<&str> = ["cluster1", "cluster2", "cluster3"].into_iter().filter(|c| *c != caller).collect();
        if draw.next(2) == 1 {
            others.reverse();
        }
        let mut text = format!("{head}  from: {{clusters: [{caller}]}}\n  failover:\n    - {{cluster: {caller}}}\n");
        for c in others {
            let versions = RUNNING.iter().find(|(n, _)| *n == c).map(|(_, v)| *v).unwrap_or(&["v1"]);
            let v = versions[draw.next(versions.len())];
            if shared {
                text.push_str(&format!("    - {{cluster: {c}}}\n"));
            } else {
                text.push_str(&format!("    - {{cluster: {c}, version: {v}}}\n"));
            }
        }
        text.push_str("  outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}\n");
        return text;
    }
    let mut all: Vec<(&str, &str)> = RUNNING.iter().flat_map(|(c, vs)| vs.iter().map(move |v| (*c, *v))).collect();
    let count = 1 + draw.next(3);
    let mut picked = Vec::new();
    for _ in 0..count {
        picked.push(all.remove(draw.next(all.len())));
    }
    let mut left = 100;
    let mut text = format!("{head}  from: {{clusters: [{caller}]}}\n  split:\n");
    for (i, (c, v)) in picked.iter().enumerate() {
        let w = if i + 1 == picked.len() { left } else { draw.next(left + 1) };
        left -= w;
        text.push_str(&format!("    - {{cluster: {c}, version: {v}, weight: {w}}}\n"));
    }
    if draw.next(2) == 1 {
        text.push_str("  retries: {attempts: 3, perTryTimeout: 2s}\n  timeout: 10s\n");
    }
    text
}

/// A corpus of plans drawn from what the live federation fleet runs: each is applied
/// to the real clusters (their API servers check Istio's schemas and CEL rules) and
/// the clusters are then analysed by istioctl. Each plan replaces the one before (same name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_only_random_plans_apply_and_analyze_clean_on_the_live_clusters() {
    let Some(fleet) = common::real_fleet_only("random plans on live clusters").await else { return };
    let istioctl = istioctl();
    let kc = fleet.kubeconfig_path();
    let cli = common::MeshdeckCli::new(kc.clone());
    let mut draw = Draw(0x5eed_0013);
    for round in 0..10 {
        let plan = random_plan(&mut draw, round, false);
        let file = common::write_plan(&cli, "prop.yaml", &plan);
        let out = cli.run(&["apply", "-f", &file, "--yes"]).await;
        assert_eq!(out.status.code(), Some(0), "round {round}, plan:\n{plan}\n{}", common::text(&out));
        for context in ["cluster1", "cluster2", "cluster3"] {
            let text = analyze_live(&istioctl, &kc, context);
            assert!(findings(&text).is_empty(), "round {round} on {context}, plan:\n{plan}\n{text}");
        }
    }
}

/// The same corpus in shared discovery (the real test bed runs federation, and meshdeck
/// renders what the live fleet is): each plan rendered for the shared fixture fleet,
/// each cluster's objects sent to a real API server as a server-side dry run (Istio's
/// schemas and CEL rules), and analysed by istioctl beside that cluster's shared world.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_only_random_shared_discovery_plans_pass_a_real_api_server_and_istioctl() {
    let Some(fleet) = common::real_fleet_only("random shared-discovery plans against a real API server").await else { return };
    let istioctl = istioctl();
    let kc = fleet.kubeconfig_path();
    assert!(Command::new("kubectl").arg("version").arg("--client").output().is_ok_and(|o| o.status.success()), "kubectl is needed");
    let dir = tempfile::tempdir().expect("tmp");
    let world = dir.path().join("world");
    meshdeck(&["world", "--clusters", "3", "--topology", "shared", "--out-dir", world.to_str().expect("utf8")]);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory-shared.json");
    let mut draw = Draw(0x5eed_5a3d);
    for round in 0..10 {
        let plan = random_plan(&mut draw, round, true);
        let file = dir.path().join(format!("prop{round}.yaml"));
        std::fs::write(&file, &plan).expect("plan");
        let out = dir.path().join(format!("out{round}"));
        render_offline(&file, &fixture, &out);
        for cluster in std::fs::read_dir(&out).expect("rendered").flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())) {
            let name = cluster.file_name().to_string_lossy().into_owned();
            let dry = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&kc)
                .args(["--context", &name, "apply", "--server-side", "--dry-run=server", "--field-manager", "meshdeck-test", "-f"])
                .arg(cluster.path())
                .output()
                .expect("kubectl runs");
            assert!(dry.status.success(), "round {round} on {name}, plan:\n{plan}\n{}", common::text(&dry));
            let mut files: Vec<PathBuf> = std::fs::read_dir(cluster.path()).expect("files").flatten().map(|e| e.path()).collect();
            files.sort();
            files.push(world.join(format!("{name}.yaml")));
            let result = Command::new(&istioctl).args(["analyze", "--use-kube=false"]).args(&files).output().expect("istioctl runs");
            let text = common::text(&result);
            assert!(findings(&text).is_empty(), "round {round} on {name}, plan:\n{plan}\n{text}");
        }
    }
}

fn istio_eds() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/realfleet/istio-eds");
    assert!(p.is_file(), "{} is missing: tests/realfleet/build.sh builds it", p.display());
    p
}

/// Istio's own answer (its xDS generator, tests/realfleet/istioctl/eds) to what a
/// sidecar in `cluster` gets: each outbound cluster with its endpoints and priorities.
fn istio_endpoints(cluster: &str, network: &str, files: &[PathBuf]) -> Vec<serde_json::Value> {
    istio_endpoints_reading(cluster, network, files, &[])
}

/// The same for an istiod that also reads other clusters (`remote`: cluster id and
/// its world file, whose pods are addressed 10.2.x.x, 10.3.x.x, ... in that order).
fn istio_endpoints_reading(cluster: &str, network: &str, files: &[PathBuf], remote: &[(&str, PathBuf)]) -> Vec<serde_json::Value> {
    let remotes: Vec<String> = remote.iter().map(|(id, f)| format!("--remote={id}={}", f.display())).collect();
    let out = Command::new(istio_eds())
        .args(["--cluster-id", cluster, "--network", network, "--labels", "app=productpage,version=v1"])
        .args(&remotes)
        .args(files)
        .output()
        .expect("istio-eds runs");
    assert!(out.status.success(), "istio-eds: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("istio-eds prints JSON")
}

/// The endpoint addresses of one outbound cluster, grouped by priority (0 first).
fn tiers(clusters: &[serde_json::Value], name: &str) -> (Vec<std::collections::BTreeSet<String>>, bool) {
    let c = clusters.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no cluster {name} in {clusters:#?}"));
    let mut by_priority: std::collections::BTreeMap<u64, std::collections::BTreeSet<String>> = Default::default();
    for e in c["endpoints"].as_array().expect("endpoints") {
        let address = format!("{}:{}", e["address"].as_str().expect("address"), e["port"]);
        by_priority.entry(e["priority"].as_u64().expect("priority")).or_default().insert(address);
    }
    (by_priority.into_values().collect(), c["outlierDetection"] == true)
}

/// A federated failover's local tier is the caller's own pods, each an endpoint of
/// its own, so outlier detection ejects a bad pod alone and the others keep serving;
/// the remote tiers follow in the plan's order wherever the local tier stands in it.
/// Judged by Istio's own endpoint generation for a sidecar in cluster1, with no
/// change to what the plain `reviews` Service resolves to.
#[test]
fn real_only_a_failover_local_tier_is_its_pods_each_ejected_on_its_own() {
    if !common::real_fleet_requested() {
        eprintln!("needs istio-eds from the real test bed's build: runs with MESHDECK_TEST_FLEET=real (tests/realfleet/test.sh)");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let world = dir.path().join("world");
    meshdeck(&["world", "--clusters", "3", "--topology", "federation", "--out-dir", world.to_str().expect("utf8")]);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory-federation.json");
    let inventory: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&fixture).expect("fixture")).expect("json");
    let gateway = |c: &str| {
        let cluster = inventory["clusters"].as_array().expect("clusters").iter().find(|x| x["name"] == c).expect("cluster");
        format!("{}:15443", cluster["mesh"]["eastWestGateway"].as_str().expect("gateway"))
    };
    let plain = istio_endpoints("cluster1", "network1", &[world.join("cluster1.yaml")]);
    let (pods, _) = tiers(&plain, "outbound|9080||reviews.default.svc.cluster.local");
    let pods = pods.into_iter().next().expect("reviews has pods in cluster1");
    assert!(pods.len() >= 2, "{pods:?}");
    // The local tier takes every version (validation says so in federation).
    let orders: [&[(&str, &str)]; 3] = [
        &[("cluster1", ""), ("cluster2", "v1"), ("cluster3", "v1")],
        &[("cluster2", "v1"), ("cluster1", ""), ("cluster3", "v1")],
        &[("cluster2", "v1"), ("cluster3", "v1"), ("cluster1", "")],
    ];
    for (i, order) in orders.iter().enumerate() {
        let mut plan = "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: fo}\nspec:\n  service: reviews.default\n  from: {clusters: [cluster1]}\n  failover:\n".to_string();
        for (c, v) in order.iter() {
            let version = if v.is_empty() { String::new() } else { format!(", version: {v}") };
            plan.push_str(&format!("    - {{cluster: {c}{version}}}\n"));
        }
        plan.push_str("  outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}\n");
        let file = dir.path().join(format!("fo{i}.yaml"));
        std::fs::write(&file, &plan).expect("plan");
        let out = dir.path().join(format!("out{i}"));
        render_offline(&file, &fixture, &out);
        let mut files = vec![world.join("cluster1.yaml")];
        files.extend(std::fs::read_dir(out.join("cluster1")).expect("cluster1's files").flatten().map(|e| e.path()));
        let clusters = istio_endpoints("cluster1", "network1", &files);
        let (got, outlier) = tiers(&clusters, "outbound|9080||fo.reviews.default.failover.global");
        assert!(outlier, "outlier detection is on: {plan}");
        assert_eq!(got.len(), order.len(), "one priority per tier: {got:?}\n{plan}");
        for (tier, (c, _)) in order.iter().enumerate() {
            if *c == "cluster1" {
                // Every local pod is its own endpoint.
                assert_eq!(got[tier], pods, "tier {tier}: {got:?}\n{plan}");
            } else {
                assert_eq!(got[tier], [gateway(c)].into(), "tier {tier} is {c}'s east-west gateway: {got:?}\n{plan}");
            }
        }
        let (still, _) = tiers(&clusters, "outbound|9080||reviews.default.svc.cluster.local");
        assert_eq!(still, vec![pods.clone()], "the reviews Service keeps its own pods only\n{plan}");
        // `meshdeck routes` reads the same objects back into the same order Istio gives.
        let snap: meshdeck::inventory::FleetSnapshot = serde_json::from_value(inventory.clone()).expect("fixture");
        let loaded = meshdeck::plan::load("fo.yaml", &plan, &snap).expect("plan");
        let live = common::applied(&snap, &loaded).expect("renders");
        let route = meshdeck::inventory::routes::effective_routes(&live, Some("reviews.default"), Some("cluster1")).remove(0);
        let mut ours: Vec<(usize, String)> =
            route.rules[0].destinations[0].targets.iter().map(|t| (t.tier.expect("a tier"), t.cluster.clone())).collect();
        ours.sort();
        let order_clusters: Vec<String> = order.iter().map(|(c, _)| c.to_string()).collect();
        assert_eq!(ours.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(), order_clusters, "{route:#?}");
        assert_eq!(ours.iter().map(|(t, _)| *t).collect::<Vec<_>>(), (0..order.len()).collect::<Vec<_>>(), "one tier each, as Istio");
    }
}

/// A mixed fleet: cluster1 and cluster2 share discovery (each istiod reads the
/// other), cluster3 federates. A split from cluster1 to v1 in cluster1, v1 in cluster2
/// and v1 in cluster3 gives each shared-discovery destination a subset of its own,
/// pinned to its cluster: Istio's generator hands the cluster1 subset only cluster1's
/// pods and the cluster2 subset only cluster2's (before, both were one subset `v1`
/// that took the pods of both).
#[test]
fn real_only_a_mixed_fleets_split_pins_each_subset_to_its_cluster() {
    if !common::real_fleet_requested() {
        eprintln!("needs istio-eds from the real test bed's build: runs with MESHDECK_TEST_FLEET=real (tests/realfleet/test.sh)");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let world = dir.path().join("world");
    meshdeck(&["world", "--clusters", "3", "--topology", "federation", "--out-dir", world.to_str().expect("utf8")]);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory-federation.json");
    let mut inventory: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&fixture).expect("fixture")).expect("json");
    for c in inventory["clusters"].as_array_mut().expect("clusters") {
        let other = match c["name"].as_str() {
            Some("cluster1") => "cluster2",
            Some("cluster2") => "cluster1",
            _ => continue,
        };
        c["mesh"]["remoteSecrets"] = serde_json::json!([other]);
    }
    let mixed = dir.path().join("inventory-mixed.json");
    std::fs::write(&mixed, serde_json::to_string(&inventory).expect("json")).expect("inventory");
    let plan = dir.path().join("split.yaml");
    std::fs::write(
        &plan,
        "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: split}\nspec:\n  service: reviews.default\n  from: {clusters: [cluster1]}\n  split:\n    - {cluster: cluster1, version: v1, weight: 40}\n    - {cluster: cluster2, version: v1, weight: 50}\n    - {cluster: cluster3, version: v1, weight: 10}\n",
    )
    .expect("plan");
    let out = dir.path().join("out");
    render_offline(&plan, &mixed, &out);
    let mut files = vec![world.join("cluster1.yaml")];
    files.extend(std::fs::read_dir(out.join("cluster1")).expect("cluster1's files").flatten().map(|e| e.path()));
    let clusters = istio_endpoints_reading("cluster1", "network1", &files, &[("cluster2", world.join("cluster2.yaml"))]);
    let addresses = |name: &str| -> Vec<String> {
        let (tiers, _) = tiers(&clusters, name);
        tiers.into_iter().flatten().collect()
    };
    let here = addresses("outbound|9080|v1-cluster1|reviews.default.svc.cluster.local");
    let there = addresses("outbound|9080|v1-cluster2|reviews.default.svc.cluster.local");
    assert!(!here.is_empty() && here.iter().all(|a| a.starts_with("10.1.")), "cluster1's subset is cluster1's pods: {here:?}");
    assert!(!there.is_empty() && there.iter().all(|a| a.starts_with("10.2.")), "cluster2's subset is cluster2's pods: {there:?}");
    // The plain host has both clusters' pods: discovery is shared, so the pinning is what separates them.
    let all = addresses("outbound|9080||reviews.default.svc.cluster.local");
    assert!(all.iter().any(|a| a.starts_with("10.1.")) && all.iter().any(|a| a.starts_with("10.2.")), "{all:?}");
}

/// The AuthorizationPolicy of an AccessPolicy, as Istio's own authorization
/// builder turns it into the RBAC filter a reviews sidecar enforces (istio-eds
/// --inbound, with the world's mesh config: trust domain and aliases): the SPIFFE
/// identities it admits are exactly the ones meshdeck says (`render::access::admitted`)
/// in every cluster, in both topologies; and where that is more than the plan names,
/// the render's note names the extra cluster. Proven at the xDS level: the bed's
/// proxyless gRPC data plane has no mTLS identities to refuse a request by.
#[test]
fn real_only_an_access_policy_admits_in_istios_rbac_exactly_what_meshdeck_says() {
    if !common::real_fleet_requested() {
        eprintln!("needs istio-eds from the real test bed's build: runs with MESHDECK_TEST_FLEET=real (tests/realfleet/test.sh)");
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let only_cluster1 = "apiVersion: meshdeck.dev/v1alpha1\nkind: AccessPolicy\nmetadata: {name: reviews-callers}\nspec:\n  service: reviews.default\n  allowFrom:\n    - {cluster: cluster1, namespace: default, serviceAccount: bookinfo-productpage}\n";
    let example = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/reviews-callers.yaml")).expect("example");
    for topology in ["federation", "shared"] {
        let world = dir.path().join(format!("world-{topology}"));
        meshdeck(&["world", "--clusters", "3", "--topology", topology, "--out-dir", world.to_str().expect("utf8")]);
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/inventory-{topology}.json"));
        let snap: meshdeck::inventory::FleetSnapshot =
            serde_json::from_str(&std::fs::read_to_string(&fixture).expect("fixture")).expect("fixture json");
        for (i, text) in [example.as_str(), only_cluster1].iter().enumerate() {
            let plan_file = dir.path().join(format!("access-{topology}-{i}.yaml"));
            std::fs::write(&plan_file, text).expect("plan");
            let out = dir.path().join(format!("out-{topology}-{i}"));
            let rendered = Command::new(env!("CARGO_BIN_EXE_meshdeck"))
                .args(["render", "-f", plan_file.to_str().expect("utf8"), "--inventory", fixture.to_str().expect("utf8")])
                .args(["--out-dir", out.to_str().expect("utf8")])
                .output()
                .expect("meshdeck render");
            assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
            let notes = String::from_utf8_lossy(&rendered.stderr).into_owned();
            let plan = meshdeck::plan::load("access.yaml", text, &snap).expect("plan");
            let policy = &plan.access[0];
            for cluster in ["cluster1", "cluster2", "cluster3"] {
                let mut files = vec![world.join(format!("{cluster}.yaml"))];
                files.extend(std::fs::read_dir(out.join(cluster)).expect("the cluster's files").flatten().map(|e| e.path()));
                let answer = Command::new(istio_eds())
                    .args(["--inbound", "--cluster-id", cluster, "--labels", "app=reviews"])
                    .args(&files)
                    .output()
                    .expect("istio-eds runs");
                assert!(answer.status.success(), "istio-eds: {}", String::from_utf8_lossy(&answer.stderr));
                let rules: Vec<serde_json::Value> = serde_json::from_slice(&answer.stdout).expect("istio-eds prints JSON");
                let istio: std::collections::BTreeSet<String> = rules
                    .iter()
                    .filter(|r| {
                        r["filter"] == "http"
                            && r["action"] == "ALLOW"
                            && r["policy"].as_str().is_some_and(|p| p.contains("reviews-callers"))
                    })
                    .flat_map(|r| r["principals"].as_array().expect("principals").iter().map(|p| p.as_str().expect("id").to_string()))
                    .collect();
                assert!(!istio.is_empty(), "{topology} {cluster}: Istio built no ALLOW rule for the policy: {rules:#?}");
                let ours = meshdeck::render::access::admitted(policy, &snap, cluster).expect("admitted");
                assert_eq!(ours, istio, "{topology} {cluster}: what meshdeck says is admitted is what Istio enforces\n{text}");
                // The extra cluster the identities admit is named, where there is one.
                let named: Vec<&str> = policy.allow_from.iter().map(|c| c.cluster.as_str()).collect();
                for other in ["cluster1", "cluster2", "cluster3"].iter().filter(|o| !named.contains(o)) {
                    let td = snap.cluster(other).and_then(|c| c.mesh.trust_domain.clone()).expect("trust domain");
                    if istio.contains(&format!("spiffe://{td}/ns/default/sa/bookinfo-productpage")) {
                        // `note: reviews-callers in A, B: also admits ns/sa from C, D, which …`
                        let says = notes.lines().filter_map(|l| l.strip_prefix("note: reviews-callers in ")).any(|l| {
                            let Some((at, rest)) = l.split_once(": also admits default/bookinfo-productpage from ") else { return false };
                            let from = rest.split(", which").next().unwrap_or_default();
                            at.split(", ").any(|c| c == cluster) && from.split(", ").any(|c| c == *other)
                        });
                        assert!(says, "{topology}: {other} is admitted in {cluster} and the render says so: {notes}");
                    }
                }
            }
        }
    }
}

/// istioctl's codes and the meshdeck codes that report the same problem. An
/// istioctl finding whose code is not here fails the test, so the table grows with
/// what istioctl can say about the fixtures below.
const MAPPING: &[(&str, &str, &[&str])] = &[
    ("IST0101", "VirtualService", &["SUBSET_UNDEFINED", "HOST_UNKNOWN"]),
    ("IST0101", "Gateway", &["GATEWAY_NO_PODS"]),
    ("IST0109", "VirtualService", &["MULTI_OWNER"]),
    ("IST0173", "DestinationRule", &["SUBSET_NO_PODS"]),
];

/// Every error `istioctl analyze` finds in one cluster, meshdeck's analyze finds
/// too: hand-written objects broken each way istioctl knows (a subset and a host
/// that do not exist, a subset that selects no pods, two VirtualServices for one
/// host, a Gateway whose selector picks no pods) in cluster2 of the real test bed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_only_every_error_istioctl_finds_in_a_cluster_meshdeck_finds_too() {
    let Some(fleet) = common::real_fleet_only("istioctl analyze against meshdeck analyze").await else { return };
    let istioctl = istioctl();
    let kc = fleet.kubeconfig_path();
    let broken = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings-broken, namespace: default}
spec:
  host: ratings
  subsets: [{name: v9, labels: {version: v9}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-broken, namespace: default}
spec:
  hosts: [ratings]
  http:
  - match: [{uri: {prefix: /old}}]
    route: [{destination: {host: nosuch}}]
  - route: [{destination: {host: ratings, subset: v8}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings-again, namespace: default}
spec:
  hosts: [ratings]
  http: [{route: [{destination: {host: ratings}}]}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: nowhere, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
"#;
    let home = tempfile::tempdir().expect("tmp");
    common::kubectl_ok(&common::kubectl(&kc, home.path(), &["--context", "cluster2", "apply", "-f", "-"], Some(broken)));
    let text = analyze_live(&istioctl, &kc, "cluster2");
    let errors: Vec<(String, String, String)> = text
        .lines()
        .filter(|l| l.starts_with("Error ["))
        .filter_map(|l| {
            // Error [IST0101] (VirtualService default/ratings-broken) Referenced host not found: "nosuch"
            let code = l.split('[').nth(1)?.split(']').next()?.to_string();
            let object = l.split('(').nth(1)?.split(')').next()?;
            let (kind, name) = object.split_once(' ')?;
            Some((code, kind.to_string(), name.rsplit('/').next()?.split('.').next()?.to_string()))
        })
        .collect();
    assert!(errors.len() >= 5, "istioctl found the broken objects:\n{text}");
    let mut last = String::new();
    for _ in 0..30 {
        let out = Command::new(env!("CARGO_BIN_EXE_meshdeck"))
            .arg("--kubeconfig")
            .arg(&kc)
            .args(["analyze", "-o", "json"])
            .output()
            .expect("meshdeck runs");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let ours: Vec<(String, String)> = v["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["clusters"].as_array().is_some_and(|c| c.iter().any(|c| c == "cluster2")))
            .map(|f| (f["code"].as_str().unwrap_or("").to_string(), f["message"].as_str().unwrap_or("").to_string()))
            .collect();
        let missing: Vec<String> = errors
            .iter()
            .filter(|(code, kind, name)| {
                let Some((_, _, mapped)) = MAPPING.iter().find(|(c, k, _)| c == code && k == kind) else { return true };
                !ours.iter().any(|(c, m)| mapped.contains(&c.as_str()) && m.contains(name.as_str()))
            })
            .map(|e| format!("{e:?}"))
            .collect();
        if missing.is_empty() {
            let unmapped: Vec<&(String, String, String)> =
                errors.iter().filter(|(c, k, _)| !MAPPING.iter().any(|(mc, mk, _)| mc == c && mk == k)).collect();
            assert!(unmapped.is_empty(), "istioctl codes with no meshdeck mapping: {unmapped:?}");
            return;
        }
        last = format!("istioctl:\n{text}\nnot found by meshdeck: {missing:?}\nmeshdeck: {ours:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("{last}");
}

/// Problems only the fleet shows: the talk's canary with cluster2's Gateway gone
/// (cluster1 still sends v3 there: NOT_EXPOSED), cluster2's reviews locked to
/// cluster3's callers (CALLER_DENIED for cluster1), and a Service declared with other
/// ports in another cluster (INCONSISTENT_SERVICE). `istioctl analyze` of each
/// cluster on its own finds nothing; meshdeck finds all three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_only_cross_cluster_problems_istioctl_cannot_see_meshdeck_finds() {
    let Some(fleet) = common::real_fleet_only("istioctl analyze against meshdeck analyze").await else { return };
    let istioctl = istioctl();
    let kc = fleet.kubeconfig_path();
    let home = tempfile::tempdir().expect("tmp");
    let meshdeck_on = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_meshdeck"))
            .arg("--kubeconfig")
            .arg(&kc)
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("MESHDECK_CONFIG_DIR", home.path())
            .env("MESHDECK_DATA_DIR", home.path())
            .output()
            .expect("meshdeck runs")
    };
    let out = meshdeck_on(&["apply", "-f", "examples/reviews-canary.yaml", "--yes"]);
    assert!(out.status.success(), "{}", common::text(&out));
    let kubectl = |context: &str, args: &[&str], stdin: Option<&str>| {
        let mut all = vec!["--context", context];
        all.extend_from_slice(args);
        common::kubectl_ok(&common::kubectl(&kc, home.path(), &all, stdin))
    };
    kubectl("cluster2", &["delete", "gateway.networking.istio.io", "reviews-canary-eastwest", "-n", "default"], None);
    kubectl(
        "cluster2",
        &["apply", "-f", "-"],
        Some(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: reviews-from-cluster3, namespace: default}\nspec:\n  selector: {matchLabels: {app: reviews}}\n  action: ALLOW\n  rules: [{from: [{source: {principals: [cluster3.local/ns/default/sa/bookinfo-productpage]}}]}]\n",
        ),
    );
    for (context, port) in [("cluster1", "http-api"), ("cluster2", "tcp-api")] {
        let svc = format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: analyzed, namespace: default, labels: {{meshdeck.dev/test: x}}}}\nspec:\n  selector: {{app: analyzed}}\n  ports: [{{name: {port}, port: 8080, targetPort: 8080}}]\n"
        );
        kubectl(context, &["apply", "-f", "-"], Some(&svc));
    }
    for context in ["cluster1", "cluster2", "cluster3"] {
        let text = analyze_live(&istioctl, &kc, context);
        assert!(findings(&text).is_empty(), "istioctl sees nothing wrong in {context} alone:\n{text}");
    }
    let mut last = String::new();
    for _ in 0..30 {
        let out = meshdeck_on(&["analyze", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        let codes: Vec<String> =
            v["findings"].as_array().expect("findings").iter().map(|f| f["code"].as_str().unwrap_or("").to_string()).collect();
        if ["NOT_EXPOSED", "CALLER_DENIED", "INCONSISTENT_SERVICE"].iter().all(|c| codes.iter().any(|x| x == c)) {
            assert_eq!(out.status.code(), Some(1), "errors fail the command");
            return;
        }
        last = common::text(&out);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("meshdeck did not find all three: {last}");
}
