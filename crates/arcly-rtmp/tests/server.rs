//! The driver's limits: timeouts, the connection limit, bad input and slow
//! players each close only the connection concerned.

mod common;

use std::sync::Arc;
use std::time::Duration;

use arcly_core::engine::AppSpec;
use arcly_core::observe::ConnectionCounters;
use arcly_mux::amf0::Amf0Value;
use arcly_rtmp::command::{Command, codes};
use arcly_rtmp::{ServerConfig, SessionConfig};
use common::{TestClient, TestServer, ffmpeg_publish};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes; panics if it does not within `secs`.
async fn expect_closed(socket: &mut TcpStream, secs: u64) -> usize {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("server did not close within {secs} s"));
    total
}

#[tokio::test]
async fn silent_connection_times_out_and_limit_is_enforced() {
    let session = SessionConfig { handshake_timeout: Duration::from_millis(300), ..SessionConfig::default() };
    let config = ServerConfig { max_connections: 1, session, ..ServerConfig::default() };
    let server = TestServer::with(config, AppSpec::new("live")).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Over the limit: closed at once.
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    expect_closed(&mut second, 1).await;
    // The silent one is closed by the handshake timeout.
    expect_closed(&mut silent, 2).await;
    // The slot is free again.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut player = TestClient::connect(server.addr, "live").await;
    player.command(1, Command::new("play", 0.0, Amf0Value::Null, vec!["none".into()])).await;
    player.wait_status(codes::PLAY_STREAM_NOT_FOUND, 5).await;
}

#[tokio::test]
async fn per_ip_limit_refuses_at_accept_and_connections_are_counted() {
    let counters = Arc::new(ConnectionCounters::new());
    let session = SessionConfig { handshake_timeout: Duration::from_millis(300), ..SessionConfig::default() };
    let config = ServerConfig { max_connections_per_ip: 2, session, ..ServerConfig::default() };
    let server = TestServer::with_observer(config, AppSpec::new("live"), counters.clone()).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // A third from the same address: closed at once, counted as refused.
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    expect_closed(&mut third, 1).await;
    let rtmp = counters.snapshot().protocols["rtmp"].clone();
    assert_eq!((rtmp.opened, rtmp.open, rtmp.refused["per_ip_limit"]), (2, 2, 1), "{rtmp:?}");
    // The two held ones time out in the handshake; their places come back.
    for s in &mut held {
        expect_closed(s, 2).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let rtmp = counters.snapshot().protocols["rtmp"].clone();
    assert_eq!((rtmp.open, rtmp.closed["timeout"]), (0, 2), "{rtmp:?}");
    let mut client = TestClient::connect(server.addr, "live").await;
    client.command(1, Command::new("play", 0.0, Amf0Value::Null, vec!["none".into()])).await;
    client.wait_status(codes::PLAY_STREAM_NOT_FOUND, 5).await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rtmp = counters.snapshot().protocols["rtmp"].clone();
    assert_eq!((rtmp.opened, rtmp.open, rtmp.closed["peer_closed"]), (3, 0, 1), "{rtmp:?}");
}

#[tokio::test]
async fn bad_input_closes_only_that_connection() {
    let server = TestServer::start(Duration::ZERO).await;
    let mut good = TestClient::connect(server.addr, "live").await;
    let mut bad = TcpStream::connect(server.addr).await.unwrap();
    bad.write_all(&[6u8; 1537]).await.unwrap(); // RTMPE: refused
    expect_closed(&mut bad, 2).await;
    // A type 3 chunk on a chunk stream never opened with a type 0 one.
    let mut bad = TestClient::connect(server.addr, "live").await;
    bad.send_raw(&[0xc0 | 40, 1, 2, 3]).await;
    tokio::time::timeout(Duration::from_secs(2), async { while bad.next().await.is_some() {} })
        .await
        .expect("bad chunk stream must close the connection");
    // The first client is unaffected.
    good.command(1, Command::new("play", 0.0, Amf0Value::Null, vec!["x".into()])).await;
    good.wait_status(codes::PLAY_STREAM_NOT_FOUND, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_player_is_closed() {
    let session = SessionConfig { idle_timeout: Duration::from_secs(1), ..SessionConfig::default() };
    let config = ServerConfig { session, ..ServerConfig::default() };
    let app = AppSpec::new("live").lag_limit(200).max_consecutive_skips(2);
    let server = TestServer::with(config, app).await;
    let url = server.url("fast");
    // As fast as possible, forever: far more than socket buffers hold.
    let publisher = ffmpeg_publish(&url, false, &["-stream_loop", "-1"]);
    let id = "live/fast".parse().unwrap();
    assert!(server.engine.wait_for_stream(&id, Duration::from_secs(10)).await.is_some());
    let mut stalled = TestClient::connect(server.addr, "live").await;
    stalled.command(1, Command::new("play", 0.0, Amf0Value::Null, vec!["fast".into()])).await;
    // Do not read for a while.
    tokio::time::sleep(Duration::from_secs(4)).await;
    // A fresh player still works while the stalled one is being dropped.
    let mut fresh = TestClient::connect(server.addr, "live").await;
    fresh.command(1, Command::new("play", 0.0, Amf0Value::Null, vec!["fast".into()])).await;
    fresh.wait_status(codes::PLAY_START, 5).await;
    // The stalled player's connection was closed: what is buffered drains, then EOF.
    let mut n = 0;
    tokio::time::timeout(Duration::from_secs(10), async {
        while stalled.next().await.is_some() {
            n += 1;
        }
    })
    .await
    .expect("the stalled player must be disconnected");
    assert!(n > 0);
    drop(publisher);
}
