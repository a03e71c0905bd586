//! The scheduler: the first sync `startup_delay` after start, then one every `interval`,
//! counted from the previous start (SPEC section 5, `serve`).
//!
//! Ticks come from `tokio::time::interval_at` with [`MissedTickBehavior::Skip`]: a tick
//! missed while the process was stalled is dropped, never fired in a burst. Each tick
//! starts a run as its own task; a tick that comes while that run is still going calls
//! [`Engine::sync_once`] anyway, which skips at once (the seed's warning, counted in
//! `skipped_total`), as does a tick that finds a manual run or another process syncing.
//! Ticks therefore never pile up behind a long run. A run that panics is caught (its
//! `JoinHandle` reports the panic) and logged; the loop goes on. Cancelling the token stops
//! the loop; a run in flight is left to the engine's own shutdown token.
//!
//! The next run time is published through a [`SchedulerHandle`] the status surface reads.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use quake_core::human_duration;

use crate::engine::{Engine, EngineError, SyncOutcome, Trigger};

/// What the status surface knows about the scheduler. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SchedulerHandle {
    enabled: bool,
    interval: Duration,
    startup_delay: Duration,
    next_run: watch::Receiver<Option<DateTime<Utc>>>,
}

impl SchedulerHandle {
    /// The handle of a scheduler that is turned off (`sync.enabled = false`): it reports
    /// the configured interval and delay but never a next run.
    pub fn disabled(interval: Duration, startup_delay: Duration) -> SchedulerHandle {
        let (_tx, next_run) = watch::channel(None);
        SchedulerHandle {
            enabled: false,
            interval,
            startup_delay,
            next_run,
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn startup_delay(&self) -> Duration {
        self.startup_delay
    }

    /// When the next scheduled tick fires; `None` when disabled or stopped.
    pub fn next_run_at(&self) -> Option<DateTime<Utc>> {
        *self.next_run.borrow()
    }
}

/// How one scheduled run ended, as the loop saw it.
#[derive(Debug)]
pub enum TickOutcome {
    /// The run finished (succeeded, failed or skipped by the engine).
    Finished(SyncOutcome),
    /// The run could not start (its run row could not be written).
    Error(EngineError),
    /// The run's task panicked; the loop goes on.
    Panicked(String),
}

/// The sync scheduler of one engine.
pub struct Scheduler {
    engine: Engine,
    interval: Duration,
    startup_delay: Duration,
    cancel: CancellationToken,
    next_run: watch::Sender<Option<DateTime<Utc>>>,
}

impl Scheduler {
    /// A scheduler that stops when `cancel` is cancelled. `interval` is clamped to at least
    /// one millisecond (tokio refuses a zero period).
    pub fn new(
        engine: Engine,
        interval: Duration,
        startup_delay: Duration,
        cancel: CancellationToken,
    ) -> Scheduler {
        let (next_run, _) = watch::channel(None);
        Scheduler {
            engine,
            interval: interval.max(Duration::from_millis(1)),
            startup_delay,
            cancel,
            next_run,
        }
    }

    /// A handle that reads the next run time, for the status surface.
    pub fn handle(&self) -> SchedulerHandle {
        SchedulerHandle {
            enabled: true,
            interval: self.interval,
            startup_delay: self.startup_delay,
            next_run: self.next_run.subscribe(),
        }
    }

    /// Runs the loop on its own task.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run())
    }

    /// Runs the loop until the token is cancelled.
    pub async fn run(self) {
        let first = Instant::now() + self.startup_delay;
        let mut ticker = tokio::time::interval_at(first, self.interval);
        // Explicit: the default (Burst) would fire every missed tick back to back.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        self.publish(first);
        log::info!(
            "Scheduler started: first sync in {} (at {}), then every {}",
            human_duration(self.startup_delay),
            fmt_time(self.next_run.borrow().as_ref()),
            human_duration(self.interval),
        );
        let mut current: Option<JoinHandle<Result<SyncOutcome, EngineError>>> = None;
        loop {
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                res = join(&mut current), if current.is_some() => {
                    current = None;
                    let outcome = tick_outcome(res);
                    self.report(&outcome);
                    log::info!(
                        "Next sync in {} (at {})...",
                        human_duration(self.until_next()),
                        fmt_time(self.next_run.borrow().as_ref()),
                    );
                }
                tick = ticker.tick() => {
                    self.publish(next_deadline(tick, self.interval, Instant::now()));
                    if current.is_some() {
                        // Our own run is still going: the engine skips this tick at once,
                        // with the seed's warning, and counts it.
                        let outcome = match self.engine.sync_once(Trigger::Scheduled).await {
                            Ok(o) => TickOutcome::Finished(o),
                            Err(e) => TickOutcome::Error(e),
                        };
                        self.report(&outcome);
                    } else {
                        let engine = self.engine.clone();
                        current = Some(tokio::spawn(async move {
                            engine.sync_once(Trigger::Scheduled).await
                        }));
                    }
                }
            }
        }
        self.next_run.send_replace(None);
        log::info!("Scheduler stopped");
    }

    fn publish(&self, next: Instant) {
        let wait = next.saturating_duration_since(Instant::now());
        let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
        self.next_run.send_replace(Some(at));
    }

    /// Time to the next tick, rounded to the second (for the log line).
    fn until_next(&self) -> Duration {
        let ms = self
            .next_run
            .borrow()
            .map(|t| (t - Utc::now()).num_milliseconds().max(0))
            .unwrap_or_default();
        Duration::from_secs((ms as u64 + 500) / 1000)
    }

    fn report(&self, outcome: &TickOutcome) {
        match outcome {
            // The engine logs its own summary line and skip warning.
            TickOutcome::Finished(_) => {}
            TickOutcome::Error(e) => log::error!("Scheduled sync could not start: {e}"),
            TickOutcome::Panicked(msg) => {
                log::error!("Scheduled sync panicked: {msg}; the scheduler goes on")
            }
        }
    }
}

/// Awaits the run in flight (pending forever when there is none).
async fn join<T>(current: &mut Option<JoinHandle<T>>) -> Result<T, JoinError> {
    match current {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

fn tick_outcome(res: Result<Result<SyncOutcome, EngineError>, JoinError>) -> TickOutcome {
    match res {
        Ok(Ok(o)) => TickOutcome::Finished(o),
        Ok(Err(e)) => TickOutcome::Error(e),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            TickOutcome::Panicked(msg)
        }
        Err(e) => TickOutcome::Panicked(e.to_string()),
    }
}

/// The deadline after the tick that fired at `tick`, as `MissedTickBehavior::Skip` computes
/// it: the next multiple of `interval` after `tick` that is not already past.
fn next_deadline(tick: Instant, interval: Duration, now: Instant) -> Instant {
    let mut next = tick + interval;
    if next <= now {
        let behind = now - tick;
        let periods = behind.as_nanos() / interval.as_nanos().max(1) + 1;
        next = tick + interval * u32::try_from(periods).unwrap_or(u32::MAX);
    }
    next
}

fn fmt_time(t: Option<&DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use quake_api::{ApiError, Page};
    use quake_store::{Store, StoreOptions};

    use crate::engine::EngineConfig;
    use crate::source::{BoxFuture, PageRequest, Source};

    /// An upstream that answers an empty page once its gate is open (open unless the test
    /// closes it), panicking on call `panic_on`.
    struct FakeSource {
        open: watch::Sender<bool>,
        /// Calls so far (a watch, so a test can wait for the run to reach the source).
        calls: watch::Sender<u32>,
        panic_on: Option<u32>,
    }

    impl Source for FakeSource {
        fn name(&self) -> &str {
            "fake"
        }
        fn kind(&self) -> &str {
            "fdsn"
        }
        fn url(&self) -> &str {
            "http://fake.invalid/query"
        }
        fn fetch_page<'a>(
            &'a self,
            _req: &'a PageRequest,
        ) -> BoxFuture<'a, Result<Page, ApiError>> {
            let mut n = 0;
            self.calls.send_modify(|c| {
                *c += 1;
                n = *c;
            });
            let mut open = self.open.subscribe();
            Box::pin(async move {
                let _ = open.wait_for(|o| *o).await;
                if self.panic_on == Some(n) {
                    panic!("fake source panics on call {n}");
                }
                Ok(Page::default())
            })
        }
    }

    async fn setup(
        open: bool,
        panic_on: Option<u32>,
    ) -> (Engine, Arc<FakeSource>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
        store.migrate().await.unwrap();
        let source = Arc::new(FakeSource {
            open: watch::channel(open).0,
            calls: watch::channel(0).0,
            panic_on,
        });
        let engine = Engine::new(store, source.clone(), EngineConfig::default());
        (engine, source, dir)
    }

    async fn run_rows(engine: &Engine) -> Vec<quake_store::SyncRun> {
        engine.store().latest_runs(100).await.unwrap()
    }

    /// Waits for a status the engine publishes (60 s only guards against a hang).
    async fn wait_until(engine: &Engine, f: impl Fn(&crate::StatusSnapshot) -> bool) {
        let mut rx = engine.subscribe();
        tokio::time::timeout(Duration::from_secs(60), rx.wait_for(|s| f(s)))
            .await
            .expect("condition reached")
            .unwrap();
    }

    /// Timers never fire early, so lower bounds on when things happened hold on any
    /// machine; nothing here bounds how late they may happen.
    #[tokio::test]
    async fn the_first_run_waits_for_the_startup_delay() {
        let (engine, source, _dir) = setup(true, None).await;
        let cancel = CancellationToken::new();
        let delay = Duration::from_millis(500);
        let interval = Duration::from_secs(60);
        let t0 = Utc::now();
        let scheduler = Scheduler::new(engine.clone(), interval, delay, cancel.clone());
        let handle = scheduler.handle();
        assert!(handle.enabled());
        let join = scheduler.spawn();

        wait_until(&engine, |s| s.runs_total.get("succeeded") == Some(&1)).await;
        assert_eq!(*source.calls.borrow(), 1);
        let rows = run_rows(&engine).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].trigger, "scheduled");
        let started = rows[0].started_at.0;
        assert!(started >= t0 + delay, "started {started}, spawned {t0}");
        // The next tick is an interval after this one: after the run started, and no
        // earlier than the delay plus the interval.
        let next = handle.next_run_at().unwrap();
        assert!(next > started, "{next} {started}");
        assert!(next <= started + interval, "{next} {started}");
        assert!(next >= t0 + delay + interval, "{next} {t0}");

        cancel.cancel();
        tokio::time::timeout(Duration::from_secs(60), join)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(handle.next_run_at(), None);
    }

    #[tokio::test]
    async fn before_the_startup_delay_the_next_run_is_announced_and_nothing_runs() {
        let (engine, source, _dir) = setup(true, None).await;
        let cancel = CancellationToken::new();
        let t0 = Utc::now();
        let delay = Duration::from_secs(3600);
        let scheduler = Scheduler::new(
            engine.clone(),
            Duration::from_secs(60),
            delay,
            cancel.clone(),
        );
        let handle = scheduler.handle();
        let mut next_run = scheduler.next_run.subscribe();
        let join = scheduler.spawn();
        let next =
            tokio::time::timeout(Duration::from_secs(60), next_run.wait_for(Option::is_some))
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        assert!(next >= t0 + delay && next <= Utc::now() + delay, "{next}");
        assert_eq!(handle.next_run_at(), Some(next));
        assert_eq!(*source.calls.borrow(), 0);
        assert!(run_rows(&engine).await.is_empty());
        cancel.cancel();
        join.await.unwrap();
        assert_eq!(*source.calls.borrow(), 0, "stopped before its first tick");
    }

    #[tokio::test]
    async fn ticks_during_a_long_run_are_skipped() {
        // The run waits at the source until the test opens it.
        let (engine, source, _dir) = setup(false, None).await;
        let cancel = CancellationToken::new();
        let join = Scheduler::new(
            engine.clone(),
            Duration::from_millis(20),
            Duration::ZERO,
            cancel.clone(),
        )
        .spawn();
        // The run is at the source (held), and two ticks have met it since.
        let mut calls = source.calls.subscribe();
        tokio::time::timeout(Duration::from_secs(60), calls.wait_for(|c| *c >= 1))
            .await
            .unwrap()
            .unwrap();
        let skipped = engine.status().skipped_total;
        wait_until(&engine, |s| s.is_running && s.skipped_total >= skipped + 2).await;
        assert_eq!(*source.calls.borrow(), 1);
        assert_eq!(run_rows(&engine).await.len(), 1);
        cancel.cancel();
        join.await.unwrap();
        assert!(
            engine.status().is_running,
            "stopping the scheduler leaves the run"
        );
        source.open.send_replace(true);
        // The run in flight is not cut short by stopping the scheduler.
        wait_until(&engine, |s| !s.is_running).await;
        let rows = run_rows(&engine).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].status, "succeeded");
    }

    #[tokio::test]
    async fn a_panicking_run_does_not_stop_the_scheduler() {
        let (engine, source, _dir) = setup(true, Some(1)).await;
        let cancel = CancellationToken::new();
        let join = Scheduler::new(
            engine.clone(),
            Duration::from_millis(20),
            Duration::ZERO,
            cancel.clone(),
        )
        .spawn();
        wait_until(&engine, |s| s.runs_total.get("succeeded") == Some(&1)).await;
        assert!(*source.calls.borrow() >= 2);
        cancel.cancel();
        join.await.unwrap();
        let rows = run_rows(&engine).await;
        assert!(rows.len() >= 2, "{rows:?}");
        // The panicked run's row is swept by the next run.
        assert_eq!(rows.last().unwrap().status, "abandoned", "{rows:?}");
        assert!(rows.iter().any(|r| r.status == "succeeded"), "{rows:?}");
    }

    #[test]
    fn next_deadline_skips_missed_ticks() {
        let t = Instant::now();
        let i = Duration::from_secs(10);
        assert_eq!(next_deadline(t, i, t + Duration::from_secs(1)), t + i);
        assert_eq!(
            next_deadline(t, i, t + Duration::from_secs(25)),
            t + Duration::from_secs(30)
        );
        assert_eq!(
            next_deadline(t, i, t + Duration::from_secs(10)),
            t + Duration::from_secs(20)
        );
    }
}
