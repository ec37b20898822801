//! Workloads: a generator, the data type its operations act on and the checkers that judge the
//! history. The protocol is the target's ([`crate::target::Target::client`]), so a workload
//! runs on every target whose client speaks its data type.
//!
//! The trait lives here so the runner can drive any workload; implementations live in the
//! `faultline-workloads` crate.

use faultline_checker::hierarchy::Consistency;
use faultline_checker::history::Event;

use crate::checker::Checker;
use crate::client::{DataType, Op};
use crate::generator::Generator;

pub use faultline_results::CheckerResult;

/// A workload.
pub trait Workload: Send + Sync {
    fn name(&self) -> &str;
    /// The generator of worker `worker` (0-based) of `concurrency`; a pure function of its
    /// arguments.
    fn generator(&self, seed: u64, worker: u64, concurrency: usize) -> Box<dyn Generator>;
    /// What the operations act on: the target gives the client that speaks it
    /// ([`crate::target::Target::client`]).
    fn data_type(&self) -> DataType;
    /// The operations of the final phase (e.g. a read of every key), given the keys used.
    fn final_ops(&self, keys: &[String]) -> Vec<Op>;
    /// Whether each final op must be performed on every node (retried on that same node), as
    /// eventually consistent workloads need to judge convergence; by default any node will do.
    fn final_ops_on_every_node(&self) -> bool {
        false
    }
    /// The checkers that judge the history (client and nemesis events, in index order); the
    /// runner composes them with the target's ([`crate::checker::check_all`]).
    fn checkers(&self) -> Vec<Box<dyn Checker>>;
    /// Where the history sits on the consistency hierarchy (results.json's `consistency`
    /// block), given what [`Workload::checkers`] found. By default no checker of the workload
    /// decides a model: every model `not-checked`, strongest `unknown`.
    fn consistency(&self, _events: &[Event], _checkers: &[CheckerResult]) -> Consistency {
        Consistency::not_checked(&format!("the {} workload maps no checker onto the hierarchy", self.name()))
    }
}
