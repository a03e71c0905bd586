//! The cluster-wide sync lock.
//!
//! PostgreSQL: `pg_try_advisory_lock(key)` taken on a dedicated connection made outside
//! the pool (a session lock would survive a pooled connection's return to the pool), held
//! for the whole run. Dropping the [`ClusterLock`] closes that connection, which frees the
//! lock; so does PostgreSQL when the process dies. SQLite has no cluster scope: the lock
//! is a no-op there and the engine's in-process guard is the only one (SPEC section 2).

use diesel::QueryableByName;
use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::Result;
use crate::pool::{Backend, Store};

/// Advisory lock key of the sync ("quaksync").
pub const SYNC_LOCK_KEY: i64 = 0x7175_616b_7379_6e63;

/// Proof that this process holds the cluster-wide sync lock.
pub struct ClusterLock {
    conn: Option<AsyncPgConnection>,
    key: i64,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

impl ClusterLock {
    /// True when the lock spans processes (PostgreSQL), false for the SQLite no-op.
    pub fn is_cluster_wide(&self) -> bool {
        self.conn.is_some()
    }

    /// Releases the lock now (dropping does the same by closing the connection).
    pub async fn release(mut self) -> Result<()> {
        if let Some(mut conn) = self.conn.take() {
            diesel::sql_query("SELECT pg_advisory_unlock($1) AS locked")
                .bind::<diesel::sql_types::BigInt, _>(self.key)
                .get_result::<Locked>(&mut conn)
                .await?;
        }
        Ok(())
    }
}

impl Store {
    /// Tries to take the sync lock without waiting. `None` means another session holds it.
    pub async fn try_sync_lock(&self) -> Result<Option<ClusterLock>> {
        self.try_advisory_lock(SYNC_LOCK_KEY).await
    }

    /// Tries to take advisory lock `key` on a dedicated connection (PostgreSQL); on SQLite
    /// always succeeds with a lock that is not cluster-wide.
    pub async fn try_advisory_lock(&self, key: i64) -> Result<Option<ClusterLock>> {
        match self.backend() {
            Backend::Sqlite => Ok(Some(ClusterLock { conn: None, key })),
            Backend::Postgres => {
                let mut conn = self.dedicated_pg().await?;
                let got: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                    .bind::<diesel::sql_types::BigInt, _>(key)
                    .get_result(&mut conn)
                    .await?;
                Ok(got.locked.then_some(ClusterLock {
                    conn: Some(conn),
                    key,
                }))
            }
        }
    }
}
