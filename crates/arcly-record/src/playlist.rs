//! The playlist of one recording: every closed file as one HLS segment.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::config::RecordFormat;
use crate::time::Utc;

/// One closed file of a recording.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FileEntry {
    /// The file's name, relative to the playlist (same directory).
    pub(crate) uri: String,
    /// Its media duration in seconds.
    pub(crate) seconds: f64,
    /// Its size in bytes.
    pub(crate) size: u64,
    /// fMP4: the length of the initialisation segment at its start.
    pub(crate) init_len: u64,
    /// The wall-clock time of its first frame.
    pub(crate) start: SystemTime,
    /// It starts a new timeline (a new publisher, a codec change, a gap).
    pub(crate) discontinuity: bool,
}

/// Renders the playlist of a recording's closed files.
///
/// While the recording runs the playlist is an `EVENT` playlist (files are
/// only ever added at the end); when it ends it becomes `VOD` with
/// `EXT-X-ENDLIST`. fMP4 files are listed as byte ranges: the
/// initialisation segment at the start of each file is its `EXT-X-MAP`,
/// the rest its media segment, so every file stays a self-contained,
/// playable MP4 and the playlist plays them all in one timeline.
pub(crate) fn render(format: RecordFormat, files: &[FileEntry], max_duration: Duration, ended: bool) -> String {
    let fmp4 = format == RecordFormat::Fmp4;
    // RFC 8216 §4.3.3.1: every EXTINF, rounded to the nearest integer, is
    // at most the target duration. Files are cut at the first keyframe
    // after the maximum duration, so they may run a GOP longer.
    let longest = files.iter().map(|f| f.seconds.round() as u64).max().unwrap_or(0);
    let configured = max_duration.as_secs() + u64::from(max_duration.subsec_nanos() > 0);
    let target = longest.max(configured).max(1);
    let mut out = String::with_capacity(256 + files.len() * 160);
    out.push_str("#EXTM3U\n");
    // EXT-X-MAP in a playlist without I-frames needs version 6 (§7).
    let _ = writeln!(out, "#EXT-X-VERSION:{}", if fmp4 { 6 } else { 3 });
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    out.push_str("#EXT-X-MEDIA-SEQUENCE:0\n");
    let _ = writeln!(out, "#EXT-X-PLAYLIST-TYPE:{}", if ended { "VOD" } else { "EVENT" });
    if fmp4 {
        out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    }
    for f in files {
        if f.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if fmp4 {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\",BYTERANGE=\"{}@0\"", f.uri, f.init_len);
        }
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", Utc::from(f.start).iso8601());
        let _ = writeln!(out, "#EXTINF:{:.5},", f.seconds);
        if fmp4 {
            let _ = writeln!(out, "#EXT-X-BYTERANGE:{}@{}", f.size.saturating_sub(f.init_len), f.init_len);
        }
        out.push_str(&f.uri);
        out.push('\n');
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn entry(uri: &str, seconds: f64, discontinuity: bool) -> FileEntry {
        FileEntry {
            uri: uri.into(),
            seconds,
            size: 10_000,
            init_len: 800,
            start: UNIX_EPOCH + Duration::from_secs(1_795_569_825),
            discontinuity,
        }
    }

    #[test]
    fn fmp4_playlist_maps_each_file() {
        let files = [entry("a_0001.mp4", 10.04, false), entry("a_0002.mp4", 4.5, true)];
        let text = render(RecordFormat::Fmp4, &files, Duration::from_secs(10), true);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n\
             #EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MAP:URI=\"a_0001.mp4\",BYTERANGE=\"800@0\"\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-11-25T01:23:45.000Z\n#EXTINF:10.04000,\n\
             #EXT-X-BYTERANGE:9200@800\na_0001.mp4\n\
             #EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"a_0002.mp4\",BYTERANGE=\"800@0\"\n\
             #EXT-X-PROGRAM-DATE-TIME:2026-11-25T01:23:45.000Z\n#EXTINF:4.50000,\n\
             #EXT-X-BYTERANGE:9200@800\na_0002.mp4\n#EXT-X-ENDLIST\n"
        );
    }

    #[test]
    fn ts_playlist_is_an_event_playlist_until_it_ends() {
        let files = [entry("a_0001.ts", 12.6, false)];
        let text = render(RecordFormat::Ts, &files, Duration::from_millis(9_500), false);
        assert!(text.contains("#EXT-X-VERSION:3\n"));
        // 12.6 rounds to 13, above the configured 10.
        assert!(text.contains("#EXT-X-TARGETDURATION:13\n"));
        assert!(text.contains("#EXT-X-PLAYLIST-TYPE:EVENT\n"));
        assert!(!text.contains("ENDLIST") && !text.contains("MAP") && !text.contains("BYTERANGE"));
        assert!(text.ends_with("#EXTINF:12.60000,\na_0001.ts\n"));
    }
}
