//! FLV, with Enhanced FLV (E-RTMP) video and audio: a streaming tag reader,
//! tag body parsers that turn tags into [`MediaFrame`]s, and a writer that
//! turns frames back into tags.
//!
//! The pieces, in the order data flows:
//! - [`FlvReader`] takes bytes in chunks of any size and yields [`FlvTag`]s;
//!   tag bodies are slices of the input, never copies.
//! - [`parse_video`], [`parse_audio`] and [`parse_script_frame`] (or
//!   [`FlvTag::to_frame`], which picks one) turn a tag body into a frame in
//!   the bus format of `arcly-codec`: AVC/HEVC sequence headers become
//!   `CONFIG` frames carrying avcC/hvcC, NALU packets pass through as
//!   length-prefixed NAL units, composition times become `pts - dts`. The
//!   same functions read RTMP audio and video message bodies, which are FLV
//!   tag bodies.
//! - [`FlvWriter`] writes frames as tags: H.264 and AAC in the legacy form
//!   every player reads, H.265, AV1, VP9 and Opus in the Enhanced form.
//!   [`FlvWriter::write_frame_parts`] returns the tag as header bytes plus
//!   the frame's own payload for vectored writes, with no payload copy.
//!
//! ```
//! use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
//! use arcly_mux::flv::{FlvHeader, FlvReader, FlvWriter};
//! use bytes::{Bytes, BytesMut};
//!
//! let mut writer = FlvWriter::new();
//! let mut out = BytesMut::from(&FlvWriter::header(FlvHeader { has_audio: false, has_video: true })[..]);
//! let idr = MediaFrame::new(CodecId::H264, Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]))
//!     .with_timestamps(80, 0, Timebase::MILLIS)
//!     .with_flags(FrameFlags::KEYFRAME);
//! writer.write_frame(&idr, &mut out).unwrap();
//!
//! let mut reader = FlvReader::new();
//! reader.push(&out);
//! let tag = reader.next_tag().unwrap().unwrap();
//! let frame = tag.to_frame().unwrap().unwrap();
//! assert_eq!(frame, idr);
//! assert!(reader.next_tag().is_none());
//! ```
//!
//! # What Enhanced FLV support follows
//! The Veovera "Enhanced RTMP" specification, v1 (2023: IsExHeader bit,
//! FourCC video, packet types 0–5) and the parts of v2 (2024) this module
//! needs, as far as they are known here:
//! - Video: FourCCs `avc1`, `hvc1`, `av01`, `vp09`. `CodedFrames` carries a
//!   signed 24-bit composition time for `hvc1` (v1) and `avc1` (v2);
//!   `CodedFramesX` has none. `ModEx` packet types are skipped over (their
//!   only defined modifier, a nanosecond timestamp offset, is below the
//!   millisecond resolution of FLV). Command frames (frame type 5),
//!   `Metadata` (HDR `colorInfo`), `MPEG2TSSequenceStart` and `SequenceEnd`
//!   produce no frame. `Multitrack` is refused as unsupported.
//! - Audio: `SoundFormat` 9 is the extended header; FourCCs `mp4a` (AAC,
//!   `SequenceStart` = AudioSpecificConfig), `Opus` (`SequenceStart` =
//!   OpusHead) and `.mp3`; `CodedFrames` carry raw frames.
//!   `MultichannelConfig` and `SequenceEnd` produce no frame; `ModEx` is
//!   skipped as for video; `Multitrack`, `ac-3`, `ec-3` and `fLaC` are
//!   refused as unsupported.
//! - Legacy HEVC with video codec id 12 (a widespread non-standard
//!   extension, laid out like AVC) is read; it is never written.
//!
//! ffmpeg 5.1, the reference peer of the tests, predates Enhanced FLV, so the
//! `hvc1`, `av01`, `vp09` and `Opus` forms are tested by round trip through
//! this module only.
//!
//! # Timestamps
//! Tag timestamps are 32-bit milliseconds (24 bits plus an extended byte).
//! Frames read carry [`Timebase::MILLIS`](arcly_core::frame::Timebase::MILLIS)
//! with `dts` = the tag timestamp and `pts` = `dts` + composition time. The
//! writer rescales `dts` to milliseconds and wraps it to 32 bits, as RTMP
//! does; a reader unwraps if it needs to.

mod body;
mod reader;
mod writer;

use arcly_core::frame::MediaFrame;
use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::Bytes;

pub use body::{parse_audio, parse_script, parse_script_frame, parse_video};
pub use reader::FlvReader;
pub use writer::{FlvWriter, TagPrefix};

/// The protocol name in errors from this module.
pub const PROTOCOL: &str = "flv";

/// The default largest tag body [`FlvReader`] accepts: 16 MiB, which covers
/// every size the 24-bit length field can express.
pub const DEFAULT_MAX_TAG_SIZE: usize = 16 << 20;

fn error(kind: ProtocolErrorKind, context: impl Into<String>) -> ProtocolError {
    ProtocolError::new(PROTOCOL, kind, context)
}

/// The kind of an FLV tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TagType {
    /// Audio data (8).
    Audio,
    /// Video data (9).
    Video,
    /// Script data: AMF0 values such as `onMetaData` (18).
    Script,
}

impl TagType {
    /// The tag type from its number; `None` for types FLV does not define.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            8 => Some(Self::Audio),
            9 => Some(Self::Video),
            18 => Some(Self::Script),
            _ => None,
        }
    }

    /// The number of the tag type, as written in a tag header (and used as
    /// the RTMP message type id).
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Audio => 8,
            Self::Video => 9,
            Self::Script => 18,
        }
    }
}

/// The FLV file header: the signature, version 1 and which kinds of tags
/// the file announces.
///
/// ```
/// use arcly_mux::flv::FlvHeader;
/// let header = FlvHeader { has_audio: true, has_video: true };
/// let bytes = header.to_bytes();
/// assert_eq!(&bytes[..], b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
/// assert_eq!(FlvHeader::parse(&bytes).unwrap(), header);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlvHeader {
    /// The file announces audio tags.
    pub has_audio: bool,
    /// The file announces video tags.
    pub has_video: bool,
}

impl FlvHeader {
    /// The length of the header this crate writes, without the
    /// `PreviousTagSize0` that follows it.
    pub const LEN: usize = 9;

    /// Parses the header at the front of `data` (at least 9 bytes; the data
    /// offset field may announce a longer header, which is
    /// [`FlvReader`]'s business).
    pub fn parse(data: &[u8]) -> Result<Self, ProtocolError> {
        let Some(head) = data.get(..Self::LEN) else {
            return Err(error(ProtocolErrorKind::Truncated, format!("FLV header: {} of 9 bytes", data.len())));
        };
        if &head[..3] != b"FLV" {
            return Err(error(ProtocolErrorKind::InvalidValue, "missing FLV signature").at(0));
        }
        Ok(Self { has_audio: head[4] & 0x04 != 0, has_video: head[4] & 0x01 != 0 })
    }

    /// The header followed by `PreviousTagSize0` (0): the 13 bytes that
    /// start an FLV file or HTTP-FLV response.
    pub fn to_bytes(self) -> Bytes {
        let flags = if self.has_audio { 0x04 } else { 0 } | if self.has_video { 0x01 } else { 0 };
        Bytes::copy_from_slice(&[b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0])
    }
}

/// One FLV tag. The body is a slice of the bytes given to the reader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlvTag {
    /// Audio, video or script.
    pub tag_type: TagType,
    /// The 32-bit timestamp in milliseconds (the 24-bit field with the
    /// extended byte as its top 8 bits).
    pub timestamp_ms: u32,
    /// The stream id field (always 0 in files).
    pub stream_id: u32,
    /// The tag body: an audio or video tag header and payload, or AMF0.
    pub body: Bytes,
}

impl FlvTag {
    /// The frame this tag carries, parsed with [`parse_video`],
    /// [`parse_audio`] or [`parse_script_frame`]; `Ok(None)` for tags that
    /// carry no frame (end of sequence, command frames).
    pub fn to_frame(&self) -> Result<Option<MediaFrame>, ProtocolError> {
        let ts = i64::from(self.timestamp_ms);
        match self.tag_type {
            TagType::Video => parse_video(&self.body, ts),
            TagType::Audio => parse_audio(&self.body, ts),
            TagType::Script => parse_script_frame(&self.body, ts),
        }
    }
}

/// Fuzz entry point: reads arbitrary bytes as an FLV stream (whole and in
/// uneven chunks, which must agree), parses every tag body, writes every
/// frame back and checks it reads back equal; also parses the input as a
/// bare audio, video and script body.
///
/// # Panics
/// When chunking changes the result or a frame does not survive the write
/// and read round trip (a bug in this module).
#[doc(hidden)]
pub fn fuzz_read(data: &[u8]) {
    let whole = Bytes::copy_from_slice(data);
    for body_ts in [0, i64::from(u32::MAX)] {
        for frame in [parse_video(&whole, body_ts), parse_audio(&whole, body_ts), parse_script_frame(&whole, body_ts)]
            .into_iter()
            .flatten()
            .flatten()
        {
            check_round_trip(&frame);
        }
    }
    let _ = parse_script(&whole);

    let read_all = |chunk: usize| {
        let mut reader = FlvReader::new();
        let mut tags = Vec::new();
        let mut drain = |reader: &mut FlvReader| {
            while let Some(tag) = reader.next_tag() {
                tags.push(tag);
            }
        };
        if chunk == 0 {
            reader.push_bytes(whole.clone());
            drain(&mut reader);
        } else {
            for piece in data.chunks(chunk) {
                reader.push(piece);
                drain(&mut reader);
            }
        }
        tags
    };
    let tags = read_all(0);
    let chunk = usize::from(data.first().copied().unwrap_or(1)).clamp(1, 64);
    assert_eq!(tags, read_all(chunk), "chunking changed the tags");
    for tag in tags.into_iter().flatten() {
        if let Ok(Some(frame)) = tag.to_frame() {
            check_round_trip(&frame);
        }
        if tag.tag_type == TagType::Script {
            let _ = parse_script(&tag.body);
        }
    }
}

fn check_round_trip(frame: &MediaFrame) {
    let mut writer = FlvWriter::new();
    let mut out = bytes::BytesMut::from(&FlvHeader::default().to_bytes()[..]);
    if writer.write_frame(frame, &mut out).is_err() {
        return;
    }
    let mut reader = FlvReader::new();
    reader.push_bytes(out.freeze());
    let tag = reader.next_tag().expect("a tag").expect("a valid tag");
    let back = tag.to_frame().expect("a frame that parses").expect("a frame");
    assert_eq!(&back, frame, "write and read changed the frame");
    assert_eq!(back.payload, frame.payload);
}
