//! The web player in headless Chromium (Debian `chromium`, driven by
//! playwright-core from `web/node_modules`): the page lists the stream and
//! plays it with hls.js, LL-HLS and classic HLS; the video advances and
//! decodes frames; the latency is printed.

#![allow(clippy::print_stderr)] // Measured figures are printed.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_lists_streams_and_serves_hls_js() {
    let server = start().await;
    let page = get(&server, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.text().contains("/api/v1/streams") && page.text().contains("/assets/hls.min.js"));
    let js = get(&server, "/assets/hls.min.js").await;
    assert_eq!(js.status, 200);
    assert!(js.header("content-type").unwrap().starts_with("text/javascript"));
    assert!(js.body.len() > 100_000, "hls.js is embedded");
    server.shutdown();
    server.wait().await.unwrap();
}

/// Plays `/?stream=live/{key}&ll={ll}` in Chromium; returns the samples.
async fn play_in_chromium(server: &arcly_server::Server, key: &str, ll: bool) -> serde_json::Value {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    assert!(
        web.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run `npm ci` in {} (the build does this when node_modules is missing)",
        web.display()
    );
    assert!(Path::new("/usr/bin/chromium").exists(), "install the Debian package `chromium`");
    let url = http_url(server, &format!("/?stream=live/{key}&ll={}", u8::from(ll)));
    let child = tokio::process::Command::new("node")
        .arg(web.join("tests/player.mjs"))
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}): install the Debian package `nodejs`"));
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("the browser test finishes within 90 s")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "player test failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("bad output ({e}): {stdout}\n{stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_ll_hls_and_hls_with_hls_js() {
    let server = start().await;
    // 10 × 3 s = 30 s of video.
    let publisher = ffmpeg_publish_looped(&rtmp_url(&server, "web"), 9);
    wait_live(&server, "web", 10).await;
    let first = get(&server, "/live/live/web/index.m3u8?_HLS_msn=0").await;
    assert_eq!(first.status, 200, "{}", first.text());

    for ll in [true, false] {
        let s = play_in_chromium(&server, "web", ll).await;
        let (before, after) = (&s["before"], &s["after"]);
        let name = if ll { "LL-HLS" } else { "HLS" };
        eprintln!(
            "{name} in Chromium: currentTime {:.2} -> {:.2} s, frames {} -> {} (dropped {}), \
             latency (now - playingDate) {} s, hls.js latency {} s",
            before["t"].as_f64().unwrap(),
            after["t"].as_f64().unwrap(),
            before["frames"],
            after["frames"],
            after["dropped"],
            after["latency"],
            after["hlsLatency"],
        );
        assert_eq!(after["ll"], ll);
        assert_eq!(s["listed"], 1, "the page lists the live stream");
        assert!(after["t"].as_f64().unwrap() > before["t"].as_f64().unwrap() + 1.5, "{name}: video advances: {s}");
        assert!(after["frames"].as_u64().unwrap() > before["frames"].as_u64().unwrap() + 25, "{name}: frames: {s}");
        let latency = after["latency"].as_f64().expect("hls.playingDate is known (EXT-X-PROGRAM-DATE-TIME)");
        assert!(latency > 0.0 && latency < 15.0, "{name}: latency {latency} s");
    }
    drop(publisher);
    server.shutdown();
    server.wait().await.unwrap();
}
