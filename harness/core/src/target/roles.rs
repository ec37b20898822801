//! The one table of the reference roles: for each role of `faultline-node` the harness drives,
//! whether it has a leader, whether it offers compare-and-set, the workloads it serves, its
//! `--target-opt` keys with the values each takes, and its planted bugs. `faultline run`,
//! `faultline campaign` and `--dry-run` check every combination against it before anything
//! starts ([`check_run`]); the launch code reads it for leaders and cas.
//!
//! The node binary keeps its own bug-to-role map (`BugArg::role` in targets/node/src/main.rs):
//! it depends on faultline-protocols only, and depending on this crate would pull the whole
//! control plane into the static node image. A bug added to one must be added to the other.

use crate::nemesis::{churn, net, Family};

/// The values a `--target-opt` key takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// An integer in `[min, max]`.
    Int { min: u64, max: u64 },
    /// A comma list of integers, each in `[min, max]`.
    Ints { min: u64, max: u64 },
    /// A comma list of non-empty keys.
    Keys,
}

/// One `--target-opt` key of a role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OptionSpec {
    pub key: &'static str,
    pub domain: Domain,
}

/// One reference role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleSpec {
    pub name: &'static str,
    /// Every node coordinates requests: no leader to wait for or to target.
    pub leaderless: bool,
    /// Offers compare-and-set (else `/kv/cas` answers 501 and the register workload has none).
    pub cas: bool,
    /// Faults that matter to it beyond the default schedule's common wave
    /// ([`crate::target::Target::declared_faults`]).
    pub faults: &'static [(Family, &'static str)],
    /// The workloads whose API it serves.
    pub workloads: &'static [&'static str],
    pub options: &'static [OptionSpec],
    /// Its `--bug` names (for `lb`, the front's; the backends' come from `backend-role`).
    pub bugs: &'static [&'static str],
}

const MS: Domain = Domain::Int { min: 1, max: 600_000 };
const BOOL: Domain = Domain::OneOf(&["true", "false"]);
const fn opt(key: &'static str, domain: Domain) -> OptionSpec {
    OptionSpec { key, domain }
}
/// The node's request timeout, taken by every role that answers clients itself; the harness sets
/// it from the client timeout when the user does not (`faultline run`).
pub const TIMEOUT: OptionSpec = opt("request-timeout-ms", MS);
const REGISTER: &[&str] = &["register"];
const REGISTER_SET: &[&str] = &["register", "set"];

/// The faults the reference Raft declares: figure 8 (`commit-old-term`) needs a partition that
/// follows the elections.
pub const RAFT_FAULTS: &[(Family, &str)] = &[(Family::Partition, churn::LEADER_CHURN)];

/// The faults the reference quorum (ABD) declares: message loss and delay switched on and off
/// (`net::FLAPPING`), which leave calls between replicas in doubt at every switch; the textbook
/// loop of `naive` takes a late call for a failed one (the first wave's steady loss and delay
/// caught it in 7 of 10 seeds; of the four anomalies looked at, two came at a window's edge).
pub const QUORUM_FAULTS: &[(Family, &str)] = &[(Family::Loss, net::FLAPPING), (Family::Latency, net::FLAPPING)];

/// Every reference role the harness drives.
pub const ROLE_SPECS: &[RoleSpec] = &[
    RoleSpec {
        name: "raft",
        leaderless: false,
        cas: true,
        faults: RAFT_FAULTS,
        // Transactions run through its log (`POST /txn`); no other role has them.
        workloads: &["register", "list-append", "rw-register"],
        options: &[
            opt("read-mode", Domain::OneOf(&["read-index", "lease"])),
            opt("election-ms", MS),
            opt("heartbeat-ms", MS),
            opt("snapshot-entries", Domain::Int { min: 1, max: 1 << 40 }),
            TIMEOUT,
        ],
        bugs: &[
            "no-fsync",
            "stale-read",
            "lease",
            "commit-old-term",
            "txn-read-committed",
            "txn-snapshot",
            "txn-dirty",
        ],
    },
    RoleSpec {
        name: "paxos",
        leaderless: true,
        cas: true,
        faults: &[],
        workloads: REGISTER,
        options: &[TIMEOUT],
        bugs: &["paxos-ignore-accepted"],
    },
    RoleSpec {
        name: "quorum",
        leaderless: true,
        cas: false,
        faults: QUORUM_FAULTS,
        workloads: REGISTER,
        options: &[TIMEOUT],
        bugs: &["naive"],
    },
    RoleSpec {
        name: "crdt",
        leaderless: true,
        cas: false,
        faults: &[],
        workloads: &["register", "set", "counter"],
        options: &[opt("gossip-ms", MS), TIMEOUT],
        bugs: &["bad-merge"],
    },
    RoleSpec {
        name: "available",
        leaderless: true,
        cas: false,
        faults: &[],
        workloads: REGISTER_SET,
        options: &[opt("anti-entropy-ms", MS), TIMEOUT],
        bugs: &["no-anti-entropy"],
    },
    RoleSpec {
        name: "multi-primary",
        leaderless: true,
        cas: false,
        faults: &[],
        workloads: REGISTER_SET,
        options: &[opt("resolve", Domain::OneOf(&["lww", "vclock"])), opt("anti-entropy-ms", MS), TIMEOUT],
        bugs: &[],
    },
    RoleSpec {
        name: "primary-backup",
        leaderless: false,
        cas: true,
        faults: &[],
        workloads: REGISTER_SET,
        options: &[
            opt("sync", BOOL),
            opt("read-from", Domain::OneOf(&["primary", "replica"])),
            opt("election-ms", MS),
            opt("heartbeat-ms", MS),
            TIMEOUT,
        ],
        bugs: &["sync-fallback"],
    },
    // `backend-role` is the harness's (target/lb.rs); the others are the front node's flags.
    RoleSpec {
        name: "lb",
        leaderless: false,
        cas: true,
        faults: &[],
        workloads: REGISTER,
        options: &[
            opt("strategy", Domain::OneOf(&["round-robin", "least-conn", "weighted"])),
            opt("weights", Domain::Ints { min: 1, max: 1_000_000 }),
            opt("stale-cache", BOOL),
            opt("backend-role", Domain::OneOf(super::lb::BACKEND_ROLES)),
            opt("health-interval-ms", Domain::Int { min: 1, max: 60_000 }),
            opt("health-timeout-ms", Domain::Int { min: 1, max: 60_000 }),
            opt("fall", Domain::Int { min: 1, max: 1000 }),
            opt("rise", Domain::Int { min: 1, max: 1000 }),
            opt("retries-max", Domain::Int { min: 0, max: 16 }),
        ],
        bugs: super::lb::FRONT_BUGS,
    },
    // The router's own flags; its shard groups' raft nodes keep their defaults.
    RoleSpec {
        name: "router",
        leaderless: false,
        cas: true,
        faults: &[],
        workloads: REGISTER,
        options: &[
            opt("sharding", Domain::OneOf(&["range", "hash", "directory", "consistent-hash"])),
            opt("split-points", Domain::Keys),
            TIMEOUT,
        ],
        bugs: super::router::ROUTER_BUGS,
    },
];

/// The role called `name`.
pub fn role(name: &str) -> Option<&'static RoleSpec> {
    ROLE_SPECS.iter().find(|r| r.name == name)
}

/// Every role's name, in table order.
pub fn names() -> impl Iterator<Item = &'static str> {
    ROLE_SPECS.iter().map(|r| r.name)
}

/// Every bug of every role.
pub fn all_bugs() -> impl Iterator<Item = &'static str> {
    ROLE_SPECS.iter().flat_map(|r| r.bugs.iter().copied())
}

impl Domain {
    /// Checks `value` against the domain; the error says what was expected.
    pub fn check(&self, value: &str) -> Result<(), String> {
        let int = |v: &str, min: u64, max: u64| match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(()),
            _ => Err(format!("expected an integer in [{min}, {max}], got {v:?}")),
        };
        match *self {
            Domain::OneOf(words) if words.contains(&value) => Ok(()),
            Domain::OneOf(words) => Err(format!("expected one of {}, got {value:?}", words.join(", "))),
            Domain::Int { min, max } => int(value, min, max),
            Domain::Ints { min, max } => value.split(',').try_for_each(|v| int(v, min, max)),
            Domain::Keys if value.split(',').all(|k| !k.is_empty()) => Ok(()),
            Domain::Keys => Err(format!("expected a comma list of keys, got {value:?}")),
        }
    }
}

/// Checks `--target-opt` strings against `role`'s options (key and value); returns the pairs
/// in the order given, or a usage error naming the option and what it takes.
pub fn parse_options(role: &RoleSpec, opts: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(opts.len());
    for o in opts {
        let Some((k, v)) = o.split_once('=') else {
            return Err(format!("--target-opt {o:?}: expected KEY=VALUE"));
        };
        let Some(spec) = role.options.iter().find(|s| s.key == k) else {
            let keys: Vec<&str> = role.options.iter().map(|s| s.key).collect();
            let expected = if keys.is_empty() { "none".to_string() } else { keys.join(", ") };
            return Err(format!("--target-opt {k:?} is not an option of role {}: expected {expected}", role.name));
        };
        if v.is_empty() {
            return Err(format!("--target-opt {k}: empty value"));
        }
        spec.domain.check(v).map_err(|e| format!("--target-opt {k}={v}: {e}"))?;
        if out.iter().any(|(seen, _)| seen == k) {
            return Err(format!("--target-opt {k}: given twice"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// What `faultline run --target ROLE` needs of its other flags: each bug one of the role's (or,
/// behind `lb`, of its backends'), each option in its domain, the workload one the role serves.
/// Returns the checked options.
pub fn check_run(
    role: &RoleSpec,
    workload: &str,
    bugs: &[String],
    opts: &[String],
) -> Result<Vec<(String, String)>, String> {
    let options = parse_options(role, opts)?;
    // Behind a load balancer the data lives in the backends: their bugs apply too.
    let backend = (role.name == "lb").then(|| super::lb::backend_role(&options)).and_then(self::role);
    for b in bugs {
        let owner = ROLE_SPECS.iter().find(|r| r.bugs.contains(&b.as_str()));
        match owner {
            None => {
                let known: Vec<&str> = all_bugs().collect();
                return Err(format!("unknown --bug {b:?}: expected one of {}", known.join(", ")));
            }
            Some(o) if o.name == role.name || backend.is_some_and(|be| be.name == o.name) => {}
            Some(o) => {
                let own = role.bugs.iter().chain(backend.map_or(&[][..], |be| be.bugs)).copied().collect::<Vec<_>>();
                let own = if own.is_empty() { "none".to_string() } else { own.join(", ") };
                return Err(format!(
                    "--bug {b} is a bug of role {}, not of --target {} (its bugs: {own})",
                    o.name, role.name
                ));
            }
        }
    }
    if !role.workloads.contains(&workload) {
        return Err(format!(
            "--target {} serves no {workload} API: its workloads are {}",
            role.name,
            role.workloads.join(", ")
        ));
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn a_bug_of_another_role_is_refused() {
        let e = check_run(role("paxos").unwrap(), "register", &s(&["lease"]), &[]).unwrap_err();
        assert!(e.contains("--bug lease is a bug of role raft, not of --target paxos"), "{e}");
        assert!(check_run(role("raft").unwrap(), "register", &s(&["lease", "stale-read"]), &[]).is_ok());
        assert!(check_run(role("raft").unwrap(), "register", &s(&["nope"]), &[])
            .unwrap_err()
            .contains("unknown --bug"));
        // Behind lb, the backends' bugs apply.
        let lb = role("lb").unwrap();
        assert!(check_run(lb, "register", &s(&["stale-read"]), &[]).is_ok());
        assert!(check_run(lb, "register", &s(&["naive"]), &s(&["backend-role=quorum"])).is_ok());
        assert!(check_run(lb, "register", &s(&["naive"]), &[]).is_err());
    }

    #[test]
    fn an_option_value_outside_its_domain_is_refused() {
        let raft = role("raft").unwrap();
        let e = check_run(raft, "register", &[], &s(&["read-mode=bogus"])).unwrap_err();
        assert!(e.contains("expected one of read-index, lease"), "{e}");
        assert!(check_run(raft, "register", &[], &s(&["election-ms=0"])).is_err());
        assert!(check_run(raft, "register", &[], &s(&["election-ms=-1"])).is_err());
        assert!(check_run(raft, "register", &[], &s(&["read-mode=lease", "election-ms=500"])).is_ok());
        let lb = role("lb").unwrap();
        assert!(check_run(lb, "register", &[], &s(&["weights=5,1,1"])).is_ok());
        assert!(check_run(lb, "register", &[], &s(&["weights=5,,1"])).is_err());
        assert!(check_run(lb, "register", &[], &s(&["backend-role=crdt"])).is_err());
        assert!(parse_options(raft, &s(&["read-mode=a", "read-mode=lease"])).is_err());
        assert!(parse_options(raft, &s(&["read-mode=lease", "read-mode=lease"])).unwrap_err().contains("given twice"));
    }

    #[test]
    fn a_workload_the_role_does_not_serve_is_refused() {
        for w in ["set", "counter"] {
            let e = check_run(role("raft").unwrap(), w, &[], &[]).unwrap_err();
            assert!(e.contains(&format!("serves no {w} API")), "{e}");
        }
        assert!(check_run(role("crdt").unwrap(), "counter", &[], &[]).is_ok());
        assert!(check_run(role("available").unwrap(), "counter", &[], &[]).is_err());
        assert!(check_run(role("primary-backup").unwrap(), "set", &[], &[]).is_ok());
        for w in ["list-append", "rw-register"] {
            assert!(check_run(role("raft").unwrap(), w, &[], &[]).is_ok());
            for r in ROLE_SPECS.iter().filter(|r| r.name != "raft") {
                let e = check_run(r, w, &[], &[]).unwrap_err();
                assert!(e.contains(&format!("serves no {w} API")), "{}: {e}", r.name);
            }
        }
    }

    #[test]
    fn every_bug_belongs_to_one_role() {
        let bugs: Vec<&str> = all_bugs().collect();
        for b in &bugs {
            assert_eq!(bugs.iter().filter(|x| x == &b).count(), 1, "{b} is listed twice");
        }
        assert_eq!(bugs.len(), 16, "{bugs:?}");
    }
}
