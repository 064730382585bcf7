//! Test support shared by the arcly crates' tests (a dev-dependency only).
//!
//! - [`testdata`]: the committed test streams in the repository's
//!   `testdata/` folder (see `testdata/generate.sh` for how each was made).
//! - [`ffprobe`], [`ffprobe_packets`], [`ffmpeg_errors`]: ffmpeg's tools as
//!   the reference peer. A missing tool fails the test with the Debian
//!   package to install; tests never skip silently.
//! - [`promtool_check_metrics`]: Prometheus's own checker of a metrics
//!   exposition (Debian package `prometheus`), failing like the others
//!   when missing.
//! - [`ivf`]: frames of an IVF file (AV1, VP9 test streams).
//! - [`peer`]: real peers (ffmpeg, rtmpdump, GStreamer) as child processes
//!   of async tests.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;

/// The path of a committed test stream.
///
/// # Panics
/// If the file does not exist.
pub fn testdata(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata").join(name);
    assert!(path.is_file(), "test stream {} is missing; see testdata/generate.sh", path.display());
    path
}

/// The bytes of a committed test stream.
pub fn read_testdata(name: &str) -> Bytes {
    Bytes::from(std::fs::read(testdata(name)).expect("read test stream"))
}

/// A scratch directory for one test, emptied first.
pub fn scratch_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("arcly-test-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Runs a tool, failing the test with the package to install when missing.
fn run(tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run `{tool}` ({e}): install the Debian package `ffmpeg` (cargo xtask ci does this as root)")
    })
}

/// One section (stream, packet, format) of ffprobe's output as key/value.
pub type Section = BTreeMap<String, String>;

fn parse_default_format(text: &str, section: &str) -> Vec<Section> {
    let open = format!("[{}]", section.to_uppercase());
    let close = format!("[/{}]", section.to_uppercase());
    let mut out = Vec::new();
    let mut current: Option<Section> = None;
    for line in text.lines() {
        if line == open {
            current = Some(Section::new());
        } else if line == close {
            out.extend(current.take());
        } else if let (Some(cur), Some((k, v))) = (current.as_mut(), line.split_once('=')) {
            cur.insert(k.to_owned(), v.to_owned());
        }
    }
    out
}

/// ffprobe's streams of a file: `codec_name`, `profile`, `width`, `height`,
/// `r_frame_rate`, `sample_rate`, `channels`, `nb_read_packets` (packets are
/// counted), and the rest of `-show_streams`.
///
/// # Panics
/// If ffprobe is missing or cannot read the file (its stderr is shown).
pub fn ffprobe(path: &Path) -> Vec<Section> {
    let p = path.to_str().expect("utf-8 path");
    let out = run("ffprobe", &["-v", "error", "-count_packets", "-show_streams", p]);
    assert!(out.status.success(), "ffprobe {p} failed: {}", String::from_utf8_lossy(&out.stderr));
    parse_default_format(&String::from_utf8_lossy(&out.stdout), "stream")
}

/// A packet as ffprobe reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbePacket {
    /// Stream index.
    pub stream: usize,
    /// Presentation timestamp in the stream's timebase, if any.
    pub pts: Option<i64>,
    /// Decode timestamp in the stream's timebase, if any.
    pub dts: Option<i64>,
    /// Presentation time in seconds, if any.
    pub pts_time: Option<f64>,
    /// Decode time in seconds, if any.
    pub dts_time: Option<f64>,
    /// Payload size in bytes.
    pub size: usize,
    /// Keyframe flag (`K` in ffprobe's flags).
    pub keyframe: bool,
}

/// Every packet of a file, in file order.
pub fn ffprobe_packets(path: &Path) -> Vec<ProbePacket> {
    let p = path.to_str().expect("utf-8 path");
    let out = run("ffprobe", &["-v", "error", "-show_packets", p]);
    assert!(out.status.success(), "ffprobe {p} failed: {}", String::from_utf8_lossy(&out.stderr));
    parse_default_format(&String::from_utf8_lossy(&out.stdout), "packet")
        .into_iter()
        .map(|s| ProbePacket {
            stream: s.get("stream_index").and_then(|v| v.parse().ok()).unwrap_or(0),
            pts: s.get("pts").and_then(|v| v.parse().ok()),
            dts: s.get("dts").and_then(|v| v.parse().ok()),
            pts_time: s.get("pts_time").and_then(|v| v.parse().ok()),
            dts_time: s.get("dts_time").and_then(|v| v.parse().ok()),
            size: s.get("size").and_then(|v| v.parse().ok()).unwrap_or(0),
            keyframe: s.get("flags").is_some_and(|f| f.contains('K')),
        })
        .collect()
}

/// What `ffmpeg -v error -i FILE -f null -` prints: empty when ffmpeg
/// decodes the whole file without an error.
pub fn ffmpeg_errors(path: &Path) -> String {
    let p = path.to_str().expect("utf-8 path");
    let out = run("ffmpeg", &["-hide_banner", "-nostdin", "-v", "error", "-i", p, "-f", "null", "-"]);
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        text.push_str(&format!("\nffmpeg exited with {}", out.status));
    }
    text
}

/// What `promtool check metrics` says about a metrics exposition (the
/// Prometheus text format, given on its standard input): `Ok(())` when it
/// finds no problem, else its output (parse errors and lint problems such
/// as a counter without `_total` or a name with a non-base unit).
///
/// # Panics
/// If promtool is missing: install the Debian package `prometheus`
/// (`cargo xtask ci` does, as root).
pub fn promtool_check_metrics(text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `promtool` ({e}): install the Debian package `prometheus` (cargo xtask ci does this as root)")
        });
    let mut stdin = child.stdin.take().expect("stdin piped");
    stdin.write_all(text.as_bytes()).expect("write to promtool");
    drop(stdin);
    let out = child.wait_with_output().expect("wait for promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && said.trim().is_empty() { Ok(()) } else { Err(format!("{}\n{said}", out.status)) }
}

/// Reading IVF files (the AV1 and VP9 test streams).
pub mod ivf {
    use bytes::Bytes;

    /// One frame of an IVF file.
    #[derive(Clone, Debug)]
    pub struct IvfFrame {
        /// Presentation timestamp in the file's timebase.
        pub pts: i64,
        /// The frame.
        pub data: Bytes,
    }

    /// An IVF file's header fields and frames.
    #[derive(Clone, Debug)]
    pub struct Ivf {
        /// FourCC (`AV01`, `VP90`).
        pub fourcc: [u8; 4],
        /// Width in pixels.
        pub width: u16,
        /// Height in pixels.
        pub height: u16,
        /// Timebase denominator (IVF's "rate", stored first).
        pub timebase_den: u32,
        /// Timebase numerator (scale).
        pub timebase_num: u32,
        /// The frames.
        pub frames: Vec<IvfFrame>,
    }

    /// Parses a whole IVF file.
    ///
    /// # Panics
    /// On a malformed file (test data is trusted).
    pub fn read(data: &Bytes) -> Ivf {
        assert_eq!(&data[..4], b"DKIF", "not an IVF file");
        let u16le = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]);
        let u32le = |o: usize| u32::from_le_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]]);
        let header_len = usize::from(u16le(6));
        let mut frames = Vec::new();
        let mut pos = header_len;
        while pos + 12 <= data.len() {
            let size = u32le(pos) as usize;
            let pts = i64::from_le_bytes(data[pos + 4..pos + 12].try_into().expect("8 bytes"));
            frames.push(IvfFrame { pts, data: data.slice(pos + 12..pos + 12 + size) });
            pos += 12 + size;
        }
        Ivf {
            fourcc: data[8..12].try_into().expect("4 bytes"),
            width: u16le(12),
            height: u16le(14),
            timebase_den: u32le(16),
            timebase_num: u32le(20),
            frames,
        }
    }
}

/// Real peers as child processes of async tests.
pub mod peer {
    use std::process::{ExitStatus, Stdio};
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::process::{Child, Command};

    /// Spawns a tool that is killed when dropped; a missing tool fails the
    /// test with the Debian package to install.
    pub fn spawn(tool: &str, package: &str, args: &[&str]) -> Child {
        Command::new(tool)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{tool}` ({e}): install the Debian package `{package}`"))
    }

    /// Waits for a child up to `secs`; returns its status and stderr.
    ///
    /// # Panics
    /// If it does not exit in time, or was not spawned by [`spawn`].
    pub async fn finish(mut child: Child, secs: u64) -> (ExitStatus, String) {
        let mut stderr = child.stderr.take().expect("stderr piped");
        let mut text = String::new();
        let read = async {
            let _ = stderr.read_to_string(&mut text).await;
            child.wait().await
        };
        let status = tokio::time::timeout(Duration::from_secs(secs), read)
            .await
            .unwrap_or_else(|_| panic!("child did not exit within {secs} s"))
            .expect("wait");
        (status, text)
    }
}
