//! Fragmented MP4 (CMAF-style): an initialisation segment and movie
//! fragments, for HLS/LL-HLS and DASH.
//!
//! - [`TrackConfig`]: one track, built from the bus's `CONFIG` frame (or per
//!   codec): H.264 (`avc1`), H.265 (`hvc1`), AV1 (`av01`), VP9 (`vp09`), AAC
//!   (`mp4a`), Opus (`Opus`).
//! - [`init_segment`]: `ftyp` + `moov` for a set of tracks.
//! - [`FragmentWriter`]: `moof` + `mdat` fragments of the frames pushed
//!   since the previous one, cut wherever the caller decides; payloads are
//!   bus payloads unchanged (the bus formats are MP4's sample formats), and
//!   can be written without copying with
//!   [`FragmentWriter::flush_fragment_parts`].
//! - [`BoxWriter`]: the box writer underneath, for other boxes a caller
//!   needs (`emsg`, `prft`, `styp`).
//!
//! Video tracks use a 90 kHz timescale, audio tracks their sample rate;
//! timestamps are rescaled exactly as absolute values, and sample durations
//! are differences of rescaled decode times, so the timeline never drifts.
//!
//! ```
//! use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
//! use arcly_mux::fmp4::{FragmentWriter, TrackConfig};
//! let asc = MediaFrame::new(CodecId::Aac, bytes::Bytes::from_static(&[0x11, 0x90])).with_flags(FrameFlags::CONFIG);
//! let mut writer = FragmentWriter::new(&[TrackConfig::from_config_frame(&asc).unwrap()]);
//! let mut file = writer.init_segment().to_vec();
//! let tb = Timebase::sample_rate(48_000).unwrap();
//! for i in 0..100 {
//!     let frame = MediaFrame::new(CodecId::Aac, bytes::Bytes::from_static(&[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]))
//!         .with_timestamps(i * 1024, i * 1024, tb);
//!     writer.push(0, &frame).unwrap();
//!     if writer.pending_duration(0) >= std::time::Duration::from_millis(500) {
//!         file.extend_from_slice(&writer.flush_fragment().unwrap());
//!     }
//! }
//! file.extend_from_slice(&writer.finish().unwrap());
//! ```

mod boxes;
mod fragment;
mod init;
mod track;

pub use boxes::BoxWriter;
pub use fragment::FragmentWriter;
pub use init::init_segment;
pub use track::{TrackConfig, VIDEO_TIMESCALE};

#[cfg(test)]
mod tests;
