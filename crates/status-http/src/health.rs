//! `/health`, `/health/live`, `/health/ready`.

use std::sync::atomic::Ordering;

use actix_web::{HttpResponse, web};
use chrono::Utc;
use serde_json::json;
use sync_engine::StatusSnapshot;

use crate::{AppState, DB_CHECK_TIMEOUT};

/// `check` bounded by [`DB_CHECK_TIMEOUT`]: its value, or `None` when it failed or took
/// too long (logged as `what`).
pub(crate) async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    check: impl Future<Output = Result<T, E>>,
) -> Option<T> {
    match tokio::time::timeout(DB_CHECK_TIMEOUT, check).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            log::warn!("{what}: {e}");
            None
        }
        Err(_) => {
            log::warn!("{what}: no answer within {DB_CHECK_TIMEOUT:?}");
            None
        }
    }
}

/// True when the database answers `SELECT 1` within [`DB_CHECK_TIMEOUT`].
pub(crate) async fn db_answers(state: &AppState) -> bool {
    bounded(
        "Health check: the database does not answer",
        state.engine.store().ping(),
    )
    .await
    .is_some()
}

/// Why the service is degraded, if it is: the last run failed, or the last success is
/// older than three intervals (with the scheduler on; before any success, counted from
/// the first scheduled run).
pub(crate) fn degraded(state: &AppState, snap: &StatusSnapshot) -> Option<&'static str> {
    if snap.last_run_failed() {
        return Some("the last sync failed");
    }
    let sched = &state.scheduler;
    if !sched.enabled() {
        return None;
    }
    let limit = sched.interval() * 3;
    match snap.last_success {
        Some(t) => {
            let age = (Utc::now() - t).to_std().unwrap_or_default();
            (age > limit).then_some("the last successful sync is older than 3 intervals")
        }
        None => (state.started.elapsed() > sched.startup_delay() + limit)
            .then_some("no successful sync for 3 intervals"),
    }
}

pub(crate) async fn health(state: web::Data<AppState>) -> HttpResponse {
    let sched = &state.scheduler;
    let (auto_sync, reason) = state.engine.with_status(|snap| {
        let auto_sync = json!({
            "enabled": sched.enabled(),
            "interval": quake_core::human_duration(sched.interval()),
            "interval_seconds": sched.interval().as_secs(),
            "is_syncing": snap.is_running,
            "last_sync_time": snap.last_completed,
            "last_success_time": snap.last_success,
        });
        (auto_sync, degraded(&state, snap))
    });
    let backend = state.engine.store().backend().as_str();
    if !db_answers(&state).await {
        return HttpResponse::ServiceUnavailable().json(json!({
            "status": "unhealthy",
            "auto_sync": auto_sync,
            "database": { "status": "down", "backend": backend },
            "version": &*state.version,
        }));
    }
    let mut body = json!({
        "status": if reason.is_some() { "degraded" } else { "healthy" },
        "auto_sync": auto_sync,
        "database": { "status": "up", "backend": backend },
        "version": &*state.version,
    });
    if let (Some(r), Some(obj)) = (reason, body.as_object_mut()) {
        obj.insert("reason".into(), json!(r));
    }
    HttpResponse::Ok().json(body)
}

pub(crate) async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "alive" }))
}

pub(crate) async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if !db_answers(&state).await {
        return HttpResponse::ServiceUnavailable().json(json!({
            "status": "not_ready",
            "database": "down",
            "migrations": "unknown",
        }));
    }
    // Migrations do not un-apply: once seen applied, only the ping is repeated.
    let applied = state.migrations_ok.load(Ordering::Relaxed)
        || bounded(
            "Readiness: cannot check migrations",
            state.engine.store().migrations_applied(),
        )
        .await
        .inspect(|ok| state.migrations_ok.store(*ok, Ordering::Relaxed))
        .unwrap_or(false);
    if applied {
        HttpResponse::Ok().json(json!({
            "status": "ready",
            "database": "up",
            "migrations": "applied",
        }))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({
            "status": "not_ready",
            "database": "up",
            "migrations": "pending",
        }))
    }
}
