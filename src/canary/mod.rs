//! The fleet canary: a TrafficRoute's `canary` section steps one destination's
//! weight in (the rest keep the plan's proportions), each step one
//! all-or-nothing change through the conductor (`apply::pipeline`), held for
//! its interval and judged by its gates on every calling cluster from that
//! cluster's Prometheus (`observe`). A failed gate goes back by itself; a
//! step that cannot be judged waits, then aborts; a dark cluster pauses it.
//!
//! - [`judge`]: a step's gates from the observed split (pure);
//! - [`store`]: the canary's durable state beside history, and its driver lock;
//! - [`control`]: pause, resume, promote, abort from any front;
//! - [`driver`]: the loop that writes, holds, judges and goes back;
//! - [`view`]: the canary as lines (`canary status`, the cockpit's canary view).

pub mod control;
pub mod driver;
pub mod judge;
pub mod store;
pub mod view;

pub use driver::{Driver, canary_route, step_plan, weights_line};
pub use judge::{Check, Verdict};
pub use store::{CanaryState, Request, Status, Store};
