//! Interoperability with the real clients (issue 16): ObsPy's FDSN `Client` and readers
//! (discovery through the WADL, `get_events` in QuakeML, radius search, an alias `eventid`,
//! 204 and 400 as ObsPy's exceptions, the text format through `read_events(…, "EVENTTXT")`),
//! the QuakeML validated against the QuakeML 1.2 XSD shipped in testdata/quakeml, and GDAL
//! (`ogrinfo`, `ogr2ogr`) reading the GeoJSON and the CSV with the upstream's fields.
//!
//! The mirror is a SQLite catalogue filled from a real USGS FDSN answer (388 events) and a
//! real EMSC page (430 events), served on a loopback port. ObsPy runs from the virtualenv
//! `scripts/fdsn-clients-env.sh` makes (`$QUAKESYNC_PYENV`, default
//! `~/.cache/quakesync/pyenv`); GDAL is Debian's `gdal-bin`. Without them each test says
//! SKIPPED; under `CI=true` it fails instead (`.ci/run` installs both).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod read_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use quake_store::testing::{TestDb, skip_or_fail};
use quake_store::{Earthquake, EventRecord, Store};
use read_support::*;
use serde_json::{Value, json};

const USGS: &str = "usgs_fdsn_query_2020-06-10T0405Z_minmag2.5.geojson";
const EMSC: &str = "emsc_fdsn_json_2025-04-26_turkey-region_minmag2.5.json";

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

/// The venv's python with ObsPy and lxml, if there is one.
fn python() -> Option<PathBuf> {
    let venv = std::env::var_os("QUAKESYNC_PYENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/quakesync/pyenv"))
        })?;
    let py = venv.join("bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import obspy, lxml"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

fn has(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A plain HTTP/1.0 GET (the answer then comes unchunked): status and body.
fn http_get(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}

async fn mirror() -> (TestDb, Store, Vec<Earthquake>) {
    let db = TestDb::sqlite();
    let store = db.store().await;
    let mut records: Vec<EventRecord> = fixture_records(USGS);
    let emsc = quake_api::parse_emsc(&fixture(EMSC)).unwrap();
    records.extend(emsc.events.iter().map(sync_engine::record::to_record));
    fill(&store, &records, 1000).await;
    let rows = { store.all_events().await.unwrap() };
    (db, store, rows)
}

fn rid(id: &str) -> String {
    format!("quakeml:quakesync/event/{id}")
}

fn expected(r: &Earthquake) -> Value {
    json!({
        "id": r.id,
        "rid": rid(&r.id),
        "time": r.time.0.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "lat": r.latitude,
        "lon": r.longitude,
        "depth_m": r.depth_km.map(|d| (d * 1.0e6).round() / 1.0e3),
        "mag": r.magnitude,
        "magtype": r.mag_type,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn obspy_reads_the_mirror() {
    const TEST: &str = "obspy_reads_the_mirror";
    let Some(py) = python() else {
        skip_or_fail(
            TEST,
            "no Python virtualenv with ObsPy (run scripts/fdsn-clients-env.sh)",
        );
        return;
    };
    let (_db, store, rows) = mirror().await;
    let (base, server) = serve(state_for(idle_engine(store.clone())));

    // What ObsPy must see, computed from the stored rows.
    let (start, end, minmag) = ("2020-06-05T00:00:00", "2020-06-07T00:00:00", 3.0);
    let window: Vec<Value> = rows
        .iter()
        .filter(|r| {
            let t = r.time.0.to_rfc3339();
            t.as_str() >= "2020-06-05" && t.as_str() < "2020-06-07" && r.magnitude >= Some(minmag)
        })
        .map(expected)
        .collect();
    assert!(window.len() > 10, "{}", window.len());
    // 300 km around Izmir: the EMSC events of the Turkish fixture there.
    let (lat, lon, deg) = (
        38.4,
        27.1,
        300.0 / status_http::read_api::params::KM_PER_DEGREE,
    );
    let radius: Vec<Value> = rows
        .iter()
        .filter(|r| quake_store::great_circle_deg(lat, lon, r.latitude, r.longitude) <= deg)
        .map(expected)
        .collect();
    assert!(!radius.is_empty());
    let alias_row = rows
        .iter()
        .find(|r| r.id == "pr2020162001")
        .expect("fixture event pr2020162001");
    let catalogs: BTreeSet<String> = rows.iter().filter_map(|r| r.net.clone()).collect();
    let contributors: BTreeSet<String> = rows
        .iter()
        .flat_map(|r| match &r.sources {
            Some(s) => s
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            None => r.net.iter().cloned().collect::<Vec<_>>(),
        })
        .collect();
    let exp = json!({
        "catalogs": catalogs,
        "contributors": contributors,
        "window": [start, end],
        "minmag": minmag,
        "window_events": window,
        "radius": {"lat": lat, "lon": lon, "deg": deg},
        "radius_events": radius,
        "alias": {"alias": "us6000a907", "rid": rid(&alias_row.id)},
        "quality": {"id": "pr2020162001", "nst": 18, "rms": 0.54, "gap": 185.0, "dmin": 0.575,
                    "mode": "manual", "status": "reviewed"},
        "all_count": rows.len(),
    });
    let dir = tempfile::tempdir().unwrap();
    let exp_path = dir.path().join("expected.json");
    std::fs::write(&exp_path, serde_json::to_vec(&exp).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/obspy_checks.py");
    let xsd = testdata("quakeml/QuakeML-1.2.xsd");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(script)
            .arg(&base)
            .arg(&exp_path)
            .arg(&xsd)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    server.stop(true).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("ALL OBSPY CHECKS PASSED"),
        "ObsPy checks failed:\n{stdout}\n{stderr}"
    );
}

/// `ogrinfo -so`: the field definitions (`name: Type (w.p)`), in order.
fn ogr_fields(source: &str, open_options: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("ogrinfo");
    cmd.args(["-ro", "-so", "-al"]);
    for o in open_options {
        cmd.args(["-oo", o]);
    }
    let out = cmd.arg(source).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let fields: Vec<String> = text
        .lines()
        .filter(|l| {
            l.split_once(": ").is_some_and(|(name, ty)| {
                !name.contains(' ')
                    && ["String", "Integer", "Real", "Date", "Integer64"]
                        .iter()
                        .any(|t| ty.starts_with(t))
            })
        })
        .map(str::to_string)
        .collect();
    assert!(text.contains("Feature Count:"), "{text}");
    fields
}

/// `ogr2ogr -f CSV`: every feature's attributes and coordinates, by `id`.
fn ogr_rows(source: &str, open_options: &[&str]) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut cmd = Command::new("ogr2ogr");
    cmd.args(["-f", "CSV", "/vsistdout/"]);
    for o in open_options {
        cmd.args(["-oo", o]);
    }
    let out = cmd
        .arg(source)
        .args(["-lco", "GEOMETRY=AS_XYZ"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = split_csv(lines.next().unwrap());
    let key = if header.iter().any(|h| h == "id") {
        "id"
    } else {
        "ids"
    };
    lines
        .map(|l| {
            let row: BTreeMap<String, String> = header.iter().cloned().zip(split_csv(l)).collect();
            (row[key].clone(), row)
        })
        .collect()
}

/// One CSV line (GDAL quotes fields with commas).
fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().unwrap().push(c),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gdal_reads_the_geojson_and_csv_with_the_upstream_fields() {
    const TEST: &str = "gdal_reads_the_geojson_and_csv_with_the_upstream_fields";
    if !has("ogrinfo") || !has("ogr2ogr") {
        skip_or_fail(
            TEST,
            "GDAL's ogrinfo/ogr2ogr are not installed (apt-get install gdal-bin)",
        );
        return;
    }
    let (_db, store, rows) = mirror().await;
    let (base, server) = serve(state_for(idle_engine(store.clone())));
    let dir = tempfile::tempdir().unwrap();

    // The same events as the upstream's answer, in its order (newest first).
    let url = format!(
        "{base}{QUERY}?format=geojson&starttime=2020-06-03&endtime=2020-06-10T23:59:59&minmagnitude=2.5"
    );
    let (status, body) = tokio::task::spawn_blocking(move || http_get(&url))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let mirror_file = dir.path().join("mirror.geojson");
    std::fs::write(&mirror_file, &body).unwrap();
    let upstream = testdata(USGS);
    let up = upstream.to_str().unwrap();
    let mine = mirror_file.to_str().unwrap();

    let up_fields = ogr_fields(up, &[]);
    assert_eq!(
        up_fields.len(),
        27,
        "id and the 26 properties: {up_fields:?}"
    );
    assert_eq!(
        ogr_fields(mine, &[]),
        up_fields,
        "GDAL sees other fields or types"
    );
    let (up_rows, my_rows) = (ogr_rows(up, &[]), ogr_rows(mine, &[]));
    assert_eq!(up_rows.len(), 388);
    assert_eq!(
        up_rows.keys().collect::<Vec<_>>(),
        my_rows.keys().collect::<Vec<_>>()
    );
    for (id, up_row) in &up_rows {
        let mut a = up_row.clone();
        let mut b = my_rows[id].clone();
        // `detail` points at the mirror; everything else is the upstream's.
        assert!(
            b["detail"].contains(&format!("{QUERY}?eventid=")),
            "{}",
            b["detail"]
        );
        a.remove("detail");
        b.remove("detail");
        assert_eq!(a, b, "event {id} differs");
    }

    // The CSV: the USGS columns, the stored events.
    let url = format!("{base}{QUERY}?format=csv&starttime=2000-01-01");
    let (status, body) = tokio::task::spawn_blocking(move || http_get(&url))
        .await
        .unwrap();
    server.stop(true).await;
    assert_eq!(status, 200);
    let csv_file = dir.path().join("mirror.csv");
    std::fs::write(&csv_file, &body).unwrap();
    let csv = csv_file.to_str().unwrap();
    let opts = [
        "AUTODETECT_TYPE=YES",
        "X_POSSIBLE_NAMES=longitude",
        "Y_POSSIBLE_NAMES=latitude",
    ];
    let names: Vec<String> = ogr_fields(csv, &opts)
        .iter()
        .map(|f| f.split(':').next().unwrap().to_string())
        .collect();
    let usgs = status_http::read_api::render::CSV_HEADER
        .trim()
        .split(',')
        .collect::<Vec<_>>();
    assert_eq!(names, usgs);
    let csv_rows = ogr_rows(csv, &opts);
    assert_eq!(csv_rows.len(), rows.len());
    for r in &rows {
        let got = &csv_rows[&r.id];
        let mag: Option<f64> = got["mag"].parse().ok();
        assert_eq!(mag, r.magnitude, "{}", r.id);
        assert_eq!(
            got["latitude"].parse::<f64>().unwrap(),
            r.latitude,
            "{}",
            r.id
        );
        assert_eq!(got["net"], r.net.clone().unwrap_or_default(), "{}", r.id);
    }
}
