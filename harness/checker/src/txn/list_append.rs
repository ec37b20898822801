//! Inference for list-append histories: version orders, the non-cycle anomalies, and the ww,
//! wr and rw edges.
//!
//! Every append writes a value unique to its key (checked: a repeat is bad input), and a read
//! returns the whole list, so the order of a key's versions is the longest list read: every
//! other read must be a prefix of it (else `incompatible-order`, and that key gives no ww or rw
//! edges). Each committed transaction's *external* read of a key (its first read, minus its
//! own earlier appends) must be a prefix of length `i`; then the writer of element `i` wr→ it,
//! it rw→ the writer of element `i + 1`, and consecutive elements' writers are ww-ordered.
//! An append nobody read, by a transaction known to have committed, still follows every read of
//! its key that lacks it: rw edges from the readers with the longest external read (the shorter
//! readers reach those through the edges above). Each edge follows from the observations
//! alone, so any cycle of them is real.

use rustc_hash::FxHashMap;

use super::graph::{Edge, EdgeKind};
use super::parse::{Mop, Status, TxnInputError, Txns};
use super::{fmt_list, Anomaly, AnomalyKind, Inferred};

struct Writer {
    txn: u32,
    /// Not the transaction's last append to this key (reading it is an intermediate read).
    intermediate: bool,
    seen: bool,
}

/// One read: transaction, micro-op, and the length of its external prefix (`None`: not an
/// external read).
struct Read {
    txn: u32,
    mop: u32,
    ext_len: Option<u32>,
}

struct Ctx<'a> {
    t: &'a Txns,
    writers: FxHashMap<(u32, i64), Writer>,
    /// The values appended to each key.
    appended: Vec<Vec<i64>>,
    reads: Vec<Vec<Read>>,
    out: Inferred,
}

impl Ctx<'_> {
    fn list(&self, r: &Read) -> &[i64] {
        match &self.t.txns[r.txn as usize].mops[r.mop as usize] {
            Mop::Read { value: Some(v), .. } => v,
            _ => &[],
        }
    }

    fn anomaly(&mut self, kind: AnomalyKind, txns: &[u32], key: u32, description: String) {
        let labels = txns.iter().map(|&i| self.t.txns[i as usize].label).collect();
        self.out.anomalies.push(Anomaly {
            kind,
            txns: labels,
            key: Some(self.t.keys[key as usize].clone()),
            description,
            cycle: None,
        });
    }

    fn name(&self, txn: u32) -> String {
        format!("T{}", self.t.txns[txn as usize].label)
    }
}

pub(crate) fn infer(t: &Txns, edge_cap: usize) -> Result<Inferred, TxnInputError> {
    let mut cx = Ctx {
        t,
        writers: writers(t)?,
        appended: (0..t.keys.len()).map(|_| Vec::new()).collect(),
        reads: (0..t.keys.len()).map(|_| Vec::new()).collect(),
        out: Inferred::new(t.txns.len(), edge_cap),
    };
    for (&(k, v), _) in cx.writers.iter() {
        cx.appended[k as usize].push(v);
    }
    for i in 0..t.txns.len() {
        if t.txns[i].status == Status::Ok {
            cx.out.included[i] = true;
            internal(&mut cx, i);
        }
    }
    let orders: Vec<Option<(Vec<i64>, bool)>> = (0..t.keys.len() as u32).map(|k| version_order(&mut cx, k)).collect();
    for (k, o) in orders.iter().enumerate() {
        if let Some((order, compatible)) = o {
            key_edges(&mut cx, k as u32, order, *compatible);
        }
    }
    Ok(cx.out)
}

fn writers(t: &Txns) -> Result<FxHashMap<(u32, i64), Writer>, TxnInputError> {
    let mut w: FxHashMap<(u32, i64), Writer> = FxHashMap::default();
    for (i, txn) in t.txns.iter().enumerate() {
        let mut last: FxHashMap<u32, i64> = FxHashMap::default();
        for m in &txn.mops {
            if let Mop::Write { key, value } = *m {
                last.insert(key, value);
            }
        }
        for m in &txn.mops {
            let Mop::Write { key, value } = *m else {
                continue;
            };
            let intermediate = last.get(&key) != Some(&value);
            if let Some(prev) = w.insert((key, value), Writer { txn: i as u32, intermediate, seen: false }) {
                return Err(TxnInputError {
                    position: txn.invoke_pos,
                    index: 0, // filled in by the caller, which has the events
                    expected: format!(
                        "values unique per key (list-append): {value} was appended to {} by T{} already",
                        t.keys[key as usize], t.txns[prev.txn as usize].label
                    ),
                    found: format!("`[\"append\", {:?}, {value}]` again", t.keys[key as usize]),
                });
            }
        }
    }
    Ok(w)
}

/// Reads of one committed transaction: each must end with the transaction's own appends so
/// far (else `internal`), and what it saw of others (the rest) must not change between two
/// reads (else `non-repeatable-read`). The first read gives the external read.
fn internal(cx: &mut Ctx<'_>, i: usize) {
    let mut base: FxHashMap<u32, Vec<i64>> = FxHashMap::default();
    let mut own: FxHashMap<u32, Vec<i64>> = FxHashMap::default();
    let label = cx.t.txns[i].label;
    for (mi, m) in cx.t.txns[i].mops.iter().enumerate() {
        let (key, list) = match m {
            Mop::Write { key, value } => {
                own.entry(*key).or_default().push(*value);
                continue;
            }
            Mop::Read { key, value } => (*key, value.as_deref().unwrap_or(&[])),
        };
        let name = &cx.t.keys[key as usize];
        let mine = own.get(&key).map_or(&[][..], Vec::as_slice);
        let mut ext_len = None;
        if !list.ends_with(mine) {
            let d = format!(
                "T{label} read {name} = {} after appending {} to it, which the read does not end with",
                fmt_list(list),
                fmt_list(mine)
            );
            cx.anomaly(AnomalyKind::Internal, &[i as u32], key, d);
        } else {
            let seen = &list[..list.len() - mine.len()];
            match base.get(&key) {
                None => {
                    base.insert(key, seen.to_vec());
                    ext_len = Some(seen.len() as u32);
                }
                Some(b) if b.as_slice() != seen => {
                    let d = format!("T{label} read {name} = {} and later {} (its own appends aside): two versions in one transaction", fmt_list(b), fmt_list(list));
                    cx.anomaly(AnomalyKind::NonRepeatableRead, &[i as u32], key, d);
                }
                Some(_) => {}
            }
        }
        cx.reads[key as usize].push(Read { txn: i as u32, mop: mi as u32, ext_len });
    }
}

/// The version order of `k` (its longest read) and whether every read is a prefix of it;
/// reports incompatible reads, garbage and duplicates, and marks the values read as seen.
fn version_order(cx: &mut Ctx<'_>, k: u32) -> Option<(Vec<i64>, bool)> {
    let reads = std::mem::take(&mut cx.reads[k as usize]);
    let longest = reads.iter().max_by_key(|r| cx.list(r).len())?;
    let order: Vec<i64> = cx.list(longest).to_vec();
    let longest_txn = longest.txn;
    let mut compatible = true;
    for r in &reads {
        if order.starts_with(cx.list(r)) {
            continue;
        }
        if compatible {
            let d = format!(
                "{} read {} = {} and {} read {} = {}: neither is a prefix of the other",
                cx.name(r.txn),
                cx.t.keys[k as usize],
                fmt_list(cx.list(r)),
                cx.name(longest_txn),
                cx.t.keys[k as usize],
                fmt_list(&order)
            );
            cx.anomaly(AnomalyKind::IncompatibleOrder, &[r.txn, longest_txn], k, d);
        }
        compatible = false;
        check_elements(cx, k, r);
    }
    check_elements(cx, k, longest);
    let seen: Vec<i64> =
        if compatible { order.clone() } else { reads.iter().flat_map(|r| cx.list(r).to_vec()).collect() };
    for v in seen {
        if let Some(w) = cx.writers.get_mut(&(k, v)) {
            w.seen = true;
            if cx.t.txns[w.txn as usize].status == Status::Info {
                cx.out.included[w.txn as usize] = true;
            }
        }
    }
    cx.reads[k as usize] = reads;
    Some((order, compatible))
}

/// Dirty reads, edges and lost updates of `k`, once every key's order is known.
fn key_edges(cx: &mut Ctx<'_>, k: u32, order: &[i64], compatible: bool) {
    let reads = std::mem::take(&mut cx.reads[k as usize]);
    dirty_reads(cx, k, &reads, order);
    if compatible {
        version_edges(cx, k, order);
        read_edges(cx, k, &reads, order);
        lost_updates(cx, k, &reads);
        return;
    }
    for r in reads.iter().filter(|r| r.ext_len.is_some_and(|l| l > 0)) {
        let v = cx.list(r)[r.ext_len.unwrap_or(0) as usize - 1];
        if let Some(w) = node(cx, k, v).filter(|&w| w != r.txn) {
            cx.out.push(Edge::new(w as usize, r.txn as usize, EdgeKind::Wr, k, v, 0));
        }
    }
}

/// Garbage (a value nobody appended) and duplicate elements in one read.
fn check_elements(cx: &mut Ctx<'_>, k: u32, r: &Read) {
    let list = cx.list(r).to_vec();
    let mut seen = rustc_hash::FxHashSet::default();
    for v in &list {
        if !seen.insert(*v) {
            let d = format!(
                "{} read {} = {}, where {v} appears more than once",
                cx.name(r.txn),
                cx.t.keys[k as usize],
                fmt_list(&list)
            );
            cx.anomaly(AnomalyKind::DuplicateElements, &[r.txn], k, d);
            break;
        }
    }
    if let Some(v) = list.iter().find(|v| !cx.writers.contains_key(&(k, **v))) {
        let d = format!(
            "{} read {} = {}, but no transaction appended {v} to {}",
            cx.name(r.txn),
            cx.t.keys[k as usize],
            fmt_list(&list),
            cx.t.keys[k as usize]
        );
        cx.anomaly(AnomalyKind::GarbageRead, &[r.txn], k, d);
    }
}

/// G1a (a read holding a failed transaction's append) and G1b (a read ending in a value its
/// writer later overwrote with another append to the same key).
fn dirty_reads(cx: &mut Ctx<'_>, k: u32, reads: &[Read], order: &[i64]) {
    let aborted = order
        .iter()
        .position(|v| cx.writers.get(&(k, *v)).is_some_and(|w| cx.t.txns[w.txn as usize].status == Status::Fail));
    for r in reads {
        let list = cx.list(r).to_vec();
        let bad = aborted.filter(|&p| p < list.len() && order.starts_with(&list)).or_else(|| {
            list.iter().position(|v| {
                cx.writers.get(&(k, *v)).is_some_and(|w| cx.t.txns[w.txn as usize].status == Status::Fail)
            })
        });
        if let Some(p) = bad {
            let w = cx.writers[&(k, list[p])].txn;
            let d = format!(
                "{} read {} = {}, including {}, appended by {}, which failed",
                cx.name(r.txn),
                cx.t.keys[k as usize],
                fmt_list(&list),
                list[p],
                cx.name(w)
            );
            cx.anomaly(AnomalyKind::G1a, &[r.txn, w], k, d);
        }
        let Some(last) = list.last() else { continue };
        if let Some(w) = cx.writers.get(&(k, *last)).filter(|w| w.intermediate && w.txn != r.txn) {
            let wt = w.txn;
            let d = format!("{} read {} = {}, ending in {last}, which {} appended but followed with another append to {} in the same transaction", cx.name(r.txn), cx.t.keys[k as usize], fmt_list(&list), cx.name(wt), cx.t.keys[k as usize]);
            cx.anomaly(AnomalyKind::G1b, &[r.txn, wt], k, d);
        }
    }
}

fn node(cx: &Ctx<'_>, k: u32, v: i64) -> Option<u32> {
    cx.writers.get(&(k, v)).filter(|w| cx.out.included[w.txn as usize]).map(|w| w.txn)
}

/// ww edges between the writers of consecutive elements of the version order.
fn version_edges(cx: &mut Ctx<'_>, k: u32, order: &[i64]) {
    for pair in order.windows(2) {
        if let (Some(a), Some(b)) = (node(cx, k, pair[0]), node(cx, k, pair[1])) {
            if a != b {
                cx.out.push(Edge::new(a as usize, b as usize, EdgeKind::Ww, k, pair[1], pair[0]));
            }
        }
    }
}

/// wr and rw edges of the external reads, and rw edges to appends nobody read.
fn read_edges(cx: &mut Ctx<'_>, k: u32, reads: &[Read], order: &[i64]) {
    let mut longest_ext = 0u32;
    for r in reads {
        let Some(len) = r.ext_len else { continue };
        longest_ext = longest_ext.max(len);
        if len > 0 {
            let v = order[len as usize - 1];
            if let Some(w) = node(cx, k, v).filter(|&w| w != r.txn) {
                cx.out.push(Edge::new(w as usize, r.txn as usize, EdgeKind::Wr, k, v, 0));
            }
        }
        if let Some(&v) = order.get(len as usize) {
            if let Some(w) = node(cx, k, v).filter(|&w| w != r.txn) {
                cx.out.push(Edge::new(r.txn as usize, w as usize, EdgeKind::Rw, k, v, 0));
            }
        }
    }
    let unseen: Vec<(u32, i64)> = cx.appended[k as usize]
        .iter()
        .filter_map(|&v| cx.writers.get(&(k, v)).map(|w| (w, v)))
        .filter(|(w, _)| !w.seen && cx.out.included[w.txn as usize])
        .map(|(w, v)| (w.txn, v))
        .collect();
    for (w, v) in unseen {
        for r in reads.iter().filter(|r| r.ext_len == Some(longest_ext) && r.txn != w) {
            cx.out.push(Edge::new(r.txn as usize, w as usize, EdgeKind::Rw, k, v, 0));
        }
    }
}

/// Two committed transactions that read the same version of `k` and both appended to it.
fn lost_updates(cx: &mut Ctx<'_>, k: u32, reads: &[Read]) {
    let mut by_version: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    for r in reads {
        let Some(len) = r.ext_len else { continue };
        let appends = cx.t.txns[r.txn as usize].mops.iter().any(|m| matches!(m, Mop::Write { key, .. } if *key == k));
        if appends {
            by_version.entry(len).or_default().push(r.txn);
        }
    }
    let mut groups: Vec<(u32, Vec<u32>)> = by_version.into_iter().filter(|(_, g)| g.len() > 1).collect();
    groups.sort_unstable();
    for (len, g) in groups {
        let r = reads
            .iter()
            .find(|r| r.txn == g[0] && r.ext_len == Some(len))
            .map(|r| cx.list(r)[..len as usize].to_vec())
            .unwrap_or_default();
        let names: Vec<String> = g.iter().map(|&t| cx.name(t)).collect();
        let d = format!(
            "{} all read {} = {} and each appended to it: one of the updates is lost",
            names.join(", "),
            cx.t.keys[k as usize],
            fmt_list(&r)
        );
        cx.anomaly(AnomalyKind::LostUpdate, &g, k, d);
    }
}
