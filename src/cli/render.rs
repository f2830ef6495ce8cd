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
    /// Write into an --out-dir that holds files meshdeck did not write there.
    #[arg(long)]
    pub force: bool,
    /// How long to wait for slow clusters when reading the live inventory.
    #[arg(long, default_value = "10", value_name = "SECONDS")]
    pub timeout: u64,
}

pub fn read_inventory_file(path: &Path) -> Result<FleetSnapshot, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::bad_input(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| CliError::bad_input(format!("{}:{}:{}: not an inventory: {e}", path.display(), e.line(), e.column())))
}

/// A plan's text and the name its errors carry: `-` is standard input, as kubectl's `-f -`.
pub fn read_plan_text(path: &Path) -> Result<(String, String), CliError> {
    if path == Path::new("-") {
        use std::io::Read;
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| CliError::bad_input(format!("<stdin>: {e}")))?;
        return Ok(("<stdin>".into(), text));
    }
    let text = std::fs::read_to_string(path).map_err(|e| CliError::bad_input(format!("{}: {e}", path.display())))?;
    Ok((path.display().to_string(), text))
}

/// Read and validate a plan file; bad input lists every problem at file:line:col.
pub fn read_plan(path: &Path, inv: &FleetSnapshot) -> Result<Plan, CliError> {
    read_plan_replacing(path, inv, &[])
}

/// The same for a plan that replaces the plans named in `replacing`.
pub fn read_plan_replacing(path: &Path, inv: &FleetSnapshot, replacing: &[String]) -> Result<Plan, CliError> {
    let (name, text) = read_plan_text(path)?;
    let plan = crate::plan::load_replacing(&name, &text, inv, replacing).map_err(|errors| {
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

/// Lists what a render wrote into an --out-dir, so the next render can remove what it no longer produces.
const OUT_DIR_MARKER: &str = ".meshdeck-render";

/// A path component built from a name: only what Kubernetes names may hold, so it
/// can never climb out of the folder or nest.
fn safe_component(name: &str) -> Result<&str, CliError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if ok {
        Ok(name)
    } else {
        Err(CliError::failed(format!("{name:?} cannot be a file or folder name in --out-dir (nothing was written)")))
    }
}

/// `DIR/<cluster>/<kind>-<namespace>-<name>.yaml`, each file written atomically. The
/// folder is meshdeck's: files an earlier render wrote and this one does not produce
/// are removed (a GitOps sync of the folder must not bring back what prune removed);
/// a folder holding other files is refused unless `force`.
fn write_out_dir(dir: &Path, out: &RenderedObjects, force: bool) -> Result<usize, CliError> {
    let io = |p: &Path, e: std::io::Error| CliError::failed(format!("{}: {e}", p.display()));
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for (cluster, objs) in &out.clusters {
        let cdir = safe_component(cluster)?;
        for o in objs {
            let name = file_name(o);
            files.push((PathBuf::from(cdir).join(safe_component(&name)?), crate::yaml::to_yaml(o)));
        }
    }
    let marker = dir.join(OUT_DIR_MARKER);
    let previous: Vec<PathBuf> = match std::fs::read_to_string(&marker) {
        Ok(text) => text.lines().filter(|l| !l.is_empty()).map(PathBuf::from).collect(),
        Err(_) => {
            let foreign = std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false);
            if foreign && !force {
                return Err(CliError::failed(format!(
                    "{} holds files meshdeck did not write; choose an empty folder, or pass --force to write into it",
                    dir.display()
                )));
            }
            Vec::new()
        }
    };
    for (rel, text) in &files {
        let path = dir.join(rel);
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        let tmp = parent.join(format!(".{}.tmp", rel.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default()));
        std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    }
    for old in previous.iter().filter(|p| !files.iter().any(|(rel, _)| rel == *p)) {
        // Only paths this render could have written: a tampered marker cannot delete elsewhere.
        let safe = old.components().count() == 2 && old.components().all(|c| matches!(c, std::path::Component::Normal(_)));
        if safe {
            let _ = std::fs::remove_file(dir.join(old));
            if let Some(parent) = dir.join(old).parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
    }
    let list: String = files.iter().map(|(rel, _)| format!("{}\n", rel.display())).collect();
    std::fs::write(&marker, list).map_err(|e| io(&marker, e))?;
    Ok(files.len())
}

pub async fn run(global: &GlobalArgs, args: RenderArgs) -> Result<(), CliError> {
    let inv = inventory_for(global, args.inventory.as_deref(), args.timeout).await?;
    let plan = read_plan(&args.file, &inv)?;
    let out = match render_plan(&plan, &inv) {
        // Facts of a cluster not seen are missing, not wrong: an operation failure.
        Err(e) if !plan.unseen.is_empty() => {
            return Err(CliError::failed(format!("{}: cannot render without its facts ({})", plan.unseen_line(), e.message)));
        }
        other => other?,
    };
    if !plan.unseen.is_empty() {
        eprintln!("warning: {}; rendered from what was last seen of it", plan.unseen_line());
    }
    for (route, line) in &out.routing {
        eprintln!("routing: {route}: {line}");
    }
    for n in &out.notes {
        eprintln!("note: {n}");
    }
    if let Some(dir) = &args.out_dir {
        let written = write_out_dir(dir, &out, args.force)?;
        eprintln!("wrote {written} objects for {} clusters to {}", out.clusters.len(), dir.display());
        return Ok(());
    }
    match args.output {
        RenderFormat::Yaml => print!("{}", out.to_yaml()),
        RenderFormat::Json => println!("{}", out.to_json()),
    }
    Ok(())
}
