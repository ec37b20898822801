//! The reader of `history.jsonl` (docs/history-format.md): one JSON event per line.
//!
//! The writer appends and flushes line by line, so a crashed run leaves a readable prefix and
//! at worst a last line cut short: that line is dropped with a warning (when events were read
//! before it). Any other bad line is an error naming the line, what was expected and what was
//! found, quoting at most [`QUOTED_CHARS_MAX`] characters of the input ([`clip`]).

use crate::history::Event;

/// A parsed history.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    pub events: Vec<Event>,
    /// 1-based line of each event in the input (same length as `events`).
    pub lines: Vec<usize>,
    /// Recoverable problems (a truncated last line, gaps in `index`), one line each.
    pub warnings: Vec<String>,
}

/// A malformed input: Display is `LINE: expected ..., found ...`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{line}: expected {expected}, found {found}")]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    pub expected: String,
    pub found: String,
}

impl ParseError {
    /// `expected` and `found` are [`clip`]ped: a message never carries more than a few hundred
    /// characters of the input, nor a raw control character.
    pub fn new(line: usize, expected: impl Into<String>, found: impl Into<String>) -> Self {
        ParseError { line, expected: clip(&expected.into()), found: clip(&found.into()) }
    }
}

/// The most characters of input an error message quotes.
pub const QUOTED_CHARS_MAX: usize = 200;

/// What a message may show of a piece of input: at most [`QUOTED_CHARS_MAX`] characters (then
/// `…`), control characters escaped (`\u{1b}`, `\n`), so a terminal shows text, never acts on it.
pub fn clip(s: &str) -> String {
    clip_to(s, QUOTED_CHARS_MAX)
}

fn clip_to(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max + 8));
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Shortens a piece of input for an error message, in quotes.
pub(crate) fn excerpt(s: &str) -> String {
    const SHOWN_CHARS_MAX: usize = 60;
    format!("\"{}\"", clip_to(s.trim(), SHOWN_CHARS_MAX))
}

/// Parses a JSON Lines history. Blank lines are skipped.
pub fn parse(text: &str) -> Result<Parsed, ParseError> {
    let mut out = Parsed::default();
    let ends_with_newline = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let last_nonblank = lines.iter().rposition(|l| !l.trim().is_empty());
    let mut prev_index: Option<u64> = None;
    for (i, raw) in lines.iter().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let event: Event = match serde_json::from_str(line) {
            Ok(e) => e,
            Err(e) => {
                // A crash mid-write leaves the last line cut short (no final newline, or a JSON
                // value that ends early): drop it and say so.
                // Only after events that were read: a lone bad line is not a history.
                if Some(i) == last_nonblank && !out.events.is_empty() && (!ends_with_newline || e.is_eof()) {
                    out.warnings.push(format!(
                        "{line_no}: truncated last line ignored ({} bytes; {})",
                        raw.len(),
                        strip_location(&e.to_string())
                    ));
                    break;
                }
                let found = if e.is_syntax() || e.is_eof() {
                    format!("{} in {}", strip_location(&e.to_string()), excerpt(line))
                } else {
                    strip_location(&e.to_string())
                };
                return Err(ParseError::new(
                    line_no,
                    "a history event: a JSON object with index, time, type, process and f",
                    found,
                ));
            }
        };
        if let Some(p) = prev_index {
            if event.index <= p {
                return Err(ParseError::new(
                    line_no,
                    format!("an index greater than the previous event's {p}"),
                    event.index.to_string(),
                ));
            }
            if event.index != p + 1 {
                out.warnings.push(format!("{line_no}: index jumps from {p} to {}", event.index));
            }
        }
        prev_index = Some(event.index);
        out.events.push(event);
        out.lines.push(line_no);
    }
    Ok(out)
}

/// serde_json appends " at line 1 column N"; on one line only the column matters.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => {
            let col = msg[i..].rsplit(' ').next().unwrap_or("");
            format!("{} (column {col})", &msg[..i])
        }
        None => msg.to_string(),
    }
}

/// Serializes events as JSON Lines (the inverse of [`parse`]).
pub fn to_string(events: &[Event]) -> String {
    let mut s = String::new();
    for e in events {
        s.push_str(&serde_json::to_string(e).expect("events serialize"));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{EventType, Process};

    const TWO: &str = "{\"index\":0,\"time\":10,\"type\":\"invoke\",\"process\":0,\"f\":\"read\",\"key\":\"x\",\"value\":null}\n\
                       {\"index\":1,\"time\":20,\"type\":\"ok\",\"process\":0,\"f\":\"read\",\"key\":\"x\",\"value\":3}\n";

    #[test]
    fn parses_events_and_lines() {
        let p = parse(TWO).unwrap();
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.lines, vec![1, 2]);
        assert_eq!(p.events[1].kind, EventType::Ok);
        assert_eq!(p.events[1].process, Process::Client(0));
        assert!(p.warnings.is_empty());
        assert_eq!(parse(&to_string(&p.events)).unwrap().events, p.events);
    }

    #[test]
    fn truncated_last_line_is_a_warning() {
        let text = format!("{TWO}{{\"index\":2,\"time\":30,\"type\":\"inv");
        let p = parse(&text).unwrap();
        assert_eq!(p.events.len(), 2);
        assert_eq!(p.warnings.len(), 1);
        assert!(p.warnings[0].starts_with("3: truncated last line"), "{:?}", p.warnings);
    }

    #[test]
    fn bad_middle_line_is_an_error_with_its_line() {
        let text = format!("{TWO}not json\n{TWO}");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("3: expected a history event"), "{e}");
        assert!(e.found.contains("not json"), "{e}");
    }

    #[test]
    fn missing_field_and_bad_type_are_named() {
        let e = parse("{\"index\":0,\"time\":0,\"type\":\"invoke\",\"process\":0}\n").unwrap_err();
        assert!(e.found.contains("missing field `f`"), "{e}");
        let e = parse("{\"index\":0,\"time\":0,\"type\":\"done\",\"process\":0,\"f\":\"read\"}\n").unwrap_err();
        assert!(e.found.contains("unknown variant `done`"), "{e}");
    }

    #[test]
    fn index_must_increase() {
        let text = TWO.replace("\"index\":1", "\"index\":0");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.expected.contains("greater than"), "{e}");
    }
}
