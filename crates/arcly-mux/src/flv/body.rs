//! Tag bodies to frames: legacy and Enhanced video and audio, script data.

use arcly_core::ProtocolError;
use arcly_core::ProtocolErrorKind;
use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
use bytes::Bytes;

use super::error;
use crate::amf0::{self, Amf0Value};

/// Legacy video codec ids (low nibble of the first byte).
pub(super) const VIDEO_AVC: u8 = 7;
pub(super) const VIDEO_HEVC_LEGACY: u8 = 12;

/// Legacy sound formats (high nibble of the first byte).
pub(super) const SOUND_MP3: u8 = 2;
pub(super) const SOUND_ALAW: u8 = 7;
pub(super) const SOUND_ULAW: u8 = 8;
pub(super) const SOUND_EX_HEADER: u8 = 9;
pub(super) const SOUND_AAC: u8 = 10;
pub(super) const SOUND_MP3_8K: u8 = 14;

/// Video frame types (legacy: 4 bits, Enhanced: 3 bits).
pub(super) const FRAME_KEY: u8 = 1;
pub(super) const FRAME_INTER: u8 = 2;
const FRAME_COMMAND: u8 = 5;

/// Enhanced packet types (video and audio share 0–2 and ModEx).
pub(super) const PACKET_SEQUENCE_START: u8 = 0;
pub(super) const PACKET_CODED_FRAMES: u8 = 1;
const PACKET_SEQUENCE_END: u8 = 2;
pub(super) const PACKET_CODED_FRAMES_X: u8 = 3;
const VIDEO_PACKET_METADATA: u8 = 4;
const VIDEO_PACKET_MPEG2TS_SEQUENCE_START: u8 = 5;
const VIDEO_PACKET_MULTITRACK: u8 = 6;
const AUDIO_PACKET_MULTICHANNEL_CONFIG: u8 = 4;
const AUDIO_PACKET_MULTITRACK: u8 = 5;
const PACKET_MOD_EX: u8 = 7;

/// The exclusive top of a signed 24-bit composition time.
pub(super) const SI24_MAX: i64 = (1 << 23) - 1;
pub(super) const SI24_MIN: i64 = -(1 << 23);

fn truncated(what: &str, need: usize, have: usize) -> ProtocolError {
    error(ProtocolErrorKind::Truncated, format!("{what}: need {need} bytes, have {have}"))
}

fn si24(b: &[u8]) -> i64 {
    // Sign-extend by placing the 24 bits at the top of an i32.
    i64::from(i32::from_be_bytes([b[0], b[1], b[2], 0]) >> 8)
}

fn fourcc_text(f: [u8; 4]) -> String {
    f.iter().map(|&b| if b.is_ascii_graphic() { char::from(b) } else { '?' }).collect()
}

fn frame(codec: CodecId, payload: Bytes, dts: i64, cts: i64, flags: FrameFlags) -> Option<MediaFrame> {
    // An empty payload has nothing to decode or configure: some encoders
    // send empty NALU packets, and passing them on only upsets muxers.
    if payload.is_empty() {
        return None;
    }
    Some(
        MediaFrame::new(codec, payload)
            .with_timestamps(dts.saturating_add(cts), dts, Timebase::MILLIS)
            .with_flags(flags),
    )
}

/// Skips `ModEx` extensions (E-RTMP v2): each is a size (`UI8 + 1`, or
/// `UI16 + 1` when the byte says 256), that many bytes of data, then a byte
/// with the modifier type (high nibble, ignored) and the real packet type
/// (low nibble), which may be `ModEx` again. Returns the packet type and the
/// offset after the extensions.
fn skip_mod_ex(body: &[u8], mut packet_type: u8, mut pos: usize) -> Result<(u8, usize), ProtocolError> {
    while packet_type == PACKET_MOD_EX {
        let short = *body.get(pos).ok_or_else(|| truncated("ModEx size", pos + 1, body.len()))?;
        pos += 1;
        let mut size = usize::from(short) + 1;
        if size == 256 {
            let long = body.get(pos..pos + 2).ok_or_else(|| truncated("ModEx size", pos + 2, body.len()))?;
            size = usize::from(u16::from_be_bytes([long[0], long[1]])) + 1;
            pos += 2;
        }
        pos += size;
        let next = *body.get(pos).ok_or_else(|| truncated("ModEx data", pos + 1, body.len()))?;
        pos += 1;
        packet_type = next & 0x0f;
    }
    Ok((packet_type, pos))
}

fn read_fourcc(body: &[u8], pos: usize) -> Result<[u8; 4], ProtocolError> {
    match body.get(pos..pos + 4) {
        Some(f) => Ok([f[0], f[1], f[2], f[3]]),
        None => Err(truncated("FourCC", pos + 4, body.len())),
    }
}

/// Parses a video tag body (or RTMP video message) into a frame.
///
/// Legacy AVC (codec id 7) and HEVC (codec id 12): packet type 0 is the
/// sequence header and becomes a `CONFIG` frame whose payload is the
/// avcC/hvcC record; 1 is NAL units with a signed 24-bit composition time,
/// giving `pts = dts + cts`; 2 (end of sequence) gives `None`. Enhanced
/// bodies (first bit set) are read as described in the [module
/// docs](super). Frame type 1 sets `KEYFRAME`. Payloads are slices of
/// `body`.
///
/// Returns `Ok(None)` for bodies that carry no frame: end of sequence,
/// command frames, Enhanced metadata, and empty payloads. Other codecs are
/// refused with [`ProtocolErrorKind::Unsupported`].
///
/// ```
/// use arcly_core::frame::CodecId;
/// use arcly_mux::flv::parse_video;
/// use bytes::Bytes;
/// // AVC NALU, keyframe, composition time 80 ms.
/// let body = Bytes::from_static(&[0x17, 0x01, 0x00, 0x00, 0x50, 0, 0, 0, 1, 0x65]);
/// let frame = parse_video(&body, 1_000).unwrap().unwrap();
/// assert_eq!((frame.codec, frame.dts, frame.pts), (CodecId::H264, 1_000, 1_080));
/// assert!(frame.is_keyframe());
/// assert_eq!(&frame.payload[..], &[0, 0, 0, 1, 0x65]);
/// ```
pub fn parse_video(body: &Bytes, timestamp_ms: i64) -> Result<Option<MediaFrame>, ProtocolError> {
    let Some(&first) = body.first() else {
        return Err(truncated("video tag", 1, 0));
    };
    if first & 0x80 != 0 {
        return parse_ex_video(body, first, timestamp_ms);
    }
    let frame_type = first >> 4;
    let codec = match first & 0x0f {
        VIDEO_AVC => CodecId::H264,
        VIDEO_HEVC_LEGACY => CodecId::H265,
        other => {
            return Err(error(ProtocolErrorKind::Unsupported, format!("video codec id {other}")));
        }
    };
    if frame_type == FRAME_COMMAND {
        return Ok(None);
    }
    let Some(head) = body.get(1..5) else {
        return Err(truncated("AVC video tag header", 5, body.len()));
    };
    let cts = si24(&head[1..4]);
    let payload = body.slice(5..);
    match head[0] {
        0 => Ok(frame(codec, payload, timestamp_ms, 0, FrameFlags::CONFIG)),
        1 => {
            let flags = if frame_type == FRAME_KEY { FrameFlags::KEYFRAME } else { FrameFlags::EMPTY };
            Ok(frame(codec, payload, timestamp_ms, cts, flags))
        }
        2 => Ok(None),
        other => Err(error(ProtocolErrorKind::InvalidValue, format!("AVC packet type {other}"))),
    }
}

fn parse_ex_video(body: &Bytes, first: u8, timestamp_ms: i64) -> Result<Option<MediaFrame>, ProtocolError> {
    let frame_type = (first >> 4) & 0x07;
    let (packet_type, pos) = skip_mod_ex(body, first & 0x0f, 1)?;
    if packet_type != VIDEO_PACKET_METADATA && frame_type == FRAME_COMMAND {
        // A one-byte VideoCommand (seek start/end) with no picture.
        return Ok(None);
    }
    if packet_type == VIDEO_PACKET_MULTITRACK {
        return Err(error(ProtocolErrorKind::Unsupported, "Enhanced FLV multitrack video"));
    }
    let fourcc = read_fourcc(body, pos)?;
    let pos = pos + 4;
    let codec = match &fourcc {
        b"avc1" => CodecId::H264,
        b"hvc1" => CodecId::H265,
        b"av01" => CodecId::Av1,
        b"vp09" => CodecId::Vp9,
        _ => {
            return Err(error(ProtocolErrorKind::Unsupported, format!("video FourCC {:?}", fourcc_text(fourcc))));
        }
    };
    let flags = if frame_type == FRAME_KEY { FrameFlags::KEYFRAME } else { FrameFlags::EMPTY };
    match packet_type {
        PACKET_SEQUENCE_START => Ok(frame(codec, body.slice(pos..), timestamp_ms, 0, FrameFlags::CONFIG)),
        PACKET_CODED_FRAMES if matches!(codec, CodecId::H264 | CodecId::H265) => {
            let Some(cts) = body.get(pos..pos + 3) else {
                return Err(truncated("composition time", pos + 3, body.len()));
            };
            Ok(frame(codec, body.slice(pos + 3..), timestamp_ms, si24(cts), flags))
        }
        PACKET_CODED_FRAMES | PACKET_CODED_FRAMES_X => Ok(frame(codec, body.slice(pos..), timestamp_ms, 0, flags)),
        PACKET_SEQUENCE_END | VIDEO_PACKET_METADATA | VIDEO_PACKET_MPEG2TS_SEQUENCE_START => Ok(None),
        other => Err(error(ProtocolErrorKind::InvalidValue, format!("video packet type {other}"))),
    }
}

/// Parses an audio tag body (or RTMP audio message) into a frame.
///
/// AAC (sound format 10): packet type 0 is the AudioSpecificConfig and
/// becomes a `CONFIG` frame, 1 is one raw access unit. MP3 (formats 2 and
/// 14), G.711 A-law (7) and µ-law (8) pass their payload through. Sound
/// format 9 is the Enhanced header, read as described in the [module
/// docs](super). Audio frames are all sync points and carry `KEYFRAME`;
/// `pts = dts`. Other formats (PCM, Nellymoser, Speex, ...) are refused with
/// [`ProtocolErrorKind::Unsupported`].
///
/// ```
/// use arcly_core::frame::CodecId;
/// use arcly_mux::flv::parse_audio;
/// use bytes::Bytes;
/// // AAC sequence header: AudioSpecificConfig for AAC-LC 48 kHz stereo.
/// let body = Bytes::from_static(&[0xaf, 0x00, 0x11, 0x90]);
/// let config = parse_audio(&body, 0).unwrap().unwrap();
/// assert_eq!(config.codec, CodecId::Aac);
/// assert!(config.is_config());
/// assert_eq!(&config.payload[..], &[0x11, 0x90]);
/// ```
pub fn parse_audio(body: &Bytes, timestamp_ms: i64) -> Result<Option<MediaFrame>, ProtocolError> {
    let Some(&first) = body.first() else {
        return Err(truncated("audio tag", 1, 0));
    };
    let ts = timestamp_ms;
    match first >> 4 {
        SOUND_AAC => match body.get(1) {
            Some(0) => Ok(frame(CodecId::Aac, body.slice(2..), ts, 0, FrameFlags::CONFIG)),
            Some(1) => Ok(frame(CodecId::Aac, body.slice(2..), ts, 0, FrameFlags::KEYFRAME)),
            Some(other) => Err(error(ProtocolErrorKind::InvalidValue, format!("AAC packet type {other}"))),
            None => Err(truncated("AAC audio tag header", 2, body.len())),
        },
        SOUND_MP3 | SOUND_MP3_8K => Ok(frame(CodecId::Mp3, body.slice(1..), ts, 0, FrameFlags::KEYFRAME)),
        SOUND_ALAW => Ok(frame(CodecId::G711Alaw, body.slice(1..), ts, 0, FrameFlags::KEYFRAME)),
        SOUND_ULAW => Ok(frame(CodecId::G711Ulaw, body.slice(1..), ts, 0, FrameFlags::KEYFRAME)),
        SOUND_EX_HEADER => parse_ex_audio(body, first, ts),
        other => Err(error(ProtocolErrorKind::Unsupported, format!("sound format {other}"))),
    }
}

fn parse_ex_audio(body: &Bytes, first: u8, ts: i64) -> Result<Option<MediaFrame>, ProtocolError> {
    let (packet_type, pos) = skip_mod_ex(body, first & 0x0f, 1)?;
    if packet_type == AUDIO_PACKET_MULTITRACK {
        return Err(error(ProtocolErrorKind::Unsupported, "Enhanced FLV multitrack audio"));
    }
    let fourcc = read_fourcc(body, pos)?;
    let payload = body.slice(pos + 4..);
    let codec = match &fourcc {
        b"mp4a" => CodecId::Aac,
        b"Opus" => CodecId::Opus,
        b".mp3" => CodecId::Mp3,
        _ => {
            return Err(error(ProtocolErrorKind::Unsupported, format!("audio FourCC {:?}", fourcc_text(fourcc))));
        }
    };
    match packet_type {
        // MP3 has no decoder configuration; a sequence start carries nothing
        // the bus format could hold.
        PACKET_SEQUENCE_START if codec == CodecId::Mp3 => Ok(None),
        PACKET_SEQUENCE_START => Ok(frame(codec, payload, ts, 0, FrameFlags::CONFIG)),
        PACKET_CODED_FRAMES => Ok(frame(codec, payload, ts, 0, FrameFlags::KEYFRAME)),
        PACKET_SEQUENCE_END | AUDIO_PACKET_MULTICHANNEL_CONFIG => Ok(None),
        other => Err(error(ProtocolErrorKind::InvalidValue, format!("audio packet type {other}"))),
    }
}

const SET_DATA_FRAME: &str = "@setDataFrame";
const ON_META_DATA: &str = "onMetaData";

/// Decodes a script tag body into its AMF0 values, normally a name such as
/// `"onMetaData"` and an ECMA array. A leading `"@setDataFrame"` (how RTMP
/// publishers wrap `onMetaData`) is dropped, so both forms give
/// `["onMetaData", {...}]`.
///
/// ```
/// use arcly_mux::amf0::Amf0Value;
/// use arcly_mux::flv::{FlvWriter, parse_script};
/// let body = FlvWriter::metadata(&[("width", Amf0Value::Number(160.0))]);
/// let values = parse_script(&body).unwrap();
/// assert_eq!(values[0].as_str(), Some("onMetaData"));
/// assert_eq!(values[1].get("width").and_then(Amf0Value::as_f64), Some(160.0));
/// ```
pub fn parse_script(body: &[u8]) -> Result<Vec<Amf0Value>, ProtocolError> {
    let start = skip_set_data_frame(body)?;
    amf0::decode_all(&body[start..])
}

/// The offset in `body` after any leading `"@setDataFrame"` strings.
fn skip_set_data_frame(body: &[u8]) -> Result<usize, ProtocolError> {
    let mut rest = body;
    loop {
        let mut probe = rest;
        match amf0::decode(&mut probe) {
            Ok(Amf0Value::String(name)) if name == SET_DATA_FRAME => rest = probe,
            Ok(_) => return Ok(body.len() - rest.len()),
            Err(e) => return Err(e),
        }
    }
}

/// Turns a script tag body into a [`CodecId::Metadata`] frame whose payload
/// is the body without a leading `"@setDataFrame"` (a slice, not a copy).
/// The body must decode as AMF0. An `onMetaData` record is flagged `CONFIG`
/// (the bus keeps it for late joiners); other script data (`onCuePoint`,
/// `onTextData`, ...) is not. Empty bodies give `None`.
pub fn parse_script_frame(body: &Bytes, timestamp_ms: i64) -> Result<Option<MediaFrame>, ProtocolError> {
    if body.is_empty() {
        return Ok(None);
    }
    let start = skip_set_data_frame(body)?;
    let values = amf0::decode_all(&body[start..])?;
    let is_meta = values.first().and_then(Amf0Value::as_str) == Some(ON_META_DATA);
    let flags = if is_meta { FrameFlags::CONFIG } else { FrameFlags::EMPTY };
    Ok(frame(CodecId::Metadata, body.slice(start..), timestamp_ms, 0, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si24_sign_extends() {
        assert_eq!(si24(&[0x00, 0x00, 0x50]), 80);
        assert_eq!(si24(&[0xff, 0xff, 0xb0]), -80);
        assert_eq!(si24(&[0x7f, 0xff, 0xff]), SI24_MAX);
        assert_eq!(si24(&[0x80, 0x00, 0x00]), SI24_MIN);
    }

    #[test]
    fn mod_ex_is_skipped() {
        // ModEx with 1 byte of data, then CodedFramesX of vp09.
        let body = Bytes::from_static(&[0x97, 0x00, 0xaa, 0x03, b'v', b'p', b'0', b'9', 0x42]);
        let f = parse_video(&body, 5).unwrap().unwrap();
        assert_eq!((f.codec, f.pts, f.dts), (CodecId::Vp9, 5, 5));
        assert!(f.is_keyframe());
        assert_eq!(&f.payload[..], &[0x42]);
        // Audio: sound format 9, packet type ModEx whose size byte says 256,
        // so a 16-bit size (256 + 1) follows, then CodedFrames of Opus.
        let mut long = vec![0x97, 0xff, 0x01, 0x00];
        long.extend(std::iter::repeat_n(0, 257));
        long.extend([0x01, b'O', b'p', b'u', b's', 0x99]);
        let f = parse_audio(&Bytes::from(long.clone()), 7).unwrap().unwrap();
        assert_eq!((f.codec, f.dts), (CodecId::Opus, 7));
        assert_eq!(&f.payload[..], &[0x99]);
        // One byte short of the ModEx data is truncation, not a panic.
        long.truncate(4 + 257);
        assert!(parse_audio(&Bytes::from(long), 0).is_err());
    }

    #[test]
    fn command_frames_give_nothing() {
        let body = Bytes::from_static(&[0xd1, 0x00]); // Enhanced, frame type 5, command.
        assert_eq!(parse_video(&body, 0).unwrap(), None);
        let body = Bytes::from_static(&[0x57, 0x00]); // Legacy AVC info frame.
        assert_eq!(parse_video(&body, 0).unwrap(), None);
    }
}
