//! Read API latency on PostgreSQL with 100,000 stored events: median and p95 of
//! `GET /fdsnws/event/1/query` for typical 1000-event queries (time window, a syncing
//! reader's page, minmagnitude, bbox, orderby magnitude, updatedafter) and `eventid`
//! lookups (primary id, alias), measured through the actix service in process (routing,
//! parameter checks, the query, GeoJSON serialization, the body read back), not the network.
//!
//! Then (issue 16) whole answers in each format: QuakeML, text and GeoJSON of 1000 and 20000
//! events, in events per second and the peak memory the answer allocates (heap bytes live at
//! once above what was live before the request, counted by this bench's global allocator, peak_alloc; the
//! body is read chunk by chunk and dropped, as a client on the network would), and whether the
//! radius search used the point index (its idx_scan count in pg_stat_user_indexes).
//!
//! `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p status-http --bench read_query`
//! (`QS_BENCH_EVENTS=N` for another catalogue size; `QS_BENCH_ITERS=N` samples per query;
//! `QS_BENCH_DATABASE_URL=postgres://…/db` to keep the filled catalogue between runs).
//! The target (SPEC, issue 6): a 1000-event query answers in under 50 ms.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use quake_store::testing::TestDb;
use quake_store::{EventRecord, PageWrite, Ts};
use status_http::AppState;
use sync_engine::policy::decide;
use sync_engine::{Engine, EngineConfig, FdsnSource, SchedulerHandle};

const TARGET: Duration = Duration::from_millis(50);

/// A small deterministic PRNG (xorshift64*), so every run stores the same catalogue.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
}

const T0: i64 = 1_640_995_200_000; // 2022-01-01T00:00:00Z
const YEAR_MS: i64 = 365 * 86_400_000;
const NETS: [&str; 6] = ["us", "ci", "nc", "ak", "hv", "nn"];

fn catalogue(n: usize) -> Vec<EventRecord> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|i| {
            let net = NETS[i % NETS.len()];
            let id = format!("{net}{i:08}");
            let alias_a = format!("us7{:07}", i);
            let alias_b = format!("at{:08}", (i * 7) % 1_000_000);
            let mut ids = [id.clone(), alias_a, alias_b];
            ids.sort();
            let t = T0 + (rng.unit() * YEAR_MS as f64) as i64;
            let time = DateTime::<Utc>::from_timestamp_millis(t).unwrap();
            let updated = DateTime::<Utc>::from_timestamp_millis(
                t + (rng.unit() * 30.0 * 86_400_000.0) as i64,
            )
            .unwrap();
            // Gutenberg-Richter-ish: many small, few large; 1 % without a magnitude.
            let mag = if i % 100 == 7 {
                None
            } else {
                Some(((-rng.unit().max(1e-9).ln() / 2.3 - 0.5) * 100.0).round() / 100.0)
            };
            EventRecord {
                id: id.clone(),
                ids: format!(",{},", ids.join(",")),
                time: Ts(time),
                updated: Ts(updated),
                magnitude: mag,
                mag_type: mag.map(|_| "ml".into()),
                place: Some(format!(
                    "{} km NNE of Somewhere {}, Region",
                    i % 97,
                    i % 1013
                )),
                title: mag.map(|m| format!("M {m:.1} - Somewhere {}", i % 1013)),
                longitude: rng.range(-180.0, 180.0),
                latitude: rng.range(-70.0, 70.0),
                depth_km: Some((rng.range(-2.0, 650.0) * 100.0).round() / 100.0),
                status: if i % 3 == 0 { "automatic" } else { "reviewed" }.into(),
                event_type: Some("earthquake".into()),
                net: Some(net.into()),
                code: Some(format!("{i:08}")),
                tsunami: Some(0),
                sig: Some((i % 1000) as i32),
                felt: None,
                alert: None,
                url: Some(format!(
                    "https://earthquake.usgs.gov/earthquakes/eventpage/{id}"
                )),
                source: "usgs".into(),
                content_hash: format!("{i:032x}"),
                cdi: None,
                mmi: None,
                gap: Some((i % 360) as f64),
                sources: Some(format!(",{net},us,")),
                properties: Some(format!(
                    r#"{{"mag":{mag},"place":"{km} km NNE of Somewhere {s}, Region","time":{t},"updated":{u},"tz":null,"url":"https://earthquake.usgs.gov/earthquakes/eventpage/{id}","detail":"https://earthquake.usgs.gov/fdsnws/event/1/query?eventid={id}&format=geojson","felt":null,"cdi":null,"mmi":null,"alert":null,"status":"{status}","tsunami":0,"sig":{sig},"net":"{net}","code":"{i:08}","ids":",{ids},","sources":",{net},us,","types":",origin,phase-data,","nst":{nst},"dmin":0.0{dmin},"rms":0.17,"gap":{gap},"magType":"ml","type":"earthquake","title":"M - Somewhere"}}"#,
                    mag = mag.map_or("null".to_string(), |m| m.to_string()),
                    km = i % 97,
                    s = i % 1013,
                    t = time.timestamp_millis(),
                    u = updated.timestamp_millis(),
                    status = if i % 3 == 0 { "automatic" } else { "reviewed" },
                    sig = i % 1000,
                    ids = ids.join(","),
                    nst = i % 90,
                    dmin = i % 1000,
                    gap = i % 360,
                )),
            }
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("QS_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let iters: usize = std::env::var("QS_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    // QS_BENCH_DATABASE_URL: a database kept between runs (filled once); otherwise a fresh
    // test database at TEST_DATABASE_URL, dropped at the end.
    let kept_url = std::env::var("QS_BENCH_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let _test_db;
    let url = match kept_url {
        Some(u) => u,
        None => {
            let Some(db) = TestDb::postgres("read_query bench").await else {
                println!("read_query: skipped, PostgreSQL is needed (set TEST_DATABASE_URL)");
                return;
            };
            let u = db.url.clone();
            _test_db = db;
            u
        }
    };
    let store = quake_store::Store::connect(&url, quake_store::StoreOptions::default())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let stored: i64 = client
        .query_one("SELECT count(*) FROM earthquakes", &[])
        .await
        .unwrap()
        .get(0);

    let records = catalogue(n);
    if stored != n as i64 {
        client.batch_execute("TRUNCATE earthquakes").await.unwrap();
        let start = Instant::now();
        for chunk in records.chunks(10_000) {
            let r = store
                .apply_page(PageWrite::new(chunk), decide)
                .await
                .unwrap();
            assert_eq!(r.counts.inserted as usize, chunk.len());
            // Fresh statistics between pages: without them PostgreSQL may keep a generic
            // plan made for an empty table (a sequential scan per id lookup).
            client.batch_execute("ANALYZE earthquakes").await.unwrap();
        }
        println!(
            "read_query: {n} events stored in {:.1} s (apply_page, pages of 10000), PostgreSQL",
            start.elapsed().as_secs_f64()
        );
    } else {
        println!("read_query: {n} events already stored at QS_BENCH_DATABASE_URL");
    }
    client
        .batch_execute("VACUUM ANALYZE earthquakes")
        .await
        .unwrap();

    let fdsn = quake_api::FdsnClient::new(
        "http://127.0.0.1:9/fdsnws/event/1/query",
        quake_api::HttpOptions::default(),
    )
    .unwrap();
    let engine = Engine::new(
        store.clone(),
        std::sync::Arc::new(FdsnSource(fdsn)),
        EngineConfig::default(),
    );
    let state = AppState::new(
        engine,
        SchedulerHandle::disabled(Duration::from_secs(600), Duration::from_secs(30)),
    );
    let app = actix_web::test::init_service(
        actix_web::App::new().configure(move |cfg| status_http::configure_app(cfg, state.clone())),
    )
    .await;

    let mid = records[n / 2].clone();
    let alias = mid
        .ids
        .split(',')
        .find(|a| !a.is_empty() && *a != mid.id)
        .unwrap()
        .to_string();
    let cursor = Utc::now() - chrono::Duration::seconds(3600);
    let queries: Vec<(&str, String)> = vec![
        (
            "time window (30 days, newest first)",
            "starttime=2022-04-01&endtime=2022-05-01&limit=1000".into(),
        ),
        (
            "syncing reader's page (time-asc, offset 20001)",
            "starttime=2022-01-01&orderby=time-asc&includedeleted=true&limit=1000&offset=20001"
                .into(),
        ),
        (
            "minmagnitude=1.2 (2 % of events), newest first",
            "minmagnitude=1.2&limit=1000".into(),
        ),
        (
            "bbox (western US)",
            "minlatitude=30&maxlatitude=50&minlongitude=-130&maxlongitude=-100&limit=1000".into(),
        ),
        (
            "bbox across the antimeridian",
            "minlatitude=-50&maxlatitude=0&minlongitude=160&maxlongitude=200&limit=1000".into(),
        ),
        ("orderby=magnitude", "orderby=magnitude&limit=1000".into()),
        (
            "orderby=magnitude-asc, minmagnitude=1",
            "orderby=magnitude-asc&minmagnitude=1&limit=1000".into(),
        ),
        (
            "updatedafter (reader's cursor, time-asc)",
            format!(
                "starttime=2022-01-01&updatedafter={}&orderby=time-asc&includedeleted=true&limit=1000",
                cursor.format("%Y-%m-%dT%H:%M:%S")
            ),
        ),
        (
            "radius 300 km (latitude, longitude, maxradiuskm)",
            "latitude=35&longitude=-118&maxradiuskm=300&limit=1000".into(),
        ),
        (
            "radius 5 degrees across the antimeridian",
            "latitude=-20&longitude=179&maxradius=5&limit=1000".into(),
        ),
        ("eventid (primary id)", format!("eventid={}", mid.id)),
        ("eventid (alias)", format!("eventid={alias}")),
    ];

    println!(
        "{:<48} {:>8} {:>10} {:>10} {:>10}",
        "query", "events", "median", "p95", "body"
    );
    let mut worst = Duration::ZERO;
    for (name, q) in &queries {
        let uri = format!("/fdsnws/event/1/query?format=geojson&{q}");
        let mut samples = Vec::with_capacity(iters);
        let mut events = 0;
        let mut body_len = 0;
        for i in 0..iters + 5 {
            let started = Instant::now();
            let res = actix_web::test::call_service(
                &app,
                actix_web::test::TestRequest::get().uri(&uri).to_request(),
            )
            .await;
            let status = res.status().as_u16();
            let body = actix_web::test::read_body(res).await;
            let took = started.elapsed();
            assert_eq!(status, 200, "{uri}: {}", String::from_utf8_lossy(&body));
            if i >= 5 {
                samples.push(took);
            } else if i == 0 {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                events = v["metadata"]["count"].as_u64().unwrap_or(1);
                body_len = body.len();
            }
        }
        samples.sort();
        let median = percentile(&samples, 0.5);
        let p95 = percentile(&samples, 0.95);
        worst = worst.max(p95);
        println!(
            "{name:<48} {events:>8} {:>10} {:>10} {:>7} kB",
            ms(median),
            ms(p95),
            body_len / 1024
        );
    }
    println!(
        "read_query: worst p95 {} — {} the {} ms target",
        ms(worst),
        if worst < TARGET { "under" } else { "OVER" },
        TARGET.as_millis()
    );
    formats(&app, n).await;
    point_index_used(&app, &client).await;
}

#[global_allocator]
static PEAK: peak_alloc::PeakAlloc = peak_alloc::PeakAlloc;

/// Starts a peak measurement: the heap bytes live now.
fn reset_peak() -> usize {
    PEAK.reset_peak_usage();
    PEAK.current_usage()
}

/// Reads a response body chunk by chunk, dropping each: its length.
async fn drain(res: actix_web::dev::ServiceResponse) -> usize {
    use actix_web::body::MessageBody;
    let body = res.into_body();
    let mut body = std::pin::pin!(body);
    let mut n = 0;
    while let Some(chunk) = std::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        n += chunk.unwrap().len();
    }
    n
}

async fn formats<S>(app: &S, n: usize)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
        >,
{
    println!();
    println!(
        "{:<10} {:>8} {:>10} {:>12} {:>10} {:>14}",
        "format", "events", "time", "events/s", "body", "peak memory +"
    );
    let repeat: usize = std::env::var("QS_BENCH_FORMAT_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for limit in [1000, 20000] {
        for format in ["xml", "text", "geojson"] {
            let uri = format!(
                "/fdsnws/event/1/query?format={format}&starttime=2022-01-01&orderby=time-asc&limit={limit}"
            );
            let mut times = Vec::new();
            let mut peaks = Vec::new();
            let mut len = 0;
            for _ in 0..repeat {
                let base = reset_peak();
                let started = Instant::now();
                let res = actix_web::test::call_service(
                    app,
                    actix_web::test::TestRequest::get().uri(&uri).to_request(),
                )
                .await;
                assert_eq!(res.status().as_u16(), 200, "{uri}");
                len = drain(res).await;
                times.push(started.elapsed());
                peaks.push(PEAK.peak_usage().saturating_sub(base));
            }
            times.sort();
            peaks.sort();
            let t = times[times.len() / 2];
            println!(
                "{format:<10} {limit:>8} {:>10} {:>12.0} {:>7} kB {:>11.1} MB",
                ms(t),
                limit as f64 / t.as_secs_f64(),
                len / 1024,
                peaks[peaks.len() / 2] as f64 / (1024.0 * 1024.0)
            );
        }
    }
    println!(
        "(over {n} stored events; median of {repeat}; peak memory: VmHWM growth over VmRSS before the request)"
    );
}

/// Runs the radius query and reports how often PostgreSQL scanned the point index for it.
async fn point_index_used<S>(app: &S, client: &tokio_postgres::Client)
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
        >,
{
    let scans = || async {
        client
            .batch_execute("SELECT pg_stat_clear_snapshot()")
            .await
            .unwrap();
        let row = client
            .query_one(
                "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = 'earthquakes_point_idx'",
                &[],
            )
            .await
            .unwrap();
        row.get::<_, i64>(0)
    };
    let before = scans().await;
    for _ in 0..5 {
        let res = actix_web::test::call_service(
            app,
            actix_web::test::TestRequest::get()
                .uri("/fdsnws/event/1/query?format=text&latitude=35&longitude=-118&maxradiuskm=300&limit=1000")
                .to_request(),
        )
        .await;
        assert_eq!(res.status().as_u16(), 200);
        drain(res).await;
    }
    // A backend reports its statistics when idle, at most every second (PostgreSQL 15: up to
    // 10 s later).
    tokio::time::sleep(Duration::from_secs(11)).await;
    let after = scans().await;
    println!(
        "radius query (300 km, 5 runs): earthquakes_point_idx scanned {} times{}",
        after - before,
        if after > before {
            ""
        } else {
            " — the radius search did NOT use the point index"
        }
    );
}
