//! `arcly-hls`: what an HTTP request names (query directives, file names)
//! and the packager.

use std::time::{Duration, SystemTime};

use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
use arcly_hls::{HlsConfig, Packager, PlaylistKind, PlaylistRequest};
use arcly_mux::flv::FlvReader;
use arcly_mux::ts::{DemuxEvent, TsDemuxer};
use bytes::Bytes;

use crate::split;

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

/// The packager on the frames of a real-looking ingest: an MPEG-TS stream
/// (seed's high bit clear) or an FLV stream (set), demuxed or read up to
/// the first error, pushed frame by frame with settings from the seed's
/// other bits (segment and part targets, window, formats). Every URI the
/// media playlists list (segments, parts, initialisation segments; full
/// playlists and delta updates; LL-HLS and TS) is served and not empty,
/// and no `EXT-X-PROGRAM-DATE-TIME` is before the stream started, while
/// the stream runs and after it ends.
pub fn hls_ingest(data: &[u8]) {
    let (seed, stream) = split::seeded(data);
    let frames = if seed & 0x80 == 0 { ts_frames(stream) } else { flv_frames(stream) };
    let formats = seed >> 5 & 0x03;
    let mut packager = Packager::new(HlsConfig {
        segment_target: Duration::from_millis(100 * u64::from(1 + (seed & 0x07))),
        part_target: Duration::from_millis(if seed & 0x08 == 0 { 40 } else { 100 }),
        window: 2 + usize::from(seed >> 4 & 0x01),
        ts: formats != 1,
        fmp4: formats != 2,
        ..HlsConfig::default()
    });
    // 2023-11-14T22:13:20Z
    let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for (i, frame) in frames.iter().enumerate() {
        packager.push(frame, now);
        now += Duration::from_millis(20);
        if i % 8 == 7 {
            every_listed_uri_is_served(&packager);
        }
    }
    every_listed_uri_is_served(&packager);
    packager.discontinuity();
    packager.finish();
    every_listed_uri_is_served(&packager);
    let _ = packager.multivariant();
}

fn ts_frames(stream: &[u8]) -> Vec<MediaFrame> {
    let mut demux = TsDemuxer::new();
    demux.push(stream);
    demux.flush();
    std::iter::from_fn(|| demux.poll())
        .filter_map(|e| match e {
            Ok(DemuxEvent::Frame(f)) => Some(f),
            _ => None,
        })
        .collect()
}

fn flv_frames(stream: &[u8]) -> Vec<MediaFrame> {
    let mut reader = FlvReader::new();
    reader.push(stream);
    std::iter::from_fn(|| reader.next_tag()).map_while(Result::ok).filter_map(|t| t.to_frame().ok().flatten()).collect()
}

fn every_listed_uri_is_served(p: &Packager) {
    for kind in [PlaylistKind::LowLatency, PlaylistKind::Ts] {
        for skip in [false, true] {
            let Some(text) = p.media_playlist(kind, skip) else { continue };
            for line in text.lines() {
                if let Some(date) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                    assert!(date >= "2023-11-14T22:13:20.000Z", "a segment dated {date}, before the stream:\n{text}");
                }
            }
            for uri in listed_uris(&text) {
                let served = match kind {
                    PlaylistKind::LowLatency if uri.starts_with("part") => p.part(uri),
                    _ => p.segment(kind, uri),
                };
                assert!(
                    served.is_some_and(|b| b.iter().any(|b| !b.is_empty())),
                    "the {kind:?} playlist lists {uri}, which is not served:\n{text}"
                );
            }
        }
    }
}

/// The URIs of a media playlist that must exist now: URI lines and the
/// `URI` attributes of `EXT-X-MAP` and `EXT-X-PART` (not of
/// `EXT-X-PRELOAD-HINT`, whose part is yet to come).
fn listed_uris(playlist: &str) -> Vec<&str> {
    let mut uris = Vec::new();
    for line in playlist.lines() {
        if line.is_empty() {
            continue;
        }
        if !line.starts_with('#') {
            uris.push(line);
        } else if line.starts_with("#EXT-X-MAP:") || line.starts_with("#EXT-X-PART:") {
            let uri = line.split_once("URI=\"").and_then(|(_, rest)| rest.split_once('"')).map(|(uri, _)| uri);
            uris.extend(uri);
        }
    }
    uris
}
