//! fMP4 output checked by ffprobe/ffmpeg as the reference peer: the init
//! segment plus fragments, concatenated, must be a fragmented MP4 that
//! ffmpeg reads with the source's codecs, sizes, packet counts and
//! timestamps, and decodes without an error.
#![allow(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use arcly_codec::av1;
use arcly_core::frame::{CodecId, FrameFlags, FrameType, MediaFrame, Timebase};
use arcly_mux::flv::FlvReader;
use arcly_mux::fmp4::{FragmentWriter, TrackConfig, init_segment};
use arcly_mux::ts::{DemuxEvent, TsDemuxer};
use arcly_testkit::{Section, ffmpeg_errors, ffprobe, ffprobe_packets, ivf, read_testdata, scratch_dir, testdata};

/// When to cut a fragment: before pushing `frame` on `track`.
type Cut<'a> = &'a mut dyn FnMut(&FragmentWriter, usize, &MediaFrame) -> bool;

/// Writes init + fragments of `frames` to `<test>.mp4`; `parts` picks the
/// vectored output. Returns the path and the number of fragments.
fn write_mp4(
    test: &str,
    tracks: &[TrackConfig],
    frames: &[(usize, MediaFrame)],
    parts: bool,
    cut: Cut<'_>,
) -> (PathBuf, usize) {
    let mut writer = FragmentWriter::new(tracks);
    let mut file = init_segment(tracks).to_vec();
    assert_eq!(file, writer.init_segment().to_vec());
    let mut fragments = 0;
    let mut flush = |writer: &mut FragmentWriter, file: &mut Vec<u8>, finish: bool| {
        let data = match (parts, finish) {
            (false, false) => writer.flush_fragment().map(|b| b.to_vec()),
            (false, true) => writer.finish().map(|b| b.to_vec()),
            (true, false) => Some(writer.flush_fragment_parts().concat()).filter(|v| !v.is_empty()),
            (true, true) => Some(writer.finish_parts().concat()).filter(|v| !v.is_empty()),
        };
        if let Some(data) = data {
            file.extend_from_slice(&data);
            fragments += 1;
        }
    };
    for (track, frame) in frames {
        if cut(&writer, *track, frame) {
            flush(&mut writer, &mut file, false);
        }
        writer.push(*track, frame).unwrap_or_else(|e| panic!("push {frame:?}: {e}"));
    }
    flush(&mut writer, &mut file, true);
    let path = scratch_dir(test).join(format!("{test}.mp4"));
    std::fs::write(&path, &file).expect("write output");
    (path, fragments)
}

fn stream<'a>(streams: &'a [Section], codec_type: &str) -> &'a Section {
    streams.iter().find(|s| s["codec_type"] == codec_type).unwrap_or_else(|| panic!("no {codec_type} stream"))
}

/// (pts, dts, keyframe) of the packets of the stream of `codec_type`,
/// sorted by dts (fragments interleave tracks).
fn timestamps(path: &Path, codec_type: &str) -> Vec<(i64, i64, bool)> {
    let index: usize = stream(&ffprobe(path), codec_type)["index"].parse().unwrap();
    let mut ts: Vec<(i64, i64, bool)> = ffprobe_packets(path)
        .into_iter()
        .filter(|p| p.stream == index)
        .map(|p| (p.pts.expect("pts"), p.dts.expect("dts"), p.keyframe))
        .collect();
    ts.sort_by_key(|t| t.1);
    ts
}

fn assert_decodes(path: &Path) {
    let errors = ffmpeg_errors(path);
    assert!(errors.is_empty(), "ffmpeg errors on {}:\n{errors}", path.display());
}

/// Cuts before every video keyframe (segments of one GOP, 1 s here).
fn at_keyframes(_: &FragmentWriter, _: usize, frame: &MediaFrame) -> bool {
    frame.frame_type() == FrameType::Video && frame.is_keyframe()
}

/// The AV1 test stream as bus frames: temporal delimiters stripped, keyframes
/// flagged, IVF timestamps.
fn av1_frames() -> (TrackConfig, Vec<(usize, MediaFrame)>) {
    let ivf = ivf::read(&read_testdata("av1.ivf"));
    let tb = Timebase::new(ivf.timebase_num, ivf.timebase_den).expect("IVF timebase");
    let first = &ivf.frames[0].data;
    let seq_at = av1::obus(first)
        .find_map(|o| {
            let o = o.ok()?;
            (o.obu_type == av1::obu_type::SEQUENCE_HEADER).then(|| o.header.as_ptr() as usize - first.as_ptr() as usize)
        })
        .expect("sequence header in the first temporal unit");
    let config = av1::Av1Config::from_sequence_header_obu(&first[seq_at..]).expect("av1C");
    let config_frame = MediaFrame::new(CodecId::Av1, config.to_bytes()).with_flags(FrameFlags::CONFIG);
    let track = TrackConfig::from_config_frame(&config_frame).expect("AV1 track");
    let frames = ivf
        .frames
        .iter()
        .map(|f| {
            let payload = av1::strip_temporal_delimiters_shared(&f.data);
            let key = av1::is_keyframe(&payload);
            let frame = MediaFrame::new(CodecId::Av1, payload).with_timestamps(f.pts, f.pts, tb);
            (0, if key { frame.with_flags(FrameFlags::KEYFRAME) } else { frame })
        })
        .collect();
    (track, frames)
}

fn expected_video_timestamps(frames: &[(usize, MediaFrame)]) -> Vec<(i64, i64, bool)> {
    let mut ts: Vec<(i64, i64, bool)> = frames
        .iter()
        .filter(|(_, f)| f.frame_type() == FrameType::Video)
        .map(|(_, f)| (f.pts_in(Timebase::MPEG), f.dts_in(Timebase::MPEG), f.is_keyframe()))
        .collect();
    ts.sort_by_key(|t| t.1);
    ts
}

#[test]
fn av1_from_ivf() {
    let (track, frames) = av1_frames();
    assert_eq!((track.width(), track.height(), track.timescale()), (160, 120, 90_000));
    let keyframes = frames.iter().filter(|(_, f)| f.is_keyframe()).count();
    assert_eq!(keyframes, 3, "3 s with a keyframe every 25 frames");
    let (path, fragments) = write_mp4("av1", &[track], &frames, false, &mut at_keyframes);
    assert_eq!(fragments, 3);
    let streams = ffprobe(&path);
    let video = stream(&streams, "video");
    assert_eq!(
        (video["codec_name"].as_str(), video["width"].as_str(), video["height"].as_str()),
        ("av1", "160", "120")
    );
    assert_eq!(video["nb_read_packets"], frames.len().to_string());
    assert_eq!(timestamps(&path, "video"), expected_video_timestamps(&frames));
    assert_decodes(&path);
}

/// Frames of an FLV file and the tracks of its CONFIG frames: video is
/// track 0, audio track 1.
fn flv_frames(name: &str) -> (Vec<TrackConfig>, Vec<(usize, MediaFrame)>) {
    let mut reader = FlvReader::new();
    reader.push_bytes(read_testdata(name));
    let mut video = None;
    let mut audio = None;
    let mut frames = Vec::new();
    while let Some(tag) = reader.next_tag() {
        let Some(frame) = tag.expect("FLV tag").to_frame().expect("FLV body") else { continue };
        let index = match frame.frame_type() {
            FrameType::Video => 0,
            FrameType::Audio => 1,
            FrameType::Data => continue,
        };
        if frame.is_config() {
            let track = TrackConfig::from_config_frame(&frame).expect("track config");
            let slot = if index == 0 { &mut video } else { &mut audio };
            slot.get_or_insert(track);
        } else {
            frames.push((index, frame));
        }
    }
    (vec![video.expect("video config"), audio.expect("audio config")], frames)
}

/// ffprobe on the output agrees with ffprobe on the source: codecs, size,
/// audio format, packet counts, and (through `to_output`, the source's
/// timestamps in 90 kHz) the video pts/dts with their B-frame offsets and
/// the keyframe flags.
fn assert_like_source(out: &Path, source: &Path, to_output: impl Fn(i64) -> i64) {
    let (got, want) = (ffprobe(out), ffprobe(source));
    for (kind, keys) in [
        ("video", &["codec_name", "profile", "width", "height", "nb_read_packets"][..]),
        ("audio", &["codec_name", "profile", "sample_rate", "channels", "nb_read_packets"][..]),
    ] {
        for key in keys {
            assert_eq!(stream(&got, kind)[*key], stream(&want, kind)[*key], "{kind} {key}");
        }
    }
    let want_ts: Vec<(i64, i64, bool)> =
        timestamps(source, "video").into_iter().map(|(p, d, k)| (to_output(p), to_output(d), k)).collect();
    let got_ts = timestamps(out, "video");
    assert!(got_ts.iter().any(|(p, d, _)| p != d), "B-frames have composition offsets");
    assert_eq!(got_ts.iter().filter(|t| t.2).count(), 3, "one keyframe a second");
    assert_eq!(got_ts, want_ts);
}

#[test]
fn h264_aac_from_flv() {
    let (tracks, frames) = flv_frames("h264_aac.flv");
    assert_eq!((tracks[0].width(), tracks[0].height()), (160, 120));
    assert_eq!((tracks[1].sample_rate(), tracks[1].channels()), (48_000, 2));
    let (path, fragments) = write_mp4("h264_flv", &tracks, &frames, false, &mut at_keyframes);
    assert_eq!(fragments, 3);
    // FLV timestamps are milliseconds: 90 ticks each.
    assert_like_source(&path, &testdata("h264_aac.flv"), |ms| ms * 90);
    assert_decodes(&path);
}

/// LL-HLS parts: fragments of 200 ms of video cut anywhere (mostly not at a
/// keyframe), written without copying payloads, still decode cleanly.
#[test]
fn h264_aac_in_200ms_parts() {
    let (tracks, frames) = flv_frames("h264_aac.flv");
    let mut cuts_at_keyframes = 0;
    let mut cut = |w: &FragmentWriter, track: usize, frame: &MediaFrame| {
        let cut = track == 0 && w.pending_duration(0) >= Duration::from_millis(200);
        if cut && frame.is_keyframe() {
            cuts_at_keyframes += 1;
        }
        cut
    };
    let (path, fragments) = write_mp4("h264_parts", &tracks, &frames, true, &mut cut);
    assert!(fragments >= 14, "3 s in 200 ms parts: {fragments}");
    assert!(cuts_at_keyframes < fragments / 2, "most parts start mid-GOP");
    assert_like_source(&path, &testdata("h264_aac.flv"), |ms| ms * 90);
    assert_decodes(&path);
}

#[test]
fn vp9_from_ivf() {
    let ivf = ivf::read(&read_testdata("vp9.ivf"));
    let tb = Timebase::new(ivf.timebase_num, ivf.timebase_den).expect("IVF timebase");
    // The track from the first keyframe alone (vpcC has no picture size).
    let track = TrackConfig::vp9_from_keyframe(&ivf.frames[0].data).expect("VP9 track");
    assert_eq!((track.width(), track.height()), (160, 120));
    // The same as a CONFIG frame's record plus a size from the keyframe.
    let config = MediaFrame::new(CodecId::Vp9, track.codec_config().clone()).with_flags(FrameFlags::CONFIG);
    let from_config = TrackConfig::from_config_frame(&config).unwrap();
    assert_eq!((from_config.width(), from_config.height()), (0, 0));
    assert_eq!(from_config.with_vp9_keyframe_size(&ivf.frames[0].data).unwrap(), track);
    let frames: Vec<(usize, MediaFrame)> = ivf
        .frames
        .iter()
        .map(|f| {
            let key = arcly_codec::vp9::FrameHeader::parse(&f.data).is_ok_and(|h| h.keyframe);
            let frame = MediaFrame::new(CodecId::Vp9, f.data.clone()).with_timestamps(f.pts, f.pts, tb);
            (0, if key { frame.with_flags(FrameFlags::KEYFRAME) } else { frame })
        })
        .collect();
    assert_eq!(frames.iter().filter(|(_, f)| f.is_keyframe()).count(), 3);
    let (path, fragments) = write_mp4("vp9", &[track], &frames, true, &mut at_keyframes);
    assert_eq!(fragments, 3);
    let streams = ffprobe(&path);
    let video = stream(&streams, "video");
    assert_eq!(
        (video["codec_name"].as_str(), video["width"].as_str(), video["height"].as_str()),
        ("vp9", "160", "120")
    );
    assert_eq!(video["nb_read_packets"], frames.len().to_string());
    assert_eq!(timestamps(&path, "video"), expected_video_timestamps(&frames));
    assert_decodes(&path);
}

/// Frames of an MPEG-TS file through the TS demuxer, and the tracks of the
/// first CONFIG frame of each type: video (if any) first, then audio.
fn ts_frames(name: &str) -> (Vec<TrackConfig>, Vec<(usize, MediaFrame)>) {
    let mut demux = TsDemuxer::new();
    demux.push(&read_testdata(name));
    demux.flush();
    let mut configs: Vec<(FrameType, TrackConfig)> = Vec::new();
    let mut frames = Vec::new();
    while let Some(event) = demux.poll() {
        let DemuxEvent::Frame(frame) = event.expect("demux event") else { continue };
        if frame.is_config() {
            if !configs.iter().any(|(t, _)| *t == frame.frame_type()) {
                configs.push((frame.frame_type(), TrackConfig::from_config_frame(&frame).expect("track config")));
            }
        } else {
            frames.push(frame);
        }
    }
    configs.sort_by_key(|(t, _)| t.index());
    let frames = frames
        .into_iter()
        .map(|f| (configs.iter().position(|(t, _)| *t == f.frame_type()).expect("a track for the frame"), f))
        .collect();
    (configs.into_iter().map(|(_, c)| c).collect(), frames)
}

#[test]
fn h264_aac_from_ts() {
    let (tracks, frames) = ts_frames("h264_aac.ts");
    assert_eq!((tracks[0].codec(), tracks[0].width(), tracks[0].height()), (CodecId::H264, 160, 120));
    assert_eq!((tracks[1].codec(), tracks[1].sample_rate(), tracks[1].channels()), (CodecId::Aac, 48_000, 2));
    let (path, fragments) = write_mp4("h264_ts", &tracks, &frames, false, &mut at_keyframes);
    assert_eq!(fragments, 3);
    assert_like_source(&path, &testdata("h264_aac.ts"), |t| t);
    assert_decodes(&path);
}

#[test]
fn hevc_aac_from_ts() {
    let (tracks, frames) = ts_frames("hevc_aac.ts");
    assert_eq!((tracks[0].codec(), tracks[0].width(), tracks[0].height()), (CodecId::H265, 160, 120));
    assert_eq!(tracks[1].codec(), CodecId::Aac);
    let (path, fragments) = write_mp4("hevc_ts", &tracks, &frames, true, &mut at_keyframes);
    assert_eq!(fragments, 3);
    assert_like_source(&path, &testdata("hevc_aac.ts"), |t| t);
    assert_decodes(&path);
}

#[test]
fn hevc_aac_in_200ms_parts() {
    let (tracks, frames) = ts_frames("hevc_aac.ts");
    let mut cut = |w: &FragmentWriter, track: usize, _: &MediaFrame| {
        track == 0 && w.pending_duration(0) >= Duration::from_millis(200)
    };
    let (path, fragments) = write_mp4("hevc_parts", &tracks, &frames, true, &mut cut);
    assert!(fragments >= 14, "3 s in 200 ms parts: {fragments}");
    assert_like_source(&path, &testdata("hevc_aac.ts"), |t| t);
    assert_decodes(&path);
}

#[test]
fn opus_from_ts() {
    let (tracks, frames) = ts_frames("opus.ts");
    assert_eq!(tracks.len(), 1);
    assert_eq!((tracks[0].codec(), tracks[0].sample_rate(), tracks[0].channels()), (CodecId::Opus, 48_000, 2));
    // Audio only: cut every second.
    let mut cut = |w: &FragmentWriter, _: usize, _: &MediaFrame| w.pending_duration(0) >= Duration::from_secs(1);
    let (path, fragments) = write_mp4("opus", &tracks, &frames, false, &mut cut);
    assert_eq!(fragments, 3);
    let streams = ffprobe(&path);
    let audio = stream(&streams, "audio");
    assert_eq!(
        (audio["codec_name"].as_str(), audio["sample_rate"].as_str(), audio["channels"].as_str()),
        ("opus", "48000", "2")
    );
    let source = ffprobe(&testdata("opus.ts"));
    assert_eq!(audio["nb_read_packets"], stream(&source, "audio")["nb_read_packets"]);
    assert_eq!(audio["nb_read_packets"], frames.len().to_string());
    // Packet times match the source's to within one 48 kHz tick.
    let want: Vec<f64> = ffprobe_packets(&testdata("opus.ts")).iter().filter_map(|p| p.pts_time).collect();
    let got: Vec<f64> = ffprobe_packets(&path).iter().filter_map(|p| p.pts_time).collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() < 1.0 / 48_000.0 + 1e-9, "pts_time {g} vs source {w}");
    }
    assert_decodes(&path);
}
