//! A diff's life in the cockpit: checked against the fleet as it is now, prepared
//! by the conductor, shown, confirmed, written, reported.

use super::*;

#[derive(Clone, Debug, PartialEq)]
pub enum DiffPhase {
    /// A cluster the plan needs is live but still reading its mesh facts (another
    /// identity began acting for it): the diff starts once they are read.
    Waiting {
        why: String,
        since: DateTime<Utc>,
    },
    Preparing,
    Ready(Box<Prepared>),
    Applying {
        changes: ChangeSet,
        progress: Vec<String>,
    },
    Done {
        report: ApplyReport,
        id: String,
    },
    Failed(String),
}

/// How long a diff waits for a cluster's mesh facts before it is refused.
pub const FACTS_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// A plan checked again against the fleet as it is now.
enum Checked {
    Ready(Plan),
    /// Named clusters are live but still reading their mesh facts: why.
    Reading(String),
    Refused(String),
}

/// Where a diff came from: what to record when it is applied.
#[derive(Clone, Debug, PartialEq)]
pub enum DiffOrigin {
    Plan(Plan),
    Rollback(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct DiffState {
    pub generation: u64,
    pub origin: DiffOrigin,
    pub phase: DiffPhase,
    pub scroll: usize,
}

impl AppState {
    /// An apply or rollback is writing now.
    pub fn applying(&self) -> bool {
        self.diff.as_ref().is_some_and(|d| matches!(d.phase, DiffPhase::Applying { .. }))
    }

    pub(super) fn start_diff(&mut self, origin: DiffOrigin) -> Vec<Effect> {
        if self.applying() {
            // One apply at a time; its result must not be dropped for a newer diff.
            self.status = Some("an apply is writing: wait for its report before the next diff".into());
            self.go(View::Diff);
            return vec![];
        }
        self.generation += 1;
        let generation = self.generation;
        // The plan was checked against the fleet as it was when composed; a cluster may
        // have gone dark or be re-reading its facts (another identity acts) since.
        let origin = match origin {
            DiffOrigin::Plan(p) => match self.checked_now(&p) {
                Checked::Ready(p) => DiffOrigin::Plan(p),
                Checked::Reading(why) => {
                    self.log(format!("waiting: {why}"));
                    let phase = DiffPhase::Waiting { why, since: self.now };
                    self.diff = Some(DiffState { generation, origin: DiffOrigin::Plan(p), phase, scroll: 0 });
                    self.go(View::Diff);
                    return vec![];
                }
                Checked::Refused(why) => {
                    self.log(format!("refused: {}", why.lines().next().unwrap_or_default()));
                    self.diff = Some(DiffState { generation, origin: DiffOrigin::Plan(p), phase: DiffPhase::Failed(why), scroll: 0 });
                    self.go(View::Diff);
                    return vec![];
                }
            },
            other => other,
        };
        let effect = match &origin {
            DiffOrigin::Plan(p) => Effect::Prepare { generation, plan: p.clone() },
            DiffOrigin::Rollback(id) => Effect::PrepareRollback { generation, id: id.clone() },
        };
        self.diff = Some(DiffState { generation, origin, phase: DiffPhase::Preparing, scroll: 0 });
        self.go(View::Diff);
        vec![effect]
    }

    /// `plan` checked against the fleet as it is now, or why it cannot be diffed:
    /// the errors of checking it again, or the clusters it names that cannot be seen.
    fn checked_now(&self, plan: &Plan) -> Checked {
        match crate::plan::load("plan", &plan.to_yaml(), &self.snapshot) {
            Err(errs) => Checked::Refused(errs.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("\n")),
            Ok(now) if now.unseen.is_empty() => Checked::Ready(now),
            Ok(now) => {
                // Worth waiting for only while every such cluster is live and merely re-reading its facts.
                let reading = now.unseen.keys().all(|c| self.snapshot.cluster(c).is_some_and(|v| v.reading_facts()));
                if reading {
                    Checked::Reading(now.unseen_line())
                } else {
                    Checked::Refused(format!("{}; try again once it is seen", now.unseen_line()))
                }
            }
        }
    }

    /// A diff waiting for mesh facts: prepare it once they are read, refuse it if the
    /// plan no longer holds, or give up after `FACTS_WAIT`.
    pub(super) fn resume_waiting(&mut self) -> Vec<Effect> {
        let Some(d) = self.diff.as_ref() else { return vec![] };
        let (DiffPhase::Waiting { why, since }, DiffOrigin::Plan(p)) = (&d.phase, &d.origin) else { return vec![] };
        let (why, since, generation) = (why.clone(), *since, d.generation);
        let checked = self.checked_now(p);
        let (phase, origin, effects) = match checked {
            Checked::Ready(p) => {
                self.log(format!("prepare {}", p.names().join(",")));
                (DiffPhase::Preparing, Some(DiffOrigin::Plan(p.clone())), vec![Effect::Prepare { generation, plan: p }])
            }
            Checked::Refused(e) => (DiffPhase::Failed(e), None, vec![]),
            Checked::Reading(_) if (self.now - since).to_std().unwrap_or_default() > FACTS_WAIT => {
                (DiffPhase::Failed(format!("{why}; gave up after {} s", FACTS_WAIT.as_secs())), None, vec![])
            }
            Checked::Reading(_) => return vec![],
        };
        if let DiffPhase::Failed(e) = &phase {
            self.log(format!("refused: {}", e.lines().next().unwrap_or_default()));
        }
        if let Some(d) = self.diff.as_mut() {
            d.phase = phase;
            if let Some(o) = origin {
                d.origin = o;
            }
        }
        effects
    }
}
