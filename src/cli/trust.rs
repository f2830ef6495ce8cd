//! `meshdeck trust status`: per cluster, the root istiod distributes, its CA
//! (plugged-in or self-signed), the intermediate and which clusters share a root.

use std::time::Duration;

use clap::{Args, Subcommand};

use super::output::{Format, table};
use super::{CliError, GlobalArgs, fleet};
use crate::inventory::trust::{self, TrustStatus};

#[derive(Args, Debug)]
pub struct TrustArgs {
    #[command(subcommand)]
    pub command: TrustCommand,
}

#[derive(Subcommand, Debug)]
pub enum TrustCommand {
    /// Each cluster's root of trust and CA; which clusters share a root; expiry.
    Status(StatusArgs),
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// How long each read may take on a slow cluster.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub timeout: u64,
}

fn days(c: &Option<trust::CertFacts>) -> String {
    c.as_ref().map_or("-".into(), |c| {
        let warn = if c.days_left < trust::EXPIRY_WARNING_DAYS { "⚠ " } else { "" };
        format!("{warn}{}d", c.days_left)
    })
}

pub fn render_table(statuses: &[TrustStatus]) -> String {
    let rows: Vec<Vec<String>> = statuses
        .iter()
        .map(|s| {
            vec![
                s.cluster.clone(),
                s.trust_domain.clone().unwrap_or_else(|| "-".into()),
                s.root.as_ref().map_or("-".into(), |r| r.fingerprint.chars().take(19).collect()),
                s.root.as_ref().map_or("-".into(), |r| r.subject.clone()),
                days(&s.root),
                s.ca.clone(),
                s.intermediate.as_ref().map_or("-".into(), |i| i.subject.clone()),
                days(&s.intermediate),
                match s.chains_to_root {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => "-".into(),
                },
                if s.shares_root_with.is_empty() { "-".into() } else { s.shares_root_with.join(",") },
                s.warnings.join("; "),
            ]
        })
        .collect();
    table(
        &[
            "CLUSTER",
            "TRUST-DOMAIN",
            "ROOT",
            "ROOT-SUBJECT",
            "ROOT-EXPIRES",
            "CA",
            "INTERMEDIATE",
            "INT-EXPIRES",
            "CHAINS",
            "SHARES-ROOT-WITH",
            "WARNINGS",
        ],
        &rows,
    )
}

pub async fn run(global: &GlobalArgs, args: TrustArgs) -> Result<(), CliError> {
    match args.command {
        TrustCommand::Status(a) => status(global, a).await,
    }
}

async fn status(global: &GlobalArgs, args: StatusArgs) -> Result<(), CliError> {
    // Three reads a cluster, all clusters at once; no inventory (pods) is needed.
    let (clusters, _) = fleet::registry(global).await?;
    let now = chrono::Utc::now();
    let timeout = Duration::from_secs(args.timeout);
    let reads = clusters.iter().map(|c| async move {
        match &c.client {
            Ok(client) => trust::read(&c.name, client, now, timeout).await,
            Err(e) => unread(&c.name, e.clone()),
        }
    });
    let mut statuses: Vec<TrustStatus> = futures::future::join_all(reads).await;
    trust::link_roots(&mut statuses);
    let roots: std::collections::BTreeSet<&str> = statuses.iter().filter_map(|s| s.root.as_ref().map(|r| r.fingerprint.as_str())).collect();
    match args.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"clusters": statuses, "roots": roots.len()}))
                .map_err(|e| CliError::failed(e.to_string()))?
        ),
        Format::Table => {
            print!("{}", render_table(&statuses));
            match roots.len() {
                0 => println!("no root seen"),
                1 => println!("one root: every cluster seen trusts the same root"),
                n => println!("{n} roots: cross-cluster mTLS fails between clusters of different roots (ROOT_MISMATCH)"),
            }
        }
    }
    Ok(())
}

fn unread(cluster: &str, why: String) -> TrustStatus {
    TrustStatus {
        cluster: cluster.to_string(),
        trust_domain: None,
        root: None,
        ca: format!("unknown: {why}"),
        intermediate: None,
        chains_to_root: None,
        shares_root_with: vec![],
        warnings: vec![],
    }
}
