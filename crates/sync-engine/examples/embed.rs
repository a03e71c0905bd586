//! A host process that embeds the sync engine and its scheduler: its own tokio runtime, no
//! actix, nothing copied from the `quakesync` binary.
//!
//! ```text
//! cargo run -p sync-engine --example embed -- UPSTREAM_QUERY_URL [DATABASE_URL [START_TIME]]
//! ```
//!
//! `UPSTREAM_QUERY_URL` is an FDSN event service's `…/fdsnws/event/1/query` (USGS's, another
//! quakesync's, or a local mock); `DATABASE_URL` is `sqlite://PATH` (default
//! `sqlite://embed.db`) or `postgres://…`; `START_TIME` (RFC 3339) is where the first run
//! starts reading (default: 24 hours ago). The example starts the service (the first
//! scheduled run at once, then one every 10 minutes), waits for that run, triggers a manual
//! one, prints both summary lines and the upstream request counts, and shuts down.

use std::error::Error;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use quake_api::{FdsnClient, HttpOptions};
use quake_store::{Store, StoreOptions, SyncRun};
use sync_engine::{
    Engine, EngineConfig, FdsnSource, Schedule, StartOutcome, SyncOutcome, SyncService, Trigger,
    summary_line,
};

/// What one run of the example saw.
#[derive(Debug)]
pub struct Report {
    /// The first scheduled run.
    pub scheduled: SyncRun,
    /// The manual run triggered after it.
    pub manual: SyncRun,
    /// Upstream requests answered successfully.
    pub upstream_ok: u64,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(upstream) = args.first() else {
        eprintln!("usage: embed UPSTREAM_QUERY_URL [DATABASE_URL [START_TIME]]");
        return ExitCode::from(2);
    };
    let database = args.get(1).map_or("sqlite://embed.db", String::as_str);
    let start = match args.get(2).map(|s| s.parse::<DateTime<Utc>>()).transpose() {
        Ok(start) => start,
        Err(e) => {
            eprintln!("START_TIME: {e}");
            return ExitCode::from(2);
        }
    };
    match run(upstream, database, start) {
        Ok(report) => {
            println!("scheduled: {}", summary_line(&report.scheduled));
            println!("manual:    {}", summary_line(&report.manual));
            println!("upstream requests answered: {}", report.upstream_ok);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("embed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The whole host process: its own runtime, the service, one scheduled and one manual run.
pub fn run(
    upstream: &str,
    database: &str,
    start: Option<DateTime<Utc>>,
) -> Result<Report, Box<dyn Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // The engine: a store, a source, a configuration.
        let store = Store::connect(database, StoreOptions::default()).await?;
        store.migrate().await?;
        let client = FdsnClient::new(upstream, HttpOptions::default())?;
        let config = EngineConfig {
            start_time: start,
            ..EngineConfig::default()
        };
        let engine = Engine::new(store, Arc::new(FdsnSource(client)), config);
        engine.load_status().await?;

        // The service: the scheduler starts the first run at once.
        let schedule = Schedule {
            startup_delay: Duration::ZERO,
            ..Schedule::default()
        };
        let service = SyncService::start(engine, schedule);
        let mut status = service.subscribe();
        let ended = status
            .wait_for(|s| s.runs_total.values().sum::<u64>() >= 1)
            .await?;
        let scheduled = ended.last_run.clone().ok_or("no run recorded")?;
        drop(ended);

        // A manual run, as an admin endpoint of the host would start it.
        let manual = match service.trigger(Trigger::Manual).await? {
            StartOutcome::Started { handle, .. } => match handle.await? {
                SyncOutcome::Succeeded(run) | SyncOutcome::Failed(run) => run,
                SyncOutcome::Skipped { .. } => return Err("the manual run was skipped".into()),
            },
            StartOutcome::Busy { run_id } => {
                return Err(format!("another sync is running ({run_id:?})").into());
            }
        };
        let upstream_ok = service
            .upstream_requests()
            .get(sync_engine::UpstreamOutcome::Success);

        // A running sync would stop after its page and be marked failed.
        service.shutdown(Duration::from_secs(5)).await;
        Ok(Report {
            scheduled,
            manual,
            upstream_ok,
        })
    })
}

/// `cargo test` builds this example as a test (`test = true` in Cargo.toml) and runs it
/// against a local mock FDSN service serving a real USGS response.
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod common;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::common::*;

    #[test]
    fn runs_against_a_local_mock_upstream() {
        // The mock runs on a runtime of the test's; the example builds its own.
        let mock_runtime = tokio::runtime::Runtime::new().unwrap();
        let mock = FdsnMock::new(Catalogue::from_fixture(
            "usgs_4.5_week_2021-07-22T2023Z.geojson",
        ));
        let server = mock_runtime.block_on(fdsn_server(mock));
        let dir = tempfile::tempdir().unwrap();
        let database = format!("sqlite://{}", dir.path().join("embed.db").display());

        let report = super::run(
            &fdsn_url(&server),
            &database,
            Some("2021-07-01T00:00:00Z".parse().unwrap()),
        )
        .unwrap();
        assert_eq!(report.scheduled.trigger, "scheduled");
        assert_eq!(report.scheduled.status, "succeeded");
        assert_eq!(
            (report.scheduled.fetched, report.scheduled.inserted),
            (78, 78)
        );
        assert_eq!(report.manual.trigger, "manual");
        assert_eq!(report.manual.status, "succeeded");
        assert_eq!(report.manual.inserted, 0, "{:?}", report.manual);
        // One `count` and one page per run (pages of 100), each counted by the engine.
        assert_eq!(report.upstream_ok, 4);
        // What the example left in its database.
        let catalogue = mock_runtime.block_on(async {
            let store = quake_store::Store::connect(&database, Default::default())
                .await
                .unwrap();
            catalogue(&store).await
        });
        assert_eq!(catalogue.len(), 78);
    }
}
