//! Inference for rw-register histories: the non-cycle anomalies and the edges that follow
//! soundly from the reads.
//!
//! Written values are unique per key (checked: a repeat is bad input) and never `null`, so a
//! read names its writer: writer wr→ reader. A register read shows one version, not the order
//! of versions, so ww and rw edges are inferred only where the observations force them:
//! - a read of `null` (the initial version) precedes every write of the key: reader rw→ each
//!   writer known to have committed;
//! - a transaction that read version `v` of a key and then wrote it installed the version right
//!   after `v` (in any serial order nothing else is written between its read and its write):
//!   writer of `v` ww→ it, and every other reader of `v` rw→ it; after a `null` read it wrote
//!   the first version: it ww→ every other committed writer of the key.
//!
//! Other pairs of writes stay unordered (Elle infers more from real-time or process order on
//! request; this checker does not, so it may miss anomalies but never invents one).

use rustc_hash::FxHashMap;

use super::graph::{Edge, EdgeKind};
use super::parse::{Mop, Status, TxnInputError, Txns};
use super::{Anomaly, AnomalyKind, Inferred};

const NIL: i64 = i64::MIN;

struct Writer {
    txn: u32,
    intermediate: bool,
}

struct Ctx<'a> {
    t: &'a Txns,
    writers: FxHashMap<(u32, i64), Writer>,
    /// Per key: the committed transactions' external reads (txn, value; `NIL` for null).
    ext: Vec<Vec<(u32, i64)>>,
    out: Inferred,
}

fn show(v: i64) -> String {
    if v == NIL {
        "nil".into()
    } else {
        v.to_string()
    }
}

impl Ctx<'_> {
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

    fn key(&self, k: u32) -> &str {
        &self.t.keys[k as usize]
    }
}

pub(crate) fn infer(t: &Txns, edge_cap: usize) -> Result<Inferred, TxnInputError> {
    let mut cx = Ctx {
        t,
        writers: writers(t)?,
        ext: (0..t.keys.len()).map(|_| Vec::new()).collect(),
        out: Inferred::new(t.txns.len(), edge_cap),
    };
    for i in 0..t.txns.len() {
        if t.txns[i].status == Status::Ok {
            cx.out.included[i] = true;
            internal(&mut cx, i);
        }
    }
    for k in 0..t.keys.len() {
        for &(_, v) in &cx.ext[k] {
            if let Some(w) = cx.writers.get(&(k as u32, v)) {
                if t.txns[w.txn as usize].status == Status::Info {
                    cx.out.included[w.txn as usize] = true;
                }
            }
        }
    }
    let mut writes_by_key: Vec<Vec<(u32, i64)>> = (0..t.keys.len()).map(|_| Vec::new()).collect();
    for (&(k, v), w) in &cx.writers {
        if cx.out.included[w.txn as usize] {
            writes_by_key[k as usize].push((w.txn, v));
        }
    }
    for (k, writes) in writes_by_key.iter_mut().enumerate() {
        writes.sort_unstable();
        reads_of_key(&mut cx, k as u32, writes);
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
            if let Some(prev) = w.insert((key, value), Writer { txn: i as u32, intermediate }) {
                return Err(TxnInputError {
                    position: txn.invoke_pos,
                    index: 0, // filled in by the caller, which has the events
                    expected: format!(
                        "values unique per key (rw-register): {value} was written to {} by T{} already",
                        t.keys[key as usize], t.txns[prev.txn as usize].label
                    ),
                    found: format!("`[\"w\", {:?}, {value}]` again", t.keys[key as usize]),
                });
            }
        }
    }
    Ok(w)
}

/// Checks a committed transaction's reads: after its own write of a key a read must return it
/// (else `internal`); before, two reads must agree (else `non-repeatable-read`). Records the
/// first read of each key not preceded by its own write as its external read.
fn internal(cx: &mut Ctx<'_>, i: usize) {
    let mut wrote: FxHashMap<u32, i64> = FxHashMap::default();
    let mut read: FxHashMap<u32, i64> = FxHashMap::default();
    let label = cx.t.txns[i].label;
    for m in &cx.t.txns[i].mops {
        let (key, v) = match m {
            Mop::Write { key, value } => {
                wrote.insert(*key, *value);
                continue;
            }
            Mop::Read { key, value } => (*key, value.as_deref().and_then(|l| l.first().copied()).unwrap_or(NIL)),
        };
        if let Some(&w) = wrote.get(&key) {
            if w != v {
                let d = format!("T{label} read {} = {} after writing {w} to it", cx.key(key), show(v));
                cx.anomaly(AnomalyKind::Internal, &[i as u32], key, d);
            }
            continue;
        }
        match read.get(&key) {
            None => {
                read.insert(key, v);
                cx.ext[key as usize].push((i as u32, v));
            }
            Some(&e) if e != v => {
                let d = format!(
                    "T{label} read {} = {} and later {}: two versions in one transaction",
                    cx.key(key),
                    show(e),
                    show(v)
                );
                cx.anomaly(AnomalyKind::NonRepeatableRead, &[i as u32], key, d);
            }
            Some(_) => {}
        }
    }
}

fn writes_key(cx: &Ctx<'_>, txn: u32, k: u32) -> bool {
    cx.t.txns[txn as usize].mops.iter().any(|m| matches!(m, Mop::Write { key, .. } if *key == k))
}

fn written_by(cx: &Ctx<'_>, txn: u32, k: u32) -> i64 {
    cx.t.txns[txn as usize]
        .mops
        .iter()
        .find_map(|m| match m {
            Mop::Write { key, value } if *key == k => Some(*value),
            _ => None,
        })
        .unwrap_or(NIL)
}

/// Garbage and dirty reads, wr edges, the ww/rw edges the module docs list, lost updates.
fn reads_of_key(cx: &mut Ctx<'_>, k: u32, writes: &[(u32, i64)]) {
    let ext = std::mem::take(&mut cx.ext[k as usize]);
    let mut readers: FxHashMap<i64, Vec<u32>> = FxHashMap::default();
    for &(r, v) in &ext {
        readers.entry(v).or_default().push(r);
        if v != NIL {
            observed(cx, k, r, v);
        }
    }
    for &(r, v) in &ext {
        version_edges(cx, k, r, v, writes, &readers);
    }
    lost_updates(cx, k, &readers);
}

/// What reader `r`'s read of `k` = `v` says: garbage, an aborted or intermediate read, or
/// a wr edge from its writer.
fn observed(cx: &mut Ctx<'_>, k: u32, r: u32, v: i64) {
    let Some(w) = cx.writers.get(&(k, v)) else {
        let d = format!("{} read {} = {v}, but no transaction wrote {v} to {}", cx.name(r), cx.key(k), cx.key(k));
        cx.anomaly(AnomalyKind::GarbageRead, &[r], k, d);
        return;
    };
    let (wt, intermediate) = (w.txn, w.intermediate);
    match cx.t.txns[wt as usize].status {
        Status::Fail => {
            let d = format!("{} read {} = {v}, written by {}, which failed", cx.name(r), cx.key(k), cx.name(wt));
            cx.anomaly(AnomalyKind::G1a, &[r, wt], k, d);
        }
        _ if wt == r => {}
        _ => {
            if intermediate {
                let d = format!(
                    "{} read {} = {v}, which {} wrote and then overwrote in the same transaction",
                    cx.name(r),
                    cx.key(k),
                    cx.name(wt)
                );
                cx.anomaly(AnomalyKind::G1b, &[r, wt], k, d);
            }
            cx.out.push(Edge::new(wt as usize, r as usize, EdgeKind::Wr, k, v, 0));
        }
    }
}

/// The rw edges of a read of the initial `nil`, and the ww and rw edges of a transaction that
/// read `k` = `v` and then wrote `k` (see the module docs).
fn version_edges(cx: &mut Ctx<'_>, k: u32, r: u32, v: i64, writes: &[(u32, i64)], readers: &FxHashMap<i64, Vec<u32>>) {
    if v == NIL {
        for &(w, wv) in writes.iter().filter(|(w, _)| *w != r) {
            cx.out.push(Edge::new(r as usize, w as usize, EdgeKind::Rw, k, wv, NIL));
        }
    }
    if !writes_key(cx, r, k) {
        return;
    }
    let mine = written_by(cx, r, k);
    if v == NIL {
        for &(w, wv) in writes.iter().filter(|(w, _)| *w != r) {
            cx.out.push(Edge::new(r as usize, w as usize, EdgeKind::Ww, k, wv, mine));
        }
    } else if let Some(w) = cx.writers.get(&(k, v)).filter(|w| w.txn != r && cx.out.included[w.txn as usize]) {
        cx.out.push(Edge::new(w.txn as usize, r as usize, EdgeKind::Ww, k, mine, v));
    }
    for &other in readers.get(&v).into_iter().flatten().filter(|&&o| o != r) {
        cx.out.push(Edge::new(other as usize, r as usize, EdgeKind::Rw, k, mine, v));
    }
}

fn lost_updates(cx: &mut Ctx<'_>, k: u32, readers: &FxHashMap<i64, Vec<u32>>) {
    let mut groups: Vec<(i64, Vec<u32>)> = readers
        .iter()
        .map(|(&v, rs)| (v, rs.iter().copied().filter(|&r| writes_key(cx, r, k)).collect::<Vec<u32>>()))
        .filter(|(_, g)| g.len() > 1)
        .collect();
    groups.sort_unstable();
    for (v, g) in groups {
        let names: Vec<String> = g.iter().map(|&t| cx.name(t)).collect();
        let d = format!(
            "{} all read {} = {} and each wrote it: one of the updates is lost",
            names.join(", "),
            cx.key(k),
            show(v)
        );
        cx.anomaly(AnomalyKind::LostUpdate, &g, k, d);
    }
}
