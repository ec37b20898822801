//! The search's memo cache: the configurations already explored, each a (set of completed
//! ops linearized, model state, set of indeterminate ops linearized), with subsumption.
//!
//! Configurations are grouped by (completed set, state). A configuration is *subsumed* by an
//! explored one of its group whose indeterminate set is a subset of its own: every
//! continuation of the new one is open to the old one too (indeterminate ops have no return
//! to respect, so having applied fewer of them only leaves more choices), so if the old one
//! led nowhere, neither does the new one. The search skips subsumed configurations; a group
//! keeps only its minimal indeterminate sets.
//!
//! Why the search stays complete. (1) Simulation: if C = (D, s, I) has a continuation to
//! success of length k, so has every C' = (D, s, I') with I' ⊆ I: the same ops in the same order,
//! where an indeterminate op of C's continuation that C' has already applied is replaced by
//! the next one of its chain of identical ops (the search's symmetry breaking keeps applied
//! ops a prefix of each chain, so I' ⊆ I means fewer applied per chain, and earlier-called chain
//! members are allowed wherever later ones are); the states, the candidates (the same
//! completed ops are pending, so the same returns bound them) and the model's refinements (they
//! look at completed ops, and at pending puts, of which C' has at least as many) are the same
//! or more permissive. (2) Suppose the search ends `invalid` (its stack empty, so every stored
//! configuration was fully explored) although the root has a continuation to success. Among
//! stored configurations with one, take C of least distance k to success, and a shortest such
//! continuation. Its first step leads to a configuration that is stored (then it has distance
//! k - 1 < k, a contradiction) or was skipped as subsumed by a stored C'' (then by (1) C'' has
//! distance at most k - 1, a contradiction), or its first step completes the search (which
//! would then have ended `valid`). The search's other cuts (forced observers, the no-op rule,
//! model refinements) only skip steps after which no success is lost, and the same argument
//! runs over the continuations they allow.
//!
//! Storage: groups live back to back in one arena of `u64` words, found through an
//! open-addressing table; a completed-set bitset is stored compressed: the search linearizes
//! operations roughly in history order, so it is mostly leading words that are all ones, then
//! a short window, then zeros, and a group keeps only the window (`[header: first word | window
//! length << 32, window words..., state, head of its list]`), so its size follows the
//! concurrency of the history rather than its length. Indeterminate sets are fixed-size nodes
//! `[next, words...]` of singly linked lists in a second arena. Growth comes in bounded chunks,
//! and [`Cache::growth_bytes`] tells the caller what the next insert would allocate so the
//! memory budget is checked *before* it is spent.

/// Most words added to an arena in one growth step (bounds the overshoot of a reservation).
const GROW_WORDS_MAX: usize = 8 << 20;
/// Most entries added to the per-group vectors in one growth step.
const GROW_ENTRIES_MAX: usize = 1 << 20;
/// End of a list.
const NIL: u64 = u64::MAX;

pub(crate) struct Cache {
    /// Words of an indeterminate-set bitset.
    info_words: usize,
    arena: Vec<u64>,
    /// Per group: where it starts in the arena.
    offsets: Vec<u64>,
    hashes: Vec<u64>,
    /// 0 = empty, else group number + 1. Length is a power of two, at most half full.
    slots: Vec<u32>,
    /// Indeterminate-set nodes: `[next, words...]`.
    info_arena: Vec<u64>,
    /// Configurations stored (nodes added, including ones later dropped as subsumed).
    configs: usize,
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

#[inline]
fn subset(a: &[u64], b: &[u64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x & !y == 0)
}

impl Cache {
    pub fn new(info_words: usize) -> Self {
        Cache {
            info_words,
            arena: Vec::new(),
            offsets: Vec::new(),
            hashes: Vec::new(),
            slots: vec![0; 1024],
            info_arena: Vec::new(),
            configs: 0,
        }
    }

    /// Configurations stored.
    pub fn len(&self) -> usize {
        self.configs
    }

    pub fn memory_bytes(&self) -> usize {
        (self.arena.capacity() + self.offsets.capacity() + self.hashes.capacity() + self.info_arena.capacity()) * 8
            + self.slots.capacity() * 4
    }

    fn grow_entries(&self) -> usize {
        self.hashes.capacity().clamp(1024, GROW_ENTRIES_MAX)
    }

    fn grow_words(capacity: usize, needed: usize) -> usize {
        capacity.clamp(4096, GROW_WORDS_MAX).max(needed)
    }

    /// Bytes the insert of a configuration whose completed-set window has `window_words`
    /// words would allocate at most (0 if it fits in what is allocated).
    pub fn growth_bytes(&self, window_words: usize) -> usize {
        let mut b = 0;
        if self.hashes.len() == self.hashes.capacity() {
            b += self.grow_entries() * 16;
        }
        let needed = window_words + 3;
        if self.arena.len() + needed > self.arena.capacity() {
            b += Self::grow_words(self.arena.capacity(), needed) * 8;
        }
        let node = self.info_words + 1;
        if self.info_arena.len() + node > self.info_arena.capacity() {
            b += Self::grow_words(self.info_arena.capacity(), node) * 8;
        }
        if (self.hashes.len() + 1) * 2 > self.slots.len() {
            b += self.slots.len() * 2 * 4;
        }
        b
    }

    fn push_node(&mut self, next: u64, info: &[u64]) -> u64 {
        let node = self.info_words + 1;
        if self.info_arena.len() + node > self.info_arena.capacity() {
            let n = Self::grow_words(self.info_arena.capacity(), node);
            self.info_arena.reserve_exact(n);
        }
        let at = self.info_arena.len() as u64;
        self.info_arena.push(next);
        self.info_arena.extend_from_slice(info);
        self.configs += 1;
        at
    }

    /// Adds the configuration; `false` if an explored one subsumes it (or equals it). `hash`
    /// must be a function of (completed set, `state`) only.
    pub fn insert(&mut self, hash: u64, done: Window<'_>, state: u32, info: &[u64]) -> bool {
        debug_assert!(done.window.first() != Some(&u64::MAX) && done.window.last() != Some(&0));
        debug_assert_eq!(info.len(), self.info_words);
        let header = done.first as u64 | ((done.window.len() as u64) << 32);
        let mask = self.slots.len() - 1;
        let mut i = (hash as usize) & mask;
        let n = done.window.len();
        loop {
            let s = self.slots[i];
            if s == 0 {
                break;
            }
            let e = (s - 1) as usize;
            if self.hashes[e] == hash {
                let at = self.offsets[e] as usize;
                if self.arena[at] == header
                    && self.arena[at + 1 + n] == u64::from(state)
                    && &self.arena[at + 1..at + 1 + n] == done.window
                {
                    return self.insert_into_group(at + 2 + n, info);
                }
            }
            i = (i + 1) & mask;
        }
        if self.hashes.len() == self.hashes.capacity() {
            let g = self.grow_entries();
            self.hashes.reserve_exact(g);
            self.offsets.reserve_exact(g);
        }
        let needed = n + 3;
        if self.arena.len() + needed > self.arena.capacity() {
            let w = Self::grow_words(self.arena.capacity(), needed);
            self.arena.reserve_exact(w);
        }
        let e = self.hashes.len();
        assert!(e < u32::MAX as usize - 1, "cache group numbers fit in u32");
        let head = self.push_node(NIL, info);
        self.hashes.push(hash);
        self.offsets.push(self.arena.len() as u64);
        self.arena.push(header);
        self.arena.extend_from_slice(done.window);
        self.arena.push(u64::from(state));
        self.arena.push(head);
        self.slots[i] = (e + 1) as u32;
        if self.hashes.len() * 2 > self.slots.len() {
            self.rehash();
        }
        true
    }

    /// `head_at`: where the group's list head is stored in the arena.
    fn insert_into_group(&mut self, head_at: usize, info: &[u64]) -> bool {
        let w = self.info_words;
        // Subsumed by a stored set?
        let mut node = self.arena[head_at];
        while node != NIL {
            let at = node as usize;
            if subset(&self.info_arena[at + 1..at + 1 + w], info) {
                return false;
            }
            node = self.info_arena[at];
        }
        // Drop the stored sets the new one subsumes: they can never subsume anything it does not.
        let mut prev: Option<usize> = None;
        let mut node = self.arena[head_at];
        while node != NIL {
            let at = node as usize;
            let next = self.info_arena[at];
            if subset(info, &self.info_arena[at + 1..at + 1 + w]) {
                match prev {
                    None => self.arena[head_at] = next,
                    Some(p) => self.info_arena[p] = next,
                }
            } else {
                prev = Some(at);
            }
            node = next;
        }
        let head = self.arena[head_at];
        self.arena[head_at] = self.push_node(head, info);
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
        let mut c = Cache::new(0);
        assert!(c.insert(7, w(0, &[1, 2]), 3, &[]));
        assert!(!c.insert(7, w(0, &[1, 2]), 3, &[]));
        // Same hash, different content: all kept.
        assert!(c.insert(7, w(0, &[1, 2]), 4, &[]));
        assert!(c.insert(7, w(0, &[1, 3]), 3, &[]));
        assert!(c.insert(7, w(1, &[1, 2]), 3, &[]));
        assert!(c.insert(7, w(0, &[1]), 3, &[]));
        assert!(c.insert(7, w(0, &[]), 3, &[]));
        assert!(!c.insert(7, w(0, &[]), 3, &[]));
        assert_eq!(c.len(), 6);
    }

    #[test]
    fn subsumption_by_indeterminate_subsets() {
        let mut c = Cache::new(1);
        assert!(c.insert(1, w(0, &[1]), 0, &[0b0110]));
        // A superset is subsumed, so is an equal set.
        assert!(!c.insert(1, w(0, &[1]), 0, &[0b0111]));
        assert!(!c.insert(1, w(0, &[1]), 0, &[0b0110]));
        // Incomparable: kept.
        assert!(c.insert(1, w(0, &[1]), 0, &[0b1001]));
        // A subset of both: kept, and it replaces them.
        assert!(c.insert(1, w(0, &[1]), 0, &[0b0000]));
        assert!(!c.insert(1, w(0, &[1]), 0, &[0b1001]));
        assert!(!c.insert(1, w(0, &[1]), 0, &[0b0001]));
        // Another group is independent.
        assert!(c.insert(1, w(0, &[1]), 5, &[0b0111]));
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn survives_growth_and_rehash() {
        let mut c = Cache::new(2);
        for i in 1..5000u64 {
            assert!(c.insert(mix(i), w(i as usize % 3, &[i]), (i % 7) as u32, &[i, 0]));
        }
        for i in 1..5000u64 {
            assert!(!c.insert(mix(i), w(i as usize % 3, &[i]), (i % 7) as u32, &[i, 1]));
        }
        assert_eq!(c.len(), 4999);
        assert!(c.memory_bytes() >= 4999 * 40);
    }
}
