//! HTTP-FLV against ffmpeg: ffmpeg publishes over RTMP in real time while
//! ffprobe and ffmpeg read `/live/live/{key}.flv`.

#![allow(clippy::print_stderr)] // Measured figures are printed.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_flv_plays_every_frame_without_errors() {
    let server = start().await;
    let url = http_url(&server, "/live/live/flv.flv");
    // The readers wait for the stream (http.play_wait_ms), so they see it
    // from its first frame.
    let probe = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || arcly_testkit::ffprobe(Path::new(&url)))
    };
    let decode = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || arcly_testkit::ffmpeg_errors(Path::new(&url)))
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let started = std::time::Instant::now();
    let publisher = ffmpeg_publish(&rtmp_url(&server, "flv"));
    let (status, stderr) = finish(publisher, 30).await;
    assert!(status.success(), "ffmpeg publish failed: {stderr}");

    let streams = tokio::time::timeout(Duration::from_secs(20), probe).await.expect("ffprobe ends").unwrap();
    let errors = tokio::time::timeout(Duration::from_secs(20), decode).await.expect("ffmpeg ends").unwrap();
    eprintln!("publish + play took {:?}", started.elapsed());
    assert_eq!(errors, "", "ffmpeg decoding HTTP-FLV reported errors");
    let video = streams.iter().find(|s| s["codec_type"] == "video").expect("a video stream");
    let audio = streams.iter().find(|s| s["codec_type"] == "audio").expect("an audio stream");
    assert_eq!(video["codec_name"], "h264");
    assert_eq!((video["width"].as_str(), video["height"].as_str()), ("160", "120"));
    assert_eq!(audio["codec_name"], "aac");
    assert_eq!(video["nb_read_packets"], "75", "every video frame published");
    assert_eq!(audio["nb_read_packets"], "142", "every audio frame published");
    server.shutdown();
    server.wait().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_flv_late_joiner_starts_on_a_keyframe_and_unknown_stream_is_404() {
    let mut config = test_config();
    config.http.play_wait_ms = 0;
    let server = arcly_server::Server::start(config).await.unwrap();
    let missing = get(&server, "/live/live/nobody.flv").await;
    assert_eq!(missing.status, 404);
    let bad_app = get(&server, "/live/nope/x.flv").await;
    assert_eq!(bad_app.status, 404);

    let publisher = ffmpeg_publish(&rtmp_url(&server, "late"));
    wait_live(&server, "late", 10).await;
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // Joined after the second keyframe (1.08 s): the GOP cache starts it
    // there, so it gets fewer frames but decodes without an error.
    let url = http_url(&server, "/live/live/late.flv");
    let probe = tokio::task::spawn_blocking(move || arcly_testkit::ffprobe_packets(Path::new(&url)));
    let (status, stderr) = finish(publisher, 30).await;
    assert!(status.success(), "ffmpeg publish failed: {stderr}");
    let packets = tokio::time::timeout(Duration::from_secs(20), probe).await.expect("ffprobe ends").unwrap();
    let video: Vec<_> = packets.iter().filter(|p| p.stream == 0).collect();
    assert!(!video.is_empty(), "video received");
    assert!(video.len() < 75, "joined late: {} video packets", video.len());
    let first_video = packets.iter().find(|p| p.size > 0 && p.stream == video[0].stream).unwrap();
    assert!(first_video.keyframe, "a late joiner starts on a keyframe");
    server.shutdown();
    server.wait().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_flv_player_stays_across_a_republish() {
    let mut config = test_config();
    config.apps[0].republish_grace_secs = 3.0;
    let server = arcly_server::Server::start(config).await.unwrap();
    let url = http_url(&server, "/live/live/again.flv");
    let packets = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || arcly_testkit::ffprobe_packets(Path::new(&url)))
    };
    let decode = tokio::task::spawn_blocking(move || arcly_testkit::ffmpeg_errors(Path::new(&url)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for round in 0..2 {
        let (status, stderr) = finish(ffmpeg_publish(&rtmp_url(&server, "again")), 30).await;
        assert!(status.success(), "publish {round} failed: {stderr}");
        // The stream waits for a publisher (republish grace); the player stays.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let packets = tokio::time::timeout(Duration::from_secs(20), packets).await.expect("ffprobe ends").unwrap();
    let errors = tokio::time::timeout(Duration::from_secs(20), decode).await.expect("ffmpeg ends").unwrap();
    assert_eq!(errors, "", "ffmpeg decoding HTTP-FLV across a republish reported errors");
    let video: Vec<_> = packets.iter().filter(|p| p.stream == 0).collect();
    let audio = packets.len() - video.len();
    assert_eq!((video.len(), audio), (150, 284), "both publishers' frames, in one response");
    let dts: Vec<i64> = video.iter().filter_map(|p| p.dts).collect();
    assert!(dts.windows(2).all(|w| w[0] < w[1]), "timestamps keep increasing across the republish: {dts:?}");
    server.shutdown();
    server.wait().await.expect("clean shutdown");
}
