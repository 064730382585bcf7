//! H.265 parsing against testdata/hevc.hevc, with ffprobe as the reference.
#![cfg(feature = "h265")]

use arcly_codec::annexb::split_annexb;
use arcly_codec::h265::{self, HevcConfig, Sps, is_irap, nal_type, nal_unit_type};
use arcly_testkit::{ffprobe, ffprobe_packets, read_testdata, testdata};
use bytes::{BufMut, BytesMut};

const FILE: &str = "hevc.hevc";

fn is_vcl(t: u8) -> bool {
    t < 32
}

/// `first_slice_segment_in_pic_flag`, the first bit after the NAL header.
fn first_slice_of_picture(nal: &[u8]) -> bool {
    nal.get(2).is_some_and(|b| b & 0x80 != 0)
}

/// The file's NAL units grouped into access units: a new one starts at an
/// AUD, a parameter set, a prefix SEI or reserved prefix type, or the first
/// slice of a picture, once the current one has a slice (H.265 7.4.2.4.4).
fn access_units(data: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let mut has_slice = false;
    for nal in split_annexb(data) {
        let t = nal_unit_type(nal).expect("non-empty NAL unit");
        let starts_unit = has_slice
            && (matches!(t, 32..=35 | nal_type::PREFIX_SEI | 41..=44 | 48..=55)
                || (is_vcl(t) && first_slice_of_picture(nal)));
        if starts_unit {
            units.push(std::mem::take(&mut current));
            has_slice = false;
        }
        has_slice |= is_vcl(t);
        current.push(nal);
    }
    if !current.is_empty() {
        units.push(current);
    }
    units
}

fn of_type(data: &[u8], wanted: u8) -> Vec<&[u8]> {
    split_annexb(data).filter(|nal| nal_unit_type(nal) == Some(wanted)).collect()
}

#[test]
fn sps_matches_ffprobe() {
    let data = read_testdata(FILE);
    let probe = ffprobe(&testdata(FILE));
    let stream = probe.first().expect("one stream");
    let sps = Sps::parse(of_type(&data, nal_type::SPS)[0]).unwrap();
    assert_eq!(stream["codec_name"], "hevc");
    assert_eq!(stream["profile"], "Main");
    assert_eq!(sps.general_profile_idc, 1);
    assert_eq!(sps.general_level_idc.to_string(), stream["level"]);
    assert_eq!(sps.width.to_string(), stream["width"]);
    assert_eq!(sps.height.to_string(), stream["height"]);
    let (num, den) = sps.frame_rate.expect("x265 writes VUI timing info");
    assert_eq!(format!("{num}/{den}"), stream["r_frame_rate"]);
    assert_eq!(stream["pix_fmt"], "yuv420p");
    assert_eq!((sps.chroma_format_idc, sps.bit_depth_luma, sps.bit_depth_chroma), (1, 8, 8));
}

#[test]
fn hevc_config_from_stream_round_trips() {
    let data = read_testdata(FILE);
    let (vps, sps, pps) = (of_type(&data, nal_type::VPS), of_type(&data, nal_type::SPS), of_type(&data, nal_type::PPS));
    // x265 repeats the parameter sets at every keyframe; a muxer keeps one of each.
    assert!(vps.len() > 1 && vps.iter().all(|v| *v == vps[0]));
    let config = HevcConfig::from_parameter_sets(&vps[..1], &sps[..1], &pps[..1]).unwrap();
    assert_eq!((config.general_profile_idc, config.general_level_idc, config.length_size), (1, 30, 4));
    assert_eq!((config.chroma_format_idc, config.bit_depth_luma, config.avg_frame_rate), (1, 8, 25 * 256));
    assert_eq!(config.num_temporal_layers, 1);
    let bytes = config.to_bytes();
    let parsed = HevcConfig::parse(&bytes).unwrap();
    assert_eq!(parsed, config);
    assert_eq!(HevcConfig::parse_bytes(&bytes).unwrap(), config);
    assert_eq!(parsed.first_sps().unwrap(), Sps::parse(sps[0]).unwrap());
    let sets: Vec<&[u8]> = parsed.parameter_sets().map(|b| &b[..]).collect();
    assert_eq!(sets, [vps[0], sps[0], pps[0]]);
}

#[test]
fn keyframes_match_ffprobe() {
    let data = read_testdata(FILE);
    let packets = ffprobe_packets(&testdata(FILE));
    let probe_keyframes = packets.iter().filter(|p| p.keyframe).count();
    assert!(probe_keyframes >= 3, "3 s at one keyframe per 25 frames");

    // IRAP pictures: IRAP slices that start a picture.
    let irap_pictures = split_annexb(&data)
        .filter(|nal| nal_unit_type(nal).is_some_and(is_irap) && first_slice_of_picture(nal))
        .count();
    assert_eq!(irap_pictures, probe_keyframes);

    // The same count from access units in the bus format and in Annex B.
    let units = access_units(&data);
    assert_eq!(units.len(), packets.len());
    let mut keyframes = 0;
    for (unit, packet) in units.iter().zip(&packets) {
        let mut length_prefixed = BytesMut::new();
        let mut annexb = BytesMut::new();
        for nal in unit {
            length_prefixed.put_u32(nal.len() as u32);
            length_prefixed.put_slice(nal);
            annexb.put_slice(&[0, 0, 0, 1]);
            annexb.put_slice(nal);
        }
        let key = h265::is_keyframe(&length_prefixed, 4);
        assert_eq!(key, h265::is_keyframe_annexb(&annexb));
        assert_eq!(key, packet.keyframe, "access unit at dts {:?}", packet.dts);
        keyframes += usize::from(key);
    }
    assert_eq!(keyframes, probe_keyframes);
}

#[test]
fn every_parameter_set_parses() {
    let data = read_testdata(FILE);
    let first = Sps::parse(of_type(&data, nal_type::SPS)[0]).unwrap();
    for sps in of_type(&data, nal_type::SPS) {
        assert_eq!(Sps::parse(sps).unwrap(), first);
    }
    // Every NAL unit of the file, as fuzz input, returns.
    for nal in split_annexb(&data) {
        h265::fuzz(nal);
    }
}
