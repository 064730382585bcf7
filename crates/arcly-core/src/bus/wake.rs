//! Waking subscribers that wait for frames.
//!
//! Each subscriber owns a [`WaitSlot`] holding its latest waker. A
//! subscriber that finds nothing to read registers its slot in the stream's
//! [`WaitSet`] (once, however often it is polled); the publisher, after
//! appending frames, takes every registered slot and wakes it. The set is
//! sharded so subscribers registering on different cores rarely meet on
//! one lock, and publishing costs one atomic load per shard when nobody
//! waits (no counter shared by all registrations: that one cache line,
//! written by every core on every registration, cost more than the rest).
//!
//! A subscriber registers *before* looking at the buffer a last time, and
//! the publisher looks at the set *after* appending under the buffer's lock,
//! so a frame is never published between a subscriber's last look and its
//! registration without that subscriber being woken.

use std::task::Waker;

// Under `--cfg arcly_loom` the model checker's types replace std's, so the
// registration protocol below is checked by `loom` (see `loom_tests`).
#[cfg(arcly_loom)]
use loom::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};
#[cfg(not(arcly_loom))]
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use super::delivery::DeliveryCell;

const SHARDS: usize = 16;

/// How a subscriber holds its slot (a model-checked `Arc` under loom).
pub(crate) type SlotRef = Arc<WaitSlot>;

/// A new, unregistered slot.
pub(crate) fn new_slot() -> SlotRef {
    Arc::new(WaitSlot::default())
}

/// One subscriber's registration, in a cache line of its own (no false
/// sharing with another subscriber's slot).
#[derive(Debug)]
#[repr(align(64))]
pub(crate) struct WaitSlot {
    waker: Mutex<Option<Waker>>,
    /// True while the slot is in the set.
    queued: AtomicBool,
    /// The subscriber's delivery figures (see [`super::delivery`]): in the
    /// line the subscriber writes whenever it waits anyway, so storing them
    /// costs no cache line of their own.
    pub(crate) delivery: DeliveryCell,
}

impl Default for WaitSlot {
    fn default() -> Self {
        Self { waker: Mutex::new(None), queued: AtomicBool::new(false), delivery: DeliveryCell::default() }
    }
}

/// One shard of a [`WaitSet`].
#[derive(Debug)]
struct Shard {
    slots: Mutex<Vec<Arc<WaitSlot>>>,
    /// True while `slots` may be non-empty; set by the registration that
    /// makes it non-empty, so the waker can skip empty shards without a lock.
    occupied: AtomicBool,
}

/// The subscribers waiting for the next frame.
#[derive(Debug)]
pub(crate) struct WaitSet {
    shards: [Shard; SHARDS],
}

impl Default for WaitSet {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| Shard { slots: Mutex::new(Vec::new()), occupied: AtomicBool::new(false) }),
        }
    }
}

impl WaitSet {
    /// Registers `slot` (of subscriber `id`) to be woken with `waker`.
    pub(crate) fn register(&self, slot: &Arc<WaitSlot>, id: u64, waker: &Waker) {
        {
            let mut w = slot.waker.lock().unwrap_or_else(|e| e.into_inner());
            if !w.as_ref().is_some_and(|old| old.will_wake(waker)) {
                *w = Some(waker.clone());
            }
        }
        if !slot.queued.swap(true, Ordering::AcqRel) {
            let shard = &self.shards[id as usize % SHARDS];
            let mut slots = shard.slots.lock().unwrap_or_else(|e| e.into_inner());
            if slots.is_empty() {
                shard.occupied.store(true, Ordering::Release);
            }
            slots.push(slot.clone());
        }
    }

    /// Wakes every registered slot and empties the set.
    pub(crate) fn wake_all(&self) {
        let mut taken = Vec::new();
        for shard in &self.shards {
            if !shard.occupied.load(Ordering::Acquire) {
                continue;
            }
            let mut list = shard.slots.lock().unwrap_or_else(|e| e.into_inner());
            shard.occupied.store(false, Ordering::Release);
            std::mem::swap(&mut taken, &mut *list);
            drop(list);
            // Wake outside the shard lock: waking schedules a task.
            for slot in taken.drain(..) {
                slot.queued.store(false, Ordering::Release);
                // The waker stays in the slot: a subscriber is polled by the
                // same task next time, and cloning a waker is a reference
                // count that both cores would write.
                if let Some(w) = slot.waker.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                    w.wake_by_ref();
                }
            }
        }
    }
}

#[cfg(all(test, arcly_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::RwLock;
    use std::task::Wake;

    /// A waker that records being woken, visible to the model checker.
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// The bus protocol: the publisher appends under the buffer's write lock
    /// then wakes the set; the subscriber registers then looks at the buffer
    /// under its read lock. In every interleaving the subscriber either sees
    /// the frame or is woken.
    #[test]
    fn no_lost_wakeup() {
        loom::model(|| {
            let set = Arc::new(WaitSet::default());
            let head = Arc::new(RwLock::new(0u64));
            let publisher = {
                let (set, head) = (set.clone(), head.clone());
                loom::thread::spawn(move || {
                    *head.write().unwrap() = 1;
                    set.wake_all();
                })
            };
            let flag = std::sync::Arc::new(Flag(AtomicBool::new(false)));
            let waker = Waker::from(flag.clone());
            let slot = Arc::new(WaitSlot::default());
            set.register(&slot, 3, &waker);
            let saw_frame = *head.read().unwrap() == 1;
            publisher.join().unwrap();
            assert!(saw_frame || flag.0.load(Ordering::SeqCst), "lost wake-up");
        });
    }

    /// Two wake-ups racing a re-registration never lose the second frame.
    #[test]
    fn reregistration_races_wake() {
        loom::model(|| {
            let set = Arc::new(WaitSet::default());
            let flag = std::sync::Arc::new(Flag(AtomicBool::new(false)));
            let waker = Waker::from(flag.clone());
            let slot = Arc::new(WaitSlot::default());
            set.register(&slot, 1, &waker);
            let head = Arc::new(RwLock::new(0u64));
            let publisher = {
                let (set, head) = (set.clone(), head.clone());
                loom::thread::spawn(move || {
                    for n in 1..=2 {
                        *head.write().unwrap() = n;
                        set.wake_all();
                    }
                })
            };
            // Woken (or not yet): take the flag, register again, look again.
            flag.0.store(false, Ordering::SeqCst);
            set.register(&slot, 1, &waker);
            let seen = *head.read().unwrap();
            publisher.join().unwrap();
            assert!(seen == 2 || flag.0.load(Ordering::SeqCst), "lost wake-up after re-registering");
        });
    }
}

#[cfg(all(test, not(arcly_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::task::Wake;

    struct Count(AtomicU32);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn a_slot_with_its_delivery_cell_is_one_cache_line() {
        assert_eq!(size_of::<WaitSlot>(), 64);
    }

    #[test]
    fn repeated_registration_is_one_entry_and_one_wake() {
        let set = WaitSet::default();
        let count = Arc::new(Count(AtomicU32::new(0)));
        let waker = Waker::from(count.clone());
        let slot = Arc::new(WaitSlot::default());
        for _ in 0..1000 {
            set.register(&slot, 7, &waker);
        }
        let queued: usize = set.shards.iter().map(|s| s.slots.lock().unwrap().len()).sum();
        assert_eq!(queued, 1);
        set.wake_all();
        set.wake_all();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        set.register(&slot, 7, &waker);
        set.wake_all();
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
    }
}
