//! The server's own answer to a change, before it is made: every write is sent
//! with `dryRun=All`, so schema errors (422), conflicts (409) and admission
//! failures surface while nothing has been written.

use kube::api::{DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::Value;

use super::{Desired, FIELD_MANAGER, ObjRef, target};
use crate::registry::ClusterError;

/// Server-side apply as `meshdeck`, on a dry run: nothing is stored.
fn dry_run_params(force: bool) -> PatchParams {
    let mut p = PatchParams::apply(FIELD_MANAGER);
    p.force = force;
    p.dry_run = true;
    p
}

/// A Restore body: the previous object as meshdeck applies it. Restoring by
/// server-side apply (forced) keeps `meshdeck` the one Apply manager, so the
/// next apply of a plan does not conflict with the restore.
pub fn restore_body(previous: &Value) -> Result<DynamicObject, String> {
    serde_json::from_value(target::normalized(previous)).map_err(|e| e.to_string())
}

/// What the object would become; `None` when it would not exist.
pub async fn simulate(
    client: &kube::Client,
    t: &ObjRef,
    want: &Desired,
    live: Option<&Value>,
    force: bool,
) -> Result<Option<Value>, String> {
    let api = target::api(client, t)?;
    match want {
        Desired::Apply(obj) => {
            let obj: DynamicObject = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
            let out = api.patch(&t.name, &dry_run_params(force), &Patch::Apply(&obj)).await.map_err(|e| ClusterError::describe(&e))?;
            serde_json::to_value(out).map(Some).map_err(|e| e.to_string())
        }
        Desired::Restore(previous) => {
            let body = restore_body(previous)?;
            let out = api.patch(&t.name, &dry_run_params(true), &Patch::Apply(&body)).await.map_err(|e| ClusterError::describe(&e))?;
            serde_json::to_value(out).map(Some).map_err(|e| e.to_string())
        }
        Desired::Absent => {
            if live.is_some() {
                api.delete(&t.name, &DeleteParams { dry_run: true, ..Default::default() }).await.map_err(|e| ClusterError::describe(&e))?;
            }
            Ok(None)
        }
    }
}
