//! `meshdeck canary start|status|pause|resume|promote|abort`: a route stepped in
//! by its metrics (see `canary`). `start` and `resume` drive the canary in the
//! foreground to its end; the others ask its driver from any terminal, or act
//! themselves when no process drives it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

use super::front::{err, history, persona, pipeline, show};
use super::output::{Format, table};
use super::{CliError, GlobalArgs, fleet};
use crate::canary::control::Handled;
use crate::canary::driver::{self, Driver};
use crate::canary::store::{Request, Status, Store};
use crate::inventory::Inventory;

#[derive(Subcommand, Debug)]
pub enum CanaryCommand {
    /// Start a plan's canary (its TrafficRoute's `canary` section) and drive it to its end.
    Start(StartArgs),
    /// Every canary, or one: its step, the gates' last values per calling cluster, what it waits for.
    Status(StatusArgs),
    /// Hold the canary at its step: nothing is written or judged until it is resumed.
    Pause(NameArgs),
    /// Continue a paused canary, or drive one no process drives (after a kill or a reboot).
    Resume(DriveArgs),
    /// Write the next step now, without waiting for this one's verdict.
    Promote(DriveArgs),
    /// Stop the canary and go back to the route before its first step.
    Abort(DriveArgs),
}

#[derive(Args, Debug)]
pub struct CanaryArgs {
    #[command(subcommand)]
    pub command: CanaryCommand,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    /// The plan file: one TrafficRoute with a `canary` section.
    #[arg(add = clap_complete::engine::ArgValueCompleter::new(super::completion::plan_files))]
    pub plan: PathBuf,
    /// Start without asking.
    #[arg(short, long)]
    pub yes: bool,
    #[arg(long)]
    pub as_persona: Option<String>,
    /// How long to wait for slow clusters, and each write's deadline.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub timeout: u64,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// A canary's name, or its plan file; every canary when left out.
    pub name: Option<String>,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Args, Debug)]
pub struct NameArgs {
    /// The canary's name (its route's), or its plan file.
    pub name: String,
}

#[derive(Args, Debug)]
pub struct DriveArgs {
    /// The canary's name (its route's), or its plan file.
    pub name: String,
    #[arg(long)]
    pub as_persona: Option<String>,
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub timeout: u64,
}

pub async fn run(global: &GlobalArgs, args: CanaryArgs) -> Result<(), CliError> {
    match args.command {
        CanaryCommand::Start(a) => start(global, a).await,
        CanaryCommand::Status(a) => status(a),
        CanaryCommand::Pause(a) => pause(&a.name).await,
        CanaryCommand::Resume(a) => ask_or_drive(global, a, Request::Resume).await,
        CanaryCommand::Promote(a) => ask_or_drive(global, a, Request::Promote).await,
        CanaryCommand::Abort(a) => ask_or_drive(global, a, Request::Abort).await,
    }
}

fn store() -> Result<Store, CliError> {
    Store::open(&history()?).map_err(err)
}

/// A name, or a plan file's canary route's name.
fn canary_name(arg: &str) -> Result<String, CliError> {
    let path = Path::new(arg);
    if !path.is_file() {
        return Ok(arg.to_string());
    }
    let text = std::fs::read_to_string(path).map_err(|e| CliError::bad_input(format!("{arg}: {e}")))?;
    let docs = crate::plan::parse::parse(arg, &text).map_err(|e| CliError::bad_input(e.to_string()))?;
    docs.iter()
        .find(|d| d.kind.value == "TrafficRoute" && d.spec.value.canary.is_some())
        .map(|d| d.metadata.name.value.clone())
        .ok_or_else(|| CliError::bad_input(format!("{arg}: no TrafficRoute with a canary section")))
}

fn known(store: &Store, name: &str) -> Result<crate::canary::CanaryState, CliError> {
    store.load(name).map_err(err)?.ok_or_else(|| CliError::bad_input(format!("no canary {name} (meshdeck canary status lists them)")))
}

/// Progress lines on stderr, with the time.
fn say() -> Box<dyn Fn(&str) + Send + Sync> {
    Box::new(|line: &str| eprintln!("{} {line}", chrono::Local::now().format("%H:%M:%S")))
}

async fn fleet_and_inventory(global: &GlobalArgs, timeout: u64) -> Result<(Vec<crate::registry::Cluster>, Inventory), CliError> {
    let (clusters, _) = fleet::registry(global).await?;
    let mut inventory = Inventory::start(&clusters);
    inventory.settled(Duration::from_secs(timeout)).await;
    Ok((clusters, inventory))
}

async fn start(global: &GlobalArgs, args: StartArgs) -> Result<(), CliError> {
    let (clusters, inventory) = fleet_and_inventory(global, args.timeout).await?;
    let snap = inventory.snapshots.borrow().clone();
    let plan = super::render::read_plan_replacing(&args.plan, &snap, &[])?;
    if !plan.unseen.is_empty() {
        return Err(CliError::failed(format!("{} (nothing was written)", plan.unseen_line())));
    }
    let (route, canary) = driver::canary_route(&plan).map_err(|e| CliError::bad_input(format!("{}: {e}", args.plan.display())))?;
    let persona = persona(&clusters, args.as_persona.as_deref())?;
    let pipeline = pipeline(&clusters, persona, false, args.timeout)?;
    super::front::announce_interrupted(pipeline.history());
    let first = Driver::prepare_start(&pipeline, &inventory, &plan).await.map_err(err)?;
    eprintln!("canary {}: {} from {}, every {}s", route.name, route.service.key(), route.from_clusters.join(","), canary.interval);
    for k in 1..=canary.steps.len() {
        eprintln!("  step {k}: {}", driver::weights_line(&driver::step_plan(route, canary, k)));
    }
    eprintln!("step 1's change:");
    show(&first);
    let question = format!("Start the canary, writing step 1 to {} now?", first.changes.clusters().join(", "));
    super::front::confirm(&clusters, &first, args.yes, &question, "not started")?;
    let file = args.plan.display().to_string();
    let mut d = Driver::start(pipeline, inventory, &plan, &file, first, say()).await.map_err(err)?;
    conclude(d.run().await, &d.state)
}

/// How a drive ended: promoted is success; going back, or a pause it could not
/// finish, is a failure with its why.
fn conclude(ended: driver::Ended, state: &crate::canary::CanaryState) -> Result<(), CliError> {
    let status = ended.map_err(err)?;
    let why = state.events.last().map(|e| e.text.clone()).unwrap_or_default();
    match status {
        Status::Promoted => {
            eprintln!("canary {} promoted in {} steps ({} records: meshdeck history)", state.name, state.step, state.records.len());
            Ok(())
        }
        // The last event says how it ended and why (`rolled back (recorded as …): step 2 failed: …`).
        _ => Err(CliError::failed(format!("canary {}: {why}", state.name))),
    }
}

/// Ask the driver; with none, drive it here, the request first.
async fn ask_or_drive(global: &GlobalArgs, args: DriveArgs, request: Request) -> Result<(), CliError> {
    let name = canary_name(&args.name)?;
    if global.read_only {
        return Err(CliError::failed(format!(
            "read-only: a canary's {} writes to the fleet; nothing was asked",
            format!("{request:?}").to_lowercase()
        )));
    }
    let store = store()?;
    match crate::canary::control::handle(&store, &name, request).map_err(err)? {
        Handled::Asked(driver) => {
            eprintln!("asked canary {name}'s driver ({driver}) to {}", format!("{request:?}").to_lowercase());
            return wait_for(&store, &name, request).await;
        }
        Handled::Done(said) => {
            eprintln!("{said}");
            return Ok(());
        }
        Handled::Drive => {}
    }
    let (clusters, inventory) = fleet_and_inventory(global, args.timeout).await?;
    let persona = persona(&clusters, args.as_persona.as_deref())?;
    let pipeline = pipeline(&clusters, persona, false, args.timeout)?;
    let mut d = Driver::resume(pipeline, inventory, &name, say()).await.map_err(err)?;
    eprintln!("driving canary {name} from step {} ({})", d.state.step, d.state.status.as_str());
    conclude(d.run().await, &d.state)
}

/// Until another process's driver has done what was asked (an abort: until it has gone back).
async fn wait_for(store: &Store, name: &str, request: Request) -> Result<(), CliError> {
    let started = std::time::Instant::now();
    loop {
        let state = known(store, name)?;
        let done = match request {
            Request::Pause => state.status == Status::Paused,
            Request::Resume => state.status != Status::Paused,
            Request::Abort => !state.status.active(),
            Request::Promote => true,
        };
        if done && !store.pending(name) {
            eprintln!("canary {name}: {} at step {}", state.status.as_str(), state.step);
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(CliError::failed(format!("canary {name}'s driver has not answered within 120s (still {})", state.status.as_str())));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn pause(arg: &str) -> Result<(), CliError> {
    let name = canary_name(arg)?;
    let store = store()?;
    match crate::canary::control::handle(&store, &name, Request::Pause).map_err(err)? {
        Handled::Asked(driver) => {
            eprintln!("asked canary {name}'s driver ({driver}) to pause");
            wait_for(&store, &name, Request::Pause).await
        }
        Handled::Done(said) => {
            eprintln!("{said}");
            Ok(())
        }
        Handled::Drive => Err(CliError::failed(format!("canary {name}: a pause needs no driver"))),
    }
}

fn status(args: StatusArgs) -> Result<(), CliError> {
    let store = store()?;
    let now = driver::now();
    let (all, bad) = store.list();
    for b in bad {
        eprintln!("warning: {b}");
    }
    let chosen: Vec<crate::canary::CanaryState> = match &args.name {
        Some(n) => vec![known(&store, &canary_name(n)?)?],
        None => all,
    };
    match args.output {
        Format::Json => {
            let v: Vec<serde_json::Value> = chosen
                .iter()
                .map(|s| {
                    let mut v = serde_json::to_value(s).unwrap_or_default();
                    v["driver"] = serde_json::json!(store.driver(&s.name));
                    v["nextCheckIn"] =
                        serde_json::json!(s.next_check.filter(|_| s.status == Status::Running).map(|t| (t - now).max(0.0).round()));
                    v
                })
                .collect();
            let out = if args.name.is_some() { v.into_iter().next().unwrap_or_default() } else { serde_json::Value::Array(v) };
            println!("{}", serde_json::to_string_pretty(&out).map_err(|e| CliError::failed(e.to_string()))?);
        }
        Format::Table if args.name.is_some() => {
            for s in &chosen {
                for l in crate::canary::view::lines(s, store.driver(&s.name).as_deref(), now) {
                    println!("{}", l.text);
                }
            }
        }
        Format::Table if chosen.is_empty() => println!("no canaries (meshdeck canary start PLAN starts one)"),
        Format::Table => {
            let rows: Vec<Vec<String>> = chosen
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.status.as_str().into(),
                        format!("{}/{}", s.step, s.steps.len()),
                        format!("{} {}%", s.destination, crate::canary::view::weight_now(s)),
                        crate::canary::view::next_in(s, now).unwrap_or_else(|| "-".into()),
                        store.driver(&s.name).unwrap_or_else(|| "-".into()),
                        s.waiting.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print!("{}", table(&["CANARY", "STATUS", "STEP", "CANARY AT", "NEXT CHECK", "DRIVER", "WAITING"], &rows));
        }
    }
    Ok(())
}
