#![doc = include_str!("../README.md")]

pub mod config;
mod dashboard;
pub mod error;
mod health;
pub mod metrics;
pub mod read_api;
pub mod stream;
mod sync;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use sync_engine::{Engine, SchedulerHandle, SyncService};

pub use config::{DEFAULT_BIND, HttpSettings};
pub use error::HttpError;
pub use metrics::Metrics;
pub use stream::{StreamSettings, Streams};

/// How long `/health`, `/health/ready` and `/metrics` wait for the database.
pub const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long `/sync-runs` waits for the database.
pub const DB_QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A store call bounded by [`DB_QUERY_TIMEOUT`] (what the read API and `/sync-runs` ask).
pub(crate) async fn db<T>(
    query: impl Future<Output = quake_store::Result<T>>,
) -> Result<T, HttpError> {
    Ok(tokio::time::timeout(DB_QUERY_TIMEOUT, query).await??)
}

/// Largest request body accepted (`POST /sync` takes none: a larger one is refused with 413).
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// Everything the handlers need. Cheap to clone; give one to [`configure`] or [`configure_app`].
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
    streams: Streams,
    /// Where recent deep pages of the read API stand (keyset continuation of deep offsets).
    page_marks: Arc<quake_store::PageMarks>,
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
            streams: Streams::new(StreamSettings::default()),
            page_marks: Arc::new(quake_store::PageMarks::new()),
        }
    }

    /// State for a running [`SyncService`]: its engine and its scheduler.
    pub fn for_service(service: &SyncService) -> AppState {
        AppState::new(service.engine().clone(), service.scheduler().clone())
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

    /// `GET /events/stream` with these settings (default: [`StreamSettings::default`]).
    pub fn with_stream(mut self, settings: &StreamSettings) -> AppState {
        self.streams = Streams::new(settings.clone());
        self
    }

    /// The event stream's hub (its clients; [`Streams::close`] at shutdown).
    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    /// Starts the event stream's hub now rather than with the first client, so that the
    /// change log is pruned to `stream.retention_hours` even if no client ever connects;
    /// the engine's shutdown ends every stream. Call it inside a tokio runtime.
    pub fn start_stream(&self) {
        self.streams
            .start(self.engine.store(), self.engine_stopped());
    }

    /// Completes when the engine shuts down (a `serve` stopping): streams end then, so the
    /// server's graceful stop does not wait on them.
    fn engine_stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let token = self.engine.shutdown_token();
        async move { token.cancelled().await }
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
}

/// Mounts the surface's routes into an actix `App` or into any `web::scope` of one:
/// `web::scope("/quakes").configure(|cfg| status_http::configure(cfg, state.clone()))`.
///
/// It adds its routes and nothing else: each resource carries its own state, its own JSON
/// error handlers for actix's query and path extractors and its own JSON 405; no app-wide
/// data, extractor config or default service is set, so the host's routes, 404, extractor
/// configs and body limits stay as they are. The dashboard's links are relative, so they
/// resolve under whatever prefix the surface is mounted at. For an app of its own (a JSON
/// 404 for every other path too), use [`configure_app`].
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState) {
    let data = web::Data::new(state);
    let resource = |path: &str| resource(path, &data);
    cfg.service(resource("/health").route(web::get().to(health::health)))
        .service(resource("/health/live").route(web::get().to(health::live)))
        .service(resource("/health/ready").route(web::get().to(health::ready)))
        .service(resource("/sync-status").route(web::get().to(sync::sync_status)))
        .service(resource("/sync").route(web::post().to(sync::post_sync)))
        .service(resource("/sync-runs").route(web::get().to(sync::sync_runs)))
        .service(resource("/metrics").route(web::get().to(metrics::metrics)))
        .service(resource("/events/stream").route(web::get().to(stream::stream)))
        .service(resource("/fdsnws/event/1/query").route(web::get().to(read_api::query)))
        .service(resource("/fdsnws/event/1/count").route(web::get().to(read_api::count)))
        .service(resource("/fdsnws/event/1/version").route(web::get().to(read_api::version)))
        .service(
            resource("/fdsnws/event/1/application.wadl")
                .route(web::get().to(read_api::application_wadl)),
        )
        .service(resource("/fdsnws/event/1/catalogs").route(web::get().to(read_api::catalogs)))
        .service(
            resource("/fdsnws/event/1/contributors").route(web::get().to(read_api::contributors)),
        )
        .service(resource("/").route(web::get().to(dashboard::dashboard)))
        .service(resource("/static/live.js").route(web::get().to(dashboard::live_script)))
        // Inside a scope, `/quakes` (no slash) leads to the dashboard at `/quakes/`, where
        // its relative links resolve. At the root this path is `/`, taken just above.
        .service(resource("").route(web::get().to(dashboard::to_dashboard)));
}

/// The surface as an app of its own, what `quakesync serve` runs: [`configure`] plus a JSON
/// 404 for every other path, as the app's default service. A host app with routes of its
/// own uses [`configure`] and keeps its own default service.
pub fn configure_app(cfg: &mut web::ServiceConfig, state: AppState) {
    configure(cfg, state);
    cfg.default_service(web::to(not_found));
}

/// One of the surface's resources: its state, JSON errors for bad query strings and paths,
/// and a JSON 405 for wrong methods, all its own.
fn resource(path: &str, data: &web::Data<AppState>) -> actix_web::Resource {
    web::resource(path)
        .app_data(data.clone())
        .app_data(web::QueryConfig::default().error_handler(|e, _req| {
            HttpError::BadRequest(format!("invalid query string: {e}")).into()
        }))
        .app_data(
            web::PathConfig::default().error_handler(|e, _req| {
                HttpError::BadRequest(format!("invalid path: {e}")).into()
            }),
        )
        .default_service(web::to(method_not_allowed))
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
