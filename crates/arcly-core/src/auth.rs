//! Publish and play authorization.
//!
//! Every protocol hands the engine what the peer presented (the URL query,
//! a token, its address) as [`Credentials`]; the engine asks the configured
//! [`StreamAuthenticator`] before a stream is published or played. The
//! check is async so an authenticator may call out (an HTTP hook, a
//! database); it runs once per session, never per frame.
//!
//! A refusal is a [`Denial`]: a stable, machine-readable [`Denial::code`]
//! (one of [`codes`], or an authenticator's own) and a human-readable
//! message. The engine logs it, reports it to the
//! [`Observer`](crate::observe::Observer), writes it to the audit trail
//! ([`AuditEvent::code`](crate::audit::AuditEvent::code) and
//! [`AuditEvent::reason`](crate::audit::AuditEvent::reason)) and gives it
//! to the protocol, which may show it to the peer.

use std::fmt;
use std::net::SocketAddr;

use async_trait::async_trait;

use crate::identity::StreamId;

/// What a session wants to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Publish a stream.
    Publish,
    /// Play (subscribe to) a stream.
    Play,
}

impl Action {
    /// `"publish"` or `"play"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Play => "play",
        }
    }
}

/// What the peer presented.
///
/// `Debug` does not show the bearer token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The raw query string from the URL or stream name (`token=...&exp=...`),
    /// without the leading `?`.
    pub query: Option<String>,
    /// The peer's address.
    pub peer: Option<SocketAddr>,
    /// The protocol the request came in on (`"rtmp"`, `"http"`).
    pub protocol: &'static str,
    /// A token from an `Authorization: Bearer` header (HTTP), without the
    /// scheme; see [`Credentials::bearer_from_header`].
    pub bearer: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("query", &self.query)
            .field("peer", &self.peer)
            .field("protocol", &self.protocol)
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Credentials {
    /// Credentials with a query string.
    pub fn with_query(protocol: &'static str, query: impl Into<String>) -> Self {
        Self { query: Some(query.into()), protocol, ..Self::default() }
    }

    /// Sets the bearer token.
    pub fn with_bearer(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    /// The token of an `Authorization` header value `Bearer <token>` (the
    /// scheme in any case, RFC 7235); `None` for another scheme or an
    /// empty token.
    ///
    /// ```
    /// use arcly_core::auth::Credentials;
    /// assert_eq!(Credentials::bearer_from_header("Bearer abc.def"), Some("abc.def"));
    /// assert_eq!(Credentials::bearer_from_header("bearer  abc"), Some("abc"));
    /// assert_eq!(Credentials::bearer_from_header("Basic dXNlcg=="), None);
    /// assert_eq!(Credentials::bearer_from_header("Bearer "), None);
    /// ```
    pub fn bearer_from_header(value: &str) -> Option<&str> {
        let (scheme, token) = value.trim().split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    }

    /// The token the peer presented: the bearer token if there is one, else
    /// the `token` query parameter (undecoded); `None` if neither is there
    /// or it is empty.
    ///
    /// ```
    /// use arcly_core::auth::Credentials;
    /// let c = Credentials::with_query("http", "token=from-query");
    /// assert_eq!(c.token(), Some("from-query"));
    /// assert_eq!(c.with_bearer("from-header").token(), Some("from-header"));
    /// assert_eq!(Credentials::with_query("rtmp", "token=").token(), None);
    /// ```
    pub fn token(&self) -> Option<&str> {
        self.bearer.as_deref().filter(|t| !t.is_empty()).or_else(|| self.query_param("token").filter(|t| !t.is_empty()))
    }

    /// The first value of `name` in the query string, undecoded.
    ///
    /// ```
    /// use arcly_core::auth::Credentials;
    /// let c = Credentials::with_query("rtmp", "token=abc&exp=10");
    /// assert_eq!(c.query_param("exp"), Some("10"));
    /// assert_eq!(c.query_param("nope"), None);
    /// ```
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query
            .as_deref()?
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// One authorization question.
#[derive(Clone, Copy, Debug)]
pub struct AuthRequest<'a> {
    /// Publish or play.
    pub action: Action,
    /// The stream.
    pub stream: &'a StreamId,
    /// What the peer presented.
    pub credentials: &'a Credentials,
}

/// The stable denial codes: short snake_case categories for logs, the audit
/// trail and metrics labels. Authenticators may use codes of their own.
pub mod codes {
    /// No credentials were presented.
    pub const MISSING: &str = "missing";
    /// The credentials could not be parsed.
    pub const MALFORMED: &str = "malformed";
    /// The token names a key this server does not have.
    pub const UNKNOWN_KEY: &str = "unknown_key";
    /// The token's signature is wrong (forged, truncated, another secret).
    pub const BAD_SIGNATURE: &str = "bad_signature";
    /// The token has expired.
    pub const EXPIRED: &str = "expired";
    /// The token is not valid yet.
    pub const NOT_YET_VALID: &str = "not_yet_valid";
    /// The token is for another action (play, not publish).
    pub const WRONG_ACTION: &str = "wrong_action";
    /// The token is for another application, stream or key prefix.
    pub const WRONG_STREAM: &str = "wrong_stream";
    /// The token is bound to another client address.
    pub const WRONG_IP: &str = "wrong_ip";
    /// An HTTP callback answered with a status other than 2xx.
    pub const CALLBACK_DENIED: &str = "callback_denied";
    /// An HTTP callback did not answer in time.
    pub const CALLBACK_TIMEOUT: &str = "callback_timeout";
    /// An HTTP callback could not be reached.
    pub const CALLBACK_ERROR: &str = "callback_error";
    /// Refused for a reason given only as text (`From<String>`).
    pub const DENIED: &str = "denied";
}

/// Why an authenticator refused: a machine-readable code and a message.
///
/// The message is logged, audited and may be shown to the peer: it must not
/// hold secrets.
///
/// ```
/// use arcly_core::auth::{Denial, codes};
/// let d = Denial::new(codes::EXPIRED, "token expired 40 s ago");
/// assert_eq!(d.to_string(), "expired: token expired 40 s ago");
/// let plain: Denial = "playback disabled".into();
/// assert_eq!((plain.code, plain.message.as_str()), (codes::DENIED, "playback disabled"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// A stable snake_case category ([`codes`]).
    pub code: &'static str,
    /// What happened, for people.
    pub message: String,
}

impl Denial {
    /// A denial with `code` and `message`.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() { f.write_str(self.code) } else { write!(f, "{}: {}", self.code, self.message) }
    }
}

impl std::error::Error for Denial {}

impl From<String> for Denial {
    fn from(message: String) -> Self {
        Self::new(codes::DENIED, message)
    }
}

impl From<&str> for Denial {
    fn from(message: &str) -> Self {
        Self::new(codes::DENIED, message)
    }
}

/// Decides whether a session may publish or play.
#[async_trait]
pub trait StreamAuthenticator: Send + Sync + 'static {
    /// `Ok(())` to allow; `Err(denial)` to refuse. The denial is logged and
    /// audited, and may be shown to the peer: do not put secrets in it.
    /// A plain `String` converts (`Err(reason.into())`, code
    /// [`codes::DENIED`]).
    async fn authorize(&self, request: AuthRequest<'_>) -> Result<(), Denial>;
}

/// Allows everything. The default, for development and closed networks.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

#[async_trait]
impl StreamAuthenticator for AllowAll {
    async fn authorize(&self, _request: AuthRequest<'_>) -> Result<(), Denial> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params() {
        let c = Credentials::with_query("rtmp", "a=1&flag&b=x=y");
        assert_eq!(c.query_param("a"), Some("1"));
        assert_eq!(c.query_param("flag"), Some(""));
        assert_eq!(c.query_param("b"), Some("x=y"));
        assert_eq!(Credentials::default().query_param("a"), None);
    }

    #[test]
    fn bearer_is_preferred_and_never_printed() {
        let c = Credentials::with_query("http", "token=q").with_bearer("secret-bearer");
        assert_eq!(c.token(), Some("secret-bearer"));
        assert!(!format!("{c:?}").contains("secret-bearer"));
        assert_eq!(Credentials::with_query("http", "a=1").token(), None);
        assert_eq!(Credentials::bearer_from_header("Token abc"), None);
        assert_eq!(Credentials::bearer_from_header("Bearer"), None);
    }
}
