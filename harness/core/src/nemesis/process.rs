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
    let launch = ctx.launch(id).ok_or_else(|| format!("no launch recipe for {id}"))?;
    ctx.runtime.start_node(id, launch).map(|_| ()).map_err(|e| e.to_string())
}

fn resume(ctx: &NemesisCtx, id: &str) -> Result<(), String> {
    ctx.runtime.resume_node(id).map_err(|e| e.to_string())
}

/// Picks the spec's nodes and does `act` to each; the fault counts as applied only when it
/// reached every picked node (and there was one).
async fn act_on_picked<E: std::fmt::Display>(
    ctx: &NemesisCtx,
    spec: &FaultSpec,
    family: Family,
    act: impl Fn(&str) -> Result<(), E>,
) -> Applied {
    let (nodes, note) = pick_nodes(ctx, spec).await;
    let errors: Vec<String> = nodes.iter().filter_map(|id| act(id).err().map(|e| format!("{id}: {e}"))).collect();
    Applied {
        applied: errors.is_empty() && !nodes.is_empty(),
        nodes,
        mechanism: ctx.runtime.process_mechanism(family).into(),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
        detail: json!({ "note": note }),
    }
}

/// Undoes a fault on each of `nodes` (every one is tried; the errors are joined).
fn undo_each(nodes: &[String], undo: impl Fn(&str) -> Result<(), String>) -> Result<(), String> {
    let errors: Vec<String> = nodes.iter().filter_map(|id| undo(id).err()).collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

impl Nemesis for KillNemesis {
    fn family(&self) -> Family {
        Family::Kill
    }
    fn start<'a>(&'a self, ctx: &'a NemesisCtx, spec: &'a FaultSpec) -> BoxFuture<'a, Applied> {
        Box::pin(act_on_picked(ctx, spec, Family::Kill, |id| ctx.runtime.kill_node(id)))
    }
    fn stop<'a>(
        &'a self,
        ctx: &'a NemesisCtx,
        _spec: &'a FaultSpec,
        applied: &'a Applied,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { undo_each(&applied.nodes, |id| restart(ctx, id)) })
    }
    fn heal_all<'a>(&'a self, ctx: &'a NemesisCtx) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { undo_each(&ctx.node_ids(), |id| restart(ctx, id)) })
    }
}

impl Nemesis for PauseNemesis {
    fn family(&self) -> Family {
        Family::Pause
    }
    fn start<'a>(&'a self, ctx: &'a NemesisCtx, spec: &'a FaultSpec) -> BoxFuture<'a, Applied> {
        Box::pin(act_on_picked(ctx, spec, Family::Pause, |id| ctx.runtime.pause_node(id)))
    }
    fn stop<'a>(
        &'a self,
        ctx: &'a NemesisCtx,
        _spec: &'a FaultSpec,
        applied: &'a Applied,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { undo_each(&applied.nodes, |id| resume(ctx, id)) })
    }
    fn heal_all<'a>(&'a self, ctx: &'a NemesisCtx) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { undo_each(&ctx.node_ids(), |id| resume(ctx, id)) })
    }
}
