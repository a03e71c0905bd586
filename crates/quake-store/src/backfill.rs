//! Progress of `quakesync backfill` (table `backfill_windows`).
//!
//! A backfill of a range `[range_start, range_end)` (plus a `filter`, the other query
//! parameters such as `minmagnitude=2.5`, so that two different backfills of the same
//! range never share progress) is planned once into windows small enough for the
//! upstream's cap. The plan is stored in one transaction; each window is then marked done
//! **in the same transaction as its last page** (see [`apply_window_page`]), so a window
//! is marked done exactly when everything it fetched is committed: a crash between the two
//! cannot happen, and a window is never redone because its mark was lost, nor marked done
//! with its last page missing. A backfill run again with the same key skips the windows
//! marked done and does not plan again.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use serde::Serialize;

use crate::dispatch;
use crate::pool::DbConn;
use crate::types::Ts;

diesel::table! {
    use diesel::sql_types::*;
    use crate::schema::sql_types::UtcTs;

    backfill_windows (range_start, range_end, filter, window_start) {
        range_start -> UtcTs,
        range_end -> UtcTs,
        filter -> Text,
        window_start -> UtcTs,
        window_end -> UtcTs,
        expected -> Nullable<BigInt>,
        events -> BigInt,
        pages -> BigInt,
        run_id -> Nullable<BigInt>,
        planned_at -> UtcTs,
        done_at -> Nullable<UtcTs>,
    }
}

/// What identifies one backfill: the requested range and the filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct BackfillKey {
    pub range_start: Ts,
    pub range_end: Ts,
    /// The other query parameters, canonical (`""` when none).
    pub filter: String,
}

/// One planned window of a backfill.
#[derive(Queryable, Selectable, Insertable, Debug, Clone, PartialEq, Serialize)]
#[diesel(table_name = backfill_windows, treat_none_as_null = true)]
pub struct BackfillWindow {
    pub range_start: Ts,
    pub range_end: Ts,
    pub filter: String,
    pub window_start: Ts,
    pub window_end: Ts,
    /// The upstream's count for this window when it was planned (`None`: unknown).
    pub expected: Option<i64>,
    /// Records fetched for this window by the run that finished it.
    pub events: i64,
    pub pages: i64,
    /// The run that finished it.
    pub run_id: Option<i64>,
    pub planned_at: Ts,
    pub done_at: Option<Ts>,
}

impl BackfillWindow {
    /// A window not yet done.
    pub fn planned(key: &BackfillKey, start: Ts, end: Ts, expected: Option<i64>) -> Self {
        BackfillWindow {
            range_start: key.range_start,
            range_end: key.range_end,
            filter: key.filter.clone(),
            window_start: start,
            window_end: end,
            expected,
            events: 0,
            pages: 0,
            run_id: None,
            planned_at: Ts::now(),
            done_at: None,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done_at.is_some()
    }
}

/// Marks a window done: what [`PageWrite::window_done`](crate::PageWrite::window_done) writes with the window's last page.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowDone {
    pub key: BackfillKey,
    pub window_start: Ts,
    /// Records fetched for the window (all its pages).
    pub events: i64,
    pub pages: i64,
    pub run_id: Option<i64>,
}

/// The stored windows of a backfill, in time order (empty: never planned).
pub async fn load_windows(
    conn: &mut DbConn<'_>,
    key: &BackfillKey,
) -> QueryResult<Vec<BackfillWindow>> {
    use backfill_windows::dsl as w;
    dispatch!(conn, c => w::backfill_windows
        .filter(w::range_start.eq(key.range_start))
        .filter(w::range_end.eq(key.range_end))
        .filter(w::filter.eq(&key.filter))
        .order(w::window_start.asc())
        .select(BackfillWindow::as_select())
        .load(c)
        .await)
}

async fn insert_windows(conn: &mut DbConn<'_>, windows: &[BackfillWindow]) -> QueryResult<()> {
    // One row per statement: SQLite cannot batch rows with NULLs; plans are small.
    for row in windows {
        dispatch!(conn, c => diesel::insert_into(backfill_windows::table)
            .values(row)
            .execute(c)
            .await)?;
    }
    Ok(())
}

/// Stores a whole plan in one transaction (so a plan is either all there or absent).
pub async fn save_plan(conn: &mut DbConn<'_>, windows: &[BackfillWindow]) -> QueryResult<()> {
    dispatch!(conn, c => c.transaction(async |tx| {
        let mut db = DbConn::from(tx);
        insert_windows(&mut db, windows).await
    }).await)
}

/// Replaces the not-yet-done window starting at `window_start` with `parts` (a window
/// that turned out too large for the upstream while paging), in one transaction.
pub async fn split_window(
    conn: &mut DbConn<'_>,
    key: &BackfillKey,
    window_start: Ts,
    parts: &[BackfillWindow],
) -> QueryResult<()> {
    use backfill_windows::dsl as w;
    dispatch!(conn, c => c.transaction(async |tx| {
        let mut db = DbConn::from(tx);
        dispatch!(&mut db, c => diesel::delete(
                w::backfill_windows
                    .filter(w::range_start.eq(key.range_start))
                    .filter(w::range_end.eq(key.range_end))
                    .filter(w::filter.eq(&key.filter))
                    .filter(w::window_start.eq(window_start))
                    .filter(w::done_at.is_null()),
            )
            .execute(c)
            .await)?;
        insert_windows(&mut db, parts).await
    }).await)
}

/// Marks one window done (normally through [`apply_window_page`]). Returns the rows marked (0 or 1).
pub async fn mark_done(conn: &mut DbConn<'_>, done: &WindowDone) -> QueryResult<usize> {
    use backfill_windows::dsl as w;
    dispatch!(conn, c => diesel::update(
            w::backfill_windows
                .filter(w::range_start.eq(done.key.range_start))
                .filter(w::range_end.eq(done.key.range_end))
                .filter(w::filter.eq(&done.key.filter))
                .filter(w::window_start.eq(done.window_start)),
        )
        .set((
            w::done_at.eq(Some(Ts::now())),
            w::events.eq(done.events),
            w::pages.eq(done.pages),
            w::run_id.eq(done.run_id),
        ))
        .execute(c)
        .await)
}

/// The ends of the stored backfills that start at `range_start` with `filter` and still
/// have windows to do, latest first (a backfill run again without `--end` resumes the latest).
pub async fn unfinished_range_ends(
    conn: &mut DbConn<'_>,
    range_start: Ts,
    filter: &str,
) -> QueryResult<Vec<Ts>> {
    use backfill_windows::dsl as w;
    dispatch!(conn, c => w::backfill_windows
        .filter(w::range_start.eq(range_start))
        .filter(w::filter.eq(filter))
        .filter(w::done_at.is_null())
        .select(w::range_end)
        .distinct()
        .order(w::range_end.desc())
        .load(c)
        .await)
}
