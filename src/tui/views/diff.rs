//! Diff and apply: the pipeline's diff, the confirmation, per-cluster progress
//! while it runs, and the outcome.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::apply::write::Outcome;
use crate::tui::action::Action;
use crate::tui::app::{AppState, DiffOrigin, DiffPhase};
use crate::tui::theme::Theme;

fn diff_line(l: &str, theme: &Theme) -> Line<'static> {
    let style = match l.chars().next() {
        Some('+') => theme.style("diff.add"),
        Some('-') => theme.style("diff.remove"),
        Some('@') => theme.style("diff.hunk"),
        Some('~' | '=') => theme.style("title"),
        _ => theme.style("text"),
    };
    Line::from(Span::styled(l.to_string(), style))
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let Some(d) = state.diff.as_ref() else { return };
    let what = match &d.origin {
        DiffOrigin::Plan(p) => format!("apply {}", p.names().join(", ")),
        DiffOrigin::Rollback(id) => format!("roll back {id}"),
    };
    let confirm = state.keymap.key_for("diff", Action::Confirm).unwrap_or_else(|| "y".into());
    let back = state.keymap.key_for("diff", Action::Back).unwrap_or_else(|| "esc".into());
    let mut lines: Vec<Line> = Vec::new();
    match &d.phase {
        DiffPhase::Waiting { why, .. } => {
            lines.push(Line::from(Span::styled(format!("waiting: {why}…"), theme.style("warning"))));
            lines.push(Line::from(Span::styled(
                format!("the diff starts once they are read ({back} cancels; refused after {} s)", crate::tui::app::FACTS_WAIT.as_secs()),
                theme.style("dim"),
            )));
        }
        DiffPhase::Preparing => {
            lines.push(Line::from(Span::styled("checking: persona, RBAC preflight, server dry run, diff…", theme.style("dim"))))
        }
        DiffPhase::Failed(e) => {
            lines.push(Line::from(Span::styled("refused; nothing was written:", theme.style("error"))));
            lines.extend(e.lines().map(|l| Line::from(Span::styled(l.to_string(), theme.style("error")))));
        }
        DiffPhase::Ready(prepared) => {
            let cs = &prepared.changes;
            let head = if cs.is_noop() {
                Line::from(Span::styled(format!("nothing to change ({})", cs.summary()), theme.style("health")))
            } else if state.read_only {
                Line::from(Span::styled(format!("{} — read-only: cannot apply", cs.summary()), theme.style("warning")))
            } else {
                Line::from(vec![
                    Span::styled(format!("{} on {} ", cs.summary(), cs.clusters().join(", ")), theme.style("title")),
                    Span::styled(format!(" {confirm} "), theme.style("danger")),
                    Span::styled(format!(" to write, {back} to cancel"), theme.style("dim")),
                ])
            };
            lines.push(head);
            for u in prepared.unpruned_lines() {
                lines.push(Line::from(Span::styled(format!("⚠ {u}; the next apply that reaches it removes them"), theme.style("warning"))));
            }
            let text = cs.render_diff();
            let body: Vec<Line> = text.lines().skip(d.scroll).map(|l| diff_line(l, theme)).collect();
            lines.extend(body);
        }
        DiffPhase::Applying { changes, progress } => {
            lines.push(Line::from(Span::styled(format!("writing to {}…", changes.clusters().join(", ")), theme.style("warning"))));
            lines.extend(progress.iter().map(|p| Line::from(Span::styled(format!("  {p}"), theme.style("text")))));
        }
        DiffPhase::Done { report, id } => {
            let style = if report.outcome == Outcome::Applied { theme.style("health") } else { theme.style("error") };
            lines.push(Line::from(Span::styled(format!("{:?}: recorded as {id} (undo from :history)", report.outcome), style)));
            for (c, r) in &report.clusters {
                lines.push(Line::from(Span::styled(
                    format!("  {c}: {} written, {} restored", r.written.len(), r.restored.len()),
                    theme.style("text"),
                )));
                for e in &r.errors {
                    lines.push(Line::from(Span::styled(format!("    {e}"), theme.style("error"))));
                }
            }
        }
    }
    let block = Block::default()
        .borders(Borders::TOP)
        .title(Span::styled(format!(" {what} "), theme.style("title")))
        .border_style(theme.style("dim"));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
