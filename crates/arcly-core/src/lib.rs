//! The arcly-stream kernel: media frames, stream identities, the pub/sub bus
//! and the engine that ties protocols, authorization and audit together.
//!
//! Protocol crates (`arcly-rtmp`, `arcly-hls`, ...) build on this crate and
//! on nothing of each other. Most users want the `arcly-stream` facade.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use arcly_core::auth::Credentials;
//! use arcly_core::engine::{AppSpec, Engine};
//! use arcly_core::testing::SyntheticStream;
//!
//! let engine = Engine::builder().application(AppSpec::new("live")).build();
//! let id = "live/demo".parse().unwrap();
//! let publisher = engine.begin_publish(id, "example", &Credentials::default()).await?;
//! for frame in SyntheticStream::new(30, 30).take(10) {
//!     publisher.publish(frame)?;
//! }
//! // A player joining now starts at the cached keyframe.
//! let mut player = engine.play(publisher.id(), "example", &Credentials::default()).await?;
//! let first = player.recv().await.unwrap();
//! assert!(first.is_config());
//! # Ok::<(), arcly_core::StreamError>(())
//! # }).unwrap();
//! ```
//!
//! What this crate does not do: no sockets, no protocol, no configuration
//! file format, no global state. A process may run several engines.
//!
//! # Panic policy
//! Peer input never panics: it is validated into errors. A panic is a bug.
//! [`engine::EngineBuilder::build`] panics on an invalid configuration
//! written by the host (`try_build` returns the error instead).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod audit;
pub mod auth;
pub mod bus;
pub mod cluster;
pub mod engine;
pub mod error;
pub mod frame;
pub mod health;
pub mod identity;
pub mod inbound;
pub mod limit;
pub mod observe;
pub mod testing;
pub mod timestamps;
pub mod traits;
pub mod transcode;

pub use error::{ProtocolError, ProtocolErrorKind, Result, StreamError};
