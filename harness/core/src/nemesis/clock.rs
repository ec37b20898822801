//! Clock nemesis, through the node admin API (`POST /admin/clock`): a bump of a seeded offset
//! (1 ms to 10 min, either sign) on a seeded subset of nodes, or a strobe that flips the offset
//! between that value and 0 every [`STROBE_PERIOD_MS`]; reset at stop. Every offset set is kept
//! as a [`ClockSample`] for the clock plot. The system clock is never touched (it is shared by
//! every node on the machine).
//!
//! One kind overlaps two faults, because one fault at a time cannot break a clock-based read
//! lease: [`SKEW_ISOLATE_LEADER`] sets the current leader's clock back by a seeded number of
//! seconds and, at once, cuts the leader off from every other node; the stop heals the
//! partition, then resets the clock. A lease is a point on the leader's own clock, so the
//! set-back makes a lease taken just before it hold that many seconds longer, exactly while the
//! majority elects a new leader and accepts writes. (A forward bump held during the partition
//! does not do it: the offset is constant then, and the lease expires on time; it is the jump
//! that moves the lease end.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::net::partition_links;
use super::{Applied, ClockSample, Family, FaultSpec, Nemesis, NemesisCtx};
use crate::client::BoxFuture;
use crate::runtime::NetFaults;

/// Most clock samples kept per run (a strobe over a long run must not grow memory unbounded).
pub const SAMPLES_MAX: usize = 100_000;

/// Strobe half-period.
pub const STROBE_PERIOD_MS: u64 = 100;

/// The overlapping kind: set the leader's clock back and isolate it (module doc).
pub const SKEW_ISOLATE_LEADER: &str = "skew-isolate-leader";

/// Range of the seeded set-back of [`SKEW_ISOLATE_LEADER`], in whole seconds.
pub const SKEW_ISOLATE_OFFSET_S_MIN: u32 = 5;
pub const SKEW_ISOLATE_OFFSET_S_MAX: u32 = 15;

/// Bumps and strobes node clocks.
#[derive(Default)]
pub struct ClockNemesis {
    strobe: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// A [`SKEW_ISOLATE_LEADER`] partition is (or may be) in force: `heal_all` heals the net.
    isolating: Mutex<bool>,
}

fn sample(ctx_samples: &Arc<Mutex<Vec<ClockSample>>>, now: u64, node: &str, offset_ms: i64) {
    if let Ok(mut s) = ctx_samples.lock() {
        if s.len() < SAMPLES_MAX {
            s.push(ClockSample { time_ns: now, node: node.into(), offset_ms });
        }
    }
}

/// Nodes a clock fault acts on: a seeded subset of 1..=n nodes.
pub fn clock_nodes(ordered: &[String]) -> Vec<String> {
    if ordered.is_empty() {
        return vec![];
    }
    // The permutation's first index seeds the subset size (deterministic per schedule).
    let k = 1 + ordered[0].trim_start_matches('n').parse::<usize>().unwrap_or(1) % ordered.len();
    ordered[..k].to_vec()
}

impl ClockNemesis {
    async fn set_all(ctx: &NemesisCtx, nodes: &[String], offset: Option<i64>) -> Vec<String> {
        let mut errors = Vec::new();
        for id in nodes {
            let addr = match ctx.runtime.client_addr(id) {
                Ok(a) => a,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            match ctx.target.set_clock(&addr, offset).await {
                Ok(now) => sample(&ctx.clock_samples, (ctx.now_ns)(), id, now),
                Err(e) => errors.push(format!("{id}: {e}")),
            }
        }
        errors
    }

    /// [`SKEW_ISOLATE_LEADER`]: set the leader's clock back, then cut it off. Either step
    /// failing undoes the other and reports the fault not applied.
    async fn skew_isolate_leader(&self, ctx: &NemesisCtx, spec: &FaultSpec) -> Applied {
        let offset = spec.param as i64;
        let mechanism = format!("admin-api+{}-iptables", ctx.runtime.mechanism().as_str());
        let not_applied = |error: String, nodes: Vec<String>| Applied {
            applied: false,
            nodes,
            mechanism: mechanism.clone(),
            error: Some(error),
            detail: json!({ "offset_ms": offset }),
        };
        // The point is the leader's lease: with no leader known there is nothing to test, and a
        // seeded stand-in would only look like the fault happened.
        let Some(leader) = ctx.leader().await else {
            return not_applied("no leader known".into(), vec![]);
        };
        let errors = Self::set_all(ctx, std::slice::from_ref(&leader), Some(offset)).await;
        if !errors.is_empty() {
            let _ = Self::set_all(ctx, std::slice::from_ref(&leader), None).await;
            return not_applied(errors.join("; "), vec![leader]);
        }
        let links = match partition_links("isolate-leader", &ctx.ordered(spec), Some(&leader)) {
            Ok(l) if !l.is_empty() => l,
            Ok(_) => {
                let _ = Self::set_all(ctx, std::slice::from_ref(&leader), None).await;
                return not_applied("a lone node has no one to be cut off from".into(), vec![leader]);
            }
            Err(e) => {
                let _ = Self::set_all(ctx, std::slice::from_ref(&leader), None).await;
                return not_applied(e, vec![leader]);
            }
        };
        *self.isolating.lock().expect("isolating lock") = true;
        let faults = NetFaults { drop: links.clone(), ..NetFaults::default() };
        if let Err(e) = ctx.runtime.apply_net(&faults) {
            let _ = ctx.runtime.heal_net();
            let _ = Self::set_all(ctx, std::slice::from_ref(&leader), None).await;
            return not_applied(e.to_string(), vec![leader]);
        }
        Applied {
            applied: true,
            nodes: vec![leader.clone()],
            mechanism: mechanism.clone(),
            error: None,
            detail: json!({
                "offset_ms": offset,
                "leader": leader,
                "links": links.iter().map(|l| format!("{}->{}", l.from, l.to)).collect::<Vec<_>>(),
            }),
        }
    }

    /// Heals a [`SKEW_ISOLATE_LEADER`] partition if one may be in force.
    fn heal_isolation(&self, ctx: &NemesisCtx) -> Result<(), String> {
        let mut isolating = self.isolating.lock().expect("isolating lock");
        if *isolating {
            ctx.runtime.heal_net().map_err(|e| e.to_string())?;
            *isolating = false;
        }
        Ok(())
    }

    fn stop_strobe(&self) {
        if let Some(h) = self.strobe.lock().expect("strobe lock").take() {
            h.abort();
        }
    }
}

impl Nemesis for ClockNemesis {
    fn family(&self) -> Family {
        Family::Clock
    }

    fn start<'a>(&'a self, ctx: &'a NemesisCtx, spec: &'a FaultSpec) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            if spec.kind == SKEW_ISOLATE_LEADER {
                return self.skew_isolate_leader(ctx, spec).await;
            }
            let nodes = clock_nodes(&ctx.ordered(spec));
            let offset = spec.param as i64;
            let errors = Self::set_all(ctx, &nodes, Some(offset)).await;
            if spec.kind == "strobe" && errors.is_empty() {
                self.stop_strobe();
                let target = ctx.target.clone();
                let samples = ctx.clock_samples.clone();
                let now_ns = ctx.now_ns.clone();
                let addrs: Vec<(String, String)> =
                    nodes.iter().filter_map(|id| ctx.runtime.client_addr(id).ok().map(|a| (id.clone(), a))).collect();
                let handle = tokio::spawn(async move {
                    let mut on = false;
                    loop {
                        tokio::time::sleep(Duration::from_millis(STROBE_PERIOD_MS)).await;
                        let value = if on { Some(offset) } else { Some(0) };
                        for (id, addr) in &addrs {
                            if let Ok(now) = target.set_clock(addr, value).await {
                                sample(&samples, now_ns(), id, now);
                            }
                        }
                        on = !on;
                    }
                });
                *self.strobe.lock().expect("strobe lock") = Some(handle);
            }
            Applied {
                applied: errors.is_empty() && !nodes.is_empty(),
                nodes,
                mechanism: "admin-api".into(),
                error: if errors.is_empty() { None } else { Some(errors.join("; ")) },
                detail: json!({ "offset_ms": offset, "strobe_period_ms": if spec.kind == "strobe" { Some(STROBE_PERIOD_MS) } else { None } }),
            }
        })
    }

    fn stop<'a>(
        &'a self,
        ctx: &'a NemesisCtx,
        _spec: &'a FaultSpec,
        applied: &'a Applied,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.stop_strobe();
            // Partition first, clock second: the skew stays on for the whole partition.
            let mut errors: Vec<String> = self.heal_isolation(ctx).err().into_iter().collect();
            errors.extend(Self::set_all(ctx, &applied.nodes, None).await);
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        })
    }

    fn heal_all<'a>(&'a self, ctx: &'a NemesisCtx) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.stop_strobe();
            let mut errors: Vec<String> = self.heal_isolation(ctx).err().into_iter().collect();
            let ids = ctx.node_ids();
            errors.extend(Self::set_all(ctx, &ids, None).await);
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_subset_is_a_nonempty_prefix() {
        let ordered: Vec<String> = ["n3", "n1", "n2"].iter().map(|s| s.to_string()).collect();
        let nodes = clock_nodes(&ordered);
        assert_eq!(nodes, vec!["n3"]); // 1 + 3 % 3 = 1
        let ordered: Vec<String> = ["n2", "n1", "n3"].iter().map(|s| s.to_string()).collect();
        assert_eq!(clock_nodes(&ordered), vec!["n2", "n1", "n3"]); // 1 + 2 % 3 = 3
        assert!(clock_nodes(&[]).is_empty());
    }
}
