//! report.html: one self-contained page per run (inline CSS and SVG; the PNG plots sit beside
//! it in the run folder and are referenced relatively, so the page opens from disk with no
//! network).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;

use crate::clock::{self, Clocks};
use crate::counterexample::{self, Counterexample};
use crate::html::{duration, esc, fault_rgb, outcome_css, rgb_css, row, secs, short_json, truncate};
use crate::intervals::Faults;
use crate::ops::{Op, Ops, Outcome};
use crate::plots::PlotFile;
use crate::run::RunData;
use crate::stats::{self, WindowQuantiles};
use crate::RenderOptions;
use faultline_results::{CheckerResult, Counts, FaultRecord, Results, Verdict};

/// Everything derived from a run before drawing.
#[derive(Debug)]
pub struct Analysis {
    pub ops: Ops,
    pub faults: Faults,
    pub clocks: Option<Clocks>,
    /// Width of the windows of the quantile and rate plots.
    pub window_ns: u64,
    pub quantiles: Vec<WindowQuantiles>,
    /// Completions per second by outcome (ok, fail, info).
    pub rates: Vec<(Outcome, Vec<(u64, f64)>)>,
    /// The run's warnings plus those found while deriving.
    pub warnings: Vec<String>,
}

impl Analysis {
    pub fn new(run: &RunData) -> Analysis {
        let ops = Ops::from_events(&run.events);
        let faults = Faults::from_events(&run.events, ops.end_ns);
        let clocks = clock::clocks(run.results.as_ref(), &run.events, ops.end_ns);
        let window_ns = stats::window_ns(ops.end_ns, 100);
        let samples: Vec<(u64, f64)> = ops
            .ops
            .iter()
            .filter(|o| o.outcome == Outcome::Ok)
            .filter_map(|o| o.latency_ns().map(|l| (o.invoke_ns, l as f64 / 1e6)))
            .collect();
        let quantiles = stats::windowed_quantiles(&samples, window_ns);
        let rates = [Outcome::Ok, Outcome::Fail, Outcome::Info]
            .into_iter()
            .map(|out| {
                let times: Vec<u64> =
                    ops.ops.iter().filter(|o| o.outcome == out).filter_map(|o| o.complete_ns).collect();
                (out, stats::rates(&times, window_ns, ops.end_ns))
            })
            .collect();
        let mut warnings = run.warnings.clone();
        warnings.extend(ops.warnings.iter().cloned());
        warnings.extend(faults.warnings.iter().cloned());
        Analysis { ops, faults, clocks, window_ns, quantiles, rates, warnings }
    }
}

pub(crate) const CSS: &str = r#"
body{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1180px;padding:16px;color:#222;background:#fff}
h1{font-size:22px;margin:4px 0 12px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:16px 0 6px}
table{border-collapse:collapse;margin:6px 0;font-size:13px} th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f5;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:12px;white-space:pre-wrap;word-break:break-all}
.verdict{display:inline-block;padding:1px 10px;border-radius:10px;color:#fff;font-weight:600;font-size:13px}
.verdict.valid{background:#2e8b3a}.verdict.invalid{background:#c62828}.verdict.unknown{background:#d98c00}.verdict.none,.verdict.other{background:#777}
.note{color:#555;font-size:13px} .warn{color:#8a4b00;font-size:13px}
img.plot{max-width:100%;border:1px solid #eee;margin:6px 0}
svg text{font-family:"DejaVu Sans",Helvetica,Arial,sans-serif}
svg .lbl{font-size:11px;fill:#333} svg .tick{font-size:10px;fill:#555;text-anchor:middle}
svg .oplbl{font-size:10px;fill:#111;dominant-baseline:middle;pointer-events:none}
svg.ce .op rect{stroke:#555;stroke-width:.6} svg.ce .fail rect{fill:#f28b82;stroke:#b71c1c;stroke-width:2}
svg.ce .lin rect{fill:#9ecbff} svg.ce .other rect{fill:#e6e6e6}
svg.ce .num{fill:#1565c0} svg.ce .numt{font-size:10px;fill:#fff;text-anchor:middle;font-weight:600}
svg.ce .failt{font-size:13px;fill:#b71c1c;text-anchor:middle;font-weight:700}
svg.ce .path{fill:none;stroke:#1565c0;stroke-width:1.5;stroke-dasharray:4 3}
svg.txnmap{max-width:100%;height:auto} div.anomaly{border-left:3px solid #c62828;padding-left:10px;margin:10px 0} div.anomaly li{word-break:break-all;font-size:13px}
.legend span{display:inline-block;margin-right:14px;font-size:12px} .sw{display:inline-block;width:12px;height:12px;vertical-align:middle;margin-right:4px;border:1px solid #999}
"#;

/// The page checks itself once loaded: every plot image must have loaded (a missing PNG is a
/// console error), and `<body data-selfcheck>` says the outcome, which the browser test reads.
pub(crate) const SELF_CHECK: &str = r#"<script>
window.addEventListener("load", function () {
  var bad = [];
  for (var i = 0; i < document.images.length; i++) {
    var img = document.images[i];
    if (!img.complete || img.naturalWidth === 0) { bad.push(img.getAttribute("src")); }
  }
  bad.forEach(function (src) { console.error("faultline report: image did not load: " + src); });
  document.body.setAttribute("data-images-loaded", String(document.images.length - bad.length));
  document.body.setAttribute("data-selfcheck", bad.length ? "broken-images" : "ok");
});
</script>"#;

/// Values of a run's summary, looked up in test.json and test.json's options (results.json is
/// read through its type).
fn lookup<'a>(run: &'a RunData, names: &[&str]) -> Option<&'a Value> {
    let sources = [
        run.test.as_ref(),
        run.test.as_ref().and_then(|t| t.get("options")),
        run.test.as_ref().and_then(|t| t.get("opts")),
    ];
    for name in names {
        for src in sources.iter().flatten() {
            if let Some(v) = src.get(*name).filter(|v| !v.is_null()) {
                return Some(v);
            }
        }
    }
    None
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")
        }
        // A small object (the runtime, say) reads better as `key: value` pairs than as JSON.
        Value::Object(m) => m
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| format!("{k}: {}", value_text(v)))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn verdict_badge(v: &str) -> String {
    let class = match v {
        "valid" | "invalid" | "unknown" | "none" => v,
        _ => "other",
    };
    format!(r#"<span class="verdict {class}">{}</span>"#, esc(v))
}

/// The test's name: test.json's, or the run folder's parent folder name.
pub fn test_name(run: &RunData) -> String {
    lookup(run, &["name", "test", "test_name"])
        .map(value_text)
        .or_else(|| run.dir.canonicalize().ok()?.parent()?.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "run".to_string())
}

/// Renders report.html.
pub fn render(run: &RunData, a: &Analysis, plots: &[PlotFile], options: &RenderOptions) -> String {
    let mut s = String::with_capacity(64 * 1024);
    let name = test_name(run);
    let verdict = run.verdict();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — faultline report</title><style>{CSS}</style></head><body>",
        esc(&name)
    );
    let _ =
        write!(s, r#"<h1>faultline report: {} <span id="verdict">{}</span></h1>"#, esc(&name), verdict_badge(&verdict));
    summary(&mut s, run, a);
    let focus = checkers(&mut s, run, a, options);
    if let Some(section) = run.results.as_ref().and_then(|r| crate::isolation::section(r, &a.ops)) {
        s.push_str(&section.into_string());
    }
    faults(&mut s, run, a);
    plots_section(&mut s, plots, a);
    timeline(&mut s, a, options, focus);
    if !a.warnings.is_empty() {
        let _ = write!(s, r#"<h2 id="warnings">Warnings ({})</h2><ul class="warn">"#, a.warnings.len());
        for w in &a.warnings {
            let _ = write!(s, "<li>{}</li>", esc(w));
        }
        s.push_str("</ul>");
    }
    raw_files(&mut s, run);
    let _ = write!(s, r#"<p class="note">Rendered by faultline-reports {}.</p>"#, env!("CARGO_PKG_VERSION"));
    s.push_str(SELF_CHECK);
    s.push_str("</body></html>");
    s.push('\n');
    s
}

fn summary(s: &mut String, run: &RunData, a: &Analysis) {
    summary_table(s, run, a);
    let repro = match run.results.as_ref().filter(|r| !r.repro.is_empty()) {
        Some(r) => Some(r.repro.clone()),
        None => lookup(run, &["repro", "repro_command", "reproduce", "command"]).map(value_text),
    };
    if let Some(repro) = repro {
        let _ = write!(s, r#"<h3>Reproduce</h3><pre id="repro">{}</pre>"#, esc(&repro));
    }
    if !run.history_present {
        s.push_str(r#"<p class="warn">This run folder has no history.jsonl.</p>"#);
    }
    if run.results.is_none() {
        s.push_str(r#"<p class="warn">This run folder has no readable results.json (did the run finish?): no verdicts to show.</p>"#);
    }
    // Counts per f and outcome, from the history.
    if !a.ops.ops.is_empty() {
        ops_by_kind_table(s, a);
    }
    if let Some(r) = &run.results {
        availability_table(s, r);
        op_counts_table(s, r);
    }
}

/// The summary table: verdict, what ran and how (from results.json or test.json), the history's
/// length, operations per outcome, and the run folder.
fn summary_table(s: &mut String, run: &RunData, a: &Analysis) {
    s.push_str(r#"<h2 id="summary">Summary</h2><table class="summary">"#);
    let _ = write!(s, "<tr><th>verdict</th><td>{}</td></tr>", verdict_badge(&run.verdict()));
    for (label, names) in [
        ("target", &["target", "db", "system"][..]),
        ("workload", &["workload"][..]),
        ("nemesis", &["nemesis", "faults_spec", "nemeses"][..]),
        ("runtime", &["runtime"][..]),
        ("nodes", &["nodes", "node_count"][..]),
        ("concurrency", &["concurrency", "clients"][..]),
        ("seed", &["seed"][..]),
        ("bugs", &["bugs", "bug"][..]),
        ("started", &["started", "start_time", "started_at"][..]),
    ] {
        if let Some(text) = typed_summary_value(run, label) {
            row(s, label, &text);
        } else if let Some(v) = lookup(run, names) {
            row(s, label, &truncate(&value_text(v), 300));
        }
    }
    row(s, "history length", &format!("{} events, {}", run.events.len(), secs(a.ops.end_ns)));
    let mut counts: BTreeMap<Outcome, usize> = BTreeMap::new();
    for o in &a.ops.ops {
        *counts.entry(o.outcome).or_default() += 1;
    }
    let parts: Vec<String> =
        Outcome::ALL.iter().filter_map(|o| counts.get(o).map(|c| format!("{c} {}", o.name()))).collect();
    row(s, "operations", &format!("{} ({})", a.ops.ops.len(), parts.join(", ")));
    row(s, "run folder", &run.dir.display().to_string());
    s.push_str("</table>");
}

/// Per f: how many operations ended in each outcome, and the ok operations' latency p50 and p99.
fn ops_by_kind_table(s: &mut String, a: &Analysis) {
    let mut table: BTreeMap<(usize, Outcome), (usize, Vec<f64>)> = BTreeMap::new();
    for o in &a.ops.ops {
        let e = table.entry((o.f, o.outcome)).or_default();
        e.0 += 1;
        if o.outcome == Outcome::Ok {
            if let Some(l) = o.latency_ns() {
                e.1.push(l as f64 / 1e6);
            }
        }
    }
    s.push_str("<h3>Operations by kind</h3><table><tr><th>f</th><th>ok</th><th>fail</th><th>info</th><th>pending</th><th>ok p50 (ms)</th><th>ok p99 (ms)</th></tr>");
    for (fi, f) in a.ops.fs.iter().enumerate() {
        let _ = write!(s, "<tr><td>{}</td>", esc(&truncate(f, 40)));
        for o in Outcome::ALL {
            let _ = write!(s, r#"<td class="num">{}</td>"#, table.get(&(fi, o)).map(|e| e.0).unwrap_or(0));
        }
        let mut lat = table.get(&(fi, Outcome::Ok)).map(|e| e.1.clone()).unwrap_or_default();
        lat.sort_by(f64::total_cmp);
        for q in [0.5, 0.99] {
            let v = stats::quantile(&lat, q).map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into());
            let _ = write!(s, r#"<td class="num">{v}</td>"#);
        }
        s.push_str("</tr>");
    }
    s.push_str("</table>");
}

/// The summary rows results.json knows through its type: the runtime and the seed.
fn typed_summary_value(run: &RunData, label: &str) -> Option<String> {
    let r = run.results.as_ref()?;
    match label {
        "runtime" if !r.runtime.kind.is_empty() => Some(format!(
            "{} ({}), run {}{}",
            r.runtime.kind,
            r.runtime.mechanism,
            r.runtime.run_id,
            if r.runtime.userns { ", in a user namespace" } else { "" }
        )),
        "seed" if !r.repro.is_empty() => Some(r.seed.to_string()),
        _ => None,
    }
}

fn pct(f: Option<f64>) -> String {
    f.map(|f| format!("{:.1} %", f * 100.0)).unwrap_or_else(|| "–".into())
}

fn counts_text(c: &Counts) -> String {
    format!("{} ok, {} fail, {} info", c.ok, c.fail, c.info)
}

/// results.json `availability`, with labels a person reads.
fn availability_table(s: &mut String, r: &Results) {
    let a = &r.availability;
    s.push_str(r#"<h3>Availability</h3><table id="availability">"#);
    row(s, "fault windows", &format!("{} ({:.1} s under faults)", a.fault_windows, a.fault_time_s));
    row(
        s,
        "ok share during faults",
        &format!("{} ({})", pct(a.during_faults_ok_fraction), counts_text(&a.during_faults)),
    );
    row(
        s,
        "ok share outside faults",
        &format!("{} ({})", pct(a.outside_faults_ok_fraction), counts_text(&a.outside_faults)),
    );
    row(s, "ok before the first fault", &a.ok_before_first_fault.to_string());
    row(s, "ok after the last fault", &a.ok_after_last_fault.to_string());
    if a.faults_not_applied > 0 {
        let why = a.first_refusal.as_deref().unwrap_or("no reason recorded");
        row(s, "faults not applied", &format!("{} (first: {})", a.faults_not_applied, truncate(why, 300)));
    }
    s.push_str("</table>");
}

/// results.json `ops`: invocations, completions and completions by operation.
fn op_counts_table(s: &mut String, r: &Results) {
    let o = &r.ops;
    s.push_str(
        r#"<h3>Operation counts</h3><table id="op-counts"><tr><th></th><th>ok</th><th>fail</th><th>info</th></tr>"#,
    );
    let mut line = |label: &str, c: &Counts| {
        let _ = write!(
            s,
            r#"<tr><th>{}</th><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            esc(label),
            c.ok,
            c.fail,
            c.info
        );
    };
    line("all completions", &o.completed);
    for (f, c) in o.by_f.iter().take(TABLE_ROWS_MAX) {
        line(&truncate(f, 40), c);
    }
    s.push_str("</table>");
    let _ = write!(
        s,
        r#"<p class="note">{} invoked, {} never completed (in flight when the run ended).</p>"#,
        o.invoked, o.unfinished
    );
}

/// At most this many rows in a table.
const TABLE_ROWS_MAX: usize = 200;

/// Renders the checkers; returns the first operation that could not be linearized (position in
/// `a.ops.ops`), for the timeline to centre on.
fn checkers(s: &mut String, run: &RunData, a: &Analysis, options: &RenderOptions) -> Option<usize> {
    let mut focus = None;
    s.push_str(r#"<h2 id="checkers">Checkers</h2>"#);
    let entries: &[CheckerResult] = run.results.as_ref().map_or(&[], |r| &r.checkers);
    if entries.is_empty() {
        s.push_str(r#"<p class="note">No checker results in results.json.</p>"#);
        return None;
    }
    s.push_str(r#"<table class="checkers"><tr><th>checker</th><th>verdict</th><th>reason</th></tr>"#);
    for c in entries {
        let _ = write!(
            s,
            r#"<tr class="checker"><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&c.name),
            verdict_badge(&c.verdict.to_string()),
            esc(&truncate(c.reason.as_deref().unwrap_or(""), 2_000))
        );
    }
    s.push_str("</table>");
    for c in entries {
        let (name, details) = (&c.name, &c.details);
        if details.is_null() {
            continue;
        }
        if let Some(ce) = counterexample::from_details(name, details, &a.ops) {
            counterexample_section(s, &ce, a, options);
            focus = focus.or(ce.failing.first().copied());
        }
        keys_not_valid(s, name, details);
        let text = serde_json::to_string_pretty(details).unwrap_or_default();
        let _ = write!(
            s,
            "<details><summary>{} details (JSON{})</summary><pre>{}</pre></details>",
            esc(name),
            if text.chars().count() > 50_000 { ", cut" } else { "" },
            esc(&truncate(&text, 50_000))
        );
    }
    focus
}

fn counterexample_section(s: &mut String, ce: &Counterexample, a: &Analysis, options: &RenderOptions) {
    let key = ce.key.as_deref().map(|k| format!(" on key {k}")).unwrap_or_default();
    let _ = write!(s, r#"<h3 id="counterexample">Counterexample of {}{}</h3>"#, esc(&ce.checker), esc(&key));
    if let Some(t) = &ce.text {
        let _ = write!(s, "<pre>{}</pre>", esc(&truncate(t, 5_000)));
    }
    s.push_str(r#"<p class="note">Each bar is an operation from invocation to completion, one row per process. <b style="color:#b71c1c">Red</b>: the operation that could not be linearized. <b style="color:#1565c0">Blue, numbered</b>: the longest partial linearization, in order (dashed line). Grey: other operations on the key overlapping them. Hover a bar for details.</p>"#);
    s.push_str(&counterexample::svg(ce, &a.ops, options.counterexample_ops_max));
    for (pi, path) in ce.partials.iter().enumerate().take(3) {
        let _ = write!(s, "<h3>Partial linearization {} ({} operations)</h3><table><tr><th>#</th><th>index</th><th>process</th><th>operation</th><th>invoked</th><th>completed</th><th>state after</th></tr>", pi + 1, path.len());
        for (n, &i) in path.iter().enumerate().take(200) {
            let op = &a.ops.ops[i];
            let state = ce.states.get(pi).and_then(|st| st.get(n)).cloned().flatten().unwrap_or_default();
            let _ = write!(
                s,
                r#"<tr><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td></tr>"#,
                n + 1,
                op.invoke_index,
                op.process,
                esc(&counterexample::op_label(&a.ops, op)),
                esc(&secs(op.invoke_ns)),
                esc(&op.complete_ns.map(secs).unwrap_or_else(|| "never".into())),
                esc(&state)
            );
        }
        s.push_str("</table>");
        let (blocked, final_state) = ce.ends.get(pi).cloned().unwrap_or((None, None));
        if let Some(state) = final_state {
            let blocked = blocked
                .map(|b| format!(" before {} returned", counterexample::op_label(&a.ops, &a.ops.ops[b])))
                .unwrap_or_default();
            let _ = write!(
                s,
                r#"<p class="note">Then, in state <code>{}</code>, no pending operation could take effect{}.</p>"#,
                esc(&state),
                esc(&blocked)
            );
        }
        if let Some(cands) = ce.candidates.get(pi).filter(|c| !c.is_empty()) {
            s.push_str("<table><tr><th>could have gone next</th><th>process</th><th>why not</th></tr>");
            for (i, why) in cands.iter().take(20) {
                let op = &a.ops.ops[*i];
                let _ = write!(
                    s,
                    r#"<tr><td>{}</td><td class="num">{}</td><td>{}</td></tr>"#,
                    esc(&counterexample::op_label(&a.ops, op)),
                    op.process,
                    esc(why)
                );
            }
            s.push_str("</table>");
        }
    }
    for &i in &ce.failing {
        let op = &a.ops.ops[i];
        let _ = write!(
            s,
            r#"<p>Could not be linearized: history index {}, process {}, <code>{}</code>, invoked at {}, completed at {}.</p>"#,
            op.invoke_index,
            op.process,
            esc(&counterexample::op_label(&a.ops, op)),
            esc(&secs(op.invoke_ns)),
            esc(&op.complete_ns.map(secs).unwrap_or_else(|| "never".into()))
        );
    }
    if !ce.unresolved.is_empty() {
        let idx: Vec<String> = ce.unresolved.iter().take(20).map(u64::to_string).collect();
        let _ = write!(
            s,
            r#"<p class="warn">The explanation names history indices not found in history.jsonl: {}.</p>"#,
            esc(&idx.join(", "))
        );
    }
}

/// A linearizability checker's keys that are not valid (`details.not_valid_keys`, with
/// `details.keys` the number of keys checked).
fn keys_not_valid(s: &mut String, name: &str, details: &Value) {
    #[derive(serde::Deserialize)]
    struct KeyRow {
        key: Option<String>,
        verdict: Verdict,
        #[serde(default)]
        reason: Option<String>,
        #[serde(default)]
        ops: usize,
    }
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct KeyDetails {
        keys: Option<usize>,
        not_valid_keys: Vec<KeyRow>,
    }
    let Ok(d) = serde_json::from_value::<KeyDetails>(details.clone()) else { return };
    if d.not_valid_keys.is_empty() {
        return;
    }
    let of = d.keys.map(|n| format!(" of {n}")).unwrap_or_default();
    let _ = write!(
        s,
        "<h3>{}: keys not valid ({}{of})</h3><table><tr><th>key</th><th>verdict</th><th>reason</th><th>ops</th></tr>",
        esc(name),
        d.not_valid_keys.len()
    );
    for k in d.not_valid_keys.iter().take(50) {
        let _ = write!(
            s,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td></tr>"#,
            esc(k.key.as_deref().unwrap_or("(no key)")),
            verdict_badge(&k.verdict.to_string()),
            esc(&truncate(k.reason.as_deref().unwrap_or(""), 500)),
            k.ops
        );
    }
    s.push_str("</table>");
}

/// results.json `faults`: each scheduled window as the run applied it.
fn faults_applied_table(s: &mut String, faults: &[FaultRecord]) {
    s.push_str(r#"<h3>Faults as applied</h3><table id="faults-applied"><tr><th>fault</th><th>nodes</th><th>start</th><th>end</th><th>applied</th><th>how</th><th>detail</th></tr>"#);
    for f in faults.iter().take(TABLE_ROWS_MAX) {
        let applied = match (&f.error, f.applied) {
            (_, true) => "yes".to_string(),
            (Some(e), false) => format!("no: {e}"),
            (None, false) => "no".to_string(),
        };
        let end = match (f.end_ns, &f.stop_error) {
            (Some(e), None) => secs(e),
            (Some(e), Some(err)) => format!("{} (stop failed: {err})", secs(e)),
            (None, _) => "still on at the end".to_string(),
        };
        let _ = write!(
            s,
            r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&format!("{}:{}", f.fault, f.kind)),
            esc(&f.nodes.join(" ")),
            esc(&secs(f.start_ns)),
            esc(&end),
            esc(&truncate(&applied, 300)),
            esc(&f.mechanism),
            esc(&short_json(&f.detail, 200))
        );
    }
    s.push_str("</table>");
    if faults.len() > TABLE_ROWS_MAX {
        let _ = write!(s, r#"<p class="note">Showing {TABLE_ROWS_MAX} of {} faults.</p>"#, faults.len());
    }
}

fn faults(s: &mut String, run: &RunData, a: &Analysis) {
    s.push_str(r#"<h2 id="faults">Faults</h2>"#);
    if a.faults.intervals.is_empty() && a.faults.instants.is_empty() {
        s.push_str(r#"<p class="note">No nemesis events in the history.</p>"#);
    } else {
        s.push_str("<p class=\"note\">From the history's nemesis events (a stop-X heals every open X; an X never stopped lasts to the end).</p><table><tr><th>fault</th><th>start</th><th>end</th><th>duration</th><th>what</th></tr>");
        for iv in a.faults.intervals.iter().take(TABLE_ROWS_MAX) {
            let _ = write!(
                s,
                r#"<tr><td><span class="sw" style="background:{}"></span>{}</td><td class="num">{}</td><td class="num">{}{}</td><td class="num">{}</td><td>{}</td></tr>"#,
                rgb_css(fault_rgb(&iv.kind)),
                esc(&iv.kind),
                esc(&secs(iv.start_ns)),
                esc(&secs(iv.end_ns)),
                if iv.open_ended { " (never stopped)" } else { "" },
                esc(&duration(iv.end_ns - iv.start_ns)),
                esc(&iv.description)
            );
        }
        for ev in a.faults.instants.iter().take(TABLE_ROWS_MAX) {
            let _ = write!(
                s,
                r#"<tr><td>{}</td><td class="num">{}</td><td></td><td></td><td>{}</td></tr>"#,
                esc(&ev.f),
                esc(&secs(ev.time_ns)),
                esc(&ev.description)
            );
        }
        s.push_str("</table>");
        if a.faults.intervals.len() > TABLE_ROWS_MAX || a.faults.instants.len() > TABLE_ROWS_MAX {
            let _ = write!(
                s,
                r#"<p class="note">Showing at most {TABLE_ROWS_MAX} intervals and {TABLE_ROWS_MAX} instants.</p>"#
            );
        }
    }
    if let Some(r) = run.results.as_ref().filter(|r| !r.faults.is_empty()) {
        faults_applied_table(s, &r.faults);
    }
}

fn plots_section(s: &mut String, plots: &[PlotFile], a: &Analysis) {
    s.push_str(r#"<h2 id="plots">Plots</h2>"#);
    if plots.is_empty() {
        s.push_str(r#"<p class="note">No completed operations: nothing to plot.</p>"#);
    }
    for p in plots {
        let _ = write!(
            s,
            r#"<figure><img class="plot" src="{}" alt="{}" width="1100" height="480"><figcaption class="note">{}</figcaption></figure>"#,
            esc(p.name),
            esc(p.name),
            esc(&p.caption)
        );
    }
    if a.clocks.is_none() {
        s.push_str(r#"<p class="note">Clocks were not skewed in this run: no clock-skew.png.</p>"#);
    }
}

/// The timeline; when capped, the operations shown surround `focus` (the operation that could
/// not be linearized) if there is one, else they are the first ones.
fn timeline(s: &mut String, a: &Analysis, options: &RenderOptions, focus: Option<usize>) {
    s.push_str(r#"<h2 id="timeline">Timeline</h2>"#);
    let total = a.ops.ops.len();
    if total == 0 {
        s.push_str(r#"<p class="note">No operations.</p>"#);
        return;
    }
    let n = options.timeline_ops_max.clamp(1, total);
    let lo = match focus {
        Some(f) if n < total => f.saturating_sub(n / 2).min(total - n),
        _ => 0,
    };
    let ops = &a.ops.ops[lo..lo + n];
    let end = a.ops.end_ns;
    let t0 = if lo == 0 { 0 } else { ops[0].invoke_ns };
    // Capped: the window ends at the last completion shown (an op never completed does not
    // stretch it; its bar is cut at the edge).
    let t1 =
        if n < total { ops.iter().map(|o| o.complete_ns.unwrap_or(o.invoke_ns)).max().unwrap_or(end) } else { end }
            .max(t0 + 1);
    if n < total {
        let around = if lo > 0 || focus.is_some() {
            ", around the operation that could not be linearized (outlined in red)"
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<p class="note" id="timeline-capped">Capped: showing operations {} to {} of {total} ({} to {}){around}; the plots above cover the whole run.</p>"#,
            lo + 1,
            lo + n,
            esc(&secs(t0)),
            esc(&secs(t1))
        );
    }
    let mut procs: Vec<u64> = ops.iter().map(|o| o.process).collect();
    procs.sort_unstable();
    procs.dedup();
    let f = TimelineFrame { left: 80.0, width: 1100.0, row_h: 14.0, top: 22.0, t0, t1 };
    let (width, row_h, top) = (f.width, f.row_h, f.top);
    let height = top + row_h * procs.len() as f64 + 10.0;
    timeline_legend(s, a);
    let _ = write!(
        s,
        r#"<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="timeline">"#
    );
    draw_fault_stripes(s, &f, a, procs.len());
    counterexample::axis(
        s,
        t0 as f64,
        t1 as f64,
        f.left,
        width - 10.0,
        top - 4.0,
        top + row_h * procs.len() as f64,
        &|t| f.x(t),
    );
    for (r, p) in procs.iter().enumerate() {
        let _ =
            write!(s, r#"<text x="4" y="{:.1}" class="lbl">process {p}</text>"#, top + row_h * r as f64 + row_h * 0.75);
    }
    for (k, op) in ops.iter().enumerate() {
        draw_timeline_op(s, &f, a, &procs, op, focus == Some(lo + k));
    }
    s.push_str("</svg>");
}

/// The timeline's geometry: its size in pixels and the time window `t0..t1` it maps onto x.
struct TimelineFrame {
    left: f64,
    width: f64,
    row_h: f64,
    top: f64,
    t0: u64,
    t1: u64,
}

impl TimelineFrame {
    /// The x of time `t`, clamped to the plot.
    fn x(&self, t: u64) -> f64 {
        let (left, width, t0, t1) = (self.left, self.width, self.t0, self.t1);
        (left + (t as f64 - t0 as f64) / (t1 - t0) as f64 * (width - left - 10.0)).clamp(left, width - 10.0)
    }
}

/// The timeline's legend: the colour of each outcome and of each kind of fault.
fn timeline_legend(s: &mut String, a: &Analysis) {
    let _ = write!(
        s,
        r#"<div class="legend">{}{}</div>"#,
        [Outcome::Ok, Outcome::Fail, Outcome::Info, Outcome::Pending]
            .iter()
            .map(|o| format!(r#"<span><i class="sw" style="background:{}"></i>{}</span>"#, outcome_css(*o), o.name()))
            .collect::<String>(),
        a.faults
            .kinds()
            .iter()
            .map(|k| format!(
                r#"<span><i class="sw" style="background:{};opacity:.35"></i>fault: {}</span>"#,
                rgb_css(fault_rgb(k)),
                esc(k)
            ))
            .collect::<String>()
    );
}

/// A shaded stripe, across all `rows`, for each fault interval that overlaps the window.
fn draw_fault_stripes(s: &mut String, f: &TimelineFrame, a: &Analysis, rows: usize) {
    let (top, row_h) = (f.top, f.row_h);
    for iv in &a.faults.intervals {
        if iv.start_ns > f.t1 || iv.end_ns < f.t0 {
            continue;
        }
        let (x0, x1) = (f.x(iv.start_ns), f.x(iv.end_ns));
        let _ = write!(
            s,
            r#"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.18"><title>{} {} to {} {}</title></rect>"#,
            (x1 - x0).max(1.0),
            row_h * rows as f64,
            rgb_css(fault_rgb(&iv.kind)),
            esc(&iv.kind),
            esc(&secs(iv.start_ns)),
            esc(&secs(iv.end_ns)),
            esc(&iv.description)
        );
    }
}

/// One operation's bar in its process's row, coloured by outcome, outlined in red when
/// `focused`, its details in the tooltip.
fn draw_timeline_op(s: &mut String, f: &TimelineFrame, a: &Analysis, procs: &[u64], op: &Op, focused: bool) {
    let row_h = f.row_h;
    let r = procs.binary_search(&op.process).unwrap_or(0);
    let y = f.top + row_h * r as f64 + 1.5;
    let (x0, x1) = (f.x(op.invoke_ns), f.x(op.end_ns(a.ops.end_ns)));
    let outline = if focused { r##" stroke="#b71c1c" stroke-width="2""## } else { "" };
    let lat = op.latency_ns().map(duration).unwrap_or_else(|| "never completed".into());
    let key = op.key.as_deref().map(|k| format!(" key {k}")).unwrap_or_default();
    let err = op.error.as_deref().map(|e| format!(" error {e}")).unwrap_or_default();
    let _ = write!(
        s,
        r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"{outline}><title>process {} index {}{}: {} ({}, {}, at {}){}</title></rect>"#,
        (x1 - x0).max(1.0),
        row_h - 3.0,
        outcome_css(op.outcome),
        op.process,
        op.invoke_index,
        esc(&truncate(&key, 60)),
        esc(&counterexample::op_label(&a.ops, op)),
        op.outcome.name(),
        esc(&lat),
        esc(&secs(op.invoke_ns)),
        esc(&truncate(&err, 200))
    );
}

fn raw_files(s: &mut String, run: &RunData) {
    s.push_str(r#"<h2 id="files">Files</h2><p class="note">In the run folder: <a href="history.jsonl">history.jsonl</a>, <a href="test.json">test.json</a>, <a href="results.json">results.json</a>.</p>"#);
    if let Some(t) = &run.test {
        let text = serde_json::to_string_pretty(t).unwrap_or_default();
        let _ =
            write!(s, "<details><summary>test.json</summary><pre>{}</pre></details>", esc(&truncate(&text, 50_000)));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn summary_values_read_as_text_not_json() {
        let v = json!({"kind": "local", "mechanism": "netns", "userns": false, "gone": null});
        assert_eq!(value_text(&v), "kind: local, mechanism: netns, userns: false");
        assert_eq!(value_text(&json!(["a", "b"])), "a b");
        assert_eq!(value_text(&json!({"nested": {"x": 1}})), "nested: x: 1");
    }

    use super::*;
    use serde_json::json;

    fn run_with(results: Value, test: Value, history: &str) -> RunData {
        let (events, warnings) = crate::run::parse_history(history, std::path::Path::new("history.jsonl"));
        RunData {
            dir: std::path::PathBuf::from("/nonexistent/t/1"),
            events,
            history_present: true,
            test: Some(test),
            results: Some(serde_json::from_value(results).expect("a results.json")),
            warnings,
        }
    }

    #[test]
    fn every_user_string_is_escaped() {
        let evil = "<img src=x onerror=alert(1)>";
        let history = format!(
            "{}\n{}\n{}\n",
            json!({"index":0,"time":0,"type":"invoke","process":0,"f":evil,"key":evil,"value":evil}),
            json!({"index":1,"time":5,"type":"fail","process":0,"f":evil,"key":evil,"value":evil,"error":evil}),
            json!({"index":2,"time":6,"type":"info","process":"nemesis","f":format!("start-{evil}"),"value":evil}),
        );
        // The verdicts are an enum (no string of a file can reach the page there); every free
        // string of results.json is a user string.
        let results = json!({"verdict": "invalid", "checkers": [{"name": evil, "verdict": "invalid", "reason": evil, "details": {"explanation": {"op": 0, "longest": [], "text": evil}}}],
            "availability": {"first_refusal": evil, "faults_not_applied": 1},
            "faults": [{"fault": evil, "kind": evil, "nodes": [evil], "start_ns": 0, "end_ns": null, "applied": false, "mechanism": evil,
                        "error": evil, "stop_error": evil, "detail": {evil: evil}}],
            "runtime": {"kind": evil, "mechanism": evil, "run_id": evil}, "repro": evil});
        let run = run_with(results, json!({"name": evil, "target": evil}), &history);
        let a = Analysis::new(&run);
        let html = render(&run, &a, &[], &RenderOptions::default());
        assert!(!html.contains("<img src=x"), "unescaped user string in page");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        // The only <img> tags would be plots (none here).
        assert!(!html.contains("<img"));
    }

    #[test]
    fn shows_checker_verdicts_and_reasons() {
        let results = json!({"verdict": "invalid", "checkers": [
            {"name": "linearizable", "verdict": "invalid", "reason": "key \"a\": no linearization"},
            {"name": "set-full", "verdict": "valid"}
        ]});
        let run = run_with(results, json!({"seed": 42, "repro": ["faultline", "run", "--seed", "42"]}), "");
        let a = Analysis::new(&run);
        let html = render(&run, &a, &[], &RenderOptions::default());
        assert!(html.contains(r#"<span class="verdict invalid">invalid</span>"#));
        assert!(html.contains("set-full") && html.contains(r#"<span class="verdict valid">valid</span>"#));
        assert!(html.contains("key &quot;a&quot;: no linearization"));
        assert!(html.contains("faultline run --seed 42"));
        assert!(html.contains("<th>seed</th><td>42</td>"));
    }

    #[test]
    fn availability_and_counts_read_as_words_not_raw_keys() {
        let r: Results = serde_json::from_value(json!({
            "availability": {"fault_windows": 2, "fault_time_s": 10.0, "during_faults": {"ok": 3, "fail": 1, "info": 0},
                             "during_faults_ok_fraction": 0.75, "faults_not_applied": 1, "first_refusal": "loss: <no iptables>"},
            "ops": {"invoked": 5, "completed": {"ok": 3, "fail": 1, "info": 0}, "unfinished": 1,
                    "by_f": {"read": {"ok": 2, "fail": 1, "info": 0}, "write": {"ok": 1, "fail": 0, "info": 0}}}
        }))
        .unwrap();
        let mut s = String::new();
        availability_table(&mut s, &r);
        op_counts_table(&mut s, &r);
        assert!(s.contains("<th>ok share during faults</th><td>75.0 % (3 ok, 1 fail, 0 info)</td>"), "{s}");
        assert!(s.contains("<th>fault windows</th><td>2 (10.0 s under faults)</td>"), "{s}");
        assert!(s.contains("first: loss: &lt;no iptables&gt;"), "{s}");
        assert!(s.contains(r#"<tr><th>read</th><td class="num">2</td><td class="num">1</td>"#), "{s}");
        assert!(!s.contains("during_faults_ok_fraction") && !s.contains("by_f"), "no raw keys: {s}");
    }

    #[test]
    fn the_faults_table_describes_faults_in_words_not_json() {
        let history = format!(
            "{}\n{}\n",
            json!({"index":0,"time":10,"type":"info","process":"nemesis","f":"start-clock","value":
                {"applied": true, "kind": "bump", "nodes": ["n2"], "mechanism": "admin-api", "error": null,
                 "detail": {"offset_ms": 250, "strobe_period_ms": null}}}),
            json!({"index":1,"time":20,"type":"info","process":"nemesis","f":"stop-clock","value":{"kind":"bump","nodes":["n2"],"healed":true,"error":null}}),
        );
        let run = run_with(json!({}), json!({}), &history);
        let a = Analysis::new(&run);
        let html = render(&run, &a, &[], &RenderOptions::default());
        assert!(html.contains("<td>bump on n2 via admin-api; clock offset +250 ms</td>"), "{html}");
        assert!(!html.contains("{&quot;"), "raw JSON in the page");
    }

    #[test]
    fn timeline_says_when_capped() {
        let mut h = String::new();
        for i in 0..50u64 {
            h.push_str(
                &json!({"index":2*i,"time":10*i,"type":"invoke","process":i % 3,"f":"read","value":null}).to_string(),
            );
            h.push('\n');
            h.push_str(
                &json!({"index":2*i+1,"time":10*i+5,"type":"ok","process":i % 3,"f":"read","value":1}).to_string(),
            );
            h.push('\n');
        }
        let run = run_with(json!({}), json!({}), &h);
        let a = Analysis::new(&run);
        let opts = RenderOptions { timeline_ops_max: 10, ..Default::default() };
        let html = render(&run, &a, &[], &opts);
        assert!(html.contains("showing operations 1 to 10 of 50"), "capped note missing");
        let uncapped = render(&run, &a, &[], &RenderOptions::default());
        assert!(!uncapped.contains("timeline-capped"));
    }
}
