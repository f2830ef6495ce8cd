//! The editor pane: the plan (editable) and each cluster's rendered YAML,
//! with validation errors listed at their lines.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Tabs};

use crate::tui::app::AppState;
use crate::tui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let Some(e) = state.editor.as_ref() else { return };
    let err_h = if e.errors.is_empty() { 0 } else { (e.errors.len().min(4) + 1) as u16 };
    let [tabs, body, errors] = Layout::vertical([Constraint::Length(1), Constraint::Min(3), Constraint::Length(err_h)]).areas(area);
    let titles: Vec<String> =
        e.tabs.iter().map(|(t, _)| if t == "plan" { "plan (editable)".to_string() } else { format!("{t} (rendered)") }).collect();
    frame.render_widget(Tabs::new(titles).select(e.tab).style(theme.style("dim")).highlight_style(theme.style("title")), tabs);
    if e.tab == 0 {
        let mut ta = e.textarea.clone();
        ta.set_block(Block::default().borders(Borders::TOP).border_style(theme.style("dim")));
        ta.set_line_number_style(theme.style("dim"));
        frame.render_widget(&ta, body);
    } else {
        let text = e.tabs.get(e.tab).map(|(_, t)| t.as_str()).unwrap_or("");
        let lines: Vec<Line> = text.lines().skip(e.scroll).map(|l| Line::from(Span::styled(l.to_string(), theme.style("text")))).collect();
        frame.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::TOP).border_style(theme.style("dim"))), body);
    }
    if !e.errors.is_empty() {
        let lines: Vec<Line> = e
            .errors
            .iter()
            .take(4)
            .map(|er| Line::from(Span::styled(format!("line {}:{}  {}", er.line, er.column, er.message), theme.style("error"))))
            .collect();
        frame.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::TOP).border_style(theme.style("error"))), errors);
    }
}
