//! The `[source]`, `[sync]` and `[live]` configuration sections (SPEC section 4), with this crate's
//! defaults and quake-api's for the upstream requests ([`quake_api::DEFAULT_TIMEOUT`],
//! [`quake_api::DEFAULT_MAX_RETRIES`], [`quake_api::DEFAULT_MAX_RESPONSE_BYTES`]): the
//! TOML names the upstream settings under `[sync]`, so they live here, not in quake-api.
//! A source URL may carry credentials: it prints redacted.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use quake_api::{ApiError, HttpOptions};
use quake_core::config::{Bounded, Finite, SecretUrl};
use serde::{Deserialize, Serialize};

use crate::engine::{
    DEFAULT_BATCH_SIZE, DEFAULT_MAX_PAGES, DEFAULT_OVERLAP, EngineConfig, MAX_BATCH_SIZE,
};
use crate::live::DEFAULT_LIVE_INTERVAL;
use crate::service::{DEFAULT_INTERVAL, DEFAULT_STARTUP_DELAY, Schedule};
use crate::source::{Source, SourceKind};

/// The `[source]` section: which upstream, from when, above which magnitude.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceSettings {
    pub kind: SourceKind,
    /// Unset: the kind's default ([`SourceSettings::url`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<UpstreamUrl>,
    /// Unset: [`EngineConfig::initial_lookback`] before the first run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_magnitude: Option<Finite>,
}

impl SourceSettings {
    /// The upstream URL: `url`, else the kind's default.
    pub fn url(&self) -> &str {
        self.url
            .as_ref()
            .map_or(self.kind.default_url(), |u| u.expose())
    }

    /// Sets `url` to the kind's default when unset, so that printing the settings shows
    /// the URL in effect.
    pub fn resolve_url(&mut self) {
        let url = self.kind.default_url();
        self.url
            .get_or_insert_with(|| UpstreamUrl(url.to_owned().into()));
    }

    /// The configured upstream.
    pub fn source(&self, http: HttpOptions) -> Result<Arc<dyn Source>, ApiError> {
        self.kind.source(self.url(), http)
    }
}

/// An http(s) URL with a host ([`quake_api::check_url`]); shown redacted.
#[derive(Debug, Deserialize, Serialize)]
#[serde(try_from = "String")]
pub struct UpstreamUrl(SecretUrl);

impl Deref for UpstreamUrl {
    type Target = SecretUrl;

    fn deref(&self) -> &SecretUrl {
        &self.0
    }
}

impl TryFrom<String> for UpstreamUrl {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        quake_api::check_url(&raw).map_err(|e| e.to_string())?;
        Ok(UpstreamUrl(raw.into()))
    }
}

/// The `[sync]` section: the schedule, the engine's paging and the upstream requests.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSettings {
    pub enabled: bool,
    pub interval_secs: Bounded<1, { u64::MAX }>,
    pub startup_delay_secs: u64,
    pub batch_size: Bounded<1, { MAX_BATCH_SIZE as u64 }>,
    pub overlap_secs: u64,
    pub max_retries: u32,
    pub http_timeout_secs: Bounded<1, { u64::MAX }>,
    pub max_response_mb: Bounded<1, { u64::MAX }>,
    pub max_pages: Bounded<1, { u64::MAX }>,
}

impl Default for SyncSettings {
    fn default() -> Self {
        SyncSettings {
            enabled: Schedule::default().enabled,
            interval_secs: Bounded::clamped(DEFAULT_INTERVAL.as_secs()),
            startup_delay_secs: DEFAULT_STARTUP_DELAY.as_secs(),
            batch_size: Bounded::clamped(DEFAULT_BATCH_SIZE.into()),
            overlap_secs: DEFAULT_OVERLAP.as_secs(),
            max_retries: quake_api::DEFAULT_MAX_RETRIES,
            http_timeout_secs: Bounded::clamped(quake_api::DEFAULT_TIMEOUT.as_secs()),
            max_response_mb: Bounded::clamped(quake_api::DEFAULT_MAX_RESPONSE_BYTES >> 20),
            max_pages: Bounded::clamped(DEFAULT_MAX_PAGES),
        }
    }
}

impl SyncSettings {
    /// The scheduler's settings.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            enabled: self.enabled,
            interval: Duration::from_secs(self.interval_secs.get()),
            startup_delay: Duration::from_secs(self.startup_delay_secs),
        }
    }

    /// The upstream clients' settings.
    pub fn http_options(&self) -> HttpOptions {
        HttpOptions {
            timeout: Duration::from_secs(self.http_timeout_secs.get()),
            max_retries: self.max_retries,
            max_response_bytes: self.max_response_mb.get().saturating_mul(1024 * 1024),
            ..HttpOptions::default()
        }
    }

    /// The engine's settings, with the source's start time and magnitude filter.
    pub fn engine_config(&self, source: &SourceSettings) -> EngineConfig {
        EngineConfig {
            batch_size: self.batch_size.get_u32(),
            overlap: Duration::from_secs(self.overlap_secs),
            start_time: source.start_time,
            min_magnitude: source.min_magnitude.map(f64::from),
            max_pages: self.max_pages.get(),
            ..EngineConfig::default()
        }
    }
}

/// The feed the live lane polls unless configured, for source kinds `fdsn` and `feed`: the
/// USGS summary feed of the past hour, regenerated every minute.
pub const USGS_LIVE_FEED_URL: &str =
    "https://earthquake.usgs.gov/earthquakes/feed/v1.0/summary/all_hour.geojson";
/// The shortest poll interval `live.interval_secs` accepts: the USGS regenerates its summary
/// feeds every minute, and asks automated clients not to poll more often.
pub const MIN_LIVE_INTERVAL_SECS: u64 = 30;
/// The longest poll interval `live.interval_secs` accepts: a day.
pub const MAX_LIVE_INTERVAL_SECS: u64 = 86_400;

impl SourceKind {
    /// The live lane's upstream for this kind unless configured: the USGS `all_hour`
    /// summary feed (polled) for `fdsn` and `feed`, the EMSC push service for `emsc`.
    pub fn default_live_url(self) -> &'static str {
        match self {
            SourceKind::Fdsn | SourceKind::Feed => USGS_LIVE_FEED_URL,
            SourceKind::Emsc => quake_api::EMSC_WEBSOCKET_URL,
        }
    }
}

/// The `[live]` section: the live lane beside the scheduled sync ([`crate::live`]).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LiveSettings {
    pub enabled: bool,
    /// An http(s) summary feed (polled) or a ws(s) push service (listened to). Unset: the
    /// source kind's default ([`SourceKind::default_live_url`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<LiveUrl>,
    /// Seconds between two polls (polling only; 30 to 86400, the maximum checked by
    /// [`LiveSettings::check`]).
    pub interval_secs: Bounded<MIN_LIVE_INTERVAL_SECS, { u64::MAX }>,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            enabled: true,
            url: None,
            interval_secs: Bounded::clamped(DEFAULT_LIVE_INTERVAL.as_secs()),
        }
    }
}

impl LiveSettings {
    /// The live URL: `url`, else the kind's default.
    pub fn url(&self, kind: SourceKind) -> &str {
        self.url
            .as_ref()
            .map_or(kind.default_live_url(), |u| u.expose())
    }

    /// Sets `url` to the kind's default when unset, so that printing shows the URL in effect.
    pub fn resolve_url(&mut self, kind: SourceKind) {
        let url = kind.default_live_url();
        self.url
            .get_or_insert_with(|| LiveUrl(url.to_owned().into()));
    }

    /// What single keys cannot tell (`Err`: the key and the reason): `interval_secs` over a
    /// day ([`MAX_LIVE_INTERVAL_SECS`]); a lane that would mix catalogues (key `live.url`): a
    /// push (ws/wss) URL is EMSC's protocol, so only for source kind `emsc`; a polled
    /// (http/https) URL is a USGS summary feed, so only for kinds `fdsn` and `feed`. The URL
    /// of a disabled lane is not checked.
    pub fn check(&self, kind: SourceKind) -> Result<(), (&'static str, String)> {
        let secs = self.interval_secs.get();
        if secs > MAX_LIVE_INTERVAL_SECS {
            return Err((
                "live.interval_secs",
                format!("{secs} is above the maximum {MAX_LIVE_INTERVAL_SECS}"),
            ));
        }
        if !self.enabled {
            return Ok(());
        }
        let push = crate::live::LiveMode::of_url(self.url(kind)) == crate::live::LiveMode::Push;
        let reason = match (kind, push) {
            (SourceKind::Emsc, false) => "an http(s) live feed (a USGS summary feed) with \
                 source.kind = \"emsc\" would mix catalogues; use a ws(s) push service or \
                 leave live.url unset"
                .to_owned(),
            (SourceKind::Fdsn | SourceKind::Feed, true) => format!(
                "a ws(s) push service (EMSC's) with source.kind = \"{}\" would mix catalogues; \
                 use an http(s) summary feed or leave live.url unset",
                if kind == SourceKind::Feed {
                    "feed"
                } else {
                    "fdsn"
                }
            ),
            _ => return Ok(()),
        };
        Err(("live.url", reason))
    }

    /// The lane's settings (`None` when disabled): the URL for `source`'s kind, and the
    /// sync's upstream request settings for the polls.
    pub fn config(
        &self,
        source: &SourceSettings,
        sync: &SyncSettings,
    ) -> Option<crate::live::LiveConfig> {
        self.enabled.then(|| crate::live::LiveConfig {
            interval: Duration::from_secs(self.interval_secs.get()),
            http: sync.http_options(),
            ..crate::live::LiveConfig::new(self.url(source.kind))
        })
    }
}

/// Sets the source's and the live lane's URLs to their kind's defaults where unset, so
/// that printing the settings shows the URLs in effect.
pub fn resolve_urls(source: &mut SourceSettings, live: &mut LiveSettings) {
    source.resolve_url();
    live.resolve_url(source.kind);
}

/// A live lane URL: http(s) (a summary feed, polled) or ws(s) (a push service), with a
/// host; shown redacted.
#[derive(Debug, Deserialize, Serialize)]
#[serde(try_from = "String")]
pub struct LiveUrl(SecretUrl);

impl Deref for LiveUrl {
    type Target = SecretUrl;

    fn deref(&self) -> &SecretUrl {
        &self.0
    }
}

impl TryFrom<String> for LiveUrl {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        let trimmed = raw.trim_start();
        // A ws(s) URL is checked as the http(s) URL of the same host and path.
        let as_http = if let Some(rest) = trimmed.strip_prefix("wss://") {
            format!("https://{rest}")
        } else if let Some(rest) = trimmed.strip_prefix("ws://") {
            format!("http://{rest}")
        } else {
            trimmed.to_owned()
        };
        quake_api::check_url(&as_http).map_err(|e| {
            e.to_string().replace(
                "(http or https expected)",
                "(http, https, ws or wss expected)",
            )
        })?;
        Ok(LiveUrl(raw.into()))
    }
}
