//! Codec scanning throughput: the Annex B start-code scanner on a 1 MB
//! buffer of real H.264 (the committed test stream, repeated).
//!
//! Run: `cargo bench -p arcly-benches --bench codec`.

use arcly_codec::annexb;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn start_codes(c: &mut Criterion) {
    let stream = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/h264.h264")).expect("test stream");
    let mut buf = Vec::with_capacity(1 << 20);
    while buf.len() < 1 << 20 {
        buf.extend_from_slice(&stream);
    }
    buf.truncate(1 << 20);
    let nals = annexb::split_annexb(&buf).count();
    let mut group = c.benchmark_group("annexb");
    group.throughput(Throughput::Bytes(buf.len() as u64));
    group.bench_function("split_1MB", |b| b.iter(|| annexb::split_annexb(std::hint::black_box(&buf)).count()));
    group.bench_function("find_start_codes_1MB", |b| {
        b.iter(|| {
            let mut pos = 0;
            let mut n = 0;
            while let Some((at, len)) = annexb::find_start_code(std::hint::black_box(&buf), pos) {
                pos = at + len;
                n += 1;
            }
            n
        })
    });
    group.finish();
    assert!(nals > 100, "the test stream has many NAL units: {nals}");
}

criterion_group!(benches, start_codes);
criterion_main!(benches);
