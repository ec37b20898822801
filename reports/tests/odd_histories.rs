//! Odd and hostile run folders never panic the renderer: degenerate time ranges, huge times,
//! out-of-order events, garbage values, and arbitrary generated histories (property test).

use std::path::Path;

use faultline_reports::{render_run, RenderOptions};
use proptest::prelude::*;

fn render(dir: &Path, history: &str, results: Option<&str>) -> String {
    std::fs::write(dir.join("history.jsonl"), history).unwrap();
    if let Some(r) = results {
        std::fs::write(dir.join("results.json"), r).unwrap();
    }
    render_run(dir, &RenderOptions::default()).expect("renders");
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    html
}

#[test]
fn zero_latency_ops_at_time_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let h = concat!(
        r#"{"index":0,"time":0,"type":"invoke","process":0,"f":"read","value":null}"#,
        "\n",
        r#"{"index":1,"time":0,"type":"ok","process":0,"f":"read","value":null}"#,
        "\n",
    );
    render(tmp.path(), h, None);
    assert!(tmp.path().join("latency-raw.png").is_file());
}

#[test]
fn huge_times_and_a_fault_that_never_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let big = u64::MAX / 4;
    let h = format!(
        "{}\n{}\n{}\n",
        format_args!(
            r#"{{"index":0,"time":{},"type":"info","process":"nemesis","f":"start-kill","value":null}}"#,
            big - 10
        ),
        format_args!(r#"{{"index":1,"time":{},"type":"invoke","process":7,"f":"write","value":1}}"#, big - 5),
        format_args!(r#"{{"index":2,"time":{big},"type":"info","process":7,"f":"write","value":1,"error":"timeout"}}"#),
    );
    let html = render(
        tmp.path(),
        &h,
        Some(r#"{"verdict":"unknown","checkers":"not a list","clock":[{"node":"n1","time_ns":-5,"offset_ms":1e300}]}"#),
    );
    assert!(html.contains("(never stopped)"));
}

#[test]
fn completions_before_invocations_and_wrong_value_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let h = concat!(
        r#"{"index":0,"time":50,"type":"ok","process":1,"f":"read","value":{"deep":[1,{"x":"<y>"}]}}"#,
        "\n",
        r#"{"index":1,"time":40,"type":"invoke","process":1,"f":"read","value":null}"#,
        "\n",
        r#"{"index":2,"time":30,"type":"ok","process":1,"f":"read","value":"s"}"#,
        "\n",
        r#"{"index":3,"time":20,"type":"info","process":"nemesis","f":"stop-partition","value":null}"#,
        "\n",
        r#"{"index":4,"time":10,"type":"info","process":"nemesis","f":"start-clock","value":{"offsets_ms":{"n1":"x","n2":-3}}}"#,
        "\n",
    );
    let html = render(
        tmp.path(),
        h,
        Some(
            r#"{"verdict":"invalid","checkers":[{"name":"linearizable","verdict":"invalid","details":{"explanation":{"ops":[{"call_index":1}],"failed_op":7,"longest":[{"steps":[{"op":99}]}]}}}]}"#,
        ),
    );
    assert!(!html.contains("<y>"));
    assert!(tmp.path().join("clock-skew.png").is_file(), "n2 was skewed");
}

fn event() -> impl Strategy<Value = String> {
    let process = prop_oneof![(0u64..4).prop_map(|p| p.to_string()), Just("\"nemesis\"".to_string())];
    let kind = prop_oneof![Just("invoke"), Just("ok"), Just("fail"), Just("info")];
    let f = prop_oneof![
        Just("read".to_string()),
        Just("write".to_string()),
        Just("start-partition".to_string()),
        Just("stop-partition".to_string()),
        Just("start-clock".to_string()),
        "[a-z<>&\"']{0,6}".prop_map(|s| s),
    ];
    let value = prop_oneof![
        Just("null".to_string()),
        (-5i64..5).prop_map(|v| v.to_string()),
        Just(r#"{"offsets_ms":{"n1":250}}"#.to_string()),
        Just(r#""<b>""#.to_string()),
    ];
    (0u64..5_000_000_000, process, kind, f, value).prop_map(|(t, p, k, f, v)| {
        let f = serde_json::to_string(&f).unwrap();
        format!(r#"{{"index":0,"time":{t},"type":"{k}","process":{p},"f":{f},"value":{v}}}"#)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Arbitrary interleavings (indices renumbered, times unordered) render without panicking.
    #[test]
    fn arbitrary_histories_render(events in proptest::collection::vec(event(), 0..60), cut in 0usize..40) {
        let tmp = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for (i, e) in events.iter().enumerate() {
            text.push_str(&e.replacen(r#""index":0"#, &format!(r#""index":{i}"#), 1));
            text.push('\n');
        }
        // Sometimes cut the file mid-line, like a crash would.
        let cut = text.len().saturating_sub(cut);
        let text = text.get(..cut).unwrap_or(&text).to_string();
        render(tmp.path(), &text, Some(r#"{"verdict":"unknown"}"#));
    }
}
