//! One owner per route, for a change that lasts longer than one apply (a canary
//! stepping a route in): while it holds the route, a lease in
//! `history/leases/<name>.json` names it, and the conductor refuses every other
//! plan for that route (the same service from a shared calling cluster, or the
//! same plan name) and every rollback of its records. The holder writes the
//! lease as it goes and removes it when it ends.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ApplyError;
use super::history::{History, write_atomic};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// The plan (route) name the holder writes as.
    pub name: String,
    /// The holder's run: its records carry it (`CanaryMark::run`).
    pub run: String,
    /// `name.namespace`.
    pub service: String,
    pub from: Vec<String>,
    /// How a refusal names the holder: `canary reviews-canary (running, step 1 of 4)`.
    pub holder: String,
    /// How to end it: `meshdeck canary abort reviews-canary`.
    pub release: String,
}

fn dir(history: &History) -> PathBuf {
    history.dir().join("leases")
}

/// Hold (or update) a lease.
pub fn hold(history: &History, lease: &Lease) -> Result<(), ApplyError> {
    let d = dir(history);
    crate::config::private_dir(&d).map_err(|e| ApplyError::History(format!("{}: {e}", d.display())))?;
    write_atomic(&d.join(format!("{}.json", lease.name)), &serde_json::to_string_pretty(lease).unwrap_or_default())
}

/// Give the route back (nothing held is no error).
pub fn release(history: &History, name: &str) {
    let _ = std::fs::remove_file(dir(history).join(format!("{name}.json")));
}

/// Every lease held now.
pub fn held(history: &History) -> Vec<Lease> {
    let mut out: Vec<Lease> = std::fs::read_dir(dir(history))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The lease (other than run `mine`) that holds plan `names` or one of `routes`
/// (service, calling clusters), if one does.
pub fn owner(history: &History, names: &[String], routes: &[(String, Vec<String>)], mine: Option<&str>) -> Option<Lease> {
    held(history).into_iter().filter(|l| mine != Some(l.run.as_str())).find(|l| {
        names.contains(&l.name) || routes.iter().any(|(service, from)| *service == l.service && from.iter().any(|f| l.from.contains(f)))
    })
}

/// The refusal a lease gives another writer.
pub fn refusal(lease: &Lease) -> ApplyError {
    ApplyError::History(format!(
        "{} from {} is stepped by {}; one owner per route: {} or wait for it to end (nothing was written)",
        lease.service,
        lease.from.join(","),
        lease.holder,
        lease.release
    ))
}
