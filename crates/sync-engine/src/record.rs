//! From a parsed upstream event to the row the store writes: the content hash that lets
//! the revision policy see a change USGS made without touching `updated`.

use quake_api::{Event, RejectedRecord};
use quake_store::{EventRecord, NewRejected, Ts};
use sha2::{Digest, Sha256};

/// A stable hash of everything in an event that a reader can see. Two events with the same
/// hash are the same to a user; `ids` is hashed as a sorted set, so the order USGS lists
/// them in (which differs between endpoints) does not count as a change.
///
/// The upstream's whole `properties` object counts too (a change only in `dmin` is a
/// revision), in a canonical form: keys sorted, the comma lists `ids`, `sources` and `types`
/// as sorted sets, and `detail` left out (the read API serves its own `detail` link, and the
/// feeds and the FDSN service spell the upstream's differently).
pub fn content_hash(e: &Event) -> String {
    let canonical = serde_json::json!([
        e.id,
        e.ids,
        e.time.timestamp_millis(),
        e.updated.timestamp_millis(),
        e.magnitude,
        e.mag_type,
        e.place,
        e.title,
        e.longitude,
        e.latitude,
        e.depth_km,
        e.status,
        e.event_type,
        e.net,
        e.code,
        e.tsunami,
        e.sig,
        e.felt,
        e.alert,
        e.url,
        e.source.as_str(),
        e.properties.as_deref().map(canonical_properties),
    ]);
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The comma-separated properties whose order carries no meaning.
const SET_PROPERTIES: [&str; 3] = ["ids", "sources", "types"];

/// `properties` in the form [`content_hash`] hashes (see there). Text that is not a JSON
/// object is hashed as it is.
fn canonical_properties(raw: &str) -> serde_json::Value {
    let Ok(serde_json::Value::Object(mut map)) = serde_json::from_str::<serde_json::Value>(raw)
    else {
        return serde_json::Value::String(raw.to_owned());
    };
    map.remove("detail");
    for key in SET_PROPERTIES {
        if let Some(serde_json::Value::String(list)) = map.get_mut(key) {
            let mut parts: Vec<&str> = list.split(',').filter(|p| !p.is_empty()).collect();
            parts.sort_unstable();
            parts.dedup();
            *list = parts.join(",");
        }
    }
    // serde_json's map is ordered by key (no `preserve_order`): the text is canonical.
    serde_json::Value::Object(map)
}

/// The store's row for an event.
pub fn to_record(e: &Event) -> EventRecord {
    let ids: Vec<&str> = e.ids.iter().map(String::as_str).collect();
    EventRecord {
        id: e.id.clone(),
        ids: format!(",{},", ids.join(",")),
        time: Ts(e.time),
        updated: Ts(e.updated),
        magnitude: e.magnitude,
        mag_type: e.mag_type.clone(),
        place: e.place.clone(),
        title: e.title.clone(),
        longitude: e.longitude,
        latitude: e.latitude,
        depth_km: e.depth_km,
        status: e.status.clone(),
        event_type: e.event_type.clone(),
        net: e.net.clone(),
        code: e.code.clone(),
        tsunami: e.tsunami,
        sig: e.sig,
        felt: e.felt,
        alert: e.alert.clone(),
        url: e.url.clone(),
        source: e.source.as_str().to_string(),
        content_hash: content_hash(e),
        cdi: e.cdi,
        mmi: e.mmi,
        gap: e.gap,
        sources: e.sources.clone(),
        properties: e.properties.clone(),
    }
}

/// The store's quarantine row for a record the parser refused.
pub fn to_rejected(r: &RejectedRecord, run_id: i64) -> NewRejected {
    NewRejected {
        run_id: Some(run_id),
        source_id: r.source_id.clone(),
        reason: r.reason.clone(),
        payload: r.payload.clone(),
        rejected_at: Ts::now(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const FEATURE: &str = r#"{"type":"Feature","properties":{"mag":4.5,"place":"x","time":1626790980123,"updated":1626791000000,"ids":",us1,ci2,","sources":",us,ci,","types":",origin,dyfi,","dmin":1.5,"nst":20,"detail":"https://a/1","status":"reviewed"},"geometry":{"type":"Point","coordinates":[1,2,3]},"id":"us1"}"#;

    fn hash_of(feature: &str) -> String {
        let page = quake_api::parse_usgs_any(feature.as_bytes()).unwrap();
        content_hash(&page.events[0])
    }

    #[test]
    fn every_property_counts_but_order_and_detail_do_not() {
        let base = hash_of(FEATURE);
        // A change only in a property no column holds is a revision.
        assert_ne!(
            base,
            hash_of(&FEATURE.replace(r#""dmin":1.5"#, r#""dmin":1.6"#))
        );
        assert_ne!(
            base,
            hash_of(&FEATURE.replace(r#""nst":20"#, r#""nst":20,"new":1"#))
        );
        // Key order, list order and the detail link are not.
        let reordered = FEATURE
            .replace(r#""dmin":1.5,"nst":20"#, r#""nst":20,"dmin":1.5"#)
            .replace(",us1,ci2,", ",ci2,us1,")
            .replace(",origin,dyfi,", ",dyfi,origin,")
            .replace("https://a/1", "https://b/2");
        assert_eq!(base, hash_of(&reordered));
    }

    #[test]
    fn the_record_keeps_the_properties_as_received() {
        let page = quake_api::parse_usgs_any(FEATURE.as_bytes()).unwrap();
        let rec = to_record(&page.events[0]);
        let raw =
            &FEATURE[FEATURE.find(r#"{"mag""#).unwrap()..FEATURE.find(r#","geometry""#).unwrap()];
        assert_eq!(rec.properties.as_deref(), Some(raw));
        assert_eq!(rec.sources.as_deref(), Some(",us,ci,"));
    }
}
