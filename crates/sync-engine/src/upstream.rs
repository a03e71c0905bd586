//! Upstream requests as the engine saw them: every page and count request of a sync or a
//! backfill is counted by outcome, after the client's retries. What
//! `quakesync_upstream_requests_total{outcome}` reports; an embedder reads
//! [`Engine::upstream_requests`](crate::Engine::upstream_requests) and wraps nothing.

use std::sync::atomic::{AtomicU64, Ordering};

use quake_api::ApiError;

/// How one upstream request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamOutcome {
    Success,
    /// A non-success HTTP status.
    HttpError,
    Timeout,
    ConnectError,
    /// A body that is not the JSON it should be, or too large.
    InvalidBody,
    /// Any other failure.
    Error,
}

impl UpstreamOutcome {
    pub const ALL: [UpstreamOutcome; 6] = [
        UpstreamOutcome::Success,
        UpstreamOutcome::HttpError,
        UpstreamOutcome::Timeout,
        UpstreamOutcome::ConnectError,
        UpstreamOutcome::InvalidBody,
        UpstreamOutcome::Error,
    ];

    /// The `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamOutcome::Success => "success",
            UpstreamOutcome::HttpError => "http_error",
            UpstreamOutcome::Timeout => "timeout",
            UpstreamOutcome::ConnectError => "connect_error",
            UpstreamOutcome::InvalidBody => "invalid_body",
            UpstreamOutcome::Error => "error",
        }
    }

    /// The outcome of a request that answered `res`.
    pub fn of<T>(res: &Result<T, ApiError>) -> UpstreamOutcome {
        match res {
            Ok(_) => UpstreamOutcome::Success,
            Err(ApiError::Status { .. }) => UpstreamOutcome::HttpError,
            Err(ApiError::Timeout { .. }) => UpstreamOutcome::Timeout,
            Err(ApiError::Connect { .. }) => UpstreamOutcome::ConnectError,
            Err(ApiError::InvalidBody { .. } | ApiError::TooLarge { .. }) => {
                UpstreamOutcome::InvalidBody
            }
            Err(_) => UpstreamOutcome::Error,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Requests counted by outcome since the engine was built.
#[derive(Debug, Default)]
pub(crate) struct UpstreamCounter([AtomicU64; 6]);

impl UpstreamCounter {
    pub(crate) fn record(&self, outcome: UpstreamOutcome) {
        self.0[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> UpstreamCounts {
        UpstreamCounts(std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)))
    }
}

/// A reading of the upstream request counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamCounts([u64; 6]);

impl UpstreamCounts {
    /// Requests that ended with `outcome`.
    pub fn get(&self, outcome: UpstreamOutcome) -> u64 {
        self.0[outcome.index()]
    }

    /// Every request counted.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(outcome, count)` for every outcome, zeros included.
    pub fn iter(&self) -> impl Iterator<Item = (UpstreamOutcome, u64)> + '_ {
        UpstreamOutcome::ALL.into_iter().map(|o| (o, self.get(o)))
    }
}
