//! The engine: one sync, start to finish (SPEC section 3).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use quake_store::LockCheck;
use quake_store::{
    ClusterLock, EventRecord, Outcome, PageResult, PageWrite, RunCounts, Store, StoreError,
    SyncRun, Ts,
};
use tokio::sync::{OwnedMutexGuard, watch};
use tokio_util::sync::CancellationToken;

use crate::lag::{LagHistograms, LagRecorder, Lane, lag_seconds};
use crate::pipeline::{Ahead, Feed, Fetched};
use crate::source::{PageRequest, Source};
use crate::status::{CurrentRun, StatusSnapshot};
use crate::upstream::{UpstreamCounter, UpstreamCounts, UpstreamOutcome};
use quake_api::{Keyset, PageAsk, pages_for_count};
pub use quake_core::{RunStatus, Trigger};

/// What the engine needs to know; the binary fills it from configuration.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Records per page (`sync.batch_size`, 1..=20000).
    pub batch_size: u32,
    /// Subtracted from the upstream's `generated` (the oldest of a run's pages) to make the
    /// next cursor (`sync.overlap_secs`).
    pub overlap: Duration,
    /// The configured `source.start_time`; when unset, `initial_lookback` before the first run.
    pub start_time: Option<DateTime<Utc>>,
    /// How far back the first run reaches when no start time is configured (24 h).
    pub initial_lookback: Duration,
    /// `source.min_magnitude`.
    pub min_magnitude: Option<f64>,
    /// Hard ceiling on upstream page requests per run and per backfill window
    /// (`sync.max_pages`): a run that reaches it fails, keeping what it committed.
    pub max_pages: u64,
}

/// The default of [`EngineConfig::max_pages`]: a million events in pages of 100.
pub const DEFAULT_MAX_PAGES: u64 = 10_000;
/// The default of [`EngineConfig::batch_size`] (SPEC: 100).
pub const DEFAULT_BATCH_SIZE: u32 = 100;
/// The largest [`EngineConfig::batch_size`]: the FDSN services' cap on `limit`.
pub const MAX_BATCH_SIZE: u32 = quake_api::USGS_MAX_LIMIT;
/// The default of [`EngineConfig::overlap`] (SPEC: 300 s).
pub const DEFAULT_OVERLAP: Duration = Duration::from_secs(300);
/// The default of [`EngineConfig::initial_lookback`]: 24 hours.
pub const DEFAULT_INITIAL_LOOKBACK: Duration = Duration::from_secs(24 * 3600);
/// The error a run stopped by a shutdown ends with.
pub const INTERRUPTED: &str = "interrupted by shutdown";

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            batch_size: DEFAULT_BATCH_SIZE,
            overlap: DEFAULT_OVERLAP,
            start_time: None,
            initial_lookback: DEFAULT_INITIAL_LOOKBACK,
            min_magnitude: None,
            max_pages: DEFAULT_MAX_PAGES,
        }
    }
}

/// How a call to [`Engine::sync_once`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncOutcome {
    /// The run finished; its row says `succeeded`.
    Succeeded(SyncRun),
    /// The run finished with an error; its row says `failed` and why.
    Failed(SyncRun),
    /// Another sync held the guard (here or in another process); nothing was written.
    Skipped { running_run_id: Option<i64> },
}

/// How a call to [`Engine::start`] ended.
pub enum StartOutcome {
    /// The run row exists and the sync goes on in the background.
    Started {
        run_id: i64,
        handle: tokio::task::JoinHandle<SyncOutcome>,
    },
    /// Another sync holds the guard.
    Busy { run_id: Option<i64> },
}

/// Errors that keep a sync from even starting (its run row could not be written).
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A store error as a run's `error`: a failed query reads `database: <what failed>`, as
/// it always has; the others (no connection, pool exhausted) say so themselves.
pub(crate) fn db_error(e: StoreError) -> String {
    match e {
        StoreError::Query(q) => format!("database: {q}"),
        e => e.to_string(),
    }
}

/// The sync engine. Cheap to clone; every clone shares one single-flight guard and status.
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) source: Arc<dyn Source>,
    pub(crate) config: EngineConfig,
    guard: Arc<tokio::sync::Mutex<()>>,
    pub(crate) status: watch::Sender<StatusSnapshot>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) upstream: UpstreamCounter,
    /// Held while a page is applied (a sync's, a backfill's or the live lane's): the pages
    /// of this process never overlap; [`quake_store::Store::apply_page`] takes the page-write
    /// lock that does the same across processes.
    pub(crate) page_lock: tokio::sync::Mutex<()>,
    /// Commit lag of the inserts and updates of this process, by lane.
    pub(crate) lag: LagRecorder,
}

/// What a started run holds until it ends: the run row, the in-process guard and the
/// cluster lock. Other modules of this crate (backfill) drive a run with
/// [`Engine::prepare`], their own page loop, and [`Engine::complete`].
pub(crate) struct Prepared {
    // Fields drop in order: the status is reset before the guard lets another run in.
    status_reset: StatusReset,
    pub(crate) run: SyncRun,
    _guard: OwnedMutexGuard<()>,
    lock: ClusterLock,
    /// Checks that the cluster lock is still held by the session that took it.
    pub(crate) holder: LockCheck,
}

/// Resets `is_running` if a run ends without [`Engine::complete`] (a panic, an aborted
/// task), so the status never shows a run that is not there.
struct StatusReset {
    engine: Option<Engine>,
}

impl Drop for StatusReset {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.take() {
            engine.inner.status.send_modify(|s| {
                s.is_running = false;
                s.current = None;
            });
        }
    }
}

impl Engine {
    pub fn new(store: Store, source: Arc<dyn Source>, config: EngineConfig) -> Engine {
        // The reach of the lock a run takes (SPEC section 2): PostgreSQL's advisory lock
        // spans every replica, SQLite's file lock the processes of one host.
        let lock_scope = match store.backend() {
            quake_store::Backend::Postgres => quake_store::LockScope::Cluster,
            quake_store::Backend::Sqlite => quake_store::LockScope::Host,
        }
        .as_str();
        let snapshot = StatusSnapshot {
            source_kind: source.kind().to_string(),
            source_url: source.url().to_string(),
            lock_scope: lock_scope.to_string(),
            backend: store.backend().as_str().to_string(),
            ..StatusSnapshot::default()
        };
        let (status, _) = watch::channel(snapshot);
        Engine {
            inner: Arc::new(Inner {
                store,
                source,
                config,
                guard: Arc::new(tokio::sync::Mutex::new(())),
                status,
                shutdown: CancellationToken::new(),
                upstream: UpstreamCounter::default(),
                page_lock: tokio::sync::Mutex::new(()),
                lag: LagRecorder::default(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn source(&self) -> &dyn Source {
        self.inner.source.as_ref()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The status as of now, from memory (never waits on the database or a running sync).
    pub fn status(&self) -> StatusSnapshot {
        self.inner.status.borrow().clone()
    }

    /// Reads the status in place, without cloning it (for hot paths such as `/sync-status`).
    /// `f` runs under the status's read lock: keep it short and never await inside.
    pub fn with_status<R>(&self, f: impl FnOnce(&StatusSnapshot) -> R) -> R {
        f(&self.inner.status.borrow())
    }

    /// A receiver that sees every status change (run started, page committed, run ended).
    pub fn subscribe(&self) -> watch::Receiver<StatusSnapshot> {
        self.inner.status.subscribe()
    }

    /// Cancelling this token makes a running sync stop after the page it is applying
    /// commits; the run is marked failed ("interrupted by shutdown") and the cursor stays.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Upstream requests of this engine's syncs and backfills so far, by outcome (after
    /// the client's retries): what `quakesync_upstream_requests_total` reports.
    pub fn upstream_requests(&self) -> UpstreamCounts {
        self.inner.upstream.snapshot()
    }

    /// Counts one upstream answer, and hands it back.
    pub(crate) fn observe<T>(
        &self,
        res: Result<T, quake_api::ApiError>,
    ) -> Result<T, quake_api::ApiError> {
        self.inner.upstream.record(UpstreamOutcome::of(&res));
        res
    }

    /// Counts a `count` answer like [`Engine::observe`], unless the source has no count
    /// (`Ok(None)`: no request was made).
    pub(crate) fn observe_count(
        &self,
        res: Result<Option<u64>, quake_api::ApiError>,
    ) -> Result<Option<u64>, quake_api::ApiError> {
        if matches!(res, Ok(None)) {
            return res;
        }
        self.observe(res)
    }

    /// Fills the status from the database (last run, last success, cursor). Call at start.
    pub async fn load_status(&self) -> Result<(), EngineError> {
        let store = &self.inner.store;
        let last = (store.latest_runs(5).await?)
            .into_iter()
            .find(|r| r.status != RunStatus::Running);
        let success = store.last_success().await?;
        let state = store.sync_state(self.inner.source.name()).await?;
        self.inner.status.send_modify(|s| {
            s.last_completed = last.as_ref().and_then(|r| r.finished_at).map(|t| t.0);
            s.last_run = last;
            s.last_success = success.and_then(|r| r.finished_at).map(|t| t.0);
            s.cursor = state.and_then(|st| st.cursor).map(|t| t.0);
        });
        Ok(())
    }

    /// Runs one sync now and waits for it. Skipped at once when another is running.
    pub async fn sync_once(&self, trigger: Trigger) -> Result<SyncOutcome, EngineError> {
        match self.prepare(trigger).await? {
            Err(running_run_id) => Ok(SyncOutcome::Skipped { running_run_id }),
            Ok(p) => Ok(self.execute(p).await),
        }
    }

    /// Starts a sync in the background once its run row is written (for `POST /sync`).
    pub async fn start(&self, trigger: Trigger) -> Result<StartOutcome, EngineError> {
        match self.prepare(trigger).await? {
            Err(run_id) => Ok(StartOutcome::Busy { run_id }),
            Ok(p) => {
                let run_id = p.run.id;
                let engine = self.clone();
                let handle = tokio::spawn(async move { engine.execute(p).await });
                Ok(StartOutcome::Started { run_id, handle })
            }
        }
    }

    fn skipped(&self) {
        log::warn!("Sync already in progress, skipping this run");
        self.inner.status.send_modify(|s| s.skipped_total += 1);
    }

    /// Takes the guards and writes the run row. `Err(run id)` when another sync runs.
    pub(crate) async fn prepare(
        &self,
        trigger: Trigger,
    ) -> Result<Result<Prepared, Option<i64>>, EngineError> {
        let Ok(guard) = self.inner.guard.clone().try_lock_owned() else {
            self.skipped();
            return Ok(Err(
                self.with_status(|s| s.current.as_ref().map(|c| c.run_id))
            ));
        };
        let Some(lock) = self.inner.store.try_sync_lock().await? else {
            self.skipped();
            let running = (self.inner.store.latest_runs(5).await?)
                .into_iter()
                .find(|r| r.status == RunStatus::Running)
                .map(|r| r.id);
            return Ok(Err(running));
        };
        let holder = lock.check();
        // Only the guard's holder can know that no one else is running.
        let abandoned = self.inner.store.abandon_running(None).await?;
        if abandoned > 0 {
            log::warn!("Marked {abandoned} run(s) left running by a stopped process as abandoned");
        }
        let run = self.inner.store.open_run(trigger).await?;
        log::info!("Starting earthquake sync (run {}, {trigger})...", run.id);
        self.inner.status.send_modify(|s| {
            s.is_running = true;
            s.current = Some(CurrentRun {
                run_id: run.id,
                trigger,
                started_at: run.started_at.0,
                counts: RunCounts::default(),
            });
        });
        Ok(Ok(Prepared {
            status_reset: StatusReset {
                engine: Some(self.clone()),
            },
            run,
            _guard: guard,
            lock,
            holder,
        }))
    }

    async fn execute(&self, p: Prepared) -> SyncOutcome {
        let started = Instant::now();
        let result = self.run_pages(p.run.id, p.holder.clone()).await;
        self.complete(p, result, started).await
    }

    /// Ends a run: finishes its row (`succeeded`, or `failed` with the error), logs the
    /// summary line, releases the lock and updates the status.
    pub(crate) async fn complete(
        &self,
        p: Prepared,
        result: Result<RunCounts, RunError>,
        started: Instant,
    ) -> SyncOutcome {
        let mut p = p;
        p.status_reset.engine = None; // this function updates the status itself
        let run_id = p.run.id;
        let elapsed = started.elapsed().as_secs_f64();
        let (status, error) = match &result {
            Ok(_) => (RunStatus::Succeeded, None),
            Err(e) => (RunStatus::Failed, Some(e.message.clone())),
        };
        let counts = match &result {
            Ok(k) => *k,
            Err(e) => e.counts,
        };
        let finished = match self.finish(run_id, status, error.as_deref()).await {
            Ok(run) => run,
            Err(e) => {
                log::error!(
                    "Could not record the end of run {run_id}: {e}; the next run will mark it abandoned"
                );
                local_row(&p.run, status, error.clone(), counts)
            }
        };
        match &error {
            None => log::info!("Sync completed in {elapsed:.2}s: {}", summary(&counts)),
            Some(e) => log::error!(
                "Sync failed after {elapsed:.2}s: {e} ({})",
                summary(&counts)
            ),
        }
        if let Err(e) = p.lock.release().await {
            log::warn!("Releasing the sync lock failed ({e}); closing its connection frees it");
        }
        // Free before the status says the run ended: whoever sees that can start the next.
        drop(p._guard);
        let now = Utc::now();
        self.inner.status.send_modify(|s| {
            s.is_running = false;
            s.current = None;
            s.last_completed = Some(now);
            if status == RunStatus::Succeeded {
                s.last_success = Some(now);
            }
            *s.runs_total.entry(status.as_str().to_string()).or_default() += 1;
            s.records_total.add(&counts);
            s.durations.push(elapsed);
            if s.durations.len() > 1000 {
                s.durations.remove(0);
            }
            s.last_run = Some(finished.clone());
        });
        if status == RunStatus::Succeeded {
            SyncOutcome::Succeeded(finished)
        } else {
            SyncOutcome::Failed(finished)
        }
    }

    async fn finish(
        &self,
        run_id: i64,
        status: RunStatus,
        error: Option<&str>,
    ) -> Result<SyncRun, EngineError> {
        Ok(self.inner.store.finish_run(run_id, status, error).await?)
    }

    /// Pages until a short page; each page in one transaction; the cursor after the last.
    /// Fails unless the cluster lock is still held by the session that took it. PostgreSQL
    /// drops an advisory lock with its connection (a server restart, a network cut), and
    /// another process may then start a sync: a run that lost the lock must write nothing
    /// more, so that no two runs ever apply pages or move the cursor at the same time.
    pub(crate) async fn check_lock(&self, holder: &LockCheck) -> Result<(), String> {
        match holder.is_held().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("lost the cluster-wide sync lock (the database restarted or the lock's connection closed); stopped before writing".into()),
            Err(e) => Err(db_error(e)),
        }
    }

    /// Writes one fetched page for run `run_id` (with `done`, also marks its backfill window
    /// done in the same transaction), unless the run lost the cluster lock; adds its counts
    /// to `totals` and publishes them. The sync loop and the backfill loop both commit
    /// through here. The page is applied under the page-write locks (this process's and the
    /// database's), so a live lane batch is written between two pages, never during one.
    /// With `lane`, the commit lag of its inserts and updates is observed.
    pub(crate) async fn commit_page(
        &self,
        run_id: i64,
        holder: &LockCheck,
        page: Fetched,
        totals: &mut RunCounts,
        done: Option<&quake_store::WindowDone>,
        lane: Option<Lane>,
    ) -> Result<quake_store::PageResult, String> {
        // A run that lost the cluster lock writes nothing more.
        self.check_lock(holder).await?;
        let res = {
            let _page = self.inner.page_lock.lock().await;
            let mut write = PageWrite::new(&page.records)
                .rejected(&page.rejected)
                .of_run(run_id);
            if let Some(done) = done {
                write = write.window_done(done);
            }
            (self
                .inner
                .store
                .apply_page(write, crate::policy::decide)
                .await)
                .map_err(db_error)?
        };
        if let Some(lane) = lane {
            self.observe_lag(lane, &page.records, &res);
        }
        drop(page);
        totals.add(&res.counts);
        let published = *totals;
        self.inner.status.send_modify(|s| {
            if let Some(c) = s.current.as_mut() {
                c.counts = published;
            }
        });
        Ok(res)
    }

    async fn run_pages(&self, run_id: i64, holder: LockCheck) -> Result<RunCounts, RunError> {
        let cfg = &self.inner.config;
        let source = self.inner.source.as_ref();
        let store = &self.inner.store;
        let mut totals = RunCounts::default();
        let fail = |message: String, counts: RunCounts| RunError { message, counts };

        let run_start = Utc::now();
        let state =
            (store.sync_state(source.name()).await).map_err(|e| fail(db_error(e), totals))?;
        let lookback =
            chrono::Duration::from_std(cfg.initial_lookback).unwrap_or(chrono::Duration::hours(24));
        let start_time = cfg
            .start_time
            .or_else(|| state.as_ref().and_then(|s| s.start_time).map(|t| t.0))
            .unwrap_or(run_start - lookback);
        let cursor = state.as_ref().and_then(|s| s.cursor).map(|t| t.0);
        let batch = cfg.batch_size.max(1);
        let request = |starttime, endtime, limit| PageRequest {
            starttime,
            endtime,
            updatedafter: cursor,
            min_magnitude: cfg.min_magnitude,
            limit,
        };
        let paged = source.is_paged();
        let counted = if paged {
            let req = request(Some(start_time), None, batch);
            tokio::select! {
                c = source.count(&req) => self.observe_count(c.map(|c| c.map(|c| c.count))).unwrap_or_else(|e| {
                    log::warn!("The upstream's count failed ({e}): the page ceiling is sync.max_pages = {}", cfg.max_pages);
                    None
                }),
                () = self.inner.shutdown.cancelled() => return Err(fail(INTERRUPTED.into(), totals)),
            }
        } else {
            None
        };
        let (ceiling, why) = page_ceiling(counted, batch, cfg.max_pages);
        let keyset = Keyset::new(Some(start_time), None, batch).with_ceiling(ceiling, why);
        let fetch = SyncFetch {
            engine: self.clone(),
            keyset,
            paged,
            template: request(None, None, batch),
            run_start,
            run_id,
        };
        // The next page is fetched and parsed while this one is written.
        let mut ahead = Ahead::spawn(|feed| fetch.run(feed));
        let mut generated: Option<DateTime<Utc>> = None;
        loop {
            let step = tokio::select! {
                biased;
                () = self.inner.shutdown.cancelled() => return Err(fail(INTERRUPTED.into(), totals)),
                step = ahead.next() => step,
            };
            let (page, page_generated, from) = match step {
                Some(SyncStep::Page {
                    page,
                    generated,
                    from,
                }) => (page, generated, from),
                Some(SyncStep::Done) => break,
                Some(SyncStep::Failed(message)) => return Err(fail(message, totals)),
                None => return Err(fail(FETCH_GONE.into(), totals)),
            };
            let res = self
                .commit_page(run_id, &holder, page, &mut totals, None, Some(Lane::Sync))
                .await
                .map_err(|m| fail(m, totals))?;
            // The oldest `generated` of the run's pages: a page served from a stale cache
            // or replica lacks what changed after its `generated`, so a cursor taken from a
            // newer page would skip those changes forever. An older cursor only re-reads.
            generated = Some(generated.map_or(page_generated, |g| g.min(page_generated)));
            log::debug!(
                "run {run_id}: page from {from:?} applied: {}",
                summary(&res.counts)
            );
        }
        drop(ahead);
        let overlap = chrono::Duration::from_std(cfg.overlap).unwrap_or(chrono::Duration::zero());
        let new_cursor = generated.unwrap_or(run_start) - overlap;
        self.check_lock(&holder)
            .await
            .map_err(|m| fail(m, totals))?;
        let (cursor, start) = (Some(Ts(new_cursor)), Some(Ts(start_time)));
        (store.set_sync_state(source.name(), cursor, 0, start).await)
            .map_err(|e| fail(db_error(e), totals))?;
        self.inner
            .status
            .send_modify(|s| s.cursor = Some(new_cursor));
        Ok(totals)
    }
}

/// Why a run fails when its fetch task ended without saying how (it panicked).
pub(crate) const FETCH_GONE: &str = "the upstream side of the run stopped without an answer or an error (a panic: see the log); nothing more was written";

/// What the fetch side of a sync hands the writer.
enum SyncStep {
    /// A page, checked by the keyset and converted; `generated` is the upstream's (or the
    /// run's start when it sent none), `from` the request's `starttime` (for the log).
    Page {
        page: Fetched,
        generated: DateTime<Utc>,
        from: Option<DateTime<Utc>>,
    },
    /// Paging has ended (a short page was the last one).
    Done,
    /// The upstream failed, or did not page as asked: nothing of that answer is written.
    Failed(String),
}

/// The fetch side of a sync: keyset paging of the source, one page ahead of the writer.
struct SyncFetch {
    engine: Engine,
    keyset: Keyset,
    paged: bool,
    /// The run's request; each page sets `starttime`, `endtime` and `limit`.
    template: PageRequest,
    run_start: DateTime<Utc>,
    run_id: i64,
}

impl SyncFetch {
    async fn run(mut self, feed: Feed<SyncStep>) {
        let mut sent = false;
        loop {
            let Some(slot) = feed.slot().await else {
                return;
            };
            if sent && !self.paged {
                slot.send(SyncStep::Done);
                return;
            }
            let ask = match self.keyset.next_ask() {
                Ok(Some(ask)) => ask,
                Ok(None) => {
                    slot.send(SyncStep::Done);
                    return;
                }
                Err(e) => {
                    slot.send(SyncStep::Failed(e.to_string()));
                    return;
                }
            };
            let step = self.page(&ask).await;
            let failed = matches!(step, SyncStep::Failed(_));
            slot.send(step);
            if failed {
                return;
            }
            sent = true;
        }
    }

    async fn page(&mut self, ask: &PageAsk) -> SyncStep {
        let req = PageRequest {
            starttime: ask.starttime,
            endtime: ask.endtime,
            limit: ask.limit,
            ..self.template.clone()
        };
        let source = self.engine.inner.source.as_ref();
        let page = match self.engine.observe(source.fetch_page(&req).await) {
            Ok(page) => page,
            Err(e) => return SyncStep::Failed(format!("upstream: {e}")),
        };
        let generated = page.generated.unwrap_or(self.run_start);
        // Checked before anything of it is written: an upstream that does not page as
        // asked ends the run here, after the pages read before it are written.
        let page = if self.paged {
            match self.keyset.accept(ask, page) {
                Ok(page) => page,
                Err(e) => return SyncStep::Failed(e.to_string()),
            }
        } else {
            page
        };
        SyncStep::Page {
            page: Fetched::convert(page, self.run_id),
            generated,
            from: ask.starttime,
        }
    }
}

/// The ceiling on page requests of a run (or a backfill window) reading pages of `limit`,
/// and why, for the error: derived from the upstream's count of matching events when it
/// has one ([`quake_api::pages_for_count`]), never above `sync.max_pages`.
pub(crate) fn page_ceiling(count: Option<u64>, limit: u32, max_pages: u64) -> (u64, String) {
    match count.map(|c| (c, pages_for_count(c, limit))) {
        Some((c, derived)) if derived < max_pages => (
            derived,
            format!(
                "the ceiling is {derived} (3 x the pages of {limit} that the {c} events the upstream counted at the start need, + 10): it keeps sending new records beyond its own count"
            ),
        ),
        _ => (
            max_pages,
            format!(
                "the ceiling of sync.max_pages = {max_pages}: the upstream kept answering full pages of new records; raise sync.max_pages (or sync.batch_size) if the catalogue really is that large"
            ),
        ),
    }
}

/// Why a run failed, with the counts of the pages it committed before.
pub(crate) struct RunError {
    pub(crate) message: String,
    pub(crate) counts: RunCounts,
}

fn local_row(run: &SyncRun, status: RunStatus, error: Option<String>, k: RunCounts) -> SyncRun {
    SyncRun {
        status,
        finished_at: Some(Ts::now()),
        error,
        fetched: k.fetched,
        inserted: k.inserted,
        updated: k.updated,
        unchanged: k.unchanged,
        deleted: k.deleted,
        merged: k.merged,
        rejected: k.rejected,
        pages: k.pages,
        ..run.clone()
    }
}

/// The part of the summary line after the duration, with the words the seed's operators
/// grep for: `80 synced (75 inserted, 5 updated, 0 deleted, 0 merged), 20 skipped (19
/// unchanged, 1 rejected), 100 total processed`.
pub fn summary(k: &RunCounts) -> String {
    format!(
        "{} synced ({} inserted, {} updated, {} deleted, {} merged), {} skipped ({} unchanged, {} rejected), {} total processed",
        k.synced(),
        k.inserted,
        k.updated,
        k.deleted,
        k.merged,
        k.skipped(),
        k.unchanged,
        k.rejected,
        k.fetched
    )
}

/// The whole summary line of a finished run.
pub fn summary_line(run: &SyncRun) -> String {
    let secs = run.duration_ms().unwrap_or(0) as f64 / 1000.0;
    let k = RunCounts::from_run(run);
    match (run.status, &run.error) {
        (RunStatus::Succeeded, _) => format!("Sync completed in {secs:.2}s: {}", summary(&k)),
        (_, Some(e)) => format!(
            "Sync {} after {secs:.2}s: {e} ({})",
            run.status,
            summary(&k)
        ),
        _ => format!("Sync {} after {secs:.2}s: {}", run.status, summary(&k)),
    }
}

/// Freshness: the commit lag this process observed ([`crate::lag`]).
impl Engine {
    /// The commit lag histograms of this process so far, by lane.
    pub fn lag_histograms(&self) -> LagHistograms {
        self.inner.lag.lock().clone()
    }

    /// Observes the lag of the inserts and updates of a page that just committed, and
    /// publishes the latest one (that of the page's most recently updated change).
    pub(crate) fn observe_lag(&self, lane: Lane, records: &[EventRecord], res: &PageResult) {
        let commit = Utc::now();
        let mut latest: Option<f64> = None;
        {
            let mut all = self.inner.lag.lock();
            let h = match lane {
                Lane::Live => &mut all.live,
                Lane::Sync => &mut all.sync,
            };
            for (rec, (_, outcome)) in records.iter().zip(&res.outcomes) {
                if matches!(outcome, Outcome::Inserted | Outcome::Updated) {
                    let secs = lag_seconds(commit, rec.updated.0);
                    h.observe(secs);
                    latest = Some(latest.map_or(secs, |l| l.min(secs)));
                }
            }
        }
        if let Some(secs) = latest {
            self.inner.status.send_modify(|s| {
                s.latest_lag_seconds = Some(secs);
                s.latest_lag_lane = Some(lane);
                s.latest_lag_at = Some(commit);
                if lane == Lane::Live {
                    s.live.latest_lag_seconds = Some(secs);
                }
            });
        }
    }
}
