//! Live quality-of-service figures for one stream.

use crate::frame::{FrameType, Timebase};

use super::delivery::DeliveryTotals;
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
///
/// Delivery figures (`frames_out`, `bytes_out`, the lag) are not counted as
/// frames go out: each subscriber keeps its own totals and position where
/// the snapshot reads them, so taking one costs a pass over the
/// subscribers, and delivering costs no shared counter.
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
    /// Frames (configuration frames included) delivered to subscribers,
    /// past and present (players and the HLS packager alike).
    pub frames_out: u64,
    /// Payload bytes of those frames (container and protocol overhead not
    /// included, like `bytes_in`).
    pub bytes_out: u64,
    /// How many frames the subscriber furthest behind is behind the newest
    /// frame (0 without subscribers).
    pub max_lag_frames: u64,
    /// The same lag in media time: the newest frame's decode time minus
    /// that of the furthest-behind subscriber's next frame, in milliseconds
    /// (0 without subscribers; at most the buffer's length for one whose
    /// position fell out of the buffer).
    pub max_lag_ms: i64,
    /// Frames held in the buffer.
    pub buffered_frames: usize,
    /// Payload bytes held in the buffer.
    pub buffered_bytes: usize,
}

impl StreamQos {
    pub(super) fn measure(ring: &Ring, d: DeliveryTotals, t: Totals) -> Self {
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
            frames_out: d.frames,
            bytes_out: d.bytes,
            max_lag_frames: d.laggard.map_or(0, |p| ring.head().saturating_sub(p)),
            max_lag_ms: d.laggard.map_or(0, |p| lag_ms(ring, p)),
            buffered_frames: ring.len(),
            buffered_bytes: ring.bytes(),
        }
    }
}

/// Media time between the newest frame and the first media frame at or
/// after `position` (or after the oldest frame held, if it fell out).
fn lag_ms(ring: &Ring, position: u64) -> i64 {
    let head = ring.head();
    let newest = (ring.base()..head).rev().filter_map(|seq| ring.get(seq)).find(|f| !f.is_config());
    // Configuration frames carry no meaningful time; a few are skipped.
    let next = (position.max(ring.base())..head).take(8).filter_map(|seq| ring.get(seq)).find(|f| !f.is_config());
    match (newest, next) {
        (Some(n), Some(p)) => (n.dts_in(Timebase::MILLIS) - p.dts_in(Timebase::MILLIS)).max(0),
        _ => 0,
    }
}
