//! meshdeck: a terminal cockpit for Istio across many Kubernetes clusters.
//!
//! The modules follow the data flow (see DESIGN.md):
//!
//! | module | owns |
//! |---|---|
//! | [`sim`] | the embedded simulated fleet: real Kubernetes API servers over HTTPS on loopback |
//! | [`cli`] | the subcommands wiring the stages together |
//! | [`yaml`] | YAML parsing and emitting, one place |

pub mod cli;
pub mod sim;
pub mod yaml;
