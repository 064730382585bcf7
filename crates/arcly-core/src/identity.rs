//! Stream identities: application names, stream keys and the pair of them.
//!
//! Names arrive from peers (RTMP `connect` and `publish`, URL paths, SRT
//! stream ids) and end up in file paths, URLs, logs and metric labels, so
//! they are validated once, here, and are cheap to clone afterwards (an
//! `Arc<str>` each).

use std::fmt;
use std::sync::Arc;

/// The longest application name or stream key accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Why a name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{what} is empty")]
    Empty {
        /// Which name ("application name" or "stream key").
        what: &'static str,
    },
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("{what} is {len} bytes long, the limit is {MAX_NAME_LEN}")]
    TooLong {
        /// Which name.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The name contains a character that is not allowed.
    #[error("{what} contains {found:?} at byte {offset}, which is not allowed")]
    BadChar {
        /// Which name.
        what: &'static str,
        /// The offending character.
        found: char,
        /// Its byte offset.
        offset: usize,
    },
    /// The name is `.` or `..`, or contains `..`.
    #[error("{what} contains a `..` or is `.`")]
    DotPath {
        /// Which name.
        what: &'static str,
    },
    /// A combined `app/key` string had no `/`.
    #[error("stream id {0:?} is not of the form app/key")]
    NoSeparator(String),
}

fn validate(what: &'static str, s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty { what });
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { what, len: s.len() });
    }
    if s == "." || s.contains("..") {
        return Err(NameError::DotPath { what });
    }
    // Names become path segments, URL segments and metric labels: refuse
    // separators, control characters and characters with meaning in URLs
    // or shells, and accept everything else (including non-ASCII letters).
    if let Some((offset, found)) =
        s.char_indices().find(|&(_, c)| c.is_control() || matches!(c, '/' | '\\' | '?' | '#' | '%' | '"' | '\''))
    {
        return Err(NameError::BadChar { what, found, offset });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `s` and wraps it.
            pub fn new(s: &str) -> Result<Self, NameError> {
                validate($what, s)?;
                Ok(Self(Arc::from(s)))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// An application name: the first path segment of `rtmp://host/app/key`.
    ///
    /// ```
    /// use arcly_core::identity::AppName;
    /// assert_eq!(AppName::new("live").unwrap().as_str(), "live");
    /// assert!(AppName::new("../etc").is_err());
    /// ```
    AppName,
    "application name"
);

name_type!(
    /// A stream key: the name a publisher publishes under within an app.
    ///
    /// ```
    /// use arcly_core::identity::StreamKey;
    /// assert!(StreamKey::new("demo").is_ok());
    /// assert!(StreamKey::new("a/b").is_err());
    /// assert!(StreamKey::new("").is_err());
    /// ```
    StreamKey,
    "stream key"
);

/// A stream's identity: its application and key.
///
/// ```
/// use arcly_core::identity::StreamId;
/// let id: StreamId = "live/demo".parse().unwrap();
/// assert_eq!(id.app().as_str(), "live");
/// assert_eq!(id.key().as_str(), "demo");
/// assert_eq!(id.to_string(), "live/demo");
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    app: AppName,
    key: StreamKey,
}

impl StreamId {
    /// The pair of an application and a key.
    pub fn new(app: AppName, key: StreamKey) -> Self {
        Self { app, key }
    }

    /// Parses `app/key`; the key is everything after the first `/`, and is
    /// itself validated (so it may not contain another `/`).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let (app, key) =
            s.split_once('/').ok_or_else(|| NameError::NoSeparator(s.chars().take(MAX_NAME_LEN).collect()))?;
        Ok(Self::new(AppName::new(app)?, StreamKey::new(key)?))
    }

    /// The application.
    pub fn app(&self) -> &AppName {
        &self.app
    }

    /// The key.
    pub fn key(&self) -> &StreamKey {
        &self.key
    }
}

impl std::str::FromStr for StreamId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, NameError> {
        Self::parse(s)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.app, self.key)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refusals_name_the_reason() {
        let check = |s: &str, want: &str| {
            let err = StreamKey::new(s).unwrap_err().to_string();
            assert!(err.contains(want), "{s:?}: {err}");
        };
        check("", "empty");
        check(&"x".repeat(MAX_NAME_LEN + 1), "257 bytes long");
        check("..", "`..`");
        check(".", "`..`");
        check("a..b", "`..`");
        check("a/b", "'/' at byte 1");
        check("a\\b", "'\\\\'");
        check("a\nb", "'\\n'");
        check("a\u{7f}", "'\\u{7f}'");
        check("a?x=1", "'?'");
    }

    #[test]
    fn accepts_ordinary_names() {
        for s in ["live", "demo_1", "cam-3.main", "séance", "a.b", &"k".repeat(MAX_NAME_LEN)] {
            assert_eq!(StreamKey::new(s).unwrap().as_str(), s);
        }
    }

    #[test]
    fn stream_id_parse() {
        assert!(matches!(StreamId::parse("live"), Err(NameError::NoSeparator(_))));
        assert!(StreamId::parse("live/a/b").is_err());
        assert!(StreamId::parse("/key").is_err());
        let id = StreamId::parse("live/demo").unwrap();
        assert_eq!(format!("{id:?}"), "\"live/demo\"");
    }

    proptest! {
        /// Anything accepted is safe as a path segment and round-trips.
        #[test]
        fn accepted_names_are_safe(s in "\\PC{0,300}") {
            if let Ok(k) = StreamKey::new(&s) {
                prop_assert!(!k.as_str().contains('/'));
                prop_assert!(!k.as_str().contains(".."));
                prop_assert!(!k.as_str().chars().any(char::is_control));
                prop_assert!(k.as_str().len() <= MAX_NAME_LEN);
                prop_assert_eq!(k.as_str(), s.as_str());
            }
        }

        /// `StreamId` parse and display round-trip.
        #[test]
        fn stream_id_round_trip(app in "[a-z0-9_-]{1,20}", key in "[a-zA-Z0-9_.-]{1,40}") {
            prop_assume!(!key.contains("..") && key != ".");
            let id = StreamId::parse(&format!("{app}/{key}")).unwrap();
            prop_assert_eq!(StreamId::parse(&id.to_string()).unwrap(), id);
        }
    }
}
