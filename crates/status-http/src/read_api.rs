//! `GET /fdsnws/event/1/query` and `GET /fdsnws/event/1/count`: the stored catalogue served
//! back as an FDSN event service in the USGS GeoJSON shape (SPEC section 6), so USGS
//! clients, web maps and another quakesync (its `FdsnSource` pointed here) can read it.
//!
//! - `format=geojson` only (the default here); any other format is a 400 naming `format`.
//! - Parameters (USGS aliases in brackets): `starttime` [`start`], `endtime` [`end`],
//!   `updatedafter`, `minmagnitude` [`minmag`], `maxmagnitude` [`maxmag`], `minlatitude`
//!   [`minlat`], `maxlatitude` [`maxlat`], `minlongitude` [`minlon`], `maxlongitude`
//!   [`maxlon`], `eventid`, `orderby`, `limit`, `offset`, `includedeleted`, `format`,
//!   `nodata`. An unknown, repeated, empty or bad parameter is a 400 whose message names it.
//! - Times: RFC 3339, `YYYY-MM-DDTHH:MM:SS[.fff]` (UTC) or `YYYY-MM-DD` (midnight UTC).
//! - `limit` 1..=20000; `offset` >= 1 (1-based); without `limit`, a result larger than 20000
//!   is a 400, as at USGS.
//! - `eventid` answers one `Feature` (with `properties.products`, empty here), found by any of
//!   its associated ids; a merged id resolves to the event it merged into; unknown: 404; a
//!   deleted event: 409 unless `includedeleted`.
//! - `metadata.generated` is taken before the database is read, so a reader that makes its
//!   `updatedafter` cursor from it never skips a row committed while it was answered.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use quake_store::Earthquake;
use quake_store::Ts;
use quake_store::query::{EventQuery, IncludeDeleted, MAX_LIMIT, OrderBy};
use serde::Serialize;
use serde_json::json;

use crate::{AppState, DB_QUERY_TIMEOUT, HttpError};

/// `metadata.api` of the answers.
pub const API_VERSION: &str = concat!("quakesync-", env!("CARGO_PKG_VERSION"));

/// `metadata.title` of the answers.
pub const TITLE: &str = "quakesync earthquake catalogue";

/// Canonical parameter names, and the aliases USGS accepts for them.
const PARAMS: [(&str, &[&str]); 16] = [
    ("starttime", &["start"]),
    ("endtime", &["end"]),
    ("updatedafter", &[]),
    ("minmagnitude", &["minmag"]),
    ("maxmagnitude", &["maxmag"]),
    ("minlatitude", &["minlat"]),
    ("maxlatitude", &["maxlat"]),
    ("minlongitude", &["minlon"]),
    ("maxlongitude", &["maxlon"]),
    ("eventid", &[]),
    ("orderby", &[]),
    ("limit", &[]),
    ("offset", &[]),
    ("includedeleted", &[]),
    ("format", &[]),
    ("nodata", &[]),
];

fn bad(msg: String) -> HttpError {
    HttpError::BadRequest(msg)
}

/// The query string's parameters under their canonical names, each at most once.
struct Params {
    /// `(canonical, name as given, value)`.
    items: Vec<(&'static str, String, String)>,
}

impl Params {
    fn parse(query_string: &str) -> Result<Params, HttpError> {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(query_string)
            .map_err(|e| bad(format!("invalid query string: {e}")))?
            .into_inner();
        let mut items: Vec<(&'static str, String, String)> = Vec::with_capacity(pairs.len());
        for (name, value) in pairs {
            let lower = name.to_ascii_lowercase();
            let Some(canonical) = PARAMS
                .iter()
                .find(|(c, aliases)| *c == lower || aliases.contains(&lower.as_str()))
                .map(|(c, _)| *c)
            else {
                let shown: String = name.chars().take(64).collect();
                return Err(bad(format!(
                    "unknown parameter {shown:?}; supported: {}",
                    PARAMS.map(|(c, _)| c).join(", ")
                )));
            };
            if let Some((_, first, _)) = items.iter().find(|(c, _, _)| *c == canonical) {
                return Err(bad(format!(
                    "parameter {canonical} is given more than once ({first} and {name})"
                )));
            }
            let value = value.trim().to_string();
            if value.is_empty() {
                return Err(bad(format!("parameter {canonical} is empty")));
            }
            // PostgreSQL refuses NUL in text: a 400 here, not a 500 from the database.
            if value.contains('\0') {
                return Err(bad(format!(
                    "parameter {canonical} contains a NUL character"
                )));
            }
            items.push((canonical, name, value));
        }
        Ok(Params { items })
    }

    fn get(&self, canonical: &str) -> Option<&str> {
        self.items
            .iter()
            .find(|(c, _, _)| *c == canonical)
            .map(|(_, _, v)| v.as_str())
    }

    fn parsed<T>(
        &self,
        canonical: &str,
        what: &str,
        f: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, HttpError> {
        match self.get(canonical) {
            None => Ok(None),
            Some(v) => f(v).map(Some).ok_or_else(|| {
                let shown: String = v.chars().take(64).collect();
                bad(format!("bad {canonical}: expected {what}, got {shown:?}"))
            }),
        }
    }
}

/// RFC 3339, `YYYY-MM-DDTHH:MM:SS[.f]` (UTC, `T` or a space), or `YYYY-MM-DD`.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(naive, fmt) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn finite(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn in_range(lo: f64, hi: f64) -> impl Fn(&str) -> Option<f64> {
    move |s| finite(s).filter(|f| (lo..=hi).contains(f))
}

const TIME_FORMS: &str = "an RFC 3339 time, YYYY-MM-DDTHH:MM:SS (UTC) or YYYY-MM-DD";

/// A validated request: the store query, and what the answer needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRequest {
    pub query: EventQuery,
    /// Whether `limit` was given (USGS puts `limit`/`offset` in `metadata` only then).
    pub limit_given: bool,
}

/// Parses and validates the parameters of a query string (every error names its parameter).
pub fn parse_request(query_string: &str) -> Result<ReadRequest, HttpError> {
    let p = Params::parse(query_string)?;
    if let Some(f) = p.get("format")
        && !f.eq_ignore_ascii_case("geojson")
    {
        let shown: String = f.chars().take(32).collect();
        return Err(bad(format!(
            "bad format: only format=geojson is served here, got {shown:?}"
        )));
    }
    p.parsed("nodata", "204 or 404", |s| {
        matches!(s, "204" | "404").then_some(())
    })?;
    let time = |name: &str| p.parsed(name, TIME_FORMS, |s| parse_time(s).map(Ts));
    let mag = |name: &str| p.parsed(name, "a number", finite);
    let lat = |name: &str| p.parsed(name, "a number from -90 to 90", in_range(-90.0, 90.0));
    let lon = |name: &str| {
        p.parsed(
            name,
            "a number from -360 to 360 (beyond ±180 to cross the antimeridian)",
            in_range(-360.0, 360.0),
        )
    };
    let q = EventQuery {
        starttime: time("starttime")?,
        endtime: time("endtime")?,
        updatedafter: time("updatedafter")?,
        minmagnitude: mag("minmagnitude")?,
        maxmagnitude: mag("maxmagnitude")?,
        minlatitude: lat("minlatitude")?,
        maxlatitude: lat("maxlatitude")?,
        minlongitude: lon("minlongitude")?,
        maxlongitude: lon("maxlongitude")?,
        eventid: p.get("eventid").map(str::to_string),
        orderby: p
            .parsed(
                "orderby",
                "time, time-asc, magnitude or magnitude-asc",
                OrderBy::parse,
            )?
            .unwrap_or_default(),
        limit: p.parsed("limit", "an integer from 1 to 20000", |s| {
            s.parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
        })?,
        offset: p.parsed(
            "offset",
            "an integer of at least 1 (offsets are 1-based)",
            |s| s.parse::<i64>().ok().filter(|n| *n >= 1),
        )?,
        includedeleted: p
            .parsed(
                "includedeleted",
                "true, false or only",
                IncludeDeleted::parse,
            )?
            .unwrap_or_default(),
    };
    if let (Some(a), Some(b)) = (q.starttime, q.endtime)
        && a > b
    {
        return Err(bad("bad starttime: it is after endtime".into()));
    }
    if let (Some(a), Some(b)) = (q.minmagnitude, q.maxmagnitude)
        && a > b
    {
        return Err(bad("bad minmagnitude: it is above maxmagnitude".into()));
    }
    if let (Some(a), Some(b)) = (q.minlatitude, q.maxlatitude)
        && a > b
    {
        return Err(bad("bad minlatitude: it is above maxlatitude".into()));
    }
    let (lo, hi) = (
        q.minlongitude.unwrap_or(-180.0),
        q.maxlongitude.unwrap_or(180.0),
    );
    if lo > hi {
        return Err(bad(
            "bad minlongitude: it is above maxlongitude (to cross the antimeridian use \
             e.g. minlongitude=170&maxlongitude=190)"
                .into(),
        ));
    }
    if hi - lo > 360.0 {
        return Err(bad(
            "bad maxlongitude: the box is wider than 360 degrees".into()
        ));
    }
    if let Some(id) = &q.eventid
        && (id.len() > 256 || id.contains(','))
    {
        return Err(bad(
            "bad eventid: expected one event id (no commas, at most 256 bytes)".into(),
        ));
    }
    Ok(ReadRequest {
        limit_given: q.limit.is_some(),
        query: q,
    })
}

// ---------------------------------------------------------------------------
// the USGS GeoJSON shape

/// USGS GeoJSON `properties`, in the order USGS sends them.
#[derive(Serialize)]
struct Properties<'a> {
    mag: Option<f64>,
    place: Option<&'a str>,
    time: serde_json::Number,
    updated: serde_json::Number,
    tz: Option<i32>,
    url: Option<&'a str>,
    detail: String,
    felt: Option<i32>,
    cdi: Option<f64>,
    mmi: Option<f64>,
    alert: Option<&'a str>,
    status: &'a str,
    tsunami: Option<i32>,
    sig: Option<i32>,
    net: Option<&'a str>,
    code: Option<&'a str>,
    ids: &'a str,
    sources: String,
    types: &'a str,
    nst: Option<i32>,
    dmin: Option<f64>,
    rms: Option<f64>,
    gap: Option<f64>,
    #[serde(rename = "magType")]
    mag_type: Option<&'a str>,
    #[serde(rename = "type")]
    event_type: Option<&'a str>,
    title: Option<&'a str>,
    /// Only in the single-Feature (`eventid`) answer, as USGS; empty: no products are kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    products: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize)]
struct Geometry {
    #[serde(rename = "type")]
    kind: &'static str,
    coordinates: (f64, f64, Option<f64>),
}

#[derive(Serialize)]
struct Feature<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    properties: Properties<'a>,
    geometry: Geometry,
    id: &'a str,
}

#[derive(Serialize)]
struct Metadata<'a> {
    generated: i64,
    url: &'a str,
    title: &'static str,
    status: u16,
    api: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<i64>,
    count: usize,
}

#[derive(Serialize)]
struct Collection<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    metadata: Metadata<'a>,
    features: Vec<Feature<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bbox: Option<[f64; 6]>,
}

/// ms since epoch: an integer when the time has no sub-millisecond part (as USGS), else a
/// fraction, so microsecond times (EMSC) come back exactly.
fn millis(t: &Ts) -> serde_json::Number {
    let micros = t.0.timestamp_micros();
    if micros % 1000 == 0 {
        serde_json::Number::from(micros / 1000)
    } else {
        serde_json::Number::from_f64(micros as f64 / 1000.0)
            .unwrap_or_else(|| serde_json::Number::from(t.0.timestamp_millis()))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn feature<'a>(ev: &'a Earthquake, query_url: &str, detail: bool) -> Feature<'a> {
    Feature {
        kind: "Feature",
        properties: Properties {
            mag: ev.magnitude,
            place: ev.place.as_deref(),
            time: millis(&ev.time),
            updated: millis(&ev.updated),
            tz: None,
            url: ev.url.as_deref(),
            detail: format!(
                "{query_url}?eventid={}&format=geojson",
                encode_component(&ev.id)
            ),
            felt: ev.felt,
            cdi: None,
            mmi: None,
            alert: ev.alert.as_deref(),
            status: &ev.status,
            tsunami: ev.tsunami,
            sig: ev.sig,
            net: ev.net.as_deref(),
            code: ev.code.as_deref(),
            ids: &ev.ids,
            // The store keeps no per-id source list: the preferred network only.
            sources: ev
                .net
                .as_deref()
                .map(|n| format!(",{n},"))
                .unwrap_or_default(),
            // Nor product types.
            types: "",
            nst: None,
            dmin: None,
            rms: None,
            gap: None,
            mag_type: ev.mag_type.as_deref(),
            event_type: ev.event_type.as_deref(),
            title: ev.title.as_deref(),
            products: detail.then(serde_json::Map::new),
        },
        geometry: Geometry {
            kind: "Point",
            coordinates: (ev.longitude, ev.latitude, ev.depth_km),
        },
        id: &ev.id,
    }
}

/// `[minlon, minlat, mindepth, maxlon, maxlat, maxdepth]`, present (as at USGS) only when
/// min < max on all three axes; depths that are null do not count.
fn bbox(events: &[Earthquake]) -> Option<[f64; 6]> {
    let mut b = [
        f64::INFINITY,
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for ev in events {
        b[0] = b[0].min(ev.longitude);
        b[1] = b[1].min(ev.latitude);
        b[3] = b[3].max(ev.longitude);
        b[4] = b[4].max(ev.latitude);
        if let Some(d) = ev.depth_km {
            b[2] = b[2].min(d);
            b[5] = b[5].max(d);
        }
    }
    (b[0] < b[3] && b[1] < b[4] && b[2] < b[5]).then_some(b)
}

/// The query URL the request came to (scheme, host and path), for `detail` links.
fn query_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}{}", info.scheme(), info.host(), req.path())
}

fn full_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}{}", info.scheme(), info.host(), req.uri())
}

fn geojson(body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(body)
}

fn json_error(status: actix_web::http::StatusCode, msg: String) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .json(json!({ "error": msg }))
}

/// `GET /fdsnws/event/1/query`.
pub(crate) async fn query(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let generated = Utc::now().timestamp_millis();
    let request = parse_request(req.query_string())?;
    let q = &request.query;
    let store = state.engine().store().clone();

    if let Some(id) = &q.eventid {
        let found = tokio::time::timeout(DB_QUERY_TIMEOUT, async {
            let mut conn = store.conn().await?;
            let found = quake_store::query::find_by_any_id(&mut conn.db(), id).await?;
            Ok::<_, HttpError>(found)
        })
        .await??;
        let shown: String = id.chars().take(64).collect();
        let Some(ev) = found else {
            return Ok(json_error(
                actix_web::http::StatusCode::NOT_FOUND,
                format!("no event with id {shown:?}"),
            ));
        };
        if !q.includedeleted.admits(&ev.status) {
            let msg = if ev.status == "deleted" {
                format!("event {shown:?} is deleted (ask with includedeleted=true to see it)")
            } else {
                format!("event {shown:?} is not deleted (includedeleted=only)")
            };
            return Ok(json_error(actix_web::http::StatusCode::CONFLICT, msg));
        }
        let body = serde_json::to_vec(&feature(&ev, &query_url(&req), true))
            .map_err(|e| HttpError::Internal(format!("serializing event {}: {e}", ev.id)))?;
        return Ok(geojson(body));
    }

    let events = tokio::time::timeout(DB_QUERY_TIMEOUT, async {
        let mut conn = store.conn().await?;
        let mut db = conn.db();
        if q.limit.is_none() {
            // USGS: a result over the cap without `limit` is refused, not truncated.
            let n = quake_store::query::count_events(&mut db, q).await? - q.skip();
            if n > MAX_LIMIT {
                return Err(bad(format!(
                    "{n} matching events exceeds search limit of {MAX_LIMIT}: give a limit \
                     (at most {MAX_LIMIT}) and page with offset, or narrow the search"
                )));
            }
        }
        let events = quake_store::query::query_events(&mut db, q).await?;
        Ok::<_, HttpError>(events)
    })
    .await??;

    let url = full_url(&req);
    let base = query_url(&req);
    let collection = Collection {
        kind: "FeatureCollection",
        metadata: Metadata {
            generated,
            url: &url,
            title: TITLE,
            status: 200,
            api: API_VERSION,
            limit: request.limit_given.then_some(q.limit).flatten(),
            offset: request.limit_given.then(|| q.skip() + 1),
            count: events.len(),
        },
        features: events.iter().map(|ev| feature(ev, &base, false)).collect(),
        bbox: bbox(&events),
    };
    let body = serde_json::to_vec(&collection)
        .map_err(|e| HttpError::Internal(format!("serializing a collection: {e}")))?;
    Ok(geojson(body))
}

/// `GET /fdsnws/event/1/count`: `{"count":N,"maxAllowed":20000}` (as USGS with
/// `format=geojson`), for the same parameters as the query.
pub(crate) async fn count(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let request = parse_request(req.query_string())?;
    let q = request.query;
    let store = state.engine().store().clone();
    let n = tokio::time::timeout(DB_QUERY_TIMEOUT, async {
        let mut conn = store.conn().await?;
        let n = quake_store::query::count_events(&mut conn.db(), &q).await?;
        Ok::<_, HttpError>(n)
    })
    .await??;
    let n = (n - q.skip()).max(0);
    let n = q.limit.map_or(n, |l| n.min(l));
    Ok(HttpResponse::Ok()
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .json(json!({ "count": n, "maxAllowed": MAX_LIMIT })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_three_forms() {
        let t = |s| parse_time(s).map(|t| t.to_rfc3339());
        assert_eq!(t("2021-07-20"), Some("2021-07-20T00:00:00+00:00".into()));
        assert_eq!(
            t("2021-07-20T14:23:05"),
            Some("2021-07-20T14:23:05+00:00".into())
        );
        assert_eq!(
            t("2021-07-20T16:23:05+02:00"),
            Some("2021-07-20T14:23:05+00:00".into())
        );
        assert_eq!(
            t("2021-07-20T14:23:05.250Z"),
            Some("2021-07-20T14:23:05.250+00:00".into())
        );
        assert_eq!(t("yesterday"), None);
        assert_eq!(t("2021-13-01"), None);
    }

    #[test]
    fn millis_integral_or_fractional() {
        let ts = |us: i64| Ts(DateTime::from_timestamp_micros(us).unwrap_or_default());
        assert_eq!(
            millis(&ts(1_626_790_980_123_000)).to_string(),
            "1626790980123"
        );
        assert_eq!(
            millis(&ts(1_626_790_980_123_456)).to_string(),
            "1626790980123.456"
        );
    }

    #[test]
    fn components_are_encoded() {
        assert_eq!(encode_component("us7000a&b c"), "us7000a%26b%20c");
    }
}
