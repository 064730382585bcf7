//! Recording with real peers: ffmpeg publishes over RTMP, ffprobe and
//! ffmpeg read the files back. The server runs in-process for the 30 s
//! proof and as the `arcly` binary where it must be killed (crash safety)
//! or its log read (write failures).
#![allow(clippy::print_stderr)] // Measured figures are printed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arcly_server::Server;
use arcly_server::record::RecordFormatName;
use arcly_testkit::{Section, ffmpeg_errors, ffprobe, ffprobe_packets};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use common::{finish, spawn};

/// ffmpeg publishing testdata/h264_aac.flv looped in real time for `secs`
/// to `url`, and writing what it sends to `sent` too (the tee muxer), so
/// the test knows every packet that went out.
fn publish_looped(url: &str, secs: u32, sent: Option<&Path>) -> Child {
    let src = arcly_testkit::testdata("h264_aac.flv");
    let secs = secs.to_string();
    let mut args = vec![
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-re",
        "-stream_loop",
        "-1",
        "-i",
        src.to_str().unwrap(),
        "-t",
        &secs,
        "-map",
        "0",
        "-c",
        "copy",
    ];
    let tee;
    match sent {
        Some(path) => {
            tee = format!("[f=flv]{url}|[f=flv]{}", path.to_str().unwrap());
            args.extend(["-f", "tee", &tee]);
        }
        None => args.extend(["-f", "flv", url]),
    }
    spawn("ffmpeg", "ffmpeg", &args)
}

fn packets(streams: &[Section], codec: &str) -> usize {
    streams
        .iter()
        .filter(|s| s.get("codec_name").map(String::as_str) == Some(codec))
        .map(|s| s["nb_read_packets"].parse::<usize>().unwrap())
        .sum()
}

/// ffprobe's container duration of a file or playlist, in seconds.
fn duration(path: &Path) -> f64 {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe (Debian package ffmpeg)");
    assert!(out.status.success(), "ffprobe {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|e| panic!("duration of {path:?}: {e}"))
}

/// A stream's recording on disk: the playlists and media files, sorted.
fn recording(root: &Path, stream: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let dir = root.join(stream);
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("no recording in {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    all.into_iter().partition(|p| p.extension().is_some_and(|e| e == "m3u8"))
}

/// The EXTINF durations and URIs of a playlist.
fn listed(playlist: &str) -> Vec<(f64, String)> {
    let mut out = Vec::new();
    let mut lines = playlist.lines();
    while let Some(line) = lines.next() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            let d: f64 = d.trim_end_matches(',').parse().unwrap();
            let uri = lines.by_ref().find(|l| !l.starts_with('#')).unwrap().to_owned();
            out.push((d, uri));
        }
    }
    out
}

/// Checks one file: it decodes without an error, has H.264 and AAC and
/// starts with a keyframe. Returns its video and audio packet counts.
fn check_file(file: &Path) -> (usize, usize) {
    let errors = ffmpeg_errors(file);
    assert!(errors.is_empty(), "{} does not decode cleanly: {errors}", file.display());
    let streams = ffprobe(file);
    let codecs: Vec<&str> = streams.iter().map(|s| s["codec_name"].as_str()).collect();
    assert_eq!(codecs, ["h264", "aac"], "{}", file.display());
    let first_video = ffprobe_packets(file).into_iter().find(|p| p.stream == 0).expect("video packets");
    assert!(first_video.keyframe, "{} does not start with a keyframe", file.display());
    (packets(&streams, "h264"), packets(&streams, "aac"))
}

async fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out after {secs} s waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn record_server(root: &Path, format: RecordFormatName) -> Server {
    let mut config = common::test_config();
    config.record.enabled = true;
    config.record.root = root.to_owned();
    config.record.format = format;
    config.record.max_duration_secs = 10;
    Server::start(config).await.expect("server starts")
}

/// The proof: ffmpeg publishes for 30 s; the recording has the
/// codecs, the duration and every frame ffmpeg sent, in files of about 10 s
/// that each start with a keyframe and decode cleanly, and its VOD
/// playlist lists them all. fMP4 and MPEG-TS side by side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_seconds_of_ffmpeg_are_recorded_whole_in_fmp4_and_ts() {
    let formats = [(RecordFormatName::Fmp4, "mp4"), (RecordFormatName::Ts, "ts")];
    let mut runs = Vec::new();
    for (format, ext) in formats {
        let root = arcly_testkit::scratch_dir(&format!("record-30s-{ext}"));
        let server = record_server(&root.join("rec"), format).await;
        let sent = root.join("sent.flv");
        let ffmpeg = publish_looped(&common::rtmp_url(&server, "proof"), 30, Some(&sent));
        runs.push((server, root, sent, ffmpeg, ext));
    }
    let mut checked = Vec::new();
    for (server, root, sent, ffmpeg, ext) in runs {
        let (status, stderr) = finish(ffmpeg, 60).await;
        assert!(status.success(), "ffmpeg failed: {stderr}");
        let recorder = server.recorder().expect("recording on").clone();
        wait_until("the recording ends", 20, || recorder.stats().recordings_active == 0).await;
        server.shutdown();
        server.wait().await.unwrap();
        checked.push((root, sent, ext));
    }
    for (root, sent, ext) in checked {
        let sent_streams = ffprobe(&sent);
        let (sent_video, sent_audio) = (packets(&sent_streams, "h264"), packets(&sent_streams, "aac"));
        let sent_duration = duration(&sent);
        // The video's span: first to last decode time, plus one frame.
        let sent_dts: Vec<f64> =
            ffprobe_packets(&sent).iter().filter(|p| p.stream == 0).filter_map(|p| p.dts_time).collect();
        let sent_span = sent_dts[sent_dts.len() - 1] - sent_dts[0] + 0.04;
        // 30 s at 25 fps, looping a 3.08 s file.
        assert!(sent_video.abs_diff(750) <= 25, "ffmpeg sent {sent_video} video frames");

        let (playlists, files) = recording(&root.join("rec"), "live/proof");
        assert_eq!(playlists.len(), 1, "one recording: {playlists:?}");
        assert!(files.iter().all(|f| f.extension().unwrap() == ext));
        assert!((3..=4).contains(&files.len()), "files of about 10 s: {files:?}");
        let (mut video, mut audio) = (0, 0);
        let mut file_seconds = 0.0;
        for file in &files {
            let (v, a) = check_file(file);
            video += v;
            audio += a;
            file_seconds += duration(file);
        }
        let text = std::fs::read_to_string(&playlists[0]).unwrap();
        let entries = listed(&text);
        let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(entries.iter().map(|(_, u)| u.clone()).collect::<Vec<_>>(), names, "{text}");
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD") && text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
        let listed_seconds: f64 = entries.iter().map(|(d, _)| d).sum();
        let playlist_seconds = duration(&playlists[0]);
        let errors = ffmpeg_errors(&playlists[0]);
        assert!(errors.is_empty(), "the playlist does not decode cleanly: {errors}");
        let via_playlist = ffprobe(&playlists[0]);

        eprintln!(
            "{ext}: sent {sent_video} video + {sent_audio} audio frames, {sent_duration:.3} s (video {sent_span:.3} s); \
             recorded {} files, \
             {video} video + {audio} audio frames; durations: playlist EXTINF sum {listed_seconds:.3} s, \
             ffprobe of the playlist {playlist_seconds:.3} s, files {file_seconds:.3} s",
            files.len()
        );
        assert_eq!(video, sent_video, "{ext}: every video frame sent is recorded, once");
        assert_eq!(audio, sent_audio, "{ext}: every audio frame sent is recorded, once");
        assert_eq!(
            (packets(&via_playlist, "h264"), packets(&via_playlist, "aac")),
            (sent_video, sent_audio),
            "{ext}: the playlist plays every frame"
        );
        // Within one GOP (1 s) of the 30 s published, and within a
        // millisecond of the video span ffmpeg sent (the playlist's EXTINF
        // measure the video track).
        for (what, secs) in [("EXTINF sum", listed_seconds), ("playlist", playlist_seconds)] {
            assert!((secs - 30.0).abs() <= 1.0, "{ext}: {what} lasts {secs} s");
            assert!((secs - sent_duration).abs() <= 0.1, "{ext}: {what} lasts {secs} s, sent {sent_duration} s");
        }
        assert!(
            (listed_seconds - sent_span).abs() <= 0.001,
            "{ext}: EXTINF sum {listed_seconds}, video sent {sent_span}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}

/// The `arcly` binary started with `config`; its log lines are collected.
struct Binary {
    child: Child,
    rtmp: String,
    http: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Binary {
    async fn start(config: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_arcly"))
            .args(["--config", config.to_str().unwrap(), "--rtmp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .args(["--log", "info"])
            .env_remove("ARCLY_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run arcly");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let started = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("arcly started") {
                    return line;
                }
            }
            panic!("arcly exited before it started");
        })
        .await
        .expect("arcly starts within 10 s");
        let field = |name: &str| {
            let at = started.find(name).unwrap_or_else(|| panic!("{name} in {started}")) + name.len();
            started[at..].split_whitespace().next().unwrap().to_owned()
        };
        let (rtmp, http) = (field("rtmp="), field("http="));
        let log = Arc::new(Mutex::new(Vec::new()));
        tokio::spawn({
            let log = log.clone();
            async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    log.lock().unwrap().push(line);
                }
            }
        });
        Self { child, rtmp, http, log }
    }

    fn url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.rtmp)
    }

    fn logged(&self, needle: &str) -> Option<String> {
        self.log.lock().unwrap().iter().find(|l| l.contains(needle)).cloned()
    }

    /// `GET /metrics`: the value of an unlabelled sample.
    async fn metric(&self, name: &str) -> Option<f64> {
        let mut s = TcpStream::connect(&self.http).await.unwrap();
        let head = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.http);
        s.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        arcly_metrics::sample(&text, name, "")
    }

    /// `GET /healthz`: the status of the `recorder` check and its detail.
    async fn recorder_health(&self) -> (String, String) {
        let mut s = TcpStream::connect(&self.http).await.unwrap();
        let head = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.http);
        s.write_all(head.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let body = common::parse(&raw).json();
        let check = body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "recorder")
            .unwrap_or_else(|| panic!("no recorder check in {body}"))
            .clone();
        (check["status"].as_str().unwrap().to_owned(), check["detail"].as_str().unwrap().to_owned())
    }
}

fn config_file(dir: &Path, record: &str) -> PathBuf {
    let path = dir.join("arcly.toml");
    let text = format!(
        "idle_timeout_secs = 0\n[hls]\nenabled = false\n[record]\nenabled = true\nroot = {:?}\n{record}\n\
         [[app]]\nname = \"live\"\nrepublish_grace_secs = 0.0\n",
        dir.join("rec").to_str().unwrap()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A box header: (size, type) at `at`.
fn box_at(data: &[u8], at: usize) -> Option<(usize, [u8; 4])> {
    let head = data.get(at..at + 8)?;
    let size = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
    Some((size, head[4..8].try_into().unwrap()))
}

/// Video samples (track 1) in the fragments of an fMP4 file whose `moof`
/// and `mdat` are both complete, and whether bytes follow the last one.
fn complete_fragment_samples(data: &[u8]) -> (usize, bool) {
    let mut at = 0;
    let mut samples = 0;
    while let Some((size, kind)) = box_at(data, at) {
        if size < 8 || at + size > data.len() {
            break;
        }
        if &kind == b"moof" {
            let moof = &data[at..at + size];
            let Some((mdat_size, [b'm', b'd', b'a', b't'])) = box_at(data, at + size) else { break };
            if at + size + mdat_size > data.len() {
                break;
            }
            // The video traf's trun sample count.
            let mut i = 0;
            while i + 8 <= moof.len() {
                if &moof[i + 4..i + 8] == b"tfhd" && u32::from_be_bytes(moof[i + 12..i + 16].try_into().unwrap()) == 1 {
                    let trun = moof[i..].windows(4).position(|w| w == b"trun").unwrap() + i - 4;
                    samples += u32::from_be_bytes(moof[trun + 12..trun + 16].try_into().unwrap()) as usize;
                }
                i += 1;
            }
            at += size + mdat_size;
        } else {
            at += size;
        }
    }
    (samples, at < data.len())
}

/// `kill -9` in the middle of a recording: every closed file plays, and the
/// open one plays up to its last complete fragment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_every_file_plays_up_to_its_last_fragment() {
    let dir = arcly_testkit::scratch_dir("record-crash");
    let config = config_file(&dir, "max_duration_secs = 2\nfragment_ms = 500");
    let mut arcly = Binary::start(&config).await;
    let ffmpeg = publish_looped(&arcly.url("crash"), 30, None);
    // Two closed files of 2 s and a third being written.
    let rec = dir.join("rec/live/crash");
    let started = Instant::now();
    wait_until("two files closed", 20, || {
        std::fs::read_dir(&rec).map(|d| d.count()).unwrap_or(0) >= 4 && started.elapsed() > Duration::from_millis(5_300)
    })
    .await;
    let pid = arcly.child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill").args(["-9", &pid]).status().expect("run kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(5), arcly.child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), None, "killed by a signal");
    drop(ffmpeg);

    let (playlists, files) = recording(&dir.join("rec"), "live/crash");
    assert_eq!(playlists.len(), 1);
    let text = std::fs::read_to_string(&playlists[0]).unwrap();
    // Never ended: an EVENT playlist of the closed files.
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT") && !text.contains("ENDLIST"), "{text}");
    let closed: Vec<String> = listed(&text).into_iter().map(|(_, u)| u).collect();
    assert!(closed.len() >= 2, "{text}");
    let (open, done): (Vec<&PathBuf>, Vec<&PathBuf>) =
        files.iter().partition(|f| !closed.contains(&f.file_name().unwrap().to_string_lossy().into_owned()));
    assert_eq!(done.len(), closed.len());
    assert_eq!(open.len(), 1, "one file was being written: {files:?}");
    for file in &done {
        check_file(file);
    }
    let open = open[0];
    let data = std::fs::read(open).unwrap();
    let (complete, torn) = complete_fragment_samples(&data);
    assert!(complete > 0, "the open file has complete fragments");
    let streams = ffprobe(open);
    let video = packets(&streams, "h264");
    eprintln!(
        "open file {}: {} bytes, {complete} video samples in complete fragments, torn tail: {torn}; \
         ffprobe reads {video} video packets; closed files: {}",
        open.display(),
        data.len(),
        done.len()
    );
    if torn {
        // Killed in the middle of an append: the fragment cut short may
        // yield some samples too.
        assert!(video >= complete, "ffprobe reads every complete fragment of the open file: {video} < {complete}");
    } else {
        assert_eq!(video, complete, "ffprobe reads every complete fragment of the open file");
    }
    if !torn {
        let errors = ffmpeg_errors(open);
        assert!(errors.is_empty(), "the open file, cut between fragments, decodes cleanly: {errors}");
    }
    let first_video = ffprobe_packets(open).into_iter().find(|p| p.stream == 0).unwrap();
    assert!(first_video.keyframe);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Makes `dir` refuse new files: read-only for an ordinary user; as root
/// (which ignores permissions) the directory is moved away and a file
/// put in its place. Returns how to undo it.
fn break_dir(dir: &Path) -> Box<dyn FnOnce()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |m| std::fs::Permissions::from_mode(m);
    std::fs::set_permissions(dir, mode(0o555)).unwrap();
    let probe = dir.join("probe");
    if std::fs::write(&probe, b"").is_err() {
        eprintln!("storage broken with a read-only directory (permission denied)");
        let dir = dir.to_owned();
        return Box::new(move || std::fs::set_permissions(&dir, mode(0o755)).unwrap());
    }
    // Root: permissions do not stop it.
    std::fs::remove_file(&probe).unwrap();
    std::fs::set_permissions(dir, mode(0o755)).unwrap();
    let moved = dir.with_extension("moved");
    std::fs::rename(dir, &moved).unwrap();
    std::fs::write(dir, b"a file where the recorder needs a directory").unwrap();
    eprintln!("storage broken with a file in place of the directory (running as root)");
    let dir = dir.to_owned();
    Box::new(move || {
        std::fs::remove_file(&dir).unwrap();
        std::fs::rename(&moved, &dir).unwrap();
    })
}

/// A storage that refuses writes stops the recording (log line, health
/// check), the live player of the same stream keeps receiving frames, and
/// the recording resumes once the storage is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failure_stops_the_recording_not_the_live_stream() {
    let dir = arcly_testkit::scratch_dir("record-write-failure");
    let config = config_file(&dir, "max_duration_secs = 1\nretry_secs = 1");
    let arcly = Binary::start(&config).await;
    let publisher = publish_looped(&arcly.url("wf"), 30, None);
    let rec = dir.join("rec/live/wf");
    wait_until("recording", 10, || std::fs::read_dir(&rec).map(|d| d.count()).unwrap_or(0) >= 2).await;
    // A player of the same stream, for 9 s.
    let played = dir.join("played.flv");
    let player_args = ["-hide_banner", "-nostdin", "-v", "error", "-i", &arcly.url("wf"), "-t", "9"];
    let mut args = player_args.to_vec();
    args.extend(["-c", "copy", "-f", "flv", played.to_str().unwrap()]);
    let player = spawn("ffmpeg", "ffmpeg", &args);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let undo = break_dir(&rec);
    let broken_at = Instant::now();
    let mut health = (String::new(), String::new());
    for _ in 0..100 {
        health = arcly.recorder_health().await;
        if health.0 == "degraded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(health.0, "degraded", "health after the failure: {health:?}");
    assert!(health.1.contains("live/wf"), "{health:?}");
    let line = arcly.logged("recording stopped by a storage error").expect("an error line in the log");
    assert!(line.contains("live/wf") && line.contains("ERROR"), "{line}");
    eprintln!("detected {:?} after the failure: {line}", broken_at.elapsed());
    let errors = arcly.metric("arcly_recorder_write_errors_total").await;
    assert!(errors.is_some_and(|n| n >= 1.0), "the metric counts the failure: {errors:?}");

    // The storage comes back: the recording resumes at a retry (after 1,
    // 2, 4, 8 s: failures in a row double the wait).
    tokio::time::sleep(Duration::from_secs(2)).await;
    undo();
    let mut healthy = false;
    for _ in 0..150 {
        if arcly.recorder_health().await.0 == "healthy" {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "the recording did not resume: {:?}", arcly.recorder_health().await);
    let resumed = arcly.logged("recording resumed").expect("a log line when the recording resumes");
    eprintln!("resumed {:?} after the failure: {resumed}", broken_at.elapsed());

    // The player kept receiving all along.
    let (status, stderr) = finish(player, 30).await;
    assert!(status.success(), "the player failed: {stderr}");
    let streams = ffprobe(&played);
    let video = packets(&streams, "h264");
    assert!(video >= 9 * 25 - 30, "the player got {video} video frames in 9 s");
    let last = ffprobe_packets(&played).iter().filter(|p| p.stream == 0).filter_map(|p| p.dts_time).fold(0.0, f64::max);
    assert!(last >= 8.0, "the player's last frame is at {last} s");
    let (playlists, _) = recording(&dir.join("rec"), "live/wf");
    assert_eq!(playlists.len(), 2, "a new recording after the failure: {playlists:?}");
    drop(publisher);
    drop(arcly);
    std::fs::remove_dir_all(&dir).unwrap();
}
