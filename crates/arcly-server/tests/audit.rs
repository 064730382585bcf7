//! The audit trail with real peers: `[audit] file` gets one JSON line per
//! publish, play, stop, unpublish and refusal, each with the peer's
//! address.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arcly_core::auth::{AuthRequest, Denial, StreamAuthenticator};
use arcly_server::Server;
use async_trait::async_trait;
use serde_json::Value;
use tokio::io::AsyncReadExt;

use common::{finish, spawn};

/// Refuses the stream key `denied`, allows the rest.
struct DenyOne;

#[async_trait]
impl StreamAuthenticator for DenyOne {
    async fn authorize(&self, request: AuthRequest<'_>) -> Result<(), Denial> {
        if request.stream.key().as_str() == "denied" { Err("this key is refused".to_owned().into()) } else { Ok(()) }
    }
}

fn lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

fn find<'a>(lines: &'a [Value], action: &str, stream: &str, protocol: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["action"] == action && l["stream"] == stream && l["protocol"] == protocol)
        .unwrap_or_else(|| panic!("no {action} of {stream} over {protocol} in {lines:#?}"))
}

fn peer(line: &Value) -> &str {
    let peer = line["peer"].as_str().unwrap_or_else(|| panic!("no peer in {line}"));
    assert!(peer.starts_with("127.0.0.1:"), "{line}");
    peer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_file_has_publish_play_stop_unpublish_and_refusals_with_the_peer() {
    let dir = arcly_testkit::scratch_dir("audit-trail");
    let audit = dir.join("audit.jsonl");
    let mut config = common::test_config();
    config.audit.file = Some(audit.clone());
    let server = Server::start_with(config, Arc::new(DenyOne)).await.expect("server starts");

    let publisher = common::ffmpeg_publish(&common::rtmp_url(&server, "cam"));
    common::wait_live(&server, "cam", 10).await;
    // An RTMP player for a second.
    let url = common::rtmp_url(&server, "cam");
    let player = spawn(
        "ffmpeg",
        "ffmpeg",
        &["-hide_banner", "-nostdin", "-v", "error", "-i", &url, "-t", "1", "-f", "null", "-"],
    );
    let (status, stderr) = finish(player, 20).await;
    assert!(status.success(), "the RTMP player failed: {stderr}");
    // An HTTP-FLV player that reads a little and leaves.
    let mut flv = common::request(&server, "/live/live/cam.flv", &[]).await;
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), flv.read(&mut buf)).await.unwrap().unwrap();
    assert!(n > 0);
    drop(flv);
    // A refused publisher.
    let denied = common::ffmpeg_publish(&common::rtmp_url(&server, "denied"));
    let (status, _) = finish(denied, 20).await;
    assert!(!status.success(), "the refused publisher cannot publish");
    let (status, stderr) = finish(publisher, 20).await;
    assert!(status.success(), "the publisher failed: {stderr}");
    // Shutdown writes what is queued.
    server.shutdown();
    server.wait().await.unwrap();

    let text = std::fs::read_to_string(&audit).expect("the audit file");
    let lines = lines(&text);
    let publish = find(&lines, "publish_start", "live/cam", "rtmp");
    let unpublish = find(&lines, "publish_end", "live/cam", "rtmp");
    assert_eq!(peer(publish), peer(unpublish), "the publisher's address, at both ends");
    assert!(!unpublish["reason"].as_str().unwrap().is_empty(), "{unpublish}");
    let play = find(&lines, "play_start", "live/cam", "rtmp");
    let stop = find(&lines, "play_end", "live/cam", "rtmp");
    assert_eq!(peer(play), peer(stop));
    assert_ne!(peer(play), peer(publish), "the player's own address");
    let flv_play = find(&lines, "play_start", "live/cam", "http");
    assert_eq!(peer(flv_play), peer(find(&lines, "play_end", "live/cam", "http")));
    let refused = find(&lines, "refused", "live/denied", "rtmp");
    peer(refused);
    assert!(refused["reason"].as_str().unwrap().contains("this key is refused"), "{refused}");
    assert!(lines.iter().all(|l| l["ts_ms"].as_u64().is_some_and(|t| t > 1_600_000_000_000)), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
