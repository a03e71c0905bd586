//! An actix host app with routes of its own and quakesync's surface under `/quakes`, the
//! sync service embedded in the same process: nothing copied from the `quakesync` binary.
//!
//! ```text
//! cargo run -p status-http --example host -- UPSTREAM_QUERY_URL [DATABASE_URL [BIND]]
//! ```
//!
//! `UPSTREAM_QUERY_URL` is an FDSN event service's `…/fdsnws/event/1/query`;
//! `DATABASE_URL` is `sqlite://PATH` (default `sqlite://host.db`) or `postgres://…`; `BIND`
//! defaults to `127.0.0.1:8081`. Then `/` and `/hello` are the host's, `/quakes/` is the
//! dashboard, `/quakes/health`, `/quakes/metrics` … the surface. Ctrl-C stops the server,
//! then the sync service (a running sync stops after its page and is marked failed).

use std::error::Error;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use quake_api::{FdsnClient, HttpOptions};
use quake_store::{Store, StoreOptions};
use status_http::AppState;
use sync_engine::{Engine, EngineConfig, FdsnSource, Schedule, SyncService};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let upstream = args
        .first()
        .ok_or("usage: host UPSTREAM_QUERY_URL [DATABASE_URL [BIND]]")?;
    let database = args.get(1).map_or("sqlite://host.db", String::as_str);
    let bind = args.get(2).map_or("127.0.0.1:8081", String::as_str);
    actix_web::rt::System::new().block_on(async {
        let listener = TcpListener::bind(bind)?;
        println!(
            "http://{}/ (quakesync under /quakes/)",
            listener.local_addr()?
        );
        let (server, service) = start(upstream, database, listener, None).await?;
        server.await?; // until Ctrl-C
        service.shutdown(Duration::from_secs(8)).await;
        Ok(())
    })
}

/// The host's own routes.
async fn index() -> HttpResponse {
    HttpResponse::Ok().body("the host's own page; quakes under /quakes/")
}

async fn hello() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "hello": "from the host" }))
}

async fn host_404() -> HttpResponse {
    HttpResponse::NotFound().body("the host has no such page")
}

/// The sync service, and the host's server with the surface under `/quakes`. The first run
/// reads from `start_time` (`None`: 24 hours back).
async fn start(
    upstream: &str,
    database: &str,
    listener: TcpListener,
    start_time: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(Server, SyncService), Box<dyn Error>> {
    let store = Store::connect(database, StoreOptions::default()).await?;
    store.migrate().await?;
    let client = FdsnClient::new(upstream, HttpOptions::default())?;
    let config = EngineConfig {
        start_time,
        ..EngineConfig::default()
    };
    let engine = Engine::new(store, Arc::new(FdsnSource(client)), config);
    engine.load_status().await?;
    let schedule = Schedule {
        startup_delay: Duration::ZERO,
        ..Schedule::default()
    };
    let service = SyncService::start(engine, schedule);
    let state = AppState::for_service(&service).with_version("host-example");

    let server = HttpServer::new(move || {
        App::new()
            .route("/", web::get().to(index))
            .route("/hello", web::get().to(hello))
            .service(
                web::scope("/quakes").configure(|cfg| status_http::configure(cfg, state.clone())),
            )
            .default_service(web::to(host_404))
    })
    .workers(1)
    .listen(listener)?
    .run();
    Ok((server, service))
}

/// `cargo test` builds this example as a test (`test = true` in Cargo.toml) and runs it
/// against a local mock upstream serving a real USGS response.
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod common;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// `GET path`: the status and the body.
    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        sock.write_all(head.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        sock.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
        (status, body.unwrap_or_default())
    }

    #[test]
    fn serves_the_host_and_the_surface_under_quakes() {
        actix_web::rt::System::new().block_on(async {
            let upstream = super::common::upstream(200, Duration::ZERO).await;
            let dir = tempfile::tempdir().unwrap();
            let database = format!("sqlite://{}", dir.path().join("host.db").display());
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let query = format!("{}{}", upstream.uri(), super::common::QUERY_PATH);
            // The fixture's events are from 2018: read from the epoch.
            let epoch = chrono::DateTime::UNIX_EPOCH;
            let (server, service) = super::start(&query, &database, listener, Some(epoch))
                .await
                .unwrap();
            let handle = server.handle();
            let server = actix_web::rt::spawn(server);

            // The first scheduled run, at once: the 3 events of the fixture.
            let mut status = service.subscribe();
            tokio::time::timeout(
                Duration::from_secs(20),
                status.wait_for(|s| s.last_run.is_some()),
            )
            .await
            .unwrap()
            .unwrap();

            let (s, b) = get(addr, "/").await;
            assert_eq!(s, 200);
            assert!(b.starts_with("the host's own page"), "{b}");
            assert_eq!(get(addr, "/hello").await.0, 200);
            assert_eq!(
                get(addr, "/nope").await,
                (404, "the host has no such page".into())
            );
            assert_eq!(get(addr, "/quakes/nope").await.0, 404);

            let (s, b) = get(addr, "/quakes/sync-status").await;
            assert_eq!(s, 200, "{b}");
            let st: serde_json::Value = serde_json::from_str(&b).unwrap();
            assert_eq!(st["last_run"]["status"], "succeeded");
            assert_eq!(st["last_run"]["inserted"], 3);
            let (s, b) = get(addr, "/quakes/metrics").await;
            assert_eq!(s, 200);
            assert!(
                // The run's `count` and its one page.
                b.contains("quakesync_upstream_requests_total{outcome=\"success\"} 2"),
                "{b}"
            );
            let (s, b) = get(addr, "/quakes/").await;
            assert_eq!(s, 200);
            assert!(b.contains(r#"href="./health""#), "{b}");
            assert_eq!(get(addr, "/quakes/health").await.0, 200);

            handle.stop(true).await;
            server.await.unwrap().unwrap();
            assert_eq!(
                service.shutdown(Duration::from_secs(5)).await,
                sync_engine::Shutdown::Idle
            );
        });
    }
}
