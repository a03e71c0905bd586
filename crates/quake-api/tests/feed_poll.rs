//! The live lane's conditional poll of a USGS summary feed (`FeedClient::poll`) against
//! wiremock: validators sent back exactly, a 304 costs nothing, a changed feed is read, and
//! the usual retry policy applies.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::Mutex;

use quake_api::{ApiError, FeedClient, FeedPoll, Page, Validators};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

mod support;
use support::{fast_opts, read};

const FEED_PATH: &str = "/earthquakes/feed/v1.0/summary/all_hour.geojson";
/// Two real snapshots of one feed, 17 minutes apart: same 78 events, one revised.
const BEFORE: &str = "usgs_4.5_week_2021-07-22T2023Z.geojson";
const AFTER: &str = "usgs_4.5_week_2021-07-22T2040Z.geojson";

// Validators as a CDN writes them: a weak ETag with quotes, an HTTP-date with a comma.
const ETAG_1: &str = r#"W/"5f2a-60c7d3a1e8b40""#;
const DATE_1: &str = "Thu, 22 Jul 2021 20:23:16 GMT";
const ETAG_2: &str = r#""9c1e-60c7d7e3f1200""#;
const DATE_2: &str = "Thu, 22 Jul 2021 20:40:16 GMT";

fn feed_200(name: &str, etag: Option<&str>, date: Option<&str>) -> ResponseTemplate {
    let mut r = ResponseTemplate::new(200).set_body_raw(read(name), "application/json");
    if let Some(etag) = etag {
        r = r.insert_header("ETag", etag);
    }
    if let Some(date) = date {
        r = r.insert_header("Last-Modified", date);
    }
    r
}

/// Answers each request with the next response of a script (and 500 once it runs out).
struct Script(Mutex<VecDeque<ResponseTemplate>>);

impl Script {
    fn new(responses: impl IntoIterator<Item = ResponseTemplate>) -> Self {
        Script(Mutex::new(responses.into_iter().collect()))
    }
}

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.0
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| ResponseTemplate::new(500).set_body_string("script exhausted"))
    }
}

async fn feed_with(script: Script) -> (MockServer, FeedClient) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(FEED_PATH))
        .respond_with(script)
        .mount(&server)
        .await;
    let client = FeedClient::new(&format!("{}{FEED_PATH}", server.uri()), fast_opts()).unwrap();
    (server, client)
}

/// The exact text of a request header, or `None`.
fn header(req: &Request, name: &str) -> Option<String> {
    req.headers
        .get(name)
        .map(|v| String::from_utf8(v.as_bytes().to_vec()).unwrap())
}

fn conditional_headers(req: &Request) -> (Option<String>, Option<String>) {
    (
        header(req, "if-none-match"),
        header(req, "if-modified-since"),
    )
}

fn modified(poll: FeedPoll) -> (Page, Validators) {
    match poll {
        FeedPoll::Modified { page, validators } => (page, validators),
        FeedPoll::NotModified => panic!("expected the feed, got 304"),
    }
}

#[tokio::test]
async fn polls_send_the_validators_back_and_a_304_costs_nothing() {
    let (server, client) = feed_with(Script::new([
        feed_200(BEFORE, Some(ETAG_1), Some(DATE_1)),
        ResponseTemplate::new(304).insert_header("ETag", ETAG_1),
        feed_200(AFTER, Some(ETAG_2), Some(DATE_2)),
        ResponseTemplate::new(304),
    ]))
    .await;

    // 1: unconditional, the whole feed and its validators.
    let (first, v1) = modified(client.poll(&Validators::default()).await.unwrap());
    assert_eq!(first.events.len(), 78);
    assert!(first.rejected.is_empty());
    assert_eq!(
        v1,
        Validators {
            etag: Some(ETAG_1.into()),
            last_modified: Some(DATE_1.into()),
        }
    );
    // 2: not modified.
    assert_eq!(client.poll(&v1).await.unwrap(), FeedPoll::NotModified);
    // 3: the feed changed: the new snapshot and new validators.
    let (second, v2) = modified(client.poll(&v1).await.unwrap());
    assert_eq!(second.events.len(), 78);
    assert!(second.generated > first.generated);
    let revised: Vec<&str> = second
        .events
        .iter()
        .filter(|e| {
            first
                .events
                .iter()
                .any(|f| f.id == e.id && f.updated != e.updated)
        })
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(revised.len(), 1, "the real pair differs by one revision");
    assert_eq!(
        v2,
        Validators {
            etag: Some(ETAG_2.into()),
            last_modified: Some(DATE_2.into()),
        }
    );
    // 4: the new validators go out.
    assert_eq!(client.poll(&v2).await.unwrap(), FeedPoll::NotModified);

    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 4, "one request per poll");
    assert_eq!(conditional_headers(&reqs[0]), (None, None));
    let sent_1 = (Some(ETAG_1.to_owned()), Some(DATE_1.to_owned()));
    assert_eq!(conditional_headers(&reqs[1]), sent_1, "echoed exactly");
    assert_eq!(conditional_headers(&reqs[2]), sent_1, "echoed exactly");
    assert_eq!(
        conditional_headers(&reqs[3]),
        (Some(ETAG_2.to_owned()), Some(DATE_2.to_owned()))
    );
}

#[tokio::test]
async fn an_upstream_without_validators_is_polled_unconditionally() {
    let (server, client) = feed_with(Script::new([
        feed_200(BEFORE, None, Some(DATE_1)),
        feed_200(AFTER, None, None),
        feed_200(AFTER, None, None),
    ]))
    .await;
    let (_, v1) = modified(client.poll(&Validators::default()).await.unwrap());
    assert_eq!(v1.etag, None);
    assert_eq!(v1.last_modified.as_deref(), Some(DATE_1));
    let (_, v2) = modified(client.poll(&v1).await.unwrap());
    assert!(v2.is_empty());
    let (page, _) = modified(client.poll(&v2).await.unwrap());
    assert_eq!(page.events.len(), 78);
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(
        conditional_headers(&reqs[1]),
        (None, Some(DATE_1.to_owned())),
        "only the validator received is sent"
    );
    assert_eq!(conditional_headers(&reqs[2]), (None, None));
}

#[tokio::test]
async fn a_poll_is_retried_like_any_request_and_keeps_its_validators() {
    let v1 = Validators {
        etag: Some(ETAG_1.into()),
        last_modified: Some(DATE_1.into()),
    };
    let (server, client) = feed_with(Script::new([
        ResponseTemplate::new(503).set_body_string("busy"),
        ResponseTemplate::new(304),
    ]))
    .await;
    assert_eq!(client.poll(&v1).await.unwrap(), FeedPoll::NotModified);
    let reqs = server.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 2);
    for req in &reqs {
        assert_eq!(
            conditional_headers(req),
            (Some(ETAG_1.to_owned()), Some(DATE_1.to_owned()))
        );
    }
}

#[tokio::test]
async fn a_changed_feed_that_is_not_json_is_an_invalid_body() {
    let (_server, client) = feed_with(Script::new([ResponseTemplate::new(200)
        .set_body_raw(b"<html>maintenance</html>".to_vec(), "text/html")
        .insert_header("ETag", ETAG_2)]))
    .await;
    let prev = Validators {
        etag: Some(ETAG_1.into()),
        last_modified: None,
    };
    let err = client.poll(&prev).await.unwrap_err();
    assert!(matches!(err, ApiError::InvalidBody { .. }), "{err}");
    assert!(err.url().ends_with(FEED_PATH), "{err}");
}

#[tokio::test]
async fn not_modified_to_an_unconditional_request_is_an_error() {
    let (server, client) = feed_with(Script::new([ResponseTemplate::new(304)])).await;
    let err = client.poll(&Validators::default()).await.unwrap_err();
    assert!(matches!(err, ApiError::Status { status: 304, .. }), "{err}");
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "no retry"
    );
    // fetch() is the same request without validators.
    let (_server, client) = feed_with(Script::new([ResponseTemplate::new(304)])).await;
    assert!(matches!(
        client.fetch().await.unwrap_err(),
        ApiError::Status { status: 304, .. }
    ));
}
