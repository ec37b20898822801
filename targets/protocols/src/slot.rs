//! [`Slot`]: what one replicated entry of the weakly consistent roles (`available`,
//! `multi-primary`) is: a named register (`/kv/`) or a named set (`/set/`). The two namespaces
//! are separate, so a register and a set may share a name. Slots order registers before sets,
//! then by name: anti-entropy walks them in this order.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    Register(String),
    Set(String),
}

impl Slot {
    pub fn key(&self) -> &str {
        match self {
            Slot::Register(k) | Slot::Set(k) => k,
        }
    }
}

/// Serde for a slot map as a list of `[slot, entry]` pairs (JSON object keys must be strings).
pub mod as_pairs {
    use super::Slot;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<E: Serialize, S: Serializer>(m: &BTreeMap<Slot, E>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, E: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<Slot, E>, D::Error> {
        let pairs: Vec<(Slot, E)> = Vec::deserialize(d)?;
        Ok(pairs.into_iter().collect())
    }
}
