//! H.264 parsing against testdata/h264.h264, with ffprobe as the reference.
#![cfg(feature = "h264")]

use arcly_codec::annexb::split_annexb;
use arcly_codec::bits::BitReader;
use arcly_codec::h264::{self, AvcConfig, Sps, nal_type, nal_unit_type};
use arcly_testkit::{ffprobe, ffprobe_packets, read_testdata, testdata};
use bytes::{BufMut, BytesMut};

const FILE: &str = "h264.h264";

/// The file's NAL units grouped into access units: a new one starts at an
/// AUD, or at a parameter set / SEI / slice with `first_mb_in_slice` 0 once
/// the current one has a slice (H.264 §7.4.1.2.3).
fn access_units(data: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let mut has_slice = false;
    for nal in split_annexb(data) {
        let t = nal_unit_type(nal).expect("non-empty NAL unit");
        let is_slice = t == nal_type::SLICE || t == nal_type::IDR;
        let first_slice = is_slice && BitReader::new("test", &nal[1..]).read_ue().expect("first_mb_in_slice") == 0;
        let starts_unit = t == nal_type::AUD
            || (has_slice && (matches!(t, nal_type::SPS | nal_type::PPS | nal_type::SEI) || first_slice));
        if starts_unit && !current.is_empty() {
            units.push(std::mem::take(&mut current));
            has_slice = false;
        }
        has_slice |= is_slice;
        current.push(nal);
    }
    if !current.is_empty() {
        units.push(current);
    }
    units
}

fn parameter_sets(data: &[u8], wanted: u8) -> Vec<&[u8]> {
    split_annexb(data).filter(|nal| nal_unit_type(nal) == Some(wanted)).collect()
}

#[test]
fn sps_matches_ffprobe() {
    let data = read_testdata(FILE);
    let probe = ffprobe(&testdata(FILE));
    let stream = probe.first().expect("one stream");
    let sps_nal = *parameter_sets(&data, nal_type::SPS).first().expect("an SPS");
    let sps = Sps::parse(sps_nal).unwrap();
    assert_eq!(stream["profile"], "High");
    assert_eq!(sps.profile_idc, 100);
    assert_eq!(sps.level_idc.to_string(), stream["level"]);
    assert_eq!(sps.width.to_string(), stream["width"]);
    assert_eq!(sps.height.to_string(), stream["height"]);
    let (num, den) = sps.frame_rate.expect("x264 writes VUI timing info");
    assert_eq!(format!("{num}/{den}"), stream["r_frame_rate"]);
    assert_eq!((sps.chroma_format_idc, sps.bit_depth_luma, sps.bit_depth_chroma), (1, 8, 8));
    assert_eq!(stream["pix_fmt"], "yuv420p");
    assert!(sps.frame_mbs_only);
    assert_eq!(h264::sps_id(sps_nal).unwrap(), sps.id);
}

#[test]
fn avc_config_from_stream_round_trips() {
    let data = read_testdata(FILE);
    let sps = parameter_sets(&data, nal_type::SPS);
    let pps = parameter_sets(&data, nal_type::PPS);
    assert!(!pps.is_empty());
    // x264 repeats nothing here, but keep only distinct sets as a muxer would.
    let (sps, pps) = (&sps[..1], &pps[..1]);
    let (pps_id, sps_id) = h264::pps_ids(pps[0]).unwrap();
    assert_eq!((pps_id, sps_id), (0, Sps::parse(sps[0]).unwrap().id));
    let config = AvcConfig::from_parameter_sets(sps, pps).unwrap();
    assert_eq!((config.profile, config.level, config.length_size), (100, 11, 4));
    let high = config.high.as_ref().expect("High profile records carry the extension");
    assert_eq!((high.chroma_format, high.bit_depth_luma, high.bit_depth_chroma), (1, 8, 8));
    let bytes = config.to_bytes();
    assert_eq!(AvcConfig::parse(&bytes).unwrap(), config);
    assert_eq!(AvcConfig::parse_bytes(&bytes).unwrap(), config);
    assert_eq!(config.first_sps().unwrap(), Sps::parse(sps[0]).unwrap());
}

#[test]
fn keyframes_match_ffprobe() {
    let data = read_testdata(FILE);
    let packets = ffprobe_packets(&testdata(FILE));
    let units = access_units(&data);
    assert_eq!(units.len(), packets.len(), "access units vs ffprobe packets");
    let expected: Vec<usize> = packets.iter().enumerate().filter(|(_, p)| p.keyframe).map(|(i, _)| i).collect();
    assert_eq!(expected, [0, 25, 50], "a keyframe every 25 frames");

    let mut annexb_keys = Vec::new();
    let mut length_prefixed_keys = Vec::new();
    for (i, unit) in units.iter().enumerate() {
        let mut annexb = BytesMut::new();
        let mut prefixed = BytesMut::new();
        for nal in unit {
            annexb.put_slice(&[0, 0, 0, 1]);
            annexb.put_slice(nal);
            prefixed.put_u32(nal.len() as u32);
            prefixed.put_slice(nal);
        }
        if h264::is_keyframe_annexb(&annexb) {
            annexb_keys.push(i);
        }
        if h264::is_keyframe(&prefixed, 4) {
            length_prefixed_keys.push(i);
        }
    }
    assert_eq!(annexb_keys, expected);
    assert_eq!(length_prefixed_keys, expected);
    let idr_units = units.iter().filter(|u| u.iter().any(|n| nal_unit_type(n) == Some(nal_type::IDR))).count();
    assert_eq!(idr_units, expected.len());
}

#[test]
fn whole_stream_through_the_fuzz_entry_point() {
    let data = read_testdata(FILE);
    for nal in split_annexb(&data) {
        h264::fuzz(nal);
    }
    h264::fuzz(&data);
}
