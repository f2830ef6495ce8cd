//! `meshdeck bench …`: benchmarks that print numbers (never assertions).
//! The simulated fleet runs as a child process so meshdeck's own memory and
//! CPU are measured apart from the servers'.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::{CliError, GlobalArgs};
use crate::inventory::Inventory;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub which: Bench,
}

#[derive(Subcommand, Debug)]
pub enum Bench {
    /// Sim start-up time and a full list of every cluster.
    Sim(FleetSize),
    /// Time to a complete inventory, peak RSS, bytes per pod, against a kubectl loop.
    Inventory(FleetSize),
    /// Render many plans over a large inventory (no clusters needed).
    Render(RenderSize),
    /// One plan applied to every cluster, against `kubectl apply --server-side` cluster
    /// by cluster and 8 clusters at a time; `--latency` also checks it against a far cluster.
    Apply(ApplySize),
    /// Cockpit frame time, event-to-screen latency under pod churn, idle CPU.
    Tui,
    /// The inventory watching a living fleet for a long time (pods restart, Deployments
    /// roll, `--chaos` takes a cluster down and back every 20 s): RSS after warm-up, the
    /// model against a fresh list at the end, and when each cluster was last heard.
    Soak(SoakSize),
}

#[derive(Args, Debug, Clone)]
pub struct SoakSize {
    #[command(flatten)]
    pub fleet: FleetSize,
    /// How long to watch (e.g. `20m`, `90s`).
    #[arg(long, default_value = "20m", value_name = "DURATION")]
    pub duration: String,
}

#[derive(Args, Debug, Clone)]
pub struct RenderSize {
    #[arg(long, default_value_t = 1000)]
    pub plans: usize,
    #[arg(long, default_value_t = 50)]
    pub clusters: usize,
    #[arg(long, default_value_t = 200)]
    pub services: usize,
}

#[derive(Args, Debug, Clone)]
pub struct ApplySize {
    #[command(flatten)]
    pub fleet: FleetSize,
    /// Also measure the plan's check and diff with cluster2 this far away (the sim's
    /// `slow:` fault, e.g. `300ms`), in round trips.
    #[arg(long, value_name = "DURATION")]
    pub latency: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct FleetSize {
    #[arg(long, default_value_t = 50)]
    pub clusters: usize,
    #[arg(long, default_value_t = 200)]
    pub services: usize,
    /// Skip the kubectl comparison.
    #[arg(long)]
    pub no_kubectl: bool,
    /// Measure this running fleet (e.g. the real test bed's kubeconfig, contexts
    /// cluster1..N) instead of starting a sim; --clusters says how many to use.
    #[arg(long, value_name = "KUBECONFIG")]
    pub fleet: Option<PathBuf>,
}

/// A `meshdeck sim` child process; killed on drop.
pub struct SimProcess {
    /// None when measuring a fleet that was already running (`--fleet`).
    child: Option<Child>,
    pub kubeconfig: PathBuf,
    pub startup: Duration,
    /// The sim's admin address (faults), when this bench started it.
    admin: Option<std::net::SocketAddr>,
    _dir: tempfile_dir::Dir,
}

mod tempfile_dir {
    /// A private temporary directory removed on drop (no dev-dependency in the binary).
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl SimProcess {
    pub fn start(size: &FleetSize) -> Result<SimProcess, CliError> {
        Self::start_living(size, false)
    }

    /// With `living`, the fleet lives (pods restart, Deployments roll) and `--chaos`
    /// takes a cluster down and back now and then; otherwise it stays still.
    pub fn start_living(size: &FleetSize, living: bool) -> Result<SimProcess, CliError> {
        let dir = std::env::temp_dir().join(format!("meshdeck-bench-{}", std::process::id()));
        if let Some(kubeconfig) = &size.fleet {
            return Ok(SimProcess {
                child: None,
                kubeconfig: kubeconfig.clone(),
                startup: Duration::ZERO,
                admin: None,
                _dir: tempfile_dir::Dir(dir),
            });
        }
        std::fs::create_dir_all(&dir).map_err(|e| CliError::failed(e.to_string()))?;
        let kubeconfig = dir.join("kubeconfig");
        let exe = std::env::current_exe().map_err(|e| CliError::failed(e.to_string()))?;
        // A free port for the sim's admin API (faults), found by binding and letting go.
        let admin = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).ok();
        let started = Instant::now();
        let child = Command::new(exe)
            .args([
                "sim",
                if living { "--chaos" } else { "--still" },
                "--clusters",
                &size.clusters.to_string(),
                "--services",
                &size.services.to_string(),
                "--admin-port",
                &admin.map(|a| a.port()).unwrap_or(0).to_string(),
                "--kubeconfig-out",
            ])
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| CliError::failed(format!("starting the sim: {e}")))?;
        let mut sim = SimProcess { child: Some(child), kubeconfig, startup: Duration::ZERO, admin, _dir: tempfile_dir::Dir(dir) };
        while !std::fs::read_to_string(&sim.kubeconfig).is_ok_and(|t| t.contains("current-context")) {
            if started.elapsed() > Duration::from_secs(120) {
                return Err(CliError::failed("the sim did not start within 120 s"));
            }
            if let Some(Ok(Some(status))) = sim.child.as_mut().map(Child::try_wait) {
                return Err(CliError::failed(format!("the sim exited: {status}")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        sim.startup = started.elapsed();
        Ok(sim)
    }

    pub fn contexts(&self, n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("cluster{i}")).collect()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Set a fault on one cluster through the sim's admin API (`down`, `healthy`, ...).
    fn fault(&self, cluster: &str, fault: &str) -> Result<(), CliError> {
        use std::io::{Read, Write};
        let addr = self.admin.ok_or_else(|| CliError::failed("no admin API: the bench did not start this fleet"))?;
        let mut s = std::net::TcpStream::connect(addr).map_err(|e| CliError::failed(format!("sim admin: {e}")))?;
        let request =
            format!("POST /clusters/{cluster}/fault/{fault} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).map_err(|e| CliError::failed(format!("sim admin: {e}")))?;
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        if !answer.starts_with("HTTP/1.1 200") {
            return Err(CliError::failed(format!("sim admin: {}", answer.lines().next().unwrap_or("no answer"))));
        }
        Ok(())
    }
}

/// Start counting the peak RSS again from now (Linux: `5` to `/proc/self/clear_refs`).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Peak resident set size of a process in MiB (Linux `VmHWM`).
pub fn peak_rss_mib(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".into(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn kubectl_available() -> bool {
    Command::new("kubectl").args(["version", "--client"]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// `kubectl get <what> -A -o json` over every context, one after another.
fn kubectl_loop(kubeconfig: &Path, contexts: &[String], what: &str) -> Result<(Duration, usize), CliError> {
    let home = std::env::temp_dir().join(format!("meshdeck-bench-kubectl-{}", std::process::id()));
    let _cleanup = tempfile_dir::Dir(home.clone());
    let started = Instant::now();
    let mut bytes = 0;
    for ctx in contexts {
        let out = Command::new("kubectl")
            .args(["--context", ctx, "get", what, "-A", "-o", "json"])
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", &home)
            .output()
            .map_err(|e| CliError::failed(format!("kubectl: {e}")))?;
        if !out.status.success() {
            return Err(CliError::failed(format!("kubectl failed on {ctx}: {}", String::from_utf8_lossy(&out.stderr))));
        }
        bytes += out.stdout.len();
    }
    Ok((started.elapsed(), bytes))
}

pub async fn run(_global: &GlobalArgs, args: BenchArgs) -> Result<(), CliError> {
    match args.which {
        Bench::Sim(size) => bench_sim(&size).await,
        Bench::Inventory(size) => bench_inventory(&size).await,
        Bench::Render(size) => bench_render(&size),
        Bench::Apply(size) => bench_apply(&size.fleet, size.latency.as_deref()).await,
        Bench::Tui => bench_tui().await,
        Bench::Soak(size) => bench_soak(&size).await,
    }
}

async fn bench_sim(size: &FleetSize) -> Result<(), CliError> {
    let sim = SimProcess::start(size)?;
    println!("sim: {} clusters x {} services: started in {:.2} s", size.clusters, size.services, sim.startup.as_secs_f64());
    let global = GlobalArgs {
        kubeconfig: Some(sim.kubeconfig.clone()),
        contexts: sim.contexts(size.clusters),
        read_only: true,
        ..Default::default()
    };
    let (clusters, _) = super::fleet::registry(&global).await?;
    let started = Instant::now();
    let mut pods = 0;
    for c in &clusters {
        let client = c.client.clone().map_err(CliError::failed)?;
        let api: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::all(client);
        pods += api.list(&kube::api::ListParams::default()).await.map_err(|e| CliError::failed(e.to_string()))?.items.len();
    }
    let t = started.elapsed();
    println!(
        "sim: full pod list of every cluster: {pods} pods in {:.2} s ({:.1} ms per cluster)",
        t.as_secs_f64(),
        t.as_secs_f64() * 1000.0 / clusters.len() as f64
    );
    if let Some(pid) = sim.pid() {
        println!("sim: peak RSS of the sim process: {:.0} MiB", peak_rss_mib(Some(pid)).unwrap_or(f64::NAN));
    }
    Ok(())
}

/// `90s`, `20m`, `1h`, `500ms`.
fn duration_of(text: &str) -> Result<Duration, String> {
    let bad = || format!("--duration {text:?}: expected a number with ms, s, m or h (e.g. 20m)");
    let (number, unit) = text.find(|c: char| !c.is_ascii_digit()).map(|i| text.split_at(i)).ok_or_else(bad)?;
    let n: u64 = number.parse().map_err(|_| bad())?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(bad()),
    }
}

/// What a snapshot says of each cluster it sees live: its services and, per version,
/// how many pods (readiness flickers as the fleet lives; counts settle).
fn live_model(snap: &crate::inventory::FleetSnapshot) -> BTreeMap<String, BTreeMap<String, Vec<(String, u32)>>> {
    let live: Vec<&str> =
        snap.clusters.iter().filter(|c| c.state == crate::inventory::ClusterState::Live).map(|c| c.name.as_str()).collect();
    let mut out: BTreeMap<String, BTreeMap<String, Vec<(String, u32)>>> = BTreeMap::new();
    for row in &snap.services {
        for (cluster, p) in row.clusters.iter().filter(|(c, _)| live.contains(&c.as_str())) {
            let versions = p.versions.iter().map(|(v, n)| (v.clone(), n.total)).collect();
            out.entry(cluster.clone()).or_default().insert(format!("{}.{}", row.name, row.namespace), versions);
        }
    }
    out
}

async fn bench_soak(size: &SoakSize) -> Result<(), CliError> {
    let duration = duration_of(&size.duration).map_err(CliError::bad_input)?;
    let sim = SimProcess::start_living(&size.fleet, true)?;
    println!(
        "fleet: {} clusters x {} services, living, with chaos (sim started in {:.1} s); watching for {:.0} s",
        size.fleet.clusters,
        size.fleet.services,
        sim.startup.as_secs_f64(),
        duration.as_secs_f64()
    );
    let global = GlobalArgs {
        kubeconfig: Some(sim.kubeconfig.clone()),
        contexts: sim.contexts(size.fleet.clusters),
        read_only: true,
        ..Default::default()
    };
    let (clusters, _) = super::fleet::registry(&global).await?;
    let started = Instant::now();
    let mut inv = Inventory::start(&clusters);
    inv.settled(Duration::from_secs(120)).await;
    // Warm-up: the first lists' buffers are given back, and chaos has taken a cluster down and back.
    let warm_up = (duration / 10).max(Duration::from_secs(45)).min(duration / 2);
    tokio::time::sleep(warm_up.saturating_sub(started.elapsed())).await;
    let baseline = rss_mib().unwrap_or(f64::NAN);
    println!("warm-up: {:.0} s; RSS {baseline:.1} MiB", started.elapsed().as_secs_f64());
    let mut highest = baseline;
    let mut next_line = started + Duration::from_secs(60);
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let rss = rss_mib().unwrap_or(f64::NAN);
        highest = highest.max(rss);
        if Instant::now() >= next_line {
            let snap = inv.snapshots.borrow().clone();
            let live = snap.clusters.iter().filter(|c| c.state == crate::inventory::ClusterState::Live).count();
            println!("  {:>5.0} s: RSS {rss:.1} MiB, {live}/{} clusters live", started.elapsed().as_secs_f64(), snap.clusters.len());
            while next_line <= Instant::now() {
                next_line += Duration::from_secs(60);
            }
        }
    }
    let end = rss_mib().unwrap_or(f64::NAN);
    println!(
        "rss: {end:.1} MiB at the end, highest {highest:.1} MiB after warm-up: {:+.1}% / {:+.1}% against {baseline:.1} MiB",
        (end / baseline - 1.0) * 100.0,
        (highest / baseline - 1.0) * 100.0
    );
    // The model kept for the whole run against a fresh inventory of the same fleet; the
    // fleet keeps living, so a difference gets a few chances to settle.
    let mut fresh = Inventory::start(&clusters);
    fresh.settled(Duration::from_secs(120)).await;
    let mut verdict = String::new();
    for _ in 0..10 {
        let (kept, new) = (inv.snapshots.borrow().clone(), fresh.snapshots.borrow().clone());
        let (a, b) = (live_model(&kept), live_model(&new));
        let both: Vec<&String> = a.keys().filter(|c| b.contains_key(*c)).collect();
        let differ: Vec<&String> = both.iter().copied().filter(|c| a[*c] != b[*c]).collect();
        verdict = format!(
            "model: {} of {} clusters live in both equal a fresh list{}",
            both.len() - differ.len(),
            both.len(),
            if differ.is_empty() {
                String::new()
            } else {
                format!("; differ: {}", differ.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "))
            }
        );
        if differ.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("{verdict}");
    let snap = inv.snapshots.borrow().clone();
    let now = chrono::Utc::now();
    let ages: Vec<i64> = snap.clusters.iter().filter_map(|c| c.last_seen.map(|t| (now - t).num_seconds())).collect();
    let stale: Vec<&str> = snap
        .clusters
        .iter()
        .filter(|c| c.state == crate::inventory::ClusterState::Live && c.last_seen.is_none_or(|t| (now - t).num_seconds() > 30))
        .map(|c| c.name.as_str())
        .collect();
    println!(
        "watchers: last heard from each cluster at most {} s ago ({} clusters); live clusters not heard from in 30 s: {}",
        ages.iter().max().copied().unwrap_or(-1),
        ages.len(),
        if stale.is_empty() { "none".to_string() } else { stale.join(", ") }
    );
    Ok(())
}

async fn bench_inventory(size: &FleetSize) -> Result<(), CliError> {
    let sim = SimProcess::start(size)?;
    println!("fleet: {} clusters x {} services (sim started in {:.2} s)", size.clusters, size.services, sim.startup.as_secs_f64());
    let global = GlobalArgs {
        kubeconfig: Some(sim.kubeconfig.clone()),
        contexts: sim.contexts(size.clusters),
        read_only: true,
        ..Default::default()
    };
    let rss_before = rss_mib().unwrap_or(0.0);
    let started = Instant::now();
    let (clusters, _) = super::fleet::registry(&global).await?;
    let mut inv = Inventory::start(&clusters);
    let snap = inv.settled(Duration::from_secs(120)).await;
    let t_inventory = started.elapsed();
    let live = snap.clusters.iter().filter(|c| c.state == crate::inventory::ClusterState::Live).count();
    let services: usize = snap.services.iter().map(|s| s.clusters.len()).sum();
    let pods: u32 = snap
        .services
        .iter()
        .flat_map(|s| s.clusters.values())
        .map(|p| p.versions.values().map(|v| v.total).sum::<u32>() + p.unversioned.total)
        .sum();
    // Let the first burst settle, then read memory.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_after = rss_mib().unwrap_or(0.0);
    let peak = peak_rss_mib(None).unwrap_or(f64::NAN);
    println!(
        "meshdeck: complete inventory ({live}/{} clusters live, {services} services, {pods} pods) in {:.2} s",
        snap.clusters.len(),
        t_inventory.as_secs_f64()
    );
    println!(
        "meshdeck: peak RSS {peak:.0} MiB; retained after sync {:.1} MiB, about {:.0} bytes per pod",
        rss_after - rss_before,
        (rss_after - rss_before) * 1024.0 * 1024.0 / f64::from(pods.max(1))
    );
    // The allocator gives back what the lists' buffers took within a second or so.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_after = rss_mib().unwrap_or(0.0);
    println!(
        "meshdeck: steady 5 s later: retained {:.1} MiB, about {:.0} bytes per pod",
        rss_after - rss_before,
        (rss_after - rss_before) * 1024.0 * 1024.0 / f64::from(pods.max(1))
    );
    // Every cluster drops its connections at once (as after a network blip or an API
    // server restart): every watch lists again. The peak while they do, against the
    // steady state just measured.
    if sim.admin.is_some() && reset_peak_rss() {
        let names: Vec<String> = clusters.iter().map(|c| c.name.clone()).collect();
        for n in &names {
            sim.fault(n, "down")?;
        }
        let _ =
            inv.wait_until(Duration::from_secs(60), |s| s.clusters.iter().all(|c| c.state != crate::inventory::ClusterState::Live)).await;
        let relisting = Instant::now();
        for n in &names {
            sim.fault(n, "healthy")?;
        }
        let back = inv
            .wait_until(Duration::from_secs(120), |s| {
                s.settled() && s.clusters.iter().all(|c| c.state == crate::inventory::ClusterState::Live)
            })
            .await;
        let live_again = relisting.elapsed();
        // Live comes with the first page of each relist; the staged lists swap in at
        // their end. Watch the peak for twice the first inventory's time.
        let window = (t_inventory * 2).max(Duration::from_secs(2));
        tokio::time::sleep(window.saturating_sub(live_again)).await;
        let relist_peak = peak_rss_mib(None).unwrap_or(f64::NAN);
        println!(
            "relist: every cluster down, then back: all live again in {:.2} s{}; peak RSS within {:.1} s of reconnecting {relist_peak:.0} MiB, {:.2}x the steady {rss_after:.0} MiB",
            live_again.as_secs_f64(),
            if back { "" } else { " (NOT all live within 120 s)" },
            window.as_secs_f64(),
            relist_peak / rss_after.max(1.0)
        );
    }
    drop(inv);
    let floor = raw_floor(&clusters, 16).await?;
    println!(
        "floor: the same pod and service lists (pages of 500) fetched from every cluster, 16 at a time, not decoded: {:.2} s \
         ({:.1} MiB; {:.0} bytes of JSON per pod)",
        floor.elapsed.as_secs_f64(),
        (floor.pod_bytes + floor.service_bytes) as f64 / 1048576.0,
        floor.pod_bytes as f64 / f64::from(pods.max(1))
    );
    println!("ratio: meshdeck takes {:.2}x the floor", t_inventory.as_secs_f64() / floor.elapsed.as_secs_f64().max(1e-9));
    if size.no_kubectl || !kubectl_available() {
        println!("kubectl: not run");
        return Ok(());
    }
    let (t_kubectl, bytes) = tokio::task::spawn_blocking({
        let kc = sim.kubeconfig.clone();
        let contexts = sim.contexts(size.clusters);
        move || kubectl_loop(&kc, &contexts, "svc,pods")
    })
    .await
    .map_err(|e| CliError::failed(e.to_string()))??;
    println!(
        "kubectl: get svc,pods -A -o json over {} contexts, one after another: {:.2} s ({:.1} MiB of JSON)",
        size.clusters,
        t_kubectl.as_secs_f64(),
        bytes as f64 / 1048576.0
    );
    println!("ratio: meshdeck is {:.1}x faster than the kubectl loop", t_kubectl.as_secs_f64() / t_inventory.as_secs_f64());
    Ok(())
}

/// Pod events the churn part of `bench tui` writes (2,000 a second).
const CHURN_EVENTS: u64 = 10_000;

/// What fetching the lists costs with nothing done to them.
struct Floor {
    elapsed: Duration,
    pod_bytes: usize,
    service_bytes: usize,
}

/// The network floor of an inventory: every cluster's pods and services listed as the
/// watchers list them (pages of 500), `concurrency` requests at a time, the bodies read
/// and dropped. Only `metadata.continue` is looked at, to fetch the next page.
async fn raw_floor(clusters: &[crate::registry::Cluster], concurrency: usize) -> Result<Floor, CliError> {
    use futures::StreamExt;
    // A list's metadata comes before its items: the token is in the first bytes.
    let continue_token = |body: &str| -> Option<String> {
        let head = &body[..body.len().min(1024)];
        let start = head.find("\"continue\":\"")? + "\"continue\":\"".len();
        let len = head[start..].find('"')?;
        Some(head[start..start + len].to_string()).filter(|t| !t.is_empty())
    };
    let started = Instant::now();
    let lists = clusters.iter().filter_map(|c| c.client.clone().ok()).flat_map(|client| {
        [("pods", client.clone()), ("services", client)].into_iter().map(|(what, client)| async move {
            let mut bytes = 0usize;
            let mut next: Option<String> = None;
            loop {
                let mut path = format!("/api/v1/{what}?limit=500");
                if let Some(token) = &next {
                    path.push_str(&format!("&continue={token}"));
                }
                let request = http::Request::get(path).body(Vec::new()).map_err(|e| e.to_string())?;
                let body = client.request_text(request).await.map_err(|e| e.to_string())?;
                bytes += body.len();
                // A continue token is URL-safe base64 (a real server's and the sim's).
                next = continue_token(&body);
                if next.is_none() {
                    return Ok::<_, String>((what, bytes));
                }
            }
        })
    });
    let results: Vec<Result<(&str, usize), String>> = futures::stream::iter(lists).buffer_unordered(concurrency).collect().await;
    let mut floor = Floor { elapsed: started.elapsed(), pod_bytes: 0, service_bytes: 0 };
    for r in results {
        match r.map_err(CliError::failed)? {
            ("pods", b) => floor.pod_bytes += b,
            (_, b) => floor.service_bytes += b,
        }
    }
    Ok(floor)
}

/// A synthetic inventory shaped like the sim's: `services` services per cluster with v1 and v2.
pub fn synthetic_inventory(clusters: usize, services: usize) -> crate::inventory::FleetSnapshot {
    use crate::inventory::{ClusterState, ClusterView, FleetSnapshot, MeshFacts, ServicePresence, ServiceRow, VersionCount};
    let names: Vec<String> = (1..=clusters).map(|i| format!("cluster{i}")).collect();
    let views = names
        .iter()
        .enumerate()
        .map(|(i, n)| ClusterView {
            name: n.clone(),
            context: n.clone(),
            state: ClusterState::Live,
            version_label: "version".into(),
            mesh: MeshFacts {
                istio_version: Some("1.27.3".into()),
                trust_domain: Some(format!("{n}.local")),
                cluster_id: Some(n.clone()),
                network: Some(format!("network{}", i + 1)),
                east_west_gateway: Some(meshdeck_sim::fleet::eastwest_address(i + 1)),
                istio_crds: true,
                ..Default::default()
            },
            ..Default::default()
        })
        .collect();
    let count = VersionCount { ready: 1, total: 1, injected: 1 };
    let rows = (0..services)
        .map(|s| {
            let presence = ServicePresence {
                versions: [("v1".to_string(), count), ("v2".to_string(), count)].into(),
                ports: vec![8080],
                selector: [("app".to_string(), format!("svc-{s:04}"))].into(),
                ..Default::default()
            };
            std::sync::Arc::new(ServiceRow {
                name: format!("svc-{s:04}"),
                namespace: format!("apps-{}", s % 10),
                clusters: names.iter().map(|n| (n.clone(), presence.clone())).collect(),
            })
        })
        .collect();
    FleetSnapshot { clusters: views, services: rows, ..Default::default() }
}

fn bench_render(size: &RenderSize) -> Result<(), CliError> {
    use crate::plan::{Destination, Plan, RouteAction, ServiceRef, TopologyChoice, TrafficRoute};
    let inv = synthetic_inventory(size.clusters, size.services);
    let plans: Vec<Plan> = (0..size.plans)
        .map(|i| {
            let s = i % size.services;
            let c = |k: usize| format!("cluster{}", (i * 7 + k * 13) % size.clusters + 1);
            let (a, b) = (c(0), c(1));
            let b = if a == b { format!("cluster{}", (i + 1) % size.clusters + 1) } else { b };
            let route = TrafficRoute {
                name: format!("plan-{i}"),
                service: ServiceRef { name: format!("svc-{s:04}"), namespace: format!("apps-{}", s % 10) },
                from_clusters: vec![a.clone()],
                action: RouteAction::Split(vec![
                    Destination { cluster: b.clone(), version: "v2".into(), weight: 60 },
                    Destination { cluster: a.clone(), version: "v1".into(), weight: 30 },
                    Destination { cluster: a, version: "v2".into(), weight: 10 },
                ]),
                outlier_detection: None,
                retries: None,
                timeout: None,
                matches: vec![],
                topology: TopologyChoice::Auto,
                port: None,
                trust_accepted_by: Vec::new(),
            };
            Plan { routes: vec![route], ..Default::default() }
        })
        .collect();
    let started = Instant::now();
    let mut objects = 0;
    let mut bytes = 0;
    for p in &plans {
        let out = crate::render::render(p, &inv).map_err(|e| CliError::failed(e.to_string()))?;
        objects += out.object_count();
        bytes += out.to_yaml().len();
    }
    let t = started.elapsed();
    println!(
        "render: {} plans over {} clusters x {} services: {objects} objects ({:.1} MiB of YAML) in {:.3} s ({:.0} us per plan, YAML included)",
        size.plans,
        size.clusters,
        size.services,
        bytes as f64 / 1048576.0,
        t.as_secs_f64(),
        t.as_secs_f64() * 1e6 / size.plans as f64
    );
    Ok(())
}

async fn bench_apply(size: &FleetSize, latency: Option<&str>) -> Result<(), CliError> {
    use crate::apply::{ApplyOptions, Confirmation, Pipeline, desired_for_plan, prepare};
    let sim = SimProcess::start(&FleetSize { services: 0, ..size.clone() })?;
    let global = GlobalArgs {
        kubeconfig: Some(sim.kubeconfig.clone()),
        contexts: sim.contexts(size.clusters),
        read_only: false,
        ..Default::default()
    };
    let (clusters, _) = super::fleet::registry(&global).await?;
    let mut inv = Inventory::start(&clusters);
    let snap = inv.settled(Duration::from_secs(60)).await;
    // Every cluster calls reviews: half to v3 in cluster2, half to v1 in cluster1.
    let from: Vec<String> = sim.contexts(size.clusters);
    let text = format!(
        "apiVersion: meshdeck.dev/v1alpha1\nkind: TrafficRoute\nmetadata: {{name: fleet-canary}}\nspec:\n  service: reviews.default\n  from: {{clusters: [{}]}}\n  split:\n    - {{cluster: cluster2, version: v3, weight: 50}}\n    - {{cluster: cluster1, version: v1, weight: 50}}\n",
        from.join(", ")
    );
    let plan = crate::plan::load("bench.yaml", &text, &snap).map_err(|e| CliError::failed(format!("{e:?}")))?;
    let rendered = crate::render::render(&plan, &snap).map_err(|e| CliError::failed(e.to_string()))?;
    let opts = ApplyOptions { force_conflicts: false, concurrency: 8, progress: None, ..Default::default() };
    let failed = |e: crate::apply::ApplyError| CliError::failed(e.to_string());
    // The pipeline every front uses, with a history of its own: the bench's fleet is its own.
    let state = tempfile::tempdir().map_err(|e| CliError::failed(e.to_string()))?;
    let pipeline = Pipeline::new(&clusters, state.path(), crate::policy::Persona::unrestricted(), opts.clone()).map_err(failed)?;
    let started = Instant::now();
    let prepared = pipeline.plan(&plan, &rendered, &[]).await.map_err(failed)?;
    let t_prepare = started.elapsed();
    let written = pipeline.write(prepared, Confirmation::Benchmark, || Ok(())).await.map_err(failed)?;
    let t_meshdeck = started.elapsed();
    println!(
        "meshdeck: {} objects on {} clusters ({:?}): preflight + dry run + diff {:.2} s, total with write and verify {:.2} s",
        rendered.object_count(),
        rendered.clusters.len(),
        written.record.report.outcome,
        t_prepare.as_secs_f64(),
        t_meshdeck.as_secs_f64()
    );
    // Back to empty, so kubectl applies the same objects to the same state.
    let (_, undo) = pipeline.rollback(&written.record.id, true).await.map_err(failed)?;
    pipeline.write(undo, Confirmation::Benchmark, || Ok(())).await.map_err(failed)?;
    if let Some(latency) = latency {
        let delay = meshdeck_sim::faults::Fault::parse(&format!("slow:{latency}")).map_err(CliError::bad_input)?;
        let meshdeck_sim::faults::Fault::Slow(delay) = delay else { return Err(CliError::bad_input("--latency takes a duration")) };
        sim.fault("cluster2", &format!("slow:{}ms", delay.as_millis()))?;
        // A process meeting the far cluster for the first time (nothing discovered yet).
        let (clusters, _) = super::fleet::registry(&global).await?;
        // Only cluster2's part: the round trips a far cluster costs.
        let far = crate::render::RenderedObjects {
            clusters: rendered.clusters.iter().filter(|(c, _)| *c == "cluster2").map(|(c, o)| (c.clone(), o.clone())).collect(),
            notes: Vec::new(),
        };
        let started = Instant::now();
        let desired = desired_for_plan(&clusters, &plan, &far, &Default::default()).await.map_err(|e| CliError::failed(e.to_string()))?;
        let n = desired.iter().filter(|(t, _)| t.cluster == "cluster2").count();
        prepare(&clusters, desired.into_iter().filter(|(t, _)| t.cluster == "cluster2").collect(), &opts)
            .await
            .map_err(|e| CliError::failed(e.to_string()))?;
        let took = started.elapsed();
        sim.fault("cluster2", "healthy")?;
        println!(
            "latency: cluster2 {} ms away: prune scope, preflight, dry run and diff of its {n} objects {:.2} s = {:.1} round trips",
            delay.as_millis(),
            took.as_secs_f64(),
            took.as_secs_f64() / delay.as_secs_f64()
        );
    }
    drop(inv);
    if size.no_kubectl || !kubectl_available() {
        println!("kubectl: not run");
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("meshdeck-bench-render-{}", std::process::id()));
    let _cleanup = tempfile_dir::Dir(dir.clone());
    for (cluster, objs) in &rendered.clusters {
        let cdir = dir.join(cluster);
        std::fs::create_dir_all(&cdir).map_err(|e| CliError::failed(e.to_string()))?;
        for o in objs {
            std::fs::write(cdir.join(crate::render::file_name(o)), crate::yaml::to_yaml(o)).map_err(|e| CliError::failed(e.to_string()))?;
        }
    }
    let kubeconfig = sim.kubeconfig.clone();
    let clusters_with_objects: Vec<String> = rendered.clusters.keys().cloned().collect();
    // kubectl cluster by cluster, then 8 clusters at a time; objects removed in between
    // (by kubectl itself) so both start from the same empty state.
    let run = move |parallel: usize, verb: &'static str| -> Result<Duration, CliError> {
        let home = dir.join("home");
        let started = Instant::now();
        for batch in clusters_with_objects.chunks(parallel) {
            let children: Vec<_> = batch
                .iter()
                .map(|c| {
                    let mut cmd = Command::new("kubectl");
                    cmd.args(["--context", c]);
                    match verb {
                        "apply" => cmd.args(["apply", "--server-side", "-f"]),
                        _ => cmd.args(["delete", "--wait=false", "-f"]),
                    };
                    cmd.arg(dir.join(c)).env("KUBECONFIG", &kubeconfig).env("HOME", &home).stdout(Stdio::null()).stderr(Stdio::piped());
                    cmd.spawn().map(|child| (c.clone(), child)).map_err(|e| CliError::failed(e.to_string()))
                })
                .collect::<Result<_, _>>()?;
            for (c, child) in children {
                let out = child.wait_with_output().map_err(|e| CliError::failed(e.to_string()))?;
                if !out.status.success() {
                    return Err(CliError::failed(format!("kubectl {verb} on {c}: {}", String::from_utf8_lossy(&out.stderr))));
                }
            }
        }
        Ok(started.elapsed())
    };
    let (t_serial, t_parallel) = tokio::task::spawn_blocking(move || -> Result<(Duration, Duration), CliError> {
        let serial = run(1, "apply")?;
        run(8, "delete")?;
        Ok((serial, run(8, "apply")?))
    })
    .await
    .map_err(|e| CliError::failed(e.to_string()))??;
    println!("kubectl: apply --server-side of the same files, cluster by cluster: {:.2} s", t_serial.as_secs_f64());
    println!("kubectl: the same, 8 clusters at a time: {:.2} s", t_parallel.as_secs_f64());
    println!(
        "ratio: meshdeck (checked, all-or-nothing, verified) is {:.1}x faster than cluster by cluster, {:.1}x faster than 8 at a time",
        t_serial.as_secs_f64() / t_meshdeck.as_secs_f64(),
        t_parallel.as_secs_f64() / t_meshdeck.as_secs_f64()
    );
    Ok(())
}

fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(i).copied().unwrap_or(f64::NAN)
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

async fn bench_tui() -> Result<(), CliError> {
    use crate::tui::app::{AppState, update};
    use crate::tui::msg::Msg;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    let theme = crate::tui::theme::Theme::builtin("dark");
    let draw = |term: &mut Terminal<TestBackend>, app: &AppState| -> Result<(), CliError> {
        term.draw(|f| crate::tui::views::draw(f, app, &theme)).map(|_| ()).map_err(|e| CliError::failed(e.to_string()))
    };

    // 1. Frames: 10,000 services over 50 clusters at 200x60.
    let built = Instant::now();
    let snap = std::sync::Arc::new(synthetic_inventory(50, 10_000));
    let mut app = AppState::new(snap.clone(), crate::tui::keymap::Keymap::builtin("default"), false, chrono::Utc::now());
    let t_rows = built.elapsed();
    let mut term = Terminal::new(TestBackend::new(200, 60)).map_err(|e| CliError::failed(e.to_string()))?;
    update(&mut app, Msg::Layout { rows: 45 });
    let mut frames = Vec::new();
    for i in 0..500 {
        if i % 10 == 0 {
            update(&mut app, Msg::Key(crossterm::event::KeyEvent::from(crossterm::event::KeyCode::PageDown)));
        }
        let t = Instant::now();
        draw(&mut term, &app)?;
        frames.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let mut updates = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        update(&mut app, Msg::Fleet(snap.clone()));
        updates.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "frame: 10,000 services x 50 clusters at 200x60: draw p50 {:.2} ms, p99 {:.2} ms (500 frames); new snapshot (filter+sort) p50 {:.1} ms, p99 {:.1} ms; first build {:.0} ms",
        percentile(&mut frames.clone(), 0.5),
        percentile(&mut frames, 0.99),
        percentile(&mut updates.clone(), 0.5),
        percentile(&mut updates, 0.99),
        t_rows.as_secs_f64() * 1000.0
    );

    // 1b. Filter keystrokes on a 100-cluster fleet (20,000 services, 40,000 versions a
    // cluster): each key is one update (filter, sort, select) and one frame.
    let big = std::sync::Arc::new(synthetic_inventory(100, 20_000));
    let mut app = AppState::new(big, crate::tui::keymap::Keymap::builtin("default"), false, chrono::Utc::now());
    update(&mut app, Msg::Layout { rows: 45 });
    draw(&mut term, &app)?;
    let key = |c: crossterm::event::KeyCode| Msg::Key(crossterm::event::KeyEvent::from(c));
    let mut keystrokes = Vec::new();
    let mut narrowest = usize::MAX;
    for round in 0..10 {
        update(&mut app, key(crossterm::event::KeyCode::Char('/')));
        for c in format!("svc-{}{}", round % 2, round).chars().chain(std::iter::repeat_n('\u{8}', 4)) {
            let code = if c == '\u{8}' { crossterm::event::KeyCode::Backspace } else { crossterm::event::KeyCode::Char(c) };
            let t = Instant::now();
            update(&mut app, key(code));
            draw(&mut term, &app)?;
            keystrokes.push(t.elapsed().as_secs_f64() * 1000.0);
            narrowest = narrowest.min(app.rows.len());
        }
        update(&mut app, key(crossterm::event::KeyCode::Esc));
    }
    println!(
        "filter: 20,000 services x 100 clusters at 200x60, a keystroke to its repainted frame: p50 {:.1} ms, p99 {:.1} ms ({} keys; the narrowest filter left {narrowest} rows)",
        percentile(&mut keystrokes.clone(), 0.5),
        percentile(&mut keystrokes.clone(), 0.99),
        keystrokes.len()
    );

    // 2. Event to screen: 500 pod label changes per second through the sim, watchers, aggregator, update and draw.
    let fleet = meshdeck_sim::SimFleet::start(meshdeck_sim::SimConfig { clusters: 3, live: false, ..Default::default() })
        .await
        .map_err(|e| CliError::failed(e.to_string()))?;
    let dir = std::env::temp_dir().join(format!("meshdeck-bench-tui-{}", std::process::id()));
    let _cleanup = tempfile_dir::Dir(dir.clone());
    std::fs::create_dir_all(&dir).map_err(|e| CliError::failed(e.to_string()))?;
    fleet.write_kubeconfig(&dir.join("kubeconfig")).map_err(|e| CliError::failed(e.to_string()))?;
    let global = GlobalArgs {
        kubeconfig: Some(dir.join("kubeconfig")),
        contexts: vec!["cluster1".into(), "cluster2".into(), "cluster3".into()],
        read_only: true,
        ..Default::default()
    };
    let (clusters, _) = super::fleet::registry(&global).await?;
    let mut inv = Inventory::start(&clusters);
    let first = inv.settled(Duration::from_secs(20)).await;
    let mut app = AppState::new(first, crate::tui::keymap::Keymap::builtin("default"), true, chrono::Utc::now());
    let mut term = Terminal::new(TestBackend::new(200, 60)).map_err(|e| CliError::failed(e.to_string()))?;
    let c1 = fleet.cluster("cluster1").cloned().ok_or_else(|| CliError::failed("no cluster1"))?;
    let pods_rt = c1.resource("", "v1", "pods").ok_or_else(|| CliError::failed("no pods"))?;
    let pod = c1
        .store()
        .all_of(&pods_rt)
        .iter()
        .find(|p| p.labels().and_then(|l| l.get("app")).and_then(|a| a.as_str()) == Some("ratings"))
        .map(|p| p.name().to_string())
        .ok_or_else(|| CliError::failed("no ratings pod"))?;
    let sent = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<u64, Instant>::new()));
    let writer = {
        let sent = sent.clone();
        let c1 = c1.clone();
        tokio::spawn(async move {
            // 4 events every 2 ms: 2,000 pod events per second for 5 s.
            let mut tick = tokio::time::interval(Duration::from_millis(2));
            let opts = meshdeck_sim::store::WriteOptions { manager: "bench".into(), ..Default::default() };
            let started = Instant::now();
            for n in 1..=CHURN_EVENTS {
                if n % 4 == 1 {
                    tick.tick().await;
                }
                let patch = serde_json::json!({"metadata": {"labels": {"version": format!("b{n}")}}});
                sent.lock().unwrap_or_else(|p| p.into_inner()).insert(n, Instant::now());
                let _ = c1.store().merge_patch(&pods_rt, "default", &pod, &patch, &opts);
            }
            started.elapsed()
        })
    };
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut last_seen = 0u64;
    // Until the writer is done, and a second more for the last events to show.
    let mut done_at: Option<Instant> = None;
    while done_at.is_none_or(|d| d.elapsed() < Duration::from_secs(1)) && started.elapsed() < Duration::from_secs(60) {
        if done_at.is_none() && writer.is_finished() {
            done_at = Some(Instant::now());
        }
        if tokio::time::timeout(Duration::from_millis(500), inv.snapshots.changed()).await.is_err() {
            continue;
        }
        let snap = inv.snapshots.borrow_and_update().clone();
        update(&mut app, Msg::Fleet(snap.clone()));
        draw(&mut term, &app)?;
        let newest = snap
            .service("ratings.default")
            .and_then(|r| r.clusters.get("cluster1"))
            .and_then(|p| p.versions.keys().filter_map(|v| v.strip_prefix('b')?.parse::<u64>().ok()).max());
        if let Some(n) = newest.filter(|n| *n > last_seen) {
            last_seen = n;
            if let Some(t) = sent.lock().unwrap_or_else(|p| p.into_inner()).get(&n) {
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    let wrote_for = writer.await.map_err(|e| CliError::failed(e.to_string()))?;
    let rate = CHURN_EVENTS as f64 / wrote_for.as_secs_f64().max(1e-9);
    println!(
        "churn: {rate:.0} pod events/s (asked: 2,000/s; the in-process sim writes them) for {:.1} s: event-to-screen p50 {:.0} ms, p99 {:.0} ms over {} screens (snapshots are coalesced every 100 ms)",
        wrote_for.as_secs_f64(),
        percentile(&mut latencies.clone(), 0.5),
        percentile(&mut latencies, 0.99),
        latencies.len()
    );

    // 3. Idle: the loop's work when nothing happens (1 Hz ticks, health probes).
    let cpu_before = cpu_seconds().unwrap_or(0.0);
    let idle = Instant::now();
    let mut frames = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while idle.elapsed() < Duration::from_secs(10) {
        tokio::select! {
            _ = tick.tick() => {
                update(&mut app, Msg::Tick(chrono::Utc::now()));
                draw(&mut term, &app)?;
                frames += 1;
            }
            changed = inv.snapshots.changed() => {
                if changed.is_ok() {
                    let snap = inv.snapshots.borrow_and_update().clone();
                    update(&mut app, Msg::Fleet(snap));
                    draw(&mut term, &app)?;
                    frames += 1;
                }
            }
        }
    }
    let cpu = cpu_seconds().unwrap_or(0.0) - cpu_before;
    println!(
        "idle: {frames} frames in 10 s; CPU {:.2}% of one core (cockpit loop, watchers and the in-process sim together)",
        cpu * 100.0 / 10.0
    );
    Ok(())
}
