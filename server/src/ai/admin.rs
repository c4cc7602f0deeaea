//! `/p/{ref}/admin/v1/ai/…`: the project's gateway settings, providers and
//! usage, for the dashboard and the SDK. Needs the service-role key or a
//! platform admin token ([`ProjectAdmin`]); errors use the platform envelope.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde_json::{Map, Value, json};

use super::settings::{self, AiSettings, ProviderInput, ProviderView};
use crate::admin::ProjectAdmin;
use crate::error::{ApiError, ApiResult, AppJson};
use crate::outbound::{OutboundError, OutboundPolicy};
use crate::state::AppState;

/// `GET /admin/v1/ai/settings`.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/ai/settings", tag = "ai-admin",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, body = AiSettings), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn get_settings(
    State(app): State<AppState>,
    admin: ProjectAdmin,
) -> ApiResult<Json<AiSettings>> {
    Ok(Json(
        settings::load_settings(&app.platform, admin.tenant.project.id).await?,
    ))
}

/// `PUT /admin/v1/ai/settings`: changes the settings given, keeps the others.
#[utoipa::path(put, path = "/p/{ref}/admin/v1/ai/settings", tag = "ai-admin",
    params(("ref" = String, Path, description = "Project ref")),
    request_body = AiSettings,
    responses((status = 200, body = AiSettings), (status = 400, body = ApiError), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn put_settings(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    AppJson(patch): AppJson<Map<String, Value>>,
) -> ApiResult<Json<AiSettings>> {
    let s = settings::update_settings(&app.platform, admin.tenant.project.id, &patch).await?;
    app.platform
        .audit(
            &admin.actor,
            "ai.settings.update",
            &admin.tenant.project.project_ref,
            json!({"fields": patch.keys().collect::<Vec<_>>()}),
        )
        .await;
    Ok(Json(s))
}

/// `GET /admin/v1/ai/providers`: providers in fallback order (keys never shown).
#[utoipa::path(get, path = "/p/{ref}/admin/v1/ai/providers", tag = "ai-admin",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, body = [ProviderView]), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list_providers(
    State(app): State<AppState>,
    admin: ProjectAdmin,
) -> ApiResult<Json<Vec<ProviderView>>> {
    Ok(Json(
        settings::list_providers(&app.platform, admin.tenant.project.id).await?,
    ))
}

/// `POST /admin/v1/ai/providers`: adds an upstream (key and headers stored encrypted).
#[utoipa::path(post, path = "/p/{ref}/admin/v1/ai/providers", tag = "ai-admin",
    params(("ref" = String, Path, description = "Project ref")),
    request_body = ProviderInput,
    responses((status = 201, body = ProviderView), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
pub async fn create_provider(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    AppJson(input): AppJson<ProviderInput>,
) -> ApiResult<(StatusCode, Json<ProviderView>)> {
    check_reachable(&app, input.base_url.as_deref()).await?;
    let p = settings::create_provider(&app.platform, admin.tenant.project.id, input).await?;
    app.platform
        .audit(
            &admin.actor,
            "ai.provider.create",
            &admin.tenant.project.project_ref,
            json!({"name": p.name, "base_url": p.base_url}),
        )
        .await;
    Ok((StatusCode::CREATED, Json(p)))
}

/// `PATCH /admin/v1/ai/providers/{name}`: changes the fields given (`"api_key": null` removes the key).
#[utoipa::path(patch, path = "/p/{ref}/admin/v1/ai/providers/{name}", tag = "ai-admin",
    params(("ref" = String, Path, description = "Project ref"), ("name" = String, Path, description = "Provider name")),
    request_body = ProviderInput,
    responses((status = 200, body = ProviderView), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn update_provider(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(path): Path<(String, String)>,
    AppJson(input): AppJson<ProviderInput>,
) -> ApiResult<Json<ProviderView>> {
    check_reachable(&app, input.base_url.as_deref()).await?;
    let name = path.1;
    let p = settings::update_provider(&app.platform, admin.tenant.project.id, &name, input).await?;
    app.platform
        .audit(
            &admin.actor,
            "ai.provider.update",
            &admin.tenant.project.project_ref,
            json!({"name": name}),
        )
        .await;
    Ok(Json(p))
}

/// `DELETE /admin/v1/ai/providers/{name}`.
#[utoipa::path(delete, path = "/p/{ref}/admin/v1/ai/providers/{name}", tag = "ai-admin",
    params(("ref" = String, Path, description = "Project ref"), ("name" = String, Path, description = "Provider name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ApiError)))]
pub async fn delete_provider(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Path(path): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let name = path.1;
    settings::delete_provider(&app.platform, admin.tenant.project.id, &name).await?;
    app.platform
        .audit(
            &admin.actor,
            "ai.provider.delete",
            &admin.tenant.project.project_ref,
            json!({"name": name}),
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

fn parse_time(name: &str, text: &str) -> ApiResult<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("`{name}` must be a date (YYYY-MM-DD) or an RFC 3339 time."),
            )
        })
}

/// `GET /admin/v1/ai/usage?from&to&group_by=user|model|day`: calls, tokens
/// and errors in `[from, to)` (default: the last 30 days), in total and per group.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/ai/usage", tag = "ai-admin",
    params(("ref" = String, Path, description = "Project ref"),
        ("from" = Option<String>, Query, description = "Start (date or RFC 3339), inclusive"),
        ("to" = Option<String>, Query, description = "End (date or RFC 3339), exclusive"),
        ("group_by" = Option<String>, Query, description = "`user`, `model` or `day`")),
    responses((status = 200, description = "Usage totals and groups"), (status = 400, body = ApiError), (status = 401, body = ApiError)))]
pub async fn usage(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    let (mut from, mut to, mut group_by) = (None, None, None);
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "from" => from = Some(parse_time("from", &v)?),
            "to" => to = Some(parse_time("to", &v)?),
            "group_by" => group_by = Some(v.into_owned()),
            other => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("Unknown parameter `{other}`: use from, to and group_by."),
                ));
            }
        }
    }
    let to = to.unwrap_or_else(|| Utc::now() + TimeDelta::seconds(1));
    let from = from.unwrap_or(to - TimeDelta::days(30));
    // A fixed list of expressions: never user text in the SQL.
    let key = match group_by.as_deref() {
        None => "'all'",
        Some("user") => "coalesce(user_id, role)",
        Some("model") => "model",
        Some("day") => "to_char(at at time zone 'utc', 'YYYY-MM-DD')",
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("`group_by` must be user, model or day, not {other:?}."),
            ));
        }
    };
    let client = app.project_pool(&admin.tenant).get().await?;
    let rows = client
        .query(
            &format!(
                "select {key} as key, count(*)::bigint, coalesce(sum(prompt_tokens), 0)::bigint,
                   coalesce(sum(completion_tokens), 0)::bigint, coalesce(sum(total_tokens), 0)::bigint,
                   count(*) filter (where estimated)::bigint, count(*) filter (where status >= 400)::bigint,
                   coalesce(avg(latency_ms), 0)::float8, avg(ttft_ms)::float8
                 from ai.usage where at >= $1 and at < $2 group by 1 order by 1"
            ),
            &[&from, &to],
        )
        .await?;
    let groups: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "key": r.get::<_, String>(0),
                "requests": r.get::<_, i64>(1),
                "prompt_tokens": r.get::<_, i64>(2),
                "completion_tokens": r.get::<_, i64>(3),
                "total_tokens": r.get::<_, i64>(4),
                "estimated_requests": r.get::<_, i64>(5),
                "errors": r.get::<_, i64>(6),
                "avg_latency_ms": r.get::<_, f64>(7),
                "avg_ttft_ms": r.get::<_, Option<f64>>(8),
            })
        })
        .collect();
    let sum = |k: &str| groups.iter().filter_map(|g| g[k].as_i64()).sum::<i64>();
    let totals = json!({
        "requests": sum("requests"),
        "prompt_tokens": sum("prompt_tokens"),
        "completion_tokens": sum("completion_tokens"),
        "total_tokens": sum("total_tokens"),
        "estimated_requests": sum("estimated_requests"),
        "errors": sum("errors"),
    });
    Ok(Json(json!({
        "from": from,
        "to": to,
        "group_by": group_by,
        "totals": totals,
        "groups": if group_by.is_some() { Value::Array(groups) } else { Value::Array(vec![]) },
    })))
}

/// Refuses a provider `base_url` the outbound SSRF guard would refuse (an IP
/// literal, or a name resolving, in a private, loopback, link-local or
/// metadata range), so the admin learns it now rather than at the first call.
async fn check_reachable(app: &AppState, base_url: Option<&str>) -> ApiResult<()> {
    let Some(url) = base_url else { return Ok(()) };
    let policy = OutboundPolicy::from_config(app.platform.config());
    let checked = policy
        .check_url_when_saved(url.trim(), std::time::Duration::from_secs(3))
        .await;
    // Syntax and scheme errors are `parse_base_url`'s to report.
    match checked {
        Err(e @ OutboundError::Forbidden(_)) => Err(ApiError::bad_request(
            "invalid_provider",
            format!(
                "`base_url` is refused: {e}. Providers must be reachable on a public address \
                 (the operator can allow private networks with FERROBASE_OUTBOUND_ALLOW_NETS)."
            ),
        )),
        _ => Ok(()),
    }
}
