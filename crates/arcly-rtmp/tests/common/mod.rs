//! Shared setup for the real-peer tests: an engine with the application
//! "live" and an RTMP server on 127.0.0.1:0, child processes that die with
//! the test, and a minimal RTMP client built from this crate's sans-IO parts.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arcly_core::engine::{AppSpec, Engine};
use arcly_mux::amf0::Amf0Value;
use arcly_rtmp::chunk::{ChunkDecoder, ChunkEncoder, DecoderLimits};
use arcly_rtmp::command::Command;
use arcly_rtmp::handshake::ClientHandshake;
use arcly_rtmp::message::{Message, types};
use arcly_rtmp::{RtmpServer, ServerConfig};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

/// A running engine with the RTMP server.
pub struct TestServer {
    pub engine: Engine,
    pub addr: SocketAddr,
    token: CancellationToken,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

impl TestServer {
    pub async fn start(play_wait: Duration) -> Self {
        Self::with(ServerConfig { play_wait, ..ServerConfig::default() }, AppSpec::new("live")).await
    }

    /// With `config` (its listen address is replaced by 127.0.0.1:0) and `app`.
    pub async fn with(config: ServerConfig, app: AppSpec) -> Self {
        Self::with_observer(config, app, Arc::new(arcly_core::observe::NoopObserver)).await
    }

    /// Like [`TestServer::with`], the engine reporting to `observer`.
    pub async fn with_observer(
        config: ServerConfig,
        app: AppSpec,
        observer: Arc<dyn arcly_core::observe::Observer>,
    ) -> Self {
        let config = ServerConfig { listen: "127.0.0.1:0".parse().unwrap(), ..config };
        let (server, addr) = RtmpServer::bind(config).await.expect("bind");
        let engine = Engine::builder().application(app).observer(observer).inbound(Arc::new(server)).build();
        let token = CancellationToken::new();
        let (e, t) = (engine.clone(), token.clone());
        tokio::spawn(async move { e.run(t).await });
        Self { engine, addr, token }
    }

    pub fn url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.addr)
    }
}

// Not every test binary uses both.
#[allow(unused_imports)]
pub use arcly_testkit::peer::{finish, spawn};

pub fn ffmpeg_publish(url: &str, realtime: bool, extra: &[&str]) -> Child {
    let src = arcly_testkit::testdata("h264_aac.flv");
    let mut args = vec!["-hide_banner", "-nostdin", "-v", "error"];
    if realtime {
        args.push("-re");
    }
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-i", src.to_str().unwrap(), "-c", "copy", "-f", "flv", url]);
    spawn("ffmpeg", "ffmpeg", &args)
}

/// A minimal RTMP client for tests.
pub struct TestClient {
    socket: TcpStream,
    enc: ChunkEncoder,
    dec: ChunkDecoder,
}

impl TestClient {
    pub async fn connect(addr: SocketAddr, app: &str) -> Self {
        let mut socket = TcpStream::connect(addr).await.expect("connect");
        socket.set_nodelay(true).expect("nodelay");
        let (mut hs, c0c1) = ClientHandshake::new(true).unwrap();
        socket.write_all(&c0c1).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut rest = Vec::new();
        while !hs.is_done() {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "server closed during handshake");
            let (used, c2) = hs.handle(&buf[..n]).unwrap();
            if let Some(c2) = c2 {
                socket.write_all(&c2).await.unwrap();
                rest.extend_from_slice(&buf[used..n]);
            }
        }
        assert!(hs.server_digest_ok(), "the server must answer a digest handshake with a digest");
        let mut dec = ChunkDecoder::new(DecoderLimits::default());
        dec.push(&rest);
        let mut c = Self { socket, enc: ChunkEncoder::new(), dec };
        let obj = Amf0Value::Object(vec![
            ("app".into(), Amf0Value::from(app)),
            ("tcUrl".into(), Amf0Value::from(format!("rtmp://{addr}/{app}"))),
        ]);
        c.command(0, Command::new("connect", 1.0, obj, vec![])).await;
        c.command(0, Command::new("createStream", 2.0, Amf0Value::Null, vec![])).await;
        c
    }

    pub async fn command(&mut self, stream: u32, cmd: Command) {
        self.send(3, types::COMMAND_AMF0, stream, 0, cmd.encode()).await;
    }

    pub async fn send(&mut self, csid: u32, type_id: u8, stream: u32, ts: u32, body: Bytes) {
        let mut parts = Vec::new();
        self.enc.write(csid, type_id, stream, ts, &[body], &mut parts);
        self.socket.write_all(&parts.concat()).await.unwrap();
    }

    pub async fn send_raw(&mut self, data: &[u8]) {
        self.socket.write_all(data).await.unwrap();
    }

    /// The next message, `None` when the server closed the connection.
    pub async fn next(&mut self) -> Option<(u32, Message)> {
        let mut buf = vec![0u8; 65536];
        loop {
            if let Some(m) = self.dec.next_message().ok()? {
                return Some((m.stream_id, Message::parse(m.type_id, m.payload).expect("valid message")));
            }
            let n = self.socket.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            self.dec.push(&buf[..n]);
        }
    }

    /// Reads until a command with status `code` (panics after `secs`).
    pub async fn wait_status(&mut self, code: &str, secs: u64) {
        tokio::time::timeout(Duration::from_secs(secs), async {
            loop {
                match self.next().await {
                    Some((_, Message::Command(c))) if c.status_code() == Some(code) => return,
                    Some(_) => {}
                    None => panic!("connection closed before {code}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {code} within {secs} s"));
    }
}
