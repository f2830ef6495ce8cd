//! The live fleet inventory: per-cluster watchers feed one aggregator that owns
//! the model and publishes snapshots. Consumers (CLI, cockpit) only read
//! `Arc<FleetSnapshot>`s; nothing here knows about terminals.

pub mod aggregate;
pub mod facts;
pub mod model;
pub mod warnings;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch as tokio_watch};
use tokio::task::JoinHandle;

pub use model::{
    ClusterState, ClusterView, FleetSnapshot, FleetWarning, IstioObject, MeshFacts, ServicePresence, ServiceRow, VersionCount,
};

use crate::registry::{Cluster, ClusterError};

/// A running inventory; dropping it stops every watcher.
pub struct Inventory {
    pub snapshots: tokio_watch::Receiver<Arc<FleetSnapshot>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Inventory {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Inventory {
    pub fn start(clusters: &[Cluster]) -> Inventory {
        let (tx, rx) = mpsc::channel(4096);
        let views: Vec<ClusterView> = clusters
            .iter()
            .map(|c| ClusterView {
                name: c.name.clone(),
                context: c.context.name.clone(),
                server: c.context.server.clone(),
                read_only: c.options.read_only,
                accent: c.options.accent.clone(),
                version_label: c.options.version_label.clone(),
                ..Default::default()
            })
            .collect();
        let config_errors: Vec<Option<ClusterError>> =
            clusters.iter().map(|c| c.client.as_ref().err().map(|e| ClusterError::Config(e.clone()))).collect();
        let inv = aggregate::FleetInventory::new(views, config_errors);
        let (snap_tx, snap_rx) = tokio_watch::channel(Arc::new(inv.snapshot()));
        let mut tasks = Vec::new();
        for (i, c) in clusters.iter().enumerate() {
            if let Ok(client) = &c.client {
                tasks.extend(watch::spawn_cluster(i, client.clone(), &c.options.namespaces, tx.clone()));
            }
        }
        drop(tx);
        tasks.push(tokio::spawn(aggregate::run(inv, rx, snap_tx)));
        Inventory { snapshots: snap_rx, tasks }
    }

    /// Wait until every cluster has answered (live or an error), or `timeout`.
    pub async fn settled(&mut self, timeout: Duration) -> Arc<FleetSnapshot> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let snap = self.snapshots.borrow_and_update().clone();
            if snap.settled() && !snap.clusters.is_empty() {
                return snap;
            }
            match tokio::time::timeout_at(deadline, self.snapshots.changed()).await {
                Ok(Ok(())) => {}
                _ => return self.snapshots.borrow().clone(),
            }
        }
    }
}
