//! Permission to write. Every function that changes a cluster takes a
//! `&WriteGrant`, and the only way to get one is `WriteGrant::confirmed`, which only
//! the conductor (`apply::pipeline`) calls, with the front's answer: the operator
//! said yes (a prompt, `--yes`, the cockpit's confirm key) to this change set, and
//! none of its clusters is read-only. Read-only commands
//! (`diff`, `render`, `inventory`, `clusters`, `history`, `apply --dry-run`)
//! never hold one, so a code path of theirs that reaches a write does not
//! compile; a test keeps the places that mint grants to the confirmed ones.

use super::{ApplyError, ChangeSet, cluster};
use crate::registry::Cluster;

/// How the operator said yes to a change set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// Answered `y` at the terminal prompt.
    Prompt,
    /// `--yes` on the command line.
    YesFlag,
    /// The cockpit's confirm key on the diff it showed.
    Cockpit,
    /// A benchmark writing to the fleet it started itself.
    Benchmark,
    /// A canary's step or rollback: the operator started (or resumed) the canary,
    /// whose steps and first diff were shown then.
    Canary,
    /// Nothing to write: the change only records what was checked (an interrupted
    /// change found already undone).
    NothingToWrite,
}

/// Refuse when any cluster the change set writes is read-only; the CLI asks
/// this before it prompts, so a read-only run is never asked to confirm.
pub fn writable(clusters: &[Cluster], changes: &ChangeSet) -> Result<(), ApplyError> {
    for name in changes.clusters() {
        if cluster(clusters, &name)?.options.read_only {
            return Err(ApplyError::ReadOnly(name, "--read-only or readOnly in the config".into()));
        }
    }
    Ok(())
}

/// Proof that writing this change set was confirmed and is allowed.
#[derive(Debug)]
pub struct WriteGrant {
    confirmation: Confirmation,
    clusters: Vec<String>,
}

impl WriteGrant {
    /// Refuses when any cluster the change set writes is read-only
    /// (`--read-only`, or `readOnly` in the config).
    pub(super) fn confirmed(clusters: &[Cluster], changes: &ChangeSet, confirmation: Confirmation) -> Result<WriteGrant, ApplyError> {
        writable(clusters, changes)?;
        Ok(WriteGrant { confirmation, clusters: changes.clusters() })
    }

    pub fn confirmation(&self) -> Confirmation {
        self.confirmation
    }

    /// A grant covers the clusters of the change set it was made for, and no others.
    pub fn covers(&self, cluster: &str) -> bool {
        self.clusters.iter().any(|c| c == cluster)
    }
}

#[cfg(test)]
mod tests {
    /// Grants are minted only where the operator confirms a write. A new call
    /// site belongs here only if it asks first.
    #[test]
    fn grants_are_minted_only_where_the_operator_confirms() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut found = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("src is readable").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("apply/grant.rs") {
                    let text = std::fs::read_to_string(&path).expect("source is readable");
                    let rel = path.strip_prefix(&root).expect("under src").display().to_string();
                    found.extend(text.lines().filter(|l| l.contains("WriteGrant::confirmed(")).map(|_| rel.clone()));
                }
            }
        }
        found.sort();
        assert_eq!(found, ["apply/pipeline.rs"], "where write grants are minted: the conductor only");
    }
}
