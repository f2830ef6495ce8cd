//! History: every apply and rollback, newest first; roll back the selected one.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Cell, Row, Table, TableState};

use crate::tui::app::AppState;
use crate::tui::theme::Theme;

/// Columns kept at each width: an id is whole at any width (it is what `rollback`
/// takes), so the others give way first: CHANGES and UNDOES below 120 columns.
const ALL_COLUMNS: usize = 120;

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let wide = area.width >= ALL_COLUMNS as u16;
    let rows: Vec<Row> = state
        .history
        .iter()
        .map(|r| {
            let outcome_style = if r.finished_well() { theme.style("health") } else { theme.style("health.degraded") };
            let mut cells = vec![
                Cell::from(r.id.clone()),
                Cell::from(r.action_label()),
                Cell::from(r.plans.join(",")),
                Cell::from(r.clusters.join(",")),
                Cell::from(Span::styled(format!("{:?}", r.report.outcome), outcome_style)),
            ];
            if wide {
                cells.push(Cell::from(r.changes.summary()));
                cells.push(Cell::from(r.rollback_of.clone().unwrap_or_default()));
            }
            Row::new(cells)
        })
        .collect();
    let empty = state.history.is_empty();
    let title = if empty { " history: nothing applied yet " } else { " history (newest first) " };
    // An id is 20 characters (20261124-120000-abcd), an outcome at most 18 (RollbackIncomplete).
    // As wide as the longest action shown (`canary step 2`), at least `rollback`.
    let action = state.history.iter().map(|r| r.action_label().chars().count()).max().unwrap_or(0).clamp(8, 14) as u16;
    let mut widths =
        vec![Constraint::Length(20), Constraint::Length(action), Constraint::Fill(1), Constraint::Fill(1), Constraint::Length(18)];
    let mut header = vec!["ID", "ACTION", "PLANS", "CLUSTERS", "OUTCOME"];
    if wide {
        widths.extend([Constraint::Length(24), Constraint::Length(20)]);
        header.extend(["CHANGES", "UNDOES"]);
    }
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.style("table.header")))
        .row_highlight_style(theme.style("table.selected"))
        .block(Block::default().borders(Borders::TOP).title(Span::styled(title, theme.style("dim"))).border_style(theme.style("dim")));
    let mut ts = TableState::default().with_selected((!empty).then_some(state.history_selected));
    frame.render_stateful_widget(table, area, &mut ts);
}
