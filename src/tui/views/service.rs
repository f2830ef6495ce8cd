//! One service: per cluster and version, pods ready/total and sidecars; the
//! Istio objects that route it now (managed by meshdeck or not), and drift.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};

use crate::tui::app::AppState;
use crate::tui::theme::Theme;

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let Some(s) = state.selected_service() else {
        frame.render_widget(Paragraph::new("no service selected"), area);
        return;
    };
    let needed = 2
        + s.clusters.values().map(|p| 1 + p.versions.len() + usize::from(p.unversioned.total > 0)).sum::<usize>()
        + state.snapshot.clusters.len().saturating_sub(s.clusters.len());
    let top_h = (needed as u16).min(area.height.saturating_sub(4)).max(3);
    let [top, bottom] = Layout::vertical([Constraint::Length(top_h), Constraint::Min(3)]).areas(area);
    let mut lines = vec![Line::from(vec![Span::styled(format!("{}.{}", s.name, s.namespace), theme.style("title"))])];
    for c in &state.snapshot.clusters {
        let Some(p) = s.clusters.get(&c.name) else {
            lines.push(Line::from(vec![
                Span::styled(format!("  {:<10}", c.name), super::cluster_style(state, theme, &c.name)),
                Span::styled(" not deployed", theme.style("dim")),
            ]));
            continue;
        };
        let ports = p.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",");
        // How it joins the mesh there: `ambient via waypoint global`.
        // (Said only where the namespace says it: pods may be injected one by one.)
        let mut mode = p.dataplane_mode.as_ref().map(|m| format!(" {m}")).unwrap_or_default();
        if let Some(w) = &p.waypoint {
            mode.push_str(&format!(" via {w}"));
        }
        if p.global {
            mode.push_str(" global");
        }
        lines.push(Line::from(vec![
            Span::styled(format!("  {:<10}", c.name), super::cluster_style(state, theme, &c.name)),
            Span::styled(format!("{mode} ports {ports}  accounts {}", p.service_accounts.join(",")), theme.style("dim")),
        ]));
        for (v, n) in &p.versions {
            let style = if n.ready == n.total { theme.style("health") } else { theme.style("health.degraded") };
            lines.push(Line::from(vec![
                Span::raw("      "),
                Span::styled(format!("{v:<6} {}/{} ready", n.ready, n.total), style),
                Span::styled(
                    format!("  sidecar {}/{}", n.injected, n.total),
                    if n.injected == n.total { theme.style("dim") } else { theme.style("warning") },
                ),
            ]));
        }
        if p.unversioned.total > 0 {
            lines.push(Line::from(Span::styled(
                format!("      {} pods without the version label", p.unversioned.total),
                theme.style("warning"),
            )));
        }
    }
    frame.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::BOTTOM).border_style(theme.style("dim"))), top);

    let fqdn = format!("{}.{}.svc.cluster.local", s.name, s.namespace);
    let routing: Vec<_> = state
        .snapshot
        .istio_objects
        .iter()
        .filter(|o| {
            o.namespace == s.namespace
                // Also the fleet hosts a plan made for it (`v3.reviews.default.svc.cluster2.global`,
                // `<plan>.reviews.default.failover.global`), as Gateways and ServiceEntries carry them.
                && o.hosts.iter().any(|h| *h == s.name || *h == fqdn || format!(".{h}").contains(&format!(".{}.{}.", s.name, s.namespace)))
        })
        .collect();
    let mut lines = effective_lines(state, &s.key(), theme, bottom.width);
    lines.push(Line::from(Span::styled("Istio objects routing it", theme.style("table.header"))));
    if routing.is_empty() {
        lines.push(Line::from(Span::styled("  none: plain Kubernetes load balancing", theme.style("dim"))));
    }
    for o in &routing {
        let who = match (&o.managed, &o.plan) {
            (true, Some(p)) => Span::styled(format!("meshdeck plan {p}"), theme.style("health")),
            _ => Span::styled("not managed by meshdeck".to_string(), theme.style("warning")),
        };
        lines.push(Line::from(vec![Span::raw(format!("  {:<10} {:<16} {:<28} ", o.cluster, o.kind, o.name)), who]));
    }
    // Drift: objects meshdeck does not manage route the same host as a plan of ours.
    let managed_clusters: Vec<&str> = routing.iter().filter(|o| o.managed).map(|o| o.cluster.as_str()).collect();
    for o in routing.iter().filter(|o| !o.managed && managed_clusters.contains(&o.cluster.as_str())) {
        lines.push(Line::from(Span::styled(
            format!("  drift: {} {} in {} also routes this host", o.kind, o.name, o.cluster),
            theme.style("error"),
        )));
    }
    frame.render_widget(Paragraph::new(lines), bottom);
}

/// Where calls go from each calling cluster, as `meshdeck routes` resolves them.
fn effective_lines(state: &AppState, service: &str, theme: &Theme, width: u16) -> Vec<Line<'static>> {
    let routes = crate::inventory::routes::effective_routes(&state.snapshot, Some(service), None);
    let mut lines =
        vec![Line::from(Span::styled("Effective routes (calling cluster → clusters, versions, pods)", theme.style("table.header")))];
    for r in &routes {
        let via = match &r.virtual_service {
            Some(vs) => format!("{vs} ({})", r.owner),
            None => "no VirtualService: every endpoint it sees".into(),
        };
        lines.push(Line::from(vec![
            Span::styled(format!("  from {:<10}", r.from), super::cluster_style(state, theme, &r.from)),
            Span::styled(format!(" {via}"), theme.style("dim")),
        ]));
        for rule in &r.rules {
            if !rule.matches.is_empty() {
                lines.push(Line::from(Span::styled(format!("    if {}:", rule.matches.join(" or ")), theme.style("dim"))));
            }
            for d in &rule.destinations {
                let targets: Vec<String> = d
                    .targets
                    .iter()
                    .map(|t| {
                        let tier = t.tier.map(|n| format!("#{} ", n + 1)).unwrap_or_default();
                        let version = t.version.as_deref().map(|v| format!(" {v}")).unwrap_or_default();
                        let via = t.via.as_deref().map(|v| format!(" via {v}")).unwrap_or_default();
                        format!("{tier}{}{version} {}/{}{via}", t.cluster, t.ready, t.pods)
                    })
                    .collect();
                let style = if d.targets.iter().any(|t| t.ready > 0) { theme.style("text") } else { theme.style("error") };
                let shown = if targets.is_empty() { "nothing".to_string() } else { targets.join(", ") };
                lines.push(Line::from(Span::styled(format!("    {:>3}% → {shown}", d.weight), style)));
            }
        }
        for p in &r.problems {
            lines.push(Line::from(Span::styled(format!("    ✗ {} {}", p.code, p.message), theme.style("error"))));
        }
        if let Some(seen) = state.traffic.get(&(r.service.clone(), r.from.clone())) {
            lines.extend(observed_lines(seen, theme, width));
        }
    }
    lines
}

/// What the calling cluster's Prometheus counted, beside the weights above:
/// its shares wrapped whole (never cut) to `width` columns.
pub(super) fn observed_lines(seen: &crate::observe::traffic::ObservedRoute, theme: &Theme, width: u16) -> Vec<Line<'static>> {
    use crate::observe::traffic::Metrics;
    let window = format!("{}s", seen.window_seconds);
    if seen.metrics != Metrics::Ok {
        let what = if seen.metrics == Metrics::None { "no metrics" } else { "metrics unreachable" };
        return vec![Line::from(Span::styled(
            format!("    observed ({window}): {what}: {}", seen.error.as_deref().unwrap_or("")),
            theme.style("dim"),
        ))];
    }
    if seen.requests == 0 {
        let why = seen.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default();
        return vec![Line::from(Span::styled(format!("    observed ({window}): no requests{why}"), theme.style("dim")))];
    }
    // A count whole for only part of the window says so, and why: the route was
    // written since, or Prometheus resumed.
    let window = match seen.error.as_deref() {
        Some(e) if e.starts_with("counted since the route") => {
            format!("last {}s of {window}, since the route was written", seen.counted_seconds)
        }
        Some(_) => format!("last {}s of {window}", seen.counted_seconds),
        None => window,
    };
    let shares: Vec<String> = seen
        .destinations
        .iter()
        .filter(|d| d.requests > 0 || d.intended.is_some())
        .map(|d| {
            let at = match &d.version {
                Some(v) => format!("{} {v}", d.cluster),
                None => d.cluster.clone(),
            };
            let mark = if d.drift { " ✗drift" } else { "" };
            format!("{at} {:.1}%{mark}", d.observed.unwrap_or(0.0))
        })
        .collect();
    let ok = seen.success.map(|s| format!("{s:.1}% ok")).unwrap_or_default();
    let p99 = seen.p99_ms.map(|p| format!(", p99 {p:.1}ms")).unwrap_or_default();
    let style = if seen.drift { theme.style("error") } else { theme.style("route.weight") };
    let mut rows: Vec<String> = Vec::new();
    let mut row = format!("    observed ({window}, {:.1}/s, {ok}{p99}):", seen.rate);
    for (i, share) in shares.iter().enumerate() {
        let piece = if i == 0 { format!(" {share}") } else { format!(" · {share}") };
        if i > 0 && row.chars().count() + piece.chars().count() > usize::from(width) {
            rows.push(std::mem::replace(&mut row, format!("      {share}")));
        } else {
            row.push_str(&piece);
        }
    }
    rows.push(row);
    rows.into_iter().map(|r| Line::from(Span::styled(r, style))).collect()
}
