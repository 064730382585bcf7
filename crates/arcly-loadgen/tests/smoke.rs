//! The loadgen against an in-process server: a synthetic publisher and five
//! RTMP players for three seconds, then the same with churn and slow players;
//! then against the whole arcly server (RTMP in, LL-HLS out) with five LL-HLS
//! players, and with churn and slow LL-HLS players.

use std::sync::Arc;

use arcly_core::engine::{AppSpec, Engine};
use arcly_rtmp::{RtmpServer, ServerConfig};
use tokio_util::sync::CancellationToken;

/// Runs the loadgen with `extra` arguments against an in-process server and
/// returns its summary line.
async fn run_loadgen(extra: &[&str], seconds: u64) -> String {
    let config = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..ServerConfig::default() };
    let (server, addr) = RtmpServer::bind(config).await.expect("bind");
    let engine = Engine::builder().application(AppSpec::new("live")).inbound(Arc::new(server)).build();
    let token = CancellationToken::new();
    let run = tokio::spawn({
        let (e, t) = (engine.clone(), token.clone());
        async move { e.run(t).await }
    });
    let url = format!("rtmp://{addr}/live/smoke");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_arcly-loadgen"))
        .args(["--publish", &url, "--synthetic", "--bitrate-kbps", "500", "--play", &url])
        .args(["--duration", &seconds.to_string()])
        .args(extra)
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(seconds + 6), out).await.expect("loadgen stops").unwrap();
    token.cancel();
    let _ = run.await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().find_map(|l| l.strip_prefix("summary ")).expect("summary line").to_string()
}

/// Runs the loadgen against the arcly server in-process: it publishes over
/// RTMP and plays LL-HLS with `extra` arguments; returns its summary line.
async fn run_loadgen_hls(extra: &[&str], seconds: u64) -> String {
    let mut config = arcly_server::Config::default();
    config.rtmp.listen = "127.0.0.1:0".parse().unwrap();
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    let server = arcly_server::Server::start(config).await.expect("server starts");
    let publish = format!("rtmp://{}/live/hls", server.rtmp_addr());
    let play = format!("http://{}/live/live/hls/index.m3u8", server.http_addr());
    // The server's defaults: 2 s segments of 200 ms parts, cut at the first
    // keyframe after 2 s. A keyframe every second (30 frames at 30 fps)
    // closes a segment every 2 s and starts an independent part every 1 s.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_arcly-loadgen"))
        .args(["--publish", &publish, "--synthetic", "--bitrate-kbps", "500", "--fps", "30", "--gop-frames", "30"])
        .args(["--play", &play, "--duration", &seconds.to_string()])
        .args(extra)
        .kill_on_drop(true)
        .output();
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(seconds + 6), out).await.expect("loadgen stops").unwrap();
    server.shutdown();
    server.wait().await.expect("clean shutdown");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout.lines().find_map(|l| l.strip_prefix("summary ")).expect("summary line").to_string()
}

fn get(summary: &str, k: &str) -> u64 {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{k} in {summary}"))
}

fn get_f64(summary: &str, k: &str) -> f64 {
    summary
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{k} in {summary}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_players_receive_frames() {
    let summary = run_loadgen(&["--players", "5"], 3).await;
    assert_eq!(get(&summary, "alive"), 5, "{summary}");
    assert!(get(&summary, "video_frames") > 0, "{summary}");
    assert!(get(&summary, "delay_samples") > 0, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_and_slow_players() {
    let summary = run_loadgen(&["--players", "5", "--churn-per-sec", "10", "--slow-fraction", "0.4"], 4).await;
    assert_eq!(get(&summary, "alive"), 5, "{summary}");
    assert_eq!(get(&summary, "slow_players"), 2, "{summary}");
    assert!(get(&summary, "delay_fast_samples") > 0, "{summary}");
    assert!(get(&summary, "delay_slow_samples") > 0, "{summary}");
    // Churn players leave 1 s after their first frame: by the end, many
    // have come and gone, none failed.
    assert!(get(&summary, "churn_ok") >= 10, "{summary}");
    assert_eq!(get(&summary, "churn_failed"), 0, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_ll_hls_players_receive_every_frame() {
    let players = 5;
    let summary = run_loadgen_hls(&["--players", &players.to_string()], 5).await;
    assert_eq!(get(&summary, "connected"), players, "{summary}");
    assert_eq!(get(&summary, "alive"), players, "{summary}");
    assert_eq!(get(&summary, "failed"), 0, "{summary}");
    assert_eq!(get(&summary, "errors"), 0, "{summary}");
    let ttff = get_f64(&summary, "ttff_p99_ms");
    assert!(ttff.is_finite() && ttff > 0.0, "{summary}");
    // Matched by millisecond timestamp against what the publisher sent: the
    // packager keeps the publisher's timestamps.
    assert!(get(&summary, "delay_samples") > 0, "{summary}");
    // Players start at the live edge once the stream is live: each gets at
    // least half of what was published after the first part (200 ms, 6
    // frames).
    let published = get(&summary, "published_video");
    assert!(published > 100, "{summary}");
    assert!(get(&summary, "video_frames") >= players * (published - 6) / 2, "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_hls_churn_and_slow_players() {
    let summary = run_loadgen_hls(&["--players", "5", "--churn-per-sec", "5", "--slow-fraction", "0.4"], 5).await;
    assert_eq!(get(&summary, "alive"), 5, "{summary}");
    assert_eq!(get(&summary, "errors"), 0, "{summary}");
    assert_eq!(get(&summary, "slow_players"), 2, "{summary}");
    assert!(get(&summary, "delay_fast_samples") > 0, "{summary}");
    assert!(get(&summary, "delay_slow_samples") > 0, "{summary}");
    assert!(get(&summary, "churn_ok") >= 5, "{summary}");
    assert_eq!(get(&summary, "churn_failed"), 0, "{summary}");
}
