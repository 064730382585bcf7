//! Annex B byte streams (start-code delimited NAL units) and the
//! length-prefixed form used by MP4, FLV and the bus (AVCC/HVCC).
//!
//! The scanner looks for the `01` byte of a start code with `memchr` and
//! checks the two bytes before it, which runs at memory speed on video data
//! where `01` bytes are rare.

use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::{BufMut, Bytes, BytesMut};

/// Finds the next start code (`00 00 01`, or `00 00 00 01`) at or after
/// `from`. Returns its offset and length (3 or 4).
///
/// ```
/// use arcly_codec::annexb::find_start_code;
/// let data = [9, 0, 0, 0, 1, 0x65, 0, 0, 1, 0x41];
/// assert_eq!(find_start_code(&data, 0), Some((1, 4)));
/// assert_eq!(find_start_code(&data, 5), Some((6, 3)));
/// assert_eq!(find_start_code(&data, 7), None);
/// ```
pub fn find_start_code(data: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut pos = from.checked_add(2)?;
    while pos < data.len() {
        let one = pos + memchr::memchr(1, data.get(pos..)?)?;
        if data[one - 1] == 0 && data[one - 2] == 0 {
            let start = one - 2;
            return Some(if start > from && data[start - 1] == 0 { (start - 1, 4) } else { (start, 3) });
        }
        pos = one + 1;
    }
    None
}

/// Iterator over the NAL units of an Annex B buffer, without start codes
/// and without trailing zero bytes. Bytes before the first start code are
/// skipped.
#[derive(Clone, Debug)]
pub struct AnnexBNalUnits<'a> {
    data: &'a [u8],
    /// Start of the next NAL unit's payload, if any.
    next: Option<usize>,
}

/// The NAL units of an Annex B buffer.
///
/// ```
/// use arcly_codec::annexb::split_annexb;
/// let data = [0, 0, 0, 1, 0x67, 1, 0, 0, 1, 0x68, 2, 0];
/// let nals: Vec<&[u8]> = split_annexb(&data).collect();
/// assert_eq!(nals, [&[0x67, 1][..], &[0x68, 2][..]]);
/// ```
pub fn split_annexb(data: &[u8]) -> AnnexBNalUnits<'_> {
    let next = find_start_code(data, 0).map(|(at, len)| at + len);
    AnnexBNalUnits { data, next }
}

impl<'a> Iterator for AnnexBNalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let start = self.next?;
            let (end, next) = match find_start_code(self.data, start) {
                Some((at, len)) => (at, Some(at + len)),
                None => (self.data.len(), None),
            };
            self.next = next;
            let mut nal = &self.data[start..end];
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            if !nal.is_empty() {
                return Some(nal);
            }
        }
    }
}

/// Converts Annex B to 4-byte length-prefixed NAL units.
///
/// ```
/// use arcly_codec::annexb::annexb_to_length_prefixed;
/// let out = annexb_to_length_prefixed(&[0, 0, 1, 0x65, 0xAA]);
/// assert_eq!(&out[..], &[0, 0, 0, 2, 0x65, 0xAA]);
/// ```
pub fn annexb_to_length_prefixed(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    for nal in split_annexb(data) {
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    out.freeze()
}

/// Iterator over length-prefixed NAL units; yields an error (once) if a
/// length runs past the end.
#[derive(Clone, Debug)]
pub struct LengthPrefixedNalUnits<'a> {
    data: &'a [u8],
    length_size: usize,
    pos: usize,
    failed: bool,
}

/// The NAL units of a length-prefixed buffer with `length_size`-byte
/// lengths (1, 2 or 4; anything else is treated as 4).
///
/// ```
/// use arcly_codec::annexb::split_length_prefixed;
/// let nals: Vec<_> = split_length_prefixed(&[0, 0, 0, 1, 0x09, 0, 0, 0, 2, 0x65, 1], 4).collect();
/// assert_eq!(nals.len(), 2);
/// assert_eq!(nals[1].as_ref().unwrap(), &[0x65, 1]);
/// assert!(split_length_prefixed(&[0, 0, 0, 9, 1], 4).next().unwrap().is_err());
/// ```
pub fn split_length_prefixed(data: &[u8], length_size: usize) -> LengthPrefixedNalUnits<'_> {
    let length_size = if matches!(length_size, 1 | 2 | 4) { length_size } else { 4 };
    LengthPrefixedNalUnits { data, length_size, pos: 0, failed: false }
}

impl<'a> Iterator for LengthPrefixedNalUnits<'a> {
    type Item = Result<&'a [u8], ProtocolError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let header = self.data.get(self.pos..self.pos + self.length_size);
        let len = header.map(|h| h.iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b)));
        let body_start = self.pos + self.length_size;
        match len.and_then(|len| self.data.get(body_start..body_start.checked_add(len)?)) {
            Some(nal) => {
                self.pos = body_start + nal.len();
                Some(Ok(nal))
            }
            None => {
                self.failed = true;
                Some(Err(ProtocolError::new(
                    "nal",
                    ProtocolErrorKind::Truncated,
                    format!("NAL unit length at byte {} runs past the end ({} bytes)", self.pos, self.data.len()),
                )
                .at(self.pos as u64)))
            }
        }
    }
}

/// Converts length-prefixed NAL units to Annex B with 4-byte start codes.
pub fn length_prefixed_to_annexb(data: &[u8], length_size: usize) -> Result<Bytes, ProtocolError> {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    for nal in split_length_prefixed(data, length_size) {
        out.put_slice(&[0, 0, 0, 1]);
        out.put_slice(nal?);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_find(data: &[u8], from: usize) -> Option<usize> {
        (from..data.len().saturating_sub(2)).find(|&i| data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1)
    }

    proptest! {
        /// The fast scanner finds the same 3-byte start codes as a naive one.
        #[test]
        fn scanner_matches_naive(data in prop::collection::vec(prop_oneof![Just(0u8), Just(1u8), any::<u8>()], 0..300), from in 0usize..300) {
            let fast = find_start_code(&data, from).map(|(at, len)| at + len - 3);
            prop_assert_eq!(fast, naive_find(&data, from));
        }

        /// Annex B -> length-prefixed -> Annex B keeps the NAL units.
        #[test]
        fn round_trip(nals in prop::collection::vec(prop::collection::vec(2u8..=255, 1..50), 1..10)) {
            let mut annexb = Vec::new();
            for n in &nals {
                annexb.extend_from_slice(&[0, 0, 0, 1]);
                annexb.extend_from_slice(n);
            }
            let lp = annexb_to_length_prefixed(&annexb);
            let back = length_prefixed_to_annexb(&lp, 4).unwrap();
            prop_assert_eq!(&back[..], &annexb[..]);
            let split: Vec<Vec<u8>> = split_annexb(&annexb).map(<[u8]>::to_vec).collect();
            prop_assert_eq!(split, nals);
        }

        #[test]
        fn length_prefixed_never_panics(data in prop::collection::vec(any::<u8>(), 0..100), size in 0usize..6) {
            for nal in split_length_prefixed(&data, size) {
                let _ = nal;
            }
        }
    }
}
