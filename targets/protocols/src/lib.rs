//! faultline-protocols: pure protocol cores of the reference roles.
//!
//! Each module is a deterministic state machine: events in (ticks, messages, client requests),
//! and a `Ready`-style batch out (messages to send, state to persist, client replies). No I/O,
//! no threads, no clocks of its own: the node binary (`faultline-node`) drives them, which is
//! what makes them testable on an in-memory simulated network.

pub mod available;
pub mod crdt;
pub mod lb;
pub mod multi_primary;
pub mod paxos;
pub mod primary_backup;
pub mod quorum;
pub mod raft;
pub mod sharding;
pub mod slot;
pub mod vclock;
