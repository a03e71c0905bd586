//! Freshness measured: the commit lag of every insert and update (the commit time minus the
//! event's upstream `updated`), by lane: the live lane ([`Lane::Live`]) and the scheduled or
//! manual sync ([`Lane::Sync`]); a backfill's pages are not observed (their events are old
//! by design). What `quakesync_event_lag_seconds` reports
//! ([`Engine::lag_histograms`](crate::Engine::lag_histograms)), and the latest lag
//! (`latest_lag_seconds` of [`StatusSnapshot`](crate::StatusSnapshot)).

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use quake_store::{EventRecord, Outcome, PageResult};
use serde::Serialize;

use crate::engine::Engine;

/// Upper bounds (seconds) of the lag histogram's buckets: 1 s to 1 h.
pub const LAG_BUCKETS: [f64; 16] = [
    1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0, 1800.0,
    3600.0,
];

/// Which lane committed a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// The live lane (the polled summary feed, or the push service).
    Live,
    /// A scheduled or manual sync (the EMSC catch-up included).
    Sync,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Live, Lane::Sync];

    /// The `lane` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Live => "live",
            Lane::Sync => "sync",
        }
    }
}

/// A cumulative histogram of lags, in [`LAG_BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LagHistogram {
    /// Observations at or under each bound of [`LAG_BUCKETS`] (cumulative, as Prometheus).
    pub cumulative: [u64; LAG_BUCKETS.len()],
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// The sum of the observations, in seconds.
    pub sum: f64,
}

impl LagHistogram {
    fn observe(&mut self, secs: f64) {
        for (bound, n) in LAG_BUCKETS.iter().zip(self.cumulative.iter_mut()) {
            if secs <= *bound {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// The lag histograms of both lanes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LagHistograms {
    pub live: LagHistogram,
    pub sync: LagHistogram,
}

impl LagHistograms {
    /// The histogram of `lane`.
    pub fn get(&self, lane: Lane) -> &LagHistogram {
        match lane {
            Lane::Live => &self.live,
            Lane::Sync => &self.sync,
        }
    }
}

#[derive(Default)]
pub(crate) struct LagRecorder(Mutex<LagHistograms>);

impl LagRecorder {
    fn lock(&self) -> std::sync::MutexGuard<'_, LagHistograms> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The lag of a change to an event last updated upstream at `updated`, committed at
/// `commit`, in seconds (0 when the clocks disagree and it would be negative).
pub fn lag_seconds(commit: DateTime<Utc>, updated: DateTime<Utc>) -> f64 {
    ((commit - updated).num_milliseconds() as f64 / 1000.0).max(0.0)
}

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
