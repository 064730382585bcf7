//! `arcly-rtmp`: the handshake, the chunk stream, and the server and client
//! sessions, all sans-IO.

use std::time::{Duration, Instant};

use arcly_core::ProtocolError;
use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
use arcly_rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits, RawMessage};
use arcly_rtmp::client::{ClientEvent, ClientMode, ClientSession, RtmpUrl};
use arcly_rtmp::handshake::{ClientHandshake, HANDSHAKE_SIZE, RTMP_VERSION, ServerHandshake};
use arcly_rtmp::session::{ServerSession, SessionConfig, SessionEvent};
use bytes::Bytes;

use crate::split;

/// C0+C1+C2, or S0+S1+S2: what one side sends in a handshake.
const HELLO_LEN: usize = 1 + 2 * HANDSHAKE_SIZE;

/// The handshake, both sides:
/// - the server side on the input, whole and cut into pieces: the same
///   outcome (bytes used, done, digest seen, error, reply; S1 and digest
///   answers are random, so only their length);
/// - the client side on the input as the server's answer, the same way;
/// - a real client (digest or plain, by the seed) and the server, each fed
///   the other's bytes in pieces: both finish, and each sees the other's
///   digest exactly when the client used one.
pub fn rtmp_handshake(data: &[u8]) {
    let (seed, stream) = split::seeded(data);
    let pieces = split::pieces(seed, stream);
    assert_eq!(serve(&[stream]), serve(&pieces), "cutting the input changed the server handshake");
    let digest = seed & 0x80 != 0;
    assert_eq!(answer(digest, &[stream]), answer(digest, &pieces), "cutting the input changed the client handshake");

    let (mut client, c0c1) = ClientHandshake::new(digest).expect("random bytes");
    let mut server = ServerHandshake::new();
    let mut reply = Vec::new();
    let used: usize = split::pieces(seed, &c0c1)
        .into_iter()
        .map(|piece| server.handle(piece, &mut reply).expect("the server takes our C0+C1"))
        .sum();
    assert_eq!((used, reply.len()), (c0c1.len(), HELLO_LEN));
    let mut c2 = None;
    for piece in split::pieces(seed.rotate_left(4), &reply) {
        let (used, out) = client.handle(piece).expect("the client takes our S0+S1+S2");
        assert_eq!(used, piece.len());
        c2 = c2.or(out);
    }
    let c2 = c2.expect("C2 once S0+S1+S2 are read");
    let mut tail = c2.to_vec();
    tail.extend_from_slice(stream);
    assert_eq!(server.handle(&tail, &mut reply).expect("the server takes our C2"), HANDSHAKE_SIZE);
    assert!(client.is_done() && server.is_done());
    assert_eq!((server.client_used_digest(), client.server_digest_ok()), (digest, digest));
}

/// What the server side of the handshake made of some input.
#[derive(Debug, PartialEq, Eq)]
struct Served {
    /// Bytes used, unless a call failed (a failed call reports none).
    used: Option<usize>,
    done: bool,
    digest: bool,
    error: Option<ProtocolError>,
    reply_len: usize,
    /// S2 when it is the echo of C1 (a plain handshake).
    echo: Option<Vec<u8>>,
}

fn serve(pieces: &[&[u8]]) -> Served {
    let mut server = ServerHandshake::new();
    let mut reply = Vec::new();
    let mut used = Some(0);
    let mut error = None;
    for piece in pieces {
        match server.handle(piece, &mut reply) {
            Ok(n) => {
                assert!(n <= piece.len());
                used = used.map(|u| u + n);
            }
            Err(e) => {
                used = None;
                error = Some(e);
                break;
            }
        }
    }
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    if let Some(used) = used {
        assert_eq!(used, total.min(HELLO_LEN), "the handshake used the wrong number of bytes");
        assert_eq!(server.is_done(), total >= HELLO_LEN);
    }
    let echo = (reply.len() == HELLO_LEN && !server.client_used_digest()).then(|| reply[1 + HANDSHAKE_SIZE..].to_vec());
    Served { used, done: server.is_done(), digest: server.client_used_digest(), error, reply_len: reply.len(), echo }
}

/// What the client side of the handshake made of some input.
#[derive(Debug, PartialEq, Eq)]
struct Answered {
    /// Bytes used, unless a call failed (a failed call reports none).
    used: Option<usize>,
    done: bool,
    server_digest_ok: bool,
    error: Option<ProtocolError>,
    c2_len: Option<usize>,
    /// C2 when it is the echo of S1 (a plain handshake).
    echo: Option<Bytes>,
}

fn answer(digest: bool, pieces: &[&[u8]]) -> Answered {
    let (mut client, _) = ClientHandshake::new(digest).expect("random bytes");
    let mut used = Some(0);
    let mut c2 = None;
    let mut error = None;
    for piece in pieces {
        match client.handle(piece) {
            Ok((n, out)) => {
                assert!(n <= piece.len());
                used = used.map(|u| u + n);
                c2 = c2.or(out);
            }
            Err(e) => {
                used = None;
                error = Some(e);
                break;
            }
        }
    }
    let echo = c2.clone().filter(|_| !digest);
    Answered {
        used,
        done: client.is_done(),
        server_digest_ok: client.server_digest_ok(),
        error,
        c2_len: c2.map(|c| c.len()),
        echo,
    }
}

/// The chunk decoder:
/// - on the input, whole and cut into pieces: the same messages and error
///   (tight limits when the seed's high bit is set, to reach them), and no
///   more than one partial chunk held between pieces;
/// - when the seed's bit 6 is set, messages made from the input (chunk
///   streams of all three header sizes, message streams, timestamps with
///   deltas, jumps, backward steps and extended values, bodies in parts)
///   cut into chunks by the encoder, with a chunk size change part way,
///   and read back in pieces: the same messages.
pub fn rtmp_chunk(data: &[u8]) {
    let (seed, stream) = split::seeded(data);
    let limits = if seed & 0x80 == 0 {
        DecoderLimits::default()
    } else {
        DecoderLimits { max_chunk_size: 4096, max_message_size: 1000, max_buffered: 3000, max_chunk_streams: 4 }
    };
    let whole = decode(&limits, &[stream]);
    let pieces = decode(&limits, &split::pieces(seed, stream));
    assert_eq!(whole, pieces, "cutting the input changed the chunk decoder's messages");

    if seed & 0x40 == 0 {
        return;
    }
    let (wire, want) = encode(stream);
    // Pieces of 16 bytes or more: the first half covers the small ones.
    let (got, error) = decode(&DecoderLimits::default(), &split::pieces(seed.rotate_left(4) | 0x04, &wire));
    assert_eq!(error, None, "the decoder refuses the encoder's chunks");
    let got: Vec<Message> = got.into_iter().map(|m| (m.csid, m.type_id, m.stream_id, m.timestamp, m.payload)).collect();
    assert_eq!(got, want, "the chunk stream round trip changed the messages");
}

fn decode(limits: &DecoderLimits, pieces: &[&[u8]]) -> (Vec<RawMessage>, Option<ProtocolError>) {
    let mut decoder = ChunkDecoder::new(limits.clone());
    let mut messages = Vec::new();
    for piece in pieces {
        decoder.push(piece);
        loop {
            match decoder.next_message() {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break,
                Err(e) => return (messages, Some(e)),
            }
        }
        // Basic header (3), message header (11), extended timestamp (4).
        assert!(decoder.pending() < 18 + decoder.chunk_size(), "{} bytes held between pieces", decoder.pending());
        let _ = decoder.take_ack();
    }
    (messages, None)
}

/// (chunk stream, type, message stream, timestamp, body)
type Message = (u32, u8, u32, u32, Bytes);

/// Message types that do not change how the decoder reads what follows
/// (Set Chunk Size, Abort and Window Acknowledgement Size do).
const PLAIN_TYPES: [u8; 10] = [3, 4, 6, 8, 9, 15, 17, 18, 20, 22];

/// Up to 32 messages, 8 bytes of `spec` each, with bodies of 2 KiB in all
/// (with chunks of a byte, more only slows the fuzzer down), as chunks; a
/// Set Chunk Size goes before the message that the first byte picks.
fn encode(spec: &[u8]) -> (Vec<u8>, Vec<Message>) {
    let mut encoder = ChunkEncoder::new();
    let mut parts = Vec::new();
    let mut want = Vec::new();
    let change_before = usize::from(spec.first().copied().unwrap_or(0) % 16);
    let mut timestamp = 0u32;
    let mut budget = 2048;
    for (i, m) in spec.chunks_exact(8).take(32).enumerate() {
        if i == change_before {
            // 1..=65536, within the decoder's default limit.
            let size = 1 + u32::from(u16::from_le_bytes([m[6], m[7]]));
            encoder.set_chunk_size(size, &mut parts);
            want.push((2, 1, 0, 0, Bytes::copy_from_slice(&size.to_be_bytes())));
        }
        let csid = match m[0] % 4 {
            0 => 3 + u32::from(m[1] % 61),
            1 => 64 + u32::from(m[1]),
            2 => 320 + u32::from(u16::from_le_bytes([m[1], m[2]])) % (65_599 - 320 + 1),
            _ => 4,
        };
        let type_id = PLAIN_TYPES[usize::from(m[3]) % PLAIN_TYPES.len()];
        let stream_id = u32::from(m[4] % 3);
        timestamp = match m[5] % 5 {
            0 => timestamp,
            1 => timestamp.wrapping_add(u32::from(m[6])),
            2 => timestamp.wrapping_add(0x00ff_ff00 + u32::from(m[6])),
            3 => timestamp.wrapping_sub(u32::from(m[6])),
            _ => u32::from_le_bytes([m[2], m[6], m[7], m[1]]),
        };
        let len = (usize::from(m[7]) * usize::from(m[2] % 4 + 1)).min(budget);
        budget -= len;
        let body: Bytes = (0..len).map(|j| (j as u8).wrapping_mul(m[1]).wrapping_add(m[5])).collect();
        let cut = usize::from(m[6]).min(len);
        encoder.write(csid, type_id, stream_id, timestamp, &[body.slice(..cut), body.slice(cut..)], &mut parts);
        want.push((csid, type_id, stream_id, timestamp, body));
    }
    (parts.concat(), want)
}

/// The server session after a handshake, on the input:
/// - seed's high bit clear: nothing is answered (no publish or play is
///   accepted), and the input, whole and cut into pieces, gives the same
///   events and the same error;
/// - set: the session is driven as the server does it: publishes and
///   plays are accepted (or refused, by the seed), the media published is
///   sent back to the players, time runs on, and output is drained.
pub fn rtmp_server(data: &[u8]) {
    let (seed, stream) = split::seeded(data);
    let mut wire = vec![RTMP_VERSION];
    wire.resize(HELLO_LEN, 0);
    wire.extend_from_slice(stream);
    if seed & 0x80 == 0 {
        let now = Instant::now();
        let whole = observe(now, &[&wire]);
        let pieces = observe(now, &split::pieces(seed, &wire));
        assert_eq!(whole, pieces, "cutting the input changed the server session's events");
    } else {
        drive(seed, &split::pieces(seed, &wire));
    }
}

fn observe(now: Instant, pieces: &[&[u8]]) -> (Vec<SessionEvent>, Option<ProtocolError>) {
    let mut session = ServerSession::new(SessionConfig::default(), now);
    let mut events = Vec::new();
    let mut out = Vec::new();
    for piece in pieces {
        let result = session.handle_input(piece, now);
        events.extend(std::iter::from_fn(|| session.poll_event()));
        session.drain_transmit(&mut out);
        out.clear();
        if let Err(e) = result {
            assert!(session.is_failed());
            return (events, Some(e));
        }
    }
    (events, None)
}

fn drive(seed: u8, pieces: &[&[u8]]) {
    let start = Instant::now();
    let mut now = start;
    let mut session = ServerSession::new(SessionConfig::default(), now);
    let mut players = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        now += Duration::from_millis(u64::from(seed & 0x0f) * 250);
        if session.handle_input(piece, now).is_err() {
            assert!(session.is_failed());
            return;
        }
        while let Some(event) = session.poll_event() {
            let refuse = (seed >> 4) & 0x03 == (i % 4) as u8;
            let _ = match event {
                SessionEvent::Publish { stream_id, .. } if refuse => {
                    session.reject_publish(stream_id, "NetStream.Publish.BadName", "fuzz")
                }
                SessionEvent::Publish { stream_id, .. } => session.accept_publish(stream_id),
                SessionEvent::Play { stream_id, .. } if refuse => {
                    session.reject_play(stream_id, "NetStream.Play.StreamNotFound", "fuzz")
                }
                SessionEvent::Play { stream_id, .. } => {
                    players.push(stream_id);
                    session.accept_play(stream_id)
                }
                SessionEvent::Media { frame, .. } => {
                    for &player in &players {
                        let _ = session.send_media(player, &frame);
                    }
                    Ok(())
                }
                SessionEvent::Unpublish { .. } => {
                    for &player in &players {
                        session.send_publisher_left(player);
                    }
                    Ok(())
                }
                SessionEvent::PlayStop { stream_id } => {
                    session.send_stream_eof(stream_id);
                    Ok(())
                }
                _ => Ok(()),
            };
        }
        let queued = session.queued_bytes();
        let mut sent = 0;
        while let Some(bytes) = session.poll_transmit() {
            sent += bytes.len();
        }
        assert_eq!((sent, session.queued_bytes()), (queued, 0));
        if let Some(deadline) = session.poll_timeout()
            && deadline <= now
            && session.handle_timeout(now).is_err()
        {
            return;
        }
    }
    let _ = session.handle_timeout(now + Duration::from_secs(60));
}

/// The client session (publishing or playing, by the seed) on the input
/// after a plain S0+S1+S2, whole and cut into pieces: the same events and
/// the same error. A publishing client that gets going sends a frame.
pub fn rtmp_client(data: &[u8]) {
    let (seed, stream) = split::seeded(data);
    let mode = if seed & 0x80 == 0 { ClientMode::Publish } else { ClientMode::Play };
    let mut wire = vec![RTMP_VERSION];
    wire.resize(HELLO_LEN, 0);
    wire.extend_from_slice(stream);
    let whole = client_events(mode, &[&wire]);
    let pieces = client_events(mode, &split::pieces(seed, &wire));
    assert_eq!(whole, pieces, "cutting the input changed the client session's events");
}

fn client_events(mode: ClientMode, pieces: &[&[u8]]) -> (Vec<ClientEvent>, Option<ProtocolError>) {
    let url = RtmpUrl::parse("rtmp://fuzz.invalid/live/key").expect("a valid URL");
    let mut client = ClientSession::new(url, mode).expect("random bytes");
    let mut events = Vec::new();
    for piece in pieces {
        let result = client.handle_input(piece);
        while client.poll_transmit().is_some() {}
        events.extend(std::iter::from_fn(|| client.poll_event()));
        if let Err(e) = result {
            return (events, Some(e));
        }
    }
    if mode == ClientMode::Publish && client.is_active() {
        let frame = MediaFrame::new(CodecId::Aac, Bytes::from_static(&[0x11, 0x90]))
            .with_timestamps(0, 0, Timebase::MILLIS)
            .with_flags(FrameFlags::CONFIG);
        client.send_media(&frame).expect("a publishing client sends a frame");
    }
    (events, None)
}
