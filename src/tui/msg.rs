//! What the loop receives, and what `update` asks for. Effects are data, not
//! futures, so tests can assert on them; results come back tagged with `generation`
//! and stale ones are dropped.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use crossterm::event::KeyEvent;

use crate::apply::Prepared;
use crate::apply::history::HistoryRecord;
use crate::apply::write::ApplyReport;
use crate::inventory::FleetSnapshot;
use crate::plan::Plan;

/// A canary as the cockpit shows it: its state and the process driving it.
#[derive(Clone, Debug, PartialEq)]
pub struct CanaryRow {
    pub state: crate::canary::CanaryState,
    pub driver: Option<String>,
}

#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    /// The latest inventory (coalesced).
    Fleet(Arc<FleetSnapshot>),
    Prepared {
        generation: u64,
        result: Result<Box<Prepared>, String>,
    },
    Progress {
        generation: u64,
        line: String,
    },
    Applied {
        generation: u64,
        result: Result<(ApplyReport, String), String>,
    },
    History(Vec<HistoryRecord>),
    /// Every cluster's root of trust and CA (`inventory::trust`).
    Trust(Vec<crate::inventory::trust::TrustStatus>),
    /// The observed split of every routed service, per calling cluster (`observe`).
    Traffic(Vec<crate::observe::traffic::ObservedRoute>),
    /// 1 Hz: ages and the clock.
    Tick(DateTime<Utc>),
    /// Table rows the last draw could show (for paging and scrolling).
    Layout {
        rows: u16,
    },
    EditedExternally(Result<String, String>),
    /// Every canary's state and who drives it, read every second.
    Canaries(Vec<CanaryRow>),
    /// A line for the log view (a canary the cockpit drives).
    Log(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Preflight, dry run and diff of a plan (nothing written).
    Prepare {
        generation: u64,
        plan: Plan,
    },
    /// The same for undoing a history entry.
    PrepareRollback {
        generation: u64,
        id: String,
    },
    /// Write a prepared change and record it.
    Execute {
        generation: u64,
        prepared: Box<Prepared>,
    },
    LoadHistory,
    /// Suspend the cockpit and edit this text in $EDITOR.
    ExternalEdit(String),
    /// Register a kubeconfig context as a cluster and watch it too.
    Register(String),
    /// Let another alias (kubeconfig context) act for a registered cluster.
    SwitchContext {
        cluster: String,
        context: String,
    },
    /// Pause, resume, promote or abort a canary (the cockpit drives it if no process does).
    Canary {
        name: String,
        request: crate::canary::Request,
    },
    Quit,
}
