//! VVC parsing. ffmpeg 5.1 has no VVC encoder, so the NAL units are known
//! bytes from a VTM-encoded stream and units built field by field.
#![cfg(feature = "vvc")]

use arcly_codec::bits::BitWriter;
use arcly_codec::vvc::{NalHeader, Sps, is_irap, is_keyframe, nal_type, nal_unit_type};
use bytes::{BufMut, BytesMut};

/// A whole 1920x1080 4:2:0 SPS (GStreamer's h266parser tests, from VTM).
const SPS_1080P: &[u8] = &[
    0x00, 0x79, 0x00, 0x8d, 0x02, 0x43, 0x80, 0x00, 0x00, 0xc0, 0x07, 0x81, 0x00, 0x21, 0xc8, 0xd4, 0x00, 0xc5, 0xe8,
    0x8d, 0xd1, 0x08, 0xd1, 0x0a, 0x4c, 0x8d, 0xc2, 0x6c, 0xac, 0x60, 0x81, 0x04, 0xf0, 0x05, 0x48, 0x10, 0x84, 0x22,
    0x0c, 0x44, 0x45, 0x92, 0x22, 0xd4, 0x45, 0xe8, 0xf5, 0x6a, 0x4b, 0xc9, 0x26, 0xa4, 0xb2, 0x44, 0x5a, 0x88, 0xbc,
    0x44, 0x9a, 0x88, 0x91, 0x49, 0x11, 0x26, 0x48, 0x89, 0x75, 0x24, 0x45, 0x04, 0x2c, 0x44, 0x20, 0x64, 0x88, 0x35,
    0x20, 0x2a, 0xc2, 0x10, 0x85, 0x88, 0x04, 0x2c, 0x81, 0x02, 0x21, 0x02, 0x05, 0x90, 0x81, 0x02, 0x44, 0x08, 0x34,
    0x10, 0x24, 0x82, 0x0e, 0x10, 0x64, 0x08, 0xb4, 0x20, 0x92, 0x10, 0xe2, 0x1a, 0x12, 0xe4, 0x72, 0xa0, 0x85, 0x88,
    0x04, 0x2c, 0x81, 0x02, 0x21, 0x02, 0x0f, 0xff, 0xff, 0xaf, 0xc6, 0x20, 0x40,
];

/// A whole 128x128 SPS with the PPS and IDR_N_LP slice start that follow it
/// (same source).
const SPS_128: &[u8] = &[
    0x00, 0x79, 0x00, 0x0d, 0x02, 0x00, 0x80, 0x00, 0x40, 0x20, 0x40, 0x40, 0x8d, 0x40, 0x7d, 0x11, 0xba, 0x21, 0x1a,
    0x21, 0x49, 0x91, 0xb8, 0x4d, 0x8a, 0x31, 0x50, 0xc1, 0xbe, 0x15, 0x71, 0xfc, 0x1f, 0x8c, 0x40, 0x80,
];
const PPS_128: &[u8] = &[0x00, 0x81, 0x00, 0x00, 0x20, 0x40, 0x40, 0x8a, 0x42, 0x00, 0x34, 0x7b, 0x02];
const IDR_128: [u8; 12] = [0x00, 0x41, 0xc4, 0x02, 0x53, 0xe0, 0x0e, 0x83, 0xf7, 0xff, 0x6a, 0x2a];

fn length_prefixed(nals: &[&[u8]]) -> BytesMut {
    let mut out = BytesMut::new();
    for nal in nals {
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    out
}

#[test]
fn known_parameter_sets() {
    let sps = Sps::parse(SPS_1080P).unwrap();
    assert_eq!((sps.id, sps.chroma_format_idc, sps.width, sps.height), (0, 1, 1920, 1080));
    let sps = Sps::parse(SPS_128).unwrap();
    assert_eq!((sps.id, sps.chroma_format_idc, sps.width, sps.height), (0, 1, 128, 128));
    assert_eq!(nal_unit_type(PPS_128), Some(nal_type::PPS));
    let idr = NalHeader::parse(&IDR_128).unwrap();
    assert_eq!(
        idr,
        NalHeader { forbidden_zero: false, nuh_layer_id: 0, nal_unit_type: nal_type::IDR_N_LP, temporal_id: 0 }
    );
    assert!(Sps::parse(PPS_128).is_err());
}

#[test]
fn keyframe_access_units() {
    let key = length_prefixed(&[SPS_128, PPS_128, &IDR_128]);
    assert!(is_keyframe(&key, 4));
    // The same unit with the slice's type changed to TRAIL.
    let mut trail = IDR_128;
    trail[1] = (nal_type::TRAIL << 3) | 1;
    assert!(!is_irap(nal_type::TRAIL));
    assert!(!is_keyframe(&length_prefixed(&[SPS_128, PPS_128, &trail]), 4));
    // A CRA on temporal layer 0, 2-byte lengths.
    let cra = [0x00, (nal_type::CRA << 3) | 1, 0x80];
    let mut short = BytesMut::new();
    short.put_u16(3);
    short.put_slice(&cra);
    assert!(is_keyframe(&short, 2));
    // A length past the end hides the IDR.
    let mut cut = key.to_vec();
    cut.truncate(cut.len() - 1);
    assert!(!is_keyframe(&cut, 4));
}

/// A minimal SPS built field by field: no profile_tier_level, 4:4:4, a
/// conformance window.
#[test]
fn built_sps() {
    let mut w = BitWriter::default();
    w.write_bits(0x0079, 16);
    w.write_bits(15, 4); // sps id
    w.write_bits(0, 4);
    w.write_bits(0, 3);
    w.write_bits(3, 2); // 4:4:4
    w.write_bits(0, 2);
    w.write_flag(false); // no profile_tier_level
    w.write_flag(false); // gdr
    w.write_flag(false); // no resampling
    w.write_ue(640);
    w.write_ue(480);
    w.write_flag(true);
    for offset in [1, 2, 3, 4] {
        w.write_ue(offset);
    }
    w.write_flag(true);
    let nal = w.finish();
    assert_eq!(Sps::parse(&nal).unwrap(), Sps { id: 15, chroma_format_idc: 3, width: 637, height: 473 });
    // Cropping everything is refused.
    let mut w = BitWriter::default();
    w.write_bits(0x0079, 16);
    w.write_bits(0, 11); // ids, max_sublayers_minus1
    w.write_bits(1, 2); // 4:2:0: offsets count 2 luma samples
    w.write_bits(0, 5); // ctu size, no profile_tier_level, gdr, no resampling
    w.write_ue(16);
    w.write_ue(16);
    w.write_flag(true);
    for offset in [4, 4, 0, 0] {
        w.write_ue(offset);
    }
    assert!(Sps::parse(&w.finish()).is_err());
}
