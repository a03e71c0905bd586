//! Backfill end to end: a mock FDSN service with a small search limit (400) over the
//! 4711-event 2018 week, real databases (SQLite always, PostgreSQL at `TEST_DATABASE_URL`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use quake_api::FdsnClient;
use quake_store::BackfillWindow;
use quake_store::testing::TestDb;
use quake_store::{Earthquake, Store, SyncRun, Ts, both_backends};
use serde_json::Value;
use sync_engine::{
    BackfillEvent, BackfillOptions, BackfillOutcome, Engine, EngineConfig, FdsnSource,
    StartOutcome, SyncOutcome, Trigger,
};

const WEEK_2018: &str = "usgs_all_week_2018-06-14T0919Z.geojson";
const CAP: u64 = 400;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn range() -> (DateTime<Utc>, DateTime<Utc>) {
    (t("2018-06-07T00:00:00Z"), t("2018-06-15T00:00:00Z"))
}

fn opts(start: DateTime<Utc>, end: DateTime<Utc>) -> BackfillOptions {
    BackfillOptions {
        pause: Duration::ZERO,
        ..BackfillOptions::new(start, Some(end))
    }
}

fn client(server: &wiremock::MockServer) -> FdsnClient {
    FdsnClient::new(&fdsn_url(server), http_opts()).unwrap()
}

fn engine(store: Store, client: &FdsnClient, batch: u32) -> Engine {
    Engine::new(
        store,
        Arc::new(FdsnSource(client.clone())),
        EngineConfig {
            batch_size: batch,
            ..EngineConfig::default()
        },
    )
}

/// A sync engine over the fixture's range in one big page: the run a backfill meets.
fn syncing_engine(store: Store, client: &FdsnClient) -> Engine {
    Engine::new(
        store,
        Arc::new(FdsnSource(client.clone())),
        EngineConfig {
            batch_size: 5000,
            start_time: Some(range().0),
            ..EngineConfig::default()
        },
    )
}

/// The backfill was skipped for the running `run_id` without asking the upstream anything.
fn assert_skipped_for(o: &BackfillOutcome, run_id: i64) {
    assert_eq!(
        o.outcome,
        SyncOutcome::Skipped {
            running_run_id: Some(run_id)
        }
    );
    assert_eq!((o.count_requests, o.query_requests), (0, 0));
}

fn succeeded(o: &BackfillOutcome) -> SyncRun {
    match &o.outcome {
        SyncOutcome::Succeeded(run) => run.clone(),
        other => panic!("expected a successful run, got {other:?}"),
    }
}

async fn windows(store: &Store, o: &BackfillOutcome) -> Vec<BackfillWindow> {
    store
        .backfill_windows(o.key.as_ref().unwrap())
        .await
        .unwrap()
}

fn fixture() -> HashMap<String, Value> {
    read_fixture(WEEK_2018)["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_string(), f.clone()))
        .collect()
}

fn param_ms(q: &HashMap<String, String>, k: &str) -> i64 {
    let s = &q[k];
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

/// How many fixture events a request's window matches.
fn matching(features: &HashMap<String, Value>, q: &HashMap<String, String>) -> usize {
    let (a, b) = (param_ms(q, "starttime"), param_ms(q, "endtime"));
    features
        .values()
        .filter(|f| {
            let time = f["properties"]["time"].as_i64().unwrap();
            time >= a && time < b
        })
        .count()
}

/// The stored catalogue is the fixture: same ids, same fields.
fn assert_is_fixture(cat: &BTreeMap<String, Earthquake>, features: &HashMap<String, Value>) {
    let stored: BTreeSet<&String> = cat.keys().collect();
    let expected: BTreeSet<&String> = features.keys().collect();
    assert_eq!(
        stored, expected,
        "the catalogue's ids differ from the fixture's"
    );
    assert_eq!(cat.len(), 4711);
    for (id, f) in features {
        let e = &cat[id];
        let p = &f["properties"];
        let c = f["geometry"]["coordinates"].as_array().unwrap();
        assert_eq!(
            e.time.0.timestamp_millis(),
            p["time"].as_i64().unwrap(),
            "{id}"
        );
        assert_eq!(
            e.updated.0.timestamp_millis(),
            p["updated"].as_i64().unwrap(),
            "{id}"
        );
        assert_eq!(e.magnitude, p["mag"].as_f64(), "{id}");
        assert_eq!(e.place.as_deref(), p["place"].as_str(), "{id}");
        assert_eq!(e.longitude, c[0].as_f64().unwrap(), "{id}");
        assert_eq!(e.latitude, c[1].as_f64().unwrap(), "{id}");
        assert_eq!(e.depth_km, c[2].as_f64(), "{id}");
        assert_eq!(
            e.status,
            p["status"].as_str().unwrap().to_lowercase(),
            "{id}"
        );
        assert_eq!(e.merged_into, None, "{id}");
    }
}

both_backends!(
    backfill_fills_the_range_under_the_cap,
    async |db: TestDb| {
        let features = fixture();
        let mock = FdsnMock::new(Catalogue::from_fixture(WEEK_2018)).with_cap(CAP);
        let server = fdsn_server(mock.clone()).await;
        let store = db.store().await;
        let client = client(&server);
        let engine = engine(store.clone(), &client, 100);
        // A cursor the backfill must leave alone.
        let cursor = Ts(t("2018-06-14T00:00:00Z"));
        {
            store
                .set_sync_state("usgs", Some(cursor), 0, None)
                .await
                .unwrap();
        }
        let (start, end) = range();

        let o = engine.backfill(&opts(start, end), None).await.unwrap();
        let run = succeeded(&o);
        assert_eq!(run.trigger, "cli");
        assert_eq!(counts(&run), (4711, 4711, 0, 0, 0, 0, 0), "{run:?}");
        assert_is_fixture(&catalogue(&store).await, &features);

        // Windows were split to stay under the cap, and the count endpoint was asked.
        let seen = seen_requests(&server).await;
        let count_requests: Vec<_> = seen.iter().filter(|(p, _)| p == "count").collect();
        let queries: Vec<_> = seen.iter().filter(|(p, _)| p == "query").collect();
        assert!(
            !count_requests.is_empty(),
            "the count endpoint was not asked"
        );
        assert_eq!(count_requests.len() as u64, o.count_requests);
        assert_eq!(queries.len() as u64, o.query_requests);
        assert_eq!(count_requests[0].1["starttime"], "2018-06-07T00:00:00");
        assert_eq!(count_requests[0].1["endtime"], "2018-06-15T00:00:00");
        let mut query_windows = BTreeSet::new();
        for (_, q) in &queries {
            assert!(
                matching(&features, q) as u64 <= CAP,
                "a query over the cap: {q:?}"
            );
            assert_eq!(q["orderby"], "time-asc");
            assert_eq!(q["includedeleted"], "true");
            assert_eq!(q["limit"], "100");
            assert!(!q.contains_key("updatedafter"));
            query_windows.insert((q["starttime"].clone(), q["endtime"].clone()));
        }
        assert!(query_windows.len() > 11, "{} windows", query_windows.len());
        // The stored plan: contiguous windows covering the range, each under the cap, all done.
        let plan = windows(&store, &o).await;
        assert_eq!(plan.len() as u64, o.plan.windows_total);
        assert_eq!(plan.first().unwrap().window_start.0, start);
        assert_eq!(plan.last().unwrap().window_end.0, end);
        for pair in plan.windows(2) {
            assert_eq!(pair[0].window_end, pair[1].window_start);
        }
        assert!(plan.iter().all(|w| w.is_done()));
        assert!(plan.iter().all(|w| w.expected.unwrap() as u64 <= CAP));
        assert_eq!(plan.iter().map(|w| w.events).sum::<i64>(), 4711);
        assert!(plan.iter().all(|w| w.events == w.expected.unwrap()));
        println!(
            "plan: {} windows, {} count requests, {} queries, {} pages",
            plan.len(),
            o.count_requests,
            o.query_requests,
            run.pages
        );
        // The sync cursor did not move.
        let state = store.sync_state("usgs").await.unwrap().unwrap();
        assert_eq!(state.cursor, Some(cursor));

        // The same range again: everything is done, nothing is asked or written.
        let before = seen.len();
        let again = engine.backfill(&opts(start, end), None).await.unwrap();
        let run2 = succeeded(&again);
        assert_eq!(counts(&run2), (0, 0, 0, 0, 0, 0, 0));
        assert!(again.plan.resumed);
        assert_eq!(again.plan.windows_done, again.plan.windows_total);
        assert_eq!(seen_requests(&server).await.len(), before);

        // A wider range (a new backfill) fetches every event again and writes nothing.
        let wider = engine
            .backfill(&opts(t("2018-06-06T00:00:00Z"), end), None)
            .await
            .unwrap();
        let run3 = succeeded(&wider);
        assert_eq!(counts(&run3), (4711, 0, 0, 4711, 0, 0, 0), "{run3:?}");
        assert_is_fixture(&catalogue(&store).await, &features);
    }
);

both_backends!(
    interrupted_backfill_resumes_without_redoing_windows,
    async |db: TestDb| {
        let features = fixture();
        let mock = FdsnMock::new(Catalogue::from_fixture(WEEK_2018)).with_cap(CAP);
        let server = fdsn_server(mock.clone()).await;
        let store = db.store().await;
        let client = client(&server);
        let engine = engine(store.clone(), &client, 100);
        let (start, end) = range();

        // The upstream goes down after answering 17 pages (in the middle of a window): the
        // counts are done once the plan is, and the next 17 requests are the pages. (The
        // 18th page is asked while the 17th is written: a count of committed pages would
        // not say which request is the next.)
        let progress: sync_engine::ProgressFn = {
            let mock = mock.clone();
            Arc::new(move |e: &BackfillEvent| {
                if let BackfillEvent::Planned(_) = e {
                    mock.fail_after(Some(17));
                }
            })
        };
        let first = engine
            .backfill(&opts(start, end), Some(progress))
            .await
            .unwrap();
        let SyncOutcome::Failed(run1) = &first.outcome else {
            panic!("expected a failed run, got {:?}", first.outcome);
        };
        assert!(run1.error.as_deref().unwrap().contains("500"), "{run1:?}");
        assert_eq!(run1.pages, 17);
        let after_first = windows(&store, &first).await;
        let done_first: BTreeSet<Ts> = after_first
            .iter()
            .filter(|w| w.is_done())
            .map(|w| w.window_start)
            .collect();
        let total = after_first.len();
        assert!(
            !done_first.is_empty() && done_first.len() < total,
            "{} of {total} done",
            done_first.len()
        );
        let done_events: i64 = after_first
            .iter()
            .filter(|w| w.is_done())
            .map(|w| w.events)
            .sum();
        // Records committed for the window that was cut short: fetched again, unchanged.
        let partial = run1.fetched - done_events;
        assert!(partial > 0, "the interruption should fall inside a window");
        assert_eq!(catalogue(&store).await.len() as i64, run1.inserted);

        // Run it again with the same range: only the windows not done are asked for.
        mock.fail_after(None);
        let before = seen_requests(&server).await.len();
        let second = engine.backfill(&opts(start, end), None).await.unwrap();
        let run2 = succeeded(&second);
        assert!(second.plan.resumed);
        assert_eq!(second.plan.windows_done as usize, done_first.len());
        let seen2: Vec<_> = seen_requests(&server).await.split_off(before);
        assert!(
            seen2.iter().all(|(p, _)| p == "query"),
            "a resumed backfill does not count again"
        );
        let planned: BTreeMap<Ts, Ts> = after_first
            .iter()
            .map(|w| (w.window_start, w.window_end))
            .collect();
        let mut first_pages = BTreeSet::new();
        for (_, q) in &seen2 {
            let ws = Ts(DateTime::from_timestamp_millis(param_ms(q, "starttime")).unwrap());
            let we = Ts(DateTime::from_timestamp_millis(param_ms(q, "endtime")).unwrap());
            let window = planned.range(..=ws).next_back().map(|(s, _)| *s);
            assert!(
                window.is_some_and(|w| !done_first.contains(&w)),
                "a finished window was asked again: {q:?}"
            );
            // A window's first page starts at its start and ends at its end.
            if planned.get(&ws) == Some(&we) {
                first_pages.insert(ws);
            }
        }
        assert_eq!(first_pages.len(), total - done_first.len());
        assert_eq!(run1.inserted + run2.inserted, 4711);
        assert_eq!(run2.unchanged, partial, "{run2:?}");
        assert_eq!(
            (run2.updated, run2.deleted, run2.merged, run2.rejected),
            (0, 0, 0, 0)
        );
        assert!(windows(&store, &second).await.iter().all(|w| w.is_done()));
        assert_is_fixture(&catalogue(&store).await, &features);
        println!(
            "interrupted: run 1 {} windows done of {total}, {} fetched ({partial} in the cut window); run 2 {} queries, {run2:?}",
            done_first.len(),
            run1.fetched,
            seen2.len()
        );
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_answering_400_over_the_cap_splits_too() {
    let db = TestDb::sqlite();
    let features = fixture();
    let mock = FdsnMock::new(Catalogue::from_fixture(WEEK_2018)).with_cap(CAP);
    mock.count_400_over_cap.store(true, Ordering::SeqCst);
    let server = fdsn_server(mock).await;
    let store = db.store().await;
    let client = client(&server);
    let engine = engine(store.clone(), &client, 250);
    let (start, end) = range();
    let o = engine.backfill(&opts(start, end), None).await.unwrap();
    let run = succeeded(&o);
    assert_eq!(counts(&run), (4711, 4711, 0, 0, 0, 0, 0));
    assert_is_fixture(&catalogue(&store).await, &features);
    for (_, q) in seen_requests(&server)
        .await
        .iter()
        .filter(|(p, _)| p == "query")
    {
        assert!(matching(&features, q) as u64 <= CAP, "{q:?}");
        assert_eq!(q["limit"], "250");
    }
    // Only windows whose count answered (under the cap) become leaves of the plan.
    let plan = windows(&store, &o).await;
    assert!(plan.len() > 11);
    assert!(
        plan.iter()
            .all(|w| w.expected.is_some_and(|n| n as u64 <= CAP))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_refused_as_too_large_splits_its_window() {
    // A stored plan with one window for the whole week (as if planned against a service
    // with a larger cap), paged with limit 500 against a cap of 400: USGS counts include
    // `limit`, so the first page of a window with more than 400 events is refused.
    let db = TestDb::sqlite();
    let features = fixture();
    let mock = FdsnMock::new(Catalogue::from_fixture(WEEK_2018)).with_cap(CAP);
    let server = fdsn_server(mock).await;
    let store = db.store().await;
    let client = client(&server);
    let engine = engine(store.clone(), &client, 500);
    let (start, end) = range();
    let key = quake_store::BackfillKey {
        range_start: Ts(start),
        range_end: Ts(end),
        filter: String::new(),
    };
    {
        store
            .save_backfill_plan(&[BackfillWindow::planned(
                &key,
                Ts(start),
                Ts(end),
                Some(4711),
            )])
            .await
            .unwrap();
    }
    let splits = Arc::new(Mutex::new(0));
    let progress: sync_engine::ProgressFn = {
        let splits = splits.clone();
        Arc::new(move |e: &BackfillEvent| {
            if let BackfillEvent::Split { .. } = e {
                *splits.lock().unwrap() += 1;
            }
        })
    };
    let o = engine
        .backfill(&opts(start, end), Some(progress))
        .await
        .unwrap();
    let run = succeeded(&o);
    assert_eq!(counts(&run), (4711, 4711, 0, 0, 0, 0, 0), "{run:?}");
    assert_eq!(o.count_requests, 0);
    assert!(*splits.lock().unwrap() >= 4);
    assert_is_fixture(&catalogue(&store).await, &features);
    let plan = windows(&store, &o).await;
    assert!(plan.len() > 11);
    assert!(plan.iter().all(|w| w.is_done()));
    assert_eq!(plan.iter().map(|w| w.events).sum::<i64>(), 4711);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_while_a_sync_runs_is_skipped() {
    let db = TestDb::sqlite();
    let mock = FdsnMock::new(Catalogue::from_fixture(WEEK_2018));
    let page1 = mock.hold_query(1); // the sync is still running while the backfill tries
    let server = fdsn_server(mock).await;
    let store = db.store().await;
    let client = client(&server);
    let engine = syncing_engine(store.clone(), &client);
    let StartOutcome::Started { run_id, handle } = engine.start(Trigger::Manual).await.unwrap()
    else {
        panic!("the sync should start");
    };
    let (start, end) = range();
    let o = engine.backfill(&opts(start, end), None).await.unwrap();
    assert_skipped_for(&o, run_id);
    page1.open();
    assert!(matches!(handle.await.unwrap(), SyncOutcome::Succeeded(_)));
    // Only the sync asked the upstream (a backfill's requests carry an `endtime`); the
    // skipped backfill wrote no run row.
    let seen = seen_requests(&server).await;
    assert!(
        seen.iter().all(|(_, q)| !q.contains_key("endtime")),
        "{seen:?}"
    );
    assert_eq!(store.latest_runs(10).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_inverted_range_is_refused() {
    let db = TestDb::sqlite();
    let server = fdsn_server(FdsnMock::new(Catalogue::from_fixture(WEEK_2018))).await;
    let store = db.store().await;
    let client = client(&server);
    let engine = engine(store.clone(), &client, 100);
    let (start, _) = range();
    let err = engine
        .backfill(&opts(start, start), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("range"), "{err}");
    assert!(seen_requests(&server).await.is_empty());
}

/// A backfill reads the engine's own source: one that returns everything in one answer
/// (a summary feed) is refused before a run row is written; one that pages but cannot count
/// (EMSC's service) fails its run with the reason, having written no event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_without_history_or_count_cannot_be_backfilled() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let server = wiremock::MockServer::start().await;
    let url = format!("{}/feed.geojson", server.uri());
    let feed = Engine::new(
        store.clone(),
        Arc::new(sync_engine::FeedSource(
            quake_api::FeedClient::new(&url, http_opts()).unwrap(),
        )),
        EngineConfig::default(),
    );
    let (start, end) = range();
    let err = feed.backfill(&opts(start, end), None).await.unwrap_err();
    assert!(
        err.to_string().contains("no history to backfill") && err.to_string().contains(&url),
        "{err}"
    );
    assert!(store.latest_runs(10).await.unwrap().is_empty());

    let emsc = Engine::new(
        store.clone(),
        Arc::new(sync_engine::EmscSource(
            quake_api::EmscClient::new(&fdsn_url(&server), http_opts()).unwrap(),
        )),
        EngineConfig::default(),
    );
    let o = emsc.backfill(&opts(start, end), None).await.unwrap();
    let SyncOutcome::Failed(run) = o.outcome else {
        panic!("{:?}", o.outcome)
    };
    let error = run.error.unwrap_or_default();
    assert!(error.contains("cannot count events"), "{error}");
    assert!(catalogue(&store).await.is_empty());
    // Nothing was asked of either upstream.
    assert!(seen_requests(&server).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_while_another_process_syncs_is_skipped_on_postgres() {
    let Some(db) = TestDb::postgres("a_backfill_while_another_process_syncs_is_skipped").await
    else {
        return;
    };
    let mock = FdsnMock::new(Catalogue::from_fixture(WEEK_2018));
    let page1 = mock.hold_query(1); // the sync is still running while the backfill tries
    let server = fdsn_server(mock).await;
    // Two engines, two pools: as two processes would be.
    let (store_a, store_b) = (db.store().await, db.store().await);
    let client = client(&server);
    let syncing = syncing_engine(store_a, &client);
    let backfilling = engine(store_b.clone(), &client, 100);
    let StartOutcome::Started { run_id, handle } = syncing.start(Trigger::Manual).await.unwrap()
    else {
        panic!("the sync should start");
    };
    let (start, end) = range();
    let o = backfilling.backfill(&opts(start, end), None).await.unwrap();
    assert_skipped_for(&o, run_id);
    page1.open();
    assert!(matches!(handle.await.unwrap(), SyncOutcome::Succeeded(_)));
    // Once the sync is over, the backfill runs.
    let o = backfilling.backfill(&opts(start, end), None).await.unwrap();
    let run = succeeded(&o);
    assert_eq!(counts(&run), (4711, 0, 0, 4711, 0, 0, 0), "{run:?}");
}

/// A backfill whose cluster lock is lost (its session killed, as a PostgreSQL restart
/// does) stops before its next page write, like a sync; a rerun completes the range.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_that_loses_its_lock_writes_nothing_more() {
    let Some(db) = TestDb::postgres("backfill_loses_its_lock").await else {
        return;
    };
    let mock = FdsnMock::new(Catalogue::from_fixture(WEEK_2018)).with_cap(CAP);
    let page2 = mock.hold_query(2);
    let server = fdsn_server(mock.clone()).await;
    let store = db.store().await;
    let client = client(&server);
    let engine = engine(store.clone(), &client, 100);
    let (start, end) = range();
    let task = tokio::spawn({
        let engine = engine.clone();
        async move { engine.backfill(&opts(start, end), None).await }
    });
    // The lock's session is killed while page 2 is held upstream.
    page2.arrived().await;
    kill_lock_holder(&store, &db.url).await;
    page2.open();
    let o = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let SyncOutcome::Failed(run) = &o.outcome else {
        panic!("a backfill without its lock must fail: {:?}", o.outcome)
    };
    assert!(
        run.error
            .as_deref()
            .unwrap_or("")
            .contains("lost the cluster-wide sync lock"),
        "{run:?}"
    );
    let written = catalogue(&store).await.len();
    assert!(
        written < 4711 && written as i64 == run.inserted,
        "{written} rows, {run:?}"
    );
    let again = engine.backfill(&opts(start, end), None).await.unwrap();
    succeeded(&again);
    assert_is_fixture(&catalogue(&store).await, &fixture());
}
