//! Recording for arcly-stream: each selected stream written to fMP4 or
//! MPEG-TS files that rotate at keyframes, with a VOD playlist per
//! recording, through a [`StorageBackend`](arcly_core::traits::StorageBackend).
//!
//! - [`RecordingSink`]: one stream's recording, a
//!   [`MediaSink`](arcly_core::traits::MediaSink) fed bus frames. It cuts
//!   files at keyframes by duration or size, writes each fMP4 fragment or
//!   TS chunk with one append, and keeps the recording's playlist.
//! - [`Recorder`]: the service. [`Recorder::run`] follows the engine and
//!   gives every stream that [`RecordConfig`] selects (all, or by
//!   application and key patterns) a sink fed by a bus subscriber, like a
//!   player; storage errors stop that recording (log, counter, health) and
//!   are retried, and the live stream never notices.
//! - [`FsStorage`]: the storage backend for a local directory, with
//!   crash-safe appends and atomic replacement.
//!
//! # Files
//! ```text
//! {root}/live/cam1/2026-11-25T01-23-45Z.m3u8        the recording's playlist
//! {root}/live/cam1/2026-11-25T01-23-45Z_0001.mp4    its files, in order
//! {root}/live/cam1/2026-11-25T01-23-45Z_0002.mp4
//! ```
//! The time stamp is the UTC time of the recording's first frame. Every
//! file starts with a keyframe and plays on its own; the playlist plays the
//! whole recording (see [`RecordingSink`] for the rules).
//!
//! # Crash safety
//! Each fMP4 fragment (`moof` + `mdat`, at most
//! [`fragment_duration`](RecordConfig::fragment_duration) long, cut at
//! every keyframe) or TS chunk is written with one append. After the
//! process is killed (`kill -9`), every closed file is complete and the
//! open one ends with whole fragments: it plays up to its last one. Files
//! are `fsync`ed when they close; the playlist is replaced atomically when
//! a file closes, so it only names complete files. See [`FsStorage`] for
//! the durability of each operation.
//!
//! # Example
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//! use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
//! use arcly_core::testing::MemoryStorage;
//! use arcly_core::traits::{MediaSink, StorageBackend};
//! use arcly_record::{RecordConfig, RecordFormat, RecordingSink};
//!
//! let storage = Arc::new(MemoryStorage::default());
//! let config = RecordConfig { format: RecordFormat::Fmp4, max_duration: Duration::from_secs(1), ..RecordConfig::default() };
//! let mut sink = RecordingSink::new(storage.clone(), "live/radio".parse().unwrap(), config);
//! // An audio-only stream: AAC-LC 48 kHz stereo, 1024-sample frames.
//! let asc = MediaFrame::new(CodecId::Aac, bytes::Bytes::from_static(&[0x11, 0x90])).with_flags(FrameFlags::CONFIG);
//! let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_569_825);
//! sink.push(&asc, start).await?;
//! let tb = Timebase::sample_rate(48_000).unwrap();
//! for i in 0..150 {
//!     let frame = MediaFrame::new(CodecId::Aac, bytes::Bytes::from_static(&[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]))
//!         .with_timestamps(i * 1024, i * 1024, tb);
//!     sink.push(&frame, start).await?;
//! }
//! sink.finish().await?;
//! // 3.2 s of audio in files of (at least) 1 s.
//! let files = storage.list("live/radio/").await?;
//! assert_eq!(files[0], "live/radio/2026-11-25T01-23-45Z.m3u8");
//! assert_eq!(files[1], "live/radio/2026-11-25T01-23-45Z_0001.mp4");
//! assert_eq!(files.len(), 5);
//! let playlist = storage.get("live/radio/2026-11-25T01-23-45Z.m3u8").await?.unwrap();
//! let playlist = std::str::from_utf8(&playlist).unwrap();
//! assert!(playlist.contains("#EXT-X-PLAYLIST-TYPE:VOD") && playlist.ends_with("#EXT-X-ENDLIST\n"));
//! # Ok::<(), arcly_core::StreamError>(())
//! # }).unwrap();
//! ```
//!
//! **Crate boundary:** this crate depends on `arcly-core` and `arcly-mux`
//! only; the server composes it with the protocols.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod config;
mod fs;
mod playlist;
mod segmenter;
mod service;
mod sink;
mod stats;
mod time;

pub use config::{RecordConfig, RecordFormat, glob_match};
pub use fs::FsStorage;
pub use service::{HEALTH_CHECK, Recorder};
pub use sink::RecordingSink;
pub use stats::RecorderStats;
