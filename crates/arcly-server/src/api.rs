//! The stream API: `GET /api/v1/streams`, `GET /api/v1/streams/{app}/{key}`
//! and `GET /api/v1/stats`.
//!
//! ```json
//! {"streams": [{
//!   "app": "live", "key": "demo", "publishing": true,
//!   "publisher": {"protocol": "rtmp", "address": "192.0.2.7:50122"},
//!   "uptime_secs": 12.5,
//!   "codecs": {"video": "h264", "audio": "aac"},
//!   "resolution": {"width": 1280, "height": 720},
//!   "audio": {"sample_rate": 48000, "channels": 2},
//!   "fps": 30.0, "bitrate_bps": 2500000, "keyframe_interval_ms": 2000,
//!   "subscribers": 3, "frames_in": 1234, "bytes_in": 3456789,
//!   "skips": 0, "evictions": 0, "timestamp_corrections": 0
//! }]}
//! ```
//!
//! `resolution` and `audio` come from the stream's configuration frames
//! (H.264/H.265 SPS, AAC AudioSpecificConfig) and are `null` until those
//! were seen or for other codecs. `subscribers` counts every subscription
//! to the stream's bus: RTMP and HTTP-FLV players and the HLS packager.
//! `timestamp_corrections` counts the publisher's timestamp jumps the
//! kernel repaired (`arcly_core::timestamps`).
//!
//! `GET /api/v1/stats` counts connections since the start, per listener
//! (`rtmp`, `http`): accepted (`opened`), open now, closed by reason and
//! refused at accept by limit. Every reason is listed, 0 if it never
//! happened.
//!
//! ```json
//! {"connections": {"rtmp": {
//!   "opened": 12, "open": 3,
//!   "closed": {"peer_closed": 5, "protocol_error": 1, "timeout": 2, "slow_consumer": 1,
//!              "refused": 0, "shutdown": 0, "io": 0},
//!   "refused": {"global_limit": 0, "per_ip_limit": 40}
//! }, "http": {"opened": 7, "open": 1, "closed": {"...": 0}, "refused": {"...": 0}}}}
//! ```
//!
//! `closed`: `peer_closed` (the peer left), `protocol_error` (invalid or
//! oversized input), `timeout` (handshake, idle, start or header read
//! deadline), `slow_consumer` (a player that did not read: write timeout,
//! queue limit, evicted by the bus), `refused` (publish or play refused),
//! `shutdown`, `io` (socket errors).

use arcly_core::engine::{Engine, StreamInfo};
use arcly_core::frame::{CodecId, FrameType};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::http::{AppState, no_stream, stream_id};

#[derive(Serialize)]
struct StreamList {
    streams: Vec<StreamView>,
}

#[derive(Serialize)]
struct StreamView {
    app: String,
    key: String,
    publishing: bool,
    publisher: Publisher,
    uptime_secs: f64,
    codecs: Codecs,
    resolution: Option<Resolution>,
    audio: Option<AudioInfo>,
    fps: f64,
    bitrate_bps: u64,
    keyframe_interval_ms: Option<i64>,
    subscribers: usize,
    frames_in: u64,
    bytes_in: u64,
    skips: u64,
    evictions: u64,
    timestamp_corrections: u64,
}

#[derive(Serialize)]
struct Publisher {
    protocol: &'static str,
    address: Option<String>,
}

#[derive(Serialize)]
struct Codecs {
    video: Option<&'static str>,
    audio: Option<&'static str>,
}

#[derive(Serialize)]
struct Resolution {
    width: u32,
    height: u32,
}

#[derive(Serialize)]
struct AudioInfo {
    sample_rate: u32,
    channels: u8,
}

fn view(engine: &Engine, info: &StreamInfo) -> StreamView {
    let handle = engine.lookup(&info.id);
    let config = |ty| handle.as_ref().and_then(|h| h.config_frame(ty));
    let resolution = config(FrameType::Video).and_then(|f| match f.codec {
        CodecId::H264 => arcly_codec::h264::AvcConfig::parse(&f.payload)
            .and_then(|c| c.first_sps())
            .ok()
            .map(|s| Resolution { width: s.width, height: s.height }),
        CodecId::H265 => arcly_codec::h265::HevcConfig::parse(&f.payload)
            .and_then(|c| c.first_sps())
            .ok()
            .map(|s| Resolution { width: s.width, height: s.height }),
        _ => None,
    });
    let audio = config(FrameType::Audio).and_then(|f| match f.codec {
        CodecId::Aac => arcly_codec::aac::AudioSpecificConfig::parse(&f.payload)
            .ok()
            .map(|a| AudioInfo { sample_rate: a.sample_rate, channels: a.channel_config }),
        _ => None,
    });
    let q = &info.qos;
    StreamView {
        app: info.id.app().as_str().to_owned(),
        key: info.id.key().as_str().to_owned(),
        publishing: info.publishing,
        publisher: Publisher { protocol: info.protocol, address: info.peer.map(|p| p.to_string()) },
        uptime_secs: (info.uptime.as_secs_f64() * 10.0).round() / 10.0,
        codecs: Codecs { video: info.codecs.0.map(CodecId::name), audio: info.codecs.1.map(CodecId::name) },
        resolution,
        audio,
        fps: (q.video_fps * 100.0).round() / 100.0,
        bitrate_bps: q.bitrate_bps,
        keyframe_interval_ms: q.keyframe_interval_ms,
        subscribers: q.subscribers,
        frames_in: q.frames_in,
        bytes_in: q.bytes_in,
        skips: q.skips,
        evictions: q.evictions,
        timestamp_corrections: q.timestamp_corrections,
    }
}

/// `GET /api/v1/streams`.
pub(crate) async fn list(State(state): State<AppState>) -> Response {
    let streams = state.engine.streams().iter().map(|s| view(&state.engine, s)).collect();
    ([(header::CACHE_CONTROL, "no-cache")], Json(StreamList { streams })).into_response()
}

/// `GET /api/v1/streams/{app}/{key}`.
pub(crate) async fn one(State(state): State<AppState>, Path((app, key)): Path<(String, String)>) -> Response {
    let Some(id) = stream_id(&app, &key) else {
        return no_stream(&app, &key);
    };
    match state.engine.streams().iter().find(|s| s.id == id) {
        Some(s) => ([(header::CACHE_CONTROL, "no-cache")], Json(view(&state.engine, s))).into_response(),
        None => no_stream(&app, &key),
    }
}

/// `GET /api/v1/stats`.
pub(crate) async fn stats(State(state): State<AppState>) -> Response {
    let snapshot = state.counters.snapshot();
    let connections: serde_json::Map<String, serde_json::Value> = snapshot
        .protocols
        .iter()
        .map(|(name, c)| {
            let value = serde_json::json!({
                "opened": c.opened,
                "open": c.open,
                "closed": c.closed,
                "refused": c.refused,
            });
            ((*name).to_owned(), value)
        })
        .collect();
    ([(header::CACHE_CONTROL, "no-cache")], Json(serde_json::json!({ "connections": connections }))).into_response()
}
