//! [`JwtAuthenticator`]: JSON Web Tokens (feature `jwt`).

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use arcly_core::auth::{AuthRequest, Denial, StreamAuthenticator, codes};
use async_trait::async_trait;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::grant::{Claims, Grant, unix};
use crate::token::{DEFAULT_SKEW, KeyError, MIN_SECRET_LEN, valid_key_id};

/// Verifies JSON Web Tokens signed with HMAC (`HS256`, `HS384`, `HS512`)
/// whose claims are those of a v1 token (see the crate docs): `act`, `app`,
/// `key` or `pfx`, `exp`, and optionally `nbf` and `ip`; other claims
/// (`iss`, `sub`, `iat`, ...) are ignored. The same checks run in the same
/// order, with the same denial codes; `exp` and `nbf` get the same skew.
///
/// The header's `kid` picks the key; a token without one is checked with
/// the only key, and refused (`unknown_key`) when there are several. Any
/// other algorithm, `none` included, is refused (`bad_signature`).
///
/// ```
/// use arcly_auth::JwtAuthenticator;
/// use arcly_core::auth::{codes, Action, AuthRequest, Credentials};
/// use jsonwebtoken::{encode, EncodingKey, Header};
///
/// let secret = b"a secret of 16 bytes or more";
/// let auth = JwtAuthenticator::new([("k1".to_owned(), secret.to_vec())])?;
/// let mut header = Header::default(); // HS256
/// header.kid = Some("k1".into());
/// let claims = serde_json::json!({"act": "play", "app": "live", "key": "cam1", "exp": 4_000_000_000u64});
/// let jwt = encode(&header, &claims, &EncodingKey::from_secret(secret))?;
///
/// let stream = "live/cam1".parse().unwrap();
/// let credentials = Credentials::default().with_bearer(jwt);
/// let request = AuthRequest { action: Action::Play, stream: &stream, credentials: &credentials };
/// auth.verify(&request)?;
/// let publish = AuthRequest { action: Action::Publish, ..request };
/// assert_eq!(auth.verify(&publish).unwrap_err().code, codes::WRONG_ACTION);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JwtAuthenticator {
    keys: Vec<(String, DecodingKey)>,
    skew: Duration,
    validation: Validation,
}

/// The claims of a JWT: those of a v1 token, and any others.
#[derive(Deserialize)]
struct JwtClaims {
    act: String,
    app: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    pfx: Option<String>,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    ip: Option<IpAddr>,
}

impl JwtAuthenticator {
    /// An authenticator with these `(kid, secret)` keys (secrets of at
    /// least [`MIN_SECRET_LEN`] bytes) and the [default skew](DEFAULT_SKEW).
    pub fn new(keys: impl IntoIterator<Item = (String, Vec<u8>)>) -> Result<Self, KeyError> {
        let mut list: Vec<(String, DecodingKey)> = Vec::new();
        for (id, secret) in keys {
            if !valid_key_id(&id) {
                return Err(KeyError::InvalidId(id));
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(KeyError::ShortSecret { id, len: secret.len() });
            }
            if list.iter().any(|(k, _)| *k == id) {
                return Err(KeyError::DuplicateId(id));
            }
            list.push((id, DecodingKey::from_secret(&secret)));
        }
        if list.is_empty() {
            return Err(KeyError::NoKeys);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
        // Time and scope are checked by `Grant::check`, like v1 tokens.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        Ok(Self { keys: list, skew: DEFAULT_SKEW, validation })
    }

    /// Allows this much clock difference on `nbf` and `exp`.
    pub fn with_skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// Verifies the token of `request`'s credentials now; returns what it
    /// grants.
    pub fn verify(&self, request: &AuthRequest<'_>) -> Result<Grant, Denial> {
        self.verify_at(request, SystemTime::now())
    }

    /// Like [`JwtAuthenticator::verify`], at `now`.
    pub fn verify_at(&self, request: &AuthRequest<'_>, now: SystemTime) -> Result<Grant, Denial> {
        let Some(token) = request.credentials.token() else {
            return Err(Denial::new(codes::MISSING, "no token"));
        };
        if token.len() > crate::MAX_TOKEN_LEN {
            return Err(Denial::new(codes::MALFORMED, "token too long"));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| denial(e.kind()))?;
        let key = match header.kid.as_deref() {
            Some(kid) => match self.keys.iter().find(|(id, _)| id == kid) {
                Some((_, key)) => key,
                None if valid_key_id(kid) => {
                    return Err(Denial::new(codes::UNKNOWN_KEY, format!("unknown key id {kid:?}")));
                }
                None => return Err(Denial::new(codes::UNKNOWN_KEY, "unknown key id")),
            },
            None => match self.keys.as_slice() {
                [(_, key)] => key,
                _ => return Err(Denial::new(codes::UNKNOWN_KEY, "the token has no kid and several keys are active")),
            },
        };
        // A signature of the wrong length (a token cut short) is refused as
        // such, before any comparison, as for v1 tokens.
        let expected_len = match header.alg {
            Algorithm::HS256 => Some(43),
            Algorithm::HS384 => Some(64),
            Algorithm::HS512 => Some(86),
            _ => None,
        };
        let signature_len = token.rsplit_once('.').map_or(0, |(_, s)| s.len());
        if let Some(want) = expected_len
            && signature_len != want
        {
            let why = if signature_len < want { "truncated signature" } else { "signature too long" };
            return Err(Denial::new(codes::BAD_SIGNATURE, format!("{why} ({signature_len} of {want} characters)")));
        }
        let data = jsonwebtoken::decode::<JwtClaims>(token, key, &self.validation).map_err(|e| denial(e.kind()))?;
        let c = data.claims;
        let claims = Claims { act: c.act, app: c.app, key: c.key, pfx: c.pfx, exp: c.exp, nbf: c.nbf, ip: c.ip };
        let grant = Grant::try_from(claims)?;
        grant.check(request, unix(now), self.skew.as_secs())?;
        Ok(grant)
    }
}

/// The denial for a jsonwebtoken error.
fn denial(kind: &ErrorKind) -> Denial {
    match kind {
        ErrorKind::InvalidSignature => Denial::new(codes::BAD_SIGNATURE, "signature does not match"),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm | ErrorKind::UnsupportedAlgorithm => {
            Denial::new(codes::BAD_SIGNATURE, "algorithm not allowed (HS256, HS384 and HS512 are)")
        }
        ErrorKind::ExpiredSignature => Denial::new(codes::EXPIRED, "token expired"),
        ErrorKind::ImmatureSignature => Denial::new(codes::NOT_YET_VALID, "token not valid yet"),
        _ => Denial::new(codes::MALFORMED, "not a valid JWT"),
    }
}

impl fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("keys", &self.keys.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>())
            .field("skew", &self.skew)
            .finish()
    }
}

#[async_trait]
impl StreamAuthenticator for JwtAuthenticator {
    async fn authorize(&self, request: AuthRequest<'_>) -> Result<(), Denial> {
        self.verify(&request).map(drop)
    }
}

#[cfg(test)]
mod tests;
