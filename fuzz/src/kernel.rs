//! `arcly-core`: stream ids from peers and the bus.

use arcly_core::bus::{self, Batch, BusConfig};
use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
use arcly_core::identity::{MAX_NAME_LEN, StreamId};
use bytes::Bytes;

/// Stream ids from peers: parsing never panics, and whatever is accepted is
/// safe as a path segment and round-trips through `Display`.
pub fn identity(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(id) = StreamId::parse(s) {
        for part in [id.app().as_str(), id.key().as_str()] {
            assert!(!part.is_empty() && part.len() <= MAX_NAME_LEN);
            assert!(!part.contains('/') && !part.contains(".."));
            assert!(!part.chars().any(char::is_control));
        }
        assert_eq!(StreamId::parse(&id.to_string()).as_ref(), Ok(&id));
    }
}

/// The bus under arbitrary publish and poll sequences: no panic, the
/// buffer stays within its bounds, and each subscriber's media frames
/// arrive in publish order.
pub fn bus_ops(data: &[u8]) {
    let Some((head, ops)) = data.split_first_chunk::<4>() else { return };
    let cfg = BusConfig {
        gop_cache_frames: usize::from(head[0] % 64),
        gop_cache_bytes: usize::from(head[1]) * 64,
        lag_limit_frames: usize::from(head[2] % 64),
        lag_limit_bytes: usize::from(head[3]) * 64,
        max_consecutive_skips: u32::from(head[3] % 5),
    };
    let max_frames = cfg.gop_cache_frames.max(cfg.lag_limit_frames).max(1);
    let max_bytes = cfg.gop_cache_bytes.max(cfg.lag_limit_bytes);
    let (publisher, handle) = bus::stream("fuzz/bus".parse().expect("a valid stream id"), cfg, None);
    let mut subs: Vec<(bus::Subscriber, Option<i64>)> = Vec::new();
    let mut batch = Batch::new();
    let mut seq = 0i64;
    for op in ops.chunks(2) {
        let (a, b) = (op[0], op.get(1).copied().unwrap_or(0));
        match a % 4 {
            0 | 1 => {
                let (codec, flags) = match b % 6 {
                    0 => (CodecId::H264, FrameFlags::KEYFRAME),
                    1 => (CodecId::H264, FrameFlags::CONFIG),
                    2 => (CodecId::Aac, FrameFlags::EMPTY),
                    3 => (CodecId::Aac, FrameFlags::CONFIG),
                    4 => (CodecId::Metadata, FrameFlags::CONFIG),
                    _ => (CodecId::H264, FrameFlags::EMPTY),
                };
                let f = MediaFrame::new(codec, Bytes::from(vec![0u8; usize::from(a / 4) * 8]))
                    .with_timestamps(seq, seq, Timebase::MILLIS)
                    .with_flags(flags);
                seq += 1;
                publisher.publish(f);
                let (frames, bytes) = handle.buffered();
                assert!(frames <= max_frames);
                assert!(bytes <= max_bytes || frames == 1);
            }
            2 if subs.len() < 8 => subs.push((handle.subscribe(), None)),
            _ => {
                if subs.is_empty() {
                    continue;
                }
                let i = usize::from(b) % subs.len();
                batch.clear();
                let (sub, last) = &mut subs[i];
                if sub.try_recv_batch(&mut batch, usize::from(a / 4) + 1).is_err() {
                    subs.swap_remove(i);
                    continue;
                }
                for f in batch.iter().filter(|f| !f.is_config()) {
                    assert!(last.is_none_or(|l| f.pts > l), "media frame out of order");
                    *last = Some(f.pts);
                }
            }
        }
    }
}
