//! The surface mounted into a host's actix app (SPEC section 1: "mountable at the root or
//! inside any scope of another actix App without changing that app's own routes, 404,
//! extractor configs or limits"): inside `web::scope("/quakes")` and at the root, next to
//! routes of the host's own, a default 404 of its own and a 64 KiB `JsonConfig` with its
//! own error handler. Each keeps its behaviour, and every link of the dashboard resolves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::{App, HttpResponse, test, web};
use quake_store::testing::TestDb;
use sync_engine::{SyncOutcome, Trigger};

const HOST_404: &str = "host: no such page";
const HOST_LIMIT: usize = 64 * 1024;

async fn hello() -> HttpResponse {
    HttpResponse::Ok().body("hello from the host")
}

async fn echo(body: web::Json<serde_json::Value>) -> HttpResponse {
    HttpResponse::Ok().json(body.into_inner())
}

async fn host_404() -> HttpResponse {
    HttpResponse::NotFound().body(HOST_404)
}

/// The host's own JSON config: 64 KiB, and its own error answer (418, plain text).
fn host_json() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(HOST_LIMIT)
        .error_handler(|e, _req| {
            let text = format!("host json error: {e}");
            actix_web::error::InternalError::from_response(e, HttpResponse::ImATeapot().body(text))
                .into()
        })
}

/// The host: its own routes, its own JSON config and 404, and `$mount` (the surface).
macro_rules! host_app {
    ($mount:expr) => {
        test::init_service(
            App::new()
                .app_data(host_json())
                .route("/hello", web::get().to(hello))
                .route("/echo", web::post().to(echo))
                .configure($mount)
                .default_service(web::to(host_404)),
        )
        .await
    };
}

async fn send(
    app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
    req: test::TestRequest,
) -> (u16, String, Option<String>) {
    let res = test::call_service(app, req.to_request()).await;
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = test::read_body(res).await;
    (
        status,
        String::from_utf8_lossy(&body).into_owned(),
        location,
    )
}

/// A JSON body of about `n` bytes.
fn json_of(n: usize) -> String {
    serde_json::json!({ "filler": "x".repeat(n) }).to_string()
}

/// The host's own routes, 404 and JSON config behave as without the surface.
async fn host_keeps_its_behaviour(
    app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
    prefix: &str,
) {
    let (s, b, _) = send(app, test::TestRequest::get().uri("/hello")).await;
    assert_eq!((s, b.as_str()), (200, "hello from the host"));
    for p in ["/nope", "/hello/there", &format!("{prefix}/nope")] {
        let (s, b, _) = send(app, test::TestRequest::get().uri(p)).await;
        assert_eq!((s, b.as_str()), (404, HOST_404), "{p}");
    }
    // 60 KiB is under the host's limit (the surface's own body limit is 4 KiB).
    let (s, b, _) = send(
        app,
        test::TestRequest::post()
            .uri("/echo")
            .insert_header(("content-type", "application/json"))
            .set_payload(json_of(60 * 1024)),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b.len(), json_of(60 * 1024).len());
    // Over the host's limit, and malformed: the host's own handler answers.
    for body in [json_of(HOST_LIMIT + 1), "{not json".to_owned()] {
        let (s, b, _) = send(
            app,
            test::TestRequest::post()
                .uri("/echo")
                .insert_header(("content-type", "application/json"))
                .set_payload(body),
        )
        .await;
        assert_eq!(s, 418, "{b}");
        assert!(b.starts_with("host json error: "), "{b}");
    }
}

/// The surface answers under `prefix` with its own JSON errors, and every link of its
/// dashboard resolves to a page that answers 200.
async fn surface_works_under(
    app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
    prefix: &str,
) {
    let (s, b, _) = send(
        app,
        test::TestRequest::get().uri(&format!("{prefix}/health")),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let health: serde_json::Value = serde_json::from_str(&b).unwrap();
    assert_eq!(health["status"], "healthy");

    // Its own extractor errors and 405 stay JSON.
    let (s, b, _) = send(
        app,
        test::TestRequest::get().uri(&format!("{prefix}/sync-runs?limit=many")),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(b.starts_with(r#"{"error":"#), "{b}");
    let (s, b, _) = send(
        app,
        test::TestRequest::delete().uri(&format!("{prefix}/health")),
    )
    .await;
    assert_eq!((s, b.as_str()), (405, r#"{"error":"method not allowed"}"#));
    // Its own 4 KiB body limit on POST /sync.
    let (s, _, _) = send(
        app,
        common::post(&format!("{prefix}/sync"), Some(common::TOKEN)).set_payload(vec![
            b'x';
            status_http::MAX_BODY_BYTES
                + 1
        ]),
    )
    .await;
    assert_eq!(s, 413);

    // The dashboard, and every link on it.
    let dashboard = format!("{prefix}/");
    let (s, html, _) = send(app, test::TestRequest::get().uri(&dashboard)).await;
    assert_eq!(s, 200);
    let base = url::Url::parse(&format!("http://host.test{dashboard}")).unwrap();
    let links: Vec<url::Url> = html
        .split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|href| base.join(&href.replace("&amp;", "&")).unwrap())
        .filter(|u| u.host_str() == Some("host.test"))
        .collect();
    assert!(links.len() >= 4, "{links:?}");
    for link in &links {
        assert!(
            link.path().starts_with(&dashboard),
            "{link} leaves {dashboard}"
        );
        let uri = match link.query() {
            Some(q) => format!("{}?{q}", link.path()),
            None => link.path().to_owned(),
        };
        let (s, b, _) = send(app, test::TestRequest::get().uri(&uri)).await;
        assert_eq!(s, 200, "{uri}: {b}");
    }
    let paths: Vec<&str> = links.iter().map(|u| u.path()).collect();
    for want in ["health", "sync-status", "metrics", "fdsnws/event/1/query"] {
        assert!(
            paths.contains(&format!("{dashboard}{want}").as_str()),
            "{want} not linked: {paths:?}"
        );
    }
}

async fn synced_state(db: &TestDb) -> (status_http::AppState, wiremock::MockServer) {
    let upstream = common::upstream(200, Duration::ZERO).await;
    let engine = common::engine(db.store().await, &upstream);
    let outcome = engine.sync_once(Trigger::Cli).await.unwrap();
    assert!(matches!(outcome, SyncOutcome::Succeeded(_)), "{outcome:?}");
    (common::state(engine, Some(common::TOKEN)), upstream)
}

#[actix_web::test]
async fn mounted_in_a_scope_next_to_the_hosts_own_routes() {
    let db = TestDb::sqlite();
    let (state, _upstream) = synced_state(&db).await;
    let app = host_app!(|cfg: &mut web::ServiceConfig| {
        cfg.service(
            web::scope("/quakes").configure(|cfg| status_http::configure(cfg, state.clone())),
        );
    });
    host_keeps_its_behaviour(&app, "/quakes").await;
    surface_works_under(&app, "/quakes").await;
    // The scope's own path leads to the dashboard, where relative links resolve.
    let (s, _, location) = send(&app, test::TestRequest::get().uri("/quakes")).await;
    assert_eq!(s, 308);
    let base = url::Url::parse("http://host.test/quakes").unwrap();
    assert_eq!(base.join(&location.unwrap()).unwrap().path(), "/quakes/");
    // Nothing of the surface leaks to the root.
    let (s, b, _) = send(&app, test::TestRequest::get().uri("/health")).await;
    assert_eq!((s, b.as_str()), (404, HOST_404));
}

#[actix_web::test]
async fn mounted_at_the_root_next_to_the_hosts_own_routes() {
    let db = TestDb::sqlite();
    let (state, _upstream) = synced_state(&db).await;
    let app = host_app!(|cfg| status_http::configure(cfg, state.clone()));
    host_keeps_its_behaviour(&app, "").await;
    surface_works_under(&app, "").await;
}

#[actix_web::test]
async fn as_an_app_of_its_own_unknown_paths_get_its_json_404() {
    let db = TestDb::sqlite();
    let (state, _upstream) = synced_state(&db).await;
    let app = test::init_service(
        App::new().configure(|cfg| status_http::configure_app(cfg, state.clone())),
    )
    .await;
    let (s, b, _) = send(&app, test::TestRequest::get().uri("/nope")).await;
    assert_eq!((s, b.as_str()), (404, r#"{"error":"not found"}"#));
    surface_works_under(&app, "").await;
}
