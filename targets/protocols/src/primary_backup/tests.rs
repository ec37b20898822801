//! Deterministic tests of the primary–backup core on a simulated network: promotion and ranked
//! succession, epochs and stepping down, the replication log (catch-up from the backlog, full
//! resync after compaction or divergence), async vs sync acknowledgement, restart from disk.

use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What the runtime has made durable: exactly what `Ready` said to persist.
#[derive(Clone, Debug, Default)]
struct Disk {
    epoch: Epoch,
    snapshot: Snapshot,
    entries: Vec<Entry>,
}

impl Disk {
    fn persist(&mut self, p: &Persist) {
        match p {
            Persist::Epoch(e) => self.epoch = e.clone(),
            Persist::Entries(es) => {
                let first = es[0].index;
                self.entries.retain(|e| e.index < first);
                assert!(
                    self.entries.last().map_or(self.snapshot.index, |e| e.index) + 1 == first,
                    "entries follow what is on disk"
                );
                self.entries.extend(es.iter().cloned());
            }
            Persist::Rewrite { epoch, snapshot, entries } => {
                *self = Disk { epoch: epoch.clone(), snapshot: snapshot.clone(), entries: entries.clone() };
            }
        }
    }
    fn restore(&self) -> Restore {
        Restore { epoch: self.epoch.clone(), snapshot: self.snapshot.clone(), entries: self.entries.clone() }
    }
}

struct Sim {
    cfgs: BTreeMap<NodeId, Config>,
    nodes: BTreeMap<NodeId, Node>,
    disks: BTreeMap<NodeId, Disk>,
    /// Crashed nodes (no ticks, messages to them dropped).
    down: BTreeSet<NodeId>,
    net: VecDeque<Envelope>,
    /// Directed links that drop everything.
    blocked: BTreeSet<(NodeId, NodeId)>,
    loss: f64,
    rng: ChaCha8Rng,
    replies: BTreeMap<ReqId, Reply>,
    next_req: ReqId,
}

fn ids(n: usize) -> Vec<NodeId> {
    (1..=n).map(|i| format!("n{i}")).collect()
}

impl Sim {
    fn new(n: usize, tweak: impl Fn(&mut Config)) -> Sim {
        let members = ids(n);
        let mut cfgs = BTreeMap::new();
        let mut nodes = BTreeMap::new();
        for id in &members {
            let mut c = Config::new(id.clone(), members.clone());
            tweak(&mut c);
            nodes.insert(id.clone(), Node::new(c.clone(), Restore::default()));
            cfgs.insert(id.clone(), c);
        }
        let disks = members.iter().map(|m| (m.clone(), Disk::default())).collect();
        Sim {
            cfgs,
            nodes,
            disks,
            down: BTreeSet::new(),
            net: VecDeque::new(),
            blocked: BTreeSet::new(),
            loss: 0.0,
            rng: ChaCha8Rng::seed_from_u64(7),
            replies: BTreeMap::new(),
            next_req: 0,
        }
    }

    fn node(&self, id: &str) -> &Node {
        &self.nodes[id]
    }

    /// Persists, then queues messages, then records replies (the runtime's order).
    fn drain(&mut self, id: &str) {
        let rd = self.nodes.get_mut(id).expect("node").take_ready();
        let disk = self.disks.get_mut(id).expect("disk");
        for p in &rd.persist {
            disk.persist(p);
        }
        self.net.extend(rd.messages);
        for (r, reply) in rd.replies {
            assert!(self.replies.insert(r, reply).is_none(), "request {r} answered twice");
        }
    }

    fn deliver_all(&mut self) {
        // Bounded: each delivery can only produce answers to a finite cascade.
        for _ in 0..100_000 {
            let Some(env) = self.net.pop_front() else { return };
            if self.down.contains(&env.to)
                || self.down.contains(&env.from)
                || self.blocked.contains(&(env.from.clone(), env.to.clone()))
            {
                continue;
            }
            if self.loss > 0.0 && self.rng.random_bool(self.loss) {
                continue;
            }
            let to = env.to.clone();
            self.nodes.get_mut(&to).expect("node").step(env);
            self.drain(&to);
        }
        panic!("messages never stopped");
    }

    fn tick(&mut self, n: u32) {
        for _ in 0..n {
            let ids: Vec<NodeId> = self.nodes.keys().cloned().collect();
            for id in ids {
                if self.down.contains(&id) {
                    continue;
                }
                self.nodes.get_mut(&id).expect("node").tick();
                self.drain(&id);
            }
            self.deliver_all();
        }
    }

    fn primaries(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(id, n)| !self.down.contains(*id) && n.role() == Role::Primary)
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn write(&mut self, at: &str, key: &str, value: i64) -> ReqId {
        self.propose(at, Command::Write { key: key.into(), value })
    }

    fn add(&mut self, at: &str, key: &str, element: i64) -> ReqId {
        self.propose(at, Command::SetAdd { key: key.into(), element })
    }

    fn propose(&mut self, at: &str, cmd: Command) -> ReqId {
        self.next_req += 1;
        let r = self.next_req;
        let n = self.nodes.get_mut(at).expect("node");
        n.propose(r, cmd);
        n.flush();
        self.drain(at);
        self.deliver_all();
        r
    }

    fn isolate(&mut self, id: &str) {
        for o in self.nodes.keys() {
            if o != id {
                self.blocked.insert((id.to_string(), o.clone()));
                self.blocked.insert((o.clone(), id.to_string()));
            }
        }
    }

    fn heal(&mut self) {
        self.blocked.clear();
    }

    fn crash(&mut self, id: &str) {
        self.down.insert(id.to_string());
    }

    fn restart(&mut self, id: &str) {
        self.down.remove(id);
        let n = Node::new(self.cfgs[id].clone(), self.disks[id].restore());
        self.nodes.insert(id.to_string(), n);
    }

    fn set(&self, id: &str, key: &str) -> Vec<i64> {
        self.node(id).data().sets.get(key).map(|s| s.iter().copied().collect()).unwrap_or_default()
    }

    /// Ticks until exactly one primary is up, at most `max` ticks; returns it.
    fn settle(&mut self, max: u32) -> NodeId {
        for _ in 0..max {
            self.tick(1);
            let p = self.primaries();
            if p.len() == 1
                && self.nodes.iter().all(|(id, n)| self.down.contains(id) || n.epoch() == self.nodes[&p[0]].epoch())
            {
                return p[0].clone();
            }
        }
        panic!("no single primary within {max} ticks: {:?}", self.primaries());
    }
}

const FAILOVER: u32 = 30;

#[test]
fn epochs_order_by_counter_then_primary() {
    let e = |n, p: &str| Epoch { n, primary: p.into() };
    assert!(e(2, "n1") > e(1, "n3"));
    assert!(e(2, "n3") > e(2, "n2"));
    assert!(e(1, "n1") > Epoch::default());
}

#[test]
fn first_boot_promotes_the_first_ranked_node_once_and_the_others_follow_it() {
    let mut s = Sim::new(3, |_| {});
    s.tick(FAILOVER - 1);
    assert!(s.primaries().is_empty(), "nobody promotes before the failover timeout");
    let p = s.settle(5);
    assert_eq!(p, "n1", "rank 0 before any primary is the first id");
    assert_eq!(*s.node("n1").epoch(), Epoch { n: 1, primary: "n1".into() });
    // n2 (rank 1) would have promoted at 2×FAILOVER: it heard n1 first.
    s.tick(3 * FAILOVER);
    assert_eq!(s.primaries(), vec!["n1".to_string()]);
    assert_eq!(s.node("n2").status().primary.as_deref(), Some("n1"));
    assert_eq!(s.disks["n2"].epoch, *s.node("n1").epoch(), "the epoch is persisted");
}

#[test]
fn async_write_is_acknowledged_before_any_backup_has_it() {
    let mut s = Sim::new(3, |_| {});
    s.settle(100);
    s.isolate("n1");
    let r = s.add("n1", "s", 7);
    assert_eq!(s.replies[&r], Reply::Done, "async: acknowledged once on the primary's disk");
    assert_eq!(
        s.disks["n1"].entries.last().map(|e| e.cmd.clone()),
        Some(Command::SetAdd { key: "s".into(), element: 7 })
    );
    assert!(s.set("n2", "s").is_empty());
    s.heal();
    s.tick(10);
    assert_eq!(s.set("n2", "s"), vec![7]);
    assert_eq!(s.set("n3", "s"), vec![7]);
}

#[test]
fn sync_write_waits_for_every_backup_then_is_acknowledged() {
    let mut s = Sim::new(3, |c| c.sync = true);
    s.settle(100);
    s.blocked.insert(("n1".into(), "n3".into()));
    let r = s.add("n1", "s", 7);
    s.tick(20);
    assert!(!s.replies.contains_key(&r), "one backup lacks it: no answer");
    assert!(s.set("n1", "s").is_empty(), "the primary's reads see committed entries only");
    s.heal();
    s.tick(10);
    assert_eq!(s.replies[&r], Reply::Done);
    for n in ["n1", "n2", "n3"] {
        assert_eq!(s.set(n, "s"), vec![7], "{n}");
    }
}

#[test]
fn a_backup_refuses_writes_and_primary_reads_but_serves_local_reads() {
    let mut s = Sim::new(3, |_| {});
    s.settle(100);
    s.write("n1", "k", 3);
    let r = s.write("n2", "k", 4);
    assert_eq!(s.replies[&r], Reply::NotPrimary { primary: Some("n1".into()) });
    let n2 = s.nodes.get_mut("n2").expect("n2");
    n2.read(100, "k", false);
    n2.read(101, "k", true);
    let rd = n2.take_ready();
    assert_eq!(rd.replies, vec![(100, Reply::NotPrimary { primary: Some("n1".into()) }), (101, Reply::Value(Some(3)))]);
}

#[test]
fn cas_is_decided_in_log_order() {
    let mut s = Sim::new(3, |_| {});
    s.settle(100);
    s.write("n1", "k", 1);
    let a = s.propose("n1", Command::Cas { key: "k".into(), from: Some(1), to: 2 });
    let b = s.propose("n1", Command::Cas { key: "k".into(), from: Some(1), to: 3 });
    assert_eq!(s.replies[&a], Reply::Done);
    assert_eq!(s.replies[&b], Reply::CasMismatch { current: Some(2) });
    s.tick(10);
    assert_eq!(s.node("n3").data().kv["k"], 2);
}

#[test]
fn isolated_primary_is_replaced_and_steps_down_on_heal_losing_its_async_acknowledged_writes() {
    let mut s = Sim::new(3, |_| {});
    s.settle(100);
    let before = s.add("n1", "s", 1);
    s.tick(10);
    s.isolate("n1");
    // Split brain: n1 still acknowledges; n2 takes over after one failover timeout.
    let lost = s.add("n1", "s", 2);
    assert_eq!(s.replies[&lost], Reply::Done);
    s.tick(FAILOVER + 2);
    let mut p = s.primaries();
    p.sort();
    assert_eq!(p, vec!["n1".to_string(), "n2".to_string()], "two primaries while partitioned");
    assert_eq!(*s.node("n2").epoch(), Epoch { n: 2, primary: "n2".into() });
    let after = s.add("n2", "s", 3);
    assert_eq!(s.replies[&after], Reply::Done);
    s.heal();
    s.tick(10);
    assert_eq!(s.primaries(), vec!["n2".to_string()], "the old primary learned the higher epoch and stepped down");
    assert_eq!(s.replies[&before], Reply::Done);
    for n in ["n1", "n2", "n3"] {
        assert_eq!(s.set(n, "s"), vec![1, 3], "{n}: the write acknowledged by the old primary is gone");
    }
    assert_eq!(s.node("n1").status().full_syncs, 1, "its divergent, applied log needed a full resync");
}

#[test]
fn sync_mode_under_the_same_schedule_loses_no_acknowledged_write() {
    let mut s = Sim::new(3, |c| c.sync = true);
    s.settle(100);
    let before = s.add("n1", "s", 1);
    s.tick(10);
    assert_eq!(s.replies[&before], Reply::Done);
    s.isolate("n1");
    let doomed = s.add("n1", "s", 2);
    s.tick(FAILOVER + 2);
    assert!(!s.replies.contains_key(&doomed), "no backup has it: not acknowledged");
    // The new primary cannot reach n1 either: its writes wait too.
    let during = s.add("n2", "s", 3);
    s.tick(5);
    assert!(!s.replies.contains_key(&during));
    s.heal();
    s.tick(20);
    assert_eq!(s.replies[&doomed], Reply::LostPrimacy, "indefinite: the client cannot know");
    assert_eq!(s.replies[&during], Reply::Done, "committed once n1 rejoined as a backup");
    for n in ["n1", "n2", "n3"] {
        assert_eq!(s.set(n, "s"), vec![1, 3], "{n}");
    }
}

/// The failover of issue 14 (`--target-opt sync=true`, no bug flag): the primary acknowledged an
/// add and was killed before any heartbeat told the backups the new commit index; the promoted
/// backup held the entry but answered a read without it. Every entry a sync primary
/// acknowledged is on every backup, so the new primary commits what it holds on promotion.
#[test]
fn a_promoted_sync_primary_reads_every_write_the_old_one_acknowledged() {
    let mut s = Sim::new(3, |c| c.sync = true);
    s.settle(100);
    let acked: Vec<ReqId> = (0..5).map(|i| s.add("n1", "s", i)).collect();
    for r in &acked {
        assert_eq!(s.replies[r], Reply::Done);
    }
    assert!(
        s.node("n2").status().commit_index < s.node("n1").status().commit_index,
        "the backups learn the last commit later"
    );
    s.crash("n1");
    let p = s.settle(10 * FAILOVER);
    s.next_req += 1;
    let r = s.next_req;
    let n = s.nodes.get_mut(&p).expect("node");
    n.read_set(r, "s", false);
    n.flush();
    s.drain(&p);
    assert_eq!(s.replies[&r], Reply::Elements(vec![0, 1, 2, 3, 4]), "read on the new primary {p}");
}

#[test]
fn the_backup_that_acknowledged_most_is_ranked_first_and_promotes() {
    let mut s = Sim::new(3, |_| {});
    s.settle(100);
    // n2's acknowledgements are lost: as far as n1 knows, n3 holds more of the log, so n3 is
    // ranked first (n2 still hears the heartbeats that carry its rank).
    s.blocked.insert(("n2".into(), "n1".into()));
    for i in 0..5 {
        s.add("n1", "s", i);
    }
    s.tick(10);
    assert_eq!(s.node("n3").status().rank, 0);
    assert_eq!(s.node("n2").status().rank, 1);
    s.isolate("n1");
    s.tick(FAILOVER + 2);
    assert_eq!(s.primaries().iter().filter(|p| *p != "n1").cloned().collect::<Vec<_>>(), vec!["n3".to_string()]);
    s.tick(2 * FAILOVER);
    assert_eq!(s.node("n2").status().primary.as_deref(), Some("n3"), "n2 followed n3 instead of promoting");
    assert_eq!(s.set("n2", "s"), vec![0, 1, 2, 3, 4]);
}

#[test]
fn a_lagging_backup_catches_up_from_the_backlog_and_needs_a_snapshot_only_after_compaction() {
    let mut s = Sim::new(3, |c| {
        c.log_entries_max = 40;
        c.backlog_entries = 10;
        c.batch_entries_max = 7;
    });
    s.settle(100);
    s.isolate("n3");
    for i in 0..20 {
        s.add("n1", "s", i);
    }
    s.heal();
    s.tick(20);
    assert_eq!(s.set("n3", "s"), (0..20).collect::<Vec<_>>());
    assert_eq!(s.node("n3").status().full_syncs, 0, "20 entries behind, within the log");
    s.isolate("n3");
    for i in 20..100 {
        s.add("n1", "s", i);
    }
    assert!(s.node("n1").status().base_index > 20, "compacted");
    assert!(s.node("n1").entries().len() <= 41, "bounded log: {}", s.node("n1").entries().len());
    s.heal();
    s.tick(20);
    assert_eq!(s.set("n3", "s"), (0..100).collect::<Vec<_>>());
    assert_eq!(s.node("n3").status().full_syncs, 1);
    // Disks hold the same state.
    for n in ["n1", "n2", "n3"] {
        let restored = Node::new(s.cfgs[n].clone(), s.disks[n].restore());
        let mut d = restored.data().clone();
        // The restored node has the snapshot; entries after it apply once a primary commits them.
        for e in s.disks[n].entries.iter() {
            d.apply(&e.cmd);
        }
        assert_eq!(d, *s.node(n).data(), "{n}");
    }
}

#[test]
fn a_restarted_primary_comes_back_as_a_backup_and_keeps_its_acknowledged_writes() {
    let mut s = Sim::new(3, |c| c.sync = true);
    s.settle(100);
    for i in 0..5 {
        s.add("n1", "s", i);
    }
    s.tick(5);
    s.crash("n1");
    s.tick(FAILOVER + 2);
    assert_eq!(s.primaries(), vec!["n2".to_string()]);
    let w = s.add("n2", "s", 9);
    s.tick(5);
    assert!(!s.replies.contains_key(&w), "sync: n1 is down, n2 cannot commit");
    s.restart("n1");
    assert_eq!(s.node("n1").role(), Role::Backup);
    s.tick(10);
    assert_eq!(s.replies[&w], Reply::Done);
    assert_eq!(s.primaries(), vec!["n2".to_string()]);
    for n in ["n1", "n2", "n3"] {
        assert_eq!(s.set(n, "s"), vec![0, 1, 2, 3, 4, 9], "{n}");
    }
}

#[test]
fn kill_every_node_keeps_every_acknowledged_write_in_both_modes() {
    for sync in [false, true] {
        let mut s = Sim::new(3, |c| c.sync = sync);
        s.settle(100);
        let mut acked = Vec::new();
        for i in 0..30 {
            let r = s.add("n1", "s", i);
            if s.replies.get(&r) == Some(&Reply::Done) {
                acked.push(i);
            }
        }
        s.tick(3);
        for n in ["n1", "n2", "n3"] {
            s.crash(n);
        }
        s.net.clear();
        for n in ["n1", "n2", "n3"] {
            s.restart(n);
        }
        let p = s.settle(200);
        s.tick(10);
        for i in &acked {
            assert!(s.set(&p, "s").contains(i), "sync={sync}: acknowledged {i} lost");
        }
        assert_eq!(acked.len(), 30, "sync={sync}");
    }
}

/// Random loss, partitions and crashes: whatever happens, once healed every node converges to
/// the primary's state, never has more than one primary per epoch, and in sync mode keeps every
/// acknowledged add.
#[test]
fn random_faults_converge_and_sync_keeps_acknowledged_adds() {
    for seed in 0..40u64 {
        let sync = seed % 2 == 1;
        let mut s = Sim::new(3, |c| {
            c.sync = sync;
            c.log_entries_max = 50;
            c.backlog_entries = 10;
        });
        s.rng = ChaCha8Rng::seed_from_u64(seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 1000);
        s.settle(200);
        let mut reqs: Vec<(ReqId, i64)> = Vec::new();
        let mut epochs_seen: BTreeMap<Epoch, NodeId> = BTreeMap::new();
        for step in 0..400i64 {
            match rng.random_range(0..100) {
                0..=3 => {
                    let victim = format!("n{}", rng.random_range(1..=3));
                    s.isolate(&victim);
                }
                4..=7 => s.heal(),
                8..=9 => {
                    let victim = format!("n{}", rng.random_range(1..=3));
                    if s.down.contains(&victim) {
                        s.restart(&victim);
                    } else if s.down.is_empty() {
                        s.crash(&victim);
                    }
                }
                10..=14 => s.loss = if s.loss > 0.0 { 0.0 } else { 0.2 },
                _ => {
                    if let Some(p) = s.primaries().first().cloned() {
                        let r = s.add(&p, "s", step);
                        reqs.push((r, step));
                    }
                }
            }
            s.tick(rng.random_range(1..8));
            // Sync mode: an acknowledged add is on every node's disk from then on (whatever
            // happens next, any primary has it).
            if sync {
                for (r, v) in &reqs {
                    if s.replies.get(r) == Some(&Reply::Done) {
                        for (id, d) in &s.disks {
                            let has = d.snapshot.data.sets.get("s").is_some_and(|x| x.contains(v))
                                || d.entries.iter().any(|e| e.cmd == Command::SetAdd { key: "s".into(), element: *v });
                            if !has {
                                panic!("seed {seed} step {step}: acknowledged {v} missing on {id}'s disk");
                            }
                        }
                    }
                }
            }
            for (id, n) in &s.nodes {
                if n.role() == Role::Primary {
                    let prev = epochs_seen.insert(n.epoch().clone(), id.clone());
                    assert!(prev.is_none_or(|p| p == *id), "seed {seed}: two primaries in epoch {:?}", n.epoch());
                }
            }
        }
        s.heal();
        s.loss = 0.0;
        for id in s.down.clone() {
            s.restart(&id);
        }
        let p = s.settle(500);
        s.tick(4 * FAILOVER);
        for n in ["n1", "n2", "n3"] {
            assert_eq!(s.node(n).data(), s.node(&p).data(), "seed {seed}: {n} did not converge to {p}");
        }
        if sync {
            let final_set = s.set(&p, "s");
            for (r, v) in &reqs {
                if s.replies.get(r) == Some(&Reply::Done) {
                    assert!(final_set.contains(v), "seed {seed}: acknowledged add {v} lost in sync mode");
                }
            }
        }
    }
}

#[test]
fn sync_fallback_bug_acknowledges_once_a_backup_is_silent_and_the_failover_drops_it() {
    let mut s = Sim::new(3, |c| {
        c.sync = true;
        c.bugs.sync_fallback = true;
    });
    s.settle(100);
    let before = s.add("n1", "s", 1);
    assert_eq!(s.replies[&before], Reply::Done, "healthy: answered once both backups have it");
    s.isolate("n1");
    let doomed = s.add("n1", "s", 2);
    s.tick(FAILOVER - 2);
    assert!(!s.replies.contains_key(&doomed), "still waiting within the timeout");
    s.tick(3);
    assert_eq!(s.replies[&doomed], Reply::Done, "the silent backups stopped being waited for");
    s.tick(FAILOVER);
    let after = s.add("n2", "s", 3);
    s.tick(FAILOVER + 2);
    assert_eq!(s.replies[&after], Reply::Done, "the new primary falls back too (n1 is silent)");
    s.heal();
    s.tick(20);
    assert_eq!(s.primaries(), vec!["n2".to_string()]);
    for n in ["n1", "n2", "n3"] {
        assert_eq!(s.set(n, "s"), vec![1, 3], "{n}: the acknowledged add 2 is gone");
    }
}
