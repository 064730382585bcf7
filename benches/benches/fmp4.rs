//! fMP4 fragment writing throughput: about 8 MB of H.264-sized video frames
//! (30 fps, 40 kB each) interleaved with AAC frames, cut into 1 s
//! fragments, written either as one contiguous buffer per fragment (one
//! payload copy) or as parts for vectored writes (no payload copy).
//!
//! Run: `cargo bench -p arcly-benches --bench fmp4`.

use arcly_codec::h264::AvcConfig;
use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
use arcly_mux::fmp4::{FragmentWriter, TrackConfig};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// x264's parameter sets for 640x360 Constrained Baseline.
const SPS: [u8; 25] = [
    0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x03,
    0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
];
const PPS: [u8; 5] = [0x68, 0xcb, 0x83, 0xcb, 0x20];

/// (track, frame) in arrival order, and the payload bytes in total.
fn stream() -> (Vec<(usize, MediaFrame)>, u64) {
    let video = Bytes::from(vec![0x5a; 40_000]);
    let audio = Bytes::from(vec![0x21; 400]);
    let audio_tb = Timebase::sample_rate(48_000).expect("rate");
    let mut frames = Vec::new();
    let mut total = 0;
    let mut next_audio = 0i64;
    for i in 0..200i64 {
        let dts = i * 3000;
        // Two B-frames per P-frame: composition offsets cycle.
        let pts = dts + [6000, 9000, 3000][(i % 3) as usize];
        let mut f = MediaFrame::new(CodecId::H264, video.clone()).with_timestamps(pts, dts, Timebase::MPEG);
        if i % 30 == 0 {
            f = f.with_flags(FrameFlags::KEYFRAME);
        }
        total += video.len() as u64;
        frames.push((0, f));
        while Timebase::MPEG.rescale(dts, audio_tb) >= next_audio {
            let a = MediaFrame::new(CodecId::Aac, audio.clone()).with_timestamps(next_audio, next_audio, audio_tb);
            total += audio.len() as u64;
            frames.push((1, a));
            next_audio += 1024;
        }
    }
    (frames, total)
}

fn tracks() -> Vec<TrackConfig> {
    let avcc = AvcConfig::from_parameter_sets(&[&SPS], &[&PPS]).expect("parameter sets").to_bytes();
    vec![TrackConfig::h264(&avcc).expect("avcC"), TrackConfig::aac(&[0x11, 0x90]).expect("ASC")]
}

fn write_all(frames: &[(usize, MediaFrame)], tracks: &[TrackConfig], parts: bool) -> usize {
    let mut writer = FragmentWriter::new(tracks);
    let mut out = 0;
    for (track, frame) in frames {
        if *track == 0 && frame.is_keyframe() {
            out += if parts {
                writer.flush_fragment_parts().iter().map(Bytes::len).sum()
            } else {
                writer.flush_fragment().map_or(0, |b| b.len())
            };
        }
        writer.push(*track, frame).expect("push");
    }
    out + writer.finish().map_or(0, |b| b.len())
}

fn fragments(c: &mut Criterion) {
    let (frames, total) = stream();
    let tracks = tracks();
    let written = write_all(&frames, &tracks, false);
    assert!(written as u64 > total, "fragments hold every payload");
    let mut group = c.benchmark_group("fmp4");
    group.throughput(Throughput::Bytes(total));
    group.bench_function("fragments_contiguous_8MB", |b| {
        b.iter(|| write_all(std::hint::black_box(&frames), &tracks, false))
    });
    group.bench_function("fragments_parts_8MB", |b| b.iter(|| write_all(std::hint::black_box(&frames), &tracks, true)));
    group.finish();
}

criterion_group!(benches, fragments);
criterion_main!(benches);
