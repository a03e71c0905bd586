//! `/metrics`: Prometheus text, every series pre-registered so it exists at 0.
//!
//! Run, record, skip and duration series follow the engine's in-memory snapshot (brought
//! up to date at each scrape; counters only ever grow by the difference). The pool gauge
//! reads the store's pool; the catalogue gauges query the database with a short timeout and
//! keep their last values when it does not answer (one row of counts the writes keep and
//! the newest `updated` from its index: no scan of the catalogue, whatever its size). `quakesync_upstream_requests_total`
//! follows the engine's own count of its upstream requests
//! ([`Engine::upstream_requests`](sync_engine::Engine::upstream_requests)).

use std::sync::{Arc, Mutex};

use actix_web::{HttpResponse, web};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use quake_core::RunStatus;
use sync_engine::{StatusSnapshot, UpstreamCounts, UpstreamOutcome};

use crate::{AppState, HttpError};

/// Record outcomes of `quakesync_sync_records_total{outcome}`.
pub const RECORD_OUTCOMES: [&str; 7] = [
    "fetched",
    "inserted",
    "updated",
    "unchanged",
    "deleted",
    "merged",
    "rejected",
];

/// Run statuses of `quakesync_sync_runs_total{status}`.
pub const RUN_STATUSES: [RunStatus; 2] = [RunStatus::Succeeded, RunStatus::Failed];

/// What the counters have already taken from the snapshot.
#[derive(Default)]
struct Seen {
    durations: u64,
}

/// The registry and every series of SPEC section 6.
pub struct Metrics {
    registry: Registry,
    runs: IntCounterVec,
    records: IntCounterVec,
    skipped: IntCounter,
    duration: Histogram,
    last_success: Gauge,
    in_progress: IntGauge,
    upstream: IntCounterVec,
    pool: IntGaugeVec,
    catalogue: IntGaugeVec,
    newest_update: Gauge,
    live_polls: IntCounterVec,
    live_records: IntCounterVec,
    live_leader: IntGauge,
    lag: Arc<LagCollector>,
    seen: Mutex<Seen>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every series in a fresh registry.
    pub fn new() -> Metrics {
        // The definitions are constants and the registry is fresh: this cannot fail.
        #[allow(clippy::expect_used)]
        Metrics::register(Registry::new()).expect("static metric definitions are valid")
    }

    /// Every series registered into `registry` (fails if these names are already there).
    pub fn register(registry: Registry) -> Result<Metrics, prometheus::Error> {
        let runs = IntCounterVec::new(
            Opts::new("quakesync_sync_runs_total", "Sync runs ended, by status"),
            &["status"],
        )?;
        let records = IntCounterVec::new(
            Opts::new(
                "quakesync_sync_records_total",
                "Records processed by sync runs, by outcome",
            ),
            &["outcome"],
        )?;
        let skipped = IntCounter::new(
            "quakesync_sync_skipped_total",
            "Syncs skipped because another sync held the lock",
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new("quakesync_sync_duration_seconds", "Duration of sync runs").buckets(
                vec![
                    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                ],
            ),
        )?;
        let last_success = Gauge::new(
            "quakesync_last_success_timestamp_seconds",
            "Unix time of the end of the last successful sync (0: none yet)",
        )?;
        let in_progress = IntGauge::new(
            "quakesync_sync_in_progress",
            "1 while this process runs a sync",
        )?;
        let upstream = IntCounterVec::new(
            Opts::new(
                "quakesync_upstream_requests_total",
                "Upstream page requests, by outcome (after the client's retries)",
            ),
            &["outcome"],
        )?;
        let pool = IntGaugeVec::new(
            Opts::new(
                "quakesync_db_pool_connections",
                "Database pool connections, by state (active, idle, max)",
            ),
            &["state"],
        )?;
        let catalogue = IntGaugeVec::new(
            Opts::new(
                "quakesync_catalogue_events",
                "Stored events, by state (live, deleted, merged)",
            ),
            &["state"],
        )?;
        let newest_update = Gauge::new(
            "quakesync_catalogue_newest_update_timestamp_seconds",
            "Unix time of the newest `updated` in the catalogue (0: empty)",
        )?;
        let live_polls = IntCounterVec::new(
            Opts::new(
                "quakesync_live_polls_total",
                "Live lane polls (or push batches), by outcome (modified, not_modified, error)",
            ),
            &["outcome"],
        )?;
        let live_records = IntCounterVec::new(
            Opts::new(
                "quakesync_live_records_total",
                "Records written by the live lane, by outcome",
            ),
            &["outcome"],
        )?;
        let live_leader = IntGauge::new(
            "quakesync_live_leader",
            "1 while this process leads the live lane (polls or listens)",
        )?;
        let lag = Arc::new(LagCollector::new()?);
        registry.register(Box::new(live_polls.clone()))?;
        registry.register(Box::new(live_records.clone()))?;
        registry.register(Box::new(live_leader.clone()))?;
        registry.register(Box::new(SharedLag(lag.clone())))?;
        registry.register(Box::new(runs.clone()))?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(skipped.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        registry.register(Box::new(in_progress.clone()))?;
        registry.register(Box::new(upstream.clone()))?;
        registry.register(Box::new(pool.clone()))?;
        registry.register(Box::new(catalogue.clone()))?;
        registry.register(Box::new(newest_update.clone()))?;
        // Pre-register every labelled series so it exists at 0.
        for s in RUN_STATUSES {
            runs.with_label_values(&[s.as_str()]);
        }
        for o in RECORD_OUTCOMES {
            records.with_label_values(&[o]);
        }
        for o in UpstreamOutcome::ALL {
            upstream.with_label_values(&[o.as_str()]);
        }
        for s in ["active", "idle", "max"] {
            pool.with_label_values(&[s]);
        }
        for s in ["live", "deleted", "merged"] {
            catalogue.with_label_values(&[s]);
        }
        for (o, _) in sync_engine::LivePolls::default().iter() {
            live_polls.with_label_values(&[o]);
        }
        for o in RECORD_OUTCOMES {
            live_records.with_label_values(&[o]);
        }
        Ok(Metrics {
            registry,
            runs,
            records,
            skipped,
            duration,
            last_success,
            in_progress,
            upstream,
            pool,
            catalogue,
            newest_update,
            live_polls,
            live_records,
            live_leader,
            lag,
            seen: Mutex::new(Seen::default()),
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Brings the upstream request series up to the engine's counts.
    fn observe_upstream(&self, counts: UpstreamCounts) {
        for (outcome, n) in counts.iter() {
            catch_up(&self.upstream.with_label_values(&[outcome.as_str()]), n);
        }
    }

    /// Brings the run series up to the snapshot.
    fn observe_snapshot(&self, snap: &StatusSnapshot) {
        let mut seen = match self.seen.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (status, n) in &snap.runs_total {
            catch_up(&self.runs.with_label_values(&[status.as_str()]), *n);
        }
        catch_up_outcomes(&self.records, &snap.records_total);
        catch_up(&self.skipped, snap.skipped_total);
        // Every ended run pushed one duration; the list keeps the latest 1000.
        let ended: u64 = snap.runs_total.values().sum();
        let new = ended.saturating_sub(seen.durations) as usize;
        let from = snap.durations.len().saturating_sub(new);
        for d in &snap.durations[from..] {
            self.duration.observe(*d);
        }
        seen.durations = ended;
        self.last_success.set(
            snap.last_success
                .map(|t| t.timestamp_millis() as f64 / 1000.0)
                .unwrap_or(0.0),
        );
        self.in_progress.set(i64::from(snap.is_running));
        let live = &snap.live;
        for (o, n) in live.polls.iter() {
            catch_up(&self.live_polls.with_label_values(&[o]), n);
        }
        catch_up_outcomes(&self.live_records, &live.records);
        self.live_leader
            .set(i64::from(live.role == sync_engine::LiveRole::Leader));
    }

    fn observe_pool(&self, state: quake_store::PoolState) {
        let active = state.connections.saturating_sub(state.idle);
        self.pool
            .with_label_values(&["active"])
            .set(i64::from(active));
        self.pool
            .with_label_values(&["idle"])
            .set(i64::from(state.idle));
        self.pool
            .with_label_values(&["max"])
            .set(i64::from(state.max));
    }

    fn observe_catalogue(
        &self,
        counts: quake_store::CatalogueCounts,
        newest: Option<quake_store::Ts>,
    ) {
        self.catalogue.with_label_values(&["live"]).set(counts.live);
        self.catalogue
            .with_label_values(&["deleted"])
            .set(counts.deleted);
        self.catalogue
            .with_label_values(&["merged"])
            .set(counts.merged);
        self.newest_update.set(
            newest
                .map(|t| t.0.timestamp_millis() as f64 / 1000.0)
                .unwrap_or(0.0),
        );
    }

    /// The registry in Prometheus text format.
    pub fn encode(&self) -> Result<String, HttpError> {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .map_err(|e| HttpError::Internal(format!("encoding metrics: {e}")))?;
        String::from_utf8(buf).map_err(|e| HttpError::Internal(format!("encoding metrics: {e}")))
    }
}

/// Raises a counter to `target` (counters only grow).
fn catch_up(c: &IntCounter, target: u64) {
    let now = c.get();
    if target > now {
        c.inc_by(target - now);
    }
}

/// Brings each record-outcome series of `vec` up to `k` (a run's or the live lane's counts).
fn catch_up_outcomes(vec: &IntCounterVec, k: &quake_store::RunCounts) {
    for (o, n) in RECORD_OUTCOMES.iter().zip([
        k.fetched,
        k.inserted,
        k.updated,
        k.unchanged,
        k.deleted,
        k.merged,
        k.rejected,
    ]) {
        catch_up(&vec.with_label_values(&[o]), n.max(0) as u64);
    }
}

pub(crate) async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, HttpError> {
    let m = &state.metrics;
    state.engine.with_status(|snap| m.observe_snapshot(snap));
    m.lag.set(state.engine.lag_histograms());
    m.observe_upstream(state.engine.upstream_requests());
    let store = state.engine.store();
    m.observe_pool(store.pool_state());
    let catalogue = crate::health::bounded(
        "Metrics: catalogue counts unavailable, keeping the last",
        async {
            let counts = store.catalogue_counts().await?;
            let newest = store.newest_update().await?;
            Ok::<_, quake_store::StoreError>((counts, newest))
        },
    )
    .await;
    if let Some((counts, newest)) = catalogue {
        m.observe_catalogue(counts, newest);
    }
    Ok(HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(m.encode()?))
}

/// `quakesync_event_lag_seconds{lane}`: the engine keeps the histograms
/// ([`Engine::lag_histograms`](sync_engine::Engine::lag_histograms)); this collector shows
/// the reading taken at the scrape.
struct LagCollector {
    desc: prometheus::core::Desc,
    latest: Mutex<sync_engine::LagHistograms>,
}

const LAG_NAME: &str = "quakesync_event_lag_seconds";
const LAG_HELP: &str = "Commit time minus the event's upstream `updated`, for inserts and updates, by lane (live, sync; backfills not observed)";

impl LagCollector {
    fn new() -> Result<LagCollector, prometheus::Error> {
        Ok(LagCollector {
            desc: prometheus::core::Desc::new(
                LAG_NAME.into(),
                LAG_HELP.into(),
                vec!["lane".into()],
                std::collections::HashMap::new(),
            )?,
            latest: Mutex::default(),
        })
    }

    fn set(&self, h: sync_engine::LagHistograms) {
        *self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = h;
    }
}

/// The collector as the registry holds it (the metrics keep a handle to feed it).
struct SharedLag(Arc<LagCollector>);

impl prometheus::core::Collector for SharedLag {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        vec![&self.0.desc]
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        use prometheus::proto;
        let all = self
            .0
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let metrics = sync_engine::Lane::ALL
            .iter()
            .map(|lane| {
                let h = all.get(*lane);
                let buckets = sync_engine::LAG_BUCKETS
                    .iter()
                    .zip(h.cumulative)
                    .map(|(bound, n)| {
                        let mut b = proto::Bucket::default();
                        b.set_upper_bound(*bound);
                        b.set_cumulative_count(n);
                        b
                    })
                    .collect();
                let mut hist = proto::Histogram::default();
                hist.set_sample_count(h.count);
                hist.set_sample_sum(h.sum);
                hist.set_bucket(buckets);
                let mut label = proto::LabelPair::default();
                label.set_name("lane".into());
                label.set_value(lane.as_str().into());
                let mut m = proto::Metric::default();
                m.set_label(vec![label]);
                m.set_histogram(hist);
                m
            })
            .collect();
        let mut family = proto::MetricFamily::default();
        family.set_name(LAG_NAME.into());
        family.set_help(LAG_HELP.into());
        family.set_field_type(proto::MetricType::HISTOGRAM);
        family.set_metric(metrics);
        vec![family]
    }
}
