//! `GET /`: a small server-rendered dashboard for people (SPEC section 6): the state, the
//! scheduler and its next run, a world map of the latest 200 events (inline SVG: Natural
//! Earth's land, points sized by magnitude and coloured by age), the last 20 runs with their
//! counts and durations, an inline SVG chart of durations and records per run, and the
//! latest 50 events. No external assets; it refreshes itself every 30 s. One script, this
//! crate's own `./static/live.js` (`assets/live.js`), follows `./events/stream` from the
//! stream's head when the page was read and adds, moves and removes map points and event
//! rows as changes commit; without scripts the page is complete as rendered. Its links are
//! relative (`./health`), so they resolve under whatever scope the surface is mounted in.
//! Every string that comes from the data (place names are untrusted upstream text) is
//! HTML-escaped (the script writes text nodes only), and the page is served with a
//! Content-Security-Policy that allows scripts from this origin only (`script-src 'self'`,
//! no inline script) and connections to it (`connect-src 'self'`).

use std::fmt::Write as _;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use quake_store::{CatalogueCounts, Earthquake, SyncRun};
use quake_store::{EventQuery, OrderBy};
use sync_engine::StatusSnapshot;

use crate::{AppState, DB_QUERY_TIMEOUT, HttpError};

/// Runs shown in the table and the chart.
pub const RUNS_SHOWN: i64 = 20;
/// Events shown in the table.
pub const EVENTS_SHOWN: i64 = 50;
/// Events drawn on the world map (the table shows the newest [`EVENTS_SHOWN`] of them).
pub const MAP_EVENTS_SHOWN: i64 = 200;
/// Map units per degree: the map is `0 0 360*U 180*U` (see [`map_xy`]).
pub const MAP_UNITS_PER_DEGREE: f64 = 4.0;
/// The land of the world as one SVG path on the map's grid: Natural Earth 110m, made once
/// from the npm package world-atlas by `scripts/land-110m-to-svg-path.py` (see
/// `assets/SOURCES.md`).
const LAND_PATH: &str = include_str!("../assets/land-110m.svgpath");
/// A point's radius in map units is `MAP_RADIUS_BASE * MAP_RADIUS_GROWTH^max(magnitude, 0)`.
pub const MAP_RADIUS_BASE: f64 = 2.5;
/// See [`MAP_RADIUS_BASE`].
pub const MAP_RADIUS_GROWTH: f64 = 1.35;
/// Radius of an event without a magnitude.
const MAP_RADIUS_UNKNOWN: f64 = 3.0;
/// The age classes of the map's points: CSS class and upper bound of the age, youngest first
/// (older than the last bound: `age-older`).
pub const MAP_AGE_CLASSES: [(&str, i64); 3] = [
    ("age-hour", 3600),
    ("age-day", 86_400),
    ("age-week", 7 * 86_400),
];
/// The page's `<meta http-equiv="refresh">`, in seconds.
pub const REFRESH_SECS: u32 = 30;

/// Escapes text for HTML content and (double- or single-quoted) attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The live lane's line: its role, what it reads, its last poll and change.
fn live_text(snap: &StatusSnapshot) -> String {
    let l = &snap.live;
    if !l.enabled {
        return "disabled".to_string();
    }
    let mut text = format!("{} · {} {}", l.role.as_str(), l.mode, l.url);
    if l.mode == "poll" {
        let _ = write!(text, " every {}s", l.interval_seconds);
    }
    let _ = write!(
        text,
        "; last poll {}, last change {}; {} inserted, {} updated",
        when(l.last_poll_at),
        when(l.last_change_at),
        l.records.inserted,
        l.records.updated
    );
    if let Some(e) = &l.last_error {
        let _ = write!(text, "; last error at {}: {e}", when(l.last_error_at));
    }
    text
}

/// The latest commit lag: seconds from the upstream's `updated` to the commit.
fn lag_text(snap: &StatusSnapshot) -> String {
    match (snap.latest_lag_seconds, snap.latest_lag_lane) {
        (Some(secs), Some(lane)) => format!(
            "{} from upstream update to commit ({} lane, committed {})",
            fmt_secs(secs),
            lane.as_str(),
            when(snap.latest_lag_at)
        ),
        _ => "no change committed by this process yet".to_string(),
    }
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "never".to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

fn duration_secs(run: &SyncRun) -> Option<f64> {
    run.duration_ms().map(|ms| ms as f64 / 1000.0)
}

fn fmt_secs(s: f64) -> String {
    quake_core::human_duration(Duration::try_from_secs_f64(s).unwrap_or_default())
}

/// What the database said, or why it did not.
struct DbView {
    runs: Vec<SyncRun>,
    events: Vec<Earthquake>,
    counts: CatalogueCounts,
    /// The event stream's head when the page was read: the live script resumes from it.
    stream_head: i64,
}

async fn load(state: &AppState) -> Result<DbView, HttpError> {
    let store = state.engine().store().clone();
    tokio::time::timeout(DB_QUERY_TIMEOUT, async move {
        // Before the events, so nothing committed in between is missed by the live script.
        let stream_head = store.change_horizon().await?.head;
        let runs = store.latest_runs(RUNS_SHOWN).await?;
        let latest = EventQuery {
            orderby: OrderBy::Time,
            limit: Some(MAP_EVENTS_SHOWN.max(EVENTS_SHOWN)),
            ..EventQuery::default()
        };
        let events = store.query_events(&latest).await?;
        let counts = store.catalogue_counts().await?;
        Ok::<_, HttpError>(DbView {
            runs,
            events,
            counts,
            stream_head,
        })
    })
    .await?
}

/// `healthy`, `degraded` or `unhealthy`, and why: the rules of `/health`.
fn health(state: &AppState, snap: &StatusSnapshot, db_up: bool) -> (&'static str, String) {
    if !db_up {
        return ("unhealthy", "the database does not answer".into());
    }
    match crate::health::degraded(state, snap) {
        Some(reason) => ("degraded", reason.into()),
        None => ("healthy", "database up, last sync fine".into()),
    }
}

const STYLE: &str = r#"
:root { color-scheme: light; --ink:#1d2330; --muted:#5b6475; --line:#d9dee7; --bg:#f6f7fa;
  --ok:#1a7f37; --warn:#9a6700; --bad:#cf222e; --bar:#4c7bd9; --dur:#d9534f; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: var(--ink); background: var(--bg); }
header { display: flex; align-items: center; gap: 14px; padding: 14px 24px; background: #fff;
  border-bottom: 1px solid var(--line); }
header h1 { font-size: 20px; margin: 0; }
main { padding: 18px 24px; display: grid; gap: 18px; max-width: 1240px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; }
h2 { font-size: 15px; margin: 0 0 10px; }
.badge { font-weight: 600; padding: 2px 10px; border-radius: 999px; color: #fff; }
.healthy { background: var(--ok); } .degraded { background: var(--warn); } .unhealthy { background: var(--bad); }
.muted { color: var(--muted); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dt { color: var(--muted); } dd { margin: 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
td.place { white-space: normal; overflow-wrap: anywhere; }
th { color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; }
.s-succeeded { color: var(--ok); } .s-failed { color: var(--bad); } .s-running { color: var(--warn); }
.s-abandoned { color: var(--muted); } .s-deleted { color: var(--bad); }
svg text { font: 11px system-ui, sans-serif; fill: var(--muted); }
.legend span { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 14px; vertical-align: middle; }
footer { padding: 0 24px 24px; color: var(--muted); }
#world-map { display: block; width: 100%; height: auto; border-radius: 6px; }
#world-map .sea { fill: #eaf1f8; } #world-map .grid { fill: none; stroke: #d3dde8; stroke-width: 1; }
#world-map .land { fill: #d9dee5; stroke: #b9c2ce; stroke-width: .8; stroke-linejoin: round; }
#world-map .quake { fill-opacity: .78; stroke: #fff; stroke-width: .9; }
.age-hour { fill: #d62728; background: #d62728; } .age-day { fill: #f28e2b; background: #f28e2b; }
.age-week { fill: #d4b000; background: #d4b000; } .age-older { fill: #7f8a99; background: #7f8a99; }
.map-legend { display: flex; flex-wrap: wrap; align-items: center; gap: 4px 0; margin-top: 8px; }
.map-legend svg { vertical-align: middle; margin: 0 4px 0 14px; }
.map-legend svg circle { fill: #7f8a99; fill-opacity: .78; }
.map-legend span { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin: 0 4px 0 14px; }
.map-legend .gap { display: inline-block; width: 28px; }
"#;

/// The chart of the given runs (oldest first): bars of records fetched, a line of durations.
fn chart(runs_oldest_first: &[&SyncRun]) -> String {
    const W: f64 = 1000.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 56.0;
    const RIGHT: f64 = 56.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 34.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg id="runs-chart" role="img" aria-label="Run durations and records per run" viewBox="0 0 {W} {H}" width="100%" height="{H}" xmlns="http://www.w3.org/2000/svg">"#
    );
    if runs_oldest_first.is_empty() {
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">No runs yet</text></svg>"#,
            W / 2.0,
            H / 2.0
        );
        return s;
    }
    let n = runs_oldest_first.len() as f64;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    // The records axis in whole steps of 1, 2 or 5 × 10^k, so its labels are round numbers.
    let most = runs_oldest_first
        .iter()
        .map(|r| r.fetched)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let max_records = 4.0 * nice_step(most / 4.0);
    let max_dur = runs_oldest_first
        .iter()
        .filter_map(|r| duration_secs(r))
        .fold(0.0_f64, f64::max)
        .max(0.001);
    let slot = plot_w / n;
    let bar_w = (slot * 0.6).max(2.0);
    // axes and gridlines
    for i in 0..=4 {
        let y = TOP + plot_h * f64::from(i) / 4.0;
        let records = max_records * f64::from(4 - i) / 4.0;
        let secs = max_dur * f64::from(4 - i) / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e6e9ef"/><text x="{}" y="{:.1}" text-anchor="end">{:.0}</text><text x="{}" y="{:.1}">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            records,
            W - RIGHT + 6.0,
            y + 4.0,
            fmt_secs(secs)
        );
    }
    let mut points = Vec::new();
    for (i, run) in runs_oldest_first.iter().enumerate() {
        let cx = LEFT + slot * (i as f64 + 0.5);
        let h = plot_h * run.fetched as f64 / max_records;
        let _ = write!(
            s,
            r#"<rect class="records" x="{:.1}" y="{:.1}" width="{bar_w:.1}" height="{h:.1}" fill="var(--bar)"><title>run {}: {} records fetched ({} inserted, {} updated)</title></rect>"#,
            cx - bar_w / 2.0,
            TOP + plot_h - h,
            run.id,
            run.fetched,
            run.inserted,
            run.updated
        );
        let _ = write!(
            s,
            r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">#{}</text>"#,
            H - BOTTOM + 16.0,
            run.id
        );
        if let Some(d) = duration_secs(run) {
            let y = TOP + plot_h - plot_h * d / max_dur;
            points.push(format!("{cx:.1},{y:.1}"));
            let _ = write!(
                s,
                r#"<circle class="duration" cx="{cx:.1}" cy="{y:.1}" r="3.5" fill="var(--dur)"><title>run {}: {}</title></circle>"#,
                run.id,
                fmt_secs(d)
            );
        }
    }
    if points.len() > 1 {
        let _ = write!(
            s,
            r#"<polyline points="{}" fill="none" stroke="var(--dur)" stroke-width="2"/>"#,
            points.join(" ")
        );
    }
    let _ = write!(
        s,
        r#"<text x="{LEFT}" y="{}" text-anchor="start">records</text><text x="{}" y="{}" text-anchor="end">duration</text></svg>"#,
        TOP - 14.0,
        W,
        TOP - 14.0
    );
    s
}

/// Where a point goes on the world map (equirectangular): `x = (lon + 180) * U`,
/// `y = (90 - lat) * U` with `U` = [`MAP_UNITS_PER_DEGREE`].
pub fn map_xy(longitude: f64, latitude: f64) -> (f64, f64) {
    (
        (longitude.clamp(-180.0, 180.0) + 180.0) * MAP_UNITS_PER_DEGREE,
        (90.0 - latitude.clamp(-90.0, 90.0)) * MAP_UNITS_PER_DEGREE,
    )
}

/// A point's radius in map units: it grows by [`MAP_RADIUS_GROWTH`] per magnitude unit.
pub fn map_radius(magnitude: Option<f64>) -> f64 {
    match magnitude.filter(|m| m.is_finite()) {
        Some(m) => MAP_RADIUS_BASE * MAP_RADIUS_GROWTH.powf(m.clamp(0.0, 10.0)),
        None => MAP_RADIUS_UNKNOWN,
    }
}

/// The CSS class of an event of origin time `time` seen at `now` (see [`MAP_AGE_CLASSES`]).
pub fn age_class(time: DateTime<Utc>, now: DateTime<Utc>) -> &'static str {
    let age = (now - time).num_seconds();
    MAP_AGE_CLASSES
        .iter()
        .find(|(_, bound)| age < *bound)
        .map_or("age-older", |(class, _)| class)
}

/// The world map: the land, a 30-degree graticule and the events (oldest drawn first, so
/// the newest are on top).
///
/// The hooks for a script that adds events live: the `<svg id="world-map">` carries the
/// projection (`data-units-per-degree`, `data-radius-base`, `data-radius-growth`) and the
/// time it was drawn (`data-generated`); the points are in `<g id="map-events">`, each a
/// `<circle class="quake age-…">` with `data-id`, `data-time` (RFC 3339) and `data-mag`.
/// For the live script (`assets/live.js`): `data-stream` (the stream, relative),
/// `data-stream-since` (the stream's head when the page was read; absent when the database
/// did not answer), `data-radius-unknown`, `data-max-events` and `data-max-rows` (the
/// events table's length). The table's rows are found by their last cell (the id).
fn world_map(events: &[Earthquake], now: DateTime<Utc>, stream_head: Option<i64>) -> String {
    let (w, h) = (360.0 * MAP_UNITS_PER_DEGREE, 180.0 * MAP_UNITS_PER_DEGREE);
    let mut s = String::with_capacity(LAND_PATH.len() + 256 * events.len() + 1024);
    let since = stream_head.map_or_else(String::new, |h| format!(r#" data-stream-since="{h}""#));
    let _ = write!(
        s,
        r#"<svg id="world-map" role="img" aria-label="World map of the latest events" viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg" data-projection="equirectangular" data-units-per-degree="{MAP_UNITS_PER_DEGREE}" data-radius-base="{MAP_RADIUS_BASE}" data-radius-growth="{MAP_RADIUS_GROWTH}" data-radius-unknown="{MAP_RADIUS_UNKNOWN}" data-max-events="{MAP_EVENTS_SHOWN}" data-max-rows="{EVENTS_SHOWN}" data-generated="{}" data-stream="./events/stream"{since}><rect class="sea" width="{w}" height="{h}"/><path class="grid" d=""#,
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let step = 30.0 * MAP_UNITS_PER_DEGREE;
    for i in 1..12 {
        let _ = write!(s, "M{} 0v{h}", step * f64::from(i));
    }
    for i in 1..6 {
        let _ = write!(s, "M0 {}h{w}", step * f64::from(i));
    }
    let _ = write!(
        s,
        r#""/><path class="land" d="{}"/><g id="map-events">"#,
        LAND_PATH.trim()
    );
    let mut drawn: Vec<&Earthquake> = events.iter().collect();
    drawn.sort_by_key(|e| e.time.0);
    for ev in drawn {
        let (x, y) = map_xy(ev.longitude, ev.latitude);
        let mag = ev
            .magnitude
            .map_or_else(|| "M?".to_string(), |m| format!("M{m:.1}"));
        let _ = write!(
            s,
            r#"<circle class="quake {}" data-id="{}" data-time="{}" data-mag="{}" cx="{x:.1}" cy="{y:.1}" r="{:.1}"><title>{} · {} · {}</title></circle>"#,
            age_class(ev.time.0, now),
            esc(&ev.id),
            ev.time.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ev.magnitude.map(|m| m.to_string()).unwrap_or_default(),
            map_radius(ev.magnitude),
            esc(&mag),
            esc(ev.place.as_deref().unwrap_or("–")),
            esc(&when(Some(ev.time.0)))
        );
    }
    s.push_str("</g></svg>");
    s
}

/// The map's legend: sizes for M2, M4, M6 and the age colours.
fn map_legend() -> String {
    let mut s = String::from(r#"<div class="map-legend muted">size by magnitude"#);
    for m in [2.0, 4.0, 6.0] {
        // Legend circles at the map's on-screen scale: about 0.83 px per map unit.
        let r = map_radius(Some(m)) * 0.83;
        let d = (2.0 * r + 2.0).ceil();
        let _ = write!(
            s,
            r#"<svg width="{d}" height="{d}" aria-hidden="true"><circle cx="{c:.1}" cy="{c:.1}" r="{r:.1}"/></svg>M{m}"#,
            c = d / 2.0
        );
    }
    s.push_str(r#"<b class="gap"></b>age"#);
    for (class, label) in [
        ("age-hour", "last hour"),
        ("age-day", "last day"),
        ("age-week", "last week"),
        ("age-older", "older"),
    ] {
        let _ = write!(s, r#"<span class="{class}"></span>{label}"#);
    }
    s.push_str("</div>");
    s
}

/// The smallest of 1, 2, 5 × 10^k (k ≥ 0) at least `x`.
fn nice_step(x: f64) -> f64 {
    let mut base = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if m * base >= x {
                return m * base;
            }
        }
        base *= 10.0;
    }
}

fn opt_num<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "–".to_string(), |v| v.to_string())
}

/// Renders the page.
fn render(
    state: &AppState,
    snap: &StatusSnapshot,
    db: Result<&DbView, &HttpError>,
    now: DateTime<Utc>,
) -> String {
    let (health_word, health_why) = health(state, snap, db.is_ok());
    let sched = state.scheduler();
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{REFRESH_SECS}"><meta name="viewport" content="width=device-width, initial-scale=1"><title>quakesync — {health_word}</title><style>{STYLE}</style></head><body>"#
    );
    let _ = write!(
        h,
        r#"<header><h1>quakesync</h1><span id="health" class="badge {health_word}">{health_word}</span><span class="muted">{} · version {}</span></header><main>"#,
        esc(&health_why),
        esc(&state.version),
    );

    // state
    let _ = write!(h, r#"<section id="state"><h2>State</h2><dl>"#);
    let db_text = match db {
        Ok(_) => format!("up ({})", snap.backend),
        Err(e) => format!("down ({}): {e}", snap.backend),
    };
    let _ = write!(h, "<dt>Database</dt><dd>{}</dd>", esc(&db_text));
    let sync_text = match &snap.current {
        Some(c) => format!(
            "running: run {} ({}), started {}, {} records so far",
            c.run_id,
            c.trigger,
            when(Some(c.started_at)),
            c.counts.fetched
        ),
        None => "idle".to_string(),
    };
    let _ = write!(
        h,
        r#"<dt>Sync</dt><dd id="sync-state">{}</dd>"#,
        esc(&sync_text)
    );
    let sched_text = if sched.enabled() {
        format!(
            "every {}; next run {}",
            quake_core::human_duration(sched.interval()),
            when(sched.next_run_at())
        )
    } else {
        "disabled (syncs run only on demand)".to_string()
    };
    let _ = write!(
        h,
        r#"<dt>Scheduler</dt><dd id="scheduler">{}</dd>"#,
        esc(&sched_text)
    );
    let last_text = match &snap.last_run {
        Some(r) => format!(
            "run {} {} at {}{}",
            r.id,
            r.status,
            when(r.finished_at.map(|t| t.0)),
            r.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
        None => "none yet".to_string(),
    };
    let _ = write!(h, "<dt>Last run</dt><dd>{}</dd>", esc(&last_text));
    let _ = write!(
        h,
        "<dt>Last success</dt><dd>{}</dd><dt>Cursor</dt><dd>{}</dd><dt>Source</dt><dd>{} · {}</dd>",
        esc(&when(snap.last_success)),
        esc(&when(snap.cursor)),
        esc(&snap.source_kind),
        esc(&snap.source_url),
    );
    if let Ok(v) = db {
        let _ = write!(
            h,
            r#"<dt>Catalogue</dt><dd id="catalogue">{} live, {} deleted, {} merged</dd>"#,
            v.counts.live, v.counts.deleted, v.counts.merged
        );
    }
    let _ = write!(
        h,
        r#"<dt>Live lane</dt><dd id="live-lane">{}</dd><dt>Freshness lag</dt><dd id="lag">{}</dd>"#,
        esc(&live_text(snap)),
        esc(&lag_text(snap)),
    );
    let _ = write!(
        h,
        "<dt>Skipped syncs</dt><dd>{} (another sync held the lock)</dd></dl></section>",
        snap.skipped_total
    );

    let runs: &[SyncRun] = db.map(|v| v.runs.as_slice()).unwrap_or(&[]);
    let map_events: &[Earthquake] = db.map(|v| v.events.as_slice()).unwrap_or(&[]);
    let events = &map_events[..map_events.len().min(EVENTS_SHOWN as usize)];

    // map
    let _ = write!(
        h,
        r#"<section id="map"><h2>Latest {} events on the map</h2>{}{}</section>"#,
        map_events.len(),
        world_map(map_events, now, db.ok().map(|v| v.stream_head)),
        map_legend()
    );

    // chart
    let oldest_first: Vec<&SyncRun> = runs.iter().rev().collect();
    let _ = write!(
        h,
        r#"<section id="chart"><h2>Last {} runs</h2><div class="legend muted"><span style="background:var(--bar)"></span>records fetched<span style="background:var(--dur)"></span>duration</div>{}</section>"#,
        runs.len(),
        chart(&oldest_first)
    );

    // runs table
    let _ = write!(
        h,
        r#"<section id="runs"><h2>Runs</h2><table><thead><tr><th>Run</th><th>Trigger</th><th>Status</th><th>Started</th><th class="num">Duration</th><th class="num">Fetched</th><th class="num">Inserted</th><th class="num">Updated</th><th class="num">Unchanged</th><th class="num">Deleted</th><th class="num">Merged</th><th class="num">Rejected</th><th class="num">Pages</th></tr></thead><tbody>"#
    );
    if runs.is_empty() {
        let _ = write!(
            h,
            r#"<tr><td colspan="13" class="muted">No runs yet.</td></tr>"#
        );
    }
    for r in runs {
        let _ = write!(
            h,
            r#"<tr><td>#{}</td><td>{}</td><td class="s-{}" title="{}">{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            r.id,
            esc(r.trigger.as_str()),
            esc(r.status.as_str()),
            esc(r.error.as_deref().unwrap_or("")),
            esc(r.status.as_str()),
            esc(&when(Some(r.started_at.0))),
            duration_secs(r).map_or_else(|| "–".to_string(), fmt_secs),
            r.fetched,
            r.inserted,
            r.updated,
            r.unchanged,
            r.deleted,
            r.merged,
            r.rejected,
            r.pages
        );
    }
    let _ = write!(h, "</tbody></table></section>");

    // events
    let _ = write!(
        h,
        r#"<section id="events"><h2>Latest {} events</h2><table><thead><tr><th>Time</th><th class="num">Mag</th><th>Place</th><th class="num">Depth</th><th>Status</th><th>Id</th></tr></thead><tbody>"#,
        events.len()
    );
    if events.is_empty() {
        let _ = write!(
            h,
            r#"<tr><td colspan="6" class="muted">No events stored.</td></tr>"#
        );
    }
    for ev in events {
        let mag = match (ev.magnitude, ev.mag_type.as_deref()) {
            (Some(m), Some(t)) => format!("{m:.1} {t}"),
            (Some(m), None) => format!("{m:.1}"),
            (None, _) => "–".to_string(),
        };
        let id_cell = match ev
            .url
            .as_deref()
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        {
            Some(u) => format!(
                r#"<a href="{}" rel="noopener noreferrer">{}</a>"#,
                esc(u),
                esc(&ev.id)
            ),
            None => esc(&ev.id),
        };
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td class="num">{}</td><td class="place">{}</td><td class="num">{}</td><td class="s-{}">{}</td><td>{}</td></tr>"#,
            esc(&when(Some(ev.time.0))),
            esc(&mag),
            esc(ev.place.as_deref().unwrap_or("–")),
            opt_num(ev.depth_km.map(|d| format!("{d:.1} km"))),
            esc(&ev.status),
            esc(&ev.status),
            id_cell
        );
    }
    let _ = write!(
        h,
        r#"</tbody></table></section></main><script src="./static/live.js" defer></script><footer>Generated {} · refreshes every {REFRESH_SECS} s · <a href="./health">health</a> · <a href="./sync-status">sync status</a> · <a href="./metrics">metrics</a> · <a href="./fdsnws/event/1/query?format=geojson&amp;limit=100">events as GeoJSON</a></footer></body></html>"#,
        esc(&when(Some(now)))
    );
    h
}

/// `GET` of a scope's own path without its slash (`/quakes`): a redirect to `quakes/`, the
/// dashboard, where its relative links resolve under the scope.
pub(crate) async fn to_dashboard(req: HttpRequest) -> HttpResponse {
    let last = req.path().rsplit('/').next().unwrap_or_default();
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, format!("{last}/")))
        .finish()
}

/// The dashboard's live script (`assets/live.js`).
pub const LIVE_SCRIPT: &str = include_str!("../assets/live.js");

/// `GET /static/live.js`: the dashboard's live script.
pub(crate) async fn live_script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(LIVE_SCRIPT)
}

/// `GET /`.
pub(crate) async fn dashboard(state: web::Data<AppState>) -> HttpResponse {
    let snap = state.engine().status();
    let db = load(&state).await;
    if let Err(e) = &db {
        log::warn!("Dashboard: the database did not answer: {e:?}");
    }
    let page = render(&state, &snap, db.as_ref(), Utc::now());
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0.75), 1.0);
        assert_eq!(nice_step(1.5), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(308.5), 500.0);
        assert_eq!(nice_step(1000.0), 1000.0);
    }

    #[test]
    fn map_projection_radius_and_age() {
        assert_eq!(map_xy(-180.0, 90.0), (0.0, 0.0));
        assert_eq!(map_xy(180.0, -90.0), (1440.0, 720.0));
        assert_eq!(map_xy(0.0, 0.0), (720.0, 360.0));
        assert_eq!(map_xy(142.5, 38.25), (1290.0, 207.0));
        // Out-of-range input stays on the map.
        assert_eq!(map_xy(200.0, -95.0), (1440.0, 720.0));
        assert_eq!(map_radius(Some(0.0)), MAP_RADIUS_BASE);
        assert_eq!(map_radius(Some(-1.5)), MAP_RADIUS_BASE);
        assert!((map_radius(Some(2.0)) - 2.5 * 1.35 * 1.35).abs() < 1e-9);
        assert!(map_radius(Some(7.0)) > map_radius(Some(6.9)));
        assert_eq!(map_radius(None), MAP_RADIUS_UNKNOWN);
        assert_eq!(map_radius(Some(f64::NAN)), MAP_RADIUS_UNKNOWN);
        let now = Utc::now();
        let ago = |secs| now - chrono::Duration::seconds(secs);
        assert_eq!(age_class(ago(0), now), "age-hour");
        assert_eq!(age_class(ago(3599), now), "age-hour");
        assert_eq!(age_class(ago(3600), now), "age-day");
        assert_eq!(age_class(ago(86_399), now), "age-day");
        assert_eq!(age_class(ago(86_400), now), "age-week");
        assert_eq!(age_class(ago(7 * 86_400), now), "age-older");
        // An origin time a little ahead of the clock is as young as it gets.
        assert_eq!(age_class(ago(-30), now), "age-hour");
    }

    #[test]
    fn the_land_path_is_the_committed_asset() {
        assert!(LAND_PATH.starts_with('M'));
        assert!(LAND_PATH.trim_end().ends_with('z'));
        assert_eq!(LAND_PATH.matches('M').count(), 128);
        let map = world_map(&[], Utc::now(), None);
        assert!(map.contains(LAND_PATH.trim()));
        assert!(map.ends_with(r#"<g id="map-events"></g></svg>"#));
    }

    #[test]
    fn empty_chart_says_so() {
        assert!(chart(&[]).contains("No runs yet"));
    }
}
