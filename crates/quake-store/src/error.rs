//! The store's error type.
//!
//! Layering: diesel's `QueryResult` inside persistence functions; [`StoreError`] at the
//! crate's edges (connecting, pooling, migrating, locking). Messages never contain the
//! database password: URLs are shown through [`quake_core::redact_url`].

/// Everything that can go wrong in quake-store.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL could not be understood.
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// A connection could not be made (network, auth, TLS, SQLite file).
    #[error("database connection failed: {0}")]
    Connect(String),
    /// No pooled connection became free within the pool's timeout.
    #[error("database pool exhausted: no connection within {0:?}")]
    PoolTimeout(std::time::Duration),
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] diesel::result::Error),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The TLS configuration could not be built (bad CA file, ...).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The SQLite lock file could not be opened or locked (not "held by another": that is
    /// `Ok(None)`).
    #[error("sync lock: {0}")]
    Lock(String),
    /// The operation is not available on this backend.
    #[error("{0} is not supported on the {1} backend")]
    Unsupported(&'static str, &'static str),
}

impl StoreError {
    /// True when the error says the database could not be reached (as opposed to a bad
    /// query): the HTTP surface answers 503 for these.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Connect(_) | StoreError::PoolTimeout(_) => true,
            StoreError::Query(diesel::result::Error::DatabaseError(kind, _)) => {
                matches!(kind, diesel::result::DatabaseErrorKind::ClosedConnection)
            }
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
