//! `/fdsnws/event/1/`: the stored catalogue as an fdsnws-event 1.2 service (SPEC section 6),
//! usable unchanged by FDSN clients (ObsPy's `Client`), USGS GeoJSON clients (GDAL, web maps)
//! and another quakesync (its `FdsnSource` pointed here).
//!
//! - `query`: formats `xml`/`quakeml` (QuakeML 1.2 BED, the default), `text`, `csv`,
//!   `geojson`; every parameter of [`params::PARAMS`]. Answers are streamed in chunks of
//!   [`CHUNK`] rows, each read by keyset after the last (so memory does not grow with the
//!   answer, and a row written meanwhile neither repeats nor shifts the rest).
//! - `count`: the number of matching events (`{"count":N,"maxAllowed":20000}` with
//!   `format=geojson`, as USGS; plain text otherwise).
//! - `version` (text/plain [`SERVICE_VERSION`]), `application.wadl`, `catalogs`,
//!   `contributors` (the spec's XML).
//! - Errors follow the spec: text/plain `Error 400: Bad Request`, the detail naming the
//!   parameter, the request, its time and the service version. No data: 204, or 404 with
//!   `nodata=404`. A deleted `eventid` is a 409 unless `includedeleted` (as USGS).
//! - `limit` 1..=20000; without `limit`, a result larger than 20000 is a 400, as at USGS.
//! - `eventid` matches any associated id; a merged id resolves to the event it merged into.
//!   With `format=geojson` the answer is one `Feature` (with `properties.products`), as USGS.
//! - `metadata.generated` is taken before the database is read, so a reader that makes its
//!   `updatedafter` cursor from it never skips a row committed while it was answered.

mod discovery;
pub mod params;
pub mod render;

use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use quake_store::{After, EventQuery, MAX_LIMIT, PageMarks, Position};
use quake_store::{Earthquake, Store};

pub use params::{Format, ReadRequest, parse_request, parse_time};

use crate::{AppState, HttpError, db};

/// `metadata.api` of the GeoJSON answers.
pub const API_VERSION: &str = concat!("quakesync-", env!("CARGO_PKG_VERSION"));

/// `metadata.title` of the GeoJSON answers.
pub const TITLE: &str = "quakesync earthquake catalogue";

/// The fdsnws-event specification version this service implements (`version`).
pub const SERVICE_VERSION: &str = "1.2.0";

/// Rows read from the database per chunk of a streamed answer.
pub const CHUNK: i64 = 1000;

pub(crate) use discovery::{application_wadl, catalogs, contributors, version};

/// The request URL as received (scheme, host, path and query).
fn full_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    format!("{}://{}{}", info.scheme(), info.host(), req.uri())
}

/// The URL of `name` beside the requested resource (the request's path with its last segment
/// replaced), so links hold wherever the surface is mounted.
pub(crate) fn sibling_url(req: &HttpRequest, name: &str) -> String {
    let info = req.connection_info();
    let path = req.path();
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    format!("{}://{}{dir}/{name}", info.scheme(), info.host())
}

/// This service's `query` URL, for `detail` links.
fn query_url(req: &HttpRequest) -> String {
    sibling_url(req, "query")
}

fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

/// The fdsnws error document (text/plain), for a status and a detail.
pub(crate) fn fdsn_error(req: &HttpRequest, status: StatusCode, detail: &str) -> HttpResponse {
    let usage = sibling_url(req, "application.wadl");
    let body = format!(
        "Error {}: {}\n\n{detail}\n\nUsage details are available from {usage}\n\nRequest:\n{}\n\n\
         Request Submitted:\n{}\n\nService version:\n{SERVICE_VERSION}\n",
        status.as_u16(),
        reason(status),
        full_url(req),
        Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    );
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .body(body)
}

/// An [`HttpError`] as the fdsnws error document (500 and 503 keep their generic text; the
/// detail goes to the log, as everywhere else).
pub(crate) fn fdsn_http_error(req: &HttpRequest, e: HttpError) -> HttpResponse {
    let status = actix_web::ResponseError::status_code(&e);
    match &e {
        HttpError::DatabaseUnavailable(detail) => {
            log::warn!("Answering 503, database unavailable: {detail}")
        }
        HttpError::Internal(detail) => log::error!("Answering 500: {detail}"),
        _ => {}
    }
    let detail = match status {
        StatusCode::BAD_REQUEST => format!("Syntax Error in Request\n{e}"),
        _ => e.to_string(),
    };
    fdsn_error(req, status, &detail)
}

/// No data: 204, or 404 when asked with `nodata=404`.
fn no_data(req: &HttpRequest, nodata: u16) -> HttpResponse {
    if nodata == 404 {
        fdsn_error(req, StatusCode::NOT_FOUND, "No data matches the request")
    } else {
        HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
            .finish()
    }
}

fn content_type(format: Format) -> &'static str {
    match format {
        Format::QuakeMl => "application/xml",
        Format::Text => "text/plain; charset=utf-8",
        Format::Csv => "text/csv; charset=utf-8",
        Format::GeoJson => "application/json",
    }
}

/// Reads an answer chunk by chunk (see the module doc). On PostgreSQL each chunk also notes
/// where its rows stand in the query's order ([`PageMarks`]), so the next page a reader asks
/// continues from there instead of skipping the rows before it.
struct Chunks {
    store: Store,
    marks: Arc<PageMarks>,
    query: EventQuery,
    /// Rows still to send (`limit`), `None`: all.
    remaining: Option<i64>,
    /// Where the last row sent stands (PostgreSQL), for the next chunk's marks.
    position: Option<Position>,
    done: bool,
}

impl Chunks {
    fn new(store: Store, marks: Arc<PageMarks>, query: EventQuery) -> Chunks {
        Chunks {
            remaining: query.limit,
            store,
            marks,
            query,
            position: None,
            done: false,
        }
    }

    async fn next(&mut self) -> Result<Vec<Earthquake>, HttpError> {
        let want = self.remaining.map_or(CHUNK, |r| r.min(CHUNK));
        if self.done || want <= 0 {
            self.done = true;
            return Ok(Vec::new());
        }
        let mut q = self.query.clone();
        q.limit = Some(want);
        let store = self.store.clone();
        let marks = self.marks.clone();
        let at = self.position;
        let page = db(store.query_events_marked(&marks, &q, at)).await?;
        let rows = page.rows;
        // Later chunks continue after the last row; the offset applied to the first only.
        let before = match self.position {
            Some(p) => p.rows_before,
            None => self.query.skip(),
        };
        self.query.offset = None;
        if let Some(last) = rows.last() {
            self.query.after = Some(After::of(last));
        }
        // The first chunk's version: later chunks mark only while it holds.
        let version = self.position.map(|p| p.version).or(page.version);
        self.position = version.map(|version| Position {
            rows_before: before + rows.len() as i64,
            version,
        });
        if let Some(r) = &mut self.remaining {
            *r -= rows.len() as i64;
        }
        if (rows.len() as i64) < want || self.remaining == Some(0) {
            self.done = true;
        }
        Ok(rows)
    }
}

/// `GET /fdsnws/event/1/query`.
pub(crate) async fn query(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match answer_query(&state, &req).await {
        Ok(res) => res,
        Err(e) => fdsn_http_error(&req, e),
    }
}

async fn answer_query(state: &AppState, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let generated = Utc::now().timestamp_millis();
    let request = parse_request(req.query_string(), Format::QuakeMl)?;
    let q = request.query.clone();
    let store = state.engine().store().clone();

    if let Some(id) = q.eventid.clone() {
        let found = db(store.find_by_any_id(&id)).await?;
        let Some(ev) = found else {
            return Ok(no_data(req, request.nodata));
        };
        if ev.merged_into.is_some() {
            return Ok(no_data(req, request.nodata));
        }
        if !q.includedeleted.admits(&ev.status) {
            let shown: String = id.chars().take(64).collect();
            let msg = if ev.status == "deleted" {
                format!("event {shown:?} is deleted (ask with includedeleted=true to see it)")
            } else {
                format!("event {shown:?} is not deleted (includedeleted=only)")
            };
            return Ok(fdsn_error(req, StatusCode::CONFLICT, &msg));
        }
        let mut body = Vec::with_capacity(4096);
        if request.format == Format::GeoJson {
            // As USGS: one Feature, not a collection.
            render::write_feature(&mut body, &ev, &query_url(req), true);
        } else {
            let mut r = renderer(&request, req, generated, 1);
            r.head(&mut body);
            r.event(&ev, &mut body);
            r.tail(&mut body);
        }
        return Ok(ok(request.format).body(body));
    }

    let mut total = None;
    if q.limit.is_none() {
        // USGS: a result over the cap without `limit` is refused, not truncated.
        let n = db(store.count_events(&q)).await? - q.skip();
        if n > MAX_LIMIT {
            return Err(HttpError::BadRequest(format!(
                "{n} matching events exceeds search limit of {MAX_LIMIT}: give a limit \
                 (at most {MAX_LIMIT}) and page with offset, or narrow the search"
            )));
        }
        total = Some(n.max(0));
    }
    let mut chunks = Chunks::new(store.clone(), state.page_marks.clone(), q.clone());
    let first = chunks.next().await?;
    if first.is_empty() {
        return Ok(no_data(req, request.nodata));
    }
    // The count GeoJSON's metadata announces: known when everything came in one chunk.
    let count = if chunks.done {
        first.len() as i64
    } else if request.format == Format::GeoJson {
        let n = match total {
            Some(n) => n,
            None => db(store.count_events(&q)).await? - q.skip(),
        };
        q.limit.map_or(n, |l| n.min(l)).max(first.len() as i64)
    } else {
        0
    };
    let mut render = renderer(&request, req, generated, count);
    let mut head = Vec::with_capacity(64 * 1024);
    render.head(&mut head);
    for ev in &first {
        render.event(ev, &mut head);
    }
    drop(first);
    if chunks.done {
        render.tail(&mut head);
        return Ok(ok(request.format).body(head));
    }
    let stream = futures_util::stream::unfold(
        (Some(head), chunks, render, false),
        |(pending, mut chunks, mut render, finished)| async move {
            if let Some(bytes) = pending {
                return Some((Ok(Bytes::from(bytes)), (None, chunks, render, finished)));
            }
            if finished {
                return None;
            }
            let mut out = Vec::with_capacity(64 * 1024);
            match chunks.next().await {
                Ok(rows) => {
                    for ev in &rows {
                        render.event(ev, &mut out);
                    }
                    let finished = chunks.done;
                    if finished {
                        render.tail(&mut out);
                    }
                    Some((Ok(Bytes::from(out)), (None, chunks, render, finished)))
                }
                Err(e) => {
                    // The status is sent: end the body early (the client sees it cut).
                    log::warn!("Streamed answer cut: {e} ({e:?})");
                    Some((
                        Err(actix_web::error::ErrorServiceUnavailable(e.to_string())),
                        (None, chunks, render, true),
                    ))
                }
            }
        },
    );
    Ok(ok(request.format).streaming(stream))
}

fn ok(format: Format) -> actix_web::HttpResponseBuilder {
    let mut res = HttpResponse::Ok();
    res.content_type(content_type(format))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"));
    res
}

fn renderer(
    request: &ReadRequest,
    req: &HttpRequest,
    generated: i64,
    count: i64,
) -> Box<dyn render::Render> {
    match request.format {
        Format::QuakeMl => Box::new(render::QuakeMl),
        Format::Text => Box::new(render::Text),
        Format::Csv => Box::new(render::Csv),
        Format::GeoJson => {
            let q = &request.query;
            Box::new(render::GeoJson::new(
                render::Metadata {
                    generated,
                    url: full_url(req),
                    title: TITLE,
                    status: 200,
                    api: API_VERSION,
                    limit: request.limit_given.then_some(q.limit).flatten(),
                    offset: request.limit_given.then(|| q.skip() + 1),
                    count,
                },
                query_url(req),
            ))
        }
    }
}

/// `GET /fdsnws/event/1/count`: `{"count":N,"maxAllowed":20000}` with `format=geojson` (as
/// USGS), the bare number as text otherwise, for the same parameters as the query.
pub(crate) async fn count(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let answer = async {
        let request = parse_request(req.query_string(), Format::Text)?;
        let q = request.query;
        let store = state.engine().store().clone();
        let n = db(store.count_events(&q)).await?;
        let n = (n - q.skip()).max(0);
        let n = q.limit.map_or(n, |l| n.min(l));
        Ok::<_, HttpError>(if request.format == Format::GeoJson {
            HttpResponse::Ok()
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
                .json(serde_json::json!({ "count": n, "maxAllowed": MAX_LIMIT }))
        } else {
            HttpResponse::Ok()
                .content_type("text/plain; charset=utf-8")
                .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
                .body(format!("{n}\n"))
        })
    };
    match answer.await {
        Ok(res) => res,
        Err(e) => fdsn_http_error(&req, e),
    }
}
