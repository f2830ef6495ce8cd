//! The server's own answer to a change, before it is made: every write is sent
//! with `dryRun=All`, so schema errors (422), conflicts (409) and admission
//! failures surface while nothing has been written.

use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::Value;

use super::{Desired, FIELD_MANAGER, ObjRef, target};
use crate::registry::{Cluster, ClusterError};

/// Server-side apply as `meshdeck`, on a dry run: nothing is stored.
fn dry_run_params(force: bool) -> PatchParams {
    let mut p = PatchParams::apply(FIELD_MANAGER);
    p.force = force;
    p.dry_run = true;
    p
}

/// What the object would become; `None` when it would not exist. Needs no live
/// state, so it is asked together with the live read.
pub async fn simulate(cluster: &Cluster, t: &ObjRef, want: &Desired, force: bool) -> Result<Option<Value>, String> {
    let at = target::api(cluster, t).await?;
    match want {
        Desired::Apply(obj) => {
            let body = at.body(obj.clone())?;
            let out = at.api.patch(&t.name, &dry_run_params(force), &Patch::Apply(&body)).await.map_err(|e| ClusterError::describe(&e))?;
            serde_json::to_value(out).map(Some).map_err(|e| e.to_string())
        }
        // The very requests the restore will send (a PUT on what is live now), dry run:
        // what is shown and later verified is what is written.
        Desired::Restore(previous) => {
            let live = target::get(cluster, t).await?;
            super::write::restore(cluster, t, Some(previous), live.as_ref(), super::write::Send::DryRun).await.map_err(String::from)
        }
        // Deleting what is absent is nothing to refuse.
        Desired::Absent => match at.api.delete(&t.name, &DeleteParams { dry_run: true, ..Default::default() }).await {
            Ok(_) => Ok(None),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(ClusterError::describe(&e)),
        },
    }
}
