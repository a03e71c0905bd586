//! One record at a time: the statements that carry out the [`Decision`] the caller's
//! revision policy made for one incoming record, and the per-record path that runs them in
//! their own SAVEPOINT. The store decides nothing: the policy is a plain function
//! ([`Decide`]) it is handed (sync-engine's `policy::decide`). Both write paths
//! ([`crate::write`] and the fast path of [`crate::fast`]) use these pieces, so they write
//! exactly the same SQL and reach the same outcomes.

use diesel::QueryResult;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, RunQueryDsl};

use crate::changes::{NewChange, changes_of};
use crate::decision::{Decide, Decision, Outcome, StoredRows, Write};
use crate::dispatch;
use crate::models::{EventRecord, StoredVersion};
use crate::pool::DbConn;
use crate::types::Ts;

/// One record by the per-record path: decide, write in its own SAVEPOINT, remember. A
/// refused write is rolled back alone and becomes `Rejected`. The changes a committed write
/// made are appended to `changes`.
pub(crate) async fn apply_one(
    db: &mut DbConn<'_>,
    rec: &EventRecord,
    stored: &mut StoredRows,
    now: Ts,
    decide: Decide,
    changes: &mut Vec<NewChange>,
) -> QueryResult<Outcome> {
    let decision = match decision_or_outcome(rec, stored, decide) {
        Ok(decision) => decision,
        Err(outcome) => return Ok(outcome),
    };
    let written = write_in_savepoint(db, rec, &decision, now).await;
    settle(written, decision, rec, stored, changes)
}

/// The first half of the per-record path: the record's decision, or its outcome when it
/// needs no write (rejected before the database, or unchanged).
pub(crate) fn decision_or_outcome(
    rec: &EventRecord,
    stored: &StoredRows,
    decide: Decide,
) -> Result<Decision, Outcome> {
    let decision = decide(rec, stored);
    if decision.is_noop() {
        Err(decision.outcome)
    } else {
        Ok(decision)
    }
}

/// The second half: the outcome of a write that was rolled back to its savepoint when it
/// failed. A record's own error makes it `Rejected`; a connection error ends the page.
/// The changes of a committed write are appended to `changes`.
pub(crate) fn settle(
    written: QueryResult<()>,
    decision: Decision,
    rec: &EventRecord,
    stored: &mut StoredRows,
    changes: &mut Vec<NewChange>,
) -> QueryResult<Outcome> {
    match written {
        Ok(()) => {
            remember(&decision, rec, stored);
            changes_of(&decision, rec, changes);
            Ok(decision.outcome)
        }
        Err(e) if is_record_error(&e) => Ok(Outcome::Rejected(format!(
            "database refused the record: {e}"
        ))),
        Err(e) => Err(e),
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

/// Keeps the in-memory view of the stored rows in step after a decision's writes
/// committed, so a later record of the same page sees them.
pub(crate) fn remember(decision: &Decision, rec: &EventRecord, stored: &mut StoredRows) {
    if decision.write != Write::None {
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
    for m in &decision.merge {
        if let Some(v) = stored.get_mut(m) {
            v.merged_into = Some(rec.id.clone());
        }
    }
}

async fn write_in_savepoint(
    db: &mut DbConn<'_>,
    rec: &EventRecord,
    decision: &Decision,
    now: Ts,
) -> QueryResult<()> {
    dispatch!(db, c => c.transaction(async |sp| {
        let mut sp = DbConn::from(sp);
        write_record(&mut sp, rec, decision, now).await
    }).await)
}

/// The per-record statements of a [`Decision`]: the insert or the update, then the merge of the
/// rows it absorbs. Each statement is bound to `$q` and run by `$run`, which the caller
/// writes for its connection (async through [`dispatch!`] here, synchronous in SQLite's
/// blocking closure in [`crate::fast`]), so both paths write exactly the same SQL.
macro_rules! record_writes {
    ($rec:expr, $decision:expr, $now:expr, |$q:ident| $run:expr) => {{
        use crate::schema::earthquakes::dsl as e;
        use diesel::{ExpressionMethods as _, QueryDsl as _};
        let (rec, decision, now): (&EventRecord, &crate::decision::Decision, Ts) =
            ($rec, $decision, $now);
        match decision.write {
            crate::decision::Write::Insert => {
                let $q = diesel::insert_into(e::earthquakes).values((
                    rec,
                    e::first_seen_at.eq(now),
                    e::last_changed_at.eq(now),
                ));
                $run?;
            }
            crate::decision::Write::Update => {
                let $q = diesel::update(e::earthquakes.find(&rec.id)).set((
                    rec,
                    e::last_changed_at.eq(now),
                    e::merged_into.eq(None::<String>),
                ));
                $run?;
            }
            crate::decision::Write::None => {}
        }
        if !decision.merge.is_empty() {
            let $q = diesel::update(e::earthquakes.filter(e::id.eq_any(&decision.merge)))
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
    decision: &Decision,
    now: Ts,
) -> QueryResult<()> {
    record_writes!(
        rec,
        decision,
        now,
        |q| dispatch!(db, c => q.execute(c).await)
    )
}
