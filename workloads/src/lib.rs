//! faultline-workloads: each workload is a generator, a mapping of its operations onto the
//! reference node's client API, and the checkers that judge its history.
//!
//! - [`register`]: read / write / compare-and-set on independent integer registers, checked for
//!   linearizability (cas-register model, per key).

pub mod register;

use std::sync::Arc;

use faultline_core::workload::Workload;

/// Workload names `faultline run --workload` accepts.
pub const NAMES: &[&str] = &["register"];

/// The workload called `name`, or an error listing the known ones.
pub fn by_name(name: &str) -> Result<Arc<dyn Workload>, String> {
    match name {
        "register" => Ok(Arc::new(register::Register::default())),
        other => Err(format!(
            "unknown workload {other:?}: expected one of {}",
            NAMES.join(", ")
        )),
    }
}
