//! The `[http]` configuration section (SPEC section 4): `http.bind` (default
//! [`DEFAULT_BIND`], loopback only) and `http.admin_token` (a secret; unset disables
//! `POST /sync`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use quake_core::config::Secret;
use serde::{Deserialize, Serialize};

/// Where the surface listens unless configured: loopback only.
pub const DEFAULT_BIND: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));

/// The `[http]` section.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub bind: SocketAddr,
    /// The bearer token `POST /sync` requires; unset: the manual trigger is disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<Secret>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            bind: DEFAULT_BIND,
            admin_token: None,
        }
    }
}

impl HttpSettings {
    /// The admin token, for [`crate::AppState::with_admin_token`]. Never log it.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_ref().map(Secret::expose)
    }
}
