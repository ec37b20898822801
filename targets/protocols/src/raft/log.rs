//! The in-memory Raft log: entries after the last snapshot, plus the snapshot's index and term
//! so that the consistency check (§5.3) works across the compaction boundary (§7).

use super::types::Entry;

#[derive(Debug, Clone, Default)]
pub struct RaftLog {
    /// Index and term of the last entry covered by the snapshot (0, 0 when none).
    snap_index: u64,
    snap_term: u64,
    /// Entries `snap_index + 1 ..= last_index()`, contiguous.
    entries: Vec<Entry>,
}

impl RaftLog {
    pub fn new(snap_index: u64, snap_term: u64, entries: Vec<Entry>) -> Self {
        let log = RaftLog { snap_index, snap_term, entries };
        log.check();
        log
    }

    fn check(&self) {
        for (i, e) in self.entries.iter().enumerate() {
            assert_eq!(e.index, self.snap_index + 1 + i as u64, "log entries must be contiguous");
        }
    }

    pub fn snap_index(&self) -> u64 {
        self.snap_index
    }
    pub fn snap_term(&self) -> u64 {
        self.snap_term
    }
    pub fn first_index(&self) -> u64 {
        self.snap_index + 1
    }
    pub fn last_index(&self) -> u64 {
        self.snap_index + self.entries.len() as u64
    }
    pub fn last_term(&self) -> u64 {
        self.entries.last().map(|e| e.term).unwrap_or(self.snap_term)
    }

    /// Term of the entry at `index`; `None` if compacted away (below the snapshot) or beyond
    /// the end. Index 0 has term 0 (the empty prefix).
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.snap_index {
            return Some(self.snap_term);
        }
        if index < self.snap_index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.snap_index - 1) as usize].term)
    }

    pub fn entry(&self, index: u64) -> Option<&Entry> {
        if index <= self.snap_index || index > self.last_index() {
            return None;
        }
        Some(&self.entries[(index - self.snap_index - 1) as usize])
    }

    /// Entries `from ..= last`, at most `max` of them. `from` must be above the snapshot.
    pub fn slice(&self, from: u64, max: usize) -> Vec<Entry> {
        assert!(from > self.snap_index, "slice below the snapshot");
        if from > self.last_index() {
            return Vec::new();
        }
        let start = (from - self.snap_index - 1) as usize;
        let end = start.saturating_add(max).min(self.entries.len());
        self.entries[start..end].to_vec()
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn append(&mut self, e: Entry) {
        assert_eq!(e.index, self.last_index() + 1, "append must extend the log by one");
        self.entries.push(e);
    }

    /// Drops entries `>= index` (conflict truncation, §5.3). Never below the snapshot: committed
    /// entries are never truncated.
    pub fn truncate_from(&mut self, index: u64) {
        assert!(index > self.snap_index, "truncation below the snapshot");
        if index <= self.last_index() {
            self.entries.truncate((index - self.snap_index - 1) as usize);
        }
    }

    /// Discards entries `<= index` after a snapshot at `index` with `term` (§7). If the log holds
    /// a matching entry at `index`, the suffix after it is kept; otherwise the whole log goes.
    pub fn compact_to(&mut self, index: u64, term: u64) {
        if index <= self.snap_index {
            return;
        }
        if self.term(index) == Some(term) {
            let drop = (index - self.snap_index) as usize;
            self.entries.drain(..drop);
        } else {
            self.entries.clear();
        }
        self.snap_index = index;
        self.snap_term = term;
        self.check();
    }

    /// The election restriction of §5.4.1, seen from the voter: true if a candidate whose log
    /// ends at (`last_index`, `last_term`) is at least as up to date as this log.
    pub fn candidate_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// First index of the run of entries with the same term as the entry at `index`
    /// (used for the rejection hint; never below the snapshot boundary).
    pub fn first_index_of_term_at(&self, index: u64) -> u64 {
        let Some(t) = self.term(index) else { return index };
        let mut i = index;
        while i > self.first_index() && self.term(i - 1) == Some(t) {
            i -= 1;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::types::Command;

    fn e(index: u64, term: u64) -> Entry {
        Entry { index, term, cmd: Command::Noop }
    }

    #[test]
    fn terms_across_the_snapshot_boundary() {
        let log = RaftLog::new(5, 2, vec![e(6, 2), e(7, 3)]);
        assert_eq!(log.term(4), None);
        assert_eq!(log.term(5), Some(2));
        assert_eq!(log.term(7), Some(3));
        assert_eq!(log.term(8), None);
        assert_eq!(log.last_index(), 7);
        assert_eq!(log.first_index_of_term_at(6), 6);
    }

    #[test]
    fn compaction_keeps_a_matching_suffix_and_drops_a_conflicting_log() {
        let mut log = RaftLog::new(0, 0, vec![e(1, 1), e(2, 1), e(3, 2)]);
        log.compact_to(2, 1);
        assert_eq!((log.snap_index(), log.last_index()), (2, 3));
        let mut other = RaftLog::new(0, 0, vec![e(1, 1), e(2, 1)]);
        other.compact_to(2, 5);
        assert_eq!((other.snap_index(), other.last_index(), other.last_term()), (2, 2, 5));
    }

    #[test]
    fn truncation_drops_the_suffix() {
        let mut log = RaftLog::new(0, 0, vec![e(1, 1), e(2, 1), e(3, 2)]);
        log.truncate_from(2);
        assert_eq!(log.last_index(), 1);
    }
}
