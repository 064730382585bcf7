//! `GET /metrics` against real peers: ffmpeg publishes over RTMP, ffmpeg
//! plays over RTMP and a client over HTTP-FLV; the exposition passes
//! Prometheus's own `promtool check metrics` and its numbers follow what
//! happened.

#![allow(clippy::print_stderr)] // Measured figures are printed.

mod common;

use std::time::{Duration, Instant};

use arcly_metrics::sample;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The stream's label set.
const STREAM: &str = r#"app="live",stream="metrics""#;

/// Scrapes `/metrics`, checks the response and returns the text.
async fn scrape(server: &arcly_server::Server) -> String {
    let r = get(server, "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    r.text()
}

/// Scrapes until `done` holds for the text (at most 10 s).
async fn scrape_until(server: &arcly_server::Server, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(server).await;
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "not within 10 s: {what}\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn stream_value(text: &str, name: &str) -> f64 {
    sample(text, name, STREAM).unwrap_or_else(|| panic!("no {name}{{{STREAM}}} in\n{text}"))
}

fn promtool_clean(text: &str) {
    if let Err(e) = arcly_testkit::promtool_check_metrics(text) {
        panic!("promtool check metrics: {e}\n--- exposition ---\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_real_publish_and_play() {
    let server = start().await;
    promtool_clean(&scrape(&server).await);

    // 9 s of stream: the file (3.08 s, 75 video and 142 audio frames,
    // about 25 KB/s of payload) played three times, in real time.
    let publisher = ffmpeg_publish_looped(&rtmp_url(&server, "metrics"), 2);
    wait_live(&server, "metrics", 10).await;

    // An RTMP player (ffmpeg) and an HTTP-FLV player (reading everything).
    let rtmp_player = spawn(
        "ffmpeg",
        "ffmpeg",
        &[
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            &rtmp_url(&server, "metrics"),
            "-c",
            "copy",
            "-f",
            "null",
            "-",
        ],
    );
    let mut flv = request(&server, "/live/live/metrics.flv", &[]).await;
    let flv_reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(20), flv.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });

    // Both players are counted, then two scrapes 1.5 s apart.
    let first = scrape_until(&server, "both players counted", |text| {
        let players = |p: &str| sample(text, "arcly_players", &format!(r#"{STREAM},protocol="{p}""#));
        let ttff = |p: &str| sample(text, "arcly_first_frame_seconds_count", &format!(r#"protocol="{p}""#));
        players("rtmp") == Some(1.0)
            && players("http") == Some(1.0)
            && ttff("rtmp") >= Some(1.0)
            && ttff("http") >= Some(1.0)
    })
    .await;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = scrape(&server).await;
    let dt = t0.elapsed().as_secs_f64();
    promtool_clean(&second);
    eprintln!("{}", second.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n"));

    assert_eq!(stream_value(&second, "arcly_publishers"), 1.0);
    assert_eq!(sample(&second, "arcly_streams", ""), Some(1.0));
    for protocol in ["rtmp", "http"] {
        let labels = format!(r#"{STREAM},protocol="{protocol}""#);
        assert_eq!(sample(&second, "arcly_players", &labels), Some(1.0), "one {protocol} player");
        let ttff = sample(&second, "arcly_first_frame_seconds_count", &format!(r#"protocol="{protocol}""#));
        assert_eq!(ttff, Some(1.0), "{protocol} time to first frame observed once");
    }
    let ttff_sum = sample(&second, "arcly_first_frame_seconds_sum", r#"protocol="rtmp""#).unwrap()
        + sample(&second, "arcly_first_frame_seconds_sum", r#"protocol="http""#).unwrap();
    assert!(ttff_sum < 5.0, "a live stream's first frames take well under 5 s: {ttff_sum}");

    // In: grows at the source's rate.
    let delta = |name: &str| stream_value(&second, name) - stream_value(&first, name);
    let (frames_in, bytes_in) = (delta("arcly_stream_frames_in_total"), delta("arcly_stream_bytes_in_total"));
    let (fps, bps) = (frames_in / dt, bytes_in / dt);
    eprintln!("in: {fps:.1} frames/s, {bps:.0} bytes/s over {dt:.2} s");
    assert!((25.0..=200.0).contains(&fps), "about 70 frames/s expected, got {fps:.1}");
    assert!((8_000.0..=80_000.0).contains(&bps), "about 25 KB/s expected, got {bps:.0}");
    // Out: every subscriber (two players and the HLS packager) got them.
    let (frames_out, bytes_out) = (delta("arcly_stream_frames_out_total"), delta("arcly_stream_bytes_out_total"));
    assert!(frames_out >= frames_in, "frames out {frames_out} < frames in {frames_in}");
    assert!(bytes_out >= bytes_in, "bytes out {bytes_out} < bytes in {bytes_in}");
    assert_eq!(stream_value(&second, "arcly_stream_subscribers"), 3.0, "two players and the HLS packager");
    assert!(stream_value(&second, "arcly_stream_max_lag_seconds") < 2.0, "players keep up");
    assert_eq!(stream_value(&second, "arcly_stream_skips_total"), 0.0);
    assert_eq!(stream_value(&second, "arcly_stream_evictions_total"), 0.0);
    let gop = stream_value(&second, "arcly_stream_keyframe_interval_seconds");
    assert!((0.5..=5.0).contains(&gop), "keyframe interval {gop}");
    assert!(sample(&second, "arcly_connections_open", r#"protocol="rtmp""#) >= Some(2.0));

    // A second publisher of the same stream is refused and counted.
    let intruder = ffmpeg_publish(&rtmp_url(&server, "metrics"));
    let (status, _) = finish(intruder, 20).await;
    assert!(!status.success(), "the second publisher is refused");
    let text = scrape_until(&server, "the refused connection closed", |text| {
        sample(text, "arcly_connections_closed_total", r#"protocol="rtmp",reason="refused""#) >= Some(1.0)
    })
    .await;
    assert_eq!(
        sample(&text, "arcly_requests_refused_total", r#"action="publish",code="already_publishing""#),
        Some(1.0),
        "{text}"
    );

    // The publisher stops: its gauge drops, then the stream's series go.
    drop(publisher);
    let text = scrape_until(&server, "the publisher gauge dropped", |text| {
        sample(text, "arcly_publishers", STREAM).unwrap_or(0.0) == 0.0
    })
    .await;
    promtool_clean(&text);
    drop(rtmp_player);
    let flv_bytes = flv_reader.await.unwrap();
    assert!(flv_bytes > 20_000, "the HTTP-FLV player got {flv_bytes} bytes");
    let text =
        scrape_until(&server, "no series of the ended stream", |text| !text.contains(r#"stream="metrics""#)).await;
    assert_eq!(sample(&text, "arcly_streams", ""), Some(0.0));

    server.shutdown();
    server.wait().await.unwrap();
}

/// A raw `GET path` to `addr`: (status line, whole response).
async fn get_at(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/openmetrics-text\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut raw)).await.unwrap().unwrap();
    let r = parse(&raw);
    (r.status, String::from_utf8_lossy(&raw).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_on_a_listener_of_their_own_or_off() {
    let mut config = test_config();
    config.metrics.listen = Some("127.0.0.1:0".parse().unwrap());
    let server = arcly_server::Server::start(config).await.unwrap();
    let addr = server.metrics_addr().expect("a metrics listener");
    assert_eq!(get(&server, "/metrics").await.status, 404, "not on the HTTP listener");
    let (status, raw) = get_at(addr, "/metrics").await;
    assert_eq!(status, 200);
    let lower = raw.to_ascii_lowercase();
    assert!(lower.contains("content-type: application/openmetrics-text"), "asked for OpenMetrics:\n{raw}");
    assert!(raw.contains("arcly_connections_open{protocol=\"rtmp\"} 0") && raw.contains("# EOF"), "{raw}");
    server.shutdown();
    server.wait().await.unwrap();

    let mut config = test_config();
    config.metrics.enabled = false;
    let server = arcly_server::Server::start(config).await.unwrap();
    assert!(server.metrics().is_none() && server.metrics_addr().is_none());
    assert_eq!(get(&server, "/metrics").await.status, 404);
    server.shutdown();
    server.wait().await.unwrap();
}
