//! Primary–backup (master–slave) replication as a pure state machine: one primary orders every
//! update into a sequenced log and ships it to the backups; there is **no consensus**, so a
//! partition can leave two primaries (split brain) and a failover can drop writes the old
//! primary acknowledged. That is what this role exists to show (docs/targets.md).
//!
//! What this module owns:
//! - [`Epoch`]: (counter, primary id), totally ordered and unique per promotion: a node that
//!   promotes itself takes (highest counter it has seen + 1, its own id), so two backups promoting
//!   at once still get distinct epochs and the higher one wins when they meet. Every message
//!   carries the sender's epoch; a node that sees a higher one adopts it, and a primary that does
//!   steps down (its pending writes answer [`Reply::LostPrimacy`], indefinite).
//! - The replication log: entries (index, epoch, command) after a compacted base; the primary
//!   sends `Append` with the (index, epoch) of the entry before the batch, and a backup accepts
//!   only if it holds that entry (the log matching check of Raft §5.3), so every backup's log is
//!   a prefix of its primary's. A backup that is behind catches up from the primary's log (the
//!   bounded backlog, like Redis' partial resync); a backup whose log diverged from the primary
//!   (it applied entries of an older primary), or that is behind the backlog, receives the whole
//!   state (`Snapshot`, like Redis' full resync) and loses its divergent entries.
//! - Acknowledgement: asynchronous by default (the primary commits an entry as soon as it is on
//!   its own disk, and replies; backups get it afterwards); with `sync` the primary commits an
//!   entry once **every** backup has it on disk, and only then applies it and replies (a write
//!   that cannot reach every backup waits, and the runtime times it out as indefinite). Reads on
//!   the primary see the committed state only; backups apply what the primary says is committed.
//! - Failover: the primary heartbeats every `heartbeat_ticks`; each heartbeat tells a backup its
//!   rank in the succession, backups ordered by how much of the log they acknowledged (most
//!   first), then by id. A backup that has not heard its primary for `failover_ticks × (1 +
//!   rank)` promotes itself, so the most complete backup goes first and the next ones wait one
//!   more timeout each (and follow it if they hear it). Before any primary is known (first boot,
//!   or after a restart), the rank is the node's position among the sorted member ids.
//!
//! - BUG `sync-fallback` ([`Bugs`]): sync mode stops waiting for a backup silent for a failover
//!   timeout, as MySQL's semi-synchronous replication does, and so acknowledges writes the
//!   next failover drops.
//!
//! No I/O and no clock: the runtime feeds ticks, messages and client requests, and takes a
//! [`Ready`] (state to persist, then messages to send, then replies to deliver).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[cfg(test)]
mod tests;

pub type NodeId = String;
/// Opaque id the runtime gives a client request to route its reply.
pub type ReqId = u64;

/// A primary's reign: ordered by counter, then by the primary's id (so concurrent promotions
/// are ordered too). The default (0, "") is "no primary yet".
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch {
    pub n: u64,
    pub primary: NodeId,
}

/// An update carried by the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Command {
    Write {
        key: String,
        value: i64,
    },
    /// Swaps when the key holds `from` (`None`: when it is absent).
    Cas {
        key: String,
        from: Option<i64>,
        to: i64,
    },
    SetAdd {
        key: String,
        element: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub index: u64,
    pub epoch: Epoch,
    pub cmd: Command,
}

/// The replicated data: integer registers and sets of integers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Data {
    pub kv: BTreeMap<String, i64>,
    pub sets: BTreeMap<String, BTreeSet<i64>>,
}

impl Data {
    /// Applies one command; the reply its client gets.
    pub fn apply(&mut self, cmd: &Command) -> Reply {
        match cmd {
            Command::Write { key, value } => {
                self.kv.insert(key.clone(), *value);
                Reply::Done
            }
            Command::Cas { key, from, to } => match self.kv.get(key) {
                cur if cur.copied() == *from => {
                    self.kv.insert(key.clone(), *to);
                    Reply::Done
                }
                cur => Reply::CasMismatch { current: cur.copied() },
            },
            Command::SetAdd { key, element } => {
                self.sets.entry(key.clone()).or_default().insert(*element);
                Reply::Done
            }
        }
    }
}

/// The whole state after applying the log up to `index` (whose entry had `epoch`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub index: u64,
    pub epoch: Epoch,
    pub data: Data,
}

/// Messages between nodes; one-way, so the transport may lose, duplicate or reorder them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Message {
    /// Primary → backup: entries after (`prev_index`, `prev_epoch`) (none: a heartbeat), the
    /// primary's commit index and last index when it sent this, and the backup's `rank` in the
    /// succession.
    Append { epoch: Epoch, prev_index: u64, prev_epoch: Epoch, entries: Vec<Entry>, commit: u64, last: u64, rank: u32 },
    /// Backup → primary. `ok`: the backup's log matches the primary's up to `index`. Not ok: its
    /// last entry is (`index`, `last_epoch`), or (`full`) it holds applied entries the primary
    /// does not have and needs the whole state.
    AppendResp { epoch: Epoch, ok: bool, index: u64, last_epoch: Epoch, full: bool },
    /// Primary → backup: full resync, the primary's committed state and every entry of its
    /// log after it (in sync mode those may be entries every backup acknowledged that the
    /// primary has not yet learned are committed: a resync must not lose them).
    Snapshot { epoch: Epoch, snapshot: Snapshot, entries: Vec<Entry>, commit: u64, rank: u32 },
}

impl Message {
    pub fn epoch(&self) -> &Epoch {
        match self {
            Message::Append { epoch, .. } | Message::AppendResp { epoch, .. } | Message::Snapshot { epoch, .. } => {
                epoch
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: Message,
}

/// The answer to one client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A register read (`None`: never written).
    Value(Option<i64>),
    /// A set read, ascending.
    Elements(Vec<i64>),
    /// A write, a successful cas, a set add.
    Done,
    /// Definite: the cas precondition did not hold.
    CasMismatch { current: Option<i64> },
    /// Definite: this node is not the primary (nothing was logged); `primary` if known.
    NotPrimary { primary: Option<NodeId> },
    /// Definite: refused before logging (too many writes pending).
    Unavailable { reason: String },
    /// Indefinite: logged, then this node stopped being the primary before committing it.
    LostPrimacy,
}

/// What the runtime must make durable (fsync) before sending the messages and replies of the
/// same [`Ready`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Persist {
    /// The highest epoch seen (persisted before acting on it).
    Epoch(Epoch),
    /// Append `entries`; an entry at an index already on disk replaces it and everything after.
    Entries(Vec<Entry>),
    /// Replace everything on disk by this epoch, snapshot and entries (after a full resync, or
    /// to compact the log).
    Rewrite { epoch: Epoch, snapshot: Snapshot, entries: Vec<Entry> },
}

#[derive(Debug, Default)]
pub struct Ready {
    pub persist: Vec<Persist>,
    pub messages: Vec<Envelope>,
    pub replies: Vec<(ReqId, Reply)>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.persist.is_empty() && self.messages.is_empty() && self.replies.is_empty()
    }
}

/// What a restarting node read back from its disk.
#[derive(Clone, Debug, Default)]
pub struct Restore {
    pub epoch: Epoch,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// Every member, this node included.
    pub members: Vec<NodeId>,
    pub heartbeat_ticks: u32,
    /// Silence after which the first-ranked backup promotes itself.
    pub failover_ticks: u32,
    /// Acknowledge writes only once every backup has them (else as soon as they are on disk).
    pub sync: bool,
    /// Entries kept in the log beyond which applied entries are compacted into the snapshot.
    pub log_entries_max: usize,
    /// Applied entries kept after a compaction (the backlog a lagging backup catches up from).
    pub backlog_entries: usize,
    /// Entries per `Append` at most.
    pub batch_entries_max: usize,
    /// Writes waiting for their commit at most; beyond, new writes are refused (definite).
    pub pending_max: usize,
    pub bugs: Bugs,
}

/// Planted bugs (docs/targets.md); all off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// Sync mode silently degrades to async: a backup that has not acknowledged anything for
    /// `failover_ticks` stops being waited for (MySQL's semi-synchronous replication does this
    /// after `rpl_semi_sync_master_timeout`), so a primary cut off from its backups goes on
    /// acknowledging writes that the failover then drops.
    pub sync_fallback: bool,
}

impl Config {
    pub fn new(id: impl Into<NodeId>, members: Vec<NodeId>) -> Config {
        Config {
            id: id.into(),
            members,
            heartbeat_ticks: 5,
            failover_ticks: 30,
            sync: false,
            log_entries_max: 8192,
            backlog_entries: 2048,
            batch_entries_max: 512,
            pending_max: 16384,
            bugs: Bugs::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Backup,
}

impl Role {
    /// The name `/admin/status` shows: the harness recognises the primary by "leader".
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "leader",
            Role::Backup => "backup",
        }
    }
}

/// The primary's view of one backup.
#[derive(Clone, Debug, Default)]
struct Progress {
    /// Highest index known to match the primary's log (acknowledged, on the backup's disk).
    matched: u64,
    /// Next index to send.
    next: u64,
    /// Tick at which a snapshot was last sent (rate limit: snapshots are large).
    snapshot_at: Option<u64>,
    /// Tick of its last positive acknowledgement (BUG sync-fallback: waited for only if recent).
    acked_at: u64,
}

/// Snapshots to one backup at most once per this many heartbeat intervals.
const SNAPSHOT_EVERY_HEARTBEATS: u64 = 4;

/// What `/admin/status` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub role: Role,
    pub epoch: Epoch,
    /// The primary this node follows (itself when primary); `None` before any is known.
    pub primary: Option<NodeId>,
    pub last_index: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub base_index: u64,
    pub rank: u32,
    pub promotions: u64,
    pub full_syncs: u64,
}

pub struct Node {
    cfg: Config,
    role: Role,
    epoch: Epoch,
    /// The log starts after (`base_index`, `base_epoch`); `data` is the state at `applied`.
    base_index: u64,
    base_epoch: Epoch,
    log: VecDeque<Entry>,
    data: Data,
    applied: u64,
    commit: u64,
    now: u64,
    /// Ticks since the primary was last heard (backup) or since the last heartbeat (primary).
    silence: u64,
    rank: u32,
    progress: BTreeMap<NodeId, Progress>,
    /// Writes logged by this primary and not yet answered, by log index.
    pending: BTreeMap<u64, ReqId>,
    ready: Ready,
    promotions: u64,
    full_syncs: u64,
}

impl Node {
    /// A node starting (or restarting) from its disk. It always starts as a backup: a restarted
    /// primary may have been replaced while it was down, and waits to hear (or to time out and
    /// promote itself like any backup).
    pub fn new(cfg: Config, restore: Restore) -> Node {
        let Restore { epoch, snapshot, entries } = restore;
        assert!(entries.windows(2).all(|w| w[1].index == w[0].index + 1), "restored entries are consecutive");
        assert!(entries.first().is_none_or(|e| e.index == snapshot.index + 1), "restored entries follow the snapshot");
        let rank = Self::default_rank(&cfg);
        Node {
            role: Role::Backup,
            epoch,
            base_index: snapshot.index,
            base_epoch: snapshot.epoch,
            log: entries.into(),
            data: snapshot.data,
            applied: snapshot.index,
            commit: snapshot.index,
            now: 0,
            silence: 0,
            rank,
            progress: BTreeMap::new(),
            pending: BTreeMap::new(),
            ready: Ready::default(),
            promotions: 0,
            full_syncs: 0,
            cfg,
        }
    }

    /// Position among the sorted member ids: the succession before any primary ranked us.
    fn default_rank(cfg: &Config) -> u32 {
        let mut m = cfg.members.clone();
        m.sort();
        m.iter().position(|x| *x == cfg.id).unwrap_or(0) as u32
    }

    pub fn id(&self) -> &NodeId {
        &self.cfg.id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    pub fn data(&self) -> &Data {
        &self.data
    }

    pub fn last_index(&self) -> u64 {
        self.log.back().map_or(self.base_index, |e| e.index)
    }

    fn last_epoch(&self) -> Epoch {
        self.log.back().map_or_else(|| self.base_epoch.clone(), |e| e.epoch.clone())
    }

    /// The epoch of the entry at `index`, if this node knows it (the base counts).
    fn epoch_at(&self, index: u64) -> Option<&Epoch> {
        if index == self.base_index {
            return Some(&self.base_epoch);
        }
        if index < self.base_index || index > self.last_index() {
            return None;
        }
        self.log.get((index - self.base_index - 1) as usize).map(|e| &e.epoch)
    }

    fn has(&self, index: u64, epoch: &Epoch) -> bool {
        self.epoch_at(index) == Some(epoch)
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.log.iter().cloned().collect()
    }

    pub fn status(&self) -> Status {
        Status {
            role: self.role,
            epoch: self.epoch.clone(),
            primary: (!self.epoch.primary.is_empty()).then(|| self.epoch.primary.clone()),
            last_index: self.last_index(),
            commit_index: self.commit,
            applied_index: self.applied,
            base_index: self.base_index,
            rank: self.rank,
            promotions: self.promotions,
            full_syncs: self.full_syncs,
        }
    }

    pub fn take_ready(&mut self) -> Ready {
        std::mem::take(&mut self.ready)
    }

    fn backups(&self) -> impl Iterator<Item = &NodeId> {
        self.cfg.members.iter().filter(move |m| **m != self.cfg.id)
    }

    fn send(&mut self, to: &NodeId, msg: Message) {
        self.ready.messages.push(Envelope { from: self.cfg.id.clone(), to: to.clone(), msg });
    }

    // ------------------------------------------------------------------ time and failover

    pub fn tick(&mut self) {
        self.now += 1;
        self.silence += 1;
        match self.role {
            Role::Primary => {
                if self.cfg.sync && self.cfg.bugs.sync_fallback {
                    // Time alone can end the wait for a silent backup.
                    self.advance_commit();
                }
                if self.silence >= self.cfg.heartbeat_ticks as u64 {
                    self.silence = 0;
                    self.broadcast(true);
                }
            }
            Role::Backup => {
                if self.silence >= self.cfg.failover_ticks as u64 * (1 + self.rank as u64) {
                    self.promote();
                }
            }
        }
    }

    /// Takes over as primary in a new epoch, above every epoch seen.
    fn promote(&mut self) {
        self.epoch = Epoch { n: self.epoch.n + 1, primary: self.cfg.id.clone() };
        self.ready.persist.push(Persist::Epoch(self.epoch.clone()));
        self.role = Role::Primary;
        self.promotions += 1;
        self.silence = 0;
        let next = self.last_index() + 1;
        self.progress = self
            .backups()
            .map(|b| (b.clone(), Progress { matched: 0, next, snapshot_at: None, acked_at: self.now }))
            .collect();
        // Everything in this node's log is now the truth, in both modes. Async: as before. Sync:
        // every entry the old primary acknowledged is on every backup's disk, so in this log,
        // but this node learns the old commit index only from a heartbeat that may never come
        // (the primary died right after replying). Serving reads before committing its log
        // would hide acknowledged writes (issue 14: a read after a failover missed an add
        // acknowledged 19 ms before the kill). Entries never acknowledged commit too, which
        // their clients' indefinite answers allow. New writes wait for every backup again.
        self.commit = self.commit.max(self.last_index());
        self.advance_commit();
        self.broadcast(true);
    }

    /// Adopts a higher epoch seen in a message: follow its primary, stepping down if primary.
    fn adopt(&mut self, epoch: &Epoch) {
        debug_assert!(*epoch > self.epoch);
        self.epoch = epoch.clone();
        self.ready.persist.push(Persist::Epoch(self.epoch.clone()));
        if self.role == Role::Primary {
            self.role = Role::Backup;
            self.progress.clear();
            for (_, req) in std::mem::take(&mut self.pending) {
                self.ready.replies.push((req, Reply::LostPrimacy));
            }
        }
        self.silence = 0;
    }

    // ------------------------------------------------------------------ client requests

    /// A write, cas or set add: logged and answered once committed (at once in async mode).
    pub fn propose(&mut self, req: ReqId, cmd: Command) {
        if self.role != Role::Primary {
            let primary = self.status().primary.filter(|p| *p != self.cfg.id);
            self.ready.replies.push((req, Reply::NotPrimary { primary }));
            return;
        }
        if self.pending.len() >= self.cfg.pending_max {
            self.ready.replies.push((
                req,
                Reply::Unavailable { reason: format!("{} writes waiting for replication", self.pending.len()) },
            ));
            return;
        }
        let entry = Entry { index: self.last_index() + 1, epoch: self.epoch.clone(), cmd };
        self.pending.insert(entry.index, req);
        self.ready.persist.push(Persist::Entries(vec![entry.clone()]));
        self.log.push_back(entry);
        self.advance_commit();
        // The entries go out with the next Ready: many writes of one batch share one Append.
    }

    /// A read of the committed state: on the primary (`local` false; a backup refuses), or on
    /// whichever node is asked (`local` true, `--read-from replica`: possibly stale).
    pub fn read(&mut self, req: ReqId, key: &str, local: bool) {
        let reply = self.local_read(key, local, false);
        self.ready.replies.push((req, reply));
    }

    pub fn read_set(&mut self, req: ReqId, key: &str, local: bool) {
        let reply = self.local_read(key, local, true);
        self.ready.replies.push((req, reply));
    }

    fn local_read(&self, key: &str, local: bool, set: bool) -> Reply {
        if !local && self.role != Role::Primary {
            return Reply::NotPrimary { primary: self.status().primary.filter(|p| *p != self.cfg.id) };
        }
        if set {
            Reply::Elements(self.data.sets.get(key).map(|s| s.iter().copied().collect()).unwrap_or_default())
        } else {
            Reply::Value(self.data.kv.get(key).copied())
        }
    }

    // ------------------------------------------------------------------ commit and apply

    /// The primary's commit index: its last entry (async), or the highest entry every backup
    /// acknowledged (sync).
    fn advance_commit(&mut self) {
        if self.role != Role::Primary {
            return;
        }
        let now = self.now;
        let window = self.cfg.failover_ticks as u64;
        let fallback = self.cfg.bugs.sync_fallback;
        let target = if self.cfg.sync {
            self.progress
                .values()
                .filter(|p| !fallback || now < p.acked_at + window)
                .map(|p| p.matched)
                .min()
                .unwrap_or(u64::MAX)
                .min(self.last_index())
        } else {
            self.last_index()
        };
        if target > self.commit {
            self.commit = target;
        }
        self.apply_committed();
    }

    fn apply_committed(&mut self) {
        let upto = self.commit.min(self.last_index());
        while self.applied < upto {
            let i = self.applied + 1;
            let e = &self.log[(i - self.base_index - 1) as usize];
            let reply = self.data.apply(&e.cmd);
            self.applied = i;
            if let Some(req) = self.pending.remove(&i) {
                self.ready.replies.push((req, reply));
            }
        }
        self.maybe_compact();
    }

    /// Folds applied entries into the base once the log is long, keeping a backlog.
    fn maybe_compact(&mut self) {
        if self.log.len() <= self.cfg.log_entries_max {
            return;
        }
        let keep_from = self.applied.saturating_sub(self.cfg.backlog_entries as u64);
        if keep_from <= self.base_index {
            return;
        }
        // The new base is the state at `keep_from`: replay is not needed because the snapshot
        // written is the *applied* state; entries between keep_from and applied stay in the log
        // only as a backlog and are never re-applied (restore starts from the snapshot).
        while self.base_index < keep_from {
            let e = self.log.pop_front().expect("entries up to the applied index are in the log");
            self.base_index = e.index;
            self.base_epoch = e.epoch;
        }
        self.ready.persist.push(self.rewrite());
    }

    /// What a full rewrite of this node's disk holds: the applied state as the snapshot, then
    /// the entries after it.
    fn rewrite(&self) -> Persist {
        Persist::Rewrite {
            epoch: self.epoch.clone(),
            snapshot: self.snapshot(),
            entries: self.log.iter().filter(|e| e.index > self.applied).cloned().collect(),
        }
    }

    /// The applied state as a snapshot.
    fn snapshot(&self) -> Snapshot {
        let epoch = self.epoch_at(self.applied).cloned().expect("the applied entry is known");
        Snapshot { index: self.applied, epoch, data: self.data.clone() }
    }

    // ------------------------------------------------------------------ replication

    fn succession_rank(&self, backup: &NodeId) -> u32 {
        let mut order: Vec<(&NodeId, u64)> = self.progress.iter().map(|(b, p)| (b, p.matched)).collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        order.iter().position(|(b, _)| *b == backup).unwrap_or(0) as u32
    }

    /// Sends every backup what it lacks (`heartbeat`: an empty Append to those up to date).
    fn broadcast(&mut self, heartbeat: bool) {
        let backups: Vec<NodeId> = self.backups().cloned().collect();
        for b in backups {
            self.send_to(&b, heartbeat);
        }
    }

    fn send_to(&mut self, b: &NodeId, heartbeat: bool) {
        let last = self.last_index();
        let Some(p) = self.progress.get(b) else { return };
        let next = p.next;
        if next > last && !heartbeat {
            return;
        }
        let rank = self.succession_rank(b);
        if next <= self.base_index {
            // The entries it needs were compacted away: full resync.
            self.send_snapshot(b);
            return;
        }
        let prev_index = next - 1;
        let prev_epoch = self.epoch_at(prev_index).cloned().expect("next - 1 is within the log");
        let upto = last.min(prev_index + self.cfg.batch_entries_max as u64);
        let entries: Vec<Entry> = (next..=upto).map(|i| self.log[(i - self.base_index - 1) as usize].clone()).collect();
        let msg = Message::Append {
            epoch: self.epoch.clone(),
            prev_index,
            prev_epoch,
            entries,
            commit: self.commit,
            last,
            rank,
        };
        // Optimistic pipelining: assume it arrives; a rejection resets `next`.
        self.progress.get_mut(b).expect("progress").next = upto + 1;
        self.send(b, msg);
    }

    fn send_snapshot(&mut self, b: &NodeId) {
        let due = SNAPSHOT_EVERY_HEARTBEATS * self.cfg.heartbeat_ticks as u64;
        let now = self.now;
        let p = self.progress.get_mut(b).expect("progress");
        if p.snapshot_at.is_some_and(|t| now < t + due) {
            return;
        }
        p.snapshot_at = Some(now);
        let snapshot = self.snapshot();
        let entries: Vec<Entry> = self.log.iter().filter(|e| e.index > snapshot.index).cloned().collect();
        self.progress.get_mut(b).expect("progress").next = self.last_index() + 1;
        let rank = self.succession_rank(b);
        self.send(b, Message::Snapshot { epoch: self.epoch.clone(), snapshot, entries, commit: self.commit, rank });
    }

    /// Sends the entries written since the last call (the runtime calls this once per batch of
    /// client requests, so one Append carries many writes).
    pub fn flush(&mut self) {
        if self.role == Role::Primary {
            self.broadcast(false);
        }
    }

    pub fn step(&mut self, env: Envelope) {
        if env.to != self.cfg.id || env.from == self.cfg.id || !self.cfg.members.contains(&env.from) {
            return;
        }
        let epoch = env.msg.epoch().clone();
        if epoch > self.epoch {
            self.adopt(&epoch);
        }
        match env.msg {
            Message::Append { epoch, prev_index, prev_epoch, entries, commit, last, rank } => {
                if epoch < self.epoch || epoch.primary != env.from {
                    self.reject_stale(&env.from);
                    return;
                }
                self.silence = 0;
                self.rank = rank;
                self.on_append(&env.from, prev_index, &prev_epoch, entries, commit, last);
            }
            Message::Snapshot { epoch, snapshot, entries, commit, rank } => {
                if epoch < self.epoch || epoch.primary != env.from {
                    self.reject_stale(&env.from);
                    return;
                }
                self.silence = 0;
                self.rank = rank;
                self.on_snapshot(&env.from, snapshot, entries, commit);
            }
            Message::AppendResp { epoch, ok, index, last_epoch, full } => {
                if epoch != self.epoch || self.role != Role::Primary {
                    return;
                }
                self.on_append_resp(&env.from, ok, index, &last_epoch, full);
            }
        }
    }

    /// A message from a primary of an older epoch: tell it, so it steps down.
    fn reject_stale(&mut self, to: &NodeId) {
        let msg = Message::AppendResp {
            epoch: self.epoch.clone(),
            ok: false,
            index: self.last_index(),
            last_epoch: self.last_epoch(),
            full: false,
        };
        self.send(to, msg);
    }

    fn respond(&mut self, to: &NodeId, ok: bool, index: u64, last_epoch: Epoch, full: bool) {
        let msg = Message::AppendResp { epoch: self.epoch.clone(), ok, index, last_epoch, full };
        self.send(to, msg);
    }

    fn on_append(
        &mut self,
        from: &NodeId,
        prev_index: u64,
        prev_epoch: &Epoch,
        entries: Vec<Entry>,
        commit: u64,
        primary_last: u64,
    ) {
        if !self.has(prev_index, prev_epoch) {
            let (i, e) = (self.last_index(), self.last_epoch());
            // A log ahead of the primary's with a different entry there cannot be repaired by
            // appending; the primary decides between catching up and a full resync.
            self.respond(from, false, i, e, false);
            return;
        }
        let mut new = Vec::new();
        let mut matched = prev_index;
        for e in entries {
            if e.index != matched + 1 {
                break; // malformed batch: keep what is consistent
            }
            if self.has(e.index, &e.epoch) {
                matched = e.index;
                continue;
            }
            if e.index <= self.last_index() {
                if e.index <= self.applied {
                    // It applied entries the primary's log does not have (it followed an older
                    // primary, asynchronously): only the whole state can repair that.
                    self.persist_new(new);
                    let (i, ep) = (self.last_index(), self.last_epoch());
                    self.respond(from, false, i, ep, true);
                    return;
                }
                // Unapplied conflicting tail: drop it.
                while self.last_index() >= e.index {
                    self.log.pop_back();
                }
            }
            matched = e.index;
            self.log.push_back(e.clone());
            new.push(e);
        }
        self.persist_new(new);
        if matched == primary_last && self.last_index() > matched && self.epoch_at(matched + 1) != Some(&self.epoch) {
            // It holds everything the primary had when it sent this, and more, from an older
            // epoch: entries the primary will never have (a primary's log holds only its own
            // epoch's entries beyond the point where it was promoted). Without this, a deposed
            // primary that stays silent would keep its divergent tail.
            if matched < self.applied {
                let (i, ep) = (self.last_index(), self.last_epoch());
                self.respond(from, false, i, ep, true);
                return;
            }
            while self.last_index() > matched {
                self.log.pop_back();
            }
        }
        // Commit only what is known to match the primary's log.
        let c = commit.min(matched);
        if c > self.commit {
            self.commit = c;
        }
        self.apply_committed();
        let ep = self.epoch_at(matched).cloned().expect("matched entry known");
        self.respond(from, true, matched, ep, false);
    }

    fn persist_new(&mut self, new: Vec<Entry>) {
        if !new.is_empty() {
            self.ready.persist.push(Persist::Entries(new));
        }
    }

    fn on_snapshot(&mut self, from: &NodeId, snap: Snapshot, entries: Vec<Entry>, commit: u64) {
        if !entries.iter().enumerate().all(|(k, e)| e.index == snap.index + 1 + k as u64) {
            return; // malformed
        }
        let (last, last_epoch) =
            entries.last().map_or((snap.index, snap.epoch.clone()), |e| (e.index, e.epoch.clone()));
        let consistent_tail = self.last_index() == last || self.epoch_at(last + 1) == Some(&self.epoch);
        if last <= self.last_index() && self.has(last, &last_epoch) && consistent_tail {
            // Already there (a duplicate, or it caught up meanwhile), and nothing after it but
            // this primary's own entries: keep them.
            self.respond(from, true, last, last_epoch, false);
            return;
        }
        self.full_syncs += 1;
        self.base_index = snap.index;
        self.base_epoch = snap.epoch.clone();
        self.log.clear();
        self.data = snap.data;
        self.applied = snap.index;
        self.commit = snap.index;
        self.log.extend(entries);
        self.ready.persist.push(self.rewrite());
        self.commit = commit.min(last).max(self.commit);
        self.apply_committed();
        self.respond(from, true, last, last_epoch, false);
    }

    fn on_append_resp(&mut self, from: &NodeId, ok: bool, index: u64, last_epoch: &Epoch, full: bool) {
        let last = self.last_index();
        if ok {
            let Some(p) = self.progress.get_mut(from) else { return };
            if index > last {
                return; // cannot be: it matched entries this primary does not have
            }
            p.matched = p.matched.max(index);
            p.acked_at = self.now;
            p.next = p.next.max(index + 1);
            self.advance_commit();
            return;
        }
        if !full && self.has(index, last_epoch) {
            // Its log is a prefix of ours (log matching): catch up from there.
            if let Some(p) = self.progress.get_mut(from) {
                p.next = index + 1;
                p.matched = p.matched.min(index);
            }
            if index >= self.base_index {
                self.send_to(from, true);
                return;
            }
        }
        if let Some(p) = self.progress.get_mut(from) {
            p.matched = 0;
        }
        self.send_snapshot(from);
    }
}
