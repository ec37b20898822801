//! Live counters of a run, read by the CLI's progress line (the core stays free of terminal
//! code).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Shared between the runner (writes) and the progress line (reads).
#[derive(Default)]
pub struct Progress {
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
    phase: Mutex<String>,
    active: Mutex<Vec<String>>,
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    pub phase: String,
    pub active_faults: Vec<String>,
}

impl Progress {
    pub fn set_phase(&self, phase: &str) {
        *self.phase.lock().expect("phase lock") = phase.to_string();
    }
    pub fn fault_started(&self, label: &str) {
        self.active.lock().expect("active lock").push(label.to_string());
    }
    pub fn fault_stopped(&self, label: &str) {
        let mut a = self.active.lock().expect("active lock");
        if let Some(i) = a.iter().position(|x| x == label) {
            a.remove(i);
        }
    }
    pub fn clear_faults(&self) {
        self.active.lock().expect("active lock").clear();
    }
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            ok: self.ok.load(Ordering::Relaxed),
            fail: self.fail.load(Ordering::Relaxed),
            info: self.info.load(Ordering::Relaxed),
            phase: self.phase.lock().expect("phase lock").clone(),
            active_faults: self.active.lock().expect("active lock").clone(),
        }
    }
}
