//! Paging that does not depend on the result set standing still, and cannot run away
//! (issue 13; SPEC section 3, step 3).
//!
//! - A catalogue that moves between two pages (events before the read position merged
//!   away, the event at the read position merged away, events inserted and deleted): the
//!   run loses nothing it could see, and after the next run the catalogue equals the
//!   upstream's. The upstream is held at a gate between the pages; no sleeps.
//! - Upstreams that do not page as asked (a static EMSC or USGS answer, an answer that
//!   honours `limit` only, a count the upstream then exceeds, the page ceiling): the run
//!   ends at once with an error naming the upstream's behaviour, keeps what it committed
//!   before (once) and leaves the cursor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::*;
use quake_api::{EmscClient, FdsnClient};
use quake_store::testing::TestDb;
use quake_store::{Store, both_backends};
use serde_json::{Value, json};
use sync_engine::{BackfillOptions, EmscSource, Engine, EngineConfig, FdsnSource, Source, Trigger};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const WEEK_45: &str = "usgs_4.5_week_2021-07-22T2023Z.geojson"; // 78 events
const EMSC: &str = "emsc_fdsn_json_2025-04-26_turkey-region_minmag2.5.json"; // 430 events
const USGS_3098: &str = "usgs_all_week_2021-07-20T1423Z.geojson"; // 3098 events

fn start_2021() -> chrono::DateTime<chrono::Utc> {
    "2021-07-01T00:00:00Z".parse().unwrap()
}

fn engine_for(store: Store, source: Arc<dyn Source>, cfg: EngineConfig) -> Engine {
    Engine::new(
        store,
        source,
        EngineConfig {
            start_time: Some(start_2021()),
            ..cfg
        },
    )
}

fn engine(store: Store, url: &str, cfg: EngineConfig) -> Engine {
    let source = Arc::new(FdsnSource(FdsnClient::new(url, http_opts()).unwrap()));
    engine_for(store, source, cfg)
}

fn batch(n: u32) -> EngineConfig {
    EngineConfig {
        batch_size: n,
        ..EngineConfig::default()
    }
}

fn fid(f: &Value) -> String {
    f["id"].as_str().unwrap().to_string()
}

fn ms_of(f: &Value, key: &str) -> i64 {
    f["properties"][key].as_i64().unwrap()
}

/// What a catalogue holds: the rows that are not merged (id → `updated` ms and status),
/// and the merged ones (id → the id it merged into).
type State = (BTreeMap<String, (i64, String)>, BTreeMap<String, String>);

fn upstream_state(cat: &Catalogue, merged: &[(&str, &str)]) -> State {
    let rows = cat
        .features
        .iter()
        .map(|f| {
            (
                fid(f),
                (
                    ms_of(f, "updated"),
                    f["properties"]["status"].as_str().unwrap().to_lowercase(),
                ),
            )
        })
        .collect();
    let merged = merged
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    (rows, merged)
}

async fn stored_state(store: &Store) -> State {
    let mut rows = BTreeMap::new();
    let mut merged = BTreeMap::new();
    for (id, e) in catalogue(store).await {
        match e.merged_into {
            Some(into) => {
                merged.insert(id, into);
            }
            None => {
                rows.insert(id, (e.updated.0.timestamp_millis(), e.status.clone()));
            }
        }
    }
    (rows, merged)
}

/// The upstream's changes "between two pages": the read position is event 20 of 78 by
/// time (pages of 20). Returns the merges made (alias, survivor).
///
/// - event 5 (read) is associated into event 40 (not read yet): it leaves the result set
///   and its id moves into event 40's `ids`: offset paging would start page 2 one event
///   late and never read event 21;
/// - event 20, the one AT the read position, is associated into event 60;
/// - event 2 into event 7 (both read: the survivor's revision is behind the position);
/// - event 10 (read) is deleted;
/// - a new event is inserted between events 3 and 4 (behind the position) and another
///   between events 50 and 51 (ahead of it).
fn move_the_catalogue(cat: &mut Catalogue) -> Vec<(String, String)> {
    let sorted = by_time(cat);
    let id = |n: usize| fid(&sorted[n - 1]);
    let revised = cat.generated_ms + 60_000;
    let mut merges = Vec::new();
    for (alias, survivor) in [(5, 40), (20, 60), (2, 7)] {
        let (alias, survivor) = (id(alias), id(survivor));
        cat.features.retain(|f| fid(f) != alias);
        let s = cat
            .features
            .iter_mut()
            .find(|f| fid(f) == survivor)
            .unwrap();
        let ids = s["properties"]["ids"].as_str().unwrap().to_string();
        s["properties"]["ids"] = json!(format!("{ids}{alias},"));
        s["properties"]["updated"] = json!(revised);
        merges.push((alias, survivor));
    }
    let deleted = id(10);
    let d = cat.features.iter_mut().find(|f| fid(f) == deleted).unwrap();
    d["properties"]["status"] = json!("deleted");
    d["properties"]["updated"] = json!(revised);
    for (after, new_id) in [(3, "zz_behind"), (50, "zz_ahead")] {
        let mut f = sorted[after - 1].clone();
        f["id"] = json!(new_id);
        f["properties"]["ids"] = json!(format!(",{new_id},"));
        f["properties"]["code"] = json!(new_id);
        f["properties"]["time"] = json!(ms_of(&f, "time") + 1_000);
        f["properties"]["updated"] = json!(revised);
        cat.features.push(f);
    }
    cat.generated_ms += 120_000;
    merges
}

both_backends!(
    a_catalogue_that_moves_between_pages_loses_nothing,
    async |db: TestDb| {
        let store = db.store().await;
        let before = Catalogue::from_fixture(WEEK_45);
        let sorted = by_time(&before);
        let mock = FdsnMock::new(before.clone());
        let page2 = mock.hold_query(2);
        let server = fdsn_server(mock.clone()).await;
        let engine = engine(store.clone(), &fdsn_url(&server), batch(20));
        let run = tokio::spawn({
            let engine = engine.clone();
            async move { engine.sync_once(Trigger::Cli).await }
        });

        page2.arrived().await; // page 2 asked
        pages_committed(engine.subscribe(), 1).await; // page 1 (events 1..=20 by time)
        assert_eq!(catalogue(&store).await.len(), 20);
        let mut after = before.clone();
        let merges = move_the_catalogue(&mut after);
        mock.set(after.clone());
        page2.open();
        let r1 = succeeded(run.await.unwrap().unwrap());

        // Nothing the run could see is lost: event 21, first in line for page 2, is there.
        let (rows, merged) = stored_state(&store).await;
        let e21 = fid(&sorted[20]);
        assert!(rows.contains_key(&e21), "event 21 ({e21}) was skipped");
        // Every event at or after the read position's second, as the upstream has it now
        // (the merges into events read after it included), was read once.
        let position = ms_of(&sorted[19], "time") / 1000 * 1000;
        let ahead = after
            .features
            .iter()
            .filter(|f| ms_of(f, "time") >= position)
            .count() as i64;
        assert_eq!(
            (r1.fetched, r1.inserted, r1.merged),
            (20 + ahead, 20 + ahead - 2, 2),
            "{r1:?}"
        );
        // What the run could not see is behind the read position and updated after the
        // run's cursor: the inserted event, the deletion and the merge into event 7.
        let merged_so_far: Vec<(&str, &str)> = merges[..2]
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let (mut want_rows, want_merged) = upstream_state(&after, &merged_so_far);
        want_rows.remove("zz_behind");
        for old in [&sorted[9], &sorted[6], &sorted[1]] {
            want_rows.insert(fid(old), (ms_of(old, "updated"), "reviewed".into()));
        }
        assert_eq!(
            rows, want_rows,
            "run 1: all but the changes behind the position"
        );
        assert_eq!(merged, want_merged);
        let c = cursor(&store, "usgs").await.unwrap();
        assert!(c.timestamp_millis() < after.generated_ms - 120_000 + 60_000);

        // The next run reads what changed since the cursor: the catalogue equals the
        // upstream's.
        let r2 = succeeded(engine.sync_once(Trigger::Cli).await.unwrap());
        let all: Vec<(&str, &str)> = merges
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(stored_state(&store).await, upstream_state(&after, &all));
        assert_eq!(
            (r2.inserted, r2.deleted, r2.merged),
            (1, 1, 1),
            "zz_behind, event 10, event 2 into 7: {r2:?}"
        );
        eprintln!("moving catalogue: run 1 {r1:?}\nrun 2 {r2:?}");
    }
);

/// The same moving catalogue under a backfill window (pages of 20 inside one window).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_window_that_moves_between_pages_loses_nothing() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let before = Catalogue::from_fixture(WEEK_45);
    let sorted = by_time(&before);
    let mock = FdsnMock::new(before.clone());
    let page2 = mock.hold_query(2);
    let server = fdsn_server(mock.clone()).await;
    let engine = engine(store.clone(), &fdsn_url(&server), batch(20));
    let mut opts =
        BackfillOptions::new(start_2021(), Some("2021-08-01T00:00:00Z".parse().unwrap()));
    opts.pause = std::time::Duration::ZERO;
    let task = tokio::spawn({
        let engine = engine.clone();
        async move { engine.backfill(&opts, None).await }
    });
    page2.arrived().await;
    let mut after = before.clone();
    move_the_catalogue(&mut after);
    mock.set(after.clone());
    page2.open();
    let o = task.await.unwrap().unwrap();
    let run = succeeded(o.outcome);
    let (rows, _) = stored_state(&store).await;
    assert!(rows.contains_key(&fid(&sorted[20])), "event 21 was skipped");
    // Every event there from start to end is stored.
    for f in &after.features {
        let id = fid(f);
        if before.features.iter().any(|b| fid(b) == id) {
            assert!(
                catalogue(&store).await.contains_key(&id),
                "{id} lost: {run:?}"
            );
        }
    }
}

/// A static answer (a cache keyed by path, a mirror that drops query parameters) ignoring
/// `limit`: the run ends at its first page, writes nothing of it, and says why.
async fn static_upstream(body: Vec<u8>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fdsnws/event/1/query"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .mount(&server)
        .await;
    server
}

/// A `count` method that answers `n`, whatever is asked.
async fn mount_count(server: &MockServer, n: u64) {
    Mock::given(method("GET"))
        .and(path("/fdsnws/event/1/count"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            format!(r#"{{"count":{n},"maxAllowed":20000}}"#),
            "application/json",
        ))
        .mount(server)
        .await;
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).unwrap()
}

both_backends!(
    a_static_emsc_answer_ends_the_run_at_once,
    async |db: TestDb| {
        let store = db.store().await;
        let server = static_upstream(fixture_bytes(EMSC)).await;
        let emsc = EmscClient::new(&fdsn_url(&server), http_opts()).unwrap();
        let engine = engine_for(store.clone(), Arc::new(EmscSource(emsc)), batch(100));
        let run = failed(engine.sync_once(Trigger::Cli).await.unwrap());
        let err = run.error.clone().unwrap();
        assert!(
            err.contains(
                "the upstream ignores `limit`: it answered 430 records to a request for at most 100"
            ),
            "{err}"
        );
        assert_eq!((run.pages, run.fetched), (0, 0), "{run:?}");
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
        assert!(catalogue(&store).await.is_empty());
        assert_eq!(cursor(&store, "emsc").await, None);

        // With pages larger than the answer, its order gives it away (EMSC answered newest
        // first: `orderby` was ignored too).
        let engine = engine_for(
            store.clone(),
            Arc::new(EmscSource(
                EmscClient::new(&fdsn_url(&server), http_opts()).unwrap(),
            )),
            batch(1000),
        );
        let run = failed(engine.sync_once(Trigger::Cli).await.unwrap());
        let err = run.error.clone().unwrap();
        assert!(err.contains("ignores `orderby=time-asc`"), "{err}");
        assert_eq!(run.fetched, 0);
        eprintln!("static EMSC answer: {err}");
    }
);

both_backends!(
    a_static_usgs_answer_ends_the_run_at_once,
    async |db: TestDb| {
        let store = db.store().await;
        let server = static_upstream(fixture_bytes(USGS_3098)).await;
        let engine = engine(store.clone(), &fdsn_url(&server), batch(500));
        let run = failed(engine.sync_once(Trigger::Cli).await.unwrap());
        let err = run.error.clone().unwrap();
        assert!(
            err.contains("it answered 3098 records to a request for at most 500"),
            "{err}"
        );
        assert_eq!(
            (run.status.as_str(), run.pages, run.fetched),
            ("failed", 0, 0)
        );
        // The count request (a 404 here: a static copy has no `count`) and one page.
        assert_eq!(server.received_requests().await.unwrap().len(), 2);
        assert!(catalogue(&store).await.is_empty());
        assert_eq!(cursor(&store, "usgs").await, None);
        let row = store.run(run.id).await.unwrap().unwrap();
        assert_eq!(
            row.error.as_deref(),
            Some(err.as_str()),
            "the run row says so"
        );
        eprintln!("static USGS answer: {err}");
    }
);

// An upstream that honours `limit` but not `starttime` (the same first events for every
// page): page 1 is committed once, page 2 ends the run.
both_backends!(
    an_upstream_ignoring_starttime_ends_the_run,
    async |db: TestDb| {
        let store = db.store().await;
        let cat = Catalogue::from_fixture(WEEK_45);
        let first20: Vec<Value> = by_time(&cat).into_iter().take(20).collect();
        let body = json!({
            "type": "FeatureCollection",
            "metadata": {"generated": cat.generated_ms, "count": 20},
            "features": first20,
        });
        let server = static_upstream(body.to_string().into_bytes()).await;
        let engine = engine(store.clone(), &fdsn_url(&server), batch(20));
        let run = failed(engine.sync_once(Trigger::Cli).await.unwrap());
        let err = run.error.clone().unwrap();
        assert!(err.contains("the upstream ignores `starttime`"), "{err}");
        assert_eq!(
            (run.pages, run.fetched, run.inserted),
            (1, 20, 20),
            "{run:?}"
        );
        assert_eq!(catalogue(&store).await.len(), 20, "page 1 stays, once");
        assert_eq!(cursor(&store, "usgs").await, None);
        eprintln!("limit honoured, starttime ignored: {err}");
    }
);

// The count-derived ceiling: an upstream that counts 5 events and keeps sending new ones
// is stopped after 3 x 3 + 10 = 19 pages of 2, not sync.max_pages.
both_backends!(
    a_count_the_upstream_exceeds_ends_the_run,
    async |db: TestDb| {
        let store = db.store().await;
        let mock = FdsnMock::new(Catalogue::from_fixture(WEEK_45));
        let server = MockServer::start().await;
        mount_count(&server, 5).await;
        Mock::given(method("GET"))
            .and(path("/fdsnws/event/1/query"))
            .respond_with(mock.clone())
            .mount(&server)
            .await;
        let engine = engine(store.clone(), &fdsn_url(&server), batch(2));
        let run = failed(engine.sync_once(Trigger::Cli).await.unwrap());
        let err = run.error.clone().unwrap();
        assert!(
            err.starts_with("stopped after 19 page requests: the ceiling is 19")
                && err.contains("the 5 events the upstream counted"),
            "{err}"
        );
        assert_eq!(mock.queries.load(Ordering::SeqCst), 19);
        assert_eq!(run.pages, 19);
        assert_eq!(
            catalogue(&store).await.len() as i64,
            run.fetched,
            "each once"
        );
        assert_eq!(cursor(&store, "usgs").await, None);
    }
);

both_backends!(a_run_stops_at_max_pages, async |db: TestDb| {
    let store = db.store().await;
    let mock = FdsnMock::new(Catalogue::from_fixture(WEEK_45));
    let server = MockServer::start().await; // no `count`: the hard ceiling applies
    Mock::given(method("GET"))
        .and(path("/fdsnws/event/1/query"))
        .respond_with(mock.clone())
        .mount(&server)
        .await;
    let cfg = EngineConfig {
        batch_size: 20,
        max_pages: 2,
        ..EngineConfig::default()
    };
    let engine = engine(store.clone(), &fdsn_url(&server), cfg);
    let run = failed(engine.sync_once(Trigger::Cli).await.unwrap());
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("stopped after 2 page requests") && error.contains("sync.max_pages = 2"),
        "{error}"
    );
    assert_eq!(
        (run.pages, run.fetched, run.inserted),
        (2, 39, 39),
        "{run:?}"
    );
    assert_eq!(
        catalogue(&store).await.len(),
        39,
        "the two pages stay, once each"
    );
    assert_eq!(
        mock.queries.load(Ordering::SeqCst),
        2,
        "no third page was asked for"
    );
    assert_eq!(
        cursor(&store, "usgs").await,
        None,
        "the cursor does not move"
    );
});

/// A backfill window whose upstream ignores `limit` fails the backfill at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_against_a_static_answer_ends_at_once() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let server = static_upstream(fixture_bytes(USGS_3098)).await;
    mount_count(&server, 3098).await;
    let engine = engine(store.clone(), &fdsn_url(&server), batch(500));
    let mut opts = BackfillOptions::new(
        "2021-07-13T00:00:00Z".parse().unwrap(),
        Some("2021-07-21T00:00:00Z".parse().unwrap()),
    );
    opts.pause = std::time::Duration::ZERO;
    let o = engine.backfill(&opts, None).await.unwrap();
    let run = failed(o.outcome);
    let err = run.error.clone().unwrap();
    assert!(
        err.contains("it answered 3098 records to a request for at most 500"),
        "{err}"
    );
    assert_eq!((o.count_requests, o.query_requests), (1, 1));
    assert!(catalogue(&store).await.is_empty());
}
