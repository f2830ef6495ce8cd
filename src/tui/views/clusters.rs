//! Clusters: registered clusters with the context acting for each, its aliases,
//! state, facts and last error; then kubeconfig contexts that can be added.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Cell, Row, Table, TableState};

use super::{ago, state_style};
use crate::tui::app::AppState;
use crate::tui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let available = state.available.iter().map(|ctx| {
        let mut cells = vec![
            Cell::from(Span::styled(ctx.clone(), theme.style("dim"))),
            Cell::from(ctx.clone()),
            Cell::from(""),
            Cell::from(Span::styled("available", theme.style("dim"))),
        ];
        cells.extend((0..7).map(|_| Cell::from("")));
        cells.push(Cell::from(Span::styled("not registered: space adds it", theme.style("dim"))));
        Row::new(cells)
    });
    let rows: Vec<Row> = state
        .snapshot
        .clusters
        .iter()
        .map(|c| {
            let d = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            let shown = if state.hidden.contains(&c.name) { "hidden" } else { "shown" };
            Row::new(vec![
                Cell::from(Span::styled(c.name.clone(), super::cluster_style(state, theme, &c.name))),
                if c.insecure_skip_tls_verify {
                    Cell::from(Span::styled(format!("{} !tls", c.context), theme.style("warning")))
                } else {
                    Cell::from(c.context.clone())
                },
                Cell::from(Span::styled(c.aliases_text(), theme.style("dim"))),
                if c.reading_facts() {
                    Cell::from(Span::styled("live…", theme.style("dim")))
                } else {
                    Cell::from(Span::styled(c.state.as_str(), state_style(theme, c.state)))
                },
                Cell::from(d(&c.kubernetes_version)),
                Cell::from(c.latency_ms.map(|l| format!("{l}ms")).unwrap_or_else(|| "-".into())),
                Cell::from(ago(state, c)),
                Cell::from(d(&c.mesh.istio_version)),
                Cell::from(d(&c.mesh.trust_domain)),
                Cell::from(d(&c.mesh.cluster_id)),
                Cell::from(shown),
                match &c.error {
                    Some(e) => Cell::from(Span::styled(e.message().to_string(), theme.style("error"))),
                    None if c.reading_facts() => Cell::from(Span::styled("reading its mesh facts", theme.style("dim"))),
                    None => Cell::from(""),
                },
            ])
        })
        .chain(available)
        .collect();
    let widths = [
        Constraint::Length(12),
        Constraint::Length(20),
        Constraint::Length(20),
        Constraint::Length(12),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(15),
        Constraint::Length(10),
        Constraint::Length(6),
        Constraint::Min(10),
    ];
    let table = Table::new(rows, widths)
        .header(
            Row::new([
                "NAME",
                "CONTEXT",
                "ALIASES",
                "STATE",
                "K8S",
                "LATENCY",
                "SEEN",
                "ISTIO",
                "TRUST-DOMAIN",
                "CLUSTER-ID",
                "COLUMN",
                "ERROR",
            ])
            .style(theme.style("table.header")),
        )
        .row_highlight_style(theme.style("table.selected"))
        .block(
            Block::default()
                .borders(Borders::TOP)
                .title(Span::styled(
                    " registered clusters (enter: act as the next alias), then kubeconfig contexts you can add ",
                    theme.style("dim"),
                ))
                .border_style(theme.style("dim")),
        );
    let mut ts = TableState::default().with_selected(Some(state.clusters_selected));
    frame.render_stateful_widget(table, area, &mut ts);
}
