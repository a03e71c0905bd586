//! Read queries for the engine's status and the HTTP surface.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::dispatch;
use crate::models::{Earthquake, RejectedRecord};
use crate::pool::DbConn;
use crate::schema::{earthquakes, rejected_records};
use crate::types::Ts;

/// Rows by state: live (neither deleted nor merged), deleted, merged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CatalogueCounts {
    pub live: i64,
    pub deleted: i64,
    pub merged: i64,
}

impl CatalogueCounts {
    pub fn total(&self) -> i64 {
        self.live + self.deleted + self.merged
    }
}

/// The catalogue's counts by state, as the writes keep them (the `catalogue_counts` row that
/// triggers on `earthquakes` update in each writing statement's transaction, migration
/// 2026-11-30-190000): one row read, whatever the catalogue's size. Always equal to
/// [`catalogue_counts_scan`] for the same snapshot.
pub async fn catalogue_counts(conn: &mut DbConn<'_>) -> QueryResult<CatalogueCounts> {
    let row: Option<CountsRow> = dispatch!(conn, c => diesel::sql_query(
        "SELECT live, deleted, merged FROM catalogue_counts",
    )
    .get_result(c)
    .await
    .optional())?;
    Ok(row.map(CountsRow::counts).unwrap_or_default())
}

#[derive(QueryableByName)]
struct CountsRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    live: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    deleted: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    merged: i64,
}

impl CountsRow {
    fn counts(self) -> CatalogueCounts {
        CatalogueCounts {
            live: self.live,
            deleted: self.deleted,
            merged: self.merged,
        }
    }
}

/// Counts the catalogue by state in one pass over every row (what [`catalogue_counts`]
/// answers without the pass; tests compare the two). A merged row counts as merged whatever
/// its status.
#[cfg(feature = "test-util")]
pub async fn catalogue_counts_scan(conn: &mut DbConn<'_>) -> QueryResult<CatalogueCounts> {
    let row: CountsRow = dispatch!(conn, c => diesel::sql_query(
        "SELECT \
           COALESCE(SUM(CASE WHEN merged_into IS NULL AND status <> 'deleted' THEN 1 ELSE 0 END), 0) AS live, \
           COALESCE(SUM(CASE WHEN merged_into IS NULL AND status = 'deleted' THEN 1 ELSE 0 END), 0) AS deleted, \
           COALESCE(SUM(CASE WHEN merged_into IS NOT NULL THEN 1 ELSE 0 END), 0) AS merged \
         FROM earthquakes",
    )
    .get_result(c)
    .await)?;
    Ok(row.counts())
}

/// The newest `updated` in the catalogue (for staleness alerts).
pub async fn newest_update(conn: &mut DbConn<'_>) -> QueryResult<Option<Ts>> {
    dispatch!(conn, c => earthquakes::table
        .select(earthquakes::updated)
        .order(earthquakes::updated.desc())
        .first::<Ts>(c)
        .await
        .optional())
}

/// One event by its primary id (any state).
pub async fn get_event(conn: &mut DbConn<'_>, event_id: &str) -> QueryResult<Option<Earthquake>> {
    dispatch!(conn, c => earthquakes::table
        .find(event_id)
        .select(Earthquake::as_select())
        .first(c)
        .await
        .optional())
}

/// Every row, ordered by id (tests and exports; mind the size).
pub async fn all_events(conn: &mut DbConn<'_>) -> QueryResult<Vec<Earthquake>> {
    dispatch!(conn, c => earthquakes::table
        .order(earthquakes::id.asc())
        .select(Earthquake::as_select())
        .load(c)
        .await)
}

/// The records quarantined by a run (all runs when `run_id` is `None`), oldest first.
pub async fn rejected_records(
    conn: &mut DbConn<'_>,
    run_id: Option<i64>,
) -> QueryResult<Vec<RejectedRecord>> {
    match run_id {
        Some(r) => dispatch!(conn, c => rejected_records::table
            .filter(rejected_records::run_id.eq(r))
            .order(rejected_records::id.asc())
            .select(RejectedRecord::as_select())
            .load(c)
            .await),
        None => dispatch!(conn, c => rejected_records::table
            .order(rejected_records::id.asc())
            .select(RejectedRecord::as_select())
            .load(c)
            .await),
    }
}
