//! `quakesync backfill` through the real binary, against a mock FDSN service with a search
//! limit of 400 over the 4711-event 2018 week, into a SQLite file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use chrono::NaiveDateTime;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const CAP: usize = 400;

/// The FDSN `query` and `count` methods over a fixture: `starttime`/`endtime`,
/// `orderby=time-asc`, `limit`, 1-based `offset`; over the cap, 400 as USGS says it.
struct Fdsn {
    features: Arc<Vec<Value>>,
}

fn time_param(q: &HashMap<String, String>, k: &str) -> Option<i64> {
    q.get(k).map(|s| {
        NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
            .unwrap()
            .and_utc()
            .timestamp_millis()
    })
}

impl Respond for Fdsn {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let q: HashMap<String, String> = req.url.query_pairs().into_owned().collect();
        let (start, end) = (time_param(&q, "starttime"), time_param(&q, "endtime"));
        let time = |f: &Value| f["properties"]["time"].as_i64().unwrap();
        let mut hits: Vec<&Value> = self
            .features
            .iter()
            .filter(|f| start.is_none_or(|s| time(f) >= s) && end.is_none_or(|e| time(f) < e))
            .collect();
        hits.sort_by_key(|f| (time(f), f["id"].as_str().unwrap().to_string()));
        let too_many = |n: usize| {
            ResponseTemplate::new(400).set_body_string(format!(
                "Error 400: Bad Request\n\n{n} matching events exceeds search limit of {CAP}. Modify the search to match fewer events.\n"
            ))
        };
        if req.url.path().ends_with("/count") {
            return ResponseTemplate::new(200)
                .set_body_json(json!({"count": hits.len(), "maxAllowed": CAP}));
        }
        let limit: Option<usize> = q.get("limit").map(|l| l.parse().unwrap());
        let n = limit.map_or(hits.len(), |l| hits.len().min(l));
        if n > CAP {
            return too_many(n);
        }
        let offset: usize = q.get("offset").map_or(1, |o| o.parse().unwrap());
        let page: Vec<&Value> = hits
            .into_iter()
            .skip(offset - 1)
            .take(limit.unwrap_or(usize::MAX))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "type": "FeatureCollection",
            "metadata": {"generated": 1_528_967_940_000_i64, "status": 200, "count": page.len()},
            "features": page,
        }))
    }
}

async fn fdsn_server() -> MockServer {
    let v: Value =
        serde_json::from_slice(&support::fixture("usgs_all_week_2018-06-14T0919Z.geojson"))
            .unwrap();
    let features = Arc::new(v["features"].as_array().unwrap().clone());
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex("^/fdsnws/event/1/(query|count)$"))
        .respond_with(Fdsn { features })
        .mount(&server)
        .await;
    server
}

fn quakesync(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quakesync"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_through_the_binary() {
    let server = fdsn_server().await;
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("q.db").display()),
        ),
        (
            "QUAKESYNC_SOURCE_URL",
            format!("{}/fdsnws/event/1/query", server.uri()),
        ),
        ("QUAKESYNC_MAX_RETRIES", "0".to_string()),
    ];
    let args = [
        "backfill",
        "--start",
        "2018-06-07T00:00:00Z",
        "--end",
        "2018-06-15T00:00:00Z",
        "--pause-ms",
        "0",
        "--batch-size",
        "400",
    ];
    let run = {
        let dir = dir.path().to_path_buf();
        let env = env.clone();
        move || quakesync(&dir, &args, &env)
    };

    let out = tokio::task::spawn_blocking(run.clone()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("total processed"), "{stdout}");
    assert!(
        stdout.contains("4711 synced (4711 inserted, 0 updated, 0 deleted, 0 merged), 0 skipped (0 unchanged, 0 rejected), 4711 total processed"),
        "{stdout}"
    );
    // Not a terminal: one plain log line per window instead of a bar.
    assert!(stderr.contains("Backfill window 1/"), "{stderr}");
    let windows = stderr.matches("Backfill window ").count();
    assert!(windows > 11, "{windows} windows\n{stderr}");
    let requests = server.received_requests().await.unwrap();
    assert!(requests.iter().any(|r| r.url.path().ends_with("/count")));

    // Again: every window is done, nothing is fetched or written.
    let seen = requests.len();
    let out = tokio::task::spawn_blocking(run).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains(" 0 total processed"), "{stdout}");
    assert_eq!(server.received_requests().await.unwrap().len(), seen);
}

#[test]
fn backfill_refuses_an_empty_range_and_a_non_fdsn_source() {
    let dir = tempfile::tempdir().unwrap();
    let db = (
        "DATABASE_URL",
        format!("sqlite://{}", dir.path().join("q.db").display()),
    );
    let out = quakesync(
        dir.path(),
        &[
            "backfill",
            "--start",
            "2018-06-07T00:00:00Z",
            "--end",
            "2018-06-07T00:00:00Z",
        ],
        std::slice::from_ref(&db),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("range"));

    let out = quakesync(
        dir.path(),
        &["backfill", "--start", "2018-06-07T00:00:00Z"],
        &[db, ("QUAKESYNC_SOURCE_KIND", "feed".to_string())],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("FDSN"));
}
