//! An RTMP client: [`ClientSession`] (sans-IO) and the tokio tasks [`push`]
//! (play a stream from an engine and publish it to a remote server) and
//! [`pull`] (play from a remote server and publish into an engine), both
//! reconnecting with exponential backoff.
//!
//! Every socket read and write of the tasks has a deadline
//! ([`ClientOptions::io_timeout`]); a stalled server fails the attempt and
//! the task reconnects. Command and data messages from the server are
//! limited in size as on the server side (see [`message`](crate::message)).
//!
//! ```
//! use arcly_rtmp::client::RtmpUrl;
//! let url = RtmpUrl::parse("rtmp://example.com/live/key?token=1").unwrap();
//! assert_eq!((url.host.as_str(), url.port, url.app.as_str(), url.key.as_str()), ("example.com", 1935, "live", "key?token=1"));
//! ```

use std::collections::VecDeque;
use std::time::Duration;

use arcly_core::auth::Credentials;
use arcly_core::bus::{Batch, RecvError};
use arcly_core::engine::Engine;
use arcly_core::frame::{MediaFrame, Timebase};
use arcly_core::identity::StreamId;
use arcly_core::inbound::IngestContext;
use arcly_core::{ProtocolError, ProtocolErrorKind, StreamError};
use arcly_mux::amf0::Amf0Value;
use arcly_mux::flv::{self, FlvWriter, TagType};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::PROTOCOL;
use crate::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits};
use crate::command::{Command, codes};
use crate::handshake::ClientHandshake;
use crate::message::{Message, UserControl, types};
use crate::session::MAX_MESSAGE_BODY;

fn err(kind: ProtocolErrorKind, context: impl Into<String>) -> ProtocolError {
    ProtocolError::new(PROTOCOL, kind, context)
}

/// A parsed `rtmp://host[:port]/app/key` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtmpUrl {
    /// Host name or address.
    pub host: String,
    /// Port (default 1935).
    pub port: u16,
    /// Application (may contain `/`, all but the last path segment).
    pub app: String,
    /// Stream key, with any `?query`.
    pub key: String,
}

impl RtmpUrl {
    /// Parses a URL; `None` if it is not `rtmp://host[:port]/app/key`.
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("rtmp://")?;
        let (authority, path) = rest.split_once('/')?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, 1935),
        };
        let (app, key) = path.rsplit_once('/')?;
        if host.is_empty() || app.is_empty() || key.is_empty() {
            return None;
        }
        Some(Self { host: host.to_owned(), port, app: app.to_owned(), key: key.to_owned() })
    }

    /// `rtmp://host:port/app`, the `tcUrl` of `connect`.
    pub fn tc_url(&self) -> String {
        format!("rtmp://{}:{}/{}", self.host, self.port, self.app)
    }
}

/// Publish to or play from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientMode {
    /// Send `publish` and then media.
    Publish,
    /// Send `play` and receive media.
    Play,
}

/// What happened on a client session.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// `NetStream.Publish.Start`: media may be sent.
    Publishing,
    /// `NetStream.Play.Start`: media will come.
    Playing,
    /// A frame received while playing (milliseconds, unwrapped).
    Media(MediaFrame),
    /// The played stream ended (StreamEOF or `NetStream.Play.UnpublishNotify`).
    StreamEnded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientState {
    Handshake,
    Connecting,
    CreatingStream,
    Starting,
    Active,
}

/// The client side of one RTMP connection, sans-IO: feed it what the
/// socket read, send what [`poll_transmit`](Self::poll_transmit) returns.
#[derive(Debug)]
pub struct ClientSession {
    url: RtmpUrl,
    mode: ClientMode,
    state: ClientState,
    handshake: ClientHandshake,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    writer: FlvWriter,
    out: VecDeque<Bytes>,
    parts: Vec<Bytes>,
    events: VecDeque<ClientEvent>,
    stream_id: u32,
    clocks: [(Option<u32>, i64); 3],
}

impl ClientSession {
    /// Starts a session: C0+C1 is queued for sending.
    pub fn new(url: RtmpUrl, mode: ClientMode) -> Result<Self, ProtocolError> {
        let (handshake, c0c1) = ClientHandshake::new(true)?;
        Ok(Self {
            url,
            mode,
            state: ClientState::Handshake,
            handshake,
            decoder: ChunkDecoder::new(DecoderLimits::default()),
            encoder: ChunkEncoder::new(),
            writer: FlvWriter::new(),
            out: VecDeque::from([c0c1]),
            parts: Vec::new(),
            events: VecDeque::new(),
            stream_id: 0,
            clocks: [(None, 0); 3],
        })
    }

    /// The next piece of output.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// True once publishing or playing.
    pub fn is_active(&self) -> bool {
        self.state == ClientState::Active
    }

    fn send(&mut self, csid: u32, stream_id: u32, msg: &Message) {
        let (type_id, body) = msg.encode();
        self.encoder.write(csid, type_id, stream_id, 0, &[body], &mut self.parts);
        self.out.extend(self.parts.drain(..));
    }

    fn command(&mut self, stream_id: u32, name: &str, tid: f64, args: Vec<Amf0Value>) {
        self.send(
            if stream_id == 0 { 3 } else { 8 },
            stream_id,
            &Message::Command(Command::new(name, tid, Amf0Value::Null, args)),
        );
    }

    /// Feeds bytes from the server. A refusal (`_error`, an `onStatus` of
    /// level `error`) is an error.
    pub fn handle_input(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        let mut rest = data;
        if self.state == ClientState::Handshake {
            let (used, c2) = self.handshake.handle(rest)?;
            rest = &rest[used..];
            let Some(c2) = c2 else { return Ok(()) };
            self.out.push_back(c2);
            self.encoder.set_chunk_size(4096, &mut self.parts);
            self.out.extend(self.parts.drain(..));
            let obj = Amf0Value::Object(vec![
                ("app".into(), Amf0Value::from(self.url.app.as_str())),
                ("type".into(), Amf0Value::from("nonprivate")),
                ("flashVer".into(), Amf0Value::from("FMLE/3.0 (compatible; arcly)")),
                ("tcUrl".into(), Amf0Value::from(self.url.tc_url())),
            ]);
            self.send(3, 0, &Message::Command(Command::new("connect", 1.0, obj, vec![])));
            self.state = ClientState::Connecting;
        }
        self.decoder.push(rest);
        while let Some(msg) = self.decoder.next_message()? {
            let (stream_id, ts) = (msg.stream_id, msg.timestamp);
            match Message::parse(msg.type_id, msg.payload)? {
                Message::Command(c) => self.on_command(c)?,
                Message::UserControl(UserControl::PingRequest(t)) => {
                    self.send(2, 0, &Message::UserControl(UserControl::PingResponse(t)));
                }
                // Only a player consumes StreamEnded: a publisher would
                // queue one per message forever.
                Message::UserControl(UserControl::StreamEof(_)) if self.mode == ClientMode::Play => {
                    self.events.push_back(ClientEvent::StreamEnded);
                }
                Message::Audio(b) if self.playing(stream_id) => {
                    let ts = self.unwrap(1, ts);
                    self.media(flv::parse_audio(&b, ts)?);
                }
                Message::Video(b) if self.playing(stream_id) => {
                    let ts = self.unwrap(0, ts);
                    self.media(flv::parse_video(&b, ts)?);
                }
                // |RtmpSampleAccess is for Flash, not for the bus.
                Message::Data(b) if self.playing(stream_id) && !b.starts_with(b"\x02\x00\x11|RtmpSampleAccess") => {
                    let ts = self.unwrap(2, ts);
                    self.media(flv::parse_script_frame(&b, ts)?);
                }
                _ => {}
            }
        }
        if let Some(seq) = self.decoder.take_ack() {
            self.send(2, 0, &Message::Acknowledgement(seq));
        }
        Ok(())
    }

    fn playing(&self, stream_id: u32) -> bool {
        self.mode == ClientMode::Play && self.state == ClientState::Active && stream_id == self.stream_id
    }

    fn unwrap(&mut self, i: usize, ts: u32) -> i64 {
        let (last, value) = &mut self.clocks[i];
        *value = match *last {
            None => i64::from(ts),
            Some(l) => value.saturating_add(i64::from(ts.wrapping_sub(l) as i32)),
        };
        *last = Some(ts);
        *value
    }

    fn media(&mut self, frame: Option<MediaFrame>) {
        if let Some(f) = frame {
            self.events.push_back(ClientEvent::Media(f));
        }
    }

    fn on_command(&mut self, c: Command) -> Result<(), ProtocolError> {
        let refused = |c: &Command| {
            err(ProtocolErrorKind::UnexpectedMessage, format!("server refused: {}", c.status_code().unwrap_or(&c.name)))
        };
        match (c.name.as_str(), self.state) {
            // releaseStream and FCPublish are optional: servers that do not
            // know them answer `_error`, which does not stop publishing.
            ("_error", _) if self.mode == ClientMode::Publish && matches!(c.transaction_id, 2.0 | 3.0) => {
                tracing::debug!(
                    code = c.status_code().unwrap_or_default(),
                    "rtmp client: releaseStream/FCPublish refused"
                );
            }
            ("_error", _) => return Err(refused(&c)),
            ("_result", ClientState::Connecting) if c.transaction_id == 1.0 => {
                if self.mode == ClientMode::Publish {
                    let key = Amf0Value::from(self.url.key.as_str());
                    self.command(0, "releaseStream", 2.0, vec![key.clone()]);
                    self.command(0, "FCPublish", 3.0, vec![key]);
                }
                self.command(0, "createStream", 4.0, vec![]);
                self.state = ClientState::CreatingStream;
            }
            ("_result", ClientState::CreatingStream) if c.transaction_id == 4.0 => {
                let id = c
                    .arg_f64(0)
                    .filter(|v| *v >= 1.0 && *v <= f64::from(u32::MAX))
                    .ok_or_else(|| err(ProtocolErrorKind::InvalidValue, "createStream answered without a stream id"))?;
                self.stream_id = id as u32;
                let key = Amf0Value::from(self.url.key.as_str());
                match self.mode {
                    ClientMode::Publish => self.command(self.stream_id, "publish", 5.0, vec![key, "live".into()]),
                    ClientMode::Play => {
                        self.command(self.stream_id, "play", 0.0, vec![key, Amf0Value::Number(-1000.0)]);
                        let sbl = UserControl::SetBufferLength { stream_id: self.stream_id, millis: 1000 };
                        self.send(2, 0, &Message::UserControl(sbl));
                    }
                }
                self.state = ClientState::Starting;
            }
            ("onStatus", _) => {
                let level = c.args.first().and_then(|o| o.get("level")).and_then(Amf0Value::as_str);
                if level == Some("error") {
                    return Err(refused(&c));
                }
                match c.status_code() {
                    Some(codes::PUBLISH_START) if self.mode == ClientMode::Publish => {
                        self.state = ClientState::Active;
                        self.events.push_back(ClientEvent::Publishing);
                    }
                    Some(codes::PLAY_START) if self.mode == ClientMode::Play && self.state != ClientState::Active => {
                        self.state = ClientState::Active;
                        self.events.push_back(ClientEvent::Playing);
                    }
                    Some(codes::PLAY_UNPUBLISH_NOTIFY) if self.mode == ClientMode::Play => {
                        self.events.push_back(ClientEvent::StreamEnded);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Queues a frame for a publishing session (the payload is not copied).
    /// A frame whose body exceeds [`MAX_MESSAGE_BODY`] is refused with
    /// [`ProtocolErrorKind::TooLarge`] (RTMP cannot carry it); the session
    /// goes on.
    pub fn send_media(&mut self, frame: &MediaFrame) -> Result<(), ProtocolError> {
        if !(self.mode == ClientMode::Publish && self.state == ClientState::Active) {
            return Err(err(ProtocolErrorKind::UnexpectedMessage, "not publishing"));
        }
        let prefix = self.writer.tag_prefix(frame)?;
        let (type_id, csid) = match prefix.tag_type() {
            TagType::Audio => (types::AUDIO, 6),
            TagType::Video => (types::VIDEO, 7),
            TagType::Script => (types::DATA_AMF0, 5),
        };
        let ts = (frame.dts_in(Timebase::MILLIS) & 0xffff_ffff) as u32;
        let codec_header = prefix.codec_header();
        let len = codec_header.len() + frame.payload.len();
        if len > MAX_MESSAGE_BODY {
            return Err(err(
                ProtocolErrorKind::TooLarge,
                format!("{} frame of {len} bytes exceeds the RTMP message limit of {MAX_MESSAGE_BODY}", frame.codec),
            ));
        }
        self.encoder.write_with_head(csid, type_id, self.stream_id, ts, codec_header, &frame.payload, &mut self.parts);
        self.out.extend(self.parts.drain(..));
        Ok(())
    }
}

/// Reconnection settings of [`push`] and [`pull`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// The first wait after a failure (default 500 ms, at least 100 ms);
    /// doubled after each failure in a row, up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest wait between attempts (default 10 s).
    pub max_backoff: Duration,
    /// Attempts before giving up (`None`: until shutdown).
    pub max_attempts: Option<u32>,
    /// Time allowed to connect and start publishing or playing (default 10 s).
    pub connect_timeout: Duration,
    /// Time allowed for each socket write, and for each read of a player
    /// ([`pull`]) or of a connection being set up (default 15 s): a server
    /// that stops reading or sending fails the attempt, which is retried. A
    /// publisher ([`push`]) does not wait for input once publishing, since
    /// servers may rightly say nothing to it for minutes.
    pub io_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
            max_attempts: None,
            connect_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(15),
        }
    }
}

/// The shortest wait between attempts, whatever `initial_backoff` says.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

struct Conn {
    socket: TcpStream,
    session: ClientSession,
    buf: Vec<u8>,
    io_timeout: Duration,
}

impl Conn {
    async fn open(url: &RtmpUrl, mode: ClientMode, options: &ClientOptions) -> Result<Self, String> {
        let timeout = options.connect_timeout;
        let start = async {
            let socket =
                TcpStream::connect((url.host.as_str(), url.port)).await.map_err(|e| format!("connect: {e}"))?;
            let _ = socket.set_nodelay(true);
            let session = ClientSession::new(url.clone(), mode).map_err(|e| e.to_string())?;
            let mut conn = Self { socket, session, buf: vec![0; 64 << 10], io_timeout: options.io_timeout };
            conn.flush().await?;
            while !conn.session.is_active() {
                conn.read().await?;
            }
            Ok(conn)
        };
        tokio::time::timeout(timeout, start).await.map_err(|_| format!("not started within {timeout:?}"))?
    }

    /// Writes all queued output, within the I/O timeout.
    async fn flush(&mut self) -> Result<(), String> {
        let limit = self.io_timeout;
        let write = async {
            while let Some(b) = self.session.poll_transmit() {
                self.socket.write_all(&b).await.map_err(|e| format!("write: {e}"))?;
            }
            Ok(())
        };
        tokio::time::timeout(limit, write).await.map_err(|_| format!("write timed out after {limit:?}"))?
    }

    /// Reads once, within the I/O timeout, and handles what came.
    async fn read(&mut self) -> Result<(), String> {
        let limit = self.io_timeout;
        let n = tokio::time::timeout(limit, self.socket.read(&mut self.buf))
            .await
            .map_err(|_| format!("nothing received for {limit:?}"))?
            .map_err(|e| format!("read: {e}"))?;
        self.handle_read(n).await
    }

    /// Handles `n` bytes read into the buffer and sends any answer.
    async fn handle_read(&mut self, n: usize) -> Result<(), String> {
        if n == 0 {
            return Err("server closed the connection".into());
        }
        self.session.handle_input(&self.buf[..n]).map_err(|e| e.to_string())?;
        self.flush().await
    }
}

/// The first wait after a failure.
fn first_backoff(options: &ClientOptions) -> Duration {
    options.initial_backoff.max(MIN_BACKOFF)
}

/// The wait after `current`: doubled, at most `max_backoff` (and never
/// below the minimum), without overflowing.
fn next_backoff(current: Duration, options: &ClientOptions) -> Duration {
    current.saturating_mul(2).min(options.max_backoff).max(MIN_BACKOFF)
}

/// Runs `attempt` until it succeeds for good, shutdown, or the attempts
/// run out; waits with exponential backoff in between. An attempt that
/// made progress (returns `Err((true, _))`) resets the backoff.
async fn with_backoff<F, Fut>(
    what: &str,
    options: &ClientOptions,
    shutdown: &CancellationToken,
    mut attempt: F,
) -> Result<(), StreamError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), (bool, String)>>,
{
    let mut backoff = first_backoff(options);
    let mut failures = 0u32;
    loop {
        let result = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = attempt() => r,
        };
        match result {
            Ok(()) => return Ok(()),
            Err((progressed, why)) => {
                if progressed {
                    backoff = first_backoff(options);
                    failures = 0;
                }
                failures = failures.saturating_add(1);
                if options.max_attempts.is_some_and(|m| failures >= m) {
                    return Err(StreamError::Closed(format!("{what}: giving up after {failures} attempts: {why}")));
                }
                tracing::info!(what, reason = %why, retry_in = ?backoff, "rtmp client: retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = next_backoff(backoff, options);
            }
        }
    }
}

/// Publishes `stream` from `engine` to the server at `url` (relay/push)
/// until `shutdown`, reconnecting after failures. Each connection starts
/// from the stream's cached keyframe. Fails on a bad URL or when the
/// attempts run out.
pub async fn push(
    engine: &Engine,
    stream: &StreamId,
    url: &str,
    options: &ClientOptions,
    shutdown: &CancellationToken,
) -> Result<(), StreamError> {
    let url = RtmpUrl::parse(url).ok_or_else(|| StreamError::Config(format!("not an rtmp:// URL: {url}")))?;
    with_backoff("push", options, shutdown, || async {
        let creds = Credentials { protocol: "rtmp-push", ..Credentials::default() };
        let mut play = engine
            .play_when_live(stream, "rtmp-push", &creds, options.connect_timeout)
            .await
            .map_err(|e| (false, format!("source: {e}")))?;
        let mut conn = Conn::open(&url, ClientMode::Publish, options).await.map_err(|e| (false, e))?;
        let mut batch = Batch::new();
        loop {
            // A publisher has no use for events; do not let them pile up.
            while conn.session.poll_event().is_some() {}
            // Only cancel-safe futures race here: a socket read loses no
            // data when the batch wins, whereas a write cut off half way
            // would corrupt the chunk stream. Writes run in the branches.
            tokio::select! {
                got = play.recv_batch(&mut batch, 1024) => {
                    match got {
                        Ok(_) => {}
                        Err(RecvError::Closed(why)) => return Err((true, format!("source ended: {why}"))),
                        Err(e) => return Err((true, format!("source: {e}"))),
                    }
                    for f in batch.iter() {
                        match conn.session.send_media(f) {
                            Ok(()) => {}
                            Err(e) if e.kind == ProtocolErrorKind::TooLarge => {
                                tracing::warn!(error = %e, "rtmp push: frame skipped");
                            }
                            Err(e) => return Err((true, e.to_string())),
                        }
                    }
                    batch.clear();
                    conn.flush().await.map_err(|e| (true, e))?;
                }
                read = conn.socket.read(&mut conn.buf) => {
                    let n = read.map_err(|e| (true, format!("read: {e}")))?;
                    conn.handle_read(n).await.map_err(|e| (true, e))?;
                }
            }
        }
    })
    .await
}

/// Plays `url` and publishes it into the engine of `ctx` as `app`/`key`
/// (pull/relay) until `shutdown`, reconnecting after failures (a stream not
/// found yet, a dropped connection, the remote publisher leaving). Fails on
/// a bad URL or when the attempts run out.
pub async fn pull(
    ctx: &IngestContext,
    app: &str,
    key: &str,
    url: &str,
    options: &ClientOptions,
    shutdown: &CancellationToken,
) -> Result<(), StreamError> {
    let url = RtmpUrl::parse(url).ok_or_else(|| StreamError::Config(format!("not an rtmp:// URL: {url}")))?;
    with_backoff("pull", options, shutdown, || async {
        let mut conn = Conn::open(&url, ClientMode::Play, options).await.map_err(|e| (false, e))?;
        let publisher =
            ctx.begin_publish(app, key, &Credentials::default()).await.map_err(|e| (false, format!("publish: {e}")))?;
        loop {
            while let Some(ev) = conn.session.poll_event() {
                match ev {
                    ClientEvent::Media(f) => publisher.publish(f).map_err(|e| (true, e.to_string()))?,
                    ClientEvent::StreamEnded => {
                        publisher.end("remote stream ended");
                        return Err((true, "remote stream ended".into()));
                    }
                    _ => {}
                }
            }
            conn.read().await.map_err(|e| (true, e))?;
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{ServerSession, SessionConfig, SessionEvent};
    use arcly_core::frame::{CodecId, FrameFlags};
    use std::time::Instant;

    fn pump(client: &mut ClientSession, server: &mut ServerSession) -> Vec<SessionEvent> {
        let now = Instant::now();
        let mut events = Vec::new();
        for _ in 0..10 {
            while let Some(b) = client.poll_transmit() {
                server.handle_input(&b, now).unwrap();
            }
            while let Some(e) = server.poll_event() {
                match &e {
                    SessionEvent::Publish { stream_id, .. } => server.accept_publish(*stream_id).unwrap(),
                    SessionEvent::Play { stream_id, .. } => server.accept_play(*stream_id).unwrap(),
                    _ => {}
                }
                events.push(e);
            }
            while let Some(b) = server.poll_transmit() {
                client.handle_input(&b).unwrap();
            }
        }
        events
    }

    #[test]
    fn urls() {
        let u = RtmpUrl::parse("rtmp://127.0.0.1:1936/app/sub/key").unwrap();
        assert_eq!((u.port, u.app.as_str(), u.key.as_str()), (1936, "app/sub", "key"));
        assert_eq!(u.tc_url(), "rtmp://127.0.0.1:1936/app/sub");
        assert!(RtmpUrl::parse("http://x/a/b").is_none());
        assert!(RtmpUrl::parse("rtmp://x/a").is_none());
        assert!(RtmpUrl::parse("rtmp://x:nope/a/b").is_none());
    }

    #[test]
    fn client_publishes_to_server_session() {
        let url = RtmpUrl::parse("rtmp://localhost/live/k?t=1").unwrap();
        let mut client = ClientSession::new(url, ClientMode::Publish).unwrap();
        let mut server = ServerSession::new(SessionConfig::default(), Instant::now());
        let events = pump(&mut client, &mut server);
        assert!(
            matches!(&events[..], [SessionEvent::Connect { .. }, SessionEvent::Publish { name, query, .. }] if name == "k" && query.as_deref() == Some("t=1"))
        );
        assert_eq!(client.poll_event(), Some(ClientEvent::Publishing));
        let frame = MediaFrame::new(CodecId::H264, Bytes::from(vec![0, 0, 0, 1, 0x65]))
            .with_timestamps(120, 40, Timebase::MILLIS)
            .with_flags(FrameFlags::KEYFRAME);
        client.send_media(&frame).unwrap();
        let events = pump(&mut client, &mut server);
        assert_eq!(events, vec![SessionEvent::Media { stream_id: 1, frame }]);
    }

    #[test]
    fn client_plays_from_server_session() {
        let url = RtmpUrl::parse("rtmp://localhost/live/k").unwrap();
        let mut client = ClientSession::new(url, ClientMode::Play).unwrap();
        let mut server = ServerSession::new(SessionConfig::default(), Instant::now());
        pump(&mut client, &mut server);
        assert_eq!(client.poll_event(), Some(ClientEvent::Playing));
        let frame = MediaFrame::new(CodecId::Aac, Bytes::from_static(&[1, 2])).with_flags(FrameFlags::KEYFRAME);
        server.send_media(1, &frame).unwrap();
        server.send_stream_eof(1);
        pump(&mut client, &mut server);
        assert_eq!(client.poll_event(), Some(ClientEvent::Media(frame)));
        assert_eq!(client.poll_event(), Some(ClientEvent::StreamEnded));
    }

    /// A publishing client (handshake and publish done with a server
    /// session) and an encoder for more server messages on chunk stream 20.
    fn publishing_client() -> (ClientSession, ChunkEncoder) {
        let url = RtmpUrl::parse("rtmp://localhost/live/k").unwrap();
        let mut client = ClientSession::new(url, ClientMode::Publish).unwrap();
        let mut server = ServerSession::new(SessionConfig::default(), Instant::now());
        pump(&mut client, &mut server);
        assert_eq!(client.poll_event(), Some(ClientEvent::Publishing));
        // The server announced 4096: keep to it.
        let mut enc = ChunkEncoder::new();
        let mut parts = Vec::new();
        enc.set_chunk_size(4096, &mut parts);
        client.handle_input(&parts.concat()).unwrap();
        (client, enc)
    }

    fn wire(enc: &mut ChunkEncoder, msg: &Message) -> Vec<u8> {
        let (type_id, body) = msg.encode();
        let mut parts = Vec::new();
        enc.write(20, type_id, 0, 0, &[body], &mut parts);
        parts.concat()
    }

    /// A publisher never polls events: StreamEOF and UnpublishNotify, which
    /// only a player uses, must not queue up.
    #[test]
    fn publisher_events_stay_bounded() {
        let (mut client, mut enc) = publishing_client();
        let eof = wire(&mut enc, &Message::UserControl(UserControl::StreamEof(1)));
        let notify = Command::on_status("status", codes::PLAY_UNPUBLISH_NOTIFY, "gone");
        let notify = wire(&mut enc, &Message::Command(notify));
        for _ in 0..10_000 {
            client.handle_input(&eof).unwrap();
            client.handle_input(&notify).unwrap();
        }
        assert_eq!(client.events.len(), 0);
        assert!(client.is_active());
    }

    /// Servers that do not know releaseStream or FCPublish answer `_error`:
    /// publishing goes on. Other `_error` answers still fail.
    #[test]
    fn error_answers_to_release_stream_and_fc_publish_are_ignored() {
        let (mut client, mut enc) = publishing_client();
        for tid in [2.0, 3.0] {
            let e = Command::error(tid, "NetConnection.Call.Failed", "unknown method");
            client.handle_input(&wire(&mut enc, &Message::Command(e))).unwrap();
        }
        assert!(client.is_active());
        let e = Command::error(5.0, codes::PUBLISH_BAD_NAME, "no");
        assert!(client.handle_input(&wire(&mut enc, &Message::Command(e))).is_err());
    }

    /// The client refuses commands over 64 KiB before decoding them.
    #[test]
    fn oversized_command_from_the_server_is_refused() {
        let (mut client, mut enc) = publishing_client();
        let mut body = Command::on_status("status", "x", "y").encode().to_vec();
        body.resize(crate::message::MAX_COMMAND_SIZE + 1, 0x05);
        let mut parts = Vec::new();
        enc.write(20, types::COMMAND_AMF0, 0, 0, &[Bytes::from(body)], &mut parts);
        let e = client.handle_input(&parts.concat()).unwrap_err();
        assert_eq!(e.kind, ProtocolErrorKind::TooLarge);
        assert!(e.context.contains("64 KiB"), "{e}");
    }

    #[test]
    fn backoff_is_clamped_and_never_overflows() {
        let zero = ClientOptions { initial_backoff: Duration::ZERO, max_backoff: Duration::ZERO, ..Default::default() };
        assert_eq!(first_backoff(&zero), MIN_BACKOFF);
        assert_eq!(next_backoff(first_backoff(&zero), &zero), MIN_BACKOFF);
        let huge = ClientOptions { initial_backoff: Duration::MAX, max_backoff: Duration::MAX, ..Default::default() };
        assert_eq!(next_backoff(first_backoff(&huge), &huge), Duration::MAX);
        let d = ClientOptions::default();
        assert_eq!(next_backoff(Duration::from_secs(8), &d), d.max_backoff);
        assert_eq!(next_backoff(d.initial_backoff, &d), Duration::from_secs(1));
    }

    /// A server that takes the connection and then stops: accepts the
    /// first publish or play with a server session, then neither reads nor
    /// writes (keeping the socket open). With `start: false` it does
    /// nothing at all.
    async fn stalling_server(start: bool) -> RtmpUrl {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut session = ServerSession::new(SessionConfig::default(), Instant::now());
            let mut buf = vec![0u8; 64 << 10];
            let mut started = !start;
            while !started {
                let n = socket.read(&mut buf).await.unwrap();
                session.handle_input(&buf[..n], Instant::now()).unwrap();
                while let Some(e) = session.poll_event() {
                    started |= match e {
                        SessionEvent::Publish { stream_id, .. } => session.accept_publish(stream_id).is_ok(),
                        SessionEvent::Play { stream_id, .. } => session.accept_play(stream_id).is_ok(),
                        _ => false,
                    };
                }
                while let Some(b) = session.poll_transmit() {
                    socket.write_all(&b).await.unwrap();
                }
            }
            std::future::pending::<()>().await;
            drop(socket);
        });
        RtmpUrl::parse(&format!("rtmp://127.0.0.1:{port}/live/k")).unwrap()
    }

    fn short_io() -> ClientOptions {
        ClientOptions { io_timeout: Duration::from_millis(300), ..ClientOptions::default() }
    }

    #[tokio::test]
    async fn silent_server_fails_the_connection_setup() {
        let url = stalling_server(false).await;
        let t0 = Instant::now();
        let e = Conn::open(&url, ClientMode::Play, &short_io()).await.err().unwrap();
        assert!(e.contains("nothing received for 300ms"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn player_read_times_out() {
        let url = stalling_server(true).await;
        let mut conn = Conn::open(&url, ClientMode::Play, &short_io()).await.unwrap();
        let t0 = Instant::now();
        let e = loop {
            if let Err(e) = conn.read().await {
                break e;
            }
        };
        assert!(e.contains("nothing received for 300ms"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn publisher_write_times_out_when_the_server_stops_reading() {
        let url = stalling_server(true).await;
        let mut conn = Conn::open(&url, ClientMode::Publish, &short_io()).await.unwrap();
        let frame = MediaFrame::new(CodecId::H264, Bytes::from(vec![0u8; 1 << 20])).with_flags(FrameFlags::KEYFRAME);
        let t0 = Instant::now();
        let mut e = None;
        // Far more than the socket buffers of both sides hold.
        for _ in 0..256 {
            conn.session.send_media(&frame).unwrap();
            if let Err(why) = conn.flush().await {
                e = Some(why);
                break;
            }
        }
        let e = e.expect("writes to a server that does not read must time out");
        assert!(e.contains("write timed out after 300ms"), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(10));
    }
}
