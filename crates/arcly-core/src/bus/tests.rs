//! Bus properties: ordering, instant start, isolation of slow subscribers,
//! and bounded memory.

use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::frame::{FrameFlags, Timebase};

/// A frame whose pts is its sequence number, so order can be checked.
fn frame(seq: u64, kind: Kind, len: usize) -> MediaFrame {
    let (codec, flags) = match kind {
        Kind::Key => (CodecId::H264, FrameFlags::KEYFRAME),
        Kind::Delta => (CodecId::H264, FrameFlags::EMPTY),
        Kind::VideoConfig => (CodecId::H264, FrameFlags::CONFIG),
        Kind::Audio => (CodecId::Aac, FrameFlags::EMPTY),
        Kind::AudioConfig => (CodecId::Aac, FrameFlags::CONFIG),
        Kind::Meta => (CodecId::Metadata, FrameFlags::CONFIG),
    };
    MediaFrame::new(codec, Bytes::from(vec![0u8; len]))
        .with_timestamps(seq as i64, seq as i64, Timebase::MILLIS)
        .with_flags(flags)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Key,
    Delta,
    VideoConfig,
    Audio,
    AudioConfig,
    Meta,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::Key),
        30 => Just(Kind::Delta),
        1 => Just(Kind::VideoConfig),
        20 => Just(Kind::Audio),
        1 => Just(Kind::AudioConfig),
        1 => Just(Kind::Meta),
    ]
}

fn small_config() -> impl Strategy<Value = BusConfig> {
    (0usize..40, 1usize..4000, 1usize..60, 100usize..4000, 0u32..4).prop_map(
        |(gop_cache_frames, gop_cache_bytes, lag_limit_frames, lag_limit_bytes, max_consecutive_skips)| BusConfig {
            gop_cache_frames,
            gop_cache_bytes,
            lag_limit_frames,
            lag_limit_bytes,
            max_consecutive_skips,
        },
    )
}

fn id() -> StreamId {
    "live/test".parse().unwrap()
}

/// Checks one subscriber's deliveries against what was published.
///
/// `start` is the sequence number the subscriber joined at. Each published
/// frame from `start` on is delivered at most once, or counted as skipped;
/// media frames are delivered in publish order; the first media frame is a
/// sync point; the only frames from before `start` are the configuration
/// snapshot, delivered before any media frame.
fn check_deliveries(got: &[FrameRef], start: u64, end: u64, skipped: u64, evicted: bool) {
    let mut last_media: Option<u64> = None;
    let mut seen = std::collections::HashSet::new();
    for f in got {
        let seq = f.pts as u64;
        if seq < start {
            assert!(f.is_config() && last_media.is_none(), "frame {seq} from before the join point");
            continue;
        }
        assert!(seen.insert(seq), "frame {seq} delivered twice");
        if f.is_config() {
            continue;
        }
        if last_media.is_none() {
            assert!(
                f.is_keyframe() || f.frame_type() == FrameType::Audio,
                "first media frame {seq} is not a sync point"
            );
        }
        assert!(last_media.is_none_or(|l| seq > l), "frame {seq} after {last_media:?}");
        last_media = Some(seq);
    }
    if !evicted {
        assert_eq!(
            seen.len() as u64 + skipped,
            end - start,
            "every frame from {start} to {end} delivered or counted as skipped"
        );
    }
}

proptest! {
    // 256 cases by default; PROPTEST_CASES raises it for a longer hunt.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
    ))]

    /// For any frames, join point and polling pattern: config, then a sync
    /// point, then frames in order with no duplicate and no gap except
    /// counted skips.
    #[test]
    fn late_joiner_ordering(
        cfg in small_config(),
        kinds in prop::collection::vec((kind(), 1usize..200), 1..300),
        join_at in 0usize..300,
        polls in prop::collection::vec((0usize..40, 1usize..50), 1..40),
    ) {
        let (publisher, handle) = stream(id(), cfg, None);
        let join_at = join_at.min(kinds.len());
        let mut seq = 0u64;
        for &(k, len) in &kinds[..join_at] {
            publisher.publish(frame(seq, k, len));
            seq += 1;
        }
        let mut sub = handle.subscribe();
        let start = sub.cursor.next;
        // Configuration delivered before anything else is the snapshot.
        let mut got = Batch::new();
        let mut rest = kinds[join_at..].iter();
        let mut evicted = false;
        'outer: for &(publish_n, batch) in polls.iter().cycle().take(polls.len() * 4) {
            for &(k, len) in rest.by_ref().take(publish_n) {
                publisher.publish(frame(seq, k, len));
                seq += 1;
            }
            match sub.try_recv_batch(&mut got, batch) {
                Ok(_) => {}
                Err(RecvError::Evicted(_)) => { evicted = true; break 'outer; }
                Err(e) => panic!("{e}"),
            }
        }
        if !evicted {
            // Drain what is left.
            loop {
                match sub.try_recv_batch(&mut got, 1000) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(RecvError::Evicted(_)) => { evicted = true; break; }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        check_deliveries(&got.to_refs(), start, seq.max(start), sub.skipped_frames(), evicted);
        // Delivery accounting (run bytes from the chunks' prefix sums)
        // matches what was appended, whatever the skips.
        let bytes: u64 = got.iter().map(|f| f.payload.len() as u64).sum();
        prop_assert_eq!((sub.cursor.delivered_frames, sub.cursor.delivered_bytes), (got.len() as u64, bytes));
        let q = handle.qos();
        prop_assert_eq!((q.frames_out, q.bytes_out), (got.len() as u64, bytes));
        drop(sub);
        let q = handle.qos();
        prop_assert_eq!((q.frames_out, q.bytes_out, q.max_lag_frames), (got.len() as u64, bytes, 0));
    }

    /// A subscriber that never polls changes nothing for one that does, and
    /// publishing never depends on it.
    #[test]
    fn stalled_subscriber_is_invisible(
        cfg in small_config(),
        kinds in prop::collection::vec((kind(), 1usize..200), 1..300),
        batch in 1usize..20,
    ) {
        let run = |with_stalled: bool| {
            let (publisher, handle) = stream(id(), cfg.clone(), None);
            let _stalled = with_stalled.then(|| handle.subscribe());
            let mut fast = handle.subscribe();
            let mut got = Batch::new();
            for (seq, &(k, len)) in kinds.iter().enumerate() {
                assert!(publisher.publish(frame(seq as u64, k, len)));
                fast.try_recv_batch(&mut got, batch).unwrap();
            }
            got.iter().map(|f| (f.pts, f.flags.bits())).collect::<Vec<_>>()
        };
        prop_assert_eq!(run(false), run(true));
    }

    /// With a stalled subscriber, the buffer stays within its bounds (one
    /// oversized frame excepted: the newest frame is always held).
    #[test]
    fn memory_bounded_with_stalled_subscriber(
        cfg in small_config(),
        kinds in prop::collection::vec((kind(), 1usize..500), 1..400),
    ) {
        let (publisher, handle) = stream(id(), cfg.clone(), None);
        let _stalled = handle.subscribe();
        let max_frames = cfg.gop_cache_frames.max(cfg.lag_limit_frames).max(1);
        let max_bytes = cfg.gop_cache_bytes.max(cfg.lag_limit_bytes);
        for (seq, &(k, len)) in kinds.iter().enumerate() {
            publisher.publish(frame(seq as u64, k, len));
            let (frames, bytes) = handle.buffered();
            prop_assert!(frames <= max_frames);
            prop_assert!(bytes <= max_bytes || frames == 1, "{bytes} > {max_bytes} with {frames} frames");
        }
    }
}

#[test]
fn joiner_gets_snapshot_config_in_player_order() {
    let (publisher, handle) = stream(id(), BusConfig::default(), None);
    publisher.publish(frame(0, Kind::AudioConfig, 2));
    publisher.publish(frame(1, Kind::VideoConfig, 2));
    publisher.publish(frame(2, Kind::Meta, 2));
    publisher.publish(frame(3, Kind::Key, 2));
    publisher.publish(frame(4, Kind::Audio, 2));
    // A config change after the keyframe arrives in order, not first.
    publisher.publish(frame(5, Kind::VideoConfig, 2));
    let mut sub = handle.subscribe();
    let mut got = Batch::new();
    sub.try_recv_batch(&mut got, 100).unwrap();
    let seqs: Vec<i64> = got.iter().map(|f| f.pts).collect();
    assert_eq!(seqs, [2, 1, 0, 3, 4, 5]);
}

#[test]
fn no_gop_cache_waits_for_next_keyframe() {
    let cfg = BusConfig { gop_cache_frames: 0, ..BusConfig::default() };
    let (publisher, handle) = stream(id(), cfg, None);
    publisher.publish(frame(0, Kind::VideoConfig, 2));
    publisher.publish(frame(1, Kind::Key, 2));
    let mut sub = handle.subscribe();
    publisher.publish(frame(2, Kind::Delta, 2));
    publisher.publish(frame(3, Kind::Key, 2));
    let mut got = Batch::new();
    sub.try_recv_batch(&mut got, 100).unwrap();
    let seqs: Vec<i64> = got.iter().map(|f| f.pts).collect();
    assert_eq!(seqs, [0, 3]);
}

#[test]
fn payload_is_shared_not_copied() {
    let (publisher, handle) = stream(id(), BusConfig::default(), None);
    let mut subs: Vec<_> = (0..3).map(|_| handle.subscribe()).collect();
    let payload = Bytes::from(vec![7u8; 1000]);
    let ptr = payload.as_ptr();
    publisher.publish(MediaFrame::new(CodecId::H264, payload).with_flags(FrameFlags::KEYFRAME));
    let mut got = Batch::new();
    for s in &mut subs {
        s.try_recv_batch(&mut got, 10).unwrap();
    }
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|f| f.payload.as_ptr() == ptr));
    // The three deliveries are the same frame in memory, not copies of it.
    let frames: Vec<*const MediaFrame> = got.iter().map(|f| f as *const _).collect();
    assert!(frames.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn eviction_is_counted_and_reported() {
    let events = EventBus::new(64);
    let mut rx = events.subscribe();
    let cfg = BusConfig { gop_cache_frames: 4, lag_limit_frames: 4, max_consecutive_skips: 1, ..BusConfig::default() };
    let (publisher, handle) = stream(id(), cfg, Some(events));
    let mut sub = handle.subscribe();
    let mut got = Batch::new();
    let mut seq = 0;
    let mut result = Ok(0);
    for _ in 0..3 {
        for _ in 0..10 {
            publisher.publish(frame(seq, Kind::Delta, 1));
            seq += 1;
        }
        result = sub.try_recv_batch(&mut got, 1);
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(result, Err(RecvError::Evicted(ref r)) if r.contains("2 times")), "{result:?}");
    assert_eq!(handle.qos().evictions, 1);
    assert!(handle.qos().skips >= 1);
    let mut kinds = Vec::new();
    while let Ok(e) = rx.try_recv() {
        kinds.push(match e {
            StreamEvent::SubscriberJoined { .. } => "joined",
            StreamEvent::SubscriberSkipped { .. } => "skipped",
            StreamEvent::SubscriberEvicted { .. } => "evicted",
            _ => "other",
        });
    }
    assert_eq!(kinds, ["joined", "skipped", "evicted"]);
    drop(sub);
    assert_eq!(handle.subscriber_count(), 0);
}

#[test]
fn qos_counts_deliveries_and_the_worst_lag() {
    let (publisher, handle) = stream(id(), BusConfig::default(), None);
    publisher.publish(frame(0, Kind::VideoConfig, 10));
    for n in 1..=10 {
        publisher.publish(frame(n * 40, if n == 1 { Kind::Key } else { Kind::Delta }, 100));
    }
    let (mut fast, mut slow) = (handle.subscribe(), handle.subscribe());
    let mut batch = Batch::new();
    // The config and the cached GOP: 1 + 10 frames, 10 + 1000 bytes.
    assert_eq!(fast.try_recv_batch(&mut batch, 100).unwrap(), 11);
    assert_eq!(slow.try_recv_batch(&mut Batch::new(), 3).unwrap(), 3);
    for n in 11..=20 {
        publisher.publish(frame(n * 40, Kind::Delta, 100));
    }
    assert_eq!(fast.try_recv_batch(&mut batch, 100).unwrap(), 10);
    let q = handle.qos();
    assert_eq!((q.frames_out, q.bytes_out), (21 + 3, 2010 + 210));
    // The slow one's next frame is frame 3 (pts 120); the newest is 800.
    assert_eq!((q.max_lag_frames, q.max_lag_ms), (18, 680));
    // A subscriber that leaves keeps its deliveries counted, once.
    drop(slow);
    let q = handle.qos();
    assert_eq!((q.frames_out, q.bytes_out, q.max_lag_frames, q.max_lag_ms), (24, 2220, 0, 0));
    drop(fast);
    assert_eq!(handle.qos().frames_out, 24);
}

#[test]
fn qos_measures_rates_from_media_time() {
    let (publisher, handle) = stream(id(), BusConfig::default(), None);
    // 2 s of 25 fps video, 1000 bytes per frame, keyframe every 25 frames.
    for n in 0..50u64 {
        let f = MediaFrame::new(CodecId::H264, Bytes::from(vec![0u8; 1000])).with_timestamps(
            n as i64 * 40,
            n as i64 * 40,
            Timebase::MILLIS,
        );
        let f = if n % 25 == 0 { f.with_flags(FrameFlags::KEYFRAME) } else { f };
        publisher.publish(f);
    }
    let q = handle.qos();
    assert_eq!(q.frames_in, 50);
    assert_eq!(q.keyframe_interval_ms, Some(1000));
    assert!((q.video_fps - 25.0).abs() < 0.01, "{}", q.video_fps);
    // 50 frames over 1960 ms of timestamps: about 200 kbit/s.
    assert!((195_000..=210_000).contains(&q.bitrate_bps), "{}", q.bitrate_bps);
}

#[tokio::test]
async fn recv_wakes_on_publish_and_ends_on_close() {
    let (publisher, handle) = stream(id(), BusConfig::default(), None);
    let mut sub = handle.subscribe();
    let reader = tokio::spawn(async move {
        let mut got = Batch::new();
        loop {
            match sub.recv_batch(&mut got, 16).await {
                Ok(_) => {}
                Err(RecvError::Closed(reason)) => return (got.len(), reason),
                Err(e) => panic!("{e}"),
            }
        }
    });
    tokio::task::yield_now().await;
    publisher.publish(frame(0, Kind::Key, 10));
    publisher.publish(frame(1, Kind::Delta, 10));
    drop(publisher);
    let (n, reason) = tokio::time::timeout(Duration::from_secs(5), reader).await.unwrap().unwrap();
    assert_eq!(n, 2);
    assert_eq!(reason, "publisher left");
    assert!(handle.is_closed());
}

/// Stress: one publisher thread and many subscriber tasks on a multi-thread
/// runtime. Every subscriber sees frames in order; every frame is delivered
/// or counted as skipped; the publisher never blocks on readers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stress_concurrent_publish_and_drain() {
    const FRAMES: u64 = 20_000;
    let cfg = BusConfig {
        gop_cache_frames: 64,
        lag_limit_frames: 64,
        max_consecutive_skips: u32::MAX,
        ..BusConfig::default()
    };
    let (publisher, handle) = stream(id(), cfg, None);
    let mut tasks = Vec::new();
    for i in 0..64 {
        let mut sub = handle.subscribe();
        tasks.push(tokio::spawn(async move {
            let mut got = Batch::new();
            let mut last = None;
            let mut delivered = 0u64;
            let start = sub.cursor.next;
            loop {
                got.clear();
                match sub.recv_batch(&mut got, 1 + i % 32).await {
                    Ok(_) => {}
                    Err(RecvError::Closed(_)) => break,
                    Err(e) => panic!("{e}"),
                }
                for f in &got {
                    let seq = f.pts as u64;
                    if f.is_config() && last.is_some_and(|l| seq <= l) {
                        continue;
                    }
                    assert!(last.is_none_or(|l| seq > l), "order: {seq} after {last:?}");
                    last = Some(seq);
                    delivered += 1;
                }
                if i % 7 == 0 {
                    // Some readers are slow.
                    tokio::task::yield_now().await;
                }
            }
            assert_eq!(delivered + sub.skipped_frames(), FRAMES - start);
        }));
    }
    let publisher = std::thread::spawn(move || {
        for seq in 0..FRAMES {
            let kind = if seq % 30 == 0 { Kind::Key } else { Kind::Delta };
            publisher.publish(frame(seq, kind, 64));
            if seq % 1000 == 0 {
                std::thread::yield_now();
            }
        }
    });
    publisher.join().unwrap();
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t).await.unwrap().unwrap();
    }
    assert_eq!(handle.subscriber_count(), 0);
}

#[test]
fn detach_keeps_subscribers_and_attach_resumes() {
    let (publisher, handle) = stream(id(), BusConfig::default(), None);
    publisher.publish(frame(0, Kind::Key, 4));
    let mut sub = handle.subscribe();
    let mut got = Batch::new();
    assert_eq!(sub.try_recv_batch(&mut got, 10).unwrap(), 1);
    assert!(handle.attach().is_none(), "a publisher is attached");
    let handle = publisher.detach();
    assert!(!handle.is_closed() && !handle.is_publishing() && !sub.publisher_live());
    assert_eq!(sub.try_recv_batch(&mut got, 10).unwrap(), 0, "nothing to read, not closed");
    let second = handle.attach().expect("free to attach");
    assert!(handle.attach().is_none(), "one publisher at a time");
    second.publish(frame(1, Kind::Key, 4).with_flags(FrameFlags::DISCONTINUITY));
    assert_eq!(sub.try_recv_batch(&mut got, 10).unwrap(), 1);
    // A joiner now starts at the new publisher's keyframe, not the old GOP.
    let mut late = handle.subscribe();
    let mut first = Batch::new();
    late.try_recv_batch(&mut first, 10).unwrap();
    assert_eq!(first.iter().map(|f| f.pts).collect::<Vec<_>>(), [1]);
    drop(second);
    assert!(handle.is_closed(), "dropping an attached publisher ends the stream");
    assert!(handle.attach().is_none());
}
