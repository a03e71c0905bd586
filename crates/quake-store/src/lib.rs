#![doc = include_str!("../README.md")]

pub mod backfill;
pub mod error;
mod fast;
mod geo;
pub mod lock;
pub mod migrate;
pub mod models;
pub mod pool;
pub mod query;
pub mod read;
mod record;
pub mod runs;
pub mod schema;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod tls;
pub mod types;
pub mod write;

pub use diesel::result as diesel_error;
pub use error::{Result, StoreError};
pub use lock::{ClusterLock, LockScope};
pub use models::{
    Earthquake, EventRecord, NewRejected, RejectedRecord, RunCounts, StoredVersion, SyncRun,
    SyncState,
};
pub use pool::{
    Backend, DEFAULT_DATABASE_URL, DEFAULT_POOL_SIZE, DbConn, PoolState, PooledConn, SqliteConn,
    Store, StoreOptions,
};
pub use read::CatalogueCounts;
pub use types::Ts;
pub use write::{Outcome, PageResult, WriteMode};
