//! Opus: the identification header `OpusHead` (RFC 7845 §5.1), its MP4
//! form `dOps` ("Encapsulation of Opus in ISO Base Media File Format"
//! §4.3.2), and packet durations (RFC 6716 §3.1).
//!
//! On the bus an Opus frame is one Opus packet, and the `CONFIG` frame is
//! an [`OpusHead`].

use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::{BufMut, Bytes, BytesMut};

const PROTOCOL: &str = "opus";

const MAGIC: &[u8; 8] = b"OpusHead";

/// The sample rate Opus timestamps and `pre_skip` count in.
pub const SAMPLE_RATE: u32 = 48000;

fn invalid(context: impl Into<String>) -> ProtocolError {
    ProtocolError::new(PROTOCOL, ProtocolErrorKind::InvalidValue, context)
}

fn truncated(context: impl Into<String>) -> ProtocolError {
    ProtocolError::new(PROTOCOL, ProtocolErrorKind::Truncated, context)
}

/// How the decoded streams map to output channels (RFC 7845 §5.1.1),
/// present when the mapping family is not 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelMapping {
    /// Opus streams in each packet (at least 1).
    pub stream_count: u8,
    /// How many of those streams are stereo (coupled).
    pub coupled_count: u8,
    /// For each output channel, the decoded channel it comes from, or 255
    /// for silence. One entry per channel.
    pub mapping: Vec<u8>,
}

/// The Opus identification header: the `CONFIG` payload of Opus on the bus.
///
/// ```
/// use arcly_codec::opus::OpusHead;
/// let head = OpusHead::new(2, 48000);
/// let bytes = head.to_bytes();
/// assert_eq!(&bytes[..8], b"OpusHead");
/// assert_eq!(bytes.len(), 19);
/// assert_eq!(OpusHead::parse(&bytes).unwrap(), head);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpusHead {
    /// Header version: 1 when written; any version 0–15 is accepted.
    pub version: u8,
    /// Output channel count (at least 1).
    pub channels: u8,
    /// Samples at 48 kHz to drop from the start of the decoded output.
    pub pre_skip: u16,
    /// The encoder's input sample rate in Hz, for information only (0 when
    /// unknown); Opus always decodes at up to 48 kHz.
    pub input_sample_rate: u32,
    /// Output gain in Q7.8 dB.
    pub output_gain: i16,
    /// Channel mapping family: 0 mono/stereo, 1 Vorbis order (up to 8
    /// channels), 255 unspecified, others as registered.
    pub mapping_family: u8,
    /// The channel mapping table; present exactly when `mapping_family`
    /// is not 0.
    pub mapping: Option<ChannelMapping>,
}

/// Vorbis channel order stream layouts for 1–8 channels (RFC 7845
/// §5.1.1.2), as libopus's surround encoder uses them.
const VORBIS_LAYOUTS: [(u8, u8, &[u8]); 8] = [
    (1, 0, &[0]),
    (1, 1, &[0, 1]),
    (2, 1, &[0, 2, 1]),
    (2, 2, &[0, 1, 2, 3]),
    (3, 2, &[0, 4, 1, 2, 3]),
    (4, 2, &[0, 4, 1, 2, 3, 5]),
    (4, 3, &[0, 4, 1, 2, 3, 5, 6]),
    (5, 3, &[0, 6, 1, 2, 3, 4, 5, 7]),
];

impl OpusHead {
    /// A header with libopus's defaults: version 1, pre-skip 312 (what
    /// libopus reports as its lookahead at 48 kHz), no gain. One or two
    /// channels use family 0; 3–8 use family 1 with the Vorbis layouts;
    /// more use family 255 with one uncoupled stream per channel.
    /// `channels` must be at least 1.
    pub fn new(channels: u8, input_sample_rate: u32) -> Self {
        let (mapping_family, mapping) = match channels {
            0..=2 => (0, None),
            3..=8 => {
                let (stream_count, coupled_count, table) = VORBIS_LAYOUTS[usize::from(channels - 1)];
                (1, Some(ChannelMapping { stream_count, coupled_count, mapping: table.to_vec() }))
            }
            _ => (
                255,
                Some(ChannelMapping { stream_count: channels, coupled_count: 0, mapping: (0..channels).collect() }),
            ),
        };
        OpusHead { version: 1, channels, pre_skip: 312, input_sample_rate, output_gain: 0, mapping_family, mapping }
    }

    /// Parses an `OpusHead` packet. Bytes after the header are ignored, as
    /// RFC 7845 asks of later minor versions.
    pub fn parse(data: &[u8]) -> Result<Self, ProtocolError> {
        let rest = data.strip_prefix(MAGIC).ok_or_else(|| invalid("missing \"OpusHead\" magic"))?;
        let fixed: &[u8; 11] = rest
            .get(..11)
            .and_then(|f| f.try_into().ok())
            .ok_or_else(|| truncated(format!("OpusHead of {} bytes < 19", data.len())))?;
        let version = fixed[0];
        if version >> 4 != 0 {
            return Err(ProtocolError::new(
                PROTOCOL,
                ProtocolErrorKind::Unsupported,
                format!("OpusHead version {version} (major version {})", version >> 4),
            )
            .at(8));
        }
        let head = OpusHead {
            version,
            channels: fixed[1],
            pre_skip: u16::from_le_bytes([fixed[2], fixed[3]]),
            input_sample_rate: u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            output_gain: i16::from_le_bytes([fixed[8], fixed[9]]),
            mapping_family: fixed[10],
            mapping: None,
        };
        finish_with_mapping(head, rest.get(11..).unwrap_or_default(), 19)
    }

    /// Serializes the header (little-endian, with the magic). The mapping
    /// table is written when present.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(21 + usize::from(self.channels));
        out.put_slice(MAGIC);
        out.put_u8(self.version);
        out.put_u8(self.channels);
        out.put_u16_le(self.pre_skip);
        out.put_u32_le(self.input_sample_rate);
        out.put_i16_le(self.output_gain);
        out.put_u8(self.mapping_family);
        if let Some(m) = &self.mapping {
            out.put_u8(m.stream_count);
            out.put_u8(m.coupled_count);
            out.put_slice(&m.mapping);
        }
        out.freeze()
    }

    /// The payload of an MP4 `dOps` box (Opus Specific Box): version 0,
    /// then the same fields as `OpusHead` without the magic, big-endian.
    ///
    /// ```
    /// use arcly_codec::opus::OpusHead;
    /// let dops = OpusHead::new(2, 44100).to_dops();
    /// assert_eq!(&dops[..], &[0, 2, 0x01, 0x38, 0, 0, 0xac, 0x44, 0, 0, 0]);
    /// ```
    pub fn to_dops(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(13 + usize::from(self.channels));
        out.put_u8(0);
        out.put_u8(self.channels);
        out.put_u16(self.pre_skip);
        out.put_u32(self.input_sample_rate);
        out.put_i16(self.output_gain);
        out.put_u8(self.mapping_family);
        if let Some(m) = &self.mapping {
            out.put_u8(m.stream_count);
            out.put_u8(m.coupled_count);
            out.put_slice(&m.mapping);
        }
        out.freeze()
    }

    /// Parses the payload of an MP4 `dOps` box (the inverse of
    /// [`OpusHead::to_dops`]); `version` comes out as 1, the `OpusHead`
    /// version the box describes.
    ///
    /// ```
    /// use arcly_codec::opus::OpusHead;
    /// let head = OpusHead::new(6, 48000);
    /// assert_eq!(OpusHead::from_dops(&head.to_dops()).unwrap(), head);
    /// ```
    pub fn from_dops(data: &[u8]) -> Result<Self, ProtocolError> {
        let fixed: &[u8; 11] = data
            .get(..11)
            .and_then(|f| f.try_into().ok())
            .ok_or_else(|| truncated(format!("dOps of {} bytes < 11", data.len())))?;
        if fixed[0] != 0 {
            let context = format!("dOps version {}", fixed[0]);
            return Err(ProtocolError::new(PROTOCOL, ProtocolErrorKind::Unsupported, context).at(0));
        }
        let head = OpusHead {
            version: 1,
            channels: fixed[1],
            pre_skip: u16::from_be_bytes([fixed[2], fixed[3]]),
            input_sample_rate: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
            output_gain: i16::from_be_bytes([fixed[8], fixed[9]]),
            mapping_family: fixed[10],
            mapping: None,
        };
        finish_with_mapping(head, data.get(11..).unwrap_or_default(), 11)
    }
}

/// Validates the channel count, then reads and validates the mapping table
/// in `rest` (which starts at byte `offset` of the input) when the family
/// needs one.
fn finish_with_mapping(mut head: OpusHead, rest: &[u8], offset: u64) -> Result<OpusHead, ProtocolError> {
    let channels = head.channels;
    if channels == 0 {
        return Err(invalid("channel count 0"));
    }
    match head.mapping_family {
        0 if channels > 2 => return Err(invalid(format!("mapping family 0 with {channels} channels"))),
        0 => return Ok(head),
        1 if channels > 8 => return Err(invalid(format!("mapping family 1 with {channels} channels"))),
        _ => {}
    }
    let [stream_count, coupled_count, table @ ..] = rest else {
        return Err(truncated("channel mapping table missing").at(offset));
    };
    let table = table.get(..usize::from(channels)).ok_or_else(|| {
        truncated(format!("channel mapping of {} entries, {channels} channels", table.len())).at(offset + 2)
    })?;
    let (streams, coupled) = (*stream_count, *coupled_count);
    if streams == 0 {
        return Err(invalid("stream count 0").at(offset));
    }
    if coupled > streams {
        return Err(invalid(format!("coupled count {coupled} > stream count {streams}")).at(offset + 1));
    }
    let decoded = u16::from(streams) + u16::from(coupled);
    if decoded > 255 {
        return Err(invalid(format!("{streams} streams + {coupled} coupled > 255 decoded channels")).at(offset));
    }
    if let Some((i, &c)) = table.iter().enumerate().find(|&(_, &c)| c != 255 && u16::from(c) >= decoded) {
        let context = format!("channel {i} maps to decoded channel {c} of {decoded}");
        return Err(invalid(context).at(offset + 2 + i as u64));
    }
    head.mapping = Some(ChannelMapping { stream_count: streams, coupled_count: coupled, mapping: table.to_vec() });
    Ok(head)
}

/// The duration of an Opus packet in samples at 48 kHz, from its TOC byte
/// and frame count (RFC 6716 §3.1–3.2). Packets over 120 ms are invalid.
///
/// ```
/// use arcly_codec::opus::packet_samples;
/// assert_eq!(packet_samples(&[0xfc, 0xff]).unwrap(), 960); // CELT 20 ms, one frame
/// assert_eq!(packet_samples(&[0x79, 0x00]).unwrap(), 1920); // CELT 20 ms, two frames
/// assert!(packet_samples(&[]).is_err());
/// ```
pub fn packet_samples(packet: &[u8]) -> Result<u32, ProtocolError> {
    let toc = *packet.first().ok_or_else(|| truncated("empty Opus packet"))?;
    let config = toc >> 3;
    // Frame sizes at 48 kHz per configuration (RFC 6716 Table 2).
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*packet.get(1).ok_or_else(|| truncated("code 3 Opus packet without frame count"))? & 0x3f),
    };
    let samples = frame * frames;
    if frames == 0 || samples > 5760 {
        return Err(invalid(format!("Opus packet of {frames} frames of {frame} samples")));
    }
    Ok(samples)
}

/// Fuzz entry point: parsers must return, and accepted headers must
/// round-trip through both forms.
#[doc(hidden)]
pub fn fuzz(data: &[u8]) {
    if let Ok(head) = OpusHead::parse(data) {
        assert_eq!(OpusHead::parse(&head.to_bytes()).as_ref(), Ok(&head), "OpusHead round trip");
        let from_dops = OpusHead::from_dops(&head.to_dops()).expect("dOps of a valid header parses");
        assert_eq!(from_dops, OpusHead { version: 1, ..head });
    }
    if let Ok(head) = OpusHead::from_dops(data) {
        assert_eq!(OpusHead::from_dops(&head.to_dops()).as_ref(), Ok(&head), "dOps round trip");
    }
    let _ = packet_samples(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_stereo_header() {
        // What libopus-based muxers write for 48 kHz stereo.
        let bytes = [b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', 1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0];
        let head = OpusHead::parse(&bytes).unwrap();
        assert_eq!(head, OpusHead::new(2, 48000));
        assert_eq!(&head.to_bytes()[..], &bytes[..]);
        assert_eq!(&head.to_dops()[..], &[0, 2, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]);
    }

    #[test]
    fn surround_header() {
        let head = OpusHead::new(6, 48000);
        assert_eq!(head.mapping_family, 1);
        let m = head.mapping.as_ref().unwrap();
        assert_eq!((m.stream_count, m.coupled_count, m.mapping.len()), (4, 2, 6));
        let bytes = head.to_bytes();
        assert_eq!(bytes.len(), 21 + 6);
        assert_eq!(OpusHead::parse(&bytes).unwrap(), head);
        let many = OpusHead::new(12, 48000);
        assert_eq!(many.mapping_family, 255);
        assert_eq!(OpusHead::parse(&many.to_bytes()).unwrap(), many);
        let dops = head.to_dops();
        assert_eq!(&dops[11..], &[4, 2, 0, 4, 1, 2, 3, 5]);
    }

    #[test]
    fn negative_gain_and_version() {
        let head = OpusHead { output_gain: -256, version: 15, ..OpusHead::new(1, 16000) };
        let bytes = head.to_bytes();
        assert_eq!(&bytes[16..18], &[0x00, 0xff]);
        assert_eq!(OpusHead::parse(&bytes).unwrap(), head);
        assert_eq!(&head.to_dops()[8..10], &[0xff, 0x00]);
    }

    #[test]
    fn invalid_headers() {
        let good = OpusHead::new(2, 48000).to_bytes();
        assert!(OpusHead::parse(&good[..18]).is_err(), "truncated");
        assert!(OpusHead::parse(b"OpusTags\x01\x02\x38\x01\x80\xbb\0\0\0\0\0").is_err(), "wrong magic");
        let with = |i: usize, b: u8| {
            let mut v = good.to_vec();
            v[i] = b;
            v
        };
        assert_eq!(OpusHead::parse(&with(8, 0x10)).unwrap_err().kind, ProtocolErrorKind::Unsupported);
        assert!(OpusHead::parse(&with(9, 0)).is_err(), "no channels");
        assert!(OpusHead::parse(&with(9, 3)).is_err(), "family 0 with 3 channels");
        assert!(OpusHead::parse(&with(18, 1)).is_err(), "family 1 without a table");
        // Family 1 tables: valid, then each kind of bad.
        let table = |streams: u8, coupled: u8, map: &[u8]| {
            let mut v = with(18, 1);
            v.extend_from_slice(&[streams, coupled]);
            v.extend_from_slice(map);
            OpusHead::parse(&v)
        };
        assert!(table(1, 1, &[0, 1]).is_ok());
        assert!(table(2, 0, &[1, 255]).is_ok());
        assert!(table(1, 1, &[0]).is_err(), "table too short");
        assert!(table(0, 0, &[0, 1]).is_err(), "no streams");
        assert!(table(1, 2, &[0, 1]).is_err(), "coupled > streams");
        assert!(table(1, 1, &[0, 2]).is_err(), "entry beyond decoded channels");
        let mut nine = with(18, 1);
        nine[9] = 9;
        nine.extend_from_slice(&[9, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert!(OpusHead::parse(&nine).is_err(), "family 1 with 9 channels");
        nine[18] = 255;
        assert!(OpusHead::parse(&nine).is_ok(), "family 255 with 9 channels");
        assert!(OpusHead::from_dops(&[1, 2, 0, 0, 0, 0, 0xbb, 0x80, 0, 0, 0]).is_err(), "dOps version 1");
        assert!(OpusHead::from_dops(&[0, 2, 0, 0, 0, 0, 0xbb, 0x80, 0, 0]).is_err(), "dOps truncated");
    }

    #[test]
    fn packet_durations() {
        assert_eq!(packet_samples(&[0x00]).unwrap(), 480); // SILK NB 10 ms
        assert_eq!(packet_samples(&[0x18]).unwrap(), 2880); // SILK NB 60 ms
        assert_eq!(packet_samples(&[0x78]).unwrap(), 960); // hybrid FB 20 ms
        assert_eq!(packet_samples(&[0x80]).unwrap(), 120); // CELT NB 2.5 ms
        assert_eq!(packet_samples(&[0xfb, 0x06]).unwrap(), 5760); // 6 x 20 ms
        assert!(packet_samples(&[0xfb, 0x07]).is_err(), "140 ms");
        assert!(packet_samples(&[0xfb, 0x00]).is_err(), "no frames");
        assert!(packet_samples(&[0xfb]).is_err(), "frame count missing");
    }

    prop_compose! {
        fn any_head()(
            channels in 1u8..=255,
            family in prop_oneof![Just(0u8), Just(1), Just(255), 2u8..255],
            version in 0u8..16,
            pre_skip in any::<u16>(),
            input_sample_rate in any::<u32>(),
            output_gain in any::<i16>(),
            streams in 1u8..=127,
            coupled_seed in any::<u8>(),
            map_seed in prop::collection::vec(any::<u8>(), 255),
        ) -> OpusHead {
            let (channels, mapping) = match family {
                0 => (channels % 2 + 1, None),
                _ => {
                    let channels = if family == 1 { channels % 8 + 1 } else { channels };
                    let coupled = coupled_seed % (streams + 1);
                    let decoded = u16::from(streams) + u16::from(coupled);
                    let mapping = map_seed[..usize::from(channels)]
                        .iter()
                        .map(|&m| if m == 255 { 255 } else { (u16::from(m) % decoded) as u8 })
                        .collect();
                    (channels, Some(ChannelMapping { stream_count: streams, coupled_count: coupled, mapping }))
                }
            };
            OpusHead { version, channels, pre_skip, input_sample_rate, output_gain, mapping_family: family, mapping }
        }
    }

    proptest! {
        #[test]
        fn opus_head_round_trip(head in any_head()) {
            prop_assert_eq!(OpusHead::parse(&head.to_bytes()).unwrap(), head.clone());
            prop_assert_eq!(OpusHead::from_dops(&head.to_dops()).unwrap(), OpusHead { version: 1, ..head });
        }

        #[test]
        fn new_is_valid(channels in 1u8..=255, rate in any::<u32>()) {
            let head = OpusHead::new(channels, rate);
            prop_assert_eq!(OpusHead::parse(&head.to_bytes()).unwrap(), head);
        }

        #[test]
        fn parsers_never_panic(data in prop::collection::vec(any::<u8>(), 0..64)) {
            fuzz(&data);
        }

        #[test]
        fn headers_with_magic_never_panic(tail in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut data = MAGIC.to_vec();
            data.extend(tail);
            fuzz(&data);
        }
    }
}
