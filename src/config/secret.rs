//! A string that must never reach a log line, an error message or `/config`.

use serde::{Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// What every rendering of a [`Secret`] prints instead of the value.
pub const REDACTED: &str = "[REDACTED]";

/// An API key or credential. `Debug`, `Display` and `Serialize` print [`REDACTED`], so a key
/// cannot leak by accident; reading it takes an explicit [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<Arc<str>>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the one place that needs it (an upstream header, a comparison).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// A URL that may carry a password (`redis://:pw@host`): rendered with the credentials removed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(Secret);

impl SecretUrl {
    pub fn new(url: impl Into<Arc<str>>) -> Self {
        SecretUrl(Secret::new(url))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The URL with any `user:password@` replaced, safe to print.
    pub fn redacted(&self) -> String {
        let url = self.0.expose();
        match (url.find("://"), url.rfind('@')) {
            (Some(scheme_end), Some(at)) if at > scheme_end => {
                format!("{}://{}@{}", &url[..scheme_end], REDACTED, &url[at + 1..])
            }
            _ => url.to_string(),
        }
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rendering_is_redacted() {
        let s = Secret::new("sk-live-123");
        assert_eq!(format!("{s:?} {s}"), "[REDACTED] [REDACTED]");
        assert_eq!(
            serde_json::to_string(&s).unwrap_or_default(),
            "\"[REDACTED]\""
        );
        assert_eq!(s.expose(), "sk-live-123");
    }

    #[test]
    fn url_credentials_are_removed() {
        let u = SecretUrl::new("redis://user:hunter2@redis:6379/0");
        assert_eq!(u.redacted(), "redis://[REDACTED]@redis:6379/0");
        assert_eq!(
            SecretUrl::new("redis://redis:6379").redacted(),
            "redis://redis:6379"
        );
    }
}
