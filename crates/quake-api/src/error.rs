//! The crate's error type.

use std::time::Duration;

/// Everything that can go wrong while talking to an upstream or reading what it sent.
///
/// URLs carried by the variants are redacted by [`quake_core::redact_url`]: no password and
/// no secret-looking query value.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The configured URL could not be parsed or is not http(s).
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The offending URL, redacted.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The request (or reading its body) took longer than the configured timeout.
    #[error("request to {url} timed out after {timeout:?}")]
    Timeout {
        /// Redacted request URL.
        url: String,
        /// The per-request timeout that was exceeded.
        timeout: Duration,
    },
    /// The connection could not be established.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// Redacted request URL.
        url: String,
        /// The transport's explanation.
        reason: String,
    },
    /// The upstream answered with a non-success HTTP status.
    #[error("HTTP {status} from {url}: {snippet}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// Redacted request URL.
        url: String,
        /// The start of the response body (the service's message), whitespace collapsed.
        snippet: String,
    },
    /// The response body is larger than `HttpOptions::max_response_bytes`.
    #[error("response from {url} exceeds the limit of {limit_bytes} bytes")]
    TooLarge {
        /// Redacted request URL.
        url: String,
        /// The configured limit.
        limit_bytes: u64,
    },
    /// The body is not the JSON document it should be (bad JSON, truncated JSON, wrong shape).
    #[error("invalid response body{}: {reason} (body starts with: {snippet:?})", if url.is_empty() { String::new() } else { format!(" from {url}") })]
    InvalidBody {
        /// Redacted request URL; empty when the parse functions are used directly.
        url: String,
        /// What was wrong.
        reason: String,
        /// The first ~200 characters of the body.
        snippet: String,
    },
    /// The upstream does not page as asked: it ignores `limit`, `starttime`, `endtime` or
    /// the order, or keeps answering what was read (see [`crate::PagingError`]).
    #[error(transparent)]
    Paging(#[from] crate::paging::PagingError),
    /// Any other transport failure (connection dropped mid-body, protocol error, ...).
    #[error("HTTP request to {url} failed: {reason}")]
    Http {
        /// Redacted request URL.
        url: String,
        /// The transport's explanation.
        reason: String,
    },
}

impl ApiError {
    /// Whether retrying the same request may help: connect errors, timeouts, other
    /// transport failures, 5xx and 429. Never other 4xx, bad bodies or oversize bodies.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApiError::Timeout { .. } | ApiError::Connect { .. } | ApiError::Http { .. } => true,
            ApiError::Status { status, .. } => *status == 429 || (500..=599).contains(status),
            ApiError::InvalidUrl { .. }
            | ApiError::TooLarge { .. }
            | ApiError::InvalidBody { .. }
            | ApiError::Paging(_) => false,
        }
    }

    /// The redacted URL the error is about (empty for parse errors without a URL).
    pub fn url(&self) -> &str {
        match self {
            ApiError::InvalidUrl { url, .. }
            | ApiError::Timeout { url, .. }
            | ApiError::Connect { url, .. }
            | ApiError::Status { url, .. }
            | ApiError::TooLarge { url, .. }
            | ApiError::InvalidBody { url, .. }
            | ApiError::Http { url, .. } => url,
            ApiError::Paging(_) => "",
        }
    }

    /// Attach a URL to an `InvalidBody` produced by a parse function.
    pub(crate) fn with_url(self, new_url: &str) -> Self {
        match self {
            ApiError::InvalidBody {
                url,
                reason,
                snippet,
            } if url.is_empty() => ApiError::InvalidBody {
                url: new_url.to_owned(),
                reason,
                snippet,
            },
            other => other,
        }
    }
}

/// The first `max_chars` characters of `body` (lossy UTF-8, char-boundary safe), with
/// runs of whitespace collapsed to one space.
pub(crate) fn snippet(body: &[u8], max_chars: usize) -> String {
    // Never look at more bytes than could possibly be needed (4 bytes per char).
    let head = &body[..body
        .len()
        .min(max_chars.saturating_mul(4).saturating_add(4))];
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    let mut count = 0usize;
    let mut last_space = false;
    for c in text.trim().chars() {
        if count >= max_chars {
            out.push('…');
            break;
        }
        if c.is_whitespace() || c.is_control() {
            if last_space {
                continue;
            }
            out.push(' ');
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
        count += 1;
    }
    out
}

pub(crate) fn invalid_body(reason: impl Into<String>, body: &[u8]) -> ApiError {
    ApiError::InvalidBody {
        url: String::new(),
        reason: reason.into(),
        snippet: snippet(body, 200),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippet_is_char_boundary_safe() {
        let s = "é".repeat(500);
        let sn = snippet(s.as_bytes(), 200);
        assert_eq!(sn.chars().count(), 201);
        assert!(sn.ends_with('…'));
        assert_eq!(snippet(b"  a\n\n  b ", 200), "a b");
        assert_eq!(snippet(&[0xff, b'a'], 10), "\u{fffd}a");
    }

    #[test]
    fn retryable() {
        let st = |status| ApiError::Status {
            status,
            url: String::new(),
            snippet: String::new(),
        };
        assert!(st(500).is_retryable());
        assert!(st(503).is_retryable());
        assert!(st(429).is_retryable());
        assert!(!st(400).is_retryable());
        assert!(!st(404).is_retryable());
        assert!(!invalid_body("x", b"").is_retryable());
    }
}
