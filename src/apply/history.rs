//! History and audit: every apply and rollback is recorded in the data
//! directory (`history/<id>.json`, with the objects as they were before, for
//! rollback) and as one line in `audit.jsonl`. Readable by the user only.
//! The record is written before the first write (outcome `Pending`: the intent,
//! with every previous state) and replaced when the apply ends, each time
//! atomically (temp file, fsync, rename): a crash leaves either record, never a
//! torn one. `apply.lock` (an OS advisory lock, held while a change is written)
//! lets one change run at a time.

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
    /// Objects this change should have removed from clusters it could not reach: the
    /// next change that reaches them removes them (see `History::outstanding_prunes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unpruned: Vec<Unpruned>,
    /// Objects this change removed because an earlier one could not (`unpruned`): not
    /// this change's own, so its rollback leaves them removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub swept: Vec<super::ObjRef>,
    /// Written by a canary: its step, or its rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryMark>,
}

/// Which canary wrote a record, and as what: `step` N (1-based), or 0 for going back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryMark {
    pub name: String,
    /// The canary run (its start's id): a plan's canaries are told apart by it.
    pub run: String,
    pub step: usize,
    /// Why it went back: the gate that failed, on which calling cluster, with its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Objects of a plan left on a cluster a change could not reach, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Unpruned {
    pub cluster: String,
    pub plans: Vec<String>,
    /// What history says is there (the cluster could not be asked).
    pub objects: Vec<super::ObjRef>,
    pub why: String,
}

impl Unpruned {
    /// `2 objects of reviews-route on cluster2 not removed: unreachable since 13:05:10 (…)`.
    pub fn describe(&self) -> String {
        let n = self.objects.len();
        format!("{n} object{} of {} on {} not removed: {}", if n == 1 { "" } else { "s" }, self.plans.join(","), self.cluster, self.why)
    }
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
            unpruned: Vec::new(),
            swept: Vec::new(),
            canary: None,
        }
    }
}

pub struct History {
    dir: PathBuf,
    /// What the last scan read (records, unreadable files): a command reads history
    /// once; writing a record forgets it.
    scanned: std::sync::Mutex<Option<(Vec<HistoryRecord>, Vec<String>)>>,
}

/// The interrupted records of `records` (oldest first), as `History::interrupted`.
pub fn interrupted_among(records: &[HistoryRecord]) -> Vec<HistoryRecord> {
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        if r.report.outcome != super::write::Outcome::Pending {
            continue;
        }
        let later = &records[i + 1..];
        let undone = later.iter().any(|l| l.rollback_of.as_deref() == Some(r.id.as_str()) && l.finished_well());
        let covered =
            r.changes.pending().all(|s| later.iter().any(|l| l.finished_well() && l.changes.steps.iter().any(|x| x.target == s.target)));
        if !undone && !covered {
            out.push(r.clone());
        }
    }
    out
}

impl HistoryRecord {
    /// Finished with everything it meant to do done (or nothing to do).
    pub fn finished_well(&self) -> bool {
        matches!(self.report.outcome, super::write::Outcome::Applied | super::write::Outcome::NoChanges)
    }

    /// What it was, as history lists it: `apply`, `rollback`, `trust`, or a canary's
    /// `canary step 2` / `canary back`.
    pub fn action_label(&self) -> String {
        match &self.canary {
            Some(m) if m.step > 0 => format!("canary step {}", m.step),
            Some(_) => "canary back".into(),
            None => self.action.clone(),
        }
    }

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

/// Replace a file whole or not at all (a hidden temp file beside it, fsync, rename,
/// then the directory synced so the rename itself is durable); readable by the user only.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), ApplyError> {
    let err = |e: std::io::Error| ApplyError::History(format!("{}: {e}", path.display()));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    {
        let mut f = crate::config::private_file(&tmp, crate::config::Open::Truncate).map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(d) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Held while a change is written: an OS advisory lock on `apply.lock`, released
/// when this is dropped or the process ends however it ends (kill -9 included). The
/// file stays; its text names the holder for the next one to see.
#[derive(Debug)]
pub struct ApplyLock {
    _file: std::fs::File,
}

fn host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this host".into())
}

impl History {
    pub fn open(data_dir: &Path) -> Result<Self, ApplyError> {
        let dir = data_dir.join("history");
        crate::config::private_dir(data_dir)
            .and_then(|_| crate::config::private_dir(&dir))
            .map_err(|e| ApplyError::History(format!("{}: {e}", dir.display())))?;
        Ok(Self { dir, scanned: Default::default() })
    }

    /// A sortable id: time, then a short random suffix.
    pub fn new_id() -> String {
        let now = chrono::Utc::now();
        let suffix: u16 = rand::random();
        format!("{}-{suffix:04x}", now.format("%Y%m%d-%H%M%S"))
    }

    /// Write (or replace) a record atomically, then append its audit line.
    pub fn record(&self, rec: &HistoryRecord) -> Result<(), ApplyError> {
        if let Ok(mut s) = self.scanned.lock() {
            *s = None;
        }
        // A Secret's data never reaches the disk: its rollback restores from the kept copy.
        let rec = &HistoryRecord { changes: super::secret::redact_changes(&rec.changes), ..rec.clone() };
        let err = |e: std::io::Error| ApplyError::History(format!("{}: {e}", self.dir.display()));
        write_atomic(&self.dir.join(format!("{}.json", rec.id)), &serde_json::to_string_pretty(rec).unwrap_or_default())?;
        let audit = serde_json::json!({
            "time": rec.time, "id": rec.id, "action": rec.action, "persona": rec.persona,
            "plans": rec.plans, "clusters": rec.clusters, "outcome": rec.report.outcome, "rollbackOf": rec.rollback_of,
        });
        let path = self.dir.parent().unwrap_or(&self.dir).join("audit.jsonl");
        let mut f = crate::config::private_file(&path, crate::config::Open::Append).map_err(err)?;
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
        if let Some(kept) = self.scanned.lock().ok().and_then(|s| s.clone()) {
            return Ok(kept);
        }
        let scanned = self.read_dir()?;
        if let Ok(mut s) = self.scanned.lock() {
            *s = Some(scanned.clone());
        }
        Ok(scanned)
    }

    fn read_dir(&self) -> Result<(Vec<HistoryRecord>, Vec<String>), ApplyError> {
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

    /// Changes recorded as intent and never finished, that neither a rollback nor later
    /// changes have covered since (a later change that wrote or checked every object
    /// the interrupted one would have written leaves nothing of it to finish).
    pub fn interrupted(&self) -> Result<Vec<HistoryRecord>, ApplyError> {
        let records = self.list()?;
        Ok(interrupted_among(&records))
    }

    /// Hold the fleet's apply lock until the guard is dropped. Another holder is an
    /// error naming it (its own words, written when it took the lock).
    pub fn lock(&self, what: &str) -> Result<ApplyLock, ApplyError> {
        let path = self.dir.parent().unwrap_or(&self.dir).join("apply.lock");
        let fail = |e: std::io::Error| ApplyError::History(format!("{}: {e}", path.display()));
        // Opened without truncating: the holder's words stay readable until the lock is ours.
        let mut file = crate::config::private_file(&path, crate::config::Open::Append).map_err(fail)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = if holder.trim().is_empty() { "starting".to_string() } else { holder.trim().to_string() };
                return Err(ApplyError::History(format!("another change is being written ({holder}); wait for it to finish")));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(fail(e)),
        }
        let me = format!("pid {} on {} since {}: {what}", std::process::id(), host(), chrono::Utc::now().format("%H:%M:%S"));
        file.set_len(0).and_then(|_| file.write_all(me.as_bytes())).and_then(|_| file.flush()).map_err(fail)?;
        Ok(ApplyLock { _file: file })
    }

    /// Objects that changes left on clusters they could not reach and that no later
    /// change has written or removed since: what the next change that reaches their
    /// cluster removes. Each with the plans it belonged to.
    pub fn outstanding_prunes(&self, records: &[HistoryRecord]) -> Vec<(super::ObjRef, Vec<String>)> {
        let mut out = Vec::new();
        for (i, r) in records.iter().enumerate() {
            for u in &r.unpruned {
                for o in &u.objects {
                    let covered =
                        records[i + 1..].iter().any(|later| later.finished_well() && later.changes.steps.iter().any(|s| &s.target == o));
                    if !covered && !out.iter().any(|(t, _)| t == o) {
                        out.push((o.clone(), u.plans.clone()));
                    }
                }
            }
        }
        out
    }

    /// What history says the named plans have on `cluster` now: every object their
    /// records wrote there and did not remove since (applied or interrupted records).
    pub fn believed_on(records: &[HistoryRecord], plans: &[String], cluster: &str) -> Vec<super::ObjRef> {
        let mut present: Vec<super::ObjRef> = Vec::new();
        for r in records.iter().filter(|r| r.plans.iter().any(|p| plans.contains(p))) {
            if !matches!(r.report.outcome, super::write::Outcome::Applied | super::write::Outcome::Pending) {
                continue;
            }
            for s in r.changes.steps.iter().filter(|s| s.target.cluster == cluster) {
                present.retain(|t| t != &s.target);
                if !matches!(s.desired, super::Desired::Absent) {
                    present.push(s.target.clone());
                }
            }
        }
        present.sort();
        present
    }

    /// Where the named plans wrote before: every cluster and namespace of their records.
    pub fn scope_of(&self, plans: &[String]) -> Result<super::PruneScope, ApplyError> {
        let records = self.list()?;
        Ok(super::PruneScope::of_changes(records.iter().filter(|r| r.plans.iter().any(|p| plans.contains(p))).map(|r| &r.changes)))
    }

    /// The history directory (canaries keep their state beside the records).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn get(&self, id: &str) -> Result<HistoryRecord, ApplyError> {
        self.list()?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| ApplyError::History(format!("no history record {id:?} (see `meshdeck history`)")))
    }
}
