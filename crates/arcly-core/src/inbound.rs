//! Sessions: how protocols publish onto and play from the engine.
//!
//! An ingest protocol implements [`InboundProtocol`]; [`Engine::run`]
//! starts it with an [`IngestContext`]. For each publisher it calls
//! [`IngestContext::begin_publish`], which authorizes, registers and returns
//! a [`PublishSession`]. Frames go through [`PublishSession::publish`],
//! which places them on the stream's timeline (a publisher's timestamp
//! jumps are repaired there, see [`crate::timestamps`]). When
//! the session is dropped, for whatever reason (the peer left, the task
//! returned an error, was cancelled or panicked), the stream is unregistered
//! and its players are told it ended.
//!
//! Players get a [`PlaySession`] from [`Engine::play`]; dropping it reports
//! the play as ended.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditAction, AuditEvent};
use crate::auth::Credentials;
use crate::bus::{StreamHandle, StreamPublisher, Subscriber};
use crate::engine::{Engine, PublishRegistry};
use crate::error::{ProtocolError, ProtocolErrorKind, Result, StreamError};
use crate::frame::{FrameFlags, MediaFrame};
use crate::identity::{AppName, StreamId, StreamKey};
use crate::timestamps::GuardReport;

/// An ingest protocol: a listener that accepts publishers.
#[async_trait]
pub trait InboundProtocol: Send + Sync + 'static {
    /// A short name for logs and audit (`"rtmp"`, `"srt"`).
    fn name(&self) -> &'static str;

    /// Accepts publishers until `shutdown` is cancelled.
    async fn run(&self, ctx: IngestContext, shutdown: CancellationToken) -> Result<()>;
}

/// What an ingest protocol gets from the engine.
#[derive(Clone, Debug)]
pub struct IngestContext {
    engine: Engine,
    protocol: &'static str,
}

impl IngestContext {
    /// A context for `protocol` on `engine`.
    pub fn new(engine: Engine, protocol: &'static str) -> Self {
        Self { engine, protocol }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Validates the names, authorizes and registers a publisher.
    ///
    /// Errors say what the peer should be told: an invalid name, refused
    /// authorization, an unknown application, a stream already published,
    /// or the publisher limit.
    pub async fn begin_publish(&self, app: &str, key: &str, credentials: &Credentials) -> Result<PublishSession> {
        let id = StreamId::new(AppName::new(app)?, StreamKey::new(key)?);
        let mut credentials = credentials.clone();
        credentials.protocol = self.protocol;
        self.engine.begin_publish(id, self.protocol, &credentials).await
    }
}

/// A registered publisher. Dropping it ends the session: the stream ends,
/// or waits for a publisher to come back during the application's
/// [republish grace](crate::engine::AppSpec::republish_grace).
#[derive(Debug)]
pub struct PublishSession {
    engine: Engine,
    id: StreamId,
    session: u64,
    /// Taken only by `drop`.
    publisher: Option<StreamPublisher>,
    handle: StreamHandle,
    protocol: &'static str,
    peer: Option<SocketAddr>,
    end_reason: Mutex<Option<String>>,
    /// The next frame is the first of a publisher that took over the stream.
    discontinuity: AtomicBool,
}

impl PublishSession {
    pub(crate) fn new(
        engine: Engine,
        id: StreamId,
        session: u64,
        publisher: StreamPublisher,
        protocol: &'static str,
        peer: Option<SocketAddr>,
        resumed: bool,
    ) -> Self {
        Self {
            engine,
            id,
            session,
            handle: publisher.handle(),
            publisher: Some(publisher),
            protocol,
            peer,
            end_reason: Mutex::new(None),
            discontinuity: AtomicBool::new(resumed),
        }
    }

    fn publisher(&self) -> Result<&StreamPublisher> {
        self.publisher.as_ref().ok_or_else(|| StreamError::Closed(format!("stream {} was closed", self.id)))
    }

    /// True if this session took over a stream whose publisher had left (see
    /// [`AppSpec::republish_grace`](crate::engine::AppSpec::republish_grace)).
    pub fn resumed(&self) -> bool {
        self.discontinuity.load(Ordering::Relaxed)
    }

    /// The stream.
    pub fn id(&self) -> &StreamId {
        &self.id
    }

    /// The ingest protocol.
    pub fn protocol(&self) -> &'static str {
        self.protocol
    }

    /// The publisher's address.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// A handle to the stream.
    pub fn handle(&self) -> StreamHandle {
        self.handle.clone()
    }

    /// Publishes a frame. Fails with [`StreamError::Closed`] once the stream
    /// was closed by the engine (idle timeout, shutdown), and with a
    /// [`StreamError::Protocol`] error ("timestamps unusable: ...") once
    /// the publisher's timestamps are beyond repair: the protocol should
    /// then close the connection.
    ///
    /// Every frame is placed on the stream's timeline by its
    /// [`TimestampGuard`](crate::timestamps::TimestampGuard): a publisher
    /// whose timestamps jump is corrected (logged, counted in
    /// [`StreamQos::timestamp_corrections`](crate::bus::StreamQos::timestamp_corrections)
    /// and reported to [`Observer::timestamps_corrected`](crate::observe::Observer::timestamps_corrected)),
    /// so its players go on playing.
    pub fn publish(&self, frame: MediaFrame) -> Result<()> {
        self.publish_many(std::iter::once(frame))
    }

    /// Publishes several frames under one lock with one wake-up of the
    /// waiting players (for example all frames parsed from one socket read).
    /// Errors as [`PublishSession::publish`]; after a timestamps error the
    /// frames from the refused one on are not published.
    pub fn publish_many(&self, frames: impl IntoIterator<Item = MediaFrame>) -> Result<()> {
        let discontinuity =
            self.discontinuity.load(Ordering::Relaxed) && self.discontinuity.swap(false, Ordering::Relaxed);
        let mut first = discontinuity;
        let frames = frames.into_iter().map(|mut f| {
            if std::mem::take(&mut first) {
                f.flags |= FrameFlags::DISCONTINUITY;
            }
            f
        });
        match self.publisher()?.publish_guarded(frames) {
            Some(report) => self.timestamps_report(report),
            None => Err(StreamError::Closed(format!("stream {} was closed", self.id))),
        }
    }

    /// Logs, reports and counts what the timestamp guard did; ends the
    /// session if the publisher's timestamps are hopeless.
    fn timestamps_report(&self, report: GuardReport) -> Result<()> {
        for (c, log) in &report.corrections {
            self.engine.observer().timestamps_corrected(&self.id, c.jump_ms);
            if let Some(not_logged) = log {
                tracing::warn!(
                    stream = %self.id,
                    protocol = self.protocol,
                    peer = ?self.peer,
                    track = ?c.frame_type,
                    jump_ms = c.jump_ms,
                    direction = c.direction(),
                    not_logged_since_last = not_logged,
                    "publisher timestamps jumped; timeline corrected"
                );
            }
        }
        let Some(why) = report.unusable else { return Ok(()) };
        let reason = format!("timestamps unusable: {why}");
        tracing::warn!(stream = %self.id, protocol = self.protocol, peer = ?self.peer, %reason, "ending publisher");
        self.end(&reason);
        Err(ProtocolError::new(self.protocol, ProtocolErrorKind::InvalidValue, reason).into())
    }

    /// Sets the reason recorded when the session ends (default: "publisher
    /// left"). Use it before dropping the session.
    pub fn end(&self, reason: &str) {
        *self.end_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
    }
}

impl Drop for PublishSession {
    fn drop(&mut self) {
        let reason = self.end_reason.get_mut().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_else(|| {
            if std::thread::panicking() { "publisher task panicked".to_owned() } else { "publisher left".to_owned() }
        });
        match self.publisher.take() {
            Some(publisher) => self.engine.release(&self.id, self.session, publisher, &reason),
            None => self.engine.unregister(&self.id, self.session, &reason),
        }
    }
}

/// A subscribed player. Derefs to its [`Subscriber`]; dropping it reports
/// the play as ended.
#[derive(Debug)]
pub struct PlaySession {
    engine: Engine,
    subscriber: Subscriber,
    protocol: &'static str,
    peer: Option<SocketAddr>,
    /// When the play was accepted, until the first frames were sent.
    accepted: Option<Instant>,
}

impl PlaySession {
    pub(crate) fn new(
        engine: Engine,
        subscriber: Subscriber,
        protocol: &'static str,
        peer: Option<SocketAddr>,
    ) -> Self {
        Self { engine, subscriber, protocol, peer, accepted: Some(Instant::now()) }
    }

    /// Tells the session that frames were written to the peer. The first
    /// call reports the time since the play was accepted to
    /// [`Observer::first_frame`](crate::observe::Observer::first_frame);
    /// later calls cost one branch, so a player may call it after every
    /// write.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use std::sync::{Arc, Mutex};
    /// use std::time::Duration;
    /// use arcly_core::auth::Credentials;
    /// use arcly_core::engine::{AppSpec, Engine};
    /// use arcly_core::identity::StreamId;
    /// use arcly_core::observe::Observer;
    ///
    /// #[derive(Default)]
    /// struct Ttff(Mutex<Vec<(&'static str, Duration)>>);
    /// impl Observer for Ttff {
    ///     fn first_frame(&self, _: &StreamId, protocol: &'static str, elapsed: Duration) {
    ///         self.0.lock().unwrap().push((protocol, elapsed));
    ///     }
    /// }
    ///
    /// let ttff = Arc::new(Ttff::default());
    /// let engine = Engine::builder().application(AppSpec::new("live")).observer(ttff.clone()).build();
    /// let publisher = engine.begin_publish("live/a".parse().unwrap(), "example", &Credentials::default()).await?;
    /// let mut player = engine.play(publisher.id(), "example", &Credentials::default()).await?;
    /// // ... a batch of frames received and written to the peer ...
    /// player.frames_sent();
    /// player.frames_sent();
    /// assert_eq!(ttff.0.lock().unwrap().len(), 1, "reported once");
    /// # Ok::<(), arcly_core::StreamError>(())
    /// # }).unwrap();
    /// ```
    #[inline]
    pub fn frames_sent(&mut self) {
        if let Some(accepted) = self.accepted.take() {
            self.first_frame(accepted);
        }
    }

    #[cold]
    fn first_frame(&self, accepted: Instant) {
        self.engine.observer().first_frame(self.subscriber.stream_id(), self.protocol, accepted.elapsed());
    }
}

impl Deref for PlaySession {
    type Target = Subscriber;
    fn deref(&self) -> &Subscriber {
        &self.subscriber
    }
}

impl DerefMut for PlaySession {
    fn deref_mut(&mut self) -> &mut Subscriber {
        &mut self.subscriber
    }
}

impl Drop for PlaySession {
    fn drop(&mut self) {
        let id = self.subscriber.stream_id().clone();
        self.engine.observer().play_ended(&id, self.protocol);
        let (protocol, peer) = (self.protocol, self.peer);
        self.engine.audit_event(|| AuditEvent::now(AuditAction::PlayEnd, id, protocol, peer));
    }
}
