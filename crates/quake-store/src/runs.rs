//! Run rows (`sync_runs`) and cursors (`sync_state`).

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use quake_core::{RunStatus, Trigger};

use crate::dispatch;
use crate::models::{SyncRun, SyncState};
use crate::pool::DbConn;
use crate::schema::{sync_runs, sync_state};
use crate::types::Ts;

/// Opens a run row with status `running`; returns it.
pub async fn open_run(conn: &mut DbConn<'_>, trigger: Trigger) -> QueryResult<SyncRun> {
    let now = Ts::now();
    dispatch!(conn, c => diesel::insert_into(sync_runs::table)
        .values((
            sync_runs::trigger.eq(trigger.as_str()),
            sync_runs::status.eq(RunStatus::Running.as_str()),
            sync_runs::started_at.eq(now),
        ))
        .returning(SyncRun::as_returning())
        .get_result(c)
        .await)
}

/// Finishes a run: `succeeded` or `failed` (with `error`). The counts were added page by
/// page (see [`crate::write::apply_page`]); this only sets status, end time and error.
pub async fn finish_run(
    conn: &mut DbConn<'_>,
    run_id: i64,
    status: RunStatus,
    error: Option<&str>,
) -> QueryResult<SyncRun> {
    dispatch!(conn, c => diesel::update(sync_runs::table.find(run_id))
        .set((
            sync_runs::status.eq(status.as_str()),
            sync_runs::finished_at.eq(Some(Ts::now())),
            sync_runs::error.eq(error),
        ))
        .returning(SyncRun::as_returning())
        .get_result(c)
        .await)
}

/// Marks every run still `running` as `abandoned`. Only the holder of the sync lock may
/// call this: it alone knows that no one else is running. Returns how many were marked.
pub async fn abandon_running(conn: &mut DbConn<'_>, except: Option<i64>) -> QueryResult<usize> {
    let now = Ts::now();
    let except = except.unwrap_or(-1);
    dispatch!(conn, c => diesel::update(
            sync_runs::table.filter(sync_runs::status.eq(RunStatus::Running.as_str())).filter(sync_runs::id.ne(except)),
        )
        .set((
            sync_runs::status.eq(RunStatus::Abandoned.as_str()),
            sync_runs::finished_at.eq(Some(now)),
            sync_runs::error.eq(Some("the process running this sync stopped before it finished")),
        ))
        .execute(c)
        .await)
}

/// One run by id.
pub async fn get_run(conn: &mut DbConn<'_>, run_id: i64) -> QueryResult<Option<SyncRun>> {
    dispatch!(conn, c => sync_runs::table
        .find(run_id)
        .select(SyncRun::as_select())
        .first(c)
        .await
        .optional())
}

/// The latest runs, newest first.
pub async fn latest_runs(conn: &mut DbConn<'_>, limit: i64) -> QueryResult<Vec<SyncRun>> {
    dispatch!(conn, c => sync_runs::table
        .order(sync_runs::id.desc())
        .limit(limit)
        .select(SyncRun::as_select())
        .load(c)
        .await)
}

/// The latest run that succeeded.
pub async fn last_success(conn: &mut DbConn<'_>) -> QueryResult<Option<SyncRun>> {
    dispatch!(conn, c => sync_runs::table
        .filter(sync_runs::status.eq(RunStatus::Succeeded.as_str()))
        .order(sync_runs::id.desc())
        .select(SyncRun::as_select())
        .first(c)
        .await
        .optional())
}

/// The cursor row of a source.
pub async fn get_state(conn: &mut DbConn<'_>, source: &str) -> QueryResult<Option<SyncState>> {
    dispatch!(conn, c => sync_state::table
        .find(source)
        .select(SyncState::as_select())
        .first(c)
        .await
        .optional())
}

/// Stores the cursor, resume offset and pinned start time of a source (insert or update).
pub async fn set_state(
    conn: &mut DbConn<'_>,
    source: &str,
    cursor: Option<Ts>,
    resume_offset: i64,
    start_time: Option<Ts>,
) -> QueryResult<()> {
    let row = SyncState {
        source: source.to_string(),
        cursor,
        resume_offset,
        start_time,
        updated_at: Ts::now(),
    };
    dispatch!(conn, c => diesel::insert_into(sync_state::table)
        .values(&row)
        .on_conflict(sync_state::source)
        .do_update()
        .set(&row)
        .execute(c)
        .await)?;
    Ok(())
}
