//! RTMP for arcly-stream: a sans-IO protocol core and a tokio server that
//! publishes onto and plays from an [`Engine`](arcly_core::engine::Engine).
//!
//! Layers, bottom up:
//! - [`handshake`]: plain and digest handshakes, server and client side.
//! - [`chunk`]: the chunk stream ([`chunk::ChunkDecoder`],
//!   [`chunk::ChunkEncoder`]) with its limits.
//! - [`message`] and [`command`]: protocol control, user control events,
//!   media and data messages, NetConnection/NetStream commands.
//! - [`session`]: [`ServerSession`], a server connection as a state machine
//!   fed bytes and the time, returning bytes, events and deadlines.
//! - [`server`]: [`RtmpServer`], the tokio driver, an
//!   [`InboundProtocol`](arcly_core::inbound::InboundProtocol).
//! - [`client`]: [`client::ClientSession`] (sans-IO) and the relay tasks
//!   [`client::push`] and [`client::pull`], reconnecting with backoff.
//!
//! Audio, video and data message bodies are FLV tag bodies: they are read
//! with the FLV body parsers of `arcly-mux` and written with its
//! [`FlvWriter`](arcly_mux::flv::FlvWriter), so every codec the FLV module
//! knows (including Enhanced RTMP FourCC video and audio) passes through.
//!
//! # Behaviour
//! - Handshake: plain and digest (schemes 0 and 1); a digest client gets a
//!   digest S1/S2, a plain one an echo. RTMPE (version 6) is refused.
//! - Limits (per connection, [`SessionConfig`]): handshake + `connect`
//!   timeout, idle timeout (no traffic either way), peer chunk size cap
//!   (64 KiB), message size cap (16 MiB), bytes of incomplete messages,
//!   chunk streams, message streams, queued output. Breaking one closes that
//!   connection with a log line naming the limit.
//! - Publishing: `key?query` is split, the query goes to
//!   [`Credentials::query`](arcly_core::auth::Credentials::query); a stream
//!   already live is refused with `NetStream.Publish.BadName` (as
//!   nginx-rtmp does), an authorization failure with
//!   `NetStream.Publish.Unauthorized`. Timestamps are extended past the
//!   32-bit wrap. Aggregate messages are split.
//! - Playing: an unknown stream gets `NetStream.Play.StreamNotFound`
//!   (after [`ServerConfig::play_wait`]); a player starts with the metadata,
//!   the sequence headers and the cached keyframe from the bus; frames are
//!   written in batches (one vectored write per batch window, 50 ms by
//!   default, on the engine's shared batch clock). When the publisher
//!   leaves it gets StreamEOF and `NetStream.Play.UnpublishNotify`; if the
//!   application has a republish grace and a publisher comes back, it stays
//!   and gets StreamBegin and `NetStream.Play.PublishNotify`, then frames.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use arcly_core::engine::{AppSpec, Engine};
//! use arcly_rtmp::{RtmpServer, ServerConfig};
//!
//! let config = ServerConfig { listen: "127.0.0.1:1935".parse()?, ..ServerConfig::default() };
//! let (server, addr) = RtmpServer::bind(config).await?;
//! let engine = Engine::builder().application(AppSpec::new("live")).inbound(Arc::new(server)).build();
//! // Publish with `ffmpeg -i in.flv -c copy -f flv rtmp://{addr}/live/key`,
//! // play with `ffplay rtmp://{addr}/live/key`.
//! # let _ = addr;
//! engine.run(tokio_util::sync::CancellationToken::new()).await?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chunk;
pub mod client;
pub mod command;
pub mod handshake;
pub mod message;
pub mod server;
pub mod session;

pub use server::{RtmpServer, ServerConfig};
pub use session::{ServerSession, SessionConfig, SessionEvent, fuzz_server};

/// The protocol name in errors, logs and audit records.
pub const PROTOCOL: &str = "rtmp";
