//! Frames to tags.

use arcly_core::frame::{CodecId, MediaFrame, Timebase};
use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::{BufMut, Bytes, BytesMut};

use super::body::{
    FRAME_INTER, FRAME_KEY, PACKET_CODED_FRAMES, PACKET_CODED_FRAMES_X, PACKET_SEQUENCE_START, SI24_MAX, SI24_MIN,
    SOUND_AAC, SOUND_ALAW, SOUND_EX_HEADER, SOUND_MP3, SOUND_ULAW, VIDEO_AVC,
};
use super::{FlvHeader, TagType, error};
use crate::amf0::{self, Amf0Value};

const TAG_HEADER_LEN: usize = 11;
/// The longest audio/video tag header this writer produces: Enhanced
/// video with a composition time (1 + FourCC + 3).
const MAX_CODEC_HEADER_LEN: usize = 8;
const MAX_BODY_LEN: usize = 0xff_ffff;

/// Writes [`MediaFrame`]s as FLV tags.
///
/// H.264 and AAC are written in the legacy form (codec id 7, sound format
/// 10) that every player reads; H.265, AV1, VP9 and Opus in the Enhanced
/// form (FourCC `hvc1`, `av01`, `vp09`, `Opus`); MP3 and G.711 in the legacy
/// form; [`CodecId::Metadata`] frames as script tags with the payload as the
/// body. `CONFIG` frames become sequence headers / `SequenceStart`.
///
/// The tag timestamp is the frame's `dts` in milliseconds, wrapped to 32
/// bits. H.264 and H.265 carry `pts - dts` (in milliseconds, clamped to the
/// signed 24-bit range) as composition time; H.265 frames without one use
/// `CodedFramesX`. AV1, VP9 and audio have no composition time in FLV, so
/// their `pts` is not written.
///
/// ```
/// use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
/// use arcly_mux::flv::FlvWriter;
/// use bytes::{Bytes, BytesMut};
/// let mut writer = FlvWriter::new();
/// let asc = MediaFrame::new(CodecId::Aac, Bytes::from_static(&[0x11, 0x90])).with_flags(FrameFlags::CONFIG);
/// let mut out = BytesMut::new();
/// writer.write_frame(&asc, &mut out).unwrap();
/// assert_eq!(&out[..], &[8, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0xaf, 0x00, 0x11, 0x90, 0, 0, 0, 15]);
///
/// // The same tag in three pieces for a vectored write; the payload is the
/// // frame's own buffer.
/// let [head, payload, trailer] = writer.write_frame_parts(&asc).unwrap();
/// assert_eq!([&head[..], &payload[..], &trailer[..]].concat(), &out[..]);
/// assert_eq!(payload.as_ptr(), asc.payload.as_ptr());
/// ```
#[derive(Clone, Debug, Default)]
pub struct FlvWriter {
    // No state yet; `&mut self` on the write methods leaves room for some
    // (timestamp rebasing, per-track sequence headers) without breaking
    // callers.
    _private: (),
}

/// The bytes of a tag before its payload: the 11-byte tag header and the
/// audio/video tag header (codec header). From [`FlvWriter::tag_prefix`],
/// for writers that put these few bytes next to their own headers instead
/// of in a buffer of their own (RTMP's chunk headers).
#[derive(Clone, Copy, Debug)]
pub struct TagPrefix {
    bytes: [u8; TAG_HEADER_LEN + MAX_CODEC_HEADER_LEN],
    len: usize,
    tag_type: TagType,
}

impl TagPrefix {
    /// The whole prefix: tag header then codec header.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The codec header alone: what precedes the payload in an RTMP
    /// message body.
    pub fn codec_header(&self) -> &[u8] {
        &self.bytes[TAG_HEADER_LEN..self.len]
    }

    /// The tag's type.
    pub fn tag_type(&self) -> TagType {
        self.tag_type
    }
}

impl FlvWriter {
    /// A writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The FLV header and `PreviousTagSize0`: what starts a file or an
    /// HTTP-FLV response.
    pub fn header(header: FlvHeader) -> Bytes {
        header.to_bytes()
    }

    /// An `onMetaData` script body: the name and an ECMA array of `fields`,
    /// in order. Send it as the payload of a [`CodecId::Metadata`] frame.
    ///
    /// ```
    /// use arcly_mux::amf0::Amf0Value;
    /// use arcly_mux::flv::FlvWriter;
    /// let body = FlvWriter::metadata(&[("width", Amf0Value::Number(1280.0))]);
    /// assert_eq!(&body[..13], b"\x02\x00\x0aonMetaData");
    /// assert_eq!(&body[13..18], &[0x08, 0, 0, 0, 1]); // ECMA array of 1
    /// ```
    pub fn metadata(fields: &[(&str, Amf0Value)]) -> Bytes {
        let array = fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        let mut out = BytesMut::new();
        amf0::encode_all(&[Amf0Value::from("onMetaData"), Amf0Value::EcmaArray(array)], &mut out);
        out.freeze()
    }

    /// Appends `frame` as one tag, followed by its `PreviousTagSize`, to
    /// `out`. The payload is copied once, into `out`.
    ///
    /// Fails with [`ProtocolErrorKind::Unsupported`] for codecs FLV cannot
    /// carry (VVC) and [`ProtocolErrorKind::TooLarge`] for a body over the
    /// 24-bit limit of 16 MiB − 1; `out` is unchanged then.
    pub fn write_frame(&mut self, frame: &MediaFrame, out: &mut BytesMut) -> Result<(), ProtocolError> {
        let prefix = self.prefix(frame)?;
        out.reserve(prefix.len + frame.payload.len() + 4);
        out.put_slice(prefix.as_slice());
        out.put_slice(&frame.payload);
        out.put_u32((prefix.len + frame.payload.len()) as u32);
        Ok(())
    }

    /// The tag for `frame` in three pieces, for vectored writes: the tag
    /// and codec headers, the frame's payload (the same buffer, not a copy)
    /// and the 4-byte `PreviousTagSize`. Errors as
    /// [`write_frame`](Self::write_frame).
    pub fn write_frame_parts(&mut self, frame: &MediaFrame) -> Result<[Bytes; 3], ProtocolError> {
        let prefix = self.prefix(frame)?;
        // One allocation for both small pieces.
        let mut small = BytesMut::with_capacity(prefix.len + 4);
        small.put_slice(prefix.as_slice());
        small.put_u32((prefix.len + frame.payload.len()) as u32);
        let head = small.split_to(prefix.len).freeze();
        Ok([head, frame.payload.clone(), small.freeze()])
    }

    /// The tag's bytes before the payload, without allocating; errors as
    /// [`write_frame`](Self::write_frame).
    ///
    /// ```
    /// use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
    /// use arcly_mux::flv::{FlvWriter, TagType};
    /// let frame = MediaFrame::new(CodecId::H264, bytes::Bytes::from_static(&[0; 4]))
    ///     .with_timestamps(40, 40, Timebase::MILLIS)
    ///     .with_flags(FrameFlags::KEYFRAME);
    /// let prefix = FlvWriter::new().tag_prefix(&frame).unwrap();
    /// assert_eq!(prefix.tag_type(), TagType::Video);
    /// assert_eq!(prefix.codec_header(), &[0x17, 1, 0, 0, 0]); // keyframe, AVC NALU, cts 0
    /// ```
    pub fn tag_prefix(&mut self, frame: &MediaFrame) -> Result<TagPrefix, ProtocolError> {
        self.prefix(frame)
    }

    fn prefix(&mut self, frame: &MediaFrame) -> Result<TagPrefix, ProtocolError> {
        let mut codec = [0u8; MAX_CODEC_HEADER_LEN];
        let config = frame.is_config();
        let video_frame_type = if config || frame.is_keyframe() { FRAME_KEY } else { FRAME_INTER };
        let cts = || {
            let pts = frame.pts_in(Timebase::MILLIS);
            let dts = frame.dts_in(Timebase::MILLIS);
            pts.saturating_sub(dts).clamp(SI24_MIN, SI24_MAX)
        };
        let (tag_type, codec_len) = match frame.codec {
            CodecId::H264 => {
                codec[0] = video_frame_type << 4 | VIDEO_AVC;
                codec[1] = u8::from(!config);
                let cts = if config { 0 } else { cts() };
                codec[2..5].copy_from_slice(&si24_bytes(cts));
                (TagType::Video, 5)
            }
            CodecId::H265 | CodecId::Av1 | CodecId::Vp9 => {
                let fourcc = match frame.codec {
                    CodecId::H265 => b"hvc1",
                    CodecId::Av1 => b"av01",
                    _ => b"vp09",
                };
                codec[1..5].copy_from_slice(fourcc);
                let (packet_type, len) = if config {
                    (PACKET_SEQUENCE_START, 5)
                } else if frame.codec == CodecId::H265 && cts() != 0 {
                    codec[5..8].copy_from_slice(&si24_bytes(cts()));
                    (PACKET_CODED_FRAMES, 8)
                } else if frame.codec == CodecId::H265 {
                    (PACKET_CODED_FRAMES_X, 5)
                } else {
                    (PACKET_CODED_FRAMES, 5)
                };
                codec[0] = 0x80 | video_frame_type << 4 | packet_type;
                (TagType::Video, len)
            }
            CodecId::Aac => {
                // 0xAF: AAC, and the rate/size/channel bits the FLV
                // specification fixes for AAC (the ASC is authoritative).
                codec[0] = SOUND_AAC << 4 | 0x0f;
                codec[1] = u8::from(!config);
                (TagType::Audio, 2)
            }
            CodecId::Opus => {
                let packet_type = if config { PACKET_SEQUENCE_START } else { PACKET_CODED_FRAMES };
                codec[0] = SOUND_EX_HEADER << 4 | packet_type;
                codec[1..5].copy_from_slice(b"Opus");
                (TagType::Audio, 5)
            }
            CodecId::Mp3 => {
                codec[0] = SOUND_MP3 << 4 | mp3_flags(&frame.payload);
                (TagType::Audio, 1)
            }
            // 8 kHz mono; the rate bits are ignored for G.711.
            CodecId::G711Alaw => {
                codec[0] = SOUND_ALAW << 4 | 0x02;
                (TagType::Audio, 1)
            }
            CodecId::G711Ulaw => {
                codec[0] = SOUND_ULAW << 4 | 0x02;
                (TagType::Audio, 1)
            }
            CodecId::Metadata => (TagType::Script, 0),
            other => {
                return Err(error(ProtocolErrorKind::Unsupported, format!("no FLV mapping for {other}")));
            }
        };
        let body_len = codec_len + frame.payload.len();
        if body_len > MAX_BODY_LEN {
            return Err(error(
                ProtocolErrorKind::TooLarge,
                format!("{} frame of {} bytes exceeds the FLV tag limit", frame.codec, frame.payload.len()),
            ));
        }
        // Wrapping to 32 bits is the FLV/RTMP timestamp rule.
        let ts = (frame.dts_in(Timebase::MILLIS) & 0xffff_ffff) as u32;
        let [ts_ext, ts_hi, ts_mid, ts_lo] = ts.to_be_bytes();
        let [_, len_hi, len_mid, len_lo] = (body_len as u32).to_be_bytes();
        let mut bytes = [0u8; TAG_HEADER_LEN + MAX_CODEC_HEADER_LEN];
        bytes[..TAG_HEADER_LEN].copy_from_slice(&[
            tag_type.as_u8(),
            len_hi,
            len_mid,
            len_lo,
            ts_hi,
            ts_mid,
            ts_lo,
            ts_ext,
            0,
            0,
            0,
        ]);
        bytes[TAG_HEADER_LEN..TAG_HEADER_LEN + codec_len].copy_from_slice(&codec[..codec_len]);
        Ok(TagPrefix { bytes, len: TAG_HEADER_LEN + codec_len, tag_type })
    }
}

fn si24_bytes(v: i64) -> [u8; 3] {
    let [_, a, b, c] = (v as i32).to_be_bytes();
    [a, b, c]
}

/// The rate, size and channel bits for an MP3 frame, from its header when
/// it has one: players take the real values from the MP3 stream, but some
/// set up their output from these bits.
fn mp3_flags(payload: &[u8]) -> u8 {
    const SIZE_16: u8 = 0x02;
    match payload {
        [0xff, b1, _, b3, ..] if b1 & 0xe0 == 0xe0 => {
            let rate = match (b1 >> 3) & 0x03 {
                3 => 3, // MPEG-1: 32/44.1/48 kHz
                2 => 2, // MPEG-2: 16/22.05/24 kHz
                _ => 1, // MPEG-2.5: 8/11.025/12 kHz
            };
            let stereo = u8::from(b3 >> 6 != 3);
            rate << 2 | SIZE_16 | stereo
        }
        _ => 3 << 2 | SIZE_16 | 1,
    }
}
