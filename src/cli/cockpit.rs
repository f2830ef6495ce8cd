//! `meshdeck` (the cockpit on the kubeconfig's clusters) and `meshdeck demo`
//! (the cockpit on the embedded simulated fleet: no cluster or kubeconfig needed).

use clap::Args;

use super::{CliError, GlobalArgs, fleet};
use crate::config::{MeshdeckConfig, config_dir, data_dir};
use crate::tui::keymap::Keymap;
use crate::tui::theme::{ColorDepth, Theme};
use crate::tui::{CockpitConfig, run};
use meshdeck_sim::{SimConfig, SimFleet};

#[derive(Args, Debug, Clone, Default)]
pub struct LookArgs {
    /// Theme: dark, light, high-contrast, or a file in <config>/themes/.
    #[arg(long, global = true)]
    pub theme: Option<String>,
    /// Keymap: default, vim, or a file in <config>/keymaps/.
    #[arg(long, global = true)]
    pub keymap: Option<String>,
    /// The cockpit acts as this persona of policy.yaml (default: matched by context or user).
    #[arg(long = "as-persona", value_name = "PERSONA")]
    pub persona: Option<String>,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    #[arg(long, default_value_t = 3)]
    pub clusters: usize,
    #[arg(long, default_value_t = 0)]
    pub services: usize,
    /// Take a cluster down now and then.
    #[arg(long)]
    pub chaos: bool,
    /// Keep the fleet still (no pod restarts).
    #[arg(long)]
    pub still: bool,
    /// Start the talk's canary at once (examples/reviews-canary-steps.yaml) and show it
    /// stepping, judged on the simulated traffic.
    #[arg(long, conflicts_with = "still")]
    pub canary: bool,
}

/// What the demo starts with besides its fleet.
#[derive(Default)]
struct Extras {
    /// Its own history (the demo's fleet is gone when it ends, and so are its records).
    data_dir: Option<std::path::PathBuf>,
    start_canary: Option<(String, String)>,
}

/// Keymap and theme: a name given on the command line must load (exit 2 if not);
/// the implicit one falls back to the built-in default with warnings shown.
fn look(args: &LookArgs, cfg: &MeshdeckConfig) -> Result<(Keymap, Theme, Vec<String>), CliError> {
    let dir = config_dir();
    let mut warnings = Vec::new();
    let keymap = match &args.keymap {
        Some(name) => {
            let (k, w) = Keymap::load(name, dir.as_deref()).map_err(CliError::bad_input)?;
            if let Some(first) = w.first() {
                return Err(CliError::bad_input(first.clone()));
            }
            k
        }
        None => {
            let name = cfg.keymap.clone().unwrap_or_else(|| "default".into());
            match Keymap::load(&name, dir.as_deref()) {
                Ok((k, w)) => {
                    warnings.extend(w);
                    k
                }
                Err(e) => {
                    warnings.push(e);
                    Keymap::builtin("default")
                }
            }
        }
    };
    let depth = ColorDepth::detect();
    let theme = match &args.theme {
        Some(name) => {
            let (t, w) = Theme::load(name, dir.as_deref(), depth).map_err(CliError::bad_input)?;
            if let Some(first) = w.first() {
                return Err(CliError::bad_input(first.clone()));
            }
            t
        }
        None => {
            let name = cfg.theme.clone().unwrap_or_else(|| "dark".into());
            match Theme::load(&name, dir.as_deref(), depth) {
                Ok((t, w)) => {
                    warnings.extend(w);
                    t
                }
                Err(e) => {
                    warnings.push(e);
                    Theme::load("dark", None, depth).map(|(t, _)| t).unwrap_or_else(|_| Theme::builtin("dark"))
                }
            }
        }
    };
    Ok((keymap, theme, warnings))
}

pub async fn cockpit(global: &GlobalArgs, look_args: &LookArgs) -> Result<(), CliError> {
    cockpit_with(global, look_args, |_| {}, Extras::default()).await
}

/// The cockpit with config.yaml as loaded, then changed by `adjust` (the demo
/// names its own clusters and their Prometheus stand-ins).
async fn cockpit_with(
    global: &GlobalArgs,
    look_args: &LookArgs,
    adjust: impl FnOnce(&mut MeshdeckConfig),
    extras: Extras,
) -> Result<(), CliError> {
    let (clusters, cfg) = fleet::registry_with(global, adjust).await?;
    let (keymap, theme, warnings) = look(look_args, &cfg)?;
    let read_only = global.read_only || cfg.read_only;
    let kubeconfig = crate::kubeconfig::KubeconfigSource::from_environment(global.kubeconfig.clone()).load().ok();
    let config = CockpitConfig {
        clusters,
        kubeconfig,
        config: cfg,
        keymap,
        theme,
        read_only,
        warnings,
        data_dir: extras.data_dir.or_else(data_dir),
        config_dir: config_dir(),
        persona: look_args.persona.clone(),
        start_canary: extras.start_canary,
    };
    run(config).await.map_err(CliError::failed)
}

pub async fn demo(global: &GlobalArgs, look_args: &LookArgs, args: DemoArgs) -> Result<(), CliError> {
    let fleet = SimFleet::start(SimConfig {
        clusters: args.clusters.max(1),
        services: args.services,
        live: !args.still,
        chaos: args.chaos,
        traffic: !args.still,
        ..Default::default()
    })
    .await
    .map_err(|e| CliError::failed(e.to_string()))?;
    // A private directory (0700, unguessable name), removed when the demo ends.
    let dir = tempfile::Builder::new().prefix("meshdeck-demo-").tempdir().map_err(|e| CliError::failed(e.to_string()))?;
    let kubeconfig = dir.path().join("kubeconfig");
    fleet.write_kubeconfig(&kubeconfig).map_err(|e| CliError::failed(e.to_string()))?;
    let contexts = fleet.clusters.iter().map(|c| c.name.clone()).collect();
    let demo_global = GlobalArgs { kubeconfig: Some(kubeconfig), contexts, read_only: global.read_only, verbose: global.verbose };
    // The demo's clusters, each with its Prometheus stand-in (simulated traffic).
    let entries: Vec<crate::config::ClusterEntry> = fleet
        .clusters
        .iter()
        .map(|c| crate::config::ClusterEntry {
            context: c.name.clone(),
            prometheus: (!args.still).then(|| crate::config::HttpUrl(fleet.prometheus_url(&c.name))),
            ..Default::default()
        })
        .collect();
    let extras = Extras {
        data_dir: Some(dir.path().join("data")),
        start_canary: args.canary.then(|| {
            ("examples/reviews-canary-steps.yaml".to_string(), include_str!("../../examples/reviews-canary-steps.yaml").to_string())
        }),
    };
    let result = cockpit_with(&demo_global, look_args, |cfg| cfg.clusters = Some(entries), extras).await;
    drop(dir);
    result
}
