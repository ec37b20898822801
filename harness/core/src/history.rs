//! The history writer: appends events to `history.jsonl` as they happen.
//!
//! Owns the dense `index` counter and the test clock (`time` = ns since the writer was created,
//! from the harness's monotonic clock). Every event is written as one JSON line (the form of
//! [`faultline_checker::history::Event`]) and flushed before `record` returns, so a harness that
//! is killed leaves a history that is complete up to its last event. Writers of many tasks share
//! one `HistoryWriter` behind `Arc`; the lock makes index order equal time order equal file order.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use faultline_checker::history::{Event, EventType, Process};

/// Errors of the history writer.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("cannot write history file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("history writer lock poisoned")]
    Poisoned,
}

/// What a caller provides for one event; `index` and `time` are assigned by the writer.
#[derive(Clone, Debug, PartialEq)]
pub struct EventParts {
    pub kind: EventType,
    pub process: Process,
    pub f: String,
    pub key: Option<String>,
    pub value: serde_json::Value,
    pub error: Option<String>,
    pub node: Option<String>,
}

struct Inner {
    out: Box<dyn Write + Send>,
    next_index: u64,
    /// Events written so far by kind, for the live progress line.
    written: u64,
}

/// Appends events to a JSON Lines sink, one flushed line per event.
pub struct HistoryWriter {
    inner: Mutex<Inner>,
    start: Instant,
    path: String,
}

impl HistoryWriter {
    /// Creates (truncates) `path` and starts the test clock now.
    pub fn create(path: &Path) -> Result<Self, HistoryError> {
        let file =
            File::create(path).map_err(|source| HistoryError::Io { path: path.display().to_string(), source })?;
        Ok(Self::from_writer(Box::new(BufWriter::new(file)), path.display().to_string()))
    }

    /// A writer over any sink (tests use this to observe flushes).
    pub fn from_writer(out: Box<dyn Write + Send>, name: String) -> Self {
        HistoryWriter { inner: Mutex::new(Inner { out, next_index: 0, written: 0 }), start: Instant::now(), path: name }
    }

    /// Nanoseconds since the test began.
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant the test clock counts from.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Assigns index and time, writes one line and flushes it. Returns the event written.
    pub fn record(&self, parts: EventParts) -> Result<Event, HistoryError> {
        let mut inner = self.inner.lock().map_err(|_| HistoryError::Poisoned)?;
        // Time is read under the lock so that index order and time order agree.
        let event = Event {
            index: inner.next_index,
            time: self.now_ns(),
            kind: parts.kind,
            process: parts.process,
            f: parts.f,
            key: parts.key,
            value: parts.value,
            error: parts.error,
            node: parts.node,
        };
        let mut line = serde_json::to_vec(&event).expect("an Event always serializes");
        line.push(b'\n');
        let io = |source| HistoryError::Io { path: self.path.clone(), source };
        inner.out.write_all(&line).map_err(io)?;
        inner.out.flush().map_err(io)?;
        inner.next_index += 1;
        inner.written += 1;
        Ok(event)
    }

    /// Number of events written.
    pub fn len(&self) -> u64 {
        self.inner.lock().map(|i| i.written).unwrap_or(0)
    }

    /// True when nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex as StdMutex};

    /// A sink that records what reached it only at flush, to prove flush-per-line.
    #[derive(Clone, Default)]
    struct FlushProbe {
        pending: Arc<StdMutex<Vec<u8>>>,
        flushed: Arc<StdMutex<Vec<u8>>>,
    }
    impl Write for FlushProbe {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.pending.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            let mut p = self.pending.lock().unwrap();
            self.flushed.lock().unwrap().extend(p.drain(..));
            Ok(())
        }
    }

    fn parts(f: &str, kind: EventType) -> EventParts {
        EventParts {
            kind,
            process: Process::Client(0),
            f: f.into(),
            key: Some("k0".into()),
            value: serde_json::Value::Null,
            error: None,
            node: Some("n1".into()),
        }
    }

    #[test]
    fn every_event_is_flushed_as_one_line_before_record_returns() {
        let probe = FlushProbe::default();
        let w = HistoryWriter::from_writer(Box::new(probe.clone()), "probe".into());
        w.record(parts("read", EventType::Invoke)).unwrap();
        let flushed = String::from_utf8(probe.flushed.lock().unwrap().clone()).unwrap();
        assert!(probe.pending.lock().unwrap().is_empty(), "bytes left unflushed");
        assert_eq!(flushed.lines().count(), 1);
        assert!(flushed.ends_with('\n'));
        w.record(parts("read", EventType::Ok)).unwrap();
        let flushed = String::from_utf8(probe.flushed.lock().unwrap().clone()).unwrap();
        assert_eq!(flushed.lines().count(), 2);
        let events: Vec<Event> = flushed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(events[0].index, 0);
        assert_eq!(events[1].index, 1);
        assert!(events[0].time <= events[1].time);
        assert_eq!(events[1].kind, EventType::Ok);
    }

    #[test]
    fn file_is_readable_line_by_line_while_writer_is_alive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.jsonl");
        let w = HistoryWriter::create(&path).unwrap();
        for i in 0..5 {
            let mut p = parts("write", EventType::Invoke);
            p.value = serde_json::json!(i);
            w.record(p).unwrap();
            // Read back from disk with the writer still open: the line must be there.
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(text.lines().count(), i + 1);
        }
        assert_eq!(w.len(), 5);
    }

    #[test]
    fn concurrent_writers_produce_dense_ordered_indexes() {
        let probe = FlushProbe::default();
        let w = Arc::new(HistoryWriter::from_writer(Box::new(probe.clone()), "probe".into()));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        w.record(parts("read", EventType::Invoke)).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let text = String::from_utf8(probe.flushed.lock().unwrap().clone()).unwrap();
        let events: Vec<Event> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(events.len(), 400);
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.index, i as u64);
            if i > 0 {
                assert!(events[i - 1].time <= e.time);
            }
        }
    }
}
