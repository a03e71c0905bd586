//! Backfill progress: log lines, for a service or a command without a terminal
//! ([`log_lines`]), and with the `progress-bar` feature an indicatif bar for a terminal
//! (`bar`, `terminal_or_log_lines`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backfill::{BackfillEvent, ProgressFn};

#[derive(Default)]
struct Tally {
    started: Option<Instant>,
    expected: u64,
}

impl Tally {
    /// Events per second and the time left, from the records fetched so far in this run.
    fn rate_eta(&self, fetched: u64) -> (f64, Option<Duration>) {
        let secs = self
            .started
            .map(|s| s.elapsed().as_secs_f64())
            .unwrap_or(0.0);
        let rate = if secs > 0.0 {
            fetched as f64 / secs
        } else {
            0.0
        };
        let eta = (rate > 0.0)
            .then(|| Duration::from_secs_f64(self.expected.saturating_sub(fetched) as f64 / rate));
        (rate, eta)
    }
}

/// A backfill progress callback that logs one line per window done (events so far, rate
/// and time left): what `quakesync backfill` shows when it has no terminal.
pub fn log_lines() -> ProgressFn {
    let tally = Mutex::new(Tally::default());
    Arc::new(move |e: &BackfillEvent| {
        let Ok(mut t) = tally.lock() else { return };
        match e {
            BackfillEvent::Planned(p) => {
                t.started = Some(Instant::now());
                t.expected = p.expected_events;
            }
            BackfillEvent::WindowDone {
                window: (a, b),
                events,
                windows_done,
                windows_total,
                totals,
            } => {
                let fetched = totals.fetched.max(0) as u64;
                let (rate, eta) = t.rate_eta(fetched);
                log::info!(
                    "Backfill window {windows_done}/{windows_total} done: {} .. {}, {events} event(s); {fetched}/{} event(s) this run, {rate:.1}/s, ETA {}",
                    a.to_rfc3339(),
                    b.to_rfc3339(),
                    t.expected.max(fetched),
                    eta.map(quake_core::human_duration)
                        .unwrap_or_else(|| "-".into()),
                );
            }
            _ => {}
        }
    })
}

/// An indicatif bar on standard error when standard output and standard error are
/// terminals, else [`log_lines`]: what `quakesync backfill` shows. Clear the bar with
/// `finish_and_clear` once the backfill returns.
#[cfg(feature = "progress-bar")]
pub fn terminal_or_log_lines() -> (ProgressFn, Option<indicatif::ProgressBar>) {
    use std::io::IsTerminal as _;
    if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
        let (progress, bar) = bar();
        (progress, Some(bar))
    } else {
        (log_lines(), None)
    }
}

/// A spinner while the windows are planned, then a bar over the events to fetch (rate and
/// time left), with windows done/total in its message.
#[cfg(feature = "progress-bar")]
pub fn bar() -> (ProgressFn, indicatif::ProgressBar) {
    use indicatif::{ProgressBar, ProgressStyle};
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
            _ => {}
        }
    });
    (progress, bar)
}
