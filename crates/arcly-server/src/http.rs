//! The HTTP router: routes, shared state, CORS, health and readiness.
//!
//! | Route | What |
//! |---|---|
//! | `GET /live/{app}/{key}.flv` | HTTP-FLV ([`crate::flv`]) |
//! | `GET /live/{app}/{key}/index.m3u8` and the other HLS files | LL-HLS and HLS ([`crate::hls`]) |
//! | `GET /api/v1/streams` | live streams as JSON ([`crate::api`]) |
//! | `GET /api/v1/streams/{app}/{key}` | one stream, 404 if not live |
//! | `GET /api/v1/stats` | connections opened, open, closed and refused, by protocol and reason ([`crate::api`]) |
//! | `GET /metrics` | Prometheus metrics ([`crate::metrics`]; unless `[metrics]` disables it or moves it to a listener of its own) |
//! | `GET /` | the web player ([`crate::player`]) |
//! | `GET /healthz` | the engine's health checks; 503 when unhealthy |
//! | `GET /readyz` | 200 once the listeners are bound, 503 when stopping |

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arcly_core::auth::Credentials;
use arcly_core::engine::Engine;
use arcly_core::health::HealthStatus;
use arcly_core::identity::{AppName, StreamId, StreamKey};
use arcly_core::observe::ConnectionCounters;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::config::Config;

/// What every handler shares.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) engine: Engine,
    pub(crate) config: Arc<Config>,
    pub(crate) hls: Option<arcly_hls::Hls>,
    pub(crate) counters: Arc<ConnectionCounters>,
    ready: Arc<AtomicBool>,
    shutdown: CancellationToken,
}

impl AppState {
    pub(crate) fn new(
        engine: Engine,
        config: Arc<Config>,
        hls: Option<arcly_hls::Hls>,
        counters: Arc<ConnectionCounters>,
        ready: Arc<AtomicBool>,
        shutdown: CancellationToken,
    ) -> Self {
        Self { engine, config, hls, counters, ready, shutdown }
    }
}

/// The whole router.
pub(crate) fn router(state: AppState) -> Router {
    let cors = cors_layer(&state.config.http.cors_origins);
    Router::new()
        .route("/", get(crate::player::index))
        .route("/assets/hls.min.js", get(crate::player::hls_js))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/streams", get(crate::api::list))
        .route("/api/v1/streams/{app}/{key}", get(crate::api::one))
        .route("/api/v1/stats", get(crate::api::stats))
        .route("/live/{app}/{file}", get(crate::flv::play))
        .route("/live/{app}/{key}/{file}", get(crate::hls::file))
        .route("/live/{app}/{key}/ts/{file}", get(crate::hls::ts_file))
        .fallback(not_found)
        .layer(cors)
        .with_state(state)
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::HEAD, Method::OPTIONS])
        .allow_headers(AllowHeaders::mirror_request())
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}

/// A plain-text error response.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let mut body = message.into();
    body.push('\n');
    (status, [(header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// What a player's request presents to the authenticator: the query string
/// (`?token=...`), an `Authorization: Bearer` token and the peer's address.
pub(crate) fn credentials(query: Option<String>, headers: &HeaderMap, peer: SocketAddr) -> Credentials {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(Credentials::bearer_from_header)
        .map(str::to_owned);
    Credentials { query, peer: Some(peer), protocol: crate::flv::PROTOCOL, bearer }
}

/// The stream `app/key`, or `None` for a name that cannot exist.
pub(crate) fn stream_id(app: &str, key: &str) -> Option<StreamId> {
    Some(StreamId::new(AppName::new(app).ok()?, StreamKey::new(key).ok()?))
}

/// The 404 response for a stream that is not live (or cannot exist).
pub(crate) fn no_stream(app: &str, key: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("stream {app}/{key} is not live"))
}

async fn healthz(State(state): State<AppState>) -> Response {
    let (status, reports) = state.engine.health().report();
    let checks: Vec<serde_json::Value> = reports
        .iter()
        .map(|r| serde_json::json!({ "name": r.name, "status": r.status.as_str(), "detail": r.detail }))
        .collect();
    let code = if status == HealthStatus::Unhealthy { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    let body = serde_json::json!({ "status": status.as_str(), "checks": checks });
    (code, [(header::CACHE_CONTROL, "no-cache")], axum::Json(body)).into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.ready.load(Ordering::Acquire) && !state.shutdown.is_cancelled() {
        (StatusCode::OK, [(header::CACHE_CONTROL, "no-cache")], "ready\n").into_response()
    } else {
        error(StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}
