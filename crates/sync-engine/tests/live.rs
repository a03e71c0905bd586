//! The live lane (issue 18) against local servers only: a summary feed (wiremock) that
//! changes between polls and answers 304 to a matching `If-None-Match`; a WebSocket server
//! the test drives message by message (creates, updates, garbage, a dropped connection)
//! with an EMSC FDSN service behind it for the catch-up; two services on one PostgreSQL
//! (one leads, the other takes over when the leader's session dies); a sync running while
//! the lane writes. Every wait is for a state the lane publishes, bounded by [`PATIENCE`]
//! only against a hang.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use common::*;
use futures_util::SinkExt;
use quake_api::{EmscClient, FdsnClient, PushOptions};
use quake_store::Store;
use quake_store::testing::TestDb;
use serde_json::{Value, json};
use sync_engine::{
    EmscSource, Engine, EngineConfig, FdsnSource, LiveConfig, LiveRole, Schedule, StatusSnapshot,
    SyncService, Trigger,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const USGS: &str = "usgs_4.5_week_2021-07-22T2023Z.geojson"; // 78 events
const EMSC: &str = "emsc_fdsn_json_2025-04-26_turkey-region_minmag2.5.json";
/// A bound on any wait for something that must happen; never reached when the code works.
const PATIENCE: Duration = Duration::from_secs(60);

fn no_schedule() -> Schedule {
    Schedule {
        enabled: false,
        ..Schedule::default()
    }
}

/// The lane's settings with test-sized durations (configuration refuses polls under 30 s;
/// the engine's API takes any).
fn live_config(url: &str) -> LiveConfig {
    LiveConfig {
        interval: Duration::from_millis(30),
        leader_retry: Duration::from_millis(100),
        write_retry: Duration::from_millis(50),
        coalesce: Duration::from_millis(20),
        http: http_opts(),
        push: PushOptions {
            connect_timeout: Duration::from_secs(10),
            reconnect_base: Duration::from_millis(10),
            reconnect_max: Duration::from_millis(50),
            ..PushOptions::default()
        },
        ..LiveConfig::new(url)
    }
}

async fn wait(
    rx: &mut watch::Receiver<StatusSnapshot>,
    what: &str,
    f: impl FnMut(&StatusSnapshot) -> bool,
) {
    tokio::time::timeout(PATIENCE, rx.wait_for(f))
        .await
        .unwrap_or_else(|_| panic!("waited in vain for: {what}"))
        .expect("the engine lives");
}

async fn live_rows(store: &Store) -> Vec<quake_store::LiveLaneRow> {
    store.live_lanes().await.unwrap()
}

async fn rejected(store: &Store) -> Vec<quake_store::RejectedRecord> {
    store.rejected_records(None).await.unwrap()
}

async fn run_count(store: &Store) -> usize {
    store.latest_runs(100).await.unwrap().len()
}

// ---------------------------------------------------------------------------------------
// A polled summary feed

/// A summary feed whose content the test sets; each content has its own ETag, and a request
/// sending that ETag back gets 304 with no body.
#[derive(Clone, Default)]
struct Feed {
    state: Arc<Mutex<(u32, String)>>,
    modified: Arc<AtomicUsize>,
    not_modified: Arc<AtomicUsize>,
}

impl Feed {
    fn set(&self, features: &[Value]) {
        let body = json!({
            "type": "FeatureCollection",
            "metadata": {"generated": Utc::now().timestamp_millis(), "count": features.len(), "status": 200},
            "features": features,
        });
        let mut s = self.state.lock().unwrap();
        s.0 += 1;
        s.1 = body.to_string();
    }
}

impl Respond for Feed {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let (version, body) = self.state.lock().unwrap().clone();
        let etag = format!("\"v{version}\"");
        if req
            .headers
            .get("if-none-match")
            .is_some_and(|v| v.to_str().unwrap_or("") == etag)
        {
            self.not_modified.fetch_add(1, Ordering::SeqCst);
            return ResponseTemplate::new(304).insert_header("etag", etag.as_str());
        }
        self.modified.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(200)
            .insert_header("etag", etag.as_str())
            .insert_header("content-type", "application/json")
            .set_body_string(body)
    }
}

async fn feed_server(feed: &Feed) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/feed/all_hour.geojson"))
        .respond_with(feed.clone())
        .mount(&server)
        .await;
    server
}

fn usgs_features() -> Vec<Value> {
    read_fixture(USGS)["features"].as_array().unwrap().clone()
}

/// `f` revised upstream: `updated` moved by `ms` and a new magnitude.
fn revised(f: &Value, ms: i64, mag: f64) -> Value {
    let mut f = f.clone();
    let updated = f["properties"]["updated"].as_i64().unwrap();
    f["properties"]["updated"] = json!(updated + ms);
    f["properties"]["mag"] = json!(mag);
    f
}

/// An engine whose own sync source is an FDSN mock (unused unless a test syncs).
fn engine(store: Store, fdsn: &MockServer) -> Engine {
    engine_above(store, fdsn, None)
}

/// [`engine`] with `source.min_magnitude`.
fn engine_above(store: Store, fdsn: &MockServer, min_magnitude: Option<f64>) -> Engine {
    let client = FdsnClient::new(&fdsn_url(fdsn), http_opts()).unwrap();
    Engine::new(
        store,
        Arc::new(FdsnSource(client)),
        EngineConfig {
            batch_size: 20,
            start_time: Some("2021-07-01T00:00:00Z".parse().unwrap()),
            min_magnitude,
            ..EngineConfig::default()
        },
    )
}

/// The feed changes between polls (a new event, a revision, then an older revision of the
/// same event) and answers 304 in between: every event is committed once, the revision is
/// applied and the older one is not, the 304s write nothing, no run row is written.
async fn poll_scenario(store: Store) {
    let features = usgs_features();
    let feed = Feed::default();
    feed.set(&features[..5]);
    let server = feed_server(&feed).await;
    let service =
        SyncService::start(engine(store.clone(), &server), no_schedule()).with_live(Some(
            live_config(&format!("{}/feed/all_hour.geojson", server.uri())),
        ));
    let mut rx = service.subscribe();
    assert!(service.status().live.enabled);

    // The first poll writes the feed; the next ones are answered 304.
    wait(&mut rx, "the first feed written", |s| {
        s.live.polls.modified == 1
    })
    .await;
    wait(&mut rx, "two 304s", |s| s.live.polls.not_modified >= 2).await;
    let after_first = live_rows(&store).await;
    assert_eq!(after_first.len(), 1, "{after_first:?}");
    assert_eq!(after_first[0].source, "usgs-live");
    assert_eq!((after_first[0].batches, after_first[0].inserted), (1, 5));
    let seen_304 = service.status().live.polls.not_modified;
    wait(&mut rx, "more 304s", |s| {
        s.live.polls.not_modified >= seen_304 + 2
    })
    .await;
    // 304s wrote nothing: the row is as the batch left it.
    assert_eq!(live_rows(&store).await, after_first);

    // A new event and a revision of the first.
    let rev = revised(&features[0], 60_000, 7.7);
    let mut v2: Vec<Value> = features[..6].to_vec();
    v2[0] = rev.clone();
    feed.set(&v2);
    wait(&mut rx, "the second feed written", |s| {
        s.live.polls.modified == 2
    })
    .await;
    // An older revision (the original) comes back, with one more new event.
    let mut v3: Vec<Value> = features[..7].to_vec();
    v3[0] = features[0].clone();
    feed.set(&v3);
    wait(&mut rx, "the third feed written", |s| {
        s.live.polls.modified == 3
    })
    .await;

    let stored = stored(&store).await;
    assert_eq!(stored.len(), 7, "{stored:?}");
    let id0 = features[0]["id"].as_str().unwrap();
    assert_eq!(stored[id0], rev["properties"]["updated"].as_i64().unwrap());
    let cat = catalogue(&store).await;
    assert_eq!(cat[id0].magnitude, Some(7.7));

    let rows = live_rows(&store).await;
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    // 5 + 6 + 7 records read; 7 inserted once each, 1 updated, the rest unchanged.
    assert_eq!(
        (
            r.batches,
            r.fetched,
            r.inserted,
            r.updated,
            r.unchanged,
            r.rejected
        ),
        (3, 18, 7, 1, 10, 0)
    );
    assert!(r.last_change_at.is_some() && r.last_poll_at.is_some());
    let st = service.status();
    assert_eq!(st.live.records.inserted, 7);
    assert_eq!(st.live.role, LiveRole::Leader);
    assert!(st.latest_lag_seconds.is_some());
    assert_eq!(st.latest_lag_lane, Some(sync_engine::Lane::Live));
    let lag = service.engine().lag_histograms();
    assert_eq!((lag.live.count, lag.sync.count), (8, 0));
    assert!(rejected(&store).await.is_empty());
    assert_eq!(
        run_count(&store).await,
        0,
        "the live lane writes no run rows"
    );
    assert_eq!(
        feed.modified.load(Ordering::SeqCst),
        3,
        "one full answer per change"
    );
    service.shutdown(Duration::from_secs(5)).await;
}

quake_store::both_backends!(
    a_polled_feed_commits_each_change_once_and_304s_write_nothing,
    async |db: TestDb| poll_scenario(db.store().await).await
);

/// The catalogue's filter and a bad record that the feed carries minute after minute: with
/// `min_magnitude` 5.0 only the records of 5.0 or above are written (not one without a
/// magnitude); the bad record is quarantined once however many feeds repeat it, and a feed
/// whose only news is that repeat writes nothing; a new bad record is quarantined.
async fn filter_and_repeated_rejects_scenario(store: Store) {
    let features = usgs_features();
    let mag = |f: &Value| f["properties"]["mag"].as_f64().unwrap();
    let mut bad = features[10].clone();
    bad["properties"]["mag"] = json!("abc");
    let mut no_mag = features[11].clone();
    no_mag["properties"]["mag"] = Value::Null;
    let mut v1: Vec<Value> = features[..10].to_vec();
    v1.push(no_mag);
    v1.push(bad);
    let mut kept: Vec<&str> = features[..10]
        .iter()
        .filter(|f| mag(f) >= 5.0)
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    kept.sort_unstable();
    assert!(
        !kept.is_empty() && kept.len() < 10,
        "the fixture has records on both sides of 5.0"
    );
    let feed = Feed::default();
    feed.set(&v1);
    let server = feed_server(&feed).await;
    let service = SyncService::start(
        engine_above(store.clone(), &server, Some(5.0)),
        no_schedule(),
    )
    .with_live(Some(live_config(&format!(
        "{}/feed/all_hour.geojson",
        server.uri()
    ))));
    let mut rx = service.subscribe();
    wait(&mut rx, "the first feed written", |s| {
        s.live.polls.modified == 1
    })
    .await;
    let ids: Vec<String> = stored(&store).await.into_keys().collect();
    assert_eq!(
        ids, kept,
        "only the records at or above source.min_magnitude"
    );
    assert_eq!(rejected(&store).await.len(), 1);
    let after_first = live_rows(&store).await;

    // The feed is regenerated (a new ETag) with the same records and the same bad one.
    feed.set(&v1);
    wait(&mut rx, "the regenerated feed read", |s| {
        s.live.polls.modified == 2
    })
    .await;
    assert_eq!(rejected(&store).await.len(), 1, "quarantined once");
    assert_eq!(
        live_rows(&store).await,
        after_first,
        "a feed whose only news is a repeated reject writes nothing"
    );

    // A new bad record is quarantined.
    let mut bad2 = features[12].clone();
    bad2["properties"]["mag"] = json!("xyz");
    let mut v3 = v1.clone();
    v3.push(bad2);
    feed.set(&v3);
    wait(&mut rx, "the third feed written", |s| {
        s.live.polls.modified == 3
    })
    .await;
    assert_eq!(rejected(&store).await.len(), 2);
    let rows = live_rows(&store).await;
    assert_eq!((rows[0].batches, rows[0].rejected), (2, 2));
    assert_eq!(stored(&store).await.len(), kept.len());
    service.shutdown(Duration::from_secs(5)).await;
}

quake_store::both_backends!(
    the_lane_keeps_min_magnitude_and_quarantines_a_repeated_bad_record_once,
    async |db: TestDb| filter_and_repeated_rejects_scenario(db.store().await).await
);

// ---------------------------------------------------------------------------------------
// EMSC push

/// A local WebSocket server: every connection it accepts is handed to the test.
struct WsServer {
    url: String,
    conns: mpsc::UnboundedReceiver<WebSocketStream<TcpStream>>,
}

impl WsServer {
    async fn start() -> WsServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "ws://{}/standing_order/websocket",
            listener.local_addr().unwrap()
        );
        let (tx, conns) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await
                    && tx.send(ws).is_err()
                {
                    return;
                }
            }
        });
        WsServer { url, conns }
    }

    async fn next(&mut self) -> WebSocketStream<TcpStream> {
        tokio::time::timeout(PATIENCE, self.conns.recv())
            .await
            .expect("the client connects")
            .expect("the server lives")
    }
}

fn emsc_features() -> Vec<Value> {
    read_fixture(EMSC)["features"].as_array().unwrap().clone()
}

fn push(action: &str, f: &Value) -> Message {
    Message::text(json!({"action": action, "data": f}).to_string())
}

/// An EMSC FDSN service answering `features` to every query (a short page: one request
/// per run).
#[derive(Clone, Default)]
struct EmscFdsn(Arc<Mutex<Vec<Value>>>);

impl Respond for EmscFdsn {
    fn respond(&self, _req: &Request) -> ResponseTemplate {
        let f = self.0.lock().unwrap().clone();
        ResponseTemplate::new(200)
            .insert_header("content-type", "application/json")
            .set_body_string(
                json!({"type": "FeatureCollection", "metadata": {"count": f.len()}, "features": f})
                    .to_string(),
            )
    }
}

async fn push_scenario(store: Store) {
    let f = emsc_features();
    let (a, b, x) = (&f[0], &f[1], &f[2]);
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let mut a2 = a.clone();
    a2["properties"]["mag"] = json!(5.1);
    a2["properties"]["lastupdate"] = json!("2025-04-26T23:59:59.5Z");

    let fdsn = EmscFdsn::default();
    let fdsn_server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(fdsn.clone())
        .mount(&fdsn_server)
        .await;
    let client = EmscClient::new(&fdsn_url(&fdsn_server), http_opts()).unwrap();
    let engine = Engine::new(
        store.clone(),
        Arc::new(EmscSource(client)),
        EngineConfig {
            start_time: Some("2025-04-01T00:00:00Z".parse().unwrap()),
            ..EngineConfig::default()
        },
    );
    let mut ws = WsServer::start().await;
    let service = SyncService::start(engine, no_schedule()).with_live(Some(live_config(&ws.url)));
    let mut rx = service.subscribe();
    assert_eq!(service.status().live.mode, "push");

    // First connection: its catch-up finds the FDSN service empty.
    let mut conn = ws.next().await;
    wait(&mut rx, "the first catch-up", |s| {
        s.runs_total.get("succeeded").copied().unwrap_or(0) >= 1
    })
    .await;
    conn.send(push("create", a)).await.unwrap();
    conn.send(push("create", b)).await.unwrap();
    conn.send(Message::text("this is no JSON")).await.unwrap();
    conn.send(push("update", &a2)).await.unwrap();
    wait(&mut rx, "the four messages written", |s| {
        s.live.records.fetched >= 4
    })
    .await;
    // The connection drops; meanwhile the upstream publishes X, which is never pushed.
    fdsn.0.lock().unwrap().push(x.clone());
    drop(conn);
    let _conn2 = ws.next().await;
    wait(&mut rx, "the catch-up after the reconnect", |s| {
        s.runs_total.get("succeeded").copied().unwrap_or(0) >= 2
    })
    .await;

    let cat = catalogue(&store).await;
    let ids: Vec<&String> = cat.keys().collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert!(
        cat.contains_key(&id(x)),
        "the catch-up recovered X: {ids:?}"
    );
    assert_eq!(cat[&id(a)].magnitude, Some(5.1), "the update applied");
    assert!(cat.contains_key(&id(b)));
    let rej = rejected(&store).await;
    assert_eq!(rej.len(), 1, "{rej:?}");
    assert_eq!(
        (rej[0].run_id, rej[0].payload.as_str()),
        (None, "this is no JSON")
    );
    let rows = live_rows(&store).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].source, "emsc-live");
    // a, b inserted (a's update in the same batch or the next), the garbage rejected.
    assert_eq!(
        (
            rows[0].fetched,
            rows[0].inserted,
            rows[0].updated + rows[0].unchanged,
            rows[0].rejected
        ),
        (4, 2, 1, 1)
    );
    let st = service.status();
    assert!(st.live.polls.error >= 1, "the dropped connection counts");
    service.shutdown(Duration::from_secs(5)).await;
}

quake_store::both_backends!(
    pushed_events_commit_garbage_is_quarantined_and_a_reconnect_catches_up,
    async |db: TestDb| push_scenario(db.store().await).await
);

/// An engine reading EMSC's FDSN service `fdsn` (the push lane's catch-up), with
/// `source.min_magnitude`.
fn emsc_engine(store: Store, fdsn: &MockServer, min_magnitude: Option<f64>) -> Engine {
    let client = EmscClient::new(&fdsn_url(fdsn), http_opts()).unwrap();
    Engine::new(
        store,
        Arc::new(EmscSource(client)),
        EngineConfig {
            start_time: Some("2025-04-01T00:00:00Z".parse().unwrap()),
            min_magnitude,
            ..EngineConfig::default()
        },
    )
}

/// An empty EMSC FDSN service (the catch-ups find nothing).
async fn empty_emsc_fdsn() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(EmscFdsn::default())
        .mount(&server)
        .await;
    server
}

/// Pushed out of order: a newer revision, then an event under `source.min_magnitude`, then
/// the older revision: the newer stays, the small event is not written.
async fn push_order_and_filter_scenario(store: Store) {
    let f = emsc_features();
    let mag = |v: &Value| v["properties"]["mag"].as_f64().unwrap();
    let a = &f[0];
    let low = f
        .iter()
        .find(|v| mag(v) < mag(a))
        .expect("the fixture has a smaller event than its first");
    let id = |v: &Value| v["id"].as_str().unwrap().to_owned();
    let mut a2 = a.clone();
    a2["properties"]["mag"] = json!(mag(a) + 1.0);
    a2["properties"]["lastupdate"] = json!("2025-04-26T23:59:59.5Z");

    let fdsn_server = empty_emsc_fdsn().await;
    let mut ws = WsServer::start().await;
    let service = SyncService::start(
        emsc_engine(store.clone(), &fdsn_server, Some(mag(a))),
        no_schedule(),
    )
    .with_live(Some(live_config(&ws.url)));
    let mut rx = service.subscribe();
    let mut conn = ws.next().await;
    wait(&mut rx, "the first catch-up", |s| {
        s.runs_total.get("succeeded").copied().unwrap_or(0) >= 1
    })
    .await;
    conn.send(push("update", &a2)).await.unwrap();
    wait(&mut rx, "the newer revision written", |s| {
        s.live.records.fetched >= 1
    })
    .await;
    conn.send(push("create", low)).await.unwrap();
    conn.send(push("update", a)).await.unwrap();
    wait(&mut rx, "the older revision read", |s| {
        s.live.records.fetched >= 2
    })
    .await;
    let cat = catalogue(&store).await;
    assert_eq!(cat.len(), 1, "{:?}", cat.keys().collect::<Vec<_>>());
    assert_eq!(
        cat[&id(a)].magnitude,
        Some(mag(&a2)),
        "the newer revision stays"
    );
    assert!(!cat.contains_key(&id(low)), "under source.min_magnitude");
    let live = service.status().live.records;
    assert_eq!((live.fetched, live.inserted, live.updated), (2, 1, 0));
    service.shutdown(Duration::from_secs(5)).await;
}

quake_store::both_backends!(
    pushed_out_of_order_the_newer_revision_stays_and_small_events_are_dropped,
    async |db: TestDb| push_order_and_filter_scenario(db.store().await).await
);

// ---------------------------------------------------------------------------------------
// Leadership

/// Ends `holder`'s PostgreSQL session (a network cut, a server restart).
async fn terminate(url: &str, holder: &quake_store::LockHolder) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .query(
            "SELECT pg_terminate_backend($1, $2)",
            &[&holder.pid, &60_000_i64],
        )
        .await
        .unwrap();
}

/// Waits until a session other than `old` holds the live lock.
async fn retaken(store: &Store, old: &quake_store::LockHolder) {
    let retaken = async {
        loop {
            if let Some(h) = store.live_lock_holder().await.unwrap()
                && &h != old
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, retaken)
        .await
        .expect("the lock is taken again");
}

/// A push leader that hears nothing still checks its lock: when its lock session dies it
/// steps down (and, alone, takes the lock again with a new session) instead of listening on
/// while nobody holds the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_push_leader_notices_it_lost_the_lock() {
    let Some(db) = TestDb::postgres("live_push_lost").await else {
        return;
    };
    let store = db.store().await;
    let fdsn_server = empty_emsc_fdsn().await;
    let mut ws = WsServer::start().await;
    let service = SyncService::start(
        emsc_engine(store.clone(), &fdsn_server, None),
        no_schedule(),
    )
    .with_live(Some(live_config(&ws.url)));
    let mut rx = service.subscribe();
    let _conn = ws.next().await;
    wait(&mut rx, "the leader listens", |s| {
        s.live.role == LiveRole::Leader
    })
    .await;
    let holder = store.live_lock_holder().await.unwrap().expect("held");
    terminate(&db.url, &holder).await;
    retaken(&store, &holder).await;
    // It listens again: a new connection to the push service.
    let _conn2 = ws.next().await;
    service.shutdown(Duration::from_secs(5)).await;
}

/// A push client that cannot start (here: a URL it cannot parse) is the lane's last error,
/// and the live lock is released while the lane waits to try again (a long while here), so
/// another replica may lead meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_client_that_cannot_start_releases_the_lead() {
    let Some(db) = TestDb::postgres("live_push_fails").await else {
        return;
    };
    let store = db.store().await;
    let fdsn_server = empty_emsc_fdsn().await;
    let cfg = LiveConfig {
        leader_retry: PATIENCE * 2,
        ..live_config("ws://[::1/unclosed")
    };
    let service = SyncService::start(
        emsc_engine(store.clone(), &fdsn_server, None),
        no_schedule(),
    )
    .with_live(Some(cfg));
    let mut rx = service.subscribe();
    wait(&mut rx, "the start failure reported", |s| {
        s.live.polls.error >= 1 && s.live.last_error.is_some()
    })
    .await;
    let released = async {
        while store.live_lock_holder().await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, released)
        .await
        .expect("the live lock is released while the lane waits");
    assert_eq!(service.status().live.role, LiveRole::Standby);
    service.shutdown(Duration::from_secs(5)).await;
}

/// The leader's process dies without releasing anything (its runtime dropped, its lock
/// connection closed by the OS): the standby takes over and polls.
#[test]
fn the_standby_takes_over_when_the_leader_dies_without_releasing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(db) = rt.block_on(TestDb::postgres("live_crash")) else {
        return;
    };
    let feed = Feed::default();
    feed.set(&usgs_features()[..3]);
    let server = rt.block_on(feed_server(&feed));
    let url = format!("{}/feed/all_hour.geojson", server.uri());
    // The leader, on a runtime of its own: dropping that runtime is its process dying.
    let leader_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let leader = leader_rt.block_on(async {
        let s = SyncService::start(engine(db.store().await, &server), no_schedule())
            .with_live(Some(live_config(&url)));
        let mut rx = s.subscribe();
        wait(&mut rx, "the first service leads", |s| {
            s.live.role == LiveRole::Leader && s.live.polls.modified >= 1
        })
        .await;
        s
    });
    rt.block_on(async {
        let standby = SyncService::start(engine(db.store().await, &server), no_schedule())
            .with_live(Some(live_config(&url)));
        let mut rx = standby.subscribe();
        wait(&mut rx, "the second stands by", |s| {
            s.live.role == LiveRole::Standby
        })
        .await;
        // The leader dies: no shutdown, no release; its tasks and connections just end.
        std::mem::forget(leader);
        leader_rt.shutdown_background();
        wait(&mut rx, "the standby takes over", |s| {
            s.live.role == LiveRole::Leader
        })
        .await;
        wait(&mut rx, "the new leader polls", |s| {
            s.live.polls.not_modified + s.live.polls.modified >= 1
        })
        .await;
        assert_eq!(stored(&db.store().await).await.len(), 3);
        standby.shutdown(Duration::from_secs(5)).await;
    });
}

/// Two services on one PostgreSQL: one leads and polls, the other stands by and never
/// polls; when the leader's lock session dies (a network cut) the leader notices and the
/// lock is taken again by one of them; when the leader stops, the standby takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_polls_and_the_standby_takes_over_when_the_leader_goes() {
    let Some(db) = TestDb::postgres("live_leader").await else {
        return;
    };
    let feed = Feed::default();
    feed.set(&usgs_features()[..3]);
    let server = feed_server(&feed).await;
    let url = format!("{}/feed/all_hour.geojson", server.uri());
    let s1 = SyncService::start(engine(db.store().await, &server), no_schedule())
        .with_live(Some(live_config(&url)));
    let mut rx1 = s1.subscribe();
    wait(&mut rx1, "the first service leads", |s| {
        s.live.role == LiveRole::Leader
    })
    .await;
    let s2 = SyncService::start(engine(db.store().await, &server), no_schedule())
        .with_live(Some(live_config(&url)));
    let mut rx2 = s2.subscribe();
    wait(&mut rx2, "the second stands by", |s| {
        s.live.role == LiveRole::Standby
    })
    .await;
    // The leader polls on; the standby tries the lock several times and polls nothing.
    let polls = s1.status().live.polls.not_modified;
    wait(&mut rx1, "the leader polls on", |s| {
        s.live.polls.not_modified >= polls + 5
    })
    .await;
    let st2 = s2.status();
    assert_eq!(st2.live.role, LiveRole::Standby);
    assert_eq!(st2.live.last_poll_at, None, "the standby never polls");
    assert_eq!(st2.live.polls, sync_engine::LivePolls::default());

    // The leader's lock session dies (a network cut, a server restart): the leader notices
    // before its next poll; the lock is taken again, by a new session of one service.
    let store = db.store().await;
    let holder = store.live_lock_holder().await.unwrap().expect("held");
    let (client, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .query(
            "SELECT pg_terminate_backend($1, $2)",
            &[&holder.pid, &60_000_i64],
        )
        .await
        .unwrap();
    let retaken = async {
        loop {
            if let Some(h) = store.live_lock_holder().await.unwrap()
                && h != holder
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, retaken)
        .await
        .expect("the lock is taken again");
    let leads = |s: &SyncService| s.status().live.role == LiveRole::Leader;
    let one_leader = async {
        while leads(&s1) == leads(&s2) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, one_leader)
        .await
        .expect("exactly one leads");

    // The leader stops (its process ends): the standby takes over and polls.
    let (leader, standby) = if leads(&s1) { (s1, s2) } else { (s2, s1) };
    let mut rx = standby.subscribe();
    let before = standby.status().live.polls;
    leader.shutdown(Duration::from_secs(5)).await;
    wait(&mut rx, "the standby takes over", |s| {
        s.live.role == LiveRole::Leader
    })
    .await;
    wait(&mut rx, "the new leader polls", |s| {
        s.live.polls.not_modified + s.live.polls.modified > before.not_modified + before.modified
    })
    .await;
    // Three events, each committed once whoever polled.
    assert_eq!(stored(&store).await.len(), 3);
    standby.shutdown(Duration::from_secs(5)).await;
}

// ---------------------------------------------------------------------------------------
// A sync and the live lane at once

/// A sync is held between two pages (before fetching its third) while the live lane
/// writes a feed overlapping the sync's events, with a newer revision of an event of the
/// sync's third page: the lane's batch commits between the sync's pages, the sync's page 3
/// then brings the older copy and the newer revision stays; nothing is rejected, every
/// event is stored once, and the counts add up.
async fn sync_and_live_scenario(store: Store) {
    let cat = Catalogue::from_fixture(USGS);
    let mock = FdsnMock::new(cat.clone());
    let page3 = mock.hold_query(3);
    let fdsn = fdsn_server(mock).await;
    // The feed: ten of the sync's events (its third page: 20 a page), one revised, and one
    // the FDSN service lacks.
    let features = by_time(&cat);
    let mut feed_features: Vec<Value> = features[40..50].to_vec();
    feed_features[0] = revised(&feed_features[0], 1_000, 6.6);
    let mut extra = features[0].clone();
    extra["id"] = json!("zz_live_only");
    extra["properties"]["ids"] = json!(",zz_live_only,");
    extra["properties"]["code"] = json!("live_only");
    feed_features.push(extra);
    let feed = Feed::default();
    feed.set(&feed_features);
    let feed_srv = feed_server(&feed).await;

    let service = SyncService::start(engine(store.clone(), &fdsn), no_schedule());
    let mut rx = service.subscribe();
    let run = match service.trigger(Trigger::Manual).await.unwrap() {
        sync_engine::StartOutcome::Started { run_id, handle } => (run_id, handle),
        sync_engine::StartOutcome::Busy { .. } => panic!("nothing else runs"),
    };
    page3.arrived().await;
    pages_committed(service.subscribe(), 1).await;
    // The lane starts while the sync is held mid-run.
    let lane = sync_engine::LiveLane::start(
        service.engine().clone(),
        live_config(&format!("{}/feed/all_hour.geojson", feed_srv.uri())),
    )
    .unwrap();
    wait(&mut rx, "the live batch written", |s| {
        s.live.polls.modified >= 1
    })
    .await;
    assert!(service.status().is_running, "the sync is still held");
    page3.open();
    let sync_run = succeeded(run.1.await.unwrap());
    assert_eq!(sync_run.id, run.0);
    lane.stop(Duration::from_secs(5)).await;

    assert!(rejected(&store).await.is_empty());
    let stored = stored(&store).await;
    assert_eq!(stored.len(), 79, "78 from the sync, 1 only in the feed");
    let live = service.status().live.records;
    // Every event inserted exactly once, by one lane or the other.
    assert_eq!(
        sync_run.inserted + live.inserted,
        79,
        "{sync_run:?} {live:?}"
    );
    assert_eq!(sync_run.rejected + live.rejected, 0);
    assert_eq!(
        sync_run.fetched,
        sync_run.inserted
            + sync_run.updated
            + sync_run.unchanged
            + sync_run.deleted
            + sync_run.merged
    );
    // The revision the feed carried stays: the sync's older copy did not overwrite it.
    let rev_id = feed_features[0]["id"].as_str().unwrap();
    assert_eq!(
        stored[rev_id],
        feed_features[0]["properties"]["updated"].as_i64().unwrap()
    );
    service.shutdown(Duration::from_secs(5)).await;
}

quake_store::both_backends!(
    a_sync_and_the_live_lane_write_in_turn,
    async |db: TestDb| sync_and_live_scenario(db.store().await).await
);
