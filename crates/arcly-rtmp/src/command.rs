//! NetConnection and NetStream commands and the server's answers.
//!
//! A command is a name, a transaction id, a command object (often null)
//! and arguments, all AMF0. The server answers `connect`, `createStream`,
//! `releaseStream`, `FCPublish`, `FCUnpublish` and `getStreamLength` with
//! `_result` (or `_error`) carrying the same transaction id, and reports
//! `publish` and `play` outcomes with `onStatus` events (transaction id 0).
//!
//! ```
//! use arcly_rtmp::command::{Command, split_stream_name};
//! let status = Command::on_status("status", "NetStream.Publish.Start", "Start publishing");
//! let parsed = Command::parse(arcly_mux::amf0::decode_all(&status.encode()).unwrap()).unwrap();
//! assert_eq!(parsed.status_code(), Some("NetStream.Publish.Start"));
//! assert_eq!(split_stream_name("key?token=abc"), ("key", Some("token=abc")));
//! ```

use arcly_core::{ProtocolError, ProtocolErrorKind};
use arcly_mux::amf0::{self, Amf0Value};
use bytes::{Bytes, BytesMut};

use crate::PROTOCOL;

/// Status codes sent in `onStatus`.
pub mod codes {
    /// The connection was accepted.
    pub const CONNECT_SUCCESS: &str = "NetConnection.Connect.Success";
    /// The connection was refused.
    pub const CONNECT_REJECTED: &str = "NetConnection.Connect.Rejected";
    /// Publishing started.
    pub const PUBLISH_START: &str = "NetStream.Publish.Start";
    /// The name is in use or invalid (nginx-rtmp also uses it for
    /// duplicate publishers).
    pub const PUBLISH_BAD_NAME: &str = "NetStream.Publish.BadName";
    /// The publisher was refused by authorization.
    pub const PUBLISH_UNAUTHORIZED: &str = "NetStream.Publish.Unauthorized";
    /// Unpublishing finished.
    pub const UNPUBLISH_SUCCESS: &str = "NetStream.Unpublish.Success";
    /// A play list was reset.
    pub const PLAY_RESET: &str = "NetStream.Play.Reset";
    /// Playback started.
    pub const PLAY_START: &str = "NetStream.Play.Start";
    /// The stream does not exist.
    pub const PLAY_STREAM_NOT_FOUND: &str = "NetStream.Play.StreamNotFound";
    /// The publisher stopped.
    pub const PLAY_UNPUBLISH_NOTIFY: &str = "NetStream.Play.UnpublishNotify";
    /// A publisher started publishing the stream a player plays.
    pub const PLAY_PUBLISH_NOTIFY: &str = "NetStream.Play.PublishNotify";
    /// Playback was refused by authorization.
    pub const PLAY_FAILED: &str = "NetStream.Play.Failed";
}

/// One command message.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    /// The command name (`connect`, `publish`, `_result`, ...).
    pub name: String,
    /// The transaction id; 0 for commands that expect no answer.
    pub transaction_id: f64,
    /// The command object (`Null` when absent).
    pub object: Amf0Value,
    /// The remaining arguments.
    pub args: Vec<Amf0Value>,
}

impl Command {
    /// A command.
    pub fn new(name: impl Into<String>, transaction_id: f64, object: Amf0Value, args: Vec<Amf0Value>) -> Self {
        Self { name: name.into(), transaction_id, object, args }
    }

    /// Reads a command from its decoded AMF0 values, taking them over (no
    /// copy). The name must be a string; a missing transaction id reads as
    /// 0, a missing object as null.
    pub fn parse(values: Vec<Amf0Value>) -> Result<Self, ProtocolError> {
        let mut values = values.into_iter();
        let name = match values.next() {
            Some(Amf0Value::String(s) | Amf0Value::LongString(s) | Amf0Value::XmlDocument(s)) => s,
            _ => {
                return Err(ProtocolError::new(PROTOCOL, ProtocolErrorKind::InvalidValue, "command without a name"));
            }
        };
        let transaction_id = values.next().as_ref().and_then(Amf0Value::as_f64).unwrap_or(0.0);
        let object = values.next().unwrap_or(Amf0Value::Null);
        Ok(Self { name, transaction_id, object, args: values.collect() })
    }

    /// The AMF0 body.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        amf0::encode(&Amf0Value::from(self.name.as_str()), &mut out);
        amf0::encode(&Amf0Value::Number(self.transaction_id), &mut out);
        amf0::encode(&self.object, &mut out);
        for a in &self.args {
            amf0::encode(a, &mut out);
        }
        out.freeze()
    }

    /// The `n`th argument as a string.
    pub fn arg_str(&self, n: usize) -> Option<&str> {
        self.args.get(n).and_then(Amf0Value::as_str)
    }

    /// The `n`th argument as a number.
    pub fn arg_f64(&self, n: usize) -> Option<f64> {
        self.args.get(n).and_then(Amf0Value::as_f64)
    }

    /// For `onStatus`, `_result` and `_error`: the `code` of the first
    /// information object.
    pub fn status_code(&self) -> Option<&str> {
        self.args.iter().chain(std::iter::once(&self.object)).find_map(|v| v.get("code").and_then(Amf0Value::as_str))
    }

    /// `_result` for `transaction_id`.
    pub fn result(transaction_id: f64, object: Amf0Value, args: Vec<Amf0Value>) -> Self {
        Self::new("_result", transaction_id, object, args)
    }

    /// `_error` for `transaction_id` with a status object.
    pub fn error(transaction_id: f64, code: &str, description: &str) -> Self {
        Self::new("_error", transaction_id, Amf0Value::Null, vec![status_object("error", code, description)])
    }

    /// `onStatus` with `level` (`status`, `error`, `warning`), `code` and
    /// `description`.
    pub fn on_status(level: &str, code: &str, description: &str) -> Self {
        Self::new("onStatus", 0.0, Amf0Value::Null, vec![status_object(level, code, description)])
    }

    /// The `_result` of `connect`.
    pub fn connect_result(transaction_id: f64, object_encoding: f64) -> Self {
        let props = Amf0Value::Object(vec![
            ("fmsVer".into(), Amf0Value::from("FMS/3,0,1,123")),
            ("capabilities".into(), Amf0Value::Number(31.0)),
        ]);
        let mut info = status_fields("status", codes::CONNECT_SUCCESS, "Connection succeeded.");
        info.push(("objectEncoding".into(), Amf0Value::Number(object_encoding)));
        Self::result(transaction_id, props, vec![Amf0Value::Object(info)])
    }
}

fn status_fields(level: &str, code: &str, description: &str) -> Vec<(String, Amf0Value)> {
    vec![
        ("level".into(), Amf0Value::from(level)),
        ("code".into(), Amf0Value::from(code)),
        ("description".into(), Amf0Value::from(description)),
    ]
}

/// An information object `{level, code, description}`.
pub fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::Object(status_fields(level, code, description))
}

/// Splits `key?query` into the name and the query (without `?`).
pub fn split_stream_name(name: &str) -> (&str, Option<&str>) {
    match name.split_once('?') {
        Some((n, q)) => (n, Some(q)),
        None => (name, None),
    }
}

/// The `|RtmpSampleAccess` data message body (audio and video sample
/// access allowed), sent to players when playback starts.
pub fn sample_access() -> Bytes {
    let mut out = BytesMut::new();
    amf0::encode_all(
        &[Amf0Value::from("|RtmpSampleAccess"), Amf0Value::Boolean(true), Amf0Value::Boolean(true)],
        &mut out,
    );
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_connect() {
        let c = Command::new(
            "connect",
            1.0,
            Amf0Value::Object(vec![
                ("app".into(), Amf0Value::from("live")),
                ("tcUrl".into(), Amf0Value::from("rtmp://h/live")),
            ]),
            vec![],
        );
        let back = Command::parse(amf0::decode_all(&c.encode()).unwrap()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.object.get("app").and_then(Amf0Value::as_str), Some("live"));
        assert!(Command::parse(vec![Amf0Value::Number(1.0)]).is_err());
        let r = Command::connect_result(1.0, 0.0);
        assert_eq!(r.status_code(), Some(codes::CONNECT_SUCCESS));
        assert_eq!(Command::error(5.0, "X.Y", "d").status_code(), Some("X.Y"));
    }

    #[test]
    fn stream_names() {
        assert_eq!(split_stream_name("test"), ("test", None));
        assert_eq!(split_stream_name("a?b=c&d"), ("a", Some("b=c&d")));
    }
}
