//! Real peers: packaged test streams read back by ffprobe and ffmpeg.

mod common;

use std::path::Path;

use arcly_core::frame::{FrameType, MediaFrame};
use arcly_hls::{HlsConfig, Packager, PlaylistKind};
use common::{Line, now, parse};

/// Packages `frames` (window large enough to keep every segment), writes
/// both playlists and every file they reference to a scratch directory, and
/// returns the directory.
fn package(test: &str, frames: &[MediaFrame]) -> std::path::PathBuf {
    let mut p = Packager::new(HlsConfig { window: 1000, ..HlsConfig::default() });
    for f in frames {
        p.push(f, now());
    }
    p.finish();
    let dir = arcly_testkit::scratch_dir(test);
    std::fs::create_dir_all(dir.join("ts")).unwrap();
    for (kind, path) in [(PlaylistKind::LowLatency, "index.m3u8"), (PlaylistKind::Ts, "ts/index.m3u8")] {
        let text = p.media_playlist(kind, false).unwrap();
        std::fs::write(dir.join(path), &text).unwrap();
        let base = Path::new(path).parent().unwrap();
        for line in parse(&text) {
            let uri = match line {
                Line::Uri(u) => u,
                Line::Tag(name, value) if name == "EXT-X-MAP" => common::attrs(&value)["URI"].clone(),
                _ => continue,
            };
            let data: Vec<u8> = if uri.starts_with("init") {
                p.init_segment().unwrap().to_vec()
            } else {
                p.segment(kind, &uri).unwrap().concat()
            };
            std::fs::write(dir.join(base).join(&uri), data).unwrap();
        }
    }
    std::fs::write(dir.join("multivariant.m3u8"), p.multivariant().unwrap()).unwrap();
    dir
}

/// (codec_name, packets) per stream as ffprobe counts them.
fn probe(path: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = arcly_testkit::ffprobe(path)
        .into_iter()
        .map(|s| (s["codec_name"].clone(), s["nb_read_packets"].parse().unwrap()))
        .collect();
    out.sort();
    out
}

fn check(test: &str, frames: &[MediaFrame], want: &[(&str, u64)]) {
    let dir = package(test, frames);
    let mut want: Vec<(String, u64)> = want.iter().map(|(c, n)| ((*c).to_owned(), *n)).collect();
    want.sort();
    for playlist in ["index.m3u8", "ts/index.m3u8"] {
        let path = dir.join(playlist);
        assert_eq!(probe(&path), want, "{test}: {playlist}");
        let errors = arcly_testkit::ffmpeg_errors(&path);
        assert!(errors.is_empty(), "{test}: ffmpeg errors on {playlist}: {errors}");
    }
}

fn count(frames: &[MediaFrame], ty: FrameType) -> u64 {
    frames.iter().filter(|f| !f.is_config() && f.frame_type() == ty).count() as u64
}

#[test]
fn h264_aac_plays_in_both_formats() {
    let frames = common::demux("h264_aac.ts");
    let source = probe(&arcly_testkit::testdata("h264_aac.ts"));
    assert_eq!(count(&frames, FrameType::Video), 75);
    check("hls-h264-aac", &frames, &source.iter().map(|(c, n)| (c.as_str(), *n)).collect::<Vec<_>>());
}

#[test]
fn hevc_aac_plays_in_both_formats() {
    let frames = common::demux("hevc_aac.ts");
    let source = probe(&arcly_testkit::testdata("hevc_aac.ts"));
    assert_eq!(count(&frames, FrameType::Video), 75);
    check("hls-hevc-aac", &frames, &source.iter().map(|(c, n)| (c.as_str(), *n)).collect::<Vec<_>>());
}

#[test]
fn audio_only_plays() {
    let frames: Vec<_> =
        common::demux("h264_aac.ts").into_iter().filter(|f| f.frame_type() == FrameType::Audio).collect();
    let n = count(&frames, FrameType::Audio);
    check("hls-audio-only", &frames, &[("aac", n)]);
}

#[test]
fn video_only_plays() {
    let frames: Vec<_> =
        common::demux("h264_aac.ts").into_iter().filter(|f| f.frame_type() == FrameType::Video).collect();
    check("hls-video-only", &frames, &[("h264", 75)]);
}

#[test]
fn multivariant_describes_the_stream() {
    let dir = package("hls-multivariant", &common::demux("h264_aac.ts"));
    let text = std::fs::read_to_string(dir.join("multivariant.m3u8")).unwrap();
    let lines = parse(&text);
    let a = common::attrs(common::tag(&lines, "EXT-X-STREAM-INF"));
    let codecs: Vec<&str> = a["CODECS"].split(',').collect();
    assert!(codecs[0].starts_with("avc1.") && codecs[0].len() == 11, "{codecs:?}");
    assert_eq!(codecs[1], "mp4a.40.2");
    let bandwidth: u64 = a["BANDWIDTH"].parse().unwrap();
    let average: u64 = a["AVERAGE-BANDWIDTH"].parse().unwrap();
    assert!(bandwidth >= average && average > 10_000, "{bandwidth} {average}");
    let streams = arcly_testkit::ffprobe(&arcly_testkit::testdata("h264_aac.ts"));
    let video = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    assert_eq!(a["RESOLUTION"], format!("{}x{}", video["width"], video["height"]));
    let fps: f64 = a["FRAME-RATE"].parse().unwrap();
    assert!((fps - 25.0).abs() < 0.5, "{fps}");
    assert_eq!(common::uris(&lines), ["index.m3u8"]);
    // ffprobe follows the multivariant playlist too.
    assert_eq!(arcly_testkit::ffmpeg_errors(&dir.join("multivariant.m3u8")), "");
}

#[test]
fn hevc_codec_string() {
    let dir = package("hls-hevc-codecs", &common::demux("hevc_aac.ts"));
    let text = std::fs::read_to_string(dir.join("multivariant.m3u8")).unwrap();
    let a = common::attrs(common::tag(&parse(&text), "EXT-X-STREAM-INF"));
    let codecs: Vec<&str> = a["CODECS"].split(',').collect();
    // Main profile: hvc1.1.6.L<level>.B0 (or .90 with only progressive).
    assert!(codecs[0].starts_with("hvc1.1.6.L"), "{codecs:?}");
    assert_eq!(codecs[1], "mp4a.40.2");
}
