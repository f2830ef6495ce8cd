//! `meshdeck clusters`: one row per registered cluster with its mesh facts.

use std::time::Duration;

use clap::Args;

use super::output::{Format, or_dash, table};
use super::{CliError, GlobalArgs, fleet};

#[derive(Args, Debug)]
pub struct ClustersArgs {
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// How long to wait for slow clusters before printing what is known.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub timeout: u64,
}

pub async fn run(global: &GlobalArgs, args: ClustersArgs) -> Result<(), CliError> {
    let (_inv, snap) = fleet::settled_inventory(global, Duration::from_secs(args.timeout)).await?;
    match args.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&snap.clusters).map_err(|e| CliError::failed(e.to_string()))?),
        Format::Table => {
            let rows: Vec<Vec<String>> = snap
                .clusters
                .iter()
                .map(|c| {
                    let m = &c.mesh;
                    let root = m.root_cert_fingerprint.as_ref().map(|f| f.chars().take(19).collect()).unwrap_or_else(|| "-".into());
                    vec![
                        c.name.clone(),
                        if c.insecure_skip_tls_verify { format!("{} (TLS NOT VERIFIED)", c.context) } else { c.context.clone() },
                        c.aliases_text(),
                        c.state.as_str().to_string(),
                        or_dash(&c.kubernetes_version),
                        c.latency_ms.map(|l| format!("{l}ms")).unwrap_or_else(|| "-".into()),
                        or_dash(&m.istio_version),
                        or_dash(&m.trust_domain),
                        or_dash(&m.network),
                        or_dash(&m.cluster_id),
                        or_dash(&m.east_west_gateway),
                        root,
                        c.error.as_ref().map(|e| e.message().to_string()).unwrap_or_default(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(
                    &[
                        "NAME",
                        "CONTEXT",
                        "ALIASES",
                        "STATE",
                        "K8S",
                        "LATENCY",
                        "ISTIO",
                        "TRUST-DOMAIN",
                        "NETWORK",
                        "CLUSTER-ID",
                        "EAST-WEST",
                        "ROOT-CERT",
                        "ERROR"
                    ],
                    &rows
                )
            );
            for w in &snap.warnings {
                eprintln!("warning {}: {}", w.code, w.message);
            }
            for c in &snap.clusters {
                for fact in &c.unknown {
                    eprintln!("note: {}: unknown {fact}", c.name);
                }
            }
        }
    }
    if snap.clusters.iter().all(|c| c.error.is_some()) {
        return Err(CliError::failed("no cluster answered"));
    }
    Ok(())
}
