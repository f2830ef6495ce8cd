//! One task per cluster and kind: a kube-runtime watcher (list, watch, re-list
//! on 410, backoff on errors) whose events are turned into small facts at once
//! and sent to the aggregator. No Kubernetes object outlives its event.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service};
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind, PartialObjectMeta};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::facts::{
    IstiodFacts, LabelSets, MeshConfigFacts, NamespaceFacts, PodFacts, ServiceFacts, istio_object, mesh_config_facts, namespace_facts,
};
use super::model::IstioObject;
use super::slim::SlimPod;
use crate::registry::{ClusterError, Probe, health};

/// `(namespace, name)`.
pub type ObjKey = (String, String);

#[derive(Clone, Debug, PartialEq)]
pub enum Delta<T> {
    /// A (re-)list starts: what follows until `InitDone` replaces what was known.
    Init,
    Upsert {
        init: bool,
        key: ObjKey,
        value: T,
    },
    InitDone,
    Delete(ObjKey),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WatchKind {
    Pods,
    Services,
    MeshConfig,
    Istiod,
    Network,
    RemoteSecrets,
    /// Gateway API Gateways of class `istio-waypoint`.
    Waypoints,
    Istio(&'static str),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    Pods(Delta<PodFacts>),
    Services(Delta<ServiceFacts>),
    MeshConfig(Delta<MeshConfigFacts>),
    Istiod(Delta<IstiodFacts>),
    Network(Delta<NamespaceFacts>),
    RemoteSecrets(Delta<Option<String>>),
    /// A Gateway API Gateway: whether it is a waypoint (class `istio-waypoint`).
    Waypoints(Delta<bool>),
    /// The versions of Gateway API the cluster serves, newest first (none: not served).
    GatewayApiVersions(Vec<String>),
    Istio(&'static str, Delta<IstioObject>),
    /// The Istio CRDs are not served (404 on the kind).
    IstioAbsent,
    /// The cluster's watchers restart (another alias acts): start over from this view.
    Reset(Box<super::model::ClusterView>, Option<ClusterError>),
    /// The uid of `kube-system`: what the cluster says it is.
    Identity(String),
    /// An alias answered with another cluster's `kube-system` uid.
    AliasMismatch {
        alias: String,
        uid: String,
    },
    Error(ClusterError),
    Probe(Probe),
}

impl Change {
    /// A list is about to be asked for: kube's watcher says so before it sends the
    /// request, so it is no sign that the cluster answers.
    pub fn starts_list(&self) -> bool {
        matches!(
            self,
            Change::Pods(Delta::Init)
                | Change::Services(Delta::Init)
                | Change::MeshConfig(Delta::Init)
                | Change::Istiod(Delta::Init)
                | Change::Network(Delta::Init)
                | Change::RemoteSecrets(Delta::Init)
                | Change::Waypoints(Delta::Init)
                | Change::Istio(_, Delta::Init)
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClusterEvent {
    pub cluster: usize,
    pub kind: Option<WatchKind>,
    /// The namespace a watch covers (`None`: the whole cluster). A re-list replaces its own scope only.
    pub scope: Option<String>,
    pub change: Change,
}

/// The Istio kinds watched: (kind, plural).
pub const ISTIO_KINDS: &[(&str, &str, &str)] = &[
    ("networking.istio.io", "VirtualService", "virtualservices"),
    ("networking.istio.io", "DestinationRule", "destinationrules"),
    ("networking.istio.io", "ServiceEntry", "serviceentries"),
    ("networking.istio.io", "Gateway", "gateways"),
    ("security.istio.io", "AuthorizationPolicy", "authorizationpolicies"),
    ("security.istio.io", "PeerAuthentication", "peerauthentications"),
];

/// Gateway API's mesh route kind, watched beside Istio's: an HTTPRoute whose parent
/// is a Service routes that Service as a VirtualService would (`render::gateway_api`).
pub const GATEWAY_API_WATCHED: &[(&str, &str, &str)] =
    &[("gateway.networking.k8s.io", "HTTPRoute", "httproutes"), ("gateway.networking.k8s.io", "GRPCRoute", "grpcroutes")];

/// Istio's class of waypoint Gateways, and their API group.
pub const WAYPOINT_CLASS: &str = "istio-waypoint";
const WAYPOINT_GROUP: &str = "gateway.networking.k8s.io";

/// Every routing kind the inventory watches: Istio's, then Gateway API's.
pub fn watched_kinds() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    ISTIO_KINDS.iter().chain(GATEWAY_API_WATCHED)
}

/// After a failed call: doubling from 200 ms, capped at 3 s, with jitter so a
/// fleet of watchers does not retry in step; a cluster that comes back is resumed
/// within seconds. A refusal (401/403) will not change by asking again soon:
/// those wait 30 s, then 60 s.
#[derive(Clone, Debug, Default)]
pub struct FleetBackoff {
    failures: u32,
}

impl FleetBackoff {
    pub fn next(&mut self, error: &ClusterError) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let base = match error {
            ClusterError::Unauthorized(_) | ClusterError::Forbidden(_) => Duration::from_secs(if self.failures == 1 { 30 } else { 60 }),
            _ => (Duration::from_millis(200) * 2u32.saturating_pow(self.failures.min(5) - 1)).min(Duration::from_secs(3)),
        };
        // ±20 %.
        let jitter = rand::random_range(0.8..1.2);
        base.mul_f64(jitter)
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

fn key_of<K: Resource>(o: &K) -> ObjKey {
    (o.meta().namespace.clone().unwrap_or_default(), o.meta().name.clone().unwrap_or_default())
}

fn classify(e: &watcher::Error) -> ClusterError {
    match e {
        watcher::Error::InitialListFailed(k) | watcher::Error::WatchStartFailed(k) | watcher::Error::WatchFailed(k) => {
            ClusterError::from_kube(k)
        }
        watcher::Error::WatchError(s) => ClusterError::from_kube(&kube::Error::Api(s.clone())),
        other => ClusterError::Degraded(other.to_string()),
    }
}

/// The Istio API versions meshdeck reads, newest first (v1 since Istio 1.22).
pub const ISTIO_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

/// The newest version at which the cluster serves each Istio kind (a kind not
/// served is absent). One round: every Istio group (or only `group`) at every
/// version, asked at once.
pub async fn served_versions(
    client: &Client,
    group: Option<&str>,
) -> Result<std::collections::BTreeMap<&'static str, &'static str>, kube::Error> {
    let mut groups: Vec<&str> = watched_kinds().map(|(g, _, _)| *g).filter(|g| group.is_none_or(|only| only == *g)).collect();
    groups.dedup();
    let asks = groups.iter().flat_map(|g| ISTIO_VERSIONS.iter().map(move |v| (*g, *v)));
    let answers = futures::future::join_all(asks.map(|(g, v)| async move {
        match client.list_api_group_resources(&format!("{g}/{v}")).await {
            Ok(list) => Ok((g, v, list.resources.into_iter().map(|r| r.name).collect::<Vec<_>>())),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok((g, v, Vec::new())),
            Err(e) => Err(e),
        }
    }))
    .await;
    let mut by_kind = std::collections::BTreeMap::new();
    // Answers come in ISTIO_VERSIONS order per group: the first served version is the newest.
    for answer in answers {
        let (group, version, plurals) = answer?;
        for (g, kind, plural) in watched_kinds() {
            if *g == group && plurals.iter().any(|p| p == plural) {
                by_kind.entry(*kind).or_insert(version);
            }
        }
    }
    Ok(by_kind)
}

/// Pods are listed 50 a page: a page is read whole (and copied twice by kube's
/// client) before it is decoded, and a fleet lists every cluster at once, so the page
/// size bounds the start-up and relist peak (real-sized pods are 16 KB of JSON each).
/// Measured with `bench inventory` (README, Benchmarks): over HTTP/1.1 small pages
/// cost 1.9x the network floor; over HTTP/2 (one connection per cluster, see
/// `registry::transport`) they do not, and 100 a page left a relist of 10 clusters
/// at 1.7-1.9x its steady memory, 50 at 1.4-1.5x. 25 a page cost time at 50 clusters.
const POD_PAGE: u32 = 50;

/// Pod lists in flight at once across the whole fleet. A list holds a page of
/// real-sized pods (1.6 MB of JSON) while it is decoded; 50 clusters listing at once
/// made the start-up and relist peak grow with the fleet, and glibc keeps what a
/// peak took. The network floor is measured with the same bound (`bench inventory`).
const POD_LISTS_AT_ONCE: usize = 8;
/// The longest one pod list holds its turn (a page of a near cluster takes well under 1 s).
const LIST_TURN: Duration = Duration::from_secs(5);
static POD_LISTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(POD_LISTS_AT_ONCE);
/// Permits a relist takes: half as many relists run at once as first lists. A relist
/// is not urgent (the rows it replaces stay shown until it completes) and it holds
/// the old rows beside the new ones, so after a blip that drops every cluster at
/// once the peak stays near the steady state (measured: a relist of 10 clusters at
/// 1.35-1.42x its steady memory with 4 at once, 1.43-1.51x with 8).
const RELIST_PERMITS: u32 = 2;

/// How soon a kind that is not served is asked for again (its CRDs may be installed).
const ABSENT_RECHECK: Duration = Duration::from_secs(10);

fn is_not_found(e: &watcher::Error) -> bool {
    matches!(classify(e), ClusterError::Degraded(ref m) if m.starts_with("404"))
}

/// Forward one watcher's events, converted, until the receiver goes away. After
/// an error the stream is polled again only after a backoff (the watcher retries
/// on the next poll).
#[allow(clippy::too_many_arguments)]
async fn pump<K, T, S>(
    make: impl Fn() -> S + Send,
    cluster: usize,
    cluster_name: Arc<str>,
    kind: WatchKind,
    scope: Option<String>,
    tx: mpsc::Sender<ClusterEvent>,
    convert: impl Fn(&K) -> T + Send,
    wrap: impl Fn(Delta<T>) -> Change + Send,
    stop_on_404: bool,
) where
    K: Resource + Send,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut backoff = FleetBackoff::default();
    // Once a list has completed, later lists are relists.
    let mut listed = false;
    let name = format!("{kind:?}{}", scope.as_ref().map(|s| format!(" in {s}")).unwrap_or_default());
    loop {
        // After an error the watch starts over with a list: a watch that resumes quietly
        // carries no event to say it works again, a list does (Init ... InitDone).
        let stream = make();
        let mut stream = std::pin::pin!(stream);
        let failed = pump_one(&mut stream, cluster, kind, &scope, &tx, &convert, &wrap, stop_on_404, &mut backoff, &mut listed).await;
        match failed {
            Pumped::ReceiverGone | Pumped::Done => return,
            Pumped::Absent => tokio::time::sleep(ABSENT_RECHECK).await,
            Pumped::Failed(error) => {
                let wait = backoff.next(&error);
                tracing::info!(cluster = %cluster_name, watch = %name, error = %error.message(), retry_in_ms = wait.as_millis() as u64, "watch failed; listing again after the backoff");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The server answered with data: the backoff starts over. A watcher's `Init` is not
/// an answer (it comes before its list is even asked for): resetting on it kept a dead
/// cluster's watchers retrying every 200 ms.
fn answered<K>(item: &Result<watcher::Event<K>, watcher::Error>) -> bool {
    matches!(item, Ok(watcher::Event::InitApply(_) | watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_)))
}

enum Pumped {
    ReceiverGone,
    Done,
    /// The kind is not served (404): asked again later.
    Absent,
    Failed(ClusterError),
}

/// One watch, until it fails (sent, and returned) or ends.
#[allow(clippy::too_many_arguments)]
async fn pump_one<K, T>(
    stream: &mut std::pin::Pin<&mut (impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send)>,
    cluster: usize,
    kind: WatchKind,
    scope: &Option<String>,
    tx: &mpsc::Sender<ClusterEvent>,
    convert: &(impl Fn(&K) -> T + Send),
    wrap: &(impl Fn(Delta<T>) -> Change + Send),
    stop_on_404: bool,
    backoff: &mut FleetBackoff,
    listed: &mut bool,
) -> Pumped
where
    K: Resource + Send,
{
    // Held from a pod watch's Init (sent before its list is asked for) to its InitDone,
    // or for `LIST_TURN` at most: a cluster that never answers must not hold the others' turn.
    let mut listing: Option<(tokio::sync::SemaphorePermit<'static>, tokio::time::Instant)> = None;
    loop {
        let next = match &listing {
            Some((_, until)) => match tokio::time::timeout_at(*until, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    listing = None;
                    continue;
                }
            },
            None => stream.next().await,
        };
        let Some(item) = next else { break };
        if answered(&item) {
            backoff.reset();
        }
        let (init, init_done) = (matches!(item, Ok(watcher::Event::Init)), matches!(item, Ok(watcher::Event::InitDone)));
        let mut failed = None;
        let change = match item {
            Ok(watcher::Event::Init) => wrap(Delta::Init),
            Ok(watcher::Event::InitApply(o)) => wrap(Delta::Upsert { init: true, key: key_of(&o), value: convert(&o) }),
            Ok(watcher::Event::InitDone) => wrap(Delta::InitDone),
            Ok(watcher::Event::Apply(o)) => wrap(Delta::Upsert { init: false, key: key_of(&o), value: convert(&o) }),
            Ok(watcher::Event::Delete(o)) => wrap(Delta::Delete(key_of(&o))),
            Err(e) if stop_on_404 && is_not_found(&e) => {
                if tx.send(ClusterEvent { cluster, kind: Some(kind), scope: scope.clone(), change: Change::IstioAbsent }).await.is_err() {
                    return Pumped::ReceiverGone;
                }
                return Pumped::Absent;
            }
            Err(e) => {
                let error = classify(&e);
                failed = Some(error.clone());
                Change::Error(error)
            }
        };
        if tx.send(ClusterEvent { cluster, kind: Some(kind), scope: scope.clone(), change }).await.is_err() {
            return Pumped::ReceiverGone;
        }
        if let Some(e) = failed {
            return Pumped::Failed(e);
        }
        if init_done {
            listing = None;
            *listed = true;
        } else if init && kind == WatchKind::Pods {
            let permits = if *listed { RELIST_PERMITS } else { 1 };
            listing = POD_LISTS.acquire_many(permits).await.ok().map(|p| (p, tokio::time::Instant::now() + LIST_TURN));
        }
    }
    drop(listing);
    Pumped::Done
}

/// A watch that can be started again (after an error, from a list).
fn typed<K>(api: Api<K>, cfg: watcher::Config) -> impl Fn() -> WatchStream<K> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Default + Eq + std::hash::Hash + Send + Sync,
{
    move || watcher(api.clone(), cfg.clone()).boxed()
}

type WatchStream<K> = futures::stream::BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

/// Start every watcher of one cluster; returns their tasks. `aliases` are the
/// other contexts for the cluster: each is asked once which cluster it reaches.
pub fn spawn_cluster(
    cluster: usize,
    name: &str,
    client: Client,
    namespaces: &[String],
    aliases: Vec<(String, Client)>,
    tx: mpsc::Sender<ClusterEvent>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let name: Arc<str> = Arc::from(name);
    let mut tasks = Vec::new();
    let scoped: Vec<Option<String>> = if namespaces.is_empty() { vec![None] } else { namespaces.iter().cloned().map(Some).collect() };
    for ns in scoped {
        // Pods are the bulk of a fleet: decoded narrowly (see `slim`).
        let pods: Api<SlimPod> = match &ns {
            Some(n) => Api::namespaced(client.clone(), n),
            None => Api::all(client.clone()),
        };
        tasks.push(tokio::spawn(pump(
            typed(pods, watcher::Config::default().page_size(POD_PAGE)),
            cluster,
            name.clone(),
            WatchKind::Pods,
            ns.clone(),
            tx.clone(),
            {
                let sets = std::sync::Mutex::new(LabelSets::default());
                move |p: &SlimPod| match sets.lock() {
                    Ok(mut sets) => PodFacts::of(p, &mut sets),
                    Err(_) => PodFacts::from(p),
                }
            },
            Change::Pods,
            false,
        )));
        let svcs: Api<Service> = match &ns {
            Some(n) => Api::namespaced(client.clone(), n),
            None => Api::all(client.clone()),
        };
        tasks.push(tokio::spawn(pump(
            typed(svcs, watcher::Config::default()),
            cluster,
            name.clone(),
            WatchKind::Services,
            ns.clone(),
            tx.clone(),
            |s: &Service| ServiceFacts::from(s),
            Change::Services,
            false,
        )));
    }
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "istio-system");
    tasks.push(tokio::spawn(pump(
        typed(cms, watcher::Config::default()),
        cluster,
        name.clone(),
        WatchKind::MeshConfig,
        None,
        tx.clone(),
        |c: &ConfigMap| mesh_config_facts(c),
        Change::MeshConfig,
        false,
    )));
    let istiod: Api<Deployment> = Api::namespaced(client.clone(), "istio-system");
    tasks.push(tokio::spawn(pump(
        typed(istiod, watcher::Config::default().labels("app=istiod")),
        cluster,
        name.clone(),
        WatchKind::Istiod,
        None,
        tx.clone(),
        |d: &Deployment| IstiodFacts::from(d),
        Change::Istiod,
        false,
    )));
    let namespaces_api: Api<Namespace> = Api::all(client.clone());
    tasks.push(tokio::spawn(pump(
        // Every Namespace: istio-system's network, and each one's mesh mode.
        typed(namespaces_api, watcher::Config::default()),
        cluster,
        name.clone(),
        WatchKind::Network,
        None,
        tx.clone(),
        |n: &Namespace| namespace_facts(n),
        Change::Network,
        false,
    )));
    // Remote secrets by metadata only: meshdeck never reads secret data.
    let secrets: Api<PartialObjectMeta<Secret>> = Api::namespaced(client.clone(), "istio-system");
    tasks.push(tokio::spawn(pump(
        typed(secrets, watcher::Config::default().labels("istio/multiCluster=true")),
        cluster,
        name.clone(),
        WatchKind::RemoteSecrets,
        None,
        tx.clone(),
        |m: &PartialObjectMeta<Secret>| m.metadata.annotations.as_ref().and_then(|a| a.get("networking.istio.io/cluster").cloned()),
        Change::RemoteSecrets,
        false,
    )));
    // Waypoints (ambient mode's L7 proxies) are Gateway API Gateways of their own class.
    let gateways = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(WAYPOINT_GROUP, "v1", "Gateway"), "gateways");
    let gateways_api = Api::<DynamicObject>::all_with(client.clone(), &gateways);
    tasks.push(tokio::spawn(pump(
        move || watcher(gateways_api.clone(), watcher::Config::default()).boxed(),
        cluster,
        name.clone(),
        WatchKind::Waypoints,
        None,
        tx.clone(),
        |g: &DynamicObject| g.data.pointer("/spec/gatewayClassName").and_then(|c| c.as_str()) == Some(WAYPOINT_CLASS),
        Change::Waypoints,
        true,
    )));
    for &(group, kind, plural) in watched_kinds() {
        // Each (re)start asks which version the cluster serves: an older Istio serves
        // v1beta1 only, and CRDs may be installed (or upgraded) while meshdeck runs.
        let client = client.clone();
        let versions_tx = tx.clone();
        let dynamic = move || {
            let client = client.clone();
            let versions_tx = versions_tx.clone();
            futures::stream::once(async move {
                // Gateway API's versions, said before its routes are listed (so known once they are).
                if group == WAYPOINT_GROUP
                    && let Ok(groups) = client.list_api_groups().await
                {
                    let versions: Vec<String> = groups
                        .groups
                        .iter()
                        .filter(|g| g.name == group)
                        .flat_map(|g| g.versions.iter().map(|v| v.version.clone()))
                        .collect();
                    let change = Change::GatewayApiVersions(versions);
                    let _ = versions_tx.send(ClusterEvent { cluster, kind: None, scope: None, change }).await;
                }
                match served_versions(&client, Some(group)).await.map(|v| v.get(kind).copied()) {
                    Ok(Some(version)) => {
                        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
                        watcher(Api::<DynamicObject>::all_with(client, &ar), watcher::Config::default()).boxed()
                    }
                    Ok(None) => {
                        let absent =
                            kube::core::Status::failure(&format!("{plural}.{group} is not served"), "NotFound").with_code(404).boxed();
                        futures::stream::once(async move { Err(watcher::Error::InitialListFailed(kube::Error::Api(absent))) }).boxed()
                    }
                    Err(e) => futures::stream::once(async move { Err(watcher::Error::InitialListFailed(e)) }).boxed(),
                }
            })
            .flatten()
            .boxed()
        };
        tasks.push(tokio::spawn(pump(
            dynamic,
            cluster,
            name.clone(),
            WatchKind::Istio(kind),
            None,
            tx.clone(),
            move |o: &DynamicObject| istio_object("", kind, o),
            move |d| Change::Istio(kind, d),
            true,
        )));
    }
    tasks.push(tokio::spawn(identity(cluster, client.clone(), aliases, tx.clone())));
    let probe_tx = tx;
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let p = health::probe(&client, Duration::from_secs(5)).await;
            if probe_tx.send(ClusterEvent { cluster, kind: None, scope: None, change: Change::Probe(p) }).await.is_err() {
                return;
            }
        }
    }));
    tasks
}

/// The `kube-system` namespace uid, or why it cannot be read now.
pub async fn cluster_uid(client: &Client) -> Result<String, ClusterError> {
    let api: Api<Namespace> = Api::all(client.clone());
    match tokio::time::timeout(Duration::from_secs(5), api.get("kube-system")).await {
        Ok(Ok(ns)) => ns.metadata.uid.ok_or_else(|| ClusterError::Degraded("kube-system has no uid".into())),
        Ok(Err(e)) => Err(ClusterError::from_kube(&e)),
        Err(_) => Err(ClusterError::Unreachable("no answer within 5s".into())),
    }
}

/// What the cluster says it is (its `kube-system` uid), then whether every alias
/// reaches the same cluster. An identity that may not read namespaces stays unknown.
async fn identity(cluster: usize, client: Client, aliases: Vec<(String, Client)>, tx: mpsc::Sender<ClusterEvent>) {
    let mut backoff = FleetBackoff::default();
    let uid = loop {
        match cluster_uid(&client).await {
            Ok(uid) => break uid,
            Err(ClusterError::Forbidden(_) | ClusterError::Unauthorized(_)) => return,
            Err(e) => tokio::time::sleep(backoff.next(&e)).await,
        }
    };
    let send = |change| ClusterEvent { cluster, kind: None, scope: None, change };
    if tx.send(send(Change::Identity(uid.clone()))).await.is_err() {
        return;
    }
    for (alias, client) in aliases {
        if let Ok(other) = cluster_uid(&client).await
            && other != uid
            && tx.send(send(Change::AliasMismatch { alias, uid: other })).await.is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_clusters_watchers_back_off_to_the_cap_and_only_data_starts_them_over() {
        let mut b = FleetBackoff::default();
        let down = ClusterError::Unreachable("connection refused".into());
        let waits: Vec<Duration> = (0..8).map(|_| b.next(&down)).collect();
        assert!(waits[0] < Duration::from_millis(250) && waits[4] > Duration::from_millis(2400), "{waits:?}");
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(3600)), "capped at 3 s ±20 %: {waits:?}");
        // A watcher says Init before it lists: that is no answer from the cluster.
        let init: Result<watcher::Event<ConfigMap>, watcher::Error> = Ok(watcher::Event::Init);
        assert!(!answered(&init));
        assert!(answered::<ConfigMap>(&Ok(watcher::Event::InitDone)));
        assert!(answered(&Ok(watcher::Event::Apply(ConfigMap::default()))));
    }

    #[tokio::test]
    async fn a_cluster_opens_no_more_streams_than_its_transport_counts_on() {
        // Nothing answers here: the tasks only need to be spawned to be counted.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let client = Client::try_from(config).expect("client");
        for namespaces in [vec![], vec!["a".to_string()], vec!["a".to_string(), "b".to_string(), "c".to_string()]] {
            let (tx, _rx) = mpsc::channel(16);
            let tasks = spawn_cluster(0, "cluster1", client.clone(), &namespaces, Vec::new(), tx);
            let open = tasks.len() + crate::apply::target::IN_FLIGHT;
            for t in &tasks {
                t.abort();
            }
            let counted = crate::registry::transport::streams_needed(namespaces.len());
            assert!(open <= counted, "{} namespaces: {open} streams, the transport counts on {counted}", namespaces.len());
        }
    }
}
