//! The chunk stream: messages cut into chunks with compressed headers.
//!
//! [`ChunkDecoder`] takes bytes in pieces of any size and returns whole
//! messages; it applies Set Chunk Size, Abort Message and Window
//! Acknowledgement Size itself (they change how the next bytes are read) and
//! tells when an Acknowledgement is due. [`ChunkEncoder`] cuts messages into
//! chunks, compressing headers (types 0–3) per chunk stream, and returns the
//! chunk headers and slices of the message body as separate [`Bytes`], so a
//! media payload is never copied on the way out.
//!
//! ```
//! use arcly_rtmp::chunk::{ChunkDecoder, ChunkEncoder};
//! use bytes::Bytes;
//! let mut enc = ChunkEncoder::new();
//! let mut parts = Vec::new();
//! let body = Bytes::from(vec![7u8; 300]); // three chunks of at most 128 bytes
//! enc.write(6, 9, 1, 40, &[body.clone()], &mut parts);
//! let wire: Vec<u8> = parts.concat();
//! let mut dec = ChunkDecoder::new(Default::default());
//! dec.push(&wire);
//! let msg = dec.next_message().unwrap().unwrap();
//! assert_eq!((msg.type_id, msg.stream_id, msg.timestamp), (9, 1, 40));
//! assert_eq!(msg.payload, body);
//! ```

use std::collections::HashMap;

use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::PROTOCOL;

/// The chunk size both sides start with.
pub const DEFAULT_CHUNK_SIZE: usize = 128;
/// The largest chunk size the protocol allows (2^31 - 1).
pub const MAX_CHUNK_SIZE: u32 = 0x7fff_ffff;

const SET_CHUNK_SIZE: u8 = 1;
const ABORT: u8 = 2;
const WINDOW_ACK_SIZE: u8 = 5;
const EXTENDED: u32 = 0xff_ffff;

fn err(kind: ProtocolErrorKind, context: impl Into<String>) -> ProtocolError {
    ProtocolError::new(PROTOCOL, kind, context)
}

/// Limits of a [`ChunkDecoder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecoderLimits {
    /// The largest chunk size a peer may set (default 64 KiB).
    pub max_chunk_size: u32,
    /// The largest message (default 16 MiB); larger is refused.
    pub max_message_size: u32,
    /// Most bytes of incomplete messages held across all chunk streams
    /// (default 17 MiB: one largest message plus 1 MiB for the other chunk
    /// streams). The server session holds less until a publish is accepted,
    /// see [`SessionConfig::max_buffered_before_publish`].
    ///
    /// [`SessionConfig::max_buffered_before_publish`]: crate::SessionConfig::max_buffered_before_publish
    pub max_buffered: usize,
    /// Most chunk streams a peer may use (default 64).
    pub max_chunk_streams: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        Self {
            max_chunk_size: 64 << 10,
            max_message_size: 16 << 20,
            max_buffered: (16 << 20) + (1 << 20),
            max_chunk_streams: 64,
        }
    }
}

/// One reassembled message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawMessage {
    /// The chunk stream it came on.
    pub csid: u32,
    /// The message type (1–22).
    pub type_id: u8,
    /// The message stream id (0 for the connection).
    pub stream_id: u32,
    /// The 32-bit timestamp in milliseconds (absolute, wrapping).
    pub timestamp: u32,
    /// The body.
    pub payload: Bytes,
}

#[derive(Debug, Default)]
struct InState {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    partial: Option<BytesMut>,
}

/// Reassembles messages from chunks. See the [module docs](self).
#[derive(Debug)]
pub struct ChunkDecoder {
    limits: DecoderLimits,
    buf: BytesMut,
    chunk_size: usize,
    streams: HashMap<u32, InState>,
    buffered: usize,
    received: u64,
    window: u32,
    last_ack: u64,
    ack_due: Option<u32>,
}

impl ChunkDecoder {
    /// A decoder with `limits` and the default chunk size of 128.
    pub fn new(limits: DecoderLimits) -> Self {
        Self {
            limits,
            buf: BytesMut::new(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
            buffered: 0,
            received: 0,
            window: 0,
            last_ack: 0,
            ack_due: None,
        }
    }

    /// Appends input. Call [`next_message`](Self::next_message) until it
    /// returns `None` before pushing more, so at most one partial chunk is
    /// held here.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Replaces the limits, from the next chunk on (a session raises them
    /// once a peer is trusted with more). Bytes already held count against
    /// the new limits.
    pub fn set_limits(&mut self, limits: DecoderLimits) {
        self.limits = limits;
    }

    /// The limits in force.
    pub fn limits(&self) -> &DecoderLimits {
        &self.limits
    }

    /// The peer's current chunk size.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Bytes of input not yet decoded.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The sequence number to acknowledge, once per window crossed (set by
    /// the peer's Window Acknowledgement Size).
    pub fn take_ack(&mut self) -> Option<u32> {
        self.ack_due.take()
    }

    /// The next complete message, `None` if more input is needed.
    pub fn next_message(&mut self) -> Result<Option<RawMessage>, ProtocolError> {
        loop {
            let Some(chunk) = self.next_chunk()? else { return Ok(None) };
            if let Some(msg) = chunk {
                self.apply_control(&msg)?;
                return Ok(Some(msg));
            }
        }
    }

    fn apply_control(&mut self, msg: &RawMessage) -> Result<(), ProtocolError> {
        let value = || msg.payload.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        match msg.type_id {
            SET_CHUNK_SIZE => {
                let size = value().ok_or_else(|| err(ProtocolErrorKind::Truncated, "Set Chunk Size"))? & MAX_CHUNK_SIZE;
                if size == 0 || size > self.limits.max_chunk_size {
                    return Err(err(
                        ProtocolErrorKind::TooLarge,
                        format!("chunk size {size} outside 1..={}", self.limits.max_chunk_size),
                    ));
                }
                self.chunk_size = size as usize;
            }
            ABORT => {
                let csid = value().ok_or_else(|| err(ProtocolErrorKind::Truncated, "Abort Message"))?;
                if let Some(p) = self.streams.get_mut(&csid).and_then(|s| s.partial.take()) {
                    self.buffered -= p.len();
                }
            }
            WINDOW_ACK_SIZE => {
                self.window = value().ok_or_else(|| err(ProtocolErrorKind::Truncated, "Window Ack Size"))?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Decodes one chunk: `None` if incomplete, `Some(None)` if it did not
    /// finish a message.
    #[allow(clippy::option_option)]
    fn next_chunk(&mut self) -> Result<Option<Option<RawMessage>>, ProtocolError> {
        let data = &self.buf[..];
        let Some(&b0) = data.first() else { return Ok(None) };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3f {
            0 => match data.get(1) {
                Some(&b) => (64 + u32::from(b), 2),
                None => return Ok(None),
            },
            1 => match data.get(1..3) {
                Some(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                None => return Ok(None),
            },
            low => (u32::from(low), 1),
        };
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(h) = data.get(pos..pos + header_len) else { return Ok(None) };
        let known = self.streams.get(&csid);
        if known.is_none() {
            if fmt != 0 {
                return Err(err(
                    ProtocolErrorKind::UnexpectedMessage,
                    format!("chunk type {fmt} on chunk stream {csid} before any type 0 chunk"),
                ));
            }
            if self.streams.len() >= self.limits.max_chunk_streams {
                return Err(err(
                    ProtocolErrorKind::TooLarge,
                    format!("more than {} chunk streams", self.streams.len()),
                ));
            }
        }
        let prev = known.map(|s| (s.length, s.type_id, s.stream_id, s.extended, s.partial.as_ref().map(BytesMut::len)));
        let (prev_len, prev_type, prev_stream, prev_ext, partial_len) = prev.unwrap_or((0, 0, 0, false, None));
        let be24 = |b: &[u8]| u32::from_be_bytes([0, b[0], b[1], b[2]]);
        let ts_field = if fmt < 3 { be24(&h[0..3]) } else { 0 };
        let (length, type_id) = if fmt < 2 { (be24(&h[3..6]), h[6]) } else { (prev_len, prev_type) };
        let stream_id = if fmt == 0 { u32::from_le_bytes([h[7], h[8], h[9], h[10]]) } else { prev_stream };
        pos += header_len;
        let extended = if fmt < 3 { ts_field == EXTENDED } else { prev_ext };
        let mut ts_value = ts_field;
        if extended {
            let Some(e) = data.get(pos..pos + 4) else { return Ok(None) };
            ts_value = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
            pos += 4;
        }
        if length > self.limits.max_message_size {
            return Err(err(
                ProtocolErrorKind::TooLarge,
                format!("message of {length} bytes exceeds the limit of {}", self.limits.max_message_size),
            ));
        }
        // A header of type 0–2 starts a new message; a partial one on that
        // chunk stream is dropped, as if aborted.
        let continuing = fmt == 3 && partial_len.is_some();
        let have = if continuing { partial_len.unwrap_or(0) } else { 0 };
        let chunk_len = (length as usize - have).min(self.chunk_size);
        if data.len() < pos + chunk_len {
            return Ok(None);
        }
        // The chunk is complete: commit.
        let st = self.streams.entry(csid).or_default();
        if !continuing {
            if let Some(p) = st.partial.take() {
                self.buffered -= p.len();
            }
            match fmt {
                0 => {
                    st.timestamp = ts_value;
                    // As ffmpeg and librtmp: a type 3 header starting a new
                    // message after a type 0 adds the type 0 timestamp.
                    st.delta = ts_value;
                }
                1 | 2 => {
                    st.delta = ts_value;
                    st.timestamp = st.timestamp.wrapping_add(ts_value);
                }
                _ => st.timestamp = st.timestamp.wrapping_add(st.delta),
            }
            st.length = length;
            st.type_id = type_id;
            st.stream_id = stream_id;
            if fmt < 3 {
                st.extended = extended;
            }
        }
        self.buf.advance(pos);
        let consumed = pos + chunk_len;
        let body = self.buf.split_to(chunk_len);
        let message = |st: &InState, payload: Bytes| RawMessage {
            csid,
            type_id: st.type_id,
            stream_id: st.stream_id,
            timestamp: st.timestamp,
            payload,
        };
        let out = if !continuing && chunk_len == length as usize {
            // The whole message in one chunk: a slice of the input, no copy.
            Some(message(st, body.freeze()))
        } else {
            if self.buffered + chunk_len > self.limits.max_buffered {
                return Err(err(
                    ProtocolErrorKind::TooLarge,
                    format!("more than {} bytes of incomplete messages", self.limits.max_buffered),
                ));
            }
            let partial = st.partial.get_or_insert_with(BytesMut::new);
            partial.extend_from_slice(&body);
            self.buffered += chunk_len;
            if partial.len() == length as usize {
                let done = st.partial.take().unwrap_or_default();
                self.buffered -= done.len();
                Some(message(st, done.freeze()))
            } else {
                None
            }
        };
        self.count(consumed);
        Ok(Some(out))
    }

    fn count(&mut self, n: usize) {
        self.received += n as u64;
        if self.window > 0 && self.received - self.last_ack >= u64::from(self.window) {
            self.last_ack = self.received;
            self.ack_due = Some(self.received as u32);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct OutState {
    timestamp: u32,
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    fmt: u8,
}

/// Header bytes the encoder allocates at a time: a few dozen headers, as
/// every player has one encoder.
const SCRATCH: usize = 512;

/// Cuts messages into chunks. See the [module docs](self).
#[derive(Debug)]
pub struct ChunkEncoder {
    chunk_size: usize,
    /// Last header per chunk stream. A sender uses a handful of chunk
    /// streams, so a list scan beats hashing on every message.
    streams: Vec<(u32, OutState)>,
    scratch: BytesMut,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    /// An encoder with the default chunk size of 128.
    pub fn new() -> Self {
        Self { chunk_size: DEFAULT_CHUNK_SIZE, streams: Vec::new(), scratch: BytesMut::new() }
    }

    /// The chunk size in use.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Writes a Set Chunk Size message (on chunk stream 2) to `out` and uses
    /// `size` (clamped to 1..=2^31-1) from the next message on.
    pub fn set_chunk_size(&mut self, size: u32, out: &mut Vec<Bytes>) {
        let size = size.clamp(1, MAX_CHUNK_SIZE);
        self.write(2, SET_CHUNK_SIZE, 0, 0, &[Bytes::copy_from_slice(&size.to_be_bytes())], out);
        self.chunk_size = size as usize;
    }

    /// Makes room for `n` more scratch bytes, allocating [`SCRATCH`] at a
    /// time.
    fn room(&mut self, n: usize) {
        if self.scratch.capacity() - self.scratch.len() < n {
            self.scratch.reserve(n.max(SCRATCH));
        }
    }

    fn basic_header(&mut self, fmt: u8, csid: u32) {
        let fmt = fmt << 6;
        match csid {
            2..=63 => self.scratch.put_u8(fmt | csid as u8),
            64..=319 => self.scratch.put_slice(&[fmt, (csid - 64) as u8]),
            _ => {
                let v = csid.saturating_sub(64).min(0xffff);
                self.scratch.put_slice(&[fmt | 1, (v & 0xff) as u8, (v >> 8) as u8]);
            }
        }
    }

    /// Writes one message as chunks onto `out`: chunk headers as small
    /// [`Bytes`] and the body `parts` as slices of themselves (no copy).
    /// `csid` must be 2..=65599. Bodies longer than 2^24-1 bytes cannot be
    /// expressed in RTMP and would be cut; the caller keeps them out (as
    /// [`ServerSession::send_media`](crate::ServerSession::send_media)
    /// does).
    pub fn write(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        parts: &[Bytes],
        out: &mut Vec<Bytes>,
    ) {
        let length = parts.iter().map(Bytes::len).sum::<usize>();
        let mut body = BodyWriter::start(self, csid, type_id, stream_id, timestamp, length);
        for part in parts {
            body.share(part, out);
        }
        body.finish(out);
    }

    /// Like [`write`](Self::write) for a body of `head` then `payload`,
    /// with `head` copied next to the chunk header: a media message then
    /// goes out as one small header part and the payload, with no buffer
    /// of its own for the few bytes of its codec header.
    ///
    /// ```
    /// use arcly_rtmp::chunk::ChunkEncoder;
    /// use bytes::Bytes;
    /// let payload = Bytes::from_static(b"frame");
    /// let mut out = Vec::new();
    /// ChunkEncoder::new().write_with_head(6, 9, 1, 0, &[0x17, 1, 0, 0, 0], &payload, &mut out);
    /// assert_eq!(out.len(), 2);
    /// assert_eq!(&out[0][12..], &[0x17, 1, 0, 0, 0]); // after the 12-byte type 0 header
    /// assert_eq!(out[1], payload);
    /// ```
    #[expect(clippy::too_many_arguments, reason = "the arguments of `write`, with the body in two pieces")]
    pub fn write_with_head(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        head: &[u8],
        payload: &Bytes,
        out: &mut Vec<Bytes>,
    ) {
        let mut body = BodyWriter::start(self, csid, type_id, stream_id, timestamp, head.len() + payload.len());
        body.copy(head);
        body.share(payload, out);
        body.finish(out);
    }
}

/// One message's body being cut into chunks: bytes go either into the
/// encoder's scratch (copied, next to the chunk headers) or onto `out` as
/// slices of the caller's buffers.
struct BodyWriter<'a> {
    enc: &'a mut ChunkEncoder,
    csid: u32,
    /// The extended timestamp each continuation header repeats.
    extended: Option<u32>,
    length: usize,
    written: usize,
    left_in_chunk: usize,
}

impl<'a> BodyWriter<'a> {
    /// Writes the first chunk's header into the scratch.
    fn start(enc: &'a mut ChunkEncoder, csid: u32, type_id: u8, stream_id: u32, timestamp: u32, length: usize) -> Self {
        let length = length.min(0xff_ffff) as u32;
        let slot = enc.streams.iter().position(|(id, _)| *id == csid);
        let prev = slot.map(|i| enc.streams[i].1);
        let (fmt, delta) = match prev {
            Some(p) if p.stream_id == stream_id && timestamp >= p.timestamp => {
                let delta = timestamp - p.timestamp;
                if p.length != length || p.type_id != type_id {
                    (1, delta)
                } else if p.delta != delta || p.fmt == 0 {
                    (2, delta)
                } else {
                    (3, delta)
                }
            }
            _ => (0, timestamp),
        };
        let ts_field = if fmt == 0 { timestamp } else { delta };
        let extended = ts_field >= EXTENDED;
        enc.room(32);
        enc.basic_header(fmt, csid);
        if fmt < 3 {
            enc.scratch.put_uint(u64::from(ts_field.min(EXTENDED)), 3);
        }
        if fmt < 2 {
            enc.scratch.put_uint(u64::from(length), 3);
            enc.scratch.put_u8(type_id);
        }
        if fmt == 0 {
            enc.scratch.put_u32_le(stream_id);
        }
        if extended {
            enc.scratch.put_u32(ts_field);
        }
        let header_fmt = if fmt == 3 { prev.map_or(0, |p| p.fmt) } else { fmt };
        let state = OutState { timestamp, delta, length, type_id, stream_id, fmt: header_fmt };
        match slot {
            Some(i) => enc.streams[i].1 = state,
            None => enc.streams.push((csid, state)),
        }
        let left_in_chunk = enc.chunk_size;
        Self { enc, csid, extended: extended.then_some(ts_field), length: length as usize, written: 0, left_in_chunk }
    }

    /// Starts a continuation chunk (type 3) if the current one is full;
    /// returns how many more body bytes fit in the current chunk.
    fn next_chunk(&mut self) -> usize {
        if self.left_in_chunk == 0 {
            self.enc.room(16);
            self.enc.basic_header(3, self.csid);
            if let Some(ts) = self.extended {
                self.enc.scratch.put_u32(ts);
            }
            self.left_in_chunk = self.enc.chunk_size;
        }
        self.left_in_chunk
    }

    /// Copies `bytes` into the scratch as body bytes.
    fn copy(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.written < self.length {
            let n = self.next_chunk().min(bytes.len()).min(self.length - self.written);
            self.enc.room(n);
            self.enc.scratch.put_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.written += n;
            self.left_in_chunk -= n;
        }
    }

    /// Adds `part` as slices of itself, after whatever the scratch holds.
    fn share(&mut self, part: &Bytes, out: &mut Vec<Bytes>) {
        let mut off = 0;
        while off < part.len() && self.written < self.length {
            let n = self.next_chunk().min(part.len() - off).min(self.length - self.written);
            self.flush(out);
            out.push(part.slice(off..off + n));
            off += n;
            self.written += n;
            self.left_in_chunk -= n;
        }
    }

    /// Moves the scratch's pending bytes onto `out` as one part.
    fn flush(&mut self, out: &mut Vec<Bytes>) {
        if !self.enc.scratch.is_empty() {
            out.push(self.enc.scratch.split().freeze());
        }
    }

    fn finish(mut self, out: &mut Vec<Bytes>) {
        self.flush(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(wire: &[u8], splits: &[usize]) -> Vec<RawMessage> {
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        let mut out = Vec::new();
        let mut start = 0;
        for &s in splits.iter().chain(std::iter::once(&wire.len())) {
            let end = s.clamp(start, wire.len());
            dec.push(&wire[start..end]);
            start = end;
            while let Some(m) = dec.next_message().unwrap() {
                out.push(m);
            }
        }
        out
    }

    /// (csid, type, stream, timestamp, body)
    type Msg = (u32, u8, u32, u32, Vec<u8>);

    fn sample() -> (Vec<u8>, Vec<Msg>) {
        let mut enc = ChunkEncoder::new();
        let mut parts = Vec::new();
        let mut want = Vec::new();
        let msgs: Vec<Msg> = vec![
            (3, 20, 0, 0, vec![1; 10]),
            (6, 9, 1, 0, vec![2; 300]),
            (6, 9, 1, 40, vec![3; 300]),
            (6, 9, 1, 80, vec![4; 300]),
            (6, 9, 1, 120, vec![5; 300]),
            (4, 8, 1, 0x0100_0000, vec![6; 500]), // extended timestamp
            (4, 8, 1, 0x0100_0021, vec![7; 500]),
            (4, 8, 1, 0x0100_0042, vec![8; 500]),
            (70, 18, 1, 5, vec![]),
            (400, 18, 1, 5, vec![9; 3]),
            (6, 9, 1, 100, vec![10; 20]), // backwards: type 0
        ];
        for (i, m) in msgs.iter().enumerate() {
            if i == 4 {
                enc.set_chunk_size(4096, &mut parts);
                want.push((2, 1, 0, 0, 4096u32.to_be_bytes().to_vec()));
            }
            let (a, b) = m.4.split_at(m.4.len() / 3);
            enc.write(m.0, m.1, m.2, m.3, &[Bytes::copy_from_slice(a), Bytes::copy_from_slice(b)], &mut parts);
            want.push(m.clone());
        }
        (parts.concat(), want)
    }

    fn tuples(msgs: Vec<RawMessage>) -> Vec<Msg> {
        msgs.into_iter().map(|m| (m.csid, m.type_id, m.stream_id, m.timestamp, m.payload.to_vec())).collect()
    }

    #[test]
    fn round_trip_whole_and_every_byte() {
        let (wire, want) = sample();
        assert_eq!(tuples(decode_all(&wire, &[])), want);
        let every: Vec<usize> = (0..wire.len()).collect();
        assert_eq!(tuples(decode_all(&wire, &every)), want);
    }

    proptest! {
        #[test]
        fn random_splits_give_the_same_messages(mut splits in proptest::collection::vec(0usize..6000, 0..40)) {
            let (wire, want) = sample();
            splits.sort_unstable();
            prop_assert_eq!(tuples(decode_all(&wire, &splits)), want);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut dec = ChunkDecoder::new(DecoderLimits::default());
            dec.push(&data);
            while let Ok(Some(_)) = dec.next_message() {}
        }
    }

    #[test]
    fn type3_new_message_after_type2_reuses_delta_and_ext_on_type3() {
        // Type 0 at ts 0xFFFFFF+1 (extended), 10 bytes; type 3 continuation
        // must carry the extended timestamp again.
        let mut wire = vec![0x04];
        wire.extend_from_slice(&[0xff, 0xff, 0xff, 0, 0, 200, 8, 1, 0, 0, 0]);
        wire.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        wire.extend_from_slice(&[1; 128]);
        wire.push(0xc4);
        wire.extend_from_slice(&0x0100_0000u32.to_be_bytes());
        wire.extend_from_slice(&[2; 72]);
        // Type 2 with delta 20, then a type 3 new message: delta 20 again.
        wire.extend_from_slice(&[0x84, 0, 0, 20]);
        wire.extend_from_slice(&[3; 128]);
        wire.push(0xc4);
        wire.extend_from_slice(&[3; 72]);
        wire.push(0xc4);
        wire.extend_from_slice(&[4; 128]);
        wire.push(0xc4);
        wire.extend_from_slice(&[4; 72]);
        let msgs = decode_all(&wire, &[]);
        let ts: Vec<u32> = msgs.iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![0x0100_0000, 0x0100_0014, 0x0100_0028]);
        assert!(msgs.iter().all(|m| m.payload.len() == 200));
    }

    #[test]
    fn limits_are_enforced() {
        let mut dec = ChunkDecoder::new(DecoderLimits { max_message_size: 100, ..Default::default() });
        dec.push(&[0x04, 0, 0, 0, 0, 0, 101, 9, 1, 0, 0, 0]);
        assert_eq!(dec.next_message().unwrap_err().kind, ProtocolErrorKind::TooLarge);
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        dec.push(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(dec.next_message().unwrap_err().kind, ProtocolErrorKind::TooLarge);
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        dec.push(&[0x44, 0, 0, 0, 0, 0, 4, 1]);
        assert_eq!(dec.next_message().unwrap_err().kind, ProtocolErrorKind::UnexpectedMessage);
    }

    #[test]
    fn abort_drops_partial_and_ack_is_due() {
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        // Window of 100 bytes.
        dec.push(&[0x02, 0, 0, 0, 0, 0, 4, 5, 0, 0, 0, 0, 0, 0, 0, 100]);
        assert_eq!(dec.next_message().unwrap().unwrap().type_id, 5);
        // 200-byte message, first chunk only.
        dec.push(&[0x04, 0, 0, 0, 0, 0, 200, 9, 1, 0, 0, 0]);
        dec.push(&[0; 128]);
        assert!(dec.next_message().unwrap().is_none());
        assert_eq!(dec.take_ack(), Some(16 + 12 + 128));
        assert_eq!(dec.buffered, 128);
        dec.push(&[0x02, 0, 0, 0, 0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 4]);
        assert_eq!(dec.next_message().unwrap().unwrap().type_id, 2);
        assert_eq!(dec.buffered, 0);
    }
}
