//! Embedded migrations, one folder per backend (`migrations/postgres`, `migrations/sqlite`).
//!
//! Run from async code through `AsyncConnectionWrapper` inside `spawn_blocking` (the
//! async harness panics on a current-thread runtime). On PostgreSQL the run holds
//! `pg_advisory_lock(MIGRATION_LOCK_KEY)` on its own connection, so processes starting
//! together apply them one after the other and the second finds nothing to do.

use diesel::Connection;
use diesel::connection::SimpleConnection;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{Result, StoreError};
use crate::pool::{Backend, Store, sqlite_path};

pub const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Advisory lock key serialising migrations (distinct from the sync lock).
pub const MIGRATION_LOCK_KEY: i64 = 0x7175_616b_6d69_6772; // "quakmigr"

impl Store {
    /// Applies pending migrations; returns how many were applied.
    pub async fn migrate(&self) -> Result<usize> {
        match self.backend() {
            Backend::Postgres => {
                let conn = self.dedicated_pg().await?;
                let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> = conn.into();
                tokio::task::spawn_blocking(move || -> Result<usize> {
                    wrapper
                        .batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                        .map_err(StoreError::Query)?;
                    let applied = wrapper
                        .run_pending_migrations(PG_MIGRATIONS)
                        .map(|v| v.len())
                        .map_err(|e| StoreError::Migration(e.to_string()));
                    let unlocked = wrapper
                        .batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                        .map_err(StoreError::Query);
                    let applied = applied?;
                    unlocked?;
                    Ok(applied)
                })
                .await
                .map_err(|e| StoreError::Migration(format!("migration task failed: {e}")))?
            }
            Backend::Sqlite => {
                let path = sqlite_path(self.url()).unwrap_or_default().to_string();
                tokio::task::spawn_blocking(move || -> Result<usize> {
                    let mut conn = diesel::SqliteConnection::establish(&path)
                        .map_err(|e| StoreError::Connect(e.to_string()))?;
                    conn.batch_execute("PRAGMA busy_timeout = 10000;")
                        .map_err(StoreError::Query)?;
                    let applied = conn
                        .run_pending_migrations(SQLITE_MIGRATIONS)
                        .map(|v| v.len())
                        .map_err(|e| StoreError::Migration(e.to_string()))?;
                    // The file's upkeep (issue 17): fresh planner statistics at every start,
                    // bounded (`analysis_limit` rows sampled per index: milliseconds at 1M
                    // rows). WAL is set on every connection (pool.rs) and checkpointed by
                    // SQLite's default autocheckpoint, so the -wal file stays small. No
                    // VACUUM: syncs never remove rows (deleted and merged events stay), so
                    // the file has no free pages to give back.
                    conn.batch_execute("PRAGMA analysis_limit = 1000; PRAGMA optimize = 0x10002;")
                        .map_err(StoreError::Query)?;
                    Ok(applied)
                })
                .await
                .map_err(|e| StoreError::Migration(format!("migration task failed: {e}")))?
            }
        }
    }

    /// True when every embedded migration has been applied (for `/health/ready`).
    pub async fn migrations_applied(&self) -> Result<bool> {
        match self.backend() {
            Backend::Postgres => {
                let conn = self.dedicated_pg().await?;
                let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> = conn.into();
                tokio::task::spawn_blocking(move || {
                    wrapper
                        .has_pending_migration(PG_MIGRATIONS)
                        .map(|pending| !pending)
                        .map_err(|e| StoreError::Migration(e.to_string()))
                })
                .await
                .map_err(|e| StoreError::Migration(e.to_string()))?
            }
            Backend::Sqlite => {
                let path = sqlite_path(self.url()).unwrap_or_default().to_string();
                tokio::task::spawn_blocking(move || {
                    let mut conn = diesel::SqliteConnection::establish(&path)
                        .map_err(|e| StoreError::Connect(e.to_string()))?;
                    conn.has_pending_migration(SQLITE_MIGRATIONS)
                        .map(|pending| !pending)
                        .map_err(|e| StoreError::Migration(e.to_string()))
                })
                .await
                .map_err(|e| StoreError::Migration(e.to_string()))?
            }
        }
    }
}
