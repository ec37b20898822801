//! The `available` role (CAP's available system, AP): `faultline_protocols::available`'s
//! replica (HLC-stamped last-writer-wins registers, grow-only sets) run by the shared weak
//! runtime (`replicated.rs`: answer locally at once, fsync before the answer, push best
//! effort, periodic bounded anti-entropy). `/kv/cas` answers 501. Bug `no-anti-entropy`:
//! the periodic walk never runs, so whatever a push missed (a partition, a killed peer) is
//! never reconciled. See docs/targets.md.

use crate::replicated::{self, Core};
use faultline_protocols::available::{Entry, Replica};
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
    fn set_add(&mut self, key: &str, element: i64, _now_ms: i64) -> (Slot, Entry) {
        Replica::set_add(self, key, element)
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
        m.insert("slots".into(), json!(self.slots.len()));
        m.insert("hlc".into(), json!({"l_ms": self.l_ms, "c": self.c}));
        m
    }
}

pub async fn run(mut cfg: replicated::Config<Entry>) -> anyhow::Result<()> {
    let replica = match replicated::load::<Replica>(&cfg.data_dir, cfg.role)? {
        Some(r) if r.me == cfg.id => r,
        Some(r) => anyhow::bail!(
            "{}: the state belongs to node {:?}, not {:?}",
            replicated::state_path(&cfg.data_dir, cfg.role).display(),
            r.me,
            cfg.id
        ),
        None => Replica::new(&cfg.id),
    };
    tracing::info!(id = %cfg.id, slots = replica.slots.len(), bugs = ?cfg.bug_names, "starting available node");
    let members: std::collections::BTreeSet<String> = cfg.peers.keys().cloned().collect();
    cfg.validate = Arc::new(move |slot: &Slot, e: &Entry| {
        if !e.fits(slot) {
            return Err("the entry's kind does not match its slot".into());
        }
        match e {
            Entry::Register { stamp, .. } if !members.contains(&stamp.node) => {
                Err(format!("writer {:?} is not a member", stamp.node))
            }
            _ => Ok(()),
        }
    });
    replicated::run(cfg, replica).await
}
