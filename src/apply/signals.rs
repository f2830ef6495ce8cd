//! Ctrl-C and SIGTERM. While a change is being written, the first stops new writes
//! (what was written is restored and recorded) and the second leaves at once,
//! saying what is left. At any other time either ends the process as it would have
//! ended without a handler (exit 130), after the front's clean-up (the cockpit gives
//! the terminal back). Tokio cannot give a signal back to the default once it
//! listens, so one listener serves the whole process and asks who is writing now.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// The change being written now, if any.
struct Current {
    cancel: Arc<AtomicBool>,
    id: String,
    announce: bool,
    signals: u32,
    /// Every write has landed and been verified: a first signal no longer undoes it.
    landed: bool,
}

static CURRENT: Mutex<Option<Current>> = Mutex::new(None);
static LISTENING: OnceLock<()> = OnceLock::new();
static CLEAN_UP: OnceLock<fn()> = OnceLock::new();

/// What to do before leaving on a signal (set once, by the cockpit: restore the terminal).
pub fn on_exit(clean_up: fn()) {
    let _ = CLEAN_UP.set(clean_up);
}

/// Held while a change is written; dropped, signals end the process again.
pub struct Writing(());

impl Writing {
    /// Every write has landed and been verified; what is left is recording it.
    pub fn landed(&self) {
        if let Ok(mut c) = CURRENT.lock()
            && let Some(c) = c.as_mut()
        {
            c.landed = true;
        }
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        if let Ok(mut c) = CURRENT.lock() {
            *c = None;
        }
    }
}

/// Listen for signals (once per process) and route them to this change until the
/// guard is dropped. `announce`: say what happened on stderr.
pub fn writing(cancel: Arc<AtomicBool>, id: &str, announce: bool) -> Writing {
    if let Ok(mut c) = CURRENT.lock() {
        *c = Some(Current { cancel, id: id.to_string(), announce, signals: 0, landed: false });
    }
    LISTENING.get_or_init(|| {
        tokio::spawn(listen());
    });
    Writing(())
}

async fn listen() {
    let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else { return };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        received();
    }
}

fn received() {
    let mut guard = match CURRENT.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    match guard.as_mut() {
        Some(c) if c.signals == 0 => {
            c.signals = 1;
            c.cancel.store(true, Ordering::SeqCst);
            if c.announce && c.landed {
                eprintln!(
                    "\ninterrupted after every write had landed: it stays applied and is being recorded (interrupt again to leave now)"
                );
            } else if c.announce {
                eprintln!("\ninterrupted: no more writes; restoring what was written (interrupt again to leave now)");
            }
        }
        Some(c) => {
            if c.announce {
                eprintln!(
                    "\nleft while restoring: {} is recorded as pending; `meshdeck rollback {}` restores the state before it",
                    c.id, c.id
                );
            }
            leave();
        }
        None => leave(),
    }
}

fn leave() -> ! {
    if let Some(clean_up) = CLEAN_UP.get() {
        clean_up();
    }
    std::process::exit(130)
}
