//! A publisher whose clock jumps, against the running server: the
//! workspace's own RTMP client publishes testdata/h264_aac.flv with
//! timestamps that go back 5 s and later leap 3 hours (ffmpeg cannot send
//! such a stream); ffmpeg plays it over RTMP throughout and records it.

mod common;

use std::time::{Duration, Instant};

use arcly_core::frame::{FrameType, MediaFrame};
use arcly_mux::flv::FlvReader;
use arcly_rtmp::client::{ClientMode, ClientSession, RtmpUrl};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The file's frames in order (metadata and configuration first), its
/// timestamps in milliseconds.
fn flv_frames() -> Vec<MediaFrame> {
    let mut reader = FlvReader::new();
    reader.push_bytes(arcly_testkit::read_testdata("h264_aac.flv"));
    let mut frames = Vec::new();
    while let Some(tag) = reader.next_tag() {
        if let Some(frame) = tag.expect("FLV tag").to_frame().expect("FLV body") {
            frames.push(frame);
        }
    }
    frames
}

/// An RTMP publisher made of the workspace's sans-IO client session.
struct Publisher {
    socket: TcpStream,
    session: ClientSession,
}

impl Publisher {
    async fn connect(server: &arcly_server::Server, key: &str) -> Self {
        let url = RtmpUrl::parse(&rtmp_url(server, key)).unwrap();
        let session = ClientSession::new(url, ClientMode::Publish).unwrap();
        let socket = TcpStream::connect(server.rtmp_addr()).await.unwrap();
        let mut p = Self { socket, session };
        let mut buf = vec![0u8; 64 << 10];
        while !p.session.is_active() {
            p.flush().await;
            let n = tokio::time::timeout(Duration::from_secs(5), p.socket.read(&mut buf))
                .await
                .expect("publish starts within 5 s")
                .unwrap();
            assert!(n > 0, "server closed the connection");
            p.session.handle_input(&buf[..n]).unwrap();
        }
        p
    }

    async fn flush(&mut self) {
        self.try_flush().await.unwrap();
    }

    async fn try_flush(&mut self) -> std::io::Result<()> {
        while let Some(b) = self.session.poll_transmit() {
            self.socket.write_all(&b).await?;
        }
        Ok(())
    }

    async fn send(&mut self, frame: &MediaFrame) {
        self.try_send(frame).await.unwrap();
    }

    /// Sends a frame; fails once the server closed the connection.
    async fn try_send(&mut self, frame: &MediaFrame) -> std::io::Result<()> {
        self.session.send_media(frame).map_err(std::io::Error::other)?;
        self.try_flush().await
    }
}

/// The publisher's clock at media time `ms`: from 10 s; back 5 s from
/// 2.5 s of media on; 3 hours ahead from 4.5 s on (both mid-GOP).
fn publisher_clock(ms: i64) -> i64 {
    const HOURS: i64 = 3 * 3_600_000;
    10_000
        + ms
        + match ms {
            ..2_500 => 0,
            2_500..4_500 => -5_000,
            _ => -5_000 + HOURS,
        }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_play_on_through_a_publisher_clock_jumping_back_and_ahead() {
    let server = start().await;
    let key = "jumpy";
    let id: arcly_core::identity::StreamId = format!("live/{key}").parse().unwrap();
    let file = flv_frames();
    let (untimed, media): (Vec<MediaFrame>, Vec<MediaFrame>) =
        file.into_iter().partition(|f| f.is_config() || f.frame_type() == FrameType::Data);
    // The file twice: 6 s of media, 150 video frames.
    let span = 3_000;
    let media: Vec<MediaFrame> = (0..2)
        .flat_map(|pass| {
            media.iter().map(move |f| {
                let mut f = f.clone();
                f.dts += pass * span;
                f.pts += pass * span;
                f
            })
        })
        .collect();
    let video_frames = media.iter().filter(|f| f.frame_type() == FrameType::Video).count();
    assert_eq!(video_frames, 150);

    let mut publisher = Publisher::connect(&server, key).await;
    for f in &untimed {
        publisher.send(f).await;
    }
    // The first GOP, then wait for the player: it joins at the cached
    // keyframe and so gets every frame.
    let first_gop = media.iter().position(|f| f.dts >= 1_000 && f.is_keyframe()).unwrap();
    let start = Instant::now();
    for f in &media[..first_gop] {
        publisher.send(&restamped(f)).await;
    }
    wait_live(&server, key, 10).await;
    let dir = arcly_testkit::scratch_dir("timestamp-jumps");
    let recording = dir.join("played.flv");
    let player = spawn(
        "ffmpeg",
        "ffmpeg",
        &[
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            &rtmp_url(&server, key),
            "-c",
            "copy",
            "-f",
            "flv",
            recording.to_str().unwrap(),
        ],
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.engine().lookup(&id).is_none_or(|h| h.subscriber_count() == 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("ffmpeg plays within 10 s");

    // The rest in real time (by media time, not by the jumping clock).
    for f in &media[first_gop..] {
        let due = start + Duration::from_millis(u64::try_from(f.dts).unwrap());
        tokio::time::sleep_until(due.into()).await;
        publisher.send(&restamped(f)).await;
    }
    // LL-HLS: both jumps are discontinuities and no segment is long (the
    // segment target is 2 s, the GOP 1 s).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let playlist = get(&server, &format!("/live/live/{key}/index.m3u8")).await;
    assert_eq!(playlist.status, 200, "{}", playlist.text());
    let text = playlist.text();
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 2, "{text}");
    for extinf in text.lines().filter_map(|l| l.strip_prefix("#EXTINF:")) {
        let seconds: f64 = extinf.trim_end_matches(',').parse().unwrap();
        assert!(seconds <= 3.0, "a {seconds} s segment:\n{text}");
    }
    // The counters say what happened.
    let qos = server.engine().lookup(&id).expect("still live").qos();
    assert_eq!(qos.timestamp_corrections, 2);
    let api = get(&server, &format!("/api/v1/streams/live/{key}")).await.json();
    assert_eq!(api["timestamp_corrections"], 2, "{api}");
    drop(publisher);

    // ffmpeg ends when the stream does, without an error.
    let (status, stderr) = finish(player, 20).await;
    assert!(status.success() && stderr.trim().is_empty(), "ffmpeg: {status}: {stderr}");
    let packets = arcly_testkit::ffprobe_packets(&recording);
    let streams = arcly_testkit::ffprobe(&recording);
    let video_index = streams.iter().position(|s| s["codec_type"] == "video").expect("a video stream");
    let dts: Vec<f64> = packets.iter().filter(|p| p.stream == video_index).filter_map(|p| p.dts_time).collect();
    assert_eq!(dts.len(), video_frames, "every video frame played");
    for w in dts.windows(2) {
        assert!(w[1] >= w[0], "video dts went back: {w:?}");
        assert!(w[1] - w[0] <= 1.0, "video dts leapt: {w:?}");
    }
    assert!(dts[dts.len() - 1] - dts[0] < 7.0, "{} s of video", dts[dts.len() - 1] - dts[0]);

    // The stream is gone: nothing is kept for it.
    tokio::time::timeout(Duration::from_secs(5), async {
        while server.engine().lookup(&id).is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the stream ends");
    assert!(server.engine().streams().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
    server.shutdown();
    server.wait().await.expect("clean shutdown");
}

/// `f` with the publisher's jumping clock.
fn restamped(f: &MediaFrame) -> MediaFrame {
    let mut out = f.clone();
    let t = publisher_clock(f.dts);
    out.pts = t + (f.pts - f.dts);
    out.dts = t;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_with_hopeless_timestamps_is_disconnected_with_the_reason() {
    let server = start().await;
    let key = "garbage";
    let mut events = server.engine().events().subscribe();
    let (untimed, media): (Vec<MediaFrame>, Vec<MediaFrame>) =
        flv_frames().into_iter().partition(|f| f.is_config() || f.frame_type() == FrameType::Data);
    let mut publisher = Publisher::connect(&server, key).await;
    for f in &untimed {
        publisher.send(f).await;
    }
    // Two clocks an hour apart, alternating: every frame is a correction,
    // far more than 10 a second.
    let mut refused = false;
    for (i, f) in media.iter().enumerate() {
        let mut f = f.clone();
        let t = 10_000 + f.dts + if i % 2 == 1 { 3_600_000 } else { 0 };
        f.pts = t + (f.pts - f.dts);
        f.dts = t;
        if publisher.try_send(&f).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The server closes the connection.
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match publisher.socket.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(refused || closed.is_ok(), "the server kept the connection open");
    // The stream ended, saying why.
    let reason = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(arcly_core::bus::StreamEvent::Unpublished { reason, .. }) = events.recv().await {
                break reason;
            }
        }
    })
    .await
    .expect("the stream ends");
    assert_eq!(reason, "timestamps unusable: more than 10 timestamp corrections within a second");
    // Counted as a protocol error of one RTMP connection.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = get(&server, "/api/v1/stats").await.json();
        if stats["connections"]["rtmp"]["closed"]["protocol_error"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.engine().streams().is_empty());
    server.shutdown();
    server.wait().await.expect("clean shutdown");
}
