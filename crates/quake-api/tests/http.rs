//! HTTP behaviour against wiremock (and a raw TCP server for broken transports).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use quake_api::{ApiError, EmscClient, FdsnClient, FdsnPager, FdsnQuery, FeedClient, HttpOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

mod support;
use support::{fast_opts, read};

const QUERY_PATH: &str = "/fdsnws/event/1/query";

fn fdsn(server: &MockServer, opts: HttpOptions) -> FdsnClient {
    FdsnClient::new(&format!("{}{QUERY_PATH}", server.uri()), opts).unwrap()
}

fn feature(id: &str) -> String {
    format!(
        r#"{{"type":"Feature","properties":{{"mag":1.5,"place":"somewhere","time":1626790980000,"updated":1626791000000,"status":"reviewed","ids":",{id},","net":"ci","code":"1","type":"earthquake"}},"geometry":{{"type":"Point","coordinates":[-117.5,34.1,5.2]}},"id":"{id}"}}"#
    )
}

fn collection(ids: &[&str]) -> String {
    let features: Vec<String> = ids.iter().map(|i| feature(i)).collect();
    format!(
        r#"{{"type":"FeatureCollection","metadata":{{"generated":1626791100000,"count":{}}},"features":[{}]}}"#,
        ids.len(),
        features.join(",")
    )
}

fn json(body: impl Into<Vec<u8>>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(body.into(), "application/json")
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

fn param(req: &Request, name: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn feature_at(id: &str, time_ms: i64) -> String {
    feature(id).replace("\"time\":1626790980000", &format!("\"time\":{time_ms}"))
}

/// An FDSN event service over `(id, origin time in ms)`: `starttime`, `endtime` (inclusive,
/// as USGS), `limit`, ascending time; anything else is ignored.
struct Fdsn(Vec<(&'static str, i64)>);

impl Respond for Fdsn {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let ms = |name: &str| {
            param(req, name).map(|v| {
                chrono::NaiveDateTime::parse_from_str(&v, "%Y-%m-%dT%H:%M:%S%.f")
                    .unwrap()
                    .and_utc()
                    .timestamp_millis()
            })
        };
        let (start, end) = (ms("starttime"), ms("endtime"));
        let limit: usize = param(req, "limit").map_or(20000, |l| l.parse().unwrap());
        let mut hits: Vec<_> = self
            .0
            .iter()
            .filter(|(_, t)| start.is_none_or(|s| *t >= s) && end.is_none_or(|e| *t <= e))
            .collect();
        hits.sort_by_key(|(id, t)| (*t, *id));
        let features: Vec<String> = hits
            .iter()
            .take(limit)
            .map(|(id, t)| feature_at(id, *t))
            .collect();
        json(format!(
            r#"{{"type":"FeatureCollection","metadata":{{"generated":1626791100000,"count":{}}},"features":[{}]}}"#,
            features.len(),
            features.join(",")
        ))
    }
}

const T0: i64 = 1626790980000; // 2021-07-20T14:23:00Z

#[tokio::test]
async fn pager_continues_from_the_last_event_read_until_a_short_page() {
    let server = MockServer::start().await;
    let events = vec![
        ("e1", T0 + 100),
        ("e2", T0 + 5_300),
        ("e3", T0 + 5_700), // e2 and e3 share a second
        ("e4", T0 + 9_000),
        ("e5", T0 + 12_000),
    ];
    Mock::given(method("GET"))
        .and(path(QUERY_PATH))
        .respond_with(Fdsn(events))
        .mount(&server)
        .await;
    let base = FdsnQuery {
        starttime: Some(Utc.with_ymd_and_hms(2021, 7, 20, 14, 23, 0).unwrap()),
        offset: Some(7), // replaced: keyset paging sends no offset
        includedeleted: true,
        ..Default::default()
    };
    let mut pager = FdsnPager::new(fdsn(&server, fast_opts()), base, 2);
    let mut seen = Vec::new();
    while let Some(page) = pager.next_page().await {
        let page = page.unwrap();
        seen.extend(page.events.into_iter().map(|e| e.id));
    }
    assert_eq!(seen, ["e1", "e2", "e3", "e4", "e5"], "each event once");
    assert!(pager.next_page().await.is_none());
    let reqs = requests(&server).await;
    let starts: Vec<String> = reqs
        .iter()
        .map(|r| param(r, "starttime").unwrap())
        .collect();
    // Each page starts at the second of the last event read, whose events read before come
    // back and are dropped. After page 2 both events of second 05 are read, as many as a
    // page holds: that second is read whole (limit 20000, up to 06), and paging goes on
    // from 06.
    assert_eq!(
        starts,
        [
            "2021-07-20T14:23:00",
            "2021-07-20T14:23:05",
            "2021-07-20T14:23:05",
            "2021-07-20T14:23:06",
            "2021-07-20T14:23:12",
        ]
    );
    assert_eq!(pager.pages_fetched(), 5);
    let limits: Vec<String> = reqs.iter().map(|r| param(r, "limit").unwrap()).collect();
    assert_eq!(limits, ["2", "2", "20000", "2", "2"]);
    for r in &reqs {
        assert_eq!(param(r, "format").as_deref(), Some("geojson"));
        assert_eq!(param(r, "orderby").as_deref(), Some("time-asc"));
        assert_eq!(param(r, "includedeleted").as_deref(), Some("true"));
        assert_eq!(param(r, "offset"), None);
        assert!(
            r.headers
                .get("user-agent")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("quakesync/")
        );
    }
}

#[tokio::test]
async fn pager_reads_a_crowded_second_whole() {
    let server = MockServer::start().await;
    // Three events in one second, pages of 2: the second is asked for whole (limit
    // 20000, endtime one second on), then paging goes on after it.
    Mock::given(method("GET"))
        .respond_with(Fdsn(vec![
            ("a", T0 + 1_100),
            ("b", T0 + 1_200),
            ("c", T0 + 1_300),
            ("d", T0 + 4_000),
        ]))
        .mount(&server)
        .await;
    let mut pager = FdsnPager::new(fdsn(&server, fast_opts()), FdsnQuery::default(), 2);
    let mut seen = Vec::new();
    while let Some(page) = pager.next_page().await {
        seen.extend(page.unwrap().events.into_iter().map(|e| e.id));
    }
    assert_eq!(seen, ["a", "b", "c", "d"]);
    let whole: Vec<_> = requests(&server)
        .await
        .iter()
        .filter(|r| param(r, "limit").as_deref() == Some("20000"))
        .map(|r| (param(r, "starttime").unwrap(), param(r, "endtime").unwrap()))
        .collect();
    assert_eq!(
        whole,
        [(
            "2021-07-20T14:23:01".to_string(),
            "2021-07-20T14:23:02".to_string()
        )]
    );
}

#[tokio::test]
async fn pager_stops_on_an_upstream_that_ignores_limit() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json(collection(&["a", "b", "c"])))
        .mount(&server)
        .await;
    let mut pager = FdsnPager::new(fdsn(&server, fast_opts()), FdsnQuery::default(), 2);
    let err = pager.next_page().await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Paging(quake_api::PagingError::LongerThanLimit {
                records: 3,
                limit: 2
            })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("ignores `limit`"), "{err}");
    assert!(pager.next_page().await.is_none());
    assert!(pager.is_done());
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn pager_stops_after_an_error() {
    let server = MockServer::start().await;
    Mock::given(query_param("starttime", "2021-07-20T14:23:00"))
        .and(query_param("limit", "2"))
        .respond_with(json(collection(&["a", "b"])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(json("not json"))
        .with_priority(10)
        .mount(&server)
        .await;
    let base = FdsnQuery {
        starttime: Some(Utc.with_ymd_and_hms(2021, 7, 20, 14, 23, 0).unwrap()),
        ..Default::default()
    };
    let mut pager = FdsnPager::new(fdsn(&server, fast_opts()), base, 2);
    assert!(pager.next_page().await.unwrap().is_ok());
    assert!(matches!(
        pager.next_page().await.unwrap(),
        Err(ApiError::InvalidBody { .. })
    ));
    assert!(pager.next_page().await.is_none());
    assert_eq!(pager.pages_fetched(), 1);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(500).set_body_string("oops"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(json(collection(&["a"])))
        .with_priority(2)
        .mount(&server)
        .await;
    let page = fdsn(&server, fast_opts())
        .query(&FdsnQuery::default())
        .await
        .unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn retries_are_bounded() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let opts = HttpOptions {
        max_retries: 2,
        ..fast_opts()
    };
    let err = fdsn(&server, opts)
        .query(&FdsnQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Status { status: 502, .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn too_many_requests_honours_retry_after() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(json(collection(&["a"])))
        .with_priority(2)
        .mount(&server)
        .await;
    let start = Instant::now();
    let page = fdsn(&server, fast_opts())
        .query(&FdsnQuery::default())
        .await
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(page.events.len(), 1);
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let server = MockServer::start().await;
    // An answer that would come only after ten minutes: a client that waited for it
    // instead of timing out would return the page, not a timeout.
    Mock::given(method("GET"))
        .respond_with(json(collection(&["a"])).set_delay(Duration::from_secs(600)))
        .mount(&server)
        .await;
    let opts = HttpOptions {
        timeout: Duration::from_millis(200),
        max_retries: 1,
        ..fast_opts()
    };
    let err = fdsn(&server, opts)
        .query(&FdsnQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Timeout { .. }), "{err}");
    assert!(err.is_retryable());
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn garbage_body_is_invalid_body_without_retry() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json(
            "<html><body>Service temporarily unavailable</body></html>",
        ))
        .mount(&server)
        .await;
    let err = fdsn(&server, fast_opts())
        .query(&FdsnQuery::default())
        .await
        .unwrap_err();
    match &err {
        ApiError::InvalidBody { url, snippet, .. } => {
            assert!(url.contains(QUERY_PATH), "{url}");
            assert!(snippet.contains("Service temporarily unavailable"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn truncated_json_is_invalid_body() {
    let server = MockServer::start().await;
    let full = collection(&["a", "b", "c"]);
    Mock::given(method("GET"))
        .respond_with(json(&full.as_bytes()[..full.len() - 40]))
        .mount(&server)
        .await;
    let err = fdsn(&server, fast_opts())
        .query(&FdsnQuery::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ApiError::InvalidBody { ref reason, .. } if reason.contains("truncated")),
        "{err}"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn body_over_the_cap_is_too_large() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(json(collection(&["a", "b", "c", "d", "e"])))
        .mount(&server)
        .await;
    let opts = HttpOptions {
        max_response_bytes: 1000,
        ..fast_opts()
    };
    let err = fdsn(&server, opts)
        .query(&FdsnQuery::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::TooLarge {
                limit_bytes: 1000,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn bad_request_is_not_retried_and_keeps_the_message() {
    let server = MockServer::start().await;
    let msg = "Error 400: Bad Request\n\n20001 matching events exceeds search limit of 20000. Modify the search to match fewer events.\n\nUsage details are available from https://earthquake.usgs.gov/fdsnws/event/1\n";
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(400).set_body_string(msg))
        .mount(&server)
        .await;
    let err = fdsn(&server, fast_opts())
        .query(&FdsnQuery::default())
        .await
        .unwrap_err();
    match &err {
        ApiError::Status {
            status,
            snippet,
            url,
        } => {
            assert_eq!(*status, 400);
            assert!(
                snippet.contains("exceeds search limit of 20000"),
                "{snippet}"
            );
            assert!(url.contains("format=geojson"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("HTTP 400"));
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn not_found_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let q = FdsnQuery {
        eventid: Some("nope".into()),
        ..Default::default()
    };
    let err = fdsn(&server, fast_opts()).query(&q).await.unwrap_err();
    assert!(matches!(err, ApiError::Status { status: 404, .. }));
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn no_content_is_an_empty_page() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let page = fdsn(&server, fast_opts())
        .query(&FdsnQuery::default())
        .await
        .unwrap();
    assert_eq!(page.record_count(), 0);
    let emsc = EmscClient::new(&format!("{}{QUERY_PATH}", server.uri()), fast_opts()).unwrap();
    assert_eq!(
        emsc.query(&FdsnQuery::default())
            .await
            .unwrap()
            .record_count(),
        0
    );
}

#[tokio::test]
async fn count_endpoint() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/fdsnws/event/1/count"))
        .and(query_param("format", "geojson"))
        .and(query_param("minmagnitude", "2.5"))
        .respond_with(json(read("usgs_fdsn_count_2021-11-09T2234Z.json")))
        .mount(&server)
        .await;
    let q = FdsnQuery {
        minmagnitude: Some(2.5),
        ..Default::default()
    };
    let c = fdsn(&server, fast_opts()).count(&q).await.unwrap();
    assert_eq!(c.count, 1);
    assert_eq!(c.max_allowed, Some(20000));
}

#[tokio::test]
async fn eventid_query_accepts_a_single_feature() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(query_param("eventid", "cinorthrid"))
        .respond_with(json(read(
            "usgs_fdsn_eventid_ci3144585_detail_2021-11-09T2234Z.geojson",
        )))
        .mount(&server)
        .await;
    let q = FdsnQuery {
        eventid: Some("cinorthrid".into()),
        ..Default::default()
    };
    let page = fdsn(&server, fast_opts()).query(&q).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].id, "ci3144585");
}

#[tokio::test]
async fn feed_and_emsc_clients() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/earthquakes/feed/v1.0/summary/all_hour.geojson"))
        .respond_with(json(read("usgs_all_hour_2013-07-20T1633Z.geojson")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(QUERY_PATH))
        .and(query_param("format", "json"))
        .and(query_param("minmag", "2.5"))
        .and(query_param("orderby", "time-asc"))
        .and(query_param("updatedafter", "2025-04-26T00:00:00"))
        .respond_with(json(read(
            "emsc_fdsn_json_2025-04-26_turkey-region_minmag2.5.json",
        )))
        .mount(&server)
        .await;
    let feed = FeedClient::new(
        &format!(
            "{}/earthquakes/feed/v1.0/summary/all_hour.geojson",
            server.uri()
        ),
        fast_opts(),
    )
    .unwrap();
    let page = feed.fetch().await.unwrap();
    assert_eq!(page.events[0].id, "ak10764004");
    let emsc = EmscClient::new(&format!("{}{QUERY_PATH}", server.uri()), fast_opts()).unwrap();
    let q = FdsnQuery {
        minmagnitude: Some(2.5),
        orderby: Some("time-asc".into()),
        updatedafter: Some(Utc.with_ymd_and_hms(2025, 4, 26, 0, 0, 0).unwrap()),
        ..Default::default()
    };
    let page = emsc.query(&q).await.unwrap();
    assert_eq!(page.events.len(), 430);
    assert_eq!(page.metadata_count, Some(430));
}

#[tokio::test]
async fn urls_in_errors_have_no_password() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(403).set_body_string("forbidden"))
        .mount(&server)
        .await;
    let url = server.uri().replace("http://", "http://alice:s3cr3t@") + QUERY_PATH;
    let client = FdsnClient::new(&url, fast_opts()).unwrap();
    // The one redactor (quake_core::redact_url) keeps the user name, hides the password.
    assert!(client.url().contains("alice:***@"), "{}", client.url());
    assert!(!client.url().contains("s3cr3t"));
    let err = client.query(&FdsnQuery::default()).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(!text.contains("s3cr3t"), "{text}");
}

#[tokio::test]
async fn connection_refused_is_connect_error_after_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let opts = HttpOptions {
        max_retries: 2,
        ..fast_opts()
    };
    let client = FdsnClient::new(&format!("http://{addr}{QUERY_PATH}"), opts).unwrap();
    let err = client.query(&FdsnQuery::default()).await.unwrap_err();
    assert!(matches!(err, ApiError::Connect { .. }), "{err}");
    assert!(err.is_retryable());
}

/// A raw HTTP server that answers every connection with `response` then closes it.
async fn raw_server(response: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let response = response.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = sock.write_all(&response).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}{QUERY_PATH}"), hits)
}

#[tokio::test]
async fn connection_dropped_mid_body_is_a_retried_transport_error() {
    let body = collection(&["a", "b", "c"]);
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body.as_bytes()[..body.len() / 2]);
    let (url, hits) = raw_server(response).await;
    let opts = HttpOptions {
        max_retries: 2,
        ..fast_opts()
    };
    let err = FdsnClient::new(&url, opts)
        .unwrap()
        .query(&FdsnQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Http { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn body_without_length_over_the_cap_is_too_large() {
    let body = collection(&["a", "b", "c", "d", "e", "f", "g", "h"]);
    let mut response =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n".to_vec();
    response.extend_from_slice(body.as_bytes());
    let (url, hits) = raw_server(response).await;
    let opts = HttpOptions {
        max_response_bytes: 1024,
        ..fast_opts()
    };
    let err = FdsnClient::new(&url, opts)
        .unwrap()
        .query(&FdsnQuery::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::TooLarge { .. }), "{err:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // and under the cap the same stream is fine
    let (url, _) = raw_server({
        let mut r = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        r.extend_from_slice(body.as_bytes());
        r
    })
    .await;
    let page = FdsnClient::new(&url, fast_opts())
        .unwrap()
        .query(&FdsnQuery::default())
        .await
        .unwrap();
    assert_eq!(page.events.len(), 8);
}

#[tokio::test]
async fn service_unavailable_with_retry_after_date() {
    let server = MockServer::start().await;
    // Measured from before the date is made: the client cannot retry before the date, which
    // (1 s resolution, rounded down) is at least a second after `start`, whatever the load.
    let start = Instant::now();
    let date = (Utc::now() + chrono::Duration::seconds(2))
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503).insert_header("Retry-After", date.as_str()))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(json(collection(&["a"])))
        .with_priority(2)
        .mount(&server)
        .await;
    fdsn(&server, fast_opts())
        .query(&FdsnQuery::default())
        .await
        .unwrap();
    // the HTTP-date has 1 s resolution: at least ~1 s
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(requests(&server).await.len(), 2);
}

struct Flaky(Arc<AtomicUsize>);

impl Respond for Flaky {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        if self.0.fetch_add(1, Ordering::SeqCst) == 0 {
            ResponseTemplate::new(429)
        } else {
            json(collection(&["a"]))
        }
    }
}

#[tokio::test]
async fn too_many_requests_without_retry_after_uses_backoff() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(Flaky(Arc::new(AtomicUsize::new(0))))
        .mount(&server)
        .await;
    // The client's backoff (5–20 ms here), not a long default wait: 60 s only guards
    // against waiting minutes (the Retry-After cap is 120 s).
    tokio::time::timeout(
        Duration::from_secs(60),
        fdsn(&server, fast_opts()).query(&FdsnQuery::default()),
    )
    .await
    .expect("retried after the backoff, not a long wait")
    .unwrap();
    assert_eq!(requests(&server).await.len(), 2);
}
