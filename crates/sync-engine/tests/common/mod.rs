//! A mock upstream for the engine's tests: a real FDSN event service over a fixture
//! (`starttime`, `endtime`, `updatedafter`, `orderby`, `limit`, 1-based `offset`,
//! `includedeleted`), and a summary feed serving a file as is. Nothing leaves loopback.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub fn testdata(name: &str) -> String {
    format!("{}/../../testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn read_fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(testdata(name)).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// A catalogue the FDSN mock serves: features plus the `generated` it reports.
#[derive(Clone)]
pub struct Catalogue {
    pub features: Vec<Value>,
    pub generated_ms: i64,
}

impl Catalogue {
    pub fn from_fixture(name: &str) -> Catalogue {
        let v = read_fixture(name);
        Catalogue {
            features: v["features"].as_array().cloned().unwrap_or_default(),
            generated_ms: v["metadata"]["generated"].as_i64().unwrap_or(0),
        }
    }
}

fn prop_ms(f: &Value, key: &str) -> i64 {
    f["properties"][key].as_i64().unwrap_or(0)
}

fn parse_fdsn_time(s: &str) -> i64 {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| t.and_utc().timestamp_millis())
        .or_else(|_| DateTime::parse_from_rfc3339(s).map(|t| t.timestamp_millis()))
        .unwrap_or_else(|_| panic!("mock upstream: bad time {s}"))
}

/// The FDSN event service semantics this project relies on.
#[derive(Clone)]
pub struct FdsnMock {
    pub catalogue: Arc<Mutex<Catalogue>>,
    /// Extra delay before answering the request with this offset (slow pages).
    pub delay_at_offset: Arc<Mutex<HashMap<u64, Duration>>>,
}

impl FdsnMock {
    pub fn new(c: Catalogue) -> FdsnMock {
        FdsnMock {
            catalogue: Arc::new(Mutex::new(c)),
            delay_at_offset: Arc::default(),
        }
    }

    pub fn set(&self, c: Catalogue) {
        *self.catalogue.lock().unwrap() = c;
    }
}

impl Respond for FdsnMock {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        let cat = self.catalogue.lock().unwrap().clone();
        let start = q.get("starttime").map(|s| parse_fdsn_time(s));
        let end = q.get("endtime").map(|s| parse_fdsn_time(s));
        let after = q.get("updatedafter").map(|s| parse_fdsn_time(s));
        let include_deleted = q.get("includedeleted").is_some_and(|v| v == "true");
        let mut hits: Vec<&Value> = cat
            .features
            .iter()
            .filter(|f| start.is_none_or(|s| prop_ms(f, "time") >= s))
            .filter(|f| end.is_none_or(|e| prop_ms(f, "time") < e))
            .filter(|f| after.is_none_or(|a| prop_ms(f, "updated") >= a))
            .filter(|f| include_deleted || f["properties"]["status"] != "deleted")
            .collect();
        match q.get("orderby").map(String::as_str) {
            Some("time-asc") => hits.sort_by_key(|f| {
                (
                    prop_ms(f, "time"),
                    f["id"].as_str().unwrap_or("").to_string(),
                )
            }),
            _ => hits.sort_by_key(|f| std::cmp::Reverse(prop_ms(f, "time"))),
        }
        let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(20000);
        let offset: usize = q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(1);
        let page: Vec<Value> = hits
            .into_iter()
            .skip(offset.saturating_sub(1))
            .take(limit)
            .cloned()
            .collect();
        let body = json!({
            "type": "FeatureCollection",
            "metadata": {
                "generated": cat.generated_ms,
                "url": req.url.to_string(),
                "title": "mock FDSN",
                "status": 200,
                "api": "1.10.3",
                "limit": limit,
                "offset": offset,
                "count": page.len(),
            },
            "features": page,
        });
        let mut resp =
            ResponseTemplate::new(200).set_body_raw(body.to_string(), "application/json");
        if let Some(d) = self.delay_at_offset.lock().unwrap().get(&(offset as u64)) {
            resp = resp.set_delay(*d);
        }
        resp
    }
}

/// Starts a server whose `/fdsnws/event/1/query` is `mock`.
pub async fn fdsn_server(mock: FdsnMock) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fdsnws/event/1/query"))
        .respond_with(mock)
        .mount(&server)
        .await;
    server
}

pub fn fdsn_url(server: &MockServer) -> String {
    format!("{}/fdsnws/event/1/query", server.uri())
}

/// Serves `file` as the summary feed at `/feed.geojson` (replacing what was served before).
pub async fn serve_feed(server: &MockServer, file: &str) {
    server.reset().await;
    let body = std::fs::read(testdata(file)).expect("fixture");
    Mock::given(method("GET"))
        .and(path("/feed.geojson"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(body, "application/json"))
        .mount(server)
        .await;
}

/// The query parameters of every request the server saw, in order.
pub async fn seen_queries(server: &MockServer) -> Vec<HashMap<String, String>> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.url.query_pairs().into_owned().collect())
        .collect()
}

pub fn ms(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t).unwrap()
}

pub fn http_opts() -> quake_api::HttpOptions {
    quake_api::HttpOptions {
        timeout: Duration::from_secs(10),
        max_retries: 0,
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..quake_api::HttpOptions::default()
    }
}
