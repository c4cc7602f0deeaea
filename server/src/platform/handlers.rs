//! The `/platform/v1` API: admin login and project management.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;

use super::admins::{self, AdminClaims, LoginResponse};
use super::clusters::{self, Cluster, ClusterChanges, NewCluster};
use super::projects::{self, Project, ProjectDetails, ProjectRef};
use crate::crypto::JwtError;
use crate::error::{ApiError, ApiResult, AppJson};
use crate::state::AppState;

/// Login body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    /// Admin email.
    pub email: String,
    /// Admin password.
    pub password: String,
}

/// Project creation body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateProject {
    /// 3–40 lowercase letters, digits and `-`.
    #[serde(rename = "ref")]
    pub project_ref: String,
    /// Display name (defaults to the ref).
    pub name: Option<String>,
    /// Superuser connection string of another Postgres cluster to place the
    /// project's database on (default: the control plane's cluster). Stored
    /// encrypted, never returned.
    pub database_url: Option<String>,
    /// Name of a registered cluster to place the project on (default: the
    /// registered cluster with the most headroom, or the control plane's
    /// cluster when none is registered). Not together with `database_url`.
    pub cluster: Option<String>,
}

/// A verified platform admin (from `Authorization: Bearer <token>`).
pub struct PlatformAdmin(pub AdminClaims);

impl FromRequestParts<AppState> for PlatformAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = crate::crypto::bearer_token(&parts.headers)
            .ok()
            .flatten()
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing_token",
                    "This endpoint needs `Authorization: Bearer <admin token>`.",
                )
                .with_hint("Get a token from POST /platform/v1/auth/login.")
            })?;
        admins::verify_token(&app.platform, token)
            .map(PlatformAdmin)
            .map_err(|e| match e {
                JwtError::Expired => ApiError::unauthorized(
                    "token_expired",
                    "The admin token has expired; log in again.",
                ),
                _ => ApiError::unauthorized("invalid_token", "The admin token is not valid."),
            })
    }
}

/// Log in as a platform admin.
#[utoipa::path(post, path = "/platform/v1/auth/login", tag = "platform", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ApiError), (status = 400, body = ApiError),
              (status = 429, body = ApiError, description = "Too many attempts from this IP, or the account is locked")))]
pub async fn login(
    State(app): State<AppState>,
    crate::auth::ClientIp(ip): crate::auth::ClientIp,
    AppJson(body): AppJson<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    Ok(Json(
        admins::login(&app.platform, &body.email, &body.password, ip.as_deref()).await?,
    ))
}

/// List projects.
#[utoipa::path(get, path = "/platform/v1/projects", tag = "platform", security(("admin_token" = [])),
    responses((status = 200, body = [Project]), (status = 401, body = ApiError)))]
pub async fn list_projects(
    State(app): State<AppState>,
    _admin: PlatformAdmin,
) -> ApiResult<Json<Vec<Project>>> {
    Ok(Json(projects::list(&app.platform).await?))
}

/// Create a project: its database, roles and keys.
#[utoipa::path(post, path = "/platform/v1/projects", tag = "platform", security(("admin_token" = [])),
    request_body = CreateProject,
    responses((status = 201, body = ProjectDetails), (status = 400, body = ApiError),
              (status = 401, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn create_project(
    State(app): State<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    AppJson(body): AppJson<CreateProject>,
) -> ApiResult<(StatusCode, Json<ProjectDetails>)> {
    let r = ProjectRef::parse(&body.project_ref)?;
    let placement =
        clusters::Placement::from_options(body.database_url.as_deref(), body.cluster.as_deref())?;
    let details = projects::create_on(
        &app.platform,
        &r,
        body.name.as_deref(),
        &admin.email,
        placement,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(details)))
}

/// Get a project with its keys and connection string.
#[utoipa::path(get, path = "/platform/v1/projects/{ref}", tag = "platform", security(("admin_token" = [])),
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, body = ProjectDetails), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub async fn get_project(
    State(app): State<AppState>,
    _admin: PlatformAdmin,
    Path(r): Path<String>,
) -> ApiResult<Json<ProjectDetails>> {
    let r = ProjectRef::parse(&r).map_err(|_| projects::ProjectError::NotFound(r.clone()))?;
    Ok(Json(projects::get_details(&app.platform, &r).await?))
}

/// Update a project's name, exposed schemas, CORS origins or legacy JWT secret.
#[utoipa::path(patch, path = "/platform/v1/projects/{ref}", tag = "platform", security(("admin_token" = [])),
    params(("ref" = String, Path, description = "Project ref")), request_body = projects::ProjectChanges,
    responses((status = 200, body = ProjectDetails), (status = 400, body = ApiError),
              (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub async fn update_project(
    State(app): State<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    Path(r): Path<String>,
    AppJson(changes): AppJson<projects::ProjectChanges>,
) -> ApiResult<Json<ProjectDetails>> {
    let r = ProjectRef::parse(&r).map_err(|_| projects::ProjectError::NotFound(r.clone()))?;
    let details = projects::update(&app.platform, &r, &changes, &admin.email).await?;
    app.projects.invalidate(r.as_str());
    Ok(Json(details))
}

/// Delete a project and its database.
#[utoipa::path(delete, path = "/platform/v1/projects/{ref}", tag = "platform", security(("admin_token" = [])),
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 204), (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub async fn delete_project(
    State(app): State<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    Path(r): Path<String>,
) -> ApiResult<StatusCode> {
    let r = ProjectRef::parse(&r).map_err(|_| projects::ProjectError::NotFound(r.clone()))?;
    app.delete_project(&r, &admin.email).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate a project's keys: new anon and service-role keys (and a new legacy
/// JWT secret if it has one), shown once; the old ones stop working at once,
/// on every node.
#[utoipa::path(post, path = "/platform/v1/projects/{ref}/keys/rotate", tag = "platform",
    security(("admin_token" = [])), params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, body = projects::RotatedKeys), (status = 401, body = ApiError),
              (status = 404, body = ApiError)))]
pub async fn rotate_keys(
    State(app): State<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    Path(r): Path<String>,
) -> ApiResult<(
    [(axum::http::HeaderName, &'static str); 1],
    Json<projects::RotatedKeys>,
)> {
    let r = ProjectRef::parse(&r).map_err(|_| projects::ProjectError::NotFound(r.clone()))?;
    let (id, keys) = projects::rotate_keys(&app.platform, &r, &admin.email).await?;
    app.projects.invalidate(r.as_str());
    // Deployed functions get the project keys in their environment.
    app.functions.invalidate(id, None);
    Ok((
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(keys),
    ))
}

/// List the registered database clusters with their project counts
/// (connection strings are never returned).
#[utoipa::path(get, path = "/platform/v1/clusters", tag = "platform", security(("admin_token" = [])),
    responses((status = 200, body = [Cluster]), (status = 401, body = ApiError)))]
pub async fn list_clusters(
    State(app): State<AppState>,
    _admin: PlatformAdmin,
) -> ApiResult<Json<Vec<Cluster>>> {
    Ok(Json(clusters::list(&app.platform).await?))
}

/// Register a Postgres cluster new projects may be placed on.
#[utoipa::path(post, path = "/platform/v1/clusters", tag = "platform", security(("admin_token" = [])),
    request_body = NewCluster,
    responses((status = 201, body = Cluster), (status = 400, body = ApiError),
              (status = 401, body = ApiError), (status = 409, body = ApiError)))]
pub async fn add_cluster(
    State(app): State<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    AppJson(body): AppJson<NewCluster>,
) -> ApiResult<(StatusCode, Json<Cluster>)> {
    let cluster = clusters::add(&app.platform, &body, &admin.email).await?;
    Ok((StatusCode::CREATED, Json(cluster)))
}

/// Unregister a cluster that holds no project.
#[utoipa::path(delete, path = "/platform/v1/clusters/{name}", tag = "platform", security(("admin_token" = [])),
    params(("name" = String, Path, description = "Cluster name")),
    responses((status = 204), (status = 401, body = ApiError), (status = 404, body = ApiError),
              (status = 409, body = ApiError)))]
pub async fn remove_cluster(
    State(app): State<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    clusters::remove(&app.platform, &name, &admin.email).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change a cluster's `max_projects` (`null`: no limit).
#[utoipa::path(patch, path = "/platform/v1/clusters/{name}", tag = "platform", security(("admin_token" = [])),
    params(("name" = String, Path, description = "Cluster name")), request_body = ClusterChanges,
    responses((status = 200, body = Cluster), (status = 400, body = ApiError),
              (status = 401, body = ApiError), (status = 404, body = ApiError)))]
pub async fn update_cluster(
    State(app): State<AppState>,
    PlatformAdmin(admin): PlatformAdmin,
    Path(name): Path<String>,
    AppJson(body): AppJson<ClusterChanges>,
) -> ApiResult<Json<Cluster>> {
    let max_projects = body
        .max_projects
        .ok_or(clusters::ClusterError::InvalidMaxProjects)?;
    clusters::set_max_projects(&app.platform, &name, max_projects, &admin.email).await?;
    let updated = clusters::list(&app.platform)
        .await?
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| clusters::ClusterError::NotFound(name.clone()))?;
    Ok(Json(updated))
}
