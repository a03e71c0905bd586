//! What an embedder calls: [`Store`]'s methods. Each checks a connection out of the pool,
//! runs one persistence function and gives the connection back, whatever happens.
//!
//! The persistence functions themselves are crate-internal and take a connection
//! (`&mut DbConn`), so that the store composes them inside one transaction: a page, its
//! quarantine, its run counts, its change log and its window or live-lane row commit
//! together ([`Store::apply_page`]). Locks are in the lock module ([`Store::try_sync_lock`]
//! and the rest); pools, connections and migrations in the pool module.

use quake_core::{RunStatus, Trigger};

use crate::backfill::{self, BackfillKey, BackfillWindow};
use crate::changes::{self, Change, Horizon};
use crate::decision::Decide;
use crate::error::Result;
use crate::live::{self, LiveLaneRow};
use crate::models::{Earthquake, RejectedRecord, SyncRun, SyncState};
use crate::pool::Store;
use crate::query::{self, EventQuery, MarkedPage, PageMarks, Position};
use crate::read::{self, CatalogueCounts};
use crate::runs;
use crate::types::Ts;
use crate::write::{self, PageResult, PageWrite};

/// Runs one persistence function on a pooled connection.
macro_rules! on_conn {
    ($store:expr, $c:ident => $call:expr) => {{
        let mut conn = $store.conn().await?;
        let $c = &mut conn.db();
        Ok($call.await?)
    }};
}
#[cfg(feature = "test-util")]
pub(crate) use on_conn;

/// The write path.
impl Store {
    /// Applies one page in one transaction, as the revision policy `decide` says (see
    /// [`PageWrite`] for what goes with it). A record the database refuses costs only itself:
    /// it is rolled back alone and quarantined in `rejected_records` with its JSON; the
    /// rest commits. Each record gets exactly one outcome, so
    /// `fetched = inserted + updated + unchanged + deleted + merged + rejected` holds for
    /// every page. The page-write lock is taken first, so no two pages are ever applied at
    /// once (any lane, any process).
    pub async fn apply_page(&self, page: PageWrite<'_>, decide: Decide) -> Result<PageResult> {
        on_conn!(self, c => write::apply(c, &page, decide))
    }
}

/// Run rows and cursors (`sync_runs`, `sync_state`).
impl Store {
    /// Writes a `running` row for a new run and returns it.
    pub async fn open_run(&self, trigger: Trigger) -> Result<SyncRun> {
        on_conn!(self, c => runs::open_run(c, trigger))
    }

    /// Ends run `run_id` with `status` (and `error`) and returns its row.
    pub async fn finish_run(
        &self,
        run_id: i64,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<SyncRun> {
        on_conn!(self, c => runs::finish_run(c, run_id, status, error))
    }

    /// Marks every run still `running` (but `except`) as `abandoned`; how many. Only the
    /// sync lock's holder may call it: only it knows that no one else is running.
    pub async fn abandon_running(&self, except: Option<i64>) -> Result<usize> {
        on_conn!(self, c => runs::abandon_running(c, except))
    }

    /// Run `run_id`'s row.
    pub async fn run(&self, run_id: i64) -> Result<Option<SyncRun>> {
        on_conn!(self, c => runs::get_run(c, run_id))
    }

    /// The latest `limit` runs, newest first.
    pub async fn latest_runs(&self, limit: i64) -> Result<Vec<SyncRun>> {
        on_conn!(self, c => runs::latest_runs(c, limit))
    }

    /// The latest run that succeeded.
    pub async fn last_success(&self) -> Result<Option<SyncRun>> {
        on_conn!(self, c => runs::last_success(c))
    }

    /// The cursor row of `source`.
    pub async fn sync_state(&self, source: &str) -> Result<Option<SyncState>> {
        on_conn!(self, c => runs::get_state(c, source))
    }

    /// Stores the cursor of `source` (and its pinned `starttime`, when given).
    pub async fn set_sync_state(
        &self,
        source: &str,
        cursor: Option<Ts>,
        resume_offset: i64,
        start_time: Option<Ts>,
    ) -> Result<()> {
        on_conn!(self, c => runs::set_state(c, source, cursor, resume_offset, start_time))
    }
}

/// Reading the catalogue.
impl Store {
    /// Rows by state (live, deleted, merged), from the counters the writes keep: one row
    /// read, whatever the catalogue's size.
    pub async fn catalogue_counts(&self) -> Result<CatalogueCounts> {
        on_conn!(self, c => read::catalogue_counts(c))
    }

    /// The newest `updated` of the catalogue (for staleness alerts).
    pub async fn newest_update(&self) -> Result<Option<Ts>> {
        on_conn!(self, c => read::newest_update(c))
    }

    /// The row whose primary id is `id`, whatever its state.
    pub async fn event(&self, id: &str) -> Result<Option<Earthquake>> {
        on_conn!(self, c => read::get_event(c, id))
    }

    /// Every row, by id (for tests and small catalogues: it reads the whole table).
    pub async fn all_events(&self) -> Result<Vec<Earthquake>> {
        on_conn!(self, c => read::all_events(c))
    }

    /// The quarantined records (of run `run_id`, or all), oldest first.
    pub async fn rejected_records(&self, run_id: Option<i64>) -> Result<Vec<RejectedRecord>> {
        on_conn!(self, c => read::rejected_records(c, run_id))
    }

    /// The rows `q` selects, in its order, its offset and limit applied (the read API's
    /// `query`).
    pub async fn query_events(&self, q: &EventQuery) -> Result<Vec<Earthquake>> {
        on_conn!(self, c => query::query_events(c, q))
    }

    /// One page of `q` read with the positions `marks` remembers (deep pages continue from
    /// the nearest one instead of skipping row by row), and what to remember of it; `at`: the
    /// position of the previous page of a streamed answer.
    pub async fn query_events_marked(
        &self,
        marks: &PageMarks,
        q: &EventQuery,
        at: Option<Position>,
    ) -> Result<MarkedPage> {
        on_conn!(self, c => query::query_events_marked(c, marks, q, at))
    }

    /// How many rows `q` selects (its offset and limit aside).
    pub async fn count_events(&self, q: &EventQuery) -> Result<i64> {
        on_conn!(self, c => query::count_events(c, q))
    }

    /// The event `id` names, as its primary id or any associated id (FDSN `eventid`).
    pub async fn find_by_any_id(&self, id: &str) -> Result<Option<Earthquake>> {
        on_conn!(self, c => query::find_by_any_id(c, id))
    }

    /// The catalogues the rows come from (FDSN `catalogs`).
    pub async fn catalogs(&self) -> Result<Vec<String>> {
        on_conn!(self, c => query::catalogs(c))
    }

    /// The networks that contributed (FDSN `contributors`).
    pub async fn contributors(&self) -> Result<Vec<String>> {
        on_conn!(self, c => query::contributors(c))
    }
}

/// The change log (`event_changes`), what the event stream serves.
impl Store {
    /// Up to `limit` changes after `after`, in commit order, each with its event as it is
    /// now.
    pub async fn read_changes(&self, after: i64, limit: i64) -> Result<Vec<Change>> {
        on_conn!(self, c => changes::read_changes(c, after, limit))
    }

    /// The oldest and newest change still stored.
    pub async fn change_horizon(&self) -> Result<Horizon> {
        on_conn!(self, c => changes::horizon(c))
    }

    /// [`Store::read_changes`] and the horizon, read in one snapshot (so a prune between
    /// the two cannot go unseen).
    pub async fn read_changes_at(&self, after: i64, limit: i64) -> Result<(Horizon, Vec<Change>)> {
        on_conn!(self, c => changes::read_changes_at(c, after, limit))
    }

    /// Deletes the changes committed before `before`; how many.
    pub async fn prune_changes(&self, before: Ts) -> Result<usize> {
        on_conn!(self, c => changes::prune_changes(c, before))
    }
}

/// The live lane's rows and the backfill plans.
impl Store {
    /// Every live source's `live_lane` row.
    pub async fn live_lanes(&self) -> Result<Vec<LiveLaneRow>> {
        on_conn!(self, c => live::rows(c))
    }

    /// The stored plan of the backfill `key`, in time order (empty: none stored).
    pub async fn backfill_windows(&self, key: &BackfillKey) -> Result<Vec<BackfillWindow>> {
        on_conn!(self, c => backfill::load_windows(c, key))
    }

    /// Stores a backfill plan, in one transaction.
    pub async fn save_backfill_plan(&self, windows: &[BackfillWindow]) -> Result<()> {
        on_conn!(self, c => backfill::save_plan(c, windows))
    }

    /// Replaces the window of `key` starting at `window_start` by `parts`, in one
    /// transaction.
    pub async fn split_backfill_window(
        &self,
        key: &BackfillKey,
        window_start: Ts,
        parts: &[BackfillWindow],
    ) -> Result<()> {
        on_conn!(self, c => backfill::split_window(c, key, window_start, parts))
    }

    /// The ends of the stored backfills that start at `range_start` with `filter` and
    /// still have windows to do, latest first.
    pub async fn unfinished_backfill_ends(&self, range_start: Ts, filter: &str) -> Result<Vec<Ts>> {
        on_conn!(self, c => backfill::unfinished_range_ends(c, range_start, filter))
    }
}
