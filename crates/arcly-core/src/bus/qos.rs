//! Live quality-of-service figures for one stream.

use crate::frame::{FrameType, Timebase};

use super::ring::Ring;

/// The media-time window bitrate and frame rate are measured over.
const WINDOW_MS: i64 = 2_000;

/// Totals kept in the stream's counters.
#[derive(Debug, Default)]
pub(super) struct Totals {
    pub(super) frames_in: u64,
    pub(super) bytes_in: u64,
    pub(super) subscribers: usize,
    pub(super) skips: u64,
    pub(super) skipped_frames: u64,
    pub(super) evictions: u64,
    pub(super) timestamp_corrections: u64,
}

/// A snapshot of a stream's quality of service.
///
/// Rates are measured over the last two seconds of *media* time in the
/// buffer (decode timestamps), not wall-clock time, so they describe the
/// stream rather than the network's burstiness, and need no clock.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct StreamQos {
    /// Frames published since the stream started.
    pub frames_in: u64,
    /// Payload bytes published since the stream started.
    pub bytes_in: u64,
    /// Payload bitrate over the window, bits per second.
    pub bitrate_bps: u64,
    /// Video frames per second over the window.
    pub video_fps: f64,
    /// Time between the last two video keyframes, in milliseconds.
    pub keyframe_interval_ms: Option<i64>,
    /// Current subscribers.
    pub subscribers: usize,
    /// Times any subscriber skipped forward.
    pub skips: u64,
    /// Frames not delivered because of skips, over all subscribers.
    pub skipped_frames: u64,
    /// Subscribers evicted.
    pub evictions: u64,
    /// Times the publisher's timestamps jumped and the timeline was
    /// corrected (see [`crate::timestamps`]).
    pub timestamp_corrections: u64,
    /// Frames held in the buffer.
    pub buffered_frames: usize,
    /// Payload bytes held in the buffer.
    pub buffered_bytes: usize,
}

impl StreamQos {
    pub(super) fn measure(ring: &Ring, t: Totals) -> Self {
        let mut bytes = 0u64;
        let mut video_frames = 0u32;
        let mut first_video_dts = None;
        let mut last_video_dts = None;
        let mut newest = None;
        let mut oldest = None;
        for f in ring.iter_rev() {
            let dts = f.dts_in(Timebase::MILLIS);
            let newest = *newest.get_or_insert(dts);
            if newest - dts > WINDOW_MS {
                break;
            }
            oldest = Some(dts);
            bytes += f.payload.len() as u64;
            if f.frame_type() == FrameType::Video && !f.is_config() {
                video_frames += 1;
                last_video_dts.get_or_insert(dts);
                first_video_dts = Some(dts);
            }
        }
        let span_ms = match (newest, oldest) {
            (Some(n), Some(o)) if n > o => n - o,
            _ => 0,
        };
        let bitrate_bps = if span_ms > 0 { bytes * 8 * 1000 / span_ms as u64 } else { 0 };
        let video_fps = match (first_video_dts, last_video_dts) {
            (Some(a), Some(b)) if b > a && video_frames > 1 => f64::from(video_frames - 1) * 1000.0 / (b - a) as f64,
            _ => 0.0,
        };
        let keyframe_interval_ms = match ring.keyframe_dts_ms {
            [Some(a), Some(b)] => Some(b - a),
            _ => None,
        };
        Self {
            frames_in: t.frames_in,
            bytes_in: t.bytes_in,
            bitrate_bps,
            video_fps,
            keyframe_interval_ms,
            subscribers: t.subscribers,
            skips: t.skips,
            skipped_frames: t.skipped_frames,
            evictions: t.evictions,
            timestamp_corrections: t.timestamp_corrections,
            buffered_frames: ring.len(),
            buffered_bytes: ring.bytes(),
        }
    }
}
