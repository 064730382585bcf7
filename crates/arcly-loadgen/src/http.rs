//! A minimal HTTP/1.1 client for the players: one `GET` at a time on one
//! keep-alive connection, responses with `Content-Length`, chunked, or
//! delimited by the close.
//!
//! The response parser is sans-IO ([`Response`], [`ChunkDecoder`]) so the
//! tests feed it bytes; [`HttpConn`] drives it on a socket through a
//! [`Player`], which owns the connection policy (slow reads, churn stop).
//! Bodies go to a [`Body`] sink as they arrive: a bounded buffer for
//! playlists, the streaming fMP4 reader for parts.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::Player;

/// Longest response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 1024;
/// Bytes kept of an error response's body (the rest is read and dropped).
const MAX_ERROR_TEXT: usize = 512;

/// Where a response body goes, piece by piece.
pub(crate) trait Body {
    fn data(&mut self, bytes: &[u8]) -> Result<(), String>;
}

/// A body collected in memory, refused beyond `max` bytes (a playlist, an
/// initialisation segment, an error message).
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub(crate) buf: Vec<u8>,
    max: usize,
}

impl Collected {
    pub(crate) fn new(max: usize) -> Self {
        Self { buf: Vec::new(), max }
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
    }
}

impl Body for Collected {
    fn data(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.buf.len() + bytes.len() > self.max {
            return Err(format!("response body over {} bytes", self.max));
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

/// HTTP/1.1 chunked transfer decoding (RFC 9112 §7.1), trailers included,
/// so a keep-alive connection is left at the next response.
#[derive(Debug, Default)]
pub(crate) struct ChunkDecoder {
    line: Vec<u8>,
    state: ChunkState,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    /// Data bytes left in the current chunk.
    Data(u64),
    /// CRLF bytes left after a chunk's data.
    DataEnd(u8),
    /// Trailer lines after the last chunk, up to an empty line.
    Trailer,
    Done,
}

impl ChunkDecoder {
    pub(crate) fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes what it can of `data`, passing chunk data to `body`; returns
    /// the bytes consumed (fewer than `data.len()` only once done).
    pub(crate) fn feed(&mut self, data: &[u8], body: &mut dyn Body) -> Result<usize, String> {
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            match self.state {
                ChunkState::Done => break,
                ChunkState::Data(left) => {
                    let k = rest.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    body.data(&rest[..k])?;
                    at += k;
                    let left = left - k as u64;
                    self.state = if left == 0 { ChunkState::DataEnd(2) } else { ChunkState::Data(left) };
                }
                ChunkState::DataEnd(left) => {
                    let expected: &[u8] = if left == 2 { b"\r\n" } else { b"\n" };
                    let k = rest.len().min(usize::from(left));
                    if rest[..k] != expected[..k] {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    at += k;
                    let left = left - k as u8;
                    self.state = if left == 0 { ChunkState::Size } else { ChunkState::DataEnd(left) };
                }
                ChunkState::Size | ChunkState::Trailer => {
                    let Some(i) = rest.iter().position(|&b| b == b'\n') else {
                        self.push_line(rest)?;
                        at = data.len();
                        continue;
                    };
                    self.push_line(&rest[..i])?;
                    at += i + 1;
                    let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
                    self.state = if self.state == ChunkState::Trailer {
                        if line.is_empty() { ChunkState::Done } else { ChunkState::Trailer }
                    } else {
                        let text = std::str::from_utf8(line).map_err(|_| "chunk size line is not text")?;
                        let hex = text.split(';').next().unwrap_or("").trim();
                        let size = u64::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size line {text:?}"))?;
                        if size == 0 { ChunkState::Trailer } else { ChunkState::Data(size) }
                    };
                    self.line.clear();
                }
            }
        }
        Ok(at)
    }

    fn push_line(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.line.len() + bytes.len() > MAX_LINE {
            return Err("chunk size or trailer line too long".into());
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }
}

/// How the body of the response being read is delimited.
#[derive(Debug, Default)]
enum Framing {
    #[default]
    Head,
    Length(u64),
    Chunked(ChunkDecoder),
    UntilClose,
    Done,
}

/// One response being parsed: head, then body to a [`Body`].
#[derive(Debug, Default)]
pub(crate) struct Response {
    head: Vec<u8>,
    framing: Framing,
    /// The status code, once the head is read.
    pub(crate) status: u16,
    /// The server closes the connection after this response.
    pub(crate) close: bool,
    /// Bytes received for this response so far.
    pub(crate) received: u64,
    /// The start of the body of a response that is not 200: the caller's
    /// sink expects what it asked for, so other bodies are kept here.
    error_text: ErrorText,
}

/// The start of an error response's body.
#[derive(Debug, Default)]
struct ErrorText(Vec<u8>);

impl Body for ErrorText {
    fn data(&mut self, bytes: &[u8]) -> Result<(), String> {
        let k = bytes.len().min(MAX_ERROR_TEXT.saturating_sub(self.0.len()));
        self.0.extend_from_slice(&bytes[..k]);
        Ok(())
    }
}

impl Response {
    /// Ready for the next response (buffers are kept).
    pub(crate) fn reset(&mut self) {
        self.head.clear();
        self.framing = Framing::Head;
        self.status = 0;
        self.close = false;
        self.received = 0;
        self.error_text.0.clear();
    }

    /// The start of the body of a response other than 200, as text.
    pub(crate) fn error_text(&self) -> String {
        String::from_utf8_lossy(&self.error_text.0).trim().to_owned()
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self.framing, Framing::Done)
    }

    /// Feeds bytes read from the connection; `Ok(true)` once the response
    /// is complete. Bytes beyond it are an error: requests are never
    /// pipelined, so the server has nothing more to say.
    pub(crate) fn feed(&mut self, mut data: &[u8], body: &mut dyn Body) -> Result<bool, String> {
        self.received += data.len() as u64;
        while !data.is_empty() {
            let body: &mut dyn Body = if self.status == 200 { &mut *body } else { &mut self.error_text };
            match &mut self.framing {
                Framing::Head => {
                    let from = self.head.len().saturating_sub(3);
                    let room = MAX_HEAD.saturating_sub(self.head.len());
                    let k = data.len().min(room);
                    self.head.extend_from_slice(&data[..k]);
                    match self.head[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                        Some(i) => {
                            let end = from + i + 4;
                            // What came after the head is body.
                            let body_bytes = self.head.len() - end;
                            data = &data[k - body_bytes..];
                            self.head.truncate(end);
                            self.parse_head()?;
                        }
                        None if k < data.len() || self.head.len() >= MAX_HEAD => {
                            return Err("response head too long".into());
                        }
                        None => data = &[],
                    }
                }
                Framing::Length(left) => {
                    let k = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    body.data(&data[..k])?;
                    *left -= k as u64;
                    data = &data[k..];
                    if *left == 0 {
                        self.framing = Framing::Done;
                    }
                }
                Framing::Chunked(d) => {
                    let k = d.feed(data, body)?;
                    data = &data[k..];
                    if d.is_done() {
                        self.framing = Framing::Done;
                    }
                }
                Framing::UntilClose => {
                    body.data(data)?;
                    data = &[];
                }
                Framing::Done => return Err(format!("{} unexpected bytes after the response", data.len())),
            }
        }
        Ok(self.is_done())
    }

    /// The connection closed: `Ok(())` if that ends the response.
    pub(crate) fn eof(&mut self) -> Result<(), String> {
        match self.framing {
            Framing::Done => Ok(()),
            Framing::UntilClose => {
                self.framing = Framing::Done;
                self.close = true;
                Ok(())
            }
            Framing::Head if self.received == 0 => Err("connection closed before a response".into()),
            _ => Err("connection closed in the middle of a response".into()),
        }
    }

    fn parse_head(&mut self) -> Result<(), String> {
        let text = std::str::from_utf8(&self.head).map_err(|_| "response head is not text")?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut words = status_line.split(' ');
        let version = words.next().unwrap_or("");
        let status = words.next().and_then(|s| s.parse::<u16>().ok());
        let Some(status) = status.filter(|s| (100..600).contains(s) && version.starts_with("HTTP/1.")) else {
            return Err(format!("bad status line {status_line:?}"));
        };
        if (100..200).contains(&status) {
            // An interim response (100 Continue): the real one follows.
            self.head.clear();
            return Ok(());
        }
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut close = version == "HTTP/1.0";
        for line in lines.filter(|l| !l.is_empty()) {
            let Some((name, value)) = line.split_once(':') else {
                return Err(format!("bad header line {line:?}"));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                let n = value.parse::<u64>().map_err(|_| format!("bad Content-Length {value:?}"))?;
                if length.is_some_and(|l| l != n) {
                    return Err("conflicting Content-Length headers".into());
                }
                length = Some(n);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.rsplit(',').next().is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
            }
        }
        self.status = status;
        self.close = close;
        self.framing = if status == 204 || status == 304 {
            Framing::Done
        } else if chunked {
            Framing::Chunked(ChunkDecoder::default())
        } else {
            match length {
                Some(0) => Framing::Done,
                Some(n) => Framing::Length(n),
                None => {
                    self.close = true;
                    Framing::UntilClose
                }
            }
        };
        Ok(())
    }
}

/// One player's keep-alive connection to an HTTP server.
pub(crate) struct HttpConn {
    addr: String,
    host: String,
    socket: Option<TcpStream>,
    response: Response,
    request: Vec<u8>,
}

impl HttpConn {
    pub(crate) fn new(addr: &str, host: &str) -> Self {
        Self {
            addr: addr.to_owned(),
            host: host.to_owned(),
            socket: None,
            response: Response::default(),
            request: Vec::with_capacity(256),
        }
    }

    /// The start of the last response's body if its status was not 200.
    pub(crate) fn error_text(&self) -> String {
        self.response.error_text()
    }

    /// `GET path`; the body goes to `body` if the status is 200. Returns the status, or `None`
    /// when the player's time is up (a churn player leaving).
    pub(crate) async fn get(
        &mut self,
        player: &mut Player<'_>,
        path: &str,
        body: &mut dyn Body,
    ) -> Result<Option<u16>, String> {
        self.request.clear();
        self.request.extend_from_slice(b"GET ");
        self.request.extend_from_slice(path.as_bytes());
        self.request.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        self.request.extend_from_slice(self.host.as_bytes());
        self.request.extend_from_slice(b"\r\nUser-Agent: arcly-loadgen\r\n\r\n");
        // A kept-alive connection the server closed meanwhile fails before
        // any byte of a response: the request is sent again, once, on a new
        // connection (GET is idempotent).
        for attempt in 0..2 {
            let fresh = self.socket.is_none();
            if fresh {
                self.socket = Some(player.connect(&self.addr).await?);
            }
            let retry_allowed = !fresh && attempt == 0;
            match self.exchange(player, body).await {
                Err(Exchange::Stale(_)) if retry_allowed => self.socket = None,
                Err(Exchange::Stale(e) | Exchange::Failed(e)) => {
                    self.socket = None;
                    return Err(e);
                }
                Ok(status) => return Ok(status),
            }
        }
        Err("no connection".into())
    }

    async fn exchange(&mut self, player: &mut Player<'_>, body: &mut dyn Body) -> Result<Option<u16>, Exchange> {
        let Some(socket) = self.socket.as_mut() else { return Err(Exchange::Failed("no connection".into())) };
        if let Err(e) = socket.write_all(&self.request).await {
            return Err(Exchange::Stale(format!("write: {e}")));
        }
        self.response.reset();
        loop {
            let Some(socket) = self.socket.as_ref() else { return Err(Exchange::Failed("no connection".into())) };
            if !player.readable(socket).await.map_err(Exchange::Failed)? {
                return Ok(None);
            }
            let response = &mut self.response;
            // The shared buffer is released before any await.
            let (n, done) = {
                let mut buf = player.sh.buf.borrow_mut();
                let len = player.read_len(buf.len());
                match socket.try_read(&mut buf[..len]) {
                    Ok(0) => match response.eof() {
                        Ok(()) => (0, true),
                        Err(e) => return Err(Exchange::new(response.received, e)),
                    },
                    Ok(n) => (n, response.feed(&buf[..n], body).map_err(Exchange::Failed)?),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(Exchange::new(response.received, format!("read: {e}"))),
                }
            };
            if player.playing_since.is_some() {
                player.bytes(n);
            }
            if done {
                let status = self.response.status;
                if self.response.close {
                    self.socket = None;
                }
                player.throttle(n).await;
                return Ok(Some(status));
            }
            player.throttle(n).await;
        }
    }
}

/// How one request/response exchange failed.
enum Exchange {
    /// Before any byte of the response: the connection may have been a
    /// stale keep-alive one.
    Stale(String),
    Failed(String),
}

impl Exchange {
    fn new(received: u64, error: String) -> Self {
        if received == 0 { Self::Stale(error) } else { Self::Failed(error) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(bytes: &[u8], piece: usize) -> Result<(Response, Vec<u8>), String> {
        let mut r = Response::default();
        let mut body = Collected::new(1 << 20);
        let mut done = false;
        for chunk in bytes.chunks(piece) {
            assert!(!done, "done before the end");
            done = r.feed(chunk, &mut body)?;
        }
        if !done {
            r.eof()?;
        }
        Ok((r, body.buf))
    }

    #[test]
    fn content_length_and_chunked_bodies_in_any_pieces() {
        let fixed = b"HTTP/1.1 200 OK\r\ncontent-type: video/mp4\r\ncontent-length: 11\r\n\r\nhello world";
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n";
        let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world";
        for piece in 1..20 {
            for (input, close_expected) in [(&fixed[..], false), (&chunked[..], false), (&close[..], true)] {
                let (r, body) = parse_in_pieces(input, piece).unwrap();
                assert_eq!((r.status, r.close, body.as_slice()), (200, close_expected, &b"hello world"[..]));
            }
        }
    }

    #[test]
    fn errors_and_edge_cases() {
        let (r, body) = parse_in_pieces(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 7).unwrap();
        assert_eq!((r.status, body.len()), (404, 0));
        let (r, _) = parse_in_pieces(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 3).unwrap();
        assert_eq!(r.status, 204);
        assert!(parse_in_pieces(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabc", 100).is_err());
        assert!(parse_in_pieces(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", 100).is_err());
        assert!(parse_in_pieces(b"SIP/2.0 200 OK\r\n\r\n", 100).is_err());
        assert!(parse_in_pieces(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 100).is_err());
        assert!(parse_in_pieces(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 100).is_err());
        let long = [b"HTTP/1.1 200 OK\r\nx: ".as_slice(), &[b'a'; MAX_HEAD], b"\r\n\r\n"].concat();
        assert!(parse_in_pieces(&long, 4096).is_err());
        let mut small = Collected::new(4);
        let mut r = Response::default();
        assert!(r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", &mut small).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let base = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        for _ in 0..20_000 {
            let mut bytes = base.to_vec();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let at = (seed % bytes.len() as u64) as usize;
            bytes[at] = (seed >> 32) as u8;
            bytes.truncate(((seed >> 40) % (bytes.len() as u64 + 1)) as usize);
            let _ = parse_in_pieces(&bytes, 1 + (seed >> 56) as usize % 9);
        }
    }
}
