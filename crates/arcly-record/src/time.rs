//! UTC date and time formatting for file names and playlists, without a
//! calendar crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time broken into UTC calendar fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    millis: u32,
}

impl Utc {
    /// The calendar fields of `t` (times before 1970 are clamped to it).
    pub(crate) fn from(t: SystemTime) -> Self {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem % 3600 / 60) as u32,
            second: (rem % 60) as u32,
            millis: d.subsec_millis(),
        }
    }

    /// `2026-11-25T01-23-45Z`: safe in file names on every common file
    /// system (no `:`), and sorting by name sorts by time.
    pub(crate) fn file_stamp(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `2026-11-25T01:23:45.678Z` (ISO 8601, as `EXT-X-PROGRAM-DATE-TIME`
    /// wants it).
    pub(crate) fn iso8601(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }
}

/// Year, month (1-12) and day (1-31) of a day count since 1970-01-01, in
/// the proleptic Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn formats_known_instants() {
        let at = |s: u64, ms: u64| Utc::from(UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms));
        assert_eq!(at(0, 0).file_stamp(), "1970-01-01T00-00-00Z");
        // 2000-02-29 (a leap day of a century year divisible by 400).
        assert_eq!(at(951_782_400, 5).iso8601(), "2000-02-29T00:00:00.005Z");
        // 2026-11-25T01:23:45Z.
        assert_eq!(at(1_795_569_825, 678).file_stamp(), "2026-11-25T01-23-45Z");
        assert_eq!(at(1_795_569_825, 678).iso8601(), "2026-11-25T01:23:45.678Z");
        // The last second of 2024 (a leap year).
        assert_eq!(at(1_735_689_599, 0).iso8601(), "2024-12-31T23:59:59.000Z");
    }
}
