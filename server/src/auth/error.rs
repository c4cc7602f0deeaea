//! Errors of the auth API, in Supabase Auth (GoTrue)'s JSON shapes.
//!
//! GoTrue answers in one of two shapes, chosen by the request's
//! `X-Supabase-Api-Version` header (the official clients send `2024-01-01`):
//!
//! - no header (the initial API version): `{"code": 400, "error_code": "…", "msg": "…"}`;
//! - `2024-01-01` or later: `{"code": "…", "message": "…"}`, and the version is echoed.
//!
//! A handler's [`AuthError`] renders the legacy shape and carries itself in the
//! response extensions; the layer of every auth route ([`super::layer`])
//! re-renders it in the newer shape when the request asked for it. Causes of 5xx errors are logged,
//! never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;

/// The request/response header naming the API version.
pub const API_VERSION_HEADER: &str = "x-supabase-api-version";
/// The first dated API version (the one with `{code, message}` errors).
const API_VERSION_2024: &str = "2024-01-01";

/// An error answered by the auth API.
#[derive(Debug, Clone)]
pub struct AuthError {
    /// HTTP status.
    pub status: StatusCode,
    /// GoTrue error code, e.g. `invalid_credentials`.
    pub code: &'static str,
    /// Human-readable message.
    pub msg: String,
    /// Seconds after which a retry may succeed (sets `Retry-After`).
    pub retry_after: Option<u64>,
    /// Reasons a password was refused (`weak_password` errors only).
    pub weak_password: Option<Vec<&'static str>>,
}

/// Result alias of the auth handlers.
pub type AuthResult<T> = Result<T, AuthError>;

impl AuthError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, msg: impl Into<String>) -> Self {
        Self {
            status,
            code,
            msg: msg.into(),
            retry_after: None,
            weak_password: None,
        }
    }

    /// 400.
    pub fn bad_request(code: &'static str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, msg)
    }

    /// 400 `validation_failed`.
    pub fn validation(msg: impl Into<String>) -> Self {
        Self::bad_request("validation_failed", msg)
    }

    /// 401.
    pub fn unauthorized(code: &'static str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, msg)
    }

    /// 403.
    pub fn forbidden(code: &'static str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, msg)
    }

    /// 404.
    pub fn not_found(code: &'static str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, msg)
    }

    /// 422.
    pub fn unprocessable(code: &'static str, msg: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, msg)
    }

    /// 429 with `Retry-After`.
    pub fn too_many(code: &'static str, msg: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, code, msg);
        e.retry_after = Some(retry_after.max(1));
        e
    }

    /// 422 `weak_password` with the reasons (`length`, `characters`).
    pub fn weak_password(msg: impl Into<String>, reasons: Vec<&'static str>) -> Self {
        let mut e = Self::unprocessable("weak_password", msg);
        e.weak_password = Some(reasons);
        e
    }

    /// 500 for a failure the client cannot fix; `cause` is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "auth: internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected_failure",
            "Unexpected failure, please check server logs for more information",
        )
    }

    fn legacy_body(&self) -> Value {
        let mut body = json!({
            "code": self.status.as_u16(),
            "error_code": self.code,
            "msg": self.msg,
        });
        if let Some(reasons) = &self.weak_password {
            body["weak_password"] = json!({ "reasons": reasons });
        }
        body
    }

    fn dated_body(&self) -> Value {
        let mut body = json!({ "code": self.code, "message": self.msg });
        if let Some(reasons) = &self.weak_password {
            body["weak_password"] = json!({ "reasons": reasons });
        }
        body
    }

    fn render(&self, body: Value) -> Response {
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.msg)
    }
}

impl std::error::Error for AuthError {}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let mut response = self.render(self.legacy_body());
        response.extensions_mut().insert(self);
        response
    }
}

impl From<ApiError> for AuthError {
    fn from(e: ApiError) -> Self {
        let code = match e.status {
            StatusCode::SERVICE_UNAVAILABLE => "request_timeout",
            StatusCode::INTERNAL_SERVER_ERROR => "unexpected_failure",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "bad_jwt",
            _ => "validation_failed",
        };
        let mut out = Self::new(e.status, code, e.message);
        out.retry_after = e.retry_after;
        out
    }
}

impl From<tokio_postgres::Error> for AuthError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl From<deadpool_postgres::PoolError> for AuthError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::from(e).into()
    }
}

/// Whether a `X-Supabase-Api-Version` value is `2024-01-01` or later.
fn is_dated_version(value: &str) -> bool {
    let v = value.trim();
    let well_formed = v.len() == 10
        && v.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    well_formed && v >= API_VERSION_2024
}

/// Whether a request asked for the dated (2024-01-01+) API version.
pub(crate) fn asks_dated_version(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(API_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_dated_version)
}

/// For a request that asked for the dated API version: renders an error in
/// that version's shape, and echoes the version.
pub(crate) fn dated_response(mut response: Response) -> Response {
    if let Some(err) = response.extensions_mut().remove::<AuthError>() {
        response = err.render(err.dated_body());
    }
    response.headers_mut().insert(
        API_VERSION_HEADER,
        HeaderValue::from_static(API_VERSION_2024),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        assert!(is_dated_version("2024-01-01"));
        assert!(is_dated_version("2025-06-30"));
        assert!(!is_dated_version("2023-12-31"));
        assert!(!is_dated_version("2024-1-01"));
        assert!(!is_dated_version("latest"));
    }

    #[test]
    fn both_shapes() {
        let e = AuthError::weak_password("too short", vec!["length"]);
        assert_eq!(
            e.legacy_body(),
            json!({"code": 422, "error_code": "weak_password", "msg": "too short",
                   "weak_password": {"reasons": ["length"]}})
        );
        assert_eq!(
            e.dated_body(),
            json!({"code": "weak_password", "message": "too short",
                   "weak_password": {"reasons": ["length"]}})
        );
    }
}
