//! Keys and commands: a key resolves through the keymap to an action (or types into
//! the input being edited), and an action changes state and asks for effects.

use super::*;

impl AppState {
    pub(super) fn refuse_write(&mut self) -> bool {
        if self.read_only {
            self.status = Some("read-only: writes are disabled (--read-only)".into());
        }
        self.read_only
    }

    pub fn act(&mut self, a: Action) -> Vec<Effect> {
        // An armed promote or abort waits for its `y`: any other key lets it go.
        if let Some((name, request)) = self.canary_armed.take() {
            if a == Action::Confirm && self.view == View::Canary {
                self.log(format!("canary {name}: {}", format!("{request:?}").to_lowercase()));
                return vec![Effect::Canary { name, request }];
            }
            self.status = Some(format!("canary {name}: not {}", format!("{request:?}").to_lowercase()));
        }
        if a.dangerous() && self.refuse_write() {
            return vec![];
        }
        match a {
            Action::Quit => {
                // Quitting mid-write would drop the writes with their rollback: wait for the report.
                if self.applying() {
                    self.quit_after_apply = true;
                    self.status = Some("an apply is writing: meshdeck quits once it has finished and recorded it".into());
                    return vec![];
                }
                self.quit = true;
                vec![Effect::Quit]
            }
            Action::Help => {
                self.go(View::Help);
                vec![]
            }
            Action::Back => {
                if let Some(c) = self.composer.as_mut().filter(|c| !c.typed.is_empty() && self.view == View::Composer) {
                    c.typed.clear();
                } else if self.view == View::Fleet && !self.filter.is_empty() {
                    self.filter.clear();
                    self.recompute_rows();
                } else {
                    // Leaving a diff that waits for facts cancels it: it must not start unseen.
                    if self.view == View::Diff && self.diff.as_ref().is_some_and(|d| matches!(d.phase, DiffPhase::Waiting { .. })) {
                        self.log("cancelled: the diff no longer waits");
                        self.diff = None;
                    }
                    self.go_back();
                }
                vec![]
            }
            Action::Command => {
                self.input = Some(Input::Command(String::new()));
                vec![]
            }
            Action::Filter => {
                // `/` starts a new filter, as in k9s: the old one is not typed onto.
                self.input = Some(Input::Filter(String::new()));
                self.filter.clear();
                self.recompute_rows();
                vec![]
            }
            Action::Up => self.step(-1),
            Action::Down => self.step(1),
            Action::PageUp => self.step(-(self.page_rows.max(1) as i64)),
            Action::PageDown => self.step(self.page_rows.max(1) as i64),
            Action::Top => self.step(i64::MIN / 2),
            Action::Bottom => self.step(i64::MAX / 2),
            Action::Left => {
                self.col_offset = self.col_offset.saturating_sub(1);
                vec![]
            }
            Action::Right => {
                self.col_offset = (self.col_offset + 1).min(self.visible_clusters().len().saturating_sub(1));
                vec![]
            }
            Action::OpenService if self.view == View::Problems => {
                self.open_problem();
                vec![]
            }
            Action::OpenService => {
                if self.selected_service().is_some() {
                    self.go(View::Service);
                }
                vec![]
            }
            Action::ComposeRoute => self.open_composer(Mode::Split),
            Action::ComposeFailover => self.open_composer(Mode::Failover),
            Action::GotoFleet => {
                self.go(View::Fleet);
                vec![]
            }
            Action::GotoClusters => {
                self.go(View::Clusters);
                vec![]
            }
            Action::GotoHistory => {
                self.go(View::History);
                vec![Effect::LoadHistory]
            }
            Action::GotoLog => {
                self.go(View::Log);
                vec![]
            }
            Action::RoutePicture => {
                if self.selected_service().is_some() {
                    // The first calling cluster a VirtualService routes from, else the first.
                    self.routes_selected = self.service_routes().iter().position(|r| r.virtual_service.is_some()).unwrap_or(0);
                    self.go(View::Routes);
                }
                vec![]
            }
            Action::GotoProblems => {
                self.problems_selected = 0;
                self.go(View::Problems);
                vec![]
            }
            Action::CycleSort => {
                self.sort = match self.sort {
                    SortBy::Namespace => SortBy::Name,
                    SortBy::Name => SortBy::Health,
                    SortBy::Health => SortBy::Namespace,
                };
                self.recompute_rows();
                vec![]
            }
            Action::CycleNamespace => {
                let all = self.namespaces();
                self.namespace = match &self.namespace {
                    None => all.first().cloned(),
                    Some(cur) => all.iter().position(|n| n == cur).and_then(|i| all.get(i + 1)).cloned(),
                };
                self.recompute_rows();
                vec![]
            }
            Action::WeightUp
            | Action::WeightDown
            | Action::WeightUp10
            | Action::WeightDown10
            | Action::Balance
            | Action::ToggleTarget
            | Action::MoveUp
            | Action::MoveDown
            | Action::CycleFrom
            | Action::ToggleMode
            | Action::AddAccessRule => {
                self.compose(a);
                vec![]
            }
            Action::Preview | Action::Edit => {
                if let Some(plan) = self.composer.as_ref().map(Composer::to_plan) {
                    self.open_editor(&plan);
                }
                vec![]
            }
            Action::ExternalEditor => {
                let text = match (&self.editor, &self.composer) {
                    (Some(e), _) if self.view == View::Editor => e.text(),
                    (_, Some(c)) => c.to_plan().to_yaml(),
                    _ => return vec![],
                };
                vec![Effect::ExternalEdit(text)]
            }
            Action::NextTab => {
                if let Some(e) = self.editor.as_mut() {
                    e.tab = (e.tab + 1) % e.tabs.len().max(1);
                    e.scroll = 0;
                }
                vec![]
            }
            Action::Validate => {
                if self.editor_plan().is_some() {
                    self.status = Some("the plan is valid".into());
                }
                vec![]
            }
            Action::Apply => {
                let plan = match self.view {
                    View::Editor => self.editor_plan(),
                    _ => {
                        let c = self.composer.as_ref();
                        match c {
                            Some(c) if c.errors.is_empty() => Some(c.to_plan()),
                            Some(c) => {
                                self.status = Some(format!("fix the plan first: {}", c.errors[0]));
                                None
                            }
                            None => None,
                        }
                    }
                };
                match plan {
                    Some(p) => {
                        self.log(format!("prepare {}", p.names().join(",")));
                        self.start_diff(DiffOrigin::Plan(p))
                    }
                    None => vec![],
                }
            }
            Action::GotoCanaries => {
                self.go(View::Canary);
                vec![]
            }
            Action::CanaryPause | Action::CanaryResume | Action::CanaryPromote | Action::CanaryAbort => self.canary_request(a),
            Action::Confirm => {
                let Some(d) = self.diff.as_mut() else { return vec![] };
                let DiffPhase::Ready(prepared) = &d.phase else { return vec![] };
                if prepared.nothing_to_do() {
                    self.status = Some("nothing to change".into());
                    return vec![];
                }
                let prepared = prepared.clone();
                d.phase = DiffPhase::Applying { changes: prepared.changes.clone(), progress: vec![] };
                let generation = d.generation;
                self.log(format!("{}: writing to {}", prepared.intent.action, prepared.changes.clusters().join(", ")));
                vec![Effect::Execute { generation, prepared }]
            }
            Action::Rollback => {
                let Some(id) = self.history.get(self.history_selected).map(|r| r.id.clone()) else { return vec![] };
                self.log(format!("prepare rollback of {id}"));
                self.start_diff(DiffOrigin::Rollback(id))
            }
            Action::SwitchContext => {
                let Some(c) = self.snapshot.clusters.get(self.clusters_selected) else { return vec![] };
                let (cluster, next) = (c.name.clone(), c.aliases.first().cloned());
                let Some(context) = next else {
                    self.status = Some(format!("{cluster} has no other context (alias) in the kubeconfig"));
                    return vec![];
                };
                self.log(format!("{cluster}: switching to {context}"));
                vec![Effect::SwitchContext { cluster, context }]
            }
            Action::ToggleCluster => {
                let registered = self.snapshot.clusters.len();
                if let Some(c) = self.snapshot.clusters.get(self.clusters_selected).map(|c| c.name.clone()) {
                    if !self.hidden.remove(&c) {
                        self.hidden.insert(c);
                    }
                } else if let Some(ctx) = self.clusters_selected.checked_sub(registered).and_then(|i| self.available.get(i)).cloned() {
                    self.available.retain(|a| *a != ctx);
                    self.log(format!("registering context {ctx}"));
                    return vec![Effect::Register(ctx)];
                }
                vec![]
            }
        }
    }

    /// The selected canary asked to pause or resume at once; promote and abort armed for `y`.
    fn canary_request(&mut self, a: Action) -> Vec<Effect> {
        use crate::canary::Request;
        let Some(row) = self.canaries.get(self.canary_selected) else {
            self.status = Some("no canary selected (meshdeck canary start PLAN starts one)".into());
            return vec![];
        };
        let name = row.state.name.clone();
        let request = match a {
            Action::CanaryPause => Request::Pause,
            Action::CanaryResume => Request::Resume,
            Action::CanaryPromote => Request::Promote,
            _ => Request::Abort,
        };
        if matches!(request, Request::Promote | Request::Abort) {
            let what = if request == Request::Abort {
                format!("abort canary {name}: back to the route before its first step")
            } else {
                format!("promote canary {name} now: write step {} without step {}'s verdict", row.state.step + 1, row.state.step)
            };
            self.status = Some(format!("{what}? y confirms, any other key cancels"));
            self.canary_armed = Some((name, request));
            return vec![];
        }
        self.log(format!("canary {name}: {}", format!("{request:?}").to_lowercase()));
        vec![Effect::Canary { name, request }]
    }

    pub(super) fn step(&mut self, delta: i64) -> Vec<Effect> {
        self.move_cursor(delta);
        vec![]
    }

    pub(super) fn compose(&mut self, a: Action) {
        let snap = self.snapshot.clone();
        let Some(c) = self.composer.as_mut() else { return };
        match a {
            Action::WeightUp => c.adjust(1),
            Action::WeightDown => c.adjust(-1),
            Action::WeightUp10 => c.adjust(10),
            Action::WeightDown10 => c.adjust(-10),
            Action::Balance => c.balance(),
            Action::ToggleTarget => {
                if let Some(r) = c.rows.get_mut(c.selected) {
                    r.included = !r.included;
                }
            }
            Action::MoveUp => c.move_selected(true),
            Action::MoveDown => c.move_selected(false),
            Action::CycleFrom => c.cycle_from(&snap),
            Action::ToggleMode => {
                c.mode = if c.mode == Mode::Split { Mode::Failover } else { Mode::Split };
                c.reset_rows(&snap);
            }
            Action::AddAccessRule => c.add_caller(&snap),
            _ => {}
        }
        c.revalidate(&snap);
    }

    pub(super) fn command(&mut self, text: &str) -> Vec<Effect> {
        let mut words = text.split_whitespace();
        match (words.next(), words.next()) {
            (Some("q" | "quit"), _) => self.act(Action::Quit),
            (Some("fleet"), _) => self.act(Action::GotoFleet),
            (Some("clusters" | "ctx" | "contexts"), _) => self.act(Action::GotoClusters),
            (Some("history"), _) => self.act(Action::GotoHistory),
            (Some("log"), _) => self.act(Action::GotoLog),
            (Some("problems" | "analyze"), _) => self.act(Action::GotoProblems),
            (Some("routes" | "route"), _) => self.act(Action::RoutePicture),
            (Some("canary" | "canaries"), _) => self.act(Action::GotoCanaries),
            (Some("help"), _) => self.act(Action::Help),
            (Some("ns" | "namespace"), arg) => {
                self.namespace = arg.filter(|a| *a != "all").map(String::from);
                self.recompute_rows();
                self.go(View::Fleet);
                vec![]
            }
            (Some("sort"), Some(by)) => {
                self.sort = match by {
                    "name" => SortBy::Name,
                    "health" => SortBy::Health,
                    _ => SortBy::Namespace,
                };
                self.recompute_rows();
                vec![]
            }
            (Some(other), _) => {
                self.status = Some(format!(
                    "unknown command :{other} (fleet, clusters, history, log, problems, routes, help, ns NAME, sort name|namespace|health, q)"
                ));
                vec![]
            }
            (None, _) => vec![],
        }
    }

    pub(super) fn key_into_input(&mut self, k: &KeyEvent) -> Vec<Effect> {
        let Some(input) = self.input.as_mut() else { return vec![] };
        let buf = match input {
            Input::Filter(s) | Input::Command(s) => s,
        };
        match k.code {
            KeyCode::Char(c) => buf.push(c),
            KeyCode::Backspace => {
                buf.pop();
            }
            KeyCode::Esc => {
                if matches!(input, Input::Filter(_)) {
                    self.filter.clear();
                    self.recompute_rows();
                }
                self.input = None;
                return vec![];
            }
            KeyCode::Enter => {
                let done = self.input.take();
                if let Some(Input::Command(c)) = done {
                    return self.command(&c);
                }
                return vec![];
            }
            _ => {}
        }
        if let Some(Input::Filter(f)) = &self.input {
            self.filter = f.clone();
            self.recompute_rows();
        }
        vec![]
    }

    pub(super) fn key(&mut self, k: KeyEvent) -> Vec<Effect> {
        if self.input.is_some() {
            return self.key_into_input(&k);
        }
        if self.pending_since.is_some_and(|t| t.elapsed().as_millis() > 1000) {
            self.pending.clear();
        }
        let key = Key::from_event(&k);
        // The composer takes digits (a weight being typed) and Enter (set it).
        if self.view == View::Composer
            && self.pending.is_empty()
            && let Some(c) = self.composer.as_mut()
        {
            match k.code {
                KeyCode::Char(d) if d.is_ascii_digit() && c.typed.len() < 3 => {
                    c.typed.push(d);
                    return vec![];
                }
                KeyCode::Enter if !c.typed.is_empty() => {
                    c.set_typed();
                    let snap = self.snapshot.clone();
                    c.revalidate(&snap);
                    return vec![];
                }
                _ => {}
            }
        }
        self.pending.push(key);
        // A focused text input (the editor's plan tab) takes keys first: only its own
        // view's bindings and Back apply, so `q`, `/` or arrows are typing, not commands.
        let typing = self.view == View::Editor && self.editor.as_ref().is_some_and(|e| e.tab == 0);
        let resolved = if typing {
            self.keymap.resolve_focused(self.view.id(), &self.pending)
        } else {
            self.keymap.resolve(self.view.id(), &self.pending)
        };
        if typing
            && resolved == Resolved::Unbound
            && let Some(e) = self.editor.as_mut()
        {
            self.pending.clear();
            e.textarea.input(k);
            return vec![];
        }
        match resolved {
            Resolved::Action(a) => {
                self.pending.clear();
                self.pending_since = None;
                self.status = None;
                self.act(a)
            }
            Resolved::Prefix => {
                self.pending_since = Some(Instant::now());
                vec![]
            }
            Resolved::Unbound => {
                self.pending.clear();
                vec![]
            }
        }
    }
}
