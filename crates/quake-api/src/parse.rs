//! Parsing of USGS GeoJSON and EMSC JSON into [`Page`]s.
//!
//! Strict per page, lenient per record: the envelope must be a JSON object of the
//! right shape, otherwise the whole body is refused with [`ApiError::InvalidBody`];
//! each feature is then converted on its own, and one that does not fit becomes a
//! [`RejectedRecord`] carrying the reason and its raw JSON text.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use quake_core::parse_utc;
use serde::Deserialize;
use serde_json::error::Category;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::{ApiError, invalid_body};
use crate::event::{Event, Page, RejectedRecord, SourceKind, validate_event};

/// The top-level object, with the features kept as raw JSON.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default, borrow)]
    features: Option<Vec<&'a RawValue>>,
}

type Rejection = (Option<String>, String);

fn json_error(e: &serde_json::Error, body: &[u8]) -> ApiError {
    if body.iter().all(u8::is_ascii_whitespace) {
        return invalid_body("empty body", body);
    }
    let reason = match e.classify() {
        Category::Eof => format!("truncated JSON: {e}"),
        Category::Syntax => format!("not valid JSON: {e}"),
        Category::Data => format!("unexpected JSON shape: {e}"),
        Category::Io => format!("cannot read JSON: {e}"),
    };
    invalid_body(reason, body)
}

fn parse_envelope(body: &[u8]) -> Result<Envelope<'_>, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace()).copied();
    if first != Some(b'{') {
        // Valid JSON of the wrong kind, or not JSON at all?
        return Err(match serde_json::from_slice::<Value>(body) {
            Ok(v) => invalid_body(
                format!(
                    "unexpected JSON shape: expected an object, got {}",
                    type_name(&v)
                ),
                body,
            ),
            Err(e) => json_error(&e, body),
        });
    }
    serde_json::from_slice::<Envelope<'_>>(body).map_err(|e| json_error(&e, body))
}

/// Parse a USGS GeoJSON `FeatureCollection` (summary feeds and FDSN `query`).
pub fn parse_usgs_collection(body: &[u8]) -> Result<Page, ApiError> {
    let env = parse_envelope(body)?;
    collection_page(env, body, SourceKind::Usgs)
}

/// Parse a USGS single `Feature` (the FDSN `query?eventid=…&format=geojson` response).
pub fn parse_usgs_feature(body: &[u8]) -> Result<Page, ApiError> {
    let env = parse_envelope(body)?;
    feature_page(&env, body)
}

/// Parse either a USGS `FeatureCollection` or a single `Feature`, by its `"type"`.
pub fn parse_usgs_any(body: &[u8]) -> Result<Page, ApiError> {
    let env = parse_envelope(body)?;
    if env.kind.as_deref() == Some("Feature") {
        feature_page(&env, body)
    } else {
        collection_page(env, body, SourceKind::Usgs)
    }
}

/// Parse an EMSC seismicportal `format=json` response.
///
/// EMSC sends no status: events without a `properties.status` get `"automatic"`.
pub fn parse_emsc(body: &[u8]) -> Result<Page, ApiError> {
    let env = parse_envelope(body)?;
    collection_page(env, body, SourceKind::Emsc)
}

fn feature_page(env: &Envelope<'_>, body: &[u8]) -> Result<Page, ApiError> {
    match env.kind.as_deref() {
        Some("Feature") => {}
        Some(other) => {
            return Err(invalid_body(
                format!("expected \"type\":\"Feature\", found \"{other}\""),
                body,
            ));
        }
        None => {
            return Err(invalid_body(
                "missing \"type\" (expected \"Feature\")",
                body,
            ));
        }
    }
    let raw: &RawValue = serde_json::from_slice(body).map_err(|e| json_error(&e, body))?;
    let mut page = Page::default();
    push_record(&mut page, raw, SourceKind::Usgs);
    Ok(page)
}

fn collection_page(env: Envelope<'_>, body: &[u8], source: SourceKind) -> Result<Page, ApiError> {
    match env.kind.as_deref() {
        Some("FeatureCollection") => {}
        Some(other) => {
            return Err(invalid_body(
                format!("expected \"type\":\"FeatureCollection\", found \"{other}\""),
                body,
            ));
        }
        // Older EMSC output is tolerated without "type" as long as "features" is there.
        None if source == SourceKind::Emsc && env.features.is_some() => {}
        None => {
            return Err(invalid_body(
                "missing \"type\" (expected \"FeatureCollection\")",
                body,
            ));
        }
    }
    let features = env
        .features
        .ok_or_else(|| invalid_body("missing \"features\" array", body))?;
    let meta = env.metadata.as_ref().and_then(Value::as_object);
    let mut page = Page {
        events: Vec::with_capacity(features.len()),
        rejected: Vec::new(),
        generated: None,
        metadata_count: None,
    };
    if let Some(meta) = meta {
        page.metadata_count = meta.get("count").and_then(as_u64);
        if source == SourceKind::Emsc {
            page.metadata_count = page
                .metadata_count
                .or_else(|| meta.get("totalCount").and_then(as_u64));
        } else {
            page.generated = meta.get("generated").and_then(ms_to_datetime);
        }
    }
    for raw in features {
        push_record(&mut page, raw, source);
    }
    if let Some(count) = page.metadata_count
        && usize::try_from(count).ok() != Some(page.record_count())
    {
        // EMSC may report the total number of matches rather than the page's.
        let level = if source == SourceKind::Usgs {
            log::Level::Warn
        } else {
            log::Level::Debug
        };
        log::log!(
            level,
            "{source} page: metadata.count is {count} but {} features were received",
            page.record_count()
        );
    }
    Ok(page)
}

/// One feature converted and validated, or why not.
fn convert_record(raw: &RawValue, source: SourceKind) -> Result<Event, Rejection> {
    let converted = match source {
        SourceKind::Usgs => usgs_feature(raw),
        SourceKind::Emsc => emsc_feature(raw),
    };
    converted.and_then(|ev| match validate_event(&ev) {
        Ok(()) => Ok(ev),
        Err(reason) => Err((Some(ev.id), reason)),
    })
}

fn rejected(source: SourceKind, rejection: Rejection, payload: &str) -> RejectedRecord {
    let (source_id, reason) = rejection;
    log::warn!(
        "{source} record {} rejected: {reason}",
        source_id.as_deref().unwrap_or("(no id)")
    );
    RejectedRecord {
        source_id,
        reason,
        payload: payload.to_owned(),
    }
}

fn push_record(page: &mut Page, raw: &RawValue, source: SourceKind) {
    match convert_record(raw, source) {
        Ok(ev) => page.events.push(ev),
        Err(rejection) => page.rejected.push(rejected(source, rejection, raw.get())),
    }
}

/// What an EMSC push message asks: a new event or a revision of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PushAction {
    /// `"action":"create"`.
    Create,
    /// `"action":"update"`.
    Update,
}

/// An EMSC push message: `{"action":"create"|"update","data":<GeoJSON Feature>}`.
#[derive(Deserialize)]
struct PushEnvelope<'a> {
    #[serde(default)]
    action: Option<Value>,
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
}

/// Parse one EMSC WebSocket message (`{"action":"create"|"update","data":<Feature>}`) into
/// its action and [`Event`], read exactly as [`parse_emsc`] reads a feature (depth from
/// `properties.depth`, else minus `geometry.coordinates[2]`; the whole `properties` kept).
///
/// Anything else is a [`RejectedRecord`] whose payload is the whole message as received:
/// text that is not JSON, JSON that is not such an object, an unknown action, a missing
/// `data`, or a feature that does not convert or validate.
pub fn parse_emsc_push(text: &str) -> Result<(PushAction, Event), RejectedRecord> {
    let reject = |rejection: Rejection| rejected(SourceKind::Emsc, rejection, text);
    let json_error = |e: serde_json::Error| {
        let what = match e.classify() {
            Category::Eof => "truncated JSON",
            Category::Syntax => "not JSON",
            Category::Data | Category::Io => "not a push message object",
        };
        reject((None, format!("{what}: {e}")))
    };
    if !text.trim_start().starts_with('{') {
        // serde would read an array as the struct's fields in order.
        let v: Value = serde_json::from_str(text).map_err(json_error)?;
        return Err(reject((
            None,
            format!("not a push message object: a JSON {}", type_name(&v)),
        )));
    }
    let env: PushEnvelope<'_> = serde_json::from_str(text).map_err(json_error)?;
    let data = env
        .data
        .ok_or_else(|| reject((None, "missing data".into())))?;
    let action = match env.action.as_ref() {
        Some(Value::String(a)) if a == "create" => PushAction::Create,
        Some(Value::String(a)) if a == "update" => PushAction::Update,
        Some(other) => {
            return Err(reject((
                None,
                format!("unknown action {other} (create or update expected)"),
            )));
        }
        None => return Err(reject((None, "missing action".into()))),
    };
    convert_record(data, SourceKind::Emsc)
        .map(|ev| (action, ev))
        .map_err(reject)
}

// ---------------------------------------------------------------------------
// value helpers

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f < 1.8e19)
            .map(|f| f as u64)
    })
}

/// ms since epoch (integer or float) to a UTC timestamp.
fn ms_to_datetime(v: &Value) -> Option<DateTime<Utc>> {
    if let Some(i) = v.as_i64() {
        return DateTime::from_timestamp_millis(i);
    }
    let f = v.as_f64()?;
    if !f.is_finite() || f.abs() > 1.0e15 {
        return None;
    }
    DateTime::from_timestamp_micros((f * 1000.0).round() as i64)
}

struct Obj<'a> {
    map: &'a Map<String, Value>,
    prefix: &'static str,
}

impl<'a> Obj<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn err(&self, key: &str, expected: &str, got: &Value) -> String {
        format!(
            "{}{key}: expected {expected}, got {}",
            self.prefix,
            type_name(got)
        )
    }

    fn opt_str(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(key, "a string or null", other)),
        }
    }

    /// A string, also accepting a number (written out).
    fn opt_str_or_num(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            _ => self.opt_str(key),
        }
    }

    /// A number, or `None` when absent, null or not a number (for properties that no
    /// policy reads: the raw properties keep whatever was sent).
    fn lenient_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Number(n)) => n
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(key, "a finite number", v)),
            Some(other) => Err(self.err(key, "a number or null", other)),
        }
    }

    fn opt_i32(&self, key: &str) -> Result<Option<i32>, String> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let as_int = v.as_i64().or_else(|| {
            v.as_f64()
                .filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 1.0e10)
                .map(|f| f as i64)
        });
        as_int
            .and_then(|i| i32::try_from(i).ok())
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "{}{key}: expected a 32-bit integer or null, got {v}",
                    self.prefix
                )
            })
    }

    fn ms_time(&self, key: &str) -> Result<Option<DateTime<Utc>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v @ Value::Number(_)) => ms_to_datetime(v)
                .map(Some)
                .ok_or_else(|| format!("{}{key}: {v} ms is out of range", self.prefix)),
            Some(other) => Err(self.err(key, "ms since epoch (a number)", other)),
        }
    }

    fn iso_time(&self, key: &str) -> Result<Option<DateTime<Utc>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => parse_utc(s)
                .map(Some)
                .ok_or_else(|| format!("{}{key}: cannot parse time {s:?}", self.prefix)),
            Some(other) => Err(self.err(key, "an ISO 8601 string", other)),
        }
    }
}

struct Feature {
    map: Map<String, Value>,
    /// The JSON text of `properties`, as received.
    raw_properties: Option<String>,
}

/// A feature's `properties`, kept as the JSON text it was received as.
#[derive(Deserialize)]
struct RawProperties<'a> {
    #[serde(default, borrow)]
    properties: Option<&'a RawValue>,
}

impl Feature {
    fn parse(raw: &RawValue) -> Result<Self, Rejection> {
        let value: Value = serde_json::from_str(raw.get())
            .map_err(|e| (None, format!("cannot read feature: {e}")))?;
        match value {
            Value::Object(map) => {
                let raw_properties = serde_json::from_str::<RawProperties<'_>>(raw.get())
                    .ok()
                    .and_then(|r| r.properties)
                    .filter(|p| p.get().starts_with('{'))
                    .map(|p| p.get().to_owned());
                Ok(Feature {
                    map,
                    raw_properties,
                })
            }
            other => Err((
                None,
                format!("feature is a JSON {}, not an object", type_name(&other)),
            )),
        }
    }

    fn top(&self) -> Obj<'_> {
        Obj {
            map: &self.map,
            prefix: "",
        }
    }

    fn id(&self) -> Option<String> {
        self.top().get("id").and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    }

    fn check_type(&self) -> Result<(), String> {
        match self.top().get("type") {
            None => Ok(()),
            Some(Value::String(s)) if s == "Feature" => Ok(()),
            Some(other) => Err(format!("type: expected \"Feature\", got {other}")),
        }
    }

    fn properties(&self) -> Result<Obj<'_>, String> {
        match self.top().get("properties") {
            Some(Value::Object(map)) => Ok(Obj {
                map,
                prefix: "properties.",
            }),
            Some(other) => Err(format!(
                "properties: expected an object, got {}",
                type_name(other)
            )),
            None => Err("missing properties".to_owned()),
        }
    }

    /// `(lon, lat, third)` from `geometry.coordinates`; `Ok(None)` if there is no geometry.
    fn coordinates(&self) -> Result<Option<(f64, f64, Option<f64>)>, String> {
        let geometry = match self.top().get("geometry") {
            None => return Ok(None),
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(format!(
                    "geometry: expected an object, got {}",
                    type_name(other)
                ));
            }
        };
        let coords = match geometry.get("coordinates") {
            Some(Value::Array(a)) => a,
            Some(other) => {
                return Err(format!(
                    "geometry.coordinates: expected an array, got {}",
                    type_name(other)
                ));
            }
            None => return Err("missing geometry.coordinates".to_owned()),
        };
        let num = |i: usize, name: &str| -> Result<Option<f64>, String> {
            match coords.get(i) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => Ok(n.as_f64()),
                Some(other) => Err(format!(
                    "geometry.coordinates[{i}] ({name}): expected a number, got {}",
                    type_name(other)
                )),
            }
        };
        let lon = num(0, "longitude")?.ok_or("missing longitude in geometry.coordinates")?;
        let lat = num(1, "latitude")?.ok_or("missing latitude in geometry.coordinates")?;
        let third = num(2, "depth")?;
        Ok(Some((lon, lat, third)))
    }
}

fn parse_ids(list: Option<&str>, id: &str) -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = list
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    ids.insert(id.to_owned());
    ids
}

fn usgs_feature(raw: &RawValue) -> Result<Event, Rejection> {
    let f = Feature::parse(raw)?;
    let id = f.id();
    let with_id = |reason: String| (id.clone(), reason);
    let Some(id_str) = id.clone().filter(|s| !s.trim().is_empty()) else {
        return Err((id.clone(), "missing or empty id".to_owned()));
    };
    f.check_type().map_err(with_id)?;
    let p = f.properties().map_err(with_id)?;
    let time = p
        .ms_time("time")
        .map_err(with_id)?
        .ok_or_else(|| with_id("missing properties.time".to_owned()))?;
    let updated = p.ms_time("updated").map_err(with_id)?.unwrap_or(time);
    let (longitude, latitude, depth_km) = f
        .coordinates()
        .map_err(with_id)?
        .ok_or_else(|| with_id("missing geometry".to_owned()))?;
    let ids_list = p.opt_str("ids").map_err(with_id)?;
    let status = p
        .opt_str("status")
        .map_err(with_id)?
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "automatic".to_owned());
    let ev = Event {
        ids: parse_ids(ids_list.as_deref(), &id_str),
        id: id_str,
        time,
        updated,
        magnitude: p.opt_f64("mag").map_err(with_id)?,
        mag_type: p.opt_str("magType").map_err(with_id)?,
        place: p.opt_str("place").map_err(with_id)?,
        title: p.opt_str("title").map_err(with_id)?,
        longitude,
        latitude,
        depth_km,
        status,
        event_type: p.opt_str("type").map_err(with_id)?,
        net: p.opt_str_or_num("net").map_err(with_id)?,
        code: p.opt_str_or_num("code").map_err(with_id)?,
        tsunami: p.opt_i32("tsunami").map_err(with_id)?,
        sig: p.opt_i32("sig").map_err(with_id)?,
        felt: p.opt_i32("felt").map_err(with_id)?,
        alert: p.opt_str("alert").map_err(with_id)?,
        url: p.opt_str("url").map_err(with_id)?,
        cdi: p.lenient_f64("cdi"),
        mmi: p.lenient_f64("mmi"),
        gap: p.lenient_f64("gap"),
        sources: p.get("sources").and_then(Value::as_str).map(str::to_owned),
        properties: f.raw_properties.clone(),
        source: SourceKind::Usgs,
    };
    Ok(ev)
}

/// Base of EMSC event page URLs; the `unid` is appended.
pub const EMSC_EVENT_URL_BASE: &str = "https://www.seismicportal.eu/eventdetails/";

fn emsc_feature(raw: &RawValue) -> Result<Event, Rejection> {
    let f = Feature::parse(raw)?;
    let feature_id = f.id().filter(|s| !s.trim().is_empty());
    let p = match f.properties() {
        Ok(p) => p,
        Err(reason) => return Err((feature_id, reason)),
    };
    let unid = p
        .opt_str_or_num("unid")
        .map_err(|r| (feature_id.clone(), r))?
        .filter(|s| !s.trim().is_empty());
    let Some(id) = unid.or_else(|| feature_id.clone()) else {
        return Err((
            None,
            "missing or empty id (properties.unid / id)".to_owned(),
        ));
    };
    let with_id = |reason: String| (Some(id.clone()), reason);
    f.check_type().map_err(with_id)?;
    let time = p
        .iso_time("time")
        .map_err(with_id)?
        .ok_or_else(|| with_id("missing properties.time".to_owned()))?;
    let updated = p.iso_time("lastupdate").map_err(with_id)?.unwrap_or(time);
    let coords = f.coordinates().map_err(with_id)?;
    let longitude = p
        .opt_f64("lon")
        .map_err(with_id)?
        .or(coords.map(|c| c.0))
        .ok_or_else(|| with_id("missing longitude (properties.lon)".to_owned()))?;
    let latitude = p
        .opt_f64("lat")
        .map_err(with_id)?
        .or(coords.map(|c| c.1))
        .ok_or_else(|| with_id("missing latitude (properties.lat)".to_owned()))?;
    // geometry.coordinates[2] is MINUS the depth; properties.depth is the depth.
    let depth_km = p.opt_f64("depth").map_err(with_id)?.or(coords
        .and_then(|c| c.2)
        .map(|d| if d == 0.0 { 0.0 } else { -d }));
    let status = p
        .opt_str("status")
        .map_err(with_id)?
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "automatic".to_owned());
    let mut ids = parse_ids(None, &id);
    if let Some(fid) = feature_id {
        ids.insert(fid);
    }
    Ok(Event {
        url: Some(format!("{EMSC_EVENT_URL_BASE}{id}")),
        ids,
        time,
        updated,
        magnitude: p.opt_f64("mag").map_err(with_id)?,
        mag_type: p.opt_str("magtype").map_err(with_id)?,
        place: p.opt_str("flynn_region").map_err(with_id)?,
        title: None,
        longitude,
        latitude,
        depth_km,
        status,
        event_type: p.opt_str("evtype").map_err(with_id)?,
        net: p.opt_str("auth").map_err(with_id)?,
        code: p.opt_str_or_num("source_id").map_err(with_id)?,
        tsunami: None,
        sig: None,
        felt: None,
        alert: None,
        cdi: None,
        mmi: None,
        gap: None,
        sources: None,
        properties: f.raw_properties.clone(),
        id,
        source: SourceKind::Emsc,
    })
}

/// The answer of the FDSN `count` method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountResponse {
    /// Number of matching events.
    pub count: u64,
    /// The service's cap on one query's result (`maxAllowed`, 20000 at USGS).
    pub max_allowed: Option<u64>,
}

/// Parse a USGS `count` response: `{"count":N,"maxAllowed":M}` (a bare integer is accepted too).
pub fn parse_usgs_count(body: &[u8]) -> Result<CountResponse, ApiError> {
    if let Ok(text) = std::str::from_utf8(body)
        && let Ok(n) = text.trim().parse::<u64>()
    {
        return Ok(CountResponse {
            count: n,
            max_allowed: None,
        });
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| json_error(&e, body))?;
    let obj = v.as_object().ok_or_else(|| {
        invalid_body(
            format!("expected a JSON object, got {}", type_name(&v)),
            body,
        )
    })?;
    let count = match obj.get("count").and_then(as_u64) {
        Some(c) => c,
        None => {
            let reason = match obj.get("error").and_then(Value::as_str) {
                Some(err) => format!("count failed: {err}"),
                None => "missing or invalid \"count\"".to_owned(),
            };
            return Err(invalid_body(reason, body));
        }
    };
    if let Some(err) = obj.get("error").and_then(Value::as_str) {
        log::debug!("count response carries an error: {err}");
    }
    Ok(CountResponse {
        count,
        max_allowed: obj.get("maxAllowed").and_then(as_u64),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::Timelike;

    #[test]
    fn iso_times() {
        let a = parse_utc("2025-04-26T12:59:28.0Z").unwrap();
        assert_eq!(a.to_rfc3339(), "2025-04-26T12:59:28+00:00");
        let b = parse_utc("2025-04-26T12:48:25.87").unwrap();
        assert_eq!(b.nanosecond(), 870_000_000);
        let c = parse_utc("2025-04-26T13:48:47.302931Z").unwrap();
        assert_eq!(c.nanosecond(), 302_931_000);
        let d = parse_utc("2025-04-26T13:48:47").unwrap();
        assert_eq!(d.nanosecond(), 0);
        assert!(parse_utc("x").is_none());
        assert!(parse_utc("").is_none());
    }

    #[test]
    fn ids_set() {
        let ids = parse_ids(Some(",a,b,,a,"), "c");
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), vec!["a", "b", "c"]);
        assert_eq!(parse_ids(Some(""), "x").len(), 1);
    }

    #[test]
    fn count() {
        let c = parse_usgs_count(br#"{"count":1,"maxAllowed":20000}"#).unwrap();
        assert_eq!(c.count, 1);
        assert_eq!(c.max_allowed, Some(20000));
        assert_eq!(parse_usgs_count(b"42\n").unwrap().count, 42);
        assert!(parse_usgs_count(br#"{"error":"too many"}"#).is_err());
    }
}
