//! [`Server`]: the engine, the RTMP listener and the HTTP listener, started
//! together and stopped together.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arcly_core::audit::{AuditSink, FileAuditSink};
use arcly_core::auth::{AllowAll, StreamAuthenticator};
use arcly_core::engine::Engine;
use arcly_core::observe::ConnectionCounters;
use arcly_record::Recorder;
use arcly_rtmp::RtmpServer;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConfigError};
use crate::http::{self, AppState};
use crate::listen::{self, HttpLimits};
use crate::metrics::Exporter;

/// How long [`Server::wait`] lets HTTP connections finish after shutdown
/// before dropping them.
const HTTP_DRAIN: Duration = Duration::from_secs(5);
/// How long [`Server::wait`] lets recordings finish after shutdown.
const RECORD_DRAIN: Duration = Duration::from_secs(12);

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// A listener could not be bound.
    Bind {
        /// `"rtmp"`, `"http"` or `"metrics"`.
        listener: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The error.
        error: std::io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Config(e) => write!(f, "invalid configuration: {e}"),
            Self::Bind { listener, addr, error } => write!(f, "cannot listen for {listener} on {addr}: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running server. Dropping it does not stop it; call
/// [`Server::shutdown`], then [`Server::wait`].
#[derive(Debug)]
pub struct Server {
    engine: Engine,
    counters: Arc<ConnectionCounters>,
    rtmp_addr: SocketAddr,
    http_addr: SocketAddr,
    token: CancellationToken,
    engine_task: JoinHandle<arcly_core::Result<()>>,
    hls_task: Option<JoinHandle<()>>,
    metrics: Option<Exporter>,
    recorder: Option<Recorder>,
    record_task: Option<JoinHandle<()>>,
    http_task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Validates `config`, binds both listeners, and starts the engine and
    /// the HTTP server, with the authenticator of `[auth]` (its secrets
    /// read from the environment now). Returns once both listeners accept
    /// connections (`/readyz` answers 200 from then on).
    pub async fn start(config: Config) -> Result<Self, StartError> {
        config.validate().map_err(StartError::Config)?;
        let auth = &config.auth;
        let authenticator = auth.authenticator(|k| std::env::var(k).ok()).map_err(StartError::Config)?;
        for id in auth.inline_secrets() {
            tracing::warn!(
                key = id,
                "auth.keys: a secret is written in the configuration; use secret_env outside tests"
            );
        }
        if authenticator.is_some() {
            tracing::info!(mode = auth.mode.as_str(), publish = auth.publish, play = auth.play, "authorization on");
        }
        Self::start_with(config, authenticator.unwrap_or_else(|| Arc::new(AllowAll))).await
    }

    /// Like [`Server::start`], with `authenticator` (instead of `[auth]`)
    /// deciding who may publish (RTMP: the stream name's query) and play
    /// (RTMP; HTTP-FLV and HLS: the URL's query string as
    /// [`Credentials::query`](arcly_core::auth::Credentials::query) and an
    /// `Authorization: Bearer` header as
    /// [`Credentials::bearer`](arcly_core::auth::Credentials::bearer)).
    pub async fn start_with(config: Config, authenticator: Arc<dyn StreamAuthenticator>) -> Result<Self, StartError> {
        config.validate().map_err(StartError::Config)?;
        let audit: Option<Arc<dyn AuditSink>> = match &config.audit.file {
            Some(path) => Some(Arc::new(FileAuditSink::open(path).map_err(|e| {
                StartError::Config(ConfigError(format!("audit.file: cannot open {}: {e}", path.display())))
            })?)),
            None => None,
        };
        let config = Arc::new(config);
        let rtmp_config = config.rtmp_server();
        let (rtmp, rtmp_addr) = RtmpServer::bind(rtmp_config).await.map_err(|error| StartError::Bind {
            listener: "rtmp",
            addr: config.rtmp.listen,
            error,
        })?;
        let listener = listen::bind(config.http.listen).map_err(|error| StartError::Bind {
            listener: "http",
            addr: config.http.listen,
            error,
        })?;
        let http_addr = listener.local_addr().map_err(|error| StartError::Bind {
            listener: "http",
            addr: config.http.listen,
            error,
        })?;
        let protocols = [arcly_rtmp::PROTOCOL, listen::PROTOCOL];
        let recorder_slot = crate::metrics::RecorderSlot::default();
        let mut metrics = Exporter::bind(&config.metrics, &protocols, recorder_slot.clone())
            .await
            .map_err(|(addr, error)| StartError::Bind { listener: "metrics", addr, error })?;

        // Every listener reports its connections to the counters
        // (`GET /api/v1/stats`).
        let counters = Arc::new(ConnectionCounters::new());
        counters.register(arcly_rtmp::PROTOCOL);
        counters.register(listen::PROTOCOL);
        let mut builder = Engine::builder()
            .max_publishers(config.max_publishers)
            .observer(Exporter::engine_observer(metrics.as_ref(), counters.clone()))
            .authenticator(authenticator)
            .idle_timeout((config.idle_timeout_secs > 0).then(|| Duration::from_secs(config.idle_timeout_secs)))
            .inbound(Arc::new(rtmp));
        for app in &config.apps {
            builder = builder.application(app.to_spec());
        }
        if let Some(sink) = audit {
            builder = builder.audit_sink(sink, config.audit.queue);
        }
        let engine = builder.try_build().map_err(|e| StartError::Config(ConfigError(format!("app: {e}"))))?;
        let recorder = config.record.recorder(&engine).map_err(StartError::Config)?;
        if let Some(r) = &recorder {
            let _ = recorder_slot.set(r.clone());
        }

        let token = CancellationToken::new();
        let ready = Arc::new(AtomicBool::new(false));
        let hls = config.hls.enabled.then(|| arcly_hls::Hls::new(engine.clone(), config.hls_config()));
        let state =
            AppState::new(engine.clone(), config.clone(), hls.clone(), counters.clone(), ready.clone(), token.clone());
        // Started before the engine runs, so it sees every stream from its
        // first frame.
        let hls_task = hls.map(|hls| {
            let token = token.clone();
            tokio::spawn(async move { hls.run(token).await })
        });
        // Likewise: recordings start at a stream's first keyframe.
        let record_task = recorder.clone().map(|recorder| {
            let token = token.clone();
            tokio::spawn(async move { recorder.run(token).await })
        });

        let engine_task = {
            let (engine, token) = (engine.clone(), token.clone());
            tokio::spawn(async move { engine.run(token).await })
        };
        let http_task = {
            let mut router = http::router(state);
            if let Some(m) = metrics.as_mut() {
                router = m.start(&engine, router, &token);
            }
            let limits = HttpLimits {
                max_connections: config.http.max_connections,
                max_connections_per_ip: config.http.max_connections_per_ip,
                header_read_timeout: Duration::from_millis(config.http.header_read_timeout_ms),
            };
            tokio::spawn(listen::serve(listener, router, limits, engine.clone(), token.clone()))
        };
        ready.store(true, Ordering::Release);
        tracing::info!(rtmp = %rtmp_addr, http = %http_addr, apps = ?config.apps.iter().map(|a| &a.name).collect::<Vec<_>>(), "arcly started");
        Ok(Self {
            engine,
            counters,
            rtmp_addr,
            http_addr,
            token,
            engine_task,
            hls_task,
            metrics,
            recorder,
            record_task,
            http_task,
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The connection counters of both listeners (what `GET /api/v1/stats`
    /// shows).
    pub fn connection_counters(&self) -> &ConnectionCounters {
        &self.counters
    }

    /// The recorder, when `[record]` is enabled (its counters, for metrics).
    pub fn recorder(&self) -> Option<&Recorder> {
        self.recorder.as_ref()
    }

    /// The Prometheus metrics, unless `[metrics] enabled = false`.
    pub fn metrics(&self) -> Option<&arcly_metrics::PrometheusObserver> {
        self.metrics.as_ref().map(|m| &*m.observer)
    }

    /// The address `/metrics` has a listener of its own on (`[metrics]
    /// listen`), if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|m| m.addr)
    }

    /// The address the RTMP listener is bound to.
    pub fn rtmp_addr(&self) -> SocketAddr {
        self.rtmp_addr
    }

    /// The address the HTTP listener is bound to.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Starts shutting down: the engine closes every stream (HTTP-FLV
    /// responses end), the listeners stop accepting.
    pub fn shutdown(&self) {
        self.token.cancel();
        self.engine.shutdown();
    }

    /// Cancelled when the server shuts down, for any reason (including the
    /// engine stopping after a protocol failed).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// True once the engine or the HTTP server stopped on its own.
    pub fn is_finished(&self) -> bool {
        self.engine_task.is_finished() || self.http_task.is_finished()
    }

    /// Waits for the engine and the HTTP server to stop (after
    /// [`Server::shutdown`], or after either fails), giving HTTP connections
    /// a few seconds to finish. Returns the first error.
    pub async fn wait(self) -> Result<(), String> {
        let Self { engine, token, engine_task, hls_task, metrics, record_task, mut http_task, .. } = self;
        let engine_result = match engine_task.await {
            Ok(r) => r.map_err(|e| format!("engine stopped: {e}")),
            Err(e) => Err(format!("engine task failed: {e}")),
        };
        // The engine may have stopped on its own (a protocol failed).
        token.cancel();
        engine.shutdown();
        let http_result = match tokio::time::timeout(HTTP_DRAIN, &mut http_task).await {
            Ok(Ok(r)) => r.map_err(|e| format!("http server failed: {e}")),
            Ok(Err(e)) => Err(format!("http task failed: {e}")),
            Err(_) => {
                tracing::warn!(after = ?HTTP_DRAIN, "http connections did not finish; dropping them");
                http_task.abort();
                Ok(())
            }
        };
        if let Some(mut task) = hls_task
            && tokio::time::timeout(HTTP_DRAIN, &mut task).await.is_err()
        {
            task.abort();
        }
        if let Some(m) = metrics {
            m.wait(HTTP_DRAIN).await;
        }
        // Recordings close their open file and end their playlist.
        if let Some(mut task) = record_task
            && tokio::time::timeout(RECORD_DRAIN, &mut task).await.is_err()
        {
            tracing::warn!(after = ?RECORD_DRAIN, "recordings did not finish; dropping them");
            task.abort();
        }
        engine_result.and(http_result)
    }
}
