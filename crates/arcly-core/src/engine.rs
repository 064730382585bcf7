//! The engine: applications, the table of live streams, authorization,
//! audit and the run loop that starts and stops protocols.
//!
//! An [`Engine`] is a cheap handle (`Clone`, `Send + Sync`); a process may
//! run many. Nothing here is global.
//!
//! ```
//! use arcly_core::engine::{AppSpec, Engine};
//! let engine = Engine::builder()
//!     .max_publishers(1000)
//!     .application(AppSpec::new("live").gop_cache(120))
//!     .build();
//! assert_eq!(engine.list_apps().len(), 1);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditAction, AuditEvent, AuditPipeline, AuditSink};
use crate::auth::{Action, AllowAll, AuthRequest, Credentials, Denial, StreamAuthenticator};
use crate::bus::{
    self, BatchClock, BusConfig, EventBus, StreamEvent, StreamHandle, StreamPublisher, StreamQos, Subscriber,
};
use crate::error::{Result, StreamError};
use crate::health::{HealthRegistry, HealthReport, HealthStatus};
use crate::identity::{AppName, StreamId};
use crate::inbound::{InboundProtocol, IngestContext, PlaySession, PublishSession};
use crate::observe::{NoopObserver, Observer};
use crate::timestamps::TimestampPolicy;
use crate::traits::{MediaSource, ProtocolHandler};

/// An application's settings: its name and its streams' buffer bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSpec {
    name: String,
    bus: BusConfig,
    republish_grace: Duration,
    timestamps: TimestampPolicy,
}

impl AppSpec {
    /// An application with default bounds ([`BusConfig::default`]). The
    /// name is validated when the engine is built.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            bus: BusConfig::default(),
            republish_grace: Duration::ZERO,
            timestamps: TimestampPolicy::default(),
        }
    }

    /// How long a stream outlives its publisher, waiting for a publisher to
    /// take it over under the same key (default 0: it ends at once). While
    /// it waits, players stay subscribed; when a publisher comes back they
    /// go on receiving, from a frame flagged
    /// [`DISCONTINUITY`](crate::frame::FrameFlags::DISCONTINUITY).
    pub fn republish_grace(mut self, grace: Duration) -> Self {
        self.republish_grace = grace;
        self
    }

    /// The GOP cache size in frames (0 disables it).
    pub fn gop_cache(mut self, frames: usize) -> Self {
        self.bus.gop_cache_frames = frames;
        self
    }

    /// The GOP cache size in payload bytes.
    pub fn gop_cache_bytes(mut self, bytes: usize) -> Self {
        self.bus.gop_cache_bytes = bytes;
        self
    }

    /// How many frames a subscriber may fall behind before it skips.
    pub fn lag_limit(mut self, frames: usize) -> Self {
        self.bus.lag_limit_frames = frames;
        self
    }

    /// How many payload bytes are kept for lagging subscribers.
    pub fn lag_limit_bytes(mut self, bytes: usize) -> Self {
        self.bus.lag_limit_bytes = bytes;
        self
    }

    /// Skips in a row before a subscriber is evicted.
    pub fn max_consecutive_skips(mut self, skips: u32) -> Self {
        self.bus.max_consecutive_skips = skips;
        self
    }

    /// The application's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bus bounds of its streams.
    pub fn bus_config(&self) -> &BusConfig {
        &self.bus
    }

    /// How its streams' timestamps are checked and repaired (default
    /// [`TimestampPolicy::default`]; see [`crate::timestamps`]).
    pub fn timestamps(mut self, policy: TimestampPolicy) -> Self {
        self.timestamps = policy;
        self
    }

    /// The timestamp policy of its streams.
    pub fn timestamp_policy(&self) -> &TimestampPolicy {
        &self.timestamps
    }
}

/// Builds an [`Engine`].
#[must_use]
pub struct EngineBuilder {
    max_publishers: usize,
    apps: Vec<AppSpec>,
    any_app: Option<AppSpec>,
    inbound: Vec<Arc<dyn InboundProtocol>>,
    protocols: Vec<Arc<dyn ProtocolHandler>>,
    authenticator: Arc<dyn StreamAuthenticator>,
    observer: Arc<dyn Observer>,
    audit: Option<(Arc<dyn AuditSink>, usize)>,
    idle_timeout: Option<Duration>,
    shutdown_grace: Duration,
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self {
            max_publishers: 10_000,
            apps: Vec::new(),
            any_app: None,
            inbound: Vec::new(),
            protocols: Vec::new(),
            authenticator: Arc::new(AllowAll),
            observer: Arc::new(NoopObserver),
            audit: None,
            idle_timeout: Some(Duration::from_secs(30)),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl EngineBuilder {
    /// Most streams published at once (default 10 000). A publish over the
    /// limit is refused with [`StreamError::LimitReached`].
    pub fn max_publishers(mut self, n: usize) -> Self {
        self.max_publishers = n;
        self
    }

    /// Adds an application. Publishing to an application that was not added
    /// is refused, unless [`EngineBuilder::any_application`] is set.
    pub fn application(mut self, spec: AppSpec) -> Self {
        self.apps.push(spec);
        self
    }

    /// Accepts any application name, with `template`'s bounds (its name is
    /// ignored).
    pub fn any_application(mut self, template: AppSpec) -> Self {
        self.any_app = Some(template);
        self
    }

    /// Adds an ingest protocol, started by [`Engine::run`].
    pub fn inbound(mut self, protocol: Arc<dyn InboundProtocol>) -> Self {
        self.inbound.push(protocol);
        self
    }

    /// Adds a protocol service (players, APIs), started by [`Engine::run`].
    pub fn protocol(mut self, protocol: Arc<dyn ProtocolHandler>) -> Self {
        self.protocols.push(protocol);
        self
    }

    /// Sets the authenticator (default [`AllowAll`]).
    pub fn authenticator(mut self, auth: Arc<dyn StreamAuthenticator>) -> Self {
        self.authenticator = auth;
        self
    }

    /// Sets the observer (default [`NoopObserver`]).
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Sends audit events to `sink` through a queue of `capacity` events.
    pub fn audit_sink(mut self, sink: Arc<dyn AuditSink>, capacity: usize) -> Self {
        self.audit = Some((sink, capacity));
        self
    }

    /// Closes a stream whose publisher sent nothing for this long (default
    /// 30 s); `None` disables the reaper.
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long [`Engine::run`] waits for protocols to stop after shutdown
    /// (default 5 s).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Builds the engine.
    ///
    /// # Panics
    /// If an application name is invalid or given twice; use
    /// [`EngineBuilder::try_build`] to get an error instead.
    pub fn build(self) -> Engine {
        match self.try_build() {
            Ok(engine) => engine,
            Err(e) => panic!("invalid engine configuration: {e}"),
        }
    }

    /// Builds the engine, or says which setting is wrong.
    pub fn try_build(self) -> Result<Engine> {
        let mut apps = HashMap::new();
        for spec in self.apps {
            let name = AppName::new(&spec.name)?;
            if apps.insert(name, spec.clone()).is_some() {
                return Err(StreamError::Config(format!("application {:?} is given twice", spec.name)));
            }
        }
        let audit = self.audit.map(|(sink, cap)| AuditPipeline::new(sink, cap));
        let inner = Arc::new(Inner {
            max_publishers: self.max_publishers,
            apps,
            any_app: self.any_app,
            inbound: self.inbound,
            protocols: self.protocols,
            authenticator: self.authenticator,
            observer: self.observer,
            audit,
            idle_timeout: self.idle_timeout,
            shutdown_grace: self.shutdown_grace,
            events: EventBus::default(),
            health: HealthRegistry::default(),
            streams: Mutex::new(HashMap::new()),
            published: Notify::new(),
            next_session: AtomicU64::new(1),
            shutdown: CancellationToken::new(),
            clocks: Mutex::new(HashMap::new()),
        });
        let engine = Engine { inner };
        engine.register_builtin_health();
        Ok(engine)
    }
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("max_publishers", &self.max_publishers)
            .field("apps", &self.apps)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

/// A live stream's entry in the engine's table.
#[derive(Debug)]
struct Entry {
    handle: StreamHandle,
    session: u64,
    protocol: &'static str,
    peer: Option<SocketAddr>,
    started: Instant,
    /// Frames seen by the reaper's last pass, and when that count last moved.
    idle: (u64, Instant),
    /// When the publisher left, while the stream waits for another.
    orphaned_at: Option<Instant>,
    /// The application's republish grace.
    grace: Duration,
}

/// What the engine knows about a live stream.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StreamInfo {
    /// The stream.
    pub id: StreamId,
    /// The ingest protocol.
    pub protocol: &'static str,
    /// The publisher's address.
    pub peer: Option<SocketAddr>,
    /// How long it has been live.
    pub uptime: Duration,
    /// Its QoS figures.
    pub qos: StreamQos,
    /// Its video and audio codecs, once seen.
    pub codecs: (Option<crate::frame::CodecId>, Option<crate::frame::CodecId>),
    /// False while the stream waits for a publisher to come back.
    pub publishing: bool,
}

struct Inner {
    max_publishers: usize,
    apps: HashMap<AppName, AppSpec>,
    any_app: Option<AppSpec>,
    inbound: Vec<Arc<dyn InboundProtocol>>,
    protocols: Vec<Arc<dyn ProtocolHandler>>,
    authenticator: Arc<dyn StreamAuthenticator>,
    observer: Arc<dyn Observer>,
    audit: Option<AuditPipeline>,
    idle_timeout: Option<Duration>,
    shutdown_grace: Duration,
    events: EventBus,
    health: HealthRegistry,
    streams: Mutex<HashMap<StreamId, Entry>>,
    /// Woken whenever a stream is published, for players waiting for one.
    published: Notify,
    next_session: AtomicU64,
    shutdown: CancellationToken,
    clocks: Mutex<HashMap<Duration, BatchClock>>,
}

/// The kernel: see the [module documentation](self).
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// A reference to an [`Engine`] that does not keep it alive: for what the
/// engine itself holds (an observer that reads the engine's streams when
/// asked) without making a reference cycle.
///
/// ```
/// use arcly_core::engine::Engine;
/// let engine = Engine::builder().build();
/// let weak = engine.downgrade();
/// assert!(weak.upgrade().is_some());
/// drop(engine);
/// assert!(weak.upgrade().is_none());
/// ```
#[derive(Clone, Debug)]
pub struct WeakEngine {
    inner: std::sync::Weak<Inner>,
}

impl WeakEngine {
    /// The engine, if it still exists.
    pub fn upgrade(&self) -> Option<Engine> {
        self.inner.upgrade().map(|inner| Engine { inner })
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("apps", &self.list_apps())
            .field("streams", &self.streams().len())
            .finish_non_exhaustive()
    }
}

/// Registers publishers: the contract ingest goes through.
pub trait PublishRegistry: Send + Sync {
    /// Registers a publisher for `stream` after checking the application and
    /// the limits (not authorization). Returns the publishing end and a
    /// session number for [`PublishRegistry::unregister`].
    fn register(
        &self,
        stream: &StreamId,
        protocol: &'static str,
        peer: Option<SocketAddr>,
    ) -> Result<(StreamPublisher, u64)>;

    /// Removes `stream` if `session` still owns it; closes it with `reason`.
    fn unregister(&self, stream: &StreamId, session: u64, reason: &str);
}

/// Finds live streams: the contract egress goes through.
pub trait PlaybackRegistry: Send + Sync {
    /// The live stream `id`, if any.
    fn lookup(&self, id: &StreamId) -> Option<StreamHandle>;
    /// Every live stream.
    fn list(&self) -> Vec<StreamInfo>;
}

impl Engine {
    /// A builder with defaults.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    fn streams_lock(&self) -> MutexGuard<'_, HashMap<StreamId, Entry>> {
        self.inner.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A [`WeakEngine`] for this engine.
    pub fn downgrade(&self) -> WeakEngine {
        WeakEngine { inner: Arc::downgrade(&self.inner) }
    }

    /// The configured applications, sorted by name.
    pub fn list_apps(&self) -> Vec<AppName> {
        let mut apps: Vec<AppName> = self.inner.apps.keys().cloned().collect();
        apps.sort();
        apps
    }

    /// The settings that apply to `app`, if it may be used.
    pub fn app(&self, app: &AppName) -> Option<&AppSpec> {
        self.inner.apps.get(app).or(self.inner.any_app.as_ref())
    }

    /// The engine's shared [`BatchClock`] for `window`, started on first use
    /// (so the first call must be made within a tokio runtime). Players that
    /// write once per batch window wait on it instead of a timer each.
    pub fn batch_clock(&self, window: Duration) -> BatchClock {
        let mut clocks = self.inner.clocks.lock().unwrap_or_else(|e| e.into_inner());
        clocks.entry(window).or_insert_with(|| BatchClock::start(window)).clone()
    }

    /// Lifecycle events of every stream.
    pub fn events(&self) -> &EventBus {
        &self.inner.events
    }

    /// The health checks; hosts may add their own.
    pub fn health(&self) -> &HealthRegistry {
        &self.inner.health
    }

    /// The audit pipeline, if an audit sink was configured.
    pub fn audit(&self) -> Option<&AuditPipeline> {
        self.inner.audit.as_ref()
    }

    /// Cancelled when the engine shuts down; sessions select on it.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Starts shutting down: [`Engine::run`] closes every stream, stops the
    /// protocols and returns.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Every live stream.
    pub fn streams(&self) -> Vec<StreamInfo> {
        let now = Instant::now();
        let mut list: Vec<StreamInfo> = self
            .streams_lock()
            .iter()
            .map(|(id, e)| StreamInfo {
                id: id.clone(),
                protocol: e.protocol,
                peer: e.peer,
                uptime: now.saturating_duration_since(e.started),
                qos: e.handle.qos(),
                codecs: e.handle.codecs(),
                publishing: e.orphaned_at.is_none(),
            })
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        list
    }

    /// The live stream `id`, if any.
    pub fn lookup(&self, id: &StreamId) -> Option<StreamHandle> {
        self.streams_lock().get(id).filter(|e| !e.handle.is_closed()).map(|e| e.handle.clone())
    }

    /// Waits up to `timeout` for `id` to be published.
    pub async fn wait_for_stream(&self, id: &StreamId, timeout: Duration) -> Option<StreamHandle> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut notified = std::pin::pin!(self.inner.published.notified());
            notified.as_mut().enable();
            if let Some(h) = self.lookup(id) {
                return Some(h);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    pub(crate) fn audit_event(&self, event: impl FnOnce() -> AuditEvent) {
        if let Some(audit) = &self.inner.audit {
            audit.record(event());
        }
    }

    /// The observer: protocols report their connections to it
    /// ([`Observer::connection_opened`] and the like).
    pub fn observer(&self) -> &dyn Observer {
        &*self.inner.observer
    }

    /// Asks the authenticator whether `credentials` may do `action` on
    /// `stream`; on refusal, logs the [`Denial`] (code and message, at info
    /// level), reports it to the observer, audits it and returns the error
    /// to give the peer. [`Engine::begin_publish`] and [`Engine::play`]
    /// call it; outputs that serve a stream without subscribing to it (HLS
    /// playlists) call it directly.
    pub async fn authorize(&self, action: Action, stream: &StreamId, credentials: &Credentials) -> Result<()> {
        let request = AuthRequest { action, stream, credentials };
        match self.inner.authenticator.authorize(request).await {
            Ok(()) => Ok(()),
            Err(denial) => {
                let protocol = credentials.protocol;
                let peer = credentials.peer.map(|p| p.to_string());
                tracing::info!(
                    %stream,
                    action = action.as_str(),
                    protocol,
                    peer = peer.as_deref().unwrap_or("-"),
                    code = denial.code,
                    reason = %denial.message,
                    "authorization denied"
                );
                self.refused(stream, action, protocol, credentials.peer, &denial);
                Err(StreamError::Unauthorized { action: action.as_str(), stream: stream.clone(), reason: denial })
            }
        }
    }

    pub(crate) fn refused(
        &self,
        stream: &StreamId,
        action: Action,
        protocol: &'static str,
        peer: Option<SocketAddr>,
        denial: &Denial,
    ) {
        self.inner.observer.request_refused(stream, action.as_str(), denial);
        self.audit_event(|| {
            AuditEvent::now(AuditAction::Refused, stream.clone(), protocol, peer)
                .with_code(denial.code)
                .with_reason(denial.message.clone())
        });
        if action == Action::Publish {
            self.inner.events.emit(StreamEvent::PublishRejected { stream: stream.clone(), reason: denial.to_string() });
        }
    }

    /// Authorizes and starts a publish: the path every ingest protocol takes
    /// (through [`IngestContext::begin_publish`]).
    pub async fn begin_publish(
        &self,
        stream: StreamId,
        protocol: &'static str,
        credentials: &Credentials,
    ) -> Result<PublishSession> {
        self.authorize(Action::Publish, &stream, credentials).await?;
        self.start_publish(stream, protocol, credentials.peer)
    }

    /// Registers an already-authorized publisher and wraps it in a session.
    fn start_publish(
        &self,
        stream: StreamId,
        protocol: &'static str,
        peer: Option<SocketAddr>,
    ) -> Result<PublishSession> {
        match self.register(&stream, protocol, peer) {
            Ok((publisher, session)) => {
                // Frames already on the bus: this publisher takes over a
                // stream whose publisher left within the grace period.
                let resumed = publisher.handle().frames_in() > 0;
                self.inner.observer.publish_started(&stream, protocol, peer);
                self.audit_event(|| AuditEvent::now(AuditAction::PublishStart, stream.clone(), protocol, peer));
                self.inner.events.emit(StreamEvent::Published { stream: stream.clone(), protocol, peer });
                self.inner.published.notify_waiters();
                // The stream's timeline outlives its publishers: one taking
                // over continues it.
                let policy = self.app(stream.app()).map(|a| a.timestamps).unwrap_or_default();
                publisher.with_timestamps(|guard| {
                    guard.set_policy(policy);
                    if resumed {
                        guard.resume();
                    }
                });
                Ok(PublishSession::new(self.clone(), stream, session, publisher, protocol, peer, resumed))
            }
            Err(e) => {
                self.refused(&stream, Action::Publish, protocol, peer, &refusal(&e));
                Err(e)
            }
        }
    }

    /// Authorizes a player and subscribes it to a live stream.
    pub async fn play(
        &self,
        stream: &StreamId,
        protocol: &'static str,
        credentials: &Credentials,
    ) -> Result<PlaySession> {
        self.authorize(Action::Play, stream, credentials).await?;
        let handle = self.lookup(stream).ok_or_else(|| StreamError::NotFound(stream.clone()))?;
        Ok(self.start_play(handle.subscribe(), protocol, credentials.peer))
    }

    /// Like [`Engine::play`], but waits up to `wait` for the stream to be
    /// published.
    pub async fn play_when_live(
        &self,
        stream: &StreamId,
        protocol: &'static str,
        credentials: &Credentials,
        wait: Duration,
    ) -> Result<PlaySession> {
        self.authorize(Action::Play, stream, credentials).await?;
        let handle = self.wait_for_stream(stream, wait).await.ok_or_else(|| StreamError::NotFound(stream.clone()))?;
        Ok(self.start_play(handle.subscribe(), protocol, credentials.peer))
    }

    fn start_play(&self, subscriber: Subscriber, protocol: &'static str, peer: Option<SocketAddr>) -> PlaySession {
        let id = subscriber.stream_id().clone();
        self.inner.observer.play_started(&id, protocol);
        self.audit_event(|| AuditEvent::now(AuditAction::PlayStart, id, protocol, peer));
        PlaySession::new(self.clone(), subscriber, protocol, peer)
    }

    /// Publishes a host-provided source under `stream` until it ends, fails
    /// or the engine shuts down. The source is trusted: no authorization.
    pub fn pump(
        &self,
        stream: StreamId,
        mut source: Box<dyn MediaSource>,
    ) -> Result<tokio::task::JoinHandle<Result<()>>> {
        let session = self.start_publish(stream, "source", None)?;
        let shutdown = self.inner.shutdown.clone();
        Ok(tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    f = source.next_frame() => f,
                    () = shutdown.cancelled() => {
                        session.end("shutdown");
                        return Ok(());
                    }
                };
                match frame {
                    Ok(Some(frame)) => session.publish(frame)?,
                    Ok(None) => {
                        session.end("source ended");
                        return Ok(());
                    }
                    Err(e) => {
                        session.end(&format!("source failed: {e}"));
                        return Err(e);
                    }
                }
            }
        }))
    }

    /// Runs the engine: starts every protocol and the idle reaper, waits for
    /// [`Engine::shutdown`] (or `shutdown` being cancelled, or a protocol
    /// failing), then closes every stream and waits up to the grace period
    /// for protocols to stop. Returns the first protocol error.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<()> {
        let inner = &self.inner;
        let mut tasks: JoinSet<(&'static str, Result<()>)> = JoinSet::new();
        for p in &inner.inbound {
            let (p, ctx, token) = (p.clone(), IngestContext::new(self.clone(), p.name()), inner.shutdown.child_token());
            tasks.spawn(async move { (p.name(), p.run(ctx, token).await) });
        }
        for p in &inner.protocols {
            let (p, engine, token) = (p.clone(), self.clone(), inner.shutdown.child_token());
            tasks.spawn(async move { (p.name(), p.run(engine, token).await) });
        }
        let audit = inner.audit.clone().map(|audit| tokio::spawn(audit.run(inner.shutdown.clone())));
        let reaper = inner.idle_timeout.map(|t| tokio::spawn(self.clone().reap_idle(t)));

        let mut result = Ok(());
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = inner.shutdown.cancelled() => break,
                Some(done) = tasks.join_next() => {
                    match done {
                        Ok((name, Err(e))) => {
                            tracing::error!(protocol = name, error = %e, "protocol failed, shutting down");
                            result = Err(e);
                            break;
                        }
                        Ok((name, Ok(()))) => tracing::debug!(protocol = name, "protocol stopped"),
                        Err(e) => {
                            tracing::error!(error = %e, "protocol task panicked, shutting down");
                            result = Err(StreamError::Closed(format!("protocol task panicked: {e}")));
                            break;
                        }
                    }
                }
            }
        }
        inner.shutdown.cancel();
        if let Some(r) = reaper {
            r.abort();
        }
        self.close_all("shutdown");
        if tokio::time::timeout(inner.shutdown_grace, async { while tasks.join_next().await.is_some() {} })
            .await
            .is_err()
        {
            tracing::warn!(grace = ?inner.shutdown_grace, "protocols did not stop in time; aborting them");
            tasks.abort_all();
        }
        if let Some(audit) = audit {
            // Shutdown was cancelled above: the worker writes what is queued
            // (including the unpublish events of `close_all`) and returns.
            let _ = tokio::time::timeout(inner.shutdown_grace, audit).await;
        }
        result
    }

    fn close_all(&self, reason: &str) {
        let entries: Vec<(StreamId, u64)> = self.streams_lock().iter().map(|(id, e)| (id.clone(), e.session)).collect();
        for (id, session) in entries {
            self.unregister(&id, session, reason);
        }
    }

    /// Closes streams whose frame count has not moved for `timeout`.
    async fn reap_idle(self, timeout: Duration) {
        // Often enough for the republish grace too, which may be shorter
        // than the idle timeout.
        let period = (timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = Instant::now();
            let idle: Vec<(StreamId, u64)> = {
                let mut streams = self.streams_lock();
                streams
                    .iter_mut()
                    .filter_map(|(id, e)| {
                        if let Some(at) = e.orphaned_at {
                            return (now.duration_since(at) >= e.grace).then(|| (id.clone(), e.session));
                        }
                        let frames = e.handle.frames_in();
                        if frames != e.idle.0 {
                            e.idle = (frames, now);
                            None
                        } else if now.duration_since(e.idle.1) >= timeout {
                            Some((id.clone(), e.session))
                        } else {
                            None
                        }
                    })
                    .collect()
            };
            for (id, session) in idle {
                tracing::info!(stream = %id, ?timeout, "closing idle stream");
                self.unregister(&id, session, "idle timeout");
            }
        }
    }

    fn register_builtin_health(&self) {
        let weak = Arc::downgrade(&self.inner);
        self.inner.health.register(move || {
            let Some(inner) = weak.upgrade() else {
                return HealthReport::new("publishers", HealthStatus::Unhealthy, "engine dropped");
            };
            let n = inner.streams.lock().map(|s| s.len()).unwrap_or(0);
            let max = inner.max_publishers;
            let status = if n >= max { HealthStatus::Degraded } else { HealthStatus::Healthy };
            HealthReport::new("publishers", status, format!("{n} of {max}"))
        });
        if self.inner.audit.is_some() {
            let weak = Arc::downgrade(&self.inner);
            self.inner.health.register(move || {
                let dropped = weak.upgrade().and_then(|i| i.audit.as_ref().map(AuditPipeline::dropped)).unwrap_or(0);
                let status = if dropped > 0 { HealthStatus::Degraded } else { HealthStatus::Healthy };
                HealthReport::new("audit", status, format!("{dropped} events dropped"))
            });
        }
    }
}

impl PublishRegistry for Engine {
    fn register(
        &self,
        stream: &StreamId,
        protocol: &'static str,
        peer: Option<SocketAddr>,
    ) -> Result<(StreamPublisher, u64)> {
        if self.inner.shutdown.is_cancelled() {
            return Err(StreamError::Closed("engine is shutting down".into()));
        }
        let spec = self.app(stream.app()).ok_or_else(|| StreamError::UnknownApp(stream.app().to_string()))?;
        let mut streams = self.streams_lock();
        let now = Instant::now();
        if let Some(e) = streams.get_mut(stream).filter(|e| !e.handle.is_closed()) {
            match e.orphaned_at {
                None => return Err(StreamError::AlreadyPublishing(stream.clone())),
                Some(at) if now.duration_since(at) < e.grace => {
                    if let Some(publisher) = e.handle.attach() {
                        let session = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
                        *e = Entry {
                            handle: e.handle.clone(),
                            session,
                            protocol,
                            peer,
                            started: e.started,
                            idle: (e.handle.frames_in(), now),
                            orphaned_at: None,
                            grace: spec.republish_grace,
                        };
                        return Ok((publisher, session));
                    }
                }
                // The grace period ran out before the reaper noticed.
                Some(_) => e.handle.close("no publisher came back"),
            }
        }
        let live = streams.values().filter(|e| !e.handle.is_closed()).count();
        if live >= self.inner.max_publishers {
            return Err(StreamError::LimitReached { what: "max publishers", limit: self.inner.max_publishers });
        }
        let (publisher, handle) = bus::stream(stream.clone(), spec.bus.clone(), Some(self.inner.events.clone()));
        let session = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            handle,
            session,
            protocol,
            peer,
            started: now,
            idle: (0, now),
            orphaned_at: None,
            grace: spec.republish_grace,
        };
        streams.insert(stream.clone(), entry);
        Ok((publisher, session))
    }

    fn unregister(&self, stream: &StreamId, session: u64, reason: &str) {
        let removed = {
            let mut streams = self.streams_lock();
            match streams.get(stream) {
                Some(e) if e.session == session => streams.remove(stream),
                _ => None,
            }
        };
        if let Some(e) = removed {
            e.handle.close(reason);
            // An orphaned stream's publisher end was reported when it left.
            if e.orphaned_at.is_none() {
                self.publish_ended(stream, &e, reason);
            }
        }
    }
}

impl Engine {
    /// Ends a publisher's session: the stream waits for another publisher
    /// for the application's republish grace, or ends now.
    pub(crate) fn release(&self, stream: &StreamId, session: u64, publisher: StreamPublisher, reason: &str) {
        let orphaned = {
            let mut streams = self.streams_lock();
            match streams.get_mut(stream) {
                Some(e) if e.session == session && !e.grace.is_zero() && !self.inner.shutdown.is_cancelled() => {
                    // Detached under the table's lock: a publisher coming
                    // back finds the stream ready to attach to.
                    drop(publisher.detach());
                    e.orphaned_at = Some(Instant::now());
                    Ok((e.protocol, e.peer))
                }
                _ => Err(publisher),
            }
        };
        match orphaned {
            Ok((protocol, peer)) => {
                tracing::info!(%stream, reason, "publisher left; stream waits for a publisher to come back");
                self.publish_ended_parts(stream, protocol, peer, reason);
            }
            Err(publisher) => {
                self.unregister(stream, session, reason);
                drop(publisher);
            }
        }
    }

    fn publish_ended(&self, stream: &StreamId, e: &Entry, reason: &str) {
        self.publish_ended_parts(stream, e.protocol, e.peer, reason);
    }

    fn publish_ended_parts(&self, stream: &StreamId, protocol: &'static str, peer: Option<SocketAddr>, reason: &str) {
        self.inner.observer.publish_ended(stream, reason);
        self.audit_event(|| {
            AuditEvent::now(AuditAction::PublishEnd, stream.clone(), protocol, peer).with_reason(reason)
        });
        self.inner.events.emit(StreamEvent::Unpublished { stream: stream.clone(), reason: reason.to_owned() });
    }
}

impl PlaybackRegistry for Engine {
    fn lookup(&self, id: &StreamId) -> Option<StreamHandle> {
        Engine::lookup(self, id)
    }

    fn list(&self) -> Vec<StreamInfo> {
        self.streams()
    }
}

/// The denial recorded for a publish the engine itself refused (after the
/// authenticator allowed it).
fn refusal(e: &StreamError) -> Denial {
    let code = match e {
        StreamError::AlreadyPublishing(_) => "already_publishing",
        StreamError::UnknownApp(_) => "unknown_app",
        StreamError::LimitReached { .. } => "limit_reached",
        StreamError::InvalidName(_) => "invalid_name",
        _ => "refused",
    };
    Denial::new(code, e.to_string())
}

#[cfg(test)]
mod tests;
