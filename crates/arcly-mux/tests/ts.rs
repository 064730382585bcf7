//! MPEG-TS against the reference peer: the committed ffmpeg streams are
//! demuxed and compared with ffprobe, then re-muxed and checked by ffmpeg
//! and ffprobe.
#![cfg(feature = "mpegts")]

use std::path::Path;

use arcly_core::ProtocolError;
use arcly_core::frame::{CodecId, FrameType, MediaFrame, Timebase};
use arcly_mux::ts::{DemuxEvent, TrackSpec, TsDemuxer, TsMuxer};
use arcly_testkit::{ProbePacket, ffmpeg_errors, ffprobe, ffprobe_packets, read_testdata, scratch_dir, testdata};
use bytes::BytesMut;

struct Demuxed {
    frames: Vec<MediaFrame>,
    errors: Vec<ProtocolError>,
    programs: usize,
}

fn demux(data: &[u8], chunk: usize) -> Demuxed {
    let mut demux = TsDemuxer::new();
    let mut out = Demuxed { frames: Vec::new(), errors: Vec::new(), programs: 0 };
    let drain = |demux: &mut TsDemuxer, out: &mut Demuxed| {
        while let Some(event) = demux.poll() {
            match event {
                Ok(DemuxEvent::Frame(f)) => out.frames.push(f),
                Ok(DemuxEvent::Program { .. }) => out.programs += 1,
                Ok(other) => panic!("unexpected event {other:?}"),
                Err(e) => out.errors.push(e),
            }
        }
    };
    for piece in data.chunks(chunk) {
        demux.push(piece);
        drain(&mut demux, &mut out);
    }
    demux.flush();
    drain(&mut demux, &mut out);
    out
}

/// Frame-by-frame equality with a short message (a frame list is long).
fn same_frames(got: &[MediaFrame], want: &[MediaFrame], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: frame count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "{what}: frame {i}");
    }
}

fn media(frames: &[MediaFrame], kind: FrameType) -> Vec<&MediaFrame> {
    frames.iter().filter(|f| f.frame_type() == kind && !f.is_config()).collect()
}

fn probe_stream(path: &Path, codec_name: &str) -> (usize, Vec<ProbePacket>, arcly_testkit::Section) {
    let streams = ffprobe(path);
    let index = streams
        .iter()
        .position(|s| s.get("codec_name").map(String::as_str) == Some(codec_name))
        .unwrap_or_else(|| panic!("no {codec_name} stream in {}: {streams:?}", path.display()));
    let packets = ffprobe_packets(path).into_iter().filter(|p| p.stream == index).collect();
    (index, packets, streams[index].clone())
}

fn pts_dts(frames: &[&MediaFrame]) -> Vec<(i64, i64)> {
    frames.iter().map(|f| (f.pts_in(Timebase::MPEG), f.dts_in(Timebase::MPEG))).collect()
}

fn probe_pts_dts(packets: &[ProbePacket]) -> Vec<(i64, i64)> {
    packets.iter().map(|p| (p.pts.expect("pts"), p.dts.expect("dts"))).collect()
}

/// Demuxes `name`, compares with ffprobe, re-muxes and compares again.
fn round_trip_with_ffmpeg(name: &str, video: Option<(CodecId, &str)>, audio: (CodecId, &str)) {
    let path = testdata(name);
    let data = read_testdata(name);
    let got = demux(&data, data.len());
    assert!(got.errors.is_empty(), "{name}: {:?}", got.errors);
    assert_eq!(got.programs, 1, "{name}: the PMT is reported once");
    // Chunking does not change the result.
    let chunked = demux(&data, 1000);
    same_frames(&chunked.frames, &got.frames, &format!("{name}: 1000-byte chunks"));

    let mut specs = Vec::new();
    if let Some((codec, probe_name)) = video {
        let (_, packets, _) = probe_stream(&path, probe_name);
        let frames = media(&got.frames, FrameType::Video);
        assert!(frames.iter().all(|f| f.codec == codec && f.timebase == Timebase::MPEG));
        assert_eq!(frames.len(), packets.len(), "{name}: video frame count");
        assert_eq!(pts_dts(&frames), probe_pts_dts(&packets), "{name}: video pts/dts");
        let keys: Vec<bool> = frames.iter().map(|f| f.is_keyframe()).collect();
        let probe_keys: Vec<bool> = packets.iter().map(|p| p.keyframe).collect();
        assert_eq!(keys, probe_keys, "{name}: keyframes");
        let first = got.frames.iter().find(|f| f.frame_type() == FrameType::Video).expect("video");
        assert!(first.is_config(), "{name}: the parameter sets come first");
        // Parameter sets and AUDs are not in the media payloads.
        let sizes: Vec<usize> = packets.iter().map(|p| p.size).collect();
        assert!(frames.iter().zip(&sizes).all(|(f, &s)| f.payload.len() < s), "{name}: payloads shrink");
        specs.push(TrackSpec::new(codec, None));
    }
    let (audio_codec, audio_name) = audio;
    let (_, audio_packets, audio_stream) = probe_stream(&path, audio_name);
    let audio_frames = media(&got.frames, FrameType::Audio);
    assert!(audio_frames.iter().all(|f| f.codec == audio_codec && f.timebase.den() == 48_000));
    assert_eq!(audio_frames.len(), audio_packets.len(), "{name}: audio frame count");
    assert_eq!(
        audio_stream.get("nb_read_packets").and_then(|n| n.parse().ok()),
        Some(audio_frames.len()),
        "{name}: audio frame count from -count_packets"
    );
    for (f, p) in audio_frames.iter().zip(&audio_packets) {
        let diff = f.pts_in(Timebase::MPEG) - p.pts.expect("audio pts");
        assert!(diff.abs() <= 1, "{name}: audio pts {} vs {:?}", f.pts_in(Timebase::MPEG), p.pts);
        // ffmpeg keeps the 7-byte ADTS header on AAC packets from TS.
        let header = if audio_codec == CodecId::Aac { 7 } else { 0 };
        assert_eq!(f.payload.len() + header, p.size, "{name}: audio access unit size");
    }
    specs.push(TrackSpec::new(audio_codec, None));

    // Re-mux everything, CONFIG frames included, in demux order.
    let mut mux = TsMuxer::new(&specs).expect("muxer");
    let mut out = BytesMut::new();
    for frame in &got.frames {
        mux.write_frame(frame, &mut out).unwrap_or_else(|e| panic!("{name}: mux {frame:?}: {e}"));
    }
    assert_eq!(out.len() % 188, 0);
    let dir = scratch_dir(&format!("ts-{name}"));
    let remuxed = dir.join(name);
    std::fs::write(&remuxed, &out).expect("write");
    assert_eq!(ffmpeg_errors(&remuxed), "", "{name}: ffmpeg decodes the re-mux");

    let before = ffprobe(&path);
    let after = ffprobe(&remuxed);
    assert_eq!(before.len(), after.len(), "{name}: stream count");
    for (b, a) in before.iter().zip(&after) {
        for key in ["codec_name", "width", "height", "sample_rate", "channels", "nb_read_packets"] {
            assert_eq!(b.get(key), a.get(key), "{name}: {key}");
        }
    }
    if let Some((_, probe_name)) = video {
        // Timestamps are written as given: exactly the source's.
        let (_, original, _) = probe_stream(&path, probe_name);
        let (_, again, _) = probe_stream(&remuxed, probe_name);
        assert_eq!(probe_pts_dts(&again), probe_pts_dts(&original), "{name}: re-muxed video pts/dts");
        let keys = |p: &[ProbePacket]| p.iter().map(|p| p.keyframe).collect::<Vec<_>>();
        assert_eq!(keys(&again), keys(&original), "{name}: re-muxed keyframes");
    }
    let (_, again, _) = probe_stream(&remuxed, audio_name);
    let pts = |p: &[ProbePacket]| p.iter().map(|p| p.pts).collect::<Vec<_>>();
    assert_eq!(pts(&again), pts(&audio_packets), "{name}: re-muxed audio pts");

    // And our own demuxer reads the re-mux back to the same frames.
    let back = demux(&out, 4096);
    assert!(back.errors.is_empty(), "{name}: {:?}", back.errors);
    // Per track: the interleaving differs, as the demuxer emits a video PES
    // when the next one starts and the re-mux has one audio frame per PES.
    for kind in [FrameType::Video, FrameType::Audio] {
        let track = |frames: &[MediaFrame]| -> Vec<MediaFrame> {
            frames.iter().filter(|f| f.frame_type() == kind).cloned().collect()
        };
        same_frames(&track(&back.frames), &track(&got.frames), &format!("{name}: demux(mux(demux(file))) {kind:?}"));
    }
}

#[test]
fn h264_aac_matches_ffprobe_and_remuxes() {
    round_trip_with_ffmpeg("h264_aac.ts", Some((CodecId::H264, "h264")), (CodecId::Aac, "aac"));
}

#[test]
fn hevc_aac_matches_ffprobe_and_remuxes() {
    round_trip_with_ffmpeg("hevc_aac.ts", Some((CodecId::H265, "hevc")), (CodecId::Aac, "aac"));
}

#[test]
fn opus_matches_ffprobe_and_remuxes() {
    round_trip_with_ffmpeg("opus.ts", None, (CodecId::Opus, "opus"));
}

#[test]
fn remux_without_in_band_parameter_sets_uses_the_config() {
    // Frames whose payloads lack SPS/PPS decode only if the muxer inserts
    // the record's parameter sets before each keyframe.
    let got = demux(&read_testdata("h264_aac.ts"), 188 * 7);
    let config = got.frames.iter().find(|f| f.is_config() && f.codec == CodecId::H264).expect("avcC").clone();
    let mut mux = TsMuxer::new(&[TrackSpec::new(CodecId::H264, Some(config.payload.clone()))]).expect("muxer");
    let mut out = BytesMut::new();
    for f in got.frames.iter().filter(|f| f.codec == CodecId::H264 && !f.is_config()) {
        mux.write_frame(f, &mut out).expect("mux");
    }
    let dir = scratch_dir("ts-config-insert");
    let file = dir.join("video.ts");
    std::fs::write(&file, &out).expect("write");
    assert_eq!(ffmpeg_errors(&file), "");
    let streams = ffprobe(&file);
    assert_eq!(streams[0].get("width").map(String::as_str), Some("160"));
    assert_eq!(streams[0].get("nb_read_packets").map(String::as_str), Some("75"));
}
