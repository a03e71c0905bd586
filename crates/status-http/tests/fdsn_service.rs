//! The FDSN event service over real USGS events (issue 16), on both backends: the GeoJSON
//! Feature equals the upstream's, every filter selects what the stored columns say (radius
//! search across the antimeridian and at the poles included), streamed answers keep their
//! order across chunks, the discovery documents, and a row stored before the lossless
//! migration getting its properties from its next revision.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod read_support;

use std::collections::BTreeSet;

use quake_store::great_circle_deg;
use quake_store::testing::TestDb;
use quake_store::{Earthquake, Store, both_backends};
use read_support::*;
use serde_json::Value;
use status_http::read_api::CHUNK;
use sync_engine::policy::decide;

const WEEK: &str = "usgs_all_week_2021-07-20T1423Z.geojson";

async fn rows(store: &Store) -> Vec<Earthquake> {
    store.all_events().await.unwrap()
}

/// Synthetic events on both sides of the antimeridian and around both poles.
fn edge_points() -> Vec<quake_store::EventRecord> {
    let mut out = Vec::new();
    let mut put = |lat: f64, lon: f64| {
        let n = out.len();
        let mut r = rec(
            &format!("xxedge{n:03}"),
            &[],
            "2021-07-18T00:00:00Z",
            Some(2.0),
        );
        r.latitude = lat;
        r.longitude = lon;
        out.push(r.with_usgs_properties());
    };
    for lat in [-1.0, 0.0, 0.7] {
        for lon in [177.0, 178.6, 179.9, 180.0, -180.0, -179.9, -178.6, -177.0] {
            put(lat, lon);
        }
    }
    for lat in [85.5, 87.5, 89.2, 90.0] {
        for lon in [-170.0, -95.0, 0.0, 45.0, 170.0] {
            put(lat, lon);
        }
    }
    for lon in [-120.0, 10.0, 100.0] {
        put(-89.4, lon);
        put(-87.0, lon);
    }
    out
}

async fn week_and_edges(db: &TestDb) -> (Store, Vec<Earthquake>) {
    let store = db.store().await;
    fill(&store, &fixture_records(WEEK), 1000).await;
    fill(&store, &edge_points(), 100).await;
    let all = rows(&store).await;
    (store, all)
}

fn contributes(r: &Earthquake, net: &str) -> bool {
    match &r.sources {
        Some(s) => s.contains(&format!(",{net},")),
        None => r.net.as_deref() == Some(net),
    }
}

/// The ids a GeoJSON query answers (all of them, in order); no data is none.
macro_rules! ids {
    ($app:expr, $q:expr) => {{
        let (status, body) = get!($app, format!("{QUERY}?format=geojson&{}", $q));
        if status == 204 {
            Vec::new()
        } else {
            assert_eq!(status, 200, "{}: {body}", $q);
            feature_ids(&body)
        }
    }};
}

// Every served Feature is the upstream's: the same keys in the same order, the same JSON
// types and values, `detail` pointing at this service.
both_backends!(geojson_features_are_the_upstreams, async |db: TestDb| {
    let store = db.store().await;
    fill(&store, &fixture_records(WEEK), 1000).await;
    let upstream: Value = serde_json::from_slice(&fixture(WEEK)).unwrap();
    let upstream: std::collections::HashMap<&str, &Value> = upstream["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap(), f))
        .collect();
    let app = read_app!(state_for(idle_engine(store.clone())));
    let (status, body) = get!(
        &app,
        format!("{QUERY}?format=geojson&starttime=2000-01-01&limit=20000")
    );
    assert_eq!(status, 200);
    let served = body["features"].as_array().unwrap();
    assert_eq!(served.len(), upstream.len());
    for f in served {
        let id = f["id"].as_str().unwrap();
        let up = upstream[id];
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(f), keys(up), "{id}");
        let (mut mine, mut theirs) = (f["properties"].clone(), up["properties"].clone());
        let detail = mine.as_object_mut().unwrap().remove("detail").unwrap();
        theirs.as_object_mut().unwrap().remove("detail");
        assert!(
            detail
                .as_str()
                .unwrap()
                .ends_with(&format!("{QUERY}?eventid={id}&format=geojson")),
            "{detail}"
        );
        assert_eq!(mine, theirs, "{id}: properties");
        assert_eq!(f["geometry"], up["geometry"], "{id}: geometry");
    }
    // The raw text too: the properties' key order is the upstream's.
    let res = actix_web::test::call_service(
        &app,
        actix_web::test::TestRequest::get()
            .uri(&format!("{QUERY}?format=geojson&eventid=nc73596081"))
            .to_request(),
    )
    .await;
    let raw = String::from_utf8(actix_web::test::read_body(res).await.to_vec()).unwrap();
    let mut at = raw.find("\"properties\":{").unwrap();
    for key in [
        "mag", "place", "time", "updated", "tz", "url", "detail", "felt", "cdi", "mmi", "alert",
        "status", "tsunami", "sig", "net", "code", "ids", "sources", "types", "nst", "dmin", "rms",
        "gap", "magType", "type", "title", "products",
    ] {
        let needle = format!("\"{key}\":");
        at += raw[at..]
            .find(&needle)
            .unwrap_or_else(|| panic!("{key} out of order in {raw}"));
    }
});

// Each filter selects exactly the live rows its column says, and the radius search finds
// what the great-circle distance says, across the antimeridian and around both poles.
both_backends!(filters_select_what_the_columns_say, async |db: TestDb| {
    let (store, all) = week_and_edges(&db).await;
    let live: Vec<&Earthquake> = all
        .iter()
        .filter(|r| r.merged_into.is_none() && r.status != "deleted")
        .collect();
    let app = read_app!(state_for(idle_engine(store.clone())));
    let lower = |s: &Option<String>| s.clone().unwrap_or_default().to_lowercase();
    let within = |lat: f64, lon: f64, lo: f64, hi: f64| {
        move |r: &Earthquake| {
            let d = great_circle_deg(lat, lon, r.latitude, r.longitude);
            lo <= d && d <= hi
        }
    };
    let km = status_http::read_api::params::KM_PER_DEGREE;
    type Pred<'a> = Box<dyn Fn(&Earthquake) -> bool + 'a>;
    let cases: Vec<(&str, Pred<'_>)> = vec![
        (
            "mindepth=10&maxdepth=50",
            Box::new(|r| r.depth_km.is_some_and(|d| (10.0..=50.0).contains(&d))),
        ),
        (
            "maxdepth=-1",
            Box::new(|r| r.depth_km.is_some_and(|d| d <= -1.0)),
        ),
        (
            "magnitudetype=ML",
            Box::new(move |r| lower(&r.mag_type) == "ml"),
        ),
        (
            "magtype=mw*",
            Box::new(move |r| lower(&r.mag_type).starts_with("mw")),
        ),
        (
            "magnitudetype=mb_lg",
            Box::new(move |r| lower(&r.mag_type) == "mb_lg"),
        ),
        (
            "eventtype=quarry%20blast,Explosion",
            Box::new(move |r| {
                ["quarry blast", "explosion"].contains(&lower(&r.event_type).as_str())
            }),
        ),
        (
            "eventtype=*explosion",
            Box::new(move |r| lower(&r.event_type).ends_with("explosion")),
        ),
        (
            "eventtype=ice?quake",
            Box::new(move |r| lower(&r.event_type) == "ice quake"),
        ),
        (
            "reviewstatus=reviewed",
            Box::new(|r| r.status == "reviewed"),
        ),
        (
            "reviewstatus=automatic",
            Box::new(|r| r.status == "automatic"),
        ),
        ("reviewstatus=all", Box::new(|_| true)),
        ("minfelt=3", Box::new(|r| r.felt.is_some_and(|f| f >= 3))),
        (
            "alertlevel=green",
            Box::new(|r| r.alert.as_deref() == Some("green")),
        ),
        (
            "mincdi=2&maxcdi=3.5",
            Box::new(|r| r.cdi.is_some_and(|x| (2.0..=3.5).contains(&x))),
        ),
        ("minmmi=3", Box::new(|r| r.mmi.is_some_and(|x| x >= 3.0))),
        (
            "mingap=100&maxgap=200",
            Box::new(|r| r.gap.is_some_and(|x| (100.0..=200.0).contains(&x))),
        ),
        (
            "minsig=100&maxsig=300",
            Box::new(|r| r.sig.is_some_and(|x| (100..=300).contains(&x))),
        ),
        ("catalog=ci", Box::new(|r| r.net.as_deref() == Some("ci"))),
        // a network in `sources`, or the `net` of a row without them (the synthetic ones)
        ("contributor=us", Box::new(|r| contributes(r, "us"))),
        // a network in `sources`, or the `net` of a row without them (the synthetic ones)
        ("contributor=xx", Box::new(|r| contributes(r, "xx"))),
        // radius search
        (
            "latitude=0&longitude=179.5&maxradius=1.5",
            Box::new(within(0.0, 179.5, 0.0, 1.5)),
        ),
        (
            "lat=0.3&lon=-179.8&minradius=0.5&maxradius=2.5",
            Box::new(within(0.3, -179.8, 0.5, 2.5)),
        ),
        (
            "lat=89&lon=0&maxradius=3",
            Box::new(within(89.0, 0.0, 0.0, 3.0)),
        ),
        (
            "lat=86&lon=-100&maxradius=6",
            Box::new(within(86.0, -100.0, 0.0, 6.0)),
        ),
        (
            "lat=-88&lon=-170&maxradius=2.5",
            Box::new(within(-88.0, -170.0, 0.0, 2.5)),
        ),
        (
            "lat=90&lon=0&maxradius=2",
            Box::new(within(90.0, 0.0, 0.0, 2.0)),
        ),
        (
            "latitude=38&longitude=-118&maxradiuskm=300",
            Box::new(within(38.0, -118.0, 0.0, 300.0 / km)),
        ),
        (
            "latitude=38&longitude=-118&minradius=1&maxradius=2",
            Box::new(within(38.0, -118.0, 1.0, 2.0)),
        ),
        (
            "latitude=19.4&longitude=-155.3&maxradius=0.5&mindepth=5",
            Box::new(|r| within(19.4, -155.3, 0.0, 0.5)(r) && r.depth_km.is_some_and(|d| d >= 5.0)),
        ),
        ("latitude=10&longitude=10&maxradius=180", Box::new(|_| true)),
        (
            "latitude=10&longitude=10&minradius=100",
            Box::new(within(10.0, 10.0, 100.0, 180.0)),
        ),
    ];
    for (q, pred) in &cases {
        let want: BTreeSet<&str> = live
            .iter()
            .filter(|r| pred(r))
            .map(|r| r.id.as_str())
            .collect();
        let got = ids!(&app, format!("starttime=2000-01-01&limit=20000&{q}"));
        let got: BTreeSet<&str> = got.iter().map(String::as_str).collect();
        assert_eq!(got, want, "{q}");
        // and count says the same
        let (_, body) = get!(
            &app,
            format!("/fdsnws/event/1/count?format=geojson&starttime=2000-01-01&{q}")
        );
        assert_eq!(body["count"], want.len(), "count {q}");
    }
    // The cases are not vacuous.
    for q in [
        "mindepth=10&maxdepth=50",
        "eventtype=*explosion",
        "mincdi=2&maxcdi=3.5",
        "minmmi=3",
        "mingap=100&maxgap=200",
        "contributor=us",
        "latitude=0&longitude=179.5&maxradius=1.5",
        "lat=89&lon=0&maxradius=3",
        "lat=-88&lon=-170&maxradius=2.5",
        "latitude=38&longitude=-118&maxradiuskm=300",
        "alertlevel=green",
        "minfelt=3",
    ] {
        assert!(
            !ids!(&app, format!("starttime=2000-01-01&limit=20000&{q}")).is_empty(),
            "{q} finds nothing"
        );
    }
    let spans = ids!(
        &app,
        "starttime=2000-01-01&latitude=0&longitude=179.5&maxradius=1.5"
    );
    let lons: Vec<f64> = all
        .iter()
        .filter(|r| spans.contains(&r.id))
        .map(|r| r.longitude)
        .collect();
    assert!(
        lons.iter().any(|l| *l > 0.0) && lons.iter().any(|l| *l < 0.0),
        "both sides of the antimeridian: {lons:?}"
    );
});

// A streamed answer (more rows than one chunk) keeps its order, repeats nothing and skips
// nothing, in every order and from any offset; every format carries the same events.
both_backends!(streamed_answers_keep_their_order, async |db: TestDb| {
    let (store, _) = week_and_edges(&db).await;
    let mut nulls = Vec::new();
    for i in 0..5 {
        nulls.push(
            rec(&format!("xxnomag{i}"), &[], "2021-07-19T00:00:00Z", None).with_usgs_properties(),
        );
    }
    fill(&store, &nulls, 10).await;
    let all = rows(&store).await;
    let live: Vec<&Earthquake> = all
        .iter()
        .filter(|r| r.merged_into.is_none() && r.status != "deleted")
        .collect();
    assert!(live.len() as i64 > 2 * CHUNK);
    let app = read_app!(state_for(idle_engine(store.clone())));
    let sorted = |order: &str| -> Vec<String> {
        let mut v = live.clone();
        let mag = |r: &Earthquake| r.magnitude.unwrap_or(f64::NEG_INFINITY);
        match order {
            "time" => v.sort_by(|a, b| (b.time, &b.id).cmp(&(a.time, &a.id))),
            "time-asc" => v.sort_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id))),
            "magnitude" => v.sort_by(|a, b| mag(b).total_cmp(&mag(a)).then(b.id.cmp(&a.id))),
            _ => v.sort_by(|a, b| mag(a).total_cmp(&mag(b)).then(a.id.cmp(&b.id))),
        }
        v.into_iter().map(|r| r.id.clone()).collect()
    };
    for order in ["time", "time-asc", "magnitude", "magnitude-asc"] {
        let want = sorted(order);
        let got = ids!(
            &app,
            format!("orderby={order}&starttime=2000-01-01&limit=20000")
        );
        assert_eq!(got, want, "{order}");
        let got = ids!(
            &app,
            format!("orderby={order}&starttime=2000-01-01&limit=1200&offset=1500")
        );
        assert_eq!(got, want[1499..2699], "{order} from offset 1500");
        let (_, body) = get!(
            &app,
            format!(
                "{QUERY}?format=geojson&orderby={order}&starttime=2000-01-01&limit=1200&offset=1500"
            )
        );
        assert_eq!(body["metadata"]["count"], 1200);
    }
    // Without limit, more than one chunk: metadata.count is the whole answer.
    let (_, body) = get!(&app, format!("{QUERY}?format=geojson&starttime=2000-01-01"));
    assert_eq!(body["metadata"]["count"], live.len());
    assert_eq!(feature_ids(&body).len(), live.len());
    // The other formats carry the same events, in the same order.
    let want = sorted("time");
    let (_, _, body) = text!(&app, format!("{QUERY}?format=text&starttime=2000-01-01"));
    let mut lines = body.lines();
    assert_eq!(
        format!("{}\n", lines.next().unwrap()),
        status_http::read_api::render::TEXT_HEADER
    );
    let got: Vec<&str> = lines.map(|l| l.split('|').next().unwrap()).collect();
    assert_eq!(got, want);
    let (_, _, body) = text!(&app, format!("{QUERY}?format=csv&starttime=2000-01-01"));
    assert!(body.starts_with(status_http::read_api::render::CSV_HEADER));
    assert_eq!(body.lines().count(), want.len() + 1);
    for format in ["xml", "quakeml"] {
        let (status, _, body) = text!(
            &app,
            format!("{QUERY}?format={format}&starttime=2000-01-01")
        );
        assert_eq!(status, 200);
        assert!(body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<q:quakeml"));
        assert!(body.ends_with("</eventParameters>\n</q:quakeml>\n"));
        let got: Vec<&str> = body
            .split("<event publicID=\"quakeml:quakesync/event/")
            .skip(1)
            .map(|s| &s[..s.find('"').unwrap()])
            .collect();
        assert_eq!(got, want, "{format}");
    }
    // No format: QuakeML, as the FDSN spec says.
    let res = actix_web::test::call_service(
        &app,
        actix_web::test::TestRequest::get()
            .uri(&format!("{QUERY}?limit=1"))
            .to_request(),
    )
    .await;
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "application/xml"
    );
});

// What one event's QuakeML, text and CSV hold.
both_backends!(one_event_in_each_format, async |db: TestDb| {
    let store = db.store().await;
    fill(&store, &fixture_records(WEEK), 1000).await;
    let row = rows(&store)
        .await
        .into_iter()
        .find(|r| r.id == "nc73596081")
        .unwrap();
    let props: Value = serde_json::from_str(row.properties.as_deref().unwrap()).unwrap();
    let app = read_app!(state_for(idle_engine(store.clone())));
    let (_, _, xml) = text!(&app, format!("{QUERY}?eventid=nc73596081&format=xml"));
    for part in [
        "<event publicID=\"quakeml:quakesync/event/nc73596081\">".to_string(),
        format!(
            "<description><text>{}</text><type>region name</type></description>",
            row.place.clone().unwrap()
        ),
        "<preferredOriginID>quakeml:quakesync/origin/nc73596081</preferredOriginID>".into(),
        "<type>earthquake</type>".into(),
        format!(
            "<time><value>{}</value></time>",
            row.time
                .0
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        ),
        format!("<latitude><value>{}</value></latitude>", row.latitude),
        format!("<usedStationCount>{}</usedStationCount>", props["nst"]),
        format!("<standardError>{}</standardError>", props["rms"]),
        format!("<azimuthalGap>{}</azimuthalGap>", props["gap"]),
        format!("<minimumDistance>{}</minimumDistance>", props["dmin"]),
        format!(
            "<mag><value>{}</value></mag><type>{}</type>",
            row.magnitude.unwrap(),
            row.mag_type.clone().unwrap()
        ),
        format!("<agencyID>{}</agencyID>", row.net.clone().unwrap()),
    ] {
        assert!(xml.contains(&part), "{part} not in {xml}");
    }
    let (mode, status) = if row.status == "reviewed" {
        ("manual", "reviewed")
    } else {
        ("automatic", "preliminary")
    };
    assert!(xml.contains(&format!(
        "<evaluationMode>{mode}</evaluationMode><evaluationStatus>{status}</evaluationStatus>"
    )));
    let (_, _, text) = text!(&app, format!("{QUERY}?eventid=nc73596081&format=text"));
    let line = text.lines().nth(1).unwrap();
    let cols: Vec<&str> = line.split('|').collect();
    assert_eq!(cols.len(), 14, "{line}");
    let net = row.net.clone().unwrap();
    assert_eq!(cols[0], "nc73596081");
    assert_eq!(cols[2].parse::<f64>().unwrap(), row.latitude);
    assert_eq!(cols[4].parse::<f64>().ok(), row.depth_km);
    assert_eq!(
        [cols[5], cols[6], cols[7], cols[8]],
        [net.as_str(), net.as_str(), net.as_str(), "nc73596081"]
    );
    assert_eq!(cols[10].parse::<f64>().ok(), row.magnitude);
    assert_eq!(cols[12], row.place.clone().unwrap());
    assert_eq!(cols[13], "earthquake");
    let (_, _, csv) = text!(&app, format!("{QUERY}?eventid=nc73596081&format=csv"));
    let line = csv.lines().nth(1).unwrap();
    assert!(
        line.contains(&format!(",{},{},nc73596081,", props["rms"], net)),
        "{line}"
    );
    assert!(
        line.contains(&format!("\"{}\"", row.place.clone().unwrap()))
            || !row.place.clone().unwrap().contains(','),
        "{line}"
    );
});

// version, application.wadl, catalogs, contributors; no station or dataselect service.
both_backends!(discovery_documents, async |db: TestDb| {
    let (store, all) = week_and_edges(&db).await;
    let app = read_app!(state_for(idle_engine(store.clone())));
    assert_eq!(
        text!(&app, format!("/fdsnws/{}", "event/1/version")),
        (200, "text/plain; charset=utf-8".into(), "1.2.0\n".into())
    );
    let (status, ct, wadl) = text!(&app, format!("/fdsnws/{}", "event/1/application.wadl"));
    assert_eq!((status, ct.as_str()), (200, "application/xml"));
    assert!(
        wadl.contains("<resources base=\"http://localhost:8080/fdsnws/event/1/\">"),
        "{wadl}"
    );
    for p in status_http::read_api::params::PARAMS.iter() {
        assert!(
            wadl.contains(&format!(
                "<param name=\"{}\" style=\"query\" type=\"{}\" required=\"false\">",
                p.name, p.xs_type
            )),
            "{} missing from the WADL",
            p.name
        );
    }
    let nets: BTreeSet<String> = all.iter().filter_map(|r| r.net.clone()).collect();
    let (_, _, catalogs) = text!(&app, format!("/fdsnws/{}", "event/1/catalogs"));
    let want: String = nets
        .iter()
        .map(|n| format!("  <Catalog>{n}</Catalog>\n"))
        .collect();
    assert_eq!(
        catalogs,
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Catalogs>\n{want}</Catalogs>\n")
    );
    let (_, _, contributors) = text!(&app, format!("/fdsnws/{}", "event/1/contributors"));
    assert!(
        contributors.contains("<Contributors>\n")
            && contributors.contains("<Contributor>us</Contributor>")
    );
    for path in [
        "station/1/application.wadl",
        "dataselect/1/application.wadl",
        "station/1/query",
        "dataselect/1/version",
    ] {
        assert_eq!(text!(&app, format!("/fdsnws/{path}")).0, 404, "{path}");
    }
});

// A row stored before the lossless migration (no properties) is served from its columns,
// with nothing made up; the upstream's next sending of it (same `updated`) is a revision
// that stores its properties.
both_backends!(
    a_row_without_properties_is_filled_by_its_next_revision,
    async |db: TestDb| {
        let store = db.store().await;
        let legacy = rec("xxlegacy", &[], "2021-07-19T10:00:00Z", Some(3.3));
        fill(&store, std::slice::from_ref(&legacy), 10).await;
        let app = read_app!(state_for(idle_engine(store.clone())));
        let (_, body) = get!(&app, format!("{QUERY}?eventid=xxlegacy"));
        let p = &body["properties"];
        for key in ["tz", "cdi", "mmi", "nst", "dmin", "rms", "gap"] {
            assert_eq!(p[key], Value::Null, "{key}");
        }
        assert_eq!(p["types"], "");
        let revised = legacy.with_usgs_properties();
        let r = store
            .apply_page(
                quake_store::PageWrite::new(std::slice::from_ref(&revised)),
                decide,
            )
            .await
            .unwrap();
        assert_eq!(r.outcomes[0].1, quake_store::Outcome::Updated);
        let (_, body) = get!(&app, format!("{QUERY}?eventid=xxlegacy"));
        assert_eq!(body["properties"]["nst"], 12);
        assert_eq!(body["properties"]["types"], ",origin,");
    }
);
