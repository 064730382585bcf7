//! The initialisation segment: `ftyp` + `moov` with one `trak` per track and
//! an `mvex` announcing that samples come in movie fragments.

use bytes::Bytes;

use super::boxes::BoxWriter;
use super::track::{SampleEntry, TrackConfig};

/// The unity transformation matrix of `mvhd` and `tkhd` (16.16 and 2.30
/// fixed point).
const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// ISO-639-2/T "und", packed as three 5-bit letters.
const LANGUAGE_UND: u16 = 0x55C4;

/// Writes the initialisation segment for `tracks`: `ftyp` (CMAF-style
/// brands) and `moov` with one `trak` per track, track IDs `1..=n` in slice
/// order (the IDs [`FragmentWriter`](super::FragmentWriter) uses).
///
/// ```
/// use arcly_mux::fmp4::{init_segment, TrackConfig};
/// // An Opus track: OpusHead for 2 channels, 312 samples of pre-skip.
/// let head = [b"OpusHead".as_slice(), &[1, 2, 0x38, 1, 0x80, 0xBB, 0, 0, 0, 0, 0]].concat();
/// let track = TrackConfig::opus(&head).unwrap();
/// let init = init_segment(&[track]);
/// assert_eq!(&init[4..8], b"ftyp");
/// ```
pub fn init_segment(tracks: &[TrackConfig]) -> Bytes {
    let mut w = BoxWriter::with_capacity(1024);
    write_init(&mut w, tracks);
    w.split()
}

pub(super) fn write_init(w: &mut BoxWriter, tracks: &[TrackConfig]) {
    w.write_box(*b"ftyp", |w| {
        w.bytes(b"iso6");
        w.u32(0);
        for brand in [b"iso6", b"cmfc", b"isom", b"mp41"] {
            w.bytes(brand);
        }
    });
    w.write_box(*b"moov", |w| {
        w.full_box(*b"mvhd", 0, 0, |w| {
            w.u32(0); // creation_time
            w.u32(0); // modification_time
            w.u32(1000); // timescale: only for the (zero) movie duration
            w.u32(0); // duration: unknown, samples are in fragments
            w.u32(0x0001_0000); // rate 1.0
            w.u16(0x0100); // volume 1.0
            w.zeros(10);
            matrix(w);
            w.zeros(24); // pre_defined
            w.u32(track_id(tracks.len()));
        });
        for (index, track) in tracks.iter().enumerate() {
            trak(w, track_id(index), track);
        }
        w.write_box(*b"mvex", |w| {
            for index in 0..tracks.len() {
                w.full_box(*b"trex", 0, 0, |w| {
                    w.u32(track_id(index));
                    w.u32(1); // default_sample_description_index
                    w.u32(0); // default_sample_duration
                    w.u32(0); // default_sample_size
                    w.u32(0); // default_sample_flags
                });
            }
        });
    });
}

/// Track IDs start at 1 (0 is reserved).
pub(super) fn track_id(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX - 1).saturating_add(1)
}

fn matrix(w: &mut BoxWriter) {
    for v in MATRIX {
        w.u32(v);
    }
}

fn trak(w: &mut BoxWriter, id: u32, track: &TrackConfig) {
    let video = track.is_video();
    w.write_box(*b"trak", |w| {
        w.full_box(*b"tkhd", 0, 0x3, |w| {
            w.u32(0); // creation_time
            w.u32(0); // modification_time
            w.u32(id);
            w.u32(0); // reserved
            w.u32(0); // duration
            w.zeros(8);
            w.u16(0); // layer
            w.u16(0); // alternate_group
            w.u16(if video { 0 } else { 0x0100 });
            w.u16(0);
            matrix(w);
            // 16.16 fixed point; sizes above 65535 do not fit and are clamped.
            w.u32(track.width().min(0xFFFF) << 16);
            w.u32(track.height().min(0xFFFF) << 16);
        });
        w.write_box(*b"mdia", |w| {
            w.full_box(*b"mdhd", 0, 0, |w| {
                w.u32(0);
                w.u32(0);
                w.u32(track.timescale());
                w.u32(0);
                w.u16(LANGUAGE_UND);
                w.u16(0);
            });
            w.full_box(*b"hdlr", 0, 0, |w| {
                w.u32(0);
                w.bytes(if video { b"vide" } else { b"soun" });
                w.zeros(12);
                w.bytes(if video { b"VideoHandler\0" } else { b"SoundHandler\0" });
            });
            w.write_box(*b"minf", |w| {
                if video {
                    w.full_box(*b"vmhd", 0, 1, |w| w.zeros(8));
                } else {
                    w.full_box(*b"smhd", 0, 0, |w| w.zeros(4));
                }
                w.write_box(*b"dinf", |w| {
                    w.full_box(*b"dref", 0, 0, |w| {
                        w.u32(1);
                        // Flag 1: the media is in this file.
                        w.full_box(*b"url ", 0, 1, |_| {});
                    });
                });
                w.write_box(*b"stbl", |w| {
                    w.full_box(*b"stsd", 0, 0, |w| {
                        w.u32(1);
                        sample_entry(w, track);
                    });
                    // Empty tables: every sample is in a fragment.
                    w.full_box(*b"stts", 0, 0, |w| w.u32(0));
                    w.full_box(*b"stsc", 0, 0, |w| w.u32(0));
                    w.full_box(*b"stsz", 0, 0, |w| w.zeros(8));
                    w.full_box(*b"stco", 0, 0, |w| w.u32(0));
                });
            });
        });
    });
}

fn sample_entry(w: &mut BoxWriter, track: &TrackConfig) {
    match track.entry() {
        SampleEntry::Avc(rec) => visual_entry(w, track, *b"avc1", |w| w.write_box(*b"avcC", |w| w.bytes(rec))),
        SampleEntry::Hevc(rec) => visual_entry(w, track, *b"hvc1", |w| w.write_box(*b"hvcC", |w| w.bytes(rec))),
        SampleEntry::Av1(rec) => visual_entry(w, track, *b"av01", |w| w.write_box(*b"av1C", |w| w.bytes(rec))),
        SampleEntry::Vp9(rec) => visual_entry(w, track, *b"vp09", |w| w.full_box(*b"vpcC", 1, 0, |w| w.bytes(rec))),
        SampleEntry::Aac(asc) => audio_entry(w, track, *b"mp4a", |w| esds(w, asc)),
        SampleEntry::Opus(dops) => audio_entry(w, track, *b"Opus", |w| w.write_box(*b"dOps", |w| w.bytes(dops))),
    }
}

fn visual_entry(w: &mut BoxWriter, track: &TrackConfig, fourcc: [u8; 4], config: impl FnOnce(&mut BoxWriter)) {
    w.write_box(fourcc, |w| {
        w.zeros(6);
        w.u16(1); // data_reference_index
        w.zeros(16); // pre_defined, reserved
        w.u16(u16::try_from(track.width()).unwrap_or(u16::MAX));
        w.u16(u16::try_from(track.height()).unwrap_or(u16::MAX));
        w.u32(0x0048_0000); // 72 dpi
        w.u32(0x0048_0000);
        w.u32(0);
        w.u16(1); // frame_count
        w.zeros(32); // compressorname: empty Pascal string
        w.u16(0x0018); // depth
        w.u16(0xFFFF); // pre_defined = -1
        config(w);
    });
}

fn audio_entry(w: &mut BoxWriter, track: &TrackConfig, fourcc: [u8; 4], config: impl FnOnce(&mut BoxWriter)) {
    w.write_box(fourcc, |w| {
        w.zeros(6);
        w.u16(1); // data_reference_index
        w.zeros(8);
        w.u16(track.channels());
        w.u16(16); // samplesize
        w.zeros(4);
        // 16.16 fixed point: rates above 65535 Hz do not fit; decoders take
        // the real rate from the decoder configuration anyway.
        w.u32(if track.sample_rate() <= 0xFFFF { track.sample_rate() << 16 } else { 0 });
        config(w);
    });
}

/// `esds`: an ES_Descriptor whose DecoderConfigDescriptor says MPEG-4 Audio
/// (0x40) with the AudioSpecificConfig as DecoderSpecificInfo (ISO/IEC
/// 14496-1 and 14496-14).
fn esds(w: &mut BoxWriter, asc: &[u8]) {
    let dsi_len = asc.len();
    let dcd_len = 13 + descriptor_len(dsi_len);
    let es_len = 3 + descriptor_len(dcd_len) + descriptor_len(1);
    w.full_box(*b"esds", 0, 0, |w| {
        descriptor_header(w, 0x03, es_len);
        w.u16(0); // ES_ID: unused in MP4 files
        w.u8(0); // no dependency, URL or OCR stream
        descriptor_header(w, 0x04, dcd_len);
        w.u8(0x40); // objectTypeIndication: MPEG-4 Audio
        w.u8(0x15); // streamType 5 (audio) << 2 | reserved 1
        w.u24(0); // bufferSizeDB
        w.u32(0); // maxBitrate
        w.u32(0); // avgBitrate
        descriptor_header(w, 0x05, dsi_len);
        w.bytes(asc);
        descriptor_header(w, 0x06, 1);
        w.u8(0x02); // SLConfigDescriptor predefined: MP4
    });
}

/// The whole size of a descriptor with `body` bytes: tag, expandable
/// length, body.
fn descriptor_len(body: usize) -> usize {
    1 + length_bytes(body) + body
}

fn length_bytes(mut len: usize) -> usize {
    let mut n = 1;
    while len >= 0x80 {
        len >>= 7;
        n += 1;
    }
    n
}

fn descriptor_header(w: &mut BoxWriter, tag: u8, len: usize) {
    w.u8(tag);
    let n = length_bytes(len);
    for i in (0..n).rev() {
        let more = if i > 0 { 0x80 } else { 0 };
        w.u8(((len >> (7 * i)) & 0x7F) as u8 | more);
    }
}
