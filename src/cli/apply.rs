//! `meshdeck diff`, `apply`, `history` and `rollback`: the apply pipeline from
//! the command line. Persona policy and RBAC preflight come first; nothing is
//! written before the server dry run and the diff, and without confirmation.

use std::path::PathBuf;

use clap::Args;

use super::front::{
    announce_interrupted, cacerts_changed, conclude, confirm, err, history, persona, pipeline, pipeline_reading, report_push, restart_hint,
    show,
};
use super::output::{Format, table};
use super::render::render_plan;
use super::{CliError, GlobalArgs, fleet};
use crate::apply::write::Outcome;
use crate::apply::{Confirmation, Pipeline, Prepared};
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
    /// Replace this plan (repeatable): its objects are pruned in the same all-or-nothing
    /// apply, so this plan can own the routes it owned.
    #[arg(long, value_name = "PLAN")]
    pub replace: Vec<String>,
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
    /// Each write's deadline; one that passes counts as failed (its cluster is restored).
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub request_timeout: u64,
    /// Then wait up to this long for each written cluster's istiod to push it to its proxies (0: do not ask).
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub wait_push: u64,
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
    /// Restore the record's before-state even where later applies or hand edits changed it since.
    #[arg(long)]
    pub force: bool,
    /// Then wait up to this long for each written cluster's istiod to push it to its proxies (0: do not ask).
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub wait_push: u64,
    /// Each write's deadline.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub request_timeout: u64,
}

struct Planned {
    /// The name of a route with a canary section (apply refuses it).
    plan_canary: Option<String>,
    clusters: Vec<Cluster>,
    pipeline: Pipeline,
    prepared: Prepared,
}

/// A plan with a canary section is stepped in by `meshdeck canary`, not applied whole.
fn canary_refusal(file: &std::path::Path, route: &str) -> CliError {
    CliError::bad_input(format!(
        "{}: {route} has a canary section: `meshdeck canary start {}` steps it in by its metrics (apply would write its whole split at once); nothing was written",
        file.display(),
        file.display()
    ))
}

async fn prepare_plan(global: &GlobalArgs, args: &DiffArgs) -> Result<Planned, CliError> {
    let (clusters, _) = fleet::registry(global).await?;
    // The inventory watches the same clients: one registry, one set of connections.
    let mut watching = crate::inventory::Inventory::start(&clusters);
    let inv = watching.settled(std::time::Duration::from_secs(args.timeout)).await;
    drop(watching);
    let plan = super::render::read_plan_replacing(&args.file, &inv, &args.replace)?;
    if !plan.unseen.is_empty() {
        // Unknown is not absent: the plan may be fine, the fleet cannot be judged.
        return Err(CliError::failed(format!("{} (nothing was written)", plan.unseen_line())));
    }
    let persona = persona(&clusters, args.as_persona.as_deref())?;
    let rendered = render_plan(&plan, &inv)?;
    // What Istio will make of it that the plan does not say: said before the diff.
    for (route, line) in &rendered.routing {
        eprintln!("routing: {route}: {line}");
    }
    for n in &rendered.notes {
        eprintln!("note: {n}");
    }
    let pipeline = pipeline(&clusters, persona, args.force_conflicts, args.timeout)?;
    let prepared = pipeline.plan(&plan, &rendered, &args.replace).await.map_err(err)?;
    let plan_canary = plan.routes.iter().find(|r| r.canary.is_some()).map(|r| r.name.clone());
    Ok(Planned { plan_canary, clusters, pipeline, prepared })
}

pub async fn diff(global: &GlobalArgs, args: DiffArgs) -> Result<(), CliError> {
    let p = prepare_plan(global, &args).await?;
    show(&p.prepared);
    eprintln!("(persona {})", p.prepared.persona);
    Ok(())
}

pub async fn apply(global: &GlobalArgs, args: ApplyArgs) -> Result<(), CliError> {
    // Said before any cluster is asked: the file alone shows it.
    if !args.dry_run
        && let Ok(text) = std::fs::read_to_string(&args.diff.file)
        && let Ok(docs) = crate::plan::parse::parse(&args.diff.file.display().to_string(), &text)
        && let Some(d) = docs.iter().find(|d| d.spec.value.canary.is_some())
    {
        return Err(canary_refusal(&args.diff.file, &d.metadata.name.value));
    }
    let mut p = prepare_plan(global, &args.diff).await?;
    if let Some(r) = p.plan_canary.as_ref().filter(|_| !args.dry_run) {
        return Err(canary_refusal(&args.diff.file, r));
    }
    announce_interrupted(p.pipeline.history());
    show(&p.prepared);
    if args.dry_run {
        eprintln!("(server dry run: nothing was written)");
        return Ok(());
    }
    if p.prepared.nothing_to_do() {
        eprintln!("nothing to change");
        return Ok(());
    }
    let yes = if p.prepared.changes.is_noop() {
        // Only removals on dark clusters: recorded, so a later change removes them once they answer.
        eprintln!("nothing to write on the clusters that answer; what is left on the others is recorded");
        Confirmation::NothingToWrite
    } else {
        let question = format!("Apply these changes to {}?", p.prepared.changes.clusters().join(", "));
        confirm(&p.clusters, &p.prepared, args.yes, &question, "not applied")?
    };
    // Writes are bounded by --request-timeout; the examination by --timeout.
    p.pipeline = pipeline(&p.clusters, p.pipeline.persona().clone(), args.diff.force_conflicts, args.request_timeout)?;
    let written_to = p.prepared.changes.clusters();
    let since = chrono::Utc::now();
    let written = p.pipeline.write(p.prepared, yes, || Ok(())).await.map_err(err)?;
    conclude(&written)?;
    report_push(&p.clusters, &written, &written_to, since, args.wait_push).await;
    Ok(())
}

pub async fn rollback(global: &GlobalArgs, args: RollbackArgs) -> Result<(), CliError> {
    let history = history()?;
    history.get(&args.id).map_err(|e| CliError::bad_input(e.to_string()))?;
    let (clusters, _) = fleet::registry(global).await?;
    let persona = persona(&clusters, args.as_persona.as_deref())?;
    // A restore takes back every field it had, whoever holds it now.
    let pipeline = pipeline_reading(history, &clusters, persona, true, args.request_timeout)?;
    announce_interrupted(pipeline.history());
    let (original, prepared) = pipeline.rollback(&args.id, args.force).await.map_err(err)?;
    show(&prepared);
    if prepared.nothing_to_do() && original.report.outcome != Outcome::Pending {
        eprintln!("nothing to change: the fleet is already as it was before {}", args.id);
        return Ok(());
    }
    let restarts = cacerts_changed(&prepared);
    let yes = if prepared.changes.is_noop() && !prepared.unpruned.is_empty() {
        // Every removal is on a dark cluster: recorded, so a later change (or this
        // rollback again) removes them once it answers.
        eprintln!("nothing to write on the clusters that answer; what is left on the others is recorded");
        Confirmation::NothingToWrite
    } else if prepared.changes.is_noop() {
        // An interrupted change whose writes are all undone: recording that finishes it.
        eprintln!("nothing to change: the fleet is already as it was before {}; recording that it is finished", args.id);
        Confirmation::NothingToWrite
    } else {
        let question = format!("Restore {} to before {}?", prepared.changes.clusters().join(", "), args.id);
        confirm(&clusters, &prepared, args.yes, &question, "not rolled back")?
    };
    let written_to = prepared.changes.clusters();
    let since = chrono::Utc::now();
    let written = pipeline.write(prepared, yes, || Ok(())).await.map_err(err)?;
    conclude(&written)?;
    report_push(&clusters, &written, &written_to, since, args.wait_push).await;
    if !restarts.is_empty() {
        restart_hint(&restarts);
    }
    Ok(())
}

pub fn list(args: HistoryArgs) -> Result<(), CliError> {
    let history = history()?;
    let records = history.list().map_err(err)?;
    for bad in history.unreadable().map_err(err)? {
        eprintln!("warning: {bad}");
    }
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&records).map_err(|e| CliError::failed(e.to_string()))?),
        Format::Table => {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.time.chars().take(19).collect(),
                        r.action_label(),
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
