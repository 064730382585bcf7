//! HTTP-FLV: `GET /live/{app}/{key}.flv`.
//!
//! The response is the FLV header, then the stream from the bus: the
//! configuration (metadata, sequence headers) and the cached GOP at once,
//! then live frames, as a chunked streaming body that ends when the stream
//! ends. Tags are written with [`FlvWriter::write_frame_parts`]: each
//! frame leaves as its tag header, the bus's own payload buffer and the
//! trailer, so payloads are never copied; hyper writes the queued pieces
//! with vectored writes.
//!
//! A player stays across a republish (the application's republish grace):
//! the new publisher's timestamps are shifted to go on from the last one
//! sent, so the response stays one increasing FLV timeline.
//!
//! Pacing follows the RTMP player: a task per player takes every frame
//! available, hands them to the response as one batch, then waits for the
//! engine's shared [`BatchClock`](arcly_core::bus::BatchClock) tick
//! (`http.flv_batch_window_ms`). At most two batches wait for the socket; a
//! player that does not take a batch within `http.flv_write_timeout_ms` is
//! closed, and one that falls too far behind is made to skip (or evicted)
//! by the bus, never slowing the publisher. Closed means the connection:
//! the pump closes it through its [`ConnectionCloser`], as hyper would
//! otherwise hold it, waiting to write to a socket nobody reads.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use arcly_core::StreamError;
use arcly_core::bus::{Batch, Pacer, RecvError};
use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
use arcly_core::inbound::PlaySession;
use arcly_core::observe::CloseReason;
use arcly_mux::flv::{FlvHeader, FlvWriter};
use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::http::{AppState, credentials, error, no_stream, stream_id};
use crate::listen::ConnectionCloser;

/// The protocol name given to the engine (authorization, audit).
pub(crate) const PROTOCOL: &str = "http";

/// Most frames handed to the response at a time.
const MAX_BATCH_FRAMES: usize = 1024;

/// `GET /live/{app}/{key}.flv`.
pub(crate) async fn play(
    State(state): State<AppState>,
    Path((app, file)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    closer: Option<Extension<ConnectionCloser>>,
) -> Response {
    let Some(key) = file.strip_suffix(".flv") else {
        return error(StatusCode::NOT_FOUND, "not found");
    };
    let Some(id) = stream_id(&app, key) else {
        return no_stream(&app, key);
    };
    let creds = credentials(query, &headers, peer);
    let http = &state.config.http;
    let played = if http.play_wait_ms == 0 {
        state.engine.play(&id, PROTOCOL, &creds).await
    } else {
        state.engine.play_when_live(&id, PROTOCOL, &creds, Duration::from_millis(http.play_wait_ms)).await
    };
    let play = match played {
        Ok(p) => p,
        Err(e) => return play_error(&e),
    };
    let (video, audio) = state.engine.lookup(&id).map(|h| h.codecs()).unwrap_or((None, None));
    let unknown = video.is_none() && audio.is_none();
    let header =
        FlvWriter::header(FlvHeader { has_audio: unknown || audio.is_some(), has_video: unknown || video.is_some() });
    let pacer = state.engine.batch_clock(Duration::from_millis(http.flv_batch_window_ms)).pacer();
    let (tx, rx) = mpsc::channel(2);
    tracing::info!(stream = %id, %peer, "http-flv play started");
    let closer = closer.map(|Extension(c)| c);
    tokio::spawn(pump(play, tx, pacer, Duration::from_millis(http.flv_write_timeout_ms), peer, closer));
    let body = FlvBody { rx, pending: vec![header].into_iter() };
    ([(header::CONTENT_TYPE, "video/x-flv"), (header::CACHE_CONTROL, "no-cache, no-store")], Body::from_stream(body))
        .into_response()
}

/// The response for a refused play.
pub(crate) fn play_error(e: &StreamError) -> Response {
    match e {
        StreamError::NotFound(_) | StreamError::UnknownApp(_) | StreamError::InvalidName(_) => {
            error(StatusCode::NOT_FOUND, e.to_string())
        }
        StreamError::Unauthorized { .. } => error(StatusCode::FORBIDDEN, e.to_string()),
        StreamError::LimitReached { .. } | StreamError::Closed(_) => {
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        _ => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Moves batches of tags from the bus to the response until the stream
/// ends, the client leaves or stops reading.
async fn pump(
    mut play: PlaySession,
    tx: mpsc::Sender<Vec<Bytes>>,
    mut pacer: Pacer,
    timeout: Duration,
    peer: SocketAddr,
    closer: Option<ConnectionCloser>,
) {
    let id = play.stream_id().clone();
    let mut writer = FlvWriter::new();
    let mut timeline = Timeline::default();
    let mut batch = Batch::new();
    let why = loop {
        let got = tokio::select! {
            got = play.recv_batch(&mut batch, MAX_BATCH_FRAMES) => got,
            () = tx.closed() => break "client left".to_owned(),
        };
        match got {
            // The publisher left or came back (republish grace): keep going.
            Ok(0) => continue,
            Ok(_) => {}
            Err(RecvError::Closed(why)) => break format!("stream ended: {why}"),
            // Evicted by the bus for falling behind: the socket may be as
            // stuck as after a write timeout.
            Err(e) => {
                let why = format!("http-flv player {e}");
                if let Some(closer) = &closer {
                    closer.close(CloseReason::SlowConsumer, why.clone());
                }
                break why;
            }
        }
        let mut parts = Vec::with_capacity(batch.len() * 3);
        for frame in batch.iter() {
            if frame.codec == CodecId::Metadata && frame.payload.is_empty() {
                continue;
            }
            let frame = timeline.map(frame);
            match writer.write_frame_parts(&frame) {
                Ok(tag) => parts.extend(tag.into_iter().filter(|b| !b.is_empty())),
                Err(e) => tracing::debug!(stream = %id, error = %e, "frame not sent over http-flv"),
            }
        }
        batch.clear();
        if !parts.is_empty() {
            match tokio::time::timeout(timeout, tx.send(parts)).await {
                // Handed to the response: the time to first frame is
                // reported once.
                Ok(Ok(())) => play.frames_sent(),
                Ok(Err(_)) => break "client left".to_owned(),
                Err(_) => {
                    let why = format!("http-flv player did not read for {timeout:?}");
                    // hyper would wait forever to write the rest to a
                    // socket nobody reads: close the connection itself.
                    if let Some(closer) = &closer {
                        closer.close(CloseReason::SlowConsumer, why.clone());
                    }
                    break why;
                }
            }
        }
        pacer.tick().await;
    };
    tracing::info!(stream = %id, %peer, reason = %why, "http-flv play ended");
}

/// Keeps one response's timestamps increasing across publishers: when a
/// publisher takes over the stream (the republish grace), its first frame
/// is flagged [`FrameFlags::DISCONTINUITY`] and its timestamps start over;
/// FLV has no way to say so, so its frames are shifted to go on from the
/// last timestamp sent. Shifted frames are new headers around the same
/// payload buffer (no copy).
#[derive(Debug, Default)]
struct Timeline {
    /// Added to every frame's timestamps, in milliseconds.
    offset_ms: i64,
    /// The highest decode timestamp sent, in milliseconds.
    last_ms: Option<i64>,
}

impl Timeline {
    fn map<'a>(&mut self, frame: &'a MediaFrame) -> Cow<'a, MediaFrame> {
        let dts = frame.dts_in(Timebase::MILLIS);
        if frame.flags.contains(FrameFlags::DISCONTINUITY)
            && let Some(last) = self.last_ms
        {
            self.offset_ms = last + 1 - dts;
        }
        let shifted = dts + self.offset_ms;
        self.last_ms = Some(self.last_ms.map_or(shifted, |l| l.max(shifted)));
        if self.offset_ms == 0 {
            return Cow::Borrowed(frame);
        }
        let pts = frame.pts_in(Timebase::MILLIS) + self.offset_ms;
        Cow::Owned(frame.clone().with_timestamps(pts, shifted, Timebase::MILLIS))
    }
}

/// The response body: the header, then each batch's pieces in order.
struct FlvBody {
    rx: mpsc::Receiver<Vec<Bytes>>,
    pending: std::vec::IntoIter<Bytes>,
}

impl futures_core::Stream for FlvBody {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(piece) = self.pending.next() {
                return Poll::Ready(Some(Ok(piece)));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(parts)) => self.pending = parts.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
