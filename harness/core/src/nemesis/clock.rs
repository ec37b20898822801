//! Clock nemesis, through the node admin API (`POST /admin/clock`): a bump of a seeded offset
//! (1 ms to 10 min, either sign) on a seeded subset of nodes, or a strobe that flips the offset
//! between that value and 0 every [`STROBE_PERIOD_MS`]; reset at stop. Every offset set is kept
//! as a [`ClockSample`] for the clock plot. The system clock is never touched (it is shared by
//! every node on the machine).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::{Applied, ClockSample, Family, FaultSpec, Nemesis, NemesisCtx};
use crate::client::BoxFuture;

/// Most clock samples kept per run (a strobe over a long run must not grow memory unbounded).
pub const SAMPLES_MAX: usize = 100_000;

/// Strobe half-period.
pub const STROBE_PERIOD_MS: u64 = 100;

/// Bumps and strobes node clocks.
#[derive(Default)]
pub struct ClockNemesis {
    strobe: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn sample(ctx_samples: &Arc<Mutex<Vec<ClockSample>>>, now: u64, node: &str, offset_ms: i64) {
    if let Ok(mut s) = ctx_samples.lock() {
        if s.len() < SAMPLES_MAX {
            s.push(ClockSample {
                time_ns: now,
                node: node.into(),
                offset_ms,
            });
        }
    }
}

/// Nodes a clock fault acts on: a seeded subset of 1..=n nodes.
pub fn clock_nodes(ordered: &[String]) -> Vec<String> {
    if ordered.is_empty() {
        return vec![];
    }
    // The permutation's first index seeds the subset size (deterministic per schedule).
    let k = 1 + ordered[0]
        .trim_start_matches('n')
        .parse::<usize>()
        .unwrap_or(1)
        % ordered.len();
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
            let nodes = clock_nodes(&ctx.ordered(spec));
            let offset = spec.param as i64;
            let errors = Self::set_all(ctx, &nodes, Some(offset)).await;
            if spec.kind == "strobe" && errors.is_empty() {
                self.stop_strobe();
                let target = ctx.target.clone();
                let samples = ctx.clock_samples.clone();
                let now_ns = ctx.now_ns.clone();
                let addrs: Vec<(String, String)> = nodes
                    .iter()
                    .filter_map(|id| ctx.runtime.client_addr(id).ok().map(|a| (id.clone(), a)))
                    .collect();
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
                error: if errors.is_empty() {
                    None
                } else {
                    Some(errors.join("; "))
                },
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
            let errors = Self::set_all(ctx, &applied.nodes, None).await;
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
            let ids = ctx.node_ids();
            let errors = Self::set_all(ctx, &ids, None).await;
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
