//! Packaging settings.

use std::time::Duration;

/// How streams are packaged. The defaults suit LL-HLS players: 2 s segments
/// of 200 ms parts, six segments kept, both fMP4 (LL-HLS) and MPEG-TS
/// (classic HLS) written.
///
/// ```
/// use std::time::Duration;
/// use arcly_hls::HlsConfig;
/// let config = HlsConfig { segment_target: Duration::from_secs(4), ..HlsConfig::default() };
/// assert_eq!(config.part_target, Duration::from_millis(200));
/// assert_eq!(config.blocking_timeout, Duration::from_secs(6));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HlsConfig {
    /// The segment duration aimed at. Segments are cut at the first keyframe
    /// at or after this duration (never inside a GOP), so a longer GOP
    /// makes longer segments.
    pub segment_target: Duration,
    /// The LL-HLS part target (`PART-TARGET`): parts never exceed it (except a
    /// single frame longer than it, which cannot be split). Fixed for the
    /// life of a stream.
    pub part_target: Duration,
    /// Completed segments kept and listed; older ones are deleted.
    pub window: usize,
    /// Write classic HLS in MPEG-TS (`ts/index.m3u8`).
    pub ts: bool,
    /// Write LL-HLS in fMP4 (`index.m3u8`).
    pub fmp4: bool,
    /// The longest a blocking playlist reload or a hinted part request waits.
    pub blocking_timeout: Duration,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            segment_target: Duration::from_secs(2),
            part_target: Duration::from_millis(200),
            window: 6,
            ts: true,
            fmp4: true,
            blocking_timeout: Duration::from_secs(6),
        }
    }
}

impl HlsConfig {
    /// The settings with out-of-range values brought into range: a segment
    /// target of at least 100 ms, a part target between 10 ms and the
    /// segment target, a window of at least 2 segments, fMP4 on if both
    /// formats were off, and a blocking timeout of at least 100 ms.
    pub fn sanitized(&self) -> Self {
        let segment_target = self.segment_target.max(Duration::from_millis(100));
        let part_target = self.part_target.clamp(Duration::from_millis(10), segment_target);
        Self {
            segment_target,
            part_target,
            window: self.window.clamp(2, 10_000),
            ts: self.ts,
            fmp4: self.fmp4 || !self.ts,
            blocking_timeout: self.blocking_timeout.max(Duration::from_millis(100)),
        }
    }
}
