//! Benchmark rigs shared by the criterion benches and the report binaries.
//!
//! CPU time is what these benchmarks measure, not wall time: the sum of the
//! on-CPU time of every thread of the process, read from the kernel's
//! per-thread scheduler statistics (nanosecond resolution).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arcly_core::bus::{self, Batch, BatchClock, BusConfig, StreamPublisher};
use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
use bytes::Bytes;
use tokio::runtime::Runtime;
use tokio::sync::{Notify, broadcast};

/// CPU time used so far by every live thread of this process.
///
/// Reads `/proc/self/task/*/schedstat` (Linux). Returns zero elsewhere.
pub fn process_cpu_time() -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ns = 0u64;
    for task in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
            ns += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

/// Which fan-out implementation a rig drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fanout {
    /// The arcly bus, subscribers draining in batches.
    Arcly,
    /// `tokio::sync::broadcast`, subscribers receiving one frame per call.
    TokioBroadcast,
}

/// Frames published per round; subscribers drain a whole round.
pub const ROUND: usize = 64;

fn frame(seq: u64, size: usize, payload: &Bytes) -> MediaFrame {
    let f = MediaFrame::new(CodecId::H264, payload.slice(..size)).with_timestamps(
        seq as i64 * 3000,
        seq as i64 * 3000,
        Timebase::MPEG,
    );
    if seq.is_multiple_of(ROUND as u64) { f.with_flags(FrameFlags::KEYFRAME) } else { f }
}

enum Sender {
    Arcly(StreamPublisher),
    Broadcast(broadcast::Sender<Arc<MediaFrame>>),
}

/// One publisher and `subscribers` tokio tasks that drain every frame, on a
/// two-thread runtime. Rounds of [`ROUND`] frames are published; a round
/// ends when every subscriber has received all of its frames.
pub struct FanoutRig {
    rt: Runtime,
    sender: Sender,
    subscribers: usize,
    frame_size: usize,
    payload: Bytes,
    seq: u64,
    remaining: Arc<AtomicUsize>,
    round_done: Arc<Notify>,
    burst: bool,
}

impl FanoutRig {
    /// Starts the runtime and the subscriber tasks.
    pub fn new(kind: Fanout, subscribers: usize, frame_size: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers())
            .enable_all()
            .build()
            .expect("runtime");
        let remaining = Arc::new(AtomicUsize::new(0));
        let round_done = Arc::new(Notify::new());
        let sender = rt.block_on(async {
            match kind {
                Fanout::Arcly => {
                    let cfg = BusConfig {
                        gop_cache_frames: 0,
                        lag_limit_frames: ROUND * 4,
                        max_consecutive_skips: 0,
                        ..BusConfig::default()
                    };
                    let (publisher, handle) = bus::stream("bench/fanout".parse().unwrap(), cfg, None);
                    for _ in 0..subscribers {
                        let mut sub = handle.subscribe();
                        let (remaining, done) = (remaining.clone(), round_done.clone());
                        tokio::spawn(async move {
                            let mut batch = Batch::new();
                            let mut got = 0;
                            while sub.recv_batch(&mut batch, ROUND).await.is_ok() {
                                got += batch.len();
                                batch.clear();
                                if got % ROUND == 0 && remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                                    done.notify_one();
                                }
                            }
                        });
                    }
                    Sender::Arcly(publisher)
                }
                Fanout::TokioBroadcast => {
                    let (tx, _) = broadcast::channel::<Arc<MediaFrame>>(ROUND * 4);
                    for _ in 0..subscribers {
                        let mut rx = tx.subscribe();
                        let (remaining, done) = (remaining.clone(), round_done.clone());
                        tokio::spawn(async move {
                            let mut got = 0;
                            while let Ok(frame) = rx.recv().await {
                                drop(frame);
                                got += 1;
                                if got % ROUND == 0 && remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                                    done.notify_one();
                                }
                            }
                        });
                    }
                    Sender::Broadcast(tx)
                }
            }
        });
        let payload = Bytes::from(vec![0x41u8; frame_size.max(1)]);
        let mut rig =
            Self { rt, sender, subscribers, frame_size, payload, seq: 0, remaining, round_done, burst: false };
        // The first round publishes the keyframe arcly joiners wait for.
        rig.rounds(1);
        rig
    }

    /// Publishes each round with one `publish_many` call (one wake-up per
    /// round) instead of one `publish` per frame. Arcly only.
    pub fn burst(mut self, burst: bool) -> Self {
        self.burst = burst;
        self
    }

    /// Publishes `n` rounds and waits for every subscriber to drain them.
    /// Returns the process CPU time they took.
    pub fn rounds(&mut self, n: u64) -> Duration {
        let start = process_cpu_time();
        for _ in 0..n {
            self.remaining.store(self.subscribers, Ordering::Release);
            let done = self.round_done.clone();
            let notified = done.notified();
            let first = self.seq;
            self.seq += ROUND as u64;
            let (size, payload) = (self.frame_size, &self.payload);
            let frames = (first..self.seq).map(|seq| frame(seq, size, payload));
            match &self.sender {
                Sender::Arcly(p) if self.burst => {
                    p.publish_many(frames);
                }
                Sender::Arcly(p) => frames.for_each(|f| {
                    p.publish(f);
                }),
                Sender::Broadcast(tx) => frames.for_each(|f| {
                    let _ = tx.send(Arc::new(f));
                }),
            }
            self.rt.block_on(notified);
        }
        process_cpu_time() - start
    }

    /// Deliveries in one round.
    pub fn deliveries_per_round(&self) -> u64 {
        (ROUND * self.subscribers) as u64
    }
}

/// The result of a live-rate run.
#[derive(Clone, Copy, Debug)]
pub struct LiveRate {
    /// Process CPU time over the run.
    pub cpu: Duration,
    /// Wall time of the run.
    pub wall: Duration,
    /// Frames published in the measured window and delivered to subscribers.
    pub delivered: u64,
    /// Frames published in the measured window.
    pub published: u64,
}

impl LiveRate {
    /// CPU time as a percentage of one core.
    pub fn core_percent(&self) -> f64 {
        self.cpu.as_secs_f64() * 100.0 / self.wall.as_secs_f64()
    }
}

/// How live-rate subscribers wait for their next batch window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// Each subscriber sleeps on its own tokio timer.
    TimerPerSubscriber,
    /// All subscribers wait on one shared [`BatchClock`].
    SharedClock,
}

/// One publisher at `fps` frames per second and `subscribers` tasks that
/// each wake once per `window`, drain everything available and wait for the
/// next window, for `duration` of wall time.
pub fn live_rate(
    subscribers: usize,
    fps: u32,
    window: Duration,
    duration: Duration,
    frame_size: usize,
    pacing: Pacing,
) -> LiveRate {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers()).enable_all().build().expect("runtime");
    let delivered = Arc::new(AtomicUsize::new(0));
    rt.block_on(async {
        let (publisher, handle) = bus::stream("bench/live".parse().unwrap(), BusConfig::default(), None);
        let payload = Bytes::from(vec![0x41u8; frame_size.max(1)]);
        publisher.publish(frame(0, frame_size, &payload));
        let mut tasks = Vec::with_capacity(subscribers);
        let epoch = tokio::time::Instant::now();
        let clock = BatchClock::start(window);
        for _ in 0..subscribers {
            let mut sub = handle.subscribe();
            let delivered = delivered.clone();
            let mut pacer = clock.pacer();
            tasks.push(tokio::spawn(async move {
                let mut batch = Batch::new();
                let mut tick = epoch;
                let mut got = 0;
                loop {
                    match sub.recv_batch(&mut batch, usize::MAX).await {
                        Ok(n) => {
                            // Counted per task: a counter shared by every
                            // task would cost more than the delivery.
                            got += n;
                            batch.clear();
                        }
                        Err(_) => {
                            delivered.fetch_add(got, Ordering::Relaxed);
                            return;
                        }
                    }
                    if pacing == Pacing::SharedClock {
                        pacer.tick().await;
                        continue;
                    }
                    // Sleep to the next window boundary: all subscribers
                    // share the boundaries, as a player's write timer would.
                    let now = tokio::time::Instant::now();
                    while tick <= now {
                        tick += window;
                    }
                    tokio::time::sleep_until(tick).await;
                }
            }));
        }
        // Let every subscriber take its first batch before measuring.
        tokio::time::sleep(window * 2).await;
        let period = Duration::from_secs(1) / fps;
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let (cpu0, wall0) = (process_cpu_time(), Instant::now());
        let mut seq = 1;
        while wall0.elapsed() < duration {
            interval.tick().await;
            publisher.publish(frame(seq, frame_size, &payload));
            seq += 1;
        }
        let (cpu, wall) = (process_cpu_time() - cpu0, wall0.elapsed());
        drop(publisher);
        for t in tasks {
            let _ = t.await;
        }
        // Every subscriber also received frame 0, published before the
        // measured window.
        let delivered = (delivered.load(Ordering::Relaxed) - subscribers) as u64;
        LiveRate { cpu, wall, delivered, published: seq - 1 }
    })
}

/// Runtime worker threads: 2, or `ARCLY_BENCH_WORKERS`.
fn workers() -> usize {
    std::env::var("ARCLY_BENCH_WORKERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2)
}
