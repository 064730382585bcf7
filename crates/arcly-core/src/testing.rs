//! In-memory publishers, sources and storage for tests, of this crate and
//! of hosts and protocol crates.
//!
//! ```
//! use arcly_core::testing::SyntheticStream;
//! let frames: Vec<_> = SyntheticStream::new(30, 60).with_audio(48_000).take(200).collect();
//! assert!(frames[0].is_config());
//! assert!(frames.iter().any(|f| f.is_keyframe()));
//! ```

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::bus::{Batch, FrameRef, RecvError, Subscriber};
use crate::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
use crate::traits::{MediaSource, ObjectWriter, StorageBackend};

/// An endless synthetic H.264 (+ AAC) stream in decode order: config frames
/// first, then video at a fixed rate with a keyframe every `gop` frames, and
/// optionally AAC frames (1024 samples each) interleaved by timestamp.
///
/// Payloads are not decodable; their sizes are: keyframes are ten times the
/// delta size. Timestamps are in 90 kHz for video and the sample rate for
/// audio, as real sources produce them.
#[derive(Clone, Debug)]
pub struct SyntheticStream {
    fps: u32,
    gop: u32,
    video_bytes: usize,
    audio_rate: Option<u32>,
    video_n: u64,
    audio_n: u64,
    config_sent: bool,
}

impl SyntheticStream {
    /// Video at `fps` with a keyframe every `gop` frames, 1000-byte deltas.
    pub fn new(fps: u32, gop: u32) -> Self {
        Self {
            fps: fps.max(1),
            gop: gop.max(1),
            video_bytes: 1000,
            audio_rate: None,
            video_n: 0,
            audio_n: 0,
            config_sent: false,
        }
    }

    /// Adds AAC audio at `rate` Hz.
    pub fn with_audio(mut self, rate: u32) -> Self {
        self.audio_rate = Some(rate.max(1));
        self
    }

    /// Sets the size of delta frames (keyframes are ten times larger).
    pub fn with_video_bytes(mut self, bytes: usize) -> Self {
        self.video_bytes = bytes;
        self
    }

    fn video_time(&self, n: u64) -> i64 {
        (n * 90_000 / u64::from(self.fps)) as i64
    }
}

impl Iterator for SyntheticStream {
    type Item = MediaFrame;

    fn next(&mut self) -> Option<MediaFrame> {
        if !self.config_sent {
            self.config_sent = true;
            // Configuration travels as one video config frame; the audio one
            // follows on the next call via `audio_n == 0` below.
            return Some(
                MediaFrame::new(CodecId::H264, Bytes::from_static(b"\x01\x64\x00\x1f avcC"))
                    .with_timestamps(0, 0, Timebase::MPEG)
                    .with_flags(FrameFlags::CONFIG),
            );
        }
        if let Some(rate) = self.audio_rate {
            let audio_tb = Timebase::sample_rate(rate).unwrap_or(Timebase::MILLIS);
            let audio_ts = (self.audio_n * 1024) as i64;
            if self.audio_n == 0 {
                self.audio_n = 1;
                return Some(
                    MediaFrame::new(CodecId::Aac, Bytes::from_static(&[0x11, 0x90]))
                        .with_timestamps(0, 0, audio_tb)
                        .with_flags(FrameFlags::CONFIG),
                );
            }
            let audio_ts = audio_ts - 1024;
            if audio_tb.rescale(audio_ts, Timebase::MPEG) < self.video_time(self.video_n) {
                self.audio_n += 1;
                return Some(
                    MediaFrame::new(CodecId::Aac, Bytes::from(vec![0x21; 200]))
                        .with_timestamps(audio_ts, audio_ts, audio_tb)
                        .with_duration(1024),
                );
            }
        }
        let n = self.video_n;
        self.video_n += 1;
        let key = n.is_multiple_of(u64::from(self.gop));
        let len = if key { self.video_bytes * 10 } else { self.video_bytes };
        let ts = self.video_time(n);
        let frame = MediaFrame::new(CodecId::H264, Bytes::from(vec![if key { 0x65 } else { 0x41 }; len]))
            .with_timestamps(ts, ts, Timebase::MPEG)
            .with_duration(90_000 / self.fps);
        Some(if key { frame.with_flags(FrameFlags::KEYFRAME) } else { frame })
    }
}

/// A [`MediaSource`] that yields the frames it was given, then ends.
#[derive(Debug)]
pub struct VecSource {
    frames: std::vec::IntoIter<MediaFrame>,
}

impl VecSource {
    /// A source of `frames`.
    pub fn new(frames: Vec<MediaFrame>) -> Self {
        Self { frames: frames.into_iter() }
    }
}

#[async_trait]
impl MediaSource for VecSource {
    async fn next_frame(&mut self) -> crate::Result<Option<MediaFrame>> {
        // Yield so a long source does not starve other tasks in tests.
        tokio::task::yield_now().await;
        Ok(self.frames.next())
    }
}

/// Receives until `n` frames arrived or the stream ended.
pub async fn collect(sub: &mut Subscriber, n: usize) -> Result<Vec<FrameRef>, RecvError> {
    let mut batch = Batch::new();
    while batch.len() < n {
        let want = n - batch.len();
        match sub.recv_batch(&mut batch, want).await {
            Ok(_) => {}
            Err(RecvError::Closed(_)) => break,
            Err(e) => return Err(e),
        }
    }
    Ok(batch.to_refs())
}

/// A [`StorageBackend`] in memory, with [appending](ObjectWriter), and
/// faults to inject: failing writes ([`fail_writes`](Self::fail_writes))
/// and a slow medium ([`write_delay`](Self::write_delay)).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use arcly_core::testing::MemoryStorage;
/// use arcly_core::traits::StorageBackend;
/// use bytes::Bytes;
/// let storage = MemoryStorage::default();
/// let mut w = storage.open_writer("rec/a.ts").await.unwrap();
/// w.append(&[Bytes::from_static(b"ab"), Bytes::from_static(b"c")]).await.unwrap();
/// assert_eq!(storage.get("rec/a.ts").await.unwrap().unwrap(), &b"abc"[..]);
/// storage.fail_writes(Some(std::io::ErrorKind::StorageFull));
/// assert!(w.append(&[Bytes::from_static(b"d")]).await.is_err());
/// # });
/// ```
#[derive(Debug, Default)]
pub struct MemoryStorage {
    shared: Arc<MemoryShared>,
}

#[derive(Debug, Default)]
struct MemoryShared {
    objects: Mutex<BTreeMap<String, Bytes>>,
    faults: Mutex<Faults>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Faults {
    fail: Option<io::ErrorKind>,
    delay: Duration,
}

impl MemoryShared {
    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits out the write delay, then fails if writes are set to fail.
    async fn before_write(&self, path: &str) -> crate::Result<()> {
        let faults = *self.faults.lock().unwrap_or_else(|e| e.into_inner());
        if !faults.delay.is_zero() {
            tokio::time::sleep(faults.delay).await;
        }
        match faults.fail {
            Some(kind) => Err(crate::StreamError::Io(io::Error::new(kind, format!("injected failure writing {path}")))),
            None => Ok(()),
        }
    }
}

impl MemoryStorage {
    fn check(path: &str) -> crate::Result<()> {
        if path.is_empty() || path.starts_with('/') || path.split('/').any(|s| s == ".." || s.is_empty()) {
            return Err(crate::StreamError::Config(format!("storage path {path:?} is not a relative path")));
        }
        Ok(())
    }

    fn objects(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Bytes>> {
        self.shared.objects()
    }

    /// From now on every write (`put`, `open_writer`, `append`, `sync`)
    /// fails with an I/O error of `kind` (e.g. `StorageFull`), or, with
    /// `None`, works again. Reads keep working.
    pub fn fail_writes(&self, kind: Option<io::ErrorKind>) {
        self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()).fail = kind;
    }

    /// From now on every write waits `delay` first (a slow disk).
    pub fn write_delay(&self, delay: Duration) {
        self.shared.faults.lock().unwrap_or_else(|e| e.into_inner()).delay = delay;
    }
}

#[async_trait]
impl StorageBackend for MemoryStorage {
    async fn put(&self, path: &str, data: Bytes) -> crate::Result<()> {
        Self::check(path)?;
        self.shared.before_write(path).await?;
        self.objects().insert(path.to_owned(), data);
        Ok(())
    }

    async fn get(&self, path: &str) -> crate::Result<Option<Bytes>> {
        Self::check(path)?;
        Ok(self.objects().get(path).cloned())
    }

    async fn delete(&self, path: &str) -> crate::Result<()> {
        Self::check(path)?;
        self.objects().remove(path);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> crate::Result<Vec<String>> {
        Ok(self
            .objects()
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    async fn open_writer(&self, path: &str) -> crate::Result<Box<dyn ObjectWriter>> {
        Self::check(path)?;
        self.shared.before_write(path).await?;
        let mut objects = self.objects();
        if objects.contains_key(path) {
            return Err(crate::StreamError::Io(io::Error::new(io::ErrorKind::AlreadyExists, format!("{path} exists"))));
        }
        objects.insert(path.to_owned(), Bytes::new());
        Ok(Box::new(MemoryWriter { shared: self.shared.clone(), path: path.to_owned(), len: 0 }))
    }
}

/// An object of a [`MemoryStorage`] being appended to.
#[derive(Debug)]
struct MemoryWriter {
    shared: Arc<MemoryShared>,
    path: String,
    len: u64,
}

#[async_trait]
impl ObjectWriter for MemoryWriter {
    async fn append(&mut self, parts: &[Bytes]) -> crate::Result<()> {
        self.shared.before_write(&self.path).await?;
        let mut objects = self.shared.objects();
        let old = objects.get(&self.path).cloned().unwrap_or_default();
        let mut data = Vec::with_capacity(old.len() + parts.iter().map(Bytes::len).sum::<usize>());
        data.extend_from_slice(&old);
        for p in parts {
            data.extend_from_slice(p);
        }
        self.len = data.len() as u64;
        objects.insert(self.path.clone(), Bytes::from(data));
        Ok(())
    }

    async fn sync(&mut self) -> crate::Result<()> {
        self.shared.before_write(&self.path).await
    }

    fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_stream_is_in_decode_order() {
        let frames: Vec<_> = SyntheticStream::new(25, 50).with_audio(44_100).take(500).collect();
        assert!(frames[0].is_config() && frames[1].is_config());
        // Each frame starts no earlier than the previous one of its type, and
        // audio and video interleave within one audio frame of each other.
        let mut last = [i64::MIN; 3];
        let mut newest = i64::MIN;
        for f in &frames[2..] {
            let t = f.dts_in(Timebase::MPEG);
            let ty = f.frame_type().index();
            assert!(t > last[ty], "out of order at {f:?}");
            assert!(t >= newest.saturating_sub(1024 * 90_000 / 44_100 + 1), "interleaving off at {f:?}");
            last[ty] = t;
            newest = newest.max(t);
        }
        let video = frames.iter().filter(|f| f.codec == CodecId::H264 && !f.is_config()).count();
        let audio = frames.iter().filter(|f| f.codec == CodecId::Aac && !f.is_config()).count();
        // 25 fps video against 43.07 audio frames per second.
        let ratio = audio as f64 / video as f64;
        assert!((1.6..1.85).contains(&ratio), "{ratio}");
    }

    #[tokio::test]
    async fn memory_storage_refuses_escapes() {
        let s = MemoryStorage::default();
        s.put("a/1.ts", Bytes::from_static(b"x")).await.unwrap();
        s.put("a/2.ts", Bytes::from_static(b"y")).await.unwrap();
        s.put("b/1.ts", Bytes::from_static(b"z")).await.unwrap();
        assert_eq!(s.list("a/").await.unwrap(), ["a/1.ts", "a/2.ts"]);
        assert!(s.put("../x", Bytes::new()).await.is_err());
        assert!(s.put("/abs", Bytes::new()).await.is_err());
        s.delete("a/1.ts").await.unwrap();
        assert_eq!(s.get("a/1.ts").await.unwrap(), None);
    }

    #[tokio::test]
    async fn memory_storage_appends_and_injects_faults() {
        let s = MemoryStorage::default();
        let mut w = s.open_writer("r/1.mp4").await.unwrap();
        assert!(w.is_empty());
        w.append(&[Bytes::from_static(b"ab")]).await.unwrap();
        w.append(&[Bytes::from_static(b"c"), Bytes::from_static(b"de")]).await.unwrap();
        assert_eq!(w.len(), 5);
        assert_eq!(s.get("r/1.mp4").await.unwrap().unwrap(), &b"abcde"[..]);
        let e = s.open_writer("r/1.mp4").await.err().unwrap();
        assert!(matches!(&e, crate::StreamError::Io(io) if io.kind() == io::ErrorKind::AlreadyExists), "{e}");
        s.fail_writes(Some(io::ErrorKind::StorageFull));
        let e = w.append(&[Bytes::from_static(b"f")]).await.unwrap_err();
        assert!(matches!(&e, crate::StreamError::Io(io) if io.kind() == io::ErrorKind::StorageFull), "{e}");
        assert!(s.put("r/x", Bytes::new()).await.is_err());
        assert_eq!(s.get("r/1.mp4").await.unwrap().unwrap().len(), 5, "reads still work");
        s.fail_writes(None);
        w.append(&[Bytes::from_static(b"f")]).await.unwrap();
        assert_eq!(s.get("r/1.mp4").await.unwrap().unwrap(), &b"abcdef"[..]);
    }
}
