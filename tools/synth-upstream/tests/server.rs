//! The synthetic upstream over HTTP: determinism, paging, the cap, the life of events
//! (deletions, merges), and quakesync's own client reading every answer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use quake_api::{FdsnClient, FdsnQuery, HttpOptions};
use serde_json::Value;
use synth_upstream::{Catalogue, Deleted, Filter, SynthConfig, SynthServer, serve};

fn config(events: u64, seed: u64) -> SynthConfig {
    SynthConfig {
        events,
        seed,
        ..SynthConfig::default()
    }
}

fn start(cfg: SynthConfig) -> SynthServer {
    serve("127.0.0.1:0".parse().unwrap(), cfg).unwrap()
}

async fn get(server: &SynthServer, path_and_query: &str) -> (u16, String) {
    let url = format!("http://{}{path_and_query}", server.addr());
    // A plain HTTP GET through tokio, so the test reads exactly what was sent.
    let (status, body) = tokio::task::spawn_blocking(move || http_get(&url))
        .await
        .unwrap();
    (status, body)
}

/// A minimal HTTP/1.0 GET (the server closes the connection after the answer).
fn http_get(url: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// `GET /fdsnws/event/1/query?format=geojson&{params}`.
async fn query(server: &SynthServer, params: &str) -> (u16, String) {
    get(
        server,
        &format!("/fdsnws/event/1/query?format=geojson&{params}"),
    )
    .await
}

fn features(body: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(body).unwrap();
    v["features"].as_array().unwrap().clone()
}

fn client(server: &SynthServer) -> FdsnClient {
    FdsnClient::new(&server.query_url(), HttpOptions::default()).unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[tokio::test]
async fn the_same_seed_gives_the_same_catalogue_and_another_seed_another() {
    let a = start(config(10_000, 7));
    let b = start(config(10_000, 7));
    let c = start(config(10_000, 8));
    let q = "/fdsnws/event/1/query?format=geojson&starttime=2000-01-01&orderby=time-asc&includedeleted=true&limit=2000&offset=3001";
    let (sa, ba) = get(&a, q).await;
    let (sb, bb) = get(&b, q).await;
    let (_, bc) = get(&c, q).await;
    assert_eq!((sa, sb), (200, 200));
    let (fa, fb, fc) = (features(&ba), features(&bb), features(&bc));
    assert_eq!(fa.len(), 2000);
    assert_eq!(fa, fb, "two servers with one seed answer the same features");
    assert_ne!(fa, fc);
    // And a third answer of the same server is the same again (nothing is cached or drawn).
    assert_eq!(features(&get(&a, q).await.1), fa);
}

#[tokio::test]
async fn pages_concatenate_to_the_whole_ordered_catalogue() {
    let server = start(config(12_000, 3));
    let cat = Catalogue::new(config(12_000, 3));
    let now = cat.config().now.timestamp_millis();
    let all = Filter {
        start_ms: Some(t("2000-01-01T00:00:00Z").timestamp_millis()),
        deleted: Deleted::Include,
        ..Filter::default()
    };
    let expected: Vec<String> = cat
        .candidates(&all, true)
        .filter(|&i| cat.matches(i, now, &all))
        .map(|i| cat.event(i, now).unwrap().id)
        .collect();
    assert!(
        expected.len() > 11_500 && expected.len() < 12_000,
        "merged duplicates leave: {}",
        expected.len()
    );

    // limit/offset pages, oldest first, as quakesync's pager reads them.
    let mut paged = Vec::new();
    let mut times = Vec::new();
    for offset in (1..).step_by(1000) {
        let (status, body) = query(&server, &format!("starttime=2000-01-01T00:00:00&orderby=time-asc&includedeleted=true&limit=1000&offset={offset}"
        ))
        .await;
        assert_eq!(status, 200, "{body}");
        let page = features(&body);
        for f in &page {
            paged.push(f["id"].as_str().unwrap().to_string());
            times.push(f["properties"]["time"].as_i64().unwrap());
        }
        if page.len() < 1000 {
            break;
        }
    }
    assert_eq!(paged, expected);
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "time-asc is in time order"
    );
    assert_eq!(
        paged.iter().collect::<BTreeSet<_>>().len(),
        paged.len(),
        "every id once"
    );

    // Newest first is the same set reversed (no two events share a millisecond here).
    let mut desc = Vec::new();
    for offset in (1..).step_by(5000) {
        let (_, body) = query(
            &server,
            &format!("starttime=2000-01-01&includedeleted=true&limit=5000&offset={offset}"),
        )
        .await;
        let page = features(&body);
        desc.extend(page.iter().map(|f| f["id"].as_str().unwrap().to_string()));
        if page.len() < 5000 {
            break;
        }
    }
    desc.reverse();
    assert_eq!(desc, expected);

    // Keyset continuation: the next page starts at the last origin time read, given with
    // milliseconds and Z (the service floors it to the second, as USGS does), and the ids
    // already read are skipped.
    let mut keyset: Vec<String> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut from = "2000-01-01T00:00:00.000Z".to_string();
    loop {
        let (status, body) = query(
            &server,
            &format!("starttime={from}&orderby=time-asc&includedeleted=true&limit=1000"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let page = features(&body);
        let mut new = 0;
        for f in &page {
            let id = f["id"].as_str().unwrap().to_string();
            if seen.insert(id.clone()) {
                keyset.push(id);
                new += 1;
            }
        }
        if page.len() < 1000 {
            break;
        }
        assert!(new > 0, "a full page brought nothing new");
        let last = page.last().unwrap()["properties"]["time"].as_i64().unwrap();
        from = DateTime::from_timestamp_millis(last)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
    }
    assert_eq!(keyset, expected);

    // count agrees, and counts the limited query as USGS does.
    let (_, body) = get(
        &server,
        "/fdsnws/event/1/count?format=geojson&starttime=2000-01-01&includedeleted=true",
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["count"].as_u64(), Some(expected.len() as u64));
    assert_eq!(v["maxAllowed"].as_u64(), Some(20_000));
    let near_end = expected.len() - 49;
    let (_, body) = get(&server, &format!("/fdsnws/event/1/count?starttime=2000-01-01&includedeleted=true&limit=100&offset={near_end}")).await;
    assert_eq!(body, "50");
}

#[tokio::test]
async fn the_cap_is_usgs_s() {
    let server = start(config(30_000, 1));
    let (status, body) = query(&server, "starttime=2000-01-01").await;
    assert_eq!(status, 400);
    assert!(body.starts_with("Error 400: Bad Request\n\n"), "{body}");
    let line = body.lines().nth(2).unwrap();
    assert!(line.ends_with(" matching events exceeds search limit of 20000. Modify the search to match fewer events."), "{line}");
    let n: u64 = line.split(' ').next().unwrap().parse().unwrap();
    assert!(n > 20_000 && n < 30_000);

    let (status, body) = query(&server, "starttime=2000-01-01&limit=20001").await;
    assert_eq!(status, 400);
    assert!(
        body.contains("Bad limit value \"20001\". Valid values are 0 <= limit <= 20000"),
        "{body}"
    );

    // With a limit the query is never over the cap.
    let (status, body) = query(&server, "starttime=2000-01-01&limit=20000").await;
    assert_eq!(status, 200);
    assert_eq!(features(&body).len(), 20_000);

    let (status, body) = get(
        &server,
        "/fdsnws/event/1/count?format=geojson&starttime=2000-01-01",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        format!(
            "{{\"count\":{n},\"maxAllowed\":20000,\"error\":\"{n} matching events exceeds search limit of 20000. A query using these search parameters would fail. Modify the search to match fewer events.\"}}"
        )
    );
    // A window under the cap is answered whole.
    let (status, body) = query(&server, "starttime=2010-01-01&endtime=2010-12-31T23:59:59").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(
        v["metadata"].get("limit").is_none(),
        "limit and offset appear only when limit was given"
    );
    assert_eq!(
        v["metadata"]["count"].as_u64(),
        Some(features(&body).len() as u64)
    );
    assert_eq!(v["bbox"].as_array().map(Vec::len), Some(6));

    let (status, body) = query(&server, "minlatitude=10").await;
    assert_eq!(status, 400);
    assert!(
        body.contains("\"minlatitude\" is not served by this synthetic upstream"),
        "{body}"
    );
    let (status, _) = query(&server, "starttime=yesterday-ish").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn quakesync_s_client_reads_every_answer_with_nothing_rejected() {
    let server = start(config(20_000, 5));
    let client = client(&server);
    let base = FdsnQuery {
        starttime: Some(t("2000-01-01T00:00:00Z")),
        includedeleted: true,
        orderby: Some("time-asc".into()),
        ..FdsnQuery::default()
    };
    let total = client.count(&base).await.unwrap();
    assert_eq!(total.max_allowed, Some(20_000));
    let mut read = 0u64;
    let mut deleted = 0;
    let mut multi = 0;
    let mut nets = BTreeMap::<String, u64>::new();
    let mut offset = 1;
    loop {
        let page = client
            .query(&FdsnQuery {
                limit: Some(20_000),
                offset: Some(offset),
                ..base.clone()
            })
            .await
            .unwrap();
        assert!(
            page.rejected.is_empty(),
            "rejected: {:?}",
            page.rejected.first()
        );
        assert_eq!(page.metadata_count, Some(page.events.len() as u64));
        assert_eq!(
            page.generated.map(|g| g.timestamp_millis()),
            Some(server.upstream().now_ms())
        );
        for e in &page.events {
            deleted += usize::from(e.is_deleted());
            multi += usize::from(e.ids.len() > 1);
            *nets.entry(e.net.clone().unwrap()).or_default() += 1;
            assert!(e.ids.contains(&e.id));
            assert!(e.updated >= e.time);
        }
        read += page.events.len() as u64;
        offset += 20_000;
        if page.events.len() < 20_000 {
            break;
        }
    }
    assert_eq!(read, total.count);
    // Shaped like the fixtures: a few per mille deleted, a few per cent with aliases,
    // every network of the table present.
    assert!((20..200).contains(&deleted), "deleted: {deleted}");
    assert!(
        read / 60 < multi as u64 && (multi as u64) < read / 8,
        "multi-id: {multi} of {read}"
    );
    assert!(nets.len() >= 14, "{nets:?}");

    // eventid: one Feature, found by an alias too.
    let cat = Catalogue::new(config(20_000, 5));
    let now = cat.config().now.timestamp_millis();
    let with_alias = (0..cat.len())
        .filter_map(|i| cat.event(i, now))
        .find(|e| e.status != "deleted" && e.ids.matches(',').count() > 2)
        .unwrap();
    let alias = with_alias
        .ids
        .split(',')
        .find(|a| !a.is_empty() && *a != with_alias.id)
        .unwrap();
    for id in [with_alias.id.as_str(), alias] {
        let page = client
            .query(&FdsnQuery {
                eventid: Some(id.to_string()),
                ..FdsnQuery::default()
            })
            .await
            .unwrap();
        assert!(page.rejected.is_empty());
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].id, with_alias.id, "{id} finds the event");
    }
}

#[tokio::test]
async fn events_are_revised_deleted_and_merged_as_the_clock_moves() {
    let cfg = config(15_000, 11);
    let cat = Catalogue::new(cfg.clone());
    let late = cfg.now.timestamp_millis();
    let server = start(cfg.clone());

    // A merge: at the end, an event lists an id that was an event of its own in the days
    // after its origin time (published, then associated within days).
    let mut merged = None;
    'search: for i in 1..cat.len() {
        let Some(e) = cat.event(i, late) else {
            continue;
        };
        for a in e.ids.split(',').filter(|a| !a.is_empty() && *a != e.id) {
            for hour in 0..24 * 8 {
                let then = e.time_ms + hour * 3_600_000;
                if let Some(j) = cat.find(a, then)
                    && j != e.index
                    && cat.event(j, then).is_some_and(|x| x.id == a)
                {
                    merged = Some((e.id.clone(), a.to_string(), then));
                    break 'search;
                }
            }
        }
    }
    let (survivor, absorbed, then) = merged.expect("a merge in 15k events");
    server.set_now(DateTime::from_timestamp_millis(then).unwrap());
    let (status, body) = query(&server, &format!("eventid={absorbed}")).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["id"].as_str(),
        Some(absorbed.as_str()),
        "before the merge it is an event of its own"
    );
    server.set_now(cfg.now);
    let (status, body) = query(&server, &format!("eventid={absorbed}")).await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["id"].as_str(),
        Some(survivor.as_str()),
        "after it, its id finds the survivor"
    );
    assert!(
        v["properties"]["ids"]
            .as_str()
            .unwrap()
            .contains(&format!(",{absorbed},"))
    );
    assert!(v["properties"].get("products").is_some() && v["properties"].get("detail").is_none());

    // A deletion: 409 without includedeleted, the feature with it, absent from plain queries.
    let gone = (0..cat.len())
        .filter_map(|i| cat.event(i, late))
        .find(|e| e.status == "deleted")
        .unwrap();
    let (status, body) = query(&server, &format!("eventid={}", gone.id)).await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = query(&server, &format!("eventid={}&includedeleted=true", gone.id)).await;
    assert_eq!(status, 200);
    let day = |ms: i64| {
        DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    let window = format!(
        "starttime={}&endtime={}",
        day(gone.time_ms - 1000),
        day(gone.time_ms + 1000)
    );
    let (_, body) = query(&server, &window).await;
    assert!(features(&body).iter().all(|f| f["id"] != gone.id.as_str()));
    let (_, body) = query(&server, &format!("{window}&includedeleted=only")).await;
    assert!(features(&body).iter().any(|f| f["id"] == gone.id.as_str()));
    let (status, _) = query(&server, "eventid=zz0000").await;
    assert_eq!(status, 404);

    // updatedafter: the service's answer is every event updated since, wherever it is in time.
    for days_back in [5i64, 40, 400] {
        let u = cfg.now - Duration::days(days_back);
        let f = Filter {
            start_ms: Some(cfg.start.timestamp_millis()),
            updated_after_ms: Some(u.timestamp_millis() / 1000 * 1000),
            deleted: Deleted::Include,
            ..Filter::default()
        };
        let brute: Vec<String> = (0..cat.len())
            .filter(|&i| cat.matches(i, late, &f))
            .map(|i| cat.event(i, late).unwrap().id)
            .collect();
        let (status, body) = query(&server, &format!("starttime=2000-01-01&updatedafter={}&includedeleted=true&orderby=time-asc&limit=20000",
            u.format("%Y-%m-%dT%H:%M:%S")
        ))
        .await;
        assert_eq!(status, 200);
        let got: Vec<String> = features(&body)
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, brute, "updatedafter {days_back} days back");
        assert!(days_back < 40 || !got.is_empty());
    }

    // minmagnitude keeps only events with a magnitude at or above it.
    let (_, body) = query(&server, "starttime=2000-01-01&minmagnitude=4.5&limit=20000").await;
    let big = features(&body);
    assert!(!big.is_empty());
    assert!(
        big.iter()
            .all(|f| f["properties"]["mag"].as_f64().unwrap() >= 4.5)
    );
}
