//! H.265/HEVC: NAL unit types, the sequence parameter set, and the
//! HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3) that MP4 and
//! FLV carry and the bus uses as the `CONFIG` payload.
//!
//! NAL units passed to this module include their 2-byte NAL unit header and
//! may still contain emulation-prevention bytes; the parsers remove them.

use std::ops::Range;

use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::{BufMut, Bytes, BytesMut};

use crate::annexb::{split_annexb, split_length_prefixed};
use crate::bits::{BitReader, remove_emulation_prevention};

const PROTOCOL: &str = "h265";

fn error(kind: ProtocolErrorKind, context: impl Into<String>) -> ProtocolError {
    ProtocolError::new(PROTOCOL, kind, context)
}

/// NAL unit types (H.265 table 7-1).
pub mod nal_type {
    /// Coded slice of a non-TSA, non-STSA trailing picture, not a reference.
    pub const TRAIL_N: u8 = 0;
    /// Coded slice of a non-TSA, non-STSA trailing picture.
    pub const TRAIL_R: u8 = 1;
    /// Coded slice of a RADL picture, not a reference.
    pub const RADL_N: u8 = 6;
    /// Coded slice of a RADL picture.
    pub const RADL_R: u8 = 7;
    /// Coded slice of a RASL picture, not a reference.
    pub const RASL_N: u8 = 8;
    /// Coded slice of a RASL picture.
    pub const RASL_R: u8 = 9;
    /// Broken link access with leading pictures.
    pub const BLA_W_LP: u8 = 16;
    /// Broken link access with RADL pictures.
    pub const BLA_W_RADL: u8 = 17;
    /// Broken link access without leading pictures.
    pub const BLA_N_LP: u8 = 18;
    /// Instantaneous decoding refresh with RADL pictures.
    pub const IDR_W_RADL: u8 = 19;
    /// Instantaneous decoding refresh without leading pictures.
    pub const IDR_N_LP: u8 = 20;
    /// Clean random access.
    pub const CRA: u8 = 21;
    /// Video parameter set.
    pub const VPS: u8 = 32;
    /// Sequence parameter set.
    pub const SPS: u8 = 33;
    /// Picture parameter set.
    pub const PPS: u8 = 34;
    /// Access unit delimiter.
    pub const AUD: u8 = 35;
    /// End of sequence.
    pub const EOS: u8 = 36;
    /// End of bitstream.
    pub const EOB: u8 = 37;
    /// Filler data.
    pub const FD: u8 = 38;
    /// Supplemental enhancement information before the slices.
    pub const PREFIX_SEI: u8 = 39;
    /// Supplemental enhancement information after the slices.
    pub const SUFFIX_SEI: u8 = 40;
}

/// The `nal_unit_type` of a NAL unit (from its first header byte), or
/// `None` for an empty slice.
///
/// ```
/// use arcly_codec::h265::{nal_type, nal_unit_type};
/// assert_eq!(nal_unit_type(&[0x42, 0x01]), Some(nal_type::SPS));
/// assert_eq!(nal_unit_type(&[]), None);
/// ```
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| (b >> 1) & 0x3f)
}

/// True for intra random access point types (16..=23: BLA, IDR, CRA and the
/// two reserved IRAP types), where decoding can start.
///
/// ```
/// use arcly_codec::h265::{is_irap, nal_type};
/// assert!(is_irap(nal_type::IDR_W_RADL) && is_irap(nal_type::CRA));
/// assert!(!is_irap(nal_type::TRAIL_R) && !is_irap(nal_type::SPS));
/// ```
pub fn is_irap(nal_type: u8) -> bool {
    (16..=23).contains(&nal_type)
}

/// True if a length-prefixed access unit (the bus format) holds an IRAP NAL
/// unit. A length running past the end ends the scan; NAL units before it
/// still count.
///
/// ```
/// use arcly_codec::h265::is_keyframe;
/// // An AUD, then an IDR_W_RADL slice header byte pair.
/// let au = [0, 0, 0, 3, 0x46, 0x01, 0x10, 0, 0, 0, 2, 0x26, 0x01];
/// assert!(is_keyframe(&au, 4));
/// assert!(!is_keyframe(&au[..7], 4));
/// ```
pub fn is_keyframe(access_unit: &[u8], length_size: usize) -> bool {
    split_length_prefixed(access_unit, length_size)
        .map_while(Result::ok)
        .any(|nal| nal_unit_type(nal).is_some_and(is_irap))
}

/// True if an Annex B access unit holds an IRAP NAL unit.
///
/// ```
/// use arcly_codec::h265::is_keyframe_annexb;
/// assert!(is_keyframe_annexb(&[0, 0, 0, 1, 0x2a, 0x01, 0xaf]));
/// assert!(!is_keyframe_annexb(&[0, 0, 1, 0x02, 0x01, 0xd0]));
/// ```
pub fn is_keyframe_annexb(access_unit: &[u8]) -> bool {
    split_annexb(access_unit).any(|nal| nal_unit_type(nal).is_some_and(is_irap))
}

/// The general part of `profile_tier_level()`.
#[derive(Clone, Copy, Debug, Default)]
struct ProfileTierLevel {
    profile_space: u8,
    tier_flag: bool,
    profile_idc: u8,
    compatibility_flags: u32,
    constraint_indicator_flags: u64,
    level_idc: u8,
}

/// `profile_tier_level(1, max_sub_layers_minus1)` (H.265 7.3.3): the general
/// profile is kept, the sub-layer profiles and levels are skipped.
fn profile_tier_level(r: &mut BitReader<'_>, max_sub_layers_minus1: u8) -> Result<ProfileTierLevel, ProtocolError> {
    let ptl = ProfileTierLevel {
        profile_space: r.read_bits(2)? as u8,
        tier_flag: r.read_flag()?,
        profile_idc: r.read_bits(5)? as u8,
        compatibility_flags: r.read_u32(32)?,
        constraint_indicator_flags: r.read_bits(48)?,
        level_idc: r.read_bits(8)? as u8,
    };
    let mut present = [(false, false); 7];
    for p in present.iter_mut().take(usize::from(max_sub_layers_minus1)) {
        *p = (r.read_flag()?, r.read_flag()?);
    }
    if max_sub_layers_minus1 > 0 {
        r.skip(2 * (8 - usize::from(max_sub_layers_minus1)))?;
    }
    for &(profile_present, level_present) in present.iter().take(usize::from(max_sub_layers_minus1)) {
        if profile_present {
            r.skip(88)?;
        }
        if level_present {
            r.skip(8)?;
        }
    }
    Ok(ptl)
}

/// The fields of a sequence parameter set that muxers and players need.
///
/// [`Sps::parse`] reads the SPS up to the bit depths strictly: a truncated
/// or invalid value there is an error. It then walks on through the coding
/// tool fields, scaling lists, reference picture sets and the VUI to reach
/// the VUI timing information; anything that goes wrong in that second part
/// only leaves [`Sps::frame_rate`] at `None`, because the fields before it
/// are already valid and a stream should not be refused over a frame rate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Sps {
    /// `general_profile_space` (0 in every published profile).
    pub general_profile_space: u8,
    /// `general_tier_flag`: true for the High tier.
    pub general_tier_flag: bool,
    /// `general_profile_idc`: 1 Main, 2 Main 10, 3 Main Still Picture, 4 range extensions.
    pub general_profile_idc: u8,
    /// `general_profile_compatibility_flag[0..32]`, flag 0 in the top bit.
    pub general_profile_compatibility_flags: u32,
    /// The 48 bits from `general_progressive_source_flag` to `general_inbld_flag`/reserved.
    pub general_constraint_indicator_flags: u64,
    /// `general_level_idc`: 30 times the level number (93 = level 3.1).
    pub general_level_idc: u8,
    /// `chroma_format_idc`: 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u32,
    /// Luma bit depth (8 to 16).
    pub bit_depth_luma: u8,
    /// Chroma bit depth (8 to 16).
    pub bit_depth_chroma: u8,
    /// Displayed width: `pic_width_in_luma_samples` minus the conformance window.
    pub width: u32,
    /// Displayed height: `pic_height_in_luma_samples` minus the conformance window.
    pub height: u32,
    /// Frames per second as (numerator, denominator), reduced, from the VUI
    /// `vui_time_scale` / `vui_num_units_in_tick`; `None` when the VUI has
    /// no timing information or could not be reached (see the type docs).
    pub frame_rate: Option<(u32, u32)>,
}

/// What [`Sps::parse`] reads besides the public fields; the configuration
/// record needs it.
#[derive(Clone, Copy, Debug)]
struct SpsExtra {
    max_sub_layers_minus1: u8,
    temporal_id_nesting: bool,
}

impl Sps {
    /// Parses a sequence parameter set NAL unit, header included.
    ///
    /// ```
    /// use arcly_codec::h265::Sps;
    /// // The SPS x265 wrote for testdata/hevc.hevc.
    /// let sps = [
    ///     0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03,
    ///     0x00, 0x1e, 0xa0, 0x14, 0x20, 0x79, 0x65, 0x95, 0x92, 0x49, 0x32, 0xbc, 0x05, 0xa0, 0x20, 0x00,
    ///     0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x03, 0x03, 0x21,
    /// ];
    /// let sps = Sps::parse(&sps).unwrap();
    /// assert_eq!((sps.general_profile_idc, sps.general_level_idc), (1, 30));
    /// assert_eq!((sps.width, sps.height, sps.bit_depth_luma), (160, 120, 8));
    /// assert_eq!(sps.frame_rate, Some((25, 1)));
    /// ```
    pub fn parse(nal: &[u8]) -> Result<Sps, ProtocolError> {
        Self::parse_extra(nal).map(|(sps, _)| sps)
    }

    fn parse_extra(nal: &[u8]) -> Result<(Sps, SpsExtra), ProtocolError> {
        let [b0, b1, payload @ ..] = nal else {
            return Err(error(ProtocolErrorKind::Truncated, format!("SPS NAL unit of {} bytes", nal.len())));
        };
        let nal_type = (b0 >> 1) & 0x3f;
        if nal_type != nal_type::SPS {
            return Err(error(ProtocolErrorKind::InvalidValue, format!("NAL unit type {nal_type} is not an SPS (33)")));
        }
        let layer_id = ((b0 & 1) << 5) | (b1 >> 3);
        if layer_id != 0 {
            // Multi-layer SPS syntax (F.7.3.2.2.1) differs from the base layer's.
            return Err(error(ProtocolErrorKind::Unsupported, format!("SPS of layer {layer_id}")));
        }
        let rbsp = remove_emulation_prevention(payload);
        let mut r = BitReader::new(PROTOCOL, &rbsp);
        r.skip(4)?; // sps_video_parameter_set_id
        let max_sub_layers_minus1 = r.read_bits(3)? as u8;
        if max_sub_layers_minus1 > 6 {
            return Err(error(ProtocolErrorKind::InvalidValue, "sps_max_sub_layers_minus1 is 7"));
        }
        let temporal_id_nesting = r.read_flag()?;
        let ptl = profile_tier_level(&mut r, max_sub_layers_minus1)?;
        let sps_id = r.read_ue()?;
        if sps_id > 15 {
            return Err(error(ProtocolErrorKind::InvalidValue, format!("sps_seq_parameter_set_id {sps_id} > 15")));
        }
        let chroma_format_idc = r.read_ue()?;
        if chroma_format_idc > 3 {
            return Err(error(ProtocolErrorKind::InvalidValue, format!("chroma_format_idc {chroma_format_idc} > 3")));
        }
        let separate_colour_plane = chroma_format_idc == 3 && r.read_flag()?;
        let pic_width = r.read_ue()?;
        let pic_height = r.read_ue()?;
        if pic_width == 0 || pic_height == 0 {
            return Err(error(ProtocolErrorKind::InvalidValue, format!("picture size {pic_width}x{pic_height}")));
        }
        // Table 6-1; with separate colour planes each plane is coded as monochrome.
        let (sub_width, sub_height) = match (chroma_format_idc, separate_colour_plane) {
            (1, _) => (2, 2),
            (2, _) => (2, 1),
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
        let luma_minus8 = r.read_ue()?;
        let chroma_minus8 = r.read_ue()?;
        if luma_minus8 > 8 || chroma_minus8 > 8 {
            return Err(error(
                ProtocolErrorKind::InvalidValue,
                format!("bit depth minus 8 of {luma_minus8}/{chroma_minus8} > 8"),
            ));
        }
        let frame_rate = vui_frame_rate(&mut r, max_sub_layers_minus1).ok().flatten();
        let sps = Sps {
            general_profile_space: ptl.profile_space,
            general_tier_flag: ptl.tier_flag,
            general_profile_idc: ptl.profile_idc,
            general_profile_compatibility_flags: ptl.compatibility_flags,
            general_constraint_indicator_flags: ptl.constraint_indicator_flags,
            general_level_idc: ptl.level_idc,
            chroma_format_idc,
            bit_depth_luma: luma_minus8 as u8 + 8,
            bit_depth_chroma: chroma_minus8 as u8 + 8,
            width,
            height,
            frame_rate,
        };
        Ok((sps, SpsExtra { max_sub_layers_minus1, temporal_id_nesting }))
    }
}

/// Walks from `log2_max_pic_order_cnt_lsb_minus4` to the VUI timing
/// information (H.265 7.3.2.2.1, E.2.1).
fn vui_frame_rate(r: &mut BitReader<'_>, max_sub_layers_minus1: u8) -> Result<Option<(u32, u32)>, ProtocolError> {
    let invalid = |what: &str, v: u32| error(ProtocolErrorKind::InvalidValue, format!("{what} {v} out of range"));
    let log2_max_poc_lsb_minus4 = r.read_ue()?;
    if log2_max_poc_lsb_minus4 > 12 {
        return Err(invalid("log2_max_pic_order_cnt_lsb_minus4", log2_max_poc_lsb_minus4));
    }
    let ordering_info_for_all = r.read_flag()?;
    let ordering_entries = if ordering_info_for_all { usize::from(max_sub_layers_minus1) + 1 } else { 1 };
    for _ in 0..ordering_entries {
        // max_dec_pic_buffering_minus1, max_num_reorder_pics, max_latency_increase_plus1
        for _ in 0..3 {
            r.read_ue()?;
        }
    }
    // log2_min_luma_coding_block_size_minus3 .. max_transform_hierarchy_depth_intra
    for _ in 0..6 {
        r.read_ue()?;
    }
    if r.read_flag()? && r.read_flag()? {
        scaling_list_data(r)?;
    }
    r.skip(2)?; // amp_enabled_flag, sample_adaptive_offset_enabled_flag
    if r.read_flag()? {
        // pcm_sample_bit_depth_luma_minus1, pcm_sample_bit_depth_chroma_minus1
        r.skip(8)?;
        r.read_ue()?;
        r.read_ue()?;
        r.skip(1)?; // pcm_loop_filter_disabled_flag
    }
    let num_short_term_ref_pic_sets = r.read_ue()?;
    if num_short_term_ref_pic_sets > 64 {
        return Err(invalid("num_short_term_ref_pic_sets", num_short_term_ref_pic_sets));
    }
    let mut num_delta_pocs = Vec::with_capacity(num_short_term_ref_pic_sets as usize);
    for idx in 0..num_short_term_ref_pic_sets as usize {
        let count = st_ref_pic_set(r, idx, &num_delta_pocs)?;
        num_delta_pocs.push(count);
    }
    if r.read_flag()? {
        let num_long_term_ref_pics = r.read_ue()?;
        if num_long_term_ref_pics > 32 {
            return Err(invalid("num_long_term_ref_pics_sps", num_long_term_ref_pics));
        }
        // lt_ref_pic_poc_lsb_sps (u(v)), used_by_curr_pic_lt_sps_flag
        let entry_bits = log2_max_poc_lsb_minus4 as usize + 4 + 1;
        r.skip(entry_bits * num_long_term_ref_pics as usize)?;
    }
    r.skip(2)?; // sps_temporal_mvp_enabled_flag, strong_intra_smoothing_enabled_flag
    if !r.read_flag()? {
        return Ok(None);
    }
    // vui_parameters()
    if r.read_flag()? && r.read_bits(8)? == 255 {
        r.skip(32)?; // sar_width, sar_height
    }
    if r.read_flag()? {
        r.skip(1)?; // overscan_appropriate_flag
    }
    if r.read_flag()? {
        r.skip(4)?; // video_format, video_full_range_flag
        if r.read_flag()? {
            r.skip(24)?; // colour_primaries, transfer_characteristics, matrix_coeffs
        }
    }
    if r.read_flag()? {
        r.read_ue()?;
        r.read_ue()?;
    }
    r.skip(3)?; // neutral_chroma_indication_flag, field_seq_flag, frame_field_info_present_flag
    if r.read_flag()? {
        for _ in 0..4 {
            r.read_ue()?; // def_disp_win_*_offset
        }
    }
    if !r.read_flag()? {
        return Ok(None);
    }
    let num_units_in_tick = r.read_u32(32)?;
    let time_scale = r.read_u32(32)?;
    if num_units_in_tick == 0 || time_scale == 0 {
        return Ok(None);
    }
    let g = gcd(num_units_in_tick, time_scale);
    Ok(Some((time_scale / g, num_units_in_tick / g)))
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Skips `scaling_list_data()` (H.265 7.3.4).
fn scaling_list_data(r: &mut BitReader<'_>) -> Result<(), ProtocolError> {
    for size_id in 0..4 {
        let step = if size_id == 3 { 3 } else { 1 };
        for _ in (0..6).step_by(step) {
            if !r.read_flag()? {
                r.read_ue()?; // scaling_list_pred_matrix_id_delta
            } else {
                let coefficients = 64.min(1 << (4 + (size_id << 1)));
                if size_id > 1 {
                    r.read_se()?; // scaling_list_dc_coef_minus8
                }
                for _ in 0..coefficients {
                    r.read_se()?; // scaling_list_delta_coef
                }
            }
        }
    }
    Ok(())
}

/// Skips `st_ref_pic_set(idx)` (H.265 7.3.7) as it appears in the SPS and
/// returns its `NumDeltaPocs`. `previous` holds the counts of the sets
/// before it.
fn st_ref_pic_set(r: &mut BitReader<'_>, idx: usize, previous: &[u32]) -> Result<u32, ProtocolError> {
    let inter_ref_pic_set_prediction = idx != 0 && r.read_flag()?;
    if inter_ref_pic_set_prediction {
        // In the SPS delta_idx_minus1 is absent, so the reference is the previous set.
        let reference = previous.get(idx - 1).copied().unwrap_or(0);
        r.skip(1)?; // delta_rps_sign
        r.read_ue()?; // abs_delta_rps_minus1
        let mut count = 0;
        for _ in 0..=reference {
            let used_by_curr_pic = r.read_flag()?;
            if used_by_curr_pic || r.read_flag()? {
                count += 1;
            }
        }
        Ok(count)
    } else {
        let negative = r.read_ue()?;
        let positive = r.read_ue()?;
        // Both are bounded by sps_max_dec_pic_buffering_minus1, at most 15.
        if negative > 16 || positive > 16 {
            return Err(error(
                ProtocolErrorKind::InvalidValue,
                format!("short-term reference picture set with {negative}+{positive} pictures"),
            ));
        }
        for _ in 0..negative + positive {
            r.read_ue()?; // delta_poc_s*_minus1
            r.skip(1)?; // used_by_curr_pic_s*_flag
        }
        Ok(negative + positive)
    }
}

/// One array of NAL units of one type in an [`HevcConfig`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NalArray {
    /// `array_completeness`: true if every NAL unit of this type is in the
    /// array and none is in the samples (`hvc1`), false if more may follow
    /// in band (`hev1`).
    pub completeness: bool,
    /// The NAL unit type of every unit in the array.
    pub nal_type: u8,
    /// The NAL units, headers included, without lengths or start codes.
    pub nalus: Vec<Bytes>,
}

/// An HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3): the `hvcC`
/// box payload of MP4, the sequence header of enhanced FLV, and the bus
/// `CONFIG` payload for H.265.
///
/// Not kept: `min_spatial_segmentation_idc`, `parallelismType` and
/// `constantFrameRate`, which are hints; [`HevcConfig::to_bytes`] writes
/// them as 0 (unknown).
///
/// ```
/// use arcly_codec::h265::{HevcConfig, nal_type};
/// let vps = [0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00,
///            0x03, 0x00, 0x00, 0x03, 0x00, 0x1e, 0x95, 0x90, 0x09];
/// let sps = [0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
///            0x03, 0x00, 0x1e, 0xa0, 0x14, 0x20, 0x79, 0x65, 0x95, 0x92, 0x49, 0x32, 0xbc, 0x05, 0xa0,
///            0x20, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x03, 0x03, 0x21];
/// let pps = [0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];
/// let config = HevcConfig::from_parameter_sets(&[&vps], &[&sps], &[&pps]).unwrap();
/// assert_eq!((config.general_profile_idc, config.length_size, config.avg_frame_rate), (1, 4, 25 * 256));
/// let record = config.to_bytes();
/// let parsed = HevcConfig::parse(&record).unwrap();
/// assert_eq!(parsed, config);
/// assert_eq!(parsed.first_sps().unwrap().width, 160);
/// let types: Vec<u8> = parsed.arrays.iter().map(|a| a.nal_type).collect();
/// assert_eq!(types, [nal_type::VPS, nal_type::SPS, nal_type::PPS]);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HevcConfig {
    /// `general_profile_space`.
    pub general_profile_space: u8,
    /// `general_tier_flag`.
    pub general_tier_flag: bool,
    /// `general_profile_idc`.
    pub general_profile_idc: u8,
    /// `general_profile_compatibility_flags`.
    pub general_profile_compatibility_flags: u32,
    /// `general_constraint_indicator_flags` (48 bits).
    pub general_constraint_indicator_flags: u64,
    /// `general_level_idc`.
    pub general_level_idc: u8,
    /// `chromaFormat` (`chroma_format_idc`, 0 to 3).
    pub chroma_format_idc: u8,
    /// Luma bit depth (`bitDepthLumaMinus8 + 8`).
    pub bit_depth_luma: u8,
    /// Chroma bit depth (`bitDepthChromaMinus8 + 8`).
    pub bit_depth_chroma: u8,
    /// `avgFrameRate` in frames per 256 seconds; 0 when unknown.
    pub avg_frame_rate: u16,
    /// `numTemporalLayers` (0 = unknown, 1 = not temporally scalable).
    pub num_temporal_layers: u8,
    /// `temporalIdNested`.
    pub temporal_id_nested: bool,
    /// Bytes of each NAL unit length in the samples (1, 2 or 4).
    pub length_size: u8,
    /// The NAL unit arrays (normally VPS, SPS, PPS, then SEI).
    pub arrays: Vec<NalArray>,
}

impl HevcConfig {
    /// Parses a record; the NAL units are copied out of `record`. Only
    /// `configurationVersion` 1 is accepted (so Annex B data, which starts
    /// with a zero byte, is refused); bytes after the last array are ignored.
    pub fn parse(record: &[u8]) -> Result<Self, ProtocolError> {
        Self::parse_with(record, |range| Bytes::copy_from_slice(&record[range]))
    }

    /// Like [`HevcConfig::parse`], but the NAL units share `record`'s buffer.
    pub fn parse_bytes(record: &Bytes) -> Result<Self, ProtocolError> {
        Self::parse_with(record, |range| record.slice(range))
    }

    fn parse_with(record: &[u8], nal_at: impl Fn(Range<usize>) -> Bytes) -> Result<Self, ProtocolError> {
        let mut r = BitReader::new(PROTOCOL, record);
        let version = r.read_bits(8)?;
        if version != 1 {
            return Err(error(ProtocolErrorKind::Unsupported, format!("hvcC configurationVersion {version}")).at(0));
        }
        let general_profile_space = r.read_bits(2)? as u8;
        let general_tier_flag = r.read_flag()?;
        let general_profile_idc = r.read_bits(5)? as u8;
        let general_profile_compatibility_flags = r.read_u32(32)?;
        let general_constraint_indicator_flags = r.read_bits(48)?;
        let general_level_idc = r.read_bits(8)? as u8;
        r.skip(4 + 12 + 6 + 2 + 6)?; // reserved, min_spatial_segmentation_idc, reserved, parallelismType, reserved
        let chroma_format_idc = r.read_bits(2)? as u8;
        r.skip(5)?;
        let bit_depth_luma = r.read_bits(3)? as u8 + 8;
        r.skip(5)?;
        let bit_depth_chroma = r.read_bits(3)? as u8 + 8;
        let avg_frame_rate = r.read_bits(16)? as u16;
        r.skip(2)?; // constantFrameRate
        let num_temporal_layers = r.read_bits(3)? as u8;
        let temporal_id_nested = r.read_flag()?;
        let length_size = r.read_bits(2)? as u8 + 1;
        if length_size == 3 {
            return Err(error(ProtocolErrorKind::InvalidValue, "hvcC lengthSizeMinusOne 2").at(21));
        }
        let num_arrays = r.read_bits(8)?;
        let mut arrays = Vec::new();
        for _ in 0..num_arrays {
            let completeness = r.read_flag()?;
            r.skip(1)?;
            let nal_type = r.read_bits(6)? as u8;
            let num_nalus = r.read_bits(16)?;
            let mut nalus = Vec::new();
            for _ in 0..num_nalus {
                let len = r.read_bits(16)? as usize;
                let start = r.position() / 8;
                if len > record.len() - start {
                    return Err(error(
                        ProtocolErrorKind::Truncated,
                        format!("hvcC NAL unit of {len} bytes, {} left", record.len() - start),
                    )
                    .at(start as u64 - 2));
                }
                r.skip(len * 8)?;
                nalus.push(nal_at(start..start + len));
            }
            arrays.push(NalArray { completeness, nal_type, nalus });
        }
        Ok(Self {
            general_profile_space,
            general_tier_flag,
            general_profile_idc,
            general_profile_compatibility_flags,
            general_constraint_indicator_flags,
            general_level_idc,
            chroma_format_idc,
            bit_depth_luma,
            bit_depth_chroma,
            avg_frame_rate,
            num_temporal_layers,
            temporal_id_nested,
            length_size,
            arrays,
        })
    }

    /// Serializes the record. Fields are masked to their widths; arrays
    /// past the 255th, NAL units past the 65,535th of an array and NAL units
    /// longer than 65,535 bytes cannot be represented and are left out
    /// ([`HevcConfig::parse`] and [`HevcConfig::from_parameter_sets`] never
    /// produce them).
    pub fn to_bytes(&self) -> Bytes {
        let fits = |nal: &&Bytes| nal.len() <= usize::from(u16::MAX);
        let arrays = &self.arrays[..self.arrays.len().min(255)];
        let size: usize = 23
            + arrays.iter().map(|a| 3 + a.nalus.iter().filter(fits).map(|n| 2 + n.len()).sum::<usize>()).sum::<usize>();
        let mut out = BytesMut::with_capacity(size);
        out.put_u8(1);
        out.put_u8(
            ((self.general_profile_space & 3) << 6)
                | (u8::from(self.general_tier_flag) << 5)
                | (self.general_profile_idc & 0x1f),
        );
        out.put_u32(self.general_profile_compatibility_flags);
        out.put_uint(self.general_constraint_indicator_flags & 0xffff_ffff_ffff, 6);
        out.put_u8(self.general_level_idc);
        out.put_u16(0xf000); // min_spatial_segmentation_idc 0
        out.put_u8(0xfc); // parallelismType 0 (unknown)
        out.put_u8(0xfc | (self.chroma_format_idc & 3));
        out.put_u8(0xf8 | (self.bit_depth_luma.saturating_sub(8) & 7));
        out.put_u8(0xf8 | (self.bit_depth_chroma.saturating_sub(8) & 7));
        out.put_u16(self.avg_frame_rate);
        out.put_u8(
            ((self.num_temporal_layers & 7) << 3)
                | (u8::from(self.temporal_id_nested) << 2)
                | (self.length_size.saturating_sub(1) & 3),
        );
        out.put_u8(arrays.len() as u8);
        for array in arrays {
            out.put_u8((u8::from(array.completeness) << 7) | (array.nal_type & 0x3f));
            let nalus: Vec<&Bytes> = array.nalus.iter().filter(fits).take(usize::from(u16::MAX)).collect();
            out.put_u16(nalus.len() as u16);
            for nal in nalus {
                out.put_u16(nal.len() as u16);
                out.put_slice(nal);
            }
        }
        out.freeze()
    }

    /// Builds a record from parameter sets (NAL units with headers, without
    /// start codes), taking the profile, format and timing fields from the
    /// first SPS. The arrays are VPS, SPS, PPS (empty ones left out) with
    /// `array_completeness` set, as for `hvc1`; a muxer writing `hev1`
    /// clears it. `length_size` is 4, the bus format.
    pub fn from_parameter_sets(vps: &[&[u8]], sps: &[&[u8]], pps: &[&[u8]]) -> Result<Self, ProtocolError> {
        let first = sps.first().ok_or_else(|| error(ProtocolErrorKind::InvalidValue, "no SPS"))?;
        let (parsed, extra) = Sps::parse_extra(first)?;
        let mut arrays = Vec::new();
        for (nalus, expected) in [(vps, nal_type::VPS), (sps, nal_type::SPS), (pps, nal_type::PPS)] {
            if nalus.is_empty() {
                continue;
            }
            if nalus.len() > usize::from(u16::MAX) {
                return Err(error(
                    ProtocolErrorKind::TooLarge,
                    format!("{} NAL units of type {expected}", nalus.len()),
                ));
            }
            let mut array = NalArray { completeness: true, nal_type: expected, nalus: Vec::with_capacity(nalus.len()) };
            for nal in nalus {
                if nal_unit_type(nal) != Some(expected) {
                    return Err(error(
                        ProtocolErrorKind::InvalidValue,
                        format!("NAL unit type {:?} in the array of type {expected}", nal_unit_type(nal)),
                    ));
                }
                if nal.len() > usize::from(u16::MAX) {
                    return Err(error(ProtocolErrorKind::TooLarge, format!("parameter set of {} bytes", nal.len())));
                }
                array.nalus.push(Bytes::copy_from_slice(nal));
            }
            arrays.push(array);
        }
        let avg_frame_rate = parsed
            .frame_rate
            .and_then(|(num, den)| u16::try_from((u64::from(num) * 256 + u64::from(den) / 2) / u64::from(den)).ok())
            .unwrap_or(0);
        Ok(Self {
            general_profile_space: parsed.general_profile_space,
            general_tier_flag: parsed.general_tier_flag,
            general_profile_idc: parsed.general_profile_idc,
            general_profile_compatibility_flags: parsed.general_profile_compatibility_flags,
            general_constraint_indicator_flags: parsed.general_constraint_indicator_flags,
            general_level_idc: parsed.general_level_idc,
            chroma_format_idc: parsed.chroma_format_idc as u8,
            bit_depth_luma: parsed.bit_depth_luma,
            bit_depth_chroma: parsed.bit_depth_chroma,
            avg_frame_rate,
            num_temporal_layers: extra.max_sub_layers_minus1 + 1,
            temporal_id_nested: extra.temporal_id_nesting,
            length_size: 4,
            arrays,
        })
    }

    /// Parses the first SPS of the record.
    pub fn first_sps(&self) -> Result<Sps, ProtocolError> {
        let sps =
            self.arrays.iter().filter(|a| a.nal_type == nal_type::SPS).flat_map(|a| &a.nalus).next().ok_or_else(
                || error(ProtocolErrorKind::InvalidValue, "no SPS in the HEVCDecoderConfigurationRecord"),
            )?;
        Sps::parse(sps)
    }

    /// The VPS, SPS and PPS NAL units in array order (SEI arrays are
    /// skipped), e.g. to put in front of a keyframe in Annex B output.
    pub fn parameter_sets(&self) -> impl Iterator<Item = &Bytes> {
        self.arrays
            .iter()
            .filter(|a| matches!(a.nal_type, nal_type::VPS | nal_type::SPS | nal_type::PPS))
            .flat_map(|a| &a.nalus)
    }
}

/// Fuzz entry point: the parsers return instead of panicking, and a parsed
/// record survives a serialization round trip.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let _ = Sps::parse(data);
    if let Ok(config) = HevcConfig::parse(data) {
        let again = HevcConfig::parse(&config.to_bytes());
        assert_eq!(again.as_ref(), Ok(&config), "hvcC round trip");
        let _ = config.first_sps();
        let _ = config.parameter_sets().count();
    }
    let _ = is_keyframe(data, 4);
    let _ = is_keyframe(data, 2);
    let _ = is_keyframe_annexb(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits::BitWriter;
    use proptest::prelude::*;

    const VPS: [u8; 24] = [
        0x40, 0x01, 0x0c, 0x01, 0xff, 0xff, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00,
        0x03, 0x00, 0x1e, 0x95, 0x90, 0x09,
    ];
    const SPS: [u8; 41] = [
        0x42, 0x01, 0x01, 0x01, 0x60, 0x00, 0x00, 0x03, 0x00, 0x90, 0x00, 0x00, 0x03, 0x00, 0x00, 0x03, 0x00, 0x1e,
        0xa0, 0x14, 0x20, 0x79, 0x65, 0x95, 0x92, 0x49, 0x32, 0xbc, 0x05, 0xa0, 0x20, 0x00, 0x00, 0x03, 0x00, 0x20,
        0x00, 0x00, 0x03, 0x03, 0x21,
    ];
    const PPS: [u8; 7] = [0x44, 0x01, 0xc1, 0x72, 0xb4, 0x62, 0x40];

    #[test]
    fn x265_sps() {
        let sps = Sps::parse(&SPS).unwrap();
        assert_eq!(
            sps,
            Sps {
                general_profile_space: 0,
                general_tier_flag: false,
                general_profile_idc: 1,
                general_profile_compatibility_flags: 0x6000_0000,
                general_constraint_indicator_flags: 0x9000_0000_0000,
                general_level_idc: 30,
                chroma_format_idc: 1,
                bit_depth_luma: 8,
                bit_depth_chroma: 8,
                width: 160,
                height: 120,
                frame_rate: Some((25, 1)),
            }
        );
    }

    #[test]
    fn wrong_types_and_truncation_are_errors() {
        assert_eq!(Sps::parse(&PPS).unwrap_err().kind, ProtocolErrorKind::InvalidValue);
        assert_eq!(Sps::parse(&[0x42]).unwrap_err().kind, ProtocolErrorKind::Truncated);
        // Cut inside the mandatory part: an error.
        assert!(Sps::parse(&SPS[..20]).is_err());
        // Cut inside the VUI: the SPS is still good, only the frame rate is lost.
        let cut = Sps::parse(&SPS[..SPS.len() - 4]).unwrap();
        assert_eq!((cut.width, cut.frame_rate), (160, None));
        let err = HevcConfig::from_parameter_sets(&[&SPS], &[&SPS], &[]).unwrap_err();
        assert_eq!(err.kind, ProtocolErrorKind::InvalidValue);
        assert!(HevcConfig::from_parameter_sets(&[], &[], &[&PPS]).is_err());
    }

    /// An SPS built field by field: 4:2:2, 10-bit, a conformance window, two
    /// sub-layers, scaling lists, inter-predicted reference picture sets,
    /// long-term pictures and VUI timing at 30000/1001.
    fn built_sps() -> Vec<u8> {
        let mut w = BitWriter::default();
        w.write_bits(0x4201, 16);
        w.write_bits(0, 4); // vps id
        w.write_bits(1, 3); // max_sub_layers_minus1
        w.write_flag(true);
        // profile_tier_level
        w.write_bits(0, 2);
        w.write_flag(true); // High tier
        w.write_bits(4, 5); // RExt
        w.write_bits(0x0800_0000, 32);
        w.write_bits(0xabcd_ef01_2345, 48);
        w.write_bits(123, 8);
        w.write_flag(true); // sub_layer_profile_present_flag[0]
        w.write_flag(true); // sub_layer_level_present_flag[0]
        w.write_bits(0, 2 * 7);
        w.write_bits(0x55, 64); // sub-layer profile: 88 bits
        w.write_bits(0x55, 24);
        w.write_bits(0x5a, 8);
        w.write_ue(3); // sps id
        w.write_ue(2); // chroma 4:2:2
        w.write_ue(1920);
        w.write_ue(1088);
        w.write_flag(true); // conformance window
        for offset in [1, 2, 3, 5] {
            w.write_ue(offset);
        }
        w.write_ue(2);
        w.write_ue(2);
        w.write_ue(4); // log2_max_pic_order_cnt_lsb_minus4
        w.write_flag(true);
        for _ in 0..2 {
            w.write_ue(4);
            w.write_ue(2);
            w.write_ue(0);
        }
        for v in [0, 3, 0, 3, 1, 1] {
            w.write_ue(v);
        }
        w.write_flag(true); // scaling_list_enabled_flag
        w.write_flag(true); // sps_scaling_list_data_present_flag
        for size_id in 0..4 {
            for _ in (0..6).step_by(if size_id == 3 { 3 } else { 1 }) {
                w.write_flag(true);
                if size_id > 1 {
                    w.write_ue(0);
                }
                for _ in 0..64.min(1 << (4 + (size_id << 1))) {
                    w.write_ue(1);
                }
            }
        }
        w.write_bits(0b11, 2);
        w.write_flag(true); // pcm
        w.write_bits(0x77, 8);
        w.write_ue(0);
        w.write_ue(1);
        w.write_flag(false);
        w.write_ue(3); // num_short_term_ref_pic_sets
        // Set 0: two negative pictures, one positive.
        w.write_ue(2);
        w.write_ue(1);
        for _ in 0..3 {
            w.write_ue(0);
            w.write_flag(true);
        }
        // Set 1, predicted from set 0 (3 + 1 entries): keeps 3.
        w.write_flag(true);
        w.write_flag(false);
        w.write_ue(0);
        for (used, use_delta) in [(true, None), (false, Some(true)), (false, Some(false)), (true, None)] {
            w.write_flag(used);
            if let Some(d) = use_delta {
                w.write_flag(d);
            }
        }
        // Set 2, predicted from set 1 (3 + 1 entries).
        w.write_flag(true);
        w.write_flag(true);
        w.write_ue(1);
        for _ in 0..4 {
            w.write_flag(true);
        }
        w.write_flag(true); // long_term_ref_pics_present_flag
        w.write_ue(2);
        w.write_bits(0b1_0000_0001, 9);
        w.write_bits(0b0_0000_0010, 9);
        w.write_bits(0b11, 2);
        w.write_flag(true); // vui
        w.write_flag(true);
        w.write_bits(255, 8);
        w.write_bits(0x0001_0001, 32);
        w.write_flag(true);
        w.write_flag(false);
        w.write_flag(true);
        w.write_bits(0b1011, 4); // video_format 5, full range
        w.write_flag(true);
        w.write_bits(0x01_01_01, 24);
        w.write_flag(true);
        w.write_ue(1);
        w.write_ue(1);
        w.write_bits(0, 3);
        w.write_flag(true); // default display window
        for _ in 0..4 {
            w.write_ue(8);
        }
        w.write_flag(true); // timing
        w.write_bits(1001, 32);
        w.write_bits(30000, 32);
        w.write_flag(false);
        w.write_flag(false);
        w.write_flag(true); // rbsp stop bit
        let rbsp = w.finish();
        // Emulation prevention, as an encoder would add it.
        let mut nal = Vec::new();
        let mut zeros = 0;
        for &b in &rbsp {
            if zeros >= 2 && b <= 3 && nal.len() > 2 {
                nal.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            nal.push(b);
        }
        nal
    }

    #[test]
    fn built_sps_parses_every_field() {
        let nal = built_sps();
        let sps = Sps::parse(&nal).unwrap();
        assert!(sps.general_tier_flag);
        assert_eq!(sps.general_profile_idc, 4);
        assert_eq!(sps.general_profile_compatibility_flags, 0x0800_0000);
        assert_eq!(sps.general_constraint_indicator_flags, 0xabcd_ef01_2345);
        assert_eq!(sps.general_level_idc, 123);
        assert_eq!(sps.chroma_format_idc, 2);
        assert_eq!((sps.bit_depth_luma, sps.bit_depth_chroma), (10, 10));
        // 4:2:2 crops 2 luma columns per unit and 1 row per unit.
        assert_eq!((sps.width, sps.height), (1920 - 2 * 3, 1088 - 8));
        assert_eq!(sps.frame_rate, Some((30000, 1001)));
        let config = HevcConfig::from_parameter_sets(&[&VPS], &[&nal], &[&PPS]).unwrap();
        assert_eq!((config.num_temporal_layers, config.temporal_id_nested), (2, true));
        assert_eq!(config.avg_frame_rate, 7672); // 30000 * 256 / 1001, rounded
        assert_eq!(config.chroma_format_idc, 2);
    }

    #[test]
    fn record_matches_ffmpeg_layout() {
        let config = HevcConfig::from_parameter_sets(&[&VPS], &[&SPS], &[&PPS]).unwrap();
        let bytes = config.to_bytes();
        assert_eq!(
            &bytes[..23],
            &[1, 0x01, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 30, 0xf0, 0x00, 0xfc, 0xfd, 0xf8, 0xf8, 0x19, 0x00, 0x0f, 3]
        );
        assert_eq!(&bytes[23..28], &[0x80 | 32, 0, 1, 0, 24]);
        assert_eq!(bytes.len(), 23 + 3 * 5 + VPS.len() + SPS.len() + PPS.len());
        let shared = HevcConfig::parse_bytes(&bytes).unwrap();
        assert_eq!(shared, config);
        assert_eq!(shared.parameter_sets().map(|b| b.len()).collect::<Vec<_>>(), [24, 41, 7]);
    }

    #[test]
    fn record_errors() {
        let bytes = HevcConfig::from_parameter_sets(&[&VPS], &[&SPS], &[&PPS]).unwrap().to_bytes();
        for cut in 0..bytes.len() {
            assert!(HevcConfig::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut v0 = bytes.to_vec();
        v0[0] = 0;
        assert_eq!(HevcConfig::parse(&v0).unwrap_err().kind, ProtocolErrorKind::Unsupported);
        let mut three = bytes.to_vec();
        three[21] = 0x0e;
        assert_eq!(HevcConfig::parse(&three).unwrap_err().kind, ProtocolErrorKind::InvalidValue);
        let no_sps = HevcConfig { arrays: vec![], ..HevcConfig::parse(&bytes).unwrap() };
        assert!(no_sps.first_sps().is_err());
    }

    #[test]
    fn keyframes() {
        let mut au = Vec::new();
        for nal in [&[0x46, 0x01, 0x50][..], &VPS, &[0x26, 0x01, 0xaf]] {
            au.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            au.extend_from_slice(nal);
        }
        assert!(is_keyframe(&au, 4));
        assert!(!is_keyframe(&au[..au.len() - 5], 4));
        let trail = [0, 0, 0, 3, 0x02, 0x01, 0xd0];
        assert!(!is_keyframe(&trail, 4));
        assert!(is_keyframe(&[0, 3, 0x2a, 0x01, 0x00], 2)); // CRA
        assert!(!is_keyframe_annexb(&[0, 0, 1, 0x40, 0x01, 0, 0, 1, 0x02, 0x01]));
        assert!(is_keyframe_annexb(&[0, 0, 1, 0x40, 0x01, 0, 0, 1, 0x20, 0x01])); // BLA_W_LP
    }

    fn arb_config() -> impl Strategy<Value = HevcConfig> {
        let array = (any::<bool>(), 0u8..64, prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..4))
            .prop_map(|(completeness, nal_type, nalus)| NalArray {
                completeness,
                nal_type,
                nalus: nalus.into_iter().map(Bytes::from).collect(),
            });
        (
            (0u8..4, any::<bool>(), 0u8..32, any::<u32>(), 0u64..1 << 48, any::<u8>()),
            (0u8..4, 8u8..16, 8u8..16, any::<u16>(), 0u8..8, any::<bool>(), prop_oneof![Just(1u8), Just(2), Just(4)]),
            prop::collection::vec(array, 0..5),
        )
            .prop_map(
                |(
                    (space, tier, profile, compat, constraint, level),
                    (chroma, bdl, bdc, fr, tl, nested, ls),
                    arrays,
                )| {
                    HevcConfig {
                        general_profile_space: space,
                        general_tier_flag: tier,
                        general_profile_idc: profile,
                        general_profile_compatibility_flags: compat,
                        general_constraint_indicator_flags: constraint,
                        general_level_idc: level,
                        chroma_format_idc: chroma,
                        bit_depth_luma: bdl,
                        bit_depth_chroma: bdc,
                        avg_frame_rate: fr,
                        num_temporal_layers: tl,
                        temporal_id_nested: nested,
                        length_size: ls,
                        arrays,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn record_round_trip(config in arb_config()) {
            let bytes = config.to_bytes();
            prop_assert_eq!(HevcConfig::parse(&bytes).unwrap(), config.clone());
            prop_assert_eq!(HevcConfig::parse_bytes(&bytes).unwrap(), config);
        }

        #[test]
        fn parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
            fuzz(&data);
        }

        #[test]
        fn sps_with_corrupted_bytes_never_panics(pos in 0usize..200, value in any::<u8>(), cut in 0usize..200) {
            let mut nal = built_sps();
            let pos = 2 + pos % (nal.len() - 2);
            nal[pos] = value;
            nal.truncate(cut.max(2));
            fuzz(&nal);
        }
    }
}
