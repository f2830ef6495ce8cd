//! Route plans, the operator's language: `TrafficRoute` (weighted split or
//! ordered failover) and `AccessPolicy`. Parsing keeps positions; validation
//! runs against the inventory and reports every problem at `file:line:col`.
//! Pure: no I/O beyond the text handed in, no clock.

pub mod import;
pub mod parse;
pub mod types;
pub mod validate;
pub mod write;

pub use types::*;

use crate::inventory::FleetSnapshot;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

/// Parse and validate a plan file's text against the inventory.
pub fn load(file: &str, text: &str, inv: &FleetSnapshot) -> Result<Plan, Vec<PlanError>> {
    load_replacing(file, text, inv, &[])
}

/// The same, for a plan that replaces the plans named in `replacing` (their routes
/// are not other owners).
pub fn load_replacing(file: &str, text: &str, inv: &FleetSnapshot, replacing: &[String]) -> Result<Plan, Vec<PlanError>> {
    let docs = parse::parse(file, text).map_err(|e| vec![e])?;
    validate::validate_replacing(file, docs, inv, replacing)
}
