//! A canary's durable state, beside the history records it writes:
//! `history/canaries/<name>.json`, replaced atomically (temp file, fsync,
//! rename), written only by its driver: the process holding `<name>.lock` (an
//! OS lock, gone with the process however it ends). Other terminals ask the
//! driver through `<name>.request` (pause, resume, promote, abort); with no
//! driver, the asking command takes the lock and acts itself. Which steps were
//! written is the history records' to say (`CanaryMark`): the state follows
//! them, so a driver killed between a write and this file repeats nothing.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::judge::Check;
use crate::apply::ApplyError;
use crate::apply::history::{History, write_atomic};
use crate::apply::lease;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// Stepping: holding a step, judging it, writing the next.
    Running,
    /// Held at its step (by the operator, or a cluster gone dark): nothing is
    /// written or judged until it is resumed.
    Paused,
    /// Going back (a gate failed, an abort): the rollback is being written.
    RollingBack,
    /// Every step written and judged: the plan's split is in force.
    Promoted,
    /// A gate failed; the route is back where `rollbackTo` says.
    RolledBack,
    /// Stopped and rolled back to the start (the operator, or no verdict in time).
    Aborted,
}

impl Status {
    /// Still owns its route.
    pub fn active(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::RollingBack)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::RollingBack => "rolling back",
            Status::Promoted => "promoted",
            Status::RolledBack => "rolled back",
            Status::Aborted => "aborted",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub time: String,
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CanaryState {
    /// The route's (plan's) name.
    pub name: String,
    /// This canary's id (when it started): its history records carry it.
    pub run: String,
    /// The plan as started, canary section included.
    pub plan_yaml: String,
    pub file: String,
    pub persona: String,
    pub started: String,
    pub service: String,
    pub from: Vec<String>,
    /// `v3@cluster2`.
    pub destination: String,
    /// The canary's weight at each step.
    pub steps: Vec<u32>,
    pub interval_seconds: u64,
    pub status: Status,
    /// Steps written (0: none yet).
    pub step: usize,
    /// When the step in force was written (Unix seconds).
    pub step_written: Option<f64>,
    /// The last step whose gates passed (0: none).
    pub last_good: usize,
    pub failed_checks: u32,
    /// When the step is judged next (Unix seconds).
    pub next_check: Option<f64>,
    /// Where the evidence for the next verdict starts (Unix seconds): the step's
    /// write, a failed check (a new interval is judged on its own), a resume.
    #[serde(default)]
    pub counting_from: Option<f64>,
    /// Why it is not moving now, if it is not.
    pub waiting: Option<String>,
    /// What a rollback under way ends as (`rolledBack` or `aborted`), and why.
    #[serde(default)]
    pub ending: Option<(Status, String)>,
    /// The newest checks, oldest first.
    pub checks: Vec<Check>,
    pub events: Vec<Event>,
    /// The history records it wrote.
    pub records: Vec<String>,
}

/// Checks and events kept in the state (history keeps every write).
const KEEP: usize = 40;

impl CanaryState {
    pub fn say(&mut self, text: impl Into<String>) {
        self.events.push(Event { time: chrono::Utc::now().to_rfc3339(), text: text.into() });
        if self.events.len() > KEEP {
            self.events.remove(0);
        }
    }

    pub fn checked(&mut self, check: Check) {
        self.checks.push(check);
        if self.checks.len() > KEEP {
            self.checks.remove(0);
        }
    }

    /// The lease it holds while active.
    pub fn lease(&self) -> lease::Lease {
        lease::Lease {
            name: self.name.clone(),
            run: self.run.clone(),
            service: self.service.clone(),
            from: self.from.clone(),
            holder: format!("canary {} ({}, step {} of {})", self.name, self.status.as_str(), self.step, self.steps.len()),
            release: format!("abort it (meshdeck canary abort {})", self.name),
        }
    }

    /// The newest check of the step in force.
    pub fn last_check(&self) -> Option<&Check> {
        self.checks.last().filter(|c| c.step == self.step)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Request {
    Pause,
    Resume,
    /// Write the next step now, without waiting for this one's verdict.
    Promote,
    Abort,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Asked {
    pub request: Request,
    pub by: String,
    pub time: String,
}

/// Held while a process drives a canary.
#[derive(Debug)]
pub struct DriverLock {
    _file: std::fs::File,
}

pub struct Store {
    dir: PathBuf,
    /// History's directory, where the leases are.
    history: History,
}

fn err(path: &std::path::Path) -> impl Fn(std::io::Error) -> ApplyError + '_ {
    move |e| ApplyError::History(format!("{}: {e}", path.display()))
}

impl Store {
    pub fn open(history: &History) -> Result<Store, ApplyError> {
        let dir = history.dir().join("canaries");
        crate::config::private_dir(&dir).map_err(|e| ApplyError::History(format!("{}: {e}", dir.display())))?;
        let data = history.dir().parent().unwrap_or(history.dir()).to_path_buf();
        Ok(Store { dir, history: History::open(&data)? })
    }

    /// The lease that holds the route of a plan named `name` for `service` from `from`, if any.
    pub fn owner_of(&self, name: &str, service: &str, from: &[String]) -> Option<lease::Lease> {
        lease::owner(&self.history, &[name.to_string()], &[(service.to_string(), from.to_vec())], None)
    }

    fn path(&self, name: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{name}.{ext}"))
    }

    /// Save the state; while it is active the canary holds its route's lease
    /// (the conductor refuses other writers), and gives it back when it ends.
    pub fn save(&self, state: &CanaryState) -> Result<(), ApplyError> {
        write_atomic(&self.path(&state.name, "json"), &serde_json::to_string_pretty(state).unwrap_or_default())?;
        if state.status.active() {
            lease::hold(&self.history, &state.lease())
        } else {
            lease::release(&self.history, &state.name);
            Ok(())
        }
    }

    /// The canary of this name, if one was ever started.
    pub fn load(&self, name: &str) -> Result<Option<CanaryState>, ApplyError> {
        let path = self.path(name, "json");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| ApplyError::History(format!("{}: not a canary's state (line {}: {e})", path.display(), e.line()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(&path)(e)),
        }
    }

    /// Every canary, newest first; files that do not parse are named in the second list.
    pub fn list(&self) -> (Vec<CanaryState>, Vec<String>) {
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        for e in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let p = e.path();
            let Some(name) = p.file_stem().and_then(|n| n.to_str()).filter(|n| !n.starts_with('.')) else { continue };
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match self.load(name) {
                Ok(Some(s)) => out.push(s),
                Ok(None) => {}
                Err(e) => bad.push(e.to_string()),
            }
        }
        out.sort_by(|a, b| b.started.cmp(&a.started));
        (out, bad)
    }

    /// Ask the driver (the next one, if none runs now).
    pub fn ask(&self, name: &str, request: Request) -> Result<(), ApplyError> {
        let asked = Asked { request, by: who(), time: chrono::Utc::now().to_rfc3339() };
        write_atomic(&self.path(name, "request"), &serde_json::to_string(&asked).unwrap_or_default())
    }

    /// What was asked of this canary since, taken (the file is removed).
    pub fn take_request(&self, name: &str) -> Option<Asked> {
        let path = self.path(name, "request");
        let text = std::fs::read_to_string(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        serde_json::from_str(&text).ok()
    }

    /// A request no driver has taken yet.
    pub fn pending(&self, name: &str) -> bool {
        self.path(name, "request").exists()
    }

    /// Drive this canary: refused, naming the driver, while another process does.
    pub fn drive(&self, name: &str) -> Result<DriverLock, ApplyError> {
        let path = self.path(name, "lock");
        let mut file = crate::config::private_file(&path, crate::config::Open::Append).map_err(err(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(ApplyError::History(format!("canary {name} is driven by {}", holder.trim())));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(err(&path)(e)),
        }
        let me = format!("pid {} ({}) since {}", std::process::id(), who(), chrono::Utc::now().format("%H:%M:%S"));
        file.set_len(0).and_then(|_| file.write_all(me.as_bytes())).and_then(|_| file.flush()).map_err(err(&path))?;
        Ok(DriverLock { _file: file })
    }

    /// Who drives this canary now, if a process does.
    pub fn driver(&self, name: &str) -> Option<String> {
        let path = self.path(name, "lock");
        let file = std::fs::File::open(&path).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(_) => Some(std::fs::read_to_string(&path).unwrap_or_default().trim().to_string()),
        }
    }

    /// Held while a canary is started: the owner check and the first state are one step.
    pub fn starting(&self) -> Result<DriverLock, ApplyError> {
        let path = self.dir.join(".start.lock");
        let file = crate::config::private_file(&path, crate::config::Open::Append).map_err(err(&path))?;
        file.lock().map_err(err(&path))?;
        Ok(DriverLock { _file: file })
    }
}

fn who() -> String {
    std::env::var("USER").unwrap_or_else(|_| format!("uid {}", uid()))
}

fn uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1).map(String::from)))
        .unwrap_or_else(|| "?".into())
}
