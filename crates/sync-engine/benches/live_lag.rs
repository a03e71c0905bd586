//! Lag benchmark of the live lane (issue 18): from an event's publication upstream to its
//! commit, p50 / p95, against local servers.
//!
//! - **Poll**: a summary feed (ETag, 304 when unchanged) to which a publisher adds one new
//!   event at a time, at random moments spread over `LAG_SPAN_SECS`, each with `updated` =
//!   its publication time; the lane polls every `LAG_INTERVAL_MS`. The lag is then the wait
//!   for the next poll (uniform over one interval) plus the write: p50 ≈ interval / 2,
//!   p95 ≈ 0.95 × interval, whatever the interval. (USGS's own delay before an event
//!   reaches its feed, about a minute, comes on top in production.)
//! - **Push**: a WebSocket server sending EMSC `create` messages at random gaps of up to
//!   200 ms, `lastupdate` = the moment sent; the lane writes what arrives within its 200 ms
//!   coalescing window as one batch.
//!
//! The lag of each event is its row's `first_seen_at` (the write's clock) minus its
//! `updated`. PostgreSQL when `TEST_DATABASE_URL` is set, and SQLite (a temp file).
//!
//! `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p sync-engine --bench live_lag`
//! (`LAG_INTERVAL_MS` default 5000, `LAG_EVENTS` default 40, `LAG_SPAN_SECS` default 40,
//! `LAG_PUSH_EVENTS` default 200).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::SinkExt;
use quake_api::{EmscClient, FdsnClient, PushOptions};
use quake_store::Store;
use quake_store::testing::TestDb;
use serde_json::{Value, json};
use sync_engine::{
    EmscSource, Engine, EngineConfig, FdsnSource, LiveConfig, Schedule, SyncService,
};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/../../testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A small deterministic generator (no dependency for one benchmark's jitter).
struct Lcg(u64);

impl Lcg {
    fn unit(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Default)]
struct Feed {
    state: Arc<Mutex<(u32, String)>>,
    polls: Arc<AtomicUsize>,
    not_modified: Arc<AtomicUsize>,
}

impl Feed {
    fn set(&self, features: &[Value]) {
        let body = json!({
            "type": "FeatureCollection",
            "metadata": {"generated": Utc::now().timestamp_millis(), "count": features.len()},
            "features": features,
        });
        let mut s = self.state.lock().unwrap();
        s.0 += 1;
        s.1 = body.to_string();
    }
}

impl Respond for Feed {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        self.polls.fetch_add(1, Ordering::SeqCst);
        let (version, body) = self.state.lock().unwrap().clone();
        let etag = format!("\"v{version}\"");
        if req
            .headers
            .get("if-none-match")
            .is_some_and(|v| v.to_str().unwrap_or("") == etag)
        {
            self.not_modified.fetch_add(1, Ordering::SeqCst);
            return ResponseTemplate::new(304).insert_header("etag", etag.as_str());
        }
        ResponseTemplate::new(200)
            .insert_header("etag", etag.as_str())
            .set_body_raw(body, "application/json")
    }
}

/// Lags (seconds) of the stored events whose id starts with `prefix`.
async fn lags(store: &Store, prefix: &str) -> Vec<f64> {
    let rows = store.all_events().await.unwrap();
    let mut v: Vec<f64> = rows
        .iter()
        .filter(|e| e.id.starts_with(prefix))
        .map(|e| (e.first_seen_at.0 - e.updated.0).num_milliseconds() as f64 / 1000.0)
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn pct(v: &[f64], p: f64) -> f64 {
    let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

async fn wait_stored(store: &Store, prefix: &str, n: usize) {
    let t = Instant::now();
    while lags(store, prefix).await.len() < n {
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "events never stored"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn bench_poll(store: Store, backend: &str) {
    let interval = Duration::from_millis(env_u64("LAG_INTERVAL_MS", 5000));
    let n = env_u64("LAG_EVENTS", 40) as usize;
    let span = env_u64("LAG_SPAN_SECS", 40) as f64;
    let template = fixture("usgs_4.5_week_2021-07-22T2023Z.geojson")["features"][0].clone();
    let feed = Feed::default();
    feed.set(&[]);
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(feed.clone())
        .mount(&server)
        .await;
    let engine = Engine::new(
        store.clone(),
        Arc::new(FdsnSource(
            FdsnClient::new(&format!("{}/fdsn", server.uri()), Default::default()).unwrap(),
        )),
        EngineConfig::default(),
    );
    let service = SyncService::start(
        engine,
        Schedule {
            enabled: false,
            ..Schedule::default()
        },
    )
    .with_live(Some(LiveConfig {
        interval,
        ..LiveConfig::new(&format!("{}/all_hour.geojson", server.uri()))
    }));
    let mut rng = Lcg(42);
    let mut published = Vec::new();
    let started = Instant::now();
    for i in 0..n {
        tokio::time::sleep(Duration::from_secs_f64(rng.unit() * 2.0 * span / n as f64)).await;
        let mut f = template.clone();
        let now = Utc::now().timestamp_millis();
        let id = format!("lagp{i:05}");
        f["id"] = json!(id);
        f["properties"]["ids"] = json!(format!(",{id},"));
        f["properties"]["code"] = json!(id);
        f["properties"]["time"] = json!(now - 60_000);
        f["properties"]["updated"] = json!(now);
        published.push(f);
        feed.set(&published);
    }
    wait_stored(&store, "lagp", n).await;
    let wall = started.elapsed();
    service.shutdown(Duration::from_secs(5)).await;
    let v = lags(&store, "lagp").await;
    println!(
        "poll {backend}: interval {:.1} s, {n} events published over {:.0} s: lag p50 {:.2} s, p95 {:.2} s, max {:.2} s ({:.2} / {:.2} intervals); {} polls, {} answered 304",
        interval.as_secs_f64(),
        wall.as_secs_f64(),
        pct(&v, 0.5),
        pct(&v, 0.95),
        pct(&v, 1.0),
        pct(&v, 0.5) / interval.as_secs_f64(),
        pct(&v, 0.95) / interval.as_secs_f64(),
        feed.polls.load(Ordering::SeqCst),
        feed.not_modified.load(Ordering::SeqCst),
    );
}

async fn bench_push(store: Store, backend: &str) {
    let n = env_u64("LAG_PUSH_EVENTS", 200) as usize;
    let template =
        fixture("emsc_fdsn_json_2025-04-26_turkey-region_minmag2.5.json")["features"][0].clone();
    let fdsn = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"{"type":"FeatureCollection","metadata":{"count":0},"features":[]}"#,
            "application/json",
        ))
        .mount(&fdsn)
        .await;
    let engine = Engine::new(
        store.clone(),
        Arc::new(EmscSource(
            EmscClient::new(
                &format!("{}/fdsnws/event/1/query", fdsn.uri()),
                Default::default(),
            )
            .unwrap(),
        )),
        EngineConfig::default(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "ws://{}/standing_order/websocket",
        listener.local_addr().unwrap()
    );
    let service = SyncService::start(
        engine,
        Schedule {
            enabled: false,
            ..Schedule::default()
        },
    )
    .with_live(Some(LiveConfig {
        push: PushOptions::default(),
        ..LiveConfig::new(&url)
    }));
    let (tcp, _) = listener.accept().await.unwrap();
    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let mut rng = Lcg(7);
    let started = Instant::now();
    for i in 0..n {
        tokio::time::sleep(Duration::from_secs_f64(rng.unit() * 0.2)).await;
        let mut f = template.clone();
        let id = format!("lagq{i:05}");
        let now = Utc::now();
        f["id"] = json!(id);
        f["properties"]["unid"] = json!(id);
        f["properties"]["lastupdate"] =
            json!(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let msg = json!({"action": "create", "data": f}).to_string();
        ws.send(Message::text(msg)).await.unwrap();
    }
    wait_stored(&store, "lagq", n).await;
    let wall = started.elapsed();
    let v = lags(&store, "lagq").await;
    service.shutdown(Duration::from_secs(5)).await;
    println!(
        "push {backend}: {n} messages over {:.1} s: lag p50 {:.3} s, p95 {:.3} s, max {:.3} s",
        wall.as_secs_f64(),
        pct(&v, 0.5),
        pct(&v, 0.95),
        pct(&v, 1.0),
    );
}

#[tokio::main]
async fn main() {
    if let Some(db) = TestDb::postgres("live_lag_bench").await {
        bench_poll(db.store().await, "postgres").await;
    }
    if let Some(db) = TestDb::postgres("live_lag_bench_push").await {
        bench_push(db.store().await, "postgres").await;
    }
    let db = TestDb::sqlite();
    bench_poll(db.store().await, "sqlite").await;
    let db = TestDb::sqlite();
    bench_push(db.store().await, "sqlite").await;
}
