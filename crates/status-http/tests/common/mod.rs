//! Shared helpers: an engine over a real store and a wiremock upstream, and the app.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServiceResponse;
use actix_web::test;
use quake_api::{FdsnClient, HttpOptions};
use quake_store::Store;
use serde_json::Value;
use status_http::AppState;
use sync_engine::{Engine, EngineConfig, FdsnSource, SchedulerHandle};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The engine tests' FDSN mock with gates (a request held until the test opens it).
#[path = "../../../sync-engine/tests/common/mod.rs"]
pub mod fdsn;

pub const QUERY_PATH: &str = "/fdsnws/event/1/query";
pub const NULL_MAG: &str = "usgs_fdsn_query_2021-11-09T2234Z_null-mag.geojson";
pub const TOKEN: &str = "t0ps3cret-admin-token";

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// An upstream answering `status` with the 3-event fixture, after `delay`, and its count.
pub async fn upstream(status: u16, delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(QUERY_PATH))
        .respond_with(
            ResponseTemplate::new(status)
                .set_body_raw(fixture(NULL_MAG), "application/json")
                .set_delay(delay),
        )
        .mount(&server)
        .await;
    // Its `count` (asked once per run, for the page ceiling), failing alike.
    let count = if status == 200 {
        br#"{"count":3,"maxAllowed":20000}"#.to_vec()
    } else {
        fixture(NULL_MAG)
    };
    Mock::given(method("GET"))
        .and(path(QUERY_PATH.replace("/query", "/count")))
        .respond_with(ResponseTemplate::new(status).set_body_raw(count, "application/json"))
        .mount(&server)
        .await;
    server
}

/// The 3-event fixture as an FDSN service whose first page waits at the returned gate:
/// a run started against it is running until the test opens the gate.
pub async fn gated_upstream() -> (fdsn::FdsnServer, fdsn::Held) {
    let mock = fdsn::FdsnMock::new(fdsn::Catalogue::from_fixture(NULL_MAG));
    let gate = mock.hold_query(1);
    (fdsn::fdsn_server(mock).await, gate)
}

pub fn engine(store: Store, upstream: &MockServer) -> Engine {
    let opts = HttpOptions {
        max_retries: 0,
        timeout: Duration::from_secs(20),
        ..HttpOptions::default()
    };
    let client = FdsnClient::new(&format!("{}{QUERY_PATH}", upstream.uri()), opts).unwrap();
    Engine::new(
        store,
        Arc::new(FdsnSource(client)),
        EngineConfig {
            start_time: chrono::DateTime::parse_from_rfc3339("1970-01-01T00:00:00Z")
                .ok()
                .map(|t| t.to_utc()),
            ..EngineConfig::default()
        },
    )
}

pub fn state(engine: Engine, token: Option<&str>) -> AppState {
    AppState::new(
        engine,
        SchedulerHandle::disabled(Duration::from_secs(600), Duration::from_secs(30)),
    )
    .with_admin_token(token)
    .with_version("9.9.9-test")
}

/// `call!(app, request)`: the status and JSON body of a request.
#[macro_export]
macro_rules! call {
    ($app:expr, $req:expr) => {
        $crate::common::json(actix_web::test::call_service($app, $req.to_request()).await).await
    };
}

/// Builds the app: `let app = app!(state);`.
#[macro_export]
macro_rules! app {
    ($state:expr) => {{
        let state = $state.clone();
        actix_web::test::init_service(
            actix_web::App::new()
                .configure(move |cfg| status_http::configure_app(cfg, state.clone())),
        )
        .await
    }};
}

/// Status and JSON body of a response.
pub async fn json(res: ServiceResponse) -> (u16, Value) {
    let status = res.status().as_u16();
    let body = test::read_body(res).await;
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, json)
}

pub fn get(uri: &str) -> test::TestRequest {
    test::TestRequest::get().uri(uri)
}

pub fn post(uri: &str, token: Option<&str>) -> test::TestRequest {
    let mut req = test::TestRequest::post().uri(uri);
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    req
}

/// The keys of a JSON object, sorted.
pub fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

/// Waits until the engine has no run going (60 s at most: a guard against a hang).
pub async fn idle(engine: &Engine) {
    let mut rx = engine.subscribe();
    tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|s| !s.is_running))
        .await
        .expect("sync ends")
        .expect("engine alive");
}

pub const RUN_ROW_KEYS: [&str; 15] = [
    "deleted",
    "duration_ms",
    "error",
    "fetched",
    "finished_at",
    "id",
    "inserted",
    "merged",
    "pages",
    "rejected",
    "started_at",
    "status",
    "trigger",
    "unchanged",
    "updated",
];
