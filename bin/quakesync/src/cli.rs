//! Command-line definitions (SPEC section 5): the commands, and every configuration key as
//! a flag with its environment variable ([`Settings`]).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Arg, Args, Parser, Subcommand};

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

/// Every configuration key as a global flag and its environment variable (clap's `env`):
/// the argument's id is the key's TOML path. Values stay text here: [`crate::config::load`]
/// types and checks them with the file's, so an error names the key and its origin.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Configuration (flag > environment > file > default)")]
#[command(mut_args = setting)]
#[rustfmt::skip]
pub struct Settings {
    #[arg(id = "database.url", long = "database-url", env = "DATABASE_URL", value_name = "URL", hide_env_values = true, help = "Database: postgres://…, postgresql://… or sqlite://PATH")]
    pub database_url: Option<String>,
    #[arg(id = "database.pool_size", long = "pool-size", env = "QUAKESYNC_DB_POOL_SIZE", value_name = "N", help = "Database connections in the pool, at least 1")]
    pub pool_size: Option<String>,
    #[arg(id = "http.bind", long = "bind", env = "QUAKESYNC_BIND", value_name = "ADDR", help = "HTTP listen address, IP:PORT")]
    pub bind: Option<String>,
    #[arg(id = "http.admin_token", long = "admin-token", env = "QUAKESYNC_ADMIN_TOKEN", value_name = "TOKEN", hide_env_values = true, help = "Bearer token for POST /sync; unset disables it")]
    pub admin_token: Option<String>,
    #[arg(id = "source.kind", long = "source-kind", env = "QUAKESYNC_SOURCE_KIND", value_name = "KIND", help = "Upstream: fdsn, feed or emsc")]
    pub source_kind: Option<String>,
    #[arg(id = "source.url", long = "source-url", env = "QUAKESYNC_SOURCE_URL", value_name = "URL", help = "Upstream URL [default: the kind's]")]
    pub source_url: Option<String>,
    #[arg(id = "source.start_time", long = "start-time", env = "QUAKESYNC_START_TIME", value_name = "TIME", help = "Start of the first sync window, RFC 3339 [default: 24 hours before the first run]")]
    pub start_time: Option<String>,
    #[arg(id = "source.min_magnitude", long = "min-magnitude", env = "QUAKESYNC_MIN_MAGNITUDE", value_name = "MAG", help = "Skip events below this magnitude")]
    pub min_magnitude: Option<String>,
    #[arg(id = "sync.enabled", long = "sync-enabled", env = "QUAKESYNC_SYNC_ENABLED", value_name = "BOOL", help = "Run the scheduler in `serve`")]
    pub sync_enabled: Option<String>,
    #[arg(id = "sync.interval_secs", long = "interval-secs", env = "QUAKESYNC_SYNC_INTERVAL_SECS", value_name = "SECS", help = "Seconds between the starts of scheduled runs")]
    pub interval_secs: Option<String>,
    #[arg(id = "sync.startup_delay_secs", long = "startup-delay-secs", env = "QUAKESYNC_STARTUP_DELAY_SECS", value_name = "SECS", help = "Seconds from `serve` to the first scheduled run")]
    pub startup_delay_secs: Option<String>,
    #[arg(id = "sync.batch_size", long = "batch-size", env = "QUAKESYNC_BATCH_SIZE", value_name = "N", help = "Events per upstream page, 1..=20000")]
    pub batch_size: Option<String>,
    #[arg(id = "sync.overlap_secs", long = "overlap-secs", env = "QUAKESYNC_OVERLAP_SECS", value_name = "SECS", help = "Seconds the cursor is set back so no update is missed")]
    pub overlap_secs: Option<String>,
    #[arg(id = "sync.max_retries", long = "max-retries", env = "QUAKESYNC_MAX_RETRIES", value_name = "N", help = "Retries per upstream request")]
    pub max_retries: Option<String>,
    #[arg(id = "sync.http_timeout_secs", long = "http-timeout-secs", env = "QUAKESYNC_HTTP_TIMEOUT_SECS", value_name = "SECS", help = "Timeout per upstream request, at least 1")]
    pub http_timeout_secs: Option<String>,
    #[arg(id = "sync.max_response_mb", long = "max-response-mb", env = "QUAKESYNC_MAX_RESPONSE_MB", value_name = "MIB", help = "Largest upstream response accepted, at least 1")]
    pub max_response_mb: Option<String>,
    #[arg(id = "sync.max_pages", long = "max-pages", env = "QUAKESYNC_MAX_PAGES", value_name = "N", help = "Ceiling on page requests per run and per backfill window")]
    pub max_pages: Option<String>,
    #[arg(id = "live.enabled", long = "live-enabled", env = "QUAKESYNC_LIVE_ENABLED", value_name = "BOOL", help = "Run the live lane in `serve`")]
    pub live_enabled: Option<String>,
    #[arg(id = "live.url", long = "live-url", env = "QUAKESYNC_LIVE_URL", value_name = "URL", help = "Live feed (http/https, polled) or push service (ws/wss) [default: the kind's]")]
    pub live_url: Option<String>,
    #[arg(id = "live.interval_secs", long = "live-interval-secs", env = "QUAKESYNC_LIVE_INTERVAL_SECS", value_name = "SECS", help = "Seconds between two polls of the live feed, at least 30")]
    pub live_interval_secs: Option<String>,
    #[arg(id = "stream.retention_hours", long = "stream-retention-hours", env = "QUAKESYNC_STREAM_RETENTION_HOURS", value_name = "HOURS", help = "Hours a change stays resumable on /events/stream, at least 1")]
    pub stream_retention_hours: Option<String>,
    #[arg(id = "stream.client_buffer", long = "stream-client-buffer", env = "QUAKESYNC_STREAM_CLIENT_BUFFER", value_name = "N", help = "Changes queued per stream client before it is cut off, at least 1")]
    pub stream_client_buffer: Option<String>,
    #[arg(id = "stream.max_clients", long = "stream-max-clients", env = "QUAKESYNC_STREAM_MAX_CLIENTS", value_name = "N", help = "Concurrent /events/stream clients, at least 1")]
    pub stream_max_clients: Option<String>,
}

/// A key's flag works before or after the command, and takes a negative number (so that the
/// key's own check refuses it, naming the key).
fn setting(arg: Arg) -> Arg {
    if arg.get_id().as_str().contains('.') {
        arg.global(true).allow_negative_numbers(true)
    } else {
        arg
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
    use clap::{CommandFactory, FromArgMatches};

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
