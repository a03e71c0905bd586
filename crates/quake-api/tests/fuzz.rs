//! The parsers under fuzzing (proptest, in the normal test run): arbitrary bytes, and
//! structured mutations of real fixture features (wrong types, huge numbers, deep nesting,
//! NULs, odd unicode, missing keys). Never a panic; a page either is refused as a whole
//! with `InvalidBody`, or accounts for every feature: each one is an event that passes
//! validation, or a rejected record carrying its raw JSON.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::Config;
use quake_api::{
    ApiError, Page, parse_emsc, parse_usgs_any, parse_usgs_collection, parse_usgs_count,
    parse_usgs_feature, validate_event,
};
use serde_json::{Map, Value, json};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/");

fn features(file: &str, n: usize) -> Vec<Value> {
    let text = std::fs::read_to_string(format!("{TESTDATA}{file}")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["features"]
        .as_array()
        .unwrap()
        .iter()
        .take(n)
        .cloned()
        .collect()
}

fn usgs_features() -> Vec<Value> {
    features("usgs_4.5_week_2021-07-22T2023Z.geojson", 8)
}

fn emsc_features() -> Vec<Value> {
    features("emsc_fdsn_json_2025-04-26_turkey-region_minmag2.5.json", 8)
}

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Every feature is accounted for, and every accepted event is valid.
fn check_page(page: &Page, n_features: usize, body: &[u8]) {
    assert_eq!(
        page.events.len() + page.rejected.len(),
        n_features,
        "a feature went missing: {}",
        String::from_utf8_lossy(body)
    );
    for ev in &page.events {
        validate_event(ev).unwrap_or_else(|e| panic!("accepted an invalid event ({e}): {ev:?}"));
        assert!(ev.longitude.is_finite() && ev.latitude.is_finite());
        assert!((-180.0..=180.0).contains(&ev.longitude));
        assert!((-90.0..=90.0).contains(&ev.latitude));
        assert!(ev.magnitude.is_none_or(f64::is_finite));
        assert!(ev.depth_km.is_none_or(f64::is_finite));
        assert!(!ev.id.trim().is_empty());
        assert!(!ev.id.contains('\0'));
        assert!(!ev.place.as_deref().unwrap_or("").contains('\0'));
    }
    for r in &page.rejected {
        assert!(!r.reason.is_empty());
        assert!(
            serde_json::from_str::<&serde_json::value::RawValue>(&r.payload).is_ok()
                || !r.payload.is_empty(),
            "payload kept"
        );
    }
}

/// A refused body says why, briefly.
fn check_refusal(e: &ApiError) {
    let msg = e.to_string();
    assert!(
        matches!(e, ApiError::InvalidBody { .. }),
        "unexpected error kind: {msg}"
    );
    assert!(
        msg.len() < 4096,
        "error message is bounded: {} bytes",
        msg.len()
    );
}

fn all_parsers(body: &[u8]) {
    for parse in [
        parse_usgs_any,
        parse_usgs_collection,
        parse_usgs_feature,
        parse_emsc,
    ] {
        if let Err(e) = parse(body) {
            check_refusal(&e);
        }
    }
    let _ = parse_usgs_count(body);
}

/// Leaf values that break naive parsers.
fn weird_leaf() -> impl Strategy<Value = Value> {
    let odd_strings = prop::sample::select(vec![
        "",
        " ",
        "\0",
        "a\0b",
        "\u{202e}reversed",
        "\u{feff}bom",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "\u{fffd}",
        "ﷺ",
        "e\u{301}",
        "deleted",
        "DELETED",
        " Reviewed ",
        "2025-04-26T12:59:28.0Z",
        "1e400",
        "NaN",
        "-Infinity",
        "null",
        "🌋🌋🌋",
    ]);
    let odd_numbers = prop::sample::select(vec![
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        5e-324,
        -0.0,
        1e15,
        1e16,
        9.007_199_254_740_993e15,
        180.000_000_000_1,
        -90.000_000_1,
        1e300,
        4.2e10,
    ]);
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        odd_numbers.prop_map(|f| json!(f)),
        odd_strings.prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ]
}

fn weird_value() -> impl Strategy<Value = Value> {
    weird_leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

const USGS_PATHS: &[&[&str]] = &[
    &["id"],
    &["type"],
    &["properties"],
    &["geometry"],
    &["geometry", "coordinates"],
    &["geometry", "coordinates", "0"],
    &["geometry", "coordinates", "1"],
    &["geometry", "coordinates", "2"],
    &["properties", "time"],
    &["properties", "updated"],
    &["properties", "mag"],
    &["properties", "place"],
    &["properties", "ids"],
    &["properties", "status"],
    &["properties", "type"],
    &["properties", "net"],
    &["properties", "code"],
    &["properties", "tsunami"],
    &["properties", "sig"],
    &["properties", "felt"],
    &["properties", "alert"],
    &["properties", "url"],
    &["properties", "magType"],
    &["properties", "title"],
];

const EMSC_PATHS: &[&[&str]] = &[
    &["id"],
    &["type"],
    &["properties"],
    &["geometry"],
    &["geometry", "coordinates"],
    &["geometry", "coordinates", "2"],
    &["properties", "unid"],
    &["properties", "time"],
    &["properties", "lastupdate"],
    &["properties", "lat"],
    &["properties", "lon"],
    &["properties", "depth"],
    &["properties", "mag"],
    &["properties", "magtype"],
    &["properties", "flynn_region"],
    &["properties", "evtype"],
    &["properties", "auth"],
    &["properties", "source_id"],
    &["properties", "status"],
];

/// Sets (or with `None` removes) the value at `path`, creating nothing that is not there.
fn mutate(v: &mut Value, path: &[&str], new: Option<Value>) {
    let (last, parents) = path.split_last().unwrap();
    let mut cur = v;
    for p in parents {
        let next = match cur {
            Value::Object(m) => m.get_mut(*p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match (cur, new) {
        (Value::Object(m), Some(n)) => {
            m.insert((*last).to_string(), n);
        }
        (Value::Object(m), None) => {
            m.remove(*last);
        }
        (Value::Array(a), n) => {
            if let Some(i) = last.parse::<usize>().ok().filter(|i| *i < a.len()) {
                match n {
                    Some(n) => a[i] = n,
                    None => {
                        a.remove(i);
                    }
                }
            }
        }
        _ => {}
    }
}

type Mutation = (usize, usize, Option<Value>);

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(
        (
            0usize..8,
            0usize..64,
            prop::option::weighted(0.9, weird_value()),
        ),
        1..5,
    )
}

fn collection(features: &[Value], emsc: bool) -> Vec<u8> {
    let body = if emsc {
        json!({"type": "FeatureCollection", "metadata": {"totalCount": features.len()}, "features": features})
    } else {
        json!({"type": "FeatureCollection", "metadata": {"generated": 1_626_985_396_000_i64, "count": features.len()}, "features": features})
    };
    serde_json::to_vec(&body).unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        all_parsers(&body);
    }

    #[test]
    fn arbitrary_text_never_panics(body in "\\PC{0,300}") {
        all_parsers(body.as_bytes());
    }

    /// JSON-looking noise: an envelope whose parts are arbitrary values.
    #[test]
    fn arbitrary_envelopes_never_panic(kind in weird_value(), meta in weird_value(), feats in weird_value()) {
        for t in [kind.clone(), json!("FeatureCollection"), json!("Feature")] {
            let body = serde_json::to_vec(&json!({"type": t, "metadata": meta, "features": feats})).unwrap();
            all_parsers(&body);
            if let (Ok(page), Some(n)) = (parse_usgs_collection(&body), feats.as_array().map(Vec::len)) {
                check_page(&page, n, &body);
            }
        }
    }

    #[test]
    fn mutated_usgs_features_are_accepted_valid_or_rejected(muts in mutations()) {
        let mut feats = usgs_features();
        for (i, p, new) in muts {
            let i = i % feats.len();
            mutate(&mut feats[i], USGS_PATHS[p % USGS_PATHS.len()], new);
        }
        let body = collection(&feats, false);
        match parse_usgs_collection(&body) {
            Ok(page) => check_page(&page, feats.len(), &body),
            Err(e) => panic!("a bad record must cost only itself, not the page: {e}"),
        }
        let _ = parse_usgs_any(&body).unwrap();
        // Each feature alone, as the `eventid=` single-Feature answer.
        for f in &feats {
            let one = serde_json::to_vec(f).unwrap();
            if let Ok(page) = parse_usgs_feature(&one) {
                check_page(&page, 1, &one);
            }
        }
    }

    #[test]
    fn mutated_emsc_features_are_accepted_valid_or_rejected(muts in mutations()) {
        let mut feats = emsc_features();
        for (i, p, new) in muts {
            let i = i % feats.len();
            mutate(&mut feats[i], EMSC_PATHS[p % EMSC_PATHS.len()], new);
        }
        let body = collection(&feats, true);
        match parse_emsc(&body) {
            Ok(page) => check_page(&page, feats.len(), &body),
            Err(e) => panic!("a bad record must cost only itself, not the page: {e}"),
        }
    }

    /// Text-level damage to a real page: a byte range cut out, or junk spliced in.
    #[test]
    fn damaged_real_pages_never_panic(
        at in 0usize..100_000,
        len in 0usize..200,
        junk in prop::collection::vec(any::<u8>(), 0..16),
        emsc in any::<bool>(),
    ) {
        let feats = if emsc { emsc_features() } else { usgs_features() };
        let mut body = collection(&feats, emsc);
        let at = at % body.len();
        let end = (at + len).min(body.len());
        body.splice(at..end, junk);
        all_parsers(&body);
        let parsed = if emsc { parse_emsc(&body) } else { parse_usgs_collection(&body) };
        if let Ok(page) = parsed {
            // Whatever survived the damage is still accounted for and valid.
            for ev in &page.events {
                validate_event(ev).unwrap();
            }
        }
    }
}

/// Nesting far beyond any real document, as a whole body and inside one feature: refused
/// (or that one feature rejected), never a stack overflow.
#[test]
fn deep_nesting_is_refused_without_overflow() {
    for depth in [200, 10_000, 200_000] {
        let deep = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        all_parsers(deep.as_bytes());
        let deep_obj = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
        all_parsers(deep_obj.as_bytes());

        let mut f = usgs_features().remove(0);
        let text = serde_json::to_string(&f).unwrap();
        f["properties"]["place"] = json!("x");
        let inner = text.replacen(
            "\"properties\":{",
            &format!("\"properties\":{{\"deep\":{deep},"),
            1,
        );
        let body = format!(
            r#"{{"type":"FeatureCollection","metadata":{{"generated":1}},"features":[{inner}]}}"#
        );
        match parse_usgs_collection(body.as_bytes()) {
            Ok(page) => check_page(&page, 1, body.as_bytes()),
            Err(e) => check_refusal(&e),
        }
    }
}

/// Lone surrogates, overlong numbers and NULs in a feature's text cost that feature only.
#[test]
fn lexical_oddities_in_one_feature() {
    let good = serde_json::to_string(&usgs_features()[1]).unwrap();
    let first = serde_json::to_string(&usgs_features()[0]).unwrap();
    for (from, to) in [
        ("\"place\":\"", "\"place\":\"\\ud800"),
        ("\"place\":\"", "\"place\":\"\\u0000"),
        ("\"mag\":", "\"mag\":1e400,\"x\":"),
        ("\"mag\":", "\"mag\":-1e400,\"x\":"),
        ("\"time\":", "\"time\":99999999999999999999999,\"y\":"),
        ("\"time\":", "\"time\":1e300,\"y\":"),
        ("\"updated\":", "\"updated\":-9223372036854775808,\"y\":"),
        ("\"id\":\"", "\"id\":\"\\u0000"),
        ("\"id\":\"", "\"id\":\"   \",\"z\":\""),
    ] {
        assert!(first.contains(from), "{from}");
        let bad = first.replacen(from, to, 1);
        let body = format!(
            r#"{{"type":"FeatureCollection","metadata":{{"generated":1}},"features":[{bad},{good}]}}"#
        );
        match parse_usgs_collection(body.as_bytes()) {
            Ok(page) => {
                check_page(&page, 2, body.as_bytes());
                assert!(!page.events.is_empty(), "{to}: the good feature survives");
            }
            // A number serde_json cannot represent fails the lexer for the whole body.
            Err(e) => check_refusal(&e),
        }
    }
}
