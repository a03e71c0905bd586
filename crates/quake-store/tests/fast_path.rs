//! The fast path and the per-record path are the same function: random pages with
//! duplicates, aliases (merges), revisions, deletions and refused rows, applied both ways
//! to two PostgreSQL databases, leave identical catalogues, outcomes, counts and quarantine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::DateTime;
use proptest::prelude::*;
use quake_store::testing::TestDb;
use quake_store::{Earthquake, EventRecord, Store, Ts};
use quake_store::{PageWrite, WriteMode};
use sync_engine::policy::decide;

const POOL: usize = 12;

#[derive(Debug, Clone)]
struct Gen {
    id: usize,
    aliases: Vec<usize>,
    updated: i64,
    hash: u8,
    deleted: bool,
    bad: u8, // 0 good, 1 latitude out of range (refused by the database), 2 NUL in place
}

fn gen_record() -> impl Strategy<Value = Gen> {
    (
        0..POOL,
        proptest::collection::vec(0..POOL, 0..3),
        0i64..4,
        0u8..3,
        prop::bool::weighted(0.1),
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
    )
        .prop_map(|(id, aliases, updated, hash, deleted, bad)| Gen {
            id,
            aliases,
            updated,
            hash,
            deleted,
            bad,
        })
}

/// Every column gets a value of its own (so two columns swapped in a hand-written statement
/// show), and the optional ones go from Some to None and back between revisions.
fn record(g: &Gen) -> EventRecord {
    let id = format!("e{}", g.id);
    let mut ids: Vec<String> = g.aliases.iter().map(|a| format!("e{a}")).collect();
    ids.push(id.clone());
    ids.sort();
    ids.dedup();
    let t = DateTime::from_timestamp_millis(1_600_000_000_000 + g.updated * 1000).unwrap();
    let h = i32::from(g.hash);
    let some = |s: String| (g.hash != 0).then_some(s);
    EventRecord {
        id,
        ids: format!(",{},", ids.join(",")),
        time: Ts(t - chrono::Duration::hours(1 + i64::from(g.hash))),
        updated: Ts(t),
        magnitude: (g.hash != 1).then_some(f64::from(g.hash)),
        mag_type: some(format!("mt{h}")),
        place: Some(if g.bad == 2 {
            "nul\0place".into()
        } else {
            format!("place {h}")
        }),
        title: some(format!("title {h}")),
        longitude: 10.0 + f64::from(h),
        latitude: if g.bad == 1 {
            200.0
        } else {
            45.0 - f64::from(h)
        },
        depth_km: (g.hash != 2).then_some(5.0 + f64::from(h)),
        status: if g.deleted {
            "deleted".into()
        } else {
            "reviewed".into()
        },
        event_type: some(format!("type{h}")),
        net: some(format!("net{h}")),
        code: some(format!("code{h}")),
        tsunami: (g.hash != 0).then_some(h % 2),
        sig: (g.hash != 0).then_some(100 + h),
        felt: (g.hash != 1).then_some(200 + h),
        alert: some(format!("alert{h}")),
        url: some(format!("https://example.org/{h}")),
        source: format!("src{h}"),
        content_hash: format!("h{}{}", g.hash, g.deleted),
        cdi: (g.hash != 1).then_some(3.5 + f64::from(h)),
        mmi: (g.hash != 2).then_some(4.25 + f64::from(h)),
        gap: (g.hash != 0).then_some(90.0 + f64::from(h)),
        sources: some(format!(",net{h},xx,")),
        properties: some(format!(
            r#"{{"mag":{h},"nst":{},"dmin":0.5,"new":"p{h}"}}"#,
            10 + h
        )),
    }
}

/// Every stored column of every row, and the quarantine. `first_seen_at` and
/// `last_changed_at` are the wall-clock time of the page that wrote them, different in the two
/// databases: they are replaced by their rank among all such times of the database (the same
/// pages in the same order write them, so the ranks agree when the paths do).
async fn snapshot(store: &Store) -> (Vec<Earthquake>, Vec<(Option<String>, String)>) {
    let mut rows = store.all_events().await.unwrap();
    let times: std::collections::BTreeSet<Ts> = rows
        .iter()
        .flat_map(|e| [e.first_seen_at, e.last_changed_at])
        .collect();
    let rank = |t: Ts| {
        let r = times.iter().position(|x| *x == t).unwrap() as i64;
        Ts(DateTime::from_timestamp_millis(r).unwrap())
    };
    for e in &mut rows {
        e.first_seen_at = rank(e.first_seen_at);
        e.last_changed_at = rank(e.last_changed_at);
    }
    let rejected = store
        .rejected_records(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.source_id, r.reason))
        .collect();
    (rows, rejected)
}

async fn truncate(store: &Store) {
    use diesel_async::SimpleAsyncConnection;
    let mut conn = store.conn().await.unwrap();
    let sql = "DELETE FROM earthquakes; DELETE FROM rejected_records;";
    match conn.db() {
        quake_store::DbConn::Pg(c) => c.batch_execute(sql).await.unwrap(),
        quake_store::DbConn::Sqlite(c) => c.batch_execute(sql).await.unwrap(),
    }
}

#[test]
fn fast_path_equals_per_record_path() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some((db1, db2)) = rt.block_on(async {
        let a = TestDb::postgres("fast_path_equals_per_record_path").await?;
        let b = TestDb::postgres("fast_path_equals_per_record_path").await?;
        Some((a, b))
    }) else {
        return;
    };
    let (reference, fast) = rt.block_on(async { (db1.store().await, db2.store().await) });
    check_equivalence(&rt, &reference, &fast);
}

#[test]
fn sqlite_blocking_path_equals_per_record_path() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (db1, db2) = (TestDb::sqlite(), TestDb::sqlite());
    let (reference, fast) = rt.block_on(async { (db1.store().await, db2.store().await) });
    check_equivalence(&rt, &reference, &fast);
}

fn check_equivalence(rt: &tokio::runtime::Runtime, reference: &Store, fast: &Store) {
    let config = ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let pages = proptest::collection::vec(proptest::collection::vec(gen_record(), 1..40), 1..4);
    proptest!(config, |(pages in pages)| {
        rt.block_on(async {
            truncate(reference).await;
            truncate(fast).await;
            for page in &pages {
                let recs: Vec<EventRecord> = page.iter().map(record).collect();
                let per_record = PageWrite::new(&recs).mode(WriteMode::PerRecord);
                let r1 = reference.apply_page(per_record, decide).await.unwrap();
                let r2 = fast.apply_page(PageWrite::new(&recs), decide).await.unwrap();
                assert_eq!(r1.outcomes, r2.outcomes, "outcomes differ for {page:?}");
                assert_eq!(r1.counts, r2.counts);
            }
            assert_eq!(snapshot(reference).await, snapshot(fast).await, "catalogues differ for {pages:?}");
        });
    });
}
