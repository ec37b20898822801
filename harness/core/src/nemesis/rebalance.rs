//! The rebalance nemesis: asks a sharded target to move a range or a directory entry between
//! shard groups while clients keep going ([`crate::target::Target::rebalance`]). The move is
//! the fault: `start` returns once the moving keys are frozen, with what moves as the fault's
//! detail (history and results.json); `stop`, at the window's end, waits for the move to finish
//! (`stop_error` says why it failed). A move is not reversed. Targets without shards refuse it with their reason
//! ([`crate::target::Target::fault_support`]), recorded as not applied.

use serde_json::json;

use super::{Applied, Family, FaultSpec, Nemesis, NemesisCtx};
use crate::client::BoxFuture;

/// The only kind: one move.
pub const KIND_MOVE: &str = "move";

pub struct RebalanceNemesis;

impl Nemesis for RebalanceNemesis {
    fn family(&self) -> Family {
        Family::Rebalance
    }

    fn start<'a>(&'a self, ctx: &'a NemesisCtx, spec: &'a FaultSpec) -> BoxFuture<'a, Applied> {
        Box::pin(async move {
            let refused = |why: String| Applied {
                applied: false,
                nodes: vec![],
                mechanism: "admin-api".into(),
                error: Some(why),
                detail: json!(null),
            };
            if let Err(why) = ctx.target.fault_support(Family::Rebalance) {
                return refused(why);
            }
            let pick = spec.param.max(0.0) as u64;
            match ctx.target.rebalance(ctx.runtime.nodes(), pick).await {
                Ok(detail) => Applied {
                    applied: true,
                    nodes: ctx.target.client_nodes(ctx.runtime.nodes()),
                    mechanism: "admin-api".into(),
                    error: None,
                    detail,
                },
                Err(why) => refused(why),
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
            if !applied.applied {
                return Ok(());
            }
            ctx.target.rebalance_done(ctx.runtime.nodes(), &applied.detail).await
        })
    }

    fn heal_all<'a>(&'a self, _ctx: &'a NemesisCtx) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}
