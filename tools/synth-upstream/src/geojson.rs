//! The USGS GeoJSON shape: a `FeatureCollection` with `metadata` first and `bbox` last
//! (omitted unless min < max on all three axes), each `Feature` with the properties in
//! USGS's order; a single `Feature` with `products` for `eventid=`.

use serde::Serialize;

use crate::model::SynthEvent;

/// The event page URL USGS gives every event.
const EVENT_PAGE: &str = "https://earthquake.usgs.gov/earthquakes/eventpage/";
const DETAIL: &str = "https://earthquake.usgs.gov/fdsnws/event/1/query?eventid=";

#[derive(Serialize)]
struct Properties<'a> {
    mag: Option<f64>,
    place: &'a str,
    time: i64,
    updated: i64,
    tz: Option<i32>,
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    felt: Option<i32>,
    cdi: Option<f64>,
    mmi: Option<f64>,
    alert: Option<&'a str>,
    status: &'a str,
    tsunami: i32,
    sig: i32,
    net: &'a str,
    code: &'a str,
    ids: &'a str,
    sources: &'a str,
    types: &'a str,
    nst: Option<i32>,
    dmin: Option<f64>,
    rms: f64,
    gap: Option<f64>,
    #[serde(rename = "magType")]
    mag_type: Option<&'a str>,
    #[serde(rename = "type")]
    event_type: &'a str,
    title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    products: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Geometry {
    #[serde(rename = "type")]
    kind: &'static str,
    coordinates: [f64; 3],
}

#[derive(Serialize)]
struct Feature<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    properties: Properties<'a>,
    geometry: Geometry,
    id: &'a str,
}

fn feature(e: &SynthEvent, detail: bool) -> Feature<'_> {
    let products = detail.then(|| {
        serde_json::json!({
            "origin": [{
                "indexid": e.index.to_string(),
                "indexTime": e.updated_ms,
                "id": format!("urn:usgs-product:{}:origin:{}:{}", e.net, e.id, e.updated_ms),
                "type": "origin",
                "code": e.id,
                "source": e.net,
                "updateTime": e.updated_ms,
                "status": if e.status == "deleted" { "DELETE" } else { "UPDATE" },
                "properties": {
                    "eventsource": e.net,
                    "eventsourcecode": e.code,
                    "review-status": e.status,
                },
                "preferredWeight": 156,
                "contents": {},
            }]
        })
    });
    Feature {
        kind: "Feature",
        properties: Properties {
            mag: e.magnitude,
            place: &e.place,
            time: e.time_ms,
            updated: e.updated_ms,
            tz: e.tz,
            url: format!("{EVENT_PAGE}{}", e.id),
            detail: (!detail).then(|| format!("{DETAIL}{}&format=geojson", e.id)),
            felt: e.felt,
            cdi: e.cdi,
            mmi: e.mmi,
            alert: e.alert,
            status: e.status,
            tsunami: e.tsunami,
            sig: e.sig,
            net: e.net,
            code: &e.code,
            ids: &e.ids,
            sources: &e.sources,
            types: &e.types,
            nst: e.nst,
            dmin: e.dmin,
            rms: e.rms,
            gap: e.gap,
            mag_type: e.mag_type,
            event_type: e.event_type,
            title: e.title(),
            products,
        },
        geometry: Geometry {
            kind: "Point",
            coordinates: [e.longitude, e.latitude, e.depth_km],
        },
        id: &e.id,
    }
}

/// `metadata` of a collection.
#[derive(Serialize)]
pub struct Metadata<'a> {
    pub generated: i64,
    pub url: &'a str,
    pub title: &'static str,
    pub status: u16,
    pub api: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    pub count: usize,
}

/// Writes a `FeatureCollection` of `events` (already in order).
pub fn collection(meta: &Metadata<'_>, events: &[SynthEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(400 + events.len() * 1200);
    out.extend_from_slice(b"{\"type\":\"FeatureCollection\",\"metadata\":");
    // Serializing plain structs of numbers and strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, meta);
    out.extend_from_slice(b",\"features\":[");
    let mut min = [f64::INFINITY; 3];
    let mut max = [f64::NEG_INFINITY; 3];
    for (k, e) in events.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, &feature(e, false));
        for (axis, v) in [e.longitude, e.latitude, e.depth_km]
            .into_iter()
            .enumerate()
        {
            min[axis] = min[axis].min(v);
            max[axis] = max[axis].max(v);
        }
    }
    out.push(b']');
    if (0..3).all(|a| min[a] < max[a]) {
        out.extend_from_slice(b",\"bbox\":");
        let _ = serde_json::to_writer(&mut out, &[min[0], min[1], min[2], max[0], max[1], max[2]]);
    }
    out.push(b'}');
    out
}

/// Writes the single `Feature` of an `eventid=` answer (with `products`, no `detail`).
pub fn detail(e: &SynthEvent) -> Vec<u8> {
    serde_json::to_vec(&feature(e, true)).unwrap_or_default()
}
