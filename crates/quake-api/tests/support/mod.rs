//! Shared by the HTTP test binaries: the fixtures and fast retry options.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::Duration;

use quake_api::HttpOptions;

/// The repository's `testdata/` folder.
pub const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/");

/// A fixture's bytes.
pub fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{TESTDATA}{name}")).unwrap()
}

/// The default policy with waits short enough for a test (5 s timeout, 3 retries, ≤ 20 ms backoff).
pub fn fast_opts() -> HttpOptions {
    HttpOptions {
        timeout: Duration::from_secs(5),
        max_retries: 3,
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        ..HttpOptions::default()
    }
}
