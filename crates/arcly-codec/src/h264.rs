//! H.264 / AVC: NAL unit types, sequence parameter sets, the
//! AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3) and keyframe
//! detection.
//!
//! On the bus an H.264 frame is a sequence of NAL units with 4-byte
//! big-endian lengths, and the `CONFIG` frame is an [`AvcConfig`] record.

use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::{BufMut, Bytes, BytesMut};

use crate::annexb::{split_annexb, split_length_prefixed};
use crate::bits::{BitReader, remove_emulation_prevention};

const PROTOCOL: &str = "h264";

fn invalid(context: impl Into<String>) -> ProtocolError {
    ProtocolError::new(PROTOCOL, ProtocolErrorKind::InvalidValue, context)
}

fn truncated(context: impl Into<String>) -> ProtocolError {
    ProtocolError::new(PROTOCOL, ProtocolErrorKind::Truncated, context)
}

/// NAL unit types (ITU-T H.264 Table 7-1) that muxers care about.
pub mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
}

/// The SEI payload type of a recovery point (H.264 D.1.8), which marks a
/// random access point in streams without IDR pictures (intra refresh,
/// open GOP).
const SEI_RECOVERY_POINT: u32 = 6;

/// The `nal_unit_type` of a NAL unit (low 5 bits of its first byte), or
/// `None` for an empty slice.
///
/// ```
/// use arcly_codec::h264::{nal_type, nal_unit_type};
/// assert_eq!(nal_unit_type(&[0x65, 0x88]), Some(nal_type::IDR));
/// assert_eq!(nal_unit_type(&[]), None);
/// ```
pub fn nal_unit_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// Profiles whose SPS carries `chroma_format_idc`, bit depths and scaling
/// lists (H.264 §7.3.2.1.1).
fn sps_has_chroma_info(profile_idc: u8) -> bool {
    matches!(profile_idc, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135)
}

/// Profiles whose AVCDecoderConfigurationRecord has the chroma/bit depth
/// extension (ISO/IEC 14496-15 §5.3.3.1.2).
fn record_has_high_ext(profile: u8) -> bool {
    matches!(profile, 100 | 110 | 122 | 144)
}

/// The fields of a sequence parameter set that muxers and players need.
///
/// ```
/// use arcly_codec::h264::Sps;
/// // The SPS x264 writes for 160x120 High profile at 25 fps.
/// let nal = [
///     0x67, 0x64, 0x00, 0x0b, 0xac, 0xd9, 0x42, 0x84, 0x7e, 0x5c, 0x04, 0x40, 0x00, 0x00, 0x03,
///     0x00, 0x40, 0x00, 0x00, 0x0c, 0x83, 0xc5, 0x0a, 0x65, 0x80,
/// ];
/// let sps = Sps::parse(&nal).unwrap();
/// assert_eq!((sps.profile_idc, sps.level_idc), (100, 11));
/// assert_eq!((sps.width, sps.height), (160, 120));
/// assert_eq!(sps.frame_rate, Some((25, 1)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sps {
    /// `profile_idc` (66 Baseline, 77 Main, 100 High, ...).
    pub profile_idc: u8,
    /// The byte after `profile_idc`: `constraint_set0_flag` in the top bit
    /// through `constraint_set5_flag`, then two reserved bits.
    pub constraint_flags: u8,
    /// `level_idc` (level × 10, e.g. 31 for 3.1).
    pub level_idc: u8,
    /// `seq_parameter_set_id` (0–31).
    pub id: u32,
    /// `chroma_format_idc`: 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u32,
    /// Luma bit depth (8–14).
    pub bit_depth_luma: u8,
    /// Chroma bit depth (8–14).
    pub bit_depth_chroma: u8,
    /// Width in pixels after cropping.
    pub width: u32,
    /// Height in pixels after cropping (frame height, even for field
    /// coding).
    pub height: u32,
    /// Frames per second as `(numerator, denominator)` reduced to lowest
    /// terms, from the VUI timing info: `time_scale / (2 ×
    /// num_units_in_tick)`, so 25 fps is `(25, 1)` and NTSC is
    /// `(30000, 1001)`. `None` without timing info, when a timing field is
    /// 0, or when the reduced fraction does not fit in `u32`. This is the
    /// nominal rate even when `fixed_frame_rate_flag` is 0.
    pub frame_rate: Option<(u32, u32)>,
    /// `frame_mbs_only_flag`: false when the stream may contain fields.
    pub frame_mbs_only: bool,
}

impl Sps {
    /// Parses an SPS NAL unit, including its 1-byte NAL header, with
    /// emulation-prevention bytes still in place.
    ///
    /// Fields after the VUI timing info are not read, so an SPS truncated
    /// after them still parses.
    pub fn parse(nal: &[u8]) -> Result<Sps, ProtocolError> {
        match nal_unit_type(nal) {
            Some(nal_type::SPS) => {}
            Some(t) => return Err(invalid(format!("expected an SPS NAL unit (type 7), got type {t}"))),
            None => return Err(truncated("empty SPS NAL unit")),
        }
        let rbsp = remove_emulation_prevention(nal.get(1..).unwrap_or_default());
        let mut r = BitReader::new(PROTOCOL, &rbsp);
        let profile_idc = r.read_bits(8)? as u8;
        let constraint_flags = r.read_bits(8)? as u8;
        let level_idc = r.read_bits(8)? as u8;
        let id = r.read_ue()?;
        if id > 31 {
            return Err(invalid(format!("seq_parameter_set_id {id} > 31")));
        }
        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        let mut bit_depth_luma = 8;
        let mut bit_depth_chroma = 8;
        if sps_has_chroma_info(profile_idc) {
            chroma_format_idc = r.read_ue()?;
            if chroma_format_idc > 3 {
                return Err(invalid(format!("chroma_format_idc {chroma_format_idc} > 3")));
            }
            if chroma_format_idc == 3 {
                separate_colour_plane = r.read_flag()?;
            }
            bit_depth_luma = read_bit_depth(&mut r, "luma")?;
            bit_depth_chroma = read_bit_depth(&mut r, "chroma")?;
            let _qpprime_y_zero_transform_bypass = r.read_flag()?;
            if r.read_flag()? {
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.read_flag()? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }
        let log2_max_frame_num_minus4 = r.read_ue()?;
        if log2_max_frame_num_minus4 > 12 {
            return Err(invalid(format!("log2_max_frame_num_minus4 {log2_max_frame_num_minus4} > 12")));
        }
        match r.read_ue()? {
            0 => {
                let log2_max_poc_lsb_minus4 = r.read_ue()?;
                if log2_max_poc_lsb_minus4 > 12 {
                    return Err(invalid(format!("log2_max_pic_order_cnt_lsb_minus4 {log2_max_poc_lsb_minus4} > 12")));
                }
            }
            1 => {
                let _delta_pic_order_always_zero = r.read_flag()?;
                let _offset_for_non_ref_pic = r.read_se()?;
                let _offset_for_top_to_bottom_field = r.read_se()?;
                let cycle = r.read_ue()?;
                if cycle > 255 {
                    return Err(invalid(format!("num_ref_frames_in_pic_order_cnt_cycle {cycle} > 255")));
                }
                for _ in 0..cycle {
                    let _offset_for_ref_frame = r.read_se()?;
                }
            }
            2 => {}
            t => return Err(invalid(format!("pic_order_cnt_type {t} > 2"))),
        }
        let _max_num_ref_frames = r.read_ue()?;
        let _gaps_in_frame_num_allowed = r.read_flag()?;
        let width_mbs = u64::from(r.read_ue()?) + 1;
        let height_map_units = u64::from(r.read_ue()?) + 1;
        let frame_mbs_only = r.read_flag()?;
        if !frame_mbs_only {
            let _mb_adaptive_frame_field = r.read_flag()?;
        }
        let _direct_8x8_inference = r.read_flag()?;
        let field_factor = if frame_mbs_only { 1 } else { 2 };
        let coded_width = width_mbs * 16;
        let coded_height = height_map_units * 16 * field_factor;
        let (mut crop_x, mut crop_y) = (0u64, 0u64);
        if r.read_flag()? {
            let (left, right, top, bottom) = (r.read_ue()?, r.read_ue()?, r.read_ue()?, r.read_ue()?);
            // Crop offsets count in chroma samples (Table 6-1), and in
            // field lines when fields are possible (equations 7-19..7-22).
            let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
            let (unit_x, unit_y) = match chroma_array_type {
                0 => (1, field_factor),
                1 => (2, 2 * field_factor),
                2 => (2, field_factor),
                _ => (1, field_factor),
            };
            crop_x = unit_x * (u64::from(left) + u64::from(right));
            crop_y = unit_y * (u64::from(top) + u64::from(bottom));
        }
        let width = cropped(coded_width, crop_x, "width")?;
        let height = cropped(coded_height, crop_y, "height")?;
        let frame_rate = if r.read_flag()? { read_vui_frame_rate(&mut r)? } else { None };
        Ok(Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            id,
            chroma_format_idc,
            bit_depth_luma,
            bit_depth_chroma,
            width,
            height,
            frame_rate,
            frame_mbs_only,
        })
    }
}

fn read_bit_depth(r: &mut BitReader<'_>, what: &str) -> Result<u8, ProtocolError> {
    let minus8 = r.read_ue()?;
    if minus8 > 6 {
        return Err(invalid(format!("bit_depth_{what}_minus8 {minus8} > 6")));
    }
    Ok(minus8 as u8 + 8)
}

/// Skips a `scaling_list()` (H.264 §7.3.2.1.1.1): the deltas must be read
/// to know where it ends.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), ProtocolError> {
    let (mut last, mut next) = (8i32, 8i32);
    for _ in 0..size {
        if next != 0 {
            let delta = r.read_se()?;
            if !(-128..=127).contains(&delta) {
                return Err(invalid(format!("delta_scale {delta} outside -128..=127")));
            }
            next = (last + delta + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

fn cropped(coded: u64, crop: u64, what: &str) -> Result<u32, ProtocolError> {
    if crop >= coded {
        return Err(invalid(format!("cropping {crop} removes the whole coded {what} {coded}")));
    }
    u32::try_from(coded - crop).map_err(|_| invalid(format!("{what} {} too large", coded - crop)))
}

/// Reads the VUI up to and including the timing info (H.264 E.1.1).
fn read_vui_frame_rate(r: &mut BitReader<'_>) -> Result<Option<(u32, u32)>, ProtocolError> {
    if r.read_flag()? {
        const EXTENDED_SAR: u64 = 255;
        if r.read_bits(8)? == EXTENDED_SAR {
            r.skip(32)?;
        }
    }
    if r.read_flag()? {
        r.skip(1)?; // overscan_appropriate_flag
    }
    if r.read_flag()? {
        r.skip(4)?; // video_format, video_full_range_flag
        if r.read_flag()? {
            r.skip(24)?; // colour_primaries, transfer, matrix
        }
    }
    if r.read_flag()? {
        r.read_ue()?;
        r.read_ue()?;
    }
    if !r.read_flag()? {
        return Ok(None);
    }
    let num_units_in_tick = u64::from(r.read_u32(32)?);
    let time_scale = u64::from(r.read_u32(32)?);
    if num_units_in_tick == 0 || time_scale == 0 {
        return Ok(None);
    }
    // A frame is two field ticks (equation E-7 with the usual
    // DeltaTfiDivisor of 2).
    let (num, den) = (time_scale, 2 * num_units_in_tick);
    let g = gcd(num, den);
    Ok(u32::try_from(num / g).ok().zip(u32::try_from(den / g).ok()))
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The first Exp-Golomb fields of a parameter set. They sit at the start,
/// so only a short prefix is unescaped.
fn leading_ue_fields<const N: usize>(nal: &[u8], expected: u8, what: &str) -> Result<[u32; N], ProtocolError> {
    match nal_unit_type(nal) {
        Some(t) if t == expected => {}
        Some(t) => return Err(invalid(format!("expected a {what} NAL unit (type {expected}), got type {t}"))),
        None => return Err(truncated(format!("empty {what} NAL unit"))),
    }
    // Two 32-bit Exp-Golomb codes need at most 17 bytes, plus room for
    // emulation-prevention bytes.
    let prefix = nal.get(1..nal.len().min(32)).unwrap_or_default();
    let rbsp = remove_emulation_prevention(prefix);
    let mut r = BitReader::new(PROTOCOL, &rbsp);
    let mut out = [0; N];
    for v in &mut out {
        *v = r.read_ue()?;
    }
    Ok(out)
}

/// The `pic_parameter_set_id` of a PPS NAL unit (with its NAL header).
///
/// ```
/// use arcly_codec::h264::pps_id;
/// assert_eq!(pps_id(&[0x68, 0xef, 0x8f, 0xcb]).unwrap(), 0);
/// assert_eq!(pps_id(&[0x68, 0x24]).unwrap(), 3); // "00100", then sps id "1"
/// assert!(pps_id(&[0x67, 0x80]).is_err()); // not a PPS
/// ```
pub fn pps_id(nal: &[u8]) -> Result<u32, ProtocolError> {
    pps_ids(nal).map(|(pps, _)| pps)
}

/// The `(pic_parameter_set_id, seq_parameter_set_id)` of a PPS NAL unit:
/// which SPS it refers to.
///
/// ```
/// use arcly_codec::h264::pps_ids;
/// assert_eq!(pps_ids(&[0x68, 0x22]).unwrap(), (3, 1)); // "00100" "010"
/// ```
pub fn pps_ids(nal: &[u8]) -> Result<(u32, u32), ProtocolError> {
    let [pps, sps] = leading_ue_fields::<2>(nal, nal_type::PPS, "PPS")?;
    if pps > 255 {
        return Err(invalid(format!("pic_parameter_set_id {pps} > 255")));
    }
    if sps > 31 {
        return Err(invalid(format!("seq_parameter_set_id {sps} > 31")));
    }
    Ok((pps, sps))
}

/// The `seq_parameter_set_id` of an SPS NAL unit, without parsing the rest.
///
/// ```
/// use arcly_codec::h264::sps_id;
/// assert_eq!(sps_id(&[0x67, 0x64, 0x00, 0x0b, 0xac]).unwrap(), 0);
/// ```
pub fn sps_id(nal: &[u8]) -> Result<u32, ProtocolError> {
    match nal_unit_type(nal) {
        Some(nal_type::SPS) => {}
        Some(t) => return Err(invalid(format!("expected an SPS NAL unit (type 7), got type {t}"))),
        None => return Err(truncated("empty SPS NAL unit")),
    }
    let rbsp = remove_emulation_prevention(nal.get(1..nal.len().min(32)).unwrap_or_default());
    let mut r = BitReader::new(PROTOCOL, &rbsp);
    r.skip(24)?;
    let id = r.read_ue()?;
    if id > 31 {
        return Err(invalid(format!("seq_parameter_set_id {id} > 31")));
    }
    Ok(id)
}

/// The high-profile part of an AVCDecoderConfigurationRecord (profiles
/// 100, 110, 122 and 144).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcHighExt {
    /// `chroma_format` (0–3, as `chroma_format_idc`).
    pub chroma_format: u8,
    /// Luma bit depth in bits (8–15; the record stores it minus 8).
    pub bit_depth_luma: u8,
    /// Chroma bit depth in bits (8–15; the record stores it minus 8).
    pub bit_depth_chroma: u8,
    /// Sequence parameter set extension NAL units (type 13).
    pub sps_ext: Vec<Bytes>,
}

/// An AVCDecoderConfigurationRecord (`avcC`, ISO/IEC 14496-15 §5.3.3.1):
/// the `CONFIG` payload of H.264 on the bus.
///
/// ```
/// use arcly_codec::h264::AvcConfig;
/// // x264's parameter sets for 640x360 Constrained Baseline at 30 fps.
/// let sps = [
///     0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01,
///     0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
/// ];
/// let pps = [0x68, 0xcb, 0x83, 0xcb, 0x20];
/// let config = AvcConfig::from_parameter_sets(&[&sps], &[&pps]).unwrap();
/// assert_eq!((config.profile, config.compatibility, config.level, config.length_size), (66, 0xc0, 30, 4));
/// assert_eq!(config.high, None);
/// let bytes = config.to_bytes();
/// assert_eq!(AvcConfig::parse(&bytes).unwrap(), config);
/// let sps = config.first_sps().unwrap();
/// assert_eq!((sps.width, sps.height, sps.frame_rate), (640, 360, Some((30, 1))));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// `AVCProfileIndication` (the SPS `profile_idc`).
    pub profile: u8,
    /// `profile_compatibility` (the SPS constraint flags byte).
    pub compatibility: u8,
    /// `AVCLevelIndication` (the SPS `level_idc`).
    pub level: u8,
    /// Bytes in each NAL unit length prefix: 1, 2 or 4.
    pub length_size: u8,
    /// Sequence parameter set NAL units, with their NAL headers.
    pub sps: Vec<Bytes>,
    /// Picture parameter set NAL units, with their NAL headers.
    pub pps: Vec<Bytes>,
    /// The chroma format / bit depth extension, present for profiles 100,
    /// 110, 122 and 144 unless the record omits it (older muxers do).
    pub high: Option<AvcHighExt>,
}

/// Reads `count` 16-bit-length-prefixed NAL units starting at `*pos`.
fn read_nal_list(record: &Bytes, pos: &mut usize, count: usize, what: &str) -> Result<Vec<Bytes>, ProtocolError> {
    // Each entry takes at least 2 bytes, so `count` is bounded by the input
    // (and by 255 anyway).
    let mut out = Vec::with_capacity(count.min(record.len().saturating_sub(*pos) / 2));
    for i in 0..count {
        let start = *pos;
        let len = record
            .get(start..start + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .ok_or_else(|| truncated(format!("{what} {i} length missing")).at(start as u64))?;
        let end = start + 2 + len;
        if end > record.len() {
            return Err(truncated(format!("{what} {i} of {len} bytes runs past the end")).at(start as u64));
        }
        out.push(record.slice(start + 2..end));
        *pos = end;
    }
    Ok(out)
}

fn byte_at(record: &[u8], pos: usize, what: &str) -> Result<u8, ProtocolError> {
    record.get(pos).copied().ok_or_else(|| truncated(format!("record ends before {what}")).at(pos as u64))
}

impl AvcConfig {
    /// Parses a record, copying it once into shared [`Bytes`]; see
    /// [`AvcConfig::parse_bytes`] to slice an existing buffer instead.
    ///
    /// A record of a high profile that ends right after the picture
    /// parameter sets gives `high: None`. Bytes after the record are
    /// ignored.
    pub fn parse(record: &[u8]) -> Result<AvcConfig, ProtocolError> {
        Self::parse_bytes(&Bytes::copy_from_slice(record))
    }

    /// Parses a record; the parameter sets are slices of `record`.
    ///
    /// ```
    /// use arcly_codec::h264::AvcConfig;
    /// let record = bytes::Bytes::from_static(&[1, 66, 0xc0, 30, 0xff, 0xe1, 0, 2, 0x67, 0x42, 1, 0, 1, 0x68]);
    /// let config = AvcConfig::parse_bytes(&record).unwrap();
    /// assert_eq!(&config.sps[0][..], &[0x67, 0x42]);
    /// assert_eq!(&config.pps[0][..], &[0x68]);
    /// ```
    pub fn parse_bytes(record: &Bytes) -> Result<AvcConfig, ProtocolError> {
        let header = record
            .get(..6)
            .ok_or_else(|| truncated(format!("AVCDecoderConfigurationRecord of {} bytes < 6", record.len())))?;
        if header[0] != 1 {
            return Err(invalid(format!("configurationVersion {} != 1", header[0])).at(0));
        }
        let (profile, compatibility, level) = (header[1], header[2], header[3]);
        let length_size = (header[4] & 0x03) + 1;
        if length_size == 3 {
            return Err(invalid("lengthSizeMinusOne 2 (3-byte lengths) is not allowed").at(4));
        }
        let mut pos = 6;
        let sps = read_nal_list(record, &mut pos, usize::from(header[5] & 0x1f), "SPS")?;
        let pps_count = byte_at(record, pos, "numOfPictureParameterSets")?;
        pos += 1;
        let pps = read_nal_list(record, &mut pos, usize::from(pps_count), "PPS")?;
        let high = if record_has_high_ext(profile) && record.len() >= pos + 4 {
            let chroma_format = record[pos] & 0x03;
            let bit_depth_luma = (record[pos + 1] & 0x07) + 8;
            let bit_depth_chroma = (record[pos + 2] & 0x07) + 8;
            let count = usize::from(record[pos + 3]);
            pos += 4;
            let sps_ext = read_nal_list(record, &mut pos, count, "SPS extension")?;
            Some(AvcHighExt { chroma_format, bit_depth_luma, bit_depth_chroma, sps_ext })
        } else {
            None
        };
        Ok(AvcConfig { profile, compatibility, level, length_size, sps, pps, high })
    }

    /// Serializes the record. Reserved bits are written as ones.
    ///
    /// The format bounds what it can hold: at most 31 SPS, 255 PPS and 255
    /// SPS extensions of at most 65535 bytes each. Sets beyond those limits
    /// are left out ([`AvcConfig::parse`] and
    /// [`AvcConfig::from_parameter_sets`] never produce them). A
    /// `length_size` other than 1, 2 or 4 is written as 4.
    pub fn to_bytes(&self) -> Bytes {
        fn fits(nal: &&Bytes) -> bool {
            nal.len() <= usize::from(u16::MAX)
        }
        fn put_list<'a>(out: &mut BytesMut, sets: impl Iterator<Item = &'a Bytes>) {
            for nal in sets {
                out.put_u16(nal.len() as u16);
                out.put_slice(nal);
            }
        }
        let sps: Vec<&Bytes> = self.sps.iter().filter(fits).take(31).collect();
        let pps: Vec<&Bytes> = self.pps.iter().filter(fits).take(255).collect();
        let size: usize = 16 + sps.iter().chain(&pps).map(|n| n.len() + 2).sum::<usize>();
        let mut out = BytesMut::with_capacity(size);
        let length_size = if matches!(self.length_size, 1 | 2 | 4) { self.length_size } else { 4 };
        out.put_slice(&[1, self.profile, self.compatibility, self.level, 0xfc | (length_size - 1)]);
        out.put_u8(0xe0 | sps.len() as u8);
        put_list(&mut out, sps.into_iter());
        out.put_u8(pps.len() as u8);
        put_list(&mut out, pps.into_iter());
        if let Some(high) = &self.high {
            let ext: Vec<&Bytes> = high.sps_ext.iter().filter(fits).take(255).collect();
            out.put_u8(0xfc | (high.chroma_format & 0x03));
            out.put_u8(0xf8 | (high.bit_depth_luma.wrapping_sub(8) & 0x07));
            out.put_u8(0xf8 | (high.bit_depth_chroma.wrapping_sub(8) & 0x07));
            out.put_u8(ext.len() as u8);
            put_list(&mut out, ext.into_iter());
        }
        out.freeze()
    }

    /// Builds a record from SPS and PPS NAL units (with NAL headers, without
    /// start codes or lengths). Profile, compatibility and level come from
    /// the first SPS, `length_size` is 4 (the bus format), and the high
    /// profile extension is filled from the parsed first SPS when the
    /// profile calls for it.
    pub fn from_parameter_sets(sps: &[&[u8]], pps: &[&[u8]]) -> Result<AvcConfig, ProtocolError> {
        let first = sps.first().ok_or_else(|| invalid("no SPS to build an AVCDecoderConfigurationRecord from"))?;
        let parsed = Sps::parse(first)?;
        if sps.len() > 31 {
            return Err(ProtocolError::new(PROTOCOL, ProtocolErrorKind::TooLarge, format!("{} SPS > 31", sps.len())));
        }
        if pps.len() > 255 {
            return Err(ProtocolError::new(PROTOCOL, ProtocolErrorKind::TooLarge, format!("{} PPS > 255", pps.len())));
        }
        let check = |sets: &[&[u8]], expected: u8, what: &str| -> Result<Vec<Bytes>, ProtocolError> {
            sets.iter()
                .enumerate()
                .map(|(i, nal)| {
                    if nal_unit_type(nal) != Some(expected) {
                        return Err(invalid(format!("{what} {i} is not a NAL unit of type {expected}")));
                    }
                    if nal.len() > usize::from(u16::MAX) {
                        let context = format!("{what} {i} of {} bytes > 65535", nal.len());
                        return Err(ProtocolError::new(PROTOCOL, ProtocolErrorKind::TooLarge, context));
                    }
                    Ok(Bytes::copy_from_slice(nal))
                })
                .collect()
        };
        let high = record_has_high_ext(parsed.profile_idc).then(|| AvcHighExt {
            chroma_format: parsed.chroma_format_idc as u8,
            bit_depth_luma: parsed.bit_depth_luma,
            bit_depth_chroma: parsed.bit_depth_chroma,
            sps_ext: Vec::new(),
        });
        Ok(AvcConfig {
            profile: parsed.profile_idc,
            compatibility: parsed.constraint_flags,
            level: parsed.level_idc,
            length_size: 4,
            sps: check(sps, nal_type::SPS, "SPS")?,
            pps: check(pps, nal_type::PPS, "PPS")?,
            high,
        })
    }

    /// Parses the first SPS of the record.
    pub fn first_sps(&self) -> Result<Sps, ProtocolError> {
        Sps::parse(self.sps.first().ok_or_else(|| invalid("AVCDecoderConfigurationRecord has no SPS"))?)
    }
}

/// Whether a NAL unit makes its access unit a random access point: an IDR
/// slice, or an SEI with a recovery point message.
fn is_random_access_nal(nal: &[u8]) -> bool {
    match nal_unit_type(nal) {
        Some(nal_type::IDR) => true,
        Some(nal_type::SEI) => sei_has_payload_type(nal.get(1..).unwrap_or_default(), SEI_RECOVERY_POINT),
        _ => false,
    }
}

/// The bytes of an RBSP with emulation-prevention bytes skipped, without
/// copying (SEI NAL units can be large, and this runs on every frame).
struct Rbsp<'a> {
    data: std::slice::Iter<'a, u8>,
    zeros: usize,
}

impl Iterator for Rbsp<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let mut b = *self.data.next()?;
        if self.zeros >= 2 && b == 3 {
            self.zeros = 0;
            b = *self.data.next()?;
        }
        self.zeros = if b == 0 { self.zeros + 1 } else { 0 };
        Some(b)
    }
}

/// Walks the `sei_message()`s of an SEI payload (H.264 §7.3.2.3).
fn sei_has_payload_type(payload: &[u8], wanted: u32) -> bool {
    // ff-coded values (§7.3.2.3.1); a u32 cannot overflow before the input
    // ends because each byte adds at most 255.
    fn ff_coded(bytes: &mut Rbsp<'_>) -> Option<u32> {
        let mut value = 0u32;
        loop {
            let b = bytes.next()?;
            value = value.saturating_add(u32::from(b));
            if b != 0xff {
                return Some(value);
            }
        }
    }
    let mut bytes = Rbsp { data: payload.iter(), zeros: 0 };
    loop {
        // 0x80 alone is rbsp_trailing_bits: no more messages.
        let rest = bytes.data.as_slice();
        if rest.is_empty() || rest == [0x80] {
            return false;
        }
        let (Some(payload_type), Some(size)) = (ff_coded(&mut bytes), ff_coded(&mut bytes)) else {
            return false;
        };
        if payload_type == wanted {
            return true;
        }
        for _ in 0..size {
            if bytes.next().is_none() {
                return false;
            }
        }
    }
}

/// Whether a length-prefixed access unit (the bus format when
/// `length_size` is 4) is a keyframe: it contains an IDR slice or a
/// recovery point SEI. NAL units after a malformed length are not looked
/// at.
///
/// ```
/// use arcly_codec::h264::is_keyframe;
/// assert!(is_keyframe(&[0, 0, 0, 2, 0x09, 0xf0, 0, 0, 0, 2, 0x65, 0x88], 4));
/// assert!(!is_keyframe(&[0, 0, 0, 2, 0x41, 0x9a], 4));
/// // SEI with a recovery point message (payload type 6, 2 bytes).
/// assert!(is_keyframe(&[0, 0, 0, 5, 0x06, 0x06, 0x01, 0xc4, 0x80, 0, 0, 0, 2, 0x41, 0x9a], 4));
/// ```
pub fn is_keyframe(access_unit: &[u8], length_size: usize) -> bool {
    split_length_prefixed(access_unit, length_size).map_while(Result::ok).any(is_random_access_nal)
}

/// [`is_keyframe`] for an access unit in Annex B form.
///
/// ```
/// use arcly_codec::h264::is_keyframe_annexb;
/// assert!(is_keyframe_annexb(&[0, 0, 0, 1, 0x09, 0xf0, 0, 0, 1, 0x65, 0x88]));
/// assert!(!is_keyframe_annexb(&[0, 0, 0, 1, 0x41, 0x9a]));
/// ```
pub fn is_keyframe_annexb(access_unit: &[u8]) -> bool {
    split_annexb(access_unit).any(is_random_access_nal)
}

/// Fuzz entry point: parsers must return, and accepted records must
/// round-trip.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let _ = Sps::parse(data);
    let _ = sps_id(data);
    let _ = pps_id(data);
    let _ = pps_ids(data);
    if let Ok(config) = AvcConfig::parse(data) {
        let again = AvcConfig::parse(&config.to_bytes());
        assert_eq!(again.as_ref(), Ok(&config), "AvcConfig round trip");
        let _ = config.first_sps();
    }
    for size in [1, 2, 4] {
        let _ = is_keyframe(data, size);
    }
    let _ = is_keyframe_annexb(data);
    let _ = sei_has_payload_type(data, SEI_RECOVERY_POINT);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits::BitWriter;
    use proptest::prelude::*;

    /// The SPS x264 wrote for testdata/h264.h264.
    const X264_SPS: [u8; 25] = [
        0x67, 0x64, 0x00, 0x0b, 0xac, 0xd9, 0x42, 0x84, 0x7e, 0x5c, 0x04, 0x40, 0x00, 0x00, 0x03, 0x00, 0x40, 0x00,
        0x00, 0x0c, 0x83, 0xc5, 0x0a, 0x65, 0x80,
    ];

    fn write_se(w: &mut BitWriter, v: i32) {
        let code = if v > 0 { 2 * v as u32 - 1 } else { (-2 * i64::from(v)) as u32 };
        w.write_ue(code);
    }

    /// Inserts emulation-prevention bytes, as an encoder does.
    fn add_emulation_prevention(rbsp: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut zeros = 0;
        for &b in rbsp {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            out.push(b);
        }
        out
    }

    /// Parameters of a synthetic SPS.
    #[derive(Clone, Debug)]
    struct SpsSpec {
        profile_idc: u8,
        id: u32,
        chroma_format_idc: u32,
        separate_colour_plane: bool,
        bit_depth_luma: u8,
        bit_depth_chroma: u8,
        scaling_lists: Option<Vec<Option<Vec<i32>>>>,
        poc_type: u32,
        poc_cycle: Vec<i32>,
        width_mbs: u32,
        height_map_units: u32,
        frame_mbs_only: bool,
        crop: Option<[u32; 4]>,
        sar: Option<u8>,
        colour: bool,
        timing: Option<(u32, u32)>,
    }

    impl SpsSpec {
        fn baseline(width_mbs: u32, height_map_units: u32) -> Self {
            SpsSpec {
                profile_idc: 66,
                id: 0,
                chroma_format_idc: 1,
                separate_colour_plane: false,
                bit_depth_luma: 8,
                bit_depth_chroma: 8,
                scaling_lists: None,
                poc_type: 2,
                poc_cycle: Vec::new(),
                width_mbs,
                height_map_units,
                frame_mbs_only: true,
                crop: None,
                sar: None,
                colour: false,
                timing: None,
            }
        }

        fn write(&self) -> Vec<u8> {
            let mut w = BitWriter::default();
            w.write_bits(u64::from(self.profile_idc), 8);
            w.write_bits(0xc0, 8);
            w.write_bits(40, 8);
            w.write_ue(self.id);
            if sps_has_chroma_info(self.profile_idc) {
                w.write_ue(self.chroma_format_idc);
                if self.chroma_format_idc == 3 {
                    w.write_flag(self.separate_colour_plane);
                }
                w.write_ue(u32::from(self.bit_depth_luma - 8));
                w.write_ue(u32::from(self.bit_depth_chroma - 8));
                w.write_flag(false);
                w.write_flag(self.scaling_lists.is_some());
                if let Some(lists) = &self.scaling_lists {
                    for list in lists {
                        w.write_flag(list.is_some());
                        for &d in list.iter().flatten() {
                            write_se(&mut w, d);
                        }
                    }
                }
            }
            w.write_ue(0); // log2_max_frame_num_minus4
            w.write_ue(self.poc_type);
            match self.poc_type {
                0 => w.write_ue(2),
                1 => {
                    w.write_flag(false);
                    write_se(&mut w, -3);
                    write_se(&mut w, 5);
                    w.write_ue(self.poc_cycle.len() as u32);
                    for &o in &self.poc_cycle {
                        write_se(&mut w, o);
                    }
                }
                _ => {}
            }
            w.write_ue(4); // max_num_ref_frames
            w.write_flag(false);
            w.write_ue(self.width_mbs - 1);
            w.write_ue(self.height_map_units - 1);
            w.write_flag(self.frame_mbs_only);
            if !self.frame_mbs_only {
                w.write_flag(true);
            }
            w.write_flag(true);
            w.write_flag(self.crop.is_some());
            for &c in self.crop.iter().flatten() {
                w.write_ue(c);
            }
            let vui = self.sar.is_some() || self.colour || self.timing.is_some();
            w.write_flag(vui);
            if vui {
                w.write_flag(self.sar.is_some());
                if let Some(idc) = self.sar {
                    w.write_bits(u64::from(idc), 8);
                    if idc == 255 {
                        w.write_bits(0x0004_0003, 32);
                    }
                }
                w.write_flag(true); // overscan present
                w.write_flag(false);
                w.write_flag(self.colour);
                if self.colour {
                    w.write_bits(5, 3);
                    w.write_flag(false);
                    w.write_flag(true);
                    w.write_bits(0x010101, 24);
                }
                w.write_flag(true); // chroma loc
                w.write_ue(1);
                w.write_ue(1);
                w.write_flag(self.timing.is_some());
                if let Some((units, scale)) = self.timing {
                    w.write_bits(u64::from(units), 32);
                    w.write_bits(u64::from(scale), 32);
                    w.write_flag(true);
                }
                w.write_flag(false); // nal hrd: fields after timing are never read
            }
            w.write_flag(true); // rbsp_stop_one_bit
            let mut nal = vec![0x67];
            nal.extend(add_emulation_prevention(&w.finish()));
            nal
        }

        /// Width and height after cropping, computed independently of the
        /// parser from H.264 Table 6-1.
        fn expected_size(&self) -> (u32, u32) {
            let frame_height = self.height_map_units * 16 * if self.frame_mbs_only { 1 } else { 2 };
            let [l, r, t, b] = self.crop.unwrap_or_default();
            let chroma = if self.separate_colour_plane { 0 } else { self.chroma_format_idc };
            let (sub_w, sub_h) = match chroma {
                1 => (2, 2),
                2 => (2, 1),
                _ => (1, 1),
            };
            let unit_y = sub_h * if self.frame_mbs_only { 1 } else { 2 };
            (self.width_mbs * 16 - sub_w * (l + r), frame_height - unit_y * (t + b))
        }
    }

    #[test]
    fn x264_sps() {
        let sps = Sps::parse(&X264_SPS).unwrap();
        assert_eq!(
            sps,
            Sps {
                profile_idc: 100,
                constraint_flags: 0,
                level_idc: 11,
                id: 0,
                chroma_format_idc: 1,
                bit_depth_luma: 8,
                bit_depth_chroma: 8,
                width: 160,
                height: 120,
                frame_rate: Some((25, 1)),
                frame_mbs_only: true,
            }
        );
        assert_eq!(sps_id(&X264_SPS).unwrap(), 0);
    }

    #[test]
    fn sps_truncated_anywhere_is_an_error() {
        // The timing info (the last field read) ends in byte 21 of 25.
        for len in 0..21 {
            assert!(Sps::parse(&X264_SPS[..len]).is_err(), "prefix of {len} bytes");
        }
        assert_eq!(Sps::parse(&X264_SPS[..21]), Sps::parse(&X264_SPS));
    }

    #[test]
    fn sps_rejects_other_nal_types() {
        let mut nal = X264_SPS;
        nal[0] = 0x68;
        assert_eq!(Sps::parse(&nal).unwrap_err().kind, ProtocolErrorKind::InvalidValue);
    }

    #[test]
    fn synthetic_1080p_baseline_with_cropping() {
        let mut spec = SpsSpec::baseline(120, 68);
        spec.crop = Some([0, 0, 0, 4]);
        spec.timing = Some((1001, 60000));
        let sps = Sps::parse(&spec.write()).unwrap();
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(sps.frame_rate, Some((30000, 1001)));
        assert_eq!((sps.profile_idc, sps.constraint_flags, sps.level_idc), (66, 0xc0, 40));
    }

    #[test]
    fn synthetic_interlaced_422_high_with_scaling_lists() {
        let mut spec = SpsSpec::baseline(45, 18); // 720x576 interlaced
        spec.profile_idc = 122;
        spec.chroma_format_idc = 2;
        spec.bit_depth_luma = 10;
        spec.bit_depth_chroma = 10;
        spec.frame_mbs_only = false;
        // A list that ends early with a zero next_scale, a full 8x8 list,
        // and absent ones.
        let mut lists = vec![None; 8];
        lists[0] = Some(vec![-8]);
        lists[2] = Some((0..16).map(|i| if i % 2 == 0 { 3 } else { -2 }).collect());
        lists[6] = Some(vec![1; 64]);
        spec.scaling_lists = Some(lists);
        spec.crop = Some([2, 2, 1, 1]);
        spec.poc_type = 1;
        spec.poc_cycle = vec![1, -1, 7];
        spec.sar = Some(255);
        spec.colour = true;
        spec.timing = Some((1, 50));
        let sps = Sps::parse(&spec.write()).unwrap();
        // 4:2:2 crops 2 luma columns per unit, 2 lines per unit with fields.
        assert_eq!((sps.width, sps.height), (720 - 8, 576 - 4));
        assert_eq!((sps.width, sps.height), spec.expected_size());
        assert_eq!((sps.chroma_format_idc, sps.bit_depth_luma, sps.bit_depth_chroma), (2, 10, 10));
        assert!(!sps.frame_mbs_only);
        assert_eq!(sps.frame_rate, Some((25, 1)));
    }

    #[test]
    fn synthetic_444_separate_planes_crop_in_luma_units() {
        let mut spec = SpsSpec::baseline(4, 4);
        spec.profile_idc = 244;
        spec.chroma_format_idc = 3;
        spec.separate_colour_plane = true;
        spec.scaling_lists = Some(vec![Some(vec![-8]); 12]);
        spec.crop = Some([1, 2, 3, 4]);
        spec.poc_type = 0;
        let sps = Sps::parse(&spec.write()).unwrap();
        assert_eq!((sps.width, sps.height), (61, 57));
        assert_eq!(sps.frame_rate, None);
    }

    #[test]
    fn sps_invalid_values() {
        let mut spec = SpsSpec::baseline(2, 2);
        spec.crop = Some([8, 8, 0, 0]); // removes all 32 columns
        assert!(Sps::parse(&spec.write()).is_err());
        let mut spec = SpsSpec::baseline(2, 2);
        spec.poc_type = 3;
        assert!(Sps::parse(&spec.write()).is_err());
        let mut spec = SpsSpec::baseline(2, 2);
        spec.id = 32;
        assert!(Sps::parse(&spec.write()).is_err());
        let mut spec = SpsSpec::baseline(2, 2);
        spec.timing = Some((0, 50)); // no tick: no rate rather than a division by zero
        assert_eq!(Sps::parse(&spec.write()).unwrap().frame_rate, None);
    }

    #[test]
    fn pps_ids_and_errors() {
        assert_eq!(pps_ids(&[0x68, 0xef, 0x8f]).unwrap(), (0, 0));
        let mut w = BitWriter::default();
        w.write_ue(200);
        w.write_ue(31);
        w.write_flag(true);
        let mut nal = vec![0x68];
        nal.extend(w.finish());
        assert_eq!(pps_ids(&nal).unwrap(), (200, 31));
        assert_eq!(pps_id(&nal).unwrap(), 200);
        assert!(pps_id(&[]).is_err());
        assert!(pps_id(&[0x68]).is_err());
        assert!(pps_id(&[0x68, 0, 0, 0, 0, 0]).is_err(), "Exp-Golomb code too long");
    }

    #[test]
    fn avc_config_known_record() {
        // avcC as ffmpeg writes it for testdata/h264.h264.
        let mut record = vec![1, 0x64, 0x00, 0x0b, 0xff, 0xe1, 0x00, 25];
        record.extend_from_slice(&X264_SPS);
        record.extend_from_slice(&[1, 0, 6, 0x68, 0xef, 0x8f, 0xcb, 0x22, 0xc0]);
        record.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0]);
        let config = AvcConfig::parse(&record).unwrap();
        assert_eq!((config.profile, config.compatibility, config.level, config.length_size), (100, 0, 11, 4));
        assert_eq!(config.sps, [Bytes::copy_from_slice(&X264_SPS)]);
        assert_eq!(config.pps.len(), 1);
        assert_eq!(
            config.high,
            Some(AvcHighExt { chroma_format: 1, bit_depth_luma: 8, bit_depth_chroma: 8, sps_ext: vec![] })
        );
        assert_eq!(&config.to_bytes()[..], &record[..]);
        assert_eq!(config.first_sps().unwrap().width, 160);

        // Without the high extension (older muxers).
        let short = &record[..record.len() - 4];
        let config = AvcConfig::parse(short).unwrap();
        assert_eq!(config.high, None);
        assert_eq!(&config.to_bytes()[..], short);
    }

    #[test]
    fn avc_config_errors() {
        assert_eq!(AvcConfig::parse(&[1, 66, 0, 30, 0xff]).unwrap_err().kind, ProtocolErrorKind::Truncated);
        assert!(AvcConfig::parse(&[0, 66, 0, 30, 0xff, 0xe0, 0]).is_err(), "version 0");
        assert!(AvcConfig::parse(&[1, 66, 0, 30, 0xfe, 0xe0, 0]).is_err(), "3-byte lengths");
        assert!(AvcConfig::parse(&[1, 66, 0, 30, 0xff, 0xe1, 0, 5, 0x67]).is_err(), "SPS past the end");
        assert!(AvcConfig::parse(&[1, 66, 0, 30, 0xff, 0xe0]).is_err(), "PPS count missing");
        assert!(AvcConfig::parse(&[1, 66, 0, 30, 0xff, 0xe0, 1, 0]).is_err(), "PPS length cut");
        assert!(AvcConfig::parse(&[1, 100, 0, 30, 0xff, 0xe0, 0, 0xfd, 0xf8, 0xf8, 1, 0, 9]).is_err());
        assert!(AvcConfig::default_for_tests().first_sps().is_err());
        assert!(AvcConfig::from_parameter_sets(&[], &[]).is_err());
        assert!(AvcConfig::from_parameter_sets(&[&X264_SPS], &[&[0x67, 1]]).is_err(), "PPS of the wrong type");
    }

    impl AvcConfig {
        fn default_for_tests() -> Self {
            AvcConfig { profile: 66, compatibility: 0, level: 30, length_size: 4, sps: vec![], pps: vec![], high: None }
        }
    }

    #[test]
    fn from_parameter_sets_fills_high_ext() {
        let pps = [0x68, 0xef, 0x8f, 0xcb];
        let config = AvcConfig::from_parameter_sets(&[&X264_SPS], &[&pps]).unwrap();
        assert_eq!((config.profile, config.compatibility, config.level, config.length_size), (100, 0, 11, 4));
        let high = config.high.clone().unwrap();
        assert_eq!((high.chroma_format, high.bit_depth_luma, high.bit_depth_chroma), (1, 8, 8));
        assert_eq!(AvcConfig::parse(&config.to_bytes()).unwrap(), config);
    }

    #[test]
    fn keyframes() {
        let au = |nals: &[&[u8]]| {
            let mut out = Vec::new();
            for n in nals {
                out.extend_from_slice(&(n.len() as u32).to_be_bytes());
                out.extend_from_slice(n);
            }
            out
        };
        assert!(is_keyframe(&au(&[&[0x09, 0x10], &X264_SPS, &[0x65, 0x88, 0x84]]), 4));
        assert!(!is_keyframe(&au(&[&[0x09, 0x30], &[0x41, 0x9a]]), 4));
        // An SEI with user data (type 5, 3 bytes) then a recovery point.
        assert!(is_keyframe(&au(&[&[0x06, 0x05, 0x03, 1, 2, 3, 0x06, 0x01, 0xc4, 0x80], &[0x01, 0x9a]]), 4));
        // Only user data: not a keyframe.
        assert!(!is_keyframe(&au(&[&[0x06, 0x05, 0x03, 6, 6, 6, 0x80], &[0x01, 0x9a]]), 4));
        // A payload size whose bytes are escaped: 00 00 03 00 is a 0x00 byte.
        assert!(is_keyframe(&au(&[&[0x06, 0x05, 0x02, 0, 0, 3, 0x06, 0x01, 0x00, 0x80]]), 4));
        // 255-extended payload type: 0xff 0x07 is 262, not 6.
        assert!(!is_keyframe(&au(&[&[0x06, 0xff, 0x07, 0x01, 0x00, 0x80]]), 4));
        // 2-byte lengths.
        assert!(is_keyframe(&[0, 2, 0x65, 0x88], 2));
        // A broken length after the IDR still finds it; before it, not.
        assert!(is_keyframe(&[0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 99], 4));
        assert!(!is_keyframe(&[0, 0, 0, 99, 0x65, 0x88], 4));
        assert!(is_keyframe_annexb(&[0, 0, 1, 0x06, 0x06, 0x01, 0xc4, 0x80, 0, 0, 1, 0x01, 0x9a]));
        assert!(!is_keyframe_annexb(&[0x65, 0x88]), "no start code, no NAL units");
    }

    fn scaling_list() -> impl Strategy<Value = Option<Vec<i32>>> {
        prop::option::of(prop::collection::vec(-128i32..=127, 1..=16))
    }

    prop_compose! {
        fn sps_spec()(
            high in any::<bool>(),
            chroma_format_idc in 0u32..=3,
            separate_colour_plane in any::<bool>(),
            bit_depth_luma in 8u8..=14,
            bit_depth_chroma in 8u8..=14,
            lists in prop::option::of(prop::collection::vec(scaling_list(), 12)),
            poc_type in 0u32..=2,
            poc_cycle in prop::collection::vec(-1000i32..1000, 0..8),
            width_mbs in 1u32..=512,
            height_map_units in 1u32..=300,
            frame_mbs_only in any::<bool>(),
            crop in prop::option::of([0u32..4, 0u32..4, 0u32..4, 0u32..4]),
            sar in prop::option::of(prop_oneof![1u8..=16, Just(255u8)]),
            colour in any::<bool>(),
            timing in prop::option::of((1u32..=100_000, 1u32..=1_000_000)),
            id in 0u32..=31,
        ) -> SpsSpec {
            let profile_idc = if high { 100 } else { 77 };
            let chroma_format_idc = if high { chroma_format_idc } else { 1 };
            // Scaling lists whose deltas are in range but with an early zero
            // next_scale cut short, as an encoder would write them.
            let scaling_lists = lists.map(|mut l| {
                l.truncate(if chroma_format_idc == 3 { 12 } else { 8 });
                l.into_iter()
                    .enumerate()
                    .map(|(i, list)| list.map(|d| {
                        let size = if i < 6 { 16 } else { 64 };
                        let (mut last, mut out) = (8i32, Vec::new());
                        for j in 0..size {
                            let delta = d[j % d.len()];
                            out.push(delta);
                            let next = (last + delta + 256) % 256;
                            if next == 0 {
                                break;
                            }
                            last = next;
                        }
                        out
                    }))
                    .collect()
            });
            SpsSpec {
                profile_idc,
                id,
                chroma_format_idc,
                separate_colour_plane: high && chroma_format_idc == 3 && separate_colour_plane,
                bit_depth_luma: if high { bit_depth_luma } else { 8 },
                bit_depth_chroma: if high { bit_depth_chroma } else { 8 },
                scaling_lists: if high { scaling_lists } else { None },
                poc_type,
                poc_cycle,
                width_mbs,
                height_map_units,
                frame_mbs_only,
                crop,
                sar,
                colour,
                timing,
            }
        }
    }

    proptest! {
        /// Synthetic SPS of every shape parse back to what was written.
        #[test]
        fn synthetic_sps_parse_back(spec in sps_spec()) {
            let nal = spec.write();
            let sps = Sps::parse(&nal).unwrap();
            prop_assert_eq!((sps.width, sps.height), spec.expected_size());
            prop_assert_eq!(sps.profile_idc, spec.profile_idc);
            prop_assert_eq!(sps.id, spec.id);
            prop_assert_eq!(sps.chroma_format_idc, spec.chroma_format_idc);
            prop_assert_eq!((sps.bit_depth_luma, sps.bit_depth_chroma), (spec.bit_depth_luma, spec.bit_depth_chroma));
            prop_assert_eq!(sps.frame_mbs_only, spec.frame_mbs_only);
            let rate = spec.timing.map(|(units, scale)| {
                let g = gcd(u64::from(scale), 2 * u64::from(units));
                ((u64::from(scale) / g) as u32, (2 * u64::from(units) / g) as u32)
            });
            prop_assert_eq!(sps.frame_rate, rate);
            prop_assert_eq!(sps_id(&nal).unwrap(), spec.id);
            let config = AvcConfig::from_parameter_sets(&[&nal], &[&[0x68, 0xce]]).unwrap();
            prop_assert_eq!(config.high.is_some(), spec.profile_idc == 100);
            prop_assert_eq!(AvcConfig::parse(&config.to_bytes()).unwrap(), config);
        }

        #[test]
        fn avc_config_round_trip(
            profile in prop_oneof![Just(66u8), Just(77), Just(100), Just(110), Just(122), Just(144)],
            compatibility in any::<u8>(),
            level in any::<u8>(),
            length_size in prop_oneof![Just(1u8), Just(2), Just(4)],
            sps in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..4),
            pps in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20), 0..4),
            ext in prop::option::of((0u8..4, 8u8..16, 8u8..16, prop::collection::vec(prop::collection::vec(any::<u8>(), 0..9), 0..3))),
        ) {
            let high = ext.filter(|_| record_has_high_ext(profile)).map(|(chroma_format, luma, chroma, sps_ext)| AvcHighExt {
                chroma_format,
                bit_depth_luma: luma,
                bit_depth_chroma: chroma,
                sps_ext: sps_ext.into_iter().map(Bytes::from).collect(),
            });
            let config = AvcConfig {
                profile,
                compatibility,
                level,
                length_size,
                sps: sps.into_iter().map(Bytes::from).collect(),
                pps: pps.into_iter().map(Bytes::from).collect(),
                high,
            };
            prop_assert_eq!(AvcConfig::parse(&config.to_bytes()).unwrap(), config);
        }

        #[test]
        fn parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
            fuzz(&data);
        }

        /// Mutated real SPS and records: deeper paths than random bytes.
        #[test]
        fn mutated_sps_never_panics(flips in prop::collection::vec((0usize..25, any::<u8>()), 1..6)) {
            let mut nal = X264_SPS.to_vec();
            for (at, b) in flips {
                nal[at] = b;
            }
            nal[0] = 0x67;
            fuzz(&nal);
            let mut record = vec![1, 0x64, 0, 0x0b, 0xff, 0xe1, 0, nal.len() as u8];
            record.extend_from_slice(&nal);
            record.push(0);
            fuzz(&record);
        }
    }
}
