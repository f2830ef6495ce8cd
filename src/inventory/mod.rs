//! The live fleet inventory: per-cluster watchers feed one aggregator that owns
//! the model and publishes snapshots. Consumers (CLI, cockpit) only read
//! `Arc<FleetSnapshot>`s; nothing here knows about terminals.

pub mod aggregate;
pub mod ambient;
pub mod analyze;
pub mod facts;
pub mod model;
pub mod routes;
pub mod slim;
pub mod trust;
pub mod warnings;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch as tokio_watch};
use tokio::task::JoinHandle;

pub use model::{
    ClusterState, ClusterView, FleetSnapshot, FleetWarning, IstioObject, MeshFacts, RouteDestination, ServicePort, ServicePresence,
    ServiceRow, VersionCount,
};

use crate::registry::{Cluster, ClusterError};

/// A running inventory; dropping it stops every watcher.
pub struct Inventory {
    pub snapshots: tokio_watch::Receiver<Arc<FleetSnapshot>>,
    aggregator: JoinHandle<()>,
    /// Per cluster, its watchers (restarted when another alias acts).
    watchers: Vec<Vec<JoinHandle<()>>>,
    events: mpsc::Sender<watch::ClusterEvent>,
}

impl Drop for Inventory {
    fn drop(&mut self) {
        for t in self.watchers.iter().flatten() {
            t.abort();
        }
        self.aggregator.abort();
    }
}

/// How the fleet view starts out for a registered cluster.
fn view_of(c: &Cluster) -> ClusterView {
    ClusterView {
        name: c.name.clone(),
        context: c.context.name.clone(),
        server: c.context.server.clone(),
        read_only: c.options.read_only,
        accent: c.options.accent.clone(),
        version_label: c.options.version_label.clone(),
        aliases: c.aliases.iter().map(|a| a.context.name.clone()).collect(),
        namespaces: c.options.namespaces.clone(),
        insecure_skip_tls_verify: c.context.insecure,
        ..Default::default()
    }
}

fn config_error(c: &Cluster) -> Option<ClusterError> {
    c.client.as_ref().err().map(|e| ClusterError::Config(e.clone()))
}

fn spawn_watchers(i: usize, c: &Cluster, tx: &mpsc::Sender<watch::ClusterEvent>) -> Vec<JoinHandle<()>> {
    let Ok(client) = &c.client else { return Vec::new() };
    let aliases = c.aliases.iter().filter_map(|a| a.client.as_ref().ok().map(|cl| (a.context.name.clone(), cl.clone()))).collect();
    watch::spawn_cluster(i, &c.name, client.clone(), &c.options.namespaces, aliases, tx.clone())
}

impl Inventory {
    pub fn start(clusters: &[Cluster]) -> Inventory {
        let (tx, rx) = mpsc::channel(4096);
        let views: Vec<ClusterView> = clusters.iter().map(view_of).collect();
        let inv = aggregate::FleetInventory::new(views, clusters.iter().map(config_error).collect());
        let (snap_tx, snap_rx) = tokio_watch::channel(Arc::new(inv.snapshot()));
        let watchers = clusters.iter().enumerate().map(|(i, c)| spawn_watchers(i, c, &tx)).collect();
        let aggregator = tokio::spawn(aggregate::run(inv, rx, snap_tx));
        Inventory { snapshots: snap_rx, aggregator, watchers, events: tx }
    }

    /// Watch cluster `index` again as `cluster` says (another alias acts): its old
    /// watchers stop, its rows are forgotten, and it is listed afresh.
    pub async fn restart(&mut self, index: usize, cluster: &Cluster) {
        let Some(old) = self.watchers.get_mut(index) else { return };
        for t in old.drain(..) {
            t.abort();
        }
        let reset = watch::ClusterEvent {
            cluster: index,
            kind: None,
            scope: None,
            change: watch::Change::Reset(Box::new(view_of(cluster)), config_error(cluster)),
        };
        let _ = self.events.send(reset).await;
        self.watchers[index] = spawn_watchers(index, cluster, &self.events);
    }

    /// Wait until every cluster has answered (live or an error), or `timeout`.
    /// Wait until a snapshot satisfies `pred`; false when `timeout` passed first.
    pub async fn wait_until(&mut self, timeout: Duration, pred: impl Fn(&FleetSnapshot) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(&self.snapshots.borrow_and_update()) {
                return true;
            }
            if !matches!(tokio::time::timeout_at(deadline, self.snapshots.changed()).await, Ok(Ok(()))) {
                return false;
            }
        }
    }

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
