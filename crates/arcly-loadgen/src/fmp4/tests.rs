//! The reader against the workspace's own fMP4 writer, hand-built boxes for
//! what that writer does not use, and malformed input.

use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
use arcly_mux::fmp4::{BoxWriter, FragmentWriter, TrackConfig};
use bytes::Bytes;
use proptest::prelude::*;

use super::*;

/// What a player should see: per handler, (dts in ms, keyframe).
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    video: Vec<(i64, bool)>,
    audio: Vec<(i64, bool)>,
}

impl Seen {
    fn add(&mut self, samples: &[Sample]) {
        for s in samples {
            match s.handler {
                Handler::Video => self.video.push((s.dts_ms, s.keyframe)),
                Handler::Audio => self.audio.push((s.dts_ms, s.keyframe)),
                Handler::Other => {}
            }
        }
    }
}

/// A stream as the server packages one from RTMP: H.264 with millisecond
/// timestamps (30 fps, a keyframe every 15 frames) and AAC at 48 kHz, cut
/// into a fragment every `cut` video frames.
struct Written {
    init: Bytes,
    fragments: Vec<Bytes>,
    expected: Seen,
}

fn write_stream(video_frames: i64, cut: i64) -> Written {
    let avc = TrackConfig::h264(crate::SYNTHETIC_AVCC).expect("the synthetic avcC is valid");
    let aac = TrackConfig::aac(&[0x11, 0x90]).unwrap();
    let mut writer = FragmentWriter::new(&[avc, aac]);
    let audio_tb = Timebase::sample_rate(48_000).unwrap();
    let (mut fragments, mut expected, mut a) = (Vec::new(), Seen::default(), 0i64);
    for n in 0..video_frames {
        let ms = (n * 1000 + 15) / 30;
        let key = n % 15 == 0;
        let payload = Bytes::from(vec![if key { 0x65 } else { 0x41 }; 50 + n as usize]);
        let mut frame = MediaFrame::new(CodecId::H264, payload).with_timestamps(ms, ms, Timebase::MILLIS);
        if key {
            frame = frame.with_flags(FrameFlags::KEYFRAME);
        }
        writer.push(0, &frame).unwrap();
        expected.video.push((ms, key));
        while a * 1024 * 1000 / 48_000 <= ms {
            let audio = MediaFrame::new(CodecId::Aac, Bytes::from_static(&[0x21; 20])).with_timestamps(
                a * 1024,
                a * 1024,
                audio_tb,
            );
            writer.push(1, &audio).unwrap();
            expected.audio.push(((a * 1024 * 1000 + 24_000) / 48_000, true));
            a += 1;
        }
        if n % cut == cut - 1 {
            fragments.extend(writer.flush_fragment());
        }
    }
    fragments.extend(writer.finish());
    Written { init: writer.init_segment(), fragments, expected }
}

/// Feeds `body` in pieces of the given sizes (cycled), then ends it.
fn read_body(reader: &mut FragmentReader, body: &[u8], pieces: &[usize], seen: &mut Seen) -> Result<()> {
    let mut rest = body;
    for &k in pieces.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at(k.clamp(1, rest.len()));
        reader.feed(now)?;
        rest = later;
    }
    reader.finish()?;
    seen.add(&reader.out);
    reader.out.clear();
    Ok(())
}

#[test]
fn init_segment_of_the_workspace_writer() {
    let w = write_stream(1, 1);
    let tracks = parse_init(&w.init).unwrap();
    let summary: Vec<_> = tracks.iter().map(|t| (t.id, t.handler, t.timescale)).collect();
    assert_eq!(summary, [(1, Handler::Video, 90_000), (2, Handler::Audio, 48_000)]);
}

#[test]
fn parts_of_the_workspace_writer_read_frame_by_frame_in_any_pieces() {
    let w = write_stream(100, 6);
    assert!(w.fragments.len() > 10);
    for pieces in [&[usize::MAX][..], &[1], &[7, 1, 300], &[8], &[16]] {
        // One body per fragment, as LL-HLS parts come.
        let mut reader = FragmentReader::new(parse_init(&w.init).unwrap());
        let mut seen = Seen::default();
        for f in &w.fragments {
            read_body(&mut reader, f, pieces, &mut seen).unwrap();
        }
        assert_eq!(seen, w.expected, "pieces {pieces:?}");
        // All in one body, as a segment.
        let whole = w.fragments.concat();
        let mut seen = Seen::default();
        read_body(&mut reader, &whole, pieces, &mut seen).unwrap();
        assert_eq!(seen, w.expected, "one body, pieces {pieces:?}");
    }
}

/// `(moof + mdat, offset of the first trun's data_offset field)`: track 1,
/// tfhd defaults (duration 3000, size 10, non-sync) and default-base-is-
/// moof, a version-0 tfdt, a first trun of 3 samples with only a data
/// offset and first-sample-flags, a second trun of 2 samples with only
/// sizes, no data offset (its data follows the first run's).
fn hand_fragment(track_id: u32, mdat_payload: usize) -> Bytes {
    let mut w = BoxWriter::new();
    let mut offset_at = 0;
    w.write_box(*b"moof", |w| {
        w.full_box(*b"mfhd", 0, 0, |w| w.u32(7));
        w.write_box(*b"traf", |w| {
            let flags = TFHD_DEFAULT_BASE_IS_MOOF | TFHD_DEFAULT_DURATION | TFHD_DEFAULT_SIZE | TFHD_DEFAULT_FLAGS;
            w.full_box(*b"tfhd", 0, flags, |w| {
                w.u32(track_id);
                w.u32(3000);
                w.u32(10);
                w.u32(NON_SYNC | 0x0100_0000);
            });
            w.full_box(*b"tfdt", 0, 0, |w| w.u32(90_000));
            w.full_box(*b"trun", 0, TRUN_DATA_OFFSET | TRUN_FIRST_SAMPLE_FLAGS, |w| {
                w.u32(3);
                offset_at = w.len();
                w.u32(0);
                w.u32(0x0200_0000);
            });
            w.full_box(*b"trun", 0, TRUN_SIZE, |w| {
                w.u32(2);
                w.u32(5);
                w.u32(5);
            });
        });
    });
    let moof_len = w.len();
    let header = w.mdat_header(mdat_payload as u64);
    w.patch_u32(offset_at, (moof_len + header) as u32);
    w.zeros(mdat_payload);
    w.split()
}

/// An initialisation segment with version-1 tkhd and mdhd, a 1000 Hz
/// video track 1 and `trex` defaults (duration 40, size 4, sync).
fn hand_init() -> Bytes {
    let mut w = BoxWriter::new();
    w.write_box(*b"ftyp", |w| w.bytes(b"iso6\0\0\0\0"));
    w.write_box(*b"moov", |w| {
        w.write_box(*b"trak", |w| {
            w.full_box(*b"tkhd", 1, 3, |w| {
                w.zeros(16);
                w.u32(1);
                w.zeros(64);
            });
            w.write_box(*b"mdia", |w| {
                w.full_box(*b"mdhd", 1, 0, |w| {
                    w.zeros(16);
                    w.u32(1000);
                    w.zeros(12);
                });
                w.full_box(*b"hdlr", 0, 0, |w| {
                    w.u32(0);
                    w.bytes(b"vide");
                    w.zeros(13);
                });
            });
        });
        w.write_box(*b"mvex", |w| {
            w.full_box(*b"trex", 0, 0, |w| {
                for v in [1, 1, 40, 4, 0] {
                    w.u32(v);
                }
            });
        });
    });
    w.split()
}

fn video_track(timescale: u32) -> Vec<TrackInfo> {
    vec![TrackInfo { id: 1, handler: Handler::Video, timescale, defaults: SampleDefaults::default() }]
}

#[test]
fn tfhd_defaults_first_sample_flags_and_following_runs() {
    let mut reader = FragmentReader::new(video_track(90_000));
    let mut seen = Seen::default();
    read_body(&mut reader, &hand_fragment(1, 40), &[usize::MAX], &mut seen).unwrap();
    assert_eq!(seen.video, [(1000, true), (1033, false), (1067, false), (1100, false), (1133, false)]);
}

#[test]
fn trex_defaults_and_version_1_headers() {
    let tracks = parse_init(&hand_init()).unwrap();
    assert_eq!(tracks[0].defaults, SampleDefaults { duration: 40, size: 4, flags: 0 });
    let mut w = BoxWriter::new();
    let mut offset_at = 0;
    w.write_box(*b"moof", |w| {
        w.full_box(*b"mfhd", 0, 0, |w| w.u32(1));
        w.write_box(*b"traf", |w| {
            w.full_box(*b"tfhd", 0, TFHD_DEFAULT_BASE_IS_MOOF, |w| w.u32(1));
            w.full_box(*b"tfdt", 1, 0, |w| w.u64(5_000));
            w.full_box(*b"trun", 0, TRUN_DATA_OFFSET, |w| {
                w.u32(3);
                offset_at = w.len();
                w.u32(0);
            });
        });
    });
    let moof_len = w.len();
    let header = w.mdat_header(12);
    w.patch_u32(offset_at, (moof_len + header) as u32);
    w.zeros(12);
    let mut reader = FragmentReader::new(tracks);
    let mut seen = Seen::default();
    read_body(&mut reader, &w.split(), &[5], &mut seen).unwrap();
    assert_eq!(seen.video, [(5000, true), (5040, true), (5080, true)]);
}

#[test]
fn malformed_fragments_are_errors() {
    let read = |body: &[u8]| {
        let mut reader = FragmentReader::new(video_track(90_000));
        read_body(&mut reader, body, &[usize::MAX], &mut Seen::default()).map_err(|e| e.0)
    };
    assert!(read(&hand_fragment(1, 39)).unwrap_err().contains("outside the mdat"));
    assert!(read(&hand_fragment(9, 40)).unwrap_err().contains("track 9"));
    let whole = hand_fragment(1, 40);
    assert!(read(&whole[..whole.len() - 1]).unwrap_err().contains("truncated"));
    let moof_len = whole.len() - 48;
    assert!(read(&[&whole[..moof_len], &whole[..]].concat()).unwrap_err().contains("previous moof"));
    // A trun announcing more samples than its bytes hold.
    let mut w = BoxWriter::new();
    w.write_box(*b"moof", |w| {
        w.full_box(*b"mfhd", 0, 0, |w| w.u32(1));
        w.write_box(*b"traf", |w| {
            w.full_box(*b"tfhd", 0, 0, |w| w.u32(1));
            w.full_box(*b"tfdt", 0, 0, |w| w.u32(0));
            w.full_box(*b"trun", 0, TRUN_SIZE, |w| w.u32(1000));
        });
    });
    assert!(read(&w.split()).unwrap_err().contains("announces"));
    // The same without per-sample fields: bounded work.
    w.write_box(*b"moof", |w| {
        w.full_box(*b"mfhd", 0, 0, |w| w.u32(1));
        w.write_box(*b"traf", |w| {
            w.full_box(*b"tfhd", 0, 0, |w| w.u32(1));
            w.full_box(*b"tfdt", 0, 0, |w| w.u32(0));
            w.full_box(*b"trun", 0, 0, |w| w.u32(u32::MAX));
        });
    });
    assert!(read(&w.split()).unwrap_err().contains("samples"));
    // A box shorter than its header; a moof over the limit.
    assert!(read(&[0, 0, 0, 4, b'f', b'r', b'e', b'e']).is_err());
    assert!(read(&[0, 0x20, 0, 0, b'm', b'o', b'o', b'f']).unwrap_err().contains("moof of"));
    // A traf without tfdt and nothing before it.
    let mut w = BoxWriter::new();
    w.write_box(*b"moof", |w| {
        w.full_box(*b"mfhd", 0, 0, |w| w.u32(1));
        w.write_box(*b"traf", |w| {
            w.full_box(*b"tfhd", 0, 0, |w| w.u32(1));
            w.full_box(*b"trun", 0, 0, |w| w.u32(0));
        });
    });
    assert!(read(&w.split()).unwrap_err().contains("tfdt"));
}

#[test]
fn malformed_init_segments_are_errors() {
    assert!(parse_init(b"").unwrap_err().0.contains("no moov"));
    let init = hand_init();
    assert!(parse_init(&init[..init.len() - 1]).is_err());
    let mut w = BoxWriter::new();
    w.write_box(*b"moov", |w| w.write_box(*b"trak", |w| w.full_box(*b"tkhd", 0, 0, |w| w.zeros(12))));
    assert!(parse_init(&w.split()).unwrap_err().0.contains("without tkhd, mdhd or hdlr"));
}

#[test]
fn every_truncation_and_single_byte_change_is_handled() {
    let w = write_stream(8, 4);
    let tracks = parse_init(&w.init).unwrap();
    for (body, fragment) in [(hand_fragment(1, 40), true), (w.fragments[0].clone(), true), (w.init.clone(), false)] {
        for len in 0..body.len() {
            let _ = parse_init(&body[..len]);
            let mut reader = FragmentReader::new(tracks.clone());
            let read = read_body(&mut reader, &body[..len], &[3], &mut Seen::default());
            // A part cut anywhere (but before its first byte) is an error.
            assert!(read.is_err() || len == 0 || !fragment, "{len}");
        }
        for i in 0..body.len() {
            for v in [0, 1, 0x7f, 0x80, 0xff] {
                let mut bytes = body.to_vec();
                bytes[i] = v;
                let _ = parse_init(&bytes);
                let mut reader = FragmentReader::new(tracks.clone());
                let _ = read_body(&mut reader, &bytes, &[usize::MAX], &mut Seen::default());
            }
        }
    }
}

proptest! {
    #[test]
    fn pieces_never_change_what_is_read(pieces in prop::collection::vec(1usize..300, 1..8)) {
        let w = write_stream(40, 4);
        let mut reader = FragmentReader::new(parse_init(&w.init).unwrap());
        let mut seen = Seen::default();
        for f in &w.fragments {
            read_body(&mut reader, f, &pieces, &mut seen).unwrap();
        }
        prop_assert_eq!(seen, w.expected);
    }

    #[test]
    fn truncated_or_mutated_input_never_panics(
        cut in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        piece in 1usize..64,
        init in any::<bool>(),
    ) {
        let w = write_stream(20, 10);
        let mut bytes = if init { w.init.to_vec() } else { w.fragments.concat() };
        for (at, value) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        if init {
            let _ = parse_init(&bytes);
        } else {
            let mut reader = FragmentReader::new(parse_init(&w.init).unwrap());
            let _ = read_body(&mut reader, &bytes, &[piece], &mut Seen::default());
        }
    }
}
