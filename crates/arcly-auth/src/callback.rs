//! [`CallbackAuthenticator`]: asks an HTTP endpoint.

use std::fmt;
use std::time::Duration;

use arcly_core::auth::{AuthRequest, Denial, StreamAuthenticator, codes};
use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A callback URL that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// Not an absolute `http://` URL.
    #[error("{url:?} is not an http:// URL: {why}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// The timeout is zero.
    #[error("the callback timeout must be more than 0")]
    ZeroTimeout,
}

/// Asks an operator's HTTP endpoint whether a publish or play may go ahead,
/// like nginx-rtmp's `on_publish` / `on_play` and SRS's `http_hooks`.
///
/// For each request it POSTs a JSON object:
///
/// ```json
/// {"action":"publish","app":"live","stream":"cam1","protocol":"rtmp",
///  "peer":"192.0.2.7:50122","query":"token=abc&x=1","token":"abc"}
/// ```
///
/// `stream` is the stream key; `peer`, `query` and `token` (the bearer
/// token, else the `token` query parameter) are `null` when absent. Any 2xx
/// answer allows; any other status denies (`callback_denied`); no answer
/// within the timeout denies (`callback_timeout`), and so does an endpoint
/// that cannot be reached (`callback_error`). The body of the answer is
/// not read. The peer sees a short reason; the details (the URL, the
/// error) are logged at warn level, for the operator only.
///
/// Plain `http://` only, HTTP/1.1, connections kept alive: the endpoint is
/// normally on the same host or network. To reach an `https://` endpoint,
/// put a TLS-originating proxy in between.
#[derive(Clone)]
pub struct CallbackAuthenticator {
    uri: Uri,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl CallbackAuthenticator {
    /// An authenticator POSTing to `url` (`http://host[:port]/path`) and
    /// waiting at most `timeout` for the answer (connection included).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, CallbackError> {
        let invalid = |why: &str| CallbackError::InvalidUrl { url: url.to_owned(), why: why.to_owned() };
        let uri: Uri = url.parse().map_err(|e: hyper::http::uri::InvalidUri| invalid(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(invalid("https needs a TLS proxy in front of the endpoint; give its http:// URL"));
            }
            _ => return Err(invalid("the scheme must be http")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        if timeout.is_zero() {
            return Err(CallbackError::ZeroTimeout);
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(connector);
        Ok(Self { uri, timeout, client })
    }

    /// The endpoint.
    pub fn url(&self) -> &Uri {
        &self.uri
    }

    /// The JSON body for `request`.
    fn body(request: &AuthRequest<'_>) -> Vec<u8> {
        let c = request.credentials;
        let body = serde_json::json!({
            "action": request.action.as_str(),
            "app": request.stream.app().as_str(),
            "stream": request.stream.key().as_str(),
            "protocol": c.protocol,
            "peer": c.peer.map(|p| p.to_string()),
            "query": c.query,
            "token": c.token(),
        });
        body.to_string().into_bytes()
    }
}

impl fmt::Debug for CallbackAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackAuthenticator").field("url", &self.uri).field("timeout", &self.timeout).finish()
    }
}

#[async_trait]
impl StreamAuthenticator for CallbackAuthenticator {
    async fn authorize(&self, request: AuthRequest<'_>) -> Result<(), Denial> {
        let http = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, HeaderValue::from_static(concat!("arcly/", env!("CARGO_PKG_VERSION"))))
            .body(Full::new(Bytes::from(Self::body(&request))))
            .map_err(|e| {
                tracing::warn!(url = %self.uri, error = %e, "auth callback request could not be built");
                Denial::new(codes::CALLBACK_ERROR, "authorization callback failed")
            })?;
        let stream = request.stream;
        match tokio::time::timeout(self.timeout, self.client.request(http)).await {
            Ok(Ok(response)) if response.status().is_success() => Ok(()),
            Ok(Ok(response)) => {
                let status = response.status();
                tracing::debug!(url = %self.uri, %stream, %status, "auth callback denied");
                Err(Denial::new(codes::CALLBACK_DENIED, format!("authorization callback answered {}", status.as_u16())))
            }
            Ok(Err(e)) => {
                let cause = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
                tracing::warn!(url = %self.uri, %stream, error = %e, cause, "auth callback failed");
                Err(Denial::new(codes::CALLBACK_ERROR, "authorization callback could not be reached"))
            }
            Err(_) => {
                tracing::warn!(url = %self.uri, %stream, timeout = ?self.timeout, "auth callback timed out");
                Err(Denial::new(
                    codes::CALLBACK_TIMEOUT,
                    format!("authorization callback did not answer within {} ms", self.timeout.as_millis()),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let t = Duration::from_secs(1);
        assert!(CallbackAuthenticator::new("http://127.0.0.1:9/auth", t).is_ok());
        for bad in ["https://example.com/auth", "ftp://h/x", "/relative", "http://", "not a url"] {
            assert!(CallbackAuthenticator::new(bad, t).is_err(), "{bad}");
        }
        let e = CallbackAuthenticator::new("https://example.com/auth", t).unwrap_err();
        assert!(e.to_string().contains("TLS proxy"), "{e}");
        assert_eq!(CallbackAuthenticator::new("http://h/", Duration::ZERO).unwrap_err(), CallbackError::ZeroTimeout);
    }
}
