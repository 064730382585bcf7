//! [`Recorder`]: follows the engine and records every matching stream.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use arcly_core::bus::{Batch, RecvError, StreamEvent, StreamHandle, Subscriber};
use arcly_core::engine::Engine;
use arcly_core::frame::{FrameType, MediaFrame};
use arcly_core::health::{HealthReport, HealthStatus};
use arcly_core::identity::StreamId;
use arcly_core::traits::{MediaSink, StorageBackend};
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::RecordConfig;
use crate::sink::RecordingSink;
use crate::stats::{Counters, RecorderStats};

/// Frames taken from the bus per wake-up.
const BATCH_MAX: usize = 256;
/// How long [`Recorder::run`] waits for recordings to end after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The health check's name.
pub const HEALTH_CHECK: &str = "recorder";

/// One stream's state as the health check sees it.
#[derive(Debug)]
struct StreamState {
    /// The stream being recorded. A stream ends (is closed) before another
    /// is published under its name.
    current: StreamHandle,
    /// Why its recording is stopped, while it is.
    failure: Option<String>,
    /// Published again while its task was still finishing the previous
    /// stream's recording: the new stream, subscribed at once so that no
    /// frame is missed, which the task records next.
    next: Option<(StreamHandle, Subscriber)>,
}

struct Inner {
    engine: Engine,
    storage: Arc<dyn StorageBackend>,
    config: RecordConfig,
    counters: Arc<Counters>,
    /// Streams being followed.
    streams: Mutex<HashMap<StreamId, StreamState>>,
    last_error: Mutex<Option<String>>,
}

impl Inner {
    fn streams(&self) -> MutexGuard<'_, HashMap<StreamId, StreamState>> {
        self.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_failure(&self, id: &StreamId, failure: Option<String>) {
        if let Some(reason) = &failure {
            *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{id}: {reason}"));
        }
        if let Some(state) = self.streams().get_mut(id) {
            state.failure = failure;
        }
    }

    fn health(&self) -> HealthReport {
        let stats = self.counters.snapshot();
        let failing: Vec<String> = {
            let streams = self.streams();
            let mut v: Vec<String> =
                streams.iter().filter_map(|(id, s)| s.failure.as_ref().map(|f| format!("{id}: {f}"))).collect();
            v.sort();
            v
        };
        if failing.is_empty() {
            let mut detail = format!(
                "{} recording, {} files written, {} write errors, {} gaps",
                stats.recordings_active, stats.files_closed, stats.write_errors, stats.gaps
            );
            if let Some(last) = self.last_error.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                detail.push_str(&format!("; last error: {last}"));
            }
            HealthReport::new(HEALTH_CHECK, HealthStatus::Healthy, detail)
        } else {
            let detail = format!("recording stopped by a storage error: {}", failing.join("; "));
            HealthReport::new(HEALTH_CHECK, HealthStatus::Degraded, detail)
        }
    }
}

/// Records the engine's streams: every stream published that the
/// configuration [selects](RecordConfig::matches) gets a [`RecordingSink`]
/// fed by a bus subscriber of its own. Cheap to clone (shared state).
///
/// # A subscriber like any player
/// The recorder reads the bus like a player, so a slow disk never slows the
/// publisher or the players: a recorder that falls more than the lag limit
/// behind skips to a keyframe (or is evicted and subscribes again), like a
/// slow viewer. Each such loss is a **gap**: logged, counted
/// ([`RecorderStats::gaps`]), and the recording goes on in a new file
/// marked as a discontinuity.
///
/// # Storage errors
/// A storage error (full disk, permissions, ...) stops that stream's
/// recording: an `error` log line names the stream, the path and the error;
/// [`RecorderStats::write_errors`] counts it; the `recorder` health check
/// turns degraded naming the stream and the reason. The live stream and
/// its players go on. After [`retry_backoff`](RecordConfig::retry_backoff)
/// (doubled after each failure in a row, at most 16 times), a new
/// recording starts at the next keyframe; once it writes, the health check
/// is healthy again.
///
/// ```no_run
/// # async fn host(engine: arcly_core::engine::Engine) -> std::io::Result<()> {
/// use std::sync::Arc;
/// use arcly_record::{FsStorage, RecordConfig, Recorder};
/// let storage = Arc::new(FsStorage::new("recordings")?);
/// let recorder = Recorder::new(engine.clone(), storage, RecordConfig::default());
/// let shutdown = tokio_util::sync::CancellationToken::new();
/// tokio::spawn({
///     let recorder = recorder.clone();
///     async move { recorder.run(shutdown).await }
/// });
/// // Later: counters for a metrics exporter.
/// let stats = recorder.stats();
/// # let _ = stats;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("config", &self.inner.config)
            .field("streams", &self.inner.streams().len())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder of `engine`'s streams into `storage`; `config` is
    /// [sanitized](RecordConfig::sanitized). Registers the `recorder`
    /// health check with the engine. Nothing is recorded until
    /// [`run`](Self::run).
    pub fn new(engine: Engine, storage: Arc<dyn StorageBackend>, config: RecordConfig) -> Self {
        let inner = Arc::new(Inner {
            engine,
            storage,
            config: config.sanitized(),
            counters: Arc::default(),
            streams: Mutex::new(HashMap::new()),
            last_error: Mutex::new(None),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        inner.engine.health().register(move || match weak.upgrade() {
            Some(inner) => inner.health(),
            None => HealthReport::new(HEALTH_CHECK, HealthStatus::Healthy, "recorder stopped"),
        });
        Self { inner }
    }

    /// The settings in use.
    pub fn config(&self) -> &RecordConfig {
        &self.inner.config
    }

    /// The counters, for a metrics exporter.
    pub fn stats(&self) -> RecorderStats {
        self.inner.counters.snapshot()
    }

    /// What the `recorder` health check reports now: degraded while a
    /// storage error keeps a stream from being recorded.
    pub fn health(&self) -> HealthReport {
        self.inner.health()
    }

    /// The streams whose recording a storage error stopped, and why.
    pub fn failures(&self) -> Vec<(StreamId, String)> {
        let mut v: Vec<(StreamId, String)> =
            self.inner.streams().iter().filter_map(|(id, s)| s.failure.clone().map(|f| (id.clone(), f))).collect();
        v.sort();
        v
    }

    /// Follows the engine until `shutdown` is cancelled: records every
    /// selected stream live now or published later, each in a task of its
    /// own. On shutdown every recording is finished (its open file closed,
    /// its playlist ended), waiting up to 10 s for them.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut events = self.inner.engine.events().subscribe();
        let mut tasks = JoinSet::new();
        for info in self.inner.engine.streams() {
            self.follow(info.id, &mut tasks, &shutdown);
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = events.recv() => match event {
                    Ok(StreamEvent::Published { stream, .. }) => self.follow(stream, &mut tasks, &shutdown),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for info in self.inner.engine.streams() {
                            self.follow(info.id, &mut tasks, &shutdown);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "recordings did not finish in time; stopping them");
            tasks.abort_all();
        }
    }

    /// Starts recording `id` unless it is not selected or already recorded.
    fn follow(&self, id: StreamId, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        if !self.inner.config.matches(&id) {
            return;
        }
        let handle = {
            let mut streams = self.inner.streams();
            if let Some(state) = streams.get_mut(&id) {
                // Its task still runs. If the stream it records ended, this
                // is a new one: queue it (looked up now, after that check,
                // so it is not the ended one).
                if state.current.is_closed()
                    && state.next.is_none()
                    && let Some(handle) = self.inner.engine.lookup(&id)
                {
                    let subscriber = handle.subscribe();
                    state.next = Some((handle, subscriber));
                }
                return;
            }
            let Some(handle) = self.inner.engine.lookup(&id) else { return };
            streams.insert(id.clone(), StreamState { current: handle.clone(), failure: None, next: None });
            handle
        };
        let task = StreamTask::new(self.inner.clone(), id, &handle);
        tasks.spawn(task.run(shutdown.clone()));
    }
}

/// One stream's recording loop.
struct StreamTask {
    inner: Arc<Inner>,
    id: StreamId,
    subscriber: Subscriber,
    sink: Option<RecordingSink>,
    /// Storage failures in a row, and when to try again.
    failures: u32,
    retry_at: Option<Instant>,
    /// The latest configuration frames received (video, audio), for a
    /// sink started mid-stream.
    configs: [Option<MediaFrame>; 2],
}

impl StreamTask {
    fn new(inner: Arc<Inner>, id: StreamId, handle: &StreamHandle) -> Self {
        let subscriber = handle.subscribe();
        let mut task = Self { inner, id, subscriber, sink: None, failures: 0, retry_at: None, configs: [None, None] };
        task.sink = Some(task.new_sink());
        task
    }

    fn new_sink(&self) -> RecordingSink {
        RecordingSink::with_counters(
            self.inner.storage.clone(),
            self.id.clone(),
            self.inner.config.clone(),
            self.inner.counters.clone(),
        )
    }

    /// Records the stream until it ends, then any stream published again
    /// under its name meanwhile (a new recording each).
    async fn run(mut self, shutdown: CancellationToken) {
        loop {
            self.record(&shutdown).await;
            if let Some(mut sink) = self.sink.take()
                && let Err(e) = sink.finish().await
            {
                self.failed(&mut sink, &e).await;
            }
            if shutdown.is_cancelled() {
                self.inner.streams().remove(&self.id);
                return;
            }
            // Deciding and leaving under the lock: a `Published` seen by
            // `follow` from now on starts a task of its own.
            let next = {
                let mut streams = self.inner.streams();
                let state = streams.get_mut(&self.id);
                match state.and_then(|state| state.next.take().map(|next| (state, next))) {
                    Some((state, (handle, subscriber))) => {
                        state.current = handle;
                        subscriber
                    }
                    None => {
                        streams.remove(&self.id);
                        return;
                    }
                }
            };
            tracing::debug!(stream = %self.id, "recorder: published again");
            self.subscriber = next;
            self.configs = [None, None];
            self.retry_at = None;
            self.sink = Some(self.new_sink());
        }
    }

    /// Feeds the sink until the stream ends or shutdown.
    async fn record(&mut self, shutdown: &CancellationToken) {
        tracing::debug!(stream = %self.id, "recorder: following");
        let mut batch = Batch::new();
        let mut skips = self.subscriber.skips();
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.subscriber.recv_batch(&mut batch, BATCH_MAX) => r,
            };
            match received {
                Ok(_) => {}
                Err(RecvError::Evicted(why)) => {
                    self.gap(&why).await;
                    // Still live? Then subscribe again: the recording goes
                    // on from the next keyframe.
                    match self.inner.engine.lookup(&self.id) {
                        Some(h) => {
                            if let Some(state) = self.inner.streams().get_mut(&self.id) {
                                state.current = h.clone();
                            }
                            self.subscriber = h.subscribe();
                            skips = self.subscriber.skips();
                            continue;
                        }
                        None => return,
                    }
                }
                Err(e) => {
                    tracing::debug!(stream = %self.id, reason = %e, "recorder: stream ended");
                    return;
                }
            }
            if self.subscriber.skips() != skips {
                skips = self.subscriber.skips();
                let why = format!("skipped {} frames in total", self.subscriber.skipped_frames());
                self.gap(&why).await;
            }
            for frame in batch.iter() {
                self.write(frame).await;
            }
            batch.clear();
        }
    }

    async fn write(&mut self, frame: &MediaFrame) {
        if frame.is_config() {
            match frame.frame_type() {
                FrameType::Video => self.configs[0] = Some(frame.clone()),
                FrameType::Audio => self.configs[1] = Some(frame.clone()),
                FrameType::Data => {}
            }
        }
        if self.sink.is_none() && self.retry_at.is_some_and(|t| Instant::now() >= t) {
            self.retry_at = None;
            let mut sink = self.new_sink();
            // The configuration in force, which the stream sent before.
            for config in self.configs.iter().flatten() {
                if !frame.is_config() || config.frame_type() != frame.frame_type() {
                    let _ = sink.push(config, SystemTime::now()).await;
                }
            }
            self.sink = Some(sink);
        }
        let Some(mut sink) = self.sink.take() else { return };
        match sink.push(frame, SystemTime::now()).await {
            Ok(()) => {
                if self.failures > 0 && sink.wrote_media() {
                    tracing::info!(stream = %self.id, file = sink.current_file().unwrap_or(""), "recording resumed");
                    self.failures = 0;
                    self.inner.set_failure(&self.id, None);
                }
                self.sink = Some(sink);
            }
            Err(e) => self.failed(&mut sink, &e).await,
        }
    }

    /// A storage error: the recording ends; a new one is tried after the
    /// backoff.
    async fn failed(&mut self, sink: &mut RecordingSink, error: &arcly_core::StreamError) {
        self.failures = self.failures.saturating_add(1);
        let backoff = self.inner.config.retry_backoff.saturating_mul(1 << (self.failures - 1).min(4));
        Counters::add(&self.inner.counters.write_errors, 1);
        tracing::error!(
            stream = %self.id, error = %error, retry_in = ?backoff,
            "recording stopped by a storage error; the live stream goes on"
        );
        self.inner.set_failure(&self.id, Some(error.to_string()));
        sink.abandon().await;
        self.retry_at = Some(Instant::now() + backoff);
    }

    /// The recorder lost frames: the recording continues in a new file.
    async fn gap(&mut self, why: &str) {
        Counters::add(&self.inner.counters.gaps, 1);
        tracing::warn!(stream = %self.id, reason = why, "recorder fell behind its stream (slow storage?): gap in the recording");
        if let Some(mut sink) = self.sink.take() {
            match sink.gap().await {
                Ok(()) => self.sink = Some(sink),
                Err(e) => self.failed(&mut sink, &e).await,
            }
        }
    }
}
