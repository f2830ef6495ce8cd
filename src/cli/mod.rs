//! The command line: clap definitions and dispatch. Exit codes: 0 success,
//! 1 failure of the operation, 2 bad input (usage, invalid plan, bad kubeconfig).

mod analyze;
mod apply;
mod bench;
mod canary;
mod clusters;
mod cockpit;
mod completion;
mod fleet;
mod front;
mod inventory;
mod output;
mod render;
mod routes;
mod sim;
mod traffic;
mod trust;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "meshdeck", version, about = "A terminal cockpit for Istio across many Kubernetes clusters")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(flatten)]
    pub look: cockpit::LookArgs,
    /// Without a subcommand: the cockpit on the kubeconfig's clusters.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options every subcommand that talks to clusters understands.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalArgs {
    /// Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Register only this context (repeatable; default: every context, or the config file's clusters).
    /// An alias of a registered cluster acts for it.
    #[arg(long = "context", global = true, add = clap_complete::engine::ArgValueCompleter::new(completion::contexts))]
    pub contexts: Vec<String>,
    /// Refuse every write to every cluster.
    #[arg(long, global = true)]
    pub read_only: bool,
    /// Say more about failures: a failed exec plugin's own error output (its stderr,
    /// when kubeconfig's interactiveMode is Never; otherwise it already went to the terminal).
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The cockpit on the embedded simulated fleet (bookinfo on 3 clusters): no cluster needed.
    Demo(cockpit::DemoArgs),
    /// Run the simulated fleet in the foreground and write a kubeconfig for it.
    Sim(sim::SimArgs),
    /// Write the simulated fleet's starting world as YAML, one file per cluster.
    World(sim::WorldArgs),
    /// Registered clusters and the facts of their meshes.
    Clusters(clusters::ClustersArgs),
    /// The cross-cluster table of services and versions.
    Inventory(inventory::InventoryArgs),
    /// Every fleet check: findings with a code, severity and fix; exit 1 on an error.
    Analyze(analyze::AnalyzeArgs),
    /// Where calls to a service go now, per calling cluster, from the live Istio objects.
    Routes(routes::RoutesArgs),
    /// A service's effective route from one cluster as a TrafficRoute plan (hand-written objects included).
    Import(routes::ImportArgs),
    /// The intended split beside the observed one, per calling cluster, from each cluster's Prometheus.
    Traffic(traffic::TrafficArgs),
    /// Each istiod's proxies and whether they have the config it sent (as istioctl proxy-status).
    ProxyStatus(traffic::ProxyStatusArgs),
    /// The root of trust: each cluster's root and CA, and which clusters share a root.
    Trust(trust::TrustArgs),
    /// The Istio objects each cluster needs for a plan.
    Render(render::RenderArgs),
    /// What applying a plan would change: preflight, server dry run, diff against live.
    Diff(apply::DiffArgs),
    /// Apply a plan everywhere or nowhere: checked first, confirmed, recorded, reversible.
    Apply(apply::ApplyArgs),
    /// Past applies and rollbacks.
    History(apply::HistoryArgs),
    /// Step a route in by its metrics across the fleet: start, status, pause, resume, promote, abort.
    Canary(canary::CanaryArgs),
    /// Restore the fleet to the state before an apply (through the same pipeline).
    Rollback(apply::RollbackArgs),
    /// Print the shell completion script: `source <(meshdeck completion bash)`.
    Completion(completion::CompletionArgs),
    /// Benchmarks that print numbers (the sim runs as a child process).
    #[command(hide = true)]
    Bench(bench::BenchArgs),
}

/// An error with the exit code it maps to.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self { code: 2, message: message.into() }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Self { code: 1, message: message.into() }
    }
}

/// After color-eyre's hook: a closed stdout (`meshdeck history | head -1`) ends the
/// command quietly with SIGPIPE's conventional status; any other panic on a stderr
/// that is not a terminal prints one line and writes the full report to a file in
/// the state directory, instead of a coloured backtrace into a log or a pipe.
pub fn install_panic_hook() {
    use std::io::IsTerminal;
    let inner = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied()).unwrap_or("");
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        if std::io::stderr().is_terminal() {
            inner(info);
            return;
        }
        let report = format!("{info}\n\n{}", std::backtrace::Backtrace::force_capture());
        let written = crate::config::state_dir().and_then(|d| {
            crate::config::private_dir(&d).ok()?;
            let path = d.join(format!("panic-{}.txt", chrono::Utc::now().format("%Y%m%d-%H%M%S")));
            crate::config::write_private(&path, &report).ok().map(|_| path)
        });
        let first = msg.lines().next().unwrap_or("(no message)");
        match written {
            Some(p) => eprintln!("meshdeck: internal error: {first}; the full report is in {}", p.display()),
            None => eprintln!("meshdeck: internal error: {first}\n{report}"),
        }
    }));
}

pub fn main() -> ExitCode {
    // A completion request from the shell (COMPLETE=<shell>): answer and exit.
    clap_complete::CompleteEnv::with_factory(<Cli as clap::CommandFactory>::command).var(completion::VAR).complete();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    crate::registry::health::set_verbose(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A command logs only when asked (MESHDECK_LOG), to the cockpit's log file; the
    // cockpit (and the sim that serves it) set up their own.
    if std::env::var_os("MESHDECK_LOG").is_some() && !matches!(cli.command, None | Some(Command::Demo(_))) {
        let _ = crate::tui::init_logging();
    }
    let result = runtime.block_on(async {
        match cli.command {
            None => cockpit::cockpit(&cli.global, &cli.look).await,
            Some(Command::Demo(args)) => cockpit::demo(&cli.global, &cli.look, args).await,
            Some(Command::Sim(args)) => sim::run(args).await,
            Some(Command::World(args)) => sim::world(args),
            Some(Command::Clusters(args)) => clusters::run(&cli.global, args).await,
            Some(Command::Inventory(args)) => inventory::run(&cli.global, args).await,
            Some(Command::Analyze(args)) => analyze::run(&cli.global, args).await,
            Some(Command::Routes(args)) => routes::run(&cli.global, args).await,
            Some(Command::Traffic(args)) => traffic::run(&cli.global, args).await,
            Some(Command::ProxyStatus(args)) => traffic::proxy_status(&cli.global, args).await,
            Some(Command::Import(args)) => routes::import(&cli.global, args).await,
            Some(Command::Trust(args)) => trust::run(&cli.global, args).await,
            Some(Command::Render(args)) => render::run(&cli.global, args).await,
            Some(Command::Diff(args)) => apply::diff(&cli.global, args).await,
            Some(Command::Apply(args)) => apply::apply(&cli.global, args).await,
            Some(Command::History(args)) => apply::list(args),
            Some(Command::Canary(args)) => canary::run(&cli.global, args).await,
            Some(Command::Rollback(args)) => apply::rollback(&cli.global, args).await,
            Some(Command::Completion(args)) => completion::run(args),
            Some(Command::Bench(args)) => bench::run(&cli.global, args).await,
        }
    });
    // Watch tasks may still be parked in the runtime; do not wait for them.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
