//! Freshness measured: the commit lag of every insert and update (the commit time minus the
//! event's upstream `updated`), by lane: the live lane ([`Lane::Live`]) and the scheduled or
//! manual sync ([`Lane::Sync`]); a backfill's pages are not observed (their events are old
//! by design). What `quakesync_event_lag_seconds` reports
//! ([`Engine::lag_histograms`](crate::Engine::lag_histograms)), and the latest lag
//! (`latest_lag_seconds` of [`StatusSnapshot`](crate::StatusSnapshot)).

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

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
    pub(crate) fn observe(&mut self, secs: f64) {
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
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, LagHistograms> {
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
