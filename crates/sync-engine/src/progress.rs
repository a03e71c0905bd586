//! Backfill progress as log lines, for a service or a command without a terminal.

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
