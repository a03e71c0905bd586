//! The engine end to end: a mock upstream serving real fixtures, real databases (SQLite
//! always, PostgreSQL at `TEST_DATABASE_URL`), the catalogue checked row by row.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use quake_api::{FdsnClient, FeedClient};
use quake_store::testing::TestDb;
use quake_store::{Store, both_backends};
use serde_json::Value;
use sync_engine::{Engine, EngineConfig, FdsnSource, FeedSource, SyncOutcome, Trigger};

const PAIR_A_OLD: &str = "usgs_all_week_2021-07-20T1423Z.geojson";
const PAIR_A_NEW: &str = "usgs_all_week_2021-07-22T2039Z.geojson";

fn start_2021() -> chrono::DateTime<chrono::Utc> {
    "2021-07-01T00:00:00Z".parse().unwrap()
}

fn fdsn_engine(store: Store, url: &str, batch: u32) -> Engine {
    fdsn_engine_from(store, url, batch, start_2021())
}

fn fdsn_engine_from(
    store: Store,
    url: &str,
    batch: u32,
    start: chrono::DateTime<chrono::Utc>,
) -> Engine {
    let source = Arc::new(FdsnSource(FdsnClient::new(url, http_opts()).unwrap()));
    Engine::new(
        store,
        source,
        EngineConfig {
            batch_size: batch,
            start_time: Some(start),
            ..EngineConfig::default()
        },
    )
}

fn features_by_id(file: &str) -> HashMap<String, Value> {
    read_fixture(file)["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_string(), f.clone()))
        .collect()
}

both_backends!(feed_pair_a_matches_pair_diffs, async |db: TestDb| {
    let server = wiremock::MockServer::start().await;
    let store = db.store().await;
    let feed = FeedClient::new(&format!("{}/feed.geojson", server.uri()), http_opts()).unwrap();
    let engine = Engine::new(
        store.clone(),
        Arc::new(FeedSource(feed)),
        EngineConfig::default(),
    );

    serve_feed(&server, PAIR_A_OLD).await;
    let r1 = succeeded(engine.sync_once(Trigger::Cli).await.unwrap());
    assert_eq!(counts(&r1), (3098, 3098, 0, 0, 0, 0, 0));

    serve_feed(&server, PAIR_A_NEW).await;
    let r2 = succeeded(engine.sync_once(Trigger::Cli).await.unwrap());
    assert_eq!(counts(&r2), (3280, 1340, 202, 1735, 0, 3, 0), "{r2:?}");

    let cat = catalogue(&store).await;
    assert_eq!(cat.len(), 4441);
    let by_state = store.catalogue_counts().await.unwrap();
    assert_eq!(
        (by_state.live, by_state.deleted, by_state.merged),
        (4438, 0, 3)
    );
    // a reviewed magnitude revision
    assert_eq!(cat["uu60446067"].magnitude, Some(1.07));
    // place/title-only changes with `updated` untouched are applied
    let diffs = read_fixture("pair_diffs.json");
    let pair = diffs["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["a"] == PAIR_A_OLD)
        .unwrap();
    let newer = features_by_id(PAIR_A_NEW);
    let same_updated = pair["changed_with_same_updated"].as_array().unwrap();
    assert_eq!(same_updated.len(), 35);
    for id in same_updated {
        let id = id.as_str().unwrap();
        assert_eq!(
            cat[id].place.as_deref(),
            newer[id]["properties"]["place"].as_str(),
            "{id}"
        );
    }
    // preferred ids that changed: the old row is merged into the new one
    for change in pair["preferred_id_changed"].as_array().unwrap() {
        let (old, new) = (
            change["old_id"].as_str().unwrap(),
            change["new_id"].as_str().unwrap(),
        );
        assert_eq!(cat[old].merged_into.as_deref(), Some(new), "{old}");
        assert_eq!(cat[new].merged_into, None);
    }
    assert_eq!(cat["us7000enmc"].merged_into.as_deref(), Some("ci39746767"));
    assert_eq!(
        cat["ak02198hmo8v"].merged_into.as_deref(),
        Some("us7000enm4")
    );
    assert_eq!(cat["mb80515939"].merged_into.as_deref(), Some("uw61755601"));
    // late arrivals are inserted
    for id in pair["late_arrivals_in_b"]["examples"].as_array().unwrap() {
        assert!(cat.contains_key(id.as_str().unwrap()), "{id}");
    }
    // status transitions applied
    let reviewed_now = newer
        .values()
        .filter(|f| f["properties"]["status"] == "reviewed")
        .count();
    let reviewed_stored = cat
        .values()
        .filter(|e| e.status == "reviewed" && newer.contains_key(&e.id))
        .count();
    assert_eq!(reviewed_stored, reviewed_now);

    // the same snapshot again writes nothing
    let r3 = succeeded(engine.sync_once(Trigger::Cli).await.unwrap());
    assert_eq!(counts(&r3), (3280, 0, 0, 3280, 0, 0, 0));
    assert_eq!(catalogue(&store).await, cat, "a repeated sync changed rows");
});

both_backends!(fdsn_pair_a_pages_and_cursor, async |db: TestDb| {
    let old = Catalogue::from_fixture(PAIR_A_OLD);
    let new = Catalogue::from_fixture(PAIR_A_NEW);
    let mock = FdsnMock::new(old.clone());
    let server = fdsn_server(mock.clone()).await;
    let store = db.store().await;
    let engine = fdsn_engine(store.clone(), &fdsn_url(&server), 500);

    let r1 = succeeded(engine.sync_once(Trigger::Cli).await.unwrap());
    assert_eq!(counts(&r1), (3098, 3098, 0, 0, 0, 0, 0));
    let (counted, q1) = split_count(seen_requests(&server).await);
    assert_eq!(counted.len(), 1, "one count per run, for the page ceiling");
    assert_eq!(counted[0]["starttime"], "2021-07-01T00:00:00");
    assert_eq!(r1.pages as usize, q1.len());
    // Keyset pages: each starts at the second of the last event of the page before.
    let starts = keyset_starts(&old, 500, "2021-07-01T00:00:00");
    assert_eq!(
        q1.iter()
            .map(|q| q["starttime"].clone())
            .collect::<Vec<_>>(),
        starts
    );
    assert_eq!(q1.len(), 7, "3098 events in pages of 500");
    for q in &q1 {
        assert_eq!(q["format"], "geojson");
        assert_eq!(q["orderby"], "time-asc");
        assert_eq!(q["limit"], "500");
        assert_eq!(q["includedeleted"], "true");
        assert!(!q.contains_key("offset"), "keyset pages carry no offset");
        assert!(!q.contains_key("updatedafter"), "first run has no cursor");
    }
    // cursor = the first page's metadata.generated (2021-07-20T14:23:55Z) minus 300 s
    let cursor_ms = old.generated_ms - 300_000;
    let state = store.sync_state("usgs").await.unwrap().unwrap();
    assert_eq!(state.cursor.map(|t| t.0), Some(ms(cursor_ms)));

    server.reset().await;
    mock.set(new.clone());
    mount_fdsn(&server, &mock).await;
    let r2 = succeeded(engine.sync_once(Trigger::Cli).await.unwrap());
    let q2 = seen_queries(&server).await;
    assert!(
        q2.iter()
            .all(|q| q["updatedafter"] == "2021-07-20T14:18:55"),
        "{q2:?}"
    );

    // What those queries imply: every old event, plus each new event updated at or after
    // the cursor; an old row listed in a fetched event's ids is merged into it.
    let fetched: Vec<&Value> = new
        .features
        .iter()
        .filter(|f| f["properties"]["updated"].as_i64().unwrap() >= cursor_ms)
        .collect();
    assert_eq!(r2.fetched as usize, fetched.len());
    assert_eq!(r2.pages as usize, q2.len() - 1, "every query but the count");
    let mut expected: BTreeMap<String, (i64, Option<String>)> = old
        .features
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                (f["properties"]["updated"].as_i64().unwrap(), None),
            )
        })
        .collect();
    for f in &fetched {
        let id = f["id"].as_str().unwrap().to_string();
        let updated = f["properties"]["updated"].as_i64().unwrap();
        let entry = expected.entry(id.clone()).or_insert((updated, None));
        entry.0 = entry.0.max(updated);
        for alias in f["properties"]["ids"]
            .as_str()
            .unwrap()
            .split(',')
            .filter(|a| !a.is_empty() && *a != id)
        {
            if let Some(e) = expected.get_mut(alias) {
                e.1 = Some(id.clone());
            }
        }
    }
    let cat = catalogue(&store).await;
    let got: BTreeMap<String, (i64, Option<String>)> = cat
        .values()
        .map(|e| {
            (
                e.id.clone(),
                (e.updated.0.timestamp_millis(), e.merged_into.clone()),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(cat["us7000enmc"].merged_into.as_deref() == Some("ci39746767"));
});

both_backends!(
    bad_records_quarantined_and_duplicate_ids_resolved,
    async |db: TestDb| {
        let mut cat = Catalogue::from_fixture("usgs_fdsn_query_2021-11-09T2234Z_null-mag.geojson");
        let first = cat.features[0].clone();
        let id = first["id"].as_str().unwrap().to_string();
        let mut bad = first.clone();
        bad["id"] = "nc_bad_lat".into();
        bad["geometry"]["coordinates"][1] = 200.0.into();
        let mut no_id = first.clone();
        no_id["id"] = Value::Null;
        let mut newer = first.clone();
        newer["properties"]["updated"] =
            (first["properties"]["updated"].as_i64().unwrap() + 1000).into();
        newer["properties"]["place"] = "the newer copy".into();
        let mut older = first.clone();
        older["properties"]["updated"] =
            (first["properties"]["updated"].as_i64().unwrap() - 1000).into();
        older["properties"]["place"] = "the older copy".into();
        cat.features.extend([bad, no_id, newer, older]);
        let server = fdsn_server(FdsnMock::new(cat)).await;
        let store = db.store().await;
        let engine = fdsn_engine_from(store.clone(), &fdsn_url(&server), 100, ms(0));
        let run = succeeded(engine.sync_once(Trigger::Cli).await.unwrap());
        // 3 good + 2 duplicates of the first (one newer, one older) + 2 bad
        assert_eq!(counts(&run), (7, 3, 1, 1, 0, 0, 2), "{run:?}");
        let rows = catalogue(&store).await;
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[&id].place.as_deref(),
            Some("the newer copy"),
            "the newer `updated` wins"
        );
        assert_eq!(
            rows.values()
                .find(|e| e.magnitude.is_none())
                .map(|e| e.id.as_str()),
            Some("nc72955525")
        );
        let rejected = store.rejected_records(Some(run.id)).await.unwrap();
        assert_eq!(rejected.len(), 2);
        let lat = rejected
            .iter()
            .find(|r| r.source_id.as_deref() == Some("nc_bad_lat"))
            .expect("bad latitude kept");
        assert!(lat.reason.contains("latitude"), "{}", lat.reason);
        assert!(
            lat.payload.contains("\"nc_bad_lat\"") && lat.payload.contains("200"),
            "{}",
            lat.payload
        );
        let no_id = rejected
            .iter()
            .find(|r| r.source_id.is_none())
            .expect("record without id kept");
        assert!(no_id.payload.contains("\"id\":null"), "{}", no_id.payload);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_postgres_database_never_run_together() {
    let Some(db) = TestDb::postgres("two_engines").await else {
        return;
    };
    let mock = FdsnMock::new(Catalogue::from_fixture(
        "usgs_4.5_week_2021-07-22T2023Z.geojson",
    ));
    // The first page is held until both engines have tried: whichever takes the lock is
    // still running when the other tries.
    let page1 = mock.hold_query(1);
    let server = fdsn_server(mock).await;
    // Two stores: two pools, two in-process guards; only the advisory lock is shared.
    let a = fdsn_engine(db.store().await, &fdsn_url(&server), 100);
    let b = fdsn_engine(db.store().await, &fdsn_url(&server), 100);
    let release = async {
        // Opens the gate once one engine is held there and the other has been skipped.
        page1.arrived().await;
        let mut sa = a.subscribe();
        let mut sb = b.subscribe();
        tokio::select! {
            r = sa.wait_for(|s| s.skipped_total == 1) => { r.unwrap(); }
            r = sb.wait_for(|s| s.skipped_total == 1) => { r.unwrap(); }
        }
        page1.open();
    };
    let (ra, rb, ()) = tokio::join!(
        a.sync_once(Trigger::Cli),
        b.sync_once(Trigger::Scheduled),
        release
    );
    let outcomes = [ra.unwrap(), rb.unwrap()];
    let ran = outcomes
        .iter()
        .filter(|o| matches!(o, SyncOutcome::Succeeded(_)))
        .count();
    let skipped = outcomes
        .iter()
        .filter(|o| matches!(o, SyncOutcome::Skipped { .. }))
        .count();
    assert_eq!((ran, skipped), (1, 1), "{outcomes:?}");
    assert_eq!(
        a.store().latest_runs(10).await.unwrap().len(),
        1,
        "a skipped sync writes no run row"
    );
    assert_eq!(a.status().skipped_total + b.status().skipped_total, 1);
}

both_backends!(
    killed_between_pages_then_abandoned_and_completed,
    async |db: TestDb| {
        let fixture = "usgs_4.5_week_2021-07-22T2023Z.geojson";
        let mock = FdsnMock::new(Catalogue::from_fixture(fixture));
        let page2 = mock.hold_query(2);
        let server = fdsn_server(mock.clone()).await;
        let store = db.store().await;
        let engine = fdsn_engine(store.clone(), &fdsn_url(&server), 20);
        let task = tokio::spawn({
            let engine = engine.clone();
            async move { engine.sync_once(Trigger::Scheduled).await }
        });
        page2.arrived().await; // page 2 in flight
        pages_committed(engine.subscribe(), 1).await;
        let dead_run = engine.status().current.unwrap().run_id;
        task.abort(); // the process "dies" between pages
        let _ = task.await;
        page2.open();
        assert_eq!(
            catalogue(&store).await.len(),
            20,
            "the committed page stays"
        );

        // A new process: a new engine on the same database.
        let engine2 = fdsn_engine(db.store().await, &fdsn_url(&server), 20);
        let mut outcome = engine2.sync_once(Trigger::Cli).await.unwrap();
        for _ in 0..600 {
            // the dead holder's lock connection may take a moment to close (PostgreSQL
            // ends the session when it sees the socket closed; 60 s only guards a hang)
            if !matches!(outcome, SyncOutcome::Skipped { .. }) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            outcome = engine2.sync_once(Trigger::Cli).await.unwrap();
        }
        let run = succeeded(outcome);
        assert_eq!(run.fetched, 78);
        let dead = store.run(dead_run).await.unwrap().unwrap();
        assert_eq!(dead.status, "abandoned");
        assert_eq!(dead.pages, 1, "the dead run's committed page is on its row");
        let cat = catalogue(&store).await;
        let want: HashSet<String> = features_by_id(fixture).into_keys().collect();
        assert_eq!(cat.keys().cloned().collect::<HashSet<_>>(), want);
    }
);

both_backends!(
    a_bad_page_fails_the_run_and_keeps_the_cursor,
    async |db: TestDb| {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::path("/fdsnws/event/1/query"))
            .respond_with(
                wiremock::ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"),
            )
            .mount(&server)
            .await;
        let store = db.store().await;
        let engine = fdsn_engine(store.clone(), &fdsn_url(&server), 100);
        let SyncOutcome::Failed(run) = engine.sync_once(Trigger::Cli).await.unwrap() else {
            panic!("must fail")
        };
        assert_eq!(run.status, "failed");
        assert!(
            run.error.as_deref().unwrap_or("").contains("upstream"),
            "{run:?}"
        );
        assert_eq!(
            store.sync_state("usgs").await.unwrap(),
            None,
            "the cursor did not move"
        );
        assert!(engine.status().last_run_failed());
    }
);

both_backends!(
    shutdown_interrupts_a_slow_upstream_request,
    async |db: TestDb| {
        let mock = FdsnMock::new(Catalogue::from_fixture(
            "usgs_4.5_week_2021-07-22T2023Z.geojson",
        ));
        let page1 = mock.hold_query(1);
        let server = fdsn_server(mock).await;
        let store = db.store().await;
        let engine = fdsn_engine(store.clone(), &fdsn_url(&server), 20);
        let task = tokio::spawn({
            let engine = engine.clone();
            async move { engine.sync_once(Trigger::Scheduled).await }
        });
        page1.arrived().await;
        engine.shutdown_token().cancel();
        // The run ends while its request is still held upstream: shutdown does not wait
        // for the upstream (the bound only guards against a hang).
        let outcome = tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("stops without the upstream's answer")
            .unwrap()
            .unwrap();
        assert!(!page1.is_open(), "the answer was never sent");
        page1.open();
        let SyncOutcome::Failed(run) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(run.error.as_deref(), Some("interrupted by shutdown"));
        assert_eq!(run.fetched, 0);
        assert!(catalogue(&store).await.is_empty());
    }
);
