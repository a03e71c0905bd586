//! `quakesync serve` through the real binary on a loopback port, against a mock upstream
//! that holds a page at a gate until the test opens it: SIGTERM during a sync, 200
//! concurrent manual triggers, `/sync-status` while a sync waits on the upstream. No test
//! here races the clock: each waits for an event (a request reaching the gate, a process
//! exiting), and a time bound only guards against a hang.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../crates/sync-engine/tests/common/mod.rs"]
mod common;
mod support;

use common::{Catalogue, FdsnMock, fdsn_server};
use quake_store::testing::TestDb;
use serde_json::Value;
use support::{Serve, TOKEN, all_runs, http, quakesync_from_epoch, store};

const NULL_MAG: &str = "usgs_fdsn_query_2021-11-09T2234Z_null-mag.geojson"; // 3 events
const WEEK_45: &str = "usgs_4.5_week_2021-07-22T2023Z.geojson"; // 78 events

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_sync_exits_0_with_the_run_finished() {
    let db = TestDb::sqlite();
    let mock = FdsnMock::new(Catalogue::from_fixture(WEEK_45));
    let page2 = mock.hold_query(2);
    let up = fdsn_server(mock).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = quakesync_from_epoch(dir.path(), &db.url, &up.uri());
    cmd.env("QUAKESYNC_STARTUP_DELAY_SECS", "0")
        .env("QUAKESYNC_BATCH_SIZE", "3");
    let mut serve = Serve::start(cmd, dir.path(), "serve");
    serve.wait_ready().await;
    // Page 2's request waits at the upstream; page 1 is committed (or being written while
    // page 2 is asked: wait for it).
    page2.arrived().await;
    let run_id = serve.wait_running().await;
    serve.wait_pages(1).await;

    // `/sync-status` answers while the sync holds the lock and waits on the upstream (it
    // answers from memory: were it waiting for the sync, it would not answer at all).
    for _ in 0..5 {
        let (s, st) = http(serve.port, "GET", "/sync-status", None).await.unwrap();
        assert_eq!(s, 200);
        assert_eq!(st["current_sync"]["run_id"], run_id);
        assert_eq!(st["current_sync"]["progress"]["pages"], 1, "{st}");
    }
    // SIGTERM with page 2's request in flight: the process exits without its answer.
    let (code, _) = serve.terminate_timed();
    assert!(
        !page2.is_open(),
        "the process exited before the upstream answered"
    );
    page2.open();
    let log = serve.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("Received SIGTERM"), "{log}");
    assert!(log.contains("Shutdown complete"), "{log}");

    let rows = all_runs(&db.url).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let run = &rows[0];
    assert_eq!(run.id, run_id);
    assert_eq!(run.status, "failed", "{run:?}");
    assert_eq!(run.error.as_deref(), Some("interrupted by shutdown"));
    assert!(run.finished_at.is_some());
    // Whole pages only: page 1 committed, the page in flight changed nothing.
    assert_eq!((run.pages, run.fetched), (1, 3), "{run:?}");

    let store = store(&db.url).await;
    let counts = store.catalogue_counts().await.unwrap();
    assert_eq!(counts.total(), 3);
    // An interrupted run keeps the old cursor (none).
    let state = store.sync_state("usgs").await.unwrap();
    assert_eq!(state.and_then(|s| s.cursor), None);
    let _ = std::fs::remove_file(&serve.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_when_idle_exits_0_at_once() {
    let db = TestDb::sqlite();
    let up = fdsn_server(FdsnMock::new(Catalogue::from_fixture(NULL_MAG))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = quakesync_from_epoch(dir.path(), &db.url, &up.uri());
    cmd.env("QUAKESYNC_SYNC_ENABLED", "false");
    let mut serve = Serve::start(cmd, dir.path(), "serve");
    serve.wait_ready().await;
    let (s, st) = http(serve.port, "GET", "/sync-status", None).await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(st["scheduler"]["enabled"], false);
    assert_eq!(st["scheduler"]["next_run_at"], Value::Null);
    let (s, h) = http(serve.port, "GET", "/health/ready", None)
        .await
        .unwrap();
    assert_eq!((s, &h["status"]), (200, &Value::from("ready")));
    let (code, _) = serve.terminate_timed();
    assert_eq!(code, Some(0), "{}", serve.log());
    let log = serve.log();
    assert!(log.contains("Listening on http://127.0.0.1:"), "{log}");
    assert!(log.contains("Automatic sync is disabled"), "{log}");
    assert!(!log.contains(TOKEN), "{log}");
}

/// PostgreSQL: 200 concurrent `POST /sync` while the sync waits on the upstream give one
/// 202 and 199 409; a `quakesync sync` in another process meanwhile exits 75; one run row.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_triggers_and_another_process_on_postgres() {
    let Some(db) = TestDb::postgres("concurrent_triggers_and_another_process_on_postgres").await
    else {
        return;
    };
    db.store().await; // migrated before the processes race
    let mock = FdsnMock::new(Catalogue::from_fixture(NULL_MAG));
    let page1 = mock.hold_query(1);
    let up = fdsn_server(mock).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = quakesync_from_epoch(dir.path(), &db.url, &up.uri());
    cmd.env("QUAKESYNC_STARTUP_DELAY_SECS", "3600");
    let mut serve = Serve::start(cmd, dir.path(), "serve");
    serve.wait_ready().await;

    // The run that wins cannot end before the gate opens: every other trigger meets it.
    let port = serve.port;
    let posts: Vec<_> = (0..200)
        .map(|_| tokio::spawn(async move { http(port, "POST", "/sync", Some(TOKEN)).await }))
        .collect();
    let mut answers = Vec::new();
    for p in posts {
        answers.push(p.await.unwrap().unwrap());
    }
    let started: Vec<_> = answers.iter().filter(|(s, _)| *s == 202).collect();
    let busy = answers.iter().filter(|(s, _)| *s == 409).count();
    assert_eq!(started.len(), 1, "{answers:?}");
    assert_eq!(busy, 199, "{answers:?}");
    let run_id = started[0].1["run_id"].as_i64().unwrap();
    page1.arrived().await;

    // Another process finds the cluster-wide lock taken (and asks nothing upstream).
    let other = quakesync_from_epoch(dir.path(), &db.url, &up.uri())
        .args(["sync", "--no-migrate"])
        .output()
        .unwrap();
    assert_eq!(
        other.status.code(),
        Some(75),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );

    // `/sync-status` answers from memory while the run waits on the upstream.
    let (s, st) = http(port, "GET", "/sync-status", None).await.unwrap();
    assert_eq!(
        (s, &st["current_sync"]["run_id"]),
        (200, &Value::from(run_id))
    );
    assert_eq!(st["protection"]["lock_scope"], "cluster");

    // The run ends once the upstream answers; one row.
    page1.open();
    let t = std::time::Instant::now();
    loop {
        let (_, st) = http(port, "GET", "/sync-status", None).await.unwrap();
        if st["current_sync"]["is_running"] == false {
            assert_eq!(st["last_run"]["status"], "succeeded", "{st}");
            break;
        }
        // Only a guard against a hang: the run has one page of 3 events left.
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "{}",
            serve.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let rows = all_runs(&db.url).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].id, run_id);
    assert_eq!(rows[0].trigger, "manual");

    let (code, _) = serve.terminate_timed();
    assert_eq!(code, Some(0), "{}", serve.log());
}

/// `serve` with the live lane pointed at a local summary feed (issue 18): this process
/// leads, polls, commits the feed's events once, shows the lane in `/sync-status` and
/// `/metrics`, and stops it on SIGTERM with the rest.
#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_the_live_lane_against_a_local_feed() {
    let db = TestDb::sqlite();
    let up = wiremock::MockServer::start().await;
    common::serve_feed(&up, NULL_MAG).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = quakesync_from_epoch(dir.path(), &db.url, &up.uri());
    cmd.env("QUAKESYNC_SYNC_ENABLED", "false")
        .env("QUAKESYNC_LIVE_ENABLED", "true")
        .env(
            "QUAKESYNC_LIVE_URL",
            format!("http://user:pw-s3cret@{}/feed.geojson", up.address()),
        );
    let mut serve = Serve::start(cmd, dir.path(), "live");
    serve.wait_ready().await;
    let t = std::time::Instant::now();
    let live = loop {
        let (s, st) = http(serve.port, "GET", "/sync-status", None).await.unwrap();
        assert_eq!(s, 200);
        if st["live"]["records"]["inserted"] == 3 {
            break st;
        }
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "{st}\n{}",
            serve.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let l = &live["live"];
    assert_eq!(l["enabled"], true, "{live}");
    assert_eq!(l["role"], "leader");
    assert_eq!(l["mode"], "poll");
    assert_eq!(l["interval_seconds"], 60);
    assert!(!l["url"].as_str().unwrap().contains("s3cret"), "{live}");
    assert_eq!(l["polls"]["modified"], 1);
    assert_eq!(l["records"]["batches"], 1);
    assert!(l["latest_lag_seconds"].is_number(), "{live}");
    assert_eq!(live["lag"]["lane"], "live");
    let (_, metrics) = support::http_raw(serve.port, "GET", "/metrics", None, "")
        .await
        .unwrap();
    for line in [
        "quakesync_live_leader 1",
        "quakesync_live_polls_total{outcome=\"modified\"} 1",
        "quakesync_live_records_total{outcome=\"inserted\"} 3",
        "quakesync_event_lag_seconds_count{lane=\"live\"} 3",
    ] {
        assert!(metrics.contains(line), "{line}:\n{metrics}");
    }
    let (_, page) = support::http_raw(serve.port, "GET", "/", None, "")
        .await
        .unwrap();
    assert!(page.contains(r#"id="live-lane">leader"#), "{page}");
    assert!(
        page.contains("from upstream update to commit (live lane"),
        "{page}"
    );
    // The live lane writes no run rows.
    assert!(all_runs(&db.url).await.is_empty());
    let code = serve.terminate();
    let log = serve.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("Live lane stopped"), "{log}");
    assert!(!log.contains("s3cret"), "{log}");
}
