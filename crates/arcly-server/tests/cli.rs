//! The `arcly` binary: starts with flags, logs where it listens, answers
//! `/readyz`, and shuts down cleanly on SIGTERM and SIGINT.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

/// Starts the binary on 127.0.0.1:0 and returns it with its HTTP address,
/// read from the "arcly started" log line.
async fn start_binary() -> (tokio::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arcly"))
        .args(["--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log", "info"])
        .env_remove("ARCLY_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run arcly");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let http = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("arcly started") {
                let at = line.find("http=").expect("http address logged") + 5;
                return line[at..].split_whitespace().next().unwrap().to_owned();
            }
        }
        panic!("arcly exited before it started");
    })
    .await
    .expect("arcly starts within 10 s");
    // Keep draining the log so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, http)
}

async fn status(addr: &str, path: &str) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    common::parse(&raw).status
}

async fn signal_and_wait(mut child: tokio::process::Child, signal: &str) {
    let pid = child.id().unwrap().to_string();
    let started = Instant::now();
    let sent = std::process::Command::new("kill").args([signal, &pid]).status().expect("run kill");
    assert!(sent.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.expect("exits within 10 s").unwrap();
    assert_eq!(exit.code(), Some(0), "a signal is a clean shutdown: {exit}");
    assert!(started.elapsed() < Duration::from_secs(6), "shutdown took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_and_stops_on_sigterm() {
    let (child, http) = start_binary().await;
    assert_eq!(status(&http, "/readyz").await, 200);
    assert_eq!(status(&http, "/healthz").await, 200);
    signal_and_wait(child, "-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_stops_on_sigint() {
    let (child, http) = start_binary().await;
    assert_eq!(status(&http, "/readyz").await, 200);
    signal_and_wait(child, "-INT").await;
}
