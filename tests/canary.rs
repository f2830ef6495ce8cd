//! The fleet canary (issue #33), on both fleets: the real test bed's mesh
//! (Istio's istiod, proxyless gRPC callers and workloads, a Prometheus per
//! cluster: requests are routed by Istio's and gRPC's code, `mesh_only_`) and
//! the sim with its Prometheus stand-in (simulated arithmetic, `sim_only_`).
//! Each scenario runs once per fleet through the same code, driving
//! `meshdeck canary` as an operator does: a process per command, killed with
//! SIGKILL where the test says so.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

enum Fleet {
    Sim { fleet: meshdeck_sim::SimFleet, _rt: tokio::runtime::Runtime },
    Mesh(common::mesh::Mesh),
}

/// One fleet with traffic, and a meshdeck for it (its own config and history).
struct Bed {
    fleet: Fleet,
    kubeconfig: PathBuf,
    config: PathBuf,
    data: PathBuf,
    _dirs: Option<(tempfile::TempDir, tempfile::TempDir)>,
}

/// Requests from cluster1's caller while it lives (the mesh's callers send only
/// when asked; the sim's stand-in calls by itself).
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sim() -> Bed {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let fleet = rt.block_on(common::fleet(meshdeck_sim::SimConfig { traffic: true, ..Default::default() }));
    let (config, data) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let kubeconfig = data.path().join("kubeconfig");
    fleet.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let mut cfg = String::from("clusters:\n");
    for c in ["cluster1", "cluster2", "cluster3"] {
        cfg.push_str(&format!("  - context: {c}\n    prometheus: {}\n", fleet.prometheus_url(c)));
    }
    std::fs::write(config.path().join("config.yaml"), cfg).expect("config");
    Bed {
        kubeconfig,
        config: config.path().to_path_buf(),
        data: data.path().to_path_buf(),
        fleet: Fleet::Sim { fleet, _rt: rt },
        _dirs: Some((config, data)),
    }
}

/// The sim, its meshdeck's directories under `root` (`config`, `data`) as the
/// cockpit's tmux harness lays them out.
fn sim_at(root: &std::path::Path) -> Bed {
    let mut bed = sim();
    for d in ["config", "data"] {
        std::fs::create_dir_all(root.join(d)).expect("dir");
    }
    std::fs::copy(bed.config.join("config.yaml"), root.join("config/config.yaml")).expect("config");
    std::fs::copy(&bed.kubeconfig, root.join("data/kubeconfig")).expect("kubeconfig");
    bed.config = root.join("config");
    bed.data = root.join("data");
    bed.kubeconfig = root.join("data/kubeconfig");
    bed
}

fn mesh(what: &str) -> Option<Bed> {
    let m = common::mesh::mesh(what)?;
    Some(Bed {
        kubeconfig: m.kubeconfig.clone(),
        config: m.config.path().to_path_buf(),
        data: m.data.path().to_path_buf(),
        fleet: Fleet::Mesh(m),
        _dirs: None,
    })
}

const PLAN: &str = "apiVersion: meshdeck.dev/v1alpha1
kind: TrafficRoute
metadata: {name: reviews-canary}
spec:
  service: reviews.default
  from: {clusters: [cluster1]}
  split:
    - {cluster: cluster2, version: v3, weight: 75}
    - {cluster: cluster1, version: v1, weight: 15}
    - {cluster: cluster1, version: v2, weight: 10}
  canary:
    destination: {cluster: cluster2, version: v3}
    steps: [5, 25, 50, 75]
    interval: 5s
    gates: {successRate: 99, p99: 500ms, minRequests: 20}
";

impl Bed {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_meshdeck"));
        c.args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("MESHDECK_CONFIG_DIR", &self.config)
            .env("MESHDECK_DATA_DIR", &self.data)
            .stdin(Stdio::null());
        c
    }

    fn meshdeck(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("meshdeck runs")
    }

    /// A driver in the background; what it says goes to `<data>/<log>`.
    fn spawn(&self, args: &[&str], log: &str) -> Child {
        let out = std::fs::File::create(self.data.join(log)).expect("log");
        self.command(args).stdout(Stdio::null()).stderr(out).spawn().expect("meshdeck starts")
    }

    fn said(&self, log: &str) -> String {
        std::fs::read_to_string(self.data.join(log)).unwrap_or_default()
    }

    fn plan(&self, text: &str) -> String {
        let p = self.data.join("canary.yaml");
        std::fs::write(&p, text).expect("plan");
        p.to_str().expect("utf8").to_string()
    }

    fn traffic(&self) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = match &self.fleet {
            Fleet::Sim { .. } => None,
            Fleet::Mesh(m) => {
                let node = m.parts["cluster1"]["node"].as_str().expect("node").to_string();
                let stop = stop.clone();
                Some(std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        // About 200 requests a second from cluster1's productpage.
                        let _ = common::mesh::try_post(&node, &format!("/send?target={}&n=40", common::mesh::REVIEWS));
                        std::thread::sleep(Duration::from_millis(150));
                    }
                }))
            }
        };
        Traffic { stop, thread }
    }

    /// `workload` in `cluster` answers `fraction` of its requests with a 500 (0: healthy).
    fn fail(&self, cluster: &str, workload: &str, fraction: f64) {
        match &self.fleet {
            Fleet::Sim { fleet, .. } => fleet.cluster(cluster).expect("cluster").traffic.lock().expect("traffic").fail(workload, fraction),
            Fleet::Mesh(m) if fraction <= 0.0 => {
                m.node(cluster, "DELETE", &format!("/faults?workload={workload}"));
            }
            // A 500: Istio's default retries (2, on 503) would hide a 503 from the callers.
            Fleet::Mesh(m) => {
                m.node(cluster, "POST", &format!("/faults?workload={workload}&fail={fraction}&code=internal"));
            }
        }
    }

    fn prometheus(&self, cluster: &str, running: bool) {
        match &self.fleet {
            Fleet::Sim { fleet, .. } => fleet.cluster(cluster).expect("cluster").traffic.lock().expect("traffic").stopped = !running,
            Fleet::Mesh(m) => {
                m.control("POST", &format!("/clusters/{cluster}/prometheus/{}", if running { "start" } else { "stop" }));
            }
        }
    }

    fn status(&self) -> Value {
        let out = self.meshdeck(&["canary", "status", "reviews-canary", "-o", "json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// Poll the canary's state until `done` says so.
    fn until(&self, what: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let s = self.status();
            if done(&s) {
                return s;
            }
            assert!(started.elapsed() < limit, "{what} within {limit:?}: {s:#}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The canary's records in history: (step, outcome, id), oldest first.
    fn canary_records(&self) -> Vec<(u64, String, String)> {
        let out = self.meshdeck(&["history", "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).expect("history JSON");
        v.as_array()
            .expect("records")
            .iter()
            .filter(|r| r["canary"].is_object())
            .map(|r| {
                (
                    r["canary"]["step"].as_u64().expect("step"),
                    r["report"]["outcome"].as_str().unwrap_or_default().to_string(),
                    r["id"].as_str().expect("id").to_string(),
                )
            })
            .collect()
    }

    /// Where calls from cluster1 to reviews go now: the VirtualService in force, if any.
    fn route_in_force(&self) -> Value {
        let out = self.meshdeck(&["routes", "reviews", "--from", "cluster1", "-o", "json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::text(&out)));
        v.as_array().and_then(|a| a.first()).cloned().unwrap_or(v)
    }

    /// On the mesh: where `n` real requests from cluster1 land.
    fn landed(&self, n: usize) -> Option<common::mesh::Sent> {
        match &self.fleet {
            Fleet::Mesh(m) => Some(m.send("cluster1", n)),
            Fleet::Sim { .. } => None,
        }
    }
}

fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the driver did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn steps_of(records: &[(u64, String, String)]) -> Vec<u64> {
    records.iter().filter(|r| r.0 > 0).map(|r| r.0).collect()
}

/// The talk's canary with a healthy v3: 4 steps to 75%, each one write, each
/// judged passed with its observed split within the bound of its weights.
fn healthy_canary_reaches_75(bed: &Bed) {
    let _traffic = bed.traffic();
    let plan = bed.plan(PLAN);
    let out = bed.meshdeck(&["canary", "start", &plan, "--yes"]);
    let said = common::text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("promoted"), "{said}");
    let records = bed.canary_records();
    assert_eq!(steps_of(&records), [1, 2, 3, 4], "one write per step: {records:?}");
    assert!(records.iter().all(|r| r.1 == "applied"), "{records:?}");
    let s = bed.status();
    assert_eq!(s["status"], "promoted", "{s:#}");
    for (step, weight) in [(1, 5.0), (2, 25.0), (3, 50.0), (4, 75.0)] {
        let check = s["checks"]
            .as_array()
            .expect("checks")
            .iter()
            .rfind(|c| c["step"] == step)
            .unwrap_or_else(|| panic!("step {step} was judged: {s:#}"));
        assert_eq!(check["verdict"], "passed", "step {step}: {check:#}");
        let caller = &check["callers"][0];
        assert_eq!(caller["from"], "cluster1", "{check:#}");
        assert_eq!(caller["intended"].as_f64(), Some(weight), "{check:#}");
        let split = caller["gates"].as_array().expect("gates").iter().find(|g| g["gate"] == "split").expect("split gate");
        assert_eq!(split["verdict"], "passed", "the observed split follows step {step}: {check:#}");
        let observed = caller["observed"].as_f64().expect("observed");
        assert!((observed - weight).abs() < 12.0, "step {step}: v3@cluster2 observed at {observed}%: {check:#}");
    }
    // Real requests now follow the last step.
    if let Some(sent) = bed.landed(4000) {
        assert!(common::mesh::within_binomial(*sent.reached.get("reviews-v3@cluster2").unwrap_or(&0), 4000, 0.75), "{}", sent.raw);
    }
}

/// v3 starts failing 20% of its requests at step 2: the gate fails, the route
/// goes back to the start by itself, and the record says which gate, where, how bad.
fn failing_canary_goes_back_by_itself(bed: &Bed) {
    let _traffic = bed.traffic();
    let plan = bed.plan(PLAN);
    let mut driver = bed.spawn(&["canary", "start", &plan, "--yes"], "driver.log");
    bed.until("step 2 written", Duration::from_secs(90), |s| s["step"] == 2);
    bed.fail("cluster2", "reviews-v3", 0.2);
    let status = wait(&mut driver, Duration::from_secs(120));
    bed.fail("cluster2", "reviews-v3", 0.0);
    let said = bed.said("driver.log");
    assert_eq!(status.code(), Some(1), "{said}");
    let s = bed.status();
    assert_eq!(s["status"], "rolledBack", "{s:#}");
    assert_eq!(s["step"], 0, "back at the start: {s:#}");
    let failed = s["checks"].as_array().expect("checks").iter().rfind(|c| c["verdict"] == "failed").expect("a failed check");
    assert_eq!(failed["step"], 2, "{failed:#}");
    let caller = &failed["callers"][0];
    assert_eq!(caller["from"], "cluster1");
    let gate = caller["gates"].as_array().expect("gates").iter().find(|g| g["gate"] == "successRate").expect("success gate");
    assert_eq!(gate["verdict"], "failed", "{failed:#}");
    let rate = gate["value"].as_f64().expect("value");
    assert!((60.0..95.0).contains(&rate), "about 80% answered well: {rate}: {failed:#}");
    let events: Vec<&str> = s["events"].as_array().expect("events").iter().filter_map(|e| e["text"].as_str()).collect();
    assert!(events.iter().any(|e| e.contains("successRate") && e.contains("from cluster1")), "{events:#?}");
    // History: steps 1 and 2, then one rollback undoing from step 1.
    let records = bed.canary_records();
    assert_eq!(steps_of(&records), [1, 2], "{records:?}");
    let back = records.iter().find(|r| r.0 == 0).expect("the rollback record");
    assert_eq!(back.1, "applied", "{records:?}");
    let history: Value = serde_json::from_slice(&bed.meshdeck(&["history", "-o", "json"]).stdout).expect("history");
    let rec = history.as_array().expect("records").iter().find(|r| r["id"] == back.2.as_str()).expect("record");
    assert_eq!(rec["rollbackOf"].as_str(), Some(records[0].2.as_str()), "{rec:#}");
    let reason = rec["canary"]["reason"].as_str().expect("the record says why");
    assert!(reason.starts_with("step 2 failed: successRate: ") && reason.contains("from cluster1"), "{reason}");
    let table = common::text(&bed.meshdeck(&["history"]));
    assert!(table.contains("canary step 2") && table.contains("canary back"), "{table}");
    // The start had no route of ours: none now.
    let route = bed.route_in_force();
    assert!(route["virtualService"].is_null(), "{route:#}");
    if let Some(sent) = bed.landed(700) {
        assert_eq!(sent.reached.len(), 7, "every reviews endpoint again, as before the canary: {}", sent.raw);
    }
}

/// SIGKILL between steps: `canary resume` continues from the recorded step;
/// the writes are the steps, each once.
fn killed_driver_resumes_at_its_step(bed: &Bed) {
    let _traffic = bed.traffic();
    let plan = bed.plan(PLAN);
    let mut driver = bed.spawn(&["canary", "start", &plan, "--yes"], "driver.log");
    bed.until("step 2 written", Duration::from_secs(90), |s| s["step"] == 2);
    driver.kill().expect("SIGKILL");
    let _ = driver.wait();
    let s = bed.status();
    assert_eq!(s["status"], "running", "{s:#}");
    assert!(s["driver"].is_null(), "no process drives it now: {s:#}");
    let table = common::text(&bed.meshdeck(&["canary", "status", "reviews-canary"]));
    assert!(table.contains("no driver: `meshdeck canary resume reviews-canary`"), "{table}");
    let out = bed.meshdeck(&["canary", "resume", "reviews-canary"]);
    let said = common::text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("driving canary reviews-canary from step 2"), "{said}");
    let records = bed.canary_records();
    assert_eq!(steps_of(&records), [1, 2, 3, 4], "no step written twice or skipped: {records:?}");
    assert_eq!(records.iter().filter(|r| r.1 == "applied").count(), 4, "{records:?}");
    assert_eq!(bed.status()["status"], "promoted");
}

/// The calling cluster's Prometheus stops: the canary waits and says why, then
/// aborts back to the start once its bound passes; nothing is promoted.
fn dark_prometheus_waits_then_aborts(bed: &Bed) {
    let _traffic = bed.traffic();
    let plan = bed.plan(&PLAN.replace("    gates:", "    decideWithin: 20s\n    gates:"));
    let mut driver = bed.spawn(&["canary", "start", &plan, "--yes"], "driver.log");
    bed.until("step 1 written", Duration::from_secs(60), |s| s["step"] == 1);
    bed.prometheus("cluster1", false);
    let waiting = bed.until("the canary says why it waits", Duration::from_secs(30), |s| {
        s["waiting"].as_str().is_some_and(|w| w.contains("metrics unreachable"))
    });
    assert_eq!(waiting["step"], 1, "{waiting:#}");
    let status = wait(&mut driver, Duration::from_secs(60));
    bed.prometheus("cluster1", true);
    assert_eq!(status.code(), Some(1), "{}", bed.said("driver.log"));
    let s = bed.status();
    assert_eq!(s["status"], "aborted", "{s:#}");
    let events: Vec<&str> = s["events"].as_array().expect("events").iter().filter_map(|e| e["text"].as_str()).collect();
    assert!(events.iter().any(|e| e.contains("not judged within 20s") && e.contains("metrics unreachable")), "{events:#?}");
    let records = bed.canary_records();
    assert_eq!(steps_of(&records), [1], "never promoted blind: {records:?}");
    assert!(records.iter().any(|r| r.0 == 0 && r.1 == "applied"), "went back: {records:?}");
    assert!(bed.route_in_force()["virtualService"].is_null());
}

const POLICY: &str = "personas:
  - name: cluster1-only
    match: {users: [], contexts: []}
    routeFrom: [{clusters: [cluster1], namespaces: [default]}]
    routeTo: [{clusters: [cluster1], services: [reviews.default]}]
";

/// A persona that may not route to cluster2 cannot start it: nothing recorded.
fn persona_without_cluster2_cannot_start(bed: &Bed) {
    std::fs::write(bed.config.join("policy.yaml"), POLICY).expect("policy");
    let plan = bed.plan(PLAN);
    let out = bed.meshdeck(&["canary", "start", &plan, "--yes", "--as-persona", "cluster1-only"]);
    std::fs::remove_file(bed.config.join("policy.yaml")).expect("policy");
    let said = common::text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("may not route reviews.default to cluster2") && said.contains("nothing was written"), "{said}");
    let list = common::text(&bed.meshdeck(&["canary", "status"]));
    assert!(list.contains("no canaries"), "{list}");
    assert!(bed.canary_records().is_empty());
}

macro_rules! on_both {
    ($scenario:ident, $sim:ident, $mesh:ident) => {
        #[test]
        fn $sim() {
            $scenario(&sim());
        }
        #[test]
        fn $mesh() {
            let Some(bed) = mesh(stringify!($scenario)) else { return };
            $scenario(&bed);
        }
    };
}

on_both!(
    healthy_canary_reaches_75,
    sim_only_a_healthy_canary_reaches_75_one_write_per_step,
    mesh_only_a_healthy_canary_reaches_75_one_write_per_step
);
on_both!(
    failing_canary_goes_back_by_itself,
    sim_only_a_failing_gate_goes_back_to_the_start_by_itself,
    mesh_only_a_failing_gate_goes_back_to_the_start_by_itself
);
on_both!(
    killed_driver_resumes_at_its_step,
    sim_only_sigkill_between_steps_resumes_at_the_recorded_step,
    mesh_only_sigkill_between_steps_resumes_at_the_recorded_step
);
on_both!(dark_prometheus_waits_then_aborts, sim_only_a_dark_prometheus_waits_then_aborts, mesh_only_a_dark_prometheus_waits_then_aborts);
on_both!(
    persona_without_cluster2_cannot_start,
    sim_only_a_persona_that_may_not_route_to_cluster2_cannot_start_it,
    mesh_only_a_persona_that_may_not_route_to_cluster2_cannot_start_it
);

/// One owner per route: while a canary steps it, a second canary, an apply and
/// a rollback of its step are refused; `canary abort` from another terminal
/// makes the driver go back to the start.
#[test]
fn sim_only_a_stepped_route_has_one_owner_and_abort_goes_back() {
    let bed = sim();
    let plan = bed.plan(&PLAN.replace("interval: 5s", "interval: 60s"));
    let mut driver = bed.spawn(&["canary", "start", &plan, "--yes"], "driver.log");
    bed.until("step 1 written", Duration::from_secs(30), |s| s["step"] == 1);
    // The same canary again, and another plan for the route, are refused.
    let out = bed.meshdeck(&["canary", "start", &plan, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    assert!(common::text(&out).contains("is stepped by canary reviews-canary (running, step 1 of 4)"), "{}", common::text(&out));
    let other = bed.data.join("other.yaml");
    std::fs::write(&other, PLAN.replace("name: reviews-canary", "name: reviews-other")).expect("plan");
    let out = bed.meshdeck(&["canary", "start", other.to_str().expect("utf8"), "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(common::text(&out).contains("already routed by plan reviews-canary"), "{}", common::text(&out));
    // The plan's own split applied by hand would step over the driver.
    let plain = bed.data.join("plain.yaml");
    std::fs::write(&plain, PLAN.split("  canary:").next().expect("split")).expect("plan");
    let out = bed.meshdeck(&["apply", "-f", plain.to_str().expect("utf8"), "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    assert!(common::text(&out).contains("stepped by canary reviews-canary"), "{}", common::text(&out));
    let step1 = bed.canary_records()[0].2.clone();
    let out = bed.meshdeck(&["rollback", &step1, "--yes"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    assert!(common::text(&out).contains("is a step of canary reviews-canary"), "{}", common::text(&out));
    // A plan with a canary section is not applied whole.
    let out = bed.meshdeck(&["apply", "-f", &plan, "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(common::text(&out).contains("meshdeck canary start"), "{}", common::text(&out));

    let out = bed.meshdeck(&["canary", "abort", "reviews-canary"]);
    assert!(out.status.success(), "{}", common::text(&out));
    assert_eq!(wait(&mut driver, Duration::from_secs(30)).code(), Some(1), "{}", bed.said("driver.log"));
    let s = bed.status();
    assert_eq!(s["status"], "aborted", "{s:#}");
    assert!(bed.route_in_force()["virtualService"].is_null());
    // Ended: the route is free again.
    let out = bed.meshdeck(&["apply", "-f", plain.to_str().expect("utf8"), "--yes"]);
    assert!(out.status.success(), "{}", common::text(&out));
}

/// A cluster the route writes to goes dark: the canary pauses at its step and
/// says so; it continues once resumed with the cluster back.
#[test]
fn sim_only_a_dark_cluster_pauses_the_canary_until_resumed() {
    let bed = sim();
    let plan = bed.plan(PLAN);
    let mut driver = bed.spawn(&["canary", "start", &plan, "--yes"], "driver.log");
    bed.until("step 1 written", Duration::from_secs(30), |s| s["step"] == 1);
    let Fleet::Sim { fleet, .. } = &bed.fleet else { unreachable!("the sim") };
    fleet.cluster("cluster2").expect("cluster2").set_fault(meshdeck_sim::faults::Fault::Down);
    let paused = bed.until("paused", Duration::from_secs(40), |s| s["status"] == "paused");
    assert_eq!(paused["step"], 1, "held at its step: {paused:#}");
    assert!(paused["waiting"].as_str().is_some_and(|w| w.contains("cluster2 not answering")), "{paused:#}");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(bed.status()["step"], 1, "nothing promoted while paused");
    fleet.cluster("cluster2").expect("cluster2").set_fault(meshdeck_sim::faults::Fault::Healthy);
    let out = bed.meshdeck(&["canary", "resume", "reviews-canary"]);
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(common::text(&out).contains("asked canary reviews-canary's driver"), "{}", common::text(&out));
    assert!(wait(&mut driver, Duration::from_secs(90)).success(), "{}", bed.said("driver.log"));
    assert_eq!(steps_of(&bed.canary_records()), [1, 2, 3, 4]);
}

/// The cockpit's canary view (`g k`) on a canary a CLI process drives: `p`
/// pauses it, `r` resumes it, `A` then `y` aborts it, each through its driver.
/// Then a canary no process drives (its driver killed): `r` makes the cockpit
/// its driver, and `canary abort` from a terminal asks the cockpit.
#[test]
fn sim_only_the_cockpit_pauses_resumes_aborts_and_drives_a_canary() {
    if !common::tool_available("tmux", &["-V"]) {
        return;
    }
    let root = tempfile::tempdir().expect("tmp");
    let bed = sim_at(root.path());
    let plan = bed.plan(&PLAN.replace("interval: 5s", "interval: 60s"));
    let mut driver = bed.spawn(&["canary", "start", &plan, "--yes"], "driver.log");
    bed.until("step 1 written", Duration::from_secs(30), |s| s["step"] == 1);
    let t = common::tmux::start_cockpit("canary", root.path(), &bed.kubeconfig, "", 160, 40);
    t.wait_for(&["3/3 clusters live"], 30);
    t.keys(&["g", "k"]);
    t.wait_for(&["canary reviews-canary  running  step 1/4", "driven by pid"], 10);
    t.keys(&["p"]);
    t.wait_for(&["canary reviews-canary  paused  step 1/4"], 10);
    assert_eq!(bed.status()["status"], "paused");
    t.keys(&["r"]);
    t.wait_for(&["canary reviews-canary  running  step 1/4"], 10);
    t.keys(&["A"]);
    t.wait_for(&["back to the route before its first step? y confirms"], 10);
    t.keys(&["y"]);
    t.wait_for(&["canary reviews-canary  aborted"], 20);
    assert_eq!(wait(&mut driver, Duration::from_secs(20)).code(), Some(1), "{}", bed.said("driver.log"));

    let mut driver = bed.spawn(&["canary", "start", &plan, "--yes"], "driver2.log");
    bed.until("step 1 written again", Duration::from_secs(30), |s| s["step"] == 1 && s["status"] == "running");
    driver.kill().expect("SIGKILL");
    let _ = driver.wait();
    t.wait_for(&["no driver: `meshdeck canary resume reviews-canary`"], 10);
    t.keys(&["r"]);
    t.wait_for(&["driven by pid"], 20);
    let s = bed.status();
    assert!(s["driver"].as_str().is_some_and(|d| d.starts_with("pid")), "the cockpit drives it: {s:#}");
    let out = bed.meshdeck(&["canary", "abort", "reviews-canary"]);
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(common::text(&out).contains("asked canary reviews-canary's driver"), "{}", common::text(&out));
    t.wait_for(&["canary reviews-canary  aborted"], 20);
    assert_eq!(steps_of(&bed.canary_records()), [1, 1], "each canary wrote its step 1 once: {:?}", bed.canary_records());
}

/// SIGKILL while a step is being written (its record still pending): `resume`
/// finishes that step first, then goes on; every step is applied once.
#[test]
fn sim_only_sigkill_while_a_step_is_written_finishes_that_step_on_resume() {
    let bed = sim();
    let plan = bed.plan(PLAN);
    let mut driver = bed.spawn(&["canary", "start", &plan, "--yes", "--timeout", "30"], "driver.log");
    bed.until("step 1 written", Duration::from_secs(30), |s| s["step"] == 1);
    let Fleet::Sim { fleet, .. } = &bed.fleet else { unreachable!("the sim") };
    // Every call to cluster1 now takes 2 s: step 2's writes are slow enough to be caught.
    fleet.cluster("cluster1").expect("cluster1").set_fault(meshdeck_sim::faults::Fault::Slow(Duration::from_secs(2)));
    let started = Instant::now();
    while !bed.canary_records().iter().any(|r| r.0 == 2 && r.1 == "pending") {
        assert!(started.elapsed() < Duration::from_secs(90), "step 2 started writing: {}", bed.said("driver.log"));
        std::thread::sleep(Duration::from_millis(100));
    }
    driver.kill().expect("SIGKILL");
    let _ = driver.wait();
    fleet.cluster("cluster1").expect("cluster1").set_fault(meshdeck_sim::faults::Fault::Healthy);
    let out = bed.meshdeck(&["canary", "resume", "reviews-canary"]);
    let said = common::text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("step 2 was being written") && said.contains("it is finished first"), "{said}");
    let records = bed.canary_records();
    let applied: Vec<u64> = records.iter().filter(|r| r.1 == "applied").map(|r| r.0).collect();
    assert_eq!(applied, [1, 2, 3, 4], "each step applied once: {records:?}");
}

/// `meshdeck demo --canary`: the talk's canary steps on the sim's simulated
/// traffic in the cockpit's canary view, judged passed step by step.
#[test]
fn sim_only_the_demo_shows_a_canary_stepping() {
    if !common::tool_available("tmux", &["-V"]) {
        return;
    }
    let root = tempfile::tempdir().expect("tmp");
    let t = common::tmux::start_cockpit("demo-canary", root.path(), &root.path().join("unused-kubeconfig"), "demo --canary", 140, 40);
    t.wait_for(&["canary reviews-canary  running  step 1/4", "v3@cluster2 at 5%"], 60);
    t.wait_for(&["step 1 passed: every gate passed on cluster1", "canary reviews-canary  running  step 2/4"], 60);
    // The demo's history is its own: nothing was written to the data directory it was given.
    assert!(!root.path().join("data/history/canaries/reviews-canary.json").exists(), "the demo keeps its history with its fleet");
}
