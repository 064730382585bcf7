//! Media frames: the unit every protocol publishes onto the bus and every
//! output reads from it.
//!
//! A [`MediaFrame`] is one access unit (a video picture, an audio frame or a
//! metadata record) with its timestamps kept in the timebase it arrived in.
//! Timestamps are converted with [`Timebase::rescale`], which works on absolute
//! values with exact integer arithmetic, so converting a whole stream never
//! accumulates drift (rescaling each frame's *duration* and summing would).

use std::fmt;

use bytes::Bytes;

/// A rational unit of time: one tick lasts `num / den` seconds.
///
/// ```
/// use arcly_core::frame::Timebase;
/// // 90 kHz ticks to milliseconds.
/// assert_eq!(Timebase::MPEG.rescale(90_000, Timebase::MILLIS), 1_000);
/// // 44.1 kHz samples to 90 kHz ticks, exact at every multiple.
/// let tb = Timebase::sample_rate(44_100).unwrap();
/// assert_eq!(tb.rescale(44_100 * 3600, Timebase::MPEG), 90_000 * 3600);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timebase {
    num: u32,
    den: u32,
}

impl Timebase {
    /// Milliseconds: RTMP and FLV timestamps.
    pub const MILLIS: Self = Self { num: 1, den: 1_000 };
    /// 90 kHz: MPEG-TS, RTP video, HLS.
    pub const MPEG: Self = Self { num: 1, den: 90_000 };
    /// Microseconds.
    pub const MICROS: Self = Self { num: 1, den: 1_000_000 };
    /// Nanoseconds.
    pub const NANOS: Self = Self { num: 1, den: 1_000_000_000 };

    /// A timebase of `num / den` seconds per tick; `None` if either is zero.
    pub const fn new(num: u32, den: u32) -> Option<Self> {
        if num == 0 || den == 0 { None } else { Some(Self { num, den }) }
    }

    /// One tick per audio sample at `rate` Hz; `None` for a zero rate.
    pub const fn sample_rate(rate: u32) -> Option<Self> {
        Self::new(1, rate)
    }

    /// Seconds per tick, numerator.
    pub const fn num(self) -> u32 {
        self.num
    }

    /// Seconds per tick, denominator.
    pub const fn den(self) -> u32 {
        self.den
    }

    /// Converts `value` ticks of `self` into ticks of `to`, rounding to the
    /// nearest tick (halves away from zero). Exact 128-bit arithmetic: no
    /// overflow for any `i64` input, and results saturate at the `i64` range.
    pub fn rescale(self, value: i64, to: Timebase) -> i64 {
        if self == to {
            return value;
        }
        let numer = i128::from(value) * i128::from(self.num) * i128::from(to.den);
        let denom = i128::from(self.den) * i128::from(to.num);
        let half = denom / 2;
        let rounded = if numer >= 0 { (numer + half) / denom } else { (numer - half) / denom };
        rounded.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
    }
}

impl fmt::Debug for Timebase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// What kind of payload a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// A video access unit.
    Video,
    /// An audio frame.
    Audio,
    /// Timed metadata or script data (e.g. `onMetaData`).
    Data,
}

impl FrameType {
    /// A dense index (0, 1, 2) for per-type tables.
    pub const fn index(self) -> usize {
        match self {
            Self::Video => 0,
            Self::Audio => 1,
            Self::Data => 2,
        }
    }
}

/// The codec of a frame's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecId {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    H265,
    /// AV1.
    Av1,
    /// VP9.
    Vp9,
    /// H.266 / VVC.
    Vvc,
    /// AAC (any profile).
    Aac,
    /// Opus.
    Opus,
    /// MPEG-1/2 Layer III.
    Mp3,
    /// G.711 A-law.
    G711Alaw,
    /// G.711 µ-law.
    G711Ulaw,
    /// Script data or timed metadata, carried opaquely.
    Metadata,
}

impl CodecId {
    /// The frame type this codec produces.
    pub const fn frame_type(self) -> FrameType {
        match self {
            Self::H264 | Self::H265 | Self::Av1 | Self::Vp9 | Self::Vvc => FrameType::Video,
            Self::Aac | Self::Opus | Self::Mp3 | Self::G711Alaw | Self::G711Ulaw => FrameType::Audio,
            Self::Metadata => FrameType::Data,
        }
    }

    /// A short lowercase name, stable for logs and APIs (`"h264"`, `"aac"`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::H264 => "h264",
            Self::H265 => "h265",
            Self::Av1 => "av1",
            Self::Vp9 => "vp9",
            Self::Vvc => "vvc",
            Self::Aac => "aac",
            Self::Opus => "opus",
            Self::Mp3 => "mp3",
            Self::G711Alaw => "pcma",
            Self::G711Ulaw => "pcmu",
            Self::Metadata => "metadata",
        }
    }
}

impl fmt::Display for CodecId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-frame flags.
///
/// ```
/// use arcly_core::frame::FrameFlags;
/// let f = FrameFlags::KEYFRAME | FrameFlags::DISCONTINUITY;
/// assert!(f.contains(FrameFlags::KEYFRAME));
/// assert!(!f.contains(FrameFlags::CONFIG));
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FrameFlags(u8);

impl FrameFlags {
    /// No flag set.
    pub const EMPTY: Self = Self(0);
    /// A random access point: decoding can start here.
    pub const KEYFRAME: Self = Self(1);
    /// Decoder configuration (parameter sets, AudioSpecificConfig, or the
    /// stream's metadata record), not a picture or sample. The bus caches the
    /// latest one per frame type for late joiners.
    pub const CONFIG: Self = Self(2);
    /// Timestamps do not continue from the previous frame (publisher restart,
    /// source switch, wrap that could not be unwrapped).
    pub const DISCONTINUITY: Self = Self(4);

    /// True when every flag in `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The raw bits.
    pub const fn bits(self) -> u8 {
        self.0
    }
}

impl std::ops::BitOr for FrameFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for FrameFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for FrameFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut set = f.debug_set();
        for (flag, name) in
            [(Self::KEYFRAME, "KEYFRAME"), (Self::CONFIG, "CONFIG"), (Self::DISCONTINUITY, "DISCONTINUITY")]
        {
            if self.contains(flag) {
                set.entry(&format_args!("{name}"));
            }
        }
        set.finish()
    }
}

/// One access unit on the bus.
///
/// The payload is a [`Bytes`]: cloning a frame never copies media data. On
/// the bus frames travel as `Arc<MediaFrame>`, so fanning one frame out to
/// a subscriber costs one reference-count increment.
///
/// ```
/// use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
/// let frame = MediaFrame::new(CodecId::H264, bytes::Bytes::from_static(&[0, 0, 0, 1, 0x65]))
///     .with_timestamps(3_003, 0, Timebase::MPEG)
///     .with_flags(FrameFlags::KEYFRAME);
/// assert!(frame.is_keyframe());
/// assert_eq!(frame.dts_in(Timebase::MILLIS), 0);
/// assert_eq!(frame.pts_in(Timebase::MILLIS), 33);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct MediaFrame {
    /// The payload codec.
    pub codec: CodecId,
    /// Keyframe, config and discontinuity flags.
    pub flags: FrameFlags,
    /// Presentation timestamp in `timebase` ticks.
    pub pts: i64,
    /// Decode timestamp in `timebase` ticks (equal to `pts` without B-frames).
    pub dts: i64,
    /// Duration in `timebase` ticks, 0 when unknown.
    pub duration: u32,
    /// The unit of `pts`, `dts` and `duration`.
    pub timebase: Timebase,
    /// Track number within the stream, for sources with several tracks of
    /// one type; 0 otherwise.
    pub track: u8,
    /// The encoded data, in the codec's bus format (documented per codec in
    /// `arcly-codec`; length-prefixed NAL units for H.264/H.265).
    pub payload: Bytes,
}

impl MediaFrame {
    /// A frame with zero timestamps in milliseconds and no flags.
    pub fn new(codec: CodecId, payload: Bytes) -> Self {
        Self {
            codec,
            flags: FrameFlags::EMPTY,
            pts: 0,
            dts: 0,
            duration: 0,
            timebase: Timebase::MILLIS,
            track: 0,
            payload,
        }
    }

    /// Sets presentation and decode timestamps and their timebase.
    pub fn with_timestamps(mut self, pts: i64, dts: i64, timebase: Timebase) -> Self {
        self.pts = pts;
        self.dts = dts;
        self.timebase = timebase;
        self
    }

    /// Sets the duration, in the frame's timebase.
    pub fn with_duration(mut self, duration: u32) -> Self {
        self.duration = duration;
        self
    }

    /// Adds flags.
    pub fn with_flags(mut self, flags: FrameFlags) -> Self {
        self.flags |= flags;
        self
    }

    /// The frame type, from the codec.
    pub fn frame_type(&self) -> FrameType {
        self.codec.frame_type()
    }

    /// True for a random access point.
    pub fn is_keyframe(&self) -> bool {
        self.flags.contains(FrameFlags::KEYFRAME)
    }

    /// True for decoder configuration or the metadata record.
    pub fn is_config(&self) -> bool {
        self.flags.contains(FrameFlags::CONFIG)
    }

    /// Presentation timestamp converted to `tb`.
    pub fn pts_in(&self, tb: Timebase) -> i64 {
        self.timebase.rescale(self.pts, tb)
    }

    /// Decode timestamp converted to `tb`.
    pub fn dts_in(&self, tb: Timebase) -> i64 {
        self.timebase.rescale(self.dts, tb)
    }

    /// Composition offset (`pts - dts`) in the frame's timebase.
    pub fn composition_offset(&self) -> i64 {
        self.pts.saturating_sub(self.dts)
    }
}

impl fmt::Debug for MediaFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The payload is summarised: frames are logged often and can be large.
        f.debug_struct("MediaFrame")
            .field("codec", &self.codec)
            .field("flags", &self.flags)
            .field("pts", &self.pts)
            .field("dts", &self.dts)
            .field("duration", &self.duration)
            .field("timebase", &self.timebase)
            .field("track", &self.track)
            .field("len", &self.payload.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rescale_known_values() {
        let check = |v: i64, from: Timebase, to: Timebase, want: i64| {
            assert_eq!(from.rescale(v, to), want, "{v} {from:?} -> {to:?}");
        };
        check(1_000, Timebase::MILLIS, Timebase::MPEG, 90_000);
        check(3_003, Timebase::MPEG, Timebase::MILLIS, 33);
        check(-3_003, Timebase::MPEG, Timebase::MILLIS, -33);
        check(45, Timebase::MPEG, Timebase::MILLIS, 1); // 0.5 ms rounds away from zero
        check(-45, Timebase::MPEG, Timebase::MILLIS, -1);
        check(1024, Timebase::sample_rate(48_000).unwrap(), Timebase::MPEG, 1920);
        check(i64::MAX, Timebase::MILLIS, Timebase::NANOS, i64::MAX); // saturates
        check(i64::MIN, Timebase::MILLIS, Timebase::NANOS, i64::MIN);
    }

    #[test]
    fn zero_timebase_is_refused() {
        assert!(Timebase::new(0, 1).is_none());
        assert!(Timebase::new(1, 0).is_none());
        assert!(Timebase::sample_rate(0).is_none());
    }

    #[test]
    fn codec_types() {
        assert_eq!(CodecId::H265.frame_type(), FrameType::Video);
        assert_eq!(CodecId::G711Ulaw.frame_type(), FrameType::Audio);
        assert_eq!(CodecId::Metadata.frame_type(), FrameType::Data);
        assert_eq!(CodecId::Aac.to_string(), "aac");
    }

    #[test]
    fn flags_debug_lists_set_flags() {
        let f = FrameFlags::KEYFRAME | FrameFlags::CONFIG;
        assert_eq!(format!("{f:?}"), "{KEYFRAME, CONFIG}");
        assert_eq!(format!("{:?}", FrameFlags::EMPTY), "{}");
    }

    proptest! {
        /// Rescaling absolute timestamps of an AAC stream (1024 samples per
        /// frame at 44.1 kHz) to 90 kHz never drifts: frame n lands within
        /// half a tick of its exact position, however long the stream runs.
        #[test]
        fn absolute_rescale_does_not_drift(n in 0i64..50_000_000) {
            let tb = Timebase::sample_rate(44_100).unwrap();
            let got = tb.rescale(n * 1024, Timebase::MPEG);
            let exact_x441 = n * 1024 * 90_000 / 441; // exact value times 100
            prop_assert!((got * 100 - exact_x441).abs() <= 50);
        }

        /// Round trip to a finer timebase and back is the identity.
        #[test]
        fn round_trip_through_finer_timebase(v in -(1i64 << 50)..(1i64 << 50)) {
            let there = Timebase::MILLIS.rescale(v, Timebase::MPEG);
            prop_assert_eq!(Timebase::MPEG.rescale(there, Timebase::MILLIS), v);
        }
    }
}
