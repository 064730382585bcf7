//! Bus fan-out: CPU time per round of 64 frames delivered to N subscribers,
//! the arcly bus (frames published one by one, and a round at a time with
//! `publish_many`) against `tokio::sync::broadcast`.
//!
//! Criterion is given CPU time (all threads) instead of wall time, so its
//! "time" is CPU per round and its throughput is deliveries per CPU-second.
//! Run: `cargo bench -p arcly-benches --bench fanout`.

use std::time::Duration;

use arcly_benches::{Fanout, FanoutRig};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn fanout(c: &mut Criterion) {
    for size in [1024, 50 * 1024] {
        let mut group = c.benchmark_group(format!("fanout_{}k", size / 1024));
        group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
        for subscribers in [1, 100, 1_000, 10_000] {
            for (name, kind, burst) in [
                ("arcly_publish", Fanout::Arcly, false),
                ("arcly_publish_many", Fanout::Arcly, true),
                ("tokio_broadcast", Fanout::TokioBroadcast, false),
            ] {
                let mut rig = FanoutRig::new(kind, subscribers, size).burst(burst);
                group.throughput(Throughput::Elements(rig.deliveries_per_round()));
                group.bench_function(BenchmarkId::new(name, subscribers), |b| b.iter_custom(|n| rig.rounds(n)));
            }
        }
        group.finish();
    }
}

criterion_group!(benches, fanout);
criterion_main!(benches);
