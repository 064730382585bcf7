//! `arcly-hls`: what an HTTP request names (query directives, file names)
//! and the packager.

use std::time::{Duration, SystemTime};

use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
use arcly_hls::{HlsConfig, Packager, PlaylistKind, PlaylistRequest};
use bytes::Bytes;

thread_local! {
    /// A packager with a few segments and parts written, some of them
    /// already deleted from its window: the files that requests name.
    static PACKAGER: Packager = packager();
}

fn packager() -> Packager {
    let mut packager = Packager::new(HlsConfig {
        segment_target: Duration::from_millis(200),
        part_target: Duration::from_millis(100),
        window: 3,
        ..HlsConfig::default()
    });
    let head = [b"OpusHead".as_slice(), &[1, 2, 0x38, 1, 0x80, 0xBB, 0, 0, 0, 0, 0]].concat();
    let now = SystemTime::UNIX_EPOCH;
    packager.push(&MediaFrame::new(CodecId::Opus, head.into()).with_flags(FrameFlags::CONFIG), now);
    let tb = Timebase::sample_rate(48_000).expect("a valid sample rate");
    for i in 0..75 {
        let packet = MediaFrame::new(CodecId::Opus, Bytes::from_static(&[0xFC, 0xFF, 0xFE]))
            .with_timestamps(i * 960, i * 960, tb)
            .with_flags(FrameFlags::KEYFRAME);
        packager.push(&packet, now);
    }
    assert!(packager.media_sequence() > 0, "the fuzz packager's window has moved on");
    packager
}

/// An HLS request, as the server hands it to `arcly-hls`: a query string
/// (up to the first newline; `&`-separated `name=value` pairs) and a file
/// name (the rest).
/// - The delivery directives parse or are refused; what parses, written
///   back as a canonical query, parses to the same request, and a
///   directive is present exactly when the query names it.
/// - The file name is looked up as a segment (fMP4 and TS) and a part of a
///   packager with segments written and deleted; what is found is not
///   empty.
pub fn hls_params(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (query, name) = text.split_once('\n').unwrap_or((&text, ""));
    let pairs: Vec<(&str, &str)> =
        query.split('&').filter(|kv| !kv.is_empty()).map(|kv| kv.split_once('=').unwrap_or((kv, ""))).collect();
    if let Ok(req) = PlaylistRequest::from_query(pairs.iter().copied()) {
        let named = |n: &str| pairs.iter().any(|(k, _)| *k == n);
        assert_eq!((req.msn.is_some(), req.part.is_some()), (named("_HLS_msn"), named("_HLS_part")));
        let mut canonical = Vec::new();
        if let Some(msn) = req.msn {
            canonical.push(("_HLS_msn", msn.to_string()));
        }
        if let Some(part) = req.part {
            canonical.push(("_HLS_part", part.to_string()));
        }
        canonical.push(("_HLS_skip", if req.skip { "YES" } else { "NO" }.to_owned()));
        let again = PlaylistRequest::from_query(canonical.iter().map(|(k, v)| (*k, v.as_str())));
        assert_eq!(again.as_ref(), Ok(&req), "canonical directives {canonical:?}");
    }
    PACKAGER.with(|p| {
        for kind in [PlaylistKind::LowLatency, PlaylistKind::Ts] {
            if let Some(buffers) = p.segment(kind, name) {
                assert!(buffers.iter().any(|b| !b.is_empty()), "{kind:?} segment {name:?} is empty");
            }
        }
        if let Some(buffers) = p.part(name) {
            assert!(buffers.iter().any(|b| !b.is_empty()), "part {name:?} is empty");
        }
    });
}

/// The packager on synthetic frames derived from the input (codecs, flags,
/// timestamps going back and forth, sizes), then every playlist and
/// resource rendered: `arcly_hls::fuzz_packager`, on the first 1 KiB of
/// the input (256 frames; it renders a playlist after each, so longer
/// input only slows the fuzzer down).
pub fn hls_packager(data: &[u8]) {
    arcly_hls::fuzz_packager(&data[..data.len().min(1024)]);
}
