//! The real kubectl against `meshdeck sim` (the binary, as a user runs it).
//! Needs kubectl on PATH: without it the test says it did not run, and fails under CI.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

struct Sim {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sim {
    fn start() -> Sim {
        let dir = tempfile::tempdir().expect("tempdir");
        let kc = dir.path().join("kubeconfig");
        let child = Command::new(env!("CARGO_BIN_EXE_meshdeck"))
            .args(["sim", "--clusters", "2", "--still", "--kubeconfig-out"])
            .arg(&kc)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("meshdeck sim starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kc.exists() {
            assert!(Instant::now() < deadline, "sim wrote no kubeconfig within 30s");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The file is written in one call after the servers listen; wait until it parses.
        while std::fs::read_to_string(&kc).map(|t| !t.contains("current-context")).unwrap_or(true) {
            std::thread::sleep(Duration::from_millis(20));
        }
        Sim { child, dir }
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_in(args, None)
    }

    fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> Output {
        common::kubectl(&self.kubeconfig(), self.dir.path(), args, stdin)
    }
}

fn ok(out: &Output) -> String {
    common::kubectl_ok(out)
}

fn sample(name: &str) -> PathBuf {
    let crds = std::env::var("MESHDECK_ISTIO_CRDS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/istio/crds"));
    let crds = if crds.is_relative() { Path::new(env!("CARGO_MANIFEST_DIR")).join(crds) } else { crds };
    crds.join("../bookinfo/networking").join(name)
}

#[test]
fn kubectl_reads_applies_diffs_watches_and_is_refused_like_on_a_cluster() {
    if !common::tool_available("kubectl", &["version", "--client"]) {
        return;
    }
    let sim = Sim::start();
    let contexts = ok(&sim.kubectl(&["config", "get-contexts", "-o", "name"]));
    assert_eq!(contexts.lines().collect::<Vec<_>>(), ["cluster1", "cluster1-restricted", "cluster2", "cluster2-restricted"]);

    let resources = ok(&sim.kubectl(&["api-resources"]));
    for kind in ["virtualservices", "destinationrules", "serviceentries", "gateways", "authorizationpolicies", "deployments", "pods"] {
        assert!(resources.contains(kind), "api-resources lists {kind}:\n{resources}");
    }
    let wide = ok(&sim.kubectl(&["--context", "cluster2", "get", "pods", "-o", "wide", "-l", "app=reviews"]));
    assert!(wide.lines().next().is_some_and(|h| h.contains("READY") && h.contains("NODE")), "{wide}");
    assert_eq!(wide.lines().count(), 4, "cluster2: header + reviews v1, v2, v3\n{wide}");
    let versions = ok(&sim.kubectl(&[
        "--context",
        "cluster2",
        "get",
        "pods",
        "-A",
        "-l",
        "app=reviews",
        "-o",
        "jsonpath={.items[*].metadata.labels.version}",
    ]));
    assert_eq!(versions, "v1 v2 v3");
    let json = ok(&sim.kubectl(&["get", "svc", "reviews", "-o", "json"]));
    let svc: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9080);

    let file = sample("virtual-service-reviews-80-20.yaml");
    let file = file.to_str().expect("utf8 path");
    assert!(ok(&sim.kubectl(&["apply", "--server-side", "-f", file])).contains("serverside-applied"));
    let rv1 = ok(&sim.kubectl(&["get", "vs", "reviews", "-o", "jsonpath={.metadata.resourceVersion}"]));
    ok(&sim.kubectl(&["apply", "--server-side", "-f", file]));
    let rv2 = ok(&sim.kubectl(&["get", "vs", "reviews", "-o", "jsonpath={.metadata.resourceVersion}"]));
    assert_eq!(rv1, rv2, "re-applying the same file changes nothing");

    let other = sample("virtual-service-reviews-50-v3.yaml");
    let other = other.to_str().expect("utf8 path");
    let conflict = sim.kubectl(&["apply", "--server-side", "--field-manager", "alice", "-f", other]);
    assert!(!conflict.status.success());
    let err = String::from_utf8_lossy(&conflict.stderr);
    assert!(err.contains("conflict with \"kubectl\"") && err.contains(".spec.http"), "{err}");

    let dry =
        ok(&sim.kubectl(&["apply", "--server-side", "--field-manager", "alice", "--force-conflicts", "--dry-run=server", "-f", other]));
    assert!(dry.contains("(server dry run)"), "{dry}");
    let weights = ok(&sim.kubectl(&["get", "vs", "reviews", "-o", "jsonpath={.spec.http[0].route[*].weight}"]));
    assert_eq!(weights, "80 20", "a server dry run stores nothing");

    let diff = sim.kubectl(&["diff", "--server-side", "--force-conflicts", "--field-manager", "alice", "-f", other]);
    assert_eq!(diff.status.code(), Some(1), "diff finds a difference: {}", String::from_utf8_lossy(&diff.stderr));
    let diff_text = String::from_utf8_lossy(&diff.stdout);
    assert!(diff_text.contains("-      weight: 80") && diff_text.contains("+        subset: v3"), "{diff_text}");

    ok(&sim.kubectl(&["apply", "--server-side", "--field-manager", "alice", "--force-conflicts", "-f", other]));
    let weights = ok(&sim.kubectl(&["get", "vs", "reviews", "-o", "jsonpath={.spec.http[0].route[*].weight}"]));
    assert_eq!(weights, "50 50");

    let bad = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n      weight: ten\n";
    let refused = sim.kubectl_in(&["apply", "--server-side", "-f", "-"], Some(bad));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("must be of type integer"), "{}", String::from_utf8_lossy(&refused.stderr));

    // A watch sees a change made while it runs.
    let mut watch = Command::new("kubectl")
        .args(["get", "configmaps", "-w", "--request-timeout=20s"])
        .env("KUBECONFIG", sim.kubeconfig())
        .env("HOME", sim.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("watch");
    let mut stdout = watch.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut seen = String::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && !seen.contains("watched-cm") {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
        seen
    });
    // Give the watch its initial list before creating (a condition: the header line appears).
    std::thread::sleep(Duration::from_millis(300));
    ok(&sim.kubectl(&["create", "configmap", "watched-cm", "--from-literal=a=b"]));
    let seen = reader.join().expect("reader");
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen.contains("watched-cm"), "kubectl get -w printed the new configmap:\n{seen}");

    assert!(ok(&sim.kubectl(&["delete", "configmap", "watched-cm"])).contains("deleted"));
    let gone = sim.kubectl(&["get", "configmap", "watched-cm"]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"));

    assert_eq!(ok(&sim.kubectl(&["auth", "can-i", "delete", "pods"])).trim(), "yes");
    let no = sim.kubectl(&["--context", "cluster1-restricted", "auth", "can-i", "delete", "pods"]);
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    let forbidden = sim.kubectl(&["--context", "cluster1-restricted", "delete", "svc", "reviews"]);
    assert!(String::from_utf8_lossy(&forbidden.stderr).contains("is forbidden: User \"restricted\" cannot delete resource \"services\""));
}

/// `kubectl scale` goes through the scale subresource: an autoscaling/v1 Scale.
#[test]
fn kubectl_scales_a_deployment() {
    if !common::tool_available("kubectl", &["version", "--client"]) {
        return;
    }
    let sim = Sim::start();
    let name = ok(&sim.kubectl(&["get", "deployments", "-l", "app=reviews", "-o", "jsonpath={.items[0].metadata.name}"]));
    let out = ok(&sim.kubectl(&["scale", "deployment", &name, "--replicas", "3"]));
    assert!(out.contains(&format!("deployment.apps/{name} scaled")), "{out}");
    let replicas = ok(&sim.kubectl(&["get", "deployment", &name, "-o", "jsonpath={.spec.replicas}"]));
    assert_eq!(replicas, "3");
    let scale = ok(&sim.kubectl(&["get", "--raw", &format!("/apis/apps/v1/namespaces/default/deployments/{name}/scale")]));
    let scale: serde_json::Value = serde_json::from_str(&scale).expect("json");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 3);
    assert!(scale["status"]["selector"].as_str().is_some_and(|s| s.contains("app=reviews")), "{scale}");
}
