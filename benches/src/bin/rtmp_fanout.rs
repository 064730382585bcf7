//! RTMP fan-out cost: the server's CPU per player.
//!
//! The server (an engine, the RTMP server on 127.0.0.1 and a synthetic
//! publisher at 30 fps) runs in this process; the players run in a child
//! process (this binary with `--players`), so that the CPU measured is the
//! server's alone. Each player completes the RTMP handshake, connect and
//! play with the crate's sans-IO client, then reads and discards.
//!
//! Run: `cargo run --release -p arcly-benches --bin rtmp-fanout -- [N ...]`
//! (default N: 100 1000). Prints one table row per N. `CHUNK=bytes` and
//! `WINDOW_MS=ms` override the server's outbound chunk size and batch
//! window.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arcly_benches::process_cpu_time;
use arcly_core::auth::Credentials;
use arcly_core::engine::{AppSpec, Engine};
use arcly_core::testing::SyntheticStream;
use arcly_rtmp::client::{ClientEvent, ClientMode, ClientSession, RtmpUrl};
use arcly_rtmp::{RtmpServer, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

const FPS: u32 = 30;
/// 3 Mbit/s of video at 30 fps: 12.5 kB per frame (keyframes 10x).
const VIDEO_BYTES: usize = 9_000;
const WARMUP: Duration = Duration::from_secs(3);
const MEASURE: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--players") {
        let n: usize = args.get(i + 1).and_then(|v| v.parse().ok()).expect("--players N ADDR");
        let addr: SocketAddr = args.get(i + 2).and_then(|v| v.parse().ok()).expect("--players N ADDR");
        players(n, addr);
        return;
    }
    let counts: Vec<usize> =
        if args.is_empty() { vec![100, 1000] } else { args.iter().filter_map(|a| a.parse().ok()).collect() };
    println!("| players | server CPU, % of one core | per 1 000 players | server RSS MiB | frames/s published |");
    println!("|---|---|---|---|---|");
    for n in counts {
        server(n);
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn server(n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let config =
            ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), max_connections: n + 16, ..ServerConfig::default() };
        let (server, addr) = RtmpServer::bind(config).await.expect("bind");
        let engine = Engine::builder().application(AppSpec::new("live")).inbound(Arc::new(server)).build();
        let token = CancellationToken::new();
        let run = tokio::spawn({
            let (e, t) = (engine.clone(), token.clone());
            async move { e.run(t).await }
        });
        let session =
            engine.begin_publish("live/bench".parse().unwrap(), "bench", &Credentials::default()).await.unwrap();
        let publisher = tokio::spawn(async move {
            let mut frames = SyntheticStream::new(FPS, 2 * FPS).with_audio(48_000).with_video_bytes(VIDEO_BYTES);
            let mut tick = tokio::time::interval(Duration::from_secs(1) / FPS);
            let mut published = 0u64;
            loop {
                tick.tick().await;
                // One video frame and the audio frames before it.
                loop {
                    let f = frames.next().expect("endless");
                    let video = f.codec == arcly_core::frame::CodecId::H264 && !f.is_config();
                    if session.publish(f).is_err() {
                        return published;
                    }
                    published += 1;
                    if video {
                        break;
                    }
                }
            }
        });
        let exe = std::env::current_exe().expect("own path");
        let mut child = tokio::process::Command::new(exe)
            .args(["--players", &n.to_string(), &addr.to_string()])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn players");
        tokio::time::sleep(WARMUP + Duration::from_millis(n as u64 * 2)).await;
        let playing = engine.lookup(&"live/bench".parse().unwrap()).map_or(0, |h| h.subscriber_count());
        let (cpu0, wall0, frames0) = (process_cpu_time(), Instant::now(), engine.streams()[0].qos.frames_in);
        tokio::time::sleep(MEASURE).await;
        let cpu = process_cpu_time() - cpu0;
        let wall = wall0.elapsed();
        let frames = engine.streams()[0].qos.frames_in - frames0;
        let pct = cpu.as_secs_f64() * 100.0 / wall.as_secs_f64();
        println!(
            "| {n} ({playing} playing) | {pct:.2}% | {:.2}% | {:.0} | {:.0} |",
            pct * 1000.0 / playing.max(1) as f64,
            rss_mib(),
            frames as f64 / wall.as_secs_f64()
        );
        let _ = child.kill().await;
        token.cancel();
        publisher.abort();
        let _ = run.await;
    });
}

/// The child: `n` players that read and discard once playing.
fn players(n: usize, addr: SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            tasks.push(tokio::spawn(player(addr)));
            // Connect gently: the server's accept queue is finite.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for t in tasks {
            if let Ok(Err(e)) = t.await {
                eprintln!("player: {e}");
            }
        }
    });
}

async fn player(addr: SocketAddr) -> Result<(), String> {
    let url = RtmpUrl::parse(&format!("rtmp://{addr}/live/bench")).ok_or("url")?;
    let mut socket = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let mut session = ClientSession::new(url, ClientMode::Play).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut playing = false;
    loop {
        while let Some(out) = session.poll_transmit() {
            socket.write_all(&out).await.map_err(|e| e.to_string())?;
        }
        let n = socket.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        if playing {
            // Read and discard: the client's own parsing is not measured,
            // but it still has to keep up.
            continue;
        }
        session.handle_input(&buf[..n]).map_err(|e| e.to_string())?;
        while let Some(ev) = session.poll_event() {
            if ev == ClientEvent::Playing {
                playing = true;
            }
        }
    }
}
