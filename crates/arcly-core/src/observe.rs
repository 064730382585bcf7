//! Observation hooks: what the engine and the protocols report as sessions
//! and connections come and go.
//!
//! An [`Observer`] sees lifecycle events only (never a per-frame call), so
//! it may log, count or forward without touching the hot path. Metrics
//! exporters implement it; [`StandardTelemetry`] logs through `tracing`;
//! [`ConnectionCounters`] counts connections by protocol and reason; an
//! [`Observers`] list passes every event to several observers.
//!
//! Stream events (`publish_*`, `play_*`, `request_refused`) come from the
//! engine; `first_frame` (a player's time to first frame) from the
//! protocols' players, through
//! [`PlaySession::frames_sent`](crate::inbound::PlaySession::frames_sent).
//! Connection events (`connection_*`) come from the protocols' listeners,
//! once per connection: opened after it passed the connection limits,
//! closed with a [`CloseReason`] when it ends, refused with a
//! [`RefuseReason`] when a limit turned it away at accept.
//!
//! ```
//! use std::sync::Arc;
//! use arcly_core::engine::Engine;
//! use arcly_core::observe::{CloseReason, ConnectionCounters, Observer, Observers, RefuseReason, StandardTelemetry};
//!
//! let counters = Arc::new(ConnectionCounters::new());
//! let observers = Observers::new().with(Arc::new(StandardTelemetry)).with(counters.clone());
//! let engine = Engine::builder().observer(Arc::new(observers)).build();
//!
//! // What a listener reports (an RTMP server does this itself).
//! let peer = "192.0.2.7:50122".parse().unwrap();
//! engine.observer().connection_opened("rtmp", peer);
//! engine.observer().connection_closed("rtmp", peer, CloseReason::Timeout, "no handshake within 10s");
//! engine.observer().connection_refused("rtmp", peer, RefuseReason::PerIpLimit);
//!
//! let rtmp = &counters.snapshot().protocols["rtmp"];
//! assert_eq!((rtmp.opened, rtmp.open), (1, 0));
//! assert_eq!(rtmp.closed["timeout"], 1);
//! assert_eq!(rtmp.refused["per_ip_limit"], 1);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::auth::Denial;
use crate::identity::StreamId;

/// Why a connection ended, by category. The text of the log line says
/// more; the category is what counters count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed the connection (a normal end).
    PeerClosed,
    /// The peer sent something invalid or over a limit (bad handshake,
    /// chunk size, message size, AMF nesting, HTTP parse error).
    ProtocolError,
    /// A deadline passed: handshake, idle, start of publish or play, or
    /// the HTTP header read timeout.
    Timeout,
    /// A player did not keep up: a write timed out, its output queue went
    /// over its limit, or the bus evicted it.
    SlowConsumer,
    /// A publish or play was refused (authorization, unknown application,
    /// stream already published).
    Refused,
    /// The server shut down.
    Shutdown,
    /// A socket error (reset by the peer, broken pipe).
    Io,
}

impl CloseReason {
    /// Every reason, in the order of [`CloseReason::index`].
    pub const ALL: [CloseReason; 7] = [
        Self::PeerClosed,
        Self::ProtocolError,
        Self::Timeout,
        Self::SlowConsumer,
        Self::Refused,
        Self::Shutdown,
        Self::Io,
    ];

    /// A stable snake_case name (`"peer_closed"`, `"protocol_error"`,
    /// `"timeout"`, `"slow_consumer"`, `"refused"`, `"shutdown"`, `"io"`)
    /// for logs, metrics and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PeerClosed => "peer_closed",
            Self::ProtocolError => "protocol_error",
            Self::Timeout => "timeout",
            Self::SlowConsumer => "slow_consumer",
            Self::Refused => "refused",
            Self::Shutdown => "shutdown",
            Self::Io => "io",
        }
    }

    /// True for the ends that are part of normal operation (the peer left,
    /// the server shut down); listeners log the others more loudly.
    pub fn is_normal(self) -> bool {
        matches!(self, Self::PeerClosed | Self::Shutdown)
    }

    /// The position in [`CloseReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection was refused at accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RefuseReason {
    /// The listener's connection limit was reached.
    GlobalLimit,
    /// The peer's address had as many connections as one address may have.
    PerIpLimit,
}

impl RefuseReason {
    /// Every reason, in the order of [`RefuseReason::index`].
    pub const ALL: [RefuseReason; 2] = [Self::GlobalLimit, Self::PerIpLimit];

    /// A stable snake_case name: `"global_limit"` or `"per_ip_limit"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GlobalLimit => "global_limit",
            Self::PerIpLimit => "per_ip_limit",
        }
    }

    /// The position in [`RefuseReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lifecycle hooks. Every method has an empty default.
pub trait Observer: Send + Sync + 'static {
    /// A publisher started.
    fn publish_started(&self, _stream: &StreamId, _protocol: &'static str, _peer: Option<SocketAddr>) {}
    /// A publisher stopped; `reason` says why.
    fn publish_ended(&self, _stream: &StreamId, _reason: &str) {}
    /// A publish or play request was refused; `denial.code` is a stable
    /// category (a metrics label), `denial.message` the detail.
    fn request_refused(&self, _stream: &StreamId, _action: &'static str, _denial: &Denial) {}
    /// A player started.
    fn play_started(&self, _stream: &StreamId, _protocol: &'static str) {}
    /// A player stopped.
    fn play_ended(&self, _stream: &StreamId, _protocol: &'static str) {}
    /// A player's first frames were written, `elapsed` after its play was
    /// accepted (its time to first frame). Reported once per player by the
    /// protocols that call [`PlaySession::frames_sent`](crate::inbound::PlaySession::frames_sent).
    fn first_frame(&self, _stream: &StreamId, _protocol: &'static str, _elapsed: Duration) {}
    /// A listener accepted a connection (it passed the connection limits).
    fn connection_opened(&self, _protocol: &'static str, _peer: SocketAddr) {}
    /// A connection reported by [`Observer::connection_opened`] ended;
    /// `detail` is the text of the listener's log line.
    fn connection_closed(&self, _protocol: &'static str, _peer: SocketAddr, _reason: CloseReason, _detail: &str) {}
    /// A listener closed a connection at accept because of a limit.
    fn connection_refused(&self, _protocol: &'static str, _peer: SocketAddr, _why: RefuseReason) {}
    /// A publisher's timestamps jumped by `jump_ms` (negative: backwards)
    /// and the stream's timeline was corrected (see
    /// [`crate::timestamps`]). Rare: a publisher correcting more than a
    /// few times a second is ended.
    fn timestamps_corrected(&self, _stream: &StreamId, _jump_ms: i64) {}
}

/// Observes nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {}

/// Logs lifecycle events with `tracing` at info level (refusals at warn).
/// Connection events are not logged here: each listener logs one line per
/// closed connection itself, and rate-limits its refusals.
#[derive(Clone, Copy, Debug, Default)]
pub struct StandardTelemetry;

impl Observer for StandardTelemetry {
    fn publish_started(&self, stream: &StreamId, protocol: &'static str, peer: Option<SocketAddr>) {
        tracing::info!(%stream, protocol, ?peer, "publish started");
    }

    fn publish_ended(&self, stream: &StreamId, reason: &str) {
        tracing::info!(%stream, reason, "publish ended");
    }

    fn request_refused(&self, stream: &StreamId, action: &'static str, denial: &Denial) {
        tracing::warn!(%stream, action, code = denial.code, reason = %denial.message, "request refused");
    }

    fn play_started(&self, stream: &StreamId, protocol: &'static str) {
        tracing::info!(%stream, protocol, "play started");
    }

    fn play_ended(&self, stream: &StreamId, protocol: &'static str) {
        tracing::info!(%stream, protocol, "play ended");
    }
}

/// Passes every event to each of its observers, in order: the way to give
/// the engine (which takes one observer) several.
#[derive(Clone, Default)]
pub struct Observers {
    list: Vec<Arc<dyn Observer>>,
}

impl Observers {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `observer` at the end.
    #[must_use]
    pub fn with(mut self, observer: Arc<dyn Observer>) -> Self {
        self.list.push(observer);
        self
    }

    /// Adds `observer` at the end.
    pub fn push(&mut self, observer: Arc<dyn Observer>) {
        self.list.push(observer);
    }

    /// How many observers are in the list.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True if the list is empty.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observers").field("len", &self.list.len()).finish()
    }
}

impl Observer for Observers {
    fn publish_started(&self, stream: &StreamId, protocol: &'static str, peer: Option<SocketAddr>) {
        self.list.iter().for_each(|o| o.publish_started(stream, protocol, peer));
    }

    fn publish_ended(&self, stream: &StreamId, reason: &str) {
        self.list.iter().for_each(|o| o.publish_ended(stream, reason));
    }

    fn request_refused(&self, stream: &StreamId, action: &'static str, denial: &Denial) {
        self.list.iter().for_each(|o| o.request_refused(stream, action, denial));
    }

    fn play_started(&self, stream: &StreamId, protocol: &'static str) {
        self.list.iter().for_each(|o| o.play_started(stream, protocol));
    }

    fn play_ended(&self, stream: &StreamId, protocol: &'static str) {
        self.list.iter().for_each(|o| o.play_ended(stream, protocol));
    }

    fn first_frame(&self, stream: &StreamId, protocol: &'static str, elapsed: Duration) {
        self.list.iter().for_each(|o| o.first_frame(stream, protocol, elapsed));
    }

    fn connection_opened(&self, protocol: &'static str, peer: SocketAddr) {
        self.list.iter().for_each(|o| o.connection_opened(protocol, peer));
    }

    fn connection_closed(&self, protocol: &'static str, peer: SocketAddr, reason: CloseReason, detail: &str) {
        self.list.iter().for_each(|o| o.connection_closed(protocol, peer, reason, detail));
    }

    fn connection_refused(&self, protocol: &'static str, peer: SocketAddr, why: RefuseReason) {
        self.list.iter().for_each(|o| o.connection_refused(protocol, peer, why));
    }

    fn timestamps_corrected(&self, stream: &StreamId, jump_ms: i64) {
        self.list.iter().for_each(|o| o.timestamps_corrected(stream, jump_ms));
    }
}

/// One protocol's counts.
#[derive(Debug, Default)]
struct Counts {
    opened: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
    refused: [AtomicU64; RefuseReason::ALL.len()],
}

/// Counts connections by protocol: opened, closed by [`CloseReason`],
/// refused by [`RefuseReason`]. An [`Observer`]; read it with
/// [`ConnectionCounters::snapshot`]. The counts only grow (the number open
/// is derived), so two snapshots subtract to what happened in between.
///
/// Each event costs a read lock and one atomic increment; there is no
/// per-frame call.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    protocols: RwLock<Vec<(&'static str, Arc<Counts>)>>,
}

impl ConnectionCounters {
    /// No counts yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lists `protocol` in snapshots from now on, with zero counts until
    /// something happens (so a reader sees every listener).
    pub fn register(&self, protocol: &'static str) {
        self.counts(protocol);
    }

    fn counts(&self, protocol: &'static str) -> Arc<Counts> {
        let find = |list: &[(&'static str, Arc<Counts>)]| {
            list.iter().find(|(name, _)| *name == protocol).map(|(_, c)| c.clone())
        };
        if let Some(c) = find(&self.protocols.read().unwrap_or_else(|e| e.into_inner())) {
            return c;
        }
        let mut list = self.protocols.write().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = find(&list) {
            return c;
        }
        let c = Arc::new(Counts::default());
        list.push((protocol, c.clone()));
        c
    }

    /// The counts now.
    pub fn snapshot(&self) -> CountersSnapshot {
        let list = self.protocols.read().unwrap_or_else(|e| e.into_inner());
        let protocols = list
            .iter()
            .map(|(name, c)| {
                let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let closed: BTreeMap<&'static str, u64> =
                    CloseReason::ALL.iter().map(|r| (r.as_str(), load(&c.closed[r.index()]))).collect();
                let refused = RefuseReason::ALL.iter().map(|r| (r.as_str(), load(&c.refused[r.index()]))).collect();
                let opened = load(&c.opened);
                let open = opened.saturating_sub(closed.values().sum());
                (*name, ProtocolCounts { opened, open, closed, refused })
            })
            .collect();
        CountersSnapshot { protocols }
    }
}

impl Observer for ConnectionCounters {
    fn connection_opened(&self, protocol: &'static str, _peer: SocketAddr) {
        self.counts(protocol).opened.fetch_add(1, Ordering::Relaxed);
    }

    fn connection_closed(&self, protocol: &'static str, _peer: SocketAddr, reason: CloseReason, _detail: &str) {
        self.counts(protocol).closed[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn connection_refused(&self, protocol: &'static str, _peer: SocketAddr, why: RefuseReason) {
        self.counts(protocol).refused[why.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// What [`ConnectionCounters::snapshot`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CountersSnapshot {
    /// The counts of each protocol seen (or registered), by name.
    pub protocols: BTreeMap<&'static str, ProtocolCounts>,
}

/// One protocol's connection counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProtocolCounts {
    /// Connections accepted since the start.
    pub opened: u64,
    /// Connections open now (accepted and not yet closed).
    pub open: u64,
    /// Connections closed, by [`CloseReason::as_str`]; every reason is
    /// listed, with 0 when it never happened.
    pub closed: BTreeMap<&'static str, u64>,
    /// Connections refused at accept, by [`RefuseReason::as_str`]; every
    /// reason is listed.
    pub refused: BTreeMap<&'static str, u64>,
}

impl ProtocolCounts {
    /// Connections closed for any reason.
    pub fn closed_total(&self) -> u64 {
        self.closed.values().sum()
    }

    /// Connections refused for any reason.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_stable_and_indexes_match() {
        let names: Vec<_> = CloseReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ["peer_closed", "protocol_error", "timeout", "slow_consumer", "refused", "shutdown", "io"]);
        for (i, r) in CloseReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        for (i, r) in RefuseReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        assert_eq!(RefuseReason::PerIpLimit.to_string(), "per_ip_limit");
    }

    #[test]
    fn counters_count_per_protocol_and_fan_out_reaches_all() {
        let (a, b) = (Arc::new(ConnectionCounters::new()), Arc::new(ConnectionCounters::new()));
        b.register("http");
        let all = Observers::new().with(a.clone()).with(b.clone());
        let peer: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for _ in 0..3 {
            all.connection_opened("rtmp", peer);
        }
        all.connection_closed("rtmp", peer, CloseReason::PeerClosed, "");
        all.connection_closed("rtmp", peer, CloseReason::SlowConsumer, "write timeout");
        all.connection_refused("rtmp", peer, RefuseReason::GlobalLimit);
        for c in [&a, &b] {
            let rtmp = &c.snapshot().protocols["rtmp"];
            assert_eq!((rtmp.opened, rtmp.open, rtmp.closed_total(), rtmp.refused_total()), (3, 1, 2, 1));
            assert_eq!(rtmp.closed["slow_consumer"], 1);
            assert_eq!(rtmp.refused["global_limit"], 1);
        }
        assert!(!a.snapshot().protocols.contains_key("http"));
        assert_eq!(
            b.snapshot().protocols["http"],
            ProtocolCounts {
                closed: CloseReason::ALL.iter().map(|r| (r.as_str(), 0)).collect(),
                refused: RefuseReason::ALL.iter().map(|r| (r.as_str(), 0)).collect(),
                ..ProtocolCounts::default()
            }
        );
    }
}
