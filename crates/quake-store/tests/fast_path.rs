//! The fast path and the per-record path are the same function: random pages with
//! duplicates, aliases (merges), revisions, deletions and refused rows, applied both ways
//! to two PostgreSQL databases, leave identical catalogues, outcomes, counts and quarantine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::DateTime;
use proptest::prelude::*;
use quake_store::testing::TestDb;
use quake_store::write::{WriteMode, apply_page_with};
use quake_store::{EventRecord, Store, Ts, read};

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

fn record(g: &Gen) -> EventRecord {
    let id = format!("e{}", g.id);
    let mut ids: Vec<String> = g.aliases.iter().map(|a| format!("e{a}")).collect();
    ids.push(id.clone());
    ids.sort();
    ids.dedup();
    let t = DateTime::from_timestamp_millis(1_600_000_000_000 + g.updated * 1000).unwrap();
    EventRecord {
        id,
        ids: format!(",{},", ids.join(",")),
        time: Ts(t),
        updated: Ts(t),
        magnitude: Some(f64::from(g.hash)),
        mag_type: None,
        place: Some(if g.bad == 2 {
            "nul\0place".into()
        } else {
            format!("place {}", g.hash)
        }),
        title: None,
        longitude: 10.0,
        latitude: if g.bad == 1 { 200.0 } else { 45.0 },
        depth_km: Some(5.0),
        status: if g.deleted {
            "deleted".into()
        } else {
            "reviewed".into()
        },
        event_type: Some("earthquake".into()),
        net: None,
        code: None,
        tsunami: None,
        sig: None,
        felt: None,
        alert: None,
        url: None,
        source: "usgs".into(),
        content_hash: format!("h{}{}", g.hash, g.deleted),
    }
}

type Row = (
    String,
    String,
    i64,
    Option<f64>,
    Option<String>,
    f64,
    String,
    String,
    Option<String>,
);

async fn snapshot(store: &Store) -> (Vec<Row>, Vec<(Option<String>, String)>) {
    let mut conn = store.conn().await.unwrap();
    let rows = read::all_events(&mut conn.db())
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                e.id,
                e.ids,
                e.updated.0.timestamp_millis(),
                e.magnitude,
                e.place,
                e.latitude,
                e.status,
                e.content_hash,
                e.merged_into,
            )
        })
        .collect();
    let rejected = read::rejected_records(&mut conn.db(), None)
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
                let mut c1 = reference.conn().await.unwrap();
                let r1 = apply_page_with(&mut c1.db(), None, &recs, &[], WriteMode::PerRecord).await.unwrap();
                let mut c2 = fast.conn().await.unwrap();
                let r2 = apply_page_with(&mut c2.db(), None, &recs, &[], WriteMode::Auto).await.unwrap();
                assert_eq!(r1.outcomes, r2.outcomes, "outcomes differ for {page:?}");
                assert_eq!(r1.counts, r2.counts);
            }
            assert_eq!(snapshot(reference).await, snapshot(fast).await, "catalogues differ for {pages:?}");
        });
    });
}
