//! The independent verifier of register witnesses: given a key's operations and a proposed
//! linearization (a total order of some of them), says whether it is one. The zone procedure
//! (`zones`) may call a key valid only when this verifier accepts its witness.
//!
//! Deliberately simple and separate from the code it checks: one pass over the order, its own
//! step function for the register (not `model::RegisterModel`), no shared state with `zones`.
//! It checks exactly the definition of a linearization (Herlihy & Wing 1990) restricted to one
//! register: every completed operation appears exactly once, an indeterminate one at most once,
//! no operation appears after one that was invoked after it returned (real-time order), and the
//! sequence is legal for the sequential register from its initial value.

use crate::model::{RegOp, Span};

/// The value id the register starts with (prepare numbers the initial value 0).
const INITIAL: u32 = 0;

/// `Ok(())` if `order` (op indices) is a linearization of `ops`/`spans`; else what is wrong.
pub(crate) fn verify_register(ops: &[RegOp], spans: &[Span], order: &[u32]) -> Result<(), String> {
    if ops.len() != spans.len() {
        return Err(format!("{} ops but {} spans", ops.len(), spans.len()));
    }
    let mut seen = vec![false; ops.len()];
    let mut state = INITIAL;
    // The latest invocation among the ops placed so far, and which op it was.
    let mut latest_call: Option<(u32, usize)> = None;
    for (pos, &o) in order.iter().enumerate() {
        let o = o as usize;
        if o >= ops.len() {
            return Err(format!("step {pos}: op #{o} does not exist"));
        }
        if std::mem::replace(&mut seen[o], true) {
            return Err(format!("step {pos}: op #{o} appears twice"));
        }
        let span = spans[o];
        if let (Some(ret), Some((call, earlier))) = (span.ret, latest_call) {
            if call > ret {
                return Err(format!("step {pos}: op #{o} returned before op #{earlier}, placed earlier, was invoked"));
            }
        }
        if latest_call.is_none_or(|(c, _)| span.call > c) {
            latest_call = Some((span.call, o));
        }
        state = match ops[o] {
            RegOp::Read(v) if v == state => state,
            RegOp::Write(v) => v,
            RegOp::Cas(from, to) if from == state => to,
            RegOp::CasMismatch(from) if from != state => state,
            other => return Err(format!("step {pos}: op #{o} ({other:?}) cannot take effect on value id {state}")),
        };
    }
    match seen.iter().zip(spans).position(|(&s, sp)| !s && sp.ret.is_some()) {
        Some(missing) => Err(format!("completed op #{missing} is not in the order")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(call: u32, ret: Option<u32>) -> Span {
        Span { call, ret }
    }

    #[test]
    fn accepts_a_linearization_and_rejects_each_kind_of_fault() {
        // write 1 [0,2], read 1 [1,4], cas 1->2 [3,6], mismatch(1) [5,8], info write 3 [7,∞)
        let ops = [RegOp::Write(1), RegOp::Read(1), RegOp::Cas(1, 2), RegOp::CasMismatch(1), RegOp::Write(3)];
        let spans = [sp(0, Some(2)), sp(1, Some(4)), sp(3, Some(6)), sp(5, Some(8)), sp(7, None)];
        assert_eq!(verify_register(&ops, &spans, &[0, 1, 2, 3]), Ok(()));
        assert_eq!(verify_register(&ops, &spans, &[0, 1, 2, 3, 4]), Ok(()));
        // A read of a value not current.
        assert!(verify_register(&ops, &spans, &[1, 0, 2, 3]).is_err());
        // Real time alone: w1 returned (1) before w2 was invoked (2).
        let (w, ws) = ([RegOp::Write(1), RegOp::Write(2)], [sp(0, Some(1)), sp(2, Some(3))]);
        assert_eq!(verify_register(&w, &ws, &[0, 1]), Ok(()));
        assert!(verify_register(&w, &ws, &[1, 0]).unwrap_err().contains("returned before"));
        // A completed op missing, an op twice, an op that does not exist.
        assert!(verify_register(&ops, &spans, &[0, 1, 2]).is_err());
        assert!(verify_register(&ops, &spans, &[0, 1, 1, 2, 3]).is_err());
        assert!(verify_register(&ops, &spans, &[0, 1, 2, 3, 9]).is_err());
        // A mismatch while the value is its `from`.
        assert!(verify_register(&ops, &spans, &[0, 1, 3, 2]).is_err());
    }
}
