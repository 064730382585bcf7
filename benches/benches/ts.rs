//! MPEG-TS throughput: demuxing testdata/h264_aac.ts repeated to ~8 MB
//! (continuity counters restart at each repeat, which the demuxer reports
//! and carries on from), and muxing the frames demuxed from it.
//!
//! Run: `cargo bench -p arcly-benches --bench ts`.

use arcly_core::frame::{CodecId, MediaFrame};
use arcly_mux::ts::{DemuxEvent, TrackSpec, TsDemuxer, TsMuxer};
use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const TARGET: usize = 8 << 20;

fn stream() -> Vec<u8> {
    let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/h264_aac.ts")).expect("test stream");
    let mut buf = Vec::with_capacity(TARGET + file.len());
    while buf.len() < TARGET {
        buf.extend_from_slice(&file);
    }
    buf
}

/// Demuxes `data` in 64 KiB chunks (a socket read's worth) and counts frames.
fn demux(data: &[u8]) -> usize {
    let mut demux = TsDemuxer::new();
    let mut frames = 0;
    for chunk in data.chunks(64 << 10) {
        demux.push(chunk);
        while let Some(event) = demux.poll() {
            frames += usize::from(matches!(event, Ok(DemuxEvent::Frame(_))));
        }
    }
    demux.flush();
    while let Some(event) = demux.poll() {
        frames += usize::from(matches!(event, Ok(DemuxEvent::Frame(_))));
    }
    frames
}

fn frames_of(data: &[u8]) -> Vec<MediaFrame> {
    let mut demux = TsDemuxer::new();
    demux.push(data);
    demux.flush();
    std::iter::from_fn(|| demux.poll())
        .filter_map(|e| if let Ok(DemuxEvent::Frame(f)) = e { Some(f) } else { None })
        .collect()
}

fn mux(frames: &[MediaFrame], out: &mut BytesMut) {
    let mut mux =
        TsMuxer::new(&[TrackSpec::new(CodecId::H264, None), TrackSpec::new(CodecId::Aac, None)]).expect("muxer");
    for f in frames {
        mux.write_frame(f, out).expect("mux");
    }
}

fn ts(c: &mut Criterion) {
    let data = stream();
    let frames = frames_of(&data);
    assert!(demux(&data) > 10_000, "the stream has many frames");
    let mut out = BytesMut::with_capacity(data.len() * 2);
    mux(&frames, &mut out);
    let muxed = out.len();

    let mut group = c.benchmark_group("ts");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("demux_8MB", |b| b.iter(|| demux(std::hint::black_box(&data))));
    // Throughput counted in output bytes: the transport stream written.
    group.throughput(Throughput::Bytes(muxed as u64));
    group.bench_function("mux_8MB", |b| {
        b.iter(|| {
            out.clear();
            mux(std::hint::black_box(&frames), &mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, ts);
criterion_main!(benches);
