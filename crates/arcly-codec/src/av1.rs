//! AV1: OBUs in the low-overhead bitstream format, the sequence header, the
//! AV1CodecConfigurationRecord (`av1C`, AV1-ISOBMFF §2.3) and keyframe
//! detection.
//!
//! The bus carries a temporal unit as OBUs with `obu_has_size_field` set and
//! no temporal delimiter ([`strip_temporal_delimiters`] removes them).

use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::{BufMut, Bytes, BytesMut};

use crate::bits::BitReader;

const PROTOCOL: &str = "av1";

fn error(kind: ProtocolErrorKind, context: impl Into<String>) -> ProtocolError {
    ProtocolError::new(PROTOCOL, kind, context)
}

/// OBU types (AV1 spec 6.2.2).
pub mod obu_type {
    /// Sequence header.
    pub const SEQUENCE_HEADER: u8 = 1;
    /// Temporal delimiter (starts a temporal unit; no payload).
    pub const TEMPORAL_DELIMITER: u8 = 2;
    /// Frame header.
    pub const FRAME_HEADER: u8 = 3;
    /// Tile group.
    pub const TILE_GROUP: u8 = 4;
    /// Metadata.
    pub const METADATA: u8 = 5;
    /// Frame: a frame header and a tile group in one OBU.
    pub const FRAME: u8 = 6;
    /// Redundant copy of a frame header.
    pub const REDUNDANT_FRAME_HEADER: u8 = 7;
    /// Tile list (large scale tile decoding).
    pub const TILE_LIST: u8 = 8;
    /// Padding.
    pub const PADDING: u8 = 15;
}

/// One OBU, borrowed from the buffer it was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Obu<'a> {
    /// `obu_type` (see [`obu_type`]).
    pub obu_type: u8,
    /// `temporal_id` from the extension header, 0 without one.
    pub temporal_id: u8,
    /// `spatial_id` from the extension header, 0 without one.
    pub spatial_id: u8,
    /// The OBU header: 1 byte, or 2 with the extension header; the
    /// `obu_size` field is not included.
    pub header: &'a [u8],
    /// The payload (`obu_size` bytes).
    pub payload: &'a [u8],
}

/// Iterator over the OBUs of a buffer; see [`obus`].
#[derive(Clone, Debug)]
pub struct Obus<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

/// The OBUs of a buffer in the low-overhead bitstream format. An OBU
/// without `obu_has_size_field` extends to the end of the buffer. A
/// malformed OBU (forbidden bit set, size past the end) yields one error
/// and ends the iteration.
///
/// ```
/// use arcly_codec::av1::{obu_type, obus};
/// // A temporal delimiter, then a padding OBU with an extension header
/// // (temporal_id 1, spatial_id 2) and 2 payload bytes.
/// let data = [0x12, 0x00, 0x7e, 0x30, 0x02, 0xaa, 0xbb];
/// let list: Vec<_> = obus(&data).collect::<Result<_, _>>().unwrap();
/// assert_eq!(list[0].obu_type, obu_type::TEMPORAL_DELIMITER);
/// assert_eq!((list[1].obu_type, list[1].temporal_id, list[1].spatial_id), (obu_type::PADDING, 1, 2));
/// assert_eq!(list[1].payload, [0xaa, 0xbb]);
/// assert!(obus(&[0x12, 0x05]).next().unwrap().is_err());
/// ```
pub fn obus(data: &[u8]) -> Obus<'_> {
    Obus { data, pos: 0, failed: false }
}

impl<'a> Obus<'a> {
    /// Bytes consumed so far: the offset of the next OBU. Read before and
    /// after `next()`, it gives the byte range of a whole OBU (header, size
    /// field and payload).
    ///
    /// ```
    /// use arcly_codec::av1::obus;
    /// let data = [0x12, 0x00, 0x32, 0x01, 0x10];
    /// let mut it = obus(&data);
    /// it.next();
    /// assert_eq!(it.position(), 2);
    /// ```
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next OBU and the byte range it takes in the buffer.
    fn next_with_range(&mut self) -> Option<Result<(Obu<'a>, std::ops::Range<usize>), ProtocolError>> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let start = self.pos;
        let result = parse_obu(self.data, start);
        match &result {
            Ok((_, range)) => self.pos = range.end,
            Err(_) => self.failed = true,
        }
        Some(result)
    }
}

impl<'a> Iterator for Obus<'a> {
    type Item = Result<Obu<'a>, ProtocolError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_with_range().map(|r| r.map(|(obu, _)| obu))
    }
}

/// Parses the OBU at `start` (AV1 spec 5.3).
fn parse_obu(data: &[u8], start: usize) -> Result<(Obu<'_>, std::ops::Range<usize>), ProtocolError> {
    let rest = &data[start..];
    let at = |e: ProtocolError| e.at(start as u64);
    let mut r = BitReader::new(PROTOCOL, rest);
    if r.read_flag().map_err(at)? {
        return Err(at(error(ProtocolErrorKind::InvalidValue, "obu_forbidden_bit is set")));
    }
    let obu_type = r.read_bits(4).map_err(at)? as u8;
    let extension = r.read_flag().map_err(at)?;
    let has_size = r.read_flag().map_err(at)?;
    r.skip(1).map_err(at)?;
    let (mut temporal_id, mut spatial_id) = (0, 0);
    if extension {
        temporal_id = r.read_bits(3).map_err(at)? as u8;
        spatial_id = r.read_bits(2).map_err(at)? as u8;
        r.skip(3).map_err(at)?;
    }
    let header_len = r.position() / 8;
    let size = if has_size { r.read_leb128().map_err(at)? } else { (rest.len() - header_len) as u64 };
    let payload_start = r.position() / 8;
    let available = rest.len() - payload_start;
    if size > available as u64 {
        return Err(at(error(
            ProtocolErrorKind::Truncated,
            format!("OBU of type {obu_type} has {size} payload bytes, {available} left"),
        )));
    }
    let end = payload_start + size as usize;
    let obu =
        Obu { obu_type, temporal_id, spatial_id, header: &rest[..header_len], payload: &rest[payload_start..end] };
    Ok((obu, start..start + end))
}

/// The first sequence header OBU of a temporal unit, whole (header, size
/// field and payload), as [`Av1Config::from_sequence_header_obu`] takes it.
/// `None` if there is none before the end or the first malformed OBU.
///
/// ```
/// use arcly_codec::av1::sequence_header_obu;
/// let tu = [0x12, 0x00, 0x0a, 0x02, 0xaa, 0xbb, 0x32, 0x01, 0x10];
/// assert_eq!(sequence_header_obu(&tu), Some(&tu[2..6]));
/// assert_eq!(sequence_header_obu(&tu[6..]), None);
/// ```
pub fn sequence_header_obu(temporal_unit: &[u8]) -> Option<&[u8]> {
    let mut it = obus(temporal_unit);
    while let Some(Ok((obu, range))) = it.next_with_range() {
        if obu.obu_type == obu_type::SEQUENCE_HEADER {
            return Some(&temporal_unit[range]);
        }
    }
    None
}

/// The fields of a sequence header OBU (AV1 spec 5.5) up to and including
/// `color_config()`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SequenceHeader {
    /// `seq_profile`: 0 Main, 1 High, 2 Professional.
    pub seq_profile: u8,
    /// `still_picture`.
    pub still_picture: bool,
    /// `seq_level_idx[0]` (operating point 0).
    pub seq_level_idx_0: u8,
    /// `seq_tier[0]`.
    pub seq_tier_0: bool,
    /// Bit depth: 8, 10 or 12.
    pub bit_depth: u8,
    /// `mono_chrome`.
    pub mono_chrome: bool,
    /// `subsampling_x`.
    pub chroma_subsampling_x: bool,
    /// `subsampling_y`.
    pub chroma_subsampling_y: bool,
    /// `chroma_sample_position`: 0 unknown, 1 vertical, 2 colocated.
    pub chroma_sample_position: u8,
    /// `max_frame_width_minus_1 + 1`.
    pub max_frame_width: u32,
    /// `max_frame_height_minus_1 + 1`.
    pub max_frame_height: u32,
    /// `color_range`: true for full range.
    pub color_range: bool,
}

/// What the sequence header says that frame headers and `av1C` need.
#[derive(Clone, Copy, Debug, Default)]
struct SequenceExtra {
    reduced_still_picture_header: bool,
    /// `initial_display_delay_minus_1[0] + 1`, if present.
    initial_display_delay: Option<u8>,
}

impl SequenceHeader {
    /// Parses the payload of a sequence header OBU (without the OBU header
    /// and size).
    ///
    /// ```
    /// use arcly_codec::av1::SequenceHeader;
    /// // The sequence header SVT-AV1 wrote for testdata/av1.ivf.
    /// let seq = SequenceHeader::parse(&[0x00, 0x00, 0x00, 0x03, 0xb4, 0xff, 0x73, 0xef, 0xe4, 0x01]).unwrap();
    /// assert_eq!((seq.seq_profile, seq.bit_depth, seq.mono_chrome), (0, 8, false));
    /// assert_eq!((seq.max_frame_width, seq.max_frame_height), (160, 120));
    /// assert!(seq.chroma_subsampling_x && seq.chroma_subsampling_y);
    /// ```
    pub fn parse(payload: &[u8]) -> Result<Self, ProtocolError> {
        Self::parse_extra(payload).map(|(seq, _)| seq)
    }

    fn parse_extra(payload: &[u8]) -> Result<(Self, SequenceExtra), ProtocolError> {
        let mut r = BitReader::new(PROTOCOL, payload);
        let seq_profile = r.read_bits(3)? as u8;
        if seq_profile > 2 {
            return Err(error(ProtocolErrorKind::Unsupported, format!("seq_profile {seq_profile}")));
        }
        let still_picture = r.read_flag()?;
        let reduced_still_picture_header = r.read_flag()?;
        let mut extra = SequenceExtra { reduced_still_picture_header, initial_display_delay: None };
        let seq_level_idx_0;
        let mut seq_tier_0 = false;
        if reduced_still_picture_header {
            seq_level_idx_0 = r.read_bits(5)? as u8;
        } else {
            let mut decoder_model_info_present = false;
            let mut buffer_delay_length = 0;
            if r.read_flag()? {
                // timing_info()
                r.skip(64)?; // num_units_in_display_tick, time_scale
                if r.read_flag()? {
                    read_uvlc(&mut r)?; // num_ticks_per_picture_minus_1
                }
                decoder_model_info_present = r.read_flag()?;
                if decoder_model_info_present {
                    buffer_delay_length = r.read_bits(5)? as usize + 1;
                    // num_units_in_decoding_tick, buffer_removal_time_length_minus_1,
                    // frame_presentation_time_length_minus_1
                    r.skip(32 + 5 + 5)?;
                }
            }
            let initial_display_delay_present = r.read_flag()?;
            let operating_points = r.read_bits(5)? + 1;
            let mut first = None;
            for _ in 0..operating_points {
                r.skip(12)?; // operating_point_idc
                let level = r.read_bits(5)? as u8;
                let tier = level > 7 && r.read_flag()?;
                if decoder_model_info_present && r.read_flag()? {
                    // decoder_buffer_delay, encoder_buffer_delay, low_delay_mode_flag
                    r.skip(2 * buffer_delay_length + 1)?;
                }
                let mut delay = None;
                if initial_display_delay_present && r.read_flag()? {
                    delay = Some(r.read_bits(4)? as u8 + 1);
                }
                first.get_or_insert((level, tier, delay));
            }
            let (level, tier, delay) = first.unwrap_or_default();
            seq_level_idx_0 = level;
            seq_tier_0 = tier;
            extra.initial_display_delay = delay;
        }
        let width_bits = r.read_bits(4)? as u32 + 1;
        let height_bits = r.read_bits(4)? as u32 + 1;
        let max_frame_width = r.read_u32(width_bits)? + 1;
        let max_frame_height = r.read_u32(height_bits)? + 1;
        if !reduced_still_picture_header && r.read_flag()? {
            // delta_frame_id_length_minus_2, additional_frame_id_length_minus_1
            r.skip(7)?;
        }
        // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
        r.skip(3)?;
        if !reduced_still_picture_header {
            // enable_interintra_compound, enable_masked_compound,
            // enable_warped_motion, enable_dual_filter
            r.skip(4)?;
            let enable_order_hint = r.read_flag()?;
            if enable_order_hint {
                r.skip(2)?; // enable_jnt_comp, enable_ref_frame_mvs
            }
            let seq_choose_screen_content_tools = r.read_flag()?;
            let seq_force_screen_content_tools = seq_choose_screen_content_tools || r.read_flag()?;
            if seq_force_screen_content_tools {
                let seq_choose_integer_mv = r.read_flag()?;
                if !seq_choose_integer_mv {
                    r.skip(1)?; // seq_force_integer_mv
                }
            }
            if enable_order_hint {
                r.skip(3)?; // order_hint_bits_minus_1
            }
        }
        r.skip(3)?; // enable_superres, enable_cdef, enable_restoration
        // color_config()
        let high_bitdepth = r.read_flag()?;
        let bit_depth = match (seq_profile, high_bitdepth) {
            (2, true) if r.read_flag()? => 12,
            (_, true) => 10,
            (_, false) => 8,
        };
        let mono_chrome = seq_profile != 1 && r.read_flag()?;
        let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
        if r.read_flag()? {
            primaries = r.read_bits(8)?;
            transfer = r.read_bits(8)?;
            matrix = r.read_bits(8)?;
        }
        let color_range;
        let (mut subsampling_x, mut subsampling_y, mut chroma_sample_position) = (true, true, 0);
        if mono_chrome {
            color_range = r.read_flag()?;
        } else if (primaries, transfer, matrix) == (1, 13, 0) {
            // BT.709 primaries, sRGB transfer, identity matrix: 4:4:4 RGB.
            color_range = true;
            (subsampling_x, subsampling_y) = (false, false);
        } else {
            color_range = r.read_flag()?;
            match seq_profile {
                0 => {}
                1 => (subsampling_x, subsampling_y) = (false, false),
                _ if bit_depth == 12 => {
                    subsampling_x = r.read_flag()?;
                    subsampling_y = subsampling_x && r.read_flag()?;
                }
                _ => (subsampling_x, subsampling_y) = (true, false),
            }
            if subsampling_x && subsampling_y {
                chroma_sample_position = r.read_bits(2)? as u8;
            }
        }
        let seq = SequenceHeader {
            seq_profile,
            still_picture,
            seq_level_idx_0,
            seq_tier_0,
            bit_depth,
            mono_chrome,
            chroma_subsampling_x: subsampling_x,
            chroma_subsampling_y: subsampling_y,
            chroma_sample_position,
            max_frame_width,
            max_frame_height,
            color_range,
        };
        Ok((seq, extra))
    }
}

/// `uvlc()` (AV1 spec 4.10.3); only skipped, so the value is not kept.
fn read_uvlc(r: &mut BitReader<'_>) -> Result<(), ProtocolError> {
    let mut leading_zeros = 0;
    while !r.read_flag()? {
        leading_zeros += 1;
    }
    if leading_zeros < 32 {
        r.skip(leading_zeros)?;
    }
    Ok(())
}

/// An AV1CodecConfigurationRecord (AV1-ISOBMFF §2.3.3): the `av1C` box
/// payload, and the bus `CONFIG` payload for AV1.
///
/// ```
/// use arcly_codec::av1::Av1Config;
/// // The sequence header OBU of testdata/av1.ivf.
/// let obu = [0x0a, 0x0a, 0x00, 0x00, 0x00, 0x03, 0xb4, 0xff, 0x73, 0xef, 0xe4, 0x01];
/// let config = Av1Config::from_sequence_header_obu(&obu).unwrap();
/// let record = config.to_bytes();
/// assert_eq!(&record[..4], &[0x81, 0x00, 0x0c, 0x00]);
/// assert_eq!(&record[4..], &obu);
/// assert_eq!(Av1Config::parse(&record).unwrap(), config);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Av1Config {
    /// `seq_profile`.
    pub seq_profile: u8,
    /// `seq_level_idx_0`.
    pub seq_level_idx_0: u8,
    /// `seq_tier_0`.
    pub seq_tier_0: bool,
    /// `high_bitdepth` (10 or 12 bits).
    pub high_bitdepth: bool,
    /// `twelve_bit`.
    pub twelve_bit: bool,
    /// `monochrome`.
    pub monochrome: bool,
    /// `chroma_subsampling_x`.
    pub chroma_subsampling_x: bool,
    /// `chroma_subsampling_y`.
    pub chroma_subsampling_y: bool,
    /// `chroma_sample_position` (2 bits).
    pub chroma_sample_position: u8,
    /// `initial_presentation_delay_minus_one + 1` (1 to 16) when present.
    pub initial_presentation_delay: Option<u8>,
    /// `configOBUs`: the sequence header OBU and any metadata OBUs, with
    /// size fields.
    pub config_obus: Bytes,
}

impl Av1Config {
    /// Parses a record: `marker` must be 1 and `version` 1.
    pub fn parse(record: &[u8]) -> Result<Self, ProtocolError> {
        let [b0, b1, b2, b3, obus @ ..] = record else {
            return Err(error(ProtocolErrorKind::Truncated, format!("av1C of {} bytes", record.len())));
        };
        if *b0 != 0x81 {
            return Err(error(ProtocolErrorKind::Unsupported, format!("av1C marker/version byte {b0:#04x}")).at(0));
        }
        Ok(Self {
            seq_profile: b1 >> 5,
            seq_level_idx_0: b1 & 0x1f,
            seq_tier_0: b2 & 0x80 != 0,
            high_bitdepth: b2 & 0x40 != 0,
            twelve_bit: b2 & 0x20 != 0,
            monochrome: b2 & 0x10 != 0,
            chroma_subsampling_x: b2 & 0x08 != 0,
            chroma_subsampling_y: b2 & 0x04 != 0,
            chroma_sample_position: b2 & 3,
            initial_presentation_delay: (b3 & 0x10 != 0).then_some((b3 & 0x0f) + 1),
            config_obus: Bytes::copy_from_slice(obus),
        })
    }

    /// Serializes the record. Fields are masked to their widths; an
    /// `initial_presentation_delay` of `Some(0)` is written as 1.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(4 + self.config_obus.len());
        out.put_u8(0x81);
        out.put_u8(((self.seq_profile & 7) << 5) | (self.seq_level_idx_0 & 0x1f));
        out.put_u8(
            (u8::from(self.seq_tier_0) << 7)
                | (u8::from(self.high_bitdepth) << 6)
                | (u8::from(self.twelve_bit) << 5)
                | (u8::from(self.monochrome) << 4)
                | (u8::from(self.chroma_subsampling_x) << 3)
                | (u8::from(self.chroma_subsampling_y) << 2)
                | (self.chroma_sample_position & 3),
        );
        out.put_u8(match self.initial_presentation_delay {
            Some(delay) => 0x10 | (delay.saturating_sub(1) & 0x0f),
            None => 0,
        });
        out.put_slice(&self.config_obus);
        out.freeze()
    }

    /// Builds a record from a whole sequence header OBU (header included).
    /// The OBU is stored as `configOBUs`, rewritten with a size field if it
    /// had none; bytes after it are ignored. The initial presentation delay
    /// is operating point 0's `initial_display_delay_minus_1 + 1`.
    pub fn from_sequence_header_obu(obu_bytes: &[u8]) -> Result<Self, ProtocolError> {
        let (obu, range) = parse_obu(obu_bytes, 0)?;
        if obu.obu_type != obu_type::SEQUENCE_HEADER {
            return Err(error(
                ProtocolErrorKind::InvalidValue,
                format!("OBU type {} is not a sequence header", obu.obu_type),
            ));
        }
        let (seq, extra) = SequenceHeader::parse_extra(obu.payload)?;
        let has_size = obu.header[0] & 0x02 != 0;
        let config_obus = if has_size {
            Bytes::copy_from_slice(&obu_bytes[range])
        } else {
            let mut out = BytesMut::with_capacity(obu.header.len() + 8 + obu.payload.len());
            out.put_u8(obu.header[0] | 0x02);
            out.put_slice(&obu.header[1..]);
            put_leb128(&mut out, obu.payload.len() as u64);
            out.put_slice(obu.payload);
            out.freeze()
        };
        Ok(Self {
            seq_profile: seq.seq_profile,
            seq_level_idx_0: seq.seq_level_idx_0,
            seq_tier_0: seq.seq_tier_0,
            high_bitdepth: seq.bit_depth > 8,
            twelve_bit: seq.bit_depth == 12,
            monochrome: seq.mono_chrome,
            chroma_subsampling_x: seq.chroma_subsampling_x,
            chroma_subsampling_y: seq.chroma_subsampling_y,
            chroma_sample_position: seq.chroma_sample_position,
            initial_presentation_delay: extra.initial_display_delay,
            config_obus,
        })
    }

    /// Parses the first sequence header OBU in `config_obus`.
    pub fn sequence_header(&self) -> Result<SequenceHeader, ProtocolError> {
        for obu in obus(&self.config_obus) {
            let obu = obu?;
            if obu.obu_type == obu_type::SEQUENCE_HEADER {
                return SequenceHeader::parse(obu.payload);
            }
        }
        Err(error(ProtocolErrorKind::InvalidValue, "no sequence header OBU in av1C"))
    }
}

fn put_leb128(out: &mut BytesMut, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

/// True if a temporal unit is a random access point: it holds a sequence
/// header OBU, and its first frame header (in a `FRAME` or `FRAME_HEADER`
/// OBU) starts a shown key frame: `show_existing_frame` 0, `frame_type`
/// `KEY_FRAME` (0) and `show_frame` 1 (a frame under a
/// `reduced_still_picture_header` always is). Forward key frames (not shown)
/// and key frames shown later through `show_existing_frame` are not random
/// access points in this sense. A malformed OBU ends the scan with `false`
/// unless both conditions already held.
///
/// ```
/// use arcly_codec::av1::is_keyframe;
/// let seq = [0x0a, 0x0a, 0x00, 0x00, 0x00, 0x03, 0xb4, 0xff, 0x73, 0xef, 0xe4, 0x01];
/// // FRAME OBU whose header starts 0b0001...: shown KEY_FRAME.
/// let key = [&[0x12, 0x00][..], &seq, &[0x32, 0x01, 0x10]].concat();
/// assert!(is_keyframe(&key));
/// // The same frame without a sequence header, and an inter frame.
/// assert!(!is_keyframe(&[0x12, 0x00, 0x32, 0x01, 0x10]));
/// assert!(!is_keyframe(&[&seq[..], &[0x32, 0x01, 0x30]].concat()));
/// ```
pub fn is_keyframe(temporal_unit: &[u8]) -> bool {
    let mut sequence = None;
    for obu in obus(temporal_unit) {
        let Ok(obu) = obu else { return false };
        match obu.obu_type {
            obu_type::SEQUENCE_HEADER => {
                let Ok((_, extra)) = SequenceHeader::parse_extra(obu.payload) else { return false };
                sequence = Some(extra);
            }
            obu_type::FRAME | obu_type::FRAME_HEADER => {
                let Some(extra) = sequence else { return false };
                if extra.reduced_still_picture_header {
                    return true;
                }
                // show_existing_frame (1), frame_type (2), show_frame (1)
                return obu.payload.first().is_some_and(|b| b >> 4 == 0b0001);
            }
            _ => {}
        }
    }
    false
}

/// Removes temporal delimiter OBUs from a temporal unit (the bus format has
/// none). Other OBUs are copied as they are; if an OBU is malformed, the
/// rest of the input from there is copied unchanged.
///
/// ```
/// use arcly_codec::av1::strip_temporal_delimiters;
/// let tu = [0x12, 0x00, 0x32, 0x01, 0x10];
/// assert_eq!(&strip_temporal_delimiters(&tu)[..], &[0x32, 0x01, 0x10]);
/// ```
pub fn strip_temporal_delimiters(temporal_unit: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(temporal_unit.len());
    let mut it = obus(temporal_unit);
    loop {
        let copied_to = it.pos;
        match it.next_with_range() {
            None => break,
            Some(Ok((obu, range))) => {
                if obu.obu_type != obu_type::TEMPORAL_DELIMITER {
                    out.put_slice(&temporal_unit[range]);
                }
            }
            Some(Err(_)) => {
                out.put_slice(&temporal_unit[copied_to..]);
                break;
            }
        }
    }
    out.freeze()
}

/// Like [`strip_temporal_delimiters`] without copying in the common case of
/// temporal delimiters only at the start (where encoders put them): the
/// result shares `temporal_unit`'s buffer.
///
/// ```
/// use arcly_codec::av1::strip_temporal_delimiters_shared;
/// let tu = bytes::Bytes::from_static(&[0x12, 0x00, 0x32, 0x01, 0x10]);
/// assert_eq!(&strip_temporal_delimiters_shared(&tu)[..], &[0x32, 0x01, 0x10]);
/// ```
pub fn strip_temporal_delimiters_shared(temporal_unit: &Bytes) -> Bytes {
    let mut start = 0;
    while start < temporal_unit.len() {
        match parse_obu(temporal_unit, start) {
            Ok((obu, range)) if obu.obu_type == obu_type::TEMPORAL_DELIMITER => start = range.end,
            _ => break,
        }
    }
    let rest = temporal_unit.slice(start..);
    let more = obus(&rest).any(|obu| obu.is_ok_and(|o| o.obu_type == obu_type::TEMPORAL_DELIMITER));
    if more { strip_temporal_delimiters(&rest) } else { rest }
}

/// Fuzz entry point: the parsers return instead of panicking, and a parsed
/// record survives a serialization round trip.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let _ = obus(data).count();
    let _ = SequenceHeader::parse(data);
    let _ = Av1Config::from_sequence_header_obu(data);
    if let Ok(config) = Av1Config::parse(data) {
        assert_eq!(Av1Config::parse(&config.to_bytes()).as_ref(), Ok(&config), "av1C round trip");
        let _ = config.sequence_header();
    }
    let _ = is_keyframe(data);
    let stripped = strip_temporal_delimiters(data);
    assert!(stripped.len() <= data.len());
    let shared = strip_temporal_delimiters_shared(&Bytes::copy_from_slice(data));
    assert_eq!(shared, stripped);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits::BitWriter;
    use proptest::prelude::*;

    const SEQ_OBU: [u8; 12] = [0x0a, 0x0a, 0x00, 0x00, 0x00, 0x03, 0xb4, 0xff, 0x73, 0xef, 0xe4, 0x01];

    #[test]
    fn svt_av1_sequence_header() {
        let seq = SequenceHeader::parse(&SEQ_OBU[2..]).unwrap();
        assert_eq!(
            seq,
            SequenceHeader {
                seq_profile: 0,
                still_picture: false,
                seq_level_idx_0: 0,
                seq_tier_0: false,
                bit_depth: 8,
                mono_chrome: false,
                chroma_subsampling_x: true,
                chroma_subsampling_y: true,
                chroma_sample_position: 0,
                max_frame_width: 160,
                max_frame_height: 120,
                color_range: false,
            }
        );
        for cut in 0..SEQ_OBU.len() - 2 {
            assert!(SequenceHeader::parse(&SEQ_OBU[2..2 + cut]).is_err(), "cut at {cut}");
        }
    }

    /// A sequence header with timing and decoder model info, two operating
    /// points, frame ids, screen content tools and 12-bit 4:2:0 with colour
    /// description (profile 2).
    fn built_sequence_header() -> Vec<u8> {
        let mut w = BitWriter::default();
        w.write_bits(2, 3); // seq_profile
        w.write_flag(false);
        w.write_flag(false);
        w.write_flag(true); // timing_info_present_flag
        w.write_bits(1001, 32);
        w.write_bits(60000, 32);
        w.write_flag(true); // equal_picture_interval
        w.write_bits(0b00101, 5); // uvlc: 2 leading zeros, value 1
        w.write_flag(true); // decoder_model_info_present_flag
        w.write_bits(9, 5); // buffer_delay_length_minus_1
        w.write_bits(77, 32);
        w.write_bits(3, 5);
        w.write_bits(4, 5);
        w.write_flag(true); // initial_display_delay_present_flag
        w.write_bits(1, 5); // two operating points
        for (idc, level, delay) in [(0x101, 13, 9), (0x103, 5, 3)] {
            w.write_bits(idc, 12);
            w.write_bits(level, 5);
            if level > 7 {
                w.write_flag(true);
            }
            w.write_flag(true); // decoder_model_present_for_this_op
            w.write_bits(0x155, 10);
            w.write_bits(0x2aa, 10);
            w.write_flag(false);
            w.write_flag(true);
            w.write_bits(delay - 1, 4);
        }
        w.write_bits(11, 4);
        w.write_bits(10, 4);
        w.write_bits(1919, 12);
        w.write_bits(1079, 11);
        w.write_flag(true); // frame_id_numbers_present_flag
        w.write_bits(0x55, 7);
        w.write_bits(0b101, 3);
        w.write_bits(0b1111, 4);
        w.write_flag(true); // enable_order_hint
        w.write_bits(0b11, 2);
        w.write_flag(false); // seq_choose_screen_content_tools
        w.write_flag(true); // seq_force_screen_content_tools
        w.write_flag(false); // seq_choose_integer_mv
        w.write_flag(true); // seq_force_integer_mv
        w.write_bits(6, 3);
        w.write_bits(0b111, 3);
        w.write_flag(true); // high_bitdepth
        w.write_flag(true); // twelve_bit
        w.write_flag(false); // mono_chrome
        w.write_flag(true); // color_description_present_flag
        w.write_bits(9, 8);
        w.write_bits(16, 8);
        w.write_bits(9, 8);
        w.write_flag(true); // color_range
        w.write_flag(true); // subsampling_x
        w.write_flag(true); // subsampling_y
        w.write_bits(2, 2); // chroma_sample_position
        w.write_flag(false); // separate_uv_delta_q
        w.write_flag(false); // film_grain_params_present
        w.write_flag(true); // trailing bit
        w.finish()
    }

    #[test]
    fn built_sequence_header_parses() {
        let payload = built_sequence_header();
        let (seq, extra) = SequenceHeader::parse_extra(&payload).unwrap();
        assert_eq!((seq.seq_profile, seq.seq_level_idx_0, seq.seq_tier_0), (2, 13, true));
        assert_eq!((seq.max_frame_width, seq.max_frame_height), (1920, 1080));
        assert_eq!((seq.bit_depth, seq.color_range, seq.chroma_sample_position), (12, true, 2));
        assert!(seq.chroma_subsampling_x && seq.chroma_subsampling_y);
        assert_eq!(extra.initial_display_delay, Some(9));
        let mut obu = vec![0x08]; // no size field
        obu.extend_from_slice(&payload);
        let config = Av1Config::from_sequence_header_obu(&obu).unwrap();
        assert!(config.high_bitdepth && config.twelve_bit);
        assert_eq!(config.initial_presentation_delay, Some(9));
        assert_eq!(config.config_obus[0], 0x0a);
        assert_eq!(usize::from(config.config_obus[1]), payload.len());
        assert_eq!(config.sequence_header().unwrap(), seq);
    }

    #[test]
    fn colour_config_variants() {
        // Reduced still picture header, profile 1 (4:4:4), sRGB identity.
        let mut w = BitWriter::default();
        w.write_bits(1, 3);
        w.write_flag(true);
        w.write_flag(true);
        w.write_bits(4, 5); // seq_level_idx[0]
        w.write_bits(7, 4);
        w.write_bits(7, 4);
        w.write_bits(63, 8);
        w.write_bits(31, 8);
        w.write_bits(0, 3);
        w.write_bits(0, 3);
        w.write_flag(false); // high_bitdepth
        w.write_flag(true); // color description
        w.write_bits(1, 8);
        w.write_bits(13, 8);
        w.write_bits(0, 8);
        w.write_flag(false);
        let seq = SequenceHeader::parse(&w.finish()).unwrap();
        assert_eq!((seq.seq_profile, seq.still_picture, seq.seq_level_idx_0), (1, true, 4));
        assert_eq!((seq.max_frame_width, seq.max_frame_height), (64, 32));
        assert!(seq.color_range && !seq.chroma_subsampling_x && !seq.chroma_subsampling_y);
        // Still-picture key frames are always random access points.
        let mut w = BitWriter::default();
        w.write_bits(0, 3);
        w.write_flag(true);
        w.write_flag(true);
        w.write_bits(4, 5);
        w.write_bits(0, 16);
        w.write_flag(false); // high_bitdepth
        w.write_flag(true); // mono_chrome
        w.write_flag(false);
        w.write_flag(true); // color_range
        let payload = w.finish();
        let seq = SequenceHeader::parse(&payload).unwrap();
        assert!(seq.mono_chrome && seq.color_range);
        let mut tu = vec![0x0a, payload.len() as u8];
        tu.extend_from_slice(&payload);
        tu.extend_from_slice(&[0x32, 0x01, 0xff]);
        assert!(is_keyframe(&tu));
    }

    #[test]
    fn obu_errors() {
        assert!(obus(&[0x80, 0x00]).next().unwrap().is_err(), "forbidden bit");
        let mut it = obus(&[0x12, 0x00, 0x32, 0x09, 0x00]);
        assert!(it.next().unwrap().is_ok());
        assert_eq!(it.next().unwrap().unwrap_err().offset, Some(2));
        assert!(it.next().is_none());
        // No size field: the payload runs to the end.
        let obu = obus(&[0x30, 1, 2, 3]).next().unwrap().unwrap();
        assert_eq!((obu.header, obu.payload), (&[0x30][..], &[1, 2, 3][..]));
        assert!(Av1Config::from_sequence_header_obu(&[0x12, 0x00]).is_err());
        assert!(Av1Config::parse(&[0x01, 0, 0, 0]).is_err());
        assert!(Av1Config::parse(&[0x81, 0, 0]).is_err());
    }

    #[test]
    fn keyframe_rules() {
        let td = [0x12, 0x00];
        let tu = |frame_header: u8| [&td[..], &SEQ_OBU, &[0x32, 0x01, frame_header]].concat();
        assert!(is_keyframe(&tu(0b0001_0000)));
        assert!(!is_keyframe(&tu(0b0000_0000)), "hidden key frame");
        assert!(!is_keyframe(&tu(0b1000_0000)), "show_existing_frame");
        assert!(!is_keyframe(&tu(0b0011_0000)), "intra-only frame");
        // A FRAME_HEADER OBU counts like a FRAME.
        assert!(is_keyframe(&[&SEQ_OBU[..], &[0x1a, 0x01, 0x10]].concat()));
        assert!(!is_keyframe(&[0x1a, 0x01, 0x10]));
    }

    #[test]
    fn strip_keeps_everything_else() {
        let tu = [&[0x12, 0x00][..], &SEQ_OBU, &[0x12, 0x00, 0x32, 0x01, 0x10]].concat();
        let expected = [&SEQ_OBU[..], &[0x32, 0x01, 0x10]].concat();
        assert_eq!(&strip_temporal_delimiters(&tu)[..], &expected[..]);
        assert_eq!(&strip_temporal_delimiters_shared(&Bytes::from(tu))[..], &expected[..]);
        let broken = [0x12, 0x00, 0x32, 0x05, 0x10];
        assert_eq!(&strip_temporal_delimiters(&broken)[..], &[0x32, 0x05, 0x10]);
    }

    fn arb_config() -> impl Strategy<Value = Av1Config> {
        (
            (0u8..8, 0u8..32, any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
            (any::<bool>(), any::<bool>(), 0u8..4, prop::option::of(1u8..=16)),
            prop::collection::vec(any::<u8>(), 0..64),
        )
            .prop_map(|((profile, level, tier, high, twelve, mono), (sx, sy, csp, delay), obus)| Av1Config {
                seq_profile: profile,
                seq_level_idx_0: level,
                seq_tier_0: tier,
                high_bitdepth: high,
                twelve_bit: twelve,
                monochrome: mono,
                chroma_subsampling_x: sx,
                chroma_subsampling_y: sy,
                chroma_sample_position: csp,
                initial_presentation_delay: delay,
                config_obus: Bytes::from(obus),
            })
    }

    proptest! {
        #[test]
        fn record_round_trip(config in arb_config()) {
            prop_assert_eq!(Av1Config::parse(&config.to_bytes()).unwrap(), config);
        }

        #[test]
        fn parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
            fuzz(&data);
        }

        #[test]
        fn corrupted_sequence_headers_never_panic(pos in 0usize..100, value in any::<u8>(), cut in 0usize..100) {
            let mut payload = built_sequence_header();
            let pos = pos % payload.len();
            payload[pos] = value;
            payload.truncate(cut);
            let _ = SequenceHeader::parse(&payload);
            let mut obu = vec![0x08];
            obu.extend_from_slice(&payload);
            fuzz(&obu);
        }
    }
}
