//! The recorder service on an engine: which streams it records, what a
//! failing or slow storage does to the recording (and not to the live
//! stream).

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use arcly_core::auth::Credentials;
use arcly_core::bus::Batch;
use arcly_core::engine::{AppSpec, Engine};
use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
use arcly_core::health::HealthStatus;
use arcly_core::inbound::PublishSession;
use arcly_core::testing::MemoryStorage;
use arcly_core::traits::StorageBackend;
use arcly_mux::ts::{DemuxEvent, TsDemuxer};
use arcly_record::{HEALTH_CHECK, RecordConfig, Recorder};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

/// The avcC of the H.264 test stream.
fn avcc() -> MediaFrame {
    let data = arcly_testkit::read_testdata("h264_aac.ts");
    let mut demux = TsDemuxer::new();
    demux.push(&data);
    demux.flush();
    std::iter::from_fn(|| demux.poll())
        .filter_map(|e| match e {
            Ok(DemuxEvent::Frame(f)) if f.is_config() && f.codec == CodecId::H264 => Some(f),
            _ => None,
        })
        .next()
        .unwrap()
}

/// Video frame `i` at 25 fps, a keyframe every 25 (1 s GOPs).
fn video(i: i64) -> MediaFrame {
    let dts = i * 3_600;
    let key = i % 25 == 0;
    let payload: &'static [u8] = if key { &[0, 0, 0, 2, 0x65, 0x88] } else { &[0, 0, 0, 2, 0x41, 0x9a] };
    let f = MediaFrame::new(CodecId::H264, Bytes::from_static(payload)).with_timestamps(dts, dts, Timebase::MPEG);
    if key { f.with_flags(FrameFlags::KEYFRAME) } else { f }
}

fn engine(lag_frames: usize) -> Engine {
    Engine::builder()
        .application(AppSpec::new("live").lag_limit(lag_frames).gop_cache(lag_frames.min(100)))
        .idle_timeout(None)
        .build()
}

fn start(engine: &Engine, storage: Arc<MemoryStorage>, config: RecordConfig) -> (Recorder, CancellationToken) {
    let recorder = Recorder::new(engine.clone(), storage, config);
    let token = CancellationToken::new();
    tokio::spawn({
        let (recorder, token) = (recorder.clone(), token.clone());
        async move { recorder.run(token).await }
    });
    (recorder, token)
}

async fn publish(engine: &Engine, id: &str) -> PublishSession {
    let session = engine.begin_publish(id.parse().unwrap(), "test", &Credentials::default()).await.unwrap();
    session.publish(avcc()).unwrap();
    session
}

/// Publishes frames `from..to`, paced at `per_frame`.
async fn frames(session: &PublishSession, from: i64, to: i64, per_frame: Duration) {
    for i in from..to {
        session.publish(video(i)).unwrap();
        tokio::time::sleep(per_frame).await;
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn config() -> RecordConfig {
    RecordConfig {
        max_duration: Duration::from_secs(1),
        retry_backoff: Duration::from_millis(100),
        ..RecordConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_selected_streams_and_ends_their_playlists() {
    let engine = engine(600);
    let storage = Arc::new(MemoryStorage::default());
    let (recorder, token) = start(&engine, storage.clone(), RecordConfig { keys: vec!["cam-*".into()], ..config() });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cam = publish(&engine, "live/cam-1").await;
    let other = publish(&engine, "live/other").await;
    frames(&cam, 0, 60, Duration::from_millis(1)).await;
    frames(&other, 0, 60, Duration::from_millis(1)).await;
    drop((cam, other));
    eventually("the recording ends", || recorder.stats().recordings_active == 0 && recorder.stats().files_closed == 3)
        .await;
    assert!(storage.list("live/other").await.unwrap().is_empty(), "not selected, not recorded");
    let objects = storage.list("live/cam-1/").await.unwrap();
    // 2.4 s in files of at least 1 s at 1 s GOPs: 1 + 1 + 0.4 s.
    assert_eq!(objects.len(), 4, "{objects:?}");
    let playlist = String::from_utf8(storage.get(&objects[0]).await.unwrap().unwrap().to_vec()).unwrap();
    assert!(objects[0].ends_with(".m3u8") && playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
    assert_eq!(playlist.matches("#EXTINF:").count(), 3, "{playlist}");
    let stats = recorder.stats();
    assert_eq!((stats.recordings_started, stats.write_errors, stats.gaps), (1, 0, 0));
    assert_eq!(recorder.health().status, HealthStatus::Healthy);
    token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_storage_stops_the_recording_not_the_stream_and_recovers() {
    let engine = engine(600);
    let storage = Arc::new(MemoryStorage::default());
    let (recorder, token) = start(&engine, storage.clone(), config());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let session = publish(&engine, "live/a").await;
    let mut player = engine.play(session.id(), "test", &Credentials::default()).await.unwrap();
    frames(&session, 0, 30, Duration::from_millis(2)).await;
    eventually("recording", || recorder.stats().files_opened == 2).await;

    storage.fail_writes(Some(ErrorKind::StorageFull));
    frames(&session, 30, 80, Duration::from_millis(2)).await;
    eventually("the error is seen", || recorder.stats().write_errors >= 1).await;
    let health = recorder.health();
    assert_eq!(health.status, HealthStatus::Degraded);
    assert!(health.detail.contains("live/a") && health.detail.contains("injected failure"), "{}", health.detail);
    let (status, reports) = engine.health().report();
    assert_eq!(status, HealthStatus::Degraded);
    assert!(reports.iter().any(|r| r.name == HEALTH_CHECK && r.status == HealthStatus::Degraded));
    assert_eq!(recorder.failures().len(), 1);

    // The player got every frame, before and after the failure.
    let mut batch = Batch::new();
    let mut got = 0;
    while got < 81 {
        got += tokio::time::timeout(Duration::from_secs(5), player.recv_batch(&mut batch, 256)).await.unwrap().unwrap();
    }
    assert_eq!(batch.iter().filter(|f| !f.is_config()).count(), 80);
    assert_eq!(player.skips(), 0);

    // The storage comes back: a new recording starts at the next keyframe
    // after the backoff, and health is back.
    storage.fail_writes(None);
    let mut i = 80;
    while recorder.health().status != HealthStatus::Healthy {
        assert!(i < 1_000, "the recording did not resume: {:?}", recorder.stats());
        frames(&session, i, i + 5, Duration::from_millis(2)).await;
        i += 5;
    }
    let stats = recorder.stats();
    assert_eq!(stats.recordings_started, 2, "{stats:?}");
    assert!(recorder.failures().is_empty());
    assert!(recorder.health().detail.contains("last error: live/a"), "{}", recorder.health().detail);
    token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_storage_makes_gaps_not_a_slow_publisher() {
    // A small lag window: the recorder, stuck on a slow disk, falls out of
    // it like a slow player.
    let engine = engine(30);
    let storage = Arc::new(MemoryStorage::default());
    let (recorder, token) = start(&engine, storage.clone(), config());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let session = publish(&engine, "live/slow").await;
    let mut player = engine.play(session.id(), "test", &Credentials::default()).await.unwrap();
    storage.write_delay(Duration::from_millis(300));
    let started = std::time::Instant::now();
    for i in 0..200 {
        session.publish(video(i)).unwrap();
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            // The player keeps up.
            let mut b = Batch::new();
            while player.try_recv_batch(&mut b, 256).unwrap() > 0 {}
        }
    }
    // Publishing did not wait for the disk (200 frames, 20 pauses of 10 ms).
    assert!(started.elapsed() < Duration::from_secs(2), "publishing took {:?}", started.elapsed());
    eventually("a gap is counted", || recorder.stats().gaps >= 1).await;
    assert_eq!(player.skips(), 0, "the player was not affected");
    storage.write_delay(Duration::ZERO);
    frames(&session, 200, 260, Duration::from_millis(2)).await;
    drop(session);
    eventually("the recording ends", || recorder.stats().recordings_active == 0).await;
    let objects = storage.list("live/slow/").await.unwrap();
    let playlist = String::from_utf8(storage.get(&objects[0]).await.unwrap().unwrap().to_vec()).unwrap();
    assert!(playlist.contains("#EXT-X-DISCONTINUITY"), "{playlist}");
    token.cancel();
}

#[tokio::test]
async fn a_sink_that_failed_lists_what_it_wrote_and_ends_its_playlist() {
    use arcly_core::traits::MediaSink;
    use arcly_record::RecordingSink;

    let storage = Arc::new(MemoryStorage::default());
    let mut sink = RecordingSink::new(storage.clone(), "live/f".parse().unwrap(), RecordConfig::default());
    sink.write_frame(&avcc()).await.unwrap();
    for i in 0..60 {
        sink.write_frame(&video(i)).await.unwrap();
    }
    // Two GOPs appended: frames 0..50.
    let file = sink.current_file().unwrap().to_owned();
    storage.fail_writes(Some(ErrorKind::PermissionDenied));
    let mut error = None;
    for i in 60..80 {
        if let Err(e) = sink.write_frame(&video(i)).await {
            error = Some(e);
            break;
        }
    }
    let error = error.expect("the append at the next keyframe fails");
    assert!(
        matches!(&error, arcly_core::StreamError::Io(e) if e.kind() == ErrorKind::PermissionDenied),
        "the error keeps its kind: {error}"
    );
    assert!(error.to_string().contains(&file), "the error names the file: {error}");
    // Once failed, it refuses more frames.
    assert!(sink.write_frame(&video(80)).await.is_err());
    storage.fail_writes(None);
    sink.abandon().await;
    let playlist = storage.get(&sink.playlist_path().unwrap()).await.unwrap().unwrap();
    let playlist = std::str::from_utf8(&playlist).unwrap();
    let name = file.rsplit('/').next().unwrap();
    assert!(playlist.contains("#EXTINF:2.00000,") && playlist.contains(name), "{playlist}");
    assert!(playlist.ends_with("#EXT-X-ENDLIST\n"), "{playlist}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_published_again_while_its_recording_ends_is_recorded_too() {
    let engine = engine(600);
    let storage = Arc::new(MemoryStorage::default());
    let (recorder, token) = start(&engine, storage.clone(), config());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let first = publish(&engine, "live/again").await;
    frames(&first, 0, 30, Duration::from_millis(1)).await;
    eventually("recording", || recorder.stats().files_opened == 2).await;
    // Ending the recording takes a while (a slow disk); the publisher
    // comes back meanwhile.
    storage.write_delay(Duration::from_millis(300));
    drop(first);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = publish(&engine, "live/again").await;
    storage.write_delay(Duration::ZERO);
    frames(&second, 0, 60, Duration::from_millis(2)).await;
    drop(second);
    eventually("two recordings", || {
        let s = recorder.stats();
        s.recordings_started == 2 && s.recordings_active == 0
    })
    .await;
    let playlists: Vec<String> =
        storage.list("live/again/").await.unwrap().into_iter().filter(|p| p.ends_with(".m3u8")).collect();
    assert_eq!(playlists.len(), 2, "{playlists:?}");
    token.cancel();
}
