//! Configuration (SPEC section 4).
//!
//! Precedence: built-in defaults < config file < environment < command-line flags.
//! Every value is parsed and validated where it is read, so an error names the key
//! and where the bad value came from. Secrets never appear in errors or output.

use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::cli::Overrides;

/// The config file read when neither `--config` nor `QUAKESYNC_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "config/quakesync.toml";
/// Environment variable naming the config file.
pub const CONFIG_PATH_ENV: &str = "QUAKESYNC_CONFIG";

const REDACTED: &str = "***";

// ---------------------------------------------------------------------------
// Secret

/// A string that is never shown in full by `Debug` or `Display`.
///
/// A URL secret shows everything but its password (`postgres://user:***@host/db`,
/// including `password=` query parameters); an opaque secret shows as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    value: String,
    url: bool,
}

impl Secret {
    /// A URL whose password (if any) is the secret part.
    pub fn url(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            url: true,
        }
    }

    /// A value that is secret as a whole (a token).
    pub fn opaque(value: impl Into<String>) -> Self {
        Self {
            value: value.into(),
            url: false,
        }
    }

    /// The real value, for connecting or comparing.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// The value with the secret part replaced by `***`.
    pub fn redacted(&self) -> String {
        if self.url {
            quake_core::redact_url(&self.value)
        } else {
            REDACTED.to_owned()
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Secret").field(&self.redacted()).finish()
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

// ---------------------------------------------------------------------------
// Config

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub source: SourceConfig,
    pub sync: SyncConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseConfig {
    /// `postgres://…`, `postgresql://…` or `sqlite://PATH`.
    pub url: Secret,
    pub pool_size: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub bind: String,
    /// Unset: the manual sync trigger is disabled.
    pub admin_token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    pub kind: SourceKindCfg,
    pub url: String,
    /// Unset: 24 hours before the first run.
    pub start_time: Option<DateTime<Utc>>,
    pub min_magnitude: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    pub enabled: bool,
    pub interval_secs: u64,
    pub startup_delay_secs: u64,
    pub batch_size: u32,
    pub overlap_secs: u64,
    pub max_retries: u32,
    pub http_timeout_secs: u64,
    pub max_response_mb: u64,
    /// Hard ceiling on upstream page requests per run (and per backfill window).
    pub max_pages: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKindCfg {
    /// USGS FDSN event query.
    #[default]
    Fdsn,
    /// USGS GeoJSON summary feed.
    Feed,
    /// EMSC FDSN event query.
    Emsc,
}

impl SourceKindCfg {
    pub const ALL: [Self; 3] = [Self::Fdsn, Self::Feed, Self::Emsc];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fdsn => "fdsn",
            Self::Feed => "feed",
            Self::Emsc => "emsc",
        }
    }

    /// The upstream URL used when `source.url` is not set explicitly.
    pub fn default_url(self) -> &'static str {
        match self {
            Self::Fdsn => "https://earthquake.usgs.gov/fdsnws/event/1/query",
            Self::Feed => {
                "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_hour.geojson"
            }
            Self::Emsc => "https://www.seismicportal.eu/fdsnws/event/1/query",
        }
    }
}

impl fmt::Display for SourceKindCfg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SourceKindCfg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("{s:?} is not one of fdsn, feed, emsc"))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database: DatabaseConfig {
                url: Secret::url("sqlite://quakesync.db"),
                pool_size: 8,
            },
            http: HttpConfig {
                bind: "127.0.0.1:8080".to_owned(),
                admin_token: None,
            },
            source: SourceConfig {
                kind: SourceKindCfg::Fdsn,
                url: SourceKindCfg::Fdsn.default_url().to_owned(),
                start_time: None,
                min_magnitude: None,
            },
            sync: SyncConfig {
                enabled: true,
                interval_secs: 600,
                startup_delay_secs: 30,
                batch_size: 100,
                overlap_secs: 300,
                max_retries: 3,
                http_timeout_secs: 30,
                max_response_mb: 64,
                max_pages: sync_engine::DEFAULT_MAX_PAGES,
            },
        }
    }
}

impl Config {
    /// The real database URL, for connecting. Never log it.
    pub fn database_url_secret(&self) -> &str {
        self.database.url.expose()
    }

    /// The database URL with its password replaced by `***`.
    pub fn database_url_redacted(&self) -> String {
        self.database.url.redacted()
    }

    /// The admin token, if set. Never log it.
    pub fn admin_token_secret(&self) -> Option<&str> {
        self.http.admin_token.as_ref().map(Secret::expose)
    }

    /// The effective configuration as TOML with every key (unset ones commented out)
    /// and secrets redacted, for `quakesync config`.
    pub fn redacted_toml(&self) -> String {
        fn s(v: &str) -> String {
            toml::Value::String(v.to_owned()).to_string()
        }
        fn opt(out: &mut String, key: &str, value: Option<String>, unset: &str) {
            // Writing to a String cannot fail.
            let _ = match value {
                Some(v) => writeln!(out, "{key} = {v}"),
                None => writeln!(out, "# {key} is unset ({unset})"),
            };
        }
        let (db, http, src, sync) = (&self.database, &self.http, &self.source, &self.sync);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "[database]\nurl = {}\npool_size = {}\n",
            s(&self.database_url_redacted()),
            db.pool_size
        );
        let _ = writeln!(out, "[http]\nbind = {}", s(&http.bind));
        opt(
            &mut out,
            "admin_token",
            http.admin_token.as_ref().map(|t| s(&t.redacted())),
            "manual trigger disabled",
        );
        let _ = writeln!(
            out,
            "\n[source]\nkind = {}\nurl = {}",
            s(src.kind.as_str()),
            s(&src.url)
        );
        opt(
            &mut out,
            "start_time",
            src.start_time
                .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            "24 hours before the first run",
        );
        opt(
            &mut out,
            "min_magnitude",
            src.min_magnitude.map(|m| toml::Value::Float(m).to_string()),
            "no magnitude filter",
        );
        let _ = write!(
            out,
            "\n[sync]\nenabled = {}\ninterval_secs = {}\nstartup_delay_secs = {}\n\
             batch_size = {}\noverlap_secs = {}\nmax_retries = {}\n\
             http_timeout_secs = {}\nmax_response_mb = {}\nmax_pages = {}\n",
            sync.enabled,
            sync.interval_secs,
            sync.startup_delay_secs,
            sync.batch_size,
            sync.overlap_secs,
            sync.max_retries,
            sync.http_timeout_secs,
            sync.max_response_mb,
            sync.max_pages,
        );
        out
    }
}

// ---------------------------------------------------------------------------
// Errors

/// A configuration error. The binary exits with [`ConfigError::EXIT_CODE`] on it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot parse config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("unknown key `{key}` in {}", path.display())]
    UnknownKey { key: String, path: PathBuf },
    /// `origin` is where the value came from: ` in FILE`, ` (ENV_VAR)` or ` (--flag)`.
    #[error("invalid value for {key}{origin}: {reason}")]
    Invalid {
        key: String,
        origin: String,
        reason: String,
    },
}

impl ConfigError {
    /// Process exit code for configuration errors (SPEC section 4).
    pub const EXIT_CODE: u8 = 2;

    pub fn exit_code(&self) -> u8 {
        Self::EXIT_CODE
    }
}

// ---------------------------------------------------------------------------
// Keys and layers

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    DatabaseUrl,
    PoolSize,
    Bind,
    AdminToken,
    SourceKind,
    SourceUrl,
    StartTime,
    MinMagnitude,
    SyncEnabled,
    IntervalSecs,
    StartupDelaySecs,
    BatchSize,
    OverlapSecs,
    MaxRetries,
    HttpTimeoutSecs,
    MaxResponseMb,
    MaxPages,
}

impl Key {
    /// (key, dotted TOML path, environment variable)
    const TABLE: [(Key, &'static str, &'static str); 17] = [
        (Key::DatabaseUrl, "database.url", "DATABASE_URL"),
        (
            Key::PoolSize,
            "database.pool_size",
            "QUAKESYNC_DB_POOL_SIZE",
        ),
        (Key::Bind, "http.bind", "QUAKESYNC_BIND"),
        (Key::AdminToken, "http.admin_token", "QUAKESYNC_ADMIN_TOKEN"),
        (Key::SourceKind, "source.kind", "QUAKESYNC_SOURCE_KIND"),
        (Key::SourceUrl, "source.url", "QUAKESYNC_SOURCE_URL"),
        (Key::StartTime, "source.start_time", "QUAKESYNC_START_TIME"),
        (
            Key::MinMagnitude,
            "source.min_magnitude",
            "QUAKESYNC_MIN_MAGNITUDE",
        ),
        (Key::SyncEnabled, "sync.enabled", "QUAKESYNC_SYNC_ENABLED"),
        (
            Key::IntervalSecs,
            "sync.interval_secs",
            "QUAKESYNC_SYNC_INTERVAL_SECS",
        ),
        (
            Key::StartupDelaySecs,
            "sync.startup_delay_secs",
            "QUAKESYNC_STARTUP_DELAY_SECS",
        ),
        (Key::BatchSize, "sync.batch_size", "QUAKESYNC_BATCH_SIZE"),
        (
            Key::OverlapSecs,
            "sync.overlap_secs",
            "QUAKESYNC_OVERLAP_SECS",
        ),
        (Key::MaxRetries, "sync.max_retries", "QUAKESYNC_MAX_RETRIES"),
        (
            Key::HttpTimeoutSecs,
            "sync.http_timeout_secs",
            "QUAKESYNC_HTTP_TIMEOUT_SECS",
        ),
        (
            Key::MaxResponseMb,
            "sync.max_response_mb",
            "QUAKESYNC_MAX_RESPONSE_MB",
        ),
        (Key::MaxPages, "sync.max_pages", "QUAKESYNC_MAX_PAGES"),
    ];

    fn path(self) -> &'static str {
        Self::TABLE
            .iter()
            .find(|(k, _, _)| *k == self)
            .map_or("", |(_, path, _)| path)
    }

    fn from_path(path: &str) -> Option<Self> {
        Self::TABLE
            .iter()
            .find(|(_, p, _)| *p == path)
            .map(|(k, _, _)| *k)
    }
}

/// Where a value came from, for error messages.
enum Origin<'a> {
    File(&'a Path),
    Env(&'static str),
    Flag(&'static str),
}

impl fmt::Display for Origin<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, " in {}", path.display()),
            Origin::Env(var) => write!(f, " ({var})"),
            Origin::Flag(flag) => write!(f, " (--{flag})"),
        }
    }
}

/// A value as read: typed from TOML, text from the environment or a flag.
#[derive(Clone, Copy)]
enum Raw<'a> {
    Toml(&'a toml::Value),
    Text(&'a str),
}

/// Loads the configuration.
///
/// The config file is `cli_config_path`, else `$QUAKESYNC_CONFIG`, else
/// [`DEFAULT_CONFIG_PATH`] if it exists. A named file that is missing is an error.
/// `env` looks up environment variables; an empty value counts as unset.
pub fn load(
    cli_config_path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    load_with_default_path(
        cli_config_path,
        env,
        overrides,
        Path::new(DEFAULT_CONFIG_PATH),
    )
}

fn load_with_default_path(
    cli_config_path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    overrides: &Overrides,
    default_path: &Path,
) -> Result<Config, ConfigError> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());

    let file = match cli_config_path {
        Some(path) => Some(path.to_path_buf()),
        None => env(CONFIG_PATH_ENV)
            .map(PathBuf::from)
            .or_else(|| default_path.is_file().then(|| default_path.to_path_buf())),
    };

    let mut builder = Builder::default();
    if let Some(path) = &file {
        log::debug!("reading config file {}", path.display());
        builder.apply_file(path)?;
    }
    for &(key, _, var) in &Key::TABLE {
        if let Some(value) = env(var) {
            builder.set(key, Raw::Text(&value), &Origin::Env(var))?;
        }
    }
    let flags = [
        (Key::DatabaseUrl, "database-url", &overrides.database_url),
        (Key::Bind, "bind", &overrides.bind),
        (Key::SourceKind, "source-kind", &overrides.source_kind),
        (Key::SourceUrl, "source-url", &overrides.source_url),
        (Key::StartTime, "start-time", &overrides.start_time),
        (Key::BatchSize, "batch-size", &overrides.batch_size),
    ];
    for (key, flag, value) in flags {
        if let Some(value) = value {
            builder.set(key, Raw::Text(value), &Origin::Flag(flag))?;
        }
    }
    Ok(builder.finish())
}

#[derive(Default)]
struct Builder {
    config: Config,
    source_url_set: bool,
}

impl Builder {
    fn finish(mut self) -> Config {
        if !self.source_url_set {
            self.config.source.url = self.config.source.kind.default_url().to_owned();
        }
        self.config
    }

    fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            // Position and message only: the snippet could contain a secret.
            let at = e.span().map_or(String::new(), |span| {
                let before = text.get(..span.start).unwrap_or(&text);
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            ConfigError::Parse {
                path: path.to_path_buf(),
                message: format!("{at}{}", e.message()),
            }
        })?;

        let origin = Origin::File(path);
        for (section, value) in &table {
            if !Key::TABLE
                .iter()
                .any(|(_, p, _)| p.split_once('.').is_some_and(|(s, _)| s == section))
            {
                return Err(ConfigError::UnknownKey {
                    key: section.clone(),
                    path: path.to_path_buf(),
                });
            }
            let toml::Value::Table(entries) = value else {
                return Err(ConfigError::Invalid {
                    key: section.clone(),
                    origin: origin.to_string(),
                    reason: format!("expected a table, got {}", value.type_str()),
                });
            };
            for (name, value) in entries {
                let dotted = format!("{section}.{name}");
                let key = Key::from_path(&dotted).ok_or_else(|| ConfigError::UnknownKey {
                    key: dotted,
                    path: path.to_path_buf(),
                })?;
                self.set(key, Raw::Toml(value), &origin)?;
            }
        }
        Ok(())
    }

    fn set(&mut self, key: Key, raw: Raw<'_>, origin: &Origin<'_>) -> Result<(), ConfigError> {
        self.set_inner(key, raw)
            .map_err(|reason| ConfigError::Invalid {
                key: key.path().to_owned(),
                origin: origin.to_string(),
                reason,
            })
    }

    fn set_inner(&mut self, key: Key, raw: Raw<'_>) -> Result<(), String> {
        let c = &mut self.config;
        match key {
            Key::DatabaseUrl => c.database.url = database_url(raw)?,
            Key::PoolSize => c.database.pool_size = uint32(raw, 1..=u32::MAX)?,
            Key::Bind => {
                let bind = string(raw)?;
                bind.trim()
                    .parse::<SocketAddr>()
                    .map_err(|_| format!("{bind:?} is not a socket address (IP:PORT)"))?;
                c.http.bind = bind.trim().to_owned();
            }
            Key::AdminToken => {
                let token = string(raw)?;
                if token.is_empty() {
                    return Err("must not be empty (leave it unset to disable)".to_owned());
                }
                c.http.admin_token = Some(Secret::opaque(token));
            }
            Key::SourceKind => c.source.kind = string(raw)?.parse()?,
            Key::SourceUrl => {
                c.source.url = http_url(raw)?;
                self.source_url_set = true;
            }
            Key::StartTime => c.source.start_time = Some(timestamp(raw)?),
            Key::MinMagnitude => c.source.min_magnitude = Some(finite_float(raw)?),
            Key::SyncEnabled => c.sync.enabled = boolean(raw)?,
            Key::IntervalSecs => c.sync.interval_secs = uint(raw, 1..=u64::MAX)?,
            Key::StartupDelaySecs => c.sync.startup_delay_secs = uint(raw, 0..=u64::MAX)?,
            Key::BatchSize => c.sync.batch_size = uint32(raw, 1..=20_000)?,
            Key::OverlapSecs => c.sync.overlap_secs = uint(raw, 0..=u64::MAX)?,
            Key::MaxRetries => c.sync.max_retries = uint32(raw, 0..=u32::MAX)?,
            Key::HttpTimeoutSecs => c.sync.http_timeout_secs = uint(raw, 1..=u64::MAX)?,
            Key::MaxResponseMb => c.sync.max_response_mb = uint(raw, 1..=u64::MAX)?,
            Key::MaxPages => c.sync.max_pages = uint(raw, 1..=u64::MAX)?,
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Value parsers: each returns the reason a value is invalid, without the key.

fn string(raw: Raw<'_>) -> Result<String, String> {
    match raw {
        Raw::Text(s) => Ok(s.to_owned()),
        Raw::Toml(toml::Value::String(s)) => Ok(s.clone()),
        Raw::Toml(v) => Err(format!("expected a string, got {}", v.type_str())),
    }
}

fn uint(raw: Raw<'_>, range: RangeInclusive<u64>) -> Result<u64, String> {
    let value = match raw {
        Raw::Text(s) => s
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("{s:?} is not a non-negative integer"))?,
        Raw::Toml(toml::Value::Integer(i)) => {
            u64::try_from(*i).map_err(|_| format!("{i} is not a non-negative integer"))?
        }
        Raw::Toml(v) => return Err(format!("expected an integer, got {}", v.type_str())),
    };
    if range.contains(&value) {
        Ok(value)
    } else if *range.end() == u64::MAX {
        Err(format!("{value} is below the minimum {}", range.start()))
    } else {
        Err(format!(
            "{value} is outside {}..={}",
            range.start(),
            range.end()
        ))
    }
}

fn uint32(raw: Raw<'_>, range: RangeInclusive<u32>) -> Result<u32, String> {
    // An open-ended range reports "below the minimum" rather than a huge range.
    let end = match *range.end() {
        u32::MAX => u64::MAX,
        end => u64::from(end),
    };
    let value = uint(raw, u64::from(*range.start())..=end)?;
    u32::try_from(value).map_err(|_| format!("{value} is above the maximum {}", u32::MAX))
}

fn boolean(raw: Raw<'_>) -> Result<bool, String> {
    match raw {
        Raw::Toml(toml::Value::Boolean(b)) => Ok(*b),
        Raw::Toml(v) => Err(format!("expected a boolean, got {}", v.type_str())),
        Raw::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(format!("{s:?} is not a boolean (true or false)")),
        },
    }
}

fn finite_float(raw: Raw<'_>) -> Result<f64, String> {
    let value = match raw {
        Raw::Toml(toml::Value::Float(f)) => *f,
        // Magnitudes are small; an i64 → f64 conversion is exact for them.
        Raw::Toml(toml::Value::Integer(i)) => *i as f64,
        Raw::Toml(v) => return Err(format!("expected a number, got {}", v.type_str())),
        Raw::Text(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("{s:?} is not a number"))?,
    };
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("{value} is not a finite number"))
    }
}

fn timestamp(raw: Raw<'_>) -> Result<DateTime<Utc>, String> {
    let text = match raw {
        Raw::Text(s) => s.trim().to_owned(),
        Raw::Toml(toml::Value::String(s)) => s.trim().to_owned(),
        Raw::Toml(toml::Value::Datetime(d)) => d.to_string(),
        Raw::Toml(v) => {
            return Err(format!(
                "expected an RFC 3339 timestamp, got {}",
                v.type_str()
            ));
        }
    };
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{text:?} is not an RFC 3339 timestamp"))
}

/// The authority of `scheme://authority/...`, if `url` has one of `schemes`.
fn authority<'a>(url: &'a str, schemes: &[&str]) -> Option<&'a str> {
    let (scheme, rest) = url.split_once("://")?;
    schemes
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
        .then(|| &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())])
}

fn http_url(raw: Raw<'_>) -> Result<String, String> {
    let url = string(raw)?.trim().to_owned();
    let host =
        authority(&url, &["http", "https"]).map(|a| a.rsplit_once('@').map_or(a, |(_, host)| host));
    match host {
        Some(host) if !host.is_empty() && !url.contains(char::is_whitespace) => Ok(url),
        _ => Err(format!("{url:?} is not an http(s) URL")),
    }
}

fn database_url(raw: Raw<'_>) -> Result<Secret, String> {
    let url = Secret::url(string(raw)?.trim());
    let value = url.expose();
    let valid = if authority(value, &["sqlite"]).is_some() {
        value.len() > "sqlite://".len()
    } else {
        authority(value, &["postgres", "postgresql"]).is_some()
    };
    if valid {
        Ok(url)
    } else {
        Err(format!(
            "{:?} is not a database URL (expected postgres://…, postgresql://… or sqlite://PATH)",
            url.redacted()
        ))
    }
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::fs;

    const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/quakesync.toml");

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Loads with the given file contents (if any), environment and flags, never
    /// touching the process environment or the working directory's config file.
    fn load_with(
        file: Option<&str>,
        env: &[(&str, &str)],
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().map_err(|source| ConfigError::Read {
            path: PathBuf::from("<tempdir>"),
            source,
        })?;
        let path = dir.path().join("quakesync.toml");
        if let Some(text) = file {
            fs::write(&path, text).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let lookup = |k: &str| env.get(k).cloned();
        let missing_default = dir.path().join("absent.toml");
        load_with_default_path(
            file.is_some().then_some(path.as_path()),
            &lookup,
            overrides,
            &missing_default,
        )
    }

    fn error(file: Option<&str>, env: &[(&str, &str)], overrides: &Overrides) -> String {
        match load_with(file, env, overrides) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => {
                assert_eq!(e.exit_code(), 2);
                e.to_string()
            }
        }
    }

    #[test]
    fn defaults() -> TestResult {
        let config = load_with(None, &[], &Overrides::default())?;
        assert_eq!(config, Config::default());
        assert_eq!(config.database_url_secret(), "sqlite://quakesync.db");
        assert_eq!(config.database.pool_size, 8);
        assert_eq!(config.http.bind, "127.0.0.1:8080");
        assert_eq!(config.http.admin_token, None);
        assert_eq!(config.source.kind, SourceKindCfg::Fdsn);
        assert_eq!(
            config.source.url,
            "https://earthquake.usgs.gov/fdsnws/event/1/query"
        );
        assert_eq!(config.source.start_time, None);
        assert_eq!(config.source.min_magnitude, None);
        assert_eq!(
            config.sync,
            SyncConfig {
                enabled: true,
                interval_secs: 600,
                startup_delay_secs: 30,
                batch_size: 100,
                overlap_secs: 300,
                max_retries: 3,
                http_timeout_secs: 30,
                max_response_mb: 64,
                max_pages: 10_000,
            }
        );
        Ok(())
    }

    #[test]
    fn shipped_config_file_loads_to_the_defaults() -> TestResult {
        let config = load(Some(Path::new(SHIPPED)), &|_| None, &Overrides::default())?;
        assert_eq!(config, Config::default());
        Ok(())
    }

    #[test]
    fn shipped_config_file_mentions_every_key() -> TestResult {
        let text = fs::read_to_string(SHIPPED)?;
        for (_, path, _) in Key::TABLE {
            let (section, name) = path.split_once('.').ok_or("dotted key")?;
            assert!(text.contains(&format!("[{section}]")), "{section}");
            assert!(
                text.lines().any(|l| l
                    .trim_start_matches(['#', ' '])
                    .starts_with(&format!("{name} ="))),
                "{path} missing from the shipped file"
            );
        }
        Ok(())
    }

    #[test]
    fn file_overrides_defaults() -> TestResult {
        let config = load_with(
            Some(
                r#"
                [database]
                url = "postgres://quake:pw@db:5432/quakes"
                pool_size = 4
                [http]
                bind = "0.0.0.0:9000"
                admin_token = "tok"
                [source]
                kind = "feed"
                start_time = 2024-01-02T03:04:05Z
                min_magnitude = 2
                [sync]
                enabled = false
                batch_size = 20000
                "#,
            ),
            &[],
            &Overrides::default(),
        )?;
        assert_eq!(
            config.database_url_secret(),
            "postgres://quake:pw@db:5432/quakes"
        );
        assert_eq!(config.database.pool_size, 4);
        assert_eq!(config.http.bind, "0.0.0.0:9000");
        assert_eq!(config.admin_token_secret(), Some("tok"));
        assert_eq!(config.source.kind, SourceKindCfg::Feed);
        // The URL follows the kind when not set explicitly.
        assert_eq!(config.source.url, SourceKindCfg::Feed.default_url());
        assert_eq!(
            config.source.start_time.map(|t| t.to_rfc3339()),
            Some("2024-01-02T03:04:05+00:00".to_owned())
        );
        assert_eq!(config.source.min_magnitude, Some(2.0));
        assert!(!config.sync.enabled);
        assert_eq!(config.sync.batch_size, 20000);
        assert_eq!(
            config.sync.interval_secs, 600,
            "untouched keys keep defaults"
        );
        Ok(())
    }

    #[test]
    fn env_overrides_file() -> TestResult {
        let file = "[sync]\nbatch_size = 500\ninterval_secs = 60\n[source]\nurl = \"https://example.org/q\"\n";
        let config = load_with(
            Some(file),
            &[
                ("QUAKESYNC_BATCH_SIZE", "700"),
                ("QUAKESYNC_SOURCE_KIND", "emsc"),
                ("QUAKESYNC_SYNC_ENABLED", "false"),
                ("QUAKESYNC_START_TIME", "2024-05-01T12:00:00+02:00"),
                ("QUAKESYNC_OVERLAP_SECS", ""), // empty counts as unset
                ("QUAKESYNC_MAX_PAGES", "50"),
            ],
            &Overrides::default(),
        )?;
        assert_eq!(config.sync.batch_size, 700);
        assert_eq!(config.sync.max_pages, 50);
        assert_eq!(config.sync.interval_secs, 60);
        assert_eq!(config.sync.overlap_secs, 300);
        assert!(!config.sync.enabled);
        assert_eq!(config.source.kind, SourceKindCfg::Emsc);
        // An explicit URL is kept when the kind changes.
        assert_eq!(config.source.url, "https://example.org/q");
        assert_eq!(
            config.source.start_time.map(|t| t.to_rfc3339()),
            Some("2024-05-01T10:00:00+00:00".to_owned())
        );
        Ok(())
    }

    #[test]
    fn kind_from_env_picks_its_default_url() -> TestResult {
        let config = load_with(
            None,
            &[("QUAKESYNC_SOURCE_KIND", "emsc")],
            &Overrides::default(),
        )?;
        assert_eq!(
            config.source.url,
            "https://www.seismicportal.eu/fdsnws/event/1/query"
        );
        Ok(())
    }

    #[test]
    fn flags_override_env() -> TestResult {
        let overrides = Overrides {
            database_url: Some("postgresql://u@h/d".to_owned()),
            bind: Some("[::1]:7000".to_owned()),
            source_kind: Some("feed".to_owned()),
            source_url: Some("http://localhost:1234/feed.geojson".to_owned()),
            start_time: Some("2020-01-01T00:00:00Z".to_owned()),
            batch_size: Some("42".to_owned()),
            no_migrate: true,
        };
        let config = load_with(
            Some("[sync]\nbatch_size = 1\n"),
            &[
                ("DATABASE_URL", "sqlite://other.db"),
                ("QUAKESYNC_BIND", "127.0.0.1:1"),
                ("QUAKESYNC_SOURCE_KIND", "emsc"),
                ("QUAKESYNC_BATCH_SIZE", "2"),
            ],
            &overrides,
        )?;
        assert_eq!(config.database_url_secret(), "postgresql://u@h/d");
        assert_eq!(config.http.bind, "[::1]:7000");
        assert_eq!(config.source.kind, SourceKindCfg::Feed);
        assert_eq!(config.source.url, "http://localhost:1234/feed.geojson");
        assert_eq!(config.sync.batch_size, 42);
        Ok(())
    }

    #[test]
    fn config_file_from_env_and_missing_files() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("q.toml");
        fs::write(&path, "[sync]\nmax_retries = 9\n")?;
        let path_str = path.to_str().ok_or("utf-8 path")?.to_owned();
        let env = |k: &str| (k == CONFIG_PATH_ENV).then(|| path_str.clone());
        let config = load(None, &env, &Overrides::default())?;
        assert_eq!(config.sync.max_retries, 9);

        // --config wins over QUAKESYNC_CONFIG; a missing named file is an error.
        let missing = dir.path().join("missing.toml");
        let err = load(Some(&missing), &env, &Overrides::default())
            .err()
            .ok_or("expected an error")?;
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        assert!(err.to_string().contains("missing.toml"), "{err}");
        Ok(())
    }

    #[test]
    fn unknown_keys_are_named() {
        let msg = error(Some("[sync]\nintervall = 5\n"), &[], &Overrides::default());
        assert!(msg.starts_with("unknown key `sync.intervall` in "), "{msg}");
        assert!(msg.ends_with("quakesync.toml"), "{msg}");

        let msg = error(Some("verbose = true\n"), &[], &Overrides::default());
        assert!(msg.starts_with("unknown key `verbose` in "), "{msg}");

        let msg = error(Some("[sync.extra]\nx = 1\n"), &[], &Overrides::default());
        assert!(msg.starts_with("unknown key `sync.extra` in "), "{msg}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let none = Overrides::default();
        // (file contents, environment, expected message prefix)
        type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            (
                None,
                &[("QUAKESYNC_BATCH_SIZE", "0")],
                "invalid value for sync.batch_size (QUAKESYNC_BATCH_SIZE): 0 is outside 1..=20000",
            ),
            (
                Some("[sync]\nbatch_size = 20001\n"),
                &[],
                "invalid value for sync.batch_size in ",
            ),
            (
                None,
                &[("QUAKESYNC_SOURCE_KIND", "usgs")],
                "invalid value for source.kind (QUAKESYNC_SOURCE_KIND): \"usgs\" is not one of fdsn, feed, emsc",
            ),
            (
                Some("[source]\nstart_time = \"yesterday\"\n"),
                &[],
                "invalid value for source.start_time in ",
            ),
            (
                None,
                &[("QUAKESYNC_SYNC_ENABLED", "maybe")],
                "invalid value for sync.enabled (QUAKESYNC_SYNC_ENABLED): \"maybe\" is not a boolean",
            ),
            (
                Some("[sync]\nbatch_size = \"100\"\n"),
                &[],
                "invalid value for sync.batch_size in ",
            ),
            (
                None,
                &[("QUAKESYNC_MAX_PAGES", "0")],
                "invalid value for sync.max_pages (QUAKESYNC_MAX_PAGES): 0 is below the minimum 1",
            ),
            (
                None,
                &[("QUAKESYNC_DB_POOL_SIZE", "0")],
                "invalid value for database.pool_size (QUAKESYNC_DB_POOL_SIZE): 0 is below the minimum 1",
            ),
            (
                None,
                &[("QUAKESYNC_SYNC_INTERVAL_SECS", "-5")],
                "invalid value for sync.interval_secs (QUAKESYNC_SYNC_INTERVAL_SECS)",
            ),
            (
                None,
                &[("QUAKESYNC_MAX_RESPONSE_MB", "0")],
                "invalid value for sync.max_response_mb",
            ),
            (
                None,
                &[("QUAKESYNC_HTTP_TIMEOUT_SECS", "0")],
                "invalid value for sync.http_timeout_secs",
            ),
            (
                None,
                &[("QUAKESYNC_BIND", "localhost")],
                "invalid value for http.bind (QUAKESYNC_BIND)",
            ),
            (
                None,
                &[("QUAKESYNC_SOURCE_URL", "ftp://example.org/")],
                "invalid value for source.url (QUAKESYNC_SOURCE_URL)",
            ),
            (
                None,
                &[("QUAKESYNC_MIN_MAGNITUDE", "NaN")],
                "invalid value for source.min_magnitude (QUAKESYNC_MIN_MAGNITUDE)",
            ),
            (
                None,
                &[("DATABASE_URL", "quakes.db")],
                "invalid value for database.url (DATABASE_URL)",
            ),
            (Some("sync = 3\n"), &[], "invalid value for sync in "),
        ];
        for (file, env, expected) in cases {
            let msg = error(*file, env, &none);
            assert!(
                msg.starts_with(expected),
                "{msg:?} should start with {expected:?}"
            );
        }

        let msg = error(Some("[source]\nstart_time = \"yesterday\"\n"), &[], &none);
        assert!(
            msg.ends_with(": \"yesterday\" is not an RFC 3339 timestamp"),
            "{msg}"
        );
        let msg = error(Some("[sync]\nbatch_size = 20001\n"), &[], &none);
        assert!(msg.ends_with(": 20001 is outside 1..=20000"), "{msg}");

        let flags = Overrides {
            batch_size: Some("0".to_owned()),
            ..Overrides::default()
        };
        let msg = error(None, &[], &flags);
        assert_eq!(
            msg,
            "invalid value for sync.batch_size (--batch-size): 0 is outside 1..=20000"
        );
    }

    #[test]
    fn toml_syntax_errors_give_position_without_the_line() {
        let msg = error(
            Some("[database]\nurl = \"postgres://u:hunter2@h/d\n"),
            &[],
            &Overrides::default(),
        );
        assert!(msg.starts_with("cannot parse config file "), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn redaction_never_shows_secrets() -> TestResult {
        let password = "s3cr3t-p4ss";
        let token = "t0k3n-value";
        let config = load_with(
            None,
            &[
                (
                    "DATABASE_URL",
                    &format!("postgres://quake:{password}@db:5432/quakes"),
                ),
                ("QUAKESYNC_ADMIN_TOKEN", token),
            ],
            &Overrides::default(),
        )?;
        assert_eq!(
            config.database_url_redacted(),
            "postgres://quake:***@db:5432/quakes"
        );
        let shown = [
            config.redacted_toml(),
            format!("{config:?}"),
            config.database.url.to_string(),
            config.database_url_redacted(),
        ];
        for text in &shown {
            assert!(!text.contains(password), "{text}");
            assert!(!text.contains(token), "{text}");
        }
        assert!(shown[0].contains("url = \"postgres://quake:***@db:5432/quakes\""));
        assert!(shown[0].contains("admin_token = \"***\""));
        // Secrets still reach the code that needs them.
        assert!(config.database_url_secret().contains(password));
        assert_eq!(config.admin_token_secret(), Some(token));

        // Invalid URLs are redacted in errors too.
        let msg = error(
            None,
            &[("DATABASE_URL", &format!("mysql://quake:{password}@db/q"))],
            &Overrides::default(),
        );
        assert!(!msg.contains(password), "{msg}");
        Ok(())
    }

    #[test]
    fn url_redaction_edge_cases() {
        let cases = [
            ("sqlite://quakesync.db", "sqlite://quakesync.db"),
            ("postgres://user@host/db", "postgres://user@host/db"),
            ("postgres://u:p/a@ss@host/db", "postgres://u:***@host/db"),
            (
                "postgres://host/db?user=u&password=x&sslmode=require",
                "postgres://host/db?user=u&password=***&sslmode=require",
            ),
            ("postgres://u:pw@host", "postgres://u:***@host"),
        ];
        for (url, expected) in cases {
            assert_eq!(Secret::url(url).redacted(), expected);
        }
        assert_eq!(format!("{:?}", Secret::opaque("x")), "Secret(\"***\")");
    }

    #[test]
    fn redacted_toml_lists_every_key_and_round_trips() -> TestResult {
        let mut config = Config::default();
        let text = config.redacted_toml();
        for (_, path, _) in Key::TABLE {
            let (_, name) = path.split_once('.').ok_or("dotted key")?;
            assert!(
                text.contains(&format!("{name} ")),
                "{path} missing:\n{text}"
            );
        }
        assert_eq!(load_with(Some(&text), &[], &Overrides::default())?, config);

        config.source.start_time =
            Some(DateTime::parse_from_rfc3339("2024-01-01T00:00:00.5Z")?.into());
        config.source.min_magnitude = Some(4.0);
        config.source.kind = SourceKindCfg::Emsc;
        config.sync.enabled = false;
        let text = config.redacted_toml();
        assert_eq!(load_with(Some(&text), &[], &Overrides::default())?, config);
        Ok(())
    }
}
