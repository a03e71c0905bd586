//! `quakesync serve` through the real binary on a loopback port, against a slow mock
//! upstream: SIGTERM during a sync, 200 concurrent manual triggers, status latency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use quake_store::runs;
use quake_store::testing::TestDb;
use serde_json::Value;
use support::{QUERY_PATH, Serve, TOKEN, all_runs, fixture, http, quakesync_from_epoch, store};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NULL_MAG: &str = "usgs_fdsn_query_2021-11-09T2234Z_null-mag.geojson";

/// Every request answers the 3-event fixture after `delay`.
async fn slow_upstream(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(QUERY_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(fixture(NULL_MAG), "application/json")
                .set_delay(delay),
        )
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_sync_exits_0_with_the_run_finished() {
    let db = TestDb::sqlite();
    let up = slow_upstream(Duration::from_millis(1000)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = quakesync_from_epoch(dir.path(), &db.url, &up.uri());
    // Pages of 3 and an upstream that always answers 3: the sync pages until stopped.
    cmd.env("QUAKESYNC_STARTUP_DELAY_SECS", "0")
        .env("QUAKESYNC_BATCH_SIZE", "3");
    let mut serve = Serve::start(cmd, dir.path(), "serve");
    serve.wait_ready().await;
    let run_id = serve.wait_running().await;

    // `/sync-status` answers in milliseconds while the sync holds the lock.
    for _ in 0..5 {
        let t = Instant::now();
        let (s, st) = http(serve.port, "GET", "/sync-status", None).await.unwrap();
        let took = t.elapsed();
        assert_eq!(s, 200);
        assert_eq!(st["current_sync"]["run_id"], run_id);
        assert!(took < Duration::from_millis(200), "took {took:?}");
    }
    // Mid-way through the second page's request.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let (code, took) = serve.terminate_timed();
    let log = serve.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(log.contains("Received SIGTERM"), "{log}");
    assert!(log.contains("Shutdown complete"), "{log}");

    let rows = all_runs(&db.url).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let run = &rows[0];
    assert_eq!(run.id, run_id);
    assert_eq!(run.status, "failed", "{run:?}");
    assert_eq!(run.error.as_deref(), Some("interrupted by shutdown"));
    assert!(run.finished_at.is_some());
    // Whole pages only: the page in flight at the signal committed, nothing half-applied.
    assert!(run.pages >= 1, "{run:?}");
    assert_eq!(run.fetched, run.pages * 3, "{run:?}");

    let store = store(&db.url).await;
    let mut conn = store.conn().await.unwrap();
    let counts = quake_store::read::catalogue_counts(&mut conn.db())
        .await
        .unwrap();
    assert_eq!(counts.total(), 3);
    // An interrupted run keeps the old cursor (none).
    let state = runs::get_state(&mut conn.db(), "usgs").await.unwrap();
    assert_eq!(state.and_then(|s| s.cursor), None);
    let _ = std::fs::remove_file(&serve.log);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_when_idle_exits_0_at_once() {
    let db = TestDb::sqlite();
    let up = slow_upstream(Duration::ZERO).await;
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
    let (code, took) = serve.terminate_timed();
    assert_eq!(code, Some(0), "{}", serve.log());
    assert!(took < Duration::from_secs(3), "{took:?}");
    let log = serve.log();
    assert!(log.contains("Listening on http://127.0.0.1:"), "{log}");
    assert!(log.contains("Automatic sync is disabled"), "{log}");
    assert!(!log.contains(TOKEN), "{log}");
}

/// PostgreSQL: 200 concurrent `POST /sync` during a slow sync give one 202 and 199 409;
/// a `quakesync sync` in another process meanwhile exits 75; one run row.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_triggers_and_another_process_on_postgres() {
    let Some(db) = TestDb::postgres("concurrent_triggers_and_another_process_on_postgres").await
    else {
        return;
    };
    db.store().await; // migrated before the processes race
    let up = slow_upstream(Duration::from_millis(2500)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = quakesync_from_epoch(dir.path(), &db.url, &up.uri());
    cmd.env("QUAKESYNC_STARTUP_DELAY_SECS", "3600");
    let mut serve = Serve::start(cmd, dir.path(), "serve");
    serve.wait_ready().await;

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

    // Another process finds the cluster-wide lock taken.
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

    let t = Instant::now();
    let (s, st) = http(port, "GET", "/sync-status", None).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        (s, &st["current_sync"]["run_id"]),
        (200, &Value::from(run_id))
    );
    assert_eq!(st["protection"]["lock_scope"], "cluster");

    // The run ends; one row.
    let t = Instant::now();
    loop {
        let (_, st) = http(port, "GET", "/sync-status", None).await.unwrap();
        if st["current_sync"]["is_running"] == false {
            assert_eq!(st["last_run"]["status"], "succeeded", "{st}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{}", serve.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rows = all_runs(&db.url).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].id, run_id);
    assert_eq!(rows[0].trigger, "manual");

    let (code, _) = serve.terminate_timed();
    assert_eq!(code, Some(0), "{}", serve.log());
}
