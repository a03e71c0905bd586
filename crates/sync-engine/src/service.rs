//! A sync service, whole: the engine, its scheduler, manual triggers, the status, the
//! upstream request counts, and a shutdown with a deadline (SPEC section 5). This is what
//! `quakesync serve` runs; an embedder runs the same, in its own tokio runtime:
//!
//! ```no_run
//! # async fn demo(engine: sync_engine::Engine) -> Result<(), sync_engine::EngineError> {
//! use std::time::Duration;
//! use sync_engine::{Schedule, SyncService, Trigger};
//!
//! let service = SyncService::start(engine, Schedule::default());
//! service.trigger(Trigger::Manual).await?; // a sync now, besides the scheduled ones
//! let mut status = service.subscribe(); // every run start, page commit and run end
//! status.wait_for(|s| !s.is_running).await.ok();
//! // A running sync stops after the page it is applying commits and is marked failed
//! // ("interrupted by shutdown"); its cursor does not move.
//! service.shutdown(Duration::from_secs(8)).await;
//! # Ok(()) }
//! ```

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use crate::engine::INTERRUPTED;
use crate::engine::{Engine, EngineError, StartOutcome, Trigger};
use crate::live::{LiveConfig, LiveLane};
use crate::scheduler::{Scheduler, SchedulerHandle};
use crate::status::StatusSnapshot;
use crate::upstream::UpstreamCounts;

/// Seconds between the starts of two scheduled runs unless configured (`sync.interval_secs`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);
/// The wait before the first scheduled run unless configured (`sync.startup_delay_secs`).
pub const DEFAULT_STARTUP_DELAY: Duration = Duration::from_secs(30);

/// When scheduled runs happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// False: no scheduled runs (manual triggers still work).
    pub enabled: bool,
    /// From the start of one scheduled run to the next.
    pub interval: Duration,
    /// From [`SyncService::start`] to the first scheduled run.
    pub startup_delay: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            enabled: true,
            interval: DEFAULT_INTERVAL,
            startup_delay: DEFAULT_STARTUP_DELAY,
        }
    }
}

/// How a shutdown left the sync that was running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shutdown {
    /// No sync was running.
    Idle,
    /// The running sync stopped after its page committed (its row says why).
    Stopped { run_id: i64 },
    /// The running sync did not stop in time (a database write still in flight): its row
    /// was marked failed here. Its uncommitted page, if any, is rolled back by the
    /// database when the connection closes; the cursor has not moved.
    MarkedFailed { run_id: i64 },
    /// As `MarkedFailed`, but the row could not be written either: the next run marks it
    /// abandoned.
    Unmarked { run_id: i64 },
}

/// The engine and its scheduler, running. Build the [`Engine`] first (a
/// [`Store`](quake_store::Store), a [`Source`](crate::Source), an
/// [`EngineConfig`](crate::EngineConfig)), then [`SyncService::start`] it.
pub struct SyncService {
    engine: Engine,
    scheduler: SchedulerHandle,
    stop_scheduler: CancellationToken,
    scheduler_task: Option<JoinHandle<()>>,
    live: Option<LiveLane>,
}

impl SyncService {
    /// Starts the scheduler (unless `schedule.enabled` is false) on the current tokio
    /// runtime; call it from inside one.
    pub fn start(engine: Engine, schedule: Schedule) -> SyncService {
        let source = engine.source();
        log::info!("Source: {} {}", source.kind(), source.url());
        let stop_scheduler = CancellationToken::new();
        let (scheduler, scheduler_task) = if schedule.enabled {
            let s = Scheduler::new(
                engine.clone(),
                schedule.interval,
                schedule.startup_delay,
                stop_scheduler.clone(),
            );
            (s.handle(), Some(s.spawn()))
        } else {
            log::info!(
                "Automatic sync is disabled; the interval would be {}",
                quake_core::human_duration(schedule.interval)
            );
            let handle = SchedulerHandle::disabled(schedule.interval, schedule.startup_delay);
            (handle, None)
        };
        SyncService {
            engine,
            scheduler,
            stop_scheduler,
            scheduler_task,
            live: None,
        }
    }

    /// Starts the live lane beside the scheduler ([`crate::live`]); `None` starts none (the
    /// status then shows it `disabled`). The lane stops with [`SyncService::shutdown`]. A
    /// URL the client refuses starts none either: logged, and shown as the lane's
    /// `last_error` (use [`LiveLane::start`] to handle it).
    pub fn with_live(mut self, live: Option<LiveConfig>) -> SyncService {
        if let Some(cfg) = live {
            match LiveLane::start(self.engine.clone(), cfg) {
                Ok(lane) => self.live = Some(lane),
                Err(e) => {
                    log::error!("Live lane not started: {e}");
                    self.engine.inner.status.send_modify(|s| {
                        s.live.last_error = Some(e.to_string());
                        s.live.last_error_at = Some(chrono::Utc::now());
                    });
                }
            }
        }
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The scheduler's settings and next run, for a status surface.
    pub fn scheduler(&self) -> &SchedulerHandle {
        &self.scheduler
    }

    /// Starts a sync now in the background (`Busy` when one is running, here or in another
    /// process).
    pub async fn trigger(&self, trigger: Trigger) -> Result<StartOutcome, EngineError> {
        self.engine.start(trigger).await
    }

    /// The status as of now, from memory.
    pub fn status(&self) -> StatusSnapshot {
        self.engine.status()
    }

    /// A receiver that sees every status change.
    pub fn subscribe(&self) -> watch::Receiver<StatusSnapshot> {
        self.engine.subscribe()
    }

    /// Upstream requests so far, by outcome.
    pub fn upstream_requests(&self) -> UpstreamCounts {
        self.engine.upstream_requests()
    }

    /// Stops the scheduler, the live lane and the running sync, all within `deadline`: see
    /// [`Engine::shutdown`] and [`LiveLane::stop`].
    pub async fn shutdown(mut self, deadline: Duration) -> Shutdown {
        let until = Instant::now() + deadline;
        self.stop_scheduler.cancel();
        let live = self.live.take();
        let (outcome, ()) = tokio::join!(self.engine.shutdown(deadline), async {
            if let Some(lane) = live {
                lane.stop(deadline).await;
            }
        });
        if let Some(task) = self.scheduler_task.take() {
            let _ = tokio::time::timeout_at(until, task).await;
        }
        outcome
    }
}

impl Drop for SyncService {
    fn drop(&mut self) {
        // A service dropped without `shutdown` still stops scheduling.
        self.stop_scheduler.cancel();
    }
}

impl Engine {
    /// Stops this engine's running sync or backfill within `deadline`: it stops after the
    /// page it is applying commits and is marked failed ([`INTERRUPTED`]), its cursor
    /// unchanged (an upstream request in flight is abandoned, nothing of it written). If it
    /// has not stopped a moment before the deadline (its page's write has not returned),
    /// its row is marked failed here. Runs started afterwards stop before their first page.
    pub async fn shutdown(&self, deadline: Duration) -> Shutdown {
        let until = Instant::now() + deadline;
        // Keep a little of the deadline to mark the row if the run does not stop.
        let mark_budget = (deadline / 4).min(Duration::from_secs(1));
        let mut rx = self.subscribe();
        // `current` is set exactly while a run is going. Read before cancelling: a run
        // that stops at once on the cancel (waiting on the upstream, it does) would
        // otherwise be gone before it is looked for, and reported as no run at all.
        let running = rx.borrow().current.as_ref().map(|c| c.run_id);
        self.inner.shutdown.cancel();
        let Some(run_id) = running else {
            return Shutdown::Idle;
        };
        log::info!("Waiting for sync run {run_id} to commit its page and stop...");
        if tokio::time::timeout_at(until - mark_budget, rx.wait_for(|s| !s.is_running))
            .await
            .is_ok()
        {
            return Shutdown::Stopped { run_id };
        }
        log::warn!(
            "Sync run {run_id} did not stop in time (its page's database write has not returned); marking it failed"
        );
        let failed = quake_core::RunStatus::Failed;
        let mark = self.store().finish_run(run_id, failed, Some(INTERRUPTED));
        match tokio::time::timeout_at(until, mark).await {
            Ok(Ok(_)) => Shutdown::MarkedFailed { run_id },
            Ok(Err(e)) => {
                log::error!(
                    "Could not mark run {run_id} failed ({e}); the next run will mark it abandoned"
                );
                Shutdown::Unmarked { run_id }
            }
            Err(_) => {
                log::error!(
                    "Could not mark run {run_id} failed in time; the next run will mark it abandoned"
                );
                Shutdown::Unmarked { run_id }
            }
        }
    }
}
