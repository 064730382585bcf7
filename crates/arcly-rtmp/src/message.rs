//! RTMP messages: protocol control (types 1–6), user control events (4),
//! audio (8), video (9), data (18, and 15 as AMF3) and commands (20, and 17
//! as AMF3).
//!
//! AMF3 data and commands start with a format byte 0; it is skipped and the
//! rest read as AMF0, which is what every encoder that sends type 15/17
//! actually puts there. Audio, video and data bodies are FLV tag bodies and
//! stay [`Bytes`] for the FLV parsers of `arcly-mux`.
//!
//! Commands are limited to [`MAX_COMMAND_SIZE`] and data messages to
//! [`MAX_DATA_SIZE`] bytes, checked before any AMF0 is decoded: decoded
//! values take many times their encoded size, and real ones are small (a
//! larger one is a protocol error that closes the connection).
//!
//! ```
//! use arcly_rtmp::message::{Message, UserControl};
//! let (type_id, body) = Message::UserControl(UserControl::PingRequest(7)).encode();
//! assert_eq!(Message::parse(type_id, body).unwrap(), Message::UserControl(UserControl::PingRequest(7)));
//! ```

use arcly_core::{ProtocolError, ProtocolErrorKind};
use arcly_mux::amf0;
use bytes::{BufMut, Bytes, BytesMut};

use crate::PROTOCOL;
use crate::command::Command;

/// The largest command message (types 17 and 20) accepted: 64 KiB.
pub const MAX_COMMAND_SIZE: usize = 64 << 10;
/// The largest data message (types 15 and 18, also inside an aggregate)
/// accepted: 256 KiB.
pub const MAX_DATA_SIZE: usize = 256 << 10;

/// Message type ids.
pub mod types {
    /// Set Chunk Size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message.
    pub const ABORT: u8 = 2;
    /// Acknowledgement.
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size.
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Set Peer Bandwidth.
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// Audio.
    pub const AUDIO: u8 = 8;
    /// Video.
    pub const VIDEO: u8 = 9;
    /// Data, AMF3.
    pub const DATA_AMF3: u8 = 15;
    /// Command, AMF3.
    pub const COMMAND_AMF3: u8 = 17;
    /// Data, AMF0.
    pub const DATA_AMF0: u8 = 18;
    /// Command, AMF0.
    pub const COMMAND_AMF0: u8 = 20;
    /// Aggregate: several audio/video/data messages as FLV tags.
    pub const AGGREGATE: u8 = 22;
}

/// A user control event (message type 4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserControl {
    /// A stream became functional.
    StreamBegin(u32),
    /// Playback of a stream ended.
    StreamEof(u32),
    /// A stream has no more data for now.
    StreamDry(u32),
    /// The client's buffer length for a stream.
    SetBufferLength {
        /// The message stream.
        stream_id: u32,
        /// Buffer length in milliseconds.
        millis: u32,
    },
    /// The stream is recorded.
    StreamIsRecorded(u32),
    /// A ping with the sender's timestamp.
    PingRequest(u32),
    /// The answer to a ping, echoing its timestamp.
    PingResponse(u32),
    /// Another event, kept as is.
    Other {
        /// The event type.
        event: u16,
        /// Its data.
        data: Bytes,
    },
}

/// A parsed message.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// Set Chunk Size.
    SetChunkSize(u32),
    /// Abort the message on a chunk stream.
    Abort(u32),
    /// Bytes received so far.
    Acknowledgement(u32),
    /// A user control event.
    UserControl(UserControl),
    /// Window Acknowledgement Size.
    WindowAckSize(u32),
    /// Set Peer Bandwidth.
    SetPeerBandwidth {
        /// Window size.
        size: u32,
        /// Limit type: 0 hard, 1 soft, 2 dynamic.
        limit: u8,
    },
    /// An audio message body (an FLV audio tag body).
    Audio(Bytes),
    /// A video message body (an FLV video tag body).
    Video(Bytes),
    /// A data message body in AMF0 (the AMF3 marker removed).
    Data(Bytes),
    /// A command.
    Command(Command),
    /// Any other message type, kept as is.
    Other {
        /// The type id.
        type_id: u8,
        /// The body.
        payload: Bytes,
    },
}

fn u32_at(payload: &[u8], at: usize, what: &str) -> Result<u32, ProtocolError> {
    payload
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| ProtocolError::new(PROTOCOL, ProtocolErrorKind::Truncated, format!("{what}: short body")))
}

impl UserControl {
    fn parse(payload: &Bytes) -> Result<Self, ProtocolError> {
        let event = payload
            .get(..2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| ProtocolError::new(PROTOCOL, ProtocolErrorKind::Truncated, "user control event"))?;
        let v = || u32_at(payload, 2, "user control event");
        Ok(match event {
            0 => Self::StreamBegin(v()?),
            1 => Self::StreamEof(v()?),
            2 => Self::StreamDry(v()?),
            3 => Self::SetBufferLength { stream_id: v()?, millis: u32_at(payload, 6, "SetBufferLength")? },
            4 => Self::StreamIsRecorded(v()?),
            6 => Self::PingRequest(v()?),
            7 => Self::PingResponse(v()?),
            _ => Self::Other { event, data: payload.slice(2..) },
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        let (event, a, b) = match self {
            Self::StreamBegin(s) => (0, *s, None),
            Self::StreamEof(s) => (1, *s, None),
            Self::StreamDry(s) => (2, *s, None),
            Self::SetBufferLength { stream_id, millis } => (3, *stream_id, Some(*millis)),
            Self::StreamIsRecorded(s) => (4, *s, None),
            Self::PingRequest(t) => (6, *t, None),
            Self::PingResponse(t) => (7, *t, None),
            Self::Other { event, data } => {
                out.put_u16(*event);
                out.put_slice(data);
                return;
            }
        };
        out.put_u16(event);
        out.put_u32(a);
        if let Some(b) = b {
            out.put_u32(b);
        }
    }
}

/// Refuses a `what` message larger than `limit` bytes.
pub(crate) fn check_size(payload: &[u8], limit: usize, what: &str) -> Result<(), ProtocolError> {
    if payload.len() > limit {
        return Err(ProtocolError::new(
            PROTOCOL,
            ProtocolErrorKind::TooLarge,
            format!("{what} message of {} bytes exceeds the limit of {} KiB", payload.len(), limit >> 10),
        ));
    }
    Ok(())
}

/// Removes the AMF3 format byte (0) of a type 15/17 body.
fn strip_amf3_marker(payload: Bytes) -> Bytes {
    if payload.first() == Some(&0) { payload.slice(1..) } else { payload }
}

impl Message {
    /// Parses a message body of type `type_id`. Commands larger than
    /// [`MAX_COMMAND_SIZE`] and data larger than [`MAX_DATA_SIZE`] are
    /// refused before they are decoded.
    pub fn parse(type_id: u8, payload: Bytes) -> Result<Self, ProtocolError> {
        use types::*;
        match type_id {
            COMMAND_AMF0 | COMMAND_AMF3 => check_size(&payload, MAX_COMMAND_SIZE, "command")?,
            DATA_AMF0 | DATA_AMF3 => check_size(&payload, MAX_DATA_SIZE, "data")?,
            _ => {}
        }
        Ok(match type_id {
            SET_CHUNK_SIZE => Self::SetChunkSize(u32_at(&payload, 0, "Set Chunk Size")? & 0x7fff_ffff),
            ABORT => Self::Abort(u32_at(&payload, 0, "Abort")?),
            ACKNOWLEDGEMENT => Self::Acknowledgement(u32_at(&payload, 0, "Acknowledgement")?),
            USER_CONTROL => Self::UserControl(UserControl::parse(&payload)?),
            WINDOW_ACK_SIZE => Self::WindowAckSize(u32_at(&payload, 0, "Window Ack Size")?),
            SET_PEER_BANDWIDTH => Self::SetPeerBandwidth {
                size: u32_at(&payload, 0, "Set Peer Bandwidth")?,
                limit: payload.get(4).copied().unwrap_or(2),
            },
            AUDIO => Self::Audio(payload),
            VIDEO => Self::Video(payload),
            DATA_AMF0 => Self::Data(payload),
            DATA_AMF3 => Self::Data(strip_amf3_marker(payload)),
            COMMAND_AMF0 => Self::Command(Command::parse(amf0::decode_all(&payload)?)?),
            COMMAND_AMF3 => Self::Command(Command::parse(amf0::decode_all(&strip_amf3_marker(payload))?)?),
            _ => Self::Other { type_id, payload },
        })
    }

    /// The type id and body of this message (AMF0 for data and commands).
    pub fn encode(&self) -> (u8, Bytes) {
        use types::*;
        let mut out = BytesMut::new();
        let type_id = match self {
            Self::SetChunkSize(v) => {
                out.put_u32(*v);
                SET_CHUNK_SIZE
            }
            Self::Abort(v) => {
                out.put_u32(*v);
                ABORT
            }
            Self::Acknowledgement(v) => {
                out.put_u32(*v);
                ACKNOWLEDGEMENT
            }
            Self::UserControl(e) => {
                e.encode(&mut out);
                USER_CONTROL
            }
            Self::WindowAckSize(v) => {
                out.put_u32(*v);
                WINDOW_ACK_SIZE
            }
            Self::SetPeerBandwidth { size, limit } => {
                out.put_u32(*size);
                out.put_u8(*limit);
                SET_PEER_BANDWIDTH
            }
            Self::Audio(b) => return (AUDIO, b.clone()),
            Self::Video(b) => return (VIDEO, b.clone()),
            Self::Data(b) => return (DATA_AMF0, b.clone()),
            Self::Command(c) => return (COMMAND_AMF0, c.encode()),
            Self::Other { type_id, payload } => return (*type_id, payload.clone()),
        };
        (type_id, out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arcly_mux::amf0::Amf0Value;

    #[test]
    fn control_round_trips() {
        let all = [
            Message::SetChunkSize(4096),
            Message::Abort(3),
            Message::Acknowledgement(1 << 20),
            Message::WindowAckSize(2_500_000),
            Message::SetPeerBandwidth { size: 2_500_000, limit: 2 },
            Message::UserControl(UserControl::StreamBegin(1)),
            Message::UserControl(UserControl::StreamEof(1)),
            Message::UserControl(UserControl::StreamDry(1)),
            Message::UserControl(UserControl::SetBufferLength { stream_id: 1, millis: 3000 }),
            Message::UserControl(UserControl::StreamIsRecorded(1)),
            Message::UserControl(UserControl::PingResponse(99)),
            Message::Video(Bytes::from_static(&[0x17, 0])),
        ];
        for m in all {
            let (t, b) = m.encode();
            assert_eq!(Message::parse(t, b).unwrap(), m);
        }
    }

    #[test]
    fn amf3_command_is_read_as_amf0() {
        let cmd = Command::new("play", 4.0, Amf0Value::Null, vec![Amf0Value::from("test")]);
        let mut body = vec![0u8];
        body.extend_from_slice(&cmd.encode());
        assert_eq!(Message::parse(types::COMMAND_AMF3, Bytes::from(body)).unwrap(), Message::Command(cmd));
        assert!(Message::parse(types::USER_CONTROL, Bytes::from_static(&[0])).is_err());
    }

    /// Commands and data are limited before decoding: a command of nulls
    /// one byte over 64 KiB is refused (undecoded it would be ~65536
    /// values), data one byte over 256 KiB too; at the limit they pass.
    #[test]
    fn command_and_data_size_limits() {
        let mut cmd = Command::new("x", 0.0, Amf0Value::Null, vec![]).encode().to_vec();
        cmd.resize(MAX_COMMAND_SIZE + 1, 0x06);
        for t in [types::COMMAND_AMF0, types::COMMAND_AMF3] {
            let e = Message::parse(t, Bytes::from(cmd.clone())).unwrap_err();
            assert_eq!(e.kind, ProtocolErrorKind::TooLarge);
            assert!(e.context.contains("64 KiB"), "{e}");
        }
        let mut string = Command::new("x", 0.0, Amf0Value::Null, vec![]).encode().to_vec();
        let arg = Amf0Value::from("s".repeat(MAX_COMMAND_SIZE - string.len() - 3));
        let mut tail = BytesMut::new();
        amf0::encode(&arg, &mut tail);
        string.extend_from_slice(&tail);
        assert_eq!(string.len(), MAX_COMMAND_SIZE);
        assert!(Message::parse(types::COMMAND_AMF0, Bytes::from(string)).is_ok());
        for t in [types::DATA_AMF0, types::DATA_AMF3] {
            let e = Message::parse(t, Bytes::from(vec![5u8; MAX_DATA_SIZE + 1])).unwrap_err();
            assert_eq!(e.kind, ProtocolErrorKind::TooLarge);
            assert!(e.context.contains("256 KiB"), "{e}");
            assert!(Message::parse(t, Bytes::from(vec![5u8; MAX_DATA_SIZE])).is_ok());
        }
    }
}
