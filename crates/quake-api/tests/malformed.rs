//! Bad records cost only themselves; bad bodies fail the page with InvalidBody.
#![allow(clippy::unwrap_used)]

use quake_api::{ApiError, parse_emsc, parse_usgs_any, parse_usgs_collection, parse_usgs_feature};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/");

/// The one feature of the 2013 all_hour file, as raw text.
fn real_feature() -> String {
    let body = std::fs::read_to_string(format!("{TESTDATA}usgs_all_hour_2013-07-20T1633Z.geojson"))
        .unwrap();
    let start = body.find(r#"{"type":"Feature""#).unwrap();
    let end = body.rfind("]}").unwrap();
    body[start..end].to_owned()
}

fn collection(features: &[String]) -> String {
    format!(
        r#"{{"type":"FeatureCollection","metadata":{{"generated":1374338016000,"count":{}}},"features":[{}]}}"#,
        features.len(),
        features.join(",")
    )
}

fn replace(f: &str, from: &str, to: &str) -> String {
    assert!(f.contains(from), "{from}");
    f.replacen(from, to, 1)
}

#[test]
fn malformed_records_are_rejected_one_by_one() {
    let good = real_feature();
    let good2 = replace(&good, r#""id":"ak10764004""#, r#""id":"ak2""#);
    let bad: Vec<(String, Option<&str>, &str)> = vec![
        (
            replace(&good, "60.8626", "200"),
            Some("ak10764004"),
            "latitude",
        ),
        (
            replace(&good, "-146.7194", "-180.5"),
            Some("ak10764004"),
            "longitude",
        ),
        (replace(&good, r#","id":"ak10764004""#, ""), None, "id"),
        (
            replace(&good, r#""id":"ak10764004""#, r#""id":"""#),
            Some(""),
            "id",
        ),
        (
            replace(&good, "36km SW of Valdez", r"36km SW\u0000 of Valdez"),
            Some("ak10764004"),
            "NUL",
        ),
        (
            replace(&good, r#""status":"AUTOMATIC""#, r#""status":"AUTO\u0000""#),
            Some("ak10764004"),
            "NUL",
        ),
        (
            replace(&good, "1374336295000", r#""x""#),
            Some("ak10764004"),
            "time",
        ),
        (
            replace(&good, r#""time":1374336295000,"#, ""),
            Some("ak10764004"),
            "time",
        ),
        (
            replace(&good, r#""mag":1.2"#, r#""mag":"1.2""#),
            Some("ak10764004"),
            "mag",
        ),
        (
            replace(&good, r#""mag":1.2"#, r#""mag":1e400"#),
            None,
            "feature",
        ),
        (
            replace(&good, r#""sig":22"#, r#""sig":99999999999"#),
            Some("ak10764004"),
            "sig",
        ),
        (
            replace(
                &good,
                r#""geometry":{"type":"Point","coordinates":[-146.7194,60.8626,24.8]}"#,
                r#""geometry":null"#,
            ),
            Some("ak10764004"),
            "geometry",
        ),
        (
            replace(&good, "[-146.7194,60.8626,24.8]", r#"["a",60.8626,24.8]"#),
            Some("ak10764004"),
            "coordinates",
        ),
        (
            replace(&good, r#""properties":{"#, r#""properties":7,"x":{"#),
            Some("ak10764004"),
            "properties",
        ),
        ("42".to_owned(), None, "object"),
        ("[1,2]".to_owned(), None, "object"),
    ];
    let mut features = vec![good.clone()];
    features.extend(bad.iter().map(|(f, _, _)| f.clone()));
    features.push(good2);
    let body = collection(&features);
    let page = parse_usgs_collection(body.as_bytes()).unwrap();
    assert_eq!(page.record_count(), features.len());
    assert_eq!(page.metadata_count, Some(features.len() as u64));
    let ids: Vec<&str> = page.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["ak10764004", "ak2"]);
    assert_eq!(page.rejected.len(), bad.len());
    for (rej, (payload, source_id, word)) in page.rejected.iter().zip(&bad) {
        assert_eq!(&rej.payload, payload, "payload kept exactly");
        assert_eq!(rej.source_id.as_deref(), *source_id, "{}", rej.reason);
        assert!(
            rej.reason.to_lowercase().contains(&word.to_lowercase()),
            "reason {:?} should mention {word}",
            rej.reason
        );
    }
}

#[test]
fn whitespace_in_payload_is_kept() {
    let f = "{ \"type\" : \"Feature\",\n  \"id\": \"x1\" }";
    let body = collection(&[f.to_owned()]);
    let page = parse_usgs_collection(body.as_bytes()).unwrap();
    assert_eq!(page.rejected[0].payload, f);
    assert_eq!(page.rejected[0].source_id.as_deref(), Some("x1"));
}

#[test]
fn deleted_status_is_kept() {
    let good = real_feature();
    let f = replace(&good, r#""status":"AUTOMATIC""#, r#""status":"deleted""#);
    let page = parse_usgs_collection(collection(&[f]).as_bytes()).unwrap();
    assert!(page.events[0].is_deleted());
}

#[test]
fn float_times_and_missing_ids_are_tolerated() {
    let good = real_feature();
    let f = replace(&good, "1374336295000", "1374336295000.0");
    let f = replace(&f, r#""ids":",ak10764004,","#, "");
    let f = replace(&f, r#""tsunami":null"#, r#""tsunami":1.0"#);
    let page = parse_usgs_collection(collection(&[f]).as_bytes()).unwrap();
    let e = &page.events[0];
    assert_eq!(e.time.timestamp_millis(), 1374336295000);
    assert_eq!(e.ids.len(), 1);
    assert!(e.ids.contains("ak10764004"));
    assert_eq!(e.tsunami, Some(1));
}

fn assert_invalid(result: Result<quake_api::Page, ApiError>, word: &str) {
    match result {
        Err(ApiError::InvalidBody {
            url,
            reason,
            snippet,
        }) => {
            assert!(url.is_empty());
            assert!(
                reason.contains(word),
                "reason {reason:?} should mention {word}"
            );
            assert!(snippet.chars().count() <= 201, "{snippet}");
        }
        other => panic!("expected InvalidBody, got {other:?}"),
    }
}

#[test]
fn bad_bodies_are_invalid_body() {
    let good = collection(&[real_feature()]);
    let truncated = &good[..good.len() / 2];
    assert_invalid(parse_usgs_collection(truncated.as_bytes()), "truncated");
    assert_invalid(
        parse_usgs_collection(b"<html>502 Bad Gateway</html>"),
        "not valid JSON",
    );
    assert_invalid(parse_usgs_collection(b""), "empty");
    assert_invalid(parse_usgs_collection(b"[]"), "shape");
    assert_invalid(parse_usgs_collection(b"null"), "shape");
    assert_invalid(
        parse_usgs_collection(br#"{"type":"FeatureCollection"}"#),
        "features",
    );
    assert_invalid(
        parse_usgs_collection(br#"{"type":"FeatureCollection","features":{}}"#),
        "shape",
    );
    assert_invalid(
        parse_usgs_collection(br#"{"type":"Foo","features":[]}"#),
        "FeatureCollection",
    );
    assert_invalid(parse_usgs_collection(br#"{"features":[]}"#), "type");
    assert_invalid(parse_usgs_any(br#"{"type":"Foo"}"#), "FeatureCollection");
    assert_invalid(
        parse_usgs_feature(br#"{"type":"FeatureCollection","features":[]}"#),
        "Feature",
    );
    assert_invalid(
        parse_emsc(b"{\"type\":\"FeatureCollection\",\"features\":[{"),
        "truncated",
    );
    // a long garbage body gives a short snippet
    let long = "é".repeat(10_000);
    assert_invalid(parse_usgs_collection(long.as_bytes()), "JSON");
    // a trailing garbage after the document is refused too
    assert_invalid(
        parse_usgs_collection(format!("{good}xyz").as_bytes()),
        "JSON",
    );
}

#[test]
fn single_feature_that_is_bad_becomes_a_rejected_record() {
    let f = replace(&real_feature(), "60.8626", "95");
    let page = parse_usgs_feature(f.as_bytes()).unwrap();
    assert_eq!(page.events.len(), 0);
    assert_eq!(page.rejected.len(), 1);
    assert_eq!(page.rejected[0].payload, f);
}

#[test]
fn emsc_bad_record() {
    let body = br#"{"type":"FeatureCollection","metadata":{"count":2},"features":[
      {"type":"Feature","id":"a1","properties":{"unid":"a1","time":"nope","lat":1,"lon":2,"depth":3}},
      {"type":"Feature","id":"a2","properties":{"unid":"a2","time":"2025-04-26T12:59:28.0Z","lat":1,"lon":2,"depth":3,"mag":null}}]}"#;
    let page = parse_emsc(body).unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.rejected.len(), 1);
    assert_eq!(page.rejected[0].source_id.as_deref(), Some("a1"));
    assert!(page.rejected[0].reason.contains("time"));
    assert_eq!(page.events[0].magnitude, None);
    assert_eq!(page.events[0].depth_km, Some(3.0));
}
