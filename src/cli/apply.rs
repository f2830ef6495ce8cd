//! `meshdeck diff`, `apply`, `history` and `rollback`: the apply pipeline from
//! the command line. Persona policy and RBAC preflight come first; nothing is
//! written before the server dry run and the diff, and without confirmation.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::Args;

use super::output::{Format, table};
use super::render::{read_plan, render_plan};
use super::{CliError, GlobalArgs, fleet};
use crate::apply::history::{History, HistoryRecord};
use crate::apply::write::{ApplyReport, Outcome, execute};
use crate::apply::{ApplyError, ApplyOptions, ChangeSet, Confirmation, WriteGrant, desired_for_plan, desired_for_rollback, prepare};
use crate::config::{config_dir, data_dir};
use crate::policy::Persona;
use crate::registry::Cluster;

#[derive(Args, Debug)]
pub struct DiffArgs {
    #[arg(short = 'f', long = "filename", add = clap_complete::engine::ArgValueCompleter::new(super::completion::plan_files))]
    pub file: PathBuf,
    /// Act as this persona of the policy file.
    #[arg(long)]
    pub as_persona: Option<String>,
    /// Take ownership of fields another manager holds.
    #[arg(long)]
    pub force_conflicts: bool,
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub diff: DiffArgs,
    /// Stop after the server dry run and the diff.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply without asking.
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The history id to undo (see `meshdeck history`).
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(super::completion::history_ids))]
    pub id: String,
    #[arg(short, long)]
    pub yes: bool,
    #[arg(long)]
    pub as_persona: Option<String>,
}

fn err(e: ApplyError) -> CliError {
    CliError::failed(e.to_string())
}

/// The persona for this run: none configured means unrestricted.
pub fn persona(clusters: &[Cluster], explicit: Option<&str>) -> Result<Persona, CliError> {
    crate::policy::persona_for(clusters, explicit, config_dir().as_deref()).map_err(|e| match e {
        crate::policy::PolicyError::File(_) => CliError::bad_input(e.to_string()),
        other => CliError::failed(other.to_string()),
    })
}

pub fn history() -> Result<History, CliError> {
    let dir = data_dir().ok_or_else(|| CliError::failed("no data directory (set MESHDECK_DATA_DIR)"))?;
    History::open(&dir).map_err(err)
}

/// `--yes`, or ask on the terminal; without one, refuse. The answer is the
/// only way to a write grant for `changes`.
fn confirm(clusters: &[Cluster], changes: &ChangeSet, yes: bool, question: &str, refused: &str) -> Result<WriteGrant, CliError> {
    crate::apply::grant::writable(clusters, changes).map_err(err)?;
    if yes {
        return WriteGrant::confirmed(clusters, changes, Confirmation::YesFlag).map_err(err);
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::failed("refusing to write without confirmation: stdin is not a terminal (pass --yes)"));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| CliError::failed(e.to_string()))?;
    if !matches!(line.trim(), "y" | "Y" | "yes") {
        return Err(CliError::failed(refused));
    }
    WriteGrant::confirmed(clusters, changes, Confirmation::Prompt).map_err(err)
}

struct Prepared {
    clusters: Vec<Cluster>,
    persona: Persona,
    plan_names: Vec<String>,
    plan_yaml: String,
    changes: ChangeSet,
}

async fn prepare_plan(global: &GlobalArgs, args: &DiffArgs) -> Result<Prepared, CliError> {
    let (clusters, _) = fleet::registry(global).await?;
    // The inventory watches the same clients: one registry, one set of connections.
    let mut watching = crate::inventory::Inventory::start(&clusters);
    let inv = watching.settled(std::time::Duration::from_secs(args.timeout)).await;
    drop(watching);
    let plan = read_plan(&args.file, &inv)?;
    if !plan.unseen.is_empty() {
        // Unknown is not absent: the plan may be fine, the fleet cannot be judged.
        return Err(CliError::failed(format!("{} (nothing was written)", super::render::unseen_line(&plan))));
    }
    let persona = persona(&clusters, args.as_persona.as_deref())?;
    persona.check(&plan).map_err(|e| CliError::failed(format!("{e} (nothing was written)")))?;
    let rendered = render_plan(&plan, &inv)?;
    let before = history()?.scope_of(&plan.names()).map_err(err)?;
    let desired = desired_for_plan(&clusters, &plan, &rendered, &before).await.map_err(err)?;
    let opts = ApplyOptions { force_conflicts: args.force_conflicts, concurrency: 8, progress: None };
    let changes = prepare(&clusters, desired, &opts).await.map_err(err)?;
    let plan_names = plan.names();
    Ok(Prepared { clusters, persona, plan_names, plan_yaml: plan.to_yaml(), changes })
}

pub async fn diff(global: &GlobalArgs, args: DiffArgs) -> Result<(), CliError> {
    let p = prepare_plan(global, &args).await?;
    print!("{}", p.changes.render_diff());
    eprintln!("{} (persona {})", p.changes.summary(), p.persona.name);
    Ok(())
}

fn finish(history: &History, record: HistoryRecord) -> Result<(), CliError> {
    history.record(&record).map_err(err)?;
    eprint!("{}", record.report.describe());
    eprintln!("recorded as {} (undo: meshdeck rollback {})", record.id, record.id);
    match record.report.outcome {
        Outcome::Applied | Outcome::NoChanges => Ok(()),
        Outcome::RolledBack => Err(CliError::failed("a write failed; every cluster was restored to what it was before")),
        Outcome::RollbackIncomplete => Err(CliError::failed("a write failed and restoring did not complete: see the report above")),
    }
}

pub async fn apply(global: &GlobalArgs, args: ApplyArgs) -> Result<(), CliError> {
    let force = args.diff.force_conflicts;
    let p = prepare_plan(global, &args.diff).await?;
    print!("{}", p.changes.render_diff());
    eprintln!("{}", p.changes.summary());
    if args.dry_run {
        eprintln!("(server dry run: nothing was written)");
        return Ok(());
    }
    if p.changes.is_noop() {
        eprintln!("nothing to change");
        return Ok(());
    }
    let question = format!("Apply these changes to {}?", p.changes.clusters().join(", "));
    let grant = confirm(&p.clusters, &p.changes, args.yes, &question, "not applied")?;
    let history = history()?;
    let opts = ApplyOptions { force_conflicts: force, concurrency: 8, progress: None };
    let report = execute(&p.clusters, &p.changes, &opts, &grant).await.map_err(err)?;
    let record = HistoryRecord::new("apply", p.persona.name, p.plan_names, p.plan_yaml, report, p.changes, None);
    finish(&history, record)
}

pub async fn rollback(global: &GlobalArgs, args: RollbackArgs) -> Result<(), CliError> {
    let history = history()?;
    let original = history.get(&args.id).map_err(|e| CliError::bad_input(e.to_string()))?;
    let (clusters, _) = fleet::registry(global).await?;
    let persona = persona(&clusters, args.as_persona.as_deref())?;
    let desired = desired_for_rollback(&original);
    let opts = ApplyOptions { force_conflicts: true, concurrency: 8, progress: None };
    let changes = prepare(&clusters, desired, &opts).await.map_err(err)?;
    print!("{}", changes.render_diff());
    eprintln!("{}", changes.summary());
    if changes.is_noop() {
        eprintln!("nothing to change: the fleet is already as it was before {}", args.id);
        return Ok(());
    }
    let question = format!("Restore {} to before {}?", changes.clusters().join(", "), args.id);
    let grant = confirm(&clusters, &changes, args.yes, &question, "not rolled back")?;
    let report: ApplyReport = execute(&clusters, &changes, &opts, &grant).await.map_err(err)?;
    let record = HistoryRecord::new("rollback", persona.name, original.plans.clone(), String::new(), report, changes, Some(args.id));
    finish(&history, record)
}

pub fn list(args: HistoryArgs) -> Result<(), CliError> {
    let records = history()?.list().map_err(err)?;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&records).map_err(|e| CliError::failed(e.to_string()))?),
        Format::Table => {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.time.chars().take(19).collect(),
                        r.action.clone(),
                        r.persona.clone(),
                        r.plans.join(","),
                        r.clusters.join(","),
                        format!("{:?}", r.report.outcome),
                        r.changes.summary(),
                        r.rollback_of.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print!("{}", table(&["ID", "TIME", "ACTION", "PERSONA", "PLANS", "CLUSTERS", "OUTCOME", "CHANGES", "UNDOES"], &rows));
        }
    }
    Ok(())
}
