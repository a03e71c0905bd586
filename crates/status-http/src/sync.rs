//! `/sync-status`, `POST /sync`, `/sync-runs`.

use std::sync::Mutex;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use sync_engine::{Engine, SchedulerHandle, StartOutcome, StatusSnapshot, SyncOutcome, Trigger};
use tokio::sync::watch;

use crate::{AppState, HttpError, db, minutes};

/// Answered from memory only: never waits on a sync or the database. The body is
/// serialized once per change (a run starting, a page committing, a run ending, the
/// scheduler's next tick moving) and served as shared bytes in between, so polling it costs
/// what `/health/live` costs.
pub(crate) async fn sync_status(state: web::Data<AppState>) -> Result<HttpResponse, HttpError> {
    let body = state.status_cache.body(&state)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

/// The last `/sync-status` body and what it was made from.
pub(crate) struct StatusCache {
    inner: Mutex<CacheInner>,
}

struct CacheInner {
    /// Marks which engine status the cached body shows (`has_changed` since then).
    status: watch::Receiver<StatusSnapshot>,
    /// The body and the scheduler's next run it shows (the rest of the scheduler's part
    /// is fixed for the handle's life).
    cached: Option<(Option<DateTime<Utc>>, web::Bytes)>,
}

impl StatusCache {
    pub(crate) fn new(engine: &Engine) -> StatusCache {
        StatusCache {
            inner: Mutex::new(CacheInner {
                status: engine.subscribe(),
                cached: None,
            }),
        }
    }

    fn body(&self, state: &AppState) -> Result<web::Bytes, HttpError> {
        let sched = &state.scheduler;
        let next_run_at = sched.next_run_at();
        // A poisoned lock only means another request panicked mid-serialization: the
        // cache is then rebuilt, never trusted.
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A closed channel (the engine gone) counts as changed: serialize what is left.
        let changed = inner.status.has_changed().unwrap_or(true);
        if let Some((next, body)) = &inner.cached
            && !changed
            && *next == next_run_at
        {
            return Ok(body.clone());
        }
        inner.cached = None;
        let body = {
            let snap = inner.status.borrow_and_update();
            serialize(&snap, sched, next_run_at)
        }
        .map_err(|e| HttpError::Internal(format!("serializing /sync-status: {e}")))?;
        let body = web::Bytes::from(body);
        inner.cached = Some((next_run_at, body.clone()));
        Ok(body)
    }
}

fn serialize(
    snap: &StatusSnapshot,
    sched: &SchedulerHandle,
    next_run_at: Option<DateTime<Utc>>,
) -> serde_json::Result<Vec<u8>> {
    let current = snap.current.as_ref();
    serde_json::to_vec(&StatusBody {
        scheduler: SchedulerBody {
            enabled: sched.enabled(),
            interval_seconds: sched.interval().as_secs(),
            interval_minutes: minutes(sched.interval()),
            startup_delay_seconds: sched.startup_delay().as_secs(),
            next_run_at,
        },
        current_sync: CurrentBody {
            is_running: snap.is_running,
            run_id: current.map(|c| c.run_id),
            trigger: current.map(|c| c.trigger.as_str()),
            started_at: current.map(|c| c.started_at),
            progress: current.map(|c| &c.counts),
            last_completed: snap.last_completed,
            skipped_total: snap.skipped_total,
        },
        last_run: snap.last_run.as_ref().map(RunBody::of),
        source: SourceBody {
            kind: &snap.source_kind,
            url: &snap.source_url,
            cursor: snap.cursor,
        },
        protection: ProtectionBody {
            duplicate_prevention: "enabled",
            lock_based: true,
            lock_scope: &snap.lock_scope,
            resource_management: "active",
        },
        live: LiveBody::of(snap),
        lag: LagBody {
            latest_seconds: snap.latest_lag_seconds,
            lane: snap.latest_lag_lane,
            committed_at: snap.latest_lag_at,
        },
    })
}

#[derive(Serialize)]
struct StatusBody<'a> {
    scheduler: SchedulerBody,
    current_sync: CurrentBody<'a>,
    last_run: Option<RunBody<'a>>,
    source: SourceBody<'a>,
    protection: ProtectionBody<'a>,
    live: LiveBody<'a>,
    lag: LagBody,
}

/// The live lane (issue 18), as this process sees it.
#[derive(Serialize)]
struct LiveBody<'a> {
    enabled: bool,
    /// Redacted like `source.url`.
    url: &'a str,
    mode: &'a str,
    interval_seconds: u64,
    role: &'static str,
    last_poll_at: Option<DateTime<Utc>>,
    last_change_at: Option<DateTime<Utc>>,
    last_error: Option<&'a str>,
    last_error_at: Option<DateTime<Utc>>,
    polls: &'a sync_engine::LivePolls,
    records: LiveRecords,
    latest_lag_seconds: Option<f64>,
}

impl<'a> LiveBody<'a> {
    fn of(snap: &'a StatusSnapshot) -> Self {
        let l = &snap.live;
        let k = &l.records;
        LiveBody {
            enabled: l.enabled,
            url: &l.url,
            mode: &l.mode,
            interval_seconds: l.interval_seconds,
            role: l.role.as_str(),
            last_poll_at: l.last_poll_at,
            last_change_at: l.last_change_at,
            last_error: l.last_error.as_deref(),
            last_error_at: l.last_error_at,
            polls: &l.polls,
            records: LiveRecords {
                batches: k.pages,
                fetched: k.fetched,
                inserted: k.inserted,
                updated: k.updated,
                unchanged: k.unchanged,
                deleted: k.deleted,
                merged: k.merged,
                rejected: k.rejected,
            },
            latest_lag_seconds: l.latest_lag_seconds,
        }
    }
}

/// Record outcomes of the live lane's batches written by this process.
#[derive(Serialize)]
struct LiveRecords {
    batches: i64,
    fetched: i64,
    inserted: i64,
    updated: i64,
    unchanged: i64,
    deleted: i64,
    merged: i64,
    rejected: i64,
}

/// The commit lag of the latest page that inserted or updated something, either lane.
#[derive(Serialize)]
struct LagBody {
    latest_seconds: Option<f64>,
    lane: Option<sync_engine::Lane>,
    committed_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct SchedulerBody {
    enabled: bool,
    interval_seconds: u64,
    interval_minutes: serde_json::Value,
    startup_delay_seconds: u64,
    next_run_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct CurrentBody<'a> {
    is_running: bool,
    run_id: Option<i64>,
    trigger: Option<&'a str>,
    started_at: Option<DateTime<Utc>>,
    progress: Option<&'a quake_store::RunCounts>,
    last_completed: Option<DateTime<Utc>>,
    skipped_total: u64,
}

/// A run row plus `duration_ms`.
#[derive(Serialize)]
pub(crate) struct RunBody<'a> {
    #[serde(flatten)]
    run: &'a quake_store::SyncRun,
    duration_ms: Option<i64>,
}

impl<'a> RunBody<'a> {
    pub(crate) fn of(run: &'a quake_store::SyncRun) -> Self {
        RunBody {
            run,
            duration_ms: run.duration_ms(),
        }
    }
}

#[derive(Serialize)]
struct SourceBody<'a> {
    kind: &'a str,
    url: &'a str,
    cursor: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct ProtectionBody<'a> {
    duplicate_prevention: &'static str,
    lock_based: bool,
    lock_scope: &'a str,
    resource_management: &'static str,
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
                    Ok(HttpResponse::Ok().json(RunBody::of(&run)))
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
    let runs = db(state.engine.store().latest_runs(limit)).await?;
    Ok(HttpResponse::Ok().json(json!({
        "limit": limit,
        "runs": runs.iter().map(RunBody::of).collect::<Vec<_>>(),
    })))
}
