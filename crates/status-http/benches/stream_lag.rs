//! Commit → client lag of `GET /events/stream` across replicas on PostgreSQL (issue 18):
//! replica A writes one event per page (`Store::apply_page` through its own pool: what a
//! sync or the live lane commits); replica B, another `Store` (its own pool and its own
//! `LISTEN` connection) behind an actix server on a loopback port, streams to a client
//! reading over HTTP. Per commit: the time from the writer's commit returning to the
//! client having parsed the event, and from the page write starting (write + commit +
//! NOTIFY + B's read of the change log + rendering + the socket). p50 / p95 / max of
//! `QS_LAG_ITERS` commits (default 200), one every 20 ms.
//!
//! `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p status-http --bench stream_lag`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/sse/mod.rs"]
mod sse;

use std::sync::Arc;
use std::time::{Duration, Instant};

use quake_api::{FdsnClient, HttpOptions};
use quake_store::PageWrite;
use quake_store::testing::{TestDb, bare_record};
use status_http::AppState;
use sync_engine::policy::decide;
use sync_engine::{Engine, EngineConfig, FdsnSource, SchedulerHandle};

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(db) = TestDb::postgres("stream_lag bench").await else {
        eprintln!("stream_lag: set TEST_DATABASE_URL to a PostgreSQL server; skipped");
        return;
    };
    let iters: usize = std::env::var("QS_LAG_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let writer = db.store().await; // replica A
    let reader = db.store().await; // replica B
    let client = FdsnClient::new(
        "http://127.0.0.1:9/fdsnws/event/1/query",
        HttpOptions::default(),
    )
    .unwrap();
    let engine = Engine::new(
        reader,
        Arc::new(FdsnSource(client)),
        EngineConfig::default(),
    );
    let state = AppState::new(
        engine,
        SchedulerHandle::disabled(Duration::from_secs(600), Duration::from_secs(30)),
    );
    state.start_stream();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let app_state = state.clone();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().configure(|cfg| status_http::configure_app(cfg, app_state.clone()))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);

    let mut sse = sse::Sse::open(port, "/events/stream").await;
    assert!(sse.frame().await.starts_with("retry: "));
    let (mut from_commit, mut from_write) = (Vec::new(), Vec::new());
    let t0 = chrono::Utc::now().timestamp_millis();
    for i in 0..iters {
        let id = format!("lag{i:05}");
        let rec = bare_record(&id, &format!(",{id},"), t0 + i as i64, "h", "reviewed");
        let start = Instant::now();
        writer
            .apply_page(PageWrite::new(&[rec]), decide)
            .await
            .unwrap();
        let committed = Instant::now();
        let ev = sse.next().await;
        let heard = Instant::now();
        assert_eq!(
            (ev.event.as_str(), ev.data["id"].as_str()),
            ("insert", Some(id.as_str()))
        );
        from_commit.push(heard - committed);
        from_write.push(heard - start);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "stream_lag: {iters} commits on replica A heard by a client of replica B (PostgreSQL LISTEN/NOTIFY, HTTP on loopback)"
    );
    println!(
        "  commit returned -> client has the event: {}",
        percentiles(from_commit)
    );
    println!(
        "  page write started -> client has the event: {}",
        percentiles(from_write)
    );
    state.streams().close();
    handle.stop(true).await;
}
