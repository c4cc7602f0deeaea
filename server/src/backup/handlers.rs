//! `/platform/v1/backups`: backup schedules and their runs (platform admin
//! token). The logic lives in [`super::schedule`].

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;

use super::BackupError;
use super::schedule::{self, RunFilter, RunInfo, ScheduleInfo, ScheduleRequest};
use crate::error::{ApiError, ApiResult, AppJson};
use crate::platform::PlatformAdmin;
use crate::state::AppState;

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::Target(m) => ApiError::bad_request("invalid_backup_target", m),
            BackupError::Input(m) => ApiError::bad_request("invalid_backup_schedule", m),
            BackupError::Conflict(m) => ApiError::conflict("backup_schedule_exists", m),
            BackupError::Missing(m) => ApiError::not_found("backup_schedule_not_found", m),
            e @ BackupError::NotFound(_) => ApiError::not_found("project_not_found", e.to_string()),
            BackupError::Project(p) => p.into(),
            BackupError::Db(db) => db.into(),
            BackupError::Pool(p) => p.into(),
            other => ApiError::internal(&other),
        }
    }
}

/// List backup schedules.
#[utoipa::path(get, path = "/platform/v1/backups/schedules", tag = "platform", security(("admin_token" = [])),
    responses((status = 200, body = [ScheduleInfo]), (status = 401, body = ApiError)))]
pub async fn list_schedules(
    State(app): State<AppState>,
    _admin: PlatformAdmin,
) -> ApiResult<Json<Vec<ScheduleInfo>>> {
    Ok(Json(schedule::list(&app.platform).await?))
}

/// Create a backup schedule: a cron (UTC), a target (absolute directory or
/// `s3://bucket/prefix`), one project or all, and a retention.
#[utoipa::path(post, path = "/platform/v1/backups/schedules", tag = "platform", security(("admin_token" = [])),
    request_body = ScheduleRequest,
    responses((status = 201, body = ScheduleInfo), (status = 400, body = ApiError), (status = 401, body = ApiError),
              (status = 404, body = ApiError, description = "No such project"), (status = 409, body = ApiError)))]
pub async fn create_schedule(
    State(app): State<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    AppJson(body): AppJson<ScheduleRequest>,
) -> ApiResult<(StatusCode, Json<ScheduleInfo>)> {
    let created = schedule::create(&app.platform, &body, &admin.email).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Delete a backup schedule and its run history (the backups it wrote stay).
#[utoipa::path(delete, path = "/platform/v1/backups/schedules/{name}", tag = "platform", security(("admin_token" = [])),
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 204), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub async fn delete_schedule(
    State(app): State<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    schedule::delete(&app.platform, &name, &admin.email).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Backup runs, newest first: status, location, size, duration, error.
#[utoipa::path(get, path = "/platform/v1/backups", tag = "platform", security(("admin_token" = [])), params(RunFilter),
    responses((status = 200, body = [RunInfo]), (status = 400, body = ApiError), (status = 401, body = ApiError)))]
pub async fn list_runs(
    State(app): State<AppState>,
    _admin: PlatformAdmin,
    filter: Result<Query<RunFilter>, QueryRejection>,
) -> ApiResult<Json<Vec<RunInfo>>> {
    let Query(filter) =
        filter.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    Ok(Json(schedule::runs(&app.platform, &filter).await?))
}
