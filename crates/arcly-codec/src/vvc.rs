//! H.266/VVC: NAL unit headers and types, the start of the sequence
//! parameter set (picture size), and keyframe detection.
//!
//! NAL units passed to this module include their 2-byte NAL unit header and
//! may still contain emulation-prevention bytes; the parsers remove them.

use arcly_core::{ProtocolError, ProtocolErrorKind};

use crate::annexb::split_length_prefixed;
use crate::bits::{BitReader, remove_emulation_prevention};

const PROTOCOL: &str = "vvc";

fn error(kind: ProtocolErrorKind, context: impl Into<String>) -> ProtocolError {
    ProtocolError::new(PROTOCOL, kind, context)
}

/// NAL unit types (H.266 table 5).
pub mod nal_type {
    /// Coded slice of a trailing picture.
    pub const TRAIL: u8 = 0;
    /// Coded slice of a step-wise temporal sub-layer access picture.
    pub const STSA: u8 = 1;
    /// Coded slice of a random access decodable leading picture.
    pub const RADL: u8 = 2;
    /// Coded slice of a random access skipped leading picture.
    pub const RASL: u8 = 3;
    /// Instantaneous decoding refresh, may have RADL pictures.
    pub const IDR_W_RADL: u8 = 7;
    /// Instantaneous decoding refresh without leading pictures.
    pub const IDR_N_LP: u8 = 8;
    /// Clean random access.
    pub const CRA: u8 = 9;
    /// Gradual decoding refresh.
    pub const GDR: u8 = 10;
    /// Operating point information.
    pub const OPI: u8 = 12;
    /// Decoding capability information.
    pub const DCI: u8 = 13;
    /// Video parameter set.
    pub const VPS: u8 = 14;
    /// Sequence parameter set.
    pub const SPS: u8 = 15;
    /// Picture parameter set.
    pub const PPS: u8 = 16;
    /// Adaptation parameter set before the slices.
    pub const PREFIX_APS: u8 = 17;
    /// Adaptation parameter set after the slices.
    pub const SUFFIX_APS: u8 = 18;
    /// Picture header.
    pub const PH: u8 = 19;
    /// Access unit delimiter.
    pub const AUD: u8 = 20;
    /// End of sequence.
    pub const EOS: u8 = 21;
    /// End of bitstream.
    pub const EOB: u8 = 22;
    /// Supplemental enhancement information before the slices.
    pub const PREFIX_SEI: u8 = 23;
    /// Supplemental enhancement information after the slices.
    pub const SUFFIX_SEI: u8 = 24;
    /// Filler data.
    pub const FD: u8 = 25;
}

/// The `nal_unit_type` of a NAL unit (from its second header byte), or
/// `None` if the slice is shorter than the 2-byte header.
///
/// ```
/// use arcly_codec::vvc::{nal_type, nal_unit_type};
/// assert_eq!(nal_unit_type(&[0x00, 0x79]), Some(nal_type::SPS));
/// assert_eq!(nal_unit_type(&[0x00]), None);
/// ```
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    nal.get(1).map(|b| b >> 3)
}

/// True for the types where decoding can start: IDR_W_RADL, IDR_N_LP, CRA
/// (the IRAP types) and GDR (7..=10). GDR is included because a decoder
/// starting there reaches a correct picture after the recovery period,
/// which is how GDR-only streams (no IDR) are joined.
///
/// ```
/// use arcly_codec::vvc::{is_irap, nal_type};
/// assert!(is_irap(nal_type::IDR_N_LP) && is_irap(nal_type::GDR));
/// assert!(!is_irap(nal_type::RASL) && !is_irap(nal_type::SPS));
/// ```
pub fn is_irap(nal_type: u8) -> bool {
    (nal_type::IDR_W_RADL..=nal_type::GDR).contains(&nal_type)
}

/// True if a length-prefixed access unit (the bus format) holds a NAL unit
/// for which [`is_irap`] is true. A length running past the end ends the
/// scan; NAL units before it still count.
///
/// ```
/// use arcly_codec::vvc::is_keyframe;
/// // An AUD, then an IDR_N_LP slice.
/// let au = [0, 0, 0, 3, 0x00, 0xa1, 0x10, 0, 0, 0, 3, 0x00, 0x41, 0xc4];
/// assert!(is_keyframe(&au, 4));
/// assert!(!is_keyframe(&au[..7], 4));
/// ```
pub fn is_keyframe(access_unit: &[u8], length_size: usize) -> bool {
    split_length_prefixed(access_unit, length_size)
        .map_while(Result::ok)
        .any(|nal| nal_unit_type(nal).is_some_and(is_irap))
}

/// A VVC NAL unit header (H.266 7.3.1.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NalHeader {
    /// `forbidden_zero_bit` (true means it is set, which a conforming
    /// stream never does; reported rather than refused).
    pub forbidden_zero: bool,
    /// `nuh_layer_id` (0 to 55 in conforming streams).
    pub nuh_layer_id: u8,
    /// `nal_unit_type`.
    pub nal_unit_type: u8,
    /// `nuh_temporal_id_plus1 - 1`.
    pub temporal_id: u8,
}

impl NalHeader {
    /// Parses the first two bytes of a NAL unit. `nuh_temporal_id_plus1`
    /// of 0 is an error.
    ///
    /// ```
    /// use arcly_codec::vvc::{NalHeader, nal_type};
    /// let h = NalHeader::parse(&[0x00, 0x4b]).unwrap();
    /// assert_eq!((h.nal_unit_type, h.temporal_id, h.nuh_layer_id), (nal_type::CRA, 2, 0));
    /// assert!(NalHeader::parse(&[0x00, 0x48]).is_err());
    /// ```
    pub fn parse(nal: &[u8]) -> Result<Self, ProtocolError> {
        let [b0, b1, ..] = nal else {
            return Err(error(ProtocolErrorKind::Truncated, format!("NAL unit header of {} bytes", nal.len())));
        };
        let temporal_id_plus1 = b1 & 7;
        if temporal_id_plus1 == 0 {
            return Err(error(ProtocolErrorKind::InvalidValue, "nuh_temporal_id_plus1 is 0").at(1));
        }
        Ok(Self {
            forbidden_zero: b0 & 0x80 != 0,
            nuh_layer_id: b0 & 0x3f,
            nal_unit_type: b1 >> 3,
            temporal_id: temporal_id_plus1 - 1,
        })
    }
}

/// The start of a sequence parameter set (H.266 7.3.2.4).
///
/// [`Sps::parse`] reads, in order: `sps_seq_parameter_set_id`,
/// `sps_video_parameter_set_id`, `sps_max_sublayers_minus1`,
/// `sps_chroma_format_idc`, `sps_log2_ctu_size_minus5`,
/// `sps_ptl_dpb_hrd_params_present_flag`, then `profile_tier_level(1,
/// sps_max_sublayers_minus1)` if that flag is set (general constraints
/// info, sub-layer levels and sub-profiles skipped),
/// `sps_gdr_enabled_flag`, `sps_ref_pic_resampling_enabled_flag`,
/// `sps_res_change_in_clvs_allowed_flag` if resampling is enabled,
/// `sps_pic_width_max_in_luma_samples`, `sps_pic_height_max_in_luma_samples`
/// and the conformance window, and stops there. The size is the maximum
/// picture size of the sequence, cropped by the SPS conformance window;
/// with reference picture resampling, pictures may be smaller (their size is
/// in the PPS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sps {
    /// `sps_seq_parameter_set_id` (0 to 15).
    pub id: u8,
    /// `sps_chroma_format_idc`: 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u8,
    /// Maximum picture width minus the conformance window.
    pub width: u32,
    /// Maximum picture height minus the conformance window.
    pub height: u32,
}

impl Sps {
    /// Parses a sequence parameter set NAL unit, header included (see the
    /// type docs for how far).
    ///
    /// ```
    /// use arcly_codec::vvc::Sps;
    /// // The start of a 1920x1080 VTM SPS (from GStreamer's h266parser tests).
    /// let nal = [0x00, 0x79, 0x00, 0x8d, 0x02, 0x43, 0x80, 0x00, 0x00, 0xc0, 0x07, 0x81, 0x00, 0x21, 0xc8, 0xd4];
    /// let sps = Sps::parse(&nal).unwrap();
    /// assert_eq!((sps.id, sps.chroma_format_idc, sps.width, sps.height), (0, 1, 1920, 1080));
    /// ```
    pub fn parse(nal: &[u8]) -> Result<Self, ProtocolError> {
        let header = NalHeader::parse(nal)?;
        if header.nal_unit_type != nal_type::SPS {
            return Err(error(
                ProtocolErrorKind::InvalidValue,
                format!("NAL unit type {} is not an SPS (15)", header.nal_unit_type),
            ));
        }
        let rbsp = remove_emulation_prevention(&nal[2..]);
        let mut r = BitReader::new(PROTOCOL, &rbsp);
        let id = r.read_bits(4)? as u8;
        r.skip(4)?; // sps_video_parameter_set_id
        let max_sublayers_minus1 = r.read_bits(3)? as u8;
        if max_sublayers_minus1 > 6 {
            return Err(error(ProtocolErrorKind::InvalidValue, "sps_max_sublayers_minus1 is 7"));
        }
        let chroma_format_idc = r.read_bits(2)? as u8;
        r.skip(2)?; // sps_log2_ctu_size_minus5
        if r.read_flag()? {
            profile_tier_level(&mut r, max_sublayers_minus1)?;
        }
        r.skip(1)?; // sps_gdr_enabled_flag
        if r.read_flag()? {
            r.skip(1)?; // sps_res_change_in_clvs_allowed_flag
        }
        let pic_width = r.read_ue()?;
        let pic_height = r.read_ue()?;
        if pic_width == 0 || pic_height == 0 {
            return Err(error(ProtocolErrorKind::InvalidValue, format!("picture size {pic_width}x{pic_height}")));
        }
        let (sub_width, sub_height) = match chroma_format_idc {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let (mut width, mut height) = (pic_width, pic_height);
        if r.read_flag()? {
            let [left, right, top, bottom] = [r.read_ue()?, r.read_ue()?, r.read_ue()?, r.read_ue()?];
            let crop_w = (u64::from(left) + u64::from(right)) * sub_width;
            let crop_h = (u64::from(top) + u64::from(bottom)) * sub_height;
            if crop_w >= u64::from(pic_width) || crop_h >= u64::from(pic_height) {
                return Err(error(
                    ProtocolErrorKind::InvalidValue,
                    format!("conformance window {crop_w}x{crop_h} crops all of {pic_width}x{pic_height}"),
                ));
            }
            width -= crop_w as u32;
            height -= crop_h as u32;
        }
        Ok(Self { id, chroma_format_idc, width, height })
    }
}

/// Skips `profile_tier_level(1, max_sublayers_minus1)` (H.266 7.3.3.1).
fn profile_tier_level(r: &mut BitReader<'_>, max_sublayers_minus1: u8) -> Result<(), ProtocolError> {
    // general_profile_idc, general_tier_flag, general_level_idc,
    // ptl_frame_only_constraint_flag, ptl_multilayer_enabled_flag
    r.skip(7 + 1 + 8 + 2)?;
    // general_constraints_info()
    if r.read_flag()? {
        r.skip(71)?;
        let additional_bits = r.read_bits(8)? as usize;
        r.skip(additional_bits)?;
    }
    r.align();
    let mut level_present = [false; 6];
    for present in level_present.iter_mut().take(usize::from(max_sublayers_minus1)) {
        *present = r.read_flag()?;
    }
    r.align();
    let sublayer_levels = level_present.iter().filter(|&&p| p).count();
    r.skip(8 * sublayer_levels)?;
    let sub_profiles = r.read_bits(8)? as usize;
    r.skip(32 * sub_profiles)?;
    Ok(())
}

/// Fuzz entry point: the parsers return instead of panicking.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let _ = NalHeader::parse(data);
    let _ = Sps::parse(data);
    let _ = is_keyframe(data, 4);
    let _ = is_keyframe(data, 1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits::BitWriter;
    use proptest::prelude::*;

    /// From GStreamer's h266parser tests (a VTM-encoded 1920x1080 stream).
    const SPS_1080P: [u8; 16] =
        [0x00, 0x79, 0x00, 0x8d, 0x02, 0x43, 0x80, 0x00, 0x00, 0xc0, 0x07, 0x81, 0x00, 0x21, 0xc8, 0xd4];
    /// The SPS of the ITU conformance stream SPATSCAL_A_4 (176x144, as
    /// muxed into MP4 by FFmpeg 7.1; from GStreamer's h266parser tests).
    const SPS_SPATSCAL: [u8; 16] =
        [0x00, 0x79, 0x01, 0x0d, 0x22, 0x66, 0xc0, 0x00, 0x40, 0x2c, 0x40, 0x48, 0x8d, 0x40, 0x17, 0xc8];

    #[test]
    fn known_sps() {
        assert_eq!(Sps::parse(&SPS_1080P).unwrap(), Sps { id: 0, chroma_format_idc: 1, width: 1920, height: 1080 });
        assert_eq!(Sps::parse(&SPS_SPATSCAL).unwrap(), Sps { id: 0, chroma_format_idc: 1, width: 176, height: 144 });
        for cut in 0..14 {
            assert!(Sps::parse(&SPS_1080P[..cut]).is_err(), "cut at {cut}");
        }
        // A PPS header is refused.
        assert_eq!(Sps::parse(&[0x00, 0x81, 0x00]).unwrap_err().kind, ProtocolErrorKind::InvalidValue);
    }

    #[test]
    fn headers() {
        let h = NalHeader::parse(&[0x81, 0x79]).unwrap();
        assert_eq!(h, NalHeader { forbidden_zero: true, nuh_layer_id: 1, nal_unit_type: 15, temporal_id: 0 });
        assert_eq!(NalHeader::parse(&[0x3f, 0xff]).unwrap().nal_unit_type, 31);
        assert!(NalHeader::parse(&[0x00]).is_err());
        for (t, irap) in [(6, false), (7, true), (8, true), (9, true), (10, true), (11, false), (15, false)] {
            assert_eq!(is_irap(t), irap, "type {t}");
        }
    }

    /// SPS with general constraints info, sub-layer levels, sub-profiles,
    /// 4:2:2, reference picture resampling and a conformance window, built
    /// field by field.
    fn built_sps(emulation_prevention: bool) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.write_bits(0x0079, 16);
        w.write_bits(5, 4); // sps id
        w.write_bits(2, 4); // vps id
        w.write_bits(3, 3); // max_sublayers_minus1
        w.write_bits(2, 2); // 4:2:2
        w.write_bits(1, 2);
        w.write_flag(true); // ptl present
        w.write_bits(1, 7);
        w.write_flag(false);
        w.write_bits(0x43, 8);
        w.write_bits(0b10, 2);
        w.write_flag(true); // gci_present_flag
        w.write_bits(0, 64); // 71 constraint flags
        w.write_bits(0, 7);
        w.write_bits(9, 8);
        w.write_bits(0x1ff, 9); // bit 139 of the NAL unit
        w.write_bits(0, 5); // gci_alignment_zero_bit
        for present in [true, false, true] {
            w.write_flag(present);
        }
        w.write_bits(0, 5); // ptl_reserved_zero_bit
        w.write_bits(0x51, 8);
        w.write_bits(0x4a, 8);
        w.write_bits(2, 8); // ptl_num_sub_profiles
        w.write_bits(0xdead_beef, 32);
        w.write_bits(0x0000_0000, 32);
        w.write_flag(true); // gdr
        w.write_flag(true); // ref_pic_resampling
        w.write_flag(false);
        w.write_ue(3840);
        w.write_ue(2176);
        w.write_flag(true);
        for offset in [0, 8, 0, 16] {
            w.write_ue(offset);
        }
        w.write_bits(0, 16);
        let rbsp = w.finish();
        if !emulation_prevention {
            return rbsp;
        }
        let mut nal = Vec::new();
        let mut zeros = 0;
        for &b in &rbsp {
            if zeros >= 2 && b <= 3 {
                nal.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            nal.push(b);
        }
        nal
    }

    #[test]
    fn built_sps_parses() {
        let nal = built_sps(true);
        assert!(nal.windows(3).any(|w| w == [0, 0, 3]), "the test needs an emulation-prevention byte");
        let sps = Sps::parse(&nal).unwrap();
        assert_eq!(sps, Sps { id: 5, chroma_format_idc: 2, width: 3840 - 16, height: 2176 - 16 });
        assert_eq!(Sps::parse(&built_sps(false)).unwrap(), sps);
    }

    #[test]
    fn keyframes() {
        let au = |types: &[u8]| {
            let mut out = Vec::new();
            for &t in types {
                out.extend_from_slice(&[0, 0, 0, 3, 0x00, (t << 3) | 1, 0x80]);
            }
            out
        };
        assert!(is_keyframe(&au(&[nal_type::AUD, nal_type::SPS, nal_type::CRA]), 4));
        assert!(is_keyframe(&au(&[nal_type::GDR]), 4));
        assert!(!is_keyframe(&au(&[nal_type::AUD, nal_type::TRAIL, nal_type::RASL]), 4));
        let mut truncated = au(&[nal_type::TRAIL, nal_type::IDR_W_RADL]);
        truncated.truncate(12);
        assert!(!is_keyframe(&truncated, 4));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..100)) {
            fuzz(&data);
        }

        #[test]
        fn corrupted_sps_never_panics(pos in 2usize..64, value in any::<u8>(), cut in 0usize..64) {
            let mut nal = built_sps(true);
            let pos = pos % nal.len();
            nal[pos] = value;
            nal.truncate(cut);
            fuzz(&nal);
        }
    }
}
