//! The search's memo cache: a set of (linearized-set bitset, model state) configurations
//! already explored.
//!
//! Entries live back to back in one arena of `u64` words (`bit_words` words of bitset, then the
//! state), found through an open-addressing table of entry numbers, so an entry costs
//! `(bit_words + 1) * 8 + 8` bytes plus table slack, with no per-entry allocation. Growth comes in
//! bounded chunks, and [`Cache::growth_bytes`] tells the caller what the next insert would
//! allocate so the memory budget is checked *before* it is spent.

/// Most entries added to the arena in one growth step (bounds the overshoot of a reservation).
const GROW_ENTRIES_MAX: usize = 1 << 20;

pub(crate) struct Cache {
    bit_words: usize,
    arena: Vec<u64>,
    hashes: Vec<u64>,
    /// 0 = empty, else entry number + 1. Length is a power of two, at most half full.
    slots: Vec<u32>,
}

/// splitmix64: the mixing function for op keys and states.
#[inline]
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Cache {
    pub fn new(bit_words: usize) -> Self {
        Cache { bit_words, arena: Vec::new(), hashes: Vec::new(), slots: vec![0; 1024] }
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn memory_bytes(&self) -> usize {
        self.arena.capacity() * 8 + self.hashes.capacity() * 8 + self.slots.capacity() * 4
    }

    fn grow_entries(&self) -> usize {
        self.hashes.capacity().clamp(1024, GROW_ENTRIES_MAX)
    }

    /// Bytes the next insert would allocate (0 if it fits in what is allocated).
    pub fn growth_bytes(&self) -> usize {
        let mut b = 0;
        if self.hashes.len() == self.hashes.capacity() {
            b += self.grow_entries() * (8 + (self.bit_words + 1) * 8);
        }
        if (self.hashes.len() + 1) * 2 > self.slots.len() {
            b += self.slots.len() * 2 * 4;
        }
        b
    }

    /// Adds the configuration; `false` if it was already there. `hash` must be a function of
    /// (`bits`, `state`) only.
    pub fn insert(&mut self, hash: u64, bits: &[u64], state: u32) -> bool {
        debug_assert_eq!(bits.len(), self.bit_words);
        let w = self.bit_words + 1;
        let mask = self.slots.len() - 1;
        let mut i = (hash as usize) & mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                break;
            }
            let e = (s - 1) as usize;
            if self.hashes[e] == hash {
                let stored = &self.arena[e * w..(e + 1) * w];
                if stored[self.bit_words] == u64::from(state) && &stored[..self.bit_words] == bits {
                    return false;
                }
            }
            i = (i + 1) & mask;
        }
        if self.hashes.len() == self.hashes.capacity() {
            let n = self.grow_entries();
            self.hashes.reserve_exact(n);
            self.arena.reserve_exact(n * w);
        }
        let e = self.hashes.len();
        assert!(e < u32::MAX as usize - 1, "cache entry numbers fit in u32");
        self.hashes.push(hash);
        self.arena.extend_from_slice(bits);
        self.arena.push(u64::from(state));
        self.slots[i] = (e + 1) as u32;
        if self.hashes.len() * 2 > self.slots.len() {
            self.rehash();
        }
        true
    }

    fn rehash(&mut self) {
        let n = self.slots.len() * 2;
        let mask = n - 1;
        let mut slots = vec![0u32; n];
        for (e, &h) in self.hashes.iter().enumerate() {
            let mut i = (h as usize) & mask;
            while slots[i] != 0 {
                i = (i + 1) & mask;
            }
            slots[i] = (e + 1) as u32;
        }
        self.slots = slots;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_reports_new_and_seen_configurations() {
        let mut c = Cache::new(2);
        assert!(c.insert(7, &[1, 2], 3));
        assert!(!c.insert(7, &[1, 2], 3));
        // Same hash, different content: both kept.
        assert!(c.insert(7, &[1, 2], 4));
        assert!(c.insert(7, &[1, 3], 3));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn survives_growth_and_rehash() {
        let mut c = Cache::new(1);
        for i in 0..5000u64 {
            assert!(c.insert(mix(i), &[i], (i % 7) as u32));
        }
        for i in 0..5000u64 {
            assert!(!c.insert(mix(i), &[i], (i % 7) as u32));
        }
        assert_eq!(c.len(), 5000);
        assert!(c.memory_bytes() >= 5000 * 24);
    }
}
