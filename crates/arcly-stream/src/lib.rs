//! arcly-stream: a live-media streaming kernel.
//!
//! This is the facade crate: it re-exports the kernel ([`arcly_core`]) and,
//! behind features, the protocol and media crates, and gathers what an
//! embedding host needs in [`prelude`].
//!
//! ```
//! use arcly_stream::prelude::*;
//! let engine = Engine::builder()
//!     .max_publishers(1000)
//!     .application(AppSpec::new("live").gop_cache(120))
//!     .build();
//! assert_eq!(engine.list_apps().len(), 1);
//! ```
//!
//! # Features
//! `default` is empty: the kernel alone. `full` enables every optional
//! crate.
//!
//! | feature | brings in |
//! |---|---|
//! | `codec` | `codec` (`arcly-codec`) with H.264 and AAC |
//! | `codec-h265`, `codec-av1`, `codec-vp9`, `codec-vvc`, `codec-opus` | that codec's parsers |
//! | `codecs-all` | every codec |
//! | `flv`, `mpegts`, `fmp4` | `mux` (`arcly-mux`) with that container (AMF0 always) |
//! | `rtmp` | `rtmp` (`arcly-rtmp`): the RTMP server and client |
//!
//! Further protocol features (`hls`, `srt`, ...) are added as their crates
//! land.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use arcly_core;
pub use arcly_core::{audit, auth, bus, cluster, engine, error, frame, health, identity, inbound, observe, testing};
pub use arcly_core::{timestamps, traits, transcode};

/// Codec parsers: the `arcly-codec` crate.
#[cfg(feature = "_codec")]
pub use arcly_codec as codec;
/// Containers (FLV and AMF0, MPEG-TS, fMP4): the `arcly-mux` crate.
#[cfg(feature = "_mux")]
pub use arcly_mux as mux;
/// RTMP server and client: the `arcly-rtmp` crate.
#[cfg(feature = "rtmp")]
pub use arcly_rtmp as rtmp;

// The README's examples are compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// Everything a host needs to build an engine, publish and play.
///
/// ```
/// use arcly_stream::prelude::*;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let engine = Engine::builder().application(AppSpec::new("live")).build();
/// let session = engine.begin_publish("live/cam1".parse()?, "host", &Credentials::default()).await?;
/// session.publish(MediaFrame::new(CodecId::H264, bytes::Bytes::from_static(b"idr")).with_flags(FrameFlags::KEYFRAME))?;
/// let mut player = engine.play(session.id(), "host", &Credentials::default()).await?;
/// assert!(player.recv().await.unwrap().is_keyframe());
/// # Ok::<(), StreamError>(())
/// # }).unwrap();
/// ```
pub mod prelude {
    pub use arcly_core::audit::{AuditEvent, AuditPipeline, AuditSink, FileAuditSink};
    pub use arcly_core::auth::{Action, AllowAll, AuthRequest, Credentials, Denial, StreamAuthenticator};
    pub use arcly_core::bus::{
        Batch, BusConfig, EventBus, FrameRef, RecvError, StreamEvent, StreamHandle, StreamPublisher, StreamQos,
        Subscriber,
    };
    pub use arcly_core::engine::{AppSpec, Engine, EngineBuilder, PlaybackRegistry, PublishRegistry, StreamInfo};
    pub use arcly_core::error::{ProtocolError, ProtocolErrorKind, Result, StreamError};
    pub use arcly_core::frame::{CodecId, FrameFlags, FrameType, MediaFrame, Timebase};
    pub use arcly_core::health::{HealthCheck, HealthRegistry, HealthReport, HealthStatus};
    pub use arcly_core::identity::{AppName, StreamId, StreamKey};
    pub use arcly_core::inbound::{InboundProtocol, IngestContext, PlaySession, PublishSession};
    pub use arcly_core::observe::{NoopObserver, Observer, StandardTelemetry};
    pub use arcly_core::timestamps::TimestampPolicy;
    pub use arcly_core::traits::{HwAccelBackend, MediaSink, MediaSource, ProtocolHandler, StorageBackend};
}
