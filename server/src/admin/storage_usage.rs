//! `GET /admin/v1/storage/usage`: the bytes a project stores (and reserves
//! for unfinished resumable uploads) against its storage quota.

use axum::Json;
use axum::extract::State;

use super::ProjectAdmin;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::storage::quota::{self, Usage};

/// `GET /admin/v1/storage/usage`.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/storage/usage", tag = "admin",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, body = Usage), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn storage_usage(
    State(app): State<AppState>,
    admin: ProjectAdmin,
) -> ApiResult<Json<Usage>> {
    let limit = quota::quota_of(
        admin.tenant.project.storage_max_bytes,
        app.platform.config().storage.storage_max_project_bytes,
    );
    let client = app.project_pool(&admin.tenant).get().await?;
    Ok(Json(quota::usage(&client, limit).await?))
}
