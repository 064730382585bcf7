use super::*;
use crate::chunk::DEFAULT_CHUNK_SIZE;
use crate::handshake::HANDSHAKE_SIZE;
use arcly_core::frame::{CodecId, FrameFlags};
use proptest::prelude::*;

fn obj(fields: &[(&str, Amf0Value)]) -> Amf0Value {
    Amf0Value::Object(fields.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect())
}

/// What ffmpeg sends to publish, with a timestamp wrap and a chunk size
/// change in the middle.
fn publisher_bytes() -> Vec<u8> {
    let mut wire = vec![3u8];
    wire.resize(1 + 2 * HANDSHAKE_SIZE, 0x5a);
    let mut enc = ChunkEncoder::new();
    let mut parts = Vec::new();
    let cmd = |enc: &mut ChunkEncoder, parts: &mut Vec<Bytes>, stream: u32, c: Command| {
        enc.write(3, types::COMMAND_AMF0, stream, 0, &[c.encode()], parts);
    };
    let connect = obj(&[
        ("app", Amf0Value::from("live")),
        ("tcUrl", Amf0Value::from("rtmp://127.0.0.1/live")),
        ("objectEncoding", Amf0Value::Number(0.0)),
    ]);
    cmd(&mut enc, &mut parts, 0, Command::new("connect", 1.0, connect, vec![]));
    cmd(&mut enc, &mut parts, 0, Command::new("releaseStream", 2.0, Amf0Value::Null, vec!["key".into()]));
    cmd(&mut enc, &mut parts, 0, Command::new("FCPublish", 3.0, Amf0Value::Null, vec!["key".into()]));
    cmd(&mut enc, &mut parts, 0, Command::new("createStream", 4.0, Amf0Value::Null, vec![]));
    let publish = Command::new("publish", 5.0, Amf0Value::Null, vec!["key?token=x".into(), "live".into()]);
    cmd(&mut enc, &mut parts, 1, publish);
    let mut meta = bytes::BytesMut::new();
    arcly_mux::amf0::encode_all(
        &[
            Amf0Value::from("@setDataFrame"),
            Amf0Value::from("onMetaData"),
            Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(160.0))]),
        ],
        &mut meta,
    );
    enc.write(4, types::DATA_AMF0, 1, 0, &[meta.freeze()], &mut parts);
    enc.write(
        6,
        types::VIDEO,
        1,
        0xffff_fe00,
        &[Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x0c, 0xff])],
        &mut parts,
    );
    enc.write(5, types::AUDIO, 1, 0xffff_fe00, &[Bytes::from_static(&[0xaf, 0, 0x11, 0x90])], &mut parts);
    enc.set_chunk_size(1000, &mut parts);
    let big = vec![0x42u8; 2500];
    let mut idr = vec![0x17, 1, 0, 0, 80];
    idr.extend_from_slice(&big);
    for (i, ts) in [0xffff_ff00u32, 0xffff_ff40, 0x0000_0010, 0x50].into_iter().enumerate() {
        let mut body = if i == 0 { idr.clone() } else { vec![0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41] };
        body.push(i as u8);
        enc.write(6, types::VIDEO, 1, ts, &[Bytes::from(body)], &mut parts);
        enc.write(5, types::AUDIO, 1, ts, &[Bytes::from_static(&[0xaf, 1, 0x21, 0x10])], &mut parts);
    }
    let ping = Message::UserControl(UserControl::PingRequest(77)).encode();
    enc.write(2, ping.0, 0, 0, &[ping.1], &mut parts);
    cmd(&mut enc, &mut parts, 0, Command::new("FCUnpublish", 6.0, Amf0Value::Null, vec!["key".into()]));
    cmd(&mut enc, &mut parts, 0, Command::new("deleteStream", 7.0, Amf0Value::Null, vec![Amf0Value::Number(1.0)]));
    for p in parts {
        wire.extend_from_slice(&p);
    }
    wire
}

/// Feeds `wire` in pieces cut at `splits`, accepting every publish and play;
/// returns the events and everything the server sent.
fn run(wire: &[u8], splits: &[usize]) -> (Vec<SessionEvent>, Vec<u8>) {
    let now = Instant::now();
    let mut s = ServerSession::new(SessionConfig::default(), now);
    let (mut events, mut out) = (Vec::new(), Vec::new());
    let mut start = 0;
    for &cut in splits.iter().chain(std::iter::once(&wire.len())) {
        let end = cut.clamp(start, wire.len());
        s.handle_input(&wire[start..end], now).unwrap();
        start = end;
        while let Some(ev) = s.poll_event() {
            match &ev {
                // The stream may be gone already when the whole input came
                // at once: the answer is then refused, as in a real driver.
                SessionEvent::Publish { stream_id, .. } => drop(s.accept_publish(*stream_id)),
                SessionEvent::Play { stream_id, .. } => drop(s.accept_play(*stream_id)),
                _ => {}
            }
            events.push(ev);
        }
        while let Some(b) = s.poll_transmit() {
            out.extend_from_slice(&b);
        }
    }
    (events, out)
}

/// The messages in server output after S0S1S2 (the server's chunk size
/// changes are applied by the decoder).
fn server_messages(out: &[u8]) -> Vec<(u32, Message)> {
    let mut dec = ChunkDecoder::new(DecoderLimits::default());
    dec.push(&out[1 + 2 * HANDSHAKE_SIZE..]);
    let mut msgs = Vec::new();
    while let Some(m) = dec.next_message().unwrap() {
        msgs.push((m.stream_id, Message::parse(m.type_id, m.payload).unwrap()));
    }
    msgs
}

#[test]
fn publish_events_and_answers() {
    let wire = publisher_bytes();
    let splits: Vec<usize> = (0..wire.len()).step_by(500).collect();
    let (events, out) = run(&wire, &splits);
    assert_eq!(events[0], SessionEvent::Connect { app: "live".into(), tc_url: Some("rtmp://127.0.0.1/live".into()) });
    assert_eq!(events[1], SessionEvent::Publish { stream_id: 1, name: "key".into(), query: Some("token=x".into()) });
    let frames: Vec<&MediaFrame> = events
        .iter()
        .filter_map(|e| match e {
            SessionEvent::Media { frame, .. } => Some(frame),
            _ => None,
        })
        .collect();
    assert_eq!(frames.len(), 3 + 8);
    assert_eq!((frames[0].codec, frames[0].is_config()), (CodecId::Metadata, true));
    assert_eq!((frames[1].codec, frames[1].is_config()), (CodecId::H264, true));
    assert_eq!((frames[2].codec, frames[2].is_config()), (CodecId::Aac, true));
    // The wrap from 0xffffff40 to 0x10 continues forward.
    let video_dts: Vec<i64> =
        frames.iter().filter(|f| f.codec == CodecId::H264 && !f.is_config()).map(|f| f.dts).collect();
    assert_eq!(video_dts, vec![0xffff_ff00, 0xffff_ff40, 0x1_0000_0010, 0x1_0000_0050]);
    assert_eq!(frames[3].pts, 0xffff_ff00 + 80);
    assert!(frames[3].is_keyframe());
    assert_eq!(frames[3].payload.len(), 2501);
    assert_eq!(events[events.len() - 1], SessionEvent::Unpublish { stream_id: 1 });

    let msgs = server_messages(&out);
    let commands: Vec<(u32, &Command)> = msgs
        .iter()
        .filter_map(|(s, m)| match m {
            Message::Command(c) => Some((*s, c)),
            _ => None,
        })
        .collect();
    let find = |name: &str, tid: f64| commands.iter().find(|(_, c)| c.name == name && c.transaction_id == tid);
    assert_eq!(find("_result", 1.0).and_then(|(_, c)| c.status_code()), Some(codes::CONNECT_SUCCESS));
    assert_eq!(find("_result", 4.0).and_then(|(_, c)| c.arg_f64(0)), Some(1.0));
    assert!(find("_result", 2.0).is_some() && find("_result", 3.0).is_some());
    let start = commands.iter().find(|(_, c)| c.status_code() == Some(codes::PUBLISH_START) && c.name == "onStatus");
    assert_eq!(start.map(|(s, _)| *s), Some(1));
    assert!(msgs.iter().any(|(_, m)| *m == Message::UserControl(UserControl::PingResponse(77))));
    assert!(msgs.iter().any(|(_, m)| *m == Message::SetChunkSize(4096)));
    assert!(msgs.iter().any(|(_, m)| *m == Message::WindowAckSize(2_500_000)));
}

#[test]
fn every_byte_boundary_gives_the_same_events() {
    let wire = publisher_bytes();
    let (whole, _) = run(&wire, &[]);
    let every: Vec<usize> = (0..wire.len()).collect();
    let (split, out) = run(&wire, &every);
    assert_eq!(whole, split);
    let every_500: Vec<usize> = (0..wire.len()).step_by(500).collect();
    // The handshake is random; the rest of the output must match.
    assert_eq!(server_messages(&out), server_messages(&run(&wire, &every_500).1));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_splits_give_the_same_events(mut splits in proptest::collection::vec(0usize..12_000, 0..30)) {
        let wire = publisher_bytes();
        splits.sort_unstable();
        prop_assert_eq!(run(&wire, &[]).0, run(&wire, &splits).0);
    }

    #[test]
    fn fuzz_never_panics(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
        fuzz_server(&data);
    }
}

#[test]
fn fuzz_with_a_valid_prefix_never_panics() {
    let wire = publisher_bytes();
    let body = &wire[1 + 2 * HANDSHAKE_SIZE..];
    for cut in (0..body.len()).step_by(37) {
        let mut mangled = body[..cut].to_vec();
        mangled.extend(body[cut..].iter().map(|b| b.wrapping_mul(31)));
        fuzz_server(&mangled);
    }
}

#[test]
fn play_sends_status_and_zero_copy_media() {
    let mut wire = vec![3u8];
    wire.resize(1 + 2 * HANDSHAKE_SIZE, 0);
    let mut enc = ChunkEncoder::new();
    let mut parts = Vec::new();
    let connect = obj(&[("app", Amf0Value::from("live/"))]);
    enc.write(3, types::COMMAND_AMF0, 0, 0, &[Command::new("connect", 1.0, connect, vec![]).encode()], &mut parts);
    enc.write(
        3,
        types::COMMAND_AMF0,
        0,
        0,
        &[Command::new("createStream", 2.0, Amf0Value::Null, vec![]).encode()],
        &mut parts,
    );
    let play = Command::new("play", 0.0, Amf0Value::Null, vec!["test".into(), Amf0Value::Number(-1.0)]);
    enc.write(8, types::COMMAND_AMF0, 1, 0, &[play.encode()], &mut parts);
    wire.extend(parts.concat());
    let now = Instant::now();
    let mut s = ServerSession::new(SessionConfig { chunk_size: 1000, ..SessionConfig::default() }, now);
    s.handle_input(&wire, now).unwrap();
    let mut events = Vec::new();
    while let Some(e) = s.poll_event() {
        events.push(e);
    }
    assert_eq!(events[0], SessionEvent::Connect { app: "live".into(), tc_url: None });
    assert_eq!(events[1], SessionEvent::Play { stream_id: 1, name: "test".into(), query: None, start: -1.0 });
    // Media before accepting is refused.
    let payload = Bytes::from(vec![9u8; 2500]);
    let idr = MediaFrame::new(CodecId::H264, payload.clone())
        .with_timestamps(90_000 * 2 + 3003 * 2, 90_000 * 2, Timebase::MPEG)
        .with_flags(FrameFlags::KEYFRAME);
    assert!(s.send_media(1, &idr).is_err());
    s.accept_play(1).unwrap();
    let aac = MediaFrame::new(CodecId::Aac, Bytes::from_static(&[1, 2, 3])).with_flags(FrameFlags::KEYFRAME);
    s.send_media(1, &aac).unwrap();
    s.send_media(1, &idr).unwrap();
    let hevc = MediaFrame::new(CodecId::H265, Bytes::from_static(&[0, 0, 0, 2, 0x26, 1]))
        .with_timestamps(2040, 2000, Timebase::MILLIS)
        .with_flags(FrameFlags::KEYFRAME);
    s.send_media(1, &hevc).unwrap();
    s.send_stream_eof(1);
    let mut out = Vec::new();
    let mut zero_copy = false;
    while let Some(b) = s.poll_transmit() {
        zero_copy |= b.as_ptr() == payload.as_ptr();
        out.extend_from_slice(&b);
    }
    assert!(zero_copy, "the payload must go out as a slice of the frame");
    let msgs = server_messages(&out);
    let codes: Vec<&str> = msgs
        .iter()
        .filter_map(|(_, m)| match m {
            Message::Command(c) => c.status_code(),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec![codes::CONNECT_SUCCESS, codes::PLAY_RESET, codes::PLAY_START, codes::PLAY_UNPUBLISH_NOTIFY]);
    let media: Vec<&Message> =
        msgs.iter().filter(|(_, m)| matches!(m, Message::Audio(_) | Message::Video(_))).map(|(_, m)| m).collect();
    assert_eq!(*media[0], Message::Audio(Bytes::from_static(&[0xaf, 1, 1, 2, 3])));
    let Message::Video(v) = media[1] else { panic!("video expected") };
    let back = flv::parse_video(v, 2000).unwrap().unwrap();
    assert_eq!((back.pts, back.dts, back.payload.len()), (2067, 2000, 2500));
    // Enhanced RTMP for HEVC, read back by the same parser.
    let Message::Video(v) = media[2] else { panic!("video expected") };
    assert_eq!((v[0] & 0x80, &v[1..5]), (0x80, &b"hvc1"[..]));
    let back = flv::parse_video(v, 2000).unwrap().unwrap();
    assert_eq!((back.codec, back.pts, back.dts), (CodecId::H265, 2040, 2000));
    assert!(msgs.iter().any(|(_, m)| *m == Message::UserControl(UserControl::StreamEof(1))));
    assert!(msgs.iter().any(|(_, m)| *m == Message::UserControl(UserControl::StreamBegin(1))));
}

#[test]
fn timeouts() {
    let t0 = Instant::now();
    let mut s = ServerSession::new(SessionConfig::default(), t0);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    assert!(s.handle_timeout(t0 + Duration::from_secs(9)).is_ok());
    let e = s.handle_timeout(t0 + Duration::from_secs(10)).unwrap_err();
    assert_eq!(e.kind, ProtocolErrorKind::Timeout);
    // Idle after connect: output does not count, only input does.
    let wire = publisher_bytes();
    let mut s = ServerSession::new(SessionConfig::default(), t0);
    s.handle_input(&wire[..wire.len() - 100], t0).unwrap();
    while let Some(ev) = s.poll_event() {
        if let SessionEvent::Publish { stream_id, .. } = ev {
            s.accept_publish(stream_id).unwrap();
        }
    }
    // Half way: a ping.
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(15)));
    while s.poll_transmit().is_some() {}
    assert!(s.handle_timeout(t0 + Duration::from_secs(15)).is_ok());
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    assert!(s.handle_timeout(t0 + Duration::from_secs(29)).is_ok());
    assert!(s.handle_timeout(t0 + Duration::from_secs(30)).is_err());
    let _ = DEFAULT_CHUNK_SIZE;
}

/// Handshake, connect and createStream: stream 1 is idle.
fn connected_wire() -> Vec<u8> {
    let mut wire = vec![3u8];
    wire.resize(1 + 2 * HANDSHAKE_SIZE, 0);
    let mut enc = ChunkEncoder::new();
    let mut parts = Vec::new();
    let connect = obj(&[("app", Amf0Value::from("live"))]);
    enc.write(3, types::COMMAND_AMF0, 0, 0, &[Command::new("connect", 1.0, connect, vec![]).encode()], &mut parts);
    let create = Command::new("createStream", 2.0, Amf0Value::Null, vec![]);
    enc.write(3, types::COMMAND_AMF0, 0, 0, &[create.encode()], &mut parts);
    wire.extend(parts.concat());
    wire
}

/// One message on chunk stream `csid` with a fresh (type 0) header, cut
/// into 128-byte chunks.
fn message_wire(csid: u32, type_id: u8, stream_id: u32, body: &[u8]) -> Vec<u8> {
    let mut parts = Vec::new();
    ChunkEncoder::new().write(csid, type_id, stream_id, 0, &[Bytes::copy_from_slice(body)], &mut parts);
    parts.concat()
}

fn command_wire(stream_id: u32, cmd: Command) -> Vec<u8> {
    message_wire(if stream_id == 0 { 3 } else { 8 }, types::COMMAND_AMF0, stream_id, &cmd.encode())
}

/// The messages `s` sent since the last call; `out` keeps all its output
/// (from S0S1S2 on) so chunk size changes apply.
fn new_messages(s: &mut ServerSession, out: &mut Vec<u8>) -> Vec<Message> {
    let before = if out.is_empty() { 0 } else { server_messages(out).len() };
    while let Some(b) = s.poll_transmit() {
        out.extend_from_slice(&b);
    }
    server_messages(out).into_iter().skip(before).map(|(_, m)| m).collect()
}

fn status_codes(s: &mut ServerSession, out: &mut Vec<u8>) -> Vec<String> {
    let status = |m: Message| match m {
        Message::Command(c) => c.status_code().map(str::to_owned),
        _ => None,
    };
    new_messages(s, out).into_iter().filter_map(status).collect()
}

fn ping_requests(s: &mut ServerSession, out: &mut Vec<u8>) -> usize {
    new_messages(s, out).iter().filter(|m| matches!(m, Message::UserControl(UserControl::PingRequest(_)))).count()
}

/// A player waiting out a publisher's reconnect gap receives nothing and
/// may send nothing: it is pinged half way to the idle timeout and stays
/// while it answers; a peer that does not answer is closed at the timeout.
#[test]
fn idle_players_are_pinged_and_stay_while_they_answer() {
    let t0 = Instant::now();
    let secs = |n: u64| t0 + Duration::from_secs(n);
    let mut wire = connected_wire();
    wire.extend(command_wire(1, Command::new("play", 0.0, Amf0Value::Null, vec!["k".into()])));
    let play = |s: &mut ServerSession| {
        s.handle_input(&wire, t0).unwrap();
        while s.poll_event().is_some() {}
        s.accept_play(1).unwrap();
    };
    let pong = message_wire(2, types::USER_CONTROL, 0, &Message::UserControl(UserControl::PingResponse(1)).encode().1);

    let mut s = ServerSession::new(SessionConfig::default(), t0);
    play(&mut s);
    let mut out = Vec::new();
    assert_eq!(ping_requests(&mut s, &mut out), 0);
    for round in 0..10u64 {
        let last = secs(round * 20);
        assert_eq!(s.poll_timeout(), Some(last + Duration::from_secs(15)));
        s.handle_timeout(last + Duration::from_secs(15)).unwrap();
        assert_eq!(ping_requests(&mut s, &mut out), 1, "round {round}");
        // Still no answer at 19 s: it stays; the ping is not repeated.
        s.handle_timeout(last + Duration::from_secs(19)).unwrap();
        assert_eq!(ping_requests(&mut s, &mut out), 0);
        s.handle_input(&pong, secs(round * 20 + 20)).unwrap();
    }
    // 200 s after the last media: alive.
    assert!(!s.is_failed());

    let mut s = ServerSession::new(SessionConfig::default(), t0);
    play(&mut s);
    s.handle_timeout(secs(15)).unwrap();
    assert_eq!(ping_requests(&mut s, &mut Vec::new()), 1);
    assert_eq!(s.poll_timeout(), Some(secs(30)));
    s.handle_timeout(secs(29)).unwrap();
    let e = s.handle_timeout(secs(30)).unwrap_err();
    assert_eq!(e.kind, ProtocolErrorKind::Timeout);
    assert!(e.context.contains("ping unanswered"), "{e}");
}

/// A connection must publish or play within `start_timeout` of connect:
/// answering pings does not keep it.
#[test]
fn connections_that_never_start_are_closed() {
    let t0 = Instant::now();
    let secs = |n: u64| t0 + Duration::from_secs(n);
    let pong = message_wire(2, types::USER_CONTROL, 0, &Message::UserControl(UserControl::PingResponse(1)).encode().1);
    let mut s = ServerSession::new(SessionConfig::default(), t0);
    s.handle_input(&connected_wire(), t0).unwrap();
    for t in [14, 28] {
        s.handle_timeout(secs(t)).unwrap();
        s.handle_input(&pong, secs(t)).unwrap();
    }
    assert_eq!(s.poll_timeout(), Some(secs(30)));
    let e = s.handle_timeout(secs(30)).unwrap_err();
    assert_eq!(e.kind, ProtocolErrorKind::Timeout);
    assert!(e.context.contains("no publish or play"), "{e}");

    // A pending play defers the deadline; an accepted one lifts it.
    let mut s = ServerSession::new(SessionConfig::default(), t0);
    let mut wire = connected_wire();
    wire.extend(command_wire(1, Command::new("play", 0.0, Amf0Value::Null, vec!["k".into()])));
    s.handle_input(&wire, t0).unwrap();
    assert_eq!(s.poll_timeout(), Some(secs(15)));
    s.handle_input(&pong, secs(29)).unwrap();
    s.handle_timeout(secs(31)).unwrap();
    s.accept_play(1).unwrap();
    s.handle_input(&pong, secs(40)).unwrap();
    s.handle_timeout(secs(54)).unwrap();
    assert_eq!(s.poll_timeout(), Some(secs(55)));
}

/// Until a publish is accepted, incomplete messages may hold 256 KiB; an
/// accepted publisher gets the full budget for large keyframes.
#[test]
fn incomplete_bytes_budget_is_small_until_publishing() {
    assert_eq!(DecoderLimits::default().max_buffered, 17 << 20);
    let now = Instant::now();
    let mut wire = connected_wire();
    wire.extend(command_wire(1, Command::new("publish", 3.0, Amf0Value::Null, vec!["k".into()])));
    let mut idr = vec![0x17, 1, 0, 0, 0];
    idr.resize(300 << 10, 0x42);
    let video = message_wire(6, types::VIDEO, 1, &idr);

    let mut s = ServerSession::new(SessionConfig::default(), now);
    s.handle_input(&wire, now).unwrap();
    let e = s.handle_input(&video, now).unwrap_err();
    assert_eq!(e.kind, ProtocolErrorKind::TooLarge);
    assert!(e.context.contains("262144 bytes of incomplete messages"), "{e}");

    let mut s = ServerSession::new(SessionConfig::default(), now);
    s.handle_input(&wire, now).unwrap();
    while s.poll_event().is_some() {}
    s.accept_publish(1).unwrap();
    s.handle_input(&video, now).unwrap();
    let frame = std::iter::from_fn(|| s.poll_event()).find_map(|e| match e {
        SessionEvent::Media { frame, .. } => Some(frame),
        _ => None,
    });
    assert_eq!(frame.map(|f| f.payload.len()), Some((300 << 10) - 5));
}

/// A command over 64 KiB is refused before `connect`, before decoding.
#[test]
fn oversized_command_closes_the_session() {
    let now = Instant::now();
    let mut wire = vec![3u8];
    wire.resize(1 + 2 * HANDSHAKE_SIZE, 0);
    let mut body = Command::new("connect", 1.0, Amf0Value::Null, vec![]).encode().to_vec();
    body.resize(message::MAX_COMMAND_SIZE + 1, 0x05);
    wire.extend(message_wire(3, types::COMMAND_AMF0, 0, &body));
    let mut s = ServerSession::new(SessionConfig::default(), now);
    let e = s.handle_input(&wire, now).unwrap_err();
    assert_eq!(e.kind, ProtocolErrorKind::TooLarge);
    assert!(e.context.contains("command message of 65537 bytes exceeds the limit of 64 KiB"), "{e}");
}

fn aggregate(tags: usize) -> Bytes {
    let mut agg = Vec::new();
    for i in 0..tags {
        let body = [0xaf, 1, i as u8];
        agg.extend_from_slice(&[8, 0, 0, 3, 0, 0, i as u8, 0, 0, 0, 0]);
        agg.extend_from_slice(&body);
        agg.extend_from_slice(&14u32.to_be_bytes());
    }
    Bytes::from(agg)
}

#[test]
fn aggregate_tag_count_is_limited() {
    let now = Instant::now();
    let mut s = ServerSession::new(SessionConfig::default(), now);
    s.handle_input(&publish_wire(&[(types::AGGREGATE, 0, aggregate(MAX_AGGREGATE_TAGS))]), now).unwrap();
    let media = std::iter::from_fn(|| s.poll_event()).filter(|e| matches!(e, SessionEvent::Media { .. })).count();
    assert_eq!(media, MAX_AGGREGATE_TAGS);
    let mut s = ServerSession::new(SessionConfig::default(), now);
    let wire = publish_wire(&[(types::AGGREGATE, 0, aggregate(MAX_AGGREGATE_TAGS + 1))]);
    let e = s.handle_input(&wire, now).unwrap_err();
    assert_eq!(e.kind, ProtocolErrorKind::TooLarge);
    assert!(e.context.contains("1024 tags"), "{e}");
}

/// A second play or a publish on a busy stream is answered with an error
/// status; the connection and the first play go on.
#[test]
fn busy_stream_commands_get_an_error_status() {
    let now = Instant::now();
    let mut wire = connected_wire();
    wire.extend(command_wire(1, Command::new("play", 0.0, Amf0Value::Null, vec!["a".into()])));
    let mut s = ServerSession::new(SessionConfig::default(), now);
    s.handle_input(&wire, now).unwrap();
    while s.poll_event().is_some() {}
    s.accept_play(1).unwrap();
    let mut out = Vec::new();
    let _ = status_codes(&mut s, &mut out);
    s.handle_input(&command_wire(1, Command::new("play", 0.0, Amf0Value::Null, vec!["b".into()])), now).unwrap();
    assert_eq!(status_codes(&mut s, &mut out), vec![codes::PLAY_FAILED]);
    s.handle_input(&command_wire(1, Command::new("publish", 0.0, Amf0Value::Null, vec!["c".into()])), now).unwrap();
    assert_eq!(status_codes(&mut s, &mut out), vec![codes::PUBLISH_BAD_NAME]);
    assert_eq!(s.poll_event(), None);
    let aac = MediaFrame::new(CodecId::Aac, Bytes::from_static(&[1])).with_flags(FrameFlags::KEYFRAME);
    s.send_media(1, &aac).unwrap();
}

/// A frame RTMP cannot express (over 16 MiB - 1) is refused, not cut; the
/// session goes on. A slow peer breaks the session.
#[test]
fn oversized_frames_are_refused_and_the_session_goes_on() {
    let now = Instant::now();
    let mut wire = connected_wire();
    wire.extend(command_wire(1, Command::new("play", 0.0, Amf0Value::Null, vec!["a".into()])));
    let config = SessionConfig { max_queued_bytes: 1 << 20, ..SessionConfig::default() };
    let mut s = ServerSession::new(config, now);
    s.handle_input(&wire, now).unwrap();
    while s.poll_event().is_some() {}
    s.accept_play(1).unwrap();
    while s.poll_transmit().is_some() {}
    let huge =
        MediaFrame::new(CodecId::H264, Bytes::from(vec![0u8; MAX_MESSAGE_BODY - 4])).with_flags(FrameFlags::KEYFRAME);
    let e = s.send_media(1, &huge).unwrap_err();
    assert_eq!(e.kind, ProtocolErrorKind::TooLarge);
    assert!(!s.is_failed());
    assert_eq!(s.queued_bytes(), 0, "nothing of the refused frame is queued");
    let small = MediaFrame::new(CodecId::H264, Bytes::from(vec![0u8; 2 << 20])).with_flags(FrameFlags::KEYFRAME);
    s.send_media(1, &small).unwrap();
    assert!(!s.is_failed());
    assert!(s.send_media(1, &small).is_err());
    assert!(s.is_failed(), "over max_queued_bytes the session is broken");
}

#[test]
fn publish_before_connect_fails_and_stays_failed() {
    let mut wire = vec![3u8];
    wire.resize(1 + 2 * HANDSHAKE_SIZE, 0);
    let mut parts = Vec::new();
    let cmd = Command::new("publish", 1.0, Amf0Value::Null, vec!["x".into()]);
    ChunkEncoder::new().write(3, types::COMMAND_AMF0, 1, 0, &[cmd.encode()], &mut parts);
    wire.extend(parts.concat());
    let now = Instant::now();
    let mut s = ServerSession::new(SessionConfig::default(), now);
    assert!(s.handle_input(&wire, now).is_err());
    assert!(s.handle_input(&[], now).is_err());
}

#[test]
fn enhanced_rtmp_hevc_publish() {
    let mut wire = vec![3u8];
    wire.resize(1 + 2 * HANDSHAKE_SIZE, 0);
    let mut enc = ChunkEncoder::new();
    let mut parts = Vec::new();
    let connect = obj(&[("app", Amf0Value::from("live"))]);
    enc.write(3, types::COMMAND_AMF0, 0, 0, &[Command::new("connect", 1.0, connect, vec![]).encode()], &mut parts);
    enc.write(
        3,
        types::COMMAND_AMF0,
        0,
        0,
        &[Command::new("createStream", 2.0, Amf0Value::Null, vec![]).encode()],
        &mut parts,
    );
    let publish = Command::new("publish", 3.0, Amf0Value::Null, vec!["hevc".into(), "live".into()]);
    enc.write(3, types::COMMAND_AMF0, 1, 0, &[publish.encode()], &mut parts);
    // Enhanced: SequenceStart (hvcC) and CodedFrames with a composition time.
    let mut seq = vec![0x90];
    seq.extend_from_slice(b"hvc1");
    seq.extend_from_slice(&[1, 2, 3]);
    let mut coded = vec![0x91];
    coded.extend_from_slice(b"hvc1");
    coded.extend_from_slice(&[0, 0, 40, 0, 0, 0, 2, 0x26, 0x01]);
    enc.write(6, types::VIDEO, 1, 0, &[Bytes::from(seq)], &mut parts);
    enc.write(6, types::VIDEO, 1, 0, &[Bytes::from(coded)], &mut parts);
    wire.extend(parts.concat());
    let now = Instant::now();
    let mut s = ServerSession::new(SessionConfig::default(), now);
    s.handle_input(&wire, now).unwrap();
    let frames: Vec<MediaFrame> = std::iter::from_fn(|| s.poll_event())
        .filter_map(|e| match e {
            SessionEvent::Media { frame, .. } => Some(frame),
            _ => None,
        })
        .collect();
    assert_eq!(frames.len(), 2);
    assert!(frames.iter().all(|f| f.codec == CodecId::H265));
    assert!(frames[0].is_config() && frames[1].is_keyframe());
    assert_eq!((frames[1].pts, frames[1].dts), (40, 0));
}

/// Handshake, connect, createStream and publish "agg", then `extra`.
fn publish_wire(extra: &[(u8, u32, Bytes)]) -> Vec<u8> {
    let mut wire = vec![3u8];
    wire.resize(1 + 2 * HANDSHAKE_SIZE, 0);
    let mut enc = ChunkEncoder::new();
    let mut parts = Vec::new();
    let connect = obj(&[("app", Amf0Value::from("live"))]);
    enc.write(3, types::COMMAND_AMF0, 0, 0, &[Command::new("connect", 1.0, connect, vec![]).encode()], &mut parts);
    enc.write(
        3,
        types::COMMAND_AMF0,
        0,
        0,
        &[Command::new("createStream", 2.0, Amf0Value::Null, vec![]).encode()],
        &mut parts,
    );
    let publish = Command::new("publish", 3.0, Amf0Value::Null, vec!["agg".into()]);
    enc.write(3, types::COMMAND_AMF0, 1, 0, &[publish.encode()], &mut parts);
    for (ty, ts, body) in extra {
        enc.write(4, *ty, 1, *ts, std::slice::from_ref(body), &mut parts);
    }
    wire.extend(parts.concat());
    wire
}

#[test]
fn aggregate_messages_are_split() {
    let mut agg = Vec::new();
    for (ty, ts, body) in [(8u8, 1000u32, &[0xaf, 1, 7][..]), (9, 1040, &[0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41][..])] {
        let [_, a, b, c] = (body.len() as u32).to_be_bytes();
        let [e, x, y, z] = ts.to_be_bytes();
        agg.extend_from_slice(&[ty, a, b, c, x, y, z, e, 0, 0, 0]);
        agg.extend_from_slice(body);
        agg.extend_from_slice(&((11 + body.len()) as u32).to_be_bytes());
    }
    let wire = publish_wire(&[(types::AGGREGATE, 500, Bytes::from(agg.clone()))]);
    let now = Instant::now();
    let mut s = ServerSession::new(SessionConfig::default(), now);
    s.handle_input(&wire, now).unwrap();
    let frames: Vec<(CodecId, i64)> = std::iter::from_fn(|| s.poll_event())
        .filter_map(|e| match e {
            SessionEvent::Media { frame, .. } => Some((frame.codec, frame.dts)),
            _ => None,
        })
        .collect();
    assert_eq!(frames, vec![(CodecId::Aac, 500), (CodecId::H264, 540)]);
    // A truncated aggregate is an error, not a panic.
    let wire = publish_wire(&[(types::AGGREGATE, 500, Bytes::from(agg[..20].to_vec()))]);
    let mut s = ServerSession::new(SessionConfig::default(), now);
    assert_eq!(s.handle_input(&wire, now).unwrap_err().kind, ProtocolErrorKind::Truncated);
}
