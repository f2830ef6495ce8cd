//! One simulated cluster: its store, its users, its fault state and its address.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::watch;

use super::faults::Fault;
use super::rbac::User;
use super::resources::ResourceType;
use super::status::ApiError;
use super::store::ClusterStore;

pub struct SimCluster {
    pub name: String,
    pub kubernetes_version: String,
    store: Mutex<ClusterStore>,
    pub users: Vec<User>,
    fault: watch::Sender<Fault>,
    pub addr: Mutex<Option<std::net::SocketAddr>>,
    /// Writes refused by an injected fault so far (tests wait on it, not on time).
    pub injected_write_failures: watch::Sender<u64>,
    /// The Prometheus stand-in's counters (`metrics`), when the fleet runs traffic.
    pub traffic: Mutex<super::metrics::Traffic>,
}

impl SimCluster {
    pub fn new(name: &str, store: ClusterStore, users: Vec<User>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            kubernetes_version: "v1.33.2".into(),
            store: Mutex::new(store),
            users,
            fault: watch::Sender::new(Fault::Healthy),
            addr: Mutex::new(None),
            injected_write_failures: watch::Sender::new(0),
            traffic: Mutex::new(Default::default()),
        })
    }

    /// The store lock is held only for one operation; a poisoned lock still holds valid data
    /// because every mutation completes before it can panic-free return.
    pub fn store(&self) -> MutexGuard<'_, ClusterStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn fault(&self) -> Fault {
        self.fault.borrow().clone()
    }

    pub fn set_fault(&self, f: Fault) {
        self.fault.send_replace(f);
    }

    pub fn fault_changes(&self) -> watch::Receiver<Fault> {
        self.fault.subscribe()
    }

    pub fn user_by_token(&self, token: &str) -> Option<&User> {
        self.users.iter().find(|u| u.token == token)
    }

    pub fn server_url(&self) -> Option<String> {
        let addr = *self.addr.lock().unwrap_or_else(|p| p.into_inner());
        addr.map(|a| format!("https://{a}"))
    }

    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.store().registry.get(group, version, plural).cloned()
    }

    /// Create or replace as the sim's own controllers do (manager `sim-controller`).
    pub fn put(&self, group: &str, version: &str, plural: &str, obj: Value) -> Result<(), ApiError> {
        let rt = self.resource(group, version, plural).ok_or_else(|| ApiError::not_found("resource", plural))?;
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("").to_string();
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let opts = super::store::WriteOptions { manager: "sim-controller".into(), ..Default::default() };
        let mut store = self.store();
        if store.contains(&rt, &ns, &name) {
            store.update(&rt, &ns, &name, obj, &opts).map(|_| ())
        } else {
            store.create(&rt, &ns, obj, &opts).map(|_| ())
        }
    }
}
