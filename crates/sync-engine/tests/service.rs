//! The sync service as an embedder runs it (SPEC section 5): the scheduler starts runs,
//! manual triggers meet the single flight, upstream requests are counted by the engine
//! itself, and a shutdown stops a running sync after the page it committed: the run is
//! marked failed "interrupted by shutdown", the cursor does not move.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::*;
use quake_api::FdsnClient;
use quake_store::Store;
use quake_store::testing::TestDb;
use sync_engine::{
    Engine, EngineConfig, FdsnSource, INTERRUPTED, Schedule, Shutdown, StartOutcome, SyncOutcome,
    SyncService, Trigger, UpstreamOutcome,
};

/// 78 events in pages of 20 (keyset: each page after the first re-reads the last event
/// read, so 5 pages).
const FIXTURE: &str = "usgs_4.5_week_2021-07-22T2023Z.geojson";

fn engine(store: Store, server: &wiremock::MockServer) -> Engine {
    let client = FdsnClient::new(&fdsn_url(server), http_opts()).unwrap();
    let start: DateTime<Utc> = "2021-07-01T00:00:00Z".parse().unwrap();
    Engine::new(
        store,
        Arc::new(FdsnSource(client)),
        EngineConfig {
            batch_size: 20,
            start_time: Some(start),
            ..EngineConfig::default()
        },
    )
}

/// The scheduler's first run starts at once; its second page is held upstream (at a gate
/// the test opens only after the shutdown); the shutdown does not wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_a_running_sync_after_its_committed_page() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let mock = FdsnMock::new(Catalogue::from_fixture(FIXTURE));
    let page2 = mock.hold_query(2);
    let server = fdsn_server(mock).await;
    let service = SyncService::start(
        engine(store.clone(), &server),
        Schedule {
            startup_delay: Duration::ZERO,
            ..Schedule::default()
        },
    );
    assert!(service.scheduler().enabled());
    page2.arrived().await; // page 2 in flight
    pages_committed(service.subscribe(), 1).await;
    let run_id = service.status().current.unwrap().run_id;
    // A manual trigger meets the running sync.
    assert!(matches!(
        service.trigger(Trigger::Manual).await.unwrap(),
        StartOutcome::Busy { run_id: Some(id) } if id == run_id
    ));

    // 60 s only guards a hang: the shutdown returns while page 2 is still held.
    let shutdown = tokio::time::timeout(
        Duration::from_secs(60),
        service.shutdown(Duration::from_secs(4)),
    )
    .await
    .expect("the shutdown keeps its deadline");
    assert_eq!(shutdown, Shutdown::Stopped { run_id });
    assert!(!page2.is_open());
    page2.open();

    let rows = store.latest_runs(10).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let run = &rows[0];
    assert_eq!(run.status, "failed");
    assert_eq!(run.error.as_deref(), Some(INTERRUPTED));
    assert_eq!((run.pages, run.fetched, run.inserted), (1, 20, 20));
    assert_eq!(
        catalogue(&store).await.len(),
        20,
        "the committed page stays"
    );
    let state = store.sync_state("usgs").await.unwrap();
    assert!(
        state.and_then(|s| s.cursor).is_none(),
        "the cursor does not move"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_status_and_upstream_counts_without_a_scheduler() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let mock = FdsnMock::new(Catalogue::from_fixture(FIXTURE));
    let server = fdsn_server(mock.clone()).await;
    let service = SyncService::start(
        engine(store.clone(), &server),
        Schedule {
            enabled: false,
            ..Schedule::default()
        },
    );
    assert!(!service.scheduler().enabled());
    assert_eq!(service.scheduler().next_run_at(), None);

    let StartOutcome::Started { handle, .. } = service.trigger(Trigger::Manual).await.unwrap()
    else {
        panic!("nothing else runs");
    };
    let SyncOutcome::Succeeded(run) = handle.await.unwrap() else {
        panic!("the sync succeeds");
    };
    assert_eq!((run.fetched, run.inserted, run.pages), (78, 78, 5));
    assert_eq!(service.status().last_run.unwrap().id, run.id);
    let counts = service.upstream_requests();
    // The run's `count` and its 5 pages.
    assert_eq!(counts.get(UpstreamOutcome::Success), 6);
    assert_eq!(counts.total(), 6);

    // A failing upstream is counted by outcome too, and the run fails.
    mock.fail_after(Some(0));
    let StartOutcome::Started { handle, .. } = service.trigger(Trigger::Manual).await.unwrap()
    else {
        panic!("nothing else runs");
    };
    assert!(matches!(handle.await.unwrap(), SyncOutcome::Failed(_)));
    let counts = service.upstream_requests();
    // The failed `count` (the run goes on with sync.max_pages) and the failed page 1.
    assert_eq!(counts.get(UpstreamOutcome::HttpError), 2);
    assert_eq!(counts.get(UpstreamOutcome::Success), 6);

    assert_eq!(
        service.shutdown(Duration::from_secs(2)).await,
        Shutdown::Idle
    );
}
