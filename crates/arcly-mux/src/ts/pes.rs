//! PES headers and 33-bit MPEG timestamps.

use arcly_core::{ProtocolError, ProtocolErrorKind};

use super::err;

/// PTS, DTS and the PCR base count 90 kHz ticks modulo 2^33.
pub const TIMESTAMP_MODULUS: i64 = 1 << 33;

/// Encodes a 33-bit timestamp (wrapped modulo 2^33) in the 5-byte PES
/// layout with marker bits; `prefix` is the 4-bit code in the high nibble
/// (`0b0010` PTS only, `0b0011` PTS of a PTS+DTS pair, `0b0001` DTS).
///
/// ```
/// use arcly_mux::ts::{decode_timestamp, encode_timestamp};
/// let bytes = encode_timestamp(0b0010, 133_200);
/// assert_eq!(decode_timestamp(&bytes), 133_200);
/// // Negative and too-large values wrap.
/// assert_eq!(decode_timestamp(&encode_timestamp(0b0010, -1)), (1 << 33) - 1);
/// ```
pub fn encode_timestamp(prefix: u8, ts: i64) -> [u8; 5] {
    let ts = ts.rem_euclid(TIMESTAMP_MODULUS) as u64;
    [
        (prefix << 4) | (((ts >> 30) as u8 & 0x07) << 1) | 1,
        (ts >> 22) as u8,
        (((ts >> 15) as u8) << 1) | 1,
        (ts >> 7) as u8,
        ((ts as u8) << 1) | 1,
    ]
}

/// Decodes a 5-byte PES timestamp into `0..2^33`. Marker bits are not
/// checked: muxers in the field get them wrong and the value is still good.
pub fn decode_timestamp(b: &[u8; 5]) -> i64 {
    (i64::from((b[0] >> 1) & 0x07) << 30)
        | (i64::from(b[1]) << 22)
        | (i64::from(b[2] >> 1) << 15)
        | (i64::from(b[3]) << 7)
        | i64::from(b[4] >> 1)
}

/// Extends 33-bit timestamps into monotonically continuing `i64` values:
/// each raw value becomes the extension nearest the previous result, so a
/// wrap from `2^33 - 1` to `0` continues at `2^33`.
///
/// ```
/// use arcly_mux::ts::TimestampUnwrapper;
/// let mut u = TimestampUnwrapper::default();
/// assert_eq!(u.unwrap((1 << 33) - 3_600), (1 << 33) - 3_600);
/// assert_eq!(u.unwrap(0), 1 << 33);
/// assert_eq!(u.unwrap((1 << 33) - 1_800), (1 << 33) - 1_800); // a B-frame from before the wrap
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct TimestampUnwrapper {
    last: Option<i64>,
}

impl TimestampUnwrapper {
    /// The extended value of `raw` (taken modulo 2^33).
    pub fn unwrap(&mut self, raw: i64) -> i64 {
        let raw = raw.rem_euclid(TIMESTAMP_MODULUS);
        let value = match self.last {
            None => raw,
            Some(last) => {
                let mut v = last - last.rem_euclid(TIMESTAMP_MODULUS) + raw;
                let half = TIMESTAMP_MODULUS / 2;
                if v - last > half {
                    v -= TIMESTAMP_MODULUS;
                } else if last - v > half {
                    v += TIMESTAMP_MODULUS;
                }
                v
            }
        };
        self.last = Some(value);
        value
    }
}

/// PES stream_id values this crate writes.
pub(crate) mod stream_id {
    /// The first MPEG video stream.
    pub(crate) const VIDEO: u8 = 0xE0;
    /// The first MPEG audio stream (AAC).
    pub(crate) const AUDIO: u8 = 0xC0;
    /// private_stream_1 (Opus).
    pub(crate) const PRIVATE_1: u8 = 0xBD;
}

/// The longest PES header this crate writes: 9 fixed bytes, PTS and DTS.
pub(crate) const MAX_HEADER_LEN: usize = 19;

/// Writes a PES header into `buf` and returns its length. `es_len` is the
/// elementary-stream byte count that follows; `None` writes
/// `PES_packet_length` 0 (unbounded, video only).
pub(crate) fn write_header(
    buf: &mut [u8; MAX_HEADER_LEN],
    stream_id: u8,
    pts: i64,
    dts: Option<i64>,
    es_len: Option<usize>,
) -> Result<usize, ProtocolError> {
    let header_data_len = if dts.is_some() { 10 } else { 5 };
    let packet_length = match es_len {
        None => 0,
        Some(n) => u16::try_from(3 + header_data_len + n).map_err(|_| {
            err(ProtocolErrorKind::TooLarge, format!("audio PES of {n} bytes exceeds PES_packet_length"))
        })?,
    };
    buf[..4].copy_from_slice(&[0, 0, 1, stream_id]);
    buf[4..6].copy_from_slice(&packet_length.to_be_bytes());
    // '10' marker, data_alignment_indicator: every PES starts an access unit.
    buf[6] = 0x84;
    buf[7] = if dts.is_some() { 0xC0 } else { 0x80 };
    buf[8] = header_data_len as u8;
    match dts {
        Some(dts) => {
            buf[9..14].copy_from_slice(&encode_timestamp(0b0011, pts));
            buf[14..19].copy_from_slice(&encode_timestamp(0b0001, dts));
        }
        None => buf[9..14].copy_from_slice(&encode_timestamp(0b0010, pts)),
    }
    Ok(9 + header_data_len)
}

/// A parsed PES header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PesHeader {
    /// Raw 33-bit PTS, if present.
    pub(crate) pts: Option<i64>,
    /// Raw 33-bit DTS, if present.
    pub(crate) dts: Option<i64>,
    /// Where the elementary stream data starts.
    pub(crate) payload_offset: usize,
    /// `PES_packet_length` (0 = unbounded).
    pub(crate) packet_length: usize,
}

/// Parses the PES header at the start of `data`.
pub(crate) fn parse_header(data: &[u8]) -> Result<PesHeader, ProtocolError> {
    let truncated = || err(ProtocolErrorKind::Truncated, format!("PES header truncated ({} bytes)", data.len()));
    let fixed = data.get(..6).ok_or_else(truncated)?;
    if fixed[..3] != [0, 0, 1] {
        return Err(err(ProtocolErrorKind::InvalidValue, "PES start code prefix missing"));
    }
    let stream_id = fixed[3];
    let packet_length = usize::from(u16::from_be_bytes([fixed[4], fixed[5]]));
    // padding_stream, private_stream_2, ECM, EMM, DSMCC, H.222.1 type E and
    // the program stream directory have no optional header.
    if matches!(stream_id, 0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF) {
        return Ok(PesHeader { pts: None, dts: None, payload_offset: 6, packet_length });
    }
    let opt = data.get(6..9).ok_or_else(truncated)?;
    if opt[0] & 0xC0 != 0x80 {
        return Err(err(ProtocolErrorKind::InvalidValue, "PES optional header marker is not '10'"));
    }
    let payload_offset = 9 + usize::from(opt[2]);
    let ts_at = |at: usize| data.get(at..at + 5).and_then(|b| b.first_chunk::<5>()).map(decode_timestamp);
    let (pts, dts) = match opt[1] >> 6 {
        0b10 => (Some(ts_at(9).ok_or_else(truncated)?), None),
        0b11 => (Some(ts_at(9).ok_or_else(truncated)?), Some(ts_at(14).ok_or_else(truncated)?)),
        _ => (None, None),
    };
    let needed = 9 + if dts.is_some() {
        10
    } else if pts.is_some() {
        5
    } else {
        0
    };
    if payload_offset < needed || payload_offset > data.len() {
        return Err(err(ProtocolErrorKind::InvalidValue, "PES_header_data_length inconsistent with its fields"));
    }
    Ok(PesHeader { pts, dts, payload_offset, packet_length })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timestamp_known_bytes() {
        // The first video PES of testdata/h264_aac.ts: PTS 133200, DTS 126000.
        assert_eq!(encode_timestamp(0b0011, 133_200), [0x31, 0x00, 0x09, 0x10, 0xA1]);
        assert_eq!(encode_timestamp(0b0001, 126_000), [0x11, 0x00, 0x07, 0xD8, 0x61]);
        assert_eq!(decode_timestamp(&[0x31, 0x00, 0x09, 0x10, 0xA1]), 133_200);
        assert_eq!(decode_timestamp(&encode_timestamp(0b0010, TIMESTAMP_MODULUS + 5)), 5);
    }

    #[test]
    fn header_round_trip() {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let n = write_header(&mut buf, stream_id::VIDEO, 133_200, Some(126_000), None).unwrap();
        assert_eq!(n, 19);
        let h = parse_header(&buf).unwrap();
        assert_eq!(h, PesHeader { pts: Some(133_200), dts: Some(126_000), payload_offset: 19, packet_length: 0 });
        let n = write_header(&mut buf, stream_id::AUDIO, 7, None, Some(100)).unwrap();
        let h = parse_header(&buf[..n]).unwrap();
        assert_eq!(h, PesHeader { pts: Some(7), dts: None, payload_offset: 14, packet_length: 108 });
        assert!(write_header(&mut buf, stream_id::AUDIO, 0, None, Some(70_000)).is_err());
    }

    #[test]
    fn truncated_headers_are_errors() {
        let mut buf = [0u8; MAX_HEADER_LEN];
        write_header(&mut buf, stream_id::VIDEO, 1, Some(0), None).unwrap();
        for cut in 0..MAX_HEADER_LEN {
            assert!(parse_header(&buf[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn unwrap_across_the_wrap_both_ways() {
        let mut u = TimestampUnwrapper::default();
        assert_eq!(u.unwrap(TIMESTAMP_MODULUS - 10), TIMESTAMP_MODULUS - 10);
        assert_eq!(u.unwrap(5), TIMESTAMP_MODULUS + 5);
        assert_eq!(u.unwrap(TIMESTAMP_MODULUS - 2), TIMESTAMP_MODULUS - 2);
        assert_eq!(u.unwrap(100), TIMESTAMP_MODULUS + 100);
        let mut u = TimestampUnwrapper::default();
        assert_eq!(u.unwrap(5), 5);
        // A small step back before zero stays negative rather than jumping
        // forward a whole period.
        assert_eq!(u.unwrap(TIMESTAMP_MODULUS - 5), -5);
    }

    proptest! {
        #[test]
        fn timestamp_round_trip(ts in 0i64..TIMESTAMP_MODULUS, prefix in 0u8..16) {
            let b = encode_timestamp(prefix, ts);
            prop_assert_eq!(b[0] >> 4, prefix);
            prop_assert_eq!(b[0] & 1, 1);
            prop_assert_eq!(b[2] & 1, 1);
            prop_assert_eq!(b[4] & 1, 1);
            prop_assert_eq!(decode_timestamp(&b), ts);
        }

        /// A stream stepping forward by less than half the period, wrapped
        /// to 33 bits, unwraps to the original values.
        #[test]
        fn unwrap_recovers_wrapped_sequences(
            start in 0i64..TIMESTAMP_MODULUS,
            steps in prop::collection::vec(-90_000i64..900_000, 1..200),
        ) {
            let mut u = TimestampUnwrapper::default();
            let mut t = start;
            prop_assert_eq!(u.unwrap(t), t);
            for s in steps {
                t += s;
                prop_assert_eq!(u.unwrap(t.rem_euclid(TIMESTAMP_MODULUS)), t);
            }
        }
    }
}
