//! Program-specific information: the PAT and PMT sections, written and
//! parsed with their CRC.

use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::{BufMut, Bytes, BytesMut};

use super::crc::crc32_mpeg2;
use super::err;

/// `table_id` of a program association section.
pub(crate) const TABLE_PAT: u8 = 0x00;
/// `table_id` of a program map section.
pub(crate) const TABLE_PMT: u8 = 0x02;
/// The largest `section_length` PAT and PMT sections may declare.
pub(crate) const MAX_SECTION_LENGTH: usize = 1021;

/// A program association table: which PID carries each program's PMT.
///
/// ```
/// use arcly_mux::ts::Pat;
/// let pat = Pat { transport_stream_id: 1, version: 0, programs: vec![(1, 0x1000)] };
/// let mut section = bytes::BytesMut::new();
/// pat.write(&mut section);
/// assert_eq!(Pat::parse(&section).unwrap(), pat);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pat {
    /// `transport_stream_id`.
    pub transport_stream_id: u16,
    /// `version_number` (5 bits).
    pub version: u8,
    /// `(program_number, program_map_PID)`; program 0 (the network PID) is
    /// listed like any other.
    pub programs: Vec<(u16, u16)>,
}

impl Pat {
    /// Appends the section (from `table_id` through the CRC) to `out`.
    pub fn write(&self, out: &mut BytesMut) {
        let body_len = self.programs.len() * 4;
        let start = out.len();
        write_header(out, TABLE_PAT, self.transport_stream_id, self.version, body_len);
        for &(program, pid) in &self.programs {
            out.put_u16(program);
            out.put_u16(0xE000 | (pid & 0x1FFF));
        }
        let crc = crc32_mpeg2(&out[start..]);
        out.put_u32(crc);
    }

    /// Parses a whole section (from `table_id` through the CRC), checking
    /// the CRC.
    pub fn parse(section: &[u8]) -> Result<Self, ProtocolError> {
        let (header, body) = parse_section(section, TABLE_PAT)?;
        if body.len() % 4 != 0 {
            return Err(err(ProtocolErrorKind::InvalidValue, format!("PAT body of {} bytes", body.len())));
        }
        let programs = body
            .chunks_exact(4)
            .map(|c| (u16::from_be_bytes([c[0], c[1]]), u16::from_be_bytes([c[2], c[3]]) & 0x1FFF))
            .collect();
        Ok(Self { transport_stream_id: header.id, version: header.version, programs })
    }
}

/// One elementary stream of a PMT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PmtStream {
    /// `stream_type` (0x1B H.264, 0x24 H.265, 0x0F AAC in ADTS, 0x06 private
    /// data such as Opus).
    pub stream_type: u8,
    /// `elementary_PID`.
    pub pid: u16,
    /// The raw `ES_info` descriptor loop.
    pub descriptors: Bytes,
}

impl PmtStream {
    /// The descriptors as `(tag, body)`; a truncated last descriptor ends the
    /// iteration.
    pub fn descriptors(&self) -> impl Iterator<Item = (u8, &[u8])> {
        descriptors(&self.descriptors)
    }
}

/// A program map table: the elementary streams of one program.
///
/// ```
/// use arcly_mux::ts::{Pmt, PmtStream};
/// let pmt = Pmt {
///     program_number: 1,
///     version: 0,
///     pcr_pid: 0x100,
///     program_info: bytes::Bytes::new(),
///     streams: vec![PmtStream { stream_type: 0x1B, pid: 0x100, descriptors: bytes::Bytes::new() }],
/// };
/// let mut section = bytes::BytesMut::new();
/// pmt.write(&mut section);
/// assert_eq!(Pmt::parse(&section).unwrap(), pmt);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pmt {
    /// `program_number`.
    pub program_number: u16,
    /// `version_number` (5 bits).
    pub version: u8,
    /// `PCR_PID`.
    pub pcr_pid: u16,
    /// The raw `program_info` descriptor loop.
    pub program_info: Bytes,
    /// The elementary streams, in table order.
    pub streams: Vec<PmtStream>,
}

impl Pmt {
    /// Appends the section (from `table_id` through the CRC) to `out`.
    pub fn write(&self, out: &mut BytesMut) {
        let body_len =
            4 + self.program_info.len() + self.streams.iter().map(|s| 5 + s.descriptors.len()).sum::<usize>();
        let start = out.len();
        write_header(out, TABLE_PMT, self.program_number, self.version, body_len);
        out.put_u16(0xE000 | (self.pcr_pid & 0x1FFF));
        out.put_u16(0xF000 | (self.program_info.len() as u16 & 0x0FFF));
        out.put_slice(&self.program_info);
        for s in &self.streams {
            out.put_u8(s.stream_type);
            out.put_u16(0xE000 | (s.pid & 0x1FFF));
            out.put_u16(0xF000 | (s.descriptors.len() as u16 & 0x0FFF));
            out.put_slice(&s.descriptors);
        }
        let crc = crc32_mpeg2(&out[start..]);
        out.put_u32(crc);
    }

    /// Parses a whole section (from `table_id` through the CRC), checking
    /// the CRC.
    pub fn parse(section: &[u8]) -> Result<Self, ProtocolError> {
        let (header, body) = parse_section(section, TABLE_PMT)?;
        let truncated = || err(ProtocolErrorKind::Truncated, "PMT body is truncated");
        let fixed = body.get(..4).ok_or_else(truncated)?;
        let pcr_pid = u16::from_be_bytes([fixed[0], fixed[1]]) & 0x1FFF;
        let info_len = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]) & 0x0FFF);
        let program_info = body.get(4..4 + info_len).ok_or_else(truncated)?;
        let mut rest = &body[4 + info_len..];
        let mut streams = Vec::new();
        while !rest.is_empty() {
            let head = rest.get(..5).ok_or_else(truncated)?;
            let es_len = usize::from(u16::from_be_bytes([head[3], head[4]]) & 0x0FFF);
            let descriptors = rest.get(5..5 + es_len).ok_or_else(truncated)?;
            streams.push(PmtStream {
                stream_type: head[0],
                pid: u16::from_be_bytes([head[1], head[2]]) & 0x1FFF,
                descriptors: Bytes::copy_from_slice(descriptors),
            });
            rest = &rest[5 + es_len..];
        }
        Ok(Self {
            program_number: header.id,
            version: header.version,
            pcr_pid,
            program_info: Bytes::copy_from_slice(program_info),
            streams,
        })
    }
}

/// Iterates a descriptor loop as `(tag, body)`.
pub(crate) fn descriptors(mut data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (&[tag, len], rest) = data.split_first_chunk::<2>()?;
        let body = rest.get(..usize::from(len))?;
        data = &rest[usize::from(len)..];
        Some((tag, body))
    })
}

/// The fields of the long section header PAT and PMT share.
struct SectionHeader {
    /// `transport_stream_id` or `program_number`.
    id: u16,
    version: u8,
}

fn write_header(out: &mut BytesMut, table_id: u8, id: u16, version: u8, body_len: usize) {
    // 5 header bytes after section_length plus the CRC.
    let section_length = (body_len + 9) as u16;
    out.put_u8(table_id);
    out.put_u16(0xB000 | (section_length & 0x0FFF));
    out.put_u16(id);
    // current_next_indicator set: tables take effect at once.
    out.put_u8(0xC1 | ((version & 0x1F) << 1));
    out.put_u8(0); // section_number
    out.put_u8(0); // last_section_number
}

/// The total size of a section whose first three bytes are `head`.
pub(crate) fn section_total_len(head: [u8; 3]) -> usize {
    3 + usize::from(u16::from_be_bytes([head[1], head[2]]) & 0x0FFF)
}

fn parse_section(section: &[u8], table_id: u8) -> Result<(SectionHeader, &[u8]), ProtocolError> {
    let Some(&[id, b1, b2]) = section.first_chunk::<3>() else {
        return Err(err(ProtocolErrorKind::Truncated, "section shorter than its header"));
    };
    if id != table_id {
        return Err(err(ProtocolErrorKind::InvalidValue, format!("table_id {id:#04x}, expected {table_id:#04x}")));
    }
    if b1 & 0x80 == 0 {
        return Err(err(ProtocolErrorKind::InvalidValue, "section_syntax_indicator is 0"));
    }
    let total = section_total_len([id, b1, b2]);
    if total - 3 > MAX_SECTION_LENGTH {
        return Err(err(ProtocolErrorKind::TooLarge, format!("section_length {} > {MAX_SECTION_LENGTH}", total - 3)));
    }
    if total < 12 {
        return Err(err(ProtocolErrorKind::InvalidValue, format!("section_length {} < 9", total - 3)));
    }
    let section = section.get(..total).ok_or_else(|| {
        err(ProtocolErrorKind::Truncated, format!("section of {total} bytes, {} available", section.len()))
    })?;
    if crc32_mpeg2(section) != 0 {
        return Err(err(ProtocolErrorKind::Checksum, format!("CRC mismatch in table {table_id:#04x}")));
    }
    let header = SectionHeader { id: u16::from_be_bytes([section[3], section[4]]), version: (section[5] >> 1) & 0x1F };
    Ok((header, &section[8..total - 4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_pmt() -> Pmt {
        Pmt {
            program_number: 1,
            version: 3,
            pcr_pid: 0x100,
            program_info: Bytes::new(),
            streams: vec![
                PmtStream { stream_type: 0x1B, pid: 0x100, descriptors: Bytes::new() },
                PmtStream { stream_type: 0x0F, pid: 0x101, descriptors: Bytes::new() },
                PmtStream {
                    stream_type: 0x06,
                    pid: 0x102,
                    descriptors: Bytes::from_static(&[0x05, 4, b'O', b'p', b'u', b's', 0x7F, 2, 0x80, 2]),
                },
            ],
        }
    }

    #[test]
    fn pat_round_trip_matches_ffmpeg_bytes() {
        let pat = Pat { transport_stream_id: 1, version: 0, programs: vec![(1, 0x1000)] };
        let mut out = BytesMut::new();
        pat.write(&mut out);
        // Bytes of the PAT in testdata/h264_aac.ts, written by ffmpeg.
        assert_eq!(
            &out[..],
            &[0x00, 0xB0, 0x0D, 0x00, 0x01, 0xC1, 0x00, 0x00, 0x00, 0x01, 0xF0, 0x00, 0x2A, 0xB1, 0x04, 0xB2]
        );
        assert_eq!(Pat::parse(&out).unwrap(), pat);
    }

    #[test]
    fn pmt_round_trip() {
        let pmt = sample_pmt();
        let mut out = BytesMut::new();
        pmt.write(&mut out);
        let back = Pmt::parse(&out).unwrap();
        assert_eq!(back, pmt);
        let opus: Vec<_> = back.streams[2].descriptors().collect();
        assert_eq!(opus, [(0x05, &b"Opus"[..]), (0x7F, &[0x80, 2][..])]);
    }

    #[test]
    fn bad_crc_is_rejected() {
        let mut out = BytesMut::new();
        sample_pmt().write(&mut out);
        let n = out.len();
        out[n - 1] ^= 1;
        assert_eq!(Pmt::parse(&out).unwrap_err().kind, ProtocolErrorKind::Checksum);
        out[n - 1] ^= 1;
        out[10] ^= 0x40;
        assert_eq!(Pmt::parse(&out).unwrap_err().kind, ProtocolErrorKind::Checksum);
    }

    #[test]
    fn truncated_and_wrong_tables_are_errors() {
        let mut out = BytesMut::new();
        sample_pmt().write(&mut out);
        for cut in 0..out.len() {
            assert!(Pmt::parse(&out[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(Pat::parse(&out).unwrap_err().kind, ProtocolErrorKind::InvalidValue);
    }
}
