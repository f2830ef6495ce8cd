//! `meshdeck inventory`: the cross-cluster service/version table.

use std::time::Duration;

use clap::Args;

use super::output::{Format, table};
use super::{CliError, GlobalArgs, fleet};
use crate::inventory::{FleetSnapshot, ServiceRow};

#[derive(Args, Debug)]
pub struct InventoryArgs {
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Keep watching and print changes as they arrive.
    #[arg(short, long)]
    pub watch: bool,
    /// How long to wait for slow clusters before printing what is known.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub timeout: u64,
}

/// `v1 1/1, v2 0/1`, or `-` where the service does not exist.
pub fn versions_cell(row: &ServiceRow, cluster: &str) -> String {
    match row.clusters.get(cluster) {
        None => "-".into(),
        Some(p) => {
            let mut parts: Vec<String> = p.versions.iter().map(|(v, n)| format!("{v} {}/{}", n.ready, n.total)).collect();
            if p.unversioned.total > 0 {
                parts.push(format!("? {}/{}", p.unversioned.ready, p.unversioned.total));
            }
            if parts.is_empty() { "no pods".into() } else { parts.join(", ") }
        }
    }
}

pub fn render_table(snap: &FleetSnapshot) -> String {
    let mut headers = vec!["SERVICE", "NAMESPACE"];
    let names: Vec<String> = snap.clusters.iter().map(|c| c.name.to_uppercase()).collect();
    headers.extend(names.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = snap
        .services
        .iter()
        .map(|r| {
            let mut cells = vec![r.name.clone(), r.namespace.clone()];
            cells.extend(snap.clusters.iter().map(|c| versions_cell(r, &c.name)));
            cells
        })
        .collect();
    table(&headers, &rows)
}

pub async fn run(global: &GlobalArgs, args: InventoryArgs) -> Result<(), CliError> {
    let (mut inv, snap) = fleet::settled_inventory(global, Duration::from_secs(args.timeout)).await?;
    match args.output {
        // Watching, every line is one JSON object (the first the whole fleet), for jq and pipes.
        Format::Json if args.watch => println!("{}", serde_json::to_string(&*snap).map_err(|e| CliError::failed(e.to_string()))?),
        Format::Json => println!("{}", serde_json::to_string_pretty(&*snap).map_err(|e| CliError::failed(e.to_string()))?),
        Format::Table => {
            print!("{}", render_table(&snap));
            for c in snap.clusters.iter().filter(|c| c.error.is_some()) {
                let e = c.error.as_ref().map(|e| e.message()).unwrap_or_default();
                eprintln!("cluster {} {}: {e}", c.name, c.state.as_str());
            }
            for w in &snap.warnings {
                eprintln!("warning {}: {}", w.code, w.message);
            }
        }
    }
    if !args.watch {
        if snap.clusters.iter().all(|c| c.error.is_some()) {
            return Err(CliError::failed("no cluster answered"));
        }
        return Ok(());
    }
    let mut last = snap;
    loop {
        tokio::select! {
            changed = inv.snapshots.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let next = inv.snapshots.borrow_and_update().clone();
                let now = chrono::Utc::now();
                for change in next.changes_since(&last) {
                    match args.output {
                        Format::Json => {
                            let mut line = serde_json::to_value(&change).unwrap_or_default();
                            line["time"] = serde_json::json!(now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                            println!("{line}");
                        }
                        Format::Table => println!("{} {change}", now.format("%H:%M:%S")),
                    }
                }
                last = next;
            }
            // Interrupted is how a watch ends: 130, as a shell reports Ctrl-C.
            _ = tokio::signal::ctrl_c() => return Err(CliError { code: 130, message: "interrupted".into() }),
        }
    }
}
