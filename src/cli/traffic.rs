//! `meshdeck traffic [SERVICE]`: the intended split beside the observed one, per
//! calling cluster, from each cluster's Prometheus; `meshdeck proxy-status`:
//! what each istiod has pushed to its proxies (see `observe`).

use std::time::Duration;

use clap::Args;

use super::output::{Format, table};
use super::{CliError, GlobalArgs, fleet, routes};
use crate::inventory::Inventory;
use crate::inventory::routes::effective_routes;
use crate::observe::traffic::{self, Metrics, ObservedRoute};
use crate::observe::{self, sync};

#[derive(Args, Debug)]
pub struct TrafficArgs {
    /// `name.namespace`, or a name found in one namespace only; every routed service when left out.
    pub service: Option<String>,
    /// Only calls from this cluster (its registry name).
    #[arg(long, value_name = "CLUSTER", add = clap_complete::engine::ArgValueCompleter::new(super::completion::contexts))]
    pub from: Option<String>,
    /// The window the shares are counted over, ending now (30s, 1m, 5m…).
    #[arg(long, default_value = "1m")]
    pub window: String,
    /// Print again every N seconds (Ctrl-C ends it).
    #[arg(long, value_name = "SECONDS")]
    pub watch: Option<u64>,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// How long to wait for slow clusters.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct ProxyStatusArgs {
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}%")).unwrap_or_else(|| "-".into())
}

pub fn render_table(observed: &[ObservedRoute]) -> String {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for r in observed {
        // The service and caller once, on the route's first row.
        let mut first = true;
        let mut head = || if std::mem::take(&mut first) { (r.service.clone(), r.from.clone()) } else { (String::new(), String::new()) };
        // Once per caller: why its numbers are unknown, or cover less than the window.
        let note = match (&r.metrics, &r.error) {
            (Metrics::Ok, Some(e)) => Some(format!("{}: {e}", r.from)),
            (Metrics::Ok, None) => None,
            (m, e) => {
                let what = if *m == Metrics::None { "no metrics" } else { "metrics unreachable" };
                Some(format!("{}: {what}: {}", r.from, e.as_deref().unwrap_or("")))
            }
        };
        if let Some(note) = note.filter(|n| !notes.contains(n)) {
            notes.push(note);
        }
        for d in &r.destinations {
            let (s, f) = head();
            let dest = match &d.version {
                Some(v) => format!("{} {v}", d.cluster),
                None => d.cluster.clone(),
            };
            if r.metrics != Metrics::Ok {
                rows.push(vec![s, f, dest, pct(d.intended), "unknown".into()]);
                continue;
            }
            let drift = if d.drift {
                let (lo, hi) = d.bound.unwrap_or_default();
                format!("✗ drift (99.9% bound {lo:.1}–{hi:.1}%)")
            } else {
                String::new()
            };
            rows.push(vec![s, f, dest, pct(d.intended), pct(d.observed), d.requests.to_string(), pct(d.success), ms(d.p99_ms), drift]);
        }
        if r.metrics == Metrics::Ok {
            let (s, f) = head();
            let mut total = format!("all: {:.1}/s", r.rate);
            if r.unreached > 0 {
                total.push_str(&format!(", {} reached no workload", r.unreached));
            }
            if r.requests == 0 {
                total = format!("no requests in the last {}s", r.window_seconds);
            }
            let blank = String::new;
            rows.push(vec![s, f, total, blank(), blank(), r.requests.to_string(), pct(r.success), ms(r.p99_ms)]);
        }
    }
    let mut out = table(&["SERVICE", "FROM", "DESTINATION", "INTENDED", "OBSERVED", "REQUESTS", "SUCCESS", "P99", "DRIFT"], &rows);
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

fn ms(v: Option<f64>) -> String {
    v.map(|p| format!("{p:.1}ms")).unwrap_or_else(|| "-".into())
}

pub async fn run(global: &GlobalArgs, args: TrafficArgs) -> Result<(), CliError> {
    let window = traffic::parse_window(&args.window).map_err(|e| CliError::bad_input(format!("--window {e}")))?;
    let (clusters, _) = fleet::registry(global).await?;
    let mut inv = Inventory::start(&clusters);
    let snap = inv.settled(Duration::from_secs(args.timeout)).await;
    let service = args.service.as_deref().map(|s| routes::service_key(&snap, s)).transpose()?;
    if let Some(from) = &args.from {
        routes::known_cluster(&snap, from)?;
    }
    loop {
        let snap = inv.snapshots.borrow().clone();
        let mut found = effective_routes(&snap, service.as_deref(), args.from.as_deref());
        // Without a service named: the routes a VirtualService makes, not every default.
        if service.is_none() {
            found.retain(|r| r.virtual_service.is_some());
        }
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        let seen = observe::observed(&clusters, &found, service.as_deref(), window, now).await;
        match args.output {
            Format::Json => println!(
                "{}",
                serde_json::to_string(&serde_json::json!({"window": args.window, "routes": seen}))
                    .map_err(|e| CliError::failed(e.to_string()))?
            ),
            Format::Table if seen.is_empty() => println!("no routes to observe (meshdeck routes lists them)"),
            Format::Table => print!("{}", render_table(&seen)),
        }
        let Some(every) = args.watch else {
            let drifting: Vec<String> = seen.iter().filter(|r| r.drift).map(|r| format!("{} from {}", r.service, r.from)).collect();
            let unread: Vec<&str> = seen.iter().filter(|r| r.metrics == Metrics::Unreachable).map(|r| r.from.as_str()).collect();
            if !drifting.is_empty() {
                return Err(CliError::failed(format!("observed split off the intended one: {}", drifting.join(", "))));
            }
            if !unread.is_empty() {
                let mut unread = unread;
                unread.dedup();
                return Err(CliError::failed(format!("metrics could not be read from {}", unread.join(", "))));
            }
            return Ok(());
        };
        tokio::time::sleep(Duration::from_secs(every.max(1))).await;
        if args.output == Format::Table {
            println!();
        }
    }
}

/// `meshdeck proxy-status`: each istiod's proxies and whether they have what it sent.
pub async fn proxy_status(global: &GlobalArgs, args: ProxyStatusArgs) -> Result<(), CliError> {
    let (clusters, _) = fleet::registry(global).await?;
    let reads = futures::future::join_all(clusters.iter().map(sync::read)).await;
    let mut rows = Vec::new();
    let mut json = Vec::new();
    let mut unknown = Vec::new();
    for (c, read) in clusters.iter().zip(reads) {
        match read {
            Ok(proxies) => {
                for p in &proxies {
                    let missing = p.unacked();
                    let state = if missing.is_empty() { "SYNCED".to_string() } else { format!("STALE ({})", missing.join(", ")) };
                    let sent = p.last_sent().map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_else(|| "-".into());
                    rows.push(vec![c.name.clone(), p.proxy.clone(), p.proxy_type.clone(), state.clone(), sent]);
                    json.push(serde_json::json!({"cluster": c.name, "proxy": p.proxy, "type": p.proxy_type, "synced": missing.is_empty(),
                        "unacked": missing, "lastSent": p.last_sent()}));
                }
                if proxies.is_empty() {
                    rows.push(vec![c.name.clone(), "-".into(), "-".into(), "no proxies connected".into(), "-".into()]);
                }
            }
            Err(e) => {
                rows.push(vec![c.name.clone(), "-".into(), "-".into(), format!("unknown: {}", e.message()), "-".into()]);
                json.push(serde_json::json!({"cluster": c.name, "error": e.message()}));
                unknown.push(c.name.clone());
            }
        }
    }
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&json).map_err(|e| CliError::failed(e.to_string()))?),
        Format::Table => print!("{}", table(&["CLUSTER", "PROXY", "TYPE", "STATUS", "LAST SENT"], &rows)),
    }
    if !unknown.is_empty() {
        return Err(CliError::failed(format!("istiod could not be asked in {}", unknown.join(", "))));
    }
    Ok(())
}
