//! The layout shows the architecture (issue #31): the product's modules import only
//! downwards (cli and tui on top; canary, apply, policy, render, plan, inventory, registry,
//! kubeconfig and config below, in that order), no two files of the product import
//! each other round a circle, and the product imports the simulator only where the
//! `sim`, `demo` and `bench` commands start it. Read from the sources as written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules, highest first: each may import only those after it.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["tui"],
    &["canary"],
    &["apply"],
    &["observe"],
    &["policy"],
    &["render"],
    &["plan"],
    &["inventory"],
    &["registry"],
    &["kubeconfig", "config"],
    &["yaml"],
];

/// The only product files that may start the simulated fleet: the `bench`, `demo` and
/// `sim` commands (a benchmark in `cli/bench/` each).
const STARTS_THE_SIM: &[&str] = &["cli/bench/", "cli/cockpit.rs", "cli/sim.rs"];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("src").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(sources(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// A file's module path: `apply/write.rs` → [apply, write]; `apply/mod.rs` → [apply].
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.trim_end_matches(".rs").split('/').map(String::from).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib" || p == "main") {
        parts.pop();
    }
    parts
}

/// The code of a file without its unit tests (they may use what they test from anywhere).
fn product_code(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests").map_or(text, |i| &text[..i])
}

/// Every module path a file names: `crate::a::b`, `super::x`, and the names in
/// `use crate::a::{b, c::d}` and `use super::{x, y}` groups.
fn referenced(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
    let path = regex::Regex::new(r"\b(crate|super)((?:::[a-z_][a-z0-9_]*)+)(::\{([^}]*)\})?").expect("regex");
    for c in path.captures_iter(code) {
        let base: Vec<String> = if &c[1] == "crate" { Vec::new() } else { parent.clone() };
        let mut p = base.clone();
        p.extend(c[2].split("::").filter(|s| !s.is_empty()).map(String::from));
        out.push(p.clone());
        if let Some(group) = c.get(4) {
            for item in group.as_str().split(',') {
                let first = item.trim().split("::").next().unwrap_or("").trim().to_string();
                if first.chars().next().is_some_and(|ch| ch.is_ascii_lowercase()) && first != "self" {
                    let mut q = p.clone();
                    q.push(first);
                    out.push(q);
                }
            }
        }
    }
    let group = regex::Regex::new(r"\b(crate|super)::\{([^}]*)\}").expect("regex");
    for c in group.captures_iter(code) {
        let base: Vec<String> = if &c[1] == "crate" { Vec::new() } else { parent.clone() };
        for item in c[2].split(',') {
            let first = item.trim().split("::").next().unwrap_or("").trim().to_string();
            if first.chars().next().is_some_and(|ch| ch.is_ascii_lowercase()) && first != "self" {
                let mut q = base.clone();
                q.push(first);
                out.push(q);
            }
        }
    }
    out
}

#[test]
fn modules_import_only_downwards_and_no_files_import_round_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files: BTreeMap<Vec<String>, String> = sources(&root)
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(&root).expect("under src").display().to_string();
            (module_of(&rel), rel)
        })
        .collect();
    let mut upward = Vec::new();
    let mut sim = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, rel) in &files {
        let text = std::fs::read_to_string(root.join(rel)).expect("source");
        let code = product_code(&text);
        if code.contains("meshdeck_sim") && !STARTS_THE_SIM.iter().any(|s| rel.starts_with(s)) {
            sim.push(rel.clone());
        }
        for r in referenced(module, code) {
            // The longest prefix that is a file of the product.
            let Some(target) = (1..=r.len()).rev().find_map(|n| files.get(&r[..n]).map(|t| (r[..n].to_vec(), t))) else { continue };
            let (target_module, target_rel) = target;
            if target_rel == rel {
                continue;
            }
            let (from, to) = (module.first().map(String::as_str).unwrap_or(""), target_module.first().map(String::as_str).unwrap_or(""));
            if from != to
                && let (Some(a), Some(b)) = (rank(from), rank(to))
                && b <= a
            {
                upward.push(format!("{rel} imports {target_rel}"));
            }
            // A child using what its parent module declares is the module's own vocabulary.
            let ancestor = target_module.len() < module.len() && module.starts_with(&target_module);
            if !ancestor {
                edges.entry(rel.clone()).or_default().insert(target_rel.clone());
            }
        }
    }
    upward.sort();
    upward.dedup();
    assert!(upward.is_empty(), "imports that climb a layer ({LAYERS:?}):\n  {}", upward.join("\n  "));
    assert!(sim.is_empty(), "product code that imports the simulator (only {STARTS_THE_SIM:?} may): {sim:?}");
    let cycles = circles(&edges);
    assert!(cycles.is_empty(), "files that import each other round a circle:\n  {}", cycles.join("\n  "));
}

/// Every strongly connected group of more than one file, as `a → b → … → a`.
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let nodes: BTreeSet<&String> = edges.keys().chain(edges.values().flatten()).collect();
    let reaches = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for m in edges.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> = nodes.iter().map(|n| (*n, reaches(n))).collect();
    let mut groups: BTreeSet<Vec<String>> = BTreeSet::new();
    for n in &nodes {
        let mut group: Vec<String> =
            nodes.iter().filter(|m| reach[*n].contains(**m) && reach[*m].contains(*n)).map(|m| (*m).clone()).collect();
        if group.len() > 1 {
            group.sort();
            groups.insert(group);
        }
    }
    groups.into_iter().map(|g| g.join(" ⇄ ")).collect()
}
