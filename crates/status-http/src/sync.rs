//! `/sync-status`, `POST /sync`, `/sync-runs`.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use sync_engine::{StartOutcome, SyncOutcome, Trigger};

use crate::{AppState, DB_QUERY_TIMEOUT, HttpError, minutes, run_json};

/// Answered from memory only: never waits on a sync or the database.
pub(crate) async fn sync_status(state: web::Data<AppState>) -> HttpResponse {
    let snap = state.engine.status();
    let sched = &state.scheduler;
    let current = snap.current.as_ref();
    HttpResponse::Ok().json(json!({
        "scheduler": {
            "enabled": sched.enabled(),
            "interval_seconds": sched.interval().as_secs(),
            "interval_minutes": minutes(sched.interval()),
            "startup_delay_seconds": sched.startup_delay().as_secs(),
            "next_run_at": sched.next_run_at(),
        },
        "current_sync": {
            "is_running": snap.is_running,
            "run_id": current.map(|c| c.run_id),
            "trigger": current.map(|c| c.trigger.as_str()),
            "started_at": current.map(|c| c.started_at),
            "progress": current.map(|c| c.counts),
            "last_completed": snap.last_completed,
            "skipped_total": snap.skipped_total,
        },
        "last_run": snap.last_run.as_ref().map(run_json),
        "source": {
            "kind": snap.source_kind,
            "url": snap.source_url,
            "cursor": snap.cursor,
        },
        "protection": {
            "duplicate_prevention": "enabled",
            "lock_based": true,
            "lock_scope": snap.lock_scope,
            "resource_management": "active",
        },
    }))
}

/// Checks `Authorization: Bearer <token>` against the configured token in constant time
/// (over SHA-256 digests, so neither content nor length leaks through timing).
fn authorize(state: &AppState, req: &HttpRequest) -> Result<(), HttpError> {
    let Some(expected) = state.admin_token.as_deref() else {
        return Err(HttpError::Forbidden);
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or(HttpError::Unauthorized)?;
    let a = Sha256::digest(given.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(HttpError::Unauthorized)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct SyncParams {
    #[serde(default)]
    wait: bool,
}

pub(crate) async fn post_sync(
    state: web::Data<AppState>,
    req: HttpRequest,
    params: web::Query<SyncParams>,
) -> Result<HttpResponse, HttpError> {
    // The endpoint takes no body; one larger than the limit is refused, not ignored.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<u64>().unwrap_or(u64::MAX));
    if declared.is_some_and(|n| n > crate::MAX_BODY_BYTES as u64) {
        return Err(HttpError::PayloadTooLarge);
    }
    authorize(&state, &req)?;
    match state.engine.start(Trigger::Manual).await? {
        StartOutcome::Busy { run_id } => {
            let run_id = match run_id {
                Some(id) => Some(id),
                None => running_run_id(&state).await,
            };
            Ok(HttpResponse::Conflict().json(json!({
                "status": "already_running",
                "run_id": run_id,
            })))
        }
        StartOutcome::Started { run_id, handle } => {
            log::info!("Manual sync requested through POST /sync (run {run_id})");
            if !params.wait {
                return Ok(HttpResponse::Accepted().json(json!({
                    "status": "started",
                    "run_id": run_id,
                })));
            }
            match handle.await {
                Ok(SyncOutcome::Succeeded(run) | SyncOutcome::Failed(run)) => {
                    Ok(HttpResponse::Ok().json(run_json(&run)))
                }
                Ok(SyncOutcome::Skipped { running_run_id }) => Ok(HttpResponse::Conflict()
                    .json(json!({ "status": "already_running", "run_id": running_run_id }))),
                Err(e) => Err(HttpError::Internal(format!("sync run {run_id} ended: {e}"))),
            }
        }
    }
}

/// The engine says busy before it has published the run id (the window between taking the
/// guard and writing the run row): wait a moment for it.
async fn running_run_id(state: &AppState) -> Option<i64> {
    let mut rx = state.engine.subscribe();
    let seen = tokio::time::timeout(
        Duration::from_millis(500),
        rx.wait_for(|s| s.current.is_some()),
    )
    .await;
    match seen {
        Ok(Ok(s)) => s.current.as_ref().map(|c| c.run_id),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct RunsParams {
    limit: Option<String>,
}

pub(crate) async fn sync_runs(
    state: web::Data<AppState>,
    params: web::Query<RunsParams>,
) -> Result<HttpResponse, HttpError> {
    let limit = match params.limit.as_deref() {
        None => 20,
        Some(raw) => raw
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                HttpError::BadRequest(format!(
                    "limit must be an integer from 1 to 100, got {raw:?}"
                ))
            })?,
    };
    let runs = tokio::time::timeout(DB_QUERY_TIMEOUT, async {
        let mut conn = state.engine.store().conn().await?;
        let runs = quake_store::runs::latest_runs(&mut conn.db(), limit).await?;
        Ok::<_, HttpError>(runs)
    })
    .await??;
    Ok(HttpResponse::Ok().json(json!({
        "limit": limit,
        "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
    })))
}
