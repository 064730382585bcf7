//! Counters of the recorder, for logs, health and a metrics exporter.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a recorder's counters ([`Recorder::stats`](crate::Recorder::stats),
/// [`RecordingSink::stats`](crate::RecordingSink::stats)). Every counter
/// only grows, except `recordings_active`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecorderStats {
    /// Recordings started (a stream's first file opened, or a recording
    /// restarted after a write error).
    pub recordings_started: u64,
    /// Recordings running now.
    pub recordings_active: u64,
    /// Files opened.
    pub files_opened: u64,
    /// Files closed and listed in their playlist.
    pub files_closed: u64,
    /// Media bytes appended to files.
    pub bytes_written: u64,
    /// Storage errors that stopped a recording (full disk, permissions, ...).
    pub write_errors: u64,
    /// Times a recorder fell behind its stream and lost frames (a slow
    /// disk): each is a gap between two files of a recording.
    pub gaps: u64,
    /// Frames the muxer refused (malformed payloads), not written.
    pub frames_refused: u64,
}

/// The live counters behind [`RecorderStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) recordings_started: AtomicU64,
    pub(crate) recordings_active: AtomicU64,
    pub(crate) files_opened: AtomicU64,
    pub(crate) files_closed: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) gaps: AtomicU64,
    pub(crate) frames_refused: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> RecorderStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RecorderStats {
            recordings_started: get(&self.recordings_started),
            recordings_active: get(&self.recordings_active),
            files_opened: get(&self.files_opened),
            files_closed: get(&self.files_closed),
            bytes_written: get(&self.bytes_written),
            write_errors: get(&self.write_errors),
            gaps: get(&self.gaps),
            frames_refused: get(&self.frames_refused),
        }
    }
}
