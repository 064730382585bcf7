//! VP9 parsing against testdata/vp9.ivf, with ffprobe as the reference.
#![cfg(feature = "vp9")]

use arcly_codec::vp9::{self, FrameHeader, VpConfig, superframe_frames};
use arcly_testkit::{ffprobe, ffprobe_packets, ivf, read_testdata, testdata};

const FILE: &str = "vp9.ivf";

#[test]
fn frames_match_ffprobe() {
    let file = ivf::read(&read_testdata(FILE));
    let probe = ffprobe(&testdata(FILE));
    let stream = probe.first().expect("one stream");
    let packets = ffprobe_packets(&testdata(FILE));
    assert_eq!(&file.fourcc, b"VP90");
    assert_eq!(stream["codec_name"], "vp9");
    assert_eq!(stream["profile"], "Profile 0");
    assert_eq!(file.frames.len(), packets.len());
    let probe_keyframes = packets.iter().filter(|p| p.keyframe).count();
    assert!(probe_keyframes >= 3, "3 s at one keyframe per 25 frames");

    let mut keyframes = 0;
    let mut shown = 0;
    for (frame, packet) in file.frames.iter().zip(&packets) {
        let parts = superframe_frames(&frame.data);
        assert!(!parts.is_empty());
        let headers: Vec<FrameHeader> = parts.iter().map(|p| FrameHeader::parse(p).unwrap()).collect();
        let key = headers.iter().any(|h| h.keyframe);
        assert_eq!(key, packet.keyframe, "frame at pts {}", frame.pts);
        // Each packet shows exactly one frame; hidden frames ride along in superframes.
        assert_eq!(headers.iter().filter(|h| h.show_frame).count(), 1);
        shown += 1;
        for h in headers.iter().filter(|h| h.keyframe) {
            keyframes += 1;
            assert_eq!(h.profile, 0);
            assert_eq!(h.width.unwrap().to_string(), stream["width"]);
            assert_eq!(h.height.unwrap().to_string(), stream["height"]);
            assert_eq!((h.bit_depth, h.subsampling_x, h.subsampling_y), (8, true, true));
            assert_eq!(h.color_range, stream["color_range"] == "pc");
        }
        vp9::fuzz(&frame.data);
    }
    assert_eq!(keyframes, probe_keyframes);
    assert_eq!(shown, packets.len());
}

#[test]
fn config_from_keyframe_round_trips() {
    let file = ivf::read(&read_testdata(FILE));
    let header = FrameHeader::parse(superframe_frames(&file.frames[0].data)[0]).unwrap();
    assert!(header.keyframe);
    let config = VpConfig::from_keyframe(&header);
    assert_eq!((config.profile, config.bit_depth, config.chroma_subsampling), (0, 8, 1));
    assert_eq!((config.colour_primaries, config.transfer_characteristics), (2, 2));
    assert!(config.codec_init.is_empty());
    let bytes = config.to_bytes();
    assert_eq!(bytes.len(), 8);
    assert_eq!(VpConfig::parse(&bytes).unwrap(), config);
}
