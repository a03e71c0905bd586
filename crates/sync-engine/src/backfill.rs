//! Backfill: fill a time range from an FDSN event service in windows that stay under the
//! service's cap (SPEC section 5, `quakesync backfill`).
//!
//! A backfill is one engine run: the same single-flight guard and cluster lock as a sync
//! (a backfill while a sync runs is skipped, and the other way round), one `sync_runs`
//! row, every page applied through the store's write path (per-record isolation, dedupe,
//! revisions, merges). It never moves the sync cursor (`sync_state`).
//!
//! 1. **Plan.** The range `[start, end)` is counted with the service's `count` method
//!    (same filters, `includedeleted=true`). A window whose count is over the cap (the
//!    `maxAllowed` the service reports, 20000 at USGS, or a smaller configured
//!    [`BackfillOptions::max_window_events`]), or whose count answers 400 "… exceeds search
//!    limit …", is split in two halves at a whole second, recursively, down to windows of
//!    one second (a one-second window over the cap is paged anyway: `limit` ≤ cap never
//!    trips the limit). Windows that count 0 are done at once. The plan is stored in one
//!    transaction (`backfill_windows`).
//! 2. **Page.** Each window not yet done, in time order, by keyset
//!    ([`quake_api::Keyset`]): `orderby=time-asc`, `includedeleted=true`, `limit` =
//!    `batch_size` (at most the cap), `endtime` = the window's end, and `starttime` = the
//!    second of the last event read (those of that second already read are dropped), until
//!    a short page; so events merged, deleted or inserted upstream meanwhile cost nothing.
//!    An upstream that ignores `limit`, `starttime`, `endtime` or the order fails the run
//!    at once, and so does a window that needs more requests than its planned count allows
//!    (3 x its pages + 10) or than `sync.max_pages`. Each page is one transaction; the
//!    window is marked done in the transaction of its last page. A page answering 400
//!    "exceeds search limit" splits its window (the plan is updated) instead of failing.
//!    The next page, of this window or the next one, is fetched and parsed while the
//!    current one is written (one page ahead at most; see the crate README).
//! 3. **Resume.** Run again with the same range (and filter), a backfill loads the stored
//!    plan instead of counting again and skips every window marked done. Without an
//!    explicit end it resumes the latest unfinished backfill starting at the same time,
//!    else it runs up to now. A window interrupted halfway is redone from its first page
//!    (the pages seen twice are absorbed as `unchanged`).
//! 4. **Politeness.** [`BackfillOptions::pause`] between upstream requests (default
//!    [`DEFAULT_PAUSE`]), on top of the HTTP client's retry policy.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use quake_api::{ApiError, Keyset, USGS_MAX_LIMIT};
use quake_store::{BackfillKey, BackfillWindow, RunCounts, StoreError, Ts, WindowDone};

use crate::engine::{Engine, EngineError, RunError, SyncOutcome, Trigger, db_error};
use crate::pipeline::{Ahead, Feed, Fetched};
use crate::source::{PageRequest, Source};

/// The pause between two upstream requests unless configured: a backfill is a bulk job
/// against a free public service, so it keeps under four requests a second even when
/// windows are empty or pages are small; with USGS's usual 0.3–2 s per request this adds
/// little to a large backfill.
pub const DEFAULT_PAUSE: Duration = Duration::from_millis(250);

/// What to backfill, and how.
#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// Start of the range (floored to the second, as FDSN does).
    pub start: DateTime<Utc>,
    /// End of the range (exclusive, floored to the second). `None`: the end of the latest
    /// unfinished backfill with the same start and filter (so running the same command
    /// again resumes it), else now.
    pub end: Option<DateTime<Utc>>,
    /// Split windows above this many events even when the service allows more (its
    /// `maxAllowed` always applies).
    pub max_window_events: Option<u64>,
    /// Records per page; `None`: the engine's `batch_size`. Never above the cap.
    pub batch_size: Option<u32>,
    /// Pause between two upstream requests.
    pub pause: Duration,
}

impl BackfillOptions {
    pub fn new(start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> Self {
        BackfillOptions {
            start,
            end,
            max_window_events: None,
            batch_size: None,
            pause: DEFAULT_PAUSE,
        }
    }
}

/// Progress, reported as it happens (for a progress bar or log lines).
#[non_exhaustive]
#[derive(Debug, Clone)]
pub enum BackfillEvent {
    /// The range was resolved (the run holds the lock).
    Started { key: BackfillKey, resumed: bool },
    /// One `count` request answered while planning.
    Counted {
        window: (DateTime<Utc>, DateTime<Utc>),
        count: Option<u64>,
        requests: u64,
    },
    /// The plan is known (just made, or loaded to resume).
    Planned(PlanSummary),
    /// A page of a window committed; `totals` are the run's.
    Page {
        window: (DateTime<Utc>, DateTime<Utc>),
        records: u64,
        totals: RunCounts,
    },
    /// A window was split while paging (the service refused it as too large).
    Split {
        window: (DateTime<Utc>, DateTime<Utc>),
    },
    /// A window committed its last page and is marked done.
    WindowDone {
        window: (DateTime<Utc>, DateTime<Utc>),
        events: u64,
        windows_done: u64,
        windows_total: u64,
        totals: RunCounts,
    },
}

/// The shape of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanSummary {
    pub windows_total: u64,
    /// Done before this run started (skipped) or done at planning (empty windows).
    pub windows_done: u64,
    /// Sum of the planned counts of the windows still to do.
    pub expected_events: u64,
    /// True when the plan was loaded from the store (a resumed backfill).
    pub resumed: bool,
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&BackfillEvent) + Send + Sync>;

/// How a backfill ended.
#[derive(Debug, Clone)]
pub struct BackfillOutcome {
    /// The run: succeeded, failed (its row says why) or skipped (lock held elsewhere).
    pub outcome: SyncOutcome,
    /// The backfill's key, once resolved (not for a skipped run).
    pub key: Option<BackfillKey>,
    pub plan: PlanSummary,
    /// Windows this run finished.
    pub windows_done: u64,
    /// Upstream requests made: `count` and `query`.
    pub count_requests: u64,
    pub query_requests: u64,
}

impl BackfillOutcome {
    /// `backfill START .. END: D of T window(s) done (N this run); C count and Q query
    /// request(s)`, once the backfill's key is known (not for a skipped run).
    pub fn windows_line(&self) -> Option<String> {
        let key = self.key.as_ref()?;
        let done = self.plan.windows_done + self.windows_done;
        Some(format!(
            "backfill {} .. {}: {done} of {} window(s) done ({} this run); {} count and {} query request(s)",
            key.range_start.0.to_rfc3339(),
            key.range_end.0.to_rfc3339(),
            self.plan.windows_total.max(done),
            self.windows_done,
            self.count_requests,
            self.query_requests,
        ))
    }
}

/// Errors that keep a backfill from starting.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("invalid backfill range: {0}")]
    InvalidRange(String),
    /// The engine's source cannot be backfilled from (a summary feed, or a service that
    /// cannot count).
    #[error("cannot backfill: {0}")]
    Unsupported(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<StoreError> for BackfillError {
    fn from(e: StoreError) -> Self {
        BackfillError::Engine(EngineError::Store(e))
    }
}

fn floor_secs(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// The midpoint of a window at a whole second, or `None` when it is too short to split.
fn midpoint(a: DateTime<Utc>, b: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let secs = (b - a).num_seconds();
    (secs >= 2).then(|| a + TimeDelta::seconds(secs / 2))
}

/// Whether the service refused a request as matching too many events (USGS: HTTP 400
/// "N matching events exceeds search limit of 20000. Modify the search…"; a `count` body
/// that carries only that error).
pub fn exceeds_search_limit(e: &ApiError) -> bool {
    let text = match e {
        ApiError::Status {
            status: 400,
            snippet,
            ..
        } => snippet,
        ApiError::InvalidBody { reason, .. } => reason,
        _ => return false,
    };
    text.to_ascii_lowercase().contains("exceeds search limit")
}

fn filter_of(min_magnitude: Option<f64>) -> String {
    min_magnitude
        .map(|m| format!("minmagnitude={m}"))
        .unwrap_or_default()
}

/// Keeps `pause` between two upstream requests; the wait ends early on shutdown.
struct Pacer {
    pause: Duration,
    last: Option<Instant>,
}

impl Pacer {
    async fn wait(&mut self, engine: &Engine) {
        if let Some(last) = self.last {
            let due = last + self.pause;
            let now = Instant::now();
            if due > now {
                tokio::select! {
                    _ = tokio::time::sleep(due - now) => {}
                    _ = engine.inner.shutdown.cancelled() => {}
                }
            }
        }
        self.last = Some(Instant::now());
    }
}

/// The state of one backfill run.
struct Job<'a> {
    engine: &'a Engine,
    source: Arc<dyn Source>,
    opts: &'a BackfillOptions,
    progress: Option<ProgressFn>,
    run_id: i64,
    /// Who held the cluster lock when the run took it: re-checked before every page write.
    holder: quake_store::LockCheck,
    pacer: Pacer,
    min_magnitude: Option<f64>,
    /// The smallest cap seen or configured.
    cap: u64,
    key: Option<BackfillKey>,
    plan: PlanSummary,
    windows_done: u64,
    count_requests: u64,
    /// Counted by the fetch side.
    query_requests: Arc<AtomicU64>,
    totals: RunCounts,
}

impl Engine {
    /// Backfills a range from this engine's [`Source`] as one run (trigger `cli`): takes
    /// the guard (skipped at once when a sync or backfill holds it), plans or loads the
    /// windows, pages the windows not yet done, and finishes the run row. `progress`, when
    /// given, sees each step. The sync cursor is never moved. The next page is fetched and
    /// parsed while the current one is written (one page ahead at most). The source must
    /// page and count ([`Source::count`] answering `Some`): an FDSN event service.
    pub async fn backfill(
        &self,
        opts: &BackfillOptions,
        progress: Option<ProgressFn>,
    ) -> Result<BackfillOutcome, BackfillError> {
        if let Some(end) = opts.end
            && floor_secs(end) <= floor_secs(opts.start)
        {
            return Err(BackfillError::InvalidRange(format!(
                "the end ({end}) must be at least one second after the start ({})",
                opts.start
            )));
        }
        let source = self.inner.source.clone();
        if !source.is_paged() {
            return Err(BackfillError::Unsupported(format!(
                "the source {} ({}) returns everything in one answer: it has no history to backfill",
                source.url(),
                source.kind()
            )));
        }
        let p = match self.prepare(Trigger::Cli).await? {
            Err(running_run_id) => {
                return Ok(BackfillOutcome {
                    outcome: SyncOutcome::Skipped { running_run_id },
                    key: None,
                    plan: PlanSummary::default(),
                    windows_done: 0,
                    count_requests: 0,
                    query_requests: 0,
                });
            }
            Ok(p) => p,
        };
        let started = Instant::now();
        let url = source.url().to_string();
        let mut job = Job {
            engine: self,
            source,
            opts,
            progress,
            run_id: p.run.id,
            holder: p.holder.clone(),
            pacer: Pacer {
                pause: opts.pause,
                last: None,
            },
            min_magnitude: self.inner.config.min_magnitude,
            cap: opts.max_window_events.unwrap_or(u64::MAX).max(1),
            key: None,
            plan: PlanSummary::default(),
            windows_done: 0,
            count_requests: 0,
            query_requests: Arc::default(),
            totals: RunCounts::default(),
        };
        log::info!(
            "Backfill (run {}) from {} at {url}",
            p.run.id,
            opts.start.to_rfc3339(),
        );
        let result = job.run().await.map_err(|message| RunError {
            message,
            counts: job.totals,
        });
        let result = result.map(|()| job.totals);
        let outcome = self.complete(p, result, started).await;
        Ok(BackfillOutcome {
            outcome,
            key: job.key,
            plan: job.plan,
            windows_done: job.windows_done,
            count_requests: job.count_requests,
            query_requests: job.query_requests.load(Ordering::Relaxed),
        })
    }
}

impl Job<'_> {
    fn emit(&self, e: BackfillEvent) {
        if let Some(p) = &self.progress {
            p(&e);
        }
    }

    fn check_shutdown(&self) -> Result<(), String> {
        if self.engine.inner.shutdown.is_cancelled() {
            Err(crate::engine::INTERRUPTED.into())
        } else {
            Ok(())
        }
    }

    fn store(&self) -> &quake_store::Store {
        &self.engine.inner.store
    }

    /// What a window `[a, b)` is counted with (the source adds `includedeleted`).
    fn window_request(&self, a: DateTime<Utc>, b: DateTime<Utc>) -> PageRequest {
        PageRequest {
            starttime: Some(a),
            endtime: Some(b),
            updatedafter: None,
            min_magnitude: self.min_magnitude,
            limit: self.page_limit(),
        }
    }

    async fn run(&mut self) -> Result<(), String> {
        let filter = filter_of(self.min_magnitude);
        let start = floor_secs(self.opts.start);
        let end = match self.opts.end {
            Some(e) => floor_secs(e),
            None => {
                let ends = (self
                    .store()
                    .unfinished_backfill_ends(Ts(start), &filter)
                    .await)
                    .map_err(db_error)?;
                match ends.first() {
                    Some(e) => {
                        log::info!(
                            "Resuming the unfinished backfill from {} to {}",
                            start.to_rfc3339(),
                            e.0.to_rfc3339()
                        );
                        e.0
                    }
                    None => floor_secs(Utc::now()),
                }
            }
        };
        if end <= start {
            return Err(format!(
                "the range is empty: the end ({}) is not after the start ({})",
                end.to_rfc3339(),
                start.to_rfc3339()
            ));
        }
        let key = BackfillKey {
            range_start: Ts(start),
            range_end: Ts(end),
            filter,
        };
        self.key = Some(key.clone());

        let stored = (self.store().backfill_windows(&key).await).map_err(db_error)?;
        let resumed = !stored.is_empty();
        self.emit(BackfillEvent::Started {
            key: key.clone(),
            resumed,
        });
        let windows = if resumed {
            stored
        } else {
            let plan = self.plan(&key).await?;
            (self.store().save_backfill_plan(&plan).await).map_err(db_error)?;
            plan
        };
        let done_before = windows.iter().filter(|w| w.is_done()).count() as u64;
        self.plan = PlanSummary {
            windows_total: windows.len() as u64,
            windows_done: done_before,
            expected_events: windows
                .iter()
                .filter(|w| !w.is_done())
                .map(|w| w.expected.unwrap_or(0).max(0) as u64)
                .sum(),
            resumed,
        };
        log::info!(
            "Backfill {} to {}: {} window(s), {} done before, about {} event(s) to fetch{}",
            start.to_rfc3339(),
            end.to_rfc3339(),
            self.plan.windows_total,
            self.plan.windows_done,
            self.plan.expected_events,
            if resumed { " (resumed)" } else { "" }
        );
        self.emit(BackfillEvent::Planned(self.plan));

        let todo: VecDeque<BackfillWindow> = windows.into_iter().filter(|w| !w.is_done()).collect();
        let fetch = WindowFetch {
            engine: self.engine.clone(),
            source: self.source.clone(),
            key: key.clone(),
            todo,
            limit: self.page_limit(),
            min_magnitude: self.min_magnitude,
            pacer: Pacer {
                pause: self.pacer.pause,
                last: self.pacer.last,
            },
            run_id: self.run_id,
            requests: self.query_requests.clone(),
        };
        // The next page is fetched and parsed while this one is written.
        let mut ahead = Ahead::spawn(|feed| fetch.run(feed));
        let mut windows_total = self.plan.windows_total;
        let mut windows_done = self.plan.windows_done;
        loop {
            let step = tokio::select! {
                biased;
                () = self.engine.inner.shutdown.cancelled() => return Err(crate::engine::INTERRUPTED.into()),
                step = ahead.next() => step,
            };
            match step {
                Some(WindowStep::Page {
                    window: (a, b),
                    page,
                    done,
                    from,
                }) => {
                    let records = page.len() as u64;
                    let res = self
                        .engine
                        .commit_page(
                            self.run_id,
                            &self.holder,
                            page,
                            &mut self.totals,
                            done.as_ref(),
                            None,
                        )
                        .await?;
                    log::debug!(
                        "run {}: window {a} .. {b}, page from {from:?}: {}",
                        self.run_id,
                        crate::engine::summary(&res.counts)
                    );
                    self.emit(BackfillEvent::Page {
                        window: (a, b),
                        records,
                        totals: self.totals,
                    });
                    if let Some(done) = done {
                        windows_done += 1;
                        self.windows_done += 1;
                        self.emit(BackfillEvent::WindowDone {
                            window: (a, b),
                            events: u64::try_from(done.events).unwrap_or(0),
                            windows_done,
                            windows_total,
                            totals: self.totals,
                        });
                    }
                }
                Some(WindowStep::Split {
                    window: (a, b),
                    parts,
                }) => {
                    (self
                        .store()
                        .split_backfill_window(&key, Ts(a), &parts)
                        .await)
                        .map_err(db_error)?;
                    windows_total += 1;
                    self.emit(BackfillEvent::Split { window: (a, b) });
                }
                Some(WindowStep::Done) => return Ok(()),
                Some(WindowStep::Failed(message)) => return Err(message),
                None => return Err(crate::engine::FETCH_GONE.into()),
            }
        }
    }

    /// Counts windows, splitting those over the cap, into a plan in time order.
    async fn plan(&mut self, key: &BackfillKey) -> Result<Vec<BackfillWindow>, String> {
        let mut stack = vec![(key.range_start.0, key.range_end.0)];
        let mut plan = Vec::new();
        while let Some((a, b)) = stack.pop() {
            self.check_shutdown()?;
            self.pacer.wait(self.engine).await;
            self.check_shutdown()?;
            self.count_requests += 1;
            let answer = self
                .engine
                .observe(self.source.count(&self.window_request(a, b)).await);
            let count = match answer {
                Ok(None) => {
                    return Err(format!(
                        "the source {} ({}) cannot count events: a backfill plans its windows by count (an FDSN event service)",
                        self.source.url(),
                        self.source.kind()
                    ));
                }
                Ok(Some(c)) => {
                    if let Some(m) = c.max_allowed {
                        self.cap = self.cap.min(m.max(1));
                    }
                    Some(c.count)
                }
                Err(e) if exceeds_search_limit(&e) => None,
                Err(e) => return Err(format!("upstream count: {e}")),
            };
            self.emit(BackfillEvent::Counted {
                window: (a, b),
                count,
                requests: self.count_requests,
            });
            let too_many = count.is_none_or(|n| n > self.effective_cap());
            match (too_many, midpoint(a, b)) {
                (true, Some(mid)) => {
                    log::debug!(
                        "window {a} .. {b}: {count:?} events, over the cap of {}: split at {mid}",
                        self.effective_cap()
                    );
                    // Pushed right first, so the left half is counted (and planned) first.
                    stack.push((mid, b));
                    stack.push((a, mid));
                }
                (too_many, _) => {
                    if too_many {
                        log::warn!(
                            "window {a} .. {b} holds {count:?} events, over the cap of {}, and cannot be split further; paging it as it is",
                            self.effective_cap()
                        );
                    }
                    let mut w = BackfillWindow::planned(
                        key,
                        Ts(a),
                        Ts(b),
                        count.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
                    );
                    if count == Some(0) {
                        // Nothing to fetch: done at planning, no query needed.
                        w.done_at = Some(Ts::now());
                        w.run_id = Some(self.run_id);
                    }
                    plan.push(w);
                }
            }
        }
        Ok(plan)
    }

    fn effective_cap(&self) -> u64 {
        self.cap.min(u64::from(USGS_MAX_LIMIT))
    }

    fn page_limit(&self) -> u32 {
        let batch = self
            .opts
            .batch_size
            .unwrap_or(self.engine.inner.config.batch_size)
            .clamp(1, USGS_MAX_LIMIT);
        let cap = u32::try_from(self.effective_cap()).unwrap_or(USGS_MAX_LIMIT);
        batch.min(cap).max(1)
    }
}

/// What the fetch side of a backfill hands the writer, in order.
enum WindowStep {
    /// A page of `window`, checked by the keyset and converted; `done` when it is the
    /// window's last (the window is marked done in the page's transaction).
    Page {
        window: (DateTime<Utc>, DateTime<Utc>),
        page: Fetched,
        done: Option<WindowDone>,
        from: Option<DateTime<Utc>>,
    },
    /// The service refused `window` as too large: it is replaced by `parts` in the plan
    /// (the fetch side pages the parts next).
    Split {
        window: (DateTime<Utc>, DateTime<Utc>),
        parts: Vec<BackfillWindow>,
    },
    /// Every window is paged.
    Done,
    /// The upstream failed, or did not page as asked: nothing of that answer is written.
    Failed(String),
}

/// The fetch side of a backfill: the windows not yet done, in time order, each paged by
/// keyset, one page ahead of the writer (across windows too).
struct WindowFetch {
    engine: Engine,
    source: Arc<dyn Source>,
    key: BackfillKey,
    todo: VecDeque<BackfillWindow>,
    limit: u32,
    min_magnitude: Option<f64>,
    pacer: Pacer,
    run_id: i64,
    requests: Arc<AtomicU64>,
}

impl WindowFetch {
    async fn run(mut self, feed: Feed<WindowStep>) {
        while let Some(w) = self.todo.pop_front() {
            match self.page_window(&feed, &w).await {
                Ok(None) => {}
                Ok(Some(parts)) => {
                    for part in parts.into_iter().rev() {
                        self.todo.push_front(part);
                    }
                }
                Err(()) => return,
            }
        }
        if let Some(slot) = feed.slot().await {
            slot.send(WindowStep::Done);
        }
    }

    /// Pages one window to its end (its last page carries the window's done mark); the
    /// parts when the service refuses it as too large. `Err` when the run ends here (a
    /// failure was sent, or the writer has stopped).
    async fn page_window(
        &mut self,
        feed: &Feed<WindowStep>,
        w: &BackfillWindow,
    ) -> Result<Option<Vec<BackfillWindow>>, ()> {
        let (a, b) = (w.window_start.0, w.window_end.0);
        let limit = self.limit;
        let expected = w.expected.and_then(|n| u64::try_from(n).ok());
        let (ceiling, why) =
            crate::engine::page_ceiling(expected, limit, self.engine.inner.config.max_pages);
        let mut keyset = Keyset::new(Some(a), Some(b), limit).with_ceiling(ceiling, why);
        let mut events: u64 = 0;
        let mut pages: i64 = 0;
        loop {
            let slot = feed.slot().await.ok_or(())?;
            let ask = match keyset.next_ask() {
                Ok(Some(ask)) => ask,
                Ok(None) => return Ok(None),
                Err(e) => {
                    slot.send(WindowStep::Failed(format!("window {a} .. {b}: {e}")));
                    return Err(());
                }
            };
            self.pacer.wait(&self.engine).await;
            let req = PageRequest {
                starttime: ask.starttime,
                endtime: ask.endtime,
                updatedafter: None,
                min_magnitude: self.min_magnitude,
                limit: ask.limit,
            };
            self.requests.fetch_add(1, Ordering::Relaxed);
            let page = match self.engine.observe(self.source.fetch_page(&req).await) {
                Ok(p) => p,
                Err(e) if exceeds_search_limit(&e) => {
                    let Some(mid) = midpoint(a, b) else {
                        slot.send(WindowStep::Failed(format!(
                            "upstream refused the one-second window {a} .. {b} as too large: {e}"
                        )));
                        return Err(());
                    };
                    log::warn!(
                        "window {a} .. {b} is too large for the service ({e}); splitting it at {mid}"
                    );
                    let parts = vec![
                        BackfillWindow::planned(&self.key, Ts(a), Ts(mid), None),
                        BackfillWindow::planned(&self.key, Ts(mid), Ts(b), None),
                    ];
                    slot.send(WindowStep::Split {
                        window: (a, b),
                        parts: parts.clone(),
                    });
                    return Ok(Some(parts));
                }
                Err(e) => {
                    slot.send(WindowStep::Failed(format!("upstream: {e}")));
                    return Err(());
                }
            };
            // Checked before anything of it is written; records read before are written.
            let page = match keyset.accept(&ask, page) {
                Ok(page) => page,
                Err(e) => {
                    slot.send(WindowStep::Failed(format!("window {a} .. {b}: {e}")));
                    return Err(());
                }
            };
            let last = keyset.is_done();
            events += page.record_count() as u64;
            pages += 1;
            let done = last.then(|| WindowDone {
                key: self.key.clone(),
                window_start: w.window_start,
                events: i64::try_from(events).unwrap_or(i64::MAX),
                pages,
                run_id: Some(self.run_id),
            });
            slot.send(WindowStep::Page {
                window: (a, b),
                page: Fetched::convert(page, self.run_id),
                done,
                from: ask.starttime,
            });
            if last {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn midpoints_are_whole_seconds() {
        let a = t("2018-06-07T00:00:00Z");
        assert_eq!(
            midpoint(a, t("2018-06-08T00:00:00Z")),
            Some(t("2018-06-07T12:00:00Z"))
        );
        assert_eq!(
            midpoint(a, t("2018-06-07T00:00:03Z")),
            Some(t("2018-06-07T00:00:01Z"))
        );
        assert_eq!(midpoint(a, t("2018-06-07T00:00:01Z")), None);
        assert_eq!(
            floor_secs(t("2018-06-07T00:00:01.999Z")),
            t("2018-06-07T00:00:01Z")
        );
    }

    #[test]
    fn recognises_the_usgs_limit_message() {
        let e = ApiError::Status {
            status: 400,
            url: String::new(),
            snippet: "Error 400: Bad Request 20001 matching events exceeds search limit of 20000. Modify the search to match fewer events.".into(),
        };
        assert!(exceeds_search_limit(&e));
        let other = ApiError::Status {
            status: 400,
            url: String::new(),
            snippet: "Bad starttime".into(),
        };
        assert!(!exceeds_search_limit(&other));
    }
}
