//! The `[database]` configuration section (SPEC section 4): `database.url` and
//! `database.pool_size`, with this crate's defaults ([`DEFAULT_DATABASE_URL`],
//! [`DEFAULT_POOL_SIZE`]). The URL is a secret: it prints redacted.

use std::ops::Deref;

use quake_core::config::{Bounded, SecretUrl};
use serde::{Deserialize, Serialize};

use crate::pool::{Backend, DEFAULT_DATABASE_URL, DEFAULT_POOL_SIZE, Store, StoreOptions};

/// The `[database]` section.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `postgres://…`, `postgresql://…` or `sqlite://PATH`.
    pub url: DatabaseUrl,
    /// Maximum pooled connections, at least 1.
    pub pool_size: Bounded<1, { u32::MAX as u64 }>,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        DatabaseSettings {
            url: DatabaseUrl(SecretUrl::from(DEFAULT_DATABASE_URL.to_owned())),
            pool_size: Bounded::clamped(DEFAULT_POOL_SIZE as u64),
        }
    }
}

impl DatabaseSettings {
    /// The pool options these settings give.
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            pool_size: self.pool_size.get_u32(),
            ..StoreOptions::default()
        }
    }

    /// [`Store::connect`] with these settings.
    pub async fn connect(&self) -> crate::Result<Store> {
        Store::connect(self.url.expose(), self.options()).await
    }
}

/// A URL [`Store::connect`] accepts (see [`Backend::of_url`]); a secret.
#[derive(Debug, Deserialize, Serialize)]
#[serde(try_from = "String")]
pub struct DatabaseUrl(SecretUrl);

impl Deref for DatabaseUrl {
    type Target = SecretUrl;

    fn deref(&self) -> &SecretUrl {
        &self.0
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;

    fn try_from(url: String) -> Result<Self, String> {
        match Backend::of_url(&url) {
            Some(_) => Ok(DatabaseUrl(url.into())),
            None => Err(format!(
                "{:?} is not a database URL (expected postgres://…, postgresql://… or sqlite://PATH)",
                quake_core::redact_url(&url)
            )),
        }
    }
}
