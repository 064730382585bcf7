//! ADTS and AudioSpecificConfig against testdata/aac_44100_mono.aac, with
//! ffprobe as the reference.
#![cfg(feature = "aac")]

use arcly_codec::aac::{self, AdtsHeader, AudioSpecificConfig, split_adts};
use arcly_testkit::{ffprobe, ffprobe_packets, read_testdata, testdata};

const FILE: &str = "aac_44100_mono.aac";

#[test]
fn adts_stream_matches_ffprobe() {
    let data = read_testdata(FILE);
    let probe = ffprobe(&testdata(FILE));
    let stream = probe.first().expect("one stream");
    let frames: Vec<(AdtsHeader, &[u8])> = split_adts(&data).collect::<Result<_, _>>().unwrap();
    let (first, _) = &frames[0];
    assert_eq!(stream["profile"], "LC");
    assert_eq!(first.object_type, 2);
    assert_eq!(first.sample_rate.to_string(), stream["sample_rate"]);
    assert_eq!(first.channel_config.to_string(), stream["channels"]);
    assert_eq!(frames.len().to_string(), stream["nb_read_packets"]);
    for (header, payload) in &frames {
        assert_eq!((header.sample_rate, header.channel_config, header.raw_blocks), (44100, 1, 1));
        assert_eq!(header.header_length + payload.len(), header.frame_length);
    }
    let consumed: usize = frames.iter().map(|(h, _)| h.frame_length).sum();
    assert_eq!(consumed, data.len(), "the frames cover the file");

    // ffmpeg's ADTS demuxer returns whole frames, headers included.
    let sizes: Vec<usize> = ffprobe_packets(&testdata(FILE)).iter().map(|p| p.size).collect();
    let lengths: Vec<usize> = frames.iter().map(|(h, _)| h.frame_length).collect();
    assert_eq!(lengths, sizes);
}

#[test]
fn config_from_first_header_round_trips() {
    let data = read_testdata(FILE);
    let (header, payload) = split_adts(&data).next().unwrap().unwrap();
    let asc = header.to_audio_specific_config();
    assert_eq!(asc, AudioSpecificConfig::new_lc(44100, 1));
    let bytes = asc.to_bytes();
    assert_eq!(&bytes[..], &[0x12, 0x08]);
    assert_eq!(AudioSpecificConfig::parse(&bytes).unwrap(), asc);
    assert_eq!(asc.frame_samples(), 1024);

    // Re-wrapping the payload gives back the file's header (ffmpeg writes
    // no CRC, one block, buffer fullness 0x7FF).
    let rewritten = AdtsHeader::write(&asc, payload.len()).unwrap();
    assert_eq!(&rewritten[..], &data[..7]);
}

#[test]
fn frames_last_frame_samples() {
    let packets = ffprobe_packets(&testdata(FILE));
    let data = read_testdata(FILE);
    let (header, _) = split_adts(&data).next().unwrap().unwrap();
    let asc = header.to_audio_specific_config();
    let expected = f64::from(asc.frame_samples()) / f64::from(asc.sample_rate);
    let times: Vec<f64> = packets.iter().map(|p| p.pts_time.expect("ffprobe gives ADTS timestamps")).collect();
    for pair in times.windows(2) {
        assert!((pair[1] - pair[0] - expected).abs() < 1e-5, "{pair:?}: frames of {expected} s");
    }
}

#[test]
fn whole_stream_through_the_fuzz_entry_point() {
    let data = read_testdata(FILE);
    aac::fuzz(&data);
    aac::fuzz(&data[..data.len() - 1]);
}
