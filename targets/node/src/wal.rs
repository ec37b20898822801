//! Stable storage of a Raft node: a checksummed write-ahead log (`wal.log`) holding hard-state
//! and log-entry records, and a snapshot file (`snapshot.bin`) replaced atomically.
//!
//! Record framing: `len: u32 LE | crc32(payload): u32 LE | payload (JSON)`. Every append is
//! fsynced before `append` returns (unless the `no-fsync` bug is on), so the runtime can then
//! send votes, acknowledgements and client replies. On open, a record cut short or failing its
//! checksum at the very end of the file, or a zero-filled tail, is a torn write from a crash: it
//! is dropped and the file truncated. A bad record followed by more data, or a length no append
//! could have written, is corruption, and opening fails.

use faultline_protocols::raft::{Entry, HardState, Restore, Snapshot};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{path}: corrupt record at byte offset {offset}: {reason} (and more data follows, so this is not a torn tail)"
    )]
    Corrupt { path: PathBuf, offset: u64, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "rec", rename_all = "kebab-case")]
enum Record {
    HardState(HardState),
    /// Truncate the log to indices `< first_index`, then append `entries` (starting there).
    Entries {
        first_index: u64,
        entries: Vec<Entry>,
    },
}

/// Largest record accepted when reading: anything bigger is a corrupt length field.
const RECORD_BYTES_MAX: u32 = 256 << 20;
/// With the `no-fsync` bug, buffered records reach the file at most this often.
const NO_FSYNC_FLUSH_INTERVAL: Duration = Duration::from_millis(1000);

pub struct Wal {
    dir: PathBuf,
    wal_path: PathBuf,
    file: File,
    /// BUG no-fsync: records wait here (in process memory, lost on kill -9) until the next
    /// periodic flush, and are never fsynced.
    no_fsync: bool,
    buf: Vec<u8>,
    last_flush: Instant,
    /// Bytes appended since the last rewrite (used to decide nothing yet; reported in logs).
    pub bytes_since_rewrite: u64,
}

fn frame(rec: &Record, out: &mut Vec<u8>) {
    let payload = serde_json::to_vec(rec).expect("records serialize");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// What reading a WAL found.
#[derive(Debug, Default)]
pub struct Scan {
    pub records: usize,
    /// Byte offset of a dropped torn tail, if any.
    pub torn_at: Option<u64>,
}

fn scan(path: &Path, bytes: &[u8]) -> Result<(Vec<Record>, Scan), WalError> {
    let mut recs = Vec::new();
    let mut off = 0usize;
    let mut info = Scan::default();
    while off < bytes.len() {
        let bad = |reason: String, end: usize| -> Result<(), WalError> {
            // A torn write can only be the last thing in the file.
            if end >= bytes.len() {
                Ok(())
            } else {
                Err(WalError::Corrupt { path: path.to_path_buf(), offset: off as u64, reason })
            }
        };
        if bytes[off..].iter().all(|b| *b == 0) {
            // Space the file system allocated but the crashed append never filled.
            info.torn_at = Some(off as u64);
            break;
        }
        if bytes.len() - off < 8 {
            bad("header cut short".into(), bytes.len())?;
            info.torn_at = Some(off as u64);
            break;
        }
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(bytes[off + 4..off + 8].try_into().expect("4 bytes"));
        let end = off + 8 + len as usize;
        if len > RECORD_BYTES_MAX {
            // No append writes such a length, so this is corruption, not a torn write (a torn
            // write leaves a prefix of what was written, or zeros where nothing arrived).
            return Err(WalError::Corrupt {
                path: path.to_path_buf(),
                offset: off as u64,
                reason: format!("record length {len} exceeds {RECORD_BYTES_MAX}"),
            });
        }
        if end > bytes.len() {
            // Length runs past the end: a torn append.
            bad(format!("record length {len} runs past the end of the file"), bytes.len())?;
            info.torn_at = Some(off as u64);
            break;
        }
        let payload = &bytes[off + 8..end];
        if crc32fast::hash(payload) != crc {
            bad("checksum mismatch".into(), end)?;
            info.torn_at = Some(off as u64);
            break;
        }
        match serde_json::from_slice::<Record>(payload) {
            Ok(r) => recs.push(r),
            Err(e) => {
                return Err(WalError::Corrupt {
                    path: path.to_path_buf(),
                    offset: off as u64,
                    reason: format!("checksum ok but payload unreadable: {e}"),
                })
            }
        }
        info.records += 1;
        off = end;
    }
    Ok((recs, info))
}

fn fsync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Writes `bytes` to `path` atomically: temp file, fsync, rename, fsync of the directory.
fn write_atomic(dir: &Path, path: &Path, bytes: &[u8], sync: bool) -> Result<(), WalError> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    if sync {
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    if sync {
        fsync_dir(dir)?;
    }
    Ok(())
}

impl Wal {
    /// Opens (or creates) the storage in `dir` and returns what it holds.
    pub fn open(dir: &Path, no_fsync: bool) -> Result<(Wal, Restore, Scan), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let snap_path = dir.join("snapshot.bin");
        let snapshot = match fs::read(&snap_path) {
            Ok(bytes) => Some(read_snapshot(&snap_path, &bytes)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(WalError::Io { path: snap_path, source: e }),
        };
        let wal_path = dir.join("wal.log");
        let mut bytes = Vec::new();
        match File::open(&wal_path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(io_err(&wal_path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(WalError::Io { path: wal_path, source: e }),
        }
        let (recs, info) = scan(&wal_path, &bytes)?;
        let mut hard_state = HardState::default();
        let mut entries: Vec<Entry> = Vec::new();
        for r in recs {
            match r {
                Record::HardState(h) => hard_state = h,
                Record::Entries { first_index, entries: new } => {
                    if let Some(first) = entries.first().map(|e| e.index) {
                        let last = entries.last().map(|e| e.index).unwrap_or(0);
                        if first_index > last + 1 {
                            return Err(WalError::Invalid {
                                path: wal_path,
                                reason: format!(
                                    "entries record starts at {first_index} after last index {last}: a gap"
                                ),
                            });
                        }
                        entries.truncate(first_index.saturating_sub(first) as usize);
                    }
                    for (i, e) in new.iter().enumerate() {
                        if e.index != first_index + i as u64 {
                            return Err(WalError::Invalid {
                                path: wal_path,
                                reason: format!(
                                    "entries record at {first_index} holds index {} at position {i}",
                                    e.index
                                ),
                            });
                        }
                    }
                    entries.extend(new);
                }
            }
        }
        let snap_index = snapshot.as_ref().map(|s: &Snapshot| s.index).unwrap_or(0);
        entries.retain(|e| e.index > snap_index);
        if let Some(first) = entries.first() {
            if first.index != snap_index + 1 {
                return Err(WalError::Invalid {
                    path: wal_path,
                    reason: format!("log starts at {} but the snapshot ends at {snap_index}", first.index),
                });
            }
        }
        if let Some(at) = info.torn_at {
            tracing::warn!(path = %wal_path.display(), offset = at, "dropping a torn record at the end of the WAL");
            let f = OpenOptions::new().write(true).open(&wal_path).map_err(io_err(&wal_path))?;
            f.set_len(at).map_err(io_err(&wal_path))?;
            f.sync_all().map_err(io_err(&wal_path))?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&wal_path).map_err(io_err(&wal_path))?;
        if !no_fsync {
            fsync_dir(dir)?; // the file's directory entry must survive too
        }
        let wal = Wal {
            dir: dir.to_path_buf(),
            wal_path,
            file,
            no_fsync,
            buf: Vec::new(),
            last_flush: Instant::now(),
            bytes_since_rewrite: 0,
        };
        Ok((wal, Restore { hard_state, snapshot, entries }, info))
    }

    /// Appends a hard-state change and/or log entries (truncating from `first_index`), durably.
    pub fn append(
        &mut self,
        hs: Option<&HardState>,
        first_index: Option<u64>,
        entries: &[Entry],
    ) -> Result<(), WalError> {
        let mut out = Vec::new();
        if let Some(first_index) = first_index {
            frame(&Record::Entries { first_index, entries: entries.to_vec() }, &mut out);
        }
        if let Some(h) = hs {
            frame(&Record::HardState(h.clone()), &mut out);
        }
        if out.is_empty() {
            return Ok(());
        }
        self.bytes_since_rewrite += out.len() as u64;
        if self.no_fsync {
            self.buf.extend_from_slice(&out);
            return self.flush_if_due();
        }
        self.file.write_all(&out).map_err(io_err(&self.wal_path))?;
        self.file.sync_data().map_err(io_err(&self.wal_path))
    }

    /// BUG no-fsync only: moves buffered records to the file (no fsync) once per interval.
    pub fn flush_if_due(&mut self) -> Result<(), WalError> {
        if self.no_fsync && !self.buf.is_empty() && self.last_flush.elapsed() >= NO_FSYNC_FLUSH_INTERVAL {
            self.file.write_all(&self.buf).map_err(io_err(&self.wal_path))?;
            self.buf.clear();
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    /// Persists a snapshot, then replaces the WAL by one holding `hs` and the log after the
    /// snapshot (§7 log compaction). Crash-safe at every step: the old WAL stays valid with the
    /// new snapshot (entries it covers are ignored on open).
    pub fn save_snapshot(&mut self, snap: &Snapshot, hs: &HardState, entries: &[Entry]) -> Result<(), WalError> {
        let sync = !self.no_fsync;
        let snap_path = self.dir.join("snapshot.bin");
        let mut bytes = Vec::new();
        let payload = serde_json::to_vec(snap).expect("snapshots serialize");
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        write_atomic(&self.dir, &snap_path, &bytes, sync)?;
        let mut wal = Vec::new();
        frame(&Record::HardState(hs.clone()), &mut wal);
        frame(&Record::Entries { first_index: snap.index + 1, entries: entries.to_vec() }, &mut wal);
        write_atomic(&self.dir, &self.wal_path, &wal, sync)?;
        self.buf.clear(); // superseded by the rewrite
        self.file = OpenOptions::new().append(true).open(&self.wal_path).map_err(io_err(&self.wal_path))?;
        self.bytes_since_rewrite = 0;
        Ok(())
    }
}

/// Snapshots are replaced by rename, so a bad one is corruption, never a torn write.
fn read_snapshot(path: &Path, bytes: &[u8]) -> Result<Snapshot, WalError> {
    let invalid = |reason: &str| WalError::Invalid { path: path.to_path_buf(), reason: reason.to_string() };
    if bytes.len() < 8 {
        return Err(invalid("snapshot file shorter than its header"));
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if bytes.len() != 8 + len {
        return Err(invalid("snapshot file length does not match its header"));
    }
    if crc32fast::hash(&bytes[8..]) != crc {
        return Err(invalid("snapshot checksum mismatch"));
    }
    serde_json::from_slice(&bytes[8..]).map_err(|e| invalid(&format!("snapshot unreadable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_protocols::raft::Command;

    fn e(index: u64, term: u64, v: i64) -> Entry {
        Entry { index, term, cmd: Command::Write { key: "k".into(), value: v } }
    }

    fn hs(term: u64) -> HardState {
        HardState { term, vote: Some("n1".into()) }
    }

    #[test]
    fn appends_survive_reopen_with_truncation_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut w, r, _) = Wal::open(dir.path(), false).expect("open");
            assert_eq!(r.entries.len(), 0);
            w.append(Some(&hs(1)), Some(1), &[e(1, 1, 1), e(2, 1, 2), e(3, 1, 3)]).expect("append");
            // §5.3 conflict truncation: entries from 2 replaced.
            w.append(Some(&hs(2)), Some(2), &[e(2, 2, 20)]).expect("append");
        }
        let (_, r, scan) = Wal::open(dir.path(), false).expect("reopen");
        assert_eq!(scan.torn_at, None);
        assert_eq!(r.hard_state, hs(2));
        assert_eq!(r.entries, vec![e(1, 1, 1), e(2, 2, 20)]);
    }

    #[test]
    fn a_torn_last_record_is_dropped_and_the_file_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut w, _, _) = Wal::open(dir.path(), false).expect("open");
            w.append(Some(&hs(1)), Some(1), &[e(1, 1, 1)]).expect("append");
            w.append(None, Some(2), &[e(2, 1, 2)]).expect("append");
        }
        let path = dir.path().join("wal.log");
        let full = fs::read(&path).expect("read");
        // Every possible cut inside the last record is detected as a torn tail.
        let (_, first_info) = scan(&path, &full).expect("scan");
        assert_eq!(first_info.records, 3);
        let mut offsets = Vec::new();
        let mut off = 0usize;
        while off < full.len() {
            offsets.push(off);
            off += 8 + u32::from_le_bytes(full[off..off + 4].try_into().expect("4")) as usize;
        }
        let last_start = *offsets.last().expect("records");
        for cut in last_start + 1..full.len() {
            fs::write(&path, &full[..cut]).expect("write");
            let (_, r, info) = Wal::open(dir.path(), false).expect("open torn");
            assert_eq!(info.torn_at, Some(last_start as u64), "cut at {cut}");
            assert_eq!(r.entries, vec![e(1, 1, 1)], "cut at {cut}");
            assert_eq!(fs::metadata(&path).expect("meta").len(), last_start as u64, "truncated");
        }
        // A flipped bit in the last record's payload is a torn tail too.
        let mut flipped = full.clone();
        let n = flipped.len();
        flipped[n - 2] ^= 0x40;
        fs::write(&path, &flipped).expect("write");
        let (_, r, info) = Wal::open(dir.path(), false).expect("open flipped");
        assert_eq!(info.torn_at, Some(last_start as u64));
        assert_eq!(r.entries, vec![e(1, 1, 1)]);
    }

    #[test]
    fn corruption_before_the_tail_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut w, _, _) = Wal::open(dir.path(), false).expect("open");
            w.append(Some(&hs(1)), Some(1), &[e(1, 1, 1)]).expect("append");
            w.append(None, Some(2), &[e(2, 1, 2)]).expect("append");
        }
        let path = dir.path().join("wal.log");
        let mut bytes = fs::read(&path).expect("read");
        bytes[10] ^= 0x01; // inside the first record's payload
        fs::write(&path, &bytes).expect("write");
        let err = Wal::open(dir.path(), false).err().expect("must fail");
        assert!(matches!(err, WalError::Corrupt { offset: 0, .. }), "{err}");
    }

    #[test]
    fn garbage_is_corruption_but_a_zero_filled_tail_is_a_torn_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("wal.log");
        fs::write(&path, b"garbage-garbage-garbage").expect("write");
        let err = Wal::open(dir.path(), false).err().expect("garbage must not open");
        assert!(matches!(err, WalError::Corrupt { offset: 0, .. }), "{err}");
        {
            fs::remove_file(&path).expect("rm");
            let (mut w, _, _) = Wal::open(dir.path(), false).expect("open");
            w.append(Some(&hs(1)), Some(1), &[e(1, 1, 1)]).expect("append");
        }
        let good = fs::metadata(&path).expect("meta").len();
        let mut bytes = fs::read(&path).expect("read");
        bytes.extend_from_slice(&[0u8; 4096]);
        fs::write(&path, &bytes).expect("write");
        let (_, r, info) = Wal::open(dir.path(), false).expect("zero tail opens");
        assert_eq!(info.torn_at, Some(good));
        assert_eq!(r.entries, vec![e(1, 1, 1)]);
    }

    #[test]
    fn snapshot_compacts_the_log_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut w, _, _) = Wal::open(dir.path(), false).expect("open");
            w.append(Some(&hs(1)), Some(1), &[e(1, 1, 1), e(2, 1, 2), e(3, 1, 3)]).expect("append");
            let snap = Snapshot {
                index: 2,
                term: 1,
                kv: [("k".to_string(), 2)].into_iter().collect(),
                lists: Default::default(),
            };
            w.save_snapshot(&snap, &hs(1), &[e(3, 1, 3)]).expect("snapshot");
            w.append(None, Some(4), &[e(4, 1, 4)]).expect("append after rewrite");
        }
        let (_, r, _) = Wal::open(dir.path(), false).expect("reopen");
        assert_eq!(r.snapshot.as_ref().map(|s| s.index), Some(2));
        assert_eq!(r.entries, vec![e(3, 1, 3), e(4, 1, 4)]);
    }

    #[test]
    fn no_fsync_bug_keeps_recent_records_in_memory_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let (mut w, _, _) = Wal::open(dir.path(), true).expect("open");
            w.append(Some(&hs(1)), Some(1), &[e(1, 1, 1)]).expect("append");
            // Dropped without a flush: what a kill -9 does to the buffered records.
        }
        let (_, r, _) = Wal::open(dir.path(), false).expect("reopen");
        assert!(r.entries.is_empty(), "buffered records must not have reached the file");
    }
}
