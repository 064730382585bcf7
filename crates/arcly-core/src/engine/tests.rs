//! Engine behaviour: registration rules, authorization, session lifetimes,
//! the run loop and the idle reaper.

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::bus::{Batch, RecvError};
use crate::frame::{CodecId, FrameFlags, FrameType, MediaFrame, Timebase};
use crate::testing::{SyntheticStream, VecSource, collect};

fn engine() -> Engine {
    Engine::builder().max_publishers(2).application(AppSpec::new("live").gop_cache(120)).build()
}

fn id(s: &str) -> StreamId {
    s.parse().unwrap()
}

fn creds() -> Credentials {
    Credentials::default()
}

#[test]
fn engine_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Engine>();
    assert_send_sync::<StreamHandle>();
}

#[test]
fn builder_rejects_bad_and_duplicate_apps() {
    let e = Engine::builder().application(AppSpec::new("a/b")).try_build().unwrap_err();
    assert!(e.to_string().contains("application name"), "{e}");
    let e =
        Engine::builder().application(AppSpec::new("live")).application(AppSpec::new("live")).try_build().unwrap_err();
    assert!(e.to_string().contains("given twice"), "{e}");
}

#[tokio::test]
async fn publish_rules_give_clear_errors() {
    let engine = engine();
    let _a = engine.begin_publish(id("live/a"), "test", &creds()).await.unwrap();
    let dup = engine.begin_publish(id("live/a"), "test", &creds()).await.unwrap_err();
    assert!(matches!(dup, StreamError::AlreadyPublishing(_)), "{dup}");
    let unknown = engine.begin_publish(id("vod/a"), "test", &creds()).await.unwrap_err();
    assert_eq!(unknown.to_string(), "unknown application \"vod\"");
    let _b = engine.begin_publish(id("live/b"), "test", &creds()).await.unwrap();
    let full = engine.begin_publish(id("live/c"), "test", &creds()).await.unwrap_err();
    assert_eq!(full.to_string(), "limit reached: max publishers (2)");
    assert_eq!(engine.streams().len(), 2);
}

#[tokio::test]
async fn any_application_accepts_unlisted_names() {
    let engine = Engine::builder().any_application(AppSpec::new("*").gop_cache(5)).build();
    let s = engine.begin_publish(id("whatever/x"), "test", &creds()).await.unwrap();
    assert_eq!(s.handle().config().gop_cache_frames, 5);
    assert!(engine.list_apps().is_empty());
}

#[tokio::test]
async fn dropping_the_session_unregisters_and_ends_players() {
    let engine = engine();
    let mut events = engine.events().subscribe();
    let session = engine.begin_publish(id("live/a"), "test", &creds()).await.unwrap();
    for f in SyntheticStream::new(30, 30).take(5) {
        session.publish(f).unwrap();
    }
    let mut player = engine.play(&id("live/a"), "test", &creds()).await.unwrap();
    drop(session);
    assert!(engine.lookup(&id("live/a")).is_none());
    let got = collect(&mut player, 100).await.unwrap();
    assert_eq!(got.len(), 5, "buffered frames are still delivered");
    let err = player.recv().await.unwrap_err();
    assert_eq!(err.to_string(), "stream ended: publisher left");
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(matches!(&seen[0], StreamEvent::Published { protocol: "test", .. }));
    assert!(seen.iter().any(|e| matches!(e, StreamEvent::Unpublished { reason, .. } if reason == "publisher left")));
}

#[tokio::test]
async fn cancelled_or_panicking_publisher_task_unregisters() {
    let engine = engine();
    let ctx = IngestContext::new(engine.clone(), "test");
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            let _s = ctx.begin_publish("live", "cancelled", &Credentials::default()).await.unwrap();
            std::future::pending::<()>().await;
        }
    });
    while engine.lookup(&id("live/cancelled")).is_none() {
        tokio::task::yield_now().await;
    }
    task.abort();
    let _ = task.await;
    assert!(engine.lookup(&id("live/cancelled")).is_none());

    let mut events = engine.events().subscribe();
    let task = tokio::spawn(async move {
        let _s = ctx.begin_publish("live", "panics", &Credentials::default()).await.unwrap();
        panic!("bug in a protocol");
    });
    assert!(task.await.is_err());
    assert!(engine.lookup(&id("live/panics")).is_none());
    let reason = loop {
        if let StreamEvent::Unpublished { reason, .. } = events.recv().await.unwrap() {
            break reason;
        }
    };
    assert_eq!(reason, "publisher task panicked");
}

#[tokio::test]
async fn invalid_names_from_peers_are_refused() {
    let ctx = IngestContext::new(engine(), "test");
    let e = ctx.begin_publish("live", "../../etc/passwd", &creds()).await.unwrap_err();
    assert!(e.to_string().contains("stream key"), "{e}");
}

struct DenyPlay;

#[async_trait]
impl StreamAuthenticator for DenyPlay {
    async fn authorize(&self, req: AuthRequest<'_>) -> std::result::Result<(), Denial> {
        match (req.action, req.credentials.query_param("token")) {
            (Action::Publish, Some("secret")) => Ok(()),
            (Action::Publish, _) => Err("bad token".into()),
            (Action::Play, _) => Err(Denial::new("playback_off", "playback disabled")),
        }
    }
}

#[derive(Default)]
struct Collect(StdMutex<Vec<String>>);

impl AuditSink for Arc<Collect> {
    fn write(&self, event: &AuditEvent) -> std::io::Result<()> {
        let code = event.code.unwrap_or("-");
        self.0.lock().unwrap().push(format!("{} {code} {}", event.action.as_str(), event.reason));
        Ok(())
    }
}

#[tokio::test]
async fn authorization_refusals_are_errors_and_audited() {
    let audit = Arc::new(Collect::default());
    let engine = Engine::builder()
        .application(AppSpec::new("live"))
        .authenticator(Arc::new(DenyPlay))
        .audit_sink(Arc::new(audit.clone()), 64)
        .build();
    let bad =
        engine.begin_publish(id("live/a"), "test", &Credentials::with_query("test", "token=nope")).await.unwrap_err();
    assert_eq!(bad.to_string(), "not authorized to publish live/a: denied: bad token");
    let ok =
        engine.begin_publish(id("live/a"), "test", &Credentials::with_query("test", "token=secret")).await.unwrap();
    let play = engine.play(ok.id(), "test", &creds()).await.unwrap_err();
    assert!(matches!(play, StreamError::Unauthorized { action: "play", .. }));
    drop(ok);

    let shutdown = CancellationToken::new();
    shutdown.cancel();
    engine.run(shutdown).await.unwrap();
    let lines = audit.0.lock().unwrap().clone();
    assert_eq!(
        lines,
        [
            "refused denied bad token",
            "publish_start - ",
            "refused playback_off playback disabled",
            "publish_end - publisher left"
        ]
    );
}

#[tokio::test]
async fn play_unknown_stream_is_not_found_and_waiting_works() {
    let engine = engine();
    let e = engine.play(&id("live/x"), "test", &creds()).await.unwrap_err();
    assert_eq!(e.to_string(), "stream live/x is not being published");
    let waiter = {
        let engine = engine.clone();
        tokio::spawn(
            async move { engine.play_when_live(&id("live/x"), "test", &creds(), Duration::from_secs(10)).await },
        )
    };
    tokio::task::yield_now().await;
    let session = engine.begin_publish(id("live/x"), "test", &creds()).await.unwrap();
    session.publish(SyntheticStream::new(30, 30).next().unwrap()).unwrap();
    let mut player = waiter.await.unwrap().unwrap();
    assert!(player.recv().await.unwrap().is_config());
}

#[tokio::test(start_paused = true)]
async fn idle_reaper_closes_silent_streams() {
    let engine = Engine::builder().application(AppSpec::new("live")).idle_timeout(Some(Duration::from_secs(2))).build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.run(shutdown).await }
    });
    let session = engine.begin_publish(id("live/quiet"), "test", &creds()).await.unwrap();
    let mut frames = SyntheticStream::new(30, 30);
    // Active for 5 s: not reaped.
    for _ in 0..50 {
        session.publish(frames.next().unwrap()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(engine.lookup(&id("live/quiet")).is_some());
    // Silent: reaped within the timeout plus one check period.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert!(engine.lookup(&id("live/quiet")).is_none());
    let err = session.publish(frames.next().unwrap()).unwrap_err();
    assert!(matches!(err, StreamError::Closed(_)), "{err}");
    shutdown.cancel();
    run.await.unwrap().unwrap();
}

struct Listener {
    started: Arc<Notify>,
    fail: bool,
}

#[async_trait]
impl InboundProtocol for Listener {
    fn name(&self) -> &'static str {
        "fake"
    }

    async fn run(&self, ctx: IngestContext, shutdown: CancellationToken) -> Result<()> {
        let session = ctx.begin_publish("live", "from-listener", &Credentials::default()).await?;
        self.started.notify_one();
        if self.fail {
            return Err(StreamError::Config("listener broke".into()));
        }
        shutdown.cancelled().await;
        drop(session);
        Ok(())
    }
}

#[tokio::test]
async fn run_starts_protocols_and_shuts_down_gracefully() {
    let started = Arc::new(Notify::new());
    let engine = Engine::builder()
        .application(AppSpec::new("live"))
        .inbound(Arc::new(Listener { started: started.clone(), fail: false }))
        .build();
    let run = tokio::spawn({
        let engine = engine.clone();
        async move { engine.run(CancellationToken::new()).await }
    });
    started.notified().await;
    let handle = engine.lookup(&id("live/from-listener")).unwrap();
    engine.shutdown();
    run.await.unwrap().unwrap();
    assert!(handle.is_closed());
    assert!(engine.streams().is_empty());
    let refused = engine.begin_publish(id("live/late"), "test", &creds()).await.unwrap_err();
    assert!(refused.to_string().contains("shutting down"));
}

#[tokio::test]
async fn a_failing_protocol_ends_the_run_with_its_error() {
    let engine = Engine::builder()
        .application(AppSpec::new("live"))
        .inbound(Arc::new(Listener { started: Arc::new(Notify::new()), fail: true }))
        .build();
    let err = engine.run(CancellationToken::new()).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid configuration: listener broke");
}

#[tokio::test]
async fn pump_publishes_a_source_until_it_ends() {
    let engine = engine();
    let frames: Vec<_> = SyntheticStream::new(30, 10).take(25).collect();
    let mut events = engine.events().subscribe();
    let task = engine.pump(id("live/src"), Box::new(VecSource::new(frames))).unwrap();
    let mut player = engine.play(&id("live/src"), "test", &creds()).await.unwrap();
    task.await.unwrap().unwrap();
    let got = collect(&mut player, 100).await.unwrap();
    assert!(got[0].is_config());
    assert!(!got.is_empty());
    let reason = loop {
        if let StreamEvent::Unpublished { reason, .. } = events.recv().await.unwrap() {
            break reason;
        }
    };
    assert_eq!(reason, "source ended");
}

#[tokio::test]
async fn engines_are_independent() {
    let (a, b) = (engine(), engine());
    let _s = a.begin_publish(id("live/x"), "test", &creds()).await.unwrap();
    assert!(b.lookup(&id("live/x")).is_none());
    let _t = b.begin_publish(id("live/x"), "test", &creds()).await.unwrap();
}

#[tokio::test]
async fn health_reports_publisher_capacity() {
    let engine = engine();
    assert_eq!(engine.health().report().0, HealthStatus::Healthy);
    let _a = engine.begin_publish(id("live/a"), "test", &creds()).await.unwrap();
    let _b = engine.begin_publish(id("live/b"), "test", &creds()).await.unwrap();
    let (status, reports) = engine.health().report();
    assert_eq!(status, HealthStatus::Degraded);
    assert_eq!(reports[0].detail, "2 of 2");
}

#[tokio::test(start_paused = true)]
async fn a_returning_publisher_resumes_the_stream_for_players_that_stayed() {
    let engine = Engine::builder()
        .application(AppSpec::new("live").republish_grace(Duration::from_secs(5)))
        .idle_timeout(Some(Duration::from_secs(60)))
        .build();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let (engine, shutdown) = (engine.clone(), shutdown.clone());
        async move { engine.run(shutdown).await }
    });
    let first = engine.begin_publish(id("live/cam"), "test", &creds()).await.unwrap();
    assert!(!first.resumed());
    for f in SyntheticStream::new(30, 30).take(5) {
        first.publish(f).unwrap();
    }
    let mut player = engine.play(&id("live/cam"), "test", &creds()).await.unwrap();
    let mut batch = Batch::new();
    assert_eq!(player.recv_batch(&mut batch, 100).await.unwrap(), 5);

    drop(first);
    // The player is told the publisher left, and stays subscribed.
    assert_eq!(player.recv_batch(&mut batch, 100).await.unwrap(), 0);
    assert!(!player.publisher_live());
    assert!(!engine.streams()[0].publishing);
    // A second publisher on the same key takes the stream over.
    let second = engine.begin_publish(id("live/cam"), "test", &creds()).await.unwrap();
    assert!(second.resumed());
    assert_eq!(player.recv_batch(&mut batch, 100).await.unwrap(), 0, "told a publisher is back");
    assert!(player.publisher_live());
    for f in SyntheticStream::new(30, 30).take(3) {
        second.publish(f).unwrap();
    }
    batch.clear();
    assert_eq!(player.recv_batch(&mut batch, 100).await.unwrap(), 3);
    let first_new = batch.iter().next().unwrap();
    assert!(first_new.flags.contains(FrameFlags::DISCONTINUITY));
    // A third publisher on the live key is still refused.
    let dup = engine.begin_publish(id("live/cam"), "test", &creds()).await.unwrap_err();
    assert!(matches!(dup, StreamError::AlreadyPublishing(_)));

    // When no publisher comes back within the grace period, the stream ends.
    drop(second);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let err = loop {
        match player.recv_batch(&mut batch, 100).await {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(matches!(err, RecvError::Closed(_)), "{err}");
    assert!(engine.lookup(&id("live/cam")).is_none());
    shutdown.cancel();
    run.await.unwrap().unwrap();
}

/// Counts what [`Observer::timestamps_corrected`] and `publish_ended` saw.
#[derive(Default)]
struct TimestampObserver {
    jumps: StdMutex<Vec<i64>>,
    ended: StdMutex<Vec<String>>,
}

impl Observer for TimestampObserver {
    fn timestamps_corrected(&self, _stream: &StreamId, jump_ms: i64) {
        self.jumps.lock().unwrap().push(jump_ms);
    }

    fn publish_ended(&self, _stream: &StreamId, reason: &str) {
        self.ended.lock().unwrap().push(reason.to_owned());
    }
}

#[tokio::test]
async fn a_publisher_whose_clock_jumps_is_corrected_for_its_players() {
    let observer = Arc::new(TimestampObserver::default());
    // Room for every frame: the player reads only at the end.
    let app = AppSpec::new("live").lag_limit(4_000);
    let engine = Engine::builder().application(app).observer(observer.clone()).build();
    let session = engine.begin_publish(id("live/jump"), "test", &creds()).await.unwrap();
    let mut player = engine.play(&id("live/jump"), "test", &creds()).await.unwrap();
    // 10 s of 30 fps video with audio, then the same 3 s again (the clock
    // went back 10 s), then 3 s more three hours later.
    let frames: Vec<MediaFrame> = SyntheticStream::new(30, 30).with_audio(48_000).take(1_000).collect();
    let media: Vec<MediaFrame> = frames.iter().filter(|f| !f.is_config()).cloned().collect();
    let ten_s = media.iter().position(|f| f.dts_in(Timebase::MILLIS) >= 10_000).unwrap();
    let three_s = media.iter().position(|f| f.dts_in(Timebase::MILLIS) >= 3_000).unwrap();
    let later = media[..three_s].iter().map(|f| {
        let mut f = f.clone();
        let by = Timebase::MILLIS.rescale(3 * 3_600_000 + 20_000, f.timebase);
        f.dts += by;
        f.pts += by;
        f
    });
    let input: Vec<MediaFrame> = frames
        .iter()
        .filter(|f| f.is_config())
        .chain(&media[..ten_s])
        .chain(&media[..three_s])
        .cloned()
        .chain(later)
        .collect();
    for chunk in input.chunks(7) {
        session.publish_many(chunk.iter().cloned()).unwrap();
    }
    let got = tokio::time::timeout(Duration::from_secs(10), collect(&mut player, input.len())).await.unwrap().unwrap();
    assert_eq!(got.len(), input.len(), "no frame lost");
    for ty in [FrameType::Video, FrameType::Audio] {
        let dts: Vec<i64> =
            got.iter().filter(|f| f.frame_type() == ty && !f.is_config()).map(|f| f.dts_in(Timebase::MILLIS)).collect();
        assert!(dts.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] < 100), "{ty:?} timeline broken");
        assert!(*dts.last().unwrap() < 17_000, "{ty:?} ends at {}", dts.last().unwrap());
    }
    assert_eq!(got.iter().filter(|f| f.flags.contains(FrameFlags::DISCONTINUITY)).count(), 2);
    assert_eq!(session.handle().qos().timestamp_corrections, 2);
    let jumps = observer.jumps.lock().unwrap().clone();
    assert_eq!(jumps.len(), 2, "{jumps:?}");
    assert!(jumps[0] < -9_000 && jumps[1] > 3 * 3_600_000, "{jumps:?}");
}

#[tokio::test]
async fn a_publisher_with_hopeless_timestamps_is_ended_with_the_reason() {
    let observer = Arc::new(TimestampObserver::default());
    let policy = TimestampPolicy::default().max_corrections_per_second(3);
    let engine =
        Engine::builder().application(AppSpec::new("live").timestamps(policy)).observer(observer.clone()).build();
    let session = engine.begin_publish(id("live/garbage"), "test", &creds()).await.unwrap();
    let mut player = engine.play(&id("live/garbage"), "test", &creds()).await.unwrap();
    // Timestamps alternating between two clocks an hour apart.
    let frames = (0..20i64).map(|i| {
        let dts = i * 40 + if i % 2 == 0 { 0 } else { 3_600_000 };
        MediaFrame::new(CodecId::Aac, bytes::Bytes::from_static(b"aac")).with_timestamps(dts, dts, Timebase::MILLIS)
    });
    let err = session.publish_many(frames).unwrap_err();
    assert!(err.to_string().contains("timestamps unusable: more than 3 timestamp corrections"), "{err}");
    assert!(matches!(err, StreamError::Protocol(_)));
    // Nothing more goes on the bus from this publisher.
    let err = session.publish(MediaFrame::new(CodecId::Aac, bytes::Bytes::new())).unwrap_err();
    assert!(err.to_string().contains("timestamps unusable"), "{err}");
    assert_eq!(session.handle().qos().timestamp_corrections, 3);
    drop(session);
    // The frames before the refused one reached the player.
    assert_eq!(collect(&mut player, 100).await.unwrap().len(), 4);
    let ended = observer.ended.lock().unwrap().clone();
    assert_eq!(ended.len(), 1);
    assert!(ended[0].starts_with("timestamps unusable: "), "{ended:?}");
}
