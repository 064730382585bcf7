//! The client: pull from and push to RTMP servers, reconnecting.

mod common;

use std::time::Duration;

use arcly_core::inbound::IngestContext;
use arcly_mux::amf0::Amf0Value;
use arcly_rtmp::client::{self, ClientOptions};
use arcly_rtmp::command::{Command, codes};
use arcly_rtmp::message::Message;
use arcly_testkit::{ffmpeg_errors, ffprobe, scratch_dir};
use common::{TestClient, TestServer, ffmpeg_publish, finish, spawn};
use tokio_util::sync::CancellationToken;

fn options() -> ClientOptions {
    ClientOptions {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        ..ClientOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_retries_until_the_source_is_live_then_relays() {
    let server = TestServer::start(Duration::ZERO).await;
    let token = CancellationToken::new();
    let ctx = IngestContext::new(server.engine.clone(), "rtmp-pull");
    let url = server.url("src");
    let t = token.clone();
    let puller = tokio::spawn(async move { client::pull(&ctx, "live", "copy", &url, &options(), &t).await });
    // The source is not live yet: the puller is refused and retries.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!puller.is_finished());
    let publisher = ffmpeg_publish(&server.url("src"), true, &["-stream_loop", "-1"]);
    let copy = "live/copy".parse().unwrap();
    assert!(server.engine.wait_for_stream(&copy, Duration::from_secs(10)).await.is_some(), "pull did not publish");
    let dir = scratch_dir("rtmp-pull");
    let out = dir.join("out.flv");
    let player = spawn(
        "ffmpeg",
        "ffmpeg",
        &[
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            &server.url("copy"),
            "-t",
            "1.5",
            "-c",
            "copy",
            "-f",
            "flv",
            "-y",
            out.to_str().unwrap(),
        ],
    );
    let (status, err) = finish(player, 15).await;
    assert!(status.success(), "player of the pulled stream failed: {err}");
    let streams = ffprobe(&out);
    let codecs: Vec<&str> = streams.iter().filter_map(|s| s.get("codec_name").map(String::as_str)).collect();
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "codecs {codecs:?}");
    assert_eq!(ffmpeg_errors(&out), "");
    token.cancel();
    assert!(puller.await.unwrap().is_ok());
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_relays_to_another_server() {
    let origin = TestServer::start(Duration::ZERO).await;
    let edge = TestServer::start(Duration::from_secs(10)).await;
    let publisher = ffmpeg_publish(&origin.url("src"), true, &["-stream_loop", "-1"]);
    let token = CancellationToken::new();
    let (engine, t, url) = (origin.engine.clone(), token.clone(), edge.url("pushed"));
    let pusher = tokio::spawn(async move {
        let id = "live/src".parse().unwrap();
        client::push(&engine, &id, &url, &options(), &t).await
    });
    let mut player = TestClient::connect(edge.addr, "live").await;
    player.command(1, Command::new("play", 0.0, Amf0Value::Null, vec!["pushed".into()])).await;
    player.wait_status(codes::PLAY_START, 10).await;
    let mut video = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while video.len() < 2 {
            if let Some((1, Message::Video(b))) = player.next().await {
                video.push(b);
            }
        }
    })
    .await
    .expect("no video from the pushed stream");
    assert_eq!(&video[0][..2], &[0x17, 0]);
    assert_eq!(&video[1][..2], &[0x17, 1]);
    token.cancel();
    assert!(pusher.await.unwrap().is_ok());
    drop(publisher);
}

#[tokio::test]
async fn bad_url_and_giving_up() {
    let server = TestServer::start(Duration::ZERO).await;
    let ctx = IngestContext::new(server.engine.clone(), "rtmp-pull");
    let token = CancellationToken::new();
    assert!(client::pull(&ctx, "live", "x", "http://nope/a/b", &options(), &token).await.is_err());
    let opts = ClientOptions { max_attempts: Some(3), ..options() };
    let e = client::pull(&ctx, "live", "x", &server.url("missing"), &opts, &token).await.unwrap_err();
    assert!(e.to_string().contains("3 attempts"), "{e}");
}
