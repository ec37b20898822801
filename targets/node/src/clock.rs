//! The node's wall clock: system time plus an offset and a drift rate the harness sets over the
//! admin API (docs/node-api.md). Everything in a node that depends on wall-clock time (leases)
//! reads this clock, never the system clock directly, so clock skew can be injected per node.

use serde::Serialize;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug)]
struct ClockState {
    offset_ms: i64,
    drift_ppm: f64,
    /// When the drift was last set (monotonic): drift accumulates from here.
    drift_since: Instant,
}

#[derive(Debug)]
pub struct NodeClock {
    state: Mutex<ClockState>,
}

/// The `clock` object of the admin API.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct ClockView {
    pub offset_ms: i64,
    pub drift_ppm: f64,
    pub now_ms: i64,
}

/// Largest accepted |offset| (one year) and |drift| (a factor of 2 either way): beyond this a
/// request is a mistake, not a fault to inject.
pub const OFFSET_MS_MAX: i64 = 365 * 24 * 3600 * 1000;
pub const DRIFT_PPM_MAX: f64 = 1_000_000.0;

fn system_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Default for NodeClock {
    fn default() -> Self {
        NodeClock { state: Mutex::new(ClockState { offset_ms: 0, drift_ppm: 0.0, drift_since: Instant::now() }) }
    }
}

impl NodeClock {
    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        // A poisoned lock only means a panic elsewhere; the state (three numbers) is still valid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn view_of(s: &ClockState) -> ClockView {
        let drift_ms = s.drift_ppm * 1e-6 * s.drift_since.elapsed().as_secs_f64() * 1000.0;
        ClockView {
            offset_ms: s.offset_ms,
            drift_ppm: s.drift_ppm,
            now_ms: system_ms().saturating_add(s.offset_ms).saturating_add(drift_ms as i64),
        }
    }

    /// `now_ms = system_ms + offset_ms + drift_ppm × 1e-6 × (monotonic ms since the drift was set)`.
    pub fn now_ms(&self) -> i64 {
        Self::view_of(&self.lock()).now_ms
    }

    pub fn view(&self) -> ClockView {
        Self::view_of(&self.lock())
    }

    /// Sets the offset and/or the drift (setting the drift restarts its accumulation).
    pub fn set(&self, offset_ms: Option<i64>, drift_ppm: Option<f64>) -> ClockView {
        let mut s = self.lock();
        if let Some(o) = offset_ms {
            s.offset_ms = o;
        }
        if let Some(d) = drift_ppm {
            s.drift_ppm = d;
            s.drift_since = Instant::now();
        }
        Self::view_of(&s)
    }

    pub fn reset(&self) -> ClockView {
        let mut s = self.lock();
        *s = ClockState { offset_ms: 0, drift_ppm: 0.0, drift_since: Instant::now() };
        Self::view_of(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_shifts_now_and_reset_restores_it() {
        let c = NodeClock::default();
        let before = c.now_ms();
        let v = c.set(Some(-5000), None);
        assert!(v.now_ms <= before - 4000, "offset -5000 ms must move the clock back");
        let v = c.reset();
        assert!(v.now_ms >= before && v.offset_ms == 0);
    }

    #[test]
    fn drift_accumulates_from_when_it_was_set() {
        let c = NodeClock::default();
        c.set(None, Some(500_000.0)); // +50%: 0.5 ms per ms
        let t0 = system_ms();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let ahead = c.now_ms() - system_ms();
        let elapsed = system_ms() - t0;
        assert!(
            ahead >= 80 && ahead as f64 <= 0.5 * elapsed as f64 + 20.0,
            "drift ahead by {ahead} ms after {elapsed} ms"
        );
    }
}
