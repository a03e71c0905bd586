//! Chaining (issue 6): a quakesync B whose source is another quakesync A's
//! `/fdsnws/event/1/query`, over a real loopback port, syncs A's catalogue, cursors and all.
//! A is a SQLite catalogue filled from real USGS fixtures (plus a deleted and a merged
//! event); B runs on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod read_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use quake_api::{FdsnClient, HttpOptions};
use quake_store::testing::TestDb;
use quake_store::{Earthquake, Store, SyncRun, Ts, both_backends};
use read_support::*;
use sync_engine::{Engine, EngineConfig, FdsnSource, SyncOutcome, Trigger};

const OLD: &str = "usgs_all_week_2021-07-20T1423Z.geojson";
const NEW: &str = "usgs_all_week_2021-07-22T2039Z.geojson";
const BATCH: u32 = 500;

fn succeeded(o: SyncOutcome) -> SyncRun {
    match o {
        SyncOutcome::Succeeded(run) => run,
        other => panic!("expected a successful run, got {other:?}"),
    }
}

async fn rows(store: &Store) -> Vec<Earthquake> {
    store.all_events().await.unwrap()
}

/// What a reader of the catalogue sees of a row (bookkeeping columns aside).
type Seen = (
    (String, String),
    Ts,
    Ts,
    Option<f64>,
    Option<String>,
    Option<String>,
    Option<String>,
    (f64, f64, Option<f64>),
    String,
    (Option<String>, Option<String>, Option<String>),
    (
        Option<i32>,
        Option<i32>,
        Option<i32>,
        Option<String>,
        Option<String>,
    ),
    String,
);

fn seen(r: &Earthquake) -> Seen {
    (
        (r.ids.clone(), r.status.clone()),
        r.time,
        r.updated,
        r.magnitude,
        r.mag_type.clone(),
        r.place.clone(),
        r.title.clone(),
        (r.longitude, r.latitude, r.depth_km),
        r.content_hash.clone(),
        (r.event_type.clone(), r.net.clone(), r.code.clone()),
        (r.tsunami, r.sig, r.felt, r.alert.clone(), r.url.clone()),
        r.source.clone(),
    )
}

/// The rows that are events (not merged away), by id.
fn events(all: &[Earthquake]) -> BTreeMap<String, Seen> {
    all.iter()
        .filter(|r| r.merged_into.is_none())
        .map(|r| (r.id.clone(), seen(r)))
        .collect()
}

fn assert_same_catalogue(a: &[Earthquake], b: &[Earthquake]) {
    let (ea, eb) = (events(a), events(b));
    let only_a: Vec<_> = ea.keys().filter(|k| !eb.contains_key(*k)).take(5).collect();
    let only_b: Vec<_> = eb.keys().filter(|k| !ea.contains_key(*k)).take(5).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "ids differ: only in A {only_a:?}, only in B {only_b:?}"
    );
    for (id, row_a) in &ea {
        assert_eq!(row_a, &eb[id], "event {id} differs between A and B");
    }
}

both_backends!(b_syncs_from_a, async |db_b: TestDb| {
    // Catalogue A: a real week, a deleted event, and a pair where one merged into the other,
    // every row with the upstream's properties as the engine stores them (a row stored before
    // issue 16 has none: B then stores the properties A made from its columns, and their
    // content hashes differ).
    let db_a = TestDb::sqlite();
    let store_a = db_a.store().await;
    fill(&store_a, &fixture_records(OLD), 1000).await;
    let mut gone = rec("xxgone", &[], "2021-07-19T12:00:00Z", Some(2.0));
    gone.status = "deleted".into();
    fill(
        &store_a,
        &[
            gone.with_usgs_properties(),
            rec("xxold", &[], "2021-07-19T13:00:00Z", Some(3.0)).with_usgs_properties(),
            rec("xxsolo", &[], "2021-07-19T14:00:00Z", Some(3.5)).with_usgs_properties(),
        ],
        10,
    )
    .await;
    fill(
        &store_a,
        &[rec("xxnew", &["xxold"], "2021-07-19T13:00:01Z", Some(3.1)).with_usgs_properties()],
        10,
    )
    .await;
    // A's rows were written an hour ago: B's second run (cursor = A's `generated` - 300 s)
    // must then see nothing.
    set_last_changed(&store_a, Ts(Utc::now() - chrono::Duration::hours(1))).await;
    let a_rows = rows(&store_a).await;
    let a_events = events(&a_rows).len();
    assert_eq!(a_rows.len(), a_events + 1, "one merged row in A");
    let (url_a, server) = serve(state_for(idle_engine(store_a.clone())));

    // Catalogue B syncs from A.
    let store_b = db_b.store().await;
    let client = FdsnClient::new(
        &format!("{url_a}{QUERY}"),
        HttpOptions {
            max_retries: 0,
            timeout: Duration::from_secs(30),
            ..HttpOptions::default()
        },
    )
    .unwrap();
    let engine_b = Engine::new(
        store_b.clone(),
        Arc::new(FdsnSource(client)),
        EngineConfig {
            batch_size: BATCH,
            start_time: Some("2021-07-01T00:00:00Z".parse().unwrap()),
            ..EngineConfig::default()
        },
    );

    let before = Utc::now();
    let run1 = succeeded(engine_b.sync_once(Trigger::Cli).await.unwrap());
    let after = Utc::now();
    let n = a_events as i64;
    assert_eq!(run1.fetched, n, "{run1:?}");
    assert_eq!(run1.inserted + run1.deleted, n, "{run1:?}");
    assert_eq!(
        run1.deleted, 1,
        "the deleted event arrives deleted: {run1:?}"
    );
    assert_eq!(
        (run1.updated, run1.merged, run1.rejected),
        (0, 0, 0),
        "{run1:?}"
    );
    assert_eq!(run1.pages, n / i64::from(BATCH) + 1, "{run1:?}");
    assert_same_catalogue(&a_rows, &rows(&store_b).await);
    assert!(
        rows(&store_b).await.iter().all(|r| r.id != "xxold"),
        "A's merged row is not an event: B never gets it"
    );
    // B's cursor: A's `generated` (the moment of A's first answer) minus the overlap.
    let cursor = {
        store_b
            .sync_state("usgs")
            .await
            .unwrap()
            .and_then(|s| s.cursor)
            .expect("B stored a cursor")
            .0
    };
    let overlap = chrono::Duration::seconds(300);
    assert!(
        cursor >= before - overlap - chrono::Duration::seconds(1) && cursor <= after - overlap,
        "cursor {cursor} not within [{before}, {after}] - 300 s"
    );

    // Second run: the cursor asks A for what changed since; nothing did.
    let run2 = succeeded(engine_b.sync_once(Trigger::Cli).await.unwrap());
    assert_eq!(
        (
            run2.fetched,
            run2.inserted,
            run2.updated,
            run2.deleted,
            run2.merged
        ),
        (0, 0, 0, 0, 0),
        "{run2:?}"
    );
    assert_same_catalogue(&a_rows, &rows(&store_b).await);

    // A moves on: a later snapshot of the week (updates, new events), an event deleted, and
    // one merged into a new event. Their upstream `updated` times (2021) are far older than
    // B's cursor: B must still get them, because A serves what it changed since the cursor.
    fill(&store_a, &fixture_records(NEW), 1000).await;
    let mut solo_gone = rec("xxsolo", &[], "2021-07-19T14:00:00Z", Some(3.5));
    solo_gone.status = "deleted".into();
    solo_gone.updated = Ts("2021-07-23T00:00:00Z".parse().unwrap());
    fill(&store_a, &[solo_gone.with_usgs_properties()], 10).await;
    let mut into = rec("xxinto", &["xx00000001"], "2021-07-19T15:00:01Z", Some(2.6));
    into.updated = Ts("2021-07-23T00:00:00Z".parse().unwrap());
    let into = into.with_usgs_properties();
    fill(
        &store_a,
        &[rec("xx00000001", &[], "2021-07-19T15:00:00Z", Some(2.5)).with_usgs_properties()],
        10,
    )
    .await;
    let run3 = succeeded(engine_b.sync_once(Trigger::Cli).await.unwrap());
    assert!(run3.inserted > 0 && run3.updated > 0, "{run3:?}");
    assert_eq!(run3.deleted, 1, "{run3:?}");
    assert_same_catalogue(&rows(&store_a).await, &rows(&store_b).await);

    // A merges xx00000001 (which B holds) into xxinto: B follows. (A's earlier changes aged
    // past B's overlap first, so this run fetches only the one event that changed.)
    set_last_changed(&store_a, Ts(Utc::now() - chrono::Duration::hours(1))).await;
    fill(&store_a, &[into], 10).await;
    let run4 = succeeded(engine_b.sync_once(Trigger::Cli).await.unwrap());
    assert_eq!(
        (run4.fetched, run4.merged, run4.rejected),
        (1, 1, 0),
        "xxinto arrives and merges B's copy of xx00000001: {run4:?}"
    );
    let a_rows = rows(&store_a).await;
    let b_rows = rows(&store_b).await;
    assert_same_catalogue(&a_rows, &b_rows);
    let merged_in_b = b_rows.iter().find(|r| r.id == "xx00000001").unwrap();
    assert_eq!(merged_in_b.merged_into.as_deref(), Some("xxinto"));

    server.stop(true).await;
});
