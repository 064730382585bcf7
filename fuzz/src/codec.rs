//! The codec parsers of `arcly-codec`, through the hidden `fuzz` entry
//! point of each module: parsers return on any input, and configuration
//! records that parse round-trip through their writers.

/// Annex B splitting and conversion to length-prefixed NAL units and back.
pub fn annexb(data: &[u8]) {
    arcly_codec::fuzzing::annexb(data);
}

/// H.264: SPS, PPS ids, avcC (round trip), keyframe detection, SEI.
pub fn h264(data: &[u8]) {
    arcly_codec::h264::fuzz(data);
}

/// H.265: SPS, hvcC (round trip), keyframe detection.
pub fn h265(data: &[u8]) {
    arcly_codec::h265::fuzz(data);
}

/// AV1: OBUs, sequence header, av1C (round trip), keyframe detection,
/// temporal delimiter stripping.
pub fn av1(data: &[u8]) {
    arcly_codec::av1::fuzz(data);
}

/// VP9: superframe index, uncompressed header, vpcC (round trip).
pub fn vp9(data: &[u8]) {
    arcly_codec::vp9::fuzz(data);
}

/// VVC: NAL header, SPS, keyframe detection.
pub fn vvc(data: &[u8]) {
    arcly_codec::vvc::fuzz(data);
}

/// AAC: AudioSpecificConfig (round trip) and ADTS frames (header written
/// back and read again).
pub fn aac(data: &[u8]) {
    arcly_codec::aac::fuzz(data);
}

/// Opus: OpusHead and dOps (round trips through both), packet durations.
pub fn opus(data: &[u8]) {
    arcly_codec::opus::fuzz(data);
}
