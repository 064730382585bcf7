//! The engine-driven service: publish through an engine, read playlists
//! through `Hls`, republish.

mod common;

use std::time::Duration;

use arcly_core::auth::Credentials;
use arcly_core::engine::{AppSpec, Engine};
use arcly_core::frame::MediaFrame;
use arcly_core::identity::StreamId;
use arcly_hls::{Hls, HlsConfig, HlsError, PlaylistKind, PlaylistRequest};
use common::{parse, tags, uris};
use tokio_util::sync::CancellationToken;

async fn publish(engine: &Engine, id: &StreamId, frames: &[MediaFrame]) -> arcly_core::inbound::PublishSession {
    let session = engine.begin_publish(id.clone(), "test", &Credentials::default()).await.unwrap();
    for chunk in frames.chunks(10) {
        session.publish_many(chunk.iter().cloned()).unwrap();
        // Let the packager task drain the bus.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_published_streams_and_republishes() {
    let engine = Engine::builder().application(AppSpec::new("live")).build();
    let hls = Hls::new(engine.clone(), HlsConfig { window: 100, ..HlsConfig::default() });
    let shutdown = CancellationToken::new();
    let runner = tokio::spawn({
        let hls = hls.clone();
        let shutdown = shutdown.clone();
        async move { hls.run(shutdown).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id: StreamId = "live/cam".parse().unwrap();
    let frames = common::synthetic(5, 25, 25, true, true);

    let session = publish(&engine, &id, &frames).await;
    let req = PlaylistRequest { msn: Some(1), part: None, skip: false };
    let text = hls.playlist(&id, PlaylistKind::LowLatency, req).await.unwrap();
    assert_eq!(uris(&parse(&text))[..2], ["seg0.m4s", "seg1.m4s"]);
    assert!(hls.multivariant(&id).await.unwrap().contains("avc1."));
    let first = uris(&parse(&text)).len();
    drop(session);

    // The stream ended: the playlist is completed and ends.
    let mut ended = String::new();
    for _ in 0..100 {
        ended = hls.playlist(&id, PlaylistKind::Ts, PlaylistRequest::default()).await.unwrap();
        if ended.contains("#EXT-X-ENDLIST") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ended.contains("#EXT-X-ENDLIST"), "{ended}");
    let before = uris(&parse(&ended)).len();
    assert!(before >= first);

    // A republish continues the same playlist after a discontinuity, with
    // increasing sequence numbers.
    let session = publish(&engine, &id, &frames).await;
    let req = PlaylistRequest { msn: Some(before as u64 + 1), part: None, skip: false };
    let text = hls.playlist(&id, PlaylistKind::Ts, req).await.unwrap();
    let lines = parse(&text);
    assert_eq!(tags(&lines, "EXT-X-DISCONTINUITY").len(), 1, "{text}");
    let segs = uris(&lines);
    assert_eq!(segs[0], "seg0.ts");
    for (i, s) in segs.iter().enumerate() {
        assert_eq!(*s, format!("seg{i}.ts"));
    }
    assert!(!text.contains("#EXT-X-ENDLIST"));
    drop(session);

    let unknown: StreamId = "live/nothing".parse().unwrap();
    assert_eq!(hls.init(&unknown).await, Err(HlsError::NotFound));
    shutdown.cancel();
    runner.await.unwrap();
}
