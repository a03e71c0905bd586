//! Server-Sent Events as a client reads them: one frame (the text up to its blank line) into
//! its event, and a stream read over a real HTTP/1.1 connection. Shared by this crate's
//! stream tests and `stream_lag` bench, and the binary's replica test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct Ev {
    pub id: Option<i64>,
    pub event: String,
    pub data: serde_json::Value,
}

/// The event of a frame; `None` for a frame without one (a comment, the `retry:` hint).
pub fn parse(frame: &str) -> Option<Ev> {
    let (mut id, mut event, mut data) = (None, None, Vec::new());
    for line in frame.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse().unwrap());
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push(v);
        }
    }
    let event = event?;
    let data = serde_json::from_str(&data.join("\n")).unwrap();
    Some(Ev { id, event, data })
}

/// A stream read over a raw HTTP connection (the chunked body decoded).
pub struct Sse {
    sock: tokio::net::TcpStream,
    /// Bytes received and not yet decoded.
    raw: Vec<u8>,
    /// The decoded body not yet returned.
    buf: Vec<u8>,
    past_head: bool,
}

impl Sse {
    pub async fn open(port: u16, path: &str) -> Sse {
        let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        sock.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        Sse {
            sock,
            raw: Vec::new(),
            buf: Vec::new(),
            past_head: false,
        }
    }

    /// Moves the complete chunks of `raw` into `buf`.
    fn decode(&mut self) {
        if !self.past_head {
            let Some(end) = self.raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            let head = String::from_utf8_lossy(&self.raw[..end]).to_lowercase();
            assert!(head.starts_with("http/1.1 200"), "{head}");
            assert!(head.contains("transfer-encoding: chunked"), "{head}");
            self.raw.drain(..end + 4);
            self.past_head = true;
        }
        while let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&self.raw[..eol]).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap();
            if self.raw.len() < eol + 2 + size + 2 {
                return;
            }
            self.buf
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..eol + 2 + size + 2);
        }
    }

    /// The next frame's text (30 s at most: a guard against a hang).
    pub async fn frame(&mut self) -> String {
        loop {
            self.decode();
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 2).collect();
                return String::from_utf8(raw).unwrap();
            }
            let mut chunk = [0u8; 8192];
            let n = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                self.sock.read(&mut chunk),
            )
            .await
            .expect("a frame within 30 s")
            .unwrap();
            assert!(n > 0, "the stream ended");
            self.raw.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next event, which must come within `deadline` (heartbeats do not extend it): for
    /// what a wake-up must deliver sooner than any poll would.
    pub async fn next_within(&mut self, deadline: std::time::Duration) -> Ev {
        tokio::time::timeout(deadline, self.next())
            .await
            .unwrap_or_else(|_| panic!("an event within {deadline:?}"))
    }

    /// The next event (comments skipped).
    pub async fn next(&mut self) -> Ev {
        loop {
            if let Some(ev) = parse(&self.frame().await) {
                return ev;
            }
        }
    }
}
