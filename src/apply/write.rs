//! Writing a prepared change set, all or nothing: clusters are written in
//! parallel (bounded), each in dependency order; the first failure stops every
//! cluster, and every object already written is restored to what it was.
//! Afterwards each written object is read back and compared (verify).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use std::future::Future;
use std::time::{Duration, Instant};

use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::grant::WriteGrant;
use super::target::{self, normalized};
use super::{ApplyError, ApplyOptions, ChangeKind, ChangeSet, Desired, FIELD_MANAGER, ObjRef, Step};
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
    /// Recorded before the first write and not finished (meshdeck was killed or the
    /// machine went down): some changes may be live. `rollback ID` restores.
    Pending,
    /// Refused before the first write (a cluster did not answer the last check, the
    /// lock was held): nothing was written.
    Refused,
    /// The fleet changed between the diff and the write: nothing was written.
    Stale,
}

impl Outcome {
    /// Nothing was written by this change.
    pub fn wrote_nothing(&self) -> bool {
        matches!(self, Outcome::NoChanges | Outcome::Refused | Outcome::Stale)
    }
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

/// A PUT or POST as `meshdeck`, stored: only with a grant.
fn post_params(_grant: &WriteGrant) -> PostParams {
    PostParams { dry_run: false, field_manager: Some(FIELD_MANAGER.into()) }
}

fn check_grant(grant: &WriteGrant, t: &ObjRef) -> Result<(), String> {
    if grant.covers(&t.cluster) { Ok(()) } else { Err(format!("{t}: not in the confirmed change set")) }
}

/// Every call during a write has a deadline: an API server that accepts a request and
/// never answers must not hold the apply (and its rollback) forever.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

async fn bounded<T>(opts: &ApplyOptions, what: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    let limit = opts.call_timeout.unwrap_or(CALL_TIMEOUT);
    match tokio::time::timeout(limit, what).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {}s (whether it landed is unknown)", limit.as_secs_f32())),
    }
}

/// Perform one step; returns the object now live (None after a delete).
async fn perform(c: &Cluster, step: &Step, force: bool, grant: &WriteGrant) -> Result<Option<Value>, String> {
    let at = target::api(c, &step.target).await?;
    let t = &step.target;
    check_grant(grant, t)?;
    match &step.desired {
        Desired::Apply(obj) => {
            let body = at.body(obj.clone())?;
            let out =
                at.api.patch(&t.name, &write_params(force, grant), &Patch::Apply(&body)).await.map_err(|e| ClusterError::describe(&e))?;
            serde_json::to_value(out).map(Some).map_err(|e| e.to_string())
        }
        // The object is still what the diff saw (`fresh` checked): that is the precondition.
        Desired::Restore(previous) => restore(c, t, Some(previous), step.previous.as_ref(), Send::Write(grant)).await.map_err(String::from),
        Desired::Absent => restore(c, t, None, step.previous.as_ref(), Send::Write(grant)).await.map_err(String::from),
    }
}

/// The object as it was, ready to be written back: its content, labels,
/// annotations, owners and finalizers, and who managed which field (`managedFields`).
/// What the server assigns (uid, resourceVersion, timestamps, status) is left out.
fn as_written(previous: &Value) -> Value {
    let mut out = previous.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in
            ["uid", "resourceVersion", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"]
        {
            meta.remove(k);
        }
    }
    if let Some(o) = out.as_object_mut() {
        o.remove("status");
    }
    out
}

/// Who manages which fields, without the times (a restore sets them anew).
pub fn managers(o: &Value) -> Vec<(String, String, Value)> {
    let mut out: Vec<(String, String, Value)> = o
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| {
            let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
            (s("manager"), s("operation"), m.get("fieldsV1").cloned().unwrap_or_default())
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

/// How a restore is sent: stored (with the grant), or as the server's dry run (the
/// preview a rollback's diff shows is the very request that will be written).
#[derive(Clone, Copy, Debug)]
pub enum Send<'a> {
    DryRun,
    Write(&'a WriteGrant),
}

impl Send<'_> {
    fn post(self) -> PostParams {
        match self {
            Send::DryRun => PostParams { dry_run: true, field_manager: Some(FIELD_MANAGER.into()) },
            Send::Write(grant) => post_params(grant),
        }
    }

    fn delete(self, preconditions: Preconditions) -> DeleteParams {
        DeleteParams { dry_run: matches!(self, Send::DryRun), preconditions: Some(preconditions), ..Default::default() }
    }
}

/// Why a restore did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// Someone else changed the object since meshdeck last saw or wrote it (409): it
    /// is left as they made it.
    Changed(String),
    /// The cluster did not do it (unreachable, 5xx, refused): it may be tried again.
    Failed(String),
}

impl From<RestoreError> for String {
    fn from(e: RestoreError) -> String {
        match e {
            RestoreError::Changed(m) | RestoreError::Failed(m) => m,
        }
    }
}

fn restore_error(e: kube::Error) -> RestoreError {
    match &e {
        kube::Error::Api(s) if s.code == 409 => RestoreError::Changed(format!(
            "changed by another writer since meshdeck last wrote it, so left as it is ({})",
            ClusterError::describe(&e)
        )),
        _ => RestoreError::Failed(ClusterError::describe(&e)),
    }
}

/// Make `t` be `previous` again (None: make it absent), undoing what meshdeck did and
/// nothing else: only while the object is still `seen`, the object meshdeck last saw
/// or wrote there (None: absent). A change by anyone else since is a 409 conflict,
/// and the object is left as they made it.
/// - absent before: delete `seen` (uid and resourceVersion preconditions);
/// - present before, absent now (pruned): create it again from the whole previous object
///   (someone who created it meanwhile keeps theirs: 409 AlreadyExists);
/// - present in both: replace it with the previous content (a PUT on `seen`'s
///   resourceVersion), then hand every field back to the managers that held it (a
///   second PUT with the previous `managedFields`; no value changes, so the server
///   keeps them as given).
pub async fn restore(
    c: &Cluster,
    t: &ObjRef,
    previous: Option<&Value>,
    seen: Option<&Value>,
    send: Send<'_>,
) -> Result<Option<Value>, RestoreError> {
    let at = target::api(c, t).await.map_err(RestoreError::Failed)?;
    let (api, dynamic) = (&at.api, |v: Value| at.body(v).map_err(RestoreError::Failed));
    if let Send::Write(grant) = send {
        check_grant(grant, t).map_err(RestoreError::Failed)?;
    }
    let meta = |o: &Value, k: &str| o.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).map(String::from);
    let json = |o: DynamicObject| serde_json::to_value(o).map_err(|e| RestoreError::Failed(e.to_string()));
    match (previous, seen) {
        (None, None) => Ok(None),
        (None, Some(s)) => {
            let pre = Preconditions { uid: meta(s, "uid"), resource_version: meta(s, "resourceVersion") };
            match api.delete(&t.name, &send.delete(pre)).await {
                Ok(_) => Ok(None),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
                Err(e) => Err(restore_error(e)),
            }
        }
        (Some(prev), None) => {
            let out = api.create(&send.post(), &dynamic(as_written(prev))?).await.map_err(restore_error)?;
            json(out).map(Some)
        }
        (Some(prev), Some(s)) => {
            if normalized(s) == normalized(prev) && managers(s) == managers(prev) {
                return Ok(Some(s.clone()));
            }
            let mut body = as_written(prev);
            body["metadata"]["resourceVersion"] = s.pointer("/metadata/resourceVersion").cloned().unwrap_or_default();
            let owners = body.pointer_mut("/metadata").and_then(Value::as_object_mut).and_then(|m| m.remove("managedFields"));
            let mut now = json(api.replace(&t.name, &send.post(), &dynamic(body.clone())?).await.map_err(restore_error)?)?;
            if let Some(owners) = owners.filter(|o| o.as_array().is_some_and(|a| !a.is_empty()))
                && managers(&now) != managers(prev)
            {
                // A dry run stored nothing: the object is still at `seen`'s version.
                let at_version = match send {
                    Send::DryRun => s.pointer("/metadata/resourceVersion"),
                    Send::Write(_) => now.pointer("/metadata/resourceVersion"),
                };
                body["metadata"]["resourceVersion"] = at_version.cloned().unwrap_or_default();
                body["metadata"]["managedFields"] = owners;
                now = json(api.replace(&t.name, &send.post(), &dynamic(body)?).await.map_err(restore_error)?)?;
            }
            Ok(Some(now))
        }
    }
}

/// A restore is done when live equals what was there before: content and owners.
async fn verify_restored(c: &Cluster, t: &ObjRef, previous: Option<&Value>) -> Result<(), String> {
    let live = target::get(c, t).await?;
    match (&live, previous) {
        (None, None) => Ok(()),
        (Some(l), Some(p)) if normalized(l) != normalized(p) => Err("restored, but the live object differs from before".into()),
        (Some(l), Some(p)) if managers(l) != managers(p) => {
            let names = |o: &Value| managers(o).into_iter().map(|m| format!("{}/{}", m.0, m.1)).collect::<Vec<_>>().join(",");
            Err(format!("restored, but its fields are managed by [{}], not [{}] as before", names(l), names(p)))
        }
        (Some(_), Some(_)) => Ok(()),
        (Some(_), None) => Err("still present after the restore".into()),
        (None, Some(_)) => Err("absent after the restore".into()),
    }
}

/// What meshdeck knows it left in an object it wrote during this apply.
#[derive(Clone, Debug)]
enum Wrote {
    /// The write's answer: the object now (None: deleted).
    Known(Option<Value>),
    /// The write failed or timed out: it may or may not have landed.
    Unknown,
}

/// Undo one of this apply's own writes, as long as nobody else wrote the object since.
/// Failures that may pass (unreachable, 5xx, a deadline) are tried again briefly, each
/// attempt bounded; a change by another writer is left and named at once.
async fn undo_write(c: &Cluster, step: &Step, wrote: &Wrote, grant: &WriteGrant, opts: &ApplyOptions) -> Result<(), String> {
    let previous = step.previous.as_ref();
    let rv = |o: Option<&Value>| o.and_then(|o| o.pointer("/metadata/resourceVersion")).cloned();
    let seen = match wrote {
        Wrote::Known(now) => now.clone(),
        Wrote::Unknown => {
            // Whether it landed decides what there is to undo.
            let live = bounded(opts, target::get(c, &step.target)).await?;
            let ours = match (&live, &step.expected) {
                (None, None) => true,
                (Some(l), Some(e)) => normalized(l) == normalized(e),
                _ => false,
            };
            if rv(live.as_ref()) == rv(previous) {
                return Ok(());
            }
            if !ours {
                return Err("changed by another writer while the apply ran, so left as it is".into());
            }
            live
        }
    };
    let limit = opts.call_timeout.unwrap_or(CALL_TIMEOUT);
    let mut delay = Duration::from_millis(200);
    let mut last = String::new();
    for _ in 0..4 {
        let attempt = tokio::time::timeout(limit, restore(c, &step.target, previous, seen.as_ref(), Send::Write(grant))).await;
        match attempt {
            Ok(Ok(_)) => match bounded(opts, verify_restored(c, &step.target, previous)).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            },
            Ok(Err(RestoreError::Changed(m))) => return Err(m),
            Ok(Err(RestoreError::Failed(m))) => last = m,
            Err(_) => last = format!("no answer within {}s (whether it landed is unknown)", limit.as_secs_f32()),
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
        // An attempt may have landed after its deadline: restored is done.
        if bounded(opts, verify_restored(c, &step.target, previous)).await.is_ok() {
            return Ok(());
        }
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

/// Verify: what is live equals what the dry run promised. Every written object is read at once.
async fn verify(clusters: &[Cluster], written: &[&Step], opts: &ApplyOptions) -> Result<(), String> {
    let targets: Vec<&ObjRef> = written.iter().map(|s| &s.target).collect();
    let lives = target::get_all(clusters, &targets, opts.call_timeout.unwrap_or(CALL_TIMEOUT)).await;
    for (step, live) in written.iter().zip(lives) {
        match (&live?, &step.expected) {
            (None, None) => {}
            (Some(l), Some(e)) if normalized(l) == normalized(e) => {}
            _ => return Err(format!("{}: live object differs from what was applied", step.target)),
        }
    }
    Ok(())
}

/// One cluster's writes: what was written, and how it ended.
type ClusterWrite<'a> = (String, Vec<(&'a Step, Wrote)>, Result<(), String>);

/// Why writing must stop before the next object, if it must.
fn stop_reason(abort: &AtomicBool, opts: &ApplyOptions, deadline: Instant) -> Option<String> {
    if opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)) {
        return Some("stopped: interrupted by the operator".into());
    }
    if abort.load(Ordering::SeqCst) {
        return Some("stopped: another cluster failed".into());
    }
    (Instant::now() >= deadline).then(|| "stopped: the apply's deadline passed".into())
}

async fn write_cluster<'a>(
    clusters: &[Cluster],
    cluster: String,
    steps: Vec<&'a Step>,
    abort: Arc<AtomicBool>,
    opts: &ApplyOptions,
    grant: &WriteGrant,
    deadline: Instant,
) -> ClusterWrite<'a> {
    let mut written = Vec::new();
    let c = match super::cluster(clusters, &cluster) {
        Ok(c) => c,
        Err(e) => return (cluster, written, Err(e.to_string())),
    };
    for step in ordered(&steps) {
        if let Some(why) = stop_reason(&abort, opts, deadline) {
            return (cluster, written, Err(why));
        }
        let result = bounded(opts, perform(c, step, opts.force_conflicts, grant)).await;
        match &result {
            Ok(_) => tracing::info!(target = %step.target, change = step.change.as_str(), "written"),
            Err(e) => tracing::info!(target = %step.target, change = step.change.as_str(), error = %e, "write failed"),
        }
        match result {
            Ok(now) => {
                if let Some(p) = &opts.progress {
                    let _ = p.send(format!(
                        "{}: wrote {}/{}/{}",
                        step.target.cluster, step.target.kind, step.target.namespace, step.target.name
                    ));
                }
                written.push((step, Wrote::Known(now)))
            }
            Err(e) => {
                abort.store(true, Ordering::SeqCst);
                // A failed write may still have landed: it is looked at when restoring.
                written.push((step, Wrote::Unknown));
                return (cluster, written, Err(format!("{}: {e}", step.target)));
            }
        }
    }
    let steps: Vec<&Step> = written.iter().map(|(s, _)| *s).collect();
    if let Err(e) = verify(clusters, &steps, opts).await {
        abort.store(true, Ordering::SeqCst);
        return (cluster, written, Err(e));
    }
    (cluster, written, Ok(()))
}

/// The whole write phase's deadline unless the options say otherwise.
pub const APPLY_DEADLINE: Duration = Duration::from_secs(300);

/// Nothing may have changed since the diff: every object is as the diff saw it
/// (same resourceVersion, or still absent). Checked on every cluster before the
/// first write; a change or a cluster that cannot answer stops the apply with
/// nothing written.
async fn fresh(clusters: &[Cluster], set: &ChangeSet, opts: &ApplyOptions) -> Result<(), ApplyError> {
    let mut changed = Vec::new();
    let pending: Vec<&Step> = set.pending().collect();
    let targets: Vec<&ObjRef> = pending.iter().map(|s| &s.target).collect();
    let lives = target::get_all(clusters, &targets, opts.call_timeout.unwrap_or(CALL_TIMEOUT)).await;
    for (step, live) in pending.into_iter().zip(lives) {
        let live =
            live.map_err(|e| ApplyError::Cluster { cluster: step.target.cluster.clone(), message: format!("{e} (nothing was written)") })?;
        let seen = target::resource_version(step.previous.as_ref());
        if !target::still_as_left(live.as_ref(), seen.as_deref(), step.previous.as_ref()) {
            changed.push(format!("{}: {}", step.target, if live.is_some() { "changed" } else { "deleted" }));
        }
    }
    if changed.is_empty() { Ok(()) } else { Err(ApplyError::Stale(changed)) }
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
    fresh(clusters, set, opts).await?;
    let deadline = Instant::now() + opts.deadline.unwrap_or(APPLY_DEADLINE);
    let abort = Arc::new(AtomicBool::new(false));
    let futures: Vec<_> = by_cluster
        .into_iter()
        .map(|(cluster, steps)| write_cluster(clusters, cluster, steps, abort.clone(), opts, grant, deadline))
        .collect();
    let results: Vec<ClusterWrite> = futures::stream::iter(futures).buffer_unordered(opts.concurrency.max(1)).collect().await;
    // An interrupt that came while the last writes were verified still undoes them:
    // until `execute` returns, the change is not done.
    let interrupted = opts.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst));
    let failed = interrupted || results.iter().any(|(_, _, r)| r.is_err());
    let mut report = ApplyReport { outcome: Outcome::Applied, clusters: BTreeMap::new() };
    for (cluster, written, result) in &results {
        let entry = report.clusters.entry(cluster.clone()).or_default();
        entry.written = written.iter().map(|(s, _)| s.target.to_string()).collect();
        if let Err(e) = result {
            entry.errors.push(e.clone());
        }
    }
    if !failed {
        tracing::info!(clusters = ?set.clusters(), "applied and verified");
        return Ok(report);
    }
    tracing::info!("a write failed or was stopped: restoring every written object");
    report.outcome = Outcome::RolledBack;
    // Every cluster at once, each in reverse write order: a black-holed cluster's
    // deadlines never keep a healthy one half-applied.
    let undos: Vec<_> = results
        .iter()
        .map(|(cluster, written, _)| async move {
            let mut restored = Vec::new();
            let mut errors = Vec::new();
            if let Ok(c) = super::cluster(clusters, cluster) {
                for (step, wrote) in written.iter().rev() {
                    match undo_write(c, step, wrote, grant, opts).await {
                        Ok(()) => {
                            tracing::info!(target = %step.target, "restored");
                            restored.push(step.target.to_string());
                        }
                        Err(e) => {
                            tracing::info!(target = %step.target, error = %e, "not restored");
                            errors.push(format!("restoring {}: {e}", step.target));
                        }
                    }
                }
            }
            (cluster.clone(), restored, errors)
        })
        .collect();
    for (cluster, restored, errors) in futures::future::join_all(undos).await {
        if !errors.is_empty() {
            report.outcome = Outcome::RollbackIncomplete;
        }
        let entry = report.clusters.entry(cluster).or_default();
        entry.restored = restored;
        entry.errors.extend(errors);
    }
    Ok(report)
}
