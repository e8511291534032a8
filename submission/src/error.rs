//! Every error the API can answer, mapped to an RFC 7807 problem document in
//! one place.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use tern_queue::QueueError;
use utoipa::ToSchema;

/// One invalid row of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RowError {
    /// 1-based row number (the CSV header is row 0).
    pub row: u64,
    /// The offending field.
    pub field: String,
    /// Why it was refused.
    pub reason: String,
}

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field's value is unusable.
    #[error("{detail}")]
    InvalidField { field: String, detail: String },
    /// The body could not be read as the content type says.
    #[error("{0}")]
    MalformedBody(String),
    /// Rows of an all-or-nothing batch are invalid.
    #[error("{} of the batch's rows are invalid and all_or_nothing is set", .0.len())]
    InvalidRows(Vec<RowError>),
    /// The body is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The content type is not one this endpoint reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// No usable credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource for this caller.
    #[error("{0}")]
    NotFound(String),
    /// The resource is not in a state that allows the request.
    #[error("{0}")]
    Conflict(String),
    /// The idempotency key was used with a different request.
    #[error("{0}")]
    IdempotencyMismatch(String),
    /// Over the account's rate limit.
    #[error("{detail}")]
    RateLimited { detail: String, retry_after_secs: u64 },
    /// A feature this server was not configured for.
    #[error("{0}")]
    NotConfigured(String),
    /// The store cannot be reached now.
    #[error("the message store is unavailable, retry later: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; details go to the log, not the client.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl ApiError {
    /// A field-level validation error.
    pub fn field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidField { field: field.into(), detail: detail.into() }
    }

    /// Status, problem type slug (appended to [`PROBLEM_BASE`]) and title.
    fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::InvalidField { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-field", "A field is invalid"),
            Self::MalformedBody(_) => (StatusCode::BAD_REQUEST, "malformed-body", "The body cannot be read"),
            Self::InvalidRows(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-rows", "Rows of the batch are invalid"),
            Self::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large", "The body is too large"),
            Self::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported content type")
            }
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Authentication required"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Not allowed"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict with the resource's state"),
            Self::IdempotencyMismatch(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency key reused with a different request",
            ),
            Self::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Rate limit exceeded"),
            Self::NotConfigured(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "not-configured", "Not configured on this server")
            }
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable"),
            Self::Unexpected(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error"),
        }
    }
}

impl From<crate::compose::FieldError> for ApiError {
    fn from(e: crate::compose::FieldError) -> Self {
        Self::field(e.field, e.reason)
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        if e.is_transient() { Self::Unavailable(e.to_string()) } else { Self::Unexpected(e.into()) }
    }
}

/// The RFC 7807 document, with Tern's extensions.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// URI identifying the problem type.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short summary of the type.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What exactly was wrong with this request.
    pub detail: String,
    /// The offending field, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Invalid rows of a batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<RowError>>,
}

/// Where problem types are documented.
pub const PROBLEM_BASE: &str = "https://tern.dev/problems/";

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.kind().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, slug, title) = self.kind();
        let detail = match self {
            Self::Unexpected(e) => {
                tracing::error!(error = ?e, "unexpected error answering a request");
                "an unexpected error occurred; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let problem = Problem {
            problem_type: format!("{PROBLEM_BASE}{slug}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            field: match self {
                Self::InvalidField { field, .. } => Some(field.clone()),
                _ => None,
            },
            errors: match self {
                Self::InvalidRows(rows) => Some(rows.clone()),
                _ => None,
            },
        };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        match self {
            Self::RateLimited { retry_after_secs, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            Self::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            Self::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            _ => {}
        }
        response.json(problem)
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
