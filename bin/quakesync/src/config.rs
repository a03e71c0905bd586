//! Configuration (SPEC section 4): one serde struct, merged by figment.
//!
//! Reads: the config file (`--config PATH`, else `$QUAKESYNC_CONFIG`, else
//! [`DEFAULT_CONFIG_PATH`] if present), then every key of [`crate::cli::SETTINGS`] from its
//! environment variable or its flag (clap's `env`: the flag wins). Precedence: defaults <
//! file < environment < flags. Defaults are the library crates' own constants. Each value
//! keeps where it came from (figment metadata), so an error names the key and the file,
//! variable or flag; unknown keys are refused (`deny_unknown_fields`). The database URL and
//! the admin token are `secrecy` secrets: `Debug` never shows them and `quakesync config`
//! prints them redacted.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::ArgMatches;
use clap::parser::ValueSource;
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use sync_engine::SourceKind;

use crate::cli::SETTINGS;

/// The config file read when neither `--config` nor `QUAKESYNC_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "config/quakesync.toml";
/// Where `serve` listens unless configured: loopback only.
pub const DEFAULT_BIND: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));

/// The effective configuration.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseConfig,
    pub http: HttpConfig,
    pub source: SourceConfig,
    pub sync: SyncConfig,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: DatabaseUrl,
    pub pool_size: Bounded<1, { u32::MAX as u64 }>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub bind: SocketAddr,
    /// Unset: the manual sync trigger is disabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<AdminToken>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    pub kind: SourceKind,
    /// Unset in the layers: the kind's default URL, filled in by [`load`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<HttpUrl>,
    /// Unset: 24 hours before the first run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_magnitude: Option<Finite>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    pub enabled: bool,
    pub interval_secs: Bounded<1, { u64::MAX }>,
    pub startup_delay_secs: u64,
    pub batch_size: Bounded<1, { sync_engine::MAX_BATCH_SIZE as u64 }>,
    pub overlap_secs: u64,
    pub max_retries: u32,
    pub http_timeout_secs: Bounded<1, { u64::MAX }>,
    pub max_response_mb: Bounded<1, { u64::MAX }>,
    pub max_pages: Bounded<1, { u64::MAX }>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: DatabaseUrl(quake_store::DEFAULT_DATABASE_URL.into()),
            pool_size: Bounded(quake_store::DEFAULT_POOL_SIZE.into()),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: DEFAULT_BIND,
            admin_token: None,
        }
    }
}

impl Default for SyncConfig {
    fn default() -> Self {
        let secs = |d: Duration| d.as_secs();
        SyncConfig {
            enabled: true,
            interval_secs: Bounded(secs(sync_engine::DEFAULT_INTERVAL)),
            startup_delay_secs: secs(sync_engine::DEFAULT_STARTUP_DELAY),
            batch_size: Bounded(sync_engine::DEFAULT_BATCH_SIZE.into()),
            overlap_secs: secs(sync_engine::DEFAULT_OVERLAP),
            max_retries: quake_api::DEFAULT_MAX_RETRIES,
            http_timeout_secs: Bounded(secs(quake_api::DEFAULT_TIMEOUT)),
            max_response_mb: Bounded(quake_api::DEFAULT_MAX_RESPONSE_BYTES >> 20),
            max_pages: Bounded(sync_engine::DEFAULT_MAX_PAGES),
        }
    }
}

impl Config {
    /// The upstream URL: `source.url`, else the kind's default.
    pub fn source_url(&self) -> &str {
        match &self.source.url {
            Some(url) => &url.0,
            None => self.source.kind.default_url(),
        }
    }

    /// The admin token, if set. Never log it.
    pub fn admin_token_secret(&self) -> Option<&str> {
        self.http.admin_token.as_ref().map(|t| t.0.expose_secret())
    }

    /// The effective configuration as TOML, secrets redacted, for `quakesync config`.
    pub fn redacted_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

// ---------------------------------------------------------------------------
// Value types: each checks itself, so a bad value fails where figment knows its key and
// origin, and the message names what is wrong.

/// An integer in `MIN..=MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u64")]
pub struct Bounded<const MIN: u64, const MAX: u64>(u64);

impl<const MIN: u64, const MAX: u64> Bounded<MIN, MAX> {
    pub fn get(self) -> u64 {
        self.0
    }

    /// The value of a key bounded to `u32`.
    pub fn get_u32(self) -> u32 {
        u32::try_from(self.0).unwrap_or(u32::MAX)
    }
}

impl<const MIN: u64, const MAX: u64> TryFrom<u64> for Bounded<MIN, MAX> {
    type Error = String;

    fn try_from(v: u64) -> Result<Self, String> {
        if (MIN..=MAX).contains(&v) {
            Ok(Bounded(v))
        } else if MAX < u64::from(u32::MAX) {
            Err(format!("{v} is outside {MIN}..={MAX}"))
        } else if v < MIN {
            Err(format!("{v} is below the minimum {MIN}"))
        } else {
            Err(format!("{v} is above the maximum {MAX}"))
        }
    }
}

impl<const MIN: u64, const MAX: u64> Serialize for Bounded<MIN, MAX> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

/// `postgres://…`, `postgresql://…` or `sqlite://PATH`: a secret (its password).
#[derive(Deserialize)]
#[serde(try_from = "String")]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    /// The real URL, for connecting. Never log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL with its password and secret parameters hidden.
    pub fn redacted(&self) -> String {
        quake_core::redact_url(self.expose())
    }
}

impl TryFrom<String> for DatabaseUrl {
    type Error = String;

    fn try_from(url: String) -> Result<Self, String> {
        match quake_store::Backend::of_url(&url) {
            Some(_) => Ok(DatabaseUrl(url.into())),
            None => Err(format!(
                "{:?} is not a database URL (expected postgres://…, postgresql://… or sqlite://PATH)",
                quake_core::redact_url(&url)
            )),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// The admin bearer token: a secret, never empty.
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
pub struct AdminToken(SecretString);

impl TryFrom<String> for AdminToken {
    type Error = &'static str;

    fn try_from(token: String) -> Result<Self, Self::Error> {
        if token.is_empty() {
            return Err("must not be empty (leave it unset to disable)");
        }
        Ok(AdminToken(token.into()))
    }
}

impl Serialize for AdminToken {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(quake_core::REDACTED)
    }
}

/// An http(s) URL with a host; shown redacted (it may carry credentials).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct HttpUrl(String);

impl Serialize for HttpUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&quake_core::redact_url(&self.0))
    }
}

impl TryFrom<String> for HttpUrl {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        quake_api::check_url(&raw).map_err(|e| e.to_string())?;
        Ok(HttpUrl(raw))
    }
}

/// A finite number.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Finite(pub f64);

impl TryFrom<f64> for Finite {
    type Error = String;

    fn try_from(v: f64) -> Result<Self, String> {
        if v.is_finite() {
            Ok(Finite(v))
        } else {
            Err(format!("{v} is not a finite number"))
        }
    }
}

impl From<Finite> for f64 {
    fn from(v: Finite) -> f64 {
        v.0
    }
}

// ---------------------------------------------------------------------------
// Loading

/// A configuration error; the binary exits with [`ConfigError::EXIT_CODE`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `message` has the position only: the line itself could hold a secret.
    #[error("cannot parse config file {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// `origin` is ` in FILE`.
    #[error("unknown key `{key}`{origin}")]
    UnknownKey { key: String, origin: String },
    /// `origin` is ` in FILE`, ` (ENV_VAR)` or ` (--flag)`.
    #[error("invalid value for {key}{origin}: {reason}")]
    Invalid {
        key: String,
        origin: String,
        reason: String,
    },
}

impl ConfigError {
    /// Exit code for configuration errors (SPEC section 4).
    pub const EXIT_CODE: u8 = 2;
}

/// Loads the configuration of a command line (its `--config`, flags and environment).
pub fn load(matches: &ArgMatches) -> Result<Config, ConfigError> {
    let explicit = matches.get_one::<PathBuf>("config").map(PathBuf::as_path);
    load_from(explicit, Path::new(DEFAULT_CONFIG_PATH), matches)
}

fn load_from(
    explicit: Option<&Path>,
    default_path: &Path,
    matches: &ArgMatches,
) -> Result<Config, ConfigError> {
    let file = explicit
        .map(Path::to_path_buf)
        .or_else(|| default_path.is_file().then(|| default_path.to_path_buf()));
    let mut figment = Figment::new();
    if let Some(path) = &file {
        log::debug!("reading config file {}", path.display());
        figment = figment.merge(file_layer(path)?);
    }
    for (key, flag, env, ..) in SETTINGS {
        // An empty value (`QUAKESYNC_OVERLAP_SECS=`) counts as unset.
        let Some(value) = matches
            .get_one::<String>(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
        else {
            continue;
        };
        let origin = match matches.value_source(key) {
            Some(ValueSource::EnvVariable) => format!("({env})"),
            _ => format!("(--{flag})"),
        };
        let (section, name) = key.split_once('.').unwrap_or((key, ""));
        let entry = Dict::from([(name.to_owned(), Value::from(value))]);
        figment = figment.merge(Layer {
            meta: Metadata::named(origin),
            data: Dict::from([(section.to_owned(), Value::from(entry))]),
        });
    }
    let mut config: Config = figment
        .extract_lossy()
        .map_err(|e| invalid(e, file.as_deref()))?;
    let kind = config.source.kind;
    config
        .source
        .url
        .get_or_insert_with(|| HttpUrl(kind.default_url().to_owned()));
    Ok(config)
}

/// One layer of values with where they came from.
struct Layer {
    meta: Metadata,
    data: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.meta.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

/// The config file as a layer. Parsed here (not by figment) so that a syntax error shows
/// its position but never the line, which could hold a password.
fn file_layer(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
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
    fn value(v: toml::Value) -> Value {
        match v {
            toml::Value::String(s) => s.into(),
            toml::Value::Integer(i) => i.into(),
            toml::Value::Float(f) => f.into(),
            toml::Value::Boolean(b) => b.into(),
            toml::Value::Datetime(d) => d.to_string().into(),
            toml::Value::Array(a) => a.into_iter().map(value).collect::<Vec<_>>().into(),
            toml::Value::Table(t) => dict(t).into(),
        }
    }
    fn dict(t: toml::Table) -> Dict {
        t.into_iter().map(|(k, v)| (k, value(v))).collect()
    }
    Ok(Layer {
        meta: Metadata::from("config file", path),
        data: dict(table),
    })
}

/// A figment error as ours: the key, where its value came from, and what is wrong.
fn invalid(e: figment::Error, file: Option<&Path>) -> ConfigError {
    let origin = match &e.metadata {
        Some(m) if matches!(m.source, Some(Source::File(_))) => file
            .map(|p| format!(" in {}", p.display()))
            .unwrap_or_default(),
        Some(m) => format!(" {}", m.name),
        None => String::new(),
    };
    let key = e.path.join(".");
    match e.kind {
        // The path ends with the unknown field already.
        figment::error::Kind::UnknownField(field, _) => ConfigError::UnknownKey {
            key: if key.is_empty() { field } else { key },
            origin,
        },
        figment::error::Kind::UnknownVariant(found, expected) => ConfigError::Invalid {
            key,
            origin,
            reason: format!("{found:?} is not one of {}", expected.join(", ")),
        },
        kind => ConfigError::Invalid {
            key,
            origin,
            reason: kind.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::CommandFactory;
    use std::fs;

    const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/quakesync.toml");

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Loads with the given file contents (if any) and flags. The environment of the test
    /// process is not used for the keys under test (the process tests cover it).
    fn load_with(file: Option<&str>, flags: &[&str]) -> Result<Config, ConfigError> {
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
        let args = ["quakesync", "config"].iter().chain(flags);
        let matches =
            Cli::command()
                .try_get_matches_from(args)
                .map_err(|e| ConfigError::Parse {
                    path: PathBuf::new(),
                    message: e.to_string(),
                })?;
        load_from(
            file.is_some().then_some(path.as_path()),
            &dir.path().join("absent.toml"),
            &matches,
        )
    }

    fn error(file: Option<&str>, flags: &[&str]) -> String {
        match load_with(file, flags) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_come_from_the_crates() -> TestResult {
        let c = load_with(None, &[])?;
        assert_eq!(c.database.url.expose(), "sqlite://quakesync.db");
        assert_eq!(c.database.pool_size.get(), 8);
        assert_eq!(c.http.bind.to_string(), "127.0.0.1:8080");
        assert!(c.http.admin_token.is_none());
        assert_eq!(c.source.kind, SourceKind::Fdsn);
        assert_eq!(
            c.source_url(),
            "https://earthquake.usgs.gov/fdsnws/event/1/query"
        );
        assert!(c.source.start_time.is_none() && c.source.min_magnitude.is_none());
        let s = &c.sync;
        assert!(s.enabled);
        assert_eq!(
            (
                s.interval_secs.get(),
                s.startup_delay_secs,
                s.batch_size.get(),
                s.overlap_secs
            ),
            (600, 30, 100, 300)
        );
        assert_eq!(
            (
                s.max_retries,
                s.http_timeout_secs.get(),
                s.max_response_mb.get(),
                s.max_pages.get()
            ),
            (3, 30, 64, 10_000)
        );
        Ok(())
    }

    #[test]
    fn the_shipped_file_holds_every_key_at_its_default() -> TestResult {
        let text = fs::read_to_string(SHIPPED)?;
        let from_file = load_with(Some(&text), &[])?;
        assert_eq!(
            from_file.redacted_toml()?,
            load_with(None, &[])?.redacted_toml()?
        );
        for (key, ..) in SETTINGS {
            let (section, name) = key.split_once('.').ok_or("dotted key")?;
            assert!(text.contains(&format!("[{section}]")), "{section}");
            assert!(
                text.lines().any(|l| l
                    .trim_start_matches(['#', ' '])
                    .starts_with(&format!("{name} ="))),
                "{key} missing from the shipped file"
            );
        }
        Ok(())
    }

    #[test]
    fn the_file_overrides_defaults_and_flags_override_the_file() -> TestResult {
        let file = r#"
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
        "#;
        let c = load_with(Some(file), &[])?;
        assert_eq!(
            c.database.url.expose(),
            "postgres://quake:pw@db:5432/quakes"
        );
        assert_eq!(c.database.pool_size.get(), 4);
        assert_eq!(c.http.bind.to_string(), "0.0.0.0:9000");
        assert_eq!(c.admin_token_secret(), Some("tok"));
        assert_eq!(c.source.kind, SourceKind::Feed);
        // The URL follows the kind when not set explicitly.
        assert_eq!(c.source_url(), quake_api::USGS_FEED_URL);
        assert_eq!(
            c.source.start_time.map(|t| t.to_rfc3339()),
            Some("2024-01-02T03:04:05+00:00".to_owned())
        );
        assert_eq!(c.source.min_magnitude, Some(Finite(2.0)));
        assert!(!c.sync.enabled);
        assert_eq!(c.sync.batch_size.get(), 20000);
        assert_eq!(
            c.sync.interval_secs.get(),
            600,
            "untouched keys keep defaults"
        );

        let c = load_with(
            Some(file),
            &[
                "--database-url",
                "postgresql://u@h/d",
                "--bind",
                "[::1]:7000",
                "--source-kind",
                "emsc",
                "--batch-size",
                "42",
                "--sync-enabled",
                "yes",
                "--start-time",
                "2024-05-01T12:00:00+02:00",
                "--overlap-secs",
                "", // empty counts as unset
            ],
        )?;
        assert_eq!(c.database.url.expose(), "postgresql://u@h/d");
        assert_eq!(c.http.bind.to_string(), "[::1]:7000");
        assert_eq!(c.source_url(), quake_api::EMSC_FDSN_QUERY_URL);
        assert_eq!(c.sync.batch_size.get(), 42);
        assert!(c.sync.enabled);
        assert_eq!(c.sync.overlap_secs, 300);
        assert_eq!(
            c.source.start_time.map(|t| t.to_rfc3339()),
            Some("2024-05-01T10:00:00+00:00".to_owned())
        );
        // An explicit URL is kept when the kind changes.
        let c = load_with(
            Some("[source]\nurl = \"https://example.org/q\"\n"),
            &["--source-kind", "emsc"],
        )?;
        assert_eq!(c.source_url(), "https://example.org/q");
        Ok(())
    }

    #[test]
    fn unknown_keys_are_named_with_their_file() {
        let msg = error(Some("[sync]\nintervall = 5\n"), &[]);
        assert!(msg.starts_with("unknown key `sync.intervall` in "), "{msg}");
        assert!(msg.ends_with("quakesync.toml"), "{msg}");
        let msg = error(Some("verbose = true\n"), &[]);
        assert!(msg.starts_with("unknown key `verbose` in "), "{msg}");
        let msg = error(Some("[sync.extra]\nx = 1\n"), &[]);
        assert!(msg.starts_with("unknown key `sync.extra` in "), "{msg}");
    }

    #[test]
    fn bad_values_name_their_key_and_origin() {
        let cases: &[(Option<&str>, &[&str], &str)] = &[
            (
                None,
                &["--batch-size", "0"],
                "invalid value for sync.batch_size (--batch-size): 0 is outside 1..=20000",
            ),
            (
                Some("[sync]\nbatch_size = 20001\n"),
                &[],
                "invalid value for sync.batch_size in ",
            ),
            (
                None,
                &["--source-kind", "usgs"],
                "invalid value for source.kind (--source-kind): \"usgs\" is not one of fdsn, feed, emsc",
            ),
            (
                Some("[source]\nstart_time = \"yesterday\"\n"),
                &[],
                "invalid value for source.start_time in ",
            ),
            (
                None,
                &["--sync-enabled", "maybe"],
                "invalid value for sync.enabled (--sync-enabled)",
            ),
            (
                None,
                &["--pool-size", "0"],
                "invalid value for database.pool_size (--pool-size): 0 is below the minimum 1",
            ),
            (
                None,
                &["--max-pages", "0"],
                "invalid value for sync.max_pages (--max-pages): 0 is below the minimum 1",
            ),
            (
                None,
                &["--interval-secs", "-5"],
                "invalid value for sync.interval_secs (--interval-secs)",
            ),
            (
                None,
                &["--max-response-mb", "0"],
                "invalid value for sync.max_response_mb",
            ),
            (
                None,
                &["--http-timeout-secs", "0"],
                "invalid value for sync.http_timeout_secs",
            ),
            (
                None,
                &["--bind", "localhost"],
                "invalid value for http.bind (--bind)",
            ),
            (
                None,
                &["--source-url", "ftp://example.org/"],
                "invalid value for source.url (--source-url)",
            ),
            (
                None,
                &["--min-magnitude", "NaN"],
                "invalid value for source.min_magnitude (--min-magnitude)",
            ),
            (
                None,
                &["--database-url", "quakes.db"],
                "invalid value for database.url (--database-url)",
            ),
            (
                Some("[http]\nadmin_token = \"\"\n"),
                &[],
                "invalid value for http.admin_token in ",
            ),
            (Some("sync = 3\n"), &[], "invalid value for sync in "),
        ];
        for (file, flags, expected) in cases {
            let msg = error(*file, flags);
            assert!(
                msg.starts_with(expected),
                "{msg:?} should start with {expected:?}"
            );
        }
        let msg = error(Some("[sync]\nbatch_size = 20001\n"), &[]);
        assert!(msg.ends_with(": 20001 is outside 1..=20000"), "{msg}");
    }

    #[test]
    fn toml_syntax_errors_give_position_without_the_line() {
        let msg = error(Some("[database]\nurl = \"postgres://u:hunter2@h/d\n"), &[]);
        assert!(msg.starts_with("cannot parse config file "), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn secrets_never_show() -> TestResult {
        let (password, token) = ("s3cr3t-p4ss", "t0k3n-value");
        let url = format!("postgres://quake:{password}@db:5432/quakes?password={password}");
        let c = load_with(None, &["--database-url", &url, "--admin-token", token])?;
        let shown = [c.redacted_toml()?, format!("{c:?}")];
        for text in &shown {
            assert!(!text.contains(password), "{text}");
            assert!(!text.contains(token), "{text}");
        }
        assert!(
            shown[0].contains("url = \"postgres://quake:***@db:5432/quakes?password=***\""),
            "{}",
            shown[0]
        );
        assert!(shown[0].contains("admin_token = \"***\""), "{}", shown[0]);
        // Secrets still reach the code that needs them.
        assert_eq!(c.database.url.expose(), url);
        assert_eq!(c.admin_token_secret(), Some(token));
        // Invalid URLs are redacted in errors too.
        let msg = error(
            None,
            &["--database-url", &format!("mysql://quake:{password}@db/q")],
        );
        assert!(!msg.contains(password), "{msg}");
        Ok(())
    }

    #[test]
    fn the_printed_configuration_loads_back() -> TestResult {
        let flags = [
            "--start-time",
            "2024-01-01T00:00:00.5Z",
            "--min-magnitude",
            "4",
            "--source-kind",
            "emsc",
            "--sync-enabled",
            "false",
        ];
        let c = load_with(None, &flags)?;
        let text = c.redacted_toml()?;
        assert!(
            text.contains("start_time = \"2024-01-01T00:00:00.500Z\""),
            "{text}"
        );
        assert_eq!(load_with(Some(&text), &[])?.redacted_toml()?, text);
        Ok(())
    }
}
