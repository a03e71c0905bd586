//! The read API's queries: FDSN event-service filters over the catalogue (SPEC section 6).
//!
//! One [`EventQuery`] serves both backends. Guarantees:
//! - a deterministic order with an `id` tiebreak in the direction of the sort, so pages
//!   asked with `limit`/`offset` neither repeat nor skip rows while nothing changes, and a
//!   row written by a concurrent sync moves only the rows after it;
//! - merged rows (`merged_into IS NOT NULL`) are never listed: they are aliases of the event
//!   that superseded them now, and [`find_by_any_id`] resolves their id to it;
//! - deleted rows are left out unless [`IncludeDeleted::Yes`] (or only them with
//!   [`IncludeDeleted::Only`]);
//! - `magnitude` sorts put NULL magnitudes last when descending and first when ascending on
//!   both backends;
//! - `updatedafter` matches a row updated upstream at or after the time **or changed in this
//!   catalogue** at or after it (`last_changed_at`): another quakesync syncing from this one
//!   with a cursor then never misses an event this one received late (its upstream `updated`
//!   older than the cursor). Rows seen twice are absorbed by the reader's upsert.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::models::Earthquake;
use crate::pool::DbConn;
use crate::types::Ts;

/// The largest `limit` (and result without a limit) the FDSN service allows.
pub const MAX_LIMIT: i64 = 20000;

/// The share of the globe (latitude range × longitude range) under which a box query on
/// PostgreSQL also asks the GiST index on `point(longitude, latitude)`; above it, walking
/// the time index finds the rows sooner.
pub const SMALL_BOX: f64 = 0.05;

/// How many `merged_into` links [`find_by_any_id`] follows before giving up on a cycle.
const MAX_MERGE_HOPS: usize = 16;

/// FDSN `orderby`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OrderBy {
    /// Newest origin time first (the FDSN default).
    #[default]
    Time,
    TimeAsc,
    /// Largest magnitude first; NULL magnitudes last.
    Magnitude,
    /// Smallest magnitude first; NULL magnitudes first.
    MagnitudeAsc,
}

impl OrderBy {
    /// `time`, `time-asc`, `magnitude`, `magnitude-asc` (case-insensitive).
    pub fn parse(s: &str) -> Option<OrderBy> {
        match s.to_ascii_lowercase().as_str() {
            "time" => Some(OrderBy::Time),
            "time-asc" => Some(OrderBy::TimeAsc),
            "magnitude" => Some(OrderBy::Magnitude),
            "magnitude-asc" => Some(OrderBy::MagnitudeAsc),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderBy::Time => "time",
            OrderBy::TimeAsc => "time-asc",
            OrderBy::Magnitude => "magnitude",
            OrderBy::MagnitudeAsc => "magnitude-asc",
        }
    }
}

/// FDSN `includedeleted` (USGS: `false`, `true`, `only`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IncludeDeleted {
    #[default]
    No,
    Yes,
    Only,
}

impl IncludeDeleted {
    /// `true`/`false`/`only` (also `1`/`0`, `yes`/`no`; case-insensitive).
    pub fn parse(s: &str) -> Option<IncludeDeleted> {
        match s.to_ascii_lowercase().as_str() {
            "false" | "0" | "no" => Some(IncludeDeleted::No),
            "true" | "1" | "yes" => Some(IncludeDeleted::Yes),
            "only" => Some(IncludeDeleted::Only),
            _ => None,
        }
    }

    /// Whether a row with `status` passes this filter (merged rows aside).
    pub fn admits(self, status: &str) -> bool {
        let deleted = status == "deleted";
        match self {
            IncludeDeleted::No => !deleted,
            IncludeDeleted::Yes => true,
            IncludeDeleted::Only => deleted,
        }
    }
}

/// FDSN `latitude`/`longitude` with `minradius`/`maxradius`: events whose epicentre is
/// between the two great-circle distances (degrees, inclusive) from the point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Radius {
    pub latitude: f64,
    pub longitude: f64,
    /// Degrees, 0 when not given.
    pub min_deg: f64,
    /// Degrees, 180 when not given.
    pub max_deg: f64,
}

impl Radius {
    /// The latitude/longitude boxes `(min_lon, min_lat, max_lon, max_lat)` that hold every
    /// point within `max_deg` of the centre: one box, two when it crosses the antimeridian,
    /// a band of every longitude when it reaches a pole; `None` when it covers the globe.
    /// The exact distance test runs after them; they are there for the point index.
    pub fn boxes(&self) -> Option<Vec<(f64, f64, f64, f64)>> {
        const MARGIN: f64 = 1e-9;
        let r = self.max_deg;
        if r >= 180.0 {
            return None;
        }
        let (lat0, lon0) = (self.latitude, self.longitude);
        let (lat_min, lat_max) = (lat0 - r - MARGIN, lat0 + r + MARGIN);
        if lat_min <= -90.0 || lat_max >= 90.0 {
            return Some(vec![(-180.0, lat_min.max(-90.0), 180.0, lat_max.min(90.0))]);
        }
        // The widest longitude on the small circle: sin(dlon) = sin(r) / cos(lat0), defined
        // because |lat0| + r < 90 here.
        let ratio = (r.to_radians().sin() / lat0.to_radians().cos()).min(1.0);
        let dlon = ratio.asin().to_degrees() + MARGIN;
        let (west, east) = (lon0 - dlon, lon0 + dlon);
        Some(if west < -180.0 {
            vec![
                (west + 360.0, lat_min, 180.0, lat_max),
                (-180.0, lat_min, east, lat_max),
            ]
        } else if east > 180.0 {
            vec![
                (west, lat_min, 180.0, lat_max),
                (-180.0, lat_min, east - 360.0, lat_max),
            ]
        } else {
            vec![(west, lat_min, east, lat_max)]
        })
    }
}

pub use crate::geo::SQLITE_DISTANCE_FN;

/// The row a streamed answer stopped at: the next chunk continues after it (keyset paging in
/// the query's order, so rows written meanwhile neither repeat nor shift the rest).
#[derive(Debug, Clone, PartialEq)]
pub struct After {
    pub time: Ts,
    pub magnitude: Option<f64>,
    pub id: String,
}

impl After {
    pub fn of(row: &Earthquake) -> After {
        After {
            time: row.time,
            magnitude: row.magnitude,
            id: row.id.clone(),
        }
    }
}

/// FDSN `reviewstatus` (USGS extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewStatus {
    Automatic,
    Reviewed,
}

impl ReviewStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Automatic => "automatic",
            ReviewStatus::Reviewed => "reviewed",
        }
    }
}

/// Whether `s` is a word the filters below may put into SQL as a literal: letters, digits,
/// space, `.`, `-`, `_` and the wildcards `*` and `?` (event and magnitude types have nothing
/// else). The read API refuses anything else with a 400 before it gets here.
pub fn is_plain_word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_' | '*' | '?'))
}

/// An FDSN event query over the catalogue. Unset fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    /// Origin time at or after.
    pub starttime: Option<Ts>,
    /// Origin time at or before (inclusive, as USGS).
    pub endtime: Option<Ts>,
    /// Updated upstream, or changed here, at or after (see the module doc).
    pub updatedafter: Option<Ts>,
    pub minmagnitude: Option<f64>,
    pub maxmagnitude: Option<f64>,
    pub minlatitude: Option<f64>,
    pub maxlatitude: Option<f64>,
    /// With `maxlongitude`, in [-360, 360]: a box may cross the antimeridian
    /// (`minlongitude=170&maxlongitude=190`, or `-190` to `-170`), as at USGS.
    pub minlongitude: Option<f64>,
    pub maxlongitude: Option<f64>,
    /// Any associated id; when set, the other filters are ignored (see [`Store::query_events`](crate::Store::query_events)).
    pub eventid: Option<String>,
    pub orderby: OrderBy,
    /// At most this many rows (`None`: all of them).
    pub limit: Option<i64>,
    /// 1-based, as in FDSN (`None` or anything below 1: from the first row).
    pub offset: Option<i64>,
    pub includedeleted: IncludeDeleted,
    /// Depth in km, inclusive.
    pub mindepth: Option<f64>,
    pub maxdepth: Option<f64>,
    /// Epicentral distance from a point.
    pub radius: Option<Radius>,
    /// Magnitude type, case-insensitive ([`is_plain_word`]; `*`/`?` wildcards).
    pub magnitudetype: Option<String>,
    /// Event types, any of them, case-insensitive ([`is_plain_word`]; `*`/`?` wildcards).
    pub eventtypes: Vec<String>,
    pub reviewstatus: Option<ReviewStatus>,
    /// The catalog (the preferred network, `net`).
    pub catalog: Option<String>,
    /// A contributing network: listed in `sources` (or the `net` of a row without them).
    pub contributor: Option<String>,
    pub minfelt: Option<i32>,
    /// PAGER alert level (`green`, `yellow`, `orange`, `red`).
    pub alertlevel: Option<String>,
    pub mincdi: Option<f64>,
    pub maxcdi: Option<f64>,
    pub minmmi: Option<f64>,
    pub maxmmi: Option<f64>,
    pub mingap: Option<f64>,
    pub maxgap: Option<f64>,
    pub minsig: Option<i32>,
    pub maxsig: Option<i32>,
    /// Continue after this row (streamed answers); the offset applies before it only.
    pub after: Option<After>,
}

impl EventQuery {
    /// The longitude filter as at most two closed ranges within [-180, 180] (two when the
    /// box crosses the antimeridian); `None` when longitude does not filter.
    pub fn longitude_ranges(&self) -> Option<Vec<(f64, f64)>> {
        if self.minlongitude.is_none() && self.maxlongitude.is_none() {
            return None;
        }
        let min = self.minlongitude.unwrap_or(-180.0);
        let max = self.maxlongitude.unwrap_or(180.0);
        if max - min >= 360.0 {
            return None;
        }
        let ranges = if min < -180.0 {
            vec![(min + 360.0, 180.0), (-180.0, max)]
        } else if max > 180.0 {
            vec![(min, 180.0), (-180.0, max - 360.0)]
        } else {
            vec![(min, max)]
        };
        Some(ranges)
    }

    /// The latitude/longitude box as `(min_lon, min_lat, max_lon, max_lat)` boxes (two when
    /// it crosses the antimeridian), when it covers less than `SMALL_BOX` of the globe's
    /// latitude × longitude range; `None` otherwise (or when there is no box).
    pub fn small_boxes(&self) -> Option<Vec<(f64, f64, f64, f64)>> {
        if self.minlatitude.is_none()
            && self.maxlatitude.is_none()
            && self.minlongitude.is_none()
            && self.maxlongitude.is_none()
        {
            return None;
        }
        let lat = (
            self.minlatitude.unwrap_or(-90.0),
            self.maxlatitude.unwrap_or(90.0),
        );
        let lons = self.longitude_ranges().unwrap_or(vec![(-180.0, 180.0)]);
        let width: f64 = lons.iter().map(|(a, b)| (b - a).max(0.0)).sum();
        let share = (lat.1 - lat.0).max(0.0) / 180.0 * width / 360.0;
        (share < SMALL_BOX).then(|| {
            lons.into_iter()
                .map(|(a, b)| (a, lat.0, b, lat.1))
                .collect()
        })
    }

    /// The number of rows skipped before the first one returned (`offset - 1`).
    pub fn skip(&self) -> i64 {
        self.offset.unwrap_or(1).max(1) - 1
    }
}

/// `lower(col) LIKE 'a' OR …` for plain words ([`is_plain_word`], so a literal is safe),
/// `*` and `?` as wildcards; `None` when no word is given.
fn like_any(column: &str, words: &[String]) -> Option<String> {
    let alternatives: Vec<String> = words
        .iter()
        .filter(|w| is_plain_word(w))
        .map(|w| {
            let pattern: String = w
                .to_lowercase()
                .chars()
                .map(|c| match c {
                    '*' => "%".to_string(),
                    '?' => "_".to_string(),
                    '_' => "\\_".to_string(),
                    c => c.to_string(),
                })
                .collect();
            format!("lower({column}) LIKE '{pattern}' ESCAPE '\\'")
        })
        .collect();
    (!alternatives.is_empty()).then(|| format!("({})", alternatives.join(" OR ")))
}

/// A finite number as an SQL literal (Rust never writes an exponent for f64).
fn num(x: f64) -> String {
    format!("({x:?})")
}

/// The exact distance test of a [`Radius`] (the boxes narrow it first).
fn radius_sql(r: &Radius, sqlite: bool) -> String {
    let (lat, lon) = (num(r.latitude), num(r.longitude));
    let distance = if sqlite {
        format!("{SQLITE_DISTANCE_FN}(latitude, longitude, {lat}, {lon})")
    } else {
        format!(
            "2 * degrees(asin(sqrt(LEAST(1.0, power(sin(radians(latitude - {lat}) / 2), 2) \
             + cos(radians(latitude)) * cos(radians({lat})) * power(sin(radians(longitude - {lon}) / 2), 2)))))"
        )
    };
    format!(
        "{distance} BETWEEN {} AND {}",
        num(r.min_deg),
        num(r.max_deg)
    )
}

/// `lo <= column <= hi`, each bound when given.
macro_rules! within {
    ($q:ident, $column:expr, $lo:expr, $hi:expr) => {
        if let Some(x) = $lo {
            $q = $q.filter($column.ge(x));
        }
        if let Some(x) = $hi {
            $q = $q.filter($column.le(x));
        }
    };
}

/// Applies the filters of an [`EventQuery`] (all but `eventid`, order and paging) to a
/// boxed `earthquakes` query of either backend.
macro_rules! filtered {
    ($q:expr, $query:expr, $sqlite:expr) => {{
        use crate::schema::earthquakes::dsl as e;
        use diesel::dsl::sql;
        use diesel::sql_types::Bool;
        let query: &EventQuery = $query;
        let mut q = $q.filter(e::merged_into.is_null());
        match query.includedeleted {
            IncludeDeleted::No => q = q.filter(e::status.ne("deleted")),
            IncludeDeleted::Only => q = q.filter(e::status.eq("deleted")),
            IncludeDeleted::Yes => {}
        }
        if let Some(t) = query.starttime {
            q = q.filter(e::time.ge(t));
        }
        if let Some(t) = query.endtime {
            q = q.filter(e::time.le(t));
        }
        if let Some(t) = query.updatedafter {
            q = q.filter(e::updated.ge(t).or(e::last_changed_at.ge(t)));
        }
        within!(q, e::magnitude, query.minmagnitude, query.maxmagnitude);
        within!(q, e::latitude, query.minlatitude, query.maxlatitude);
        match query.longitude_ranges().as_deref() {
            Some([(a, b)]) => q = q.filter(e::longitude.between(*a, *b)),
            Some([(a, b), (c, d)]) => {
                q = q.filter(
                    e::longitude
                        .between(*a, *b)
                        .or(e::longitude.between(*c, *d)),
                )
            }
            _ => {}
        }
        within!(q, e::depth_km, query.mindepth, query.maxdepth);
        if let Some(r) = &query.radius {
            if let Some(boxes) = r.boxes() {
                // Plain bounds (SQLite's indexes; harmless on PostgreSQL, where the caller
                // adds the point-index form).
                let lat_min = boxes.iter().map(|b| b.1).fold(90.0, f64::min);
                let lat_max = boxes.iter().map(|b| b.3).fold(-90.0, f64::max);
                q = q.filter(e::latitude.between(lat_min, lat_max));
            }
            q = q.filter(sql::<Bool>(&radius_sql(r, $sqlite)));
        }
        if let Some(m) = &query.magnitudetype
            && let Some(cond) = like_any("mag_type", std::slice::from_ref(m))
        {
            q = q.filter(sql::<Bool>(&cond));
        }
        if let Some(cond) = like_any("event_type", &query.eventtypes) {
            q = q.filter(sql::<Bool>(&cond));
        }
        if let Some(r) = query.reviewstatus {
            q = q.filter(e::status.eq(r.as_str()));
        }
        if let Some(c) = &query.catalog {
            q = q.filter(e::net.eq(c.clone()));
        }
        if let Some(c) = &query.contributor {
            let pattern = format!("%,{},%", escape_like(c));
            q = q.filter(
                e::sources
                    .assume_not_null()
                    .like(pattern)
                    .escape('\\')
                    .or(e::sources
                        .is_null()
                        .and(e::net.assume_not_null().eq(c.clone()))),
            );
        }
        if let Some(f) = query.minfelt {
            q = q.filter(e::felt.ge(f));
        }
        if let Some(a) = &query.alertlevel {
            q = q.filter(e::alert.eq(a.clone()));
        }
        within!(q, e::cdi, query.mincdi, query.maxcdi);
        within!(q, e::mmi, query.minmmi, query.maxmmi);
        within!(q, e::gap, query.mingap, query.maxgap);
        within!(q, e::sig, query.minsig, query.maxsig);
        q
    }};
}

/// Continues after `after` in the order of `orderby` (keyset; see [`After`]).
macro_rules! after {
    ($q:expr, $query:expr) => {{
        use crate::schema::earthquakes::dsl as e;
        let query: &EventQuery = $query;
        let mut q = $q;
        if let Some(a) = &query.after {
            let (t, id) = (a.time, a.id.clone());
            let mag = e::magnitude.assume_not_null();
            // The time orders also say the bound alone (`time <= t`), which the time index
            // seeks to: the OR below is no index condition, and without the bound a
            // continuation walked (and read the rows of) everything before it.
            q = match (query.orderby, a.magnitude) {
                (OrderBy::Time, _) => q
                    .filter(e::time.le(t))
                    .filter(e::time.lt(t).or(e::time.eq(t).and(e::id.lt(id)))),
                (OrderBy::TimeAsc, _) => q
                    .filter(e::time.ge(t))
                    .filter(e::time.gt(t).or(e::time.eq(t).and(e::id.gt(id)))),
                // descending, NULL magnitudes last
                (OrderBy::Magnitude, Some(m)) => q.filter(
                    mag.lt(m)
                        .or(mag.eq(m).and(e::id.lt(id)))
                        .or(e::magnitude.is_null()),
                ),
                (OrderBy::Magnitude, None) => q.filter(e::magnitude.is_null().and(e::id.lt(id))),
                // ascending, NULL magnitudes first
                (OrderBy::MagnitudeAsc, Some(m)) => {
                    q.filter(mag.gt(m).or(mag.eq(m).and(e::id.gt(id))))
                }
                (OrderBy::MagnitudeAsc, None) => q.filter(
                    e::magnitude
                        .is_null()
                        .and(e::id.gt(id))
                        .or(e::magnitude.is_not_null()),
                ),
            };
        }
        q
    }};
}

/// From this many skipped rows on, [`Store::query_events`](crate::Store::query_events) pages by keyset internally (see there).
pub const KEYSET_SKIP: i64 = 1000;

/// The rows an [`EventQuery`] selects, in its order, paged by `limit`/`offset`.
///
/// With `eventid`, the result is the event that id resolves to ([`find_by_any_id`]), when
/// `includedeleted` admits it: at most one row, the other filters ignored (as USGS).
///
/// A deep `offset` ([`KEYSET_SKIP`] rows or more) is not paid row by row: one statement
/// finds the page's ids by skipping over the order's index alone (`id IN (SELECT id … ORDER
/// BY … OFFSET … LIMIT …)`; the time index carries `status` and `merged_into`, so a time-ordered
/// skip reads no table row), then reads just those rows. Same statement, same snapshot: the
/// page is exactly what plain `OFFSET` returns ([`query_events_plain_offset`]).
pub async fn query_events(
    conn: &mut DbConn<'_>,
    query: &EventQuery,
) -> QueryResult<Vec<Earthquake>> {
    query_events_by(conn, query, Read::Planned).await
}

/// How [`query_events_by`] reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Read {
    /// The plans of [`query_events`].
    Planned,
    /// One plain statement ([`query_events_plain_offset`]).
    Plain,
    /// As `Planned`, but a time-ordered box or radius on PostgreSQL always by its cells
    /// ([`pg_cells_walk`]) when it has few enough (tests).
    #[cfg_attr(not(feature = "test-util"), allow(dead_code))]
    Cells,
}

/// [`query_events`] with a time-ordered box or radius on PostgreSQL read by its cells
/// ([`pg_cells_walk`]) whenever it covers at most [`MAX_CELLS`], whatever the plan would
/// choose: the cells' walk tested against [`query_events_plain_offset`].
#[doc(hidden)]
#[cfg(feature = "test-util")]
pub async fn query_events_by_cells(
    conn: &mut DbConn<'_>,
    query: &EventQuery,
) -> QueryResult<Vec<Earthquake>> {
    query_events_by(conn, query, Read::Cells).await
}

/// [`query_events`] as one plain statement: a deep offset read row by row (plain `OFFSET`),
/// a box or radius always with the point-index form. The reference the paths above are
/// tested against.
#[doc(hidden)]
#[cfg(feature = "test-util")]
pub async fn query_events_plain_offset(
    conn: &mut DbConn<'_>,
    query: &EventQuery,
) -> QueryResult<Vec<Earthquake>> {
    query_events_by(conn, query, Read::Plain).await
}

/// The rows of `query` in its order, all filters, continuation and order applied (no paging),
/// on PostgreSQL.
macro_rules! pg_selection {
    ($query:expr, $groups:expr) => {{
        let query: &EventQuery = $query;
        let groups: &[Vec<(f64, f64, f64, f64)>] = $groups;
        let mut q = filtered!(e::earthquakes.into_boxed::<diesel::pg::Pg>(), query, false);
        q = after!(q, query);
        for boxes in groups {
            q = q.filter(pg_in_boxes(boxes));
        }
        pg_ordered!(q, query.orderby)
    }};
}

macro_rules! pg_ordered {
    ($q:expr, $orderby:expr) => {{
        use crate::schema::earthquakes::dsl as e;
        match $orderby {
            OrderBy::Time => $q.order((e::time.desc(), e::id.desc())),
            OrderBy::TimeAsc => $q.order((e::time.asc(), e::id.asc())),
            OrderBy::Magnitude => $q.order((e::magnitude.desc().nulls_last(), e::id.desc())),
            OrderBy::MagnitudeAsc => $q.order((e::magnitude.asc().nulls_first(), e::id.asc())),
        }
    }};
}

/// SQLite sorts NULL as the smallest value: last descending, first ascending.
macro_rules! sqlite_ordered {
    ($q:expr, $orderby:expr) => {{
        use crate::schema::earthquakes::dsl as e;
        match $orderby {
            OrderBy::Time => $q.order((e::time.desc(), e::id.desc())),
            OrderBy::TimeAsc => $q.order((e::time.asc(), e::id.asc())),
            OrderBy::Magnitude => $q.order((e::magnitude.desc(), e::id.desc())),
            OrderBy::MagnitudeAsc => $q.order((e::magnitude.asc(), e::id.asc())),
        }
    }};
}

/// The rows of `query` in its order on SQLite; with `by_magnitude`, a time order is written
/// `+time` so that SQLite reads a sparse magnitude range from the magnitude index and sorts
/// it, instead of walking the time index past every smaller event
/// ([`sqlite_magnitude_sparse`]).
macro_rules! sqlite_selection {
    ($query:expr, $by_magnitude:expr) => {{
        use diesel::dsl::sql;
        use diesel::sql_types::Text;
        let query: &EventQuery = $query;
        let q = filtered!(
            e::earthquakes.into_boxed::<diesel::sqlite::Sqlite>(),
            query,
            true
        );
        let q = after!(q, query);
        match query.orderby {
            OrderBy::Time if $by_magnitude => q.order((sql::<Text>("+time").desc(), e::id.desc())),
            OrderBy::TimeAsc if $by_magnitude => q.order((sql::<Text>("+time").asc(), e::id.asc())),
            _ => sqlite_ordered!(q, query.orderby),
        }
    }};
}

async fn query_events_by(
    conn: &mut DbConn<'_>,
    query: &EventQuery,
    read: Read,
) -> QueryResult<Vec<Earthquake>> {
    let keyset = read != Read::Plain;
    use crate::schema::earthquakes::dsl as e;
    if let Some(id) = &query.eventid {
        let found = find_by_any_id(conn, id).await?;
        return Ok(found
            .filter(|ev| ev.merged_into.is_none() && query.includedeleted.admits(&ev.status))
            .into_iter()
            .collect());
    }
    let limit = query.limit.unwrap_or(i64::MAX).max(0);
    let skip = query.skip();
    let deep = keyset && skip >= KEYSET_SKIP;
    match conn {
        DbConn::Pg(c) => {
            let all = pg_point_boxes(query);
            let spatial = keyset && !all.is_empty();
            let forced = (read == Read::Cells
                && matches!(query.orderby, OrderBy::Time | OrderBy::TimeAsc))
            .then(|| fewest_cells(&all))
            .flatten();
            let plan = match forced {
                Some(cells) => Spatial::Cells(cells),
                None if spatial => pg_spatial_plan(c, query, limit).await?,
                None => Spatial::Groups,
            };
            if let Spatial::Cells(cells) = &plan {
                return pg_cells_walk(c, query, cells, limit, skip).await;
            }
            let groups: Vec<Vec<(f64, f64, f64, f64)>> = match &plan {
                Spatial::Groups => all,
                Spatial::Walk | Spatial::Cells(_) => Vec::new(),
                Spatial::Boxes(boxes) => vec![boxes.clone()],
            };
            if let Spatial::Boxes(boxes) = &plan
                && boxes.len() > 1
            {
                return pg_boxes_apart(c, query, boxes, limit, skip).await;
            }
            // A magnitude range too: its rows are found index-only in the magnitude index
            // (it carries time and state) only when the page's ids are asked for alone
            // (issue 17, 5M rows: 140 ms reading every row of the range, 7 ms this way).
            let magnitude = query.minmagnitude.is_some() || query.maxmagnitude.is_some();
            if deep || spatial || (keyset && magnitude) {
                // The page's ids first (from an index alone where it can), then those rows.
                let page = pg_selection!(query, &groups)
                    .limit(limit)
                    .offset(skip)
                    .select(e::id);
                let q = e::earthquakes
                    .into_boxed::<diesel::pg::Pg>()
                    .filter(e::id.eq_any(page));
                pg_ordered!(q, query.orderby)
                    .select(Earthquake::as_select())
                    .load(&mut **c)
                    .await
            } else {
                pg_selection!(query, &groups)
                    .limit(limit)
                    .offset(skip)
                    .select(Earthquake::as_select())
                    .load(&mut **c)
                    .await
            }
        }
        DbConn::Sqlite(c) => {
            let by_magnitude = keyset && sqlite_magnitude_sparse(c, query, limit).await?;
            if !deep && !by_magnitude {
                return sqlite_selection!(query, false)
                    .limit(limit)
                    .offset(skip)
                    .select(Earthquake::as_select())
                    .load(&mut **c)
                    .await;
            }
            // The page's ids first (from an index alone: the time index or the magnitude
            // index, both carry time and state), then those rows: a sparse magnitude range
            // is sorted as ids, not as whole rows with their properties.
            let page = sqlite_selection!(query, by_magnitude)
                .limit(limit)
                .offset(skip)
                .select(e::id);
            let q = e::earthquakes
                .into_boxed::<diesel::sqlite::Sqlite>()
                .filter(e::id.eq_any(page));
            sqlite_ordered!(q, query.orderby)
                .select(Earthquake::as_select())
                .load(&mut **c)
                .await
        }
    }
}

/// The point-index forms of a query's box and radius (each a list of boxes OR-ed): none when
/// it has neither (or its box covers more than [`SMALL_BOX`]).
fn pg_point_boxes(query: &EventQuery) -> Vec<Vec<(f64, f64, f64, f64)>> {
    query
        .small_boxes()
        .into_iter()
        .chain(query.radius.as_ref().and_then(Radius::boxes))
        .collect()
}

/// Where the rows of recent queries' deep pages stand, per query shape (its filters and order,
/// not its paging), on PostgreSQL: `(p, row)` says `row` is the `p`-th row of the shape's
/// order at a catalogue version (migration 2026-11-30-235000: every statement that writes
/// `earthquakes` raises `catalogue_version` in its own transaction). While the version a page
/// is read at equals a shape's version, a page at offset `p + 1 + k` is the `k` rows after
/// `row` skipped, read by keyset from `row` ([`Store::query_events_marked`](crate::Store::query_events_marked)): a reader paging through
/// a catalogue (offset 1, 1001, 2001 …) or a page asked again costs its own rows, not the
/// rows before it. Any write moves the version, and marks of an older version are never used.
/// Bounded: `MARKED_SHAPES` shapes (the least recently used goes), `MARKS_PER_SHAPE`
/// marks each (the shallowest goes).
#[derive(Debug, Default)]
pub struct PageMarks {
    inner: std::sync::Mutex<Marks>,
}

/// How many query shapes [`PageMarks`] keeps marks for.
pub const MARKED_SHAPES: usize = 64;
/// How many marks [`PageMarks`] keeps per shape.
pub const MARKS_PER_SHAPE: usize = 1024;

#[derive(Debug, Default)]
struct Marks {
    shapes: std::collections::HashMap<String, ShapeMarks>,
    tick: u64,
}

#[derive(Debug)]
struct ShapeMarks {
    version: i64,
    used: u64,
    at: std::collections::BTreeMap<i64, After>,
}

impl PageMarks {
    pub fn new() -> PageMarks {
        PageMarks::default()
    }

    /// The shape of a query: everything but its paging.
    fn shape(query: &EventQuery) -> String {
        let mut q = query.clone();
        q.limit = None;
        q.offset = None;
        q.after = None;
        format!("{q:?}")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Marks> {
        // A panic while holding the lock leaves consistent maps (each update is whole).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The deepest mark at or before position `skip` of `shape` at `version`.
    fn nearest(&self, shape: &str, version: i64, skip: i64) -> Option<(i64, After)> {
        let mut m = self.lock();
        m.tick += 1;
        let tick = m.tick;
        let s = m.shapes.get_mut(shape)?;
        if s.version != version {
            return None;
        }
        s.used = tick;
        s.at.range(..=skip)
            .next_back()
            .map(|(p, a)| (*p, a.clone()))
    }

    /// Notes that `row` is the `position`-th row of `shape` at `version`.
    fn record(&self, shape: &str, version: i64, position: i64, row: &Earthquake) {
        if position < KEYSET_SKIP {
            return;
        }
        let mut m = self.lock();
        m.tick += 1;
        let tick = m.tick;
        if !m.shapes.contains_key(shape) && m.shapes.len() >= MARKED_SHAPES {
            let oldest = m
                .shapes
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                m.shapes.remove(&k);
            }
        }
        let s = m
            .shapes
            .entry(shape.to_string())
            .or_insert_with(|| ShapeMarks {
                version,
                used: tick,
                at: Default::default(),
            });
        if s.version != version {
            if s.version > version {
                // a slower reader's older snapshot: keep the newer marks
                return;
            }
            s.version = version;
            s.at.clear();
        }
        s.used = tick;
        s.at.insert(position, After::of(row));
        if s.at.len() > MARKS_PER_SHAPE {
            s.at.pop_first();
        }
    }

    /// How many marks are kept (all shapes).
    pub fn len(&self) -> usize {
        self.lock().shapes.values().map(|s| s.at.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where an answer read in chunks stands: `rows_before` rows of its shape come up to and
/// including the query's `after` row, counted at catalogue `version` (the first chunk's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub rows_before: i64,
    pub version: i64,
}

/// Rows of [`Store::query_events_marked`](crate::Store::query_events_marked) and the catalogue version they were read at (PostgreSQL;
/// `None` on SQLite and for `eventid`).
#[derive(Debug, Clone, PartialEq)]
pub struct MarkedPage {
    pub rows: Vec<Earthquake>,
    pub version: Option<i64>,
}

/// [`query_events`], with deep offsets continued from `marks` ([`PageMarks`]) on PostgreSQL:
/// the version and the page are read in one snapshot (a read-only REPEATABLE READ
/// transaction), the page continues by keyset from the deepest mark at or before its offset
/// when one of this version exists (else as [`query_events`] does), and the rows it read are
/// noted as marks: the row before the page and its last row. `at` says where a chunked
/// answer's `after` row stands (see [`Position`]), so its chunks mark their ends too when the
/// version has not moved. The rows are always those [`query_events`] returns in the same
/// snapshot. SQLite and `eventid` are answered by [`query_events`] alone.
pub async fn query_events_marked(
    conn: &mut DbConn<'_>,
    marks: &PageMarks,
    query: &EventQuery,
    at: Option<Position>,
) -> QueryResult<MarkedPage> {
    if query.eventid.is_some() {
        return Ok(MarkedPage {
            rows: query_events(conn, query).await?,
            version: None,
        });
    }
    let DbConn::Pg(c) = conn else {
        return Ok(MarkedPage {
            rows: query_events(conn, query).await?,
            version: None,
        });
    };
    c.build_transaction()
        .repeatable_read()
        .read_only()
        .run(async |tx| {
            #[derive(QueryableByName)]
            struct V {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                version: i64,
            }
            let v: V = diesel::sql_query("SELECT version FROM catalogue_version")
                .get_result(tx)
                .await?;
            let shape = PageMarks::shape(query);
            let mut db = DbConn::Pg(tx);
            let rows = match (&query.after, at) {
                (None, _) => {
                    let skip = query.skip();
                    let mut q = query.clone();
                    let mut base = 0;
                    if skip >= KEYSET_SKIP
                        && let Some((p, row)) = marks.nearest(&shape, v.version, skip)
                    {
                        q.after = Some(row);
                        base = p;
                    }
                    // Read the row before the page as well (to mark where the page begins)
                    // when the page does not start at a mark.
                    let before = skip - base > 0 && skip >= KEYSET_SKIP;
                    if before {
                        q.offset = Some(skip - base);
                        q.limit = q.limit.map(|l| l.saturating_add(1));
                    } else {
                        q.offset = Some(skip - base + 1);
                    }
                    let mut rows = query_events_by(&mut db, &q, Read::Planned).await?;
                    if before && !rows.is_empty() {
                        let first = rows.remove(0);
                        marks.record(&shape, v.version, skip, &first);
                    }
                    if let Some(last) = rows.last() {
                        marks.record(&shape, v.version, skip + rows.len() as i64, last);
                    }
                    rows
                }
                (Some(_), Some(pos)) if pos.version == v.version && query.skip() == 0 => {
                    let rows = query_events_by(&mut db, query, Read::Planned).await?;
                    if let Some(last) = rows.last() {
                        marks.record(&shape, v.version, pos.rows_before + rows.len() as i64, last);
                    }
                    rows
                }
                (Some(_), _) => query_events_by(&mut db, query, Read::Planned).await?,
            };
            Ok(MarkedPage {
                rows,
                version: Some(v.version),
            })
        })
        .await
}

/// `(min_lon, min_lat, max_lon, max_lat)`.
type GeoBox = (f64, f64, f64, f64);

/// Whether a time-ordered query with a magnitude range should read that range from SQLite's
/// magnitude index and sort it by time, rather than walk the time index past every event
/// outside the range (SQLite's planner walks: it avoids the sort, and cannot tell how few rows
/// a range holds; at 1M rows `minmagnitude=4.5` walked 221,000 entries of the time index for
/// its 1000 events, 56 ms in sqlite3). The magnitude index carries time and state (migration
/// `2026-12-07-000000_read_magnitude_cover`), so reading the range is index-only, about
/// [`MAGNITUDE_ROW_COST`] steps of the walk per entry; walking costs `limit × rows / k` steps,
/// so the range pays while `k² < limit × rows / MAGNITUDE_ROW_COST`; the range's entries are
/// counted in the index alone, no further than that.
async fn sqlite_magnitude_sparse(
    c: &mut crate::pool::SqliteConn,
    query: &EventQuery,
    limit: i64,
) -> QueryResult<bool> {
    if !matches!(query.orderby, OrderBy::Time | OrderBy::TimeAsc)
        || (query.minmagnitude.is_none() && query.maxmagnitude.is_none())
    {
        return Ok(false);
    }
    let CountCap { cap, .. } = count_cap(c, query, limit, MAGNITUDE_ROW_COST).await?;
    let mut range = Vec::new();
    if let Some(lo) = query.minmagnitude {
        range.push(format!("magnitude >= {}", num(lo)));
    }
    if let Some(hi) = query.maxmagnitude {
        range.push(format!("magnitude <= {}", num(hi)));
    }
    let counted = capped_count(
        c,
        &format!(
            "earthquakes INDEXED BY earthquakes_magnitude_cover_idx WHERE {}",
            range.join(" AND ")
        ),
        cap,
    )
    .await?;
    Ok(counted < cap)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// What [`count_cap`] found: `want`, the rows the walk must find (`limit` after `query`'s
/// skip, within the table), and `cap`, how far a count of index entries may go.
struct CountCap {
    want: i64,
    cap: i64,
}

/// How far a capped count of index entries may go before walking the time index is the
/// cheaper plan for a page of `limit` rows after `query`'s skip: reading and sorting `k`
/// entries costs about `row_cost` steps of the walk each, the walk `want × rows / k` steps,
/// so reading the entries pays while `k² < want × rows / row_cost` (rows from the maintained
/// `catalogue_counts`, no scan).
async fn count_cap<C>(
    c: &mut C,
    query: &EventQuery,
    limit: i64,
    row_cost: f64,
) -> QueryResult<CountCap>
where
    C: diesel_async::AsyncConnection,
    for<'q> diesel::query_builder::SqlQuery: diesel_async::methods::LoadQuery<'q, C, Count>,
{
    let total: Count = diesel::sql_query(
        "SELECT COALESCE((SELECT live + deleted + merged FROM catalogue_counts), 0) AS n",
    )
    .get_result(c)
    .await?;
    let want = limit.saturating_add(query.skip()).clamp(1, total.n.max(1));
    let cap = ((want as f64) * (total.n as f64) / row_cost).sqrt().ceil() as i64 + 1;
    Ok(CountCap { want, cap })
}

/// The rows of `from_where` (`table [INDEXED BY …] WHERE …`), counted no further than `cap`.
async fn capped_count<C>(c: &mut C, from_where: &str, cap: i64) -> QueryResult<i64>
where
    C: diesel_async::AsyncConnection,
    for<'q> diesel::query_builder::SqlQuery: diesel_async::methods::LoadQuery<'q, C, Count>,
{
    let counted: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM (SELECT 1 FROM {from_where} LIMIT {cap}) AS k"
    ))
    .get_result(c)
    .await?;
    Ok(counted.n)
}

/// What reading and sorting one entry of a magnitude range costs on SQLite (index-only), in
/// steps of the time index's walk; see [`sqlite_magnitude_sparse`]. Measured with sqlite3 on
/// the 1M synthetic catalogue (ids first, then the page's rows): the walk costs 0.23–0.25 µs
/// per entry, the range 0.2–0.6 µs per entry plus the page; magnitude 4.0 and up (14,000
/// entries) 17 ms from the range against 21–26 ms walked, 3.5 and up (43,000) 41 ms against
/// 9–24 ms. At 1M rows and 1000 events the cap is then about 22,000 entries.
const MAGNITUDE_ROW_COST: f64 = 2.0;

/// How a box or radius query on PostgreSQL finds its page.
#[derive(Debug, Clone, PartialEq)]
enum Spatial {
    /// Every group of boxes as a point-index filter; the planner chooses (other orders).
    Groups,
    /// Walk the time index, skipping the rows outside (it carries latitude and longitude).
    Walk,
    /// Walk the cell index (migration `2026-12-07-100000_read_cells`) in time order, one
    /// walk per cell that the boxes touch, merged ([`pg_cells_walk`]): the time index's walk
    /// without the entries of the rest of the world.
    Cells(Vec<i32>),
    /// Read these boxes' rows from the point index (index-only: it carries time, id and
    /// state), sort them by time, then read the page's rows; each box on its own when there
    /// are two (an OR of two would be a bitmap scan, which reads every row of both boxes from
    /// the table).
    Boxes(Vec<GeoBox>),
}

/// Whether a box or radius query on PostgreSQL should be answered from the GiST point index
/// (the box's index entries read and sorted by time) rather than by walking the time index
/// and skipping the rows outside (the time index carries latitude and longitude, so that walk
/// reads no table row either).
///
/// PostgreSQL cannot tell: it estimates any `<@ box` at a fixed 0.1 % of the table (at 1M rows,
/// 988 estimated where 166k matched in southern California: 3.4 s fetching and sorting them
/// all). So this counts the box's rows in the point index (an index-only scan), each box of
/// the query on its own, no further than where walking becomes the cheaper plan: reading and
/// sorting `k` entries of the box costs about [`BOX_ROW_COST`] steps of the walk each, walking
/// costs `limit × rows / k` steps, so the point index pays while `k² < limit × rows /
/// BOX_ROW_COST`. The count never reads more than that many index entries (about 13,000 at 1M
/// rows, 29,000 at 5M). The group of boxes with the fewest rows is the one read.
///
/// Before counting, a sample of the walk's first entries ([`pg_walk_sample`]) says whether the
/// boxes are dense where the walk starts: then the walk is the plan and nothing is counted
/// (a box like southern California or a radius around Los Angeles, where counting to the cap
/// cost more than the walk itself).
async fn pg_spatial_plan(
    c: &mut diesel_async::AsyncPgConnection,
    query: &EventQuery,
    limit: i64,
) -> QueryResult<Spatial> {
    if !matches!(query.orderby, OrderBy::Time | OrderBy::TimeAsc) {
        // Only the time index carries the coordinates: leave other orders to the planner.
        return Ok(Spatial::Groups);
    }
    let groups = pg_point_boxes(query);
    if groups.is_empty() {
        return Ok(Spatial::Walk);
    }
    let started = std::time::Instant::now();
    let CountCap { want, cap } = count_cap(c, query, limit, BOX_ROW_COST).await?;
    // Where the walk would start, the boxes are dense enough that walking is the cheaper
    // plan: no count. The walk pays while its density of hits `d` has `want / d <
    // BOX_ROW_COST × d × rows`, i.e. `d > want / (BOX_ROW_COST × cap)` with the cap above.
    let cells = fewest_cells(&groups);
    let Sample {
        hits,
        n: sampled,
        in_cells,
    } = pg_walk_sample(c, query, &groups, cells.as_deref().unwrap_or_default()).await?;
    let sampled_in = started.elapsed();
    // Walking is the plan: by the cells when the boxes touch few enough, the time index's
    // walk otherwise.
    let walk = || cells.clone().map_or(Spatial::Walk, Spatial::Cells);
    // The cells' walk reads about `want × in_cells / hits` entries (all of them when the
    // sample read the whole window): cheap enough, nothing is counted.
    let cells_walk = (want as f64) * (in_cells as f64) / (hits.max(1) as f64);
    if cells.is_some() && (sampled < WALK_SAMPLE || cells_walk <= CELL_WALK_BUDGET) {
        log::debug!(
            "spatial plan: cells (sample {hits}/{in_cells}/{sampled} in {sampled_in:?}, want {want})"
        );
        return Ok(walk());
    }
    if (hits as f64) * BOX_ROW_COST * (cap as f64) > (want as f64) * (sampled as f64) {
        log::debug!(
            "spatial plan: walk (sample {hits}/{sampled} in {sampled_in:?}, want {want}, cap {cap})"
        );
        return Ok(walk());
    }
    // Each group of boxes (the box filter, the radius) alone selects a superset of the
    // answer: the smallest group decides.
    let mut best: Option<(i64, Vec<GeoBox>)> = None;
    for boxes in groups {
        let mut in_group = 0;
        for b in &boxes {
            // One box per statement: an OR of two would be a bitmap scan, which cannot stop
            // at the cap.
            in_group += capped_count(
                c,
                &format!("earthquakes WHERE {}", pg_in_box_sql(b)),
                cap - in_group,
            )
            .await?;
            if in_group >= cap {
                break;
            }
        }
        if in_group < cap && best.as_ref().is_none_or(|(n, _)| in_group < *n) {
            best = Some((in_group, boxes));
        }
    }
    log::debug!(
        "spatial plan: {} (sample {hits}/{sampled} in {sampled_in:?}, counted {:?} in {:?}, \
         want {want}, cap {cap})",
        if best.is_some() { "boxes" } else { "walk" },
        best.as_ref().map(|(n, _)| *n),
        started.elapsed() - sampled_in,
    );
    Ok(best.map_or_else(walk, |(_, boxes)| Spatial::Boxes(boxes)))
}

/// `point(longitude, latitude) <@ box(…)` for one box, as SQL text (the statements that plan
/// a spatial read; the read itself binds its boxes, [`pg_in_boxes`]).
fn pg_in_box_sql(b: &GeoBox) -> String {
    format!(
        "point(longitude, latitude) <@ box(point({}, {}), point({}, {}))",
        num(b.0),
        num(b.1),
        num(b.2),
        num(b.3)
    )
}

/// How many entries of the time index [`pg_walk_sample`] reads (about 3 ms at 5M rows).
const WALK_SAMPLE: i64 = 10_000;

/// Of the first [`WALK_SAMPLE`] entries of the covering time index that the walk would read
/// (in the query's time order, inside its time window; its other filters left out), how many
/// lie in every group of boxes (`groups` not empty), and how many were read: an index-only scan, its cost bounded
/// by the sample and not by the boxes (at 5M rows a capped count of a dense box read 29,000
/// point-index entries, about 19 ms, before a walk of 6,000 entries found the page).
async fn pg_walk_sample(
    c: &mut diesel_async::AsyncPgConnection,
    query: &EventQuery,
    groups: &[Vec<GeoBox>],
    cells: &[i32],
) -> QueryResult<Sample> {
    let mut window = Vec::new();
    let mut bounds = Vec::new();
    for (bound, op) in [(&query.starttime, ">="), (&query.endtime, "<=")] {
        if let Some(t) = bound {
            bounds.push(*t);
            window.push(format!("time {op} ${}", bounds.len()));
        }
    }
    let window = if window.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", window.join(" AND "))
    };
    let hit = groups
        .iter()
        .map(|g| {
            let any: Vec<String> = g.iter().map(pg_in_box_sql).collect();
            format!("({})", any.join(" OR "))
        })
        .collect::<Vec<_>>()
        .join(" AND ");
    let dir = time_direction(query.orderby);
    let in_cells = if cells.is_empty() {
        "FALSE".to_string()
    } else {
        let list: Vec<String> = cells.iter().map(i32::to_string).collect();
        format!("{CELL_SQL} IN ({})", list.join(", "))
    };
    let mut statement = diesel::sql_query(format!(
        "SELECT count(*) FILTER (WHERE {hit}) AS hits, count(*) AS n, \
         count(*) FILTER (WHERE {in_cells}) AS in_cells FROM \
         (SELECT longitude, latitude FROM earthquakes {window} \
          ORDER BY time {dir}, id {dir} LIMIT {WALK_SAMPLE}) AS s"
    ))
    .into_boxed::<diesel::pg::Pg>();
    for t in bounds {
        statement = statement.bind::<crate::schema::sql_types::UtcTs, _>(t);
    }
    statement.get_result(c).await
}

/// The SQL direction of a time-ordered query's order (`ASC` for `time-asc`, `DESC`
/// otherwise), for the statements written as text.
fn time_direction(orderby: OrderBy) -> &'static str {
    if orderby == OrderBy::TimeAsc {
        "ASC"
    } else {
        "DESC"
    }
}

/// What [`pg_walk_sample`] read: `n` entries of the time index, `hits` of them in the boxes,
/// `in_cells` of them in the boxes' cells.
#[derive(QueryableByName)]
struct Sample {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    hits: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    in_cells: i64,
}

/// The side of a cell of the cell index, in degrees of latitude and longitude.
const CELL_DEG: f64 = 5.0;

/// The cell of a row, as the cell index (migration `2026-12-07-100000_read_cells`) writes it:
/// `100 × ⌊latitude / 5⌋ + ⌊longitude / 5⌋` (a statement must say it the same way for
/// PostgreSQL to use the index).
const CELL_SQL: &str = "((floor(latitude / 5) * 100 + floor(longitude / 5))::int)";

/// At most this many cells are walked at once (a box of about 30° × 30°; larger ones, whose
/// walks would be many and mostly short, are left to the other plans). Each is one branch of
/// the merge, planned by PostgreSQL (about 2.5 ms for 12 branches at 5M rows).
const MAX_CELLS: usize = 36;

/// A walk of the cells is the plan without counting when the sample says it reads no more
/// than this many entries for its page (its entries cost what the time index's walk costs,
/// about 0.3 µs each: ~9 ms).
const CELL_WALK_BUDGET: f64 = 30_000.0;

/// The cells (see [`CELL_SQL`]) holding every point of one box.
fn box_cells(b: &GeoBox, cells: &mut std::collections::BTreeSet<i32>) -> Option<()> {
    let cell = |x: f64| {
        let c = (x / CELL_DEG).floor();
        c.is_finite().then_some(c as i32)
    };
    let (lon0, lon1) = (cell(b.0)?, cell(b.2)?);
    let (lat0, lat1) = (cell(b.1)?, cell(b.3)?);
    let n = (i64::from(lon1) - i64::from(lon0) + 1) * (i64::from(lat1) - i64::from(lat0) + 1);
    if n > MAX_CELLS as i64 {
        return None;
    }
    for lat in lat0..=lat1 {
        for lon in lon0..=lon1 {
            cells.insert(lat * 100 + lon);
        }
    }
    (cells.len() <= MAX_CELLS).then_some(())
}

/// The cells of the group of boxes that touches the fewest (any group holds every row of the
/// answer), when that is at most [`MAX_CELLS`].
fn fewest_cells(groups: &[Vec<GeoBox>]) -> Option<Vec<i32>> {
    groups
        .iter()
        .filter_map(|g| {
            let mut cells = std::collections::BTreeSet::new();
            g.iter().try_for_each(|b| box_cells(b, &mut cells))?;
            Some(cells.into_iter().collect::<Vec<i32>>())
        })
        .min_by_key(Vec::len)
}

/// `(q₁) UNION ALL (q₂) …` inside `SELECT * FROM (…) AS u ORDER BY 1 dir, 2 dir LIMIT … OFFSET
/// …`: each branch ordered and limited on its own, so that PostgreSQL merges them (a Merge
/// Append that stops at the page) instead of reading every branch whole and sorting.
struct MergedWalks<Q> {
    parts: Vec<Q>,
    direction: &'static str,
    limit: i64,
    offset: i64,
}

impl<Q: diesel::query_builder::Query> diesel::query_builder::Query for MergedWalks<Q> {
    type SqlType = Q::SqlType;
}

impl<Q> diesel::query_builder::QueryId for MergedWalks<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>>
    diesel::query_builder::QueryFragment<diesel::pg::Pg> for MergedWalks<Q>
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql("SELECT * FROM (");
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                out.push_sql(" UNION ALL ");
            }
            out.push_sql("(");
            part.walk_ast(out.reborrow())?;
            out.push_sql(")");
        }
        out.push_sql(") AS u ORDER BY 1 ");
        out.push_sql(self.direction);
        out.push_sql(", 2 ");
        out.push_sql(self.direction);
        out.push_sql(" LIMIT ");
        out.push_bind_param::<diesel::sql_types::BigInt, _>(&self.limit)?;
        out.push_sql(" OFFSET ");
        out.push_bind_param::<diesel::sql_types::BigInt, _>(&self.offset)?;
        Ok(())
    }
}

/// A page of a time-ordered box or radius query read by walking the cell index: for each
/// cell the boxes touch, that cell's rows in time order with every filter of the query (its
/// first `skip + limit`), merged by PostgreSQL in the query's order, then the page's rows.
/// The rows outside the cells are never read; those inside but outside the boxes are skipped
/// in the index (it carries latitude, longitude and state).
async fn pg_cells_walk(
    c: &mut diesel_async::AsyncPgConnection,
    query: &EventQuery,
    cells: &[i32],
    limit: i64,
    skip: i64,
) -> QueryResult<Vec<Earthquake>> {
    use crate::schema::earthquakes::dsl as e;
    use diesel::dsl::sql;
    use diesel::sql_types::Integer;
    let want = skip.saturating_add(limit);
    let parts = cells
        .iter()
        .map(|cell| {
            pg_selection!(query, &[])
                .filter(sql::<Integer>(CELL_SQL).eq(*cell))
                .limit(want)
                .select((e::time, e::id))
        })
        .collect();
    let merged = MergedWalks {
        parts,
        direction: time_direction(query.orderby),
        limit,
        offset: skip,
    };
    let page: Vec<(Ts, String)> = merged.load(c).await?;
    pg_rows_in_order(c, query, page.into_iter().map(|(_, id)| id).collect()).await
}

/// The rows of these ids, in `query`'s order.
async fn pg_rows_in_order(
    c: &mut diesel_async::AsyncPgConnection,
    query: &EventQuery,
    ids: Vec<String>,
) -> QueryResult<Vec<Earthquake>> {
    use crate::schema::earthquakes::dsl as e;
    let q = filtered!(e::earthquakes.into_boxed::<diesel::pg::Pg>(), query, false)
        .filter(e::id.eq_any(ids));
    pg_ordered!(q, query.orderby)
        .select(Earthquake::as_select())
        .load(c)
        .await
}

/// A page of a time-ordered query whose rows lie in two boxes (across the antimeridian), read
/// box by box from the point index: each box's first `skip + limit` (time, id) in order, the
/// page taken from both in the database's order (PostgreSQL sorts them, so ids compare as
/// the `ORDER BY` of the other paths compares them), then those rows.
async fn pg_boxes_apart(
    c: &mut diesel_async::AsyncPgConnection,
    query: &EventQuery,
    boxes: &[GeoBox],
    limit: i64,
    skip: i64,
) -> QueryResult<Vec<Earthquake>> {
    use crate::schema::earthquakes::dsl as e;
    use diesel::sql_types::{Array, BigInt, Text};
    let want = skip.saturating_add(limit);
    let mut times: Vec<i64> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    for b in boxes {
        let part: Vec<(Ts, String)> = pg_selection!(query, &[vec![*b]])
            .limit(want)
            .select((e::time, e::id))
            .load(c)
            .await?;
        for (t, id) in part {
            times.push(t.0.timestamp_micros());
            ids.push(id);
        }
    }
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = Text)]
        id: String,
    }
    let direction = time_direction(query.orderby);
    let page: Vec<Id> = diesel::sql_query(format!(
        "SELECT id FROM (SELECT DISTINCT t, id FROM unnest($1, $2) AS u(t, id)) AS d \
         ORDER BY t {direction}, id {direction} LIMIT $3 OFFSET $4"
    ))
    .bind::<Array<BigInt>, _>(&times)
    .bind::<Array<Text>, _>(&ids)
    .bind::<BigInt, _>(limit)
    .bind::<BigInt, _>(skip)
    .load(c)
    .await?;
    pg_rows_in_order(c, query, page.into_iter().map(|r| r.id).collect()).await
}

/// What reading and sorting one entry of the GiST point index costs, in entries of the
/// covering time index walked. Measured at 1M rows under load (issue 17): reading an entry
/// of the point index about 0.65 µs when counting and 1 µs when sorting by time, against
/// 0.2–1 µs per entry of the walk, whose entries sit together; the count itself is paid before
/// either, so the point index is chosen only for clearly sparse boxes.
const BOX_ROW_COST: f64 = 6.0;

type PgBoolExpr = Box<
    dyn diesel::expression::BoxableExpression<
            crate::schema::earthquakes::table,
            diesel::pg::Pg,
            SqlType = diesel::sql_types::Bool,
        >,
>;

/// `point(longitude, latitude) <@ box(…)` (or two of them, OR-ed): the same rows as the
/// latitude/longitude filters, said so that the GiST index of migration 000003 serves them.
fn pg_in_boxes(boxes: &[(f64, f64, f64, f64)]) -> PgBoolExpr {
    use diesel::dsl::sql;
    use diesel::sql_types::{Bool, Double};
    let one = |b: (f64, f64, f64, f64)| {
        sql::<Bool>("point(longitude, latitude) <@ box(point(")
            .bind::<Double, _>(b.0)
            .sql(", ")
            .bind::<Double, _>(b.1)
            .sql("), point(")
            .bind::<Double, _>(b.2)
            .sql(", ")
            .bind::<Double, _>(b.3)
            .sql("))")
    };
    match boxes {
        [a] => Box::new(one(*a)),
        [a, b, ..] => Box::new(one(*a).or(one(*b))),
        [] => Box::new(diesel::dsl::sql::<Bool>("TRUE")),
    }
}

/// How many rows the filters of an [`EventQuery`] select (`limit` and `offset` ignored;
/// with `eventid`, 0 or 1).
pub async fn count_events(conn: &mut DbConn<'_>, query: &EventQuery) -> QueryResult<i64> {
    if query.eventid.is_some() {
        // query_events answers an eventid before it reads limit or offset
        return Ok(query_events(conn, query).await?.len() as i64);
    }
    match conn {
        DbConn::Pg(c) => {
            let mut q = filtered!(
                crate::schema::earthquakes::table.into_boxed::<diesel::pg::Pg>(),
                query,
                false
            );
            if let Some(boxes) = query.radius.as_ref().and_then(Radius::boxes) {
                q = q.filter(pg_in_boxes(&boxes));
            }
            q.count().get_result(&mut **c).await
        }
        DbConn::Sqlite(c) => {
            filtered!(
                crate::schema::earthquakes::table.into_boxed::<diesel::sqlite::Sqlite>(),
                query,
                true
            )
            .count()
            .get_result(&mut **c)
            .await
        }
    }
}

/// `%`, `_` and the escape character itself, escaped for `LIKE … ESCAPE '\'`.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for ch in s.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// At most this many rows [`rows_with_alias`] reads for one alias (real aliases are shared by
/// two rows at most).
const MAX_ALIAS_ROWS: i64 = 100;

/// The rows other than the one whose primary id is `alias` that list it among their `ids`
/// (any state), in no particular order: [`find_by_any_id`] asks the primary key first and
/// ranks these itself.
///
/// Neither backend is given an `ORDER BY` here: on PostgreSQL at 1M rows, `ORDER BY id LIMIT`
/// made the planner walk the primary key filtering every row (7.4 s, issue 17) instead of
/// asking the alias index for the few rows that match.
async fn rows_with_alias(conn: &mut DbConn<'_>, alias: &str) -> QueryResult<Vec<Earthquake>> {
    use crate::schema::earthquakes::dsl as e;
    if alias.is_empty() || alias.contains(',') {
        return Ok(Vec::new());
    }
    // Only rows with more than one id can list an alias; both backends index just those
    // (PostgreSQL: the partial GIN index on string_to_array(ids, ','), migration 000004;
    // SQLite: the partial index on (ids, id)). The predicate repeats the indexes' word for
    // word so the planners can use them.
    let multi = diesel::dsl::sql::<diesel::sql_types::Bool>("ids <> ',' || id || ','");
    match conn {
        DbConn::Pg(c) => {
            let contains =
                diesel::dsl::sql::<diesel::sql_types::Bool>("string_to_array(ids, ',') @> ARRAY[")
                    .bind::<diesel::sql_types::Text, _>(alias)
                    .sql("]::text[]");
            e::earthquakes
                .filter(multi)
                .filter(contains)
                .limit(MAX_ALIAS_ROWS)
                .select(Earthquake::as_select())
                .load(&mut **c)
                .await
        }
        DbConn::Sqlite(c) => {
            let pattern = format!("%,{},%", escape_like(alias));
            e::earthquakes
                .filter(multi)
                .filter(e::ids.like(pattern).escape('\\'))
                .limit(MAX_ALIAS_ROWS)
                .select(Earthquake::as_select())
                .load(&mut **c)
                .await
        }
    }
}

/// The event an id names, as USGS resolves `eventid`: the row whose primary id it is, else
/// a row listing it among its associated `ids` (preferring a live row, then a newer
/// `updated`, then the smaller id, when an alias is shared); a merged row resolves to the
/// event it merged into (following `merged_into`). `None` when nothing matches. The row can
/// be deleted: the caller decides what to answer. A merged row whose successor is missing
/// is returned as is (its `merged_into` set).
pub async fn find_by_any_id(conn: &mut DbConn<'_>, id: &str) -> QueryResult<Option<Earthquake>> {
    let mut found = crate::read::get_event(conn, id).await?;
    if found.is_none() {
        let mut rows = rows_with_alias(conn, id).await?;
        rows.sort_by(|a, b| {
            let rank = |r: &Earthquake| (r.merged_into.is_some(), r.status == "deleted");
            rank(a)
                .cmp(&rank(b))
                .then_with(|| b.updated.cmp(&a.updated))
                .then_with(|| a.id.cmp(&b.id))
        });
        found = rows.into_iter().next();
    }
    let Some(mut row) = found else {
        return Ok(None);
    };
    let mut seen = vec![row.id.clone()];
    while let Some(next) = row.merged_into.clone() {
        if seen.len() > MAX_MERGE_HOPS || seen.contains(&next) {
            log::warn!(
                "merged_into chain from {id} loops or is too long; stopping at {}",
                row.id
            );
            break;
        }
        match crate::read::get_event(conn, &next).await? {
            Some(successor) => {
                seen.push(next);
                row = successor;
            }
            None => break,
        }
    }
    Ok(Some(row))
}

/// The catalogs of the live events (their preferred networks, `net`), sorted.
pub async fn catalogs(conn: &mut DbConn<'_>) -> QueryResult<Vec<String>> {
    use crate::schema::earthquakes::dsl as e;
    crate::dispatch!(conn, c => e::earthquakes
        .filter(e::merged_into.is_null())
        .filter(e::status.ne("deleted"))
        .filter(e::net.is_not_null())
        .select(e::net.assume_not_null())
        .distinct()
        .order(e::net.assume_not_null().asc())
        .load::<String>(c)
        .await)
}

/// The contributors of the live events: every network in their `sources` (the `net` of
/// rows without them), sorted.
pub async fn contributors(conn: &mut DbConn<'_>) -> QueryResult<Vec<String>> {
    use crate::schema::earthquakes::dsl as e;
    let lists: Vec<(Option<String>, Option<String>)> = crate::dispatch!(conn, c => e::earthquakes
        .filter(e::merged_into.is_null())
        .filter(e::status.ne("deleted"))
        .select((e::sources, e::net))
        .distinct()
        .load(c)
        .await)?;
    let mut all: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for (sources, net) in lists {
        match sources {
            Some(s) => all.extend(s.split(',').filter(|p| !p.is_empty()).map(str::to_string)),
            None => all.extend(net),
        }
    }
    Ok(all.into_iter().collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::geo::great_circle_deg;

    #[test]
    fn longitude_ranges_cross_the_antimeridian() {
        let q = |min: Option<f64>, max: Option<f64>| EventQuery {
            minlongitude: min,
            maxlongitude: max,
            ..EventQuery::default()
        };
        assert_eq!(q(None, None).longitude_ranges(), None);
        assert_eq!(
            q(Some(-10.0), Some(10.0)).longitude_ranges(),
            Some(vec![(-10.0, 10.0)])
        );
        assert_eq!(
            q(Some(170.0), Some(190.0)).longitude_ranges(),
            Some(vec![(170.0, 180.0), (-180.0, -170.0)])
        );
        assert_eq!(
            q(Some(-190.0), Some(-170.0)).longitude_ranges(),
            Some(vec![(170.0, 180.0), (-180.0, -170.0)])
        );
        assert_eq!(q(Some(-200.0), Some(170.0)).longitude_ranges(), None);
        assert_eq!(
            q(Some(5.0), None).longitude_ranges(),
            Some(vec![(5.0, 180.0)])
        );
    }

    #[test]
    fn cells_hold_every_point_of_their_boxes() {
        // the box across the antimeridian of the scale bench: 3 latitude cells × 5 longitude
        // cells (174..180 is 34, 35 and 36 for longitude 180 itself; -180..-174 is -36, -35)
        let q = EventQuery {
            minlatitude: Some(-25.0),
            maxlatitude: Some(-14.0),
            minlongitude: Some(174.0),
            maxlongitude: Some(186.0),
            ..EventQuery::default()
        };
        let groups = pg_point_boxes(&q);
        let cells = fewest_cells(&groups).unwrap();
        assert_eq!(cells.len(), 15, "{cells:?}");
        let cell =
            |lat: f64, lon: f64| (lat / 5.0).floor() as i32 * 100 + (lon / 5.0).floor() as i32;
        for lat in [-25.0, -20.0, -19.99, -15.0, -14.0] {
            for lon in [174.0, 175.0, 179.9, 180.0, -180.0, -175.0, -174.0] {
                assert!(cells.contains(&cell(lat, lon)), "{lat} {lon}");
            }
        }
        assert!(!cells.contains(&cell(-26.0, 174.0)));
        // a radius and a box: the group with fewer cells (the radius's 9°..11° × 9°..11°
        // touches 4; the box 64, more than MAX_CELLS)
        let q = EventQuery {
            radius: Some(Radius {
                latitude: 10.0,
                longitude: 10.0,
                min_deg: 0.0,
                max_deg: 1.0,
            }),
            minlatitude: Some(-10.0),
            maxlatitude: Some(30.0),
            minlongitude: Some(-10.0),
            maxlongitude: Some(30.0),
            ..EventQuery::default()
        };
        assert_eq!(fewest_cells(&pg_point_boxes(&q)).unwrap().len(), 4);
        // too many cells: none
        let wide = EventQuery {
            minlatitude: Some(-40.0),
            maxlatitude: Some(40.0),
            minlongitude: Some(-20.0),
            maxlongitude: Some(20.0),
            ..EventQuery::default()
        };
        assert_eq!(fewest_cells(&pg_point_boxes(&wide)), None);
    }

    #[test]
    fn only_small_boxes_use_the_point_index() {
        let q = |a: f64, b: f64, c: f64, d: f64| EventQuery {
            minlatitude: Some(a),
            maxlatitude: Some(b),
            minlongitude: Some(c),
            maxlongitude: Some(d),
            ..EventQuery::default()
        };
        assert_eq!(
            q(30.0, 50.0, -130.0, -100.0).small_boxes(),
            Some(vec![(-130.0, 30.0, -100.0, 50.0)])
        );
        assert_eq!(
            q(-50.0, 0.0, 160.0, 200.0).small_boxes(),
            Some(vec![
                (160.0, -50.0, 180.0, 0.0),
                (-180.0, -50.0, -160.0, 0.0)
            ])
        );
        assert_eq!(q(-45.0, 45.0, -90.0, 90.0).small_boxes(), None);
        assert_eq!(EventQuery::default().small_boxes(), None);
        let lat_only = EventQuery {
            minlatitude: Some(10.0),
            maxlatitude: Some(11.0),
            ..EventQuery::default()
        };
        assert_eq!(
            lat_only.small_boxes(),
            Some(vec![(-180.0, 10.0, 180.0, 11.0)])
        );
    }

    #[test]
    fn radius_boxes_cross_the_antimeridian_and_reach_the_poles() {
        let r = |lat: f64, lon: f64, max: f64| Radius {
            latitude: lat,
            longitude: lon,
            min_deg: 0.0,
            max_deg: max,
        };
        assert_eq!(r(0.0, 0.0, 180.0).boxes(), None);
        let b = r(0.0, 179.0, 2.0).boxes().unwrap();
        assert_eq!(b.len(), 2);
        assert!(b[0].0 < 177.0 + 1e-6 && b[1].2 > -179.0 - 1e-6);
        // within 5 degrees of the north pole: every longitude
        let b = r(87.0, 10.0, 5.0).boxes().unwrap();
        assert_eq!(b, vec![(-180.0, 82.0 - 1e-9, 180.0, 90.0)]);
        // every point at the maximum distance is inside the box
        let centre = r(60.0, -30.0, 10.0);
        let b = centre.boxes().unwrap()[0];
        for bearing in 0..360 {
            let (lat, lon) = destination(60.0, -30.0, f64::from(bearing), 10.0);
            assert!(
                (b.1..=b.3).contains(&lat) && (b.0..=b.2).contains(&lon),
                "{bearing}: {lat} {lon} {b:?}"
            );
            assert!((great_circle_deg(60.0, -30.0, lat, lon) - 10.0).abs() < 1e-9);
        }
    }

    /// The point `dist` degrees from (lat, lon) along `bearing` degrees.
    fn destination(lat: f64, lon: f64, bearing: f64, dist: f64) -> (f64, f64) {
        let (p1, l1, b, d) = (
            lat.to_radians(),
            lon.to_radians(),
            bearing.to_radians(),
            dist.to_radians(),
        );
        let p2 = (p1.sin() * d.cos() + p1.cos() * d.sin() * b.cos()).asin();
        let l2 = l1 + (b.sin() * d.sin() * p1.cos()).atan2(d.cos() - p1.sin() * p2.sin());
        (p2.to_degrees(), l2.to_degrees())
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(escape_like("a%b_c\\d"), "a\\%b\\_c\\\\d");
    }

    #[test]
    fn skip_is_offset_minus_one() {
        let mut q = EventQuery::default();
        assert_eq!(q.skip(), 0);
        q.offset = Some(1);
        assert_eq!(q.skip(), 0);
        q.offset = Some(101);
        assert_eq!(q.skip(), 100);
        q.offset = Some(-5);
        assert_eq!(q.skip(), 0);
    }
}
