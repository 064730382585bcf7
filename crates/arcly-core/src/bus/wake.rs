//! Waking subscribers that wait for frames.
//!
//! Each subscriber owns a [`WaitSlot`] holding its latest waker. A
//! subscriber that finds nothing to read registers its slot in the stream's
//! [`WaitSet`] (once, however often it is polled); the publisher, after
//! appending frames, takes every registered slot and wakes it. The set is
//! sharded so subscribers registering on different cores rarely meet on
//! one lock, and publishing costs one atomic load when nobody waits.
//!
//! A subscriber registers *before* looking at the buffer a last time, and
//! the publisher looks at the set *after* appending under the buffer's lock,
//! so a frame is never published between a subscriber's last look and its
//! registration without that subscriber being woken.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// The subscribers waiting for the next frame.
#[derive(Debug)]
pub(crate) struct WaitSet {
    shards: [Mutex<Vec<Arc<WaitSlot>>>; SHARDS],
    /// Slots in all shards: lets the publisher skip the shards when zero.
    waiting: AtomicUsize,
}

impl Default for WaitSet {
    fn default() -> Self {
        Self { shards: std::array::from_fn(|_| Mutex::new(Vec::new())), waiting: AtomicUsize::new(0) }
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
            shard.lock().unwrap_or_else(|e| e.into_inner()).push(slot.clone());
            self.waiting.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Wakes every registered slot and empties the set.
    pub(crate) fn wake_all(&self) {
        if self.waiting.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut taken = Vec::new();
        for shard in &self.shards {
            let mut list = shard.lock().unwrap_or_else(|e| e.into_inner());
            if list.is_empty() {
                continue;
            }
            std::mem::swap(&mut taken, &mut *list);
            drop(list);
            self.waiting.fetch_sub(taken.len(), Ordering::AcqRel);
            // Wake outside the shard lock: waking schedules a task.
            for slot in taken.drain(..) {
                slot.queued.store(false, Ordering::Release);
                let waker = slot.waker.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(w) = waker {
                    w.wake();
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
        assert_eq!(set.waiting.load(Ordering::Relaxed), 1);
        set.wake_all();
        set.wake_all();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        set.register(&slot, 7, &waker);
        set.wake_all();
        assert_eq!(count.0.load(Ordering::Relaxed), 2);
    }
}
