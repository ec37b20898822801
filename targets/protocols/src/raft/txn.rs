//! Transactions of the Raft state machine (`Command::Txn`): what this module owns is checking a
//! transaction's shape before it is proposed ([`validate`]) and applying a committed one
//! ([`apply`]) atomically to the register map and the list map.
//!
//! A transaction is a list of micro-ops (append to a list, write a register, read either),
//! applied in order as one log entry, so every replica applies it at the same point of the log
//! and it is strict serializable with every other command. Reads see the transaction's own
//! earlier writes. A key is either a list or a register: a transaction that would append to a
//! register or write a list changes nothing and is answered [`Reply::TxnFailed`] (definite), as
//! is one that would grow a list past [`LIST_LEN_MAX`].

use super::types::{KeyValue, MicroOp, Reply, TxnValue};
use std::collections::BTreeMap;

/// Micro-ops per transaction at most.
pub const TXN_OPS_MAX: usize = 16;
/// Elements per list at most; an append beyond fails the transaction (definite).
pub const LIST_LEN_MAX: usize = 10_000;

/// Checks what can be checked without the state: 1 to [`TXN_OPS_MAX`] micro-ops, reads carry no
/// value, and no key is both appended to and written in the same transaction.
pub fn validate(ops: &[MicroOp]) -> Result<(), String> {
    if ops.is_empty() || ops.len() > TXN_OPS_MAX {
        return Err(format!("a transaction has 1 to {TXN_OPS_MAX} micro-ops, not {}", ops.len()));
    }
    let mut kinds: BTreeMap<&str, &str> = BTreeMap::new();
    for op in ops {
        let kind = match op {
            MicroOp::Append { .. } => "append",
            MicroOp::Write { .. } => "w",
            MicroOp::Read { value: Some(_), .. } => {
                return Err(format!("the read of {:?} carries a value; send null", op.key()))
            }
            MicroOp::Read { .. } => continue,
        };
        if let Some(prev) = kinds.insert(op.key(), kind) {
            if prev != kind {
                return Err(format!(
                    "key {:?} is both appended to and written: a key is a list or a register",
                    op.key()
                ));
            }
        }
    }
    Ok(())
}

/// The transaction's view: its own writes over the committed state.
struct Overlay<'a> {
    kv: &'a BTreeMap<String, i64>,
    lists: &'a BTreeMap<String, Vec<i64>>,
    regs_new: BTreeMap<String, i64>,
    lists_new: BTreeMap<String, Vec<i64>>,
}

impl Overlay<'_> {
    fn read(&self, key: &str) -> Option<TxnValue> {
        if let Some(l) = self.lists_new.get(key).or_else(|| self.lists.get(key)) {
            return Some(TxnValue::List(l.clone()));
        }
        self.regs_new.get(key).or_else(|| self.kv.get(key)).map(|v| TxnValue::Int(*v))
    }

    fn is_register(&self, key: &str) -> bool {
        self.regs_new.contains_key(key) || self.kv.contains_key(key)
    }

    fn is_list(&self, key: &str) -> bool {
        self.lists_new.contains_key(key) || self.lists.contains_key(key)
    }

    fn step(&mut self, op: &MicroOp, reads_fixed: bool) -> Result<MicroOp, String> {
        Ok(match op {
            MicroOp::Read { .. } if reads_fixed => op.clone(),
            MicroOp::Read { key, .. } => MicroOp::Read { key: key.clone(), value: self.read(key) },
            MicroOp::Append { key, value } => {
                if self.is_register(key) {
                    return Err(format!("key {key:?} holds a register; cannot append to it"));
                }
                if !self.lists_new.contains_key(key) {
                    let base = self.lists.get(key).cloned().unwrap_or_default();
                    self.lists_new.insert(key.clone(), base);
                }
                let list = self.lists_new.get_mut(key).expect("inserted above");
                if list.len() >= LIST_LEN_MAX {
                    return Err(format!("the list at {key:?} holds {LIST_LEN_MAX} elements, the most it may"));
                }
                list.push(*value);
                op.clone()
            }
            MicroOp::Write { key, value } => {
                if self.is_list(key) {
                    return Err(format!("key {key:?} holds a list; cannot write a register there"));
                }
                self.regs_new.insert(key.clone(), *value);
                op.clone()
            }
        })
    }
}

/// The planted bug `txn-read-committed`: the leader evaluates the transaction against its
/// applied state when it proposes it (reads see that state and the transaction's own earlier
/// writes) and returns the micro-ops with the reads filled in; applied with `reads_fixed`, the
/// writes then land on whatever state the log has reached by then, unvalidated. Concurrent
/// transactions thus read state that committed transactions have already changed: read skew
/// (G-single) and lost updates. A transaction that would fail keeps its reads unfilled (it
/// fails again at apply).
pub fn read_at_proposal(
    kv: &BTreeMap<String, i64>,
    lists: &BTreeMap<String, Vec<i64>>,
    ops: &[MicroOp],
) -> Vec<MicroOp> {
    let mut view = Overlay { kv, lists, regs_new: BTreeMap::new(), lists_new: BTreeMap::new() };
    let filled: Result<Vec<MicroOp>, String> = ops.iter().map(|op| view.step(op, false)).collect();
    filled.unwrap_or_else(|_| ops.to_vec())
}

/// The planted bug `txn-snapshot`: snapshot isolation. Reads as [`read_at_proposal`] (the
/// leader's applied state is the snapshot at the transaction's start), plus what each key the
/// transaction writes held in that snapshot; at apply the transaction fails (definite) if any
/// of them changed since: first committer wins. Values are unique and lists only grow, so a
/// change is always seen. Two transactions that each read what the other writes both commit:
/// write skew (G2-item), which snapshot isolation allows and serializability does not.
pub fn snapshot_at_proposal(
    kv: &BTreeMap<String, i64>,
    lists: &BTreeMap<String, Vec<i64>>,
    ops: &[MicroOp],
) -> (Vec<MicroOp>, Vec<KeyValue>) {
    let view = Overlay { kv, lists, regs_new: BTreeMap::new(), lists_new: BTreeMap::new() };
    let mut written: Vec<KeyValue> = Vec::new();
    for op in ops {
        if matches!(op, MicroOp::Append { .. } | MicroOp::Write { .. }) && !written.iter().any(|w| w.key == op.key()) {
            written.push(KeyValue { key: op.key().to_string(), value: view.read(op.key()) });
        }
    }
    (read_at_proposal(kv, lists, ops), written)
}

/// The planted bug `txn-dirty`: reads at proposal time see the leader's applied state plus the
/// writes of every transaction it proposed that has not been answered yet (`pending`, in
/// proposal order), committed or not; first committer wins on the written keys as
/// [`snapshot_at_proposal`] (against the applied state). A pending transaction that then fails
/// its own check was read anyway: aborted reads (G1a).
pub fn dirty_at_proposal(
    kv: &BTreeMap<String, i64>,
    lists: &BTreeMap<String, Vec<i64>>,
    pending: &[&[MicroOp]],
    ops: &[MicroOp],
) -> (Vec<MicroOp>, Vec<KeyValue>) {
    let (_, unchanged) = snapshot_at_proposal(kv, lists, ops);
    let mut view = Overlay { kv, lists, regs_new: BTreeMap::new(), lists_new: BTreeMap::new() };
    for op in pending.iter().flat_map(|p| p.iter()) {
        if !matches!(op, MicroOp::Read { .. }) {
            let _ = view.step(op, false); // a write that clashes is skipped, as apply would fail it
        }
    }
    let filled: Result<Vec<MicroOp>, String> = ops.iter().map(|op| view.step(op, false)).collect();
    (filled.unwrap_or_else(|_| ops.to_vec()), unchanged)
}

/// Applies a committed transaction: all of it, or (on a key-kind clash, a full list, or a key
/// of `unchanged` that changed) none of it. Deterministic, so every replica ends in the same
/// state. With `reads_fixed` (the bugs above) reads keep the values the command carries.
pub fn apply(
    kv: &mut BTreeMap<String, i64>,
    lists: &mut BTreeMap<String, Vec<i64>>,
    ops: &[MicroOp],
    reads_fixed: bool,
    unchanged: &[KeyValue],
) -> Reply {
    let now = Overlay { kv, lists, regs_new: BTreeMap::new(), lists_new: BTreeMap::new() };
    if let Some(c) = unchanged.iter().find(|c| now.read(&c.key) != c.value) {
        let reason = format!(
            "write-write conflict on {:?}: a transaction committed since the snapshot (first committer wins)",
            c.key
        );
        return Reply::TxnFailed { reason };
    }
    let mut view = Overlay { kv, lists, regs_new: BTreeMap::new(), lists_new: BTreeMap::new() };
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        match view.step(op, reads_fixed) {
            Ok(done) => out.push(done),
            Err(reason) => return Reply::TxnFailed { reason },
        }
    }
    let (regs_new, lists_new) = (view.regs_new, view.lists_new);
    kv.extend(regs_new);
    lists.extend(lists_new);
    Reply::Txn { ops: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(k: &str, v: i64) -> MicroOp {
        MicroOp::Append { key: k.into(), value: v }
    }
    fn write(k: &str, v: i64) -> MicroOp {
        MicroOp::Write { key: k.into(), value: v }
    }
    fn read(k: &str) -> MicroOp {
        MicroOp::Read { key: k.into(), value: None }
    }
    fn read_is(k: &str, v: Option<TxnValue>) -> MicroOp {
        MicroOp::Read { key: k.into(), value: v }
    }

    #[test]
    fn reads_see_own_earlier_writes_and_the_committed_state() {
        let (mut kv, mut lists) = (BTreeMap::new(), BTreeMap::new());
        let r =
            apply(&mut kv, &mut lists, &[read("x"), append("x", 1), read("x"), write("y", 5), read("y")], false, &[]);
        let want = vec![
            read_is("x", None),
            append("x", 1),
            read_is("x", Some(TxnValue::List(vec![1]))),
            write("y", 5),
            read_is("y", Some(TxnValue::Int(5))),
        ];
        assert_eq!(r, Reply::Txn { ops: want });
        let r = apply(&mut kv, &mut lists, &[append("x", 2), read("x"), read("y")], false, &[]);
        assert_eq!(
            r,
            Reply::Txn {
                ops: vec![
                    append("x", 2),
                    read_is("x", Some(TxnValue::List(vec![1, 2]))),
                    read_is("y", Some(TxnValue::Int(5)))
                ]
            }
        );
        assert_eq!(lists["x"], vec![1, 2]);
        assert_eq!(kv["y"], 5);
    }

    #[test]
    fn a_kind_clash_fails_the_whole_transaction_and_changes_nothing() {
        let (mut kv, mut lists) = (BTreeMap::new(), BTreeMap::new());
        assert!(matches!(apply(&mut kv, &mut lists, &[append("l", 1), write("r", 1)], false, &[]), Reply::Txn { .. }));
        let before = (kv.clone(), lists.clone());
        let r = apply(&mut kv, &mut lists, &[append("l", 2), write("z", 9), append("r", 3)], false, &[]);
        assert!(matches!(&r, Reply::TxnFailed { reason } if reason.contains("holds a register")), "{r:?}");
        let r = apply(&mut kv, &mut lists, &[write("l", 4)], false, &[]);
        assert!(matches!(&r, Reply::TxnFailed { reason } if reason.contains("holds a list")), "{r:?}");
        assert_eq!((kv, lists), before);
    }

    #[test]
    fn the_read_committed_bug_reads_at_proposal_and_writes_at_apply() {
        let (mut kv, mut lists) = (BTreeMap::new(), BTreeMap::new());
        lists.insert("x".to_string(), vec![1]);
        let txn = [read("x"), append("y", 7)];
        let proposed = read_at_proposal(&kv, &lists, &txn);
        assert_eq!(proposed[0], read_is("x", Some(TxnValue::List(vec![1]))));
        // Another transaction commits in between; the fixed read does not see it.
        apply(&mut kv, &mut lists, &[append("x", 2)], false, &[]);
        let r = apply(&mut kv, &mut lists, &proposed, true, &[]);
        assert_eq!(r, Reply::Txn { ops: vec![read_is("x", Some(TxnValue::List(vec![1]))), append("y", 7)] });
        assert_eq!((lists["x"].clone(), lists["y"].clone()), (vec![1, 2], vec![7]));
        // Without the bug the same command reads at apply.
        let r = apply(&mut kv, &mut lists, &txn, false, &[]);
        assert_eq!(r, Reply::Txn { ops: vec![read_is("x", Some(TxnValue::List(vec![1, 2]))), append("y", 7)] });
    }

    #[test]
    fn the_snapshot_bug_allows_write_skew_and_lets_the_first_committer_win() {
        let (mut kv, mut lists) = (BTreeMap::new(), BTreeMap::new());
        // Write skew: each reads the key the other appends to, from the same snapshot.
        let (t1, c1) = snapshot_at_proposal(&kv, &lists, &[read("x"), append("y", 1)]);
        let (t2, c2) = snapshot_at_proposal(&kv, &lists, &[read("y"), append("x", 2)]);
        assert!(matches!(apply(&mut kv, &mut lists, &t1, true, &c1), Reply::Txn { .. }));
        let r = apply(&mut kv, &mut lists, &t2, true, &c2);
        assert_eq!(r, Reply::Txn { ops: vec![read_is("y", None), append("x", 2)] });
        // Two appends to one key from one snapshot: the second fails and changes nothing.
        let (t3, c3) = snapshot_at_proposal(&kv, &lists, &[append("x", 3), read("x")]);
        let (t4, c4) = snapshot_at_proposal(&kv, &lists, &[append("x", 4)]);
        assert_eq!(c3, vec![KeyValue { key: "x".into(), value: Some(TxnValue::List(vec![2])) }]);
        let r = apply(&mut kv, &mut lists, &t3, true, &c3);
        assert_eq!(r, Reply::Txn { ops: vec![append("x", 3), read_is("x", Some(TxnValue::List(vec![2, 3])))] });
        let r = apply(&mut kv, &mut lists, &t4, true, &c4);
        assert!(matches!(&r, Reply::TxnFailed { reason } if reason.contains("first committer wins")), "{r:?}");
        assert_eq!(lists["x"], vec![2, 3]);
    }

    #[test]
    fn the_dirty_bug_reads_pending_writes_that_may_abort() {
        let (mut kv, mut lists) = (BTreeMap::new(), BTreeMap::new());
        let first = [append("x", 1)];
        let second = [append("x", 2)];
        let (p1, c1) = dirty_at_proposal(&kv, &lists, &[], &first);
        let (p2, c2) = dirty_at_proposal(&kv, &lists, &[&first], &second);
        let (reader, _) = dirty_at_proposal(&kv, &lists, &[&first, &second], &[read("x")]);
        assert_eq!(reader, vec![read_is("x", Some(TxnValue::List(vec![1, 2])))]);
        assert!(matches!(apply(&mut kv, &mut lists, &p1, true, &c1), Reply::Txn { .. }));
        // The second append aborts (first committer wins): the reader saw an aborted write.
        assert!(matches!(apply(&mut kv, &mut lists, &p2, true, &c2), Reply::TxnFailed { .. }));
        assert_eq!(lists["x"], vec![1]);
    }

    #[test]
    fn a_full_list_fails_the_append() {
        let (mut kv, mut lists) = (BTreeMap::new(), BTreeMap::new());
        lists.insert("l".to_string(), vec![0; LIST_LEN_MAX]);
        let r = apply(&mut kv, &mut lists, &[append("l", 1)], false, &[]);
        assert!(matches!(&r, Reply::TxnFailed { reason } if reason.contains("most it may")), "{r:?}");
        assert_eq!(lists["l"].len(), LIST_LEN_MAX);
    }

    #[test]
    fn validate_bounds_the_shape() {
        assert!(validate(&[]).unwrap_err().contains("1 to 16"));
        assert!(validate(&vec![read("k"); TXN_OPS_MAX + 1]).unwrap_err().contains("not 17"));
        assert!(validate(&vec![read("k"); TXN_OPS_MAX]).is_ok());
        assert!(validate(&[append("k", 1), write("k", 2)]).unwrap_err().contains("both appended to and written"));
        assert!(validate(&[read_is("k", Some(TxnValue::Int(1)))]).unwrap_err().contains("send null"));
        assert!(validate(&[append("k", 1), read("k"), append("k", 2), write("j", 1)]).is_ok());
    }
}
