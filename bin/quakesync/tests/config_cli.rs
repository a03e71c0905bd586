//! `quakesync config` and configuration errors, through the real binary.

use std::path::Path;
use std::process::{Command, Output};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Runs the binary in `dir` with only the given environment.
fn quakesync(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_quakesync"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .output()
}

#[test]
fn config_prints_the_effective_configuration_redacted() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out = quakesync(
        dir.path(),
        &["config", "--batch-size", "250"],
        &[
            ("DATABASE_URL", "postgres://quake:pg-s3cret@db:5432/quakes"),
            ("QUAKESYNC_ADMIN_TOKEN", "admin-s3cret"),
        ],
    )?;
    let stdout = String::from_utf8(out.stdout)?;
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("url = \"postgres://quake:***@db:5432/quakes\""),
        "{stdout}"
    );
    assert!(stdout.contains("admin_token = \"***\""), "{stdout}");
    assert!(stdout.contains("batch_size = 250"), "{stdout}");
    assert!(!stdout.contains("s3cret"), "{stdout}");
    assert!(!String::from_utf8(out.stderr)?.contains("s3cret"));
    Ok(())
}

#[test]
fn bad_configuration_exits_2_naming_the_key() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("config"))?;
    std::fs::write(
        dir.path().join("config/quakesync.toml"),
        "[sync]\nintervall = 60\n",
    )?;
    let out = quakesync(dir.path(), &["config"], &[])?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.contains("unknown key `sync.intervall` in config/quakesync.toml"),
        "{stderr}"
    );

    // A missing explicitly named file is an error.
    let out = quakesync(dir.path(), &["config", "--config", "missing.toml"], &[])?;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr)?.contains("missing.toml"));

    std::fs::remove_file(dir.path().join("config/quakesync.toml"))?;
    let out = quakesync(dir.path(), &["config"], &[("QUAKESYNC_BATCH_SIZE", "0")])?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.contains(
            "invalid value for sync.batch_size (QUAKESYNC_BATCH_SIZE): 0 is outside 1..=20000"
        ),
        "{stderr}"
    );
    Ok(())
}

/// Defaults < file < environment < flags, through the real binary (the environment is the
/// process's own, so it is tested here rather than in the unit tests).
#[test]
fn the_environment_overrides_the_file_and_flags_override_both() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("config"))?;
    std::fs::write(
        dir.path().join("config/quakesync.toml"),
        "[sync]\nbatch_size = 500\ninterval_secs = 60\nmax_pages = 7\n",
    )?;
    let out = quakesync(
        dir.path(),
        &["config", "--interval-secs", "90"],
        &[
            ("QUAKESYNC_BATCH_SIZE", "700"),
            ("QUAKESYNC_SYNC_INTERVAL_SECS", "80"),
            ("QUAKESYNC_SOURCE_KIND", "emsc"),
            ("QUAKESYNC_SYNC_ENABLED", "false"),
            ("QUAKESYNC_OVERLAP_SECS", ""), // empty counts as unset
        ],
    )?;
    let stdout = String::from_utf8(out.stdout)?;
    assert!(out.status.success(), "{stdout}");
    for line in [
        "batch_size = 700",
        "interval_secs = 90",
        "max_pages = 7",
        "overlap_secs = 300",
        "enabled = false",
        "kind = \"emsc\"",
        "url = \"https://www.seismicportal.eu/fdsnws/event/1/query\"",
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line}:\n{stdout}");
    }

    // A bad value names the key and where it came from: the file, the variable, the flag.
    for (args, env, want) in [
        (
            &["config"][..],
            &[("QUAKESYNC_MAX_PAGES", "0")][..],
            "invalid value for sync.max_pages (QUAKESYNC_MAX_PAGES): 0 is below the minimum 1",
        ),
        (
            &["config", "--max-pages", "0"][..],
            &[][..],
            "invalid value for sync.max_pages (--max-pages): 0 is below the minimum 1",
        ),
        (
            &["config"][..],
            &[("QUAKESYNC_SYNC_ENABLED", "maybe")][..],
            "invalid value for sync.enabled (QUAKESYNC_SYNC_ENABLED)",
        ),
    ] {
        let out = quakesync(dir.path(), args, env)?;
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8(out.stderr)?;
        assert!(stderr.contains(want), "{stderr}");
    }
    std::fs::write(
        dir.path().join("config/quakesync.toml"),
        "[sync]\nbatch_size = 0\n",
    )?;
    let out = quakesync(dir.path(), &["config"], &[])?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.contains(
            "invalid value for sync.batch_size in config/quakesync.toml: 0 is outside 1..=20000"
        ),
        "{stderr}"
    );
    Ok(())
}

/// The `[live]` section (issue 18): its defaults by source kind, the environment, the
/// bounds of the poll interval (30 s to a day) and a URL of the other catalogue's protocol,
/// refused naming the key (exit 2).
#[test]
fn live_lane_settings_defaults_env_and_the_minimum() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let section = |stdout: &str| -> String {
        stdout
            .split("[live]")
            .nth(1)
            .unwrap_or_default()
            .split("\n[")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let out = quakesync(dir.path(), &["config"], &[])?;
    assert!(out.status.success());
    let live = section(&String::from_utf8(out.stdout)?);
    for line in [
        "enabled = true",
        "url = \"https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_hour.geojson\"",
        "interval_secs = 60",
    ] {
        assert!(live.lines().any(|l| l == line), "{line}:\n{live}");
    }
    let out = quakesync(
        dir.path(),
        &["config"],
        &[
            ("QUAKESYNC_SOURCE_KIND", "emsc"),
            ("QUAKESYNC_LIVE_ENABLED", "false"),
            ("QUAKESYNC_LIVE_INTERVAL_SECS", "30"),
        ],
    )?;
    assert!(out.status.success());
    let live = section(&String::from_utf8(out.stdout)?);
    for line in [
        "enabled = false",
        "url = \"wss://www.seismicportal.eu/standing_order/websocket\"",
        "interval_secs = 30",
    ] {
        assert!(live.lines().any(|l| l == line), "{line}:\n{live}");
    }
    let out = quakesync(
        dir.path(),
        &["config"],
        &[(
            "QUAKESYNC_LIVE_URL",
            "http://user:s3cret@127.0.0.1:9/feed.geojson",
        )],
    )?;
    let stdout = String::from_utf8(out.stdout)?;
    assert!(
        out.status.success() && !stdout.contains("s3cret"),
        "{stdout}"
    );
    for (env, want) in [
        (
            ("QUAKESYNC_LIVE_INTERVAL_SECS", "29"),
            "invalid value for live.interval_secs (QUAKESYNC_LIVE_INTERVAL_SECS): 29 is below the minimum 30",
        ),
        (
            ("QUAKESYNC_LIVE_URL", "ftp://example.org/feed"),
            "invalid value for live.url (QUAKESYNC_LIVE_URL)",
        ),
        (
            ("QUAKESYNC_LIVE_INTERVAL_SECS", "86401"),
            "invalid value for live.interval_secs (QUAKESYNC_LIVE_INTERVAL_SECS): 86401 is above the maximum 86400",
        ),
        // EMSC's push service for a USGS catalogue would mix catalogues.
        (
            (
                "QUAKESYNC_LIVE_URL",
                "wss://example.org/standing_order/websocket",
            ),
            "invalid value for live.url (QUAKESYNC_LIVE_URL): a ws(s) push service (EMSC's) with source.kind = \"fdsn\"",
        ),
    ] {
        let out = quakesync(dir.path(), &["config"], &[env])?;
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8(out.stderr)?;
        assert!(stderr.contains(want), "{stderr}");
    }
    // A USGS summary feed for an EMSC catalogue, likewise (a disabled lane is not checked).
    let emsc_with_feed = [
        ("QUAKESYNC_SOURCE_KIND", "emsc"),
        ("QUAKESYNC_LIVE_URL", "https://example.org/all_hour.geojson"),
    ];
    let out = quakesync(dir.path(), &["config"], &emsc_with_feed)?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.contains("invalid value for live.url (QUAKESYNC_LIVE_URL): an http(s) live feed"),
        "{stderr}"
    );
    let out = quakesync(
        dir.path(),
        &["config", "--live-enabled", "false"],
        &emsc_with_feed,
    )?;
    assert!(out.status.success());
    let out = quakesync(dir.path(), &["config", "--live-interval-secs", "10"], &[])?;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr)?;
    assert!(
        stderr.contains("invalid value for live.interval_secs (--live-interval-secs)"),
        "{stderr}"
    );
    Ok(())
}
