//! The shard-balance checker: does a sharded system spread keys evenly over its shard groups?
//!
//! Input: the number of keys each shard owns (the router's report). With `g` shards and `n`
//! keys, a placement that behaves like a random function gives each shard a binomial share
//! with mean `p = 1/g` and standard deviation `sqrt(p(1-p)/n)`. The bound is the mean plus
//! [`SIGMAS`] standard deviations: a sound hash exceeds it on some shard with probability below
//! `g * 3.2e-5` (the normal tail beyond 4 sigma), so "invalid" is strong evidence of skew, while
//! a character-sum hash (every `k<number>` key on one shard) exceeds it as soon as there are a
//! dozen keys or so. With too few keys the bound is 1 or more and no placement can exceed it:
//! the verdict is then valid and the reason says nothing could be judged.

use serde::Serialize;

use crate::Verdict;

/// Standard deviations above the fair share that a shard may own.
pub const SIGMAS: f64 = 4.0;

/// The judgement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Balance {
    /// Valid or invalid (never unknown: too few keys to judge is valid, and the reason says so).
    pub verdict: Verdict,
    pub reason: String,
    pub keys: u64,
    pub shares: Vec<f64>,
    pub max_share: f64,
    pub bound: f64,
}

/// The largest share one of `shards` shards may own of `keys` keys.
pub fn share_bound(keys: u64, shards: usize) -> f64 {
    let p = 1.0 / shards.max(1) as f64;
    if keys == 0 {
        return 1.0;
    }
    p + SIGMAS * (p * (1.0 - p) / keys as f64).sqrt()
}

/// Judges per-shard key counts.
pub fn check(counts: &[u64]) -> Balance {
    let keys: u64 = counts.iter().sum();
    let shares: Vec<f64> = counts.iter().map(|&c| if keys == 0 { 0.0 } else { c as f64 / keys as f64 }).collect();
    let max_share = shares.iter().copied().fold(0.0, f64::max);
    let bound = share_bound(keys, counts.len());
    let worst = shares.iter().position(|&s| s == max_share).unwrap_or(0);
    let (verdict, reason) = if counts.len() < 2 {
        (Verdict::Valid, "one shard: nothing to balance".to_string())
    } else if bound >= 1.0 {
        (
            Verdict::Valid,
            format!(
                "not judged: {keys} keys over {} shards are too few (the bound {bound:.2} is at least 1)",
                counts.len()
            ),
        )
    } else if max_share > bound {
        (
            Verdict::Invalid,
            format!(
                "shard {worst} owns {:.0}% of {keys} keys, above the bound {:.0}% (fair share {:.0}% + {SIGMAS} sigma)",
                max_share * 100.0,
                bound * 100.0,
                100.0 / counts.len() as f64
            ),
        )
    } else {
        (
            Verdict::Valid,
            format!("largest share {:.0}% of {keys} keys, within the bound {:.0}%", max_share * 100.0, bound * 100.0),
        )
    };
    Balance { verdict, reason, keys, shares, max_share, bound }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_keys_on_one_shard_is_invalid_once_there_are_enough_keys() {
        let b = check(&[30, 0]);
        assert_eq!(b.verdict, Verdict::Invalid, "{b:?}");
        assert!(b.reason.contains("shard 0 owns 100%"), "{}", b.reason);
        assert_eq!(check(&[0, 0, 40]).verdict, Verdict::Invalid);
    }

    #[test]
    fn fair_and_binomially_plausible_splits_are_valid() {
        assert_eq!(check(&[15, 15]).verdict, Verdict::Valid);
        // 40 keys, 2 shards: bound 0.5 + 4 * 0.079 = 0.816; 30/40 = 0.75 is plausible.
        assert_eq!(check(&[30, 10]).verdict, Verdict::Valid);
        assert_eq!(check(&[34, 6]).verdict, Verdict::Invalid);
        assert!((share_bound(40, 2) - 0.8162).abs() < 1e-3);
    }

    #[test]
    fn too_few_keys_cannot_be_judged_and_say_so() {
        let b = check(&[10, 0]);
        assert_eq!(b.verdict, Verdict::Valid);
        assert!(b.reason.starts_with("not judged"), "{}", b.reason);
        assert!(check(&[0, 0]).reason.starts_with("not judged"));
        assert!(check(&[7]).reason.contains("one shard"));
    }

    /// The bound is sound for a random placement: over many simulated placements the false
    /// alarm rate stays far below 1%.
    #[test]
    fn random_placements_rarely_trip_the_bound() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut alarms = 0;
        for _ in 0..2000 {
            let mut c = [0u64; 3];
            for _ in 0..60 {
                c[rng.random_range(0..3)] += 1;
            }
            if check(&c).verdict == Verdict::Invalid {
                alarms += 1;
            }
        }
        assert!(alarms <= 2, "{alarms} false alarms in 2000");
    }
}
