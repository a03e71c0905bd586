//! The surface through actix's test service, over a real SQLite store (and PostgreSQL when
//! `TEST_DATABASE_URL` is set) and a wiremock upstream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use quake_store::testing::TestDb;
use quake_store::{Store, StoreOptions};
use serde_json::json;

const METRICS: [&str; 14] = [
    "quakesync_sync_runs_total",
    "quakesync_sync_records_total",
    "quakesync_sync_skipped_total",
    "quakesync_sync_duration_seconds",
    "quakesync_last_success_timestamp_seconds",
    "quakesync_sync_in_progress",
    "quakesync_upstream_requests_total",
    "quakesync_db_pool_connections",
    "quakesync_catalogue_events",
    "quakesync_catalogue_newest_update_timestamp_seconds",
    "quakesync_event_lag_seconds",
    "quakesync_live_polls_total",
    "quakesync_live_records_total",
    "quakesync_live_leader",
];

/// `fut`'s answer: the database's unavailability is reported, not waited out (60 s only
/// guards against a hang; how fast is a benchmark's question).
async fn answers_in_time<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), fut)
        .await
        .expect("answered")
}

#[actix_web::test]
async fn every_endpoint_answers_the_spec_shape() {
    let db = TestDb::sqlite();
    let up = upstream(200, Duration::ZERO).await;
    let engine = engine(db.store().await, &up);
    let app = app!(state(engine.clone(), Some(TOKEN)));

    // Fresh: healthy, nothing run yet.
    let (s, h) = call!(&app, get("/health"));
    assert_eq!(s, 200, "{h}");
    assert_eq!(keys(&h), ["auto_sync", "database", "status", "version"]);
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["version"], "9.9.9-test");
    assert_eq!(h["database"], json!({"status": "up", "backend": "sqlite"}));
    assert_eq!(
        h["auto_sync"],
        json!({
            "enabled": false,
            "interval": "10 minutes",
            "interval_seconds": 600,
            "is_syncing": false,
            "last_sync_time": null,
            "last_success_time": null,
        })
    );

    assert_eq!(call!(&app, get("/health/live")).0, 200);
    let (s, r) = call!(&app, get("/health/ready"));
    assert_eq!((s, &r["status"]), (200, &json!("ready")), "{r}");

    let (s, st) = call!(&app, get("/sync-status"));
    assert_eq!(s, 200);
    assert_eq!(
        keys(&st),
        [
            "current_sync",
            "lag",
            "last_run",
            "live",
            "protection",
            "scheduler",
            "source"
        ]
    );
    // No live lane started here: the status says so; no lag measured yet.
    assert_eq!(st["live"]["enabled"], json!(false), "{st}");
    assert_eq!(st["live"]["role"], json!("disabled"), "{st}");
    assert_eq!(st["lag"]["latest_seconds"], json!(null), "{st}");
    assert_eq!(
        st["scheduler"],
        json!({
            "enabled": false,
            "interval_seconds": 600,
            "interval_minutes": 10,
            "startup_delay_seconds": 30,
            "next_run_at": null,
        })
    );
    assert_eq!(st["current_sync"]["is_running"], false);
    assert_eq!(st["current_sync"]["run_id"], json!(null));
    assert_eq!(st["current_sync"]["started_at"], json!(null));
    assert_eq!(st["current_sync"]["last_completed"], json!(null));
    assert_eq!(st["last_run"], json!(null));
    assert_eq!(st["source"]["kind"], "fdsn");
    assert_eq!(
        st["source"]["url"],
        format!("{}{QUERY_PATH}", up.uri()).as_str()
    );
    assert_eq!(st["source"]["cursor"], json!(null));
    assert_eq!(
        st["protection"],
        json!({
            "duplicate_prevention": "enabled",
            "lock_based": true,
            "lock_scope": "host",
            "resource_management": "active",
        })
    );

    let (s, runs) = call!(&app, get("/sync-runs"));
    assert_eq!((s, &runs["runs"]), (200, &json!([])), "{runs}");
    assert_eq!(runs["limit"], 20);

    // A manual run, waited for: 200 with the run row.
    let (s, row) = call!(&app, post("/sync?wait=true", Some(TOKEN)));
    assert_eq!(s, 200, "{row}");
    assert_eq!(keys(&row), RUN_ROW_KEYS);
    assert_eq!(row["status"], "succeeded");
    assert_eq!(row["trigger"], "manual");
    assert_eq!(row["inserted"], 3);
    assert_eq!(row["fetched"], 3);
    assert_eq!(row["error"], json!(null));
    assert!(row["duration_ms"].as_i64().unwrap() >= 0);
    let started = row["started_at"].as_str().unwrap();
    assert!(
        started.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(started).is_ok(),
        "{started}"
    );

    let (_, st) = call!(&app, get("/sync-status"));
    assert_eq!(st["last_run"], row);
    assert!(st["current_sync"]["last_completed"].is_string());
    assert!(st["source"]["cursor"].is_string(), "{st}");

    let (_, h) = call!(&app, get("/health"));
    assert_eq!(h["status"], "healthy");
    assert!(h["auto_sync"]["last_success_time"].is_string());

    // Two more runs; the list is newest first and honours the limit.
    for _ in 0..2 {
        assert_eq!(call!(&app, post("/sync?wait=true", Some(TOKEN))).0, 200);
    }
    let (s, runs) = call!(&app, get("/sync-runs?limit=2"));
    assert_eq!(s, 200);
    let list = runs["runs"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list[0]["id"].as_i64() > list[1]["id"].as_i64());
    assert_eq!(keys(&list[0]), RUN_ROW_KEYS);
    assert_eq!(list[0]["unchanged"], 3);

    // Metrics: every name, pre-registered series, values from the runs.
    let res = actix_web::test::call_service(&app, get("/metrics").to_request()).await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = String::from_utf8(actix_web::test::read_body(res).await.to_vec()).unwrap();
    for name in METRICS {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
    }
    for line in [
        "quakesync_sync_runs_total{status=\"succeeded\"} 3",
        "quakesync_sync_runs_total{status=\"failed\"} 0",
        "quakesync_sync_records_total{outcome=\"inserted\"} 3",
        "quakesync_sync_records_total{outcome=\"unchanged\"} 6",
        "quakesync_sync_records_total{outcome=\"merged\"} 0",
        "quakesync_sync_skipped_total 0",
        "quakesync_sync_duration_seconds_count 3",
        "quakesync_sync_in_progress 0",
        // Counted by the engine itself: three runs of a count and one page each, no
        // wrapper.
        "quakesync_upstream_requests_total{outcome=\"success\"} 6",
        "quakesync_upstream_requests_total{outcome=\"http_error\"} 0",
        "quakesync_db_pool_connections{state=\"max\"} 4",
        "quakesync_catalogue_events{state=\"live\"} 3",
        "quakesync_catalogue_events{state=\"deleted\"} 0",
        // The three inserts' lag, observed in the sync lane; no live lane here.
        "quakesync_event_lag_seconds_count{lane=\"sync\"} 3",
        "quakesync_event_lag_seconds_count{lane=\"live\"} 0",
        "quakesync_live_polls_total{outcome=\"modified\"} 0",
        "quakesync_live_leader 0",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    assert!(!text.contains("quakesync_last_success_timestamp_seconds 0\n"));
    assert!(!text.contains("quakesync_catalogue_newest_update_timestamp_seconds 0\n"));
    // A second scrape does not count the runs twice.
    let res = actix_web::test::call_service(&app, get("/metrics").to_request()).await;
    let text = String::from_utf8(actix_web::test::read_body(res).await.to_vec()).unwrap();
    assert!(
        text.contains("quakesync_sync_duration_seconds_count 3"),
        "{text}"
    );
    assert!(text.contains("quakesync_sync_runs_total{status=\"succeeded\"} 3"));
    assert!(text.contains("quakesync_upstream_requests_total{outcome=\"success\"} 6"));
}

#[actix_web::test]
async fn errors_are_json() {
    let db = TestDb::sqlite();
    let up = upstream(200, Duration::ZERO).await;
    let app = app!(state(engine(db.store().await, &up), Some(TOKEN)));

    for bad in ["0", "101", "abc", "-1", "2.5"] {
        let (s, e) = call!(&app, get(&format!("/sync-runs?limit={bad}")));
        assert_eq!(s, 400, "{bad}: {e}");
        assert_eq!(keys(&e), ["error"]);
        assert!(e["error"].as_str().unwrap().contains("limit"), "{e}");
    }
    assert_eq!(call!(&app, get("/sync-runs?limit=100")).0, 200);
    assert_eq!(call!(&app, get("/sync-runs?limit=1")).0, 200);

    // actix's own query extractor error, in the same shape.
    let (s, e) = call!(&app, post("/sync?wait=perhaps", Some(TOKEN)));
    assert_eq!(s, 400, "{e}");
    assert_eq!(keys(&e), ["error"]);

    let (s, e) = call!(&app, get("/no/such/route"));
    assert_eq!((s, e), (404, json!({"error": "not found"})));
    let (s, e) = call!(&app, get("/sync"));
    assert_eq!((s, e), (405, json!({"error": "method not allowed"})));
    let (s, e) = call!(&app, post("/health", None));
    assert_eq!(s, 405);
    assert_eq!(keys(&e), ["error"]);
}

#[actix_web::test]
async fn manual_trigger_needs_the_token() {
    let db = TestDb::sqlite();
    let up = upstream(200, Duration::ZERO).await;
    let engine = engine(db.store().await, &up);

    // No token configured: 403, whatever is sent.
    let app = app!(state(engine.clone(), None));
    for token in [None, Some(TOKEN), Some("")] {
        let (s, e) = call!(&app, post("/sync", token));
        assert_eq!(s, 403, "{e}");
        assert_eq!(keys(&e), ["error"]);
    }
    // An empty configured token counts as none.
    let app = app!(state(engine.clone(), Some("")));
    assert_eq!(call!(&app, post("/sync", Some(""))).0, 403);

    let app = app!(state(engine.clone(), Some(TOKEN)));
    let wrong_prefix = &TOKEN[..TOKEN.len() - 1];
    let with_suffix = format!("{TOKEN}x");
    for token in [
        None,
        Some("wrong"),
        Some(wrong_prefix),
        Some(with_suffix.as_str()),
    ] {
        let res = actix_web::test::call_service(&app, post("/sync", token).to_request()).await;
        assert_eq!(res.status(), 401, "{token:?}");
        assert_eq!(res.headers().get("www-authenticate").unwrap(), "Bearer");
        let (_, e) = json(res).await;
        assert_eq!(keys(&e), ["error"]);
        assert!(!e.to_string().contains(TOKEN));
    }
    // Not a bearer scheme.
    let req = actix_web::test::TestRequest::post()
        .uri("/sync")
        .insert_header(("Authorization", format!("Basic {TOKEN}")));
    assert_eq!(call!(&app, req).0, 401);

    let (s, body) = call!(&app, post("/sync", Some(TOKEN)));
    assert_eq!(s, 202, "{body}");
    assert_eq!(keys(&body), ["run_id", "status"]);
    assert_eq!(body["status"], "started");
    assert!(body["run_id"].as_i64().unwrap() > 0);
    idle(&engine).await;
}

#[actix_web::test]
async fn degraded_after_a_failed_run() {
    let db = TestDb::sqlite();
    let up = upstream(500, Duration::ZERO).await;
    let engine = engine(db.store().await, &up);
    let app = app!(state(engine.clone(), Some(TOKEN)));

    let (s, row) = call!(&app, post("/sync?wait=true", Some(TOKEN)));
    assert_eq!(s, 200, "{row}");
    assert_eq!(row["status"], "failed");
    assert!(row["error"].as_str().unwrap().contains("500"), "{row}");

    let (s, h) = call!(&app, get("/health"));
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["status"], "degraded");
    assert_eq!(h["database"]["status"], "up");
    assert!(h["auto_sync"]["last_sync_time"].is_string());
    assert_eq!(h["auto_sync"]["last_success_time"], json!(null));

    let res = actix_web::test::call_service(&app, get("/metrics").to_request()).await;
    let text = String::from_utf8(actix_web::test::read_body(res).await.to_vec()).unwrap();
    assert!(
        text.contains("quakesync_sync_runs_total{status=\"failed\"} 1"),
        "{text}"
    );
}

#[actix_web::test]
async fn busy_answers_409_and_status_answers_from_memory() {
    let db = TestDb::sqlite();
    let (up, page1) = gated_upstream().await;
    let engine = engine(db.store().await, &up);
    let app = app!(state(engine.clone(), Some(TOKEN)));

    let (s, started) = call!(&app, post("/sync", Some(TOKEN)));
    assert_eq!(s, 202, "{started}");
    let run_id = started["run_id"].as_i64().unwrap();

    let (s, busy) = call!(&app, post("/sync", Some(TOKEN)));
    assert_eq!(
        (s, busy),
        (409, json!({"status": "already_running", "run_id": run_id}))
    );
    let (s, busy) = call!(&app, post("/sync?wait=true", Some(TOKEN)));
    assert_eq!(s, 409, "{busy}");

    // Answered from memory while the run holds the guard and waits on the upstream.
    page1.arrived().await;
    let (s, st) = call!(&app, get("/sync-status"));
    assert_eq!(s, 200);
    assert_eq!(st["current_sync"]["is_running"], true);
    assert_eq!(st["current_sync"]["run_id"], run_id);
    assert!(st["current_sync"]["started_at"].is_string());

    let (_, h) = call!(&app, get("/health"));
    assert_eq!(h["auto_sync"]["is_syncing"], true);
    let res = actix_web::test::call_service(&app, get("/metrics").to_request()).await;
    let text = String::from_utf8(actix_web::test::read_body(res).await.to_vec()).unwrap();
    assert!(text.contains("quakesync_sync_in_progress 1"), "{text}");
    assert!(text.contains("quakesync_sync_skipped_total 2"), "{text}");

    page1.open();
    idle(&engine).await;
    let (_, runs) = call!(&app, get("/sync-runs"));
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs["runs"][0]["status"], "succeeded");
}

/// 200 concurrent `POST /sync` while a sync waits on the upstream: one 202, 199 409, one
/// run row.
async fn concurrent_posts(store: Store) {
    let (up, page1) = gated_upstream().await;
    let engine = engine(store, &up);
    let app = app!(state(engine.clone(), Some(TOKEN)));

    let calls = (0..200).map(|_| async {
        let res =
            actix_web::test::call_service(&app, post("/sync", Some(TOKEN)).to_request()).await;
        json(res).await
    });
    let answers = futures_util::future::join_all(calls).await;
    let started: Vec<_> = answers.iter().filter(|(s, _)| *s == 202).collect();
    let busy: Vec<_> = answers.iter().filter(|(s, _)| *s == 409).collect();
    assert_eq!(started.len(), 1, "{answers:?}");
    assert_eq!(busy.len(), 199);
    let run_id = &started[0].1["run_id"];
    for (_, b) in &busy {
        assert_eq!(b["status"], "already_running");
        assert_eq!(&b["run_id"], run_id, "{b}");
    }
    page1.open();
    idle(&engine).await;
    let (_, runs) = call!(&app, get("/sync-runs"));
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(&runs["runs"][0]["id"], run_id);
    assert_eq!(engine.status().skipped_total, 199);
}

#[actix_web::test]
async fn two_hundred_concurrent_posts_start_one_run_sqlite() {
    let db = TestDb::sqlite();
    concurrent_posts(db.store().await).await;
}

#[actix_web::test]
async fn two_hundred_concurrent_posts_start_one_run_postgres() {
    let Some(db) = TestDb::postgres("two_hundred_concurrent_posts_start_one_run_postgres").await
    else {
        return;
    };
    concurrent_posts(db.store().await).await;
}

/// A pool whose only connection is held: the database "does not answer".
#[actix_web::test]
async fn unhealthy_when_the_database_does_not_answer() {
    let db = TestDb::sqlite();
    db.store().await; // migrate
    let store = Store::connect(
        &db.url,
        StoreOptions {
            pool_size: 1,
            connection_timeout: Duration::from_millis(300),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let up = upstream(200, Duration::ZERO).await;
    let engine = engine(store.clone(), &up);
    let app = app!(state(engine.clone(), Some(TOKEN)));
    assert_eq!(call!(&app, get("/health")).1["status"], "healthy");

    let held = store.conn().await.unwrap();
    let (s, h) = answers_in_time(async { call!(&app, get("/health")) }).await;
    assert_eq!(s, 503, "{h}");
    assert_eq!(h["status"], "unhealthy");
    assert_eq!(h["database"]["status"], "down");
    assert_eq!(keys(&h), ["auto_sync", "database", "status", "version"]);

    let (s, r) = call!(&app, get("/health/ready"));
    assert_eq!((s, &r["status"]), (503, &json!("not_ready")));
    assert_eq!(call!(&app, get("/health/live")).0, 200);

    let (s, e) = call!(&app, get("/sync-runs"));
    assert_eq!(
        (s, e),
        (503, json!({"error": "the database is unavailable"}))
    );

    // From memory: with the pool's only connection held it could not answer otherwise.
    let (s, _) = call!(&app, get("/sync-status"));
    assert_eq!(s, 200);

    // Metrics still answer, keeping the last catalogue values.
    let res = actix_web::test::call_service(&app, get("/metrics").to_request()).await;
    assert_eq!(res.status(), 200);

    drop(held);
    assert_eq!(call!(&app, get("/health")).0, 200);
}

/// PostgreSQL: the database disappears under a running service.
#[actix_web::test]
async fn unhealthy_when_the_postgres_database_is_gone() {
    let Some(db) = TestDb::postgres("unhealthy_when_the_postgres_database_is_gone").await else {
        return;
    };
    let store = db.store().await;
    let up = upstream(200, Duration::ZERO).await;
    let engine = engine(store, &up);
    let app = app!(state(engine.clone(), Some(TOKEN)));
    let (s, h) = call!(&app, get("/health"));
    assert_eq!(
        (s, &h["database"]),
        (200, &json!({"status":"up","backend":"postgres"}))
    );
    assert_eq!(
        call!(&app, get("/sync-status")).1["protection"]["lock_scope"],
        "cluster"
    );

    let admin = std::env::var("TEST_DATABASE_URL").unwrap();
    let name = db.url.rsplit('/').next().unwrap().to_string();
    let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();

    let (s, h) = answers_in_time(async { call!(&app, get("/health")) }).await;
    assert_eq!(s, 503, "{h}");
    assert_eq!(h["status"], "unhealthy");
    assert_eq!(h["database"]["status"], "down");
    assert!(!h.to_string().contains("postgres://"));
    assert_eq!(call!(&app, get("/sync-status")).0, 200);
}

// `/sync-status` is served from a cached body: it must still follow every change, the
// scheduler's next tick and the engine's runs alike, while repeated polls between changes
// give the same bytes.
#[actix_web::test]
async fn sync_status_follows_the_scheduler_and_the_runs() {
    let db = TestDb::sqlite();
    let up = upstream(200, Duration::ZERO).await;
    let engine = engine(db.store().await, &up);
    let cancel = tokio_util::sync::CancellationToken::new();
    let scheduler = sync_engine::Scheduler::new(
        engine.clone(),
        Duration::from_secs(3600),
        Duration::from_millis(100),
        cancel.clone(),
    );
    let state = status_http::AppState::new(engine.clone(), scheduler.handle());
    let app = app!(state);
    let (_, before) = call!(&app, get("/sync-status"));
    assert_eq!(before["last_run"], json!(null));
    assert_eq!(before["scheduler"]["next_run_at"], json!(null), "{before}");
    let task = scheduler.spawn();

    // The first tick (100 ms) moves next_run_at an hour on and runs one sync.
    let mut status = engine.subscribe();
    tokio::time::timeout(
        Duration::from_secs(60), // a guard against a hang
        status.wait_for(|s| s.last_run.as_ref().is_some_and(|r| r.status == "succeeded")),
    )
    .await
    .expect("the first tick ran a sync")
    .unwrap();
    let (s, finished) = call!(&app, get("/sync-status"));
    assert_eq!(s, 200);
    assert_eq!(finished["last_run"]["status"], "succeeded", "{finished}");
    assert_eq!(finished["last_run"]["inserted"], 3, "{finished}");
    assert_eq!(finished["current_sync"]["is_running"], false, "{finished}");
    assert!(finished["source"]["cursor"].is_string(), "{finished}");
    let next: chrono::DateTime<chrono::Utc> = finished["scheduler"]["next_run_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        next > chrono::Utc::now() + chrono::Duration::minutes(59),
        "{finished}"
    );

    // Stopped: no next tick, and the body says so.
    cancel.cancel();
    task.await.unwrap();
    let (_, stopped) = call!(&app, get("/sync-status"));
    assert_eq!(
        stopped["scheduler"]["next_run_at"],
        json!(null),
        "{stopped}"
    );
    // Nothing changes any more: the same answer twice.
    assert_eq!(call!(&app, get("/sync-status")).1, stopped);
}
