//! The cluster registry: kubeconfig contexts (narrowed by `--context` or the
//! config file) become registered clusters, each with its own kube client.
//! A context whose client cannot be built is still registered, with its error.

pub mod cluster;
pub mod health;

use kube::config::{KubeConfigOptions, Kubeconfig};

pub use cluster::{Cluster, ClusterOptions};
pub use health::{ClusterError, Probe};

use crate::config::MeshdeckConfig;
use crate::kubeconfig::{self, KubeconfigError};

/// Build the registry. Bad input (unknown context, a config entry naming a missing
/// context) is an error; a context that fails to build a client is kept with the error.
pub async fn connect(kc: &Kubeconfig, wanted: &[String], cfg: &MeshdeckConfig, read_only: bool) -> Result<Vec<Cluster>, KubeconfigError> {
    let all = kubeconfig::contexts(kc);
    let (selected, entries): (Vec<_>, Vec<_>) = match &cfg.clusters {
        // The config file registers a subset (and may rename); --context narrows further.
        Some(entries) if wanted.is_empty() => {
            let names: Vec<String> = entries.iter().map(|e| e.context.clone()).collect();
            let specs = kubeconfig::select(all, &names)?;
            specs.into_iter().zip(entries.iter().map(Some)).unzip()
        }
        _ => {
            let specs = kubeconfig::select(all, wanted)?;
            let entries: Vec<_> =
                specs.iter().map(|s| cfg.clusters.as_ref().and_then(|es| es.iter().find(|e| e.context == s.name))).collect();
            (specs, entries)
        }
    };
    let mut out = Vec::new();
    for (spec, entry) in selected.into_iter().zip(entries) {
        let options = ClusterOptions {
            namespaces: entry.map(|e| e.namespaces.clone()).unwrap_or_default(),
            version_label: cfg.version_label_for(entry),
            accent: entry.and_then(|e| e.accent.clone()),
            read_only: read_only || cfg.read_only || entry.is_some_and(|e| e.read_only),
        };
        let name = entry.and_then(|e| e.name.clone()).unwrap_or_else(|| spec.name.clone());
        let opts = KubeConfigOptions { context: Some(spec.name.clone()), ..Default::default() };
        let client = match kube::Config::from_custom_kubeconfig(kc.clone(), &opts).await {
            Ok(config) => kube::Client::try_from(config).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        out.push(Cluster::new(name, spec, client, options));
    }
    Ok(out)
}
