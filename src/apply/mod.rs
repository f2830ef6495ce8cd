//! The apply engine: what a change will do is established before anything is
//! written (RBAC preflight, server dry-run, diff against live), then it is
//! written everywhere or nowhere (server-side apply as `meshdeck`, bounded
//! concurrency, verify, and on any failure every written cluster is restored),
//! and recorded. Plans and rollbacks go through the same pipeline.

pub mod diff;
pub mod dry_run;
pub mod grant;
pub mod history;
pub mod lease;
pub mod pipeline;
pub mod preflight;
pub mod rollback;
pub mod secret;
pub mod signals;
pub mod target;
pub mod write;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use grant::{Confirmation, WriteGrant};
pub use pipeline::{Intent, Pipeline, Prepared, Written};
pub use target::ObjRef;

use crate::registry::Cluster;

pub const FIELD_MANAGER: &str = "meshdeck";

/// What should be true of one object afterwards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "op", content = "object")]
pub enum Desired {
    /// Server-side apply of a rendered object.
    Apply(Value),
    /// Make the object exactly this again (rollback of a change).
    Restore(Value),
    /// The object must not exist (prune, or rollback of a create).
    Absent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    Create,
    Update,
    Unchanged,
    Delete,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Unchanged => "unchanged",
            ChangeKind::Delete => "delete",
        }
    }
}

/// One object's planned change, with the state before it (for rollback).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub target: ObjRef,
    pub desired: Desired,
    pub change: ChangeKind,
    /// The live object before the change, if any.
    pub previous: Option<Value>,
    /// What the server said the object will be (dry run), if it will exist.
    pub expected: Option<Value>,
    pub diff: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeSet {
    pub steps: Vec<Step>,
}

impl ChangeSet {
    pub fn pending(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| s.change != ChangeKind::Unchanged)
    }

    pub fn is_noop(&self) -> bool {
        self.pending().next().is_none()
    }

    pub fn clusters(&self) -> Vec<String> {
        let mut cs: Vec<String> = self.pending().map(|s| s.target.cluster.clone()).collect();
        cs.sort();
        cs.dedup();
        cs
    }

    /// Every cluster a step names (changed or not).
    pub fn clusters_touched(&self) -> Vec<String> {
        let mut cs: Vec<String> = self.steps.iter().map(|s| s.target.cluster.clone()).collect();
        cs.sort();
        cs.dedup();
        cs
    }

    /// `create 2, update 1, delete 1, unchanged 3`.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for s in &self.steps {
            *counts.entry(s.change.as_str()).or_default() += 1;
        }
        ["create", "update", "delete", "unchanged"]
            .iter()
            .filter_map(|k| counts.get(k).map(|n| format!("{k} {n}")))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The diff as text: one header per object, then its unified diff.
    pub fn render_diff(&self) -> String {
        let mut out = String::new();
        for s in &self.steps {
            out.push_str(&format!("{} {} {}\n", marker(s.change), s.target, s.change.as_str()));
            if secret::is_kept_copy(&s.target) {
                // Its content is the before or after of the Secret beside it, diffed there.
                out.push_str("  (a copy kept beside cacerts, so a rollback can restore it)\n");
            } else if !s.diff.is_empty() {
                out.push_str(&s.diff);
            }
        }
        out
    }
}

fn marker(c: ChangeKind) -> &'static str {
    match c {
        ChangeKind::Create => "+",
        ChangeKind::Update => "~",
        ChangeKind::Delete => "-",
        ChangeKind::Unchanged => "=",
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("read-only: refusing to write to {0} ({1})")]
    ReadOnly(String, String),
    #[error("{0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error("missing permissions (nothing was written):\n  {}", .0.join("\n  "))]
    Forbidden(Vec<String>),
    #[error("the server dry run refused the change (nothing was written):\n  {}", .0.join("\n  "))]
    DryRun(Vec<String>),
    #[error("{cluster}: {message}")]
    Cluster { cluster: String, message: String },
    #[error("{id} was recorded on other clusters than these (nothing was written):\n  {}", .why.join("\n  "))]
    OtherFleet { id: String, why: Vec<String> },
    #[error("the fleet changed since {id} (nothing was written; --force restores its before-state anyway):\n  {}", .why.join("\n  "))]
    ChangedSince { id: String, why: Vec<String> },
    #[error("{id} was already rolled back by {by} (nothing was written; --force restores its before-state again)")]
    AlreadyRolledBack { id: String, by: String },
    #[error("two plans, one name (nothing was written): {0}")]
    PlanClash(String),
    #[error("the fleet changed since the diff (nothing was written); diff again:\n  {}", .0.join("\n  "))]
    Stale(Vec<String>),
    #[error("{0}")]
    History(String),
}

/// Options of one apply.
#[derive(Clone, Debug, Default)]
pub struct ApplyOptions {
    pub force_conflicts: bool,
    /// Clusters written at once.
    pub concurrency: usize,
    /// Where per-cluster progress lines go while writing (the cockpit shows them).
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<String>>,
    /// Set to stop before the next write and restore what was written (Ctrl-C).
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Each call's deadline (default `write::CALL_TIMEOUT`).
    pub call_timeout: Option<std::time::Duration>,
    /// The write phase's deadline (default `write::APPLY_DEADLINE`).
    pub deadline: Option<std::time::Duration>,
}

pub fn cluster<'a>(clusters: &'a [Cluster], name: &str) -> Result<&'a Cluster, ApplyError> {
    clusters
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| ApplyError::Cluster { cluster: name.into(), message: "not a registered cluster".into() })
}

pub fn client(clusters: &[Cluster], name: &str) -> Result<kube::Client, ApplyError> {
    cluster(clusters, name)?.client.clone().map_err(|e| ApplyError::Cluster { cluster: name.into(), message: e })
}

/// One cluster's planned steps, and what its dry run refused.
type ClusterExamination = (Vec<Step>, Vec<String>);

async fn examine_cluster(
    clusters: &[Cluster],
    items: Vec<(ObjRef, Desired)>,
    opts: &ApplyOptions,
) -> Result<ClusterExamination, ApplyError> {
    use futures::StreamExt;
    let Some(first) = items.first() else { return Ok((Vec::new(), Vec::new())) };
    let c = cluster(clusters, &first.0.cluster)?;
    // Round trips, not calls, are what a far cluster costs: discovery (usually done
    // already, by the prune scope's lists), the access reviews, then every object's
    // live read beside its dry run.
    let served = target::served(c).await.map_err(|message| ApplyError::Cluster { cluster: c.name.clone(), message })?;
    preflight::check(clusters, &items, served.in_flight()).await?;
    let examined: Vec<_> = items
        .into_iter()
        .map(|(target, want)| async move {
            let (previous, expected) = tokio::join!(target::get(c, &target), dry_run::simulate(c, &target, &want, opts.force_conflicts));
            (target, want, previous, expected)
        })
        .collect();
    let examined = futures::stream::iter(examined).buffered(served.in_flight()).collect::<Vec<_>>().await;
    let mut steps = Vec::new();
    let mut refused = Vec::new();
    for (target, want, previous, expected) in examined {
        let previous = previous.map_err(|e| ApplyError::Cluster { cluster: target.cluster.clone(), message: e })?;
        match expected {
            Ok(expected) => {
                let change = diff::classify(previous.as_ref(), expected.as_ref());
                let diff = diff::object_diff(previous.as_ref(), expected.as_ref());
                steps.push(Step { target, desired: want, change, previous, expected, diff });
            }
            Err(message) => refused.push(format!("{target}: {message}")),
        }
    }
    Ok((steps, refused))
}

/// Establish a change set: preflight, live state, dry run, diff. Nothing is written.
/// Clusters are examined in parallel (bounded); problems from all of them are reported.
pub async fn prepare(clusters: &[Cluster], desired: Vec<(ObjRef, Desired)>, opts: &ApplyOptions) -> Result<ChangeSet, ApplyError> {
    use futures::StreamExt;
    let mut by_cluster: BTreeMap<String, Vec<(ObjRef, Desired)>> = BTreeMap::new();
    for (t, d) in desired {
        by_cluster.entry(t.cluster.clone()).or_default().push((t, d));
    }
    let futures: Vec<_> = by_cluster.into_values().map(|items| examine_cluster(clusters, items, opts)).collect();
    let results: Vec<Result<ClusterExamination, ApplyError>> =
        futures::stream::iter(futures).buffer_unordered(opts.concurrency.max(1)).collect().await;
    let (mut steps, mut refused, mut forbidden) = (Vec::new(), Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok((s, f)) => {
                steps.extend(s);
                refused.extend(f);
            }
            Err(ApplyError::Forbidden(missing)) => forbidden.extend(missing),
            Err(other) => return Err(other),
        }
    }
    if !forbidden.is_empty() {
        forbidden.sort();
        return Err(ApplyError::Forbidden(forbidden));
    }
    if !refused.is_empty() {
        refused.sort();
        return Err(ApplyError::DryRun(refused));
    }
    steps.sort_by(|a, b| {
        (a.target.cluster.as_str(), a.target.write_order(), &a.target).cmp(&(b.target.cluster.as_str(), b.target.write_order(), &b.target))
    });
    Ok(ChangeSet { steps })
}

/// Where a plan's objects may be: the clusters and namespaces it writes to now,
/// and those its earlier applies wrote to (from history).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneScope {
    pub clusters: std::collections::BTreeSet<String>,
    pub namespaces: std::collections::BTreeSet<String>,
    /// Other plans this one replaces (`--replace`): all their objects are pruned in the
    /// same change set, looked for on every registered cluster.
    pub replacing: Vec<String>,
}

impl PruneScope {
    /// Every object a change set touched (or left unchanged) was the plan's.
    pub fn of_changes<'a>(sets: impl IntoIterator<Item = &'a ChangeSet>) -> Self {
        let mut scope = PruneScope::default();
        for s in sets.into_iter().flat_map(|c| c.steps.iter()) {
            scope.clusters.insert(s.target.cluster.clone());
            scope.namespaces.insert(s.target.namespace.clone());
        }
        scope
    }
}

/// The desired state for a plan: every rendered object applied, and every object
/// labelled as one of the plan's documents that the render no longer produces pruned.
/// Objects of other plans, or not managed by meshdeck, are never touched. Labelled
/// objects are looked for once per cluster, in the clusters and namespaces the
/// plan writes to now or wrote to before (`before`), not across the whole fleet.
pub async fn desired_for_plan(
    clusters: &[Cluster],
    plan: &crate::plan::Plan,
    rendered: &crate::render::RenderedObjects,
    before: &PruneScope,
) -> Result<Vec<(ObjRef, Desired)>, ApplyError> {
    let mut out: Vec<(ObjRef, Desired)> = rendered.iter().map(|(c, o)| (ObjRef::of(c, o), Desired::Apply(o.clone()))).collect();
    let mut names = plan.names();
    names.extend(before.replacing.iter().cloned());
    if names.is_empty() {
        return Ok(out);
    }
    let mut scope = before.clone();
    if !before.replacing.is_empty() {
        scope.clusters.extend(clusters.iter().map(|c| c.name.clone()));
    }
    for (target, _) in &out {
        scope.clusters.insert(target.cluster.clone());
        scope.namespaces.insert(target.namespace.clone());
    }
    let selector = format!("{}=meshdeck,{} in ({})", crate::render::MANAGED_BY, crate::render::PLAN_LABEL, names.join(","));
    // Every list at once (bounded), each at the version the cluster serves.
    let mut lists = Vec::new();
    let mut width = 0;
    // Discovery first, every cluster at once: it says each kind's version and how far the cluster is.
    let in_scope: Vec<&Cluster> = clusters.iter().filter(|c| scope.clusters.contains(&c.name)).collect();
    let discovered = futures::future::join_all(in_scope.iter().map(|c| target::served(c))).await;
    for (c, served) in in_scope.into_iter().zip(discovered) {
        let served = served.map_err(|message| ApplyError::Cluster { cluster: c.name.clone(), message })?;
        width += served.in_flight();
        for (_, kind, _) in target::rendered_kinds() {
            for ns in &scope.namespaces {
                lists.push(list_labelled(c, kind, ns, &selector));
            }
        }
    }
    let lists = {
        use futures::StreamExt;
        futures::stream::iter(lists).buffered(width.max(1)).collect::<Vec<_>>().await
    };
    for listed in lists {
        let (c, kind, items) = listed?;
        for o in items {
            let labels = o.metadata.labels.clone().unwrap_or_default();
            let plan_name = labels.get(crate::render::PLAN_LABEL).cloned().unwrap_or_default();
            // Labelled before plan kinds were: the Istio kind says which plan kind rendered it.
            let their_kind =
                labels.get(crate::render::PLAN_KIND_LABEL).cloned().unwrap_or_else(|| crate::render::plan_kind_of(kind).to_string());
            let replaced = before.replacing.contains(&plan_name);
            if !replaced && plan.kind_of(&plan_name) != Some(their_kind.as_str()) {
                return Err(ApplyError::PlanClash(format!(
                    "{}: {kind}/{}/{} belongs to the {their_kind} {plan_name}; this plan's {plan_name} is a {}: give it another name",
                    c.name,
                    o.metadata.namespace.clone().unwrap_or_default(),
                    o.metadata.name.clone().unwrap_or_default(),
                    plan.kind_of(&plan_name).unwrap_or("?")
                )));
            }
            let mut v = serde_json::to_value(&o).unwrap_or_default();
            v["kind"] = serde_json::json!(kind);
            let r = ObjRef::of(&c.name, &v);
            if !out.iter().any(|(t, _)| *t == r) {
                out.push((r, Desired::Absent));
            }
        }
    }
    Ok(out)
}

/// One kind's objects in one namespace carrying the plan selector; none where the
/// cluster does not serve the kind (a cluster without Istio has nothing of ours).
async fn list_labelled<'a>(
    c: &'a Cluster,
    kind: &'static str,
    ns: &str,
    selector: &str,
) -> Result<(&'a Cluster, &'static str, Vec<kube::api::DynamicObject>), ApplyError> {
    let at = target::api(c, &ObjRef { cluster: c.name.clone(), kind: kind.into(), namespace: ns.into(), name: String::new() })
        .await
        .map_err(|message| ApplyError::Cluster { cluster: c.name.clone(), message })?;
    match at.api.list(&kube::api::ListParams::default().labels(selector)).await {
        Ok(l) => Ok((c, kind, l.items)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok((c, kind, Vec::new())),
        Err(e) => Err(ApplyError::Cluster {
            cluster: c.name.clone(),
            message: format!("listing {} in {ns}: {}", at.resource.plural, crate::registry::ClusterError::describe(&e)),
        }),
    }
}

/// The desired state that undoes a recorded change: the plan's whole before-state
/// (see `rollback`).
pub fn desired_for_rollback(record: &history::HistoryRecord) -> Vec<(ObjRef, Desired)> {
    rollback::desired(record)
}
