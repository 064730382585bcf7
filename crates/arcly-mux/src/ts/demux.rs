//! The streaming transport stream demuxer.

use std::collections::VecDeque;

use arcly_codec::aac::split_adts;
use arcly_codec::annexb::split_annexb;
use arcly_codec::opus::{self, OpusHead};
use arcly_codec::{h264, h265};
use arcly_core::frame::{CodecId, FrameFlags, FrameType, MediaFrame, Timebase};
use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::pes::{self, TimestampUnwrapper};
use super::psi::{self, MAX_SECTION_LENGTH, Pat, Pmt};
use super::{PACKET_SIZE, PAT_PID, SYNC_BYTE, err, stream_type};

/// The largest PES the demuxer reassembles; a larger one is dropped with a
/// [`ProtocolErrorKind::TooLarge`] error.
pub const MAX_PES_SIZE: usize = 8 << 20;

/// The largest audio PES reassembled (audio PES carry a few frames).
const MAX_AUDIO_PES_SIZE: usize = 256 << 10;

/// At most this many elementary streams are extracted; further ones are
/// listed in [`DemuxEvent::Program`] without a codec. With the PES limits
/// this bounds what one demuxer can be made to hold.
const MAX_STREAMS: usize = 8;

/// A PES buffer whose capacity grew past this is given back after use, so
/// one large PES does not pin its memory for the stream's lifetime.
const KEEP_CAPACITY: usize = 1 << 20;

/// At most this many PIDs are tracked (PAT, PMTs and elementary streams);
/// tables naming more are cut short.
const MAX_PIDS: usize = 256;
const OPUS_RATE: u32 = 48_000;

/// An elementary stream announced by a PMT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EsInfo {
    /// Its PID.
    pub pid: u16,
    /// Its `stream_type`.
    pub stream_type: u8,
    /// The codec, when the demuxer extracts this stream; `None` for streams
    /// it skips.
    pub codec: Option<CodecId>,
    /// The [`MediaFrame::track`] its frames carry: its index among the
    /// program's extracted streams of the same frame type.
    pub track: u8,
}

/// What the demuxer found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DemuxEvent {
    /// A new or changed PMT.
    Program {
        /// `program_number`.
        program_number: u16,
        /// `PCR_PID`.
        pcr_pid: u16,
        /// Its elementary streams, in table order.
        streams: Vec<EsInfo>,
    },
    /// A frame in the bus format: a media frame, or a `CONFIG` frame
    /// (avcC, hvcC, AudioSpecificConfig, OpusHead) before the first frame
    /// that needs it and whenever it changes.
    Frame(MediaFrame),
    /// A packet was lost on `pid` (its continuity counter skipped): the PES
    /// in progress is dropped and the PID's next frame carries
    /// [`FrameFlags::DISCONTINUITY`].
    ContinuityError {
        /// The PID.
        pid: u16,
    },
}

/// A streaming MPEG-TS demuxer.
///
/// [`push`](Self::push) takes input in chunks of any size and parses every
/// complete packet at once, queueing what it finds; [`poll`](Self::poll)
/// returns the queued events in order; drain it after each push, since the
/// queue grows with the input. [`flush`](Self::flush) ends the input and
/// emits the PES still in progress.
///
/// Errors are events: a bad table, a truncated or oversized PES, bytes
/// skipped to find sync (two sync bytes 188 bytes apart) are reported with
/// their byte offset and the demuxer carries on.
///
/// Frames carry `track` from the PMT ([`EsInfo::track`]). Timestamps are
/// unwrapped across 33-bit wraps (one unwrapper for all streams, so they
/// stay comparable). Video frames are in [`Timebase::MPEG`] with
/// length-prefixed NAL units, AUD and parameter sets removed (those go to
/// the `CONFIG` frame); AAC and Opus frames are one per access unit, in a
/// timebase of the sample rate (48 kHz for Opus), timed from the PES PTS
/// plus the samples of the access units before them in the same PES.
///
/// ```
/// use arcly_mux::ts::{DemuxEvent, TsDemuxer};
/// let mut demux = TsDemuxer::new();
/// demux.push(&[0x47, 0x1F, 0xFF, 0x10]); // the start of a null packet
/// demux.push(&[0xFF; 184]);
/// demux.flush();
/// assert!(demux.poll().is_none());
/// ```
#[derive(Debug)]
pub struct TsDemuxer {
    /// Unconsumed input: a partial packet, or bytes awaiting sync.
    buf: BytesMut,
    /// Stream offset of the first unconsumed byte.
    consumed: u64,
    locked: bool,
    /// Bytes skipped while hunting for sync, not yet reported, and the
    /// stream offset where skipping began.
    skipped: u64,
    skipped_from: u64,
    /// PID → index + 1 into `pids`.
    slots: Vec<u16>,
    pids: Vec<PidState>,
    events: VecDeque<Result<DemuxEvent, ProtocolError>>,
    unwrapper: TimestampUnwrapper,
    /// The program extracted: the first one whose PMT arrived. Other
    /// programs' PMTs are ignored, so they cannot unlist its streams.
    program_number: Option<u16>,
}

#[derive(Debug)]
struct PidState {
    pid: u16,
    /// The last continuity counter seen with a payload.
    cc: Option<u8>,
    /// Set by a loss or `discontinuity_indicator`, put on the next frame.
    discontinuity: bool,
    kind: PidKind,
}

#[derive(Debug)]
enum PidKind {
    /// No longer listed by any table.
    Unused,
    Psi(Section),
    Es(Box<EsState>),
}

#[derive(Debug, Default)]
struct Section {
    buf: Vec<u8>,
    active: bool,
    /// The CRC of the last table taken from this PID: repeats are skipped.
    last_crc: Option<u32>,
}

#[derive(Debug)]
struct EsState {
    codec: CodecId,
    track: u8,
    pes: BytesMut,
    in_pes: bool,
    /// The PES size from `PES_packet_length`, when not 0.
    expected: Option<usize>,
    /// The last PES's timestamps (90 kHz, unwrapped), for PES without any.
    last_pts: i64,
    last_dts: i64,
    codec_state: CodecState,
}

#[derive(Debug)]
enum CodecState {
    /// The parameter sets of the last CONFIG frame, in stream order.
    Video {
        sets: Vec<Bytes>,
    },
    Aac {
        config: Option<Bytes>,
    },
    Opus {
        channels: u8,
        head_sent: bool,
    },
}

impl Default for TsDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl TsDemuxer {
    /// A demuxer that knows only the PAT's PID.
    pub fn new() -> Self {
        let mut demux = Self {
            buf: BytesMut::new(),
            consumed: 0,
            locked: false,
            skipped: 0,
            skipped_from: 0,
            slots: vec![0; 0x2000],
            pids: Vec::new(),
            events: VecDeque::new(),
            unwrapper: TimestampUnwrapper::default(),
            program_number: None,
        };
        demux.set_pid(PAT_PID, PidKind::Psi(Section::default()));
        demux
    }

    /// Parses `data` and every complete packet before it, queueing events.
    /// Only a partial packet (at most two packets' worth while hunting for
    /// sync) is copied and kept for the next call.
    pub fn push(&mut self, mut data: &[u8]) {
        while !self.buf.is_empty() && !data.is_empty() {
            let take = (2 * PACKET_SIZE).saturating_sub(self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            let buf = std::mem::take(&mut self.buf);
            let n = self.consume(&buf, false);
            self.buf = buf;
            self.buf.advance(n);
        }
        if !data.is_empty() {
            let n = self.consume(data, false);
            self.buf.extend_from_slice(&data[n..]);
        }
    }

    /// The next event, if any.
    pub fn poll(&mut self) -> Option<Result<DemuxEvent, ProtocolError>> {
        self.events.pop_front()
    }

    /// Ends the input: parses what is left, reports a trailing partial
    /// packet and emits every PES in progress. The demuxer keeps its tables
    /// and can take more input afterwards, as if after a cut.
    pub fn flush(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let n = self.consume(&buf, true);
        self.report_skipped();
        if n < buf.len() {
            let e = err(ProtocolErrorKind::Truncated, format!("{} trailing bytes are not a packet", buf.len() - n));
            self.events.push_back(Err(e.at(self.consumed)));
            self.consumed += (buf.len() - n) as u64;
        }
        self.locked = false;
        for i in 0..self.pids.len() {
            let state = &mut self.pids[i];
            state.cc = None;
            if let PidKind::Es(es) = &mut state.kind {
                let discontinuity = &mut state.discontinuity;
                finish_pes(es, discontinuity, &mut self.unwrapper, &mut self.events, self.consumed);
            }
        }
    }

    fn set_pid(&mut self, pid: u16, kind: PidKind) {
        let slot = self.slots[usize::from(pid & 0x1FFF)];
        if slot != 0 {
            self.pids[usize::from(slot - 1)].kind = kind;
        } else if self.pids.len() < MAX_PIDS {
            self.pids.push(PidState { pid, cc: None, discontinuity: false, kind });
            self.slots[usize::from(pid & 0x1FFF)] = self.pids.len() as u16;
        }
    }

    fn report_skipped(&mut self) {
        if self.skipped > 0 {
            let e = err(ProtocolErrorKind::InvalidValue, format!("skipped {} bytes to find packet sync", self.skipped));
            self.events.push_back(Err(e.at(self.skipped_from)));
            self.skipped = 0;
        }
    }

    /// Parses the packets of `input` and returns how many bytes it used;
    /// the rest is a partial packet, or, while hunting for sync, bytes from
    /// a candidate sync byte whose successor has not arrived. At `end`, a
    /// lone packet after garbage is accepted on its own sync byte.
    fn consume(&mut self, input: &[u8], end: bool) -> usize {
        let mut pos = 0;
        loop {
            if self.locked {
                let Some(packet) = input.get(pos..).and_then(|rest| rest.first_chunk::<PACKET_SIZE>()) else {
                    break;
                };
                if packet[0] == SYNC_BYTE {
                    self.packet(packet, self.consumed + pos as u64);
                    pos += PACKET_SIZE;
                    continue;
                }
                self.locked = false;
            }
            if self.skipped == 0 {
                self.skipped_from = self.consumed + pos as u64;
            }
            let Some(k) = input[pos..].iter().position(|&b| b == SYNC_BYTE) else {
                self.skipped += (input.len() - pos) as u64;
                pos = input.len();
                break;
            };
            self.skipped += k as u64;
            pos += k;
            match input.get(pos + PACKET_SIZE) {
                Some(&SYNC_BYTE) => {}
                Some(_) => {
                    self.skipped += 1;
                    pos += 1;
                    continue;
                }
                None if end && input.len() - pos == PACKET_SIZE => {}
                None => break,
            }
            self.locked = true;
            self.report_skipped();
        }
        self.consumed += pos as u64;
        pos
    }

    fn packet(&mut self, p: &[u8; PACKET_SIZE], offset: u64) {
        let pid = u16::from_be_bytes([p[1] & 0x1F, p[2]]);
        let slot = self.slots[usize::from(pid)];
        // transport_error_indicator: the packet is known to be damaged.
        if slot == 0 || p[1] & 0x80 != 0 {
            return;
        }
        let pusi = p[1] & 0x40 != 0;
        let control = (p[3] >> 4) & 0x03;
        let cc = p[3] & 0x0F;
        let mut payload_at = 4;
        let mut discontinuity_indicator = false;
        if control & 0x02 != 0 {
            let af_len = usize::from(p[4]);
            if af_len > 183 {
                let e =
                    err(ProtocolErrorKind::InvalidValue, format!("adaptation field of {af_len} bytes on PID {pid}"));
                self.events.push_back(Err(e.at(offset)));
                return;
            }
            discontinuity_indicator = af_len > 0 && p[5] & 0x80 != 0;
            payload_at = 5 + af_len;
        }
        let state = &mut self.pids[usize::from(slot - 1)];
        if discontinuity_indicator {
            state.discontinuity = true;
            state.cc = None;
        }
        if control & 0x01 == 0 {
            return;
        }
        let payload = &p[payload_at..];
        if let Some(last) = state.cc {
            if cc == last {
                // A duplicate packet, which the standard allows once.
                return;
            }
            if cc != (last + 1) & 0x0F {
                state.discontinuity = true;
                match &mut state.kind {
                    PidKind::Es(es) => {
                        es.in_pes = false;
                        es.pes.clear();
                    }
                    PidKind::Psi(section) => section.active = false,
                    PidKind::Unused => {}
                }
                self.events.push_back(Ok(DemuxEvent::ContinuityError { pid }));
            }
        }
        state.cc = Some(cc);
        match &mut state.kind {
            PidKind::Unused => {}
            PidKind::Es(es) => {
                if pusi {
                    if es.in_pes {
                        let discontinuity = &mut state.discontinuity;
                        finish_pes(es, discontinuity, &mut self.unwrapper, &mut self.events, offset);
                    }
                    es.in_pes = true;
                    es.expected = None;
                }
                if !es.in_pes {
                    return;
                }
                let limit = if es.codec.frame_type() == FrameType::Video { MAX_PES_SIZE } else { MAX_AUDIO_PES_SIZE };
                if es.pes.len() + payload.len() > limit {
                    let e = err(ProtocolErrorKind::TooLarge, format!("PES on PID {pid} exceeds {limit} bytes"));
                    self.events.push_back(Err(e.at(offset)));
                    es.in_pes = false;
                    es.pes = BytesMut::new();
                    return;
                }
                es.pes.extend_from_slice(payload);
                if es.expected.is_none()
                    && let Some(&[.., hi, lo]) = es.pes.first_chunk::<6>()
                    && (hi, lo) != (0, 0)
                {
                    es.expected = Some(6 + usize::from(u16::from_be_bytes([hi, lo])));
                }
                if es.expected.is_some_and(|n| es.pes.len() >= n) {
                    let discontinuity = &mut state.discontinuity;
                    finish_pes(es, discontinuity, &mut self.unwrapper, &mut self.events, offset);
                }
            }
            PidKind::Psi(section) => {
                let mut tables = Vec::new();
                if let Err(e) = feed_section(section, pusi, payload, &mut tables) {
                    self.events.push_back(Err(e.at(offset)));
                }
                for table in tables {
                    if let Err(e) = self.table(pid, &table) {
                        self.events.push_back(Err(e.at(offset)));
                    }
                }
            }
        }
    }

    /// Applies a complete, new section.
    fn table(&mut self, pid: u16, section: &[u8]) -> Result<(), ProtocolError> {
        // current_next_indicator 0: the table is not in force yet.
        if section.get(5).is_some_and(|b| b & 1 == 0) {
            return Ok(());
        }
        match section.first() {
            Some(&psi::TABLE_PAT) if pid == PAT_PID => {
                let pat = Pat::parse(section)?;
                for (program, pmt_pid) in pat.programs {
                    let known = self.slots[usize::from(pmt_pid)] != 0
                        && matches!(self.pids[usize::from(self.slots[usize::from(pmt_pid)] - 1)].kind, PidKind::Psi(_));
                    if program != 0 && pmt_pid != PAT_PID && !known {
                        self.set_pid(pmt_pid, PidKind::Psi(Section::default()));
                    }
                }
            }
            Some(&psi::TABLE_PMT) if pid != PAT_PID => self.program(Pmt::parse(section)?),
            _ => {}
        }
        Ok(())
    }

    fn program(&mut self, pmt: Pmt) {
        if *self.program_number.get_or_insert(pmt.program_number) != pmt.program_number {
            return;
        }
        let mut per_type = [0u8; 3];
        let mut extracted = 0;
        let mut streams = Vec::with_capacity(pmt.streams.len());
        for s in &pmt.streams {
            let opus = s.descriptors().any(|(tag, body)| tag == 0x05 && body == b"Opus")
                || psi::descriptors(&pmt.program_info).any(|(tag, body)| tag == 0x05 && body == b"Opus");
            let codec = match s.stream_type {
                stream_type::H264 => Some(CodecId::H264),
                stream_type::H265 => Some(CodecId::H265),
                stream_type::AAC_ADTS => Some(CodecId::Aac),
                stream_type::PRIVATE_PES if opus => Some(CodecId::Opus),
                _ => None,
            };
            let slot = self.slots[usize::from(s.pid)];
            let is_psi = slot != 0 && matches!(self.pids[usize::from(slot - 1)].kind, PidKind::Psi(_));
            // An elementary stream may not take over a table's PID.
            let reserved = is_psi || s.pid == super::NULL_PID;
            let Some(codec) = codec.filter(|_| !reserved && extracted < MAX_STREAMS) else {
                streams.push(EsInfo { pid: s.pid, stream_type: s.stream_type, codec: None, track: 0 });
                continue;
            };
            extracted += 1;
            let slot = &mut per_type[codec.frame_type().index()];
            let track = *slot;
            *slot = slot.saturating_add(1);
            streams.push(EsInfo { pid: s.pid, stream_type: s.stream_type, codec: Some(codec), track });
            let channels = s
                .descriptors()
                .find_map(|(tag, body)| match (tag, body) {
                    (0x7F, [0x80, code, ..]) => Some(match code {
                        1..=8 => *code,
                        0x81..=0x88 => code & 0x0F,
                        _ => 2,
                    }),
                    _ => None,
                })
                .unwrap_or(2);
            let index = self.slots[usize::from(s.pid)];
            if index != 0
                && let PidKind::Es(es) = &mut self.pids[usize::from(index - 1)].kind
                && es.codec == codec
            {
                es.track = track;
                if let CodecState::Opus { channels: c, head_sent } = &mut es.codec_state
                    && *c != channels
                {
                    *c = channels;
                    *head_sent = false;
                }
                continue;
            }
            let codec_state = match codec.frame_type() {
                FrameType::Video => CodecState::Video { sets: Vec::new() },
                _ if codec == CodecId::Opus => CodecState::Opus { channels, head_sent: false },
                _ => CodecState::Aac { config: None },
            };
            let es = EsState {
                codec,
                track,
                pes: BytesMut::new(),
                in_pes: false,
                expected: None,
                last_pts: 0,
                last_dts: 0,
                codec_state,
            };
            self.set_pid(s.pid, PidKind::Es(Box::new(es)));
        }
        // Streams the new version dropped stop producing frames.
        for state in &mut self.pids {
            if matches!(state.kind, PidKind::Es(_)) && !pmt.streams.iter().any(|s| s.pid == state.pid) {
                state.kind = PidKind::Unused;
            }
        }
        self.events.push_back(Ok(DemuxEvent::Program {
            program_number: pmt.program_number,
            pcr_pid: pmt.pcr_pid,
            streams,
        }));
    }
}

/// Feeds one packet's payload to a section buffer, appending each section
/// it completes whose CRC differs from the last one taken to `tables`.
fn feed_section(
    section: &mut Section,
    pusi: bool,
    payload: &[u8],
    tables: &mut Vec<Vec<u8>>,
) -> Result<(), ProtocolError> {
    let mut data = payload;
    let mut cut_short = None;
    if pusi {
        let Some((&pointer, rest)) = data.split_first() else {
            return Err(err(ProtocolErrorKind::Truncated, "PSI packet without a pointer_field"));
        };
        let Some(tail) = rest.get(..usize::from(pointer)) else {
            section.active = false;
            return Err(err(ProtocolErrorKind::InvalidValue, "pointer_field beyond the packet"));
        };
        if section.active {
            section.buf.extend_from_slice(tail);
            // A broken previous section must not keep the new one out.
            cut_short = take_section(section, tables).err();
        }
        section.active = true;
        section.buf.clear();
        data = &rest[usize::from(pointer)..];
    }
    while section.active && !data.is_empty() {
        if section.buf.is_empty() && data[0] == 0xFF {
            // Stuffing after the last section of the packet.
            section.active = false;
            break;
        }
        let before = section.buf.len();
        let want = match section.buf.first_chunk::<3>() {
            Some(head) => psi::section_total_len(*head),
            None => 3,
        };
        let n = want.saturating_sub(before).min(data.len());
        section.buf.extend_from_slice(&data[..n]);
        data = &data[n..];
        if let Some(head) = section.buf.first_chunk::<3>() {
            let total = psi::section_total_len(*head);
            if total - 3 > MAX_SECTION_LENGTH {
                section.active = false;
                section.buf.clear();
                return Err(err(ProtocolErrorKind::TooLarge, format!("section of {total} bytes")));
            }
            if section.buf.len() >= total {
                let taken = take_section(section, tables);
                section.buf.clear();
                if let Err(e) = taken {
                    section.active = false;
                    return Err(e);
                }
                // Another section may follow in the same packet.
                section.active = true;
            }
        }
    }
    cut_short.map_or(Ok(()), Err)
}

/// Moves a complete section out of the buffer when it is new.
fn take_section(section: &mut Section, tables: &mut Vec<Vec<u8>>) -> Result<(), ProtocolError> {
    let Some(head) = section.buf.first_chunk::<3>() else { return Ok(()) };
    let total = psi::section_total_len(*head);
    let Some(whole) = section.buf.get(..total).filter(|_| total >= 4) else {
        section.active = false;
        return Err(err(ProtocolErrorKind::Truncated, "PSI section cut by the next one"));
    };
    let crc = u32::from_be_bytes([whole[total - 4], whole[total - 3], whole[total - 2], whole[total - 1]]);
    if section.last_crc != Some(crc) {
        if super::crc32_mpeg2(whole) != 0 {
            return Err(err(ProtocolErrorKind::Checksum, format!("CRC mismatch in table {:#04x}", whole[0])));
        }
        section.last_crc = Some(crc);
        tables.push(whole.to_vec());
    }
    Ok(())
}

/// Turns the PES in progress into events.
fn finish_pes(
    es: &mut EsState,
    discontinuity: &mut bool,
    unwrapper: &mut TimestampUnwrapper,
    events: &mut VecDeque<Result<DemuxEvent, ProtocolError>>,
    offset: u64,
) {
    if !es.in_pes {
        return;
    }
    es.in_pes = false;
    if let Some(expected) = es.expected
        && es.pes.len() < expected
    {
        let e = err(ProtocolErrorKind::Truncated, format!("PES of {expected} bytes ends after {}", es.pes.len()));
        events.push_back(Err(e.at(offset)));
        es.pes.clear();
        return;
    }
    let header = match pes::parse_header(&es.pes) {
        Ok(h) => h,
        Err(e) => {
            events.push_back(Err(e.at(offset)));
            es.pes.clear();
            return;
        }
    };
    let (pts, dts) = match (header.pts, header.dts) {
        (Some(pts), dts) => {
            let dts = unwrapper.unwrap(dts.unwrap_or(pts));
            (unwrapper.unwrap(pts), dts)
        }
        _ => (es.last_pts, es.last_dts),
    };
    es.last_pts = pts;
    es.last_dts = dts;
    let end = es.expected.unwrap_or(es.pes.len()).min(es.pes.len());
    if header.payload_offset > end {
        let e = err(ProtocolErrorKind::InvalidValue, "PES_packet_length shorter than the PES header");
        events.push_back(Err(e.at(offset)));
        es.pes.clear();
        return;
    }
    let mut out = Out { events, discontinuity, codec: es.codec, track: es.track, offset };
    match &mut es.codec_state {
        CodecState::Video { sets } => {
            video(&es.pes[header.payload_offset..end], sets, pts, dts, &mut out);
            // The frame was copied out: keep the buffer for the next PES,
            // unless an unusually large one made it grow.
            if es.pes.capacity() > KEEP_CAPACITY {
                es.pes = BytesMut::new();
            } else {
                es.pes.clear();
            }
        }
        CodecState::Aac { config } => {
            let payload = es.pes.split().freeze().slice(header.payload_offset..end);
            aac(&payload, config, pts, &mut out);
        }
        CodecState::Opus { channels, head_sent } => {
            let payload = es.pes.split().freeze().slice(header.payload_offset..end);
            if !*head_sent {
                *head_sent = true;
                // Timed like the packets: in 48 kHz samples.
                let tb = Timebase::sample_rate(OPUS_RATE).unwrap_or(Timebase::MPEG);
                let t = Timebase::MPEG.rescale(pts, tb);
                out.frame(OpusHead::new(*channels, OPUS_RATE).to_bytes(), t, t, tb, FrameFlags::CONFIG);
            }
            opus_packets(&payload, pts, &mut out);
        }
    }
}

/// Where a PES's frames go.
struct Out<'a> {
    events: &'a mut VecDeque<Result<DemuxEvent, ProtocolError>>,
    discontinuity: &'a mut bool,
    codec: CodecId,
    track: u8,
    offset: u64,
}

impl Out<'_> {
    fn frame(&mut self, payload: Bytes, pts: i64, dts: i64, timebase: Timebase, mut flags: FrameFlags) {
        if !flags.contains(FrameFlags::CONFIG) && std::mem::take(self.discontinuity) {
            flags |= FrameFlags::DISCONTINUITY;
        }
        let mut frame = MediaFrame::new(self.codec, payload).with_timestamps(pts, dts, timebase).with_flags(flags);
        frame.track = self.track;
        self.events.push_back(Ok(DemuxEvent::Frame(frame)));
    }

    fn error(&mut self, e: ProtocolError) {
        let e = if e.offset.is_none() { e.at(self.offset) } else { e };
        self.events.push_back(Err(e));
    }
}

fn video(es: &[u8], sets: &mut Vec<Bytes>, pts: i64, dts: i64, out: &mut Out<'_>) {
    let hevc = out.codec == CodecId::H265;
    // Length prefixes replace start codes of 3 or 4 bytes: at most one
    // extra byte per NAL unit, so this rarely grows.
    let mut payload = BytesMut::with_capacity(es.len() + 64);
    let mut found: Vec<&[u8]> = Vec::new();
    for nal in split_annexb(es) {
        let (aud, is_set) = if hevc {
            let t = h265::nal_unit_type(nal);
            use h265::nal_type::{AUD, PPS, SPS, VPS};
            (t == Some(AUD), matches!(t, Some(VPS | SPS | PPS)))
        } else {
            let t = h264::nal_unit_type(nal);
            use h264::nal_type::{AUD, PPS, SPS};
            (t == Some(AUD), matches!(t, Some(SPS | PPS)))
        };
        if is_set {
            found.push(nal);
        } else if !aud {
            payload.put_u32(nal.len() as u32);
            payload.put_slice(nal);
        }
    }
    let changed = found.len() != sets.len() || found.iter().zip(sets.iter()).any(|(a, b)| *a != &b[..]);
    if !found.is_empty() && changed {
        *sets = found.iter().map(|s| Bytes::copy_from_slice(s)).collect();
        match video_config(hevc, &found) {
            Ok(config) => out.frame(config, pts, dts, Timebase::MPEG, FrameFlags::CONFIG),
            Err(e) => out.error(e),
        }
    }
    if payload.is_empty() {
        return;
    }
    let keyframe = if hevc { h265::is_keyframe(&payload, 4) } else { h264::is_keyframe(&payload, 4) };
    let flags = if keyframe { FrameFlags::KEYFRAME } else { FrameFlags::EMPTY };
    out.frame(payload.freeze(), pts, dts, Timebase::MPEG, flags);
}

fn video_config(hevc: bool, sets: &[&[u8]]) -> Result<Bytes, ProtocolError> {
    if hevc {
        let of = |t: u8| sets.iter().copied().filter(|s| h265::nal_unit_type(s) == Some(t)).collect::<Vec<_>>();
        use h265::nal_type::{PPS, SPS, VPS};
        Ok(h265::HevcConfig::from_parameter_sets(&of(VPS), &of(SPS), &of(PPS))?.to_bytes())
    } else {
        let of = |t: u8| sets.iter().copied().filter(|s| h264::nal_unit_type(s) == Some(t)).collect::<Vec<_>>();
        use h264::nal_type::{PPS, SPS};
        Ok(h264::AvcConfig::from_parameter_sets(&of(SPS), &of(PPS))?.to_bytes())
    }
}

fn aac(payload: &Bytes, config: &mut Option<Bytes>, pts: i64, out: &mut Out<'_>) {
    let mut position = None;
    for item in split_adts(payload) {
        let (header, au) = match item {
            Ok(frame) => frame,
            Err(e) => {
                out.error(e);
                return;
            }
        };
        if header.raw_blocks > 1 {
            // Several raw data blocks are several access units without the
            // offsets to split them by (those sit in the CRC'd block map).
            out.error(err(ProtocolErrorKind::Unsupported, "ADTS frame with several raw data blocks"));
            return;
        }
        let asc = header.to_audio_specific_config();
        let Some(timebase) = Timebase::sample_rate(asc.sample_rate) else {
            out.error(err(ProtocolErrorKind::InvalidValue, "ADTS sample rate 0"));
            return;
        };
        let start = *position.get_or_insert_with(|| Timebase::MPEG.rescale(pts, timebase));
        let bytes = asc.to_bytes();
        if config.as_ref() != Some(&bytes) {
            *config = Some(bytes.clone());
            out.frame(bytes, start, start, timebase, FrameFlags::CONFIG);
        }
        out.frame(payload.slice_ref(au), start, start, timebase, FrameFlags::KEYFRAME);
        position = Some(start + i64::from(asc.frame_samples()));
    }
}

fn opus_packets(payload: &Bytes, pts: i64, out: &mut Out<'_>) {
    let Some(timebase) = Timebase::sample_rate(OPUS_RATE) else { return };
    let mut position = Timebase::MPEG.rescale(pts, timebase);
    let mut rest: &[u8] = payload;
    while !rest.is_empty() {
        let au = match opus_control_header(rest) {
            Ok((au, next)) => {
                rest = next;
                au
            }
            Err(e) => {
                out.error(e);
                return;
            }
        };
        let samples = opus::packet_samples(au).unwrap_or(0);
        out.frame(payload.slice_ref(au), position, position, timebase, FrameFlags::KEYFRAME);
        position += i64::from(samples);
    }
}

/// Parses one `opus_control_header` and returns the packet and what
/// follows it.
fn opus_control_header(data: &[u8]) -> Result<(&[u8], &[u8]), ProtocolError> {
    let truncated = || err(ProtocolErrorKind::Truncated, "Opus control header or packet truncated");
    let (&[b0, b1], mut rest) = data.split_first_chunk::<2>().ok_or_else(truncated)?;
    if b0 != 0x7F || b1 & 0xE0 != 0xE0 {
        return Err(err(ProtocolErrorKind::InvalidValue, "Opus control header prefix 0x7FE0 missing"));
    }
    let mut size = 0usize;
    loop {
        let (&b, next) = rest.split_first().ok_or_else(truncated)?;
        rest = next;
        size += usize::from(b);
        if b != 0xFF {
            break;
        }
    }
    let skip = if b1 & 0x10 != 0 { 2 } else { 0 } + if b1 & 0x08 != 0 { 2 } else { 0 };
    rest = rest.get(skip..).ok_or_else(truncated)?;
    if b1 & 0x04 != 0 {
        let (&len, next) = rest.split_first().ok_or_else(truncated)?;
        rest = next.get(usize::from(len)..).ok_or_else(truncated)?;
    }
    let au = rest.get(..size).ok_or_else(truncated)?;
    Ok((au, &rest[size..]))
}

#[cfg(test)]
mod tests {
    use super::super::{TIMESTAMP_MODULUS, TrackSpec, TsMuxer};
    use super::*;
    use proptest::prelude::*;

    const ASC_48K_STEREO: &[u8] = &[0x11, 0x90];

    fn events(data: &[u8], chunks: &[usize]) -> Vec<Result<DemuxEvent, ProtocolError>> {
        let mut demux = TsDemuxer::new();
        let mut out = Vec::new();
        let mut rest = data;
        for &c in chunks {
            let (now, later) = rest.split_at(c.min(rest.len()));
            demux.push(now);
            out.extend(std::iter::from_fn(|| demux.poll()));
            rest = later;
        }
        demux.push(rest);
        demux.flush();
        out.extend(std::iter::from_fn(|| demux.poll()));
        out
    }

    fn frames(events: &[Result<DemuxEvent, ProtocolError>]) -> Vec<MediaFrame> {
        events
            .iter()
            .filter_map(|e| match e {
                Ok(DemuxEvent::Frame(f)) => Some(f.clone()),
                _ => None,
            })
            .collect()
    }

    fn errors(events: &[Result<DemuxEvent, ProtocolError>]) -> Vec<ProtocolErrorKind> {
        events.iter().filter_map(|e| e.as_ref().err().map(|e| e.kind)).collect()
    }

    fn opus_stream(n: i64) -> BytesMut {
        let mut mux = TsMuxer::new(&[TrackSpec::new(CodecId::Opus, None)]).unwrap();
        let mut out = BytesMut::new();
        for i in 0..n {
            // One 20 ms CELT frame (TOC config 31, code 0), 100 bytes.
            let mut payload = vec![0xFC];
            // Bytes below 0x47, so no payload byte looks like a sync byte.
            payload.extend((0..99).map(|b| ((b + i) % 64) as u8));
            let f = MediaFrame::new(CodecId::Opus, Bytes::from(payload)).with_timestamps(
                i * 960,
                i * 960,
                Timebase::sample_rate(48_000).unwrap(),
            );
            mux.write_frame(&f, &mut out).unwrap();
        }
        out
    }

    /// The avcC of testdata/h264_aac.ts, found by this demuxer.
    fn real_avcc() -> Bytes {
        let data = arcly_testkit::read_testdata("h264_aac.ts");
        let all = events(&data, &[]);
        frames(&all).into_iter().find(|f| f.is_config() && f.codec == CodecId::H264).expect("avcC").payload
    }

    #[test]
    fn opus_frames_and_config() {
        let all = events(&opus_stream(5), &[]);
        assert!(errors(&all).is_empty());
        assert!(matches!(&all[0], Ok(DemuxEvent::Program { pcr_pid: 0x100, streams, .. }) if streams.len() == 1));
        let f = frames(&all);
        assert!(f[0].is_config());
        assert_eq!(OpusHead::parse(&f[0].payload).unwrap().channels, 2);
        let media: Vec<_> = f[1..].iter().map(|f| (f.pts, f.payload.len(), f.timebase.den())).collect();
        assert_eq!(media, (0..5).map(|i| (i * 960, 100, 48_000)).collect::<Vec<_>>());
    }

    #[test]
    fn bad_pmt_crc_is_reported_and_the_table_ignored() {
        let mut data = opus_stream(3);
        // Byte 20 of the PMT packet is inside the section.
        data[188 + 20] ^= 0x01;
        let all = events(&data, &[]);
        assert_eq!(errors(&all), [ProtocolErrorKind::Checksum]);
        assert!(frames(&all).is_empty(), "no PMT, no streams");
        assert_eq!(all[0].as_ref().unwrap_err().offset, Some(188));
    }

    #[test]
    fn lost_packet_is_reported_and_flags_the_next_frame() {
        let data = opus_stream(6);
        // Drop the first packet of the third frame's PES (each PES is one
        // packet here: PAT, PMT, then frames).
        let mut cut = data[..188 * 4].to_vec();
        cut.extend_from_slice(&data[188 * 5..]);
        let all = events(&cut, &[]);
        assert!(all.iter().any(|e| matches!(e, Ok(DemuxEvent::ContinuityError { pid: 0x100 }))));
        let f: Vec<_> = frames(&all).into_iter().filter(|f| !f.is_config()).collect();
        assert_eq!(f.len(), 5);
        let flagged: Vec<_> = f.iter().map(|f| f.flags.contains(FrameFlags::DISCONTINUITY)).collect();
        assert_eq!(flagged, [false, false, true, false, false]);
        assert_eq!(f[2].pts, 3 * 960);
    }

    #[test]
    fn discontinuity_indicator_flags_without_an_error() {
        let mut data = opus_stream(4).to_vec();
        // Frame 2's packet; its adaptation field carries the PCR.
        let p = &mut data[188 * 4..188 * 5];
        assert_eq!(p[3] & 0x20, 0x20);
        p[5] |= 0x80;
        p[3] = (p[3] & 0xF0) | 9; // a counter jump the indicator excuses
        for q in data[188 * 5..].chunks_mut(188) {
            q[3] = (q[3] & 0xF0) | 10;
        }
        let all = events(&data, &[]);
        assert!(errors(&all).is_empty());
        assert!(!all.iter().any(|e| matches!(e, Ok(DemuxEvent::ContinuityError { .. }))));
        let f: Vec<_> = frames(&all).into_iter().filter(|f| !f.is_config()).collect();
        let flagged: Vec<_> = f.iter().map(|f| f.flags.contains(FrameFlags::DISCONTINUITY)).collect();
        assert_eq!(flagged, [false, false, true, false]);
    }

    #[test]
    fn resync_after_garbage() {
        let data = opus_stream(8);
        let mut dirty = vec![0x47, 1, 2, 0x47, 0x47];
        dirty.extend_from_slice(&data[..188 * 5]);
        // Garbage that does not start with a sync byte (one that did would
        // be taken for a packet, losing the packet it overlaps).
        dirty.push(0);
        dirty.extend_from_slice(&[0x47; 49]);
        dirty.extend_from_slice(&data[188 * 5..]);
        let all = events(&dirty, &[]);
        assert_eq!(errors(&all), [ProtocolErrorKind::InvalidValue, ProtocolErrorKind::InvalidValue]);
        let e: Vec<_> = all.iter().filter_map(|e| e.as_ref().err()).collect();
        assert_eq!((e[0].offset, e[1].offset), (Some(0), Some(5 + 188 * 5)));
        assert_eq!(frames(&all).len(), 1 + 8);
    }

    #[test]
    fn pes_length_shorter_than_its_header_is_an_error() {
        let mut data = opus_stream(2);
        let p = &mut data[188 * 2..188 * 3];
        let pes = 5 + usize::from(p[4]);
        assert_eq!(&p[pes..pes + 4], &[0, 0, 1, 0xBD]);
        p[pes + 4..pes + 6].copy_from_slice(&[0, 2]);
        let all = events(&data, &[]);
        assert_eq!(errors(&all), [ProtocolErrorKind::InvalidValue]);
        assert_eq!(frames(&all).iter().filter(|f| !f.is_config()).count(), 1);
    }

    #[test]
    fn oversized_pes_is_dropped_with_an_error() {
        let mut mux = TsMuxer::new(&[TrackSpec::new(CodecId::H264, None)]).unwrap();
        let mut out = BytesMut::new();
        let mut big = vec![0x41; MAX_PES_SIZE + 100];
        big[..4].copy_from_slice(&((MAX_PES_SIZE + 96) as u32).to_be_bytes());
        for (i, payload) in [big, vec![0, 0, 0, 2, 0x41, 1], vec![0, 0, 0, 2, 0x41, 2]].into_iter().enumerate() {
            let f = MediaFrame::new(CodecId::H264, Bytes::from(payload)).with_timestamps(
                i as i64,
                i as i64,
                Timebase::MPEG,
            );
            mux.write_frame(&f, &mut out).unwrap();
        }
        let all = events(&out, &[]);
        assert_eq!(errors(&all), [ProtocolErrorKind::TooLarge]);
        let f = frames(&all);
        assert_eq!(f.iter().map(|f| f.pts).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn timestamps_unwrap_across_the_33_bit_wrap() {
        let mut mux = TsMuxer::new(&[TrackSpec::new(CodecId::H264, None)]).unwrap();
        let mut out = BytesMut::new();
        let start = TIMESTAMP_MODULUS - 7_200;
        for i in 0..5 {
            let dts = start + i * 3_600;
            let f = MediaFrame::new(CodecId::H264, Bytes::from_static(&[0, 0, 0, 2, 0x41, 1])).with_timestamps(
                dts + 7_200,
                dts,
                Timebase::MPEG,
            );
            mux.write_frame(&f, &mut out).unwrap();
        }
        let f = frames(&events(&out, &[]));
        let got: Vec<_> = f.iter().map(|f| (f.pts, f.dts)).collect();
        let want: Vec<_> = (0..5).map(|i| (start + i * 3_600 + 7_200, start + i * 3_600)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn fuzz_entry_point_survives_the_corpus_and_junk() {
        let data = arcly_testkit::read_testdata("h264_aac.ts");
        super::super::fuzz_demux(&data);
        super::super::fuzz_demux(&[]);
        super::super::fuzz_demux(&[0x47; 1000]);
    }

    #[derive(Clone, Debug)]
    enum Gen {
        Video { key: bool, nals: Vec<Vec<u8>>, step: i64, cts: i64 },
        Aac { payload: Vec<u8>, step: i64 },
        Opus { payload: Vec<u8>, step: i64 },
    }

    fn gen_frame() -> impl Strategy<Value = Gen> {
        let body = || prop::collection::vec(1u8..=255, 1..600);
        prop_oneof![
            (any::<bool>(), prop::collection::vec(body(), 1..4), 0i64..6_000, 0i64..9_000)
                .prop_map(|(key, nals, step, cts)| Gen::Video { key, nals, step, cts }),
            (prop::collection::vec(any::<u8>(), 1..1_500), 0i64..3_000)
                .prop_map(|(payload, step)| Gen::Aac { payload, step }),
            (prop::collection::vec(any::<u8>(), 1..1_500), 0i64..3_000)
                .prop_map(|(payload, step)| Gen::Opus { payload, step }),
        ]
    }

    /// Builds bus frames from generated descriptions on one 90 kHz clock
    /// starting at `start`, an AAC frame first.
    fn build(start: i64, gens: &[Gen]) -> Vec<MediaFrame> {
        let audio_tb = Timebase::sample_rate(48_000).unwrap();
        let mut clock = start;
        let audio = |codec, payload: &[u8], clock: i64| {
            let t = Timebase::MPEG.rescale(clock, audio_tb);
            MediaFrame::new(codec, Bytes::copy_from_slice(payload)).with_timestamps(t, t, audio_tb)
        };
        let mut out = vec![audio(CodecId::Aac, &[0x21, 0x10, 0x04], clock)];
        for g in gens {
            match g {
                Gen::Video { key, nals, step, cts } => {
                    clock += step;
                    let mut payload = Vec::new();
                    for (i, body) in nals.iter().enumerate() {
                        // An IDR slice first in a keyframe, else non-IDR slices.
                        let header = if *key && i == 0 { 0x65 } else { 0x41 };
                        payload.extend_from_slice(&(body.len() as u32 + 1).to_be_bytes());
                        payload.push(header);
                        payload.extend_from_slice(body);
                    }
                    let mut f = MediaFrame::new(CodecId::H264, Bytes::from(payload)).with_timestamps(
                        clock + cts,
                        clock,
                        Timebase::MPEG,
                    );
                    if *key {
                        f = f.with_flags(FrameFlags::KEYFRAME);
                    }
                    out.push(f);
                }
                Gen::Aac { payload, step } => {
                    clock += step;
                    out.push(audio(CodecId::Aac, payload, clock));
                }
                Gen::Opus { payload, step } => {
                    clock += step;
                    let mut f = audio(CodecId::Opus, payload, clock);
                    // The second audio track.
                    f.track = 1;
                    out.push(f);
                }
            }
        }
        out
    }

    fn mux_all(avcc: &Bytes, frames: &[MediaFrame]) -> BytesMut {
        let mut mux = TsMuxer::new(&[
            TrackSpec::new(CodecId::H264, Some(avcc.clone())),
            TrackSpec::new(CodecId::Aac, Some(Bytes::from_static(ASC_48K_STEREO))),
            TrackSpec::new(CodecId::Opus, None),
        ])
        .unwrap();
        let mut out = BytesMut::new();
        for f in frames {
            mux.write_frame(f, &mut out).unwrap();
        }
        out
    }

    fn summary(frames: &[MediaFrame], codec: CodecId) -> Vec<(i64, i64, bool, Bytes)> {
        frames
            .iter()
            .filter(|f| f.codec == codec && !f.is_config())
            .map(|f| (f.pts, f.dts, codec != CodecId::H264 || f.is_keyframe(), f.payload.clone()))
            .collect()
    }

    fn mutate(data: &mut [u8], flips: &[(prop::sample::Index, u8)]) {
        if data.is_empty() {
            return;
        }
        for (at, x) in flips {
            data[at.index(data.len())] ^= x | 1;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Mux then demux gives back every frame's codec, timestamps,
        /// keyframe flag and payload, across the 33-bit wrap too.
        #[test]
        fn mux_demux_round_trip(
            start in prop_oneof![0i64..1_000_000, TIMESTAMP_MODULUS - 400_000..TIMESTAMP_MODULUS],
            gens in prop::collection::vec(gen_frame(), 0..40),
        ) {
            let avcc = real_avcc();
            let input = build(start, &gens);
            let data = mux_all(&avcc, &input);
            let all = events(&data, &[]);
            prop_assert!(errors(&all).is_empty(), "{:?}", all);
            let output = frames(&all);
            for codec in [CodecId::H264, CodecId::Aac, CodecId::Opus] {
                prop_assert_eq!(summary(&output, codec), summary(&input, codec), "{}", codec);
            }
            // The avcC is announced before the first keyframe, with the
            // same parameter sets.
            let first_key = output.iter().position(|f| f.codec == CodecId::H264 && f.is_keyframe());
            let config = output.iter().position(|f| f.codec == CodecId::H264 && f.is_config());
            if let Some(key) = first_key {
                let config = config.expect("avcC before the keyframe");
                prop_assert!(config < key);
                let (a, b) = (h264::AvcConfig::parse(&output[config].payload).unwrap(), h264::AvcConfig::parse(&avcc).unwrap());
                prop_assert_eq!((a.sps, a.pps), (b.sps, b.pps));
            }
        }

        /// Feeding in random chunks gives exactly the events of feeding
        /// the whole input, clean or damaged.
        #[test]
        fn chunking_does_not_change_events(
            chunks in prop::collection::vec(0usize..700, 0..300),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let mut data = arcly_testkit::read_testdata("h264_aac.ts").to_vec();
            data.truncate(40_000);
            mutate(&mut data, &flips);
            prop_assert_eq!(events(&data, &chunks), events(&data, &[]));
        }

        /// Damaged and cut real input never panics, and the frames still
        /// have sane payloads.
        #[test]
        fn damaged_input_never_panics(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..40),
            cut in any::<prop::sample::Index>(),
            skip in 0usize..400,
        ) {
            let mut data = arcly_testkit::read_testdata("hevc_aac.ts").to_vec();
            mutate(&mut data, &flips);
            let end = cut.index(data.len() + 1);
            let data = &data[skip.min(end)..end];
            let all = events(data, &[1000, 7, 188, 3000]);
            prop_assert!(frames(&all).iter().all(|f| f.payload.len() <= MAX_PES_SIZE));
            super::super::fuzz_demux(data);
        }

        /// Arbitrary bytes, with sync bytes sprinkled in, never panic.
        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(prop_oneof![Just(0x47u8), any::<u8>()], 0..3000)) {
            super::super::fuzz_demux(&data);
        }
    }
}
