//! FLV: reading an ffmpeg-made file against ffprobe, writing it back for
//! ffmpeg, and Enhanced FLV by round trip (ffmpeg 5.1 predates Enhanced FLV,
//! so it cannot check `hvc1`, `av01`, `vp09` or `Opus` tags).

use arcly_core::ProtocolErrorKind;
use arcly_core::frame::{CodecId, FrameFlags, FrameType, MediaFrame, Timebase};
use arcly_mux::amf0::Amf0Value;
use arcly_mux::flv::{self, FlvHeader, FlvReader, FlvTag, FlvWriter, TagType};
use arcly_testkit::{ffmpeg_errors, ffprobe, ffprobe_packets, read_testdata, scratch_dir, testdata};
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

fn read_tags(data: Bytes) -> (FlvReader, Vec<FlvTag>) {
    let mut reader = FlvReader::new();
    reader.push_bytes(data);
    let mut tags = vec![];
    while let Some(tag) = reader.next_tag() {
        tags.push(tag.expect("valid tag"));
    }
    (reader, tags)
}

fn frames_of(tags: &[FlvTag]) -> Vec<MediaFrame> {
    tags.iter().filter_map(|t| t.to_frame().expect("tag parses")).collect()
}

/// (pts ms, dts ms, size, keyframe) of ffprobe's packets of one stream.
fn probe_stream(path: &std::path::Path, stream: usize) -> Vec<(i64, i64, usize, bool)> {
    let ms = |t: Option<f64>| (t.expect("timestamp") * 1000.0).round() as i64;
    ffprobe_packets(path)
        .into_iter()
        .filter(|p| p.stream == stream)
        .map(|p| (ms(p.pts_time), ms(p.dts_time), p.size, p.keyframe))
        .collect()
}

fn ours(frames: &[MediaFrame], ty: FrameType) -> Vec<(i64, i64, usize, bool)> {
    frames
        .iter()
        .filter(|f| f.frame_type() == ty && !f.is_config())
        .map(|f| (f.pts_in(Timebase::MILLIS), f.dts_in(Timebase::MILLIS), f.payload.len(), f.is_keyframe()))
        .collect()
}

#[test]
fn reads_ffmpeg_h264_aac_like_ffprobe() {
    let data = read_testdata("h264_aac.flv");
    let (reader, tags) = read_tags(data.clone());
    assert_eq!(reader.header(), Some(FlvHeader { has_audio: true, has_video: true }));
    assert_eq!(reader.buffered(), 0);

    // Bodies are slices of the input, not copies.
    let range = data.as_ptr() as usize..data.as_ptr() as usize + data.len();
    assert!(tags.iter().all(|t| range.contains(&(t.body.as_ptr() as usize))));

    // onMetaData first.
    assert_eq!(tags[0].tag_type, TagType::Script);
    let meta = flv::parse_script(&tags[0].body).unwrap();
    assert_eq!(meta[0].as_str(), Some("onMetaData"));
    let field = |k: &str| meta[1].get(k).and_then(Amf0Value::as_f64);
    assert_eq!(field("width"), Some(160.0));
    assert_eq!(field("height"), Some(120.0));
    assert_eq!(field("framerate"), Some(25.0));
    assert_eq!(field("audiosamplerate"), Some(48000.0));
    assert_eq!(field("videocodecid"), Some(7.0));
    assert_eq!(field("audiocodecid"), Some(10.0));
    assert_eq!(meta[1].get("stereo").and_then(Amf0Value::as_bool), Some(true));

    let frames = frames_of(&tags);
    assert_eq!(frames[0].codec, CodecId::Metadata);
    assert!(frames[0].is_config());
    // Sequence headers come before any media of their type.
    let first_video = frames.iter().find(|f| f.frame_type() == FrameType::Video).unwrap();
    let first_audio = frames.iter().find(|f| f.frame_type() == FrameType::Audio).unwrap();
    assert!(first_video.is_config() && first_video.codec == CodecId::H264);
    assert!(first_audio.is_config() && first_audio.codec == CodecId::Aac);
    assert_eq!(first_video.payload[0], 1, "avcC configurationVersion");
    assert_eq!(first_video.payload[1], 100, "avcC profile: High");
    assert_eq!(&first_audio.payload[..2], &[0x11, 0x90], "ASC: AAC-LC 48 kHz stereo");
    assert!(frames.iter().all(|f| f.timebase == Timebase::MILLIS));

    let path = testdata("h264_aac.flv");
    let video = ours(&frames, FrameType::Video);
    let audio = ours(&frames, FrameType::Audio);
    let probed_video = probe_stream(&path, 0);
    assert_eq!(video.len(), 75);
    assert_eq!(video.len(), probed_video.len());
    assert_eq!(audio.len(), probe_stream(&path, 1).len());
    // pts, dts, size and keyframes, B-frame composition offsets included.
    assert_eq!(video, probed_video);
    assert!(video.iter().any(|(pts, dts, ..)| pts != dts), "the file has B-frames");
    let audio_ts: Vec<_> = audio.iter().map(|a| (a.0, a.1)).collect();
    let probed_audio_ts: Vec<_> = probe_stream(&path, 1).iter().map(|a| (a.0, a.1)).collect();
    assert_eq!(audio_ts, probed_audio_ts);
}

#[test]
fn rewrites_h264_aac_for_ffmpeg() {
    let (_, tags) = read_tags(read_testdata("h264_aac.flv"));
    let frames = frames_of(&tags);
    let mut writer = FlvWriter::new();
    let mut out = BytesMut::from(&FlvWriter::header(FlvHeader { has_audio: true, has_video: true })[..]);
    for frame in &frames {
        writer.write_frame(frame, &mut out).unwrap();
    }
    let dir = scratch_dir("flv-rewrite");
    let path = dir.join("rewritten.flv");
    std::fs::write(&path, &out).unwrap();

    assert_eq!(ffmpeg_errors(&path), "");
    let original = testdata("h264_aac.flv");
    let (a, b) = (ffprobe(&original), ffprobe(&path));
    assert_eq!(a.len(), 2);
    for key in ["codec_name", "profile", "width", "height", "sample_rate", "channels", "nb_read_packets"] {
        let pick = |s: &[arcly_testkit::Section]| s.iter().map(|s| s.get(key).cloned()).collect::<Vec<_>>();
        assert_eq!(pick(&a), pick(&b), "{key}");
    }
    for stream in [0, 1] {
        assert_eq!(probe_stream(&original, stream), probe_stream(&path, stream), "stream {stream}");
    }
    // And our reader gets back exactly the frames it wrote.
    let (_, again) = read_tags(out.freeze());
    assert_eq!(frames_of(&again), frames);
}

#[test]
fn write_frame_parts_matches_write_frame_without_copying() {
    let (_, tags) = read_tags(read_testdata("h264_aac.flv"));
    let mut writer = FlvWriter::new();
    for frame in frames_of(&tags) {
        let mut out = BytesMut::new();
        writer.write_frame(&frame, &mut out).unwrap();
        let parts = writer.write_frame_parts(&frame).unwrap();
        assert_eq!(parts.concat(), &out[..]);
        assert_eq!(parts[1].as_ptr(), frame.payload.as_ptr());
        assert_eq!(parts[2].len(), 4);
    }
}

fn stream_of(frames: &[MediaFrame]) -> Bytes {
    let mut writer = FlvWriter::new();
    let mut out = BytesMut::from(&FlvWriter::header(FlvHeader { has_audio: true, has_video: true })[..]);
    for f in frames {
        writer.write_frame(f, &mut out).unwrap();
    }
    out.freeze()
}

fn ms(codec: CodecId, payload: &'static [u8], pts: i64, dts: i64, flags: FrameFlags) -> MediaFrame {
    MediaFrame::new(codec, Bytes::from_static(payload)).with_timestamps(pts, dts, Timebase::MILLIS).with_flags(flags)
}

#[test]
fn enhanced_tags_have_the_expected_bytes() {
    let mut writer = FlvWriter::new();
    let mut tag_body = |f: &MediaFrame| {
        let mut out = BytesMut::new();
        writer.write_frame(f, &mut out).unwrap();
        out[11..out.len() - 4].to_vec()
    };
    let k = FrameFlags::KEYFRAME;
    // hvc1 SequenceStart, keyframe type.
    assert_eq!(tag_body(&ms(CodecId::H265, &[1, 2], 0, 0, FrameFlags::CONFIG)), b"\x90hvc1\x01\x02");
    // hvc1 CodedFrames with composition time 80, and CodedFramesX without.
    assert_eq!(tag_body(&ms(CodecId::H265, &[9], 120, 40, k)), b"\x91hvc1\x00\x00\x50\x09");
    assert_eq!(tag_body(&ms(CodecId::H265, &[9], 40, 40, FrameFlags::EMPTY)), b"\xa3hvc1\x09");
    assert_eq!(tag_body(&ms(CodecId::Av1, &[9], 0, 0, k)), b"\x91av01\x09");
    assert_eq!(tag_body(&ms(CodecId::Vp9, &[9], 0, 0, FrameFlags::EMPTY)), b"\xa1vp09\x09");
    assert_eq!(tag_body(&ms(CodecId::Opus, &[9], 0, 0, FrameFlags::CONFIG)), b"\x90Opus\x09");
    assert_eq!(tag_body(&ms(CodecId::Opus, &[9], 0, 0, k)), b"\x91Opus\x09");
    // Legacy AVC with a negative composition time.
    assert_eq!(tag_body(&ms(CodecId::H264, &[9], 0, 40, FrameFlags::EMPTY)), b"\x27\x01\xff\xff\xd8\x09");
    assert_eq!(tag_body(&ms(CodecId::G711Ulaw, &[9], 0, 0, k)), b"\x82\x09");
}

#[test]
fn timestamps_use_the_extended_byte_and_wrap() {
    let mut writer = FlvWriter::new();
    let mut out = BytesMut::new();
    let f = ms(CodecId::Aac, &[1], 0x1234_5678, 0x1234_5678, FrameFlags::KEYFRAME);
    writer.write_frame(&f, &mut out).unwrap();
    assert_eq!(&out[4..8], &[0x34, 0x56, 0x78, 0x12]);
    // 2^32 + 5 ms wraps to 5; 90 kHz input is rescaled to ms first.
    let f = MediaFrame::new(CodecId::Aac, Bytes::from_static(&[1])).with_timestamps(
        (1 << 32) * 90 + 450,
        (1 << 32) * 90 + 450,
        Timebase::MPEG,
    );
    let mut out = BytesMut::new();
    writer.write_frame(&f, &mut out).unwrap();
    assert_eq!(&out[4..8], &[0, 0, 5, 0]);
}

#[test]
fn reads_the_set_data_frame_form_and_other_script_tags() {
    let meta = FlvWriter::metadata(&[("width", Amf0Value::Number(640.0))]);
    let mut body = BytesMut::new();
    arcly_mux::amf0::encode(&Amf0Value::from("@setDataFrame"), &mut body);
    body.extend_from_slice(&meta);
    let body = body.freeze();
    let values = flv::parse_script(&body).unwrap();
    assert_eq!(values[0].as_str(), Some("onMetaData"));
    let frame = flv::parse_script_frame(&body, 0).unwrap().unwrap();
    assert!(frame.is_config());
    assert_eq!(frame.payload, meta, "the payload drops @setDataFrame");

    let mut cue = BytesMut::new();
    arcly_mux::amf0::encode_all(&[Amf0Value::from("onCuePoint"), Amf0Value::Null], &mut cue);
    let frame = flv::parse_script_frame(&cue.freeze(), 0).unwrap().unwrap();
    assert!(!frame.is_config());
    assert!(flv::parse_script_frame(&Bytes::from_static(&[0x12]), 0).is_err());
}

#[test]
fn parses_legacy_hevc_mp3_g711_and_enhanced_avc_and_aac() {
    let body = Bytes::from_static(&[0x1c, 0x01, 0x00, 0x00, 0x28, 0, 0, 0, 1, 0x26]);
    let f = flv::parse_video(&body, 100).unwrap().unwrap();
    assert_eq!((f.codec, f.pts, f.dts, f.is_keyframe()), (CodecId::H265, 140, 100, true));
    let f = flv::parse_video(&Bytes::from_static(&[0x2c, 0x00, 0, 0, 0, 1]), 0).unwrap().unwrap();
    assert!(f.is_config() && f.codec == CodecId::H265);
    // End of sequence carries no frame.
    assert_eq!(flv::parse_video(&Bytes::from_static(&[0x17, 0x02, 0, 0, 0]), 0).unwrap(), None);
    // Enhanced avc1 CodedFrames carries a composition time (E-RTMP v2).
    let f = flv::parse_video(&Bytes::from_static(b"\x91avc1\xff\xff\xff\x65"), 10).unwrap().unwrap();
    assert_eq!((f.codec, f.pts, f.dts), (CodecId::H264, 9, 10));
    let f = flv::parse_video(&Bytes::from_static(b"\x90avc1\x01\x64"), 10).unwrap().unwrap();
    assert!(f.is_config());
    // Enhanced metadata, MPEG2TSSequenceStart and sequence end: no frame.
    for b in [&b"\x94hvc1\x02"[..], b"\x95av01\x80", b"\x92vp09"] {
        assert_eq!(flv::parse_video(&Bytes::copy_from_slice(b), 0).unwrap(), None, "{b:02x?}");
    }
    let f = flv::parse_audio(&Bytes::from_static(b"\x90mp4a\x11\x90"), 0).unwrap().unwrap();
    assert!(f.is_config() && f.codec == CodecId::Aac);
    let f = flv::parse_audio(&Bytes::from_static(b"\x2f\xff\xfb\x90\x64"), 26).unwrap().unwrap();
    assert_eq!((f.codec, f.dts, f.payload.len()), (CodecId::Mp3, 26, 4));
    let f = flv::parse_audio(&Bytes::from_static(&[0x72, 0xd5]), 0).unwrap().unwrap();
    assert_eq!(f.codec, CodecId::G711Alaw);
    let f = flv::parse_audio(&Bytes::from_static(&[0x82, 0xff]), 0).unwrap().unwrap();
    assert_eq!(f.codec, CodecId::G711Ulaw);
}

#[test]
fn unsupported_and_broken_bodies_are_errors() {
    let cases: [(&[u8], ProtocolErrorKind); 8] = [
        (&[0x12, 0x00], ProtocolErrorKind::Unsupported),     // Sorenson H.263
        (&[0x17, 0x01, 0x00], ProtocolErrorKind::Truncated), // AVC header cut
        (&[0x17, 0x05, 0, 0, 0, 1], ProtocolErrorKind::InvalidValue), // AVC packet type 5
        (b"\x91vvc9\x00", ProtocolErrorKind::Unsupported),   // unknown FourCC
        (b"\x96", ProtocolErrorKind::Unsupported),           // multitrack
        (b"\x91hvc1\x00", ProtocolErrorKind::Truncated),     // hvc1 composition time cut
        (b"\x91av0", ProtocolErrorKind::Truncated),          // FourCC cut
        (&[], ProtocolErrorKind::Truncated),
    ];
    for (body, kind) in cases {
        let err = flv::parse_video(&Bytes::copy_from_slice(body), 0).unwrap_err();
        assert_eq!((err.kind, err.protocol), (kind, "flv"), "{body:02x?}: {err}");
    }
    for (body, kind) in [
        (&[0x6f, 0x00][..], ProtocolErrorKind::Unsupported), // Nellymoser
        (&[0xaf][..], ProtocolErrorKind::Truncated),
        (b"\x91fLaC\x00", ProtocolErrorKind::Unsupported),
        (b"\x95Opus", ProtocolErrorKind::Unsupported), // multitrack
    ] {
        let err = flv::parse_audio(&Bytes::copy_from_slice(body), 0).unwrap_err();
        assert_eq!(err.kind, kind, "{body:02x?}: {err}");
    }
    // VVC has no FLV mapping.
    let err = FlvWriter::new()
        .write_frame(&MediaFrame::new(CodecId::Vvc, Bytes::from_static(&[1])), &mut BytesMut::new())
        .unwrap_err();
    assert_eq!(err.kind, ProtocolErrorKind::Unsupported);
}

#[test]
fn reader_checks_previous_tag_size_and_limits() {
    let frames = [ms(CodecId::Aac, &[1, 2, 3], 0, 0, FrameFlags::KEYFRAME)];
    let good = stream_of(&frames);

    let mut bad = good.to_vec();
    let n = bad.len();
    bad[n - 1] ^= 1;
    let mut reader = FlvReader::new();
    reader.push(&bad);
    let err = reader.next_tag().unwrap().unwrap_err();
    assert_eq!(err.kind, ProtocolErrorKind::InvalidValue);
    assert_eq!(err.offset, Some(13 + 11 + 5));
    assert!(reader.next_tag().is_none(), "no tags after an error");
    // The check can be turned off for sloppy writers.
    let mut reader = FlvReader::new().with_previous_tag_size_check(false);
    reader.push(&bad);
    assert!(reader.next_tag().unwrap().is_ok());

    let mut reader = FlvReader::new().with_max_tag_size(4);
    reader.push(&good[..13 + 11]); // the size is refused before the body arrives
    assert_eq!(reader.next_tag().unwrap().unwrap_err().kind, ProtocolErrorKind::TooLarge);

    let mut reader = FlvReader::new();
    reader.push(b"FLX\x01\x05\x00\x00\x00\x09");
    assert_eq!(reader.next_tag().unwrap().unwrap_err().kind, ProtocolErrorKind::InvalidValue);

    // A tag of an undefined type is skipped; an encrypted one refused.
    let mut odd = good[..13].to_vec();
    odd.extend([15, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xee, 0, 0, 0, 12]);
    odd.extend(&good[13..]);
    let (_, tags) = read_tags(Bytes::from(odd.clone()));
    assert_eq!(tags.len(), 1);
    odd[13] = 8 | 0x20;
    let mut reader = FlvReader::new();
    reader.push(&odd);
    assert_eq!(reader.next_tag().unwrap().unwrap_err().kind, ProtocolErrorKind::Unsupported);

    // A longer header (data offset 12) is skipped over.
    let mut long_header = b"FLV\x01\x05\x00\x00\x00\x0c\xaa\xbb\xcc".to_vec();
    long_header.extend(&good[9..]);
    let (reader, tags) = read_tags(Bytes::from(long_header));
    assert_eq!(tags.len(), 1);
    assert!(reader.header().unwrap().has_audio);
}

#[test]
fn fuzz_read_survives_the_test_file_and_its_corruptions() {
    let data = read_testdata("h264_aac.flv");
    flv::fuzz_read(&data);
    let mut corrupt = data.to_vec();
    for i in (0..corrupt.len()).step_by(97) {
        corrupt[i] = corrupt[i].wrapping_mul(31).wrapping_add(7);
        flv::fuzz_read(&corrupt[..corrupt.len().min(i + 400)]);
    }
}

/// Frames of every codec the writer supports, in the shape the reader
/// returns them (milliseconds, `KEYFRAME` on every audio frame, `pts = dts`
/// where FLV has no composition time).
fn frame_strategy() -> impl Strategy<Value = MediaFrame> {
    let codec = prop_oneof![
        Just(CodecId::H264),
        Just(CodecId::H265),
        Just(CodecId::Av1),
        Just(CodecId::Vp9),
        Just(CodecId::Aac),
        Just(CodecId::Opus),
        Just(CodecId::Mp3),
        Just(CodecId::G711Alaw),
    ];
    (
        codec,
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
        -(1i64 << 23)..(1 << 23),
        prop::collection::vec(any::<u8>(), 1..64),
    )
        .prop_map(|(codec, config, key, dts, cts, payload)| {
            let dts = i64::from(dts);
            let video = codec.frame_type() == FrameType::Video;
            let config = config && !matches!(codec, CodecId::Mp3 | CodecId::G711Alaw);
            let flags = if config {
                FrameFlags::CONFIG
            } else if key || !video {
                FrameFlags::KEYFRAME
            } else {
                FrameFlags::EMPTY
            };
            let cts = if !config && matches!(codec, CodecId::H264 | CodecId::H265) { cts } else { 0 };
            MediaFrame::new(codec, Bytes::from(payload))
                .with_timestamps(dts + cts, dts, Timebase::MILLIS)
                .with_flags(flags)
        })
}

proptest! {
    #[test]
    fn frames_round_trip_through_any_chunking(
        frames in prop::collection::vec(frame_strategy(), 0..24),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        zero_copy in any::<bool>(),
    ) {
        let data = stream_of(&frames);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(data.len() + 1)).collect();
        cuts.extend([0, data.len()]);
        cuts.sort_unstable();
        let mut reader = FlvReader::new();
        let mut back = vec![];
        for w in cuts.windows(2) {
            if zero_copy {
                reader.push_bytes(data.slice(w[0]..w[1]));
            } else {
                reader.push(&data[w[0]..w[1]]);
            }
            while let Some(tag) = reader.next_tag() {
                back.extend(tag.unwrap().to_frame().unwrap());
            }
        }
        prop_assert_eq!(reader.buffered(), 0);
        prop_assert_eq!(back, frames);
    }

    #[test]
    fn reader_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut with_header = FlvHeader::default().to_bytes().to_vec();
        with_header.extend(&data);
        flv::fuzz_read(&with_header);
        flv::fuzz_read(&data);
    }

    /// Well-framed tags with arbitrary bodies: reach the body parsers and
    /// the write-back check in `fuzz_read` far more often than random bytes.
    #[test]
    fn framed_random_bodies_never_panic(
        tags in prop::collection::vec((prop_oneof![Just(8u8), Just(9), Just(18)], any::<u32>(), prop::collection::vec(any::<u8>(), 0..40)), 0..8),
    ) {
        let mut data = FlvHeader::default().to_bytes().to_vec();
        for (ty, ts, body) in &tags {
            let [ext, a, b, c] = ts.to_be_bytes();
            let len = body.len() as u32;
            data.extend([*ty, (len >> 16) as u8, (len >> 8) as u8, len as u8, a, b, c, ext, 0, 0, 0]);
            data.extend(body);
            data.extend((len + 11).to_be_bytes());
        }
        let (_, read) = read_tags(Bytes::from(data.clone()));
        prop_assert_eq!(read.len(), tags.len());
        flv::fuzz_read(&data);
    }
}

/// After an error the reader returns nothing more, and keeps nothing more:
/// a peer that goes on sending cannot grow its buffer.
#[test]
fn failed_reader_stops_buffering() {
    let mut reader = FlvReader::new();
    reader.push(b"NOT AN FLV HEADER");
    assert!(matches!(reader.next_tag(), Some(Err(_))));
    let before = reader.buffered();
    for _ in 0..100 {
        reader.push(&[0u8; 4096]);
        reader.push_bytes(Bytes::from_static(&[0u8; 4096]));
    }
    assert_eq!(reader.buffered(), before);
    assert!(reader.next_tag().is_none());
}
