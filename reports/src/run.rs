//! Loading a run folder: `history.jsonl`, `test.json`, `results.json`.
//!
//! Tolerant by design: a run that crashed may have a truncated last history line, no
//! results.json, or fields this version does not know. Each problem becomes a warning with the
//! file and line; only an unreadable folder is an error.

use std::path::{Path, PathBuf};

use faultline_checker::history::Event;
use serde_json::Value;

use crate::ReportError;

/// At most this many history parse problems are kept verbatim; the rest are counted.
const HISTORY_WARNINGS_MAX: usize = 20;

/// The files of one run folder, parsed.
#[derive(Debug, Default)]
pub struct RunData {
    pub dir: PathBuf,
    /// Events in file order (the history writer appends in index order).
    pub events: Vec<Event>,
    pub history_present: bool,
    pub test: Option<Value>,
    pub results: Option<Value>,
    pub warnings: Vec<String>,
}

impl RunData {
    /// Reads the run folder at `dir`.
    pub fn load(dir: &Path) -> Result<RunData, ReportError> {
        let meta = std::fs::metadata(dir).map_err(|e| ReportError::io(dir, e))?;
        if !meta.is_dir() {
            return Err(ReportError::NotARun { path: dir.to_path_buf() });
        }
        let mut run = RunData { dir: dir.to_path_buf(), ..RunData::default() };
        let history = dir.join("history.jsonl");
        match std::fs::read_to_string(&history) {
            Ok(text) => {
                run.history_present = true;
                let (events, warnings) = parse_history(&text, &history);
                run.events = events;
                run.warnings.extend(warnings);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ReportError::io(&history, e)),
        }
        run.test = read_json(&dir.join("test.json"), &mut run.warnings)?;
        run.results = read_json(&dir.join("results.json"), &mut run.warnings)?;
        if !run.history_present && run.test.is_none() && run.results.is_none() {
            return Err(ReportError::NotARun { path: dir.to_path_buf() });
        }
        if !run.history_present {
            run.warnings.push(format!("{}: missing; no operations to draw", history.display()));
        }
        Ok(run)
    }

    /// The overall verdict from results.json, or `none` when there is none.
    pub fn verdict(&self) -> String {
        self.results
            .as_ref()
            .and_then(|r| r.get("verdict"))
            .and_then(verdict_text)
            .unwrap_or_else(|| "none".to_string())
    }
}

/// A verdict is usually a string; accept `{"verdict": ...}`-like objects and booleans too.
pub fn verdict_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_ascii_lowercase()),
        Value::Bool(true) => Some("valid".into()),
        Value::Bool(false) => Some("invalid".into()),
        Value::Object(o) => o.get("verdict").and_then(verdict_text),
        _ => None,
    }
}

/// Parses history.jsonl text; returns the events that parsed and one warning per bad line
/// (bounded), naming the file and line.
pub fn parse_history(text: &str, path: &Path) -> (Vec<Event>, Vec<String>) {
    let mut events = Vec::with_capacity(text.len() / 100);
    let mut warnings = Vec::new();
    let mut bad = 0usize;
    let ends_with_newline = text.ends_with('\n');
    let line_count = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Event>(line) {
            Ok(e) => events.push(e),
            Err(err) => {
                bad += 1;
                if bad <= HISTORY_WARNINGS_MAX {
                    let last = i + 1 == line_count && !ends_with_newline;
                    let why = if last { " (truncated last line: did the run crash?)" } else { "" };
                    warnings.push(format!(
                        "{}:{}: skipped, not a history event: {err}{why}",
                        path.display(),
                        i + 1
                    ));
                }
            }
        }
    }
    if bad > HISTORY_WARNINGS_MAX {
        warnings.push(format!(
            "{}: {} more bad lines skipped",
            path.display(),
            bad - HISTORY_WARNINGS_MAX
        ));
    }
    (events, warnings)
}

fn read_json(path: &Path, warnings: &mut Vec<String>) -> Result<Option<Value>, ReportError> {
    match std::fs::read_to_string(path) {
        Ok(text) => match serde_json::from_str::<Value>(&text) {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                warnings.push(format!("{}:{}: not valid JSON: {e}", path.display(), e.line()));
                Ok(None)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ReportError::io(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_last_line_is_a_warning_not_an_error() {
        let text = concat!(
            r#"{"index":0,"time":10,"type":"invoke","process":0,"f":"read","value":null}"#,
            "\n",
            r#"{"index":1,"time":20,"type":"ok","process":0,"f":"read","value":3}"#,
            "\n",
            r#"{"index":2,"time":30,"type":"inv"#
        );
        let (events, warnings) = parse_history(text, Path::new("h.jsonl"));
        assert_eq!(events.len(), 2);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("h.jsonl:3:"), "{}", warnings[0]);
        assert!(warnings[0].contains("truncated"), "{}", warnings[0]);
    }

    #[test]
    fn bad_lines_are_bounded() {
        let text = "nope\n".repeat(100);
        let (events, warnings) = parse_history(&text, Path::new("h"));
        assert!(events.is_empty());
        assert_eq!(warnings.len(), HISTORY_WARNINGS_MAX + 1);
        assert!(warnings.last().unwrap().contains("80 more"));
    }

    #[test]
    fn verdicts_of_several_shapes() {
        assert_eq!(verdict_text(&serde_json::json!("Invalid")).as_deref(), Some("invalid"));
        assert_eq!(verdict_text(&serde_json::json!(true)).as_deref(), Some("valid"));
        assert_eq!(verdict_text(&serde_json::json!({"verdict":"unknown"})).as_deref(), Some("unknown"));
        assert_eq!(verdict_text(&serde_json::json!(3)), None);
    }
}
