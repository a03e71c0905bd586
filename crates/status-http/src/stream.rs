//! `GET /events/stream`: every committed insert, update, deletion and merge as a
//! Server-Sent Event, resumable by id.
//!
//! Reads: [`StreamSettings`] (`stream.retention_hours`, `stream.client_buffer`,
//! `stream.max_clients`) and the store's change log (`Store::read_changes`, `Store::changes`).
//!
//! One hub task per process (started with the first client) follows the store's change
//! subscription (`Store::changes`: PostgreSQL `LISTEN`/`NOTIFY`, so every replica hears
//! every commit; SQLite in-process), reads the new rows of `event_changes` in seq order and
//! hands each to every client's bounded queue; it also prunes the log to its retention.
//! A full queue is waited on (at most `SEND_GRACE` per batch the hub reads); a client
//! whose queue is still full then is cut off: it gets an `overflow` event carrying the last
//! id it was given (as its `id:`), and the stream ends, so it reconnects from there.
//!
//! A client first registers with the hub, then replays the stored changes after its
//! `Last-Event-ID` (or `since`), then continues with the live ones, skipping those it
//! replayed: the change log is written in commit order, so nothing is missed and nothing is
//! sent twice. Without an id it starts at the current head. An id older than what the log
//! still holds (checked with every replay batch, in the batch's snapshot) or beyond its head
//! (a restored database) gets a `lost` event. Deletions and merges pass every filter.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use quake_core::config::Bounded;
use quake_store::{Change, ChangeKind, Horizon};
use quake_store::{Earthquake, Store, Ts};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::AppState;
use crate::error::HttpError;

/// Default of `stream.retention_hours`: a week.
pub const DEFAULT_RETENTION_HOURS: u64 = 168;
/// Default of `stream.client_buffer`: changes queued for one client.
pub const DEFAULT_CLIENT_BUFFER: u64 = 1024;
/// Default of `stream.max_clients`: concurrent streams per process.
pub const DEFAULT_MAX_CLIENTS: u64 = 1000;
/// A comment line is sent this often so proxies and clients see the stream alive.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// The `retry:` hint sent first (milliseconds before a client reconnects).
pub const RETRY_MS: u64 = 3000;

/// Changes the hub reads from the database at once.
const READ_BATCH: i64 = 500;
/// Changes one client's replay reads at once (what a replaying client holds).
const REPLAY_BATCH: i64 = 100;
/// How long the hub waits, per batch it reads, for room in full client queues before it
/// cuts those clients off (so a burst larger than `stream.client_buffer` reaches a client
/// that reads it, and one stuck client delays the others at most this long per batch).
const SEND_GRACE: Duration = Duration::from_secs(1);
/// How long a new client waits for the hub to have read where it starts.
const READY_WAIT: Duration = Duration::from_secs(10);
/// The hub re-reads the log this often even when nothing woke it.
const HUB_POLL: Duration = Duration::from_secs(30);
/// The hub prunes the log this often.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Frames queued between a client's task and its HTTP body.
const FRAME_QUEUE: usize = 16;

/// The `[stream]` section (SPEC section 4 style).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// Hours a change stays in the log (resumable); older ones are pruned.
    pub retention_hours: Bounded<1, 876_000>,
    /// Changes queued for one client; a client that falls this far behind is cut off.
    pub client_buffer: Bounded<1, 1_000_000>,
    /// Concurrent streams per process; beyond, 503.
    pub max_clients: Bounded<1, 1_000_000>,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            retention_hours: Bounded::clamped(DEFAULT_RETENTION_HOURS),
            client_buffer: Bounded::clamped(DEFAULT_CLIENT_BUFFER),
            max_clients: Bounded::clamped(DEFAULT_MAX_CLIENTS),
        }
    }
}

/// The process's stream hub: its clients and, once started, the task that feeds them.
/// Cheap to clone.
#[derive(Clone)]
pub struct Streams {
    inner: Arc<Hub>,
}

struct Hub {
    settings: StreamSettings,
    clients: Mutex<Vec<Slot>>,
    connected: AtomicUsize,
    /// Clients cut off for falling behind, since the start.
    cut_off: AtomicU64,
    next_id: AtomicU64,
    started: OnceLock<()>,
    /// The seq the hub follows the log from, read once before any client is served.
    start_seq: watch::Sender<Option<i64>>,
    /// Bounds the replays reading the database at once (the pool is shared with the engine).
    replays: OnceLock<Arc<tokio::sync::Semaphore>>,
    closing: watch::Sender<bool>,
}

struct Slot {
    id: u64,
    tx: mpsc::Sender<Arc<Change>>,
    overflowed: Arc<AtomicBool>,
}

impl Streams {
    pub fn new(settings: StreamSettings) -> Streams {
        Streams {
            inner: Arc::new(Hub {
                settings,
                clients: Mutex::new(Vec::new()),
                connected: AtomicUsize::new(0),
                cut_off: AtomicU64::new(0),
                next_id: AtomicU64::new(0),
                started: OnceLock::new(),
                start_seq: watch::channel(None).0,
                replays: OnceLock::new(),
                closing: watch::channel(false).0,
            }),
        }
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.inner.connected.load(Ordering::Relaxed)
    }

    /// Clients cut off so far for falling behind (`event: overflow`).
    pub fn cut_off(&self) -> u64 {
        self.inner.cut_off.load(Ordering::Relaxed)
    }

    /// Ends every stream (for a shutdown: open streams would hold the server's graceful
    /// stop until its timeout). Clients reconnect elsewhere with their last id.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.inner
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the hub (once; later calls do nothing): it follows `store`'s change log,
    /// feeds the clients and prunes the log to its retention; a second task closes every
    /// stream when `stop` completes. The first client starts it if nobody did; a server
    /// starts it at once, so that the log is pruned even while no client ever connects.
    /// Call it inside a tokio runtime.
    pub fn start(&self, store: &Store, stop: impl Future<Output = ()> + Send + 'static) {
        self.inner.started.get_or_init(|| {
            tokio::spawn(hub(self.clone(), store.clone()));
            let streams = self.clone();
            tokio::spawn(async move {
                stop.await;
                streams.close();
            });
        });
    }

    /// A client's live queue, or `None` when `max_clients` are connected.
    fn register(
        &self,
        store: &Store,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Option<Registration> {
        let max = self.inner.settings.max_clients.get() as usize;
        let n = self.inner.connected.fetch_add(1, Ordering::SeqCst);
        if n >= max {
            self.inner.connected.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        self.start(store, stop);
        self.inner.replays.get_or_init(|| {
            let n = (store.pool_state().max as usize / 2).max(1);
            Arc::new(tokio::sync::Semaphore::new(n))
        });
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let buffer = self.inner.settings.client_buffer.get() as usize;
        let (tx, rx) = mpsc::channel(buffer);
        let overflowed = Arc::new(AtomicBool::new(false));
        self.lock().push(Slot {
            id,
            tx,
            overflowed: overflowed.clone(),
        });
        Some(Registration {
            streams: self.clone(),
            id,
            rx,
            overflowed,
        })
    }

    /// Hands `change` to every client. A full queue is waited on until `deadline`; a client
    /// whose queue is still full then is cut off.
    async fn broadcast(&self, change: &Arc<Change>, deadline: tokio::time::Instant) {
        let mut full = Vec::new();
        self.lock()
            .retain(|slot| match slot.tx.try_send(change.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(c)) => {
                    full.push((slot.id, slot.tx.clone(), slot.overflowed.clone(), c));
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        if full.is_empty() {
            return;
        }
        let waits = full.into_iter().map(|(id, tx, overflowed, c)| async move {
            match tokio::time::timeout_at(deadline, tx.send(c)).await {
                Ok(Ok(())) => None,
                Ok(Err(_)) => Some(id),
                Err(_) => {
                    overflowed.store(true, Ordering::SeqCst);
                    self.inner.cut_off.fetch_add(1, Ordering::Relaxed);
                    Some(id)
                }
            }
        });
        let cut: Vec<u64> = futures_util::future::join_all(waits)
            .await
            .into_iter()
            .flatten()
            .collect();
        if !cut.is_empty() {
            self.lock().retain(|slot| !cut.contains(&slot.id));
        }
    }

    /// Waits until the hub knows where it starts (see [`hub`]).
    async fn ready(&self) -> Result<(), HttpError> {
        let mut rx = self.inner.start_seq.subscribe();
        match tokio::time::timeout(READY_WAIT, rx.wait_for(Option::is_some)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(HttpError::DatabaseUnavailable(
                "event stream: the hub has not read the change log's head".into(),
            )),
        }
    }
}

/// One connected client; unregisters when dropped.
struct Registration {
    streams: Streams,
    id: u64,
    rx: mpsc::Receiver<Arc<Change>>,
    overflowed: Arc<AtomicBool>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let id = self.id;
        self.streams.lock().retain(|s| s.id != id);
        self.streams.inner.connected.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The hub task: reads the log's head once, before any client is served (clients wait for
/// it: a client registered before a change the hub reads gets it from the hub, one
/// registered after finds it in its replay), then follows the store's change subscription
/// and fans the new rows out, from that head on, never re-reading it.
async fn hub(streams: Streams, store: Store) {
    let mut woken = store.changes();
    let mut closing = streams.inner.closing.subscribe();
    let retention = chrono::Duration::hours(streams.inner.settings.retention_hours.get() as i64);
    let mut last = loop {
        match read_head(&store).await {
            Ok(head) => break head,
            Err(e) => log::warn!("event stream: reading the change log's head failed: {e}"),
        }
        tokio::select! {
            _ = closing.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    streams.inner.start_seq.send_replace(Some(last));
    let mut pruned_at: Option<tokio::time::Instant> = None;
    loop {
        if pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            pruned_at = Some(tokio::time::Instant::now());
            if let Err(e) = prune(&store, Ts(chrono::Utc::now() - retention)).await {
                log::warn!("event stream: pruning the change log failed: {e}");
            }
        }
        if let Err(e) = catch_up(&streams, &store, &mut last).await {
            log::warn!("event stream: reading the change log failed: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        tokio::select! {
            woke = woken.changed() => {
                if woke.is_err() {
                    // The subscription ended (its store is gone): poll instead.
                    tokio::time::sleep(HUB_POLL).await;
                }
            }
            _ = closing.changed() => return,
            _ = tokio::time::sleep(HUB_POLL) => {}
        }
    }
}

async fn prune(store: &Store, before: Ts) -> Result<(), HttpError> {
    let n = store.prune_changes(before).await?;
    if n > 0 {
        log::info!("event stream: pruned {n} changes older than the retention");
    }
    Ok(())
}

async fn read_head(store: &Store) -> Result<i64, HttpError> {
    Ok(store.change_horizon().await?.head)
}

async fn catch_up(streams: &Streams, store: &Store, last: &mut i64) -> Result<(), HttpError> {
    loop {
        let batch = store.read_changes(*last, READ_BATCH).await?;
        let Some(end) = batch.last().map(|c| c.seq) else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + SEND_GRACE;
        for change in batch {
            streams.broadcast(&Arc::new(change), deadline).await;
        }
        *last = end;
    }
}

// ---------------------------------------------------------------------------
// Filters

/// What a client asked to hear: all must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub min_magnitude: Option<f64>,
    /// `(minlatitude, maxlatitude, minlongitude, maxlongitude)`; min > max longitude crosses
    /// the antimeridian.
    pub bbox: Option<(f64, f64, f64, f64)>,
    /// `(latitude, longitude, maxradiuskm)`.
    pub radius: Option<(f64, f64, f64)>,
}

/// The query string of a stream request: its filter and its `since`.
pub fn parse_params(query: &str) -> Result<(Filter, Option<i64>), HttpError> {
    let pairs: Vec<(String, String)> = serde_urlencoded_pairs(query)?;
    let mut f = Filter::default();
    let mut since = None;
    let (mut minlat, mut maxlat, mut minlon, mut maxlon) = (None, None, None, None);
    let (mut lat, mut lon, mut km) = (None, None, None);
    for (k, v) in &pairs {
        let num = |lo: f64, hi: f64| -> Result<f64, HttpError> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && (lo..=hi).contains(x))
                .ok_or_else(|| {
                    HttpError::BadRequest(format!("{k}: {v:?} is not a number in [{lo}, {hi}]"))
                })
        };
        match k.as_str() {
            "minmagnitude" | "minmag" => f.min_magnitude = Some(num(-10.0, 12.0)?),
            "minlatitude" | "minlat" => minlat = Some(num(-90.0, 90.0)?),
            "maxlatitude" | "maxlat" => maxlat = Some(num(-90.0, 90.0)?),
            "minlongitude" | "minlon" => minlon = Some(num(-180.0, 180.0)?),
            "maxlongitude" | "maxlon" => maxlon = Some(num(-180.0, 180.0)?),
            "latitude" | "lat" => lat = Some(num(-90.0, 90.0)?),
            "longitude" | "lon" => lon = Some(num(-180.0, 180.0)?),
            "maxradiuskm" => km = Some(num(0.0, 20_040.0)?),
            "since" => {
                since = Some(
                    v.trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|s| *s >= 0)
                        .ok_or_else(|| {
                            HttpError::BadRequest(format!("since: {v:?} is not an event id"))
                        })?,
                )
            }
            other => {
                return Err(HttpError::BadRequest(format!(
                    "{other}: unknown parameter (minmagnitude, minlatitude, maxlatitude, minlongitude, maxlongitude, latitude, longitude, maxradiuskm, since)"
                )));
            }
        }
    }
    if minlat.is_some() || maxlat.is_some() || minlon.is_some() || maxlon.is_some() {
        let (a, b) = (minlat.unwrap_or(-90.0), maxlat.unwrap_or(90.0));
        if a > b {
            return Err(HttpError::BadRequest(
                "minlatitude: greater than maxlatitude".into(),
            ));
        }
        f.bbox = Some((a, b, minlon.unwrap_or(-180.0), maxlon.unwrap_or(180.0)));
    }
    match (lat, lon, km) {
        (None, None, None) => {}
        (Some(a), Some(o), Some(r)) => f.radius = Some((a, o, r)),
        _ => {
            let missing = [("latitude", lat), ("longitude", lon), ("maxradiuskm", km)]
                .into_iter()
                .find(|(_, v)| v.is_none())
                .map_or("maxradiuskm", |(n, _)| n);
            return Err(HttpError::BadRequest(format!(
                "{missing}: required with latitude, longitude and maxradiuskm (a radius needs all three)"
            )));
        }
    }
    Ok((f, since))
}

fn serde_urlencoded_pairs(query: &str) -> Result<Vec<(String, String)>, HttpError> {
    web::Query::<Vec<(String, String)>>::from_query(query)
        .map(web::Query::into_inner)
        .map_err(|e| HttpError::BadRequest(format!("invalid query string: {e}")))
}

impl Filter {
    /// Whether a change of `row` passes (a change without its row passes).
    pub fn accepts(&self, row: Option<&Earthquake>) -> bool {
        row.is_none_or(|ev| self.accepts_at(ev.magnitude, ev.latitude, ev.longitude))
    }

    /// Whether an event of this magnitude at this place passes.
    pub fn accepts_at(&self, magnitude: Option<f64>, latitude: f64, longitude: f64) -> bool {
        if let Some(m) = self.min_magnitude
            && magnitude.is_none_or(|mag| mag < m)
        {
            return false;
        }
        if let Some((a, b, lo, hi)) = self.bbox {
            let lat_ok = (a..=b).contains(&latitude);
            let lon_ok = if lo <= hi {
                (lo..=hi).contains(&longitude)
            } else {
                longitude >= lo || longitude <= hi
            };
            if !(lat_ok && lon_ok) {
                return false;
            }
        }
        if let Some((lat, lon, km)) = self.radius
            && distance_km(lat, lon, latitude, longitude) > km
        {
            return false;
        }
        true
    }
}

/// Great-circle distance (haversine, mean Earth radius).
fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0088 * h.sqrt().min(1.0).asin()
}

// ---------------------------------------------------------------------------
// Frames

/// One SSE event: `id`, `event` and `data` (split into `data:` lines at line breaks).
fn frame(id: Option<i64>, event: &str, data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(data.len() + 48);
    if let Some(id) = id {
        out.extend_from_slice(format!("id: {id}\n").as_bytes());
    }
    out.extend_from_slice(format!("event: {event}\n").as_bytes());
    let text = String::from_utf8_lossy(data);
    for line in text.split(['\n', '\r']) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

/// The SSE event of one change: the GeoJSON Feature (as the FDSN `query` writes it with
/// `format=geojson`) for an insert or update, the id and new state for a deletion or merge.
fn change_frame(c: &Change, base: &str) -> Bytes {
    let mut data = Vec::new();
    match (c.kind, &c.row) {
        (ChangeKind::Insert | ChangeKind::Update, Some(row)) => {
            crate::read_api::render::write_feature(&mut data, row, base, false);
        }
        (ChangeKind::Merge, _) => {
            let body = serde_json::json!({ "id": c.event_id, "merged_into": c.merged_into });
            data = body.to_string().into_bytes();
        }
        _ => {
            let status = match c.kind {
                ChangeKind::Delete => "deleted",
                _ => "removed",
            };
            data = serde_json::json!({ "id": c.event_id, "status": status })
                .to_string()
                .into_bytes();
        }
    }
    frame(Some(c.seq), c.kind.as_str(), &data)
}

// ---------------------------------------------------------------------------
// The handler

/// `GET /events/stream`.
pub(crate) async fn stream(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    match open(&state, &req).await {
        Ok(res) => res,
        Err(e) => actix_web::ResponseError::error_response(&e),
    }
}

async fn open(state: &AppState, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
    let (filter, since_param) = parse_params(req.query_string())?;
    let header_id = match req.headers().get("Last-Event-ID") {
        None => None,
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| {
                    HttpError::BadRequest("Last-Event-ID: not an event id (not ASCII)".to_string())
                })?
                .trim();
            // An empty header is what a browser sends before it has an id.
            if s.is_empty() {
                None
            } else {
                Some(s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    HttpError::BadRequest(format!("Last-Event-ID: {s:?} is not an event id"))
                })?)
            }
        }
    };
    let since = header_id.or(since_param);
    let store = state.engine().store().clone();
    let streams = state.streams().clone();
    let reg = streams
        .register(&store, state.engine_stopped())
        .ok_or_else(|| {
            HttpError::Busy(format!(
                "too many stream clients (stream.max_clients = {})",
                streams.inner.settings.max_clients.get()
            ))
        })?;
    // Where the stream starts is read after registering and after the hub knows where it
    // starts (see the module doc and [`hub`]).
    streams.ready().await?;
    let replays = streams
        .inner
        .replays
        .get()
        .cloned()
        .ok_or_else(|| HttpError::Internal("event stream: no replay limit".into()))?;
    let horizon = store.change_horizon().await?;
    let base = query_url(req);
    let (tx, rx) = mpsc::channel::<Bytes>(FRAME_QUEUE);
    let closing = streams.inner.closing.subscribe();
    tokio::spawn(async move {
        let client = Client {
            store,
            replays,
            filter,
            base,
            out: tx,
        };
        if let Err(e) = client.run(reg, since, horizon, closing).await {
            log::debug!("event stream client ended: {e}");
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .insert_header(("X-Accel-Buffering", "no"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .streaming(body))
}

/// This service's FDSN `query` URL beside the stream (for the Features' `detail` links).
fn query_url(req: &HttpRequest) -> String {
    let info = req.connection_info();
    let path = req.path();
    let prefix = path.strip_suffix("/events/stream").unwrap_or("");
    format!(
        "{}://{}{prefix}/fdsnws/event/1/query",
        info.scheme(),
        info.host()
    )
}

struct Client {
    store: Store,
    /// Held while a replay batch is read.
    replays: Arc<tokio::sync::Semaphore>,
    filter: Filter,
    base: String,
    out: mpsc::Sender<Bytes>,
}

/// Why a client's task ended early.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error("the client went away")]
    Gone,
    #[error("database: {0}")]
    Db(#[from] HttpError),
}

impl Client {
    async fn send(&self, b: Bytes) -> Result<(), End> {
        self.out.send(b).await.map_err(|_| End::Gone)
    }

    /// Whether the client is sent `c`: deletions and merges always (the client may hold the
    /// event from when it passed), inserts and updates when the event as stored now passes.
    fn passes(&self, c: &Change) -> bool {
        matches!(c.kind, ChangeKind::Delete | ChangeKind::Merge)
            || self.filter.accepts(c.row.as_ref())
    }

    /// `event: lost`: the changes after `last_id` up to `resumed_after` cannot be sent; its
    /// `id:` is `resumed_after`, where the stream continues.
    async fn lost(&self, last_id: i64, resumed_after: i64, why: &str) -> Result<(), End> {
        let body = serde_json::json!({
            "last_id": last_id,
            "resumed_after": resumed_after,
            "error": why,
        });
        self.send(frame(
            Some(resumed_after),
            "lost",
            body.to_string().as_bytes(),
        ))
        .await
    }

    async fn run(
        self,
        mut reg: Registration,
        since: Option<i64>,
        horizon: Horizon,
        mut closing: watch::Receiver<bool>,
    ) -> Result<(), End> {
        if *closing.borrow_and_update() {
            return Ok(());
        }
        self.send(Bytes::from(format!("retry: {RETRY_MS}\n\n")))
            .await?;
        let mut cursor = since.unwrap_or(horizon.head);
        // Replay what is stored after the client's id, each batch read with the log's
        // horizon in one snapshot: an id beyond the head (the database was restored or
        // recreated) or below what was pruned (before or during the replay) is told.
        loop {
            let (h, batch) = {
                let _permit = self.replays.acquire().await.map_err(|_| End::Gone)?;
                (self.store.read_changes_at(cursor, REPLAY_BATCH).await).map_err(HttpError::from)?
            };
            if cursor > h.head {
                self.lost(cursor, h.head, "your id is beyond the newest change this stream holds (its database was restored or recreated): reload the catalogue").await?;
                cursor = h.head;
                continue;
            }
            if cursor < h.pruned_through {
                self.lost(cursor, h.pruned_through, "changes after your id and up to resumed_after are older than the stream's retention and were pruned: reload the catalogue").await?;
                cursor = h.pruned_through;
            }
            if batch.is_empty() {
                break;
            }
            let from = cursor;
            for c in batch.iter().filter(|c| c.seq > from) {
                cursor = c.seq;
                if self.passes(c) {
                    self.send(change_frame(c, &self.base)).await?;
                }
            }
        }
        // Then live, skipping what the replay sent.
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                c = reg.rx.recv() => match c {
                    Some(c) => {
                        if c.seq <= cursor {
                            continue;
                        }
                        cursor = c.seq;
                        if self.passes(&c) {
                            self.send(change_frame(&c, &self.base)).await?;
                        }
                    }
                    None => {
                        if reg.overflowed.load(Ordering::SeqCst) {
                            let body = serde_json::json!({
                                "last_id": cursor,
                                "error": "this client fell behind the stream (stream.client_buffer) and was cut off: reconnect with Last-Event-ID to resume",
                            });
                            self.send(frame(Some(cursor), "overflow", body.to_string().as_bytes()))
                                .await?;
                        }
                        return Ok(());
                    }
                },
                _ = beat.tick() => self.send(Bytes::from_static(b": heartbeat\n\n")).await?,
                _ = closing.changed() => return Ok(()),
                _ = self.out.closed() => return Err(End::Gone),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_data_lines() {
        let f = frame(Some(7), "insert", b"{\"a\":\n1}");
        assert_eq!(&f[..], b"id: 7\nevent: insert\ndata: {\"a\":\ndata: 1}\n\n");
    }

    #[test]
    fn params_are_checked_and_named() {
        let (f, since) = parse_params("minmagnitude=4.5&since=12").unwrap_or_default();
        assert_eq!((f.min_magnitude, since), (Some(4.5), Some(12)));
        for (q, name) in [
            ("minmagnitude=x", "minmagnitude"),
            ("minlatitude=100", "minlatitude"),
            ("latitude=1&longitude=2", "maxradiuskm"),
            ("since=-1", "since"),
            ("bogus=1", "bogus"),
        ] {
            let e = parse_params(q)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.starts_with(name), "{q}: {e}");
        }
    }

    #[test]
    fn antimeridian_box_and_radius() {
        let (f, _) =
            parse_params("minlongitude=170&maxlongitude=-170&minlatitude=-30&maxlatitude=0")
                .unwrap_or_default();
        assert!(f.accepts_at(None, -20.0, 178.0));
        assert!(f.accepts_at(None, -20.0, -175.0));
        assert!(!f.accepts_at(None, -20.0, 0.0));
        assert!(!f.accepts_at(None, 10.0, 178.0));
        let (r, _) = parse_params("latitude=0&longitude=0&maxradiuskm=200").unwrap_or_default();
        assert!(r.accepts_at(None, 1.0, 1.0)); // ~157 km
        assert!(!r.accepts_at(None, 2.0, 2.0)); // ~314 km
        let (m, _) = parse_params("minmagnitude=4").unwrap_or_default();
        assert!(m.accepts_at(Some(4.0), 0.0, 0.0));
        assert!(!m.accepts_at(Some(3.9), 0.0, 0.0));
        assert!(!m.accepts_at(None, 0.0, 0.0));
    }
}
