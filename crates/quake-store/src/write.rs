//! The write path: one page in one transaction, a SAVEPOINT per record.
//!
//! Revision policy (SPEC section 3 step 6), per incoming record against the stored row with
//! the same primary id:
//! - none stored: insert (`Inserted`, or `Deleted` when it arrives deleted);
//! - incoming `updated` newer, or equal with a different content hash: update (`Updated`,
//!   or `Deleted` when the new status is `deleted`); an update also clears `merged_into`;
//! - otherwise no write (`Unchanged`);
//! - each id in the incoming `ids` that is the primary id of another stored row marks that
//!   row `merged_into` = the incoming id (`Merged`). Only primary ids count: an alias that
//!   two events share merges nothing.
//!
//! Each record gets exactly one outcome, so `fetched = inserted + updated + unchanged +
//! deleted + merged + rejected` holds for every page.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, RunQueryDsl};

use crate::dispatch;
use crate::models::{EventRecord, NewRejected, RunCounts, StoredVersion};
use crate::pool::DbConn;
use crate::schema::{earthquakes, rejected_records};
use crate::types::Ts;

/// What happened to one incoming record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Inserted,
    Updated,
    Unchanged,
    Deleted,
    Merged,
    Rejected(String),
}

/// The result of [`apply_page`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageResult {
    /// `(record id, outcome)` in input order.
    pub outcomes: Vec<(String, Outcome)>,
    /// Counts of this page, rejected records passed in included; `pages` = 1.
    pub counts: RunCounts,
}

/// Largest `IN (…)` list sent at once (SQLite and PostgreSQL bind limits).
const LOOKUP_CHUNK: usize = 1000;

/// Loads what the revision policy needs for the rows whose primary id is in `ids`.
pub async fn load_versions(conn: &mut DbConn<'_>, ids: &[&str]) -> QueryResult<Vec<StoredVersion>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(LOOKUP_CHUNK) {
        let rows: Vec<StoredVersion> = match conn {
            // An unnamed one-shot statement, planned with its actual ids every time: the
            // statement cache's generic plan for `id = ANY($1)`, made while the table was
            // small, stayed a sequential scan as a first sync filled it (0.4 s instead of
            // 3 ms per 1000 ids at 100k rows).
            DbConn::Pg(c) => {
                diesel::sql_query(
                    "SELECT id, updated, content_hash, status, merged_into FROM earthquakes WHERE id = ANY($1)",
                )
                .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(chunk)
                .load(*c)
                .await?
            }
            DbConn::Sqlite(c) => {
                earthquakes::table
                    .filter(earthquakes::id.eq_any(chunk))
                    .select(StoredVersion::as_select())
                    .load(*c)
                    .await?
            }
        };
        out.extend(rows);
    }
    Ok(out)
}

/// Stores refused records with their raw payload.
pub async fn quarantine(conn: &mut DbConn<'_>, records: &[NewRejected]) -> QueryResult<usize> {
    if records.is_empty() {
        return Ok(0);
    }
    let clean: Vec<NewRejected> = records
        .iter()
        .map(|r| NewRejected {
            source_id: r.source_id.as_ref().map(|s| strip_nul(s)),
            reason: strip_nul(&r.reason),
            payload: strip_nul(&r.payload),
            ..r.clone()
        })
        .collect();
    // One row per statement: SQLite cannot batch rows with NULLs in one INSERT, and
    // rejections are rare.
    let mut n = 0;
    for row in &clean {
        n += dispatch!(conn, c => diesel::insert_into(rejected_records::table)
            .values(row)
            .execute(c)
            .await)?;
    }
    Ok(n)
}

fn strip_nul(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}")
    } else {
        s.to_string()
    }
}

/// Adds a page's counts to a run row (and one page).
pub async fn add_run_counts(conn: &mut DbConn<'_>, run_id: i64, k: &RunCounts) -> QueryResult<()> {
    use crate::schema::sync_runs::dsl::*;
    dispatch!(conn, c => diesel::update(sync_runs.find(run_id))
        .set((
            fetched.eq(fetched + k.fetched),
            inserted.eq(inserted + k.inserted),
            updated.eq(updated + k.updated),
            unchanged.eq(unchanged + k.unchanged),
            deleted.eq(deleted + k.deleted),
            merged.eq(merged + k.merged),
            rejected.eq(rejected + k.rejected),
            pages.eq(pages + k.pages),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Applies one page in one transaction (a savepoint when called inside another): the
/// records by the revision policy, each in its own SAVEPOINT so a failing write costs only
/// itself and is quarantined; `rejected` (refused before the database) is quarantined as
/// is; the run row, when given, gets the page's counts. Either all of it commits or none.
pub async fn apply_page(
    conn: &mut DbConn<'_>,
    run_id: Option<i64>,
    records: &[EventRecord],
    rejected: &[NewRejected],
) -> QueryResult<PageResult> {
    apply_page_with(conn, run_id, records, rejected, WriteMode::Auto).await
}

/// How [`apply_page_with`] writes the records of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// The fast path of each backend. PostgreSQL: one `UNNEST` insert and one `UNNEST` update per chunk, bisected
    /// down to per-record savepoints around refused rows. SQLite: the whole page in one
    /// blocking closure on the connection, a SAVEPOINT per record, no task hop per statement.
    Auto,
    /// A SAVEPOINT and a statement per record (the seed's design; the reference the fast
    /// path is tested against).
    PerRecord,
}

/// [`apply_page`] with an explicit write mode. Both modes give the same catalogue, the
/// same outcomes and the same counts.
pub async fn apply_page_with(
    conn: &mut DbConn<'_>,
    run_id: Option<i64>,
    records: &[EventRecord],
    rejected: &[NewRejected],
    mode: WriteMode,
) -> QueryResult<PageResult> {
    dispatch!(conn, c => c.transaction(async |tx| {
        let mut db = DbConn::from(tx);
        apply_page_in_tx(&mut db, run_id, records, rejected, mode).await
    }).await)
}

async fn apply_page_in_tx(
    db: &mut DbConn<'_>,
    run_id: Option<i64>,
    records: &[EventRecord],
    rejected: &[NewRejected],
    mode: WriteMode,
) -> QueryResult<PageResult> {
    let now = Ts::now();
    let mut wanted: Vec<&str> = records
        .iter()
        .flat_map(|r| r.alias_list().chain([r.id.as_str()]))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut stored: HashMap<String, StoredVersion> = load_versions(db, &wanted)
        .await?
        .into_iter()
        .map(|v| (v.id.clone(), v))
        .collect();

    let mut outcomes = Vec::with_capacity(records.len());
    match (mode, &mut *db) {
        (WriteMode::Auto, DbConn::Pg(c)) => {
            crate::fast::apply_chunk(c, records, &mut stored, now, &mut outcomes).await?;
        }
        (WriteMode::Auto, DbConn::Sqlite(c)) => {
            outcomes = crate::fast::apply_sqlite_blocking(c, records.to_vec(), stored, now).await?;
        }
        (WriteMode::PerRecord, _) => {
            for rec in records {
                outcomes.push(apply_one(db, rec, &mut stored, now).await?);
            }
        }
    }

    let mut result = PageResult {
        outcomes: Vec::with_capacity(records.len()),
        counts: RunCounts::default(),
    };
    let mut refused: Vec<NewRejected> = rejected.to_vec();
    for (rec, outcome) in records.iter().zip(outcomes) {
        if let Outcome::Rejected(reason) = &outcome {
            log::warn!("Failed to insert earthquake {}: {reason}", rec.id);
            refused.push(NewRejected {
                run_id,
                source_id: Some(rec.id.clone()),
                reason: reason.clone(),
                payload: serde_json::to_string(rec)
                    .unwrap_or_else(|e| format!("{{\"unserializable\":\"{e}\"}}")),
                rejected_at: now,
            });
        }
        count(&mut result.counts, &outcome);
        result.outcomes.push((rec.id.clone(), outcome));
    }
    result.counts.rejected += rejected.len() as i64;
    result.counts.fetched += rejected.len() as i64;
    result.counts.pages = 1;
    for r in refused.iter_mut() {
        r.run_id = r.run_id.or(run_id);
    }
    quarantine(db, &refused).await?;
    if let Some(id) = run_id {
        add_run_counts(db, id, &result.counts).await?;
    }
    Ok(result)
}

/// One record by the per-record path: NUL check, plan, write in its own SAVEPOINT,
/// remember. A refused write is rolled back alone and becomes `Rejected`.
pub(crate) async fn apply_one(
    db: &mut DbConn<'_>,
    rec: &EventRecord,
    stored: &mut HashMap<String, StoredVersion>,
    now: Ts,
) -> QueryResult<Outcome> {
    let plan = match plan_or_outcome(rec, stored) {
        Ok(plan) => plan,
        Err(outcome) => return Ok(outcome),
    };
    let written = write_in_savepoint(db, rec, &plan, now).await;
    settle(written, &plan, rec, stored, now)
}

/// The first half of the per-record path: the record's plan, or its outcome when it
/// needs no write (refused for a NUL, or unchanged).
pub(crate) fn plan_or_outcome(
    rec: &EventRecord,
    stored: &HashMap<String, StoredVersion>,
) -> Result<Plan, Outcome> {
    if let Err(reason) = rec.nul_check() {
        return Err(Outcome::Rejected(reason));
    }
    let plan = plan_record(rec, stored);
    if plan.is_noop() {
        Err(Outcome::Unchanged)
    } else {
        Ok(plan)
    }
}

/// The second half: the outcome of a write that was rolled back to its savepoint when it
/// failed. A record's own error makes it `Rejected`; a connection error ends the page.
pub(crate) fn settle(
    written: QueryResult<()>,
    plan: &Plan,
    rec: &EventRecord,
    stored: &mut HashMap<String, StoredVersion>,
    now: Ts,
) -> QueryResult<Outcome> {
    match written {
        Ok(()) => {
            plan.remember(rec, now, stored);
            Ok(plan.outcome(rec))
        }
        Err(e) if is_record_error(&e) => Ok(Outcome::Rejected(format!(
            "database refused the record: {e}"
        ))),
        Err(e) => Err(e),
    }
}

fn count(k: &mut RunCounts, o: &Outcome) {
    k.fetched += 1;
    match o {
        Outcome::Inserted => k.inserted += 1,
        Outcome::Updated => k.updated += 1,
        Outcome::Unchanged => k.unchanged += 1,
        Outcome::Deleted => k.deleted += 1,
        Outcome::Merged => k.merged += 1,
        Outcome::Rejected(_) => k.rejected += 1,
    }
}

/// Errors that belong to one record (constraint, bad value) rather than to the connection.
pub(crate) fn is_record_error(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(kind, _) => !matches!(kind, DatabaseErrorKind::ClosedConnection),
        DieselError::SerializationError(_) | DieselError::DeserializationError(_) => true,
        _ => false,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Write {
    None,
    Insert,
    Update,
}

#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) write: Write,
    /// Stored primary ids listed in the record's `ids`, to be marked merged into it.
    pub(crate) merges: Vec<String>,
}

impl Plan {
    pub(crate) fn is_noop(&self) -> bool {
        self.write == Write::None && self.merges.is_empty()
    }

    /// Keeps the in-memory view in step after a successful write, so a later record of the
    /// same page sees it.
    pub(crate) fn remember(
        &self,
        rec: &EventRecord,
        _now: Ts,
        stored: &mut HashMap<String, StoredVersion>,
    ) {
        if self.write != Write::None {
            stored.insert(
                rec.id.clone(),
                StoredVersion {
                    id: rec.id.clone(),
                    updated: rec.updated,
                    content_hash: rec.content_hash.clone(),
                    status: rec.status.clone(),
                    merged_into: None,
                },
            );
        }
        for m in &self.merges {
            if let Some(v) = stored.get_mut(m) {
                v.merged_into = Some(rec.id.clone());
            }
        }
    }

    /// The one outcome a record gets when this plan is carried out.
    pub(crate) fn outcome(&self, rec: &EventRecord) -> Outcome {
        if rec.is_deleted() && self.write != Write::None {
            Outcome::Deleted
        } else if !self.merges.is_empty() {
            Outcome::Merged
        } else {
            match self.write {
                Write::Insert => Outcome::Inserted,
                Write::Update => Outcome::Updated,
                Write::None => Outcome::Unchanged,
            }
        }
    }
}

/// The revision policy for one record (pure).
pub(crate) fn plan_record(rec: &EventRecord, stored: &HashMap<String, StoredVersion>) -> Plan {
    let write = match stored.get(&rec.id) {
        None => Write::Insert,
        Some(s) if rec.updated > s.updated => Write::Update,
        Some(s) if rec.updated == s.updated && rec.content_hash != s.content_hash => Write::Update,
        Some(_) => Write::None,
    };
    let merges = if rec.is_deleted() {
        Vec::new()
    } else {
        rec.alias_list()
            .filter(|a| *a != rec.id)
            .filter_map(|a| stored.get(a))
            .filter(|s| s.merged_into.as_deref() != Some(rec.id.as_str()))
            .map(|s| s.id.clone())
            .collect()
    };
    Plan { write, merges }
}

async fn write_in_savepoint(
    db: &mut DbConn<'_>,
    rec: &EventRecord,
    plan: &Plan,
    now: Ts,
) -> QueryResult<()> {
    dispatch!(db, c => c.transaction(async |sp| {
        let mut sp = DbConn::from(sp);
        write_record(&mut sp, rec, plan, now).await
    }).await)
}

/// The per-record statements of a [`Plan`]: the insert or the update, then the merge of the
/// rows it absorbs. Each statement is bound to `$q` and run by `$run`, which the caller
/// writes for its connection (async through [`dispatch!`] here, synchronous in SQLite's
/// blocking closure in [`crate::fast`]), so both paths write exactly the same SQL.
macro_rules! record_writes {
    ($rec:expr, $plan:expr, $now:expr, |$q:ident| $run:expr) => {{
        use crate::schema::earthquakes::dsl as e;
        use diesel::{ExpressionMethods as _, QueryDsl as _};
        let (rec, plan, now): (&EventRecord, &crate::write::Plan, Ts) = ($rec, $plan, $now);
        match plan.write {
            crate::write::Write::Insert => {
                let $q = diesel::insert_into(e::earthquakes).values((
                    rec,
                    e::first_seen_at.eq(now),
                    e::last_changed_at.eq(now),
                ));
                $run?;
            }
            crate::write::Write::Update => {
                let $q = diesel::update(e::earthquakes.find(&rec.id)).set((
                    rec,
                    e::last_changed_at.eq(now),
                    e::merged_into.eq(None::<String>),
                ));
                $run?;
            }
            crate::write::Write::None => {}
        }
        if !plan.merges.is_empty() {
            let $q = diesel::update(e::earthquakes.filter(e::id.eq_any(&plan.merges)))
                .set((e::merged_into.eq(&rec.id), e::last_changed_at.eq(now)));
            $run?;
        }
        Ok(())
    }};
}
pub(crate) use record_writes;

async fn write_record(
    db: &mut DbConn<'_>,
    rec: &EventRecord,
    plan: &Plan,
    now: Ts,
) -> QueryResult<()> {
    record_writes!(rec, plan, now, |q| dispatch!(db, c => q.execute(c).await))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, ids: &str, updated_ms: i64, hash: &str) -> EventRecord {
        let t = chrono::DateTime::from_timestamp_millis(updated_ms).unwrap_or_default();
        EventRecord {
            id: id.into(),
            ids: ids.into(),
            time: Ts(t),
            updated: Ts(t),
            magnitude: None,
            mag_type: None,
            place: None,
            title: None,
            longitude: 0.0,
            latitude: 0.0,
            depth_km: None,
            status: "automatic".into(),
            event_type: None,
            net: None,
            code: None,
            tsunami: None,
            sig: None,
            felt: None,
            alert: None,
            url: None,
            source: "usgs".into(),
            content_hash: hash.into(),
            cdi: None,
            mmi: None,
            gap: None,
            sources: None,
            properties: None,
        }
    }

    fn stored_of(r: &EventRecord) -> StoredVersion {
        StoredVersion {
            id: r.id.clone(),
            updated: r.updated,
            content_hash: r.content_hash.clone(),
            status: r.status.clone(),
            merged_into: None,
        }
    }

    #[test]
    fn policy() {
        let old = rec("a", ",a,", 1000, "h1");
        let mut map = HashMap::new();
        assert_eq!(plan_record(&old, &map).write, Write::Insert);
        map.insert("a".to_string(), stored_of(&old));
        assert!(plan_record(&old, &map).is_noop());
        assert_eq!(
            plan_record(&rec("a", ",a,", 2000, "h1"), &map).write,
            Write::Update
        );
        assert_eq!(
            plan_record(&rec("a", ",a,", 1000, "h2"), &map).write,
            Write::Update
        );
        assert!(plan_record(&rec("a", ",a,", 500, "h2"), &map).is_noop());
        // b lists a as an alias: a is merged into b.
        let b = rec("b", ",a,b,", 3000, "h3");
        let plan = plan_record(&b, &map);
        assert_eq!(plan.write, Write::Insert);
        assert_eq!(plan.merges, vec!["a".to_string()]);
        // an alias that is nobody's primary id merges nothing
        assert!(
            plan_record(&rec("c", ",c,zz,", 3000, "h"), &map)
                .merges
                .is_empty()
        );
    }
}
