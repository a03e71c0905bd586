//! Polite, robust HTTP GET: timeouts, retries with backoff and jitter, size cap.

use std::time::Duration;

use chrono::{DateTime, Utc};
use quake_core::redact_parsed;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, ETAG, HeaderMap, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED, RETRY_AFTER,
};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{ApiError, snippet};

/// Default per-request timeout (SPEC: 30 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default number of retries after the first attempt (SPEC: 3).
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// Default response size cap (SPEC: 64 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;
/// Default backoff base: the first retry waits up to this long (then ×2 per retry).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Default backoff cap.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Default cap on a server's `Retry-After`.
pub const DEFAULT_RETRY_AFTER_MAX: Duration = Duration::from_secs(120);

/// How much of an error response body is kept for [`ApiError::Status`].
const ERROR_BODY_READ_LIMIT: usize = 8 * 1024;
const ERROR_SNIPPET_CHARS: usize = 500;

/// HTTP behaviour shared by all clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpOptions {
    /// Per-request timeout, covering connect, headers and the whole body (default 30 s).
    pub timeout: Duration,
    /// Retries after the first attempt, so at most `max_retries + 1` requests (default 3).
    pub max_retries: u32,
    /// Bodies larger than this are refused with [`ApiError::TooLarge`] (default 64 MiB).
    pub max_response_bytes: u64,
    /// Backoff before retry `n` (0-based) is uniform in `[0, min(backoff_max, backoff_base * 2^n)]`
    /// ("full jitter"; default base 500 ms).
    pub backoff_base: Duration,
    /// Upper bound of one backoff (default 30 s).
    pub backoff_max: Duration,
    /// A `Retry-After` (429/503) is honoured up to this long (default 120 s).
    pub retry_after_max: Duration,
    /// `User-Agent` header.
    pub user_agent: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            retry_after_max: DEFAULT_RETRY_AFTER_MAX,
            user_agent: concat!(
                "quakesync/",
                env!("CARGO_PKG_VERSION"),
                " (+https://example.invalid/quakesync)"
            )
            .to_owned(),
        }
    }
}

impl HttpOptions {
    /// The backoff before retry number `retry` (0-based), without `Retry-After`:
    /// full jitter, uniform in `[0, min(backoff_max, backoff_base * 2^retry)]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        full_jitter(self.backoff_base, self.backoff_max, retry)
    }
}

/// Exponential backoff with full jitter: uniform in `[0, min(max, base * 2^n)]`.
pub(crate) fn full_jitter(base: Duration, max: Duration, n: u32) -> Duration {
    let factor = 2u32.checked_pow(n.min(31)).unwrap_or(u32::MAX);
    let cap = base.checked_mul(factor).unwrap_or(max).min(max);
    let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=cap_nanos))
}

/// Checks that `raw` is an http(s) URL with a host, as the clients require (the error
/// shows it redacted).
pub fn check_url(raw: &str) -> Result<(), ApiError> {
    parse_http_url(raw).map(drop)
}

/// Parse and check an http(s) URL.
pub(crate) fn parse_http_url(raw: &str) -> Result<Url, ApiError> {
    parse_url(raw, ["http", "https"])
}

/// Parse a URL and check that it has one of the two `schemes` and a host.
pub(crate) fn parse_url(raw: &str, schemes: [&str; 2]) -> Result<Url, ApiError> {
    let url = Url::parse(raw.trim()).map_err(|e| ApiError::InvalidUrl {
        url: quake_core::redact_url(raw),
        reason: e.to_string(),
    })?;
    if !schemes.contains(&url.scheme()) {
        return Err(ApiError::InvalidUrl {
            url: redact_parsed(&url),
            reason: format!(
                "unsupported scheme {:?} ({} or {} expected)",
                url.scheme(),
                schemes[0],
                schemes[1]
            ),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::InvalidUrl {
            url: redact_parsed(&url),
            reason: "no host".to_owned(),
        });
    }
    Ok(url)
}

/// The validators of an answer (`ETag`, `Last-Modified`), sent back as `If-None-Match` and
/// `If-Modified-Since` to ask "only if it changed". Kept as the exact header text (a header
/// that is not visible ASCII is not kept). Serializable, so a caller may persist it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Validators {
    /// The answer's `ETag`, verbatim (weak ones included: `W/"…"`).
    pub etag: Option<String>,
    /// The answer's `Last-Modified`, verbatim (an HTTP-date).
    pub last_modified: Option<String>,
}

impl Validators {
    /// Whether there is nothing to send back (the next request is unconditional).
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }

    fn of(headers: &HeaderMap) -> Self {
        let text = |name| {
            headers
                .get(name)
                .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        Validators {
            etag: text(ETAG),
            last_modified: text(LAST_MODIFIED),
        }
    }
}

/// What one successful GET brought back.
#[derive(Debug)]
pub(crate) enum Fetched {
    /// 204: no data.
    NoContent,
    /// 304 to a conditional request: nothing read.
    NotModified,
    /// 2xx with a body, and the answer's validators.
    Body(Vec<u8>, Validators),
}

/// A reqwest client plus the options; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct HttpCore {
    client: reqwest::Client,
    opts: HttpOptions,
}

/// The outcome of one attempt that failed: the error and a server-requested delay.
type AttemptError = (ApiError, Option<Duration>);

impl HttpCore {
    pub(crate) fn new(opts: HttpOptions) -> Result<Self, ApiError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout)
            .user_agent(opts.user_agent.clone())
            .gzip(true)
            .build()
            .map_err(|e| ApiError::Http {
                url: String::new(),
                reason: format!("cannot build HTTP client: {}", describe(e)),
            })?;
        Ok(HttpCore { client, opts })
    }

    /// GET `url`, with retries. `Ok(None)` means 204 No Content.
    pub(crate) async fn get(&self, url: &Url) -> Result<Option<Vec<u8>>, ApiError> {
        match self.get_if_changed(url, &Validators::default()).await? {
            Fetched::Body(body, _) => Ok(Some(body)),
            Fetched::NoContent => Ok(None),
            // Only a conditional request can be answered 304; this one was not.
            Fetched::NotModified => Err(ApiError::Status {
                status: 304,
                url: redact_parsed(url),
                snippet: "Not Modified to a request that was not conditional".to_owned(),
            }),
        }
    }

    /// GET `url` with `If-None-Match` / `If-Modified-Since` from `previous` (none when
    /// empty), with the same retries, timeout and size cap as [`HttpCore::get`]. A 304 is
    /// [`Fetched::NotModified`], its body never read.
    pub(crate) async fn get_if_changed(
        &self,
        url: &Url,
        previous: &Validators,
    ) -> Result<Fetched, ApiError> {
        let shown = redact_parsed(url);
        let mut retry = 0u32;
        loop {
            log::debug!("GET {shown}");
            match self.attempt(url, &shown, previous).await {
                Ok(body) => return Ok(body),
                Err((err, retry_after)) => {
                    if !err.is_retryable() || retry >= self.opts.max_retries {
                        if retry > 0 {
                            log::warn!("giving up after {} attempts: {err}", retry + 1);
                        }
                        return Err(err);
                    }
                    let mut delay = self.opts.backoff(retry);
                    if let Some(ra) = retry_after {
                        delay = delay.max(ra.min(self.opts.retry_after_max));
                    }
                    retry += 1;
                    log::warn!(
                        "{err}; retry {retry}/{} in {:.3}s",
                        self.opts.max_retries,
                        delay.as_secs_f64()
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn map_err(&self, e: reqwest::Error, shown: &str) -> ApiError {
        if e.is_timeout() {
            ApiError::Timeout {
                url: shown.to_owned(),
                timeout: self.opts.timeout,
            }
        } else if e.is_connect() {
            ApiError::Connect {
                url: shown.to_owned(),
                reason: describe(e),
            }
        } else {
            ApiError::Http {
                url: shown.to_owned(),
                reason: describe(e),
            }
        }
    }

    async fn attempt(
        &self,
        url: &Url,
        shown: &str,
        previous: &Validators,
    ) -> Result<Fetched, AttemptError> {
        let mut request = self.client.get(url.clone()).header(
            ACCEPT,
            "application/json, application/geo+json;q=0.9, */*;q=0.1",
        );
        if let Some(etag) = &previous.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(date) = &previous.last_modified {
            request = request.header(IF_MODIFIED_SINCE, date);
        }
        let mut resp = request
            .send()
            .await
            .map_err(|e| (self.map_err(e, shown), None))?;
        let status = resp.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(Fetched::NoContent);
        }
        if status == StatusCode::NOT_MODIFIED && !previous.is_empty() {
            log::debug!("GET {shown}: 304 not modified");
            return Ok(Fetched::NotModified);
        }
        if !status.is_success() {
            let retry_after = if status == StatusCode::TOO_MANY_REQUESTS
                || status == StatusCode::SERVICE_UNAVAILABLE
            {
                resp.headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
            } else {
                None
            };
            let mut body = Vec::new();
            while body.len() < ERROR_BODY_READ_LIMIT {
                match resp.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                    _ => break,
                }
            }
            let err = ApiError::Status {
                status: status.as_u16(),
                url: shown.to_owned(),
                snippet: snippet(&body, ERROR_SNIPPET_CHARS),
            };
            return Err((err, retry_after));
        }
        let validators = Validators::of(resp.headers());
        let limit = self.opts.max_response_bytes;
        let too_large = || ApiError::TooLarge {
            url: shown.to_owned(),
            limit_bytes: limit,
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err((too_large(), None));
        }
        let capacity = resp
            .content_length()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0)
            .min(16 * 1024 * 1024);
        let mut body = Vec::with_capacity(capacity);
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if u64::try_from(body.len() + chunk.len()).unwrap_or(u64::MAX) > limit {
                        return Err((too_large(), None));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err((self.map_err(e, shown), None)),
            }
        }
        log::debug!("GET {shown}: {} bytes", body.len());
        Ok(Fetched::Body(body, validators))
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e6)));
    }
    let when = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    Some((when - Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut s = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backoff_bounds() {
        let o = HttpOptions::default();
        for retry in 0..40 {
            assert!(o.backoff(retry) <= o.backoff_max);
        }
        for _ in 0..100 {
            assert!(o.backoff(0) <= Duration::from_millis(500));
            assert!(o.backoff(2) <= Duration::from_secs(2));
        }
    }

    #[test]
    fn retry_after() {
        assert_eq!(parse_retry_after("1"), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
