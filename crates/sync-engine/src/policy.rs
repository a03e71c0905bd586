//! The revision policy (SPEC section 3, step 6, and the NUL check of step 4): what to do
//! with one incoming record, given the stored rows it involves. A pure function over
//! values, the only place that decides; quake-store carries its [`Decision`]s out on both
//! write paths (the per-record path and the fast path) and knows no policy.
//!
//! Per incoming record, against the stored row with the same primary id:
//! - a NUL character in a text field: rejected before the database (`Rejected`);
//! - none stored: insert (`Inserted`, or `Deleted` when it arrives deleted);
//! - incoming `updated` newer, or equal with a different content hash (USGS changes
//!   `place`/`title` without touching `updated`): update (`Updated`, or `Deleted` when the
//!   new status is `deleted`); an update also clears the row's `merged_into`;
//! - the same content, or an older `updated`: no write (`Unchanged`);
//! - each id in the incoming `ids` that is the primary id of another stored row (not yet
//!   merged into this one) is marked `merged_into` = the incoming id (`Merged`, unless the
//!   record is also `Deleted`). Only primary ids count: an alias that two events share
//!   merges nothing. A deleted record merges nothing.
//!
//! Each record gets exactly one outcome, so `fetched = inserted + updated + unchanged +
//! deleted + merged + rejected` holds for every page.

use quake_store::EventRecord;
use quake_store::{Decision, Outcome, StoredRows, Write};

/// The decision for `rec`, given `stored`: the stored rows whose primary id is the
/// record's id or one of its `ids`, as they stand after the records before it in the page.
/// Pass this function to [`quake_store::Store::apply_page`].
pub fn decide(rec: &EventRecord, stored: &StoredRows) -> Decision {
    if let Err(reason) = rec.nul_check() {
        return Decision {
            write: Write::None,
            merge: Vec::new(),
            outcome: Outcome::Rejected(reason),
        };
    }
    let write = match stored.get(&rec.id) {
        None => Write::Insert,
        Some(s) if rec.updated > s.updated => Write::Update,
        Some(s) if rec.updated == s.updated && rec.content_hash != s.content_hash => Write::Update,
        Some(_) => Write::None,
    };
    let merge: Vec<String> = if rec.is_deleted() {
        Vec::new()
    } else {
        rec.alias_list()
            .filter(|a| *a != rec.id)
            .filter_map(|a| stored.get(a))
            .filter(|s| s.merged_into.as_deref() != Some(rec.id.as_str()))
            .map(|s| s.id.clone())
            .collect()
    };
    let outcome = if rec.is_deleted() && write != Write::None {
        Outcome::Deleted
    } else if !merge.is_empty() {
        Outcome::Merged
    } else {
        match write {
            Write::Insert => Outcome::Inserted,
            Write::Update => Outcome::Updated,
            Write::None => Outcome::Unchanged,
        }
    };
    Decision {
        write,
        merge,
        outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quake_store::{StoredVersion, Ts};

    fn rec(id: &str, ids: &str, updated_ms: i64, hash: &str, status: &str) -> EventRecord {
        quake_store::testing::bare_record(id, ids, updated_ms, hash, status)
    }

    /// A stored row: `(id, updated in ms, hash, status, merged_into)`.
    type Row = (
        &'static str,
        i64,
        &'static str,
        &'static str,
        Option<&'static str>,
    );

    fn stored(rows: &[Row]) -> StoredRows {
        rows.iter()
            .map(|&(id, updated_ms, hash, status, merged)| {
                let t = Ts(chrono::DateTime::from_timestamp_millis(updated_ms).unwrap_or_default());
                let v = StoredVersion {
                    id: id.into(),
                    updated: t,
                    content_hash: hash.into(),
                    status: status.into(),
                    merged_into: merged.map(str::to_string),
                };
                (id.to_string(), v)
            })
            .collect()
    }

    /// A case: its name, the stored rows, the record, the write, the rows merged, the outcome.
    type Case = (
        &'static str,
        Vec<Row>,
        EventRecord,
        Write,
        Vec<&'static str>,
        Outcome,
    );

    const R: &str = "reviewed";
    const D: &str = "deleted";

    /// Every combination the policy tells apart: the stored row with the record's id (none,
    /// older, same, same time with another hash, newer, deleted, merged elsewhere), the
    /// record deleted or not, and its other ids (none, another stored primary id, one
    /// already merged into it, an alias nobody has as primary id, its own id twice).
    #[test]
    fn decision_table() {
        use Outcome::*;
        use Write::{Insert, None as NoWrite, Update};
        let a_old: Row = ("a", 100, "h1", R, None);
        let b: Row = ("b", 50, "hb", R, None);
        let b_merged_into_a: Row = ("b", 50, "hb", R, Some("a"));
        let b_merged_into_c: Row = ("b", 50, "hb", R, Some("c"));
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            // nothing stored
            ("new", vec![], rec("a", ",a,", 100, "h1", R), Insert, vec![], Inserted),
            ("new deleted", vec![], rec("a", ",a,", 100, "h1", D), Insert, vec![], Deleted),
            ("new, alias nobody's primary id", vec![], rec("a", ",a,zz,", 100, "h1", R), Insert, vec![], Inserted),
            // the same id stored
            ("same content", vec![a_old], rec("a", ",a,", 100, "h1", R), NoWrite, vec![], Unchanged),
            ("older", vec![a_old], rec("a", ",a,", 99, "h2", R), NoWrite, vec![], Unchanged),
            ("older deleted", vec![a_old], rec("a", ",a,", 99, "h2", D), NoWrite, vec![], Unchanged),
            ("newer", vec![a_old], rec("a", ",a,", 101, "h1", R), Update, vec![], Updated),
            ("same time, other hash", vec![a_old], rec("a", ",a,", 100, "h2", R), Update, vec![], Updated),
            ("newer deleted", vec![a_old], rec("a", ",a,", 101, "h2", D), Update, vec![], Deleted),
            ("same time deleted, other hash", vec![a_old], rec("a", ",a,", 100, "h2", D), Update, vec![], Deleted),
            ("same content deleted again", vec![("a", 100, "h1", D, None)], rec("a", ",a,", 100, "h1", D), NoWrite, vec![], Unchanged),
            ("undeleted by a newer revision", vec![("a", 100, "h1", D, None)], rec("a", ",a,", 101, "h2", R), Update, vec![], Updated),
            ("merged row revised", vec![("a", 100, "h1", R, Some("c"))], rec("a", ",a,", 101, "h2", R), Update, vec![], Updated),
            ("merged row, same content", vec![("a", 100, "h1", R, Some("c"))], rec("a", ",a,", 100, "h1", R), NoWrite, vec![], Unchanged),
            // merges
            ("new, absorbs b", vec![b], rec("a", ",a,b,", 100, "h1", R), Insert, vec!["b"], Merged),
            ("update, absorbs b", vec![a_old, b], rec("a", ",a,b,", 101, "h1", R), Update, vec!["b"], Merged),
            ("unchanged, absorbs b", vec![a_old, b], rec("a", ",a,b,", 100, "h1", R), NoWrite, vec!["b"], Merged),
            ("b already merged into a", vec![a_old, b_merged_into_a], rec("a", ",a,b,", 100, "h1", R), NoWrite, vec![], Unchanged),
            ("b merged into c, now into a", vec![a_old, b_merged_into_c], rec("a", ",a,b,", 100, "h1", R), NoWrite, vec!["b"], Merged),
            ("deleted merges nothing", vec![b], rec("a", ",a,b,", 100, "h1", D), Insert, vec![], Deleted),
            ("older, absorbs b", vec![a_old, b], rec("a", ",a,b,", 99, "h1", R), NoWrite, vec!["b"], Merged),
            ("two absorbed, in ids order", vec![("c", 1, "hc", R, None), b], rec("a", ",a,c,b,", 100, "h1", R), Insert, vec!["c", "b"], Merged),
            ("own id twice merges nothing", vec![a_old], rec("a", ",a,a,", 100, "h1", R), NoWrite, vec![], Unchanged),
        ];
        for (name, rows, record, write, merge, outcome) in cases {
            let want = Decision {
                write,
                merge: merge.into_iter().map(str::to_string).collect(),
                outcome,
            };
            assert_eq!(decide(&record, &stored(&rows)), want, "{name}");
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

    /// quake-store's former unit test of its `plan_record`, kept as it was.
    #[test]
    fn policy() {
        let old = rec("a", ",a,", 1000, "h1", "automatic");
        let mut map = StoredRows::new();
        assert_eq!(decide(&old, &map).write, Write::Insert);
        map.insert("a".to_string(), stored_of(&old));
        assert!(decide(&old, &map).is_noop());
        assert_eq!(
            decide(&rec("a", ",a,", 2000, "h1", "automatic"), &map).write,
            Write::Update
        );
        assert_eq!(
            decide(&rec("a", ",a,", 1000, "h2", "automatic"), &map).write,
            Write::Update
        );
        assert!(decide(&rec("a", ",a,", 500, "h2", "automatic"), &map).is_noop());
        // b lists a as an alias: a is merged into b.
        let b = rec("b", ",a,b,", 3000, "h3", "automatic");
        let d = decide(&b, &map);
        assert_eq!(d.write, Write::Insert);
        assert_eq!(d.merge, vec!["a".to_string()]);
        // an alias that is nobody's primary id merges nothing
        assert!(
            decide(&rec("c", ",c,zz,", 3000, "h", "automatic"), &map)
                .merge
                .is_empty()
        );
    }

    #[test]
    fn nul_is_rejected_before_anything_else() {
        let mut r = rec("b", ",a,b,", 100, "h1", R);
        r.place = Some("nul\0place".into());
        let rows = stored(&[("a", 1, "x", R, None)]);
        let d = decide(&r, &rows);
        assert_eq!(d.write, Write::None);
        assert!(d.merge.is_empty());
        assert_eq!(
            d.outcome,
            Outcome::Rejected("NUL character in field `place`".into())
        );
        assert!(d.is_noop());
    }

    /// The whole space of one stored row against one record, checked against the rules as
    /// SPEC words them: exactly one outcome, writes only when newer or same-time-changed.
    #[test]
    fn exhaustive_single_row() {
        for stored_state in [None, Some((100, "h1", R)), Some((100, "h1", D))] {
            for (updated, hash) in [
                (99, "h1"),
                (99, "h2"),
                (100, "h1"),
                (100, "h2"),
                (101, "h1"),
            ] {
                for status in [R, D] {
                    let rows: Vec<Row> = stored_state
                        .map(|(u, h, s)| vec![("a", u, h, s, None)])
                        .unwrap_or_default();
                    let d = decide(&rec("a", ",a,", updated, hash, status), &stored(&rows));
                    let want_write = match stored_state {
                        None => Write::Insert,
                        Some((u, h, _)) if updated > u || (updated == u && hash != h) => {
                            Write::Update
                        }
                        Some(_) => Write::None,
                    };
                    assert_eq!(
                        d.write, want_write,
                        "{stored_state:?} {updated} {hash} {status}"
                    );
                    let want = match (want_write, status == D) {
                        (Write::None, _) => Outcome::Unchanged,
                        (_, true) => Outcome::Deleted,
                        (Write::Insert, false) => Outcome::Inserted,
                        (Write::Update, false) => Outcome::Updated,
                    };
                    assert_eq!(
                        d.outcome, want,
                        "{stored_state:?} {updated} {hash} {status}"
                    );
                    assert!(d.merge.is_empty());
                }
            }
        }
    }
}
