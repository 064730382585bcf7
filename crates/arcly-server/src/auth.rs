//! The `[auth]` and `[audit]` configuration: who may publish and play, and
//! where the audit trail goes. Built into authenticators from `arcly-auth`.
//!
//! ```toml
//! [auth]
//! mode = "token"       # "none", "token", "callback" or "jwt" (feature `jwt`)
//! publish = true       # check publishers
//! play = false         # check players (RTMP, HTTP-FLV, HLS)
//! skew_secs = 30       # clock skew allowed on token expiry
//!
//! [[auth.keys]]        # token and jwt modes: one table per active key
//! id = "k1"
//! secret_env = "ARCLY_KEY_K1"   # the secret is read from this variable
//!
//! [audit]
//! file = "audit.jsonl" # one JSON line per publish, play and refusal
//! ```
//!
//! A secret may also be given inline (`secret = "..."`, for tests): the
//! server warns at start. Secrets are never logged, and `--check-config`
//! prints them as `<redacted>`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arcly_auth::{CallbackAuthenticator, MIN_SECRET_LEN, Protect, TokenAuthenticator, TokenKey, valid_key_id};
use arcly_core::auth::StreamAuthenticator;
use serde::{Deserialize, Serialize, Serializer};

use crate::config::ConfigError;

fn err(key: &str, reason: impl fmt::Display) -> ConfigError {
    ConfigError(format!("{key}: {reason}"))
}

/// How publishers and players are authorized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Everyone may publish and play.
    #[default]
    None,
    /// Signed stream tokens (`arcly token` mints them).
    Token,
    /// An HTTP callback decides.
    Callback,
    /// JSON Web Tokens (HS256/384/512) with the token claims; needs the
    /// server's `jwt` feature.
    Jwt,
}

impl AuthMode {
    /// The name used in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Token => "token",
            Self::Callback => "callback",
            Self::Jwt => "jwt",
        }
    }
}

/// `[auth]`: authorization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `"none"`, `"token"`, `"callback"` or `"jwt"`.
    pub mode: AuthMode,
    /// Check publishers.
    pub publish: bool,
    /// Check players.
    pub play: bool,
    /// Seconds of clock skew allowed on a token's expiry and start.
    pub skew_secs: u64,
    /// Callback mode: the `http://` URL to POST each request to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Callback mode: how long to wait for the answer, in milliseconds
    /// (no answer in time denies).
    pub callback_timeout_ms: u64,
    /// Token and JWT modes: the active keys (`[[auth.keys]]`).
    pub keys: Vec<KeyConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            mode: AuthMode::None,
            publish: true,
            play: false,
            skew_secs: arcly_auth::DEFAULT_SKEW.as_secs(),
            callback_url: None,
            callback_timeout_ms: 2_000,
            keys: Vec::new(),
        }
    }
}

/// `[[auth.keys]]`: one signing key. `Debug` and serialization hide the
/// secret.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyConfig {
    /// The key id tokens name (`A-Z a-z 0-9 _ -`, at most 32).
    pub id: String,
    /// The environment variable holding the secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// The secret itself (for tests; the server warns).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "redacted")]
    pub secret: Option<String>,
}

impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyConfig")
            .field("id", &self.id)
            .field("secret_env", &self.secret_env)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn redacted<S: Serializer>(secret: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

/// `[audit]`: the audit trail.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Append one JSON line per publish, play, end and refusal to this file
    /// (none: no audit trail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// Events queued for the file at most; more are dropped and counted
    /// (`/healthz` turns degraded).
    pub queue: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { file: None, queue: 4_096 }
    }
}

impl AuditConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1_000_000).contains(&self.queue) {
            return Err(err("audit.queue", "must be between 1 and 1000000"));
        }
        if self.file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
            return Err(err("audit.file", "is empty; leave it out for no audit trail"));
        }
        Ok(())
    }
}

impl AuthConfig {
    /// Checks what can be checked without the environment.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mode = self.mode;
        if self.skew_secs > 3_600 {
            return Err(err("auth.skew_secs", "must be at most 3600"));
        }
        if !(1..=60_000).contains(&self.callback_timeout_ms) {
            return Err(err("auth.callback_timeout_ms", "must be between 1 and 60000"));
        }
        for (i, k) in self.keys.iter().enumerate() {
            let key = |name: &str| format!("auth.keys[{i}].{name}");
            if !valid_key_id(&k.id) {
                return Err(err(&key("id"), format!("{:?} must be 1 to 32 characters of A-Z a-z 0-9 _ -", k.id)));
            }
            if self.keys[..i].iter().any(|o| o.id == k.id) {
                return Err(err(&key("id"), format!("{:?} is given twice", k.id)));
            }
            match (&k.secret_env, &k.secret) {
                (Some(_), Some(_)) => return Err(err(&key("secret"), "give secret_env or secret, not both")),
                (None, None) => return Err(err(&key("secret_env"), "is needed (the variable holding the secret)")),
                (Some(var), None) if var.is_empty() || var.contains('=') => {
                    return Err(err(&key("secret_env"), format!("{var:?} is not a variable name")));
                }
                (None, Some(secret)) if secret.len() < MIN_SECRET_LEN => {
                    return Err(err(&key("secret"), short_secret(secret.len())));
                }
                _ => {}
            }
        }
        if mode != AuthMode::None && !self.publish && !self.play {
            return Err(err(
                "auth.publish",
                format!("auth.mode = {:?} protects nothing: set publish or play to true", mode.as_str()),
            ));
        }
        match mode {
            AuthMode::None => {}
            AuthMode::Token | AuthMode::Jwt => {
                if self.keys.is_empty() {
                    return Err(err(
                        "auth.keys",
                        format!("auth.mode = {:?} needs at least one [[auth.keys]]", mode.as_str()),
                    ));
                }
                if mode == AuthMode::Jwt && !cfg!(feature = "jwt") {
                    return Err(err("auth.mode", "\"jwt\" needs arcly built with the `jwt` feature"));
                }
            }
            AuthMode::Callback => {
                let Some(url) = &self.callback_url else {
                    return Err(err("auth.callback_url", "is needed with auth.mode = \"callback\""));
                };
                CallbackAuthenticator::new(url, Duration::from_millis(self.callback_timeout_ms))
                    .map_err(|e| err("auth.callback_url", e))?;
            }
        }
        Ok(())
    }

    /// The keys with their secrets, read from `var` (pass
    /// `|k| std::env::var(k).ok()`) for `secret_env`.
    pub fn secrets(&self, var: impl Fn(&str) -> Option<String>) -> Result<Vec<(String, Vec<u8>)>, ConfigError> {
        let mut out = Vec::with_capacity(self.keys.len());
        for (i, k) in self.keys.iter().enumerate() {
            let secret = match (&k.secret_env, &k.secret) {
                (Some(name), _) => {
                    let key = format!("auth.keys[{i}].secret_env");
                    let value = var(name).ok_or_else(|| err(&key, format!("the variable {name} is not set")))?;
                    if value.len() < MIN_SECRET_LEN {
                        return Err(err(&key, format!("the secret in {name}: {}", short_secret(value.len()))));
                    }
                    value
                }
                (None, Some(secret)) => secret.clone(),
                (None, None) => return Err(err(&format!("auth.keys[{i}].secret_env"), "is needed")),
            };
            out.push((k.id.clone(), secret.into_bytes()));
        }
        Ok(out)
    }

    /// The token verifier (also the minter of `arcly token`) for the
    /// configured keys.
    pub fn token_authenticator(&self, var: impl Fn(&str) -> Option<String>) -> Result<TokenAuthenticator, ConfigError> {
        let keys = self
            .secrets(var)?
            .into_iter()
            .map(|(id, secret)| TokenKey::new(id, secret))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err("auth.keys", e))?;
        TokenAuthenticator::new(keys)
            .map(|a| a.with_skew(Duration::from_secs(self.skew_secs)))
            .map_err(|e| err("auth.keys", e))
    }

    /// The authenticator for the configured mode, applied to the protected
    /// actions; `None` for mode `"none"`. Validate first.
    pub fn authenticator(
        &self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Arc<dyn StreamAuthenticator>>, ConfigError> {
        let (publish, play) = (self.publish, self.play);
        Ok(Some(match self.mode {
            AuthMode::None => return Ok(None),
            AuthMode::Token => Arc::new(Protect::new(self.token_authenticator(var)?).publish(publish).play(play)),
            AuthMode::Callback => {
                let url = self.callback_url.as_deref().unwrap_or_default();
                let callback = CallbackAuthenticator::new(url, Duration::from_millis(self.callback_timeout_ms))
                    .map_err(|e| err("auth.callback_url", e))?;
                Arc::new(Protect::new(callback).publish(publish).play(play))
            }
            #[cfg(feature = "jwt")]
            AuthMode::Jwt => {
                let jwt = arcly_auth::JwtAuthenticator::new(self.secrets(var)?)
                    .map_err(|e| err("auth.keys", e))?
                    .with_skew(Duration::from_secs(self.skew_secs));
                Arc::new(Protect::new(jwt).publish(publish).play(play))
            }
            #[cfg(not(feature = "jwt"))]
            AuthMode::Jwt => return Err(err("auth.mode", "\"jwt\" needs arcly built with the `jwt` feature")),
        }))
    }

    /// The ids of keys whose secret is inline (the server warns about them).
    pub fn inline_secrets(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter(|k| k.secret.is_some()).map(|k| k.id.as_str())
    }
}

fn short_secret(len: usize) -> String {
    format!("is {len} bytes; at least {MIN_SECRET_LEN} are needed (32 random bytes recommended)")
}

/// Parses a token lifetime: seconds (`90`) or a number with a unit
/// (`90s`, `30m`, `12h`, `7d`).
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration like 90s, 30m, 12h or 7d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    match n.checked_mul(scale) {
        Some(0) => Err("the lifetime must be more than 0".to_owned()),
        Some(secs) if secs <= 10 * 365 * 86_400 => Ok(Duration::from_secs(secs)),
        _ => Err(format!("{text:?} is more than 10 years")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "h", "1w", "-1h", "0", "99999999999999999999", "4000d"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_hidden() {
        let k = KeyConfig { id: "k1".into(), secret_env: None, secret: Some("hunter2hunter2hunter2".into()) };
        assert!(!format!("{k:?}").contains("hunter2"));
        let auth = AuthConfig { keys: vec![k], ..AuthConfig::default() };
        let text = toml::to_string(&auth).unwrap();
        assert!(!text.contains("hunter2") && text.contains("<redacted>"), "{text}");
    }

    #[test]
    fn keys_come_from_the_environment() {
        let auth = AuthConfig {
            mode: AuthMode::Token,
            keys: vec![KeyConfig { id: "k1".into(), secret_env: Some("K1".into()), secret: None }],
            ..AuthConfig::default()
        };
        auth.validate().unwrap();
        let e = auth.secrets(|_| None).unwrap_err().to_string();
        assert_eq!(e, "auth.keys[0].secret_env: the variable K1 is not set");
        let e = auth.secrets(|_| Some("short".into())).unwrap_err().to_string();
        assert!(e.starts_with("auth.keys[0].secret_env: the secret in K1: is 5 bytes"), "{e}");
        let secrets = auth.secrets(|k| (k == "K1").then(|| "0123456789abcdef".into())).unwrap();
        assert_eq!(secrets, [("k1".to_owned(), b"0123456789abcdef".to_vec())]);
        assert!(auth.authenticator(|_| Some("0123456789abcdef".into())).unwrap().is_some());
        assert!(AuthConfig::default().authenticator(|_| None).unwrap().is_none());
    }
}
