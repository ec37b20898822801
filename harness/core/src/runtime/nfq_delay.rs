//! Latency without `tc netem` (this kernel has none): an NFQUEUE consumer that holds each
//! queued packet for a fixed delay, then accepts it.
//!
//! The runtime points `iptables ... -j NFQUEUE --queue-num Q --queue-bypass` at the queue; the
//! consumer runs on its own thread which first enters the node's network namespace (`setns`
//! changes only the calling thread, and NFQUEUE is per namespace). `--queue-bypass` makes the
//! kernel pass packets untouched when no consumer is bound, so a dead consumer cannot blackhole
//! a node. Held packets are bounded ([`MAX_HELD`]); beyond that, packets pass undelayed.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::RuntimeError;

/// Most packets held at once per queue.
pub const MAX_HELD: usize = 4096;

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
    pub fn start(netns: Option<PathBuf>, queue: u16, delay_ms: u64) -> Result<Self, RuntimeError> {
        let stop = Arc::new(AtomicBool::new(false));
        let delayed = Arc::new(AtomicU64::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (stop2, delayed2) = (stop.clone(), delayed.clone());
        let handle = std::thread::Builder::new()
            .name(format!("nfq-delay-{queue}"))
            .spawn(move || consume(netns, queue, delay_ms, stop2, delayed2, ready_tx))
            .map_err(RuntimeError::Io)?;
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(DelayQueue {
                stop,
                delayed,
                handle: Some(handle),
                queue,
                delay_ms,
            }),
            Ok(Err(why)) => {
                let _ = handle.join();
                Err(RuntimeError::Unsupported {
                    mechanism: "nfqueue".into(),
                    what: "latency".into(),
                    why,
                })
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

fn consume(
    netns: Option<PathBuf>,
    queue_num: u16,
    delay_ms: u64,
    stop: Arc<AtomicBool>,
    delayed: Arc<AtomicU64>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    if let Some(path) = netns {
        let entered = std::fs::File::open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
            .and_then(|f| {
                nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("setns {}: {e}", path.display()))
            });
        if let Err(e) = entered {
            let _ = ready.send(Err(e));
            return;
        }
    }
    let mut q = match nfq::Queue::open() {
        Ok(q) => q,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot open an NFQUEUE socket: {e}")));
            return;
        }
    };
    if let Err(e) = q.bind(queue_num) {
        let _ = ready.send(Err(format!("cannot bind NFQUEUE {queue_num}: {e}")));
        return;
    }
    // Only headers are needed to give a verdict; copying less keeps the socket cheap.
    let _ = q.set_copy_range(queue_num, 64);
    let _ = q.set_queue_max_len(queue_num, MAX_HELD as u32);
    q.set_nonblocking(true);
    let _ = ready.send(Ok(()));

    let delay = Duration::from_millis(delay_ms);
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    while !stop.load(Ordering::SeqCst) {
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
        // The delay is constant, so deadlines are in arrival order: release from the front.
        let now = Instant::now();
        while held.front().is_some_and(|(due, _)| *due <= now) {
            let (_, mut msg) = held.pop_front().expect("front exists");
            msg.set_verdict(nfq::Verdict::Accept);
            let _ = q.verdict(msg);
            delayed.fetch_add(1, Ordering::Relaxed);
        }
        if !got {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for (_, mut msg) in held.drain(..) {
        msg.set_verdict(nfq::Verdict::Accept);
        let _ = q.verdict(msg);
    }
    let _ = q.unbind(queue_num);
}
