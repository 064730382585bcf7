//! The loadgen against an in-process server: a synthetic publisher and five
//! RTMP players for three seconds.

use std::sync::Arc;

use arcly_core::engine::{AppSpec, Engine};
use arcly_rtmp::{RtmpServer, ServerConfig};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_players_receive_frames() {
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
        .args(["--players", "5", "--duration", "3"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(9), out).await.expect("loadgen stops").unwrap();
    token.cancel();
    let _ = run.await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let summary = stdout.lines().find_map(|l| l.strip_prefix("summary ")).expect("summary line");
    let get = |k: &str| -> u64 {
        summary
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {summary}"))
    };
    assert_eq!(get("alive"), 5, "{summary}");
    assert!(get("video_frames") > 0, "{summary}");
    assert!(get("delay_samples") > 0, "{summary}");
}
