//! Shared test helpers: test streams, synthetic frames and a tiny playlist
//! parser.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use arcly_core::frame::{CodecId, FrameFlags, FrameType, MediaFrame, Timebase};
use arcly_mux::ts::{DemuxEvent, TsDemuxer};
use bytes::Bytes;

pub const NOW: SystemTime = SystemTime::UNIX_EPOCH;

pub fn now() -> SystemTime {
    NOW + Duration::from_secs(1_700_000_000)
}

/// Every frame (configs included) of a committed TS test stream.
pub fn demux(name: &str) -> Vec<MediaFrame> {
    let data = arcly_testkit::read_testdata(name);
    let mut demux = TsDemuxer::new();
    let mut out = Vec::new();
    for chunk in data.chunks(7 * 188) {
        demux.push(chunk);
        while let Some(e) = demux.poll() {
            if let Ok(DemuxEvent::Frame(f)) = e {
                out.push(f);
            }
        }
    }
    demux.flush();
    while let Some(e) = demux.poll() {
        if let Ok(DemuxEvent::Frame(f)) = e {
            out.push(f);
        }
    }
    out
}

/// The avcC and AudioSpecificConfig of the H.264 test stream.
pub fn configs() -> (MediaFrame, MediaFrame) {
    let frames = demux("h264_aac.ts");
    let video = frames.iter().find(|f| f.is_config() && f.codec == CodecId::H264).unwrap().clone();
    let audio = frames.iter().find(|f| f.is_config() && f.codec == CodecId::Aac).unwrap().clone();
    (video, audio)
}

/// A synthetic stream: `seconds` of video at `fps` (90 kHz) with a keyframe
/// every `gop` frames, and AAC at 48 kHz (1024 samples) when `audio`,
/// interleaved by decode time, configs first.
pub fn synthetic(seconds: u32, fps: u32, gop: u32, video: bool, audio: bool) -> Vec<MediaFrame> {
    let (vc, ac) = configs();
    let mut out = Vec::new();
    if video {
        out.push(vc);
    }
    if audio {
        // AAC-LC 48 kHz stereo.
        out.push(MediaFrame::new(CodecId::Aac, Bytes::from_static(&[0x11, 0x90])).with_flags(FrameFlags::CONFIG));
        let _ = ac;
    }
    let mut frames = Vec::new();
    if video {
        for i in 0..(seconds * fps) {
            let dts = i64::from(i) * 90_000 / i64::from(fps);
            let key = i % gop == 0;
            let payload = if key { &[0, 0, 0, 2, 0x65, 0x88][..] } else { &[0, 0, 0, 2, 0x41, 0x9a][..] };
            let mut f =
                MediaFrame::new(CodecId::H264, Bytes::from_static(payload)).with_timestamps(dts, dts, Timebase::MPEG);
            if key {
                f = f.with_flags(FrameFlags::KEYFRAME);
            }
            frames.push(f);
        }
    }
    if audio {
        let tb = Timebase::sample_rate(48_000).unwrap();
        for i in 0..(i64::from(seconds) * 48_000 / 1024) {
            frames.push(
                MediaFrame::new(CodecId::Aac, Bytes::from_static(&[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]))
                    .with_timestamps(i * 1024, i * 1024, tb),
            );
        }
    }
    frames.sort_by_key(|f| (f.dts_in(Timebase::MICROS), f.frame_type() == FrameType::Audio));
    out.extend(frames);
    out
}

/// One playlist line: a tag with its value, or a URI.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    Tag(String, String),
    Uri(String),
}

/// Parses a playlist; fails the test on a line that is neither.
pub fn parse(text: &str) -> Vec<Line> {
    assert!(text.starts_with("#EXTM3U\n"), "no #EXTM3U: {text}");
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            if let Some(tag) = l.strip_prefix('#') {
                let (name, value) = tag.split_once(':').unwrap_or((tag, ""));
                assert!(name.starts_with("EXT"), "bad tag line {l}");
                Line::Tag(name.to_owned(), value.to_owned())
            } else {
                assert!(!l.contains("://") && !l.starts_with('/'), "URI not relative: {l}");
                Line::Uri(l.to_owned())
            }
        })
        .collect()
}

/// The attribute list of a tag value.
pub fn attrs(value: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = value;
    while !rest.is_empty() {
        let (k, r) = rest.split_once('=').expect("attribute without =");
        let (v, r) = if let Some(q) = r.strip_prefix('"') {
            let end = q.find('"').expect("unterminated quote");
            (q[..end].to_owned(), q[end + 1..].strip_prefix(',').unwrap_or(&q[end + 1..]))
        } else {
            let end = r.find(',').unwrap_or(r.len());
            (r[..end].to_owned(), r.get(end + 1..).unwrap_or(""))
        };
        assert!(out.insert(k.to_owned(), v).is_none(), "duplicate attribute {k}");
        rest = r;
    }
    out
}

/// Values of every tag named `name`.
pub fn tags<'a>(lines: &'a [Line], name: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| match l {
            Line::Tag(n, v) if n == name => Some(v.as_str()),
            _ => None,
        })
        .collect()
}

/// The single value of tag `name`.
pub fn tag<'a>(lines: &'a [Line], name: &str) -> &'a str {
    let all = tags(lines, name);
    assert_eq!(all.len(), 1, "expected one {name}, got {all:?}");
    all[0]
}

/// The URIs in order.
pub fn uris(lines: &[Line]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|l| match l {
            Line::Uri(u) => Some(u.as_str()),
            _ => None,
        })
        .collect()
}
