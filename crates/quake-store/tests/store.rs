//! quake-store against real databases: every test runs on SQLite (a temp file) and on
//! PostgreSQL (`TEST_DATABASE_URL`, a fresh database per test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use quake_store::both_backends;
use quake_store::testing::TestDb;
use quake_store::{EventRecord, NewRejected, Store, Ts};
use quake_store::{Outcome, PageWrite};
use sync_engine::policy::decide;

fn ms(t: i64) -> Ts {
    Ts(DateTime::<Utc>::from_timestamp_millis(t).unwrap())
}

fn rec(id: &str, ids: &[&str], updated: i64, hash: &str) -> EventRecord {
    let mut all: Vec<&str> = ids.to_vec();
    all.push(id);
    all.sort();
    all.dedup();
    let ids = format!(",{},", all.join(","));
    EventRecord {
        time: ms(1_626_000_000_000),
        magnitude: Some(2.5),
        mag_type: Some("ml".into()),
        place: Some(format!("place of {id}")),
        longitude: -120.5,
        latitude: 35.25,
        depth_km: Some(-0.68),
        event_type: Some("earthquake".into()),
        net: Some("ci".into()),
        code: Some(id.trim_start_matches("ci").into()),
        sig: Some(100),
        ..quake_store::testing::bare_record(id, &ids, updated, hash, "automatic")
    }
}

async fn apply(store: &Store, run: Option<i64>, recs: &[EventRecord]) -> Vec<Outcome> {
    let page = match run {
        Some(id) => PageWrite::new(recs).of_run(id),
        None => PageWrite::new(recs),
    };
    let res = store.apply_page(page, decide).await.unwrap();
    res.outcomes.into_iter().map(|(_, o)| o).collect()
}

async fn event(store: &Store, id: &str) -> quake_store::Earthquake {
    store
        .event(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{id} missing"))
}

both_backends!(each_outcome_of_a_page_write, async |db: TestDb| {
    let store: Store = db.store().await;
    // insert
    let a = rec("ci1", &[], 1000, "h1");
    assert_eq!(
        apply(&store, None, std::slice::from_ref(&a)).await,
        vec![Outcome::Inserted]
    );
    let stored = event(&store, "ci1").await;
    assert_eq!(stored.depth_km, Some(-0.68));
    assert_eq!(stored.updated, ms(1000));
    // same content again: unchanged
    assert_eq!(
        apply(&store, None, std::slice::from_ref(&a)).await,
        vec![Outcome::Unchanged]
    );
    // newer updated: update (a field changes, magnitude becomes null)
    let mut newer = rec("ci1", &[], 2000, "h2");
    newer.magnitude = None;
    assert_eq!(apply(&store, None, &[newer]).await, vec![Outcome::Updated]);
    let stored = event(&store, "ci1").await;
    assert_eq!(stored.magnitude, None);
    assert_eq!(stored.updated, ms(2000));
    // equal updated, different content (USGS changes place without touching updated)
    let mut place_only = rec("ci1", &[], 2000, "h3");
    place_only.place = Some("Greece-Albania border region".into());
    assert_eq!(
        apply(&store, None, &[place_only]).await,
        vec![Outcome::Updated]
    );
    assert_eq!(
        event(&store, "ci1").await.place.as_deref(),
        Some("Greece-Albania border region")
    );
    // older updated: ignored, nothing written
    let mut older = rec("ci1", &[], 1500, "h4");
    older.place = Some("stale".into());
    assert_eq!(
        apply(&store, None, &[older]).await,
        vec![Outcome::Unchanged]
    );
    assert_eq!(
        event(&store, "ci1").await.place.as_deref(),
        Some("Greece-Albania border region")
    );
    // deleted: row kept with status deleted
    let mut del = rec("ci1", &[], 3000, "h5");
    del.status = "deleted".into();
    assert_eq!(apply(&store, None, &[del]).await, vec![Outcome::Deleted]);
    assert_eq!(event(&store, "ci1").await.status, "deleted");
    // merged: us2 lists the stored primary id ci9 in its ids
    assert_eq!(
        apply(&store, None, &[rec("ci9", &[], 1000, "x")]).await,
        vec![Outcome::Inserted]
    );
    assert_eq!(
        apply(&store, None, &[rec("us2", &["ci9"], 4000, "y")]).await,
        vec![Outcome::Merged]
    );
    assert_eq!(
        event(&store, "ci9").await.merged_into.as_deref(),
        Some("us2")
    );
    assert_eq!(event(&store, "us2").await.merged_into, None);
    // an alias shared by two events that is nobody's primary id merges nothing
    assert_eq!(
        apply(
            &store,
            None,
            &[
                rec("pr1", &["at00n3rz0w"], 1, "p1"),
                rec("pr2", &["at00n3rz0w"], 1, "p2")
            ]
        )
        .await,
        vec![Outcome::Inserted, Outcome::Inserted]
    );
    let counts = store.catalogue_counts().await.unwrap();
    assert_eq!((counts.live, counts.deleted, counts.merged), (3, 1, 1));
});

both_backends!(a_failing_write_costs_only_itself, async |db: TestDb| {
    let store: Store = db.store().await;
    let run = store.open_run(quake_core::Trigger::Cli).await.unwrap();
    let mut bad = rec("ci2", &[], 1000, "b");
    bad.latitude = 200.0; // refused by the table's CHECK constraint
    let page = vec![rec("ci1", &[], 1000, "a"), bad, rec("ci3", &[], 1000, "c")];
    let res = (store
        .apply_page(PageWrite::new(&page).of_run(run.id), decide)
        .await)
        .unwrap();
    let outcomes: Vec<_> = res.outcomes.iter().map(|(_, o)| o.clone()).collect();
    assert_eq!(outcomes[0], Outcome::Inserted);
    assert!(
        matches!(&outcomes[1], Outcome::Rejected(r) if r.contains("database refused")),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[2], Outcome::Inserted);
    let all = store.all_events().await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec!["ci1", "ci3"]
    );
    let rejected = store.rejected_records(Some(run.id)).await.unwrap();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].source_id.as_deref(), Some("ci2"));
    assert!(
        rejected[0].payload.contains("\"latitude\":200.0"),
        "{}",
        rejected[0].payload
    );
    let run = store.run(run.id).await.unwrap().unwrap();
    assert_eq!(
        (run.fetched, run.inserted, run.rejected, run.pages),
        (3, 2, 1, 1)
    );
});

both_backends!(nul_bytes_refused_before_the_database, async |db: TestDb| {
    let store: Store = db.store().await;
    let mut nul = rec("ci5", &[], 1000, "n");
    nul.place = Some("bad\0place".into());
    let outcomes = apply(&store, None, &[nul, rec("ci6", &[], 1000, "ok")]).await;
    assert_eq!(
        outcomes[0],
        Outcome::Rejected("NUL character in field `place`".into())
    );
    assert_eq!(outcomes[1], Outcome::Inserted);
    let rejected = store.rejected_records(None).await.unwrap();
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].reason.contains("NUL"));
});

both_backends!(quarantine_keeps_raw_payload, async |db: TestDb| {
    let store: Store = db.store().await;
    let raw = r#"{"type":"Feature","id":"","properties":{"time":null}}"#;
    let q = NewRejected {
        run_id: None,
        source_id: None,
        reason: "empty id".into(),
        payload: raw.into(),
        rejected_at: Ts::now(),
    };
    let (recs, refused) = ([rec("ci7", &[], 1, "z")], [q]);
    let res = (store
        .apply_page(PageWrite::new(&recs).rejected(&refused), decide)
        .await)
        .unwrap();
    assert_eq!(
        (res.counts.fetched, res.counts.inserted, res.counts.rejected),
        (2, 1, 1)
    );
    let rejected = store.rejected_records(None).await.unwrap();
    assert_eq!(rejected[0].payload, raw);
});

both_backends!(runs_and_cursors, async |db: TestDb| {
    let store: Store = db.store().await;
    let r1 = store
        .open_run(quake_core::Trigger::Scheduled)
        .await
        .unwrap();
    assert_eq!(r1.status, "running");
    let r2 = store.open_run(quake_core::Trigger::Manual).await.unwrap();
    // r2's holder finds r1 left running by a dead process
    assert_eq!(store.abandon_running(Some(r2.id)).await.unwrap(), 1);
    let r1 = store.run(r1.id).await.unwrap().unwrap();
    assert_eq!(r1.status, "abandoned");
    assert!(r1.finished_at.is_some());
    let r2 = store
        .finish_run(r2.id, quake_core::RunStatus::Succeeded, None)
        .await
        .unwrap();
    assert_eq!(r2.status, "succeeded");
    let latest = store.latest_runs(10).await.unwrap();
    assert_eq!(
        latest.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![r2.id, r1.id]
    );
    assert_eq!(
        store.last_success().await.unwrap().map(|r| r.id),
        Some(r2.id)
    );

    assert_eq!(store.sync_state("usgs").await.unwrap(), None);
    store
        .set_sync_state("usgs", Some(ms(1_626_790_000_123)), 0, None)
        .await
        .unwrap();
    store
        .set_sync_state("usgs", Some(ms(1_626_790_999_456)), 500, Some(ms(1)))
        .await
        .unwrap();
    let st = store.sync_state("usgs").await.unwrap().unwrap();
    assert_eq!(
        (st.cursor, st.resume_offset, st.start_time),
        (Some(ms(1_626_790_999_456)), 500, Some(ms(1)))
    );
});

both_backends!(migrations_are_idempotent, async |db: TestDb| {
    let store: Store = db.store().await;
    assert_eq!(store.migrate().await.unwrap(), 0);
    assert!(store.migrations_applied().await.unwrap());
    store.ping().await.unwrap();
});

#[tokio::test]
async fn cluster_lock_is_exclusive_and_freed_when_its_connection_closes() {
    let Some(db) = TestDb::postgres("cluster_lock").await else {
        return;
    };
    let store = db.store().await;
    let other = Store::connect(&db.url, Default::default()).await.unwrap();
    let first = store
        .try_sync_lock()
        .await
        .unwrap()
        .expect("first holder gets the lock");
    assert!(first.is_cluster_wide());
    assert!(
        other.try_sync_lock().await.unwrap().is_none(),
        "second holder refused"
    );
    drop(first); // closes the dedicated connection
    let mut again = None;
    // Polled until PostgreSQL has ended the session (60 s only guards a hang).
    for _ in 0..3000 {
        again = other.try_sync_lock().await.unwrap();
        if again.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let again = again.expect("lock freed after the holder's connection closed");
    again.release().await.unwrap();
    assert!(store.try_sync_lock().await.unwrap().is_some());
}

#[tokio::test]
async fn cluster_lock_freed_when_the_holding_process_dies() {
    let Some(db) = TestDb::postgres("cluster_lock_process").await else {
        return;
    };
    let store = db.store().await;
    // A separate process (psql) takes the same advisory lock and is killed.
    let key = quake_store::SYNC_LOCK_KEY;
    // Like our own holder, the child's session is idle while it holds the lock.
    let mut child = std::process::Command::new("psql")
        .arg(&db.url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("psql available");
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, "SELECT pg_advisory_lock({key});").unwrap();
        stdin.flush().unwrap();
    }
    let mut held = false;
    // Polled until psql holds it, then until PostgreSQL frees it (60 s each only guards a
    // hang: a loaded machine may take seconds to start psql or end a session).
    for _ in 0..1200 {
        match store.try_sync_lock().await.unwrap() {
            Some(l) => l.release().await.unwrap(),
            None => {
                held = true;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(held, "the child process took the lock");
    child.kill().unwrap();
    let _ = child.wait();
    let mut freed = false;
    for _ in 0..1200 {
        if store.try_sync_lock().await.unwrap().is_some() {
            freed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(freed, "PostgreSQL freed the dead process's lock");
}

#[tokio::test]
async fn sqlite_lock_is_exclusive_across_stores_and_freed_on_drop() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    // A second store on the same file stands for a second process: the file lock belongs
    // to an open file, not to a process, so two stores of one process exclude each other.
    let other = Store::connect(&db.url, Default::default()).await.unwrap();
    let first = store
        .try_sync_lock()
        .await
        .unwrap()
        .expect("first holder gets the lock");
    assert!(!first.is_cluster_wide());
    assert_eq!(first.scope(), quake_store::LockScope::Host);
    let path = quake_store::sqlite_lock_path(
        quake_store::sqlite_path(&db.url).unwrap(),
        quake_store::SYNC_LOCK_KEY,
    );
    assert!(
        path.to_string_lossy().ends_with(".sync.lock"),
        "{}",
        path.display()
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().trim(),
        std::process::id().to_string(),
        "the lock file names its holder"
    );
    assert!(
        other.try_sync_lock().await.unwrap().is_none(),
        "second holder refused"
    );
    assert!(
        store.try_sync_lock().await.unwrap().is_none(),
        "the holder's own store is refused a second lock too"
    );
    drop(first); // closes the file: no waiting, the OS frees the lock at once
    let again = other
        .try_sync_lock()
        .await
        .unwrap()
        .expect("lock freed when its holder dropped it");
    again.release().await.unwrap();
    assert!(store.try_sync_lock().await.unwrap().is_some());
}

#[tokio::test]
async fn sqlite_lock_freed_when_the_holding_process_dies() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let path = quake_store::sqlite_lock_path(
        quake_store::sqlite_path(&db.url).unwrap(),
        quake_store::SYNC_LOCK_KEY,
    );
    // Another process takes the same exclusive lock (util-linux flock(1), the same
    // flock(2) call; --no-fork: the process that holds it is the one killed) and signals
    // through a file once it holds it.
    let held = path.with_extension("held");
    let Ok(mut child) = std::process::Command::new("flock")
        .arg("--exclusive")
        .arg("--no-fork")
        .arg(&path)
        .arg("sh")
        .arg("-c")
        .arg(format!("touch '{}' && exec sleep 600", held.display()))
        .spawn()
    else {
        quake_store::testing::skip_or_fail(
            "sqlite_lock_freed_when_the_holding_process_dies",
            "flock(1) (util-linux) is not installed",
        );
        return;
    };
    // Waiting for the child to say so is an event, not a race: no bound on how long it takes.
    while !held.exists() {
        assert!(child.try_wait().unwrap().is_none(), "flock exited early");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        store.try_sync_lock().await.unwrap().is_none(),
        "the other process holds the lock"
    );
    child.kill().unwrap(); // SIGKILL: no chance to unlock
    child.wait().unwrap();
    assert!(
        store.try_sync_lock().await.unwrap().is_some(),
        "the OS freed the dead process's lock at once"
    );
}

#[tokio::test]
async fn concurrent_migrations_both_succeed() {
    let Some(db) = TestDb::postgres("concurrent_migrations").await else {
        return;
    };
    let a = Store::connect(&db.url, Default::default()).await.unwrap();
    let b = Store::connect(&db.url, Default::default()).await.unwrap();
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert!(
        ra + rb > 0 && (ra == 0 || rb == 0),
        "one starter applied every migration, the other none: {ra} and {rb}"
    );
    assert!(a.migrations_applied().await.unwrap());
}

#[tokio::test]
async fn tls_sslmode_require_connects() {
    let Some(db) = TestDb::postgres("tls_require").await else {
        return;
    };
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{sep}sslmode=require", db.url);
    let store = Store::connect(&url, Default::default()).await.unwrap();
    let mut conn = store.conn().await.unwrap();
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Ssl {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        ssl: bool,
    }
    let quake_store::DbConn::Pg(c) = conn.db() else {
        panic!("postgres")
    };
    let row: Ssl = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(c)
        .await
        .unwrap();
    assert!(row.ssl, "the session is encrypted");
}

#[tokio::test]
async fn bad_urls_are_named_and_passwords_hidden() {
    let err = Store::connect("mysql://u:hunter2@h/db", Default::default())
        .await
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("expected postgres://") && !msg.contains("hunter2"),
        "{msg}"
    );
    // A password given as a query parameter is hidden too (it used to be logged).
    let err = Store::connect(
        "mysql://u@h/db?password=hunter2&sslmode=require",
        Default::default(),
    )
    .await
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(!msg.contains("hunter2"), "{msg}");
    assert!(msg.contains("password=***"), "{msg}");
}

/// Every pooled PostgreSQL connection runs without JIT and without parallel workers (their
/// fixed costs doubled a 1000-event box page at 5M rows), in UTC, with the statement timeout.
#[tokio::test]
async fn pooled_postgres_connections_run_without_jit_or_parallel_workers() {
    let Some(db) =
        TestDb::postgres("pooled_postgres_connections_run_without_jit_or_parallel_workers").await
    else {
        return;
    };
    let store: Store = db.store().await;
    let setting = async |name: &str| {
        quake_store::testing::pg_session_setting(&store, name)
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(setting("jit").await, "off");
    assert_eq!(setting("max_parallel_workers_per_gather").await, "0");
    assert_eq!(setting("TimeZone").await, "UTC");
    assert_eq!(setting("statement_timeout").await, "1min");
    assert_eq!(setting("application_name").await, "quakesync");
}
