//! The segmenter and the playlists, checked tag by tag.

mod common;

use std::time::Duration;

use arcly_core::frame::{FrameFlags, FrameType, MediaFrame};
use arcly_hls::{HlsConfig, Packager, PlaylistKind};
use common::{attrs, now, parse, tag, tags, uris};

fn run(config: HlsConfig, frames: &[MediaFrame]) -> Packager {
    let mut p = Packager::new(config);
    for f in frames {
        p.push(f, now());
    }
    p
}

fn big_window() -> HlsConfig {
    HlsConfig { window: 1000, ..HlsConfig::default() }
}

#[test]
fn segments_are_keyframe_aligned_and_parts_bounded() {
    // 25 fps, GOP of 1 s: segments of exactly 2 s, parts of 200 ms = 5 frames.
    let p = run(big_window(), &common::synthetic(10, 25, 25, true, true));
    let segs = p.segments();
    assert_eq!(segs.len(), 4, "{segs:?}");
    for s in &segs {
        assert_eq!(s.timescale, 90_000);
        assert_eq!(s.ticks, 180_000, "{s:?}");
        assert_eq!(s.parts.len(), 10);
        for (i, (ticks, independent)) in s.parts.iter().enumerate() {
            assert!(*ticks <= 18_000, "part longer than the target: {ticks}");
            assert_eq!(*independent, i % 5 == 0, "part {i} of {s:?}");
        }
        assert_eq!(s.parts.iter().map(|p| p.0).sum::<u64>(), s.ticks);
    }
}

#[test]
fn parts_never_exceed_an_uneven_target() {
    // 30 fps (3000 ticks) and a 250 ms part target (22500 ticks): 7 frames
    // fit (21000), 8 do not.
    let config = HlsConfig { part_target: Duration::from_millis(250), ..big_window() };
    let p = run(config, &common::synthetic(9, 30, 60, true, false));
    let segs = p.segments();
    assert!(!segs.is_empty());
    for s in segs {
        for (ticks, _) in &s.parts {
            assert!(*ticks <= 22_500, "{ticks}");
        }
        assert!(s.parts.iter().any(|p| p.0 == 21_000));
    }
}

#[test]
fn long_gop_makes_long_segments_and_raises_target_duration() {
    // GOP of 5 s with a 2 s target: segments of 5 s, never cut inside
    // (the third completes when the keyframe at 15 s arrives).
    let p = run(big_window(), &common::synthetic(16, 25, 125, true, false));
    let segs = p.segments();
    assert_eq!(segs.len(), 3);
    assert!(segs.iter().all(|s| s.ticks == 450_000), "{segs:?}");
    assert_eq!(p.target_duration(), 5);
    let text = p.media_playlist(PlaylistKind::LowLatency, false).unwrap();
    assert_eq!(tag(&parse(&text), "EXT-X-TARGETDURATION"), "5");
}

#[test]
fn audio_only_segments() {
    let p = run(big_window(), &common::synthetic(7, 25, 25, false, true));
    let segs = p.segments();
    assert_eq!(segs.len(), 3);
    assert_eq!(p.target_duration(), 2);
    for s in &segs {
        assert_eq!(s.timescale, 48_000);
        // 93 frames of 1024 samples: the most that fit in 2 s.
        assert_eq!(s.ticks, 93 * 1024);
        assert!(s.parts.iter().all(|(t, ind)| *t <= 9_600 && *ind));
        assert!(s.fmp4_bytes > 0 && s.ts_bytes > 0);
    }
}

#[test]
fn video_only_segments() {
    let p = run(big_window(), &common::synthetic(7, 25, 50, true, false));
    let segs = p.segments();
    assert_eq!(segs.len(), 3);
    assert!(segs.iter().all(|s| s.ticks == 180_000 && s.ts_bytes % 188 == 0));
}

#[test]
fn discontinuity_flag_starts_a_new_timeline() {
    let mut frames = common::synthetic(5, 25, 25, true, true);
    let mut second = common::synthetic(5, 25, 25, true, true);
    second[0].flags |= FrameFlags::DISCONTINUITY;
    frames.extend(second);
    let mut p = run(big_window(), &frames);
    p.finish();
    let segs = p.segments();
    let msns: Vec<u64> = segs.iter().map(|s| s.msn).collect();
    assert_eq!(msns, (0..msns.len() as u64).collect::<Vec<_>>(), "sequence numbers keep increasing");
    let disc: Vec<u64> = segs.iter().filter(|s| s.discontinuity).map(|s| s.msn).collect();
    assert_eq!(disc.len(), 1, "{segs:?}");
    assert!(disc[0] > 0, "segment 0 is never overwritten");
    let text = p.media_playlist(PlaylistKind::LowLatency, false).unwrap();
    let lines = parse(&text);
    assert_eq!(tags(&lines, "EXT-X-DISCONTINUITY").len(), 1);
    let ts = p.media_playlist(PlaylistKind::Ts, false).unwrap();
    assert_eq!(tags(&parse(&ts), "EXT-X-DISCONTINUITY").len(), 1);
}

#[test]
fn backward_jump_is_a_discontinuity() {
    let mut frames = common::synthetic(5, 25, 25, true, false);
    // The same timestamps again, without the flag.
    frames.extend(common::synthetic(5, 25, 25, true, false).into_iter().filter(|f| !f.is_config()));
    let mut p = run(big_window(), &frames);
    p.finish();
    let segs = p.segments();
    assert_eq!(segs.iter().filter(|s| s.discontinuity).count(), 1);
    // Both timelines complete: 5 s each.
    assert_eq!(segs.iter().map(|s| s.ticks).sum::<u64>(), 2 * 5 * 90_000);
}

#[test]
fn window_deletes_old_segments_and_advances_media_sequence() {
    let config = HlsConfig { window: 3, ..HlsConfig::default() };
    let p = run(config, &common::synthetic(20, 25, 25, true, true));
    let segs = p.segments();
    assert_eq!(segs.iter().map(|s| s.msn).collect::<Vec<_>>(), [6, 7, 8]);
    assert_eq!(p.media_sequence(), 6);
    assert!(p.segment(PlaylistKind::LowLatency, "seg5.m4s").is_none());
    assert!(p.segment(PlaylistKind::Ts, "seg5.ts").is_none());
    assert!(p.part("part5.0.m4s").is_none());
    assert!(p.segment(PlaylistKind::LowLatency, "seg6.m4s").is_some());
    for kind in [PlaylistKind::LowLatency, PlaylistKind::Ts] {
        let text = p.media_playlist(kind, false).unwrap();
        let lines = parse(&text);
        assert_eq!(tag(&lines, "EXT-X-MEDIA-SEQUENCE"), "6");
        let segs: Vec<&str> = uris(&lines);
        assert_eq!(segs.len(), 3, "{text}");
    }
}

#[test]
fn discontinuity_sequence_counts_removed_discontinuities() {
    let config = HlsConfig { window: 2, ..HlsConfig::default() };
    let mut frames = common::synthetic(5, 25, 25, true, false);
    let mut second = common::synthetic(9, 25, 25, true, false);
    second[1].flags |= FrameFlags::DISCONTINUITY;
    frames.extend(second);
    let p = run(config, &frames);
    assert_eq!(p.discontinuity_sequence(), 1);
    let text = p.media_playlist(PlaylistKind::LowLatency, false).unwrap();
    assert_eq!(tag(&parse(&text), "EXT-X-DISCONTINUITY-SEQUENCE"), "1");
}

/// Every required tag and attribute of the LL-HLS playlist, and durations
/// matching the segments.
#[test]
fn low_latency_playlist_tag_by_tag() {
    let p = run(big_window(), &common::synthetic(7, 25, 25, true, true));
    let text = p.media_playlist(PlaylistKind::LowLatency, false).unwrap();
    let lines = parse(&text);
    assert_eq!(tag(&lines, "EXT-X-VERSION"), "9");
    let target: u64 = tag(&lines, "EXT-X-TARGETDURATION").parse().unwrap();
    assert_eq!(target, 2);
    let sc = attrs(tag(&lines, "EXT-X-SERVER-CONTROL"));
    assert_eq!(sc["CAN-BLOCK-RELOAD"], "YES");
    let part_target: f64 = attrs(tag(&lines, "EXT-X-PART-INF"))["PART-TARGET"].parse().unwrap();
    assert_eq!(part_target, 0.2);
    assert!(sc["PART-HOLD-BACK"].parse::<f64>().unwrap() >= 3.0 * part_target - 1e-9);
    assert!(sc["CAN-SKIP-UNTIL"].parse::<f64>().unwrap() >= 6.0 * target as f64);
    assert_eq!(attrs(tag(&lines, "EXT-X-MAP"))["URI"], "init.mp4");
    assert_eq!(tag(&lines, "EXT-X-MEDIA-SEQUENCE"), "0");
    assert!(tags(&lines, "EXT-X-RENDITION-REPORT").is_empty());

    // Walk segments: parts then EXTINF then URI; durations match.
    let segs = p.segments();
    let mut parts: Vec<(f64, String, bool)> = Vec::new();
    let mut seen = 0;
    let mut pdt = 0;
    let mut i = 0;
    while i < lines.len() {
        match &lines[i] {
            common::Line::Tag(n, v) if n == "EXT-X-PROGRAM-DATE-TIME" => {
                assert!(v.ends_with('Z') && v.len() == 24, "{v}");
                pdt += 1;
            }
            common::Line::Tag(n, v) if n == "EXT-X-PART" => {
                let a = attrs(v);
                let d: f64 = a["DURATION"].parse().unwrap();
                assert!(d <= part_target + 1e-9, "{d}");
                parts.push((d, a["URI"].clone(), a.get("INDEPENDENT").is_some_and(|v| v == "YES")));
            }
            common::Line::Tag(n, v) if n == "EXTINF" => {
                let s = &segs[seen];
                let d: f64 = v.strip_suffix(',').unwrap().parse().unwrap();
                assert!((d * 90_000.0 - s.ticks as f64).abs() < 1.0, "{d} vs {}", s.ticks);
                assert!(d.round() as u64 <= target && d.ceil() as u64 <= target);
                assert_eq!(lines[i + 1], common::Line::Uri(format!("seg{}.m4s", s.msn)));
                if !parts.is_empty() {
                    assert_eq!(parts.len(), s.parts.len());
                    for (n, ((d, uri, ind), (ticks, independent))) in parts.iter().zip(&s.parts).enumerate() {
                        assert!((d * 90_000.0 - *ticks as f64).abs() < 1.0);
                        assert_eq!(uri, &format!("part{}.{n}.m4s", s.msn));
                        assert_eq!(ind, independent);
                    }
                    parts.clear();
                }
                seen += 1;
            }
            _ => {}
        }
        i += 1;
    }
    assert_eq!(seen, segs.len());
    // The open segment's parts remain, then the hint for the next part.
    let (msn, next) = p.next_part();
    assert_eq!(parts.len() as u64, next);
    assert!(parts.iter().enumerate().all(|(n, (_, uri, _))| uri == &format!("part{msn}.{n}.m4s")));
    let hint = attrs(tag(&lines, "EXT-X-PRELOAD-HINT"));
    assert_eq!(hint["TYPE"], "PART");
    assert_eq!(hint["URI"], format!("part{msn}.{next}.m4s"));
    assert_eq!(lines.last().map(|l| matches!(l, common::Line::Tag(n, _) if n == "EXT-X-PRELOAD-HINT")), Some(true));
    assert_eq!(pdt, segs.len() + usize::from(next > 0));
    // Every listed part and segment is served.
    for uri in uris(&lines) {
        assert!(p.segment(PlaylistKind::LowLatency, uri).is_some(), "{uri}");
    }
    for v in tags(&lines, "EXT-X-PART") {
        assert!(p.part(&attrs(v)["URI"]).is_some());
    }
}

#[test]
fn ts_playlist_tag_by_tag() {
    let p = run(big_window(), &common::synthetic(7, 25, 25, true, true));
    let text = p.media_playlist(PlaylistKind::Ts, false).unwrap();
    let lines = parse(&text);
    assert_eq!(tag(&lines, "EXT-X-VERSION"), "3");
    assert_eq!(tag(&lines, "EXT-X-TARGETDURATION"), "2");
    assert_eq!(tag(&lines, "EXT-X-MEDIA-SEQUENCE"), "0");
    for absent in ["EXT-X-PART", "EXT-X-PART-INF", "EXT-X-SERVER-CONTROL", "EXT-X-PRELOAD-HINT", "EXT-X-MAP"] {
        assert!(tags(&lines, absent).is_empty(), "{absent}");
    }
    let segs = p.segments();
    let durations: Vec<f64> = tags(&lines, "EXTINF").iter().map(|v| v.trim_end_matches(',').parse().unwrap()).collect();
    assert_eq!(durations.len(), segs.len());
    for (d, s) in durations.iter().zip(&segs) {
        assert!((d * 90_000.0 - s.ticks as f64).abs() < 1.0);
    }
    assert_eq!(uris(&lines), segs.iter().map(|s| format!("seg{}.ts", s.msn)).collect::<Vec<_>>());
    assert_eq!(tags(&lines, "EXT-X-PROGRAM-DATE-TIME").len(), segs.len());
    // Each TS segment starts with PAT then PMT listing both tracks.
    for s in &segs {
        let data = p.segment(PlaylistKind::Ts, &format!("seg{}.ts", s.msn)).unwrap().concat();
        assert_eq!(&data[..1], &[0x47]);
        let pid = |at: usize| u16::from_be_bytes([data[at + 1], data[at + 2]]) & 0x1FFF;
        assert_eq!(pid(0), 0);
        assert_eq!(pid(188), 0x1000);
        let pmt = arcly_mux::ts::Pmt::parse(&data[188 + 5..]).unwrap();
        assert_eq!(pmt.streams.len(), 2);
    }
}

#[test]
fn program_date_time_follows_media_time() {
    let p = run(big_window(), &common::synthetic(7, 25, 25, true, false));
    let text = p.media_playlist(PlaylistKind::Ts, false).unwrap();
    let lines = parse(&text);
    let pdts = tags(&lines, "EXT-X-PROGRAM-DATE-TIME");
    assert_eq!(pdts[0], "2023-11-14T22:13:20.000Z");
    assert_eq!(pdts[1], "2023-11-14T22:13:22.000Z");
    assert_eq!(pdts[2], "2023-11-14T22:13:24.000Z");
}

#[test]
fn delta_update_skips_old_segments() {
    // 1 s segments, 30 kept: CAN-SKIP-UNTIL is 6 s.
    let config = HlsConfig { segment_target: Duration::from_secs(1), window: 30, ..HlsConfig::default() };
    let p = run(config, &common::synthetic(20, 25, 25, true, true));
    let full = parse(&p.media_playlist(PlaylistKind::LowLatency, false).unwrap());
    let text = p.media_playlist(PlaylistKind::LowLatency, true).unwrap();
    let delta = parse(&text);
    let skipped: usize = attrs(tag(&delta, "EXT-X-SKIP"))["SKIPPED-SEGMENTS"].parse().unwrap();
    let total = uris(&full).len();
    assert!(skipped > 0 && skipped < total);
    assert_eq!(uris(&delta).len() + skipped, total);
    let remaining: f64 = tags(&delta, "EXTINF").iter().map(|v| v.trim_end_matches(',').parse::<f64>().unwrap()).sum();
    assert!(remaining >= 5.0, "{remaining}"); // ≥ 6 s with the open segment's parts
    assert_eq!(uris(&delta)[0], format!("seg{skipped}.m4s"));
    assert_eq!(tag(&delta, "EXT-X-VERSION"), "9");
}

#[test]
fn unsupported_and_garbage_frames_are_ignored() {
    let mut frames = common::synthetic(3, 25, 25, true, true);
    frames.insert(5, MediaFrame::new(arcly_core::frame::CodecId::Vp9, bytes::Bytes::from_static(&[1, 2])));
    frames.insert(
        7,
        MediaFrame::new(arcly_core::frame::CodecId::H265, bytes::Bytes::from_static(&[9]))
            .with_flags(FrameFlags::CONFIG),
    );
    let p = run(big_window(), &frames);
    let clean = run(big_window(), &common::synthetic(3, 25, 25, true, true));
    assert!(!p.segments().is_empty());
    // The VP9 frame and the broken H.265 config changed nothing.
    assert_eq!(p.segments(), clean.segments());
    assert!(frames.iter().any(|f| f.frame_type() == FrameType::Audio));
}

#[test]
fn fuzz_entry_point_survives_patterns() {
    arcly_hls::fuzz_packager(&[]);
    let data: Vec<u8> = (0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    arcly_hls::fuzz_packager(&data);
}

mod props {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn fuzz_packager_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
            arcly_hls::fuzz_packager(&data);
        }
    }
}

/// An AAC frame at `sample` (48 kHz).
fn aac(sample: i64) -> MediaFrame {
    MediaFrame::new(arcly_core::frame::CodecId::Aac, bytes::Bytes::from_static(&[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]))
        .with_timestamps(sample, sample, arcly_core::frame::Timebase::sample_rate(48_000).unwrap())
}

/// Every part and segment a playlist lists, with the bytes served for it.
fn listed(p: &Packager) -> Vec<(String, usize)> {
    let text = p.media_playlist(PlaylistKind::LowLatency, false).expect("a playlist");
    let lines = parse(&text);
    let parts = tags(&lines, "EXT-X-PART").into_iter().map(|v| attrs(v)["URI"].clone());
    let served = |bytes: Option<Vec<bytes::Bytes>>| bytes.map_or(0, |b| b.iter().map(bytes::Bytes::len).sum());
    let mut out: Vec<(String, usize)> = parts.map(|u| (u.clone(), served(p.part(&u)))).collect();
    out.extend(uris(&lines).into_iter().map(|u| (u.to_owned(), served(p.segment(PlaylistKind::LowLatency, u)))));
    out
}

/// Found by the fuzz target hls_ingest: a timeline holding a single video
/// frame (its duration unknown) ended with an empty part and segment, dated
/// 1970.
#[test]
fn a_timeline_of_one_frame_is_written_and_dated() {
    let (video, audio) = common::configs();
    let key = MediaFrame::new(arcly_core::frame::CodecId::H264, bytes::Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]))
        .with_timestamps(3_600, 3_600, arcly_core::frame::Timebase::MPEG)
        .with_flags(FrameFlags::KEYFRAME);
    let mut p = run(big_window(), &[video, audio, aac(0), key]);
    p.finish();
    let listed = listed(&p);
    assert_eq!(listed.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>(), ["part0.0.m4s", "seg0.m4s"]);
    assert!(listed.iter().all(|(_, bytes)| *bytes > 0), "{listed:?}");
    let text = p.media_playlist(PlaylistKind::LowLatency, false).unwrap();
    let pdt = tag(&parse(&text), "EXT-X-PROGRAM-DATE-TIME").to_owned();
    assert_eq!(pdt, "2023-11-14T22:13:20.000Z");
}

/// Found by the fuzz target hls_ingest: keyframes with one decode time (a
/// zero duration) made a part with no bytes.
#[test]
fn frames_with_one_decode_time_make_no_empty_part() {
    let (video, audio) = common::configs();
    let mut frames = vec![video, audio, aac(0)];
    for (i, dts) in [0, 0, 3_600, 3_600, 3_600, 7_200, 10_800, 10_800].into_iter().enumerate() {
        let f = MediaFrame::new(arcly_core::frame::CodecId::H264, bytes::Bytes::from_static(&[0, 0, 0, 2, 0x65, 0x88]))
            .with_timestamps(dts, dts, arcly_core::frame::Timebase::MPEG);
        frames.push(if i % 2 == 0 { f.with_flags(FrameFlags::KEYFRAME) } else { f });
    }
    let config = HlsConfig {
        part_target: Duration::from_millis(10),
        segment_target: Duration::from_millis(100),
        ..big_window()
    };
    let mut p = run(config, &frames);
    let during = listed(&p);
    assert!(during.iter().all(|(_, bytes)| *bytes > 0), "{during:?}");
    p.finish();
    let after = listed(&p);
    assert!(after.iter().all(|(_, bytes)| *bytes > 0), "{after:?}");
    // Every frame is in a segment.
    let samples: usize = p.segments().iter().map(|s| s.parts.len()).sum();
    assert!(samples > 0);
}

/// Found by the fuzz target hls_ingest: with MPEG-TS only, a segment whose
/// frames the TS muxer refused (an H.264 length prefix running past the
/// payload) was listed with no bytes at all.
#[test]
fn a_segment_of_refused_frames_is_still_a_ts_file() {
    let (video, _) = common::configs();
    let h264 = |payload: &'static [u8], dts: i64| {
        MediaFrame::new(arcly_core::frame::CodecId::H264, bytes::Bytes::from_static(payload)).with_timestamps(
            dts,
            dts,
            arcly_core::frame::Timebase::MPEG,
        )
    };
    let broken = h264(&[0, 0, 0, 9, 0x65, 0x88], 0).with_flags(FrameFlags::KEYFRAME);
    // 20 s later: a jump that starts a new timeline, closing the first.
    let later = h264(&[0, 0, 0, 2, 0x41, 0x9a], 1_800_000);
    let config = HlsConfig { fmp4: false, ..big_window() };
    let p = run(config, &[video, broken, later]);
    let text = p.media_playlist(PlaylistKind::Ts, false).expect("a TS playlist");
    let segments = uris(&parse(&text)).into_iter().map(str::to_owned).collect::<Vec<_>>();
    assert!(!segments.is_empty(), "{text}");
    for uri in segments {
        let bytes: usize = p.segment(PlaylistKind::Ts, &uri).map_or(0, |b| b.iter().map(bytes::Bytes::len).sum());
        assert!(bytes > 0 && bytes.is_multiple_of(188), "{uri}: {bytes} bytes");
    }
}
