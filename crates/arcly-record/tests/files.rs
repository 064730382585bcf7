//! Recordings of a real stream, read back by ffprobe and ffmpeg: every file
//! plays on its own and starts with a keyframe, no frame is lost or
//! doubled, and the playlist plays the whole recording.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arcly_core::frame::{CodecId, MediaFrame, Timebase};
use arcly_core::traits::MediaSink;
use arcly_mux::flv::FlvReader;
use arcly_record::{FsStorage, RecordConfig, RecordFormat, RecordingSink};

/// The frames of testdata/h264_aac.flv (3.08 s: 75 video, 142 audio
/// frames), played `times` times in a row on one timeline, 3.08 s apart, as
/// `ffmpeg -stream_loop` publishes them.
fn looped_flv(times: u32) -> Vec<MediaFrame> {
    let mut reader = FlvReader::new();
    reader.push(&arcly_testkit::read_testdata("h264_aac.flv"));
    let mut once = Vec::new();
    while let Some(tag) = reader.next_tag() {
        if let Some(frame) = tag.expect("tag").to_frame().expect("frame") {
            once.push(frame);
        }
    }
    let span_ms = 3_080;
    let mut out = Vec::new();
    for loop_n in 0..i64::from(times) {
        for f in &once {
            if f.is_config() && loop_n > 0 {
                continue;
            }
            let mut f = f.clone();
            let shift = Timebase::MILLIS.rescale(loop_n * span_ms, f.timebase);
            f.dts += shift;
            f.pts += shift;
            out.push(f);
        }
    }
    out
}

fn count(frames: &[MediaFrame], codec: CodecId) -> usize {
    frames.iter().filter(|f| f.codec == codec && !f.is_config()).count()
}

/// The video's duration: first to last decode time, plus one frame (40 ms).
fn video_seconds(frames: &[MediaFrame]) -> f64 {
    let dts: Vec<i64> = frames
        .iter()
        .filter(|f| f.codec == CodecId::H264 && !f.is_config())
        .map(|f| f.dts_in(Timebase::MILLIS))
        .collect();
    (dts[dts.len() - 1] - dts[0] + 40) as f64 / 1000.0
}

async fn record(format: RecordFormat, frames: &[MediaFrame], max: Duration, dir: &Path) -> RecordingSink {
    let storage = Arc::new(FsStorage::new(dir).unwrap());
    let config = RecordConfig { format, max_duration: max, ..RecordConfig::default() };
    let mut sink = RecordingSink::new(storage, "live/cam".parse().unwrap(), config);
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_569_825);
    for f in frames {
        sink.push(f, start).await.unwrap();
    }
    sink.finish().await.unwrap();
    sink
}

fn packets(streams: &[arcly_testkit::Section], codec: &str) -> usize {
    streams
        .iter()
        .filter(|s| s.get("codec_name").map(String::as_str) == Some(codec))
        .map(|s| s["nb_read_packets"].parse::<usize>().unwrap())
        .sum()
}

async fn check_recording(format: RecordFormat) {
    let dir = arcly_testkit::scratch_dir(&format!("record-files-{}", format.as_str()));
    let frames = looped_flv(4);
    let (video, audio) = (count(&frames, CodecId::H264), count(&frames, CodecId::Aac));
    assert_eq!((video, audio), (300, 568));
    let sink = record(format, &frames, Duration::from_millis(2_500), &dir).await;
    let files = sink.closed_files();
    // 12.2 s in files of at least 2.5 s cut at 1 s GOPs: about 3 s each.
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(files[0].starts_with("live/cam/2026-11-25T01-23-45Z_0001."));
    let (mut v, mut a) = (0, 0);
    for file in &files {
        let path = dir.join(file);
        let errors = arcly_testkit::ffmpeg_errors(&path);
        assert!(errors.is_empty(), "{file} does not decode cleanly: {errors}");
        let streams = arcly_testkit::ffprobe(&path);
        let codecs: Vec<&str> = streams.iter().map(|s| s["codec_name"].as_str()).collect();
        assert_eq!(codecs, ["h264", "aac"], "{file}");
        v += packets(&streams, "h264");
        a += packets(&streams, "aac");
        let first_video = arcly_testkit::ffprobe_packets(&path).into_iter().find(|p| p.stream == 0).unwrap();
        assert!(first_video.keyframe, "{file} does not start with a keyframe");
    }
    assert_eq!((v, a), (video, audio), "frames lost or doubled across files");

    // The playlist plays the whole recording as one timeline.
    let playlist = dir.join(sink.playlist_path().unwrap());
    let text = std::fs::read_to_string(&playlist).unwrap();
    assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD") && text.ends_with("#EXT-X-ENDLIST\n"), "{text}");
    let listed: f64 = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|l| l.trim_end_matches(',').parse::<f64>().unwrap())
        .sum();
    let expected = video_seconds(&frames);
    assert!((listed - expected).abs() < 0.002, "playlist durations sum to {listed}, not {expected}: {text}");
    let errors = arcly_testkit::ffmpeg_errors(&playlist);
    assert!(errors.is_empty(), "the playlist does not decode cleanly: {errors}");
    let streams = arcly_testkit::ffprobe(&playlist);
    assert_eq!((packets(&streams, "h264"), packets(&streams, "aac")), (video, audio), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn fmp4_recording_plays_file_by_file_and_as_a_playlist() {
    check_recording(RecordFormat::Fmp4).await;
}

#[tokio::test]
async fn ts_recording_plays_file_by_file_and_as_a_playlist() {
    check_recording(RecordFormat::Ts).await;
}

/// A file cut short at any byte (a crash in the middle of an append) still
/// plays up to its last complete fragment.
#[tokio::test]
async fn a_truncated_fmp4_file_plays_up_to_its_last_whole_fragment() {
    let dir = arcly_testkit::scratch_dir("record-truncated");
    let frames = looped_flv(1);
    let sink = record(RecordFormat::Fmp4, &frames, Duration::from_secs(600), &dir).await;
    let file = dir.join(&sink.closed_files()[0]);
    let data = std::fs::read(&file).unwrap();
    // Cut in the middle of the last fragment.
    let last_moof = data.windows(4).rposition(|w| w == b"moof").unwrap() - 4;
    let cut = dir.join("cut.mp4");
    std::fs::write(&cut, &data[..last_moof + (data.len() - last_moof) / 2]).unwrap();
    let streams = arcly_testkit::ffprobe(&cut);
    let v = packets(&streams, "h264");
    assert!((50..75).contains(&v), "{v} video packets read from the truncated file");
    std::fs::remove_dir_all(&dir).unwrap();
}
