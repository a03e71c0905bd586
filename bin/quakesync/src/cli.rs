//! Command-line definitions (SPEC section 5), and the one table of configuration keys.
//!
//! Every configuration key is a global flag and an environment variable, through clap's
//! `env` ([`SETTINGS`]); the argument's id is the key's TOML path. Values stay text here:
//! [`crate::config::load`] types and checks them with the file's values, so an error names
//! the key and where the value came from whichever layer it is in.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Arg, ArgMatches, Args, FromArgMatches, Parser, Subcommand};

/// Keeps a database in step with the USGS / EMSC earthquake catalogue.
#[derive(Debug, Parser)]
#[command(name = "quakesync", version, about)]
pub struct Cli {
    /// Configuration file [default: config/quakesync.toml if present]
    #[arg(long, global = true, value_name = "PATH", env = "QUAKESYNC_CONFIG")]
    pub config: Option<PathBuf>,

    /// Do not apply migrations at start of `serve` and `sync`
    #[arg(long, global = true)]
    pub no_migrate: bool,

    #[command(flatten)]
    pub settings: Settings,

    #[command(subcommand)]
    pub command: Command,
}

/// Every configuration key: (TOML path = argument id, flag, environment variable, value
/// name, help). Flags override the environment, which overrides the file (SPEC section 4).
#[rustfmt::skip]
pub const SETTINGS: [(&str, &str, &str, &str, &str); 17] = [
    ("database.url", "database-url", "DATABASE_URL", "URL", "Database: postgres://…, postgresql://… or sqlite://PATH"),
    ("database.pool_size", "pool-size", "QUAKESYNC_DB_POOL_SIZE", "N", "Database connections in the pool, at least 1"),
    ("http.bind", "bind", "QUAKESYNC_BIND", "ADDR", "HTTP listen address, IP:PORT"),
    ("http.admin_token", "admin-token", "QUAKESYNC_ADMIN_TOKEN", "TOKEN", "Bearer token for POST /sync; unset disables it"),
    ("source.kind", "source-kind", "QUAKESYNC_SOURCE_KIND", "KIND", "Upstream: fdsn, feed or emsc"),
    ("source.url", "source-url", "QUAKESYNC_SOURCE_URL", "URL", "Upstream URL [default: the kind's]"),
    ("source.start_time", "start-time", "QUAKESYNC_START_TIME", "TIME", "Start of the first sync window, RFC 3339 [default: 24 hours before the first run]"),
    ("source.min_magnitude", "min-magnitude", "QUAKESYNC_MIN_MAGNITUDE", "MAG", "Skip events below this magnitude"),
    ("sync.enabled", "sync-enabled", "QUAKESYNC_SYNC_ENABLED", "BOOL", "Run the scheduler in `serve`"),
    ("sync.interval_secs", "interval-secs", "QUAKESYNC_SYNC_INTERVAL_SECS", "SECS", "Seconds between the starts of scheduled runs"),
    ("sync.startup_delay_secs", "startup-delay-secs", "QUAKESYNC_STARTUP_DELAY_SECS", "SECS", "Seconds from `serve` to the first scheduled run"),
    ("sync.batch_size", "batch-size", "QUAKESYNC_BATCH_SIZE", "N", "Events per upstream page, 1..=20000"),
    ("sync.overlap_secs", "overlap-secs", "QUAKESYNC_OVERLAP_SECS", "SECS", "Seconds the cursor is set back so no update is missed"),
    ("sync.max_retries", "max-retries", "QUAKESYNC_MAX_RETRIES", "N", "Retries per upstream request"),
    ("sync.http_timeout_secs", "http-timeout-secs", "QUAKESYNC_HTTP_TIMEOUT_SECS", "SECS", "Timeout per upstream request, at least 1"),
    ("sync.max_response_mb", "max-response-mb", "QUAKESYNC_MAX_RESPONSE_MB", "MIB", "Largest upstream response accepted, at least 1"),
    ("sync.max_pages", "max-pages", "QUAKESYNC_MAX_PAGES", "N", "Ceiling on page requests per run and per backfill window"),
];

/// The flags of [`SETTINGS`]; [`crate::config::load`] reads their values from the matches.
#[derive(Debug, Clone)]
pub struct Settings;

impl Args for Settings {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let cmd = cmd.next_help_heading("Configuration (flag > environment > file > default)");
        SETTINGS
            .iter()
            .fold(cmd, |cmd, &(key, flag, env, value_name, help)| {
                cmd.arg(
                    Arg::new(key)
                        .long(flag)
                        .env(env)
                        .global(true)
                        .allow_negative_numbers(true)
                        .value_name(value_name)
                        .help(help)
                        .hide_env_values(key == "http.admin_token" || key == "database.url"),
                )
            })
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for Settings {
    fn from_arg_matches(_: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Settings)
    }

    fn update_from_arg_matches(&mut self, _: &ArgMatches) -> Result<(), clap::Error> {
        Ok(())
    }
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
    quake_core::parse_utc(s).ok_or_else(|| format!("{s:?} is not an RFC 3339 timestamp"))
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
    fn global_settings_parse_after_the_subcommand() -> Result<(), clap::Error> {
        let matches = Cli::command().try_get_matches_from([
            "quakesync",
            "sync",
            "--json",
            "--config",
            "x.toml",
            "--batch-size",
            "500",
            "--no-migrate",
        ])?;
        let cli = Cli::from_arg_matches(&matches)?;
        assert!(matches!(
            cli.command,
            Command::Sync(SyncArgs { json: true })
        ));
        assert_eq!(cli.config, Some(PathBuf::from("x.toml")));
        assert_eq!(
            matches
                .get_one::<String>("sync.batch_size")
                .map(String::as_str),
            Some("500")
        );
        assert!(cli.no_migrate);
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
