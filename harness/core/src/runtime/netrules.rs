//! The firewall text of network faults, shared by every runtime that gives each node its own
//! network namespace (local `netns`, Docker): pure functions from a fault state to
//! `iptables-restore` input, so the rules are written once and unit-tested without a kernel.
//!
//! Each node's namespace has two chains of ours, `FAULTLINE-IN` (hooked from INPUT) and
//! `FAULTLINE-OUT` (from OUTPUT). A fault state is applied by rewriting both chains in one
//! `iptables-restore --noflush` call, so a node never sees half a state: packets *to* the node
//! are dropped (cuts; TCP refused with a reset first where the state asks, so that senders fail
//! fast) or dropped at random (loss) on its INPUT; packets *from* it on a delayed
//! link go to an NFQUEUE (latency) with `--queue-bypass`, so they pass if no consumer runs.

use super::{NetFaults, RuntimeError};

/// The chains' names.
pub const CHAIN_IN: &str = "FAULTLINE-IN";
pub const CHAIN_OUT: &str = "FAULTLINE-OUT";

/// The NFQUEUE number of a delay inside one namespace: one queue per distinct delay.
pub fn queue_num(delay_ms: u64) -> u16 {
    (delay_ms % 60_000) as u16
}

/// Rule lines (no table header) that flush both chains and put `faults` into `node`'s
/// namespace; `ip_of` names a node's address. `with_delay` false leaves the delays out (their
/// consumers could not start).
pub fn chain_rules(
    node: &str,
    faults: &NetFaults,
    with_delay: bool,
    ip_of: impl Fn(&str) -> Result<String, RuntimeError>,
) -> Result<String, RuntimeError> {
    let mut rules = format!("-F {CHAIN_IN}\n-F {CHAIN_OUT}\n");
    rules += &input_rules(CHAIN_IN, node, faults, &ip_of)?;
    if with_delay {
        for (l, ms) in faults.delay.iter().filter(|(l, _)| l.from == node) {
            rules += &format!(
                "-A {CHAIN_OUT} -d {} -j NFQUEUE --queue-num {} --queue-bypass\n",
                ip_of(&l.to)?,
                queue_num(*ms)
            );
        }
    }
    Ok(rules)
}

/// The `-A` lines of `chain` (on `node`'s INPUT path) that drop packets to `node`: cuts, then
/// random loss; the source is `ip_of` the sending node. Shared by the namespace runtimes and the
/// SSH runtime (whose chain is named per run on each host).
pub fn input_rules(
    chain: &str,
    node: &str,
    faults: &NetFaults,
    ip_of: &impl Fn(&str) -> Result<String, RuntimeError>,
) -> Result<String, RuntimeError> {
    let mut rules = String::new();
    for l in faults.drop.iter().filter(|l| l.to == node) {
        if faults.refuse_tcp {
            rules += &format!("-A {chain} -s {} -p tcp -j REJECT --reject-with tcp-reset\n", ip_of(&l.from)?);
        }
        rules += &format!("-A {chain} -s {} -j DROP\n", ip_of(&l.from)?);
    }
    for (l, p) in faults.loss.iter().filter(|(l, _)| l.to == node) {
        rules +=
            &format!("-A {chain} -s {} -m statistic --mode random --probability {p:.4} -j DROP\n", ip_of(&l.from)?);
    }
    Ok(rules)
}

/// A whole `iptables-restore --noflush` input that rewrites `node`'s chains for `faults`.
pub fn restore_text(
    node: &str,
    faults: &NetFaults,
    with_delay: bool,
    ip_of: impl Fn(&str) -> Result<String, RuntimeError>,
) -> Result<String, RuntimeError> {
    Ok(format!("*filter\n{}COMMIT\n", chain_rules(node, faults, with_delay, ip_of)?))
}

/// The same, for a fresh namespace: creates the chains and hooks them first.
pub fn setup_text(
    node: &str,
    faults: &NetFaults,
    with_delay: bool,
    ip_of: impl Fn(&str) -> Result<String, RuntimeError>,
) -> Result<String, RuntimeError> {
    Ok(format!(
        "*filter\n:{CHAIN_IN} - [0:0]\n:{CHAIN_OUT} - [0:0]\n-A INPUT -j {CHAIN_IN}\n-A OUTPUT -j {CHAIN_OUT}\n{}COMMIT\n",
        chain_rules(node, faults, with_delay, ip_of)?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Link;

    fn link(from: &str, to: &str) -> Link {
        Link { from: from.into(), to: to.into() }
    }

    fn ip(n: &str) -> Result<String, RuntimeError> {
        match n {
            "n1" => Ok("10.77.0.11".into()),
            "n2" => Ok("10.77.0.12".into()),
            "n3" => Ok("10.77.0.13".into()),
            other => Err(RuntimeError::UnknownNode(other.into())),
        }
    }

    #[test]
    fn cuts_and_loss_go_on_the_receiver_and_delays_on_the_sender() {
        let f = NetFaults {
            drop: vec![link("n1", "n2"), link("n2", "n1")],
            loss: vec![(link("n3", "n2"), 0.25)],
            delay: vec![(link("n2", "n3"), 120)],
            refuse_tcp: false,
        };
        let n2 = restore_text("n2", &f, true, ip).unwrap();
        assert_eq!(
            n2,
            "*filter\n-F FAULTLINE-IN\n-F FAULTLINE-OUT\n-A FAULTLINE-IN -s 10.77.0.11 -j DROP\n\
             -A FAULTLINE-IN -s 10.77.0.13 -m statistic --mode random --probability 0.2500 -j DROP\n\
             -A FAULTLINE-OUT -d 10.77.0.13 -j NFQUEUE --queue-num 120 --queue-bypass\nCOMMIT\n"
        );
        let n3 = restore_text("n3", &f, true, ip).unwrap();
        assert_eq!(n3, "*filter\n-F FAULTLINE-IN\n-F FAULTLINE-OUT\nCOMMIT\n", "nothing reaches n3's chains");
        assert!(!restore_text("n2", &f, false, ip).unwrap().contains("NFQUEUE"), "delays left out");
    }

    #[test]
    fn refusing_cuts_reset_tcp_before_dropping_the_rest() {
        let f = NetFaults { drop: vec![link("n1", "n2")], refuse_tcp: true, ..NetFaults::default() };
        let n2 = restore_text("n2", &f, true, ip).unwrap();
        assert!(
            n2.contains("-A FAULTLINE-IN -s 10.77.0.11 -p tcp -j REJECT --reject-with tcp-reset\n-A FAULTLINE-IN -s 10.77.0.11 -j DROP\n"),
            "{n2}"
        );
        assert!(!restore_text("n1", &f, true, ip).unwrap().contains("REJECT"), "only the receiver refuses");
    }

    #[test]
    fn a_fresh_namespace_gets_its_chains_hooked_first_and_unknown_nodes_are_errors() {
        let f = NetFaults { drop: vec![link("n9", "n1")], ..NetFaults::default() };
        assert!(restore_text("n1", &f, true, ip).is_err(), "an unknown node is an error, not a silent no-op");
        let empty = setup_text("n1", &NetFaults::default(), true, ip).unwrap();
        assert!(empty.starts_with("*filter\n:FAULTLINE-IN - [0:0]\n:FAULTLINE-OUT - [0:0]\n-A INPUT -j FAULTLINE-IN\n-A OUTPUT -j FAULTLINE-OUT\n"));
        assert!(empty.ends_with("-F FAULTLINE-IN\n-F FAULTLINE-OUT\nCOMMIT\n"));
        assert_eq!(queue_num(60_120), 120);
    }
}
