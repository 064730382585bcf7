//! The bodies of the fuzz targets, one public function per target.
//!
//! Each file in `fuzz_targets/` is one line that hands libFuzzer's input to
//! the function of the same name here, so libFuzzer (nightly, `cargo fuzz`)
//! and the replay tests in `tests/replay.rs` (stable `cargo test`, over
//! `corpus/` and `regressions/`) run the same code. [`TARGETS`] lists them.
//!
//! A target returns on input its parser refuses and panics only on a bug:
//! a panic inside a parser, or a property the parser promises that does
//! not hold. The properties checked, besides "never panics":
//! - Streaming parsers (RTMP handshake, chunk stream and sessions, FLV
//!   reader, MPEG-TS demuxer) give the same messages, tags, events or
//!   frames whether the input comes at once or cut into pieces. Their input
//!   is one seed byte, which picks the cuts ([`split`]), then the stream.
//! - Round trips where a writer exists (AMF0, FLV, MPEG-TS, the RTMP chunk
//!   stream): what was read, written and read again is equal, in the terms
//!   the format guarantees (values, frames and timestamps; not bytes).

#![forbid(unsafe_code)]

mod codec;
mod hls;
mod kernel;
mod mux;
mod rtmp;
pub mod split;

pub use codec::{aac, annexb, av1, h264, h265, opus, vp9, vvc};
pub use hls::{hls_ingest, hls_packager, hls_params};
pub use kernel::{bus_ops, identity};
pub use mux::{amf0, amf0_roundtrip, flv_read, flv_roundtrip, ts_demux, ts_roundtrip};
pub use rtmp::{rtmp_chunk, rtmp_client, rtmp_handshake, rtmp_server};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every target: its name (of its file in `fuzz_targets/` and of its
/// folders in `corpus/` and `regressions/`) and its body.
pub const TARGETS: &[(&str, Target)] = &[
    ("identity", identity),
    ("bus_ops", bus_ops),
    ("annexb", annexb),
    ("h264", h264),
    ("h265", h265),
    ("av1", av1),
    ("vp9", vp9),
    ("vvc", vvc),
    ("aac", aac),
    ("opus", opus),
    ("amf0", amf0),
    ("amf0_roundtrip", amf0_roundtrip),
    ("flv_read", flv_read),
    ("flv_roundtrip", flv_roundtrip),
    ("ts_demux", ts_demux),
    ("ts_roundtrip", ts_roundtrip),
    ("rtmp_handshake", rtmp_handshake),
    ("rtmp_chunk", rtmp_chunk),
    ("rtmp_server", rtmp_server),
    ("rtmp_client", rtmp_client),
    ("hls_params", hls_params),
    ("hls_packager", hls_packager),
    ("hls_ingest", hls_ingest),
];
