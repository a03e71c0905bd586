//! `GET /`: a small server-rendered dashboard for people (SPEC section 6): the state, the
//! scheduler and its next run, the last 20 runs with their counts and durations, an inline
//! SVG chart of durations and records per run, and the latest 50 events. No scripts, no
//! external assets; it refreshes itself every 30 s. Its links are relative (`./health`), so
//! they resolve under whatever scope the surface is mounted in. Every string that comes from the data
//! (place names are untrusted upstream text) is HTML-escaped, and the page is served with a
//! Content-Security-Policy that allows no script at all.

use std::fmt::Write as _;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use quake_store::query::{EventQuery, OrderBy};
use quake_store::{CatalogueCounts, Earthquake, SyncRun};
use sync_engine::StatusSnapshot;

use crate::{AppState, DB_QUERY_TIMEOUT, HttpError};

/// Runs shown in the table and the chart.
pub const RUNS_SHOWN: i64 = 20;
/// Events shown.
pub const EVENTS_SHOWN: i64 = 50;
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
    if s < 1.0 {
        format!("{:.0} ms", s * 1000.0)
    } else if s < 10.0 {
        format!("{s:.2} s")
    } else if s < 120.0 {
        format!("{s:.1} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}

/// What the database said, or why it did not.
struct DbView {
    runs: Vec<SyncRun>,
    events: Vec<Earthquake>,
    counts: CatalogueCounts,
}

async fn load(state: &AppState) -> Result<DbView, HttpError> {
    let store = state.engine().store().clone();
    tokio::time::timeout(DB_QUERY_TIMEOUT, async move {
        let mut conn = store.conn().await?;
        let mut db = conn.db();
        let runs = quake_store::runs::latest_runs(&mut db, RUNS_SHOWN).await?;
        let events = quake_store::query::query_events(
            &mut db,
            &EventQuery {
                orderby: OrderBy::Time,
                limit: Some(EVENTS_SHOWN),
                ..EventQuery::default()
            },
        )
        .await?;
        let counts = quake_store::read::catalogue_counts(&mut db).await?;
        Ok::<_, HttpError>(DbView {
            runs,
            events,
            counts,
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
            sync_engine::scheduler::human(sched.interval()),
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
        "<dt>Skipped syncs</dt><dd>{} (another sync held the lock)</dd></dl></section>",
        snap.skipped_total
    );

    let runs: &[SyncRun] = db.map(|v| v.runs.as_slice()).unwrap_or(&[]);
    let events: &[Earthquake] = db.map(|v| v.events.as_slice()).unwrap_or(&[]);

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
            esc(&r.trigger),
            esc(&r.status),
            esc(r.error.as_deref().unwrap_or("")),
            esc(&r.status),
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
        r#"</tbody></table></section></main><footer>Generated {} · refreshes every {REFRESH_SECS} s · <a href="./health">health</a> · <a href="./sync-status">sync status</a> · <a href="./metrics">metrics</a> · <a href="./fdsnws/event/1/query?format=geojson&amp;limit=100">events as GeoJSON</a></footer></body></html>"#,
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
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
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
    fn empty_chart_says_so() {
        assert!(chart(&[]).contains("No runs yet"));
    }
}
