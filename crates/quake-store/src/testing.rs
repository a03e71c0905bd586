//! Test harness (feature `test-util`): a fresh database per test.
//!
//! Reads `TEST_DATABASE_URL` (an admin URL of a PostgreSQL server, e.g.
//! `postgres://postgres@127.0.0.1:5432/test`) and `CI`. [`TestDb::postgres`] creates a
//! database `qst_<pid>_<n>` and drops it when the `TestDb` is dropped; databases left by
//! crashed test processes (their pid is gone) are swept first. Without PostgreSQL it
//! returns `None` after saying plainly that the test is skipped, except under `CI=true`,
//! where a missing database is a failure (a panic). [`TestDb::sqlite`] makes a temp file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU32, Ordering};

use crate::{EventRecord, Store, StoreOptions, Ts};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

/// A record with only what the revision policy reads set (`id`, `ids` as `,a,b,`, `updated`
/// in ms, the content hash, the status); origin time = `updated`, every optional field
/// `None`, at 0°N 0°E, source `usgs`.
pub fn bare_record(id: &str, ids: &str, updated_ms: i64, hash: &str, status: &str) -> EventRecord {
    let t = Ts(chrono::DateTime::from_timestamp_millis(updated_ms).unwrap_or_default());
    EventRecord {
        id: id.into(),
        ids: ids.into(),
        time: t,
        updated: t,
        magnitude: None,
        mag_type: None,
        place: None,
        title: None,
        longitude: 0.0,
        latitude: 0.0,
        depth_km: None,
        status: status.into(),
        event_type: None,
        net: None,
        code: None,
        tsunami: None,
        sig: None,
        felt: None,
        alert: None,
        url: None,
        source: "usgs".into(),
        content_hash: hash.into(),
        cdi: None,
        mmi: None,
        gap: None,
        sources: None,
        properties: None,
    }
}

/// `CI` is set to something true: a missing prerequisite is then a failure, not a skip.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// For a prerequisite other than PostgreSQL (a tool, a port): says plainly that `test` is
/// skipped and why, or panics under CI.
pub fn skip_or_fail(test: &str, why: &str) {
    if under_ci() {
        panic!("{test}: required under CI but {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
}

/// id → `updated` (ms) of every stored event, merged and deleted ones included: what tests
/// compare with an upstream's catalogue.
pub async fn updated_by_id(store: &Store) -> std::collections::BTreeMap<String, i64> {
    store
        .all_events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.id.clone(), e.updated.0.timestamp_millis()))
        .collect()
}

/// The rows `q` selects read with a plain `OFFSET` (no keyset, no marks): the reference
/// the read paths are tested against.
pub async fn query_events_plain_offset(
    store: &Store,
    q: &crate::EventQuery,
) -> crate::Result<Vec<crate::Earthquake>> {
    crate::store::on_conn!(store, c => crate::query::query_events_plain_offset(c, q))
}

/// The rows `q` selects with a time-ordered box or radius read by walking its cells on
/// PostgreSQL whenever it touches few enough, whatever the plan would choose (on SQLite, as
/// [`Store::query_events`]).
pub async fn query_events_by_cells(
    store: &Store,
    q: &crate::EventQuery,
) -> crate::Result<Vec<crate::Earthquake>> {
    crate::store::on_conn!(store, c => crate::query::query_events_by_cells(c, q))
}

/// The catalogue's counts by a full scan: the reference the maintained counters
/// ([`Store::catalogue_counts`]) are tested against.
pub async fn catalogue_counts_scan(store: &Store) -> crate::Result<crate::CatalogueCounts> {
    crate::store::on_conn!(store, c => crate::read::catalogue_counts_scan(c))
}

/// Applies `page` as [`Store::apply_page`] does, inside a transaction that is then rolled
/// back: what the page would have done, with nothing of it kept (to test that whatever the
/// writes maintain, such as the catalogue counters, follows a rollback).
pub async fn apply_page_rolled_back(
    store: &Store,
    page: crate::PageWrite<'_>,
    decide: crate::Decide,
) -> crate::Result<crate::PageResult> {
    use diesel_async::AsyncConnection;
    let mut conn = store.conn().await?;
    let mut db = conn.db();
    let mut seen = None;
    let rolled: diesel::QueryResult<()> = crate::dispatch!(&mut db, c => c
        .transaction(async |tx| {
            // Inside this transaction, the page's own is a savepoint.
            seen = Some(crate::write::apply(&mut crate::DbConn::from(tx), &page, decide).await?);
            Err(diesel::result::Error::RollbackTransaction)
        })
        .await);
    match (rolled, seen) {
        (Err(diesel::result::Error::RollbackTransaction), Some(result)) => Ok(result),
        (Err(e), _) => Err(e.into()),
        (Ok(()), _) => Err(diesel::result::Error::RollbackTransaction.into()),
    }
}

/// Sets `last_changed_at` of every row to `t` (to age a catalogue in a test).
pub async fn set_last_changed(store: &Store, t: Ts) -> crate::Result<()> {
    use crate::schema::earthquakes;
    use diesel::ExpressionMethods;
    use diesel_async::RunQueryDsl;
    let mut conn = store.conn().await?;
    let mut db = conn.db();
    crate::dispatch!(&mut db, c => diesel::update(earthquakes::table)
        .set(earthquakes::last_changed_at.eq(t))
        .execute(c)
        .await)?;
    Ok(())
}

/// A setting of a pooled PostgreSQL connection (`current_setting`); `None` on SQLite.
pub async fn pg_session_setting(store: &Store, name: &str) -> crate::Result<Option<String>> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Setting {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    let mut conn = store.conn().await?;
    match conn.db() {
        crate::pool::DbConn::Pg(c) => {
            let s: Setting = diesel::sql_query("SELECT current_setting($1) AS value")
                .bind::<diesel::sql_types::Text, _>(name)
                .get_result(c)
                .await?;
            Ok(Some(s.value))
        }
        crate::pool::DbConn::Sqlite(_) => Ok(None),
    }
}

/// Skips (returns `None`) or, under CI, fails.
fn unavailable(test: &str, why: &str) -> Option<TestDb> {
    if under_ci() {
        panic!("{test}: PostgreSQL is required under CI but {why}");
    }
    eprintln!("SKIPPED {test} on PostgreSQL: {why} (set TEST_DATABASE_URL to run it)");
    None
}

fn with_db_name(admin: &str, name: &str) -> String {
    match url::Url::parse(admin) {
        Ok(mut u) => {
            u.set_path(&format!("/{name}"));
            u.to_string()
        }
        Err(_) => admin.to_string(),
    }
}

async fn admin_client(admin: &str) -> Result<tokio_postgres::Client, String> {
    let (client, conn) = tokio_postgres::connect(admin, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

impl TestDb {
    /// A fresh PostgreSQL database, or `None` (skipped) when none is configured.
    pub async fn postgres(test: &str) -> Option<TestDb> {
        let admin = match std::env::var("TEST_DATABASE_URL") {
            Ok(u) if !u.is_empty() => u,
            _ => return unavailable(test, "TEST_DATABASE_URL is not set"),
        };
        let client = match admin_client(&admin).await {
            Ok(c) => c,
            Err(e) => return unavailable(test, &format!("cannot connect: {e}")),
        };
        sweep(&client).await;
        let name = format!(
            "qst_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .expect("drop old test database");
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create test database");
        Some(TestDb {
            url: with_db_name(&admin, &name),
            admin_url: Some(admin),
            name,
            _dir: None,
        })
    }

    /// A fresh SQLite file in a temp directory.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("quakesync-test.db");
        TestDb {
            url: format!("sqlite://{}", path.display()),
            admin_url: None,
            name: String::new(),
            _dir: Some(dir),
        }
    }

    /// A migrated [`Store`] on this database.
    pub async fn store(&self) -> Store {
        let store = Store::connect(
            &self.url,
            StoreOptions {
                pool_size: 4,
                ..StoreOptions::default()
            },
        )
        .await
        .expect("connect test store");
        store.migrate().await.expect("migrate test store");
        store
    }
}

/// Drops databases left by test processes that no longer exist.
async fn sweep(client: &tokio_postgres::Client) {
    let Ok(rows) = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'qst\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name.split('_').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = client
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(admin) = self.admin_url.clone() else {
            return;
        };
        let name = self.name.clone();
        // Drop may run inside or outside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(client) = admin_client(&admin).await {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// Defines a module `$name` with two `#[tokio::test]`s, `sqlite` and `postgres`, each
/// calling `$body(db: TestDb)` on a fresh database of that backend (the PostgreSQL one is
/// skipped, or fails under CI, without `TEST_DATABASE_URL`).
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::testing::TestDb::sqlite();
                ($body)(db).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) =
                    $crate::testing::TestDb::postgres(concat!(module_path!(), "::postgres")).await
                else {
                    return;
                };
                ($body)(db).await;
            }
        }
    };
}
