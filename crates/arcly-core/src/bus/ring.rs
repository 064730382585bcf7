//! The stream's frame buffer and a subscriber's read position in it.
//!
//! This module holds no locks and knows no tasks: [`Ring`] is the buffer the
//! publisher appends to, [`Cursor`] is one subscriber's position, and
//! [`Cursor::drain`] moves frames from one to the other. The bus wraps a
//! `Ring` in a lock; tests drive these types directly.
//!
//! One buffer serves two purposes. Its tail end is the GOP cache: a late
//! joiner starts at the latest sync point if the GOP since then fits the
//! cache bounds. Its full length is the lag window: a subscriber whose
//! position falls off the front, or that is more than the lag limit behind
//! the head, skips forward to a sync point.
//!
//! Frames are stored in shared [`Chunk`]s (see [`super::batch`]). The
//! bounds are kept per frame; memory is released per chunk, so up to
//! `CHUNK - 1` frames already dropped from the front may still be held.

use std::collections::VecDeque;
use std::sync::Arc;

use super::BusConfig;
use super::batch::{Batch, CHUNK, Chunk};
use crate::frame::{CodecId, FrameFlags, FrameType, MediaFrame, Timebase};
use crate::timestamps::TimestampGuard;

/// The latest configuration frame per type, indexed by [`FrameType::index`],
/// with its sequence number.
pub(crate) type ConfigSet = [Option<(u64, Arc<MediaFrame>)>; 3];

/// Where a late joiner or a lagging subscriber can start decoding.
#[derive(Clone, Debug)]
pub(crate) struct SyncPoint {
    /// Sequence number of the keyframe.
    pub(crate) seq: u64,
    /// The configuration in force when it was published.
    pub(crate) config: ConfigSet,
}

/// The head of the buffer: every drain reads both fields, so they share a
/// cache line (the one the publisher writes on every push anyway).
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(16))]
struct Head {
    /// Sequence number the next frame will get.
    seq: u64,
    /// Payload bytes of every frame pushed (before `seq`).
    bytes: u64,
}

/// The publisher's side: frames in publish order, numbered from `base`.
#[derive(Debug)]
pub(crate) struct Ring {
    /// Chunks holding frames `first_chunk_seq..`; the first may hold frames
    /// before `base` that were already dropped from the buffer.
    chunks: VecDeque<Arc<Chunk>>,
    first_chunk_seq: u64,
    /// Sequence number of the oldest frame held.
    base: u64,
    /// Sequence number the next frame will get, and the payload bytes
    /// pushed before it.
    head: Head,
    /// Sum of payload lengths of frames `base..head`.
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
    config: ConfigSet,
    /// The latest sync point, while it is still held.
    sync: Option<SyncPoint>,
    /// Frames and payload bytes published since the latest sync point.
    gop_frames: usize,
    gop_bytes: usize,
    has_video: bool,
    /// Decode timestamps (ms) of the last two video keyframes, for QoS.
    pub(crate) keyframe_dts_ms: [Option<i64>; 2],
    pub(crate) codecs: [Option<CodecId>; 3],
    pub(crate) closed: bool,
    /// The stream's timeline, kept across publishers: a publish session's
    /// frames go through it under the same lock as `push`.
    pub(crate) timestamps: TimestampGuard,
}

impl Ring {
    pub(crate) fn new(cfg: &BusConfig) -> Self {
        let max_frames = cfg.gop_cache_frames.max(cfg.lag_limit_frames).max(1);
        Self {
            chunks: VecDeque::with_capacity(max_frames.min(4096) / CHUNK + 2),
            first_chunk_seq: 0,
            base: 0,
            head: Head::default(),
            bytes: 0,
            max_frames,
            max_bytes: cfg.gop_cache_bytes.max(cfg.lag_limit_bytes),
            config: Default::default(),
            sync: None,
            gop_frames: 0,
            gop_bytes: 0,
            has_video: false,
            keyframe_dts_ms: [None; 2],
            codecs: [None; 3],
            closed: false,
            timestamps: TimestampGuard::default(),
        }
    }

    /// Sequence number the next frame will get.
    pub(crate) fn head(&self) -> u64 {
        self.head.seq
    }

    /// Sequence number of the oldest frame held.
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// Frames held.
    pub(crate) fn len(&self) -> usize {
        (self.head.seq - self.base) as usize
    }

    /// Payload bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    pub(crate) fn config(&self) -> &ConfigSet {
        &self.config
    }

    /// The chunk and slot of frame `seq`, which must be in `base..head`.
    fn locate(&self, seq: u64) -> (&Arc<Chunk>, usize) {
        let rel = (seq - self.first_chunk_seq) as usize;
        (&self.chunks[rel / CHUNK], rel % CHUNK)
    }

    /// Payload bytes pushed before frame `seq`, which must be in
    /// `base..=head`: at the head, the count next to it; else the prefix
    /// stored in the frame's chunk.
    pub(crate) fn bytes_before(&self, seq: u64) -> u64 {
        if seq >= self.head.seq {
            return self.head.bytes;
        }
        let (chunk, i) = self.locate(seq);
        chunk.bytes_before(i)
    }

    /// Frame `seq`, if it is held.
    pub(crate) fn get(&self, seq: u64) -> Option<&MediaFrame> {
        if seq < self.base || seq >= self.head.seq {
            return None;
        }
        let (chunk, i) = self.locate(seq);
        chunk.get(i)
    }

    /// The frames held, newest first.
    pub(crate) fn iter_rev(&self) -> impl Iterator<Item = &MediaFrame> + '_ {
        (self.base..self.head.seq).rev().filter_map(|seq| self.get(seq))
    }

    /// Appends a frame, then drops the oldest frames until both bounds hold
    /// again (the newest frame is always kept, whatever its size).
    pub(crate) fn push(&mut self, frame: MediaFrame) {
        let seq = self.head.seq;
        let ty = frame.frame_type();
        let len = frame.payload.len();
        self.codecs[ty.index()] = Some(frame.codec);
        if ty == FrameType::Video && !self.has_video {
            // From now on only video keyframes are sync points; an audio
            // sync point would start joiners without a picture.
            self.has_video = true;
            self.sync = None;
        }
        if frame.is_config() {
            // Configuration is rare: a copy of the frame (not its payload)
            // lets the cache outlive the chunk.
            self.config[ty.index()] = Some((seq, Arc::new(frame.clone())));
        }
        if frame.flags.contains(FrameFlags::DISCONTINUITY) {
            // A new publisher (or a source switch): the cached GOP belongs to
            // the old timeline; joiners wait for the new one's keyframe.
            self.sync = None;
        }
        if is_sync_point(&frame, self.has_video) {
            if ty == FrameType::Video {
                self.keyframe_dts_ms = [self.keyframe_dts_ms[1], Some(frame.dts_in(Timebase::MILLIS))];
            }
            self.sync = Some(SyncPoint { seq, config: self.config.clone() });
            self.gop_frames = 0;
            self.gop_bytes = 0;
        }
        self.gop_frames += 1;
        self.gop_bytes += len;
        if seq.is_multiple_of(CHUNK as u64) {
            if self.chunks.is_empty() {
                self.first_chunk_seq = seq;
            }
            self.chunks.push_back(Arc::new(Chunk::new()));
        }
        if let Some(chunk) = self.chunks.back() {
            chunk.set((seq % CHUNK as u64) as usize, frame, self.head.bytes);
        }
        self.head.seq += 1;
        self.head.bytes += len as u64;
        self.bytes += len;
        while self.len() > 1 && (self.len() > self.max_frames || self.bytes > self.max_bytes) {
            let old = self.get(self.base).map_or(0, |f| f.payload.len());
            self.bytes -= old;
            self.base += 1;
            if self.base - self.first_chunk_seq >= CHUNK as u64 {
                self.chunks.pop_front();
                self.first_chunk_seq += CHUNK as u64;
            }
        }
        if self.sync.as_ref().is_some_and(|s| s.seq < self.base) {
            self.sync = None;
        }
    }

    /// The sync point a new subscriber starts at: the latest one, if the GOP
    /// since it is within the cache bounds.
    fn cached_gop(&self, cfg: &BusConfig) -> Option<&SyncPoint> {
        self.sync.as_ref().filter(|_| self.gop_frames <= cfg.gop_cache_frames && self.gop_bytes <= cfg.gop_cache_bytes)
    }

    /// A cursor for a subscriber joining now. Called under the same lock as
    /// [`Ring::push`], so no frame falls between the cached GOP and live.
    pub(crate) fn join(&self, cfg: &BusConfig) -> Cursor {
        match self.cached_gop(cfg) {
            Some(sync) => Cursor {
                next: sync.seq,
                next_bytes: self.bytes_before(sync.seq),
                joined_at: sync.seq,
                pending_config: sync.config.clone(),
                ..Cursor::default()
            },
            None => Cursor {
                next: self.head(),
                next_bytes: self.head.bytes,
                joined_at: self.head(),
                pending_config: self.config.clone(),
                awaiting_sync: true,
                ..Cursor::default()
            },
        }
    }

    /// Appends frames `from..to` to `out` as whole runs.
    fn append_runs(&self, mut from: u64, to: u64, out: &mut Batch) {
        while from < to {
            let (chunk, i) = self.locate(from);
            let n = (CHUNK - i).min((to - from) as usize);
            out.push_run(chunk, i, i + n);
            from += n as u64;
        }
    }
}

/// True if decoding can start at `frame`: a video keyframe, or any audio
/// frame in a stream without video.
fn is_sync_point(frame: &MediaFrame, has_video: bool) -> bool {
    if frame.is_config() {
        return false;
    }
    match frame.frame_type() {
        FrameType::Video => frame.is_keyframe(),
        FrameType::Audio => !has_video,
        FrameType::Data => false,
    }
}

/// Config frames are delivered in this order: metadata, video, audio (the
/// order RTMP and FLV players expect).
const CONFIG_ORDER: [FrameType; 3] = [FrameType::Data, FrameType::Video, FrameType::Audio];

/// One subscriber's read position.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// Sequence number of the next frame to read.
    pub(crate) next: u64,
    /// Payload bytes the stream published before `next`, so a drain counts
    /// the bytes it delivered without reading the chunks (see `drain`).
    next_bytes: u64,
    /// `next` when the subscriber joined.
    joined_at: u64,
    /// Configuration to deliver before any frame.
    pending_config: ConfigSet,
    /// Dropping frames until the next sync point.
    awaiting_sync: bool,
    /// Skips since the subscriber last caught up with the head.
    consecutive_skips: u32,
    /// Frames dropped by skips, in total.
    pub(crate) skipped_frames: u64,
    /// Skips, in total.
    pub(crate) skips: u64,
    /// Frames and configuration frames appended to batches, in total.
    pub(crate) delivered_frames: u64,
    /// Their payload bytes.
    pub(crate) delivered_bytes: u64,
}

/// What a drain found besides the frames it appended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DrainOutcome {
    /// Frames may have been appended; nothing else happened.
    Ok,
    /// The subscriber was behind and skipped forward, dropping `dropped`
    /// frames. Frames may have been appended after the skip.
    Skipped {
        /// Frames not delivered.
        dropped: u64,
    },
    /// The subscriber skipped more often in a row than allowed.
    Evicted {
        /// Consecutive skips when evicted.
        skips: u32,
    },
}

impl Cursor {
    /// Appends to `out` what is available, at most `max` frames, in order:
    /// pending configuration, then frames from the ring.
    pub(crate) fn drain(&mut self, ring: &Ring, cfg: &BusConfig, out: &mut Batch, max: usize) -> DrainOutcome {
        let head = ring.head();
        let mut outcome = DrainOutcome::Ok;
        if self.next < ring.base || head - self.next > cfg.lag_limit_frames as u64 {
            self.consecutive_skips += 1;
            if self.consecutive_skips > cfg.max_consecutive_skips {
                return DrainOutcome::Evicted { skips: self.consecutive_skips };
            }
            let dropped = self.skip(ring, cfg);
            self.skipped_frames += dropped;
            self.skips += 1;
            outcome = DrainOutcome::Skipped { dropped };
        }
        let mut room = max;
        for ty in CONFIG_ORDER {
            if room == 0 {
                return outcome;
            }
            if let Some((_, cfg_frame)) = self.pending_config[ty.index()].take() {
                self.delivered_frames += 1;
                self.delivered_bytes += cfg_frame.payload.len() as u64;
                out.push_single(cfg_frame);
                room -= 1;
            }
        }
        let take = ((head - self.next) as usize).min(room) as u64;
        let end = self.next + take;
        if self.awaiting_sync {
            for seq in self.next..end {
                let (chunk, i) = ring.locate(seq);
                let Some(f) = chunk.get(i) else { continue };
                if self.awaiting_sync && is_sync_point(f, ring.has_video) {
                    self.awaiting_sync = false;
                }
                // Configuration passes through a skip: it applies to the
                // keyframe that ends it.
                if !self.awaiting_sync || f.is_config() {
                    self.delivered_frames += 1;
                    self.delivered_bytes += f.payload.len() as u64;
                    out.push_slot(chunk, i);
                } else {
                    self.skipped_frames += 1;
                }
            }
            self.next_bytes = ring.bytes_before(end);
        } else if take > 0 {
            // The run's bytes without looking at its frames: the count at
            // the head is in the line `head` was read from; only a drain
            // that stops short of the head reads a chunk's prefix.
            let end_bytes = ring.bytes_before(end);
            self.delivered_frames += take;
            self.delivered_bytes += end_bytes - self.next_bytes;
            self.next_bytes = end_bytes;
            ring.append_runs(self.next, end, out);
        }
        self.next = end;
        // Only a drain that reached the head without skipping shows the
        // subscriber keeps up; a skip straight to the head does not.
        if self.next == head && outcome == DrainOutcome::Ok {
            self.consecutive_skips = 0;
        }
        outcome
    }

    /// Moves the position to the latest sync point within the lag limit, or
    /// to the head to wait for the next one. Configuration frames passed over
    /// are delivered first. Returns the frames not delivered.
    fn skip(&mut self, ring: &Ring, cfg: &BusConfig) -> u64 {
        let head = ring.head();
        let from = self.next;
        let (target, config) = match &ring.sync {
            Some(sync) if sync.seq >= from && head - sync.seq <= cfg.lag_limit_frames as u64 => {
                self.awaiting_sync = false;
                (sync.seq, &sync.config)
            }
            _ => {
                self.awaiting_sync = true;
                (head, &ring.config)
            }
        };
        let mut resent = 0;
        let mut superseded = 0;
        for (slot, c) in self.pending_config.iter_mut().zip(config) {
            if c.as_ref().is_some_and(|(seq, _)| *seq >= from) {
                // A config still pending from an earlier skip was counted as
                // delivered then; replaced now, it is dropped after all.
                if slot.as_ref().is_some_and(|(seq, _)| *seq >= self.joined_at) {
                    superseded += 1;
                }
                *slot = c.clone();
                resent += 1;
            }
        }
        self.next = target;
        self.next_bytes = ring.bytes_before(target);
        target - from - resent + superseded
    }

    /// True when no frame or configuration is waiting for this cursor.
    pub(crate) fn is_caught_up(&self, ring: &Ring) -> bool {
        self.next >= ring.head() && self.pending_config.iter().all(Option::is_none)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{CodecId, FrameFlags, Timebase};
    use bytes::Bytes;

    fn cfg() -> BusConfig {
        BusConfig {
            gop_cache_frames: 8,
            gop_cache_bytes: 1 << 20,
            lag_limit_frames: 8,
            lag_limit_bytes: 1 << 20,
            max_consecutive_skips: 2,
        }
    }

    fn video(n: i64, key: bool) -> MediaFrame {
        let f = MediaFrame::new(CodecId::H264, Bytes::from(vec![0u8; 10])).with_timestamps(n, n, Timebase::MILLIS);
        if key { f.with_flags(FrameFlags::KEYFRAME) } else { f }
    }

    fn config(ty: CodecId) -> MediaFrame {
        MediaFrame::new(ty, Bytes::from_static(b"cfg")).with_flags(FrameFlags::CONFIG)
    }

    fn pts(v: &Batch) -> Vec<i64> {
        v.iter().map(|f| if f.is_config() { -1 } else { f.pts }).collect()
    }

    #[test]
    fn late_joiner_gets_config_then_gop_then_live() {
        let c = cfg();
        let mut ring = Ring::new(&c);
        ring.push(config(CodecId::H264));
        for n in 0..5 {
            ring.push(video(n, n == 0 || n == 3));
        }
        let mut cur = ring.join(&c);
        let mut out = Batch::new();
        assert_eq!(cur.drain(&ring, &c, &mut out, usize::MAX), DrainOutcome::Ok);
        assert_eq!(pts(&out), [-1, 3, 4]);
        ring.push(video(5, false));
        out.clear();
        cur.drain(&ring, &c, &mut out, usize::MAX);
        assert_eq!(pts(&out), [5]);
    }

    #[test]
    fn joiner_waits_for_keyframe_when_gop_exceeds_cache() {
        let c = BusConfig { gop_cache_frames: 2, ..cfg() };
        let mut ring = Ring::new(&c);
        for n in 0..4 {
            ring.push(video(n, n == 0));
        }
        let mut cur = ring.join(&c);
        ring.push(video(4, false));
        ring.push(video(5, true));
        let mut out = Batch::new();
        cur.drain(&ring, &c, &mut out, usize::MAX);
        assert_eq!(pts(&out), [5]);
        assert_eq!(cur.skipped_frames, 1);
    }

    #[test]
    fn byte_bound_holds_with_huge_frames() {
        let c = BusConfig { gop_cache_bytes: 25, lag_limit_bytes: 25, ..cfg() };
        let mut ring = Ring::new(&c);
        for n in 0..10 {
            ring.push(video(n, n % 5 == 0));
            assert!(ring.bytes() <= 25);
        }
        assert_eq!(ring.len(), 2);
        assert_eq!(ring.base(), 8);
    }

    #[test]
    fn lagging_cursor_skips_to_latest_keyframe_then_is_evicted() {
        let c = cfg();
        let mut ring = Ring::new(&c);
        ring.push(video(0, true));
        let mut cur = ring.join(&c);
        for n in 1..20 {
            ring.push(video(n, n % 4 == 0));
        }
        let mut out = Batch::new();
        let r = cur.drain(&ring, &c, &mut out, 1);
        assert_eq!(r, DrainOutcome::Skipped { dropped: 16 });
        assert_eq!(pts(&out), [16]);
        for round in 0..2 {
            for n in 0..12 {
                ring.push(video(100 * (round + 1) + n, false));
            }
            out.clear();
            let r = cur.drain(&ring, &c, &mut out, 1);
            if round == 0 {
                assert!(matches!(r, DrainOutcome::Skipped { .. }), "{r:?}");
                assert!(out.is_empty(), "no keyframe in reach: wait for one");
            } else {
                assert_eq!(r, DrainOutcome::Evicted { skips: 3 });
            }
        }
    }

    #[test]
    fn audio_only_stream_starts_on_any_audio_frame() {
        let c = cfg();
        let mut ring = Ring::new(&c);
        ring.push(config(CodecId::Aac));
        for n in 0..3 {
            ring.push(MediaFrame::new(CodecId::Aac, Bytes::from_static(b"a")).with_timestamps(n, n, Timebase::MILLIS));
        }
        let mut cur = ring.join(&c);
        let mut out = Batch::new();
        cur.drain(&ring, &c, &mut out, usize::MAX);
        assert_eq!(pts(&out), [-1, 2]);
    }

    #[test]
    fn max_limits_a_batch_including_config() {
        let c = cfg();
        let mut ring = Ring::new(&c);
        ring.push(MediaFrame::new(CodecId::Metadata, Bytes::from_static(b"m")).with_flags(FrameFlags::CONFIG));
        ring.push(config(CodecId::H264));
        ring.push(video(0, true));
        ring.push(video(1, false));
        let mut cur = ring.join(&c);
        let mut out = Batch::new();
        cur.drain(&ring, &c, &mut out, 1);
        assert_eq!(out.iter().next().unwrap().codec, CodecId::Metadata);
        cur.drain(&ring, &c, &mut out, 2);
        assert_eq!(pts(&out), [-1, -1, 0]);
        assert!(!cur.is_caught_up(&ring));
        cur.drain(&ring, &c, &mut out, 2);
        assert_eq!(pts(&out), [-1, -1, 0, 1]);
        assert!(cur.is_caught_up(&ring));
    }
}
