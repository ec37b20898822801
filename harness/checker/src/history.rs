//! The history: the events a test records, in Jepsen's op model.
//!
//! This module owns the in-memory types of one history event and their JSON form (one event per
//! line of `history.jsonl`, see docs/history-format.md). It does no I/O: the writer that appends
//! and flushes lives in `faultline-core`; parsers take `&str`.

use serde::{Deserialize, Serialize};

/// What an event says about its operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The operation was called.
    Invoke,
    /// The operation completed and took effect (its value is the result).
    Ok,
    /// The operation definitely did not take effect.
    Fail,
    /// Indeterminate: the operation may or may not take effect, at any time after its call.
    /// For nemesis events, `info` is the only type used.
    Info,
}

/// Who issued an event: a client process (an integer, retired after an `info`) or the nemesis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    Client(u64),
    Nemesis,
}

impl Serialize for Process {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(p) => s.serialize_u64(*p),
            Process::Nemesis => s.serialize_str("nemesis"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(p) => Ok(Process::Client(p)),
            Raw::Str(s) if s == "nemesis" => Ok(Process::Nemesis),
            Raw::Str(s) => Err(serde::de::Error::custom(format!(
                "process must be a non-negative integer or \"nemesis\", found \"{s}\""
            ))),
        }
    }
}

/// One line of history.jsonl.
///
/// `value` is free-form JSON whose shape depends on `f` and the workload:
/// register `read` → `null` on invoke, the value read (integer or `null`) on ok;
/// `write` → integer; `cas` → `[from, to]`; kv `get`/`put`/`append` → string;
/// set `add` → integer, set `read` → array of integers;
/// nemesis `start-*`/`stop-*` → an object describing the fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history, 0-based, dense.
    pub index: u64,
    /// Nanoseconds since the test began (monotonic clock of the harness).
    pub time: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub process: Process,
    /// The operation: `read`, `write`, `cas`, `get`, `put`, `append`, `add`, ...; for the
    /// nemesis `start-partition`, `stop-partition`, `start-kill`, ...
    pub f: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default)]
    pub value: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The node the client talked to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_round_trips_through_json() {
        let line = r#"{"index":3,"time":1500,"type":"ok","process":2,"f":"cas","key":"k1","value":[1,2],"node":"n1"}"#;
        let e: Event = serde_json::from_str(line).unwrap();
        assert_eq!(e.kind, EventType::Ok);
        assert_eq!(e.process, Process::Client(2));
        assert_eq!(e.value, serde_json::json!([1, 2]));
        assert_eq!(serde_json::to_string(&e).unwrap(), line);
    }

    #[test]
    fn nemesis_process_is_a_string() {
        let line =
            r#"{"index":0,"time":0,"type":"info","process":"nemesis","f":"start-partition","value":{"kind":"halves"}}"#;
        let e: Event = serde_json::from_str(line).unwrap();
        assert_eq!(e.process, Process::Nemesis);
        let bad = r#"{"index":0,"time":0,"type":"info","process":"bob","f":"x","value":null}"#;
        let err = serde_json::from_str::<Event>(bad).unwrap_err().to_string();
        assert!(err.contains("nemesis"), "{err}");
    }
}
