//! Rows of the four tables, as Rust types.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use quake_core::{RunStatus, Trigger};

use crate::schema::{earthquakes, rejected_records, sync_runs, sync_state};
use crate::types::Ts;

/// An event as the engine hands it to the store: everything but the bookkeeping columns
/// (`first_seen_at`, `last_changed_at`, `merged_into`), which the store sets.
#[derive(
    Insertable, AsChangeset, Queryable, Selectable, Debug, Clone, PartialEq, Serialize, Deserialize,
)]
#[diesel(table_name = earthquakes, treat_none_as_null = true)]
pub struct EventRecord {
    pub id: String,
    /// All associated ids in USGS form, `,a,b,` (sorted, includes `id`).
    pub ids: String,
    pub time: Ts,
    pub updated: Ts,
    pub magnitude: Option<f64>,
    pub mag_type: Option<String>,
    pub place: Option<String>,
    pub title: Option<String>,
    pub longitude: f64,
    pub latitude: f64,
    pub depth_km: Option<f64>,
    pub status: String,
    pub event_type: Option<String>,
    pub net: Option<String>,
    pub code: Option<String>,
    pub tsunami: Option<i32>,
    pub sig: Option<i32>,
    pub felt: Option<i32>,
    pub alert: Option<String>,
    pub url: Option<String>,
    pub source: String,
    pub content_hash: String,
    /// USGS community decimal intensity.
    pub cdi: Option<f64>,
    /// USGS ShakeMap maximum instrumental intensity.
    pub mmi: Option<f64>,
    /// Azimuthal gap, degrees.
    pub gap: Option<f64>,
    /// USGS `sources` (`,us,ci,`), as sent.
    pub sources: Option<String>,
    /// The upstream's `properties` object, its JSON text as received (lossless); `None`
    /// for rows stored before migration `lossless_properties` that no revision has
    /// touched since.
    pub properties: Option<String>,
}

impl EventRecord {
    /// The ids listed in `ids`, without the empty parts of `,a,b,`.
    pub fn alias_list(&self) -> impl Iterator<Item = &str> {
        self.ids.split(',').filter(|s| !s.is_empty())
    }

    pub fn is_deleted(&self) -> bool {
        self.status == "deleted"
    }

    /// The reason this record cannot be stored, if it holds a NUL character (PostgreSQL
    /// refuses them in text; SQLite would store them: both refuse here, before the database).
    pub fn nul_check(&self) -> Result<(), String> {
        let fields: [(&str, Option<&str>); 14] = [
            ("id", Some(&self.id)),
            ("ids", Some(&self.ids)),
            ("mag_type", self.mag_type.as_deref()),
            ("place", self.place.as_deref()),
            ("title", self.title.as_deref()),
            ("status", Some(&self.status)),
            ("event_type", self.event_type.as_deref()),
            ("net", self.net.as_deref()),
            ("code", self.code.as_deref()),
            ("alert", self.alert.as_deref()),
            ("url", self.url.as_deref()),
            ("source", Some(&self.source)),
            ("sources", self.sources.as_deref()),
            ("properties", self.properties.as_deref()),
        ];
        match fields
            .iter()
            .find(|(_, v)| v.is_some_and(|s| s.contains('\0')))
        {
            Some((name, _)) => Err(format!("NUL character in field `{name}`")),
            None => Ok(()),
        }
    }
}

/// A stored catalogue row: the [`EventRecord`] the engine last wrote for it, plus the
/// bookkeeping the store keeps (`first_seen_at`, `last_changed_at`, `merged_into`). The
/// event's fields are declared once, in [`EventRecord`]; an `Earthquake` dereferences to
/// it, so `row.magnitude` reads the record's field.
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Serialize)]
#[diesel(table_name = earthquakes)]
pub struct Earthquake {
    /// The event as written.
    #[diesel(embed)]
    #[serde(flatten)]
    pub record: EventRecord,
    pub first_seen_at: Ts,
    pub last_changed_at: Ts,
    /// The id of the event that superseded this one, once merged.
    pub merged_into: Option<String>,
}

impl std::ops::Deref for Earthquake {
    type Target = EventRecord;
    fn deref(&self) -> &EventRecord {
        &self.record
    }
}

/// What the revision policy needs to know of a stored row.
#[derive(Queryable, QueryableByName, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = earthquakes)]
pub struct StoredVersion {
    pub id: String,
    pub updated: Ts,
    pub content_hash: String,
    pub status: String,
    pub merged_into: Option<String>,
}

/// A `sync_runs` row.
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Serialize)]
#[diesel(table_name = sync_runs)]
pub struct SyncRun {
    pub id: i64,
    #[diesel(deserialize_as = String)]
    pub trigger: Trigger,
    #[diesel(deserialize_as = String)]
    pub status: RunStatus,
    pub started_at: Ts,
    pub finished_at: Option<Ts>,
    pub fetched: i64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub deleted: i64,
    pub merged: i64,
    pub rejected: i64,
    pub pages: i64,
    pub error: Option<String>,
}

impl SyncRun {
    /// How long the run took, once it finished (0 if the clock stepped back meanwhile).
    pub fn duration_ms(&self) -> Option<i64> {
        self.finished_at
            .map(|f| (f.0 - self.started_at.0).num_milliseconds().max(0))
    }
}

/// A record refused before or by the database, with its raw JSON.
#[derive(Insertable, Debug, Clone, PartialEq, Serialize)]
#[diesel(table_name = rejected_records)]
pub struct NewRejected {
    pub run_id: Option<i64>,
    pub source_id: Option<String>,
    pub reason: String,
    pub payload: String,
    pub rejected_at: Ts,
}

/// A `rejected_records` row.
#[derive(Queryable, Selectable, Debug, Clone, PartialEq, Serialize)]
#[diesel(table_name = rejected_records)]
pub struct RejectedRecord {
    pub id: i64,
    pub run_id: Option<i64>,
    pub source_id: Option<String>,
    pub reason: String,
    pub payload: String,
    pub rejected_at: Ts,
}

/// A `sync_state` row: the cursor of one source.
#[derive(Queryable, Selectable, Insertable, AsChangeset, Debug, Clone, PartialEq, Serialize)]
#[diesel(table_name = sync_state, treat_none_as_null = true)]
pub struct SyncState {
    pub source: String,
    pub cursor: Option<Ts>,
    pub resume_offset: i64,
    /// The pinned `starttime` of this source's queries.
    pub start_time: Option<Ts>,
    pub updated_at: Ts,
}

/// Counts of one page or one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunCounts {
    pub fetched: i64,
    pub inserted: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub deleted: i64,
    pub merged: i64,
    pub rejected: i64,
    pub pages: i64,
}

impl RunCounts {
    /// True when something was inserted, updated, deleted or merged (the catalogue
    /// changed).
    pub fn changed(&self) -> bool {
        self.inserted + self.updated + self.deleted + self.merged > 0
    }

    pub fn add(&mut self, o: &RunCounts) {
        self.fetched += o.fetched;
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.deleted += o.deleted;
        self.merged += o.merged;
        self.rejected += o.rejected;
        self.pages += o.pages;
    }

    /// Records that changed the catalogue: inserted + updated + deleted + merged.
    pub fn synced(&self) -> i64 {
        self.inserted + self.updated + self.deleted + self.merged
    }

    /// Records that did not: unchanged + rejected.
    pub fn skipped(&self) -> i64 {
        self.unchanged + self.rejected
    }

    pub fn from_run(r: &SyncRun) -> Self {
        RunCounts {
            fetched: r.fetched,
            inserted: r.inserted,
            updated: r.updated,
            unchanged: r.unchanged,
            deleted: r.deleted,
            merged: r.merged,
            rejected: r.rejected,
            pages: r.pages,
        }
    }
}
