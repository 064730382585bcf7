//! Audit trail: who published or played what, when, and whether it was
//! allowed.
//!
//! Recording an event never blocks a session: [`AuditPipeline::record`] puts
//! it in a bounded queue and returns; a worker started by
//! [`AuditPipeline::run`] hands queued events to the [`AuditSink`] on a
//! blocking thread. When the queue is full the event is dropped and counted
//! ([`AuditPipeline::dropped`]), and the engine's health turns degraded.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::identity::StreamId;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditAction {
    /// A publish was allowed and started.
    PublishStart,
    /// A publish ended.
    PublishEnd,
    /// A play was allowed and started.
    PlayStart,
    /// A play ended.
    PlayEnd,
    /// A publish or play was refused.
    Refused,
}

impl AuditAction {
    /// A stable snake_case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PublishStart => "publish_start",
            Self::PublishEnd => "publish_end",
            Self::PlayStart => "play_start",
            Self::PlayEnd => "play_end",
            Self::Refused => "refused",
        }
    }
}

/// One audit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// When it happened.
    pub time: SystemTime,
    /// What happened.
    pub action: AuditAction,
    /// The stream.
    pub stream: StreamId,
    /// The protocol.
    pub protocol: &'static str,
    /// The peer, when known.
    pub peer: Option<SocketAddr>,
    /// For a refusal, its machine-readable code
    /// ([`Denial::code`](crate::auth::Denial::code), e.g. `"expired"`).
    pub code: Option<&'static str>,
    /// Why (refusal reason, end reason); empty when there is nothing to say.
    pub reason: String,
}

impl AuditEvent {
    /// An event stamped now.
    pub fn now(action: AuditAction, stream: StreamId, protocol: &'static str, peer: Option<SocketAddr>) -> Self {
        Self { time: SystemTime::now(), action, stream, protocol, peer, code: None, reason: String::new() }
    }

    /// Sets the code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Sets the reason.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }

    /// The event as one JSON object on one line (no trailing newline).
    ///
    /// ```
    /// use arcly_core::audit::{AuditAction, AuditEvent};
    /// let mut e = AuditEvent::now(AuditAction::Refused, "live/x".parse().unwrap(), "rtmp", None)
    ///     .with_code("expired")
    ///     .with_reason("bad \"token\"");
    /// e.time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1500);
    /// assert_eq!(
    ///     e.to_json_line(),
    ///     r#"{"ts_ms":1500,"action":"refused","stream":"live/x","protocol":"rtmp","peer":null,"code":"expired","reason":"bad \"token\""}"#
    /// );
    /// ```
    pub fn to_json_line(&self) -> String {
        let ts = self.time.duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
        let mut s = String::with_capacity(160);
        let _ = write!(s, "{{\"ts_ms\":{ts},\"action\":\"{}\",\"stream\":", self.action.as_str());
        json_string(&mut s, &self.stream.to_string());
        s.push_str(",\"protocol\":");
        json_string(&mut s, self.protocol);
        s.push_str(",\"peer\":");
        match self.peer {
            Some(p) => json_string(&mut s, &p.to_string()),
            None => s.push_str("null"),
        }
        s.push_str(",\"code\":");
        match self.code {
            Some(c) => json_string(&mut s, c),
            None => s.push_str("null"),
        }
        s.push_str(",\"reason\":");
        json_string(&mut s, &self.reason);
        s.push('}');
        s
    }
}

/// Appends `v` as a JSON string literal.
fn json_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Where audit events end up. Called from a blocking thread, one event at a
/// time, so implementations may do blocking I/O.
pub trait AuditSink: Send + Sync + 'static {
    /// Writes one event.
    fn write(&self, event: &AuditEvent) -> io::Result<()>;
    /// Flushes buffered events; called when the queue runs empty.
    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Appends events to a file as JSON lines.
#[derive(Debug)]
pub struct FileAuditSink {
    out: Mutex<BufWriter<File>>,
}

impl FileAuditSink {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { out: Mutex::new(BufWriter::new(file)) })
    }
}

impl AuditSink for FileAuditSink {
    fn write(&self, event: &AuditEvent) -> io::Result<()> {
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.write_all(event.to_json_line().as_bytes())?;
        out.write_all(b"\n")
    }

    fn flush(&self) -> io::Result<()> {
        self.out.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// A bounded, non-blocking queue in front of an [`AuditSink`].
#[derive(Clone)]
pub struct AuditPipeline {
    tx: mpsc::Sender<AuditEvent>,
    rx: Arc<Mutex<Option<mpsc::Receiver<AuditEvent>>>>,
    sink: Arc<dyn AuditSink>,
    dropped: Arc<AtomicU64>,
}

impl AuditPipeline {
    /// A pipeline holding at most `capacity` events not yet written.
    pub fn new(sink: Arc<dyn AuditSink>, capacity: usize) -> Self {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Self { tx, rx: Arc::new(Mutex::new(Some(rx))), sink, dropped: Arc::new(AtomicU64::new(0)) }
    }

    /// Queues an event; drops and counts it if the queue is full.
    pub fn record(&self, event: AuditEvent) {
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes queued events to the sink until `shutdown` is cancelled (then
    /// writes what is still queued and returns) or every other clone of the
    /// pipeline is dropped. Only the first call does anything.
    pub async fn run(self, shutdown: CancellationToken) {
        let Some(mut rx) = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let Self { sink, tx, .. } = self;
        drop(tx);
        let mut batch = Vec::with_capacity(64);
        loop {
            let n = tokio::select! {
                n = rx.recv_many(&mut batch, 64) => n,
                () = shutdown.cancelled() => {
                    rx.close();
                    rx.recv_many(&mut batch, 64).await
                }
            };
            if n == 0 {
                return;
            }
            let events = std::mem::take(&mut batch);
            let sink = sink.clone();
            // File I/O blocks: keep it off the runtime's worker threads.
            let written = tokio::task::spawn_blocking(move || {
                for event in &events {
                    if let Err(e) = sink.write(event) {
                        tracing::warn!(error = %e, "audit sink write failed");
                    }
                }
                if let Err(e) = sink.flush() {
                    tracing::warn!(error = %e, "audit sink flush failed");
                }
            });
            let _ = written.await;
        }
    }
}

impl std::fmt::Debug for AuditPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditPipeline")
            .field("queued", &(self.tx.max_capacity() - self.tx.capacity()))
            .field("dropped", &self.dropped())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect(Mutex<Vec<String>>);

    impl AuditSink for Arc<Collect> {
        fn write(&self, event: &AuditEvent) -> io::Result<()> {
            self.0.lock().unwrap().push(event.to_json_line());
            Ok(())
        }
    }

    fn event(reason: &str) -> AuditEvent {
        AuditEvent::now(AuditAction::PublishStart, "live/a".parse().unwrap(), "rtmp", None).with_reason(reason)
    }

    #[test]
    fn json_escapes_control_characters() {
        let line = event("a\u{1}b\\").to_json_line();
        assert!(line.contains(r#""reason":"a\u0001b\\""#), "{line}");
        assert!(!line.contains('\n'));
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts_without_blocking() {
        let sink = Arc::new(Collect::default());
        let pipeline = AuditPipeline::new(Arc::new(sink.clone()), 2);
        for i in 0..5 {
            pipeline.record(event(&i.to_string()));
        }
        assert_eq!(pipeline.dropped(), 3);
        let worker = tokio::spawn(pipeline.clone().run(CancellationToken::new()));
        drop(pipeline);
        worker.await.unwrap();
        let lines = sink.0.lock().unwrap();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains(r#""reason":"0""#));
    }

    #[tokio::test]
    async fn file_sink_writes_json_lines() {
        let dir = std::env::temp_dir().join(format!("arcly-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let pipeline = AuditPipeline::new(Arc::new(FileAuditSink::open(&path).unwrap()), 16);
        pipeline.record(event("x"));
        pipeline.record(event("y"));
        let shutdown = CancellationToken::new();
        let worker = tokio::spawn(pipeline.clone().run(shutdown.clone()));
        // Shutdown drains the queue even while the engine still holds a clone.
        shutdown.cancel();
        worker.await.unwrap();
        drop(pipeline);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(|l| l.starts_with("{\"ts_ms\":") && l.ends_with('}')));
    }
}
