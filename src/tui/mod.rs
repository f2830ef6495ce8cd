//! The cockpit: a thin front over the pipeline. It owns the terminal and the
//! loop; `app::update` owns state; `views::draw` reads it. Background work
//! (inventory, prepare, apply, history) talks to it only through `Msg`s.

pub mod action;
pub mod app;
pub mod composer;
pub mod keymap;
pub mod msg;
pub mod named_file;
pub mod terminal;
pub mod theme;
pub mod views;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc::{self, UnboundedSender};

use app::{AppState, update};
use keymap::Keymap;
use msg::{Effect, Msg};
use theme::Theme;

use crate::apply::ApplyOptions;
use crate::apply::history::History;
use crate::inventory::Inventory;
use crate::registry::Cluster;

pub struct CockpitConfig {
    pub clusters: Vec<Cluster>,
    /// The kubeconfig and config file, to register more contexts from the clusters view.
    pub kubeconfig: Option<kube::config::Kubeconfig>,
    pub config: crate::config::MeshdeckConfig,
    pub keymap: Keymap,
    pub theme: Theme,
    pub read_only: bool,
    /// Config problems to show in the status bar.
    pub warnings: Vec<String>,
    pub data_dir: Option<PathBuf>,
    pub config_dir: Option<PathBuf>,
    /// The persona to act as (`--as-persona`); None: matched by context or user.
    pub persona: Option<String>,
    /// A canary plan to start at once (`meshdeck demo --canary`): its name and text.
    pub start_canary: Option<(String, String)>,
}

/// Everything background work needs; cheap to clone into tasks.
#[derive(Clone)]
struct Runner {
    clusters: Arc<Vec<Cluster>>,
    data_dir: Option<PathBuf>,
    config_dir: Option<PathBuf>,
    persona: Option<String>,
    tx: UnboundedSender<Msg>,
    paused: Arc<AtomicBool>,
}

impl Runner {
    fn history(&self) -> Result<History, String> {
        let dir = self.data_dir.as_ref().ok_or("no data directory for history")?;
        History::open(dir).map_err(|e| e.to_string())
    }

    /// The conductor, as this run's persona; `force` takes back fields others hold (a rollback).
    fn pipeline(&self, force: bool) -> Result<crate::apply::Pipeline, String> {
        self.pipeline_with(force, None)
    }

    fn pipeline_with(&self, force: bool, progress: Option<UnboundedSender<String>>) -> Result<crate::apply::Pipeline, String> {
        let dir = self.data_dir.as_ref().ok_or("no data directory for history")?;
        let persona =
            crate::policy::persona_for(&self.clusters, self.persona.as_deref(), self.config_dir.as_deref()).map_err(|e| e.to_string())?;
        let opts = ApplyOptions { force_conflicts: force, concurrency: 8, progress, ..Default::default() };
        Ok(crate::apply::Pipeline::new(&self.clusters, dir, persona, opts).map_err(|e| e.to_string())?.quiet_signals())
    }

    /// A canary asked to pause, resume, promote or abort: its driver asked, or, with
    /// none, the cockpit drives it from here until it ends (or the cockpit quits).
    async fn canary(&self, name: &str, request: crate::canary::Request) -> Result<(), String> {
        use crate::canary::control::{Handled, handle};
        let store = crate::canary::Store::open(&self.history()?).map_err(|e| e.to_string())?;
        match handle(&store, name, request).map_err(|e| e.to_string())? {
            Handled::Asked(driver) => {
                let _ = self.tx.send(Msg::Log(format!("canary {name}: asked its driver ({driver})")));
                Ok(())
            }
            Handled::Done(said) => {
                let _ = self.tx.send(Msg::Log(said));
                Ok(())
            }
            Handled::Drive => self.drive_canary(name).await,
        }
    }

    /// A driver's lines, for the log view.
    fn say(&self) -> Box<dyn Fn(&str) + Send + Sync> {
        let tx = self.tx.clone();
        Box::new(move |line: &str| {
            let _ = tx.send(Msg::Log(line.to_string()));
        })
    }

    /// Drive a canary here: its lines go to the log view.
    async fn drive_canary(&self, name: &str) -> Result<(), String> {
        let mut inventory = Inventory::start(&self.clusters);
        inventory.settled(Duration::from_secs(10)).await;
        let mut driver =
            crate::canary::Driver::resume(self.pipeline(false)?, inventory, name, self.say()).await.map_err(|e| e.to_string())?;
        let _ = self.tx.send(Msg::Log(format!("canary {name}: driven by the cockpit from step {}", driver.state.step)));
        self.drive(&mut driver).await
    }

    async fn drive(&self, driver: &mut crate::canary::Driver) -> Result<(), String> {
        let ended = driver.run().await.map_err(|e| e.to_string())?;
        let _ = self.tx.send(Msg::Log(format!("canary {}: {}", driver.state.name, ended.as_str())));
        Ok(())
    }

    /// Start a canary from a plan's text (the demo's `--canary`: the flag is the operator's yes).
    async fn start_canary(&self, file: &str, text: &str) -> Result<(), String> {
        let mut inventory = Inventory::start(&self.clusters);
        let snap = inventory.settled(Duration::from_secs(10)).await;
        let plan =
            crate::plan::load(file, text, &snap).map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))?;
        let pipeline = self.pipeline(false)?;
        let first = crate::canary::Driver::prepare_start(&pipeline, &inventory, &plan).await.map_err(|e| e.to_string())?;
        let mut driver =
            crate::canary::Driver::start(pipeline, inventory, &plan, file, first, self.say()).await.map_err(|e| e.to_string())?;
        self.drive(&mut driver).await
    }

    fn spawn(&self, effect: Effect, snapshot: Arc<crate::inventory::FleetSnapshot>) {
        let r = self.clone();
        match effect {
            Effect::Quit | Effect::Register(_) | Effect::SwitchContext { .. } => {}
            Effect::LoadHistory => {
                tokio::spawn(async move {
                    let records = r.history().and_then(|h| h.list().map_err(|e| e.to_string())).unwrap_or_default();
                    let _ = r.tx.send(Msg::History(records));
                });
            }
            Effect::Prepare { generation, plan } => {
                tokio::spawn(async move {
                    let result = async {
                        let rendered = crate::render::render(&plan, &snapshot).map_err(|e| e.to_string())?;
                        r.pipeline(false)?.plan(&plan, &rendered, &[]).await.map(Box::new).map_err(|e| e.to_string())
                    }
                    .await;
                    let _ = r.tx.send(Msg::Prepared { generation, result });
                });
            }
            Effect::PrepareRollback { generation, id } => {
                tokio::spawn(async move {
                    let result =
                        async { r.pipeline(true)?.rollback(&id, false).await.map(|(_, p)| Box::new(p)).map_err(|e| e.to_string()) }.await;
                    let _ = r.tx.send(Msg::Prepared { generation, result });
                });
            }
            Effect::Execute { generation, prepared } => {
                tokio::spawn(async move {
                    let (ptx, mut prx) = mpsc::unbounded_channel();
                    let forward = r.tx.clone();
                    let pump = tokio::spawn(async move {
                        while let Some(line) = prx.recv().await {
                            let _ = forward.send(Msg::Progress { generation, line });
                        }
                    });
                    let force = prepared.intent.rollback_of.is_some();
                    let result = async {
                        let pipeline = r.pipeline_with(force, Some(ptx))?;
                        // Execute follows the confirm key on the shown diff: the operator's yes.
                        let written =
                            pipeline.write(*prepared, crate::apply::Confirmation::Cockpit, || Ok(())).await.map_err(|e| e.to_string())?;
                        Ok((written.record.report, written.record.id))
                    }
                    .await;
                    let _ = pump.await;
                    let _ = r.tx.send(Msg::Applied { generation, result });
                });
            }
            Effect::Canary { name, request } => {
                tokio::spawn(async move {
                    if let Err(e) = r.canary(&name, request).await {
                        let _ = r.tx.send(Msg::Log(format!("canary {name}: {e}")));
                    }
                });
            }
            Effect::ExternalEdit(text) => {
                // Blocking on the terminal is the point here: the editor owns it meanwhile.
                let result = terminal::edit_externally(&text, &r.paused);
                let _ = r.tx.send(Msg::EditedExternally(result));
            }
        }
    }
}

/// Write logs to a file in the state directory: never to the screen while the cockpit runs.
pub fn init_logging() -> Option<PathBuf> {
    let dir = crate::config::state_dir()?;
    crate::config::private_dir(&dir).ok()?;
    let path = dir.join("meshdeck.log");
    // Cluster names, errors and plans go in it: the user's only (0600 in a 0700 directory).
    let file = crate::config::private_file(&path, crate::config::Open::Append).ok()?;
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new(std::env::var("MESHDECK_LOG").unwrap_or_else(|_| "meshdeck=info".into())))
        .finish();
    tracing::subscriber::set_global_default(subscriber).ok()?;
    Some(path)
}

/// Watching the registered clusters: the inventory, the task that forwards its
/// snapshots, and the one that reads each cluster's root of trust.
struct Watching {
    inventory: Inventory,
    forward: tokio::task::JoinHandle<()>,
    trust: tokio::task::JoinHandle<()>,
    traffic: tokio::task::JoinHandle<()>,
}

/// How often the service view's observed split is read again (over a minute's window).
const TRAFFIC_EVERY: std::time::Duration = std::time::Duration::from_secs(5);
const TRAFFIC_WINDOW: u64 = 60;

/// The observed split of every routed service, now and every `TRAFFIC_EVERY`. Its
/// own task, each Prometheus under its deadline: a slow one never stalls the loop.
async fn read_traffic(
    clusters: Vec<Cluster>,
    snapshots: tokio::sync::watch::Receiver<Arc<crate::inventory::FleetSnapshot>>,
    tx: UnboundedSender<Msg>,
) {
    loop {
        let snap = snapshots.borrow().clone();
        let mut routes = crate::inventory::routes::effective_routes(&snap, None, None);
        routes.retain(|r| r.virtual_service.is_some());
        if !routes.is_empty() {
            let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
            let seen = crate::observe::observed(&clusters, &routes, None, TRAFFIC_WINDOW, now).await;
            if tx.send(Msg::Traffic(seen)).is_err() {
                return;
            }
        }
        tokio::time::sleep(TRAFFIC_EVERY).await;
    }
}

/// Every canary in history and who drives it, every second (a file each: cheap).
async fn read_canaries(runner: Runner) {
    let Ok(store) = runner.history().and_then(|h| crate::canary::Store::open(&h).map_err(|e| e.to_string())) else { return };
    loop {
        let rows = store.list().0.into_iter().map(|state| app::CanaryRow { driver: store.driver(&state.name), state }).collect();
        if runner.tx.send(Msg::Canaries(rows)).is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How often the clusters view's trust columns are read again. A root that changes
/// (the inventory watches `istio-ca-root-cert`) has them read at once.
const TRUST_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

impl Watching {
    fn start(clusters: &[Cluster], tx: UnboundedSender<Msg>) -> Watching {
        let inventory = Inventory::start(clusters);
        let mut snapshots = inventory.snapshots.clone();
        let trust_tx = tx.clone();
        let forward = tokio::spawn(async move {
            while snapshots.changed().await.is_ok() {
                let snap = snapshots.borrow_and_update().clone();
                if tx.send(Msg::Fleet(snap)).is_err() {
                    return;
                }
            }
        });
        let trust = tokio::spawn(read_trust(clusters.to_vec(), inventory.snapshots.clone(), trust_tx.clone()));
        let traffic = tokio::spawn(read_traffic(clusters.to_vec(), inventory.snapshots.clone(), trust_tx));
        Watching { inventory, forward, trust, traffic }
    }
}

/// Each cluster's trust status (three reads a cluster), now, every `TRUST_EVERY`,
/// whenever a cluster's distributed root changes, and when a cluster is live again.
async fn read_trust(
    clusters: Vec<Cluster>,
    mut snapshots: tokio::sync::watch::Receiver<Arc<crate::inventory::FleetSnapshot>>,
    tx: UnboundedSender<Msg>,
) {
    // A changed root, or a cluster live again (its CA was unknown while it was dark),
    // has the facts read again at once.
    let roots = |s: &crate::inventory::FleetSnapshot| -> Vec<(Option<String>, bool)> {
        s.clusters.iter().map(|c| (c.mesh.root_cert_fingerprint.clone(), matches!(c.state, crate::inventory::ClusterState::Live))).collect()
    };
    let mut seen = roots(&snapshots.borrow());
    loop {
        let statuses = crate::inventory::trust::read_fleet(&clusters, std::time::Duration::from_secs(10)).await;
        if tx.send(Msg::Trust(statuses)).is_err() {
            return;
        }
        let next = tokio::time::sleep(TRUST_EVERY);
        tokio::pin!(next);
        loop {
            tokio::select! {
                _ = &mut next => break,
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let now_roots = roots(&snapshots.borrow_and_update());
                    let back = now_roots.iter().zip(&seen).any(|(now, before)| now.1 && !before.1);
                    let rerooted = now_roots.iter().map(|r| &r.0).ne(seen.iter().map(|r| &r.0));
                    seen = now_roots;
                    if back || rerooted {
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        self.forward.abort();
        self.trust.abort();
        self.traffic.abort();
    }
}

/// Kubeconfig contexts that are not registered yet.
fn available_contexts(kc: Option<&kube::config::Kubeconfig>, clusters: &[Cluster]) -> Vec<String> {
    kc.map(|k| k.contexts.iter().map(|c| c.name.clone()).filter(|n| !clusters.iter().any(|c| c.answers_to(n))).collect())
        .unwrap_or_default()
}

/// A kubeconfig context to connect: registered as a new cluster, or made to act
/// for one. Building its client may run an exec plugin, so it runs off the loop.
struct ConnectJob {
    kc: kube::config::Kubeconfig,
    config: crate::config::MeshdeckConfig,
    read_only: bool,
    clusters: Arc<Vec<Cluster>>,
    effect: Effect,
}

/// What a `ConnectJob` found, for the loop to take in.
enum Connected {
    Registered { context: String, result: Result<Vec<Cluster>, String> },
    Switched { cluster: String, context: String, result: Result<Box<Cluster>, String> },
}

impl ConnectJob {
    fn context(&self) -> &str {
        match &self.effect {
            Effect::Register(context) | Effect::SwitchContext { context, .. } => context,
            _ => "",
        }
    }

    /// The exec plugin that will want the terminal, if any.
    fn terminal_program(&self) -> Option<String> {
        let context = self.context();
        if !crate::registry::needs_terminal(&self.kc, context) {
            return None;
        }
        let program = crate::registry::exec_of(&self.kc, context).and_then(|e| e.command.as_deref()).unwrap_or("?");
        Some(crate::registry::health::base_name(program))
    }

    async fn run(self) -> Connected {
        match &self.effect {
            Effect::SwitchContext { cluster, context } => Connected::Switched {
                cluster: cluster.clone(),
                context: context.clone(),
                result: switch_context(&self.kc, &self.clusters, cluster, context).await.map(Box::new),
            },
            _ => {
                let context = self.context().to_string();
                let result = crate::registry::connect(&self.kc, std::slice::from_ref(&context), &self.config, self.read_only)
                    .await
                    .map_err(|e| e.to_string());
                Connected::Registered { context, result }
            }
        }
    }
}

/// Take in a finished connection: watch the new cluster, or the switched one again.
async fn connected(done: Connected, state: &mut AppState, runner: &mut Runner, watching: &mut Watching, tx: &UnboundedSender<Msg>) {
    match done {
        Connected::Registered { context, result: Ok(added) } => {
            let mut all: Vec<Cluster> = runner.clusters.as_ref().clone();
            all.extend(added);
            *watching = Watching::start(&all, tx.clone());
            state.log(format!("registered {context}; watching {} clusters", all.len()));
            runner.clusters = Arc::new(all);
        }
        Connected::Registered { context, result: Err(e) } => {
            state.status = Some(format!("cannot register {context}: {e}"));
            state.log(format!("registering {context} failed: {e}"));
            if !state.available.contains(&context) {
                state.available.push(context);
            }
        }
        Connected::Switched { cluster, context, result } => {
            // Look the cluster up again: the registry may have grown meanwhile.
            let index = runner.clusters.iter().position(|c| c.name == cluster);
            match (index, result) {
                (Some(index), Ok(switched)) => {
                    watching.inventory.restart(index, &switched).await;
                    let mut all: Vec<Cluster> = runner.clusters.as_ref().clone();
                    all[index] = *switched;
                    runner.clusters = Arc::new(all);
                    state.status = Some(format!("{cluster}: acting as {context}"));
                    state.log(format!("{cluster}: acting as {context}; watching it again with its credentials"));
                }
                (_, result) => {
                    let e = result.err().unwrap_or_else(|| format!("{cluster} is not registered"));
                    let acting = runner.clusters.iter().find(|c| c.name == cluster).map(|c| c.context.name.clone()).unwrap_or_default();
                    state.status = Some(format!("{cluster}: cannot act as {context}: {e}; still acting as {acting}"));
                    state.log(format!("{cluster}: switch to {context} failed: {e}"));
                }
            }
        }
    }
}

/// Let `context` act for cluster `name`: connect as it and ask the cluster who it
/// is first. On any failure the acting context stays and the error says why.
async fn switch_context(kc: &kube::config::Kubeconfig, clusters: &[Cluster], name: &str, context: &str) -> Result<Cluster, String> {
    let index = clusters.iter().position(|c| c.name == name).ok_or_else(|| format!("{name} is not registered"))?;
    let mut cluster = clusters[index].clone();
    let client = crate::registry::client_for(kc, context, cluster.options.namespaces.len()).await?;
    let probe = crate::registry::health::probe(&client, Duration::from_secs(5)).await;
    if let Some(e) = probe.error {
        return Err(e.message().to_string());
    }
    // The alias must reach the same cluster (a refusal to say is not a mismatch).
    if let Ok(old) = &cluster.client
        && let (Ok(a), Ok(b)) = (crate::inventory::watch::cluster_uid(old).await, crate::inventory::watch::cluster_uid(&client).await)
        && a != b
    {
        return Err(format!("{context} answers as another cluster (kube-system uid {b}, not {a})"));
    }
    if !cluster.act_as(context, Ok(client)) {
        return Err(format!("{context} is not an alias of {name}"));
    }
    Ok(cluster)
}

pub async fn run(cfg: CockpitConfig) -> Result<(), String> {
    let log_file = init_logging();
    let (tx, mut rx) = mpsc::unbounded_channel::<Msg>();
    let (conn_tx, mut conn_rx) = mpsc::unbounded_channel::<Connected>();
    let mut watching = Watching::start(&cfg.clusters, tx.clone());
    let tick_tx = tx.clone();
    let ticker = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if tick_tx.send(Msg::Tick(chrono::Utc::now())).is_err() {
                return;
            }
        }
    });
    let paused = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let available = available_contexts(cfg.kubeconfig.as_ref(), &cfg.clusters);
    let mut runner = Runner {
        clusters: Arc::new(cfg.clusters),
        data_dir: cfg.data_dir,
        config_dir: cfg.config_dir,
        persona: cfg.persona,
        tx: tx.clone(),
        paused: paused.clone(),
    };
    let canaries = tokio::spawn(read_canaries(runner.clone()));
    if let Some((file, text)) = cfg.start_canary.clone() {
        let r = runner.clone();
        tokio::spawn(async move {
            if let Err(e) = r.start_canary(&file, &text).await {
                let _ = r.tx.send(Msg::Log(format!("canary {file} not started: {e}")));
            }
        });
    }
    let initial = watching.inventory.snapshots.borrow().clone();
    let mut state = AppState::new(initial, cfg.keymap, cfg.read_only, chrono::Utc::now());
    state.warnings = cfg.warnings;
    // An apply that was interrupted (killed, machine down) before it finished: say so first.
    if let Ok(h) = runner.history() {
        for r in h.interrupted().unwrap_or_default() {
            state.warnings.push(format!(
                "{} {} was interrupted before it finished: roll it back from the history view (g h, then u on it)",
                r.action, r.id
            ));
        }
        let records = h.list().unwrap_or_default();
        let mut left: std::collections::BTreeMap<String, usize> = Default::default();
        for (t, _) in h.outstanding_prunes(&records) {
            *left.entry(t.cluster).or_default() += 1;
        }
        for (cluster, n) in left {
            state.warnings.push(format!(
                "{n} object{} left on {cluster} by a change that could not reach it: the next apply that reaches {cluster} removes them",
                if n == 1 { "" } else { "s" }
            ));
        }
        state.warnings.extend(h.unreadable().unwrap_or_default());
    }
    state.available = available;
    if cfg.start_canary.is_some() {
        state.view = app::View::Canary;
    }
    if let Some(p) = log_file {
        state.log(format!("logging to {}", p.display()));
    }
    state.log(format!("watching {} clusters", runner.clusters.len()));
    let mut terminal = terminal::init();
    // A signal while nothing is written ends the cockpit: the terminal is given back first.
    crate::apply::signals::on_exit(terminal::restore);
    terminal::spawn_input(tx.clone(), paused.clone(), stop.clone());
    let mut dirty = true;
    let result = loop {
        if dirty {
            let size = terminal.size().map_err(|e| e.to_string())?;
            let body = ratatui::layout::Rect::new(0, 0, size.width, size.height.saturating_sub(2));
            let rows = views::table_geometry(&state, body).table_rows;
            update(&mut state, Msg::Layout { rows });
            if let Err(e) = terminal.draw(|f| views::draw(f, &state, &cfg.theme)) {
                break Err(e.to_string());
            }
        }
        let first = tokio::select! {
            m = rx.recv() => m,
            Some(done) = conn_rx.recv() => {
                connected(done, &mut state, &mut runner, &mut watching, &tx).await;
                dirty = true;
                continue;
            }
        };
        let Some(first) = first else { break Ok(()) };
        // Drain what is queued: many events, one frame.
        let mut batch = vec![first];
        while let Ok(m) = rx.try_recv() {
            batch.push(m);
        }
        for m in batch {
            for effect in update(&mut state, m) {
                if let Effect::Register(_) | Effect::SwitchContext { .. } = &effect {
                    let Some(kc) = cfg.kubeconfig.clone() else { continue };
                    let job =
                        ConnectJob { kc, config: cfg.config.clone(), read_only: cfg.read_only, clusters: runner.clusters.clone(), effect };
                    match job.terminal_program() {
                        // The plugin gets the terminal (a prompt, a device code); the cockpit steps aside.
                        Some(program) => {
                            let context = job.context().to_string();
                            let done = terminal::suspended(&paused, &format!("{context}: running {program} for credentials"), || {
                                tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(job.run()))
                            });
                            let _ = terminal.clear();
                            let _ = conn_tx.send(done);
                        }
                        // Otherwise off the loop: a slow plugin or server never freezes the cockpit.
                        None => {
                            let conn_tx = conn_tx.clone();
                            let handle = tokio::runtime::Handle::current();
                            tokio::task::spawn_blocking(move || {
                                let _ = conn_tx.send(handle.block_on(job.run()));
                            });
                        }
                    }
                    continue;
                }
                let suspends = matches!(effect, Effect::ExternalEdit(_));
                runner.spawn(effect, state.snapshot.clone());
                if suspends {
                    // Back from another program: draw every cell again.
                    let _ = terminal.clear();
                }
            }
        }
        // Every message may change what is shown; idle means no messages, so no frames.
        dirty = true;
        if state.quit {
            break Ok(());
        }
    };
    stop.store(true, Ordering::SeqCst);
    ticker.abort();
    canaries.abort();
    terminal::restore();
    drop(watching);
    result
}
