//! The fleet: one header line per cluster (mesh facts, state, last seen), the
//! warnings strip, and the table of services with a column per cluster.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, TableState};

use super::{ago, fit, state_style};
use crate::inventory::{ClusterState, ServicePresence};
use crate::tui::app::AppState;
use crate::tui::theme::Theme;

/// How the body splits: header lines, warning line, table rows visible.
pub struct TableGeometry {
    pub header_lines: u16,
    pub warning_lines: u16,
    pub table_rows: u16,
}

pub fn table_geometry(state: &AppState, body: Rect) -> TableGeometry {
    let n = state.snapshot.clusters.len() as u16;
    let max_headers = if body.height >= 30 { 8 } else { 3 };
    let header_lines = if n > max_headers { max_headers } else { n };
    let warning_lines = u16::from(!state.snapshot.warnings.is_empty());
    let table_rows = body.height.saturating_sub(header_lines + warning_lines + 3);
    TableGeometry { header_lines, warning_lines, table_rows }
}

fn presence_cell(p: Option<&ServicePresence>, cluster_state: ClusterState, theme: &Theme) -> Cell<'static> {
    let Some(p) = p else { return Cell::from(Span::styled("·", theme.style("dim"))) };
    let mut spans = Vec::new();
    for (v, n) in &p.versions {
        let style = if !matches!(cluster_state, ClusterState::Live | ClusterState::Syncing) {
            theme.style("health.stale")
        } else if n.ready == n.total && n.total > 0 {
            theme.style("health")
        } else if n.ready == 0 {
            theme.style("health.down")
        } else {
            theme.style("health.degraded")
        };
        if !spans.is_empty() {
            spans.push(Span::raw(" "));
        }
        spans.push(Span::styled(format!("{v} {}/{}", n.ready, n.total), style));
    }
    if p.unversioned.total > 0 {
        if !spans.is_empty() {
            spans.push(Span::raw(" "));
        }
        spans.push(Span::styled(format!("{}/{}", p.unversioned.ready, p.unversioned.total), theme.style("dim")));
    }
    Cell::from(Line::from(spans))
}

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let g = table_geometry(state, area);
    let [headers, warnings, table] =
        Layout::vertical([Constraint::Length(g.header_lines), Constraint::Length(g.warning_lines), Constraint::Min(3)]).areas(area);
    let n = state.snapshot.clusters.len();
    let shown = usize::from(g.header_lines);
    let mut lines: Vec<Line> = state
        .snapshot
        .clusters
        .iter()
        .take(if n > shown { shown.saturating_sub(1) } else { shown })
        .map(|c| {
            let m = &c.mesh;
            let d = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            // Narrow terminals get the same facts without their labels.
            let facts = if area.width < 100 {
                format!(
                    " {:<7} {:<15} {:<9} {:<13}",
                    d(&m.istio_version),
                    fit(&d(&m.trust_domain), 15),
                    fit(&d(&m.network), 9),
                    d(&m.east_west_gateway)
                )
            } else {
                format!(
                    " istio {:<7} td {:<15} net {:<9} ew {:<14}",
                    d(&m.istio_version),
                    fit(&d(&m.trust_domain), 15),
                    fit(&d(&m.network), 9),
                    d(&m.east_west_gateway)
                )
            };
            let mut spans = vec![
                Span::styled(format!("{:<10}", fit(&c.name, 10)), super::cluster_style(state, theme, &c.name)),
                Span::styled(format!(" {:<11}", c.state.as_str()), state_style(theme, c.state)),
                Span::styled(facts, theme.style("text")),
                Span::styled(format!(" {}{}", if area.width < 100 { "" } else { "seen " }, ago(state, c)), theme.style("dim")),
            ];
            if c.read_only {
                spans.push(Span::styled(" ro", theme.style("warning")));
            }
            if let Some(e) = &c.error {
                spans.push(Span::styled(format!(" {}", e.message()), theme.style("error")));
            }
            Line::from(spans)
        })
        .collect();
    if n > shown {
        let live = state.snapshot.clusters.iter().filter(|c| c.state == ClusterState::Live).count();
        lines.push(Line::from(Span::styled(
            format!("… {} more clusters ({live} of {n} live) — :clusters", n + 1 - shown),
            theme.style("dim"),
        )));
    }
    frame.render_widget(Paragraph::new(lines), headers);
    if let Some(w) = crate::inventory::analyze::first_warning(&state.snapshot) {
        let more = state.snapshot.warnings.len() - 1;
        let text = if more > 0 { format!("⚠ {} {} (+{more} more)", w.code, w.message) } else { format!("⚠ {} {}", w.code, w.message) };
        frame.render_widget(Paragraph::new(Span::styled(text, theme.style("warning"))), warnings);
    }

    let visible = state.visible_clusters();
    let columns: Vec<_> = visible.iter().skip(state.col_offset).collect();
    // Column widths: service and namespace fit their content; clusters share the rest.
    let narrow = table.width < 100;
    let (name_cap, ns_cap) = if narrow { (14, 10) } else { (28, 16) };
    let name_w = state.rows.iter().map(|i| state.snapshot.services[*i].name.len()).max().unwrap_or(7).clamp(7, name_cap) as u16;
    let ns_w = state.rows.iter().map(|i| state.snapshot.services[*i].namespace.len()).max().unwrap_or(9).clamp(9, ns_cap) as u16;
    // The ROUTE column shows once some service is routed by a VirtualService.
    let route_of = |i: &usize| state.routes.get(&state.snapshot.services[*i].key());
    let route_w = if state.routes.is_empty() {
        0
    } else {
        // Sized by every cell (a few), not by a scan of every row each frame.
        let cap = if narrow { 20 } else { 40 };
        state.routes.values().map(|r| r.chars().count()).max().unwrap_or(5).clamp(5, cap) as u16
    };
    let mut widths = vec![Constraint::Length(name_w), Constraint::Length(ns_w)];
    if route_w > 0 {
        widths.push(Constraint::Length(route_w));
    }
    // Each cluster column is as wide as its widest cell (rows on screen), within 10..=32.
    let page_rows: Vec<usize> = state.rows.iter().skip(state.offset).take(usize::from(table.height)).copied().collect();
    let width_of = |name: &str| -> u16 {
        let cells = page_rows.iter().filter_map(|i| state.snapshot.services[*i].clusters.get(name)).map(|p| {
            p.versions.iter().map(|(v, n)| format!("{v} {}/{} ", n.ready, n.total).len()).sum::<usize>()
                + if p.unversioned.total > 0 { 6 } else { 0 }
        });
        cells.chain(std::iter::once(name.len())).max().unwrap_or(10).clamp(10, 32) as u16
    };
    let mut room = table.width.saturating_sub(name_w + ns_w + 2 + if route_w > 0 { route_w + 1 } else { 0 });
    let mut fitted = Vec::new();
    for c in columns {
        let w = width_of(&c.name);
        if room < w + 1 && !fitted.is_empty() {
            break;
        }
        room = room.saturating_sub(w + 1);
        fitted.push((c, w));
    }
    widths.extend(fitted.iter().map(|(_, w)| Constraint::Length(*w)));
    let columns: Vec<_> = fitted.into_iter().map(|(c, _)| c).collect();
    let mut header: Vec<Cell> = vec![Cell::from("SERVICE"), Cell::from("NAMESPACE")];
    if route_w > 0 {
        header.push(Cell::from("ROUTE"));
    }
    for c in &columns {
        header.push(Cell::from(Span::styled(c.name.to_uppercase(), super::cluster_style(state, theme, &c.name))));
    }
    let page = usize::from(table.height.saturating_sub(3));
    let rows: Vec<Row> = state
        .rows
        .iter()
        .skip(state.offset)
        .take(page.max(1))
        .map(|i| {
            let s = &state.snapshot.services[*i];
            let mut cells = vec![
                Cell::from(Span::styled(fit(&s.name, usize::from(name_w)), theme.style("text"))),
                Cell::from(Span::styled(fit(&s.namespace, usize::from(ns_w)), theme.style("dim"))),
            ];
            if route_w > 0 {
                cells.push(match route_of(i) {
                    Some(r) if r.starts_with('✗') => Cell::from(Span::styled(fit(r, usize::from(route_w)), theme.style("error"))),
                    Some(r) => Cell::from(Span::styled(fit(r, usize::from(route_w)), theme.style("text"))),
                    None => Cell::from(Span::styled("·", theme.style("dim"))),
                });
            }
            cells.extend(columns.iter().map(|c| presence_cell(s.clusters.get(&c.name), c.state, theme)));
            Row::new(cells)
        })
        .collect();
    let hidden = state.snapshot.clusters.len() - visible.len();
    let scrolled = visible.len().saturating_sub(columns.len() + state.col_offset);
    let mut title = format!(" services {}/{} ", state.rows.len(), state.snapshot.services.len());
    if state.col_offset > 0 || scrolled > 0 {
        title.push_str(&format!("· clusters {}-{} of {} (←/→) ", state.col_offset + 1, state.col_offset + columns.len(), visible.len()));
    }
    if hidden > 0 {
        title.push_str(&format!("· {hidden} hidden "));
    }
    let widget = Table::new(rows, widths)
        .header(Row::new(header).style(theme.style("table.header")))
        .row_highlight_style(theme.style("table.selected"))
        .block(Block::default().borders(Borders::TOP).title(Span::styled(title, theme.style("dim"))).border_style(theme.style("dim")))
        .column_spacing(1);
    let mut ts = TableState::default().with_selected(state.rows.get(state.selected).map(|_| state.selected - state.offset));
    frame.render_stateful_widget(widget.style(Style::default()), table, &mut ts);
}
