//! Playlists: hand-written edge cases, and what the server's packager
//! writes, played part by part through the fMP4 reader.

use std::time::SystemTime;

use arcly_core::frame::{FrameType, Timebase};
use arcly_hls::{HlsConfig, Packager, PlaylistKind};

use super::*;
use crate::fmp4::{FragmentReader, parse_init};

const PLAYLIST: &str = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0,PART-HOLD-BACK=0.6
#EXT-X-PART-INF:PART-TARGET=0.2
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-MAP:URI=\"init.mp4?token=a,b\"
#EXT-X-PROGRAM-DATE-TIME:2026-01-02T03:04:05.678Z
#EXTINF:2.00000,
seg7.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-01-02T03:04:07.678Z
#EXT-X-PART:DURATION=0.40000,URI=\"part8.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.60000,URI=\"part8.1.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=1.00000,URI=\"part8.2.m4s\"
#EXTINF:2.00000,
seg8.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-01-02T03:04:09.678Z
#EXT-X-PART:DURATION=0.20000,URI=\"part9.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.20000,URI=\"part9.1.m4s\"
#EXT-X-PART:DURATION=0.20000,URI=\"part9.2.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part9.3.m4s\"
";

fn parsed(text: &str) -> Playlist {
    let mut p = Playlist::default();
    p.parse(text.as_bytes()).unwrap();
    p
}

#[test]
fn ll_hls_playlist_tags() {
    let p = parsed(PLAYLIST);
    assert_eq!((p.part_target, p.part_hold_back, p.can_block_reload), (Some(0.2), Some(0.6), true));
    assert_eq!((p.next_msn, p.ended), (9, false));
    let names: Vec<_> = p.parts.iter().map(|part| (part.msn, part.index, p.text(&part.uri))).collect();
    assert_eq!(names[0], (8, 0, "part8.0.m4s"));
    assert_eq!(names[5], (9, 2, "part9.2.m4s"));
    assert_eq!(p.text(p.parts[0].map.as_ref().unwrap()), "init.mp4?token=a,b");
    assert_eq!(p.text(p.hint.as_ref().unwrap()), "part9.3.m4s");
    assert_eq!((p.part_count(8), p.part_count(9), p.part_count(7)), (Some(3), None, None));
    assert!(p.find((9, 1)).is_some() && p.find((9, 3)).is_none());
    // 2.6 s of parts, 0.6 s hold-back: the last independent part starting
    // by 2.0 s is part 9.0 (at 2.0 s).
    assert_eq!(p.start(), Some((9, 0)));
    // A longer hold-back goes back to part 8.1 (at 0.4 s).
    let p = parsed(&PLAYLIST.replace("PART-HOLD-BACK=0.6", "PART-HOLD-BACK=2.0"));
    assert_eq!(p.start(), Some((8, 1)));
    // No independent part early enough: the start of the last segment.
    let p = parsed(&PLAYLIST.replace(",INDEPENDENT=YES", "").replace("PART-HOLD-BACK=0.6", "PART-HOLD-BACK=0.3"));
    assert_eq!(p.start(), Some((9, 0)));
}

#[test]
fn skips_endlist_and_errors() {
    let skipped = PLAYLIST.replace("#EXTINF:2.00000,\nseg7.m4s\n", "#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n");
    let p = parsed(&format!("{skipped}#EXT-X-ENDLIST\n"));
    assert_eq!((p.parts[0].msn, p.next_msn, p.ended), (8, 9, true));
    let mut p = Playlist::default();
    assert!(p.parse(b"#EXT-X-VERSION:9\n").is_err());
    assert!(p.parse(b"#EXTM3U\nseg0.m4s\n").is_err());
    assert!(p.parse(b"#EXTM3U\n#EXT-X-PART:DURATION=x,URI=\"a\"\n").is_err());
    assert!(p.parse(b"#EXTM3U\n#EXT-X-PART:DURATION=0.2\n").is_err());
    assert!(p.parse(&[0xff, 0xfe]).is_err());
    // Arbitrary text never panics.
    for cut in 0..PLAYLIST.len() {
        if let Some(text) = PLAYLIST.get(..cut) {
            let _ = p.parse(text.as_bytes());
            let _ = p.start();
        }
    }
}

#[test]
fn attribute_lists() {
    let list = "A=1,URI=\"x,y=z\",INDEPENDENT=YES,B=\"\"";
    assert_eq!(attr(list, "URI"), Some("x,y=z"));
    assert_eq!(attr(list, "INDEPENDENT"), Some("YES"));
    assert_eq!(attr(list, "B"), Some(""));
    assert_eq!(attr(list, "C"), None);
    assert_eq!(attr("URI=\"open", "URI"), None);
}

#[test]
fn target_paths() {
    let t = HlsTarget::new("127.0.0.1:80", "h:80", "/live/a/k/index.m3u8?token=t").unwrap();
    let mut out = String::new();
    t.playlist_path(Some((3, 1)), &mut out);
    assert_eq!(out, "/live/a/k/index.m3u8?token=t&_HLS_msn=3&_HLS_part=1");
    t.resolve("part3.1.m4s?token=t", &mut out).unwrap();
    assert_eq!(out, "/live/a/k/part3.1.m4s?token=t");
    t.resolve("/other/init.mp4", &mut out).unwrap();
    assert_eq!(out, "/other/init.mp4");
    t.resolve("http://h:80/x/seg1.m4s", &mut out).unwrap();
    assert_eq!(out, "/x/seg1.m4s");
    assert!(t.resolve("http://elsewhere/x", &mut out).is_err());
    assert!(t.resolve("https://h:80/x", &mut out).is_err());
    let t = HlsTarget::new("a:1", "a:1", "/index.m3u8").unwrap();
    t.playlist_path(None, &mut out);
    assert_eq!(out, "/index.m3u8");
    assert!(HlsTarget::new("a:1", "a:1", "/live/a/k.flv").is_none());
}

/// The server's packager fed the loadgen's synthetic stream as RTMP
/// delivers it (millisecond timestamps): every part listed, read through
/// the fMP4 reader, gives back the published video timestamps exactly, in
/// order, and the start part is independent and starts with a keyframe.
#[test]
fn packager_parts_give_back_the_published_timestamps() {
    let mut packager = Packager::new(HlsConfig::default());
    let mut published = Vec::new();
    for mut frame in crate::synthetic(1000, 30, 30).take(5 * 77) {
        for (ts, to) in [(frame.dts, &mut frame.dts), (frame.pts, &mut frame.pts)] {
            *to = frame.timebase.rescale(ts, Timebase::MILLIS);
        }
        frame.duration = 0;
        frame.timebase = Timebase::MILLIS;
        if frame.frame_type() == FrameType::Video && !frame.is_config() {
            published.push((frame.dts, frame.is_keyframe()));
        }
        packager.push(&frame, SystemTime::now());
    }
    let text = packager.media_playlist(PlaylistKind::LowLatency, false).unwrap();
    let p = parsed(&text);
    assert!(p.next_msn >= 1, "{text}");
    let init = packager.init_segment().unwrap();
    let mut reader = FragmentReader::new(parse_init(&init).unwrap());
    let mut video = Vec::new();
    for part in &p.parts {
        let body = packager.part(p.text(&part.uri)).unwrap().concat();
        reader.feed(&body).unwrap();
        reader.finish().unwrap();
        let first = reader.out.iter().find(|s| s.handler == Handler::Video).unwrap();
        assert!(!part.independent || first.keyframe, "{} is independent", p.text(&part.uri));
        video.extend(reader.out.drain(..).filter(|s| s.handler == Handler::Video).map(|s| (s.dts_ms, s.keyframe)));
    }
    // All but the newest frames (held by the packager or in the open part).
    assert!(video.len() + 8 >= published.len(), "{} of {}", video.len(), published.len());
    assert_eq!(video[..], published[..video.len()]);
    let start = p.start().unwrap();
    assert!(p.find(start).unwrap().independent);
}
