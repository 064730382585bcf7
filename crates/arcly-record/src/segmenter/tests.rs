use std::time::{Duration, SystemTime};

use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
use arcly_mux::ts::{DemuxEvent, TsDemuxer};
use bytes::Bytes;

use super::{Segmenter, Step};
use crate::config::{RecordConfig, RecordFormat};

const NOW: SystemTime = SystemTime::UNIX_EPOCH;

/// The avcC of the H.264 test stream.
fn avcc() -> MediaFrame {
    let data = arcly_testkit::read_testdata("h264_aac.ts");
    let mut demux = TsDemuxer::new();
    demux.push(&data);
    demux.flush();
    std::iter::from_fn(|| demux.poll())
        .filter_map(|e| match e {
            Ok(DemuxEvent::Frame(f)) if f.is_config() && f.codec == CodecId::H264 => Some(f),
            _ => None,
        })
        .next()
        .expect("avcC in the test stream")
}

fn asc() -> MediaFrame {
    // AAC-LC 48 kHz stereo.
    MediaFrame::new(CodecId::Aac, Bytes::from_static(&[0x11, 0x90])).with_flags(FrameFlags::CONFIG)
}

fn video(i: i64, fps: i64, gop: i64) -> MediaFrame {
    let dts = i * 90_000 / fps;
    let key = i % gop == 0;
    let payload: &'static [u8] = if key { &[0, 0, 0, 2, 0x65, 0x88] } else { &[0, 0, 0, 2, 0x41, 0x9a] };
    let f = MediaFrame::new(CodecId::H264, Bytes::from_static(payload)).with_timestamps(dts, dts, Timebase::MPEG);
    if key { f.with_flags(FrameFlags::KEYFRAME) } else { f }
}

fn audio(i: i64) -> MediaFrame {
    MediaFrame::new(CodecId::Aac, Bytes::from_static(&[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c])).with_timestamps(
        i * 1024,
        i * 1024,
        Timebase::sample_rate(48_000).unwrap(),
    )
}

/// `seconds` of 25 fps video (keyframe every `gop` frames) and 48 kHz AAC,
/// interleaved by decode time, configs first.
fn stream(seconds: i64, gop: i64) -> Vec<MediaFrame> {
    let mut frames = vec![avcc(), asc()];
    let (mut v, mut a) = (0, 0);
    while v < seconds * 25 {
        let vt = v * 90_000 / 25;
        let at = a * 1024 * 90_000 / 48_000;
        if at < vt {
            frames.push(audio(a));
            a += 1;
        } else {
            frames.push(video(v, 25, gop));
            v += 1;
        }
    }
    frames
}

/// A file as the steps describe it.
#[derive(Debug, Default)]
struct File {
    head: Bytes,
    appends: Vec<Bytes>,
    seconds: f64,
    discontinuity: bool,
    closed: bool,
}

fn run(config: RecordConfig, frames: &[MediaFrame]) -> Vec<File> {
    let mut s = Segmenter::new(config);
    let mut steps = Vec::new();
    for f in frames {
        s.push(f, NOW, &mut steps);
    }
    s.finish(&mut steps);
    files(steps)
}

fn files(steps: Vec<Step>) -> Vec<File> {
    let mut out: Vec<File> = Vec::new();
    for step in steps {
        match step {
            Step::Open { head, discontinuity, .. } => {
                assert!(out.last().is_none_or(|f| f.closed), "open before close");
                out.push(File { head, discontinuity, ..File::default() });
            }
            Step::Append { parts, seconds } => {
                let f = out.last_mut().expect("append without a file");
                assert!(!f.closed);
                f.appends.push(parts.concat().into());
                f.seconds = seconds;
            }
            Step::Close { seconds } => {
                let f = out.last_mut().expect("close without a file");
                assert!(seconds >= f.seconds);
                f.seconds = seconds;
                f.closed = true;
            }
        }
    }
    out
}

/// The `trun` sample counts and first-sample flags of an fMP4 fragment,
/// per track (track 1 = video).
fn fragment_samples(frag: &[u8]) -> Vec<(u32, u32, Option<u32>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 8 <= frag.len() {
        if &frag[i + 4..i + 8] == b"tfhd" {
            let track = u32::from_be_bytes(frag[i + 12..i + 16].try_into().unwrap());
            let trun = frag[i..].windows(4).position(|w| w == b"trun").unwrap() + i - 4;
            let flags = u32::from_be_bytes(frag[trun + 8..trun + 12].try_into().unwrap()) & 0xFF_FFFF;
            let count = u32::from_be_bytes(frag[trun + 12..trun + 16].try_into().unwrap());
            // data_offset, then per sample: duration, size, [flags, cto].
            let first_flags = (flags & 0x400 != 0)
                .then(|| u32::from_be_bytes(frag[trun + 16 + 4 + 8..trun + 16 + 4 + 12].try_into().unwrap()));
            out.push((track, count, first_flags));
        }
        i += 1;
    }
    out
}

fn config(format: RecordFormat, max_secs: u64) -> RecordConfig {
    RecordConfig { format, max_duration: Duration::from_secs(max_secs), ..RecordConfig::default() }
}

#[test]
fn fmp4_files_rotate_at_keyframes_and_keep_every_frame() {
    // 10 s, 2 s GOP, files of at least 3 s: cut at 4 s and 8 s.
    let frames = stream(10, 50);
    let files = run(config(RecordFormat::Fmp4, 3), &frames);
    assert_eq!(files.len(), 3, "{files:?}");
    let secs: Vec<f64> = files.iter().map(|f| f.seconds).collect();
    assert_eq!(secs, [4.0, 4.0, 2.0]);
    let mut video = 0;
    let mut audio = 0;
    for (n, f) in files.iter().enumerate() {
        assert!(f.closed && !f.discontinuity);
        assert_eq!(&f.head[4..8], b"ftyp");
        for (i, frag) in f.appends.iter().enumerate() {
            assert_eq!(&frag[4..8], b"moof");
            for (track, count, first) in fragment_samples(frag) {
                if track == 1 {
                    video += count;
                    if i == 0 {
                        // Each file starts with a sync sample.
                        assert_eq!(first, Some(0x0200_0000), "file {n} does not start with a keyframe");
                    }
                } else {
                    audio += count;
                }
            }
        }
        // A fragment per GOP (2 s = at most the fragment duration).
        assert_eq!(f.appends.len(), if n < 2 { 2 } else { 1 });
    }
    assert_eq!(video, 250);
    let source_audio = frames.iter().filter(|f| f.codec == CodecId::Aac && !f.is_config()).count();
    assert_eq!(audio as usize, source_audio);
}

#[test]
fn long_gops_are_cut_into_fragments_of_the_fragment_duration() {
    // One keyframe per 8 s; fragments of 1 s.
    let frames = stream(8, 200);
    let c = RecordConfig { fragment_duration: Duration::from_secs(1), ..config(RecordFormat::Fmp4, 600) };
    let files = run(c, &frames);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].appends.len(), 8, "one fragment per second");
}

#[test]
fn ts_chunks_are_whole_packets_and_files_start_with_psi_and_a_keyframe() {
    let frames = stream(6, 25);
    let files = run(config(RecordFormat::Ts, 2), &frames);
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert!(f.head.is_empty());
        let all: Vec<u8> = f.appends.concat();
        assert!(f.appends.iter().all(|a| a.len() % 188 == 0));
        // PAT first; demuxing finds a keyframe first.
        assert_eq!((all[0], all[1] & 0x1F, all[2]), (0x47, 0, 0));
        let mut demux = TsDemuxer::new();
        demux.push(&all);
        demux.flush();
        let first_video = std::iter::from_fn(|| demux.poll())
            .filter_map(|e| match e.unwrap() {
                DemuxEvent::Frame(fr) if fr.codec == CodecId::H264 && !fr.is_config() => Some(fr),
                _ => None,
            })
            .next()
            .unwrap();
        assert!(first_video.is_keyframe());
    }
    let total: f64 = files.iter().map(|f| f.seconds).sum();
    assert!((total - 6.0).abs() < 1e-9, "{total}");
}

#[test]
fn size_limit_rotates_at_the_next_keyframe() {
    let mut frames = vec![avcc()];
    // 1 s GOPs of 100 KiB keyframes.
    for i in 0..125 {
        let mut f = video(i, 25, 25);
        if f.is_keyframe() {
            let mut p = vec![0u8; 100 << 10];
            p[..4].copy_from_slice(&((100u32 << 10) - 4).to_be_bytes());
            p[4] = 0x65;
            f.payload = Bytes::from(p);
        }
        frames.push(f);
    }
    let c = RecordConfig { max_size: Some(150 << 10), ..config(RecordFormat::Fmp4, 600) };
    let files = run(c, &frames);
    // Each file takes two keyframes before it passes 150 KiB.
    assert_eq!(files.iter().map(|f| f.seconds).collect::<Vec<_>>(), [2.0, 2.0, 1.0]);
}

#[test]
fn discontinuity_codec_change_and_timestamp_jumps_start_new_files() {
    let mut frames = stream(2, 25);
    // A new publisher: timestamps restart at 0.
    let mut again = stream(2, 25);
    again[2].flags |= FrameFlags::DISCONTINUITY;
    frames.extend(again);
    let files = run(config(RecordFormat::Fmp4, 600), &frames);
    assert_eq!(files.len(), 2);
    assert!(!files[0].discontinuity && files[1].discontinuity);

    // A jump back without the flag, then a configuration change.
    let mut frames = stream(2, 25);
    frames.extend(stream(1, 25).into_iter().skip(2));
    let mut other = asc();
    other.payload = Bytes::from_static(&[0x12, 0x10]); // AAC-LC 44.1 kHz stereo
    frames.push(other);
    frames.push(video(100, 25, 25));
    let files = run(config(RecordFormat::Fmp4, 600), &frames);
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[1].discontinuity && files[2].discontinuity);
    // The same configuration again (a player joining) changes nothing.
    let mut frames = stream(2, 25);
    frames.insert(30, asc());
    frames.insert(31, avcc());
    assert_eq!(run(config(RecordFormat::Fmp4, 600), &frames).len(), 1);
}

#[test]
fn video_waits_for_a_keyframe_and_audio_only_streams_start_after_a_second() {
    let mut frames = vec![avcc(), asc()];
    // Non-key frames and audio before the first keyframe are not recorded.
    frames.extend((1..10).map(|i| video(i, 25, 1000)).map(|mut f| {
        f.flags = FrameFlags::EMPTY;
        f
    }));
    frames.push(video(10, 25, 10));
    frames.push(video(11, 25, 10));
    frames.push(video(12, 25, 10));
    let files = run(config(RecordFormat::Fmp4, 600), &frames);
    assert_eq!(files.len(), 1);
    assert!((files[0].seconds - 0.12).abs() < 1e-9, "{}", files[0].seconds);

    let mut frames = vec![asc()];
    frames.extend((0..100).map(audio));
    let files = run(config(RecordFormat::Fmp4, 600), &frames);
    assert_eq!(files.len(), 1);
    let expected = 100.0 * 1024.0 / 48_000.0;
    assert!((files[0].seconds - expected).abs() < 1e-9, "{}", files[0].seconds);
    let samples: u32 = files[0].appends.iter().flat_map(|a| fragment_samples(a)).map(|(_, n, _)| n).sum();
    assert_eq!(samples, 100);
}

#[test]
fn a_gap_closes_the_file_and_marks_the_next_one() {
    let frames = stream(4, 25);
    let mut s = Segmenter::new(config(RecordFormat::Fmp4, 600));
    let mut steps = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if i == frames.len() / 2 {
            s.gap(&mut steps);
            assert!(!s.is_open());
        }
        s.push(f, NOW, &mut steps);
    }
    s.finish(&mut steps);
    let files = files(steps);
    assert_eq!(files.len(), 2);
    assert!(files[1].discontinuity);
}

#[test]
fn negative_timestamps_are_shifted_by_whole_seconds() {
    let frames: Vec<MediaFrame> = stream(2, 25)
        .into_iter()
        .map(|mut f| {
            if !f.is_config() {
                f.dts -= i64::from(f.timebase.den()) * 3 / 2;
                f.pts = f.dts;
            }
            f
        })
        .collect();
    let files = run(config(RecordFormat::Fmp4, 600), &frames);
    assert_eq!(files.len(), 1);
    assert!((files[0].seconds - 2.0).abs() < 1e-9);
    // The first fragment's video tfdt is 0.5 s (-1.5 s + 2 s).
    let frag = &files[0].appends[0];
    let at = frag.windows(4).position(|w| w == b"tfdt").unwrap();
    let tfdt = u64::from_be_bytes(frag[at + 8..at + 16].try_into().unwrap());
    assert_eq!(tfdt, 45_000);
}
