//! HLS and LL-HLS packaging for arcly-stream.
//!
//! - [`Packager`]: the sans-IO per-stream packager. Fed bus
//!   [`MediaFrame`](arcly_core::frame::MediaFrame)s and the wall clock, it
//!   cuts keyframe-aligned segments and LL-HLS parts, writes them in fMP4
//!   (CMAF) and MPEG-TS, and renders the media and multivariant playlists.
//! - [`Hls`]: the service. [`Hls::run`] follows the engine's streams (one
//!   packager task each); [`Hls::playlist`], [`Hls::multivariant`],
//!   [`Hls::init`], [`Hls::segment`] and [`Hls::part`] answer a web
//!   server's requests, blocking for `_HLS_msn`/`_HLS_part` reloads and
//!   preload-hinted parts. No HTTP types: [`HlsError::status_code`] maps
//!   errors to statuses.
//!
//! Codecs: H.264 and H.265 video, AAC and Opus audio, in both formats;
//! audio-only and video-only streams work.
//!
//! # URI scheme
//! All URIs in playlists are relative, so a server mounts a stream's files
//! under any prefix, e.g. `/hls/{app}/{key}/`:
//!
//! | URI | what | served by |
//! |---|---|---|
//! | `multivariant.m3u8` | multivariant playlist (one variant: `index.m3u8`, or `ts/index.m3u8` without fMP4) | [`Hls::multivariant`] |
//! | `index.m3u8` | LL-HLS media playlist (fMP4) | [`Hls::playlist`] with [`PlaylistKind::LowLatency`] |
//! | `init.mp4` | fMP4 initialisation segment (`EXT-X-MAP`) | [`Hls::init`] |
//! | `init{n}.mp4` | later initialisation segments (a republish with other tracks) | [`Hls::segment`] with [`PlaylistKind::LowLatency`] |
//! | `seg{msn}.m4s` | fMP4 segment | [`Hls::segment`] with [`PlaylistKind::LowLatency`] |
//! | `part{msn}.{n}.m4s` | LL-HLS part `n` (from 0) of segment `msn` | [`Hls::part`] |
//! | `ts/index.m3u8` | classic HLS media playlist (MPEG-TS, no parts) | [`Hls::playlist`] with [`PlaylistKind::Ts`] |
//! | `ts/seg{msn}.ts` | MPEG-TS segment (name given as `seg{msn}.ts` or `ts/seg{msn}.ts`) | [`Hls::segment`] with [`PlaylistKind::Ts`] |
//!
//! Query parameters of `index.m3u8` go into a [`PlaylistRequest`]:
//! `_HLS_msn`, `_HLS_part`, `_HLS_skip=YES`.
//!
//! # Playlists
//! The LL-HLS playlist (version 9) has `EXT-X-SERVER-CONTROL` with
//! `CAN-BLOCK-RELOAD=YES`, `CAN-SKIP-UNTIL` = 6 × target duration and
//! `PART-HOLD-BACK` = 3 × part target; `EXT-X-PART-INF`, `EXT-X-MAP`,
//! `EXT-X-PROGRAM-DATE-TIME` per segment, `EXT-X-PART` lines for the
//! segments of the last three target durations and the open segment, and
//! always an `EXT-X-PRELOAD-HINT` for the next part. There is a single
//! rendition, so no `EXT-X-RENDITION-REPORT`. Delta updates skip the oldest
//! segments while at least `CAN-SKIP-UNTIL` seconds remain. See [`Packager`]
//! for segmenting, target duration and discontinuity rules.
//!
//! # Example
//! ```
//! use std::time::SystemTime;
//! use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
//! use arcly_hls::{HlsConfig, Packager, PlaylistKind};
//!
//! let mut packager = Packager::new(HlsConfig::default());
//! let now = SystemTime::UNIX_EPOCH;
//! // Opus, 20 ms packets: an audio-only stream.
//! let head = [b"OpusHead".as_slice(), &[1, 2, 0x38, 1, 0x80, 0xBB, 0, 0, 0, 0, 0]].concat();
//! packager.push(&MediaFrame::new(CodecId::Opus, head.into()).with_flags(FrameFlags::CONFIG), now);
//! let tb = Timebase::sample_rate(48_000).unwrap();
//! for i in 0..250 {
//!     let packet = MediaFrame::new(CodecId::Opus, bytes::Bytes::from_static(&[0xFC, 0xFF, 0xFE]))
//!         .with_timestamps(i * 960, i * 960, tb);
//!     packager.push(&packet, now);
//! }
//! let playlist = packager.media_playlist(PlaylistKind::LowLatency, false).unwrap();
//! assert!(playlist.starts_with("#EXTM3U\n"));
//! assert!(playlist.contains("#EXT-X-MAP:URI=\"init.mp4\""));
//! assert!(playlist.contains("#EXTINF:2.00000,\nseg0.m4s"));
//! let segment = packager.segment(PlaylistKind::LowLatency, "seg0.m4s").unwrap();
//! assert_eq!(&segment[0][4..8], b"moof");
//! let ts = packager.media_playlist(PlaylistKind::Ts, false).unwrap();
//! assert!(ts.contains("seg0.ts"));
//! assert!(packager.multivariant().unwrap().contains("CODECS=\"opus\""));
//! ```
//!
//! The service, in a server:
//! ```no_run
//! # async fn serve(engine: arcly_core::engine::Engine) -> Result<(), arcly_hls::HlsError> {
//! use arcly_hls::{Hls, HlsConfig, PlaylistKind, PlaylistRequest};
//! let hls = Hls::new(engine, HlsConfig::default());
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! tokio::spawn({
//!     let hls = hls.clone();
//!     async move { hls.run(shutdown).await }
//! });
//! let stream = "live/demo".parse().unwrap();
//! // GET /hls/live/demo/index.m3u8?_HLS_msn=12&_HLS_part=3
//! let req = PlaylistRequest { msn: Some(12), part: Some(3), skip: false };
//! let body = hls.playlist(&stream, PlaylistKind::LowLatency, req).await?;
//! # let _ = body;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod codecs;
mod config;
mod packager;
mod playlist;
mod service;

pub use codecs::codec_string;
pub use config::HlsConfig;
pub use packager::{Packager, PlaylistKind, SegmentInfo};
pub use service::{Hls, HlsError, PlaylistRequest};

/// Fuzz entry point: synthetic frames derived from `data` (codec, flags,
/// timestamps, payload sizes) go through a packager, whose playlists and
/// resources are then rendered. Never panics.
#[doc(hidden)]
pub fn fuzz_packager(data: &[u8]) {
    use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
    use std::time::{Duration, SystemTime};

    // A real-looking AAC config and OpusHead so that output starts.
    let mut packager = Packager::new(HlsConfig {
        segment_target: Duration::from_millis(500),
        part_target: Duration::from_millis(100),
        window: 3,
        ..HlsConfig::default()
    });
    let now = SystemTime::UNIX_EPOCH;
    let mut dts: i64 = 0;
    for chunk in data.chunks(4) {
        let [a, b, c, d] = [0, 1, 2, 3].map(|i| chunk.get(i).copied().unwrap_or(0));
        let codec = match a % 4 {
            0 | 1 => CodecId::Aac,
            2 => CodecId::Opus,
            _ => CodecId::H264,
        };
        let mut flags = FrameFlags::EMPTY;
        if b & 1 != 0 {
            flags |= FrameFlags::KEYFRAME;
        }
        if b & 2 != 0 && b & 4 != 0 {
            flags |= FrameFlags::DISCONTINUITY;
        }
        let payload = match (codec, b & 8 != 0) {
            (CodecId::Aac, true) => bytes::Bytes::from_static(&[0x11, 0x90]),
            (CodecId::Opus, true) => bytes::Bytes::from_static(&[
                b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd', 1, 2, 0x38, 1, 0x80, 0xBB, 0, 0, 0, 0, 0,
            ]),
            _ => bytes::Bytes::copy_from_slice(chunk),
        };
        if b & 8 != 0 {
            flags |= FrameFlags::CONFIG;
        }
        let step = i64::from(c) * 90 - if d > 250 { 9_000 } else { 0 };
        dts = dts.saturating_add(step);
        let tb = if a & 0x10 != 0 { Timebase::MILLIS } else { Timebase::MPEG };
        let frame = MediaFrame::new(codec, payload)
            .with_timestamps(dts.saturating_add(i64::from(d)), dts, tb)
            .with_flags(flags)
            .with_duration(u32::from(d));
        packager.push(&frame, now);
        let _ = packager.media_playlist(PlaylistKind::LowLatency, b & 16 != 0);
    }
    packager.discontinuity();
    packager.finish();
    for kind in [PlaylistKind::LowLatency, PlaylistKind::Ts] {
        let _ = packager.media_playlist(kind, true);
        let _ = packager.media_playlist(kind, false);
    }
    let _ = packager.multivariant();
    let _ = packager.part("part0.0.m4s");
    let _ = packager.segment(PlaylistKind::Ts, "seg0.ts");
}
