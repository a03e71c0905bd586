//! Command-line definitions (SPEC section 5).
//!
//! The override flags are kept as raw strings: `config::load` parses and
//! validates them with the same rules (and the same error messages naming the
//! key) as the config file and the environment.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

/// Keeps a database in step with the USGS / EMSC earthquake catalogue.
#[derive(Debug, Parser)]
#[command(name = "quakesync", version, about)]
pub struct Cli {
    /// Configuration file [default: $QUAKESYNC_CONFIG, else config/quakesync.toml if present]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub overrides: Overrides,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags that override the config file and the environment.
#[derive(Debug, Default, Clone, Args)]
pub struct Overrides {
    /// Database URL (postgres://…, postgresql://… or sqlite://PATH) [env: DATABASE_URL]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// HTTP listen address [env: QUAKESYNC_BIND]
    #[arg(long, global = true, value_name = "ADDR")]
    pub bind: Option<String>,

    /// Upstream source: fdsn, feed or emsc [env: QUAKESYNC_SOURCE_KIND]
    #[arg(long, global = true, value_name = "KIND")]
    pub source_kind: Option<String>,

    /// Upstream URL [env: QUAKESYNC_SOURCE_URL]
    #[arg(long, global = true, value_name = "URL")]
    pub source_url: Option<String>,

    /// Start of the first sync window, RFC 3339 [env: QUAKESYNC_START_TIME]
    #[arg(long, global = true, value_name = "TIME")]
    pub start_time: Option<String>,

    /// Events per upstream page, 1..=20000 [env: QUAKESYNC_BATCH_SIZE]
    #[arg(long, global = true, value_name = "N")]
    pub batch_size: Option<String>,

    /// Do not apply migrations at start of `serve` and `sync`
    #[arg(long, global = true)]
    pub no_migrate: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Migrate, then run the HTTP surface and the sync scheduler
    Serve,
    /// Run one sync now, then exit (0 succeeded, 1 failed, 75 skipped: lock held)
    Sync(SyncArgs),
    /// Apply database migrations and exit
    Migrate,
    /// Fill a time range through FDSN windows (resumable)
    Backfill(BackfillArgs),
    /// Print the effective configuration, secrets redacted
    Config,
}

#[derive(Debug, Clone, Args)]
pub struct SyncArgs {
    /// Print the run row as JSON instead of the summary line
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    /// Start of the range, RFC 3339
    #[arg(long, value_name = "TIME", value_parser = parse_timestamp)]
    pub start: DateTime<Utc>,

    /// End of the range, RFC 3339 [default: the end of an unfinished backfill with the
    /// same start (to resume it), else now]
    #[arg(long, value_name = "TIME", value_parser = parse_timestamp)]
    pub end: Option<DateTime<Utc>>,

    /// Pause between two upstream requests, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = sync_engine::backfill::DEFAULT_PAUSE.as_millis() as u64)]
    pub pause_ms: u64,

    /// Split windows holding more events than this, even when the service allows more
    /// [default: the service's maxAllowed, 20000 at USGS]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=20000))]
    pub max_window_events: Option<u64>,
}

fn parse_timestamp(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{s:?} is not an RFC 3339 timestamp"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_overrides_parse_after_the_subcommand() -> Result<(), clap::Error> {
        let cli = Cli::try_parse_from([
            "quakesync",
            "sync",
            "--json",
            "--config",
            "x.toml",
            "--batch-size",
            "500",
            "--no-migrate",
        ])?;
        assert!(matches!(
            cli.command,
            Command::Sync(SyncArgs { json: true })
        ));
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        assert_eq!(cli.overrides.batch_size.as_deref(), Some("500"));
        assert!(cli.overrides.no_migrate);
        Ok(())
    }

    #[test]
    fn backfill_parses_timestamps() -> Result<(), clap::Error> {
        let cli =
            Cli::try_parse_from(["quakesync", "backfill", "--start", "2024-01-01T00:00:00Z"])?;
        let Command::Backfill(args) = cli.command else {
            panic!("expected backfill");
        };
        assert_eq!(args.start.to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert_eq!(args.end, None);

        let err = Cli::try_parse_from(["quakesync", "backfill", "--start", "yesterday"])
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("RFC 3339"), "{err}");
        Ok(())
    }
}
