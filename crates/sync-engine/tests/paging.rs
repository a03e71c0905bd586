//! Paging that cannot run away (issue 13): the page ceiling. A run that reaches it fails
//! with an error naming it, keeps the pages it committed (once each) and leaves the cursor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use quake_api::FdsnClient;
use quake_store::testing::TestDb;
use quake_store::{Store, both_backends, runs};
use sync_engine::{Engine, EngineConfig, FdsnSource, SyncOutcome, Trigger};

const WEEK_45: &str = "usgs_4.5_week_2021-07-22T2023Z.geojson";

fn engine(store: Store, url: &str, cfg: EngineConfig) -> Engine {
    let source = Arc::new(FdsnSource(FdsnClient::new(url, http_opts()).unwrap()));
    Engine::new(
        store,
        source,
        EngineConfig {
            start_time: Some("2021-07-01T00:00:00Z".parse().unwrap()),
            ..cfg
        },
    )
}

fn failed(o: SyncOutcome) -> quake_store::SyncRun {
    match o {
        SyncOutcome::Failed(run) => run,
        other => panic!("expected a failed run, got {other:?}"),
    }
}

both_backends!(a_run_stops_at_max_pages, async |db: TestDb| {
    let store = db.store().await;
    let mock = FdsnMock::new(Catalogue::from_fixture(WEEK_45)); // 78 events
    let server = fdsn_server(mock.clone()).await;
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
        (2, 40, 40),
        "{run:?}"
    );
    assert_eq!(
        catalogue(&store).await.len(),
        40,
        "the two pages stay, once"
    );
    assert_eq!(
        mock.queries.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "no third page was asked for"
    );
    let mut conn = store.conn().await.unwrap();
    let state = runs::get_state(&mut conn.db(), "usgs").await.unwrap();
    assert!(
        state.and_then(|s| s.cursor).is_none(),
        "the cursor does not move"
    );
});
