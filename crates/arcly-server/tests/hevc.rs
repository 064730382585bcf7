//! HEVC over Enhanced RTMP, read back by ffprobe: our RTMP client pushes the
//! committed H.265 + AAC stream to the server, and ffprobe and ffmpeg read
//! it from the server's HLS output (Debian's ffmpeg 5.1 predates Enhanced
//! FLV, so the HTTP-FLV output cannot be the reader here).

mod common;

use std::time::Duration;

use arcly_core::auth::Credentials;
use arcly_core::engine::{AppSpec, Engine};
use arcly_core::frame::CodecId;
use arcly_mux::ts::{DemuxEvent, TsDemuxer};
use arcly_rtmp::client::{self, ClientOptions};
use common::*;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_pushed_over_enhanced_rtmp_reads_back_through_hls() {
    let mut demux = TsDemuxer::new();
    demux.push(&arcly_testkit::read_testdata("hevc_aac.ts"));
    demux.flush();
    let mut frames = Vec::new();
    while let Some(event) = demux.poll() {
        if let Ok(DemuxEvent::Frame(f)) = event {
            frames.push(f);
        }
    }
    let video = frames.iter().filter(|f| f.codec == CodecId::H265 && !f.is_config()).count();
    assert_eq!(video, 75);

    let server = start().await;
    // The stream to push lives in an engine of its own; our client pushes it.
    let source = Engine::builder().application(AppSpec::new("live")).build();
    let session = source.begin_publish("live/src".parse().unwrap(), "test", &Credentials::default()).await.unwrap();
    let token = CancellationToken::new();
    let (engine, url, t) = (source.clone(), rtmp_url(&server, "hevc"), token.clone());
    let pusher = tokio::spawn(async move {
        let id = "live/src".parse().unwrap();
        let options = ClientOptions { max_attempts: Some(1), ..ClientOptions::default() };
        client::push(&engine, &id, &url, &options, &t).await
    });
    // Publish only once the server's HLS packager follows the pushed stream,
    // so that it sees every frame from the first.
    let id = "live/hevc".parse().unwrap();
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if server.engine().lookup(&id).is_some_and(|h| h.subscriber_count() > 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the pushed stream is live and packaged");
    session.publish_many(frames).unwrap();
    // The first segment exists once its successor's keyframe arrived.
    let first = get(&server, "/live/live/hevc/index.m3u8?_HLS_msn=0").await;
    assert_eq!(first.status, 200, "{}", first.text());
    // Ending the source ends the push, the server's stream and the playlist.
    drop(session);
    // The push task ends when its source does (with an error saying so).
    let _ = tokio::time::timeout(Duration::from_secs(15), pusher).await.expect("push ends");

    let url = http_url(&server, "/live/live/hevc/index.m3u8");
    let (probe_url, decode_url) = (url.clone(), url);
    let streams = tokio::task::spawn_blocking(move || ffprobe_hls(&probe_url)).await.unwrap();
    let errors = tokio::task::spawn_blocking(move || ffmpeg_hls_errors(&decode_url)).await.unwrap();
    assert_eq!(errors, "", "ffmpeg reported errors");
    let video = streams.iter().find(|s| s["codec_type"] == "video").expect("a video stream");
    assert_eq!(video["codec_name"], "hevc");
    assert_eq!((video["width"].as_str(), video["height"].as_str()), ("160", "120"));
    assert_eq!(video["nb_read_packets"], "75", "every HEVC frame pushed");
    let audio = streams.iter().find(|s| s["codec_type"] == "audio").expect("an audio stream");
    assert_eq!(audio["codec_name"], "aac");
    token.cancel();
    server.shutdown();
    server.wait().await.expect("clean shutdown");
}
