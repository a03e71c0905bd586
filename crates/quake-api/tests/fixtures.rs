//! Every fixture in testdata/ parses, and its oddities come through right.
#![allow(clippy::unwrap_used)]

use chrono::{TimeZone, Timelike, Utc};
use quake_api::{
    ApiError, Event, SourceKind, parse_emsc, parse_usgs_any, parse_usgs_collection,
    parse_usgs_count, parse_usgs_feature, validate_event,
};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/");
const EMSC: &str = "emsc_fdsn_json_2025-04-26_turkey-region_minmag2.5.json";

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{TESTDATA}{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn usgs_collections() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(TESTDATA)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("usgs_") && n.ends_with(".geojson") && !n.contains("eventid"))
        .collect();
    names.sort();
    names
}

fn find<'a>(events: &'a [Event], id: &str) -> &'a Event {
    events
        .iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("{id} not found"))
}

#[test]
fn every_usgs_collection_parses_and_counts_match() {
    let names = usgs_collections();
    assert_eq!(names.len(), 18, "{names:?}");
    let mut total = 0;
    for name in &names {
        let body = read(name);
        let page = parse_usgs_collection(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let count = page.metadata_count.unwrap();
        assert_eq!(page.record_count() as u64, count, "{name}");
        assert!(
            page.rejected.is_empty(),
            "{name}: {:?}",
            page.rejected.first()
        );
        assert!(page.generated.is_some(), "{name}");
        for e in &page.events {
            assert!(e.ids.contains(&e.id), "{name} {}", e.id);
            assert_eq!(e.source, SourceKind::Usgs);
            assert_eq!(e.status, e.status.to_lowercase());
            assert!(validate_event(e).is_ok());
        }
        // parse_usgs_any agrees
        assert_eq!(parse_usgs_any(&body).unwrap(), page, "{name}");
        total += page.record_count();
    }
    assert_eq!(total, 17556);
}

#[test]
fn generated_is_ms_since_epoch() {
    let page = parse_usgs_collection(&read("usgs_all_hour_2013-07-20T1633Z.geojson")).unwrap();
    assert_eq!(
        page.generated,
        Utc.timestamp_millis_opt(1374338016000).single()
    );
}

#[test]
fn all_hour_2013_oddities() {
    let page = parse_usgs_collection(&read("usgs_all_hour_2013-07-20T1633Z.geojson")).unwrap();
    assert_eq!(page.events.len(), 1);
    let e = &page.events[0];
    assert_eq!(e.id, "ak10764004");
    assert_eq!(e.status, "automatic"); // was "AUTOMATIC"
    assert_eq!(e.title, None); // api 1.0.x: no title
    assert_eq!(e.tsunami, None);
    assert_eq!(e.mag_type.as_deref(), Some("Ml"));
    assert_eq!(e.magnitude, Some(1.2));
    assert_eq!(e.time, Utc.timestamp_millis_opt(1374336295000).unwrap());
    assert_eq!(e.updated, Utc.timestamp_millis_opt(1374336754155).unwrap());
    assert_eq!(
        (e.longitude, e.latitude, e.depth_km),
        (-146.7194, 60.8626, Some(24.8))
    );
    assert_eq!(e.sig, Some(22));
    assert_eq!(e.net.as_deref(), Some("ak"));
    assert_eq!(e.code.as_deref(), Some("10764004"));
    assert_eq!(e.event_type.as_deref(), Some("earthquake"));
    assert_eq!(e.ids.len(), 1);
    assert!(!e.is_deleted());
}

#[test]
fn null_magnitude_and_negative_depth() {
    let page =
        parse_usgs_collection(&read("usgs_fdsn_query_2021-11-09T2234Z_null-mag.geojson")).unwrap();
    assert_eq!(page.events.len(), 3);
    let e = find(&page.events, "nc72955525");
    assert_eq!(e.magnitude, None);
    assert_eq!(e.mag_type, None);
    let e = find(&page.events, "nc72955530");
    assert_eq!(e.depth_km, Some(-0.68));
    assert_eq!(e.tsunami, Some(0));
    assert!(e.title.is_some());
}

#[test]
fn negative_depths_and_mags_and_mixed_status() {
    let page = parse_usgs_collection(&read("usgs_all_week_2014-04-15T1214Z.geojson")).unwrap();
    assert_eq!(page.events.len(), 1513);
    assert_eq!(find(&page.events, "ak11223933").depth_km, Some(-9.9));
    assert_eq!(find(&page.events, "uw60740816").magnitude, Some(-0.4));
    let neg_depth = page
        .events
        .iter()
        .filter(|e| e.depth_km.is_some_and(|d| d < 0.0))
        .count();
    let neg_mag = page
        .events
        .iter()
        .filter(|e| e.magnitude.is_some_and(|m| m < 0.0))
        .count();
    assert_eq!((neg_depth, neg_mag), (4, 11));
    let statuses: std::collections::BTreeSet<&str> =
        page.events.iter().map(|e| e.status.as_str()).collect();
    assert_eq!(
        statuses.into_iter().collect::<Vec<_>>(),
        ["automatic", "reviewed"]
    );
    // one alias in two events' ids
    let with_alias = page
        .events
        .iter()
        .filter(|e| e.ids.contains("at00n3rz0w"))
        .count();
    assert_eq!(with_alias, 2);
}

#[test]
fn missing_bbox_empty_result() {
    let page = parse_usgs_collection(&read(
        "usgs_fdsn_query_2021-11-09T2234Z_empty-result.geojson",
    ))
    .unwrap();
    assert_eq!(page.record_count(), 0);
    assert!(page.is_empty());
    assert_eq!(page.metadata_count, Some(0));
}

#[test]
fn northridge_ids() {
    let page = parse_usgs_collection(&read(
        "usgs_fdsn_query_2021-11-09T2234Z_northridge-1994.geojson",
    ))
    .unwrap();
    let e = &page.events[0];
    assert_eq!(e.id, "ci3144585");
    assert_eq!(e.ids.len(), 8);
    assert!(e.ids.contains("cinorthrid"));
    assert!(e.ids.iter().all(|i| !i.is_empty() && !i.contains(',')));
}

#[test]
fn single_feature_eventid_response() {
    let body = read("usgs_fdsn_eventid_ci3144585_detail_2021-11-09T2234Z.geojson");
    for page in [
        parse_usgs_feature(&body).unwrap(),
        parse_usgs_any(&body).unwrap(),
    ] {
        assert_eq!(page.events.len(), 1);
        assert!(page.rejected.is_empty());
        let e = &page.events[0];
        assert_eq!(e.id, "ci3144585");
        assert!(e.ids.contains("cinorthrid"));
        assert!(e.ids.contains("ci3144585"));
        assert_eq!(e.magnitude, Some(6.7));
        assert_eq!(e.felt, Some(10128));
        assert_eq!(e.sig, Some(1561));
        assert_eq!(e.status, "reviewed");
        assert_eq!(page.generated, None);
    }
    // a collection is not a feature, and vice versa
    assert!(matches!(
        parse_usgs_collection(&body),
        Err(ApiError::InvalidBody { .. })
    ));
    let coll = read("usgs_all_hour_2013-07-20T1633Z.geojson");
    assert!(matches!(
        parse_usgs_feature(&coll),
        Err(ApiError::InvalidBody { .. })
    ));
}

#[test]
fn usauto_ids_are_a_set() {
    let page = parse_usgs_collection(&read(
        "usgs_fdsn_query_2025-04-26T1350Z_turkey-region.geojson",
    ))
    .unwrap();
    let e = find(&page.events, "us7000pufs");
    let ids: Vec<&str> = e.ids.iter().map(String::as_str).collect();
    assert_eq!(
        ids,
        ["at00sv60m1", "pt25113000", "us7000pufs", "usauto7000pufs"]
    );
    assert_eq!(e.net.as_deref(), Some("us"));
    assert_eq!(e.code.as_deref(), Some("7000pufs"));
    assert!(
        page.events
            .iter()
            .any(|e| e.alert.as_deref() == Some("orange"))
    );
}

#[test]
fn significant_month_values() {
    let page =
        parse_usgs_collection(&read("usgs_significant_month_2023-10-11T2016Z.geojson")).unwrap();
    assert_eq!(
        page.events.iter().filter(|e| e.tsunami == Some(1)).count(),
        4
    );
    assert_eq!(page.events.iter().filter_map(|e| e.sig).max(), Some(2029));
    assert_eq!(page.events.iter().filter_map(|e| e.felt).max(), Some(10825));
    assert!(
        page.events
            .iter()
            .all(|e| e.title.is_some() && e.url.is_some())
    );
}

#[test]
fn emsc_fixture() {
    let body = read(EMSC);
    let page = parse_emsc(&body).unwrap();
    assert_eq!(page.metadata_count, Some(430));
    assert_eq!(page.record_count(), 430);
    assert_eq!(page.events.len(), 430);
    assert_eq!(page.generated, None);
    let raw: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let features = raw["features"].as_array().unwrap();
    for (f, e) in features.iter().zip(&page.events) {
        let p = &f["properties"];
        assert_eq!(e.id, p["unid"].as_str().unwrap());
        assert_eq!(e.depth_km, p["depth"].as_f64());
        assert!(e.depth_km.unwrap() >= 0.0);
        assert_eq!(
            -e.depth_km.unwrap(),
            f["geometry"]["coordinates"][2].as_f64().unwrap()
        );
        assert_eq!(e.latitude, p["lat"].as_f64().unwrap());
        assert_eq!(e.longitude, p["lon"].as_f64().unwrap());
        assert_eq!(e.source, SourceKind::Emsc);
        assert_eq!(e.status, "automatic");
        assert_eq!(e.ids.len(), 1);
    }
    let e = find(&page.events, "20250426_0000198");
    // 1 fractional digit
    assert_eq!(
        e.time,
        Utc.with_ymd_and_hms(2025, 4, 26, 12, 59, 28).unwrap()
    );
    // 6 fractional digits
    assert_eq!(
        e.updated,
        Utc.with_ymd_and_hms(2025, 4, 26, 13, 48, 47).unwrap()
            + chrono::Duration::microseconds(302_931)
    );
    assert_eq!(e.place.as_deref(), Some("CRETE, GREECE"));
    assert_eq!(e.net.as_deref(), Some("THE"));
    assert_eq!(e.code.as_deref(), Some("1800270"));
    assert_eq!(e.event_type.as_deref(), Some("ke"));
    assert_eq!(e.mag_type.as_deref(), Some("ml"));
    assert_eq!(e.magnitude, Some(2.6));
    assert_eq!(
        e.url.as_deref(),
        Some("https://www.seismicportal.eu/eventdetails/20250426_0000198")
    );
    // 2 fractional digits
    let e = find(&page.events, "20250426_0000185");
    assert_eq!(e.time.second(), 25);
    assert_eq!(e.time.nanosecond(), 870_000_000);
    assert_eq!(e.depth_km, Some(16.3));
}

#[test]
fn emsc_time_without_z_and_total_count() {
    let body = br#"{"type":"FeatureCollection","metadata":{"totalCount":1},"features":[
      {"type":"Feature","geometry":{"type":"Point","coordinates":[25.0,35.0,-7.5]},"id":"20170101_0000001",
       "properties":{"unid":"20170101_0000001","time":"2017-01-01T01:02:03.45","lastupdate":"2017-01-01T02:00:00",
       "lat":35.0,"lon":25.0,"depth":7.5,"mag":3.0,"magtype":"mb","flynn_region":"CRETE","evtype":"ke","auth":"EMSC","source_id":123}}]}"#;
    let page = parse_emsc(body).unwrap();
    assert_eq!(page.metadata_count, Some(1));
    let e = &page.events[0];
    assert_eq!(e.time.nanosecond(), 450_000_000);
    assert_eq!(
        e.updated,
        Utc.with_ymd_and_hms(2017, 1, 1, 2, 0, 0).unwrap()
    );
    assert_eq!(e.code.as_deref(), Some("123"));
}

#[test]
fn count_fixture() {
    let c = parse_usgs_count(&read("usgs_fdsn_count_2021-11-09T2234Z.json")).unwrap();
    assert_eq!(c.count, 1);
    assert_eq!(c.max_allowed, Some(20000));
}

#[test]
fn event_serializes() {
    let page = parse_usgs_collection(&read("usgs_all_hour_2013-07-20T1633Z.geojson")).unwrap();
    let v = serde_json::to_value(&page.events[0]).unwrap();
    assert_eq!(v["source"], "usgs");
    assert_eq!(v["status"], "automatic");
    assert_eq!(SourceKind::Emsc.as_str(), "emsc");
}
