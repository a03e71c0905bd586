//! The four formats of `query`, written event by event into byte buffers so an answer can be
//! streamed: a head, one piece per event, a tail.
//!
//! - GeoJSON (USGS): a row holding the upstream's `properties` (USGS rows stored since
//!   migration `lossless_properties`) is served with exactly those properties, in their
//!   order, `detail` pointing at this service; other rows (EMSC, and rows no revision has
//!   touched since that migration) get the USGS shape from the columns.
//! - QuakeML 1.2 BED: one event, its origin (with quality from `nst`, `rms`, `gap`, `dmin`)
//!   and its magnitude, description, creation info, evaluation mode and status from the
//!   review status, and the type mapped onto QuakeML's `EventType` list.
//! - text: the fdsnws-event 14 columns; CSV: the USGS columns.

use std::borrow::Cow;
use std::io::Write as _;

use chrono::SecondsFormat;
use quake_store::{Earthquake, Ts};

/// An answer written piece by piece.
pub trait Render: Send {
    /// Everything before the first event.
    fn head(&mut self, out: &mut Vec<u8>);
    /// One event.
    fn event(&mut self, ev: &Earthquake, out: &mut Vec<u8>);
    /// Everything after the last event.
    fn tail(&mut self, out: &mut Vec<u8>);
}

// ---------------------------------------------------------------------------
// shared pieces

/// `nst`, `dmin`, `rms`, `gap` from the stored properties (any that is not a number: none).
#[derive(Default)]
struct Quality {
    nst: Option<f64>,
    dmin: Option<f64>,
    rms: Option<f64>,
    gap: Option<f64>,
}

fn quality(ev: &Earthquake) -> Quality {
    let number = |key: &str| -> Option<f64> {
        let p = ev.properties.as_deref()?;
        let r = top_level_value(p, key)?;
        p[r].parse::<f64>().ok().filter(|x| x.is_finite())
    };
    Quality {
        nst: number("nst"),
        dmin: number("dmin"),
        rms: number("rms"),
        gap: ev.gap.or_else(|| number("gap")),
    }
}

/// Index just past the JSON string that starts at `b[i]` (a `"`).
fn skip_string(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Where the JSON value that starts at `b[i]` ends (exclusive, trailing space trimmed): at
/// the `,` or the closing bracket of its container.
fn value_end(b: &[u8], mut i: usize) -> Option<usize> {
    let mut depth = 0usize;
    while i < b.len() {
        match b[i] {
            b'"' => i = skip_string(b, i)?,
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' if depth == 0 => break,
            b'}' | b']' => {
                depth -= 1;
                i += 1;
            }
            b',' if depth == 0 => break,
            _ => i += 1,
        }
    }
    let mut end = i.min(b.len());
    while end > 0 && b[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    Some(end)
}

/// The byte range of the value of `key` in the text of a JSON object (its own keys only,
/// not those of nested objects), without parsing the rest: in valid JSON a `"` inside a
/// string is escaped, so a string at depth 1 followed by `:` is a key.
pub(crate) fn top_level_value(obj: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let b = obj.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i;
                i = skip_string(b, i)?;
                if depth == 1 {
                    let mut j = i;
                    while j < b.len() && b[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if j < b.len() && b[j] == b':' && &obj[start + 1..i - 1] == key {
                        j += 1;
                        while j < b.len() && b[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        return Some(j..value_end(b, j)?);
                    }
                }
            }
            b'{' | b'[' => {
                depth += 1;
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

fn iso(t: &Ts) -> String {
    t.0.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `2021-07-20T14:22:50.123`: milliseconds, or microseconds when there are any.
fn text_time(t: &Ts) -> String {
    if t.0.timestamp_subsec_micros().is_multiple_of(1000) {
        t.0.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
    } else {
        t.0.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// GeoJSON

/// A number as USGS writes it: an integral value without a fraction (`10`, not `10.0`).
fn usgs_number<S: serde::Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) if x.fract() == 0.0 && x.abs() < 1.0e15 => s.serialize_i64(*x as i64),
        Some(x) => s.serialize_f64(*x),
        None => s.serialize_none(),
    }
}

/// USGS `geometry.coordinates`: `[lon, lat, depth]`, numbers as [`usgs_number`] writes them.
#[derive(serde::Serialize)]
struct Coordinates(
    #[serde(serialize_with = "usgs_number")] Option<f64>,
    #[serde(serialize_with = "usgs_number")] Option<f64>,
    #[serde(serialize_with = "usgs_number")] Option<f64>,
);

/// USGS GeoJSON `properties` made from the columns, in the order USGS sends them.
#[derive(serde::Serialize)]
struct Properties<'a> {
    #[serde(serialize_with = "usgs_number")]
    mag: Option<f64>,
    place: Option<&'a str>,
    time: serde_json::Number,
    updated: serde_json::Number,
    tz: Option<i32>,
    url: Option<&'a str>,
    detail: &'a str,
    felt: Option<i32>,
    #[serde(serialize_with = "usgs_number")]
    cdi: Option<f64>,
    #[serde(serialize_with = "usgs_number")]
    mmi: Option<f64>,
    alert: Option<&'a str>,
    status: &'a str,
    tsunami: Option<i32>,
    sig: Option<i32>,
    net: Option<&'a str>,
    code: Option<&'a str>,
    ids: &'a str,
    sources: Cow<'a, str>,
    types: &'a str,
    nst: Option<i32>,
    dmin: Option<f64>,
    rms: Option<f64>,
    #[serde(serialize_with = "usgs_number")]
    gap: Option<f64>,
    #[serde(rename = "magType")]
    mag_type: Option<&'a str>,
    #[serde(rename = "type")]
    event_type: Option<&'a str>,
    title: Option<&'a str>,
}

/// ms since epoch: an integer when the time has no sub-millisecond part (as USGS), else a
/// fraction, so microsecond times (EMSC) come back exactly.
pub(crate) fn millis(t: &Ts) -> serde_json::Number {
    let micros = t.0.timestamp_micros();
    if micros % 1000 == 0 {
        serde_json::Number::from(micros / 1000)
    } else {
        serde_json::Number::from_f64(micros as f64 / 1000.0)
            .unwrap_or_else(|| serde_json::Number::from(t.0.timestamp_millis()))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn encode_component(s: &str) -> String {
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

/// Writes one GeoJSON Feature. `base` is this service's `query` URL (for `detail`);
/// `single`: the `eventid` answer, which carries `products` as at USGS.
pub(crate) fn write_feature(out: &mut Vec<u8>, ev: &Earthquake, base: &str, single: bool) {
    let detail = format!("{base}?eventid={}&format=geojson", encode_component(&ev.id));
    out.extend_from_slice(br#"{"type":"Feature","properties":"#);
    let stored = ev
        .properties
        .as_deref()
        .filter(|p| ev.source == "usgs" && p.starts_with('{') && p.ends_with('}'));
    match stored {
        Some(p) => {
            // The upstream's text as stored, its `detail` pointing here.
            match top_level_value(p, "detail") {
                Some(r) => {
                    out.extend_from_slice(&p.as_bytes()[..r.start]);
                    let _ = serde_json::to_writer(&mut *out, &detail);
                    out.extend_from_slice(&p.as_bytes()[r.end..]);
                }
                None => out.extend_from_slice(p.as_bytes()),
            }
            if single && top_level_value(p, "products").is_none() {
                out.pop();
                let empty = p[1..p.len() - 1].trim().is_empty();
                out.extend_from_slice(if empty {
                    b"\"products\":{}}"
                } else {
                    b",\"products\":{}}"
                });
            }
        }
        None => {
            let props = Properties {
                mag: ev.magnitude,
                place: ev.place.as_deref(),
                time: millis(&ev.time),
                updated: millis(&ev.updated),
                tz: None,
                url: ev.url.as_deref(),
                detail: &detail,
                felt: ev.felt,
                cdi: ev.cdi,
                mmi: ev.mmi,
                alert: ev.alert.as_deref(),
                status: &ev.status,
                tsunami: ev.tsunami,
                sig: ev.sig,
                net: ev.net.as_deref(),
                code: ev.code.as_deref(),
                ids: &ev.ids,
                // Without the upstream's list, the preferred network only.
                sources: match (&ev.sources, &ev.net) {
                    (Some(s), _) => Cow::Borrowed(s.as_str()),
                    (None, Some(n)) => Cow::Owned(format!(",{n},")),
                    (None, None) => Cow::Borrowed(""),
                },
                types: "",
                nst: None,
                dmin: None,
                rms: None,
                gap: ev.gap,
                mag_type: ev.mag_type.as_deref(),
                event_type: ev.event_type.as_deref(),
                title: ev.title.as_deref(),
            };
            let _ = serde_json::to_writer(&mut *out, &props);
            if single {
                out.pop();
                out.extend_from_slice(b",\"products\":{}}");
            }
        }
    }
    out.extend_from_slice(br#","geometry":{"type":"Point","coordinates":"#);
    let coordinates = Coordinates(Some(ev.longitude), Some(ev.latitude), ev.depth_km);
    let _ = serde_json::to_writer(&mut *out, &coordinates);
    out.extend_from_slice(br#"},"id":"#);
    let _ = serde_json::to_writer(&mut *out, &ev.id);
    out.push(b'}');
}

/// `metadata` of a FeatureCollection.
#[derive(serde::Serialize)]
pub struct Metadata {
    pub generated: i64,
    pub url: String,
    pub title: &'static str,
    pub status: u16,
    pub api: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    pub count: i64,
}

/// A USGS FeatureCollection: metadata first (its `count` is known when the answer starts),
/// `bbox` last (`[minlon, minlat, mindepth, maxlon, maxlat, maxdepth]`, present as at USGS
/// only when min < max on all three axes; null depths do not count).
pub struct GeoJson {
    pub metadata: Metadata,
    pub base: String,
    first: bool,
    bbox: [f64; 6],
}

impl GeoJson {
    pub fn new(metadata: Metadata, base: String) -> GeoJson {
        GeoJson {
            metadata,
            base,
            first: true,
            bbox: [
                f64::INFINITY,
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ],
        }
    }
}

impl Render for GeoJson {
    fn head(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"type":"FeatureCollection","metadata":"#);
        let _ = serde_json::to_writer(&mut *out, &self.metadata);
        out.extend_from_slice(br#","features":["#);
    }

    fn event(&mut self, ev: &Earthquake, out: &mut Vec<u8>) {
        if !self.first {
            out.push(b',');
        }
        self.first = false;
        let b = &mut self.bbox;
        b[0] = b[0].min(ev.longitude);
        b[1] = b[1].min(ev.latitude);
        b[3] = b[3].max(ev.longitude);
        b[4] = b[4].max(ev.latitude);
        if let Some(d) = ev.depth_km {
            b[2] = b[2].min(d);
            b[5] = b[5].max(d);
        }
        write_feature(out, ev, &self.base, false);
    }

    fn tail(&mut self, out: &mut Vec<u8>) {
        out.push(b']');
        let b = self.bbox;
        if b[0] < b[3] && b[1] < b[4] && b[2] < b[5] {
            out.extend_from_slice(br#","bbox":"#);
            let _ = serde_json::to_writer(&mut *out, &b);
        }
        out.push(b'}');
    }
}

// ---------------------------------------------------------------------------
// QuakeML 1.2

/// XML text with `&`, `<`, `>`, `"` escaped, and the characters XML 1.0 cannot hold dropped.
fn xml(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| {
        matches!(c, '&' | '<' | '>' | '"') || (c < ' ' && !matches!(c, '\t' | '\n' | '\r'))
    }) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c < ' ' && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// At most `n` characters (QuakeML's string length limits).
fn cut(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// An event id as the path of a QuakeML resource identifier: characters the schema's
/// pattern does not allow are written `(xx)` in hex.
fn rid_path(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~') {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("({b:02x})"));
            }
        }
    }
    out
}

/// The prefix of every resource identifier this service writes.
pub const RID_PREFIX: &str = "quakeml:quakesync";

/// The QuakeML `EventType` (and `EventTypeCertainty`) for a stored type: USGS types are
/// QuakeML's spelled freely; EMSC's two-letter codes carry a certainty. Unknown: `other event`.
pub fn quakeml_event_type(t: &str) -> (&'static str, Option<&'static str>) {
    const TYPES: [&str; 45] = [
        "not existing",
        "not reported",
        "earthquake",
        "anthropogenic event",
        "collapse",
        "cavity collapse",
        "mine collapse",
        "building collapse",
        "explosion",
        "accidental explosion",
        "chemical explosion",
        "controlled explosion",
        "experimental explosion",
        "industrial explosion",
        "mining explosion",
        "quarry blast",
        "road cut",
        "blasting levee",
        "nuclear explosion",
        "induced or triggered event",
        "rock burst",
        "reservoir loading",
        "fluid injection",
        "fluid extraction",
        "crash",
        "plane crash",
        "train crash",
        "boat crash",
        "other event",
        "atmospheric event",
        "sonic boom",
        "sonic blast",
        "acoustic noise",
        "thunder",
        "avalanche",
        "snow avalanche",
        "debris avalanche",
        "hydroacoustic event",
        "ice quake",
        "slide",
        "landslide",
        "rockslide",
        "meteorite",
        "volcanic eruption",
        "P waves",
    ];
    let norm = t.trim().to_lowercase().replace(['_', '-'], " ");
    if let Some(found) = TYPES.iter().find(|q| q.eq_ignore_ascii_case(&norm)) {
        return (found, None);
    }
    let known = |k: bool| Some(if k { "known" } else { "suspected" });
    match norm.as_str() {
        "rock slide" => ("rockslide", None),
        "quarry" => ("quarry blast", None),
        "mining" | "mine explosion" => ("mining explosion", None),
        "volcanic" => ("volcanic eruption", None),
        "ke" | "fe" => ("earthquake", known(true)),
        "se" => ("earthquake", known(false)),
        "kr" | "sr" => ("rock burst", known(norm == "kr")),
        "ki" | "si" => ("induced or triggered event", known(norm == "ki")),
        "km" | "sm" => ("mining explosion", known(norm == "km")),
        "kx" | "sx" => ("experimental explosion", known(norm == "kx")),
        "kn" | "sn" => ("nuclear explosion", known(norm == "kn")),
        "kq" | "sq" | "qb" => ("quarry blast", known(norm != "sq")),
        "ls" => ("landslide", None),
        "kh" | "sh" => ("anthropogenic event", known(norm == "kh")),
        _ => ("other event", None),
    }
}

/// QuakeML 1.2 BED: `q:quakeml` / `eventParameters` / `event`….
pub struct QuakeMl;

impl Render for QuakeMl {
    fn head(&mut self, out: &mut Vec<u8>) {
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<q:quakeml xmlns:q=\"http://quakeml.org/xmlns/quakeml/1.2\" \
             xmlns=\"http://quakeml.org/xmlns/bed/1.2\">\n<eventParameters publicID=\"{RID_PREFIX}/fdsnws/event/1/query\">\n"
        );
    }

    fn event(&mut self, ev: &Earthquake, out: &mut Vec<u8>) {
        let id = rid_path(&ev.id);
        let origin = format!("{RID_PREFIX}/origin/{id}");
        let magnitude = format!("{RID_PREFIX}/magnitude/{id}");
        let (mode, status) = match ev.status.as_str() {
            "reviewed" => ("manual", "reviewed"),
            "deleted" => ("manual", "rejected"),
            _ => ("automatic", "preliminary"),
        };
        let agency = ev.net.as_deref().map(|n| cut(n, 64)).unwrap_or("");
        let creation = format!(
            "<creationInfo>{}<creationTime>{}</creationTime></creationInfo>",
            if agency.is_empty() {
                String::new()
            } else {
                format!("<agencyID>{}</agencyID>", xml(agency))
            },
            iso(&ev.updated)
        );
        let _ = write!(out, "<event publicID=\"{RID_PREFIX}/event/{id}\">");
        if let Some(place) = ev.place.as_deref().filter(|p| !p.is_empty()) {
            let _ = write!(
                out,
                "<description><text>{}</text><type>region name</type></description>",
                xml(place)
            );
        }
        let _ = write!(out, "<preferredOriginID>{origin}</preferredOriginID>");
        if ev.magnitude.is_some() {
            let _ = write!(
                out,
                "<preferredMagnitudeID>{magnitude}</preferredMagnitudeID>"
            );
        }
        if let Some(t) = ev.event_type.as_deref() {
            let (kind, certainty) = quakeml_event_type(t);
            let _ = write!(out, "<type>{kind}</type>");
            if let Some(c) = certainty {
                let _ = write!(out, "<typeCertainty>{c}</typeCertainty>");
            }
        }
        out.extend_from_slice(creation.as_bytes());
        let _ = write!(
            out,
            "<origin publicID=\"{origin}\"><time><value>{}</value></time>\
             <longitude><value>{}</value></longitude><latitude><value>{}</value></latitude>",
            iso(&ev.time),
            ev.longitude,
            ev.latitude
        );
        if let Some(d) = ev.depth_km {
            // QuakeML depths are metres.
            let _ = write!(
                out,
                "<depth><value>{}</value></depth>",
                (d * 1.0e6).round() / 1.0e3
            );
        }
        let q = quality(ev);
        let nst = q.nst.filter(|n| n.fract() == 0.0 && *n >= 0.0);
        if nst.is_some() || q.rms.is_some() || q.gap.is_some() || q.dmin.is_some() {
            out.extend_from_slice(b"<quality>");
            if let Some(n) = nst {
                let _ = write!(out, "<usedStationCount>{}</usedStationCount>", n as i64);
            }
            if let Some(r) = q.rms {
                let _ = write!(out, "<standardError>{r}</standardError>");
            }
            if let Some(g) = q.gap {
                let _ = write!(out, "<azimuthalGap>{g}</azimuthalGap>");
            }
            if let Some(d) = q.dmin {
                let _ = write!(out, "<minimumDistance>{d}</minimumDistance>");
            }
            out.extend_from_slice(b"</quality>");
        }
        let _ = write!(
            out,
            "<evaluationMode>{mode}</evaluationMode><evaluationStatus>{status}</evaluationStatus>{creation}</origin>"
        );
        if let Some(m) = ev.magnitude {
            let _ = write!(
                out,
                "<magnitude publicID=\"{magnitude}\"><mag><value>{m}</value></mag>"
            );
            if let Some(t) = ev.mag_type.as_deref().filter(|t| !t.is_empty()) {
                let _ = write!(out, "<type>{}</type>", xml(cut(t, 32)));
            }
            let _ = write!(
                out,
                "<originID>{origin}</originID><evaluationMode>{mode}</evaluationMode>\
                 <evaluationStatus>{status}</evaluationStatus>{creation}</magnitude>"
            );
        }
        out.extend_from_slice(b"</event>\n");
    }

    fn tail(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"</eventParameters>\n</q:quakeml>\n");
    }
}

// ---------------------------------------------------------------------------
// text and CSV

/// The fdsnws-event text format.
pub struct Text;

/// Its header line.
pub const TEXT_HEADER: &str = "#EventID|Time|Latitude|Longitude|Depth/km|Author|Catalog|Contributor|ContributorID|MagType|Magnitude|MagAuthor|EventLocationName|EventType\n";

fn text_field(s: Option<&str>) -> String {
    s.unwrap_or("").replace(['|', '\n', '\r'], " ")
}

impl Render for Text {
    fn head(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(TEXT_HEADER.as_bytes());
    }

    fn event(&mut self, ev: &Earthquake, out: &mut Vec<u8>) {
        let net = text_field(ev.net.as_deref());
        let _ = writeln!(
            out,
            "{}|{}|{}|{}|{}|{net}|{net}|{net}|{}|{}|{}|{net}|{}|{}",
            text_field(Some(&ev.id)),
            text_time(&ev.time),
            ev.latitude,
            ev.longitude,
            opt(ev.depth_km),
            text_field(Some(&ev.id)),
            text_field(ev.mag_type.as_deref()),
            opt(ev.magnitude),
            text_field(ev.place.as_deref()),
            text_field(ev.event_type.as_deref()),
        );
    }

    fn tail(&mut self, _out: &mut Vec<u8>) {}
}

/// The USGS CSV format.
pub struct Csv;

/// Its header line: the USGS columns.
pub const CSV_HEADER: &str = "time,latitude,longitude,depth,mag,magType,nst,gap,dmin,rms,net,id,updated,place,type,horizontalError,depthError,magError,magNst,status,locationSource,magSource\n";

fn csv_field(s: Option<&str>) -> Cow<'_, str> {
    let s = s.unwrap_or("");
    if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

impl Render for Csv {
    fn head(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(CSV_HEADER.as_bytes());
    }

    fn event(&mut self, ev: &Earthquake, out: &mut Vec<u8>) {
        let q = quality(ev);
        let nst = q.nst.filter(|n| n.fract() == 0.0).map(|n| n as i64);
        let net = csv_field(ev.net.as_deref());
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{net},{},{},{},{},,,,,{},{net},{net}",
            iso_ms(&ev.time),
            ev.latitude,
            ev.longitude,
            opt(ev.depth_km),
            opt(ev.magnitude),
            csv_field(ev.mag_type.as_deref()),
            opt(nst),
            opt(q.gap),
            opt(q.dmin),
            opt(q.rms),
            csv_field(Some(&ev.id)),
            iso_ms(&ev.updated),
            csv_field(ev.place.as_deref()),
            csv_field(ev.event_type.as_deref()),
            csv_field(Some(&ev.status)),
        );
    }

    fn tail(&mut self, _out: &mut Vec<u8>) {}
}

/// `2021-07-20T14:22:50.123Z` (USGS CSV), microseconds when there are any.
fn iso_ms(t: &Ts) -> String {
    format!("{}Z", text_time(t))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

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

    #[test]
    fn top_level_values_are_found_without_parsing() {
        let p = r#"{"a":{"detail":"nested"}, "place":"x \"detail\": y","detail" : "https://u/1" ,"n":[1,{"b":2}],"z":-1.5e3}"#;
        let at = |k| top_level_value(p, k).map(|r| &p[r]);
        assert_eq!(at("detail"), Some("\"https://u/1\""));
        assert_eq!(at("n"), Some("[1,{\"b\":2}]"));
        assert_eq!(at("z"), Some("-1.5e3"));
        assert_eq!(at("a"), Some("{\"detail\":\"nested\"}"));
        assert_eq!(at("b"), None);
        assert_eq!(at("missing"), None);
    }

    #[test]
    fn event_types_map_onto_quakeml() {
        assert_eq!(quakeml_event_type("earthquake"), ("earthquake", None));
        assert_eq!(quakeml_event_type("Quarry Blast"), ("quarry blast", None));
        assert_eq!(quakeml_event_type("Rock Slide"), ("rockslide", None));
        assert_eq!(quakeml_event_type("ke"), ("earthquake", Some("known")));
        assert_eq!(
            quakeml_event_type("sn"),
            ("nuclear explosion", Some("suspected"))
        );
        assert_eq!(quakeml_event_type("something new"), ("other event", None));
    }

    #[test]
    fn identifiers_and_text_are_escaped() {
        assert_eq!(rid_path("us7000abcd"), "us7000abcd");
        assert_eq!(rid_path("a b/c"), "a(20)b(2f)c");
        assert_eq!(xml("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;");
        assert_eq!(csv_field(Some("10 km N of X, CA")), "\"10 km N of X, CA\"");
        assert_eq!(text_field(Some("a|b")), "a b");
    }
}
