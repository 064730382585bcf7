//! AV1 parsing against testdata/av1.ivf, with ffprobe as the reference.
#![cfg(feature = "av1")]

use arcly_codec::av1::{
    self, Av1Config, SequenceHeader, is_keyframe, obu_type, obus, sequence_header_obu, strip_temporal_delimiters,
};
use arcly_testkit::{ffprobe, ffprobe_packets, ivf, read_testdata, testdata};

const FILE: &str = "av1.ivf";

#[test]
fn sequence_header_matches_ffprobe() {
    let file = ivf::read(&read_testdata(FILE));
    let probe = ffprobe(&testdata(FILE));
    let stream = probe.first().expect("one stream");
    assert_eq!(&file.fourcc, b"AV01");
    let first = &file.frames[0].data;
    let types: Vec<u8> = obus(first).map(|o| o.unwrap().obu_type).collect();
    assert_eq!(types[0], obu_type::TEMPORAL_DELIMITER);
    assert!(types.contains(&obu_type::SEQUENCE_HEADER));
    let payload = obus(first).map(Result::unwrap).find(|o| o.obu_type == obu_type::SEQUENCE_HEADER).unwrap().payload;
    let seq = SequenceHeader::parse(payload).unwrap();
    assert_eq!(stream["codec_name"], "av1");
    assert_eq!(stream["profile"], "Main");
    assert_eq!(seq.seq_profile, 0);
    assert_eq!(seq.max_frame_width.to_string(), stream["width"]);
    assert_eq!(seq.max_frame_height.to_string(), stream["height"]);
    assert_eq!(stream["pix_fmt"], "yuv420p");
    assert_eq!(
        (seq.bit_depth, seq.mono_chrome, seq.chroma_subsampling_x, seq.chroma_subsampling_y),
        (8, false, true, true)
    );
    assert_eq!(seq.color_range, stream["color_range"] == "pc");
}

#[test]
fn config_from_stream_round_trips() {
    let file = ivf::read(&read_testdata(FILE));
    let obu = sequence_header_obu(&file.frames[0].data).expect("a sequence header in the first temporal unit");
    let config = Av1Config::from_sequence_header_obu(obu).unwrap();
    assert_eq!(&config.config_obus[..], obu);
    assert_eq!((config.seq_profile, config.high_bitdepth, config.monochrome), (0, false, false));
    let bytes = config.to_bytes();
    assert_eq!(bytes[0], 0x81);
    assert_eq!(Av1Config::parse(&bytes).unwrap(), config);
    let seq = config.sequence_header().unwrap();
    assert_eq!((seq.max_frame_width, seq.max_frame_height), (u32::from(file.width), u32::from(file.height)));
}

#[test]
fn keyframes_match_ffprobe() {
    let file = ivf::read(&read_testdata(FILE));
    let packets = ffprobe_packets(&testdata(FILE));
    assert_eq!(file.frames.len(), packets.len());
    let probe_keyframes = packets.iter().filter(|p| p.keyframe).count();
    assert!(probe_keyframes >= 3, "3 s at one keyframe per 25 frames");
    let mut keyframes = 0;
    for (frame, packet) in file.frames.iter().zip(&packets) {
        let key = is_keyframe(&frame.data);
        assert_eq!(key, packet.keyframe, "frame at pts {}", frame.pts);
        keyframes += usize::from(key);
    }
    assert_eq!(keyframes, probe_keyframes);
}

#[test]
fn temporal_units_convert_to_the_bus_format() {
    let file = ivf::read(&read_testdata(FILE));
    for frame in &file.frames {
        let original: Vec<_> = obus(&frame.data).collect::<Result<_, _>>().unwrap();
        let stripped = strip_temporal_delimiters(&frame.data);
        let kept: Vec<_> = obus(&stripped).collect::<Result<_, _>>().unwrap();
        assert!(kept.iter().all(|o| o.obu_type != obu_type::TEMPORAL_DELIMITER));
        assert_eq!(kept.len(), original.iter().filter(|o| o.obu_type != obu_type::TEMPORAL_DELIMITER).count());
        assert_eq!(av1::strip_temporal_delimiters_shared(&frame.data), stripped);
        // The keyframe rule does not depend on the temporal delimiter.
        assert_eq!(is_keyframe(&stripped), is_keyframe(&frame.data));
        av1::fuzz(&frame.data);
    }
}
