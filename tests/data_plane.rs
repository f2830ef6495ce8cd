//! Traffic that really flows (issue #32): the real test bed's mesh
//! (`realfleet up --mesh`: Istio's istiod per cluster reading its API server and,
//! through remote secrets, the others'; proxyless gRPC workloads and callers;
//! a Prometheus per cluster). Requests go through `xds:///`, so only Istio's and
//! gRPC's own code decides where each lands; the tests count where they landed.
//!
//! Every test here needs that mesh: the mesh pass of tests/realfleet/test.sh
//! sets MESHDECK_TEST_MESH_KUBECONFIG. On any other run each test says it did
//! not run; with CI=true and no mesh, it fails.

mod common;

use std::time::{Duration, Instant};

use common::mesh::{CANARY, Sent, mesh, until, within_binomial};
use serde_json::Value;

#[test]
fn mesh_only_the_talks_canary_lands_75_15_10_and_traffic_reports_what_callers_counted() {
    let Some(m) = mesh("the talk's canary on real requests") else { return };
    // Istio's default route first: every reviews endpoint of the fleet, about a seventh each.
    let before = m.send("cluster1", 7000);
    assert_eq!(before.ok, 7000, "{}", before.raw);
    assert!(within_binomial(before.reached["reviews-v3@cluster2"], 7000, 1.0 / 7.0), "{}", before.raw);

    let plan = m.plan("reviews-canary", CANARY);
    let applied_at = Instant::now();
    let said = m.apply(&plan);
    assert!(said.contains("push: cluster1: pushed to 1/1 proxies"), "{said}");
    let canary =
        |s: &Sent| s.reached.keys().all(|k| ["reviews-v3@cluster2", "reviews-v1@cluster1", "reviews-v2@cluster1"].contains(&k.as_str()));
    let first = until(&m, "cluster1", Duration::from_secs(10), canary).expect("the canary route in force within 10 s");
    eprintln!(
        "apply to the first requests on the new route: {:.2}s (of which after meshdeck exited: {:.2}s)",
        applied_at.elapsed().as_secs_f64(),
        first.as_secs_f64()
    );

    // The 4 s window below starts after the default route's requests ended.
    std::thread::sleep(Duration::from_secs(4));
    let sent = m.send("cluster1", 10_000);
    assert_eq!(sent.ok, 10_000, "{}", sent.raw);
    for (at, p) in [("reviews-v3@cluster2", 0.75), ("reviews-v1@cluster1", 0.15), ("reviews-v2@cluster1", 0.10)] {
        assert!(
            within_binomial(sent.reached[at], 10_000, p),
            "{at}: {} of 10000, not within the 99.9% bound of {p}: {}",
            sent.reached[at],
            sent.raw
        );
    }
    m.scraped();
    // The window covers this batch and nothing older than the canary's own requests.
    let asked = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    let (v, status, text) = m.traffic(&["reviews", "--from", "cluster1", "--window", "4s"]);
    assert!(status.success(), "asked at {asked:.3}: {text}");
    let route = &v["routes"][0];
    assert_eq!(route["metrics"], "ok", "{text}");
    assert_eq!(route["drift"], false, "{text}");
    let counted: u64 = sent.reached.values().sum();
    for d in route["destinations"].as_array().expect("destinations") {
        let at = format!("reviews-{}@{}", d["version"].as_str().unwrap_or("?"), d["cluster"].as_str().unwrap_or("?"));
        let callers = 100.0 * sent.share(&at);
        let observed = d["observed"].as_f64().expect("observed");
        assert!((observed - callers).abs() <= 1.0, "{at}: Prometheus says {observed:.2}%, the callers counted {callers:.2}%: {text}");
    }
    assert!(route["requests"].as_u64().expect("requests") >= counted, "{text}");
    // A minute's window also holds the 7000 requests of the default route before
    // the apply: the count starts once the canary was written (and pushed), so
    // the split is the canary's and no drift is flagged.
    let (v, status, text) = m.traffic(&["reviews", "--from", "cluster1", "--window", "60s"]);
    assert!(status.success(), "{text}");
    let route = &v["routes"][0];
    assert!(route["error"].as_str().is_some_and(|e| e.contains("counted since the route in force was written")), "{text}");
    for d in route["destinations"].as_array().expect("destinations") {
        let at = format!("reviews-{}@{}", d["version"].as_str().unwrap_or("?"), d["cluster"].as_str().unwrap_or("?"));
        let observed = d["observed"].as_f64().expect("observed");
        assert!((observed - 100.0 * sent.share(&at)).abs() <= 1.0, "{at}: {observed:.2}% over the canary's time: {text}");
    }
    let table = common::text(&m.meshdeck(&["traffic", "reviews", "--from", "cluster1", "--window", "4s"]));
    eprintln!("{table}");
    let row = table.lines().find(|l| l.contains("cluster2 v3")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("75.0%") && row.contains("100.0%"), "{table}");

    // Rollback: Istio's default route again, v3 back to about a seventh.
    let id = String::from_utf8(m.meshdeck(&["history", "-o", "json"]).stdout).expect("utf8");
    let id = serde_json::from_str::<Value>(&id).expect("history")[0]["id"].as_str().expect("id").to_string();
    let out = m.meshdeck(&["rollback", &id, "--yes"]);
    assert!(out.status.success(), "{}", common::text(&out));
    let back = until(&m, "cluster1", Duration::from_secs(10), |s| s.reached.len() == 7);
    assert!(back.is_some(), "after the rollback requests reach every version of every cluster again");
    let after = m.send("cluster1", 7000);
    assert!(within_binomial(after.reached["reviews-v3@cluster2"], 7000, 1.0 / 7.0), "{}", after.raw);
}

#[test]
fn mesh_only_a_failover_moves_off_a_dead_first_tier_and_comes_back() {
    let Some(m) = mesh("failover on real requests") else { return };
    let plan = m.plan(
        "reviews-failover",
        "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: reviews-failover}\nspec:\n  service: reviews.default\n  from: {clusters: [cluster1]}\n  failover:\n    - {cluster: cluster1, version: v1}\n    - {cluster: cluster2, version: v1}\n    - {cluster: cluster3, version: v1}\n  outlierDetection: {consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 30s}\n",
    );
    let said = m.apply(&plan);
    assert!(said.contains("pushed to 1/1"), "{said}");
    let local = |s: &Sent| s.reached.keys().all(|k| k == "reviews-v1@cluster1") && s.ok > 0;
    until(&m, "cluster1", Duration::from_secs(10), local).expect("the first tier takes every request");

    // The first tier's pods die: requests move on within one outlier interval and a push.
    m.node("cluster1", "POST", "/faults?workload=reviews-v1&kill=1");
    let moved = until(&m, "cluster1", Duration::from_secs(3), |s| s.ok == 200 && !s.reached.contains_key("reviews-v1@cluster1"));
    let moved = moved.expect("requests left the dead first tier within 3 s");
    let s = m.send("cluster1", 1000);
    assert_eq!(s.ok, 1000, "{}", s.raw);
    // Istio orders the caller's tier first and the rest as one priority (the render says so).
    assert!(s.reached.keys().all(|k| k == "reviews-v1@cluster2" || k == "reviews-v1@cluster3"), "{}", s.raw);
    eprintln!("moved off the dead tier in {:.2}s", moved.as_secs_f64());

    // Back: gRPC reconnects with its backoff, then the first tier takes everything again.
    m.node("cluster1", "DELETE", "/faults?workload=reviews-v1");
    let back = until(&m, "cluster1", Duration::from_secs(90), local).expect("back to the first tier within gRPC's reconnect backoff");
    eprintln!("back on the first tier {:.2}s after it was restored", back.as_secs_f64());
}

#[test]
fn mesh_only_push_status_names_a_cluster_whose_istiod_is_down_and_it_catches_up_when_back() {
    let Some(m) = mesh("push status with istiod down") else { return };
    // The caller's proxy connects at its first request.
    assert!(m.send("cluster1", 10).ok == 10);
    let out = m.meshdeck(&["proxy-status"]);
    let text = common::text(&out);
    assert!(text.contains("productpage-v1") && text.contains("SYNCED"), "{text}");

    m.control("POST", "/clusters/cluster1/istiod/stop");
    let plan = m.plan("reviews-canary", CANARY);
    let said = m.apply(&plan);
    assert!(said.contains("push: cluster1: not pushed: istiod"), "the write is stored, and said not pushed: {said}");
    // Stored, not pushed: the caller still follows what it had.
    let s = m.send("cluster1", 700);
    assert_eq!(s.reached.len(), 7, "{}", s.raw);
    let out = m.meshdeck(&["proxy-status"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    assert!(common::text(&out).contains("cluster1") && common::text(&out).contains("unknown"), "{}", common::text(&out));

    m.control("POST", "/clusters/cluster1/istiod/start");
    let canary = |s: &Sent| {
        s.ok == 200 && s.reached.keys().all(|k| ["reviews-v3@cluster2", "reviews-v1@cluster1", "reviews-v2@cluster1"].contains(&k.as_str()))
    };
    let caught = until(&m, "cluster1", Duration::from_secs(60), canary).expect("istiod back: the proxy reconnects and gets the canary");
    eprintln!("istiod restarted: the canary in force after {:.2}s", caught.as_secs_f64());
}

#[test]
fn mesh_only_a_prometheus_down_is_no_metrics_for_its_cluster_while_the_others_keep_counting() {
    let Some(m) = mesh("a Prometheus down") else { return };
    m.control("POST", "/clusters/cluster1/prometheus/stop");
    let stopped = Instant::now();
    m.send("cluster1", 500);
    let c2_sent = m.send("cluster2", 500);
    assert_eq!(c2_sent.ok, 500, "{}", c2_sent.raw);
    m.scraped();
    let started = Instant::now();
    let (v, status, text) = m.traffic(&["reviews", "--window", "10s"]);
    assert!(started.elapsed() < Duration::from_secs(8), "a dark Prometheus is an answer, not a stall");
    assert_eq!(status.code(), Some(1), "{text}");
    let of = |from: &str| v["routes"].as_array().expect("routes").iter().find(|r| r["from"] == from).cloned().expect(from);
    assert_eq!(of("cluster1")["metrics"], "unreachable", "{text}");
    assert!(of("cluster1")["destinations"].as_array().expect("d").iter().all(|d| d["observed"].is_null()), "unknown, not zero: {text}");
    let c2 = of("cluster2");
    assert_eq!(c2["metrics"], "ok", "{text}");
    assert!(c2["requests"].as_u64().expect("requests") >= 500, "{text}");

    // Back, with a gap at the window's start: the count begins where samples
    // resume. An instant query's lookback would reach before the gap and count
    // the 500 sent while it was down (and more) into a window they are not in.
    std::thread::sleep(Duration::from_secs(3));
    m.control("POST", "/clusters/cluster1/prometheus/start");
    m.scraped();
    let after = m.send("cluster1", 300);
    assert_eq!(after.ok, 300, "{}", after.raw);
    m.scraped();
    let window = format!("{}s", stopped.elapsed().as_secs() - 4);
    let (v, _, text) = m.traffic(&["reviews", "--from", "cluster1", "--window", &window]);
    let r = &v["routes"][0];
    assert_eq!(r["metrics"], "ok", "{text}");
    assert_eq!(r["requests"], 300, "only what was sent after Prometheus resumed: {text}");
    assert!(r["error"].as_str().is_some_and(|e| e.contains("counted over the last")), "the short count is said: {text}");
}

#[test]
fn mesh_only_a_fresh_callers_first_requests_count_whole() {
    let Some(m) = mesh("a fresh caller's first requests") else { return };
    // A restarted node: every series its caller exports is born from here on,
    // most of them at one scrape, while Prometheus scraped the target all along.
    m.control("POST", "/clusters/cluster2/node/stop");
    m.control("POST", "/clusters/cluster2/node/start");
    // The window starts after the old process's last samples are out of reach
    // (a counter that restarts below its old value is no reset to tell) and
    // before the first request: between restart + 6 s and the marker at + 10 s,
    // with 2 s for meshdeck to start.
    std::thread::sleep(Duration::from_secs(10));
    let marker = Instant::now();
    let first = m.send("cluster2", 1);
    let burst = m.send("cluster2", 500);
    assert_eq!((first.ok, burst.ok), (1, 500), "{} {}", first.raw, burst.raw);
    m.scraped();
    let window = format!("{}s", marker.elapsed().as_secs_f64().ceil() as u64 + 3);
    let (v, _, text) = m.traffic(&["reviews", "--from", "cluster2", "--window", &window]);
    let r = &v["routes"][0];
    assert_eq!(r["metrics"], "ok", "{text}");
    assert_eq!(r["requests"], 501, "series born in the window count from zero: {text}");
    assert!(r["error"].is_null(), "Prometheus scraped the whole window: {text}");
}

#[test]
fn mesh_only_a_prometheus_found_in_the_cluster_is_read_through_the_api_servers_service_proxy() {
    let Some(m) = mesh("Prometheus through the service proxy") else { return };
    // cluster2's Prometheus is not in config.yaml: meshdeck finds Service
    // monitoring/prometheus and reads it through the API server, with the
    // cluster's own credentials (the bed's API server reaches the pod through
    // its pod network stand-in, as a real one reaches a pod).
    m.configure(&["cluster2"]);
    // A window that starts after the setup's first request was scraped and
    // before these (2 s for meshdeck to start): exactly what is sent here.
    std::thread::sleep(Duration::from_secs(5));
    let marker = Instant::now();
    let sent = m.send("cluster2", 400);
    assert_eq!(sent.ok, 400, "{}", sent.raw);
    m.scraped();
    let window = format!("{}s", marker.elapsed().as_secs_f64().ceil() as u64 + 2);
    let (v, _, text) = m.traffic(&["reviews", "--from", "cluster2", "--window", &window]);
    let r = &v["routes"][0];
    assert_eq!(r["metrics"], "ok", "{text}");
    assert_eq!(r["source"], "service monitoring/prometheus:9090 (through the API server)", "{text}");
    assert_eq!(r["requests"], 400, "what the caller counted, through the proxy: {text}");
    // Stopped: the API server's proxy answers an error, which is "unreachable", not zero.
    m.control("POST", "/clusters/cluster2/prometheus/stop");
    let (v, status, text) = m.traffic(&["reviews", "--from", "cluster2", "--window", "10s"]);
    assert_eq!(status.code(), Some(1), "{text}");
    assert_eq!(v["routes"][0]["metrics"], "unreachable", "{text}");
    assert!(v["routes"][0]["error"].as_str().is_some_and(|e| e.contains("through the API server")), "{text}");
}

/// Gateway API on real requests (issue #34): `routing: gateway-api` writes an
/// HTTPRoute on reviews in cluster1 over a per-version Service; the real istiod
/// turns it into the callers' routes (and marks it Accepted), every request lands
/// on v3 in cluster2, and the rollback (past istiod's status writes) gives the
/// default route back. Then a hand-written route to a Service that only cluster2
/// declares: istiod's status says BackendNotFound while the requests arrive, and
/// `analyze` explains it.
#[test]
fn mesh_only_a_gateway_api_route_moves_real_requests_and_rolls_back() {
    let Some(m) = mesh("a Gateway API route on real requests") else { return };
    let before = m.send("cluster1", 700);
    assert_eq!(before.reached.len(), 7, "Istio's default route: every reviews endpoint: {}", before.raw);
    let plan = m.plan(
        "reviews-gamma",
        "apiVersion: meshdeck.dev/v1alpha1
kind: TrafficRoute
metadata: {name: reviews-gamma}
spec:
  service: reviews.default
  from: {clusters: [cluster1]}
  routing: gateway-api
  split:
    - {cluster: cluster2, version: v3, weight: 100}
",
    );
    m.apply(&plan);
    let only_v3 = |s: &Sent| s.reached.keys().all(|k| k == "reviews-v3@cluster2");
    until(&m, "cluster1", Duration::from_secs(15), only_v3).expect("the HTTPRoute in force within 15 s");
    let sent = m.send("cluster1", 2000);
    assert_eq!(sent.reached.get("reviews-v3@cluster2"), Some(&2000), "{}", sent.raw);
    let conditions = |name: &str| -> Vec<(String, String, String)> {
        let out = m.kubectl("cluster1", &["get", "httproute", name, "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
        v["status"]["parents"][0]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["type"].as_str().unwrap_or("").into(),
                    c["status"].as_str().unwrap_or("").into(),
                    c["reason"].as_str().unwrap_or("").into(),
                )
            })
            .collect()
    };
    let mut status = Vec::new();
    for _ in 0..100 {
        status = conditions("reviews-gamma");
        if !status.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(status.contains(&("Accepted".into(), "True".into(), "Accepted".into())), "{status:?}");
    assert!(
        status.contains(&("ResolvedRefs".into(), "True".into(), "ResolvedRefs".into())),
        "the backend is declared in cluster1 too: {status:?}"
    );

    // Imported back, the route is the plan in the API it is written in.
    let out = m.meshdeck(&["import", "reviews", "--from", "cluster1"]);
    assert!(out.status.success(), "{}", common::text(&out));
    let imported = String::from_utf8_lossy(&out.stdout).into_owned();
    for line in ["name: reviews-gamma", "routing: gateway-api", "cluster: cluster2", "version: v3", "weight: 100"] {
        assert!(imported.contains(line), "{line}: {imported}");
    }
    let out = m.meshdeck(&["apply", "-f", m.plan("imported", &imported).to_str().expect("utf8"), "--dry-run"]);
    let said = common::text(&out);
    assert!(
        said.contains("HTTPRoute/default/reviews-gamma unchanged") && !said.contains(" create") && !said.contains(" update"),
        "the imported plan renders what is there: {said}"
    );

    let out = m.meshdeck(&["history", "-o", "json"]);
    let records: Value = serde_json::from_slice(&out.stdout).expect("history");
    let id = records[0]["id"].as_str().expect("id").to_string();
    let out = m.meshdeck(&["rollback", &id, "--yes"]);
    assert!(out.status.success(), "istiod's status write is no change of ours: {}", common::text(&out));
    until(&m, "cluster1", Duration::from_secs(15), |s| s.reached.len() == 7).expect("the default route back within 15 s");

    // A route whose backend only cluster2 declares.
    let label = common::TEST_LABEL;
    let only_there = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: reviews-only-there, namespace: default, labels: {{{label}: x}}}}\nspec:\n  selector: {{app: reviews, version: v3}}\n  ports: [{{name: http, port: 9080, targetPort: 9080}}]\n"
    );
    let by_hand = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: by-hand, namespace: default, labels: {{{label}: x}}}}\nspec:\n  parentRefs: [{{group: \"\", kind: Service, name: reviews, port: 9080}}]\n  rules: [{{backendRefs: [{{name: reviews-only-there, port: 9080, weight: 50}}, {{name: reviews, port: 9080, weight: 50}}]}}]\n"
    );
    for (cluster, text) in [("cluster2", &only_there), ("cluster1", &by_hand)] {
        let file = m.plan(&format!("by-hand-{cluster}"), text);
        let out = m.kubectl(cluster, &["apply", "-f", file.to_str().expect("utf8")]);
        assert!(out.status.success(), "{}", common::text(&out));
    }
    // Half to what only cluster2 declares (v3 there), half to reviews everywhere.
    until(&m, "cluster1", Duration::from_secs(15), |s| s.share("reviews-v3@cluster2") > 0.5).expect("the hand-written route in force");
    // What meshdeck says the route does, as Istio would read it, against where real requests land:
    // each destination's weight shared by its ready pods.
    let out = m.meshdeck(&["routes", "reviews", "--from", "cluster1", "-o", "json"]);
    let routes: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
    let route = &routes["routes"][0];
    assert_eq!(route["virtualService"], "HTTPRoute default/by-hand", "{route:#}");
    let mut predicted: std::collections::BTreeMap<String, f64> = Default::default();
    for d in route["rules"][0]["destinations"].as_array().expect("destinations") {
        let targets = d["targets"].as_array().expect("targets");
        let ready: f64 = targets.iter().map(|t| t["ready"].as_f64().unwrap_or(0.0)).sum();
        for t in targets {
            let at = format!("reviews-{}@{}", t["version"].as_str().unwrap_or("?"), t["cluster"].as_str().unwrap_or("?"));
            *predicted.entry(at).or_default() += d["weight"].as_f64().unwrap_or(0.0) / 100.0 * t["ready"].as_f64().unwrap_or(0.0) / ready;
        }
    }
    let sent = m.send("cluster1", 7000);
    assert_eq!(sent.ok, 7000, "{}", sent.raw);
    assert_eq!(predicted.keys().collect::<Vec<_>>(), sent.reached.keys().collect::<Vec<_>>(), "{predicted:?} {}", sent.raw);
    for (at, p) in &predicted {
        assert!(within_binomial(sent.reached[at], 7000, *p), "{at}: {} of 7000, meshdeck says {p:.3}: {}", sent.reached[at], sent.raw);
    }
    let mut status = Vec::new();
    for _ in 0..100 {
        status = conditions("by-hand");
        if status.iter().any(|c| c.0 == "ResolvedRefs") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(status.contains(&("ResolvedRefs".into(), "False".into(), "BackendNotFound".into())), "istio#60971: {status:?}");
    let out = m.meshdeck(&["analyze", "-o", "json"]);
    let findings: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
    let local = findings["findings"].as_array().into_iter().flatten().find(|f| f["code"] == "ROUTE_STATUS_LOCAL").expect("explained");
    assert_eq!(
        local["message"],
        "HTTPRoute default/by-hand in cluster1 says backend reviews-only-there.default is not found, but it runs in cluster2, whose endpoints cluster1's istiod reads: the status judges one cluster only; traffic reaches it"
    );
    for (cluster, kind, name) in [("cluster1", "httproute", "by-hand"), ("cluster2", "service", "reviews-only-there")] {
        let out = m.kubectl(cluster, &["delete", kind, name]);
        assert!(out.status.success(), "{}", common::text(&out));
    }
}

/// A hand-written GRPCRoute on reviews in cluster1 (issue #34), read as Istio reads
/// it: its first rule takes another method's calls, its second the caller's own
/// method `/meshdeck.testbed.Echo/Call` (each an exact path) to a Service of v3 only.
/// The rule meshdeck shows for that path sends where real requests land. (A service
/// match alone is a path prefix ending in `/`, which Istio sends as Envoy's
/// `path_separated_prefix`: the proxyless gRPC client rejects the whole route
/// configuration, so the bed's callers cannot follow one.)
#[test]
fn mesh_only_a_hand_written_grpcroute_is_followed_as_meshdeck_reads_it() {
    let Some(m) = mesh("a GRPCRoute on real requests") else { return };
    let label = common::TEST_LABEL;
    let v3 = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: reviews-grpc-v3, namespace: default, labels: {{{label}: x}}}}\nspec:\n  selector: {{app: reviews, version: v3}}\n  ports: [{{name: http, port: 9080, targetPort: 9080}}]\n"
    );
    let route = format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: by-grpc, namespace: default, labels: {{{label}: x}}}}
spec:
  parentRefs: [{{group: \"\", kind: Service, name: reviews, port: 9080}}]
  rules:
    - matches: [{{method: {{service: meshdeck.testbed.Echo, method: Other}}}}]
      backendRefs: [{{name: reviews, port: 9080}}]
    - matches: [{{method: {{service: meshdeck.testbed.Echo, method: Call}}}}]
      backendRefs: [{{name: reviews-grpc-v3, port: 9080}}]
"
    );
    for (cluster, name, text) in [("cluster1", "v3-1", &v3), ("cluster2", "v3-2", &v3), ("cluster1", "by-grpc", &route)] {
        let file = m.plan(name, text);
        let out = m.kubectl(cluster, &["apply", "-f", file.to_str().expect("utf8")]);
        assert!(out.status.success(), "{cluster}: {}", common::text(&out));
    }
    until(&m, "cluster1", Duration::from_secs(15), |s| s.reached.keys().all(|k| k == "reviews-v3@cluster2"))
        .expect("the GRPCRoute in force");
    let sent = m.send("cluster1", 1000);
    assert_eq!(sent.reached.get("reviews-v3@cluster2"), Some(&1000), "{}", sent.raw);
    let out = m.meshdeck(&["routes", "reviews", "--from", "cluster1", "-o", "json"]);
    let routes: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
    let route = &routes["routes"][0];
    assert_eq!(route["virtualService"], "GRPCRoute default/by-grpc", "{route:#}");
    let rules = route["rules"].as_array().expect("rules");
    let matching: Vec<&Value> = rules
        .iter()
        .filter(|r| {
            r["matches"].as_array().into_iter().flatten().any(|m| m.as_str().is_some_and(|m| m.contains("/meshdeck.testbed.Echo/Call")))
        })
        .collect();
    assert_eq!(matching.len(), 1, "one rule takes the caller's method: {route:#}");
    let predicted: std::collections::BTreeSet<String> = matching[0]["destinations"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|d| d["targets"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["ready"].as_u64().unwrap_or(0) > 0)
        .map(|t| format!("reviews-{}@{}", t["version"].as_str().unwrap_or("?"), t["cluster"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(predicted.iter().collect::<Vec<_>>(), sent.reached.keys().collect::<Vec<_>>(), "{route:#} {}", sent.raw);
    assert!(
        rules[0]["matches"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m.as_str().is_some_and(|m| m.contains("/meshdeck.testbed.Echo/Other"))),
        "{route:#}"
    );
}

/// The talk's canary on an ambient fleet (issue #34): reviews' namespace ambient in
/// every cluster and no waypoint, the canary rendered on the Gateway API path by
/// default (the waypoint of one name in each cluster of the route and reviews
/// labelled to use it, HTTPRoute, per-version Services, v3 global), applied to the
/// real API servers, and `analyze` finds nothing of Gateway API or ambient mode to say.
/// (The bed runs no ztunnel or waypoint: requests are not asked to follow it.)
#[test]
fn mesh_only_the_talks_canary_on_an_ambient_fleet_applies_and_analyzes_clean() {
    let Some(m) = mesh("the talk's canary on an ambient fleet") else { return };
    for c in ["cluster1", "cluster2", "cluster3"] {
        let out = m.kubectl(c, &["label", "namespace", "default", "istio-injection-", "istio.io/dataplane-mode=ambient"]);
        assert!(out.status.success(), "{c}: {}", common::text(&out));
    }
    let plan = m.plan("reviews-canary", CANARY);
    let said = m.apply(&plan);
    assert!(said.contains("routing: reviews-canary: gateway-api (auto: ambient in cluster1)"), "{said}");
    // The waypoint, one name in each cluster of the route, global as the route crosses clusters.
    for c in ["cluster1", "cluster2"] {
        let out = m.kubectl(c, &["get", "gateways.gateway.networking.k8s.io/waypoint", "-o", "json"]);
        assert!(out.status.success(), "{c}: {}", common::text(&out));
        let w: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(w["spec"]["gatewayClassName"], "istio-waypoint");
        assert_eq!(w["spec"]["infrastructure"]["labels"]["istio.io/global"], "true");
        let out = m.kubectl(c, &["get", "service/reviews", "-o", "jsonpath={.metadata.labels.istio\\.io/use-waypoint}"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "waypoint", "{c}: {}", common::text(&out));
    }
    let out = m.kubectl("cluster3", &["get", "gateways.gateway.networking.k8s.io", "-o", "name"]);
    assert!(out.stdout.is_empty(), "cluster3 is not in the route: {}", common::text(&out));
    for (c, object) in [
        ("cluster1", "httproute/reviews-canary"),
        ("cluster1", "service/reviews-v1"),
        ("cluster1", "service/reviews-v3"),
        ("cluster2", "service/reviews-v3"),
    ] {
        let out = m.kubectl(c, &["get", object, "-o", "json"]);
        assert!(out.status.success(), "{c} {object}: {}", common::text(&out));
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        let global = v["metadata"]["labels"]["istio.io/global"] == "true";
        assert_eq!(global, object.ends_with("reviews-v3"), "{c} {object}: only v3, reached across clusters, is global");
    }
    let out = m.meshdeck(&["analyze", "-o", "json"]);
    let findings: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
    let ours: Vec<&Value> = findings["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["severity"] != "info")
        .filter(|f| {
            f["service"] == "reviews.default"
                || f["code"].as_str().is_some_and(|c| c.contains("WAYPOINT") || c.contains("ROUTING") || c.contains("AMBIENT"))
        })
        .collect();
    assert!(ours.is_empty(), "analyze is clean for reviews: {ours:#?}");
    let out = m.meshdeck(&["routes", "reviews", "--from", "cluster1", "-o", "json"]);
    let routes: Value = serde_json::from_slice(&out.stdout).expect("routes");
    assert_eq!(routes["routes"][0]["virtualService"], "HTTPRoute default/reviews-canary", "{routes:#}");
}
