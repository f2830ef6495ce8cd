//! `meshdeck analyze`: every fleet check, as findings with a code, a severity and a
//! fix; exit 1 when one is an error, so it can gate a pipeline.

use std::time::Duration;

use clap::Args;

use super::output::{Format, table};
use super::{CliError, GlobalArgs, fleet};
use crate::inventory::analyze::{self, Finding};

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// How long to wait for slow clusters; one that has not answered by then is a finding.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub timeout: u64,
}

pub fn render_table(findings: &[Finding]) -> String {
    let rows: Vec<Vec<String>> = findings
        .iter()
        .map(|f| {
            vec![
                f.severity.as_str().to_uppercase(),
                f.code.clone(),
                f.istio_code.unwrap_or("-").to_string(),
                f.clusters.join(","),
                format!("{} (fix: {})", f.message, f.fix),
            ]
        })
        .collect();
    table(&["SEVERITY", "CODE", "ISTIO", "CLUSTERS", "FINDING"], &rows)
}

pub async fn run(global: &GlobalArgs, args: AnalyzeArgs) -> Result<(), CliError> {
    let (_inv, snap) = fleet::settled_inventory(global, Duration::from_secs(args.timeout)).await?;
    let mut findings = analyze::analyze(&snap);
    // What changes left on clusters they could not reach: history knows, the fleet says if it is still there.
    if let Some(dir) = crate::config::data_dir()
        && let Ok(history) = crate::apply::history::History::open(&dir)
        && let Ok(records) = history.list()
    {
        let left: Vec<analyze::LeftBehind> = history
            .outstanding_prunes(&records)
            .into_iter()
            .map(|(t, plans)| analyze::LeftBehind { cluster: t.cluster, kind: t.kind, namespace: t.namespace, name: t.name, plans })
            .collect();
        findings.extend(analyze::left_behind(&snap, &left));
    }
    let errors = analyze::errors(&findings);
    match args.output {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"findings": findings, "errors": errors}))
                .map_err(|e| CliError::failed(e.to_string()))?
        ),
        Format::Table if findings.is_empty() => println!("no findings on {} clusters", snap.clusters.len()),
        Format::Table => print!("{}", render_table(&findings)),
    }
    if errors > 0 {
        return Err(CliError::failed(format!("{errors} error finding{}", if errors == 1 { "" } else { "s" })));
    }
    Ok(())
}
