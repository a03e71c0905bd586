//! From a parsed upstream event to the row the store writes: the content hash that lets
//! the revision policy see a change USGS made without touching `updated`.

use quake_api::{Event, RejectedRecord};
use quake_store::{EventRecord, NewRejected, Ts};
use sha2::{Digest, Sha256};

/// A stable hash of everything in an event that a reader can see. Two events with the same
/// hash are the same to a user; `ids` is hashed as a sorted set, so the order USGS lists
/// them in (which differs between endpoints) does not count as a change.
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
    ]);
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
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
