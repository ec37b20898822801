//! Raft (Ongaro & Ousterhout 2014; Ongaro's thesis 2014) as a pure state machine, with a
//! key/value register state machine (read, write, compare-and-set on string keys, i64 values).
//!
//! What this module owns: leader election with randomized timeouts and pre-vote (thesis §9.6)
//! plus CheckQuorum-style leader stickiness; log replication with the consistency check and
//! conflict truncation (§5.3); commitment of current-term entries only (§5.4.2); snapshots and
//! log compaction with InstallSnapshot (§7); linearizable reads by read index (thesis §6.4) or,
//! optionally, by a clock-based lease (thesis §6.4.1); and the switchable, documented bugs in
//! [`Bugs`]. It owns no I/O: the runtime feeds it [`Raft::tick`], [`Raft::step`],
//! [`Raft::propose`] and [`Raft::read`], then drains [`Raft::take_ready`], persists what it
//! says, sends the messages and delivers the replies, in that order.

mod core;
mod log;
pub mod txn;
mod types;

pub use self::core::{Bugs, Config, Raft, ReadMode, Restore, Role, Status};
pub use self::log::RaftLog;
pub use self::types::*;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;
