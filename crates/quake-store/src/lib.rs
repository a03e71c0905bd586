#![doc = include_str!("../README.md")]

pub mod backfill;
pub mod changes;
mod config;
mod error;
mod fast;
mod geo;
pub mod live;
pub mod lock;
mod migrate;
mod models;
mod pool;
pub mod query;
pub mod read;
mod record;
pub mod runs;
pub mod schema;
#[cfg(feature = "test-util")]
pub mod testing;
mod tls;
mod types;
pub mod write;

pub use changes::{Change, ChangeKind, Horizon};
pub use config::{DatabaseSettings, DatabaseUrl};
pub use diesel::result as diesel_error;
pub use error::{Result, StoreError};
pub use lock::{ClusterLock, LockCheck, LockHolder, LockScope};
pub use migrate::{MIGRATION_LOCK_KEY, PG_MIGRATIONS, SQLITE_MIGRATIONS};
pub use models::{
    Earthquake, EventRecord, NewRejected, RejectedRecord, RunCounts, StoredVersion, SyncRun,
    SyncState,
};
pub use pool::{
    Backend, DEFAULT_DATABASE_URL, DEFAULT_POOL_SIZE, DbConn, PoolState, PooledConn, SqliteConn,
    Store, StoreOptions, sqlite_path,
};
pub use read::CatalogueCounts;
pub use tls::SslMode;
pub use types::Ts;
pub use write::{Outcome, PageResult, WriteMode};
