//! Fetching ahead of the write: the next page is fetched, parsed and converted while the
//! current one is written, with at most one page waiting (memory stays bounded by two
//! pages: the one being written and the one fetched ahead).
//!
//! The fetch side is a task of its own (so parsing runs on another core than the write's
//! client side) that hands [`Fetched`] pages to the writer through a channel of capacity
//! one. It takes a slot ([`Feed::slot`]) *before* it sends the request, so a page is asked
//! only once the writer has taken the page before it: the upstream never runs more than one
//! page ahead of the database. Everything the database sees is written by the writer, in
//! the order the fetch side produced it; the fetch side only reads the upstream and counts
//! its requests.
//!
//! An error of the fetch side (the upstream, a paging check) goes through the same channel
//! after the pages fetched before it, so the writer commits those pages first and then ends
//! the run, as the serial loop did. When the writer stops (a failed write, a shutdown, a
//! lost lock), [`Ahead`] is dropped and the fetch task is aborted: a page fetched ahead is
//! dropped unwritten and an upstream request in flight is abandoned.

use std::future::Future;

use quake_store::{EventRecord, NewRejected};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::record::{into_record, to_rejected};

/// A page ready to be written: its records converted (content hashes computed) on the
/// fetch side.
pub(crate) struct Fetched {
    pub(crate) records: Vec<EventRecord>,
    pub(crate) rejected: Vec<NewRejected>,
}

impl Fetched {
    /// Converts a parsed page for run `run_id`.
    pub(crate) fn convert(page: quake_api::Page, run_id: i64) -> Fetched {
        Fetched {
            rejected: page
                .rejected
                .iter()
                .map(|r| to_rejected(r, run_id))
                .collect(),
            records: page.events.into_iter().map(into_record).collect(),
        }
    }

    /// Records in the page, rejected ones included.
    pub(crate) fn len(&self) -> usize {
        self.records.len() + self.rejected.len()
    }
}

/// The fetch side's end of the channel.
pub(crate) struct Feed<T> {
    tx: mpsc::Sender<T>,
}

impl<T> Feed<T> {
    /// Waits until the writer has taken the item before, so that at most one item is
    /// fetched ahead; `None` when the writer has stopped (the fetch side then ends).
    pub(crate) async fn slot(&self) -> Option<mpsc::Permit<'_, T>> {
        self.tx.reserve().await.ok()
    }
}

/// The writer's end: items in the order the fetch side sent them. Dropping it aborts the
/// fetch task.
pub(crate) struct Ahead<T> {
    rx: mpsc::Receiver<T>,
    task: JoinHandle<()>,
}

impl<T: Send + 'static> Ahead<T> {
    /// Spawns `fetch` with the sending end of a channel of capacity one.
    pub(crate) fn spawn<F, Fut>(fetch: F) -> Ahead<T>
    where
        F: FnOnce(Feed<T>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(1);
        let task = tokio::spawn(fetch(Feed { tx }));
        Ahead { rx, task }
    }

    /// The next item; `None` once the fetch side has ended and everything it sent was taken.
    /// A panic of the fetch side is resumed here, so a run panics as it did when it fetched
    /// in its own task (the scheduler catches it; the next run marks the row abandoned).
    pub(crate) async fn next(&mut self) -> Option<T> {
        let item = self.rx.recv().await;
        if item.is_none()
            && let Err(e) = (&mut self.task).await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
        item
    }
}

impl<T> Drop for Ahead<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::watch;

    use super::*;

    /// The fetch side asks item N+1 once the writer has taken item N, and nothing more
    /// until the writer takes N+1 (one runtime thread: the fetch side runs whenever the
    /// test yields, so "nothing more" is not a matter of timing).
    #[tokio::test(flavor = "current_thread")]
    async fn at_most_one_item_is_fetched_ahead() {
        let asked = Arc::new(AtomicUsize::new(0));
        let (seen_tx, mut seen) = watch::channel(0usize);
        let mut ahead = Ahead::spawn({
            let asked = asked.clone();
            move |feed| async move {
                for i in 0usize.. {
                    let Some(slot) = feed.slot().await else {
                        return;
                    };
                    asked.fetch_add(1, Ordering::SeqCst);
                    seen_tx.send_replace(i + 1);
                    slot.send(i);
                }
            }
        });
        assert_eq!(ahead.next().await, Some(0)); // the writer holds item 0
        seen.wait_for(|n| *n >= 2).await.unwrap(); // item 1 is fetched meanwhile
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(asked.load(Ordering::SeqCst), 2, "item 2 waits for a slot");
        assert_eq!(ahead.next().await, Some(1));
        seen.wait_for(|n| *n >= 3).await.unwrap();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(asked.load(Ordering::SeqCst), 3);
        // Dropping the writer's end stops the fetch side.
        drop(ahead);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(asked.load(Ordering::SeqCst), 3);
        assert!(seen.has_changed().is_err(), "the fetch task has ended");
    }
}
