//! The JSON API, health, readiness, CORS and 404s over HTTP, with ffmpeg
//! publishing.

#![allow(clippy::print_stderr)] // Measured figures are printed.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_ready_and_404s() {
    let mut config = test_config();
    config.http.play_wait_ms = 300;
    let server = arcly_server::Server::start(config).await.unwrap();
    let health = get(&server, "/healthz").await;
    assert_eq!(health.status, 200, "{}", health.text());
    let json = health.json();
    assert_eq!(json["status"], "healthy");
    assert!(json["checks"].as_array().unwrap().iter().any(|c| c["name"] == "publishers"));
    assert_eq!(get(&server, "/readyz").await.status, 200);

    assert_eq!(get(&server, "/api/v1/streams/live/nobody").await.status, 404);
    assert_eq!(get(&server, "/live/live/nobody.flv?token=x").await.status, 404, "waits play_wait_ms, then 404");
    assert_eq!(get(&server, "/no/such/route").await.status, 404);
    let list = get(&server, "/api/v1/streams").await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["streams"].as_array().unwrap().len(), 0);

    // CORS: a browser on another origin may read the API and the streams.
    let cors = get_with(&server, "/api/v1/streams", &[("Origin", "http://player.example")]).await;
    assert_eq!(cors.header("access-control-allow-origin"), Some("*"));

    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_cors_origins_only() {
    let mut config = test_config();
    config.http.cors_origins = vec!["https://good.example".into()];
    let server = arcly_server::Server::start(config).await.unwrap();
    let good = get_with(&server, "/healthz", &[("Origin", "https://good.example")]).await;
    assert_eq!(good.header("access-control-allow-origin"), Some("https://good.example"));
    let bad = get_with(&server, "/healthz", &[("Origin", "https://evil.example")]).await;
    assert_eq!(bad.header("access-control-allow-origin"), None);
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_api_lists_the_stream_with_codecs_and_players() {
    let server = start().await;
    let publisher = ffmpeg_publish(&rtmp_url(&server, "api"));
    wait_live(&server, "api", 10).await;

    let subscribers = |v: &serde_json::Value| v["subscribers"].as_u64().unwrap();
    let before = get(&server, "/api/v1/streams/live/api").await.json();

    // An HTTP-FLV player: read the response head and the FLV header.
    let mut player = request(&server, "/live/live/api.flv", &[]).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), player.read(&mut buf)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: video/x-flv"), "{head}");

    // Media info needs the configuration frames and a little media.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let list = get(&server, "/api/v1/streams").await;
    assert_eq!(list.status, 200);
    let json = list.json();
    let streams = json["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "{json}");
    let s = &streams[0];
    eprintln!("{s:#}");
    assert_eq!((s["app"].as_str(), s["key"].as_str()), (Some("live"), Some("api")));
    assert_eq!(s["publishing"], true);
    assert_eq!(s["publisher"]["protocol"], "rtmp");
    assert!(s["publisher"]["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(s["codecs"]["video"], "h264");
    assert_eq!(s["codecs"]["audio"], "aac");
    assert_eq!(s["resolution"]["width"], 160);
    assert_eq!(s["resolution"]["height"], 120);
    assert_eq!(s["audio"]["sample_rate"], 48000);
    assert!(s["fps"].as_f64().unwrap() > 20.0, "fps {}", s["fps"]);
    assert!(s["bitrate_bps"].as_u64().unwrap() > 0);
    assert!(s["uptime_secs"].as_f64().unwrap() >= 1.0);
    assert_eq!(subscribers(s), subscribers(&before) + 1, "the HTTP-FLV player is counted");

    drop(player);
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let now = get(&server, "/api/v1/streams/live/api").await.json();
            if subscribers(&now) == subscribers(&before) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a player that leaves is no longer counted");

    let (status, stderr) = finish(publisher, 30).await;
    assert!(status.success(), "{stderr}");
    server.shutdown();
    server.wait().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_http_flv_players() {
    let server = start().await;
    let publisher = ffmpeg_publish(&rtmp_url(&server, "stop"));
    wait_live(&server, "stop", 10).await;
    let mut player = request(&server, "/live/live/stop.flv", &[]).await;
    let mut buf = vec![0u8; 4096];
    let _ = player.read(&mut buf).await.unwrap();
    let started = std::time::Instant::now();
    server.shutdown();
    tokio::time::timeout(Duration::from_secs(5), server.wait()).await.expect("shutdown within 5 s").unwrap();
    // The response ended: the player reads to EOF.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(2), player.read_to_end(&mut rest)).await.expect("eof").unwrap();
    eprintln!("shutdown took {:?}", started.elapsed());
    drop(publisher);
}

/// Allows playing only with `?token=secret`; publishing is open.
struct TokenAuth;

#[async_trait::async_trait]
impl arcly_core::auth::StreamAuthenticator for TokenAuth {
    async fn authorize(&self, request: arcly_core::auth::AuthRequest<'_>) -> Result<(), arcly_core::auth::Denial> {
        match request.action {
            arcly_core::auth::Action::Publish => Ok(()),
            arcly_core::auth::Action::Play if request.credentials.query_param("token") == Some("secret") => {
                assert_eq!(request.credentials.protocol, "http");
                assert!(request.credentials.peer.is_some());
                Ok(())
            }
            arcly_core::auth::Action::Play => Err("bad token".into()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_flv_query_token_goes_to_the_authenticator() {
    let server = arcly_server::Server::start_with(test_config(), std::sync::Arc::new(TokenAuth)).await.unwrap();
    let publisher = ffmpeg_publish(&rtmp_url(&server, "auth"));
    wait_live(&server, "auth", 10).await;
    let refused = get(&server, "/live/live/auth.flv?token=wrong").await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.text().contains("bad token"));
    assert_eq!(get(&server, "/live/live/auth.flv").await.status, 403);
    let mut player = request(&server, "/live/live/auth.flv?token=secret", &[]).await;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), player.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(player);
    // HLS playlists go through the authenticator too.
    for path in ["/live/live/auth/index.m3u8", "/live/live/auth/ts/index.m3u8", "/live/live/auth/master.m3u8"] {
        assert_eq!(get(&server, path).await.status, 403, "{path} without a token");
        assert_eq!(get(&server, &format!("{path}?token=wrong")).await.status, 403, "{path} with a bad token");
    }
    let allowed = get(&server, "/live/live/auth/index.m3u8?token=secret&_HLS_msn=0").await;
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    // The token rides on into every URI, and media files need it too.
    let text = allowed.text();
    assert!(text.contains("init.mp4?token=secret") && text.contains(".m4s?token=secret"), "{text}");
    assert!(!text.contains("_HLS_msn"), "directives are not carried on: {text}");
    assert_eq!(get(&server, "/live/live/auth/init.mp4").await.status, 403);
    assert_eq!(get(&server, "/live/live/auth/init.mp4?token=secret").await.status, 200);
    drop(publisher);
    server.shutdown();
    server.wait().await.unwrap();
}
