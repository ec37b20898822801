//! report.html's transactional section: the run's place on the transactional consistency map
//! and each anomaly the transactional checker reported, drawn as its cycle.
//!
//! Reads results.json `isolation` (the models ruled out and kept) and the transactional
//! checker's details (a [`faultline_checker::txn::TxnReport`]: the anomalies, each cycle with its edges and their
//! evidence in words). A cycle is drawn as Elle draws one, but inline in the page: transactions
//! as boxes on a circle, edges as arrows labelled `ww`, `wr`, `rw`, `process` or `rt`; under
//! it, each edge in words and each transaction's micro-ops from the history. Written with maud:
//! every string from the run is escaped by the template engine.

use std::f64::consts::PI;

use faultline_checker::txn::{Anomaly, ConsistencyModel, CycleEdge, EdgeKind};
use faultline_results::isolation::transactional_report;
use faultline_results::{Isolation, Results};
use maud::{html, Markup};

use crate::html::{short_json, truncate};
use crate::ops::Ops;

/// Anomalies drawn at most (the checker keeps a few examples of each kind).
const ANOMALIES_DRAWN_MAX: usize = 12;
/// A cycle longer than this is listed in words only: a circle of more boxes is unreadable.
const CYCLE_DRAWN_TXNS_MAX: usize = 12;
/// Characters of a transaction's micro-ops shown.
const TXN_TEXT_CHARS_MAX: usize = 300;

/// The section, or `None` for a run without a transactional checker.
pub fn section(results: &Results, ops: &Ops) -> Option<Markup> {
    let (checker, report) = transactional_report(&results.checkers)?;
    let name = checker.name.clone();
    let isolation = results.isolation.clone().unwrap_or_else(|| Isolation::from_report(&name, &report));
    let drawn: Vec<&Anomaly> = report.anomalies.iter().take(ANOMALIES_DRAWN_MAX).collect();
    Some(html! {
        h2 #isolation { "Transactional isolation" }
        p {
            "Checker " b { (name) } ": " (report.txns) " transactions (" (report.txns_ok) " ok, "
            (report.txns_info) " info, " (report.txns_fail) " fail). Strongest models kept: "
            b #isolation-strongest { (isolation.strongest_text()) } "."
        }
        (map_svg(&isolation))
        @if !isolation.anomalies.is_empty() {
            table.anomalies {
                tr { th { "anomaly" } th { "count" } }
                @for (k, n) in &isolation.anomalies { tr { td { (k) } td.num { (n) } } }
            }
        }
        @if report.anomalies.len() > drawn.len() {
            p.note { "The first " (drawn.len()) " of " (report.anomalies.len()) " example anomalies are shown." }
        }
        @for a in drawn { (anomaly(a, ops)) }
    })
}

/// Where each model sits on the drawn map: (column, row), the map of
/// [`faultline_checker::txn::models`] left (weakest) to right.
fn map_position(m: ConsistencyModel) -> (f64, f64) {
    use ConsistencyModel::*;
    match m {
        ReadUncommitted => (0.0, 1.0),
        ReadCommitted => (1.0, 1.0),
        RepeatableRead => (2.0, 0.0),
        SnapshotIsolation => (2.0, 2.0),
        Serializable => (3.0, 1.0),
        StrongSessionSerializable => (4.0, 1.0),
        StrictSerializable => (5.0, 1.0),
    }
}

const MAP_COL_PX: f64 = 166.0;
const MAP_ROW_PX: f64 = 34.0;
const MAP_BOX_W: f64 = 156.0;
const MAP_BOX_H: f64 = 26.0;

/// The map: a box per model, green kept, red ruled out, grey undecided; the strongest kept
/// outlined; lines from each model to the weaker ones it implies directly.
fn map_svg(i: &Isolation) -> Markup {
    use ConsistencyModel::*;
    let links = [
        (ReadUncommitted, ReadCommitted),
        (ReadCommitted, RepeatableRead),
        (ReadCommitted, SnapshotIsolation),
        (RepeatableRead, Serializable),
        (SnapshotIsolation, Serializable),
        (Serializable, StrongSessionSerializable),
        (StrongSessionSerializable, StrictSerializable),
    ];
    let at = |m| {
        let (c, r) = map_position(m);
        (6.0 + c * MAP_COL_PX, 6.0 + r * MAP_ROW_PX)
    };
    html! {
        svg.txnmap width="1004" height="100" viewBox="0 0 1004 100" role="img" aria-label="transactional consistency map" {
            // The arrowhead every cycle below uses (one definition per page: ids are unique).
            defs {
                marker #txn-arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" fill="#333" {}
                }
            }
            @for (a, b) in links {
                @let ((ax, ay), (bx, by)) = (at(a), at(b));
                line x1=(ax + MAP_BOX_W) y1=(ay + MAP_BOX_H / 2.0) x2=(bx) y2=(by + MAP_BOX_H / 2.0) stroke="#888" {}
            }
            @for m in ConsistencyModel::ALL {
                @let (x, y) = at(m);
                @let (fill, state) = model_state(i, m);
                @let strongest = i.strongest.contains(&m);
                g class={ "model " (state) } {
                    title { (m.name()) ": " (state) }
                    rect x=(x) y=(y) width=(MAP_BOX_W) height=(MAP_BOX_H) rx="4" fill=(fill)
                        stroke=(if strongest { "#000" } else { "#999" }) stroke-width=(if strongest { "2.5" } else { "1" }) {}
                    text x=(x + MAP_BOX_W / 2.0) y=(y + 17.0) text-anchor="middle" font-size="11" { (m.name()) }
                }
            }
        }
        p.note { "Green: kept (no anomaly found rules it out). Red: ruled out. Grey: undecided (a budget ran out). Outlined: the strongest kept. Weaker models are to the left." }
    }
}

fn model_state(i: &Isolation, m: ConsistencyModel) -> (&'static str, &'static str) {
    if i.ruled_out.contains(&m) {
        ("#f6c9c9", "ruled-out")
    } else if i.undecided.contains(&m) {
        ("#ddd", "undecided")
    } else {
        ("#cdebc5", "kept")
    }
}

/// One anomaly: its kind and description, its cycle drawn (when it has one and it is short
/// enough), each edge in words, and each transaction's micro-ops.
fn anomaly(a: &Anomaly, ops: &Ops) -> Markup {
    let kind = a.kind.name();
    html! {
        div.anomaly {
            h3 { (kind) @if let Some(k) = &a.key { " on key " code { (k) } } }
            p { (truncate(&a.description, 1_000)) }
            @if let Some(cycle) = a.cycle.as_ref().filter(|c| !c.is_empty() && c.len() <= CYCLE_DRAWN_TXNS_MAX) {
                (cycle_svg(cycle))
            }
            @if let Some(cycle) = &a.cycle {
                ol.edges { @for e in cycle { li { (edge_label(e.kind)) ": " (truncate(&e.explanation, 600)) } } }
            }
            ul.txns {
                @for t in &a.txns {
                    li { code { "T" (t) } " " (txn_text(*t, ops)) }
                }
            }
        }
    }
}

fn edge_label(k: EdgeKind) -> &'static str {
    match k {
        EdgeKind::Realtime => "rt",
        other => other.name(),
    }
}

/// A transaction's outcome and micro-ops as the history has them (the completion's value when
/// it completed, else the invocation's).
fn txn_text(index: u64, ops: &Ops) -> String {
    let Some(op) = ops.by_index.get(&index).and_then(|&i| ops.ops.get(i)) else {
        return "(not in the history)".into();
    };
    let value = if op.complete_value.is_null() { &op.invoke_value } else { &op.complete_value };
    format!("process {}, {}: {}", op.process, op.outcome.name(), short_json(value, TXN_TEXT_CHARS_MAX))
}

const CYCLE_BOX_W: f64 = 64.0;
const CYCLE_BOX_H: f64 = 24.0;

/// The cycle: its transactions (each edge's `from`, in order) on a circle, an arrow per edge.
fn cycle_svg(cycle: &[CycleEdge]) -> Markup {
    let n = cycle.len();
    let radius = if n <= 2 { 70.0 } else { (46.0 * n as f64 / PI).max(80.0) };
    let size = 2.0 * radius + CYCLE_BOX_W + 40.0;
    let centre = size / 2.0;
    let pos = |i: usize| {
        let angle = -PI / 2.0 + 2.0 * PI * i as f64 / n as f64;
        (centre + radius * angle.cos(), centre + radius * angle.sin())
    };
    html! {
        svg.cycle width=(size as u32) height=(size as u32) viewBox={ "0 0 " (size as u32) " " (size as u32) } role="img" aria-label="dependency cycle" {
            @for (i, e) in cycle.iter().enumerate() { (cycle_edge(pos(i), pos((i + 1) % n), e.kind)) }
            @for (i, e) in cycle.iter().enumerate() {
                @let (x, y) = pos(i);
                g.txn {
                    rect x=(x - CYCLE_BOX_W / 2.0) y=(y - CYCLE_BOX_H / 2.0) width=(CYCLE_BOX_W) height=(CYCLE_BOX_H) rx="3" fill="#eef" stroke="#336" {}
                    text x=(x) y=(y + 4.0) text-anchor="middle" font-size="12" { "T" (e.from) }
                }
            }
        }
    }
}

/// An arrow from box `a` to box `b`, shifted a little to its right so that two edges between
/// the same pair (one each way) do not overlap, ending at the boxes' borders, labelled.
fn cycle_edge(a: (f64, f64), b: (f64, f64), kind: EdgeKind) -> Markup {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len = (dx * dx + dy * dy).sqrt().max(1.0);
    let (ux, uy) = (dx / len, dy / len);
    let (px, py) = (-uy * 6.0, ux * 6.0);
    // Leave the box: the distance along the direction to the box's border.
    let inset = |ux: f64, uy: f64| {
        let tx = if ux.abs() > 1e-9 { (CYCLE_BOX_W / 2.0 + 3.0) / ux.abs() } else { f64::MAX };
        let ty = if uy.abs() > 1e-9 { (CYCLE_BOX_H / 2.0 + 3.0) / uy.abs() } else { f64::MAX };
        tx.min(ty)
    };
    let d = inset(ux, uy).min(len / 2.0 - 2.0).max(0.0);
    let (x1, y1) = (a.0 + ux * d + px, a.1 + uy * d + py);
    let (x2, y2) = (b.0 - ux * d + px, b.1 - uy * d + py);
    let colour = match kind {
        EdgeKind::Rw => "#c0392b",
        EdgeKind::Wr => "#1f6fb2",
        EdgeKind::Ww => "#333",
        EdgeKind::Process | EdgeKind::Realtime => "#8a6d00",
    };
    html! {
        g class={ "edge " (edge_label(kind)) } {
            line x1=(x1) y1=(y1) x2=(x2) y2=(y2) stroke=(colour) stroke-width="1.6" marker-end="url(#txn-arrow)" {}
            text x=((x1 + x2) / 2.0 + px * 2.0) y=((y1 + y2) / 2.0 + py * 2.0 + 4.0) text-anchor="middle" font-size="11" fill=(colour) { (edge_label(kind)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checker::history::{Event, EventType, Process};
    use faultline_checker::txn::{check, TxnModel, TxnOptions};
    use faultline_results::CheckerResult;
    use serde_json::{json, Value};

    fn ev(index: u64, kind: EventType, p: u64, value: Value) -> Event {
        Event {
            index,
            time: index * 1000,
            kind,
            process: Process::Client(p),
            f: "txn".into(),
            key: None,
            value,
            error: None,
            node: Some("n1".into()),
        }
    }

    /// Write skew: each transaction read the other's key before the other's append.
    fn write_skew() -> Vec<Event> {
        use EventType::*;
        vec![
            ev(0, Invoke, 0, json!([["append", "x", 1], ["r", "y", null]])),
            ev(1, Invoke, 1, json!([["append", "y", 2], ["r", "x", null]])),
            ev(2, Ok, 0, json!([["append", "x", 1], ["r", "y", []]])),
            ev(3, Ok, 1, json!([["append", "y", 2], ["r", "x", []]])),
            ev(4, Invoke, 0, json!([["r", "x", null], ["r", "y", null]])),
            ev(5, Ok, 0, json!([["r", "x", [1]], ["r", "y", [2]]])),
        ]
    }

    fn results_of(events: &[Event]) -> Results {
        let r = check(events, TxnModel::ListAppend, ConsistencyModel::StrictSerializable, &TxnOptions::default());
        let c = CheckerResult {
            name: "list-append".into(),
            verdict: r.verdict,
            reason: None,
            details: serde_json::to_value(&r).unwrap(),
        };
        let checkers = vec![c];
        Results { isolation: Isolation::from_checkers(&checkers), checkers, ..Results::default() }
    }

    #[test]
    fn write_skew_is_placed_on_the_map_and_drawn_as_a_two_rw_cycle() {
        let events = write_skew();
        let results = results_of(&events);
        let i = results.isolation.as_ref().expect("isolation");
        assert_eq!(i.strongest, vec![ConsistencyModel::SnapshotIsolation]);
        let page = section(&results, &Ops::from_events(&events)).expect("a section").into_string();
        assert!(page.contains("G2-item"), "{page}");
        assert!(page.contains(r#"<b id="isolation-strongest">snapshot-isolation</b>"#), "{page}");
        // Two rw arrows between T2 and T3 (the completions), one each way.
        assert_eq!(page.matches(r#"<g class="edge rw">"#).count(), 2, "{page}");
        assert!(page.contains(">T2</text>") && page.contains(">T3</text>"), "{page}");
        // The map: serializable red, snapshot isolation green and outlined.
        assert!(page.contains(r#"<g class="model ruled-out"><title>serializable: ruled-out</title>"#), "{page}");
        assert!(page.contains(r#"<g class="model kept"><title>snapshot-isolation: kept</title>"#), "{page}");
        // The transactions' micro-ops come from the history.
        assert!(page.contains("process 0, ok"), "{page}");
    }

    #[test]
    fn a_serial_history_keeps_strict_serializability_and_draws_no_cycle() {
        use EventType::*;
        let events = vec![
            ev(0, Invoke, 0, json!([["append", "x", 1]])),
            ev(1, Ok, 0, json!([["append", "x", 1]])),
            ev(2, Invoke, 1, json!([["r", "x", null]])),
            ev(3, Ok, 1, json!([["r", "x", [1]]])),
        ];
        let results = results_of(&events);
        let page = section(&results, &Ops::from_events(&events)).expect("a section").into_string();
        assert!(page.contains(r#"<b id="isolation-strongest">strict-serializable</b>"#), "{page}");
        assert!(!page.contains("<svg class=\"cycle\""), "{page}");
        assert!(!page.contains("ruled-out"), "{page}");
    }

    #[test]
    fn a_run_without_transactions_has_no_section_and_hostile_keys_are_escaped() {
        assert!(section(&Results::default(), &Ops::default()).is_none());
        let mut events = write_skew();
        for e in &mut events {
            let s = e.value.to_string().replace("\"x\"", "\"<script>x\"");
            e.value = serde_json::from_str(&s).unwrap();
        }
        let results = results_of(&events);
        let page = section(&results, &Ops::from_events(&events)).unwrap().into_string();
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;x"), "{page}");
    }
}
