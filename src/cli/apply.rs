//! `meshdeck diff`, `apply`, `history` and `rollback`: the apply pipeline from
//! the command line. Persona policy and RBAC preflight come first; nothing is
//! written before the server dry run and the diff, and without confirmation.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Args;

use super::output::{Format, table};
use super::render::render_plan;
use super::{CliError, GlobalArgs, fleet};
use crate::apply::history::{History, HistoryRecord};
use crate::apply::write::{ApplyReport, Outcome, execute};
use crate::apply::{ApplyError, ApplyOptions, ChangeSet, Confirmation, WriteGrant, desired_for_plan, prepare};
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
    /// Each write's deadline.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub request_timeout: u64,
}

pub(super) fn err(e: ApplyError) -> CliError {
    let hint = match &e {
        ApplyError::DryRun(lines) if lines.iter().any(|l| l.contains("409") && l.contains("conflict")) => {
            "\nhint: another field manager owns these fields; --force-conflicts lets meshdeck take them (the diff shows what changes)"
        }
        _ => "",
    };
    CliError::failed(format!("{e}{hint}"))
}

/// The persona for this run: none configured means unrestricted.
pub fn persona(clusters: &[Cluster], explicit: Option<&str>) -> Result<Persona, CliError> {
    crate::policy::persona_for(clusters, explicit, config_dir().as_deref()).map_err(|e| match e {
        crate::policy::PolicyError::File(_) | crate::policy::PolicyError::UnknownPersona(_) => CliError::bad_input(e.to_string()),
        other => CliError::failed(other.to_string()),
    })
}

pub fn history() -> Result<History, CliError> {
    let dir = data_dir().ok_or_else(|| CliError::failed("no data directory (set MESHDECK_DATA_DIR)"))?;
    History::open(&dir).map_err(err)
}

/// `--yes`, or ask on the terminal; without one, refuse. The answer is the
/// only way to a write grant for `changes`.
pub(super) fn confirm(clusters: &[Cluster], changes: &ChangeSet, yes: bool, question: &str, refused: &str) -> Result<WriteGrant, CliError> {
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
    let plan = super::render::read_plan_replacing(&args.file, &inv, &args.replace)?;
    if !plan.unseen.is_empty() {
        // Unknown is not absent: the plan may be fine, the fleet cannot be judged.
        return Err(CliError::failed(format!("{} (nothing was written)", plan.unseen_line())));
    }
    let persona = persona(&clusters, args.as_persona.as_deref())?;
    persona.check(&plan).map_err(|e| CliError::failed(format!("{e} (nothing was written)")))?;
    let rendered = render_plan(&plan, &inv)?;
    let mut before = history()?.scope_of(&plan.names()).map_err(err)?;
    let replaced = history()?.scope_of(&args.replace).map_err(err)?;
    before.namespaces.extend(replaced.namespaces);
    before.namespaces.extend(plan.routes.iter().map(|r| r.service.namespace.clone()));
    before.replacing = args.replace.clone();
    let desired = desired_for_plan(&clusters, &plan, &rendered, &before).await.map_err(err)?;
    let opts = ApplyOptions { force_conflicts: args.force_conflicts, concurrency: 8, progress: None, ..Default::default() };
    let changes = prepare(&clusters, desired, &opts).await.map_err(err)?;
    // Prunes too: every object written or deleted is the persona's to touch.
    persona.check_changes(&plan.names().join(","), &changes).map_err(|e| CliError::failed(format!("{e} (nothing was written)")))?;
    // One record for both: rolling it back restores the replaced plan too.
    let mut plan_names = plan.names();
    plan_names.extend(args.replace.iter().cloned());
    Ok(Prepared { clusters, persona, plan_names, plan_yaml: plan.to_yaml(), changes })
}

pub async fn diff(global: &GlobalArgs, args: DiffArgs) -> Result<(), CliError> {
    let p = prepare_plan(global, &args).await?;
    print!("{}", p.changes.render_diff());
    eprintln!("{} (persona {})", p.changes.summary(), p.persona.name);
    Ok(())
}

/// Say what an earlier, interrupted apply left, so the operator can finish it.
pub(super) fn announce_interrupted(history: &History) {
    for r in history.interrupted().unwrap_or_default() {
        eprintln!(
            "warning: {} {} ({}) was interrupted before it finished; some of its changes may be live: `meshdeck rollback {}` restores the state before it",
            r.action,
            r.id,
            r.plans.join(","),
            r.id
        );
    }
    for bad in history.unreadable().unwrap_or_default() {
        eprintln!("warning: {bad}");
    }
}

/// Ctrl-C or SIGTERM while writing: the first stops new writes (what was written is
/// restored and recorded); the second leaves at once, saying what is left.
fn on_interrupt(cancel: Arc<AtomicBool>, id: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => return,
        };
        for round in 0.. {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            if round == 0 {
                cancel.store(true, Ordering::SeqCst);
                eprintln!("\ninterrupted: no more writes; restoring what was written (interrupt again to leave now)");
            } else {
                eprintln!("\nleft while restoring: {id} is recorded as pending; `meshdeck rollback {id}` restores the state before it");
                std::process::exit(130);
            }
        }
    })
}

/// Write a confirmed change set with its intent recorded first, one apply at a time.
pub(super) async fn write_recorded(
    clusters: &[Cluster],
    changes: ChangeSet,
    grant: &WriteGrant,
    opts: ApplyOptions,
    intent: HistoryRecord,
) -> Result<(), CliError> {
    let history = history()?;
    let _lock = history.lock(&format!("{} {}", intent.action, intent.id)).map_err(err)?;
    let mut intent = intent;
    intent.fleet = crate::apply::rollback::identities(clusters, changes.clusters_touched()).await;
    history.record(&intent).map_err(err)?;
    let cancel = Arc::new(AtomicBool::new(false));
    let signals = on_interrupt(cancel.clone(), intent.id.clone());
    let opts = ApplyOptions { cancel: Some(cancel.clone()), ..opts };
    let result = execute(clusters, &changes, &opts, grant).await;
    signals.abort();
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            // Nothing was written (the fleet changed, or a cluster did not answer): no intent is left pending.
            let empty = ApplyReport { outcome: Outcome::NoChanges, clusters: Default::default() };
            let _ = history.record(&intent.clone().finished(empty));
            return Err(err(e));
        }
    };
    let mut record = intent.finished(report);
    record.after = crate::apply::rollback::after_state(clusters, &changes).await;
    // The report first: a failure to record must not hide what happened.
    eprint!("{}", record.report.describe());
    history.record(&record).map_err(|e| CliError::failed(format!("{e}: the report above was not recorded")))?;
    eprintln!("recorded as {} (undo: meshdeck rollback {})", record.id, record.id);
    let interrupted = cancel.load(Ordering::SeqCst);
    match record.report.outcome {
        Outcome::RolledBack if interrupted => {
            Err(CliError { code: 130, message: "interrupted: every cluster was restored to what it was before".into() })
        }
        Outcome::Applied | Outcome::NoChanges => Ok(()),
        Outcome::RolledBack => Err(CliError::failed("a write failed; every cluster was restored to what it was before")),
        Outcome::RollbackIncomplete | Outcome::Pending => Err(CliError::failed(format!(
            "restoring did not complete: see the report above; `meshdeck rollback {}` tries again",
            record.id
        ))),
    }
}

pub(super) fn write_options(force: bool, timeout: u64) -> ApplyOptions {
    ApplyOptions {
        force_conflicts: force,
        concurrency: 8,
        call_timeout: Some(std::time::Duration::from_secs(timeout.max(1))),
        ..Default::default()
    }
}

pub async fn apply(global: &GlobalArgs, args: ApplyArgs) -> Result<(), CliError> {
    let force = args.diff.force_conflicts;
    announce_interrupted(&history()?);
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
    let intent = HistoryRecord::pending("apply", p.persona.name, p.plan_names, p.plan_yaml, p.changes.clone(), None);
    write_recorded(&p.clusters, p.changes, &grant, write_options(force, args.request_timeout), intent).await
}

pub async fn rollback(global: &GlobalArgs, args: RollbackArgs) -> Result<(), CliError> {
    let history = history()?;
    history.get(&args.id).map_err(|e| CliError::bad_input(e.to_string()))?;
    announce_interrupted(&history);
    let (clusters, _) = fleet::registry(global).await?;
    let persona = persona(&clusters, args.as_persona.as_deref())?;
    let (original, desired) = crate::apply::rollback::plan(&clusters, &history, &args.id, args.force).await.map_err(err)?;
    let opts = write_options(true, args.request_timeout);
    let changes = prepare(&clusters, desired, &opts).await.map_err(err)?;
    persona
        .check_changes(&format!("rollback of {}", args.id), &changes)
        .map_err(|e| CliError::failed(format!("{e} (nothing was written)")))?;
    print!("{}", changes.render_diff());
    eprintln!("{}", changes.summary());
    if changes.is_noop() {
        eprintln!("nothing to change: the fleet is already as it was before {}", args.id);
        if original.report.outcome == Outcome::Pending {
            // An interrupted apply whose writes were all undone: it is finished now.
            let done = ApplyReport { outcome: Outcome::NoChanges, clusters: Default::default() };
            let record = HistoryRecord::new("rollback", persona.name, original.plans.clone(), String::new(), done, changes, Some(args.id));
            history.record(&record).map_err(err)?;
        }
        return Ok(());
    }
    let question = format!("Restore {} to before {}?", changes.clusters().join(", "), args.id);
    let grant = confirm(&clusters, &changes, args.yes, &question, "not rolled back")?;
    let restarts: Vec<String> = changes.pending().filter(|s| s.target.name == "cacerts").map(|s| s.target.cluster.clone()).collect();
    let intent = HistoryRecord::pending("rollback", persona.name, original.plans.clone(), String::new(), changes.clone(), Some(args.id));
    write_recorded(&clusters, changes, &grant, opts, intent).await?;
    if !restarts.is_empty() {
        super::trust::restart_hint(&restarts);
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
