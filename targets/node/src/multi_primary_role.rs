//! The `multi-primary` role (master–master replication): `faultline_protocols::multi_primary`'s
//! replica (every node accepts writes; `--resolve lww` keeps the version with the greatest
//! (node clock, node id) stamp, `--resolve vclock` keeps concurrent versions as siblings
//! ordered by vector clocks) run by the shared weak runtime (`replicated.rs`: answer locally
//! at once, fsync before the answer, push best effort, periodic bounded anti-entropy). A set
//! add is the node's read-modify-write of the set's value. `/kv/cas` answers 501. See
//! docs/targets.md.

use crate::replicated::{self, Core};
use faultline_protocols::multi_primary::{Entry, Replica, Resolve};
use faultline_protocols::slot::Slot;
use serde_json::{json, Map, Value};
use std::sync::Arc;

impl Core for Replica {
    type Entry = Entry;
    fn read(&self, key: &str) -> Option<i64> {
        Replica::read(self, key)
    }
    fn write(&mut self, key: &str, value: i64, now_ms: i64) -> (Slot, Entry) {
        Replica::write(self, key, value, now_ms)
    }
    fn set_read(&self, key: &str) -> Vec<i64> {
        Replica::set_read(self, key)
    }
    fn set_add(&mut self, key: &str, element: i64, now_ms: i64) -> (Slot, Entry) {
        Replica::set_add(self, key, element, now_ms)
    }
    fn merge(&mut self, slot: &Slot, entry: &Entry) -> bool {
        Replica::merge(self, slot, entry)
    }
    fn batch_after(&self, after: Option<&Slot>, items_max: usize) -> (Vec<(Slot, Entry)>, Option<Slot>) {
        Replica::batch_after(self, after, items_max)
    }
    fn state(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("replica serializes")
    }
    fn status(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("resolve".into(), json!(self.resolve.name()));
        m.insert("slots".into(), json!(self.slots.len()));
        m.insert("writes".into(), json!(self.seq));
        // Slots holding more than one version right now (vclock mode only).
        m.insert("slots_with_siblings".into(), json!(self.slots.values().filter(|e| e.versions() > 1).count()));
        m.insert("siblings_max".into(), json!(self.slots.values().map(Entry::versions).max().unwrap_or(0)));
        m
    }
}

pub async fn run(mut cfg: replicated::Config<Entry>, resolve: Resolve) -> anyhow::Result<()> {
    let replica = match replicated::load::<Replica>(&cfg.data_dir, cfg.role)? {
        Some(r) if r.me != cfg.id => anyhow::bail!(
            "{}: the state belongs to node {:?}, not {:?}",
            replicated::state_path(&cfg.data_dir, cfg.role).display(),
            r.me,
            cfg.id
        ),
        // Versions of one mode mean nothing in the other.
        Some(r) if r.resolve != resolve => {
            anyhow::bail!("--resolve {}: the data directory holds a {} replica", resolve.name(), r.resolve.name())
        }
        Some(r) => r,
        None => Replica::new(&cfg.id, resolve),
    };
    tracing::info!(id = %cfg.id, resolve = resolve.name(), slots = replica.slots.len(), writes = replica.seq, "starting multi-primary node");
    let members: std::collections::BTreeSet<String> = cfg.peers.keys().cloned().collect();
    cfg.validate = Arc::new(move |slot: &Slot, e: &Entry| {
        if !e.fits(slot) {
            return Err("the entry's kind does not match its slot".into());
        }
        e.validate(&members, resolve)
    });
    replicated::run(cfg, replica).await
}
