//! faultline-checker: pure checkers over recorded histories (no tokio, no I/O).
//!
//! Owns the history types ([`history`]) and everything that judges a history.

pub mod history;
