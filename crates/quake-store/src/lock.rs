//! The sync lock: one sync at a time, across processes. Everything about it is here:
//! taking it ([`Store::try_sync_lock`]), holding it ([`ClusterLock`]), checking that it is
//! still held by the session that took it ([`ClusterLock::is_held`], [`LockCheck`]) and
//! releasing it ([`ClusterLock::release`], or dropping it).
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
use crate::pool::{Backend, DbConn, PooledConn, Store, sqlite_path};

/// Advisory lock key of the sync ("quaksync").
pub const SYNC_LOCK_KEY: i64 = 0x7175_616b_7379_6e63;
/// Advisory lock key of the live lane's leadership ("quaklive"): held by the one serve
/// process that polls the feed (or listens to the push service); the others stand by.
pub const LIVE_LOCK_KEY: i64 = 0x7175_616b_6c69_7665;
/// Transaction-scoped advisory lock key of page writes ("quakpage"): every page
/// transaction of a sync, a backfill or the live lane takes it first
/// (`page_write_lock`), so no two pages are ever applied at once, in any process.
pub const PAGE_LOCK_KEY: i64 = 0x7175_616b_7061_6765;

/// Set on a lock's dedicated connection: how soon the server drops the session (and the
/// lock) of a holder whose host or network died.
const KEEPALIVES: &str = "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; \
                          SET tcp_keepalives_count = 3";

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
    /// What checks, during the run, that the lock is still this session's.
    check: LockCheck,
}

/// The session holding the sync lock (PostgreSQL: its backend pid and start time).
#[derive(Debug, Clone, PartialEq, Eq, diesel::QueryableByName)]
pub struct LockHolder {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub pid: i32,
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub backend_start: String,
}

/// A cheap handle (clone it into the tasks of a run) that tells whether the lock taken is
/// still held by the session that took it. PostgreSQL drops an advisory lock with its
/// connection (a server restart, a network cut) and another process may then take it:
/// a run whose lock is lost must write nothing more. A file lock (SQLite) cannot be lost
/// while its file is open: its check always passes.
#[derive(Clone)]
pub struct LockCheck {
    /// The store and the session that took the lock (PostgreSQL), `None` on SQLite.
    taken: Option<(Store, i64, LockHolder)>,
}

impl LockCheck {
    /// `Ok(true)` while the session that took the lock still holds it.
    pub async fn is_held(&self) -> Result<bool> {
        let Some((store, key, expected)) = &self.taken else {
            return Ok(true);
        };
        Ok(store.lock_holder(*key).await?.as_ref() == Some(expected))
    }
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

    /// A handle that checks, from anywhere, that this lock is still held (see [`LockCheck`]).
    pub fn check(&self) -> LockCheck {
        self.check.clone()
    }

    /// `Ok(true)` while the session that took the lock still holds it.
    pub async fn is_held(&self) -> Result<bool> {
        self.check.is_held().await
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
/// for the sync lock, `DB.live.lock` for the live lane's leadership, `DB.KEY.lock` (hex)
/// for any other key.
pub fn sqlite_lock_path(db: &str, key: i64) -> PathBuf {
    if key == SYNC_LOCK_KEY {
        PathBuf::from(format!("{db}.sync.lock"))
    } else if key == LIVE_LOCK_KEY {
        PathBuf::from(format!("{db}.live.lock"))
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

    /// Tries to take the live lane's leadership lock ([`LIVE_LOCK_KEY`]) without waiting,
    /// exactly as [`Store::try_sync_lock`] takes the sync lock (a dedicated connection on
    /// PostgreSQL, the file `DB.live.lock` on SQLite). `None`: another process (or another
    /// store of this process) leads. The holder loses it when its connection drops; check
    /// with [`ClusterLock::is_held`] before each write.
    pub async fn try_live_lock(&self) -> Result<Option<ClusterLock>> {
        self.try_advisory_lock(LIVE_LOCK_KEY).await
    }

    /// Which session holds the live lane's leadership right now (PostgreSQL), or `None`.
    pub async fn live_lock_holder(&self) -> Result<Option<LockHolder>> {
        self.lock_holder(LIVE_LOCK_KEY).await
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
                    check: LockCheck { taken: None },
                }))
            }
            Backend::Postgres => {
                let mut conn = self.dedicated_pg().await?;
                // The server notices a dead peer (the holder's host gone, the network cut)
                // by TCP keepalive: idle 10 s, then 3 probes 5 s apart, so the session and
                // its lock go after about 25 s instead of the system default's hours.
                // Ignored on a Unix socket, whose session ends with the socket.
                diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, KEEPALIVES).await?;
                let got: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                    .bind::<diesel::sql_types::BigInt, _>(key)
                    .get_result(&mut conn)
                    .await?;
                if !got.locked {
                    return Ok(None);
                }
                // Who holds it now (this session): what a later check compares with.
                let holder = self.lock_holder(key).await?;
                if holder.is_none() {
                    log::warn!(
                        "took advisory lock {key} but pg_locks shows no holder for it; \
                         this run cannot notice losing the lock"
                    );
                }
                Ok(Some(ClusterLock {
                    pg: Some(conn),
                    _file: None,
                    key,
                    check: LockCheck {
                        taken: holder.map(|h| (self.clone(), key, h)),
                    },
                }))
            }
        }
    }

    /// Which session holds the sync lock right now (PostgreSQL): its backend pid and start
    /// time, or `None` when no one does; always `None` on SQLite.
    pub async fn sync_lock_holder(&self) -> Result<Option<LockHolder>> {
        self.lock_holder(SYNC_LOCK_KEY).await
    }

    /// Which session holds advisory lock `key` right now (PostgreSQL), or `None` when no
    /// one does; always `None` on SQLite.
    async fn lock_holder(&self, key: i64) -> Result<Option<LockHolder>> {
        let mut conn = self.conn().await?;
        let PooledConn::Pg(c) = &mut conn else {
            return Ok(None);
        };
        let rows: Vec<LockHolder> = diesel::sql_query(
            "SELECT l.pid, a.backend_start::text AS backend_start \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND l.classid::bigint = $1 AND l.objid::bigint = $2",
        )
        .bind::<diesel::sql_types::BigInt, _>((key >> 32) & 0xffff_ffff)
        .bind::<diesel::sql_types::BigInt, _>(key & 0xffff_ffff)
        .load(&mut **c)
        .await?;
        Ok(rows.into_iter().next())
    }
}

/// Takes the page-write lock for the rest of the transaction `conn` is in. Call it first
/// thing in a page's transaction.
///
/// - PostgreSQL: `pg_advisory_xact_lock(PAGE_LOCK_KEY)`, which waits for a page being
///   applied by any other session and is released by the commit or rollback.
/// - SQLite: a write that changes nothing (`DELETE FROM sync_state WHERE 0`), so that the
///   transaction (which diesel begins `DEFERRED`) takes the database's write lock before it
///   reads anything, as `BEGIN IMMEDIATE` would: another connection's writer (another
///   process's) is waited for up to the busy timeout. Without it, a page that read and then
///   writes after another writer committed would fail at once with `SQLITE_BUSY` (its read
///   snapshot is stale), which the busy timeout does not cover.
pub async fn page_write_lock(conn: &mut DbConn<'_>) -> diesel::QueryResult<()> {
    match conn {
        DbConn::Pg(c) => {
            diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                .bind::<diesel::sql_types::BigInt, _>(PAGE_LOCK_KEY)
                .execute(&mut **c)
                .await?;
        }
        DbConn::Sqlite(c) => {
            diesel::sql_query("DELETE FROM sync_state WHERE 0")
                .execute(&mut **c)
                .await?;
        }
    }
    Ok(())
}
