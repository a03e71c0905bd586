#![doc = include_str!("../README.md")]

mod dashboard;
pub mod error;
mod health;
pub mod metrics;
pub mod read_api;
mod sync;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use sync_engine::{Engine, SchedulerHandle};

pub use error::HttpError;
pub use metrics::{Metrics, UpstreamCounter, UpstreamOutcome};

/// How long `/health`, `/health/ready` and `/metrics` wait for the database.
pub const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long `/sync-runs` waits for the database.
pub const DB_QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest request body accepted (no endpoint takes one today).
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// Everything the handlers need. Cheap to clone; give one to [`configure`].
#[derive(Clone)]
pub struct AppState {
    engine: Engine,
    scheduler: SchedulerHandle,
    admin_token: Option<Arc<str>>,
    version: Arc<str>,
    metrics: Arc<Metrics>,
    started: Instant,
    migrations_ok: Arc<AtomicBool>,
    status_cache: Arc<sync::StatusCache>,
}

impl AppState {
    /// State for `engine`, with the scheduler's handle (use [`SchedulerHandle::disabled`]
    /// when the service runs no scheduler). No admin token: `POST /sync` answers 403.
    pub fn new(engine: Engine, scheduler: SchedulerHandle) -> AppState {
        AppState {
            status_cache: Arc::new(sync::StatusCache::new(&engine)),
            engine,
            scheduler,
            admin_token: None,
            version: Arc::from(env!("CARGO_PKG_VERSION")),
            metrics: Arc::new(Metrics::new()),
            started: Instant::now(),
            migrations_ok: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The bearer token `POST /sync` requires; `None` or an empty token disables it.
    pub fn with_admin_token(mut self, token: Option<&str>) -> AppState {
        self.admin_token = token.filter(|t| !t.is_empty()).map(Arc::from);
        self
    }

    /// The version `/health` reports (default: this crate's).
    pub fn with_version(mut self, version: &str) -> AppState {
        self.version = Arc::from(version);
        self
    }

    /// Metrics registered elsewhere (to share a registry with the embedding service).
    pub fn with_metrics(mut self, metrics: Metrics) -> AppState {
        self.metrics = Arc::new(metrics);
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn scheduler(&self) -> &SchedulerHandle {
        &self.scheduler
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The counter of upstream requests behind `quakesync_upstream_requests_total`.
    pub fn upstream_counter(&self) -> UpstreamCounter {
        self.metrics.upstream_counter()
    }
}

/// Mounts the whole surface into an actix `App` (or a scope):
/// `App::new().configure(|cfg| status_http::configure(cfg, state.clone()))`.
///
/// Also sets JSON error handlers for actix's query, path and JSON extractors, a small body
/// limit, and a JSON 404 for unknown routes.
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState) {
    cfg.app_data(web::Data::new(state))
        .app_data(web::QueryConfig::default().error_handler(|e, _req| {
            HttpError::BadRequest(format!("invalid query string: {e}")).into()
        }))
        .app_data(
            web::PathConfig::default().error_handler(|e, _req| {
                HttpError::BadRequest(format!("invalid path: {e}")).into()
            }),
        )
        .app_data(
            web::JsonConfig::default()
                .limit(MAX_BODY_BYTES)
                .error_handler(|e, _req| match e {
                    actix_web::error::JsonPayloadError::OverflowKnownLength { .. }
                    | actix_web::error::JsonPayloadError::Overflow { .. } => {
                        HttpError::PayloadTooLarge.into()
                    }
                    other => HttpError::BadRequest(format!("invalid JSON body: {other}")).into(),
                }),
        )
        .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .service(resource("/health").route(web::get().to(health::health)))
        .service(resource("/health/live").route(web::get().to(health::live)))
        .service(resource("/health/ready").route(web::get().to(health::ready)))
        .service(resource("/sync-status").route(web::get().to(sync::sync_status)))
        .service(resource("/sync").route(web::post().to(sync::post_sync)))
        .service(resource("/sync-runs").route(web::get().to(sync::sync_runs)))
        .service(resource("/metrics").route(web::get().to(metrics::metrics)))
        .service(resource("/fdsnws/event/1/query").route(web::get().to(read_api::query)))
        .service(resource("/fdsnws/event/1/count").route(web::get().to(read_api::count)))
        .service(resource("/").route(web::get().to(dashboard::dashboard)))
        .default_service(web::to(not_found));
}

/// A resource whose wrong methods get a JSON 405.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// The JSON 404 for unknown routes; an embedder with its own routes can reuse it.
pub async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&HttpError::NotFound)
}

async fn method_not_allowed() -> HttpResponse {
    actix_web::ResponseError::error_response(&HttpError::MethodNotAllowed)
}

/// `600` → `10`, `90` → `1.5`: minutes as a JSON number, integral when it can be.
fn minutes(d: Duration) -> serde_json::Value {
    let secs = d.as_secs();
    if secs.is_multiple_of(60) && d.subsec_nanos() == 0 {
        serde_json::Value::from(secs / 60)
    } else {
        serde_json::Value::from(d.as_secs_f64() / 60.0)
    }
}
