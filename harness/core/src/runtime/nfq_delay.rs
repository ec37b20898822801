//! Latency without `tc netem` (this kernel has none): an NFQUEUE consumer that holds each
//! queued packet for a fixed delay, then accepts it.
//!
//! The runtime points `iptables ... -j NFQUEUE --queue-num Q --queue-bypass` at the queue; the
//! consumer runs on its own thread which first enters the node's network namespace (`setns`
//! changes only the calling thread, and NFQUEUE is per namespace). `--queue-bypass` makes the
//! kernel pass packets untouched when no consumer is bound, so a dead consumer cannot blackhole
//! a node. Held packets are bounded ([`MAX_HELD`]); beyond that, packets pass undelayed.
//!
//! A held packet on a link that is cut by the time it is due ([`Cuts`]) is not released until
//! the firewall rules of the cut are in force, and then meets them (dropped, or refused with a
//! TCP reset): a cut takes effect at once for traffic in flight, although the rules take tens
//! of ms to land, and a sender whose link is refused still learns so (a fault that follows
//! elections needs both, `nemesis::churn`).

use std::collections::{HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::RuntimeError;

/// Most packets held at once per queue.
pub const MAX_HELD: usize = 4096;

/// The links cut now, shared by every queue of a run.
#[derive(Clone, Debug, Default)]
pub struct CutState {
    /// (source, destination) addresses.
    pub links: HashSet<(Ipv4Addr, Ipv4Addr)>,
    /// Whether the firewall rules of these cuts are in force on every node.
    pub installed: bool,
}

pub type Cuts = Arc<RwLock<CutState>>;

/// A running delay consumer. Dropping it stops the thread and releases held packets.
pub struct DelayQueue {
    stop: Arc<AtomicBool>,
    delayed: Arc<AtomicU64>,
    handle: Option<JoinHandle<()>>,
    pub queue: u16,
    pub delay_ms: u64,
}

impl DelayQueue {
    /// Starts a consumer of queue `queue` inside the namespace at `netns` (a path like
    /// `/run/netns/NAME`; `None` = the harness's own namespace). Returns once the queue is bound,
    /// or the error that prevented binding.
    pub fn start(netns: Option<PathBuf>, queue: u16, delay_ms: u64, cuts: Cuts) -> Result<Self, RuntimeError> {
        let stop = Arc::new(AtomicBool::new(false));
        let delayed = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (stop2, delayed2) = (stop.clone(), delayed.clone());
        let handle = std::thread::Builder::new()
            .name(format!("nfq-delay-{queue}"))
            .spawn(move || consume(netns, queue, delay_ms, cuts, stop2, delayed2, ready_tx))
            .map_err(RuntimeError::Io)?;
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(DelayQueue { stop, delayed, handle: Some(handle), queue, delay_ms }),
            Ok(Err(why)) => {
                let _ = handle.join();
                Err(RuntimeError::Unsupported { mechanism: "nfqueue".into(), what: "latency".into(), why })
            }
            Err(_) => {
                stop.store(true, Ordering::SeqCst);
                Err(RuntimeError::Unsupported {
                    mechanism: "nfqueue".into(),
                    what: "latency".into(),
                    why: "the queue consumer did not start within 5 s".into(),
                })
            }
        }
    }

    /// Packets delayed so far.
    pub fn delayed(&self) -> u64 {
        self.delayed.load(Ordering::Relaxed)
    }
}

impl Drop for DelayQueue {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The consumer thread: binds the queue (saying on `ready` whether it could), then holds each
/// packet for `delay_ms` until `stop`, then releases what it still holds.
fn consume(
    netns: Option<PathBuf>,
    queue_num: u16,
    delay_ms: u64,
    cuts: Cuts,
    stop: Arc<AtomicBool>,
    delayed: Arc<AtomicU64>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let mut q = match open_queue(netns, queue_num) {
        Ok(q) => q,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));

    let delay = Duration::from_millis(delay_ms);
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    // Due packets on a cut link, waiting for the cut's rules (module doc).
    let mut parked: Vec<nfq::Message> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let got = receive_round(&mut q, &mut held, delay, queue_num);
        release_due(&mut q, &mut held, &mut parked, &delayed, &cuts);
        if !got {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for mut msg in parked.drain(..).chain(held.drain(..).map(|(_, m)| m)) {
        msg.set_verdict(nfq::Verdict::Accept);
        let _ = q.verdict(msg);
    }
    let _ = q.unbind(queue_num);
}

/// Enters the namespace at `netns` (if any) and binds queue `queue_num`, non-blocking, holding
/// at most [`MAX_HELD`] packets in the kernel.
fn open_queue(netns: Option<PathBuf>, queue_num: u16) -> Result<nfq::Queue, String> {
    if let Some(path) = netns {
        std::fs::File::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display())).and_then(|f| {
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns {}: {e}", path.display()))
        })?;
    }
    let mut q = nfq::Queue::open().map_err(|e| format!("cannot open an NFQUEUE socket: {e}"))?;
    q.bind(queue_num).map_err(|e| format!("cannot bind NFQUEUE {queue_num}: {e}"))?;
    // Only headers are needed to give a verdict; copying less keeps the socket cheap.
    let _ = q.set_copy_range(queue_num, 64);
    let _ = q.set_queue_max_len(queue_num, MAX_HELD as u32);
    q.set_nonblocking(true);
    Ok(q)
}

/// Takes what the kernel has queued, at most 256 packets: each is held until `delay` from now,
/// or accepted at once when [`MAX_HELD`] are held already. Returns whether any came.
fn receive_round(
    q: &mut nfq::Queue,
    held: &mut VecDeque<(Instant, nfq::Message)>,
    delay: Duration,
    queue_num: u16,
) -> bool {
    let mut got = false;
    // Drain what the kernel has queued (bounded per round so releases stay timely).
    for _ in 0..256 {
        match q.recv() {
            Ok(mut msg) => {
                got = true;
                if held.len() >= MAX_HELD {
                    msg.set_verdict(nfq::Verdict::Accept);
                    let _ = q.verdict(msg);
                } else {
                    held.push_back((Instant::now() + delay, msg));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => {
                tracing::warn!("nfq-delay queue {queue_num}: recv: {e}");
                break;
            }
        }
    }
    got
}

/// Accepts the held packets that are due, counting them in `delayed`, except those on a link
/// cut before its rules are in force: they wait in `parked` until the rules are (or the link
/// is no longer cut), then go on to meet them.
fn release_due(
    q: &mut nfq::Queue,
    held: &mut VecDeque<(Instant, nfq::Message)>,
    parked: &mut Vec<nfq::Message>,
    delayed: &AtomicU64,
    cuts: &Cuts,
) {
    // The delay is constant, so deadlines are in arrival order: release from the front.
    let now = Instant::now();
    if parked.is_empty() && held.front().is_none_or(|(due, _)| *due > now) {
        return;
    }
    let cut = cuts.read().map(|c| c.clone()).unwrap_or_default();
    let waits =
        |msg: &nfq::Message| !cut.installed && ipv4_link(msg.get_payload()).is_some_and(|l| cut.links.contains(&l));
    let accept = |q: &mut nfq::Queue, mut msg: nfq::Message| {
        msg.set_verdict(nfq::Verdict::Accept);
        let _ = q.verdict(msg);
        delayed.fetch_add(1, Ordering::Relaxed);
    };
    let (wait, go): (Vec<_>, Vec<_>) = std::mem::take(parked).into_iter().partition(|m| waits(m));
    *parked = wait;
    go.into_iter().for_each(|m| accept(q, m));
    while held.front().is_some_and(|(due, _)| *due <= now) {
        let (_, msg) = held.pop_front().expect("front exists");
        if waits(&msg) && parked.len() < MAX_HELD {
            parked.push(msg);
        } else {
            accept(q, msg);
        }
    }
}

/// The (source, destination) of an IPv4 packet, from its header.
pub fn ipv4_link(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    let addr = |at: usize| Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3]);
    Some((addr(12), addr(16)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_of_an_ipv4_header_and_nothing_else() {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[12..16].copy_from_slice(&[10, 77, 0, 11]);
        h[16..20].copy_from_slice(&[10, 77, 0, 12]);
        assert_eq!(ipv4_link(&h), Some((Ipv4Addr::new(10, 77, 0, 11), Ipv4Addr::new(10, 77, 0, 12))));
        assert_eq!(ipv4_link(&h[..19]), None, "short");
        h[0] = 0x60;
        assert_eq!(ipv4_link(&h), None, "IPv6");
    }
}
