//! Upstream faults (issue 9): every way the upstream can misbehave on the second page of a
//! sync, through a fault-injecting TCP front ([`fault_front`]) before a mock FDSN service
//! with real semantics. Each fault is either retried to success, or fails the run cleanly:
//! the failed page and those after it change nothing, the run row says `failed` with a
//! readable error, the cursor does not move, and the next clean run completes the
//! catalogue exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod fault_front;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use fault_front::{Fault, FaultFront};
use quake_api::{FdsnClient, HttpOptions};
use quake_store::testing::TestDb;
use quake_store::{Store, SyncRun, both_backends};
use serde_json::{Value, json};
use sync_engine::{Engine, EngineConfig, FdsnSource, SyncOutcome, Trigger};

/// 78 events in pages of 20: page 1 holds the first 20 by time, each later page starts at
/// the second of the last event read (re-reading it, then 19 new ones).
const FIXTURE: &str = "usgs_4.5_week_2021-07-22T2023Z.geojson";
const BATCH: u32 = 20;
const PAGE2: u64 = 2;
const OVERLAP_MS: i64 = 300_000;

fn start() -> DateTime<Utc> {
    "2021-07-01T00:00:00Z".parse().unwrap()
}

/// An engine whose request timeout (60 s) no loaded machine comes near.
fn engine(store: Store, front: &FaultFront, retries: u32) -> Engine {
    engine_with(store, front, retries, Duration::from_secs(60))
}

fn engine_with(store: Store, front: &FaultFront, retries: u32, timeout: Duration) -> Engine {
    let opts = HttpOptions {
        timeout,
        max_retries: retries,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..HttpOptions::default()
    };
    let client = FdsnClient::new(&format!("{}/fdsnws/event/1/query", front.uri()), opts).unwrap();
    Engine::new(
        store,
        Arc::new(FdsnSource(client)),
        EngineConfig {
            batch_size: BATCH,
            start_time: Some(start()),
            ..EngineConfig::default()
        },
    )
}

struct Rig {
    mock: FdsnMock,
    _server: FdsnServer,
    front: FaultFront,
}

async fn new_rig(cat: Catalogue) -> Rig {
    let mock = FdsnMock::new(cat);
    let server = fdsn_server(mock.clone()).await;
    let front = FaultFront::start(&server.uri()).await;
    Rig {
        mock,
        _server: server,
        front,
    }
}

async fn row(store: &Store, id: i64) -> SyncRun {
    store.run(id).await.unwrap().unwrap()
}

async fn sync(engine: &Engine) -> SyncOutcome {
    tokio::time::timeout(Duration::from_secs(60), engine.sync_once(Trigger::Cli))
        .await
        .expect("a sync never hangs")
        .unwrap()
}

fn ok(o: SyncOutcome) -> SyncRun {
    match o {
        SyncOutcome::Succeeded(r) => r,
        other => panic!("expected success, got {other:?}"),
    }
}

/// Bumps every event's `updated` past the catalogue's `generated`, and `generated` by 1 h:
/// a second snapshot in which every event changed.
fn revised(cat: &Catalogue) -> Catalogue {
    let mut c = cat.clone();
    c.generated_ms += 3_600_000;
    for f in &mut c.features {
        f["properties"]["updated"] = json!(cat.generated_ms + 60_000);
        f["properties"]["place"] = json!("revised");
    }
    c
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Retried, then the run succeeds; the page was asked this many times.
    Retried(usize),
    /// The run fails with an error containing the text; the page was asked this many times.
    Fails(&'static str, usize),
}

struct Case {
    name: &'static str,
    faults: Vec<Fault>,
    retries: u32,
    expect: Expect,
}

fn cases() -> Vec<Case> {
    let html = "<html><body>Service maintenance</body></html>";
    let c = |name, faults, retries, expect| Case {
        name,
        faults,
        retries,
        expect,
    };
    vec![
        c(
            "burst of 5xx within the retry budget",
            vec![
                Fault::status(503, "busy"),
                Fault::status(500, "oops"),
                Fault::status(502, "bad gateway"),
            ],
            3,
            Expect::Retried(4),
        ),
        c(
            "burst of 5xx longer than the retry budget",
            vec![Fault::status(500, "upstream exploded"); 5],
            3,
            Expect::Fails("HTTP 500", 4),
        ),
        c(
            "a 4xx other than 429 is not retried",
            vec![Fault::status(400, "Bad Request: bad parameter")],
            3,
            Expect::Fails("HTTP 400", 1),
        ),
        c(
            "429 with Retry-After 0",
            vec![Fault::Respond(
                429,
                vec![("Retry-After", "0".into())],
                b"slow down".to_vec(),
            )],
            2,
            Expect::Retried(2),
        ),
        c(
            "429 for longer than the retry budget",
            vec![
                Fault::Respond(
                    429,
                    vec![("Retry-After", "0".into())],
                    b"slow down".to_vec()
                );
                3
            ],
            2,
            Expect::Fails("HTTP 429", 3),
        ),
        c(
            "a request that times out once",
            vec![Fault::Stall],
            1,
            Expect::Retried(2),
        ),
        c(
            "a request that always times out",
            vec![Fault::Stall; 2],
            1,
            Expect::Fails("timed out", 2),
        ),
        c(
            "connection reset once",
            vec![Fault::Reset],
            2,
            Expect::Retried(2),
        ),
        c(
            "connection reset every time",
            vec![Fault::Reset; 3],
            2,
            Expect::Fails("upstream: ", 3),
        ),
        c(
            "connection closed without an answer",
            vec![Fault::CloseSilently, Fault::CloseSilently],
            2,
            Expect::Retried(3),
        ),
        c(
            "body cut short of its Content-Length, once",
            vec![Fault::CutBody],
            2,
            Expect::Retried(2),
        ),
        c(
            "body cut short of its Content-Length, every time",
            vec![Fault::CutBody; 3],
            2,
            Expect::Fails("upstream: ", 3),
        ),
        c(
            "well-formed HTTP carrying truncated JSON",
            vec![Fault::TruncatedJson],
            3,
            Expect::Fails("truncated JSON", 1),
        ),
        c(
            "garbage body (HTML maintenance page)",
            vec![Fault::Respond(200, vec![], html.as_bytes().to_vec())],
            3,
            Expect::Fails("not valid JSON", 1),
        ),
        c(
            "binary garbage",
            vec![Fault::Respond(
                200,
                vec![],
                vec![0xff, 0x00, 0x9c, 0x13, 0x07],
            )],
            3,
            Expect::Fails("invalid response body", 1),
        ),
        c(
            "an empty 200",
            vec![Fault::Respond(200, vec![], vec![])],
            3,
            Expect::Fails("empty body", 1),
        ),
        c(
            "JSON of the wrong shape",
            vec![Fault::status(
                200,
                r#"{"type":"FeatureCollection","features":{"a":1}}"#,
            )],
            3,
            Expect::Fails("unexpected JSON shape", 1),
        ),
        c(
            "a 503 carrying an HTML error page",
            vec![Fault::Respond(503, vec![], html.as_bytes().to_vec()); 2],
            1,
            Expect::Fails("HTTP 503", 2),
        ),
    ]
}

/// The whole matrix on SQLite, one fresh database per fault (PostgreSQL runs the
/// cursor-kept test below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_upstream_fault_is_retried_or_fails_the_run_cleanly() {
    let cat = Catalogue::from_fixture(FIXTURE);
    let all = first_updated(&cat, usize::MAX);
    assert_eq!(all.len(), 78);
    let page1 = first_updated(&cat, BATCH as usize);
    let want_cursor = ms(cat.generated_ms - OVERLAP_MS);
    for case in cases() {
        let name = case.name;
        let db = TestDb::sqlite();
        let store = db.store().await;
        let rig = new_rig(cat.clone()).await;
        rig.front.at_page(PAGE2, case.faults.clone());
        // Only a stalled request needs to meet the timeout; every other request gets one
        // no loaded machine comes near, so no case races the clock.
        let stalls = case.faults.iter().any(|f| matches!(f, Fault::Stall));
        let timeout = Duration::from_secs(if stalls { 2 } else { 60 });
        let engine = engine_with(store.clone(), &rig.front, case.retries, timeout);
        let outcome = sync(&engine).await;
        match case.expect {
            Expect::Retried(asked) => {
                let run = match outcome {
                    SyncOutcome::Succeeded(r) => r,
                    other => panic!("{name}: expected success, got {other:?}"),
                };
                assert_eq!(run.fetched, 78, "{name}");
                assert_eq!(rig.front.requests_at(PAGE2), asked, "{name}");
                assert_eq!(stored(&store).await, all, "{name}: catalogue exact");
                assert_eq!(cursor(&store, "usgs").await, Some(want_cursor), "{name}");
            }
            Expect::Fails(text, asked) => {
                let run = match outcome {
                    SyncOutcome::Failed(r) => r,
                    other => panic!("{name}: expected a failed run, got {other:?}"),
                };
                let db_row = row(&store, run.id).await;
                assert_eq!(db_row.status, "failed", "{name}");
                assert!(db_row.finished_at.is_some(), "{name}");
                let err = db_row.error.clone().unwrap_or_default();
                assert!(err.contains(text), "{name}: error {err:?} lacks {text:?}");
                assert!(err.starts_with("upstream: "), "{name}: {err}");
                assert!(err.len() < 2000, "{name}: error is bounded: {err}");
                assert_eq!(
                    (db_row.pages, db_row.fetched),
                    (1, 20),
                    "{name}: only page 1 counted"
                );
                assert_eq!(rig.front.requests_at(PAGE2), asked, "{name}: attempts");
                assert_eq!(
                    rig.front.requests_at(PAGE2 + 1),
                    0,
                    "{name}: no page after the failed one"
                );
                assert_eq!(
                    stored(&store).await,
                    page1,
                    "{name}: page 1 stays, the failed page changed nothing"
                );
                assert_eq!(
                    cursor(&store, "usgs").await,
                    None,
                    "{name}: cursor unchanged"
                );
                assert!(engine.status().last_run_failed(), "{name}");

                // The next clean run completes the catalogue exactly.
                rig.front.clear();
                let run2 = ok(sync(&engine).await);
                assert_eq!(run2.fetched, 78, "{name}");
                assert_eq!(
                    (run2.inserted, run2.unchanged),
                    (58, 20),
                    "{name}: nothing doubled"
                );
                assert_eq!(stored(&store).await, all, "{name}: catalogue exact");
                assert_eq!(cursor(&store, "usgs").await, Some(want_cursor), "{name}");
            }
        }
        drop(rig);
        eprintln!("ok: {name}");
    }
}

both_backends!(
    a_failed_run_keeps_an_existing_cursor_and_the_next_run_catches_up,
    async |db: TestDb| {
        let v1 = Catalogue::from_fixture(FIXTURE);
        let store = db.store().await;
        let rig = new_rig(v1.clone()).await;
        let engine = engine(store.clone(), &rig.front, 1);
        ok(sync(&engine).await);
        let c1 = cursor(&store, "usgs").await.expect("cursor after run 1");
        assert_eq!(c1, ms(v1.generated_ms - OVERLAP_MS));

        // Every event is revised upstream; page 2 of the next run keeps failing.
        let v2 = revised(&v1);
        rig.mock.set(v2.clone());
        rig.front.clear(); // pages count from this run's first
        rig.front
            .at_page(PAGE2, vec![Fault::status(502, "bad gateway"); 2]);
        let SyncOutcome::Failed(run) = sync(&engine).await else {
            panic!("must fail")
        };
        assert!(
            run.error.as_deref().unwrap().contains("HTTP 502"),
            "{run:?}"
        );
        assert_eq!(
            cursor(&store, "usgs").await,
            Some(c1),
            "the cursor did not move"
        );
        let now = stored(&store).await;
        let revised_page1 = first_updated(&v2, BATCH as usize);
        for (id, updated) in &now {
            let want = revised_page1
                .get(id)
                .copied()
                .unwrap_or_else(|| first_updated(&v1, usize::MAX)[id]);
            assert_eq!(*updated, want, "{id}: only page 1 was applied");
        }

        rig.front.clear();
        let run3 = ok(sync(&engine).await);
        assert_eq!(
            (run3.fetched, run3.updated, run3.unchanged),
            (78, 58, 20),
            "{run3:?}"
        );
        assert_eq!(stored(&store).await, first_updated(&v2, usize::MAX));
        assert_eq!(
            cursor(&store, "usgs").await,
            Some(ms(v2.generated_ms - OVERLAP_MS))
        );
    }
);

/// `Retry-After` is honoured: the retry waits at least as long as the server asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    let cat = Catalogue::from_fixture(FIXTURE);
    for ra in ["1", "1.5"] {
        let db = TestDb::sqlite();
        let store = db.store().await;
        let rig = new_rig(cat.clone()).await;
        rig.front.at_page(
            PAGE2,
            [Fault::Respond(
                429,
                vec![("Retry-After", ra.to_string())],
                b"Too Many Requests".to_vec(),
            )],
        );
        let engine = engine(store.clone(), &rig.front, 1);
        let t = Instant::now();
        let run = ok(sync(&engine).await);
        let took = t.elapsed();
        let floor = Duration::from_secs_f64(ra.parse().unwrap());
        assert!(took >= floor, "Retry-After {ra}: retried after {took:?}");
        assert_eq!(run.fetched, 78);
        assert_eq!(rig.front.requests_at(PAGE2), 2);
        assert_eq!(stored(&store).await, first_updated(&cat, usize::MAX));
    }
}

/// A 204 (FDSN "no data") is an empty page: paging ends there, the run succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_204_is_an_empty_page() {
    let cat = Catalogue::from_fixture(FIXTURE);
    // An empty upstream answering 204 on the first page.
    let db = TestDb::sqlite();
    let store = db.store().await;
    let rig = new_rig(cat.clone()).await;
    rig.front.at_page(1, [Fault::Respond(204, vec![], vec![])]);
    let engine = engine(store.clone(), &rig.front, 0);
    let before = Utc::now();
    let run = ok(sync(&engine).await);
    assert_eq!((run.fetched, run.pages), (0, 1));
    assert!(stored(&store).await.is_empty());
    // No `generated` on a 204: the local clock at run start, minus the overlap.
    let c = cursor(&store, "usgs").await.unwrap();
    assert!(
        c >= before - chrono::Duration::milliseconds(OVERLAP_MS) - chrono::Duration::seconds(1)
    );
}

/// `metadata.generated` going backwards.
///
/// Policy: the cursor is the OLDEST `generated` among the run's pages, minus the overlap.
/// A page generated earlier than the first (a stale cache or replica) reflects the
/// catalogue as of that older time, so anything updated after it may be missing from that
/// page; a cursor taken from the first page's newer `generated` would skip it forever. A
/// smaller cursor only re-reads (absorbed by the upsert), never skips. Between runs the
/// same holds: a run whose upstream reports an older `generated` than the last run moves
/// the cursor backwards, which only re-reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_that_goes_backwards_never_skips() {
    let mut cat = Catalogue::from_fixture(FIXTURE);
    let g = cat.generated_ms;
    // The 26th event by time (on page 2) was revised 1 h before `generated`: magnitude 9.9.
    let x_id = {
        let mut f: Vec<&Value> = cat.features.iter().collect();
        f.sort_by_key(|f| f["properties"]["time"].as_i64().unwrap());
        f[25]["id"].as_str().unwrap().to_string()
    };
    let x = cat
        .features
        .iter_mut()
        .find(|f| f["id"] == x_id.as_str())
        .unwrap();
    let old_x = x.clone();
    x["properties"]["updated"] = json!(g - 3_600_000);
    x["properties"]["mag"] = json!(9.9);

    let db = TestDb::sqlite();
    let store = db.store().await;
    let rig = new_rig(cat.clone()).await;
    // Page 2 comes from a replica two hours stale: older `generated`, X's older version.
    let stale_x = old_x.clone();
    let stale_id = x_id.clone();
    rig.front.at_page(
        PAGE2,
        [Fault::Edit(Arc::new(move |v: &mut Value| {
            v["metadata"]["generated"] = json!(g - 7_200_000);
            for f in v["features"].as_array_mut().unwrap() {
                if f["id"] == stale_id.as_str() {
                    *f = stale_x.clone();
                }
            }
        }))],
    );
    let engine = engine(store.clone(), &rig.front, 0);
    ok(sync(&engine).await);
    let got = store.event(&x_id).await.unwrap().unwrap();
    assert_ne!(got.magnitude, Some(9.9), "the stale page carried the old X");
    assert_eq!(
        cursor(&store, "usgs").await,
        Some(ms(g - 7_200_000 - OVERLAP_MS)),
        "the cursor comes from the oldest page"
    );

    // The next run (fresh pages) must pick the revision up.
    rig.front.clear();
    ok(sync(&engine).await);
    let got = store.event(&x_id).await.unwrap().unwrap();
    assert_eq!(got.magnitude, Some(9.9), "the revision was not skipped");

    // Between runs: an upstream reporting an older `generated` moves the cursor back.
    let mut older = cat.clone();
    older.generated_ms = g - 86_400_000;
    rig.mock.set(older);
    let run = ok(sync(&engine).await);
    assert_eq!(run.inserted + run.updated, 0, "re-read only: {run:?}");
    assert_eq!(
        cursor(&store, "usgs").await,
        Some(ms(g - 86_400_000 - OVERLAP_MS))
    );
    assert_eq!(stored(&store).await, first_updated(&cat, usize::MAX));
}

/// PostgreSQL drops an advisory lock with its connection (a restart, a network cut, an
/// operator's `pg_terminate_backend`). A run whose lock connection dies mid-run must write
/// nothing more: another process may already be syncing. (The server restart itself:
/// `bin/quakesync/tests/reliability_pg_restart.rs`, on a private cluster.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_loses_its_lock_writes_nothing_more() {
    let Some(db) = TestDb::postgres("faults::a_run_that_loses_its_lock").await else {
        return;
    };
    let cat = Catalogue::from_fixture(FIXTURE);
    let rig = new_rig(cat.clone()).await;
    let page2 = rig.mock.hold_query(2);
    let store = db.store().await;
    let engine = engine(store.clone(), &rig.front, 0);
    let task = tokio::spawn({
        let engine = engine.clone();
        async move { engine.sync_once(Trigger::Cli).await }
    });
    // The lock's session is killed while page 2 is in flight (held at the upstream).
    page2.arrived().await;
    pages_committed(engine.subscribe(), 1).await;
    kill_lock_holder(&store, &db.url).await;
    page2.open();
    let outcome = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let SyncOutcome::Failed(run) = outcome else {
        panic!("a run without its lock must fail: {outcome:?}")
    };
    assert!(
        run.error
            .as_deref()
            .unwrap_or("")
            .contains("lost the cluster-wide sync lock"),
        "{run:?}"
    );
    assert_eq!(run.pages, 1, "no page after the loss");
    assert_eq!(stored(&store).await, first_updated(&cat, BATCH as usize));
    assert_eq!(cursor(&store, "usgs").await, None);
    // The next run takes a fresh lock and completes.
    rig.front.clear();
    let run = ok(sync(&engine).await);
    assert_eq!(run.fetched, 78);
    assert_eq!(stored(&store).await, first_updated(&cat, usize::MAX));
}
