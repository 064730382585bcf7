//! The contracts protocols, outputs and hosts implement.
//!
//! - [`MediaSource`]: something that produces frames (a file, a pull
//!   client); the engine's source pump publishes them onto the bus.
//! - [`MediaSink`]: something that consumes frames (a recorder, a push
//!   client).
//! - [`ProtocolHandler`]: a long-running service the engine starts and stops
//!   (an HTTP or RTMP listener serving players). Ingest listeners implement
//!   [`InboundProtocol`](crate::inbound::InboundProtocol) instead.
//! - [`StorageBackend`]: where segments and recordings are written, with
//!   [`ObjectWriter`] for objects written by appending (recordings).
//! - [`HwAccelBackend`]: what a hardware codec backend can do.

use std::io;

use async_trait::async_trait;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::engine::Engine;
use crate::frame::{CodecId, MediaFrame};

/// Produces frames.
#[async_trait]
pub trait MediaSource: Send + 'static {
    /// The next frame, or `None` when the source has ended.
    async fn next_frame(&mut self) -> crate::Result<Option<MediaFrame>>;
}

/// Consumes frames.
#[async_trait]
pub trait MediaSink: Send + 'static {
    /// Writes one frame.
    async fn write_frame(&mut self, frame: &MediaFrame) -> crate::Result<()>;

    /// Completes the output (writes trailers, flushes). Called once at the end.
    async fn finish(&mut self) -> crate::Result<()> {
        Ok(())
    }
}

/// A long-running protocol service run by [`Engine::run`].
#[async_trait]
pub trait ProtocolHandler: Send + Sync + 'static {
    /// A short name for logs (`"http"`, `"rtmp-play"`).
    fn name(&self) -> &'static str;

    /// Serves until `shutdown` is cancelled, then returns after closing its
    /// listeners. An error ends the engine's run.
    async fn run(&self, engine: Engine, shutdown: CancellationToken) -> crate::Result<()>;
}

/// Stores named objects: HLS segments, recordings, playlists.
///
/// Paths are `/`-separated and relative; implementations must refuse paths
/// that escape their root.
///
/// Errors from the medium are [`StreamError::Io`](crate::StreamError::Io)
/// with the operating system's [`io::ErrorKind`] kept (`StorageFull`,
/// `PermissionDenied`, ...), so a caller can tell a full disk from a bad
/// path.
#[async_trait]
pub trait StorageBackend: Send + Sync + 'static {
    /// Writes (or replaces) an object. Where the medium allows it, a reader
    /// sees the old or the new object, never a part of one (a file system
    /// writes a temporary file and renames it).
    async fn put(&self, path: &str, data: Bytes) -> crate::Result<()>;
    /// Reads an object, `None` if absent.
    async fn get(&self, path: &str) -> crate::Result<Option<Bytes>>;
    /// Deletes an object; deleting an absent object is not an error.
    async fn delete(&self, path: &str) -> crate::Result<()>;
    /// Lists the objects whose path starts with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> crate::Result<Vec<String>>;

    /// Creates a new object written by appending (a recording): fails with
    /// [`io::ErrorKind::AlreadyExists`] if `path` exists. What each
    /// [`ObjectWriter::append`] wrote is readable, and survives the process
    /// being killed, once the call returns.
    ///
    /// The default refuses with [`io::ErrorKind::Unsupported`]: backends
    /// that cannot append (object stores without multipart appends) keep
    /// compiling and say so at run time.
    async fn open_writer(&self, path: &str) -> crate::Result<Box<dyn ObjectWriter>> {
        Err(crate::StreamError::Io(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("this storage backend cannot append (opening {path:?})"),
        )))
    }
}

/// An object being written by appending, from
/// [`StorageBackend::open_writer`]. Dropping it closes it without
/// [`sync`](Self::sync).
#[async_trait]
pub trait ObjectWriter: Send + Sync + 'static {
    /// Appends `parts`, in order, as one write: after a crash the object
    /// ends after a whole call's bytes or before them (unless the write
    /// itself was cut short by the crash), never inside an earlier call's.
    /// Once it returns the bytes survive the process being killed (they
    /// are in the operating system's cache); [`sync`](Self::sync) makes
    /// them survive a power loss.
    async fn append(&mut self, parts: &[Bytes]) -> crate::Result<()>;
    /// Makes everything appended so far durable (`fsync`).
    async fn sync(&mut self) -> crate::Result<()>;
    /// Bytes appended so far.
    fn len(&self) -> u64;
    /// True when nothing was appended yet.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A hardware codec backend's capabilities.
pub trait HwAccelBackend: Send + Sync + 'static {
    /// The backend's name (`"vaapi"`, `"nvenc"`).
    fn name(&self) -> &str;
    /// True if it can decode `codec`.
    fn can_decode(&self, codec: CodecId) -> bool;
    /// True if it can encode `codec`.
    fn can_encode(&self, codec: CodecId) -> bool;
}
