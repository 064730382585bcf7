//! [`RtmpServer`]: the tokio driver of [`ServerSession`].
//!
//! An accept loop with connection limits, in all
//! ([`ServerConfig::max_connections`]) and per peer address
//! ([`ServerConfig::max_connections_per_ip`]): a connection over a limit is
//! closed at once, counted with
//! [`Observer::connection_refused`](arcly_core::observe::Observer::connection_refused)
//! and logged at most once a second per limit. Each connection is one task
//! that owns its socket and its session. Publishers go through
//! [`IngestContext::begin_publish`]; players through
//! [`Engine::play`](arcly_core::engine::Engine::play) (or
//! `play_when_live` when [`ServerConfig::play_wait`] is set). A player
//! receives every frame available in one batch, written with one vectored
//! write, then waits for the engine's shared [`BatchClock`] tick
//! ([`ServerConfig::play_batch_window`]) before the next batch. A player
//! whose socket does not take a batch within the idle timeout, or that the
//! bus evicts for falling behind, is closed. Errors close only their
//! connection.
//!
//! Every accepted connection is reported to the engine's
//! [`Observer`](arcly_core::observe::Observer): opened, then closed with a
//! [`CloseReason`] and one log line naming it (debug for a peer that left
//! or a shutdown, info for anything else).
//!
//! [`BatchClock`]: arcly_core::bus::BatchClock

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arcly_core::auth::Credentials;
use arcly_core::bus::{Batch, Pacer, RecvError};
use arcly_core::engine::Engine;
use arcly_core::frame::MediaFrame;
use arcly_core::identity::{AppName, StreamId, StreamKey};
use arcly_core::inbound::{InboundProtocol, IngestContext, PlaySession, PublishSession};
use arcly_core::limit::{Admission, ConnectionLimiter};
use arcly_core::observe::{CloseReason, RefuseReason};
use arcly_core::{ProtocolErrorKind, Result, StreamError};
use async_trait::async_trait;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::PROTOCOL;
use crate::command::codes;
use crate::session::{ServerSession, SessionConfig, SessionEvent};

/// Queued output that makes a player write before its batch is done.
const FLUSH_AT: usize = 1 << 20;

/// Settings of an [`RtmpServer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// The address to listen on (default `127.0.0.1:1935`).
    pub listen: SocketAddr,
    /// Most connections at once (default 10 000; 0: no limit); more are
    /// closed at accept.
    pub max_connections: usize,
    /// Most connections at once from one IP address (default 100; 0: no
    /// limit); more are closed at accept.
    pub max_connections_per_ip: usize,
    /// Per-connection protocol settings: handshake and idle timeouts, chunk
    /// and message limits, output chunk size, outbound queue limit.
    pub session: SessionConfig,
    /// How long a player collects frames before a write (default 50 ms).
    pub play_batch_window: Duration,
    /// Most frames per player write (default 1024).
    pub play_batch_frames: usize,
    /// How long a player waits for a stream that is not live yet (default
    /// 0: `NetStream.Play.StreamNotFound` at once).
    pub play_wait: Duration,
    /// Bytes read from a socket at a time (default 64 KiB).
    pub read_buffer: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 1935)),
            max_connections: 10_000,
            max_connections_per_ip: 100,
            session: SessionConfig::default(),
            play_batch_window: Duration::from_millis(50),
            play_batch_frames: 1024,
            play_wait: Duration::ZERO,
            read_buffer: 64 << 10,
        }
    }
}

/// An RTMP server: an [`InboundProtocol`] named `"rtmp"`, accepting
/// publishers and players. See the [module docs](self).
#[derive(Debug)]
pub struct RtmpServer {
    config: Arc<ServerConfig>,
    listener: Mutex<Option<TcpListener>>,
    local_addr: SocketAddr,
}

impl RtmpServer {
    /// Binds `config.listen` (port 0 picks a free port) and returns the
    /// server and the address it listens on. Connections are accepted once
    /// the engine runs it.
    pub async fn bind(config: ServerConfig) -> io::Result<(Self, SocketAddr)> {
        let listener = listen(config.listen)?;
        let local_addr = listener.local_addr()?;
        let server = Self { config: Arc::new(config), listener: Mutex::new(Some(listener)), local_addr };
        Ok((server, local_addr))
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

#[async_trait]
impl InboundProtocol for RtmpServer {
    fn name(&self) -> &'static str {
        PROTOCOL
    }

    async fn run(&self, ctx: IngestContext, shutdown: CancellationToken) -> Result<()> {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| StreamError::Config("RtmpServer::run called twice".into()))?;
        let limiter = ConnectionLimiter::new(self.config.max_connections, self.config.max_connections_per_ip);
        let mut refusals = RefusalLog::default();
        let mut tasks = JoinSet::new();
        tracing::info!(
            addr = %self.local_addr,
            max_connections = self.config.max_connections,
            max_connections_per_ip = self.config.max_connections_per_ip,
            "rtmp server listening"
        );
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors and the like: back off briefly.
                            tracing::warn!(error = %e, "rtmp accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let admission = match limiter.try_admit(peer.ip()) {
                        Ok(a) => a,
                        Err(why) => {
                            drop(socket);
                            ctx.engine().observer().connection_refused(PROTOCOL, peer, why);
                            refusals.refused(why, peer, &self.config);
                            continue;
                        }
                    };
                    let _ = socket.set_nodelay(true);
                    let ticket = Ticket::open(ctx.engine().clone(), peer, admission);
                    let (ctx, config, token) = (ctx.clone(), self.config.clone(), shutdown.clone());
                    tasks.spawn(async move {
                        let mut conn = Connection::new(ctx, config, socket, peer);
                        let end = match conn.run(token).await {
                            Ok(never) => match never {},
                            Err(end) => end,
                        };
                        ticket.close(end);
                    });
                }
            }
        }
        tasks.shutdown().await;
        Ok(())
    }
}

/// Logs refusals at most once a second per limit, with the number refused
/// since the last line: 10 000 refusals must not flood the log.
#[derive(Debug, Default)]
struct RefusalLog {
    /// Per [`RefuseReason::index`]: when the last line was logged, and the
    /// refusals since.
    last: [(Option<Instant>, u64); RefuseReason::ALL.len()],
}

impl RefusalLog {
    fn refused(&mut self, why: RefuseReason, peer: SocketAddr, config: &ServerConfig) {
        let (last, since) = &mut self.last[why.index()];
        *since += 1;
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(1)) {
            return;
        }
        let limit = match why {
            RefuseReason::GlobalLimit => config.max_connections,
            _ => config.max_connections_per_ip,
        };
        tracing::warn!(%peer, reason = %why, limit, refused = *since, "rtmp connection refused");
        *last = Some(now);
        *since = 0;
    }
}

/// An accepted connection's accounting: its place under the limits and its
/// report to the observer. If the task is cancelled before
/// [`Ticket::close`] (the server shutting down), dropping it reports a
/// shutdown; the place is given back either way.
struct Ticket {
    engine: Engine,
    peer: SocketAddr,
    _admission: Admission,
    closed: bool,
}

impl Ticket {
    fn open(engine: Engine, peer: SocketAddr, admission: Admission) -> Self {
        engine.observer().connection_opened(PROTOCOL, peer);
        Self { engine, peer, _admission: admission, closed: false }
    }

    /// Logs and reports how the connection ended.
    fn close(mut self, end: End) {
        let (peer, reason, detail) = (self.peer, end.reason, &end.detail);
        if end.reason.is_normal() {
            tracing::debug!(%peer, %reason, %detail, "rtmp connection closed");
        } else {
            tracing::info!(%peer, %reason, %detail, "rtmp connection closed");
        }
        self.engine.observer().connection_closed(PROTOCOL, self.peer, end.reason, &end.detail);
        self.closed = true;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.closed {
            let (reason, detail) = if std::thread::panicking() {
                (CloseReason::ProtocolError, "connection task panicked")
            } else {
                (CloseReason::Shutdown, "connection task cancelled")
            };
            self.engine.observer().connection_closed(PROTOCOL, self.peer, reason, detail);
        }
    }
}

/// Pending connections the kernel queues for `accept` (the default of 128
/// overflows in a burst of connections, and the kernel then holds the
/// extra ones for seconds of SYN-ACK retries).
const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `addr` with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // As std's TcpListener::bind: a restarted server can bind at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// A player's subscription.
struct Player {
    stream_id: u32,
    play: PlaySession,
}

struct Connection {
    ctx: IngestContext,
    config: Arc<ServerConfig>,
    socket: TcpStream,
    peer: SocketAddr,
    session: ServerSession,
    publisher: Option<(u32, PublishSession)>,
    out: Vec<Bytes>,
}

/// Why a connection ended: the category counted and the text logged.
#[derive(Debug)]
struct End {
    reason: CloseReason,
    detail: String,
}

impl End {
    fn new(reason: CloseReason, detail: impl Into<String>) -> Self {
        Self { reason, detail: detail.into() }
    }
}

/// A step of a connection: `Err` ends it, saying why.
type Outcome<T = ()> = std::result::Result<T, End>;

impl Connection {
    fn new(ctx: IngestContext, config: Arc<ServerConfig>, socket: TcpStream, peer: SocketAddr) -> Self {
        let session = ServerSession::new(config.session.clone(), Instant::now());
        Self { ctx, config, socket, peer, session, publisher: None, out: Vec::new() }
    }

    /// Runs the connection until it ends; the error says why.
    async fn run(&mut self, shutdown: CancellationToken) -> Outcome<std::convert::Infallible> {
        // Players send little after the start: a full-size buffer per
        // player would be most of its memory. It grows once publishing.
        let mut buf = BytesMut::with_capacity(SMALL_READ_BUFFER.min(self.config.read_buffer));
        let mut player: Option<Player> = None;
        let mut pacer: Option<Pacer> = None;
        let mut batch = Batch::new();
        let mut paced = false;
        let max_frames = self.config.play_batch_frames.max(1);
        // Both futures live across iterations: a player wakes tens of times
        // a second, and creating them anew each time costs a timer entry
        // and a notifier registration per wake-up.
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let timer = tokio::time::sleep_until(tokio::time::Instant::now());
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            let deadline = self.session.poll_timeout().unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            if armed != Some(deadline) {
                timer.as_mut().reset(tokio::time::Instant::from_std(deadline));
                armed = Some(deadline);
            }
            tokio::select! {
                () = &mut cancelled => {
                    if let Some((_, p)) = &self.publisher {
                        p.end("shutdown");
                    }
                    return Err(End::new(CloseReason::Shutdown, "server shutting down"));
                }
                read = self.socket.read_buf(&mut buf) => {
                    let n = read.map_err(|e| End::new(CloseReason::Io, format!("read failed: {e}")))?;
                    if n == 0 {
                        return Err(End::new(CloseReason::PeerClosed, "peer closed the connection"));
                    }
                    self.session
                        .handle_input(&buf, Instant::now())
                        .map_err(|e| End::new(CloseReason::ProtocolError, format!("protocol error: {e}")))?;
                    buf.clear();
                    let want = if self.publisher.is_some() {
                        self.config.read_buffer
                    } else {
                        SMALL_READ_BUFFER.min(self.config.read_buffer)
                    };
                    if buf.capacity() < want / 2 {
                        buf.reserve(want);
                    }
                    self.events(&mut player, &mut pacer).await?;
                    self.flush().await?;
                }
                got = recv(&mut player, &mut batch, max_frames), if player.is_some() && !paced => {
                    let Some(p) = player.as_mut() else { continue };
                    let stream_id = p.stream_id;
                    match got {
                        // Nothing but a publisher change: tell the player,
                        // which stays for the next publisher.
                        Ok(0) => {
                            if p.play.publisher_live() {
                                self.session.send_publisher_back(stream_id);
                            } else {
                                self.session.send_publisher_left(stream_id);
                            }
                            self.flush().await?;
                        }
                        Ok(_) => {
                            for frame in batch.iter() {
                                if let Err(e) = self.session.send_media(stream_id, frame) {
                                    // A frame too large for RTMP is skipped;
                                    // a broken session (a slow peer), an
                                    // unsupported codec close the player.
                                    if self.session.is_failed() {
                                        // Output queued over its limit.
                                        return Err(End::new(CloseReason::SlowConsumer, format!("player: {e}")));
                                    }
                                    if e.kind != ProtocolErrorKind::TooLarge {
                                        return Err(End::new(CloseReason::ProtocolError, format!("player: {e}")));
                                    }
                                    tracing::warn!(peer = %self.peer, error = %e, "rtmp player: frame skipped");
                                    continue;
                                }
                                // Keep the queue small even for a large cached GOP.
                                if self.session.queued_bytes() > FLUSH_AT {
                                    self.flush().await?;
                                }
                            }
                            batch.clear();
                            self.flush().await?;
                            paced = pacer.is_some();
                            // Reports the time to first frame once; a branch after.
                            p.play.frames_sent();
                        }
                        Err(RecvError::Closed(why)) => {
                            tracing::debug!(peer = %self.peer, reason = %why, "stream ended for player");
                            self.session.send_stream_eof(stream_id);
                            player = None;
                            self.flush().await?;
                        }
                        // Evicted by the bus for falling behind.
                        Err(e) => return Err(End::new(CloseReason::SlowConsumer, format!("player dropped: {e}"))),
                    }
                }
                () = tick(&mut pacer), if paced => paced = false,
                () = &mut timer => {
                    // A fired timer stays ready: re-arm it next iteration.
                    armed = None;
                    self.session
                        .handle_timeout(Instant::now())
                        .map_err(|e| End::new(CloseReason::Timeout, e.to_string()))?;
                }
            }
        }
    }

    async fn flush(&mut self) -> Outcome {
        self.session.drain_transmit(&mut self.out);
        if self.out.is_empty() {
            return Ok(());
        }
        // Most writes fit the socket buffer at once; only a write that has
        // to wait needs the timer that catches a peer not reading.
        match try_write_parts(&self.socket, &mut self.out) {
            Ok(true) => {
                self.clear_out();
                return Ok(());
            }
            Ok(false) => {}
            Err(e) => return Err(End::new(CloseReason::Io, format!("write failed: {e}"))),
        }
        let limit = match self.config.session.idle_timeout {
            d if d.is_zero() => Duration::from_secs(3600),
            d => d,
        };
        let result = tokio::time::timeout(limit, write_parts(&mut self.socket, &mut self.out)).await;
        self.clear_out();
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::new(CloseReason::Io, format!("write failed: {e}"))),
            Err(_) => {
                Err(End::new(CloseReason::SlowConsumer, format!("peer did not read for {limit:?} (slow player)")))
            }
        }
    }

    /// Empties the write queue, giving back the room a burst (a joining
    /// player's cached GOP) took.
    fn clear_out(&mut self) {
        self.out.clear();
        if self.out.capacity() > KEEP_PARTS {
            self.out.shrink_to(KEEP_PARTS);
        }
    }

    /// Refuses and closes gracefully: the peer gets to read the refusal.
    async fn refuse(&mut self, why: String) -> Outcome {
        self.flush().await?;
        let _ = self.socket.shutdown().await;
        // On the heap: an array here would sit in every connection's task.
        let mut sink = vec![0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while matches!(self.socket.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
        Err(End::new(CloseReason::Refused, why))
    }

    async fn events(&mut self, player: &mut Option<Player>, pacer: &mut Option<Pacer>) -> Outcome {
        // The frames of one read go onto the bus together: one lock and one
        // wake-up of the players for all of them.
        let mut media = Vec::new();
        while let Some(event) = self.session.poll_event() {
            if let SessionEvent::Media { stream_id, frame } = event {
                if self.publisher.as_ref().is_some_and(|(id, _)| *id == stream_id) {
                    media.push(frame);
                }
                continue;
            }
            // Anything else may depend on the frames before it.
            self.publish_media(&mut media)?;
            match event {
                SessionEvent::Connect { app, tc_url } => {
                    tracing::debug!(peer = %self.peer, %app, tc_url = tc_url.as_deref().unwrap_or(""), "rtmp connect");
                }
                SessionEvent::Publish { stream_id, name, query } => {
                    self.publish(stream_id, &name, query).await?;
                }
                SessionEvent::Media { .. } => {}
                SessionEvent::Unpublish { stream_id } => {
                    if self.publisher.as_ref().is_some_and(|(id, _)| *id == stream_id)
                        && let Some((_, p)) = self.publisher.take()
                    {
                        p.end("publisher unpublished");
                    }
                }
                SessionEvent::Play { stream_id, name, query, .. } => {
                    if player.is_some() {
                        let _ = self.session.reject_play(stream_id, codes::PLAY_FAILED, "already playing a stream");
                        continue;
                    }
                    match self.play(&name, query).await {
                        Ok(play) => {
                            if self.session.accept_play(stream_id).is_ok() {
                                tracing::debug!(peer = %self.peer, stream = %play.stream_id(), "rtmp play");
                                *player = Some(Player { stream_id, play });
                                if pacer.is_none() && !self.config.play_batch_window.is_zero() {
                                    *pacer = Some(self.ctx.engine().batch_clock(self.config.play_batch_window).pacer());
                                }
                            }
                        }
                        Err(e) => {
                            let code = match e {
                                StreamError::NotFound(_) | StreamError::InvalidName(_) => codes::PLAY_STREAM_NOT_FOUND,
                                _ => codes::PLAY_FAILED,
                            };
                            tracing::info!(peer = %self.peer, %name, error = %e, "rtmp play refused");
                            let _ = self.session.reject_play(stream_id, code, &e.to_string());
                        }
                    }
                }
                SessionEvent::PlayStop { stream_id } => {
                    if player.as_ref().is_some_and(|p| p.stream_id == stream_id) {
                        *player = None;
                    }
                }
            }
        }
        self.publish_media(&mut media)
    }

    fn app(&self) -> String {
        self.session.app().unwrap_or_default().to_owned()
    }

    fn credentials(&self, query: Option<String>) -> Credentials {
        Credentials { query, peer: Some(self.peer), protocol: PROTOCOL, bearer: None }
    }

    fn publish_media(&mut self, media: &mut Vec<MediaFrame>) -> Outcome {
        if let Some((_, p)) = &self.publisher
            && !media.is_empty()
            && let Err(e) = p.publish_many(media.drain(..))
        {
            // The publisher's timestamps are beyond repair ("timestamps
            // unusable: ..."), or the engine closed the stream: shutting
            // down, or its idle reaper saw no frame for its idle timeout.
            let reason = if matches!(e, StreamError::Protocol(_)) {
                CloseReason::ProtocolError
            } else if self.ctx.engine().shutdown_token().is_cancelled() {
                CloseReason::Shutdown
            } else {
                CloseReason::Timeout
            };
            return Err(End::new(reason, format!("publish failed: {e}")));
        }
        media.clear();
        Ok(())
    }

    async fn publish(&mut self, stream_id: u32, name: &str, query: Option<String>) -> Outcome {
        if self.publisher.is_some() {
            let _ = self.session.reject_publish(stream_id, codes::PUBLISH_BAD_NAME, "already publishing");
            return Ok(());
        }
        let creds = self.credentials(query);
        match self.ctx.begin_publish(&self.app(), name, &creds).await {
            Ok(session) => {
                if self.session.accept_publish(stream_id).is_ok() {
                    tracing::info!(peer = %self.peer, stream = %session.id(), "rtmp publish started");
                    self.publisher = Some((stream_id, session));
                }
                Ok(())
            }
            Err(e) => {
                let code = match e {
                    StreamError::Unauthorized { .. } => codes::PUBLISH_UNAUTHORIZED,
                    _ => codes::PUBLISH_BAD_NAME,
                };
                let _ = self.session.reject_publish(stream_id, code, &e.to_string());
                self.refuse(format!("publish of {}/{name} refused: {e}", self.app())).await
            }
        }
    }

    async fn play(&mut self, name: &str, query: Option<String>) -> Result<PlaySession> {
        let id = StreamId::new(AppName::new(&self.app())?, StreamKey::new(name)?);
        let creds = self.credentials(query);
        let engine = self.ctx.engine();
        if self.config.play_wait.is_zero() {
            engine.play(&id, PROTOCOL, &creds).await
        } else {
            engine.play_when_live(&id, PROTOCOL, &creds, self.config.play_wait).await
        }
    }
}

async fn recv(player: &mut Option<Player>, batch: &mut Batch, max: usize) -> std::result::Result<usize, RecvError> {
    match player {
        Some(p) => p.play.recv_batch(batch, max).await,
        None => std::future::pending().await,
    }
}

async fn tick(pacer: &mut Option<Pacer>) {
    match pacer {
        Some(p) => p.tick().await,
        None => std::future::pending().await,
    }
}

/// Output parts the write queue keeps room for between bursts.
const KEEP_PARTS: usize = 16;

/// Read buffer of a connection that does not publish.
const SMALL_READ_BUFFER: usize = 1 << 10;

/// Parts per vectored write (Linux accepts up to 1024).
const IOV_MAX: usize = 256;

/// Fills `slices` from `parts` and returns how many it used.
fn gather<'a>(parts: &'a [Bytes], slices: &mut [IoSlice<'a>; IOV_MAX]) -> usize {
    let mut k = 0;
    for (slot, part) in slices.iter_mut().zip(parts) {
        *slot = IoSlice::new(part);
        k += 1;
    }
    k
}

/// Drops the first `n` written bytes from `parts[*i..]`, advancing `*i`
/// past the parts fully written.
fn consume(parts: &mut [Bytes], i: &mut usize, mut n: usize) {
    while n > 0 && *i < parts.len() {
        let len = parts[*i].len();
        if n >= len {
            n -= len;
            *i += 1;
        } else {
            parts[*i].advance(n);
            n = 0;
        }
    }
}

/// Writes what the socket takes without waiting. `Ok(true)` when every
/// part went out; otherwise the written ones are removed from `parts` and
/// the rest wait for [`write_parts`].
fn try_write_parts(socket: &TcpStream, parts: &mut Vec<Bytes>) -> io::Result<bool> {
    parts.retain(|b| !b.is_empty());
    let mut i = 0;
    while i < parts.len() {
        let mut slices = [IoSlice::new(&[]); IOV_MAX];
        let k = gather(&parts[i..], &mut slices);
        match socket.try_write_vectored(&slices[..k]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => consume(parts, &mut i, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    parts.drain(..i);
    Ok(parts.is_empty())
}

/// Writes every part with vectored writes; parts are consumed. The slow
/// path: its slices go on the heap, as an array here would be held in
/// every connection's task for its whole life.
async fn write_parts(socket: &mut TcpStream, parts: &mut Vec<Bytes>) -> io::Result<()> {
    parts.retain(|b| !b.is_empty());
    let mut i = 0;
    while i < parts.len() {
        let slices: Vec<IoSlice<'_>> = parts[i..].iter().take(IOV_MAX).map(|b| IoSlice::new(b)).collect();
        let n = socket.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        consume(parts, &mut i, n);
    }
    Ok(())
}
