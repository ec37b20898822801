//! Generators: what each logical process does next, and when.
//!
//! A workload gives every worker its own [`Generator`], built from the run seed and the worker
//! index, so a worker's sequence of operations depends on nothing but (seed, flags, worker):
//! timing, failures and the other workers cannot change it. [`Pacer`] spaces a worker's
//! operations so that `concurrency` workers together approach `rate` ops/s, with ±50% jitter
//! drawn from the worker's own seeded stream. [`ProcessIds`] implements Jepsen's rule that a
//! process whose operation ended in `info` is retired and its worker continues under a new id.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::client::Op;

/// The next operation of one worker.
pub trait Generator: Send {
    /// The next op, or `None` when this worker is done.
    fn next_op(&mut self) -> Option<Op>;
}

/// SplitMix64 finaliser: derives independent sub-seeds from (seed, stream, index).
pub fn derive_seed(seed: u64, stream: &str, index: u64) -> u64 {
    let mut z = seed ^ 0x9E37_79B9_7F4A_7C15;
    for b in stream.bytes() {
        z = (z ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
    }
    z = z.wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seeded random stream for one purpose (`stream`) and one index (worker, node, ...).
pub fn rng_for(seed: u64, stream: &str, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(derive_seed(seed, stream, index))
}

/// Spaces one worker's operations.
pub struct Pacer {
    mean: Duration,
    rng: ChaCha8Rng,
}

impl Pacer {
    /// `rate` is the target total ops/s of all `concurrency` workers; 0 means no pause.
    pub fn new(seed: u64, worker: u64, rate: f64, concurrency: usize) -> Self {
        let mean = if rate > 0.0 { Duration::from_secs_f64(concurrency as f64 / rate) } else { Duration::ZERO };
        Pacer { mean, rng: rng_for(seed, "pacer", worker) }
    }

    /// The pause before the next op: uniform in [0.5, 1.5) × mean.
    pub fn next_delay(&mut self) -> Duration {
        if self.mean.is_zero() {
            return Duration::ZERO;
        }
        self.mean.mul_f64(self.rng.random_range(0.5..1.5))
    }
}

/// Process ids of one worker: starts at `worker`, moves on by `concurrency` after each info.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessIds {
    current: u64,
    concurrency: u64,
}

impl ProcessIds {
    pub fn new(worker: u64, concurrency: u64) -> Self {
        assert!(worker < concurrency, "worker index within concurrency");
        ProcessIds { current: worker, concurrency }
    }
    pub fn current(&self) -> u64 {
        self.current
    }
    /// Retires the current process (its op ended in info) and returns the new id.
    pub fn retire(&mut self) -> u64 {
        self.current += self.concurrency;
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_seeds_differ_by_stream_and_index_and_repeat() {
        assert_eq!(derive_seed(7, "ops", 1), derive_seed(7, "ops", 1));
        assert_ne!(derive_seed(7, "ops", 1), derive_seed(7, "ops", 2));
        assert_ne!(derive_seed(7, "ops", 1), derive_seed(7, "pacer", 1));
        assert_ne!(derive_seed(7, "ops", 1), derive_seed(8, "ops", 1));
    }

    #[test]
    fn pacer_is_seeded_and_jitters_around_the_mean() {
        let mut a = Pacer::new(1, 0, 100.0, 10);
        let mut b = Pacer::new(1, 0, 100.0, 10);
        let da: Vec<Duration> = (0..200).map(|_| a.next_delay()).collect();
        let db: Vec<Duration> = (0..200).map(|_| b.next_delay()).collect();
        assert_eq!(da, db);
        // 10 workers at 100 ops/s: 100 ms mean, every delay within [50, 150) ms.
        assert!(da.iter().all(|d| *d >= Duration::from_millis(50) && *d < Duration::from_millis(150)));
        let mean = da.iter().sum::<Duration>() / 200;
        assert!(mean > Duration::from_millis(90) && mean < Duration::from_millis(110), "{mean:?}");
        assert!(da.windows(2).any(|w| w[0] != w[1]), "no jitter");
        assert_eq!(Pacer::new(1, 0, 0.0, 10).next_delay(), Duration::ZERO);
    }

    #[test]
    fn retired_processes_move_on_by_concurrency() {
        let mut p = ProcessIds::new(3, 10);
        assert_eq!(p.current(), 3);
        assert_eq!(p.retire(), 13);
        assert_eq!(p.retire(), 23);
        assert_eq!(p.current(), 23);
    }
}
