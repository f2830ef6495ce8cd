//! The aggregator alone owns the fleet model: it applies cluster events as
//! they come, recomputes only the services an event touches, and publishes an
//! `Arc<FleetSnapshot>` at most every 100 ms. A slow or failing cluster only
//! changes its own state; the others keep flowing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};

use super::facts::{IstiodFacts, MeshConfigFacts, PodFacts, ServiceFacts};
use super::model::{ClusterState, ClusterView, FleetSnapshot, IstioObject, MeshFacts, ServicePresence, ServiceRow, VersionCount};
use super::warnings;
use super::watch::{Change, ClusterEvent, Delta, ObjKey, WatchKind};
use crate::registry::ClusterError;

/// Objects of one kind as last listed and watched. Each watch scope (a namespace,
/// or the whole cluster) re-lists on its own: its staged list replaces only its scope.
#[derive(Debug)]
struct Mirror<T> {
    live: BTreeMap<ObjKey, T>,
    staging: BTreeMap<Option<String>, BTreeMap<ObjKey, T>>,
    synced_scopes: BTreeSet<Option<String>>,
    /// How many scopes are watched.
    scopes: usize,
}

impl<T> Default for Mirror<T> {
    fn default() -> Self {
        Self::scoped(1)
    }
}

/// What one delta touched.
enum Touched<T> {
    Nothing,
    All,
    One { key: ObjKey, old: Option<T>, new: Option<T> },
}

impl<T> Mirror<T> {
    fn scoped(scopes: usize) -> Self {
        Self { live: BTreeMap::new(), staging: BTreeMap::new(), synced_scopes: BTreeSet::new(), scopes: scopes.max(1) }
    }
}

impl<T: Clone> Mirror<T> {
    fn synced(&self) -> bool {
        self.synced_scopes.len() >= self.scopes
    }

    fn apply(&mut self, d: Delta<T>, scope: &Option<String>) -> Touched<T> {
        match d {
            Delta::Init => {
                self.staging.insert(scope.clone(), BTreeMap::new());
                Touched::Nothing
            }
            Delta::Upsert { init: true, key, value } => {
                self.staging.entry(scope.clone()).or_default().insert(key, value);
                Touched::Nothing
            }
            Delta::InitDone => {
                if let Some(s) = self.staging.remove(scope) {
                    match scope {
                        Some(ns) => {
                            self.live.retain(|k, _| &k.0 != ns);
                            self.live.extend(s);
                        }
                        None => self.live = s,
                    }
                }
                self.synced_scopes.insert(scope.clone());
                Touched::All
            }
            Delta::Upsert { init: false, key, value } => {
                let old = self.live.insert(key.clone(), value.clone());
                Touched::One { key, old, new: Some(value) }
            }
            Delta::Delete(key) => {
                let old = self.live.remove(&key);
                Touched::One { key, old, new: None }
            }
        }
    }

    fn in_namespace<'a>(&'a self, ns: &'a str) -> impl Iterator<Item = (&'a ObjKey, &'a T)> + 'a {
        self.live.range((ns.to_string(), String::new())..).take_while(move |(k, _)| k.0 == ns)
    }
}

struct ClusterModel {
    view: ClusterView,
    pods: Mirror<PodFacts>,
    services: Mirror<ServiceFacts>,
    mesh_config: Mirror<MeshConfigFacts>,
    istiod: Mirror<IstiodFacts>,
    network: Mirror<super::facts::NamespaceFacts>,
    remote_secrets: Mirror<Option<String>>,
    /// Gateway API Gateways: whether each is a waypoint. `waypoints_absent`: Gateway API not served.
    waypoints: Mirror<bool>,
    waypoints_absent: bool,
    /// Gateway API versions served, newest first (discovery, each minute).
    gateway_api_versions: Vec<String>,
    istio: HashMap<&'static str, Mirror<IstioObject>>,
    /// Errors of the watches that make a cluster's state (pods, services), per scope.
    errors: BTreeMap<(WatchKind, Option<String>), ClusterError>,
    /// Errors of watches for mesh facts and Istio objects: those facts are unknown, the cluster is not down.
    fact_errors: BTreeMap<WatchKind, ClusterError>,
    probe_error: Option<ClusterError>,
    config_error: Option<ClusterError>,
    /// Istio kinds the cluster does not serve (asked again; removed when one lists).
    istio_absent: BTreeSet<&'static str>,
}

impl ClusterModel {
    fn new(view: ClusterView, config_error: Option<ClusterError>) -> Self {
        ClusterModel {
            pods: Mirror::scoped(view.namespaces.len()),
            services: Mirror::scoped(view.namespaces.len()),
            view: ClusterView { error: config_error.clone(), ..view },
            mesh_config: Mirror::default(),
            istiod: Mirror::default(),
            network: Mirror::default(),
            remote_secrets: Mirror::default(),
            waypoints: Mirror::default(),
            waypoints_absent: false,
            gateway_api_versions: Vec::new(),
            istio: HashMap::new(),
            errors: BTreeMap::new(),
            fact_errors: BTreeMap::new(),
            probe_error: None,
            config_error,
            istio_absent: BTreeSet::new(),
        }
    }

    fn presence(&self, key: &ObjKey) -> Option<ServicePresence> {
        let svc = self.services.live.get(key)?;
        let mut p = ServicePresence {
            ports: svc.ports.clone(),
            port_details: svc.port_details.clone(),
            selector: svc.selector.clone(),
            ..Default::default()
        };
        let ns = self.network.live.get(&(String::new(), key.0.clone()));
        p.dataplane_mode = ns.and_then(|n| n.dataplane_mode.clone());
        p.waypoint = svc.use_waypoint.clone().or_else(|| ns.and_then(|n| n.use_waypoint.clone()));
        p.global = svc.global;
        // The waypoint it names is deployed in its namespace (None: not known).
        p.waypoint_deployed = p
            .waypoint
            .as_ref()
            .filter(|_| !self.waypoints_absent && self.waypoints.synced())
            .map(|w| self.waypoints.live.get(&(key.0.clone(), w.clone())).copied().unwrap_or(false));
        if self.waypoints_absent && p.waypoint.is_some() {
            p.waypoint_deployed = Some(false);
        }
        let mut accounts = BTreeSet::new();
        for (_, pod) in self.pods.in_namespace(&key.0) {
            if !svc.selects(&pod.labels) {
                continue;
            }
            let count = match pod.labels.get(&self.view.version_label) {
                Some(v) => p.versions.entry(v.clone()).or_default(),
                None => &mut p.unversioned,
            };
            add(count, pod);
            if let Some(sa) = &pod.service_account {
                accounts.insert(sa.clone());
            }
        }
        p.service_accounts = accounts.into_iter().collect();
        Some(p)
    }

    fn mesh(&self) -> MeshFacts {
        let istiod = self.istiod.live.values().next().cloned().unwrap_or_default();
        // The mesh config of istiod's revision (`istio` for the default one), else any.
        let revision = istiod.revision.clone().unwrap_or_else(|| "default".into());
        let mesh_config = self
            .mesh_config
            .live
            .values()
            .find(|m| m.revision.as_deref() == Some(revision.as_str()))
            .or_else(|| self.mesh_config.live.values().find(|m| m.trust_domain.is_some()));
        let trust_domain = mesh_config.and_then(|m| m.trust_domain.clone());
        let accepted_trust_domains = mesh_config.map(|m| m.accepted_trust_domains.clone()).unwrap_or_default();
        let trust_domain_aliases = mesh_config.map(|m| m.trust_domain_aliases.clone()).unwrap_or_default();
        let root = self.mesh_config.live.values().find_map(|m| m.root_cert_fingerprint.clone());
        let east_west = self.services.live.iter().filter(|(k, _)| k.0 == "istio-system").find_map(|(_, s)| s.east_west_address.clone());
        MeshFacts {
            istio_version: istiod.version,
            revision: istiod.revision,
            trust_domain,
            cluster_id: istiod.cluster_id,
            network: self.network.live.get(&(String::new(), "istio-system".to_string())).and_then(|n| n.network.clone()),
            root_cert_fingerprint: root,
            east_west_gateway: east_west,
            remote_secrets: self.remote_secrets.live.values().flatten().cloned().collect::<BTreeSet<_>>().into_iter().collect(),
            istio_crds: crate::inventory::watch::ISTIO_KINDS.iter().all(|(_, k, _)| !self.istio_absent.contains(k)),
            gateway_api: !self.istio_absent.contains("HTTPRoute") && self.istio.get("HTTPRoute").is_some_and(|m| m.synced()),
            gateway_api_versions: self.gateway_api_versions.clone(),
            accepted_trust_domains,
            trust_domain_aliases,
            skip_trust_domain_validation: istiod.skip_validate_trust_domain,
        }
    }

    /// Every fact watch has listed, failed, or found its kind not served.
    fn facts_synced(&self) -> bool {
        let done = |synced: bool, k: WatchKind| synced || self.fact_errors.contains_key(&k);
        done(self.mesh_config.synced(), WatchKind::MeshConfig)
            && done(self.istiod.synced(), WatchKind::Istiod)
            && done(self.network.synced(), WatchKind::Network)
            && done(self.remote_secrets.synced(), WatchKind::RemoteSecrets)
            && (self.waypoints_absent || done(self.waypoints.synced(), WatchKind::Waypoints))
            && crate::inventory::watch::watched_kinds().all(|(_, kind, _)| {
                self.istio_absent.contains(kind) || done(self.istio.get(kind).is_some_and(|m| m.synced()), WatchKind::Istio(kind))
            })
    }

    fn state(&self) -> ClusterState {
        if self.config_error.is_some() {
            return ClusterState::Error;
        }
        let err = self.probe_error.as_ref().or_else(|| self.errors.values().next());
        match err {
            Some(ClusterError::Unauthorized(_)) => ClusterState::Unauthorized,
            Some(ClusterError::Forbidden(_)) => ClusterState::Forbidden,
            Some(ClusterError::Unreachable(_)) => ClusterState::Unreachable,
            Some(ClusterError::Degraded(_)) => ClusterState::Degraded,
            Some(ClusterError::Config(_)) => ClusterState::Error,
            None if self.pods.synced() && self.services.synced() => ClusterState::Live,
            None if self.view.last_seen.is_some() => ClusterState::Syncing,
            None => ClusterState::Connecting,
        }
    }
}

/// The facts a watch reads, in an operator's words.
fn fact_name(k: WatchKind) -> String {
    match k {
        WatchKind::MeshConfig => "mesh config (istio-system ConfigMaps)".into(),
        WatchKind::Istiod => "istiod (istio-system Deployments)".into(),
        WatchKind::Network => "namespaces (network, mesh mode)".into(),
        WatchKind::RemoteSecrets => "remote secrets (istio-system Secrets)".into(),
        WatchKind::Waypoints => "waypoints (Gateway API Gateways)".into(),
        WatchKind::Istio(kind) => format!("{kind} objects"),
        WatchKind::Pods | WatchKind::Services => format!("{k:?}"),
    }
}

fn add(c: &mut VersionCount, pod: &PodFacts) {
    c.total += 1;
    if pod.ready {
        c.ready += 1;
    }
    if pod.injected {
        c.injected += 1;
    }
}

/// The whole fleet model. Owned by one task; tests drive it directly.
pub struct FleetInventory {
    clusters: Vec<ClusterModel>,
    rows: BTreeMap<ObjKey, Arc<ServiceRow>>,
}

impl FleetInventory {
    pub fn new(views: Vec<ClusterView>, config_errors: Vec<Option<ClusterError>>) -> Self {
        let clusters = views.into_iter().zip(config_errors).map(|(view, config_error)| ClusterModel::new(view, config_error)).collect();
        Self { clusters, rows: BTreeMap::new() }
    }

    pub fn apply(&mut self, ev: ClusterEvent) {
        let Some(cm) = self.clusters.get_mut(ev.cluster) else {
            return;
        };
        if let Change::Reset(view, config_error) = ev.change {
            // Another identity acts now: what the old one saw is forgotten, not mixed in.
            let old = std::mem::replace(cm, ClusterModel::new(*view, config_error));
            self.forget(&old.view.name);
            return;
        }
        let now = Utc::now();
        match &ev.change {
            Change::Error(e) => {
                match ev.kind {
                    Some(k @ (WatchKind::Pods | WatchKind::Services)) => {
                        cm.errors.insert((k, ev.scope.clone()), e.clone());
                    }
                    Some(k) => {
                        cm.fact_errors.insert(k, e.clone());
                    }
                    None => {}
                }
                return;
            }
            Change::Identity(uid) => {
                cm.view.cluster_uid = Some(uid.clone());
                return;
            }
            Change::GatewayApiVersions(versions) => {
                cm.gateway_api_versions = versions.clone();
                return;
            }
            Change::AliasMismatch { alias, uid } => {
                cm.view.alias_mismatches.push(format!("{alias}: {uid}"));
                return;
            }
            Change::Probe(p) => {
                cm.view.latency_ms = Some(p.latency_ms);
                if p.kubernetes_version.is_some() {
                    cm.view.kubernetes_version = p.kubernetes_version.clone();
                }
                cm.probe_error = p.error.clone();
                if p.error.is_none() {
                    cm.view.last_seen = Some(now);
                }
                return;
            }
            // The cluster answered (a listed or watched object, a list's end): its errors
            // are over. A list that only starts says nothing yet.
            change if !change.starts_list() => {
                if let Some(k) = ev.kind {
                    cm.errors.remove(&(k, ev.scope.clone()));
                    cm.fact_errors.remove(&k);
                }
                cm.probe_error = None;
                cm.view.last_seen = Some(now);
            }
            _ => {}
        }
        match ev.change {
            Change::Pods(d) => {
                let touched = cm.pods.apply(d, &ev.scope);
                let keys: Vec<ObjKey> = match touched {
                    Touched::Nothing => vec![],
                    Touched::All => cm.services.live.keys().cloned().collect(),
                    Touched::One { key, old, new } => cm
                        .services
                        .in_namespace(&key.0)
                        .filter(|(_, s)| {
                            old.as_ref().is_some_and(|o| s.selects(&o.labels)) || new.as_ref().is_some_and(|n| s.selects(&n.labels))
                        })
                        .map(|(k, _)| k.clone())
                        .collect(),
                };
                self.refresh(ev.cluster, keys, false);
            }
            Change::Services(d) => match cm.services.apply(d, &ev.scope) {
                Touched::Nothing => {}
                Touched::All => {
                    let keys = cm.services.live.keys().cloned().collect();
                    self.refresh(ev.cluster, keys, true);
                }
                Touched::One { key, .. } => self.refresh(ev.cluster, vec![key], false),
            },
            Change::MeshConfig(d) => {
                cm.mesh_config.apply(d, &ev.scope);
            }
            Change::Istiod(d) => {
                cm.istiod.apply(d, &ev.scope);
            }
            Change::Network(d) => {
                // A namespace's mesh mode is a fact of every service in it.
                let keys: Vec<ObjKey> = match cm.network.apply(d, &ev.scope) {
                    Touched::Nothing => vec![],
                    Touched::All => cm.services.live.keys().cloned().collect(),
                    Touched::One { key, .. } => cm.services.in_namespace(&key.1).map(|(k, _)| k.clone()).collect(),
                };
                self.refresh(ev.cluster, keys, false);
            }
            Change::RemoteSecrets(d) => {
                cm.remote_secrets.apply(d, &ev.scope);
            }
            Change::Waypoints(d) => {
                if matches!(d, Delta::Init) {
                    cm.waypoints_absent = false;
                }
                // A service's waypoint may have come or gone: every presence says whether it is there.
                if !matches!(cm.waypoints.apply(d, &ev.scope), Touched::Nothing) {
                    let keys = cm.services.live.keys().cloned().collect();
                    self.refresh(ev.cluster, keys, false);
                }
            }
            Change::Istio(kind, d) => {
                let d = match d {
                    Delta::Upsert { init, key, mut value } => {
                        value.cluster = cm.view.name.clone();
                        Delta::Upsert { init, key, value }
                    }
                    other => other,
                };
                if matches!(d, Delta::Init) {
                    cm.istio_absent.remove(kind);
                }
                cm.istio.entry(kind).or_default().apply(d, &ev.scope);
            }
            Change::IstioAbsent => {
                if ev.kind == Some(WatchKind::Waypoints) {
                    cm.waypoints_absent = true;
                    cm.waypoints = Mirror::default();
                }
                if let Some(WatchKind::Istio(kind)) = ev.kind {
                    cm.istio_absent.insert(kind);
                    // Objects of a kind no longer served are gone with it.
                    cm.istio.remove(kind);
                }
            }
            Change::Error(_)
            | Change::Probe(_)
            | Change::GatewayApiVersions(_)
            | Change::Identity(_)
            | Change::AliasMismatch { .. }
            | Change::Reset(..) => {}
        }
    }

    /// Drop one cluster from every service row.
    fn forget(&mut self, name: &str) {
        self.rows.retain(|_, row| {
            if row.clusters.contains_key(name) {
                Arc::make_mut(row).clusters.remove(name);
            }
            !row.clusters.is_empty()
        });
    }

    /// Recompute the rows for `keys` in one cluster; with `full`, also drop rows this
    /// cluster no longer has (after a re-list).
    fn refresh(&mut self, cluster: usize, keys: Vec<ObjKey>, full: bool) {
        let cm = &self.clusters[cluster];
        let name = cm.view.name.clone();
        let mut updates: Vec<(ObjKey, Option<ServicePresence>)> = keys.iter().map(|k| (k.clone(), cm.presence(k))).collect();
        if full {
            for (k, row) in &self.rows {
                if row.clusters.contains_key(&name) && !cm.services.live.contains_key(k) {
                    updates.push((k.clone(), None));
                }
            }
        }
        for (key, presence) in updates {
            match presence {
                Some(p) => {
                    let row = self.rows.entry(key.clone()).or_insert_with(|| {
                        Arc::new(ServiceRow { name: key.1.clone(), namespace: key.0.clone(), clusters: BTreeMap::new() })
                    });
                    if row.clusters.get(&name) != Some(&p) {
                        Arc::make_mut(row).clusters.insert(name.clone(), p);
                    }
                }
                None => {
                    if let Some(row) = self.rows.get_mut(&key) {
                        Arc::make_mut(row).clusters.remove(&name);
                        if row.clusters.is_empty() {
                            self.rows.remove(&key);
                        }
                    }
                }
            }
        }
    }

    pub fn snapshot(&self) -> FleetSnapshot {
        let clusters = self
            .clusters
            .iter()
            .map(|cm| {
                let state = cm.state();
                let error = cm.config_error.clone().or_else(|| cm.probe_error.clone()).or_else(|| cm.errors.values().next().cloned());
                // Rights that end at a namespace cannot watch the whole cluster: say what helps.
                let error = match error {
                    Some(ClusterError::Forbidden(m)) if cm.view.namespaces.is_empty() => Some(ClusterError::Forbidden(format!(
                        "{m} (if these rights end at a namespace, list it under `namespaces:` for this cluster in config.yaml)"
                    ))),
                    other => other,
                };
                let unknown = cm.fact_errors.iter().map(|(k, e)| format!("{}: {}", fact_name(*k), e.message())).collect();
                ClusterView { state, error, unknown, facts_pending: !cm.facts_synced(), mesh: cm.mesh(), ..cm.view.clone() }
            })
            .collect();
        let mut istio_objects: Vec<IstioObject> =
            self.clusters.iter().flat_map(|cm| cm.istio.values().flat_map(|m| m.live.values().cloned())).collect();
        istio_objects.sort();
        let mut snap = FleetSnapshot { clusters, services: self.rows.values().cloned().collect(), istio_objects, ..Default::default() };
        snap.api_version = super::model::INVENTORY_API_VERSION.into();
        snap.kind = "Inventory".into();
        snap.warnings = warnings::compute(&snap);
        snap
    }
}

/// When each cluster entered its state, carried from snapshot to snapshot; every
/// transition is logged (the cockpit's log file, with the error and how long the
/// previous state lasted).
#[derive(Default)]
struct Transitions {
    since: Vec<(ClusterState, chrono::DateTime<Utc>)>,
}

impl Transitions {
    fn stamp(&mut self, snap: &mut FleetSnapshot) {
        let now = Utc::now();
        for (i, c) in snap.clusters.iter_mut().enumerate() {
            match self.since.get(i).copied() {
                Some((state, at)) if state == c.state => c.state_since = Some(at),
                previous => {
                    if let Some((state, at)) = previous {
                        let error = c.error.as_ref().map(|e| e.message().to_string()).unwrap_or_default();
                        tracing::info!(
                            cluster = %c.name,
                            from = state.as_str(),
                            to = c.state.as_str(),
                            lasted_s = (now - at).num_seconds(),
                            %error,
                            "cluster state changed"
                        );
                    }
                    if i < self.since.len() {
                        self.since[i] = (c.state, now);
                    } else {
                        self.since.push((c.state, now));
                    }
                    c.state_since = Some(now);
                }
            }
        }
    }
}

/// Run the aggregator until every sender is gone.
pub async fn run(mut inv: FleetInventory, mut rx: mpsc::Receiver<ClusterEvent>, tx: watch::Sender<Arc<FleetSnapshot>>) {
    let mut transitions = Transitions::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = true;
    loop {
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { break };
                inv.apply(ev);
                // Drain what is queued before publishing: bursts become one snapshot.
                while let Ok(ev) = rx.try_recv() {
                    inv.apply(ev);
                }
                dirty = true;
            }
            _ = tick.tick() => {
                if dirty {
                    let mut snap = inv.snapshot();
                    transitions.stamp(&mut snap);
                    tx.send_replace(Arc::new(snap));
                    dirty = false;
                }
            }
        }
    }
    let mut snap = inv.snapshot();
    transitions.stamp(&mut snap);
    tx.send_replace(Arc::new(snap));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::facts::{PodFacts, ServiceFacts};

    fn ev(scope: &str, change: Change) -> ClusterEvent {
        let kind = match &change {
            Change::Pods(_) => Some(WatchKind::Pods),
            Change::Services(_) => Some(WatchKind::Services),
            _ => Some(WatchKind::MeshConfig),
        };
        ClusterEvent { cluster: 0, kind, scope: Some(scope.into()), change }
    }

    fn app(ns: &str, name: &str) -> (Change, Change) {
        let labels: BTreeMap<String, String> = [("app".to_string(), name.to_string()), ("version".into(), "v1".into())].into();
        let pod = PodFacts { labels: Arc::new(labels), ready: true, injected: true, service_account: None };
        let svc = ServiceFacts { selector: [("app".to_string(), name.to_string())].into(), ports: vec![80], ..Default::default() };
        let key = (ns.to_string(), name.to_string());
        (
            Change::Pods(Delta::Upsert { init: true, key: key.clone(), value: pod }),
            Change::Services(Delta::Upsert { init: true, key, value: svc }),
        )
    }

    fn list(inv: &mut FleetInventory, ns: &str, apps: &[&str]) {
        inv.apply(ev(ns, Change::Pods(Delta::Init)));
        inv.apply(ev(ns, Change::Services(Delta::Init)));
        for a in apps {
            let (p, s) = app(ns, a);
            inv.apply(ev(ns, p));
            inv.apply(ev(ns, s));
        }
        inv.apply(ev(ns, Change::Pods(Delta::InitDone)));
        inv.apply(ev(ns, Change::Services(Delta::InitDone)));
    }

    fn keys(inv: &FleetInventory) -> Vec<String> {
        inv.snapshot().services.iter().map(|s| s.key()).collect()
    }

    #[test]
    fn each_namespace_relists_only_its_own_scope_and_the_cluster_is_live_when_all_are_synced() {
        let view = ClusterView {
            name: "c".into(),
            version_label: "version".into(),
            namespaces: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let mut inv = FleetInventory::new(vec![view], vec![None]);
        list(&mut inv, "a", &["ratings"]);
        assert_eq!(inv.snapshot().clusters[0].state, ClusterState::Syncing, "b is not listed yet");
        list(&mut inv, "b", &["reviews"]);
        assert_eq!(inv.snapshot().clusters[0].state, ClusterState::Live);
        assert_eq!(keys(&inv), ["ratings.a", "reviews.b"]);
        // b re-lists (after a 410, say) with one more service: a's rows stay.
        list(&mut inv, "b", &["reviews", "details"]);
        assert_eq!(keys(&inv), ["ratings.a", "details.b", "reviews.b"]);
        let ratings = inv.snapshot().services.iter().find(|s| s.name == "ratings").map(|s| s.clusters["c"].versions["v1"].total);
        assert_eq!(ratings, Some(1), "a's pods were not erased by b's re-list");
    }

    #[test]
    fn a_refused_mesh_fact_is_unknown_with_its_reason_not_a_forbidden_cluster() {
        let view = ClusterView { name: "c".into(), namespaces: vec!["a".into()], ..Default::default() };
        let mut inv = FleetInventory::new(vec![view], vec![None]);
        list(&mut inv, "a", &["ratings"]);
        let refused = ClusterError::Forbidden("403 Forbidden: configmaps is forbidden".into());
        inv.apply(ClusterEvent { cluster: 0, kind: Some(WatchKind::MeshConfig), scope: None, change: Change::Error(refused) });
        let snap = inv.snapshot();
        assert_eq!(snap.clusters[0].state, ClusterState::Live);
        assert_eq!(snap.clusters[0].unknown, ["mesh config (istio-system ConfigMaps): 403 Forbidden: configmaps is forbidden"]);
    }

    /// The state from its inputs, as a table: every outcome a watcher or the probe can have.
    #[test]
    fn cluster_state_is_computed_from_what_recovers() {
        let forbidden = || ClusterError::Forbidden("403".into());
        let unreachable = || ClusterError::Unreachable("eof".into());
        type Case = (
            &'static str,
            Option<ClusterError>,
            Option<ClusterError>,
            Option<ClusterError>,
            Option<ClusterError>,
            bool,
            bool,
            ClusterState,
        );
        // (what, config error, probe error, pods error, mesh-config error, listed, seen before) -> state
        let cases: Vec<Case> = vec![
            ("nothing yet", None, None, None, None, false, false, ClusterState::Connecting),
            ("answered, listing", None, None, None, None, false, true, ClusterState::Syncing),
            ("listed", None, None, None, None, true, true, ClusterState::Live),
            ("a fact refused", None, None, None, Some(forbidden()), true, true, ClusterState::Live),
            ("pods refused", None, None, Some(forbidden()), None, true, true, ClusterState::Forbidden),
            ("probe fails", None, Some(unreachable()), None, None, true, true, ClusterState::Unreachable),
            ("token expired", None, Some(ClusterError::Unauthorized("401".into())), None, None, true, true, ClusterState::Unauthorized),
            ("server errors", None, None, Some(ClusterError::Degraded("500".into())), None, true, true, ClusterState::Degraded),
            ("bad kubeconfig", Some(ClusterError::Config("x".into())), None, None, None, false, false, ClusterState::Error),
        ];
        for (what, config, probe, pods, facts, listed, seen, want) in cases {
            let view = ClusterView { name: "c".into(), last_seen: seen.then(Utc::now), ..Default::default() };
            let mut m = ClusterModel::new(view, config);
            m.probe_error = probe;
            if let Some(e) = pods {
                m.errors.insert((WatchKind::Pods, None), e);
            }
            if let Some(e) = facts {
                m.fact_errors.insert(WatchKind::MeshConfig, e);
            }
            if listed {
                m.pods.synced_scopes.insert(None);
                m.services.synced_scopes.insert(None);
            }
            assert_eq!(m.state(), want, "{what}");
        }
        // A watcher's error is cleared by its next list, not only by an object event.
        let mut inv = FleetInventory::new(vec![ClusterView { name: "c".into(), ..Default::default() }], vec![None]);
        inv.apply(ClusterEvent { cluster: 0, kind: Some(WatchKind::Pods), scope: None, change: Change::Error(unreachable()) });
        assert_eq!(inv.snapshot().clusters[0].state, ClusterState::Unreachable);
        for change in
            [Change::Pods(Delta::Init), Change::Pods(Delta::InitDone), Change::Services(Delta::Init), Change::Services(Delta::InitDone)]
        {
            let kind = if matches!(change, Change::Pods(_)) { WatchKind::Pods } else { WatchKind::Services };
            inv.apply(ClusterEvent { cluster: 0, kind: Some(kind), scope: None, change });
        }
        assert_eq!(inv.snapshot().clusters[0].state, ClusterState::Live);
    }

    #[test]
    fn a_list_that_only_starts_is_not_an_answer() {
        // kube's watcher says Init before it asks for the list: while a cluster is down
        // every retry starts one. It stays down, and its last contact stays put.
        let seen = Utc::now() - chrono::Duration::seconds(60);
        let view = ClusterView { name: "c".into(), last_seen: Some(seen), ..Default::default() };
        let mut inv = FleetInventory::new(vec![view], vec![None]);
        for kind in [WatchKind::Pods, WatchKind::Services] {
            let down = ClusterError::Unreachable("connection refused".into());
            inv.apply(ClusterEvent { cluster: 0, kind: Some(kind), scope: None, change: Change::Error(down) });
        }
        inv.apply(ClusterEvent { cluster: 0, kind: Some(WatchKind::Pods), scope: None, change: Change::Pods(Delta::Init) });
        inv.apply(ClusterEvent { cluster: 0, kind: Some(WatchKind::Services), scope: None, change: Change::Services(Delta::Init) });
        let c = &inv.snapshot().clusters[0];
        assert_eq!(c.state, ClusterState::Unreachable);
        assert_eq!(c.last_seen, Some(seen));
        // The first object listed is an answer.
        let pod = PodFacts::default();
        let key = ("default".to_string(), "p".to_string());
        inv.apply(ClusterEvent {
            cluster: 0,
            kind: Some(WatchKind::Pods),
            scope: None,
            change: Change::Pods(Delta::Upsert { init: true, key, value: pod }),
        });
        assert!(inv.snapshot().clusters[0].last_seen > Some(seen));
    }
}
