//! Importers of other tools' history formats into [`Event`]s.
//!
//! - `porcupine-etcd`: Porcupine's Jepsen etcd logs (`INFO  jepsen.util - 3 :ok :cas [1 2]`,
//!   tab-separated),
//!   read with Porcupine's meaning: a `:fail :cas` failed its compare (it becomes a `fail` with
//!   error `"cas-mismatch"`), a `:fail :read :timed-out` is indeterminate.
//! - `porcupine-kv`: Porcupine's kv logs, one EDN map per line with `:key`.
//! - `jepsen-edn`: Jepsen/Knossos op maps (`{:type :invoke, :f :cas, :value [1 2], :process 3,
//!   :time 123}`), one per line or in one top-level vector; `:process :nemesis` is the nemesis.
//!
//! Events get `index` = their position and, when the input has no time, `time` = the position.

use std::str::FromStr;

use serde_json::Value;

use crate::edn::{self, Edn};
use crate::history::{Event, EventType, Process};
use crate::jsonl::{self, excerpt, ParseError, Parsed};
use crate::model::ModelKind;

/// An input format of `faultline check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    PorcupineEtcd,
    PorcupineKv,
    JepsenEdn,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Jsonl, Format::PorcupineEtcd, Format::PorcupineKv, Format::JepsenEdn];

    pub fn name(self) -> &'static str {
        match self {
            Format::Jsonl => "jsonl",
            Format::PorcupineEtcd => "porcupine-etcd",
            Format::PorcupineKv => "porcupine-kv",
            Format::JepsenEdn => "jepsen-edn",
        }
    }

    /// The model a history in this format is checked against unless told otherwise.
    pub fn default_model(self) -> ModelKind {
        match self {
            Format::PorcupineKv => ModelKind::Kv,
            _ => ModelKind::CasRegister,
        }
    }

    pub fn parse(self, text: &str) -> Result<Parsed, ParseError> {
        match self {
            Format::Jsonl => jsonl::parse(text),
            Format::PorcupineEtcd => parse_porcupine_etcd(text),
            Format::PorcupineKv | Format::JepsenEdn => parse_edn_ops(text),
        }
    }

    /// [`Format::parse`] for a history handed in to be judged (`faultline check`): one from
    /// which no client operation could be read (an empty input, blank lines, nemesis events
    /// only) is an error, since there is nothing to judge. (An empty history is trivially
    /// linearizable, so [`Format::parse`] itself accepts it: a crashed run's may be empty.)
    pub fn parse_operations(self, text: &str) -> Result<Parsed, ParseError> {
        require_operations(self.parse(text)?, text)
    }
}

/// `parsed` when it holds a client operation; else the error saying why there is none.
fn require_operations(parsed: Parsed, text: &str) -> Result<Parsed, ParseError> {
    if parsed.events.iter().any(|e| e.process != Process::Nemesis) {
        return Ok(parsed);
    }
    const EXPECTED: &str = "a history with at least one client operation";
    let found = if text.is_empty() {
        "an empty input".to_string()
    } else if text.trim().is_empty() {
        "only blank lines".to_string()
    } else {
        format!("{} nemesis events and no operation", parsed.events.len())
    };
    let line = parsed.lines.last().copied().unwrap_or(1);
    Err(ParseError::new(line, EXPECTED, found))
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format \"{0}\": expected one of jsonl, porcupine-etcd, porcupine-kv, jepsen-edn")]
pub struct UnknownFormat(pub String);

impl FromStr for Format {
    type Err = UnknownFormat;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL.into_iter().find(|f| f.name() == s).ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

fn event_type(k: &str) -> Option<EventType> {
    match k {
        "invoke" => Some(EventType::Invoke),
        "ok" => Some(EventType::Ok),
        "fail" => Some(EventType::Fail),
        "info" => Some(EventType::Info),
        _ => None,
    }
}

/// Parses a Porcupine etcd log value: `nil`, an integer, `[a b]`, or a keyword like `:timed-out`.
fn etcd_value(s: &str) -> Option<Edn> {
    let forms = edn::read_all(s).ok()?;
    match forms.as_slice() {
        [(_, v)] => Some(v.clone()),
        _ => None,
    }
}

fn parse_porcupine_etcd(text: &str) -> Result<Parsed, ParseError> {
    const PREFIX_EXPECTED: &str = "a line \"INFO jepsen.util - PROCESS :TYPE :F VALUE\"";
    let mut out = Parsed::default();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let toks: Vec<&str> = line.split_whitespace().collect();
        if toks.len() < 7 || toks[0] != "INFO" || toks[1] != "jepsen.util" || toks[2] != "-" {
            return Err(ParseError::new(line_no, PREFIX_EXPECTED, excerpt(line)));
        }
        let process: u64 =
            toks[3].parse().map_err(|_| ParseError::new(line_no, "a process number", excerpt(toks[3])))?;
        let kind = toks[4]
            .strip_prefix(':')
            .and_then(event_type)
            .ok_or_else(|| ParseError::new(line_no, "a type :invoke, :ok, :fail or :info", excerpt(toks[4])))?;
        let f = match toks[5] {
            ":read" | ":write" | ":cas" => &toks[5][1..],
            other => return Err(ParseError::new(line_no, "an f :read, :write or :cas", excerpt(other))),
        };
        let raw_value = toks[6..].join(" ");
        let v = etcd_value(&raw_value).ok_or_else(|| {
            ParseError::new(line_no, "a value: nil, an integer, [from to] or a keyword", excerpt(&raw_value))
        })?;
        let int_or_nil = |v: &Edn| matches!(v, Edn::Nil | Edn::Int(_));
        let shape_ok = match (&v, f) {
            (Edn::Keyword(_), _) => kind != EventType::Invoke && kind != EventType::Ok,
            (Edn::Vector(p), "cas") => p.len() == 2 && p.iter().all(int_or_nil),
            (v, "read") => int_or_nil(v),
            (Edn::Int(_), "write") => true,
            _ => false,
        };
        if !shape_ok {
            let expected = match (f, kind) {
                ("cas", _) => "a cas value [from to] (or :timed-out on a fail or info)",
                ("read", _) => "a read value: nil or an integer",
                _ => "a write value: an integer",
            };
            return Err(ParseError::new(line_no, expected, excerpt(&raw_value)));
        }
        let (kind, error) = match (kind, f, &v) {
            // Porcupine's meaning: a failed cas failed its compare.
            (EventType::Fail, "cas", Edn::Vector(_)) => (EventType::Fail, Some("cas-mismatch".to_string())),
            // A timed-out read is indeterminate (Porcupine: unknown output).
            (EventType::Fail, _, Edn::Keyword(k)) => (EventType::Info, Some(k.clone())),
            (k, _, Edn::Keyword(kw)) => (k, Some(kw.clone())),
            (k, _, _) => (k, None),
        };
        let value = match &v {
            Edn::Keyword(_) => Value::Null,
            other => other.to_json(),
        };
        let pos = out.events.len() as u64;
        out.events.push(Event {
            index: pos,
            time: pos,
            kind,
            process: Process::Client(process),
            f: f.to_string(),
            key: None,
            value,
            error,
            node: None,
        });
        out.lines.push(line_no);
    }
    Ok(out)
}

fn parse_edn_ops(text: &str) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    for (line, form) in edn::read_ops(text)? {
        let e = |expected: &str, found: String| ParseError::new(line, expected, found);
        if !matches!(form, Edn::Map(_)) {
            return Err(e("an op map {:type .. :f .. :process ..}", form.describe()));
        }
        let field = |k: &str| form.get(k);
        let kind = match field("type") {
            Some(Edn::Keyword(k)) => {
                event_type(k).ok_or_else(|| e(":type :invoke, :ok, :fail or :info", format!(":{k}")))?
            }
            Some(other) => return Err(e(":type :invoke, :ok, :fail or :info", other.describe())),
            None => return Err(e("a :type", "none".into())),
        };
        let process = match field("process") {
            Some(Edn::Int(p)) if *p >= 0 => Process::Client(*p as u64),
            Some(Edn::Keyword(k)) if k == "nemesis" => Process::Nemesis,
            Some(other) => return Err(e(":process: a non-negative integer or :nemesis", other.describe())),
            None => return Err(e("a :process", "none".into())),
        };
        let f = match field("f") {
            Some(Edn::Keyword(s) | Edn::Symbol(s) | Edn::Str(s)) => s.clone(),
            Some(other) => return Err(e(":f as a keyword", other.describe())),
            None => return Err(e("an :f", "none".into())),
        };
        let key = match field("key") {
            None | Some(Edn::Nil) => None,
            Some(Edn::Str(s) | Edn::Keyword(s) | Edn::Symbol(s)) => Some(s.clone()),
            Some(Edn::Int(i)) => Some(i.to_string()),
            Some(other) => return Err(e(":key: a string, keyword or integer", other.describe())),
        };
        let pos = out.events.len() as u64;
        let time = match field("time") {
            None => pos,
            Some(Edn::Int(t)) if *t >= 0 => *t as u64,
            Some(other) => return Err(e(":time: a non-negative integer (ns)", other.describe())),
        };
        let mut error = match field("error") {
            None | Some(Edn::Nil) => None,
            Some(Edn::Keyword(s) | Edn::Str(s) | Edn::Symbol(s)) => Some(s.clone()),
            Some(other) => Some(other.to_json().to_string()),
        };
        // Jepsen puts the reason of an info/fail in :value at times (:timed-out).
        let value = match field("value") {
            Some(Edn::Keyword(k))
                if process != Process::Nemesis && kind != EventType::Invoke && kind != EventType::Ok =>
            {
                error.get_or_insert_with(|| k.clone());
                Value::Null
            }
            Some(v) => v.to_json(),
            None => Value::Null,
        };
        out.events.push(Event { index: pos, time, kind, process, f, key, value, error, node: None });
        out.lines.push(line);
    }
    edn::split_independent_keys(&mut out.events);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_without_operations_is_an_error_in_every_format() {
        for format in Format::ALL {
            for text in ["", "\n\n  \n", "this is not json"] {
                let e = format.parse_operations(text).unwrap_err();
                assert_eq!(e.line, 1, "{format} {text:?}: {e}");
            }
            assert!(format.parse_operations("").unwrap_err().found.contains("empty"), "{format}");
        }
        let nemesis_only = "{\"index\":0,\"time\":1,\"type\":\"info\",\"process\":\"nemesis\",\"f\":\"start\"}\n";
        assert!(Format::Jsonl.parse_operations(nemesis_only).unwrap_err().found.contains("no operation"));
        // 1M '[' without a newline, and a long run of 'a': errors, not "valid, 0 ops".
        let brackets = "[".repeat(1 << 20);
        let letters = "a".repeat(1 << 20);
        for format in Format::ALL {
            for text in [&brackets, &letters] {
                let e = format.parse_operations(text).unwrap_err();
                assert!(e.to_string().len() < 600, "{format}: {} bytes of message", e.to_string().len());
            }
        }
    }

    #[test]
    fn error_messages_quote_little_and_escape_control_characters() {
        let line = format!("{{\"index\":0,\"time\":0,\"type\":\"\u{1b}[31m{}\"}}\n", "x".repeat(100_000));
        for format in Format::ALL {
            let e = format.parse(&line).unwrap_err().to_string();
            assert!(e.len() < 600, "{format}: {} bytes", e.len());
            assert!(!e.chars().any(|c| c.is_control()), "{format}: {e:?}");
        }
        let edn =
            "{:process 0, :type :invoke, :f \"\u{1b}]0;pwned\u{7}\", :value 1}\n{:process 1, :type \"\u{1b}[2J\"}";
        let e = Format::JepsenEdn.parse(edn).unwrap_err().to_string();
        assert!(!e.chars().any(|c| c.is_control()), "{e:?}");
    }

    #[test]
    fn porcupine_etcd_lines() {
        let text = "INFO  jepsen.util - 2\t:invoke\t:cas\t[3 0]\n\
                    INFO  jepsen.util - 2\t:fail\t:cas\t[3 0]\n\
                    INFO  jepsen.util - 1   :invoke   :read   nil\n\
                    INFO  jepsen.util - 1   :fail   :read   :timed-out\n";
        let p = Format::PorcupineEtcd.parse(text).unwrap();
        assert_eq!(p.events.len(), 4);
        assert_eq!(p.events[0].value, serde_json::json!([3, 0]));
        assert_eq!(p.events[1].error.as_deref(), Some("cas-mismatch"));
        assert_eq!(p.events[3].kind, EventType::Info);
        assert_eq!(p.events[3].error.as_deref(), Some("timed-out"));
    }

    #[test]
    fn porcupine_etcd_errors() {
        let e = Format::PorcupineEtcd.parse("INFO  jepsen.util - 2\t:invoke\t:cas\t[3 0]\nhello\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.expected.contains("INFO jepsen.util"), "{e}");
        let e = Format::PorcupineEtcd.parse("INFO  jepsen.util - x\t:invoke\t:read\tnil\n").unwrap_err();
        assert!(e.expected.contains("process"), "{e}");
        let e = Format::PorcupineEtcd.parse("INFO  jepsen.util - 1\t:done\t:read\tnil\n").unwrap_err();
        assert!(e.expected.contains(":invoke"), "{e}");
        let e = Format::PorcupineEtcd.parse("INFO  jepsen.util - 1\t:invoke\t:cas\t[3]\n").unwrap_err();
        assert!(e.expected.contains("[from to]"), "{e}");
        let e = Format::PorcupineEtcd.parse("INFO  jepsen.util - 1\t:invoke\t:swap\t1\n").unwrap_err();
        assert!(e.expected.contains(":read"), "{e}");
    }

    #[test]
    fn edn_ops_with_nemesis_and_keys() {
        let text = "{:process 0, :type :invoke, :f :append, :key \"0\", :value \"x 0 0 y\"}\n\
                    {:process :nemesis, :type :info, :f :start-partition, :value {:isolated [\"n1\"]}}\n\
                    {:process 0, :type :info, :f :append, :key \"0\", :value :timed-out, :time 77}\n";
        let p = Format::JepsenEdn.parse(text).unwrap();
        assert_eq!(p.events.len(), 3);
        assert_eq!(p.events[0].key.as_deref(), Some("0"));
        assert_eq!(p.events[1].process, Process::Nemesis);
        assert_eq!(p.events[1].value, serde_json::json!({"isolated": ["n1"]}));
        assert_eq!(p.events[2].error.as_deref(), Some("timed-out"));
        assert_eq!(p.events[2].time, 77);
        assert_eq!(p.lines, vec![1, 2, 3]);
    }

    #[test]
    fn edn_op_errors() {
        let e = Format::JepsenEdn.parse("{:process 0, :type :invoke, :f :read}\n{:process 0, :f :read}\n").unwrap_err();
        assert_eq!((e.line, e.expected.as_str()), (2, "a :type"));
        let e = Format::JepsenEdn.parse("{:process -1, :type :invoke, :f :read}").unwrap_err();
        assert!(e.expected.contains(":process"), "{e}");
        let e = Format::PorcupineKv.parse("[1 2]").unwrap_err();
        assert!(e.expected.contains("op map"), "{e}");
        let e = Format::PorcupineKv.parse("{:process 0, :type :invoke, :f :get, :key \"1\"").unwrap_err();
        assert!(e.to_string().contains("end of input"), "{e}");
    }
}
