//! `GET /fdsnws/event/1/query` (SPEC section 6) on both backends: the USGS GeoJSON shape
//! and its round trip through quake-api's parser, every parameter and its 400, alias
//! lookup, exclusion of merged and deleted rows, paging stability, the 20000 cap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod read_support;

use std::collections::BTreeSet;

use quake_api::{parse_usgs_any, parse_usgs_collection};
use quake_store::testing::TestDb;
use quake_store::{Earthquake, both_backends};
use read_support::*;
use serde_json::Value;

const WEEK: &str = "usgs_all_week_2021-07-20T1423Z.geojson";

/// The USGS property order (FORMAT_NOTES: feed and fdsnws, api >= 1.1).
const USGS_PROPERTIES: [&str; 26] = [
    "mag", "place", "time", "updated", "tz", "url", "detail", "felt", "cdi", "mmi", "alert",
    "status", "tsunami", "sig", "net", "code", "ids", "sources", "types", "nst", "dmin", "rms",
    "gap", "magType", "type", "title",
];

/// Asserts that `"key":` occurs in `raw` for each key, in this order, from `from` on;
/// returns where the last one was found.
fn assert_key_order(raw: &str, from: usize, keys: &[&str]) -> usize {
    let mut at = from;
    for key in keys {
        let needle = format!("\"{key}\":");
        match raw[at..].find(&needle) {
            Some(i) => at += i + needle.len(),
            None => panic!("{needle} not found in order after byte {at} (keys {keys:?})"),
        }
    }
    at
}

/// Every field a reader of the GeoJSON can see, compared with the stored row.
fn assert_same_event(ev: &quake_api::Event, row: &Earthquake) {
    let rec = sync_engine::record::to_record(ev);
    assert_eq!(rec.id, row.id);
    assert_eq!(rec.ids, row.ids, "{}", row.id);
    assert_eq!(rec.time, row.time, "{}", row.id);
    assert_eq!(rec.updated, row.updated, "{}", row.id);
    assert_eq!(rec.magnitude, row.magnitude, "{}", row.id);
    assert_eq!(rec.mag_type, row.mag_type, "{}", row.id);
    assert_eq!(rec.place, row.place, "{}", row.id);
    assert_eq!(rec.title, row.title, "{}", row.id);
    assert_eq!(rec.longitude, row.longitude, "{}", row.id);
    assert_eq!(rec.latitude, row.latitude, "{}", row.id);
    assert_eq!(rec.depth_km, row.depth_km, "{}", row.id);
    assert_eq!(rec.status, row.status, "{}", row.id);
    assert_eq!(rec.event_type, row.event_type, "{}", row.id);
    assert_eq!(rec.net, row.net, "{}", row.id);
    assert_eq!(rec.code, row.code, "{}", row.id);
    assert_eq!(rec.tsunami, row.tsunami, "{}", row.id);
    assert_eq!(rec.sig, row.sig, "{}", row.id);
    assert_eq!(rec.felt, row.felt, "{}", row.id);
    assert_eq!(rec.alert, row.alert, "{}", row.id);
    assert_eq!(rec.url, row.url, "{}", row.id);
    assert_eq!(rec.source, row.source, "{}", row.id);
}

// A real week of USGS events stored, served, parsed back: the same events, every field, the
// same content hash; the collection in the USGS shape.
both_backends!(round_trip_of_a_real_week, async |db: TestDb| {
    let store = db.store().await;
    let records = fixture_records(WEEK);
    fill(&store, &records, 1000).await;
    let rows = { store.all_events().await.unwrap() };
    assert_eq!(rows.len(), records.len());
    let app = read_app!(state_for(idle_engine(store.clone())));

    let before = chrono::Utc::now().timestamp_millis();
    let res = actix_web::test::call_service(
        &app,
        actix_web::test::TestRequest::get()
            .uri(&format!("{QUERY}?format=geojson&starttime=2000-01-01&orderby=time-asc&limit=20000&includedeleted=true"))
            .to_request(),
    )
    .await;
    let after = chrono::Utc::now().timestamp_millis();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(
        res.headers().get("content-type").unwrap().to_str().unwrap(),
        "application/json"
    );
    assert_eq!(
        res.headers().get("access-control-allow-origin").unwrap(),
        "*"
    );
    let raw = String::from_utf8(actix_web::test::read_body(res).await.to_vec()).unwrap();
    let body: Value = serde_json::from_str(&raw).unwrap();
    // USGS key order: the collection, the metadata, the first feature, its properties.
    assert!(raw.starts_with("{\"type\":\"FeatureCollection\",\"metadata\":{\"generated\":"));
    assert_key_order(
        &raw,
        0,
        &[
            "generated",
            "url",
            "title",
            "status",
            "api",
            "limit",
            "offset",
            "count",
            "features",
        ],
    );
    let first_feature = assert_key_order(&raw, 0, &["features"]);
    let props = assert_key_order(&raw, first_feature, &["type", "properties"]);
    let end = assert_key_order(&raw, props, &USGS_PROPERTIES);
    assert_key_order(&raw, end, &["geometry", "id"]);
    assert!(raw.ends_with("]}") && raw.contains("],\"bbox\":["));
    assert_eq!(body["type"], "FeatureCollection");
    let meta = &body["metadata"];
    let generated = meta["generated"].as_i64().unwrap();
    assert!((before..=after).contains(&generated), "{generated}");
    assert_eq!(meta["status"], 200);
    assert_eq!(meta["count"], rows.len());
    assert_eq!(meta["limit"], 20000);
    assert_eq!(meta["offset"], 1);
    assert!(
        meta["url"]
            .as_str()
            .unwrap()
            .ends_with("orderby=time-asc&limit=20000&includedeleted=true")
    );
    assert!(meta["title"].is_string() && meta["api"].is_string());
    let features = body["features"].as_array().unwrap();
    let first = &features[0];
    assert_eq!(
        first["properties"].as_object().unwrap().len(),
        USGS_PROPERTIES.len()
    );
    assert_eq!(first["geometry"]["type"], "Point");
    assert!(first["properties"]["time"].is_i64());
    assert!(
        first["properties"]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("{QUERY}?eventid="))
    );
    // time-asc with the id tiebreak
    let order: Vec<(i64, String)> = features
        .iter()
        .map(|f| {
            (
                f["properties"]["time"].as_i64().unwrap(),
                f["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    // bbox: [minlon, minlat, mindepth, maxlon, maxlat, maxdepth]
    let bbox: Vec<f64> = body["bbox"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let min_lon = rows
        .iter()
        .map(|r| r.longitude)
        .fold(f64::INFINITY, f64::min);
    let max_depth = rows
        .iter()
        .filter_map(|r| r.depth_km)
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(bbox[0], min_lon);
    assert_eq!(bbox[5], max_depth);

    // Parsed back by quake-api: the stored rows, every field.
    let bytes = serde_json::to_vec(&body).unwrap();
    let page = parse_usgs_collection(&bytes).unwrap();
    assert!(page.rejected.is_empty(), "{:?}", page.rejected.first());
    assert_eq!(page.events.len(), rows.len());
    assert_eq!(
        page.generated.map(|g| g.timestamp_millis()),
        Some(generated)
    );
    let by_id: std::collections::HashMap<&str, &Earthquake> =
        rows.iter().map(|r| (r.id.as_str(), r)).collect();
    for ev in &page.events {
        let row = by_id[ev.id.as_str()];
        assert_same_event(ev, row);
        assert_eq!(
            sync_engine::record::content_hash(ev),
            row.content_hash,
            "{}",
            row.id
        );
    }
});

// Microsecond times (EMSC) come back exactly, as fractional ms; null fields stay null; a
// single Feature parses with parse_usgs_any.
both_backends!(round_trip_of_odd_values, async |db: TestDb| {
    let store = db.store().await;
    let mut a = rec(
        "xxodd1",
        &["yy1", "zz_1"],
        "2024-05-01T10:00:00.123456Z",
        None,
    );
    a.updated = ts("2024-05-01T10:05:00.000001Z");
    a.depth_km = None;
    a.mag_type = None;
    a.place = Some("Ağrı <Türkiye> & \"quotes\"".into());
    a.title = None;
    a.tsunami = None;
    a.sig = None;
    a.net = None;
    a.code = None;
    a.url = None;
    a.longitude = -180.0;
    a.latitude = 90.0;
    let mut b = rec("xxodd2", &[], "2024-05-01T11:00:00Z", Some(-1.64));
    b.depth_km = Some(-10.0);
    fill(&store, &[a.clone(), b.clone()], 10).await;
    let app = read_app!(state_for(idle_engine(store.clone())));
    let (status, body) = get!(
        &app,
        format!("{QUERY}?starttime=2024-01-01&orderby=time-asc")
    );
    assert_eq!(status, 200, "{body}");
    // no limit given: no limit/offset in metadata (as USGS)
    assert!(body["metadata"].get("limit").is_none(), "{body}");
    assert!(body["features"][0]["properties"]["time"].is_f64());
    assert_eq!(
        body["features"][0]["geometry"]["coordinates"][2],
        Value::Null
    );
    let page = parse_usgs_collection(&serde_json::to_vec(&body).unwrap()).unwrap();
    for ev in &page.events {
        let row = store.event(&ev.id).await.unwrap().unwrap();
        assert_same_event(ev, &row);
    }
    // The single Feature for eventid, also parsed back.
    let res = actix_web::test::call_service(
        &app,
        actix_web::test::TestRequest::get()
            .uri(&format!("{QUERY}?eventid=zz_1&format=geojson"))
            .to_request(),
    )
    .await;
    assert_eq!(res.status().as_u16(), 200);
    let bytes = actix_web::test::read_body(res).await;
    let page = parse_usgs_any(&bytes).unwrap();
    assert_eq!(page.events.len(), 1);
    let row = store.event("xxodd1").await.unwrap().unwrap();
    assert_same_event(&page.events[0], &row);
    let feature: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(feature["type"], "Feature");
    assert!(feature["properties"]["products"].is_object());
});

/// A bad request and the parameter its message must name.
const BAD: &[(&str, &str)] = &[
    ("eventid=a%00b", "eventid"),
    ("place=x", "place"),
    ("minmagnitude=1%00", "minmagnitude"),
    ("format=xls", "format"),
    ("format=json", "format"),
    ("maxradius=5", "latitude"),
    ("latitude=10&maxradius=5", "longitude"),
    ("latitude=91&longitude=0", "latitude"),
    ("lat=0&lon=181", "longitude"),
    ("lat=0&lon=0&maxradius=181", "maxradius"),
    ("lat=0&lon=0&minradius=5&maxradius=1", "minradius"),
    ("lat=0&lon=0&maxradius=1&maxradiuskm=5", "maxradiuskm"),
    ("mindepth=5&maxdepth=1", "mindepth"),
    ("maxdepth=deep", "maxdepth"),
    ("magnitudetype=m;b", "magnitudetype"),
    ("eventtype=earthquake,quarry'blast", "eventtype"),
    ("reviewstatus=maybe", "reviewstatus"),
    ("alertlevel=purple", "alertlevel"),
    ("minfelt=some", "minfelt"),
    ("mincdi=13", "mincdi"),
    ("minmmi=5&maxmmi=4", "minmmi"),
    ("mingap=-1", "mingap"),
    ("minsig=1.5", "minsig"),
    ("includearrivals=maybe", "includearrivals"),
    ("includeallorigins=2", "includeallorigins"),
    ("contributor=a,b", "contributor"),
    ("foo=1", "foo"),
    ("callback=x", "callback"),
    ("limit=0", "limit"),
    ("limit=20001", "limit"),
    ("limit=ten", "limit"),
    ("limit=1.5", "limit"),
    ("limit=", "limit"),
    ("limit=5&limit=6", "limit"),
    ("offset=0", "offset"),
    ("offset=-3", "offset"),
    ("offset=x", "offset"),
    ("starttime=yesterday", "starttime"),
    ("start=2021-02-30", "starttime"),
    ("endtime=2021-07-20T25:00:00", "endtime"),
    ("updatedafter=1626790980", "updatedafter"),
    ("starttime=2021-07-02&endtime=2021-07-01", "starttime"),
    ("minmagnitude=big", "minmagnitude"),
    ("minmag=NaN", "minmagnitude"),
    ("maxmagnitude=inf", "maxmagnitude"),
    ("minmagnitude=5&maxmagnitude=4", "minmagnitude"),
    ("minlatitude=-91", "minlatitude"),
    ("maxlat=90.5", "maxlatitude"),
    ("minlatitude=10&maxlatitude=0", "minlatitude"),
    ("minlongitude=-361", "minlongitude"),
    ("maxlon=400", "maxlongitude"),
    ("minlongitude=10&maxlongitude=-10", "minlongitude"),
    ("minlongitude=-200&maxlongitude=200", "maxlongitude"),
    ("orderby=depth", "orderby"),
    ("includedeleted=maybe", "includedeleted"),
    ("nodata=500", "nodata"),
    ("eventid=a,b", "eventid"),
    ("start=2021-01-01&starttime=2021-01-02", "starttime"),
];

// Each parameter's 400 names it, in the fdsnws error document (text/plain `Error 400: Bad
// Request`, the detail, the request, the service version); good values pass.
both_backends!(
    every_bad_parameter_is_a_400_naming_it,
    async |db: TestDb| {
        let store = db.store().await;
        let app = read_app!(state_for(idle_engine(store)));
        for (query, name) in BAD {
            let res = actix_web::test::call_service(
                &app,
                actix_web::test::TestRequest::get()
                    .uri(&format!("{QUERY}?{query}"))
                    .to_request(),
            )
            .await;
            assert_eq!(res.status().as_u16(), 400, "{query}");
            assert_eq!(
                res.headers().get("content-type").unwrap(),
                "text/plain; charset=utf-8"
            );
            let msg = String::from_utf8(actix_web::test::read_body(res).await.to_vec()).unwrap();
            assert!(
                msg.starts_with("Error 400: Bad Request\n"),
                "{query}: {msg}"
            );
            let detail = msg.split("\n\nUsage details").next().unwrap();
            assert!(
                detail.contains(name),
                "{query}: {detail:?} does not name {name}"
            );
            assert!(
                msg.contains(&format!("Request:\nhttp://localhost:8080{QUERY}?{query}\n")),
                "{msg}"
            );
            assert!(
                msg.contains("Request Submitted:\n") && msg.contains("Service version:\n1.2.0\n"),
                "{msg}"
            );
        }
        for good in [
            "format=geojson",
            "format=GeoJSON&nodata=404",
            "starttime=2021-07-20&endtime=2021-07-21T00:00:00",
            "start=2021-07-20T10:00:00Z&end=2021-07-20T12:00:00%2B02:00",
            "updatedafter=2021-07-20T14:23:05.5",
            "minmag=-1&maxmag=10",
            "minlat=-90&maxlat=90&minlon=-180&maxlon=180",
            "minlongitude=170&maxlongitude=190",
            "orderby=magnitude-asc&limit=20000&offset=1",
            "orderby=time-asc&includedeleted=only",
            "eventid=nothing-here&includedeleted=true",
            "format=xml&lat=-10&lon=170&maxradius=20&mindepth=0&maxdepth=700",
            "format=quakeml&maxradiuskm=300&latitude=38.4&longitude=27.1&minradius=0.1",
            "format=text&magtype=mww&eventtype=earthquake,quarry%20blast,ice*",
            "format=csv&reviewstatus=all&alertlevel=GREEN&minfelt=1&catalog=us&contributor=ci",
            "mincdi=1&maxcdi=9&minmmi=1&maxmmi=9&mingap=0&maxgap=360&minsig=0&maxsig=3000",
            "includeallorigins=true&includeallmagnitudes=false&includearrivals=false",
        ] {
            let res = actix_web::test::call_service(
                &app,
                actix_web::test::TestRequest::get()
                    .uri(&format!("{QUERY}?{good}"))
                    .to_request(),
            )
            .await;
            let code = res.status().as_u16();
            // nothing is stored: no data, 204 (404 when asked with nodata=404)
            let want = if good.contains("nodata=404") {
                404
            } else {
                204
            };
            assert_eq!(code, want, "{good}");
        }
    }
);

/// Ten events on a line of times, magnitudes and places, for the filters.
fn ten() -> Vec<quake_store::EventRecord> {
    (0..10)
        .map(|i| {
            let mut r = rec(
                &format!("xx{i:02}"),
                &[],
                &format!("2022-01-{:02}T00:00:00Z", i + 1),
                if i == 4 { None } else { Some(f64::from(i)) },
            );
            r.latitude = -45.0 + 10.0 * f64::from(i);
            r.longitude = -180.0 + 40.0 * f64::from(i);
            r.updated = ts(&format!("2023-01-{:02}T00:00:00Z", 10 - i));
            r
        })
        .collect()
}

// Each filter and order, on both backends (bounds inclusive; NULL magnitudes excluded by a
// magnitude bound, last when descending, first when ascending).
both_backends!(filters_and_orders, async |db: TestDb| {
    let store = db.store().await;
    fill(&store, &ten(), 100).await;
    let app = read_app!(state_for(idle_engine(store.clone())));
    let ids = |q: &str| {
        let q = q.to_string();
        let app = &app;
        async move {
            let (status, body) = get!(app, format!("{QUERY}?{q}"));
            if status == 204 {
                // no data (FDSN): nothing matched
                assert_eq!(body, Value::Null);
                return Vec::new();
            }
            assert_eq!(status, 200, "{q}: {body}");
            feature_ids(&body)
        }
    };
    let all = ids("starttime=2000-01-01").await;
    assert_eq!(all.len(), 10);
    assert_eq!(all[0], "xx09", "default order: newest first");
    assert_eq!(
        ids("starttime=2022-01-03&endtime=2022-01-05&orderby=time-asc").await,
        ["xx02", "xx03", "xx04"]
    );
    assert_eq!(
        ids("endtime=2022-01-02T00:00:00&orderby=time-asc").await,
        ["xx00", "xx01"]
    );
    assert_eq!(
        ids("minmagnitude=3&maxmagnitude=6&orderby=time-asc").await,
        ["xx03", "xx05", "xx06"]
    );
    assert_eq!(
        ids("minlatitude=0&maxlatitude=20&orderby=time-asc").await,
        ["xx05", "xx06"]
    );
    assert_eq!(
        ids("minlongitude=-100&maxlongitude=0&orderby=time-asc").await,
        ["xx02", "xx03", "xx04"]
    );
    // across the antimeridian: 150..210 = [150, 180] ∪ [-180, -150]
    assert_eq!(
        ids("minlongitude=150&maxlongitude=210&orderby=time-asc").await,
        ["xx00", "xx09"]
    );
    assert_eq!(
        ids("minlongitude=-230&maxlongitude=-150&orderby=time-asc").await,
        ["xx00", "xx08", "xx09"]
    );
    // small boxes (on PostgreSQL also through the GiST point index)
    assert_eq!(
        ids("minlatitude=4&maxlatitude=6&minlongitude=19&maxlongitude=21").await,
        ["xx05"]
    );
    assert_eq!(
        ids("minlatitude=-46&maxlatitude=-44&minlongitude=170&maxlongitude=190").await,
        ["xx00"]
    );
    assert_eq!(
        ids("minlatitude=44&maxlatitude=46&minlongitude=-181&maxlongitude=-179").await,
        ["xx09"]
    );
    assert_eq!(
        ids("minlatitude=14.9&maxlatitude=15.1&orderby=time-asc").await,
        ["xx06"]
    );
    assert_eq!(
        ids("minlatitude=4&maxlatitude=6&minlongitude=21&maxlongitude=30").await,
        Vec::<String>::new()
    );
    // updatedafter: upstream `updated` (2023-01-(10-i)) at or after, inclusive...
    let (_, body) = get!(
        &app,
        format!("{QUERY}?updatedafter=2023-01-08&orderby=time-asc")
    );
    assert_eq!(
        body["metadata"]["count"], 10,
        "everything changed here just now"
    );
    assert_eq!(
        ids("updatedafter=2999-01-01").await,
        Vec::<String>::new(),
        "nothing updated in the future"
    );
    let mag = ids("orderby=magnitude").await;
    assert_eq!(mag.first().unwrap(), "xx09");
    assert_eq!(
        mag.last().unwrap(),
        "xx04",
        "null magnitude last when descending"
    );
    let mag_asc = ids("orderby=magnitude-asc").await;
    assert_eq!(mag_asc[0], "xx04", "null magnitude first when ascending");
    assert_eq!(mag_asc[1], "xx00");
    assert_eq!(
        ids("orderby=time&limit=3&offset=2").await,
        ["xx08", "xx07", "xx06"]
    );
    let (_, body) = get!(&app, format!("{QUERY}?limit=3&offset=9"));
    assert_eq!(feature_ids(&body), ["xx01", "xx00"]);
    assert_eq!(body["metadata"]["count"], 2);
    assert_eq!(body["metadata"]["offset"], 9);
    // count
    let (status, body) = get!(&app, "/fdsnws/event/1/count?minmagnitude=5");
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"count": 5, "maxAllowed": 20000}));
    // an empty result: no data, 204 with no body (FDSN), or 404 when asked
    for format in ["geojson", "xml", "text", "csv"] {
        let (status, body) = get!(&app, format!("{QUERY}?minmagnitude=100&format={format}"));
        assert_eq!((status, body), (204, Value::Null), "{format}");
        let (status, body) = get!(
            &app,
            format!("{QUERY}?minmagnitude=100&format={format}&nodata=404")
        );
        assert_eq!(status, 404, "{format}");
        assert!(
            body.as_str().unwrap().starts_with("Error 404: Not Found\n"),
            "{body}"
        );
    }
});

// `updatedafter` also matches rows changed here after the time, so a reader's cursor
// catches events this catalogue received late (their upstream `updated` is older).
both_backends!(updatedafter_sees_late_arrivals, async |db: TestDb| {
    let store = db.store().await;
    let cursor = chrono::Utc::now() - chrono::Duration::seconds(2);
    let mut late = rec("xxlate", &[], "2020-01-01T00:00:00Z", Some(3.0));
    late.updated = ts("2020-01-02T00:00:00Z");
    fill(&store, &[late], 10).await;
    let app = read_app!(state_for(idle_engine(store)));
    let (_, body) = get!(
        &app,
        format!(
            "{QUERY}?starttime=2000-01-01&updatedafter={}",
            cursor.format("%Y-%m-%dT%H:%M:%S")
        )
    );
    assert_eq!(feature_ids(&body), ["xxlate"]);
});

// eventid: any associated id finds the event (a single Feature under its preferred id); a
// merged id resolves to the event it merged into; LIKE wildcards in the id match nothing.
both_backends!(alias_lookup, async |db: TestDb| {
    let store = db.store().await;
    fill(
        &store,
        &[
            rec("xxold", &[], "2022-02-01T00:00:00Z", Some(2.0)),
            rec(
                "xxab1",
                &["ci123", "us_x%"],
                "2022-02-02T00:00:00Z",
                Some(3.0),
            ),
        ],
        10,
    )
    .await;
    // xxnew lists xxold: xxold is merged into it
    let r = rec(
        "xxnew",
        &["xxold", "nc9"],
        "2022-02-01T00:00:01Z",
        Some(2.1),
    );
    fill(&store, &[r], 10).await;
    {
        let old = store.event("xxold").await.unwrap().unwrap();
        assert_eq!(old.merged_into.as_deref(), Some("xxnew"));
    }
    let app = read_app!(state_for(idle_engine(store)));
    for (asked, found) in [
        ("xxab1", "xxab1"),
        ("ci123", "xxab1"),
        ("us_x%", "xxab1"),
        ("nc9", "xxnew"),
        ("xxold", "xxnew"),
    ] {
        let (status, body) = get!(
            &app,
            format!("{QUERY}?eventid={}", asked.replace('%', "%25"))
        );
        assert_eq!(status, 200, "{asked}: {body}");
        assert_eq!(body["type"], "Feature", "{asked}");
        assert_eq!(body["id"], found, "{asked}");
        assert!(
            body["properties"]["ids"]
                .as_str()
                .unwrap()
                .contains(&format!(",{asked},"))
        );
    }
    for missing in ["ci12", "xxab", "ci1_3", "%", "us_x", "_", "ab1", "xx%25"] {
        let (status, body) = get!(&app, format!("{QUERY}?eventid={missing}"));
        assert_eq!(status, 204, "{missing}: {body}");
        let (status, body) = get!(&app, format!("{QUERY}?eventid={missing}&nodata=404"));
        assert_eq!(status, 404, "{missing}: {body}");
        assert!(
            body.as_str().unwrap().starts_with("Error 404: Not Found"),
            "{body}"
        );
    }
});

// Merged rows never listed; deleted rows only with includedeleted; a deleted eventid: 409
// unless includedeleted, as USGS.
both_backends!(merged_and_deleted_rows_are_excluded, async |db: TestDb| {
    let store = db.store().await;
    let mut gone = rec("xxgone", &["ak77"], "2022-03-02T00:00:00Z", Some(4.0));
    gone.status = "deleted".into();
    fill(
        &store,
        &[
            rec("xxlive", &[], "2022-03-01T00:00:00Z", Some(1.0)),
            rec("xxdup", &[], "2022-03-03T00:00:00Z", Some(2.0)),
            gone,
        ],
        10,
    )
    .await;
    fill(
        &store,
        &[rec("xxkeep", &["xxdup"], "2022-03-03T00:00:00Z", Some(2.0))],
        10,
    )
    .await;
    let app = read_app!(state_for(idle_engine(store)));
    let list = |q: &str| format!("{QUERY}?starttime=2022-01-01&orderby=time-asc{q}");
    let (_, body) = get!(&app, list(""));
    assert_eq!(feature_ids(&body), ["xxlive", "xxkeep"]);
    let (_, body) = get!(&app, list("&includedeleted=false"));
    assert_eq!(feature_ids(&body), ["xxlive", "xxkeep"]);
    let (_, body) = get!(&app, list("&includedeleted=true"));
    assert_eq!(feature_ids(&body), ["xxlive", "xxgone", "xxkeep"]);
    assert_eq!(body["features"][1]["properties"]["status"], "deleted");
    let (_, body) = get!(&app, list("&includedeleted=only"));
    assert_eq!(feature_ids(&body), ["xxgone"]);
    let (status, body) = get!(&app, "/fdsnws/event/1/count?starttime=2022-01-01");
    assert_eq!((status, body["count"].as_i64()), (200, Some(2)));

    for id in ["xxgone", "ak77"] {
        let (status, body) = get!(&app, format!("{QUERY}?eventid={id}"));
        assert_eq!(status, 409, "{body}");
        assert!(
            body.as_str().unwrap().starts_with("Error 409: Conflict"),
            "{body}"
        );
        assert!(body.as_str().unwrap().contains("includedeleted"));
        let (status, body) = get!(&app, format!("{QUERY}?eventid={id}&includedeleted=true"));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["id"], "xxgone");
        assert_eq!(body["properties"]["status"], "deleted");
    }
    let (status, body) = get!(&app, format!("{QUERY}?eventid=xxdup"));
    assert_eq!((status, body["id"].as_str()), (200, Some("xxkeep")));
});

// Paging with limit/offset covers every row once, in every order, with ties on time and
// magnitude broken by id; rows written between pages (a sync running) after the pages
// already read do not shift them.
both_backends!(paging_is_stable, async |db: TestDb| {
    let store = db.store().await;
    // 120 events on 7 distinct times and 5 magnitudes (one null): many ties.
    let records: Vec<_> = (0..120)
        .map(|i| {
            rec(
                &format!("xxp{i:03}"),
                &[],
                &format!("2022-04-0{}T00:00:00Z", 1 + i % 7),
                if i % 5 == 0 {
                    None
                } else {
                    Some(f64::from(i % 5))
                },
            )
        })
        .collect();
    fill(&store, &records, 50).await;
    let app = read_app!(state_for(idle_engine(store.clone())));
    let all: BTreeSet<String> = records.iter().map(|r| r.id.clone()).collect();
    for order in ["time", "time-asc", "magnitude", "magnitude-asc"] {
        let (_, whole) = get!(&app, format!("{QUERY}?orderby={order}&limit=20000"));
        let whole = feature_ids(&whole);
        let mut paged = Vec::new();
        let mut offset = 1;
        loop {
            let (status, body) = get!(
                &app,
                format!("{QUERY}?orderby={order}&limit=17&offset={offset}")
            );
            assert_eq!(status, 200);
            let ids = feature_ids(&body);
            let n = ids.len();
            paged.extend(ids);
            if n < 17 {
                break;
            }
            offset += 17;
        }
        assert_eq!(paged, whole, "{order}: pages differ from the whole");
        assert_eq!(
            paged.iter().cloned().collect::<BTreeSet<_>>(),
            all,
            "{order}"
        );
        assert_eq!(paged.len(), all.len(), "{order}: duplicates");
        // the same query twice: the same order
        let (_, again) = get!(&app, format!("{QUERY}?orderby={order}&limit=20000"));
        assert_eq!(feature_ids(&again), whole, "{order}: not deterministic");
    }

    // time-asc, as a syncing reader pages: new events with later times and updates of the
    // rows already read arrive between pages; nothing is skipped or repeated.
    let mut seen = Vec::new();
    let (_, body) = get!(&app, format!("{QUERY}?orderby=time-asc&limit=40&offset=1"));
    seen.extend(feature_ids(&body));
    let mut changed = records[0].clone();
    changed.updated = ts("2022-05-01T00:00:00Z");
    changed.magnitude = Some(7.0);
    changed.content_hash = "changed".into();
    let newer: Vec<_> = (0..5)
        .map(|i| rec(&format!("xxq{i}"), &[], "2022-04-09T00:00:00Z", Some(1.0)))
        .collect();
    fill(&store, &[vec![changed], newer].concat(), 10).await;
    let mut offset = 41;
    loop {
        let (_, body) = get!(
            &app,
            format!("{QUERY}?orderby=time-asc&limit=40&offset={offset}")
        );
        let ids = feature_ids(&body);
        let n = ids.len();
        seen.extend(ids);
        if n < 40 {
            break;
        }
        offset += 40;
    }
    assert_eq!(seen.len(), 125);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 125);
});

// Without `limit`, more than 20000 matching events is a 400 (USGS), with it: pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_20000_needs_a_limit() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let records: Vec<_> = (0..20001)
        .map(|i| {
            rec(
                &format!("xxc{i:05}"),
                &[],
                &format!(
                    "2022-06-01T{:02}:{:02}:{:02}Z",
                    i / 3600 % 24,
                    i / 60 % 60,
                    i % 60
                ),
                Some(1.0),
            )
        })
        .collect();
    fill(&store, &records, 5000).await;
    let app = read_app!(state_for(idle_engine(store)));
    let (status, body) = get!(&app, format!("{QUERY}?starttime=2022-01-01"));
    assert_eq!(status, 400, "{body}");
    let msg = body.as_str().unwrap();
    assert!(msg.starts_with("Error 400: Bad Request"), "{msg}");
    assert!(msg.contains("20001") && msg.contains("limit"), "{msg}");
    let (status, body) = get!(&app, format!("{QUERY}?starttime=2022-01-01&offset=2"));
    assert_eq!(status, 200, "20000 left after the offset");
    assert_eq!(body["metadata"]["count"], 20000);
    let (status, body) = get!(&app, format!("{QUERY}?limit=20000&offset=20001"));
    assert_eq!(status, 200);
    assert_eq!(body["metadata"]["count"], 1);
}
