//! Playlist rendering.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::packager::{Packager, PlaylistKind, Segment};

pub(crate) struct MediaView<'a> {
    pub(crate) kind: PlaylistKind,
    pub(crate) target_duration: u64,
    pub(crate) part_target: Duration,
    pub(crate) media_sequence: u64,
    pub(crate) discontinuity_sequence: u64,
    pub(crate) segments: Vec<&'a Segment>,
    pub(crate) open: Option<&'a Segment>,
    pub(crate) next_part: (u64, u64),
    pub(crate) part_list_seconds: f64,
    pub(crate) skip: bool,
    pub(crate) ended: bool,
}

/// Seconds with five decimals (10 µs): exact enough for 90 kHz and audio
/// rates, and what the tests compare against ticks.
fn secs(ticks: u64, timescale: u32) -> String {
    format!("{:.5}", ticks as f64 / f64::from(timescale.max(1)))
}

fn duration_secs(d: Duration) -> String {
    let s = format!("{:.6}", d.as_secs_f64());
    let s = s.trim_end_matches('0');
    s.strip_suffix('.').map_or_else(|| s.to_owned(), |s| format!("{s}.0"))
}

/// ISO 8601 in UTC with milliseconds: `2026-01-02T03:04:05.678Z`.
pub(crate) fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

pub(crate) fn media(v: &MediaView<'_>) -> String {
    let ll = v.kind == PlaylistKind::LowLatency;
    let mut out = String::with_capacity(2048);
    let _ = writeln!(out, "#EXTM3U");
    let _ = writeln!(out, "#EXT-X-VERSION:{}", if ll { 9 } else { 3 });
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{}", v.target_duration);
    let skip_until = 6 * v.target_duration;
    if ll {
        let hold_back = duration_secs(v.part_target * 3);
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={skip_until}.0,PART-HOLD-BACK={hold_back}"
        );
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={}", duration_secs(v.part_target));
    }
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", v.media_sequence);
    let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", v.discontinuity_sequence);

    // Delta update: skip the oldest segments while what remains (complete
    // segments after them plus the open segment) lasts at least the skip
    // boundary (RFC 8216bis §4.4.5.2, §6.2.5.1).
    let mut skipped = 0usize;
    if ll && v.skip {
        let open_secs =
            v.open.map_or(0.0, |o| o.parts.iter().map(|p| p.ticks).sum::<u64>() as f64 / f64::from(o.timescale.max(1)));
        let mut remaining: f64 = v.segments.iter().map(|s| s.seconds()).sum::<f64>() + open_secs;
        for s in &v.segments {
            if remaining - s.seconds() < skip_until as f64 {
                break;
            }
            remaining -= s.seconds();
            skipped += 1;
        }
    }
    let listed = &v.segments[skipped..];
    let mut map_generation = None;
    if ll {
        let generation = listed.first().copied().or(v.open).map_or(0, |s| s.init_generation);
        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", Packager::init_name(generation));
        map_generation = Some(generation);
        if v.skip {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
    }

    // Parts are listed for the segments near the live edge.
    let mut from_end = 0.0;
    let mut parts_from = listed.len();
    for (i, s) in listed.iter().enumerate().rev() {
        if from_end >= v.part_list_seconds {
            break;
        }
        from_end += s.seconds();
        parts_from = i;
    }
    let write_header = |out: &mut String, s: &Segment, map_generation: &mut Option<u32>| {
        if s.discontinuity {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY");
        }
        if ll && *map_generation != Some(s.init_generation) {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", Packager::init_name(s.init_generation));
            *map_generation = Some(s.init_generation);
        }
        let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(s.program_date_time));
    };
    let write_parts = |out: &mut String, s: &Segment| {
        for (n, p) in s.parts.iter().enumerate() {
            let _ = write!(out, "#EXT-X-PART:DURATION={},URI=\"part{}.{n}.m4s\"", secs(p.ticks, s.timescale), s.msn);
            if p.independent {
                let _ = write!(out, ",INDEPENDENT=YES");
            }
            out.push('\n');
        }
    };
    for (i, s) in listed.iter().enumerate() {
        write_header(&mut out, s, &mut map_generation);
        if ll && i >= parts_from {
            write_parts(&mut out, s);
        }
        let _ = writeln!(out, "#EXTINF:{},", secs(s.ticks, s.timescale));
        if ll {
            let _ = writeln!(out, "seg{}.m4s", s.msn);
        } else {
            let _ = writeln!(out, "seg{}.ts", s.msn);
        }
    }
    if ll {
        if let Some(open) = v.open.filter(|o| !o.parts.is_empty()) {
            write_header(&mut out, open, &mut map_generation);
            write_parts(&mut out, open);
        }
        if !v.ended {
            let (msn, part) = v.next_part;
            let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{msn}.{part}.m4s\"");
        }
    }
    if v.ended {
        let _ = writeln!(out, "#EXT-X-ENDLIST");
    }
    out
}

pub(crate) struct Variant<'a> {
    pub(crate) uri: &'a str,
    pub(crate) bandwidth: u64,
    pub(crate) average_bandwidth: u64,
    pub(crate) codecs: String,
    pub(crate) resolution: Option<(u32, u32)>,
    pub(crate) frame_rate: Option<f64>,
}

pub(crate) fn multivariant(v: &Variant<'_>) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = write!(
        out,
        "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={},CODECS=\"{}\"",
        v.bandwidth, v.average_bandwidth, v.codecs
    );
    if let Some((w, h)) = v.resolution {
        let _ = write!(out, ",RESOLUTION={w}x{h}");
    }
    if let Some(r) = v.frame_rate {
        let _ = write!(out, ",FRAME-RATE={r:.3}");
    }
    let _ = writeln!(out, "\n{}", v.uri);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_known_values() {
        assert_eq!(iso8601(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_709_251_199_123); // 2024-02-29T23:59:59.123Z
        assert_eq!(iso8601(t), "2024-02-29T23:59:59.123Z");
    }

    #[test]
    fn duration_formatting() {
        assert_eq!(duration_secs(Duration::from_millis(200)), "0.2");
        assert_eq!(duration_secs(Duration::from_secs(2)), "2.0");
        assert_eq!(secs(180_000, 90_000), "2.00000");
    }
}
