//! Blocking playlist reload, preload-hinted parts and delta updates through
//! the async API, under tokio's paused clock.

mod common;

use std::time::Duration;

use arcly_core::frame::MediaFrame;
use arcly_core::identity::StreamId;
use arcly_hls::{Hls, HlsConfig, HlsError, PlaylistKind, PlaylistRequest};
use common::{attrs, now, parse, tag, uris};

fn service(config: HlsConfig) -> (Hls, StreamId) {
    let engine = arcly_core::engine::Engine::builder().build();
    (Hls::new(engine, config), "live/test".parse().unwrap())
}

/// Feeds frames until `done` says stop, returning the rest.
fn feed_until(hls: &Hls, id: &StreamId, frames: &mut std::vec::IntoIter<MediaFrame>, n: usize) {
    let chunk: Vec<MediaFrame> = frames.by_ref().take(n).collect();
    hls.push_frames(id, &chunk, now());
}

#[tokio::test(start_paused = true)]
async fn blocking_reload_returns_when_the_segment_exists() {
    let (hls, id) = service(HlsConfig::default());
    let mut frames = common::synthetic(20, 25, 25, true, false).into_iter();
    // Config + 2.4 s of video: segment 0 complete, segment 1 open.
    feed_until(&hls, &id, &mut frames, 61);
    let text = hls.playlist(&id, PlaylistKind::LowLatency, PlaylistRequest::default()).await.unwrap();
    let lines = parse(&text);
    assert_eq!(uris(&lines), ["seg0.m4s"]);

    let waiter = tokio::spawn({
        let (hls, id) = (hls.clone(), id.clone());
        async move {
            let req = PlaylistRequest { msn: Some(1), part: None, skip: false };
            hls.playlist(&id, PlaylistKind::LowLatency, req).await
        }
    });
    // Frames up to (not including) the one that completes segment 1.
    let mut fed = 0;
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(!waiter.is_finished(), "returned before segment 1 existed");
        feed_until(&hls, &id, &mut frames, 1);
        fed += 1;
        // Segment 1 is complete once the keyframe at 4.0 s is released,
        // which takes the frame after it (its duration is then known).
        tokio::task::yield_now().await;
        if waiter.is_finished() {
            break;
        }
    }
    assert!(waiter.is_finished(), "blocking reload did not return");
    // Frames 60..=100 arrived: the keyframe at 4.0 s (frame 100) completes
    // segment 1 on arrival.
    assert_eq!(fed, 41);
    let text = waiter.await.unwrap().unwrap();
    assert!(uris(&parse(&text)).contains(&"seg1.m4s"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn blocking_reload_does_not_return_early() {
    let (hls, id) = service(HlsConfig::default());
    let mut frames = common::synthetic(20, 25, 25, true, false).into_iter();
    feed_until(&hls, &id, &mut frames, 61);
    let req = PlaylistRequest { msn: Some(1), part: None, skip: false };
    let mut waiter = Box::pin(hls.playlist(&id, PlaylistKind::LowLatency, req));
    // Feed 40 more frames (to 4.0 s, the keyframe not yet released): still
    // waiting.
    feed_until(&hls, &id, &mut frames, 40);
    assert!(tokio::time::timeout(Duration::from_millis(100), &mut waiter).await.is_err());
    // The next frame releases the keyframe: segment 1 exists.
    feed_until(&hls, &id, &mut frames, 1);
    let text = tokio::time::timeout(Duration::from_millis(1), &mut waiter).await.unwrap().unwrap();
    let lines = parse(&text);
    assert_eq!(uris(&lines), ["seg0.m4s", "seg1.m4s"]);
}

#[tokio::test(start_paused = true)]
async fn blocking_reload_on_a_part_and_timeouts() {
    let config = HlsConfig::default();
    let timeout = config.blocking_timeout;
    let (hls, id) = service(config);
    let mut frames = common::synthetic(20, 25, 25, true, false).into_iter();
    feed_until(&hls, &id, &mut frames, 61);
    let text = hls.playlist(&id, PlaylistKind::LowLatency, PlaylistRequest::default()).await.unwrap();
    let hint = attrs(tag(&parse(&text), "EXT-X-PRELOAD-HINT"))["URI"].clone();
    // Segment 1 started at frame 50; part 1.0 is frames 50..55, part 1.1
    // has frames 55..59 released and completes when frame 59 is released
    // (frame 60 arrives).
    assert_eq!(hint, "part1.1.m4s");
    let req = PlaylistRequest { msn: Some(1), part: Some(1), skip: false };
    let mut reload = Box::pin(hls.playlist(&id, PlaylistKind::LowLatency, req));
    let mut get = Box::pin(hls.part(&id, &hint));
    assert!(tokio::time::timeout(Duration::from_millis(10), &mut reload).await.is_err());
    assert!(tokio::time::timeout(Duration::from_millis(10), &mut get).await.is_err());
    feed_until(&hls, &id, &mut frames, 1);
    let part = tokio::time::timeout(Duration::from_millis(1), &mut get).await.unwrap().unwrap();
    assert_eq!(&part[0][4..8], b"moof");
    let text = tokio::time::timeout(Duration::from_millis(1), &mut reload).await.unwrap().unwrap();
    assert!(text.contains("URI=\"part1.1.m4s\""));

    // Nothing more arrives: a blocking reload times out.
    let start = tokio::time::Instant::now();
    let req = PlaylistRequest { msn: Some(2), part: None, skip: false };
    assert_eq!(hls.playlist(&id, PlaylistKind::LowLatency, req).await, Err(HlsError::Timeout));
    assert_eq!(start.elapsed(), timeout);
}

#[tokio::test(start_paused = true)]
async fn bad_requests_and_errors() {
    let (hls, id) = service(HlsConfig::default());
    let other: StreamId = "live/none".parse().unwrap();
    assert_eq!(hls.playlist(&other, PlaylistKind::Ts, PlaylistRequest::default()).await, Err(HlsError::NotFound));
    assert_eq!(HlsError::NotFound.status_code(), 404);
    let mut frames = common::synthetic(20, 25, 25, true, false).into_iter();
    feed_until(&hls, &id, &mut frames, 61);
    let req = PlaylistRequest { msn: None, part: Some(1), skip: false };
    let e = hls.playlist(&id, PlaylistKind::LowLatency, req).await.unwrap_err();
    assert!(matches!(e, HlsError::BadRequest(_)) && e.status_code() == 400);
    // The open segment is 1: msn 2 waits, msn 3 is too far.
    let req = PlaylistRequest { msn: Some(3), part: None, skip: false };
    assert!(matches!(hls.playlist(&id, PlaylistKind::LowLatency, req).await, Err(HlsError::BadRequest(_))));
    assert_eq!(hls.segment(&id, PlaylistKind::Ts, "seg7.ts").await, Err(HlsError::NotFound));
    assert_eq!(hls.part(&id, "nonsense").await, Err(HlsError::NotFound));
    assert_eq!(hls.segment(&id, PlaylistKind::Ts, "ts/seg0.ts").await.unwrap()[0][0], 0x47);
    let init = hls.init(&id).await.unwrap();
    assert_eq!(&init[4..8], b"ftyp");
    let mv = hls.multivariant(&id).await.unwrap();
    assert!(mv.contains("index.m3u8"));
    assert_eq!(HlsError::Gone.status_code(), 410);
    assert_eq!(HlsError::Timeout.status_code(), 503);
}

#[tokio::test(start_paused = true)]
async fn skip_gives_a_delta_update_that_parses() {
    let config = HlsConfig { segment_target: Duration::from_secs(1), window: 30, ..HlsConfig::default() };
    let (hls, id) = service(config);
    let frames = common::synthetic(20, 25, 25, true, true);
    hls.push_frames(&id, &frames, now());
    let req = PlaylistRequest { msn: None, part: None, skip: true };
    let text = hls.playlist(&id, PlaylistKind::LowLatency, req).await.unwrap();
    let lines = parse(&text);
    let skipped: u64 = attrs(tag(&lines, "EXT-X-SKIP"))["SKIPPED-SEGMENTS"].parse().unwrap();
    assert!(skipped > 0);
    assert_eq!(uris(&lines)[0], format!("seg{skipped}.m4s"));
    tag(&lines, "EXT-X-PRELOAD-HINT");
}
