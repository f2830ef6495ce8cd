//! History and audit: every apply and rollback is recorded in the data
//! directory (`history/<id>.json`, with the objects as they were before, for
//! rollback) and as one line in `audit.jsonl`. Readable by the user only.
//! The record is written before the first write (outcome `Pending`: the intent,
//! with every previous state) and replaced when the apply ends, each time
//! atomically (temp file, fsync, rename): a crash leaves either record, never a
//! torn one. `apply.lock` lets one apply run at a time.

use std::collections::BTreeMap;
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
    /// Which cluster each registry name was when this was recorded: a record is
    /// rolled back only on the same clusters.
    #[serde(default)]
    pub fleet: BTreeMap<String, ClusterIdentity>,
    /// What the apply left, per object (`ObjRef` text → resourceVersion, None: absent).
    /// A rollback compares live with it to find later changes.
    #[serde(default)]
    pub after: BTreeMap<String, Option<String>>,
}

/// A cluster as it says it is: its API server and its `kube-system` uid.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterIdentity {
    #[serde(default)]
    pub server: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
}

impl ClusterIdentity {
    /// The same cluster? The uid decides when both are known (the address may change);
    /// otherwise the server URL.
    pub fn same_as(&self, other: &ClusterIdentity) -> bool {
        match (&self.uid, &other.uid) {
            (Some(a), Some(b)) => a == b,
            _ => self.server.is_none() || other.server.is_none() || self.server == other.server,
        }
    }

    pub fn describe(&self) -> String {
        format!("{} (kube-system uid {})", self.server.as_deref().unwrap_or("?"), self.uid.as_deref().unwrap_or("unknown"))
    }
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
            fleet: BTreeMap::new(),
            after: BTreeMap::new(),
        }
    }
}

pub struct History {
    dir: PathBuf,
}

impl HistoryRecord {
    /// The intent, written before the first write: every previous state is in `changes`.
    pub fn pending(
        action: &str,
        persona: String,
        plans: Vec<String>,
        plan_yaml: String,
        changes: ChangeSet,
        rollback_of: Option<String>,
    ) -> Self {
        let report = ApplyReport { outcome: super::write::Outcome::Pending, clusters: Default::default() };
        HistoryRecord::new(action, persona, plans, plan_yaml, report, changes, rollback_of)
    }

    /// When it was recorded (records of the same second compare by this, not by id).
    pub fn when(&self) -> Option<chrono::DateTime<chrono::FixedOffset>> {
        chrono::DateTime::parse_from_rfc3339(&self.time).ok()
    }

    /// The same record, finished with how the apply ended.
    pub fn finished(self, report: ApplyReport) -> Self {
        HistoryRecord { report, ..self }
    }
}

/// Held while an apply or rollback writes; removed when dropped.
#[derive(Debug)]
pub struct ApplyLock {
    path: PathBuf,
}

impl Drop for ApplyLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn host() -> String {
    std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "localhost".into())
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

    /// Write (or replace) a record atomically, then append its audit line.
    pub fn record(&self, rec: &HistoryRecord) -> Result<(), ApplyError> {
        // A Secret's data never reaches the disk: its rollback restores from the kept copy.
        let rec = &HistoryRecord { changes: super::secret::redact_changes(&rec.changes), ..rec.clone() };
        let err = |e: std::io::Error| ApplyError::History(format!("{}: {e}", self.dir.display()));
        let path = self.dir.join(format!("{}.json", rec.id));
        let tmp = self.dir.join(format!(".{}.json.tmp", rec.id));
        {
            let mut f = private_file(&tmp, false).map_err(err)?;
            f.write_all(serde_json::to_string_pretty(rec).unwrap_or_default().as_bytes()).map_err(err)?;
            f.sync_all().map_err(err)?;
        }
        std::fs::rename(&tmp, &path).map_err(err)?;
        // The rename itself is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        let audit = serde_json::json!({
            "time": rec.time, "id": rec.id, "action": rec.action, "persona": rec.persona,
            "plans": rec.plans, "clusters": rec.clusters, "outcome": rec.report.outcome, "rollbackOf": rec.rollback_of,
        });
        let path = self.dir.parent().unwrap_or(&self.dir).join("audit.jsonl");
        let mut f = private_file(&path, true).map_err(err)?;
        writeln!(f, "{audit}").map_err(err)
    }

    /// Every readable record, oldest first. A file that does not parse is left out
    /// (see `unreadable`): one bad file must not hide the rest of history.
    pub fn list(&self) -> Result<Vec<HistoryRecord>, ApplyError> {
        Ok(self.scan()?.0)
    }

    /// Files in the history directory that are not records, each with why.
    pub fn unreadable(&self) -> Result<Vec<String>, ApplyError> {
        Ok(self.scan()?.1)
    }

    fn scan(&self) -> Result<(Vec<HistoryRecord>, Vec<String>), ApplyError> {
        let mut out = Vec::new();
        let mut bad = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| ApplyError::History(format!("{}: {e}", self.dir.display())))?;
        for e in entries.flatten() {
            let p = e.path();
            let hidden = p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden || p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let parsed = std::fs::read_to_string(&p)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_json::from_str::<HistoryRecord>(&text).map_err(|e| format!("line {}: {e}", e.line())));
            match parsed {
                Ok(rec) => out.push(rec),
                Err(e) => bad.push(format!("{}: not a history record ({e})", p.display())),
            }
        }
        // Ids sort by the second; two records in one second are ordered by their time.
        out.sort_by(|a, b| (a.when(), &a.id).cmp(&(b.when(), &b.id)));
        bad.sort();
        Ok((out, bad))
    }

    /// Applies that were recorded as intent and never finished, and not rolled back since.
    pub fn interrupted(&self) -> Result<Vec<HistoryRecord>, ApplyError> {
        let records = self.list()?;
        let undone = |id: &str| {
            records.iter().any(|r| {
                r.rollback_of.as_deref() == Some(id)
                    && matches!(r.report.outcome, super::write::Outcome::Applied | super::write::Outcome::NoChanges)
            })
        };
        Ok(records.iter().filter(|r| r.report.outcome == super::write::Outcome::Pending && !undone(&r.id)).cloned().collect())
    }

    /// Hold the fleet's apply lock until the guard is dropped. Another live holder is an
    /// error naming it; a holder that died (its process is gone) is taken over.
    pub fn lock(&self, what: &str) -> Result<ApplyLock, ApplyError> {
        let path = self.dir.parent().unwrap_or(&self.dir).join("apply.lock");
        let me = format!("pid {} on {} since {}: {what}", std::process::id(), host(), chrono::Utc::now().format("%H:%M:%S"));
        for _ in 0..2 {
            let mut o = std::fs::OpenOptions::new();
            o.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(0o600);
            }
            match o.open(&path) {
                Ok(mut f) => {
                    let _ = f.write_all(me.as_bytes());
                    return Ok(ApplyLock { path });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = std::fs::read_to_string(&path).unwrap_or_default();
                    let pid = holder.strip_prefix("pid ").and_then(|r| r.split_whitespace().next()).and_then(|p| p.parse::<u32>().ok());
                    let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
                    if alive && holder.contains(&host()) {
                        return Err(ApplyError::History(format!(
                            "another apply is running ({holder}); wait for it, or remove {} if it is gone",
                            path.display()
                        )));
                    }
                    // Its holder died: the lock is stale.
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => return Err(ApplyError::History(format!("{}: {e}", path.display()))),
            }
        }
        Err(ApplyError::History(format!("{}: could not take the apply lock", path.display())))
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
