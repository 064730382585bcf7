//! What to record, in which container, and when to start a new file.

use std::time::Duration;

use arcly_core::identity::StreamId;

/// The container recordings are written in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RecordFormat {
    /// Fragmented MP4 (`.mp4`): the initialisation segment (`ftyp` +
    /// `moov`), then one `moof` + `mdat` per fragment. The default.
    #[default]
    Fmp4,
    /// MPEG transport stream (`.ts`).
    Ts,
}

impl RecordFormat {
    /// The file name extension: `"mp4"` or `"ts"`.
    pub const fn extension(self) -> &'static str {
        match self {
            Self::Fmp4 => "mp4",
            Self::Ts => "ts",
        }
    }

    /// `"fmp4"` or `"ts"` (the names [`FromStr`](std::str::FromStr) reads).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fmp4 => "fmp4",
            Self::Ts => "ts",
        }
    }
}

impl std::str::FromStr for RecordFormat {
    type Err = String;

    /// `fmp4` (or `mp4`) and `ts` (or `mpegts`).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fmp4" | "mp4" => Ok(Self::Fmp4),
            "ts" | "mpegts" => Ok(Self::Ts),
            other => Err(format!("{other:?} is not a recording format (fmp4 or ts)")),
        }
    }
}

/// The recorder's settings.
///
/// ```
/// use std::time::Duration;
/// use arcly_record::{RecordConfig, RecordFormat};
/// let config = RecordConfig {
///     format: RecordFormat::Ts,
///     max_duration: Duration::from_secs(300),
///     keys: vec!["cam-*".into()],
///     ..RecordConfig::default()
/// };
/// assert!(config.matches(&"live/cam-1".parse().unwrap()));
/// assert!(!config.matches(&"live/studio".parse().unwrap()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordConfig {
    /// The container (default fMP4).
    pub format: RecordFormat,
    /// A file is closed at the first keyframe at or after this duration of
    /// media (default 10 minutes).
    pub max_duration: Duration,
    /// A file is closed at the first keyframe at or after this many bytes
    /// (default `None`: no limit).
    pub max_size: Option<u64>,
    /// The longest stretch of media written with one append: a fragment
    /// (fMP4) or chunk (TS) also ends at every video keyframe. After a
    /// crash, at most this much of the open file is lost (default 2 s).
    pub fragment_duration: Duration,
    /// Applications to record, as patterns (`*` any run of characters, `?`
    /// one character); empty records every application.
    pub apps: Vec<String>,
    /// Stream keys to record, as patterns; empty records every key.
    pub keys: Vec<String>,
    /// How long a recording that failed to write waits before it tries
    /// again (at the next keyframe after it); doubled after each failure in
    /// a row, up to 16 times this (default 5 s).
    pub retry_backoff: Duration,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self {
            format: RecordFormat::Fmp4,
            max_duration: Duration::from_secs(600),
            max_size: None,
            fragment_duration: Duration::from_secs(2),
            apps: Vec::new(),
            keys: Vec::new(),
            retry_backoff: Duration::from_secs(5),
        }
    }
}

impl RecordConfig {
    /// True if `stream` is to be recorded: its application matches one of
    /// [`apps`](Self::apps) (or that list is empty) and its key one of
    /// [`keys`](Self::keys) (or that list is empty).
    pub fn matches(&self, stream: &StreamId) -> bool {
        let any = |patterns: &[String], text: &str| patterns.is_empty() || patterns.iter().any(|p| glob_match(p, text));
        any(&self.apps, stream.app().as_str()) && any(&self.keys, stream.key().as_str())
    }

    /// The settings with values out of range brought into it: durations of
    /// at least 100 ms (fragments at most the file duration), a size limit
    /// of at least 64 KiB.
    pub fn sanitized(mut self) -> Self {
        let floor = Duration::from_millis(100);
        self.max_duration = self.max_duration.max(floor);
        self.fragment_duration = self.fragment_duration.clamp(floor, self.max_duration);
        self.max_size = self.max_size.map(|s| s.max(64 << 10));
        self.retry_backoff = self.retry_backoff.max(floor);
        self
    }
}

/// Matches `text` against a pattern where `*` stands for any run of
/// characters (also none) and `?` for exactly one; other characters match
/// themselves.
///
/// ```
/// use arcly_record::glob_match;
/// assert!(glob_match("cam-*", "cam-12"));
/// assert!(glob_match("cam-?", "cam-1"));
/// assert!(!glob_match("cam-?", "cam-12"));
/// assert!(glob_match("*", ""));
/// ```
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // The last `*` seen and the text position it was tried at: on a
    // mismatch, that star takes one more character. Linear in practice,
    // O(len(p) * len(t)) at worst; no recursion.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, m) in [
            ("", "", true),
            ("", "a", false),
            ("a", "a", true),
            ("a*", "abc", true),
            ("*c", "abc", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b*", "xxbxxaxx", false),
            ("??", "ab", true),
            ("??", "a", false),
            ("a?c*", "abcdef", true),
            ("**", "x", true),
        ] {
            assert_eq!(glob_match(p, t), m, "{p:?} against {t:?}");
        }
    }

    #[test]
    fn selection_by_app_and_key() {
        let c = RecordConfig { apps: vec!["live".into(), "event*".into()], keys: vec![], ..RecordConfig::default() };
        assert!(c.matches(&"live/a".parse().unwrap()));
        assert!(c.matches(&"event2/b".parse().unwrap()));
        assert!(!c.matches(&"test/a".parse().unwrap()));
        let c = RecordConfig { keys: vec!["rec-?".into()], ..c };
        assert!(c.matches(&"live/rec-1".parse().unwrap()));
        assert!(!c.matches(&"live/rec-10".parse().unwrap()));
        assert!(RecordConfig::default().matches(&"any/thing".parse().unwrap()));
    }

    #[test]
    fn formats_parse() {
        assert_eq!("fmp4".parse(), Ok(RecordFormat::Fmp4));
        assert_eq!("ts".parse(), Ok(RecordFormat::Ts));
        assert!("flv".parse::<RecordFormat>().is_err());
        assert_eq!(RecordFormat::default().extension(), "mp4");
    }
}
