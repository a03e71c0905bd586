//! The live lane: beside the scheduled sync, the freshest changes as soon as the upstream
//! publishes them (issue 18).
//!
//! - **Poll** (an http(s) URL; default for source kinds `fdsn` and `feed`: the USGS
//!   `all_hour` summary feed): a conditional GET every [`LiveConfig::interval`]
//!   (`If-None-Match`/`If-Modified-Since`). A 304 costs nothing and writes nothing; a
//!   changed feed is one batch.
//! - **Push** (a ws(s) URL; default for `emsc`: the EMSC WebSocket): every message is read
//!   as it comes ([`quake_api::EmscPush`]: pings, reconnects with backoff and jitter); the
//!   messages that arrive within [`LiveConfig::coalesce`] are one batch. After every
//!   connection opens (the first and each reconnect) a catch-up runs through the normal
//!   incremental sync ([`Engine::sync_once`], trigger `scheduled`), so what was pushed while
//!   nobody listened is read from the FDSN service; if a sync is running then (it may have
//!   started before the connection was lost), the catch-up runs again when it ends.
//!
//! **Leadership.** Every process runs the lane; only the holder of the live lock
//! ([`quake_store::Store::try_live_lock`]: a PostgreSQL advisory lock on a dedicated
//! connection, or the file `DB.live.lock` beside a SQLite database) polls or listens. The
//! others are standbys: they try to take the lock every [`LiveConfig::leader_retry`]
//! (15 s), so one takes over well within a minute after the leader dies (PostgreSQL frees
//! the lock with its connection). The leader checks it still holds the lock before each
//! write and steps down when it does not.
//!
//! **Writes.** A batch goes through the same policy ([`crate::policy::decide`]) and the
//! same page write ([`quake_store::Store::apply_page`], a SAVEPOINT per record) as a sync's
//! page, in a transaction that first takes the page-write lock and adds the batch to the
//! source's `live_lane` row ([`quake_store::PageWrite::live_batch`]). Every sync and backfill page takes the same lock (and, in
//! this process, the engine's page mutex), so no two pages are ever applied at once
//! anywhere: a live batch waits for at most one page of a running sync, and lands between
//! two of its pages. A batch that cannot be written is kept (polling: with the validators
//! of the feed it came from, which are used only once it is written) and written again
//! after [`LiveConfig::write_retry`]. The live lane's rejected records go to
//! `rejected_records` with no run id. No run row is written for the lane.
//!
//! **The catalogue's filter.** Records under `source.min_magnitude` (and, when it is set,
//! records without a magnitude) are dropped before a batch is written, as the FDSN service
//! asked with `minmagnitude` would never return them (`keeps`).
//!
//! **Repeated rejects.** The USGS regenerates `all_hour` every minute: a record it cannot
//! parse comes back in every feed. Polling remembers the rejects of the last feed written
//! (id and payload hash) and quarantines only the new ones; a feed whose only news is a
//! repeated reject writes nothing.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use chrono::{DateTime, Utc};
use quake_api::{
    ApiError, EmscPush, FeedClient, FeedPoll, HttpOptions, PushMessage, PushOptions, Validators,
};
use quake_store::LockCheck;
use quake_store::{EventRecord, NewRejected, PageResult, PageWrite, Ts};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::{Engine, SyncOutcome, Trigger};
use crate::lag::Lane;
use crate::record::into_record;
use crate::status::{LiveRole, LiveStatus};

/// The live lane's default poll interval (`live.interval_secs`).
pub const DEFAULT_LIVE_INTERVAL: Duration = Duration::from_secs(60);
/// How often a standby tries to take the lead ([`LiveConfig::leader_retry`]).
pub const DEFAULT_LEADER_RETRY: Duration = Duration::from_secs(15);
/// How soon a batch that could not be written is tried again ([`LiveConfig::write_retry`]).
pub const DEFAULT_WRITE_RETRY: Duration = Duration::from_secs(5);
/// How long push messages are gathered into one batch ([`LiveConfig::coalesce`]).
pub const DEFAULT_COALESCE: Duration = Duration::from_millis(200);
/// Push messages taken into one batch at most.
const MAX_BATCH: usize = 1000;

/// How the lane reads its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveMode {
    /// An http(s) summary feed, polled with conditional requests.
    Poll,
    /// A ws(s) push service (EMSC's protocol).
    Push,
}

impl LiveMode {
    /// The mode a URL asks for: `ws://` and `wss://` push, anything else polls.
    pub fn of_url(url: &str) -> LiveMode {
        let lower = url.trim_start().to_ascii_lowercase();
        if lower.starts_with("ws://") || lower.starts_with("wss://") {
            LiveMode::Push
        } else {
            LiveMode::Poll
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LiveMode::Poll => "poll",
            LiveMode::Push => "push",
        }
    }

    /// The `live_lane` row the lane's batches are summed into.
    pub fn source_name(self) -> &'static str {
        match self {
            LiveMode::Poll => "usgs-live",
            LiveMode::Push => "emsc-live",
        }
    }
}

/// The live lane's settings ([`crate::LiveSettings::config`] fills them from configuration;
/// the durations are plain values so that a test can shrink them).
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// The feed (http, https) or push service (ws, wss).
    pub url: String,
    /// Between the starts of two polls (`live.interval_secs`, at least 30 s in configuration).
    pub interval: Duration,
    /// How often a standby tries to take the lead (15 s).
    pub leader_retry: Duration,
    /// How soon a batch that could not be written is tried again (5 s).
    pub write_retry: Duration,
    /// Push messages arriving within this of the first are written as one batch (200 ms).
    pub coalesce: Duration,
    /// The polls' requests (timeout, retries, size cap).
    pub http: HttpOptions,
    /// The push client's settings.
    pub push: PushOptions,
}

impl LiveConfig {
    /// Defaults for `url`.
    pub fn new(url: &str) -> LiveConfig {
        LiveConfig {
            url: url.to_owned(),
            interval: DEFAULT_LIVE_INTERVAL,
            leader_retry: DEFAULT_LEADER_RETRY,
            write_retry: DEFAULT_WRITE_RETRY,
            coalesce: DEFAULT_COALESCE,
            http: HttpOptions::default(),
            push: PushOptions::default(),
        }
    }

    pub fn mode(&self) -> LiveMode {
        LiveMode::of_url(&self.url)
    }
}

/// The upstream client of the lane, made (and its URL checked) at start.
enum Upstream {
    Poll(Box<FeedClient>),
    Push,
}

/// The live lane, running on its own task. Stop it with [`LiveLane::stop`]
/// ([`crate::SyncService`] does, on shutdown).
pub struct LiveLane {
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl LiveLane {
    /// Starts the lane of `engine` on the current tokio runtime. Errors only for a URL the
    /// client refuses.
    pub fn start(engine: Engine, cfg: LiveConfig) -> Result<LiveLane, ApiError> {
        let mode = cfg.mode();
        let upstream = match mode {
            LiveMode::Poll => {
                Upstream::Poll(Box::new(FeedClient::new(&cfg.url, cfg.http.clone())?))
            }
            LiveMode::Push => Upstream::Push,
        };
        let shown = quake_core::redact_url(&cfg.url);
        engine.inner.status.send_modify(|s| {
            s.live = LiveStatus {
                enabled: true,
                url: shown.clone(),
                mode: mode.as_str().to_owned(),
                interval_seconds: cfg.interval.as_secs(),
                role: LiveRole::Standby,
                ..LiveStatus::default()
            };
        });
        log::info!(
            "Live lane: {} {shown}{}",
            if mode == LiveMode::Poll {
                "polling"
            } else {
                "listening to"
            },
            if mode == LiveMode::Poll {
                format!(" every {}", quake_core::human_duration(cfg.interval))
            } else {
                String::new()
            }
        );
        let cancel = CancellationToken::new();
        let lane = Runner {
            engine,
            cfg,
            mode,
            shown,
            upstream,
            cancel: cancel.clone(),
        };
        Ok(LiveLane {
            cancel,
            task: Some(tokio::spawn(lane.run())),
        })
    }

    /// Stops the lane within `deadline`: a batch being written commits or is rolled back
    /// (the task is aborted at the deadline), the push connection closes, the leadership
    /// is released.
    pub async fn stop(mut self, deadline: Duration) {
        self.cancel.cancel();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(deadline, &mut task).await.is_err()
        {
            log::warn!("Live lane: did not stop in time; aborted");
            task.abort();
        }
    }
}

impl Drop for LiveLane {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// How a term as leader ended.
enum Lead {
    /// Cancelled: the process is stopping.
    Stopped,
    /// The live lock is no longer this process's (its connection dropped).
    Lost,
    /// The upstream client could not start (the push client): the lock is released and
    /// taken again after [`LiveConfig::leader_retry`].
    Failed,
}

/// Why a batch was not written.
enum WriteError {
    Lost,
    Failed(String),
}

/// A batch waiting to be written.
#[derive(Default)]
struct Batch {
    records: Vec<EventRecord>,
    rejected: Vec<NewRejected>,
    /// When the poll (or the first message) that brought it was answered.
    at: Option<DateTime<Utc>>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.rejected.is_empty()
    }

    /// A feed's batch: its records the catalogue keeps (`min_magnitude`), and its rejects
    /// but those in `seen` (already quarantined from an earlier feed).
    fn of_page(
        page: quake_api::Page,
        at: DateTime<Utc>,
        min_magnitude: Option<f64>,
        seen: &HashSet<RejectKey>,
    ) -> Batch {
        Batch {
            rejected: page
                .rejected
                .iter()
                .filter(|r| !seen.contains(&RejectKey::of(r)))
                .map(rejected)
                .collect(),
            records: page
                .events
                .into_iter()
                .map(into_record)
                .filter(|r| keeps(min_magnitude, r))
                .collect(),
            at: Some(at),
        }
    }
}

/// True when the catalogue keeps `r`: no `min_magnitude`, or a magnitude at least that
/// (a record without a magnitude is not kept then: the FDSN service asked with
/// `minmagnitude` does not return it either).
fn keeps(min_magnitude: Option<f64>, r: &EventRecord) -> bool {
    min_magnitude.is_none_or(|min| r.magnitude.is_some_and(|m| m >= min))
}

/// What identifies a rejected record across feeds: its id and a hash of its payload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RejectKey(Option<String>, u64);

impl RejectKey {
    fn of(r: &quake_api::RejectedRecord) -> RejectKey {
        let mut h = DefaultHasher::new();
        r.payload.hash(&mut h);
        RejectKey(r.source_id.clone(), h.finish())
    }
}

/// The quarantine row of a record the lane's parser refused (no run).
fn rejected(r: &quake_api::RejectedRecord) -> NewRejected {
    NewRejected {
        run_id: None,
        source_id: r.source_id.clone(),
        reason: r.reason.clone(),
        payload: r.payload.clone(),
        rejected_at: Ts::now(),
    }
}

struct Runner {
    engine: Engine,
    cfg: LiveConfig,
    mode: LiveMode,
    shown: String,
    upstream: Upstream,
    cancel: CancellationToken,
}

impl Runner {
    fn status(&self, f: impl FnOnce(&mut LiveStatus)) {
        self.engine.inner.status.send_modify(|s| f(&mut s.live));
    }

    fn failed(&self, what: String) {
        let now = Utc::now();
        self.status(|l| {
            l.polls.error += 1;
            l.last_error = Some(what);
            l.last_error_at = Some(now);
        });
    }

    /// Sleeps `d`; true when cancelled meanwhile.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => true,
            () = tokio::time::sleep(d) => false,
        }
    }

    async fn run(self) {
        loop {
            if self.cancel.is_cancelled() {
                break;
            }
            let lock = match self.engine.store().try_live_lock().await {
                Ok(Some(lock)) => lock,
                Ok(None) => {
                    self.status(|l| l.role = LiveRole::Standby);
                    log::debug!("Live lane: another process leads; standing by");
                    if self.sleep(self.cfg.leader_retry).await {
                        break;
                    }
                    continue;
                }
                Err(e) => {
                    log::warn!("Live lane: could not try the leadership lock: {e}");
                    self.status(|l| l.role = LiveRole::Standby);
                    if self.sleep(self.cfg.leader_retry).await {
                        break;
                    }
                    continue;
                }
            };
            log::info!("Live lane: this process leads ({})", self.shown);
            self.status(|l| l.role = LiveRole::Leader);
            let check = lock.check();
            let end = match &self.upstream {
                Upstream::Poll(client) => self.lead_poll(client, &check).await,
                Upstream::Push => self.lead_push(&check).await,
            };
            self.status(|l| l.role = LiveRole::Standby);
            if let Err(e) = lock.release().await {
                log::debug!(
                    "Live lane: releasing the leadership lock failed ({e}); closing its connection frees it"
                );
            }
            match end {
                Lead::Stopped => break,
                Lead::Failed => {
                    log::warn!(
                        "Live lane: released the lead; trying again in {}",
                        quake_core::human_duration(self.cfg.leader_retry)
                    );
                    if self.sleep(self.cfg.leader_retry).await {
                        break;
                    }
                }
                Lead::Lost => {
                    log::warn!(
                        "Live lane: lost the leadership lock (its database connection closed); standing by"
                    );
                    if self
                        .sleep(self.cfg.leader_retry.min(self.cfg.write_retry))
                        .await
                    {
                        break;
                    }
                }
            }
        }
        self.status(|l| l.role = LiveRole::Standby);
        log::info!("Live lane stopped");
    }

    async fn still_leader(&self, check: &LockCheck) -> Result<bool, String> {
        check.is_held().await.map_err(crate::engine::db_error)
    }

    /// Polls the feed until cancelled or the lock is lost.
    async fn lead_poll(&self, client: &FeedClient, check: &LockCheck) -> Lead {
        let mut validators = Validators::default();
        // The rejects of the last feed written (those of a feed waiting go with it).
        let mut written_rejects: HashSet<RejectKey> = HashSet::new();
        let mut pending: Option<(Batch, Validators, HashSet<RejectKey>)> = None;
        let min_magnitude = self.engine.inner.config.min_magnitude;
        let mut next_poll = Instant::now();
        let mut retry_at = Instant::now();
        loop {
            let due = if pending.is_some() {
                next_poll.min(retry_at)
            } else {
                next_poll
            };
            tokio::select! {
                () = self.cancel.cancelled() => return Lead::Stopped,
                () = tokio::time::sleep_until(due) => {}
            }
            match self.still_leader(check).await {
                Ok(true) => {}
                Ok(false) => return Lead::Lost,
                Err(e) => {
                    log::warn!("Live lane: could not check the leadership lock: {e}");
                    self.failed(e);
                    retry_at = later(self.cfg.write_retry);
                    next_poll = next_poll.max(retry_at);
                    continue;
                }
            }
            if Instant::now() >= next_poll {
                next_poll = later(self.cfg.interval);
                let polled = tokio::select! {
                    () = self.cancel.cancelled() => return Lead::Stopped,
                    res = client.poll(&validators) => res,
                };
                let at = Utc::now();
                self.engine
                    .inner
                    .upstream
                    .record(crate::UpstreamOutcome::of(&polled));
                self.status(|l| l.last_poll_at = Some(at));
                match polled {
                    Ok(FeedPoll::NotModified) => {
                        self.status(|l| {
                            l.polls.not_modified += 1;
                            l.last_error = None;
                        });
                        log::debug!("Live lane: {} not modified", self.shown);
                    }
                    // The newest feed replaces a batch still waiting: it is the same hour
                    // of the catalogue, as of later.
                    Ok(FeedPoll::Modified { page, validators }) => {
                        let rejects = page.rejected.iter().map(RejectKey::of).collect();
                        let batch = Batch::of_page(page, at, min_magnitude, &written_rejects);
                        pending = Some((batch, validators, rejects));
                        retry_at = Instant::now();
                    }
                    Err(e) => {
                        log::warn!("Live lane: polling {} failed: {e}", self.shown);
                        self.failed(format!("upstream: {e}"));
                    }
                }
            }
            if pending.is_some()
                && Instant::now() >= retry_at
                && let Some((batch, v, rejects)) = pending.take()
            {
                match self.write(check, &batch).await {
                    Ok(_) => {
                        validators = v;
                        written_rejects = rejects;
                    }
                    Err(WriteError::Lost) => return Lead::Lost,
                    Err(WriteError::Failed(e)) => {
                        log::warn!(
                            "Live lane: writing the feed's changes failed ({e}); trying again in {}",
                            quake_core::human_duration(self.cfg.write_retry)
                        );
                        self.failed(e);
                        retry_at = later(self.cfg.write_retry);
                        pending = Some((batch, v, rejects));
                    }
                }
            }
        }
    }

    /// Listens to the push service until cancelled or the lock is lost.
    async fn lead_push(&self, check: &LockCheck) -> Lead {
        let mut push = match EmscPush::start(
            &self.cfg.url,
            self.cfg.push.clone(),
            self.cancel.child_token(),
        ) {
            Ok(p) => p,
            Err(e) => {
                log::error!("Live lane: cannot start the push client: {e}");
                self.failed(format!("upstream: {e}"));
                return Lead::Failed;
            }
        };
        let min_magnitude = self.engine.inner.config.min_magnitude;
        // A quiet leader checks its lock all the same: one whose session died must not
        // keep listening while another process leads.
        let mut leader_check = tokio::time::interval(self.cfg.leader_retry);
        leader_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        leader_check.reset();
        let catch_up_cancel = self.cancel.child_token();
        let mut catch_ups: Vec<JoinHandle<()>> = Vec::new();
        let mut batch = Batch::default();
        let mut retry_at: Option<Instant> = None;
        let mut buf = Vec::new();
        let end = loop {
            let waiting_retry = retry_at.is_some();
            let retry = retry_at.unwrap_or_else(Instant::now);
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break Lead::Stopped,
                n = push.recv_many(&mut buf, MAX_BATCH) => {
                    if n == 0 {
                        break Lead::Stopped;
                    }
                    if !self.cfg.coalesce.is_zero() && buf.len() < MAX_BATCH {
                        if self.sleep(self.cfg.coalesce).await {
                            break Lead::Stopped;
                        }
                        // Polled once: takes what arrived meanwhile, never waits.
                        let _ = tokio::time::timeout(
                            Duration::ZERO,
                            push.recv_many(&mut buf, MAX_BATCH),
                        )
                        .await;
                    }
                }
                () = tokio::time::sleep_until(retry), if waiting_retry => {}
                _ = leader_check.tick() => match self.still_leader(check).await {
                    Ok(true) => {}
                    Ok(false) => break Lead::Lost,
                    Err(e) => {
                        log::warn!("Live lane: could not check the leadership lock: {e}");
                        self.failed(e);
                    }
                },
            }
            let now = Utc::now();
            for msg in buf.drain(..) {
                match msg {
                    PushMessage::Connected { reconnect } => {
                        log::info!(
                            "Live lane: connected to {}{}; catching up through the sync",
                            self.shown,
                            if reconnect { " again" } else { "" }
                        );
                        catch_ups.retain(|t| !t.is_finished());
                        catch_ups.push(tokio::spawn(catch_up(
                            self.engine.clone(),
                            catch_up_cancel.clone(),
                            self.cfg.write_retry,
                            self.cfg.leader_retry,
                        )));
                    }
                    PushMessage::Event { event, .. } => {
                        let record = into_record(*event);
                        if keeps(min_magnitude, &record) {
                            batch.records.push(record);
                            batch.at.get_or_insert(now);
                        }
                    }
                    PushMessage::Rejected(r) => {
                        batch.rejected.push(rejected(&r));
                        batch.at.get_or_insert(now);
                    }
                    PushMessage::Disconnected { reason, retry_in } => {
                        log::warn!(
                            "Live lane: {reason}; connecting again in {}",
                            quake_core::human_duration(retry_in)
                        );
                        self.failed(format!("upstream: {reason}"));
                    }
                }
            }
            if batch.is_empty() || retry_at.is_some_and(|t| t > Instant::now()) {
                continue;
            }
            self.status(|l| l.last_poll_at = batch.at);
            match self.write(check, &batch).await {
                Ok(_) => {
                    batch = Batch::default();
                    retry_at = None;
                }
                Err(WriteError::Lost) => break Lead::Lost,
                Err(WriteError::Failed(e)) => {
                    log::warn!(
                        "Live lane: writing {} pushed record(s) failed ({e}); trying again in {}",
                        batch.records.len() + batch.rejected.len(),
                        quake_core::human_duration(self.cfg.write_retry)
                    );
                    self.failed(e);
                    retry_at = Some(later(self.cfg.write_retry));
                }
            }
        };
        catch_up_cancel.cancel();
        push.stop().await;
        // Stopping: a catch-up sync in flight is the engine's to stop (its shutdown runs
        // beside this). Losing the lead: a catch-up finishes on its own, detached.
        if matches!(end, Lead::Stopped) {
            for t in catch_ups {
                let _ = t.await;
            }
        }
        end
    }

    /// Writes one batch through the policy and the page write, under the page-write locks.
    async fn write(&self, check: &LockCheck, batch: &Batch) -> Result<PageResult, WriteError> {
        match self.still_leader(check).await {
            Ok(true) => {}
            Ok(false) => return Err(WriteError::Lost),
            Err(e) => return Err(WriteError::Failed(e)),
        }
        let at = batch.at.unwrap_or_else(Utc::now);
        let last_error = self.engine.with_status(|s| s.live.last_error.clone());
        let res = {
            let _page = self.engine.inner.page_lock.lock().await;
            let info = quake_store::LiveBatch {
                source: self.mode.source_name(),
                polled_at: Ts(at),
                last_error: last_error.as_deref(),
            };
            let page = PageWrite::new(&batch.records)
                .rejected(&batch.rejected)
                .live_batch(&info);
            (self
                .engine
                .store()
                .apply_page(page, crate::policy::decide)
                .await)
                .map_err(|e| WriteError::Failed(crate::engine::db_error(e)))?
        };
        self.engine.observe_lag(Lane::Live, &batch.records, &res);
        let k = res.counts;
        let changed = k.changed();
        let now = Utc::now();
        self.status(|l| {
            l.polls.modified += 1;
            l.last_error = None;
            l.records.add(&k);
            if changed {
                l.last_change_at = Some(now);
            }
        });
        if changed || k.rejected > 0 {
            log::info!("Live lane: {}: {}", self.shown, crate::engine::summary(&k));
        } else {
            log::debug!(
                "Live lane: {}: nothing new ({} unchanged)",
                self.shown,
                k.unchanged
            );
        }
        Ok(res)
    }
}

/// `d` from now (a year from now when that overflows).
fn later(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
}

/// A catch-up through the incremental sync, after the push connection (re)opened. A sync
/// found running (here or elsewhere) may have started before the connection was lost: the
/// catch-up runs again once it has ended (here: when it ends; another process's: tried
/// again every `elsewhere`, the leader retry, so that it does not spin on the sync lock).
async fn catch_up(engine: Engine, cancel: CancellationToken, retry: Duration, elsewhere: Duration) {
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let wait = match engine.sync_once(Trigger::Scheduled).await {
            Ok(SyncOutcome::Skipped { .. }) => {
                log::info!("Live lane: a sync is running; catching up again when it ends");
                true
            }
            Ok(SyncOutcome::Succeeded(_) | SyncOutcome::Failed(_)) => return,
            Err(e) => {
                log::warn!("Live lane: the catch-up sync could not start: {e}");
                false
            }
        };
        let mut rx = engine.subscribe();
        let running_here = wait && rx.borrow().is_running;
        let pause = if wait { elsewhere } else { retry };
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = rx.wait_for(|s| !s.is_running), if running_here => {}
            () = tokio::time::sleep(pause), if !running_here => {}
        }
    }
}
