//! The change log (`event_changes`) on both backends: every committed insert, update,
//! deletion and merge is one row, in commit order, on both write paths; nothing for an
//! unchanged or rejected record; the subscription wakes after a commit; retention.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use quake_store::both_backends;
use quake_store::testing::{TestDb, bare_record};
use quake_store::{self, Change};
use quake_store::{ChangeKind, EventRecord, Store, Ts};
use quake_store::{PageWrite, WriteMode};
use sync_engine::policy::decide;

fn rec(id: &str, ids: &str, updated: i64, hash: &str, status: &str) -> EventRecord {
    bare_record(id, ids, updated, hash, status)
}

async fn apply(store: &Store, recs: &[EventRecord], mode: WriteMode) {
    let page = PageWrite::new(recs).mode(mode);
    store.apply_page(page, decide).await.unwrap();
}

async fn all(store: &Store, after: i64) -> Vec<Change> {
    store.read_changes(after, 1000).await.unwrap()
}

fn summary(c: &[Change]) -> Vec<(String, ChangeKind, Option<String>)> {
    c.iter()
        .map(|c| (c.event_id.clone(), c.kind, c.merged_into.clone()))
        .collect()
}

async fn each_kind_in_commit_order(db: TestDb, mode: WriteMode) {
    let store = db.store().await;
    let mut rx = store.changes();
    let (i, u, d, m) = (
        ChangeKind::Insert,
        ChangeKind::Update,
        ChangeKind::Delete,
        ChangeKind::Merge,
    );
    // A page of new events (enough for the fast path's chunks), one of them already deleted.
    let mut page: Vec<EventRecord> = (0..10)
        .map(|n| rec(&format!("a{n}"), &format!(",a{n},"), 1000, "h", "reviewed"))
        .collect();
    page.push(rec("gone", ",gone,", 1000, "h", "deleted"));
    apply(&store, &page, mode).await;
    let first = all(&store, 0).await;
    let mut want: Vec<_> = (0..10).map(|n| (format!("a{n}"), i, None)).collect();
    want.push(("gone".into(), d, None));
    assert_eq!(summary(&first), want);
    assert!(first.windows(2).all(|w| w[0].seq < w[1].seq));
    let head = first.last().unwrap().seq;
    // The subscription hears of it.
    tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|s| *s >= head))
        .await
        .expect("the subscription saw the commit")
        .unwrap();
    assert_eq!(first[0].row.as_ref().map(|r| r.id.as_str()), Some("a0"));

    // The same page again: nothing changed, no row.
    apply(&store, &page, mode).await;
    assert!(all(&store, head).await.is_empty());

    // An update, a deletion, a merge (b absorbs a1 and a2), an unchanged record.
    let page2 = vec![
        rec("a3", ",a3,", 2000, "h2", "reviewed"),
        rec("a4", ",a4,", 2000, "h2", "deleted"),
        rec("b", ",a1,a2,b,", 2000, "hb", "reviewed"),
        rec("a5", ",a5,", 1000, "h", "reviewed"),
    ];
    apply(&store, &page2, mode).await;
    let second = all(&store, head).await;
    assert_eq!(
        summary(&second),
        vec![
            ("a3".into(), u, None),
            ("a4".into(), d, None),
            ("b".into(), i, None),
            ("a1".into(), m, Some("b".into())),
            ("a2".into(), m, Some("b".into())),
        ]
    );
    assert!(second[0].seq > head);
    let merged = second[3].row.as_ref().unwrap();
    assert_eq!(merged.merged_into.as_deref(), Some("b"));

    // Resuming from the middle gives the rest exactly.
    assert_eq!(
        summary(&all(&store, second[1].seq).await),
        summary(&second[2..])
    );

    // Retention: everything committed before now goes; the horizon says how far.
    let last = second.last().unwrap().seq;
    let h = store.change_horizon().await.unwrap();
    assert_eq!((h.head, h.pruned_through), (last, 0));
    let future = Ts(chrono::Utc::now() + chrono::Duration::hours(1));
    let pruned = store.prune_changes(future).await.unwrap();
    assert_eq!(pruned, first.len() + second.len());
    let h = store.change_horizon().await.unwrap();
    assert_eq!((h.head, h.pruned_through), (last, last));
    // A seq is never reused after pruning.
    apply(&store, &[rec("c", ",c,", 3000, "hc", "reviewed")], mode).await;
    let third = all(&store, 0).await;
    assert_eq!(summary(&third), vec![("c".into(), i, None)]);
    assert!(third[0].seq > last);
}

both_backends!(fast_path_writes_each_change, async |db: TestDb| {
    each_kind_in_commit_order(db, WriteMode::Auto).await;
});

both_backends!(per_record_path_writes_each_change, async |db: TestDb| {
    each_kind_in_commit_order(db, WriteMode::PerRecord).await;
});

both_backends!(a_refused_record_writes_no_change, async |db: TestDb| {
    let store = db.store().await;
    let mut bad = rec("bad", ",bad,", 1000, "h", "reviewed");
    bad.latitude = 95.0; // refused by the table's CHECK
    let mut page: Vec<EventRecord> = (0..8)
        .map(|n| {
            rec(
                &format!("ok{n}"),
                &format!(",ok{n},"),
                1000,
                "h",
                "reviewed",
            )
        })
        .collect();
    page.insert(3, bad);
    apply(&store, &page, WriteMode::Auto).await;
    let got = all(&store, 0).await;
    let ids: Vec<&str> = got.iter().map(|c| c.event_id.as_str()).collect();
    assert_eq!(
        ids,
        vec!["ok0", "ok1", "ok2", "ok3", "ok4", "ok5", "ok6", "ok7"]
    );
});

both_backends!(
    a_subscription_after_the_last_one_dropped_still_wakes,
    async |db: TestDb| {
        let store = db.store().await;
        // Every subscription goes away, and the task has time to notice.
        drop(store.changes());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut rx = store.changes();
        apply(
            &store,
            &[rec("w", ",w,", 1000, "h", "reviewed")],
            WriteMode::Auto,
        )
        .await;
        let head = all(&store, 0).await.last().unwrap().seq;
        // Woken by the commit: sooner than SQLite's 2 s poll (PostgreSQL has no poll but its
        // 15 s check).
        tokio::time::timeout(Duration::from_millis(1500), rx.wait_for(|s| *s >= head))
            .await
            .expect("the new subscription saw the commit")
            .unwrap();
    }
);
