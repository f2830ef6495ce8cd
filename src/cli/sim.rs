//! `meshdeck sim`: the simulated fleet, headless, in the foreground.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::CliError;
use meshdeck_sim::{MeshTopology, SimConfig, SimFleet};

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Number of clusters (cluster1..clusterN).
    #[arg(long, default_value_t = 3)]
    pub clusters: usize,
    /// Extra services per cluster, each with versions v1 (2 pods) and v2 (1 pod), for scale.
    #[arg(long, default_value_t = 0)]
    pub services: usize,
    /// Install the CRDs found in this directory (e.g. Istio's crd-all.gen.yaml) instead of the sim's minimal Istio schemas.
    #[arg(long)]
    pub crds: Option<PathBuf>,
    /// Where to write the kubeconfig (mode 0600; it holds tokens).
    #[arg(long)]
    pub kubeconfig_out: PathBuf,
    /// How the clusters' meshes relate.
    #[arg(long, value_enum, default_value_t = TopologyArg::Federation)]
    pub topology: TopologyArg,
    /// Keep the fleet still (no pod restarts).
    #[arg(long)]
    pub still: bool,
    /// Take a cluster down now and then (every 20 s, for 20 s).
    #[arg(long)]
    pub chaos: bool,
    /// Each cluster's productpage calls reviews as its route says, counted for a
    /// Prometheus stand-in per cluster on the admin endpoint (simulated, for
    /// `meshdeck traffic` and the cockpit's observed split).
    #[arg(long)]
    pub traffic: bool,
    /// Port of the plain-HTTP admin endpoint on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub admin_port: u16,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TopologyArg {
    Federation,
    Shared,
}

pub async fn run(args: SimArgs) -> Result<(), CliError> {
    if args.clusters == 0 {
        return Err(CliError::bad_input("--clusters must be at least 1"));
    }
    let started = std::time::Instant::now();
    let cfg = SimConfig {
        clusters: args.clusters,
        services: args.services,
        crds_dir: args.crds.clone(),
        topology: topology(args.topology),
        live: !args.still,
        chaos: args.chaos,
        traffic: args.traffic,
        admin_port: args.admin_port,
    };
    let fleet = SimFleet::start(cfg).await.map_err(|e| match e {
        meshdeck_sim::SimError::Crds { .. } => CliError::bad_input(e.to_string()),
        other => CliError::failed(other.to_string()),
    })?;
    fleet
        .write_kubeconfig(&args.kubeconfig_out)
        .map_err(|e| CliError::failed(format!("writing {}: {e}", args.kubeconfig_out.display())))?;
    println!(
        "meshdeck sim: {} clusters ready in {:.2}s; kubeconfig {}; admin {}",
        fleet.clusters.len(),
        started.elapsed().as_secs_f64(),
        args.kubeconfig_out.display(),
        fleet.admin_url
    );
    for c in &fleet.clusters {
        println!("  {:<12} {}", c.name, c.server_url().unwrap_or_default());
    }
    if args.traffic {
        println!("Prometheus stand-ins (config.yaml, per cluster: `prometheus: URL`):");
        for c in &fleet.clusters {
            println!("  {:<12} {}", c.name, fleet.prometheus_url(&c.name));
        }
    }
    println!("Ctrl-C to stop.");
    tokio::signal::ctrl_c().await.map_err(|e| CliError::failed(e.to_string()))?;
    Ok(())
}

#[derive(Args, Debug)]
pub struct WorldArgs {
    /// Number of clusters (cluster1..clusterN).
    #[arg(long, default_value_t = 3)]
    pub clusters: usize,
    /// Extra services per cluster, as for `meshdeck sim`.
    #[arg(long, default_value_t = 0)]
    pub services: usize,
    #[arg(long, value_enum, default_value_t = TopologyArg::Federation)]
    pub topology: TopologyArg,
    /// Write `DIR/<cluster>.yaml` for each cluster (any earlier world files there are replaced).
    #[arg(long)]
    pub out_dir: PathBuf,
}

/// `meshdeck world`: the sim's starting world as YAML, one file per cluster,
/// for the real test bed (tests/realfleet) or any cluster (`kubectl apply --server-side`).
pub fn world(args: WorldArgs) -> Result<(), CliError> {
    if args.clusters == 0 {
        return Err(CliError::bad_input("--clusters must be at least 1"));
    }
    let tls = meshdeck_sim::tls::FleetTls::generate().map_err(|e| CliError::failed(format!("generating the root of trust: {e}")))?;
    let names: Vec<String> = (1..=args.clusters).map(|i| format!("cluster{i}")).collect();
    let failed = |e: std::io::Error| CliError::failed(format!("writing {}: {e}", args.out_dir.display()));
    std::fs::create_dir_all(&args.out_dir).map_err(failed)?;
    for entry in std::fs::read_dir(&args.out_dir).map_err(failed)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("cluster") && name.ends_with(".yaml") {
            std::fs::remove_file(entry.path()).map_err(failed)?;
        }
    }
    for (i, name) in names.iter().enumerate() {
        let spec = meshdeck_sim::world::ClusterSpec {
            index: i + 1,
            name: name.clone(),
            services: args.services,
            topology: topology(args.topology),
            cluster_names: names.clone(),
            root_cert_pem: tls.ca_pem.clone(),
            intermediate: Some(tls.intermediate(name).map_err(|e| CliError::failed(format!("an intermediate CA for {name}: {e}")))?),
        };
        let objects = meshdeck_sim::world::cluster_objects(&spec);
        // Mode 0600: the world holds each cluster's intermediate CA key (test material).
        meshdeck_sim::write_private(&args.out_dir.join(format!("{name}.yaml")), &meshdeck_sim::world::to_yaml(&objects)).map_err(failed)?;
    }
    println!("wrote the world of {} clusters to {}", args.clusters, args.out_dir.display());
    Ok(())
}

fn topology(t: TopologyArg) -> MeshTopology {
    match t {
        TopologyArg::Federation => MeshTopology::Federation,
        TopologyArg::Shared => MeshTopology::SharedDiscovery,
    }
}
