//! Every endpoint's query parameters fuzzed (proptest strategies): any value of any
//! parameter gets a 2xx or a 4xx, never a 5xx, never a hang; 4xx bodies are JSON
//! `{"error": ...}`. Both backends (the read API's SQL differs between them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use quake_store::testing::TestDb;

/// `(method, path, parameters)`: the surface. Every one must exist: an endpoint answering
/// 404 fails the test (it would otherwise go unfuzzed without anyone noticing).
const ENDPOINTS: &[(&str, &str, &[&str])] = &[
    ("GET", "/sync-runs", &["limit"]),
    ("POST", "/sync", &["wait"]),
    (
        "GET",
        "/fdsnws/event/1/query",
        &[
            "format",
            "starttime",
            "endtime",
            "updatedafter",
            "minmagnitude",
            "maxmagnitude",
            "minlatitude",
            "maxlatitude",
            "minlongitude",
            "maxlongitude",
            "eventid",
            "orderby",
            "limit",
            "offset",
            "includedeleted",
            "latitude",
            "longitude",
            "maxradius",
            "maxradiuskm",
            "mindepth",
            "magnitudetype",
            "eventtype",
            "reviewstatus",
            "mingap",
            "contributor",
        ],
    ),
    (
        "GET",
        "/fdsnws/event/1/count",
        &["starttime", "minmagnitude", "limit", "offset", "eventid"],
    ),
    ("GET", "/health", &["x"]),
    ("GET", "/sync-status", &["verbose"]),
    ("GET", "/metrics", &["name"]),
    ("GET", "/", &["page"]),
];

/// Values that break naive parameter handling.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,40}",
        "[0-9]{1,30}",
        "-?[0-9]{1,20}(\\.[0-9]{0,20})?(e-?[0-9]{1,4})?",
        prop::sample::select(vec![
            "",
            " ",
            "0",
            "-0",
            "1",
            "-1",
            "true",
            "false",
            "TRUE",
            "yes",
            "1e309",
            "-1e309",
            "NaN",
            "inf",
            "-inf",
            "Infinity",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775809",
            "18446744073709551616",
            "20000",
            "20001",
            "100",
            "101",
            "1970-01-01",
            "0000-01-01T00:00:00",
            "9999-12-31T23:59:59",
            "+275760-09-13",
            "-000001-01-01T00:00:00Z",
            "2021-02-30T00:00:00",
            "2021-07-20T25:61:61",
            "2021-07-20T14:23:00.123456789123Z",
            "2021-07-20T14:23:00+25:00",
            "geojson",
            "xml",
            "text",
            "time",
            "time-asc",
            "magnitude",
            "magnitude-asc",
            "\0",
            "a\0b",
            "'; DROP TABLE earthquakes; --",
            "%",
            "%00",
            "%zz",
            "\u{202e}",
            "𝔘",
            "ci3144585",
            "%25%32%35",
            "[]",
            "{}",
            "null",
        ])
        .prop_map(str::to_string),
        "[a-z]{0,8}".prop_map(|s| "x".repeat(4000) + &s),
    ]
}

/// Encodes a value for a query string, either properly or raw (as a careless client
/// would: unencoded bytes that are still a valid request target).
fn encode(v: &str, raw: bool) -> String {
    if raw {
        v.chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-._~!$'()*+,;=:@/?".contains(*c))
            .collect()
    } else {
        url::form_urlencoded::byte_serialize(v.as_bytes()).collect()
    }
}

async fn fuzz(db: TestDb, cases: u32) {
    let up = upstream(200, Duration::ZERO).await;
    let engine = engine(db.store().await, &up);
    engine
        .sync_once(sync_engine::Trigger::Cli)
        .await
        .expect("a first sync so the catalogue is not empty");
    let app = app!(state(engine.clone(), Some(TOKEN)));

    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (value(), value(), any::<bool>(), 0usize..3);
    let mut answered = std::collections::BTreeMap::<String, Vec<u16>>::new();
    for (method, path, params) in ENDPOINTS {
        // Only endpoints that exist are fuzzed.
        let probe = if *method == "GET" {
            get(path)
        } else {
            post(path, Some(TOKEN))
        };
        let s = actix_web::test::call_service(&app, probe.to_request())
            .await
            .status()
            .as_u16();
        assert_ne!(
            s, 404,
            "{method} {path} is not mounted: it cannot be fuzzed"
        );
        if *method == "POST" {
            idle(&engine).await;
        }
        for i in 0..cases {
            let (a, b, raw, extra) = strategy.new_tree(&mut runner).unwrap().current();
            let p = params[i as usize % params.len()];
            let q = params[(i as usize * 7 + 3) % params.len()];
            let mut query = format!("{p}={}", encode(&a, raw));
            if extra > 0 {
                query.push_str(&format!("&{q}={}", encode(&b, raw)));
            }
            if extra > 1 {
                // A repeated parameter and an unknown one.
                query.push_str(&format!(
                    "&{p}={}&zz{}=1",
                    encode(&b, false),
                    encode(&a, false)
                ));
            }
            let uri = format!("{path}?{query}");
            let req = if *method == "GET" {
                get(&uri)
            } else {
                post(&uri, Some(TOKEN))
            };
            let res = tokio::time::timeout(
                Duration::from_secs(20),
                actix_web::test::call_service(&app, req.to_request()),
            )
            .await
            .unwrap_or_else(|_| panic!("{method} {uri}: no answer within 20 s"));
            let status = res.status().as_u16();
            let body = actix_web::test::read_body(res).await;
            let text = String::from_utf8_lossy(&body);
            assert!(
                (200..300).contains(&status) || (400..500).contains(&status),
                "{method} {uri} answered {status}: {text}"
            );
            if (400..500).contains(&status) && path.starts_with("/fdsnws/") {
                // The FDSN service's own error document (fdsnws-event 1.2).
                assert!(
                    text.starts_with(&format!("Error {status}: "))
                        && text.contains("Service version"),
                    "{method} {uri}: {text}"
                );
            } else if (400..500).contains(&status) {
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .unwrap_or_else(|e| panic!("{method} {uri}: {status} not JSON ({e}): {text}"));
                // 409 is the spec's `{"status":"already_running","run_id":N}`.
                let shaped = if status == 409 {
                    v["status"] == "already_running"
                } else {
                    v["error"].is_string()
                };
                assert!(shaped, "{method} {uri}: {text}");
            }
            if *method == "POST" && (status == 200 || status == 202) {
                idle(&engine).await;
            }
            answered.entry(path.to_string()).or_default().push(status);
        }
        if *method == "POST" {
            idle(&engine).await;
        }
    }
    assert_eq!(
        answered.len(),
        ENDPOINTS.len(),
        "every endpoint was fuzzed: {:?}",
        answered.keys()
    );
    for (path, statuses) in &answered {
        let ok = statuses.iter().filter(|s| **s < 300).count();
        eprintln!(
            "{path}: {} requests, {ok} 2xx, {} 4xx",
            statuses.len(),
            statuses.len() - ok
        );
    }
}

#[actix_web::test]
async fn query_parameters_never_cause_a_5xx_sqlite() {
    fuzz(TestDb::sqlite(), 300).await;
}

#[actix_web::test]
async fn query_parameters_never_cause_a_5xx_postgres() {
    let Some(db) = TestDb::postgres("fuzz_params::postgres").await else {
        return;
    };
    fuzz(db, 300).await;
}
