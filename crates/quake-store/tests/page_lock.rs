//! The page-write lock across two stores of one SQLite database (as two processes would
//! have): a page transaction that has read its stored rows and then writes is not refused
//! because another store's page committed in between; the other waits for it instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use quake_store::testing::{TestDb, bare_record};
use quake_store::{Decision, StoredRows};
use quake_store::{EventRecord, PageWrite, Store};

/// Set once the first page has read its stored rows; the page waits for [`GO`] to write.
static READ: AtomicBool = AtomicBool::new(false);
static GO: AtomicBool = AtomicBool::new(false);

/// The revision policy, after holding the first page between its read and its write.
fn held_decide(rec: &EventRecord, stored: &StoredRows) -> Decision {
    if rec.id == "held" {
        READ.store(true, Ordering::SeqCst);
        while !GO.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    sync_engine::policy::decide(rec, stored)
}

async fn page(store: &Store, rec: EventRecord) -> Result<(), String> {
    let recs = [rec];
    (store.apply_page(PageWrite::new(&recs), held_decide).await)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_read_first_is_not_refused_because_another_store_wrote_sqlite() {
    let db = TestDb::sqlite();
    let (a, b) = (db.store().await, db.store().await);
    let first = tokio::spawn({
        let a = a.clone();
        async move { page(&a, bare_record("held", ",held,", 1000, "h1", "automatic")).await }
    });
    while !READ.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // The other store writes a page while the first holds its read.
    let second = tokio::spawn(async move {
        page(&b, bare_record("other", ",other,", 1000, "h2", "automatic")).await
    });
    // Give it the chance to commit first (it must not: it waits for the first page).
    tokio::time::sleep(Duration::from_millis(300)).await;
    GO.store(true, Ordering::SeqCst);
    assert_eq!(
        first.await.unwrap(),
        Ok(()),
        "the page that read first commits"
    );
    assert_eq!(
        second.await.unwrap(),
        Ok(()),
        "the other waited, then commits"
    );
    let stored = quake_store::testing::updated_by_id(&a).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
}
