//! Track configurations: what the initialisation segment says about each
//! track, derived from the bus's `CONFIG` frames.

use arcly_core::ProtocolError;
use arcly_core::error::ProtocolErrorKind;
use arcly_core::frame::{CodecId, MediaFrame, Timebase};
use bytes::Bytes;

/// The timescale of video tracks: the 90 kHz of MPEG-TS and RTP, so video
/// timestamps from those sources stay exact.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// The sample entry of a track, with the bytes of its configuration box.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum SampleEntry {
    /// `avc1` + `avcC` (AVCDecoderConfigurationRecord).
    Avc(Bytes),
    /// `hvc1` + `hvcC` (HEVCDecoderConfigurationRecord).
    Hevc(Bytes),
    /// `av01` + `av1C` (AV1CodecConfigurationRecord).
    Av1(Bytes),
    /// `vp09` + `vpcC` (VPCodecConfigurationRecord, without the FullBox
    /// header).
    Vp9(Bytes),
    /// `mp4a` + `esds` around the AudioSpecificConfig.
    Aac(Bytes),
    /// `Opus` + `dOps` (the payload of the box).
    Opus(Bytes),
}

/// One track of a fragmented MP4: codec, configuration record, picture size
/// or sample rate and channels, and timescale (90 kHz for video, the sample
/// rate for audio, 48 kHz for Opus).
///
/// Built from the bus's `CONFIG` frame with
/// [`from_config_frame`](Self::from_config_frame), or per codec. VP9 is the
/// exception: its VPCodecConfigurationRecord has no picture size, so give
/// it with [`vp9`](Self::vp9) or [`with_dimensions`](Self::with_dimensions),
/// read it from a keyframe with
/// [`with_vp9_keyframe_size`](Self::with_vp9_keyframe_size), or build the
/// whole track from a keyframe with [`vp9_from_keyframe`](Self::vp9_from_keyframe).
///
/// ```
/// use arcly_core::frame::{CodecId, FrameFlags, MediaFrame};
/// use arcly_mux::fmp4::TrackConfig;
/// // AudioSpecificConfig: AAC-LC, 48 kHz, stereo.
/// let config = MediaFrame::new(CodecId::Aac, bytes::Bytes::from_static(&[0x11, 0x90]))
///     .with_flags(FrameFlags::CONFIG);
/// let track = TrackConfig::from_config_frame(&config).unwrap();
/// assert_eq!((track.sample_rate(), track.channels(), track.timescale()), (48_000, 2, 48_000));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackConfig {
    codec: CodecId,
    entry: SampleEntry,
    width: u32,
    height: u32,
    sample_rate: u32,
    channels: u16,
    timescale: u32,
}

fn error(kind: ProtocolErrorKind, context: impl Into<String>) -> ProtocolError {
    ProtocolError::new("fmp4", kind, context)
}

impl TrackConfig {
    fn video(codec: CodecId, entry: SampleEntry, width: u32, height: u32) -> Self {
        Self { codec, entry, width, height, sample_rate: 0, channels: 0, timescale: VIDEO_TIMESCALE }
    }

    fn audio(codec: CodecId, entry: SampleEntry, sample_rate: u32, channels: u16) -> Result<Self, ProtocolError> {
        if sample_rate == 0 {
            return Err(error(ProtocolErrorKind::InvalidValue, format!("{codec} sample rate 0")));
        }
        Ok(Self { codec, entry, width: 0, height: 0, sample_rate, channels, timescale: sample_rate })
    }

    /// The track for a `CONFIG` frame's payload (see the bus formats in
    /// `arcly-codec`): H.264, H.265, AV1, VP9 (picture size 0×0 until set),
    /// AAC or Opus. Other codecs are `Unsupported`.
    pub fn from_config_frame(frame: &MediaFrame) -> Result<Self, ProtocolError> {
        let record = &frame.payload;
        match frame.codec {
            CodecId::H264 => Self::h264(record),
            CodecId::H265 => Self::h265(record),
            CodecId::Av1 => Self::av1(record),
            CodecId::Vp9 => Self::vp9(record, 0, 0),
            CodecId::Aac => Self::aac(record),
            CodecId::Opus => Self::opus(record),
            other => Err(error(ProtocolErrorKind::Unsupported, format!("no fMP4 sample entry for {other}"))),
        }
    }

    /// An H.264 track from an AVCDecoderConfigurationRecord; the picture
    /// size comes from its first SPS.
    pub fn h264(record: &[u8]) -> Result<Self, ProtocolError> {
        let config = arcly_codec::h264::AvcConfig::parse(record)?;
        let sps = config.first_sps()?;
        // Samples are bus payloads, whose NAL length size is the one this
        // record declares: pass it through unchanged.
        let record = Bytes::copy_from_slice(record);
        Ok(Self::video(CodecId::H264, SampleEntry::Avc(record), sps.width, sps.height))
    }

    /// An H.265 track from an HEVCDecoderConfigurationRecord; the picture
    /// size comes from its first SPS.
    pub fn h265(record: &[u8]) -> Result<Self, ProtocolError> {
        let config = arcly_codec::h265::HevcConfig::parse(record)?;
        let sps = config.first_sps()?;
        // As for H.264: the record's NAL length size is the payloads'.
        let record = Bytes::copy_from_slice(record);
        Ok(Self::video(CodecId::H265, SampleEntry::Hevc(record), sps.width, sps.height))
    }

    /// An AV1 track from an AV1CodecConfigurationRecord; the picture size is
    /// the maximum frame size of the sequence header among its
    /// `configOBUs` (0×0 if it has none).
    pub fn av1(record: &[u8]) -> Result<Self, ProtocolError> {
        use arcly_codec::av1;
        let config = av1::Av1Config::parse(record)?;
        let mut size = (0, 0);
        for obu in av1::obus(&config.config_obus) {
            let obu = obu?;
            if obu.obu_type == av1::obu_type::SEQUENCE_HEADER {
                let header = av1::SequenceHeader::parse(obu.payload)?;
                size = (header.max_frame_width, header.max_frame_height);
                break;
            }
        }
        Ok(Self::video(CodecId::Av1, SampleEntry::Av1(Bytes::copy_from_slice(record)), size.0, size.1))
    }

    /// A VP9 track from a VPCodecConfigurationRecord (without the FullBox
    /// version and flags, which the writer adds) and the picture size, which
    /// the record does not carry.
    pub fn vp9(record: &[u8], width: u32, height: u32) -> Result<Self, ProtocolError> {
        arcly_codec::vp9::VpConfig::parse(record)?;
        Ok(Self::video(CodecId::Vp9, SampleEntry::Vp9(Bytes::copy_from_slice(record)), width, height))
    }

    /// A VP9 track from a keyframe alone (the payload of a bus frame): the
    /// VPCodecConfigurationRecord and the picture size both come from its
    /// uncompressed header, for sources that send no `CONFIG` frame.
    pub fn vp9_from_keyframe(keyframe: &[u8]) -> Result<Self, ProtocolError> {
        let header = arcly_codec::vp9::FrameHeader::parse(keyframe)?;
        let (true, Some(width), Some(height)) = (header.keyframe, header.width, header.height) else {
            return Err(error(ProtocolErrorKind::InvalidValue, "VP9 frame without a frame size (not a keyframe)"));
        };
        let record = arcly_codec::vp9::VpConfig::from_keyframe(&header).to_bytes();
        Ok(Self::video(CodecId::Vp9, SampleEntry::Vp9(record), width, height))
    }

    /// An AAC track from an AudioSpecificConfig; the timescale is its
    /// sampling rate.
    pub fn aac(asc: &[u8]) -> Result<Self, ProtocolError> {
        let config = arcly_codec::aac::AudioSpecificConfig::parse(asc)?;
        // channelConfiguration 7 is 7.1 (8 channels); 0 defers to a program
        // config element, where stereo is the usual content and decoders
        // read the real layout from the ASC anyway.
        let channels = match config.channel_config {
            0 => 2,
            7 => 8,
            n => u16::from(n),
        };
        Self::audio(CodecId::Aac, SampleEntry::Aac(Bytes::copy_from_slice(asc)), config.sample_rate, channels)
    }

    /// An Opus track from an OpusHead. Opus always runs at 48 kHz (the
    /// head's input sample rate is informative), so the timescale is 48000.
    pub fn opus(head: &[u8]) -> Result<Self, ProtocolError> {
        let head = arcly_codec::opus::OpusHead::parse(head)?;
        Self::audio(CodecId::Opus, SampleEntry::Opus(head.to_dops()), 48_000, u16::from(head.channels))
    }

    /// Sets the picture size (for VP9, or to override the parsed one).
    pub fn with_dimensions(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    /// Sets a VP9 track's picture size from a keyframe (the payload of a bus
    /// frame). Errors if the frame does not parse or is not a keyframe with
    /// a frame size.
    pub fn with_vp9_keyframe_size(self, keyframe: &[u8]) -> Result<Self, ProtocolError> {
        let header = arcly_codec::vp9::FrameHeader::parse(keyframe)?;
        match (header.keyframe, header.width, header.height) {
            (true, Some(width), Some(height)) => Ok(self.with_dimensions(width, height)),
            _ => Err(error(ProtocolErrorKind::InvalidValue, "VP9 frame without a frame size (not a keyframe)")),
        }
    }

    /// The codec.
    pub fn codec(&self) -> CodecId {
        self.codec
    }

    /// True for a video track.
    pub fn is_video(&self) -> bool {
        matches!(self.entry, SampleEntry::Avc(_) | SampleEntry::Hevc(_) | SampleEntry::Av1(_) | SampleEntry::Vp9(_))
    }

    /// Picture width in pixels (0 for audio, or unknown).
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Picture height in pixels (0 for audio, or unknown).
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Audio sample rate in Hz (0 for video).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Audio channels (0 for video).
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Ticks per second of the track's media timeline.
    pub fn timescale(&self) -> u32 {
        self.timescale
    }

    /// The timescale as a [`Timebase`].
    pub fn timebase(&self) -> Timebase {
        Timebase::new(1, self.timescale).unwrap_or(Timebase::MPEG)
    }

    /// The bytes of the sample entry's configuration box (`avcC`, `hvcC`,
    /// `av1C`, `vpcC` after its FullBox header, the AudioSpecificConfig
    /// inside `esds`, or `dOps`).
    pub fn codec_config(&self) -> &Bytes {
        match &self.entry {
            SampleEntry::Avc(b)
            | SampleEntry::Hevc(b)
            | SampleEntry::Av1(b)
            | SampleEntry::Vp9(b)
            | SampleEntry::Aac(b)
            | SampleEntry::Opus(b) => b,
        }
    }

    pub(super) fn entry(&self) -> &SampleEntry {
        &self.entry
    }
}

#[cfg(test)]
impl TrackConfig {
    /// A track without parsing its record (tests of box layout).
    pub(super) fn test_video(codec: CodecId, record: Bytes, width: u32, height: u32) -> Self {
        let entry = match codec {
            CodecId::H264 => SampleEntry::Avc(record),
            CodecId::H265 => SampleEntry::Hevc(record),
            CodecId::Av1 => SampleEntry::Av1(record),
            _ => SampleEntry::Vp9(record),
        };
        Self::video(codec, entry, width, height)
    }

    /// An audio track without parsing its record.
    pub(super) fn test_audio(codec: CodecId, record: Bytes, sample_rate: u32, channels: u16) -> Self {
        let entry = if codec == CodecId::Opus { SampleEntry::Opus(record) } else { SampleEntry::Aac(record) };
        Self { codec, entry, width: 0, height: 0, sample_rate, channels, timescale: sample_rate }
    }
}
