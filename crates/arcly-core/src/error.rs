//! Errors shared by the kernel and the protocol crates.
//!
//! Errors are values with context: a protocol violation names the protocol,
//! what was wrong and where, so a closed session leaves a log line that says
//! why. Peer input never panics; it produces a [`ProtocolError`].

use std::fmt;

use crate::auth::Denial;
use crate::identity::{NameError, StreamId};

/// The crate's result type.
pub type Result<T, E = StreamError> = std::result::Result<T, E>;

/// What kind of protocol violation a peer committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolErrorKind {
    /// Input ended in the middle of a structure that cannot be resumed.
    Truncated,
    /// A field holds a value the specification does not allow.
    InvalidValue,
    /// A length field exceeds a configured or structural limit.
    TooLarge,
    /// A message arrived in a state where it is not allowed.
    UnexpectedMessage,
    /// A feature the peer used is not supported.
    Unsupported,
    /// A handshake failed (version, digest or key mismatch).
    Handshake,
    /// A checksum or integrity check failed.
    Checksum,
    /// The peer did not act before a deadline.
    Timeout,
}

/// A protocol violation, with the protocol it happened in and context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    /// The protocol (`"rtmp"`, `"mpegts"`, ...).
    pub protocol: &'static str,
    /// The kind of violation.
    pub kind: ProtocolErrorKind,
    /// What was wrong, for humans: which field, which value, which limit.
    pub context: String,
    /// Byte offset in the input where it was found, when known.
    pub offset: Option<u64>,
}

impl ProtocolError {
    /// A new error of `kind` in `protocol`.
    pub fn new(protocol: &'static str, kind: ProtocolErrorKind, context: impl Into<String>) -> Self {
        Self { protocol, kind, context: context.into(), offset: None }
    }

    /// Records the byte offset where the problem was found.
    pub fn at(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}: {}", self.protocol, self.kind, self.context)?;
        if let Some(off) = self.offset {
            write!(f, " (at byte {off})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProtocolError {}

/// The kernel's error type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// A peer broke its protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// A name failed validation.
    #[error(transparent)]
    InvalidName(#[from] NameError),
    /// The authenticator refused the request.
    #[error("not authorized to {action} {stream}: {reason}")]
    Unauthorized {
        /// "publish" or "play".
        action: &'static str,
        /// The stream.
        stream: StreamId,
        /// The authenticator's reason.
        reason: Denial,
    },
    /// The application is not configured on this engine.
    #[error("unknown application {0:?}")]
    UnknownApp(String),
    /// Someone already publishes this stream.
    #[error("stream {0} is already being published")]
    AlreadyPublishing(StreamId),
    /// No one publishes this stream.
    #[error("stream {0} is not being published")]
    NotFound(StreamId),
    /// A configured limit was reached.
    #[error("limit reached: {what} ({limit})")]
    LimitReached {
        /// Which limit.
        what: &'static str,
        /// Its value.
        limit: usize,
    },
    /// The stream or session was closed (unpublished, reaped, shut down).
    #[error("closed: {0}")]
    Closed(String),
    /// A configuration value was rejected.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An I/O error from a driver or backend.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_error_display_has_context() {
        let e = ProtocolError::new("rtmp", ProtocolErrorKind::TooLarge, "message length 20000000 > 16777215").at(1537);
        assert_eq!(e.to_string(), "rtmp TooLarge: message length 20000000 > 16777215 (at byte 1537)");
        let s: StreamError = e.into();
        assert!(s.to_string().starts_with("rtmp TooLarge"));
    }

    #[test]
    fn stream_error_names_the_stream() {
        let id = StreamId::parse("live/demo").unwrap();
        let e = StreamError::AlreadyPublishing(id);
        assert_eq!(e.to_string(), "stream live/demo is already being published");
    }
}
