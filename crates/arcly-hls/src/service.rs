//! The engine-driven service: one packager task per published stream, and
//! the async query API a web server calls.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use arcly_core::bus::{Batch, StreamEvent};
use arcly_core::engine::Engine;
use arcly_core::identity::StreamId;
use bytes::Bytes;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::HlsConfig;
use crate::packager::{Lookup, Packager, PlaylistKind};

/// Frames taken from the bus per wake-up.
const BATCH_MAX: usize = 256;
/// How often ended streams are looked at for removal.
const REAP_INTERVAL: Duration = Duration::from_secs(5);

/// Why a request cannot be answered. [`status_code`](Self::status_code)
/// gives the HTTP status to answer with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HlsError {
    /// No such stream, or no such playlist, segment or part (404). Also a
    /// hinted part that will not exist because its segment ended earlier.
    NotFound,
    /// A malformed request (400): `_HLS_part` without `_HLS_msn`, or
    /// `_HLS_msn` more than one segment beyond the last one in the playlist
    /// (RFC 8216bis §6.2.5.2).
    BadRequest(String),
    /// A blocking request waited [`HlsConfig::blocking_timeout`] in vain
    /// (503: the stream stalled).
    Timeout,
    /// The segment or part was deleted from the window, or the stream ended
    /// before it was written (410).
    Gone,
}

impl HlsError {
    /// The HTTP status for this error: 404, 400, 503 or 410.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::BadRequest(_) => 400,
            Self::Timeout => 503,
            Self::Gone => 410,
        }
    }
}

impl fmt::Display for HlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("not found"),
            Self::BadRequest(why) => write!(f, "bad request: {why}"),
            Self::Timeout => f.write_str("timed out waiting for the stream"),
            Self::Gone => f.write_str("gone"),
        }
    }
}

impl std::error::Error for HlsError {}

/// The query of a media playlist request: `_HLS_msn`, `_HLS_part` and
/// `_HLS_skip=YES` (or `v2`, treated alike).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlaylistRequest {
    /// `_HLS_msn`: block until this segment (or a part of it) exists.
    pub msn: Option<u64>,
    /// `_HLS_part`: with `msn`, block until this part of it exists.
    pub part: Option<u64>,
    /// `_HLS_skip`: answer with a delta update (`EXT-X-SKIP`).
    pub skip: bool,
}

impl PlaylistRequest {
    /// The delivery directives among a request's query parameters, given as
    /// decoded `(name, value)` pairs; of repeated names the last counts.
    /// `_HLS_msn` and `_HLS_part` are decimal numbers; `_HLS_skip` is `YES`
    /// or `v2` (a delta update) or `NO`. Other parameters are ignored. A
    /// malformed directive is [`HlsError::BadRequest`].
    ///
    /// ```
    /// use arcly_hls::PlaylistRequest;
    /// let req = PlaylistRequest::from_query([("_HLS_msn", "12"), ("_HLS_part", "3"), ("token", "x")]).unwrap();
    /// assert_eq!(req, PlaylistRequest { msn: Some(12), part: Some(3), skip: false });
    /// assert!(PlaylistRequest::from_query([("_HLS_skip", "maybe")]).is_err());
    /// ```
    pub fn from_query<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, HlsError> {
        let (mut msn, mut part, mut skip) = (None, None, None);
        for (name, value) in params {
            match name {
                "_HLS_msn" => msn = Some(value),
                "_HLS_part" => part = Some(value),
                "_HLS_skip" => skip = Some(value),
                _ => {}
            }
        }
        let number = |name: &str, value: Option<&str>| {
            value
                .map(|v| v.parse().map_err(|_| HlsError::BadRequest(format!("{name}={v:?} is not a number"))))
                .transpose()
        };
        let skip = match skip {
            None | Some("NO") => false,
            Some("YES" | "v2") => true,
            Some(other) => return Err(HlsError::BadRequest(format!("_HLS_skip={other:?} is not YES or v2"))),
        };
        Ok(Self { msn: number("_HLS_msn", msn)?, part: number("_HLS_part", part)?, skip })
    }
}

/// One stream's packager and its change notification.
#[derive(Debug)]
struct Entry {
    packager: Mutex<Packager>,
    changed: watch::Sender<u64>,
    state: Mutex<EntryState>,
}

#[derive(Debug, Default)]
struct EntryState {
    /// A task is following the stream.
    running: bool,
    /// When the stream last ended.
    ended_at: Option<Instant>,
}

impl Entry {
    fn new(config: HlsConfig) -> Self {
        Self {
            packager: Mutex::new(Packager::new(config)),
            changed: watch::channel(0).0,
            state: Mutex::new(EntryState::default()),
        }
    }

    fn packager(&self) -> MutexGuard<'_, Packager> {
        self.packager.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn state(&self) -> MutexGuard<'_, EntryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

#[derive(Debug)]
struct Inner {
    engine: Engine,
    config: HlsConfig,
    streams: Mutex<HashMap<StreamId, Arc<Entry>>>,
}

/// The HLS service: follows the engine's streams and answers playlist,
/// segment and part requests. Cheap to clone (shared state).
///
/// See the crate documentation for the URI scheme.
#[derive(Clone, Debug)]
pub struct Hls {
    inner: Arc<Inner>,
}

impl Hls {
    /// A service for `engine`'s streams; `config` is
    /// [sanitized](HlsConfig::sanitized). Nothing runs until [`run`](Self::run).
    pub fn new(engine: Engine, config: HlsConfig) -> Hls {
        Self { inner: Arc::new(Inner { engine, config: config.sanitized(), streams: Mutex::new(HashMap::new()) }) }
    }

    /// The settings in use.
    pub fn config(&self) -> &HlsConfig {
        &self.inner.config
    }

    fn streams(&self) -> MutexGuard<'_, HashMap<StreamId, Arc<Entry>>> {
        self.inner.streams.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry(&self, stream: &StreamId) -> Result<Arc<Entry>, HlsError> {
        self.streams().get(stream).cloned().ok_or(HlsError::NotFound)
    }

    /// Follows the engine until `shutdown` is cancelled: packages every
    /// published stream (those live now and those published later) in a
    /// task of its own. A publisher that comes back (within the
    /// application's republish grace, or later with a new `Published`
    /// event) continues the same playlists after an `EXT-X-DISCONTINUITY`.
    /// An ended stream's playlists stay available for the window's duration
    /// plus 30 s, then are dropped.
    pub async fn run(&self, shutdown: CancellationToken) {
        let mut events = self.inner.engine.events().subscribe();
        for info in self.inner.engine.streams() {
            self.follow(info.id, &shutdown);
        }
        let mut reap = tokio::time::interval(REAP_INTERVAL);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                event = events.recv() => match event {
                    Ok(StreamEvent::Published { stream, .. }) => self.follow(stream, &shutdown),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for info in self.inner.engine.streams() {
                            self.follow(info.id, &shutdown);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = reap.tick() => self.reap(),
            }
        }
    }

    /// How long an ended stream is kept.
    fn linger(&self) -> Duration {
        let c = &self.inner.config;
        c.segment_target
            .saturating_mul(u32::try_from(c.window).unwrap_or(u32::MAX))
            .saturating_add(Duration::from_secs(30))
    }

    fn reap(&self) {
        let linger = self.linger();
        self.streams().retain(|id, entry| {
            let state = entry.state();
            let keep = state.running || state.ended_at.is_none_or(|t| t.elapsed() < linger);
            if !keep {
                tracing::debug!(stream = %id, "hls: ended stream dropped");
            }
            keep
        });
    }

    /// Starts a task for `id` unless one runs.
    fn follow(&self, id: StreamId, shutdown: &CancellationToken) {
        let Some(handle) = self.inner.engine.lookup(&id) else { return };
        let entry = {
            let mut streams = self.streams();
            let entry = streams.entry(id.clone()).or_insert_with(|| Arc::new(Entry::new(self.inner.config.clone())));
            let mut state = entry.state();
            if state.running {
                return;
            }
            if state.ended_at.take().is_some() {
                // A republish after the stream ended: same playlists, new
                // timeline.
                entry.packager().discontinuity();
            }
            state.running = true;
            drop(state);
            entry.clone()
        };
        let mut subscriber = handle.subscribe();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tracing::debug!(stream = %id, "hls: packaging");
            let mut batch = Batch::new();
            loop {
                let received = tokio::select! {
                    () = shutdown.cancelled() => break,
                    r = subscriber.recv_batch(&mut batch, BATCH_MAX) => r,
                };
                match received {
                    Ok(0) => {
                        if !subscriber.publisher_live() {
                            entry.packager().discontinuity();
                            entry.notify();
                        }
                    }
                    Ok(_) => {
                        let now = SystemTime::now();
                        let changed = {
                            let mut p = entry.packager();
                            let before = p.version();
                            for frame in batch.iter() {
                                p.push(frame, now);
                            }
                            p.version() != before
                        };
                        batch.clear();
                        if changed {
                            entry.notify();
                        }
                    }
                    Err(e) => {
                        tracing::debug!(stream = %id, error = %e, "hls: stream ended");
                        break;
                    }
                }
            }
            entry.packager().finish();
            let mut state = entry.state();
            state.running = false;
            state.ended_at = Some(Instant::now());
            drop(state);
            entry.notify();
        });
    }

    /// Waits (up to the blocking timeout) until `f` returns `Some`.
    async fn wait_for<T>(
        &self,
        entry: &Entry,
        mut f: impl FnMut(&Packager) -> Result<Option<T>, HlsError>,
    ) -> Result<T, HlsError> {
        let mut rx = entry.changed.subscribe();
        let deadline = Instant::now() + self.inner.config.blocking_timeout;
        loop {
            if let Some(t) = f(&entry.packager())? {
                return Ok(t);
            }
            if !entry.state().running {
                // Nothing more will be written.
                return Err(HlsError::Gone);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(HlsError::Gone),
                Err(_) => return Err(HlsError::Timeout),
            }
        }
    }

    /// A media playlist: `index.m3u8` ([`PlaylistKind::LowLatency`]) or
    /// `ts/index.m3u8` ([`PlaylistKind::Ts`]).
    ///
    /// With `req.msn` (and `req.part`) it blocks until that segment (part)
    /// exists, up to [`HlsConfig::blocking_timeout`]; `req.skip` asks for a
    /// delta update. Before the stream's first part exists it waits too.
    /// Errors: [`HlsError::BadRequest`] for `part` without
    /// `msn` or an `msn` more than one segment beyond the last in the
    /// playlist; [`HlsError::NotFound`] for an unknown stream or a disabled
    /// format; [`HlsError::Timeout`] when waiting was in vain.
    pub async fn playlist(
        &self,
        stream: &StreamId,
        kind: PlaylistKind,
        req: PlaylistRequest,
    ) -> Result<String, HlsError> {
        if req.part.is_some() && req.msn.is_none() {
            return Err(HlsError::BadRequest("_HLS_part without _HLS_msn".into()));
        }
        let entry = self.entry(stream)?;
        let skip = req.skip && kind == PlaylistKind::LowLatency;
        let result = self
            .wait_for(&entry, |p| {
                if let Some(msn) = req.msn {
                    // The last segment in the playlist is the open one (its
                    // parts are listed), or the last complete one.
                    let last = p.next_msn();
                    if msn > last + 1 {
                        return Err(HlsError::BadRequest(format!("_HLS_msn={msn} is too far beyond {last}")));
                    }
                    let ready = match req.part {
                        Some(part) => p.has_part(msn, part),
                        None => p.has_segment(msn),
                    };
                    if !ready {
                        return Ok(None);
                    }
                }
                match p.media_playlist(kind, skip) {
                    Some(text) => Ok(Some(text)),
                    None if !match kind {
                        PlaylistKind::LowLatency => p.config().fmp4,
                        PlaylistKind::Ts => p.config().ts,
                    } =>
                    {
                        Err(HlsError::NotFound)
                    }
                    None => Ok(None),
                }
            })
            .await;
        match result {
            // The stream ended while the request waited: the final playlist
            // (with EXT-X-ENDLIST) answers every directive, so a player ends
            // cleanly instead of seeing an error.
            Err(HlsError::Gone) => entry.packager().media_playlist(kind, skip).ok_or(HlsError::NotFound),
            other => other,
        }
    }

    /// The multivariant playlist (`multivariant.m3u8`): waits for the first
    /// complete segment (BANDWIDTH is measured), up to the blocking timeout.
    pub async fn multivariant(&self, stream: &StreamId) -> Result<String, HlsError> {
        let entry = self.entry(stream)?;
        self.wait_for(&entry, |p| Ok(p.multivariant())).await.map_err(not_found_if_gone)
    }

    /// The current fMP4 initialisation segment (`init.mp4`; after a
    /// republish with other tracks, `init{n}.mp4` is served by
    /// [`segment`](Self::segment)). Waits for output to start, up to the
    /// blocking timeout.
    pub async fn init(&self, stream: &StreamId) -> Result<Bytes, HlsError> {
        let entry = self.entry(stream)?;
        if !entry.packager().config().fmp4 {
            return Err(HlsError::NotFound);
        }
        self.wait_for(&entry, |p| Ok(p.init_segment())).await.map_err(not_found_if_gone)
    }

    /// A segment by name: `seg{msn}.m4s` (or `init{n}.mp4`) for
    /// [`PlaylistKind::LowLatency`], `seg{msn}.ts` (with or without the
    /// `ts/` prefix) for [`PlaylistKind::Ts`], as buffers for a vectored
    /// write. The segment being written is waited for (up to the blocking
    /// timeout); one further in the future is [`HlsError::NotFound`], a
    /// deleted one [`HlsError::Gone`].
    pub async fn segment(&self, stream: &StreamId, kind: PlaylistKind, name: &str) -> Result<Vec<Bytes>, HlsError> {
        let entry = self.entry(stream)?;
        self.wait_for(&entry, |p| match p.segment_lookup(kind, name) {
            Lookup::Found(b) => Ok(Some(b)),
            Lookup::NotYet if seg_msn(name).is_some_and(|m| m <= p.next_msn()) => Ok(None),
            // An init segment not written yet (before the first frames, or
            // a new publisher's) is worth waiting for.
            Lookup::NotYet if name.starts_with("init") => Ok(None),
            Lookup::NotYet | Lookup::Unknown => Err(HlsError::NotFound),
            Lookup::Gone => Err(HlsError::Gone),
        })
        .await
    }

    /// A part by name (`part{msn}.{n}.m4s`), as buffers for a vectored
    /// write. The hinted next part (and any later part of the open segment
    /// or the next one) is waited for until it is written, up to the
    /// blocking timeout: a preload-hint request completes when the part
    /// exists. A part that will never exist (its segment ended sooner) is
    /// [`HlsError::NotFound`].
    pub async fn part(&self, stream: &StreamId, name: &str) -> Result<Vec<Bytes>, HlsError> {
        let entry = self.entry(stream)?;
        let Some((msn, _)) = Packager::parse_part_name(name) else { return Err(HlsError::NotFound) };
        self.wait_for(&entry, |p| match p.part_lookup(name) {
            Lookup::Found(b) => Ok(Some(b)),
            Lookup::NotYet if msn <= p.next_msn() + 1 => Ok(None),
            Lookup::NotYet | Lookup::Unknown => Err(HlsError::NotFound),
            Lookup::Gone => Err(HlsError::Gone),
        })
        .await
    }

    /// Feeds frames to a stream's packager directly, bypassing the engine
    /// (for hosts with their own frame source, and tests); creates the
    /// stream's state on first use and marks it live. Such a stream is never
    /// reaped.
    pub fn push_frames<'a>(
        &self,
        stream: &StreamId,
        frames: impl IntoIterator<Item = &'a arcly_core::frame::MediaFrame>,
        now: SystemTime,
    ) {
        let entry = {
            let mut streams = self.streams();
            let entry =
                streams.entry(stream.clone()).or_insert_with(|| Arc::new(Entry::new(self.inner.config.clone())));
            entry.state().running = true;
            entry.clone()
        };
        let changed = {
            let mut p = entry.packager();
            let before = p.version();
            for f in frames {
                p.push(f, now);
            }
            p.version() != before
        };
        if changed {
            entry.notify();
        }
    }
}

fn not_found_if_gone(e: HlsError) -> HlsError {
    if e == HlsError::Gone { HlsError::NotFound } else { e }
}

fn seg_msn(name: &str) -> Option<u64> {
    let name = name.strip_prefix("ts/").unwrap_or(name);
    let rest = name.strip_prefix("seg")?;
    rest.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_directives() {
        assert_eq!(PlaylistRequest::from_query([]).unwrap(), PlaylistRequest::default());
        let r = PlaylistRequest::from_query([("_HLS_msn", "12"), ("_HLS_part", "3"), ("_HLS_skip", "YES")]).unwrap();
        assert_eq!(r, PlaylistRequest { msn: Some(12), part: Some(3), skip: true });
        assert!(!PlaylistRequest::from_query([("_HLS_skip", "v2"), ("_HLS_skip", "NO")]).unwrap().skip);
        let e = PlaylistRequest::from_query([("_HLS_msn", "x")]).unwrap_err();
        assert!(matches!(&e, HlsError::BadRequest(why) if why.contains("_HLS_msn")), "{e}");
        assert_eq!(e.status_code(), 400);
        assert!(PlaylistRequest::from_query([("_HLS_part", "-1")]).is_err());
        assert!(PlaylistRequest::from_query([("_HLS_skip", "maybe")]).is_err());
        assert_eq!(
            PlaylistRequest::from_query([("token", "abc"), ("_hls_msn", "x")]).unwrap(),
            PlaylistRequest::default()
        );
    }
}
