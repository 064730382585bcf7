//! The `[record]` configuration: which streams are recorded, where, in
//! which container, and when a file rotates. Built into an
//! [`arcly_record::Recorder`] writing to an [`arcly_record::FsStorage`].
//!
//! ```toml
//! [record]
//! enabled = true
//! root = "recordings"       # files go to {root}/{app}/{key}/
//! format = "fmp4"           # or "ts"
//! max_duration_secs = 600   # a new file at the first keyframe after this
//! max_size_mb = 0           # ... or after this many MiB (0: no limit)
//! fragment_ms = 2000        # the most media one append holds
//! apps = []                 # patterns (* and ?); empty: every application
//! keys = ["cam-*"]          # patterns; empty: every stream key
//! retry_secs = 5            # wait after a storage error before retrying
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arcly_core::engine::Engine;
use arcly_record::{FsStorage, RecordConfig, RecordFormat, Recorder};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

fn err(key: &str, reason: impl fmt::Display) -> ConfigError {
    ConfigError(format!("{key}: {reason}"))
}

/// The container of recordings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormatName {
    /// Fragmented MP4 (`.mp4`).
    #[default]
    Fmp4,
    /// MPEG transport stream (`.ts`).
    Ts,
}

/// `[record]`: recording of live streams to files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordSettings {
    /// Record at all.
    pub enabled: bool,
    /// The directory recordings go to (created if missing); a stream's
    /// files are in `{root}/{app}/{key}/`.
    pub root: PathBuf,
    /// `"fmp4"` or `"ts"`.
    pub format: RecordFormatName,
    /// A file is closed at the first keyframe after this many seconds.
    pub max_duration_secs: u64,
    /// A file is closed at the first keyframe after this many MiB (0: no
    /// limit).
    pub max_size_mb: u64,
    /// The most media written with one append, in milliseconds (fragments
    /// also end at every keyframe; at most `max_duration_secs`): what a
    /// crash can lose of the open file.
    pub fragment_ms: u64,
    /// Applications to record, as patterns with `*` and `?`; empty: all.
    pub apps: Vec<String>,
    /// Stream keys to record, as patterns; empty: all.
    pub keys: Vec<String>,
    /// Seconds to wait after a storage error before the recording is tried
    /// again (doubled after each failure in a row, up to 16 times).
    pub retry_secs: u64,
}

impl Default for RecordSettings {
    fn default() -> Self {
        let d = RecordConfig::default();
        Self {
            enabled: false,
            root: PathBuf::from("recordings"),
            format: RecordFormatName::Fmp4,
            max_duration_secs: d.max_duration.as_secs(),
            max_size_mb: 0,
            fragment_ms: u64::try_from(d.fragment_duration.as_millis()).unwrap_or(2_000),
            apps: Vec::new(),
            keys: Vec::new(),
            retry_secs: d.retry_backoff.as_secs(),
        }
    }
}

impl RecordSettings {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.root.as_os_str().is_empty() {
            return Err(err("record.root", "is empty"));
        }
        if !(1..=86_400).contains(&self.max_duration_secs) {
            return Err(err("record.max_duration_secs", "must be between 1 and 86400"));
        }
        if self.max_size_mb > 1 << 20 {
            return Err(err("record.max_size_mb", "must be at most 1048576 (1 TiB); 0 for no limit"));
        }
        if !(100..=60_000).contains(&self.fragment_ms) {
            return Err(err("record.fragment_ms", "must be between 100 and 60000"));
        }
        for (key, patterns) in [("record.apps", &self.apps), ("record.keys", &self.keys)] {
            if patterns.iter().any(String::is_empty) {
                return Err(err(key, "has an empty pattern (\"*\" matches everything)"));
            }
        }
        if !(1..=3_600).contains(&self.retry_secs) {
            return Err(err("record.retry_secs", "must be between 1 and 3600"));
        }
        Ok(())
    }

    /// The recorder's settings.
    pub fn to_record_config(&self) -> RecordConfig {
        RecordConfig {
            format: match self.format {
                RecordFormatName::Fmp4 => RecordFormat::Fmp4,
                RecordFormatName::Ts => RecordFormat::Ts,
            },
            max_duration: Duration::from_secs(self.max_duration_secs),
            max_size: (self.max_size_mb > 0).then_some(self.max_size_mb << 20),
            fragment_duration: Duration::from_millis(self.fragment_ms),
            apps: self.apps.clone(),
            keys: self.keys.clone(),
            retry_backoff: Duration::from_secs(self.retry_secs),
        }
    }

    /// The recorder for `engine`, writing under [`root`](Self::root)
    /// (created now), or `None` when recording is off.
    pub fn recorder(&self, engine: &Engine) -> Result<Option<Recorder>, ConfigError> {
        if !self.enabled {
            return Ok(None);
        }
        let storage = FsStorage::new(&self.root)
            .map_err(|e| err("record.root", format!("cannot create {}: {e}", self.root.display())))?;
        tracing::info!(root = %self.root.display(), format = ?self.format, "recording on");
        Ok(Some(Recorder::new(engine.clone(), Arc::new(storage), self.to_record_config())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_off() {
        let s = RecordSettings::default();
        assert!(!s.enabled);
        s.validate().unwrap();
        let c = s.to_record_config();
        assert_eq!((c.format, c.max_duration, c.max_size), (RecordFormat::Fmp4, Duration::from_secs(600), None));
    }

    #[test]
    fn errors_name_the_key() {
        let bad = |f: fn(&mut RecordSettings)| {
            let mut s = RecordSettings::default();
            f(&mut s);
            s.validate().unwrap_err().0
        };
        assert!(bad(|s| s.max_duration_secs = 0).starts_with("record.max_duration_secs"));
        assert!(bad(|s| s.fragment_ms = 50).starts_with("record.fragment_ms"));
        assert!(bad(|s| s.keys = vec![String::new()]).starts_with("record.keys"));
        assert!(bad(|s| s.root = PathBuf::new()).starts_with("record.root"));
    }
}
