//! Errors of `/ai/v1` in OpenAI's shape: `{"error": {message, type, param, code}}`,
//! so the official clients raise their typed exceptions (`AuthenticationError`,
//! `RateLimitError`, `NotFoundError`, …) unchanged.
//!
//! Upstream errors are mapped here too ([`AiError::from_upstream`]): the
//! upstream's message is passed on only for client mistakes (4xx other than
//! auth), always after redacting the provider key; an upstream refusing the
//! gateway's own credentials is the operator's problem, so the client gets a
//! 502 that names the provider and not the upstream's text.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;

/// An error answered by the AI gateway.
#[derive(Debug, Clone)]
pub struct AiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI's error `type`, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// Machine-readable code, e.g. `model_not_found`.
    pub code: String,
    /// A sentence a person can act on.
    pub message: String,
    /// The request field at fault, when known.
    pub param: Option<String>,
    /// Seconds after which a retry may succeed (`Retry-After`).
    pub retry_after: Option<u64>,
}

/// Result alias of the gateway.
pub type AiResult<T> = Result<T, AiError>;

impl AiError {
    /// An error with its status, OpenAI type, code and message.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code: code.to_owned(),
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    /// 400 `invalid_request_error`.
    pub fn invalid(code: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        )
    }

    /// Names the request field at fault.
    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// Sets `Retry-After`.
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// 404 for a model the project does not serve.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!("The model `{model}` does not exist or is not allowed for this project."),
        )
        .with_param("model")
    }

    /// 503 when no upstream has a key.
    pub fn not_configured() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "ai_not_configured",
            "No AI provider is configured: set FERROBASE_AI_API_KEY (and optionally \
             FERROBASE_AI_BASE_URL) on the server, or add a provider to this project with \
             POST /admin/v1/ai/providers.",
        )
    }

    /// 500 for a failure the client cannot fix; `cause` is logged, never sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "ai gateway internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "internal_error",
            "Something went wrong on our side. The error was logged.",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl std::fmt::Display for AiError {
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

impl IntoResponse for AiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// OpenAI's `type` for a status.
fn kind_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "api_error",
    }
}

/// Platform errors (authentication, database) keep their status and code.
impl From<ApiError> for AiError {
    fn from(e: ApiError) -> Self {
        Self {
            status: e.status,
            kind: kind_for(e.status),
            code: e.code,
            message: e.message,
            param: None,
            retry_after: e.retry_after,
        }
    }
}

impl From<tokio_postgres::Error> for AiError {
    fn from(e: tokio_postgres::Error) -> Self {
        ApiError::from(e).into()
    }
}

impl From<deadpool_postgres::PoolError> for AiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        ApiError::from(e).into()
    }
}

/// Removes `secret` (and its recognisable prefix, which some providers echo
/// as `sk-abc…wxyz`) from `text`.
pub fn redact(text: &str, secret: Option<&str>) -> String {
    let Some(secret) = secret.filter(|s| s.len() >= 8) else {
        return text.to_owned();
    };
    let mut out = text.replace(secret, "[redacted]");
    // A masked echo keeps the first and last characters: drop both ends.
    let (head, tail) = (&secret[..6], &secret[secret.len() - 4..]);
    if out.contains(head) {
        out = out.replace(head, "[redacted]");
    }
    if tail.len() == 4 && out.contains(tail) && secret.len() >= 16 {
        out = out.replace(tail, "[redacted]");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_full_and_masked_keys() {
        let key = "sk-test-0123456789abcdefXYZW";
        let text = format!("Incorrect API key provided: {key}. Also sk-tes***XYZW.");
        let out = redact(&text, Some(key));
        assert!(!out.contains(key), "{out}");
        assert!(!out.contains("sk-tes"), "{out}");
        assert!(!out.contains("XYZW"), "{out}");
        assert_eq!(redact("nothing", None), "nothing");
    }

    #[test]
    fn body_has_openai_shape() {
        let body = AiError::model_not_found("gpt-x").body();
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "model");
    }
}
