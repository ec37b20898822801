//! faultline-core: the control plane (tokio).
//!
//! Jepsen's decomposition as Rust traits, each in its own folder: [`runtime`] (where nodes live,
//! network faults), [`target`] (what a node is), [`client`] (one logical process's connection),
//! [`nemesis`] (faults and their seeded schedule), [`generator`] (what each process does next),
//! [`workload`] (generator + client mapping + checkers). [`runner`] drives a test through its
//! lifecycle; [`history`] writes history.jsonl as events happen; [`store`] lays out run folders;
//! [`analysis`] turns a recorded history into results.json; [`secret`] makes the nodes' admin
//! token and writes the files only the harness's user may read.

/// The pure analysis of a history, owned by `faultline-results` (re-exported for the runner).
pub use faultline_results::analysis;
pub mod checker;
pub mod client;
pub mod generator;
pub mod history;
pub mod nemesis;
pub mod progress;
pub mod runner;
pub mod runtime;
pub mod secret;
pub mod store;
pub mod target;
pub mod workload;
