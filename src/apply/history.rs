//! History and audit: every apply and rollback is recorded in the data
//! directory (`history/<id>.json`, with the objects as they were before, for
//! rollback) and as one line in `audit.jsonl`. Readable by the user only.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::write::ApplyReport;
use super::{ApplyError, ChangeSet};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRecord {
    pub id: String,
    pub time: String,
    /// `apply` or `rollback`.
    pub action: String,
    pub persona: String,
    pub plans: Vec<String>,
    #[serde(default)]
    pub plan_yaml: String,
    pub clusters: Vec<String>,
    pub report: ApplyReport,
    pub changes: ChangeSet,
    /// For a rollback: the record it undid.
    #[serde(default)]
    pub rollback_of: Option<String>,
}

impl HistoryRecord {
    /// A new record: its id, time and clusters come from now and from the changes.
    pub fn new(
        action: &str,
        persona: String,
        plans: Vec<String>,
        plan_yaml: String,
        report: ApplyReport,
        changes: ChangeSet,
        rollback_of: Option<String>,
    ) -> Self {
        HistoryRecord {
            id: History::new_id(),
            time: chrono::Utc::now().to_rfc3339(),
            action: action.into(),
            persona,
            plans,
            plan_yaml,
            clusters: changes.clusters(),
            report,
            changes,
            rollback_of,
        }
    }
}

pub struct History {
    dir: PathBuf,
}

#[cfg(unix)]
fn private_dir(p: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(p)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn private_dir(p: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(p)
}

fn private_file(path: &Path, append: bool) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true);
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
}

impl History {
    pub fn open(data_dir: &Path) -> Result<Self, ApplyError> {
        let dir = data_dir.join("history");
        private_dir(data_dir).and_then(|_| private_dir(&dir)).map_err(|e| ApplyError::History(format!("{}: {e}", dir.display())))?;
        Ok(Self { dir })
    }

    /// A sortable id: time, then a short random suffix.
    pub fn new_id() -> String {
        let now = chrono::Utc::now();
        let suffix: u16 = rand::random();
        format!("{}-{suffix:04x}", now.format("%Y%m%d-%H%M%S"))
    }

    pub fn record(&self, rec: &HistoryRecord) -> Result<(), ApplyError> {
        let err = |e: std::io::Error| ApplyError::History(format!("{}: {e}", self.dir.display()));
        let path = self.dir.join(format!("{}.json", rec.id));
        let mut f = private_file(&path, false).map_err(err)?;
        f.write_all(serde_json::to_string_pretty(rec).unwrap_or_default().as_bytes()).map_err(err)?;
        let audit = serde_json::json!({
            "time": rec.time, "id": rec.id, "action": rec.action, "persona": rec.persona,
            "plans": rec.plans, "clusters": rec.clusters, "outcome": rec.report.outcome, "rollbackOf": rec.rollback_of,
        });
        let path = self.dir.parent().unwrap_or(&self.dir).join("audit.jsonl");
        let mut f = private_file(&path, true).map_err(err)?;
        writeln!(f, "{audit}").map_err(err)
    }

    pub fn list(&self) -> Result<Vec<HistoryRecord>, ApplyError> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| ApplyError::History(format!("{}: {e}", self.dir.display())))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(&p).map_err(|e| ApplyError::History(format!("{}: {e}", p.display())))?;
                let rec: HistoryRecord = serde_json::from_str(&text).map_err(|e| ApplyError::History(format!("{}: {e}", p.display())))?;
                out.push(rec);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Where the named plans wrote before: every cluster and namespace of their records.
    pub fn scope_of(&self, plans: &[String]) -> Result<super::PruneScope, ApplyError> {
        let records = self.list()?;
        Ok(super::PruneScope::of_changes(records.iter().filter(|r| r.plans.iter().any(|p| plans.contains(p))).map(|r| &r.changes)))
    }

    pub fn get(&self, id: &str) -> Result<HistoryRecord, ApplyError> {
        self.list()?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| ApplyError::History(format!("no history record {id:?} (see `meshdeck history`)")))
    }
}
