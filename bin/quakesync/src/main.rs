//! `quakesync`: keeps a database in step with the USGS / EMSC earthquake catalogue.
//!
//! The binary only composes: configuration (`config`), the store, the upstream source and
//! the engine (`app`), and the commands of SPEC section 5.

mod app;
mod backfill;
mod cli;
mod config;
mod serve;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};
use sync_engine::{SyncOutcome, Trigger, summary_line};

/// `sync` exit code when another sync holds the lock (EX_TEMPFAIL).
const EXIT_SKIPPED: u8 = 75;

fn main() -> ExitCode {
    let matches = cli::Cli::command().get_matches();
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let config = match config::load(&matches) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("quakesync: {e}");
            return ExitCode::from(config::ConfigError::EXIT_CODE);
        }
    };
    if let cli::Command::Config = cli.command {
        return match config.redacted_toml() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(&format!("cannot print the configuration: {e}")),
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    let code = runtime.block_on(run(cli, config));
    // Do not wait on blocking work still queued (SQLite calls) once the command is done.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn run(cli: cli::Cli, config: config::Config) -> ExitCode {
    let migrate = !cli.no_migrate;
    match cli.command {
        cli::Command::Config => ExitCode::SUCCESS,
        cli::Command::Migrate => match app::store(&config, true).await {
            Err(e) => fail(&e),
            Ok(store) => {
                log::info!("Database {} is up to date", store.url_redacted());
                ExitCode::SUCCESS
            }
        },
        cli::Command::Sync(args) => match app::engine(&config, migrate).await {
            Err(e) => fail(&e),
            Ok(engine) => match engine.sync_once(Trigger::Cli).await {
                Err(e) => fail(&e.to_string()),
                Ok(outcome) => report(outcome, args.json),
            },
        },
        cli::Command::Serve => serve::serve(&config, migrate).await,
        cli::Command::Backfill(args) => backfill::run(&config, &args, migrate).await,
    }
}

fn fail(msg: &str) -> ExitCode {
    fail_with(msg, 1)
}

/// Logs and prints `msg`; the process exits with `code`.
fn fail_with(msg: &str, code: u8) -> ExitCode {
    log::error!("{msg}");
    eprintln!("quakesync: {msg}");
    ExitCode::from(code)
}

/// The end of a `sync` or `backfill`: prints the run (its summary line, or with `json` its
/// row as JSON) and gives the exit code: 0 succeeded, 1 failed, 75 skipped (lock held).
fn report(outcome: SyncOutcome, json: bool) -> ExitCode {
    let run = match outcome {
        SyncOutcome::Skipped { running_run_id } => {
            let who = running_run_id
                .map(|id| format!(" (run {id})"))
                .unwrap_or_default();
            eprintln!("quakesync: another sync is running{who}; skipped");
            return ExitCode::from(EXIT_SKIPPED);
        }
        SyncOutcome::Succeeded(run) | SyncOutcome::Failed(run) => run,
    };
    if !json {
        println!("{}", summary_line(&run));
    } else if let Err(e) = serde_json::to_string_pretty(&run).map(|s| println!("{s}")) {
        return fail(&e.to_string());
    }
    // 0 (SUCCESS) when it succeeded, else 1 (FAILURE).
    ExitCode::from(u8::from(run.status != quake_core::RunStatus::Succeeded))
}
