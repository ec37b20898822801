//! The `lb` reference role's core: which backend serves the next request, which backends are
//! healthy, and which failed attempts may be retried. Pure (no I/O, no clock): the node binary's
//! proxy (`faultline-node --role lb`) drives it and owns the sockets and timers.
//!
//! Strategies ([`Strategy`]), always over the backends that are healthy and not yet tried for
//! this request:
//! - round robin: a cursor over the configured order, skipping ineligible backends;
//! - least connections: the fewest requests in flight; ties go round robin (a cursor over the
//!   configured order), so equally loaded backends share the work instead of the first one
//!   taking every tie;
//! - weighted: nginx's *smooth* weighted round robin (ngx_http_upstream_get_peer): every pick
//!   adds each eligible backend's weight to its current weight, picks the largest current weight
//!   (the first on ties) and takes the sum of the eligible weights from it. Over any run of
//!   `sum(weights)` picks each backend gets exactly its weight, interleaved (5:1:1 gives
//!   `a a b a c a a`).
//!
//! Bug flag [`Bugs::naive_weighted`]: the weighted round robin of the seed's Go sketch
//! (seed/000_7d80dfd41cfafc34.txt, §6): it adds a backend's weight to its counter and returns
//! the *first* backend whose counter reaches the total, so backends later in the list are
//! rarely reached: with weights 5:1:1 it picks 66:2:2 in 70 picks, and with equal weights
//! 20:6:4 in 30, where 50:10:10 and 10:10:10 were meant.
//!
//! Health ([`Health`]): active checks feed [`Balancer::observe`]; a healthy backend is dropped
//! after `fall` failed checks in a row and re-admitted after `rise` successful checks in a row
//! (HAProxy's `fall`/`rise`, nginx's `fails`/`passes`). Backends start healthy, as both do.
//!
//! Retries ([`may_retry`]): only an attempt that certainly never reached the backend (the
//! connection could not be established) is retried on another backend. An attempt that may have
//! reached it (a timeout, a connection broken after the request was sent, any answer) is never
//! retried: the backend may have executed it, and executing a write twice is a duplicate write
//! the client never asked for (a `cas` retried after it succeeded would even report failure).

use serde::Serialize;

#[cfg(test)]
mod tests;

/// How the next backend is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    RoundRobin,
    LeastConn,
    Weighted,
}

impl Strategy {
    pub const NAMES: &'static [&'static str] = &["round-robin", "least-conn", "weighted"];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round-robin",
            Strategy::LeastConn => "least-conn",
            Strategy::Weighted => "weighted",
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = LbError;
    fn from_str(s: &str) -> Result<Self, LbError> {
        match s {
            "round-robin" => Ok(Strategy::RoundRobin),
            "least-conn" => Ok(Strategy::LeastConn),
            "weighted" => Ok(Strategy::Weighted),
            other => Err(LbError::UnknownStrategy(other.to_string())),
        }
    }
}

/// Named, documented bugs (docs/targets.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Bugs {
    /// `weighted` uses the seed's weighted round robin, whose picks do not follow the weights.
    pub naive_weighted: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LbError {
    #[error("unknown strategy {0:?}: expected round-robin, least-conn or weighted")]
    UnknownStrategy(String),
    #[error("no backends")]
    NoBackends,
    #[error("backend {0:?} listed twice")]
    DuplicateBackend(String),
    #[error("weight of backend {id:?} is {weight}: weights must be in [1, {max}]", max = WEIGHT_MAX)]
    BadWeight { id: String, weight: u32 },
    #[error("health thresholds must be at least 1 (fall {fall}, rise {rise})")]
    BadThresholds { fall: u32, rise: u32 },
}

/// Largest weight accepted (keeps the smooth algorithm's sums far from overflow).
pub const WEIGHT_MAX: u32 = 1_000_000;

/// Active health check thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Thresholds {
    /// Failed checks in a row that drop a healthy backend.
    pub fall: u32,
    /// Successful checks in a row that re-admit a dropped backend.
    pub rise: u32,
}

/// A change of a backend's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transition {
    Dropped,
    Readmitted,
}

/// One backend's health state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    pub healthy: bool,
    /// Checks in a row that disagree with `healthy` (failures while healthy, successes while
    /// dropped); reset by a check that agrees.
    pub streak: u32,
}

impl Health {
    fn observe(&mut self, ok: bool, t: Thresholds) -> Option<Transition> {
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.healthy { t.fall } else { t.rise };
        if self.streak < needed {
            return None;
        }
        self.healthy = ok;
        self.streak = 0;
        Some(if ok { Transition::Readmitted } else { Transition::Dropped })
    }
}

/// One backend as the balancer sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Backend {
    pub id: String,
    pub weight: u32,
    pub health: Health,
    /// Requests picked for this backend and not yet released.
    pub in_flight: u32,
    /// Smooth weighted round robin's current weight.
    current: i64,
    /// The naive sketch's counter (bug `naive-weighted`).
    naive_current: i64,
}

/// Why an attempt on a backend did not produce an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The connection could not be established (refused, or no handshake within the connect
    /// timeout): the request was never sent.
    Connect,
    /// Timed out after the request may have been sent.
    Timeout,
    /// The connection broke after the request may have been sent.
    Broken,
}

/// Whether a failed attempt may be retried on another backend: only when the request certainly
/// never reached the backend (see the module docs for why).
pub fn may_retry(f: AttemptFailure) -> bool {
    matches!(f, AttemptFailure::Connect)
}

/// The balancer: strategy state, health and in-flight counts of every backend.
#[derive(Clone, Debug)]
pub struct Balancer {
    strategy: Strategy,
    bugs: Bugs,
    thresholds: Thresholds,
    backends: Vec<Backend>,
    /// Round robin (and least-conn tie) cursor: the index to consider first.
    cursor: usize,
}

impl Balancer {
    /// `backends` are (id, weight) in the configured order; weights matter only to `weighted`.
    pub fn new(
        backends: Vec<(String, u32)>,
        strategy: Strategy,
        thresholds: Thresholds,
        bugs: Bugs,
    ) -> Result<Self, LbError> {
        if backends.is_empty() {
            return Err(LbError::NoBackends);
        }
        if thresholds.fall == 0 || thresholds.rise == 0 {
            return Err(LbError::BadThresholds { fall: thresholds.fall, rise: thresholds.rise });
        }
        let mut out: Vec<Backend> = Vec::with_capacity(backends.len());
        for (id, weight) in backends {
            if out.iter().any(|b| b.id == id) {
                return Err(LbError::DuplicateBackend(id));
            }
            if weight == 0 || weight > WEIGHT_MAX {
                return Err(LbError::BadWeight { id, weight });
            }
            out.push(Backend {
                id,
                weight,
                health: Health { healthy: true, streak: 0 },
                in_flight: 0,
                current: 0,
                naive_current: 0,
            });
        }
        Ok(Balancer { strategy, bugs, thresholds, backends: out, cursor: 0 })
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    pub fn healthy_count(&self) -> usize {
        self.backends.iter().filter(|b| b.health.healthy).count()
    }

    /// Picks a healthy backend not in `tried` and counts it in flight (until [`release`]).
    /// `None` when no backend is eligible.
    ///
    /// [`release`]: Balancer::release
    pub fn pick(&mut self, tried: &[usize]) -> Option<usize> {
        let eligible: Vec<usize> =
            (0..self.backends.len()).filter(|i| self.backends[*i].health.healthy && !tried.contains(i)).collect();
        if eligible.is_empty() {
            return None;
        }
        let ix = match self.strategy {
            Strategy::RoundRobin => self.next_from_cursor(&eligible),
            Strategy::LeastConn => {
                let least = eligible.iter().map(|&i| self.backends[i].in_flight).min().expect("non-empty");
                let tied: Vec<usize> =
                    eligible.iter().copied().filter(|&i| self.backends[i].in_flight == least).collect();
                self.next_from_cursor(&tied)
            }
            Strategy::Weighted if self.bugs.naive_weighted => self.naive_weighted(&eligible),
            Strategy::Weighted => self.smooth_weighted(&eligible),
        };
        self.backends[ix].in_flight += 1;
        Some(ix)
    }

    /// Ends a request picked with [`Balancer::pick`].
    pub fn release(&mut self, ix: usize) {
        if let Some(b) = self.backends.get_mut(ix) {
            b.in_flight = b.in_flight.saturating_sub(1);
        }
    }

    /// Feeds one health check result of backend `ix`; returns the change it caused, if any.
    pub fn observe(&mut self, ix: usize, ok: bool) -> Option<Transition> {
        let t = self.thresholds;
        let b = self.backends.get_mut(ix)?;
        let change = b.health.observe(ok, t);
        if change == Some(Transition::Readmitted) {
            // As nginx does for a peer coming back: start from zero rather than from a current
            // weight accumulated long ago, so it does not take a burst of picks at once.
            b.current = 0;
            b.naive_current = 0;
        }
        change
    }

    /// The first of `candidates` (ascending indexes) at or after the cursor, wrapping; the
    /// cursor then moves past it.
    fn next_from_cursor(&mut self, candidates: &[usize]) -> usize {
        let ix = candidates.iter().copied().find(|&i| i >= self.cursor).unwrap_or(candidates[0]);
        self.cursor = (ix + 1) % self.backends.len();
        ix
    }

    /// nginx's smooth weighted round robin over `eligible`.
    fn smooth_weighted(&mut self, eligible: &[usize]) -> usize {
        let total: i64 = eligible.iter().map(|&i| i64::from(self.backends[i].weight)).sum();
        let mut best = eligible[0];
        for &i in eligible {
            let b = &mut self.backends[i];
            b.current += i64::from(b.weight);
            if b.current > self.backends[best].current {
                best = i;
            }
        }
        self.backends[best].current -= total;
        best
    }

    /// The seed's sketch, kept as the `naive-weighted` bug: the first backend whose counter
    /// reaches the total wins, and the backends after it are not even counted this round.
    fn naive_weighted(&mut self, eligible: &[usize]) -> usize {
        let total: i64 = eligible.iter().map(|&i| i64::from(self.backends[i].weight)).sum();
        for &i in eligible {
            let b = &mut self.backends[i];
            b.naive_current += i64::from(b.weight);
            if b.naive_current >= total {
                b.naive_current -= total;
                return i;
            }
        }
        // "Fallback to first server".
        eligible[0]
    }
}
