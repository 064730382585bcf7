//! OpusHead against testdata/opus.ts, with ffmpeg and ffprobe as the
//! reference.
#![cfg(feature = "opus")]

use std::process::Command;

use arcly_codec::opus::{self, OpusHead};
use arcly_testkit::{ffprobe, scratch_dir, testdata};

#[test]
fn defaults_match_ffprobe() {
    let head = OpusHead::new(2, 48000);
    assert_eq!(OpusHead::parse(&head.to_bytes()).unwrap(), head);
    assert_eq!(OpusHead::from_dops(&head.to_dops()).unwrap(), head);
    assert_eq!((head.version, head.pre_skip, head.output_gain, head.mapping_family), (1, 312, 0, 0));

    let probe = ffprobe(&testdata("opus.ts"));
    let stream = probe.iter().find(|s| s["codec_name"] == "opus").expect("an Opus stream");
    assert_eq!(head.input_sample_rate.to_string(), stream["sample_rate"]);
    assert_eq!(head.channels.to_string(), stream["channels"]);
    assert_eq!(opus::SAMPLE_RATE.to_string(), stream["sample_rate"]);
}

/// The OpusHead ffmpeg writes when it remuxes opus.ts to Ogg parses, and
/// agrees with ffprobe.
#[test]
fn ffmpeg_ogg_header_parses() {
    let dir = scratch_dir("opus-ogg");
    let out = dir.join("opus.ogg");
    let input = testdata("opus.ts");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-y", "-i"])
        .arg(&input)
        .args(["-c", "copy", "-f", "ogg"])
        .arg(&out)
        .status()
        .expect("run ffmpeg (Debian package `ffmpeg`)");
    assert!(status.success(), "ffmpeg remux to Ogg failed");
    let ogg = std::fs::read(&out).unwrap();
    let at = ogg.windows(8).position(|w| w == b"OpusHead").expect("an OpusHead packet");
    // The packet is the whole first page body; whatever follows is ignored.
    let head = OpusHead::parse(&ogg[at..]).unwrap();
    let probe = ffprobe(&input);
    let stream = probe.iter().find(|s| s["codec_name"] == "opus").expect("an Opus stream");
    assert_eq!(head.channels.to_string(), stream["channels"]);
    assert_eq!((head.version, head.mapping_family, head.mapping.clone()), (1, 0, None));
    assert_eq!(OpusHead::parse(&head.to_bytes()).unwrap(), head);
    assert_eq!(&head.to_bytes()[..], &ogg[at..at + 19]);
    let _ = std::fs::remove_dir_all(dir);
}
