//! meshdeck: a terminal cockpit for Istio across many Kubernetes clusters.
//!
//! The modules follow the data flow (see DESIGN.md):
//!
//! | module | owns |
//! |---|---|
//! | [`kubeconfig`] | kubeconfig files as kubectl reads and merges them; contexts |
//! | [`config`] | meshdeck's config file: registered clusters, options, XDG paths |
//! | [`registry`] | registered clusters: one kube client each, reachability and version |
//! | [`inventory`] | per-cluster watchers folded into one fleet model; mesh facts; warnings |
//! | [`plan`] | route plans: parsing with positions, validation against the inventory |
//! | [`render`] | plan + inventory → Istio objects per cluster, both topologies; cross-reference check |
//! | [`policy`] | personas: who may route from where to what |
//! | [`apply`] | preflight, dry run, diff, all-or-nothing server-side apply, rollback, history |
//! | [`observe`] | what traffic does: observed split from each cluster's Prometheus, istiod's push status |
//! | [`canary`] | a route stepped in by its metrics: steps through the apply pipeline, gates from `observe`, durable state |
//! | [`tui`] | the cockpit: app state and update, views, keymaps, themes, the terminal loop |
//! | [`cli`] | the subcommands wiring the stages together |
//! | [`yaml`] | YAML parsing and emitting, one place (the `meshdeck-files` crate) |
//!
//! The simulated fleet is the workspace crate `meshdeck-sim`; only the `sim`, `demo`
//! and `bench` commands start it.

pub mod apply;
pub mod canary;
pub mod cli;
pub mod config;
pub mod inventory;
pub mod kubeconfig;
pub mod observe;
pub mod plan;
pub mod policy;
pub mod registry;
pub mod render;
pub mod tui;
/// YAML in and out (shared with the simulated fleet).
pub use meshdeck_files::yaml;
