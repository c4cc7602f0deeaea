//! The SDK's one error type.
//!
//! Policy: every fallible public function returns [`Result`]. A response with
//! a non-2xx status becomes [`Error::Api`], decoded from the server's JSON
//! envelope `{"code", "message", "details"?, "hint"?}`. Bodies that are not
//! that envelope (a proxy's HTML page, plain text, the GoTrue `msg` shape) are
//! still turned into an [`Error::Api`] with a synthetic `http_<status>` code,
//! so callers can always match on [`Error::status`] and [`Error::code`].
//! Transport failures stay as the underlying [`reqwest::Error`].

use reqwest::StatusCode;
use serde_json::Value;

/// Shorthand for `std::result::Result<T, ferrobase::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest error body (in bytes) copied into an [`Error`] message.
const MAX_BODY_IN_ERROR: usize = 512;

/// Everything that can go wrong when talking to a Ferrobase server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered with a non-2xx status.
    #[error("{message} (HTTP {status}, code {code}){}{}", fmt_opt("details", .details.as_ref()), fmt_opt("hint", .hint.as_ref()))]
    Api {
        /// HTTP status code of the response.
        status: u16,
        /// Stable machine-readable error code, e.g. `project_not_found` or
        /// `PGRST116`. Bodies without a code get `http_<status>`.
        code: String,
        /// Human-readable message.
        message: String,
        /// Extra detail, when the server gave any.
        details: Option<String>,
        /// A suggestion for fixing the problem, when the server gave one.
        hint: Option<String>,
    },
    /// The request could not be sent or its response could not be read
    /// (connection refused, timeout, TLS failure, ...).
    #[error("HTTP transport error: {0}")]
    Http(#[from] reqwest::Error),
    /// A base URL given to the SDK, or returned by the server, is unusable.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// A successful response body did not have the expected shape.
    #[error("failed to decode response: {0}")]
    Decode(String),
    /// The realtime hub refused a request (`{ok: false, error}` ack, a
    /// refused handshake: code `connect_error`), or the connection is gone.
    #[error("realtime: {message} (code {code})")]
    Realtime {
        /// Stable code, e.g. `forbidden`, `channel_not_found`, `connect_error`.
        code: String,
        /// Human-readable message.
        message: String,
    },
    /// The request could not be built: its body failed to serialize, or a
    /// key, token or header value is not a valid HTTP header value.
    #[error("failed to encode request: {0}")]
    Encode(String),
}

fn fmt_opt(label: &str, value: Option<&String>) -> String {
    match value {
        Some(v) if !v.is_empty() => format!("; {label}: {v}"),
        _ => String::new(),
    }
}

impl Error {
    /// The HTTP status of the failed response, if the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } => Some(*status),
            Error::Http(e) => e.status().map(|s| s.as_u16()),
            _ => None,
        }
    }

    /// The server's error code (for example `invalid_credentials`), if this
    /// is an [`Error::Api`].
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            Error::Realtime { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Builds an [`Error::Api`] from a non-2xx response's status and body.
    ///
    /// Accepts the Ferrobase/PostgREST envelope and, leniently, the other
    /// shapes a client may meet (GoTrue `{code: int, error_code, msg}`,
    /// OAuth `{error, error_description}`, plain text, empty bodies).
    pub(crate) fn from_response(status: StatusCode, body: &[u8]) -> Error {
        let status_u16 = status.as_u16();
        let fallback_code = format!("http_{status_u16}");
        let reason = status.canonical_reason().unwrap_or("request failed");

        if let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) {
            // OpenAI's shape (the AI gateway): `{"error": {message, type, code}}`.
            if let Some(Value::Object(inner)) = map.get("error") {
                let mut flat = inner.clone();
                if !matches!(flat.get("code"), Some(Value::String(_))) {
                    flat.insert(
                        "code".into(),
                        flat.get("type").cloned().unwrap_or(Value::Null),
                    );
                }
                map = flat;
            }
            let text = |key: &str| -> Option<String> {
                match map.get(key)? {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                }
            };
            let code = match map.get("code") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            }
            .or_else(|| text("error_code"))
            .or_else(|| text("error"))
            .unwrap_or(fallback_code);
            let message = text("message")
                .or_else(|| text("msg"))
                .or_else(|| text("error_description"))
                .or_else(|| text("error"))
                .unwrap_or_else(|| reason.to_owned());
            return Error::Api {
                status: status_u16,
                code,
                message,
                details: text("details"),
                hint: text("hint"),
            };
        }

        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        let message = if text.is_empty() {
            reason.to_owned()
        } else {
            truncate(text, MAX_BODY_IN_ERROR)
        };
        Error::Api {
            status: status_u16,
            code: fallback_code,
            message,
            details: None,
            hint: None,
        }
    }
}

/// Cuts `s` to at most `max` bytes on a char boundary, marking the cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, body: &str) -> Error {
        Error::from_response(StatusCode::from_u16(status).unwrap(), body.as_bytes())
    }

    #[test]
    fn decodes_full_envelope() {
        let e = api(
            409,
            r#"{"code":"project_exists","message":"Project already exists","details":"ref=abc","hint":"pick another ref"}"#,
        );
        match &e {
            Error::Api {
                status,
                code,
                message,
                details,
                hint,
            } => {
                assert_eq!(*status, 409);
                assert_eq!(code, "project_exists");
                assert_eq!(message, "Project already exists");
                assert_eq!(details.as_deref(), Some("ref=abc"));
                assert_eq!(hint.as_deref(), Some("pick another ref"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(e.status(), Some(409));
        assert_eq!(e.code(), Some("project_exists"));
        let shown = e.to_string();
        assert!(shown.contains("Project already exists"), "{shown}");
        assert!(shown.contains("409"), "{shown}");
        assert!(shown.contains("pick another ref"), "{shown}");
    }

    #[test]
    fn decodes_envelope_with_absent_and_null_fields() {
        let e = api(
            401,
            r#"{"code":"invalid_credentials","message":"bad login","details":null}"#,
        );
        let Error::Api { details, hint, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(details, &None);
        assert_eq!(hint, &None);
        assert_eq!(e.code(), Some("invalid_credentials"));
        assert_eq!(
            e.to_string(),
            "bad login (HTTP 401, code invalid_credentials)"
        );
    }

    #[test]
    fn non_string_details_are_kept_as_json() {
        let e = api(400, r#"{"code":"x","message":"m","details":{"col":"a"}}"#);
        let Error::Api { details, .. } = e else {
            panic!()
        };
        assert_eq!(details.as_deref(), Some(r#"{"col":"a"}"#));
    }

    #[test]
    fn decodes_gotrue_shape() {
        let e = api(
            400,
            r#"{"code":400,"error_code":"weak_password","msg":"Password too short"}"#,
        );
        assert_eq!(e.code(), Some("weak_password"));
        let Error::Api { message, .. } = e else {
            panic!()
        };
        assert_eq!(message, "Password too short");
    }

    #[test]
    fn decodes_oauth_shape() {
        let e = api(
            400,
            r#"{"error":"invalid_grant","error_description":"Refresh token revoked"}"#,
        );
        assert_eq!(e.code(), Some("invalid_grant"));
        let Error::Api { message, .. } = e else {
            panic!()
        };
        assert_eq!(message, "Refresh token revoked");
    }

    #[test]
    fn plain_text_body_becomes_message() {
        let e = api(502, "Bad Gateway from nginx\n");
        assert_eq!(e.status(), Some(502));
        assert_eq!(e.code(), Some("http_502"));
        let Error::Api { message, .. } = e else {
            panic!()
        };
        assert_eq!(message, "Bad Gateway from nginx");
    }

    #[test]
    fn empty_body_uses_reason_phrase() {
        let e = api(503, "");
        assert_eq!(e.code(), Some("http_503"));
        let Error::Api { message, .. } = e else {
            panic!()
        };
        assert_eq!(message, "Service Unavailable");
    }

    #[test]
    fn json_that_is_not_an_object_is_treated_as_text() {
        let e = api(500, r#"["oops"]"#);
        assert_eq!(e.code(), Some("http_500"));
        let Error::Api { message, .. } = e else {
            panic!()
        };
        assert_eq!(message, r#"["oops"]"#);
    }

    #[test]
    fn long_bodies_are_truncated() {
        let body = "é".repeat(1000);
        let e = api(500, &body);
        let Error::Api { message, .. } = e else {
            panic!()
        };
        assert!(message.len() <= MAX_BODY_IN_ERROR + '…'.len_utf8());
        assert!(message.ends_with('…'));
    }

    #[test]
    fn non_api_errors_have_no_code() {
        let e = Error::InvalidUrl("nope".into());
        assert_eq!(e.status(), None);
        assert_eq!(e.code(), None);
    }
}
