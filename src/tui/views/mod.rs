//! Drawing: functions of state, never mutating it, never calling a cluster.
//! Colours come from the theme by meaning, never as literals.

mod canary;
mod clusters;
mod composer;
mod diff;
mod editor;
mod fleet;
mod help;
mod history;
mod problems;
mod routes;
mod service;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::action::Action;
use super::app::{AppState, Input, View};
use super::theme::Theme;
use crate::inventory::{ClusterState, ClusterView};

pub use fleet::{TableGeometry, table_geometry};

pub fn draw(frame: &mut Frame, state: &AppState, theme: &Theme) {
    let [title, body, bottom] = Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    draw_title(frame, title, state, theme);
    match state.view {
        View::Fleet => fleet::draw(frame, body, state, theme),
        View::Service => service::draw(frame, body, state, theme),
        View::Composer => composer::draw(frame, body, state, theme),
        View::Editor => editor::draw(frame, body, state, theme),
        View::Diff => diff::draw(frame, body, state, theme),
        View::History => history::draw(frame, body, state, theme),
        View::Clusters => clusters::draw(frame, body, state, theme),
        View::Help => help::draw(frame, body, state, theme),
        View::Log => help::draw_log(frame, body, state, theme),
        View::Problems => problems::draw(frame, body, state, theme),
        View::Routes => routes::draw(frame, body, state, theme),
        View::Canary => canary::draw(frame, body, state, theme),
    }
    draw_bottom(frame, bottom, state, theme);
}

fn draw_title(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    // Live counts a cluster once its mesh facts are read too: only then can a plan be judged there.
    let (reading, live): (Vec<_>, Vec<_>) =
        state.snapshot.clusters.iter().filter(|c| c.state == ClusterState::Live).partition(|c| c.reading_facts());
    let mut spans = vec![
        Span::styled(" meshdeck ", theme.style("title")),
        Span::styled(format!("{} · ", state.view.id()), theme.style("text")),
        Span::styled(format!("{}/{} clusters live", live.len(), state.snapshot.clusters.len()), theme.style("dim")),
    ];
    if !reading.is_empty() {
        spans.push(Span::styled(format!(" ({} reading mesh facts)", reading.len()), theme.style("dim")));
    }
    spans.push(Span::styled(format!(" · {} services", state.snapshot.services.len()), theme.style("dim")));
    // Fleet-wide problems, as `meshdeck analyze` counts them (`:problems` lists them).
    let (errors, warnings) = crate::inventory::analyze::problems(&state.snapshot);
    if errors + warnings > 0 {
        let style = if errors > 0 { theme.style("error") } else { theme.style("warning") };
        spans.push(Span::styled(format!(" · ✗ {} problem{}", errors + warnings, if errors + warnings == 1 { "" } else { "s" }), style));
    }
    if let Some(ns) = &state.namespace {
        spans.push(Span::styled(format!(" · ns {ns}"), theme.style("dim")));
    }
    if !state.filter.is_empty() {
        spans.push(Span::styled(format!(" · /{}", state.filter), theme.style("warning")));
    }
    if state.read_only {
        spans.push(Span::styled(" READ-ONLY ", theme.style("danger")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Hints for the current view, from the active keymap.
fn hints(state: &AppState) -> Vec<(String, &'static str)> {
    let view = state.view.id();
    let wanted: &[Action] = match state.view {
        View::Fleet => &[
            Action::OpenService,
            Action::ComposeRoute,
            Action::ComposeFailover,
            Action::Filter,
            Action::Command,
            Action::Help,
            Action::Quit,
        ],
        View::Service => &[Action::RoutePicture, Action::ComposeRoute, Action::ComposeFailover, Action::Back],
        View::Routes => &[Action::ComposeRoute, Action::ComposeFailover, Action::Back],
        View::Composer => &[
            Action::WeightUp,
            Action::WeightDown,
            Action::Balance,
            Action::ToggleMode,
            Action::CycleFrom,
            Action::Preview,
            Action::Apply,
            Action::Back,
        ],
        View::Editor => &[Action::NextTab, Action::Validate, Action::Apply, Action::ExternalEditor, Action::Back],
        // `confirm` only where there is something shown to confirm.
        View::Diff
            if state
                .diff
                .as_ref()
                .is_some_and(|d| matches!(&d.phase, crate::tui::app::DiffPhase::Ready(p) if !p.changes.is_noop()) && !state.read_only) =>
        {
            &[Action::Confirm, Action::Back]
        }
        View::Diff => &[Action::Back],
        View::History => &[Action::Rollback, Action::Back],
        View::Clusters => &[Action::ToggleCluster, Action::SwitchContext, Action::Back],
        View::Problems => &[Action::OpenService, Action::Back],
        View::Canary => &[Action::CanaryPause, Action::CanaryResume, Action::CanaryPromote, Action::CanaryAbort, Action::Back],
        View::Help | View::Log => &[Action::Back],
    };
    wanted
        .iter()
        .filter(|a| !(state.read_only && a.dangerous()))
        .filter_map(|a| state.keymap.key_for(view, *a).map(|k| (k, short(*a))))
        .collect()
}

fn short(a: Action) -> &'static str {
    match a {
        Action::OpenService => "open",
        Action::ComposeRoute => "route",
        Action::ComposeFailover => "failover",
        Action::Filter => "filter",
        Action::Command => "cmd",
        Action::Help => "help",
        Action::Quit => "quit",
        Action::Back => "back",
        Action::WeightUp => "+1",
        Action::WeightDown => "-1",
        Action::Balance => "rest",
        Action::ToggleMode => "mode",
        Action::CycleFrom => "from",
        Action::Preview => "preview",
        Action::Apply => "apply",
        Action::NextTab => "tab",
        Action::Validate => "check",
        Action::ExternalEditor => "$EDITOR",
        Action::Confirm => "confirm",
        Action::Rollback => "rollback",
        Action::ToggleCluster => "show/hide",
        Action::SwitchContext => "act as alias",
        Action::RoutePicture => "picture",
        Action::CanaryPause => "pause",
        Action::CanaryResume => "resume",
        Action::CanaryPromote => "promote now",
        Action::CanaryAbort => "abort",
        _ => a.name(),
    }
}

fn draw_bottom(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let line = match &state.input {
        Some(Input::Filter(f)) => {
            Line::from(vec![Span::styled("/", theme.style("key")), Span::raw(f.clone()), Span::styled("▏", theme.style("dim"))])
        }
        Some(Input::Command(c)) => {
            Line::from(vec![Span::styled(":", theme.style("key")), Span::raw(c.clone()), Span::styled("▏", theme.style("dim"))])
        }
        None => {
            let mut spans = Vec::new();
            if let Some(s) = &state.status {
                spans.push(Span::styled(format!(" {s} "), theme.style("warning")));
            } else if let Some(w) = state.warnings.first() {
                spans.push(Span::styled(format!(" {w} "), theme.style("warning")));
            }
            for (k, what) in hints(state) {
                spans.push(Span::styled(format!(" {k}"), theme.style("key")));
                spans.push(Span::styled(format!(" {what}"), theme.style("dim")));
            }
            Line::from(spans)
        }
    };
    frame.render_widget(Paragraph::new(line).style(theme.style("status")), area);
}

/// The theme style for a cluster's state.
pub fn state_style(theme: &Theme, s: ClusterState) -> Style {
    match s {
        ClusterState::Live => theme.style("health"),
        ClusterState::Syncing | ClusterState::Connecting | ClusterState::Degraded => theme.style("health.degraded"),
        _ => theme.style("health.down"),
    }
}

/// A cluster's style by name: its configured accent, else its registry position's.
pub fn cluster_style(state: &AppState, theme: &Theme, name: &str) -> Style {
    let i = state.snapshot.clusters.iter().position(|c| c.name == name).unwrap_or(0);
    theme.cluster_accent(i, state.snapshot.clusters.get(i).and_then(|c| c.accent.as_deref()))
}

/// `12s`, `3m`, `2h`: how long ago, from the state's clock.
pub fn ago(state: &AppState, c: &ClusterView) -> String {
    match c.last_seen {
        Some(t) => {
            let s = (state.now - t).num_seconds().max(0);
            match s {
                s if s < 120 => format!("{s}s"),
                s if s < 7200 => format!("{}m", s / 60),
                s => format!("{}h", s / 3600),
            }
        }
        None => "never".into(),
    }
}

/// Shorten to `n` columns with an ellipsis.
pub fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}
