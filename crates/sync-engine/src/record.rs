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
    // The canonical text is written straight into the hasher, without building it as a
    // `serde_json::Value` first; the bytes are those of the `Value` form (pinned by a test
    // against it), so stored hashes stay valid.
    let mut hasher = HashWriter(Sha256::new());
    if serde_json::to_writer(&mut hasher, &Canonical(e)).is_err() {
        // Not reachable: writing to a hasher cannot fail, and every value of the canonical
        // form serializes. Should it ever, the event's debug text still hashes its content.
        return hex(&Sha256::digest(format!("{e:?}").as_bytes()));
    }
    hex(&hasher.0.finalize())
}

fn hex(digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for b in digest.iter().take(16) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// Feeds what serde_json writes to SHA-256.
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The canonical form of an event, serialized as a JSON array: the same text as
/// the `Value` form the tests keep as its reference (`tests::canonical_value`), written
/// directly.
struct Canonical<'a>(&'a Event);

impl serde::Serialize for Canonical<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let e = self.0;
        let mut seq = s.serialize_seq(Some(22))?;
        seq.serialize_element(&e.id)?;
        seq.serialize_element(&e.ids)?;
        seq.serialize_element(&e.time.timestamp_millis())?;
        seq.serialize_element(&e.updated.timestamp_millis())?;
        seq.serialize_element(&e.magnitude)?;
        seq.serialize_element(&e.mag_type)?;
        seq.serialize_element(&e.place)?;
        seq.serialize_element(&e.title)?;
        seq.serialize_element(&e.longitude)?;
        seq.serialize_element(&e.latitude)?;
        seq.serialize_element(&e.depth_km)?;
        seq.serialize_element(&e.status)?;
        seq.serialize_element(&e.event_type)?;
        seq.serialize_element(&e.net)?;
        seq.serialize_element(&e.code)?;
        seq.serialize_element(&e.tsunami)?;
        seq.serialize_element(&e.sig)?;
        seq.serialize_element(&e.felt)?;
        seq.serialize_element(&e.alert)?;
        seq.serialize_element(&e.url)?;
        seq.serialize_element(e.source.as_str())?;
        match e.properties.as_deref() {
            None => seq.serialize_element(&None::<()>)?,
            Some(raw) => match LiteProperties::read(raw) {
                Some(lite) => seq.serialize_element(&lite)?,
                None => seq.serialize_element(&canonical_properties(raw))?,
            },
        }
        seq.end()
    }
}

/// One property value, borrowed from the text where it can be: what a USGS record holds
/// (strings without escapes, numbers, booleans, nulls). Anything else is read as a `Value`.
enum LiteValue<'a> {
    Str(&'a str),
    Owned(String),
    Num(serde_json::Number),
    Bool(bool),
    Null,
    Other(serde_json::Value),
}

impl serde::Serialize for LiteValue<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            LiteValue::Str(v) => s.serialize_str(v),
            LiteValue::Owned(v) => s.serialize_str(v),
            LiteValue::Num(n) => n.serialize(s),
            LiteValue::Bool(b) => s.serialize_bool(*b),
            LiteValue::Null => s.serialize_unit(),
            LiteValue::Other(v) => v.serialize(s),
        }
    }
}

/// `properties` in canonical form (as [`canonical_properties`]), keys borrowed: sorted by
/// key (a `BTreeMap` orders `&str` as `Value`'s map orders `String`), the last of
/// duplicate keys kept, `detail` left out, the set properties sorted.
struct LiteProperties<'a>(std::collections::BTreeMap<&'a str, LiteValue<'a>>);

impl<'a> LiteProperties<'a> {
    /// `None` when the text is not a JSON object whose keys borrow (an escape in a key):
    /// the caller then takes the `Value` path.
    fn read(raw: &'a str) -> Option<LiteProperties<'a>> {
        use serde_json::value::RawValue;
        let fields: Vec<(&'a str, &'a RawValue)> = serde_json::from_str::<Ordered<'a>>(raw).ok()?.0;
        let mut map = std::collections::BTreeMap::new();
        for (key, value) in fields {
            if key == "detail" {
                map.remove(key);
                continue;
            }
            let text = value.get();
            let lite = match text.as_bytes().first() {
                Some(b'"') => match serde_json::from_str::<&str>(text) {
                    Ok(v) if SET_PROPERTIES.contains(&key) => LiteValue::Owned(sorted_set(v)),
                    Ok(v) => LiteValue::Str(v),
                    Err(_) => {
                        let v: String = serde_json::from_str(text).ok()?;
                        if SET_PROPERTIES.contains(&key) {
                            LiteValue::Owned(sorted_set(&v))
                        } else {
                            LiteValue::Owned(v)
                        }
                    }
                },
                Some(b'n') => LiteValue::Null,
                Some(b't' | b'f') => LiteValue::Bool(serde_json::from_str(text).ok()?),
                Some(b'-' | b'0'..=b'9') => LiteValue::Num(serde_json::from_str(text).ok()?),
                _ => LiteValue::Other(serde_json::from_str(text).ok()?),
            };
            map.insert(key, lite);
        }
        Some(LiteProperties(map))
    }
}

impl serde::Serialize for LiteProperties<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter())
    }
}

/// The fields of a JSON object in text order, keys and values borrowed.
struct Ordered<'a>(Vec<(&'a str, &'a serde_json::value::RawValue)>);

impl<'de> serde::Deserialize<'de> for Ordered<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Ordered<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered<'de>, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(32));
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(Fields)
    }
}

/// A comma list as a sorted set, as [`canonical_properties`] writes it.
fn sorted_set(list: &str) -> String {
    let mut parts: Vec<&str> = list.split(',').filter(|p| !p.is_empty()).collect();
    parts.sort_unstable();
    parts.dedup();
    parts.join(",")
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
            *list = sorted_set(list);
        }
    }
    // serde_json's map is ordered by key (no `preserve_order`): the text is canonical.
    serde_json::Value::Object(map)
}

/// The store's row for an event.
pub fn to_record(e: &Event) -> EventRecord {
    into_record(e.clone())
}

/// The store's row for an event, taking the event's strings instead of copying them (the
/// engine converts each page it fetched this way).
pub fn into_record(e: Event) -> EventRecord {
    let content_hash = content_hash(&e);
    let ids: Vec<&str> = e.ids.iter().map(String::as_str).collect();
    let ids = format!(",{},", ids.join(","));
    EventRecord {
        id: e.id,
        ids,
        time: Ts(e.time),
        updated: Ts(e.updated),
        magnitude: e.magnitude,
        mag_type: e.mag_type,
        place: e.place,
        title: e.title,
        longitude: e.longitude,
        latitude: e.latitude,
        depth_km: e.depth_km,
        status: e.status,
        event_type: e.event_type,
        net: e.net,
        code: e.code,
        tsunami: e.tsunami,
        sig: e.sig,
        felt: e.felt,
        alert: e.alert,
        url: e.url,
        source: e.source.as_str().to_string(),
        content_hash,
        cdi: e.cdi,
        mmi: e.mmi,
        gap: e.gap,
        sources: e.sources,
        properties: e.properties,
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

    /// The canonical form as a `serde_json::Value`: the reference the direct form
    /// ([`Canonical`]) must write byte for byte, so hashes stored before stay valid.
    fn canonical_value(e: &Event) -> serde_json::Value {
        serde_json::json!([
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
        ])
    }

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

    /// The direct form writes the very bytes of the `Value` form (so hashes stored before
    /// stay valid): every event of every fixture, and properties that take the slow paths.
    #[test]
    fn the_direct_hash_is_the_value_form_hash() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata");
        let mut events = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.to_string_lossy().ends_with(".geojson")
                && let Ok(page) = quake_api::parse_usgs_any(&std::fs::read(&path).unwrap())
            {
                events.extend(page.events);
            }
        }
        assert!(events.len() > 10_000, "{}", events.len());
        let odd = [
            r#""place":"caf\u00e9 \/ \"x\"","#,
            r#""k\u00e9y":1,"#,
            r#""nested":{"b":1,"a":[1.50,-0,1e3]},"#,
            r#""ids":",b,a,b,","dmin":0.10,"#,
            r#""detail":"x","detail":"y","#,
            r#""dup":1,"dup":2,"#,
        ];
        for extra in odd {
            let feature = FEATURE.replace(r#""mag":4.5,"#, &format!(r#""mag":4.5,{extra}"#));
            let page = quake_api::parse_usgs_any(feature.as_bytes()).unwrap();
            events.extend(page.events);
        }
        for e in &events {
            let reference = Sha256::digest(canonical_value(e).to_string().as_bytes());
            assert_eq!(content_hash(e), hex(&reference), "{}", e.id);
        }
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
