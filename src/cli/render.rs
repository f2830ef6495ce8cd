//! `meshdeck render -f PLAN.yaml`: the Istio objects each cluster needs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{CliError, GlobalArgs, fleet};
use crate::inventory::FleetSnapshot;
use crate::plan::Plan;
use crate::render::{RenderedObjects, file_name, render};

#[derive(Clone, Copy, Debug, Default, clap::ValueEnum, PartialEq, Eq)]
pub enum RenderFormat {
    #[default]
    Yaml,
    Json,
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The plan file (TrafficRoute and AccessPolicy documents).
    #[arg(short = 'f', long = "filename", add = clap_complete::engine::ArgValueCompleter::new(super::completion::plan_files))]
    pub file: PathBuf,
    #[arg(short, long, value_enum, default_value_t = RenderFormat::Yaml)]
    pub output: RenderFormat,
    /// Write DIR/<cluster>/<kind>-<namespace>-<name>.yaml, one object per file.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Render offline from `meshdeck inventory -o json` output instead of live clusters.
    #[arg(long)]
    pub inventory: Option<PathBuf>,
    /// How long to wait for slow clusters when reading the live inventory.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub timeout: u64,
}

pub fn read_inventory_file(path: &Path) -> Result<FleetSnapshot, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::bad_input(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::bad_input(format!("{}:{}:{}: not an inventory: {e}", path.display(), e.line(), e.column())))
}

/// Read and validate a plan file; bad input lists every problem at file:line:col.
pub fn read_plan(path: &Path, inv: &FleetSnapshot) -> Result<Plan, CliError> {
    read_plan_replacing(path, inv, &[])
}

/// The same for a plan that replaces the plans named in `replacing`.
pub fn read_plan_replacing(path: &Path, inv: &FleetSnapshot, replacing: &[String]) -> Result<Plan, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::bad_input(format!("{}: {e}", path.display())))?;
    let plan = crate::plan::load_replacing(&path.display().to_string(), &text, inv, replacing).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        CliError::bad_input(format!(
            "invalid plan ({} problem{}):\n{}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            lines.join("\n")
        ))
    })?;
    for n in &plan.notes {
        eprintln!("note: {n}");
    }
    Ok(plan)
}

pub async fn inventory_for(global: &GlobalArgs, file: Option<&Path>, timeout: u64) -> Result<Arc<FleetSnapshot>, CliError> {
    match file {
        Some(f) => Ok(Arc::new(read_inventory_file(f)?)),
        None => {
            let (_inv, snap) = fleet::settled_inventory(global, Duration::from_secs(timeout)).await?;
            Ok(snap)
        }
    }
}

pub fn render_plan(plan: &Plan, inv: &FleetSnapshot) -> Result<RenderedObjects, CliError> {
    render(plan, inv).map_err(|e| match e {
        crate::render::RenderError::Input(m) => CliError::bad_input(m),
        bug => CliError::failed(bug.to_string()),
    })
}

/// The clusters a plan refers to that could not be seen, in one line.
pub fn unseen_line(plan: &Plan) -> String {
    format!("could not see {}", plan.unseen.join("; "))
}

pub async fn run(global: &GlobalArgs, args: RenderArgs) -> Result<(), CliError> {
    let inv = inventory_for(global, args.inventory.as_deref(), args.timeout).await?;
    let plan = read_plan(&args.file, &inv)?;
    let out = match render_plan(&plan, &inv) {
        // Facts of a cluster not seen are missing, not wrong: an operation failure.
        Err(e) if !plan.unseen.is_empty() => {
            return Err(CliError::failed(format!("{}: cannot render without its facts ({})", unseen_line(&plan), e.message)));
        }
        other => other?,
    };
    if !plan.unseen.is_empty() {
        eprintln!("warning: {}; rendered from what was last seen of it", unseen_line(&plan));
    }
    for n in &out.notes {
        eprintln!("note: {n}");
    }
    if let Some(dir) = &args.out_dir {
        let mut written = 0;
        for (cluster, objs) in &out.clusters {
            let cdir = dir.join(cluster);
            std::fs::create_dir_all(&cdir).map_err(|e| CliError::failed(format!("{}: {e}", cdir.display())))?;
            for o in objs {
                let path = cdir.join(file_name(o));
                std::fs::write(&path, crate::yaml::to_yaml(o)).map_err(|e| CliError::failed(format!("{}: {e}", path.display())))?;
                written += 1;
            }
        }
        eprintln!("wrote {written} objects for {} clusters to {}", out.clusters.len(), dir.display());
        return Ok(());
    }
    match args.output {
        RenderFormat::Yaml => print!("{}", out.to_yaml()),
        RenderFormat::Json => println!("{}", out.to_json()),
    }
    Ok(())
}
