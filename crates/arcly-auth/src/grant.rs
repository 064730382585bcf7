//! What a token allows ([`Grant`]) and the checks of a grant against a
//! request, shared by every token format.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arcly_core::auth::{Action, AuthRequest, Denial, codes};
use serde::{Deserialize, Serialize};

/// The streams a grant covers, within its application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamScope {
    /// Exactly this stream key.
    Key(String),
    /// Every stream key starting with this prefix (`""`: every key).
    Prefix(String),
}

impl StreamScope {
    /// True if `key` is in scope.
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Self::Key(k) => k == key,
            Self::Prefix(p) => key.starts_with(p.as_str()),
        }
    }
}

impl fmt::Display for StreamScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(k) => f.write_str(k),
            Self::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

/// What a token allows: one action on an application's stream (or streams
/// with a key prefix), until an expiry, optionally from one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// Publish or play.
    pub action: Action,
    /// The application.
    pub app: String,
    /// The stream key or key prefix.
    pub scope: StreamScope,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    /// Not valid before, Unix seconds.
    pub not_before: Option<u64>,
    /// The only client address allowed.
    pub ip: Option<IpAddr>,
}

impl Grant {
    /// A grant that expires in one hour from now; see [`Grant::expires_in`]
    /// and [`Grant::expires_at`].
    pub fn new(action: Action, app: impl Into<String>, scope: StreamScope) -> Self {
        Self { action, app: app.into(), scope, expires_at: 0, not_before: None, ip: None }
            .expires_in(Duration::from_secs(3600))
    }

    /// Expires `ttl` from now.
    pub fn expires_in(self, ttl: Duration) -> Self {
        self.expires_at(unix_now().saturating_add(ttl.as_secs()))
    }

    /// Expires at `unix_secs`.
    pub fn expires_at(mut self, unix_secs: u64) -> Self {
        self.expires_at = unix_secs;
        self
    }

    /// Not valid before `unix_secs`.
    pub fn not_before(mut self, unix_secs: u64) -> Self {
        self.not_before = Some(unix_secs);
        self
    }

    /// Only for a client at `ip`.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Checks the grant against a request at `now` (Unix seconds), allowing
    /// `skew` seconds of clock difference on `nbf` and `exp`: validity
    /// window, then action, then stream, then address.
    pub fn check(&self, request: &AuthRequest<'_>, now: u64, skew: u64) -> Result<(), Denial> {
        if let Some(nbf) = self.not_before
            && now.saturating_add(skew) < nbf
        {
            return Err(Denial::new(codes::NOT_YET_VALID, format!("token is valid only in {} s", nbf - now)));
        }
        if now > self.expires_at.saturating_add(skew) {
            return Err(Denial::new(codes::EXPIRED, format!("token expired {} s ago", now - self.expires_at)));
        }
        if self.action != request.action {
            return Err(Denial::new(
                codes::WRONG_ACTION,
                format!("token allows {}, not {}", self.action.as_str(), request.action.as_str()),
            ));
        }
        let stream = request.stream;
        if self.app != stream.app().as_str() || !self.scope.matches(stream.key().as_str()) {
            return Err(Denial::new(
                codes::WRONG_STREAM,
                format!("token is for {}/{}, not {stream}", self.app, self.scope),
            ));
        }
        if let Some(ip) = self.ip {
            let peer = request.credentials.peer.map(|p| canonical(p.ip()));
            if peer != Some(canonical(ip)) {
                let from = peer.map_or_else(|| "an unknown address".to_owned(), |p| p.to_string());
                return Err(Denial::new(codes::WRONG_IP, format!("token is bound to another address than {from}")));
            }
        }
        Ok(())
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack
/// listener reports) as the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Seconds since the Unix epoch (0 before it).
pub(crate) fn unix_now() -> u64 {
    unix(SystemTime::now())
}

pub(crate) fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The signed fields of a v1 token (the JSON payload); see the crate docs.
/// JWTs carry the same claims (and may carry others).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Claims {
    pub(crate) act: String,
    pub(crate) app: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pfx: Option<String>,
    pub(crate) exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ip: Option<IpAddr>,
}

impl From<&Grant> for Claims {
    fn from(g: &Grant) -> Self {
        let (key, pfx) = match &g.scope {
            StreamScope::Key(k) => (Some(k.clone()), None),
            StreamScope::Prefix(p) => (None, Some(p.clone())),
        };
        Self {
            act: g.action.as_str().to_owned(),
            app: g.app.clone(),
            key,
            pfx,
            exp: g.expires_at,
            nbf: g.not_before,
            ip: g.ip,
        }
    }
}

impl TryFrom<Claims> for Grant {
    type Error = Denial;

    fn try_from(c: Claims) -> Result<Self, Denial> {
        let action = match c.act.as_str() {
            "publish" => Action::Publish,
            "play" => Action::Play,
            _ => return Err(Denial::new(codes::MALFORMED, "act must be \"publish\" or \"play\"")),
        };
        let scope = match (c.key, c.pfx) {
            (Some(k), None) => StreamScope::Key(k),
            (None, Some(p)) => StreamScope::Prefix(p),
            _ => return Err(Denial::new(codes::MALFORMED, "exactly one of key and pfx must be given")),
        };
        Ok(Self { action, app: c.app, scope, expires_at: c.exp, not_before: c.nbf, ip: c.ip })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_compare_as_ipv4() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(canonical("::ffff:192.0.2.1".parse().unwrap()), v4);
        assert_eq!(canonical(v4), v4);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn scopes() {
        assert!(StreamScope::Prefix(String::new()).matches("anything"));
        assert!(StreamScope::Prefix("cam".into()).matches("cam1"));
        assert!(!StreamScope::Prefix("cam".into()).matches("ca"));
        assert!(!StreamScope::Key("cam".into()).matches("cam1"));
        assert_eq!(StreamScope::Prefix("cam".into()).to_string(), "cam*");
    }
}
