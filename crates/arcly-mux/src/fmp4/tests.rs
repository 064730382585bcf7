//! Box layout tests with a tiny test-only box reader, and the no-drift
//! property of fragment durations.

use arcly_core::frame::{CodecId, FrameFlags, MediaFrame, Timebase};
use bytes::Bytes;
use proptest::prelude::*;

use super::track::TrackConfig;
use super::{BoxWriter, FragmentWriter, init_segment};

/// One box of a parsed buffer: type, and its body (after the header).
#[derive(Debug, Clone)]
struct ParsedBox<'a> {
    fourcc: [u8; 4],
    /// Offset of the box's first byte in the buffer given to `parse_boxes`.
    start: usize,
    body: &'a [u8],
}

/// Splits `data` into boxes, asserting that the sizes tile it exactly.
fn parse_boxes(data: &[u8], base: usize) -> Vec<ParsedBox<'_>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        assert!(pos + 8 <= data.len(), "box header truncated at {pos}");
        let size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let fourcc: [u8; 4] = data[pos + 4..pos + 8].try_into().unwrap();
        let (header, size) = if size == 1 {
            (16, u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap()) as usize)
        } else {
            (8, size)
        };
        assert!(size >= header && pos + size <= data.len(), "box {:?} of {size} bytes overruns", fourcc_str(fourcc));
        out.push(ParsedBox { fourcc, start: base + pos, body: &data[pos + header..pos + size] });
        pos += size;
    }
    out
}

fn fourcc_str(f: [u8; 4]) -> String {
    String::from_utf8_lossy(&f).into_owned()
}

/// Where children start in the body of each box type that has any.
fn children_offset(fourcc: &[u8; 4]) -> Option<usize> {
    match fourcc {
        b"moov" | b"trak" | b"mdia" | b"minf" | b"dinf" | b"stbl" | b"mvex" | b"moof" | b"traf" => Some(0),
        b"stsd" | b"dref" => Some(8),
        b"avc1" | b"hvc1" | b"av01" | b"vp09" => Some(78),
        b"mp4a" | b"Opus" => Some(28),
        _ => None,
    }
}

/// Every box in `data` depth-first as (path, box), checking that each
/// container's children fill it exactly.
fn walk<'a>(data: &'a [u8]) -> Vec<(String, ParsedBox<'a>)> {
    fn go<'a>(data: &'a [u8], base: usize, prefix: &str, out: &mut Vec<(String, ParsedBox<'a>)>) {
        for b in parse_boxes(data, base) {
            let path =
                if prefix.is_empty() { fourcc_str(b.fourcc) } else { format!("{prefix}/{}", fourcc_str(b.fourcc)) };
            out.push((path.clone(), b.clone()));
            if let Some(skip) = children_offset(&b.fourcc) {
                let header = b.body.as_ptr() as usize - data.as_ptr() as usize - (b.start - base);
                go(&b.body[skip..], b.start + header + skip, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    go(data, 0, "", &mut out);
    out
}

fn find<'a>(boxes: &[(String, ParsedBox<'a>)], path: &str) -> Vec<ParsedBox<'a>> {
    boxes.iter().filter(|(p, _)| p == path).map(|(_, b)| b.clone()).collect()
}

fn one<'a>(boxes: &[(String, ParsedBox<'a>)], path: &str) -> ParsedBox<'a> {
    let found = find(boxes, path);
    assert_eq!(found.len(), 1, "{path}: {} boxes", found.len());
    found[0].clone()
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// A parsed `trun` (version 1 assumed for the composition offsets).
#[derive(Debug)]
struct Trun {
    version: u8,
    flags: u32,
    data_offset: i32,
    /// (duration, size, flags, composition offset)
    samples: Vec<(u32, u32, Option<u32>, Option<i32>)>,
}

fn parse_trun(body: &[u8]) -> Trun {
    let version = body[0];
    let flags = be32(body, 0) & 0xFF_FFFF;
    let count = be32(body, 4) as usize;
    let mut pos = 8;
    let mut data_offset = 0;
    if flags & 1 != 0 {
        data_offset = be32(body, pos) as i32;
        pos += 4;
    }
    assert_eq!(flags & 4, 0, "no first-sample-flags expected");
    let mut samples = Vec::new();
    for _ in 0..count {
        let mut field = |bit: u32| {
            (flags & bit != 0).then(|| {
                let v = be32(body, pos);
                pos += 4;
                v
            })
        };
        let d = field(0x100).expect("duration present");
        let s = field(0x200).expect("size present");
        let f = field(0x400);
        let c = field(0x800).map(|v| v as i32);
        samples.push((d, s, f, c));
    }
    assert_eq!(pos, body.len(), "trun body fully consumed");
    Trun { version, flags, data_offset, samples }
}

/// x264's parameter sets for 640x360 Constrained Baseline.
fn avc_track() -> TrackConfig {
    let sps = [
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00, 0x01, 0x00, 0x00,
        0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
    ];
    let pps = [0x68, 0xcb, 0x83, 0xcb, 0x20];
    let config = arcly_codec::h264::AvcConfig::from_parameter_sets(&[&sps], &[&pps]).unwrap();
    TrackConfig::h264(&config.to_bytes()).unwrap()
}

fn video(pts: i64, dts: i64, key: bool, payload: &'static [u8]) -> MediaFrame {
    let f = MediaFrame::new(CodecId::H264, Bytes::from_static(payload)).with_timestamps(pts, dts, Timebase::MPEG);
    if key { f.with_flags(FrameFlags::KEYFRAME) } else { f }
}

#[test]
fn box_writer_patches_nested_sizes() {
    let mut w = BoxWriter::new();
    w.write_box(*b"aaaa", |w| {
        w.u8(1);
        w.full_box(*b"bbbb", 1, 0x00_0102, |w| w.u64(7));
        w.write_box(*b"cccc", |_| {});
    });
    let b = w.split();
    assert_eq!(b.len(), 8 + 1 + 20 + 8);
    assert_eq!(be32(&b, 0), 37);
    assert_eq!(&b[9..17], &[0, 0, 0, 20, b'b', b'b', b'b', b'b']);
    assert_eq!(&b[17..21], &[1, 0, 1, 2]);
    assert_eq!(be64(&b, 21), 7);
    assert_eq!(&b[29..], &[0, 0, 0, 8, b'c', b'c', b'c', b'c']);
    assert!(w.is_empty(), "split takes everything");
}

#[test]
fn mdat_header_switches_to_largesize() {
    let mut w = BoxWriter::new();
    assert_eq!(w.mdat_header(100), 8);
    assert_eq!(w.mdat_header(u64::from(u32::MAX)), 16);
    let b = w.split();
    assert_eq!(be32(&b, 0), 108);
    assert_eq!(&b[12..16], b"mdat");
    assert_eq!(be32(&b, 8), 1);
    assert_eq!(be64(&b, 16), u64::from(u32::MAX) + 16);
}

#[test]
fn init_segment_layout() {
    let audio = TrackConfig::test_audio(CodecId::Aac, Bytes::from_static(&[0x11, 0x90]), 48_000, 2);
    let init = init_segment(&[avc_track(), audio]);
    let boxes = walk(&init);
    let top: Vec<String> = parse_boxes(&init, 0).iter().map(|b| fourcc_str(b.fourcc)).collect();
    assert_eq!(top, ["ftyp", "moov"]);
    let ftyp = one(&boxes, "ftyp");
    assert_eq!(&ftyp.body[..4], b"iso6");
    assert!(ftyp.body[8..].chunks(4).any(|c| c == b"cmfc"));
    assert_eq!(be32(one(&boxes, "moov/mvhd").body, 96), 3, "next_track_ID");
    let traks = find(&boxes, "moov/trak/tkhd");
    assert_eq!(traks.len(), 2);
    // tkhd v0: track_ID at 12, width/height (16.16) at 76/80.
    assert_eq!((be32(traks[0].body, 12), be32(traks[0].body, 76) >> 16, be32(traks[0].body, 80) >> 16), (1, 640, 360));
    assert_eq!((be32(traks[1].body, 12), be32(traks[1].body, 76)), (2, 0));
    let mdhd = find(&boxes, "moov/trak/mdia/mdhd");
    assert_eq!((be32(mdhd[0].body, 12), be32(mdhd[1].body, 12)), (90_000, 48_000));
    let hdlr = find(&boxes, "moov/trak/mdia/hdlr");
    assert_eq!((&hdlr[0].body[8..12], &hdlr[1].body[8..12]), (&b"vide"[..], &b"soun"[..]));
    one(&boxes, "moov/trak/mdia/minf/vmhd");
    one(&boxes, "moov/trak/mdia/minf/smhd");
    assert_eq!(find(&boxes, "moov/trak/mdia/minf/dinf/dref/url ").len(), 2);
    let avc1 = one(&boxes, "moov/trak/mdia/minf/stbl/stsd/avc1");
    assert_eq!((u16::from_be_bytes([avc1.body[24], avc1.body[25]]), avc1.body[26..28].to_vec()), (640, vec![1, 104]));
    let avcc = one(&boxes, "moov/trak/mdia/minf/stbl/stsd/avc1/avcC");
    assert_eq!(avcc.body, &avc_track().codec_config()[..]);
    let mp4a = one(&boxes, "moov/trak/mdia/minf/stbl/stsd/mp4a");
    assert_eq!((u16::from_be_bytes([mp4a.body[16], mp4a.body[17]]), be32(mp4a.body, 24) >> 16), (2, 48_000));
    let esds = one(&boxes, "moov/trak/mdia/minf/stbl/stsd/mp4a/esds");
    // ES_Descriptor(3) > DecoderConfigDescriptor(4: 0x40, audio) > DecoderSpecificInfo(5) = ASC; SLConfig(6).
    assert_eq!(
        &esds.body[4..],
        &[3, 25, 0, 0, 0, 4, 17, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 2, 0x11, 0x90, 6, 1, 2]
    );
    for table in ["stts", "stsc", "stco"] {
        for b in find(&boxes, &format!("moov/trak/mdia/minf/stbl/{table}")) {
            assert_eq!(b.body, &[0; 8], "{table} is empty");
        }
    }
    let trex = find(&boxes, "moov/mvex/trex");
    assert_eq!((be32(trex[0].body, 4), be32(trex[1].body, 4)), (1, 2));
}

#[test]
fn vp9_and_opus_entries() {
    let vp9 = TrackConfig::test_video(CodecId::Vp9, Bytes::from_static(&[0, 10, 0x80, 2, 2, 2, 0, 0]), 160, 120);
    let opus = TrackConfig::test_audio(
        CodecId::Opus,
        Bytes::from_static(&[0, 2, 1, 0x38, 0, 0, 0xBB, 0x80, 0, 0, 0]),
        48_000,
        2,
    );
    let init = init_segment(&[vp9, opus]);
    let boxes = walk(&init);
    let vpcc = one(&boxes, "moov/trak/mdia/minf/stbl/stsd/vp09/vpcC");
    assert_eq!(&vpcc.body[..4], &[1, 0, 0, 0], "vpcC is a FullBox version 1");
    assert_eq!(&vpcc.body[4..], &[0, 10, 0x80, 2, 2, 2, 0, 0]);
    let dops = one(&boxes, "moov/trak/mdia/minf/stbl/stsd/Opus/dOps");
    assert_eq!(dops.body.len(), 11);
}

#[test]
fn esds_lengths_expand_past_127() {
    let asc = Bytes::from(vec![0x12; 200]);
    let init = init_segment(&[TrackConfig::test_audio(CodecId::Aac, asc, 44_100, 1)]);
    let boxes = walk(&init);
    let esds = one(&boxes, "moov/trak/mdia/minf/stbl/stsd/mp4a/esds").body;
    // ES length 3 + (2+2+13+3+200... ) in two bytes.
    assert_eq!(esds[4], 3);
    let es_len = (usize::from(esds[5] & 0x7F) << 7) | usize::from(esds[6]);
    assert_eq!(esds[5] & 0x80, 0x80);
    assert_eq!(es_len, esds.len() - 7);
    let dsi = esds.windows(3).position(|w| w == [5, 0x81, 0x48]).expect("DecoderSpecificInfo of 200 bytes");
    assert_eq!(&esds[dsi + 3..dsi + 203], &[0x12; 200][..]);
}

/// IPBB with composition offsets, two fragments; checks every field.
#[test]
fn fragment_fields_parse_back() {
    let mut w = FragmentWriter::new(&[avc_track()]);
    // Decode order I P B B, 3000-tick frames, dts starting at 90000.
    let frames = [
        video(93_000, 90_000, true, b"I-frame"),
        video(102_000, 93_000, false, b"P"),
        video(96_000, 96_000, false, b"B1"),
        video(99_000, 99_000, false, b"B2"),
    ];
    for f in &frames {
        w.push(0, f).unwrap();
    }
    assert_eq!(w.pending_samples(0), 3);
    assert_eq!(w.pending_ticks(0), 9_000);
    assert!(w.pending_starts_with_sync(0));
    let frag = w.flush_fragment().unwrap();
    let boxes = walk(&frag);
    let top = parse_boxes(&frag, 0);
    assert_eq!(top.iter().map(|b| fourcc_str(b.fourcc)).collect::<Vec<_>>(), ["moof", "mdat"]);
    assert_eq!(be32(one(&boxes, "moof/mfhd").body, 4), 1);
    let tfhd = one(&boxes, "moof/traf/tfhd").body;
    assert_eq!((be32(tfhd, 0), be32(tfhd, 4)), (0x02_0000, 1), "default-base-is-moof, track 1");
    let tfdt = one(&boxes, "moof/traf/tfdt").body;
    assert_eq!((tfdt[0], be64(tfdt, 4)), (1, 90_000));
    let trun = parse_trun(one(&boxes, "moof/traf/trun").body);
    assert_eq!((trun.version, trun.flags), (1, 0xF01));
    assert_eq!(
        trun.samples,
        [
            (3000, 7, Some(0x0200_0000), Some(3000)),
            (3000, 1, Some(0x0101_0000), Some(9000)),
            (3000, 2, Some(0x0101_0000), Some(0)),
        ]
    );
    let mdat = &top[1];
    assert_eq!(trun.data_offset as usize, mdat.start + 8, "data offset points at the mdat payload");
    assert_eq!(mdat.body, b"I-framePB1");

    // B2 was held back; a new keyframe releases it with a 3000 duration,
    // and a negative composition offset survives (trun version 1).
    w.push(0, &video(100_000, 102_000, true, b"next")).unwrap();
    let frag = w.finish().unwrap();
    let boxes = walk(&frag);
    assert_eq!(be32(one(&boxes, "moof/mfhd").body, 4), 2);
    assert_eq!(be64(one(&boxes, "moof/traf/tfdt").body, 4), 99_000);
    let trun = parse_trun(one(&boxes, "moof/traf/trun").body);
    assert_eq!(trun.samples[0], (3000, 2, Some(0x0101_0000), Some(0)));
    // finish: the last sample takes its predecessor's duration.
    assert_eq!(trun.samples[1], (3000, 4, Some(0x0200_0000), Some(-2000)));
    assert!(w.finish().is_none());
}

#[test]
fn two_tracks_share_one_mdat() {
    let audio = TrackConfig::test_audio(CodecId::Aac, Bytes::from_static(&[0x11, 0x90]), 48_000, 2);
    let mut w = FragmentWriter::new(&[avc_track(), audio]);
    let aac = |n: i64| {
        MediaFrame::new(CodecId::Aac, Bytes::from_static(b"aac!")).with_timestamps(
            n * 1024,
            n * 1024,
            Timebase::sample_rate(48_000).unwrap(),
        )
    };
    w.push(0, &video(0, 0, true, b"vid0")).unwrap();
    w.push(1, &aac(0)).unwrap();
    w.push(1, &aac(1)).unwrap();
    w.push(0, &video(3600, 3600, false, b"vid1")).unwrap();
    w.push(1, &aac(2)).unwrap();
    let frag = w.flush_fragment().unwrap();
    let top = parse_boxes(&frag, 0);
    let boxes = walk(&frag);
    let truns: Vec<Trun> = find(&boxes, "moof/traf/trun").iter().map(|b| parse_trun(b.body)).collect();
    assert_eq!(truns.len(), 2);
    assert_eq!(truns[0].samples, [(3600, 4, Some(0x0200_0000), Some(0))]);
    assert_eq!(truns[1].flags, 0x301, "audio: no per-sample flags or offsets");
    assert_eq!(truns[1].samples, [(1024, 4, None, None), (1024, 4, None, None)]);
    let mdat_payload = top[1].start + 8;
    assert_eq!(truns[0].data_offset as usize, mdat_payload);
    assert_eq!(truns[1].data_offset as usize, mdat_payload + 4);
    assert_eq!(top[1].body, b"vid0aac!aac!");
    let tfhd = find(&boxes, "moof/traf/tfhd");
    assert_eq!((be32(tfhd[1].body, 0), be32(tfhd[1].body, 4), be32(tfhd[1].body, 8)), (0x02_0020, 2, 0x0200_0000));
}

#[test]
fn parts_equal_contiguous() {
    let mut a = FragmentWriter::new(&[avc_track()]);
    let mut b = FragmentWriter::new(&[avc_track()]);
    for (i, payload) in [&b"one"[..], b"two", b"three", b"four"].into_iter().enumerate() {
        let f = video(i as i64 * 3000, i as i64 * 3000, i == 0, payload);
        a.push(0, &f).unwrap();
        b.push(0, &f).unwrap();
    }
    let contiguous = a.flush_fragment().unwrap();
    let parts = b.flush_fragment_parts();
    assert_eq!(parts.len(), 4, "header + three payloads");
    assert_eq!(parts[1].as_ptr(), b"one".as_ptr(), "payloads are not copied");
    assert_eq!(parts.concat(), contiguous.to_vec());
    assert!(b.flush_fragment_parts().is_empty());
    assert_eq!(a.finish().unwrap().to_vec(), b.finish_parts().concat());
}

#[test]
fn own_duration_releases_the_last_sample() {
    let mut w = FragmentWriter::new(&[avc_track()]);
    // 1/25 s frames in milliseconds with their duration set: nothing held.
    for i in 0..3 {
        w.push(
            0,
            &video(i * 40, i * 40, i == 0, b"x").with_duration(40).with_timestamps(i * 40, i * 40, Timebase::MILLIS),
        )
        .unwrap();
    }
    assert_eq!(w.pending_samples(0), 3);
    assert_eq!(w.pending_duration(0), std::time::Duration::from_millis(120));
    let frag = w.flush_fragment().unwrap();
    let boxes = walk(&frag);
    let trun = parse_trun(one(&boxes, "moof/traf/trun").body);
    assert_eq!(trun.samples.iter().map(|s| s.0).collect::<Vec<_>>(), [3600, 3600, 3600]);
    assert!(w.flush_fragment().is_none());
}

#[test]
fn refused_frames_leave_the_writer_unchanged() {
    let mut w = FragmentWriter::new(&[avc_track()]);
    w.push(0, &video(9000, 9000, true, b"a")).unwrap();
    let aac = MediaFrame::new(CodecId::Aac, Bytes::from_static(b"x"));
    assert!(w.push(0, &aac).is_err(), "codec mismatch");
    assert!(w.push(1, &video(0, 0, true, b"x")).is_err(), "no track 1");
    assert!(w.push(0, &video(0, 0, true, b"x")).is_err(), "dts backwards");
    assert!(w.push(0, &video(-5, -5, true, b"x").with_timestamps(-5, -5, Timebase::MILLIS)).is_err(), "negative");
    assert!(w.push(0, &video(0, 0, false, b"cfg").with_flags(FrameFlags::CONFIG)).is_ok(), "config ignored");
    w.push(0, &video(12_000, 12_000, false, b"b")).unwrap();
    let frag = w.flush_fragment().unwrap();
    let boxes = walk(&frag);
    let trun = parse_trun(one(&boxes, "moof/traf/trun").body);
    assert_eq!(trun.samples, [(3000, 1, Some(0x0200_0000), Some(0))]);
    // After finish, a restart from zero is accepted.
    w.finish().unwrap();
    w.push(0, &video(0, 0, true, b"c")).unwrap();
}

proptest! {
    /// However timestamps arrive (any timebase, jittery monotonic dts,
    /// pts around dts) and wherever fragments are cut, the trun durations
    /// add up to exactly last dts - first dts in the track timescale, and
    /// each tfdt continues where the previous fragment ended.
    #[test]
    fn durations_sum_without_drift(
        den in prop::sample::select(vec![1000u32, 90_000, 44_100, 48_000, 30_000, 1_000_000]),
        steps in prop::collection::vec((0i64..5_000, -2_000i64..5_000, any::<bool>()), 2..200),
        start in 0i64..1_000_000_000,
        audio in any::<bool>(),
    ) {
        let tb = Timebase::new(1, den).unwrap();
        let track = if audio {
            TrackConfig::test_audio(CodecId::Aac, Bytes::from_static(&[0x12, 0x10]), 44_100, 1)
        } else {
            avc_track()
        };
        let codec = track.codec();
        let out_tb = track.timebase();
        let mut w = FragmentWriter::new(&[track]);
        let mut dts = start;
        let mut first = None;
        let mut last = 0;
        let mut total = 0u64;
        let mut next_tfdt = None;
        let cut = |frag: Option<Bytes>, total: &mut u64, next_tfdt: &mut Option<u64>| {
            if let Some(frag) = frag {
                let boxes = walk(&frag);
                let base = be64(one(&boxes, "moof/traf/tfdt").body, 4);
                if let Some(expected) = *next_tfdt {
                    assert_eq!(base, expected, "tfdt continues the timeline");
                }
                let sum: u64 = parse_trun(one(&boxes, "moof/traf/trun").body).samples.iter().map(|s| u64::from(s.0)).sum();
                *next_tfdt = Some(base + sum);
                *total += sum;
            }
        };
        for (step, cto, flush) in steps {
            dts += step;
            let pts = dts + cto;
            let frame = MediaFrame::new(codec, Bytes::from_static(b"s")).with_timestamps(pts, dts, tb);
            w.push(0, &frame).unwrap();
            first.get_or_insert(tb.rescale(dts, out_tb));
            last = tb.rescale(dts, out_tb);
            if flush {
                cut(w.flush_fragment(), &mut total, &mut next_tfdt);
            }
        }
        cut(w.flush_fragment(), &mut total, &mut next_tfdt);
        prop_assert_eq!(total as i64, last - first.unwrap());
    }
}
