//! One record at a time: the [`Decision`] the caller's revision policy makes for one
//! incoming record, its statements, and the per-record path that runs them in their own
//! SAVEPOINT. The store carries decisions out and decides nothing: the policy is a plain
//! function ([`Decide`]) it is handed (sync-engine's `policy::decide`). Both write paths
//! ([`crate::write`] and the fast path of [`crate::fast`]) use these pieces, so they write
//! exactly the same SQL and reach the same outcomes.

use std::collections::HashMap;

use diesel::QueryResult;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, RunQueryDsl};

use crate::changes::{NewChange, changes_of};
use crate::dispatch;
use crate::models::{EventRecord, StoredVersion};
use crate::pool::DbConn;
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

/// The row write a [`Decision`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// No write of the record's own row.
    None,
    /// A new row (no row has the record's id).
    Insert,
    /// Every column of the stored row with the record's id; `merged_into` cleared.
    Update,
}

/// What the revision policy decided for one incoming record. The store writes
/// [`Decision::write`], marks the rows of [`Decision::merge`] merged into the record, and
/// counts [`Decision::outcome`] once that commits (a write the database refuses makes the
/// record `Rejected` instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub write: Write,
    /// Stored primary ids to be marked `merged_into` = the record's id.
    pub merge: Vec<String>,
    /// The record's outcome once the writes commit.
    pub outcome: Outcome,
}

impl Decision {
    /// Nothing to write (`Unchanged`, or `Rejected` before the database).
    pub fn is_noop(&self) -> bool {
        self.write == Write::None && self.merge.is_empty()
    }
}

/// The stored rows a page involves (its ids and the ids its events list), by primary id,
/// as the store keeps them in step while it applies the page.
pub type StoredRows = HashMap<String, StoredVersion>;

/// A revision policy: what to do with one incoming record, given the stored rows it
/// involves. A plain function, so either write path can ask it again after a refused
/// write changed what is stored.
pub type Decide = fn(&EventRecord, &StoredRows) -> Decision;

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
        let (rec, decision, now): (&EventRecord, &crate::record::Decision, Ts) =
            ($rec, $decision, $now);
        match decision.write {
            crate::record::Write::Insert => {
                let $q = diesel::insert_into(e::earthquakes).values((
                    rec,
                    e::first_seen_at.eq(now),
                    e::last_changed_at.eq(now),
                ));
                $run?;
            }
            crate::record::Write::Update => {
                let $q = diesel::update(e::earthquakes.find(&rec.id)).set((
                    rec,
                    e::last_changed_at.eq(now),
                    e::merged_into.eq(None::<String>),
                ));
                $run?;
            }
            crate::record::Write::None => {}
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
