//! Authorization for arcly-stream: [`StreamAuthenticator`]s for the engine.
//!
//! - [`TokenAuthenticator`]: signed, self-contained stream tokens
//!   (HMAC-SHA-256, RustCrypto `hmac` + `sha2`, constant-time comparison
//!   with `subtle`), with several active keys for rotation. No call-out,
//!   nothing stored: the token says what it allows.
//! - [`CallbackAuthenticator`] (feature `callback`, on by default): asks an
//!   operator's HTTP endpoint, like nginx-rtmp's `on_publish` or SRS's
//!   `http_hooks`.
//! - `JwtAuthenticator` (feature `jwt`): HS256/HS384/HS512 JSON Web Tokens
//!   carrying the same claims as a token.
//! - [`Protect`]: applies an authenticator to publishing, playing or both,
//!   and lets the other through.
//!
//! Every refusal is a [`Denial`](arcly_core::auth::Denial) with a stable code
//! from [`arcly_core::auth::codes`]; the engine logs it, audits it (the
//! `code` field of the audit line) and reports it to the observer.
//!
//! This crate depends on `arcly-core` only (of the arcly crates): protocols
//! hand it what the peer presented as [`Credentials`](arcly_core::auth::Credentials),
//! and [`Credentials::token`](arcly_core::auth::Credentials::token) is the
//! token: an `Authorization: Bearer` header's, else the `token` query
//! parameter's (`rtmp://host/live/cam1?token=...`,
//! `http://host/live/live/cam1.flv?token=...`).
//!
//! # Token format (v1)
//!
//! ```text
//! v1.<kid>.<payload>.<mac>
//! ```
//!
//! - `v1`: the format version.
//! - `<kid>`: the id of the key that signed it, 1 to 32 characters of
//!   `A-Z a-z 0-9 _ -`. Several keys may be active at once: add a new key,
//!   mint with it, and remove the old one once its tokens have expired.
//! - `<payload>`: base64url without padding (RFC 4648 §5) of a JSON object:
//!
//!   | Field | Meaning |
//!   |---|---|
//!   | `act` | `"publish"` or `"play"` |
//!   | `app` | the application, exactly |
//!   | `key` | the stream key, exactly; or instead |
//!   | `pfx` | a stream key prefix (`""`: any key of the application) |
//!   | `exp` | expiry, Unix seconds |
//!   | `nbf` | optional: not valid before, Unix seconds |
//!   | `ip` | optional: the only client address allowed (IPv4 or IPv6) |
//!
//!   Unknown fields are refused. The payload is signed, not encrypted: the
//!   bearer can read it.
//! - `<mac>`: base64url without padding of the 32-byte HMAC-SHA-256, under
//!   the key's secret, of the ASCII text before the last dot
//!   (`v1.<kid>.<payload>`): always 43 characters.
//!
//! Every character is in `A-Z a-z 0-9 - _ .`, so a token goes into a URL
//! query or a stream key as it is, without escaping.
//!
//! Verification runs in this order, and the first failure is the denial:
//! parse (`malformed`) → look up the key id (`unknown_key`) → check the MAC,
//! in constant time, over the full 32 bytes (`bad_signature`; a MAC of the
//! wrong length, such as a token cut short, is refused before any
//! comparison) → only then read the payload (`malformed`) → `nbf` and `exp`,
//! each with the clock skew allowed (default 30 s; `not_yet_valid`,
//! `expired`) → the action (`wrong_action`) → the application and key or
//! prefix (`wrong_stream`) → the client address (`wrong_ip`). No token at
//! all is `missing`.
//!
//! ```
//! use std::net::SocketAddr;
//! use std::time::Duration;
//!
//! use arcly_auth::{Grant, StreamScope, TokenAuthenticator, TokenKey};
//! use arcly_core::auth::{codes, Action, AuthRequest, Credentials};
//!
//! // Secrets come from configuration or the environment, never from code.
//! let keys = vec![
//!     TokenKey::new("k2", b"a new secret, 16 bytes or more")?,
//!     TokenKey::new("k1", b"the old secret, still accepted")?,
//! ];
//! let auth = TokenAuthenticator::new(keys)?;
//!
//! // Mint: allow publishing any key starting with "cam" to `live`, for an
//! // hour, from one address.
//! let grant = Grant::new(Action::Publish, "live", StreamScope::Prefix("cam".into()))
//!     .expires_in(Duration::from_secs(3600))
//!     .ip("203.0.113.7".parse().unwrap());
//! let token = auth.mint("k2", &grant)?;
//! assert!(token.starts_with("v1.k2."));
//! assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
//!
//! // Verify what a publisher presented: `rtmp://host/live/cam1?token=...`.
//! let stream = "live/cam1".parse().unwrap();
//! let peer: SocketAddr = "203.0.113.7:50000".parse().unwrap();
//! let mut credentials = Credentials::with_query("rtmp", format!("token={token}"));
//! credentials.peer = Some(peer);
//! let request = AuthRequest { action: Action::Publish, stream: &stream, credentials: &credentials };
//! assert_eq!(auth.verify(&request)?.app, "live");
//!
//! // The same token does not allow playing, nor another address.
//! let play = AuthRequest { action: Action::Play, ..request };
//! assert_eq!(auth.verify(&play).unwrap_err().code, codes::WRONG_ACTION);
//! let mut elsewhere = credentials.clone();
//! elsewhere.peer = Some("198.51.100.1:50000".parse().unwrap());
//! let elsewhere = AuthRequest { credentials: &elsewhere, ..request };
//! assert_eq!(auth.verify(&elsewhere).unwrap_err().code, codes::WRONG_IP);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The `arcly` server mints tokens with `arcly token` and reads keys from its
//! `[auth]` configuration.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "callback")]
mod callback;
mod grant;
#[cfg(feature = "jwt")]
mod jwt;
mod protect;
mod token;

#[cfg(feature = "callback")]
pub use callback::{CallbackAuthenticator, CallbackError};
pub use grant::{Grant, StreamScope};
#[cfg(feature = "jwt")]
pub use jwt::JwtAuthenticator;
pub use protect::Protect;
pub use token::{
    DEFAULT_SKEW, KeyError, MAX_KEY_ID_LEN, MAX_TOKEN_LEN, MIN_SECRET_LEN, TokenAuthenticator, TokenKey, VERSION,
    valid_key_id,
};

#[doc(no_inline)]
pub use arcly_core::auth::StreamAuthenticator;
