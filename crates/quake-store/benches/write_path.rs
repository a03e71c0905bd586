//! Write-path benchmark on PostgreSQL: rows per second for pages of 1k, 10k and 100k new
//! events, by the per-record SAVEPOINT path (the seed's design), the fast path, and a
//! plain binary COPY of the same rows into the table (the floor), in one run so the ratios
//! hold on a noisy machine; then SQLite (a file in a temp dir): one statement per task hop
//! against the whole page in one blocking closure. Each measurement starts from an empty table.
//! The rows are new events shaped like real ones (one in 16 has a second id, as in the USGS
//! fixtures), written through the full schema with all its read indexes, then once more into
//! a bare table (primary key only) to show what index maintenance costs.
//!
//! `TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p quake-store --bench write_path`
//! (`-- 1000 10000` to choose sizes; `QS_BENCH_REPEAT=3` for a median of 3; `QS_BENCH_FILL=1`
//! instead times a first sync of 100k rows into an empty table, page by page).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime};

use chrono::DateTime;
use diesel_async::SimpleAsyncConnection;
use futures_util::pin_mut;
use quake_store::testing::TestDb;
use quake_store::{EventRecord, Store, Ts};
use quake_store::{PageWrite, WriteMode};
use sync_engine::policy::decide;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

fn records(n: usize) -> Vec<EventRecord> {
    (0..n)
        .map(|i| {
            let t = DateTime::from_timestamp_millis(1_600_000_000_000 + i as i64 * 1000).unwrap();
            EventRecord {
                id: format!("bench{i:07}"),
                // One event in 16 has a second id, as in the USGS fixtures (2–8 %).
                ids: if i % 16 == 0 {
                    format!(",bench{i:07},us{i:07},")
                } else {
                    format!(",bench{i:07},")
                },
                time: Ts(t),
                updated: Ts(t),
                magnitude: Some((i % 70) as f64 / 10.0),
                mag_type: Some("ml".into()),
                place: Some(format!("{} km NNE of Somewhere, California", i % 97)),
                title: Some(format!("M {} - somewhere", (i % 70) as f64 / 10.0)),
                longitude: -120.0 + (i % 1000) as f64 / 100.0,
                latitude: 35.0 + (i % 500) as f64 / 100.0,
                depth_km: Some((i % 300) as f64 / 10.0),
                status: "reviewed".into(),
                event_type: Some("earthquake".into()),
                net: Some("ci".into()),
                code: Some(format!("{i:07}")),
                tsunami: Some(0),
                sig: Some((i % 1000) as i32),
                felt: None,
                alert: None,
                url: Some(format!(
                    "https://earthquake.usgs.gov/earthquakes/eventpage/bench{i:07}"
                )),
                source: "usgs".into(),
                content_hash: format!("{i:032x}"),
                // Every property of a USGS summary record, as the engine stores it (lossless).
                cdi: (i % 5 == 0).then_some(3.4),
                mmi: (i % 7 == 0).then_some(4.1),
                gap: Some((i % 360) as f64),
                sources: Some(",ci,us,".into()),
                properties: Some(format!(
                    r#"{{"mag":{mag},"place":"{km} km NNE of Somewhere, California","time":{ms},"updated":{ms},"tz":null,"url":"https://earthquake.usgs.gov/earthquakes/eventpage/bench{i:07}","detail":"https://earthquake.usgs.gov/fdsnws/event/1/query?eventid=bench{i:07}&format=geojson","felt":null,"cdi":null,"mmi":null,"alert":null,"status":"reviewed","tsunami":0,"sig":{sig},"net":"ci","code":"{i:07}","ids":",bench{i:07},","sources":",ci,us,","types":",nearby-cities,origin,phase-data,scitech-link,","nst":{nst},"dmin":0.0{dmin},"rms":0.17,"gap":{gap},"magType":"ml","type":"earthquake","title":"M {mag} - somewhere"}}"#,
                    mag = (i % 70) as f64 / 10.0,
                    km = i % 97,
                    ms = 1_600_000_000_000 + i as i64 * 1000,
                    sig = i % 1000,
                    nst = i % 90,
                    dmin = i % 1000,
                    gap = i % 360,
                )),
            }
        })
        .collect()
}

async fn truncate(store: &Store) {
    let mut conn = store.conn().await.unwrap();
    match conn.db() {
        quake_store::DbConn::Pg(c) => c.batch_execute("TRUNCATE earthquakes").await.unwrap(),
        quake_store::DbConn::Sqlite(c) => c.batch_execute("DELETE FROM earthquakes").await.unwrap(),
    }
}

async fn apply(store: &Store, recs: &[EventRecord], mode: WriteMode) -> Duration {
    truncate(store).await;
    let start = Instant::now();
    let res = store
        .apply_page(PageWrite::new(recs).mode(mode), decide)
        .await
        .unwrap();
    let took = start.elapsed();
    let refused = recs.iter().filter(|r| r.latitude > 90.0).count();
    assert_eq!(res.counts.inserted as usize, recs.len() - refused);
    assert_eq!(res.counts.rejected as usize, refused);
    took
}

async fn copy(store: &Store, url: &str, recs: &[EventRecord]) -> Duration {
    truncate(store).await;
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let start = Instant::now();
    let sink = client
        .copy_in(
            "COPY earthquakes (id, ids, time, updated, magnitude, mag_type, place, title, longitude, latitude, \
             depth_km, status, event_type, net, code, tsunami, sig, felt, alert, url, source, content_hash, \
             first_seen_at, last_changed_at, merged_into, cdi, mmi, gap, sources, properties) FROM STDIN BINARY",
        )
        .await
        .unwrap();
    use Type as T;
    let types = [
        T::TEXT,
        T::TEXT,
        T::TIMESTAMPTZ,
        T::TIMESTAMPTZ,
        T::FLOAT8,
        T::TEXT,
        T::TEXT,
        T::TEXT,
        T::FLOAT8,
        T::FLOAT8,
        T::FLOAT8,
        T::TEXT,
        T::TEXT,
        T::TEXT,
        T::TEXT,
        T::INT4,
        T::INT4,
        T::INT4,
        T::TEXT,
        T::TEXT,
        T::TEXT,
        T::TEXT,
        T::TIMESTAMPTZ,
        T::TIMESTAMPTZ,
        T::TEXT,
        T::FLOAT8,
        T::FLOAT8,
        T::FLOAT8,
        T::TEXT,
        T::TEXT,
    ];
    let writer = BinaryCopyInWriter::new(sink, &types);
    pin_mut!(writer);
    let now = SystemTime::now();
    let st = |t: Ts| SystemTime::from(t.0);
    for r in recs {
        writer
            .as_mut()
            .write(&[
                &r.id,
                &r.ids,
                &st(r.time),
                &st(r.updated),
                &r.magnitude,
                &r.mag_type,
                &r.place,
                &r.title,
                &r.longitude,
                &r.latitude,
                &r.depth_km,
                &r.status,
                &r.event_type,
                &r.net,
                &r.code,
                &r.tsunami,
                &r.sig,
                &r.felt,
                &r.alert,
                &r.url,
                &r.source,
                &r.content_hash,
                &now,
                &now,
                &None::<String>,
                &r.cdi,
                &r.mmi,
                &r.gap,
                &r.sources,
                &r.properties,
            ])
            .await
            .unwrap();
    }
    writer.finish().await.unwrap();
    start.elapsed()
}

/// The bare table: primary key only, and no count triggers (issue 17) either.
async fn drop_secondary_indexes(store: &Store) {
    let mut conn = store.conn().await.unwrap();
    let quake_store::DbConn::Pg(c) = conn.db() else {
        unreachable!("a PostgreSQL store")
    };
    c.batch_execute(
        "DO $$ DECLARE r record; BEGIN \
         FOR r IN SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() \
           AND tablename = 'earthquakes' AND indexname <> 'earthquakes_pkey' \
         LOOP EXECUTE format('DROP INDEX %I', r.indexname); END LOOP; END $$; \
         ALTER TABLE earthquakes DISABLE TRIGGER USER",
    )
    .await
    .unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let sizes: Vec<usize> = {
        let args: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        if args.is_empty() {
            vec![1_000, 10_000, 100_000]
        } else {
            args
        }
    };
    let repeat: usize = std::env::var("QS_BENCH_REPEAT")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let Some(db) = TestDb::postgres("write_path bench").await else {
            eprintln!("write_path: needs TEST_DATABASE_URL");
            return;
        };
        let store = db.store().await;
        if std::env::var("QS_BENCH_FILL").is_ok() {
            // A first sync into an empty table: 100k rows in pages of 10k. Each page's id
            // lookup must stay an index scan as the table grows.
            truncate(&store).await;
            let recs = records(100_000);
            for (i, page) in recs.chunks(10_000).enumerate() {
                let start = Instant::now();
                store.apply_page(PageWrite::new(page), decide).await.unwrap();
                println!("fill page {i}: {:.0} rows/s", page.len() as f64 / start.elapsed().as_secs_f64());
            }
            return;
        }
        println!("rows      per-record rows/s   fast path rows/s   COPY rows/s   fast/per-record   fast/COPY");
        for &n in &sizes {
            let recs = records(n);
            let mut per = Vec::new();
            let mut fast = Vec::new();
            let mut floor = Vec::new();
            for _ in 0..repeat {
                per.push(apply(&store, &recs, WriteMode::PerRecord).await);
                fast.push(apply(&store, &recs, WriteMode::Auto).await);
                floor.push(copy(&store, &db.url, &recs).await);
            }
            let rate = |d: Duration| n as f64 / d.as_secs_f64();
            let (p, f, c) = (rate(median(per)), rate(median(fast)), rate(median(floor)));
            println!("{n:<9} {p:>17.0}   {f:>16.0}   {c:>11.0}   {:>15.1}x   {:>8.2}", f / p, f / c);
        }
        // The price of a bad row: one refused by the database (latitude 200) in the middle of
        // the page makes the fast path bisect down to it.
        println!("rows      fast path, clean page   one refused row in the middle   ratio");
        for &n in &sizes {
            let clean = records(n);
            let mut bad = clean.clone();
            bad[n / 2].latitude = 200.0;
            let mut a = Vec::new();
            let mut b = Vec::new();
            for _ in 0..repeat {
                a.push(apply(&store, &clean, WriteMode::Auto).await);
                b.push(apply(&store, &bad, WriteMode::Auto).await);
            }
            let rate = |d: Duration| n as f64 / d.as_secs_f64();
            let (fa, fb) = (rate(median(a)), rate(median(b)));
            println!("{n:<9} {fa:>21.0}   {fb:>29.0}   {:>5.2}", fb / fa);
        }
        // The same rows into a bare table: the primary key only, every secondary (read API)
        // index dropped. What is left is the write path itself; the difference to the table
        // above is what index maintenance costs on this machine.
        let Some(bare_db) = TestDb::postgres("write_path bench bare").await else {
            return;
        };
        let bare = bare_db.store().await;
        drop_secondary_indexes(&bare).await;
        println!("bare table (primary key only)   fast path rows/s   COPY rows/s   fast/COPY");
        for &n in &sizes {
            let recs = records(n);
            let mut fast = Vec::new();
            let mut floor = Vec::new();
            for _ in 0..repeat {
                fast.push(apply(&bare, &recs, WriteMode::Auto).await);
                floor.push(copy(&bare, &bare_db.url, &recs).await);
            }
            let rate = |d: Duration| n as f64 / d.as_secs_f64();
            let (f, c) = (rate(median(fast)), rate(median(floor)));
            println!("{n:<31} {f:>16.0}   {c:>11.0}   {:>9.2}", f / c);
        }
        let lite = TestDb::sqlite();
        let store = lite.store().await;
        println!("SQLite    per-statement rows/s   one blocking closure rows/s   ratio");
        for &n in &sizes {
            let recs = records(n);
            let mut per = Vec::new();
            let mut fast = Vec::new();
            for _ in 0..repeat {
                per.push(apply(&store, &recs, WriteMode::PerRecord).await);
                fast.push(apply(&store, &recs, WriteMode::Auto).await);
            }
            let rate = |d: Duration| n as f64 / d.as_secs_f64();
            let (p, f) = (rate(median(per)), rate(median(fast)));
            println!("{n:<9} {p:>20.0}   {f:>27.0}   {:>5.1}x", f / p);
        }
    });
}
