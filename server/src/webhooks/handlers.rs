//! `/p/{ref}/admin/v1/webhooks`: endpoints, secrets, deliveries, replay.
//! Thin: parse, call [`super::store`], answer. Every route takes
//! [`ProjectAdmin`] (the service-role key or a platform admin token).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::store::{self, Delivery, DeliveryFilter, Endpoint, EndpointChanges, InputError, Replay};
use crate::admin::ProjectAdmin;
use crate::error::{ApiError, ApiResult, AppJson};
use crate::outbound::OutboundPolicy;
use crate::state::AppState;

/// Endpoints one project may have.
pub const MAX_ENDPOINTS: i64 = 100;
/// Longest secret-rotation overlap.
const MAX_OVERLAP: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default secret-rotation overlap.
const DEFAULT_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// Body of `POST /admin/v1/webhooks`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// `http(s)` URL of the receiver; private addresses are refused unless
    /// `FERROBASE_WEBHOOK_ALLOW_PRIVATE` is set.
    pub url: String,
    /// Globs on message topics (`room:*`, `db:public:orders`) or emitted
    /// event types (`auth.user.*`); `*` matches any run of characters.
    pub events: Vec<String>,
    /// Default true.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Free text (at most 1024 characters).
    #[serde(default)]
    pub description: Option<String>,
}

/// Body of `PATCH /admin/v1/webhooks/{id}`: absent fields stay.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    /// New URL.
    pub url: Option<String>,
    /// New globs.
    pub events: Option<Vec<String>>,
    /// Enable (also clears the failure count) or disable (fails pending deliveries).
    pub enabled: Option<bool>,
    /// New description.
    pub description: Option<String>,
}

/// A created endpoint, with its secret (shown this once).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedEndpoint {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_…`: verify signatures with it. Not retrievable later (rotate to get a new one).
    pub secret: String,
}

/// Body of `POST /admin/v1/webhooks/{id}/rotate-secret` (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// How long the previous secret keeps signing too (default 86400, at most 604800; 0 = not at all).
    pub overlap_secs: Option<u64>,
}

/// Answer of a rotation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    /// The new `whsec_…` secret (shown this once).
    pub secret: String,
    /// Until when deliveries also carry a signature with the previous secret.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

/// `?status=&before=&limit=` of the deliveries listing (read as text and
/// checked here, so that bad values get the JSON error envelope).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeliveriesQuery {
    /// `pending`, `succeeded` or `failed`.
    pub status: Option<String>,
    /// Only deliveries created before this time (RFC 3339), for paging.
    pub before: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<String>,
}

/// Body of `POST /admin/v1/webhooks/{id}/replay`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayFailed {
    /// Replay every failed delivery created at or after this time (RFC 3339).
    pub since: DateTime<Utc>,
}

/// How many deliveries were queued again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// Count.
    pub replayed: u64,
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        let code = match &e {
            InputError::Url(crate::outbound::OutboundError::Forbidden(_)) => "url_not_allowed",
            InputError::Url(_) => "invalid_url",
            InputError::Events(_) => "invalid_events",
            InputError::Description => "invalid_description",
        };
        ApiError::bad_request(code, e.to_string())
    }
}

fn parse_id(s: &str, what: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(s)
        .map_err(|_| ApiError::bad_request("invalid_id", format!("{what} must be a UUID.")))
}

fn not_found() -> ApiError {
    ApiError::not_found("webhook_not_found", "No such webhook endpoint.")
}

fn policy(app: &AppState) -> OutboundPolicy {
    OutboundPolicy::for_webhooks(app.platform.config())
}

fn check_description(d: Option<&str>) -> Result<(), InputError> {
    match d {
        Some(d) if d.chars().count() > 1024 => Err(InputError::Description),
        _ => Ok(()),
    }
}

/// Re-reads the enabled-endpoint count into the control plane (the workers' index).
async fn sync(
    app: &AppState,
    admin: &ProjectAdmin,
    db: &deadpool_postgres::Object,
) -> ApiResult<()> {
    let n = store::enabled_count(&***db).await?;
    let control = app.platform.control().get().await?;
    store::sync_project(&**control, admin.tenant.project.id, n).await?;
    Ok(())
}

async fn audit(app: &AppState, admin: &ProjectAdmin, action: &str, id: Uuid) {
    app.platform
        .audit(
            &admin.actor,
            action,
            &admin.tenant.project.project_ref,
            json!({ "endpoint": id }),
        )
        .await;
}

/// Create a webhook endpoint; the answer carries its signing secret, once.
#[utoipa::path(post, path = "/p/{ref}/admin/v1/webhooks", tag = "webhooks", request_body = CreateEndpoint,
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 201, body = CreatedEndpoint), (status = 400, body = ApiError), (status = 401, body = ApiError),
              (status = 403, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn create_endpoint(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    AppJson(body): AppJson<CreateEndpoint>,
) -> ApiResult<(StatusCode, Json<CreatedEndpoint>)> {
    store::check_events(&body.events)?;
    check_description(body.description.as_deref())?;
    let url = store::check_url(&policy(&app), &body.url).await?;
    let db = app.project_pool(&admin.tenant).get().await?;
    let count: i64 = db
        .query_one("select count(*) from webhooks.endpoints", &[])
        .await?
        .get(0);
    if count >= MAX_ENDPOINTS {
        return Err(ApiError::conflict(
            "too_many_endpoints",
            format!("A project has at most {MAX_ENDPOINTS} webhook endpoints."),
        ));
    }
    let (endpoint, secret) = store::create(
        &**db,
        app.platform.secrets(),
        admin.tenant.project.id,
        store::NewEndpoint {
            url,
            events: body.events,
            enabled: body.enabled.unwrap_or(true),
            description: body.description.unwrap_or_default(),
        },
    )
    .await?;
    sync(&app, &admin, &db).await?;
    audit(&app, &admin, "webhook.create", endpoint.id).await;
    Ok((
        StatusCode::CREATED,
        Json(CreatedEndpoint { endpoint, secret }),
    ))
}

/// List the project's webhook endpoints (without secrets).
#[utoipa::path(get, path = "/p/{ref}/admin/v1/webhooks", tag = "webhooks",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, body = [Endpoint]), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list_endpoints(
    State(app): State<AppState>,
    admin: ProjectAdmin,
) -> ApiResult<Json<Vec<Endpoint>>> {
    let db = app.project_pool(&admin.tenant).get().await?;
    Ok(Json(store::list(&**db).await?))
}

/// One webhook endpoint.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/webhooks/{id}", tag = "webhooks",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = Endpoint), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn get_endpoint(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
) -> ApiResult<Json<Endpoint>> {
    let Path((_, id)) = path;
    let id = parse_id(&id, "The endpoint id")?;
    let db = app.project_pool(&admin.tenant).get().await?;
    store::get(&**db, id).await?.map(Json).ok_or_else(not_found)
}

/// Change an endpoint's URL, events, description, or enable/disable it.
#[utoipa::path(patch, path = "/p/{ref}/admin/v1/webhooks/{id}", tag = "webhooks", request_body = UpdateEndpoint,
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = Endpoint), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 422, body = ApiError)))]
pub async fn update_endpoint(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
    AppJson(body): AppJson<UpdateEndpoint>,
) -> ApiResult<Json<Endpoint>> {
    let Path((_, id)) = path;
    let id = parse_id(&id, "The endpoint id")?;
    if let Some(events) = &body.events {
        store::check_events(events)?;
    }
    check_description(body.description.as_deref())?;
    let url = match &body.url {
        Some(u) => Some(store::check_url(&policy(&app), u).await?),
        None => None,
    };
    let mut db = app.project_pool(&admin.tenant).get().await?;
    let tx = db.transaction().await?;
    let endpoint = store::update(
        &*tx,
        id,
        EndpointChanges {
            url,
            events: body.events,
            enabled: body.enabled,
            description: body.description,
        },
    )
    .await?
    .ok_or_else(not_found)?;
    tx.commit().await?;
    sync(&app, &admin, &db).await?;
    audit(&app, &admin, "webhook.update", id).await;
    Ok(Json(endpoint))
}

/// Delete an endpoint and its delivery log.
#[utoipa::path(delete, path = "/p/{ref}/admin/v1/webhooks/{id}", tag = "webhooks",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Endpoint id")),
    responses((status = 204, description = "Deleted"), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn delete_endpoint(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let Path((_, id)) = path;
    let id = parse_id(&id, "The endpoint id")?;
    let db = app.project_pool(&admin.tenant).get().await?;
    if !store::delete(&**db, id).await? {
        return Err(not_found());
    }
    sync(&app, &admin, &db).await?;
    audit(&app, &admin, "webhook.delete", id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the signing secret. During the overlap, deliveries carry
/// signatures with both the new and the previous secret.
#[utoipa::path(post, path = "/p/{ref}/admin/v1/webhooks/{id}/rotate-secret", tag = "webhooks", request_body = RotateSecret,
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Endpoint id")),
    responses((status = 200, body = RotatedSecret), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn rotate_secret(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<RotatedSecret>> {
    let Path((_, id)) = path;
    let id = parse_id(&id, "The endpoint id")?;
    let body: RotateSecret = if body.iter().all(u8::is_ascii_whitespace) {
        RotateSecret::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request("invalid_body", "Expected {\"overlap_secs\": N} or no body.")
                .with_details(e.to_string())
        })?
    };
    let overlap = body
        .overlap_secs
        .map_or(DEFAULT_OVERLAP, Duration::from_secs);
    if overlap > MAX_OVERLAP {
        return Err(ApiError::bad_request(
            "invalid_overlap",
            "overlap_secs is at most 604800 (7 days).",
        ));
    }
    let db = app.project_pool(&admin.tenant).get().await?;
    let (secret, previous_secret_expires_at) = store::rotate_secret(
        &**db,
        app.platform.secrets(),
        admin.tenant.project.id,
        id,
        overlap,
    )
    .await?
    .ok_or_else(not_found)?;
    audit(&app, &admin, "webhook.rotate_secret", id).await;
    Ok(Json(RotatedSecret {
        secret,
        previous_secret_expires_at,
    }))
}

/// An endpoint's deliveries, newest first.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Endpoint id"), DeliveriesQuery),
    responses((status = 200, body = [Delivery]), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn list_deliveries(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
    Query(q): Query<DeliveriesQuery>,
) -> ApiResult<Json<Vec<Delivery>>> {
    let Path((_, id)) = path;
    let id = parse_id(&id, "The endpoint id")?;
    if let Some(s) = &q.status
        && !matches!(s.as_str(), "pending" | "succeeded" | "failed")
    {
        return Err(ApiError::bad_request(
            "invalid_status",
            "status is pending, succeeded or failed.",
        ));
    }
    let limit = match q.limit.as_deref() {
        None => 100,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=1000).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request("invalid_limit", "limit is between 1 and 1000.")
            })?,
    };
    let before = match q.before.as_deref() {
        None => None,
        Some(b) => Some(
            DateTime::parse_from_rfc3339(b)
                .map_err(|_| {
                    ApiError::bad_request("invalid_before", "before is an RFC 3339 time.")
                })?
                .with_timezone(&Utc),
        ),
    };
    let db = app.project_pool(&admin.tenant).get().await?;
    if store::get(&**db, id).await?.is_none() {
        return Err(not_found());
    }
    let filter = DeliveryFilter {
        status: q.status,
        before,
        limit,
    };
    Ok(Json(store::deliveries(&**db, id, &filter).await?))
}

/// One delivery, with its body and every attempt (status, latency, answer excerpt).
#[utoipa::path(get, path = "/p/{ref}/admin/v1/webhooks/{id}/deliveries/{delivery}", tag = "webhooks",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Endpoint id"),
           ("delivery" = String, Path, description = "Delivery id")),
    responses((status = 200, body = Delivery), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn get_delivery(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String, String)>,
) -> ApiResult<Json<Delivery>> {
    let Path((_, id, delivery)) = path;
    let id = parse_id(&id, "The endpoint id")?;
    let delivery = parse_id(&delivery, "The delivery id")?;
    let db = app.project_pool(&admin.tenant).get().await?;
    store::delivery_detail(&**db, id, delivery)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("delivery_not_found", "No such delivery."))
}

async fn enabled_endpoint(db: &deadpool_postgres::Object, id: Uuid) -> ApiResult<()> {
    match store::get(&***db, id).await? {
        None => Err(not_found()),
        Some(e) if !e.enabled => Err(ApiError::conflict(
            "endpoint_disabled",
            "The endpoint is disabled; enable it before replaying.",
        )),
        Some(_) => Ok(()),
    }
}

/// Send one delivery again (same `webhook-id`), now, with a fresh retry schedule.
#[utoipa::path(post, path = "/p/{ref}/admin/v1/webhooks/{id}/deliveries/{delivery}/replay", tag = "webhooks",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Endpoint id"),
           ("delivery" = String, Path, description = "Delivery id")),
    responses((status = 202, body = Replayed), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
pub async fn replay_delivery(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String, String)>,
) -> ApiResult<(StatusCode, Json<Replayed>)> {
    let Path((_, id, delivery)) = path;
    let id = parse_id(&id, "The endpoint id")?;
    let delivery = parse_id(&delivery, "The delivery id")?;
    let db = app.project_pool(&admin.tenant).get().await?;
    enabled_endpoint(&db, id).await?;
    let n = store::replay(&**db, id, Replay::One(delivery)).await?;
    if n == 0 {
        return match store::delivery_detail(&**db, id, delivery).await? {
            None => Err(ApiError::not_found(
                "delivery_not_found",
                "No such delivery.",
            )),
            Some(_) => Err(ApiError::conflict(
                "delivery_pending",
                "The delivery is still pending; it will be attempted anyway.",
            )),
        };
    }
    sync(&app, &admin, &db).await?;
    audit(&app, &admin, "webhook.replay", id).await;
    Ok((StatusCode::ACCEPTED, Json(Replayed { replayed: n })))
}

/// Send again every failed delivery of the endpoint created since a time.
#[utoipa::path(post, path = "/p/{ref}/admin/v1/webhooks/{id}/replay", tag = "webhooks", request_body = ReplayFailed,
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Endpoint id")),
    responses((status = 202, body = Replayed), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError), (status = 422, body = ApiError)))]
pub async fn replay_failed(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
    AppJson(body): AppJson<ReplayFailed>,
) -> ApiResult<(StatusCode, Json<Replayed>)> {
    let Path((_, id)) = path;
    let id = parse_id(&id, "The endpoint id")?;
    let db = app.project_pool(&admin.tenant).get().await?;
    enabled_endpoint(&db, id).await?;
    let n = store::replay(&**db, id, Replay::FailedSince(body.since)).await?;
    sync(&app, &admin, &db).await?;
    audit(&app, &admin, "webhook.replay", id).await;
    Ok((StatusCode::ACCEPTED, Json(Replayed { replayed: n })))
}
