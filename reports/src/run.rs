//! Loading a run folder: `history.jsonl`, `test.json`, `results.json`.
//!
//! Tolerant by design: a run that crashed may have a truncated last history line, no
//! results.json, or fields this version does not know. Each problem becomes a warning with the
//! file and line; only an unreadable folder is an error.

use std::path::{Path, PathBuf};

use faultline_checker::history::Event;
use faultline_results::Results;
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
    /// results.json through its type; `None` when absent or when it does not fit the type (a
    /// warning then says which field).
    pub results: Option<Results>,
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
        run.results = read_results(&dir.join("results.json"), &mut run.warnings)?;
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
        self.results.as_ref().map_or_else(|| "none".to_string(), |r| r.verdict.to_string())
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
                    warnings.push(format!("{}:{}: skipped, not a history event: {err}{why}", path.display(), i + 1));
                }
            }
        }
    }
    if bad > HISTORY_WARNINGS_MAX {
        warnings.push(format!("{}: {} more bad lines skipped", path.display(), bad - HISTORY_WARNINGS_MAX));
    }
    (events, warnings)
}

/// Reads results.json through [`Results`]; a file that does not fit is a warning naming the
/// line and the field, and no results.
fn read_results(path: &Path, warnings: &mut Vec<String>) -> Result<Option<Results>, ReportError> {
    match std::fs::read_to_string(path) {
        Ok(text) => match Results::from_json(&text) {
            Ok(r) => Ok(Some(r)),
            Err(e) => {
                warnings.push(format!("{}:{}: not a faultline results.json: {e}", path.display(), e.line()));
                Ok(None)
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ReportError::io(path, e)),
    }
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
    fn a_results_json_that_does_not_fit_is_a_warning_not_a_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.json");
        std::fs::write(&p, r#"{"verdict": true}"#).unwrap();
        let mut warnings = Vec::new();
        assert_eq!(read_results(&p, &mut warnings).unwrap(), None);
        assert!(warnings[0].contains("not a faultline results.json"), "{warnings:?}");
        std::fs::write(&p, r#"{"verdict": "invalid"}"#).unwrap();
        let r = read_results(&p, &mut warnings).unwrap().unwrap();
        assert_eq!(r.verdict, faultline_results::Verdict::Invalid);
    }
}
