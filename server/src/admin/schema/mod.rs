//! Schema management for a project (the JSON side of `/p/{ref}/admin/v1`):
//! list schemas, tables (columns, keys, indexes, RLS, policies), views,
//! functions and triggers; create, alter and drop tables, indexes and
//! policies; enable or disable row level security.
//!
//! - [`introspect`]: catalog queries that answer the listings as JSON.
//! - [`ddl`]: typed definitions → validated, quoted DDL statements.
//! - [`handlers`]: the HTTP handlers (mounted by [`crate::admin::routes`]).
//!
//! Every DDL request runs as the project owner in one transaction. Names are
//! checked against [`ddl::Ident`]'s pattern and quoted; types are parsed as
//! type names and resolved with `to_regtype`; expressions (defaults, policy
//! `USING`/`WITH CHECK`) must parse as one expression and pass the admin-SQL
//! guard, so they cannot carry a statement.

pub mod ddl;
pub mod handlers;
pub mod introspect;

use crate::error::ApiError;

/// What can go wrong in schema management.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The definition is invalid; the message names the problem.
    #[error("{0}")]
    Invalid(String),
    /// The table (or other object) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Postgres refused the DDL.
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

impl From<SchemaError> for ApiError {
    fn from(e: SchemaError) -> Self {
        match e {
            SchemaError::Invalid(m) => ApiError::bad_request("invalid_definition", m),
            SchemaError::NotFound(m) => ApiError::not_found("not_found", m),
            SchemaError::Db(e) => db_error(e),
        }
    }
}

/// A Postgres error from DDL → 4xx with its SQLSTATE (409 for duplicates,
/// 404 for missing objects), 503 for connection loss.
pub fn db_error(e: tokio_postgres::Error) -> ApiError {
    if crate::db::is_connection_error(&e) {
        return ApiError::from(e);
    }
    let Some(db) = e.as_db_error() else {
        return ApiError::from(e);
    };
    let code = db.code().code();
    let status = match code {
        "42P07" | "42710" | "42701" | "23505" => axum::http::StatusCode::CONFLICT,
        "42P01" | "42704" | "42703" | "42883" => axum::http::StatusCode::BAD_REQUEST,
        _ => axum::http::StatusCode::BAD_REQUEST,
    };
    let mut err = ApiError::new(status, code, db.message());
    if let Some(d) = db.detail() {
        err = err.with_details(d);
    }
    if let Some(h) = db.hint() {
        err = err.with_hint(h);
    }
    err
}
