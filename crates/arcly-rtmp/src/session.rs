//! [`ServerSession`]: one server-side RTMP connection as a state machine.
//!
//! Feed it what the socket read with [`ServerSession::handle_input`], send
//! what [`ServerSession::poll_transmit`] returns, act on the events of
//! [`ServerSession::poll_event`] (accept or reject publishers and players)
//! and call [`ServerSession::handle_timeout`] at
//! [`ServerSession::poll_timeout`]. It reads no clock and owns no socket.
//!
//! ```
//! use std::time::Instant;
//! use arcly_rtmp::session::{ServerSession, SessionConfig};
//! let mut session = ServerSession::new(SessionConfig::default(), Instant::now());
//! // A client that sends garbage instead of C0 is refused.
//! assert!(session.handle_input(&[0xff; 1537], Instant::now()).is_err());
//! ```

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use arcly_core::frame::{FrameType, MediaFrame, Timebase};
use arcly_core::{ProtocolError, ProtocolErrorKind};
use arcly_mux::amf0::Amf0Value;
use arcly_mux::flv::{self, FlvWriter, TagType};
use bytes::Bytes;

use crate::PROTOCOL;
use crate::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits, RawMessage};
use crate::command::{self, Command, codes};
use crate::handshake::ServerHandshake;
use crate::message::{self, Message, UserControl, types};

const CSID_CONTROL: u32 = 2;
const CSID_COMMAND: u32 = 3;
const CSID_DATA: u32 = 5;
const CSID_AUDIO: u32 = 6;
const CSID_VIDEO: u32 = 7;
const FLV_TAG_HEADER_LEN: usize = 11;

/// Output parts a queue keeps room for between bursts.
const KEEP_PARTS: usize = 16;
/// The most FLV tags one aggregate message may hold; more is a protocol
/// error (each tag becomes an event, so a 16 MiB aggregate of tiny tags
/// would queue a million of them).
pub const MAX_AGGREGATE_TAGS: usize = 1024;

/// The largest message body RTMP can express (24-bit length): 16 MiB - 1.
pub const MAX_MESSAGE_BODY: usize = 0xff_ffff;

/// One of the FLV body parsers of `arcly-mux`.
type BodyParser = fn(&Bytes, i64) -> Result<Option<MediaFrame>, ProtocolError>;

/// Settings of a [`ServerSession`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Chunk and message size limits for input.
    pub limits: DecoderLimits,
    /// The chunk size used for output (default 4096), announced with Set
    /// Chunk Size after `connect`.
    pub chunk_size: u32,
    /// The acknowledgement window announced to the peer (default 2.5 MB).
    pub window_ack_size: u32,
    /// Time allowed from the first byte to a finished handshake and
    /// `connect` (default 10 s).
    pub handshake_timeout: Duration,
    /// Time without input from the peer before the session is closed
    /// (default 30 s; zero disables). After half of it without input the
    /// session sends a ping (user control PingRequest), as nginx-rtmp does:
    /// a peer that answers, or sends anything else, stays, so a player
    /// waiting out a publisher's reconnect gap is not closed.
    pub idle_timeout: Duration,
    /// Time allowed from `connect` to a started publish or play (default
    /// 30 s; zero disables). A connection that has not published or played
    /// by then is closed, whatever else it sends (such as pings). The check
    /// waits while a publish or play is being decided by the driver.
    pub start_timeout: Duration,
    /// Most bytes of incomplete messages held before a publish is accepted
    /// (default 256 KiB, and never more than `limits.max_buffered`);
    /// [`accept_publish`](ServerSession::accept_publish) raises it to
    /// `limits.max_buffered`. Commands and data are small, so only an
    /// accepted publisher needs room for large video frames.
    pub max_buffered_before_publish: usize,
    /// Most message streams a peer may create (default 8).
    pub max_streams: usize,
    /// Most bytes queued for sending before the session fails (default
    /// 32 MiB): the driver must drain [`ServerSession::poll_transmit`].
    pub max_queued_bytes: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            limits: DecoderLimits::default(),
            chunk_size: 4096,
            window_ack_size: 2_500_000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(30),
            max_buffered_before_publish: 256 << 10,
            max_streams: 8,
            max_queued_bytes: 32 << 20,
        }
    }
}

/// What happened on a session.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The client connected to an application.
    Connect {
        /// The application (without any `?query`).
        app: String,
        /// The `tcUrl` the client gave, if any.
        tc_url: Option<String>,
    },
    /// The client wants to publish; answer with
    /// [`ServerSession::accept_publish`] or [`ServerSession::reject_publish`].
    Publish {
        /// The message stream.
        stream_id: u32,
        /// The stream key, without the query.
        name: String,
        /// The query after `?` in the key, or of the application.
        query: Option<String>,
    },
    /// The client wants to play; answer with [`ServerSession::accept_play`]
    /// or [`ServerSession::reject_play`].
    Play {
        /// The message stream.
        stream_id: u32,
        /// The stream key, without the query.
        name: String,
        /// The query after `?` in the key, or of the application.
        query: Option<String>,
        /// The requested start: -2 live or recorded, -1 live only, >= 0 a
        /// position (treated as live here).
        start: f64,
    },
    /// A frame from a publishing stream (timestamps in milliseconds,
    /// extended past the 32-bit wrap).
    Media {
        /// The message stream.
        stream_id: u32,
        /// The frame.
        frame: MediaFrame,
    },
    /// The publisher stopped publishing on a stream (`FCUnpublish`,
    /// `closeStream`, `deleteStream`).
    Unpublish {
        /// The message stream.
        stream_id: u32,
    },
    /// The player stopped playing a stream.
    PlayStop {
        /// The message stream.
        stream_id: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamState {
    Idle,
    PublishPending,
    Publishing,
    PlayPending,
    Playing,
}

/// Extends 32-bit millisecond timestamps past their wrap.
#[derive(Clone, Copy, Debug, Default)]
struct Unwrap {
    last: Option<u32>,
    value: i64,
}

impl Unwrap {
    fn next(&mut self, ts: u32) -> i64 {
        self.value = match self.last {
            None => i64::from(ts),
            Some(last) => self.value.saturating_add(i64::from(ts.wrapping_sub(last) as i32)),
        };
        self.last = Some(ts);
        self.value
    }
}

#[derive(Debug)]
struct StreamSlot {
    state: StreamState,
    clocks: [Unwrap; 3],
}

fn err(kind: ProtocolErrorKind, context: impl Into<String>) -> ProtocolError {
    ProtocolError::new(PROTOCOL, kind, context)
}

/// The server side of one RTMP connection. See the [module docs](self).
#[derive(Debug)]
pub struct ServerSession {
    config: SessionConfig,
    handshake: ServerHandshake,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    writer: FlvWriter,
    out: VecDeque<Bytes>,
    queued: usize,
    parts: Vec<Bytes>,
    events: VecDeque<SessionEvent>,
    app: Option<String>,
    app_query: Option<String>,
    streams: HashMap<u32, StreamSlot>,
    next_stream: u32,
    started: Instant,
    /// When input last came from the peer.
    last_received: Instant,
    /// A ping was sent since the last input.
    pinged: bool,
    /// When `connect` came.
    connected_at: Option<Instant>,
    /// A stream was accepted for publishing or playing.
    streaming: bool,
    failed: Option<ProtocolError>,
}

impl ServerSession {
    /// A session for a connection accepted at `now`.
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        let max_buffered = config.limits.max_buffered.min(config.max_buffered_before_publish);
        let decoder = ChunkDecoder::new(DecoderLimits { max_buffered, ..config.limits.clone() });
        Self {
            config,
            handshake: ServerHandshake::new(),
            decoder,
            encoder: ChunkEncoder::new(),
            writer: FlvWriter::new(),
            out: VecDeque::new(),
            queued: 0,
            parts: Vec::new(),
            events: VecDeque::new(),
            app: None,
            app_query: None,
            streams: HashMap::new(),
            next_stream: 1,
            started: now,
            last_received: now,
            pinged: false,
            connected_at: None,
            streaming: false,
            failed: None,
        }
    }

    /// The application from `connect`, once connected.
    pub fn app(&self) -> Option<&str> {
        self.app.as_deref()
    }

    /// Feeds bytes read from the peer. An error means the session is broken
    /// and the connection should be closed; every later call fails too.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) -> Result<(), ProtocolError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.last_received = now;
        self.pinged = false;
        let r = self.input(data);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn input(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        let mut rest = data;
        if !self.handshake.is_done() {
            let mut reply = Vec::new();
            let used = self.handshake.handle(rest, &mut reply)?;
            if !reply.is_empty() {
                self.queue(Bytes::from(reply));
            }
            rest = &rest[used..];
            if !self.handshake.is_done() {
                return Ok(());
            }
        }
        self.decoder.push(rest);
        while let Some(msg) = self.decoder.next_message()? {
            self.on_message(msg)?;
        }
        if let Some(seq) = self.decoder.take_ack() {
            self.send(CSID_CONTROL, 0, 0, &Message::Acknowledgement(seq));
        }
        Ok(())
    }

    /// The next event, if any. Drain after every call that feeds input.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The next piece of output, if any. Pieces are chunk headers and slices
    /// of frame payloads: write them in order (vectored).
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        let b = self.out.pop_front()?;
        self.queued -= b.len();
        Some(b)
    }

    /// Moves all queued output to `out`.
    pub fn drain_transmit(&mut self, out: &mut Vec<Bytes>) {
        out.extend(self.out.drain(..));
        self.queued = 0;
        // A joining player's cached GOP queues thousands of parts once; a
        // queue kept at that size would be most of an idle player's memory.
        if self.out.capacity() > KEEP_PARTS {
            self.out.shrink_to(KEEP_PARTS);
        }
        if self.parts.capacity() > KEEP_PARTS {
            self.parts.shrink_to(KEEP_PARTS);
        }
    }

    /// Bytes queued for sending.
    pub fn queued_bytes(&self) -> usize {
        self.queued
    }

    /// True once an error broke the session (bad input, or output queued
    /// over `max_queued_bytes`): the connection should be closed.
    pub fn is_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.app.is_none() {
            return Some(self.started + self.config.handshake_timeout);
        }
        let idle = self.config.idle_timeout;
        let idle = (!idle.is_zero()).then(|| self.last_received + if self.pinged { idle } else { idle / 2 });
        [idle, self.start_deadline()].into_iter().flatten().min()
    }

    /// When the connection must have started publishing or playing; `None`
    /// once it has, while a publish or play is pending, or when disabled.
    fn start_deadline(&self) -> Option<Instant> {
        let pending = |s: &StreamSlot| matches!(s.state, StreamState::PublishPending | StreamState::PlayPending);
        if self.streaming || self.config.start_timeout.is_zero() || self.streams.values().any(pending) {
            return None;
        }
        self.connected_at.map(|t| t + self.config.start_timeout)
    }

    /// Checks the deadlines at `now`: an error means the session timed out
    /// (no handshake and `connect` in time, no publish or play in time, or
    /// nothing received for the idle timeout). Half way to the idle timeout
    /// a ping is queued.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ProtocolError> {
        if self.app.is_none() {
            if now >= self.started + self.config.handshake_timeout {
                let what = if self.handshake.is_done() { "connect" } else { "handshake" };
                return Err(err(
                    ProtocolErrorKind::Timeout,
                    format!("no {what} within {:?}", self.config.handshake_timeout),
                ));
            }
            return Ok(());
        }
        if self.start_deadline().is_some_and(|t| now >= t) {
            return Err(err(
                ProtocolErrorKind::Timeout,
                format!("no publish or play within {:?} of connect", self.config.start_timeout),
            ));
        }
        let idle = self.config.idle_timeout;
        if idle.is_zero() {
            return Ok(());
        }
        if now >= self.last_received + idle {
            let why = if self.pinged { " (ping unanswered)" } else { "" };
            return Err(err(ProtocolErrorKind::Timeout, format!("nothing received for {idle:?}{why}")));
        }
        if !self.pinged && now >= self.last_received + idle / 2 {
            self.pinged = true;
            let stamp = now.saturating_duration_since(self.started).as_millis() as u32;
            self.send(CSID_CONTROL, 0, 0, &Message::UserControl(UserControl::PingRequest(stamp)));
        }
        Ok(())
    }

    fn queue(&mut self, b: Bytes) {
        self.queued += b.len();
        self.out.push_back(b);
    }

    fn flush_parts(&mut self) {
        // Drained, not taken: the vector's allocation serves every message.
        self.queued += self.parts.iter().map(Bytes::len).sum::<usize>();
        self.out.extend(self.parts.drain(..));
    }

    fn send(&mut self, csid: u32, stream_id: u32, timestamp: u32, msg: &Message) {
        let (type_id, body) = msg.encode();
        self.encoder.write(csid, type_id, stream_id, timestamp, &[body], &mut self.parts);
        self.flush_parts();
    }

    fn send_command(&mut self, stream_id: u32, cmd: Command) {
        let csid = if stream_id == 0 { CSID_COMMAND } else { CSID_DATA };
        self.send(csid, stream_id, 0, &Message::Command(cmd));
    }

    fn on_message(&mut self, msg: RawMessage) -> Result<(), ProtocolError> {
        let stream_id = msg.stream_id;
        let (type_id, ts) = (msg.type_id, msg.timestamp);
        match Message::parse(type_id, msg.payload)? {
            Message::UserControl(UserControl::PingRequest(t)) => {
                self.send(CSID_CONTROL, 0, 0, &Message::UserControl(UserControl::PingResponse(t)));
            }
            Message::Command(cmd) => self.on_command(stream_id, cmd)?,
            Message::Audio(body) => {
                if let Some(ts) = self.media_clock(stream_id, FrameType::Audio, ts) {
                    self.media(stream_id, flv::parse_audio(&body, ts)?);
                }
            }
            Message::Video(body) => {
                if let Some(ts) = self.media_clock(stream_id, FrameType::Video, ts) {
                    self.media(stream_id, flv::parse_video(&body, ts)?);
                }
            }
            Message::Data(body) => {
                if let Some(ts) = self.media_clock(stream_id, FrameType::Data, ts) {
                    self.media(stream_id, flv::parse_script_frame(&body, ts)?);
                }
            }
            Message::Other { type_id: types::AGGREGATE, payload } => self.on_aggregate(stream_id, ts, &payload)?,
            _ => {}
        }
        Ok(())
    }

    /// An aggregate message: FLV tags (header, body, back pointer) whose
    /// timestamps are offset so the first one has the message's timestamp.
    fn on_aggregate(&mut self, stream_id: u32, ts: u32, payload: &Bytes) -> Result<(), ProtocolError> {
        let mut pos = 0;
        let mut first: Option<u32> = None;
        let mut tags = 0;
        while pos < payload.len() {
            tags += 1;
            if tags > MAX_AGGREGATE_TAGS {
                return Err(err(
                    ProtocolErrorKind::TooLarge,
                    format!("aggregate message of more than {MAX_AGGREGATE_TAGS} tags"),
                ));
            }
            let Some(h) = payload.get(pos..pos + FLV_TAG_HEADER_LEN) else {
                return Err(err(ProtocolErrorKind::Truncated, "aggregate message: partial tag header"));
            };
            let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
            let tag_ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
            let start = pos + FLV_TAG_HEADER_LEN;
            if payload.len() < start + size {
                return Err(err(ProtocolErrorKind::Truncated, "aggregate message: partial tag body"));
            }
            let base = *first.get_or_insert(tag_ts);
            let sub_ts = ts.wrapping_add(tag_ts.wrapping_sub(base));
            let body = payload.slice(start..start + size);
            let (ty, parse): (_, BodyParser) = match h[0] {
                types::AUDIO => (FrameType::Audio, flv::parse_audio),
                types::VIDEO => (FrameType::Video, flv::parse_video),
                types::DATA_AMF0 => {
                    message::check_size(&body, message::MAX_DATA_SIZE, "aggregate data")?;
                    (FrameType::Data, flv::parse_script_frame)
                }
                other => {
                    return Err(err(ProtocolErrorKind::InvalidValue, format!("aggregate sub-message type {other}")));
                }
            };
            if let Some(t) = self.media_clock(stream_id, ty, sub_ts) {
                let frame = parse(&body, t)?;
                self.media(stream_id, frame);
            }
            // The back pointer (previous tag size) follows each tag.
            pos = start + size + 4;
        }
        Ok(())
    }

    /// The extended timestamp of a media message on a publishing stream;
    /// `None` for streams that do not publish (the message is ignored).
    fn media_clock(&mut self, stream_id: u32, ty: FrameType, ts: u32) -> Option<i64> {
        let slot = self.streams.get_mut(&stream_id)?;
        matches!(slot.state, StreamState::PublishPending | StreamState::Publishing)
            .then(|| slot.clocks[ty.index()].next(ts))
    }

    fn media(&mut self, stream_id: u32, frame: Option<MediaFrame>) {
        if let Some(frame) = frame {
            self.events.push_back(SessionEvent::Media { stream_id, frame });
        }
    }

    fn on_command(&mut self, stream_id: u32, cmd: Command) -> Result<(), ProtocolError> {
        let tid = cmd.transaction_id;
        match cmd.name.as_str() {
            "connect" => self.on_connect(&cmd)?,
            "createStream" => {
                self.require_connected("createStream")?;
                if self.streams.len() >= self.config.max_streams {
                    self.send_command(0, Command::error(tid, "NetConnection.Call.Failed", "too many streams"));
                } else {
                    let id = self.next_stream;
                    // Skip 0 (the connection) and ids still in use after a wrap.
                    loop {
                        self.next_stream = self.next_stream.wrapping_add(1).max(1);
                        if !self.streams.contains_key(&self.next_stream) {
                            break;
                        }
                    }
                    self.streams.insert(id, StreamSlot { state: StreamState::Idle, clocks: Default::default() });
                    self.send_command(0, Command::result(tid, Amf0Value::Null, vec![Amf0Value::Number(f64::from(id))]));
                }
            }
            "releaseStream" | "FCPublish" | "FCUnpublish" | "getStreamLength" | "FCSubscribe" => {
                if cmd.name == "FCPublish" {
                    let name = cmd.arg_str(0).unwrap_or_default().to_owned();
                    let mut on = Command::on_status("status", codes::PUBLISH_START, &name);
                    on.name = "onFCPublish".into();
                    self.send_command(0, on);
                }
                if cmd.name == "FCUnpublish" {
                    self.stop_publishing(None);
                }
                if tid > 0.0 {
                    self.send_command(0, Command::result(tid, Amf0Value::Null, vec![Amf0Value::Undefined]));
                }
            }
            "publish" => {
                self.require_connected("publish")?;
                let (name, query) = self.name_and_query(&cmd);
                let Some(slot) = self.streams.get_mut(&stream_id) else {
                    return Err(err(
                        ProtocolErrorKind::UnexpectedMessage,
                        format!("publish on unknown stream {stream_id}"),
                    ));
                };
                if slot.state != StreamState::Idle {
                    let why = format!("stream {stream_id} is busy");
                    self.send_command(stream_id, Command::on_status("error", codes::PUBLISH_BAD_NAME, &why));
                    return Ok(());
                }
                if name.is_empty() {
                    self.send_command(
                        stream_id,
                        Command::on_status("error", codes::PUBLISH_BAD_NAME, "no stream name"),
                    );
                    return Ok(());
                }
                slot.state = StreamState::PublishPending;
                slot.clocks = Default::default();
                self.events.push_back(SessionEvent::Publish { stream_id, name, query });
            }
            "play" => {
                self.require_connected("play")?;
                let (name, query) = self.name_and_query(&cmd);
                let start = cmd.arg_f64(1).unwrap_or(-2.0);
                let Some(slot) = self.streams.get_mut(&stream_id) else {
                    return Err(err(
                        ProtocolErrorKind::UnexpectedMessage,
                        format!("play on unknown stream {stream_id}"),
                    ));
                };
                if slot.state != StreamState::Idle {
                    let why = format!("stream {stream_id} is busy");
                    self.send_command(stream_id, Command::on_status("error", codes::PLAY_FAILED, &why));
                    return Ok(());
                }
                slot.state = StreamState::PlayPending;
                self.events.push_back(SessionEvent::Play { stream_id, name, query, start });
            }
            "deleteStream" | "closeStream" => {
                let target = if cmd.name == "deleteStream" {
                    cmd.arg_f64(0).filter(|v| *v >= 0.0 && *v <= f64::from(u32::MAX)).map_or(0, |v| v as u32)
                } else {
                    stream_id
                };
                self.close_stream(target, cmd.name == "deleteStream");
            }
            other => tracing::debug!(command = other, "ignoring RTMP command"),
        }
        Ok(())
    }

    fn require_connected(&self, what: &str) -> Result<(), ProtocolError> {
        if self.app.is_none() {
            return Err(err(ProtocolErrorKind::UnexpectedMessage, format!("{what} before connect")));
        }
        Ok(())
    }

    fn name_and_query(&self, cmd: &Command) -> (String, Option<String>) {
        let (name, query) = command::split_stream_name(cmd.arg_str(0).unwrap_or_default());
        (name.to_owned(), query.map(str::to_owned).or_else(|| self.app_query.clone()))
    }

    fn on_connect(&mut self, cmd: &Command) -> Result<(), ProtocolError> {
        if self.app.is_some() {
            return Err(err(ProtocolErrorKind::UnexpectedMessage, "second connect"));
        }
        let app = cmd
            .object
            .get("app")
            .and_then(Amf0Value::as_str)
            .ok_or_else(|| err(ProtocolErrorKind::InvalidValue, "connect without an app"))?;
        let (app, query) = command::split_stream_name(app.trim_end_matches('/'));
        let app = app.trim_end_matches('/').to_owned();
        let tc_url = cmd.object.get("tcUrl").and_then(Amf0Value::as_str).map(str::to_owned);
        let encoding = cmd.object.get("objectEncoding").and_then(Amf0Value::as_f64).unwrap_or(0.0);
        self.app_query = query.map(str::to_owned);
        self.app = Some(app.clone());
        self.connected_at = Some(self.last_received);
        let window = self.config.window_ack_size;
        self.send(CSID_CONTROL, 0, 0, &Message::WindowAckSize(window));
        self.send(CSID_CONTROL, 0, 0, &Message::SetPeerBandwidth { size: window, limit: 2 });
        self.encoder.set_chunk_size(self.config.chunk_size, &mut self.parts);
        self.flush_parts();
        self.send_command(0, Command::connect_result(cmd.transaction_id, encoding));
        self.events.push_back(SessionEvent::Connect { app, tc_url });
        Ok(())
    }

    fn stop_publishing(&mut self, only: Option<u32>) {
        let ids: Vec<u32> = self
            .streams
            .iter()
            .filter(|(id, s)| {
                only.is_none_or(|o| o == **id)
                    && matches!(s.state, StreamState::Publishing | StreamState::PublishPending)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(s) = self.streams.get_mut(&id) {
                s.state = StreamState::Idle;
            }
            self.events.push_back(SessionEvent::Unpublish { stream_id: id });
            self.send_command(id, Command::on_status("status", codes::UNPUBLISH_SUCCESS, "stream unpublished"));
        }
    }

    fn close_stream(&mut self, stream_id: u32, delete: bool) {
        let Some(state) = self.streams.get(&stream_id).map(|s| s.state) else { return };
        match state {
            StreamState::Publishing | StreamState::PublishPending => self.stop_publishing(Some(stream_id)),
            StreamState::Playing | StreamState::PlayPending => {
                self.events.push_back(SessionEvent::PlayStop { stream_id });
            }
            StreamState::Idle => {}
        }
        if delete {
            self.streams.remove(&stream_id);
        } else if let Some(s) = self.streams.get_mut(&stream_id) {
            s.state = StreamState::Idle;
        }
    }

    fn transition(&mut self, stream_id: u32, from: StreamState, to: StreamState) -> Result<(), ProtocolError> {
        match self.streams.get_mut(&stream_id) {
            Some(s) if s.state == from => {
                s.state = to;
                Ok(())
            }
            _ => Err(err(ProtocolErrorKind::UnexpectedMessage, format!("stream {stream_id} is not in state {from:?}"))),
        }
    }

    /// Accepts a pending publish: sends `NetStream.Publish.Start`.
    pub fn accept_publish(&mut self, stream_id: u32) -> Result<(), ProtocolError> {
        self.transition(stream_id, StreamState::PublishPending, StreamState::Publishing)?;
        self.streaming = true;
        // An accepted publisher may send frames up to the message size.
        self.decoder.set_limits(self.config.limits.clone());
        self.send(CSID_CONTROL, 0, 0, &Message::UserControl(UserControl::StreamBegin(stream_id)));
        self.send_command(stream_id, Command::on_status("status", codes::PUBLISH_START, "Start publishing"));
        Ok(())
    }

    /// Refuses a pending publish with an `onStatus` error `code` (such as
    /// [`codes::PUBLISH_BAD_NAME`]). Later media on that stream is ignored.
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) -> Result<(), ProtocolError> {
        self.transition(stream_id, StreamState::PublishPending, StreamState::Idle)?;
        self.send_command(stream_id, Command::on_status("error", code, description));
        Ok(())
    }

    /// Accepts a pending play: sends StreamBegin, `NetStream.Play.Reset`,
    /// `NetStream.Play.Start` and `|RtmpSampleAccess`. Frames follow with
    /// [`send_media`](Self::send_media).
    pub fn accept_play(&mut self, stream_id: u32) -> Result<(), ProtocolError> {
        self.transition(stream_id, StreamState::PlayPending, StreamState::Playing)?;
        self.streaming = true;
        self.send(CSID_CONTROL, 0, 0, &Message::UserControl(UserControl::StreamBegin(stream_id)));
        self.send_command(stream_id, Command::on_status("status", codes::PLAY_RESET, "Playing and resetting"));
        self.send_command(stream_id, Command::on_status("status", codes::PLAY_START, "Started playing"));
        self.send(CSID_DATA, stream_id, 0, &Message::Data(command::sample_access()));
        Ok(())
    }

    /// Refuses a pending play with an `onStatus` error `code` (such as
    /// [`codes::PLAY_STREAM_NOT_FOUND`]).
    pub fn reject_play(&mut self, stream_id: u32, code: &str, description: &str) -> Result<(), ProtocolError> {
        self.transition(stream_id, StreamState::PlayPending, StreamState::Idle)?;
        self.send_command(stream_id, Command::on_status("error", code, description));
        Ok(())
    }

    /// Queues `frame` for a playing stream as an RTMP message whose body is
    /// the FLV tag body: the codec header plus a slice of the frame's own
    /// payload (no copy). Fails for a stream that is not playing, a codec
    /// FLV cannot carry or a frame over [`MAX_MESSAGE_BODY`] (the frame is
    /// refused, the session goes on), or when more than `max_queued_bytes`
    /// are queued (that breaks the session: [`is_failed`](Self::is_failed)).
    pub fn send_media(&mut self, stream_id: u32, frame: &MediaFrame) -> Result<(), ProtocolError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.streams.get(&stream_id).map(|s| s.state) != Some(StreamState::Playing) {
            return Err(err(ProtocolErrorKind::UnexpectedMessage, format!("stream {stream_id} is not playing")));
        }
        if self.queued > self.config.max_queued_bytes {
            let e = err(
                ProtocolErrorKind::TooLarge,
                format!("more than {} bytes queued for a slow peer", self.config.max_queued_bytes),
            );
            self.failed = Some(e.clone());
            return Err(e);
        }
        let prefix = self.writer.tag_prefix(frame)?;
        let (type_id, csid) = match prefix.tag_type() {
            TagType::Audio => (types::AUDIO, CSID_AUDIO),
            TagType::Video => (types::VIDEO, CSID_VIDEO),
            TagType::Script => (types::DATA_AMF0, CSID_DATA),
        };
        let ts = (frame.dts_in(Timebase::MILLIS) & 0xffff_ffff) as u32;
        let codec_header = prefix.codec_header();
        // RTMP lengths are 24 bits: the encoder would cut a larger body and
        // corrupt the stream.
        let len = codec_header.len() + frame.payload.len();
        if len > MAX_MESSAGE_BODY {
            return Err(err(
                ProtocolErrorKind::TooLarge,
                format!("{} frame of {len} bytes exceeds the RTMP message limit of {MAX_MESSAGE_BODY}", frame.codec),
            ));
        }
        self.encoder.write_with_head(csid, type_id, stream_id, ts, codec_header, &frame.payload, &mut self.parts);
        self.flush_parts();
        Ok(())
    }

    /// Tells a player its stream's publisher left while the stream waits for
    /// another (StreamEOF and `NetStream.Play.UnpublishNotify`); the player
    /// stays subscribed, as with nginx-rtmp.
    pub fn send_publisher_left(&mut self, stream_id: u32) {
        self.send(CSID_CONTROL, 0, 0, &Message::UserControl(UserControl::StreamEof(stream_id)));
        self.send_command(stream_id, Command::on_status("status", codes::PLAY_UNPUBLISH_NOTIFY, "publisher left"));
    }

    /// Tells a player a publisher took its stream over (StreamBegin and
    /// `NetStream.Play.PublishNotify`); frames follow.
    pub fn send_publisher_back(&mut self, stream_id: u32) {
        self.send(CSID_CONTROL, 0, 0, &Message::UserControl(UserControl::StreamBegin(stream_id)));
        self.send_command(stream_id, Command::on_status("status", codes::PLAY_PUBLISH_NOTIFY, "publisher back"));
    }

    /// Tells a player that the stream ended: StreamEOF and
    /// `NetStream.Play.UnpublishNotify`. The stream goes back to idle.
    pub fn send_stream_eof(&mut self, stream_id: u32) {
        self.send(CSID_CONTROL, 0, 0, &Message::UserControl(UserControl::StreamEof(stream_id)));
        self.send_command(stream_id, Command::on_status("status", codes::PLAY_UNPUBLISH_NOTIFY, "stream ended"));
        if let Some(s) = self.streams.get_mut(&stream_id) {
            s.state = StreamState::Idle;
        }
    }
}

/// Feeds `data` to a server session after a valid handshake, accepting
/// every publish and play; never panics. For fuzz targets.
#[doc(hidden)]
pub fn fuzz_server(data: &[u8]) {
    let now = Instant::now();
    let mut s = ServerSession::new(SessionConfig::default(), now);
    let mut hello = vec![3u8];
    hello.resize(1 + 2 * crate::handshake::HANDSHAKE_SIZE, 0);
    if s.handle_input(&hello, now).is_err() {
        return;
    }
    for piece in data.chunks(997) {
        if s.handle_input(piece, now).is_err() {
            return;
        }
        while let Some(ev) = s.poll_event() {
            let _ = match ev {
                SessionEvent::Publish { stream_id, .. } => s.accept_publish(stream_id),
                SessionEvent::Play { stream_id, .. } => s.accept_play(stream_id),
                _ => Ok(()),
            };
        }
        while s.poll_transmit().is_some() {}
    }
    let _ = s.handle_timeout(now + Duration::from_secs(60));
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
