//! Clock offsets per node over time, for clock-skew.png.
//!
//! Two sources, in order of preference: the samples in results.json `clock` (what the nodes
//! reported, typed as [`ClockSample`]), else the offsets the nemesis commanded in its clock
//! events. The nemesis events' field names are read tolerantly (`offset_ms`, `offset_ns`,
//! `skew_ms`, ...) because a history may come from another tool.

use std::collections::BTreeMap;

use faultline_checker::history::{Event, EventType, Process};
use faultline_results::{ClockSample, Results};
use serde_json::{Map, Value};

/// One node's clock offset over time: `(time ns since start, offset ms)`, in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct ClockSeries {
    pub node: String,
    pub points: Vec<(u64, f64)>,
}

/// Where the series came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockSource {
    ResultsSamples,
    NemesisEvents,
}

/// The clock picture of a run: `None` when no clock was skewed.
#[derive(Clone, Debug, PartialEq)]
pub struct Clocks {
    pub source: ClockSource,
    pub series: Vec<ClockSeries>,
}

/// Series from results.json or the nemesis events; `None` unless some offset is non-zero.
pub fn clocks(results: Option<&Results>, events: &[Event], end_ns: u64) -> Option<Clocks> {
    let from_results = results.map(|r| from_samples(&r.clock)).unwrap_or_default();
    let (source, series) = if from_results.iter().any(|s| !s.points.is_empty()) {
        (ClockSource::ResultsSamples, from_results)
    } else {
        (ClockSource::NemesisEvents, from_nemesis(events, end_ns))
    };
    let skewed = series.iter().any(|s| s.points.iter().any(|&(_, o)| o != 0.0));
    skewed.then_some(Clocks { source, series })
}

/// results.json's `clock` samples, one series per node, in time order.
fn from_samples(clock: &[ClockSample]) -> Vec<ClockSeries> {
    let mut by_node: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    for c in clock {
        by_node.entry(c.node.clone()).or_default().push((c.time_ns, c.offset_ms as f64));
    }
    by_node
        .into_iter()
        .map(|(node, mut points)| {
            points.sort_by_key(|p| p.0);
            ClockSeries { node, points }
        })
        .collect()
}

fn offset_ms(obj: &Map<String, Value>) -> Option<f64> {
    for (k, scale) in [
        ("offset_ms", 1.0),
        ("skew_ms", 1.0),
        ("delta_ms", 1.0),
        ("offset_ns", 1e-6),
        ("skew_ns", 1e-6),
        ("offset_us", 1e-3),
        ("offset_s", 1e3),
        ("offset", 1.0),
    ] {
        if let Some(v) = obj.get(k).and_then(Value::as_f64) {
            return Some(v * scale);
        }
    }
    None
}

/// Offsets that a nemesis clock event sets, as node → ms. Accepts `{"offsets_ms": {n: ms}}`,
/// `{"offsets": {n: ms}}`, `{"node": n, "offset_ms": x}`, `{"nodes": [..], "offset_ms": x}`
/// and arrays of such objects.
fn commanded(value: &Value, out: &mut Vec<(String, f64)>) {
    match value {
        Value::Array(items) => items.iter().for_each(|i| commanded(i, out)),
        Value::Object(obj) => {
            for (k, scale) in [("offsets_ms", 1.0), ("offsets", 1.0), ("offsets_ns", 1e-6)] {
                if let Some(Value::Object(m)) = obj.get(k) {
                    for (node, v) in m {
                        let ms = v.as_f64().or_else(|| v.as_object().and_then(offset_ms));
                        if let Some(ms) = ms {
                            out.push((node.clone(), ms * if v.is_number() { scale } else { 1.0 }));
                        }
                    }
                }
            }
            if let Some(ms) = offset_ms(obj) {
                if let Some(n) = obj.get("node").and_then(Value::as_str) {
                    out.push((n.to_string(), ms));
                }
                if let Some(Value::Array(ns)) = obj.get("nodes") {
                    for n in ns.iter().filter_map(Value::as_str) {
                        out.push((n.to_string(), ms));
                    }
                }
            }
        }
        _ => {}
    }
}

fn from_nemesis(events: &[Event], end_ns: u64) -> Vec<ClockSeries> {
    let mut current: BTreeMap<String, f64> = BTreeMap::new();
    let mut series: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    for e in events {
        if e.process != Process::Nemesis || e.kind != EventType::Info || !e.f.contains("clock") {
            continue;
        }
        let mut set = Vec::new();
        commanded(&e.value, &mut set);
        let is_stop = e.f.starts_with("stop-") || e.f.contains("reset");
        if set.is_empty() && is_stop {
            set = current.keys().map(|n| (n.clone(), 0.0)).collect();
        }
        for (node, ms) in set {
            let before = current.insert(node.clone(), ms).unwrap_or(0.0);
            let pts = series.entry(node).or_insert_with(|| vec![(0, 0.0)]);
            // A step: hold the old offset up to the event, then jump.
            pts.push((e.time, before));
            pts.push((e.time, ms));
        }
    }
    series
        .into_iter()
        .map(|(node, mut points)| {
            let last = points.last().map(|p| p.1).unwrap_or(0.0);
            points.push((end_ns.max(points.last().map(|p| p.0).unwrap_or(0)), last));
            ClockSeries { node, points }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nem(index: u64, time: u64, f: &str, value: Value) -> Event {
        serde_json::from_value(json!({
            "index": index, "time": time, "type": "info", "process": "nemesis", "f": f, "value": value
        }))
        .unwrap()
    }

    #[test]
    fn nemesis_steps_and_reset() {
        let events = vec![
            nem(0, 100, "start-clock", json!({"offsets_ms": {"n1": 500, "n2": -250}})),
            nem(1, 200, "stop-clock", json!(null)),
        ];
        let c = clocks(None, &events, 300).expect("skewed");
        assert_eq!(c.source, ClockSource::NemesisEvents);
        assert_eq!(c.series.len(), 2);
        assert_eq!(c.series[0].node, "n1");
        assert_eq!(c.series[0].points, vec![(0, 0.0), (100, 0.0), (100, 500.0), (200, 500.0), (200, 0.0), (300, 0.0)]);
        assert_eq!(c.series[1].points[2], (100, -250.0));
    }

    fn results(clock: Value) -> Results {
        serde_json::from_value(json!({ "clock": clock })).unwrap()
    }

    #[test]
    fn results_samples_win_over_nemesis_events() {
        let r = results(json!([
            {"node": "n1", "time_ns": 9, "offset_ms": 2},
            {"node": "n1", "time_ns": 5, "offset_ms": 0},
        ]));
        let events = vec![nem(0, 1, "start-clock", json!({"node": "n3", "offset_ms": 1000}))];
        let c = clocks(Some(&r), &events, 10).unwrap();
        assert_eq!(c.source, ClockSource::ResultsSamples);
        assert_eq!(c.series.len(), 1);
        assert_eq!(c.series[0].points, vec![(5, 0.0), (9, 2.0)], "sorted by time");
    }

    #[test]
    fn no_skew_no_plot() {
        let zero = results(json!([{"node": "n1", "time_ns": 5, "offset_ms": 0}]));
        assert_eq!(clocks(Some(&zero), &[], 10), None);
        assert_eq!(clocks(None, &[nem(0, 1, "start-partition", json!({}))], 10), None);
        assert_eq!(clocks(Some(&Results::default()), &[], 10), None);
    }

    #[test]
    fn single_node_and_node_list_commands() {
        let events = vec![
            nem(0, 1, "start-clock", json!({"node": "n3", "offset_ms": 1000})),
            nem(1, 2, "start-clock", json!({"nodes": ["n1", "n2"], "offset_ms": -10})),
        ];
        let c = clocks(None, &events, 3).unwrap();
        let nodes: Vec<&str> = c.series.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(nodes, vec!["n1", "n2", "n3"]);
    }
}
