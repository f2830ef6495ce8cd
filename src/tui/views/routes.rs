//! The route picture: the calling cluster at the top, a trunk down the left, and an
//! arrow per target labelled with its weight (or failover tier) into a box per
//! destination cluster listing the versions that answer (`same`: the arrow above's
//! share, balanced across them). A broken arrow is dashed and marked ✗, so it reads
//! without colour (`NO_COLOR`); the problems follow.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::fit;
use crate::inventory::routes::{EffectiveRoute, Rule, Target};
use crate::tui::app::AppState;
use crate::tui::theme::Theme;

/// One line of the picture: text runs, each with the theme key that styles it.
pub type PictureLine = Vec<(String, &'static str)>;

/// A destination box: its cluster, how it is reached, and (arrow label, target) per line.
type Group<'a> = (String, Option<String>, Vec<(String, &'a Target)>);

/// Columns before the destination boxes: trunk, arrow and label.
const ARROW_W: usize = 14;

pub fn draw(frame: &mut Frame, area: Rect, state: &AppState, theme: &Theme) {
    let routes = state.service_routes();
    let Some(route) = routes.get(state.routes_selected.min(routes.len().saturating_sub(1))) else {
        frame.render_widget(Paragraph::new("no route: no calling cluster with Istio sees this service"), area);
        return;
    };
    let mut lines = picture(route, usize::from(area.width));
    if routes.len() > 1 {
        let callers: Vec<String> = routes
            .iter()
            .enumerate()
            .map(|(i, r)| if i == state.routes_selected { format!("[{}]", r.from) } else { r.from.clone() })
            .collect();
        lines.insert(1, vec![(format!("calling clusters (↑/↓): {}", callers.join(" ")), "dim")]);
    }
    let mut text: Vec<Line> = lines
        .into_iter()
        .map(|runs| Line::from(runs.into_iter().map(|(t, style)| Span::styled(t, theme.style(style))).collect::<Vec<_>>()))
        .collect();
    // What the caller's Prometheus counted, under the weights it should follow.
    if let Some(seen) = state.traffic.get(&(route.service.clone(), route.from.clone())) {
        text.push(Line::from(""));
        text.extend(super::service::observed_lines(seen, theme, area.width));
    }
    frame.render_widget(Paragraph::new(text), area);
}

/// A target whose arrow is broken: nothing ready there, or a problem names its cluster.
fn broken(route: &EffectiveRoute, t: &Target) -> bool {
    t.ready == 0 || route.problems.iter().any(|p| p.clusters.len() > 1 && p.clusters[1..].contains(&t.cluster))
}

/// The picture as styled text, `width` columns at most. Pure, for snapshots.
pub fn picture(route: &EffectiveRoute, width: usize) -> Vec<PictureLine> {
    let how = match &route.virtual_service {
        Some(vs) => format!("{vs} ({})", route.owner),
        None => "no VirtualService: every endpoint it sees".into(),
    };
    let mut out: Vec<PictureLine> = vec![vec![
        (format!("{} from {}", route.service, route.from), "title"),
        (fit(&format!("  {how}"), width.saturating_sub(route.service.len() + route.from.len() + 6)), "dim"),
    ]];
    let caller = format!(" {} (callers) ", route.from);
    out.push(vec![(format!("┌{}┐", "─".repeat(caller.chars().count())), "text")]);
    out.push(vec![("│".into(), "text"), (caller.clone(), "title"), ("│".into(), "text")]);
    out.push(vec![(format!("└─┬{}┘", "─".repeat(caller.chars().count().saturating_sub(2))), "text")]);
    let rules: Vec<&Rule> = route.rules.iter().collect();
    let box_w = width.saturating_sub(ARROW_W + 2).clamp(12, 60);
    let total_arrows: usize = rules.iter().map(|r| r.destinations.iter().map(|d| d.targets.len().max(1)).sum::<usize>()).sum();
    let mut drawn = 0;
    for rule in &rules {
        if !rule.matches.is_empty() {
            out.push(vec![("  │ ".into(), "text"), (fit(&format!("if {}", rule.matches.join(" or ")), width.saturating_sub(4)), "dim")]);
        } else if rules.len() > 1 {
            out.push(vec![("  │ ".into(), "text"), ("otherwise".into(), "dim")]);
        }
        // Destinations grouped by the cluster that answers, in the order they first appear.
        let mut groups: Vec<Group> = Vec::new();
        for d in &rule.destinations {
            if d.targets.is_empty() {
                let label = format!("{}%", d.weight);
                groups.push((format!("{} (nothing)", fit(&d.host, 40)), None, vec![(label, &NOWHERE)]));
                continue;
            }
            for (i, t) in d.targets.iter().enumerate() {
                // One destination's weight is shared by its targets (Istio balances across
                // them): the first arrow carries it, the others say they share it.
                let label = match (t.tier, i) {
                    (Some(n), _) => format!("#{}", n + 1),
                    (None, 0) => format!("{}%", d.weight),
                    (None, _) => "same".to_string(),
                };
                match groups.iter_mut().find(|(c, via, _)| *c == t.cluster && *via == t.via) {
                    Some((_, _, members)) => members.push((label, t)),
                    None => groups.push((t.cluster.clone(), t.via.clone(), vec![(label, t)])),
                }
            }
        }
        for (cluster, via, members) in groups {
            let title = match (&via, cluster.as_str()) {
                (Some(v), "-") => format!(" {v} "),
                (Some(v), _) => format!(" {cluster} · {v} "),
                (None, _) => format!(" {cluster} "),
            };
            // As wide as the widest line of the box, within what the screen leaves.
            let widest =
                members.iter().map(|(_, t)| body_of(t).chars().count()).chain(std::iter::once(title.chars().count())).max().unwrap_or(0);
            let inner = (widest + 2).clamp(16, box_w.saturating_sub(2));
            let title = fit(&title, inner);
            let pad = inner.saturating_sub(title.chars().count());
            let last_group_arrow = drawn + members.len();
            out.push(vec![("  │".into(), "text"), (" ".repeat(ARROW_W - 3), "text"), (format!("┌{title}{}┐", "─".repeat(pad)), "text")]);
            for (label, t) in &members {
                drawn += 1;
                let is_broken = broken(route, t) || std::ptr::eq(*t, &NOWHERE);
                let branch = if drawn == total_arrows { "  └" } else { "  ├" };
                let arrow = if is_broken { format!("╌ {label:>4} ╌✗▶") } else { format!("─ {label:>4} ──▶") };
                let body = fit(&body_of(t), inner);
                let body_pad = inner.saturating_sub(body.chars().count());
                out.push(vec![
                    (branch.into(), "text"),
                    (arrow, if is_broken { "error" } else { "health" }),
                    (" │".into(), "text"),
                    (format!("{body}{}", " ".repeat(body_pad)), if is_broken { "error" } else { "text" }),
                    ("│".into(), "text"),
                ]);
            }
            let trunk = if drawn >= total_arrows && last_group_arrow >= total_arrows { "   " } else { "  │" };
            out.push(vec![(trunk.into(), "text"), (" ".repeat(ARROW_W - 3), "text"), (format!("└{}┘", "─".repeat(inner)), "text")]);
        }
    }
    for p in &route.problems {
        for (i, piece) in wrap(&format!("✗ {} {}", p.code, p.message), width.max(20)).into_iter().enumerate() {
            out.push(vec![(if i == 0 { piece } else { format!("  {piece}") }, "error")]);
        }
    }
    out
}

fn body_of(t: &Target) -> String {
    if std::ptr::eq(t, &NOWHERE) {
        return " no pods".to_string();
    }
    if t.cluster == "-" {
        return " not a cluster meshdeck sees".to_string();
    }
    format!(" {}  {}/{} ready", t.version.as_deref().unwrap_or("every version"), t.ready, t.pods)
}

/// Words into lines of at most `width` columns (continuations leave 2 for an indent).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split(' ') {
        let limit = if lines.is_empty() { width } else { width.saturating_sub(2) };
        if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > limit {
            lines.push(std::mem::replace(&mut current, word.to_string()));
        } else {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
    }
    lines.push(current);
    lines
}

/// A destination that resolves to nothing: drawn as a broken arrow into an empty box.
static NOWHERE: Target = Target { cluster: String::new(), version: None, ready: 0, pods: 0, via: None, tier: None };
