//! Network nemeses: partitions (halves, one node isolated, the leader isolated, majorities ring,
//! bridge, one-way, and leader churn, which follows the elections: [`super::churn`]), packet
//! loss and latency (on every link, or [`FLAPPING`]: switched on and off), all expressed as a
//! [`NetFaults`] state that the runtime applies.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::churn::{self, LEADER_CHURN};
use super::{Applied, Family, FaultSpec, Nemesis, NemesisCtx};
use crate::client::BoxFuture;
use crate::runtime::{Link, NetFaults, Runtime};

/// The loss or latency kind that switches on and off, [`FLAP_MS`] each, for its whole window
/// (every link, the window's seeded loss probability or delay). Each switch catches calls
/// between nodes in flight: switched on, calls sent just before time out although they arrive
/// and are applied; switched off, the packets held back arrive at once, after their callers
/// gave up. A system that treats a timed-out call as not done shows it (quorum `naive`: a write
/// answered as failed becomes the majority value). Accepted only when named, or declared by a
/// target for its default schedule ([`crate::target::Target::declared_faults`]).
pub const FLAPPING: &str = "flapping";

/// How long a [`FLAPPING`] fault stays on, and then off (a dozen switches in a 6 s window;
/// longer than the ~10 ms the rules take to land).
pub const FLAP_MS: u64 = 500;

/// Partition, loss or latency.
pub struct NetNemesis {
    pub family: Family,
    /// The loop of a leader-churn window while one runs.
    churn: churn::Driver,
    /// The switching loop of a flapping window while one runs.
    flap: churn::Driver,
}

fn both_ways(a: &[String], b: &[String]) -> Vec<Link> {
    let mut links = Vec::new();
    for x in a {
        for y in b {
            links.push(Link { from: x.clone(), to: y.clone() });
            links.push(Link { from: y.clone(), to: x.clone() });
        }
    }
    links
}

/// Links cut by a partition kind over nodes in seeded `ordered` order (`leader` for
/// isolate-leader). Pure, so it is unit-tested.
pub fn partition_links(kind: &str, ordered: &[String], leader: Option<&str>) -> Result<Vec<Link>, String> {
    let n = ordered.len();
    let half = n / 2;
    let mut links = match kind {
        "halves" => both_ways(&ordered[..half], &ordered[half..]),
        "isolate-one" => both_ways(&ordered[..1.min(n)], &ordered[1.min(n)..]),
        "isolate-leader" => {
            let l = leader.ok_or("no leader known")?.to_string();
            let rest: Vec<String> = ordered.iter().filter(|x| **x != l).cloned().collect();
            both_ways(&[l], &rest)
        }
        "majorities-ring" => {
            // Each node keeps its ring neighbours within distance d: it sees a majority, and
            // no two nodes see the same majority (Jepsen's majorities-ring).
            let d = (half as f64 / 2.0).ceil() as usize;
            let mut links = Vec::new();
            for i in 0..n {
                for j in 0..n {
                    let dist = (i as isize - j as isize).unsigned_abs();
                    let ring = dist.min(n - dist);
                    if i != j && ring > d.max(1) {
                        links.push(Link { from: ordered[i].clone(), to: ordered[j].clone() });
                    }
                }
            }
            links
        }
        "bridge" => {
            // Two halves that cannot talk, joined by one node that talks to both.
            let a = &ordered[..half];
            let b = &ordered[n - half..];
            both_ways(a, b)
        }
        "one-way" => {
            // The first half's packets to the second half are lost; the way back works.
            let mut links = Vec::new();
            for x in &ordered[..half] {
                for y in &ordered[half..] {
                    links.push(Link { from: x.clone(), to: y.clone() });
                }
            }
            links
        }
        "all-links" => both_ways(ordered, ordered).into_iter().filter(|l| l.from != l.to).collect(),
        other => return Err(format!("unknown partition kind {other}")),
    };
    links.sort();
    links.dedup();
    Ok(links)
}

impl NetNemesis {
    pub fn new(family: Family) -> NetNemesis {
        NetNemesis { family, churn: churn::Driver::default(), flap: churn::Driver::default() }
    }

    /// Starts a [`FLAPPING`] window: the fault on every link now, then the loop that switches
    /// it off and on until `stop`.
    fn start_flapping(&self, ctx: &NemesisCtx, spec: &FaultSpec) -> Applied {
        let via = if self.family == Family::Latency { "nfqueue" } else { "iptables" };
        let mechanism = format!("{}-{via}", ctx.runtime.mechanism().as_str());
        let links = match self.links_to_cut(spec, &ctx.ordered(spec), None) {
            Ok(l) => l,
            Err(e) => return Applied { applied: false, mechanism, error: Some(e), ..Applied::default() },
        };
        let on = self.faults_on(&links, spec.param);
        let nodes = linked_nodes(&links);
        let detail = json!({ "param": spec.param, "flap_ms": FLAP_MS, "links": links.len() });
        if let Err(e) = ctx.runtime.apply_net(&on) {
            let _ = ctx.runtime.heal_net();
            return Applied { applied: false, nodes, mechanism, error: Some(e.to_string()), detail };
        }
        self.flap.start(tokio::spawn(flap(ctx.runtime.clone(), on, ctx.event.clone())));
        Applied { applied: true, nodes, mechanism, error: None, detail }
    }

    /// Starts a leader-churn window: every link between nodes delayed by `spec.param` ms, then
    /// the loop that cuts leaders ([`churn::run`]) until `stop`.
    fn start_churn(&self, ctx: &NemesisCtx, spec: &FaultSpec) -> Applied {
        let mechanism = format!("{}-iptables+nfqueue", ctx.runtime.mechanism().as_str());
        let ordered = ctx.ordered(spec);
        let delay_ms = spec.param.max(1.0) as u64;
        if !ctx.target.has_leader() || ordered.len() < 3 {
            let error = format!("{LEADER_CHURN} needs a target with a leader and 3 nodes or more");
            return Applied { applied: false, mechanism, error: Some(error), ..Applied::default() };
        }
        let policy = churn::Policy::new(ordered.clone(), delay_ms);
        if let Err(e) = ctx.runtime.apply_net(&policy.faults(&[])) {
            let _ = ctx.runtime.heal_net();
            return Applied { applied: false, mechanism, error: Some(e.to_string()), ..Applied::default() };
        }
        self.churn.start(tokio::spawn(churn::run(churn::Io::of(ctx), policy)));
        let detail = json!({ "link_delay_ms": delay_ms, "poll_ms": churn::POLL_MS });
        Applied { applied: true, nodes: ordered, mechanism, error: None, detail }
    }

    /// The links this fault affects: a partition's cut, else every link; an error when that is
    /// no link at all.
    fn links_to_cut(&self, spec: &FaultSpec, ordered: &[String], leader: Option<&str>) -> Result<Vec<Link>, String> {
        let links = match self.family {
            Family::Partition => partition_links(&spec.kind, ordered, leader),
            _ => partition_links("all-links", ordered, None),
        }?;
        if links.is_empty() {
            // E.g. a majorities ring of 3 or any cut of 1 node: nothing to cut. Say so
            // rather than report a fault that changed nothing.
            return Err(format!("{} {} cuts no link among {} nodes", self.family.as_str(), spec.kind, ordered.len()));
        }
        Ok(links)
    }

    /// The network state that applies this family's fault to `links`: dropped, lossy (with
    /// probability `param`) or delayed (by `param` ms, at least 1).
    fn faults_on(&self, links: &[Link], param: f64) -> NetFaults {
        match self.family {
            Family::Partition => NetFaults { drop: links.to_vec(), ..NetFaults::default() },
            Family::Loss => {
                NetFaults { loss: links.iter().map(|l| (l.clone(), param)).collect(), ..NetFaults::default() }
            }
            _ => NetFaults {
                delay: links.iter().map(|l| (l.clone(), param.max(1.0) as u64)).collect(),
                ..NetFaults::default()
            },
        }
    }
}

/// The switching loop of a [`FLAPPING`] window (`on` is in force when it starts): off and on
/// every [`FLAP_MS`] until aborted, each switch recorded as a `flap` nemesis event (`on`, and
/// the error if the runtime failed to apply it: the loop goes on, the next switch rewrites the
/// state and the window's stop heals it).
async fn flap(runtime: Arc<dyn Runtime>, on: NetFaults, event: super::EventHook) {
    let off = NetFaults::default();
    for (state, is_on) in [(&off, false), (&on, true)].into_iter().cycle() {
        tokio::time::sleep(Duration::from_millis(FLAP_MS)).await;
        let error = runtime.apply_net(state).err().map(|e| e.to_string());
        event("flap", json!({ "on": is_on, "error": error }));
    }
}

/// The nodes at either end of `links`, sorted, each once.
fn linked_nodes(links: &[Link]) -> Vec<String> {
    let mut nodes: Vec<String> = links.iter().flat_map(|l| [l.from.clone(), l.to.clone()]).collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

impl Nemesis for NetNemesis {
    fn family(&self) -> Family {
        self.family
    }

    fn start<'a>(&'a self, ctx: &'a NemesisCtx, spec: &'a FaultSpec) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            if spec.is_leader_churn() {
                return self.start_churn(ctx, spec);
            }
            if spec.kind == FLAPPING {
                return self.start_flapping(ctx, spec);
            }
            let ordered = ctx.ordered(spec);
            let leader = if spec.kind == "isolate-leader" { ctx.leader().await } else { None };
            let mechanism = format!("{}-iptables", ctx.runtime.mechanism().as_str());
            let links = match self.links_to_cut(spec, &ordered, leader.as_deref()) {
                Ok(l) => l,
                Err(e) => return Applied { applied: false, mechanism, error: Some(e), ..Applied::default() },
            };
            let nodes = linked_nodes(&links);
            let faults = self.faults_on(&links, spec.param);
            let mechanism = if self.family == Family::Latency {
                format!("{}-nfqueue", ctx.runtime.mechanism().as_str())
            } else {
                mechanism
            };
            let detail = json!({
                "links": links.iter().map(|l| format!("{}->{}", l.from, l.to)).collect::<Vec<_>>(),
                "param": spec.param,
                "leader": leader,
            });
            match ctx.runtime.apply_net(&faults) {
                Ok(()) => Applied { applied: true, nodes, mechanism, error: None, detail },
                Err(e) => {
                    // Leave nothing half-applied.
                    let _ = ctx.runtime.heal_net();
                    Applied { applied: false, nodes, mechanism, error: Some(e.to_string()), detail }
                }
            }
        })
    }

    fn stop<'a>(
        &'a self,
        ctx: &'a NemesisCtx,
        _spec: &'a FaultSpec,
        _applied: &'a Applied,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.churn.stop().await;
            self.flap.stop().await;
            ctx.runtime.heal_net().map_err(|e| e.to_string())
        })
    }

    fn heal_all<'a>(&'a self, ctx: &'a NemesisCtx) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.churn.stop().await;
            self.flap.stop().await;
            ctx.runtime.heal_net().map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    /// Who can `x` hear from, given cut links.
    fn hears(links: &[Link], all: &[String], x: &str) -> Vec<String> {
        all.iter().filter(|y| *y != x && !links.contains(&Link { from: (*y).clone(), to: x.into() })).cloned().collect()
    }

    #[test]
    fn halves_cut_every_cross_link_both_ways() {
        let all = nodes(5);
        let l = partition_links("halves", &all, None).unwrap();
        assert_eq!(l.len(), 2 * 2 * 3);
        assert_eq!(hears(&l, &all, "n1"), vec!["n2"]);
        assert_eq!(hears(&l, &all, "n5"), vec!["n3", "n4"]);
    }

    #[test]
    fn isolate_leader_needs_a_leader() {
        let all = nodes(5);
        assert!(partition_links("isolate-leader", &all, None).is_err());
        let l = partition_links("isolate-leader", &all, Some("n3")).unwrap();
        assert!(hears(&l, &all, "n3").is_empty());
        assert_eq!(hears(&l, &all, "n1"), vec!["n2", "n4", "n5"]);
    }

    #[test]
    fn majorities_ring_gives_everyone_a_distinct_majority() {
        let all = nodes(5);
        let l = partition_links("majorities-ring", &all, None).unwrap();
        let mut views = Vec::new();
        for x in &all {
            let mut v = hears(&l, &all, x);
            v.push(x.clone());
            v.sort();
            assert!(v.len() >= 3, "{x} sees {v:?}, not a majority");
            views.push(v);
        }
        views.sort();
        views.dedup();
        assert_eq!(views.len(), 5, "majorities must differ");
    }

    #[test]
    fn bridge_node_hears_both_sides() {
        let all = nodes(5);
        let l = partition_links("bridge", &all, None).unwrap();
        assert_eq!(hears(&l, &all, "n3").len(), 4);
        assert_eq!(hears(&l, &all, "n1"), vec!["n2", "n3"]);
    }

    #[test]
    fn small_clusters_give_empty_cuts() {
        assert!(partition_links("majorities-ring", &nodes(3), None).unwrap().is_empty());
        assert!(partition_links("halves", &nodes(1), None).unwrap().is_empty());
        assert!(partition_links("all-links", &nodes(1), None).unwrap().is_empty());
    }

    #[test]
    fn one_way_cuts_only_one_direction() {
        let all = nodes(4);
        let l = partition_links("one-way", &all, None).unwrap();
        assert!(l.contains(&Link { from: "n1".into(), to: "n3".into() }));
        assert!(!l.contains(&Link { from: "n3".into(), to: "n1".into() }));
        assert!(partition_links("sideways", &all, None).is_err());
    }
}
