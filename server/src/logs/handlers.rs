//! `/platform/v1/logs`: recent requests of this node and the audit log
//! (platform admin token).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};

use super::audit::{self, AuditEntry, AuditFilter};
use super::requests::{RequestEntry, RequestFilter};
use crate::error::{ApiError, ApiResult};
use crate::platform::PlatformAdmin;
use crate::state::AppState;

/// Recent requests served by this node (no bodies, headers or query strings), newest first.
#[utoipa::path(get, path = "/platform/v1/logs/requests", tag = "platform", params(RequestFilter),
    responses((status = 200, body = [RequestEntry]), (status = 400, body = ApiError), (status = 401, body = ApiError)))]
pub async fn requests(
    State(app): State<AppState>,
    _admin: PlatformAdmin,
    filter: Result<Query<RequestFilter>, QueryRejection>,
) -> ApiResult<Json<Vec<RequestEntry>>> {
    let Query(filter) = filter.map_err(bad_query)?;
    Ok(Json(app.request_log.query(&filter)))
}

/// The platform audit log (who changed what), newest first.
#[utoipa::path(get, path = "/platform/v1/logs/audit", tag = "platform", params(AuditFilter),
    responses((status = 200, body = [AuditEntry]), (status = 400, body = ApiError), (status = 401, body = ApiError)))]
pub async fn audit_log(
    State(app): State<AppState>,
    _admin: PlatformAdmin,
    filter: Result<Query<AuditFilter>, QueryRejection>,
) -> ApiResult<Json<Vec<AuditEntry>>> {
    let Query(filter) = filter.map_err(bad_query)?;
    Ok(Json(audit::list(&app.platform, &filter).await?))
}

fn bad_query(e: QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", e.body_text())
}
