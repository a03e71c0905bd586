//! The parameters of `query` and `count`: every fdsnws-event 1.2 parameter and the USGS
//! extensions a stored column answers, each validated with an error that names it.
//!
//! An unknown, repeated, empty or bad parameter is refused (FDSN: 400). Names are
//! case-insensitive; the short forms USGS and the FDSN spec accept are aliases.

use actix_web::web;
use chrono::{DateTime, NaiveDate, Utc};
use quake_store::Ts;
use quake_store::{
    EventQuery, IncludeDeleted, MAX_LIMIT, OrderBy, Radius, ReviewStatus, is_plain_word,
};

use crate::HttpError;

/// One parameter: canonical name, aliases, WADL type, what it does (for the WADL).
pub struct Param {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub xs_type: &'static str,
    pub doc: &'static str,
}

const fn p(
    name: &'static str,
    aliases: &'static [&'static str],
    xs_type: &'static str,
    doc: &'static str,
) -> Param {
    Param {
        name,
        aliases,
        xs_type,
        doc,
    }
}

/// Every parameter `query` and `count` accept.
pub const PARAMS: [Param; 41] = [
    p(
        "starttime",
        &["start"],
        "xs:dateTime",
        "Events at or after this origin time (UTC).",
    ),
    p(
        "endtime",
        &["end"],
        "xs:dateTime",
        "Events at or before this origin time (UTC).",
    ),
    p(
        "updatedafter",
        &[],
        "xs:dateTime",
        "Events updated upstream, or changed in this catalogue, at or after this time.",
    ),
    p(
        "minlatitude",
        &["minlat"],
        "xs:double",
        "Southern bound, degrees.",
    ),
    p(
        "maxlatitude",
        &["maxlat"],
        "xs:double",
        "Northern bound, degrees.",
    ),
    p(
        "minlongitude",
        &["minlon"],
        "xs:double",
        "Western bound, degrees (-360..360: beyond ±180 crosses the antimeridian).",
    ),
    p(
        "maxlongitude",
        &["maxlon"],
        "xs:double",
        "Eastern bound, degrees (-360..360).",
    ),
    p(
        "latitude",
        &["lat"],
        "xs:double",
        "Centre of a radius search, degrees.",
    ),
    p(
        "longitude",
        &["lon"],
        "xs:double",
        "Centre of a radius search, degrees.",
    ),
    p(
        "minradius",
        &[],
        "xs:double",
        "Least great-circle distance from the centre, degrees.",
    ),
    p(
        "maxradius",
        &[],
        "xs:double",
        "Greatest great-circle distance from the centre, degrees.",
    ),
    p(
        "maxradiuskm",
        &[],
        "xs:double",
        "Greatest distance from the centre, km (USGS).",
    ),
    p("mindepth", &[], "xs:double", "Least depth, km."),
    p("maxdepth", &[], "xs:double", "Greatest depth, km."),
    p("minmagnitude", &["minmag"], "xs:double", "Least magnitude."),
    p(
        "maxmagnitude",
        &["maxmag"],
        "xs:double",
        "Greatest magnitude.",
    ),
    p(
        "magnitudetype",
        &["magtype"],
        "xs:string",
        "Magnitude type (case-insensitive; * and ? wildcards).",
    ),
    p(
        "eventtype",
        &[],
        "xs:string",
        "Event types, comma-separated (case-insensitive; * and ? wildcards).",
    ),
    p(
        "includeallorigins",
        &[],
        "xs:boolean",
        "Accepted; every event has its preferred origin only.",
    ),
    p(
        "includeallmagnitudes",
        &[],
        "xs:boolean",
        "Accepted; every event has its preferred magnitude only.",
    ),
    p(
        "includearrivals",
        &[],
        "xs:boolean",
        "Accepted; no arrivals are stored.",
    ),
    p(
        "eventid",
        &[],
        "xs:string",
        "One event, by any of its associated ids.",
    ),
    p(
        "limit",
        &[],
        "xs:int",
        "At most this many events (1..20000).",
    ),
    p("offset", &[], "xs:int", "Start at this event (1-based)."),
    p(
        "orderby",
        &[],
        "xs:string",
        "time, time-asc, magnitude or magnitude-asc.",
    ),
    p(
        "catalog",
        &[],
        "xs:string",
        "Events whose preferred network (catalog) is this.",
    ),
    p(
        "contributor",
        &[],
        "xs:string",
        "Events this network contributed to.",
    ),
    p(
        "includedeleted",
        &[],
        "xs:string",
        "true, false or only (USGS).",
    ),
    p(
        "reviewstatus",
        &[],
        "xs:string",
        "automatic, reviewed or all (USGS).",
    ),
    p(
        "minfelt",
        &[],
        "xs:int",
        "Least number of felt reports (USGS).",
    ),
    p(
        "alertlevel",
        &[],
        "xs:string",
        "PAGER alert level: green, yellow, orange or red (USGS).",
    ),
    p(
        "mincdi",
        &[],
        "xs:double",
        "Least community intensity (USGS).",
    ),
    p(
        "maxcdi",
        &[],
        "xs:double",
        "Greatest community intensity (USGS).",
    ),
    p(
        "minmmi",
        &[],
        "xs:double",
        "Least ShakeMap intensity (USGS).",
    ),
    p(
        "maxmmi",
        &[],
        "xs:double",
        "Greatest ShakeMap intensity (USGS).",
    ),
    p(
        "mingap",
        &[],
        "xs:double",
        "Least azimuthal gap, degrees (USGS).",
    ),
    p(
        "maxgap",
        &[],
        "xs:double",
        "Greatest azimuthal gap, degrees (USGS).",
    ),
    p("minsig", &[], "xs:int", "Least significance (USGS)."),
    p("maxsig", &[], "xs:int", "Greatest significance (USGS)."),
    p(
        "format",
        &[],
        "xs:string",
        "xml (QuakeML 1.2, the default), quakeml, text, csv or geojson.",
    ),
    p(
        "nodata",
        &[],
        "xs:int",
        "Status of an empty answer: 204 (default) or 404.",
    ),
];

/// Kilometres per degree of great circle (mean Earth radius 6371 km).
pub const KM_PER_DEGREE: f64 = 6371.0 * std::f64::consts::PI / 180.0;

/// The answer's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// QuakeML 1.2 BED (`xml`, `quakeml`): the FDSN default.
    QuakeMl,
    /// The fdsnws-event text format (14 `|`-separated columns).
    Text,
    /// The USGS CSV columns.
    Csv,
    /// The USGS GeoJSON.
    GeoJson,
}

impl Format {
    fn parse(s: &str) -> Option<Format> {
        match s.to_ascii_lowercase().as_str() {
            "xml" | "quakeml" => Some(Format::QuakeMl),
            "text" => Some(Format::Text),
            "csv" => Some(Format::Csv),
            "geojson" => Some(Format::GeoJson),
            _ => None,
        }
    }
}

fn bad(msg: String) -> HttpError {
    HttpError::BadRequest(msg)
}

fn shown(v: &str, n: usize) -> String {
    v.chars().take(n).collect()
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
                .find(|p| p.name == lower || p.aliases.contains(&lower.as_str()))
                .map(|p| p.name)
            else {
                return Err(bad(format!(
                    "unknown parameter {:?}; supported: {}",
                    shown(&name, 64),
                    PARAMS.map(|p| p.name).join(", ")
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
                bad(format!(
                    "bad {canonical}: expected {what}, got {:?}",
                    shown(v, 64)
                ))
            }),
        }
    }

    fn num(&self, name: &str, lo: f64, hi: f64) -> Result<Option<f64>, HttpError> {
        self.parsed(name, &format!("a number from {lo} to {hi}"), |s| {
            finite(s).filter(|f| (lo..=hi).contains(f))
        })
    }

    fn int(&self, name: &str) -> Result<Option<i32>, HttpError> {
        self.parsed(name, "an integer", |s| s.parse::<i32>().ok())
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, HttpError> {
        self.parsed(name, "true or false", |s| {
            match s.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(true),
                "false" | "0" | "no" => Some(false),
                _ => None,
            }
        })
    }

    /// A short identifier (catalog, contributor, alert level): no commas.
    fn word(&self, name: &str) -> Result<Option<String>, HttpError> {
        self.parsed(name, "one name (no commas, at most 64 characters)", |s| {
            (s.len() <= 64 && !s.contains(',')).then(|| s.to_string())
        })
    }
}

/// RFC 3339, `YYYY-MM-DDTHH:MM:SS[.f]` (UTC, `T` or a space, `Z` optional), `YYYY-MM-DDTHH:MM`
/// or `YYYY-MM-DD` (midnight UTC): every form FDSN clients send.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Some(t) = quake_core::parse_utc(s) {
        return Some(t);
    }
    let s = s.trim();
    let naive = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    NaiveDate::parse_from_str(naive, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn finite(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

const TIME_FORMS: &str = "an ISO 8601 time: YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS[.ffffff][Z] (UTC)";

/// A validated request: the store query, and what the answer needs to know.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRequest {
    pub query: EventQuery,
    /// Whether `limit` was given (USGS puts `limit`/`offset` in `metadata` only then).
    pub limit_given: bool,
    pub format: Format,
    /// The status of an empty answer: 204 or 404.
    pub nodata: u16,
}

fn ordered<T: PartialOrd + Copy>(
    lo: Option<T>,
    hi: Option<T>,
    lo_name: &str,
    hi_name: &str,
) -> Result<(), HttpError> {
    match (lo, hi) {
        (Some(a), Some(b)) if a > b => Err(bad(format!("bad {lo_name}: it is above {hi_name}"))),
        _ => Ok(()),
    }
}

/// Parses and validates the parameters of a query string (every error names its parameter).
/// `default_format` applies when `format` is absent (QuakeML for `query`).
pub fn parse_request(query_string: &str, default_format: Format) -> Result<ReadRequest, HttpError> {
    let p = Params::parse(query_string)?;
    let format = p
        .parsed(
            "format",
            "xml, quakeml, text, csv or geojson",
            Format::parse,
        )?
        .unwrap_or(default_format);
    let nodata = p
        .parsed("nodata", "204 or 404", |s| match s {
            "204" => Some(204),
            "404" => Some(404),
            _ => None,
        })?
        .unwrap_or(204);
    let time = |name: &str| p.parsed(name, TIME_FORMS, |s| parse_time(s).map(Ts));
    let mag = |name: &str| p.parsed(name, "a number", finite);
    let lon = |name: &str| {
        p.parsed(
            name,
            "a number from -360 to 360 (beyond ±180 to cross the antimeridian)",
            |s| finite(s).filter(|f| (-360.0..=360.0).contains(f)),
        )
    };
    for flag in [
        "includeallorigins",
        "includeallmagnitudes",
        "includearrivals",
    ] {
        p.boolean(flag)?;
    }
    let eventtypes: Vec<String> = match p.get("eventtype") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .map(|t| {
                if is_plain_word(t) {
                    Ok(t.to_string())
                } else {
                    Err(bad(format!(
                        "bad eventtype: expected event types separated by commas (letters, \
                         digits, spaces, '-', '_', '.', wildcards * and ?), got {:?}",
                        shown(t, 64)
                    )))
                }
            })
            .collect::<Result<_, _>>()?,
    };
    let magnitudetype = p.parsed(
        "magnitudetype",
        "a magnitude type (letters, digits, '-', '_', '.', wildcards * and ?)",
        |s| is_plain_word(s).then(|| s.to_string()),
    )?;
    let radius = radius(&p)?;
    let q = EventQuery {
        starttime: time("starttime")?,
        endtime: time("endtime")?,
        updatedafter: time("updatedafter")?,
        minmagnitude: mag("minmagnitude")?,
        maxmagnitude: mag("maxmagnitude")?,
        minlatitude: p.num("minlatitude", -90.0, 90.0)?,
        maxlatitude: p.num("maxlatitude", -90.0, 90.0)?,
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
        mindepth: p.num("mindepth", -1000.0, 7000.0)?,
        maxdepth: p.num("maxdepth", -1000.0, 7000.0)?,
        radius,
        magnitudetype,
        eventtypes,
        reviewstatus: p
            .parsed("reviewstatus", "automatic, reviewed or all", |s| {
                match s.to_ascii_lowercase().as_str() {
                    "automatic" => Some(Some(ReviewStatus::Automatic)),
                    "reviewed" => Some(Some(ReviewStatus::Reviewed)),
                    "all" => Some(None),
                    _ => None,
                }
            })?
            .flatten(),
        catalog: p.word("catalog")?,
        contributor: p.word("contributor")?,
        minfelt: p.int("minfelt")?,
        alertlevel: p.parsed("alertlevel", "green, yellow, orange or red", |s| {
            let s = s.to_ascii_lowercase();
            matches!(s.as_str(), "green" | "yellow" | "orange" | "red").then_some(s)
        })?,
        mincdi: p.num("mincdi", 0.0, 12.0)?,
        maxcdi: p.num("maxcdi", 0.0, 12.0)?,
        minmmi: p.num("minmmi", 0.0, 12.0)?,
        maxmmi: p.num("maxmmi", 0.0, 12.0)?,
        mingap: p.num("mingap", 0.0, 360.0)?,
        maxgap: p.num("maxgap", 0.0, 360.0)?,
        minsig: p.int("minsig")?,
        maxsig: p.int("maxsig")?,
        after: None,
    };
    ordered(q.starttime, q.endtime, "starttime", "endtime")
        .map_err(|_| bad("bad starttime: it is after endtime".into()))?;
    ordered(
        q.minmagnitude,
        q.maxmagnitude,
        "minmagnitude",
        "maxmagnitude",
    )?;
    ordered(q.minlatitude, q.maxlatitude, "minlatitude", "maxlatitude")?;
    ordered(q.mindepth, q.maxdepth, "mindepth", "maxdepth")?;
    ordered(q.mincdi, q.maxcdi, "mincdi", "maxcdi")?;
    ordered(q.minmmi, q.maxmmi, "minmmi", "maxmmi")?;
    ordered(q.mingap, q.maxgap, "mingap", "maxgap")?;
    ordered(q.minsig, q.maxsig, "minsig", "maxsig")?;
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
        format,
        nodata,
    })
}

/// `latitude`, `longitude`, `minradius`, `maxradius`, `maxradiuskm`.
fn radius(p: &Params) -> Result<Option<Radius>, HttpError> {
    let lat = p.num("latitude", -90.0, 90.0)?;
    let lon = p.num("longitude", -180.0, 180.0)?;
    let min = p.num("minradius", 0.0, 180.0)?;
    let max_deg = p.num("maxradius", 0.0, 180.0)?;
    let max_km = p.num("maxradiuskm", 0.0, 180.0 * KM_PER_DEGREE)?;
    if max_deg.is_some() && max_km.is_some() {
        return Err(bad(
            "bad maxradiuskm: give maxradius (degrees) or maxradiuskm, not both".into(),
        ));
    }
    let max = max_deg.or(max_km.map(|km| km / KM_PER_DEGREE));
    ordered(min, max, "minradius", "maxradius")?;
    let asked = min.is_some() || max.is_some();
    match (lat, lon) {
        (Some(latitude), Some(longitude)) => Ok(Some(Radius {
            latitude,
            longitude,
            min_deg: min.unwrap_or(0.0),
            max_deg: max.unwrap_or(180.0),
        })),
        (None, None) if !asked => Ok(None),
        (None, _) => Err(bad(
            "bad latitude: a radius search needs latitude and longitude".into(),
        )),
        (_, None) => Err(bad(
            "bad longitude: a radius search needs latitude and longitude".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_every_form_clients_send() {
        for (sent, meant) in [
            ("2021-07-20", Some("2021-07-20T00:00:00+00:00")),
            ("2021-07-20Z", Some("2021-07-20T00:00:00+00:00")),
            ("2021-07-20T14:23:55", Some("2021-07-20T14:23:55+00:00")),
            (
                "2021-07-20T14:23:55.123456",
                Some("2021-07-20T14:23:55.123456+00:00"),
            ),
            ("2021-07-20T14:23:55Z", Some("2021-07-20T14:23:55+00:00")),
            (
                "2021-07-20T16:23:05+02:00",
                Some("2021-07-20T14:23:05+00:00"),
            ),
            (
                "2021-07-20T14:23:05.250Z",
                Some("2021-07-20T14:23:05.250+00:00"),
            ),
            ("2021-07-20 14:23:05", Some("2021-07-20T14:23:05+00:00")),
            ("2021-07-20T14:23", Some("2021-07-20T14:23:00+00:00")),
            ("yesterday", None),
            ("2021-13-01", None),
        ] {
            assert_eq!(
                parse_time(sent).map(|t| t.to_rfc3339()).as_deref(),
                meant,
                "{sent}"
            );
        }
    }

    #[test]
    fn radius_needs_a_centre_and_converts_km() {
        let r = parse_request("lat=10&lon=20&maxradiuskm=111.19492664455873", Format::Text)
            .map(|r| r.query.radius);
        let Ok(Some(r)) = r else { panic!("{r:?}") };
        assert!((r.max_deg - 1.0).abs() < 1e-9);
        assert!(parse_request("maxradius=5", Format::Text).is_err());
        assert!(
            parse_request(
                "latitude=1&longitude=2&maxradius=1&maxradiuskm=5",
                Format::Text
            )
            .is_err()
        );
        assert!(
            parse_request(
                "latitude=1&longitude=2&minradius=3&maxradius=1",
                Format::Text
            )
            .is_err()
        );
    }
}
