//! Clusters: registered clusters with the context acting for each, its aliases,
//! state, facts and last error; then kubeconfig contexts that can be added.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders, Cell, Row, Table, TableState};

use super::{ago, state_style};
use crate::tui::app::AppState;
use crate::tui::theme::Theme;

/// Every column: header and width.
const COLUMNS: [(&str, Constraint); 16] = [
    ("NAME", Constraint::Length(12)),
    ("CONTEXT", Constraint::Length(20)),
    ("ALIASES", Constraint::Length(20)),
    ("STATE", Constraint::Length(12)),
    ("K8S", Constraint::Length(8)),
    ("LATENCY", Constraint::Length(7)),
    ("SEEN", Constraint::Length(6)),
    ("ISTIO", Constraint::Length(7)),
    ("GW-API", Constraint::Length(10)),
    ("TRUST-DOMAIN", Constraint::Length(15)),
    ("CLUSTER-ID", Constraint::Length(10)),
    ("ROOT", Constraint::Length(11)),
    ("CA", Constraint::Length(11)),
    ("EXPIRES", Constraint::Length(7)),
    ("COLUMN", Constraint::Length(6)),
    ("ERROR", Constraint::Min(10)),
];

/// Below this width, `MEDIUM_COLUMNS`; below `MEDIUM`, `NARROW_COLUMNS` (k9s drops columns too).
const WIDE: u16 = 190;
const MEDIUM: u16 = 110;

/// All but K8S, LATENCY, GW-API and CLUSTER-ID.
const MEDIUM_COLUMNS: [usize; 12] = [0, 1, 2, 3, 6, 7, 9, 11, 12, 13, 14, 15];

/// NAME, CONTEXT, STATE, ROOT, CA, EXPIRES, ERROR: about 80 columns.
const NARROW_COLUMNS: [usize; 7] = [0, 1, 3, 11, 12, 13, 15];

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let available = state.available.iter().map(|ctx| {
        let mut cells = vec![
            Cell::from(Span::styled(ctx.clone(), theme.style("dim"))),
            Cell::from(ctx.clone()),
            Cell::from(""),
            Cell::from(Span::styled("available", theme.style("dim"))),
        ];
        cells.extend((0..11).map(|_| Cell::from("")));
        cells.push(Cell::from(Span::styled("not registered: space adds it", theme.style("dim"))));
        cells
    });
    let rows: Vec<Vec<Cell>> = state
        .snapshot
        .clusters
        .iter()
        .map(|c| {
            let d = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            let shown = if state.hidden.contains(&c.name) { "hidden" } else { "shown" };
            vec![
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
                // Gateway API's HTTPRoute served (routes can be written in it there), and its versions.
                Cell::from(match (c.mesh.gateway_api, c.mesh.gateway_api_versions.as_slice()) {
                    (false, _) => "-".to_string(),
                    (true, []) => "yes".to_string(),
                    (true, versions) => versions.join(","),
                }),
                Cell::from(d(&c.mesh.trust_domain)),
                Cell::from(d(&c.mesh.cluster_id)),
                root_cell(state, theme, c),
                ca_cell(state, theme, &c.name),
                expiry_cell(state, theme, &c.name),
                Cell::from(shown),
                match &c.error {
                    Some(e) => Cell::from(Span::styled(e.message().to_string(), theme.style("error"))),
                    None if c.reading_facts() => Cell::from(Span::styled("reading its mesh facts", theme.style("dim"))),
                    None => Cell::from(""),
                },
            ]
        })
        .chain(available)
        .collect();
    // Narrower than every column: the ones an operator scans for.
    let keep = |i: &usize| match area.width {
        w if w >= WIDE => true,
        w if w >= MEDIUM => MEDIUM_COLUMNS.contains(i),
        _ => NARROW_COLUMNS.contains(i),
    };
    let rows: Vec<Row> =
        rows.into_iter().map(|cells| Row::new(cells.into_iter().enumerate().filter(|(i, _)| keep(i)).map(|(_, c)| c))).collect();
    let widths: Vec<Constraint> = COLUMNS.iter().enumerate().filter(|(i, _)| keep(i)).map(|(_, (_, w))| *w).collect();
    let header: Vec<&str> = COLUMNS.iter().enumerate().filter(|(i, _)| keep(i)).map(|(_, (h, _))| *h).collect();
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(theme.style("table.header")))
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

/// The root istiod distributes (live, from the inventory): its fingerprint's first
/// hex digits, in warning colour when another cluster has another root.
fn root_cell<'a>(state: &AppState, theme: &Theme, c: &crate::inventory::ClusterView) -> Cell<'a> {
    let Some(fp) = &c.mesh.root_cert_fingerprint else { return Cell::from("-") };
    let short: String = fp.trim_start_matches("sha256:").chars().take(8).collect();
    let roots: std::collections::BTreeSet<&String> =
        state.snapshot.clusters.iter().filter_map(|c| c.mesh.root_cert_fingerprint.as_ref()).collect();
    // A bundle while a rotation runs: the first root, and how many more.
    let more = state.trust.get(&c.name).map_or(0, |t| t.roots_distributed.saturating_sub(1));
    let text = if more > 0 { format!("{short} +{more}") } else { short };
    if roots.len() > 1 { Cell::from(Span::styled(text, theme.style("warning"))) } else { Cell::from(text) }
}

/// The CA istiod signs with: `plugged-in` (`✗ chain` when its intermediate does not
/// chain to the distributed root), `self-signed`, or `?` (why: `meshdeck trust status`).
fn ca_cell<'a>(state: &AppState, theme: &Theme, cluster: &str) -> Cell<'a> {
    let Some(t) = state.trust.get(cluster) else { return Cell::from(Span::styled("…", theme.style("dim"))) };
    match t.chains_to_root {
        Some(false) => Cell::from(Span::styled("✗ chain", theme.style("error"))),
        _ if t.ca.starts_with("unknown") => Cell::from(Span::styled("?", theme.style("dim"))),
        // Mid-rotation: which of the three steps this cluster is at.
        _ if t.rotation.is_some() => Cell::from(Span::styled(
            format!("step {}", t.rotation.as_deref().unwrap_or_default().split(' ').next().unwrap_or_default()),
            theme.style("warning"),
        )),
        _ => Cell::from(t.ca.clone()),
    }
}

/// Days until the intermediate (else the root) expires, ⚠ under 30.
fn expiry_cell<'a>(state: &AppState, theme: &Theme, cluster: &str) -> Cell<'a> {
    let Some(facts) = state.trust.get(cluster).and_then(|t| t.intermediate.as_ref().or(t.root.as_ref())) else { return Cell::from("-") };
    if facts.days_left < crate::inventory::trust::EXPIRY_WARNING_DAYS {
        Cell::from(Span::styled(format!("⚠ {}d", facts.days_left), theme.style("warning")))
    } else {
        Cell::from(format!("{}d", facts.days_left))
    }
}
