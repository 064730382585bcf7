//! The server's configuration: a TOML file, environment overrides and
//! command-line flags, in that order of precedence (lowest first), over
//! embedded defaults.
//!
//! With no file at all the server runs: RTMP on `0.0.0.0:1935`, HTTP on
//! `0.0.0.0:8080`, one application `live` with the GOP cache on and a
//! republish grace of 10 s. Binding every interface is the daemon's default;
//! tests bind `127.0.0.1:0`.
//!
//! Every table rejects unknown keys. [`Config::validate`] adds the checks
//! TOML's types cannot express and names the key at fault, for example
//! `hls.part_target_ms: must be less than hls.segment_target_ms`.
//!
//! # Environment variables
//! Applied by [`Config::apply_env`], after the file and before the flags:
//!
//! | Variable | Key |
//! |---|---|
//! | `ARCLY_CONFIG` | the file to read (same as `--config`) |
//! | `ARCLY_LOG` | `log` |
//! | `ARCLY_RTMP_LISTEN` | `rtmp.listen` |
//! | `ARCLY_HTTP_LISTEN` | `http.listen` |
//! | `ARCLY_MAX_PUBLISHERS` | `max_publishers` |
//! | `ARCLY_CORS_ORIGINS` | `http.cors_origins` (comma-separated) |
//! | `ARCLY_HLS_ENABLED` | `hls.enabled` (`true` / `false`) |

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use arcly_core::engine::AppSpec;
use arcly_core::identity::AppName;
use serde::{Deserialize, Serialize};

pub use crate::auth::{AuditConfig, AuthConfig, AuthMode, KeyConfig};

pub use crate::metrics::MetricsConfig;
pub use crate::record::RecordSettings;

/// The environment variables [`Config::apply_env`] reads, with the key each
/// sets (`ARCLY_CONFIG` is read by the command line).
pub const ENV_VARS: &[(&str, &str)] = &[
    ("ARCLY_CONFIG", "(the configuration file)"),
    ("ARCLY_LOG", "log"),
    ("ARCLY_RTMP_LISTEN", "rtmp.listen"),
    ("ARCLY_HTTP_LISTEN", "http.listen"),
    ("ARCLY_MAX_PUBLISHERS", "max_publishers"),
    ("ARCLY_CORS_ORIGINS", "http.cors_origins"),
    ("ARCLY_HLS_ENABLED", "hls.enabled"),
];

/// A configuration error: the key (or variable) at fault and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: &str, reason: impl fmt::Display) -> ConfigError {
    ConfigError(format!("{key}: {reason}"))
}

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The log filter (tracing `EnvFilter` syntax, e.g. `info` or
    /// `info,arcly_rtmp=debug`).
    pub log: String,
    /// Most streams published at once.
    pub max_publishers: usize,
    /// Seconds without a frame before a stream is closed (0 disables).
    pub idle_timeout_secs: u64,
    /// The RTMP listener.
    pub rtmp: RtmpConfig,
    /// The HTTP listener (HLS, HTTP-FLV, API, player).
    pub http: HttpConfig,
    /// Prometheus metrics (`GET /metrics`).
    pub metrics: MetricsConfig,
    /// HLS and LL-HLS packaging.
    pub hls: HlsSettings,
    /// Authorization of publishers and players.
    pub auth: AuthConfig,
    /// The audit trail.
    pub audit: AuditConfig,
    /// Recording to files.
    pub record: RecordSettings,
    /// The applications (`[[app]]` tables). Given in a file, they replace
    /// the default application `live`.
    #[serde(rename = "app")]
    pub apps: Vec<AppConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            log: "info".into(),
            max_publishers: 10_000,
            idle_timeout_secs: 30,
            rtmp: RtmpConfig::default(),
            http: HttpConfig::default(),
            metrics: MetricsConfig::default(),
            hls: HlsSettings::default(),
            auth: AuthConfig::default(),
            audit: AuditConfig::default(),
            record: RecordSettings::default(),
            apps: vec![AppConfig::default()],
        }
    }
}

/// `[rtmp]`: the RTMP listener and its per-connection limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtmpConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Most connections at once; more are closed at accept.
    pub max_connections: usize,
    /// Most connections at once from one IP address (0: no limit); more
    /// are closed at accept.
    pub max_connections_per_ip: usize,
    /// The output chunk size.
    pub chunk_size: u32,
    /// The largest message a peer may send, in bytes.
    pub max_message_size: u32,
    /// Time allowed for the handshake and `connect`, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Time without traffic before a connection is closed, in milliseconds
    /// (0 disables).
    pub idle_timeout_ms: u64,
    /// How long a player collects frames before a write, in milliseconds.
    pub play_batch_window_ms: u64,
    /// How long a player waits for a stream that is not live yet, in
    /// milliseconds.
    pub play_wait_ms: u64,
}

impl Default for RtmpConfig {
    fn default() -> Self {
        let d = arcly_rtmp::ServerConfig::default();
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 1935)),
            max_connections: d.max_connections,
            max_connections_per_ip: d.max_connections_per_ip,
            chunk_size: d.session.chunk_size,
            max_message_size: d.session.limits.max_message_size,
            handshake_timeout_ms: ms(d.session.handshake_timeout),
            idle_timeout_ms: ms(d.session.idle_timeout),
            play_batch_window_ms: ms(d.play_batch_window),
            play_wait_ms: ms(d.play_wait),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `[http]`: the HTTP listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Most connections at once; more are closed at accept.
    pub max_connections: usize,
    /// Most connections at once from one IP address (0: no limit); more
    /// are closed at accept.
    pub max_connections_per_ip: usize,
    /// Time allowed to send a request head, in milliseconds; also how long
    /// an idle keep-alive connection waits for its next request. Responses
    /// (HTTP-FLV, blocking playlist reloads) are not limited by it.
    pub header_read_timeout_ms: u64,
    /// Origins allowed by CORS; `["*"]` allows any.
    pub cors_origins: Vec<String>,
    /// How long an HTTP-FLV player collects frames before a write, in
    /// milliseconds.
    pub flv_batch_window_ms: u64,
    /// An HTTP-FLV player that does not take a batch for this long is
    /// closed, in milliseconds.
    pub flv_write_timeout_ms: u64,
    /// How long an HTTP-FLV request waits for a stream that is not live yet
    /// before answering 404, in milliseconds.
    pub play_wait_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_connections: 10_000,
            max_connections_per_ip: 100,
            header_read_timeout_ms: 10_000,
            cors_origins: vec!["*".into()],
            flv_batch_window_ms: 50,
            flv_write_timeout_ms: 10_000,
            play_wait_ms: 0,
        }
    }
}

/// `[hls]`: HLS and LL-HLS packaging.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsSettings {
    /// Serve HLS at all.
    pub enabled: bool,
    /// The target segment duration, in milliseconds (segments are cut at
    /// the first keyframe after it).
    pub segment_target_ms: u64,
    /// The LL-HLS part target (`PART-TARGET`), in milliseconds.
    pub part_target_ms: u64,
    /// Completed segments kept and listed in a playlist.
    pub window: usize,
    /// Write classic HLS in MPEG-TS (`ts/index.m3u8`).
    pub ts: bool,
    /// Write LL-HLS in fMP4 (`index.m3u8`).
    pub fmp4: bool,
    /// The longest a blocking playlist reload (`_HLS_msn`) waits, in
    /// milliseconds.
    pub blocking_timeout_ms: u64,
}

impl Default for HlsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            segment_target_ms: 2_000,
            part_target_ms: 200,
            window: 6,
            ts: true,
            fmp4: true,
            blocking_timeout_ms: 6_000,
        }
    }
}

/// `[[app]]`: one application.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    /// Its name (the first path segment of a stream).
    pub name: String,
    /// Keep the GOP cache: a player starts at once at the latest keyframe.
    pub gop_cache: bool,
    /// The GOP cache's size in frames.
    pub gop_cache_frames: usize,
    /// The GOP cache's size in payload bytes.
    pub gop_cache_bytes: usize,
    /// Frames a player may fall behind before it skips to a keyframe.
    pub lag_limit_frames: usize,
    /// Payload bytes kept for lagging players.
    pub lag_limit_bytes: usize,
    /// Skips in a row before a player is dropped.
    pub max_consecutive_skips: u32,
    /// Seconds a stream waits for its publisher to come back.
    pub republish_grace_secs: f64,
}

impl Default for AppConfig {
    fn default() -> Self {
        let bus = arcly_core::bus::BusConfig::default();
        Self {
            name: "live".into(),
            gop_cache: true,
            gop_cache_frames: bus.gop_cache_frames,
            gop_cache_bytes: bus.gop_cache_bytes,
            lag_limit_frames: bus.lag_limit_frames,
            lag_limit_bytes: bus.lag_limit_bytes,
            max_consecutive_skips: bus.max_consecutive_skips,
            republish_grace_secs: 10.0,
        }
    }
}

impl AppConfig {
    /// The engine's application settings.
    pub fn to_spec(&self) -> AppSpec {
        AppSpec::new(self.name.clone())
            .gop_cache(if self.gop_cache { self.gop_cache_frames } else { 0 })
            .gop_cache_bytes(self.gop_cache_bytes)
            .lag_limit(self.lag_limit_frames)
            .lag_limit_bytes(self.lag_limit_bytes)
            .max_consecutive_skips(self.max_consecutive_skips)
            .republish_grace(Duration::from_secs_f64(self.republish_grace_secs))
    }
}

impl Config {
    /// Parses TOML text (without validating; see [`Config::validate`]).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string().trim_end().to_owned()))
    }

    /// Reads and parses a file; errors name the file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml(&text).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
    }

    /// The configuration as TOML (what `--check-config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }

    /// Applies the [environment overrides](ENV_VARS) that `var` returns a
    /// value for (pass `|k| std::env::var(k).ok()`).
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = var("ARCLY_LOG") {
            self.log = v;
        }
        if let Some(v) = var("ARCLY_RTMP_LISTEN") {
            self.rtmp.listen = parse_addr("ARCLY_RTMP_LISTEN", &v)?;
        }
        if let Some(v) = var("ARCLY_HTTP_LISTEN") {
            self.http.listen = parse_addr("ARCLY_HTTP_LISTEN", &v)?;
        }
        if let Some(v) = var("ARCLY_MAX_PUBLISHERS") {
            self.max_publishers =
                v.trim().parse().map_err(|e| err("ARCLY_MAX_PUBLISHERS", format!("{v:?} is not a count: {e}")))?;
        }
        if let Some(v) = var("ARCLY_CORS_ORIGINS") {
            self.http.cors_origins = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        }
        if let Some(v) = var("ARCLY_HLS_ENABLED") {
            self.hls.enabled = match v.trim() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                other => return Err(err("ARCLY_HLS_ENABLED", format!("{other:?} is not true or false"))),
            };
        }
        Ok(())
    }

    /// Checks what the types do not: names, ranges, relations between keys.
    /// The error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Err(e) = self.log.parse::<tracing_subscriber::EnvFilter>() {
            return Err(err("log", format!("{:?} is not a log filter: {e}", self.log)));
        }
        if self.max_publishers == 0 {
            return Err(err("max_publishers", "must be at least 1"));
        }
        let r = &self.rtmp;
        if r.max_connections == 0 {
            return Err(err("rtmp.max_connections", "must be at least 1"));
        }
        if !(128..=65_536).contains(&r.chunk_size) {
            return Err(err("rtmp.chunk_size", "must be between 128 and 65536"));
        }
        if r.max_message_size < 1024 {
            return Err(err("rtmp.max_message_size", "must be at least 1024"));
        }
        if r.handshake_timeout_ms == 0 {
            return Err(err("rtmp.handshake_timeout_ms", "must be more than 0"));
        }
        if !(1..=1_000).contains(&r.play_batch_window_ms) {
            return Err(err("rtmp.play_batch_window_ms", "must be between 1 and 1000"));
        }
        let h = &self.http;
        if h.max_connections == 0 {
            return Err(err("http.max_connections", "must be at least 1"));
        }
        if !(100..=600_000).contains(&h.header_read_timeout_ms) {
            return Err(err("http.header_read_timeout_ms", "must be between 100 and 600000"));
        }
        if h.cors_origins.is_empty() {
            return Err(err("http.cors_origins", "must list at least one origin (\"*\" allows any)"));
        }
        for o in &h.cors_origins {
            if o != "*" && !(o.starts_with("http://") || o.starts_with("https://")) {
                return Err(err("http.cors_origins", format!("{o:?} is not \"*\" or an http(s):// origin")));
            }
            if o != "*" && axum::http::HeaderValue::from_str(o).is_err() {
                return Err(err("http.cors_origins", format!("{o:?} is not a valid header value")));
            }
        }
        if !(1..=1_000).contains(&h.flv_batch_window_ms) {
            return Err(err("http.flv_batch_window_ms", "must be between 1 and 1000"));
        }
        if h.flv_write_timeout_ms == 0 {
            return Err(err("http.flv_write_timeout_ms", "must be more than 0"));
        }
        self.metrics.validate(&[self.rtmp.listen, self.http.listen])?;
        let s = &self.hls;
        if !(100..=60_000).contains(&s.segment_target_ms) {
            return Err(err("hls.segment_target_ms", "must be between 100 and 60000"));
        }
        if s.part_target_ms >= s.segment_target_ms {
            return Err(err("hls.part_target_ms", "must be less than hls.segment_target_ms"));
        }
        // Below one video or AAC frame, every part would exceed PART-TARGET.
        if s.part_target_ms < 50 {
            return Err(err("hls.part_target_ms", "must be at least 50"));
        }
        // The window is held in memory per stream, in both formats.
        if !(2..=100).contains(&s.window) {
            return Err(err("hls.window", "must be between 2 and 100 segments"));
        }
        if s.enabled && !s.ts && !s.fmp4 {
            return Err(err("hls.fmp4", "hls.fmp4 or hls.ts must be true while hls.enabled = true"));
        }
        if !(100..=30_000).contains(&s.blocking_timeout_ms) {
            return Err(err("hls.blocking_timeout_ms", "must be between 100 and 30000"));
        }
        self.auth.validate()?;
        self.audit.validate()?;
        self.record.validate()?;
        if self.apps.is_empty() {
            return Err(err("app", "at least one [[app]] is needed"));
        }
        for (i, a) in self.apps.iter().enumerate() {
            let key = |k: &str| format!("app[{i}].{k}");
            if let Err(e) = AppName::new(&a.name) {
                return Err(err(&key("name"), format!("{:?}: {e}", a.name)));
            }
            if self.apps[..i].iter().any(|b| b.name == a.name) {
                return Err(err(&key("name"), format!("{:?} is given twice", a.name)));
            }
            if a.gop_cache && (a.gop_cache_frames == 0 || a.gop_cache_bytes == 0) {
                return Err(err(&key("gop_cache_frames"), "must be more than 0 with gop_cache = true"));
            }
            if a.lag_limit_frames == 0 || a.lag_limit_bytes == 0 {
                return Err(err(&key("lag_limit_frames"), "lag limits must be more than 0"));
            }
            if !(a.republish_grace_secs.is_finite() && (0.0..=3600.0).contains(&a.republish_grace_secs)) {
                return Err(err(&key("republish_grace_secs"), "must be between 0 and 3600"));
            }
        }
        Ok(())
    }

    /// The HLS packager's settings.
    pub fn hls_config(&self) -> arcly_hls::HlsConfig {
        let h = &self.hls;
        arcly_hls::HlsConfig {
            segment_target: Duration::from_millis(h.segment_target_ms),
            part_target: Duration::from_millis(h.part_target_ms),
            window: h.window,
            ts: h.ts,
            fmp4: h.fmp4,
            blocking_timeout: Duration::from_millis(h.blocking_timeout_ms),
        }
    }

    /// The RTMP server's settings.
    pub fn rtmp_server(&self) -> arcly_rtmp::ServerConfig {
        let r = &self.rtmp;
        let mut c = arcly_rtmp::ServerConfig {
            listen: r.listen,
            max_connections: r.max_connections,
            max_connections_per_ip: r.max_connections_per_ip,
            play_batch_window: Duration::from_millis(r.play_batch_window_ms),
            play_wait: Duration::from_millis(r.play_wait_ms),
            ..arcly_rtmp::ServerConfig::default()
        };
        c.session.chunk_size = r.chunk_size;
        c.session.limits.max_message_size = r.max_message_size;
        c.session.handshake_timeout = Duration::from_millis(r.handshake_timeout_ms);
        c.session.idle_timeout = Duration::from_millis(r.idle_timeout_ms);
        c
    }
}

fn parse_addr(key: &str, v: &str) -> Result<SocketAddr, ConfigError> {
    v.trim().parse().map_err(|e| err(key, format!("{v:?} is not an address like 0.0.0.0:8080: {e}")))
}
