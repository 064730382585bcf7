//! Shared setup for the server tests: the server in-process on
//! 127.0.0.1:0, ffmpeg as the publisher, a minimal HTTP/1.1 client.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use arcly_server::{Config, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;

/// A test configuration: both listeners on 127.0.0.1:0, no republish
/// grace (a stream ends when ffmpeg leaves), HTTP-FLV players wait up to
/// 10 s for a stream.
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.rtmp.listen = "127.0.0.1:0".parse().unwrap();
    c.http.listen = "127.0.0.1:0".parse().unwrap();
    c.http.play_wait_ms = 10_000;
    c.apps[0].republish_grace_secs = 0.0;
    c
}

pub async fn start() -> Server {
    Server::start(test_config()).await.expect("server starts")
}

pub fn rtmp_url(server: &Server, key: &str) -> String {
    format!("rtmp://{}/live/{key}", server.rtmp_addr())
}

pub fn http_url(server: &Server, path: &str) -> String {
    format!("http://{}{path}", server.http_addr())
}

// Not every test binary uses both.
#[allow(unused_imports)]
pub use arcly_testkit::peer::{finish, spawn};

/// ffmpeg publishing testdata/h264_aac.flv (3 s, 75 video and 142 audio
/// frames) over RTMP, in real time.
pub fn ffmpeg_publish(url: &str) -> Child {
    ffmpeg_publish_looped(url, 0)
}

/// Like [`ffmpeg_publish`], the file played `1 + loops` times.
pub fn ffmpeg_publish_looped(url: &str, loops: u32) -> Child {
    let src = arcly_testkit::testdata("h264_aac.flv");
    let loops = loops.to_string();
    let args = [
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-re",
        "-stream_loop",
        &loops,
        "-i",
        src.to_str().unwrap(),
        "-c",
        "copy",
        "-f",
        "flv",
        url,
    ];
    spawn("ffmpeg", "ffmpeg", &args)
}

/// Waits until `app/key` is live on the server.
pub async fn wait_live(server: &Server, key: &str, secs: u64) {
    let id = format!("live/{key}").parse().unwrap();
    tokio::time::timeout(Duration::from_secs(secs), async {
        while server.engine().lookup(&id).is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("stream live/{key} not live within {secs} s"));
}

/// An HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Sends a request head and returns the connected socket.
pub async fn request(server: &Server, path: &str, extra_headers: &[(&str, &str)]) -> TcpStream {
    let mut socket = TcpStream::connect(server.http_addr()).await.expect("connect");
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", server.http_addr());
    for (k, v) in extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).await.unwrap();
    socket
}

/// A whole request/response (Connection: close; chunked bodies decoded).
pub async fn get_with(server: &Server, path: &str, extra_headers: &[(&str, &str)]) -> Response {
    let mut socket = request(server, path, extra_headers).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("GET {path}: no complete response in 30 s"))
        .expect("read");
    parse(&raw)
}

pub async fn get(server: &Server, path: &str) -> Response {
    get_with(server, path, &[]).await
}

pub fn parse(raw: &[u8]) -> Response {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("response head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Response { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).expect("chunk size");
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// The HLS demuxer options for reading a live playlist from its first
/// segment, ending after 3 reloads brought no new segment: arcly-hls keeps
/// an ended stream's playlist open (no `EXT-X-ENDLIST`) for a publisher to
/// come back, so ffmpeg would otherwise reload it until it is dropped.
const HLS_LIVE: [&str; 4] = ["-live_start_index", "0", "-m3u8_hold_counters", "3"];

/// ffprobe's streams (`-count_packets -show_streams`) of a live HLS URL.
pub fn ffprobe_hls(url: &str) -> Vec<std::collections::BTreeMap<String, String>> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error"])
        .args(HLS_LIVE)
        .args(["-count_packets", "-show_streams", url])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ffprobe` ({e}): install the Debian package `ffmpeg`"));
    assert!(out.status.success(), "ffprobe {url} failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut streams = Vec::new();
    let mut current = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        match line {
            "[STREAM]" => current = Some(std::collections::BTreeMap::new()),
            "[/STREAM]" => streams.extend(current.take()),
            _ => {
                if let (Some(cur), Some((k, v))) = (current.as_mut(), line.split_once('=')) {
                    cur.insert(k.to_owned(), v.to_owned());
                }
            }
        }
    }
    streams
}

/// What `ffmpeg -v error -i URL -f null -` prints for a live HLS URL:
/// empty when it decodes everything without an error.
pub fn ffmpeg_hls_errors(url: &str) -> String {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error"])
        .args(HLS_LIVE)
        .args(["-i", url, "-f", "null", "-"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ffmpeg` ({e}): install the Debian package `ffmpeg`"));
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        text.push_str(&format!("\nffmpeg exited with {}", out.status));
    }
    text
}
