//! `quakesync serve`: migrate, the HTTP surface, the scheduler, and a clean shutdown.
//!
//! Reads: `http.bind`, `http.admin_token`, `sync.enabled`, `sync.interval_secs`,
//! `sync.startup_delay_secs`, plus what [`crate::app`] reads for the store and the source.
//!
//! Shutdown (SIGINT or SIGTERM; actix's own signal handling is off): stop accepting
//! requests, cancel the scheduler and the engine's shutdown token (a running sync stops
//! once the page it is applying commits, and is marked failed "interrupted by shutdown"),
//! wait for it, then exit 0, all within [`SHUTDOWN_BUDGET`]. If a sync is still running at
//! [`SYNC_WAIT`] (a request upstream still in flight), its row is marked failed here: its
//! uncommitted page, if any, is rolled back by the database when the process exits, and
//! the cursor has not moved.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer};
use quake_api::ApiError;
use sync_engine::{
    BoxFuture, Engine, PageRequest, Scheduler, SchedulerHandle, Source, scheduler::human,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use status_http::{AppState, Metrics, UpstreamCounter, UpstreamOutcome};

use crate::app;
use crate::config::Config;

/// From the signal to the exit.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(9);
/// How long a running sync gets to commit its page and stop.
const SYNC_WAIT: Duration = Duration::from_secs(7);
/// How long in-flight HTTP requests get once the server stops accepting.
const HTTP_GRACE_SECS: u64 = 5;

pub async fn serve(config: &Config, migrate: bool) -> ExitCode {
    let metrics = Metrics::new();
    let engine = match build_engine(config, migrate, metrics.upstream_counter()).await {
        Ok(e) => e,
        Err(e) => return crate::fail(&e),
    };
    let store = engine.store();
    log::info!(
        "quakesync {} starting: database {} ({})",
        env!("CARGO_PKG_VERSION"),
        config.database_url_redacted(),
        store.backend().as_str(),
    );
    log::info!(
        "Source: {} {}",
        engine.source().kind(),
        engine.source().url()
    );

    let interval = Duration::from_secs(config.sync.interval_secs);
    let startup_delay = Duration::from_secs(config.sync.startup_delay_secs);
    let stop_scheduler = CancellationToken::new();
    let (scheduler_handle, scheduler_task) = if config.sync.enabled {
        let scheduler = Scheduler::new(
            engine.clone(),
            interval,
            startup_delay,
            stop_scheduler.clone(),
        );
        (scheduler.handle(), Some(scheduler))
    } else {
        log::info!(
            "Automatic sync is disabled (sync.enabled = false); interval would be {}",
            human(interval)
        );
        (SchedulerHandle::disabled(interval, startup_delay), None)
    };

    let admin_token = config.admin_token_secret();
    log::info!(
        "Manual sync (POST /sync): {}",
        if admin_token.is_some() {
            "enabled (bearer token)"
        } else {
            "disabled (no admin token configured)"
        }
    );
    let state = AppState::new(engine.clone(), scheduler_handle)
        .with_admin_token(admin_token)
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_metrics(metrics);

    let server = HttpServer::new(move || {
        App::new().configure(|cfg| status_http::configure(cfg, state.clone()))
    })
    .disable_signals()
    .shutdown_timeout(HTTP_GRACE_SECS);
    let server = match server.bind(&config.http.bind) {
        Ok(s) => s,
        Err(e) => return crate::fail(&format!("cannot listen on {}: {e}", config.http.bind)),
    };
    let addrs: Vec<String> = server.addrs().iter().map(|a| a.to_string()).collect();
    log::info!("Listening on http://{}", addrs.join(", http://"));
    let server = server.run();
    let server_handle = server.handle();
    let mut server_task = tokio::spawn(server);

    let scheduler_join = scheduler_task.map(|s| s.spawn());

    let mut signals = match app::StopSignals::install() {
        Ok(s) => s,
        Err(e) => {
            server_handle.stop(false).await;
            return crate::fail(&format!("cannot install signal handlers: {e}"));
        }
    };
    let server_result = tokio::select! {
        name = signals.next() => { log::info!("Received {name}, shutting down..."); None }
        res = &mut server_task => Some(res),
    };
    if let Some(res) = server_result {
        // The server stopped without a signal: that is an error.
        stop_scheduler.cancel();
        engine.shutdown_token().cancel();
        let msg = match res {
            Ok(Ok(())) => "the HTTP server stopped unexpectedly".to_string(),
            Ok(Err(e)) => format!("the HTTP server failed: {e}"),
            Err(e) => format!("the HTTP server task failed: {e}"),
        };
        return crate::fail(&msg);
    }

    let deadline = Instant::now() + SHUTDOWN_BUDGET;
    stop_scheduler.cancel();
    engine.shutdown_token().cancel();
    // Stop accepting now; in-flight requests (a `POST /sync?wait=true`) finish meanwhile.
    let stopping = tokio::spawn(server_handle.stop(true));

    wait_for_sync(&engine, Instant::now() + SYNC_WAIT).await;
    if let Some(join) = scheduler_join {
        let _ = tokio::time::timeout_at(deadline, join).await;
    }
    if tokio::time::timeout_at(deadline, stopping).await.is_err() {
        log::warn!("HTTP requests still in flight at the shutdown deadline; exiting anyway");
    }
    let _ = tokio::time::timeout_at(deadline, server_task).await;
    log::info!("Shutdown complete");
    ExitCode::SUCCESS
}

/// Waits for a running sync to stop; at `until`, marks its row failed and goes on.
async fn wait_for_sync(engine: &Engine, until: Instant) {
    let mut rx = engine.subscribe();
    // `current` is set exactly while a run is going.
    let Some(run_id) = rx.borrow().current.as_ref().map(|c| c.run_id) else {
        return;
    };
    log::info!("Waiting for sync run {run_id} to commit its page and stop...");
    if tokio::time::timeout_at(until, rx.wait_for(|s| !s.is_running))
        .await
        .is_ok()
    {
        return;
    }
    log::warn!(
        "Sync run {run_id} did not stop within {SYNC_WAIT:?} (its page's database write has not returned); marking it failed"
    );
    let mark = async {
        let mut conn = engine.store().conn().await?;
        quake_store::runs::finish_run(
            &mut conn.db(),
            run_id,
            "failed",
            Some("interrupted by shutdown"),
        )
        .await?;
        Ok::<_, quake_store::StoreError>(())
    };
    match tokio::time::timeout(Duration::from_secs(1), mark).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::error!(
            "Could not mark run {run_id} failed ({e}); the next run will mark it abandoned"
        ),
        Err(_) => log::error!(
            "Could not mark run {run_id} failed in time; the next run will mark it abandoned"
        ),
    }
}

/// The store, the configured source (counted for `/metrics`), and the engine.
async fn build_engine(
    config: &Config,
    migrate: bool,
    counter: UpstreamCounter,
) -> Result<Engine, String> {
    let source: Arc<dyn Source> = Arc::new(CountingSource {
        inner: app::source(config)?,
        counter,
    });
    app::engine_with_source(config, migrate, source).await
}

/// A source that counts its requests' outcomes for `quakesync_upstream_requests_total`.
struct CountingSource {
    inner: Arc<dyn Source>,
    counter: UpstreamCounter,
}

impl Source for CountingSource {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn kind(&self) -> &str {
        self.inner.kind()
    }
    fn url(&self) -> &str {
        self.inner.url()
    }
    fn is_paged(&self) -> bool {
        self.inner.is_paged()
    }
    fn fetch_page<'a>(
        &'a self,
        req: &'a PageRequest,
    ) -> BoxFuture<'a, Result<quake_api::Page, ApiError>> {
        Box::pin(async move {
            let res = self.inner.fetch_page(req).await;
            self.counter.record(match &res {
                Ok(_) => UpstreamOutcome::Success,
                Err(ApiError::Status { .. }) => UpstreamOutcome::HttpError,
                Err(ApiError::Timeout { .. }) => UpstreamOutcome::Timeout,
                Err(ApiError::Connect { .. }) => UpstreamOutcome::ConnectError,
                Err(ApiError::InvalidBody { .. } | ApiError::TooLarge { .. }) => {
                    UpstreamOutcome::InvalidBody
                }
                Err(_) => UpstreamOutcome::Error,
            });
            res
        })
    }
}
