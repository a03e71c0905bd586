//! `quakesync sync` and `quakesync migrate` through the real binary, against a mock
//! upstream on loopback and a real database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Output;

use quake_store::testing::TestDb;
use support::fixture;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const NULL_MAG: &str = "usgs_fdsn_query_2021-11-09T2234Z_null-mag.geojson";

async fn upstream(status: u16, body: Vec<u8>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fdsnws/event/1/query"))
        .respond_with(ResponseTemplate::new(status).set_body_raw(body, "application/json"))
        .mount(&server)
        .await;
    server
}

fn quakesync(dir: &Path, db_url: &str, upstream: &str, args: &[&str]) -> Output {
    support::quakesync_from_epoch(dir, db_url, upstream)
        .args(args)
        .output()
        .expect("run quakesync")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test]
async fn sync_prints_the_summary_line_and_a_second_run_writes_nothing() {
    let db = TestDb::sqlite();
    let server = upstream(200, fixture(NULL_MAG)).await;
    let dir = tempfile::tempdir().unwrap();
    let first = quakesync(dir.path(), &db.url, &server.uri(), &["sync"]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}{}",
        stdout(&first),
        stderr(&first)
    );
    let line = stdout(&first);
    assert!(line.starts_with("Sync completed in "), "{line}");
    assert!(
        line.contains(
            "3 synced (3 inserted, 0 updated, 0 deleted, 0 merged), 0 skipped (0 unchanged, 0 rejected), 3 total processed"
        ),
        "{line}"
    );
    assert!(
        stderr(&first).contains("Starting earthquake sync"),
        "{}",
        stderr(&first)
    );

    let second = quakesync(dir.path(), &db.url, &server.uri(), &["sync", "--json"]);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    let run: serde_json::Value =
        serde_json::from_str(&stdout(&second)).expect("--json prints the run row");
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["trigger"], "cli");
    assert_eq!(
        (
            run["fetched"].as_i64(),
            run["unchanged"].as_i64(),
            run["inserted"].as_i64()
        ),
        (Some(3), Some(3), Some(0))
    );
    assert!(run["started_at"].as_str().unwrap().ends_with('Z'), "{run}");
    // the second run's page request carried the cursor (this upstream has no `count`: each
    // run's count request got a 404 and the page ceiling fell back to sync.max_pages)
    let reqs: Vec<_> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path().ends_with("/query"))
        .collect();
    assert_eq!(reqs.len(), 2);
    assert!(!reqs[0].url.query().unwrap().contains("updatedafter"));
    assert!(
        reqs[1]
            .url
            .query()
            .unwrap()
            .contains("updatedafter=2021-11-09T22%3A"),
        "{}",
        reqs[1].url
    );
}

#[tokio::test]
async fn sync_exits_1_when_the_upstream_fails() {
    let db = TestDb::sqlite();
    let server = upstream(500, b"internal error".to_vec()).await;
    let dir = tempfile::tempdir().unwrap();
    let out = quakesync(dir.path(), &db.url, &server.uri(), &["sync"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).starts_with("Sync failed after"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("500"), "{}", stdout(&out));
}

#[tokio::test]
async fn sync_exits_75_while_another_process_holds_the_lock() {
    let Some(db) = TestDb::postgres("sync_exits_75").await else {
        return;
    };
    let store = db.store().await;
    let lock = store
        .try_sync_lock()
        .await
        .unwrap()
        .expect("test holds the lock");
    let server = upstream(200, fixture(NULL_MAG)).await;
    let dir = tempfile::tempdir().unwrap();
    let out = quakesync(dir.path(), &db.url, &server.uri(), &["sync"]);
    assert_eq!(
        out.status.code(),
        Some(75),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("Sync already in progress, skipping this run"),
        "{}",
        stderr(&out)
    );
    assert!(
        server.received_requests().await.unwrap().is_empty(),
        "a skipped sync asks nothing upstream"
    );
    assert!(store.latest_runs(5).await.unwrap().is_empty(), "no run row");
    lock.release().await.unwrap();
    let out = quakesync(dir.path(), &db.url, &server.uri(), &["sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test]
async fn migrate_then_sync_without_migrating() {
    let db = TestDb::sqlite();
    let server = upstream(200, fixture(NULL_MAG)).await;
    let dir = tempfile::tempdir().unwrap();
    let out = quakesync(
        dir.path(),
        &db.url,
        &server.uri(),
        &["sync", "--no-migrate"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unmigrated database fails: {}",
        stderr(&out)
    );
    let out = quakesync(dir.path(), &db.url, &server.uri(), &["migrate"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = quakesync(
        dir.path(),
        &db.url,
        &server.uri(),
        &["sync", "--no-migrate"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test]
async fn a_bad_database_url_is_an_error_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let out = quakesync(
        dir.path(),
        "postgres://quake:pw-s3cret@127.0.0.1:1/db",
        "http://127.0.0.1:1",
        &["sync"],
    );
    assert_eq!(out.status.code(), Some(1));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("quake:***@127.0.0.1:1"), "{all}");
    assert!(!all.contains("pw-s3cret"), "{all}");
}
