//! Scale figures at N events, each printed with what it measured, in one run:
//!
//! - `backfill`: end-to-end `quakesync backfill` (the release binary, a child process) of the
//!   whole synthetic catalogue from the synthetic upstream (in this process) into a fresh
//!   database: wall time, events/s, the child's peak RSS (VmHWM, polled from /proc), and the
//!   upstream's own busy time; then the write path's own rate on the same events in pages of
//!   the same size (`quake_store::Store::apply_page`, no HTTP, into another fresh database),
//!   with what generating and parsing them costs, and the ratio backfill / write path.
//! - `read`: `quakesync serve` on the filled database, over HTTP: p50/p95 of 1000-event
//!   answers per read shape (time window, bbox, bbox across the antimeridian, radius,
//!   magnitude, orderby, updatedafter, a page at offset 100,000, eventid and alias) in every
//!   format the read API serves (a shape or format it refuses is reported as such), and
//!   p50/p99 of `/metrics`, `/health` and `/`.
//! - `disk`: bytes per stored event: PostgreSQL `pg_total_relation_size('earthquakes')`
//!   (table, TOAST and indexes, split); SQLite the file size after a WAL checkpoint.
//!
//! ```sh
//! cargo build --release -p quakesync
//! TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test QS_SCALE_N=100000 \
//!   cargo bench -p synth-upstream --bench scale [-- backfill read disk]
//! ```
//!
//! - `QS_SCALE_N` events generated (default 100000); `QS_SCALE_SEED` (17).
//! - `QS_SCALE_DB=postgres|sqlite` (postgres; needs `TEST_DATABASE_URL`).
//! - `QS_SCALE_KEEP=NAME`: keep the filled database between runs (filling 1M–5M takes
//!   minutes): a PostgreSQL database NAME on `TEST_DATABASE_URL`'s server, or the SQLite file
//!   NAME. `backfill` always refills it; `read` and `disk` reuse it when it holds the whole
//!   catalogue of this N and seed, and fill it first otherwise.
//! - `QS_SCALE_BATCH` records per upstream page (10000); `QS_SCALE_ITERS` samples per read
//!   shape and format (60); `QS_SCALE_PING_ITERS` samples per `/metrics`, `/health`, `/` (300).
//! - `QS_SCALE_QUAKESYNC` the binary (default `target/release/quakesync`; the bench warns when
//!   a source file is newer than it).
//! - The run does not start when the database's filesystem has less free space than it needs
//!   (about 1.5 kB per event, twice for `backfill`, plus 2 GB); `QS_SCALE_IGNORE_DISK=1`
//!   overrides. 5M events on PostgreSQL need about 17 GB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use quake_store::testing::TestDb;
use quake_store::{DbConn, PageWrite, Store, StoreOptions};
use sync_engine::policy::decide;
use synth_upstream::{Catalogue, Deleted, Filter, SynthConfig, SynthEvent, SynthServer};

// ---------------------------------------------------------------------------
// settings

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Backend {
    Postgres,
    Sqlite,
}

struct Settings {
    n: u64,
    seed: u64,
    backend: Backend,
    keep: Option<String>,
    batch: u32,
    iters: usize,
    ping_iters: usize,
    quakesync: PathBuf,
    figures: Vec<String>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

impl Settings {
    fn from_env() -> Settings {
        let figures: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        let figures = if figures.is_empty() {
            vec!["backfill".into(), "read".into(), "disk".into()]
        } else {
            figures
        };
        Settings {
            n: env_or("QS_SCALE_N", 100_000),
            seed: env_or("QS_SCALE_SEED", 17),
            backend: match std::env::var("QS_SCALE_DB").as_deref() {
                Ok("sqlite") => Backend::Sqlite,
                _ => Backend::Postgres,
            },
            keep: std::env::var("QS_SCALE_KEEP")
                .ok()
                .filter(|v| !v.is_empty()),
            batch: env_or("QS_SCALE_BATCH", 10_000),
            iters: env_or("QS_SCALE_ITERS", 60),
            ping_iters: env_or("QS_SCALE_PING_ITERS", 300),
            quakesync: std::env::var("QS_SCALE_QUAKESYNC")
                .map(PathBuf::from)
                .unwrap_or_else(|_| workspace_root().join("target/release/quakesync")),
            figures,
        }
    }

    fn wants(&self, figure: &str) -> bool {
        self.figures.iter().any(|f| f == figure)
    }

    fn synth(&self) -> SynthConfig {
        SynthConfig {
            events: self.n,
            seed: self.seed,
            ..SynthConfig::default()
        }
    }
}

/// Warns when a source file of the binary is newer than the binary.
fn check_binary(path: &Path) -> bool {
    let Ok(built) = std::fs::metadata(path).and_then(|m| m.modified()) else {
        println!(
            "scale: {} is missing: run `cargo build --release -p quakesync` first",
            path.display()
        );
        return false;
    };
    fn newest(dir: &Path, acc: &mut SystemTime) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                newest(&p, acc);
            } else if p
                .extension()
                .is_some_and(|x| x == "rs" || x == "toml" || x == "sql")
                && let Ok(t) = e.metadata().and_then(|m| m.modified())
            {
                *acc = (*acc).max(t);
            }
        }
    }
    let mut src = SystemTime::UNIX_EPOCH;
    for d in ["crates", "bin", "migrations"] {
        newest(&workspace_root().join(d), &mut src);
    }
    if src > built {
        println!(
            "scale: WARNING: {} is older than the sources: rebuild it (`cargo build --release -p quakesync`) or these figures are of older code",
            path.display()
        );
    }
    true
}

// ---------------------------------------------------------------------------
// databases

/// A database the bench writes: a fresh temporary one, or the kept one.
struct Target {
    url: String,
    backend: Backend,
    _tmp: Option<TestDb>,
}

fn with_db_name(admin: &str, name: &str) -> String {
    let (base, _) = admin.rsplit_once('/').unwrap_or((admin, ""));
    format!("{base}/{name}")
}

async fn pg_admin() -> Option<tokio_postgres::Client> {
    let url = std::env::var("TEST_DATABASE_URL").ok()?;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(client)
}

/// A fresh database: the kept one recreated, or a temporary one.
async fn fresh(backend: Backend, keep: Option<&str>) -> Option<Target> {
    match (backend, keep) {
        (Backend::Postgres, Some(name)) => {
            let admin = pg_admin().await?;
            // Two statements: DROP DATABASE refuses to run in a (multi-statement) transaction.
            for sql in [
                format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
                format!("CREATE DATABASE \"{name}\""),
            ] {
                admin.batch_execute(&sql).await.unwrap();
            }
            let url = with_db_name(&std::env::var("TEST_DATABASE_URL").ok()?, name);
            Some(Target {
                url,
                backend,
                _tmp: None,
            })
        }
        (Backend::Postgres, None) => {
            let db = TestDb::postgres("scale bench").await?;
            Some(Target {
                url: db.url.clone(),
                backend,
                _tmp: Some(db),
            })
        }
        (Backend::Sqlite, Some(path)) => {
            for suffix in ["", "-wal", "-shm", ".sync.lock"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
            Some(Target {
                url: format!("sqlite://{path}"),
                backend,
                _tmp: None,
            })
        }
        (Backend::Sqlite, None) => {
            let db = TestDb::sqlite();
            Some(Target {
                url: db.url.clone(),
                backend,
                _tmp: Some(db),
            })
        }
    }
}

/// The kept database as it is, when it exists.
async fn kept(backend: Backend, name: &str) -> Option<Target> {
    let url = match backend {
        Backend::Postgres => {
            let admin = pg_admin().await?;
            let exists = admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                .await
                .ok()
                .flatten()
                .is_some();
            if !exists {
                return None;
            }
            with_db_name(&std::env::var("TEST_DATABASE_URL").ok()?, name)
        }
        Backend::Sqlite => {
            if !Path::new(name).exists() {
                return None;
            }
            format!("sqlite://{name}")
        }
    };
    Some(Target {
        url,
        backend,
        _tmp: None,
    })
}

async fn store(url: &str) -> Store {
    let s = Store::connect(
        url,
        StoreOptions {
            pool_size: 2,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    s.migrate().await.unwrap();
    s
}

async fn stored_rows(url: &str) -> i64 {
    let s = store(url).await;
    s.catalogue_counts().await.unwrap().total()
}

// ---------------------------------------------------------------------------
// the catalogue side

/// Every event a backfill of the whole range fetches (deleted ones included), in time order.
fn whole_range(cat: &Catalogue) -> Filter {
    Filter {
        start_ms: Some(cat.config().start.timestamp_millis()),
        end_ms: Some(cat.config().end.timestamp_millis() - 1),
        deleted: Deleted::Include,
        ..Filter::default()
    }
}

fn expected_rows(cat: &Catalogue) -> u64 {
    let now = cat.config().now.timestamp_millis();
    let f = whole_range(cat);
    cat.candidates(&f, true)
        .filter(|&i| cat.matches(i, now, &f))
        .count() as u64
}

fn fmt_t(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

// ---------------------------------------------------------------------------
// child processes

struct ChildRun {
    wall: Duration,
    peak_rss_kb: u64,
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `cmd` to its end, polling its peak RSS (VmHWM) every 10 ms.
fn run_measured(mut cmd: Command, dir: &Path) -> ChildRun {
    let err_path = dir.join("child.stderr");
    let out_path = dir.join("child.stdout");
    let started = Instant::now();
    let mut child = cmd
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    let status = loop {
        if let Some(kb) = vm_hwm_kb(pid) {
            peak = peak.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    ChildRun {
        wall: started.elapsed(),
        peak_rss_kb: peak,
        status,
        stdout: std::fs::read_to_string(out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(err_path).unwrap_or_default(),
    }
}

/// `quakesync` with a clean environment, pointed at `db_url` and the upstream.
fn quakesync(s: &Settings, dir: &Path, db_url: &str, upstream: &str) -> Command {
    let mut cmd = Command::new(&s.quakesync);
    cmd.current_dir(dir)
        .env_clear()
        .env("DATABASE_URL", db_url)
        .env("QUAKESYNC_SOURCE_URL", upstream)
        .env("QUAKESYNC_BATCH_SIZE", s.batch.to_string())
        .env("QUAKESYNC_SYNC_ENABLED", "false")
        .env("RUST_LOG", "info");
    cmd
}

struct BackfillFigure {
    wall: Duration,
    fetched: u64,
    peak_rss_kb: u64,
    upstream_busy: Duration,
    requests: (u64, u64),
}

/// Total processed, from the summary line (`… 100 total processed`).
fn total_processed(summary: &str) -> Option<u64> {
    let before = summary.split(" total processed").next()?;
    before.rsplit(' ').next()?.parse().ok()
}

fn backfill(s: &Settings, server: &SynthServer, target: &Target) -> BackfillFigure {
    let dir = tempfile_dir();
    let cfg = server.upstream().catalogue().config();
    let mut cmd = quakesync(s, dir.path(), &target.url, &server.query_url());
    cmd.args([
        "backfill",
        "--start",
        &cfg.start.to_rfc3339(),
        "--end",
        &cfg.end.to_rfc3339(),
        "--pause-ms",
        "0",
    ]);
    let before = server.stats();
    let run = run_measured(cmd, dir.path());
    let after = server.stats();
    if !run.status.success() {
        let tail: Vec<&str> = run.stderr.lines().rev().take(20).collect();
        panic!(
            "quakesync backfill failed ({}):\n{}\n{}",
            run.status,
            run.stdout,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let fetched = total_processed(&run.stdout).unwrap_or(0);
    BackfillFigure {
        wall: run.wall,
        fetched,
        peak_rss_kb: run.peak_rss_kb,
        upstream_busy: Duration::from_nanos(after.busy_ns - before.busy_ns),
        requests: (after.counts - before.counts, after.queries - before.queries),
    }
}

/// A temporary directory (the child's working directory and logs).
fn tempfile_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

// ---------------------------------------------------------------------------
// the write path's own rate

struct WriteFigure {
    events: u64,
    generate: Duration,
    parse: Duration,
    write: Duration,
}

/// The same events in pages of the same size, generated and serialized as the upstream
/// does, parsed and converted as the engine does, and written by `apply_page` (timed alone)
/// into a fresh database.
async fn write_path(s: &Settings, cat: &Catalogue, target: &Target) -> WriteFigure {
    let st = store(&target.url).await;
    let now = cat.config().now.timestamp_millis();
    let f = whole_range(cat);
    let mut indexes = cat
        .candidates(&f, true)
        .filter(|&i| cat.matches(i, now, &f));
    let mut fig = WriteFigure {
        events: 0,
        generate: Duration::ZERO,
        parse: Duration::ZERO,
        write: Duration::ZERO,
    };
    loop {
        let t0 = Instant::now();
        let events: Vec<SynthEvent> = indexes
            .by_ref()
            .take(s.batch as usize)
            .filter_map(|i| cat.event(i, now))
            .collect();
        if events.is_empty() {
            break;
        }
        let meta = synth_upstream::geojson::Metadata {
            generated: now,
            url: "http://bench/fdsnws/event/1/query",
            title: "USGS Earthquakes",
            status: 200,
            api: synth_upstream::server::API_VERSION,
            limit: Some(u64::from(s.batch)),
            offset: Some(1),
            count: events.len(),
        };
        let body = synth_upstream::geojson::collection(&meta, &events);
        drop(events);
        let t1 = Instant::now();
        let page = quake_api::parse_usgs_collection(&body).unwrap();
        drop(body);
        assert!(page.rejected.is_empty());
        let records: Vec<_> = page
            .events
            .iter()
            .map(sync_engine::record::to_record)
            .collect();
        drop(page);
        let t2 = Instant::now();
        let res = (st.apply_page(PageWrite::new(&records), decide).await).unwrap();
        let t3 = Instant::now();
        assert_eq!(res.counts.rejected, 0);
        fig.events += records.len() as u64;
        fig.generate += t1 - t0;
        fig.parse += t2 - t1;
        fig.write += t3 - t2;
    }
    fig
}

// ---------------------------------------------------------------------------
// reads over HTTP

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

struct Serve {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_serve(
    s: &Settings,
    target: &Target,
    upstream: &str,
    http: &reqwest::Client,
) -> Serve {
    let dir = tempfile_dir();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = quakesync(s, dir.path(), &target.url, upstream);
    let child = cmd
        .arg("serve")
        .env("QUAKESYNC_BIND", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(format!("{base}/health/ready")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "quakesync serve did not get ready: {}",
            std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Serve {
        child,
        base,
        _dir: dir,
    }
}

/// `samples` timed GETs of `url` (after 3 warm-ups), the body size and event count of the
/// first answer, and the first request's time (before anything of it was cached: the read
/// API keeps where deep pages stand); `None` and the answer when it is not 200.
async fn sample(
    http: &reqwest::Client,
    url: &str,
    samples: usize,
) -> Result<(Vec<Duration>, usize, Option<u64>, Duration), (u16, String)> {
    let mut times = Vec::with_capacity(samples);
    let mut first = Duration::ZERO;
    let mut bytes = 0;
    let mut count = None;
    for k in 0..samples + 3 {
        let started = Instant::now();
        let r = http.get(url).send().await.map_err(|e| (0, e.to_string()))?;
        let status = r.status().as_u16();
        let body = r.bytes().await.map_err(|e| (0, e.to_string()))?;
        let took = started.elapsed();
        if status != 200 {
            let text = String::from_utf8_lossy(&body);
            return Err((status, text.lines().take(3).collect::<Vec<_>>().join(" ")));
        }
        if k == 0 {
            first = took;
            bytes = body.len();
            count = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    if v["type"] == "Feature" {
                        Some(1)
                    } else {
                        v["metadata"]["count"].as_u64()
                    }
                })
                .or_else(|| {
                    // xml: <event> elements; text: lines after `#` headers; csv: lines after the header.
                    let t = String::from_utf8_lossy(&body);
                    let events = t.matches("<event ").count();
                    let lines = t.lines().filter(|l| !l.is_empty());
                    Some(if events > 0 {
                        events
                    } else if t.starts_with('#') {
                        lines.filter(|l| !l.starts_with('#')).count()
                    } else {
                        lines.count().saturating_sub(1)
                    } as u64)
                });
        } else if k >= 3 {
            times.push(took);
        }
    }
    times.sort();
    Ok((times, bytes, count, first))
}

async fn read_figure(s: &Settings, cat: &Catalogue, target: &Target, upstream: &str) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let rows = stored_rows(&target.url).await.max(0) as u64;
    if target.backend == Backend::Postgres {
        // What a server that has run a while has: fresh statistics.
        let (client, conn) = tokio_postgres::connect(&target.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
            .batch_execute("VACUUM ANALYZE earthquakes")
            .await
            .unwrap();
    }
    let serve = start_serve(s, target, upstream, &http).await;
    let now = cat.config().now.timestamp_millis();
    let n = cat.len();
    let mid = n / 2;
    let live = |i: u64| cat.event(i, now).filter(|e| e.status != "deleted");
    let primary = (mid..n).find_map(live).unwrap();
    let with_alias = (mid..n)
        .filter_map(live)
        .find(|e| e.ids.matches(',').count() > 2)
        .unwrap();
    let alias = with_alias
        .ids
        .split(',')
        .find(|a| !a.is_empty() && *a != with_alias.id)
        .unwrap()
        .to_string();
    let start = "starttime=2000-01-01";
    let window = format!(
        "starttime={}&endtime={}",
        fmt_t(cat.time_ms(mid)),
        fmt_t(cat.time_ms((mid + 1300).min(n - 1)))
    );
    let deep = 100_001u64.min(rows.saturating_sub(1000).max(1));
    let cursor = fmt_t(cat.config().end.timestamp_millis() - 45 * 86_400_000);
    let shapes: Vec<(String, String)> = vec![
        (
            "time window (newest first)".into(),
            format!("{window}&limit=1000"),
        ),
        (
            "bbox (southern California)".into(),
            format!(
                "{start}&minlatitude=32&maxlatitude=36.5&minlongitude=-121&maxlongitude=-114.5&limit=1000"
            ),
        ),
        (
            "bbox across the antimeridian".into(),
            format!(
                "{start}&minlatitude=-25&maxlatitude=-14&minlongitude=174&maxlongitude=186&limit=1000"
            ),
        ),
        (
            "radius 300 km".into(),
            format!("{start}&latitude=35&longitude=-118&maxradiuskm=300&limit=1000"),
        ),
        (
            "minmagnitude=4.5".into(),
            format!("{start}&minmagnitude=4.5&limit=1000"),
        ),
        (
            "orderby=magnitude".into(),
            format!("{start}&orderby=magnitude&limit=1000"),
        ),
        (
            "updatedafter (reader's cursor, time-asc)".into(),
            format!(
                "{start}&updatedafter={cursor}&orderby=time-asc&includedeleted=true&limit=1000"
            ),
        ),
        (
            format!("page at offset {deep} (time-asc)"),
            format!("{start}&orderby=time-asc&includedeleted=true&limit=1000&offset={deep}"),
        ),
        (
            "eventid (primary id)".into(),
            format!("eventid={}", primary.id),
        ),
        ("eventid (alias)".into(), format!("eventid={alias}")),
    ];
    println!(
        "\nread ({} stored rows, quakesync serve over HTTP, {} samples each after 3 warm-ups; ms)",
        rows, s.iters
    );
    println!(
        "{:<44} {:<8} {:>7} {:>8} {:>8} {:>9} {:>8}",
        "shape", "format", "events", "p50", "p95", "body kB", "first"
    );
    // The formats the read API serves now (a 400 for one of them is reported once).
    let mut formats = Vec::new();
    for format in ["geojson", "xml", "text", "csv"] {
        let url = format!(
            "{}/fdsnws/event/1/query?{}&format={format}",
            serve.base, shapes[0].1
        );
        match sample(&http, &url, 0).await {
            Ok(_) => formats.push(format),
            Err((status, why)) => {
                let why: String = why.chars().take(100).collect();
                println!("format={format}: not served ({status}: {why})");
            }
        }
    }
    let mut worst = Duration::ZERO;
    for (name, q) in &shapes {
        for &format in &formats {
            let url = format!("{}/fdsnws/event/1/query?{q}&format={format}", serve.base);
            match sample(&http, &url, s.iters).await {
                Ok((times, bytes, count, first)) => {
                    let p95 = percentile(&times, 0.95);
                    worst = worst.max(p95);
                    println!(
                        "{name:<44} {format:<8} {:>7} {:>8} {:>8} {:>9} {:>8}",
                        count.map_or("?".into(), |c| c.to_string()),
                        ms(percentile(&times, 0.5)),
                        ms(p95),
                        bytes / 1024,
                        ms(first)
                    );
                }
                Err((status, why)) => {
                    let why: String = why.chars().take(90).collect();
                    println!("{name:<44} {format:<8} not served ({status}: {why})");
                    break;
                }
            }
        }
    }
    println!(
        "read: worst p95 of the shapes served {} ms (issue 17's target: under 50 ms)",
        ms(worst)
    );
    println!(
        "\n{:<44} {:>8} {:>8} {:>8}",
        "endpoint", "p50", "p99", "max"
    );
    for path in ["/metrics", "/health", "/", "/health/live"] {
        let url = format!("{}{path}", serve.base);
        match sample(&http, &url, s.ping_iters).await {
            Ok((times, _, _, _)) => println!(
                "{path:<44} {:>8} {:>8} {:>8}",
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.99)),
                ms(*times.last().unwrap())
            ),
            Err((status, why)) => println!("{path:<44} answered {status}: {why}"),
        }
    }
}

// ---------------------------------------------------------------------------
// disk

async fn disk_figure(target: &Target) {
    let rows = stored_rows(&target.url).await.max(1) as f64;
    match target.backend {
        Backend::Postgres => {
            let (client, conn) = tokio_postgres::connect(&target.url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(async move {
                let _ = conn.await;
            });
            client
                .batch_execute("VACUUM ANALYZE earthquakes")
                .await
                .unwrap();
            let r = client
                .query_one(
                    "SELECT pg_total_relation_size('earthquakes'), pg_relation_size('earthquakes'), \
                     pg_indexes_size('earthquakes'), pg_database_size(current_database())",
                    &[],
                )
                .await
                .unwrap();
            let (total, heap, idx, db): (i64, i64, i64, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(3));
            println!(
                "\ndisk (PostgreSQL, after VACUUM ANALYZE): {rows} rows; earthquakes {:.1} MB = {:.0} bytes/event (heap {:.0}, TOAST and maps {:.0}, indexes {:.0}); whole database {:.1} MB",
                total as f64 / 1e6,
                total as f64 / rows,
                heap as f64 / rows,
                (total - heap - idx) as f64 / rows,
                idx as f64 / rows,
                db as f64 / 1e6
            );
            let per_index = client
                .query(
                    "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index \
                     WHERE indrelid = 'earthquakes'::regclass ORDER BY 2 DESC",
                    &[],
                )
                .await
                .unwrap();
            let list: Vec<String> = per_index
                .iter()
                .map(|r| {
                    format!(
                        "{} {:.0}",
                        r.get::<_, String>(0),
                        r.get::<_, i64>(1) as f64 / rows
                    )
                })
                .collect();
            println!("disk: bytes/event per index: {}", list.join(", "));
        }
        Backend::Sqlite => {
            let st = store(&target.url).await;
            {
                let mut conn = st.conn().await.unwrap();
                if let DbConn::Sqlite(c) = conn.db() {
                    use diesel_async::SimpleAsyncConnection;
                    c.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)")
                        .await
                        .unwrap();
                }
            }
            drop(st);
            let path = target.url.trim_start_matches("sqlite://");
            let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            let wal = std::fs::metadata(format!("{path}-wal"))
                .map(|m| m.len())
                .unwrap_or(0);
            println!(
                "\ndisk (SQLite, after a WAL checkpoint): {rows} rows; file {:.1} MB = {:.0} bytes/event (WAL left {} bytes)",
                size as f64 / 1e6,
                size as f64 / rows,
                wal
            );
        }
    }
}

// ---------------------------------------------------------------------------

/// Free space, in bytes, of the filesystem holding `path` (`df -Pk`), if it can be read.
fn free_bytes(path: &str) -> Option<u64> {
    let out = Command::new("df").args(["-Pk", path]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kb: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Where the database's files go: PostgreSQL's data directory, or the SQLite file's folder.
async fn data_dir(s: &Settings) -> Option<String> {
    match s.backend {
        Backend::Postgres => {
            let admin = pg_admin().await?;
            let row = admin.query_one("SHOW data_directory", &[]).await.ok()?;
            row.try_get(0).ok()
        }
        Backend::Sqlite => Some(match s.keep.as_deref() {
            Some(file) => Path::new(file)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or(".".into(), |p| p.display().to_string()),
            None => std::env::temp_dir().display().to_string(),
        }),
    }
}

/// Refuses to start a run that would fill the disk (the machine is shared): about 1.4 kB per
/// event and index, twice for `backfill` (its database and the write path's), plus WAL.
async fn enough_disk(s: &Settings, events: u64) -> bool {
    let copies = if s.wants("backfill") { 2 } else { 1 };
    let need = events * 1_500 * copies + 2_000_000_000;
    let Some(dir) = data_dir(s).await else {
        return true;
    };
    match free_bytes(&dir) {
        Some(free) if free < need && std::env::var("QS_SCALE_IGNORE_DISK").is_err() => {
            println!(
                "scale: not started: about {:.1} GB is needed under {dir} and {:.1} GB is free (QS_SCALE_IGNORE_DISK=1 to try anyway)",
                need as f64 / 1e9,
                free as f64 / 1e9
            );
            false
        }
        _ => true,
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let s = Settings::from_env();
    if s.backend == Backend::Postgres && std::env::var("TEST_DATABASE_URL").is_err() {
        println!(
            "scale: skipped, PostgreSQL is needed (set TEST_DATABASE_URL, or QS_SCALE_DB=sqlite)"
        );
        return;
    }
    if !check_binary(&s.quakesync) {
        return;
    }
    let cat = Catalogue::new(s.synth());
    let expected = expected_rows(&cat);
    if !enough_disk(&s, expected).await {
        return;
    }
    let server = synth_upstream::serve("127.0.0.1:0".parse().unwrap(), s.synth()).unwrap();
    println!(
        "scale: N = {} generated, {} to fetch (merged duplicates gone, deleted kept), seed {}, {:?}, pages of {}; load average {} on {} cores",
        s.n,
        expected,
        s.seed,
        s.backend,
        s.batch,
        load(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let mut target = None;
    if s.wants("backfill") {
        let t = fresh(s.backend, s.keep.as_deref()).await.unwrap();
        // Migrated before, so the backfill's time is the backfill's (and a process start).
        drop(store(&t.url).await);
        let b = backfill(&s, &server, &t);
        let rows = stored_rows(&t.url).await;
        let rate = b.fetched as f64 / b.wall.as_secs_f64();
        println!(
            "\nbackfill: {} events in {:.1} s = {:.0} events/s, peak RSS {:.1} MB ({} stored rows; {} count and {} query requests; the upstream busy {:.1} s = {:.0} % of the wall time)",
            b.fetched,
            b.wall.as_secs_f64(),
            rate,
            b.peak_rss_kb as f64 / 1024.0,
            rows,
            b.requests.0,
            b.requests.1,
            b.upstream_busy.as_secs_f64(),
            100.0 * b.upstream_busy.as_secs_f64() / b.wall.as_secs_f64()
        );
        assert_eq!(rows as u64, expected, "the backfill stored every event");
        let w_target = fresh(s.backend, None).await.unwrap();
        let w = write_path(&s, &cat, &w_target).await;
        drop(w_target);
        let per = |d: Duration| d.as_secs_f64() * 1e6 / w.events as f64;
        let write_rate = w.events as f64 / w.write.as_secs_f64();
        println!(
            "write path (apply_page, same events, pages of {}, fresh database): {} events in {:.1} s = {:.0} events/s; per event: write {:.1} µs, parse+convert {:.1} µs, generate+serialize {:.1} µs",
            s.batch,
            w.events,
            w.write.as_secs_f64(),
            write_rate,
            per(w.write),
            per(w.parse),
            per(w.generate)
        );
        println!(
            "backfill / write path = {:.2} (issue 17's target: at least 0.80); the backfill's time per event {:.1} µs against write + parse {:.1} µs",
            rate / write_rate,
            b.wall.as_secs_f64() * 1e6 / b.fetched.max(1) as f64,
            per(w.write) + per(w.parse)
        );
        target = Some(t);
    }
    if (s.wants("read") || s.wants("disk")) && target.is_none() {
        let reuse = match s.keep.as_deref() {
            Some(name) => match kept(s.backend, name).await {
                Some(t) if stored_rows(&t.url).await as u64 == expected => Some(t),
                _ => None,
            },
            None => None,
        };
        target = Some(match reuse {
            Some(t) => {
                println!(
                    "\nusing the kept database {}: it holds the catalogue",
                    s.keep.as_deref().unwrap_or("")
                );
                t
            }
            None => {
                let t = fresh(s.backend, s.keep.as_deref()).await.unwrap();
                let b = backfill(&s, &server, &t);
                println!(
                    "\nfilled by a backfill: {} events in {:.1} s ({:.0} events/s, peak RSS {:.1} MB)",
                    b.fetched,
                    b.wall.as_secs_f64(),
                    b.fetched as f64 / b.wall.as_secs_f64(),
                    b.peak_rss_kb as f64 / 1024.0
                );
                t
            }
        });
    }
    if let Some(t) = &target {
        if s.wants("read") {
            read_figure(&s, &cat, t, &server.query_url()).await;
        }
        if s.wants("disk") {
            disk_figure(t).await;
        }
    }
    println!("\nscale: done (load average {})", load());
}
