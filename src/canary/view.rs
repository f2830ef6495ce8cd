//! A canary as lines an operator reads: its steps, the live gate values per
//! calling cluster beside their thresholds, what it waits for, the time to its
//! next check, and what happened. Pure (the time is handed in): `canary
//! status` prints these lines, the cockpit's canary view colours them.

use super::judge::{CallerCheck, GateValue, Verdict};
use super::store::{CanaryState, Status};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Head,
    Plain,
    Good,
    Bad,
    Waiting,
    Dim,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewLine {
    pub tone: Tone,
    pub text: String,
}

fn line(tone: Tone, text: impl Into<String>) -> ViewLine {
    ViewLine { tone, text: text.into() }
}

fn clock(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339).map(|t| t.format("%H:%M:%S").to_string()).unwrap_or_else(|_| rfc3339.into())
}

/// `in 12s`, `now`, or nothing once the canary does not step.
pub fn next_in(state: &CanaryState, now: f64) -> Option<String> {
    if state.status != Status::Running {
        return None;
    }
    let at = state.next_check?;
    let left = (at - now).ceil();
    Some(if left <= 0.0 { "now".into() } else { format!("in {left:.0}s") })
}

/// The canary's weight now, in percent.
pub fn weight_now(state: &CanaryState) -> u32 {
    state.step.checked_sub(1).and_then(|i| state.steps.get(i)).copied().unwrap_or(0)
}

fn gate_cell(g: &GateValue) -> String {
    let mark = match g.verdict {
        Verdict::Passed => "✓",
        Verdict::Failed => "✗",
        Verdict::NotYet => "…",
    };
    let value = match (g.gate.as_str(), g.value, g.threshold) {
        ("successRate", Some(v), Some(t)) => format!("{v:.1}% (≥ {t}%)"),
        ("p99", Some(v), Some(t)) => format!("{v:.1}ms (≤ {t}ms)"),
        ("split", Some(v), Some(t)) => format!("{v:.1}% (step {t:.0}%)"),
        ("successRate", None, Some(t)) => format!("- (≥ {t}%)"),
        ("p99", None, Some(t)) => format!("- (≤ {t}ms)"),
        _ => g.why.clone(),
    };
    format!("{mark} {} {value}", g.gate)
}

fn caller_line(c: &CallerCheck) -> ViewLine {
    let tone = match c.verdict {
        Verdict::Passed => Tone::Good,
        Verdict::Failed => Tone::Bad,
        Verdict::NotYet => Tone::Waiting,
    };
    let gates: Vec<String> = c.gates.iter().map(gate_cell).collect();
    line(tone, format!("  {:<10} {}   {} requests · {}", c.from, gates.join("   "), c.requests, c.verdict.as_str()))
}

/// Everything `canary status NAME` says, as lines; `driver` is who drives it now.
pub fn lines(state: &CanaryState, driver: Option<&str>, now: f64) -> Vec<ViewLine> {
    let mut out = Vec::new();
    let n = state.steps.len();
    out.push(line(
        Tone::Head,
        format!(
            "canary {}  {}  step {}/{n}  {} at {}%",
            state.name,
            state.status.as_str(),
            state.step,
            state.destination,
            weight_now(state)
        ),
    ));
    let driven = match (driver, state.status.active()) {
        (Some(d), _) => format!("driven by {d}"),
        (None, true) => format!("no driver: `meshdeck canary resume {}` continues it", state.name),
        (None, false) => "ended".into(),
    };
    out.push(line(
        Tone::Plain,
        format!(
            "{} from {} · every {}s · started {} by {} · {driven}",
            state.service,
            state.from.join(","),
            state.interval_seconds,
            clock(&state.started),
            state.persona
        ),
    ));
    let steps: Vec<String> = state
        .steps
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let k = i + 1;
            let failed_here = state.checks.iter().any(|c| c.step == k && c.verdict == Verdict::Failed);
            let mark = if k <= state.last_good {
                "✓"
            } else if k == state.step && failed_here {
                "✗"
            } else if k == state.step {
                "▶"
            } else {
                "·"
            };
            format!("{mark} {w}%")
        })
        .collect();
    let next = next_in(state, now).map(|t| format!("   next check {t}")).unwrap_or_default();
    out.push(line(Tone::Plain, format!("steps: {}{next}", steps.join("  "))));
    if let Some(w) = &state.waiting {
        out.push(line(if state.status == Status::Paused { Tone::Bad } else { Tone::Waiting }, format!("waiting: {w}")));
    }
    match state.checks.last() {
        Some(c) => {
            out.push(line(
                Tone::Plain,
                format!("last check {} of step {} over {}s: {}", clock(&c.time), c.step, c.window_seconds, c.verdict.as_str()),
            ));
            out.extend(c.callers.iter().map(caller_line));
        }
        None => out.push(line(Tone::Dim, "no check yet")),
    }
    if !state.events.is_empty() {
        out.push(line(Tone::Plain, "events:"));
        for e in state.events.iter().rev().take(8).collect::<Vec<_>>().into_iter().rev() {
            out.push(line(Tone::Dim, format!("  {} {}", clock(&e.time), e.text)));
        }
    }
    out
}
