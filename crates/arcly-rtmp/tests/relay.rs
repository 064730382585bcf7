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

/// HEVC over Enhanced RTMP: the committed H.265 + AAC stream is published
/// by our client to one server and pulled back by our client from it into
/// another engine; every video frame arrives intact, in order, with its
/// timestamps, keyframe flags and the hvcC configuration first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_over_enhanced_rtmp_round_trips() {
    use arcly_core::frame::{CodecId, Timebase};
    use arcly_mux::ts::{DemuxEvent, TsDemuxer};

    // The source frames, from the committed HEVC test stream.
    let mut demux = TsDemuxer::new();
    demux.push(&arcly_testkit::read_testdata("hevc_aac.ts"));
    demux.flush();
    let mut frames = Vec::new();
    while let Some(event) = demux.poll() {
        if let Ok(DemuxEvent::Frame(f)) = event {
            frames.push(f);
        }
    }
    let video_in: Vec<_> = frames.iter().filter(|f| f.codec == CodecId::H265 && !f.is_config()).cloned().collect();
    assert_eq!(video_in.len(), 75);

    let origin = TestServer::start(Duration::from_secs(10)).await;
    let local = TestServer::start(Duration::ZERO).await;
    let source = TestServer::start(Duration::ZERO).await;
    let token = CancellationToken::new();
    // The chain: source engine -> our client pushes -> origin server ->
    // our client pulls -> local engine. Every link subscribes before the
    // first frame is published, so no frame can fall before a join.
    let session = source.engine.begin_publish("live/src".parse().unwrap(), "test", &Default::default()).await.unwrap();
    let (engine, t, url) = (source.engine.clone(), token.clone(), origin.url("hevc"));
    let pusher = tokio::spawn(async move {
        let id = "live/src".parse().unwrap();
        client::push(&engine, &id, &url, &options(), &t).await
    });
    let ctx = IngestContext::new(local.engine.clone(), "rtmp-pull");
    let (t, url) = (token.clone(), origin.url("hevc"));
    let puller = tokio::spawn(async move { client::pull(&ctx, "live", "back", &url, &options(), &t).await });
    let back = "live/back".parse().unwrap();
    let handle =
        local.engine.wait_for_stream(&back, Duration::from_secs(20)).await.expect("the pulled stream went live");
    let mut sub = handle.subscribe();
    let pushed = "live/hevc".parse().unwrap();
    let origin_stream = origin.engine.wait_for_stream(&pushed, Duration::from_secs(20)).await.expect("pushed");
    tokio::time::timeout(Duration::from_secs(20), async {
        while session.handle().subscriber_count() == 0 || origin_stream.subscriber_count() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the relay chain did not subscribe");
    for f in frames {
        session.publish(f).unwrap();
    }
    let got = tokio::time::timeout(Duration::from_secs(20), async {
        let mut video = Vec::new();
        while video.iter().filter(|f: &&arcly_core::bus::FrameRef| !f.is_config()).count() < video_in.len() {
            let f = sub.recv().await.expect("pulled stream ended early");
            if f.codec == CodecId::H265 {
                video.push(f);
            }
        }
        video
    })
    .await
    .expect("not every HEVC frame came back within 20 s");
    drop(session);
    token.cancel();
    let _ = pusher.await;
    let _ = puller.await;

    assert!(got[0].is_config(), "the hvcC comes first");
    let media: Vec<_> = got.iter().filter(|f| !f.is_config()).collect();
    assert_eq!(media.len(), video_in.len());
    // RTMP carries milliseconds: compare timestamps in ms, payloads exactly.
    let first_dts = video_in[0].dts_in(Timebase::MILLIS);
    let got_first = media[0].dts_in(Timebase::MILLIS);
    for (a, b) in video_in.iter().zip(&media) {
        assert_eq!(a.payload, b.payload, "payload");
        assert_eq!(a.is_keyframe(), b.is_keyframe(), "keyframe flag");
        assert_eq!(a.dts_in(Timebase::MILLIS) - first_dts, b.dts_in(Timebase::MILLIS) - got_first, "dts");
        assert_eq!(a.composition_offset_ms(), b.composition_offset_ms(), "composition offset");
    }
}

trait CompositionMs {
    fn composition_offset_ms(&self) -> i64;
}

impl CompositionMs for arcly_core::frame::MediaFrame {
    fn composition_offset_ms(&self) -> i64 {
        self.pts_in(arcly_core::frame::Timebase::MILLIS) - self.dts_in(arcly_core::frame::Timebase::MILLIS)
    }
}
