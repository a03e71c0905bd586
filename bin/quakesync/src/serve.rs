//! `quakesync serve`: migrate, the HTTP surface, the sync service, and a clean shutdown.
//!
//! Reads: `http.bind`, `http.admin_token`, the `[sync]`, `[live]` and `[stream]` sections,
//! plus what [`crate::app`] reads for the store and the source.
//!
//! Shutdown (SIGINT or SIGTERM; actix's own signal handling is off): stop accepting
//! requests, then [`SyncService::shutdown`] (a running sync stops once the page it is
//! applying commits and is marked failed "interrupted by shutdown"), then exit 0, all
//! within [`SHUTDOWN_BUDGET`].

use std::process::ExitCode;
use std::time::Duration;

use actix_web::{App, HttpServer};
use status_http::AppState;
use sync_engine::SyncService;
use tokio::time::Instant;

use crate::app;
use crate::config::Config;

/// From the signal to the exit (SPEC: within 10 s).
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(9);
/// How long the sync service gets to stop its running sync (and mark it if it must).
const SYNC_WAIT: Duration = Duration::from_secs(8);
/// How long in-flight HTTP requests get once the server stops accepting.
const HTTP_GRACE_SECS: u64 = 5;

pub async fn serve(config: &Config, migrate: bool) -> ExitCode {
    let engine = match app::engine(config, migrate).await {
        Ok(e) => e,
        Err(e) => return crate::fail(&e),
    };
    log::info!(
        "quakesync {} starting: database {} ({})",
        env!("CARGO_PKG_VERSION"),
        engine.store().url_redacted(),
        engine.store().backend().as_str(),
    );
    let live = config.live.config(&config.source, &config.sync);
    let service = SyncService::start(engine, config.sync.schedule()).with_live(live);
    let admin_token = config.http.admin_token();
    let manual = match admin_token {
        Some(_) => "enabled (bearer token)",
        None => "disabled (no admin token configured)",
    };
    log::info!("Manual sync (POST /sync): {manual}");
    let state = AppState::for_service(&service)
        .with_admin_token(admin_token)
        .with_stream(&config.stream)
        .with_version(env!("CARGO_PKG_VERSION"));
    state.start_stream();

    let server = HttpServer::new(move || {
        App::new().configure(|cfg| status_http::configure_app(cfg, state.clone()))
    })
    .disable_signals()
    .shutdown_timeout(HTTP_GRACE_SECS);
    let server = match server.bind(config.http.bind) {
        Ok(s) => s,
        Err(e) => {
            service.shutdown(SYNC_WAIT).await;
            return crate::fail(&format!("cannot listen on {}: {e}", config.http.bind));
        }
    };
    let addrs: Vec<String> = server.addrs().iter().map(|a| a.to_string()).collect();
    log::info!("Listening on http://{}", addrs.join(", http://"));
    let server = server.run();
    let server_handle = server.handle();
    let mut server_task = tokio::spawn(server);

    let signal = match app::stop_signal() {
        Ok(s) => s,
        Err(e) => {
            server_handle.stop(false).await;
            service.shutdown(SYNC_WAIT).await;
            return crate::fail(&format!("cannot install signal handlers: {e}"));
        }
    };
    let server_result = tokio::select! {
        name = signal => { log::info!("Received {name}, shutting down..."); None }
        res = &mut server_task => Some(res),
    };
    if let Some(res) = server_result {
        // The server stopped without a signal: that is an error.
        service.shutdown(SYNC_WAIT).await;
        let msg = match res {
            Ok(Ok(())) => "the HTTP server stopped unexpectedly".to_string(),
            Ok(Err(e)) => format!("the HTTP server failed: {e}"),
            Err(e) => format!("the HTTP server task failed: {e}"),
        };
        return crate::fail(&msg);
    }

    let deadline = Instant::now() + SHUTDOWN_BUDGET;
    // Stop accepting now; in-flight requests (a `POST /sync?wait=true`) finish meanwhile.
    let stopping = tokio::spawn(server_handle.stop(true));
    service.shutdown(SYNC_WAIT).await;
    if tokio::time::timeout_at(deadline, stopping).await.is_err() {
        log::warn!("HTTP requests still in flight at the shutdown deadline; exiting anyway");
    }
    let _ = tokio::time::timeout_at(deadline, server_task).await;
    log::info!("Shutdown complete");
    ExitCode::SUCCESS
}
