//! A fault-injecting HTTP front: a tokio TCP server on loopback that sits between the
//! client under test and a mock upstream (wiremock), and answers each request with a
//! scripted fault or passes it through. One request per connection (`Connection: close`).
//!
//! Faults are scripted per page: page N is the Nth distinct `query` request (a retry sends
//! the same URL, so retries of one page see the next fault of that page's queue); faults
//! apply once each; with no fault queued the request passes. Other paths (`count`) pass
//! and are logged as page 0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Edits the upstream's JSON body before it is passed on.
pub type BodyEdit = Arc<dyn Fn(&mut Value) + Send + Sync>;

/// What the front does with one request.
#[derive(Clone)]
pub enum Fault {
    /// Forward to the upstream and relay its answer.
    Pass,
    /// Read the request, then reset the connection (RST, no answer).
    Reset,
    /// Read the request, then close the connection cleanly without an answer.
    CloseSilently,
    /// Never answer (until the client gives up).
    Stall,
    /// A complete response with this status, extra headers and body.
    Respond(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// The upstream's answer with its `Content-Length`, but only half its body, then close.
    CutBody,
    /// The upstream's answer with its body cut in half and `Content-Length` fitting the cut
    /// (a well-formed HTTP message carrying truncated JSON).
    TruncatedJson,
    /// The upstream's answer with its JSON edited.
    Edit(BodyEdit),
}

impl Fault {
    pub fn status(code: u16, body: &str) -> Fault {
        Fault::Respond(code, vec![], body.as_bytes().to_vec())
    }
    pub fn name(&self) -> String {
        match self {
            Fault::Pass => "pass".into(),
            Fault::Reset => "reset".into(),
            Fault::CloseSilently => "close".into(),
            Fault::Stall => "stall".into(),
            Fault::Respond(c, _, _) => format!("respond {c}"),
            Fault::CutBody => "cut body".into(),
            Fault::TruncatedJson => "truncated json".into(),
            Fault::Edit(_) => "edit".into(),
        }
    }
}

#[derive(Clone)]
pub struct FaultFront {
    pub addr: SocketAddr,
    upstream: SocketAddr,
    by_page: Arc<Mutex<HashMap<u64, VecDeque<Fault>>>>,
    /// The distinct `query` request targets seen, in order: page N is `pages[N - 1]`.
    pages: Arc<Mutex<Vec<String>>>,
    /// (page, fault applied) of every request, in order.
    pub log: Arc<Mutex<Vec<(u64, String)>>>,
}

impl FaultFront {
    /// Starts a front for the upstream at `upstream_uri` (`http://127.0.0.1:PORT`).
    pub async fn start(upstream_uri: &str) -> FaultFront {
        let upstream: SocketAddr = upstream_uri
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("upstream address");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = FaultFront {
            addr: listener.local_addr().unwrap(),
            upstream,
            by_page: Arc::default(),
            pages: Arc::default(),
            log: Arc::default(),
        };
        let f = front.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let f = f.clone();
                tokio::spawn(async move { f.handle(sock).await });
            }
        });
        front
    }

    pub fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues `faults` for the requests of page `page` (applied in order, once each).
    pub fn at_page(&self, page: u64, faults: impl IntoIterator<Item = Fault>) {
        self.by_page
            .lock()
            .unwrap()
            .entry(page)
            .or_default()
            .extend(faults);
    }

    /// Drops the queued faults and starts counting pages afresh (for the next run).
    pub fn clear(&self) {
        self.by_page.lock().unwrap().clear();
        self.pages.lock().unwrap().clear();
    }

    /// How many requests asked for page `page`.
    pub fn requests_at(&self, page: u64) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| *p == page)
            .count()
    }

    /// The page number of a request target: 0 unless it is a `query`.
    fn page_of(&self, target: &str) -> u64 {
        if !target.contains("/query") {
            return 0;
        }
        let mut pages = self.pages.lock().unwrap();
        let at = match pages.iter().position(|t| t == target) {
            Some(i) => i,
            None => {
                pages.push(target.to_string());
                pages.len() - 1
            }
        };
        at as u64 + 1
    }

    async fn handle(&self, mut sock: TcpStream) {
        let Some(head) = read_head(&mut sock).await else {
            return;
        };
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let page = self.page_of(&target);
        let fault = self
            .by_page
            .lock()
            .unwrap()
            .get_mut(&page)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Fault::Pass);
        self.log.lock().unwrap().push((page, fault.name()));
        match fault {
            Fault::Reset => {
                // SO_LINGER 0: close sends RST at once (it cannot block here).
                #[allow(deprecated)]
                let _ = sock.set_linger(Some(Duration::ZERO));
                drop(sock);
            }
            Fault::CloseSilently => {
                let _ = sock.shutdown().await;
            }
            Fault::Stall => {
                // Hold the connection until the client closes it.
                let mut buf = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_secs(120), sock.read(&mut buf)).await;
            }
            Fault::Respond(code, headers, body) => {
                let mut out = format!("HTTP/1.1 {code} Fault\r\nConnection: close\r\n");
                if code != 204 {
                    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
                    out.push_str("Content-Type: application/json\r\n");
                }
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                if code != 204 {
                    bytes.extend_from_slice(&body);
                }
                let _ = sock.write_all(&bytes).await;
                let _ = sock.shutdown().await;
            }
            Fault::Pass | Fault::CutBody | Fault::TruncatedJson | Fault::Edit(_) => {
                let Some((status_line, headers, body)) = self.forward(&head).await else {
                    let _ = sock.shutdown().await;
                    return;
                };
                let (body, declared) = match &fault {
                    Fault::CutBody => (body[..body.len() / 2].to_vec(), body.len()),
                    Fault::TruncatedJson => {
                        let cut = body[..body.len() / 2].to_vec();
                        let n = cut.len();
                        (cut, n)
                    }
                    Fault::Edit(edit) => {
                        let mut v: Value = serde_json::from_slice(&body).expect("upstream JSON");
                        edit(&mut v);
                        let b = serde_json::to_vec(&v).unwrap();
                        let n = b.len();
                        (b, n)
                    }
                    _ => {
                        let n = body.len();
                        (body, n)
                    }
                };
                let mut out = format!("{status_line}\r\nConnection: close\r\n");
                for h in headers {
                    let lower = h.to_ascii_lowercase();
                    if lower.starts_with("content-length:")
                        || lower.starts_with("connection:")
                        || lower.starts_with("transfer-encoding:")
                    {
                        continue;
                    }
                    out.push_str(&h);
                    out.push_str("\r\n");
                }
                out.push_str(&format!("Content-Length: {declared}\r\n\r\n"));
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&body);
                let _ = sock.write_all(&bytes).await;
                let _ = sock.shutdown().await;
            }
        }
    }

    /// Sends the request to the upstream with `Connection: close`; returns the status line,
    /// the other header lines and the (de-chunked) body.
    async fn forward(&self, head: &str) -> Option<(String, Vec<String>, Vec<u8>)> {
        let mut up = TcpStream::connect(self.upstream).await.ok()?;
        let mut req = String::new();
        for (i, line) in head.split("\r\n").enumerate() {
            if line.is_empty() {
                continue;
            }
            let lower = line.to_ascii_lowercase();
            if i > 0 && (lower.starts_with("connection:") || lower.starts_with("accept-encoding:"))
            {
                continue;
            }
            req.push_str(line);
            req.push_str("\r\n");
        }
        req.push_str("Connection: close\r\n\r\n");
        up.write_all(req.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        up.read_to_end(&mut raw).await.ok()?;
        let end = find(&raw, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&raw[..end]).to_string();
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?.to_string();
        let headers: Vec<String> = lines.map(str::to_string).collect();
        let mut body = raw[end + 4..].to_vec();
        if headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("transfer-encoding: chunked"))
        {
            body = dechunk(&body);
        }
        Some((status_line, headers, body))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(b, b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

async fn read_head(sock: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            return Some(String::from_utf8_lossy(&buf[..end + 4]).to_string());
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
}
