//! Help (the active keymap for the view you came from, and global keys) and the log.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::tui::app::AppState;
use crate::tui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let from = state.back.last().map(|v| v.id()).unwrap_or("fleet");
    let mut lines = vec![Line::from(Span::styled(format!("keymap {} — {from} view", state.keymap.name), theme.style("title")))];
    for view in [from, "global"] {
        lines.push(Line::from(Span::styled(format!("{view}:"), theme.style("table.header"))));
        for (key, action) in state.keymap.bindings_for(view) {
            if state.read_only && action.dangerous() {
                continue;
            }
            let danger = if action.dangerous() { " (writes)" } else { "" };
            lines.push(Line::from(vec![
                Span::styled(format!("  {key:<10}"), theme.style("key")),
                Span::styled(format!("{}{danger}", action.describe()), theme.style("text")),
            ]));
        }
    }
    frame.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::TOP).border_style(theme.style("dim"))), area);
}

pub fn draw_log(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let height = usize::from(area.height.saturating_sub(1));
    let skip = state.log.len().saturating_sub(height);
    let lines: Vec<Line> = state.log.iter().skip(skip).map(|l| Line::from(Span::styled(l.clone(), theme.style("text")))).collect();
    let title = if state.log.is_empty() { " log: nothing yet " } else { " what meshdeck did " };
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::default().borders(Borders::TOP).title(Span::styled(title, theme.style("dim"))).border_style(theme.style("dim"))),
        area,
    );
}
