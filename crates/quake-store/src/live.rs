//! The live lane's record of its work (table `live_lane`): one row per live source, its
//! batch and record counts summed, updated in the transaction of each batch that wrote
//! something ([`apply_live_page`]). A poll that brought nothing new writes nothing: the
//! lane keeps no run row per poll. Its rejected records go to `rejected_records` with no
//! run id.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde::Serialize;

use crate::dispatch;
use crate::models::RunCounts;
use crate::pool::DbConn;
use crate::types::Ts;

diesel::table! {
    use diesel::sql_types::*;
    use crate::schema::sql_types::UtcTs;

    live_lane (source) {
        source -> Text,
        batches -> BigInt,
        fetched -> BigInt,
        inserted -> BigInt,
        updated -> BigInt,
        unchanged -> BigInt,
        deleted -> BigInt,
        merged -> BigInt,
        rejected -> BigInt,
        last_poll_at -> Nullable<UtcTs>,
        last_change_at -> Nullable<UtcTs>,
        last_error -> Nullable<Text>,
        updated_at -> UtcTs,
    }
}

/// One live source's row.
#[derive(Queryable, Selectable, Insertable, Debug, Clone, PartialEq, Serialize)]
#[diesel(table_name = live_lane, treat_none_as_null = true)]
pub struct LiveLaneRow {
    pub source: String,
    pub batches: i64,
    pub fetched: i64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub deleted: i64,
    pub merged: i64,
    pub rejected: i64,
    pub last_poll_at: Option<Ts>,
    pub last_change_at: Option<Ts>,
    pub last_error: Option<String>,
    pub updated_at: Ts,
}

impl LiveLaneRow {
    /// The record counts of the row (`pages` = batches).
    pub fn counts(&self) -> RunCounts {
        RunCounts {
            fetched: self.fetched,
            inserted: self.inserted,
            updated: self.updated,
            unchanged: self.unchanged,
            deleted: self.deleted,
            merged: self.merged,
            rejected: self.rejected,
            pages: self.batches,
        }
    }
}

/// What one written batch adds to its source's row.
#[derive(Debug, Clone)]
pub struct LiveBatch<'a> {
    pub source: &'a str,
    /// When the poll (or the push message) that brought the batch was answered.
    pub polled_at: Ts,
    /// The last failure of the lane before this batch, if any.
    pub last_error: Option<&'a str>,
}

/// Adds a written batch's counts to its source's row (created on first use).
pub async fn add_batch(conn: &mut DbConn<'_>, b: &LiveBatch<'_>, k: &RunCounts) -> QueryResult<()> {
    use live_lane::dsl as l;
    let now = Ts::now();
    let changed = k.changed();
    let row = LiveLaneRow {
        source: b.source.to_string(),
        batches: 1,
        fetched: k.fetched,
        inserted: k.inserted,
        updated: k.updated,
        unchanged: k.unchanged,
        deleted: k.deleted,
        merged: k.merged,
        rejected: k.rejected,
        last_poll_at: Some(b.polled_at),
        last_change_at: changed.then_some(now),
        last_error: b.last_error.map(str::to_string),
        updated_at: now,
    };
    let inserted = dispatch!(conn, c => diesel::insert_into(l::live_lane)
        .values(&row)
        .on_conflict_do_nothing()
        .execute(c)
        .await)?;
    if inserted == 1 {
        return Ok(());
    }
    let last_change = if changed { Some(now) } else { None };
    dispatch!(conn, c => diesel::update(l::live_lane.find(b.source))
        .set((
            l::batches.eq(l::batches + 1),
            l::fetched.eq(l::fetched + k.fetched),
            l::inserted.eq(l::inserted + k.inserted),
            l::updated.eq(l::updated + k.updated),
            l::unchanged.eq(l::unchanged + k.unchanged),
            l::deleted.eq(l::deleted + k.deleted),
            l::merged.eq(l::merged + k.merged),
            l::rejected.eq(l::rejected + k.rejected),
            l::last_poll_at.eq(Some(b.polled_at)),
            l::last_error.eq(b.last_error),
            l::updated_at.eq(now),
        ))
        .execute(c)
        .await)?;
    if let Some(t) = last_change {
        dispatch!(conn, c => diesel::update(l::live_lane.find(b.source))
            .set(l::last_change_at.eq(Some(t)))
            .execute(c)
            .await)?;
    }
    Ok(())
}

/// Every live source's row.
pub async fn rows(conn: &mut DbConn<'_>) -> QueryResult<Vec<LiveLaneRow>> {
    use live_lane::dsl as l;
    dispatch!(conn, c => l::live_lane
        .select(LiveLaneRow::as_select())
        .order(l::source)
        .load(c)
        .await)
}
