//! The real test bed's mesh (`realfleet up --mesh`), for the tests of traffic
//! that really flows (data_plane.rs, canary.rs): one test at a time per binary,
//! each from a clean mesh (every part running, no faults, no routes of ours).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;

pub const REVIEWS: &str = "reviews.default.svc.cluster.local:9080";

pub static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Mesh {
    pub kubeconfig: PathBuf,
    pub control: String,
    pub parts: Value,
    pub config: tempfile::TempDir,
    pub data: tempfile::TempDir,
    pub _turn: std::sync::MutexGuard<'static, ()>,
}

/// The mesh, or None (said) where this run has none; a failure under CI=true.
pub fn mesh(what: &str) -> Option<Mesh> {
    let Ok(kc) = std::env::var("MESHDECK_TEST_MESH_KUBECONFIG") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true") || !common::real_fleet_requested(),
            "CI=true on the real pass and no mesh for {what}: tests/realfleet/test.sh starts it"
        );
        eprintln!("needs the real test bed's mesh ({what}): runs in the mesh pass of tests/realfleet/test.sh");
        return None;
    };
    let turn = TURN.lock().unwrap_or_else(|p| p.into_inner());
    let kubeconfig = PathBuf::from(kc);
    let yaml: Value = serde_saphyr::from_str(&std::fs::read_to_string(&kubeconfig).expect("mesh kubeconfig")).expect("kubeconfig");
    let control = yaml["extensions"]
        .as_array()
        .and_then(|e| e.iter().find(|x| x["name"] == "meshdeck.dev/realfleet"))
        .and_then(|x| x["extension"]["control"].as_str())
        .expect("the kubeconfig names the test bed's control endpoint")
        .to_string();
    let mut m = Mesh {
        kubeconfig,
        control: control.clone(),
        parts: Value::Null,
        config: tempfile::tempdir().expect("tmp"),
        data: tempfile::tempdir().expect("tmp"),
        _turn: turn,
    };
    // A test that failed midway: every part running, no faults, no routes of ours.
    for c in ["cluster1", "cluster2", "cluster3"] {
        for part in ["istiod", "prometheus", "node"] {
            m.control("POST", &format!("/clusters/{c}/{part}/start"));
        }
    }
    m.parts = serde_json::from_str(&m.control("GET", "/mesh")).expect("mesh JSON");
    for c in ["cluster1", "cluster2", "cluster3"] {
        for w in ["reviews-v1", "reviews-v2", "reviews-v3"] {
            m.node(c, "DELETE", &format!("/faults?workload={w}"));
        }
    }
    m.configure(&[]);
    // Each caller's proxy connects to its istiod at its first request: have them all connected.
    for c in ["cluster1", "cluster2", "cluster3"] {
        m.send(c, 1);
    }
    for c in ["cluster1", "cluster2", "cluster3"] {
        let out = m.kubectl(
            c,
            &[
                "delete",
                "virtualservices,destinationrules,serviceentries,httproutes,services,gateways.gateway.networking.k8s.io",
                "-l",
                "app.kubernetes.io/managed-by=meshdeck",
                "--wait=false",
            ],
        );
        assert!(out.status.success(), "{}", common::text(&out));
        // What a test wrote by hand (Gateway API routes, their backends, waypoints).
        let out = m.kubectl(
            c,
            &["delete", "httproutes,grpcroutes,services,gateways.gateway.networking.k8s.io", "-l", common::TEST_LABEL, "--wait=false"],
        );
        assert!(out.status.success(), "{}", common::text(&out));
        // A test that made the namespace ambient: sidecars as seeded.
        let out = m.kubectl(c, &["label", "namespace", "default", "istio-injection=enabled", "istio.io/dataplane-mode-", "--overwrite"]);
        assert!(out.status.success(), "{}", common::text(&out));
        let out = m.kubectl(c, &["label", "service", "reviews", "istio.io/use-waypoint-", "istio.io/global-"]);
        assert!(out.status.success(), "{}", common::text(&out));
    }
    Some(m)
}

/// One HTTP/1.0 exchange (no chunking): the body of a 2xx answer.
pub fn http(base: &str, method: &str, path: &str) -> String {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(120))).expect("timeout");
    write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n").expect("request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(head.starts_with("HTTP/1.0 2") || head.starts_with("HTTP/1.1 2"), "{method} {base}{path}: {answer}");
    body.to_string()
}

/// The body of a 2xx answer, or None where nothing answers.
pub fn try_http(base: &str, path: &str) -> Option<String> {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.0 2") || head.starts_with("HTTP/1.1 2")).then(|| body.to_string())
}

/// What a node's callers counted: the sum of its source-reported request counters.
pub fn source_total(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{") && l.contains("reporter=\"source\""))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, n)| n.parse::<f64>().ok()))
        .sum()
}

impl Mesh {
    /// config.yaml: every cluster's Prometheus and istiod by URL, but for the
    /// clusters in `found`, whose Prometheus meshdeck finds in the cluster.
    pub fn configure(&self, found: &[&str]) {
        let mut cfg = String::from("clusters:\n");
        for c in ["cluster1", "cluster2", "cluster3"] {
            cfg.push_str(&format!("  - context: {c}\n    istiod: {}\n", self.parts[c]["istiodMonitoring"].as_str().expect("istiod")));
            if !found.contains(&c) {
                cfg.push_str(&format!("    prometheus: {}\n", self.parts[c]["prometheus"].as_str().expect("prometheus")));
            }
        }
        std::fs::write(self.config.path().join("config.yaml"), cfg).expect("config");
    }

    pub fn control(&self, method: &str, path: &str) -> String {
        http(&self.control, method, path)
    }

    pub fn node(&self, cluster: &str, method: &str, path: &str) -> String {
        http(self.parts[cluster]["node"].as_str().expect("node"), method, path)
    }

    /// `n` requests from the cluster's caller to reviews: where they landed.
    pub fn send(&self, cluster: &str, n: usize) -> Sent {
        let v: Value = serde_json::from_str(&self.node(cluster, "POST", &format!("/send?target={REVIEWS}&n={n}"))).expect("send JSON");
        let reached =
            v["reached"].as_object().map(|m| m.iter().map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0))).collect()).unwrap_or_default();
        Sent { ok: v["ok"].as_u64().unwrap_or(0), reached, raw: v }
    }

    pub fn meshdeck(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(env!("CARGO_BIN_EXE_meshdeck"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("MESHDECK_CONFIG_DIR", self.config.path())
            .env("MESHDECK_DATA_DIR", self.data.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("meshdeck runs")
    }

    pub fn kubectl(&self, cluster: &str, args: &[&str]) -> std::process::Output {
        assert!(common::tool_available("kubectl", &["version", "--client"]), "kubectl is needed");
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--context", cluster])
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    pub fn plan(&self, name: &str, text: &str) -> PathBuf {
        let p = self.data.path().join(format!("{name}.yaml"));
        std::fs::write(&p, text).expect("plan");
        p
    }

    pub fn apply(&self, plan: &Path) -> String {
        let out = self.meshdeck(&["apply", "-f", plan.to_str().expect("utf8"), "--yes"]);
        assert!(out.status.success(), "{}", common::text(&out));
        common::text(&out)
    }

    /// `meshdeck traffic` as JSON (and its exit status).
    pub fn traffic(&self, args: &[&str]) -> (Value, std::process::ExitStatus, String) {
        let mut all = vec!["traffic", "-o", "json"];
        all.extend_from_slice(args);
        let out = self.meshdeck(&all);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
        (v, out.status, common::text(&out))
    }

    /// Wait until every running Prometheus holds what its cluster's callers
    /// counted so far (the node's own /metrics), not a guessed scrape delay.
    pub fn scraped(&self) {
        for c in ["cluster1", "cluster2", "cluster3"] {
            let counted = source_total(&self.node(c, "GET", "/metrics"));
            let prom = self.parts[c]["prometheus"].as_str().expect("prometheus");
            let query = "/api/v1/query?query=sum(istio_requests_total%7Breporter%3D%22source%22%7D)";
            let started = Instant::now();
            // A stopped Prometheus (a test's fault) has nothing to wait for.
            while let Some(seen) = try_http(prom, query).map(|b| {
                let v: Value = serde_json::from_str(&b).unwrap_or_default();
                v["data"]["result"][0]["value"][1].as_str().and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0)
            }) {
                if seen >= counted {
                    break;
                }
                assert!(started.elapsed() < Duration::from_secs(30), "{c}: Prometheus has {seen} of {counted} requests after 30 s");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

pub struct Sent {
    pub ok: u64,
    pub reached: BTreeMap<String, u64>,
    pub raw: Value,
}

impl Sent {
    pub fn share(&self, at: &str) -> f64 {
        *self.reached.get(at).unwrap_or(&0) as f64 / self.ok.max(1) as f64
    }
}

/// The count is what a binomial(n, p) gives within its 99.9% two-sided bound.
pub fn within_binomial(count: u64, n: u64, p: f64) -> bool {
    let (n, k) = (n as f64, count as f64);
    let sd = (n * p * (1.0 - p)).sqrt();
    (k - n * p).abs() <= 3.2905 * sd + 1.0
}

pub const CANARY: &str = "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {name: reviews-canary}\nspec:\n  service: reviews.default\n  from: {clusters: [cluster1]}\n  split:\n    - {cluster: cluster2, version: v3, weight: 75}\n    - {cluster: cluster1, version: v1, weight: 15}\n    - {cluster: cluster1, version: v2, weight: 10}\n";

/// Send batches until `landed` says the route is in force; the time it took.
pub fn until(m: &Mesh, cluster: &str, limit: Duration, landed: impl Fn(&Sent) -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if landed(&m.send(cluster, 200)) {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// POST, the body of a 2xx answer, or None (a sender in the background must not panic).
pub fn try_post(base: &str, path: &str) -> Option<String> {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n").ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.0 2") || head.starts_with("HTTP/1.1 2")).then(|| body.to_string())
}
