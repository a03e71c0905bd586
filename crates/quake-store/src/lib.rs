#![doc = include_str!("../README.md")]

mod backfill;
mod changes;
mod config;
mod decision;
mod error;
mod fast;
mod geo;
mod live;
mod lock;
mod migrate;
mod models;
mod pool;
mod query;
mod read;
mod record;
mod runs;
mod schema;
mod store;
#[cfg(feature = "test-util")]
pub mod testing;
mod tls;
mod types;
mod write;

pub use backfill::{BackfillKey, BackfillWindow, WindowDone};
pub use changes::{CHANGES_CHANNEL, Change, ChangeKind, Horizon, LISTEN_APPLICATION_NAME};
pub use config::{DatabaseSettings, DatabaseUrl};
pub use decision::{Decide, Decision, Outcome, StoredRows, Write};
pub use error::{Result, StoreError};
pub use geo::great_circle_deg;
pub use live::{LiveBatch, LiveLaneRow};
pub use lock::{
    ClusterLock, LIVE_LOCK_KEY, LockCheck, LockHolder, LockScope, PAGE_LOCK_KEY, SYNC_LOCK_KEY,
    sqlite_lock_path,
};
pub use migrate::MIGRATION_LOCK_KEY;
pub use models::{
    Earthquake, EventRecord, NewRejected, RejectedRecord, RunCounts, StoredVersion, SyncRun,
    SyncState,
};
pub use pool::{
    Backend, DEFAULT_DATABASE_URL, DEFAULT_POOL_SIZE, DbConn, PoolState, PooledConn, SqliteConn,
    Store, StoreOptions, sqlite_path,
};
pub use query::{
    After, EventQuery, IncludeDeleted, KEYSET_SKIP, MAX_LIMIT, MarkedPage, OrderBy, PageMarks,
    Position, Radius, ReviewStatus, is_plain_word,
};
pub use read::CatalogueCounts;
pub use tls::SslMode;
pub use types::Ts;
pub use write::{PageResult, PageWrite, WriteMode};
