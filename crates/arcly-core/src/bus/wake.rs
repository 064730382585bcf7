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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;

const SHARDS: usize = 16;

/// One subscriber's registration.
#[derive(Debug, Default)]
pub(crate) struct WaitSlot {
    waker: Mutex<Option<Waker>>,
    /// True while the slot is in the set.
    queued: AtomicBool,
}

/// One shard of a [`WaitSet`].
#[derive(Debug, Default)]
struct Shard {
    slots: Mutex<Vec<Arc<WaitSlot>>>,
    /// True while `slots` may be non-empty; set by the registration that
    /// makes it non-empty, so the waker can skip empty shards without a lock.
    occupied: AtomicBool,
}

/// The subscribers waiting for the next frame.
#[derive(Debug, Default)]
pub(crate) struct WaitSet {
    shards: [Shard; SHARDS],
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

#[cfg(test)]
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
