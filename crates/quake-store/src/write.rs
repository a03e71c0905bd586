//! The write path: one page in one transaction, a SAVEPOINT per record.
//!
//! The store loads the stored rows a page involves, asks the revision policy it is handed
//! (a [`Decide`] function: sync-engine's `policy::decide`, SPEC section 3 step 6) what to
//! do with each record in order, and carries the [`Decision`]s out; it decides nothing.
//!
//! Each record gets exactly one outcome, so `fetched = inserted + updated + unchanged +
//! deleted + merged + rejected` holds for every page.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};

use crate::backfill::WindowDone;
use crate::decision::{Decide, Outcome, StoredRows};
use crate::dispatch;
use crate::live::LiveBatch;
use crate::models::{EventRecord, NewRejected, RunCounts, StoredVersion};
use crate::pool::DbConn;
use crate::record::apply_one;
use crate::schema::{earthquakes, rejected_records};
use crate::types::Ts;

/// What applying a page did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageResult {
    /// `(record id, outcome)` in input order.
    pub outcomes: Vec<(String, Outcome)>,
    /// Counts of this page, rejected records passed in included; `pages` = 1.
    pub counts: RunCounts,
}

/// Largest `IN (…)` list sent at once (SQLite and PostgreSQL bind limits).
const LOOKUP_CHUNK: usize = 1000;

/// Loads what the revision policy needs of the rows whose primary id is in `ids`.
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

/// How [`PageWrite`] writes the records of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// The fast path of each backend. PostgreSQL: one `UNNEST` insert and one `UNNEST` update per chunk, bisected
    /// down to per-record savepoints around refused rows. SQLite: the whole page in one
    /// blocking closure on the connection, a SAVEPOINT per record, no task hop per statement.
    #[default]
    Auto,
    /// A SAVEPOINT and a statement per record (the seed's design; the reference the fast
    /// path is tested against).
    PerRecord,
}

/// One page to apply with [`Store::apply_page`](crate::Store::apply_page): its records,
/// the records refused before the database, the run it belongs to, and what its
/// transaction writes beside it (at most one: a backfill window marked done, or a live
/// batch's counts; the last one set wins).
#[derive(Debug, Clone, Copy)]
pub struct PageWrite<'a> {
    pub(crate) records: &'a [EventRecord],
    pub(crate) rejected: &'a [NewRejected],
    pub(crate) run_id: Option<i64>,
    pub(crate) beside: Beside<'a>,
    pub(crate) mode: WriteMode,
}

/// What a page transaction writes beside the page.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Beside<'a> {
    Nothing,
    /// A backfill window done (its last page).
    WindowDone(&'a WindowDone),
    /// A live batch's counts, when it wrote something.
    LiveBatch(&'a LiveBatch<'a>),
}

impl<'a> PageWrite<'a> {
    /// A page of `records`, of no run, with nothing beside it, in [`WriteMode::Auto`].
    pub fn new(records: &'a [EventRecord]) -> PageWrite<'a> {
        PageWrite {
            records,
            rejected: &[],
            run_id: None,
            beside: Beside::Nothing,
            mode: WriteMode::Auto,
        }
    }

    /// Records refused before the database (by validation): quarantined as they are, and
    /// counted as `rejected`.
    pub fn rejected(self, rejected: &'a [NewRejected]) -> PageWrite<'a> {
        PageWrite { rejected, ..self }
    }

    /// The run the page belongs to: its row gets the page's counts, its rejected records
    /// its id.
    pub fn of_run(self, run_id: i64) -> PageWrite<'a> {
        PageWrite {
            run_id: Some(run_id),
            ..self
        }
    }

    /// The last page of a backfill window: the window is marked done in the page's
    /// transaction.
    pub fn window_done(self, done: &'a WindowDone) -> PageWrite<'a> {
        PageWrite {
            beside: Beside::WindowDone(done),
            ..self
        }
    }

    /// A live lane batch: when it wrote something (a record inserted, updated, deleted,
    /// merged or rejected), its source's `live_lane` row gets it, in the page's
    /// transaction; a batch that brought nothing new leaves the database as it was.
    pub fn live_batch(self, batch: &'a LiveBatch<'a>) -> PageWrite<'a> {
        PageWrite {
            beside: Beside::LiveBatch(batch),
            ..self
        }
    }

    /// How the records are written (both modes give the same catalogue, outcomes and
    /// counts).
    pub fn mode(self, mode: WriteMode) -> PageWrite<'a> {
        PageWrite { mode, ..self }
    }
}

/// Applies one page in one transaction that first takes the page-write lock
/// ([`crate::lock::page_write_lock`], so no two pages are ever applied at once, whichever
/// lane or process writes them): the records as `decide` (the revision policy) says, each
/// costing only itself when the database refuses it (a SAVEPOINT per record, or the fast
/// path's bisection down to one) and then quarantined; `rejected` quarantined as it is; the
/// run row, when given, gets the page's counts; the change log gets the page's changes;
/// then what goes beside the page. Either all of it commits or none. After the commit,
/// this process's event stream is woken.
pub(crate) async fn apply(
    conn: &mut DbConn<'_>,
    page: &PageWrite<'_>,
    decide: Decide,
) -> QueryResult<PageResult> {
    let backend = conn.backend();
    let result = dispatch!(conn, c => c.transaction(async |tx| {
        let mut db = DbConn::from(tx);
        crate::lock::page_write_lock(&mut db).await?;
        let result = apply_page_in_tx(&mut db, page, decide).await?;
        match page.beside {
            Beside::Nothing => {}
            Beside::WindowDone(d) => {
                crate::backfill::mark_done(&mut db, d).await?;
            }
            Beside::LiveBatch(b) => {
                let k = &result.counts;
                if k.changed() || k.rejected > 0 {
                    crate::live::add_batch(&mut db, b, k).await?;
                }
            }
        }
        Ok(result)
    }).await);
    // Committed (or rolled back) now: wake this process's event stream (SQLite; PostgreSQL
    // notifies).
    crate::changes::committed(backend);
    result
}

async fn apply_page_in_tx(
    db: &mut DbConn<'_>,
    page: &PageWrite<'_>,
    decide: Decide,
) -> QueryResult<PageResult> {
    let PageWrite {
        records,
        rejected,
        run_id,
        mode,
        ..
    } = *page;
    let now = Ts::now();
    let mut wanted: Vec<&str> = records
        .iter()
        .flat_map(|r| r.alias_list().chain([r.id.as_str()]))
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut stored: StoredRows = load_versions(db, &wanted)
        .await?
        .into_iter()
        .map(|v| (v.id.clone(), v))
        .collect();

    let mut outcomes = Vec::with_capacity(records.len());
    let mut changes = Vec::new();
    match (mode, &mut *db) {
        (WriteMode::Auto, DbConn::Pg(c)) => {
            let out = &mut outcomes;
            crate::fast::apply_chunk(c, records, &mut stored, now, out, decide, &mut changes)
                .await?;
        }
        (WriteMode::Auto, DbConn::Sqlite(c)) => {
            (outcomes, changes) =
                crate::fast::apply_sqlite_blocking(c, records.to_vec(), stored, now, decide)
                    .await?;
        }
        (WriteMode::PerRecord, _) => {
            for rec in records {
                let o = apply_one(db, rec, &mut stored, now, decide, &mut changes).await?;
                outcomes.push(o);
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
    // Last: on PostgreSQL this takes the change-log lock, held until the page commits.
    crate::changes::record_changes(db, &changes, now).await?;
    Ok(result)
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
