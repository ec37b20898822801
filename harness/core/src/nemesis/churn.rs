//! Leader churn (`partition:leader-churn`): a partition that follows the elections.
//!
//! Some bugs need faults timed to the cluster's state, not to the clock: the Raft paper's
//! figure 8 (§5.4.2) needs a leader cut off before its first entry leaves it, and the next
//! leader cut off right after it first commits, before its own term's entry follows. A fault
//! planned before the run lands there only by a coincidence a round trip wide. This fault reads
//! the cluster instead: for its whole window it delays every link between nodes by the fault's
//! parameter (so a round trip between nodes takes longer than the harness needs to see and act),
//! asks every node for its status every [`POLL_MS`], and each time a new leader appears cuts it
//! off, together with enough of the nodes not cut off now to leave exactly a majority on the
//! other side (after a commit, the followers whose logs reach furthest), healing the nodes it
//! cut before. Each leader is cut either [`Mode::AfterCommit`] (once the commit index it reports
//! has moved past the highest any node reported when it was first seen, plus a grace shorter
//! than the link delay: the
//! leader has committed something, possibly an earlier term's entry, and answers the reads whose
//! rounds come back meanwhile, while the entry it sends next is still in flight) or
//! [`Mode::AtOnce`] (as soon as seen: its term's first entry reaches none of the nodes left
//! outside), in the order [`mode_of`] gives. Three leaders in a row then play figure 8: the first
//! is cut holding entries only its side has; the second is cut before its no-op leaves its side;
//! the third, from the first one's side, counts the first one's entries onto a majority, serves
//! reads from them, and is cut before its own entry follows; the second's side then wins the
//! next election with a later last term and overwrites them when that fourth leader commits (it
//! is cut then, and opens the next three).
//!
//! The decisions come from the [`Policy`], a pure function of what the nodes report (unit tested
//! below); the companions cut with a leader come from the fault's seeded node order. Each cut is
//! recorded in the history as a `churn-cut` nemesis event (leader, term, mode, nodes), so a run
//! shows what the nemesis did; a replay of the schedule replays the policy, which meets the
//! cluster's own timing again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use super::net::partition_links;
use super::{EventHook, NemesisCtx};
use crate::runtime::{Link, NetFaults, Runtime};
use crate::target::{NodeStatus, Target};

/// The kind's name: an explicit kind of `partition`, and part of the default schedule on
/// targets that declare it ([`crate::target::Target::declared_faults`]: the reference Raft).
pub const LEADER_CHURN: &str = "leader-churn";

/// Whether (`family`, `kind`) is leader churn: the one test every place that treats churn apart
/// uses (the schedule's window length, the runner's longer timeouts, the nemesis).
pub fn is(family: super::Family, kind: &str) -> bool {
    family == super::Family::Partition && kind == LEADER_CHURN
}

/// Range of the seeded delay on every link between nodes during the window, in ms. The harness
/// sees a new leader within [`POLL_MS`] plus a status round trip and cuts it with one
/// `iptables-restore` per node, run at once; the delay must exceed that, and an election (a
/// pre-vote and a vote round trip, four delays) must fit well inside the reference node's
/// 300 ms election timeout, or candidates split the votes for seconds (seen at 96–118 ms).
pub const LINK_DELAY_MS_MIN: u32 = 25;
pub const LINK_DELAY_MS_MAX: u32 = 40;

/// How often the nodes are asked for their status during the window.
pub const POLL_MS: u64 = 5;

/// Longest a status answer is awaited: a paused node must not stall the loop.
pub const STATUS_TIMEOUT: Duration = Duration::from_millis(200);

/// How long an [`Mode::AfterCommit`] leader may go without a commit before it is cut anyway,
/// in link delays (a target whose status has no commit index is always cut at this point).
pub const COMMIT_WAIT_DELAYS_MAX: u64 = 20;

/// How long after a commit is seen an [`Mode::AfterCommit`] leader is cut, in percent of the
/// link delay. The entry that follows the commit left the leader at the commit and arrives one
/// delay later, so a cut decided within the delay still stops it; meanwhile the read rounds
/// already on their way come back and the leader answers the reads that waited for them (cut at
/// once, a leader that committed an earlier term's entry answered none: its pending reads were
/// one heartbeat round short, seen with a debug build of the node). Measured against the delay
/// less 20 ms at 35–50 ms: no better (docs/targets.md, `commit-old-term`).
pub const GRACE_PERCENT_OF_DELAY: u64 = 60;

/// Cuts per window at most (a bound on the events one window writes).
pub const CUTS_MAX: usize = 10_000;

/// When a new leader is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// As soon as it is seen leading.
    AtOnce,
    /// Once its reported commit index has moved past the highest any node reported when it was
    /// first seen, plus [`GRACE_PERCENT_OF_DELAY`] of the link delay (or after
    /// `COMMIT_WAIT_DELAYS_MAX` delays without that, or when it reports no commit index).
    AfterCommit,
}

/// One cut: who leads, and who is cut off with it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cut {
    pub leader: String,
    pub term: Option<u64>,
    pub mode: Mode,
    /// The commit index the leader reported when cut.
    pub commit: Option<u64>,
    /// The leader first, then its companions.
    pub nodes: Vec<String>,
}

/// A leader seen and not cut yet.
#[derive(Clone, Debug)]
struct Watched {
    id: String,
    term: Option<u64>,
    mode: Mode,
    /// The highest commit index any node reported when this leader was first seen: it is cut
    /// after a commit only once its own passes that. A leader elected beside a side that counted
    /// entries onto a majority (figure 8's fourth leader) first commits the prefix both sides
    /// share; cut then, it never commits the entries that overwrite the others', and the churn
    /// went on leaving the other side's acknowledged writes standing (seen on raft
    /// `commit-old-term`: one side's leaders cut at commit 1033 for 17 s while the other had
    /// committed 1038).
    commit_seen: Option<u64>,
    seen_ms: u64,
    /// When its commit index was first seen past `commit_seen`.
    committed_ms: Option<u64>,
}

/// The decisions of leader churn (module doc), apart from any I/O.
pub struct Policy {
    /// Node ids in the fault's seeded order.
    ordered: Vec<String>,
    link_delay_ms: u64,
    cut: Vec<String>,
    watched: Option<Watched>,
    last_cut: Option<(String, Option<u64>)>,
    cuts: usize,
}

/// The mode of the `k`-th cut (from 0): after a commit, at once, after a commit, and again.
/// Figure 8 needs three leaders in this order (module doc); the third one's successor, from the
/// second one's side, is let commit (it overwrites what the third counted) and is the first of
/// the next three.
pub fn mode_of(k: usize) -> Mode {
    if k % 3 == 1 {
        Mode::AtOnce
    } else {
        Mode::AfterCommit
    }
}

impl Policy {
    pub fn new(ordered: Vec<String>, link_delay_ms: u64) -> Policy {
        Policy { ordered, link_delay_ms, cut: Vec::new(), watched: None, last_cut: None, cuts: 0 }
    }

    /// Nodes cut off on one side: the largest minority, at least the leader.
    fn side(&self) -> usize {
        (self.ordered.len().saturating_sub(1) / 2).max(1)
    }

    /// The leader among nodes not cut off: the highest term that claims it (then the lowest id).
    fn leader<'a>(&self, statuses: &'a [(String, NodeStatus)]) -> Option<&'a (String, NodeStatus)> {
        statuses
            .iter()
            .filter(|(id, s)| s.state == "leader" && !self.cut.contains(id))
            .max_by(|(a, x), (b, y)| x.term.unwrap_or(0).cmp(&y.term.unwrap_or(0)).then(b.cmp(a)))
    }

    /// One look at the cluster at `now_ms` (ms since the window began): the cut to make now, if
    /// any. Healing the previous cut is implied: a cut replaces it.
    pub fn observe(&mut self, now_ms: u64, statuses: &[(String, NodeStatus)]) -> Option<Cut> {
        if self.cuts >= CUTS_MAX || self.ordered.len() < 2 {
            return None;
        }
        let (id, st) = self.leader(statuses)?;
        let key = (id.clone(), st.term);
        let is_watched = self.watched.as_ref().is_some_and(|w| w.id == key.0 && w.term == key.1);
        if !is_watched {
            if self.last_cut.as_ref() == Some(&key) {
                return None;
            }
            self.watched = Some(Watched {
                id: key.0,
                term: key.1,
                mode: mode_of(self.cuts),
                commit_seen: st
                    .commit_index
                    .map(|own| statuses.iter().filter_map(|(_, s)| s.commit_index).fold(own, u64::max)),
                seen_ms: now_ms,
                committed_ms: None,
            });
        }
        let grace_ms = self.link_delay_ms * GRACE_PERCENT_OF_DELAY / 100;
        let w = self.watched.as_mut().expect("watched set above");
        if matches!((w.commit_seen, st.commit_index), (Some(a), Some(b)) if b > a) {
            w.committed_ms.get_or_insert(now_ms);
        }
        let graced = w.committed_ms.is_some_and(|at| now_ms >= at + grace_ms);
        let waited = now_ms.saturating_sub(w.seen_ms) >= COMMIT_WAIT_DELAYS_MAX * self.link_delay_ms;
        let due = match w.mode {
            Mode::AtOnce => true,
            Mode::AfterCommit => graced || waited,
        };
        due.then(|| self.cut_now(st.commit_index, statuses))
    }

    /// Cuts the watched leader with companions from the nodes not cut off now: in the seeded
    /// order, rotated by the number of cuts so far so that they vary; after a commit, the ones
    /// whose logs reach furthest first (they may hold the leader's newest entry, and the side
    /// left behind should not).
    fn cut_now(&mut self, commit: Option<u64>, statuses: &[(String, NodeStatus)]) -> Cut {
        let w = self.watched.take().expect("a watched leader");
        let n = self.ordered.len();
        let mut others: Vec<&String> = (0..n)
            .map(|i| &self.ordered[(i + self.cuts) % n])
            .filter(|c| **c != w.id && !self.cut.contains(c))
            .collect();
        if w.mode == Mode::AfterCommit {
            let last =
                |id: &String| statuses.iter().find(|(x, _)| x == id).and_then(|(_, s)| s.last_index).unwrap_or(0);
            others.sort_by_key(|id| std::cmp::Reverse(last(id)));
        }
        let mut nodes = vec![w.id.clone()];
        nodes.extend(others.into_iter().take(self.side() - 1).cloned());
        self.cut = nodes.clone();
        self.last_cut = Some((w.id.clone(), w.term));
        self.cuts += 1;
        Cut { leader: w.id, term: w.term, mode: w.mode, commit, nodes }
    }

    /// The network state of the window with `cut` (if any) cut off from everyone else: every
    /// link between nodes delayed, the cut's links dropped.
    pub fn faults(&self, cut: &[String]) -> NetFaults {
        let all = partition_links("all-links", &self.ordered, None).unwrap_or_default();
        let drop: Vec<Link> = all.iter().filter(|l| cut.contains(&l.from) != cut.contains(&l.to)).cloned().collect();
        let delay = all.into_iter().map(|l| (l, self.link_delay_ms)).collect();
        NetFaults { drop, delay, refuse_tcp: true, ..NetFaults::default() }
    }
}

/// What the window's loop needs of the [`NemesisCtx`], owned so the loop can run as a task.
pub struct Io {
    pub runtime: Arc<dyn Runtime>,
    pub target: Arc<dyn Target>,
    /// (id, address) of every node.
    pub nodes: Vec<(String, String)>,
    pub event: EventHook,
}

impl Io {
    pub fn of(ctx: &NemesisCtx) -> Io {
        Io {
            runtime: ctx.runtime.clone(),
            target: ctx.target.clone(),
            nodes: ctx.node_addrs(),
            event: ctx.event.clone(),
        }
    }

    /// Every node's status, asked concurrently, each bounded by [`STATUS_TIMEOUT`]; nodes that
    /// do not answer are left out.
    async fn statuses(&self) -> Vec<(String, NodeStatus)> {
        let mut set = crate::target::ask_statuses(&self.target, self.nodes.clone(), STATUS_TIMEOUT);
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(Some(s)) = r {
                out.push(s);
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// The window's loop: look, cut when the policy says so, until aborted. A cut the runtime fails
/// to apply is recorded with its error and the loop goes on (the next cut rewrites the state).
pub async fn run(io: Io, mut policy: Policy) {
    let began = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(POLL_MS)).await;
        let now_ms = began.elapsed().as_millis() as u64;
        let seen = io.statuses().await;
        let Some(cut) = policy.observe(now_ms, &seen) else { continue };
        let decided_ms = began.elapsed().as_millis() as u64;
        let applied = io.runtime.apply_net(&policy.faults(&cut.nodes));
        let mut value = serde_json::to_value(&cut).unwrap_or_default();
        value["error"] = json!(applied.err().map(|e| e.to_string()));
        // From the look that decided the cut to the decision (the statuses' round trip), and to
        // the firewall rules in force; the delayed packets are cut at the decision.
        value["look_ms"] = json!(decided_ms - now_ms);
        // What the nodes said: state, term, commit index, last index.
        let view: serde_json::Map<String, serde_json::Value> =
            seen.iter().map(|(id, s)| (id.clone(), json!([s.state, s.term, s.commit_index, s.last_index]))).collect();
        value["view"] = serde_json::Value::Object(view);
        value["react_ms"] = json!(began.elapsed().as_millis() as u64 - now_ms);
        (io.event)("churn-cut", value);
    }
}

/// The running loop of the current window, if any.
#[derive(Default)]
pub struct Driver {
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Driver {
    pub fn start(&self, task: tokio::task::JoinHandle<()>) {
        if let Some(old) = self.task.lock().expect("churn lock").replace(task) {
            old.abort();
        }
    }

    /// Stops the loop and waits until it has stopped (idempotent); the caller heals the network
    /// after. A cut being applied when the abort comes finishes first (the loop yields only
    /// between cuts): without the wait it could land after the heal and outlive the window.
    pub async fn stop(&self) {
        let task = self.task.lock().expect("churn lock").take();
        if let Some(t) = task {
            t.abort();
            let _ = t.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    fn st(state: &str, term: u64, commit: u64) -> NodeStatus {
        NodeStatus { state: state.into(), term: Some(term), commit_index: Some(commit), ..NodeStatus::default() }
    }

    /// n1..n5 with `leader` leading at `term` with commit index `commit`, the rest following.
    fn view(leader: &str, term: u64, commit: u64) -> Vec<(String, NodeStatus)> {
        ids(5)
            .into_iter()
            .map(|id| {
                let s = if id == leader { st("leader", term, commit) } else { st("follower", term, commit) };
                (id, s)
            })
            .collect()
    }

    #[test]
    fn leaders_are_cut_after_a_commit_then_at_once_then_after_a_commit_with_a_minority() {
        let mut p = Policy::new(ids(5), 100);
        // The first leader is watched until its commit index moves.
        assert_eq!(p.observe(0, &view("n1", 1, 10)), None);
        assert_eq!(p.observe(10, &view("n1", 1, 10)), None);
        // Seen committed at 20 ms; cut once the grace (60% of the 100 ms delay) has passed.
        assert_eq!(p.observe(20, &view("n1", 1, 11)), None);
        assert_eq!(p.observe(79, &view("n1", 1, 11)), None);
        let c = p.observe(80, &view("n1", 1, 11)).expect("cut after a commit");
        assert_eq!((c.leader.as_str(), c.mode, c.commit), ("n1", Mode::AfterCommit, Some(11)));
        assert_eq!(c.nodes.len(), 2, "5 nodes: a side of 2 leaves a majority of 3");
        // The cut-off leader still claims to lead: not a new leader.
        let mut v = view("n1", 1, 11);
        assert_eq!(p.observe(30, &v), None);
        // A new leader on the majority side is cut as soon as seen, with a companion that was
        // not cut before; the previous side is healed by the same state.
        let other = ids(5).into_iter().find(|id| !c.nodes.contains(id)).unwrap();
        v.iter_mut().find(|(id, _)| *id == other).unwrap().1 = st("leader", 2, 11);
        let d = p.observe(40, &v).expect("cut at once");
        assert_eq!((d.leader.as_str(), d.mode), (other.as_str(), Mode::AtOnce));
        assert!(d.nodes.iter().all(|n| !c.nodes.contains(n)), "{c:?} then {d:?}");
        assert_eq!(d.nodes.len(), 2);
        // The next leader waits for its commit again.
        let mut w = view("n9", 0, 0);
        let third = c.nodes[1].clone();
        for (id, s) in w.iter_mut() {
            *s = if *id == third {
                st("leader", 3, 11)
            } else if d.nodes.contains(id) {
                st("leader", 2, 11)
            } else {
                st("follower", 3, 11)
            };
        }
        assert_eq!(p.observe(50, &w), None);
        let w: Vec<(String, NodeStatus)> =
            w.iter().map(|(id, s)| (id.clone(), if *id == third { st("leader", 3, 12) } else { s.clone() })).collect();
        assert_eq!(p.observe(60, &w), None, "committed; the grace runs");
        let e = p.observe(120, &w);
        assert_eq!(e.map(|e| (e.leader, e.mode)), Some((third, Mode::AfterCommit)));
    }

    #[test]
    fn a_leader_beside_a_side_that_committed_further_is_cut_only_past_that_commit() {
        // Figure 8's fourth leader: n1 and n2 (cut off) committed up to 38 by counting an old
        // term's entries; n3 leads the other side from commit 31.
        let mut p = Policy::new(ids(5), 50);
        p.cuts = 3; // the fourth cut: after a commit
        p.cut = vec!["n1".into(), "n2".into()];
        let at = |c3: u64| -> Vec<(String, NodeStatus)> {
            ids(5)
                .into_iter()
                .map(|id| {
                    let s = match id.as_str() {
                        "n1" => st("leader", 12, 38),
                        "n2" => st("follower", 12, 38),
                        "n3" => st("leader", 13, c3),
                        _ => st("follower", 13, 31),
                    };
                    (id, s)
                })
                .collect()
        };
        assert_eq!(p.observe(0, &at(31)), None);
        // The prefix both sides share commits: not yet the entries that overwrite n1's.
        assert_eq!(p.observe(10, &at(33)), None);
        assert_eq!(p.observe(200, &at(38)), None, "level with the other side");
        assert_eq!(p.observe(300, &at(39)), None, "past it: the grace runs");
        let c = p.observe(330, &at(39)).expect("cut once its own commit passed 38");
        assert_eq!((c.leader.as_str(), c.mode, c.commit), ("n3", Mode::AfterCommit, Some(39)));
    }

    #[test]
    fn modes_come_in_threes_after_at_once_after() {
        let modes: Vec<Mode> = (0..7).map(mode_of).collect();
        use Mode::*;
        assert_eq!(modes, vec![AfterCommit, AtOnce, AfterCommit, AfterCommit, AtOnce, AfterCommit, AfterCommit]);
    }

    #[test]
    fn a_leader_without_a_commit_index_or_a_commit_is_cut_after_a_bounded_wait() {
        let mut p = Policy::new(ids(3), 50);
        let mut v = view("n2", 4, 0);
        v.truncate(3);
        for (_, s) in v.iter_mut() {
            s.commit_index = None;
        }
        assert_eq!(p.observe(0, &v), None);
        assert_eq!(p.observe(COMMIT_WAIT_DELAYS_MAX * 50 - 1, &v), None);
        let c = p.observe(COMMIT_WAIT_DELAYS_MAX * 50, &v).expect("cut at the bound");
        assert_eq!(c.nodes, vec!["n2"], "3 nodes: the leader alone");
    }

    #[test]
    fn no_leader_no_cut_and_the_same_leader_is_not_cut_twice() {
        let mut p = Policy::new(ids(5), 100);
        let none: Vec<(String, NodeStatus)> = ids(5).into_iter().map(|id| (id, st("follower", 1, 0))).collect();
        assert_eq!(p.observe(0, &none), None);
        assert_eq!(p.observe(0, &[]), None);
        p.observe(0, &view("n3", 7, 1));
        p.observe(1, &view("n3", 7, 2));
        let c = p.observe(61, &view("n3", 7, 2)).expect("cut");
        // Healed back and still leading in the same term (say the cut failed): not cut again.
        p.cut.clear();
        assert_eq!(p.observe(2, &view("n3", 7, 3)), None);
        assert_eq!(c.term, Some(7));
        // The same node leading in a later term is a new leader.
        assert!(p.observe(3, &view("n3", 8, 3)).is_some(), "at once: the mode alternated");
    }

    #[test]
    fn after_a_commit_the_followers_furthest_along_go_with_the_leader() {
        let mut p = Policy::new(ids(5), 60);
        let mut v = view("n1", 2, 5);
        for (id, s) in v.iter_mut() {
            s.last_index = Some(if id == "n4" { 9 } else { 6 });
        }
        assert_eq!(p.observe(0, &v), None);
        v[0].1.commit_index = Some(6);
        assert_eq!(p.observe(1, &v), None);
        let c = p.observe(37, &v).expect("cut after the commit and the grace (36 ms)");
        assert_eq!(c.nodes, vec!["n1", "n4"], "n4's log reaches furthest");
        // At once: companions from the seeded order, rotated, never the nodes cut now.
        let mut w = view("n2", 3, 6);
        w[0].1.state = "leader".into(); // n1, cut off, still claims term 2
        let d = p.observe(2, &w).expect("cut at once");
        assert_eq!(d.nodes[0], "n2");
        assert!(!d.nodes.contains(&"n1".to_string()) && !d.nodes.contains(&"n4".to_string()), "{d:?}");
    }

    #[test]
    fn the_state_delays_every_link_and_drops_only_across_the_cut() {
        let p = Policy::new(ids(5), 120);
        let f = p.faults(&["n2".into(), "n4".into()]);
        assert_eq!(f.delay.len(), 20);
        assert!(f.delay.iter().all(|(_, ms)| *ms == 120));
        assert_eq!(f.drop.len(), 2 * 2 * 3);
        assert!(f.drop.iter().all(|l| (l.from == "n2" || l.from == "n4") != (l.to == "n2" || l.to == "n4")));
        assert!(f.refuse_tcp, "cuts fail fast, heals take at once");
        assert!(p.faults(&[]).drop.is_empty());
    }
}
