//! A mock upstream for the engine's tests: a real FDSN event service over a fixture
//! (`starttime`, `endtime`, `updatedafter`, `orderby`, `limit`, 1-based `offset`,
//! `includedeleted`), and a summary feed serving a file as is. Nothing leaves loopback.
//!
//! [`Gate`]s replace sleeps: the mock holds a chosen query request at a gate until the test
//! opens it, and answers from the catalogue as it is then (so a test can change the
//! upstream "between two pages" at a point it controls, or kill a process while a page is
//! in flight).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
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

/// A gate one upstream request waits at until the test opens it. The wait blocks the mock
/// server's thread (wiremock answers from a thread of its own), so other requests to the
/// same server wait too; a gate never opened lets its request through after ten minutes,
/// so a forgotten gate cannot hang a test run for ever.
pub struct Gate {
    arrived: tokio::sync::watch::Sender<bool>,
    open: (Mutex<bool>, std::sync::Condvar),
}

impl Gate {
    pub fn new() -> Arc<Gate> {
        Arc::new(Gate {
            arrived: tokio::sync::watch::channel(false).0,
            open: (Mutex::new(false), std::sync::Condvar::new()),
        })
    }

    /// Waits until the request has reached the gate (the requests before it are answered).
    pub async fn arrived(&self) {
        let mut rx = self.arrived.subscribe();
        rx.wait_for(|a| *a).await.expect("gate sender lives");
    }

    /// Whether the request has reached the gate.
    pub fn has_arrived(&self) -> bool {
        *self.arrived.borrow()
    }

    /// Whether the gate has been opened.
    pub fn is_open(&self) -> bool {
        *self.open.0.lock().unwrap()
    }

    /// Lets the request through (and every later one that meets this gate).
    pub fn open(&self) {
        *self.open.0.lock().unwrap() = true;
        self.open.1.notify_all();
    }

    /// Called by the mock: says the request arrived, then blocks until the gate opens.
    fn pass(&self) {
        self.arrived.send_replace(true);
        let (lock, cv) = &self.open;
        let guard = lock.lock().unwrap();
        let _ = cv
            .wait_timeout_while(guard, Duration::from_secs(600), |open| !*open)
            .unwrap();
    }
}

/// The test's side of a [`Gate`]: opens it when dropped, so a test that fails while a
/// request is held frees the mock's thread at once instead of after ten minutes.
pub struct Held(pub Arc<Gate>);

impl std::ops::Deref for Held {
    type Target = Gate;
    fn deref(&self) -> &Gate {
        &self.0
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// The FDSN event service semantics this project relies on.
#[derive(Clone)]
pub struct FdsnMock {
    pub catalogue: Arc<Mutex<Catalogue>>,
    /// Gates by query request number (1-based, `query` requests only, retries included).
    pub gates: Arc<Mutex<HashMap<usize, Arc<Gate>>>>,
    /// `query` requests answered or held so far.
    pub queries: Arc<std::sync::atomic::AtomicUsize>,
    /// Extra delay before answering every query (a slow upstream; never a test's clock).
    pub delay: Arc<Mutex<Duration>>,
    /// The search limit (USGS: 20000): a `count` over it, or a query whose result
    /// (`min(matching, limit)`: USGS counts include `limit`) is over it, is refused with
    /// HTTP 400 and the USGS message. `None`: no limit.
    pub cap: Arc<Mutex<Option<u64>>>,
    /// When set, `count` answers 400 over the cap too (USGS answers 200 with an `error`).
    pub count_400_over_cap: Arc<std::sync::atomic::AtomicBool>,
    /// When set, every request after this many (`count` and `query` together) fails with 500.
    pub fail_after: Arc<Mutex<Option<usize>>>,
    /// Requests answered so far (`count` and `query`).
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl FdsnMock {
    pub fn new(c: Catalogue) -> FdsnMock {
        FdsnMock {
            catalogue: Arc::new(Mutex::new(c)),
            gates: Arc::default(),
            queries: Arc::default(),
            delay: Arc::default(),
            cap: Arc::default(),
            count_400_over_cap: Arc::default(),
            fail_after: Arc::default(),
            requests: Arc::default(),
        }
    }

    /// Sets the search limit (see [`FdsnMock::cap`]).
    pub fn with_cap(self, cap: u64) -> FdsnMock {
        *self.cap.lock().unwrap() = Some(cap);
        self
    }

    /// Holds the `n`th query request (1-based, counted from the mock's start) at a new gate.
    pub fn hold_query(&self, n: usize) -> Held {
        let gate = Gate::new();
        self.gates.lock().unwrap().insert(n, gate.clone());
        Held(gate)
    }

    /// Makes every request after the next `n` fail with 500 (`None`: never).
    pub fn fail_after(&self, n: Option<usize>) {
        let base = self.requests.load(std::sync::atomic::Ordering::SeqCst);
        *self.fail_after.lock().unwrap() = n.map(|n| base + n);
    }

    /// The events matching a request's filters, in its order (before limit/offset).
    fn matching(&self, q: &HashMap<String, String>) -> (Vec<Value>, i64) {
        let cat = self.catalogue.lock().unwrap();
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
        (hits.into_iter().cloned().collect(), cat.generated_ms)
    }

    fn too_many(n: usize, cap: u64) -> ResponseTemplate {
        ResponseTemplate::new(400).set_body_raw(
            format!(
                "Error 400: Bad Request\n\n{n} matching events exceeds search limit of {cap}. Modify the search to match fewer events.\n\nUsage details are available from https://earthquake.usgs.gov/fdsnws/event/1\n"
            ),
            "text/plain",
        )
    }

    fn count(&self, q: &HashMap<String, String>) -> ResponseTemplate {
        let (hits, _) = self.matching(q);
        let n = hits.len();
        let cap = *self.cap.lock().unwrap();
        let over = cap.is_some_and(|c| n as u64 > c);
        if over
            && self
                .count_400_over_cap
                .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Self::too_many(n, cap.unwrap_or(0));
        }
        let mut body = json!({"count": n, "maxAllowed": cap.unwrap_or(20000)});
        if over {
            body["error"] = json!(format!(
                "{n} matching events exceeds search limit of {}. Modify the search to match fewer events.",
                cap.unwrap_or(0)
            ));
        }
        ResponseTemplate::new(200).set_body_raw(body.to_string(), "application/json")
    }

    pub fn set(&self, c: Catalogue) {
        *self.catalogue.lock().unwrap() = c;
    }
}

impl Respond for FdsnMock {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        let seen = self
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if self.fail_after.lock().unwrap().is_some_and(|n| seen >= n) {
            return ResponseTemplate::new(500).set_body_string("mock: upstream down");
        }
        if req.url.path().ends_with("/count") {
            return self.count(&q);
        }
        let n = self
            .queries
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let gate = self.gates.lock().unwrap().get(&n).cloned();
        if let Some(gate) = gate {
            gate.pass(); // the answer below reads the catalogue as it is once the gate opens
        }
        let (hits, generated_ms) = self.matching(&q);
        let given_limit: Option<usize> = q.get("limit").and_then(|l| l.parse().ok());
        if let Some(cap) = *self.cap.lock().unwrap() {
            let n = given_limit.map_or(hits.len(), |l| hits.len().min(l));
            if n as u64 > cap {
                return Self::too_many(n, cap);
            }
        }
        let limit: usize = given_limit.unwrap_or(20000);
        let offset: usize = q.get("offset").and_then(|o| o.parse().ok()).unwrap_or(1);
        let page: Vec<Value> = hits
            .into_iter()
            .skip(offset.saturating_sub(1))
            .take(limit)
            .collect();
        let body = json!({
            "type": "FeatureCollection",
            "metadata": {
                "generated": generated_ms,
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
        ResponseTemplate::new(200)
            .set_body_raw(body.to_string(), "application/json")
            .set_delay(*self.delay.lock().unwrap())
    }
}

/// A wiremock server answering as an [`FdsnMock`]. Dropping it opens the mock's gates
/// first: a request held at a gate keeps wiremock's server state locked, and the server's
/// own drop waits on that state, so a test that fails with a request held would otherwise
/// hang until the gate gives up.
pub struct FdsnServer {
    server: MockServer,
    mock: FdsnMock,
}

impl std::ops::Deref for FdsnServer {
    type Target = MockServer;
    fn deref(&self) -> &MockServer {
        &self.server
    }
}

impl Drop for FdsnServer {
    fn drop(&mut self) {
        for gate in self.mock.gates.lock().unwrap().values() {
            gate.open();
        }
    }
}

/// Starts a server whose `/fdsnws/event/1/query` and `/fdsnws/event/1/count` are `mock`.
pub async fn fdsn_server(mock: FdsnMock) -> FdsnServer {
    let server = MockServer::start().await;
    mount_fdsn(&server, &mock).await;
    FdsnServer { server, mock }
}

/// Mounts `mock` at `/fdsnws/event/1/query` and `/fdsnws/event/1/count` (after a reset).
pub async fn mount_fdsn(server: &MockServer, mock: &FdsnMock) {
    Mock::given(method("GET"))
        .and(path("/fdsnws/event/1/query"))
        .respond_with(mock.clone())
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fdsnws/event/1/count"))
        .respond_with(mock.clone())
        .mount(server)
        .await;
}

/// A request's query parameters.
pub type Params = HashMap<String, String>;

/// The `count` requests and the `query` requests of `seen` ([`seen_requests`]), apart.
pub fn split_count(seen: Vec<(String, Params)>) -> (Vec<Params>, Vec<Params>) {
    let (counts, queries): (Vec<_>, Vec<_>) = seen.into_iter().partition(|(p, _)| p == "count");
    (
        counts.into_iter().map(|(_, q)| q).collect(),
        queries.into_iter().map(|(_, q)| q).collect(),
    )
}

/// The `starttime`s keyset paging asks of `cat` (no filter but `starttime`) in pages of
/// `limit` from `start`, as the FDSN mock orders events (time, then id): page N+1 starts
/// at the second of the last event of page N, whose events of that second it re-reads.
/// Whole-second requests are not modelled: the catalogue must not need them.
pub fn keyset_starts(cat: &Catalogue, limit: usize, start: &str) -> Vec<String> {
    let mut times: Vec<(i64, String)> = cat
        .features
        .iter()
        .map(|f| {
            (
                prop_ms(f, "time"),
                f["id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    times.sort();
    let second = |ms: i64| ms.div_euclid(1000) * 1000;
    let mut starts = vec![start.to_string()];
    let mut from = parse_fdsn_time(start);
    loop {
        let page: Vec<&(i64, String)> = times
            .iter()
            .filter(|(t, _)| *t >= from)
            .take(limit)
            .collect();
        if page.len() < limit {
            return starts;
        }
        from = second(page[page.len() - 1].0);
        starts.push(
            DateTime::from_timestamp_millis(from)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string(),
        );
    }
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

/// The path (`query` or `count`, the last segment) and query parameters of every request
/// the server saw, in order.
pub async fn seen_requests(server: &MockServer) -> Vec<(String, HashMap<String, String>)> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            let last = r.url.path().rsplit('/').next().unwrap_or("").to_string();
            (last, r.url.query_pairs().into_owned().collect())
        })
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

/// A run's counts: (fetched, inserted, updated, unchanged, deleted, merged, rejected).
pub fn counts(r: &quake_store::SyncRun) -> (i64, i64, i64, i64, i64, i64, i64) {
    (
        r.fetched,
        r.inserted,
        r.updated,
        r.unchanged,
        r.deleted,
        r.merged,
        r.rejected,
    )
}

/// The whole catalogue, by id.
pub async fn catalogue(
    store: &quake_store::Store,
) -> std::collections::BTreeMap<String, quake_store::Earthquake> {
    store
        .all_events()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.id.clone(), e))
        .collect()
}

/// Waits (20 s at most) until the running run has committed `pages` pages.
pub async fn wait_for_pages(
    status: &mut tokio::sync::watch::Receiver<sync_engine::StatusSnapshot>,
    pages: i64,
) {
    tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_for(|s| s.current.as_ref().is_some_and(|c| c.counts.pages >= pages)),
    )
    .await
    .unwrap()
    .unwrap();
}

/// A plain client of `url`'s database (its connection driven by a task).
pub async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
}

/// Ends the PostgreSQL session that holds the cluster-wide sync lock, as a server restart, a
/// network cut or an operator's `pg_terminate_backend` would; `url` is the store's database.
pub async fn kill_lock_holder(store: &quake_store::Store, url: &str) {
    let holder = store.sync_lock_holder().await.unwrap().expect("held");
    let client = pg_client(url).await;
    // With a timeout, pg_terminate_backend waits until the session has ended (its locks
    // freed) instead of returning once the signal is sent: on a loaded machine the run
    // could otherwise still find the dying session holding the lock and write a page more.
    client
        .query(
            "SELECT pg_terminate_backend($1, $2)",
            &[&holder.pid, &60_000_i64],
        )
        .await
        .unwrap();
}

/// Waits until the running run seen by `status` (an engine's or a service's `subscribe()`)
/// has committed `pages` pages. The engine fetches the next page while it writes the
/// current one, so a request arriving upstream says nothing about the page before it:
/// this does. (60 s only guards a hang.)
pub async fn pages_committed(
    mut status: tokio::sync::watch::Receiver<sync_engine::StatusSnapshot>,
    pages: i64,
) {
    let wait = status.wait_for(|s| s.current.as_ref().is_some_and(|c| c.counts.pages >= pages));
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the pages commit")
        .expect("the engine lives");
}

/// The catalogue's features by origin time (then id), as `orderby=time-asc` pages them.
pub fn by_time(cat: &Catalogue) -> Vec<Value> {
    let mut f = cat.features.clone();
    f.sort_by_key(|f| {
        (
            f["properties"]["time"].as_i64().unwrap(),
            f["id"].as_str().unwrap().to_string(),
        )
    });
    f
}

/// id → `updated` (ms) of the catalogue's first `n` events in `time-asc` order.
pub fn first_updated(cat: &Catalogue, n: usize) -> BTreeMap<String, i64> {
    by_time(cat)
        .iter()
        .take(n)
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["properties"]["updated"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// id → `updated` (ms) of the stored rows.
pub async fn stored(store: &quake_store::Store) -> BTreeMap<String, i64> {
    quake_store::testing::updated_by_id(store).await
}

/// The source's stored cursor.
pub async fn cursor(store: &quake_store::Store, source: &str) -> Option<DateTime<Utc>> {
    store
        .sync_state(source)
        .await
        .unwrap()
        .and_then(|s| s.cursor)
        .map(|t| t.0)
}

pub fn succeeded(o: sync_engine::SyncOutcome) -> quake_store::SyncRun {
    match o {
        sync_engine::SyncOutcome::Succeeded(run) => run,
        other => panic!("expected a successful run, got {other:?}"),
    }
}

pub fn failed(o: sync_engine::SyncOutcome) -> quake_store::SyncRun {
    match o {
        sync_engine::SyncOutcome::Failed(run) => run,
        other => panic!("expected a failed run, got {other:?}"),
    }
}
