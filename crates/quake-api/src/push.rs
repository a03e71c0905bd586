//! The EMSC push client: seismicportal's WebSocket (`/standing_order/websocket`), read into
//! [`PushMessage`]s on a channel, kept alive with pings, reconnected with backoff.
//!
//! One background task per [`EmscPush`]: connect, forward every message in the order it
//! arrived, ping every [`PushOptions::ping_interval`], give the connection up when no frame
//! (a message, a pong, a ping) has arrived for [`PushOptions::read_timeout`], wait a backoff
//! with full jitter, connect again. Every connection opened is announced
//! ([`PushMessage::Connected`]) and every one lost or refused is too
//! ([`PushMessage::Disconnected`]), so the consumer knows when to catch up through the FDSN
//! service: what the upstream pushed while nobody listened is not sent again.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt, Stream, StreamExt};
use quake_core::redact_parsed;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{Connector, connect_async_tls_with_config};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::error::ApiError;
use crate::event::{Event, RejectedRecord};
use crate::http::{DEFAULT_TIMEOUT, HttpOptions, full_jitter, parse_url};
use crate::parse::{PushAction, parse_emsc_push};

/// EMSC's real-time push service (seismicportal "standing order" WebSocket).
pub const EMSC_WEBSOCKET_URL: &str = "wss://www.seismicportal.eu/standing_order/websocket";
/// Default interval between the client's pings.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(15);
/// Default silence after which a connection is presumed dead (no message, pong or ping).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default first reconnect backoff (then ×2 per failure, full jitter).
pub const DEFAULT_RECONNECT_BASE: Duration = Duration::from_secs(1);
/// Default longest reconnect backoff. A connection that stayed open this long resets the
/// backoff.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(60);
/// Default cap on one message (an event is about 1 KiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Default number of messages buffered for a consumer that is busy.
pub const DEFAULT_PUSH_BUFFER: usize = 1024;

/// How the push client behaves. All durations are plain values, so a test can shrink them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushOptions {
    /// Limit on the TCP connect, TLS and WebSocket handshake together (default 30 s).
    pub connect_timeout: Duration,
    /// The client pings this often (default 15 s).
    pub ping_interval: Duration,
    /// A connection with no frame for this long is dropped and replaced (default 60 s).
    pub read_timeout: Duration,
    /// Backoff before reconnect attempt `n` (0-based) is uniform in
    /// `[0, min(reconnect_max, reconnect_base * 2^n)]` (default base 1 s).
    pub reconnect_base: Duration,
    /// Upper bound of one backoff, and the age at which a connection counts as stable (the
    /// next loss starts the backoff over) (default 60 s).
    pub reconnect_max: Duration,
    /// A larger message (or frame) ends the connection (default 1 MiB).
    pub max_message_bytes: usize,
    /// Messages buffered for the consumer; a full buffer pauses reading (default 1024).
    pub buffer: usize,
    /// `User-Agent` header of the handshake.
    pub user_agent: String,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            connect_timeout: DEFAULT_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            read_timeout: DEFAULT_READ_TIMEOUT,
            reconnect_base: DEFAULT_RECONNECT_BASE,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            buffer: DEFAULT_PUSH_BUFFER,
            user_agent: HttpOptions::default().user_agent,
        }
    }
}

/// What the push client tells its consumer, in the order it happened.
#[derive(Clone, Debug, PartialEq)]
pub enum PushMessage {
    /// A connection is open. `reconnect` is false for the client's first connection and
    /// true for every later one: what was pushed between the loss and now was missed, so
    /// the consumer catches up (an FDSN sync) before or while it reads on.
    Connected {
        /// Whether an earlier connection of this client was lost.
        reconnect: bool,
    },
    /// An event created or revised upstream, valid.
    Event {
        /// `create` or `update`, as the upstream said.
        action: PushAction,
        /// The event, read as the EMSC FDSN parser reads it (`source` is EMSC).
        event: Box<Event>,
    },
    /// A message that is no valid event: not JSON, not a push message, an unknown action,
    /// a feature failing validation, a binary frame. The payload is the message as received.
    Rejected(RejectedRecord),
    /// A connection was lost, or an attempt to open one failed; the next attempt starts
    /// after `retry_in`.
    Disconnected {
        /// What happened, readable on its own (URLs redacted).
        reason: String,
        /// The backoff before the next attempt.
        retry_in: Duration,
    },
}

/// A running EMSC push client: read it with [`EmscPush::recv`] (or as a [`Stream`]).
///
/// Dropping it stops the client; [`EmscPush::stop`] stops it and waits until the
/// connection is closed. Cancelling the token given to [`EmscPush::start`] stops it too.
#[derive(Debug)]
pub struct EmscPush {
    rx: mpsc::Receiver<PushMessage>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
    shown: String,
}

impl EmscPush {
    /// Starts the client on `url` (`ws://` or `wss://`; [`EMSC_WEBSOCKET_URL`] for EMSC) in
    /// a task of the current tokio runtime. It runs until `cancel` is cancelled or the
    /// [`EmscPush`] is dropped or stopped. Errors only for a URL that is not ws(s) or a TLS
    /// setup that fails; everything at run time is reported as messages.
    pub fn start(
        url: &str,
        opts: PushOptions,
        cancel: CancellationToken,
    ) -> Result<Self, ApiError> {
        let url = parse_ws_url(url)?;
        let shown = redact_parsed(&url);
        let connector = match url.scheme() {
            "wss" => Some(tls_connector(&shown)?),
            _ => None,
        };
        let cancel = cancel.child_token();
        let (tx, rx) = mpsc::channel(opts.buffer.max(1));
        let client = Client {
            url,
            shown: shown.clone(),
            opts,
            connector,
            tx,
            cancel: cancel.clone(),
        };
        let task = tokio::spawn(client.run());
        Ok(EmscPush {
            rx,
            cancel,
            task: Some(task),
            shown,
        })
    }

    /// The next message; `None` once the client has stopped (cancelled).
    pub async fn recv(&mut self) -> Option<PushMessage> {
        self.rx.recv().await
    }

    /// Waits for at least one message, then takes up to `limit` of those already there
    /// (a batch to handle as one page); 0 once the client has stopped.
    pub async fn recv_many(&mut self, buf: &mut Vec<PushMessage>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }

    /// The URL, redacted.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// Stops the client: closes the connection (a WebSocket close) and waits for the task.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            log::error!("EMSC push client {} ended abnormally: {e}", self.shown);
        }
    }
}

impl Drop for EmscPush {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Stream for EmscPush {
    type Item = PushMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PushMessage>> {
        self.rx.poll_recv(cx)
    }
}

/// Parse and check a ws(s) URL.
fn parse_ws_url(raw: &str) -> Result<Url, ApiError> {
    parse_url(raw, ["ws", "wss"])
}

/// rustls with the ring provider and the platform's verifier, as the HTTP clients use.
fn tls_connector(shown: &str) -> Result<Connector, ApiError> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let tls_error = |e: rustls::Error| ApiError::Http {
        url: shown.to_owned(),
        reason: format!("cannot set up TLS: {e}"),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(tls_error)?
    .with_platform_verifier()
    .map_err(tls_error)?
    .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

/// Why a connection ended.
enum End {
    /// Stop: cancelled, or nobody reads any more.
    Stop,
    /// Lost or refused; `opened` is when it was open, if it ever was.
    Lost {
        reason: String,
        opened: Option<Instant>,
    },
}

struct Client {
    url: Url,
    shown: String,
    opts: PushOptions,
    connector: Option<Connector>,
    tx: mpsc::Sender<PushMessage>,
    cancel: CancellationToken,
}

impl Client {
    async fn run(self) {
        let mut connected_before = false;
        let mut failures = 0u32;
        loop {
            let (reason, opened) = match self.session(&mut connected_before).await {
                End::Stop => break,
                End::Lost { reason, opened } => (reason, opened),
            };
            if opened.is_some_and(|t| t.elapsed() >= self.opts.reconnect_max) {
                failures = 0;
            }
            let retry_in = full_jitter(self.opts.reconnect_base, self.opts.reconnect_max, failures);
            failures = failures.saturating_add(1);
            log::warn!(
                "EMSC push {}: {reason}; reconnecting in {:.3}s",
                self.shown,
                retry_in.as_secs_f64()
            );
            if !self
                .emit(PushMessage::Disconnected { reason, retry_in })
                .await
            {
                break;
            }
            tokio::select! {
                () = self.cancel.cancelled() => break,
                () = tokio::time::sleep(retry_in) => {}
            }
        }
        log::debug!("EMSC push {}: stopped", self.shown);
    }

    /// Hands a message to the consumer; false when it is gone or the client is cancelled.
    async fn emit(&self, msg: PushMessage) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => false,
            sent = self.tx.send(msg) => sent.is_ok(),
        }
    }

    /// One connection, from the handshake until it ends.
    async fn session(&self, connected_before: &mut bool) -> End {
        let lost = |reason: String, opened: Option<Instant>| End::Lost { reason, opened };
        let mut request = match self.url.as_str().into_client_request() {
            Ok(r) => r,
            Err(e) => return lost(format!("cannot build the request: {e}"), None),
        };
        if let Ok(ua) = HeaderValue::from_str(&self.opts.user_agent) {
            request.headers_mut().insert("user-agent", ua);
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(self.opts.max_message_bytes))
            .max_frame_size(Some(self.opts.max_message_bytes));
        let connect =
            connect_async_tls_with_config(request, Some(config), true, self.connector.clone());
        let mut ws = tokio::select! {
            () = self.cancel.cancelled() => return End::Stop,
            r = tokio::time::timeout(self.opts.connect_timeout, connect) => match r {
                Err(_) => {
                    return lost(
                        format!("connecting timed out after {:?}", self.opts.connect_timeout),
                        None,
                    );
                }
                Ok(Err(e)) => return lost(format!("cannot connect: {e}"), None),
                Ok(Ok((ws, _response))) => ws,
            },
        };
        let opened = Instant::now();
        log::info!(
            "EMSC push {}: connected{}",
            self.shown,
            if *connected_before { " again" } else { "" }
        );
        if !self
            .emit(PushMessage::Connected {
                reconnect: *connected_before,
            })
            .await
        {
            return End::Stop;
        }
        *connected_before = true;
        let mut ping = tokio::time::interval_at(
            Instant::now() + self.opts.ping_interval,
            self.opts.ping_interval,
        );
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_frame = Instant::now();
        loop {
            let silence_deadline = last_frame + self.opts.read_timeout;
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => {
                    // A polite close; a peer that does not answer does not hold us.
                    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                    return End::Stop;
                }
                frame = ws.next() => {
                    let msg = match frame {
                        None => return lost("the connection was closed".into(), Some(opened)),
                        Some(Err(e)) => return lost(format!("the connection failed: {e}"), Some(opened)),
                        Some(Ok(msg)) => msg,
                    };
                    let out = match msg {
                        Message::Text(text) => Some(match parse_emsc_push(text.as_str()) {
                            Ok((action, event)) => PushMessage::Event {
                                action,
                                event: Box::new(event),
                            },
                            Err(rejected) => PushMessage::Rejected(rejected),
                        }),
                        Message::Binary(bytes) => Some(PushMessage::Rejected(binary_rejected(&bytes))),
                        Message::Close(frame) => {
                            let why = frame.map_or_else(
                                || "no reason".to_owned(),
                                |f| format!("code {}, {:?}", u16::from(f.code), f.reason.as_str()),
                            );
                            return lost(format!("the server closed the connection ({why})"), Some(opened));
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
                    };
                    if let Some(out) = out
                        && !self.emit(out).await
                    {
                        return End::Stop;
                    }
                    // Time spent waiting for the consumer is not the connection's silence.
                    last_frame = Instant::now();
                }
                _ = ping.tick() => {
                    let sent = tokio::time::timeout(
                        self.opts.read_timeout,
                        ws.send(Message::Ping(Bytes::new())),
                    )
                    .await;
                    match sent {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return lost(format!("cannot send a ping: {e}"), Some(opened)),
                        Err(_) => return lost(
                            format!("a ping could not be sent within {:?}", self.opts.read_timeout),
                            Some(opened),
                        ),
                    }
                }
                () = tokio::time::sleep_until(silence_deadline) => {
                    return lost(
                        format!(
                            "no frame for {:?} (not even a pong): the connection is presumed dead",
                            self.opts.read_timeout
                        ),
                        Some(opened),
                    );
                }
            }
        }
    }
}

fn binary_rejected(bytes: &Bytes) -> RejectedRecord {
    log::warn!("emsc push: binary frame of {} bytes rejected", bytes.len());
    RejectedRecord {
        source_id: None,
        reason: format!("binary frame of {} bytes (text JSON expected)", bytes.len()),
        payload: String::from_utf8_lossy(bytes).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls() {
        assert!(parse_ws_url(EMSC_WEBSOCKET_URL).is_ok());
        assert!(parse_ws_url("ws://127.0.0.1:9/x").is_ok());
        let e = parse_ws_url("https://www.seismicportal.eu/x").unwrap_err();
        assert!(e.to_string().contains("ws or wss"), "{e}");
        let u = parse_ws_url("wss://user:secret@host/x").unwrap();
        assert_eq!(redact_parsed(&u), "wss://user:***@host/x");
        assert!(parse_ws_url("not a url").is_err());
    }

    #[test]
    fn the_tls_connector_builds_with_ring() {
        assert!(matches!(
            tls_connector("wss://x").unwrap(),
            Connector::Rustls(_)
        ));
    }
}
