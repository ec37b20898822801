//! The Raft state machine proper: roles, timers, RPC handling, commitment, application to the
//! key/value state, read confirmation and snapshots. See the module docs of [`crate::raft`].

use super::log::RaftLog;
use super::types::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, VecDeque};

/// How a leader confirms that it may answer a read from its local state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Thesis §6.4: record the commit index, confirm leadership with a heartbeat round acknowledged
    /// by a majority, wait until applied. Correct whatever the clocks do.
    ReadIndex,
    /// Thesis §6.4.1: answer while a lease, measured on the node's (skewable) wall clock, holds.
    /// Correct only while clocks run at about the same rate; see `docs/targets.md`.
    Lease,
}

/// Deliberate bugs, off by default. Each produces a documented anomaly (docs/targets.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bugs {
    /// The leader answers reads from its local state without confirming leadership, and keeps
    /// leadership when it loses contact with a quorum: stale reads under partition.
    pub stale_read: bool,
    /// The leader commits entries of earlier terms by counting replicas (the Raft paper's
    /// figure 8): a committed, acknowledged write can later be overwritten.
    pub commit_old_term: bool,
    /// Implemented by the runtime (acknowledge before persisting). The core only needs to know
    /// so that it tolerates what that bug breaks (two leaders in a term after lost votes,
    /// committed entries overwritten) instead of failing its safety assertions.
    pub no_fsync: bool,
}

impl Bugs {
    /// Whether a bug is on that can break Raft's safety properties outright.
    fn breaks_safety(&self) -> bool {
        self.commit_old_term || self.no_fsync
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    /// Every member, this node included.
    pub peers: Vec<NodeId>,
    /// Leader heartbeat interval, in ticks.
    pub heartbeat_ticks: u32,
    /// Minimum election timeout, in ticks; each timeout is drawn from `[min, 2*min)`.
    pub election_ticks: u32,
    /// Length of a tick in ms; only used to convert the lease to wall-clock time.
    pub tick_ms: u64,
    pub seed: u64,
    pub read_mode: ReadMode,
    pub bugs: Bugs,
    /// Entries per AppendEntries message at most.
    pub max_batch_entries: usize,
    /// Entries sent but not acknowledged per follower at most.
    pub max_inflight_entries: u64,
    /// Proposals appended but not yet committed at most; beyond, proposals are refused.
    pub max_pending_proposals: usize,
    /// Reads waiting for confirmation at most; beyond, reads are refused.
    pub max_pending_reads: usize,
    /// Take a snapshot and compact the log when this many entries were applied since the last.
    pub snapshot_entries: u64,
}

impl Config {
    pub fn new(id: impl Into<NodeId>, peers: Vec<NodeId>) -> Self {
        Config {
            id: id.into(),
            peers,
            heartbeat_ticks: 5,
            election_ticks: 30,
            tick_ms: 10,
            seed: 0,
            read_mode: ReadMode::ReadIndex,
            bugs: Bugs::default(),
            max_batch_entries: 512,
            max_inflight_entries: 8192,
            max_pending_proposals: 16384,
            max_pending_reads: 16384,
            snapshot_entries: 10_000,
        }
    }
}

/// What was read back from stable storage at start.
#[derive(Clone, Debug, Default)]
pub struct Restore {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    /// Log entries in index order; those covered by the snapshot are ignored.
    pub entries: Vec<Entry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Follower,
    PreCandidate,
    Candidate,
    Leader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub role: Role,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub snapshot_index: u64,
}

/// The leader's view of one follower (§5.3 nextIndex/matchIndex).
#[derive(Clone, Debug)]
struct Progress {
    next: u64,
    matched: u64,
    /// Highest heartbeat round this follower acknowledged in the current term.
    acked_seq: u64,
    /// Heard from since the last CheckQuorum interval.
    active: bool,
}

#[derive(Clone, Debug)]
struct PendingRead {
    req: ReqId,
    key: String,
    /// The heartbeat round that must be acknowledged by a quorum (0: already confirmed).
    seq: u64,
    read_index: u64,
}

pub struct Raft {
    cfg: Config,
    rng: ChaCha8Rng,
    hs: HardState,
    log: RaftLog,
    /// The latest snapshot (taken or installed), sent to followers behind the log's start.
    snapshot: Snapshot,
    kv: BTreeMap<String, i64>,
    /// The list-append keys of transactions (`Command::Txn`).
    lists: BTreeMap<String, Vec<i64>>,
    role: Role,
    leader: Option<NodeId>,
    commit: u64,
    applied: u64,
    election_elapsed: u32,
    /// Ticks since this process started (saturating).
    ticks_since_start: u32,
    randomized_timeout: u32,
    heartbeat_elapsed: u32,
    check_quorum_elapsed: u32,
    votes: BTreeMap<NodeId, bool>,
    progress: BTreeMap<NodeId, Progress>,
    /// Index of the no-op this leader appended at the start of its term.
    term_start_index: u64,
    /// Heartbeat round counter (monotonic over the node's life) and when recent rounds started.
    seq: u64,
    seq_sent_at_ms: VecDeque<(u64, i64)>,
    lease_until_ms: i64,
    now_ms: i64,
    pending_props: BTreeMap<u64, (u64, ReqId)>,
    pending_reads: VecDeque<PendingRead>,
    // Output not yet taken by the runtime.
    hs_dirty: bool,
    unstable_from: Option<u64>,
    snapshot_out: Option<Snapshot>,
    msgs: Vec<Envelope>,
    replies: Vec<(ReqId, Reply)>,
    need_broadcast: bool,
    need_read_round: bool,
}

const SEQ_HISTORY_MAX: usize = 1024;

impl Raft {
    pub fn new(cfg: Config, restore: Restore) -> Self {
        assert!(cfg.peers.contains(&cfg.id), "peers must include this node");
        assert!(cfg.election_ticks > cfg.heartbeat_ticks, "election timeout must exceed heartbeat");
        let snapshot =
            restore.snapshot.unwrap_or(Snapshot { index: 0, term: 0, kv: BTreeMap::new(), lists: BTreeMap::new() });
        let entries: Vec<Entry> = restore.entries.into_iter().filter(|e| e.index > snapshot.index).collect();
        let log = RaftLog::new(snapshot.index, snapshot.term, entries);
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let randomized_timeout = rng.random_range(cfg.election_ticks..2 * cfg.election_ticks);
        Raft {
            rng,
            hs: restore.hard_state,
            log,
            kv: snapshot.kv.clone(),
            lists: snapshot.lists.clone(),
            commit: snapshot.index,
            applied: snapshot.index,
            snapshot,
            role: Role::Follower,
            leader: None,
            election_elapsed: 0,
            ticks_since_start: 0,
            randomized_timeout,
            heartbeat_elapsed: 0,
            check_quorum_elapsed: 0,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            term_start_index: 0,
            seq: 0,
            seq_sent_at_ms: VecDeque::new(),
            lease_until_ms: i64::MIN,
            now_ms: 0,
            pending_props: BTreeMap::new(),
            pending_reads: VecDeque::new(),
            hs_dirty: false,
            unstable_from: None,
            snapshot_out: None,
            msgs: Vec::new(),
            replies: Vec::new(),
            need_broadcast: false,
            need_read_round: false,
            cfg,
        }
    }

    // ---------------------------------------------------------------- inspection

    pub fn id(&self) -> &NodeId {
        &self.cfg.id
    }
    pub fn status(&self) -> Status {
        Status {
            role: self.role,
            term: self.hs.term,
            leader: self.leader.clone(),
            commit_index: self.commit,
            applied_index: self.applied,
            last_index: self.log.last_index(),
            snapshot_index: self.log.snap_index(),
        }
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn hard_state(&self) -> &HardState {
        &self.hs
    }
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    pub fn kv(&self) -> &BTreeMap<String, i64> {
        &self.kv
    }
    /// The list-append keys (transactions).
    pub fn lists(&self) -> &BTreeMap<String, Vec<i64>> {
        &self.lists
    }
    /// What stable storage must hold now (hard state, the latest snapshot, the log after it):
    /// the runtime rewrites its log from this after persisting a snapshot.
    pub fn persisted_state(&self) -> (HardState, Snapshot, Vec<Entry>) {
        (self.hs.clone(), self.snapshot.clone(), self.log.entries().to_vec())
    }

    fn quorum(&self) -> usize {
        self.cfg.peers.len() / 2 + 1
    }
    fn others(&self) -> Vec<NodeId> {
        self.cfg.peers.iter().filter(|p| **p != self.cfg.id).cloned().collect()
    }

    // ---------------------------------------------------------------- events in

    /// The runtime's view of the node's wall clock (ms), read by leases only.
    pub fn set_now_ms(&mut self, now_ms: i64) {
        self.now_ms = now_ms;
    }

    /// One logical clock tick.
    pub fn tick(&mut self) {
        self.ticks_since_start = self.ticks_since_start.saturating_add(1);
        match self.role {
            Role::Leader => {
                self.heartbeat_elapsed += 1;
                if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
                    self.heartbeat_elapsed = 0;
                    self.broadcast_heartbeat();
                }
                self.check_quorum_elapsed += 1;
                if self.check_quorum_elapsed >= self.cfg.election_ticks {
                    self.check_quorum_elapsed = 0;
                    self.check_quorum();
                }
            }
            _ => {
                self.election_elapsed += 1;
                if self.election_elapsed >= self.randomized_timeout {
                    self.start_pre_vote();
                }
            }
        }
        self.advance();
    }

    /// Starts an election now (pre-vote first), as if the election timer had fired. Used by
    /// tests to pick who campaigns; a leader ignores it.
    pub fn hup(&mut self) {
        if self.role != Role::Leader {
            self.start_pre_vote();
        }
        self.advance();
    }

    /// A message from a peer.
    pub fn step(&mut self, env: Envelope) {
        if env.to != self.cfg.id || !self.cfg.peers.contains(&env.from) || env.from == self.cfg.id {
            return; // misaddressed or from a stranger: drop, like the network would
        }
        self.step_inner(env.from, env.msg);
        self.advance();
    }

    /// A client write or cas. The reply comes out of a later `take_ready`.
    pub fn propose(&mut self, req: ReqId, cmd: Command) {
        if self.role != Role::Leader {
            self.replies.push((req, Reply::NotLeader { leader: self.leader.clone() }));
            return;
        }
        if self.pending_props.len() >= self.cfg.max_pending_proposals {
            self.replies.push((req, Reply::Unavailable { reason: "too many proposals in flight".into() }));
            return;
        }
        let index = self.append_local(cmd);
        if let Some((_, old)) = self.pending_props.insert(index, (self.hs.term, req)) {
            // An earlier term's proposal of ours whose entry was truncated from this log.
            self.replies.push((old, Reply::LostLeadership));
        }
        self.advance();
    }

    /// A client read of `key`. The reply comes out of a later `take_ready`.
    pub fn read(&mut self, req: ReqId, key: String) {
        if self.role != Role::Leader {
            self.replies.push((req, Reply::NotLeader { leader: self.leader.clone() }));
            return;
        }
        if self.cfg.bugs.stale_read {
            // BUG stale-read: answer from local state with no confirmation of leadership.
            let v = self.kv.get(&key).copied();
            self.replies.push((req, Reply::Value(v)));
            return;
        }
        if self.pending_reads.len() >= self.cfg.max_pending_reads {
            self.replies.push((req, Reply::Unavailable { reason: "too many reads in flight".into() }));
            return;
        }
        // Thesis §6.4: the read index is the commit index, but at least this term's no-op, since
        // a new leader may not yet know which earlier entries are committed.
        let read_index = if self.cfg.bugs.commit_old_term {
            // BUG commit-old-term: the leader takes its predecessors' entries as committed once
            // counted on a majority (§5.4.2 says they are not), so it waits only for them, not
            // for its no-op: a read can show an entry that a later leader overwrites.
            self.commit.max(self.term_start_index - 1)
        } else {
            self.commit.max(self.term_start_index)
        };
        let leased = self.cfg.read_mode == ReadMode::Lease
            && self.now_ms < self.lease_until_ms
            && self.commit >= self.term_start_index;
        let seq = if leased {
            0
        } else {
            self.need_read_round = true;
            self.seq + 1
        };
        self.pending_reads.push_back(PendingRead { req, key, seq, read_index });
        self.advance();
    }

    /// Drains the output; see [`Ready`] for the order the runtime must follow.
    pub fn take_ready(&mut self) -> Ready {
        if self.role == Role::Leader {
            if self.need_read_round {
                self.broadcast_heartbeat(); // also carries any new entries
            } else if self.need_broadcast {
                for p in self.others() {
                    if self.progress[&p].next <= self.log.last_index() {
                        self.send_append(&p);
                    }
                }
            }
        }
        self.need_read_round = false;
        self.need_broadcast = false;
        self.serve_reads(); // a single-node cluster confirms its own round at once
        let mut rd = Ready::default();
        if self.hs_dirty {
            rd.hard_state = Some(self.hs.clone());
            self.hs_dirty = false;
        }
        if let Some(s) = self.snapshot_out.take() {
            // The runtime rewrites its whole log from `persisted_state`, which covers any
            // unstable entries too.
            rd.snapshot = Some(s);
            self.unstable_from = None;
        }
        if let Some(from) = self.unstable_from.take() {
            assert!(from > self.log.snap_index(), "unstable entries below the snapshot");
            rd.first_index = Some(from);
            rd.entries = self.log.slice(from, usize::MAX);
        }
        rd.messages = std::mem::take(&mut self.msgs);
        rd.replies = std::mem::take(&mut self.replies);
        rd
    }

    // ---------------------------------------------------------------- roles

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        self.randomized_timeout = self.rng.random_range(self.cfg.election_ticks..2 * self.cfg.election_ticks);
    }

    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        if term > self.hs.term {
            self.hs.term = term;
            self.hs.vote = None;
            self.hs_dirty = true;
        }
        if self.role == Role::Leader {
            self.abandon_leadership();
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.reset_election_timer();
    }

    /// Answers the pending reads of a leader that stops being one. Its proposals keep waiting:
    /// each is answered when this node applies its index, whoever committed it (its result if
    /// the entry there is still ours, `LostLeadership` if another replaced it; see `advance`),
    /// as etcd answers a proposal when its entry is applied. Committed means durable, so the
    /// answer is safe from any role, and a client whose leader was deposed just before the
    /// commit learns the outcome instead of an indefinite one.
    fn abandon_leadership(&mut self) {
        for r in std::mem::take(&mut self.pending_reads) {
            // Definite: a read that was not answered had no effect.
            self.replies.push((r.req, Reply::NotLeader { leader: None }));
        }
        self.progress.clear();
        self.lease_until_ms = i64::MIN;
    }

    /// Thesis §9.6: ask for votes at term+1 without changing our term, so a node rejoining from a
    /// partition cannot disrupt a working leader.
    fn start_pre_vote(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.reset_election_timer();
        self.votes.clear();
        self.votes.insert(self.cfg.id.clone(), true);
        if self.votes.len() >= self.quorum() {
            self.campaign();
            return;
        }
        let (li, lt) = (self.log.last_index(), self.log.last_term());
        for p in self.others() {
            self.send(&p, Message::PreVote { term: self.hs.term + 1, last_index: li, last_term: lt });
        }
    }

    /// §5.2: increment the term, vote for ourselves, ask the others.
    fn campaign(&mut self) {
        self.role = Role::Candidate;
        self.hs.term += 1;
        self.hs.vote = Some(self.cfg.id.clone());
        self.hs_dirty = true;
        self.leader = None;
        self.reset_election_timer();
        self.votes.clear();
        self.votes.insert(self.cfg.id.clone(), true);
        if self.votes.len() >= self.quorum() {
            self.become_leader();
            return;
        }
        let (li, lt) = (self.log.last_index(), self.log.last_term());
        for p in self.others() {
            self.send(&p, Message::Vote { term: self.hs.term, last_index: li, last_term: lt });
        }
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id.clone());
        self.heartbeat_elapsed = 0;
        self.check_quorum_elapsed = 0;
        self.lease_until_ms = i64::MIN;
        let next = self.log.last_index() + 1;
        self.progress =
            self.others().into_iter().map(|p| (p, Progress { next, matched: 0, acked_seq: 0, active: true })).collect();
        // §5.4.2 / thesis §6.4: a no-op of our own term lets earlier entries commit and read
        // indices become valid.
        self.term_start_index = self.append_local(Command::Noop);
        self.broadcast_heartbeat();
    }

    /// CheckQuorum: a leader that has not heard from a majority within an election timeout
    /// steps down, so clients go elsewhere instead of waiting on it.
    fn check_quorum(&mut self) {
        let active = 1 + self.progress.values().filter(|p| p.active).count();
        for p in self.progress.values_mut() {
            p.active = false;
        }
        if active >= self.quorum() || self.cfg.bugs.stale_read {
            return; // BUG stale-read also keeps an isolated leader in office
        }
        if self.cfg.read_mode == ReadMode::Lease && self.now_ms < self.lease_until_ms {
            // A lease holder keeps office while its clock says the lease holds. With honest
            // clocks the lease (0.9 election timeouts) has expired by now; with a clock set back
            // or slowed it has not, and the node keeps serving lease reads: the anomaly.
            return;
        }
        let term = self.hs.term;
        self.become_follower(term, None);
    }

    fn in_leader_lease(&self) -> bool {
        // CheckQuorum stickiness: a node that heard from a live leader within the minimum
        // election timeout refuses to help elect another (also what makes read leases sound).
        // A node that just (re)started may have acknowledged a leader's heartbeat before it
        // crashed and forgotten it, so it also refuses during its first election timeout.
        match self.role {
            Role::Leader => true,
            _ => {
                (self.leader.is_some() && self.election_elapsed < self.cfg.election_ticks)
                    || self.ticks_since_start < self.cfg.election_ticks
            }
        }
    }

    // ---------------------------------------------------------------- messages

    fn send(&mut self, to: &NodeId, msg: Message) {
        self.msgs.push(Envelope { from: self.cfg.id.clone(), to: to.clone(), msg });
    }

    fn step_inner(&mut self, from: NodeId, msg: Message) {
        let term = msg.term();
        if term > self.hs.term {
            match &msg {
                Message::PreVote { .. } => {} // never changes our term (§9.6)
                Message::PreVoteResp { granted: true, .. } => {}
                Message::Vote { .. } if self.in_leader_lease() => return, // disruptive: ignore
                Message::Append { .. } | Message::InstallSnapshot { .. } => {
                    self.become_follower(term, Some(from.clone()))
                }
                _ => self.become_follower(term, None),
            }
        } else if term < self.hs.term {
            // Stale sender: tell it our term so it steps down; drop stale responses.
            let our = self.hs.term;
            match msg {
                Message::Append { seq, .. } | Message::InstallSnapshot { seq, .. } => {
                    self.send(&from, Message::AppendResp { term: our, success: false, index: 0, hint: 0, seq })
                }
                Message::PreVote { .. } => self.send(&from, Message::PreVoteResp { term: our, granted: false }),
                Message::Vote { .. } => self.send(&from, Message::VoteResp { term: our, granted: false }),
                _ => {}
            }
            return;
        }
        match msg {
            Message::PreVote { term, last_index, last_term } => {
                let granted = term > self.hs.term
                    && !self.in_leader_lease()
                    && self.log.candidate_up_to_date(last_index, last_term);
                let t = if granted { term } else { self.hs.term };
                self.send(&from, Message::PreVoteResp { term: t, granted });
            }
            Message::PreVoteResp { term, granted } => {
                if self.role != Role::PreCandidate || term != self.hs.term + 1 {
                    return;
                }
                self.votes.insert(from, granted);
                self.tally(Role::PreCandidate);
            }
            Message::Vote { last_index, last_term, .. } => {
                // Here term == ours. §5.2: one vote per term; §5.4.1: only for an up-to-date log.
                let free = match &self.hs.vote {
                    None => self.leader.is_none(),
                    Some(v) => *v == from,
                };
                let granted = free && self.log.candidate_up_to_date(last_index, last_term);
                if granted {
                    if self.hs.vote.is_none() {
                        self.hs.vote = Some(from.clone());
                        self.hs_dirty = true;
                    }
                    self.reset_election_timer();
                }
                self.send(&from, Message::VoteResp { term: self.hs.term, granted });
            }
            Message::VoteResp { granted, .. } => {
                if self.role != Role::Candidate {
                    return;
                }
                self.votes.insert(from, granted);
                self.tally(Role::Candidate);
            }
            Message::Append { term, prev_index, prev_term, entries, commit, seq } => {
                self.accept_leader(term, &from);
                self.handle_append(from, prev_index, prev_term, entries, commit, seq);
            }
            Message::InstallSnapshot { term, snapshot, seq } => {
                self.accept_leader(term, &from);
                self.handle_snapshot(from, snapshot, seq);
            }
            Message::AppendResp { success, index, hint, seq, .. } => {
                if self.role == Role::Leader {
                    self.handle_append_resp(from, success, index, hint, seq);
                }
            }
        }
    }

    fn accept_leader(&mut self, term: u64, from: &NodeId) {
        assert!(
            self.cfg.bugs.breaks_safety() || !(self.role == Role::Leader && term == self.hs.term),
            "two leaders in term {term}: election safety (§5.2) violated"
        );
        if self.role != Role::Follower {
            self.become_follower(term, Some(from.clone()));
        }
        self.leader = Some(from.clone());
        self.election_elapsed = 0;
    }

    fn tally(&mut self, role: Role) {
        let yes = self.votes.values().filter(|g| **g).count();
        let no = self.votes.values().filter(|g| !**g).count();
        if yes >= self.quorum() {
            match role {
                Role::PreCandidate => self.campaign(),
                _ => self.become_leader(),
            }
        } else if no >= self.quorum() {
            let term = self.hs.term;
            self.become_follower(term, None);
        }
    }

    /// §5.3: the consistency check, conflict truncation and commit propagation.
    fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        leader_commit: u64,
        seq: u64,
    ) {
        let term = self.hs.term;
        let (mut prev_index, mut prev_term, mut entries) = (prev_index, prev_term, entries);
        if prev_index < self.commit {
            // Our committed prefix already matches the leader's (Leader Completeness): skip the
            // part of a stale or reordered message that it covers and check from our commit.
            let skip = (self.commit - prev_index) as usize;
            if entries.len() <= skip {
                let idx = self.commit;
                self.send(&from, Message::AppendResp { term, success: true, index: idx, hint: 0, seq });
                return;
            }
            entries.drain(..skip);
            prev_index = self.commit;
            prev_term = self.log.term(prev_index).expect("the commit index is within the log");
        }
        if self.log.term(prev_index) != Some(prev_term) {
            let hint = if prev_index > self.log.last_index() {
                self.log.last_index()
            } else {
                // Skip back over the whole conflicting term at once.
                (self.log.first_index_of_term_at(prev_index) - 1).max(self.commit)
            };
            self.send(&from, Message::AppendResp { term, success: false, index: prev_index, hint, seq });
            return;
        }
        let last_new = prev_index + entries.len() as u64;
        for e in entries {
            match self.log.term(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    if e.index <= self.log.snap_index() {
                        continue; // only reachable with a bug that breaks safety
                    }
                    assert!(
                        self.cfg.bugs.breaks_safety() || e.index > self.commit,
                        "leader overwrote committed entry {} (term {})",
                        e.index,
                        e.term
                    );
                    self.log.truncate_from(e.index);
                    self.answer_proposals_from(e.index);
                    self.mark_unstable(e.index);
                    self.log.append(e);
                }
                None => {
                    self.mark_unstable(e.index);
                    self.log.append(e);
                }
            }
        }
        let new_commit = leader_commit.min(last_new);
        if new_commit > self.commit {
            self.commit = new_commit;
        }
        self.send(&from, Message::AppendResp { term, success: true, index: last_new, hint: 0, seq });
    }

    /// Answers the proposals of ours at `index` and above, whose entries a leader's conflicting
    /// ones just replaced in this log: indefinitely, since another node may still hold them.
    fn answer_proposals_from(&mut self, index: u64) {
        for (_, (_, req)) in self.pending_props.split_off(&index) {
            self.replies.push((req, Reply::LostLeadership));
        }
    }

    /// §7: install a snapshot from the leader unless we already have everything it covers.
    fn handle_snapshot(&mut self, from: NodeId, snap: Snapshot, seq: u64) {
        let term = self.hs.term;
        if snap.index <= self.commit {
            let idx = self.commit;
            self.send(&from, Message::AppendResp { term, success: true, index: idx, hint: 0, seq });
            return;
        }
        let index = snap.index;
        self.log.compact_to(snap.index, snap.term);
        self.kv = snap.kv.clone();
        self.lists = snap.lists.clone();
        self.commit = snap.index;
        self.applied = snap.index;
        // Entries under the snapshot are never applied one by one here: their proposals get the
        // indefinite answer (the snapshot does not say which entries it holds).
        let above = self.pending_props.split_off(&(snap.index + 1));
        for (_, (_, req)) in std::mem::replace(&mut self.pending_props, above) {
            self.replies.push((req, Reply::LostLeadership));
        }
        self.snapshot = snap.clone();
        self.snapshot_out = Some(snap);
        self.send(&from, Message::AppendResp { term, success: true, index, hint: 0, seq });
    }

    fn handle_append_resp(&mut self, from: NodeId, success: bool, index: u64, hint: u64, seq: u64) {
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else { return };
        pr.active = true;
        pr.acked_seq = pr.acked_seq.max(seq);
        if success {
            if index > pr.matched {
                pr.matched = index.min(last);
            }
            pr.next = pr.next.max(pr.matched + 1);
            self.maybe_commit();
        } else {
            if index < pr.matched {
                return; // stale rejection
            }
            pr.next = (pr.matched + 1).max(index.min(hint + 1));
        }
        if self.role == Role::Leader {
            let pr = &self.progress[&from];
            if pr.next <= self.log.last_index() && pr.next - pr.matched - 1 < self.cfg.max_inflight_entries {
                self.send_append(&from);
            }
            self.update_lease();
        }
    }

    fn broadcast_heartbeat(&mut self) {
        self.seq += 1;
        self.seq_sent_at_ms.push_back((self.seq, self.now_ms));
        while self.seq_sent_at_ms.len() > SEQ_HISTORY_MAX {
            self.seq_sent_at_ms.pop_front();
        }
        for p in self.others() {
            // Entries lost on the way need no resend rule here: this heartbeat names the entry
            // before `next` as its predecessor, a follower that lacks it rejects it with a hint,
            // and the rejection moves `next` back (`handle_append_resp`). A rule that resent
            // from the match point whenever no acknowledgement came within one heartbeat
            // misfired on every link slower than a heartbeat round trip: from the start of a
            // term (match 0) it shipped the log from index 1, 512 entries a heartbeat, and under
            // 26 ms link delays followers waited behind those batches past their election
            // timeout (leader churn, docs/targets.md `commit-old-term`).
            self.send_append(&p);
        }
        if self.cfg.peers.len() == 1 {
            self.update_lease();
        }
    }

    fn send_append(&mut self, to: &NodeId) {
        let pr = self.progress.get(to).expect("progress of a peer").clone();
        let term = self.hs.term;
        let seq = self.seq;
        if pr.next <= self.log.snap_index() {
            // §7: the follower needs entries we compacted away.
            let snap = self.snapshot.clone();
            self.progress.get_mut(to).expect("progress").next = snap.index + 1;
            self.send(to, Message::InstallSnapshot { term, snapshot: snap, seq });
            return;
        }
        let prev_index = pr.next - 1;
        let prev_term = self.log.term(prev_index).expect("prev entry is in the log");
        let inflight = pr.next - pr.matched - 1;
        let entries = if inflight >= self.cfg.max_inflight_entries {
            Vec::new()
        } else {
            self.log.slice(pr.next, self.batch_limit(&pr))
        };
        self.progress.get_mut(to).expect("progress").next = prev_index + entries.len() as u64 + 1;
        self.send(to, Message::Append { term, prev_index, prev_term, entries, commit: self.commit, seq });
    }

    /// Entries to put in the next AppendEntries to a follower at most.
    fn batch_limit(&self, pr: &Progress) -> usize {
        if self.cfg.bugs.commit_old_term && pr.matched + 1 < self.term_start_index {
            // BUG commit-old-term: a leader that commits its predecessors' entries by counting
            // brings a follower up to its term's start first, and ships its own term's entries
            // only once the follower acknowledged those. Correct Raft ships them together, so an
            // old entry never reaches a majority without the no-op that commits it legitimately;
            // here it does, for a round trip, which is the window figure 8 needs.
            let before_term = self.term_start_index.saturating_sub(pr.next) as usize;
            return before_term.min(self.cfg.max_batch_entries);
        }
        self.cfg.max_batch_entries
    }

    // ---------------------------------------------------------------- commit and apply

    fn append_local(&mut self, cmd: Command) -> u64 {
        let index = self.log.last_index() + 1;
        self.log.append(Entry { index, term: self.hs.term, cmd });
        self.mark_unstable(index);
        self.need_broadcast = true;
        self.maybe_commit();
        index
    }

    fn mark_unstable(&mut self, index: u64) {
        self.unstable_from = Some(self.unstable_from.map_or(index, |u| u.min(index)));
    }

    /// §5.4.2: the leader commits the highest index stored on a majority, but only if that
    /// entry is of its current term (earlier entries then commit indirectly).
    fn maybe_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let mut matched: Vec<u64> = self.progress.values().map(|p| p.matched).collect();
        matched.push(self.log.last_index()); // the runtime persists our entries before sending
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let n = matched[self.quorum() - 1];
        if n > self.commit {
            let current = self.log.term(n) == Some(self.hs.term);
            if current || self.cfg.bugs.commit_old_term {
                self.commit = n;
            }
        }
    }

    /// Runs after every event: applies committed entries, answers reads, snapshots.
    fn advance(&mut self) {
        while self.applied < self.commit {
            let index = self.applied + 1;
            let entry = self.log.entry(index).expect("committed entry is in the log").clone();
            let result = self.apply(&entry.cmd);
            self.applied = index;
            if let Some((term, req)) = self.pending_props.remove(&index) {
                let reply = if term == entry.term { result } else { Reply::LostLeadership };
                self.replies.push((req, reply));
            }
        }
        self.serve_reads();
        // (applied can exceed the log's end only after a safety-breaking bug truncated it.)
        if self.applied - self.log.snap_index() >= self.cfg.snapshot_entries && self.applied <= self.log.last_index() {
            self.take_snapshot();
        }
    }

    fn apply(&mut self, cmd: &Command) -> Reply {
        match cmd {
            Command::Noop => Reply::Done,
            Command::Write { key, value } => {
                self.kv.insert(key.clone(), *value);
                Reply::Done
            }
            Command::Cas { key, from, to } => {
                let current = self.kv.get(key).copied();
                if current == *from {
                    self.kv.insert(key.clone(), *to);
                    Reply::Done
                } else {
                    Reply::CasMismatch { current }
                }
            }
            Command::Txn { ops, reads_fixed, unchanged } => {
                super::txn::apply(&mut self.kv, &mut self.lists, ops, *reads_fixed, unchanged)
            }
        }
    }

    fn take_snapshot(&mut self) {
        let index = self.applied;
        let term = self.log.term(index).expect("applied entry is in the log");
        let snap = Snapshot { index, term, kv: self.kv.clone(), lists: self.lists.clone() };
        self.log.compact_to(index, term);
        self.snapshot = snap.clone();
        self.snapshot_out = Some(snap);
    }

    /// The highest heartbeat round acknowledged by a majority (counting ourselves).
    fn quorum_seq(&self) -> u64 {
        let mut acked: Vec<u64> = self.progress.values().map(|p| p.acked_seq).collect();
        acked.push(self.seq);
        acked.sort_unstable_by(|a, b| b.cmp(a));
        acked[self.quorum() - 1]
    }

    /// Thesis §6.4.1: a majority acknowledged a heartbeat sent at time t, so none of them will
    /// vote for another leader before t + election timeout (their own clocks). The lease keeps
    /// a 10% margin for clock rate differences, and trusts the node's wall clock for the rest.
    fn update_lease(&mut self) {
        if self.cfg.read_mode != ReadMode::Lease || self.role != Role::Leader {
            return;
        }
        let qs = self.quorum_seq();
        if let Some(&(_, sent)) = self.seq_sent_at_ms.iter().find(|(s, _)| *s == qs) {
            let lease_ms = (self.cfg.election_ticks as u64 * self.cfg.tick_ms * 9 / 10) as i64;
            self.lease_until_ms = self.lease_until_ms.max(sent + lease_ms);
        }
    }

    fn serve_reads(&mut self) {
        if self.role != Role::Leader || self.pending_reads.is_empty() {
            return;
        }
        let qs = self.quorum_seq();
        while let Some(r) = self.pending_reads.front() {
            // Reads are queued in seq order with non-decreasing read indices, so FIFO is exact.
            let confirmed = r.seq <= qs;
            if !confirmed || self.applied < r.read_index {
                break;
            }
            let r = self.pending_reads.pop_front().expect("front exists");
            let v = self.kv.get(&r.key).copied();
            self.replies.push((r.req, Reply::Value(v)));
        }
    }
}
