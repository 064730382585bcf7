//! Bit-level reading for codec headers: fixed-width fields, Exp-Golomb
//! codes, and the emulation-prevention bytes of H.26x NAL units.

use arcly_core::{ProtocolError, ProtocolErrorKind};

/// Reads bits most-significant first from a byte slice. Every read is
/// bounds-checked: running past the end is an error, never a panic.
///
/// ```
/// use arcly_codec::bits::BitReader;
/// let mut r = BitReader::new("h264", &[0b1011_0010, 0b0000_0000]);
/// assert_eq!(r.read_bits(3).unwrap(), 0b101);
/// assert_eq!(r.read_ue().unwrap(), 0); // "1"
/// assert_eq!(r.read_ue().unwrap(), 3); // "00100"
/// ```
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    what: &'static str,
    data: &'a [u8],
    /// Position in bits.
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader over `data`; `what` names the format in errors.
    pub fn new(what: &'static str, data: &'a [u8]) -> Self {
        Self { what, data, pos: 0 }
    }

    fn truncated(&self, wanted: u32) -> ProtocolError {
        ProtocolError::new(
            self.what,
            ProtocolErrorKind::Truncated,
            format!("wanted {wanted} more bits at bit {} of {}", self.pos, self.data.len() * 8),
        )
    }

    /// Bits left.
    pub fn remaining(&self) -> usize {
        (self.data.len() * 8).saturating_sub(self.pos)
    }

    /// Position in bits from the start.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// True at a byte boundary.
    pub fn is_aligned(&self) -> bool {
        self.pos.is_multiple_of(8)
    }

    /// Reads one bit.
    pub fn read_bit(&mut self) -> Result<bool, ProtocolError> {
        let byte = *self.data.get(self.pos / 8).ok_or_else(|| self.truncated(1))?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// Reads a flag (one bit).
    pub fn read_flag(&mut self) -> Result<bool, ProtocolError> {
        self.read_bit()
    }

    /// Reads `n` bits (at most 64) as an unsigned number.
    pub fn read_bits(&mut self, n: u32) -> Result<u64, ProtocolError> {
        debug_assert!(n <= 64);
        if (n as usize) > self.remaining() {
            return Err(self.truncated(n));
        }
        let mut v = 0u64;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.read_bit()?);
        }
        Ok(v)
    }

    /// Reads `n` bits (at most 32) as a `u32`.
    pub fn read_u32(&mut self, n: u32) -> Result<u32, ProtocolError> {
        debug_assert!(n <= 32);
        Ok(self.read_bits(n)? as u32)
    }

    /// Skips `n` bits.
    pub fn skip(&mut self, n: usize) -> Result<(), ProtocolError> {
        if n > self.remaining() {
            return Err(self.truncated(n.min(u32::MAX as usize) as u32));
        }
        self.pos += n;
        Ok(())
    }

    /// Skips to the next byte boundary.
    pub fn align(&mut self) {
        self.pos = self.pos.next_multiple_of(8);
    }

    /// Reads an unsigned Exp-Golomb code (`ue(v)`), at most 32 leading zeros.
    pub fn read_ue(&mut self) -> Result<u32, ProtocolError> {
        let mut zeros = 0u32;
        while !self.read_bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(ProtocolError::new(
                    self.what,
                    ProtocolErrorKind::InvalidValue,
                    format!("Exp-Golomb code longer than 32 bits at bit {}", self.pos),
                ));
            }
        }
        let rest = self.read_bits(zeros)?;
        Ok(((1u64 << zeros) - 1 + rest) as u32)
    }

    /// Reads a signed Exp-Golomb code (`se(v)`).
    pub fn read_se(&mut self) -> Result<i32, ProtocolError> {
        let k = i64::from(self.read_ue()?);
        Ok(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) } as i32)
    }

    /// Reads `n` bytes-worth of bits as a little-endian base-128 number
    /// (AV1 `leb128()`), at most 8 bytes. Must be byte-aligned.
    pub fn read_leb128(&mut self) -> Result<u64, ProtocolError> {
        let mut value = 0u64;
        for i in 0..8 {
            let byte = self.read_bits(8)?;
            value |= (byte & 0x7f) << (i * 7);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtocolError::new(self.what, ProtocolErrorKind::InvalidValue, "leb128 longer than 8 bytes"))
    }
}

/// Removes emulation-prevention bytes (the `03` in `00 00 03`) from an
/// H.26x NAL unit payload, giving the raw byte sequence payload (RBSP).
///
/// ```
/// use arcly_codec::bits::remove_emulation_prevention;
/// assert_eq!(remove_emulation_prevention(&[0, 0, 3, 1, 0, 0, 3]), [0, 0, 1, 0, 0]);
/// ```
pub fn remove_emulation_prevention(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Writes bits most-significant first.
///
/// ```
/// use arcly_codec::bits::{BitReader, BitWriter};
/// let mut w = BitWriter::default();
/// w.write_bits(0b101, 3);
/// w.write_ue(3);
/// let bytes = w.finish();
/// let mut r = BitReader::new("test", &bytes);
/// assert_eq!(r.read_bits(3).unwrap(), 0b101);
/// assert_eq!(r.read_ue().unwrap(), 3);
/// ```
#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    out: Vec<u8>,
    /// Bits used in the last byte (0 = no partial byte).
    used: u32,
}

impl BitWriter {
    /// Writes the low `n` bits of `value`; bits above the 64th are zero.
    pub fn write_bits(&mut self, value: u64, n: u32) {
        for i in (0..n).rev() {
            let bit = value.checked_shr(i).map_or(0, |v| (v & 1) as u8);
            if self.used == 0 {
                self.out.push(0);
            }
            let last = self.out.len() - 1;
            self.out[last] |= bit << (7 - self.used);
            self.used = (self.used + 1) % 8;
        }
    }

    /// Writes one flag bit.
    pub fn write_flag(&mut self, flag: bool) {
        self.write_bits(u64::from(flag), 1);
    }

    /// Writes an unsigned Exp-Golomb code.
    pub fn write_ue(&mut self, value: u32) {
        let v = u64::from(value) + 1;
        let len = 64 - v.leading_zeros();
        self.write_bits(0, len - 1);
        self.write_bits(v, len);
    }

    /// Pads with zero bits to a byte boundary and returns the bytes.
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn truncation_is_an_error() {
        let mut r = BitReader::new("t", &[0xff]);
        assert!(r.read_bits(9).is_err());
        assert_eq!(r.read_bits(8).unwrap(), 0xff);
        assert!(r.read_bit().is_err());
        let mut r = BitReader::new("t", &[0, 0, 0, 0, 0]);
        assert!(r.read_ue().is_err(), "33 leading zeros");
    }

    proptest! {
        #[test]
        fn exp_golomb_round_trip(values in prop::collection::vec(any::<u32>().prop_map(|v| v >> 1), 1..50)) {
            let mut w = BitWriter::default();
            for &v in &values {
                w.write_ue(v);
            }
            let bytes = w.finish();
            let mut r = BitReader::new("t", &bytes);
            for &v in &values {
                prop_assert_eq!(r.read_ue().unwrap(), v);
            }
        }

        #[test]
        fn reader_never_panics(data in prop::collection::vec(any::<u8>(), 0..64), ops in prop::collection::vec(0u8..6, 0..64)) {
            let mut r = BitReader::new("t", &data);
            for op in ops {
                let _ = match op {
                    0 => r.read_bit().map(u64::from),
                    1 => r.read_bits(13),
                    2 => r.read_ue().map(u64::from),
                    3 => r.read_se().map(|v| v as u64),
                    4 => r.read_leb128(),
                    _ => r.skip(5).map(|()| 0),
                };
            }
        }
    }
}
