//! The surface's error type: one variant per answer, an explicit status per variant.
//!
//! Layering: handlers return `Result<_, HttpError>`; store and engine errors convert into it
//! here (unreachable database or pool timeout: 503; anything else: 500 with a generic body,
//! the detail in the log only). The body is always `{"error": "..."}`, and never carries a
//! secret: 500 and 503 bodies are fixed strings.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, ResponseError};
use quake_store::StoreError;
use sync_engine::EngineError;

/// Everything a handler can answer with instead of a success.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A bad parameter or body; the message names it.
    #[error("{0}")]
    BadRequest(String),
    /// No bearer token, or a wrong one.
    #[error("a valid admin token is required (Authorization: Bearer <token>)")]
    Unauthorized,
    /// No admin token is configured: write endpoints are off.
    #[error("manual sync is disabled: no admin token is configured")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request body is larger than allowed.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The database could not be reached in time (detail logged, not returned).
    #[error("the database is unavailable")]
    DatabaseUnavailable(String),
    /// A limit is reached (too many stream clients); the message says which.
    #[error("{0}")]
    Busy(String),
    /// Anything else (detail logged, not returned).
    #[error("internal server error")]
    Internal(String),
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Unauthorized => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden => StatusCode::FORBIDDEN,
            HttpError::NotFound => StatusCode::NOT_FOUND,
            HttpError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::DatabaseUnavailable(_) | HttpError::Busy(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            HttpError::DatabaseUnavailable(detail) => {
                log::warn!("Answering 503, database unavailable: {detail}")
            }
            HttpError::Internal(detail) => log::error!("Answering 500: {detail}"),
            _ => {}
        }
        let mut res = HttpResponse::build(self.status_code());
        if let HttpError::Unauthorized = self {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.json(serde_json::json!({ "error": self.to_string() }))
    }
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() {
            HttpError::DatabaseUnavailable(e.to_string())
        } else {
            HttpError::Internal(e.to_string())
        }
    }
}

impl From<EngineError> for HttpError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(s) => s.into(),
            other => HttpError::Internal(other.to_string()),
        }
    }
}

impl From<tokio::time::error::Elapsed> for HttpError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        HttpError::DatabaseUnavailable("no answer within the timeout".into())
    }
}
