//! The server against real peers: ffmpeg, rtmpdump, GStreamer, and a
//! minimal client built from this crate's sans-IO parts.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use arcly_core::engine::AppSpec;
use arcly_mux::amf0::Amf0Value;
use arcly_rtmp::ServerConfig;
use arcly_rtmp::command::{Command, codes};
use arcly_rtmp::message::{Message, UserControl};
use arcly_testkit::{ProbePacket, ffmpeg_errors, ffprobe, ffprobe_packets, scratch_dir, testdata};
use common::{TestClient, TestServer, ffmpeg_publish, finish, spawn};

fn video_packets(path: &Path) -> Vec<(Option<i64>, Option<i64>, bool)> {
    let streams = ffprobe(path);
    let video = streams.iter().position(|s| s.get("codec_type").map(String::as_str) == Some("video")).expect("video");
    ffprobe_packets(path)
        .into_iter()
        .filter(|p: &ProbePacket| p.stream == video)
        .map(|p| (p.pts, p.dts, p.keyframe))
        .collect()
}

/// What every recording of the test stream must look like: the codecs and
/// parameters of the source, no decode error, and (for players that joined
/// before the publisher) the same video packets with the same timestamps.
fn check_recording(out: &Path, whole: bool) {
    let streams = ffprobe(out);
    let get = |ty: &str, k: &str| {
        streams
            .iter()
            .find(|s| s.get("codec_type").map(String::as_str) == Some(ty))
            .and_then(|s| s.get(k).cloned())
            .unwrap_or_default()
    };
    assert_eq!(get("video", "codec_name"), "h264");
    assert_eq!((get("video", "width").as_str(), get("video", "height").as_str()), ("160", "120"));
    assert_eq!(get("audio", "codec_name"), "aac");
    assert_eq!((get("audio", "sample_rate").as_str(), get("audio", "channels").as_str()), ("48000", "2"));
    assert_eq!(ffmpeg_errors(out), "", "decode errors in {}", out.display());
    let got = video_packets(out);
    assert!(got.first().is_some_and(|p| p.2), "the first video packet must be a keyframe");
    if whole {
        let want = video_packets(&testdata("h264_aac.flv"));
        assert_eq!(got.len(), want.len(), "video packet count");
        assert_eq!(got, want, "video pts/dts (B-frame composition offsets)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_and_ffmpeg_plays() {
    let server = TestServer::start(Duration::from_secs(10)).await;
    let dir = scratch_dir("rtmp-ffmpeg-play");
    let out = dir.join("out.flv");
    let url = server.url("test");
    let player = spawn(
        "ffmpeg",
        "ffmpeg",
        &[
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            &url,
            "-c",
            "copy",
            "-f",
            "flv",
            "-y",
            out.to_str().unwrap(),
        ],
    );
    // The server waits for the stream: the player may connect first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, err) = finish(ffmpeg_publish(&url, false, &[]), 20).await;
    assert!(status.success(), "publisher failed: {err}");
    // The publisher left: the player gets StreamEOF and UnpublishNotify and ends cleanly.
    let (status, err) = finish(player, 15).await;
    assert!(status.success(), "player failed: {err}");
    check_recording(&out, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmpdump_plays() {
    let server = TestServer::start(Duration::from_secs(10)).await;
    let dir = scratch_dir("rtmp-rtmpdump");
    let out = dir.join("out.flv");
    let url = server.url("test");
    let player = spawn("rtmpdump", "rtmpdump", &["-q", "-r", &url, "--live", "-m", "15", "-o", out.to_str().unwrap()]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, err) = finish(ffmpeg_publish(&url, false, &[]), 20).await;
    assert!(status.success(), "publisher failed: {err}");
    // rtmpdump reports an "incomplete" live download (2) when the stream ends.
    let (status, err) = finish(player, 15).await;
    assert!(matches!(status.code(), Some(0 | 2)), "rtmpdump failed ({status}): {err}");
    check_recording(&out, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)]
async fn mid_stream_joiner_starts_on_a_keyframe() {
    let server = TestServer::start(Duration::ZERO).await;
    let url = server.url("live1");
    // Real time, looped: live for as long as the test needs.
    let publisher = ffmpeg_publish(&url, true, &["-stream_loop", "-1"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Measured from the TCP connect: handshake, connect, createStream, play.
    let started = Instant::now();
    let mut client = TestClient::connect(server.addr, "live").await;
    client.command(1, Command::new("play", 0.0, Amf0Value::Null, vec!["live1".into(), Amf0Value::Number(-1.0)])).await;
    let mut video = Vec::new();
    let mut saw_start = false;
    let mut first_frame = None;
    tokio::time::timeout(Duration::from_secs(10), async {
        while video.len() < 3 {
            match client.next().await.expect("server closed") {
                (_, Message::Command(c)) if c.status_code() == Some(codes::PLAY_START) => saw_start = true,
                (1, Message::Video(body)) => {
                    if body.get(1) == Some(&1) && first_frame.is_none() {
                        first_frame = Some(started.elapsed());
                    }
                    video.push(body);
                }
                _ => {}
            }
        }
    })
    .await
    .expect("no video within 10 s");
    assert!(saw_start);
    // The sequence header, then a keyframe.
    assert_eq!(&video[0][..2], &[0x17, 0], "first video message must be the AVC sequence header");
    assert_eq!(&video[1][..2], &[0x17, 1], "then a keyframe");
    let ttff = first_frame.expect("a coded frame");
    eprintln!("time to first video frame (mid-stream join, TCP connect to keyframe): {ttff:?}");
    // A sanity bound only; the figure itself is reported in BENCHMARKS.md.
    assert!(ttff < Duration::from_secs(2), "time to first frame {ttff:?}");
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_publishes_and_ffmpeg_plays() {
    let server = TestServer::start(Duration::from_secs(10)).await;
    let dir = scratch_dir("rtmp-gst-publish");
    let out = dir.join("out.flv");
    let url = server.url("gst");
    let player = spawn(
        "ffmpeg",
        "ffmpeg",
        &[
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            &url,
            "-c",
            "copy",
            "-f",
            "flv",
            "-y",
            out.to_str().unwrap(),
        ],
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let src = testdata("h264_aac.flv");
    let pipeline = format!(
        "filesrc location={} ! flvdemux name=d d.video ! queue ! h264parse ! m. d.audio ! queue ! aacparse ! m. \
         flvmux name=m streamable=true ! rtmp2sink location={url}",
        src.display()
    );
    let args: Vec<&str> = std::iter::once("-q").chain(pipeline.split(' ')).collect();
    let (status, err) = finish(spawn("gst-launch-1.0", "gstreamer1.0-tools", &args), 20).await;
    assert!(status.success(), "gst-launch failed: {err}");
    let (status, err) = finish(player, 15).await;
    assert!(status.success(), "player failed: {err}");
    check_recording(&out, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_and_gstreamer_plays() {
    let server = TestServer::start(Duration::from_secs(10)).await;
    let dir = scratch_dir("rtmp-gst-play");
    let out = dir.join("out.flv");
    let url = server.url("gst");
    let pipeline = format!("rtmp2src location={url} ! filesink location={}", out.display());
    let args: Vec<&str> = ["-q", "-e"].into_iter().chain(pipeline.split(' ')).collect();
    let player = spawn("gst-launch-1.0", "gstreamer1.0-tools", &args);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, err) = finish(ffmpeg_publish(&url, false, &[]), 20).await;
    assert!(status.success(), "publisher failed: {err}");
    // rtmp2src ends the stream on StreamEOF / UnpublishNotify; if it does
    // not, interrupt it (-e turns that into EOS, so the file is complete).
    let pid = player.id().expect("pid").to_string();
    let (status, err) = match tokio::time::timeout(Duration::from_secs(3), async {
        // Poll for exit without consuming the child.
        loop {
            if std::process::Command::new("kill").args(["-0", &pid]).status().is_ok_and(|s| !s.success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    {
        Ok(()) => finish(player, 5).await,
        Err(_) => {
            let _ = std::process::Command::new("kill").args(["-INT", &pid]).status();
            finish(player, 10).await
        }
    };
    assert!(status.success() || status.code() == Some(1), "gst-launch failed ({status}): {err}");
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "rtmp2src wrote only {size} bytes: {err}");
    check_recording(&out, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_publisher_is_refused_and_players_see_the_end() {
    let server = TestServer::start(Duration::ZERO).await;
    let url = server.url("dup");
    let first = ffmpeg_publish(&url, true, &["-stream_loop", "-1"]);
    // Wait until it is live.
    let id = "live/dup".parse().unwrap();
    assert!(server.engine.wait_for_stream(&id, Duration::from_secs(10)).await.is_some(), "first publisher not live");

    // ffmpeg as the second publisher exits with an error.
    let (status, err) = finish(ffmpeg_publish(&url, false, &[]), 15).await;
    assert!(!status.success(), "the second publisher must be refused");
    assert!(err.contains("already being published") || err.contains("BadName"), "ffmpeg said: {err}");

    // Our client sees NetStream.Publish.BadName.
    let mut dup = TestClient::connect(server.addr, "live").await;
    dup.command(1, Command::new("publish", 5.0, Amf0Value::Null, vec!["dup".into(), "live".into()])).await;
    dup.wait_status(codes::PUBLISH_BAD_NAME, 5).await;

    // A player sees the stream end when the publisher leaves.
    let mut player = TestClient::connect(server.addr, "live").await;
    player.command(1, Command::new("play", 0.0, Amf0Value::Null, vec!["dup".into()])).await;
    player.wait_status(codes::PLAY_START, 5).await;
    drop(first); // kills ffmpeg: the publisher's connection drops
    let mut eof = false;
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match player.next().await {
                Some((_, Message::UserControl(UserControl::StreamEof(1)))) => eof = true,
                Some((_, Message::Command(c))) if c.status_code() == Some(codes::PLAY_UNPUBLISH_NOTIFY) => break,
                Some(_) => {}
                None => panic!("closed before UnpublishNotify"),
            }
        }
    })
    .await
    .expect("no UnpublishNotify within 10 s");
    assert!(eof, "StreamEOF before UnpublishNotify");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_stream_is_not_found() {
    let server = TestServer::start(Duration::ZERO).await;
    let mut player = TestClient::connect(server.addr, "live").await;
    player.command(1, Command::new("play", 0.0, Amf0Value::Null, vec!["nobody".into()])).await;
    player.wait_status(codes::PLAY_STREAM_NOT_FOUND, 5).await;
}

/// With a republish grace, a player that stays across a publisher's
/// reconnect is told the publisher left (StreamEOF, UnpublishNotify), then
/// that one is back (PublishNotify), and receives video again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_publisher_resumes_for_players_that_stayed() {
    let app = AppSpec::new("live").republish_grace(Duration::from_secs(20));
    let server = TestServer::with(ServerConfig::default(), app).await;
    let url = server.url("again");
    let id = "live/again".parse().unwrap();
    let first = ffmpeg_publish(&url, true, &["-stream_loop", "-1"]);
    assert!(server.engine.wait_for_stream(&id, Duration::from_secs(10)).await.is_some(), "first publisher not live");

    let mut player = TestClient::connect(server.addr, "live").await;
    player.command(1, Command::new("play", 0.0, Amf0Value::Null, vec!["again".into()])).await;
    player.wait_status(codes::PLAY_START, 5).await;
    let video = |m: &Message| matches!(m, Message::Video(_));
    wait_for(&mut player, "video from the first publisher", video).await;

    drop(first);
    wait_for(&mut player, "StreamEOF", |m| matches!(m, Message::UserControl(UserControl::StreamEof(1)))).await;
    player.wait_status(codes::PLAY_UNPUBLISH_NOTIFY, 10).await;

    let _second = ffmpeg_publish(&url, true, &["-stream_loop", "-1"]);
    player.wait_status(codes::PLAY_PUBLISH_NOTIFY, 15).await;
    wait_for(&mut player, "video from the second publisher", video).await;
}

/// Reads messages until one matches (panics after 15 s or on close).
async fn wait_for(client: &mut TestClient, what: &str, want: impl Fn(&Message) -> bool) {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match client.next().await {
                Some((_, m)) if want(&m) => return,
                Some(_) => {}
                None => panic!("connection closed before {what}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within 15 s"));
}

/// ffprobe reads the live stream straight from the server: every video
/// packet of the source, with its timestamps (B-frames), in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_plays_the_live_stream() {
    let server = TestServer::start(Duration::from_secs(10)).await;
    let url = server.url("probe");
    // ffprobe asks first; the server waits for the stream.
    let probe_url = url.clone();
    let probe = tokio::task::spawn_blocking(move || ffprobe_packets(Path::new(&probe_url)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, err) = finish(ffmpeg_publish(&url, true, &[]), 20).await;
    assert!(status.success(), "publisher failed: {err}");
    let packets = tokio::time::timeout(Duration::from_secs(20), probe).await.expect("ffprobe ended").unwrap();
    let source = testdata("h264_aac.flv");
    let want = video_packets(&source);
    let got: Vec<_> = packets.iter().filter(|p| p.size > 0 && p.dts.is_some()).collect();
    // ffprobe numbers streams as it finds them on the wire; take the stream
    // whose packet count matches the source's video (75 packets).
    let mut per_stream = std::collections::BTreeMap::<usize, Vec<&ProbePacket>>::new();
    for p in &got {
        per_stream.entry(p.stream).or_default().push(p);
    }
    let live_video = per_stream
        .values()
        .find(|v| v.first().is_some_and(|p| p.keyframe) && v.len() == want.len())
        .unwrap_or_else(|| {
            panic!(
                "no live stream with {} packets: {:?}",
                want.len(),
                per_stream.values().map(Vec::len).collect::<Vec<_>>()
            )
        });
    let live: Vec<_> = live_video.iter().map(|p| (p.pts, p.dts, p.keyframe)).collect();
    assert_eq!(live, want, "video pts/dts read live by ffprobe");
}
