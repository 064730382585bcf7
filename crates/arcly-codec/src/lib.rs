//! Bitstream parsers for live media, written on `&[u8]` and [`bytes::Bytes`]
//! without copying payloads.
//!
//! Every parser returns an [`arcly_core::ProtocolError`] on truncated or
//! invalid input; none panics and none allocates from an unchecked length.
//!
//! # Bus formats
//! The payload of an [`arcly_core::frame::MediaFrame`] on the bus, per codec
//! (the formats MP4 and FLV use, so most outputs pass payloads through):
//!
//! | codec | media frame payload | `CONFIG` frame payload |
//! |---|---|---|
//! | H.264 | NAL units, each with a big-endian length of the size the `CONFIG` record declares (4 bytes from every demuxer here) | AVCDecoderConfigurationRecord ([`h264::AvcConfig`]) |
//! | H.265 | NAL units, each with a length as for H.264 | HEVCDecoderConfigurationRecord ([`h265::HevcConfig`]) |
//! | VVC | NAL units, each with a length as for H.264 | VvcDecoderConfigurationRecord (carried as is; not parsed yet) |
//! | AV1 | a temporal unit: OBUs with `obu_has_size_field` set, no temporal delimiter | AV1CodecConfigurationRecord ([`av1::Av1Config`]) |
//! | VP9 | one frame (or superframe) | VPCodecConfigurationRecord ([`vp9::VpConfig`]) |
//! | AAC | one raw access unit, no ADTS header | AudioSpecificConfig ([`aac::AudioSpecificConfig`]) |
//! | Opus | one Opus packet | OpusHead ([`opus::OpusHead`]) |
//! | Metadata | an AMF0 script body (`onMetaData`) | the same |
//!
//! Keyframes carry [`arcly_core::frame::FrameFlags::KEYFRAME`]. Timestamps
//! may be in any timebase; 90 kHz for video and the sample rate for audio
//! keep them exact.
//!
//! # Features
//! One per codec: `h264`, `h265`, `av1`, `vp9`, `vvc`, `aac`, `opus`;
//! `default` is `h264` + `aac`; `full` is all of them. [`annexb`] and [`bits`]
//! are always present.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod annexb;
pub mod bits;

#[cfg(feature = "aac")]
pub mod aac;
#[cfg(feature = "av1")]
pub mod av1;
#[cfg(feature = "h264")]
pub mod h264;
#[cfg(feature = "h265")]
pub mod h265;
#[cfg(feature = "opus")]
pub mod opus;
#[cfg(feature = "vp9")]
pub mod vp9;
#[cfg(feature = "vvc")]
pub mod vvc;

#[doc(hidden)]
pub mod fuzzing;
