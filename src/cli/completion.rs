//! `meshdeck completion bash|zsh|fish`: the shell's registration script. The
//! shell then asks meshdeck itself (`COMPLETE=<shell> meshdeck -- <words>`), so
//! completions know what only meshdeck knows: the merged kubeconfig's contexts,
//! history ids, plan files.

use std::ffi::OsStr;
use std::path::PathBuf;

use clap::Args;
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::Shells;

use super::CliError;

/// The environment variable the registration script sets to ask for completions.
pub const VAR: &str = "COMPLETE";

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: String,
}

pub fn run(args: CompletionArgs) -> Result<(), CliError> {
    let shells = Shells::builtins();
    let shell = shells.completer(&args.shell).ok_or_else(|| {
        CliError::bad_input(format!("unknown shell {:?} (one of: {})", args.shell, shells.names().collect::<Vec<_>>().join(", ")))
    })?;
    // The completer is this binary, wherever it is: completions work before it is on PATH.
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "meshdeck".into());
    let mut out = std::io::stdout().lock();
    shell.write_registration(VAR, "meshdeck", "meshdeck", &exe, &mut out).map_err(|e| CliError::failed(e.to_string()))
}

/// `--kubeconfig PATH` from the words being completed, if given.
fn kubeconfig_flag() -> Option<PathBuf> {
    let args: Vec<_> = std::env::args_os().collect();
    args.windows(2)
        .find(|w| w[0] == "--kubeconfig")
        .map(|w| PathBuf::from(&w[1]))
        .or_else(|| args.iter().find_map(|a| a.to_str().and_then(|s| s.strip_prefix("--kubeconfig=")).map(PathBuf::from)))
}

fn starting_with(current: &OsStr, names: impl IntoIterator<Item = String>) -> Vec<CompletionCandidate> {
    let prefix = current.to_string_lossy();
    names.into_iter().filter(|n| n.starts_with(prefix.as_ref())).map(CompletionCandidate::new).collect()
}

/// Context names of the merged kubeconfig, as kubectl merges it.
pub fn contexts(current: &OsStr) -> Vec<CompletionCandidate> {
    let source = crate::kubeconfig::KubeconfigSource::from_environment(kubeconfig_flag());
    let Ok(kc) = source.load() else { return Vec::new() };
    starting_with(current, kc.contexts.into_iter().map(|c| c.name))
}

/// History ids, newest first.
pub fn history_ids(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(records) = crate::config::data_dir().and_then(|d| crate::apply::history::History::open(&d).ok()).and_then(|h| h.list().ok())
    else {
        return Vec::new();
    };
    starting_with(current, records.into_iter().rev().map(|r| r.id))
}

/// Plan files: YAML files and directories under what is typed so far.
pub fn plan_files(current: &OsStr) -> Vec<CompletionCandidate> {
    let typed = current.to_string_lossy().to_string();
    let (dir, prefix) = match typed.rfind('/') {
        Some(i) => (typed[..=i].to_string(), typed[i + 1..].to_string()),
        None => (String::new(), typed.clone()),
    };
    let Ok(entries) = std::fs::read_dir(if dir.is_empty() { "." } else { dir.as_str() }) else { return Vec::new() };
    let mut out: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.starts_with(&prefix) || name.starts_with('.') && !prefix.starts_with('.') {
                return None;
            }
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            (is_dir || name.ends_with(".yaml") || name.ends_with(".yml")).then(|| format!("{dir}{name}{}", if is_dir { "/" } else { "" }))
        })
        .collect();
    out.sort();
    out.into_iter().map(CompletionCandidate::new).collect()
}
