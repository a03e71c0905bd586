//! Value types for the configuration sections the crates own (`quake_store::config`,
//! `sync_engine::config`, `status_http::config`).
//!
//! Each checks itself when deserialized, so a bad value fails where the loader knows its
//! key and where it came from, and the message says what is wrong. Secrets ([`SecretUrl`],
//! [`Secret`]) are `secrecy` secrets: `Debug` and `Serialize` show them redacted.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

use crate::{REDACTED, redact_url};

/// An integer in `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Bounded<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    /// `v` clamped into `MIN..=MAX` (for defaults).
    pub const fn clamped(v: u64) -> Self {
        Bounded(if v < MIN {
            MIN
        } else if v > MAX {
            MAX
        } else {
            v
        })
    }

    /// The value.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The value as a `u32` (saturating).
    pub fn get_u32(self) -> u32 {
        u32::try_from(self.0).unwrap_or(u32::MAX)
    }
}

impl<const MIN: u64, const MAX: u64> TryFrom<u64> for Bounded<MIN, MAX> {
    type Error = String;

    fn try_from(v: u64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&v) {
            Ok(Bounded(v))
        } else if MAX < u64::from(u32::MAX) {
            Err(format!("{v} is outside {MIN}..={MAX}"))
        } else if v < MIN {
            Err(format!("{v} is below the minimum {MIN}"))
        } else {
            Err(format!("{v} is above the maximum {MAX}"))
        }
    }
}

impl<const MIN: u64, const MAX: u64> From<Bounded<MIN, MAX>> for u64 {
    fn from(v: Bounded<MIN, MAX>) -> u64 {
        v.0
    }
}

/// A finite number.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Finite(pub f64);

impl TryFrom<f64> for Finite {
    type Error = String;

    fn try_from(v: f64) -> Result<Self, String> {
        if v.is_finite() {
            Ok(Finite(v))
        } else {
            Err(format!("{v} is not a finite number"))
        }
    }
}

impl From<Finite> for f64 {
    fn from(v: Finite) -> f64 {
        v.0
    }
}

/// A URL that may carry credentials: shown only through [`redact_url`].
#[derive(Clone, Deserialize)]
#[serde(from = "String")]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    /// The real URL, for connecting. Never log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with its password and secret parameters hidden.
    pub fn redacted(&self) -> String {
        redact_url(self.expose())
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        SecretUrl(url.into())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SecretUrl").field(&self.redacted()).finish()
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// A secret that is never empty (an admin token): shown only as [`REDACTED`].
#[derive(Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Secret(SecretString);

impl Secret {
    /// The secret itself. Never log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl TryFrom<String> for Secret {
    type Error = &'static str;

    fn try_from(secret: String) -> Result<Self, Self::Error> {
        if secret.is_empty() {
            return Err("must not be empty (leave it unset to disable)");
        }
        Ok(Secret(secret.into()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Secret").field(&REDACTED).finish()
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_values_name_their_limits() {
        assert_eq!(
            Bounded::<1, 20000>::try_from(20001),
            Err("20001 is outside 1..=20000".into())
        );
        assert_eq!(
            Bounded::<1, { u64::MAX }>::try_from(0),
            Err("0 is below the minimum 1".into())
        );
        assert_eq!(Bounded::<1, 10>::clamped(0).get(), 1);
        assert_eq!(Bounded::<1, 10>::clamped(11).get(), 10);
        assert!(Finite::try_from(f64::NAN).is_err());
    }

    #[test]
    fn secrets_never_show() {
        let url = SecretUrl::from("postgres://u:pw-s3cret@h/d?password=q-s3cret".to_owned());
        let token = Secret::try_from("t0k-s3cret".to_owned());
        assert_eq!(url.expose(), "postgres://u:pw-s3cret@h/d?password=q-s3cret");
        assert_eq!(token.as_ref().map(Secret::expose), Ok("t0k-s3cret"));
        for shown in [format!("{url:?}"), format!("{token:?}")] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
        assert!(Secret::try_from(String::new()).is_err());
    }
}
