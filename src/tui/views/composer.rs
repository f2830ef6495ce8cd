//! The route composer: destinations with weights and a live bar of the split,
//! or ordered failover targets; validation messages in place.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::tui::app::AppState;
use crate::tui::composer::Mode;
use crate::tui::theme::Theme;

/// `██████░░░░` for a weight out of 100.
pub fn bar(weight: u32, width: usize) -> String {
    let filled = (weight as usize * width).div_ceil(100).min(width);
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let Some(c) = state.composer.as_ref() else { return };
    let [head, list, foot] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(3), Constraint::Length((c.errors.len().min(4) + 2) as u16)]).areas(area);
    let mode = match c.mode {
        Mode::Split => "weighted split",
        Mode::Failover => "ordered failover",
    };
    let mut head_lines = vec![Line::from(vec![
        Span::styled(format!("{} ", c.plan_name()), theme.style("title")),
        Span::styled(format!("{} from ", mode), theme.style("dim")),
        Span::styled(c.from.clone(), theme.style("key")),
        Span::styled(format!(" to {}", c.service.key()), theme.style("text")),
    ])];
    if c.mode == Mode::Split {
        let total = c.total();
        let style = if total == 100 { theme.style("health") } else { theme.style("error") };
        head_lines.push(Line::from(vec![Span::styled(format!("total {total}/100 "), style), Span::styled(bar(total.min(100), 30), style)]));
    } else {
        head_lines.push(Line::from(Span::styled(
            "first healthy target in order wins; outlier detection ejects failing endpoints",
            theme.style("dim"),
        )));
    }
    if !c.callers.is_empty() {
        let who: Vec<String> = c.callers.iter().map(|k| format!("{}/{}/{}", k.cluster, k.namespace, k.service_account)).collect();
        head_lines.push(Line::from(Span::styled(format!("access: only {}", who.join(", ")), theme.style("warning"))));
    }
    frame.render_widget(Paragraph::new(head_lines), head);

    let width = usize::from(list.width).saturating_sub(40).clamp(10, 50);
    let lines: Vec<Line> = c
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let selected = i == c.selected;
            let pointer = if selected { "▶ " } else { "  " };
            let mut spans = vec![
                Span::styled(pointer, theme.style("key")),
                Span::styled(format!("{:<10}", r.cluster), super::cluster_style(state, theme, &r.cluster)),
            ];
            match c.mode {
                Mode::Split => {
                    let typed = if selected && !c.typed.is_empty() { format!(" ⟵ {}", c.typed) } else { String::new() };
                    spans.push(Span::styled(format!(" {:<6}", r.version.clone().unwrap_or_default()), theme.style("text")));
                    spans.push(Span::styled(format!(" {:>3}% ", r.weight), theme.style("route.weight")));
                    spans.push(Span::styled(bar(r.weight, width), theme.style("route.weight")));
                    spans.push(Span::styled(typed, theme.style("key")));
                }
                Mode::Failover => {
                    let rank = c.rows.iter().take(i + 1).filter(|x| x.included).count();
                    let label = if r.included {
                        format!(" #{rank} {}", if rank == 1 { "primary" } else { "fallback" })
                    } else {
                        " (left out)".into()
                    };
                    spans.push(Span::styled(label, if r.included { theme.style("route.weight") } else { theme.style("dim") }));
                }
            }
            if let Some(why) = state.snapshot.cluster(&r.cluster).and_then(|v| v.unseen()) {
                spans.push(Span::styled(format!("  stale: {} is {why}", r.cluster), theme.style("warning")));
            }
            let line = Line::from(spans);
            if selected { line.style(theme.style("table.selected")) } else { line }
        })
        .collect();
    // A cluster meshdeck cannot see has unknown versions, not none.
    let mut lines = lines;
    for v in state.snapshot.clusters.iter().filter(|v| !c.rows.iter().any(|r| r.cluster == v.name)) {
        if let Some(why) = v.unseen() {
            lines.push(Line::from(vec![
                Span::raw("  "),
                Span::styled(format!("{:<10}", v.name), super::cluster_style(state, theme, &v.name)),
                Span::styled(format!(" versions unknown: {} is {why}", v.name), theme.style("warning")),
            ]));
        }
    }
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::TOP)
                .border_style(theme.style("dim"))
                .title(Span::styled(" destinations ", theme.style("dim"))),
        ),
        list,
    );

    let mut foot_lines = vec![];
    if c.errors.is_empty() {
        foot_lines.push(Line::from(Span::styled("✓ valid: preview with p, apply with A", theme.style("health"))));
    }
    for e in c.errors.iter().take(4) {
        foot_lines.push(Line::from(Span::styled(format!("✗ {e}"), theme.style("error"))));
    }
    frame.render_widget(Paragraph::new(foot_lines).block(Block::default().borders(Borders::TOP).border_style(theme.style("dim"))), foot);
}
