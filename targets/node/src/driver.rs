//! The one event-loop driver of the node's roles: each role's state lives in one task that
//! wakes on a timer tick or on a batch of requests from its channel, and handles them without
//! locks (the pure core is single-threaded, as raft-rs's `RawNode` is driven).
//!
//! A batch is the first request awaited, then whatever else is already queued, up to a bound:
//! one persist or one flush then covers many requests (group commit), and the bound keeps a
//! flood of requests from starving the timer.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Interval, MissedTickBehavior};

/// Why the driver woke up.
pub enum Wake<E> {
    /// The timer fired.
    Tick,
    /// Requests, at least one, at most the driver's batch bound, in arrival order.
    Batch(Vec<E>),
}

/// A role task's wake-up source.
pub struct Driver<E> {
    rx: mpsc::Receiver<E>,
    ticker: Option<Interval>,
    batch_max: usize,
}

impl<E> Driver<E> {
    /// Ticks every `tick` (a late tick is delayed, never bunched) when given; batches of at most
    /// `batch_max` requests (at least 1).
    pub fn new(rx: mpsc::Receiver<E>, tick: Option<Duration>, batch_max: usize) -> Driver<E> {
        let ticker = tick.map(|t| {
            let mut i = tokio::time::interval(t);
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        });
        Driver { rx, ticker, batch_max: batch_max.max(1) }
    }

    /// The next tick or batch; `None` once every sender is gone (the role then ends).
    pub async fn next(&mut self) -> Option<Wake<E>> {
        let first = match &mut self.ticker {
            Some(t) => tokio::select! {
                _ = t.tick() => return Some(Wake::Tick),
                r = self.rx.recv() => r?,
            },
            None => self.rx.recv().await?,
        };
        let mut batch = vec![first];
        while batch.len() < self.batch_max {
            match self.rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        Some(Wake::Batch(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_are_bounded_and_in_order_and_the_end_is_none() {
        let (tx, rx) = mpsc::channel(16);
        for i in 0..5 {
            tx.send(i).await.unwrap();
        }
        let mut d = Driver::new(rx, None, 3);
        let Some(Wake::Batch(a)) = d.next().await else { panic!("a batch") };
        let Some(Wake::Batch(b)) = d.next().await else { panic!("a batch") };
        assert_eq!((a, b), (vec![0, 1, 2], vec![3, 4]));
        drop(tx);
        assert!(d.next().await.is_none());
    }

    #[tokio::test]
    async fn the_timer_wakes_an_idle_driver() {
        let (_tx, rx) = mpsc::channel::<u8>(1);
        let mut d = Driver::new(rx, Some(Duration::from_millis(5)), 8);
        assert!(matches!(d.next().await, Some(Wake::Tick)), "the first tick is immediate");
        assert!(matches!(d.next().await, Some(Wake::Tick)));
    }
}
