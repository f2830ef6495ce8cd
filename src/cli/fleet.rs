//! Shared by subcommands: kubeconfig + config file → registry → a settled inventory.

use std::sync::Arc;
use std::time::Duration;

use super::{CliError, GlobalArgs};
use crate::config::{MeshdeckConfig, config_dir};
use crate::inventory::{FleetSnapshot, Inventory};
use crate::kubeconfig::KubeconfigSource;
use crate::registry::{self, Cluster};

pub async fn registry(global: &GlobalArgs) -> Result<(Vec<Cluster>, MeshdeckConfig), CliError> {
    registry_with(global, |_| {}).await
}

/// The registry with config.yaml as loaded, then changed by `adjust`.
pub async fn registry_with(
    global: &GlobalArgs,
    adjust: impl FnOnce(&mut MeshdeckConfig),
) -> Result<(Vec<Cluster>, MeshdeckConfig), CliError> {
    let mut cfg = MeshdeckConfig::load(config_dir().as_deref()).map_err(|e| CliError::bad_input(e.to_string()))?;
    adjust(&mut cfg);
    let kc = KubeconfigSource::from_environment(global.kubeconfig.clone()).load().map_err(|e| CliError::bad_input(e.to_string()))?;
    let clusters =
        registry::connect(&kc, &global.contexts, &cfg, global.read_only).await.map_err(|e| CliError::bad_input(e.to_string()))?;
    if clusters.is_empty() {
        return Err(CliError::bad_input("no contexts to register"));
    }
    Ok((clusters, cfg))
}

/// Watch the fleet until every cluster answered (or `timeout`), then return that view.
pub async fn settled_inventory(global: &GlobalArgs, timeout: Duration) -> Result<(Inventory, Arc<FleetSnapshot>), CliError> {
    let (clusters, _) = registry(global).await?;
    let mut inv = Inventory::start(&clusters);
    let snap = inv.settled(timeout).await;
    Ok((inv, snap))
}
