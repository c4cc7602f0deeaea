//! The one HTTP error type, [`ApiError`], its stable JSON envelope
//! `{code, message, details?, hint?}`, and [`AppJson`], the JSON extractor
//! whose rejections use that envelope. A leaf: every capability depends on it,
//! it depends on no capability.
//!
//! Policy: every layer has its own error type with a `From` path into
//! `ApiError`. Infrastructure failures are mapped centrally: a pool timeout or
//! a closed database connection becomes 503, anything unexpected becomes 500
//! with a generic message. The cause is logged (with the request id, by the
//! tracing span) and never sent to the client.

use axum::Json;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to an HTTP client.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    /// HTTP status (not serialised).
    #[serde(skip)]
    pub status: StatusCode,
    /// Stable machine-readable code, e.g. `project_not_found`.
    pub code: String,
    /// A sentence a person can act on.
    pub message: String,
    /// More context, when useful.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// What to try instead, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Seconds after which a retry may succeed (sets `Retry-After`).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
            details: None,
            hint: None,
            retry_after: None,
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// 400 with the given code.
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 with the given code.
    pub fn unauthorized(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403 with the given code.
    pub fn forbidden(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404 with the given code.
    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409 with the given code.
    pub fn conflict(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 503: a dependency (usually Postgres) is unavailable; retry later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            message,
        );
        e.retry_after = Some(1);
        e
    }

    /// 500 for a failure the client cannot fix. Log `cause`, never send it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Something went wrong on our side. The error was logged.",
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status;
        let retry_after = self.retry_after;
        let mut response = (status, Json(self)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(e: tokio_postgres::Error) -> Self {
        if crate::db::is_connection_error(&e) {
            tracing::warn!(error = %e, "database unavailable");
            return Self::unavailable("The database is unavailable. Try again shortly.");
        }
        Self::internal(&e)
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        tracing::warn!(error = %e, "could not get a database connection");
        Self::unavailable("The database is unavailable or busy. Try again shortly.")
    }
}

/// Rejections of axum's extractors become our envelope (used by [`AppJson`]).
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as J;
        match r {
            J::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Expected a JSON body with `Content-Type: application/json`.",
            ),
            J::JsonSyntaxError(e) => {
                Self::bad_request("invalid_json", "The body is not valid JSON.")
                    .with_details(e.body_text())
            }
            J::JsonDataError(e) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "The JSON body does not have the expected shape.",
            )
            .with_details(e.body_text()),
            J::BytesRejection(e) => body_rejection(e.status(), e.body_text()),
            other => Self::bad_request("invalid_body", other.body_text()),
        }
    }
}

/// Maps a body-reading failure (most often the size limit) to the envelope.
pub(crate) fn body_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "The request body is larger than the server accepts.",
        )
    } else {
        ApiError::bad_request("invalid_body", text)
    }
}

/// `Json` extractor whose rejections use our error envelope (malformed JSON →
/// 400 `invalid_json`, wrong shape → 422 `invalid_body`, too large → 413).
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

impl<S, T> FromRequest<S> for AppJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}
