//! The embedded simulated fleet: real Kubernetes API servers over HTTPS on
//! 127.0.0.1, one per cluster, that kubectl and kube-rs use unchanged.
//! Shares nothing with the rest of meshdeck but YAML helpers: what it serves
//! is tested with kubectl alone.

mod admin;
pub mod cluster;
mod defaults;
pub mod faults;
pub mod fleet;
pub mod istio_kinds;
mod kubeconfig_out;
pub mod metrics;
pub use kubeconfig_out::write_private;
pub mod openapi;
pub mod protobuf;
pub mod rbac;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod server;
pub mod ssa;
pub mod status;
pub mod store;
pub mod stored;
pub mod table;
pub mod tls;
pub mod world;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use cluster::SimCluster;
pub use faults::Fault;
pub use fleet::MeshTopology;

use rbac::User;
use resources::ResourceRegistry;
use store::{ClusterStore, WriteOptions};

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub clusters: usize,
    pub services: usize,
    pub crds_dir: Option<PathBuf>,
    pub topology: MeshTopology,
    /// Pods restart and recover on their own.
    pub live: bool,
    /// A cluster goes down now and then.
    pub chaos: bool,
    /// Each cluster's productpage calls reviews, counted for the Prometheus
    /// stand-in on the admin endpoint (`metrics`).
    pub traffic: bool,
    pub admin_port: u16,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            clusters: 3,
            services: 0,
            crds_dir: None,
            topology: MeshTopology::Federation,
            live: false,
            chaos: false,
            traffic: false,
            admin_port: 0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("reading CRDs from {path}: {message}")]
    Crds { path: String, message: String },
    #[error("generating TLS certificates: {0}")]
    Tls(String),
    #[error("binding 127.0.0.1: {0}")]
    Bind(#[from] std::io::Error),
    #[error("populating {cluster}: {message}")]
    Populate { cluster: String, message: String },
}

/// A running fleet; dropping it stops every server.
pub struct SimFleet {
    pub clusters: Vec<Arc<SimCluster>>,
    pub ca_pem: String,
    pub admin_url: String,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SimFleet {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// CRD documents from every `.yaml`/`.yml` file in `dir`.
pub fn load_crds(dir: &Path) -> Result<Vec<Value>, SimError> {
    let err = |message: String| SimError::Crds { path: dir.display().to_string(), message };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(err("no .yaml files".into()));
    }
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| err(format!("{}: {e}", f.display())))?;
        let docs = meshdeck_files::yaml::parse_documents(&text).map_err(|e| err(format!("{}: {e}", f.display())))?;
        out.extend(docs.into_iter().filter(|d| d.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")));
    }
    Ok(out)
}

impl SimFleet {
    pub async fn start(cfg: SimConfig) -> Result<SimFleet, SimError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tls = tls::FleetTls::generate().map_err(|e| SimError::Tls(e.to_string()))?;
        let crds = match &cfg.crds_dir {
            Some(dir) => {
                let mut crds = load_crds(dir)?;
                // Istio's CRD directory carries no Gateway API: the sim's own stand in.
                let group = |c: &Value| c.pointer("/spec/group").and_then(Value::as_str) == Some(istio_kinds::GATEWAY_API_GROUP);
                if !crds.iter().any(group) {
                    crds.extend(istio_kinds::gateway_api_crds());
                }
                crds
            }
            None => istio_kinds::minimal_crds(),
        };
        // Compile each CRD once; every cluster shares the compiled schemas.
        let mut base_registry = ResourceRegistry::with_builtins();
        for crd in &crds {
            let types = ResourceRegistry::types_from_crd(crd).map_err(|message| SimError::Crds {
                path: crd.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?").to_string(),
                message,
            })?;
            for t in types {
                base_registry.insert(t);
            }
        }
        let names: Vec<String> = (1..=cfg.clusters).map(|i| format!("cluster{i}")).collect();
        let mut clusters = Vec::new();
        let mut rng = StdRng::from_os_rng();
        for (i, name) in names.iter().enumerate() {
            let users = vec![
                User::admin(random_token(&mut rng, name, "admin")),
                User::restricted(random_token(&mut rng, name, "restricted"), "default"),
                User::team(random_token(&mut rng, name, "team"), "default"),
                User::nodelete(random_token(&mut rng, name, "nodelete"), "default"),
            ];
            // uids differ from fleet to fleet, as real clusters' do: a cluster is known by its kube-system uid.
            let mut store = ClusterStore::new(base_registry.clone(), (i as u64 + 1) ^ (rng.random::<u64>() << 8));
            let crd_rt = store.registry.get("apiextensions.k8s.io", "v1", "customresourcedefinitions").cloned();
            if let Some(crd_rt) = crd_rt {
                let opts = WriteOptions { manager: "sim-install".into(), ..Default::default() };
                for crd in &crds {
                    store
                        .create(&crd_rt, "", crd.clone(), &opts)
                        .map_err(|e| SimError::Populate { cluster: name.clone(), message: e.message })?;
                }
            }
            clusters.push(SimCluster::new(name, store, users));
        }
        // Populate clusters in parallel: on 2 cores a 50×200 fleet is mostly this.
        let spec_for = |i: usize, name: &str| fleet::ClusterSpec {
            index: i + 1,
            name: name.to_string(),
            services: cfg.services,
            topology: cfg.topology,
            cluster_names: names.clone(),
            root_cert_pem: tls.ca_pem.clone(),
            intermediate: tls.intermediate(name).ok(),
        };
        // As many at once as there are cores: more only holds more worlds in memory at once.
        let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(2);
        let turns = Arc::new(tokio::sync::Semaphore::new(cores));
        let mut handles = Vec::new();
        for (i, c) in clusters.iter().enumerate() {
            c.store().keep_history(0);
            let c = c.clone();
            let spec = spec_for(i, &c.name);
            let turn =
                turns.clone().acquire_owned().await.map_err(|e| SimError::Populate { cluster: c.name.clone(), message: e.to_string() })?;
            handles.push(tokio::task::spawn_blocking(move || {
                let _turn = turn;
                fleet::populate(&c, &spec).map_err(|e| (spec.name, e.message))
            }));
        }
        for h in handles {
            match h.await {
                Ok(Ok(())) => {}
                Ok(Err((cluster, message))) => return Err(SimError::Populate { cluster, message }),
                Err(e) => {
                    return Err(SimError::Populate { cluster: "?".into(), message: e.to_string() });
                }
            }
        }
        // An API server's watch cache starts where it first listed: history from
        // before it started is too old to watch from (410), as on a real one.
        for c in &clusters {
            let mut store = c.store();
            store.compact();
            store.keep_history(store::HISTORY);
        }
        let acceptor = server_tls(&tls).map_err(SimError::Tls)?;
        let mut tasks = Vec::new();
        for c in &clusters {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            *c.addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener.local_addr()?);
            tasks.push(tokio::spawn(server::serve(c.clone(), listener, acceptor.clone())));
        }
        let admin_listener = TcpListener::bind(("127.0.0.1", cfg.admin_port)).await?;
        let admin_url = format!("http://{}", admin_listener.local_addr()?);
        tasks.push(tokio::spawn(admin::serve(clusters.clone(), admin_listener)));
        if cfg.live {
            for c in &clusters {
                let c = c.clone();
                let mut changes = c.store().subscribe();
                tasks.push(tokio::spawn(async move {
                    loop {
                        match changes.recv().await {
                            Ok(rec) if rec.event == store::EventType::Deleted && rec.key.plural == "pods" && rec.key.group.is_empty() => {
                                fleet::replace_deleted_pod(&c, &rec.object.value());
                            }
                            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        }
                    }
                }));
            }
            let cs = clusters.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(7);
                let mut tick = tokio::time::interval(Duration::from_millis(1500));
                for step in 1u64.. {
                    tick.tick().await;
                    fleet::life_step(&cs, &mut rng);
                    // About every 45 s somewhere in the fleet, a Deployment is rolled.
                    if step % 30 == 0 {
                        fleet::rollout_step(&cs, &mut rng);
                    }
                }
            }));
        }
        if cfg.traffic {
            let cs = clusters.clone();
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
                    metrics::tick(&cs, now);
                }
            }));
        }
        if cfg.chaos {
            let cs = clusters.clone();
            tasks.push(tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(11);
                let mut tick = tokio::time::interval(Duration::from_secs(20));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    fleet::chaos_step(&cs, &mut rng);
                }
            }));
        }
        Ok(SimFleet { clusters, ca_pem: tls.ca_pem, admin_url, tasks })
    }

    /// The cluster's Prometheus stand-in (`metrics`), as config.yaml's `prometheus:` takes it.
    pub fn prometheus_url(&self, cluster: &str) -> String {
        format!("{}/clusters/{cluster}/prometheus", self.admin_url)
    }

    pub fn cluster(&self, name: &str) -> Option<&Arc<SimCluster>> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// A kubeconfig with `clusterN` (admin) and `clusterN-restricted` contexts.
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_out::render(self)
    }

    /// Writes `path` and, beside it, `path.team`: `clusterN-team` contexts for a user
    /// whose rights end at the `default` namespace, and `clusterN-nodelete` for one who
    /// may create and change Istio objects there but not delete them (kept apart: not
    /// aliases everyone gets).
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        kubeconfig_out::write_private(path, &self.kubeconfig_yaml())?;
        let mut team = path.as_os_str().to_owned();
        team.push(".team");
        kubeconfig_out::write_private(Path::new(&team), &kubeconfig_out::render_users(self, &["team", "nodelete"]))
    }
}

fn random_token(rng: &mut StdRng, cluster: &str, user: &str) -> String {
    let bytes: [u8; 16] = rng.random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{cluster}-{user}-{hex}")
}

fn server_tls(tls: &tls::FleetTls) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes()).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| e.to_string())?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
