//! A publisher whose clock jumps, as the packager receives it from the bus:
//! timestamps repaired by the kernel's timestamp guard, the frame where the
//! clock jumped flagged `DISCONTINUITY`.

mod common;

use arcly_core::frame::{CodecId, FrameFlags, FrameType, MediaFrame, Timebase};
use arcly_core::timestamps::{TimestampGuard, Verdict};
use arcly_hls::{HlsConfig, Packager, PlaylistKind};
use arcly_mux::ts::{DemuxEvent, TsDemuxer};
use common::{now, parse, tags};

/// Segment target 2 s, GOP 1 s (25 frames at 25 fps).
const TARGET_TICKS: u64 = 180_000;
const GOP_TICKS: u64 = 90_000;

fn packager() -> Packager {
    Packager::new(HlsConfig { window: 1000, ..HlsConfig::default() })
}

/// `frames` with `by` ms added to every media timestamp.
fn shifted(frames: &[MediaFrame], by: i64) -> Vec<MediaFrame> {
    frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            let by = Timebase::MILLIS.rescale(by, f.timebase);
            f.dts += by;
            f.pts += by;
            f
        })
        .collect()
}

/// The index of the first media frame at or after `ms`.
fn at(frames: &[MediaFrame], ms: i64) -> usize {
    frames.iter().position(|f| !f.is_config() && f.dts_in(Timebase::MILLIS) >= ms).unwrap()
}

/// Video and audio frames in the packager's TS segments (each segment
/// demuxed on its own, as a player would fetch it).
fn frames_in_segments(p: &Packager) -> (usize, usize) {
    let (mut video, mut audio) = (0, 0);
    for s in p.segments() {
        let data = p.segment(PlaylistKind::Ts, &format!("seg{}.ts", s.msn)).expect("segment");
        let mut demux = TsDemuxer::new();
        for b in &data {
            demux.push(b);
        }
        demux.flush();
        while let Some(e) = demux.poll() {
            if let Ok(DemuxEvent::Frame(f)) = e
                && !f.is_config()
            {
                match f.codec {
                    CodecId::H264 => video += 1,
                    CodecId::Aac => audio += 1,
                    _ => {}
                }
            }
        }
    }
    (video, audio)
}

fn count(frames: &[MediaFrame], ty: FrameType) -> usize {
    frames.iter().filter(|f| !f.is_config() && f.frame_type() == ty).count()
}

#[test]
fn a_corrected_jump_keeps_segments_sane_and_loses_no_frame() {
    // 20 s; the clock goes back 5 s at 8.52 s (mid-GOP), and forward 3
    // hours at 14.28 s (mid-GOP).
    let source = common::synthetic(20, 25, 25, true, true);
    let (back, fwd) = (at(&source, 8_520), at(&source, 14_280));
    let mut published = source[..back].to_vec();
    published.extend(shifted(&source[back..fwd], -5_000));
    published.extend(shifted(&source[fwd..], -5_000 + 3 * 3_600_000));

    let mut guard = TimestampGuard::default();
    let mut p = packager();
    let mut corrections = 0;
    for f in &published {
        let mut f = f.clone();
        match guard.apply(&mut f) {
            Verdict::Passed => {}
            Verdict::Corrected(_) => corrections += 1,
            Verdict::Unusable(u) => panic!("{u}"),
        }
        p.push(&f, now());
    }
    p.finish();
    assert_eq!(corrections, 2);

    let segs = p.segments();
    for s in &segs {
        assert!(s.ticks <= TARGET_TICKS + GOP_TICKS, "segment longer than target + GOP: {s:?}");
        assert!(s.parts.first().is_some_and(|p| p.1), "segment {} starts without a keyframe", s.msn);
    }
    let total: u64 = segs.iter().map(|s| s.ticks).sum();
    assert!((19 * 90_000..=21 * 90_000).contains(&total), "20 s of media in {total} ticks");
    assert_eq!(segs.iter().filter(|s| s.discontinuity).count(), 2, "{segs:?}");
    for kind in [PlaylistKind::LowLatency, PlaylistKind::Ts] {
        let text = p.media_playlist(kind, false).unwrap();
        let lines = parse(&text);
        assert_eq!(tags(&lines, "EXT-X-DISCONTINUITY").len(), 2, "{text}");
        assert!(tags(&lines, "EXTINF").iter().all(|d| d.trim_end_matches(',').parse::<f64>().unwrap() <= 3.0));
    }
    assert_eq!(frames_in_segments(&p), (count(&source, FrameType::Video), count(&source, FrameType::Audio)));
}

#[test]
fn a_flag_mid_gop_cuts_at_the_next_keyframe_without_losing_frames() {
    let source = common::synthetic(6, 25, 25, true, true);
    let mut frames = source.clone();
    // A video frame half way through the third GOP.
    let i =
        frames.iter().position(|f| f.frame_type() == FrameType::Video && f.dts_in(Timebase::MILLIS) >= 2_480).unwrap();
    assert!(!frames[i].is_keyframe());
    frames[i].flags |= FrameFlags::DISCONTINUITY;
    let mut p = packager();
    for f in &frames {
        p.push(f, now());
    }
    p.finish();
    let segs = p.segments();
    let disc: Vec<_> = segs.iter().filter(|s| s.discontinuity).collect();
    assert_eq!(disc.len(), 1, "{segs:?}");
    // The new timeline starts at the keyframe at 3 s: the segment before
    // it ends there.
    let before: u64 = segs.iter().take_while(|s| !s.discontinuity).map(|s| s.ticks).sum();
    assert_eq!(before, 3 * 90_000);
    assert!(disc[0].parts[0].1);
    assert_eq!(frames_in_segments(&p), (count(&source, FrameType::Video), count(&source, FrameType::Audio)));
}

#[test]
fn a_flagged_keyframe_cuts_at_once() {
    let mut frames = common::synthetic(6, 25, 25, true, false);
    let i = frames
        .iter()
        .position(|f| f.frame_type() == FrameType::Video && f.is_keyframe() && f.dts_in(Timebase::MILLIS) >= 3_000)
        .unwrap();
    frames[i].flags |= FrameFlags::DISCONTINUITY;
    let mut p = packager();
    for f in &frames {
        p.push(f, now());
    }
    p.finish();
    // Segments of 2 s, but the one from 2 s ends at the flagged keyframe.
    let segs = p.segments();
    let ticks: Vec<u64> = segs.iter().map(|s| s.ticks).collect();
    assert_eq!(ticks[..2], [180_000, 90_000], "{segs:?}");
    assert!(segs[2].discontinuity && !segs[1].discontinuity);
    assert_eq!(frames_in_segments(&p).0, count(&frames, FrameType::Video));
}
