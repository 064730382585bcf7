use std::sync::Arc;

use arcly_core::auth::{Credentials, codes};
use arcly_core::bus::Batch;
use arcly_core::engine::AppSpec;
use arcly_core::testing::SyntheticStream;

use super::*;

fn id(s: &str) -> StreamId {
    s.parse().unwrap()
}

fn peer() -> SocketAddr {
    "192.0.2.1:4000".parse().unwrap()
}

fn value(m: &PrometheusObserver, name: &str, labels: &str) -> Option<f64> {
    sample(&m.encode(), name, labels)
}

#[test]
fn lifecycle_hooks_move_counters_and_gauges() {
    let m = PrometheusObserver::new();
    let demo = id("live/demo");
    m.publish_started(&demo, "rtmp", Some(peer()));
    m.play_started(&demo, "rtmp");
    m.play_started(&demo, "http");
    m.play_started(&demo, "http");
    let stream = r#"app="live",stream="demo""#;
    assert_eq!(value(&m, "arcly_publishers", stream), Some(1.0));
    assert_eq!(value(&m, "arcly_players", r#"app="live",stream="demo",protocol="http""#), Some(2.0));
    assert_eq!(value(&m, "arcly_players", r#"app="live",stream="demo",protocol="rtmp""#), Some(1.0));
    assert_eq!(value(&m, "arcly_publishes_total", r#"protocol="rtmp""#), Some(1.0));
    assert_eq!(value(&m, "arcly_plays_total", r#"protocol="http""#), Some(2.0));

    m.play_ended(&demo, "http");
    assert_eq!(value(&m, "arcly_players", r#"app="live",stream="demo",protocol="http""#), Some(1.0));
    m.publish_ended(&demo, "publisher left");
    assert_eq!(value(&m, "arcly_publishers", stream), Some(0.0), "players remain: the stream's series stay");
    m.play_ended(&demo, "http");
    m.play_ended(&demo, "rtmp");
    let text = m.encode();
    assert!(!text.contains("stream=\"demo\""), "nothing left: the stream's series are gone\n{text}");
    // Totals stay.
    assert_eq!(sample(&text, "arcly_plays_total", r#"protocol="http""#), Some(2.0));
}

#[test]
fn refusals_are_counted_by_action_and_code_with_bounded_labels() {
    let m = PrometheusObserver::new();
    let demo = id("live/demo");
    m.request_refused(&demo, "publish", &Denial::new(codes::EXPIRED, "token expired 40 s ago"));
    m.request_refused(&demo, "publish", &Denial::new(codes::EXPIRED, "token expired 2 s ago"));
    m.request_refused(&demo, "play", &"no playback from 192.0.2.1".into());
    m.request_refused(&demo, "publish", &Denial::new("Weird Code!", "free text"));
    let text = m.encode();
    assert_eq!(sample(&text, "arcly_requests_refused_total", r#"action="publish",code="expired""#), Some(2.0));
    assert_eq!(sample(&text, "arcly_requests_refused_total", r#"action="play",code="denied""#), Some(1.0));
    assert_eq!(sample(&text, "arcly_requests_refused_total", r#"action="publish",code="other""#), Some(1.0));
    // Messages and addresses never become labels.
    assert!(!text.contains("192.0.2.1") && !text.contains("ago") && !text.contains("free text"), "{text}");
}

#[test]
fn connections_by_protocol_and_state() {
    let m = PrometheusObserver::new();
    m.register_protocol("http");
    for _ in 0..3 {
        m.connection_opened("rtmp", peer());
    }
    m.connection_closed("rtmp", peer(), CloseReason::Timeout, "no handshake within 10s");
    m.connection_refused("rtmp", peer(), RefuseReason::PerIpLimit);
    let text = m.encode();
    assert_eq!(sample(&text, "arcly_connections_opened_total", r#"protocol="rtmp""#), Some(3.0));
    assert_eq!(sample(&text, "arcly_connections_open", r#"protocol="rtmp""#), Some(2.0));
    assert_eq!(sample(&text, "arcly_connections_closed_total", r#"protocol="rtmp",reason="timeout""#), Some(1.0));
    assert_eq!(sample(&text, "arcly_connections_refused_total", r#"protocol="rtmp",reason="per_ip_limit""#), Some(1.0));
    // Registered protocols are listed at zero.
    assert_eq!(sample(&text, "arcly_connections_open", r#"protocol="http""#), Some(0.0));
    assert_eq!(sample(&text, "arcly_connections_closed_total", r#"protocol="http",reason="io""#), Some(0.0));
    assert_eq!(sample(&text, "arcly_first_frame_seconds_count", r#"protocol="http""#), Some(0.0));
    assert!(!text.contains("192.0.2.1"), "no peer address in any label");
}

#[test]
fn first_frame_histogram_and_timestamp_corrections() {
    let m = PrometheusObserver::new();
    let demo = id("live/demo");
    m.first_frame(&demo, "rtmp", Duration::from_millis(30));
    m.first_frame(&demo, "rtmp", Duration::from_millis(700));
    m.first_frame(&demo, "http", Duration::from_millis(3));
    m.timestamps_corrected(&demo, -5000);
    let text = m.encode();
    let rtmp = |suffix: &str, le: Option<&str>| {
        let labels = match le {
            Some(le) => format!(r#"protocol="rtmp",le="{le}""#),
            None => r#"protocol="rtmp""#.to_owned(),
        };
        sample(&text, &format!("arcly_first_frame_seconds{suffix}"), &labels)
    };
    assert_eq!(rtmp("_count", None), Some(2.0));
    assert_eq!(rtmp("_bucket", Some("0.025")), Some(0.0));
    assert_eq!(rtmp("_bucket", Some("0.05")), Some(1.0));
    assert_eq!(rtmp("_bucket", Some("1")), Some(2.0));
    assert!((rtmp("_sum", None).unwrap() - 0.73).abs() < 1e-9);
    assert_eq!(sample(&text, "arcly_first_frame_seconds_count", r#"protocol="http""#), Some(1.0));
    assert_eq!(sample(&text, "arcly_timestamp_corrections_total", ""), Some(1.0));
}

#[tokio::test]
async fn collector_reads_streams_at_scrape_time() {
    let metrics = Arc::new(PrometheusObserver::new());
    let engine = Engine::builder().application(AppSpec::new("live")).observer(metrics.clone()).build();
    assert_eq!(value(&metrics, "arcly_streams", ""), Some(0.0), "not watching yet: nothing to read");
    metrics.watch(&engine);

    let creds = Credentials::default();
    let publisher = engine.begin_publish(id("live/demo"), "rtmp", &creds).await.unwrap();
    let mut frames = SyntheticStream::new(25, 25);
    publisher.publish_many(frames.by_ref().take(60)).unwrap();
    let mut player = engine.play(publisher.id(), "rtmp", &creds).await.unwrap();
    let mut batch = Batch::new();
    let got = player.try_recv_batch(&mut batch, 1000).unwrap() as f64;
    player.frames_sent();
    publisher.publish_many(frames.by_ref().take(10)).unwrap();

    let text = metrics.encode();
    if let Ok(path) = std::env::var("ARCLY_METRICS_DUMP") {
        std::fs::write(path, &text).unwrap();
    }
    let stream = r#"app="live",stream="demo""#;
    let v = |name: &str| sample(&text, name, stream).unwrap_or_else(|| panic!("no {name}{{{stream}}} in\n{text}"));
    assert_eq!(sample(&text, "arcly_streams", ""), Some(1.0));
    assert_eq!(v("arcly_stream_frames_in_total"), 70.0);
    assert!(v("arcly_stream_bytes_in_total") > 0.0);
    assert_eq!(v("arcly_stream_frames_out_total"), got);
    assert!(v("arcly_stream_bytes_out_total") > 0.0);
    assert_eq!(v("arcly_stream_subscribers"), 1.0);
    assert_eq!(v("arcly_stream_max_lag_frames"), 10.0, "the player has not read the last 10 frames");
    assert!(v("arcly_stream_max_lag_seconds") > 0.3, "10 frames at 25 fps: about 0.4 s");
    assert_eq!(v("arcly_stream_keyframe_interval_seconds"), 1.0);
    assert_eq!(v("arcly_stream_skips_total"), 0.0);
    assert_eq!(v("arcly_stream_evictions_total"), 0.0);
    assert!(v("arcly_stream_buffered_frames") >= 70.0);
    assert_eq!(v("arcly_publishers"), 1.0);
    assert_eq!(sample(&text, "arcly_players", r#"app="live",stream="demo",protocol="rtmp""#), Some(1.0));
    assert_eq!(sample(&text, "arcly_first_frame_seconds_count", r#"protocol="rtmp""#), Some(1.0));

    // A second publisher of the same stream is refused with its code.
    let refused = engine.begin_publish(id("live/demo"), "rtmp", &creds).await;
    assert!(refused.is_err());
    assert_eq!(
        value(&metrics, "arcly_requests_refused_total", r#"action="publish",code="already_publishing""#),
        Some(1.0)
    );

    // A stream that ended leaves no series behind.
    drop(player);
    drop(publisher);
    let text = metrics.encode();
    assert_eq!(sample(&text, "arcly_streams", ""), Some(0.0));
    assert!(!text.contains("stream=\"demo\""), "{text}");

    // The observer does not keep the engine alive.
    drop(engine);
    assert_eq!(value(&metrics, "arcly_streams", ""), Some(0.0));
}

#[tokio::test]
async fn two_engines_two_registries() {
    let (a, b) = (Arc::new(PrometheusObserver::new()), Arc::new(PrometheusObserver::new()));
    let ea = Engine::builder().application(AppSpec::new("live")).observer(a.clone()).build();
    let eb = Engine::builder().application(AppSpec::new("live")).observer(b.clone()).build();
    a.watch(&ea);
    b.watch(&eb);
    let _p = ea.begin_publish(id("live/only-a"), "rtmp", &Credentials::default()).await.unwrap();
    assert_eq!(value(&a, "arcly_streams", ""), Some(1.0));
    assert_eq!(value(&b, "arcly_streams", ""), Some(0.0));
    assert!(!b.encode().contains("only-a"));
}

#[test]
fn openmetrics_and_prometheus_text_name_the_same_series() {
    let m = PrometheusObserver::new();
    m.connection_opened("rtmp", peer());
    let prom = m.encode();
    let om = m.encode_openmetrics();
    assert!(prom.contains("# TYPE arcly_connections_opened_total counter"), "{prom}");
    assert!(om.contains("# TYPE arcly_connections_opened counter"), "{om}");
    for text in [&prom, &om] {
        assert!(text.contains(r#"arcly_connections_opened_total{protocol="rtmp"} 1"#), "{text}");
    }
    assert!(om.ends_with("# EOF\n") && !prom.contains("# EOF"));
}
