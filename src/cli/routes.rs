//! `meshdeck routes [SERVICE] [--from CLUSTER]`: where calls go now, from the live
//! Istio objects of every cluster (see `inventory::routes`).

use std::time::Duration;

use clap::Args;

use super::output::{Format, table};
use super::{CliError, GlobalArgs, fleet};
use crate::inventory::FleetSnapshot;
use crate::inventory::routes::{self, EffectiveRoute};

#[derive(Args, Debug)]
pub struct RoutesArgs {
    /// `name.namespace`, or a name found in one namespace only; every service when left out.
    pub service: Option<String>,
    /// Only calls from this cluster (its registry name).
    #[arg(long, value_name = "CLUSTER", add = clap_complete::engine::ArgValueCompleter::new(super::completion::contexts))]
    pub from: Option<String>,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// How long to wait for slow clusters.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// `name.namespace`, or a name found in one namespace only.
    pub service: String,
    /// The calling cluster whose route to import.
    #[arg(long, value_name = "CLUSTER", add = clap_complete::engine::ArgValueCompleter::new(super::completion::contexts))]
    pub from: String,
    /// The plan's name (default: the VirtualService's, so that apply can adopt its objects).
    #[arg(long)]
    pub name: Option<String>,
    /// How long to wait for slow clusters.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub timeout: u64,
}

/// `reviews` → `reviews.default` when one namespace has it.
pub(super) fn service_key(snap: &FleetSnapshot, wanted: &str) -> Result<String, CliError> {
    if snap.service(wanted).is_some() {
        return Ok(wanted.to_string());
    }
    let matching: Vec<String> = snap.services.iter().filter(|s| s.name == wanted).map(|s| s.key()).collect();
    match matching.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(CliError::bad_input(format!("no service {wanted} in the fleet (meshdeck inventory lists them)"))),
        many => Err(CliError::bad_input(format!("{wanted} is in several namespaces: name one of {}", many.join(", ")))),
    }
}

pub fn render_table(routes: &[EffectiveRoute]) -> String {
    let mut rows = Vec::new();
    for r in routes {
        let via = match &r.virtual_service {
            Some(vs) => format!("{vs} ({})", r.owner),
            None => "default (no VirtualService)".into(),
        };
        let mut first = true;
        for (i, rule) in r.rules.iter().enumerate() {
            let mut rule_name = match (&rule.name, rule.matches.is_empty()) {
                (Some(n), true) => format!("{}: {n}", i + 1),
                (Some(n), false) => format!("{}: {n} if {}", i + 1, rule.matches.join(" or ")),
                (None, true) => format!("{}: {}", i + 1, rule.kind),
                (None, false) => format!("{}: {} if {}", i + 1, rule.kind, rule.matches.join(" or ")),
            };
            let extras: Vec<String> = [
                rule.timeout.as_ref().map(|t| format!("timeout {t}")),
                rule.retries.as_ref().map(|r| format!("retries {r}")),
                rule.fault.as_ref().map(|f| format!("fault {f}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !extras.is_empty() {
                rule_name = format!("{rule_name} [{}]", extras.join("; "));
            }
            for d in &rule.destinations {
                let mut to = match &d.subset {
                    Some(s) => format!("{} ({s})", d.host),
                    None => d.host.clone(),
                };
                if !d.policy.is_empty() {
                    to = format!("{to} [{}]", d.policy.join("; "));
                }
                let targets: Vec<String> = d
                    .targets
                    .iter()
                    .map(|t| {
                        let mut s = t.cluster.clone();
                        if let Some(v) = &t.version {
                            s.push(' ');
                            s.push_str(v);
                        }
                        s.push_str(&format!(" {}/{}", t.ready, t.pods));
                        if let Some(tier) = t.tier {
                            s = format!("#{} {s}", tier + 1);
                        }
                        if let Some(v) = &t.via {
                            s.push_str(&format!(" via {v}"));
                        }
                        s
                    })
                    .collect();
                let (service, from, vs) =
                    if first { (r.service.clone(), r.from.clone(), via.clone()) } else { (String::new(), String::new(), String::new()) };
                first = false;
                rows.push(vec![
                    service,
                    from,
                    vs,
                    std::mem::take(&mut rule_name),
                    format!("{}%", d.weight),
                    to,
                    if targets.is_empty() { "-".into() } else { targets.join("; ") },
                ]);
            }
        }
        for p in &r.problems {
            let mut row = vec![String::new(); 6];
            row[3] = format!("✗ {}", p.code);
            row.push(p.message.clone());
            rows.push(row);
        }
    }
    table(&["SERVICE", "FROM", "VIRTUALSERVICE", "RULE", "WEIGHT", "DESTINATION", "CLUSTER VERSION READY/PODS"], &rows)
}

pub(super) fn known_cluster(snap: &FleetSnapshot, from: &str) -> Result<(), CliError> {
    if snap.cluster(from).is_some() {
        return Ok(());
    }
    let names: Vec<&str> = snap.clusters.iter().map(|c| c.name.as_str()).collect();
    Err(CliError::bad_input(format!("--from {from}: no such cluster (registered: {})", names.join(", "))))
}

pub async fn run(global: &GlobalArgs, args: RoutesArgs) -> Result<(), CliError> {
    let (_inv, snap) = fleet::settled_inventory(global, Duration::from_secs(args.timeout)).await?;
    let service = args.service.as_deref().map(|s| service_key(&snap, s)).transpose()?;
    if let Some(from) = &args.from {
        known_cluster(&snap, from)?;
    }
    let found = routes::effective_routes(&snap, service.as_deref(), args.from.as_deref());
    // A calling cluster that cannot be seen is unknown, not absent: said, and a failure.
    let unknown: Vec<serde_json::Value> = snap
        .clusters
        .iter()
        .filter(|c| args.from.as_deref().is_none_or(|f| f == c.name))
        .filter(|c| !matches!(c.state, crate::inventory::ClusterState::Live | crate::inventory::ClusterState::Degraded))
        .map(|c| serde_json::json!({"from": c.name, "state": c.state.as_str(), "error": c.error.as_ref().map(|e| e.message().to_string())}))
        .collect();
    match args.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"routes": found, "unknown": unknown}))
                .map_err(|e| CliError::failed(e.to_string()))?
        ),
        Format::Table => {
            if found.is_empty() && unknown.is_empty() {
                println!("no routes: no calling cluster with Istio sees the service");
            } else if !found.is_empty() {
                print!("{}", render_table(&found));
            }
            for u in &unknown {
                let why = u["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
                println!(
                    "{}: unknown ({}{why}): its routes cannot be read",
                    u["from"].as_str().unwrap_or("?"),
                    u["state"].as_str().unwrap_or("?")
                );
            }
        }
    }
    if !unknown.is_empty() {
        return Err(CliError::failed(format!(
            "{} calling cluster{} not seen: what {} route{} is unknown",
            unknown.len(),
            if unknown.len() == 1 { "" } else { "s" },
            if unknown.len() == 1 { "it" } else { "they" },
            if unknown.len() == 1 { "s" } else { "" }
        )));
    }
    Ok(())
}

/// `meshdeck import`: the effective route as a TrafficRoute plan on stdout.
pub async fn import(global: &GlobalArgs, args: ImportArgs) -> Result<(), CliError> {
    let (_inv, snap) = fleet::settled_inventory(global, Duration::from_secs(args.timeout)).await?;
    let service = service_key(&snap, &args.service)?;
    known_cluster(&snap, &args.from)?;
    let found = routes::effective_routes(&snap, Some(&service), Some(&args.from));
    let Some(route) = found.first() else {
        return Err(CliError::failed(format!("{service} is not visible from {} (no route to import)", args.from)));
    };
    // Named after the VirtualService, the plan's objects are the hand-written ones:
    // `apply --force-conflicts` adopts them instead of adding a second owner.
    let vs_name = route.virtual_service.as_deref().and_then(|v| v.split_once('/')).map(|(_, n)| n.to_string());
    let name = args.name.or(vs_name).unwrap_or_else(|| format!("{}-{}", service.split('.').next().unwrap_or(&service), args.from));
    let imported = crate::plan::import::import(route, &name)
        .map_err(|why| CliError::failed(format!("cannot import {service} from {}:\n  {}", args.from, why.join("\n  "))))?;
    let plan = crate::plan::Plan { routes: vec![imported], ..Default::default() };
    let how = if route.owner == "hand-written" {
        "# meshdeck apply --force-conflicts -f FILE takes the objects of the same names over; remove\n\
         # any other hand-written object for the host yourself: meshdeck never deletes what it does not own."
    } else {
        "# The same routing as the plan that made it."
    };
    println!(
        "# Imported from VirtualService {} ({}) in {}: the same effective routing as a plan.\n{how}",
        route.virtual_service.as_deref().unwrap_or("-"),
        route.owner,
        route.from
    );
    let dropped = crate::plan::import::not_carried_over(route);
    if !dropped.is_empty() {
        println!("# Not carried over (a TrafficRoute has no words for them; the routing is the same):");
        for d in &dropped {
            println!("#   {d}");
        }
    }
    print!("{}", plan.to_yaml());
    Ok(())
}
