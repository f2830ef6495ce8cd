//! The command line as a front of the apply pipeline (`apply::pipeline`): how it
//! asks for confirmation (a prompt on the terminal, or `--yes`), how it shows a
//! prepared change and how it reports the outcome. Every command that writes
//! (`apply`, `rollback`, `trust`) goes through these, and through the conductor.

use std::io::{BufRead, IsTerminal, Write};

use super::CliError;
use crate::apply::history::History;
use crate::apply::write::Outcome;
use crate::apply::{ApplyError, ApplyOptions, Confirmation, Pipeline, Prepared, Written};
use crate::config::{config_dir, data_dir};
use crate::policy::Persona;
use crate::registry::Cluster;

pub fn err(e: ApplyError) -> CliError {
    let hint = match &e {
        ApplyError::DryRun(lines) if lines.iter().any(|l| l.contains("409") && l.contains("conflict")) => {
            "\nhint: another field manager owns these fields; --force-conflicts lets meshdeck take them (the diff shows what changes)"
        }
        ApplyError::Policy(crate::policy::PolicyError::Refused { .. }) => " (nothing was written)",
        _ => "",
    };
    match e {
        ApplyError::Policy(crate::policy::PolicyError::File(_) | crate::policy::PolicyError::UnknownPersona(_)) => {
            CliError::bad_input(e.to_string())
        }
        _ => CliError::failed(format!("{e}{hint}")),
    }
}

/// The persona for this run: none configured means unrestricted.
pub fn persona(clusters: &[Cluster], explicit: Option<&str>) -> Result<Persona, CliError> {
    crate::policy::persona_for(clusters, explicit, config_dir().as_deref()).map_err(|e| err(ApplyError::Policy(e)))
}

pub fn history() -> Result<History, CliError> {
    History::open(&data_dir_or_fail()?).map_err(err)
}

fn data_dir_or_fail() -> Result<std::path::PathBuf, CliError> {
    data_dir().ok_or_else(|| CliError::failed("no data directory (set MESHDECK_DATA_DIR)"))
}

/// The conductor for this run's clusters, as this persona; `force` takes fields
/// other managers hold, `timeout` bounds each write.
pub fn pipeline(clusters: &[Cluster], persona: Persona, force: bool, timeout: u64) -> Result<Pipeline, CliError> {
    pipeline_reading(history()?, clusters, persona, force, timeout)
}

/// The conductor over a history this command has already opened (it reads it once).
pub fn pipeline_reading(history: History, clusters: &[Cluster], persona: Persona, force: bool, timeout: u64) -> Result<Pipeline, CliError> {
    let opts = ApplyOptions {
        force_conflicts: force,
        concurrency: 8,
        call_timeout: Some(std::time::Duration::from_secs(timeout.max(1))),
        ..Default::default()
    };
    Ok(Pipeline::with_history(clusters, history, persona, opts))
}

/// `--yes`, or ask on the terminal; without one, refuse. A read-only cluster is
/// refused before anyone is asked.
pub fn confirm(clusters: &[Cluster], prepared: &Prepared, yes: bool, question: &str, refused: &str) -> Result<Confirmation, CliError> {
    crate::apply::grant::writable(clusters, &prepared.changes).map_err(err)?;
    if yes {
        return Ok(Confirmation::YesFlag);
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
    Ok(Confirmation::Prompt)
}

/// The diff, what stays behind on clusters that cannot be reached, and the summary.
pub fn show(prepared: &Prepared) {
    print!("{}", prepared.changes.render_diff());
    for line in prepared.unpruned_lines() {
        eprintln!("warning: {line}; the next apply that reaches it removes them");
    }
    eprintln!("{}", prepared.changes.summary());
}

/// Say what an earlier, interrupted change left, so the operator can finish it.
pub fn announce_interrupted(history: &History) {
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

/// How a written change ended, on stderr, and its exit code.
pub fn conclude(written: &Written) -> Result<(), CliError> {
    let record = &written.record;
    eprint!("{}", record.report.describe());
    for u in &record.unpruned {
        eprintln!("warning: {}; recorded, the next apply that reaches it removes them", u.describe());
    }
    match record.report.outcome {
        Outcome::Applied => eprintln!("recorded as {} (undo: meshdeck rollback {})", record.id, record.id),
        Outcome::RollbackIncomplete => eprintln!("recorded as {} (what it left: meshdeck rollback {})", record.id, record.id),
        _ => eprintln!("recorded as {}", record.id),
    }
    match record.report.outcome {
        Outcome::RolledBack if written.interrupted => {
            Err(CliError { code: 130, message: "interrupted: every cluster was restored to what it was before".into() })
        }
        Outcome::Applied if written.interrupted => Err(CliError {
            code: 130,
            message: format!("interrupted after every write had landed: the change is applied (undo: meshdeck rollback {})", record.id),
        }),
        Outcome::Applied | Outcome::NoChanges => Ok(()),
        Outcome::RolledBack => Err(CliError::failed("a write failed; every cluster was restored to what it was before")),
        Outcome::Refused | Outcome::Stale => Err(CliError::failed("nothing was written")),
        Outcome::RollbackIncomplete | Outcome::Pending => Err(CliError::failed(format!(
            "restoring did not complete: see the report above; `meshdeck rollback {}` tries again",
            record.id
        ))),
    }
}

/// After a write: whether each written cluster's istiod has pushed it to its
/// proxies, waiting up to `wait` (0: not asked).
pub async fn report_push(clusters: &[Cluster], written: &Written, written_to: &[String], since: chrono::DateTime<chrono::Utc>, wait: u64) {
    if wait == 0 || !matches!(written.record.report.outcome, Outcome::Applied) {
        return;
    }
    let asked: Vec<&Cluster> = clusters.iter().filter(|c| written_to.contains(&c.name)).collect();
    for r in crate::observe::sync::wait_pushed(&asked, since, std::time::Duration::from_secs(wait)).await {
        eprintln!("push: {}", r.line());
    }
}

/// What istiod needs after its `cacerts` changed (a trust change, or a rollback of one).
pub fn restart_hint(clusters: &[String]) {
    let list = clusters.join(",");
    eprintln!("istiod reads cacerts only when it starts: restart it in {list} (meshdeck trust restart --clusters {list})");
}

/// The clusters whose `cacerts` a change set rewrites.
pub fn cacerts_changed(prepared: &Prepared) -> Vec<String> {
    prepared.changes.pending().filter(|s| s.target.name == "cacerts").map(|s| s.target.cluster.clone()).collect()
}
