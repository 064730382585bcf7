//! VP9: the start of the uncompressed frame header, superframes (VP9 spec
//! Annex B), and the VPCodecConfigurationRecord (`vpcC`) of the VP codec
//! ISO-BMFF binding.
//!
//! The bus carries one frame or one superframe per media frame, as it
//! arrives from IVF, WebM or MP4.

use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::{BufMut, Bytes, BytesMut};

use crate::bits::BitReader;

const PROTOCOL: &str = "vp9";

fn error(kind: ProtocolErrorKind, context: impl Into<String>) -> ProtocolError {
    ProtocolError::new(PROTOCOL, kind, context)
}

/// `color_space` values of the VP9 color config (spec 7.2.2).
pub mod color_space {
    /// Unknown (in this case the colour space must be signalled outside the bitstream).
    pub const UNKNOWN: u8 = 0;
    /// Rec. ITU-R BT.601-7.
    pub const BT_601: u8 = 1;
    /// Rec. ITU-R BT.709-6.
    pub const BT_709: u8 = 2;
    /// SMPTE-170.
    pub const SMPTE_170: u8 = 3;
    /// SMPTE-240.
    pub const SMPTE_240: u8 = 4;
    /// Rec. ITU-R BT.2020-2.
    pub const BT_2020: u8 = 5;
    /// Reserved.
    pub const RESERVED: u8 = 6;
    /// sRGB (IEC 61966-2-1), 4:4:4 only.
    pub const RGB: u8 = 7;
}

/// The start of a VP9 uncompressed header (spec 6.2): through the frame
/// size on keyframes and intra-only frames.
///
/// The colour fields come from `color_config()`, which keyframes and the
/// intra-only frames of profiles 1 to 3 carry; intra-only frames of profile
/// 0 get the values the spec infers (8 bits, BT.601, 4:2:0). On other frames
/// (inter frames, `show_existing_frame`) nothing is known: `bit_depth` is 0,
/// `color_space` 0 and the flags false; `width` and `height` are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Profile, 0 to 3.
    pub profile: u8,
    /// `show_existing_frame`: the frame only shows an earlier decoded frame.
    pub show_existing_frame: bool,
    /// `frame_type == KEY_FRAME`.
    pub keyframe: bool,
    /// `show_frame` (true for `show_existing_frame`, which shows a frame).
    pub show_frame: bool,
    /// Bit depth: 8, 10 or 12; 0 when unknown.
    pub bit_depth: u8,
    /// `color_space` (see [`color_space`]).
    pub color_space: u8,
    /// `color_range`: true for full range.
    pub color_range: bool,
    /// `subsampling_x`.
    pub subsampling_x: bool,
    /// `subsampling_y`.
    pub subsampling_y: bool,
    /// `frame_width_minus_1 + 1` on keyframes and intra-only frames.
    pub width: Option<u32>,
    /// `frame_height_minus_1 + 1` on keyframes and intra-only frames.
    pub height: Option<u32>,
}

impl FrameHeader {
    /// Parses the start of one frame's uncompressed header (for a
    /// superframe, that of its first frame; see [`superframe_frames`]).
    ///
    /// ```
    /// use arcly_codec::vp9::FrameHeader;
    /// // The first keyframe libvpx wrote for testdata/vp9.ivf.
    /// let frame = [0x82, 0x49, 0x83, 0x42, 0x00, 0x09, 0xf0, 0x07, 0x76, 0x06];
    /// let header = FrameHeader::parse(&frame).unwrap();
    /// assert!(header.keyframe && header.show_frame);
    /// assert_eq!((header.profile, header.bit_depth), (0, 8));
    /// assert_eq!((header.width, header.height), (Some(160), Some(120)));
    /// ```
    pub fn parse(frame: &[u8]) -> Result<Self, ProtocolError> {
        let mut r = BitReader::new(PROTOCOL, frame);
        let marker = r.read_bits(2)?;
        if marker != 2 {
            return Err(error(ProtocolErrorKind::InvalidValue, format!("frame_marker {marker} is not 2")).at(0));
        }
        let low = r.read_bits(1)? as u8;
        let high = r.read_bits(1)? as u8;
        let profile = (high << 1) | low;
        if profile == 3 && r.read_flag()? {
            return Err(error(ProtocolErrorKind::Unsupported, "profile 3 reserved_zero bit is set (profile > 3)").at(0));
        }
        let mut header = FrameHeader { profile, ..FrameHeader::default() };
        if r.read_flag()? {
            header.show_existing_frame = true;
            header.show_frame = true;
            return Ok(header);
        }
        header.keyframe = !r.read_flag()?;
        header.show_frame = r.read_flag()?;
        let error_resilient = r.read_flag()?;
        let intra_only = if header.keyframe {
            true
        } else {
            let intra_only = !header.show_frame && r.read_flag()?;
            if !error_resilient {
                r.skip(2)?; // reset_frame_context
            }
            intra_only
        };
        if !intra_only {
            return Ok(header);
        }
        let sync = r.read_bits(24)?;
        if sync != 0x49_83_42 {
            return Err(error(ProtocolErrorKind::InvalidValue, format!("frame_sync_code {sync:#08x}")).at(1));
        }
        if header.keyframe || profile > 0 {
            color_config(&mut r, &mut header)?;
        } else {
            header.bit_depth = 8;
            header.color_space = color_space::BT_601;
            (header.subsampling_x, header.subsampling_y) = (true, true);
        }
        if !header.keyframe {
            r.skip(8)?; // refresh_frame_flags
        }
        header.width = Some(r.read_u32(16)? + 1);
        header.height = Some(r.read_u32(16)? + 1);
        Ok(header)
    }
}

/// `color_config()` (spec 6.2.2).
fn color_config(r: &mut BitReader<'_>, header: &mut FrameHeader) -> Result<(), ProtocolError> {
    let profile = header.profile;
    header.bit_depth = if profile >= 2 { if r.read_flag()? { 12 } else { 10 } } else { 8 };
    header.color_space = r.read_bits(3)? as u8;
    let odd_profile = profile == 1 || profile == 3;
    if header.color_space != color_space::RGB {
        header.color_range = r.read_flag()?;
        if odd_profile {
            header.subsampling_x = r.read_flag()?;
            header.subsampling_y = r.read_flag()?;
            if r.read_flag()? {
                return Err(error(ProtocolErrorKind::InvalidValue, "color_config reserved_zero bit is set"));
            }
        } else {
            (header.subsampling_x, header.subsampling_y) = (true, true);
        }
    } else {
        header.color_range = true;
        if !odd_profile {
            return Err(error(ProtocolErrorKind::InvalidValue, format!("RGB (4:4:4) in profile {profile}")));
        }
        if r.read_flag()? {
            return Err(error(ProtocolErrorKind::InvalidValue, "color_config reserved_zero bit is set"));
        }
    }
    Ok(())
}

/// The frames of a superframe (spec Annex B): the index at the end lists
/// their sizes. Data without a valid index (including an index whose sizes
/// do not fit) is one plain frame and comes back whole; empty data gives no
/// frames. Frames of size 0 are skipped.
///
/// ```
/// use arcly_codec::vp9::superframe_frames;
/// // Two frames of 2 and 1 bytes, index with 1-byte sizes.
/// let data = [0x86, 0x00, 0x8a, 0xc1, 0x02, 0x01, 0xc1];
/// assert_eq!(superframe_frames(&data), [&[0x86, 0x00][..], &[0x8a][..]]);
/// assert_eq!(superframe_frames(&[0x82, 0x49]), [&[0x82, 0x49][..]]);
/// ```
pub fn superframe_frames(data: &[u8]) -> Vec<&[u8]> {
    if data.is_empty() {
        return Vec::new();
    }
    superframe_index(data).unwrap_or_else(|| vec![data])
}

fn superframe_index(data: &[u8]) -> Option<Vec<&[u8]>> {
    let &marker = data.last()?;
    if marker & 0xe0 != 0xc0 {
        return None;
    }
    let size_bytes = usize::from((marker >> 3) & 3) + 1;
    let frames = usize::from(marker & 7) + 1;
    let index_len = 2 + size_bytes * frames;
    let body_len = data.len().checked_sub(index_len)?;
    if data[body_len] != marker {
        return None;
    }
    let index = &data[body_len + 1..data.len() - 1];
    let mut out = Vec::with_capacity(frames);
    let mut pos = 0;
    for entry in index.chunks_exact(size_bytes) {
        let size = entry.iter().rev().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if size > body_len - pos {
            return None;
        }
        if size > 0 {
            out.push(&data[pos..pos + size]);
        }
        pos += size;
    }
    Some(out)
}

/// A VPCodecConfigurationRecord as it appears in the `vpcC` box after the
/// FullBox version and flags (the fMP4 writer adds version 1 and flags 0),
/// and the bus `CONFIG` payload for VP9.
///
/// ```
/// use arcly_codec::vp9::{FrameHeader, VpConfig};
/// let frame = [0x82, 0x49, 0x83, 0x42, 0x00, 0x09, 0xf0, 0x07, 0x76, 0x06];
/// let config = VpConfig::from_keyframe(&FrameHeader::parse(&frame).unwrap());
/// let record = config.to_bytes();
/// assert_eq!(&record[..], &[0, 0, 0x82, 2, 2, 2, 0, 0]);
/// assert_eq!(VpConfig::parse(&record).unwrap(), config);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VpConfig {
    /// VP9 profile, 0 to 3.
    pub profile: u8,
    /// Level (10 = 1.0, ..., 62 = 6.2); 0 when undetermined.
    pub level: u8,
    /// Bit depth (4 bits): 8, 10 or 12.
    pub bit_depth: u8,
    /// `chromaSubsampling` (3 bits): 0 4:2:0 vertical (chroma left of
    /// luma), 1 4:2:0 colocated with luma (0,0), 2 4:2:2, 3 4:4:4.
    pub chroma_subsampling: u8,
    /// `videoFullRangeFlag`.
    pub video_full_range: bool,
    /// `colourPrimaries` (ISO/IEC 23091-4; 2 = unspecified).
    pub colour_primaries: u8,
    /// `transferCharacteristics` (ISO/IEC 23091-4; 2 = unspecified).
    pub transfer_characteristics: u8,
    /// `matrixCoefficients` (ISO/IEC 23091-4; 2 = unspecified).
    pub matrix_coefficients: u8,
    /// `codecIntializationData`; empty for VP8 and VP9.
    pub codec_init: Bytes,
}

impl VpConfig {
    /// Parses a record (without the FullBox version and flags).
    pub fn parse(record: &[u8]) -> Result<Self, ProtocolError> {
        let [profile, level, packed, primaries, transfer, matrix, s0, s1, rest @ ..] = record else {
            return Err(error(ProtocolErrorKind::Truncated, format!("vpcC of {} bytes, 8 needed", record.len())));
        };
        let size = usize::from(u16::from_be_bytes([*s0, *s1]));
        let codec_init = rest.get(..size).ok_or_else(|| {
            error(
                ProtocolErrorKind::Truncated,
                format!("vpcC codec initialization data of {size} bytes, {} left", rest.len()),
            )
            .at(6)
        })?;
        Ok(Self {
            profile: *profile,
            level: *level,
            bit_depth: packed >> 4,
            chroma_subsampling: (packed >> 1) & 7,
            video_full_range: packed & 1 != 0,
            colour_primaries: *primaries,
            transfer_characteristics: *transfer,
            matrix_coefficients: *matrix,
            codec_init: Bytes::copy_from_slice(codec_init),
        })
    }

    /// Serializes the record. Fields are masked to their widths; codec
    /// initialization data beyond 65,535 bytes is cut.
    pub fn to_bytes(&self) -> Bytes {
        let init = &self.codec_init[..self.codec_init.len().min(usize::from(u16::MAX))];
        let mut out = BytesMut::with_capacity(8 + init.len());
        out.put_u8(self.profile);
        out.put_u8(self.level);
        out.put_u8(
            ((self.bit_depth & 0x0f) << 4) | ((self.chroma_subsampling & 7) << 1) | u8::from(self.video_full_range),
        );
        out.put_u8(self.colour_primaries);
        out.put_u8(self.transfer_characteristics);
        out.put_u8(self.matrix_coefficients);
        out.put_u16(init.len() as u16);
        out.put_slice(init);
        out.freeze()
    }

    /// A record for the stream a keyframe starts.
    ///
    /// - `level` is 0: the level depends on the frame rate and bit rate,
    ///   which a header does not tell.
    /// - `chroma_subsampling`: 4:2:0 is written as 1 (colocated with luma),
    ///   as ffmpeg does when the chroma location is unspecified, since VP9
    ///   does not signal it; 4:2:2 is 2 and 4:4:4 is 3. 4:4:0, which the
    ///   record cannot express, is written as 3.
    /// - `matrix_coefficients` follows `color_space` as ffmpeg's VP9 decoder
    ///   maps it (BT.601 → 5, BT.709 → 1, SMPTE-170 → 6, SMPTE-240 → 7,
    ///   BT.2020 → 9, RGB → 0, unknown and reserved → 2); VP9 does not
    ///   signal primaries or transfer, so those are 2 (unspecified).
    pub fn from_keyframe(header: &FrameHeader) -> Self {
        let chroma_subsampling = match (header.subsampling_x, header.subsampling_y) {
            (true, true) => 1,
            (true, false) => 2,
            (false, _) => 3,
        };
        let matrix_coefficients = match header.color_space {
            color_space::BT_601 => 5,
            color_space::BT_709 => 1,
            color_space::SMPTE_170 => 6,
            color_space::SMPTE_240 => 7,
            color_space::BT_2020 => 9,
            color_space::RGB => 0,
            _ => 2,
        };
        Self {
            profile: header.profile,
            level: 0,
            bit_depth: header.bit_depth,
            chroma_subsampling,
            video_full_range: header.color_range,
            colour_primaries: 2,
            transfer_characteristics: 2,
            matrix_coefficients,
            codec_init: Bytes::new(),
        }
    }
}

/// Fuzz entry point: the parsers return instead of panicking, and a parsed
/// record survives a serialization round trip.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    let frames = superframe_frames(data);
    assert!(frames.iter().map(|f| f.len()).sum::<usize>() <= data.len());
    for frame in frames {
        if let Ok(header) = FrameHeader::parse(frame) {
            let _ = VpConfig::from_keyframe(&header);
        }
    }
    if let Ok(config) = VpConfig::parse(data) {
        assert_eq!(VpConfig::parse(&config.to_bytes()).as_ref(), Ok(&config), "vpcC round trip");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bits::BitWriter;
    use proptest::prelude::*;

    const KEYFRAME: [u8; 10] = [0x82, 0x49, 0x83, 0x42, 0x00, 0x09, 0xf0, 0x07, 0x76, 0x06];

    #[test]
    fn libvpx_keyframe() {
        let header = FrameHeader::parse(&KEYFRAME).unwrap();
        assert_eq!(
            header,
            FrameHeader {
                profile: 0,
                show_existing_frame: false,
                keyframe: true,
                show_frame: true,
                bit_depth: 8,
                color_space: 0,
                color_range: false,
                subsampling_x: true,
                subsampling_y: true,
                width: Some(160),
                height: Some(120),
            }
        );
        for cut in 0..9 {
            assert!(FrameHeader::parse(&KEYFRAME[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_sync = KEYFRAME;
        bad_sync[2] = 0x84;
        assert_eq!(FrameHeader::parse(&bad_sync).unwrap_err().kind, ProtocolErrorKind::InvalidValue);
        assert!(FrameHeader::parse(&[0x42, 0x49]).is_err(), "frame marker");
    }

    struct Header {
        profile: u8,
        keyframe: bool,
        show_frame: bool,
        error_resilient: bool,
        intra_only: bool,
    }

    fn build(h: &Header, color: impl FnOnce(&mut BitWriter)) -> Vec<u8> {
        let mut w = BitWriter::default();
        w.write_bits(2, 2);
        w.write_bits(u64::from(h.profile & 1), 1);
        w.write_bits(u64::from(h.profile >> 1), 1);
        if h.profile == 3 {
            w.write_flag(false);
        }
        w.write_flag(false); // show_existing_frame
        w.write_flag(!h.keyframe);
        w.write_flag(h.show_frame);
        w.write_flag(h.error_resilient);
        if !h.keyframe {
            if !h.show_frame {
                w.write_flag(h.intra_only);
            }
            if !h.error_resilient {
                w.write_bits(0, 2);
            }
        }
        if h.keyframe || h.intra_only {
            w.write_bits(0x49_83_42, 24);
            color(&mut w);
            if !h.keyframe {
                w.write_bits(0xff, 8);
            }
            w.write_bits(1279, 16);
            w.write_bits(719, 16);
        }
        w.write_bits(0, 16);
        w.finish()
    }

    #[test]
    fn profiles_and_frame_kinds() {
        // Profile 2 keyframe: 10-bit BT.2020 limited range.
        let key = Header { profile: 2, keyframe: true, show_frame: true, error_resilient: false, intra_only: false };
        let data = build(&key, |w| {
            w.write_flag(false);
            w.write_bits(5, 3);
            w.write_flag(false);
        });
        let h = FrameHeader::parse(&data).unwrap();
        assert_eq!((h.profile, h.bit_depth, h.color_space), (2, 10, color_space::BT_2020));
        assert_eq!((h.width, h.height), (Some(1280), Some(720)));
        let config = VpConfig::from_keyframe(&h);
        assert_eq!((config.bit_depth, config.chroma_subsampling, config.matrix_coefficients), (10, 1, 9));
        // Profile 3 intra-only frame: 12-bit RGB.
        let intra = Header { profile: 3, keyframe: false, show_frame: false, error_resilient: true, intra_only: true };
        let data = build(&intra, |w| {
            w.write_flag(true);
            w.write_bits(7, 3);
            w.write_flag(false);
        });
        let h = FrameHeader::parse(&data).unwrap();
        assert!(!h.keyframe && !h.show_frame && h.color_range);
        assert_eq!((h.profile, h.bit_depth, h.subsampling_x, h.subsampling_y), (3, 12, false, false));
        assert_eq!(h.width, Some(1280));
        let config = VpConfig::from_keyframe(&h);
        assert_eq!((config.chroma_subsampling, config.matrix_coefficients, config.video_full_range), (3, 0, true));
        // Profile 1 keyframe, 4:2:2 full range.
        let key1 = Header { profile: 1, ..key };
        let data = build(&key1, |w| {
            w.write_bits(2, 3);
            w.write_flag(true);
            w.write_bits(0b100, 3);
        });
        let h = FrameHeader::parse(&data).unwrap();
        assert_eq!((h.subsampling_x, h.subsampling_y, h.color_range), (true, false, true));
        assert_eq!(VpConfig::from_keyframe(&h).chroma_subsampling, 2);
        // Reserved bit set.
        let data = build(&key1, |w| {
            w.write_bits(2, 3);
            w.write_flag(true);
            w.write_bits(0b101, 3);
        });
        assert!(FrameHeader::parse(&data).is_err());
        // RGB is not allowed in profile 0.
        let key0 = Header { profile: 0, ..key };
        assert!(FrameHeader::parse(&build(&key0, |w| w.write_bits(7, 3))).is_err());
        // Profile 0 intra-only frame: no colour config, inferred values.
        let intra0 = Header { profile: 0, ..intra };
        let h = FrameHeader::parse(&build(&intra0, |_| {})).unwrap();
        assert_eq!((h.bit_depth, h.color_space, h.width), (8, color_space::BT_601, Some(1280)));
        // Inter frame: nothing past the frame type.
        let inter = Header { profile: 0, keyframe: false, show_frame: true, error_resilient: false, intra_only: false };
        let h = FrameHeader::parse(&build(&inter, |_| {})).unwrap();
        assert_eq!((h.keyframe, h.show_frame, h.bit_depth, h.width), (false, true, 0, None));
        // show_existing_frame.
        let h = FrameHeader::parse(&[0b1000_1000]).unwrap();
        assert!(h.show_existing_frame && h.show_frame && !h.keyframe);
        // Profile 3's reserved bit set means profile 4.
        assert_eq!(FrameHeader::parse(&[0b1011_1000]).unwrap_err().kind, ProtocolErrorKind::Unsupported);
    }

    #[test]
    fn superframes() {
        // Two-byte sizes, three frames, one of them empty.
        let mut data = vec![0x86; 300];
        data.extend_from_slice(&[0x8a; 2]);
        let marker = 0b1100_1010;
        data.extend_from_slice(&[marker, 0x2c, 0x01, 0x00, 0x00, 0x02, 0x00, marker]);
        let frames = superframe_frames(&data);
        assert_eq!(frames.iter().map(|f| f.len()).collect::<Vec<_>>(), [300, 2]);
        assert_eq!(frames[1], [0x8a, 0x8a]);
        // Sizes larger than the data: not a superframe.
        let bad = [0x86, 0xc1, 0x05, 0x05, 0xc1];
        assert_eq!(superframe_frames(&bad), [&bad[..]]);
        // Marker byte at the end but not at the start of the index.
        let plain = [0x86, 0x00, 0x01, 0xc1];
        assert_eq!(superframe_frames(&plain), [&plain[..]]);
        assert!(superframe_frames(&[]).is_empty());
    }

    #[test]
    fn record_layout_and_errors() {
        let config = VpConfig {
            profile: 2,
            level: 31,
            bit_depth: 10,
            chroma_subsampling: 1,
            video_full_range: true,
            colour_primaries: 9,
            transfer_characteristics: 16,
            matrix_coefficients: 9,
            codec_init: Bytes::new(),
        };
        let bytes = config.to_bytes();
        assert_eq!(&bytes[..], &[2, 31, 0xa3, 9, 16, 9, 0, 0]);
        assert_eq!(VpConfig::parse(&bytes).unwrap(), config);
        assert!(VpConfig::parse(&bytes[..7]).is_err());
        assert_eq!(VpConfig::parse(&[2, 31, 0xa3, 9, 16, 9, 0, 2, 1]).unwrap_err().kind, ProtocolErrorKind::Truncated);
    }

    fn arb_config() -> impl Strategy<Value = VpConfig> {
        (
            (any::<u8>(), any::<u8>(), 0u8..16, 0u8..8, any::<bool>()),
            (any::<u8>(), any::<u8>(), any::<u8>(), prop::collection::vec(any::<u8>(), 0..32)),
        )
            .prop_map(|((profile, level, bit_depth, chroma, full), (cp, tc, mc, init))| VpConfig {
                profile,
                level,
                bit_depth,
                chroma_subsampling: chroma,
                video_full_range: full,
                colour_primaries: cp,
                transfer_characteristics: tc,
                matrix_coefficients: mc,
                codec_init: Bytes::from(init),
            })
    }

    proptest! {
        #[test]
        fn record_round_trip(config in arb_config()) {
            prop_assert_eq!(VpConfig::parse(&config.to_bytes()).unwrap(), config);
        }

        #[test]
        fn parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..100)) {
            fuzz(&data);
        }

        /// Any frame sizes packed with an index come back unchanged.
        #[test]
        fn superframe_round_trip(sizes in prop::collection::vec(1usize..600, 1..=8), size_bytes in 2usize..=4) {
            let mut data = Vec::new();
            for (i, &size) in sizes.iter().enumerate() {
                data.extend(std::iter::repeat_n(i as u8, size));
            }
            let marker = 0xc0 | (((size_bytes - 1) as u8) << 3) | (sizes.len() - 1) as u8;
            data.push(marker);
            for &size in &sizes {
                data.extend_from_slice(&(size as u32).to_le_bytes()[..size_bytes]);
            }
            data.push(marker);
            let frames = superframe_frames(&data);
            prop_assert_eq!(frames.len(), sizes.len());
            for (i, (frame, &size)) in frames.iter().zip(&sizes).enumerate() {
                prop_assert_eq!(frame.len(), size);
                prop_assert!(frame.iter().all(|&b| b == i as u8));
            }
        }
    }
}
