//! Observation hooks: what the engine reports as sessions come and go.
//!
//! An [`Observer`] sees lifecycle events only (never a per-frame call), so
//! it may log, count or forward without touching the hot path. Metrics
//! exporters implement it; [`StandardTelemetry`] logs through `tracing`.

use std::net::SocketAddr;

use crate::identity::StreamId;

/// Lifecycle hooks. Every method has an empty default.
pub trait Observer: Send + Sync + 'static {
    /// A publisher started.
    fn publish_started(&self, _stream: &StreamId, _protocol: &'static str, _peer: Option<SocketAddr>) {}
    /// A publisher stopped; `reason` says why.
    fn publish_ended(&self, _stream: &StreamId, _reason: &str) {}
    /// A publish or play request was refused.
    fn request_refused(&self, _stream: &StreamId, _action: &'static str, _reason: &str) {}
    /// A player started.
    fn play_started(&self, _stream: &StreamId, _protocol: &'static str) {}
    /// A player stopped.
    fn play_ended(&self, _stream: &StreamId, _protocol: &'static str) {}
}

/// Observes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {}

/// Logs lifecycle events with `tracing` at info level (refusals at warn).
#[derive(Clone, Copy, Debug, Default)]
pub struct StandardTelemetry;

impl Observer for StandardTelemetry {
    fn publish_started(&self, stream: &StreamId, protocol: &'static str, peer: Option<SocketAddr>) {
        tracing::info!(%stream, protocol, ?peer, "publish started");
    }

    fn publish_ended(&self, stream: &StreamId, reason: &str) {
        tracing::info!(%stream, reason, "publish ended");
    }

    fn request_refused(&self, stream: &StreamId, action: &'static str, reason: &str) {
        tracing::warn!(%stream, action, reason, "request refused");
    }

    fn play_started(&self, stream: &StreamId, protocol: &'static str) {
        tracing::info!(%stream, protocol, "play started");
    }

    fn play_ended(&self, stream: &StreamId, protocol: &'static str) {
        tracing::info!(%stream, protocol, "play ended");
    }
}
