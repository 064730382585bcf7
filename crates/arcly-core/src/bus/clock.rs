//! A shared batch clock: one timer for every player that writes once per
//! batch window.
//!
//! A player that drains the bus, writes, then sleeps until its next batch
//! window costs a timer registration and a timer firing per window. With
//! thousands of players on the same window those timer operations cost
//! more than the delivery itself. A [`BatchClock`] runs one timer per
//! window length and wakes every player waiting on it through the same
//! wait set the bus uses.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap().block_on(async {
//! use std::time::Duration;
//! use arcly_core::bus::BatchClock;
//!
//! let clock = BatchClock::start(Duration::from_millis(50));
//! let mut pacer = clock.pacer();
//! let t0 = tokio::time::Instant::now();
//! pacer.tick().await;
//! pacer.tick().await;
//! assert!(t0.elapsed() >= Duration::from_millis(50));
//! # });
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

/// One pacer's registration, held by the clock for the pacer's lifetime.
///
/// Registration is permanent rather than per tick: every pacer of a clock
/// waits on nearly every tick, so keeping the list costs less than adding
/// each pacer to a wait set again after each tick.
#[derive(Debug, Default)]
struct PacerSlot {
    waker: Mutex<Option<Waker>>,
    /// The pacer waits for a tick.
    waiting: AtomicBool,
    /// The pacer was dropped; the clock forgets the slot on its next tick.
    dropped: AtomicBool,
}

#[derive(Debug)]
struct ClockInner {
    period: Duration,
    /// Ticks so far.
    ticks: AtomicU64,
    pacers: Mutex<Vec<Arc<PacerSlot>>>,
}

impl ClockInner {
    fn tick(&self) {
        // SeqCst pairs with `Pacer::tick`: the pacer sets `waiting` then
        // reads `ticks`, the clock bumps `ticks` then reads `waiting`, so at
        // least one of them sees the other.
        self.ticks.fetch_add(1, Ordering::SeqCst);
        let mut pacers = self.pacers.lock().unwrap_or_else(|e| e.into_inner());
        pacers.retain(|slot| {
            if slot.dropped.load(Ordering::Acquire) {
                return false;
            }
            if slot.waiting.swap(false, Ordering::SeqCst) {
                // The waker stays in the slot: the pacer's task is the same
                // next time, and cloning a waker is a reference count.
                if let Some(w) = slot.waker.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    w.wake_by_ref();
                }
            }
            true
        });
    }
}

/// A periodic tick shared by many waiters. Cloning shares the clock; the
/// timer task stops once the last clone and the last [`Pacer`] are dropped.
#[derive(Clone, Debug)]
pub struct BatchClock {
    inner: Arc<ClockInner>,
}

impl BatchClock {
    /// Starts a clock ticking every `period` (at least 1 ms). Must be called
    /// within a tokio runtime: it spawns the timer task.
    pub fn start(period: Duration) -> Self {
        let period = period.max(Duration::from_millis(1));
        let inner = Arc::new(ClockInner { period, ticks: AtomicU64::new(0), pacers: Mutex::new(Vec::new()) });
        tokio::spawn(run(Arc::downgrade(&inner), period));
        Self { inner }
    }

    /// The tick period.
    pub fn period(&self) -> Duration {
        self.inner.period
    }

    /// A waiter for this clock's ticks. Each task that waits needs its own.
    pub fn pacer(&self) -> Pacer {
        let slot = Arc::new(PacerSlot::default());
        self.inner.pacers.lock().unwrap_or_else(|e| e.into_inner()).push(slot.clone());
        Pacer { clock: self.inner.clone(), seen: self.inner.ticks.load(Ordering::Acquire), slot }
    }
}

async fn run(clock: Weak<ClockInner>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(clock) = clock.upgrade() else { return };
        clock.tick();
    }
}

/// One task's view of a [`BatchClock`].
#[derive(Debug)]
pub struct Pacer {
    clock: Arc<ClockInner>,
    /// The tick count this pacer last returned at.
    seen: u64,
    slot: Arc<PacerSlot>,
}

impl Pacer {
    /// Waits for the clock's next tick after the one this pacer last saw.
    /// If ticks were missed while the task was busy, returns at once.
    pub async fn tick(&mut self) {
        std::future::poll_fn(|cx| {
            let now = self.clock.ticks.load(Ordering::Acquire);
            if now > self.seen {
                self.seen = now;
                return Poll::Ready(());
            }
            {
                let mut w = self.slot.waker.lock().unwrap_or_else(|e| e.into_inner());
                if !w.as_ref().is_some_and(|old| old.will_wake(cx.waker())) {
                    *w = Some(cx.waker().clone());
                }
            }
            self.slot.waiting.store(true, Ordering::SeqCst);
            let now = self.clock.ticks.load(Ordering::SeqCst);
            if now > self.seen {
                self.seen = now;
                return Poll::Ready(());
            }
            Poll::Pending
        })
        .await;
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.slot.dropped.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn many_pacers_share_one_tick() {
        let clock = BatchClock::start(Duration::from_millis(100));
        let start = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let mut pacer = clock.pacer();
                tokio::spawn(async move {
                    for _ in 0..5 {
                        pacer.tick().await;
                    }
                    tokio::time::Instant::now()
                })
            })
            .collect();
        for t in tasks {
            let done = t.await.unwrap();
            assert_eq!(done - start, Duration::from_millis(500));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn clock_stops_when_dropped() {
        let clock = BatchClock::start(Duration::from_millis(10));
        let weak = Arc::downgrade(&clock.inner);
        let pacers: Vec<_> = (0..3).map(|_| clock.pacer()).collect();
        tokio::time::sleep(Duration::from_millis(15)).await;
        drop(pacers);
        tokio::time::sleep(Duration::from_millis(15)).await;
        assert!(weak.upgrade().unwrap().pacers.lock().unwrap().is_empty(), "dropped pacers are forgotten");
        drop(clock);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(weak.upgrade().is_none());
    }
}
