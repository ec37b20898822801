//! The counterexample of a non-linearizable key, drawn like Porcupine's visualization: one row
//! per client process on a time axis, each operation a bar from invocation to completion, the
//! operation that could not be linearized in red and the longest partial linearization in blue,
//! numbered in linearization order and joined by a line.
//!
//! The checker says *which* operations (by history index); their times, processes and values
//! come from the history itself, so the picture needs nothing else from the checker.

use std::collections::HashSet;
use std::fmt::Write;

use serde_json::Value;

use faultline_checker::Explanation;

use crate::html::{esc, short_json, tick_step, truncate};
use crate::ops::{Op, Ops, Outcome};

/// What a checker's explanation points at, resolved against the history's operations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counterexample {
    /// The checker whose details held it.
    pub checker: String,
    pub key: Option<String>,
    /// The operation(s) that could not be linearized (positions in [`Ops::ops`]).
    pub failing: Vec<usize>,
    /// The longest partial linearizations, each in linearization order (positions in `ops`).
    pub partials: Vec<Vec<usize>>,
    /// Model state after each operation of `partials[i]`, when the checker gave it.
    pub states: Vec<Vec<Option<String>>>,
    /// Per partial linearization: the operation that blocked it (position in `ops`) and the
    /// model state it ended in, when the checker gave them.
    pub ends: Vec<(Option<usize>, Option<String>)>,
    /// Per partial linearization: operations that could have gone next and why they did not.
    pub candidates: Vec<Vec<(usize, String)>>,
    /// Free text the checker gave (e.g. its one-line reason or a rendered explanation).
    pub text: Option<String>,
    /// History indices the explanation named that the history does not have.
    pub unresolved: Vec<u64>,
}

/// Finds the counterexample in a checker's `details`: a serialized
/// `faultline_checker::LinearizabilityReport` (its `explanation`, else the first key report's)
/// or an `Explanation` itself. `None` when there is none or it has another shape.
///
/// The explanation is read through [`Loose`], a tolerant mirror of `faultline_checker::Explanation`
/// (every field defaulted, unknown fields ignored), so that a results.json written by an older
/// or newer checker still draws; the checker's own text comes from the typed structure when it
/// parses.
pub fn from_details(checker: &str, details: &Value, ops: &Ops) -> Option<Counterexample> {
    let explanation = find_explanation(details, 0)?;
    let loose = serde_json::from_value::<Loose>(explanation.clone()).ok()?;
    if loose.ops.is_empty() {
        return None;
    }
    let mut ce = from_loose(checker, &loose, ops);
    if let Ok(typed) = serde_json::from_value::<Explanation>(explanation.clone()) {
        ce.text = Some(typed.to_text());
    }
    Some(ce)
}

/// The checker's own structure, typed.
pub fn from_explanation(checker: &str, e: &Explanation, ops: &Ops) -> Counterexample {
    let loose = serde_json::to_value(e).ok().and_then(|v| serde_json::from_value::<Loose>(v).ok()).unwrap_or_default();
    let mut ce = from_loose(checker, &loose, ops);
    ce.text = Some(e.to_text());
    ce
}

/// Tolerant mirror of `faultline_checker::Explanation`: only what the picture needs.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct Loose {
    pub key: Option<String>,
    pub ops: Vec<LooseOp>,
    pub failed_op: usize,
    pub longest: Vec<LoosePartial>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct LooseOp {
    /// History index of the invocation.
    pub call_index: u64,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct LoosePartial {
    pub steps: Vec<LooseStep>,
    pub blocked_op: Option<usize>,
    pub final_state: Option<String>,
    pub candidates: Vec<LooseCandidate>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct LooseStep {
    pub op: usize,
    pub state_after: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct LooseCandidate {
    pub op: usize,
    pub why: String,
}

/// Operations are indices into `e.ops`, whose `call_index` is the history index of the
/// invocation.
fn from_loose(checker: &str, e: &Loose, ops: &Ops) -> Counterexample {
    let mut ce = Counterexample { checker: checker.to_string(), key: e.key.clone(), ..Default::default() };
    let resolve = |i: usize, ce: &mut Counterexample| -> Option<usize> {
        let op = e.ops.get(i)?;
        match ops.by_index.get(&op.call_index) {
            Some(&pos) => Some(pos),
            None => {
                if !ce.unresolved.contains(&op.call_index) {
                    ce.unresolved.push(op.call_index);
                }
                None
            }
        }
    };
    if let Some(pos) = resolve(e.failed_op, &mut ce) {
        ce.failing.push(pos);
    }
    for p in &e.longest {
        let mut path = Vec::new();
        let mut states = Vec::new();
        for step in &p.steps {
            if let Some(pos) = resolve(step.op, &mut ce) {
                path.push(pos);
                states.push(step.state_after.as_deref().map(|s| truncate(s, 60)));
            }
        }
        let blocked = p.blocked_op.and_then(|b| resolve(b, &mut ce));
        let candidates = p
            .candidates
            .iter()
            .filter_map(|c| resolve(c.op, &mut ce).map(|pos| (pos, truncate(&c.why, 200))))
            .collect();
        ce.partials.push(path);
        ce.states.push(states);
        ce.ends.push((blocked, p.final_state.as_deref().map(|s| truncate(s, 60))));
        ce.candidates.push(candidates);
    }
    ce
}

/// The explanation object: `details.explanation`, else the first `keys[i].explanation`, else
/// the details themselves when they have an explanation's fields. Bounded depth.
fn find_explanation(v: &Value, depth: usize) -> Option<&Value> {
    if depth > 3 {
        return None;
    }
    let obj = v.as_object()?;
    if let Some(e) = obj.get("explanation").filter(|e| e.is_object()) {
        return Some(e);
    }
    if obj.contains_key("failed_op") && obj.contains_key("longest") && obj.contains_key("ops") {
        return Some(v);
    }
    match obj.get("keys") {
        Some(Value::Array(items)) => items.iter().find_map(|i| find_explanation(i, depth + 1)),
        _ => None,
    }
}

/// One-line description of an op: `f value → result`.
pub fn op_label(ops: &Ops, op: &Op) -> String {
    let inv = short_json(&op.invoke_value, 24);
    let res = match op.outcome {
        Outcome::Ok => short_json(&op.complete_value, 24),
        Outcome::Fail => format!("fail {}", op.error.as_deref().unwrap_or("")),
        Outcome::Info => format!("info {}", op.error.as_deref().unwrap_or("")),
        Outcome::Pending => "pending".to_string(),
    };
    let res = res.trim_end();
    if inv.is_empty() {
        format!("{} → {}", ops.f_name(op), res)
    } else {
        format!("{} {} → {}", ops.f_name(op), inv, res)
    }
}

/// The picture: bars of the counterexample's operations and the operations of the same key
/// that overlap them in time, at most `ops_max` bars.
pub fn svg(ce: &Counterexample, ops: &Ops, ops_max: usize) -> String {
    // Where the search got stuck is what matters: draw the last steps of a long partial
    // linearization (the table beside the picture lists them all).
    let partial = ce.partials.first().cloned().unwrap_or_default();
    let skip = steps_skipped(ce, &partial, ops);
    let highlighted: Vec<usize> = ce.failing.iter().chain(partial[skip..].iter()).copied().collect();
    if highlighted.is_empty() {
        return String::new();
    }
    let t0 = highlighted.iter().map(|&i| ops.ops[i].invoke_ns).min().unwrap_or(0);
    let t1 = highlighted.iter().map(|&i| window_end_ns(&ops.ops[i], ops.end_ns)).max().unwrap_or(t0).max(t0 + 1);
    let (shown, capped) = shown_ops(ce, ops, &highlighted, (t0, t1), ops_max);
    let mut procs: Vec<u64> = shown.iter().map(|&i| ops.ops[i].process).collect();
    procs.sort_unstable();
    procs.dedup();
    let frame = Frame::new(t0, t1);
    let height = frame.top + frame.row_h * procs.len() as f64 + 40.0;
    let width = frame.width;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="ce" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="counterexample">"#
    );
    draw_process_rows(&mut s, &frame, &procs);
    for &i in &shown {
        draw_op_bar(&mut s, &frame, ce, ops, &procs, &partial, i);
    }
    draw_linearization_path(&mut s, &frame, ops, &procs, &partial, skip);
    s.push_str("</svg>");
    if skip > 0 {
        let _ = write!(
            s,
            r#"<p class="note">Drawn: the last {} of the {} steps of the partial linearization, and the operations overlapping them; the table below lists every step.</p>"#,
            partial.len() - skip,
            partial.len()
        );
    }
    if capped {
        let _ = write!(s, r#"<p class="note">Capped: only {} operations drawn.</p>"#, shown.len());
    }
    s
}

/// Where an op ends for the drawn window: an indeterminate op may stay open to the end of the
/// history, so it does not stretch the window (its bar is cut at the edge).
fn window_end_ns(op: &Op, end_ns: u64) -> u64 {
    match op.outcome {
        Outcome::Ok | Outcome::Fail => op.end_ns(end_ns),
        Outcome::Info | Outcome::Pending => op.invoke_ns,
    }
}

/// How many leading steps of `partial` are left out of the picture: all but the last
/// [`STEPS_DRAWN_MAX`], and also leading steps that completed long before the rest began.
fn steps_skipped(ce: &Counterexample, partial: &[usize], ops: &Ops) -> usize {
    let end = ops.end_ns;
    let mut skip = partial.len().saturating_sub(STEPS_DRAWN_MAX);
    // Also leave out leading steps that completed long before the rest began: one early step
    // would otherwise squeeze the interesting end of the picture into a corner.
    while skip + 1 < partial.len() {
        let rest = ce.failing.iter().chain(partial[skip + 1..].iter());
        let rest_t0 = rest.clone().map(|&i| ops.ops[i].invoke_ns).min().unwrap_or(0);
        let rest_t1 = rest.map(|&i| window_end_ns(&ops.ops[i], end)).max().unwrap_or(rest_t0);
        let first_end = window_end_ns(&ops.ops[partial[skip]], end);
        if first_end + (rest_t1 - rest_t0) / 2 < rest_t0 {
            skip += 1;
        } else {
            break;
        }
    }
    skip
}

/// The ops drawn: the highlighted ones, then the ops of the same key that overlap the window
/// `t0..=t1` and did not fail, at most `ops_max` in all (but every highlighted one); and
/// whether that cap left some out.
fn shown_ops(
    ce: &Counterexample,
    ops: &Ops,
    highlighted: &[usize],
    (t0, t1): (u64, u64),
    ops_max: usize,
) -> (Vec<usize>, bool) {
    let end = ops.end_ns;
    let mut shown: Vec<usize> = highlighted.to_vec();
    let mut seen: HashSet<usize> = shown.iter().copied().collect();
    let key = ce.key.as_ref().or_else(|| highlighted.first().and_then(|&i| ops.ops[i].key.as_ref()));
    let mut capped = false;
    for (i, op) in ops.ops.iter().enumerate() {
        if op.invoke_ns > t1 {
            break; // ops are in invocation order
        }
        if seen.contains(&i) || op.key.as_ref() != key || op.end_ns(end) < t0 || op.outcome == Outcome::Fail {
            continue;
        }
        if shown.len() >= ops_max.max(highlighted.len()) {
            capped = true;
            break;
        }
        seen.insert(i);
        shown.push(i);
    }
    (shown, capped)
}

/// The picture's geometry: its size in pixels and the time window it maps onto x.
struct Frame {
    left: f64,
    width: f64,
    row_h: f64,
    top: f64,
    v0: f64,
    v1: f64,
}

impl Frame {
    /// The frame for the window `t0..t1`, padded by 4% of its span on each side.
    fn new(t0: u64, t1: u64) -> Frame {
        let span = (t1 - t0) as f64;
        let pad = span * 0.04;
        Frame { left: 90.0, width: 1100.0, row_h: 34.0, top: 30.0, v0: t0 as f64 - pad, v1: t1 as f64 + pad }
    }

    /// The x of time `t`, clamped to the plot.
    fn x(&self, t: u64) -> f64 {
        (self.left + (t as f64 - self.v0) / (self.v1 - self.v0) * (self.width - self.left - 10.0))
            .clamp(self.left, self.width - 10.0)
    }

    /// An op's bar from invocation to completion, at least 3 pixels wide.
    fn bar(&self, op: &Op, end_ns: u64) -> (f64, f64) {
        (self.x(op.invoke_ns), self.x(op.end_ns(end_ns)).max(self.x(op.invoke_ns) + 3.0))
    }
}

/// The time axis, and per process its label and the line under its row.
fn draw_process_rows(s: &mut String, f: &Frame, procs: &[u64]) {
    let (left, width, row_h, top) = (f.left, f.width, f.row_h, f.top);
    axis(s, f.v0, f.v1, left, width - 10.0, top - 8.0, top + row_h * procs.len() as f64, &|t| f.x(t));
    for (r, p) in procs.iter().enumerate() {
        let y = top + row_h * r as f64;
        let _ = write!(s, r#"<text x="4" y="{:.1}" class="lbl">process {p}</text>"#, y + row_h * 0.6);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#eee"/>"##,
            width - 10.0,
            y + row_h,
            y + row_h
        );
    }
}

/// One op's bar: failing, linearized (numbered) or merely concurrent, with its label.
fn draw_op_bar(s: &mut String, f: &Frame, ce: &Counterexample, ops: &Ops, procs: &[u64], partial: &[usize], i: usize) {
    let (width, row_h) = (f.width, f.row_h);
    let op = &ops.ops[i];
    let r = procs.binary_search(&op.process).unwrap_or(0);
    let y = f.top + row_h * r as f64 + 5.0;
    let (x0, x1) = f.bar(op, ops.end_ns);
    let order = partial.iter().position(|&p| p == i);
    let (class, tag) = if ce.failing.contains(&i) {
        ("fail", "could not be linearized".to_string())
    } else if let Some(n) = order {
        ("lin", format!("linearized #{}", n + 1))
    } else {
        ("other", "concurrent, not in the partial linearization".to_string())
    };
    let label = op_label(ops, op);
    let _ = write!(
        s,
        r#"<g class="op {class}"><title>{} — process {}, history index {}, {} to {} — {}</title><rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" rx="3"/>"#,
        esc(&label),
        op.process,
        op.invoke_index,
        esc(&crate::html::secs(op.invoke_ns)),
        esc(&op.complete_ns.map(crate::html::secs).unwrap_or_else(|| "never".into())),
        esc(&tag),
        x1 - x0,
        row_h - 10.0
    );
    let text = truncate(&label, ((x1 - x0) / 7.0).max(0.0) as usize);
    if x1 - x0 > 30.0 {
        let _ =
            write!(s, r#"<text x="{:.1}" y="{:.1}" class="oplbl">{}</text>"#, x0 + 4.0, y + row_h * 0.5, esc(&text));
    } else if ce.failing.contains(&i) {
        // The failing op is named even when its bar is too narrow for text: beside it.
        let label = truncate(&label, 40);
        let (tx, anchor) = if x1 + 200.0 < width { (x1 + 6.0, "start") } else { (x0 - 6.0, "end") };
        let _ = write!(
            s,
            r#"<text x="{tx:.1}" y="{:.1}" class="oplbl" text-anchor="{anchor}">{}</text>"#,
            y + row_h * 0.5,
            esc(&label)
        );
    }
    if let Some(n) = order {
        let cx = x0.max(x1 - 12.0);
        let _ = write!(
            s,
            r#"<circle cx="{cx:.1}" cy="{:.1}" r="8" class="num"/><text x="{cx:.1}" y="{:.1}" class="numt">{}</text>"#,
            y - 1.0,
            y + 3.0,
            n + 1
        );
    }
    if ce.failing.contains(&i) {
        let cx = x0.max(x1 - 12.0);
        let _ = write!(s, r#"<text x="{cx:.1}" y="{:.1}" class="failt">✗</text>"#, y + 4.0);
    }
    s.push_str("</g>");
}

/// The line joining the drawn steps of the partial linearization, in linearization order.
fn draw_linearization_path(s: &mut String, f: &Frame, ops: &Ops, procs: &[u64], partial: &[usize], skip: usize) {
    let mut ordered: Vec<(usize, (f64, f64))> = partial
        .iter()
        .enumerate()
        .skip(skip)
        .filter_map(|(n, i)| {
            let op = &ops.ops[*i];
            let r = procs.binary_search(&op.process).ok()?;
            let y = f.top + f.row_h * r as f64 + 4.0;
            let (x0, x1) = f.bar(op, ops.end_ns);
            Some((n, (x0.max(x1 - 12.0), y)))
        })
        .collect();
    // Join the linearization order (re-sorted by step number).
    ordered.sort_by_key(|o| o.0);
    if ordered.len() > 1 {
        let pts: Vec<String> = ordered.iter().map(|(_, (a, b))| format!("{a:.1},{b:.1}")).collect();
        let _ = write!(s, r#"<polyline points="{}" class="path"/>"#, pts.join(" "));
    }
}

/// At most this many steps of a partial linearization are drawn (the last ones).
pub const STEPS_DRAWN_MAX: usize = 12;

/// A time axis in seconds along y = `y`, with grid lines down to `y_end`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn axis(
    s: &mut String,
    v0: f64,
    v1: f64,
    left: f64,
    right: f64,
    y: f64,
    y_end: f64,
    x: &dyn Fn(u64) -> f64,
) {
    // Ticks in the unit that suits the span: s, ms or µs.
    let (unit, per) = match v1 - v0 {
        d if d >= 1e9 => ("s", 1e9),
        d if d >= 2e6 => ("ms", 1e6),
        _ => ("µs", 1e3),
    };
    let step = tick_step((v1 - v0) / per, 8.0);
    let _ = write!(s, r##"<line x1="{left}" x2="{right}" y1="{y:.1}" y2="{y:.1}" stroke="#999"/>"##);
    let mut t = (v0.max(0.0) / per / step).ceil() * step;
    let decimals = if step >= 1.0 { 0 } else { (-step.log10()).ceil() as usize };
    let mut n = 0;
    while t * per <= v1 && n < 50 {
        let px = x((t * per) as u64);
        let _ = write!(
            s,
            r##"<line x1="{px:.1}" x2="{px:.1}" y1="{y:.1}" y2="{y_end:.1}" stroke="#ddd"/><text x="{px:.1}" y="{:.1}" class="tick">{t:.decimals$} {unit}</text>"##,
            y - 4.0
        );
        t += step;
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_checker::history::Event;
    use serde_json::json;

    /// The real checker's report for a history that is not linearizable: the write of 1
    /// completes before the read starts, yet the read sees 2.
    fn checked(ops: &Ops, events: &[Event]) -> Value {
        let report = faultline_checker::check_linearizable(
            events,
            faultline_checker::ModelKind::Register,
            &faultline_checker::CheckOptions::default(),
        );
        assert_eq!(report.verdict, faultline_checker::Verdict::Invalid);
        assert!(!ops.ops.is_empty());
        serde_json::to_value(&report).unwrap()
    }

    fn events() -> Vec<Event> {
        [
            json!({"index":0,"time":0,"type":"invoke","process":0,"f":"write","key":"k","value":1}),
            json!({"index":1,"time":10,"type":"ok","process":0,"f":"write","key":"k","value":1}),
            json!({"index":2,"time":20,"type":"invoke","process":1,"f":"read","key":"k","value":null}),
            json!({"index":3,"time":30,"type":"ok","process":1,"f":"read","key":"k","value":2}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect()
    }

    #[test]
    fn draws_the_real_checkers_explanation() {
        let events = events();
        let ops = Ops::from_events(&events);
        let details = checked(&ops, &events);
        let ce = from_details("linearizable", &details, &ops).expect("explanation found");
        assert_eq!(ce.key.as_deref(), Some("k"));
        assert_eq!(ce.failing, vec![1], "the read (op 1) cannot be linearized");
        assert_eq!(ce.partials.first(), Some(&vec![0]), "longest prefix: the write");
        assert!(ce.text.as_deref().unwrap_or("").contains("not linearizable"));
        let svg = svg(&ce, &ops, 50);
        assert!(svg.contains("could not be linearized") && svg.contains("linearized #1"), "{svg}");
        assert!(svg.starts_with("<svg") && svg.contains("</svg>"));
    }

    #[test]
    fn explanation_inside_key_reports_and_unknown_indices() {
        let events = events();
        let ops = Ops::from_events(&events);
        let mut details = checked(&ops, &events);
        details["explanation"] = Value::Null;
        let ce = from_details("lin", &details, &ops).expect("found in keys[]");
        assert_eq!(ce.failing, vec![1]);
        // The same explanation against a history without those indices: named, not drawn.
        let other = Ops::from_events(&events[..2]);
        let ce = from_details("lin", &details, &other).unwrap();
        assert!(ce.failing.is_empty());
        assert_eq!(ce.unresolved, vec![2]);
        assert!(!svg(&ce, &other, 10).contains("could not be linearized"));
    }

    #[test]
    fn explanations_of_other_checker_versions_still_draw() {
        let ops = Ops::from_events(&events());
        // Fields missing (no candidates, no final state) and fields this version does not know.
        let details = json!({"explanation": {
            "key": "k",
            "ops": [{"call_index": 0, "future_field": 1}, {"call_index": 2}],
            "failed_op": 1,
            "longest": [{"steps": [{"op": 0}], "blocked_op": 1, "extra": true}],
            "something_new": [1, 2, 3]
        }});
        let ce = from_details("lin", &details, &ops).expect("tolerant read");
        assert_eq!(ce.failing, vec![1]);
        assert_eq!(ce.partials, vec![vec![0]]);
        assert_eq!(ce.states, vec![vec![None]]);
        assert_eq!(ce.ends, vec![(Some(1), None)]);
        assert!(ce.candidates[0].is_empty());
    }

    #[test]
    fn no_explanation_no_counterexample() {
        let ops = Ops::from_events(&events());
        assert_eq!(from_details("lin", &json!({"verdict": "valid", "explanation": null}), &ops), None);
        assert_eq!(from_details("lin", &json!("text"), &ops), None);
        assert_eq!(from_details("lin", &json!({"explanation": {"op": 3}}), &ops), None);
    }

    #[test]
    fn user_strings_in_labels_are_escaped() {
        let evs: Vec<Event> = [
            json!({"index":0,"time":0,"type":"invoke","process":0,"f":"put","key":"<k>","value":"<script>x</script>"}),
            json!({"index":1,"time":10,"type":"ok","process":0,"f":"put","key":"<k>","value":"<script>x</script>"}),
        ]
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
        let ops = Ops::from_events(&evs);
        let ce = Counterexample { failing: vec![0], ..Default::default() };
        let svg = svg(&ce, &ops, 10);
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"));
    }
}
