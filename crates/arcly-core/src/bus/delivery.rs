//! What the stream delivered to its subscribers, read when someone asks
//! (a metrics scrape, the API), never counted on a shared counter.
//!
//! Each subscriber owns a [`DeliveryCell`]: after each drain that moved it
//! it stores its totals (frames, payload bytes) and its position there
//! with three relaxed stores. The cell lives in the subscriber's
//! [`WaitSlot`](super::wake::WaitSlot), the cache line it writes whenever
//! it waits for frames anyway and that no other subscriber shares: delivery
//! costs no atomic read-modify-write, no line shared between subscribers
//! and no allocation of its own. The stream lists the live slots in
//! [`Deliveries`] (locked once when a subscriber joins, once when it leaves,
//! once per read); a leaving subscriber's totals are added to the departed
//! totals under the same lock, so a sum never counts one twice or drops
//! one, and never goes down.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use super::wake::SlotRef;

/// One subscriber's delivery figures, written only by that subscriber.
#[derive(Debug, Default)]
pub(crate) struct DeliveryCell {
    frames: AtomicU64,
    bytes: AtomicU64,
    /// The sequence number of the next frame it will read.
    position: AtomicU64,
    /// Its index in [`Deliveries::live`]; changed under that lock only.
    index: AtomicUsize,
}

impl DeliveryCell {
    /// Stores the subscriber's totals and position. Called by the owning
    /// subscriber only, so plain relaxed stores do.
    #[inline]
    pub(crate) fn store(&self, frames: u64, bytes: u64, position: u64) {
        self.frames.store(frames, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
        self.position.store(position, Ordering::Relaxed);
    }
}

/// Delivery totals of a stream at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct DeliveryTotals {
    /// Frames delivered to all subscribers, past and present.
    pub(super) frames: u64,
    /// Payload bytes delivered to all subscribers, past and present.
    pub(super) bytes: u64,
    /// The position of the subscriber furthest behind, if any.
    pub(super) laggard: Option<u64>,
}

/// The live subscribers' slots and what those that left were delivered.
#[derive(Debug, Default)]
pub(super) struct Deliveries {
    live: Vec<SlotRef>,
    departed_frames: u64,
    departed_bytes: u64,
}

impl Deliveries {
    /// Lists the slot of a subscriber joining at `position`.
    pub(super) fn join(&mut self, slot: &SlotRef, position: u64) {
        let cell = &slot.delivery;
        cell.position.store(position, Ordering::Relaxed);
        cell.index.store(self.live.len(), Ordering::Relaxed);
        self.live.push(slot.clone());
    }

    /// Removes `slot`; `frames` and `bytes` are the subscriber's final
    /// totals.
    pub(super) fn leave(&mut self, slot: &SlotRef, frames: u64, bytes: u64) {
        let i = slot.delivery.index.load(Ordering::Relaxed);
        if self.live.get(i).is_some_and(|s| std::ptr::eq(&**s, &**slot)) {
            self.live.swap_remove(i);
            if let Some(moved) = self.live.get(i) {
                moved.delivery.index.store(i, Ordering::Relaxed);
            }
        }
        self.departed_frames += frames;
        self.departed_bytes += bytes;
    }

    /// The totals now.
    pub(super) fn totals(&self) -> DeliveryTotals {
        let mut t = DeliveryTotals { frames: self.departed_frames, bytes: self.departed_bytes, laggard: None };
        for cell in self.live.iter().map(|s| &s.delivery) {
            t.frames += cell.frames.load(Ordering::Relaxed);
            t.bytes += cell.bytes.load(Ordering::Relaxed);
            let p = cell.position.load(Ordering::Relaxed);
            t.laggard = Some(t.laggard.map_or(p, |l: u64| l.min(p)));
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_live_and_departed_once() {
        let mut d = Deliveries::default();
        let cells: Vec<_> = (0..3).map(|_| super::super::wake::new_slot()).collect();
        for (i, c) in cells.iter().enumerate() {
            d.join(c, 10 + i as u64);
        }
        let store = |c: &SlotRef, f, b, p| c.delivery.store(f, b, p);
        assert_eq!(d.totals(), DeliveryTotals { frames: 0, bytes: 0, laggard: Some(10) });
        store(&cells[0], 5, 500, 15);
        store(&cells[1], 7, 700, 17);
        store(&cells[2], 1, 100, 12);
        assert_eq!(d.totals(), DeliveryTotals { frames: 13, bytes: 1300, laggard: Some(12) });
        // The first leaves: the last cell moves into its place.
        d.leave(&cells[0], 5, 500);
        assert_eq!(d.totals(), DeliveryTotals { frames: 13, bytes: 1300, laggard: Some(12) });
        d.leave(&cells[2], 1, 100);
        store(&cells[1], 9, 900, 19);
        assert_eq!(d.totals(), DeliveryTotals { frames: 15, bytes: 1500, laggard: Some(19) });
        d.leave(&cells[1], 9, 900);
        assert_eq!(d.totals(), DeliveryTotals { frames: 15, bytes: 1500, laggard: None });
        // Leaving twice does not remove another subscriber's cell.
        let again = super::super::wake::new_slot();
        d.join(&again, 20);
        d.leave(&cells[1], 0, 0);
        assert_eq!(d.totals().laggard, Some(20));
        d.leave(&again, 0, 0);
    }
}
