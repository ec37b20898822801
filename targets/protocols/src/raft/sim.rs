//! A deterministic in-memory cluster for testing the Raft core: simulated stable storage per
//! node (what the runtime would have fsynced), a network that can lose, delay (and so reorder)
//! and block messages, crashes and restarts, per-node wall clocks, and invariant checks run
//! after every step (election safety §5.2, state machine safety §5.4.3).

use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// What a node's runtime has made durable: exactly what `Ready` told it to persist.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
}

impl Disk {
    fn persist(&mut self, rd: &Ready, raft: &Raft) {
        if rd.snapshot.is_some() {
            let (hs, snap, entries) = raft.persisted_state();
            *self = Disk { hard_state: hs, snapshot: Some(snap), entries };
            return;
        }
        if let Some(h) = &rd.hard_state {
            self.hard_state = h.clone();
        }
        if let Some(first) = rd.first_index {
            self.entries.retain(|e| e.index < first);
            self.entries.extend(rd.entries.iter().cloned());
        }
    }
}

/// Decides, per message, whether the network drops it.
pub type DropFilter = Box<dyn Fn(&Envelope) -> bool>;

struct InFlight {
    deliver_at: u64,
    /// Tie-breaker so delivery order is deterministic.
    seq: u64,
    env: Envelope,
}

pub struct Sim {
    pub cfgs: BTreeMap<NodeId, Config>,
    pub nodes: BTreeMap<NodeId, Raft>,
    pub disks: BTreeMap<NodeId, Disk>,
    net: Vec<InFlight>,
    rng: ChaCha8Rng,
    pub now: u64,
    msg_seq: u64,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Messages are delayed by min_delay..=max(min_delay, max_delay) ticks (reordering them
    /// when the range is wider than one tick).
    pub max_delay: u64,
    /// The least delay of every message, in ticks: a link slower than a heartbeat.
    pub min_delay: u64,
    /// Directed links that drop everything.
    pub blocked: BTreeSet<(NodeId, NodeId)>,
    /// Messages for which this returns true are dropped (targeted scenarios).
    pub drop_if: Option<DropFilter>,
    pub replies: BTreeMap<ReqId, Reply>,
    /// Simulated time each request was made and answered (for real-time order checks).
    pub invoked_at: BTreeMap<ReqId, u64>,
    pub answered_at: BTreeMap<ReqId, u64>,
    next_req: ReqId,
    /// Per-node wall clock in ms (for leases); advances `tick_ms` per tick unless frozen.
    pub clocks: BTreeMap<NodeId, i64>,
    pub frozen_clocks: BTreeSet<NodeId>,
    /// term -> the leader seen in it (election safety).
    leaders: BTreeMap<u64, NodeId>,
    /// index -> the committed entry seen at it (state machine safety).
    committed: BTreeMap<u64, Entry>,
    /// Whether to panic on a state machine safety violation (off when a bug is expected to
    /// cause one, so the test can observe the anomaly instead).
    pub check_committed: bool,
    pub violations: Vec<String>,
    /// Per node, the highest index already compared with `committed`.
    checked: BTreeMap<NodeId, u64>,
}

impl Sim {
    pub fn new(n: usize, seed: u64, tweak: impl Fn(&mut Config)) -> Sim {
        let ids: Vec<NodeId> = (1..=n).map(|i| format!("n{i}")).collect();
        let mut sim = Sim {
            cfgs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            net: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: 0,
            msg_seq: 0,
            loss: 0.0,
            max_delay: 0,
            min_delay: 0,
            blocked: BTreeSet::new(),
            drop_if: None,
            replies: BTreeMap::new(),
            invoked_at: BTreeMap::new(),
            answered_at: BTreeMap::new(),
            next_req: 0,
            clocks: BTreeMap::new(),
            frozen_clocks: BTreeSet::new(),
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            check_committed: true,
            violations: Vec::new(),
            checked: BTreeMap::new(),
        };
        for (i, id) in ids.iter().enumerate() {
            let mut cfg = Config::new(id.clone(), ids.clone());
            cfg.heartbeat_ticks = 2;
            cfg.election_ticks = 10;
            cfg.seed = seed.wrapping_mul(31).wrapping_add(i as u64);
            tweak(&mut cfg);
            sim.cfgs.insert(id.clone(), cfg.clone());
            sim.disks.insert(id.clone(), Disk::default());
            sim.clocks.insert(id.clone(), 1_000_000);
            sim.nodes.insert(id.clone(), Raft::new(cfg, Restore::default()));
        }
        sim
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.cfgs.keys().cloned().collect()
    }

    pub fn node(&self, id: &str) -> &Raft {
        self.nodes.get(id).unwrap_or_else(|| panic!("{id} is down"))
    }

    /// The unique live leader of the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, r)| r.role() == Role::Leader)
            .max_by_key(|(_, r)| r.hard_state().term)
            .map(|(id, _)| id.clone())
    }

    pub fn crash(&mut self, id: &str) {
        self.nodes.remove(id);
        self.net.retain(|m| m.env.to != id && m.env.from != id);
    }

    /// Restarts a crashed node from what it persisted.
    pub fn restart(&mut self, id: &str) {
        assert!(!self.nodes.contains_key(id), "{id} is running");
        let d = self.disks[id].clone();
        let restore = Restore { hard_state: d.hard_state, snapshot: d.snapshot, entries: d.entries };
        self.checked.remove(id);
        self.nodes.insert(id.to_string(), Raft::new(self.cfgs[id].clone(), restore));
    }

    /// Cuts `group` off from everyone else, both ways.
    pub fn isolate(&mut self, group: &[&str]) {
        for a in self.ids() {
            for b in self.ids() {
                let ina = group.contains(&a.as_str());
                let inb = group.contains(&b.as_str());
                if ina != inb {
                    self.blocked.insert((a.clone(), b.clone()));
                }
            }
        }
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    pub fn propose(&mut self, id: &str, cmd: Command) -> ReqId {
        self.next_req += 1;
        let req = self.next_req;
        self.invoked_at.insert(req, self.now);
        self.with_node(id, |r| r.propose(req, cmd));
        req
    }

    pub fn read(&mut self, id: &str, key: &str) -> ReqId {
        self.next_req += 1;
        let req = self.next_req;
        self.invoked_at.insert(req, self.now);
        let now = self.clocks[id];
        self.with_node(id, |r| {
            r.set_now_ms(now);
            r.read(req, key.to_string())
        });
        req
    }

    pub fn hup(&mut self, id: &str) {
        self.with_node(id, |r| r.hup());
    }

    fn with_node(&mut self, id: &str, f: impl FnOnce(&mut Raft)) {
        let r = self.nodes.get_mut(id).unwrap_or_else(|| panic!("{id} is down"));
        f(r);
        self.flush(id);
    }

    /// Handles one node's Ready like the runtime: persist, then send, then reply.
    fn flush(&mut self, id: &str) {
        let Some(r) = self.nodes.get_mut(id) else { return };
        let rd = r.take_ready();
        self.disks.get_mut(id).expect("disk").persist(&rd, r);
        for env in rd.messages {
            self.msg_seq += 1;
            let lost = self.loss > 0.0 && self.rng.random_bool(self.loss);
            if lost || self.blocked.contains(&(env.from.clone(), env.to.clone())) {
                continue;
            }
            if self.drop_if.as_ref().is_some_and(|f| f(&env)) {
                continue;
            }
            let top = self.max_delay.max(self.min_delay);
            let delay = if top > self.min_delay { self.rng.random_range(self.min_delay..=top) } else { top };
            self.net.push(InFlight { deliver_at: self.now + delay, seq: self.msg_seq, env });
        }
        for (req, reply) in rd.replies {
            self.answered_at.insert(req, self.now);
            let prev = self.replies.insert(req, reply);
            assert!(prev.is_none(), "request {req} answered twice");
        }
        self.check_invariants();
    }

    fn check_invariants(&mut self) {
        for (id, r) in &self.nodes {
            if r.role() == Role::Leader {
                let term = r.hard_state().term;
                if let Some(other) = self.leaders.get(&term) {
                    assert_eq!(other, id, "§5.2 election safety: two leaders in term {term}");
                } else {
                    self.leaders.insert(term, id.clone());
                }
            }
            let st = r.status();
            let from = self.checked.get(id).copied().unwrap_or(0).max(st.snapshot_index) + 1;
            self.checked.insert(id.clone(), st.commit_index);
            for i in from..=st.commit_index {
                // Missing only if a safety-breaking bug truncated a committed entry.
                let Some(e) = r.log().entry(i).cloned() else { continue };
                match self.committed.get(&i) {
                    Some(c) if *c != e => {
                        let v = format!("§5.4.3 state machine safety: {id} committed {e:?} at {i}, another node {c:?}");
                        assert!(!self.check_committed, "{v}");
                        self.violations.push(v);
                    }
                    Some(_) => {}
                    None => {
                        self.committed.insert(i, e);
                    }
                }
            }
        }
    }

    /// Delivers every message due now or earlier, flushing each receiver, and what they send in
    /// turn, until none is due.
    pub fn deliver_due(&mut self) {
        while self.deliver_round() {}
    }

    /// Delivers the messages due now, once (not what their receivers send in turn); returns
    /// whether there were any. Lets a test act between two rounds of an exchange.
    pub fn deliver_round(&mut self) -> bool {
        let now = self.now;
        let (mut due, rest): (Vec<InFlight>, Vec<InFlight>) = self.net.drain(..).partition(|m| m.deliver_at <= now);
        self.net = rest;
        due.sort_by_key(|m| (m.deliver_at, m.seq));
        let any = !due.is_empty();
        for m in due {
            let to = m.env.to.clone();
            if let Some(r) = self.nodes.get_mut(&to) {
                r.step(m.env);
                self.flush(&to);
            }
        }
        any
    }

    /// One unit of simulated time: deliver due messages, tick every live node, advance clocks.
    pub fn step(&mut self) {
        self.deliver_due();
        for id in self.ids() {
            if !self.frozen_clocks.contains(&id) {
                *self.clocks.get_mut(&id).expect("clock") += self.cfgs[&id].tick_ms as i64;
            }
            let now = self.clocks[&id];
            if let Some(r) = self.nodes.get_mut(&id) {
                r.set_now_ms(now);
                r.tick();
                self.flush(&id);
            }
        }
        self.now += 1;
    }

    pub fn run(&mut self, steps: u64) {
        for _ in 0..steps {
            self.step();
        }
    }

    /// Runs until `cond` holds, at most `steps_max` steps; returns whether it held.
    pub fn run_until(&mut self, steps_max: u64, mut cond: impl FnMut(&Sim) -> bool) -> bool {
        for _ in 0..steps_max {
            if cond(self) {
                return true;
            }
            self.step();
        }
        cond(self)
    }

    /// Ticks only `ids` (others stand still), delivering nothing: lets followers' leader
    /// stickiness lapse without anyone hearing anything.
    pub fn tick_silently(&mut self, ids: &[&str], ticks: u32) {
        let saved = self.drop_if.replace(Box::new(|_| true));
        for _ in 0..ticks {
            for id in ids {
                if let Some(r) = self.nodes.get_mut(*id) {
                    r.tick();
                    self.flush(id);
                }
            }
        }
        self.drop_if = saved;
    }

    pub fn reply(&self, req: ReqId) -> Option<&Reply> {
        self.replies.get(&req)
    }

    /// Runs until `req` is answered (at most `steps_max` steps).
    pub fn wait(&mut self, req: ReqId, steps_max: u64) -> Option<Reply> {
        self.run_until(steps_max, |s| s.replies.contains_key(&req));
        self.replies.get(&req).cloned()
    }
}
