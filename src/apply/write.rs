//! Writing a prepared change set, all or nothing: clusters are written in
//! parallel (bounded), each in dependency order; the first failure stops every
//! cluster, and every object already written is restored to what it was.
//! Afterwards each written object is read back and compared (verify).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::dry_run::restore_body;
use super::grant::WriteGrant;
use super::target::{self, normalized};
use super::{ApplyError, ApplyOptions, ChangeKind, ChangeSet, Desired, FIELD_MANAGER, ObjRef, Step, client};
use crate::registry::Cluster;
use crate::registry::ClusterError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Every change written and verified.
    Applied,
    /// Nothing needed changing.
    NoChanges,
    /// A write failed; every written object was restored.
    RolledBack,
    /// A write failed and restoring also failed somewhere: see the per-cluster report.
    RollbackIncomplete,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterReport {
    pub written: Vec<String>,
    pub restored: Vec<String>,
    pub errors: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyReport {
    pub outcome: Outcome,
    pub clusters: BTreeMap<String, ClusterReport>,
}

impl ApplyReport {
    pub fn describe(&self) -> String {
        let mut out = format!("outcome: {:?}\n", self.outcome);
        for (c, r) in &self.clusters {
            out.push_str(&format!("  {c}: {} written, {} restored", r.written.len(), r.restored.len()));
            for e in &r.errors {
                out.push_str(&format!("; error: {e}"));
            }
            out.push('\n');
        }
        out
    }
}

/// Server-side apply as `meshdeck`, stored: only with a grant.
fn write_params(force: bool, _grant: &WriteGrant) -> PatchParams {
    let mut p = PatchParams::apply(FIELD_MANAGER);
    p.force = force;
    p
}

fn check_grant(grant: &WriteGrant, t: &ObjRef) -> Result<(), String> {
    if grant.covers(&t.cluster) { Ok(()) } else { Err(format!("{t}: not in the confirmed change set")) }
}

/// Perform one step; returns the object now live (None after a delete).
async fn perform(client: &kube::Client, step: &Step, force: bool, grant: &WriteGrant) -> Result<Option<Value>, String> {
    let api = target::api(client, &step.target)?;
    let t = &step.target;
    check_grant(grant, t)?;
    match &step.desired {
        Desired::Apply(obj) => {
            let obj: DynamicObject = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
            let out = api.patch(&t.name, &write_params(force, grant), &Patch::Apply(&obj)).await.map_err(|e| ClusterError::describe(&e))?;
            serde_json::to_value(out).map(Some).map_err(|e| e.to_string())
        }
        Desired::Restore(previous) => restore(client, t, Some(previous), grant).await,
        Desired::Absent => restore(client, t, None, grant).await,
    }
}

/// Make `t` be `previous` again (None: make it absent). Reads the live object first.
pub async fn restore(client: &kube::Client, t: &ObjRef, previous: Option<&Value>, grant: &WriteGrant) -> Result<Option<Value>, String> {
    let api = target::api(client, t)?;
    check_grant(grant, t)?;
    let live = target::get(client, t).await?;
    match (previous, live) {
        (None, None) => Ok(None),
        (None, Some(_)) => {
            api.delete(&t.name, &DeleteParams::default()).await.map_err(|e| ClusterError::describe(&e))?;
            Ok(None)
        }
        (Some(prev), live) => {
            if live.as_ref().is_some_and(|l| normalized(l) == normalized(prev)) {
                return Ok(live);
            }
            let body = restore_body(prev)?;
            let out = api.patch(&t.name, &write_params(true, grant), &Patch::Apply(&body)).await.map_err(|e| ClusterError::describe(&e))?;
            serde_json::to_value(out).map(Some).map_err(|e| e.to_string())
        }
    }
}

/// Rollback writes are retried briefly: a cluster that failed a write may answer again.
async fn restore_with_retries(
    client: &kube::Client,
    t: &ObjRef,
    previous: Option<&Value>,
    grant: &WriteGrant,
) -> Result<Option<Value>, String> {
    let mut delay = std::time::Duration::from_millis(200);
    let mut last = String::new();
    for _ in 0..4 {
        match restore(client, t, previous, grant).await {
            Ok(v) => return Ok(v),
            Err(e) => last = e,
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    Err(last)
}

/// Steps of one cluster in write order: creates and updates by dependency, deletes last, reversed.
fn ordered<'a>(steps: &[&'a Step]) -> Vec<&'a Step> {
    let mut upserts: Vec<&Step> = steps.iter().copied().filter(|s| s.change != ChangeKind::Delete).collect();
    upserts.sort_by_key(|s| (s.target.write_order(), s.target.clone()));
    let mut deletes: Vec<&Step> = steps.iter().copied().filter(|s| s.change == ChangeKind::Delete).collect();
    deletes.sort_by_key(|s| (std::cmp::Reverse(s.target.write_order()), s.target.clone()));
    upserts.into_iter().chain(deletes).collect()
}

/// Verify: what is live equals what the dry run promised.
async fn verify(client: &kube::Client, step: &Step) -> Result<(), String> {
    let live = target::get(client, &step.target).await?;
    match (&live, &step.expected) {
        (None, None) => Ok(()),
        (Some(l), Some(e)) if normalized(l) == normalized(e) => Ok(()),
        _ => Err(format!("{}: live object differs from what was applied", step.target)),
    }
}

/// One cluster's writes: what was written, and how it ended.
type ClusterWrite<'a> = (String, Vec<&'a Step>, Result<(), String>);

async fn write_cluster<'a>(
    clusters: &[Cluster],
    cluster: String,
    steps: Vec<&'a Step>,
    abort: Arc<AtomicBool>,
    opts: &ApplyOptions,
    grant: &WriteGrant,
) -> ClusterWrite<'a> {
    let mut written = Vec::new();
    let client = match client(clusters, &cluster) {
        Ok(c) => c,
        Err(e) => return (cluster, written, Err(e.to_string())),
    };
    for step in ordered(&steps) {
        if abort.load(Ordering::SeqCst) {
            return (cluster, written, Err("stopped: another cluster failed".into()));
        }
        match perform(&client, step, opts.force_conflicts, grant).await {
            Ok(_) => {
                if let Some(p) = &opts.progress {
                    let _ = p.send(format!(
                        "{}: wrote {}/{}/{}",
                        step.target.cluster, step.target.kind, step.target.namespace, step.target.name
                    ));
                }
                written.push(step)
            }
            Err(e) => {
                abort.store(true, Ordering::SeqCst);
                // A failed write may still have landed: restore it too.
                written.push(step);
                return (cluster, written, Err(format!("{}: {e}", step.target)));
            }
        }
    }
    for step in &written {
        if let Err(e) = verify(&client, step).await {
            abort.store(true, Ordering::SeqCst);
            return (cluster, written, Err(e));
        }
    }
    (cluster, written, Ok(()))
}

/// Write a prepared change set everywhere or nowhere. The grant is the
/// operator's confirmation of this set (see `grant`).
pub async fn execute(clusters: &[Cluster], set: &ChangeSet, opts: &ApplyOptions, grant: &WriteGrant) -> Result<ApplyReport, ApplyError> {
    if set.is_noop() {
        return Ok(ApplyReport { outcome: Outcome::NoChanges, clusters: BTreeMap::new() });
    }
    let mut by_cluster: BTreeMap<String, Vec<&Step>> = BTreeMap::new();
    for s in set.pending() {
        by_cluster.entry(s.target.cluster.clone()).or_default().push(s);
    }
    tracing::info!(confirmation = ?grant.confirmation(), clusters = ?set.clusters(), "writing a confirmed change set");
    let abort = Arc::new(AtomicBool::new(false));
    let futures: Vec<_> =
        by_cluster.into_iter().map(|(cluster, steps)| write_cluster(clusters, cluster, steps, abort.clone(), opts, grant)).collect();
    let results: Vec<ClusterWrite> = futures::stream::iter(futures).buffer_unordered(opts.concurrency.max(1)).collect().await;
    let failed = results.iter().any(|(_, _, r)| r.is_err());
    let mut report = ApplyReport { outcome: Outcome::Applied, clusters: BTreeMap::new() };
    for (cluster, written, result) in &results {
        let entry = report.clusters.entry(cluster.clone()).or_default();
        entry.written = written.iter().map(|s| s.target.to_string()).collect();
        if let Err(e) = result {
            entry.errors.push(e.clone());
        }
    }
    if !failed {
        return Ok(report);
    }
    report.outcome = Outcome::RolledBack;
    for (cluster, written, _) in &results {
        let entry = report.clusters.entry(cluster.clone()).or_default();
        let Ok(client) = client(clusters, cluster) else { continue };
        for step in written.iter().rev() {
            match restore_with_retries(&client, &step.target, step.previous.as_ref(), grant).await {
                Ok(_) => entry.restored.push(step.target.to_string()),
                Err(e) => {
                    report.outcome = Outcome::RollbackIncomplete;
                    entry.errors.push(format!("restoring {}: {e}", step.target));
                }
            }
        }
    }
    Ok(report)
}
