//! Driving a canary: write a step through the conductor (persona, preflight, dry
//! run, diff, record), hold it for its interval, judge it from each calling
//! cluster's Prometheus, then write the next, or go back. One driver per canary
//! (`Store::drive`); the CLI and the cockpit both drive with this.
//!
//! Never blind: a cluster the route needs that does not answer pauses the
//! canary; a step not judged within `decideWithin` (no metrics, too few
//! requests) aborts it back to the start; nothing is promoted on "not yet".
//! Never over another's write: going back restores only objects as the
//! canary's own last write left them (else it pauses, naming the object).

use std::collections::BTreeMap;
use std::time::Duration;

use super::judge::{self, Verdict};
use super::store::{CanaryState, DriverLock, Request, Status, Store};
use crate::apply::history::{CanaryMark, HistoryRecord};
use crate::apply::write::Outcome;
use crate::apply::{ApplyError, Confirmation, Desired, Intent, ObjRef, Pipeline, Prepared};
use crate::inventory::Inventory;
use crate::plan::{Canary, Plan, RollbackTo, RouteAction, TrafficRoute};

/// Unix seconds now.
pub fn now() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

fn rfc3339(t: f64) -> String {
    chrono::DateTime::from_timestamp_millis((t * 1000.0) as i64).map(|d| d.to_rfc3339()).unwrap_or_default()
}

/// How often an undecided step is judged again.
const RECHECK: f64 = 5.0;

/// The one route of a canary plan, with its canary section.
pub fn canary_route(plan: &Plan) -> Result<(&TrafficRoute, &Canary), String> {
    let with: Vec<&TrafficRoute> = plan.routes.iter().filter(|r| r.canary.is_some()).collect();
    match (with.as_slice(), plan.routes.len() + plan.access.len()) {
        ([r], 1) => Ok((r, r.canary.as_ref().ok_or("no canary section")?)),
        ([], _) => Err("no TrafficRoute with a canary section: nothing to step (see docs/plans.md, Canary)".into()),
        (_, _) => Err("a canary's plan holds one TrafficRoute with its canary section, and nothing else".into()),
    }
}

/// The plan at step `step` (0: the canary at 0): the split at its step weights, no canary section.
pub fn step_plan(route: &TrafficRoute, canary: &Canary, step: usize) -> Plan {
    let split = match &route.action {
        RouteAction::Split(ds) => canary.split_at(ds, step),
        RouteAction::Failover(_) => Vec::new(),
    };
    let r = TrafficRoute { action: RouteAction::Split(split), canary: None, ..route.clone() };
    Plan { routes: vec![r], ..Plan::default() }
}

/// `v3@cluster2 25%, v1@cluster1 45%, v2@cluster1 30%`.
pub fn weights_line(plan: &Plan) -> String {
    match plan.routes.first().map(|r| &r.action) {
        Some(RouteAction::Split(ds)) => {
            ds.iter().map(|d| format!("{}@{} {}%", d.version, d.cluster, d.weight)).collect::<Vec<_>>().join(", ")
        }
        _ => String::new(),
    }
}

pub struct Driver {
    pipeline: Pipeline,
    store: Store,
    inventory: Inventory,
    pub state: CanaryState,
    route: TrafficRoute,
    canary: Canary,
    say: Box<dyn Fn(&str) + Send + Sync>,
    _lock: DriverLock,
    /// A step whose write was interrupted (its record left pending): written first.
    unfinished: Option<usize>,
}

/// How a drive ended for its front: the canary's status (a paused canary's
/// driver keeps waiting; it returns only on an end or an error).
pub type Ended = Result<Status, ApplyError>;

impl Driver {
    /// Step 1's change, checked (persona, one owner per route, preflight, dry run,
    /// diff): what the operator confirms to start the canary. Nothing is written.
    pub async fn prepare_start(pipeline: &Pipeline, inventory: &Inventory, plan: &Plan) -> Result<Prepared, ApplyError> {
        let (route, canary) = canary_route(plan).map_err(ApplyError::History)?;
        // The persona must allow where the canary ends, not only its first step.
        pipeline.persona().check(&step_plan(route, canary, canary.steps.len()))?;
        let store = Store::open(pipeline.history())?;
        if let Some(owner) = store.owner_of(&route.name, &route.service.key(), &route.from_clusters) {
            return Err(crate::apply::lease::refusal(&owner));
        }
        let first = step_plan(route, canary, 1);
        let rendered = render(&first, inventory)?;
        pipeline.plan_for(&first, &rendered, &[], None).await
    }

    /// Start: the state recorded (running, no step), then step 1 written as prepared.
    pub async fn start(
        pipeline: Pipeline,
        inventory: Inventory,
        plan: &Plan,
        file: &str,
        first: Prepared,
        say: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Driver, ApplyError> {
        let (route, canary) = canary_route(plan).map_err(ApplyError::History)?;
        let store = Store::open(pipeline.history())?;
        let starting = store.starting()?;
        if let Some(owner) = store.owner_of(&route.name, &route.service.key(), &route.from_clusters) {
            return Err(crate::apply::lease::refusal(&owner));
        }
        let lock = store.drive(&route.name)?;
        let state = CanaryState {
            name: route.name.clone(),
            run: crate::apply::history::History::new_id(),
            plan_yaml: plan.to_yaml(),
            file: file.into(),
            persona: pipeline.persona().name.clone(),
            started: chrono::Utc::now().to_rfc3339(),
            service: route.service.key(),
            from: route.from_clusters.clone(),
            destination: format!("{}@{}", canary.version, canary.cluster),
            steps: canary.steps.clone(),
            interval_seconds: canary.interval,
            status: Status::Running,
            step: 0,
            step_written: None,
            last_good: 0,
            failed_checks: 0,
            next_check: None,
            counting_from: None,
            waiting: None,
            ending: None,
            checks: Vec::new(),
            events: Vec::new(),
            records: Vec::new(),
        };
        store.save(&state)?;
        drop(starting);
        let mut d =
            Driver { pipeline, store, inventory, state, route: route.clone(), canary: canary.clone(), say, _lock: lock, unfinished: None };
        d.event(format!("started by {} from {file}: {} in {} steps", d.state.persona, d.state.destination, d.canary.steps.len()));
        d.write_step(1, Some(first)).await?;
        Ok(d)
    }

    /// Take over a canary that no process drives (after a kill, a Ctrl-C, a reboot):
    /// its plan re-read against the fleet now, its steps caught up from history.
    pub async fn resume(
        pipeline: Pipeline,
        inventory: Inventory,
        name: &str,
        say: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Driver, ApplyError> {
        let store = Store::open(pipeline.history())?;
        let lock = store.drive(name)?;
        let state = store.load(name)?.ok_or_else(|| ApplyError::History(format!("no canary {name} (see `meshdeck canary status`)")))?;
        let snap = inventory.snapshots.borrow().clone();
        let plan = crate::plan::load(&state.file, &state.plan_yaml, &snap).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            ApplyError::History(format!(
                "canary {name}'s plan no longer holds against the fleet (nothing was written):\n  {}",
                lines.join("\n  ")
            ))
        })?;
        let (route, canary) = canary_route(&plan).map_err(ApplyError::History)?;
        let (route, canary) = (route.clone(), canary.clone());
        let mut d = Driver { pipeline, store, inventory, state, route, canary, say, _lock: lock, unfinished: None };
        d.catch_up()?;
        Ok(d)
    }

    fn mark(&self, step: usize) -> CanaryMark {
        CanaryMark { name: self.state.name.clone(), run: self.state.run.clone(), step, reason: None }
    }

    fn event(&mut self, text: String) {
        (self.say)(&text);
        self.state.say(text);
    }

    fn save(&self) -> Result<(), ApplyError> {
        self.store.save(&self.state)
    }

    /// This canary's records, oldest first.
    fn records(&self) -> Result<Vec<HistoryRecord>, ApplyError> {
        let run = self.state.run.clone();
        Ok(self.pipeline.history().list()?.into_iter().filter(|r| r.canary.as_ref().is_some_and(|m| m.run == run)).collect())
    }

    /// History, not this file, says which steps were written: one finished after
    /// the state was last saved (a kill between the two) is taken up, not written again.
    fn catch_up(&mut self) -> Result<(), ApplyError> {
        let records = self.records()?;
        // Killed while writing a step: that step is finished first (what it wrote
        // shows as unchanged), before anything is judged against a half-written route.
        if let Some(r) = records.last().filter(|r| r.report.outcome == Outcome::Pending)
            && let Some(step) = r.canary.as_ref().map(|m| m.step).filter(|s| *s > self.state.step)
            && self.state.status == Status::Running
        {
            self.unfinished = Some(step);
            let text = format!("step {step} was being written ({}) when the last driver stopped: it is finished first", r.id);
            self.event(text);
        }
        for r in records {
            let Some(step) = r.canary.as_ref().map(|m| m.step) else { continue };
            if !self.state.records.contains(&r.id) && r.report.outcome != Outcome::Pending {
                self.state.records.push(r.id.clone());
            }
            if step > self.state.step && r.finished_well() && self.state.status == Status::Running {
                let at = r.when().map(|t| t.timestamp_millis() as f64 / 1000.0).unwrap_or_else(now);
                self.state.step = step;
                self.state.step_written = Some(at);
                self.state.next_check = Some(at + self.canary.interval as f64);
                self.state.counting_from = Some(at);
                self.state.failed_checks = 0;
                let text = format!("step {step} was written ({}) before the last driver stopped: taken up, not written again", r.id);
                self.event(text);
            }
        }
        self.save()
    }

    /// Drive until the canary ends: promoted, rolled back or aborted. A paused
    /// canary is held here until resumed (or aborted) from any terminal.
    pub async fn run(&mut self) -> Ended {
        loop {
            if let Some(asked) = self.store.take_request(&self.state.name)
                && let Some(end) = self.answer(asked.request, &asked.by).await?
            {
                return Ok(end);
            }
            match self.state.status {
                Status::Promoted | Status::RolledBack | Status::Aborted => return Ok(self.state.status),
                Status::RollingBack => {
                    let (end, why) = self.state.ending.clone().unwrap_or((Status::Aborted, "resumed a rollback".into()));
                    return self.go_back(end, why).await;
                }
                Status::Paused => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Status::Running => {}
            }
            if let Some(step) = self.unfinished.take() {
                self.write_step(step, None).await?;
                continue;
            }
            if self.state.step == 0 {
                self.write_step(1, None).await?;
                continue;
            }
            let due = self.state.next_check.unwrap_or(0.0);
            let wait = due - now();
            if wait > 0.0 {
                tokio::time::sleep(Duration::from_secs_f64(wait.min(0.5))).await;
                continue;
            }
            if let Some(end) = self.judge_step().await? {
                return Ok(end);
            }
        }
    }

    /// Another terminal's (or the cockpit's) request.
    async fn answer(&mut self, request: Request, by: &str) -> Result<Option<Status>, ApplyError> {
        match request {
            Request::Pause if self.state.status == Status::Running => {
                self.state.status = Status::Paused;
                self.state.waiting = Some(format!("paused by {by}"));
                self.event(format!("paused by {by} at step {}", self.state.step));
                self.save()?;
            }
            Request::Resume if self.state.status == Status::Paused => {
                self.state.status = Status::Running;
                self.state.waiting = None;
                // Judged afresh: what it saw before the pause says nothing of now.
                let t = now();
                self.state.counting_from = Some(t);
                self.state.next_check = Some(t + self.canary.interval as f64);
                self.event(format!("resumed by {by} at step {}", self.state.step));
                self.save()?;
            }
            Request::Promote if self.state.status.active() && self.state.status != Status::RollingBack => {
                self.state.status = Status::Running;
                self.state.waiting = None;
                let step = self.state.step;
                if step >= self.canary.steps.len() {
                    self.event(format!("promoted by {by}: the last step holds without its verdict"));
                    return self.finish(Status::Promoted).map(Some);
                }
                self.event(format!("promoted by {by}: step {} written without step {step}'s verdict", step + 1));
                self.write_step(step + 1, None).await?;
            }
            Request::Abort if self.state.status != Status::RollingBack && self.state.status.active() => {
                return self.go_back(Status::Aborted, format!("aborted by {by}")).await.map(Some);
            }
            other => {
                let text = format!("{other:?} asked by {by} while {}: nothing to do", self.state.status.as_str());
                self.event(text.to_lowercase());
            }
        }
        Ok(None)
    }

    fn finish(&mut self, status: Status) -> Ended {
        self.state.status = status;
        self.state.waiting = None;
        self.state.next_check = None;
        self.save()?;
        Ok(status)
    }

    /// Clusters the route writes to or calls from that do not answer now.
    async fn dark(&self, plan: &Plan) -> Vec<String> {
        let mut names: Vec<String> = self.route.from_clusters.clone();
        if let Some(RouteAction::Split(ds)) = plan.routes.first().map(|r| &r.action) {
            names.extend(ds.iter().map(|d| d.cluster.clone()));
        }
        names.sort();
        names.dedup();
        self.pipeline.unreachable(&names).await
    }

    fn pause(&mut self, why: String) -> Result<(), ApplyError> {
        self.state.status = Status::Paused;
        self.state.waiting = Some(why.clone());
        self.event(format!("paused at step {}: {why}", self.state.step));
        self.save()
    }

    /// Write step `step` (its prepared change if the operator just confirmed it).
    async fn write_step(&mut self, step: usize, prepared: Option<Prepared>) -> Result<(), ApplyError> {
        let plan = step_plan(&self.route, &self.canary, step);
        let dark = self.dark(&plan).await;
        if !dark.is_empty() {
            return self.pause(format!("{} not answering: step {step} is not written blind; resume once it answers", dark.join(", ")));
        }
        let prepared = match prepared {
            Some(p) => p,
            None => {
                let rendered = render(&plan, &self.inventory)?;
                match self.pipeline.plan_for(&plan, &rendered, &[], Some(&self.mark(step))).await {
                    Ok(p) => p,
                    Err(e) => return self.pause(format!("step {step} could not be prepared (nothing was written): {e}")),
                }
            }
        };
        let mut prepared = prepared;
        prepared.intent.canary = Some(self.mark(step));
        let confirmation = if prepared.changes.is_noop() { Confirmation::NothingToWrite } else { Confirmation::Canary };
        let written = match self.pipeline.write(prepared, confirmation, || Ok(())).await {
            Ok(w) => w,
            Err(e) => return self.pause(format!("step {step} was not written: {e}")),
        };
        let id = written.record.id.clone();
        self.state.records.push(id.clone());
        match &written.record.report.outcome {
            Outcome::Applied | Outcome::NoChanges => {
                let at = now();
                self.state.step = step;
                self.state.step_written = Some(at);
                self.state.next_check = Some(at + self.canary.interval as f64);
                self.state.counting_from = Some(at);
                self.state.failed_checks = 0;
                self.state.waiting = None;
                let text = format!("step {step}/{}: {} (recorded as {id})", self.canary.steps.len(), weights_line(&plan));
                self.event(text);
                self.save()
            }
            other => {
                let report = written.record.report.describe();
                self.pause(format!("step {step} did not apply ({other:?}, recorded as {id}): {}", report.trim()))
            }
        }
    }

    /// Judge the step in force; pass → the next step (or promoted), fail → hold
    /// or go back, undecided → judged again soon, aborted when too long.
    async fn judge_step(&mut self) -> Result<Option<Status>, ApplyError> {
        let step = self.state.step;
        let plan = step_plan(&self.route, &self.canary, step);
        let dark = self.dark(&plan).await;
        if !dark.is_empty() {
            self.pause(format!("{} not answering: the step is not judged or promoted blind; resume once it answers", dark.join(", ")))?;
            return Ok(None);
        }
        let t = now();
        // Everything since the evidence began: an undecided step gathers more.
        let from = self.state.counting_from.or(self.state.step_written).unwrap_or(t - self.canary.interval as f64);
        let window = (t - from).ceil().max(1.0) as u64;
        let check = match self.observe(&plan, window, t).await {
            Ok(seen) => judge::judge(&self.canary, step, &seen, rfc3339(t), window),
            Err(why) => not_yet(step, &rfc3339(t), window, why),
        };
        let why = check.why();
        let verdict = check.verdict;
        self.state.checked(check);
        match verdict {
            Verdict::Passed => {
                self.state.last_good = step;
                self.event(format!("step {step} passed: {why}"));
                if step >= self.canary.steps.len() {
                    self.event(format!("promoted: {}", weights_line(&plan)));
                    return self.finish(Status::Promoted).map(Some);
                }
                self.write_step(step + 1, None).await?;
            }
            Verdict::Failed => {
                self.state.failed_checks += 1;
                let (n, budget) = (self.state.failed_checks, self.canary.rollback_after);
                self.event(format!("step {step} failed ({n} of {budget} failed checks): {why}"));
                if n >= budget {
                    return self.go_back(Status::RolledBack, format!("step {step} failed: {why}")).await.map(Some);
                }
                self.state.next_check = Some(t + self.canary.interval as f64);
                self.state.counting_from = Some(t);
                self.save()?;
            }
            Verdict::NotYet => {
                // Counted from the evidence's start: a pause's time is not the step's.
                let since = self.state.counting_from.or(self.state.step_written).unwrap_or(t);
                if t - since >= self.canary.decide_within as f64 {
                    let within = self.canary.decide_within;
                    return self.go_back(Status::Aborted, format!("step {step} not judged within {within}s: {why}")).await.map(Some);
                }
                self.state.waiting = Some(format!("not yet: {why}"));
                self.state.next_check = Some(t + RECHECK.min(self.canary.interval as f64));
                self.save()?;
            }
        }
        Ok(None)
    }

    /// The observed split of the route from each calling cluster, over the window
    /// (counted from the step's write when that is later).
    async fn observe(&self, plan: &Plan, window: u64, t: f64) -> Result<Vec<crate::observe::traffic::ObservedRoute>, String> {
        let snap = self.inventory.snapshots.borrow().clone();
        let service = self.route.service.key();
        let mut routes = crate::inventory::routes::effective_routes(&snap, Some(&service), None);
        routes.retain(|r| self.route.from_clusters.contains(&r.from));
        // The inventory must show the step itself, or its intended split is another's.
        let want: BTreeMap<(String, Option<String>), u32> = match plan.routes.first().map(|r| &r.action) {
            Some(RouteAction::Split(ds)) => {
                ds.iter().filter(|d| d.weight > 0).map(|d| ((d.cluster.clone(), Some(d.version.clone())), d.weight)).collect()
            }
            _ => BTreeMap::new(),
        };
        for r in &routes {
            let seen: BTreeMap<(String, Option<String>), u32> = crate::observe::traffic::intended(r)
                .into_iter()
                .filter(|(_, _, w)| *w > 0.0)
                .map(|(c, v, w)| ((c, v), w.round() as u32))
                .collect();
            if seen != want {
                return Err(format!("the route in force from {} is not yet the step's (the inventory has not seen it)", r.from));
            }
        }
        if routes.len() < self.route.from_clusters.len() {
            return Err("a calling cluster's route is not in the inventory".into());
        }
        Ok(crate::observe::observed(self.pipeline.clusters(), &routes, Some(&service), window, t).await)
    }

    /// Go back (`end`: rolled back after a failed gate, or aborted): every object
    /// the canary's steps after the kept one wrote is made again what it was before
    /// them, in one all-or-nothing change, as long as the canary's own last write
    /// is what stands there.
    async fn go_back(&mut self, end: Status, why: String) -> Ended {
        let keep = match (end, self.canary.rollback_to) {
            (Status::RolledBack, RollbackTo::LastGoodStep) => self.state.last_good,
            _ => 0,
        };
        if self.state.status != Status::RollingBack {
            self.state.status = Status::RollingBack;
            self.state.ending = Some((end, why.clone()));
            self.state.waiting = Some(why.clone());
            let to = if keep == 0 { "the start".to_string() } else { format!("step {keep}") };
            self.event(format!("going back to {to}: {why}"));
            self.save()?;
        }
        let records = self.records()?;
        let steps: Vec<&HistoryRecord> =
            records.iter().filter(|r| r.canary.as_ref().is_some_and(|m| m.step > keep) && !r.report.outcome.wrote_nothing()).collect();
        // Each object as the first of those steps found it.
        let mut desired: Vec<(ObjRef, Desired)> = Vec::new();
        for r in &steps {
            for s in &r.changes.steps {
                if !desired.iter().any(|(t, _)| *t == s.target) {
                    let want = match &s.previous {
                        Some(prev) => Desired::Restore(prev.clone()),
                        None => Desired::Absent,
                    };
                    desired.push((s.target.clone(), want));
                }
            }
        }
        if let Err(changed) = self.as_we_left_it(&records).await {
            self.pause(format!("not gone back ({why}): {changed}; decide by hand (meshdeck history, meshdeck rollback)"))?;
            return Ok(Status::Paused);
        }
        let plan_yaml = if keep == 0 { self.plan_before(&records)? } else { step_plan(&self.route, &self.canary, keep).to_yaml() };
        let intent = Intent {
            action: "rollback".into(),
            plans: vec![self.state.name.clone()],
            plan_yaml,
            rollback_of: steps.first().map(|r| r.id.clone()),
            what: format!("canary {} back to {}", self.state.name, if keep == 0 { "the start".into() } else { format!("step {keep}") }),
            canary: Some(CanaryMark { reason: Some(why.clone()), ..self.mark(0) }),
        };
        let prepared = match self.pipeline.change(intent, desired).await {
            Ok(p) => p,
            Err(e) => {
                self.pause(format!("not gone back ({why}): {e}"))?;
                return Ok(Status::Paused);
            }
        };
        let confirmation = if prepared.changes.is_noop() { Confirmation::NothingToWrite } else { Confirmation::Canary };
        let written = match self.pipeline.write(prepared, confirmation, || Ok(())).await {
            Ok(w) => w,
            Err(e) => {
                self.pause(format!("not gone back ({why}): {e}"))?;
                return Ok(Status::Paused);
            }
        };
        self.state.records.push(written.record.id.clone());
        if !matches!(written.record.report.outcome, Outcome::Applied | Outcome::NoChanges) {
            let report = written.record.report.describe();
            self.pause(format!("going back did not complete (recorded as {}): {}", written.record.id, report.trim()))?;
            return Ok(Status::Paused);
        }
        self.state.step = keep;
        self.state.step_written = Some(now());
        self.event(format!("{} (recorded as {}): {why}", end.as_str(), written.record.id));
        self.finish(end)
    }

    /// Every object of the canary's newest write is as that write (or its own
    /// going back since) left it: else another writer's change stands there.
    async fn as_we_left_it(&self, records: &[HistoryRecord]) -> Result<(), String> {
        let Some(newest) =
            records.iter().rev().find(|r| r.canary.as_ref().is_some_and(|m| m.step > 0) && !r.report.outcome.wrote_nothing())
        else {
            return Ok(());
        };
        let ours_since: Vec<&HistoryRecord> = records.iter().filter(|r| r.when() > newest.when()).collect();
        let mut changed = Vec::new();
        for s in &newest.changes.steps {
            if ours_since.iter().any(|r| r.changes.steps.iter().any(|x| x.target == s.target)) {
                continue;
            }
            let Some(left) = newest.after.get(&s.target.to_string()) else { continue };
            let Ok(c) = crate::apply::cluster(self.pipeline.clusters(), &s.target.cluster) else { continue };
            match crate::apply::target::get(c, &s.target).await {
                Ok(live) => {
                    if !crate::apply::target::still_as_left(live.as_ref(), left.as_deref(), s.expected.as_ref()) {
                        changed.push(format!("{} changed since the canary wrote it", s.target));
                    }
                }
                Err(e) => changed.push(format!("{}: {e}", s.target)),
            }
        }
        if changed.is_empty() { Ok(()) } else { Err(changed.join("; ")) }
    }

    /// The plan as it was before the canary's first step (none: empty).
    fn plan_before(&self, ours: &[HistoryRecord]) -> Result<String, ApplyError> {
        let first = ours.first().and_then(HistoryRecord::when);
        let all = self.pipeline.history().list()?;
        Ok(all
            .iter()
            .rfind(|r| r.when() < first && r.finished_well() && r.plans.contains(&self.state.name))
            .map(|r| r.plan_yaml.clone())
            .unwrap_or_default())
    }
}

/// A check that could not be made (the inventory lags, a caller's route is unseen).
fn not_yet(step: usize, time: &str, window: u64, why: String) -> judge::Check {
    judge::Check {
        time: time.into(),
        step,
        window_seconds: window,
        verdict: Verdict::NotYet,
        callers: vec![judge::CallerCheck {
            from: "-".into(),
            requests: 0,
            observed: None,
            intended: None,
            counted_seconds: 0,
            gates: vec![judge::GateValue { gate: "route".into(), value: None, threshold: None, verdict: Verdict::NotYet, why }],
            verdict: Verdict::NotYet,
        }],
    }
}

fn render(plan: &Plan, inventory: &Inventory) -> Result<crate::render::RenderedObjects, ApplyError> {
    let snap = inventory.snapshots.borrow().clone();
    crate::render::render(plan, &snap).map_err(|e| ApplyError::History(format!("render: {e}")))
}
