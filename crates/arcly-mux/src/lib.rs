//! Containers for live media, written natively on [`bytes::Bytes`]: FLV
//! (with Enhanced FLV) and the AMF0 it carries, MPEG-TS mux and demux, and
//! fMP4/CMAF.
//!
//! Muxers take [`arcly_core::frame::MediaFrame`]s in the bus formats
//! documented in `arcly-codec` and return container bytes; demuxers take
//! bytes in chunks of any size and return frames. None reads a clock or
//! touches a socket.
//!
//! # Where AMF0 lives
//! AMF0 is the value encoding of FLV script tags and of RTMP commands, so it
//! lives here, in [`amf0`], and `arcly-rtmp` uses it from this crate: one
//! implementation for both, and RTMP (a protocol crate) depends on a media
//! crate, as the architecture allows, rather than FLV depending on RTMP.
//!
//! # Features
//! `flv`, `mpegts`, `fmp4` (all on by default). [`amf0`] is always present.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod amf0;
#[cfg(feature = "flv")]
pub mod flv;
#[cfg(feature = "fmp4")]
pub mod fmp4;
#[cfg(feature = "mpegts")]
pub mod ts;
