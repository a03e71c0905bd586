//! The HTTP side: `/fdsnws/event/1/query` and `/fdsnws/event/1/count` answering as USGS's
//! service does (earthquake-event-ws: `FDSNEventWebService`, `FDSNIndex`, `WebService`).
//!
//! - Parameters: `format` (`geojson`; `count` also `text`, its default, and `xml`),
//!   `starttime`/`start`, `endtime`/`end`, `updatedafter`, `minmagnitude`/`minmag`,
//!   `orderby` (`time`, the default, newest first; `time-asc`), `limit` (0..=20000),
//!   `offset` (1-based, applied only with `limit`), `includedeleted` (`true`, `false`,
//!   `only`), `eventid`, and `nodata`/`jsonerror` (accepted, no effect on GeoJSON). An empty
//!   value is ignored; any other parameter is a 400.
//! - Times as USGS's `strtotime`: `YYYY-MM-DD`, `YYYY-MM-DD[T ]HH:MM[:SS[.fff]]`, with or
//!   without `Z` or an offset; sub-seconds are dropped. `starttime` and `endtime` are both
//!   inclusive; without `starttime` (and without `eventid`) the service looks 30 days back
//!   from its clock.
//! - A query without `limit` matching more than the cap is a 400 (`N matching events exceeds
//!   search limit of 20000. Modify the search to match fewer events.`); `limit` over the cap is
//!   a 400 (`Bad limit value "20001". Valid values are 0 <= limit <= 20000`). `count` with
//!   `format=geojson` answers `{"count":N,"maxAllowed":20000}` and adds `"error"` above the cap.
//! - `eventid` ignores every other filter and answers one `Feature` found by any of its ids
//!   (a merged id finds the event it was merged into); 404 when unknown; 409 for a deleted
//!   event without `includedeleted`.
//! - Errors are text/plain in USGS's layout (`Error 400: Bad Request`, the message, usage,
//!   the request, the time, the service version).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chrono::{DateTime, NaiveDate, Utc};

use crate::geojson::{self, Metadata};
use crate::model::{Catalogue, Deleted, Filter, SynthConfig, SynthEvent};

/// `metadata.api` and the service version in error bodies.
pub const API_VERSION: &str = "1.14.1";
/// How far back the service looks without `starttime` (USGS: 30 days).
const DEFAULT_LOOKBACK_MS: i64 = 30 * 24 * 3_600_000;

/// Request counters, readable while the service runs.
#[derive(Debug, Default)]
pub struct Stats {
    queries: AtomicU64,
    counts: AtomicU64,
    errors: AtomicU64,
    events: AtomicU64,
    bytes: AtomicU64,
    busy_ns: AtomicU64,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// `query` requests answered (errors included).
    pub queries: u64,
    /// `count` requests answered.
    pub counts: u64,
    /// Answers that were errors (4xx).
    pub errors: u64,
    /// Features sent.
    pub events: u64,
    /// Body bytes sent.
    pub bytes: u64,
    /// Time spent selecting and serializing (the service's own work), in nanoseconds.
    pub busy_ns: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            queries: self.queries.load(Ordering::Relaxed),
            counts: self.counts.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            busy_ns: self.busy_ns.load(Ordering::Relaxed),
        }
    }
}

/// What the handlers share: the catalogue, its clock and the counters.
#[derive(Debug)]
pub struct Upstream {
    catalogue: Catalogue,
    now_ms: AtomicI64,
    stats: Stats,
}

impl Upstream {
    pub fn new(config: SynthConfig) -> Upstream {
        let now_ms = config.now.timestamp_millis();
        Upstream {
            catalogue: Catalogue::new(config),
            now_ms: AtomicI64::new(now_ms),
            stats: Stats::default(),
        }
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// The service's clock (ms since the epoch).
    pub fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::Relaxed)
    }

    /// Moves the service's clock: events published, revised, deleted or merged up to `t`
    /// appear as such from the next request on.
    pub fn set_now(&self, t: DateTime<Utc>) {
        self.now_ms.store(t.timestamp_millis(), Ordering::Relaxed);
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}

/// Registers `/fdsnws/event/1/query` and `/fdsnws/event/1/count` (and `version`) on an
/// actix app, for embedding in a test server.
pub fn configure(cfg: &mut web::ServiceConfig, upstream: Arc<Upstream>) {
    cfg.app_data(web::Data::from(upstream))
        .route("/fdsnws/event/1/query", web::get().to(query))
        .route("/fdsnws/event/1/count", web::get().to(count))
        .route(
            "/fdsnws/event/1/version",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("text/plain")
                    .body(API_VERSION)
            }),
        );
}

/// A running synthetic upstream (its own thread and actix system); stopped on drop.
pub struct SynthServer {
    addr: SocketAddr,
    upstream: Arc<Upstream>,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// Starts the service on `addr` (port 0 picks a free one) on a thread of its own, so it
/// runs the same under any runtime, or none (benches, tests, the binary).
pub fn serve(addr: SocketAddr, config: SynthConfig) -> std::io::Result<SynthServer> {
    let upstream = Arc::new(Upstream::new(config));
    let shared = upstream.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("synth-upstream".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    App::new().configure(|cfg| configure(cfg, shared.clone()))
                })
                .workers(2)
                .disable_signals()
                .bind(addr);
                let server = match server {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return Ok(());
                    }
                };
                let bound = server.addrs().first().copied();
                let running = server.run();
                let _ = tx.send(
                    bound
                        .map(|a| (a, running.handle()))
                        .ok_or_else(|| std::io::Error::other("the server bound no address")),
                );
                running.await
            })
        })?;
    let (addr, handle) = rx
        .recv()
        .map_err(|_| std::io::Error::other("the server thread ended before binding"))??;
    Ok(SynthServer {
        addr,
        upstream,
        handle,
        thread: Some(thread),
    })
}

impl SynthServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR/fdsnws/event/1/query`: what a client (quakesync's `source.url`) is given.
    pub fn query_url(&self) -> String {
        format!("http://{}/fdsnws/event/1/query", self.addr)
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.upstream.stats()
    }

    pub fn set_now(&self, t: DateTime<Utc>) {
        self.upstream.set_now(t);
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Blocks until the server stops (for a binary).
    pub fn join(mut self) -> std::io::Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| std::io::Error::other("the server thread panicked"))?,
            None => Ok(()),
        }
    }

    fn shutdown(&mut self) {
        if let Some(t) = self.thread.take() {
            let handle = self.handle.clone();
            // `stop` is a future; the server's own system runs it.
            let _ = std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(handle.stop(false));
            })
            .join();
            let _ = t.join();
        }
    }
}

impl Drop for SynthServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ---------------------------------------------------------------------------
// parameters

/// A refused request: status and USGS's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

fn bad(message: String) -> Refusal {
    Refusal {
        status: 400,
        message,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    GeoJson,
    Text,
    Xml,
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
struct Request {
    format: Option<Format>,
    filter: Filter,
    ascending: bool,
    limit: Option<u64>,
    offset: Option<u64>,
    eventid: Option<String>,
}

/// USGS's `strtotime`, floored to the second: `YYYY-MM-DD[(T| )HH:MM[:SS[.f]]][Z|±HH:MM]`.
pub fn parse_time(value: &str) -> Option<i64> {
    let t = match quake_core::parse_utc(value) {
        Some(t) => t,
        // a date alone is midnight UTC to the USGS (not to quakesync's own parser)
        None => NaiveDate::parse_from_str(value.trim(), "%Y-%m-%d")
            .ok()?
            .and_hms_opt(0, 0, 0)?
            .and_utc(),
    };
    t.timestamp().checked_mul(1000)
}

fn parse_request(
    query_string: &str,
    now_ms: i64,
    cap: u64,
    count: bool,
) -> Result<Request, Refusal> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query_string)
        .map_err(|e| bad(format!("Bad query string: {e}")))?
        .into_inner();
    let mut r = Request {
        format: None,
        filter: Filter::default(),
        ascending: false,
        limit: None,
        offset: None,
        eventid: None,
    };
    let time = |name: &str, value: &str| {
        parse_time(value).ok_or_else(|| {
            bad(format!(
                "Bad {name} value \"{value}\". Valid values are ISO-8601 timestamps."
            ))
        })
    };
    let integer = |name: &str, value: &str, min: u64, max: Option<u64>| {
        let n = value
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| value.parse::<u64>().ok())
            .flatten()
            .filter(|&n| n >= min && max.is_none_or(|m| n <= m));
        n.ok_or_else(|| {
            let range = match max {
                Some(m) => format!("{min} <= {name} <= {m}"),
                None => format!("{min} <= {name}"),
            };
            bad(format!(
                "Bad {name} value \"{value}\". Valid values are {range}"
            ))
        })
    };
    for (name, value) in &pairs {
        if value.is_empty() {
            continue;
        }
        match name.as_str() {
            "format" => {
                r.format = Some(match (value.as_str(), count) {
                    ("geojson", _) => Format::GeoJson,
                    ("text", true) => Format::Text,
                    ("xml", true) => Format::Xml,
                    _ => {
                        return Err(bad(format!(
                            "Bad format value \"{value}\". This synthetic upstream serves \"geojson\"{}.",
                            if count {
                                ", \"text\" and \"xml\""
                            } else {
                                " only"
                            }
                        )));
                    }
                });
            }
            "starttime" | "start" => r.filter.start_ms = Some(time(name, value)?),
            "endtime" | "end" => r.filter.end_ms = Some(time(name, value)?),
            "updatedafter" => r.filter.updated_after_ms = Some(time(name, value)?),
            "minmagnitude" | "minmag" => {
                let m = value
                    .parse::<f64>()
                    .ok()
                    .filter(|m| m.is_finite())
                    .ok_or_else(|| {
                        bad(format!(
                            "Bad {name} value \"{value}\". Valid values are numeric"
                        ))
                    })?;
                r.filter.min_magnitude = Some(m);
            }
            "orderby" => {
                r.ascending = match value.as_str() {
                    "time" => false,
                    "time-asc" => true,
                    "magnitude" | "magnitude-asc" => {
                        return Err(bad(format!(
                            "orderby=\"{value}\" is not served by this synthetic upstream (time, time-asc)."
                        )));
                    }
                    _ => {
                        return Err(bad(format!(
                            "Bad orderby value \"{value}\". Valid values are: \"time\", \"time-asc\", \"magnitude\", \"magnitude-asc\"."
                        )));
                    }
                }
            }
            "limit" => r.limit = Some(integer(name, value, 0, Some(cap))?),
            "offset" => r.offset = Some(integer(name, value, 1, None)?),
            "includedeleted" => {
                r.filter.deleted = match value.to_ascii_lowercase().as_str() {
                    "true" => Deleted::Include,
                    "false" => Deleted::Exclude,
                    "only" => Deleted::Only,
                    _ => {
                        return Err(bad(format!(
                            "Bad includedeleted value \"{value}\". Valid values are (case insensitive): \"TRUE\", \"FALSE\"."
                        )));
                    }
                }
            }
            "eventid" => r.eventid = Some(value.clone()),
            "nodata" | "jsonerror" => {}
            "minlatitude"
            | "minlat"
            | "maxlatitude"
            | "maxlat"
            | "minlongitude"
            | "minlon"
            | "maxlongitude"
            | "maxlon"
            | "latitude"
            | "lat"
            | "longitude"
            | "lon"
            | "maxradius"
            | "maxradiuskm"
            | "minradius"
            | "minradiuskm"
            | "mindepth"
            | "maxdepth"
            | "maxmagnitude"
            | "maxmag"
            | "magnitudetype"
            | "magtype"
            | "eventtype"
            | "catalog"
            | "contributor"
            | "reviewstatus"
            | "alertlevel"
            | "minfelt"
            | "mincdi"
            | "maxcdi"
            | "minmmi"
            | "maxmmi"
            | "mingap"
            | "maxgap"
            | "minsig"
            | "maxsig"
            | "producttype"
            | "productcode"
            | "callback"
            | "includesuperseded"
            | "includeallorigins"
            | "includeallmagnitudes"
            | "includearrivals"
            | "kmlcolorby"
            | "kmlanimated" => {
                return Err(bad(format!(
                    "Parameter \"{name}\" is not served by this synthetic upstream."
                )));
            }
            _ => return Err(bad(format!("Unknown parameter \"{name}\"."))),
        }
    }
    if r.filter.start_ms.is_none() && r.eventid.is_none() {
        r.filter.start_ms = Some(now_ms - DEFAULT_LOOKBACK_MS);
    }
    Ok(r)
}

// ---------------------------------------------------------------------------
// answers

fn error_body(status: StatusCode, message: &str, uri: &str) -> HttpResponse {
    let reason = status.canonical_reason().unwrap_or("Error");
    let body = [
        format!("Error {}: {reason}", status.as_u16()),
        String::new(),
        message.to_string(),
        String::new(),
        "Usage details are available from https://earthquake.usgs.gov/fdsnws/event/1".into(),
        String::new(),
        "Request:".into(),
        uri.to_string(),
        String::new(),
        "Request Submitted:".into(),
        Utc::now().format("%Y-%m-%dT%H:%M:%S+00:00").to_string(),
        String::new(),
        "Service version:".into(),
        API_VERSION.into(),
    ]
    .join("\n");
    HttpResponse::build(status)
        .content_type("text/plain")
        .body(body)
}

fn exceeds(n: u64, cap: u64) -> String {
    format!(
        "{n} matching events exceeds search limit of {cap}. Modify the search to match fewer events."
    )
}

/// Counts matches, stopping once `stop_at` are found.
fn count_matches(up: &Upstream, r: &Request, now_ms: i64, stop_at: u64) -> u64 {
    let cat = &up.catalogue;
    let mut n = 0;
    for i in cat.candidates(&r.filter, true) {
        if cat.matches(i, now_ms, &r.filter) {
            n += 1;
            if n >= stop_at {
                break;
            }
        }
    }
    n
}

enum Answer {
    Body(StatusCode, &'static str, Vec<u8>, u64),
    Refused(Refusal),
}

fn answer_query(up: &Upstream, query_string: &str, url: &str) -> Answer {
    let now_ms = up.now_ms();
    let cat = &up.catalogue;
    let cap = cat.config().max_results;
    let r = match parse_request(query_string, now_ms, cap, false) {
        Ok(r) => r,
        Err(e) => return Answer::Refused(e),
    };
    if r.format != Some(Format::GeoJson) {
        return Answer::Refused(bad(
            "Bad format: this synthetic upstream serves format=geojson only (USGS's default is quakeml).".into(),
        ));
    }
    if let Some(id) = &r.eventid {
        let Some(e) = cat.find(id, now_ms).and_then(|i| cat.event(i, now_ms)) else {
            return Answer::Refused(Refusal {
                status: 404,
                message: "Not Found".into(),
            });
        };
        if e.status == "deleted" && r.filter.deleted == Deleted::Exclude {
            return Answer::Refused(Refusal {
                status: 409,
                message: "The requested event has been deleted. To see information for deleted events, perform a search and use the \"includedeleted\" option.".into(),
            });
        }
        return Answer::Body(StatusCode::OK, "application/json", geojson::detail(&e), 1);
    }
    let (skip, take) = match r.limit {
        Some(limit) => (r.offset.unwrap_or(1) - 1, limit),
        None => {
            // The real service counts every match before answering.
            let n = count_matches(up, &r, now_ms, u64::MAX);
            if n > cap {
                return Answer::Refused(bad(exceeds(n, cap)));
            }
            (0, cap)
        }
    };
    let mut events: Vec<SynthEvent> = Vec::with_capacity(take.min(cap) as usize);
    if take > 0 {
        let mut skipped = 0;
        for i in cat.candidates(&r.filter, r.ascending) {
            if !cat.matches(i, now_ms, &r.filter) {
                continue;
            }
            if skipped < skip {
                skipped += 1;
                continue;
            }
            if let Some(e) = cat.event(i, now_ms) {
                events.push(e);
            }
            if events.len() as u64 >= take {
                break;
            }
        }
    }
    let meta = Metadata {
        generated: now_ms,
        url,
        title: "USGS Earthquakes",
        status: 200,
        api: API_VERSION,
        limit: r.limit,
        offset: r.limit.map(|_| r.offset.unwrap_or(1)),
        count: events.len(),
    };
    let n = events.len() as u64;
    Answer::Body(
        StatusCode::OK,
        "application/json",
        geojson::collection(&meta, &events),
        n,
    )
}

fn answer_count(up: &Upstream, query_string: &str) -> Answer {
    let now_ms = up.now_ms();
    let cap = up.catalogue.config().max_results;
    let r = match parse_request(query_string, now_ms, cap, true) {
        Ok(r) => r,
        Err(e) => return Answer::Refused(e),
    };
    let n = match &r.eventid {
        Some(id) => u64::from(
            up.catalogue
                .find(id, now_ms)
                .and_then(|i| up.catalogue.core(i, now_ms))
                .is_some_and(|c| !c.deleted || r.filter.deleted != Deleted::Exclude),
        ),
        None => match r.limit {
            // As the real service: the count of the limited query.
            Some(limit) => {
                let skip = r.offset.unwrap_or(1) - 1;
                count_matches(up, &r, now_ms, skip.saturating_add(limit)).saturating_sub(skip)
            }
            None => count_matches(up, &r, now_ms, u64::MAX),
        },
    };
    let error = (n > cap).then(|| {
        format!("{n} matching events exceeds search limit of {cap}. A query using these search parameters would fail. Modify the search to match fewer events.")
    });
    match r.format {
        Some(Format::GeoJson) => {
            // USGS's key order: count, maxAllowed, error.
            let error = error
                .map(|e| format!(",\"error\":{}", serde_json::Value::String(e)))
                .unwrap_or_default();
            let body = format!("{{\"count\":{n},\"maxAllowed\":{cap}{error}}}");
            Answer::Body(StatusCode::OK, "application/json", body.into_bytes(), 0)
        }
        Some(Format::Xml) => {
            let error = error
                .map(|e| format!("<error>{e}</error>"))
                .unwrap_or_default();
            Answer::Body(
                StatusCode::OK,
                "application/xml",
                format!("<query><count>{n}</count><maxAllowed>{cap}</maxAllowed>{error}</query>")
                    .into_bytes(),
                0,
            )
        }
        _ => Answer::Body(StatusCode::OK, "text/plain", n.to_string().into_bytes(), 0),
    }
}

async fn respond(req: HttpRequest, up: web::Data<Upstream>, is_count: bool) -> HttpResponse {
    let uri = req.uri().to_string();
    let url = format!("http://{}{}", req.connection_info().host(), uri);
    let qs = req.query_string().to_string();
    let shared = up.clone().into_inner();
    let answer = web::block(move || {
        let started = Instant::now();
        let a = if is_count {
            answer_count(&shared, &qs)
        } else {
            answer_query(&shared, &qs, &url)
        };
        let busy = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        shared.stats.busy_ns.fetch_add(busy, Ordering::Relaxed);
        a
    })
    .await;
    let stats = &up.stats;
    if is_count {
        stats.counts.fetch_add(1, Ordering::Relaxed);
    } else {
        stats.queries.fetch_add(1, Ordering::Relaxed);
    }
    match answer {
        Ok(Answer::Body(status, ctype, body, events)) => {
            stats.events.fetch_add(events, Ordering::Relaxed);
            stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            HttpResponse::build(status).content_type(ctype).body(body)
        }
        Ok(Answer::Refused(r)) => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
            error_body(status, &r.message, &uri)
        }
        Err(_) => error_body(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", &uri),
    }
}

async fn query(req: HttpRequest, up: web::Data<Upstream>) -> HttpResponse {
    respond(req, up, false).await
}

async fn count(req: HttpRequest, up: web::Data<Upstream>) -> HttpResponse {
    respond(req, up, true).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_parse_as_usgs_does() {
        let base = parse_time("2018-06-14T09:14:39").unwrap();
        assert_eq!(base, 1_528_967_679_000);
        for v in [
            "2018-06-14T09:14:39Z",
            "2018-06-14T09:14:39.999",
            "2018-06-14T09:14:39.5Z",
            "2018-06-14 09:14:39",
            "2018-06-14T11:14:39+02:00",
            "2018-06-14T11:14:39.123+02:00",
        ] {
            assert_eq!(parse_time(v), Some(base), "{v}");
        }
        assert_eq!(parse_time("2018-06-14"), Some(1_528_934_400_000));
        assert_eq!(parse_time("2018-06-14T09:14"), Some(1_528_967_640_000));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn limits_are_refused_in_usgs_words() {
        let e = parse_request("format=geojson&limit=20001", 0, 20_000, false).unwrap_err();
        assert_eq!(
            e.message,
            "Bad limit value \"20001\". Valid values are 0 <= limit <= 20000"
        );
        let e = parse_request("format=geojson&offset=0", 0, 20_000, false).unwrap_err();
        assert_eq!(
            e.message,
            "Bad offset value \"0\". Valid values are 1 <= offset"
        );
        let e = parse_request("format=geojson&bogus=1", 0, 20_000, false).unwrap_err();
        assert_eq!(e.message, "Unknown parameter \"bogus\".");
        let r = parse_request(
            "format=geojson&starttime=&limit=5",
            40 * DEFAULT_LOOKBACK_MS,
            20_000,
            false,
        )
        .unwrap();
        assert_eq!(
            r.filter.start_ms,
            Some(39 * DEFAULT_LOOKBACK_MS),
            "30 days back by default"
        );
    }
}
