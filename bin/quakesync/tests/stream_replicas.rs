//! `GET /events/stream` across replicas: two `quakesync serve` processes on one PostgreSQL
//! database, a client of one hears what a sync run by the other commits (LISTEN/NOTIFY);
//! when the listening connection is killed it reconnects and no change is lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../crates/sync-engine/tests/common/mod.rs"]
mod common;
#[path = "../../../crates/status-http/tests/sse/mod.rs"]
mod sse;
mod support;

use std::time::Duration;

/// What a NOTIFY must deliver within: less than the listener's 15 s check and the hub's 30 s
/// poll, so a lost wake-up fails the test.
const WOKEN: Duration = Duration::from_millis(1500);
/// After the listener was killed: its reconnect (backoff from 100 ms) re-reads the head.
const RECONNECTED: Duration = Duration::from_secs(5);

use common::{Catalogue, FdsnMock, fdsn_server};
use quake_store::testing::TestDb;
use serde_json::json;
use sse::Sse;
use support::{Serve, TOKEN, http, quakesync_from_epoch};

const NULL_MAG: &str = "usgs_fdsn_query_2021-11-09T2234Z_null-mag.geojson"; // 3 events

/// The `pid`s of the change-log listeners connected to `url`'s database.
async fn listeners(url: &str) -> Vec<i32> {
    common::pg_client(url)
        .await
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'quakesync listen' \
             AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Ends a session, as a server restart or an operator would (and waits until it has ended).
async fn terminate(url: &str, pid: i32) {
    common::pg_client(url)
        .await
        .query("SELECT pg_terminate_backend($1, 60000)", &[&pid])
        .await
        .unwrap();
}

async fn sync_on(serve: &Serve) {
    let (status, run) = http(serve.port, "POST", "/sync?wait=true", Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(
        (status, &run["status"]),
        (200, &json!("succeeded")),
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_of_one_replica_hears_the_other_and_survives_a_lost_listener() {
    let Some(db) = TestDb::postgres("stream_replicas_hear_each_other").await else {
        return;
    };
    db.store().await; // migrated before the processes start
    let first = Catalogue::from_fixture(NULL_MAG);
    let mock = FdsnMock::new(first.clone());
    let up = fdsn_server(mock.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    // Replica A serves clients and never syncs; replica B syncs when asked.
    let mut cmd = quakesync_from_epoch(dir.path(), &db.url, &up.uri());
    cmd.env("QUAKESYNC_SYNC_ENABLED", "false");
    let mut a = Serve::start(cmd, dir.path(), "a");
    let mut cmd = quakesync_from_epoch(dir.path(), &db.url, &up.uri());
    cmd.env("QUAKESYNC_STARTUP_DELAY_SECS", "3600");
    let mut b = Serve::start(cmd, dir.path(), "b");
    a.wait_ready().await;
    b.wait_ready().await;

    let mut client = Sse::open(a.port, "/events/stream").await;
    // The `retry:` hint comes once the client has its place in the stream.
    let hint = client.frame().await;
    assert!(hint.starts_with("retry: "), "{hint:?}");
    sync_on(&b).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let e = client.next_within(WOKEN).await;
        assert_eq!(e.event, "insert", "{e:?}");
        ids.push(e.data["id"].as_str().unwrap().to_string());
        assert!(e.id.is_some());
    }
    ids.sort();
    assert_eq!(ids, ["ci38088992", "nc72955525", "nc72955530"]);

    // The listening connections die (each replica has one: its hub starts with `serve`,
    // to prune the log); B commits a revision meanwhile.
    let before = listeners(&db.url).await;
    assert_eq!(before.len(), 2, "one listener per replica: {before:?}");
    for pid in &before {
        terminate(&db.url, *pid).await;
    }
    let mut second = first.clone();
    second.generated_ms += 600_000;
    let later = first.generated_ms + 300_000;
    second.features[1]["properties"]["updated"] = json!(later);
    second.features[1]["properties"]["place"] = json!("revised while A was not listening");
    mock.set(second.clone());
    sync_on(&b).await;
    let e = client.next_within(RECONNECTED).await;
    assert_eq!(
        (
            e.event.as_str(),
            &e.data["id"],
            &e.data["properties"]["place"]
        ),
        (
            "update",
            &second.features[1]["id"],
            &json!("revised while A was not listening")
        ),
        "{e:?}"
    );
    // Both listen again, on new connections, and A said what happened.
    let t = std::time::Instant::now();
    loop {
        let now = listeners(&db.url).await;
        if now.len() == 2 && now.iter().all(|p| !before.contains(p)) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no new listeners: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(a.log().contains("LISTEN connection lost"), "{}", a.log());
    // And the next commit reaches the client as before.
    let mut third = second.clone();
    third.generated_ms += 600_000;
    third.features[2]["properties"]["updated"] = json!(later + 300_000);
    third.features[2]["properties"]["status"] = json!("deleted");
    mock.set(third);
    sync_on(&b).await;
    let e = client.next_within(WOKEN).await;
    assert_eq!(e.event, "delete", "{e:?}");
    assert_eq!(
        e.data,
        json!({"id": first.features[2]["id"], "status": "deleted"})
    );
    assert_eq!(a.terminate(), Some(0), "{}", a.log());
    assert_eq!(b.terminate(), Some(0), "{}", b.log());
}
