//! The transport stream muxer.

use arcly_codec::aac::{AdtsHeader, AudioSpecificConfig};
use arcly_codec::annexb::split_length_prefixed;
use arcly_codec::opus::OpusHead;
use arcly_codec::{h264, h265};
use arcly_core::ProtocolError;
use arcly_core::ProtocolErrorKind;
use arcly_core::frame::{CodecId, FrameType, MediaFrame, Timebase};
use bytes::{BufMut, Bytes, BytesMut};

use super::pes::{self, MAX_HEADER_LEN, stream_id};
use super::psi::{Pat, Pmt, PmtStream};
use super::{PACKET_SIZE, PAT_PID, SYNC_BYTE, err, stream_type};

/// How far the PCR runs behind the DTS of the PES it is sent with, in
/// 90 kHz ticks (700 ms, ffmpeg's default `muxdelay`): the decoder model
/// gets 700 ms of buffering. PCR = DTS − `PCR_OFFSET`, wrapped to 33 bits,
/// so a stream whose timestamps start below 700 ms starts with a PCR just
/// below 2^33 that wraps to zero, which the standard allows.
pub const PCR_OFFSET: i64 = 63_000;

/// The PMT's PID; elementary streams get `FIRST_ES_PID + track index`
/// (the PIDs ffmpeg uses).
const PMT_PID: u16 = 0x1000;
const FIRST_ES_PID: u16 = 0x100;
const PROGRAM_NUMBER: u16 = 1;
/// The PCR must repeat at least every 100 ms.
const MAX_PCR_INTERVAL: i64 = 9_000;
/// Audio-only streams repeat PAT/PMT once a second for late joiners (video
/// streams repeat them at every keyframe).
const AUDIO_ONLY_PSI_INTERVAL: i64 = 90_000;
const START_CODE: &[u8] = &[0, 0, 0, 1];
const H264_AUD: &[u8] = &[0, 0, 0, 1, h264::nal_type::AUD, 0xF0];
const H265_AUD: &[u8] = &[0, 0, 0, 1, h265::nal_type::AUD << 1, 0x01, 0x50];
const FF: &[u8; 64] = &[0xFF; 64];

/// One track of a [`TsMuxer`]: its codec and, when already known, its
/// configuration (the payload of the codec's `CONFIG` frame: avcC, hvcC,
/// AudioSpecificConfig or OpusHead).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackSpec {
    /// The codec: H.264, H.265, AAC or Opus.
    pub codec: CodecId,
    /// The `CONFIG` frame payload, if known.
    pub config: Option<Bytes>,
}

impl TrackSpec {
    /// A track of `codec` with an optional configuration record.
    pub fn new(codec: CodecId, config: Option<Bytes>) -> Self {
        Self { codec, config }
    }
}

#[derive(Clone, Debug)]
enum TrackConfig {
    /// Nothing yet (video streams may carry parameter sets in band).
    None,
    /// H.264 or H.265: the parameter sets to insert before keyframes, in
    /// record order, and the NAL length size of the payloads.
    Video {
        parameter_sets: Vec<Bytes>,
        length_size: usize,
    },
    Aac(AudioSpecificConfig),
    Opus {
        channels: u8,
    },
}

#[derive(Clone, Debug)]
struct Track {
    codec: CodecId,
    /// Index among the tracks of the same frame type, matched against
    /// [`MediaFrame::track`].
    type_index: u8,
    pid: u16,
    stream_id: u8,
    /// The continuity counter of the next packet with payload.
    cc: u8,
    config: TrackConfig,
}

/// Muxes bus frames into an MPEG transport stream: one program, PAT on PID
/// 0, PMT on PID 0x1000, track *n* on PID 0x100 + *n*.
///
/// PAT and PMT go out before the first frame and before every video
/// keyframe (once a second for audio-only streams), listing every track
/// from the start. The PCR rides on the first video track (else the first
/// track) in the first packet of each of its PES, and in a PES-less
/// adaptation-field packet whenever another track's frame would leave more
/// than 100 ms without one. Timestamps are written exactly as given
/// (rescaled to 90 kHz, wrapped to 33 bits); see [`PCR_OFFSET`].
///
/// Frames go to the track of their codec's frame type whose index among
/// that type equals [`MediaFrame::track`]. `CONFIG` frames replace the
/// track's configuration and write nothing.
///
/// ```
/// use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
/// use arcly_mux::ts::{TrackSpec, TsMuxer};
/// use bytes::{Bytes, BytesMut};
///
/// let mut mux = TsMuxer::new(&[TrackSpec::new(CodecId::H264, None)]).unwrap();
/// let mut out = BytesMut::new();
/// // One IDR slice NAL unit, length-prefixed.
/// let au = MediaFrame::new(CodecId::H264, Bytes::from_static(&[0, 0, 0, 3, 0x65, 0x88, 0x80]))
///     .with_timestamps(3_600, 0, Timebase::MPEG)
///     .with_flags(FrameFlags::KEYFRAME);
/// mux.write_frame(&au, &mut out).unwrap();
/// // PAT, PMT and one video packet.
/// assert_eq!(out.len(), 3 * 188);
/// ```
#[derive(Clone, Debug)]
pub struct TsMuxer {
    tracks: Vec<Track>,
    pcr_track: usize,
    has_video: bool,
    pmt_version: u8,
    pat_cc: u8,
    pmt_cc: u8,
    psi_written: bool,
    /// DTS (90 kHz, unwrapped) of the last PCR and the last PAT/PMT.
    last_pcr: Option<i64>,
    last_psi: Option<i64>,
}

impl TsMuxer {
    /// A muxer for `tracks`, in PID order. Fails on an empty list, more than
    /// 32 tracks, a codec other than H.264, H.265, AAC and Opus, or a
    /// configuration record that does not parse.
    pub fn new(tracks: &[TrackSpec]) -> Result<Self, ProtocolError> {
        if tracks.is_empty() || tracks.len() > 32 {
            return Err(err(ProtocolErrorKind::InvalidValue, format!("{} tracks (1 to 32 allowed)", tracks.len())));
        }
        let mut per_type = [0u8; 3];
        let mut out = Vec::with_capacity(tracks.len());
        for (i, spec) in tracks.iter().enumerate() {
            let stream_id = match spec.codec {
                CodecId::H264 | CodecId::H265 => stream_id::VIDEO,
                CodecId::Aac => stream_id::AUDIO,
                CodecId::Opus => stream_id::PRIVATE_1,
                other => {
                    return Err(err(ProtocolErrorKind::Unsupported, format!("codec {other} in MPEG-TS")));
                }
            };
            let slot = &mut per_type[spec.codec.frame_type().index()];
            let mut track = Track {
                codec: spec.codec,
                type_index: *slot,
                pid: FIRST_ES_PID + i as u16,
                stream_id,
                cc: 0,
                config: match spec.codec {
                    CodecId::Opus => TrackConfig::Opus { channels: 2 },
                    _ => TrackConfig::None,
                },
            };
            *slot += 1;
            if let Some(config) = &spec.config {
                track.config = parse_config(spec.codec, config)?;
            }
            out.push(track);
        }
        let video = out.iter().position(|t| t.codec.frame_type() == FrameType::Video);
        Ok(Self {
            pcr_track: video.unwrap_or(0),
            has_video: video.is_some(),
            tracks: out,
            pmt_version: 0,
            pat_cc: 0,
            pmt_cc: 0,
            psi_written: false,
            last_pcr: None,
            last_psi: None,
        })
    }

    /// The PMT this muxer writes.
    pub fn pmt(&self) -> Pmt {
        let streams = self
            .tracks
            .iter()
            .map(|t| {
                let (stream_type, descriptors) = match (t.codec, &t.config) {
                    (CodecId::H264, _) => (stream_type::H264, Bytes::new()),
                    (CodecId::H265, _) => (stream_type::H265, Bytes::new()),
                    (CodecId::Opus, TrackConfig::Opus { channels }) => {
                        // Registration 'Opus' and the DVB extension descriptor
                        // (0x7F) with the Opus channel configuration (0x80),
                        // as ffmpeg writes them.
                        let code = if *channels <= 8 { *channels } else { 0xFF };
                        let d = [0x05, 4, b'O', b'p', b'u', b's', 0x7F, 2, 0x80, code];
                        (stream_type::PRIVATE_PES, Bytes::copy_from_slice(&d))
                    }
                    _ => (stream_type::AAC_ADTS, Bytes::new()),
                };
                PmtStream { stream_type, pid: t.pid, descriptors }
            })
            .collect();
        Pmt {
            program_number: PROGRAM_NUMBER,
            version: self.pmt_version,
            pcr_pid: self.tracks[self.pcr_track].pid,
            program_info: Bytes::new(),
            streams,
        }
    }

    /// Appends a PAT packet and the PMT packet(s).
    pub fn write_psi(&mut self, out: &mut BytesMut) {
        let mut section = BytesMut::with_capacity(PACKET_SIZE);
        Pat { transport_stream_id: 1, version: 0, programs: vec![(PROGRAM_NUMBER, PMT_PID)] }.write(&mut section);
        write_section(out, PAT_PID, &mut self.pat_cc, &section);
        section.clear();
        self.pmt().write(&mut section);
        write_section(out, PMT_PID, &mut self.pmt_cc, &section);
        self.psi_written = true;
    }

    /// Appends the packets of one frame (or, for a `CONFIG` frame, updates
    /// the track's configuration and appends nothing).
    ///
    /// Fails, appending nothing, when no track matches the frame, a
    /// configuration does not parse, a length-prefixed payload is
    /// malformed, an AAC frame comes before its AudioSpecificConfig, or an
    /// audio PES would exceed 65535 bytes.
    pub fn write_frame(&mut self, frame: &MediaFrame, out: &mut BytesMut) -> Result<(), ProtocolError> {
        let index = self
            .tracks
            .iter()
            .position(|t| t.codec.frame_type() == frame.frame_type() && t.type_index == frame.track)
            .ok_or_else(|| {
                err(ProtocolErrorKind::InvalidValue, format!("no {:?} track {}", frame.frame_type(), frame.track))
            })?;
        if self.tracks[index].codec != frame.codec {
            return Err(err(
                ProtocolErrorKind::InvalidValue,
                format!("{} frame for the {} track {}", frame.codec, self.tracks[index].codec, frame.track),
            ));
        }
        if frame.is_config() {
            let config = parse_config(frame.codec, &frame.payload)?;
            let channels = |c: &TrackConfig| match c {
                TrackConfig::Opus { channels } => Some(*channels),
                _ => None,
            };
            if channels(&config) != channels(&self.tracks[index].config) {
                // The channel count is in the PMT: announce the change now.
                self.pmt_version = (self.pmt_version + 1) & 0x1F;
                self.tracks[index].config = config;
                self.write_psi(out);
            } else {
                self.tracks[index].config = config;
            }
            return Ok(());
        }
        let pts = frame.pts_in(Timebase::MPEG);
        let dts = frame.dts_in(Timebase::MPEG);
        let is_video = frame.frame_type() == FrameType::Video;
        let keyframe = frame.is_keyframe();

        // Everything fallible comes before the first byte is written.
        let mut pes_header = [0u8; MAX_HEADER_LEN];
        let mut prefix = [0u8; 7];
        let track = &self.tracks[index];
        let (prefix_len, es_len, video) = match (&track.config, track.codec) {
            (config, CodecId::H264 | CodecId::H265) => {
                let (sets, length_size) = match config {
                    TrackConfig::Video { parameter_sets, length_size } => (&parameter_sets[..], *length_size),
                    _ => (&[][..], 4),
                };
                let layout = VideoLayout::measure(track.codec, &frame.payload, length_size, keyframe, sets)?;
                (0, layout.es_len, Some(layout))
            }
            (TrackConfig::Aac(asc), _) => {
                prefix = AdtsHeader::write(asc, frame.payload.len())?;
                (7, 7 + frame.payload.len(), None)
            }
            (TrackConfig::Opus { .. }, _) => {
                let n = frame.payload.len();
                (2, 2 + n / 255 + 1 + n, None)
            }
            _ => return Err(err(ProtocolErrorKind::UnexpectedMessage, "AAC frame before its AudioSpecificConfig")),
        };
        let dts_field = (dts != pts).then_some(dts);
        let header_len =
            pes::write_header(&mut pes_header, track.stream_id, pts, dts_field, (!is_video).then_some(es_len))?;

        let needs_psi = !self.psi_written
            || (is_video && keyframe)
            || (!self.has_video && self.last_psi.is_none_or(|t| dts.saturating_sub(t) >= AUDIO_ONLY_PSI_INTERVAL));
        if needs_psi {
            self.write_psi(out);
            self.last_psi = Some(dts);
        }
        // The PCR never goes backwards, even when one track's timestamps run
        // ahead of the other's (common with RTMP sources): a decoder's clock
        // recovery treats a backward step as a discontinuity.
        let pcr_base = self.last_pcr.map_or(dts, |last| dts.max(last));
        let pcr = if index == self.pcr_track {
            Some(pcr_base)
        } else {
            if self.last_pcr.is_none_or(|t| dts.saturating_sub(t) >= MAX_PCR_INTERVAL) {
                let t = &self.tracks[self.pcr_track];
                write_pcr_only(out, t.pid, t.cc.wrapping_sub(1) & 0x0F, pcr_base.saturating_sub(PCR_OFFSET));
                self.last_pcr = Some(pcr_base);
            }
            None
        };
        if let Some(p) = pcr {
            self.last_pcr = Some(p);
        }
        let start = PesStart { pcr: pcr.map(|d| d.saturating_sub(PCR_OFFSET)), random_access: keyframe };
        let track = &mut self.tracks[index];
        let total = header_len + es_len;
        let head = std::iter::once(&pes_header[..header_len]);
        match (video, &track.config) {
            (Some(layout), config) => {
                let sets: &[Bytes] = match config {
                    TrackConfig::Video { parameter_sets, .. } if layout.insert_sets => parameter_sets,
                    _ => &[],
                };
                let aud = if track.codec == CodecId::H265 { H265_AUD } else { H264_AUD };
                let length_size = layout.length_size;
                let codec = track.codec;
                let nals = split_length_prefixed(&frame.payload, length_size)
                    .map_while(Result::ok)
                    .filter(move |nal| !is_aud(codec, nal))
                    .flat_map(|nal| [START_CODE, nal]);
                let sets = sets.iter().flat_map(|s| [START_CODE, &s[..]]);
                let segments = head.chain([aud]).chain(sets).chain(nals);
                packetize(out, track.pid, &mut track.cc, total, start, segments);
            }
            (None, TrackConfig::Opus { .. }) => {
                let n = frame.payload.len();
                // Control header: 0x7FE0 prefix without trim or extension
                // fields, then au_size as a run of 0xFF and a final byte.
                let run = n / 255;
                let last = [(n % 255) as u8];
                let sizes = std::iter::repeat_n(&FF[..], run / FF.len()).chain([&FF[..run % FF.len()], &last[..]]);
                let segments = head.chain([&[0x7F, 0xE0][..]]).chain(sizes).chain([&frame.payload[..]]);
                packetize(out, track.pid, &mut track.cc, total, start, segments);
            }
            (None, _) => {
                let segments = head.chain([&prefix[..prefix_len], &frame.payload[..]]);
                packetize(out, track.pid, &mut track.cc, total, start, segments);
            }
        }
        Ok(())
    }

    /// Muxes a whole segment: PAT/PMT first, then every frame.
    pub fn segment(&mut self, frames: &[MediaFrame]) -> Result<Bytes, ProtocolError> {
        let mut out = BytesMut::with_capacity(frames.iter().map(|f| f.payload.len() + 64).sum::<usize>() + 1024);
        self.write_psi(&mut out);
        for frame in frames {
            self.write_frame(frame, &mut out)?;
        }
        Ok(out.freeze())
    }
}

fn parse_config(codec: CodecId, config: &[u8]) -> Result<TrackConfig, ProtocolError> {
    Ok(match codec {
        CodecId::H264 => {
            let c = h264::AvcConfig::parse(config)?;
            TrackConfig::Video {
                parameter_sets: c.sps.iter().chain(&c.pps).cloned().collect(),
                length_size: usize::from(c.length_size),
            }
        }
        CodecId::H265 => {
            let c = h265::HevcConfig::parse(config)?;
            TrackConfig::Video {
                parameter_sets: c.parameter_sets().cloned().collect(),
                length_size: usize::from(c.length_size),
            }
        }
        CodecId::Aac => TrackConfig::Aac(AudioSpecificConfig::parse(config)?),
        _ => TrackConfig::Opus { channels: OpusHead::parse(config)?.channels },
    })
}

fn is_aud(codec: CodecId, nal: &[u8]) -> bool {
    match codec {
        CodecId::H265 => h265::nal_unit_type(nal) == Some(h265::nal_type::AUD),
        _ => h264::nal_unit_type(nal) == Some(h264::nal_type::AUD),
    }
}

fn is_parameter_set(codec: CodecId, nal: &[u8]) -> bool {
    match codec {
        CodecId::H265 => {
            matches!(h265::nal_unit_type(nal), Some(h265::nal_type::VPS | h265::nal_type::SPS | h265::nal_type::PPS))
        }
        _ => matches!(h264::nal_unit_type(nal), Some(h264::nal_type::SPS | h264::nal_type::PPS)),
    }
}

/// What a video access unit becomes in Annex B, measured before writing.
#[derive(Clone, Copy, Debug)]
struct VideoLayout {
    es_len: usize,
    length_size: usize,
    insert_sets: bool,
}

impl VideoLayout {
    fn measure(
        codec: CodecId,
        payload: &[u8],
        length_size: usize,
        keyframe: bool,
        sets: &[Bytes],
    ) -> Result<Self, ProtocolError> {
        let mut es_len = 0;
        let mut has_sets = false;
        for nal in split_length_prefixed(payload, length_size) {
            let nal = nal?;
            if !is_aud(codec, nal) {
                es_len += START_CODE.len() + nal.len();
                has_sets |= is_parameter_set(codec, nal);
            }
        }
        // Parameter sets already in band are current; inserting the
        // record's older ones before them would only add bytes.
        let insert_sets = keyframe && !has_sets;
        if insert_sets {
            es_len += sets.iter().map(|s| START_CODE.len() + s.len()).sum::<usize>();
        }
        es_len += if codec == CodecId::H265 { H265_AUD.len() } else { H264_AUD.len() };
        Ok(Self { es_len, length_size, insert_sets })
    }
}

/// Adaptation-field content of the first packet of a PES.
#[derive(Clone, Copy, Debug)]
struct PesStart {
    /// The PCR base in 90 kHz ticks (wrapped when written).
    pcr: Option<i64>,
    random_access: bool,
}

fn pcr_bytes(pcr: i64) -> [u8; 6] {
    let base = pcr.rem_euclid(super::TIMESTAMP_MODULUS) as u64;
    // 6 reserved bits set, 9-bit extension zero.
    [(base >> 25) as u8, (base >> 17) as u8, (base >> 9) as u8, (base >> 1) as u8, ((base as u8 & 1) << 7) | 0x7E, 0]
}

/// Writes `total` bytes taken from `segments` as the payload of packets
/// on `pid`, the first with `payload_unit_start_indicator` and `start`'s
/// adaptation field, the last padded with adaptation-field stuffing.
fn packetize<'a>(
    out: &mut BytesMut,
    pid: u16,
    cc: &mut u8,
    total: usize,
    start: PesStart,
    mut segments: impl Iterator<Item = &'a [u8]>,
) {
    const PAYLOAD: usize = PACKET_SIZE - 4;
    out.reserve(total.div_ceil(PAYLOAD - 8) * PACKET_SIZE);
    let mut current: &[u8] = &[];
    let mut remaining = total;
    let mut first = true;
    while remaining > 0 {
        let pcr = start.pcr.filter(|_| first);
        let flags = if first { u8::from(start.random_access) << 6 | u8::from(pcr.is_some()) << 4 } else { 0 };
        // Adaptation field size including its length byte.
        let mut af_len = if flags != 0 { 2 + if pcr.is_some() { 6 } else { 0 } } else { 0 };
        let len = remaining.min(PAYLOAD - af_len);
        af_len += PAYLOAD - af_len - len;
        let control = if af_len > 0 { 0x30 } else { 0x10 };
        out.put_slice(&[SYNC_BYTE, u8::from(first) << 6 | (pid >> 8) as u8 & 0x1F, pid as u8, control | *cc]);
        if af_len > 0 {
            out.put_u8((af_len - 1) as u8);
            if af_len > 1 {
                out.put_u8(flags);
                let mut used = 2;
                if let Some(pcr) = pcr {
                    out.put_slice(&pcr_bytes(pcr));
                    used += 6;
                }
                out.put_bytes(0xFF, af_len - used);
            }
        }
        let mut need = len;
        while need > 0 {
            if current.is_empty() {
                match segments.next() {
                    Some(s) => current = s,
                    None => {
                        // Unreachable when `total` was measured from the same
                        // segments; padding keeps the packet well formed.
                        out.put_bytes(0xFF, need);
                        break;
                    }
                }
            }
            let n = need.min(current.len());
            out.put_slice(&current[..n]);
            current = &current[n..];
            need -= n;
        }
        *cc = (*cc + 1) & 0x0F;
        remaining -= len;
        first = false;
    }
}

/// A packet with only an adaptation field carrying a PCR; `cc` repeats the
/// PID's last counter since the packet has no payload.
fn write_pcr_only(out: &mut BytesMut, pid: u16, cc: u8, pcr: i64) {
    out.put_slice(&[SYNC_BYTE, (pid >> 8) as u8 & 0x1F, pid as u8, 0x20 | cc, 183, 0x10]);
    out.put_slice(&pcr_bytes(pcr));
    out.put_bytes(0xFF, PACKET_SIZE - 12);
}

/// Writes a PSI section as packets: pointer field, section, 0xFF filler.
fn write_section(out: &mut BytesMut, pid: u16, cc: &mut u8, section: &[u8]) {
    let mut rest = section;
    let mut first = true;
    while first || !rest.is_empty() {
        out.put_slice(&[SYNC_BYTE, u8::from(first) << 6 | (pid >> 8) as u8 & 0x1F, pid as u8, 0x10 | *cc]);
        let mut room = PACKET_SIZE - 4;
        if first {
            out.put_u8(0);
            room -= 1;
        }
        let n = room.min(rest.len());
        out.put_slice(&rest[..n]);
        out.put_bytes(0xFF, room - n);
        rest = &rest[n..];
        *cc = (*cc + 1) & 0x0F;
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arcly_core::frame::FrameFlags;

    fn packets(data: &[u8]) -> Vec<&[u8]> {
        assert_eq!(data.len() % PACKET_SIZE, 0);
        data.chunks(PACKET_SIZE).collect()
    }

    fn pid(p: &[u8]) -> u16 {
        u16::from_be_bytes([p[1] & 0x1F, p[2]])
    }

    #[test]
    fn opus_pes_layout() {
        let mut mux = TsMuxer::new(&[TrackSpec::new(CodecId::Opus, None)]).unwrap();
        let mut out = BytesMut::new();
        let payload = Bytes::from(vec![0xAB; 300]);
        let frame = MediaFrame::new(CodecId::Opus, payload).with_timestamps(0, 0, Timebase::MPEG);
        mux.write_frame(&frame, &mut out).unwrap();
        let p = packets(&out);
        assert_eq!(p.len(), 2 + 2);
        assert_eq!((pid(p[0]), pid(p[1]), pid(p[2])), (0, PMT_PID, 0x100));
        // The first PES packet carries a PCR: adaptation field of 7 bytes.
        assert_eq!(&p[2][3..6], &[0x30, 7, 0x10]);
        let pes = &p[2][12..];
        assert_eq!(&pes[..4], &[0, 0, 1, 0xBD]);
        let es_len = 2 + 2 + 300;
        assert_eq!(u16::from_be_bytes([pes[4], pes[5]]) as usize, 8 + es_len);
        assert_eq!(&pes[14..18], &[0x7F, 0xE0, 0xFF, 45]);
        // The last packet is padded with adaptation-field stuffing.
        assert_eq!(p[3][3] & 0x30, 0x30);
        assert_eq!(p[3][3] & 0x0F, 1);
    }

    #[test]
    fn unknown_track_or_codec_is_an_error() {
        assert!(TsMuxer::new(&[]).is_err());
        assert!(TsMuxer::new(&[TrackSpec::new(CodecId::Vp9, None)]).is_err());
        let mut mux = TsMuxer::new(&[TrackSpec::new(CodecId::H264, None)]).unwrap();
        let mut out = BytesMut::new();
        let opus = MediaFrame::new(CodecId::Opus, Bytes::from_static(&[1]));
        assert!(mux.write_frame(&opus, &mut out).is_err());
        let h265 = MediaFrame::new(CodecId::H265, Bytes::from_static(&[0, 0, 0, 1, 2]));
        assert!(mux.write_frame(&h265, &mut out).is_err());
        let broken = MediaFrame::new(CodecId::H264, Bytes::from_static(&[0, 0, 0, 9, 0x65]));
        assert!(mux.write_frame(&broken, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn aac_needs_its_config_and_long_audio_is_refused() {
        let mut mux = TsMuxer::new(&[TrackSpec::new(CodecId::Aac, None)]).unwrap();
        let mut out = BytesMut::new();
        let frame = MediaFrame::new(CodecId::Aac, Bytes::from_static(&[1, 2, 3]));
        assert_eq!(mux.write_frame(&frame, &mut out).unwrap_err().kind, ProtocolErrorKind::UnexpectedMessage);
        // AAC-LC 48 kHz stereo.
        let asc = MediaFrame::new(CodecId::Aac, Bytes::from_static(&[0x11, 0x90])).with_flags(FrameFlags::CONFIG);
        mux.write_frame(&asc, &mut out).unwrap();
        assert!(out.is_empty());
        mux.write_frame(&frame, &mut out).unwrap();
        let p = packets(&out);
        // PCR and stuffing fill the adaptation field of the only packet.
        let pes = &p[2][5 + usize::from(p[2][4])..];
        assert_eq!(&pes[..4], &[0, 0, 1, 0xC0]);
        assert_eq!(&pes[14..16], &[0xFF, 0xF1]);
        let opus = MediaFrame::new(CodecId::Opus, Bytes::from(vec![0; 70_000]));
        let mut mux = TsMuxer::new(&[TrackSpec::new(CodecId::Opus, None)]).unwrap();
        assert_eq!(mux.write_frame(&opus, &mut out).unwrap_err().kind, ProtocolErrorKind::TooLarge);
    }

    #[test]
    fn pcr_repeats_on_the_video_pid_when_only_audio_flows() {
        let mut mux =
            TsMuxer::new(&[TrackSpec::new(CodecId::Opus, None), TrackSpec::new(CodecId::H264, None)]).unwrap();
        assert_eq!(mux.pmt().pcr_pid, 0x101);
        let mut out = BytesMut::new();
        for i in 0..10 {
            let f = MediaFrame::new(CodecId::Opus, Bytes::from_static(&[0xFC])).with_timestamps(
                i * 1800,
                i * 1800,
                Timebase::MPEG,
            );
            mux.write_frame(&f, &mut out).unwrap();
        }
        let pcr_packets: Vec<_> = packets(&out).into_iter().filter(|p| pid(p) == 0x101).collect();
        // At 0 and 9000 ticks (frames are 1800 apart, the last at 16200).
        assert_eq!(pcr_packets.len(), 2);
        assert!(pcr_packets.iter().all(|p| p[3] == 0x2F && p[5] == 0x10));
    }
}
