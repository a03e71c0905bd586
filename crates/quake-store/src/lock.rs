//! The sync lock: one sync at a time, across processes.
//!
//! - PostgreSQL (scope `cluster`): `pg_try_advisory_lock(key)` taken on a dedicated
//!   connection made outside the pool (a session lock would survive a pooled connection's
//!   return to the pool), held for the whole run. Dropping the [`ClusterLock`] closes that
//!   connection, which frees the lock; so does PostgreSQL when the process dies.
//! - SQLite (scope `host`): an exclusive OS file lock (`flock` on Unix, `LockFileEx` on
//!   Windows, through the standard library's `File::try_lock`) on a file beside the
//!   database, `PATH.sync.lock` for `sqlite://PATH`. The lock belongs to the open file: it
//!   is freed when the [`ClusterLock`] is dropped and by the OS when the process dies, so a
//!   crash never leaves it behind. It spans the processes of one host; SQLite on a network
//!   filesystem is not supported (SPEC section 2). The file itself stays (deleting it
//!   would let two processes lock two different files of the same name); it holds the pid
//!   of the last holder, for an operator.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::PathBuf;

use diesel::QueryableByName;
use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::error::{Result, StoreError};
use crate::pool::{Backend, Store, sqlite_path};

/// Advisory lock key of the sync ("quaksync").
pub const SYNC_LOCK_KEY: i64 = 0x7175_616b_7379_6e63;

/// How far a lock reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockScope {
    /// Every process on every host using the database (PostgreSQL advisory lock).
    Cluster,
    /// Every process on this host (SQLite file lock).
    Host,
}

impl LockScope {
    /// `cluster` or `host`, as `/sync-status` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            LockScope::Cluster => "cluster",
            LockScope::Host => "host",
        }
    }
}

/// Proof that this process holds the sync lock (cluster-wide on PostgreSQL, host-wide on
/// SQLite). Dropping it frees the lock.
pub struct ClusterLock {
    /// PostgreSQL: the session holding the advisory lock.
    pg: Option<AsyncPgConnection>,
    /// SQLite: the open lock file (its lock goes with it).
    _file: Option<File>,
    key: i64,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

impl ClusterLock {
    /// True when the lock spans hosts (PostgreSQL), false for SQLite's file lock.
    pub fn is_cluster_wide(&self) -> bool {
        self.pg.is_some()
    }

    /// How far this lock reaches.
    pub fn scope(&self) -> LockScope {
        if self.is_cluster_wide() {
            LockScope::Cluster
        } else {
            LockScope::Host
        }
    }

    /// Releases the lock now (dropping does the same, by closing the connection or file).
    pub async fn release(mut self) -> Result<()> {
        if let Some(mut conn) = self.pg.take() {
            diesel::sql_query("SELECT pg_advisory_unlock($1) AS locked")
                .bind::<diesel::sql_types::BigInt, _>(self.key)
                .get_result::<Locked>(&mut conn)
                .await?;
        }
        Ok(())
    }
}

/// The lock file of advisory key `key` for the SQLite database at `db`: `DB.sync.lock`
/// for the sync lock, `DB.KEY.lock` (hex) for any other key.
pub fn sqlite_lock_path(db: &str, key: i64) -> PathBuf {
    if key == SYNC_LOCK_KEY {
        PathBuf::from(format!("{db}.sync.lock"))
    } else {
        PathBuf::from(format!("{db}.{key:016x}.lock"))
    }
}

/// Takes the exclusive lock on `path` without waiting; `None` when another open file
/// (this process or another) holds it.
fn try_lock_file(path: &PathBuf) -> Result<Option<File>> {
    let failed =
        |e: std::io::Error| StoreError::Lock(format!("the lock file {}: {e}", path.display()));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(None),
        Err(TryLockError::Error(e)) => return Err(failed(e)),
    }
    // Who holds it, for an operator looking at the file; the lock does not depend on it.
    let _ = file
        .set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    Ok(Some(file))
}

impl Store {
    /// Tries to take the sync lock without waiting. `None` means another session (or, on
    /// SQLite, another process or another store of this process) holds it.
    pub async fn try_sync_lock(&self) -> Result<Option<ClusterLock>> {
        self.try_advisory_lock(SYNC_LOCK_KEY).await
    }

    /// Tries to take advisory lock `key` without waiting: on a dedicated connection
    /// (PostgreSQL), or as the file lock [`sqlite_lock_path`] (SQLite).
    pub async fn try_advisory_lock(&self, key: i64) -> Result<Option<ClusterLock>> {
        match self.backend() {
            Backend::Sqlite => {
                let db = sqlite_path(self.url()).unwrap_or_default();
                let path = sqlite_lock_path(db, key);
                // open + flock(LOCK_NB) never wait; a blocking task keeps the runtime's
                // threads free of file-system calls all the same.
                let file = tokio::task::spawn_blocking(move || try_lock_file(&path))
                    .await
                    .map_err(|e| StoreError::Lock(format!("the lock task failed: {e}")))??;
                Ok(file.map(|f| ClusterLock {
                    pg: None,
                    _file: Some(f),
                    key,
                }))
            }
            Backend::Postgres => {
                let mut conn = self.dedicated_pg().await?;
                let got: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                    .bind::<diesel::sql_types::BigInt, _>(key)
                    .get_result(&mut conn)
                    .await?;
                Ok(got.locked.then_some(ClusterLock {
                    pg: Some(conn),
                    _file: None,
                    key,
                }))
            }
        }
    }
}
