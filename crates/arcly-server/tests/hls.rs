//! HLS and LL-HLS over HTTP against ffmpeg: ffmpeg publishes over RTMP in
//! real time; ffprobe and ffmpeg read the LL-HLS (fMP4) and classic (TS)
//! playlists over HTTP; blocking playlist reload is served.

#![allow(clippy::print_stderr)] // Measured figures are printed.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ll_hls_and_classic_hls_play_every_frame_without_errors() {
    let server = start().await;
    // The file twice: 150 video and 284 audio frames over 6 s.
    let publisher = ffmpeg_publish_looped(&rtmp_url(&server, "hls"), 1);
    wait_live(&server, "hls", 10).await;
    // ffmpeg 5.1 does not read LL-HLS parts: it needs a complete segment in
    // the playlist to start. A blocking reload waits for the first.
    let first = get(&server, "/live/live/hls/index.m3u8?_HLS_msn=0").await;
    assert_eq!(first.status, 200, "{}", first.text());
    let ts_first = get(&server, "/live/live/hls/ts/index.m3u8?_HLS_msn=0").await;
    assert_eq!(ts_first.status, 200, "{}", ts_first.text());
    let read = |path: &str, probe: bool| {
        let url = http_url(&server, path);
        tokio::task::spawn_blocking(move || if probe { Ok(ffprobe_hls(&url)) } else { Err(ffmpeg_hls_errors(&url)) })
    };
    // The playlists answer once the first part/segment exists; ffmpeg
    // reads live playlists until EXT-X-ENDLIST, written when the stream ends.
    let ll_probe = read("/live/live/hls/index.m3u8", true);
    let ll_decode = read("/live/live/hls/index.m3u8", false);
    let ts_probe = read("/live/live/hls/ts/index.m3u8", true);
    let ts_decode = read("/live/live/hls/ts/index.m3u8", false);
    let (status, stderr) = finish(publisher, 30).await;
    assert!(status.success(), "ffmpeg publish failed: {stderr}");

    for (name, probe, decode) in [("LL-HLS", ll_probe, ll_decode), ("HLS (TS)", ts_probe, ts_decode)] {
        let streams = tokio::time::timeout(Duration::from_secs(30), probe).await.expect("ffprobe ends").unwrap();
        let errors = tokio::time::timeout(Duration::from_secs(30), decode).await.expect("ffmpeg ends").unwrap();
        let streams = streams.expect("probe");
        let errors = errors.expect_err("decode");
        assert_eq!(errors, "", "{name}: ffmpeg reported errors");
        let video = streams.iter().find(|s| s["codec_type"] == "video").expect("a video stream");
        let audio = streams.iter().find(|s| s["codec_type"] == "audio").expect("an audio stream");
        eprintln!("{name}: video {} packets, audio {} packets", video["nb_read_packets"], audio["nb_read_packets"]);
        assert_eq!(video["codec_name"], "h264", "{name}");
        assert_eq!(audio["codec_name"], "aac", "{name}");
        assert_eq!(video["nb_read_packets"], "150", "{name}: every video frame published");
        assert_eq!(audio["nb_read_packets"], "284", "{name}: every audio frame published");
    }
    server.shutdown();
    server.wait().await.expect("clean shutdown");
}

/// The media sequence numbers of the complete segments in an LL-HLS
/// playlist (`seg{msn}.m4s` lines).
fn segments(playlist: &str) -> Vec<u64> {
    playlist.lines().filter_map(|l| l.strip_prefix("seg")?.strip_suffix(".m4s")?.parse().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reload_and_hls_files_over_http() {
    let server = start().await;
    let publisher = ffmpeg_publish_looped(&rtmp_url(&server, "block"), 2);
    wait_live(&server, "block", 10).await;

    let playlist = get(&server, "/live/live/block/index.m3u8").await;
    assert_eq!(playlist.status, 200, "{}", playlist.text());
    assert_eq!(playlist.header("content-type"), Some("application/vnd.apple.mpegurl"));
    assert_eq!(playlist.header("cache-control"), Some("no-cache"));
    assert_eq!(playlist.header("access-control-allow-origin"), Some("*"));
    let text = playlist.text();
    assert!(text.contains("CAN-BLOCK-RELOAD=YES"), "{text}");
    assert!(text.contains("#EXT-X-PART-INF"), "{text}");

    // Block for the segment after the last complete one.
    let next = segments(&text).last().map_or(0, |m| m + 1);
    let started = Instant::now();
    let blocked = get(&server, &format!("/live/live/block/index.m3u8?_HLS_msn={next}")).await;
    let waited = started.elapsed();
    assert_eq!(blocked.status, 200, "{}", blocked.text());
    let after = segments(&blocked.text());
    assert!(after.contains(&next), "the blocking reload returned before seg{next}.m4s existed:\n{}", blocked.text());
    eprintln!("blocking reload for seg{next}.m4s waited {waited:?}");
    assert!(waited > Duration::from_millis(100), "a segment in the future takes time: waited {waited:?}");

    // Then a part of the next segment, by blocking reload with _HLS_part.
    let started = Instant::now();
    let part = get(&server, &format!("/live/live/block/index.m3u8?_HLS_msn={}&_HLS_part=0", next + 1)).await;
    assert_eq!(part.status, 200, "{}", part.text());
    assert!(part.text().contains(&format!("part{}.0.m4s", next + 1)), "{}", part.text());
    eprintln!("blocking reload for part{}.0 waited {:?}", next + 1, started.elapsed());
    assert_eq!(part.header("cache-control"), Some("public, max-age=2"));

    // The files themselves.
    let seg = get(&server, &format!("/live/live/block/seg{next}.m4s")).await;
    assert_eq!(seg.status, 200);
    assert_eq!(seg.header("content-type"), Some("video/mp4"));
    assert_eq!(seg.header("content-length"), Some(seg.body.len().to_string().as_str()));
    assert_eq!(&seg.body[4..8], b"moof", "an fMP4 segment starts with a moof (or styp)");
    let p = get(&server, &format!("/live/live/block/part{}.0.m4s", next + 1)).await;
    assert_eq!((p.status, p.header("content-type")), (200, Some("video/mp4")));
    let init = get(&server, "/live/live/block/init.mp4").await;
    assert_eq!((init.status, init.header("content-type")), (200, Some("video/mp4")));
    assert_eq!(&init.body[4..8], b"ftyp");
    let master = get(&server, "/live/live/block/master.m3u8").await;
    assert_eq!(master.status, 200, "{}", master.text());
    assert!(master.text().contains("index.m3u8"), "{}", master.text());
    assert!(master.text().contains("avc1") && master.text().contains("mp4a"), "{}", master.text());
    let ts = get(&server, "/live/live/block/ts/index.m3u8").await;
    assert_eq!(ts.status, 200);
    let ts_seg = ts.text().lines().find(|l| l.ends_with(".ts")).expect("a TS segment").to_owned();
    let ts_seg = get(&server, &format!("/live/live/block/ts/{}", ts_seg.trim_start_matches("ts/"))).await;
    assert_eq!((ts_seg.status, ts_seg.header("content-type")), (200, Some("video/mp2t")));
    assert_eq!(ts_seg.body[0], 0x47, "TS sync byte");

    // Errors.
    assert_eq!(get(&server, "/live/live/block/index.m3u8?_HLS_msn=999999").await.status, 400);
    assert_eq!(get(&server, "/live/live/block/index.m3u8?_HLS_part=1").await.status, 400);
    assert_eq!(get(&server, "/live/live/nobody/index.m3u8").await.status, 404);
    assert_eq!(get(&server, "/live/live/block/seg999999.m4s").await.status, 404);
    assert_eq!(get(&server, "/live/live/block/other.txt").await.status, 404);

    drop(publisher);
    server.shutdown();
    server.wait().await.expect("clean shutdown");
}

/// An audio-only and a video-only publish (ffmpeg `-vn` / `-an`) both play
/// through LL-HLS and classic HLS, every frame, without decode errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_only_and_video_only_publishes_play() {
    let server = start().await;
    for (key, drop_track, kind, other, count) in
        [("audioonly", "-vn", "audio", "video", "142"), ("videoonly", "-an", "video", "audio", "75")]
    {
        let src = arcly_testkit::testdata("h264_aac.flv");
        let url = rtmp_url(&server, key);
        let args = [
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-i",
            src.to_str().unwrap(),
            drop_track,
            "-c",
            "copy",
            "-f",
            "flv",
            &url,
        ];
        let publisher = spawn("ffmpeg", "ffmpeg", &args);
        wait_live(&server, key, 10).await;
        let first = get(&server, &format!("/live/live/{key}/index.m3u8?_HLS_msn=0")).await;
        assert_eq!(first.status, 200, "{key}: {}", first.text());
        let probes: Vec<_> = [format!("/live/live/{key}/index.m3u8"), format!("/live/live/{key}/ts/index.m3u8")]
            .into_iter()
            .map(|path| {
                let url = http_url(&server, &path);
                tokio::task::spawn_blocking(move || (path, ffprobe_hls(&url), ffmpeg_hls_errors(&url)))
            })
            .collect();
        let (status, stderr) = finish(publisher, 30).await;
        assert!(status.success(), "{key}: ffmpeg publish failed: {stderr}");
        for probe in probes {
            let (path, streams, errors) =
                tokio::time::timeout(Duration::from_secs(30), probe).await.expect("readers end").unwrap();
            assert_eq!(errors, "", "{path}: ffmpeg reported errors");
            let track = streams.iter().find(|s| s["codec_type"] == kind).unwrap_or_else(|| panic!("{path}: no {kind}"));
            assert!(streams.iter().all(|s| s["codec_type"] != other), "{path}: unexpected {other} track");
            assert_eq!(track["nb_read_packets"], count, "{path}: every {kind} frame");
        }
    }
    server.shutdown();
    server.wait().await.expect("clean shutdown");
}
