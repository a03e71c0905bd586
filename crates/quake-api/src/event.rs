//! Typed events, pages and record validation.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where an event came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// USGS ComCat (FDSN event service or summary feeds).
    Usgs,
    /// EMSC seismicportal.
    Emsc,
}

impl SourceKind {
    /// `"usgs"` or `"emsc"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            SourceKind::Usgs => "usgs",
            SourceKind::Emsc => "emsc",
        }
    }
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One earthquake (or other seismic event) as the upstream describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The preferred id.
    pub id: String,
    /// All associated ids; always contains `id`.
    pub ids: BTreeSet<String>,
    /// Origin time.
    pub time: DateTime<Utc>,
    /// Last modification time upstream.
    pub updated: DateTime<Utc>,
    /// Magnitude (may be negative; `None` when the upstream sent null).
    pub magnitude: Option<f64>,
    /// Magnitude type as sent (`ml`, `Md`, ...).
    pub mag_type: Option<String>,
    /// Place description (USGS `place`, EMSC `flynn_region`).
    pub place: Option<String>,
    /// Title (USGS api >= 1.1 only).
    pub title: Option<String>,
    /// Longitude in degrees.
    pub longitude: f64,
    /// Latitude in degrees.
    pub latitude: f64,
    /// Depth in km, positive down; may be negative (above sea level).
    pub depth_km: Option<f64>,
    /// Lower-cased status: `automatic`, `reviewed`, `deleted` or whatever else the upstream sent.
    pub status: String,
    /// USGS `type`, EMSC `evtype`.
    pub event_type: Option<String>,
    /// Network (USGS `net`, EMSC `auth`).
    pub net: Option<String>,
    /// Network code (USGS `code`, EMSC `source_id`).
    pub code: Option<String>,
    /// USGS tsunami flag.
    pub tsunami: Option<i32>,
    /// USGS significance.
    pub sig: Option<i32>,
    /// USGS number of felt reports.
    pub felt: Option<i32>,
    /// USGS PAGER alert level.
    pub alert: Option<String>,
    /// Event page URL.
    pub url: Option<String>,
    /// USGS community decimal intensity ("Did You Feel It?").
    pub cdi: Option<f64>,
    /// USGS ShakeMap maximum estimated instrumental intensity.
    pub mmi: Option<f64>,
    /// Largest azimuthal gap between azimuthally adjacent stations, in degrees.
    pub gap: Option<f64>,
    /// USGS `sources`: the networks that contributed, `,us,ci,` as sent.
    pub sources: Option<String>,
    /// The upstream's whole `properties` object, its JSON text exactly as received (every
    /// property, including those this crate does not type: `nst`, `dmin`, `rms`, `tz`,
    /// `types`, `detail`, and whatever the upstream adds later).
    pub properties: Option<String>,
    /// The source this event was read from.
    pub source: SourceKind,
}

impl Event {
    /// Whether the upstream marks this event as deleted.
    pub fn is_deleted(&self) -> bool {
        self.status == "deleted"
    }
}

/// A record that could not be turned into a valid [`Event`]; kept with its raw JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRecord {
    /// The record's id, when one could be read.
    pub source_id: Option<String>,
    /// Why the record was rejected.
    pub reason: String,
    /// The raw JSON text of the record exactly as received.
    pub payload: String,
}

/// One response's worth of records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Page {
    /// Records that converted and validated.
    pub events: Vec<Event>,
    /// Records that did not.
    pub rejected: Vec<RejectedRecord>,
    /// `metadata.generated` (USGS, ms since epoch); `None` for EMSC or when absent.
    pub generated: Option<DateTime<Utc>>,
    /// `metadata.count` (EMSC: `count` or the older `totalCount`).
    pub metadata_count: Option<u64>,
}

impl Page {
    /// Number of records in the page: events plus rejected.
    pub fn record_count(&self) -> usize {
        self.events.len() + self.rejected.len()
    }

    /// Whether the page holds no record at all.
    pub fn is_empty(&self) -> bool {
        self.record_count() == 0
    }
}

/// Check an event before it goes anywhere near a database (SPEC section 3, step 4).
///
/// Rules: non-empty id; longitude in [-180, 180] and latitude in [-90, 90], finite;
/// magnitude and depth finite or null; no NUL character in any text field.
/// Returns the reason on failure.
pub fn validate_event(e: &Event) -> Result<(), String> {
    if e.id.trim().is_empty() {
        return Err("empty id".to_owned());
    }
    if !e.longitude.is_finite() || !(-180.0..=180.0).contains(&e.longitude) {
        return Err(format!("longitude {} outside [-180, 180]", e.longitude));
    }
    if !e.latitude.is_finite() || !(-90.0..=90.0).contains(&e.latitude) {
        return Err(format!("latitude {} outside [-90, 90]", e.latitude));
    }
    if let Some(m) = e.magnitude
        && !m.is_finite()
    {
        return Err(format!("magnitude {m} is not finite"));
    }
    if let Some(d) = e.depth_km
        && !d.is_finite()
    {
        return Err(format!("depth {d} is not finite"));
    }
    let texts: [(&str, Option<&str>); 11] = [
        ("id", Some(e.id.as_str())),
        ("place", e.place.as_deref()),
        ("title", e.title.as_deref()),
        ("mag_type", e.mag_type.as_deref()),
        ("status", Some(e.status.as_str())),
        ("event_type", e.event_type.as_deref()),
        ("net", e.net.as_deref()),
        ("code", e.code.as_deref()),
        ("alert", e.alert.as_deref()),
        ("url", e.url.as_deref()),
        ("sources", e.sources.as_deref()),
    ];
    for (name, value) in texts {
        if value.is_some_and(|v| v.contains('\0')) {
            return Err(format!("NUL character in {name}"));
        }
    }
    if e.ids.iter().any(|i| i.contains('\0')) {
        return Err("NUL character in ids".to_owned());
    }
    Ok(())
}
