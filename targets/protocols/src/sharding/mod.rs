//! Sharding, as pure functions: which shard group owns a key, and what a move changes.
//!
//! What this module owns:
//! - The hashes: [`hash64`] (FNV-1a 64 finished by MurmurHash3's `fmix64`: stable, defined here
//!   rather than by `std`'s `DefaultHasher`, whose algorithm may change between Rust releases;
//!   the finaliser makes every input bit reach every output bit, which FNV-1a alone does poorly
//!   for short keys) and the `naive-hash` bug's [`naive_hash`] (the sum of the key's
//!   characters, as the seed's Go sketch does).
//! - [`reduce`]: a 64-bit hash to a shard by multiply-shift (Lemire's "fastrange"), which uses
//!   the hash's high bits. A sound hash spreads them evenly; a character sum is a small number
//!   whose high bits are all zero, so under `naive-hash` every key lands on shard 0. (With `%`
//!   the sum would spread `k<digits>` names evenly over 2 or 3 shards, by digit-sum parity or
//!   residue, and hide the flaw this bug is here to show.)
//! - [`Ring`]: consistent hashing with virtual nodes (a shard added takes ~1/n of the keys).
//! - [`Ranges`]: range sharding by sorted split points, each range owned by one shard.
//! - [`Sharding`]: a strategy (`range`, `hash`, `directory`, `consistent-hash`) and the shard
//!   count; [`Overrides`] are the replicated directory's entries (a range's or a key's owner
//!   when a move changed it); [`Sharding::owner`] combines both.
//! - [`plan_move`]: what a rebalance moves (one directory entry, or one range), seeded by the
//!   caller's `pick`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[cfg(test)]
mod tests;

/// FNV-1a 64 of the key's bytes, finished by `fmix64` (MurmurHash3) so all bits avalanche.
pub fn hash64(key: &str) -> u64 {
    let h = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    fmix64(h)
}

/// MurmurHash3's 64-bit finaliser.
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// The `naive-hash` bug: the sum of the key's characters (Unicode scalar values).
pub fn naive_hash(key: &str) -> u64 {
    key.chars().map(|c| c as u64).sum()
}

/// Which hash function keys go through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HashFn {
    /// [`hash64`].
    Mixed,
    /// [`naive_hash`] (bug flag `naive-hash`).
    NaiveSum,
}

impl HashFn {
    pub fn hash(self, key: &str) -> u64 {
        match self {
            HashFn::Mixed => hash64(key),
            HashFn::NaiveSum => naive_hash(key),
        }
    }
}

/// `h` scaled to `0..n` by its high bits: `(h * n) >> 64`. `n` must be at least 1.
pub fn reduce(h: u64, n: usize) -> usize {
    ((h as u128 * n as u128) >> 64) as usize
}

/// Consistent hashing: each shard owns `vnodes` points on a 64-bit ring; a key belongs to the
/// shard of the first point at or after its hash (wrapping around).
#[derive(Clone, Debug, PartialEq)]
pub struct Ring {
    points: Vec<(u64, usize)>,
}

/// Virtual nodes per shard by default: with 2–8 shards, 128 points keep each shard's share of
/// the ring within a few percent of 1/n (measured in the tests).
pub const VNODES_DEFAULT: usize = 128;

impl Ring {
    pub fn new(shards: usize, vnodes: usize, hash: HashFn) -> Ring {
        let mut points: Vec<(u64, usize)> = (0..shards)
            .flat_map(|s| (0..vnodes).map(move |v| (s, v)))
            .map(|(s, v)| (hash.hash(&format!("shard-{s}#{v}")), s))
            .collect();
        // Ties (only plausible under the naive hash) are broken by shard, deterministically.
        points.sort();
        points.dedup_by_key(|p| p.0);
        Ring { points }
    }

    pub fn owner_of_hash(&self, h: u64) -> usize {
        if self.points.is_empty() {
            return 0;
        }
        let i = self.points.partition_point(|p| p.0 < h);
        self.points[i % self.points.len()].1
    }
}

/// Range sharding: `split` sorted, strictly increasing; range `i` is `[split[i-1], split[i])`
/// (the first starts at the empty string, the last is unbounded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranges {
    pub split: Vec<String>,
}

/// Why a sharding configuration is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ShardingError {
    #[error("need at least one shard group")]
    NoShards,
    #[error("split points must be strictly increasing and non-empty: {0:?}")]
    BadSplit(Vec<String>),
    #[error("{given} split points make {ranges} ranges, more than {max} (one range per shard at least, 64 at most)")]
    TooManyRanges { given: usize, ranges: usize, max: usize },
    #[error("unknown sharding {0:?}: expected range, hash, directory or consistent-hash")]
    UnknownStrategy(String),
}

impl Ranges {
    pub fn new(split: Vec<String>) -> Result<Ranges, ShardingError> {
        if split.iter().any(String::is_empty) || split.windows(2).any(|w| w[0] >= w[1]) {
            return Err(ShardingError::BadSplit(split));
        }
        Ok(Ranges { split })
    }

    /// Split points for `shards` shards tuned to the register workload's key names (`k` and a
    /// number): the leading digits 1–9 cut into `shards` runs (`k5` for 2 shards, `k4,k7` for
    /// 3). Other key spaces want `--split-points`.
    pub fn default_for(shards: usize) -> Ranges {
        let split = (1..shards.clamp(1, 9)).map(|i| format!("k{}", 1 + 9 * i / shards.clamp(1, 9))).collect::<Vec<_>>();
        let mut split = split;
        split.dedup();
        Ranges { split }
    }

    pub fn count(&self) -> usize {
        self.split.len() + 1
    }

    /// The range holding `key`.
    pub fn range_of(&self, key: &str) -> usize {
        self.split.partition_point(|s| s.as_str() <= key)
    }

    /// Whether `key` lies in range `r`.
    pub fn contains(&self, r: usize, key: &str) -> bool {
        self.range_of(key) == r
    }
}

/// A sharding strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Range,
    Hash,
    Directory,
    ConsistentHash,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Range => "range",
            Strategy::Hash => "hash",
            Strategy::Directory => "directory",
            Strategy::ConsistentHash => "consistent-hash",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = ShardingError;
    fn from_str(s: &str) -> Result<Strategy, ShardingError> {
        [Strategy::Range, Strategy::Hash, Strategy::Directory, Strategy::ConsistentHash]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ShardingError::UnknownStrategy(s.into()))
    }
}

/// The replicated directory's entries: owners that a move changed. A key or range without an
/// entry has its default owner ([`Sharding::default_owner`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    pub ranges: BTreeMap<usize, usize>,
    pub keys: BTreeMap<String, usize>,
}

/// Key → shard for one strategy over `shards` groups.
#[derive(Clone, Debug, PartialEq)]
pub struct Sharding {
    pub strategy: Strategy,
    pub shards: usize,
    pub hash: HashFn,
    pub ranges: Ranges,
    ring: Ring,
}

/// Largest number of ranges accepted.
pub const RANGES_MAX: usize = 64;

impl Sharding {
    pub fn new(
        strategy: Strategy,
        shards: usize,
        hash: HashFn,
        split: Option<Vec<String>>,
    ) -> Result<Sharding, ShardingError> {
        if shards == 0 {
            return Err(ShardingError::NoShards);
        }
        let ranges = match split {
            Some(s) => Ranges::new(s)?,
            None => Ranges::default_for(shards),
        };
        if ranges.count() > RANGES_MAX {
            return Err(ShardingError::TooManyRanges {
                given: ranges.split.len(),
                ranges: ranges.count(),
                max: RANGES_MAX,
            });
        }
        let ring = Ring::new(shards, VNODES_DEFAULT, hash);
        Ok(Sharding { strategy, shards, hash, ranges, ring })
    }

    /// The owner of range `r` before any move: ranges are dealt to shards in contiguous runs.
    pub fn default_range_owner(&self, r: usize) -> usize {
        r * self.shards / self.ranges.count()
    }

    /// The owner of `key` when the directory has no entry for it (or for its range).
    pub fn default_owner(&self, key: &str) -> usize {
        match self.strategy {
            Strategy::Range => self.default_range_owner(self.ranges.range_of(key)),
            // A directory places a new key by hash; only moves write entries.
            Strategy::Hash | Strategy::Directory => reduce(self.hash.hash(key), self.shards),
            Strategy::ConsistentHash => self.ring.owner_of_hash(self.hash.hash(key)),
        }
    }

    /// The owner of `key` given the directory's entries.
    pub fn owner(&self, key: &str, o: &Overrides) -> usize {
        match self.strategy {
            Strategy::Range => {
                let r = self.ranges.range_of(key);
                o.ranges.get(&r).copied().unwrap_or_else(|| self.default_range_owner(r))
            }
            Strategy::Directory => o.keys.get(key).copied().unwrap_or_else(|| self.default_owner(key)),
            Strategy::Hash | Strategy::ConsistentHash => self.default_owner(key),
        }
    }

    /// Whether a rebalance can move anything under this strategy.
    pub fn movable(&self) -> Result<(), String> {
        match self.strategy {
            Strategy::Range | Strategy::Directory if self.shards >= 2 => Ok(()),
            Strategy::Range | Strategy::Directory => Err("one shard group: nowhere to move to".into()),
            s => Err(format!(
                "sharding {} is a fixed function of the key: there is no range or directory entry to move",
                s.as_str()
            )),
        }
    }
}

/// One rebalance step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "kebab-case")]
pub enum Move {
    /// A directory entry: one key.
    Key { key: String, from: usize, to: usize },
    /// A range, with the known keys it holds (the values to copy).
    Range { range: usize, from: usize, to: usize, keys: Vec<String> },
}

impl Move {
    pub fn keys(&self) -> Vec<String> {
        match self {
            Move::Key { key, .. } => vec![key.clone()],
            Move::Range { keys, .. } => keys.clone(),
        }
    }
    pub fn from(&self) -> usize {
        match self {
            Move::Key { from, .. } | Move::Range { from, .. } => *from,
        }
    }
    pub fn to(&self) -> usize {
        match self {
            Move::Key { to, .. } | Move::Range { to, .. } => *to,
        }
    }
}

/// Plans a move from the seeded `pick`: under `directory`, one of `recent` keys (the keys of
/// recent operations, so the move happens under load) goes to another shard; under `range`, a
/// range (with those of `known` keys it holds) goes to another shard. The target shard is never
/// the current owner.
pub fn plan_move(s: &Sharding, o: &Overrides, pick: u64, recent: &[String], known: &[String]) -> Result<Move, String> {
    s.movable()?;
    let other = |from: usize, salt: u64| (from + 1 + (salt % (s.shards as u64 - 1)) as usize) % s.shards;
    match s.strategy {
        Strategy::Directory => {
            if recent.is_empty() {
                return Err("no key has been used yet: nothing to move".into());
            }
            let key = recent[(pick % recent.len() as u64) as usize].clone();
            let from = s.owner(&key, o);
            Ok(Move::Key { to: other(from, pick / recent.len() as u64), key, from })
        }
        Strategy::Range => {
            let n = s.ranges.count() as u64;
            let range = (pick % n) as usize;
            let from = o.ranges.get(&range).copied().unwrap_or_else(|| s.default_range_owner(range));
            let keys: Vec<String> = known.iter().filter(|k| s.ranges.contains(range, k)).cloned().collect();
            Ok(Move::Range { range, from, to: other(from, pick / n), keys })
        }
        _ => unreachable!("movable() refused the others"),
    }
}

/// The directory entries after `m` is done.
pub fn apply_move(o: &mut Overrides, m: &Move) {
    match m {
        Move::Key { key, to, .. } => {
            o.keys.insert(key.clone(), *to);
        }
        Move::Range { range, to, .. } => {
            o.ranges.insert(*range, *to);
        }
    }
}
