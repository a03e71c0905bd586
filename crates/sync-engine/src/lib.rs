#![doc = include_str!("../README.md")]

pub mod engine;
pub mod record;
pub mod source;
pub mod status;

pub use engine::{
    Engine, EngineConfig, EngineError, StartOutcome, SyncOutcome, Trigger, summary, summary_line,
};
pub use source::{BoxFuture, EmscSource, FdsnSource, FeedSource, PageRequest, Source};
pub use status::{CurrentRun, StatusSnapshot};
