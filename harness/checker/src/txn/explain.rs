//! Words for edges and cycles: each edge of a reported cycle says what was observed that
//! forces the order ("T12 read k5 = [1 2] before T9's append of 3 to k5, which T12 did not
//! see"), and the report's text form lists the verdict, the models ruled out and each anomaly.

use super::graph::{Edge, EdgeKind};
use super::parse::{Mop, Txns};
use super::{fmt_list, TxnModel, TxnReport};
use crate::Verdict;

const NIL: i64 = i64::MIN;

fn show(v: i64) -> String {
    if v == NIL {
        "nil".into()
    } else {
        v.to_string()
    }
}

/// What `txn` first read of `key`, as the history shows it.
fn first_read(t: &Txns, txn: u32, key: u32, model: TxnModel) -> String {
    let found = t.txns[txn as usize].mops.iter().find_map(|m| match m {
        Mop::Read { key: k, value: Some(v) } if *k == key => Some(v.clone()),
        _ => None,
    });
    match (model, found) {
        (_, None) => "?".into(),
        (TxnModel::ListAppend, Some(l)) => fmt_list(&l),
        (TxnModel::RwRegister, Some(l)) => l.first().map_or("nil".into(), i64::to_string),
    }
}

/// One edge in words.
pub(crate) fn edge_text(t: &Txns, model: TxnModel, e: &Edge) -> String {
    let name = |i: u32| format!("T{}", t.txns[i as usize].label);
    let (a, b) = (name(e.from), name(e.to));
    let key = t.keys.get(e.key as usize).map_or("", String::as_str);
    match (e.kind, model) {
        (EdgeKind::Ww, TxnModel::ListAppend) => {
            format!(
                "{a} appended {} to {key}, and {b}'s append of {} comes right after it in {key}'s order",
                e.prev, e.value
            )
        }
        (EdgeKind::Ww, TxnModel::RwRegister) if first_read(t, e.to, e.key, model) == show(e.prev) => {
            format!("{b} read {key} = {} (written by {a}) and then wrote {}, the next version", show(e.prev), e.value)
        }
        (EdgeKind::Ww, TxnModel::RwRegister) => {
            format!(
                "{a} read {key} = nil and wrote {}, its first version, so {b}'s write of {} came later",
                e.prev, e.value
            )
        }
        (EdgeKind::Wr, TxnModel::ListAppend) => {
            format!(
                "{b} read {key} = {}, which ends with {a}'s append of {}",
                first_read(t, e.to, e.key, model),
                e.value
            )
        }
        (EdgeKind::Wr, TxnModel::RwRegister) => {
            format!("{b} read {key} = {}, written by {a}", e.value)
        }
        (EdgeKind::Rw, TxnModel::ListAppend) => format!(
            "{a} read {key} = {} before {b}'s append of {} to {key}, which {a} did not see",
            first_read(t, e.from, e.key, model),
            e.value
        ),
        (EdgeKind::Rw, TxnModel::RwRegister) if e.prev == NIL => {
            format!("{a} read {key} = nil, the initial version, so it came before {b}'s write of {}", e.value)
        }
        (EdgeKind::Rw, TxnModel::RwRegister) => {
            format!("{a} read {key} = {}, which {b} also read and then overwrote with {}", e.prev, e.value)
        }
        (EdgeKind::Process, _) => format!("{a} completed before {b} began, on the same process"),
        (EdgeKind::Realtime, _) => format!("{a} completed before {b} was invoked (real time)"),
    }
}

/// The report as text: verdict, models ruled out, then each anomaly with its cycle.
pub(crate) fn report_text(r: &TxnReport) -> String {
    let mut s = format!(
        "{} ({} model, judged as {}): {} transactions ({} ok, {} info, {} fail), {} nemesis events\n",
        r.verdict,
        r.model.name(),
        r.consistency_model,
        r.txns,
        r.txns_ok,
        r.txns_info,
        r.txns_fail,
        r.nemesis_events
    );
    if let Some(reason) = &r.reason {
        s += &format!("{reason}\n");
    }
    let names = |ms: &[super::ConsistencyModel]| ms.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ");
    if !r.not.is_empty() {
        s += &format!("ruled out: {}", names(&r.not));
        if !r.also_not.is_empty() {
            s += &format!(" (and so also {})", names(&r.also_not));
        }
        s.push('\n');
    }
    for (kind, n) in &r.anomaly_counts {
        s += &format!("{kind}: {n}\n");
    }
    for a in &r.anomalies {
        s += &format!("\n{}: {}\n", a.kind.name(), a.description);
        for (i, e) in a.cycle.iter().flatten().enumerate() {
            s += &format!("  {}. T{} -{}-> T{}: {}\n", i + 1, e.from, e.kind.name(), e.to, e.explanation);
        }
    }
    if r.verdict == Verdict::Valid {
        s += &format!("no anomaly rules out {}\n", r.consistency_model);
    }
    s
}
