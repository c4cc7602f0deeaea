//! The HTTP layer: the router (the API's table of contents), middleware, the
//! error envelope, health, metrics and the OpenAPI document.

mod error;
pub mod health;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod rest;
pub mod router;
pub mod server;

pub(crate) use error::body_rejection;
pub use error::{ApiError, ApiResult};

use axum::extract::{FromRequest, Request};

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
