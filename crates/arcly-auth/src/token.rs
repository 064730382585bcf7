//! v1 stream tokens: [`TokenKey`] signs, [`TokenAuthenticator`] verifies.
//! The format is in the crate docs.

use std::fmt;
use std::time::{Duration, SystemTime};

use arcly_core::auth::{AuthRequest, Denial, StreamAuthenticator, codes};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::grant::{Claims, Grant, unix};

/// The format version, the token's first part.
pub const VERSION: &str = "v1";
/// The longest token accepted, in bytes; longer ones are `malformed`
/// before any other work.
pub const MAX_TOKEN_LEN: usize = 2048;
/// The shortest secret a [`TokenKey`] accepts, in bytes. 32 random bytes
/// are recommended (`openssl rand -base64 32`).
pub const MIN_SECRET_LEN: usize = 16;
/// The longest key id.
pub const MAX_KEY_ID_LEN: usize = 32;
/// The clock skew allowed by default on `nbf` and `exp`.
pub const DEFAULT_SKEW: Duration = Duration::from_secs(30);

/// Bytes of an HMAC-SHA-256 tag.
const MAC_LEN: usize = 32;
/// Characters of a tag in base64url without padding.
const MAC_TEXT_LEN: usize = 43;

/// A key id is 1 to [`MAX_KEY_ID_LEN`] characters of `A-Z a-z 0-9 _ -`.
pub fn valid_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A key that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The id has characters other than `A-Z a-z 0-9 _ -`, or a bad length.
    #[error("key id {0:?} must be 1 to 32 characters of A-Z a-z 0-9 _ -")]
    InvalidId(String),
    /// The secret is too short.
    #[error("the secret of key {id:?} is {len} bytes; at least 16 are needed (32 random bytes recommended)")]
    ShortSecret {
        /// The key id.
        id: String,
        /// The secret's length.
        len: usize,
    },
    /// Two keys have the same id.
    #[error("key id {0:?} is given twice")]
    DuplicateId(String),
    /// No key at all.
    #[error("at least one key is needed")]
    NoKeys,
    /// Minting with a key id that is not configured.
    #[error("no key with id {0:?}")]
    UnknownId(String),
}

/// HMAC-SHA-256 under one secret: the crate's only MAC computation, used
/// to sign and to verify.
#[derive(Clone)]
pub(crate) struct MacKey(Hmac<Sha256>);

impl MacKey {
    /// A key from a secret of any length (HMAC hashes long ones).
    pub(crate) fn new(secret: &[u8]) -> Self {
        // HMAC takes keys of every length: this never fails.
        Self(<Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length"))
    }

    /// The 32-byte tag of `data`.
    pub(crate) fn tag(&self, data: &[u8]) -> [u8; MAC_LEN] {
        let mut mac = self.0.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }
}

/// One signing key: an id and a secret. `Debug` shows the id only.
#[derive(Clone)]
pub struct TokenKey {
    id: String,
    mac: MacKey,
}

impl TokenKey {
    /// A key; the id must be [valid](valid_key_id) and the secret at least
    /// [`MIN_SECRET_LEN`] bytes.
    pub fn new(id: impl Into<String>, secret: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        let id = id.into();
        if !valid_key_id(&id) {
            return Err(KeyError::InvalidId(id));
        }
        let secret = secret.as_ref();
        if secret.len() < MIN_SECRET_LEN {
            return Err(KeyError::ShortSecret { id, len: secret.len() });
        }
        Ok(Self { id, mac: MacKey::new(secret) })
    }

    /// The key id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A token for `grant`, signed with this key.
    pub fn mint(&self, grant: &Grant) -> String {
        // A struct of strings, numbers and an address always serializes.
        let json = serde_json::to_vec(&Claims::from(grant)).expect("claims serialize to JSON");
        let mut token = format!("{VERSION}.{}.{}", self.id, URL_SAFE_NO_PAD.encode(json));
        let tag = self.mac.tag(token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(tag));
        token
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Verifies v1 tokens against a set of active keys (see the crate docs for
/// the format and the order of the checks).
#[derive(Clone, Debug)]
pub struct TokenAuthenticator {
    keys: Vec<TokenKey>,
    skew: Duration,
}

impl TokenAuthenticator {
    /// An authenticator accepting tokens signed by any of `keys`, with the
    /// [default skew](DEFAULT_SKEW).
    pub fn new(keys: impl IntoIterator<Item = TokenKey>) -> Result<Self, KeyError> {
        let keys: Vec<TokenKey> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|o| o.id == k.id) {
                return Err(KeyError::DuplicateId(k.id.clone()));
            }
        }
        Ok(Self { keys, skew: DEFAULT_SKEW })
    }

    /// Allows this much clock difference on `nbf` and `exp`.
    pub fn with_skew(mut self, skew: Duration) -> Self {
        self.skew = skew;
        self
    }

    /// The key with `id`.
    pub fn key(&self, id: &str) -> Option<&TokenKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The active keys, in the order given.
    pub fn keys(&self) -> &[TokenKey] {
        &self.keys
    }

    /// A token for `grant`, signed with the key `key_id`.
    pub fn mint(&self, key_id: &str, grant: &Grant) -> Result<String, KeyError> {
        self.key(key_id).map(|k| k.mint(grant)).ok_or_else(|| KeyError::UnknownId(key_id.to_owned()))
    }

    /// Verifies the token of `request`'s credentials
    /// ([`Credentials::token`](arcly_core::auth::Credentials::token)) now;
    /// returns what it grants.
    pub fn verify(&self, request: &AuthRequest<'_>) -> Result<Grant, Denial> {
        self.verify_at(request, SystemTime::now())
    }

    /// Like [`TokenAuthenticator::verify`], at `now`.
    pub fn verify_at(&self, request: &AuthRequest<'_>, now: SystemTime) -> Result<Grant, Denial> {
        let Some(token) = request.credentials.token() else {
            return Err(Denial::new(codes::MISSING, "no token"));
        };
        let grant = self.decode(token)?;
        grant.check(request, unix(now), self.skew.as_secs())?;
        Ok(grant)
    }

    /// Parses a token and checks its signature; the grant is trusted only
    /// once this returns it.
    pub fn decode(&self, token: &str) -> Result<Grant, Denial> {
        let malformed = |why: &str| Denial::new(codes::MALFORMED, why.to_owned());
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed("token too long"));
        }
        let Some((signed, mac_text)) = token.rsplit_once('.') else {
            return Err(malformed("not a token"));
        };
        let mut parts = signed.split('.');
        let (Some(version), Some(kid), Some(payload), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("a token has 4 parts separated by dots"));
        };
        if version != VERSION {
            return Err(malformed("unsupported token version"));
        }
        if !valid_key_id(kid) {
            return Err(malformed("invalid key id"));
        }
        // The id is validated: fine to show.
        let key = self.key(kid).ok_or_else(|| Denial::new(codes::UNKNOWN_KEY, format!("unknown key id {kid:?}")))?;
        check_mac(&key.mac.tag(signed.as_bytes()), mac_text)?;
        // Signed by us from here on.
        let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed("payload is not base64url"))?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|e| malformed(&format!("payload: {e}")))?;
        Grant::try_from(claims)
    }
}

/// Compares the tag given as text with the expected one, in constant time
/// over all 32 bytes; a tag of another length is refused before any
/// comparison.
fn check_mac(expected: &[u8; MAC_LEN], mac_text: &str) -> Result<(), Denial> {
    let bad = |why: String| Err(Denial::new(codes::BAD_SIGNATURE, why));
    if mac_text.len() < MAC_TEXT_LEN {
        return bad(format!("truncated MAC ({} of {MAC_TEXT_LEN} characters)", mac_text.len()));
    }
    if mac_text.len() > MAC_TEXT_LEN {
        return bad(format!("MAC too long ({} characters, not {MAC_TEXT_LEN})", mac_text.len()));
    }
    // Strict decoding: no padding, no stray trailing bits, so a tag has one
    // spelling only.
    let Ok(given) = URL_SAFE_NO_PAD.decode(mac_text) else {
        return bad("MAC is not base64url".to_owned());
    };
    if given.len() != MAC_LEN {
        return bad("MAC has the wrong length".to_owned());
    }
    if bool::from(expected.as_slice().ct_eq(&given)) {
        Ok(())
    } else {
        bad("MAC does not match (forged, altered, or signed with another secret)".to_owned())
    }
}

#[async_trait]
impl StreamAuthenticator for TokenAuthenticator {
    async fn authorize(&self, request: AuthRequest<'_>) -> Result<(), Denial> {
        self.verify(&request).map(drop)
    }
}

#[cfg(test)]
mod tests;
