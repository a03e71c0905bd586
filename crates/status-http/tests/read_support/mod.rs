//! Helpers of the read API, dashboard and chained-sync tests: catalogues filled directly
//! through the store's write path, and an app over them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServiceResponse;
use chrono::{DateTime, Utc};
use quake_api::{FdsnClient, HttpOptions, parse_usgs_collection};
use quake_store::{EventRecord, PageWrite, Store, Ts};
use serde_json::Value;
use status_http::AppState;
use sync_engine::policy::decide;
use sync_engine::{Engine, EngineConfig, FdsnSource, SchedulerHandle};

pub const QUERY: &str = "/fdsnws/event/1/query";

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The records the engine would write for a USGS fixture.
pub fn fixture_records(name: &str) -> Vec<EventRecord> {
    let page = parse_usgs_collection(&fixture(name)).unwrap();
    page.events
        .iter()
        .map(sync_engine::record::to_record)
        .collect()
}

pub fn ts(s: &str) -> Ts {
    Ts(s.parse::<DateTime<Utc>>().unwrap())
}

/// A synthetic record; `ids` lists the aliases besides `id`.
pub fn rec(id: &str, aliases: &[&str], time: &str, mag: Option<f64>) -> EventRecord {
    let mut all: Vec<&str> = aliases.to_vec();
    all.push(id);
    all.sort_unstable();
    all.dedup();
    EventRecord {
        id: id.into(),
        ids: format!(",{},", all.join(",")),
        time: ts(time),
        updated: ts(time),
        magnitude: mag,
        mag_type: mag.map(|_| "ml".into()),
        place: Some(format!("10 km N of {id}ville")),
        title: Some(format!("M ? - {id}")),
        longitude: 10.0,
        latitude: 20.0,
        depth_km: Some(5.0),
        status: "reviewed".into(),
        event_type: Some("earthquake".into()),
        net: Some("xx".into()),
        code: Some(id.trim_start_matches("xx").into()),
        tsunami: Some(0),
        sig: Some(100),
        felt: None,
        alert: None,
        url: Some(format!("https://example.invalid/event/{id}")),
        source: "usgs".into(),
        content_hash: String::new(),
        cdi: None,
        mmi: None,
        gap: None,
        sources: None,
        properties: None,
    }
    .rehashed()
}

/// The content hash the engine would compute, for records built or changed by hand.
pub trait Rehash {
    fn rehashed(self) -> Self;
}

impl Rehash for EventRecord {
    fn rehashed(mut self) -> Self {
        let ev = quake_api::Event {
            id: self.id.clone(),
            ids: self.alias_list().map(str::to_string).collect(),
            time: self.time.0,
            updated: self.updated.0,
            magnitude: self.magnitude,
            mag_type: self.mag_type.clone(),
            place: self.place.clone(),
            title: self.title.clone(),
            longitude: self.longitude,
            latitude: self.latitude,
            depth_km: self.depth_km,
            status: self.status.clone(),
            event_type: self.event_type.clone(),
            net: self.net.clone(),
            code: self.code.clone(),
            tsunami: self.tsunami,
            sig: self.sig,
            felt: self.felt,
            alert: self.alert.clone(),
            url: self.url.clone(),
            cdi: self.cdi,
            mmi: self.mmi,
            gap: self.gap,
            sources: self.sources.clone(),
            properties: self.properties.clone(),
            source: quake_api::SourceKind::Usgs,
        };
        self.content_hash = sync_engine::record::content_hash(&ev);
        self
    }
}

/// Records as the engine stores them since issue 16: with the upstream's `properties`.
pub trait WithProperties {
    /// Sets `properties` to the USGS properties of the record's columns, and rehashes.
    fn with_usgs_properties(self) -> Self;
}

impl WithProperties for EventRecord {
    fn with_usgs_properties(mut self) -> Self {
        let ms = |t: Ts| t.0.timestamp_millis();
        let props = serde_json::json!({
            "mag": self.magnitude, "place": self.place, "time": ms(self.time),
            "updated": ms(self.updated), "tz": null, "url": self.url,
            "detail": format!("https://example.invalid/detail/{}", self.id),
            "felt": self.felt, "cdi": self.cdi, "mmi": self.mmi, "alert": self.alert,
            "status": self.status, "tsunami": self.tsunami, "sig": self.sig, "net": self.net,
            "code": self.code, "ids": self.ids, "sources": self.sources, "types": ",origin,",
            "nst": 12, "dmin": 0.25, "rms": 0.5, "gap": self.gap, "magType": self.mag_type,
            "type": self.event_type, "title": self.title,
        });
        self.properties = Some(props.to_string());
        self.rehashed()
    }
}

/// Writes records through `apply_page`, in pages of `page` records.
pub async fn fill(store: &Store, records: &[EventRecord], page: usize) {
    for chunk in records.chunks(page.max(1)) {
        let r = store
            .apply_page(PageWrite::new(chunk), decide)
            .await
            .unwrap();
        assert_eq!(r.counts.rejected, 0, "{:?}", r.outcomes);
    }
}

/// An engine whose source is never asked (nothing listens there).
pub fn idle_engine(store: Store) -> Engine {
    let client = FdsnClient::new(
        "http://127.0.0.1:9/fdsnws/event/1/query",
        HttpOptions {
            max_retries: 0,
            ..HttpOptions::default()
        },
    )
    .unwrap();
    Engine::new(store, Arc::new(FdsnSource(client)), EngineConfig::default())
}

pub fn state_for(engine: Engine) -> AppState {
    AppState::new(
        engine,
        SchedulerHandle::disabled(Duration::from_secs(600), Duration::from_secs(30)),
    )
}

/// Builds the app: `let app = read_app!(state);`.
#[macro_export]
macro_rules! read_app {
    ($state:expr) => {{
        let state = $state.clone();
        actix_web::test::init_service(
            actix_web::App::new()
                .configure(move |cfg| status_http::configure_app(cfg, state.clone())),
        )
        .await
    }};
}

/// `get!(app, "/uri")`: status and body (JSON; a text body as a JSON string, none as null).
/// On the FDSN paths it asks for GeoJSON when the URI names no `format` (the service's
/// default is QuakeML).
#[macro_export]
macro_rules! get {
    ($app:expr, $uri:expr) => {{
        let uri: String = $crate::read_support::geojson_by_default(&$uri);
        let uri: &str = &uri;
        let res = actix_web::test::call_service(
            $app,
            actix_web::test::TestRequest::get().uri(uri).to_request(),
        )
        .await;
        $crate::read_support::json(res).await
    }};
}

/// `text!(app, "/uri")`: status, content type and body text (the URI as given).
#[macro_export]
macro_rules! text {
    ($app:expr, $uri:expr) => {{
        let uri: &str = &$uri;
        let res = actix_web::test::call_service(
            $app,
            actix_web::test::TestRequest::get().uri(uri).to_request(),
        )
        .await;
        $crate::read_support::text_of(res).await
    }};
}

/// Status, content type and body text of a response.
pub async fn text_of(res: ServiceResponse) -> (u16, String, String) {
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = actix_web::test::read_body(res).await;
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// `uri` with `format=geojson` added on the FDSN paths when it names no format.
pub fn geojson_by_default(uri: &str) -> String {
    if uri.starts_with("/fdsnws/event/1/") && !uri.contains("format=") {
        let sep = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{sep}format=geojson")
    } else {
        uri.to_string()
    }
}

/// Status and body of a response: JSON when it is JSON, a text body (the FDSN error
/// document) as a JSON string, an empty one (204) as null.
pub async fn json(res: ServiceResponse) -> (u16, Value) {
    let status = res.status().as_u16();
    let is_json = res
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").contains("json"));
    let body = actix_web::test::read_body(res).await;
    if body.is_empty() {
        return (status, Value::Null);
    }
    if !is_json {
        return (
            status,
            Value::String(String::from_utf8_lossy(&body).into_owned()),
        );
    }
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)));
    (status, json)
}

/// The ids of a FeatureCollection's features, in order.
pub fn feature_ids(v: &Value) -> Vec<String> {
    v["features"]
        .as_array()
        .unwrap_or_else(|| panic!("no features: {v}"))
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

/// Serves `state` on a real loopback port; returns the base URL and the server's handle.
pub fn serve(state: AppState) -> (String, actix_web::dev::ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new().configure(|cfg| status_http::configure_app(cfg, state.clone()))
    })
    .workers(2)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), handle)
}

/// Sets `last_changed_at` of every row to `t` (to age a catalogue in a test).
pub async fn set_last_changed(store: &Store, t: Ts) {
    quake_store::testing::set_last_changed(store, t)
        .await
        .unwrap();
}
