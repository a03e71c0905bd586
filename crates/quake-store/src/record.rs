//! One record at a time: the plan of the revision policy for one incoming record, its
//! statements, and the per-record path that runs them in their own SAVEPOINT. Both write
//! paths ([`crate::write`] and the fast path of [`crate::fast`]) use these pieces, so they
//! write exactly the same SQL and reach the same outcomes.

use std::collections::HashMap;

use diesel::QueryResult;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::{AsyncConnection, RunQueryDsl};

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
        let (rec, plan, now): (&EventRecord, &crate::record::Plan, Ts) = ($rec, $plan, $now);
        match plan.write {
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
