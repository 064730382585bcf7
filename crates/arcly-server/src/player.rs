//! The web player: `GET /` lists the live streams (refreshing from
//! `/api/v1/streams`) and plays one with hls.js, LL-HLS or classic HLS,
//! showing the latency (now − the playing frame's `EXT-X-PROGRAM-DATE-TIME`).
//! `/?stream={app}/{key}&ll=1` starts playing at once.
//!
//! hls.js comes from npm (`web/package.json`, pinned by
//! `web/package-lock.json`); the build script installs it and it is
//! embedded in the binary and served from `/assets/hls.min.js`.

use axum::http::header;
use axum::response::{IntoResponse, Response};

/// hls.js, embedded by the build script.
const HLS_JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hls.min.js"));

/// The page.
const INDEX: &str = include_str!("../web/index.html");

/// `GET /`.
pub(crate) async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], INDEX).into_response()
}

/// `GET /assets/hls.min.js`.
pub(crate) async fn hls_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        HLS_JS,
    )
        .into_response()
}
