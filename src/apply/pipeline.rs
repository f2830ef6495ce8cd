//! The one conductor of every change meshdeck writes: a plan's apply, a rollback,
//! a trust step. A front (the CLI, the cockpit, a benchmark) hands it what should be
//! true and answers its one question (confirm?); the order of the stages is kept
//! here and nowhere else:
//!
//! 1. `prepare`: the persona's rights on the plan, the clusters that cannot be
//!    reached (a dark cluster blocks only a change that must write to it: what it
//!    should have removed there is named and recorded instead), RBAC preflight,
//!    server dry run, diff, and the persona's rights on every object touched.
//! 2. `write`: the grant (the confirmation of this change set, no read-only
//!    cluster), the apply lock, the intent record, signals, the all-or-nothing
//!    write with verify and restore, and the final record, whose outcome says what
//!    happened (`Refused` and `Stale` wrote nothing and list no changes).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::history::{History, HistoryRecord, Unpruned};
use super::write::{ApplyReport, Outcome};
use super::{ApplyError, ApplyOptions, ChangeSet, Confirmation, Desired, ObjRef, PruneScope, WriteGrant};
use crate::policy::Persona;
use crate::registry::Cluster;

/// What a change is, for its record and for a persona's refusal.
#[derive(Clone, Debug, PartialEq)]
pub struct Intent {
    /// `apply`, `rollback` or `trust`.
    pub action: String,
    /// The plans its record names (a rollback: those of the record it undoes).
    pub plans: Vec<String>,
    /// The plan as written; for a rollback, the plan as it was before the record undone.
    pub plan_yaml: String,
    pub rollback_of: Option<String>,
    /// How a refusal names it: `reviews-canary`, `rollback of ID`, `trust-plan`.
    pub what: String,
    /// A canary's step or rollback: which canary, which step.
    pub canary: Option<super::history::CanaryMark>,
}

impl Intent {
    pub fn apply(plans: Vec<String>, plan_yaml: String) -> Intent {
        Intent { action: "apply".into(), what: plans.join(","), plans, plan_yaml, rollback_of: None, canary: None }
    }

    pub fn trust(step: &str, description: String) -> Intent {
        Intent {
            action: "trust".into(),
            what: step.into(),
            plans: vec![step.into()],
            plan_yaml: description,
            rollback_of: None,
            canary: None,
        }
    }
}

/// A change established and checked: nothing has been written.
#[derive(Clone, Debug, PartialEq)]
pub struct Prepared {
    pub intent: Intent,
    pub changes: ChangeSet,
    /// What this change should remove on clusters it cannot reach now.
    pub unpruned: Vec<Unpruned>,
    /// What it removes for earlier changes that could not (their `unpruned`): a
    /// rollback of this change does not bring those back.
    pub swept: Vec<ObjRef>,
    /// The persona it was checked for.
    pub persona: String,
}

impl Prepared {
    /// Nothing to write and nothing left behind to record. A change whose only work
    /// is removals on dark clusters is still recorded, so a later one removes them.
    pub fn nothing_to_do(&self) -> bool {
        self.changes.is_noop() && self.unpruned.is_empty()
    }

    /// One line per cluster where objects stay behind.
    pub fn unpruned_lines(&self) -> Vec<String> {
        self.unpruned.iter().map(Unpruned::describe).collect()
    }
}

/// How a written change ended; `record` is in history.
#[derive(Clone, Debug, PartialEq)]
pub struct Written {
    pub record: HistoryRecord,
    /// The operator interrupted it (Ctrl-C, SIGTERM).
    pub interrupted: bool,
}

pub struct Pipeline {
    clusters: Vec<Cluster>,
    history: History,
    persona: Persona,
    opts: ApplyOptions,
    /// Say what a signal did on stderr (not while the cockpit owns the terminal).
    announce_signals: bool,
}

/// How long a cluster may take to say it is there before it counts as dark.
const REACH_TIMEOUT: Duration = Duration::from_secs(5);

impl Pipeline {
    pub fn new(clusters: &[Cluster], data_dir: &Path, persona: Persona, opts: ApplyOptions) -> Result<Pipeline, ApplyError> {
        Ok(Pipeline::with_history(clusters, History::open(data_dir)?, persona, opts))
    }

    /// The same, with history already open (and perhaps read: it is read once).
    pub fn with_history(clusters: &[Cluster], history: History, persona: Persona, opts: ApplyOptions) -> Pipeline {
        Pipeline { clusters: clusters.to_vec(), history, persona, opts, announce_signals: true }
    }

    /// The cockpit draws the terminal itself: signals are not announced on stderr.
    pub fn quiet_signals(mut self) -> Pipeline {
        self.announce_signals = false;
        self
    }

    pub fn persona(&self) -> &Persona {
        &self.persona
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// A plan's change: its rendered objects applied, the objects of it (and of the
    /// plans it `replaces`) that the render no longer makes pruned.
    pub async fn plan(
        &self,
        plan: &crate::plan::Plan,
        rendered: &crate::render::RenderedObjects,
        replaces: &[String],
    ) -> Result<Prepared, ApplyError> {
        self.plan_for(plan, rendered, replaces, None).await
    }

    /// The same, as a canary's step (`canary`): a route a running canary steps is
    /// that canary's alone to write.
    pub async fn plan_for(
        &self,
        plan: &crate::plan::Plan,
        rendered: &crate::render::RenderedObjects,
        replaces: &[String],
        canary: Option<&super::history::CanaryMark>,
    ) -> Result<Prepared, ApplyError> {
        self.persona.check(plan)?;
        if let Some(refusal) = self.canary_owns(plan, canary) {
            return Err(refusal);
        }
        let records = self.history.list()?;
        let mut names = plan.names();
        names.extend(replaces.iter().cloned());
        let mut before = PruneScope::of_changes(records.iter().filter(|r| r.plans.iter().any(|p| names.contains(p))).map(|r| &r.changes));
        before.namespaces.extend(plan.routes.iter().map(|r| r.service.namespace.clone()));
        before.replacing = replaces.to_vec();
        // Clusters the plan wrote to before that this run cannot reach: their objects stay.
        let writes: BTreeSet<&str> = rendered.iter().map(|(c, _)| c).collect();
        let mut unpruned = Vec::new();
        for name in before.clusters.clone() {
            if writes.contains(name.as_str()) {
                continue;
            }
            let why = match self.clusters.iter().find(|c| c.name == name) {
                None => Some("not registered in this run (see --context)".to_string()),
                Some(c) => self.reach(c).await.err(),
            };
            if let Some(why) = why {
                before.clusters.remove(&name);
                let objects = History::believed_on(&records, &names, &name);
                if !objects.is_empty() {
                    unpruned.push(Unpruned { cluster: name, plans: names.clone(), objects, why });
                }
            }
        }
        let desired = super::desired_for_plan(&self.clusters, plan, rendered, &before).await?;
        let mut plans = plan.names();
        plans.extend(replaces.iter().cloned());
        let intent = Intent { what: plan.names().join(","), canary: canary.cloned(), ..Intent::apply(plans, plan.to_yaml()) };
        self.examine(intent, desired, unpruned, &records, true).await
    }

    /// A refusal when a lease other than `mine` (a canary's) holds one of the plan's
    /// routes (the same service from a shared calling cluster) or its name.
    fn canary_owns(&self, plan: &crate::plan::Plan, mine: Option<&super::history::CanaryMark>) -> Option<ApplyError> {
        let routes: Vec<(String, Vec<String>)> = plan.routes.iter().map(|r| (r.service.key(), r.from_clusters.clone())).collect();
        super::lease::owner(&self.history, &plan.names(), &routes, mine.map(|m| m.run.as_str())).map(|l| super::lease::refusal(&l))
    }

    /// The named clusters that do not answer now (registered or not), each once.
    pub async fn unreachable(&self, names: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for name in names {
            let answers = match self.clusters.iter().find(|c| &c.name == name) {
                Some(c) => self.reach(c).await.is_ok(),
                None => false,
            };
            if !answers && !out.contains(name) {
                out.push(name.clone());
            }
        }
        out
    }

    /// Undoing a recorded change: its plan's whole before-state, on the clusters it was
    /// recorded on, refused when anything changed since (unless `force`). A dark
    /// cluster where it only has objects to remove does not hold it up.
    pub async fn rollback(&self, id: &str, force: bool) -> Result<(HistoryRecord, Prepared), ApplyError> {
        let records = self.history.list()?;
        let original = records
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| ApplyError::History(format!("no history record {id:?} (see `meshdeck history`)")))?;
        if let Some(mark) = &original.canary
            && let Some(lease) = super::lease::held(&self.history).into_iter().find(|l| l.run == mark.run)
        {
            return Err(ApplyError::History(format!(
                "{id} is a step of {}: {} to go back; nothing was written",
                lease.holder, lease.release
            )));
        }
        let mut dark = BTreeSet::new();
        for name in original.changes.clusters_touched() {
            if let Some(c) = self.clusters.iter().find(|c| c.name == name)
                && self.reach(c).await.is_err()
            {
                dark.insert(name);
            }
        }
        let (original, desired) = super::rollback::plan(&self.clusters, &records, id, force, &dark).await?;
        // The plan as it was before the record: what the composer starts from afterwards.
        let plan_yaml = records
            .iter()
            .rfind(|r| r.when() < original.when() && r.finished_well() && r.plans.iter().any(|p| original.plans.contains(p)))
            .map(|r| r.plan_yaml.clone())
            .unwrap_or_default();
        let intent = Intent {
            action: "rollback".into(),
            plans: original.plans.clone(),
            plan_yaml: if original.action == "trust" { String::new() } else { plan_yaml },
            rollback_of: Some(id.to_string()),
            what: format!("rollback of {id}"),
            canary: None,
        };
        let prepared = self.examine(intent, desired, Vec::new(), &records, original.action != "trust").await?;
        Ok((original, prepared))
    }

    /// Any other change (a trust step): what should be true of each object.
    pub async fn change(&self, intent: Intent, desired: Vec<(ObjRef, Desired)>) -> Result<Prepared, ApplyError> {
        let records = self.history.list()?;
        self.examine(intent, desired, Vec::new(), &records, false).await
    }

    /// Whether a cluster answers now: one version probe, never a cached answer (a
    /// cluster that went dark a second ago must not look live).
    async fn reach(&self, c: &Cluster) -> Result<(), String> {
        let at = || chrono::Local::now().format("%H:%M:%S");
        let client = c.client.clone().map_err(|e| format!("unreachable at {}: {e}", at()))?;
        let limit = self.opts.call_timeout.unwrap_or(REACH_TIMEOUT).min(REACH_TIMEOUT);
        match crate::registry::health::probe(&client, limit).await.error {
            None => Ok(()),
            Some(e) => Err(format!("unreachable at {}: {}", at(), e.message())),
        }
    }

    /// The stages every change shares: removals left on dark clusters set aside,
    /// objects earlier changes could not remove taken up where they can be now
    /// (`sweep`), preflight, dry run, diff, and the persona on every object.
    async fn examine(
        &self,
        intent: Intent,
        mut desired: Vec<(ObjRef, Desired)>,
        mut unpruned: Vec<Unpruned>,
        records: &[HistoryRecord],
        sweep: bool,
    ) -> Result<Prepared, ApplyError> {
        // What the change means to write is the persona's to allow before any cluster is asked.
        for (t, d) in &desired {
            if !matches!(d, Desired::Absent) {
                self.persona.check_write(&intent.what, "write", &t.cluster, &t.namespace, &t.kind, &t.name)?;
            }
        }
        let mut by_cluster: BTreeSet<String> = desired.iter().map(|(t, _)| t.cluster.clone()).collect();
        let outstanding = if sweep { self.history.outstanding_prunes(records) } else { Vec::new() };
        by_cluster.extend(outstanding.iter().map(|(t, _)| t.cluster.clone()));
        let mut dark = BTreeSet::new();
        for name in &by_cluster {
            if let Some(c) = self.clusters.iter().find(|c| &c.name == name)
                && let Err(why) = self.reach(c).await
            {
                let (removals, writes): (Vec<_>, Vec<_>) =
                    desired.iter().filter(|(t, _)| &t.cluster == name).partition(|(_, d)| matches!(d, Desired::Absent));
                if let Some((t, _)) = writes.first() {
                    return Err(ApplyError::Cluster { cluster: name.clone(), message: format!("{why}; the change writes {t} there") });
                }
                if !removals.is_empty() {
                    let objects: Vec<ObjRef> = removals.iter().map(|(t, _)| t.clone()).collect();
                    unpruned.push(Unpruned { cluster: name.clone(), plans: intent.plans.clone(), objects, why: why.clone() });
                }
                dark.insert(name.clone());
            }
        }
        desired.retain(|(t, _)| !dark.contains(&t.cluster));
        // Left behind by an earlier change: removed now that their cluster answers, if
        // this persona may, and unless someone else's object stands there now (below).
        let mut swept = BTreeSet::new();
        let mut swept_plans: BTreeMap<ObjRef, Vec<String>> = BTreeMap::new();
        for (t, plans) in outstanding {
            let registered = self.clusters.iter().any(|c| c.name == t.cluster);
            if registered
                && !dark.contains(&t.cluster)
                && !desired.iter().any(|(d, _)| *d == t)
                && self.persona.may_write(&t.cluster, &t.namespace, &t.kind)
            {
                swept.insert(t.clone());
                swept_plans.insert(t.clone(), plans);
                desired.push((t, Desired::Absent));
            }
        }
        // A waypoint left behind stays while a service has come to use it since.
        let waypoints: Vec<&ObjRef> = swept.iter().filter(|t| t.kind == super::target::WAYPOINT_KIND).collect();
        if !waypoints.is_empty() {
            for (t, why) in super::rollback::waypoints_in_use(&self.clusters, &waypoints, &desired, &dark).await? {
                swept.remove(&t);
                desired.retain(|(d, _)| *d != t);
                let plans = swept_plans.remove(&t).unwrap_or_default();
                unpruned.push(Unpruned { cluster: t.cluster.clone(), plans, objects: vec![t], why });
            }
        }
        let mut changes = super::prepare(&self.clusters, desired, &self.opts).await?;
        changes.steps.retain(|s| !swept.contains(&s.target) || s.previous.as_ref().is_some_and(managed_by_meshdeck));
        check_persona(&self.persona, &intent.what, &changes)?;
        unpruned.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        let swept = changes.pending().filter(|s| swept.contains(&s.target)).map(|s| s.target.clone()).collect();
        Ok(Prepared { intent, changes, unpruned, swept, persona: self.persona.name.clone() })
    }

    /// Write a prepared change once the operator said yes (`confirmation`).
    /// `before_write` runs after the grant and the lock, before the intent is recorded
    /// (a trust plan saves its new root's key there: never on a dry run or a no).
    pub async fn write(
        &self,
        prepared: Prepared,
        confirmation: Confirmation,
        before_write: impl FnOnce() -> Result<(), String>,
    ) -> Result<Written, ApplyError> {
        let Prepared { intent, changes, unpruned, swept, persona } = prepared;
        if confirmation == Confirmation::NothingToWrite && !changes.is_noop() {
            return Err(ApplyError::History("a change with writes needs the operator's yes".into()));
        }
        let grant = WriteGrant::confirmed(&self.clusters, &changes, confirmation)?;
        let _lock = self.history.lock(&format!("{} {}", intent.action, intent.what))?;
        before_write().map_err(ApplyError::History)?;
        let mut record =
            HistoryRecord::pending(&intent.action, persona, intent.plans, intent.plan_yaml, changes.clone(), intent.rollback_of);
        record.unpruned = unpruned;
        record.swept = swept;
        record.canary = intent.canary;
        if changes.is_noop() {
            // Nothing to write (an interrupted change whose writes are all undone): the
            // record says what was checked, and finishes what it undoes.
            record.clusters = changes.clusters_touched();
            let record = record.finished(ApplyReport { outcome: Outcome::NoChanges, clusters: Default::default() });
            self.history.record(&record)?;
            return Ok(Written { record, interrupted: false });
        }
        record.fleet = super::rollback::identities(&self.clusters, changes.clusters_touched()).await;
        self.history.record(&record)?;
        let cancel = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let signals = super::signals::writing(cancel.clone(), &record.id, self.announce_signals);
        let opts = ApplyOptions { cancel: Some(cancel.clone()), ..self.opts.clone() };
        let result = super::write::execute(&self.clusters, &changes, &opts, &grant).await;
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                drop(signals);
                // Nothing was written: the record says so and lists no changes.
                let outcome = if matches!(e, ApplyError::Stale(_)) { Outcome::Stale } else { Outcome::Refused };
                let mut done = record.finished(ApplyReport { outcome, clusters: Default::default() });
                done.changes = ChangeSet::default();
                done.clusters = Vec::new();
                done.unpruned = Vec::new();
                done.swept = Vec::new();
                let _ = self.history.record(&done);
                return Err(e);
            }
        };
        signals.landed();
        let mut record = record.finished(report);
        record.after = super::rollback::after_state(&self.clusters, &changes).await;
        let interrupted = cancel.load(std::sync::atomic::Ordering::SeqCst);
        // The signal handler stays until the record is written: a second Ctrl-C while
        // recording leaves the intent, which the next run names.
        self.history.record(&record).map_err(|e| ApplyError::History(format!("{e}: the report was not recorded")))?;
        drop(signals);
        Ok(Written { record, interrupted })
    }
}

/// Every object a change set creates, changes or deletes must be one the persona may write.
pub fn check_persona(persona: &Persona, what: &str, changes: &ChangeSet) -> Result<(), ApplyError> {
    for s in changes.pending() {
        let t = &s.target;
        persona.check_write(what, s.change.as_str(), &t.cluster, &t.namespace, &t.kind, &t.name)?;
    }
    Ok(())
}

/// Labelled as meshdeck's: only such objects are ever pruned.
fn managed_by_meshdeck(o: &Value) -> bool {
    o.pointer(&format!("/metadata/labels/{}", crate::render::MANAGED_BY.replace('/', "~1"))).and_then(Value::as_str) == Some("meshdeck")
}
