//! `arcly-loadgen`: a load generator for live-media servers.
//!
//! One process publishes a stream over RTMP (a looped FLV file or a synthetic
//! stream, in real time) and opens many RTMP, HTTP-FLV or LL-HLS players.
//! Because the publisher and the players share the process, the publisher
//! records the wall-clock instant each video frame was sent (keyed by its
//! timestamp in milliseconds) and the players compute the publish-to-receive
//! delay of every video frame they receive.
//!
//! Everything runs on one `current_thread` runtime: per-connection state is a
//! socket, a protocol session and a few counters; all players share one read
//! buffer. It prints one line per second and a summary at the end; the last
//! line (`summary key=value ...`) is meant for scripts.
//!
//! LL-HLS (`--play http://.../index.m3u8`, see [`hls`]): each player is a
//! low-latency HLS client on one keep-alive HTTP/1.1 connection (blocking
//! playlist reloads, then parts), which parses every part's `moof` into
//! frames ([`fmp4`]). A frame counts as received when the response of the
//! part holding it is complete.
//!
//! Churn (`--churn-per-sec R`): besides the `--players` steady players, R new
//! players connect per second; each leaves 1 s after its first video frame
//! (or gives up 5 s after connecting without one), so about R connects and R
//! disconnects happen per second. They are counted apart (`churn_*` keys).
//!
//! Slow consumers (`--slow-fraction F`): that fraction of the steady players
//! (spread evenly) reads at half the stream's bit rate (a small receive
//! buffer, and a pause after each read so the bytes read never run ahead of
//! the cap), so the server sees the backpressure within seconds. Their delay
//! is reported apart from the normal ("fast") players' (`delay_slow_*`,
//! `delay_fast_*`), with how many were disconnected by the server.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod fmp4;
mod hls;
mod http;

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
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::LocalSet;
use tokio::time::Instant as TokioInstant;

use crate::hls::HlsTarget;
use crate::http::{Body, ChunkDecoder};

/// Load generator: an RTMP publisher and many RTMP, HTTP-FLV or LL-HLS
/// players.
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
    /// Synthetic frames per GOP (keyframes are ten times a delta frame). HLS
    /// segments close at keyframes: keep a GOP within the server's segment
    /// target (2 s on arcly) for LL-HLS players.
    #[arg(long, default_value_t = 60)]
    gop_frames: u32,
    /// Play this URL: `rtmp://host:port/app/key` (RTMP),
    /// `http://host:port/path.flv` (HTTP-FLV) or `http://host:port/path.m3u8`
    /// (LL-HLS: blocking playlist reloads, parts parsed to frames; on arcly,
    /// `/live/{app}/{key}/index.m3u8`).
    #[arg(long, value_name = "URL")]
    play: Option<String>,
    /// Number of players.
    #[arg(long, default_value_t = 1)]
    players: usize,
    /// Pause between two player connections, in milliseconds.
    #[arg(long, default_value_t = 1)]
    connect_spacing_ms: u64,
    /// Besides the steady players, open this many short-lived players per
    /// second (each leaves 1 s after its first video frame).
    #[arg(long, default_value_t = 0.0, value_name = "R")]
    churn_per_sec: f64,
    /// This fraction of the steady players reads at half the stream's bit
    /// rate (`--bitrate-kbps`, or the file's average rate).
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    slow_fraction: f64,
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
    missing_fast: u64,
    missing_slow: u64,
    ttff_us: Vec<u32>,
    delay_fast_us: Vec<u32>,
    delay_slow_us: Vec<u32>,
    published_video: u64,
    slow_players: usize,
    /// Steady players whose connection ended (closed or reset by the server)
    /// after they started playing.
    fast_disconnected: usize,
    slow_disconnected: usize,
    /// Of those, the ones that ended with an error (a reset, a malformed or
    /// refused response).
    errors: usize,
    churn_started: usize,
    churn_ok: usize,
    churn_failed: usize,
    churn_first_error: Option<String>,
    churn_ttff_us: Vec<u32>,
}

/// Delay samples kept at most (memory bound).
const MAX_DELAY_SAMPLES: usize = 20_000_000;
/// A churn player leaves this long after its first video frame ...
const CHURN_PLAY: Duration = Duration::from_secs(1);
/// ... and gives up this long after connecting without one.
const CHURN_GIVE_UP: Duration = Duration::from_secs(5);
/// Receive buffer of a slow player's socket (the kernel doubles it), so the
/// server feels the backpressure instead of the loopback's autotuned buffer.
const SLOW_RCVBUF: u32 = 64 * 1024;
/// Bytes a slow player reads at most at once.
const SLOW_READ: usize = 16 * 1024;

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
    if !(0.0..=1.0).contains(&args.slow_fraction) {
        eprintln!("error: --slow-fraction must be between 0 and 1");
        std::process::exit(2);
    }
    if !(args.churn_per_sec >= 0.0 && args.churn_per_sec <= 100_000.0) {
        eprintln!("error: --churn-per-sec must be between 0 and 100000");
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
    // The stream's bit rate, for the slow players' cap.
    let mut stream_kbps = f64::from(args.bitrate_kbps);

    if let Some(url) = &args.publish {
        let Some(url) = RtmpUrl::parse(url) else {
            eprintln!("error: --publish: not an rtmp://host[:port]/app/key URL");
            return 2;
        };
        let source: Box<dyn Iterator<Item = MediaFrame>> = match &args.file {
            Some(path) => match load_flv(path) {
                Ok(frames) => {
                    let fl = FileLoop::new(frames);
                    stream_kbps = fl.kbps();
                    Box::new(fl)
                }
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
                eprintln!(
                    "error: --play: expected rtmp://host[:port]/app/key, http://host[:port]/path.flv or \
                     http://host[:port]/path.m3u8"
                );
                return 2;
            }
        };
        let (sh, n, spacing) = (shared.clone(), args.players, Duration::from_millis(args.connect_spacing_ms));
        let (fraction, churn) = (args.slow_fraction, args.churn_per_sec);
        // Bytes per second a slow player reads at most.
        let slow_rate = stream_kbps * 1000.0 / 8.0 / 2.0;
        tokio::task::spawn_local(async move {
            for i in 0..n {
                // Evenly spread: player i is slow when floor((i+1)F) steps up.
                let slow = ((i + 1) as f64 * fraction).floor() > (i as f64 * fraction).floor();
                let kind = if slow { Kind::Slow(slow_rate) } else { Kind::Fast };
                if slow {
                    sh.stats.borrow_mut().slow_players += 1;
                }
                tokio::task::spawn_local(play_one(sh.clone(), target.clone(), kind));
                if !spacing.is_zero() {
                    tokio::time::sleep(spacing).await;
                }
            }
            if churn > 0.0 {
                let period = Duration::from_secs_f64(1.0 / churn);
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    sh.stats.borrow_mut().churn_started += 1;
                    tokio::task::spawn_local(play_one(sh.clone(), target.clone(), Kind::Churn));
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
                        "t={second:>3}s players alive {:>6}  frames/s {:>8}  MB/s {:>8.2}  churn ok {:>6} failed {:>4}",
                        st.alive,
                        st.sec_frames,
                        st.sec_bytes as f64 / 1e6,
                        st.churn_ok,
                        st.churn_failed
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

fn sorted(v: &[u32]) -> Vec<u32> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

fn summary(args: &Args, st: &Stats, cpu_pct: f64) {
    let ttff = sorted(&st.ttff_us);
    let delay = sorted(&[st.delay_fast_us.as_slice(), st.delay_slow_us.as_slice()].concat());
    let fast = sorted(&st.delay_fast_us);
    let slow = sorted(&st.delay_slow_us);
    let churn_ttff = sorted(&st.churn_ttff_us);
    let missing = st.missing_fast + st.missing_slow;
    let max = delay.last().map_or(f64::NAN, |&d| f64::from(d) / 1000.0);
    let players = if args.play.is_some() { args.players } else { 0 };
    println!("--- summary ---");
    println!(
        "players: {} alive at the end, {} connected (reached play), {} failed, {} disconnected by the server \
         after playing ({} with an error){}",
        st.alive,
        st.connected,
        st.failed,
        st.fast_disconnected + st.slow_disconnected,
        st.errors,
        st.first_error.as_deref().map(|e| format!(" (first error: {e})")).unwrap_or_default()
    );
    println!(
        "received: {} frames ({} video), {:.1} MB; video frames missing (approx.): {missing}",
        st.frames,
        st.video_frames,
        st.bytes as f64 / 1e6,
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
    if st.slow_players > 0 {
        println!(
            "fast players ({}): delay p50 {:.1} ms, p99 {:.1} ms ({} samples), {} disconnected, {} frames missing",
            players.saturating_sub(st.slow_players),
            percentile_ms(&fast, 0.5),
            percentile_ms(&fast, 0.99),
            fast.len(),
            st.fast_disconnected,
            st.missing_fast
        );
        println!(
            "slow players ({}, reading at half rate): delay p50 {:.1} ms, p99 {:.1} ms ({} samples), \
             {} disconnected by the server, {} frames missing",
            st.slow_players,
            percentile_ms(&slow, 0.5),
            percentile_ms(&slow, 0.99),
            slow.len(),
            st.slow_disconnected,
            st.missing_slow
        );
    }
    if args.churn_per_sec > 0.0 {
        println!(
            "churn ({}/s): {} started, {} ok (got a video frame), {} failed, {} still in flight; \
             time to first video frame p50 {:.1} ms, p99 {:.1} ms{}",
            args.churn_per_sec,
            st.churn_started,
            st.churn_ok,
            st.churn_failed,
            st.churn_started.saturating_sub(st.churn_ok + st.churn_failed),
            percentile_ms(&churn_ttff, 0.5),
            percentile_ms(&churn_ttff, 0.99),
            st.churn_first_error.as_deref().map(|e| format!(" (first error: {e})")).unwrap_or_default()
        );
    }
    println!("loadgen CPU: {cpu_pct:.1}% of one core");
    println!(
        "summary players={players} alive={} connected={} failed={} errors={} frames={} video_frames={} bytes={} \
         missing={missing} published_video={} ttff_p50_ms={:.1} ttff_p99_ms={:.1} delay_samples={} \
         delay_p50_ms={:.1} delay_p99_ms={:.1} delay_max_ms={max:.1} slow_players={} delay_fast_samples={} \
         delay_fast_p50_ms={:.1} delay_fast_p99_ms={:.1} delay_slow_samples={} delay_slow_p50_ms={:.1} delay_slow_p99_ms={:.1} \
         missing_fast={} missing_slow={} fast_disconnected={} slow_disconnected={} churn_per_sec={} \
         churn_started={} churn_ok={} churn_failed={} churn_ttff_p50_ms={:.1} churn_ttff_p99_ms={:.1} \
         cpu_pct={cpu_pct:.1}",
        st.alive,
        st.connected,
        st.failed,
        st.errors,
        st.frames,
        st.video_frames,
        st.bytes,
        st.published_video,
        percentile_ms(&ttff, 0.5),
        percentile_ms(&ttff, 0.99),
        delay.len(),
        percentile_ms(&delay, 0.5),
        percentile_ms(&delay, 0.99),
        st.slow_players,
        fast.len(),
        percentile_ms(&fast, 0.5),
        percentile_ms(&fast, 0.99),
        slow.len(),
        percentile_ms(&slow, 0.5),
        percentile_ms(&slow, 0.99),
        st.missing_fast,
        st.missing_slow,
        st.fast_disconnected,
        st.slow_disconnected,
        args.churn_per_sec,
        st.churn_started,
        st.churn_ok,
        st.churn_failed,
        percentile_ms(&churn_ttff, 0.5),
        percentile_ms(&churn_ttff, 0.99),
    );
}

// ---------------------------------------------------------------- sources

/// An AVCDecoderConfigurationRecord with x264's parameter sets for 640x360
/// Constrained Baseline: packagers (HLS, fMP4) read the picture size from
/// the SPS and refuse a video track without a valid one.
const SYNTHETIC_AVCC: &[u8] = &[
    0x01, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0x00, 0x19, // version, profile, level, 4-byte lengths, 1 SPS of 25
    0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03,
    0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48, // SPS
    0x01, 0x00, 0x05, 0x68, 0xcb, 0x83, 0xcb, 0x20, // 1 PPS of 5
];

/// The synthetic stream at `kbps` on average, its H.264 payloads made
/// length-prefixed NAL units (the bus format) so servers can walk them, and
/// its H.264 configuration a real one.
fn synthetic(kbps: u32, fps: u32, gop: u32) -> impl Iterator<Item = MediaFrame> {
    let (fps, gop) = (fps.max(1), gop.max(1));
    // Average frame = kbps*1000/8/fps; keyframes are ten deltas.
    let avg = u64::from(kbps) * 1000 / 8 / u64::from(fps);
    let delta = (avg * u64::from(gop) / (u64::from(gop) + 9)).max(16) as usize;
    SyntheticStream::new(fps, gop).with_audio(48_000).with_video_bytes(delta).map(|mut f| {
        if f.codec == CodecId::H264 && f.is_config() {
            f.payload = Bytes::from_static(SYNTHETIC_AVCC);
        } else if f.codec == CodecId::H264 {
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

    /// Average bit rate of one loop, in kbit/s.
    fn kbps(&self) -> f64 {
        let bytes: usize = self.frames.iter().map(|f| f.payload.len()).sum();
        bytes as f64 * 8.0 / self.span.max(1) as f64
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
    /// HTTP-FLV: one endless response.
    Http {
        addr: String,
        host: String,
        path: String,
    },
    /// LL-HLS: a path ending in `.m3u8`.
    Hls(HlsTarget),
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
        if let Some(hls) = HlsTarget::new(&addr, host, &path) {
            return Some(Self::Hls(hls));
        }
        Some(Self::Http { addr, host: host.to_string(), path })
    }
}

/// What a player is for.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// A steady player reading as fast as it can.
    Fast,
    /// A steady player reading at most this many bytes per second.
    Slow(f64),
    /// A short-lived player (`--churn-per-sec`).
    Churn,
}

/// Runs one player to its end and counts how it ended.
async fn play_one(sh: Rc<Shared>, target: Rc<PlayTarget>, kind: Kind) {
    let mut player = Player::new(&sh, kind);
    let result = match &*target {
        PlayTarget::Rtmp(url) => rtmp_player(&mut player, url.clone()).await,
        PlayTarget::Http { addr, host, path } => flv_player(&mut player, addr, host, path).await,
        PlayTarget::Hls(target) => hls::hls_player(&mut player, target).await,
    };
    let mut st = sh.stats.borrow_mut();
    match kind {
        Kind::Churn => {
            let result = match result {
                Ok(()) if !player.first_video => Err(format!("no video frame within {CHURN_GIVE_UP:?}")),
                r => r,
            };
            match result {
                _ if player.first_video => st.churn_ok += 1,
                Err(e) => {
                    st.churn_failed += 1;
                    st.churn_first_error.get_or_insert(e);
                }
                Ok(()) => st.churn_failed += 1,
            }
        }
        Kind::Fast | Kind::Slow(_) if player.playing_since.is_some() => {
            // A steady player only ends when the server ends it.
            if matches!(kind, Kind::Slow(_)) {
                st.slow_disconnected += 1;
            } else {
                st.fast_disconnected += 1;
            }
            if let Err(e) = result {
                st.errors += 1;
                st.first_error.get_or_insert(e);
            }
        }
        Kind::Fast | Kind::Slow(_) => {
            st.failed += 1;
            st.first_error.get_or_insert(result.err().unwrap_or_else(|| "ended before play".into()));
        }
    }
}

/// One player's state; a steady one counts itself alive from play until it
/// is dropped.
struct Player<'a> {
    sh: &'a Shared,
    kind: Kind,
    start: Instant,
    playing_since: Option<Instant>,
    first_video: bool,
    last_video_ms: Option<u32>,
    /// A churn player leaves at this instant.
    stop_at: Option<TokioInstant>,
    /// Bytes read since `start` (for the slow players' cap).
    read: u64,
}

impl<'a> Player<'a> {
    fn new(sh: &'a Shared, kind: Kind) -> Self {
        let stop_at = (kind == Kind::Churn).then(|| TokioInstant::now() + CHURN_GIVE_UP);
        Self {
            sh,
            kind,
            start: Instant::now(),
            playing_since: None,
            first_video: false,
            last_video_ms: None,
            stop_at,
            read: 0,
        }
    }

    fn steady(&self) -> bool {
        self.kind != Kind::Churn
    }

    fn playing(&mut self) {
        if self.playing_since.is_none() {
            self.playing_since = Some(Instant::now());
            if self.steady() {
                let mut st = self.sh.stats.borrow_mut();
                st.alive += 1;
                st.connected += 1;
            }
        }
    }

    /// Connects to `addr`, with a small receive buffer for a slow player.
    async fn connect(&self, addr: &str) -> Result<TcpStream, String> {
        if !matches!(self.kind, Kind::Slow(_)) {
            let socket = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
            // Nagle would hold the handshake's second write for the peer's
            // delayed ACK (40 ms on Linux) and make the start look slow.
            let _ = socket.set_nodelay(true);
            return Ok(socket);
        }
        let sa = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?
            .next()
            .ok_or("connect: no address")?;
        let socket = if sa.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
            .map_err(|e| format!("connect: {e}"))?;
        socket.set_recv_buffer_size(SLOW_RCVBUF).map_err(|e| format!("connect: {e}"))?;
        let socket = socket.connect(sa).await.map_err(|e| format!("connect: {e}"))?;
        let _ = socket.set_nodelay(true);
        Ok(socket)
    }

    /// Waits until `socket` is readable; `Ok(false)` when a churn player's
    /// time is up.
    async fn readable(&self, socket: &TcpStream) -> Result<bool, String> {
        let ready = async { socket.readable().await.map(|()| true).map_err(|e| e.to_string()) };
        match self.stop_at {
            None => ready.await,
            Some(at) => tokio::select! {
                r = ready => r,
                () = tokio::time::sleep_until(at) => Ok(false),
            },
        }
    }

    /// How much of the shared buffer this player may read into.
    fn read_len(&self, buf_len: usize) -> usize {
        if matches!(self.kind, Kind::Slow(_)) { buf_len.min(SLOW_READ) } else { buf_len }
    }

    /// Counts `n` bytes read; a slow player then sleeps until its cap allows
    /// them.
    async fn throttle(&mut self, n: usize) {
        self.read += n as u64;
        if let Kind::Slow(rate) = self.kind {
            let due = self.start + Duration::from_secs_f64(self.read as f64 / rate);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
    }

    fn bytes(&self, n: usize) {
        let mut st = self.sh.stats.borrow_mut();
        st.bytes += n as u64;
        st.sec_bytes += n as u64;
    }

    fn frame(&mut self, frame: &MediaFrame) {
        let video = frame.frame_type() == FrameType::Video && !frame.is_config();
        let ms = (frame.dts_in(Timebase::MILLIS) & 0xffff_ffff) as u32;
        self.received(video, ms, Instant::now());
    }

    /// Counts a frame received at `now`; `ms` is a video frame's decode
    /// time in milliseconds (the key of the publisher's `sent` map).
    fn received(&mut self, video: bool, ms: u32, now: Instant) {
        let mut st = self.sh.stats.borrow_mut();
        st.frames += 1;
        st.sec_frames += 1;
        if !video {
            return;
        }
        st.video_frames += 1;
        if !self.first_video {
            self.first_video = true;
            if self.kind == Kind::Churn {
                st.churn_ttff_us.push(micros(now - self.start));
                self.stop_at = Some(TokioInstant::now() + CHURN_PLAY);
            } else {
                st.ttff_us.push(micros(now - self.start));
            }
        }
        if self.kind == Kind::Churn {
            return;
        }
        let slow = matches!(self.kind, Kind::Slow(_));
        let sent = self.sh.sent.borrow();
        if let (Some(&at), Some(since)) = (sent.get(&ms), self.playing_since)
            && at >= since
            && st.delay_fast_us.len() + st.delay_slow_us.len() < MAX_DELAY_SAMPLES
        {
            let d = micros(now.saturating_duration_since(at));
            if slow { st.delay_slow_us.push(d) } else { st.delay_fast_us.push(d) }
        }
        if let Some(last) = self.last_video_ms
            && ms > last.saturating_add(1)
        {
            let m = sent.range(last + 1..ms).count() as u64;
            if slow { st.missing_slow += m } else { st.missing_fast += m }
        }
        self.last_video_ms = Some(ms);
    }
}

impl Drop for Player<'_> {
    fn drop(&mut self) {
        if self.playing_since.is_some() && self.steady() {
            self.sh.stats.borrow_mut().alive -= 1;
        }
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

async fn rtmp_player(player: &mut Player<'_>, url: RtmpUrl) -> Result<(), String> {
    let sh = player.sh;
    let mut socket = player.connect(&rtmp_addr(&url)).await?;
    let mut session = ClientSession::new(url, ClientMode::Play).map_err(|e| e.to_string())?;
    loop {
        write_out(&mut socket, &mut session).await?;
        if !player.readable(&socket).await? {
            return Ok(());
        }
        let n = {
            let mut buf = sh.buf.borrow_mut();
            let len = player.read_len(buf.len());
            read_ready(&socket, &mut session, &mut buf[..len])?
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
        player.throttle(n).await;
    }
}

/// An HTTP-FLV body going to the FLV reader.
impl Body for FlvReader {
    fn data(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.push(bytes);
        Ok(())
    }
}

async fn flv_player(player: &mut Player<'_>, addr: &str, host: &str, path: &str) -> Result<(), String> {
    let sh = player.sh;
    let mut socket = player.connect(addr).await?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: arcly-loadgen\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut head: Vec<u8> = Vec::new();
    let mut chunked: Option<ChunkDecoder> = None;
    let mut reader = FlvReader::new();
    loop {
        if !player.readable(&socket).await? {
            return Ok(());
        }
        // The shared buffer is released before any await.
        let (n, more) = {
            let mut buf = sh.buf.borrow_mut();
            let len = player.read_len(buf.len());
            let n = match socket.try_read(&mut buf[..len]) {
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
                    chunked = Some(ChunkDecoder::default());
                }
                player.playing();
                let rest = head.split_off(end + 4);
                head = rest;
                body = &head;
            } else {
                player.bytes(n);
            }
            let more = match &mut chunked {
                Some(d) => {
                    d.feed(body, &mut reader)?;
                    !d.is_done()
                }
                None => {
                    reader.push(body);
                    true
                }
            };
            head.clear();
            (n, more)
        };
        while let Some(tag) = reader.next_tag() {
            let tag = tag.map_err(|e| e.to_string())?;
            if let Some(frame) = tag.to_frame().map_err(|e| e.to_string())? {
                player.frame(&frame);
            }
        }
        if !more {
            return Ok(());
        }
        player.throttle(n).await;
    }
}
