//! `arcly-mux`: AMF0, the FLV reader and writer, the MPEG-TS demuxer and
//! muxer.

use std::collections::HashMap;

use arcly_core::ProtocolError;
use arcly_core::frame::{FrameFlags, FrameType, MediaFrame, Timebase};
use arcly_mux::amf0::{self, Amf0Value};
use arcly_mux::flv::{self, FlvReader, FlvTag, FlvWriter};
use arcly_mux::ts::{DemuxEvent, EsInfo, TIMESTAMP_MODULUS, TrackSpec, TsDemuxer, TsMuxer};
use bytes::{Bytes, BytesMut};

use crate::split;

/// AMF0 decoding as RTMP commands (value by value) and FLV script tags
/// (all at once, and with a value budget) use it: a failed decode leaves
/// the input where it was, and a budget is never exceeded.
pub fn amf0(data: &[u8]) {
    let mut rest = data;
    while !rest.is_empty() {
        let before = rest.len();
        match amf0::decode(&mut rest) {
            Ok(_) => assert!(rest.len() < before, "a decoded value took no input"),
            Err(_) => {
                assert_eq!(rest.len(), before, "a failed decode moved the input");
                break;
            }
        }
    }
    let _ = amf0::decode_all(data);
    let budget = usize::from(data.first().copied().unwrap_or(0));
    if let Ok(values) = amf0::decode_all_with_budget(data, budget) {
        let n: usize = values.iter().map(value_count).sum();
        assert!(n <= budget, "{n} values decoded with a budget of {budget}");
    }
    let _ = flv::parse_script(data);
}

/// AMF0 round trip: values that decode, encoded and decoded again, are
/// the same values (numbers bit for bit, so a NaN stays that NaN).
pub fn amf0_roundtrip(data: &[u8]) {
    let Ok(values) = amf0::decode_all(data) else { return };
    let mut out = BytesMut::new();
    amf0::encode_all(&values, &mut out);
    let again = amf0::decode_all(&out).unwrap_or_else(|e| panic!("re-encoded AMF0 does not decode: {e}"));
    assert!(
        values.len() == again.len() && values.iter().zip(&again).all(|(a, b)| same_value(a, b)),
        "AMF0 round trip changed values: {values:?} -> {again:?}"
    );
}

/// The values in `v`, nested ones included, as the decoder's budget counts.
fn value_count(v: &Amf0Value) -> usize {
    1 + match v {
        Amf0Value::Object(p) | Amf0Value::EcmaArray(p) | Amf0Value::TypedObject { properties: p, .. } => {
            p.iter().map(|(_, v)| value_count(v)).sum()
        }
        Amf0Value::StrictArray(items) => items.iter().map(value_count).sum(),
        _ => 0,
    }
}

/// Equality with numbers compared by their bits.
fn same_value(a: &Amf0Value, b: &Amf0Value) -> bool {
    use Amf0Value as V;
    let props = |a: &[(String, V)], b: &[(String, V)]| {
        a.len() == b.len() && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
    };
    match (a, b) {
        (V::Number(x), V::Number(y)) => x.to_bits() == y.to_bits(),
        (V::Date { millis: x, timezone: tx }, V::Date { millis: y, timezone: ty }) => {
            x.to_bits() == y.to_bits() && tx == ty
        }
        (V::Object(x), V::Object(y)) | (V::EcmaArray(x), V::EcmaArray(y)) => props(x, y),
        (V::TypedObject { class_name: cx, properties: px }, V::TypedObject { class_name: cy, properties: py }) => {
            cx == cy && props(px, py)
        }
        (V::StrictArray(x), V::StrictArray(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b)),
        _ => a == b,
    }
}

/// The FLV reader on a stream cut into pieces (alternately copied and
/// handed over as `Bytes`) gives the same tags and error as on the whole
/// stream, holds no more than one partial tag (or the file header) between
/// pieces, and places errors inside the input; every tag body goes through
/// the body parsers. The seed byte
/// also picks the `PreviousTagSize` check and a small tag size limit.
/// `arcly_mux::flv::fuzz_read` runs on the stream too (bare body parsers,
/// each frame written and read back).
pub fn flv_read(data: &[u8]) {
    let (seed, stream) = split::seeded(data);
    flv::fuzz_read(stream);
    let whole = read_tags(seed, &[stream]);
    let pieces = read_tags(seed, &split::pieces(seed, stream));
    assert_eq!(whole, pieces, "cutting the input changed the tags");
    for tag in &whole {
        match tag {
            Ok(tag) => drop(tag.to_frame()),
            Err(e) => assert!(e.offset.is_some_and(|at| at <= stream.len() as u64), "error outside the input: {e}"),
        }
    }
}

fn read_tags(seed: u8, pieces: &[&[u8]]) -> Vec<Result<FlvTag, ProtocolError>> {
    let mut reader = FlvReader::new().with_previous_tag_size_check(seed & 0x80 == 0);
    let max_tag_size = if seed & 0x40 != 0 { 300 } else { flv::DEFAULT_MAX_TAG_SIZE };
    reader = reader.with_max_tag_size(max_tag_size);
    let mut tags = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        if i % 2 == 0 {
            reader.push(piece);
        } else {
            reader.push_bytes(Bytes::copy_from_slice(piece));
        }
        tags.extend(std::iter::from_fn(|| reader.next_tag()));
        // A partial tag (header, body, PreviousTagSize), or before the first
        // tag the file header with at most 1 MiB of padding.
        let most = if reader.header().is_some() { 11 + max_tag_size + 4 } else { (1 << 20) + 4 };
        assert!(reader.buffered() < most, "{} bytes held between pieces", reader.buffered());
    }
    tags
}

/// FLV round trip: the frames of the tags read up to the first reader
/// error, written with one `FlvWriter` after the same header and read
/// again, are the same frames.
pub fn flv_roundtrip(data: &[u8]) {
    let mut reader = FlvReader::new();
    reader.push(data);
    let mut frames = Vec::new();
    while let Some(Ok(tag)) = reader.next_tag() {
        if let Ok(Some(frame)) = tag.to_frame() {
            frames.push(frame);
        }
    }
    let Some(header) = reader.header() else { return };
    let mut writer = FlvWriter::new();
    let mut out = BytesMut::from(&FlvWriter::header(header)[..]);
    for frame in &frames {
        writer.write_frame(frame, &mut out).unwrap_or_else(|e| panic!("a frame read from FLV is not written: {e}"));
    }
    let mut again = FlvReader::new();
    again.push_bytes(out.freeze());
    let mut back = Vec::new();
    while let Some(tag) = again.next_tag() {
        let tag = tag.unwrap_or_else(|e| panic!("written FLV does not read: {e}"));
        match tag.to_frame() {
            Ok(Some(frame)) => back.push(frame),
            other => panic!("a written tag gives {other:?}, not a frame"),
        }
    }
    assert_eq!(again.header(), Some(header), "FLV header round trip");
    assert_eq!(back, frames, "FLV round trip changed the frames");
}

/// The MPEG-TS demuxer on a stream cut into pieces gives the same events
/// (tables, frames, errors with their offsets) as on the whole stream, and
/// its errors are placed inside the input.
pub fn ts_demux(data: &[u8]) {
    let (seed, stream) = split::seeded(data);
    let whole = demux(&[stream]);
    let pieces = demux(&split::pieces(seed, stream));
    assert_eq!(whole, pieces, "cutting the input changed the demuxer's events");
    for e in whole.iter().filter_map(|e| e.as_ref().err()) {
        assert!(e.offset.is_some_and(|at| at <= stream.len() as u64), "error outside the input: {e}");
    }
}

fn demux(pieces: &[&[u8]]) -> Vec<Result<DemuxEvent, ProtocolError>> {
    let mut demux = TsDemuxer::new();
    let mut events = Vec::new();
    for piece in pieces {
        demux.push(piece);
        events.extend(std::iter::from_fn(|| demux.poll()));
    }
    demux.flush();
    events.extend(std::iter::from_fn(|| demux.poll()));
    events
}

/// MPEG-TS round trip: the frames of the first program (up to a PMT that
/// changes its streams), muxed with a `TsMuxer` of its extracted streams
/// and demuxed again, are the same frames, track by track, in the terms
/// the format carries:
/// - codec, track, payload and flags (but `DISCONTINUITY`, which marks
///   losses in the input);
/// - timestamps modulo 2^33 at 90 kHz, audio within one 90 kHz tick (a
///   PES timestamp's resolution; audio frames are timed in samples);
/// - the configuration in force: at every audio frame, and at every video
///   keyframe (the muxer repeats parameter sets at keyframes only).
///
/// Audio frames too large for one PES (`PES_packet_length` is 16 bits)
/// are refused by the muxer and left out.
pub fn ts_roundtrip(data: &[u8]) {
    let first = demux(&[data]);
    let Some((streams, frames)) = first_program(&first) else { return };
    let specs: Vec<TrackSpec> = streams.iter().filter_map(|s| Some(TrackSpec::new(s.codec?, None))).collect();
    let Ok(mut muxer) = TsMuxer::new(&specs) else { return };
    let mut out = BytesMut::new();
    muxer.write_psi(&mut out);
    let mut written = Vec::new();
    for frame in frames {
        match muxer.write_frame(&frame, &mut out) {
            Ok(()) => written.push(frame),
            Err(_) if frame.frame_type() == FrameType::Audio && frame.payload.len() > 0xff00 => {}
            Err(e) => panic!("the muxer refuses a demuxed frame ({e}): {frame:?}"),
        }
    }
    let second = demux(&[&out]);
    let Some((_, again)) = first_program(&second) else { panic!("muxed stream has no program: {second:?}") };
    let want = by_track(&written);
    let got = by_track(&again);
    assert_eq!(
        want.keys().collect::<std::collections::BTreeSet<_>>(),
        got.keys().collect::<std::collections::BTreeSet<_>>(),
        "tracks differ"
    );
    for (key, want) in &want {
        let got = &got[key];
        assert_eq!(want.len(), got.len(), "track {key:?}: {} frames became {}", want.len(), got.len());
        for (i, ((a, ca), (b, cb))) in want.iter().zip(got).enumerate() {
            let same = a.codec == b.codec
                && a.track == b.track
                && a.payload == b.payload
                && a.timebase == b.timebase
                && lasting_flags(a) == lasting_flags(b)
                && same_time(a, a.pts, b.pts)
                && same_time(a, a.dts, b.dts);
            assert!(same, "track {key:?} frame {i}: {a:?} became {b:?}");
            let config_matters = a.frame_type() == FrameType::Audio || a.is_keyframe();
            assert!(!config_matters || ca == cb, "track {key:?} frame {i}: configuration {ca:?} became {cb:?}");
        }
    }
}

/// The streams and frames of the first program, up to a PMT that changes
/// its list of streams.
fn first_program(events: &[Result<DemuxEvent, ProtocolError>]) -> Option<(Vec<EsInfo>, Vec<MediaFrame>)> {
    let mut program: Option<Vec<EsInfo>> = None;
    let mut frames = Vec::new();
    for event in events {
        match event {
            Ok(DemuxEvent::Program { streams, .. }) => match &program {
                None => program = Some(streams.clone()),
                Some(first) if first != streams => break,
                Some(_) => {}
            },
            Ok(DemuxEvent::Frame(frame)) => frames.push(frame.clone()),
            _ => {}
        }
    }
    Some((program?, frames))
}

/// A track: its frame type's index and its number.
type Track = (usize, u8);

/// Media frames per track, each with the configuration in force for it.
fn by_track(frames: &[MediaFrame]) -> HashMap<Track, Vec<(MediaFrame, Option<Bytes>)>> {
    let mut config: HashMap<Track, Bytes> = HashMap::new();
    let mut out: HashMap<Track, Vec<(MediaFrame, Option<Bytes>)>> = HashMap::new();
    for f in frames {
        let key = (f.frame_type().index(), f.track);
        if f.is_config() {
            config.insert(key, f.payload.clone());
        } else {
            out.entry(key).or_default().push((f.clone(), config.get(&key).cloned()));
        }
    }
    out
}

/// The flags but `DISCONTINUITY`.
fn lasting_flags(frame: &MediaFrame) -> u8 {
    frame.flags.bits() & !FrameFlags::DISCONTINUITY.bits()
}

/// Timestamps of `frame`'s timebase equal at 90 kHz modulo 2^33 (audio:
/// within a tick).
fn same_time(frame: &MediaFrame, a: i64, b: i64) -> bool {
    let to_mpeg = |t: i64| frame.timebase.rescale(t, Timebase::MPEG);
    let diff = (to_mpeg(a) - to_mpeg(b)).rem_euclid(TIMESTAMP_MODULUS);
    let slack = if frame.frame_type() == FrameType::Audio { 1 } else { 0 };
    diff <= slack || TIMESTAMP_MODULUS - diff <= slack
}

#[cfg(test)]
mod tests {
    use super::*;
    use arcly_core::frame::CodecId;

    #[test]
    fn same_time_wraps_and_allows_a_tick_for_audio() {
        let video = MediaFrame::new(CodecId::H264, Bytes::new()).with_timestamps(0, 0, Timebase::MPEG);
        assert!(same_time(&video, 5, 5 + TIMESTAMP_MODULUS));
        assert!(!same_time(&video, 5, 6));
        let audio = MediaFrame::new(CodecId::Aac, Bytes::new()).with_timestamps(0, 0, Timebase::MPEG);
        assert!(same_time(&audio, 5, 6) && same_time(&audio, 0, TIMESTAMP_MODULUS - 1));
        assert!(!same_time(&audio, 5, 7));
    }
}
