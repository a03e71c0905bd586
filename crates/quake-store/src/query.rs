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

use crate::dispatch;
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
    /// Any associated id; when set, the other filters are ignored (see [`query_events`]).
    pub eventid: Option<String>,
    pub orderby: OrderBy,
    /// At most this many rows (`None`: all of them).
    pub limit: Option<i64>,
    /// 1-based, as in FDSN (`None` or anything below 1: from the first row).
    pub offset: Option<i64>,
    pub includedeleted: IncludeDeleted,
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
    /// it crosses the antimeridian), when it covers less than [`SMALL_BOX`] of the globe's
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

/// Applies the filters of an [`EventQuery`] (all but `eventid`, order and paging) to a
/// boxed `earthquakes` query of either backend.
macro_rules! filtered {
    ($q:expr, $query:expr) => {{
        use crate::schema::earthquakes::dsl as e;
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
        if let Some(m) = query.minmagnitude {
            q = q.filter(e::magnitude.ge(m));
        }
        if let Some(m) = query.maxmagnitude {
            q = q.filter(e::magnitude.le(m));
        }
        if let Some(l) = query.minlatitude {
            q = q.filter(e::latitude.ge(l));
        }
        if let Some(l) = query.maxlatitude {
            q = q.filter(e::latitude.le(l));
        }
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
        q
    }};
}

/// The rows an [`EventQuery`] selects, in its order, paged by `limit`/`offset`.
///
/// With `eventid`, the result is the event that id resolves to ([`find_by_any_id`]), when
/// `includedeleted` admits it: at most one row, the other filters ignored (as USGS).
pub async fn query_events(
    conn: &mut DbConn<'_>,
    query: &EventQuery,
) -> QueryResult<Vec<Earthquake>> {
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
    match conn {
        DbConn::Pg(c) => {
            let mut q = filtered!(e::earthquakes.into_boxed::<diesel::pg::Pg>(), query);
            if let Some(boxes) = query.small_boxes() {
                q = q.filter(pg_in_boxes(&boxes));
            }
            let q = match query.orderby {
                OrderBy::Time => q.order((e::time.desc(), e::id.desc())),
                OrderBy::TimeAsc => q.order((e::time.asc(), e::id.asc())),
                OrderBy::Magnitude => q.order((e::magnitude.desc().nulls_last(), e::id.desc())),
                OrderBy::MagnitudeAsc => q.order((e::magnitude.asc().nulls_first(), e::id.asc())),
            };
            q.limit(limit)
                .offset(skip)
                .select(Earthquake::as_select())
                .load(&mut **c)
                .await
        }
        DbConn::Sqlite(c) => {
            // SQLite sorts NULL as the smallest value: last descending, first ascending.
            let q = filtered!(e::earthquakes.into_boxed::<diesel::sqlite::Sqlite>(), query);
            let q = match query.orderby {
                OrderBy::Time => q.order((e::time.desc(), e::id.desc())),
                OrderBy::TimeAsc => q.order((e::time.asc(), e::id.asc())),
                OrderBy::Magnitude => q.order((e::magnitude.desc(), e::id.desc())),
                OrderBy::MagnitudeAsc => q.order((e::magnitude.asc(), e::id.asc())),
            };
            q.limit(limit)
                .offset(skip)
                .select(Earthquake::as_select())
                .load(&mut **c)
                .await
        }
    }
}

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
    dispatch!(conn, c => filtered!(crate::schema::earthquakes::table.into_boxed(), query)
        .count()
        .get_result(c)
        .await)
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

/// The rows that list `alias` among their `ids` (any state).
async fn rows_with_alias(conn: &mut DbConn<'_>, alias: &str) -> QueryResult<Vec<Earthquake>> {
    use crate::schema::earthquakes::dsl as e;
    if alias.is_empty() || alias.contains(',') {
        return Ok(Vec::new());
    }
    match conn {
        DbConn::Pg(c) => {
            // The primary key, or the partial GIN index on string_to_array(ids, ',') over
            // rows with more than one id (migration 000004): a row whose ids is ",<id>,"
            // has no alias but its id. The second arm repeats the index predicate word for
            // word so the planner can use the partial index.
            let contains = diesel::dsl::sql::<diesel::sql_types::Bool>("(id = ")
                .bind::<diesel::sql_types::Text, _>(alias)
                .sql(" OR (ids <> ',' || id || ',' AND string_to_array(ids, ',') @> ARRAY[")
                .bind::<diesel::sql_types::Text, _>(alias)
                .sql("]::text[]))");
            e::earthquakes
                .filter(contains)
                .order(e::id.asc())
                .limit(100)
                .select(Earthquake::as_select())
                .load(&mut **c)
                .await
        }
        DbConn::Sqlite(c) => {
            let pattern = format!("%,{},%", escape_like(alias));
            e::earthquakes
                .filter(e::ids.like(pattern).escape('\\'))
                .order(e::id.asc())
                .limit(100)
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

#[cfg(test)]
mod tests {
    use super::*;

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
