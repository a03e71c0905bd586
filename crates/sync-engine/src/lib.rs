#![doc = include_str!("../README.md")]

pub mod backfill;
pub mod config;
pub mod engine;
pub mod lag;
pub mod live;
mod pipeline;
pub mod policy;
pub mod progress;
pub mod record;
pub mod scheduler;
pub mod service;
pub mod source;
pub mod status;
pub mod upstream;

pub use backfill::{
    BackfillError, BackfillEvent, BackfillOptions, BackfillOutcome, PlanSummary, ProgressFn,
};
pub use config::{
    LiveSettings, LiveUrl, MIN_LIVE_INTERVAL_SECS, SourceSettings, SyncSettings,
    USGS_LIVE_FEED_URL, UpstreamUrl,
};
pub use engine::{
    DEFAULT_BATCH_SIZE, DEFAULT_INITIAL_LOOKBACK, DEFAULT_MAX_PAGES, DEFAULT_OVERLAP, Engine,
    EngineConfig, EngineError, MAX_BATCH_SIZE, StartOutcome, SyncOutcome, Trigger, summary,
    summary_line,
};
pub use lag::{LAG_BUCKETS, LagHistogram, LagHistograms, Lane};
pub use live::{DEFAULT_LIVE_INTERVAL, LiveConfig, LiveLane, LiveMode};
pub use scheduler::{Scheduler, SchedulerHandle, TickOutcome};
pub use service::{
    DEFAULT_INTERVAL, DEFAULT_STARTUP_DELAY, INTERRUPTED, Schedule, Shutdown, SyncService,
};
pub use source::{BoxFuture, EmscSource, FdsnSource, FeedSource, PageRequest, Source, SourceKind};
pub use status::{CurrentRun, LivePolls, LiveRole, LiveStatus, StatusSnapshot};
pub use upstream::{UpstreamCounts, UpstreamOutcome};
