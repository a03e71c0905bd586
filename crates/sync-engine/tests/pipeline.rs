//! The pipeline: the next page is fetched while the current one is written, and a fault on
//! either side leaves exactly the committed pages and the cursor where it was.
//!
//! A page's write is held inside its transaction by a lock the test takes on `sync_runs`
//! (`LOCK TABLE … IN EXCLUSIVE MODE`: the page's last statement, which adds its counts to
//! the run row, waits for it; reads go on). The test sees the write waiting in `pg_locks`,
//! and the upstream's requests at the mock's gates: events, not clocks. PostgreSQL only
//! (SQLite has no lock a test can hold a writer at without failing it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use quake_api::FdsnClient;
use quake_store::Store;
use quake_store::testing::TestDb;
use sync_engine::{BackfillOptions, Engine, EngineConfig, FdsnSource, SyncOutcome, Trigger};

/// 78 events; pages of 20 (5 of them).
const WEEK_45: &str = "usgs_4.5_week_2021-07-22T2023Z.geojson";
const BATCH: u32 = 20;

fn engine(store: Store, server: &wiremock::MockServer) -> Engine {
    let source = Arc::new(FdsnSource(
        FdsnClient::new(&fdsn_url(server), http_opts()).unwrap(),
    ));
    Engine::new(
        store,
        source,
        EngineConfig {
            batch_size: BATCH,
            start_time: Some("2021-07-01T00:00:00Z".parse().unwrap()),
            ..EngineConfig::default()
        },
    )
}

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// A lock on `sync_runs` that holds every page write at its last statement.
struct HeldWrites {
    client: tokio_postgres::Client,
    url: String,
}

impl HeldWrites {
    async fn take(url: &str) -> HeldWrites {
        let client = pg(url).await;
        client
            .batch_execute("BEGIN; LOCK TABLE sync_runs IN EXCLUSIVE MODE")
            .await
            .unwrap();
        HeldWrites {
            client,
            url: url.to_string(),
        }
    }

    /// Waits until a page write is held at the lock (it is inside its transaction, its
    /// records written, not committed), and returns its backend's pid.
    async fn waiting_writer(&self) -> i32 {
        let watcher = pg(&self.url).await;
        let wait = async {
            loop {
                let row = watcher
                    .query_opt(
                        "SELECT pid FROM pg_locks WHERE relation = 'sync_runs'::regclass AND NOT granted \
                         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                        &[],
                    )
                    .await
                    .unwrap();
                if let Some(row) = row {
                    return row.get::<_, i32>(0);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        // 60 s only guards a hang.
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .expect("a page write reaches the lock")
    }

    /// Ends the page write held at the lock with a database error (its session killed).
    async fn kill_waiting_writer(&self) {
        let pid = self.waiting_writer().await;
        pg(&self.url)
            .await
            .query("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
    }

    async fn release(self) {
        self.client.batch_execute("COMMIT").await.unwrap();
    }
}

/// Waits for a gate with a hang guard (the request never comes without the pipeline).
async fn arrives(gate: &Held) {
    tokio::time::timeout(Duration::from_secs(60), gate.arrived())
        .await
        .expect("the request arrives while the page before it is being written");
}

async fn finished(task: tokio::task::JoinHandle<SyncOutcome>) -> SyncOutcome {
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the run ends")
        .unwrap()
}

/// Page 2 is asked of the upstream while page 1's transaction is open and waiting; nothing
/// of page 1 is visible until it commits; then the run completes as a serial one would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_page_is_fetched_while_this_one_is_written() {
    let Some(db) = TestDb::postgres("pipeline::overlap").await else {
        return;
    };
    let cat = Catalogue::from_fixture(WEEK_45);
    let mock = FdsnMock::new(cat.clone());
    let page1 = mock.hold_query(1);
    let page2 = mock.hold_query(2);
    let server = fdsn_server(mock.clone()).await;
    let store = db.store().await;
    let engine = engine(store.clone(), &server);
    let task = tokio::spawn({
        let engine = engine.clone();
        async move { engine.sync_once(Trigger::Cli).await.unwrap() }
    });
    arrives(&page1).await; // the run row exists: the lock can be taken now
    let held = HeldWrites::take(&db.url).await;
    page1.open();
    held.waiting_writer().await; // page 1 is being written
    arrives(&page2).await; // and page 2 is asked meanwhile
    assert!(
        stored(&store).await.is_empty(),
        "page 1 is not committed yet"
    );
    assert_eq!(engine.status().current.unwrap().counts.pages, 0);
    page2.open();
    held.release().await;
    let SyncOutcome::Succeeded(run) = finished(task).await else {
        panic!("the run succeeds")
    };
    // Pages after the first re-read the last event of the page before (same second).
    assert_eq!((run.pages, run.fetched, run.inserted), (5, 78, 78));
    assert_eq!(stored(&store).await, first_updated(&cat, usize::MAX));
    assert_eq!(
        mock.queries.load(Ordering::SeqCst),
        5,
        "one request per page, none ahead of the end"
    );
    assert!(cursor(&store, "usgs").await.is_some());
}

/// The upstream fails (500) on page 3 while page 2 is being written: pages 1 and 2 commit,
/// the run fails naming the upstream, the cursor stays; the next run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_failure_ahead_keeps_the_pages_before_it() {
    let Some(db) = TestDb::postgres("pipeline::upstream_fault").await else {
        return;
    };
    let cat = Catalogue::from_fixture(WEEK_45);
    let mock = FdsnMock::new(cat.clone());
    let page2 = mock.hold_query(2);
    // count, page 1, page 2 answer; page 3 (and every later request) is a 500.
    mock.fail_after(Some(3));
    let server = fdsn_server(mock.clone()).await;
    let store = db.store().await;
    let engine = engine(store.clone(), &server);
    let task = tokio::spawn({
        let engine = engine.clone();
        async move { engine.sync_once(Trigger::Cli).await.unwrap() }
    });
    arrives(&page2).await;
    pages_committed(engine.subscribe(), 1).await;
    let held = HeldWrites::take(&db.url).await;
    page2.open();
    held.waiting_writer().await; // page 2 is being written
    // Page 3 is asked and refused meanwhile (60 s only guards a hang).
    let refused = async {
        while mock.requests.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), refused)
        .await
        .expect("page 3 is asked while page 2 is written");
    assert_eq!(
        stored(&store).await,
        first_updated(&cat, 20),
        "page 2 not yet"
    );
    held.release().await;
    let run = failed(finished(task).await);
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.starts_with("upstream:") && error.contains("500"),
        "{error}"
    );
    // Page 2 re-reads the last event of page 1 (same second): 19 new.
    assert_eq!(
        (run.pages, run.fetched, run.inserted),
        (2, 39, 39),
        "{run:?}"
    );
    assert_eq!(
        stored(&store).await,
        first_updated(&cat, 39),
        "pages 1 and 2, once"
    );
    assert_eq!(
        cursor(&store, "usgs").await,
        None,
        "the cursor does not move"
    );

    mock.fail_after(None);
    let SyncOutcome::Succeeded(again) = engine.sync_once(Trigger::Cli).await.unwrap() else {
        panic!("the next run succeeds")
    };
    assert_eq!(again.fetched, 78);
    assert_eq!(stored(&store).await, first_updated(&cat, usize::MAX));
    assert!(cursor(&store, "usgs").await.is_some());
}

/// The database fails page 2's write while page 3 has been fetched ahead: page 1 stays,
/// nothing of pages 2 and 3 is written, the cursor stays; the next run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failure_drops_the_page_fetched_ahead() {
    let Some(db) = TestDb::postgres("pipeline::db_fault").await else {
        return;
    };
    let cat = Catalogue::from_fixture(WEEK_45);
    let mock = FdsnMock::new(cat.clone());
    let page2 = mock.hold_query(2);
    let page3 = mock.hold_query(3);
    let server = fdsn_server(mock.clone()).await;
    let store = db.store().await;
    let engine = engine(store.clone(), &server);
    let task = tokio::spawn({
        let engine = engine.clone();
        async move { engine.sync_once(Trigger::Cli).await.unwrap() }
    });
    arrives(&page2).await;
    pages_committed(engine.subscribe(), 1).await;
    let held = HeldWrites::take(&db.url).await;
    page2.open();
    held.waiting_writer().await; // page 2 is being written
    arrives(&page3).await; // page 3 is fetched ahead
    page3.open();
    held.kill_waiting_writer().await;
    held.release().await;
    let run = failed(finished(task).await);
    let error = run.error.clone().unwrap_or_default();
    assert!(error.starts_with("database:"), "{error}");
    assert_eq!(
        (run.pages, run.fetched, run.inserted),
        (1, 20, 20),
        "{run:?}"
    );
    assert_eq!(stored(&store).await, first_updated(&cat, 20), "page 1 only");
    assert_eq!(
        cursor(&store, "usgs").await,
        None,
        "the cursor does not move"
    );
    let row = store.run(run.id).await.unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.pages), ("failed", 1));

    let SyncOutcome::Succeeded(again) = engine.sync_once(Trigger::Cli).await.unwrap() else {
        panic!("the next run succeeds")
    };
    assert_eq!((again.fetched, again.inserted), (78, 58));
    assert_eq!(stored(&store).await, first_updated(&cat, usize::MAX));
}

/// A backfill window's page 2 is asked while page 1 is being written; the upstream then
/// fails page 3: the pages before it stay, the windows marked done are exactly the ones
/// whose pages all committed, and a rerun completes the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_fetches_ahead_and_keeps_what_committed() {
    let Some(db) = TestDb::postgres("pipeline::backfill").await else {
        return;
    };
    let cat = Catalogue::from_fixture(WEEK_45);
    let mock = FdsnMock::new(cat.clone()).with_cap(50);
    let page1 = mock.hold_query(1);
    let page2 = mock.hold_query(2);
    let server = fdsn_server(mock.clone()).await;
    let store = db.store().await;
    let engine = engine(store.clone(), &server);
    let opts = BackfillOptions {
        pause: Duration::ZERO,
        ..BackfillOptions::new(
            "2021-07-01T00:00:00Z".parse().unwrap(),
            Some("2021-08-01T00:00:00Z".parse().unwrap()),
        )
    };
    let task = tokio::spawn({
        let (engine, opts) = (engine.clone(), opts.clone());
        async move { engine.backfill(&opts, None).await.unwrap() }
    });
    arrives(&page1).await; // planned: the run row and the plan exist
    let held = HeldWrites::take(&db.url).await;
    page1.open();
    held.waiting_writer().await; // page 1 is being written
    arrives(&page2).await; // and page 2 is asked meanwhile
    assert!(
        stored(&store).await.is_empty(),
        "page 1 is not committed yet"
    );
    // Page 3 and everything after it fail (the requests so far: the counts and 2 pages).
    mock.fail_after(Some(0));
    page2.open();
    held.release().await;
    let o = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the backfill ends")
        .unwrap();
    let run = failed(o.outcome.clone());
    assert!(
        run.error.as_deref().unwrap_or("").contains("500"),
        "{run:?}"
    );
    // Windows and pages are in time order: what committed is the first events by time.
    assert_eq!(run.pages, 2, "{run:?}");
    assert_eq!(
        stored(&store).await,
        first_updated(&cat, run.fetched as usize),
        "pages 1 and 2, once"
    );
    let key = o.key.clone().unwrap();
    let windows = store.backfill_windows(&key).await.unwrap();
    let done: i64 = windows
        .iter()
        .filter(|w| w.is_done())
        .map(|w| w.events)
        .sum();
    assert!(
        done <= run.fetched && windows.iter().any(|w| !w.is_done()),
        "{windows:?}"
    );

    mock.fail_after(None);
    let again = engine.backfill(&opts, None).await.unwrap();
    assert!(
        matches!(again.outcome, SyncOutcome::Succeeded(_)),
        "{again:?}"
    );
    assert_eq!(stored(&store).await, first_updated(&cat, usize::MAX));
}
