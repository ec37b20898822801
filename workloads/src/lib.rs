//! faultline-workloads: each workload is a generator, a mapping of its operations onto the
//! reference node's client API, and the checkers that judge its history.
//!
//! - [`register`]: read / write / compare-and-set on independent integer registers, checked for
//!   linearizability (cas-register model, per key).
//! - [`set`]: adds of unique elements and reads, judged by set-full and convergence.
//! - [`counter`]: adds of small deltas and reads, judged by counter bounds and convergence.
//! - [`list_append`], [`rw_register`]: Elle's transactional workloads (shared parts in [`txn`]),
//!   judged by the transactional isolation checker against strict serializability.

pub mod counter;
pub mod list_append;
pub mod register;
pub mod rw_register;
pub mod set;
pub mod txn;

use std::sync::Arc;

use faultline_checker::txn::TxnModel;
use faultline_core::workload::Workload;

/// Workload names `faultline run --workload` accepts.
pub const NAMES: &[&str] = &["register", "set", "counter", "list-append", "rw-register"];

/// The workload called `name`, or an error listing the known ones.
pub fn by_name(name: &str) -> Result<Arc<dyn Workload>, String> {
    match name {
        "register" => Ok(Arc::new(register::Register::default())),
        "set" => Ok(Arc::new(set::SetWorkload::default())),
        "counter" => Ok(Arc::new(counter::CounterWorkload::default())),
        "list-append" => Ok(Arc::new(txn::TxnWorkload::new(TxnModel::ListAppend))),
        "rw-register" => Ok(Arc::new(txn::TxnWorkload::new(TxnModel::RwRegister))),
        other => Err(format!("unknown workload {other:?}: expected one of {}", NAMES.join(", "))),
    }
}
