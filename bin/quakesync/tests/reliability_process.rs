//! Process faults through the real binary (issue 9): `quakesync sync` killed with SIGKILL
//! between pages and inside a page's transaction; a pool of one connection exhausted under
//! load; two `serve` processes on one PostgreSQL database whose runs never overlap; two
//! processes on one SQLite file (issue 13), kept apart by the file lock.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../crates/sync-engine/tests/common/mod.rs"]
mod common;
mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Catalogue, FdsnMock, fdsn_server};
use quake_store::testing::TestDb;
use serde_json::json;
use support::*;

const FIXTURE: &str = "usgs_4.5_week_2021-07-22T2023Z.geojson";

/// Runs `quakesync sync` until it is not skipped by a dead holder's lock (exit 75 while
/// PostgreSQL notices the dead connection), returns its output.
fn sync_until_not_skipped(cmd: impl Fn() -> std::process::Command) -> std::process::Output {
    // 60 s only guards a hang: PostgreSQL frees the lock when it sees the socket closed.
    for _ in 0..600 {
        let out = cmd().output().unwrap();
        if out.status.code() != Some(75) {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the sync lock was never freed");
}

async fn killed_between_pages(db: TestDb) {
    let cat = Catalogue::from_fixture(FIXTURE);
    let mock = FdsnMock::new(cat.clone());
    // Page 2 is held: the process dies after page 1 committed, with page 2 in flight.
    let page2 = mock.hold_query(2);
    let server = fdsn_server(mock.clone()).await;
    db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let mut child = quakesync(dir.path(), &db.url, &server.uri())
        .args(["sync", "--no-migrate"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    page2.arrived().await;
    wait_pages(&db.url, 1).await;
    signal(child.id(), "KILL");
    let _ = child.wait();
    page2.open();
    let runs = all_runs(&db.url).await;
    assert_eq!(runs.len(), 1);
    let dead = runs[0].clone();
    assert_eq!((dead.status.as_str(), dead.pages), ("running", 1));
    assert_eq!(catalogue(&db.url).await.len(), 20, "page 1 stays");

    let out = sync_until_not_skipped(|| {
        let mut c = quakesync(dir.path(), &db.url, &server.uri());
        c.args(["sync", "--no-migrate", "--json"]);
        c
    });
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = all_runs(&db.url).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0].id, dead.id);
    assert_eq!(runs[0].status, "abandoned", "{:?}", runs[0]);
    assert_eq!(runs[0].pages, 1);
    assert_eq!(runs[1].status, "succeeded");
    assert_eq!(
        (runs[1].fetched, runs[1].inserted, runs[1].unchanged),
        (78, 58, 20),
        "nothing lost, nothing doubled: {:?}",
        runs[1]
    );
    assert_eq!(catalogue(&db.url).await, expected(&cat.features));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_pages_sqlite() {
    killed_between_pages(TestDb::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_pages_postgres() {
    let Some(db) = TestDb::postgres("reliability::sigkill_between_pages_postgres").await else {
        return;
    };
    killed_between_pages(db).await;
}

/// SQLite, two processes on one host: while a `quakesync sync` holds the file lock (its
/// first page held at the upstream's gate), a second `quakesync sync` exits 75 with the
/// usual warning and asks nothing upstream, and a `quakesync serve` answers `POST /sync`
/// with 409 naming the other process's run. SIGKILL the holder: the OS frees the lock at
/// once, and the next run marks the dead one abandoned and completes the catalogue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_processes_never_sync_at_once() {
    let db = TestDb::sqlite();
    let cat = Catalogue::from_fixture(FIXTURE);
    let mock = FdsnMock::new(cat.clone());
    let gate = mock.hold_query(1);
    let server = fdsn_server(mock.clone()).await;
    db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let mut holder = quakesync(dir.path(), &db.url, &server.uri())
        .args(["sync", "--no-migrate"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    gate.arrived().await; // the holder has the lock and its run row, page 1 is in flight
    let runs = all_runs(&db.url).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let held_run = runs[0].id;

    let second = quakesync(dir.path(), &db.url, &server.uri())
        .args(["sync", "--no-migrate"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(75), "{err}");
    assert!(
        err.contains("Sync already in progress, skipping this run"),
        "{err}"
    );

    let mut cmd = quakesync(dir.path(), &db.url, &server.uri());
    cmd.env("QUAKESYNC_SYNC_ENABLED", "false");
    let mut serve = Serve::start(cmd, dir.path(), "sqlite-serve");
    serve.wait_ready().await;
    let (status, body) = http(serve.port, "POST", "/sync", Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(
        (status, &body),
        (
            409,
            &json!({"status": "already_running", "run_id": held_run})
        ),
        "{}",
        serve.log()
    );
    let (_, st) = http(serve.port, "GET", "/sync-status", None).await.unwrap();
    assert_eq!(st["protection"]["lock_scope"], "host", "{st}");
    assert_eq!(serve.terminate(), Some(0), "{}", serve.log());
    assert_eq!(
        mock.queries.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "only the holder asked for a page"
    );
    assert_eq!(
        all_runs(&db.url).await.len(),
        1,
        "no run row for the skipped ones"
    );

    signal(holder.id(), "KILL");
    let _ = holder.wait();
    gate.open(); // the mock's thread answers the dead process and is free again
    let out = quakesync(dir.path(), &db.url, &server.uri())
        .args(["sync", "--no-migrate"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "the OS freed the dead holder's lock at once: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = all_runs(&db.url).await;
    assert_eq!(
        runs.iter()
            .map(|r| (r.id, r.status.as_str()))
            .collect::<Vec<_>>(),
        [(held_run, "abandoned"), (held_run + 1, "succeeded")]
    );
    assert_eq!(catalogue(&db.url).await, expected(&cat.features));
}

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// SIGKILL while the process is inside a page's transaction (PostgreSQL): the test holds
/// an exclusive lock on `earthquakes`, so the page's first statement waits inside its
/// transaction; the process is killed there. Nothing of that page commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_inside_a_page_transaction_postgres() {
    let Some(db) = TestDb::postgres("reliability::sigkill_inside_a_page").await else {
        return;
    };
    let cat = Catalogue::from_fixture(FIXTURE);
    let server = fdsn_server(FdsnMock::new(cat.clone())).await;
    db.store().await;
    let blocker = pg(&db.url).await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE earthquakes IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = quakesync(dir.path(), &db.url, &server.uri())
        .args(["sync", "--no-migrate"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let watcher = pg(&db.url).await;
    let t = Instant::now();
    loop {
        let rows = watcher
            .query(
                "SELECT query FROM pg_stat_activity WHERE application_name = 'quakesync' \
                 AND datname = current_database() AND wait_event_type = 'Lock' AND state = 'active' AND xact_start IS NOT NULL",
                &[],
            )
            .await
            .unwrap();
        if let Some(row) = rows.first() {
            let q: String = row.get(0);
            eprintln!("the page waits inside its transaction on: {q}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the page never reached its transaction"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(child.id(), "KILL");
    let _ = child.wait();
    blocker.batch_execute("ROLLBACK").await.unwrap();
    assert!(
        catalogue(&db.url).await.is_empty(),
        "nothing of the killed page committed"
    );
    let runs = all_runs(&db.url).await;
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].status.as_str(), runs[0].pages), ("running", 0));

    let out = sync_until_not_skipped(|| {
        let mut c = quakesync(dir.path(), &db.url, &server.uri());
        c.args(["sync", "--no-migrate"]);
        c
    });
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let runs = all_runs(&db.url).await;
    assert_eq!(
        runs.iter().map(|r| r.status.as_str()).collect::<Vec<_>>(),
        ["abandoned", "succeeded"]
    );
    assert_eq!((runs[1].fetched, runs[1].inserted), (78, 78));
    assert_eq!(catalogue(&db.url).await, expected(&cat.features));
}

/// A pool of one connection, held by a query the test blocks: 80 concurrent requests to
/// every endpoint that touches the database each answer within the client's 15 s bound,
/// with 200 or 503 (never a 500, never a hang); the endpoints answered from memory stay
/// fast; once the blocker goes, everything answers 200 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pool_exhausted_under_load_fails_fast_with_503() {
    let Some(db) = TestDb::postgres("reliability::pool_exhausted").await else {
        return;
    };
    let server = fdsn_server(FdsnMock::new(Catalogue::from_fixture(FIXTURE))).await;
    db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = quakesync(dir.path(), &db.url, &server.uri());
    cmd.env("QUAKESYNC_DB_POOL_SIZE", "1")
        .env("QUAKESYNC_SYNC_ENABLED", "false");
    let mut serve = Serve::start(cmd, dir.path(), "pool");
    serve.wait_ready().await;
    let port = serve.port;
    assert_eq!(http(port, "GET", "/sync-runs", None).await.unwrap().0, 200);

    // The one pooled connection gets stuck behind the test's lock.
    let blocker = pg(&db.url).await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE sync_runs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let stuck = tokio::spawn(async move { http(port, "GET", "/sync-runs", None).await });
    // Until the pool's one connection waits on the blocker's lock (seen by PostgreSQL).
    let watcher = pg(&db.url).await;
    let t = Instant::now();
    loop {
        let waiting = watcher
            .query(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = 'quakesync' \
                 AND datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap();
        if !waiting.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the request never reached the database"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let paths = [
        "/sync-runs",
        "/health",
        "/health/ready",
        "/metrics",
        "/fdsnws/event/1/query?limit=5",
        "/sync-status",
        "/health/live",
    ];
    let tasks: Vec<_> = (0..80)
        .map(|i| {
            let p = paths[i % paths.len()];
            tokio::spawn(async move {
                let r = http(port, "GET", p, None).await;
                (p, r.map(|(s, _)| s))
            })
        })
        .collect();
    let mut by_status = std::collections::BTreeMap::<(String, u16), usize>::new();
    for task in tasks {
        let (p, r) = task.await.unwrap();
        // Each answers within the client's 15 s deadline (the pool waits at most 10 s).
        let s = r.unwrap_or_else(|e| panic!("{p}: {e}"));
        assert!(
            s == 200 || s == 503 || (s == 404 && p.starts_with("/fdsnws")),
            "{p}: {s} under pool exhaustion\n{}",
            serve.log()
        );
        if p == "/sync-status" || p == "/health/live" {
            // From memory: were they waiting for a connection, the pool would fail them.
            assert_eq!(s, 200, "{p} answers from memory");
        }
        *by_status.entry((p.to_string(), s)).or_default() += 1;
    }
    eprintln!("answers under exhaustion: {by_status:?}");
    assert!(
        by_status.keys().any(|(_, s)| *s == 503),
        "the pool was exhausted: some 503 expected: {by_status:?}"
    );

    blocker.batch_execute("ROLLBACK").await.unwrap();
    let _ = stuck.await.unwrap();
    let t = Instant::now();
    loop {
        let (a, _) = http(port, "GET", "/sync-runs", None).await.unwrap();
        let (b, _) = http(port, "GET", "/health", None).await.unwrap();
        if (a, b) == (200, 200) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no recovery: {a} {b}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = serve.log();
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(serve.terminate(), Some(0), "{}", serve.log());
}

/// Two `serve` processes on one PostgreSQL database, a 1 s interval, ~25 s, the upstream
/// revising events meanwhile: their runs never overlap (checked on the `started_at` /
/// `finished_at` intervals in `sync_runs`), and the catalogue ends exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_serve_processes_never_overlap() {
    let Some(db) = TestDb::postgres("reliability::two_serve_processes").await else {
        return;
    };
    let mut cat = Catalogue::from_fixture(FIXTURE);
    let mock = FdsnMock::new(cat.clone());
    // A slow upstream, so that runs last long enough to meet each other.
    *mock.delay.lock().unwrap() = Duration::from_millis(150);
    let server = fdsn_server(mock.clone()).await;
    db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str| {
        let mut cmd = quakesync(dir.path(), &db.url, &server.uri());
        cmd.env("QUAKESYNC_STARTUP_DELAY_SECS", "0")
            .env("QUAKESYNC_SYNC_INTERVAL_SECS", "1")
            .env("QUAKESYNC_OVERLAP_SECS", "0");
        Serve::start(cmd, dir.path(), name)
    };
    let mut a = start("a");
    let mut b = start("b");
    a.wait_ready().await;
    b.wait_ready().await;

    // The upstream revises a few events every ~3 s, then settles. Meanwhile manual
    // triggers hit both processes at odd moments (the schedulers alone phase-lock: the
    // process whose tick comes first would win every time).
    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    for round in 0..6 {
        for i in 0..6u64 {
            tokio::time::sleep(Duration::from_millis(370 + 40 * i)).await;
            let port = if i % 2 == 0 { a.port } else { b.port };
            let (s, _) = http(port, "POST", "/sync", Some(TOKEN)).await.unwrap();
            *answers.entry(s).or_default() += 1;
        }
        cat.generated_ms += 3_000;
        for f in cat.features.iter_mut().skip(round * 10).take(10) {
            f["properties"]["updated"] = json!(cat.generated_ms);
            f["properties"]["place"] = json!(format!("revision {round}"));
        }
        mock.set(cat.clone());
    }
    let settled = chrono::Utc::now();
    // Until a run that started after the last revision has succeeded.
    let t = Instant::now();
    loop {
        let runs = all_runs(&db.url).await;
        if runs
            .iter()
            .any(|r| r.status == "succeeded" && r.started_at.0 > settled)
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no run after settling"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(a.terminate(), Some(0), "{}", a.log());
    assert_eq!(b.terminate(), Some(0), "{}", b.log());

    let runs = all_runs(&db.url).await;
    assert!(runs.len() >= 5, "{runs:?}");
    for r in &runs {
        assert!(r.finished_at.is_some(), "{r:?}");
        assert_ne!(r.status, "running", "{r:?}");
        assert_ne!(r.status, "abandoned", "no run stepped on another: {r:?}");
    }
    let mut spans: Vec<_> = runs
        .iter()
        .map(|r| (r.started_at.0, r.finished_at.unwrap().0, r.id))
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "runs {} and {} overlap: {:?} / {:?}",
            w[0].2,
            w[1].2,
            w[0],
            w[1]
        );
    }
    let skipped = a
        .log()
        .matches("Sync already in progress, skipping this run")
        .count()
        + b.log()
            .matches("Sync already in progress, skipping this run")
            .count();
    let ran_a = a.log().matches("Starting earthquake sync").count();
    let ran_b = b.log().matches("Starting earthquake sync").count();
    eprintln!(
        "{} runs ({ran_a} by a, {ran_b} by b), {skipped} skipped ticks",
        runs.len()
    );
    eprintln!("manual triggers answered: {answers:?}");
    assert!(skipped > 0, "the two processes did contend");
    assert!(ran_a > 0 && ran_b > 0, "both processes ran syncs");
    assert!(
        answers.keys().all(|s| *s == 202 || *s == 409),
        "{answers:?}"
    );
    assert_eq!(catalogue(&db.url).await, expected(&cat.features));
}
