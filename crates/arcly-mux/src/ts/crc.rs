//! CRC-32/MPEG-2, the checksum that closes every PSI section.

/// Byte-wise lookup table, built at compile time so the hot path is one
/// table load and a shift per byte.
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04C1_1DB7 } else { crc << 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32/MPEG-2 (polynomial 0x04C11DB7, initial value all ones, no
/// reflection, no final XOR).
///
/// A whole section including its trailing CRC checks to zero, which is how
/// the demuxer verifies tables.
///
/// ```
/// use arcly_mux::ts::crc32_mpeg2;
/// assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
/// ```
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xFFFF_FFFF, |crc, &b| (crc << 8) ^ TABLE[((crc >> 24) as u8 ^ b) as usize])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_E6E7);
        assert_eq!(crc32_mpeg2(b""), 0xFFFF_FFFF);
    }

    #[test]
    fn section_with_its_crc_checks_to_zero() {
        // The PAT ffmpeg writes (program 1 -> PMT PID 0x1000).
        let pat = [0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00];
        let crc = crc32_mpeg2(&pat);
        assert_eq!(crc, 0x2AB1_04B2);
        let mut whole = pat.to_vec();
        whole.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(crc32_mpeg2(&whole), 0);
    }
}
