//! MPEG transport stream (ISO/IEC 13818-1): a muxer from bus frames to
//! 188-byte packets, and a streaming demuxer from packets back to frames.
//!
//! Supported elementary streams, both ways:
//!
//! | codec | `stream_type` | PES `stream_id` | elementary stream |
//! |---|---|---|---|
//! | H.264 | `0x1B` | `0xE0` | Annex B, AUD first, SPS/PPS before keyframes |
//! | H.265 | `0x24` | `0xE0` | Annex B, AUD first, VPS/SPS/PPS before keyframes |
//! | AAC | `0x0F` | `0xC0` | ADTS |
//! | Opus | `0x06` + `Opus` registration | `0xBD` | Opus control header + packet |
//!
//! [`TsMuxer`] turns [`MediaFrame`](arcly_core::frame::MediaFrame)s in the
//! bus formats of `arcly-codec` into packets, one PES per frame;
//! [`TsDemuxer`] turns bytes in chunks of any size back into frames and
//! configuration records, with 33-bit timestamps unwrapped into `i64`.
//!
//! ```
//! use arcly_core::frame::{CodecId, MediaFrame, Timebase};
//! use arcly_mux::ts::{DemuxEvent, TrackSpec, TsDemuxer, TsMuxer};
//! use bytes::{Bytes, BytesMut};
//!
//! let mut mux = TsMuxer::new(&[TrackSpec::new(CodecId::Opus, None)]).unwrap();
//! let mut out = BytesMut::new();
//! let packet = MediaFrame::new(CodecId::Opus, Bytes::from_static(&[0xFC, 1, 2, 3]))
//!     .with_timestamps(960, 960, Timebase::sample_rate(48_000).unwrap());
//! mux.write_frame(&packet, &mut out).unwrap();
//! assert_eq!(out.len() % 188, 0);
//!
//! let mut demux = TsDemuxer::new();
//! demux.push(&out);
//! demux.flush();
//! let frames: Vec<_> = std::iter::from_fn(|| demux.poll())
//!     .filter_map(|e| match e.unwrap() {
//!         DemuxEvent::Frame(f) if !f.is_config() => Some(f),
//!         _ => None,
//!     })
//!     .collect();
//! assert_eq!(frames.len(), 1);
//! assert_eq!((frames[0].pts, &frames[0].payload[..]), (960, &[0xFC, 1, 2, 3][..]));
//! ```

use arcly_core::{ProtocolError, ProtocolErrorKind};

mod crc;
mod demux;
mod mux;
mod pes;
mod psi;

pub use crc::crc32_mpeg2;
pub use demux::{DemuxEvent, EsInfo, MAX_PES_SIZE, TsDemuxer};
pub use mux::{PCR_OFFSET, TrackSpec, TsMuxer};
pub use pes::{TIMESTAMP_MODULUS, TimestampUnwrapper, decode_timestamp, encode_timestamp};
pub use psi::{Pat, Pmt, PmtStream};

/// The size of a transport stream packet.
pub const PACKET_SIZE: usize = 188;
/// The sync byte every packet starts with.
pub const SYNC_BYTE: u8 = 0x47;
/// The PID of the program association table.
pub const PAT_PID: u16 = 0x0000;
/// The PID of null (padding) packets.
pub const NULL_PID: u16 = 0x1FFF;

/// `stream_type` values of the PMT.
pub mod stream_type {
    /// ISO/IEC 13818-7 AAC with ADTS framing.
    pub const AAC_ADTS: u8 = 0x0F;
    /// H.264 / AVC.
    pub const H264: u8 = 0x1B;
    /// H.265 / HEVC.
    pub const H265: u8 = 0x24;
    /// PES packets with private data (Opus, identified by its registration
    /// descriptor).
    pub const PRIVATE_PES: u8 = 0x06;
}

fn err(kind: ProtocolErrorKind, context: impl Into<String>) -> ProtocolError {
    ProtocolError::new("mpegts", kind, context)
}

/// Fuzz entry point: feeds `data` to a demuxer in two chunks, split at the
/// position given by its first byte, and drains every event. Never panics.
#[doc(hidden)]
pub fn fuzz_demux(data: &[u8]) {
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut demux = TsDemuxer::new();
    demux.push(&data[..split]);
    while demux.poll().is_some() {}
    demux.push(&data[split..]);
    demux.flush();
    while demux.poll().is_some() {}
}
