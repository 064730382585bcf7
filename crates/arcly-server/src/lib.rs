//! The arcly streaming server as a library: the `arcly` binary is a thin
//! command line around [`Server::start`], and the tests start the same
//! server in-process on `127.0.0.1:0`.
//!
//! - [`config`]: the TOML configuration, environment overrides and
//!   validation; [`auth`]: its `[auth]` and `[audit]` sections, built into
//!   the authenticators of `arcly-auth`.
//! - [`Server`]: binds the RTMP and HTTP listeners, builds the engine and
//!   runs everything until [`Server::shutdown`].
//! - The HTTP side (axum): LL-HLS at `/live/{app}/{key}/index.m3u8`,
//!   classic HLS at `/live/{app}/{key}/ts/index.m3u8`, HTTP-FLV at
//!   `/live/{app}/{key}.flv`, the stream
//!   API at `/api/v1/streams`, connection counters at `/api/v1/stats`,
//!   Prometheus metrics at `/metrics` (`arcly-metrics`),
//!   `/healthz` and `/readyz`, with CORS for browser players, and the web
//!   player at `/` (hls.js, embedded).
//! - Both listeners limit connections in all and per IP address and close
//!   slow or silent peers (RTMP handshake and idle timeouts, the HTTP
//!   header read timeout); every connection is counted by protocol and
//!   close reason.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod config;
pub mod record;

mod api;
mod flv;
mod hls;
mod http;
mod listen;
mod metrics;
mod player;
mod server;

pub use config::{Config, ConfigError};
pub use server::{Server, StartError};
