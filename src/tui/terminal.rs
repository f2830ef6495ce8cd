//! The terminal: raw mode and the alternate screen on, and always off again
//! (panic hook via ratatui::init after color-eyre's), plus suspend/resume
//! around $EDITOR. The input thread pauses while suspended.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::event::{self, Event, KeyEventKind};
use ratatui::DefaultTerminal;
use tokio::sync::mpsc::UnboundedSender;

use super::msg::Msg;

pub fn init() -> DefaultTerminal {
    ratatui::init()
}

pub fn restore() {
    ratatui::restore();
}

/// Read keys on a thread of their own; `paused` hands the terminal to another program.
pub fn spawn_input(tx: UnboundedSender<Msg>, paused: Arc<AtomicBool>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            if paused.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => match event::read() {
                    Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => {
                        if tx.send(Msg::Key(k)).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Resize(_, _)) => {
                        if tx.send(Msg::Tick(chrono::Utc::now())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                },
                Ok(false) => {}
                Err(_) => return,
            }
        }
    });
}

/// Hand the terminal to another program while `run` runs: the input thread pauses,
/// the alternate screen and raw mode are left (with a line saying why), then restored.
pub fn suspended<T>(paused: &AtomicBool, why: &str, run: impl FnOnce() -> T) -> T {
    paused.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(120));
    restore();
    eprintln!("meshdeck: {why}; the cockpit comes back when it finishes");
    let out = run();
    let _ = init();
    paused.store(false, Ordering::SeqCst);
    out
}

/// Edit `text` in $VISUAL/$EDITOR (default vi) with the cockpit suspended.
pub fn edit_externally(text: &str, paused: &AtomicBool) -> Result<String, String> {
    let editor = std::env::var("VISUAL").or_else(|_| std::env::var("EDITOR")).unwrap_or_else(|_| "vi".into());
    // A new file only the user can read, under a name nobody can guess (no symlink games in /tmp).
    let mut file = tempfile::Builder::new().prefix("meshdeck-plan-").suffix(".yaml").tempfile().map_err(|e| format!("temp file: {e}"))?;
    file.write_all(text.as_bytes()).map_err(|e| format!("{}: {e}", file.path().display()))?;
    let path = file.path().to_path_buf();
    let mut parts = editor.split_whitespace();
    let program = parts.next().unwrap_or("vi");
    let status =
        suspended(paused, &format!("editing in {program}"), || std::process::Command::new(program).args(parts).arg(&path).status());
    let status = status.map_err(|e| format!("{editor}: {e}"))?;
    if !status.success() {
        return Err(format!("{editor} exited with {status}"));
    }
    // Editors often replace the file rather than write into it: read it by its path.
    let out = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()));
    drop(file);
    out
}
