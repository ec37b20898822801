//! The checker seam: a history in, one judgement out (Jepsen's `Checker`), and their
//! composition by the runner (Jepsen's `compose` and `check-safe`).
//!
//! Workloads ([`crate::workload::Workload::checkers`]) and targets
//! ([`crate::target::Target::checkers`]) give checkers; [`check_all`] runs them over the same
//! [`History`], each on its own: a checker that panics is `unknown` with the panic's message,
//! never the end of the analysis, so one broken checker cannot hide the others' verdicts.

use faultline_checker::history::Event;
use faultline_checker::Verdict;
use serde_json::Value;

use crate::runtime::NodeSpec;
use crate::workload::CheckerResult;

/// What a checker judges: the recorded history, the cluster it ran on, and what the target
/// said about itself at the end ([`crate::target::Target::final_stats`]).
#[derive(Clone, Copy, Debug)]
pub struct History<'a> {
    pub events: &'a [Event],
    pub nodes: &'a [NodeSpec],
    pub target_stats: Option<&'a Value>,
}

impl<'a> History<'a> {
    /// A history alone (no cluster, no target stats): a stored run, a test.
    pub fn of(events: &'a [Event]) -> History<'a> {
        History { events, nodes: &[], target_stats: None }
    }
}

/// One judgement of a history.
pub trait Checker: Send + Sync {
    /// The name results.json records (`linearizable`, `set-full`, ...).
    fn name(&self) -> &str;
    fn check(&self, h: &History) -> CheckerResult;
}

/// A checker made of a name and a function.
struct FnChecker<F> {
    name: &'static str,
    f: F,
}

impl<F: Fn(&History) -> CheckerResult + Send + Sync> Checker for FnChecker<F> {
    fn name(&self) -> &str {
        self.name
    }
    fn check(&self, h: &History) -> CheckerResult {
        (self.f)(h)
    }
}

/// A boxed checker named `name` that judges with `f`.
pub fn checker<F>(name: &'static str, f: F) -> Box<dyn Checker>
where
    F: Fn(&History) -> CheckerResult + Send + Sync + 'static,
{
    Box::new(FnChecker { name, f })
}

/// Runs every checker over `h`, in order; each result carries its checker's name. A checker
/// that panics gives `unknown` with the panic message.
pub fn check_all(checkers: &[Box<dyn Checker>], h: &History) -> Vec<CheckerResult> {
    checkers
        .iter()
        .map(|c| {
            let run = std::panic::AssertUnwindSafe(|| c.check(h));
            let mut r = std::panic::catch_unwind(run).unwrap_or_else(|p| {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".into());
                CheckerResult::new(c.name(), Verdict::Unknown, Some(format!("the checker panicked: {msg}")))
            });
            r.name = c.name().to_string();
            r
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_checker_is_unknown_and_the_others_still_judge() {
        let list = vec![
            checker("boom", |_| panic!("index out of range")),
            checker("fine", |h| {
                CheckerResult::new("ignored", Verdict::Valid, Some(format!("{} events", h.events.len())))
            }),
        ];
        let r = check_all(&list, &History::of(&[]));
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].name.as_str(), r[0].verdict), ("boom", Verdict::Unknown));
        assert!(r[0].reason.as_deref().unwrap().contains("index out of range"), "{r:?}");
        assert_eq!((r[1].name.as_str(), r[1].verdict), ("fine", Verdict::Valid), "named after the checker");
        assert_eq!(r[1].reason.as_deref(), Some("0 events"));
    }
}
