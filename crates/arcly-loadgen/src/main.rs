//! `arcly-loadgen`: a load generator for live-media servers.
//!
//! One process publishes a stream over RTMP (a looped FLV file or a synthetic
//! stream, in real time) and opens many RTMP or HTTP-FLV players. Because the
//! publisher and the players share the process, the publisher records the
//! wall-clock instant each video frame was sent (keyed by its timestamp in
//! milliseconds) and the players compute the publish-to-receive delay of every
//! video frame they receive.
//!
//! Everything runs on one `current_thread` runtime: per-connection state is a
//! socket, a protocol session and a few counters; all players share one read
//! buffer. It prints one line per second and a summary at the end; the last
//! line (`summary key=value ...`) is meant for scripts.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use arcly_core::frame::{CodecId, FrameType, MediaFrame, Timebase};
use arcly_core::testing::SyntheticStream;
use arcly_mux::flv::FlvReader;
use arcly_rtmp::client::{ClientEvent, ClientMode, ClientSession, RtmpUrl};
use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::LocalSet;
use tokio::time::Instant as TokioInstant;

/// Load generator: an RTMP publisher and many RTMP or HTTP-FLV players.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Publish to this RTMP URL (`rtmp://host:port/app/key`).
    #[arg(long, value_name = "URL")]
    publish: Option<String>,
    /// With --publish: an FLV file, looped in real time.
    #[arg(long, value_name = "PATH", conflicts_with = "synthetic")]
    file: Option<PathBuf>,
    /// With --publish: a synthetic H.264 + AAC stream (payloads not decodable).
    #[arg(long)]
    synthetic: bool,
    /// Synthetic video bit rate in kbit/s.
    #[arg(long, default_value_t = 3000)]
    bitrate_kbps: u32,
    /// Synthetic frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Synthetic frames per GOP (keyframes are ten times a delta frame).
    #[arg(long, default_value_t = 60)]
    gop_frames: u32,
    /// Play this URL: `rtmp://host:port/app/key` or `http://host:port/path.flv`.
    #[arg(long, value_name = "URL")]
    play: Option<String>,
    /// Number of players.
    #[arg(long, default_value_t = 1)]
    players: usize,
    /// Pause between two player connections, in milliseconds.
    #[arg(long, default_value_t = 1)]
    connect_spacing_ms: u64,
    /// Total run time in seconds; the loadgen stops by itself after it.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// No per-second lines.
    #[arg(long)]
    quiet: bool,
}

/// Counters shared by every task (one thread: `RefCell`s are enough).
#[derive(Default)]
struct Stats {
    alive: usize,
    connected: usize,
    failed: usize,
    first_error: Option<String>,
    frames: u64,
    video_frames: u64,
    bytes: u64,
    sec_frames: u64,
    sec_bytes: u64,
    missing: u64,
    ttff_us: Vec<u32>,
    delay_us: Vec<u32>,
    published_video: u64,
}

/// Delay samples kept at most (memory bound).
const MAX_DELAY_SAMPLES: usize = 20_000_000;

struct Shared {
    /// Video timestamp (ms) to the instant the publisher sent it.
    sent: RefCell<BTreeMap<u32, Instant>>,
    stats: RefCell<Stats>,
    /// The one read buffer of all players.
    buf: RefCell<Vec<u8>>,
    publishing: Cell<bool>,
}

fn main() {
    let args = Args::parse();
    if args.publish.is_some() && args.file.is_none() && !args.synthetic {
        eprintln!("error: --publish needs --file PATH or --synthetic");
        std::process::exit(2);
    }
    if args.publish.is_none() && args.play.is_none() {
        eprintln!("error: nothing to do: give --publish and/or --play");
        std::process::exit(2);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let code = LocalSet::new().block_on(&rt, run(args));
    // Dropping the runtime cancels the remaining tasks.
    drop(rt);
    std::process::exit(code);
}

async fn run(args: Args) -> i32 {
    let shared = Rc::new(Shared {
        sent: RefCell::new(BTreeMap::new()),
        stats: RefCell::new(Stats::default()),
        buf: RefCell::new(vec![0; 256 * 1024]),
        publishing: Cell::new(false),
    });
    let started = Instant::now();
    let deadline = TokioInstant::now() + Duration::from_secs(args.duration);
    let cpu0 = own_cpu_ticks();

    if let Some(url) = &args.publish {
        let Some(url) = RtmpUrl::parse(url) else {
            eprintln!("error: --publish: not an rtmp://host[:port]/app/key URL");
            return 2;
        };
        let source: Box<dyn Iterator<Item = MediaFrame>> = match &args.file {
            Some(path) => match load_flv(path) {
                Ok(frames) => Box::new(FileLoop::new(frames)),
                Err(e) => {
                    eprintln!("error: {}: {e}", path.display());
                    return 2;
                }
            },
            None => Box::new(synthetic(args.bitrate_kbps, args.fps, args.gop_frames)),
        };
        let sh = shared.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = publisher(&sh, url, source).await {
                eprintln!("publisher: {e}");
            }
            sh.publishing.set(false);
        });
        // Players start once the stream is live.
        let wait = TokioInstant::now() + Duration::from_secs(10);
        while !shared.publishing.get() && TokioInstant::now() < wait.min(deadline) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !shared.publishing.get() {
            eprintln!("error: the publisher did not start publishing");
        }
    }

    if let Some(url) = &args.play {
        let target = match PlayTarget::parse(url) {
            Some(t) => Rc::new(t),
            None => {
                eprintln!("error: --play: expected rtmp://host[:port]/app/key or http://host[:port]/path");
                return 2;
            }
        };
        let (sh, n, spacing) = (shared.clone(), args.players, Duration::from_millis(args.connect_spacing_ms));
        tokio::task::spawn_local(async move {
            for _ in 0..n {
                let (sh, target) = (sh.clone(), target.clone());
                tokio::task::spawn_local(async move {
                    let result = match &*target {
                        PlayTarget::Rtmp(url) => rtmp_player(&sh, url.clone()).await,
                        PlayTarget::Http { addr, host, path } => flv_player(&sh, addr, host, path).await,
                    };
                    if let Err(e) = result {
                        let mut st = sh.stats.borrow_mut();
                        st.failed += 1;
                        st.first_error.get_or_insert(e);
                    }
                });
                if !spacing.is_zero() {
                    tokio::time::sleep(spacing).await;
                }
            }
        });
    }

    let mut tick = tokio::time::interval_at(TokioInstant::now() + Duration::from_secs(1), Duration::from_secs(1));
    let mut second = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tick.tick() => {
                second += 1;
                let mut st = shared.stats.borrow_mut();
                if !args.quiet {
                    println!(
                        "t={second:>3}s players alive {:>6}  frames/s {:>8}  MB/s {:>8.2}",
                        st.alive,
                        st.sec_frames,
                        st.sec_bytes as f64 / 1e6
                    );
                }
                st.sec_frames = 0;
                st.sec_bytes = 0;
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu_pct = (own_cpu_ticks() - cpu0) as f64 / CLK_TCK * 100.0 / wall;
    summary(&args, &shared.stats.borrow_mut(), cpu_pct);
    0
}

/// `/proc` clock ticks per second: 100 on every Linux platform in practice
/// (std cannot ask `sysconf`).
const CLK_TCK: f64 = 100.0;

/// utime + stime of this process, in clock ticks (0 without /proc).
fn own_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may contain spaces): state is
    // field 3; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn summary(args: &Args, st: &Stats, cpu_pct: f64) {
    let mut ttff = st.ttff_us.clone();
    ttff.sort_unstable();
    let mut delay = st.delay_us.clone();
    delay.sort_unstable();
    let max = delay.last().map_or(f64::NAN, |&d| f64::from(d) / 1000.0);
    let players = if args.play.is_some() { args.players } else { 0 };
    println!("--- summary ---");
    println!(
        "players: {} alive at the end, {} connected (reached play), {} failed{}",
        st.alive,
        st.connected,
        st.failed,
        st.first_error.as_deref().map(|e| format!(" (first error: {e})")).unwrap_or_default()
    );
    println!(
        "received: {} frames ({} video), {:.1} MB; video frames missing (approx.): {}",
        st.frames,
        st.video_frames,
        st.bytes as f64 / 1e6,
        st.missing
    );
    println!("published: {} video frames", st.published_video);
    println!(
        "time to first video frame: p50 {:.1} ms, p99 {:.1} ms ({} players)",
        percentile_ms(&ttff, 0.5),
        percentile_ms(&ttff, 0.99),
        ttff.len()
    );
    println!(
        "publish-to-receive delay (video frames sent after the player started playing): \
         p50 {:.1} ms, p99 {:.1} ms, max {max:.1} ms ({} samples)",
        percentile_ms(&delay, 0.5),
        percentile_ms(&delay, 0.99),
        delay.len()
    );
    println!("loadgen CPU: {cpu_pct:.1}% of one core");
    println!(
        "summary players={players} alive={} connected={} failed={} frames={} video_frames={} bytes={} missing={} \
         published_video={} ttff_p50_ms={:.1} ttff_p99_ms={:.1} delay_samples={} delay_p50_ms={:.1} \
         delay_p99_ms={:.1} delay_max_ms={max:.1} cpu_pct={cpu_pct:.1}",
        st.alive,
        st.connected,
        st.failed,
        st.frames,
        st.video_frames,
        st.bytes,
        st.missing,
        st.published_video,
        percentile_ms(&ttff, 0.5),
        percentile_ms(&ttff, 0.99),
        delay.len(),
        percentile_ms(&delay, 0.5),
        percentile_ms(&delay, 0.99),
    );
}

// ---------------------------------------------------------------- sources

/// The synthetic stream at `kbps` on average, its H.264 payloads made
/// length-prefixed NAL units (the bus format) so servers can walk them.
fn synthetic(kbps: u32, fps: u32, gop: u32) -> impl Iterator<Item = MediaFrame> {
    let (fps, gop) = (fps.max(1), gop.max(1));
    // Average frame = kbps*1000/8/fps; keyframes are ten deltas.
    let avg = u64::from(kbps) * 1000 / 8 / u64::from(fps);
    let delta = (avg * u64::from(gop) / (u64::from(gop) + 9)).max(16) as usize;
    SyntheticStream::new(fps, gop).with_audio(48_000).with_video_bytes(delta).map(|mut f| {
        if f.codec == CodecId::H264 && !f.is_config() {
            let mut b = BytesMut::with_capacity(f.payload.len() + 4);
            b.put_u32(f.payload.len() as u32);
            b.put_slice(&f.payload);
            f.payload = b.freeze();
        }
        f
    })
}

fn load_flv(path: &PathBuf) -> Result<Vec<MediaFrame>, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut reader = FlvReader::new();
    reader.push_bytes(Bytes::from(data));
    let mut frames = Vec::new();
    while let Some(tag) = reader.next_tag() {
        let tag = tag.map_err(|e| e.to_string())?;
        if let Some(frame) = tag.to_frame().map_err(|e| e.to_string())?
            && frame.frame_type() != FrameType::Data
        {
            frames.push(frame);
        }
    }
    if frames.is_empty() {
        return Err("no audio or video frames".into());
    }
    Ok(frames)
}

/// A file's frames, looped, with timestamps that keep increasing.
struct FileLoop {
    frames: Vec<MediaFrame>,
    i: usize,
    /// Added to every timestamp, in the frame's timebase (ms for FLV).
    offset: i64,
    span: i64,
}

impl FileLoop {
    fn new(frames: Vec<MediaFrame>) -> Self {
        let first = frames.iter().map(|f| f.dts_in(Timebase::MILLIS)).min().unwrap_or(0);
        let last = frames.iter().map(|f| f.dts_in(Timebase::MILLIS)).max().unwrap_or(0);
        // One frame interval (40 ms) between the last frame and the loop.
        Self { frames, i: 0, offset: -first, span: last - first + 40 }
    }
}

impl Iterator for FileLoop {
    type Item = MediaFrame;

    fn next(&mut self) -> Option<MediaFrame> {
        if self.i == self.frames.len() {
            self.i = 0;
            self.offset += self.span;
        }
        let mut f = self.frames[self.i].clone();
        self.i += 1;
        let off = Timebase::MILLIS.rescale(self.offset, f.timebase);
        f.dts += off;
        f.pts += off;
        Some(f)
    }
}

// ---------------------------------------------------------------- publisher

fn rtmp_addr(url: &RtmpUrl) -> String {
    format!("{}:{}", url.host, url.port)
}

async fn write_out(socket: &mut TcpStream, session: &mut ClientSession) -> Result<(), String> {
    while let Some(out) = session.poll_transmit() {
        socket.write_all(&out).await.map_err(|e| format!("write: {e}"))?;
    }
    Ok(())
}

/// Reads what is ready into `buf` and feeds the session; `Ok(false)` at EOF.
fn read_ready(socket: &TcpStream, session: &mut ClientSession, buf: &mut [u8]) -> Result<Option<usize>, String> {
    match socket.try_read(buf) {
        Ok(0) => Ok(None),
        Ok(n) => {
            session.handle_input(&buf[..n]).map_err(|e| e.to_string())?;
            Ok(Some(n))
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(Some(0)),
        Err(e) => Err(format!("read: {e}")),
    }
}

async fn publisher(sh: &Shared, url: RtmpUrl, mut source: Box<dyn Iterator<Item = MediaFrame>>) -> Result<(), String> {
    let mut socket = TcpStream::connect(rtmp_addr(&url)).await.map_err(|e| format!("connect: {e}"))?;
    let _ = socket.set_nodelay(true);
    let mut session = ClientSession::new(url, ClientMode::Publish).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 16 * 1024];
    // Until publishing.
    while !sh.publishing.get() {
        write_out(&mut socket, &mut session).await?;
        socket.readable().await.map_err(|e| e.to_string())?;
        if read_ready(&socket, &mut session, &mut buf)?.is_none() {
            return Err("server closed the connection before publishing".into());
        }
        while let Some(ev) = session.poll_event() {
            if ev == ClientEvent::Publishing {
                sh.publishing.set(true);
            }
        }
    }
    let t0 = TokioInstant::now();
    let mut next = source.next();
    let first_ms = next.as_ref().map_or(0, |f| f.dts_in(Timebase::MILLIS));
    while let Some(frame) = next.take() {
        let ms = frame.dts_in(Timebase::MILLIS);
        let due = t0 + Duration::from_millis((ms - first_ms).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {
                session.send_media(&frame).map_err(|e| e.to_string())?;
                if frame.frame_type() == FrameType::Video && !frame.is_config() {
                    sh.sent.borrow_mut().insert((ms & 0xffff_ffff) as u32, Instant::now());
                    sh.stats.borrow_mut().published_video += 1;
                }
                next = source.next();
            }
            r = socket.readable() => {
                r.map_err(|e| e.to_string())?;
                if read_ready(&socket, &mut session, &mut buf)?.is_none() {
                    return Err("server closed the publishing connection".into());
                }
                while session.poll_event().is_some() {}
                next = Some(frame);
            }
        }
        write_out(&mut socket, &mut session).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------- players

enum PlayTarget {
    Rtmp(RtmpUrl),
    Http { addr: String, host: String, path: String },
}

impl PlayTarget {
    fn parse(url: &str) -> Option<Self> {
        if url.starts_with("rtmp://") {
            return RtmpUrl::parse(url).map(Self::Rtmp);
        }
        let rest = url.strip_prefix("http://")?;
        let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
        if host.is_empty() {
            return None;
        }
        let addr = if host.contains(':') { host.to_string() } else { format!("{host}:80") };
        Some(Self::Http { addr, host: host.to_string(), path })
    }
}

/// One player's state; counts itself alive from play until it is dropped.
struct Player<'a> {
    sh: &'a Shared,
    start: Instant,
    playing_since: Option<Instant>,
    first_video: bool,
    last_video_ms: Option<u32>,
}

impl<'a> Player<'a> {
    fn new(sh: &'a Shared) -> Self {
        Self { sh, start: Instant::now(), playing_since: None, first_video: false, last_video_ms: None }
    }

    fn playing(&mut self) {
        if self.playing_since.is_none() {
            self.playing_since = Some(Instant::now());
            let mut st = self.sh.stats.borrow_mut();
            st.alive += 1;
            st.connected += 1;
        }
    }

    fn bytes(&self, n: usize) {
        let mut st = self.sh.stats.borrow_mut();
        st.bytes += n as u64;
        st.sec_bytes += n as u64;
    }

    fn frame(&mut self, frame: &MediaFrame) {
        let now = Instant::now();
        let mut st = self.sh.stats.borrow_mut();
        st.frames += 1;
        st.sec_frames += 1;
        if frame.frame_type() != FrameType::Video || frame.is_config() {
            return;
        }
        st.video_frames += 1;
        if !self.first_video {
            self.first_video = true;
            st.ttff_us.push(micros(now - self.start));
        }
        let ms = (frame.dts_in(Timebase::MILLIS) & 0xffff_ffff) as u32;
        let sent = self.sh.sent.borrow();
        if let (Some(&at), Some(since)) = (sent.get(&ms), self.playing_since)
            && at >= since
            && st.delay_us.len() < MAX_DELAY_SAMPLES
        {
            st.delay_us.push(micros(now.saturating_duration_since(at)));
        }
        if let Some(last) = self.last_video_ms
            && ms > last.saturating_add(1)
        {
            st.missing += sent.range(last + 1..ms).count() as u64;
        }
        self.last_video_ms = Some(ms);
    }
}

impl Drop for Player<'_> {
    fn drop(&mut self) {
        if self.playing_since.is_some() {
            self.sh.stats.borrow_mut().alive -= 1;
        }
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

async fn rtmp_player(sh: &Shared, url: RtmpUrl) -> Result<(), String> {
    let mut player = Player::new(sh);
    let mut socket = TcpStream::connect(rtmp_addr(&url)).await.map_err(|e| format!("connect: {e}"))?;
    let mut session = ClientSession::new(url, ClientMode::Play).map_err(|e| e.to_string())?;
    loop {
        write_out(&mut socket, &mut session).await?;
        socket.readable().await.map_err(|e| e.to_string())?;
        let n = {
            let mut buf = sh.buf.borrow_mut();
            read_ready(&socket, &mut session, &mut buf)?
        };
        let Some(n) = n else {
            return if player.playing_since.is_some() { Ok(()) } else { Err("closed before play".into()) };
        };
        if player.playing_since.is_some() {
            player.bytes(n);
        }
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::Playing => player.playing(),
                ClientEvent::Media(frame) => player.frame(&frame),
                ClientEvent::StreamEnded => return Ok(()),
                _ => {}
            }
        }
    }
}

/// HTTP/1.1 chunked transfer decoding, feeding an FLV reader.
#[derive(Default)]
struct Dechunk {
    line: Vec<u8>,
    /// Data bytes left in the current chunk; `None` while reading a size line.
    data: Option<usize>,
    /// CRLF bytes left after a chunk's data.
    crlf: usize,
}

impl Dechunk {
    /// `Ok(false)` at the last chunk.
    fn feed(&mut self, mut data: &[u8], out: &mut FlvReader) -> Result<bool, String> {
        while !data.is_empty() {
            if self.crlf > 0 {
                let k = self.crlf.min(data.len());
                self.crlf -= k;
                data = &data[k..];
            } else if let Some(left) = self.data {
                let k = left.min(data.len());
                out.push(&data[..k]);
                data = &data[k..];
                self.data = if left == k {
                    self.crlf = 2;
                    None
                } else {
                    Some(left - k)
                };
            } else if let Some(i) = data.iter().position(|&b| b == b'\n') {
                self.line.extend_from_slice(&data[..i]);
                data = &data[i + 1..];
                let line = String::from_utf8_lossy(&self.line).into_owned();
                self.line.clear();
                let hex = line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size line {line:?}"))?;
                if size == 0 {
                    return Ok(false);
                }
                self.data = Some(size);
            } else {
                self.line.extend_from_slice(data);
                if self.line.len() > 1024 {
                    return Err("chunk size line too long".into());
                }
                break;
            }
        }
        Ok(true)
    }
}

async fn flv_player(sh: &Shared, addr: &str, host: &str, path: &str) -> Result<(), String> {
    let mut player = Player::new(sh);
    let mut socket = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: arcly-loadgen\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut head: Vec<u8> = Vec::new();
    let mut chunked: Option<Dechunk> = None;
    let mut reader = FlvReader::new();
    loop {
        socket.readable().await.map_err(|e| e.to_string())?;
        let mut buf = sh.buf.borrow_mut();
        let n = match socket.try_read(&mut buf) {
            Ok(0) => return if player.playing_since.is_some() { Ok(()) } else { Err("closed before body".into()) },
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(format!("read: {e}")),
        };
        let mut body = &buf[..n];
        if player.playing_since.is_none() {
            head.extend_from_slice(body);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                if head.len() > 16 * 1024 {
                    return Err("response head too long".into());
                }
                continue;
            };
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            let status = text.lines().next().unwrap_or("").to_string();
            if status.split_whitespace().nth(1) != Some("200") {
                return Err(format!("HTTP status: {status}"));
            }
            if text.lines().any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked")) {
                chunked = Some(Dechunk::default());
            }
            player.playing();
            let rest = head.split_off(end + 4);
            head = rest;
            body = &head;
        } else {
            player.bytes(n);
        }
        let more = match &mut chunked {
            Some(d) => d.feed(body, &mut reader)?,
            None => {
                reader.push(body);
                true
            }
        };
        head.clear();
        drop(buf);
        while let Some(tag) = reader.next_tag() {
            let tag = tag.map_err(|e| e.to_string())?;
            if let Some(frame) = tag.to_frame().map_err(|e| e.to_string())? {
                player.frame(&frame);
            }
        }
        if !more {
            return Ok(());
        }
    }
}
