//! What pause, resume, promote and abort do, from any front (the CLI, the
//! cockpit): ask the process that drives the canary, or, with none, act here:
//! a pause is written at once; the others need a driver, which the front starts
//! (`Driver::resume`) and which takes the request first.

use super::store::{Request, Status, Store};
use crate::apply::ApplyError;

/// How a request was handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    /// Asked of the process that drives it (named).
    Asked(String),
    /// Done here: nothing drove it (a pause).
    Done(String),
    /// Nothing drives it: the front drives it now (the request is waiting for it).
    Drive,
}

fn by() -> String {
    std::env::var("USER").unwrap_or_else(|_| "the operator".into())
}

pub fn handle(store: &Store, name: &str, request: Request) -> Result<Handled, ApplyError> {
    let state = store.load(name)?.ok_or_else(|| ApplyError::History(format!("no canary {name} (meshdeck canary status lists them)")))?;
    let what = format!("{request:?}").to_lowercase();
    if !state.status.active() {
        return Err(ApplyError::History(format!("canary {name} has ended ({}): nothing to {what}", state.status.as_str())));
    }
    let driver = store.driver(name);
    match request {
        Request::Pause if state.status != Status::Running => {
            return Err(ApplyError::History(format!("canary {name} is {}: only a running canary pauses", state.status.as_str())));
        }
        Request::Resume if state.status != Status::Paused => {
            return Ok(match driver {
                Some(d) => Handled::Done(format!("canary {name} is {}, driven by {d}: nothing to resume", state.status.as_str())),
                None => Handled::Drive,
            });
        }
        _ => {}
    }
    if let Some(d) = driver {
        store.ask(name, request)?;
        return Ok(Handled::Asked(d));
    }
    if request == Request::Pause {
        // This command is its driver for a moment.
        let _lock = store.drive(name)?;
        let mut state = store.load(name)?.unwrap_or(state);
        state.status = Status::Paused;
        state.waiting = Some(format!("paused by {}", by()));
        state.say(format!("paused by {} at step {} (no driver)", by(), state.step));
        store.save(&state)?;
        return Ok(Handled::Done(format!("canary {name}: paused at step {}", state.step)));
    }
    store.ask(name, request)?;
    Ok(Handled::Drive)
}
