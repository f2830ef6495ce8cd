//! `meshdeck bench …`: benchmarks that print numbers (never assertions).
//! The simulated fleet runs as a child process so meshdeck's own memory and
//! CPU are measured apart from the servers'.

mod apply;
mod inventory;
mod render;
mod sim;
mod soak;
mod tui;

use apply::bench_apply;
use inventory::bench_inventory;
use render::{bench_render, synthetic_inventory};
use sim::bench_sim;
use soak::bench_soak;
use tui::bench_tui;

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

/// `90s`, `20m`, `1h`, `500ms`.
pub(super) fn duration_of(text: &str) -> Result<Duration, String> {
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
pub(super) fn live_model(snap: &crate::inventory::FleetSnapshot) -> BTreeMap<String, BTreeMap<String, Vec<(String, u32)>>> {
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

pub(super) fn percentile(samples: &mut [f64], p: f64) -> f64 {
    samples.sort_by(|a, b| a.total_cmp(b));
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(i).copied().unwrap_or(f64::NAN)
}

/// CPU seconds this process has used (user + system), from /proc.
pub(super) fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}
