//! The consistency-model comparison of one run: the hierarchy linearizable > sequential (per
//! key) > session (read-your-writes + monotonic reads) > convergent, a verdict per model, and
//! the strongest model the history satisfied. results.json records it as its `consistency`
//! block (docs/results.md, "The consistency block").
//!
//! Rules (applied by [`Consistency::from_models`]):
//! - linearizable ⇒ sequential (per key) ⇒ session: a linearization is a sequential order, and
//!   a sequential order gives the write order and read positions the session definition asks
//!   for. So an `invalid` weaker one of these makes each stronger one that was `unknown` or
//!   `not-checked` `invalid` too (with the reason), and a workload need not check a weaker one
//!   when a stronger one is valid (it reports it `not-checked`, implied).
//! - convergent (every node's final read equal after heal and quiet, and reflecting the
//!   acknowledged updates) is the weakest rung but is not implied by the others over a finite
//!   history (an indeterminate write may land between two final reads), so it is always judged
//!   on its own.
//! - `strongest` is the first model, strongest first, whose verdict is `valid`. A stronger
//!   model left `unknown` or `not-checked` does not stop it: the strongest model's reason then
//!   says which stronger ones are undecided (the history may satisfy them too). With no model
//!   valid, `strongest` is `none` when every model is `invalid`, else `unknown`.

use serde::{Deserialize, Serialize};

/// The models of the hierarchy, strongest first.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Model {
    Linearizable,
    /// Sequential consistency per key (not compositional: weaker than whole-history SC).
    Sequential,
    /// Read-your-writes and monotonic reads.
    Session,
    Convergent,
}

impl Model {
    /// Strongest first.
    pub const ALL: [Model; 4] = [Model::Linearizable, Model::Sequential, Model::Session, Model::Convergent];

    pub fn name(self) -> &'static str {
        match self {
            Model::Linearizable => "linearizable",
            Model::Sequential => "sequential",
            Model::Session => "session",
            Model::Convergent => "convergent",
        }
    }

    /// How a report shows it.
    pub fn label(self) -> &'static str {
        match self {
            Model::Linearizable => "linearizable",
            Model::Sequential => "sequential (per key)",
            Model::Session => "session (read-your-writes + monotonic reads)",
            Model::Convergent => "convergent",
        }
    }

    /// The models this one implies (weaker, on the implication chain).
    fn implies(self, other: Model) -> bool {
        const CHAIN: [Model; 3] = [Model::Linearizable, Model::Sequential, Model::Session];
        let at = |m| CHAIN.iter().position(|c| *c == m);
        matches!((at(self), at(other)), (Some(a), Some(b)) if a < b)
    }
}

/// One model's verdict.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum ModelVerdict {
    Valid,
    Invalid,
    Unknown,
    /// Not judged: implied by a stronger valid model, or no checker of this workload decides it.
    NotChecked,
}

impl ModelVerdict {
    pub fn name(self) -> &'static str {
        match self {
            ModelVerdict::Valid => "valid",
            ModelVerdict::Invalid => "invalid",
            ModelVerdict::Unknown => "unknown",
            ModelVerdict::NotChecked => "not-checked",
        }
    }
}

impl From<crate::Verdict> for ModelVerdict {
    fn from(v: crate::Verdict) -> Self {
        match v {
            crate::Verdict::Valid => ModelVerdict::Valid,
            crate::Verdict::Invalid => ModelVerdict::Invalid,
            crate::Verdict::Unknown => ModelVerdict::Unknown,
        }
    }
}

/// One entry of the `models` list.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct ModelResult {
    pub model: Model,
    pub verdict: ModelVerdict,
    /// Why (also for valid: which checker decided it).
    pub reason: String,
}

impl ModelResult {
    pub fn new(model: Model, verdict: impl Into<ModelVerdict>, reason: impl Into<String>) -> Self {
        ModelResult { model, verdict: verdict.into(), reason: reason.into() }
    }
}

/// The strongest model kept.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum Strongest {
    Linearizable,
    Sequential,
    Session,
    Convergent,
    /// Every model judged, none held.
    None,
    /// No model valid and some undecided.
    Unknown,
}

impl Strongest {
    pub fn name(self) -> &'static str {
        match self {
            Strongest::Linearizable => "linearizable",
            Strongest::Sequential => "sequential",
            Strongest::Session => "session",
            Strongest::Convergent => "convergent",
            Strongest::None => "none",
            Strongest::Unknown => "unknown",
        }
    }
}

impl From<Model> for Strongest {
    fn from(m: Model) -> Self {
        match m {
            Model::Linearizable => Strongest::Linearizable,
            Model::Sequential => Strongest::Sequential,
            Model::Session => Strongest::Session,
            Model::Convergent => Strongest::Convergent,
        }
    }
}

/// results.json's `consistency` block.
#[derive(Serialize, Deserialize, Clone, PartialEq, Eq, Debug)]
pub struct Consistency {
    pub strongest: Strongest,
    /// Every model of the hierarchy, strongest first.
    pub models: Vec<ModelResult>,
}

impl Consistency {
    /// Completes `given` (a model missing from it is `not-checked`), applies the implications
    /// and picks the strongest model (rules in the module documentation).
    pub fn from_models(given: Vec<ModelResult>) -> Consistency {
        let mut models: Vec<ModelResult> = Model::ALL
            .iter()
            .map(|&m| {
                given.iter().rev().find(|r| r.model == m).cloned().unwrap_or_else(|| {
                    ModelResult::new(m, ModelVerdict::NotChecked, "no checker of this workload decides it")
                })
            })
            .collect();
        // An invalid weaker model refutes every stronger one that implies it.
        for i in 0..models.len() {
            if models[i].verdict != ModelVerdict::Invalid {
                continue;
            }
            let weaker = models[i].model;
            for m in models[..i].iter_mut() {
                if m.model.implies(weaker) && matches!(m.verdict, ModelVerdict::Unknown | ModelVerdict::NotChecked) {
                    let was = format!("{}: {}", m.verdict.name(), m.reason);
                    m.verdict = ModelVerdict::Invalid;
                    m.reason =
                        format!("{} is invalid and {} implies it (on its own: {was})", weaker.name(), m.model.name());
                }
            }
        }
        let strongest = match models.iter().position(|r| r.verdict == ModelVerdict::Valid) {
            Some(i) => {
                let undecided: Vec<String> = models[..i]
                    .iter()
                    .filter(|r| r.verdict != ModelVerdict::Invalid)
                    .map(|r| format!("{} {}", r.model.name(), r.verdict.name()))
                    .collect();
                if !undecided.is_empty() {
                    let note = format!(
                        " (stronger models not decided: {}; the history may satisfy them too)",
                        undecided.join(", ")
                    );
                    models[i].reason.push_str(&note);
                }
                models[i].model.into()
            }
            None if models.iter().all(|r| r.verdict == ModelVerdict::Invalid) => Strongest::None,
            None => Strongest::Unknown,
        };
        Consistency { strongest, models }
    }

    /// Every model `not-checked` for `reason`: strongest `unknown`.
    pub fn not_checked(reason: &str) -> Consistency {
        Consistency::from_models(
            Model::ALL.iter().map(|&m| ModelResult::new(m, ModelVerdict::NotChecked, reason)).collect(),
        )
    }

    pub fn model(&self, m: Model) -> Option<&ModelResult> {
        self.models.iter().find(|r| r.model == m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ModelVerdict::*;

    fn c(v: [ModelVerdict; 4]) -> Consistency {
        Consistency::from_models(Model::ALL.iter().zip(v).map(|(&m, v)| ModelResult::new(m, v, "r")).collect())
    }

    #[test]
    fn strongest_is_the_first_valid_model() {
        assert_eq!(c([Valid, NotChecked, NotChecked, Valid]).strongest, Strongest::Linearizable);
        assert_eq!(c([Invalid, Valid, NotChecked, Valid]).strongest, Strongest::Sequential);
        assert_eq!(c([Invalid, Invalid, Valid, Invalid]).strongest, Strongest::Session);
        assert_eq!(c([Invalid, Invalid, Invalid, Valid]).strongest, Strongest::Convergent);
        assert_eq!(c([Invalid, Invalid, Invalid, Invalid]).strongest, Strongest::None);
        assert_eq!(c([Invalid, Invalid, Invalid, Unknown]).strongest, Strongest::Unknown);
        assert_eq!(c([NotChecked; 4]).strongest, Strongest::Unknown);
    }

    #[test]
    fn an_undecided_stronger_model_is_noted_in_the_strongest_ones_reason() {
        let r = c([Unknown, Valid, NotChecked, Valid]);
        assert_eq!(r.strongest, Strongest::Sequential);
        let why = &r.model(Model::Sequential).unwrap().reason;
        assert!(why.contains("not decided: linearizable unknown;"), "{why}");
        // Nothing to note when every stronger model is invalid.
        let r = c([Invalid, Valid, NotChecked, Valid]);
        assert_eq!(r.model(Model::Sequential).unwrap().reason, "r");
    }

    #[test]
    fn an_invalid_weaker_model_refutes_the_stronger_ones_it_is_implied_by() {
        let r = c([Unknown, NotChecked, Invalid, Invalid]);
        assert_eq!(r.strongest, Strongest::None);
        assert_eq!(r.model(Model::Linearizable).unwrap().verdict, Invalid);
        assert_eq!(r.model(Model::Sequential).unwrap().verdict, Invalid);
        assert!(r.model(Model::Sequential).unwrap().reason.contains("session is invalid"));
        // Convergence is not on the chain: its failure refutes nothing.
        let r = c([Unknown, Unknown, Unknown, Invalid]);
        assert_eq!(r.strongest, Strongest::Unknown);
        assert_eq!(r.model(Model::Linearizable).unwrap().verdict, Unknown);
    }

    #[test]
    fn missing_models_are_not_checked_and_the_json_shape_is_fixed() {
        let r = Consistency::from_models(vec![ModelResult::new(Model::Convergent, Valid, "final reads agree")]);
        assert_eq!(r.models.len(), 4);
        assert_eq!(r.strongest, Strongest::Convergent);
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["strongest"], "convergent");
        assert_eq!(j["models"][0]["model"], "linearizable");
        assert_eq!(j["models"][0]["verdict"], "not-checked");
        assert_eq!(j["models"][3]["verdict"], "valid");
        assert_eq!(
            j["models"][3]["reason"],
            "final reads agree (stronger models not decided: linearizable not-checked, sequential not-checked, session not-checked; the history may satisfy them too)"
        );
        let keys: Vec<&String> = j.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["models", "strongest"]);
        let back: Consistency = serde_json::from_value(j).unwrap();
        assert_eq!(back, r);
    }
}
