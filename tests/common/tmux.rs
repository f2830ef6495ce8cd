//! The cockpit in a real pseudo-terminal: a detached tmux session running
//! `meshdeck`, driven with send-keys and read with capture-pane.

use std::process::Command;
use std::time::{Duration, Instant};

pub struct Tmux {
    pub session: String,
}

impl Tmux {
    pub fn keys(&self, keys: &[&str]) {
        let ok = Command::new("tmux").args(["send-keys", "-t", &self.session]).args(keys).status().is_ok_and(|s| s.success());
        assert!(ok, "tmux send-keys");
    }

    pub fn screen(&self) -> String {
        Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// From the fleet view: find reviews, compose the talk's 15/10/75 canary from
    /// cluster1, then press `extra` (e.g. `a` for an access rule); it must be valid.
    pub fn compose_canary(&self, extra: &[&str]) {
        // The filter finds reviews wherever it sorts (a real cluster also lists `kubernetes`).
        self.keys(&["/", "reviews", "Enter"]);
        self.wait_for(&["reviews"], 10);
        self.keys(&["r"]);
        self.wait_for(&["reviews-route weighted split from cluster1"], 10);
        self.keys(&["1", "5", "Enter", "Down", "1", "0", "Enter", "Down", "Down", "Down", "7", "5", "Enter"]);
        self.keys(extra);
        self.wait_for(&["total 100/100", "✓ valid"], 10);
    }

    /// Wait until a table row starts with these cells (split on whitespace).
    pub fn wait_for_row(&self, cells: &[&str], secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if s.lines().any(|l| l.split_whitespace().take(cells.len()).eq(cells.iter().copied())) {
                return s;
            }
            assert!(Instant::now() < deadline, "no row of the screen started {cells:?}:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the screen shows every one of `needles`: a condition with a deadline, not a sleep.
    pub fn wait_for(&self, needles: &[&str], secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if needles.iter().all(|n| s.contains(n)) {
                return s;
            }
            assert!(Instant::now() < deadline, "the screen never showed {needles:?}:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The cockpit in a detached tmux session of `w`x`h`, on the fleet's kubeconfig with
/// `args`, its directories under `dir`.
pub fn start_cockpit(name: &str, dir: &std::path::Path, kubeconfig: &std::path::Path, args: &str, w: u16, h: u16) -> Tmux {
    start_cockpit_with("", name, dir, kubeconfig, args, w, h)
}

/// As `start_cockpit`, with more environment (`KEY=value ...`) for meshdeck.
pub fn start_cockpit_with(env: &str, name: &str, dir: &std::path::Path, kubeconfig: &std::path::Path, args: &str, w: u16, h: u16) -> Tmux {
    let session = format!("meshdeck-{name}-{}", std::process::id());
    let d = dir.display();
    let cmd = format!(
        "env MESHDECK_DATA_DIR={d}/data MESHDECK_STATE_DIR={d}/state MESHDECK_CONFIG_DIR={d}/config TERM=xterm-256color {env} {} --kubeconfig {} {args}",
        env!("CARGO_BIN_EXE_meshdeck"),
        kubeconfig.display()
    );
    let ok = Command::new("tmux")
        .args(["new-session", "-d", "-s", &session, "-x", &w.to_string(), "-y", &h.to_string(), &cmd])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "tmux new-session");
    Tmux { session }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.session]).status();
    }
}
