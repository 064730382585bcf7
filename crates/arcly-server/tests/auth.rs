//! Token authorization end to end: the `arcly` binary with `[auth] mode =
//! "token"` and an audit file; ffmpeg publishing over RTMP with tokens in
//! the URL; HTTP-FLV players with a bearer token. Every refusal reaches the
//! audit file and the log with its own code.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arcly_auth::{Grant, StreamScope, TokenKey};
use arcly_core::auth::Action;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use common::{ffmpeg_publish, finish};

const SECRET: &str = "end-to-end test secret, 32 bytes";
const SECRET_VAR: &str = "ARCLY_TEST_AUTH_E2E_K1";

/// The binary, its RTMP and HTTP addresses, and its log lines so far.
struct Arcly {
    _child: Child,
    rtmp: String,
    http: String,
    log: Arc<Mutex<Vec<String>>>,
}

fn config(dir: &Path, audit: &Path) -> PathBuf {
    let path = dir.join("arcly.toml");
    let text = format!(
        "log = \"info\"\n\
         [rtmp]\nlisten = \"127.0.0.1:0\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\nplay_wait_ms = 10000\n\
         [auth]\nmode = \"token\"\npublish = true\nplay = true\n\
         [[auth.keys]]\nid = \"k1\"\nsecret_env = \"{SECRET_VAR}\"\n\
         [audit]\nfile = {audit:?}\n\
         [[app]]\nname = \"live\"\nrepublish_grace_secs = 0\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn start(config: &Path) -> Arcly {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arcly"))
        .arg("--config")
        .arg(config)
        .env_remove("ARCLY_CONFIG")
        .env_remove("ARCLY_LOG")
        .env(SECRET_VAR, SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run arcly");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = Arc::new(Mutex::new(Vec::new()));
    let started = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            log.lock().unwrap().push(line.clone());
            if line.contains("arcly started") {
                return line;
            }
        }
        panic!("arcly exited before it started: {:?}", log.lock().unwrap());
    })
    .await
    .expect("arcly starts within 10 s");
    let addr = |name: &str| {
        let at = started.find(&format!("{name}=")).expect("address logged") + name.len() + 1;
        started[at..].split_whitespace().next().unwrap().to_owned()
    };
    let (rtmp, http) = (addr("rtmp"), addr("http"));
    // Keep reading the log (and never let the child block on a full pipe).
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    Arcly { _child: child, rtmp, http, log }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn key() -> TokenKey {
    TokenKey::new("k1", SECRET).unwrap()
}

fn publish_grant() -> Grant {
    Grant::new(Action::Publish, "live", StreamScope::Key("cam1".into())).expires_in(Duration::from_secs(600))
}

/// ffmpeg publishing to live/cam1 with `token`; whether it was refused.
async fn publish_refused(arcly: &Arcly, token: &str) -> String {
    let child = ffmpeg_publish(&format!("rtmp://{}/live/cam1?token={token}", arcly.rtmp));
    let (status, stderr) = finish(child, 20).await;
    assert!(!status.success(), "ffmpeg was allowed to publish with {token}");
    stderr
}

/// A request's status line and the first bytes of its body.
async fn get(arcly: &Arcly, path: &str, headers: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(&arcly.http).await.unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n{headers}Connection: close\r\n\r\n", arcly.http);
    s.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    // Until the head and some body arrived, the response ended, or 10 s.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => raw.extend_from_slice(&buf[..n]),
        }
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n")
            && raw.len() > end + 4 + 64
        {
            break;
        }
    }
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let status = String::from_utf8_lossy(&raw[..end]).split(' ').nth(1).unwrap().parse().unwrap();
    (status, raw[end + 4..].to_vec())
}

async fn wait_live(arcly: &Arcly) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while get(arcly, "/api/v1/streams/live/cam1", "").await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("live/cam1 is live within 10 s");
}

/// The audit file's `refused` lines, once there are `n` of them.
async fn refusals(audit: &Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(audit).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
            .filter(|v| v["action"] == "refused")
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_allow_and_refuse_with_codes_in_the_audit_trail_and_the_log() {
    let dir = arcly_testkit::scratch_dir("auth-e2e");
    let audit = dir.join("audit.jsonl");
    let _ = std::fs::remove_file(&audit);
    let arcly = start(&config(&dir, &audit)).await;

    // Refused publishes, each for its own reason.
    let expired = key().mint(&publish_grant().expires_at(now() - 3600));
    let forged = TokenKey::new("k1", "a guess at the secret, 32 bytes!").unwrap().mint(&publish_grant());
    let elsewhere = key().mint(&publish_grant().ip("192.0.2.1".parse().unwrap()));
    for token in [&expired, &forged, &elsewhere] {
        publish_refused(&arcly, token).await;
    }

    // A valid token (bound to this client's address) publishes.
    let valid = key().mint(&publish_grant().ip("127.0.0.1".parse().unwrap()));
    let publisher = ffmpeg_publish(&format!("rtmp://{}/live/cam1?token={valid}", arcly.rtmp));
    wait_live(&arcly).await;

    // HTTP-FLV play is protected: a bearer token plays, no token does not.
    let play = key().mint(&Grant::new(Action::Play, "live", StreamScope::Prefix(String::new())));
    let (status, body) = get(&arcly, "/live/live/cam1.flv", &format!("Authorization: Bearer {play}\r\n")).await;
    assert_eq!(status, 200);
    // Chunked: the chunk size, then the FLV header.
    assert!(body.windows(4).any(|w| w == b"FLV\x01"), "an FLV stream: {:?}", &body[..body.len().min(16)]);
    let (status, body) = get(&arcly, "/live/live/cam1.flv", "").await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("missing"));
    // The publish token is not a play token.
    let (status, _) = get(&arcly, "/live/live/cam1.flv", &format!("Authorization: Bearer {valid}\r\n")).await;
    assert_eq!(status, 403);

    // HLS: the bearer header, or the token in the query, which playlists
    // carry into every URI they list.
    let bearer = format!("Authorization: Bearer {play}\r\n");
    let (status, body) = get(&arcly, "/live/live/cam1/index.m3u8?_HLS_msn=0", &bearer).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, body) = get(&arcly, &format!("/live/live/cam1/index.m3u8?token={play}&_HLS_msn=0"), "").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains(&format!("init.mp4?token={play}")));
    // Browsers may send the header cross-origin: the preflight allows it.
    let preflight = "Origin: http://player.example\r\nAccess-Control-Request-Method: GET\r\n\
                     Access-Control-Request-Headers: authorization\r\n";
    let mut s = TcpStream::connect(&arcly.http).await.unwrap();
    let head = format!("OPTIONS /live/live/cam1.flv HTTP/1.1\r\nHost: x\r\n{preflight}Connection: close\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    assert!(raw.to_ascii_lowercase().contains("access-control-allow-headers: authorization"), "{raw}");

    let lines = refusals(&audit, 5).await;
    let codes: Vec<&str> = lines.iter().map(|l| l["code"].as_str().unwrap_or("-")).collect();
    assert_eq!(codes, ["expired", "bad_signature", "wrong_ip", "missing", "wrong_action"], "{lines:#?}");
    for line in &lines {
        assert!(line["peer"].as_str().is_some_and(|p| p.starts_with("127.0.0.1:")), "{line}");
        assert_eq!(line["stream"], "live/cam1");
        assert!(!line["reason"].as_str().unwrap().is_empty(), "{line}");
    }
    assert_eq!(lines[..3].iter().map(|l| l["protocol"].as_str().unwrap()).collect::<Vec<_>>(), ["rtmp"; 3]);
    assert_eq!(lines[3]["protocol"], "http");
    let text = std::fs::read_to_string(&audit).unwrap();
    assert_eq!(text.lines().filter(|l| l.contains("\"publish_start\"")).count(), 1, "{text}");

    // The log has each refusal with its code and the peer; no secret, no
    // token.
    let log = arcly.log.lock().unwrap().clone();
    for code in codes {
        assert!(
            log.iter().any(|l| l.contains("authorization denied")
                && l.contains(&format!("code=\"{code}\""))
                && l.contains("peer=\"127.0.0.1:")),
            "no log line for {code}: {log:#?}"
        );
    }
    for l in &log {
        assert!(!l.contains(SECRET) && !l.contains(&valid) && !l.contains(&play), "leaked into the log: {l}");
    }
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_a_configuration_error() {
    let dir = arcly_testkit::scratch_dir("auth-e2e-missing");
    let path = config(&dir, &dir.join("audit.jsonl"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_arcly"))
        .arg("--config")
        .arg(&path)
        .arg("--check-config")
        .env_remove("ARCLY_CONFIG")
        .env_remove(SECRET_VAR)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("auth.keys[0].secret_env: the variable {SECRET_VAR} is not set")), "{stderr}");
}
