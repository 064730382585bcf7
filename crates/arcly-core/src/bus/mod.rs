//! The pub/sub bus: one publisher's frames fanned out to any number of
//! subscribers.
//!
//! [`stream`] makes a stream's two ends: the [`StreamPublisher`] (one, owned
//! by the ingest session) and the [`StreamHandle`] (cheap to clone; players
//! call [`StreamHandle::subscribe`]).
//!
//! Guarantees:
//! - **Zero payload copies.** Frames are stored once, in shared chunks of
//!   the stream's buffer; a [`Batch`] of received frames holds one reference
//!   count per chunk it spans, not one per frame (see [`Batch`] for why).
//! - **Instant start.** A subscriber joining late gets the configuration
//!   (metadata, parameter sets, AudioSpecificConfig) in force at the latest
//!   keyframe, that keyframe, every frame since, then live frames. The join
//!   happens under the same lock as publishing, so nothing falls between the
//!   cached GOP and live.
//! - **Bounded lag.** Frames live in one buffer bounded in frames and bytes.
//!   A subscriber more than the lag limit behind, or whose next frame was
//!   dropped from the buffer, skips to the latest keyframe (or waits for the
//!   next) and the skip is counted; after too many skips in a row it is
//!   evicted. Publishing never waits for a subscriber and a stalled one holds
//!   no memory beyond the shared buffer.
//! - **Batches.** [`Subscriber::recv_batch`] returns everything available in
//!   one call, so a player can wake once per batch window; a [`BatchClock`]
//!   gives all players on one window a single shared timer.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use arcly_core::bus::{self, BusConfig};
//! use arcly_core::frame::{CodecId, FrameFlags, MediaFrame};
//! use bytes::Bytes;
//!
//! let (publisher, handle) = bus::stream("live/demo".parse().unwrap(), BusConfig::default(), None);
//! publisher.publish(MediaFrame::new(CodecId::H264, Bytes::from_static(b"idr")).with_flags(FrameFlags::KEYFRAME));
//! publisher.publish(MediaFrame::new(CodecId::H264, Bytes::from_static(b"p")));
//!
//! // A late joiner starts at the keyframe.
//! let mut sub = handle.subscribe();
//! let mut batch = bus::Batch::new();
//! sub.recv_batch(&mut batch, 64).await.unwrap();
//! assert_eq!(batch.len(), 2);
//! assert!(batch.iter().next().unwrap().is_keyframe());
//! # });
//! ```

mod batch;
mod clock;
mod delivery;
mod events;
mod qos;
mod ring;
mod wake;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::task::Poll;

pub use batch::{Batch, FrameRef, Iter};
pub use clock::{BatchClock, Pacer};
pub use events::{EventBus, StreamEvent, SubscriberId};
pub use qos::StreamQos;

use crate::frame::{CodecId, FrameType, MediaFrame};
use crate::identity::StreamId;
use crate::timestamps::{GuardReport, TimestampGuard, Verdict};
use delivery::Deliveries;
use ring::{Cursor, DrainOutcome, Ring};
use wake::{SlotRef, WaitSet};

/// Bounds of a stream's buffer and of its subscribers' lag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusConfig {
    /// Most frames a late joiner may be replayed (the GOP cache); 0 disables
    /// the cache and joiners wait for the next keyframe.
    pub gop_cache_frames: usize,
    /// Most payload bytes a late joiner may be replayed.
    pub gop_cache_bytes: usize,
    /// Most frames a subscriber may be behind the head before it skips. It is
    /// raised to `gop_cache_frames` if lower, so a joiner does not skip at once.
    pub lag_limit_frames: usize,
    /// Most payload bytes the buffer holds for lagging subscribers.
    pub lag_limit_bytes: usize,
    /// Skips in a row (without catching up in between) before eviction.
    pub max_consecutive_skips: u32,
}

impl Default for BusConfig {
    /// A GOP cache of 600 frames or 32 MiB (10 s of 30 fps video with audio
    /// fits), a lag limit of 600 frames or 32 MiB, eviction after 8 skips.
    fn default() -> Self {
        Self {
            gop_cache_frames: 600,
            gop_cache_bytes: 32 << 20,
            lag_limit_frames: 600,
            lag_limit_bytes: 32 << 20,
            max_consecutive_skips: 8,
        }
    }
}

impl BusConfig {
    fn normalized(mut self) -> Self {
        self.lag_limit_frames = self.lag_limit_frames.max(self.gop_cache_frames).max(1);
        self
    }
}

/// Why a subscriber gets no more frames.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecvError {
    /// The stream ended and every frame was delivered.
    #[error("stream ended: {0}")]
    Closed(String),
    /// The subscriber fell behind too often and was removed.
    #[error("evicted: {0}")]
    Evicted(String),
}

/// Counters shared by the publisher, the handles and the subscribers.
#[derive(Debug, Default)]
struct Counters {
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    subscribers: AtomicUsize,
    skips: AtomicU64,
    skipped_frames: AtomicU64,
    evictions: AtomicU64,
    next_subscriber: AtomicU64,
    timestamp_corrections: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    id: StreamId,
    config: BusConfig,
    ring: RwLock<Ring>,
    waiters: WaitSet,
    closed: AtomicBool,
    close_reason: std::sync::Mutex<Option<String>>,
    /// A publisher is attached (see [`StreamPublisher::detach`]).
    publishing: AtomicBool,
    /// Bumped whenever a publisher detaches or attaches.
    publisher_generation: AtomicU64,
    counters: Counters,
    /// What each subscriber was delivered (see [`delivery`]).
    deliveries: std::sync::Mutex<Deliveries>,
    events: Option<EventBus>,
}

impl Shared {
    // A panic while holding the lock cannot leave the ring inconsistent in a
    // way that matters more than losing the stream, so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, Ring> {
        self.ring.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Ring> {
        self.ring.write().unwrap_or_else(|e| e.into_inner())
    }

    fn deliveries(&self) -> std::sync::MutexGuard<'_, Deliveries> {
        self.deliveries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, event: impl FnOnce() -> StreamEvent) {
        if let Some(bus) = &self.events {
            bus.emit(event());
        }
    }

    fn close(&self, reason: &str) {
        {
            let mut ring = self.write();
            if ring.closed {
                return;
            }
            ring.closed = true;
            *self.close_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
        }
        self.closed.store(true, Ordering::Release);
        self.waiters.wake_all();
    }

    fn close_reason(&self) -> String {
        self.close_reason.lock().unwrap_or_else(|e| e.into_inner()).clone().unwrap_or_default()
    }
}

/// Makes a stream: its publisher end and a handle for subscribing.
/// `events`, when given, receives subscriber events.
pub fn stream(id: StreamId, config: BusConfig, events: Option<EventBus>) -> (StreamPublisher, StreamHandle) {
    let config = config.normalized();
    let shared = Arc::new(Shared {
        id,
        ring: RwLock::new(Ring::new(&config)),
        config,
        waiters: WaitSet::default(),
        closed: AtomicBool::new(false),
        close_reason: std::sync::Mutex::new(None),
        publishing: AtomicBool::new(true),
        publisher_generation: AtomicU64::new(0),
        counters: Counters::default(),
        deliveries: std::sync::Mutex::default(),
        events,
    });
    (StreamPublisher { shared: shared.clone(), detached: false }, StreamHandle { shared })
}

/// The publishing end of a stream. Dropping it ends the stream, unless it
/// was [detached](StreamPublisher::detach).
#[derive(Debug)]
pub struct StreamPublisher {
    shared: Arc<Shared>,
    detached: bool,
}

impl StreamPublisher {
    /// Publishes a frame to every subscriber. Never waits for subscribers.
    /// Returns `false` (and drops the frame) if the stream was closed.
    pub fn publish(&self, frame: MediaFrame) -> bool {
        self.publish_many(std::iter::once(frame))
    }

    /// Publishes several frames at once (for example every frame parsed
    /// from one socket read): one lock and one wake-up of the waiting
    /// subscribers for all of them. Returns `false` if the stream was closed.
    pub fn publish_many(&self, frames: impl IntoIterator<Item = MediaFrame>) -> bool {
        self.push(frames, None)
    }

    /// Like [`StreamPublisher::publish_many`], each frame first placed on
    /// the stream's timeline by its [`TimestampGuard`], under the same
    /// lock. `None` if the stream was closed. Frames from one the guard
    /// finds unusable on are dropped.
    pub(crate) fn publish_guarded(&self, frames: impl IntoIterator<Item = MediaFrame>) -> Option<GuardReport> {
        let mut report = GuardReport::default();
        self.push(frames, Some(&mut report)).then_some(report)
    }

    /// Runs `f` on the stream's timestamp guard, under the buffer's lock.
    pub(crate) fn with_timestamps<R>(&self, f: impl FnOnce(&mut TimestampGuard) -> R) -> R {
        f(&mut self.shared.write().timestamps)
    }

    fn push(&self, frames: impl IntoIterator<Item = MediaFrame>, mut guard: Option<&mut GuardReport>) -> bool {
        let (mut n, mut bytes) = (0u64, 0u64);
        {
            let mut ring = self.shared.write();
            if ring.closed {
                return false;
            }
            // The clock is read only if a correction needs it.
            let mut now = None;
            for mut frame in frames {
                if let Some(report) = guard.as_deref_mut() {
                    match ring.timestamps.apply(&mut frame) {
                        Verdict::Passed => {}
                        Verdict::Corrected(c) => {
                            let now = *now.get_or_insert_with(|| tokio::time::Instant::now().into_std());
                            match ring.timestamps.admit(now) {
                                Ok(log) => report.corrections.push((c, log)),
                                Err(u) => {
                                    report.unusable = Some(u);
                                    break;
                                }
                            }
                        }
                        Verdict::Unusable(u) => {
                            report.unusable = Some(u);
                            break;
                        }
                    }
                }
                n += 1;
                bytes += frame.payload.len() as u64;
                ring.push(frame);
            }
        }
        let c = &self.shared.counters;
        c.frames_in.fetch_add(n, Ordering::Relaxed);
        c.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        if let Some(report) = guard.filter(|r| !r.corrections.is_empty()) {
            c.timestamp_corrections.fetch_add(report.corrections.len() as u64, Ordering::Relaxed);
        }
        self.shared.waiters.wake_all();
        true
    }

    /// A handle to this stream.
    pub fn handle(&self) -> StreamHandle {
        StreamHandle { shared: self.shared.clone() }
    }

    /// Ends the stream: subscribers receive what is buffered, then
    /// [`RecvError::Closed`] with `reason`.
    pub fn close(&self, reason: &str) {
        self.shared.close(reason);
    }

    /// Leaves the stream open without a publisher, so that subscribers stay
    /// and a new publisher can [attach](StreamHandle::attach) and go on
    /// where this one stopped (a publisher reconnecting). Subscribers see
    /// the change through [`Subscriber::recv_batch`] returning `Ok(0)` and
    /// [`Subscriber::publisher_live`].
    pub fn detach(mut self) -> StreamHandle {
        self.detached = true;
        self.shared.publishing.store(false, Ordering::Release);
        self.shared.publisher_generation.fetch_add(1, Ordering::AcqRel);
        self.shared.waiters.wake_all();
        StreamHandle { shared: self.shared.clone() }
    }
}

impl Drop for StreamPublisher {
    fn drop(&mut self) {
        if !self.detached {
            self.shared.close("publisher left");
        }
    }
}

/// A shared handle to a stream: subscribe, read QoS, close.
#[derive(Clone, Debug)]
pub struct StreamHandle {
    shared: Arc<Shared>,
}

impl StreamHandle {
    /// The stream's identity.
    pub fn id(&self) -> &StreamId {
        &self.shared.id
    }

    /// The stream's buffer bounds.
    pub fn config(&self) -> &BusConfig {
        &self.shared.config
    }

    /// A new subscriber, positioned for an instant start (see the module
    /// documentation).
    pub fn subscribe(&self) -> Subscriber {
        let cursor = self.shared.read().join(&self.shared.config);
        let slot = wake::new_slot();
        self.shared.deliveries().join(&slot, cursor.next);
        let c = &self.shared.counters;
        let id = c.next_subscriber.fetch_add(1, Ordering::Relaxed);
        c.subscribers.fetch_add(1, Ordering::Relaxed);
        self.shared.emit(|| StreamEvent::SubscriberJoined { stream: self.shared.id.clone(), subscriber: id });
        let seen_generation = self.shared.publisher_generation.load(Ordering::Acquire);
        Subscriber { shared: self.shared.clone(), cursor, id, evicted: false, slot, seen_generation }
    }

    /// A publisher for a stream whose publisher [detached](StreamPublisher::detach);
    /// `None` if a publisher is attached or the stream was closed. Publish
    /// the new publisher's first frame with [`FrameFlags::DISCONTINUITY`](crate::frame::FrameFlags::DISCONTINUITY):
    /// its timestamps do not continue the old ones.
    pub fn attach(&self) -> Option<StreamPublisher> {
        // Under the buffer's lock, so a close cannot slip in between.
        let ring = self.shared.write();
        if ring.closed
            || self.shared.publishing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err()
        {
            return None;
        }
        drop(ring);
        self.shared.publisher_generation.fetch_add(1, Ordering::AcqRel);
        self.shared.waiters.wake_all();
        Some(StreamPublisher { shared: self.shared.clone(), detached: false })
    }

    /// True while a publisher is attached.
    pub fn is_publishing(&self) -> bool {
        self.shared.publishing.load(Ordering::Acquire)
    }

    /// True once the stream was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Ends the stream (for example when the engine shuts down or reaps it).
    pub fn close(&self, reason: &str) {
        self.shared.close(reason);
    }

    /// Current subscribers.
    pub fn subscriber_count(&self) -> usize {
        self.shared.counters.subscribers.load(Ordering::Relaxed)
    }

    /// Frames published so far.
    pub fn frames_in(&self) -> u64 {
        self.shared.counters.frames_in.load(Ordering::Relaxed)
    }

    /// The latest configuration frame of a type.
    pub fn config_frame(&self, ty: FrameType) -> Option<FrameRef> {
        self.shared.read().config()[ty.index()].as_ref().map(|(_, f)| FrameRef::new((**f).clone()))
    }

    /// The codecs seen, per type.
    pub fn codecs(&self) -> (Option<CodecId>, Option<CodecId>) {
        let ring = self.shared.read();
        (ring.codecs[FrameType::Video.index()], ring.codecs[FrameType::Audio.index()])
    }

    /// A snapshot of the stream's quality of service.
    pub fn qos(&self) -> StreamQos {
        let ring = self.shared.read();
        let deliveries = self.shared.deliveries().totals();
        let c = &self.shared.counters;
        StreamQos::measure(
            &ring,
            deliveries,
            qos::Totals {
                frames_in: c.frames_in.load(Ordering::Relaxed),
                bytes_in: c.bytes_in.load(Ordering::Relaxed),
                subscribers: c.subscribers.load(Ordering::Relaxed),
                skips: c.skips.load(Ordering::Relaxed),
                skipped_frames: c.skipped_frames.load(Ordering::Relaxed),
                evictions: c.evictions.load(Ordering::Relaxed),
                timestamp_corrections: c.timestamp_corrections.load(Ordering::Relaxed),
            },
        )
    }

    /// Frames and payload bytes held in the buffer now.
    pub fn buffered(&self) -> (usize, usize) {
        let ring = self.shared.read();
        (ring.len(), ring.bytes())
    }
}

/// One subscriber's view of a stream. Dropping it leaves the stream.
#[derive(Debug)]
pub struct Subscriber {
    shared: Arc<Shared>,
    cursor: Cursor,
    id: SubscriberId,
    evicted: bool,
    slot: SlotRef,
    /// The publisher generation this subscriber last reported.
    seen_generation: u64,
}

impl Subscriber {
    /// This subscriber's number within the stream.
    pub fn id(&self) -> SubscriberId {
        self.id
    }

    /// The stream's identity.
    pub fn stream_id(&self) -> &StreamId {
        &self.shared.id
    }

    /// True while the stream has a publisher (it may be between publishers,
    /// see [`StreamPublisher::detach`]).
    pub fn publisher_live(&self) -> bool {
        self.shared.publishing.load(Ordering::Acquire)
    }

    /// True, once, after the publisher detached or a new one attached.
    fn publisher_changed(&mut self) -> bool {
        let generation = self.shared.publisher_generation.load(Ordering::Acquire);
        let changed = generation != self.seen_generation;
        self.seen_generation = generation;
        changed
    }

    /// Frames this subscriber did not receive because it fell behind.
    pub fn skipped_frames(&self) -> u64 {
        self.cursor.skipped_frames
    }

    /// Times this subscriber skipped forward.
    pub fn skips(&self) -> u64 {
        self.cursor.skips
    }

    /// Appends every frame available now, at most `max`, to `out`, and
    /// returns how many it appended (possibly 0). Errors once the stream has
    /// ended and everything was delivered, or after eviction.
    pub fn try_recv_batch(&mut self, out: &mut Batch, max: usize) -> Result<usize, RecvError> {
        if self.evicted {
            return Err(RecvError::Evicted("fell behind too often".into()));
        }
        let (before, position) = (out.len(), self.cursor.next);
        let (outcome, closed_and_drained) = {
            let ring = self.shared.read();
            let outcome = self.cursor.drain(&ring, &self.shared.config, out, max);
            (outcome, ring.closed && self.cursor.is_caught_up(&ring))
        };
        let c = &self.cursor;
        // Nothing to tell after an empty poll (most polls before a wait).
        if out.len() > before || c.next != position {
            self.slot.delivery.store(c.delivered_frames, c.delivered_bytes, c.next);
        }
        match outcome {
            DrainOutcome::Ok => {}
            DrainOutcome::Skipped { dropped } => self.on_skip(dropped),
            DrainOutcome::Evicted { skips } => return Err(self.evict(skips)),
        }
        let n = out.len() - before;
        if n == 0 && closed_and_drained {
            return Err(RecvError::Closed(self.shared.close_reason()));
        }
        Ok(n)
    }

    /// Waits until at least one frame is available, then appends every frame
    /// available, at most `max`, to `out`. Returns how many: at least 1,
    /// except `Ok(0)` when `max` is 0 or when the publisher left or a new one
    /// took over since the last call (check [`Subscriber::publisher_live`]:
    /// an RTMP player is then sent StreamEOF or StreamBegin). Cancel-safe:
    /// dropping the future loses nothing.
    pub async fn recv_batch(&mut self, out: &mut Batch, max: usize) -> Result<usize, RecvError> {
        std::future::poll_fn(|cx| {
            let n = self.try_recv_batch(out, max)?;
            if n > 0 || max == 0 || self.publisher_changed() {
                return Poll::Ready(Ok(n));
            }
            // Register, then look once more: a frame published (or a
            // publisher change) in between is either seen now or wakes us
            // (see the `wake` module).
            self.shared.waiters.register(&self.slot, self.id, cx.waker());
            match self.try_recv_batch(out, max)? {
                0 if !self.publisher_changed() => Poll::Pending,
                n => Poll::Ready(Ok(n)),
            }
        })
        .await
    }

    /// Waits for the next frame, across publisher changes. Prefer
    /// [`Subscriber::recv_batch`] in players: it costs one wake-up per batch
    /// instead of one per frame.
    pub async fn recv(&mut self) -> Result<FrameRef, RecvError> {
        let mut one = Batch::new();
        loop {
            if self.recv_batch(&mut one, 1).await? > 0 {
                return one.to_refs().pop().ok_or_else(|| RecvError::Closed(self.shared.close_reason()));
            }
        }
    }

    fn on_skip(&self, dropped: u64) {
        let c = &self.shared.counters;
        c.skips.fetch_add(1, Ordering::Relaxed);
        c.skipped_frames.fetch_add(dropped, Ordering::Relaxed);
        tracing::debug!(stream = %self.shared.id, subscriber = self.id, dropped, "subscriber fell behind, skipped to a keyframe");
        self.shared.emit(|| StreamEvent::SubscriberSkipped {
            stream: self.shared.id.clone(),
            subscriber: self.id,
            dropped,
        });
    }

    fn evict(&mut self, skips: u32) -> RecvError {
        self.evicted = true;
        let reason = format!("fell behind {skips} times in a row");
        self.shared.counters.evictions.fetch_add(1, Ordering::Relaxed);
        tracing::info!(stream = %self.shared.id, subscriber = self.id, %reason, "subscriber evicted");
        self.shared.emit(|| StreamEvent::SubscriberEvicted {
            stream: self.shared.id.clone(),
            subscriber: self.id,
            reason: reason.clone(),
        });
        RecvError::Evicted(reason)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let c = &self.cursor;
        self.shared.deliveries().leave(&self.slot, c.delivered_frames, c.delivered_bytes);
        self.shared.counters.subscribers.fetch_sub(1, Ordering::Relaxed);
        self.shared.emit(|| StreamEvent::SubscriberLeft { stream: self.shared.id.clone(), subscriber: self.id });
    }
}

#[cfg(test)]
mod tests;
