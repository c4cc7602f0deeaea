//! HTTP glue of `/p/{ref}/admin/v1/functions…` (project admins: the
//! service-role key or a platform admin token). Parse → call [`super::store`]
//! / the runtime → answer.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;

use super::bundle::{Bundle, SecretName, Slug, Source};
use super::logs::{self, LogQuery};
use super::schedule;
use super::store::{self, FunctionInfo, SecretInfo, SettingsPatch, VersionInfo};
use crate::admin::ProjectAdmin;
use crate::error::{ApiError, ApiResult, AppJson};
use crate::state::AppState;

/// Body of `POST /admin/v1/functions` and `PUT /admin/v1/functions/{slug}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DeployRequest {
    /// The slug (create only; on PUT the path names it).
    #[serde(default)]
    pub slug: Option<String>,
    /// The code (absent on PUT: only settings change).
    #[serde(flatten)]
    pub source: Source,
    /// Settings.
    #[serde(flatten)]
    pub settings: SettingsPatch,
    /// Make the new version active (default true).
    #[serde(default)]
    pub activate: Option<bool>,
}

type Answer<T> = ApiResult<(StatusCode, Json<T>)>;

fn path_slug(slug: &str) -> ApiResult<Slug> {
    Slug::parse(slug).map_err(|_| {
        ApiError::not_found(
            "function_not_found",
            format!(
                "No function {:?} in this project.",
                slug.chars().take(80).collect::<String>()
            ),
        )
    })
}

/// Tells the provider about the version just stored (writes the files
/// locally, or uploads a revision to Deno Deploy).
async fn deploy_to_runtime(
    app: &AppState,
    admin: &ProjectAdmin,
    slug: &Slug,
    bundle: &Bundle,
) -> ApiResult<()> {
    let t = &admin.tenant.project;
    app.functions.invalidate(t.id, Some(slug.as_str()));
    let d = app.functions.deployment(t.id, &t.project_ref, slug).await?;
    if d.checksum != bundle.checksum() {
        // Not the active version (deployed with activate=false): nothing to run yet.
        return Ok(());
    }
    app.functions
        .runtime
        .deploy(&d, bundle)
        .await
        .map_err(|m| ApiError::from(super::FunctionsError::Provider(m)))?;
    Ok(())
}

/// List edge functions.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/functions", tag = "functions",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, body = [FunctionInfo]), (status = 401, body = ApiError)))]
pub async fn list_functions(
    State(app): State<AppState>,
    admin: ProjectAdmin,
) -> ApiResult<Json<Vec<FunctionInfo>>> {
    Ok(Json(
        store::list(&app.platform, admin.tenant.project.id).await?,
    ))
}

/// Create a function (`{slug, code}` or `{slug, files, entrypoint}`, plus settings); version 1 is active.
#[utoipa::path(post, path = "/p/{ref}/admin/v1/functions", tag = "functions",
    params(("ref" = String, Path, description = "Project ref")),
    request_body = DeployRequest,
    responses((status = 201, body = FunctionInfo), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
pub async fn create_function(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    AppJson(req): AppJson<DeployRequest>,
) -> Answer<FunctionInfo> {
    let slug = Slug::parse(req.slug.as_deref().unwrap_or_default())?;
    let bundle = Bundle::parse(req.source)?;
    let project = admin.tenant.project.id;
    store::create(
        &app.platform,
        project,
        &slug,
        &bundle,
        &req.settings,
        &admin.actor,
    )
    .await?;
    if let Err(e) = deploy_to_runtime(&app, &admin, &slug, &bundle).await {
        // The provider refused the code: leave nothing half-created.
        let _ = store::delete(&app.platform, project, &slug).await;
        app.functions.invalidate(project, Some(slug.as_str()));
        return Err(e);
    }
    app.platform
        .audit(
            &admin.actor,
            "function.create",
            &format!("{}/{slug}", admin.tenant.project.project_ref),
            json!({"checksum": bundle.checksum()}),
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(store::get(&app.platform, project, &slug).await?),
    ))
}

/// One function with its versions.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/functions/{slug}", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("slug" = String, Path, description = "Function slug")),
    responses((status = 200, body = FunctionInfo), (status = 404, body = ApiError)))]
pub async fn get_function(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(params): Path<(String, String)>,
) -> ApiResult<Json<FunctionInfo>> {
    let (_, slug) = params;
    let slug = path_slug(&slug)?;
    Ok(Json(
        store::get(&app.platform, admin.tenant.project.id, &slug).await?,
    ))
}

/// Deploy a new version and/or change settings; creates the function when it does not exist (201).
#[utoipa::path(put, path = "/p/{ref}/admin/v1/functions/{slug}", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("slug" = String, Path, description = "Function slug")),
    request_body = DeployRequest,
    responses((status = 200, body = FunctionInfo), (status = 201, body = FunctionInfo), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn update_function(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(params): Path<(String, String)>,
    AppJson(req): AppJson<DeployRequest>,
) -> Answer<FunctionInfo> {
    let (_, slug) = params;
    let slug = Slug::parse(&slug)?;
    if req.slug.as_deref().is_some_and(|s| s != slug.as_str()) {
        return Err(ApiError::bad_request(
            "invalid_function",
            "The body's slug differs from the path's; functions cannot be renamed.",
        ));
    }
    let project = admin.tenant.project.id;
    let previous = store::get(&app.platform, project, &slug)
        .await
        .ok()
        .and_then(|f| f.active_version);
    let bundle = if req.source.is_present() {
        Some(Bundle::parse(req.source)?)
    } else {
        None
    };
    let result = store::update(
        &app.platform,
        project,
        &slug,
        bundle.as_ref(),
        &req.settings,
        req.activate.unwrap_or(true),
        &admin.actor,
    )
    .await;
    let status = match (result, bundle.as_ref()) {
        (Ok(_), _) => StatusCode::OK,
        (Err(super::FunctionsError::NotFound(_)), Some(b)) => {
            store::create(
                &app.platform,
                project,
                &slug,
                b,
                &req.settings,
                &admin.actor,
            )
            .await?;
            StatusCode::CREATED
        }
        (Err(e), _) => return Err(e.into()),
    };
    app.functions.invalidate(project, Some(slug.as_str()));
    if let Some(b) = &bundle
        && let Err(e) = deploy_to_runtime(&app, &admin, &slug, b).await
    {
        // The provider refused the new version: the previous one stays active
        // (or, for a function this request created, nothing is left behind).
        match previous {
            Some(v) => {
                let _ = store::activate(&app.platform, project, &slug, v).await;
            }
            None => {
                let _ = store::delete(&app.platform, project, &slug).await;
            }
        }
        app.functions.invalidate(project, Some(slug.as_str()));
        return Err(e);
    }
    app.platform
        .audit(
            &admin.actor,
            "function.update",
            &format!("{}/{slug}", admin.tenant.project.project_ref),
            json!({"checksum": bundle.as_ref().map(Bundle::checksum)}),
        )
        .await;
    Ok((
        status,
        Json(store::get(&app.platform, project, &slug).await?),
    ))
}

/// Delete a function, its versions and schedules.
#[utoipa::path(delete, path = "/p/{ref}/admin/v1/functions/{slug}", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("slug" = String, Path, description = "Function slug")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ApiError)))]
pub async fn delete_function(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(params): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, slug) = params;
    let slug = path_slug(&slug)?;
    let project = admin.tenant.project.id;
    store::delete(&app.platform, project, &slug).await?;
    app.functions.invalidate(project, Some(slug.as_str()));
    app.functions
        .runtime
        .remove(project, &admin.tenant.project.project_ref, slug.as_str())
        .await;
    app.platform
        .audit(
            &admin.actor,
            "function.delete",
            &format!("{}/{slug}", admin.tenant.project.project_ref),
            json!({}),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

fn version_number(v: &str) -> ApiResult<i32> {
    v.parse::<i32>().ok().filter(|v| *v > 0).ok_or_else(|| {
        ApiError::not_found(
            "function_not_found",
            format!(
                "{:?} is not a version number.",
                v.chars().take(20).collect::<String>()
            ),
        )
    })
}

/// One version with its files.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/functions/{slug}/versions/{version}", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("slug" = String, Path, description = "Function slug"), ("version" = i32, Path, description = "Version")),
    responses((status = 200, body = VersionInfo), (status = 404, body = ApiError)))]
pub async fn get_version(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(params): Path<(String, String, String)>,
) -> ApiResult<Json<VersionInfo>> {
    let (_, slug, version) = params;
    let slug = path_slug(&slug)?;
    let version = version_number(&version)?;
    Ok(Json(
        store::get_version(&app.platform, admin.tenant.project.id, &slug, version).await?,
    ))
}

/// Make a version the active one (rollback).
#[utoipa::path(post, path = "/p/{ref}/admin/v1/functions/{slug}/versions/{version}/activate", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("slug" = String, Path, description = "Function slug"), ("version" = i32, Path, description = "Version")),
    responses((status = 200, body = FunctionInfo), (status = 404, body = ApiError)))]
pub async fn activate_version(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(params): Path<(String, String, String)>,
) -> ApiResult<Json<FunctionInfo>> {
    let (_, slug, version) = params;
    let slug = path_slug(&slug)?;
    let version = version_number(&version)?;
    let project = admin.tenant.project.id;
    store::activate(&app.platform, project, &slug, version).await?;
    app.functions.invalidate(project, Some(slug.as_str()));
    let t = &admin.tenant.project;
    let d = app
        .functions
        .deployment(project, &t.project_ref, &slug)
        .await?;
    let bundle = store::version_bundle(&app.platform, d.function_id, version).await?;
    app.functions
        .runtime
        .deploy(&d, &bundle)
        .await
        .map_err(|m| ApiError::from(super::FunctionsError::Provider(m)))?;
    app.platform
        .audit(
            &admin.actor,
            "function.activate",
            &format!("{}/{slug}", t.project_ref),
            json!({"version": version}),
        )
        .await;
    Ok(Json(store::get(&app.platform, project, &slug).await?))
}

/// The filters of the log listings; a NUL (which no stored text holds, and
/// Postgres refuses in a parameter) is bad input like the rest.
fn log_query(
    q: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<LogQuery> {
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    if [&q.request_id, &q.level, &q.search]
        .into_iter()
        .flatten()
        .any(|f| f.contains('\0'))
    {
        return Err(ApiError::bad_request(
            "invalid_query",
            "Filters must not contain NUL characters.",
        ));
    }
    Ok(q)
}

/// Log lines of a function (stdout/stderr, uncaught errors), newest first.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/functions/{slug}/logs", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("slug" = String, Path, description = "Function slug"), LogQuery),
    responses((status = 200, body = [logs::LogEntry]), (status = 404, body = ApiError)))]
pub async fn function_logs(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(params): Path<(String, String)>,
    q: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<logs::LogEntry>>> {
    let (_, slug) = params;
    let slug = path_slug(&slug)?;
    let q = log_query(q)?;
    let t = &admin.tenant.project;
    let mut entries = logs::query_logs(&app.platform, t.id, slug.as_str(), &q).await?;
    if q.invocation_id.is_none() && q.request_id.is_none() {
        let since = q
            .since
            .unwrap_or_else(|| chrono::Utc::now() - chrono::Duration::days(1));
        match app
            .functions
            .runtime
            .provider_logs(t.id, &t.project_ref, slug.as_str(), since)
            .await
        {
            Ok(more) => entries.extend(more.into_iter().filter(|l| {
                q.level.as_ref().is_none_or(|lv| *lv == l.level)
                    && q.search
                        .as_ref()
                        .is_none_or(|s| l.message.contains(s.as_str()))
            })),
            Err(error) => tracing::warn!(%error, "could not read the provider's logs"),
        }
    }
    Ok(Json(entries))
}

/// Invocations of a function (status, duration, version, request id), newest first.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/functions/{slug}/invocations", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("slug" = String, Path, description = "Function slug"), LogQuery),
    responses((status = 200, body = [logs::InvocationEntry]), (status = 404, body = ApiError)))]
pub async fn function_invocations(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(params): Path<(String, String)>,
    q: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<logs::InvocationEntry>>> {
    let (_, slug) = params;
    let slug = path_slug(&slug)?;
    let q = log_query(q)?;
    Ok(Json(
        logs::query_invocations(&app.platform, admin.tenant.project.id, slug.as_str(), &q).await?,
    ))
}

/// Successful invocations counted per second instead of recorded one by one
/// (beyond `FERROBASE_FUNCTIONS_RECORD_EACH_PER_SEC` per second, those that
/// printed nothing), newest first.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/functions/{slug}/invocation-counts", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("slug" = String, Path, description = "Function slug"), logs::CountQuery),
    responses((status = 200, body = [logs::InvocationCount]), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn function_invocation_counts(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(params): Path<(String, String)>,
    q: Result<Query<logs::CountQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Vec<logs::InvocationCount>>> {
    let (_, slug) = params;
    let slug = path_slug(&slug)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    Ok(Json(
        logs::query_counts(&app.platform, admin.tenant.project.id, slug.as_str(), &q).await?,
    ))
}

/// The project's function secrets: names and digests, never values.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/functions/secrets", tag = "functions",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, body = [SecretInfo])))]
pub async fn list_secrets(
    State(app): State<AppState>,
    admin: ProjectAdmin,
) -> ApiResult<Json<Vec<SecretInfo>>> {
    Ok(Json(
        store::list_secrets(&app.platform, admin.tenant.project.id).await?,
    ))
}

/// Body of `POST /admin/v1/functions/secrets`: `{"NAME": "value", …}` or
/// `[{"name": "NAME", "value": "value"}, …]` (Supabase's shape).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SetSecrets {
    /// Name → value.
    #[schema(value_type = Object)]
    Map(BTreeMap<String, String>),
    /// A list of pairs.
    List(Vec<SecretPair>),
}

/// One secret to set.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SecretPair {
    /// Variable name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// Most secrets per project.
const MAX_SECRETS: usize = 100;
/// Largest secret value, in bytes.
const MAX_SECRET_BYTES: usize = 64 * 1024;

/// Create or replace secrets (injected as environment variables; running functions restart with them).
#[utoipa::path(post, path = "/p/{ref}/admin/v1/functions/secrets", tag = "functions",
    params(("ref" = String, Path, description = "Project ref")),
    request_body = SetSecrets,
    responses((status = 200, body = [SecretInfo]), (status = 400, body = ApiError)))]
pub async fn set_secrets(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    AppJson(body): AppJson<SetSecrets>,
) -> ApiResult<Json<Vec<SecretInfo>>> {
    let pairs: Vec<(String, String)> = match body {
        SetSecrets::Map(m) => m.into_iter().collect(),
        SetSecrets::List(l) => l.into_iter().map(|p| (p.name, p.value)).collect(),
    };
    if pairs.is_empty() || pairs.len() > MAX_SECRETS {
        return Err(ApiError::bad_request(
            "invalid_secret",
            format!("Send 1 to {MAX_SECRETS} secrets."),
        ));
    }
    let mut parsed = Vec::with_capacity(pairs.len());
    for (name, value) in pairs {
        let name = SecretName::parse(&name)
            .map_err(|e| ApiError::bad_request("invalid_secret", e.to_string()))?;
        if value.len() > MAX_SECRET_BYTES || value.contains('\0') {
            return Err(ApiError::bad_request(
                "invalid_secret",
                format!(
                    "The value of {} is too long or contains NUL.",
                    name.as_str()
                ),
            ));
        }
        parsed.push((name, value));
    }
    let project = admin.tenant.project.id;
    let existing = store::list_secrets(&app.platform, project).await?;
    let new_names = parsed
        .iter()
        .filter(|(n, _)| !existing.iter().any(|e| e.name == n.as_str()))
        .count();
    if existing.len() + new_names > MAX_SECRETS {
        return Err(ApiError::bad_request(
            "invalid_secret",
            format!("A project has at most {MAX_SECRETS} secrets."),
        ));
    }
    store::set_secrets(&app.platform, project, &parsed).await?;
    app.functions.invalidate(project, None);
    let names: Vec<&str> = parsed.iter().map(|(n, _)| n.as_str()).collect();
    app.platform
        .audit(
            &admin.actor,
            "function.secrets.set",
            &admin.tenant.project.project_ref,
            json!({"names": names}),
        )
        .await;
    Ok(Json(store::list_secrets(&app.platform, project).await?))
}

/// Delete one secret.
#[utoipa::path(delete, path = "/p/{ref}/admin/v1/functions/secrets/{name}", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("name" = String, Path, description = "Secret name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ApiError)))]
pub async fn delete_secret(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(params): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, name) = params;
    if name.contains('\0') {
        return Err(ApiError::bad_request(
            "invalid_secret",
            "A secret name has no NUL characters.",
        ));
    }
    let project = admin.tenant.project.id;
    store::delete_secret(&app.platform, project, &name).await?;
    app.functions.invalidate(project, None);
    app.platform
        .audit(
            &admin.actor,
            "function.secrets.delete",
            &admin.tenant.project.project_ref,
            json!({"name": name}),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Schedules of a function.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/functions/{slug}/schedules", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("slug" = String, Path, description = "Function slug")),
    responses((status = 200, body = [schedule::ScheduleInfo]), (status = 404, body = ApiError)))]
pub async fn list_schedules(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(params): Path<(String, String)>,
) -> ApiResult<Json<Vec<schedule::ScheduleInfo>>> {
    let (_, slug) = params;
    let slug = path_slug(&slug)?;
    Ok(Json(
        schedule::list(&app.platform, admin.tenant.project.id, &slug).await?,
    ))
}

/// Create a cron schedule that invokes the function (`POST` with `body` as JSON, as the service role).
#[utoipa::path(post, path = "/p/{ref}/admin/v1/functions/{slug}/schedules", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("slug" = String, Path, description = "Function slug")),
    request_body = schedule::ScheduleRequest,
    responses((status = 201, body = schedule::ScheduleInfo), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
pub async fn create_schedule(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(params): Path<(String, String)>,
    AppJson(req): AppJson<schedule::ScheduleRequest>,
) -> Answer<schedule::ScheduleInfo> {
    let (_, slug) = params;
    let slug = path_slug(&slug)?;
    let info = schedule::create(&app.platform, admin.tenant.project.id, &slug, &req).await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Change a schedule (cron, body, enabled).
#[utoipa::path(put, path = "/p/{ref}/admin/v1/functions/{slug}/schedules/{name}", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("slug" = String, Path, description = "Function slug"), ("name" = String, Path, description = "Schedule name")),
    request_body = schedule::ScheduleRequest,
    responses((status = 200, body = schedule::ScheduleInfo), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn update_schedule(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(params): Path<(String, String, String)>,
    AppJson(req): AppJson<schedule::ScheduleRequest>,
) -> ApiResult<Json<schedule::ScheduleInfo>> {
    let (_, slug, name) = params;
    let slug = path_slug(&slug)?;
    Ok(Json(
        schedule::update(&app.platform, admin.tenant.project.id, &slug, &name, &req).await?,
    ))
}

/// Delete a schedule.
#[utoipa::path(delete, path = "/p/{ref}/admin/v1/functions/{slug}/schedules/{name}", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("slug" = String, Path, description = "Function slug"), ("name" = String, Path, description = "Schedule name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ApiError)))]
pub async fn delete_schedule(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(params): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let (_, slug, name) = params;
    let slug = path_slug(&slug)?;
    schedule::delete(&app.platform, admin.tenant.project.id, &slug, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Run history of a schedule (one row per tick, with status or error), newest first.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/functions/{slug}/schedules/{name}/runs", tag = "functions",
    params(("ref" = String, Path, description = "Project ref"), ("slug" = String, Path, description = "Function slug"), ("name" = String, Path, description = "Schedule name")),
    responses((status = 200, body = [schedule::RunInfo]), (status = 404, body = ApiError)))]
pub async fn schedule_runs(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(params): Path<(String, String, String)>,
) -> ApiResult<Json<Vec<schedule::RunInfo>>> {
    let (_, slug, name) = params;
    let slug = path_slug(&slug)?;
    Ok(Json(
        schedule::runs(&app.platform, admin.tenant.project.id, &slug, &name).await?,
    ))
}
