//! The search's memo cache: a set of (linearized-set bitset, model state) configurations
//! already explored.
//!
//! Entries live back to back in one arena of `u64` words, found through an open-addressing
//! table of entry numbers, with no per-entry allocation. A bitset is stored compressed: the
//! search linearizes operations roughly in history order, so a bitset is mostly leading words
//! that are all ones, then a short window, then zeros; an entry keeps only the window
//! (`[header: first word | window length << 32, window words..., state]`), so its size follows
//! the concurrency of the history rather than its length. Growth comes in bounded chunks, and
//! [`Cache::growth_bytes`] tells the caller what the next insert would allocate so the memory
//! budget is checked *before* it is spent.

/// Most words added to the arena in one growth step (bounds the overshoot of a reservation).
const GROW_WORDS_MAX: usize = 8 << 20;
/// Most entries added to the per-entry vectors in one growth step.
const GROW_ENTRIES_MAX: usize = 1 << 20;

pub(crate) struct Cache {
    arena: Vec<u64>,
    /// Per entry: where it starts in the arena.
    offsets: Vec<u64>,
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

/// A bitset as stored: every word before `first` is all ones, every word from
/// `first + window.len()` on is zero.
#[derive(Clone, Copy)]
pub(crate) struct Window<'a> {
    pub first: usize,
    pub window: &'a [u64],
}

impl Cache {
    pub fn new() -> Self {
        Cache { arena: Vec::new(), offsets: Vec::new(), hashes: Vec::new(), slots: vec![0; 1024] }
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn memory_bytes(&self) -> usize {
        self.arena.capacity() * 8 + self.offsets.capacity() * 8 + self.hashes.capacity() * 8 + self.slots.capacity() * 4
    }

    fn grow_entries(&self) -> usize {
        self.hashes.capacity().clamp(1024, GROW_ENTRIES_MAX)
    }

    fn grow_words(&self, needed: usize) -> usize {
        self.arena.capacity().clamp(4096, GROW_WORDS_MAX).max(needed)
    }

    /// Bytes the insert of a bitset with a window of `window_words` would allocate (0 if it
    /// fits in what is allocated).
    pub fn growth_bytes(&self, window_words: usize) -> usize {
        let mut b = 0;
        if self.hashes.len() == self.hashes.capacity() {
            b += self.grow_entries() * 16;
        }
        let needed = window_words + 2;
        if self.arena.len() + needed > self.arena.capacity() {
            b += self.grow_words(needed) * 8;
        }
        if (self.hashes.len() + 1) * 2 > self.slots.len() {
            b += self.slots.len() * 2 * 4;
        }
        b
    }

    /// Adds the configuration; `false` if it was already there. `hash` must be a function of
    /// (bitset, `state`) only.
    pub fn insert(&mut self, hash: u64, bits: Window<'_>, state: u32) -> bool {
        debug_assert!(bits.window.first() != Some(&u64::MAX) && bits.window.last() != Some(&0));
        let header = bits.first as u64 | ((bits.window.len() as u64) << 32);
        let mask = self.slots.len() - 1;
        let mut i = (hash as usize) & mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                break;
            }
            let e = (s - 1) as usize;
            if self.hashes[e] == hash {
                let at = self.offsets[e] as usize;
                if self.arena[at] == header {
                    let n = bits.window.len();
                    let stored = &self.arena[at + 1..at + 2 + n];
                    if stored[n] == u64::from(state) && &stored[..n] == bits.window {
                        return false;
                    }
                }
            }
            i = (i + 1) & mask;
        }
        if self.hashes.len() == self.hashes.capacity() {
            let n = self.grow_entries();
            self.hashes.reserve_exact(n);
            self.offsets.reserve_exact(n);
        }
        let needed = bits.window.len() + 2;
        if self.arena.len() + needed > self.arena.capacity() {
            self.arena.reserve_exact(self.grow_words(needed));
        }
        let e = self.hashes.len();
        assert!(e < u32::MAX as usize - 1, "cache entry numbers fit in u32");
        self.hashes.push(hash);
        self.offsets.push(self.arena.len() as u64);
        self.arena.push(header);
        self.arena.extend_from_slice(bits.window);
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

    fn w(first: usize, window: &[u64]) -> Window<'_> {
        Window { first, window }
    }

    #[test]
    fn insert_reports_new_and_seen_configurations() {
        let mut c = Cache::new();
        assert!(c.insert(7, w(0, &[1, 2]), 3));
        assert!(!c.insert(7, w(0, &[1, 2]), 3));
        // Same hash, different content: all kept.
        assert!(c.insert(7, w(0, &[1, 2]), 4));
        assert!(c.insert(7, w(0, &[1, 3]), 3));
        assert!(c.insert(7, w(1, &[1, 2]), 3));
        assert!(c.insert(7, w(0, &[1]), 3));
        assert!(c.insert(7, w(0, &[]), 3));
        assert!(!c.insert(7, w(0, &[]), 3));
        assert_eq!(c.len(), 6);
    }

    #[test]
    fn survives_growth_and_rehash() {
        let mut c = Cache::new();
        for i in 1..5000u64 {
            assert!(c.insert(mix(i), w(i as usize % 3, &[i]), (i % 7) as u32));
        }
        for i in 1..5000u64 {
            assert!(!c.insert(mix(i), w(i as usize % 3, &[i]), (i % 7) as u32));
        }
        assert_eq!(c.len(), 4999);
        assert!(c.memory_bytes() >= 4999 * 40);
    }
}
