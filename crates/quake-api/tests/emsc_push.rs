//! The EMSC push client (`EmscPush`) against a local WebSocket server that the test drives
//! frame by frame: creates and updates made of the real EMSC fixture's features, garbage,
//! dropped and closed connections, refused handshakes, a silent peer, an oversized message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use quake_api::{
    EmscPush, Event, PushAction, PushMessage, PushOptions, RejectedRecord, SourceKind, parse_emsc,
    parse_emsc_push,
};
use serde_json::value::RawValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;

mod support;
use support::read;

const EMSC: &str = "emsc_fdsn_json_2025-04-26_turkey-region_minmag2.5.json";
/// A bound on any wait for something that must happen; never reached when the code works.
const PATIENCE: Duration = Duration::from_secs(30);

/// The fixture's features, each as the exact JSON text it has in the file.
fn features() -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Collection<'a> {
        #[serde(borrow)]
        features: Vec<&'a RawValue>,
    }
    let body = read(EMSC);
    let text = std::str::from_utf8(&body).unwrap();
    let c: Collection<'_> = serde_json::from_str(text).unwrap();
    c.features.iter().map(|f| f.get().to_owned()).collect()
}

fn push(action: &str, feature: &str) -> String {
    format!(r#"{{"action":"{action}","data":{feature}}}"#)
}

/// The feature revised: a new magnitude and a later `lastupdate`.
fn revised(feature: &str, mag: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(feature).unwrap();
    let old_mag = v["properties"]["mag"].to_string();
    let old_update = v["properties"]["lastupdate"].as_str().unwrap().to_owned();
    let out = feature
        .replacen(
            &format!(r#""mag": {old_mag}"#),
            &format!(r#""mag": {mag}"#),
            1,
        )
        .replacen(&old_update, "2025-04-26T23:59:59.5Z", 1);
    assert_ne!(out, feature, "the revision changed nothing");
    out
}

/// A local WebSocket server: every connection it accepts is handed to the test.
struct Server {
    url: String,
    conns: mpsc::UnboundedReceiver<WebSocketStream<TcpStream>>,
}

impl Server {
    async fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "ws://{}/standing_order/websocket",
            listener.local_addr().unwrap()
        );
        let (tx, conns) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await
                    && tx.send(ws).is_err()
                {
                    break;
                }
            }
        });
        Server { url, conns }
    }

    async fn next_conn(&mut self) -> WebSocketStream<TcpStream> {
        tokio::time::timeout(PATIENCE, self.conns.recv())
            .await
            .expect("the client did not connect")
            .unwrap()
    }
}

fn opts() -> PushOptions {
    PushOptions {
        connect_timeout: Duration::from_secs(10),
        // Far longer than any test: a healthy connection is never given up here.
        ping_interval: Duration::from_secs(600),
        read_timeout: Duration::from_secs(600),
        reconnect_base: Duration::from_millis(10),
        reconnect_max: Duration::from_millis(50),
        ..PushOptions::default()
    }
}

async fn next(client: &mut EmscPush) -> PushMessage {
    tokio::time::timeout(PATIENCE, client.recv())
        .await
        .expect("no message from the client")
        .expect("the client stopped")
}

async fn expect_event(client: &mut EmscPush, action: PushAction) -> Event {
    match next(client).await {
        PushMessage::Event { action: a, event } if a == action => *event,
        other => panic!("expected a {action:?} event, got {other:?}"),
    }
}

async fn expect_rejected(client: &mut EmscPush) -> RejectedRecord {
    match next(client).await {
        PushMessage::Rejected(r) => r,
        other => panic!("expected a rejected message, got {other:?}"),
    }
}

async fn expect_connected(client: &mut EmscPush, reconnect: bool) {
    match next(client).await {
        PushMessage::Connected { reconnect: r } if r == reconnect => {}
        other => panic!("expected Connected {{ reconnect: {reconnect} }}, got {other:?}"),
    }
}

async fn expect_disconnected(client: &mut EmscPush) -> String {
    match next(client).await {
        PushMessage::Disconnected { reason, retry_in } => {
            assert!(retry_in <= Duration::from_millis(50), "{retry_in:?}");
            reason
        }
        other => panic!("expected Disconnected, got {other:?}"),
    }
}

async fn send(conn: &mut WebSocketStream<TcpStream>, text: &str) {
    conn.send(Message::text(text)).await.unwrap();
}

/// The fixture read by the FDSN parser: what the push client must produce for the same features.
fn fdsn_events() -> Vec<Event> {
    parse_emsc(&read(EMSC)).unwrap().events
}

#[test]
fn push_messages_read_as_the_emsc_parser_reads_the_fixture() {
    let expected = fdsn_events();
    let features = features();
    assert_eq!(features.len(), 430);
    assert_eq!(expected.len(), 430);
    for (feature, want) in features.iter().zip(&expected) {
        let (action, got) = parse_emsc_push(&push("create", feature)).unwrap();
        assert_eq!(action, PushAction::Create);
        assert_eq!(&got, want);
    }
    // Depth: the geometry says minus, the properties say plus, and the event is positive.
    let first = &expected[0];
    assert_eq!(first.id, "20250426_0000198");
    assert_eq!(first.depth_km, Some(15.0));
    assert!(features[0].contains("-15.0"));
    assert_eq!(first.source, SourceKind::Emsc);
    // Lossless: the properties as sent, number spelling included.
    let props = first.properties.as_deref().unwrap();
    assert!(props.contains(r#""lat": 35.0700"#), "{props}");
    assert!(props.contains(r#""source_catalog": "EMSC-RTS""#), "{props}");
    // An update is an update; a feature without properties.depth takes minus the geometry's.
    let (action, ev) = parse_emsc_push(&push("update", &features[1])).unwrap();
    assert_eq!(action, PushAction::Update);
    assert_eq!(ev.depth_km, Some(16.3));
    let no_depth = features[1].replacen(r#""depth": 16.3,"#, "", 1);
    let (_, ev) = parse_emsc_push(&push("update", &no_depth)).unwrap();
    assert_eq!(ev.depth_km, Some(16.3));
}

#[test]
fn bad_push_messages_are_rejected_with_their_text() {
    let f = &features()[0];
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        ("garbage".into(), "not JSON", None),
        (
            r#"{"action":"create","data":"#.into(),
            "truncated JSON",
            None,
        ),
        ("[1,2]".into(), "not a push message", None),
        (r#"{"action":"create"}"#.into(), "missing data", None),
        (format!(r#"{{"data":{f}}}"#), "missing action", None),
        (push("delete", f), "unknown action", None),
        (
            push(
                "create",
                &f.replacen(r#""lat": 35.0700"#, r#""lat": 135.07"#, 1),
            ),
            "latitude 135.07 outside",
            Some("20250426_0000198"),
        ),
        (
            push(
                "create",
                &f.replacen(r#""time": "2025"#, r#""time": "later"#, 1),
            ),
            "cannot parse time",
            Some("20250426_0000198"),
        ),
    ];
    for (text, reason, id) in cases {
        let r = parse_emsc_push(&text).unwrap_err();
        assert!(r.reason.contains(reason), "{text}: {}", r.reason);
        assert_eq!(r.payload, text, "the payload is the message as received");
        assert_eq!(r.source_id.as_deref(), id, "{text}");
    }
}

#[tokio::test]
async fn every_event_arrives_once_in_order_garbage_is_reported_and_drops_are_survived() {
    let mut server = Server::start().await;
    let fs = features();
    let events = fdsn_events();
    let mut client = EmscPush::start(&server.url, opts(), CancellationToken::new()).unwrap();

    // Connection 1: creates, garbage, an update, an invalid feature, a binary frame, an
    // unknown action, a create; then the TCP connection drops without a close.
    let mut conn = server.next_conn().await;
    expect_connected(&mut client, false).await;
    let update_0 = revised(&fs[0], "2.9");
    let invalid = fs[3].replacen(r#""lat": "#, r#""lat": 200, "was": "#, 1);
    for text in [
        push("create", &fs[0]),
        push("create", &fs[1]),
        "{not json at all".to_owned(),
        push("update", &update_0),
        push("create", &invalid),
    ] {
        send(&mut conn, &text).await;
    }
    conn.send(Message::binary(vec![0xde, 0xad, 0xbe, 0xef]))
        .await
        .unwrap();
    send(&mut conn, &push("delete", &fs[2])).await;
    send(&mut conn, &push("create", &fs[2])).await;
    drop(conn);

    assert_eq!(
        expect_event(&mut client, PushAction::Create).await,
        events[0]
    );
    assert_eq!(
        expect_event(&mut client, PushAction::Create).await,
        events[1]
    );
    let garbage = expect_rejected(&mut client).await;
    assert_eq!(garbage.payload, "{not json at all");
    assert!(garbage.reason.contains("not JSON"), "{}", garbage.reason);
    let updated = expect_event(&mut client, PushAction::Update).await;
    assert_eq!(updated.id, events[0].id);
    assert_eq!(updated.magnitude, Some(2.9));
    assert!(updated.updated > events[0].updated);
    let bad = expect_rejected(&mut client).await;
    assert_eq!(bad.source_id.as_deref(), Some(events[3].id.as_str()));
    assert!(bad.reason.contains("latitude 200"), "{}", bad.reason);
    assert_eq!(bad.payload, push("create", &invalid));
    let binary = expect_rejected(&mut client).await;
    assert!(
        binary.reason.contains("binary frame of 4 bytes"),
        "{}",
        binary.reason
    );
    let unknown = expect_rejected(&mut client).await;
    assert!(
        unknown.reason.contains("unknown action"),
        "{}",
        unknown.reason
    );
    assert_eq!(
        expect_event(&mut client, PushAction::Create).await,
        events[2]
    );
    let reason = expect_disconnected(&mut client).await;
    assert!(reason.contains("connection"), "{reason}");

    // Connection 2: the client reconnects and says so; the server closes it properly.
    let mut conn = server.next_conn().await;
    expect_connected(&mut client, true).await;
    send(&mut conn, &push("create", &fs[4])).await;
    let update_1 = revised(&fs[1], "3.4");
    send(&mut conn, &push("update", &update_1)).await;
    conn.close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "restarting".into(),
    }))
    .await
    .unwrap();
    assert_eq!(
        expect_event(&mut client, PushAction::Create).await,
        events[4]
    );
    let updated = expect_event(&mut client, PushAction::Update).await;
    assert_eq!(
        (updated.id.as_str(), updated.magnitude),
        (events[1].id.as_str(), Some(3.4))
    );
    let reason = expect_disconnected(&mut client).await;
    assert!(
        reason.contains("closed the connection") && reason.contains("restarting"),
        "{reason}"
    );

    // Connection 3: up again; stopping the client closes it with a WebSocket close.
    let mut conn = server.next_conn().await;
    expect_connected(&mut client, true).await;
    client.stop().await;
    let last = tokio::time::timeout(PATIENCE, conn.next()).await.unwrap();
    assert!(
        matches!(last, Some(Ok(Message::Close(_))) | None),
        "{last:?}"
    );
}

#[tokio::test]
async fn a_silent_connection_is_noticed_and_replaced() {
    let mut server = Server::start().await;
    let quick = PushOptions {
        ping_interval: Duration::from_millis(50),
        read_timeout: Duration::from_millis(300),
        ..opts()
    };
    let mut client = EmscPush::start(&server.url, quick, CancellationToken::new()).unwrap();
    // The server never reads, so it never answers the pings: the connection is dead to the client.
    let _silent = server.next_conn().await;
    expect_connected(&mut client, false).await;
    let reason = expect_disconnected(&mut client).await;
    assert!(reason.contains("presumed dead"), "{reason}");
    let mut conn = server.next_conn().await;
    expect_connected(&mut client, true).await;
    send(&mut conn, &push("create", &features()[0])).await;
    assert_eq!(
        expect_event(&mut client, PushAction::Create).await,
        fdsn_events()[0]
    );
}

#[tokio::test]
async fn pings_keep_a_quiet_connection_open() {
    let mut server = Server::start().await;
    let pinging = PushOptions {
        ping_interval: Duration::from_millis(20),
        ..opts()
    };
    let mut client = EmscPush::start(&server.url, pinging, CancellationToken::new()).unwrap();
    let mut conn = server.next_conn().await;
    expect_connected(&mut client, false).await;
    // The server reads (and so answers pings with pongs) until it has seen three pings.
    let mut pings = 0;
    while pings < 3 {
        match tokio::time::timeout(PATIENCE, conn.next()).await.unwrap() {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    send(&mut conn, &push("create", &features()[5])).await;
    assert_eq!(
        expect_event(&mut client, PushAction::Create).await,
        fdsn_events()[5],
        "nothing came between the connection and the event"
    );
}

#[tokio::test]
async fn refused_handshakes_are_retried_and_the_first_connection_is_not_a_reconnect() {
    // A plain TCP server: the first two connections get an HTTP 503, then WebSocket.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let (tx, mut conns) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut tcp, _)) = listener.accept().await {
            n += 1;
            if n <= 2 {
                let mut buf = [0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let _ = tcp
                    .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                continue;
            }
            if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                let _ = tx.send(ws);
            }
        }
    });
    let mut client = EmscPush::start(&url, opts(), CancellationToken::new()).unwrap();
    for _ in 0..2 {
        let reason = expect_disconnected(&mut client).await;
        assert!(
            reason.contains("cannot connect") && reason.contains("503"),
            "{reason}"
        );
    }
    let mut conn = tokio::time::timeout(PATIENCE, conns.recv())
        .await
        .unwrap()
        .unwrap();
    expect_connected(&mut client, false).await;
    send(&mut conn, &push("create", &features()[0])).await;
    assert_eq!(
        expect_event(&mut client, PushAction::Create).await,
        fdsn_events()[0]
    );
}

#[tokio::test]
async fn an_oversized_message_ends_the_connection_and_it_comes_back() {
    let mut server = Server::start().await;
    let small = PushOptions {
        max_message_bytes: 16 * 1024,
        ..opts()
    };
    let mut client = EmscPush::start(&server.url, small, CancellationToken::new()).unwrap();
    let mut conn = server.next_conn().await;
    expect_connected(&mut client, false).await;
    let huge = push("create", &features()[0]).replacen(
        r#""flynn_region": ""#,
        &format!(r#""flynn_region": "{}"#, "X".repeat(20 * 1024)),
        1,
    );
    // The client drops the connection mid-message; the send may or may not complete.
    let _ = conn.send(Message::text(huge)).await;
    let reason = expect_disconnected(&mut client).await;
    assert!(
        reason.contains("too long") || reason.contains("size"),
        "{reason}"
    );
    let mut conn = server.next_conn().await;
    expect_connected(&mut client, true).await;
    send(&mut conn, &push("create", &features()[1])).await;
    assert_eq!(
        expect_event(&mut client, PushAction::Create).await,
        fdsn_events()[1]
    );
}

#[tokio::test]
async fn cancelling_the_token_stops_the_client() {
    let mut server = Server::start().await;
    let token = CancellationToken::new();
    let mut client = EmscPush::start(&server.url, opts(), token.clone()).unwrap();
    let mut conn = server.next_conn().await;
    expect_connected(&mut client, false).await;
    token.cancel();
    assert_eq!(
        tokio::time::timeout(PATIENCE, client.recv()).await.unwrap(),
        None,
        "the stream ends"
    );
    let last = tokio::time::timeout(PATIENCE, conn.next()).await.unwrap();
    assert!(
        matches!(last, Some(Ok(Message::Close(_))) | None),
        "{last:?}"
    );
}

#[tokio::test]
async fn urls_that_are_not_websockets_are_refused() {
    let e = EmscPush::start(
        "https://www.seismicportal.eu/standing_order/websocket",
        PushOptions::default(),
        CancellationToken::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("ws or wss"), "{e}");
    let client = EmscPush::start(
        "wss://u:secret@127.0.0.1:9/x",
        PushOptions::default(),
        CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(client.url(), "wss://u:***@127.0.0.1:9/x");
}
