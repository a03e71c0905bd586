//! Security of the surface (issue 9): no secret (the database password, the admin token,
//! the upstream's credentials) in any response body, whether the database is up or cut
//! off; the write endpoint behind the token; request bodies bounded. (Auth status codes in
//! detail: `http.rs::manual_trigger_needs_the_token`. That the token comparison takes the
//! same time whatever the input is not tested: see the crate README.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod sec_support;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use quake_api::{FdsnClient, HttpOptions};
use quake_store::testing::TestDb;
use quake_store::{Store, StoreOptions};
use sec_support::{CutProxy, pg_addr, via};
use sync_engine::{Engine, EngineConfig, FdsnSource};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const DB_PASSWORD: &str = "Db-Passw0rd-s3cret";
const UP_PASSWORD: &str = "Upstream-Pw-s3cret";
const ADMIN: &str = "Adm1n-T0ken-s3cret";

fn secrets() -> [&'static str; 3] {
    [DB_PASSWORD, UP_PASSWORD, ADMIN]
}

/// Every GET endpoint, plus the read API when present.
const GETS: &[&str] = &[
    "/",
    "/health",
    "/health/live",
    "/health/ready",
    "/sync-status",
    "/sync-runs",
    "/sync-runs?limit=100",
    "/sync-runs?limit=abc",
    "/metrics",
    "/fdsnws/event/1/query?format=geojson&limit=5",
    "/fdsnws/event/1/query?minmagnitude=x",
    "/no/such/route",
];

/// Status and raw body of a request (bounded: no request may hang; 60 s is a guard, not
/// a latency claim).
macro_rules! raw {
    ($app:expr, $req:expr) => {{
        let res = tokio::time::timeout(
            Duration::from_secs(60),
            actix_web::test::call_service($app, $req.to_request()),
        )
        .await
        .expect("no request hangs");
        let status = res.status().as_u16();
        let body = actix_web::test::read_body(res).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }};
}

fn assert_clean(what: &str, status: u16, body: &str) {
    for s in secrets() {
        assert!(
            !body.contains(s),
            "{what} ({status}) leaks a secret: {body}"
        );
    }
    assert!(
        !body.contains("postgres://") || !body.contains('@'),
        "{what} ({status}) shows a database URL with credentials: {body}"
    );
}

/// An upstream that needs no auth, reached through a URL that carries credentials (as a
/// proxy or a private mirror would), and that fails: its errors end up in run rows.
async fn failing_upstream() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(QUERY_PATH))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream down"))
        .mount(&server)
        .await;
    server
}

fn engine_with_credentials(store: Store, up: &MockServer) -> Engine {
    let url = format!(
        "http://mirror:{UP_PASSWORD}@{}{QUERY_PATH}?api_key={UP_PASSWORD}",
        up.address()
    );
    let client = FdsnClient::new(
        &url,
        HttpOptions {
            max_retries: 0,
            timeout: Duration::from_secs(5),
            ..HttpOptions::default()
        },
    )
    .unwrap();
    Engine::new(store, Arc::new(FdsnSource(client)), EngineConfig::default())
}

#[actix_web::test]
async fn no_secret_in_any_response_body_with_the_database_up_or_cut_off() {
    let Some(db) = TestDb::postgres("security::no_secret_in_any_response_body").await else {
        return;
    };
    db.store().await; // migrated
    let proxy = CutProxy::start(pg_addr(&db.url)).await;
    // Trust auth accepts any password: the password is only there to be leaked or not.
    let url = via(&db.url, proxy.port, DB_PASSWORD);
    let store = Store::connect(
        &url,
        StoreOptions {
            pool_size: 2,
            connection_timeout: Duration::from_secs(1),
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let up = failing_upstream().await;
    let engine = engine_with_credentials(store, &up);
    let app = app!(state(engine.clone(), Some(ADMIN)));

    // A run that fails upstream: its error is in /sync-status, /sync-runs, the wait answer.
    let (s, body) = raw!(&app, post("/sync?wait=true", Some(ADMIN)));
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("\"failed\""), "{body}");
    assert_clean("POST /sync?wait=true", s, &body);
    let (s, body) = raw!(&app, get("/sync-status"));
    assert!(
        body.contains("mirror") || body.contains("127.0.0.1"),
        "{body}"
    );
    assert_clean("/sync-status", s, &body);

    for p in GETS {
        let (s, body) = raw!(&app, get(p));
        assert!(s < 500, "GET {p} answered {s} with the database up: {body}");
        assert_clean(p, s, &body);
    }
    // Wrong tokens are not echoed.
    for t in ["nope", &ADMIN[..ADMIN.len() - 1]] {
        let (s, body) = raw!(&app, post("/sync", Some(t)));
        assert_eq!(s, 401);
        assert!(!body.contains(t), "{body}");
    }

    // The database goes away: pooled connections die, new ones are refused.
    proxy.cut();
    for p in GETS {
        let (s, body) = raw!(&app, get(p));
        assert!(
            s != 500,
            "GET {p} answered 500 with the database down (503 expected): {body}"
        );
        assert_clean(p, s, &body);
    }
    let (s, body) = raw!(&app, get("/health"));
    assert_eq!(s, 503, "{body}");
    assert!(body.contains("\"down\""), "{body}");
    let (s, body) = raw!(&app, get("/sync-runs"));
    assert_eq!(s, 503, "{body}");
    let (s, body) = raw!(&app, post("/sync?wait=true", Some(ADMIN)));
    assert!(s == 503 || s == 200, "{s}: {body}");
    assert_clean("POST /sync with the database down", s, &body);

    // Back: the pool recovers by itself.
    proxy.restore();
    let mut healthy = false;
    for _ in 0..600 {
        // 60 s at most: a guard against a pool that never recovers.
        let (s, body) = raw!(&app, get("/health"));
        assert_clean("/health", s, &body);
        if s == 200 {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "the pool did not recover");
    let (s, body) = raw!(&app, get("/sync-runs"));
    assert_eq!(s, 200, "{body}");
    assert_clean("/sync-runs", s, &body);
}

/// A request body on `POST /sync` (which takes none) larger than the limit is refused with
/// a JSON 413, before anything else; a small one is ignored.
#[actix_web::test]
async fn oversized_request_bodies_are_refused() {
    let db = TestDb::sqlite();
    let up = upstream(200, Duration::ZERO).await;
    let engine = engine(db.store().await, &up);
    let app = app!(state(engine.clone(), Some(TOKEN)));
    let big = vec![b'x'; status_http::MAX_BODY_BYTES + 1];
    for token in [Some(TOKEN), None] {
        let req = post("/sync", token).set_payload(big.clone());
        let (s, body) = raw!(&app, req);
        assert_eq!(s, 413, "{token:?}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "request body too large");
    }
    // Under the limit: the body is ignored, the request is served.
    let req = post("/sync", Some(TOKEN)).set_payload(vec![b'x'; 16]);
    let (s, body) = raw!(&app, req);
    assert_eq!(s, 202, "{body}");
    idle(&engine).await;
}
