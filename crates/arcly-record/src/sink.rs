//! [`RecordingSink`]: one stream's recording, written to a
//! [`StorageBackend`].

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use arcly_core::frame::MediaFrame;
use arcly_core::identity::StreamId;
use arcly_core::traits::{MediaSink, ObjectWriter, StorageBackend};
use arcly_core::{Result, StreamError};
use async_trait::async_trait;
use bytes::Bytes;

use crate::config::RecordConfig;
use crate::playlist::{self, FileEntry};
use crate::segmenter::{Segmenter, Step};
use crate::stats::{Counters, RecorderStats};
use crate::time::Utc;

/// Names tried for a recording before giving up (`stamp`, `stamp-2`, ...).
const NAME_ATTEMPTS: u32 = 100;

/// The open file.
struct OpenIo {
    uri: String,
    path: String,
    writer: Box<dyn ObjectWriter>,
    init_len: u64,
    /// Media seconds in what was appended.
    seconds: f64,
    start: SystemTime,
    discontinuity: bool,
}

/// Records one stream into files of a [`StorageBackend`]: a
/// [`MediaSink`] fed the stream's frames in bus order.
///
/// # Files
/// A recording is what one sink writes: its files are
/// `{app}/{key}/{start}_{n}.{mp4|ts}` and its playlist
/// `{app}/{key}/{start}.m3u8`, where `start` is the UTC time of the first
/// frame as `2026-11-25T01-23-45Z` (a `-2`, `-3`, ... suffix if a recording
/// of that stream started in the same second) and `n` counts files from
/// `0001`.
///
/// - A file starts with a video keyframe (audio-only streams: with the
///   first audio frame, after waiting up to 1 s to see whether video
///   comes), with the configuration in force then. Frames before it are
///   not recorded.
/// - A file ends at the first keyframe at or after
///   [`max_duration`](RecordConfig::max_duration) of media or
///   [`max_size`](RecordConfig::max_size) bytes (**rotation**; the next
///   file continues the timeline), when a configuration changes or a track
///   appears, on a [`DISCONTINUITY`](arcly_core::frame::FrameFlags::DISCONTINUITY)
///   frame (a new publisher), when timestamps go back or jump more than
///   10 s forward, after a [`gap`](Self::gap), and at the end.
/// - fMP4: the initialisation segment, then one `moof` + `mdat` fragment
///   per append, cut at every video keyframe and after at most
///   [`fragment_duration`](RecordConfig::fragment_duration); timestamps
///   keep the stream's timeline (files after the first start where the
///   previous one ended). MPEG-TS: PAT/PMT and PES packets, appended in
///   chunks cut the same way.
/// - The playlist lists every closed file as one segment (fMP4: its init
///   segment as `EXT-X-MAP`, the rest as a byte range), with
///   `EXT-X-PROGRAM-DATE-TIME` and `EXT-X-DISCONTINUITY` where a new
///   timeline starts. It is rewritten (atomically, through
///   [`StorageBackend::put`]) when the recording starts and whenever a file
///   closes: `EVENT` while recording, `VOD` with `EXT-X-ENDLIST` once
///   [`finish`](MediaSink::finish)ed.
///
/// # Crash safety
/// Each fragment or chunk is one [`ObjectWriter::append`], so a file cut
/// short by a crash ends with whole fragments (and plays up to the last
/// one); a closed file was [`sync`](ObjectWriter::sync)ed before the
/// playlist names it.
///
/// # Errors
/// A storage error is returned as is (an I/O error keeps its kind, e.g.
/// `StorageFull` or `PermissionDenied`) and ends the recording: call
/// [`abandon`](Self::abandon), then start a new sink to retry. The
/// [`Recorder`](crate::Recorder) does this for every stream.
pub struct RecordingSink {
    storage: Arc<dyn StorageBackend>,
    stream: StreamId,
    config: RecordConfig,
    segmenter: Segmenter,
    steps: Vec<Step>,
    /// The recording's name, chosen when its first file opens.
    name: Option<String>,
    seq: u32,
    open: Option<OpenIo>,
    files: Vec<FileEntry>,
    counters: Arc<Counters>,
    refused_reported: u64,
    /// A storage error happened: nothing more is written.
    failed: bool,
    /// Counted in `recordings_active`.
    active: bool,
    ended: bool,
}

impl fmt::Debug for RecordingSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingSink")
            .field("stream", &self.stream)
            .field("name", &self.name)
            .field("files", &self.files.len())
            .field("open", &self.open.as_ref().map(|o| &o.path))
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl RecordingSink {
    /// A sink recording `stream` into `storage`; `config` is
    /// [sanitized](RecordConfig::sanitized) (its stream patterns are not
    /// consulted here). Nothing is written before the first keyframe.
    pub fn new(storage: Arc<dyn StorageBackend>, stream: StreamId, config: RecordConfig) -> Self {
        Self::with_counters(storage, stream, config, Arc::default())
    }

    pub(crate) fn with_counters(
        storage: Arc<dyn StorageBackend>,
        stream: StreamId,
        config: RecordConfig,
        counters: Arc<Counters>,
    ) -> Self {
        let config = config.sanitized();
        Self {
            storage,
            stream,
            segmenter: Segmenter::new(config.clone()),
            config,
            steps: Vec::new(),
            name: None,
            seq: 0,
            open: None,
            files: Vec::new(),
            counters,
            refused_reported: 0,
            failed: false,
            active: false,
            ended: false,
        }
    }

    /// The stream recorded.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// The playlist's path in the storage, once the first file opened.
    pub fn playlist_path(&self) -> Option<String> {
        self.name.as_ref().map(|n| format!("{}/{n}.m3u8", self.dir()))
    }

    /// The path of the file being written, if any.
    pub fn current_file(&self) -> Option<&str> {
        self.open.as_ref().map(|o| o.path.as_str())
    }

    /// The paths of the closed files, in order.
    pub fn closed_files(&self) -> Vec<String> {
        self.files.iter().map(|f| format!("{}/{}", self.dir(), f.uri)).collect()
    }

    /// True once media (not only an initialisation segment) was written.
    pub(crate) fn wrote_media(&self) -> bool {
        !self.files.is_empty() || self.open.as_ref().is_some_and(|o| o.seconds > 0.0)
    }

    /// This sink's counters (the [`Recorder`](crate::Recorder)'s, when it
    /// made the sink).
    pub fn stats(&self) -> RecorderStats {
        self.counters.snapshot()
    }

    fn dir(&self) -> String {
        format!("{}/{}", self.stream.app(), self.stream.key())
    }

    fn check(&self) -> Result<()> {
        if self.failed {
            return Err(StreamError::Closed(format!("recording of {} failed earlier", self.stream)));
        }
        if self.ended {
            return Err(StreamError::Closed(format!("recording of {} ended", self.stream)));
        }
        Ok(())
    }

    /// Writes one frame, `now` being the wall clock (the start time of a
    /// file opened by it). [`MediaSink::write_frame`] is this with
    /// [`SystemTime::now`].
    pub async fn push(&mut self, frame: &MediaFrame, now: SystemTime) -> Result<()> {
        self.check()?;
        let mut steps = std::mem::take(&mut self.steps);
        self.segmenter.push(frame, now, &mut steps);
        let result = self.run(&mut steps).await;
        steps.clear();
        self.steps = steps;
        let refused = self.segmenter.refused();
        if refused > self.refused_reported {
            Counters::add(&self.counters.frames_refused, refused - self.refused_reported);
            self.refused_reported = refused;
        }
        result
    }

    /// Frames were lost before the next one (the caller fell behind its
    /// stream): the open file is closed and the next one, from the next
    /// keyframe, is marked as a new timeline (`EXT-X-DISCONTINUITY`).
    pub async fn gap(&mut self) -> Result<()> {
        self.check()?;
        let mut steps = Vec::new();
        self.segmenter.gap(&mut steps);
        self.run(&mut steps).await
    }

    /// After an error: ends the recording without raising errors. The
    /// open file keeps the fragments appended before the error and is
    /// listed in the playlist with them (its byte range stops before a
    /// fragment the error cut short); the playlist is ended. Failures
    /// doing so are ignored (the storage is failing). Nothing is written
    /// afterwards.
    pub async fn abandon(&mut self) {
        if self.ended {
            return;
        }
        self.failed = true;
        self.ended = true;
        if let Some(mut open) = self.open.take() {
            let _ = open.writer.sync().await;
            self.list_file(open);
        }
        let _ = self.write_playlist(true).await;
        self.deactivate();
    }

    /// Adds a file that has media to the playlist's list.
    fn list_file(&mut self, open: OpenIo) {
        let size = open.writer.len();
        if size > open.init_len && open.seconds > 0.0 {
            let discontinuity = open.discontinuity && !self.files.is_empty();
            self.files.push(FileEntry {
                uri: open.uri,
                seconds: open.seconds,
                size,
                init_len: open.init_len,
                start: open.start,
                discontinuity,
            });
        }
    }

    fn deactivate(&mut self) {
        if std::mem::take(&mut self.active) {
            self.counters.recordings_active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn run(&mut self, steps: &mut Vec<Step>) -> Result<()> {
        for step in steps.drain(..) {
            let result = match step {
                Step::Open { head, start, discontinuity } => self.open_file(head, start, discontinuity).await,
                Step::Append { parts, seconds } => self.append(&parts, seconds).await,
                Step::Close { seconds } => self.close_file(seconds).await,
            };
            if let Err(e) = result {
                self.failed = true;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Picks the recording's name: the first time stamp no object of this
    /// stream starts with.
    async fn choose_name(&self, start: SystemTime) -> Result<String> {
        let stamp = Utc::from(start).file_stamp();
        let dir = self.dir();
        for i in 1..=NAME_ATTEMPTS {
            let name = if i == 1 { stamp.clone() } else { format!("{stamp}-{i}") };
            let prefix = format!("{dir}/{name}");
            if self.storage.list(&prefix).await.map_err(at(&prefix))?.is_empty() {
                return Ok(name);
            }
        }
        Err(StreamError::Io(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{NAME_ATTEMPTS} recordings of {} started at {stamp}", self.stream),
        )))
    }

    async fn open_file(&mut self, head: Bytes, start: SystemTime, discontinuity: bool) -> Result<()> {
        let first = self.name.is_none();
        let name = match &self.name {
            Some(n) => n.clone(),
            None => {
                let n = self.choose_name(start).await?;
                self.name = Some(n.clone());
                n
            }
        };
        self.seq += 1;
        let uri = format!("{name}_{:04}.{}", self.seq, self.config.format.extension());
        let path = format!("{}/{uri}", self.dir());
        let mut writer = self.storage.open_writer(&path).await.map_err(at(&path))?;
        Counters::add(&self.counters.files_opened, 1);
        let init_len = head.len() as u64;
        if !head.is_empty() {
            writer.append(&[head]).await.map_err(at(&path))?;
            Counters::add(&self.counters.bytes_written, init_len);
        }
        tracing::info!(stream = %self.stream, path = %path, "recording to a new file");
        self.open = Some(OpenIo { uri, path, writer, init_len, seconds: 0.0, start, discontinuity });
        if first {
            Counters::add(&self.counters.recordings_started, 1);
            Counters::add(&self.counters.recordings_active, 1);
            self.active = true;
            // The playlist exists from the start: the recording can be
            // found while it runs.
            self.write_playlist(false).await?;
        }
        Ok(())
    }

    async fn append(&mut self, parts: &[Bytes], seconds: f64) -> Result<()> {
        let Some(open) = self.open.as_mut() else { return Ok(()) };
        open.writer.append(parts).await.map_err(at(&open.path))?;
        open.seconds = seconds;
        Counters::add(&self.counters.bytes_written, parts.iter().map(|p| p.len() as u64).sum());
        Ok(())
    }

    async fn close_file(&mut self, seconds: f64) -> Result<()> {
        let Some(mut open) = self.open.take() else { return Ok(()) };
        // Durable before the playlist names it.
        if let Err(e) = open.writer.sync().await {
            let e = at(&open.path)(e);
            // Kept for abandon() to list what it holds.
            self.open = Some(open);
            return Err(e);
        }
        open.seconds = seconds;
        tracing::debug!(stream = %self.stream, path = %open.path, seconds, size = open.writer.len(), "recording file closed");
        self.list_file(open);
        Counters::add(&self.counters.files_closed, 1);
        self.write_playlist(false).await
    }

    async fn write_playlist(&self, ended: bool) -> Result<()> {
        let Some(path) = self.playlist_path() else { return Ok(()) };
        let text = playlist::render(self.config.format, &self.files, self.config.max_duration, ended);
        self.storage.put(&path, Bytes::from(text)).await.map_err(at(&path))
    }

    async fn finish_recording(&mut self) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        self.check()?;
        let mut steps = Vec::new();
        self.segmenter.finish(&mut steps);
        let result = self.run(&mut steps).await;
        let result = match result {
            Ok(()) => self.write_playlist(true).await,
            Err(e) => Err(e),
        };
        self.ended = true;
        self.deactivate();
        if result.is_ok()
            && let Some(p) = self.playlist_path()
        {
            tracing::info!(stream = %self.stream, playlist = %p, files = self.files.len(), "recording ended");
        }
        result
    }
}

/// Names the object an I/O error happened on (the kind is kept).
fn at(path: &str) -> impl FnOnce(StreamError) -> StreamError + '_ {
    move |e| match e {
        StreamError::Io(io) => StreamError::Io(std::io::Error::new(io.kind(), format!("{path}: {io}"))),
        other => other,
    }
}

impl Drop for RecordingSink {
    fn drop(&mut self) {
        self.deactivate();
    }
}

#[async_trait]
impl MediaSink for RecordingSink {
    async fn write_frame(&mut self, frame: &MediaFrame) -> Result<()> {
        self.push(frame, SystemTime::now()).await
    }

    /// Closes the open file (writing the frames still held) and ends the
    /// playlist (`VOD`, `EXT-X-ENDLIST`).
    async fn finish(&mut self) -> Result<()> {
        self.finish_recording().await
    }
}
