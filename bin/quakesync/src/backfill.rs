//! `quakesync backfill --start T [--end T]` (SPEC section 5): composition and progress.
//!
//! The work is the engine's ([`sync_engine::Engine::backfill`]); this module builds the FDSN
//! client, shows progress (an indicatif bar when standard output and standard error are
//! terminals, else one log line per window), turns SIGINT/SIGTERM into a clean stop after
//! the page being applied, prints the summary line and maps the outcome to the exit code
//! of `sync`: 0 succeeded, 1 failed (interrupted included: run it again to resume), 75
//! skipped because a sync or another backfill holds the lock, 2 for a range that is empty.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use quake_api::FdsnClient;
use sync_engine::{
    BackfillError, BackfillEvent, BackfillOptions, Engine, FdsnSource, ProgressFn, SyncOutcome,
    summary_line,
};

use crate::app;
use crate::cli::BackfillArgs;
use crate::config::Config;

pub async fn run(config: &Config, args: &BackfillArgs, migrate: bool) -> ExitCode {
    if !matches!(config.source.kind, sync_engine::SourceKind::Fdsn) {
        return crate::fail(
            "backfill needs an FDSN event service (source.kind = \"fdsn\"): summary feeds have no history and EMSC has no count method",
        );
    }
    let client = match FdsnClient::new(config.source_url(), app::http_options(config)) {
        Ok(c) => c,
        Err(e) => return crate::fail(&e.to_string()),
    };
    // The engine's source is this client: one HTTP client for the counts and the pages.
    let source = Arc::new(FdsnSource(client.clone()));
    let engine = match app::engine_with_source(config, migrate, source).await {
        Ok(e) => e,
        Err(e) => return crate::fail(&e),
    };
    let opts = BackfillOptions {
        max_window_events: args.max_window_events,
        pause: Duration::from_millis(args.pause_ms),
        ..BackfillOptions::new(args.start, args.end)
    };
    let stop_on_signal = tokio::spawn(stop_on_signal(engine.clone()));
    let interactive = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let (progress, bar) = if interactive {
        let (p, bar) = bar_progress();
        (p, Some(bar))
    } else {
        (sync_engine::progress::log_lines(), None)
    };
    let outcome = engine.backfill(&client, &opts, Some(progress)).await;
    stop_on_signal.abort();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match outcome {
        Err(e @ BackfillError::InvalidRange(_)) => crate::fail_with(&e.to_string(), 2),
        Err(e) => crate::fail(&e.to_string()),
        Ok(o) => match o.outcome {
            SyncOutcome::Skipped { running_run_id } => crate::skipped(running_run_id),
            SyncOutcome::Succeeded(run) | SyncOutcome::Failed(run) => {
                println!("{}", summary_line(&run));
                if let Some(key) = &o.key {
                    eprintln!(
                        "quakesync: backfill {} .. {}: {} of {} window(s) done ({} this run); {} count and {} query request(s)",
                        key.range_start.0.to_rfc3339(),
                        key.range_end.0.to_rfc3339(),
                        o.plan.windows_done + o.windows_done,
                        o.plan
                            .windows_total
                            .max(o.plan.windows_done + o.windows_done),
                        o.windows_done,
                        o.count_requests,
                        o.query_requests,
                    );
                }
                if run.status == quake_core::RunStatus::Succeeded {
                    ExitCode::SUCCESS
                } else {
                    eprintln!(
                        "quakesync: run the same command again to resume: finished windows are kept"
                    );
                    ExitCode::FAILURE
                }
            }
        },
    }
}

/// SIGINT or SIGTERM: stop after the page being applied (the run is marked failed,
/// finished windows stay done).
async fn stop_on_signal(engine: Engine) {
    match app::StopSignals::install() {
        Ok(mut signals) => {
            signals.next().await;
        }
        Err(e) => {
            log::warn!("cannot install the SIGTERM handler ({e}); stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    log::warn!("Interrupted: stopping after the page being applied");
    engine.shutdown_token().cancel();
}

/// An indicatif bar over the events to fetch, with windows done/total in its message.
fn bar_progress() -> (ProgressFn, ProgressBar) {
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message("planning windows...");
    let style = ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{bar:32}] {human_pos}/{human_len} events ({per_sec:1}, ETA {eta}) {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    // (windows done, windows in the plan)
    let windows = Mutex::new((0u64, 0u64));
    let b = bar.clone();
    let progress: ProgressFn = Arc::new(move |e: &BackfillEvent| {
        let Ok(mut w) = windows.lock() else { return };
        match e {
            BackfillEvent::Counted {
                requests, count, ..
            } => b.set_message(format!(
                "planning windows: {requests} count request(s), last {}",
                count.map_or_else(|| "over the limit".to_string(), |c| c.to_string())
            )),
            BackfillEvent::Planned(p) => {
                *w = (p.windows_done, p.windows_total);
                b.set_style(style.clone());
                b.set_length(p.expected_events);
                b.set_position(0);
                b.reset_eta();
                b.set_message(format!("windows {}/{}", w.0, w.1));
            }
            BackfillEvent::Page { totals, .. } => {
                let pos = totals.fetched.max(0) as u64;
                if b.length().is_some_and(|l| pos > l) {
                    b.set_length(pos);
                }
                b.set_position(pos);
            }
            BackfillEvent::Split { .. } => {
                w.1 += 1;
                b.set_message(format!("windows {}/{}", w.0, w.1));
            }
            BackfillEvent::WindowDone {
                windows_done,
                windows_total,
                ..
            } => {
                *w = (*windows_done, *windows_total);
                b.set_message(format!("windows {windows_done}/{windows_total}"));
            }
            BackfillEvent::Started { .. } => {}
            _ => {}
        }
    });
    (progress, bar)
}
