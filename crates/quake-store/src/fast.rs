//! The fast paths of [`crate::write::apply_page`]: PostgreSQL below, SQLite at the end.
//!
//! A chunk of records is decided in memory by the policy handed in, in order, exactly as
//! the per-record path would see them (so duplicates, outcomes and counts are the same), then written with one
//! plain `INSERT … SELECT FROM unnest(…)` for its new rows, one `UPDATE … FROM unnest(…)`
//! for its changed rows and one merge `UPDATE … FROM unnest(…)`, inside a SAVEPOINT (the
//! plan already knows which ids are stored, so no `ON CONFLICT` arbiter is paid for). When that fails on a record's data, the savepoint is
//! rolled back and the chunk is bisected; chunks of at most [`SMALL`] records take the
//! per-record path, so a bad row costs only itself. Chunks are processed in order, and the
//! in-memory view of the stored rows is updated only by what committed.
//!
//! Each chunk writes each id at most once: a second write to an id (a duplicate in the
//! page), or a write to a row an earlier record of the chunk merged, splits the chunk at
//! that record. Collapsing the two writes into one would hide a bad first copy from the
//! database's checks and lose the order the per-record path keeps.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel::sql_types::{Array, Double, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::changes::{NewChange, changes_of};
use crate::decision::{Decide, Decision, Outcome, StoredRows, Write};
use crate::models::EventRecord;
use crate::pool::DbConn;
use crate::record::{apply_one, decision_or_outcome, is_record_error, remember, settle};
use crate::types::Ts;

/// Chunks this small go record by record.
pub(crate) const SMALL: usize = 4;

enum Attempt {
    Done(Vec<Outcome>),
    /// A record's data was refused: bisect.
    Refused,
    /// The record at this index writes a row the chunk already wrote or merged.
    SplitAt(usize),
}

/// Applies `recs` in order, appending one outcome per record to `out`.
pub(crate) async fn apply_chunk(
    conn: &mut AsyncPgConnection,
    recs: &[EventRecord],
    stored: &mut StoredRows,
    now: Ts,
    out: &mut Vec<Outcome>,
    decide: Decide,
    changes: &mut Vec<NewChange>,
) -> QueryResult<()> {
    let mut work: VecDeque<&[EventRecord]> = VecDeque::from([recs]);
    while let Some(chunk) = work.pop_front() {
        if chunk.len() > SMALL {
            let (left, right) = match attempt(conn, chunk, stored, now, decide, changes).await? {
                Attempt::Done(outcomes) => {
                    out.extend(outcomes);
                    continue;
                }
                Attempt::Refused => chunk.split_at(chunk.len() / 2),
                Attempt::SplitAt(i) => chunk.split_at(i),
            };
            work.push_front(right);
            work.push_front(left);
            continue;
        }
        let mut db = DbConn::from(&mut *conn);
        for rec in chunk {
            out.push(apply_one(&mut db, rec, stored, now, decide, changes).await?);
        }
    }
    Ok(())
}

async fn attempt(
    conn: &mut AsyncPgConnection,
    chunk: &[EventRecord],
    stored: &mut StoredRows,
    now: Ts,
    decide: Decide,
    changes: &mut Vec<NewChange>,
) -> QueryResult<Attempt> {
    let mut sim = stored.clone();
    let mut made: Vec<NewChange> = Vec::new();
    let mut outcomes = Vec::with_capacity(chunk.len());
    let mut written: HashSet<&str> = HashSet::new();
    let mut inserts: Vec<&EventRecord> = Vec::new();
    let mut updates: Vec<&EventRecord> = Vec::new();
    let mut merges: HashMap<String, String> = HashMap::new();
    for (i, rec) in chunk.iter().enumerate() {
        let decision = match decision_or_outcome(rec, &sim, decide) {
            Ok(decision) => decision,
            Err(outcome) => {
                outcomes.push(outcome);
                continue;
            }
        };
        if decision.write != Write::None {
            if written.contains(rec.id.as_str()) || merges.contains_key(&rec.id) {
                // i > 0: the earlier write or merge is in this chunk
                return Ok(Attempt::SplitAt(i));
            }
            written.insert(rec.id.as_str());
            match decision.write {
                Write::Insert => inserts.push(rec),
                _ => updates.push(rec),
            }
        }
        for m in &decision.merge {
            merges.insert(m.clone(), rec.id.clone());
        }
        remember(&decision, rec, &mut sim);
        changes_of(&decision, rec, &mut made);
        outcomes.push(decision.outcome);
    }
    if inserts.is_empty() && updates.is_empty() && merges.is_empty() {
        *stored = sim;
        return Ok(Attempt::Done(outcomes));
    }
    let written = conn
        .transaction(async |sp| {
            insert(sp, &inserts, now).await?;
            update(sp, &updates, now).await?;
            merge(sp, &merges, now).await
        })
        .await;
    match written {
        Ok(()) => {
            *stored = sim;
            changes.append(&mut made);
            Ok(Attempt::Done(outcomes))
        }
        Err(e) if is_record_error(&e) => Ok(Attempt::Refused),
        Err(e) => Err(e),
    }
}

/// The record columns as 27 arrays: `$1`…`$27`, in the order of [`COLUMNS`].
const UNNEST: &str = "unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], \
     $5::float8[], $6::text[], $7::text[], $8::text[], $9::float8[], $10::float8[], $11::float8[], \
     $12::text[], $13::text[], $14::text[], $15::text[], $16::int4[], $17::int4[], $18::int4[], \
     $19::text[], $20::text[], $21::text[], $22::text[], $23::float8[], $24::float8[], \
     $25::float8[], $26::text[], $27::text[])";

const COLUMNS: &str = "id, ids, time, updated, magnitude, mag_type, place, title, longitude, \
     latitude, depth_km, status, event_type, net, code, tsunami, sig, felt, alert, url, source, \
     content_hash, cdi, mmi, gap, sources, properties";

/// The bind number of `now` in [`INSERT_SQL`] and [`UPDATE_SQL`].
const NOW: &str = "$28";

/// New rows: a plain INSERT (the plan knows no stored row has these ids, so no conflict
/// arbiter is needed; a row another writer inserted meanwhile is refused like bad data).
static INSERT_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO earthquakes ({COLUMNS}, first_seen_at, last_changed_at, merged_into) \
         SELECT u.*, {NOW}, {NOW}, NULL FROM {UNNEST} AS u({COLUMNS})"
    )
});

/// Changed rows: every record column, `last_changed_at`, and `merged_into` cleared, as the
/// per-record path's UPDATE; `first_seen_at` is kept.
static UPDATE_SQL: LazyLock<String> = LazyLock::new(|| {
    let set: Vec<String> = COLUMNS
        .split(", ")
        .filter(|c| *c != "id")
        .map(|c| format!("{c} = u.{c}"))
        .collect();
    format!(
        "UPDATE earthquakes e SET {}, last_changed_at = {NOW}, merged_into = NULL \
         FROM {UNNEST} AS u({COLUMNS}) WHERE e.id = u.id",
        set.join(", ")
    )
});

fn col<'r, T, F: Fn(&'r EventRecord) -> T>(rows: &[&'r EventRecord], f: F) -> Vec<T> {
    rows.iter().map(|r| f(r)).collect()
}

async fn insert(conn: &mut AsyncPgConnection, rows: &[&EventRecord], now: Ts) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    columns(&INSERT_SQL, conn, rows, now).await
}

async fn update(conn: &mut AsyncPgConnection, rows: &[&EventRecord], now: Ts) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    columns(&UPDATE_SQL, conn, rows, now).await
}

/// Runs `sql` with the rows' columns bound as arrays (borrowed, not copied) and `now` as [`NOW`].
async fn columns(
    sql: &str,
    conn: &mut AsyncPgConnection,
    rows: &[&EventRecord],
    now: Ts,
) -> QueryResult<()> {
    let ts = |t: Ts| -> DateTime<Utc> { t.0 };
    diesel::sql_query(sql)
        .bind::<Array<Text>, _>(col(rows, |r| r.id.as_str()))
        .bind::<Array<Text>, _>(col(rows, |r| r.ids.as_str()))
        .bind::<Array<Timestamptz>, _>(col(rows, |r| ts(r.time)))
        .bind::<Array<Timestamptz>, _>(col(rows, |r| ts(r.updated)))
        .bind::<Array<Nullable<Double>>, _>(col(rows, |r| r.magnitude))
        .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.mag_type.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.place.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.title.as_deref()))
        .bind::<Array<Double>, _>(col(rows, |r| r.longitude))
        .bind::<Array<Double>, _>(col(rows, |r| r.latitude))
        .bind::<Array<Nullable<Double>>, _>(col(rows, |r| r.depth_km))
        .bind::<Array<Text>, _>(col(rows, |r| r.status.as_str()))
        .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.event_type.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.net.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.code.as_deref()))
        .bind::<Array<Nullable<Integer>>, _>(col(rows, |r| r.tsunami))
        .bind::<Array<Nullable<Integer>>, _>(col(rows, |r| r.sig))
        .bind::<Array<Nullable<Integer>>, _>(col(rows, |r| r.felt))
        .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.alert.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.url.as_deref()))
        .bind::<Array<Text>, _>(col(rows, |r| r.source.as_str()))
        .bind::<Array<Text>, _>(col(rows, |r| r.content_hash.as_str()))
        .bind::<Array<Nullable<Double>>, _>(col(rows, |r| r.cdi))
        .bind::<Array<Nullable<Double>>, _>(col(rows, |r| r.mmi))
        .bind::<Array<Nullable<Double>>, _>(col(rows, |r| r.gap))
        .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.sources.as_deref()))
        .bind::<Array<Nullable<Text>>, _>(col(rows, |r| r.properties.as_deref()))
        .bind::<Timestamptz, _>(now.0)
        .execute(conn)
        .await?;
    Ok(())
}

async fn merge(
    conn: &mut AsyncPgConnection,
    merges: &HashMap<String, String>,
    now: Ts,
) -> QueryResult<()> {
    if merges.is_empty() {
        return Ok(());
    }
    let (old, new): (Vec<String>, Vec<String>) =
        merges.iter().map(|(o, n)| (o.clone(), n.clone())).unzip();
    diesel::sql_query(
        "UPDATE earthquakes e SET merged_into = m.new_id, last_changed_at = $3 \
         FROM unnest($1::text[], $2::text[]) AS m(old_id, new_id) WHERE e.id = m.old_id",
    )
    .bind::<Array<Text>, _>(old)
    .bind::<Array<Text>, _>(new)
    .bind::<Timestamptz, _>(now.0)
    .execute(conn)
    .await?;
    Ok(())
}

/// The SQLite fast path: every record of the page in one blocking closure on the underlying
/// `SqliteConnection` (one hop to the blocking pool per page instead of one per statement),
/// each record's writes between `SAVEPOINT` and `RELEASE`, rolled back alone when refused.
/// Each record is decided by the policy handed in, as on the per-record path; the outer transaction is the caller's.
/// Returns the outcomes and the changes the committed writes made.
pub(crate) async fn apply_sqlite_blocking(
    conn: &mut crate::pool::SqliteConn,
    records: Vec<EventRecord>,
    stored: StoredRows,
    now: Ts,
    decide: Decide,
) -> QueryResult<(Vec<Outcome>, Vec<NewChange>)> {
    conn.spawn_blocking(move |c| {
        let mut stored = stored;
        let mut changes = Vec::new();
        let outcomes = records
            .iter()
            .map(|rec| sqlite_one(c, rec, &mut stored, now, decide, &mut changes))
            .collect::<QueryResult<Vec<Outcome>>>()?;
        Ok((outcomes, changes))
    })
    .await
}

fn sqlite_one(
    c: &mut diesel::SqliteConnection,
    rec: &EventRecord,
    stored: &mut StoredRows,
    now: Ts,
    decide: Decide,
    changes: &mut Vec<NewChange>,
) -> QueryResult<Outcome> {
    use diesel::connection::SimpleConnection;
    let decision = match decision_or_outcome(rec, stored, decide) {
        Ok(decision) => decision,
        Err(outcome) => return Ok(outcome),
    };
    c.batch_execute("SAVEPOINT quakesync_record")?;
    let written = sqlite_write(c, rec, &decision, now);
    let end = if written.is_ok() {
        "RELEASE quakesync_record"
    } else {
        "ROLLBACK TO quakesync_record; RELEASE quakesync_record"
    };
    c.batch_execute(end)?;
    settle(written, decision, rec, stored, changes)
}

/// The statements of [`crate::record`]'s per-record path, run synchronously.
fn sqlite_write(
    c: &mut diesel::SqliteConnection,
    rec: &EventRecord,
    decision: &Decision,
    now: Ts,
) -> QueryResult<()> {
    crate::record::record_writes!(rec, decision, now, |q| diesel::RunQueryDsl::execute(q, c))
}
