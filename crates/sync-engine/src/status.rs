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
}

impl StatusSnapshot {
    /// True when the last ended run failed.
    pub fn last_run_failed(&self) -> bool {
        self.last_run
            .as_ref()
            .is_some_and(|r| r.status == RunStatus::Failed)
    }
}
