//! Prometheus metrics for arcly-stream.
//!
//! [`PrometheusObserver`] is an [`Observer`] with a registry of its own (no
//! global state: two engines in one process have two observers and two
//! registries). It counts what the engine and the protocols report as it
//! happens (publishes, plays, refusals, connections, time to first frame)
//! and, at scrape time, reads every live stream's figures from the engine
//! it [watches](PrometheusObserver::watch): frames and bytes in and out,
//! skips, evictions, lag, keyframe interval. Nothing is counted per frame
//! for metrics: the bus keeps those figures anyway (per stream, and per
//! subscriber with plain stores to a cell of its own, see
//! [`StreamQos`](arcly_core::bus::StreamQos)), and a scrape reads them.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use arcly_core::auth::Credentials;
//! use arcly_core::engine::{AppSpec, Engine};
//! use arcly_core::observe::{ConnectionCounters, Observers};
//! use arcly_core::testing::SyntheticStream;
//! use arcly_metrics::PrometheusObserver;
//!
//! let metrics = Arc::new(PrometheusObserver::new());
//! // With other observers, through the fan-out.
//! let observers = Observers::new().with(Arc::new(ConnectionCounters::new())).with(metrics.clone());
//! let engine = Engine::builder().application(AppSpec::new("live")).observer(Arc::new(observers)).build();
//! metrics.watch(&engine);
//!
//! let publisher = engine.begin_publish("live/demo".parse().unwrap(), "rtmp", &Credentials::default()).await?;
//! publisher.publish_many(SyntheticStream::new(30, 30).take(10))?;
//!
//! let text = metrics.encode();
//! assert!(text.contains(r#"arcly_publishers{app="live",stream="demo"} 1"#));
//! assert!(text.contains(r#"arcly_stream_frames_in_total{app="live",stream="demo"} 10"#));
//! assert!(text.contains("arcly_publishes_total{protocol=\"rtmp\"} 1"));
//! # Ok::<(), arcly_core::StreamError>(())
//! # }).unwrap();
//! ```
//!
//! # Metrics
//!
//! Counted as events happen (series appear when first counted, or at
//! [`PrometheusObserver::register_protocol`]):
//!
//! | Metric | Type | Labels | What |
//! |---|---|---|---|
//! | `arcly_publishes_total` | counter | `protocol` | publishes started |
//! | `arcly_plays_total` | counter | `protocol` | plays started |
//! | `arcly_requests_refused_total` | counter | `action`, `code` | publishes and plays refused, by [denial code](arcly_core::auth::codes) (`expired`, `bad_signature`, ... and the engine's own `already_publishing`, `unknown_app`, `limit_reached`, `invalid_name`) |
//! | `arcly_connections_opened_total` | counter | `protocol` | connections accepted |
//! | `arcly_connections_open` | gauge | `protocol` | connections open now |
//! | `arcly_connections_closed_total` | counter | `protocol`, `reason` | connections closed, by [`CloseReason`] |
//! | `arcly_connections_refused_total` | counter | `protocol`, `reason` | connections refused at accept, by [`RefuseReason`] |
//! | `arcly_first_frame_seconds` | histogram | `protocol` | time from a play accepted to its first frames written |
//! | `arcly_timestamp_corrections_total` | counter | | publisher timestamp jumps corrected |
//! | `arcly_publishers` | gauge | `app`, `stream` | publishers of the stream (0 or 1) |
//! | `arcly_players` | gauge | `app`, `stream`, `protocol` | players of the stream by protocol |
//!
//! Read from the engine at scrape time, one series per live stream:
//!
//! | Metric | Type | What |
//! |---|---|---|
//! | `arcly_streams` | gauge | live streams (no labels) |
//! | `arcly_stream_frames_in_total` | counter | frames published |
//! | `arcly_stream_bytes_in_total` | counter | payload bytes published |
//! | `arcly_stream_frames_out_total` | counter | frames delivered to subscribers (players and the HLS packager) |
//! | `arcly_stream_bytes_out_total` | counter | payload bytes delivered to subscribers |
//! | `arcly_stream_skips_total` | counter | times a subscriber fell behind and skipped to a keyframe |
//! | `arcly_stream_skipped_frames_total` | counter | frames not delivered because of skips |
//! | `arcly_stream_evictions_total` | counter | subscribers evicted for falling behind too often |
//! | `arcly_stream_subscribers` | gauge | subscribers of the stream's bus |
//! | `arcly_stream_max_lag_frames` | gauge | frames the subscriber furthest behind is behind the newest |
//! | `arcly_stream_max_lag_seconds` | gauge | the same lag in media time |
//! | `arcly_stream_keyframe_interval_seconds` | gauge | time between the last two video keyframes (absent until two were seen) |
//! | `arcly_stream_uptime_seconds` | gauge | time since the stream was first published |
//! | `arcly_stream_buffered_frames` | gauge | frames held in the stream's buffer (GOP cache and lag window) |
//! | `arcly_stream_buffered_bytes` | gauge | payload bytes held in it |
//!
//! Every per-stream series is labelled `app` and `stream` (the stream key).
//!
//! # Cardinality
//!
//! Labels never carry a peer address or free text: `protocol` is a
//! protocol's static name, `reason` one of a fixed set, `code` a denial
//! code (a static snake_case name; anything else is counted as `other`).
//! Per-stream series number a few dozen per *live* stream: a stream's
//! scrape-time series disappear with the stream, and its publisher and
//! player gauges when they drop to zero. Counters of a stream that ended
//! are gone too (Prometheus handles a series that stops); totals across
//! streams are kept by the event counters above.
//!
//! # Cost
//!
//! Each event costs a lock of a small map or a label lookup; there is no
//! call per frame. A scrape takes each live stream's buffer read lock once
//! and reads each subscriber's delivery cell (a few loads per subscriber).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use arcly_core::auth::Denial;
use arcly_core::engine::{Engine, StreamInfo, WeakEngine};
use arcly_core::identity::StreamId;
use arcly_core::observe::{CloseReason, Observer, RefuseReason};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`PrometheusObserver::encode`]: the Prometheus
/// text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The `Content-Type` of [`PrometheusObserver::encode_openmetrics`].
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The time-to-first-frame histogram's buckets, in seconds.
pub const FIRST_FRAME_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    protocol: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    action: &'static str,
    code: &'static str,
}

/// A stream's labels (borrowed: encoded at scrape time, never stored).
fn stream_labels(id: &StreamId) -> [(&'static str, &str); 2] {
    [("app", id.app().as_str()), ("stream", id.key().as_str())]
}

type HistogramFamily = Family<ProtocolLabels, Histogram, fn() -> Histogram>;

fn first_frame_histogram() -> Histogram {
    Histogram::new(FIRST_FRAME_BUCKETS)
}

/// The metrics counted as events happen.
#[derive(Debug)]
struct Events {
    publishes: Family<ProtocolLabels, Counter>,
    plays: Family<ProtocolLabels, Counter>,
    refused: Family<RefusedLabels, Counter>,
    opened: Family<ProtocolLabels, Counter>,
    open: Family<ProtocolLabels, Gauge>,
    closed: Family<ReasonLabels, Counter>,
    refused_connections: Family<ReasonLabels, Counter>,
    first_frame: HistogramFamily,
    timestamp_corrections: Counter,
}

/// A stream's publishers and players, as the hooks report them.
#[derive(Debug, Default)]
struct Presence {
    publishers: i64,
    players: BTreeMap<&'static str, i64>,
}

impl Presence {
    fn is_empty(&self) -> bool {
        self.publishers == 0 && self.players.is_empty()
    }
}

/// What the observer and its collector share.
#[derive(Debug, Default)]
struct Shared {
    engine: RwLock<Option<WeakEngine>>,
    presence: Mutex<BTreeMap<StreamId, Presence>>,
}

impl Shared {
    fn presence(&self) -> MutexGuard<'_, BTreeMap<StreamId, Presence>> {
        self.presence.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `delta` to a stream's publishers or (with a protocol) players,
    /// dropping what reaches zero so ended streams leave no series.
    fn adjust(&self, stream: &StreamId, player: Option<&'static str>, delta: i64) {
        let mut map = self.presence();
        let entry = map.entry(stream.clone()).or_default();
        match player {
            None => entry.publishers = (entry.publishers + delta).max(0),
            Some(protocol) => {
                let n = entry.players.entry(protocol).or_default();
                *n = (*n + delta).max(0);
                if *n == 0 {
                    entry.players.remove(protocol);
                }
            }
        }
        if entry.is_empty() {
            map.remove(stream);
        }
    }

    fn streams(&self) -> Vec<StreamInfo> {
        let engine = self.engine.read().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(WeakEngine::upgrade);
        engine.map(|e| e.streams()).unwrap_or_default()
    }
}

/// The [`Observer`] that keeps Prometheus metrics; see the
/// [crate documentation](crate) for the metrics.
pub struct PrometheusObserver {
    registry: Registry,
    events: Events,
    shared: Arc<Shared>,
}

impl fmt::Debug for PrometheusObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusObserver").field("events", &self.events).finish_non_exhaustive()
    }
}

impl Default for PrometheusObserver {
    fn default() -> Self {
        Self::new()
    }
}

impl PrometheusObserver {
    /// An observer with a new registry (metric names prefixed `arcly_`).
    /// Until it [watches](PrometheusObserver::watch) an engine it has no
    /// per-stream figures beyond its publisher and player gauges.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("arcly");
        let events = Events {
            publishes: Family::default(),
            plays: Family::default(),
            refused: Family::default(),
            opened: Family::default(),
            open: Family::default(),
            closed: Family::default(),
            refused_connections: Family::default(),
            first_frame: Family::new_with_constructor(first_frame_histogram),
            timestamp_corrections: Counter::default(),
        };
        registry.register("publishes", "Publishes started", events.publishes.clone());
        registry.register("plays", "Plays started", events.plays.clone());
        registry.register(
            "requests_refused",
            "Publish and play requests refused, by action and denial code",
            events.refused.clone(),
        );
        registry.register("connections_opened", "Connections accepted", events.opened.clone());
        registry.register("connections_open", "Connections open now", events.open.clone());
        registry.register("connections_closed", "Connections closed, by reason", events.closed.clone());
        registry.register(
            "connections_refused",
            "Connections refused at accept, by the limit that refused them",
            events.refused_connections.clone(),
        );
        registry.register_with_unit(
            "first_frame",
            "Time from a play accepted to its first frames written to the player",
            Unit::Seconds,
            events.first_frame.clone(),
        );
        registry.register(
            "timestamp_corrections",
            "Publisher timestamp jumps corrected on a stream's timeline",
            events.timestamp_corrections.clone(),
        );
        let shared = Arc::new(Shared::default());
        registry.register_collector(Box::new(StreamCollector { shared: shared.clone() }));
        Self { registry, events, shared }
    }

    /// Adds `collector`'s metrics to this observer's registry, read at each
    /// scrape: how a host exports figures of its own services (a recorder,
    /// a relay) next to the engine's, without a second registry.
    pub fn with_collector(mut self, collector: Box<dyn Collector>) -> Self {
        self.registry.register_collector(collector);
        self
    }

    /// Reads `engine`'s live streams at each scrape from now on (replacing
    /// an engine watched before). The observer holds a [`WeakEngine`], so
    /// an engine holding this observer is not kept alive by it.
    pub fn watch(&self, engine: &Engine) {
        *self.shared.engine.write().unwrap_or_else(|e| e.into_inner()) = Some(engine.downgrade());
    }

    /// Lists `protocol`'s connection and play series from now on, at zero
    /// until something happens (so dashboards and alerts see every
    /// listener before its first connection).
    ///
    /// ```
    /// let metrics = arcly_metrics::PrometheusObserver::new();
    /// metrics.register_protocol("rtmp");
    /// let text = metrics.encode();
    /// assert!(text.contains(r#"arcly_connections_closed_total{protocol="rtmp",reason="timeout"} 0"#));
    /// assert!(text.contains(r#"arcly_connections_refused_total{protocol="rtmp",reason="per_ip_limit"} 0"#));
    /// ```
    pub fn register_protocol(&self, protocol: &'static str) {
        let p = ProtocolLabels { protocol };
        let e = &self.events;
        touch(&e.publishes, &p);
        touch(&e.plays, &p);
        touch(&e.opened, &p);
        touch(&e.open, &p);
        touch(&e.first_frame, &p);
        for reason in CloseReason::ALL {
            touch(&e.closed, &ReasonLabels { protocol, reason: reason.as_str() });
        }
        for reason in RefuseReason::ALL {
            touch(&e.refused_connections, &ReasonLabels { protocol, reason: reason.as_str() });
        }
    }

    /// The registry, to encode with other settings or to read in tests.
    /// Register a host's own metrics in a registry of its own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in the Prometheus text format, version 0.0.4 (serve it
    /// with [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and no collector here fails.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// Every metric in the OpenMetrics text format, ending in `# EOF`
    /// (serve it with [`OPENMETRICS_CONTENT_TYPE`]).
    ///
    /// ```
    /// let metrics = arcly_metrics::PrometheusObserver::new();
    /// assert!(metrics.encode_openmetrics().ends_with("# EOF\n"));
    /// ```
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Creates a series at its initial value.
fn touch<S: Clone + std::hash::Hash + Eq, M, C: prometheus_client::metrics::family::MetricConstructor<M>>(
    family: &Family<S, M, C>,
    labels: &S,
) {
    drop(family.get_or_create(labels));
}

/// A denial code as a label: a short snake_case name, or `other` (codes
/// are static names; this keeps a malformed one from breaking the
/// exposition or growing it).
fn code_label(code: &'static str) -> &'static str {
    let ok = !code.is_empty()
        && code.len() <= 40
        && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok { code } else { "other" }
}

impl Observer for PrometheusObserver {
    fn publish_started(&self, stream: &StreamId, protocol: &'static str, _peer: Option<SocketAddr>) {
        self.events.publishes.get_or_create(&ProtocolLabels { protocol }).inc();
        self.shared.adjust(stream, None, 1);
    }

    fn publish_ended(&self, stream: &StreamId, _reason: &str) {
        self.shared.adjust(stream, None, -1);
    }

    fn request_refused(&self, _stream: &StreamId, action: &'static str, denial: &Denial) {
        self.events.refused.get_or_create(&RefusedLabels { action, code: code_label(denial.code) }).inc();
    }

    fn play_started(&self, stream: &StreamId, protocol: &'static str) {
        self.events.plays.get_or_create(&ProtocolLabels { protocol }).inc();
        self.shared.adjust(stream, Some(protocol), 1);
    }

    fn play_ended(&self, stream: &StreamId, protocol: &'static str) {
        self.shared.adjust(stream, Some(protocol), -1);
    }

    fn first_frame(&self, _stream: &StreamId, protocol: &'static str, elapsed: Duration) {
        self.events.first_frame.get_or_create(&ProtocolLabels { protocol }).observe(elapsed.as_secs_f64());
    }

    fn connection_opened(&self, protocol: &'static str, _peer: SocketAddr) {
        let p = ProtocolLabels { protocol };
        self.events.opened.get_or_create(&p).inc();
        self.events.open.get_or_create(&p).inc();
    }

    fn connection_closed(&self, protocol: &'static str, _peer: SocketAddr, reason: CloseReason, _detail: &str) {
        self.events.closed.get_or_create(&ReasonLabels { protocol, reason: reason.as_str() }).inc();
        self.events.open.get_or_create(&ProtocolLabels { protocol }).dec();
    }

    fn connection_refused(&self, protocol: &'static str, _peer: SocketAddr, why: RefuseReason) {
        self.events.refused_connections.get_or_create(&ReasonLabels { protocol, reason: why.as_str() }).inc();
    }

    fn timestamps_corrected(&self, _stream: &StreamId, _jump_ms: i64) {
        self.events.timestamp_corrections.inc();
    }
}

/// Encodes the per-stream metrics at scrape time.
#[derive(Debug)]
struct StreamCollector {
    shared: Arc<Shared>,
}

/// One per-stream metric: its name (after the `arcly_` prefix), help, type
/// and value, `None` for no sample.
type StreamMetric = (&'static str, &'static str, MetricType, fn(&StreamInfo) -> Option<Value>);

#[derive(Clone, Copy, Debug)]
enum Value {
    Int(u64),
    Float(f64),
}

fn secs(ms: i64) -> Value {
    Value::Float(ms.max(0) as f64 / 1000.0)
}

const STREAM_METRICS: &[StreamMetric] = &[
    ("stream_frames_in", "Frames published", MetricType::Counter, |s| Some(Value::Int(s.qos.frames_in))),
    ("stream_bytes_in", "Payload bytes published", MetricType::Counter, |s| Some(Value::Int(s.qos.bytes_in))),
    ("stream_frames_out", "Frames delivered to subscribers (players and the HLS packager)", MetricType::Counter, |s| {
        Some(Value::Int(s.qos.frames_out))
    }),
    ("stream_bytes_out", "Payload bytes delivered to subscribers", MetricType::Counter, |s| {
        Some(Value::Int(s.qos.bytes_out))
    }),
    ("stream_skips", "Times a subscriber fell behind and skipped to a keyframe", MetricType::Counter, |s| {
        Some(Value::Int(s.qos.skips))
    }),
    ("stream_skipped_frames", "Frames not delivered because of skips", MetricType::Counter, |s| {
        Some(Value::Int(s.qos.skipped_frames))
    }),
    ("stream_evictions", "Subscribers evicted for falling behind too often", MetricType::Counter, |s| {
        Some(Value::Int(s.qos.evictions))
    }),
    ("stream_subscribers", "Subscribers of the stream's bus", MetricType::Gauge, |s| {
        Some(Value::Int(s.qos.subscribers as u64))
    }),
    (
        "stream_max_lag_frames",
        "Frames the subscriber furthest behind is behind the newest frame",
        MetricType::Gauge,
        |s| Some(Value::Int(s.qos.max_lag_frames)),
    ),
    (
        "stream_max_lag_seconds",
        "Media time the subscriber furthest behind is behind the newest frame",
        MetricType::Gauge,
        |s| Some(secs(s.qos.max_lag_ms)),
    ),
    ("stream_keyframe_interval_seconds", "Time between the last two video keyframes", MetricType::Gauge, |s| {
        s.qos.keyframe_interval_ms.map(secs)
    }),
    ("stream_uptime_seconds", "Time since the stream was first published", MetricType::Gauge, |s| {
        Some(Value::Float(s.uptime.as_secs_f64()))
    }),
    ("stream_buffered_frames", "Frames held in the stream's buffer", MetricType::Gauge, |s| {
        Some(Value::Int(s.qos.buffered_frames as u64))
    }),
    ("stream_buffered_bytes", "Payload bytes held in the stream's buffer", MetricType::Gauge, |s| {
        Some(Value::Int(s.qos.buffered_bytes as u64))
    }),
];

fn encode_value(
    mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
    ty: MetricType,
    value: Value,
) -> Result<(), fmt::Error> {
    match (ty, value) {
        (MetricType::Counter, Value::Int(v)) => encoder.encode_counter::<NoLabelSet, _, u64>(&v, None),
        (MetricType::Counter, Value::Float(v)) => encoder.encode_counter::<NoLabelSet, _, f64>(&v, None),
        (_, Value::Int(v)) => encoder.encode_gauge(&(i64::try_from(v).unwrap_or(i64::MAX))),
        (_, Value::Float(v)) => encoder.encode_gauge(&v),
    }
}

impl Collector for StreamCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        // Publishers and players, from the hooks.
        {
            let presence = self.shared.presence();
            let mut m = encoder.encode_descriptor(
                "publishers",
                "Publishers of the stream (0 or 1)",
                None,
                MetricType::Gauge,
            )?;
            for (id, p) in presence.iter() {
                m.encode_family(&stream_labels(id))?.encode_gauge(&p.publishers)?;
            }
            let mut m =
                encoder.encode_descriptor("players", "Players of the stream, by protocol", None, MetricType::Gauge)?;
            for (id, p) in presence.iter() {
                let [app, stream] = stream_labels(id);
                for (&protocol, n) in &p.players {
                    m.encode_family(&[app, stream, ("protocol", protocol)])?.encode_gauge(n)?;
                }
            }
        }
        // Everything else, read from the engine now.
        let streams = self.shared.streams();
        let count = i64::try_from(streams.len()).unwrap_or(i64::MAX);
        encoder.encode_descriptor("streams", "Live streams", None, MetricType::Gauge)?.encode_gauge(&count)?;
        for &(name, help, ty, value) in STREAM_METRICS {
            let mut m = encoder.encode_descriptor(name, help, None, ty)?;
            for s in &streams {
                if let Some(v) = value(s) {
                    encode_value(m.encode_family(&stream_labels(&s.id))?, ty, v)?;
                }
            }
        }
        Ok(())
    }
}

/// Checks that a metric is what was expected in an exposition (for tests):
/// the value of the sample `name{labels}` in Prometheus text `text`, if
/// present. `labels` is the label part as written, without braces
/// (`app="live",stream="demo"`), or empty for none.
///
/// ```
/// let text = "# TYPE arcly_streams gauge\narcly_streams 2\nx{a=\"1\"} 3.5\n";
/// assert_eq!(arcly_metrics::sample(text, "arcly_streams", ""), Some(2.0));
/// assert_eq!(arcly_metrics::sample(text, "x", r#"a="1""#), Some(3.5));
/// assert_eq!(arcly_metrics::sample(text, "x", r#"a="2""#), None);
/// ```
pub fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() { name.to_owned() } else { format!("{name}{{{labels}}}") };
    text.lines().find_map(|line| {
        let (key, value) = line.rsplit_once(' ')?;
        (key == series).then(|| value.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests;
