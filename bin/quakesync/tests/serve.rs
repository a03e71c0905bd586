//! `quakesync serve` through the real binary on a loopback port, against a slow mock
//! upstream: SIGTERM during a sync, 200 concurrent manual triggers, status latency.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quake_store::testing::TestDb;
use quake_store::{Store, StoreOptions, runs};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const QUERY_PATH: &str = "/fdsnws/event/1/query";
const NULL_MAG: &str = "usgs_fdsn_query_2021-11-09T2234Z_null-mag.geojson";
const TOKEN: &str = "serve-test-token";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn quakesync(dir: &Path, db_url: &str, upstream: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quakesync"));
    cmd.current_dir(dir)
        .env_clear()
        .env("DATABASE_URL", db_url)
        .env("QUAKESYNC_SOURCE_URL", format!("{upstream}{QUERY_PATH}"))
        .env("QUAKESYNC_START_TIME", "1970-01-01T00:00:00Z")
        .env("QUAKESYNC_MAX_RETRIES", "0")
        .env("RUST_LOG", "info");
    cmd
}

/// A running `quakesync serve`, killed if the test fails before it exits.
struct Serve {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

impl Serve {
    fn start(mut cmd: Command, dir: &Path) -> Serve {
        let port = free_port();
        let log = dir.join("serve.log");
        let child = cmd
            .arg("serve")
            .env("QUAKESYNC_BIND", format!("127.0.0.1:{port}"))
            .env("QUAKESYNC_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Serve { child, port, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if let Ok((200, _)) = http(self.port, "GET", "/health/live", None).await {
                return;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "serve exited: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("serve did not come up: {}", self.log());
    }

    async fn wait_running(&self) -> i64 {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            let (_, st) = http(self.port, "GET", "/sync-status", None).await.unwrap();
            if st["current_sync"]["is_running"] == true {
                return st["current_sync"]["run_id"].as_i64().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no sync started: {}", self.log());
    }

    /// SIGTERM, then the exit code (panics after 10 s).
    fn terminate(&mut self) -> (Option<i32>, Duration) {
        let t = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        while t.elapsed() < Duration::from_secs(10) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("serve did not exit within 10 s of SIGTERM: {}", self.log());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 client: status and JSON body.
async fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n{auth}\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    Ok((status, json))
}

async fn rows(url: &str) -> Vec<quake_store::SyncRun> {
    let store = Store::connect(url, StoreOptions::default()).await.unwrap();
    let mut conn = store.conn().await.unwrap();
    runs::latest_runs(&mut conn.db(), 100).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_sync_exits_0_with_the_run_finished() {
    let db = TestDb::sqlite();
    let up = slow_upstream(Duration::from_millis(1000)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = quakesync(dir.path(), &db.url, &up.uri());
    // Pages of 3 and an upstream that always answers 3: the sync pages until stopped.
    cmd.env("QUAKESYNC_STARTUP_DELAY_SECS", "0")
        .env("QUAKESYNC_BATCH_SIZE", "3");
    let mut serve = Serve::start(cmd, dir.path());
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
    let (code, took) = serve.terminate();
    let log = serve.log();
    assert_eq!(code, Some(0), "{log}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(log.contains("Received SIGTERM"), "{log}");
    assert!(log.contains("Shutdown complete"), "{log}");

    let rows = rows(&db.url).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let run = &rows[0];
    assert_eq!(run.id, run_id);
    assert_eq!(run.status, "failed", "{run:?}");
    assert_eq!(run.error.as_deref(), Some("interrupted by shutdown"));
    assert!(run.finished_at.is_some());
    // Whole pages only: the page in flight at the signal committed, nothing half-applied.
    assert!(run.pages >= 1, "{run:?}");
    assert_eq!(run.fetched, run.pages * 3, "{run:?}");

    let store = Store::connect(&db.url, StoreOptions::default())
        .await
        .unwrap();
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
    let mut cmd = quakesync(dir.path(), &db.url, &up.uri());
    cmd.env("QUAKESYNC_SYNC_ENABLED", "false");
    let mut serve = Serve::start(cmd, dir.path());
    serve.wait_ready().await;
    let (s, st) = http(serve.port, "GET", "/sync-status", None).await.unwrap();
    assert_eq!(s, 200);
    assert_eq!(st["scheduler"]["enabled"], false);
    assert_eq!(st["scheduler"]["next_run_at"], Value::Null);
    let (s, h) = http(serve.port, "GET", "/health/ready", None)
        .await
        .unwrap();
    assert_eq!((s, &h["status"]), (200, &Value::from("ready")));
    let (code, took) = serve.terminate();
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
    let mut cmd = quakesync(dir.path(), &db.url, &up.uri());
    cmd.env("QUAKESYNC_STARTUP_DELAY_SECS", "3600");
    let mut serve = Serve::start(cmd, dir.path());
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
    let other = quakesync(dir.path(), &db.url, &up.uri())
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
    let rows = rows(&db.url).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].id, run_id);
    assert_eq!(rows[0].trigger, "manual");

    let (code, _) = serve.terminate();
    assert_eq!(code, Some(0), "{}", serve.log());
}
