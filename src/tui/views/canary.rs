//! Canaries: each one's status and step, and the selected one in full (its
//! steps, the live gate values per calling cluster beside their thresholds,
//! the time to its next check, what happened), as `canary::view` words it.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState, Wrap};

use crate::canary::view::{Tone, lines, next_in, weight_now};
use crate::tui::app::AppState;
use crate::tui::theme::Theme;

fn style(tone: Tone, theme: &Theme) -> ratatui::style::Style {
    match tone {
        Tone::Head => theme.style("title"),
        Tone::Plain => theme.style("text"),
        Tone::Good => theme.style("health"),
        Tone::Bad => theme.style("error"),
        Tone::Waiting => theme.style("warning"),
        Tone::Dim => theme.style("dim"),
    }
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    if state.canaries.is_empty() {
        let text = "no canaries: `meshdeck canary start PLAN` steps a TrafficRoute's canary section in (see docs/plans.md)";
        frame.render_widget(Paragraph::new(text).style(theme.style("dim")).wrap(Wrap { trim: true }), area);
        return;
    }
    let now = state.now.timestamp_millis() as f64 / 1000.0;
    let list_height = (state.canaries.len() as u16 + 2).min(area.height / 3).max(3);
    let [list, detail] = Layout::vertical([Constraint::Length(list_height), Constraint::Fill(1)]).areas(area);
    let rows: Vec<Row> = state
        .canaries
        .iter()
        .map(|c| {
            let s = &c.state;
            let tone = match s.status {
                crate::canary::Status::Promoted => Tone::Good,
                crate::canary::Status::Running => Tone::Plain,
                crate::canary::Status::Paused | crate::canary::Status::RollingBack => Tone::Waiting,
                crate::canary::Status::RolledBack | crate::canary::Status::Aborted => Tone::Bad,
            };
            Row::new(vec![
                Cell::from(s.name.clone()),
                Cell::from(Span::styled(s.status.as_str(), style(tone, theme))),
                Cell::from(format!("{}/{}", s.step, s.steps.len())),
                Cell::from(format!("{} {}%", s.destination, weight_now(s))),
                Cell::from(next_in(s, now).unwrap_or_else(|| "-".into())),
                Cell::from(if c.driver.is_some() {
                    "driven"
                } else if s.status.active() {
                    "no driver"
                } else {
                    "-"
                }),
            ])
        })
        .collect();
    let widths = [
        Constraint::Fill(2),
        Constraint::Length(12),
        Constraint::Length(5),
        Constraint::Fill(2),
        Constraint::Length(10),
        Constraint::Length(9),
    ];
    let table = Table::new(rows, widths)
        .header(Row::new(["CANARY", "STATUS", "STEP", "CANARY AT", "NEXT", "DRIVER"]).style(theme.style("table.header")))
        .row_highlight_style(theme.style("table.selected"))
        .block(
            Block::default().borders(Borders::TOP).title(Span::styled(" canaries ", theme.style("dim"))).border_style(theme.style("dim")),
        );
    let mut ts = TableState::default().with_selected(Some(state.canary_selected));
    frame.render_stateful_widget(table, list, &mut ts);
    let Some(selected) = state.canaries.get(state.canary_selected) else { return };
    let text: Vec<Line> = lines(&selected.state, selected.driver.as_deref(), now)
        .into_iter()
        .map(|l| Line::from(Span::styled(l.text, style(l.tone, theme))))
        .collect();
    let block = Block::default().borders(Borders::TOP).border_style(theme.style("dim"));
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }).block(block), detail);
}
