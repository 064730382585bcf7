//! Publish and play authorization.
//!
//! Every protocol hands the engine what the peer presented (the URL query,
//! a token, its address) as [`Credentials`]; the engine asks the configured
//! [`StreamAuthenticator`] before a stream is published or played. The
//! check is async so an authenticator may call out (an HTTP hook, a
//! database); it runs once per session, never per frame.

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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The raw query string from the URL or stream name (`token=...&exp=...`),
    /// without the leading `?`.
    pub query: Option<String>,
    /// The peer's address.
    pub peer: Option<SocketAddr>,
    /// The protocol the request came in on (`"rtmp"`, `"http"`).
    pub protocol: &'static str,
}

impl Credentials {
    /// Credentials with a query string.
    pub fn with_query(protocol: &'static str, query: impl Into<String>) -> Self {
        Self { query: Some(query.into()), peer: None, protocol }
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

/// Decides whether a session may publish or play.
#[async_trait]
pub trait StreamAuthenticator: Send + Sync + 'static {
    /// `Ok(())` to allow; `Err(reason)` to refuse. The reason is logged and
    /// audited, and may be shown to the peer: do not put secrets in it.
    async fn authorize(&self, request: AuthRequest<'_>) -> Result<(), String>;
}

/// Allows everything. The default, for development and closed networks.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

#[async_trait]
impl StreamAuthenticator for AllowAll {
    async fn authorize(&self, _request: AuthRequest<'_>) -> Result<(), String> {
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
}
