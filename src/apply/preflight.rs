//! RBAC preflight: a SelfSubjectAccessReview on every target cluster for every
//! kind, namespace and verb the change needs, and the verbs its rollback would
//! need (a rollback that cannot run is not "reversible"). What is missing is
//! listed per cluster before anything is written.

use std::collections::BTreeSet;

use futures::StreamExt;

use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::api::{Api, PostParams};

use super::{ApplyError, Desired, ObjRef, client, target};
use crate::registry::Cluster;

/// `in_flight`: how many reviews to send at once.
pub async fn check(clusters: &[Cluster], desired: &[(ObjRef, Desired)], in_flight: usize) -> Result<(), ApplyError> {
    let mut needs: BTreeSet<(String, String, String, &'static str)> = BTreeSet::new();
    for (t, d) in desired {
        // Undoing a write: a create is deleted, an update is put back (PUT), a
        // delete is created again. Which of them happens is known only from live
        // state, so all are checked.
        let verbs: &[&'static str] = match d {
            Desired::Apply(_) => &["get", "create", "patch", "update", "delete"],
            Desired::Restore(_) => &["get", "create", "update", "delete"],
            Desired::Absent => &["get", "delete", "create"],
        };
        for v in verbs {
            needs.insert((t.cluster.clone(), t.kind.clone(), t.namespace.clone(), v));
        }
    }
    // Reviews are sent together: a cluster 300 ms away answers them in one round trip.
    let reviews: Vec<_> = needs
        .into_iter()
        .map(|(cluster, kind, ns, verb)| async move {
            let client = client(clusters, &cluster)?;
            let (ar, group) = target::resource(&kind)
                .ok_or_else(|| ApplyError::Cluster { cluster: cluster.clone(), message: format!("unknown kind {kind}") })?;
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some(verb.into()),
                        group: Some(group.into()),
                        resource: Some(ar.plural.clone()),
                        namespace: Some(ns.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            };
            let api: Api<SelfSubjectAccessReview> = Api::all(client);
            let answer = api.create(&PostParams::default(), &review).await.map_err(|e| ApplyError::Cluster {
                cluster: cluster.clone(),
                message: format!("access review: {}", crate::registry::ClusterError::from_kube(&e).message()),
            })?;
            Ok::<_, ApplyError>((!answer.status.is_some_and(|s| s.allowed)).then(|| {
                // kubectl's spelling: `secrets` for the core group, `virtualservices.networking.istio.io` otherwise.
                let resource = if group.is_empty() { ar.plural.clone() } else { format!("{}.{group}", ar.plural) };
                format!("{cluster}: cannot {verb} {resource} in namespace {ns}")
            }))
        })
        .collect();
    let reviews = futures::stream::iter(reviews).buffered(in_flight.max(1)).collect::<Vec<_>>().await;
    let mut missing = Vec::new();
    for r in reviews {
        missing.extend(r?);
    }
    if missing.is_empty() { Ok(()) } else { Err(ApplyError::Forbidden(missing)) }
}
