//! Errors of the REST engine, in PostgREST's JSON shape.
//!
//! Errors raised by PostgreSQL are forwarded with their SQLSTATE, message, detail and
//! hint, and an HTTP status chosen as PostgREST documents it
//! (<https://docs.postgrest.org/en/latest/references/errors.html>). Errors raised by the
//! engine itself use PostgREST's `PGRSTxxx` codes. Non-SQL failures (I/O, closed
//! connection, type conversion) never expose internals.

use http::StatusCode;
use serde_json::json;

/// An error in PostgREST's JSON shape. `status` is the HTTP status PostgREST would use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RestError {
    /// HTTP status of the response.
    pub status: StatusCode,
    /// SQLSTATE (e.g. `23505`) or PostgREST code (e.g. `PGRST116`).
    pub code: String,
    /// Human readable message.
    pub message: String,
    /// Optional details.
    pub details: Option<String>,
    /// Optional hint.
    pub hint: Option<String>,
}

impl RestError {
    /// A new error without details or hint.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        RestError {
            status,
            code: code.to_owned(),
            message: message.into(),
            details: None,
            hint: None,
        }
    }

    /// Sets `details`.
    #[must_use]
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// Sets `hint`.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The JSON body PostgREST sends: `{"code","details","hint","message"}`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "code": self.code,
            "details": self.details,
            "hint": self.hint,
            "message": self.message,
        })
    }

    /// PostgREST answers `42501` (insufficient privilege) with 401 for the anonymous role
    /// and 403 otherwise. [`From<tokio_postgres::Error>`] always uses 403; the caller, who
    /// knows the role, can call this to downgrade to 401 for anonymous requests.
    #[must_use]
    pub fn for_role(mut self, is_anonymous: bool) -> Self {
        if self.code == "42501" && is_anonymous {
            self.status = StatusCode::UNAUTHORIZED;
        }
        self
    }

    /// PGRST100: the query string could not be parsed.
    pub(crate) fn parse(message: impl Into<String>, details: impl Into<String>) -> Self {
        RestError::new(StatusCode::BAD_REQUEST, "PGRST100", message).with_details(details)
    }

    /// PGRST102: the request body is invalid.
    pub(crate) fn body(message: impl Into<String>) -> Self {
        RestError::new(StatusCode::BAD_REQUEST, "PGRST102", message)
    }

    /// 42703-style error for an unknown column.
    pub(crate) fn unknown_column(table: &str, column: &str) -> Self {
        RestError::new(
            StatusCode::BAD_REQUEST,
            "42703",
            format!("column {table}.{column} does not exist"),
        )
    }

    /// PGRST205: unknown table.
    pub(crate) fn unknown_table(schema: &str, table: &str) -> Self {
        RestError::new(
            StatusCode::NOT_FOUND,
            "PGRST205",
            format!("Could not find the table '{schema}.{table}' in the schema cache"),
        )
    }

    /// An internal failure that must not leak details.
    pub(crate) fn internal(message: &str) -> Self {
        RestError::new(StatusCode::INTERNAL_SERVER_ERROR, "PGRST000", message)
    }
}

/// HTTP status PostgREST uses for a SQLSTATE (42501 -> 403; see [`RestError::for_role`]).
pub fn status_for_sqlstate(code: &str) -> StatusCode {
    let class = code.get(..2).unwrap_or("");
    match code {
        "23503" | "23505" => return StatusCode::CONFLICT,
        "25006" => return StatusCode::METHOD_NOT_ALLOWED,
        "53400" => return StatusCode::INTERNAL_SERVER_ERROR,
        "P0001" => return StatusCode::BAD_REQUEST,
        "42883" | "42P01" => return StatusCode::NOT_FOUND,
        "42P17" => return StatusCode::INTERNAL_SERVER_ERROR,
        "42501" => return StatusCode::FORBIDDEN,
        _ => {}
    }
    if code.starts_with("PT") {
        // RAISE ... USING ERRCODE = 'PT404' sets the status directly.
        if let Some(s) = code
            .get(2..)
            .and_then(|d| d.parse::<u16>().ok())
            .and_then(|n| StatusCode::from_u16(n).ok())
        {
            return s;
        }
    }
    match class {
        "08" | "53" => StatusCode::SERVICE_UNAVAILABLE,
        "0L" | "0P" | "28" => StatusCode::FORBIDDEN,
        "09" | "25" | "2D" | "38" | "39" | "3B" | "40" | "54" | "55" | "57" | "58" | "F0"
        | "HV" | "P0" | "XX" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<tokio_postgres::Error> for RestError {
    fn from(err: tokio_postgres::Error) -> Self {
        if let Some(db) = err.as_db_error() {
            let code = db.code().code();
            return RestError {
                status: status_for_sqlstate(code),
                code: code.to_owned(),
                message: db.message().to_owned(),
                details: db.detail().map(str::to_owned),
                hint: db.hint().map(str::to_owned),
            };
        }
        if err.is_closed()
            || std::error::Error::source(&err).is_some_and(|s| s.is::<std::io::Error>())
        {
            tracing::warn!(error = %err, "rest: database connection error");
            return RestError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "PGRST001",
                "Database client error. Retrying the connection.",
            );
        }
        tracing::error!(error = %err, "rest: database client error");
        RestError::internal("Internal database client error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_statuses() {
        for (code, status) in [
            ("23505", 409),
            ("23503", 409),
            ("42501", 403),
            ("42P01", 404),
            ("42883", 404),
            ("42703", 400),
            ("22P02", 400),
            ("23502", 400),
            ("23514", 400),
            ("P0001", 400),
            ("57014", 500),
            ("08006", 503),
            ("25006", 405),
            ("PT402", 402),
            ("XX000", 500),
        ] {
            assert_eq!(status_for_sqlstate(code).as_u16(), status, "{code}");
        }
    }

    #[test]
    fn json_shape() {
        let e = RestError::new(StatusCode::NOT_ACCEPTABLE, "PGRST116", "m").with_details("d");
        assert_eq!(
            e.to_json(),
            json!({"code":"PGRST116","details":"d","hint":null,"message":"m"})
        );
        let e = RestError::new(StatusCode::FORBIDDEN, "42501", "x").for_role(true);
        assert_eq!(e.status, StatusCode::UNAUTHORIZED);
    }
}
