//! The status snapshot: what `/sync-status`, `/health` and `/metrics` answer from memory.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use quake_core::{RunStatus, Trigger};
use quake_store::{RunCounts, SyncRun};
use serde::Serialize;

/// The run in progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurrentRun {
    pub run_id: i64,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    /// Counts of the pages committed so far.
    pub counts: RunCounts,
}

/// Everything the engine knows about itself, kept in memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusSnapshot {
    pub is_running: bool,
    pub current: Option<CurrentRun>,
    /// The last run that ended (any status).
    pub last_run: Option<SyncRun>,
    pub last_completed: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    /// The stored `updatedafter` watermark.
    pub cursor: Option<DateTime<Utc>>,
    /// Syncs skipped because another held the guard, since this process started.
    pub skipped_total: u64,
    /// Runs ended by status, since this process started.
    pub runs_total: BTreeMap<String, u64>,
    /// Record outcomes summed over the runs of this process.
    pub records_total: RunCounts,
    /// Durations (seconds) of the runs of this process, oldest first (at most 1000).
    pub durations: Vec<f64>,
    pub source_kind: String,
    pub source_url: String,
    /// `cluster` (PostgreSQL advisory lock) or `process` (SQLite).
    pub lock_scope: String,
    pub backend: String,
    /// The commit lag (seconds) of the latest page that inserted or updated something: that
    /// of its most recently updated event ([`crate::lag`]).
    pub latest_lag_seconds: Option<f64>,
    /// The lane that committed that page.
    pub latest_lag_lane: Option<crate::lag::Lane>,
    /// When that page committed.
    pub latest_lag_at: Option<DateTime<Utc>>,
    /// The live lane ([`crate::live`]).
    pub live: LiveStatus,
}

/// This process's part in the live lane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveRole {
    /// No live lane here (`live.enabled = false`, or an embedder that started none).
    #[default]
    Disabled,
    /// Another process leads (holds the live lock); this one retries now and then.
    Standby,
    /// This process polls (or listens) and writes.
    Leader,
}

impl LiveRole {
    pub fn as_str(self) -> &'static str {
        match self {
            LiveRole::Disabled => "disabled",
            LiveRole::Standby => "standby",
            LiveRole::Leader => "leader",
        }
    }
}

/// Polls (or push batches) by how they ended: `quakesync_live_polls_total{outcome}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LivePolls {
    /// The feed changed (or push messages arrived) and the batch was written.
    pub modified: u64,
    /// 304 Not Modified: nothing read, nothing written.
    pub not_modified: u64,
    /// The poll failed, the batch could not be written, or the push connection was lost.
    pub error: u64,
}

impl LivePolls {
    /// `(outcome label, count)`.
    pub fn iter(&self) -> [(&'static str, u64); 3] {
        [
            ("modified", self.modified),
            ("not_modified", self.not_modified),
            ("error", self.error),
        ]
    }
}

/// The live lane as this process sees it (in memory; the `live_lane` table keeps the
/// leader's written batches).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveStatus {
    pub enabled: bool,
    /// The feed or push service, redacted.
    pub url: String,
    /// `poll` (an http(s) summary feed) or `push` (a ws(s) push service).
    pub mode: String,
    /// Seconds between polls (polling only).
    pub interval_seconds: u64,
    pub role: LiveRole,
    /// The last poll answered (or push message received) by this process.
    pub last_poll_at: Option<DateTime<Utc>>,
    /// The last batch of this process that inserted, updated, deleted or merged something.
    pub last_change_at: Option<DateTime<Utc>>,
    /// The last failure (poll, write, push connection), cleared by nothing: see its time.
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub polls: LivePolls,
    /// Record outcomes of the batches this process wrote (`pages` = batches).
    pub records: RunCounts,
    /// The commit lag of the latest live batch that inserted or updated something.
    pub latest_lag_seconds: Option<f64>,
}

impl StatusSnapshot {
    /// True when the last ended run failed.
    pub fn last_run_failed(&self) -> bool {
        self.last_run
            .as_ref()
            .is_some_and(|r| r.status == RunStatus::Failed)
    }
}
