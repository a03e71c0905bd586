//! `quakesync backfill --start T [--end T]` (SPEC section 5): composition only.
//!
//! The work is the engine's ([`sync_engine::Engine::backfill`]), and so is the progress
//! display ([`sync_engine::progress::terminal_or_log_lines`]); this module builds the engine
//! (whose source is the configured FDSN service), turns SIGINT/SIGTERM into a clean stop after the page being applied, prints the
//! summary line and maps the outcome to the exit code of `sync`: 0 succeeded, 1 failed
//! (interrupted included: run it again to resume), 75 skipped because a sync or another
//! backfill holds the lock, 2 for a range that is empty.

use std::process::ExitCode;
use std::time::Duration;

use sync_engine::{BackfillError, BackfillOptions, Engine, SourceKind};

use crate::app;
use crate::cli::BackfillArgs;
use crate::config::Config;

pub async fn run(config: &Config, args: &BackfillArgs, migrate: bool) -> ExitCode {
    if config.source.kind != SourceKind::Fdsn {
        return crate::fail(
            "backfill needs an FDSN event service (source.kind = \"fdsn\"): summary feeds have no history and EMSC has no count method",
        );
    }
    let engine = match app::engine(config, migrate).await {
        Ok(e) => e,
        Err(e) => return crate::fail(&e),
    };
    let opts = BackfillOptions {
        max_window_events: args.max_window_events,
        pause: Duration::from_millis(args.pause_ms),
        ..BackfillOptions::new(args.start, args.end)
    };
    let stop_on_signal = tokio::spawn(stop_on_signal(engine.clone()));
    let (progress, bar) = sync_engine::progress::terminal_or_log_lines();
    let outcome = engine.backfill(&opts, Some(progress)).await;
    stop_on_signal.abort();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let o = match outcome {
        Err(e @ BackfillError::InvalidRange(_)) => return crate::fail_with(&e.to_string(), 2),
        Err(e) => return crate::fail(&e.to_string()),
        Ok(o) => o,
    };
    let line = o.windows_line();
    let code = crate::report(o.outcome, false);
    if let Some(line) = line {
        eprintln!("quakesync: {line}");
    }
    if code == ExitCode::FAILURE {
        eprintln!("quakesync: run the same command again to resume: finished windows are kept");
    }
    code
}

/// SIGINT or SIGTERM: stop after the page being applied (the run is marked failed,
/// finished windows stay done).
async fn stop_on_signal(engine: Engine) {
    match app::stop_signal() {
        Ok(signal) => {
            signal.await;
        }
        Err(e) => {
            log::warn!("cannot install the SIGTERM handler ({e}); stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    log::warn!("Interrupted: stopping after the page being applied");
    engine.shutdown_token().cancel();
}
