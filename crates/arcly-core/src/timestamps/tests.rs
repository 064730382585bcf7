use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::frame::CodecId;

/// A video frame in milliseconds.
fn video(dts: i64, pts: i64) -> MediaFrame {
    MediaFrame::new(CodecId::H264, Bytes::new()).with_timestamps(pts, dts, Timebase::MILLIS)
}

/// An audio frame in milliseconds.
fn audio(dts: i64) -> MediaFrame {
    MediaFrame::new(CodecId::Aac, Bytes::new()).with_timestamps(dts, dts, Timebase::MILLIS)
}

/// Runs frames through a default guard; returns each output frame with
/// its verdict.
fn run(frames: &[MediaFrame]) -> Vec<(MediaFrame, Verdict)> {
    run_with(&mut TimestampGuard::default(), frames)
}

fn run_with(guard: &mut TimestampGuard, frames: &[MediaFrame]) -> Vec<(MediaFrame, Verdict)> {
    frames
        .iter()
        .map(|f| {
            let mut f = f.clone();
            let v = guard.apply(&mut f);
            (f, v)
        })
        .collect()
}

/// Interleaved 30 fps video (no B-frames) and 23 ms audio, by decode time,
/// from `from` to `to` ms; audio `skew` ms ahead of video.
fn av(from: i64, to: i64, skew: i64) -> Vec<MediaFrame> {
    let mut out = Vec::new();
    let (mut v, mut a) = (from, from + skew);
    while v < to || a < to + skew {
        if v <= a - skew {
            out.push(video(v, v));
            v += 33;
        } else {
            out.push(audio(a));
            a += 23;
        }
    }
    out
}

fn corrections(out: &[(MediaFrame, Verdict)]) -> Vec<Correction> {
    out.iter()
        .filter_map(|(_, v)| match v {
            Verdict::Corrected(c) => Some(*c),
            _ => None,
        })
        .collect()
}

fn flagged(out: &[(MediaFrame, Verdict)]) -> usize {
    out.iter().filter(|(f, _)| f.flags.contains(FrameFlags::DISCONTINUITY)).count()
}

/// Output dts of one track is non-decreasing, with steps of at most
/// `max_step` ms.
fn assert_continuous(out: &[(MediaFrame, Verdict)], ty: FrameType, max_step: i64) {
    let dts: Vec<i64> = out.iter().filter(|(f, _)| f.frame_type() == ty).map(|(f, _)| f.dts).collect();
    for w in dts.windows(2) {
        assert!(w[1] >= w[0], "{ty:?} dts went back: {w:?}");
        assert!(w[1] - w[0] <= max_step, "{ty:?} dts gap: {w:?}");
    }
}

/// The offset (output - input) is the same for every frame after the
/// last correction, audio and video alike: they stay in sync.
fn assert_one_offset_after(input: &[MediaFrame], out: &[(MediaFrame, Verdict)], from: usize) {
    let offsets: Vec<i64> = input[from..].iter().zip(&out[from..]).map(|(i, (o, _))| o.dts - i.dts).collect();
    assert!(offsets.windows(2).all(|w| w[0] == w[1]), "{offsets:?}");
}

fn shifted(frames: Vec<MediaFrame>, by: i64) -> Vec<MediaFrame> {
    frames
        .into_iter()
        .map(|mut f| {
            f.dts += by;
            f.pts += by;
            f
        })
        .collect()
}

#[test]
fn well_behaved_streams_pass_unchanged() {
    let input = av(0, 10_000, 0);
    let out = run(&input);
    assert!(out.iter().all(|(_, v)| *v == Verdict::Passed));
    assert_eq!(out.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(), input);
}

#[test]
fn backwards_by_five_seconds() {
    // 10 s of media, then the publisher's clock is 5 s behind.
    let mut input = av(0, 10_000, 0);
    let at = input.len();
    input.extend(shifted(av(10_000, 15_000, 0), -5_000));
    let out = run(&input);
    let c = corrections(&out);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].direction(), "backward");
    assert!((-5_060..=-4_940).contains(&c[0].jump_ms), "{c:?}");
    assert_eq!(flagged(&out), 1);
    assert!(out[at].0.flags.contains(FrameFlags::DISCONTINUITY), "the first frame after the jump");
    assert_continuous(&out, FrameType::Video, 70);
    assert_continuous(&out, FrameType::Audio, 70);
    assert_one_offset_after(&input, &out, at);
}

#[test]
fn forward_by_three_hours() {
    let hours = 3 * 3_600_000;
    let mut input = av(0, 10_000, 0);
    let at = input.len();
    input.extend(shifted(av(10_000, 15_000, 0), hours));
    let out = run(&input);
    let c = corrections(&out);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].direction(), "forward");
    assert!((hours - 60..=hours + 60).contains(&c[0].jump_ms), "{c:?}");
    assert!(out[at].0.flags.contains(FrameFlags::DISCONTINUITY));
    assert_continuous(&out, FrameType::Video, 70);
    assert_continuous(&out, FrameType::Audio, 70);
    assert_one_offset_after(&input, &out, at);
    assert!(out.last().unwrap().0.dts < 16_000, "the timeline did not leap");
}

#[test]
fn forward_jumps_under_the_threshold_pass() {
    // A 5 s stall with real-time timestamps is a gap, not an error.
    let mut input = av(0, 2_000, 0);
    input.extend(av(7_000, 9_000, 0));
    let out = run(&input);
    assert!(corrections(&out).is_empty());
    assert_eq!(out.iter().map(|(f, _)| f.dts).collect::<Vec<_>>(), input.iter().map(|f| f.dts).collect::<Vec<_>>());
}

#[test]
fn unwrapped_rtmp_timestamps_continue_across_the_32_bit_wrap() {
    // What arcly-rtmp hands over: extended past 2^32 ms.
    let wrap = 1i64 << 32;
    let input = av(wrap - 2_000, wrap + 2_000, 0);
    let out = run(&input);
    assert!(corrections(&out).is_empty());
    assert_eq!(out.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(), input);
}

#[test]
fn a_raw_32_bit_wrap_is_one_correction() {
    // A protocol that did not unwrap: 4294965296 ... 4294967295, 0, ...
    let wrap = 1i64 << 32;
    let input: Vec<MediaFrame> = av(wrap - 2_000, wrap + 2_000, 0)
        .into_iter()
        .map(|mut f| {
            f.dts %= wrap;
            f.pts %= wrap;
            f
        })
        .collect();
    let out = run(&input);
    assert_eq!(corrections(&out).len(), 1);
    assert_continuous(&out, FrameType::Video, 70);
    assert_continuous(&out, FrameType::Audio, 70);
}

#[test]
fn audio_and_video_clocks_apart_do_not_trigger() {
    for skew in [-400, -150, 150, 400] {
        let input = av(0, 10_000, skew);
        let out = run(&input);
        assert!(corrections(&out).is_empty(), "skew {skew}");
        assert_eq!(out.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(), input, "skew {skew}");
    }
}

#[test]
fn an_encoder_restart_with_another_skew_stays_in_sync() {
    // Before: audio 300 ms ahead; after the restart: 300 ms behind. The
    // second track's 600 ms step back is corrected too, at most once more.
    let mut input = av(0, 10_000, 300);
    input.extend(shifted(av(10_000, 15_000, -300), -8_000));
    let out = run(&input);
    let c = corrections(&out);
    assert!((1..=2).contains(&c.len()), "{c:?}");
    assert_continuous(&out, FrameType::Video, 700);
    assert_continuous(&out, FrameType::Audio, 700);
}

#[test]
fn b_frames_pass_unchanged() {
    // I P B B at 25 fps: dts monotonic, pts reordered (and below the
    // previous frame's pts for the B-frames).
    let pattern = [(0, 80), (40, 200), (80, 120), (120, 160)];
    let input: Vec<MediaFrame> =
        (0..50).flat_map(|gop| pattern.map(|(d, p)| video(gop * 160 + d, gop * 160 + p))).collect();
    let out = run(&input);
    assert!(out.iter().all(|(_, v)| *v == Verdict::Passed));
    assert_eq!(out.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(), input);
}

#[test]
fn a_corrected_frame_keeps_its_composition_offset() {
    let mut input: Vec<MediaFrame> = (0..100).map(|i| video(i * 40, i * 40 + 80)).collect();
    input.extend((0..10).map(|i| video(i * 40, i * 40 + 120)));
    let out = run(&input);
    assert_eq!(corrections(&out).len(), 1);
    for (i, (o, _)) in input.iter().zip(&out) {
        assert_eq!(o.pts - o.dts, i.pts - i.dts);
    }
}

#[test]
fn small_backward_steps_pass_unchanged() {
    // Audio jittering by a millisecond, and a 200 ms step back.
    let input = [audio(1_000), audio(1_023), audio(1_045), audio(1_044), audio(1_069), audio(869), audio(1_092)];
    let out = run(&input);
    assert!(corrections(&out).is_empty());
    assert_eq!(out.iter().map(|(f, _)| f.dts).collect::<Vec<_>>(), input.iter().map(|f| f.dts).collect::<Vec<_>>());
}

#[test]
fn a_track_resuming_after_a_gap_does_not_trigger() {
    // Audio stops for 15 s while video goes on, then resumes in sync.
    let mut input: Vec<MediaFrame> = av(0, 2_000, 0);
    input.extend((0..500).map(|i| video(2_000 + i * 33, 2_000 + i * 33)));
    input.extend(av(18_500, 20_000, 0));
    let out = run(&input);
    assert!(corrections(&out).is_empty(), "{:?}", corrections(&out));
}

#[test]
fn mixed_timebases_share_one_offset() {
    // Video at 90 kHz, audio at 48 kHz (1024-sample frames), then both go
    // back 5 s.
    let tb48 = Timebase::sample_rate(48_000).unwrap();
    let frames = |from_s: i64, to_s: i64, shift_ms: i64| {
        let mut v: Vec<MediaFrame> = (from_s * 25..to_s * 25)
            .map(|i| {
                let d = i * 3_600 + shift_ms * 90;
                MediaFrame::new(CodecId::H264, Bytes::new()).with_timestamps(d, d, Timebase::MPEG)
            })
            .collect();
        let a = (from_s * 48_000 / 1024..to_s * 48_000 / 1024).map(|i| {
            let d = i * 1024 + shift_ms * 48;
            MediaFrame::new(CodecId::Aac, Bytes::new()).with_timestamps(d, d, tb48)
        });
        v.extend(a);
        v.sort_by_key(|f| f.dts_in(Timebase::MICROS));
        v
    };
    let mut input = frames(0, 10, 0);
    let at = input.len();
    input.extend(frames(10, 15, -5_000));
    let out = run(&input);
    assert_eq!(corrections(&out).len(), 1);
    // After the jump, every frame moved by the same time (within a tick).
    let moved: Vec<i64> = input[at..]
        .iter()
        .zip(&out[at..])
        .map(|(i, (o, _))| o.dts_in(Timebase::MICROS) - i.dts_in(Timebase::MICROS))
        .collect();
    let (min, max) = (moved.iter().min().unwrap(), moved.iter().max().unwrap());
    assert!(max - min <= 25, "{min}..{max} µs");
    assert!((4_900_000..=5_100_000).contains(min), "{min}");
}

#[test]
fn configuration_frames_follow_the_timeline() {
    let config = |dts: i64| {
        MediaFrame::new(CodecId::H264, Bytes::new())
            .with_timestamps(dts, dts, Timebase::MILLIS)
            .with_flags(FrameFlags::CONFIG)
    };
    let mut guard = TimestampGuard::default();
    // At the start, with timestamp 0: unchanged.
    let out = run_with(&mut guard, &[config(0), video(0, 0), video(33, 33)]);
    assert_eq!(out[0].0.dts, 0);
    let _ = run_with(&mut guard, &av(66, 60_000, 0));
    // Re-sent with timestamp 0 a minute in: placed at the newest frame.
    let out = run_with(&mut guard, &[config(0)]);
    assert!((59_900..60_100).contains(&out[0].0.dts), "{:?}", out[0].0);
    assert_eq!(out[0].1, Verdict::Passed);
    // Never counted, never flagged.
    assert_eq!(guard.corrections(), 0);
    assert!(!out[0].0.flags.contains(FrameFlags::DISCONTINUITY));
}

#[test]
fn a_returning_publisher_continues_the_timeline() {
    let mut guard = TimestampGuard::default();
    let _ = run_with(&mut guard, &av(0, 10_000, 0));
    guard.resume();
    // The new publisher starts at 0 again.
    let out = run_with(&mut guard, &av(0, 2_000, 0));
    assert!(out.iter().all(|(_, v)| *v == Verdict::Passed), "a takeover is not a correction");
    assert_eq!(flagged(&out), 1);
    assert!(out[0].0.flags.contains(FrameFlags::DISCONTINUITY));
    assert!((10_000..=10_040).contains(&out[0].0.dts), "{:?}", out[0].0);
    assert_eq!(guard.corrections(), 0);
}

#[test]
fn a_frame_flagged_by_its_protocol_starts_an_epoch() {
    let mut guard = TimestampGuard::default();
    let _ = run_with(&mut guard, &av(0, 5_000, 0));
    let mut f = video(100, 100).with_flags(FrameFlags::DISCONTINUITY);
    assert_eq!(guard.apply(&mut f), Verdict::Passed);
    assert!((5_000..=5_040).contains(&f.dts), "{f:?}");
}

#[test]
fn too_many_corrections_make_the_publisher_unusable() {
    let mut guard = TimestampGuard::new(TimestampPolicy::default().max_corrections_per_second(3));
    let t0 = Instant::now();
    for i in 0..3 {
        assert!(guard.admit(t0 + Duration::from_millis(i * 100)).is_ok());
    }
    // A new window: fine again.
    assert!(guard.admit(t0 + Duration::from_millis(1_100)).is_ok());
    assert!(guard.admit(t0 + Duration::from_millis(1_200)).is_ok());
    assert!(guard.admit(t0 + Duration::from_millis(1_300)).is_ok());
    let err = guard.admit(t0 + Duration::from_millis(1_400)).unwrap_err();
    assert_eq!(err, Unusable::TooManyCorrections { limit: 3 });
    assert_eq!(err.to_string(), "more than 3 timestamp corrections within a second");
    // Sticky until a new publisher takes over.
    let mut f = audio(0);
    assert_eq!(guard.apply(&mut f), Verdict::Unusable(err));
    guard.resume();
    assert_eq!(guard.apply(&mut f), Verdict::Passed);
}

#[test]
fn garbage_timestamps_are_corrected_every_frame() {
    // A publisher sending random timestamps: nearly every frame is a
    // correction, so the rate limit ends it within the first second.
    let mut guard = TimestampGuard::default();
    let t0 = Instant::now();
    let mut x: i64 = 12_345;
    let mut ended_at = None;
    for i in 0..100 {
        x = (x * 1_103_515_245 + 12_345) % (1 << 31);
        let mut f = video(x, x);
        match guard.apply(&mut f) {
            Verdict::Corrected(_) => {
                if guard.admit(t0 + Duration::from_millis(i * 33)).is_err() {
                    ended_at = Some(i);
                    break;
                }
            }
            Verdict::Passed => {}
            Verdict::Unusable(u) => panic!("{u}"),
        }
    }
    assert!(ended_at.is_some_and(|i| i < 30), "{ended_at:?}");
}

#[test]
fn logging_is_rate_limited() {
    let mut guard = TimestampGuard::default();
    let t0 = Instant::now();
    assert_eq!(guard.admit(t0), Ok(Some(0)));
    assert_eq!(guard.admit(t0 + Duration::from_millis(100)), Ok(None));
    assert_eq!(guard.admit(t0 + Duration::from_millis(200)), Ok(None));
    assert_eq!(guard.admit(t0 + Duration::from_millis(1_100)), Ok(Some(2)));
}

#[test]
fn impossible_timestamps_are_unusable() {
    let mut guard = TimestampGuard::default();
    let mut f = video(0, 20_000);
    assert_eq!(guard.apply(&mut f), Verdict::Unusable(Unusable::CompositionOffset { ms: 20_000 }));
    let mut guard = TimestampGuard::default();
    let mut f = video(i64::MAX, i64::MAX);
    assert!(matches!(guard.apply(&mut f), Verdict::Unusable(Unusable::OutOfRange { .. })));
    assert_eq!(f.dts, i64::MAX, "left as it was");
}

/// One step of a generated publisher.
#[derive(Clone, Debug)]
enum Step {
    /// A frame of video (with a composition offset) or audio, `dt` ms
    /// after that track's previous frame.
    Frame { video: bool, dt: i64, cto: i64 },
    /// Both clocks jump (an encoder restart, a bug, a 32-bit wrap).
    Jump(i64),
    /// One track steps back a little (jitter within the tolerance).
    Jitter { video: bool, back: i64 },
}

fn frame_step() -> impl Strategy<Value = Step> {
    (any::<bool>(), 0i64..=40, 0i64..=200).prop_map(|(video, dt, cto)| Step::Frame { video, dt, cto })
}

fn jump() -> impl Strategy<Value = Step> {
    prop_oneof![
        251i64..20_000_000,
        -20_000_000i64..-251,
        Just(-(1i64 << 32)),
        Just(1i64 << 32),
        Just(3 * 3_600_000),
        Just(-5_000),
    ]
    .prop_map(Step::Jump)
}

fn jitter() -> impl Strategy<Value = Step> {
    (any::<bool>(), 1i64..=250).prop_map(|(video, back)| Step::Jitter { video, back })
}

/// Frames from steps, both tracks in milliseconds, video starting at
/// `base` and audio `skew` ms later. Jitter never takes a track more than
/// the tolerance (250 ms) below its highest timestamp since the last jump.
fn publisher(base: i64, skew: i64, steps: &[Step]) -> Vec<MediaFrame> {
    let mut clock = [base, base + skew];
    let mut high = clock;
    let mut out = Vec::new();
    for s in steps {
        match *s {
            Step::Frame { video: v, dt, cto } => {
                let t = usize::from(!v);
                clock[t] += dt;
                high[t] = high[t].max(clock[t]);
                out.push(if v { video(clock[t], clock[t] + cto) } else { audio(clock[t]) });
            }
            Step::Jump(by) => {
                clock.iter_mut().for_each(|c| *c += by);
                high = clock;
            }
            Step::Jitter { video: v, back } => {
                let t = usize::from(!v);
                clock[t] = (clock[t] - back).max(high[t] - 250);
            }
        }
    }
    out
}

proptest! {
    /// Whatever the input, per track no output dts is more than the
    /// tolerance below an earlier one, nothing leaps more than the
    /// forward threshold past the stream's newest frame, and every frame
    /// keeps its pts - dts.
    #[test]
    fn output_is_monotonic_within_the_tolerance(
        base in 0i64..(1 << 34),
        steps in prop::collection::vec(prop_oneof![10 => frame_step(), 1 => jump(), 1 => jitter()], 1..300),
    ) {
        let input = publisher(base, 0, &steps);
        let out = run(&input);
        let policy = TimestampPolicy::default();
        let (back, fwd) = (policy.backward().as_millis() as i64, policy.forward().as_millis() as i64);
        let mut high = [None::<i64>; 2];
        let mut head = None::<i64>;
        for (i, (o, v)) in input.iter().zip(&out) {
            prop_assert!(!matches!(v, Verdict::Unusable(_)), "{:?}", v);
            prop_assert_eq!(o.pts - o.dts, i.pts - i.dts);
            let t = o.frame_type().index();
            if let Some(h) = high[t] {
                prop_assert!(o.dts >= h - back, "{} below {}", o.dts, h);
            }
            if let Some(h) = head {
                prop_assert!(o.dts <= h + fwd, "{} leaps past {}", o.dts, h);
            }
            high[t] = Some(high[t].map_or(o.dts, |h| h.max(o.dts)));
            head = Some(head.map_or(o.dts, |h| h.max(o.dts)));
        }
    }

    /// One track with jumps, reversals and wraps but no small step back:
    /// its output dts never decreases.
    #[test]
    fn one_track_is_monotonic(
        base in 0i64..(1 << 34),
        steps in prop::collection::vec(prop_oneof![10 => frame_step(), 1 => jump()], 1..300),
    ) {
        let steps: Vec<Step> = steps
            .into_iter()
            .map(|s| match s {
                Step::Frame { dt, cto, .. } => Step::Frame { video: true, dt, cto },
                s => s,
            })
            .collect();
        let out = run(&publisher(base, 0, &steps));
        for w in out.windows(2) {
            prop_assert!(w[1].0.dts >= w[0].0.dts, "{:?} then {:?}", w[0].0, w[1].0);
        }
    }

    /// Interleaved audio and video without anomalies (steps forward, audio
    /// a few hundred ms off, jitter within the tolerance, B-frames) pass
    /// through unchanged.
    #[test]
    fn well_behaved_input_is_unchanged(
        base in -(1i64 << 34)..(1 << 34),
        skew in -500i64..500,
        steps in prop::collection::vec(prop_oneof![10 => frame_step(), 1 => jitter()], 1..300),
    ) {
        let mut steps = steps;
        steps.insert(0, Step::Jitter { video: false, back: -skew });
        let input = publisher(base, 0, &steps);
        let out = run(&input);
        prop_assert!(out.iter().all(|(_, v)| *v == Verdict::Passed));
        prop_assert_eq!(out.into_iter().map(|(f, _)| f).collect::<Vec<_>>(), input);
    }

    /// The stream's offset (output - input) changes only at frames flagged
    /// DISCONTINUITY, and each flagged frame is one correction.
    #[test]
    fn offset_changes_only_at_flagged_frames(
        base in 0i64..(1 << 34),
        steps in prop::collection::vec(prop_oneof![10 => frame_step(), 1 => jump(), 1 => jitter()], 1..300),
    ) {
        let input = publisher(base, 0, &steps);
        let out = run(&input);
        let mut offset = 0;
        for (i, (o, v)) in input.iter().zip(&out) {
            let flagged = o.flags.contains(FrameFlags::DISCONTINUITY);
            prop_assert_eq!(flagged, matches!(v, Verdict::Corrected(_)));
            if !flagged {
                prop_assert_eq!(o.dts - i.dts, offset, "{:?}", o);
            }
            offset = o.dts - i.dts;
        }
    }
}
