//! Process nemeses: `kill -9` and restart, SIGSTOP and SIGCONT (one node, a minority, the
//! leader, all).

use serde_json::json;

use super::{pick_nodes, Applied, Family, FaultSpec, Nemesis, NemesisCtx};
use crate::client::BoxFuture;

/// kill -9 at start, restart at stop.
pub struct KillNemesis;
/// SIGSTOP at start, SIGCONT at stop.
pub struct PauseNemesis;

fn restart(ctx: &NemesisCtx, id: &str) -> Result<(), String> {
    if ctx.runtime.is_running(id) {
        return Ok(());
    }
    let launch = ctx
        .launch(id)
        .ok_or_else(|| format!("no launch recipe for {id}"))?;
    ctx.runtime
        .start_node(id, launch)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

impl Nemesis for KillNemesis {
    fn family(&self) -> Family {
        Family::Kill
    }
    fn start<'a>(&'a self, ctx: &'a NemesisCtx, spec: &'a FaultSpec) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            let (nodes, note) = pick_nodes(ctx, spec).await;
            let mut errors = Vec::new();
            for id in &nodes {
                if let Err(e) = ctx.runtime.kill_node(id) {
                    errors.push(format!("{id}: {e}"));
                }
            }
            Applied {
                applied: errors.is_empty() && !nodes.is_empty(),
                nodes,
                mechanism: ctx.runtime.process_mechanism(Family::Kill).into(),
                error: if errors.is_empty() {
                    None
                } else {
                    Some(errors.join("; "))
                },
                detail: json!({ "note": note }),
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
            let errors: Vec<String> = applied
                .nodes
                .iter()
                .filter_map(|id| restart(ctx, id).err())
                .collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        })
    }
    fn heal_all<'a>(&'a self, ctx: &'a NemesisCtx) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let errors: Vec<String> = ctx
                .node_ids()
                .iter()
                .filter_map(|id| restart(ctx, id).err())
                .collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        })
    }
}

impl Nemesis for PauseNemesis {
    fn family(&self) -> Family {
        Family::Pause
    }
    fn start<'a>(&'a self, ctx: &'a NemesisCtx, spec: &'a FaultSpec) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            let (nodes, note) = pick_nodes(ctx, spec).await;
            let mut errors = Vec::new();
            for id in &nodes {
                if let Err(e) = ctx.runtime.pause_node(id) {
                    errors.push(format!("{id}: {e}"));
                }
            }
            Applied {
                applied: errors.is_empty() && !nodes.is_empty(),
                nodes,
                mechanism: ctx.runtime.process_mechanism(Family::Pause).into(),
                error: if errors.is_empty() {
                    None
                } else {
                    Some(errors.join("; "))
                },
                detail: json!({ "note": note }),
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
            let errors: Vec<String> = applied
                .nodes
                .iter()
                .filter_map(|id| ctx.runtime.resume_node(id).err().map(|e| e.to_string()))
                .collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        })
    }
    fn heal_all<'a>(&'a self, ctx: &'a NemesisCtx) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let errors: Vec<String> = ctx
                .node_ids()
                .iter()
                .filter_map(|id| ctx.runtime.resume_node(id).err().map(|e| e.to_string()))
                .collect();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        })
    }
}
