//! `:problems`: every finding of the fleet (what `meshdeck analyze` prints), errors
//! first; Enter on one about a service opens that service.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState, Wrap};

use super::super::app::AppState;
use super::super::theme::Theme;
use crate::inventory::analyze::Severity;

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let findings = state.findings();
    // The selected finding whole (the table cuts long messages), with its fix.
    let [list, detail] = Layout::vertical([Constraint::Min(3), Constraint::Length(6)]).areas(area);
    if let Some(f) = findings.get(state.problems_selected) {
        let mut lines = vec![Line::from(Span::styled(f.message.clone(), theme.style("text")))];
        let istio = f.istio_code.map(|c| format!(" (istioctl: {c})")).unwrap_or_default();
        lines.push(Line::from(vec![Span::styled(format!("fix{istio}: "), theme.style("key")), Span::styled(f.fix, theme.style("text"))]));
        frame.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: true }).block(
                Block::default()
                    .borders(Borders::TOP)
                    .title(Span::styled(format!(" {} ", f.code), theme.style("dim")))
                    .border_style(theme.style("dim")),
            ),
            detail,
        );
    }
    let title = if findings.is_empty() { " problems: none ".to_string() } else { format!(" problems: {} ", findings.len()) };
    let rows: Vec<Row> = findings
        .iter()
        .map(|f| {
            let style = match f.severity {
                Severity::Error => theme.style("error"),
                Severity::Warning => theme.style("warning"),
                Severity::Info => theme.style("dim"),
            };
            Row::new(vec![
                Cell::from(Span::styled(f.severity.as_str(), style)),
                Cell::from(f.code.clone()),
                Cell::from(f.clusters.join(",")),
                Cell::from(f.message.clone()),
            ])
        })
        .collect();
    let table = Table::new(rows, [Constraint::Length(8), Constraint::Length(20), Constraint::Length(17), Constraint::Min(20)])
        .header(Row::new(["SEVERITY", "CODE", "CLUSTERS", "FINDING"]).style(theme.style("table.header")))
        .row_highlight_style(theme.style("table.selected"))
        .block(Block::default().borders(Borders::TOP).title(Span::styled(title, theme.style("dim"))).border_style(theme.style("dim")));
    let mut ts = TableState::default().with_selected((!findings.is_empty()).then_some(state.problems_selected));
    frame.render_stateful_widget(table, list, &mut ts);
}
