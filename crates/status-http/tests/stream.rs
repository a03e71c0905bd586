//! `GET /events/stream` on both backends, as a client reads it: a sync's inserts, updates,
//! deletions and merges arrive as SSE events in commit order, each once; filters; resume by
//! `Last-Event-ID` after a restart (a new store and app on the same database) loses and
//! repeats nothing; a client that falls behind is told and resumes; retention loss is told.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod sse;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::test;
use quake_store::both_backends;
use quake_store::testing::TestDb;
use quake_store::{EventRecord, Store, Ts};
use serde_json::{Value, json};
use status_http::{AppState, StreamSettings};
use sync_engine::Engine;

use common::fdsn::{Catalogue, FdsnMock, FdsnServer, fdsn_server};

const DAY: &str = "usgs_all_day_2014-04-14T1152Z.geojson";

use sse::Ev;

/// What a commit's wake-up must deliver within: less than the SQLite subscription's 2 s poll
/// and the hub's 30 s one, so a lost wake-up fails the test.
const WOKEN: Duration = Duration::from_millis(1500);

/// An event at 0°N `lon`°E of magnitude `mag`, as the write path stores it.
fn ev(id: &str, ids: &str, updated: i64, mag: f64, status: &str) -> EventRecord {
    let mut r = quake_store::testing::bare_record(id, ids, updated, &format!("h{updated}"), status);
    r.magnitude = Some(mag);
    r
}

/// Commits one page of `recs` as a sync would.
async fn commit(store: &Store, recs: &[EventRecord]) {
    store
        .apply_page(
            quake_store::PageWrite::new(recs),
            sync_engine::policy::decide,
        )
        .await
        .unwrap();
}

async fn prune_all(store: &Store) {
    let future = Ts(chrono::Utc::now() + chrono::Duration::hours(1));
    store.prune_changes(future).await.unwrap();
}

/// A stream being read.
struct Sse {
    body: BoxBody,
    buf: Vec<u8>,
}

impl Sse {
    /// The next event (comments and the `retry:` hint skipped); `None` when the stream ends.
    async fn next(&mut self) -> Option<Ev> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
                if let Some(ev) = sse::parse(&String::from_utf8(raw).unwrap()) {
                    return Some(ev);
                }
                continue;
            }
            let chunk = tokio::time::timeout(
                Duration::from_secs(30),
                std::future::poll_fn(|cx| Pin::new(&mut self.body).poll_next(cx)),
            )
            .await
            .expect("an event within 30 s")?;
            self.buf.extend_from_slice(&chunk.unwrap());
        }
    }

    /// The next event, which must come within [`WOKEN`] (heartbeats do not extend it).
    async fn woken(&mut self) -> Ev {
        tokio::time::timeout(WOKEN, self.next())
            .await
            .expect("an event within WOKEN")
            .expect("the stream goes on")
    }

    /// The next `n` events.
    async fn take(&mut self, n: usize) -> Vec<Ev> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await.expect("the stream goes on"));
        }
        out
    }
}

async fn open<S>(app: &S, uri: &str, last_id: Option<i64>) -> Sse
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
        >,
{
    let mut req = test::TestRequest::get().uri(uri);
    if let Some(id) = last_id {
        req = req.insert_header(("Last-Event-ID", id.to_string()));
    }
    let res = test::call_service(app, req.to_request()).await;
    assert_eq!(res.status(), 200, "{uri}");
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    Sse {
        body: res.into_body(),
        buf: Vec::new(),
    }
}

fn state(store: Store, upstream: &FdsnServer, settings: StreamSettings) -> (Engine, AppState) {
    let engine = common::engine(store, upstream);
    let state = common::state(engine.clone(), None).with_stream(&settings);
    (engine, state)
}

async fn sync(engine: &Engine) {
    engine
        .sync_once(sync_engine::Trigger::Cli)
        .await
        .expect("sync runs");
}

/// What the change log holds after `after`: `(seq, kind, id)`.
async fn log(store: &Store, after: i64) -> Vec<(i64, String, String)> {
    store
        .read_changes(after, 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.seq, c.kind.as_str().to_string(), c.event_id))
        .collect()
}

fn summary(evs: &[Ev]) -> Vec<(i64, String, String)> {
    evs.iter()
        .map(|e| {
            (
                e.id.expect("an id"),
                e.event.clone(),
                e.data["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The FDSN service's GeoJSON Features by id, for `query` parameters `q`.
async fn features<S>(app: &S, q: &str) -> BTreeMap<String, Value>
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
        >,
{
    let uri = format!("/fdsnws/event/1/query?format=geojson{q}");
    let res = test::call_service(app, test::TestRequest::get().uri(&uri).to_request()).await;
    if res.status() == 204 {
        return BTreeMap::new();
    }
    let body: Value = serde_json::from_slice(&test::read_body(res).await).unwrap();
    body["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["id"].as_str().unwrap().to_string(), f.clone()))
        .collect()
}

/// The day's catalogue, then a revision: one event updated, one deleted, and a new event
/// that lists another's id (a merge).
fn catalogues() -> (Catalogue, Catalogue, [String; 4]) {
    let first = Catalogue::from_fixture(DAY);
    let mut second = first.clone();
    let later = first.generated_ms + 60_000;
    second.generated_ms = first.generated_ms + 120_000;
    let f = &mut second.features;
    let updated = f[5]["id"].as_str().unwrap().to_string();
    f[5]["properties"]["updated"] = json!(later);
    f[5]["properties"]["place"] = json!("revised place");
    let deleted = f[7]["id"].as_str().unwrap().to_string();
    f[7]["properties"]["updated"] = json!(later);
    f[7]["properties"]["status"] = json!("deleted");
    let absorbed = f[9]["id"].as_str().unwrap().to_string();
    let mut merger = f[9].clone();
    merger["id"] = json!("zz0001merger");
    merger["properties"]["ids"] = json!(format!(",{absorbed},zz0001merger,"));
    merger["properties"]["code"] = json!("0001merger");
    merger["properties"]["net"] = json!("zz");
    merger["properties"]["updated"] = json!(later);
    f.push(merger);
    (
        first,
        second,
        [updated, deleted, absorbed, "zz0001merger".into()],
    )
}

both_backends!(
    changes_arrive_in_commit_order_and_resume,
    async |db: TestDb| {
        let (first, second, [updated, deleted, absorbed, merger]) = catalogues();
        let mock = FdsnMock::new(first.clone());
        let upstream = fdsn_server(mock.clone()).await;
        let store = db.store().await;
        let (engine, st) = state(store.clone(), &upstream, StreamSettings::default());
        let app = app!(st);

        let mut all = open(&app, "/events/stream", None).await;
        let mut big = open(&app, "/events/stream?minmagnitude=2.5", None).await;
        // Alaska and the Aleutians: a box across the antimeridian.
        let mut north = open(
            &app,
            "/events/stream?minlatitude=50&maxlatitude=72&minlongitude=170&maxlongitude=-130",
            None,
        )
        .await;
        let mut near = open(
            &app,
            "/events/stream?latitude=35.5&longitude=-120.8&maxradiuskm=300",
            None,
        )
        .await;

        sync(&engine).await;
        let n = first.features.len();
        let got = all.take(n).await;
        // Every insert, once, in the change log's (commit) order.
        assert_eq!(summary(&got), log(&store, 0).await);
        assert!(got.iter().all(|e| e.event == "insert"));
        // Each carries the Feature exactly as the FDSN service writes it.
        let stored = features(&app, "").await;
        assert_eq!(stored.len(), n);
        for e in &got {
            let id = e.data["id"].as_str().unwrap();
            assert_eq!(&e.data, &stored[id], "{id}");
        }
        // The filters give what the read API gives for the same area or magnitude.
        for (sse, q) in [
            (&mut big, "&minmagnitude=2.5"),
            (&mut near, "&latitude=35.5&longitude=-120.8&maxradiuskm=300"),
        ] {
            let want = features(&app, q).await;
            assert!(!want.is_empty() && want.len() < n, "{q}: {}", want.len());
            let ids: Vec<String> = sse
                .take(want.len())
                .await
                .iter()
                .map(|e| e.data["id"].as_str().unwrap().to_string())
                .collect();
            let mut sorted = ids.clone();
            sorted.sort();
            assert_eq!(sorted, want.keys().cloned().collect::<Vec<_>>(), "{q}");
        }
        let in_box: Vec<String> = first
            .features
            .iter()
            .filter(|f| {
                let c = &f["geometry"]["coordinates"];
                let (lon, lat) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
                (50.0..=72.0).contains(&lat) && (lon >= 170.0 || lon <= -130.0)
            })
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect();
        assert!(in_box.len() > 2 && in_box.len() < n);
        let mut box_ids: Vec<String> = summary(&north.take(in_box.len()).await)
            .into_iter()
            .map(|s| s.2)
            .collect();
        box_ids.sort();
        let mut in_box_sorted = in_box.clone();
        in_box_sorted.sort();
        assert_eq!(box_ids, in_box_sorted);

        // The revision: an update, a deletion, an insert that merges another event.
        let head = got.last().unwrap().id.unwrap();
        mock.set(second.clone());
        sync(&engine).await;
        let changed = log(&store, head).await;
        assert_eq!(changed.len(), 4, "{changed:?}");
        let revision = all.take(4).await;
        assert_eq!(summary(&revision), changed);
        let by_kind: BTreeMap<&str, &Ev> = revision.iter().map(|e| (e.event.as_str(), e)).collect();
        let now = features(&app, "").await;
        assert_eq!(by_kind["update"].data, now[&updated]);
        assert_eq!(now[&updated]["properties"]["place"], "revised place");
        assert_eq!(
            by_kind["delete"].data,
            json!({"id": deleted, "status": "deleted"})
        );
        assert_eq!(
            by_kind["merge"].data,
            json!({"id": absorbed, "merged_into": merger})
        );
        assert_eq!(by_kind["insert"].data, now[&merger]);
        let everything: Vec<Ev> = got.iter().chain(&revision).cloned().collect();
        drop((all, big, north, near, app, engine));

        // A restart: a new store, engine and app on the same database. A client resuming from
        // the 10th event gets every later one, once, then what is committed next.
        let store2 = db.store().await;
        let (engine2, st2) = state(store2.clone(), &upstream, StreamSettings::default());
        let app2 = app!(st2);
        let from = everything[9].id.unwrap();
        let mut resumed = open(&app2, "/events/stream", Some(from)).await;
        let mut by_param = open(&app2, &format!("/events/stream?since={from}"), None).await;
        let rest = everything.len() - 10;
        // The same changes, once each, in the same order; a replayed Feature is the event as it
        // is now (the insert of the event revised later carries the revision).
        let replayed = resumed.take(rest).await;
        assert_eq!(summary(&replayed), summary(&everything[10..]));
        assert_eq!(
            summary(&by_param.take(rest).await),
            summary(&everything[10..])
        );
        let now = features(&app2, "&includedeleted=true").await;
        for e in &replayed {
            let id = e.data["id"].as_str().unwrap();
            match e.event.as_str() {
                // A merged event has left the read API: its Feature is as it was stored.
                "insert" | "update" if id == absorbed => assert_eq!(e.data["id"], id),
                "insert" | "update" => assert_eq!(&e.data, &now[id], "{id}"),
                _ => assert!(everything.contains(e), "{e:?}"),
            }
        }
        let mut third = second.clone();
        third.generated_ms += 120_000;
        third.features[20]["properties"]["updated"] = json!(second.generated_ms + 60_000);
        third.features[20]["properties"]["place"] = json!("third revision");
        mock.set(third.clone());
        sync(&engine2).await;
        let next = resumed.next().await.unwrap();
        assert_eq!(
            (next.event.as_str(), next.data["id"].clone()),
            ("update", third.features[20]["id"].clone())
        );
        assert_eq!(by_param.next().await.unwrap(), next);

        // Retention: once the log is pruned, a client resuming from an older id is told.
        {
            let future = Ts(chrono::Utc::now() + chrono::Duration::hours(1));
            store2.prune_changes(future).await.unwrap();
        }
        let mut late = open(&app2, "/events/stream", Some(from)).await;
        let lost = late.next().await.unwrap();
        assert_eq!(lost.event, "lost");
        assert_eq!(
            lost.id, next.id,
            "a lost event's id is where the stream resumes"
        );
        assert_eq!(lost.data["last_id"], from);
        assert_eq!(lost.data["resumed_after"], next.id.unwrap());
    }
);

both_backends!(a_slow_client_is_told_and_resumes, async |db: TestDb| {
    let first = Catalogue::from_fixture(DAY);
    let upstream = fdsn_server(FdsnMock::new(first.clone())).await;
    let store = db.store().await;
    let settings = StreamSettings {
        client_buffer: 2u64.try_into().unwrap(),
        ..StreamSettings::default()
    };
    let (engine, st) = state(store.clone(), &upstream, settings);
    let streams = st.streams().clone();
    let app = app!(st);
    // Connected, but not reading while the sync commits its 146 inserts, until the hub has
    // given up waiting for it.
    let mut slow = open(&app, "/events/stream", None).await;
    sync(&engine).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while streams.cut_off() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow client was never cut off"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let logged = log(&store, 0).await;
    assert_eq!(logged.len(), first.features.len());
    let mut got = Vec::new();
    let overflow = loop {
        let e = slow.next().await.expect("an overflow event before the end");
        if e.event == "overflow" {
            break e;
        }
        got.push(e);
    };
    assert!(got.len() < logged.len(), "{}", got.len());
    let last = got.last().map_or(0, |e| e.id.unwrap());
    assert_eq!(overflow.id, Some(last));
    assert_eq!(overflow.data["last_id"], last);
    assert!(
        slow.next().await.is_none(),
        "the stream ends after the overflow"
    );
    // It resumes from its id and gets the rest, nothing twice.
    let mut again = open(&app, "/events/stream", Some(last)).await;
    got.extend(again.take(logged.len() - got.len()).await);
    assert_eq!(summary(&got), logged);
});

both_backends!(bad_parameters_and_the_client_limit, async |db: TestDb| {
    let upstream = fdsn_server(FdsnMock::new(Catalogue::from_fixture(DAY))).await;
    let settings = StreamSettings {
        max_clients: 1u64.try_into().unwrap(),
        ..StreamSettings::default()
    };
    let (_engine, st) = state(db.store().await, &upstream, settings);
    let app = app!(st);
    for (q, name) in [
        ("minmagnitude=big", "minmagnitude"),
        ("minlatitude=-91", "minlatitude"),
        ("maxlongitude=181", "maxlongitude"),
        ("latitude=10&maxradiuskm=5", "longitude"),
        ("maxradiuskm=-1", "maxradiuskm"),
        ("since=x", "since"),
        ("color=red", "color"),
    ] {
        let (status, body) = call!(&app, common::get(&format!("/events/stream?{q}")));
        assert_eq!(status, 400, "{q}");
        assert!(
            body["error"].as_str().unwrap().starts_with(name),
            "{q}: {body}"
        );
    }
    let (status, body) = call!(
        &app,
        common::get("/events/stream").insert_header(("Last-Event-ID", "abc"))
    );
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("Last-Event-ID"));
    let not_ascii = actix_web::http::header::HeaderValue::from_bytes(b"12\xc3\xa9").unwrap();
    let (status, body) = call!(
        &app,
        common::get("/events/stream").insert_header(("Last-Event-ID", not_ascii))
    );
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().starts_with("Last-Event-ID"),
        "{body}"
    );
    let _one = open(&app, "/events/stream", None).await;
    let (status, body) = call!(&app, common::get("/events/stream"));
    assert_eq!(status, 503);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("stream.max_clients")
    );
});

both_backends!(a_prune_during_a_replay_is_told, async |db: TestDb| {
    let upstream = fdsn_server(FdsnMock::new(Catalogue::from_fixture(DAY))).await;
    let store = db.store().await;
    let (_engine, st) = state(store.clone(), &upstream, StreamSettings::default());
    let app = app!(st);
    // More changes than a replay reads at once.
    let page: Vec<EventRecord> = (0..300)
        .map(|n| ev(&format!("p{n}"), &format!(",p{n},"), 1000, 3.0, "reviewed"))
        .collect();
    commit(&store, &page).await;
    let logged = log(&store, 0).await;
    let head = logged.last().unwrap().0;
    let mut client = open(&app, "/events/stream?since=0", None).await;
    // Its replay has read its first rows and waits for this reader; the log is pruned now.
    let mut got = client.take(5).await;
    prune_all(&store).await;
    let lost = loop {
        let e = client.next().await.expect("a lost event");
        if e.event == "lost" {
            break e;
        }
        got.push(e);
    };
    assert!(got.len() < logged.len(), "{}", got.len());
    assert_eq!(summary(&got), logged[..got.len()]);
    let last = got.last().unwrap().id.unwrap();
    assert_eq!(lost.id, Some(head));
    assert_eq!(
        (&lost.data["last_id"], &lost.data["resumed_after"]),
        (&json!(last), &json!(head))
    );
    // Then the live changes.
    commit(&store, &[ev("after", ",after,", 1000, 3.0, "reviewed")]).await;
    let e = client.woken().await;
    assert_eq!(
        (e.event.as_str(), &e.data["id"]),
        ("insert", &json!("after"))
    );
});

both_backends!(an_id_beyond_the_head_is_told, async |db: TestDb| {
    let upstream = fdsn_server(FdsnMock::new(Catalogue::from_fixture(DAY))).await;
    let store = db.store().await;
    let (_engine, st) = state(store.clone(), &upstream, StreamSettings::default());
    let app = app!(st);
    commit(&store, &[ev("a", ",a,", 1000, 3.0, "reviewed")]).await;
    let head = log(&store, 0).await.last().unwrap().0;
    // An id from before the database was recreated.
    let mut client = open(&app, "/events/stream", Some(head + 1000)).await;
    let lost = client.next().await.unwrap();
    assert_eq!((lost.event.as_str(), lost.id), ("lost", Some(head)));
    assert_eq!(
        (&lost.data["last_id"], &lost.data["resumed_after"]),
        (&json!(head + 1000), &json!(head))
    );
    commit(&store, &[ev("b", ",b,", 1000, 3.0, "reviewed")]).await;
    let e = client.woken().await;
    assert_eq!((e.event.as_str(), &e.data["id"]), ("insert", &json!("b")));
    assert!(e.id.unwrap() > head);
});

both_backends!(
    deletions_and_merges_pass_every_filter,
    async |db: TestDb| {
        let upstream = fdsn_server(FdsnMock::new(Catalogue::from_fixture(DAY))).await;
        let store = db.store().await;
        let (_engine, st) = state(store.clone(), &upstream, StreamSettings::default());
        let app = app!(st);
        let mut big = open(&app, "/events/stream?minmagnitude=5", None).await;
        commit(
            &store,
            &[
                ev("small", ",small,", 1000, 2.0, "reviewed"),
                ev("quake", ",quake,", 1000, 5.2, "reviewed"),
            ],
        )
        .await;
        // The insert is read before the revision commits: a change is sent with its event's
        // row as it is when the hub reads it, and a revision already committed would keep the
        // insert under the filter (a race this test once lost, one run in four).
        let first = big.take(1).await;
        // Revised below the filter (not sent: it left the filter), then deleted (sent: the client
        // has it); the small event merged into another small one (sent).
        commit(&store, &[ev("quake", ",quake,", 2000, 4.8, "reviewed")]).await;
        commit(&store, &[ev("quake", ",quake,", 3000, 4.8, "deleted")]).await;
        commit(
            &store,
            &[ev("merger", ",small,merger,", 4000, 2.0, "reviewed")],
        )
        .await;
        let want: Vec<(i64, String, String)> = log(&store, 0)
            .await
            .into_iter()
            .filter(|(_, kind, id)| {
                (kind == "insert" && id == "quake") || kind == "delete" || kind == "merge"
            })
            .collect();
        assert_eq!(want.len(), 3, "{want:?}");
        let mut got = first;
        got.extend(big.take(2).await);
        assert_eq!(summary(&got), want);
        assert_eq!(got[2].data, json!({"id": "small", "merged_into": "merger"}));
    }
);

both_backends!(
    a_burst_larger_than_the_buffer_reaches_a_reader,
    async |db: TestDb| {
        let upstream = fdsn_server(FdsnMock::new(Catalogue::from_fixture(DAY))).await;
        let store = db.store().await;
        let settings = StreamSettings {
            client_buffer: 2u64.try_into().unwrap(),
            ..StreamSettings::default()
        };
        let (_engine, st) = state(store.clone(), &upstream, settings);
        let app = app!(st);
        let mut client = open(&app, "/events/stream", None).await;
        // One page of 200 changes, read by the hub at once, to a client that reads them.
        let page: Vec<EventRecord> = (0..200)
            .map(|n| ev(&format!("b{n}"), &format!(",b{n},"), 1000, 3.0, "reviewed"))
            .collect();
        commit(&store, &page).await;
        let got = client.take(200).await;
        assert!(
            got.iter().all(|e| e.event == "insert"),
            "{:?}",
            got.iter().find(|e| e.event != "insert")
        );
        assert_eq!(summary(&got), log(&store, 0).await);
    }
);
