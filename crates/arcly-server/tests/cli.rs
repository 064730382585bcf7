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

/// A configuration with one key whose secret is in `ARCLY_TEST_CLI_KEY`.
fn token_config(test: &str) -> std::path::PathBuf {
    let dir = arcly_testkit::scratch_dir(test);
    let path = dir.join("arcly.toml");
    let text = "[auth]\nmode = \"token\"\n[[auth.keys]]\nid = \"k1\"\nsecret_env = \"ARCLY_TEST_CLI_KEY\"\n\
                [[auth.keys]]\nid = \"k2\"\nsecret_env = \"ARCLY_TEST_CLI_KEY2\"\n";
    std::fs::write(&path, text).unwrap();
    path
}

const CLI_SECRET: &str = "a cli test secret of enough bytes";

fn arcly_token(config: &std::path::Path, args: &[&str], secret: Option<&str>) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_arcly"));
    c.arg("token").arg("--config").arg(config).args(args).env_remove("ARCLY_CONFIG");
    c.env("ARCLY_TEST_CLI_KEY2", "the second key's secret, long");
    match secret {
        Some(s) => c.env("ARCLY_TEST_CLI_KEY", s),
        None => c.env_remove("ARCLY_TEST_CLI_KEY"),
    };
    c.output().expect("run arcly token")
}

#[test]
fn token_subcommand_mints_tokens_signed_with_the_configured_key() {
    use arcly_auth::{StreamScope, TokenAuthenticator, TokenKey};
    use arcly_core::auth::{Action, AuthRequest, Credentials};

    let config = token_config("cli-token");
    let out = arcly_token(
        &config,
        &["--action", "publish", "--app", "live", "--stream", "cam", "--prefix", "--ttl", "10m", "--ip", "192.0.2.5"],
        Some(CLI_SECRET),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("v1.k1."), "the first key by default: {token}");
    let auth = TokenAuthenticator::new([TokenKey::new("k1", CLI_SECRET).unwrap()]).unwrap();
    let grant = auth.decode(&token).unwrap();
    assert_eq!(grant.action, Action::Publish);
    assert_eq!(grant.scope, StreamScope::Prefix("cam".into()));
    assert_eq!(grant.ip, Some("192.0.2.5".parse().unwrap()));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!((now + 590..=now + 610).contains(&grant.expires_at), "10 minutes: {}", grant.expires_at);
    let stream = "live/camera2".parse().unwrap();
    let mut credentials = Credentials::with_query("rtmp", format!("token={token}"));
    credentials.peer = Some("192.0.2.5:1935".parse().unwrap());
    auth.verify(&AuthRequest { action: Action::Publish, stream: &stream, credentials: &credentials }).unwrap();

    // Another key, by id.
    let out = arcly_token(&config, &["--key-id", "k2", "--action", "play", "--stream", "cam1"], Some(CLI_SECRET));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("v1.k2."));
}

#[test]
fn token_subcommand_errors_name_the_problem() {
    let config = token_config("cli-token-errors");
    let publish = ["--action", "publish", "--stream", "cam1"];
    for (args, secret, want) in [
        (&publish[..], None, "auth.keys[0].secret_env: the variable ARCLY_TEST_CLI_KEY is not set"),
        (&publish[..], Some("short"), "auth.keys[0].secret_env: the secret in ARCLY_TEST_CLI_KEY: is 5 bytes"),
        (&["--key-id", "k9", "--action", "play", "--stream", "a"][..], Some(CLI_SECRET), "no key with id \"k9\""),
        (&["--action", "play", "--stream", "a/b"][..], Some(CLI_SECRET), "--stream \"a/b\""),
    ] {
        let out = arcly_token(&config, args, secret);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty());
        assert!(!stderr.contains(CLI_SECRET), "secrets are never printed");
    }
    let out = arcly_token(&config, &["--action", "publish", "--stream", "a", "--ttl", "5y"], Some(CLI_SECRET));
    assert_eq!(out.status.code(), Some(2), "clap refuses a bad --ttl");
}
