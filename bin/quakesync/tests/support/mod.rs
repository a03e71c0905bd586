//! Shared by the binary's process tests (`serve`, `reliability_*`): the binary as a child
//! process, a tiny HTTP client with a deadline, and the database checks.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quake_store::{Store, StoreOptions, SyncRun};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const QUERY_PATH: &str = "/fdsnws/event/1/query";
pub const TOKEN: &str = "reliability-admin-t0ken";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `quakesync` with a clean environment, pointed at `db_url` and `upstream`, the live lane
/// off (its default feed is the real USGS: a test that wants it points `QUAKESYNC_LIVE_URL`
/// at a local server and turns it on).
pub fn quakesync(dir: &Path, db_url: &str, upstream: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quakesync"));
    cmd.current_dir(dir)
        .env_clear()
        .env("DATABASE_URL", db_url)
        .env("QUAKESYNC_SOURCE_URL", format!("{upstream}{QUERY_PATH}"))
        .env("QUAKESYNC_START_TIME", "2021-07-01T00:00:00Z")
        .env("QUAKESYNC_MAX_RETRIES", "0")
        .env("QUAKESYNC_BATCH_SIZE", "20")
        .env("QUAKESYNC_LIVE_ENABLED", "false")
        .env("RUST_LOG", "info");
    cmd
}

/// The bytes of a fixture in the repository's `testdata/`.
pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/../../testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// [`quakesync`] reading from the epoch in pages of the default size.
pub fn quakesync_from_epoch(dir: &Path, db_url: &str, upstream: &str) -> Command {
    let mut cmd = quakesync(dir, db_url, upstream);
    cmd.env("QUAKESYNC_START_TIME", "1970-01-01T00:00:00Z")
        .env_remove("QUAKESYNC_BATCH_SIZE");
    cmd
}

/// A running `quakesync serve` (killed on drop), its stderr in a file.
pub struct Serve {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Serve {
    pub fn start(mut cmd: Command, dir: &Path, name: &str) -> Serve {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let child = cmd
            .arg("serve")
            .env("QUAKESYNC_BIND", format!("127.0.0.1:{port}"))
            .env("QUAKESYNC_ADMIN_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Serve { child, port, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn wait_ready(&mut self) {
        let t = Instant::now();
        // 60 s only guards a hang (a debug build starting on a loaded machine).
        while t.elapsed() < Duration::from_secs(60) {
            if let Ok((200, _)) = http(self.port, "GET", "/health/live", None).await {
                return;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "serve exited: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("serve did not come up: {}", self.log());
    }

    /// Waits until `/sync-status` shows a sync running (60 s at most, a guard against a
    /// hang): its run id.
    pub async fn wait_running(&self) -> i64 {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            let (_, st) = http(self.port, "GET", "/sync-status", None).await.unwrap();
            if st["current_sync"]["is_running"] == true {
                return st["current_sync"]["run_id"].as_i64().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no sync started: {}", self.log());
    }

    /// Waits until `/sync-status` shows the running sync with `pages` committed pages (60 s
    /// at most, a guard against a hang).
    pub async fn wait_pages(&self, pages: i64) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            let (_, st) = http(self.port, "GET", "/sync-status", None).await.unwrap();
            if st["current_sync"]["progress"]["pages"].as_i64() >= Some(pages) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("page {pages} never committed: {}", self.log());
    }

    /// SIGTERM, then the exit code (panics after 60 s: a guard against a hang, not a
    /// latency claim).
    pub fn terminate(&mut self) -> Option<i32> {
        self.terminate_timed().0
    }

    /// SIGTERM, then the exit code and how long the process took to exit.
    pub fn terminate_timed(&mut self) -> (Option<i32>, Duration) {
        signal(self.child.id(), "TERM");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(60) {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("serve did not exit within 60 s of SIGTERM: {}", self.log());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -SIG pid`.
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success(), "kill -{sig} {pid}");
}

/// A minimal HTTP/1.1 request with a 15 s deadline: status and JSON body (Null if not JSON).
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, Value)> {
    let (status, body) = http_raw(port, method, path, token, "").await?;
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

/// Like [`http`] with extra header lines; the raw body.
pub async fn http_raw(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    extra_headers: &str,
) -> std::io::Result<(u16, String)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        s.write_all(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n{auth}{extra_headers}\r\n"
            )
            .as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        Ok::<_, std::io::Error>((status, body.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .map_err(|_| std::io::Error::other(format!("{method} {path}: no answer in 15 s")))?
}

pub async fn store(url: &str) -> Store {
    Store::connect(
        url,
        StoreOptions {
            pool_size: 2,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap()
}

pub async fn all_runs(url: &str) -> Vec<SyncRun> {
    let store = store(url).await;
    let mut r = store.latest_runs(100).await.unwrap();
    r.reverse();
    r
}

/// Waits until the latest run row shows `pages` committed pages (60 s at most, a guard
/// against a hang). The engine asks for the next page while it writes the current one, so
/// a request held upstream says nothing about the page before it: this does.
pub async fn wait_pages(url: &str, pages: i64) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        if all_runs(url).await.last().is_some_and(|r| r.pages >= pages) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("page {pages} never committed");
}

/// id → `updated` (ms) of every stored event.
pub async fn catalogue(url: &str) -> BTreeMap<String, i64> {
    quake_store::testing::updated_by_id(&store(url).await).await
}

/// id → `updated` (ms) of a mock catalogue's features.
pub fn expected(features: &[Value]) -> BTreeMap<String, i64> {
    features
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_string(),
                f["properties"]["updated"].as_i64().unwrap(),
            )
        })
        .collect()
}

pub use quake_store::testing::skip_or_fail;
