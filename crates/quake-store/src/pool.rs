//! Pools and connections: [`Store`], [`DbConn`] and the backend dispatch.
//!
//! Reads: the database URL (`postgres://…` or `sqlite://PATH`) and [`StoreOptions`].
//! PostgreSQL goes through diesel-async's `AsyncPgConnection` on a tokio-postgres client that
//! this module connects itself (so TLS works, see [`crate::tls`]); SQLite through
//! `SyncConnectionWrapper<SqliteConnection>` with WAL, `synchronous=NORMAL` and a busy
//! timeout. Both sit in bb8 pools. Every connection gets `application_name`,
//! `statement_timeout`, UTC, `jit = off` and no parallel workers (PostgreSQL) in its setup
//! hook.

use std::time::Duration;

use diesel::sql_types::Double;
use diesel::{ConnectionError, ConnectionResult, SqliteConnection};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::sync_connection_wrapper::SyncConnectionWrapper;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures_util::FutureExt;

use quake_core::redact_url;

use crate::error::{Result, StoreError};
use crate::tls::{SslMode, client_config, parse_pg_url};

/// The SQLite connection type used through diesel-async.
pub type SqliteConn = SyncConnectionWrapper<SqliteConnection>;
pub type PgPool = bb8::Pool<AsyncDieselConnectionManager<AsyncPgConnection>>;
pub type SqlitePool = bb8::Pool<AsyncDieselConnectionManager<SqliteConn>>;

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    /// The backend a database URL names (`postgres://…`, `postgresql://…` or
    /// `sqlite://PATH`), if it names one; what [`Store::connect`] accepts.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            sqlite_path(url)
                .filter(|p| !p.is_empty() && *p != ":memory:")
                .map(|_| Backend::Sqlite)
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// The database when none is configured: a SQLite file in the working directory (SPEC 2).
pub const DEFAULT_DATABASE_URL: &str = "sqlite://quakesync.db";
/// The default of [`StoreOptions::pool_size`] (SPEC: 8).
pub const DEFAULT_POOL_SIZE: u32 = 8;

/// Pool and connection settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Maximum pooled connections (config `database.pool_size`).
    pub pool_size: u32,
    /// How long a caller waits for a pooled connection before [`StoreError::PoolTimeout`].
    pub connection_timeout: Duration,
    /// PostgreSQL `statement_timeout` set on every connection.
    pub statement_timeout: Duration,
    /// PostgreSQL `application_name`.
    pub application_name: String,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            pool_size: DEFAULT_POOL_SIZE,
            connection_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(60),
            application_name: "quakesync".into(),
        }
    }
}

/// The SQLite file named by `sqlite://PATH` (`sqlite:///abs/path` for an absolute path).
pub fn sqlite_path(url: &str) -> Option<&str> {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
}

enum Pools {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// A handle on the database: a bb8 pool for PostgreSQL or SQLite. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: std::sync::Arc<Inner>,
}

pub(crate) struct Inner {
    pools: Pools,
    url: String,
    options: StoreOptions,
    /// The [`Store::changes`] subscription, started on first use.
    changes: std::sync::OnceLock<tokio::sync::watch::Sender<i64>>,
}

/// A connection checked out of the pool. It goes back to the pool when dropped, whatever
/// path the caller takes: the seed's "connections always closed", made structural.
#[allow(
    clippy::large_enum_variant,
    reason = "short-lived, checked out per operation; boxing would add an allocation per checkout"
)]
pub enum PooledConn {
    Pg(bb8::PooledConnection<'static, AsyncDieselConnectionManager<AsyncPgConnection>>),
    Sqlite(bb8::PooledConnection<'static, AsyncDieselConnectionManager<SqliteConn>>),
}

impl PooledConn {
    /// Borrow as a [`DbConn`], the type persistence functions take.
    pub fn db(&mut self) -> DbConn<'_> {
        match self {
            PooledConn::Pg(c) => DbConn::Pg(c),
            PooledConn::Sqlite(c) => DbConn::Sqlite(c),
        }
    }
}

/// A borrowed connection of either backend. Persistence functions take `&mut DbConn`, so
/// they compose inside one transaction; inside a transaction closure, wrap the closure's
/// connection again with `DbConn::from`.
pub enum DbConn<'a> {
    Pg(&'a mut AsyncPgConnection),
    Sqlite(&'a mut SqliteConn),
}

impl<'a> From<&'a mut AsyncPgConnection> for DbConn<'a> {
    fn from(c: &'a mut AsyncPgConnection) -> Self {
        DbConn::Pg(c)
    }
}

impl<'a> From<&'a mut SqliteConn> for DbConn<'a> {
    fn from(c: &'a mut SqliteConn) -> Self {
        DbConn::Sqlite(c)
    }
}

impl DbConn<'_> {
    pub fn backend(&self) -> Backend {
        match self {
            DbConn::Pg(_) => Backend::Postgres,
            DbConn::Sqlite(_) => Backend::Sqlite,
        }
    }
}

/// Runs `$body` with `$c` bound to the concrete connection of either backend. The body is
/// written once and type-checked for each backend.
#[macro_export]
#[doc(hidden)]
macro_rules! dispatch {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::DbConn::Pg(inner) => {
                let $c: &mut ::diesel_async::AsyncPgConnection = &mut **inner;
                $body
            }
            $crate::DbConn::Sqlite(inner) => {
                let $c: &mut $crate::SqliteConn = &mut **inner;
                $body
            }
        }
    };
}

/// Pool occupancy, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    pub connections: u32,
    pub idle: u32,
    pub max: u32,
}

impl Store {
    /// Connects a pool to `url` (`postgres://…`, `postgresql://…` or `sqlite://PATH`).
    /// The pool is lazy beyond its first connection, which is made here so a bad URL or an
    /// unreachable server is reported at once.
    pub async fn connect(url: &str, options: StoreOptions) -> Result<Store> {
        let pools = if Backend::of_url(url) == Some(Backend::Postgres) {
            let (pg_url, mode) = parse_pg_url(url)?;
            let setup_opts = options.clone();
            let mut config = ManagerConfig::<AsyncPgConnection>::default();
            config.custom_setup = Box::new(move |u| {
                let mode = mode.clone();
                let opts = setup_opts.clone();
                let u = u.to_string();
                async move { connect_pg_inner(&u, &mode, &opts).await }.boxed()
            });
            // Fast recycling: a broken connection shows on first use and is dropped then;
            // bb8 tests connections it hands out only when `test_on_check_out` says so.
            config.recycling_method = RecyclingMethod::Verified;
            let manager = AsyncDieselConnectionManager::new_with_config(pg_url, config);
            let pool = bb8::Pool::builder()
                .max_size(options.pool_size)
                .connection_timeout(options.connection_timeout)
                .build(manager)
                .await
                .map_err(|e| StoreError::Connect(e.to_string()))?;
            Pools::Pg(pool)
        } else if let Some(path) = sqlite_path(url) {
            if path.is_empty() || path == ":memory:" {
                return Err(StoreError::InvalidUrl(
                    "SQLite needs a file path (sqlite://PATH); an in-memory database cannot be pooled".into(),
                ));
            }
            let mut config = ManagerConfig::<SqliteConn>::default();
            config.custom_setup = Box::new(|u| {
                let u = u.to_string();
                async move { connect_sqlite(&u).await }.boxed()
            });
            let manager = AsyncDieselConnectionManager::new_with_config(path, config);
            let pool = bb8::Pool::builder()
                .max_size(options.pool_size)
                .connection_timeout(options.connection_timeout)
                .build(manager)
                .await
                .map_err(|e| StoreError::Connect(e.to_string()))?;
            Pools::Sqlite(pool)
        } else {
            return Err(StoreError::InvalidUrl(format!(
                "{}: expected postgres://… or sqlite://PATH",
                redact_url(url)
            )));
        };
        Ok(Store {
            inner: std::sync::Arc::new(Inner {
                pools,
                url: url.to_string(),
                options,
                changes: std::sync::OnceLock::new(),
            }),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.inner.pools {
            Pools::Pg(_) => Backend::Postgres,
            Pools::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// The URL with its password hidden.
    pub fn url_redacted(&self) -> String {
        redact_url(&self.inner.url)
    }

    pub(crate) fn inner_changes(&self) -> &std::sync::OnceLock<tokio::sync::watch::Sender<i64>> {
        &self.inner.changes
    }

    /// A handle that does not keep the pool open (background tasks hold this).
    pub(crate) fn downgrade(&self) -> std::sync::Weak<Inner> {
        std::sync::Arc::downgrade(&self.inner)
    }

    pub(crate) fn upgrade(weak: &std::sync::Weak<Inner>) -> Option<Store> {
        weak.upgrade().map(|inner| Store { inner })
    }

    pub(crate) fn url(&self) -> &str {
        &self.inner.url
    }

    /// Checks a connection out of the pool, waiting at most `connection_timeout`.
    pub async fn conn(&self) -> Result<PooledConn> {
        let timeout = self.inner.options.connection_timeout;
        match &self.inner.pools {
            Pools::Pg(p) => p
                .get_owned()
                .await
                .map(PooledConn::Pg)
                .map_err(|e| map_run_error(e, timeout)),
            Pools::Sqlite(p) => p
                .get_owned()
                .await
                .map(PooledConn::Sqlite)
                .map_err(|e| map_run_error(e, timeout)),
        }
    }

    /// Pool occupancy right now.
    pub fn pool_state(&self) -> PoolState {
        let (state, max) = match &self.inner.pools {
            Pools::Pg(p) => (p.state(), self.inner.options.pool_size),
            Pools::Sqlite(p) => (p.state(), self.inner.options.pool_size),
        };
        PoolState {
            connections: state.connections,
            idle: state.idle_connections,
            max,
        }
    }

    /// One round trip: `SELECT 1`.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        let mut db = conn.db();
        dispatch!(&mut db, c => c.batch_execute("SELECT 1").await)?;
        Ok(())
    }

    /// A connection outside the pool (PostgreSQL), for session-scoped state such as the
    /// run-long advisory lock.
    pub(crate) async fn dedicated_pg(&self) -> Result<AsyncPgConnection> {
        let (pg_url, mode) = parse_pg_url(&self.inner.url)?;
        connect_pg_inner(&pg_url, &mode, &self.inner.options)
            .await
            .map_err(|e| StoreError::Connect(e.to_string()))
    }
}

fn map_run_error(
    e: bb8::RunError<diesel_async::pooled_connection::PoolError>,
    timeout: Duration,
) -> StoreError {
    match e {
        bb8::RunError::TimedOut => StoreError::PoolTimeout(timeout),
        bb8::RunError::User(inner) => StoreError::Connect(inner.to_string()),
    }
}

/// An error with its causes: tokio-postgres hides "connection refused" in `source()`.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !msg.contains(&s) {
            msg.push_str(": ");
            msg.push_str(&s);
        }
        cur = c.source();
    }
    msg
}

async fn connect_pg_inner(
    url: &str,
    mode: &SslMode,
    opts: &StoreOptions,
) -> ConnectionResult<AsyncPgConnection> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| ConnectionError::BadConnection(e.to_string()))?;
    let mut conn = if *mode == SslMode::Disable {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| ConnectionError::BadConnection(with_causes(&e)))?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await?
    } else {
        let tls = client_config(mode).map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
        let (client, connection) = config
            .connect(tls)
            .await
            .map_err(|e| ConnectionError::BadConnection(with_causes(&e)))?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await?
    };
    let app = opts.application_name.replace('\'', "");
    // No JIT and no parallel workers for this service's statements: its reads are pages of
    // at most 20,000 rows found through an index, and on a small server the fixed costs of
    // both outweigh what they save (issue 17, 5M rows, a walk of the time index for 1000
    // events of a box: 46-83 ms with a Gather Merge of two workers and 15 ms of JIT
    // compilation, 22 ms without either, in EXPLAIN ANALYZE).
    let setup = format!(
        "SET application_name = '{app}'; SET statement_timeout = {}; SET TIME ZONE 'UTC'; \
         SET jit = off; SET max_parallel_workers_per_gather = 0;",
        opts.statement_timeout.as_millis()
    );
    conn.batch_execute(&setup)
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}

async fn connect_sqlite(path: &str) -> ConnectionResult<SqliteConn> {
    let mut conn = SqliteConn::establish(path).await?;
    conn.batch_execute(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
    )
    .await
    .map_err(ConnectionError::CouldntSetupConfiguration)?;
    // The read API's radius search: SQLite as bundled has no trigonometric functions.
    conn.spawn_blocking(|c| {
        c.register_sql_function::<(Double, Double, Double, Double), Double, _, _, _>(
            crate::geo::SQLITE_DISTANCE_FN,
            true,
            |(lat1, lon1, lat2, lon2): (f64, f64, f64, f64)| {
                crate::geo::great_circle_deg(lat1, lon1, lat2, lon2)
            },
        )
    })
    .await
    .map_err(ConnectionError::CouldntSetupConfiguration)?;
    Ok(conn)
}
