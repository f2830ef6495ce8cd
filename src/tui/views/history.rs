//! History: every apply and rollback, newest first; roll back the selected one.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Cell, Row, Table, TableState};

use crate::tui::app::AppState;
use crate::tui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let rows: Vec<Row> = state
        .history
        .iter()
        .map(|r| {
            let outcome_style =
                if format!("{:?}", r.report.outcome) == "Applied" { theme.style("health") } else { theme.style("health.degraded") };
            Row::new(vec![
                Cell::from(r.id.clone()),
                Cell::from(r.action.clone()),
                Cell::from(r.plans.join(",")),
                Cell::from(r.clusters.join(",")),
                Cell::from(Span::styled(format!("{:?}", r.report.outcome), outcome_style)),
                Cell::from(r.changes.summary()),
                Cell::from(r.rollback_of.clone().unwrap_or_default()),
            ])
        })
        .collect();
    let empty = state.history.is_empty();
    let title = if empty { " history: nothing applied yet " } else { " history (newest first) " };
    let widths = [
        Constraint::Length(20),
        Constraint::Length(8),
        Constraint::Length(16),
        Constraint::Length(17),
        Constraint::Length(10),
        Constraint::Length(18),
        Constraint::Min(0),
    ];
    let table = Table::new(rows, widths)
        .header(Row::new(["ID", "ACTION", "PLANS", "CLUSTERS", "OUTCOME", "CHANGES", "UNDOES"]).style(theme.style("table.header")))
        .row_highlight_style(theme.style("table.selected"))
        .block(Block::default().borders(Borders::TOP).title(Span::styled(title, theme.style("dim"))).border_style(theme.style("dim")));
    let mut ts = TableState::default().with_selected((!empty).then_some(state.history_selected));
    frame.render_stateful_widget(table, area, &mut ts);
}
