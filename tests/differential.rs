//! How faithful is the sim: one scripted sequence of requests against a sim
//! cluster (with Istio's real CRDs) and a real one (the test bed), answers
//! compared after normalising uids, times, resourceVersions and addresses.
//! Every difference found is listed in tests/fixtures/sim-differences.txt (and
//! summarised in README, "How the sim differs from a real API server"): a new
//! difference, or one the sim no longer has, fails this test until the list is
//! updated. Real-only: it needs the test bed (MESHDECK_TEST_FLEET=real).

mod common;

use std::collections::BTreeSet;

use kube::Client;
use meshdeck_sim::SimConfig;
use serde_json::{Value, json};

/// One request of the script: what it does, and how to read the answer.
struct Step {
    name: &'static str,
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Option<Value>,
    /// Compare the answer's whole (normalised) body, or only its shape (the set of JSON paths).
    shape_only: bool,
}

fn step(name: &'static str, method: &'static str, path: &str, body: Option<Value>) -> Step {
    let content_type = match method {
        "PATCH" => "application/apply-patch+yaml",
        _ => "application/json",
    };
    Step { name, method, path: path.to_string(), content_type, body, shape_only: false }
}

fn shape(mut s: Step) -> Step {
    s.shape_only = true;
    s
}

const VS: &str = "/apis/networking.istio.io/v1/namespaces/default/virtualservices";

fn vs(weight: Value) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": "diff-reviews", "namespace": "default"},
           "spec": {"hosts": ["reviews"], "http": [{"route": [
               {"destination": {"host": "reviews", "subset": "v1"}, "weight": weight},
               {"destination": {"host": "reviews", "subset": "v2"}, "weight": 20}]}]}})
}

fn script() -> Vec<Step> {
    let apply = |mgr: &str, force: bool, dry: bool| {
        let mut q = format!("{VS}/diff-reviews?fieldManager={mgr}");
        if force {
            q.push_str("&force=true");
        }
        if dry {
            q.push_str("&dryRun=All");
        }
        q
    };
    let mut conflicting = vs(json!(50));
    conflicting["spec"]["http"][0]["route"][1]["weight"] = json!(50);
    let mut stale = vs(json!(80));
    stale["metadata"]["resourceVersion"] = json!("1");
    let mut bad_weight = vs(json!("ten"));
    bad_weight["metadata"]["name"] = json!("diff-bad");
    let both = json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
        "metadata": {"name": "diff-cel", "namespace": "default"},
        "spec": {"hosts": ["x.example.com"], "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}], "resolution": "STATIC",
                 "workloadSelector": {"labels": {"app": "x"}}, "endpoints": [{"address": "192.0.2.1"}]}});
    let ap = json!({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
        "metadata": {"name": "diff-ap", "namespace": "default"}, "spec": {}});
    vec![
        shape(step("version", "GET", "/version", None)),
        step("core API versions", "GET", "/api", None),
        step("networking.istio.io/v1 resources", "GET", "/apis/networking.istio.io/v1", None),
        step("server-side apply creates", "PATCH", &apply("alice", false, false), Some(vs(json!(80)))),
        step("the same apply again", "PATCH", &apply("alice", false, false), Some(vs(json!(80)))),
        step("another manager conflicts", "PATCH", &apply("bob", false, false), Some(conflicting.clone())),
        step("a forced apply on a dry run", "PATCH", &apply("bob", true, true), Some(conflicting)),
        step("get after the dry run", "GET", &format!("{VS}/diff-reviews"), None),
        step("create of an existing name", "POST", VS, Some(vs(json!(80)))),
        step("update with a stale resourceVersion", "PUT", &format!("{VS}/diff-reviews"), Some(stale)),
        step("a schema violation", "POST", VS, Some(bad_weight)),
        step("a CEL rule violation", "POST", "/apis/networking.istio.io/v1/namespaces/default/serviceentries", Some(both)),
        step("get of a missing object", "GET", &format!("{VS}/no-such"), None),
        step("a dry-run delete", "DELETE", &format!("{VS}/diff-reviews?dryRun=All"), None),
        step("delete", "DELETE", &format!("{VS}/diff-reviews"), None),
        step("a watch from a compacted resourceVersion", "GET", &format!("{VS}?watch=true&resourceVersion=1&timeoutSeconds=1"), None),
        step("forbidden for the restricted user", "POST", "/apis/security.istio.io/v1/namespaces/default/authorizationpolicies", Some(ap)),
        shape(step("a bookinfo pod", "GET", "/api/v1/namespaces/default/pods?labelSelector=app%3Dreviews%2Cversion%3Dv1", None)),
        shape(step("a bookinfo Deployment", "GET", "/apis/apps/v1/namespaces/default/deployments/reviews-v1", None)),
        shape(step("the reviews Service", "GET", "/api/v1/namespaces/default/services/reviews", None)),
    ]
}

async fn send(admin: &Client, restricted: &Client, s: &Step) -> (u16, Value) {
    let client = if s.name.starts_with("forbidden") { restricted } else { admin };
    let body = s.body.as_ref().map(|b| serde_json::to_vec(b).expect("json")).unwrap_or_default();
    let req = http::Request::builder()
        .method(s.method)
        .uri(&s.path)
        .header("content-type", s.content_type)
        .header("accept", "application/json")
        .body(body)
        .expect("request");
    let resp = client.send(req.map(kube::client::Body::from)).await.expect("sent");
    let code = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body()).await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    // A watch answers with one event per line; keep the first.
    let first = if s.path.contains("watch=true") { text.lines().next().unwrap_or("") } else { &text };
    (code, serde_json::from_str(first).unwrap_or_else(|_| json!({"text": first})))
}

/// Uids, times, resourceVersions and addresses differ between any two clusters.
fn normalise(v: &mut Value) {
    if let Some(items) = v.get_mut("resources").and_then(Value::as_array_mut) {
        items.sort_by_key(|r| r["name"].as_str().unwrap_or("").to_string());
    }
    if let Some(verbs) = v.get_mut("verbs").and_then(Value::as_array_mut) {
        verbs.sort_by_key(|x| x.as_str().unwrap_or("").to_string());
    }
    if let Some(m) = v.get_mut("message").filter(|m| m.as_str().is_some_and(|s| s.starts_with("too old resource version"))) {
        *m = json!("too old resource version: *");
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                match k.as_str() {
                    "uid" | "resourceVersion" | "creationTimestamp" | "time" | "startTime" | "startedAt" | "lastTransitionTime"
                    | "lastUpdateTime" | "lastProbeTime" | "finishedAt" | "deletionTimestamp" | "podIP" | "hostIP" | "ip" | "clusterIP"
                    | "nodeName" | "containerID" | "imageID" | "gitVersion" | "gitCommit" | "buildDate" | "goVersion" | "minor"
                    | "major" | "compiler" | "platform" | "serverAddress" => {
                        if !x.is_object() && !x.is_array() {
                            *x = json!("*");
                        } else {
                            normalise(x);
                        }
                    }
                    _ => normalise(x),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(normalise),
        _ => {}
    }
}

/// Every JSON path in a value, array indices folded to `[]`.
fn paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{prefix}.{k}");
                out.insert(p.clone());
                // Which fields a manager owns is compared by the apply steps, not by shape.
                if k != "fieldsV1" {
                    paths(x, &p, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| paths(x, &format!("{prefix}[]"), out)),
        _ => {}
    }
}

/// The differences between two values, one line each.
fn differences(name: &str, sim: &Value, real: &Value, shape_only: bool, out: &mut Vec<String>) {
    if shape_only {
        let (mut a, mut b) = (BTreeSet::new(), BTreeSet::new());
        // A list answers with items; compare one item's shape.
        let pick = |v: &Value| v.get("items").and_then(|i| i.get(0)).cloned().unwrap_or_else(|| v.clone());
        paths(&pick(sim), "", &mut a);
        paths(&pick(real), "", &mut b);
        out.extend(b.difference(&a).map(|p| format!("{name}: the sim lacks {p}")));
        out.extend(a.difference(&b).map(|p| format!("{name}: only the sim has {p}")));
        return;
    }
    match (sim, real) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let n = format!("{name}.{k}");
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => differences(&n, x, y, false, out),
                    (None, Some(y)) => out.push(format!("{n}: the sim lacks it (real: {})", short(y))),
                    (Some(x), None) => out.push(format!("{n}: only the sim has it ({})", short(x))),
                    (None, None) => {}
                }
            }
        }
        // Lists of named things (discovery's resources) compare by name.
        (Value::Array(a), Value::Array(b)) if a.iter().chain(b).all(|x| x.get("name").is_some_and(Value::is_string)) && !a.is_empty() => {
            let by_name = |l: &Vec<Value>| -> std::collections::BTreeMap<String, Value> {
                l.iter().map(|x| (x["name"].as_str().unwrap_or("").to_string(), x.clone())).collect()
            };
            let (ma, mb) = (by_name(a), by_name(b));
            let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
            for k in keys {
                let n = format!("{name}[{k}]");
                match (ma.get(k), mb.get(k)) {
                    (Some(x), Some(y)) => differences(&n, x, y, false, out),
                    (None, Some(_)) => out.push(format!("{n}: the sim lacks it")),
                    (Some(_), None) => out.push(format!("{n}: only the sim has it")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                differences(&format!("{name}[{i}]"), x, y, false, out);
            }
        }
        (x, y) if x != y => out.push(format!("{name}: sim {} real {}", short(x), short(y))),
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 { format!("{}…", s.chars().take(160).collect::<String>()) } else { s }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_only_the_sim_answers_the_script_as_a_real_api_server_does() {
    let Some(real) = common::real_fleet_only("the differential check compares with a real API server").await else { return };
    let sim = common::fleet(SimConfig { crds_dir: Some(common::istio_crds_dir()), ..Default::default() }).await;
    let (sim_admin, sim_restricted) = (common::client(&sim, "cluster1").await, common::client(&sim, "cluster1-restricted").await);
    let (real_admin, real_restricted) = (real.client("cluster1").await, real.client("cluster1-restricted").await);
    let mut found = Vec::new();
    for s in script() {
        let (sim_code, mut sim_body) = send(&sim_admin, &sim_restricted, &s).await;
        let (real_code, mut real_body) = send(&real_admin, &real_restricted, &s).await;
        if sim_code != real_code {
            found.push(format!("{}: status sim {sim_code} real {real_code}", s.name));
        }
        normalise(&mut sim_body);
        normalise(&mut real_body);
        differences(s.name, &sim_body, &real_body, s.shape_only, &mut found);
    }
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sim-differences.txt");
    let listed: Vec<String> = std::fs::read_to_string(&fixture)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    if std::env::var("MESHDECK_UPDATE_DIFFERENCES").is_ok() {
        let header = "# How the sim differs from a real API server: tests/differential.rs, one line per difference.\n# Regenerate with MESHDECK_UPDATE_DIFFERENCES=1 on the real fleet; every line is either fixed in the sim or explained in README.\n";
        std::fs::write(&fixture, format!("{header}{}\n", found.join("\n"))).expect("fixture written");
        return;
    }
    let new: Vec<&String> = found.iter().filter(|f| !listed.contains(f)).collect();
    let gone: Vec<&String> = listed.iter().filter(|l| !found.contains(l)).collect();
    assert!(
        new.is_empty() && gone.is_empty(),
        "the sim's differences from a real API server changed.\nnew:\n  {}\nno longer found:\n  {}",
        new.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  "),
        gone.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ")
    );
}

/// The sim's objects are the size a real API server's are (issue #14): the seeded
/// bookinfo pods, Services and Deployments of `default`, managedFields included, are
/// within 20% of the real test bed's, byte for byte of JSON, so benchmarks on the sim
/// measure real-sized objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_only_the_sims_objects_are_real_sized() {
    let Some(real) = common::real_fleet_only("object sizes are compared with a real API server's").await else { return };
    let sim = common::fleet(SimConfig { crds_dir: Some(common::istio_crds_dir()), ..Default::default() }).await;
    let (sim_client, real_client) = (common::client(&sim, "cluster1").await, real.client("cluster1").await);
    for (plural, kind) in [("pods", "Pod"), ("services", "Service"), ("deployments", "Deployment")] {
        let group_version = if kind == "Deployment" { ("apps", "v1") } else { ("", "v1") };
        let ar = kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk(group_version.0, group_version.1, kind),
            plural,
        );
        let mean = |items: Vec<kube::api::DynamicObject>| -> f64 {
            // Only bookinfo's: a real cluster also has the `kubernetes` Service.
            let sizes: Vec<usize> = items
                .iter()
                .filter(|o| o.metadata.labels.as_ref().is_some_and(|l| l.contains_key("app")))
                .map(|o| serde_json::to_vec(o).map(|b| b.len()).unwrap_or(0))
                .collect();
            assert!(!sizes.is_empty(), "no bookinfo {plural}");
            sizes.iter().sum::<usize>() as f64 / sizes.len() as f64
        };
        let list = |client: kube::Client| {
            let ar = ar.clone();
            async move {
                let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(client, "default", &ar);
                api.list(&Default::default()).await.expect("list").items
            }
        };
        let (s, r) = (mean(list(sim_client.clone()).await), mean(list(real_client.clone()).await));
        let ratio = s / r;
        eprintln!("{plural}: sim {s:.0} bytes, real {r:.0} bytes per object ({ratio:.2})");
        assert!((0.8..=1.2).contains(&ratio), "{plural}: the sim's are {s:.0} bytes, a real server's {r:.0}: {ratio:.2}x");
    }
}
