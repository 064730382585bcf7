//! The RTMP handshake, server and client side, sans-IO.
//!
//! Both the plain handshake (C1/S1 of random bytes, each side echoes the
//! other's) and the digest ("complex") handshake of Flash Player and Flash
//! Media Server are supported: a digest C1 carries an HMAC-SHA256 over the
//! packet keyed with the start of the Flash Player key, at an offset computed
//! by scheme 0 (bytes 8–11) or scheme 1 (bytes 772–775). The server answers a
//! digest client with a digest S1 (same scheme, the Media Server key) and an
//! S2 that proves it saw the client's digest, and a plain client with an echo.
//!
//! ```
//! use arcly_rtmp::handshake::{ClientHandshake, ServerHandshake};
//! let (mut client, c0c1) = ClientHandshake::new(true).unwrap();
//! let mut server = ServerHandshake::new();
//! let mut s0s1s2 = Vec::new();
//! assert_eq!(server.handle(&c0c1, &mut s0s1s2).unwrap(), c0c1.len());
//! let (used, c2) = client.handle(&s0s1s2).unwrap();
//! assert_eq!(used, s0s1s2.len());
//! assert!(client.is_done() && client.server_digest_ok());
//! server.handle(&c2.unwrap(), &mut Vec::new()).unwrap();
//! assert!(server.is_done());
//! assert!(server.client_used_digest());
//! ```

use arcly_core::{ProtocolError, ProtocolErrorKind};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::PROTOCOL;

/// The size of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;
/// The RTMP version byte sent in C0/S0.
pub const RTMP_VERSION: u8 = 3;

const KEY_TAIL: [u8; 32] = [
    0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1, 0x02, 0x9e, 0x7e, 0x57, 0x6e, 0xec, 0x5d,
    0x2d, 0x29, 0x80, 0x6f, 0xab, 0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb, 0x31, 0xae,
];
const PLAYER_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";
const SERVER_TEXT: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";
const DIGEST_LEN: usize = 32;

fn full_key<const N: usize>(text: &[u8; N]) -> Vec<u8> {
    let mut key = text.to_vec();
    key.extend_from_slice(&KEY_TAIL);
    key
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length: `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key"));
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn handshake_error(context: impl Into<String>) -> ProtocolError {
    ProtocolError::new(PROTOCOL, ProtocolErrorKind::Handshake, context)
}

fn random_fill(buf: &mut [u8]) -> Result<(), ProtocolError> {
    getrandom::fill(buf).map_err(|e| handshake_error(format!("no random bytes: {e}")))
}

/// Where the digest of a digest handshake packet lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DigestScheme {
    /// Offset from bytes 8–11 (digest in the first half).
    Scheme0,
    /// Offset from bytes 772–775 (digest in the second half).
    Scheme1,
}

impl DigestScheme {
    /// The byte offset of the digest in `packet` (1536 bytes).
    fn offset(self, packet: &[u8; HANDSHAKE_SIZE]) -> usize {
        let base = match self {
            Self::Scheme0 => 8,
            Self::Scheme1 => 772,
        };
        let sum: usize = packet[base..base + 4].iter().map(|&b| usize::from(b)).sum();
        sum % 728 + base + 4
    }
}

fn packet_digest(packet: &[u8; HANDSHAKE_SIZE], offset: usize, key: &[u8]) -> [u8; 32] {
    hmac(key, &[&packet[..offset], &packet[offset + DIGEST_LEN..]])
}

/// Finds a valid digest in `packet` signed with `key`: the scheme and digest.
fn find_digest(packet: &[u8; HANDSHAKE_SIZE], key: &[u8]) -> Option<(DigestScheme, [u8; 32])> {
    [DigestScheme::Scheme1, DigestScheme::Scheme0].into_iter().find_map(|scheme| {
        let off = scheme.offset(packet);
        let digest = packet_digest(packet, off, key);
        (digest[..] == packet[off..off + DIGEST_LEN]).then_some((scheme, digest))
    })
}

/// A digest packet: time 0, `version`, random bytes and the digest.
fn digest_packet(
    scheme: DigestScheme,
    key: &[u8],
    version: [u8; 4],
) -> Result<([u8; HANDSHAKE_SIZE], [u8; 32]), ProtocolError> {
    let mut p = [0u8; HANDSHAKE_SIZE];
    random_fill(&mut p[8..])?;
    p[4..8].copy_from_slice(&version);
    let off = scheme.offset(&p);
    let digest = packet_digest(&p, off, key);
    p[off..off + DIGEST_LEN].copy_from_slice(&digest);
    Ok((p, digest))
}

/// A C2/S2 answering a digest: random bytes signed with a key derived from
/// the peer's digest.
fn digest_response(full_key: &[u8], peer_digest: &[u8; 32]) -> Result<[u8; HANDSHAKE_SIZE], ProtocolError> {
    let mut p = [0u8; HANDSHAKE_SIZE];
    random_fill(&mut p)?;
    let key = hmac(full_key, &[peer_digest]);
    let sig = hmac(&key, &[&p[..HANDSHAKE_SIZE - DIGEST_LEN]]);
    p[HANDSHAKE_SIZE - DIGEST_LEN..].copy_from_slice(&sig);
    Ok(p)
}

fn check_response(packet: &[u8], full_key: &[u8], own_digest: &[u8; 32]) -> bool {
    let key = hmac(full_key, &[own_digest]);
    hmac(&key, &[&packet[..HANDSHAKE_SIZE - DIGEST_LEN]])[..] == packet[HANDSHAKE_SIZE - DIGEST_LEN..]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerState {
    WaitC0C1,
    WaitC2,
    Done,
}

/// The server side: reads C0+C1, answers S0+S1+S2, reads C2.
#[derive(Debug)]
pub struct ServerHandshake {
    state: ServerState,
    buf: Vec<u8>,
    digest: bool,
}

impl Default for ServerHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerHandshake {
    /// A handshake waiting for C0+C1.
    pub fn new() -> Self {
        Self { state: ServerState::WaitC0C1, buf: Vec::with_capacity(1 + HANDSHAKE_SIZE), digest: false }
    }

    /// True once C2 was read: what follows is chunk data.
    pub fn is_done(&self) -> bool {
        self.state == ServerState::Done
    }

    /// True if the client signed C1 (digest handshake).
    pub fn client_used_digest(&self) -> bool {
        self.digest
    }

    /// Reads from `data`, appends what to send to `out` and returns how many
    /// bytes of `data` were used (the rest belongs to the chunk stream once
    /// [`is_done`](Self::is_done)). C2 is not verified: many clients send an
    /// arbitrary one.
    pub fn handle(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<usize, ProtocolError> {
        let mut used = 0;
        while used < data.len() && self.state != ServerState::Done {
            let need = match self.state {
                ServerState::WaitC0C1 => 1 + HANDSHAKE_SIZE,
                _ => HANDSHAKE_SIZE,
            };
            let take = (need - self.buf.len()).min(data.len() - used);
            self.buf.extend_from_slice(&data[used..used + take]);
            used += take;
            if self.buf.len() < need {
                break;
            }
            match self.state {
                ServerState::WaitC0C1 => {
                    self.answer(out)?;
                    self.state = ServerState::WaitC2;
                }
                _ => self.state = ServerState::Done,
            }
            self.buf.clear();
            if self.state == ServerState::Done {
                // A connection lives for hours after its handshake.
                self.buf = Vec::new();
            }
        }
        Ok(used)
    }

    fn answer(&mut self, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        let version = self.buf[0];
        // 3 is RTMP; 6 (RTMPE) and 8/9 (encrypted) need keys we do not do.
        if version != RTMP_VERSION {
            return Err(handshake_error(format!("unsupported RTMP version {version}")));
        }
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        c1.copy_from_slice(&self.buf[1..]);
        out.push(RTMP_VERSION);
        // Plain clients send zero in the version field; only look for a
        // digest when it is set, as Flash Player does.
        let found = if c1[4..8] != [0; 4] { find_digest(&c1, PLAYER_TEXT) } else { None };
        match found {
            Some((scheme, client_digest)) => {
                self.digest = true;
                let (s1, _) = digest_packet(scheme, SERVER_TEXT, [0x0d, 0x0e, 0x0a, 0x0d])?;
                let s2 = digest_response(&full_key(SERVER_TEXT), &client_digest)?;
                out.extend_from_slice(&s1);
                out.extend_from_slice(&s2);
            }
            None => {
                let mut s1 = [0u8; HANDSHAKE_SIZE];
                random_fill(&mut s1[8..])?;
                out.extend_from_slice(&s1);
                out.extend_from_slice(&c1);
            }
        }
        Ok(())
    }
}

/// The client side: sends C0+C1, reads S0+S1+S2, sends C2.
#[derive(Debug)]
pub struct ClientHandshake {
    c1: [u8; HANDSHAKE_SIZE],
    c1_digest: Option<[u8; 32]>,
    buf: Vec<u8>,
    done: bool,
    server_digest_ok: bool,
}

impl ClientHandshake {
    /// Starts a handshake; returns it and C0+C1 to send. With `digest`, C1
    /// is signed (scheme 1, as Flash Player 10 does).
    pub fn new(digest: bool) -> Result<(Self, Bytes), ProtocolError> {
        let (c1, c1_digest) = if digest {
            let (p, d) = digest_packet(DigestScheme::Scheme1, PLAYER_TEXT, [0x80, 0x00, 0x07, 0x02])?;
            (p, Some(d))
        } else {
            let mut p = [0u8; HANDSHAKE_SIZE];
            random_fill(&mut p[8..])?;
            (p, None)
        };
        let mut c0c1 = Vec::with_capacity(1 + HANDSHAKE_SIZE);
        c0c1.push(RTMP_VERSION);
        c0c1.extend_from_slice(&c1);
        let hs = Self { c1, c1_digest, buf: Vec::new(), done: false, server_digest_ok: false };
        Ok((hs, Bytes::from(c0c1)))
    }

    /// True once S0+S1+S2 were read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// True if the server answered our digest with a valid S2.
    pub fn server_digest_ok(&self) -> bool {
        self.server_digest_ok
    }

    /// Reads from `data`; returns how many bytes were used and, once S0+S1+S2
    /// are complete, C2 to send.
    pub fn handle(&mut self, data: &[u8]) -> Result<(usize, Option<Bytes>), ProtocolError> {
        if self.done {
            return Ok((0, None));
        }
        let need = 1 + 2 * HANDSHAKE_SIZE;
        let take = (need - self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        if self.buf.len() < need {
            return Ok((take, None));
        }
        if self.buf[0] != RTMP_VERSION {
            return Err(handshake_error(format!("server answered RTMP version {}", self.buf[0])));
        }
        let mut s1 = [0u8; HANDSHAKE_SIZE];
        s1.copy_from_slice(&self.buf[1..1 + HANDSHAKE_SIZE]);
        let s2 = &self.buf[1 + HANDSHAKE_SIZE..];
        if let Some(own) = &self.c1_digest {
            self.server_digest_ok = check_response(s2, &full_key(SERVER_TEXT), own);
        }
        let server_digest = if self.c1_digest.is_some() { find_digest(&s1, SERVER_TEXT) } else { None };
        let c2 = match server_digest {
            Some((_, d)) => Bytes::copy_from_slice(&digest_response(&full_key(PLAYER_TEXT), &d)?),
            None => Bytes::copy_from_slice(&s1),
        };
        if self.c1_digest.is_none() && s2 != &self.c1[..] {
            // Servers vary here and nothing depends on it: note and go on.
            tracing::debug!("RTMP server's S2 does not echo our C1");
        }
        self.done = true;
        self.buf = Vec::new();
        Ok((take, Some(c2)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(digest: bool) -> (ServerHandshake, ClientHandshake, Vec<u8>) {
        let (mut client, c0c1) = ClientHandshake::new(digest).unwrap();
        let mut server = ServerHandshake::new();
        let mut out = Vec::new();
        // Byte by byte: state must survive any split.
        for b in c0c1.iter() {
            assert_eq!(server.handle(std::slice::from_ref(b), &mut out).unwrap(), 1);
        }
        assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
        let (used, c2) = client.handle(&out).unwrap();
        assert_eq!(used, out.len());
        let c2 = c2.unwrap();
        let mut with_tail = c2.to_vec();
        with_tail.extend_from_slice(b"chunks");
        assert_eq!(server.handle(&with_tail, &mut Vec::new()).unwrap(), HANDSHAKE_SIZE);
        assert!(server.is_done());
        (server, client, out)
    }

    #[test]
    fn plain_handshake_echoes() {
        let (server, client, out) = run(false);
        assert!(!server.client_used_digest());
        assert!(!client.server_digest_ok());
        assert_eq!(&out[1 + HANDSHAKE_SIZE..], &client.c1[..]);
    }

    #[test]
    fn digest_handshake_both_schemes() {
        let (server, client, out) = run(true);
        assert!(server.client_used_digest());
        assert!(client.server_digest_ok());
        let mut s1 = [0u8; HANDSHAKE_SIZE];
        s1.copy_from_slice(&out[1..1 + HANDSHAKE_SIZE]);
        assert_eq!(find_digest(&s1, SERVER_TEXT).map(|x| x.0), Some(DigestScheme::Scheme1));
        // Scheme 0 C1, as some encoders send.
        let (c1, _) = digest_packet(DigestScheme::Scheme0, PLAYER_TEXT, [9, 0, 124, 2]).unwrap();
        assert_eq!(find_digest(&c1, PLAYER_TEXT).map(|x| x.0), Some(DigestScheme::Scheme0));
        let mut server = ServerHandshake::new();
        let mut c0c1 = vec![3];
        c0c1.extend_from_slice(&c1);
        let mut out = Vec::new();
        server.handle(&c0c1, &mut out).unwrap();
        assert!(server.client_used_digest());
        let mut s1 = [0u8; HANDSHAKE_SIZE];
        s1.copy_from_slice(&out[1..1 + HANDSHAKE_SIZE]);
        assert_eq!(find_digest(&s1, SERVER_TEXT).map(|x| x.0), Some(DigestScheme::Scheme0));
    }

    #[test]
    fn bad_version_is_refused() {
        let mut server = ServerHandshake::new();
        let mut c0c1 = vec![6u8];
        c0c1.resize(1 + HANDSHAKE_SIZE, 0);
        let e = server.handle(&c0c1, &mut Vec::new()).unwrap_err();
        assert_eq!(e.kind, ProtocolErrorKind::Handshake);
    }
}
