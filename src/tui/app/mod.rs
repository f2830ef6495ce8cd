//! The cockpit's state and its one `update` function: keys become actions
//! through the keymap, actions and results change state, and effects (data)
//! ask the runner for background work. Never awaits, never draws.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

mod diff;
mod input;

pub use diff::{DiffOrigin, DiffPhase, DiffState, FACTS_WAIT};

use chrono::{DateTime, Utc};
use crossterm::event::{KeyCode, KeyEvent};
use ratatui_textarea::TextArea;

use super::action::Action;
use super::composer::{Composer, Mode};
use super::keymap::{Key, Keymap, Resolved};
use super::msg::{Effect, Msg};
use crate::apply::history::HistoryRecord;
use crate::apply::write::{ApplyReport, Outcome};
use crate::apply::{ChangeSet, Prepared};
use crate::inventory::FleetSnapshot;
use crate::plan::Plan;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    Fleet,
    Service,
    Composer,
    Editor,
    Diff,
    History,
    Clusters,
    Help,
    Log,
    Problems,
    Routes,
    Canary,
}

impl View {
    pub fn id(self) -> &'static str {
        match self {
            View::Fleet => "fleet",
            View::Service => "service",
            View::Composer => "composer",
            View::Editor => "editor",
            View::Diff => "diff",
            View::History => "history",
            View::Clusters => "clusters",
            View::Help => "help",
            View::Log => "log",
            View::Problems => "problems",
            View::Routes => "routes",
            View::Canary => "canary",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Name,
    Namespace,
    Health,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Filter(String),
    Command(String),
}

pub struct EditorState {
    pub textarea: TextArea<'static>,
    /// Tab 0 is the plan; then one tab per cluster's rendered objects.
    pub tabs: Vec<(String, String)>,
    pub tab: usize,
    pub errors: Vec<crate::plan::PlanError>,
    pub scroll: usize,
}

impl EditorState {
    pub fn new(plan_yaml: &str) -> Self {
        let textarea = TextArea::from(plan_yaml.lines().map(String::from).collect::<Vec<_>>());
        Self { textarea, tabs: vec![("plan".into(), plan_yaml.into())], tab: 0, errors: vec![], scroll: 0 }
    }

    pub fn text(&self) -> String {
        self.textarea.lines().join("\n") + "\n"
    }
}

pub struct AppState {
    pub view: View,
    pub back: Vec<View>,
    pub snapshot: Arc<FleetSnapshot>,
    /// Indices into `snapshot.services`, filtered and sorted.
    pub rows: Vec<usize>,
    pub selected: usize,
    pub offset: usize,
    pub col_offset: usize,
    pub filter: String,
    pub namespace: Option<String>,
    pub sort: SortBy,
    pub hidden: BTreeSet<String>,
    pub input: Option<Input>,
    pub composer: Option<Composer>,
    pub editor: Option<EditorState>,
    pub diff: Option<DiffState>,
    pub history: Vec<HistoryRecord>,
    pub history_selected: usize,
    pub problems_selected: usize,
    /// The calling cluster whose route the route picture shows (an index into the service's routes).
    pub routes_selected: usize,
    pub clusters_selected: usize,
    pub log: VecDeque<String>,
    pub status: Option<String>,
    pub warnings: Vec<String>,
    pub read_only: bool,
    /// Kubeconfig contexts not registered: the clusters view can add them.
    pub available: Vec<String>,
    pub generation: u64,
    pub now: DateTime<Utc>,
    pub page_rows: usize,
    pub keymap: Keymap,
    /// The ROUTE cell per service (`name.namespace`) that a VirtualService routes.
    pub routes: BTreeMap<String, String>,
    /// Each cluster's root of trust and CA, read every `TRUST_EVERY` (and when a root changes).
    pub trust: BTreeMap<String, crate::inventory::trust::TrustStatus>,
    /// The observed split per (service, calling cluster), read every `TRAFFIC_EVERY`.
    pub traffic: BTreeMap<(String, String), crate::observe::traffic::ObservedRoute>,
    pending: Vec<Key>,
    pending_since: Option<Instant>,
    pub quit: bool,
    /// Quit was asked while an apply wrote: leave once its report is recorded.
    pub quit_after_apply: bool,
    /// Every canary (newest first), read from history every second.
    pub canaries: Vec<CanaryRow>,
    pub canary_selected: usize,
    /// A promote or abort waiting for its `y`.
    pub canary_armed: Option<(String, crate::canary::Request)>,
}

pub use super::msg::CanaryRow;

impl AppState {
    pub fn new(snapshot: Arc<FleetSnapshot>, keymap: Keymap, read_only: bool, now: DateTime<Utc>) -> Self {
        let mut s = AppState {
            view: View::Fleet,
            back: vec![],
            snapshot,
            rows: vec![],
            selected: 0,
            offset: 0,
            col_offset: 0,
            filter: String::new(),
            namespace: None,
            sort: SortBy::Namespace,
            hidden: BTreeSet::new(),
            input: None,
            composer: None,
            editor: None,
            diff: None,
            history: vec![],
            history_selected: 0,
            problems_selected: 0,
            routes_selected: 0,
            clusters_selected: 0,
            log: VecDeque::new(),
            status: None,
            warnings: vec![],
            read_only,
            available: vec![],
            generation: 0,
            now,
            page_rows: 10,
            keymap,
            routes: BTreeMap::new(),
            trust: BTreeMap::new(),
            traffic: BTreeMap::new(),
            pending: vec![],
            pending_since: None,
            quit: false,
            quit_after_apply: false,
            canaries: vec![],
            canary_selected: 0,
            canary_armed: None,
        };
        s.recompute_rows();
        s.refresh_routes();
        s
    }

    /// The selected service's effective routes, one per calling cluster.
    pub fn service_routes(&self) -> Vec<crate::inventory::routes::EffectiveRoute> {
        match self.selected_service() {
            Some(s) => crate::inventory::routes::effective_routes(&self.snapshot, Some(&s.key()), None),
            None => vec![],
        }
    }

    /// The ROUTE cells, from the effective routes of the services a VirtualService
    /// names (once per snapshot, not per frame).
    pub fn refresh_routes(&mut self) {
        self.routes = crate::inventory::routes::route_cells(&self.snapshot);
    }

    /// A state on a fixed clock and the default keymap, for tests.
    pub fn for_test(snapshot: FleetSnapshot) -> Self {
        let now = DateTime::parse_from_rfc3339("2026-11-24T12:00:05Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default();
        AppState::new(Arc::new(snapshot), Keymap::builtin("default"), false, now)
    }

    pub fn log(&mut self, line: impl Into<String>) {
        let line = format!("{} {}", self.now.format("%H:%M:%S"), line.into());
        tracing::info!("{line}");
        self.log.push_back(line);
        while self.log.len() > 500 {
            self.log.pop_front();
        }
    }

    /// The fleet's findings, as `meshdeck analyze` gives them (cheap: the warnings
    /// come with each snapshot).
    pub fn findings(&self) -> Vec<crate::inventory::analyze::Finding> {
        crate::inventory::analyze::analyze(&self.snapshot)
    }

    /// Enter on a finding about a service: the fleet table shows that service
    /// selected (filter and namespace cleared if they hid it), then its view.
    fn open_problem(&mut self) {
        let Some(service) = self.findings().get(self.problems_selected).and_then(|f| f.service.clone()) else {
            self.status = Some("this finding is about clusters, not one service".into());
            return;
        };
        let Some(index) = self.snapshot.services.iter().position(|s| s.key() == service) else { return };
        if !self.rows.contains(&index) {
            self.filter.clear();
            self.namespace = None;
            self.recompute_rows();
        }
        if let Some(pos) = self.rows.iter().position(|i| *i == index) {
            self.selected = pos;
            self.keep_in_view();
            self.go(View::Service);
        }
    }

    pub fn selected_service(&self) -> Option<&crate::inventory::ServiceRow> {
        self.rows.get(self.selected).and_then(|i| self.snapshot.services.get(*i)).map(|s| s.as_ref())
    }

    /// Clusters shown as fleet columns (not hidden), in registry order.
    pub fn visible_clusters(&self) -> Vec<&crate::inventory::ClusterView> {
        self.snapshot.clusters.iter().filter(|c| !self.hidden.contains(&c.name)).collect()
    }

    pub fn namespaces(&self) -> Vec<String> {
        let mut ns: Vec<String> = self.snapshot.services.iter().map(|s| s.namespace.clone()).collect();
        ns.sort();
        ns.dedup();
        ns
    }

    fn go(&mut self, v: View) {
        if self.view != v {
            self.back.push(self.view);
            self.view = v;
        }
    }

    fn go_back(&mut self) {
        self.view = self.back.pop().unwrap_or(View::Fleet);
    }

    /// Filter and sort rows; keep the selection on the same service.
    pub fn recompute_rows(&mut self) {
        let keep = self.selected_service().map(|s| (s.namespace.clone(), s.name.clone()));
        let filter = self.filter.to_lowercase();
        let mut rows: Vec<usize> = self
            .snapshot
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| self.namespace.as_ref().is_none_or(|n| &s.namespace == n))
            .filter(|(_, s)| filter.is_empty() || format!("{}.{}", s.name, s.namespace).contains(&filter))
            .map(|(i, _)| i)
            .collect();
        let svc = |i: &usize| &self.snapshot.services[*i];
        match self.sort {
            SortBy::Name => rows.sort_by(|a, b| (&svc(a).name, &svc(a).namespace).cmp(&(&svc(b).name, &svc(b).namespace))),
            SortBy::Namespace => rows.sort_by(|a, b| (&svc(a).namespace, &svc(a).name).cmp(&(&svc(b).namespace, &svc(b).name))),
            SortBy::Health => rows.sort_by_key(|i| {
                let s = svc(i);
                let (ready, total) =
                    s.clusters.values().flat_map(|p| p.versions.values()).fold((0, 0), |(r, t), v| (r + v.ready, t + v.total));
                (ready == total, s.namespace.clone(), s.name.clone())
            }),
        }
        self.rows = rows;
        self.selected = keep
            .and_then(|(ns, name)| {
                self.rows.iter().position(|i| self.snapshot.services[*i].namespace == ns && self.snapshot.services[*i].name == name)
            })
            .unwrap_or(self.selected)
            .min(self.rows.len().saturating_sub(1));
        self.keep_in_view();
    }

    fn keep_in_view(&mut self) {
        let page = self.page_rows.max(1);
        if self.selected < self.offset {
            self.offset = self.selected;
        } else if self.selected >= self.offset + page {
            self.offset = self.selected + 1 - page;
        }
    }

    fn list_len(&self) -> usize {
        match self.view {
            View::Fleet => self.rows.len(),
            View::Composer => self.composer.as_ref().map_or(0, |c| c.rows.len()),
            View::History => self.history.len(),
            View::Problems => self.findings().len(),
            View::Routes => self.service_routes().len(),
            View::Clusters => self.snapshot.clusters.len() + self.available.len(),
            View::Canary => self.canaries.len(),
            _ => 0,
        }
    }

    fn cursor(&mut self) -> Option<&mut usize> {
        match self.view {
            View::Fleet => Some(&mut self.selected),
            View::Composer => self.composer.as_mut().map(|c| &mut c.selected),
            View::History => Some(&mut self.history_selected),
            View::Problems => Some(&mut self.problems_selected),
            View::Routes => Some(&mut self.routes_selected),
            View::Clusters => Some(&mut self.clusters_selected),
            View::Canary => Some(&mut self.canary_selected),
            View::Diff => self.diff.as_mut().map(|d| &mut d.scroll),
            View::Editor => self.editor.as_mut().map(|e| &mut e.scroll),
            _ => None,
        }
    }

    fn move_cursor(&mut self, delta: i64) {
        let len = self.list_len();
        let scrolling = matches!(self.view, View::Diff | View::Editor);
        if let Some(c) = self.cursor() {
            let max = if scrolling { usize::MAX / 2 } else { len.saturating_sub(1) } as i64;
            *c = (*c as i64 + delta).clamp(0, max.max(0)) as usize;
        }
        if self.view == View::Fleet {
            self.keep_in_view();
        }
    }

    fn open_composer(&mut self, mode: Mode) -> Vec<Effect> {
        let Some(key) = self.selected_service().map(|s| s.key()) else {
            self.status = Some("no service selected".into());
            return vec![];
        };
        match Composer::new(&self.snapshot, &key, mode) {
            Some(c) => {
                let owned = c.owner.clone();
                self.composer = Some(c);
                self.go(View::Composer);
                if let Some(owner) = owned {
                    // Edit the plan that routes it now: its last recorded version, once history is read.
                    self.status = Some(format!("{key} is routed by plan {owner}: composing edits it"));
                    self.load_owner_plan();
                    return vec![Effect::LoadHistory];
                }
            }
            None => self.status = Some(format!("{key} has no clusters")),
        }
        vec![]
    }

    /// Weights of the composer's owning plan from its newest history record, if read.
    fn load_owner_plan(&mut self) {
        let Some(c) = self.composer.as_mut() else { return };
        let Some(owner) = c.owner.clone() else { return };
        // History is shown newest first; the newest change that finished is what is live
        // (a rollback records the plan as it was before what it undid).
        let Some(rec) =
            self.history.iter().find(|r| r.action != "trust" && r.plans.contains(&owner) && r.finished_well() && !r.changes.is_noop())
        else {
            return;
        };
        if rec.plan_yaml.is_empty() {
            return;
        }
        if let Ok(plan) = crate::plan::load("history", &rec.plan_yaml, &self.snapshot) {
            c.load_weights(&plan);
            c.revalidate(&self.snapshot);
        }
    }

    /// The plan of the editor's text, or its errors shown at their lines.
    fn editor_plan(&mut self) -> Option<Plan> {
        let text = self.editor.as_ref()?.text();
        match crate::plan::load("editor", &text, &self.snapshot) {
            Ok(p) => {
                if let Some(e) = self.editor.as_mut() {
                    e.errors.clear();
                }
                Some(p)
            }
            Err(errs) => {
                if let Some(e) = self.editor.as_mut() {
                    if let Some(first) = errs.first() {
                        e.textarea.move_cursor(ratatui_textarea::CursorMove::Jump(
                            first.line.saturating_sub(1) as u16,
                            first.column.saturating_sub(1) as u16,
                        ));
                    }
                    e.errors = errs;
                }
                None
            }
        }
    }

    /// Fill the editor: the plan, then each cluster's rendered objects.
    fn open_editor(&mut self, plan: &Plan) {
        let mut ed = EditorState::new(&plan.to_yaml());
        match crate::render::render(plan, &self.snapshot) {
            Ok(out) => {
                // What Istio will make of it that the plan does not say, above the objects.
                let notes: String = out
                    .routing
                    .iter()
                    .map(|(r, line)| format!("# routing: {r}: {line}\n"))
                    .chain(out.notes.iter().map(|n| format!("# note: {n}\n")))
                    .collect();
                for (cluster, objs) in &out.clusters {
                    let text: String =
                        std::iter::once(notes.clone()).chain(objs.iter().map(|o| format!("---\n{}", crate::yaml::to_yaml(o)))).collect();
                    ed.tabs.push((cluster.clone(), text));
                }
            }
            Err(e) => self.status = Some(e.to_string()),
        }
        self.editor = Some(ed);
        self.go(View::Editor);
    }
}

/// The one place state changes.
pub fn update(state: &mut AppState, msg: Msg) -> Vec<Effect> {
    match msg {
        Msg::Key(k) => state.key(k),
        Msg::Fleet(snap) => {
            // A cluster failing or recovering is news: the log view says it, with how long.
            for line in snap.state_changes(&state.snapshot) {
                state.log(line);
            }
            state.snapshot = snap;
            state.recompute_rows();
            state.refresh_routes();
            state.resume_waiting()
        }
        Msg::Trust(statuses) => {
            state.trust = statuses.into_iter().map(|s| (s.cluster.clone(), s)).collect();
            vec![]
        }
        Msg::Canaries(rows) => {
            state.canaries = rows;
            state.canary_selected = state.canary_selected.min(state.canaries.len().saturating_sub(1));
            vec![]
        }
        Msg::Log(line) => {
            state.log(line);
            vec![]
        }
        Msg::Traffic(observed) => {
            state.traffic = observed.into_iter().map(|r| ((r.service.clone(), r.from.clone()), r)).collect();
            vec![]
        }
        Msg::Tick(now) => {
            state.now = now;
            state.resume_waiting()
        }
        Msg::Layout { rows } => {
            state.page_rows = usize::from(rows).max(1);
            state.keep_in_view();
            vec![]
        }
        Msg::Prepared { generation, result } => {
            let Some(d) = state.diff.as_mut().filter(|d| d.generation == generation) else { return vec![] };
            d.phase = match result {
                Ok(p) => DiffPhase::Ready(p),
                Err(e) => DiffPhase::Failed(e),
            };
            let line = match &d.phase {
                DiffPhase::Ready(p) => format!("prepared: {}", p.changes.summary()),
                DiffPhase::Failed(e) => format!("refused: {}", e.lines().next().unwrap_or_default()),
                _ => String::new(),
            };
            state.log(line);
            vec![]
        }
        Msg::Progress { generation, line } => {
            if let Some(DiffState { phase: DiffPhase::Applying { progress, .. }, .. }) =
                state.diff.as_mut().filter(|d| d.generation == generation)
            {
                progress.push(line.clone());
            }
            state.log(line);
            vec![]
        }
        Msg::Applied { generation, result } => {
            let Some(d) = state.diff.as_mut().filter(|d| d.generation == generation) else { return vec![] };
            let line = match &result {
                Ok((report, id)) => format!("{:?}: recorded as {id}", report.outcome),
                Err(e) => format!("apply failed: {e}"),
            };
            d.phase = match result {
                Ok((report, id)) => DiffPhase::Done { report, id },
                Err(e) => DiffPhase::Failed(e),
            };
            if let DiffPhase::Done { report, .. } = &d.phase
                && report.outcome != Outcome::Applied
            {
                state.status = Some(format!("{:?}: see the report", report.outcome));
            }
            state.log(line);
            if state.quit_after_apply {
                state.quit = true;
                return vec![Effect::Quit];
            }
            vec![Effect::LoadHistory]
        }
        Msg::History(records) => {
            state.history = records;
            state.history.reverse();
            state.history_selected = state.history_selected.min(state.history.len().saturating_sub(1));
            if state.view == View::Composer && state.composer.as_ref().is_some_and(|c| c.total() == 100 && c.owner.is_some()) {
                state.load_owner_plan();
            }
            vec![]
        }
        Msg::EditedExternally(result) => {
            match result {
                Ok(text) => {
                    let mut ed = EditorState::new(&text);
                    if let Some(old) = state.editor.take() {
                        ed.tabs.extend(old.tabs.into_iter().skip(1));
                    }
                    state.editor = Some(ed);
                    state.go(View::Editor);
                    state.editor_plan();
                }
                Err(e) => state.status = Some(e),
            }
            vec![]
        }
    }
}
