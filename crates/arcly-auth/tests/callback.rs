//! The callback authenticator against a real HTTP endpoint on 127.0.0.1:
//! what it sends, and allow / deny / timeout / unreachable.
#![cfg(feature = "callback")]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arcly_auth::CallbackAuthenticator;
use arcly_core::auth::{Action, AuthRequest, Credentials, Denial, StreamAuthenticator, codes};
use arcly_core::identity::StreamId;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

type Seen = Arc<Mutex<Vec<(Option<String>, serde_json::Value)>>>;

/// `/allow` answers 204, `/deny` 403, `/slow` 200 after 3 s; every body
/// is recorded with its content type.
async fn endpoint() -> (String, Seen) {
    async fn record(seen: &Seen, headers: &HeaderMap, body: &str) {
        let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        seen.lock().unwrap().push((ct, serde_json::from_str(body).unwrap()));
    }
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/allow",
            post(|State(s): State<Seen>, h: HeaderMap, body: String| async move {
                record(&s, &h, &body).await;
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/deny",
            post(|State(s): State<Seen>, h: HeaderMap, body: String| async move {
                record(&s, &h, &body).await;
                StatusCode::FORBIDDEN
            }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                StatusCode::OK
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

async fn ask(url: &str, timeout_ms: u64, action: Action, credentials: &Credentials) -> Result<(), Denial> {
    let auth = CallbackAuthenticator::new(url, Duration::from_millis(timeout_ms)).unwrap();
    let stream: StreamId = "live/cam1".parse().unwrap();
    auth.authorize(AuthRequest { action, stream: &stream, credentials }).await
}

fn rtmp_publisher() -> Credentials {
    let mut c = Credentials::with_query("rtmp", "token=abc&x=1");
    c.peer = Some("192.0.2.7:50122".parse().unwrap());
    c
}

#[tokio::test]
async fn a_2xx_allows_and_the_request_is_described_in_json() {
    let (base, seen) = endpoint().await;
    ask(&format!("{base}/allow"), 2_000, Action::Publish, &rtmp_publisher()).await.unwrap();
    let bearer = Credentials { protocol: "http", ..Credentials::default() }.with_bearer("t0k");
    ask(&format!("{base}/allow"), 2_000, Action::Play, &bearer).await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen[0].0.as_deref(), Some("application/json"));
    assert_eq!(
        seen[0].1,
        serde_json::json!({"action": "publish", "app": "live", "stream": "cam1", "protocol": "rtmp",
            "peer": "192.0.2.7:50122", "query": "token=abc&x=1", "token": "abc"})
    );
    assert_eq!(
        seen[1].1,
        serde_json::json!({"action": "play", "app": "live", "stream": "cam1", "protocol": "http",
            "peer": null, "query": null, "token": "t0k"})
    );
}

#[tokio::test]
async fn another_status_denies() {
    let (base, seen) = endpoint().await;
    let denial = ask(&format!("{base}/deny"), 2_000, Action::Publish, &rtmp_publisher()).await.unwrap_err();
    assert_eq!(denial.code, codes::CALLBACK_DENIED);
    assert!(denial.message.contains("403"), "{denial}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    // A route that does not exist: 404, denied too.
    let denial = ask(&format!("{base}/nope"), 2_000, Action::Publish, &rtmp_publisher()).await.unwrap_err();
    assert_eq!(denial.code, codes::CALLBACK_DENIED);
}

#[tokio::test]
async fn no_answer_in_time_denies() {
    let (base, _) = endpoint().await;
    let started = Instant::now();
    let denial = ask(&format!("{base}/slow"), 300, Action::Play, &rtmp_publisher()).await.unwrap_err();
    assert_eq!(denial.code, codes::CALLBACK_TIMEOUT, "{denial}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[tokio::test]
async fn an_unreachable_endpoint_denies() {
    // A port nothing listens on: bound, then closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let denial = ask(&format!("http://{addr}/auth"), 2_000, Action::Publish, &rtmp_publisher()).await.unwrap_err();
    assert_eq!(denial.code, codes::CALLBACK_ERROR, "{denial}");
    assert!(!denial.message.contains(&addr.to_string()), "the endpoint is not shown to the peer: {denial}");
}
