//! Errors of the storage API, answered in Supabase Storage's shape
//! `{statusCode, error, message}` (plus our stable `code`), so
//! `@supabase/storage-js` and `storage3` read them unchanged.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;

/// Why a storage request failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object name is not acceptable.
    #[error("{0}")]
    InvalidKey(String),
    /// The bucket id is not acceptable.
    #[error(
        "Invalid bucket name {0:?}: use 1-100 letters, digits, '_', '-' or '.', not starting with '.'."
    )]
    InvalidBucketName(String),
    /// Malformed request (body, header, parameter).
    #[error("{0}")]
    InvalidRequest(String),
    /// No such bucket (or not visible to the caller).
    #[error("Bucket not found.")]
    BucketNotFound,
    /// No such object (or not visible to the caller).
    #[error("Object not found.")]
    ObjectNotFound,
    /// The bucket id is taken.
    #[error("A bucket with this id already exists.")]
    BucketExists,
    /// The object exists and overwriting was not asked for.
    #[error("The resource already exists.")]
    ObjectExists,
    /// The bucket still has objects.
    #[error("The bucket is not empty: empty it first.")]
    BucketNotEmpty,
    /// The upload is larger than the limit.
    #[error("The object exceeded the maximum allowed size of {0} bytes.")]
    TooLarge(u64),
    /// The write would take the project over its storage quota.
    #[error("{0}")]
    QuotaExceeded(String),
    /// The content type is not allowed in this bucket.
    #[error("The mime type {0:?} is not allowed in this bucket.")]
    MimeNotAllowed(String),
    /// Row Level Security (or a missing grant) refused the operation.
    #[error("{0}")]
    Forbidden(String),
    /// A signed URL or upload token is invalid or expired.
    #[error("{0}")]
    InvalidSignature(String),
    /// The `Range` cannot be satisfied; carries the object size.
    #[error("The requested range is not satisfiable.")]
    RangeNotSatisfiable(u64),
    /// TUS: the offset does not match the upload's.
    #[error("{0}")]
    OffsetMismatch(String),
    /// The storage backend is not configured correctly.
    #[error("Storage is not available: {0}")]
    Unavailable(String),
    /// The backend failed.
    #[error("storage backend error: {0}")]
    Backend(#[from] object_store::Error),
    /// Any other API error (authentication, database).
    #[error("{0}")]
    Api(ApiError),
}

impl From<ApiError> for StorageError {
    fn from(e: ApiError) -> Self {
        StorageError::Api(e)
    }
}

impl From<deadpool_postgres::PoolError> for StorageError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StorageError::Api(e.into())
    }
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            match code {
                "42501" => {
                    return StorageError::Forbidden(
                        "new row violates row-level security policy".into(),
                    );
                }
                "23505" => return StorageError::ObjectExists,
                super::quota::QUOTA_SQLSTATE => {
                    return StorageError::QuotaExceeded(db.message().to_owned());
                }
                "23503" => return StorageError::BucketNotFound,
                "57014" => {
                    return StorageError::Api(ApiError::unavailable(
                        "The database statement timed out. Try again shortly.",
                    ));
                }
                _ => {}
            }
        }
        StorageError::Api(e.into())
    }
}

impl StorageError {
    fn parts(&self) -> (StatusCode, &str, &str) {
        match self {
            StorageError::InvalidKey(_) => (StatusCode::BAD_REQUEST, "InvalidKey", "Invalid Key"),
            StorageError::InvalidBucketName(_) => (
                StatusCode::BAD_REQUEST,
                "InvalidBucketName",
                "Invalid Input",
            ),
            StorageError::InvalidRequest(_) => {
                (StatusCode::BAD_REQUEST, "InvalidRequest", "Invalid Input")
            }
            StorageError::BucketNotFound => (StatusCode::NOT_FOUND, "NoSuchBucket", "not_found"),
            StorageError::ObjectNotFound => (StatusCode::NOT_FOUND, "NoSuchKey", "not_found"),
            StorageError::BucketExists => {
                (StatusCode::CONFLICT, "BucketAlreadyExists", "Duplicate")
            }
            StorageError::ObjectExists => (StatusCode::CONFLICT, "Duplicate", "Duplicate"),
            StorageError::BucketNotEmpty => {
                (StatusCode::CONFLICT, "InvalidRequest", "Bucket not empty")
            }
            StorageError::TooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "EntityTooLarge",
                "Payload too large",
            ),
            StorageError::QuotaExceeded(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "QuotaExceeded",
                "Payload too large",
            ),
            StorageError::MimeNotAllowed(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "InvalidMimeType",
                "invalid_mime_type",
            ),
            StorageError::Forbidden(_) => (StatusCode::FORBIDDEN, "AccessDenied", "Unauthorized"),
            StorageError::InvalidSignature(_) => (
                StatusCode::BAD_REQUEST,
                "InvalidSignature",
                "InvalidSignature",
            ),
            StorageError::RangeNotSatisfiable(_) => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "Range Not Satisfiable",
            ),
            StorageError::OffsetMismatch(_) => {
                (StatusCode::CONFLICT, "InvalidUploadOffset", "Conflict")
            }
            StorageError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "StorageUnavailable",
                "Service Unavailable",
            ),
            StorageError::Backend(object_store::Error::NotFound { .. }) => {
                (StatusCode::NOT_FOUND, "NoSuchKey", "not_found")
            }
            StorageError::Backend(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "StorageBackendError",
                "Service Unavailable",
            ),
            StorageError::Api(e) => (e.status, e.code.as_str(), "Error"),
        }
    }
}

impl IntoResponse for StorageError {
    fn into_response(self) -> Response {
        let (status, code, error) = self.parts();
        if let StorageError::QuotaExceeded(_) = &self {
            metrics::counter!("ferrobase_storage_quota_refused_total").increment(1);
        }
        let message = match &self {
            StorageError::Backend(object_store::Error::NotFound { .. }) => {
                "Object not found.".to_owned()
            }
            StorageError::Backend(e) => {
                tracing::error!(error = %e, "storage backend error");
                "The storage backend failed. Try again shortly.".to_owned()
            }
            StorageError::Unavailable(m) => {
                tracing::error!(reason = %m, "storage unavailable");
                self.to_string()
            }
            StorageError::Api(e) => e.message.clone(),
            other => other.to_string(),
        };
        let mut body = json!({
            "statusCode": status.as_u16().to_string(),
            "code": code,
            "error": error,
            "message": message,
        });
        if let StorageError::Api(e) = &self
            && let Some(hint) = &e.hint
        {
            body["hint"] = json!(hint);
        }
        let mut resp = (status, Json(body)).into_response();
        match &self {
            StorageError::RangeNotSatisfiable(size) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
            }
            StorageError::Backend(_) | StorageError::Unavailable(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            StorageError::Api(e) if e.retry_after.is_some() => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(1));
            }
            _ => {}
        }
        resp
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        if let StorageError::Api(api) = e {
            return api;
        }
        let (status, code, _) = e.parts();
        let code = code.to_owned();
        ApiError::new(status, &code, e.to_string())
    }
}

/// Result alias of the storage handlers.
pub type StorageResult<T> = Result<T, StorageError>;
