//! nginx-rtmp as a peer: it pushes to our server (nginx as a publishing
//! client) and pulls from it (nginx as a playing client).

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use arcly_testkit::{ffmpeg_errors, ffprobe, scratch_dir};
use common::{TestServer, ffmpeg_publish, finish, spawn};
use tokio::process::Child;

/// A free port on 127.0.0.1, asked of the OS (nginx cannot report the port
/// it got for `listen 127.0.0.1:0`).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts nginx with the RTMP module: application `live` pushes every
/// stream to `ours`, application `pull` pulls from it.
async fn nginx(dir: &Path, ours: std::net::SocketAddr) -> (Child, u16) {
    let module = "/usr/lib/nginx/modules/ngx_rtmp_module.so";
    assert!(Path::new(module).is_file(), "install the Debian package `libnginx-mod-rtmp`");
    let port = free_port();
    let conf = format!(
        "load_module {module};\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
           application live {{ live on; push rtmp://{ours}/live; }}\n\
           application pull {{ live on; pull rtmp://{ours}/live; }}\n\
         }} }}\n",
        d = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = spawn(
        "nginx",
        "nginx-light",
        &["-p", dir.to_str().unwrap(), "-e", dir.join("error.log").to_str().unwrap(), "-c", path.to_str().unwrap()],
    );
    // Wait until it listens.
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nginx did not start: {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default());
}

fn check(out: &Path) {
    let codecs: Vec<String> = ffprobe(out).iter().filter_map(|s| s.get("codec_name").cloned()).collect();
    assert!(codecs.iter().any(|c| c == "h264") && codecs.iter().any(|c| c == "aac"), "codecs {codecs:?}");
    assert_eq!(ffmpeg_errors(out), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_pushes_to_us_and_pulls_from_us() {
    let server = TestServer::start(Duration::from_secs(10)).await;
    let dir = scratch_dir("rtmp-nginx");
    let (_nginx, port) = nginx(&dir, server.addr).await;

    // ffmpeg -> nginx (live) -> push -> us.
    let _to_nginx = ffmpeg_publish(&format!("rtmp://127.0.0.1:{port}/live/viaNginx"), true, &["-stream_loop", "-1"]);
    let id = "live/viaNginx".parse().unwrap();
    assert!(
        server.engine.wait_for_stream(&id, Duration::from_secs(10)).await.is_some(),
        "nginx did not push to us: {}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
    let out = dir.join("pushed.flv");
    let args = ["-hide_banner", "-nostdin", "-v", "error", "-i", &server.url("viaNginx"), "-t", "1.5", "-c", "copy"];
    let mut args = args.to_vec();
    args.extend_from_slice(&["-f", "flv", "-y", out.to_str().unwrap()]);
    let (status, err) = finish(spawn("ffmpeg", "ffmpeg", &args), 15).await;
    assert!(status.success(), "playing what nginx pushed failed: {err}");
    check(&out);

    // ffmpeg -> us; nginx (pull) plays from us; ffmpeg plays from nginx.
    let _to_us = ffmpeg_publish(&server.url("direct"), true, &["-stream_loop", "-1"]);
    let out = dir.join("pulled.flv");
    let url = format!("rtmp://127.0.0.1:{port}/pull/direct");
    let mut args = vec!["-hide_banner", "-nostdin", "-v", "error", "-i", &url, "-t", "1.5", "-c", "copy"];
    args.extend_from_slice(&["-f", "flv", "-y", out.to_str().unwrap()]);
    let (status, err) = finish(spawn("ffmpeg", "ffmpeg", &args), 15).await;
    assert!(
        status.success(),
        "playing through nginx pull failed: {err}\n{}",
        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
    );
    check(&out);
}
