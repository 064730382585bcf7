//! Hostile peers against the running `arcly` binary while a real stream
//! plays: ffmpeg publishes `testdata/h264_aac.flv` in a loop, in real time,
//! and two watchers (an RTMP player and an HTTP-FLV player) check every
//! video frame arrives. Then each attack in turn. For each the test
//! asserts that
//!
//! - the watchers lost no frame (decode timestamps continuous) and kept
//!   receiving during the attack;
//! - the hostile connection was closed (its socket sees EOF or a reset);
//! - the server logged a line naming the reason (captured stderr, info);
//! - `GET /api/v1/stats` counted what happened;
//! - the server's resident memory (`VmRSS` of the child process) went back
//!   near its baseline.
//!
//! The server runs as a child process, so its memory can be read from
//! `/proc`, with short timeouts (see [`CONFIG`]) to keep the run short.
#![allow(clippy::print_stderr)] // Measured figures are printed.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arcly_core::frame::{FrameType, Timebase};
use arcly_rtmp::chunk::ChunkEncoder;
use arcly_rtmp::client::{ClientEvent, ClientMode, ClientSession, RtmpUrl};
use arcly_rtmp::handshake::ClientHandshake;
use arcly_rtmp::message::{Message, types};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

/// Short deadlines so that each attack takes a few seconds. Everything on
/// 127.0.0.1.
const CONFIG: &str = r#"
log = "info"
[rtmp]
listen = "127.0.0.1:0"
handshake_timeout_ms = 1500
# Also the write timeout of a player that does not read.
idle_timeout_ms = 2000
max_connections_per_ip = 100
[http]
listen = "127.0.0.1:0"
header_read_timeout_ms = 1500
flv_write_timeout_ms = 2000
max_connections_per_ip = 100
play_wait_ms = 10000
[[app]]
name = "live"
republish_grace_secs = 0.0
"#;

/// The test stream's video frame duration (25 fps).
const FRAME_MS: i64 = 40;

/// How far above its baseline the server's RSS may be after an attack.
/// The attacks make the server hold at most a few hundred KiB per hostile
/// connection (a 256 KiB partial message, 98 handshaking connections),
/// all freed when they close; the allocator keeps some freed pages and
/// arenas mapped, and the HLS packager's window fills up over the run
/// (about 12 s of this 27 KB/s stream). A leak of a buffer per refused or
/// closed connection (10 000 of them) would exceed this.
const RSS_TOLERANCE_KIB: u64 = 8 << 10;

/// The `arcly` binary as a child process, its log captured.
struct Arcly {
    child: Child,
    rtmp: SocketAddr,
    http: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Arcly {
    async fn start() -> Self {
        let dir = arcly_testkit::scratch_dir("hostile");
        let path = dir.join("arcly.toml");
        std::fs::write(&path, CONFIG).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_arcly"))
            .arg("--config")
            .arg(&path)
            .env_remove("ARCLY_CONFIG")
            .env_remove("ARCLY_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run arcly");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (rtmp, http) = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                log.lock().unwrap().push(line.clone());
                if line.contains("arcly started") {
                    let addr = |key: &str| -> SocketAddr {
                        let at = line.find(key).expect("address logged") + key.len();
                        line[at..].split_whitespace().next().unwrap().parse().unwrap()
                    };
                    return (addr("rtmp="), addr("http="));
                }
            }
            panic!("arcly exited before it started");
        })
        .await
        .expect("arcly starts within 10 s");
        // Keep reading the log so the child never blocks on a full pipe.
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, rtmp, http, log }
    }

    /// The server's resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("arcly runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn log_len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn log_since(&self, mark: usize) -> Vec<String> {
        self.log.lock().unwrap()[mark..].to_vec()
    }

    /// `GET /api/v1/stats`, `connections`. Sent from 127.0.0.2 (also the
    /// loopback interface), as an operator would from another address:
    /// the attacks fill 127.0.0.1's per-address connection limit.
    async fn stats(&self) -> Value {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).expect("bind 127.0.0.2");
        let mut s = socket.connect(self.http).await.unwrap();
        let head = format!("GET /api/v1/stats HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.http);
        s.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut raw)).await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").expect("a response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let v: Value = serde_json::from_str(body).expect("JSON");
        v["connections"].clone()
    }
}

/// What a watcher saw.
#[derive(Debug, Default)]
struct Watch {
    /// Video frames (not configuration) received.
    frames: u64,
    last_dts: Option<i64>,
    /// (previous, next) decode timestamps more than two frames apart.
    gaps: Vec<(i64, i64)>,
    /// Set when the watcher's connection ended.
    ended: Option<String>,
}

impl Watch {
    fn video(&mut self, dts: i64) {
        self.frames += 1;
        if let Some(last) = self.last_dts
            && !(1..=2 * FRAME_MS).contains(&(dts - last))
        {
            self.gaps.push((last, dts));
        }
        self.last_dts = Some(dts);
    }
}

type Shared = Arc<Mutex<Watch>>;

/// An RTMP player built from the crate's sans-IO client (it answers the
/// server's pings).
async fn rtmp_watcher(addr: SocketAddr, key: &str, watch: Shared) {
    let url = RtmpUrl::parse(&format!("rtmp://{addr}/live/{key}")).unwrap();
    let mut session = ClientSession::new(url, ClientMode::Play).unwrap();
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let why = 'run: loop {
        while let Some(b) = session.poll_transmit() {
            if let Err(e) = socket.write_all(&b).await {
                break 'run format!("write: {e}");
            }
        }
        let n = match socket.read(&mut buf).await {
            Ok(0) => break "server closed".to_owned(),
            Ok(n) => n,
            Err(e) => break format!("read: {e}"),
        };
        if let Err(e) = session.handle_input(&buf[..n]) {
            break format!("protocol: {e}");
        }
        let mut w = watch.lock().unwrap();
        while let Some(event) = session.poll_event() {
            match event {
                ClientEvent::Media(f) if f.frame_type() == FrameType::Video && !f.is_config() => {
                    w.video(f.dts_in(Timebase::MILLIS));
                }
                ClientEvent::StreamEnded => w.ended = Some("stream ended".into()),
                _ => {}
            }
        }
    };
    watch.lock().unwrap().ended.get_or_insert(why);
}

/// An HTTP-FLV player: an HTTP/1.0 request (the body is the FLV stream,
/// not chunked), FLV tags parsed as they come.
async fn flv_watcher(addr: SocketAddr, key: &str, watch: Shared) {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(format!("GET /live/live/{key}.flv HTTP/1.0\r\n\r\n").as_bytes()).await.unwrap();
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut body_at = None;
    let mut pos = 0;
    let why = loop {
        let n = match socket.read(&mut buf).await {
            Ok(0) => break "server closed".to_owned(),
            Ok(n) => n,
            Err(e) => break format!("read: {e}"),
        };
        data.extend_from_slice(&buf[..n]);
        if body_at.is_none() {
            let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
            assert!(data.starts_with(b"HTTP/1.0 200") || data.starts_with(b"HTTP/1.1 200"), "HTTP-FLV refused");
            body_at = Some(end + 4);
            // FLV header and the first back pointer.
            pos = end + 4 + 9 + 4;
        }
        let mut w = watch.lock().unwrap();
        while let Some(tag) = data.get(pos..pos + 11) {
            let size = u32::from_be_bytes([0, tag[1], tag[2], tag[3]]) as usize;
            let Some(body) = data.get(pos + 11..pos + 11 + size + 4) else { break };
            let dts = i64::from(u32::from_be_bytes([tag[7], tag[4], tag[5], tag[6]]));
            // AVC: packet type 1 is a frame (0 is the configuration).
            if tag[0] == 9 && body.get(1) == Some(&1) {
                w.video(dts);
            }
            pos += 11 + size + 4;
        }
        drop(w);
        // Keep memory bounded over the run.
        if pos > 1 << 20 {
            data.drain(..pos);
            pos = 0;
        }
    };
    watch.lock().unwrap().ended.get_or_insert(why);
}

/// ffmpeg publishing the test stream to `live/{key}` in a loop, at `rate`
/// times real time.
fn publish(rtmp: SocketAddr, key: &str, rate: &str) -> Child {
    let url = format!("rtmp://{rtmp}/live/{key}");
    let src = arcly_testkit::testdata("h264_aac.flv");
    let args = [
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-readrate",
        rate,
        "-stream_loop",
        "-1",
        "-i",
        src.to_str().unwrap(),
        "-c",
        "copy",
        "-f",
        "flv",
        &url,
    ];
    arcly_testkit::peer::spawn("ffmpeg", "ffmpeg", &args)
}

/// The server with a stream playing and its watchers.
struct Scene {
    arcly: Arcly,
    _publisher: Child,
    rtmp: Shared,
    flv: Shared,
    baseline_kib: u64,
}

impl Scene {
    async fn start() -> Self {
        let arcly = Arcly::start().await;
        let (rtmp, flv) = (Shared::default(), Shared::default());
        // The HTTP-FLV watcher waits for the stream (http.play_wait_ms).
        tokio::spawn(flv_watcher(arcly.http, "x", flv.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let publisher = publish(arcly.rtmp, "x", "1");
        wait_for(Duration::from_secs(10), "the HTTP-FLV watcher's first frames", || flv.lock().unwrap().frames > 5)
            .await;
        tokio::spawn(rtmp_watcher(arcly.rtmp, "x", rtmp.clone()));
        wait_for(Duration::from_secs(5), "the RTMP watcher's first frames", || rtmp.lock().unwrap().frames > 5).await;
        // Settle: GOP cache and HLS window filling, the first players' buffers.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let baseline_kib = arcly.rss_kib();
        eprintln!("baseline RSS {baseline_kib} KiB");
        Self { arcly, _publisher: publisher, rtmp, flv, baseline_kib }
    }

    fn frames(&self) -> (u64, u64) {
        (self.rtmp.lock().unwrap().frames, self.flv.lock().unwrap().frames)
    }

    /// Runs `attack`, then checks the stream went on for the watchers, the
    /// log names `reason` for `protocol`, the counters moved as `expect`
    /// says, and memory came back.
    async fn check<F: Future<Output = ()>>(
        &self,
        name: &str,
        protocol: &str,
        reason: &str,
        expect: &[(&str, &str, &str, u64)],
        attack: F,
    ) {
        let before = self.arcly.stats().await;
        let mark = self.arcly.log_len();
        let frames = self.frames();
        let started = Instant::now();
        attack.await;
        let took = started.elapsed();
        // The counters are updated as the server's connection tasks end.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = self.arcly.stats().await;
        let mut report = String::new();
        for &(proto, group, key, n) in expect {
            let delta = count(&after, proto, group, key) - count(&before, proto, group, key);
            if delta != n {
                let _ = writeln!(report, "{proto}.{group}.{key}: +{delta}, expected +{n}");
            }
        }
        assert!(report.is_empty(), "{name}: counters\n{report}before: {before}\nafter: {after}");

        let log = self.arcly.log_since(mark);
        let needle = format!("{protocol} connection closed");
        assert!(
            log.iter().any(|l| l.contains(" INFO ") && l.contains(&needle) && l.contains(&format!("reason={reason}"))),
            "{name}: no info line \"{needle}\" with reason={reason} in the log:\n{}",
            log.join("\n")
        );

        for (which, watch) in [("rtmp", &self.rtmp), ("http-flv", &self.flv)] {
            let w = watch.lock().unwrap();
            assert!(w.ended.is_none(), "{name}: the {which} watcher's connection ended: {:?}", w.ended);
            assert!(w.gaps.is_empty(), "{name}: the {which} watcher lost frames (dts gaps {:?})", w.gaps);
        }
        let now = self.frames();
        // -re paces at 25 fps; allow for batching and scheduling.
        let want = (took.as_millis() as u64 / FRAME_MS as u64) / 2;
        for (which, (a, b)) in [("rtmp", (frames.0, now.0)), ("http-flv", (frames.1, now.1))] {
            assert!(b - a + 3 >= want, "{name}: the {which} watcher got {} frames in {took:?}", b - a);
        }

        let rss = wait_rss(&self.arcly, self.baseline_kib + RSS_TOLERANCE_KIB).await;
        eprintln!("{name}: {took:?}, RSS {rss} KiB (baseline {} KiB)", self.baseline_kib);
    }
}

/// The RSS once it is at most `limit` KiB (it may take a moment for freed
/// memory to go back); fails after 3 s.
async fn wait_rss(arcly: &Arcly, limit: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let rss = arcly.rss_kib();
        if rss <= limit {
            return rss;
        }
        assert!(Instant::now() < deadline, "RSS {rss} KiB stays above {limit} KiB");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn count(stats: &Value, protocol: &str, group: &str, key: &str) -> u64 {
    let v = &stats[protocol];
    let v = if key.is_empty() { &v[group] } else { &v[group][key] };
    v.as_u64().unwrap_or_else(|| panic!("no {protocol}.{group}.{key} in {stats}"))
}

async fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "no {what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads until the server closes the connection (EOF or a reset); fails
/// if it does not within `secs`. Returns how long it took.
async fn expect_closed(socket: &mut TcpStream, secs: u64) -> Duration {
    let started = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the server did not close the connection within {secs} s"));
    started.elapsed()
}

/// A connection past the RTMP handshake (C0/C1/C2 done, nothing else).
async fn handshaken(addr: SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let (mut hs, c0c1) = ClientHandshake::new(true).unwrap();
    socket.write_all(&c0c1).await.unwrap();
    let mut buf = vec![0u8; 4096];
    while !hs.is_done() {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "server closed during the handshake");
        if let (_, Some(c2)) = hs.handle(&buf[..n]).unwrap() {
            socket.write_all(&c2).await.unwrap();
        }
    }
    socket
}

/// `body` as one message on chunk stream 3, cut into chunks of `chunk_size`
/// (the peer must have been told it).
fn chunked(type_id: u8, body: Vec<u8>, chunk_size: u32) -> Vec<u8> {
    let mut enc = ChunkEncoder::new();
    let mut parts = Vec::new();
    if chunk_size != 128 {
        enc.set_chunk_size(chunk_size, &mut parts);
    }
    enc.write(3, type_id, 0, 0, &[body.into()], &mut parts);
    parts.concat()
}

/// Pseudo-random bytes (xorshift), the same every run.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect()
}

/// AMF0 for a `connect` command: name and transaction id, then `rest`.
fn connect_command(rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0x02, 0, 7];
    body.extend_from_slice(b"connect");
    body.push(0x00);
    body.extend_from_slice(&1.0f64.to_be_bytes());
    body.extend_from_slice(rest);
    body
}

/// Random bytes right after connecting (an invalid version byte), and
/// random bytes after a valid handshake.
async fn random_bytes(scene: &Scene) {
    let mut socket = TcpStream::connect(scene.arcly.rtmp).await.unwrap();
    let mut bytes = noise(4096, 0x9e37_79b9_7f4a_7c15);
    bytes[0] |= 0x80;
    let _ = socket.write_all(&bytes).await;
    expect_closed(&mut socket, 2).await;

    let mut socket = handshaken(scene.arcly.rtmp).await;
    let _ = socket.write_all(&noise(4096, 7)).await;
    expect_closed(&mut socket, 3).await;
}

/// C0 and half of C1, then silence: the handshake timeout closes it.
async fn truncated_handshake(scene: &Scene) {
    let mut socket = TcpStream::connect(scene.arcly.rtmp).await.unwrap();
    let mut half = vec![3u8];
    half.extend_from_slice(&noise(768, 3));
    socket.write_all(&half).await.unwrap();
    let took = expect_closed(&mut socket, 4).await;
    assert!(took >= Duration::from_millis(1200), "closed after {took:?}, before the handshake timeout");
}

/// A 4 GB length field: an AMF0 long string declaring 0xFFFFFFFF bytes in
/// `connect`; and a chunk header declaring a 16 MiB message, fed 512 KiB.
async fn huge_lengths(scene: &Scene) {
    let mut socket = handshaken(scene.arcly.rtmp).await;
    let mut object = vec![0x03, 0, 3];
    object.extend_from_slice(b"app");
    object.extend_from_slice(&[0x0c, 0xff, 0xff, 0xff, 0xff]);
    object.extend_from_slice(b"live");
    socket.write_all(&chunked(types::COMMAND_AMF0, connect_command(&object), 128)).await.unwrap();
    expect_closed(&mut socket, 2).await;

    let mut socket = handshaken(scene.arcly.rtmp).await;
    let mut wire = Vec::new();
    // Set Chunk Size 65536 (allowed), then a type 0 header declaring a
    // message of 0xFFFFFF bytes, then chunks of it.
    wire.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 1, 0, 0]);
    wire.extend_from_slice(&[0x03, 0, 0, 0, 0xff, 0xff, 0xff, types::DATA_AMF0, 0, 0, 0, 0]);
    let mut chunk = vec![0u8; 65_536];
    chunk[0] = 0x02;
    wire.extend_from_slice(&chunk);
    for _ in 0..7 {
        wire.push(0xc3);
        wire.extend_from_slice(&chunk);
    }
    let _ = socket.write_all(&wire).await;
    expect_closed(&mut socket, 3).await;
}

/// Set Chunk Size 2^31 and 2^31 - 1, each followed by data.
async fn chunk_size_2_31(scene: &Scene) {
    for size in [0x8000_0000u32, 0x7fff_ffff] {
        let mut socket = handshaken(scene.arcly.rtmp).await;
        let mut wire = vec![0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0];
        wire.extend_from_slice(&size.to_be_bytes());
        wire.extend_from_slice(&chunked(types::COMMAND_AMF0, connect_command(&[0x05]), 128));
        wire.extend_from_slice(&noise(1024, u64::from(size)));
        let _ = socket.write_all(&wire).await;
        expect_closed(&mut socket, 2).await;
    }
}

/// AMF0 strict arrays nested 100 000 deep in `connect` (500 KB: over the
/// limits before it is parsed), and 12 000 deep in a command that fits
/// the 64 KiB command limit (reaches the AMF0 parser and its depth limit;
/// a recursive parser without one would overflow its stack).
async fn amf_nesting(scene: &Scene) {
    for depth in [100_000, 12_000] {
        let mut socket = handshaken(scene.arcly.rtmp).await;
        let mut nested = Vec::with_capacity(depth * 5 + 1);
        for _ in 0..depth {
            nested.extend_from_slice(&[0x0a, 0, 0, 0, 1]);
        }
        nested.push(0x05);
        let _ = socket.write_all(&chunked(types::COMMAND_AMF0, connect_command(&nested), 65_536)).await;
        expect_closed(&mut socket, 3).await;
    }
}

/// `n` connections that send nothing, opened 250 at a time (the next
/// batch once the server took the last one: more at once could overflow
/// the listen backlog, and the kernel would hold them for seconds). The
/// per-IP limit refuses most at accept; the others are closed by the
/// handshake (RTMP) or header read (HTTP) timeout, which frees places for
/// later ones. Checks that no more than `limit` were ever open at once
/// and that all were counted; returns the sockets.
async fn idle_flood(arcly: &Arcly, protocol: &str, addr: SocketAddr, n: usize, limit: u64) -> Vec<TcpStream> {
    let seen = |s: &Value| count(s, protocol, "opened", "") + count(s, protocol, "refused", "per_ip_limit");
    let base = arcly.stats().await;
    // Each stats request is an HTTP connection too.
    let mut stats_calls = 0;
    let mut held = Vec::with_capacity(n);
    let mut batch = JoinSet::new();
    for i in 0..n {
        batch.spawn(TcpStream::connect(addr));
        if batch.len() < 250 && i + 1 < n {
            continue;
        }
        while let Some(s) = batch.join_next().await {
            held.push(s.unwrap().expect("connect"));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = arcly.stats().await;
            stats_calls += u64::from(protocol == "http");
            if seen(&stats) - seen(&base) == held.len() as u64 + stats_calls {
                let open = count(&stats, protocol, "open", "") - u64::from(protocol == "http");
                assert!(open <= limit, "{open} {protocol} connections open at once: {stats}");
                break;
            }
            assert!(Instant::now() < deadline, "the server did not take {} connections: {stats}", held.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // The refused ones see EOF at once, the accepted ones after the
    // handshake or header read timeout.
    for s in &mut held {
        expect_closed(s, 5).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let end = arcly.stats().await;
    let delta = |group, key| count(&end, protocol, group, key) - count(&base, protocol, group, key);
    let (opened, refused, timeouts) =
        (delta("opened", ""), delta("refused", "per_ip_limit"), delta("closed", "timeout"));
    let opened = opened - if protocol == "http" { stats_calls + 1 } else { 0 };
    eprintln!("{n} idle {protocol} connections: {opened} accepted, {refused} refused");
    assert_eq!(opened + refused, n as u64, "every connection accepted or refused: {end}");
    assert_eq!(timeouts, opened, "every accepted idle connection timed out: {end}");
    assert!(refused >= n as u64 / 2, "most refused: {end}");
    held
}

/// Sends `data` one byte a second until the server closes the connection.
async fn slowloris(addr: SocketAddr, data: &[u8], secs: u64) -> Duration {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    for &b in data.iter().cycle() {
        assert!(started.elapsed() < Duration::from_secs(secs), "a slowloris peer was not closed within {secs} s");
        if socket.write_all(&[b]).await.is_err() {
            break;
        }
        // Data (the RTMP server answers once C1 is complete) or nothing
        // within a second: go on. EOF or a reset: closed.
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buf)).await {
            break;
        }
    }
    started.elapsed()
}

/// A socket with a small receive buffer, so a peer that does not read
/// fills it quickly.
async fn small_window(addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(addr).await.unwrap()
}

/// A player that plays `live/fast` and then never reads. It keeps sending
/// acknowledgements, so the idle timeout does not apply: only the write
/// timeout (or the bus evicting it) can close it.
async fn rtmp_player_never_reads(scene: &Scene) -> TcpStream {
    let addr = scene.arcly.rtmp;
    let mut socket = small_window(addr).await;
    let url = RtmpUrl::parse(&format!("rtmp://{addr}/live/fast")).unwrap();
    let mut session = ClientSession::new(url, ClientMode::Play).unwrap();
    let mut buf = vec![0u8; 4096];
    while !session.is_active() {
        while let Some(b) = session.poll_transmit() {
            socket.write_all(&b).await.unwrap();
        }
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before playing");
        session.handle_input(&buf[..n]).unwrap();
    }
    socket
}

/// An HTTP-FLV player of `live/fast` that never reads.
async fn flv_player_never_reads(scene: &Scene) -> TcpStream {
    let mut socket = small_window(scene.arcly.http).await;
    socket.write_all(b"GET /live/live/fast.flv HTTP/1.0\r\n\r\n").await.unwrap();
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_closed_and_counted_while_a_stream_plays() {
    let scene = Scene::start().await;
    let rtmp = scene.arcly.rtmp;

    scene
        .check(
            "random bytes",
            "rtmp",
            "protocol_error",
            &[("rtmp", "opened", "", 2), ("rtmp", "closed", "protocol_error", 2)],
            random_bytes(&scene),
        )
        .await;
    scene
        .check(
            "truncated handshake",
            "rtmp",
            "timeout",
            &[("rtmp", "opened", "", 1), ("rtmp", "closed", "timeout", 1)],
            truncated_handshake(&scene),
        )
        .await;
    scene
        .check(
            "4 GB length fields",
            "rtmp",
            "protocol_error",
            &[("rtmp", "opened", "", 2), ("rtmp", "closed", "protocol_error", 2)],
            huge_lengths(&scene),
        )
        .await;
    scene
        .check(
            "chunk size 2^31",
            "rtmp",
            "protocol_error",
            &[("rtmp", "opened", "", 2), ("rtmp", "closed", "protocol_error", 2)],
            chunk_size_2_31(&scene),
        )
        .await;
    scene
        .check(
            "AMF0 nested 100 000 deep",
            "rtmp",
            "protocol_error",
            &[("rtmp", "opened", "", 2), ("rtmp", "closed", "protocol_error", 2)],
            amf_nesting(&scene),
        )
        .await;

    // 10 000 idle RTMP connections (fewer if this process may not open as
    // many files) and 1 000 idle HTTP ones, from 127.0.0.1, where the
    // publisher and one watcher per protocol already are.
    let soft = rlimit::increase_nofile_limit(20_000).expect("RLIMIT_NOFILE");
    let n = 10_000.min(usize::try_from(soft).unwrap_or(usize::MAX).saturating_sub(1_500));
    if n < 10_000 {
        eprintln!("open files limit {soft}: {n} idle RTMP connections instead of 10 000");
    }
    let mark = scene.arcly.log_len();
    let started = Instant::now();
    scene
        .check("idle connections", "rtmp", "timeout", &[], async {
            drop(idle_flood(&scene.arcly, "rtmp", rtmp, n, 100).await);
            drop(idle_flood(&scene.arcly, "http", scene.arcly.http, 1_000, 100).await);
        })
        .await;
    let log = scene.arcly.log_since(mark);
    assert!(log.iter().any(|l| l.contains("http connection closed") && l.contains("reason=timeout")));
    let refusal_lines = log.iter().filter(|l| l.contains("connection refused")).count() as u64;
    let allowed = 2 * (started.elapsed().as_secs() + 1);
    assert!(refusal_lines <= allowed, "{refusal_lines} refusal lines: the log is not rate-limited");
    assert!(refusal_lines >= 2, "refusals are logged");

    scene
        .check(
            "slowloris",
            "http",
            "timeout",
            &[("rtmp", "closed", "timeout", 1), ("http", "closed", "timeout", 1)],
            async {
                let (r, h) = tokio::join!(
                    slowloris(rtmp, &[3u8; 1537], 5),
                    slowloris(scene.arcly.http, b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ", 5)
                );
                for took in [r, h] {
                    assert!(took >= Duration::from_millis(1200), "closed after {took:?}, before the timeout");
                }
            },
        )
        .await;
    // The log line for the RTMP slowloris.
    assert!(
        scene.arcly.log.lock().unwrap().iter().any(|l| l.contains("rtmp connection closed")
            && l.contains("reason=timeout")
            && l.contains("no handshake"))
    );

    // The kernel's socket buffers on loopback grow to megabytes: at this
    // stream's 27 KB/s a player would take minutes to fill them. So the
    // players that never read play a second stream, published at 40 times
    // real time; the watchers stay on the first.
    let fast = publish(rtmp, "fast", "40");
    wait_for(Duration::from_secs(10), "live/fast", || {
        scene.arcly.log.lock().unwrap().iter().any(|l| l.contains("rtmp publish started") && l.contains("live/fast"))
    })
    .await;
    scene
        .check(
            "players that never read",
            "rtmp",
            "slow_consumer",
            &[
                ("rtmp", "opened", "", 1),
                ("rtmp", "closed", "slow_consumer", 1),
                ("http", "closed", "slow_consumer", 1),
            ],
            async {
                let (mut r, mut h) = tokio::join!(rtmp_player_never_reads(&scene), flv_player_never_reads(&scene));
                let started = Instant::now();
                // Keep the RTMP player's input flowing so only its output
                // can get it closed; stop once the server counted both.
                let ack = chunked_ack();
                loop {
                    let stats = scene.arcly.stats().await;
                    if count(&stats, "rtmp", "closed", "slow_consumer") > 0
                        && count(&stats, "http", "closed", "slow_consumer") > 0
                    {
                        break;
                    }
                    assert!(started.elapsed() < Duration::from_secs(15), "players that never read still open: {stats}");
                    let _ = r.write_all(&ack).await;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                eprintln!("players that never read: closed after {:?}", started.elapsed());
                // What the kernel buffered drains, then EOF or a reset.
                expect_closed(&mut r, 5).await;
                expect_closed(&mut h, 5).await;
            },
        )
        .await;
    assert!(
        scene
            .arcly
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("http connection closed") && l.contains("reason=slow_consumer"))
    );
    drop(fast);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Everything hostile is gone; the watchers are the only players left.
    let stats = scene.arcly.stats().await;
    assert_eq!(count(&stats, "rtmp", "open", ""), 2, "publisher and watcher: {stats}");
    eprintln!("final stats: {stats}");
}

/// An Acknowledgement message (a few bytes on chunk stream 2).
fn chunked_ack() -> Vec<u8> {
    let (type_id, body) = Message::Acknowledgement(0).encode();
    let mut parts = Vec::new();
    ChunkEncoder::new().write(2, type_id, 0, 0, &[body], &mut parts);
    parts.concat()
}
