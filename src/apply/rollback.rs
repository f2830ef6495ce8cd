//! Rolling back a recorded apply, reasoning about the fleet: only on the clusters
//! it was recorded on; to the plan's whole before-state (every object it owned,
//! changed or not, so no route is left pointing at a host nothing defines); and
//! only if nothing changed since it, or else naming the later applies (or the
//! objects changed by hand) and refusing unless forced.

use std::collections::BTreeMap;

use serde_json::Value;

use super::history::{ClusterIdentity, HistoryRecord};
use super::{ApplyError, ChangeSet, Desired, ObjRef, target};
use crate::registry::Cluster;

/// What each named cluster says it is now.
pub async fn identities(clusters: &[Cluster], names: Vec<String>) -> BTreeMap<String, ClusterIdentity> {
    let mut out = BTreeMap::new();
    for name in names {
        let Some(c) = clusters.iter().find(|c| c.name == name) else { continue };
        let uid = match &c.client {
            Ok(client) => crate::inventory::watch::cluster_uid(client).await.ok(),
            Err(_) => None,
        };
        out.insert(name, ClusterIdentity { server: c.context.server.clone(), uid });
    }
    out
}

use target::resource_version as rv;

/// What every object of a change set is now (resourceVersion, None: absent); objects
/// that cannot be read are left out.
pub async fn after_state(clusters: &[Cluster], set: &ChangeSet) -> BTreeMap<String, Option<String>> {
    let targets: Vec<&ObjRef> = set.steps.iter().map(|s| &s.target).collect();
    let lives = target::get_all(clusters, &targets, super::write::CALL_TIMEOUT).await;
    let mut out = BTreeMap::new();
    for (t, live) in targets.into_iter().zip(lives) {
        if let Ok(live) = live {
            out.insert(t.to_string(), rv(live.as_ref()));
        }
    }
    out
}

/// The record must be rolled back on the clusters it was made on.
pub async fn check_fleet(clusters: &[Cluster], record: &HistoryRecord) -> Result<(), ApplyError> {
    if record.fleet.is_empty() {
        return Ok(());
    }
    let now = identities(clusters, record.fleet.keys().cloned().collect()).await;
    let mut wrong = Vec::new();
    for (name, then) in &record.fleet {
        match now.get(name) {
            None => wrong.push(format!("{name}: not registered now (recorded on {})", then.describe())),
            Some(id) if !id.same_as(then) => {
                wrong.push(format!("{name}: recorded on {}, this {name} is {}", then.describe(), id.describe()))
            }
            Some(_) => {}
        }
    }
    if wrong.is_empty() { Ok(()) } else { Err(ApplyError::OtherFleet { id: record.id.clone(), why: wrong }) }
}

/// Objects of the record that are no longer as it left them, each with who changed
/// it since (later history records) or that it changed outside meshdeck. A record left
/// `Pending` (interrupted) has no after-state: each object is compared with what it
/// could have written, and any later change that wrote the object counts. Objects on
/// the `dark` clusters are not read (the caller decides what they mean).
pub async fn changed_since(
    clusters: &[Cluster],
    record: &HistoryRecord,
    history: &[HistoryRecord],
    dark: &std::collections::BTreeSet<String>,
) -> Result<Vec<String>, ApplyError> {
    let interrupted = record.report.outcome == super::write::Outcome::Pending;
    if record.after.is_empty() && !interrupted {
        // Recorded before meshdeck kept after-states: nothing to compare.
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for s in &record.changes.steps {
        if dark.contains(&s.target.cluster) || (interrupted && s.change == super::ChangeKind::Unchanged) {
            continue;
        }
        let later: Vec<String> = history
            .iter()
            .filter(|r| r.id != record.id && r.when() > record.when() && !r.report.outcome.wrote_nothing())
            .filter(|r| r.changes.pending().any(|x| x.target == s.target))
            .map(|r| format!("{} {} ({})", r.action, r.id, r.plans.join(",")))
            .collect();
        let c = super::cluster(clusters, &s.target.cluster)?;
        let live = target::get(c, &s.target).await.map_err(|e| ApplyError::Cluster { cluster: s.target.cluster.clone(), message: e })?;
        let as_left = if interrupted {
            // Never written, or written as this record meant and by nobody since.
            rv(live.as_ref()) == rv(s.previous.as_ref())
                || (later.is_empty() && live.as_ref().map(target::normalized) == s.expected.as_ref().map(target::normalized))
        } else {
            let Some(left) = record.after.get(&s.target.to_string()) else { continue };
            target::still_as_left(live.as_ref(), left.as_deref(), s.expected.as_ref())
        };
        if as_left {
            continue;
        }
        let by = if later.is_empty() { "changed outside meshdeck".to_string() } else { format!("changed since by {}", later.join(", ")) };
        out.push(format!("{}: {by}", s.target));
    }
    Ok(out)
}

/// The desired state that undoes a record: the plan's whole before-state. What
/// existed is restored (with its owners), what the plan created is removed.
pub fn desired(record: &HistoryRecord) -> Vec<(ObjRef, Desired)> {
    record
        .changes
        .steps
        .iter()
        // Kept copies stay: a rollback of this rollback restores from them. What it
        // removed for an earlier change that could not stays removed.
        .filter(|s| !super::secret::is_kept_copy(&s.target) && !record.swept.contains(&s.target))
        .map(|s| {
            let want = match &s.previous {
                Some(prev) => Desired::Restore(prev.clone()),
                None => Desired::Absent,
            };
            (s.target.clone(), want)
        })
        .collect()
}

/// Everything a rollback checks before it is prepared: the record, on this fleet, not
/// rolled back already, with nothing changed since (unless `force`). Returns the record
/// and the desired state. Objects on the `dark` clusters are not read.
pub async fn plan(
    clusters: &[Cluster],
    records: &[HistoryRecord],
    id: &str,
    force: bool,
    dark: &std::collections::BTreeSet<String>,
) -> Result<(HistoryRecord, Vec<(ObjRef, Desired)>), ApplyError> {
    let record = records
        .iter()
        .find(|r| r.id == id)
        .cloned()
        .ok_or_else(|| ApplyError::History(format!("no history record {id:?} (see `meshdeck history`)")))?;
    if let Some(done) = records.iter().find(|r| r.rollback_of.as_deref() == Some(id) && r.finished_well() && !r.changes.is_noop())
        && !force
    {
        return Err(ApplyError::AlreadyRolledBack { id: id.to_string(), by: done.id.clone() });
    }
    check_fleet(clusters, &record).await?;
    let mut want = desired(&record);
    if !force {
        let mut changed = changed_since(clusters, &record, records, dark).await?;
        let removed: Vec<&ObjRef> = want.iter().filter(|(_, d)| matches!(d, Desired::Absent)).map(|(t, _)| t).collect();
        changed.extend(waypoints_in_use(clusters, &removed, &want, dark).await?.into_iter().map(|(_, why)| why));
        if !changed.is_empty() {
            return Err(ApplyError::ChangedSince { id: id.to_string(), why: changed });
        }
    }
    for (t, d) in want.iter_mut() {
        if let Desired::Restore(prev) = d {
            let c = super::cluster(clusters, &t.cluster)?;
            *prev =
                super::secret::unredact(c, t, prev).await.map_err(|message| ApplyError::Cluster { cluster: t.cluster.clone(), message })?;
        }
    }
    Ok((record, want))
}

/// Each waypoint among `removed` that a service or namespace still names
/// (`istio.io/use-waypoint`), other than those the change `want` itself unlabels:
/// another plan, or someone by hand, came to route through it since
/// (`render::gateway_api`). With why, one line each.
pub(super) async fn waypoints_in_use(
    clusters: &[Cluster],
    removed: &[&ObjRef],
    want: &[(ObjRef, Desired)],
    dark: &std::collections::BTreeSet<String>,
) -> Result<Vec<(ObjRef, String)>, ApplyError> {
    use crate::inventory::facts::USE_WAYPOINT_LABEL;
    let label = |o: &Value| {
        o.pointer(&format!("/metadata/labels/{}", USE_WAYPOINT_LABEL.replace('/', "~1"))).and_then(Value::as_str).map(String::from)
    };
    let mut out = Vec::new();
    for t in removed.iter().copied() {
        if t.kind != target::WAYPOINT_KIND || dark.contains(&t.cluster) {
            continue;
        }
        let c = super::cluster(clusters, &t.cluster)?;
        let failed = |e: String| ApplyError::Cluster { cluster: t.cluster.clone(), message: format!("reading who uses {t}: {e}") };
        let client = c.client.clone().map_err(&failed)?;
        let selector = format!("{USE_WAYPOINT_LABEL}={}", t.name);
        let services: kube::Api<k8s_openapi::api::core::v1::Service> = kube::Api::namespaced(client.clone(), &t.namespace);
        let listed = services
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .map_err(|e| failed(crate::registry::ClusterError::describe(&e)))?;
        for svc in listed.items {
            let name = svc.metadata.name.clone().unwrap_or_default();
            // Unlabelled by this very rollback: restored to a before-state without the label.
            let unlabelled = want.iter().any(|(o, d)| {
                o.cluster == t.cluster
                    && o.kind == "Service"
                    && o.namespace == t.namespace
                    && o.name == name
                    && matches!(d, Desired::Restore(prev) if label(prev).as_deref() != Some(t.name.as_str()))
            });
            if !unlabelled {
                out.push((t.clone(), format!("{t}: still the waypoint of Service {}/{name} ({selector})", t.namespace)));
            }
        }
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
        if let Some(ns) = namespaces.get_opt(&t.namespace).await.map_err(|e| failed(crate::registry::ClusterError::describe(&e)))?
            && ns.metadata.labels.as_ref().and_then(|l| l.get(USE_WAYPOINT_LABEL)) == Some(&t.name)
        {
            out.push((t.clone(), format!("{t}: still the waypoint of namespace {} ({selector})", t.namespace)));
        }
    }
    Ok(out)
}
