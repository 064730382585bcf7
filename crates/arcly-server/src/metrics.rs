//! `GET /metrics`: the Prometheus metrics of [`arcly_metrics`] (names and
//! labels there), on the HTTP listener or on a listener of its own
//! (`[metrics] listen`).
//!
//! The response is the Prometheus text format (version 0.0.4), or
//! OpenMetrics when the request's `Accept` asks for
//! `application/openmetrics-text`, as Prometheus does.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arcly_core::engine::Engine;
use arcly_core::observe::{ConnectionCounters, Observer, Observers};
use arcly_metrics::PrometheusObserver;
use arcly_record::Recorder;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::ConfigError;

/// `[metrics]`: Prometheus metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `GET /metrics`.
    pub enabled: bool,
    /// Serve `/metrics` on a listener of its own at this address (for
    /// example on an internal interface) instead of on the HTTP listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, listen: None }
    }
}

impl MetricsConfig {
    /// Checks that its own listener, if any, does not take the address of
    /// another (`others`: the RTMP and HTTP listeners).
    pub(crate) fn validate(&self, others: &[SocketAddr]) -> Result<(), ConfigError> {
        match self.listen {
            Some(addr) if addr.port() != 0 && others.contains(&addr) => {
                Err(ConfigError(format!("metrics.listen: {addr} is the address of another listener")))
            }
            _ => Ok(()),
        }
    }
}

/// The `/metrics` route alone, for either listener.
pub(crate) fn router(metrics: Arc<PrometheusObserver>) -> Router {
    Router::new().route("/metrics", get(serve)).with_state(metrics)
}

async fn serve(State(metrics): State<Arc<PrometheusObserver>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (content_type, body) = if openmetrics {
        (arcly_metrics::OPENMETRICS_CONTENT_TYPE, metrics.encode_openmetrics())
    } else {
        (arcly_metrics::CONTENT_TYPE, metrics.encode())
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// A running server's metrics: the observer, and with `[metrics] listen`
/// the listener of its own.
#[derive(Debug)]
pub(crate) struct Exporter {
    pub(crate) observer: Arc<PrometheusObserver>,
    listener: Option<TcpListener>,
    pub(crate) addr: Option<SocketAddr>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Exporter {
    /// The exporter of `config` (`None` when disabled), its listener bound,
    /// with `protocols`' series listed from the start.
    pub(crate) async fn bind(
        config: &MetricsConfig,
        protocols: &[&'static str],
        recorder: RecorderSlot,
    ) -> Result<Option<Self>, (SocketAddr, std::io::Error)> {
        if !config.enabled {
            return Ok(None);
        }
        let observer = Arc::new(PrometheusObserver::new().with_collector(Box::new(RecorderCollector(recorder))));
        protocols.iter().for_each(|p| observer.register_protocol(p));
        let (listener, addr) = match config.listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr).await.map_err(|e| (addr, e))?;
                let local = listener.local_addr().map_err(|e| (addr, e))?;
                (Some(listener), Some(local))
            }
            None => (None, None),
        };
        Ok(Some(Self { observer, listener, addr, task: None }))
    }

    /// The engine's observer: `counters`, and the metrics when enabled.
    pub(crate) fn engine_observer(this: Option<&Self>, counters: Arc<ConnectionCounters>) -> Arc<dyn Observer> {
        match this {
            Some(m) => Arc::new(Observers::new().with(counters).with(m.observer.clone())),
            None => counters,
        }
    }

    /// Reads `engine`'s streams at each scrape; serves `/metrics` on its
    /// own listener, or returns `router` with the route added.
    pub(crate) fn start(&mut self, engine: &Engine, router: Router, token: &CancellationToken) -> Router {
        self.observer.watch(engine);
        let route = self::router(self.observer.clone());
        match self.listener.take() {
            Some(listener) => {
                let token = token.clone();
                let serve = axum::serve(listener, route).with_graceful_shutdown(token.cancelled_owned());
                self.task = Some(tokio::spawn(async move { serve.await }));
                router
            }
            None => router.merge(route),
        }
    }

    /// Waits up to `drain` for its own listener to stop (after shutdown).
    pub(crate) async fn wait(self, drain: Duration) {
        if let Some(mut task) = self.task
            && tokio::time::timeout(drain, &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

/// The recorder, once the server has made it (after the engine, which
/// needs the metrics first).
pub(crate) type RecorderSlot = Arc<OnceLock<Recorder>>;

/// The recorder's counters at scrape time (`arcly_recorder_*`): a storage
/// error shows as `write_errors` as well as in the log and `/healthz`.
#[derive(Debug)]
struct RecorderCollector(RecorderSlot);

impl Collector for RecorderCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        let Some(recorder) = self.0.get() else { return Ok(()) };
        let s = recorder.stats();
        let gauge = i64::try_from(s.recordings_active).unwrap_or(i64::MAX);
        encoder
            .encode_descriptor("recorder_recordings_active", "Recordings running now", None, MetricType::Gauge)?
            .encode_gauge(&gauge)?;
        let counters: [(&str, &str, u64); 7] = [
            ("recorder_recordings_started", "Recordings started (incl. restarts after an error)", s.recordings_started),
            ("recorder_files_opened", "Recording files opened", s.files_opened),
            ("recorder_files_closed", "Recording files closed", s.files_closed),
            ("recorder_bytes_written", "Bytes written to recordings", s.bytes_written),
            ("recorder_write_errors", "Storage errors that stopped a recording", s.write_errors),
            ("recorder_gaps", "Gaps: the recorder fell behind its stream", s.gaps),
            ("recorder_frames_refused", "Frames a recording could not take", s.frames_refused),
        ];
        for (name, help, value) in counters {
            encoder
                .encode_descriptor(name, help, None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        Ok(())
    }
}
