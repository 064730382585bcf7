//! Prints the bus fan-out tables recorded in BENCHMARKS.md.
//!
//! Run: `cargo run --release -p arcly-benches --bin bus-report`.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use arcly_benches::{Fanout, FanoutRig, Pacing, live_rate};

/// Deliveries measured per case (at least; whole rounds).
const DELIVERIES: u64 = 20_000_000;

/// CPU ns per delivery and deliveries per wall-clock second.
fn measure(kind: Fanout, burst: bool, subscribers: usize, size: usize) -> (f64, f64) {
    let mut rig = FanoutRig::new(kind, subscribers, size).burst(burst);
    let per_round = rig.deliveries_per_round();
    rig.rounds((DELIVERIES / per_round / 10).max(1)); // warm-up
    let rounds = DELIVERIES.div_ceil(per_round);
    let wall = Instant::now();
    let cpu = rig.rounds(rounds);
    let wall = wall.elapsed();
    let deliveries = (rounds * per_round) as f64;
    (cpu.as_nanos() as f64 / deliveries, deliveries / wall.as_secs_f64())
}

fn main() {
    let live_only = std::env::args().any(|a| a == "--live-only");
    if !live_only {
        fanout_table();
    }
    live_table();
}

fn fanout_table() {
    println!(
        "| frame | subscribers | arcly `publish` ns | arcly `publish_many` ns | broadcast ns | broadcast / arcly `publish` | broadcast / arcly `publish_many` | arcly `publish_many` deliveries/s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for size in [1024, 50 * 1024] {
        for subscribers in [1, 100, 1_000, 10_000] {
            let (a_ns, _) = measure(Fanout::Arcly, false, subscribers, size);
            let (m_ns, m_rate) = measure(Fanout::Arcly, true, subscribers, size);
            let (b_ns, _) = measure(Fanout::TokioBroadcast, false, subscribers, size);
            println!(
                "| {} KB | {subscribers} | {a_ns:.1} | {m_ns:.1} | {b_ns:.1} | {:.1}x | {:.1}x | {:.1} M |",
                size / 1024,
                b_ns / a_ns,
                b_ns / m_ns,
                m_rate / 1e6
            );
        }
    }
    println!();
}

fn live_table() {
    let window = Duration::from_millis(100);
    println!(
        "| live rate | subscribers | batch window | pacing | CPU, % of one core | frames delivered | frames published x subscribers |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, pacing) in
        [("timer per subscriber", Pacing::TimerPerSubscriber), ("shared `BatchClock`", Pacing::SharedClock)]
    {
        let r = live_rate(10_000, 30, window, Duration::from_secs(10), 12_500, pacing);
        println!(
            "| 30 fps, 12.5 KB frames, 10 s | 10000 | {} ms | {name} | {:.2}% | {} | {} |",
            window.as_millis(),
            r.core_percent(),
            r.delivered,
            r.published * 10_000
        );
    }
}
