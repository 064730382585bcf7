//! Frames as subscribers receive them: shared chunks of the stream's buffer.
//!
//! The buffer stores frames in [`Chunk`]s of [`CHUNK`] frames, each chunk
//! behind one `Arc`. A [`Batch`] holds runs of frames as (chunk, range):
//! receiving 64 frames costs a handful of reference-count increments, not
//! 64. This matters because a reference count is a cache line that every
//! core delivering the frame writes to; with thousands of subscribers on
//! several cores, per-frame counts dominate the cost of fan-out.

use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::frame::MediaFrame;

/// Frames per chunk.
pub(crate) const CHUNK: usize = 16;

/// A run of [`CHUNK`] frame slots, written once each by the publisher.
pub(crate) struct Chunk {
    slots: [OnceLock<MediaFrame>; CHUNK],
    /// Payload bytes the stream published before each slot's frame, so the
    /// bytes of a run of frames cost two loads, not a look at each frame
    /// (delivery accounting). Written under the buffer's write lock, read
    /// under its read lock: relaxed is enough.
    bytes_before: [AtomicU64; CHUNK],
}

impl Chunk {
    pub(crate) fn new() -> Self {
        Self {
            slots: std::array::from_fn(|_| OnceLock::new()),
            bytes_before: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Stores the frame of slot `i`, published after `bytes_before` payload
    /// bytes. Each slot is written once, by the publisher, under the
    /// buffer's write lock.
    pub(crate) fn set(&self, i: usize, frame: MediaFrame, bytes_before: u64) {
        self.bytes_before[i].store(bytes_before, Ordering::Relaxed);
        let _ = self.slots[i].set(frame);
    }

    /// Payload bytes the stream published before slot `i`'s frame.
    pub(crate) fn bytes_before(&self, i: usize) -> u64 {
        self.bytes_before[i].load(Ordering::Relaxed)
    }

    /// The frame of slot `i`, if it was written.
    pub(crate) fn get(&self, i: usize) -> Option<&MediaFrame> {
        self.slots[i].get()
    }
}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let filled = self.slots.iter().filter(|s| s.get().is_some()).count();
        f.debug_struct("Chunk").field("filled", &filled).finish()
    }
}

#[derive(Clone, Debug)]
enum Item {
    /// A configuration frame delivered out of band (cached for joiners).
    Single(Arc<MediaFrame>),
    /// Slots `start..end` of a chunk.
    Run { chunk: Arc<Chunk>, start: u8, end: u8 },
}

/// Frames received in one call, in order. Reuse one batch per subscriber:
/// [`Batch::clear`] keeps its allocation.
///
/// ```
/// # use arcly_core::bus::{self, Batch, BusConfig};
/// # use arcly_core::frame::{CodecId, FrameFlags, MediaFrame};
/// let (publisher, handle) = bus::stream("live/a".parse().unwrap(), BusConfig::default(), None);
/// let mut sub = handle.subscribe();
/// for _ in 0..3 {
///     publisher.publish(MediaFrame::new(CodecId::Aac, bytes::Bytes::from_static(b"aac")));
/// }
/// let mut batch = Batch::new();
/// assert_eq!(sub.try_recv_batch(&mut batch, 100).unwrap(), 3);
/// let total: usize = batch.iter().map(|f| f.payload.len()).sum();
/// assert_eq!(total, 9);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Batch {
    items: Vec<Item>,
    len: usize,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no frame is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops every frame, keeping the allocation.
    pub fn clear(&mut self) {
        self.items.clear();
        self.len = 0;
    }

    /// The frames, in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter { items: self.items.iter(), run: None }
    }

    /// The frames as owned references, each keeping its frame alive on its
    /// own (one reference-count increment each).
    pub fn to_refs(&self) -> Vec<FrameRef> {
        let mut out = Vec::with_capacity(self.len);
        for item in &self.items {
            match item {
                Item::Single(f) => out.push(FrameRef(RefInner::Single(f.clone()))),
                Item::Run { chunk, start, end } => {
                    out.extend((*start..*end).map(|i| FrameRef(RefInner::Slot(chunk.clone(), i))));
                }
            }
        }
        out
    }

    pub(crate) fn push_single(&mut self, frame: Arc<MediaFrame>) {
        self.items.push(Item::Single(frame));
        self.len += 1;
    }

    /// Appends slot `i` of `chunk`, extending the last run when contiguous.
    pub(crate) fn push_slot(&mut self, chunk: &Arc<Chunk>, i: usize) {
        if let Some(Item::Run { chunk: c, end, .. }) = self.items.last_mut()
            && usize::from(*end) == i
            && Arc::ptr_eq(c, chunk)
        {
            *end += 1;
            self.len += 1;
            return;
        }
        // `i < CHUNK <= u8::MAX`.
        self.items.push(Item::Run { chunk: chunk.clone(), start: i as u8, end: i as u8 + 1 });
        self.len += 1;
    }

    /// Appends slots `start..end` of `chunk` as one run.
    pub(crate) fn push_run(&mut self, chunk: &Arc<Chunk>, start: usize, end: usize) {
        if start < end {
            self.items.push(Item::Run { chunk: chunk.clone(), start: start as u8, end: end as u8 });
            self.len += end - start;
        }
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = &'a MediaFrame;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Iterator over a [`Batch`]'s frames.
#[derive(Debug)]
pub struct Iter<'a> {
    items: std::slice::Iter<'a, Item>,
    run: Option<(&'a Chunk, usize, usize)>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a MediaFrame;

    fn next(&mut self) -> Option<&'a MediaFrame> {
        loop {
            if let Some((chunk, i, end)) = &mut self.run {
                if *i < *end {
                    *i += 1;
                    match chunk.get(*i - 1) {
                        Some(f) => return Some(f),
                        None => continue,
                    }
                }
                self.run = None;
            }
            match self.items.next()? {
                Item::Single(f) => return Some(f),
                Item::Run { chunk, start, end } => self.run = Some((chunk, usize::from(*start), usize::from(*end))),
            }
        }
    }
}

#[derive(Clone)]
enum RefInner {
    Single(Arc<MediaFrame>),
    Slot(Arc<Chunk>, u8),
}

/// One frame, owned: keeps the frame (and the chunk it lives in) alive.
/// Dereferences to [`MediaFrame`].
#[derive(Clone)]
pub struct FrameRef(RefInner);

impl FrameRef {
    /// A reference to a frame that is not in a stream's buffer.
    pub fn new(frame: MediaFrame) -> Self {
        Self(RefInner::Single(Arc::new(frame)))
    }
}

/// An empty placeholder returned only if a slot was never written, which the
/// buffer's invariants rule out; kept so that dereferencing cannot panic.
static EMPTY_FRAME: std::sync::LazyLock<MediaFrame> =
    std::sync::LazyLock::new(|| MediaFrame::new(crate::frame::CodecId::Metadata, bytes::Bytes::new()));

impl Deref for FrameRef {
    type Target = MediaFrame;
    fn deref(&self) -> &MediaFrame {
        match &self.0 {
            RefInner::Single(f) => f,
            RefInner::Slot(chunk, i) => chunk.get(usize::from(*i)).unwrap_or(&EMPTY_FRAME),
        }
    }
}

impl fmt::Debug for FrameRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PartialEq for FrameRef {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}
