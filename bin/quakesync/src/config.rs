//! Configuration (SPEC section 4): the crates' own sections, merged by figment.
//!
//! Reads: the config file (`--config PATH`, else `$QUAKESYNC_CONFIG`, else
//! [`DEFAULT_CONFIG_PATH`] if present), then every key of [`crate::cli::Settings`] from its
//! environment variable or its flag (clap's `env`: the flag wins). Precedence: defaults <
//! file < environment < flags. Each section, its defaults and its checks belong to the
//! crate it configures: [`DatabaseSettings`], [`HttpSettings`], [`SourceSettings`],
//! [`SyncSettings`], [`LiveSettings`], [`StreamSettings`]. Each value keeps where it came
//! from (figment metadata), so an error names the key and the file, variable or flag;
//! unknown keys are refused (`deny_unknown_fields`). Secrets print redacted.

use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory as _};
use figment::Figment;
use figment::error::Kind;
use figment::providers::Serialized;
use figment::value::{Dict, Value};
use quake_store::DatabaseSettings;
use serde::{Deserialize, Serialize};
use status_http::{HttpSettings, StreamSettings};
use sync_engine::{LiveSettings, SourceSettings, SyncSettings};

use crate::cli::Cli;

/// The config file read when neither `--config` nor `QUAKESYNC_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "config/quakesync.toml";

/// The effective configuration.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub source: SourceSettings,
    pub sync: SyncSettings,
    pub live: LiveSettings,
    pub stream: StreamSettings,
}

impl Config {
    /// The effective configuration as TOML, secrets redacted, for `quakesync config`.
    pub fn redacted_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
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
        figment = figment.merge(Serialized::defaults(file_values(path)?));
    }
    for arg in Cli::command().get_arguments() {
        let key = arg.get_id().as_str();
        if let Some(value) = key.contains('.').then(|| given(matches, key)).flatten() {
            figment = figment.merge(Serialized::default(key, value));
        }
    }
    let mut config: Config = figment
        .extract_lossy()
        .map_err(|e| invalid(e, file.as_deref(), matches))?;
    // What keys fine one by one can still get wrong together.
    if let Err((key, reason)) = config.live.check(config.source.kind) {
        return Err(ConfigError::Invalid {
            origin: origin(key, file.as_deref(), matches),
            key: key.into(),
            reason,
        });
    }
    sync_engine::config::resolve_urls(&mut config.source, &mut config.live);
    Ok(config)
}

/// The value a flag or environment variable gives `key`. An empty value
/// (`QUAKESYNC_OVERLAP_SECS=`) counts as unset.
fn given<'a>(matches: &'a ArgMatches, key: &str) -> Option<&'a str> {
    let value = matches.get_one::<String>(key)?.trim();
    (!value.is_empty()).then_some(value)
}

/// The config file's values. Parsed here (not by figment) so that a syntax error shows its
/// position but never the line, which could hold a password.
fn file_values(path: &Path) -> Result<Dict, ConfigError> {
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
    Ok(dict(table))
}

/// Where `key`'s value came from: ` (ENV_VAR)`, ` (--flag)`, else ` in FILE` (or nothing).
fn origin(key: &str, file: Option<&Path>, matches: &ArgMatches) -> String {
    let command = Cli::command();
    let arg = command.get_arguments().find(|a| a.get_id() == key);
    match arg.filter(|_| given(matches, key).is_some()) {
        Some(arg) => match (matches.value_source(key), arg.get_env()) {
            (Some(ValueSource::EnvVariable), Some(env)) => format!(" ({})", env.to_string_lossy()),
            _ => format!(" (--{})", arg.get_long().unwrap_or(key)),
        },
        None => file
            .map(|p| format!(" in {}", p.display()))
            .unwrap_or_default(),
    }
}

/// A figment error as ours: the key, where its value came from (the flag or variable that
/// gave it, else the file), and what is wrong.
fn invalid(e: figment::Error, file: Option<&Path>, matches: &ArgMatches) -> ConfigError {
    let key = e.path.join(".");
    let command = Cli::command();
    let arg = command.get_arguments().find(|a| a.get_id() == key.as_str());
    let origin = origin(&key, file, matches);
    // A secret's value never shows, not even one of the wrong type.
    let secret = arg.is_some_and(|a| a.is_hide_env_values_set());
    match e.kind {
        // The path ends with the unknown field already.
        Kind::UnknownField(field, _) => ConfigError::UnknownKey {
            key: if key.is_empty() { field } else { key },
            origin,
        },
        Kind::InvalidType(_, expected) | Kind::InvalidValue(_, expected) if secret => {
            let reason = format!("expected {expected}");
            ConfigError::Invalid {
                key,
                origin,
                reason,
            }
        }
        Kind::UnknownVariant(found, expected) => ConfigError::Invalid {
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
    use quake_core::config::Finite;
    use std::fs;
    use sync_engine::SourceKind;

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
            c.source.url(),
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
        let command = Cli::command();
        let keys: Vec<&str> = command
            .get_arguments()
            .map(|a| a.get_id().as_str())
            .filter(|id| id.contains('.'))
            .collect();
        assert_eq!(keys.len(), 23, "{keys:?}");
        for key in keys {
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
        assert_eq!(c.http.admin_token(), Some("tok"));
        assert_eq!(c.source.kind, SourceKind::Feed);
        // The URL follows the kind when not set explicitly.
        assert_eq!(c.source.url(), quake_api::USGS_FEED_URL);
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
        assert_eq!(c.source.url(), quake_api::EMSC_FDSN_QUERY_URL);
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
        assert_eq!(c.source.url(), "https://example.org/q");
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
        assert_eq!(c.http.admin_token(), Some(token));
        // A secret of the wrong type is not shown either.
        let msg = error(Some("[http]\nadmin_token = 123456789\n"), &[]);
        assert!(
            msg.starts_with("invalid value for http.admin_token in "),
            "{msg}"
        );
        assert!(!msg.contains("123456789"), "{msg}");
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
