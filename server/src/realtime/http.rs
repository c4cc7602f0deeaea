//! HTTP routes of the hub: the Socket.IO endpoint, `POST /realtime/v1/messages`
//! (publish from backends and functions) and the admin API
//! `/admin/v1/realtime/channels` and `/admin/v1/realtime/changes`.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use serde_json::{Value, json};

use super::PublishInput;
use super::store::{self, ChangeTable, ChannelDef, ChannelInput};
use crate::admin::ProjectAdmin;
use crate::error::{ApiError, ApiResult, AppJson};
use crate::state::AppState;
use crate::tenant::{Caller, ProjectCtx};

/// The Socket.IO endpoint relative to a project (`/p/{ref}`): Engine.IO reads
/// its own bodies (polling) or upgrades the connection (WebSocket).
pub fn socket_io(app: &AppState) -> Router<AppState> {
    let socket_io = tower::ServiceBuilder::new()
        .layer(app.realtime.layer())
        .service(tower::service_fn(|_req: axum::extract::Request| async {
            Ok::<_, std::convert::Infallible>(axum::response::IntoResponse::into_response(
                ApiError::not_found("not_found", "Not a Socket.IO request."),
            ))
        }));
    Router::new()
        .route_service("/realtime/v1/socket.io", socket_io.clone())
        .route_service("/realtime/v1/socket.io/", socket_io)
}

/// The JSON routes relative to a project: HTTP publish and `/admin/v1/realtime`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/realtime/v1/messages", axum::routing::post(publish))
        .route(
            "/admin/v1/realtime/channels",
            get(list_channels).post(create_channel),
        )
        .route(
            "/admin/v1/realtime/channels/{id}",
            get(get_channel)
                .patch(update_channel)
                .delete(delete_channel),
        )
        .route("/admin/v1/realtime/changes", get(list_changes))
        .route(
            "/admin/v1/realtime/changes/{schema}/{table}",
            put(put_change).delete(delete_change),
        )
}

async fn owner_client(
    app: &AppState,
    admin: &ProjectAdmin,
) -> ApiResult<deadpool_postgres::Object> {
    Ok(app.project_pool(&admin.tenant).get().await?)
}

/// `POST /p/{ref}/realtime/v1/messages`: publishes like `realtime:publish`.
#[utoipa::path(post, path = "/p/{ref}/realtime/v1/messages", tag = "realtime", request_body = PublishInput,
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 201, description = "{ok, messageId}"), (status = 400, body = ApiError),
        (status = 401, body = ApiError), (status = 403, body = ApiError), (status = 404, body = ApiError),
        (status = 413, body = ApiError), (status = 429, body = ApiError)))]
pub async fn publish(
    State(app): State<AppState>,
    ProjectCtx(tenant): ProjectCtx,
    caller: Caller,
    AppJson(input): AppJson<PublishInput>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let max = app.platform.config().realtime.realtime_max_message_bytes;
    let hub = app.realtime.inner();
    hub.take_project_event(tenant.project.id).map_err(|wait| {
        let per_sec = hub.config().realtime_max_project_events_per_sec;
        super::limits::project_rate_limited(wait, per_sec)
    })?;
    let m = super::publish(&app, &tenant, &caller, &input, max).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"ok": true, "messageId": m.id.to_string()})),
    ))
}

/// `GET /p/{ref}/admin/v1/realtime/channels`.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/realtime/channels", tag = "realtime",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, body = [ChannelDef]), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list_channels(
    State(app): State<AppState>,
    admin: ProjectAdmin,
) -> ApiResult<Json<Vec<ChannelDef>>> {
    let c = owner_client(&app, &admin).await?;
    Ok(Json(store::list_channels(&c).await?))
}

/// `POST /p/{ref}/admin/v1/realtime/channels`.
#[utoipa::path(post, path = "/p/{ref}/admin/v1/realtime/channels", tag = "realtime", request_body = ChannelInput,
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 201, body = ChannelDef), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
pub async fn create_channel(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    AppJson(input): AppJson<ChannelInput>,
) -> ApiResult<(StatusCode, Json<ChannelDef>)> {
    let c = owner_client(&app, &admin).await?;
    let def = store::create_channel(&c, &input).await?;
    audit(
        &app,
        &admin,
        "realtime.channel.create",
        json!({ "pattern": def.pattern }),
    )
    .await;
    Ok((StatusCode::CREATED, Json(def)))
}

/// Records a realtime administration change in the platform audit log.
async fn audit(app: &AppState, admin: &ProjectAdmin, action: &str, details: serde_json::Value) {
    app.platform
        .audit(
            &admin.actor,
            action,
            &admin.tenant.project.project_ref,
            details,
        )
        .await;
}

fn channel_id(id: &str) -> ApiResult<uuid::Uuid> {
    uuid::Uuid::parse_str(id)
        .map_err(|_| ApiError::not_found("channel_not_found", "No such channel."))
}

fn channel_missing() -> ApiError {
    ApiError::not_found("channel_not_found", "No such channel.")
}

/// `GET /p/{ref}/admin/v1/realtime/channels/{id}`.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/realtime/channels/{id}", tag = "realtime",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Channel id")),
    responses((status = 200, body = ChannelDef), (status = 404, body = ApiError)))]
pub async fn get_channel(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
) -> ApiResult<Json<ChannelDef>> {
    let id = channel_id(&path.0.1)?;
    let c = owner_client(&app, &admin).await?;
    store::get_channel(&c, id)
        .await?
        .map(Json)
        .ok_or_else(channel_missing)
}

/// `PATCH /p/{ref}/admin/v1/realtime/channels/{id}`.
#[utoipa::path(patch, path = "/p/{ref}/admin/v1/realtime/channels/{id}", tag = "realtime", request_body = ChannelInput,
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Channel id")),
    responses((status = 200, body = ChannelDef), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn update_channel(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
    AppJson(input): AppJson<ChannelInput>,
) -> ApiResult<Json<ChannelDef>> {
    let id = channel_id(&path.0.1)?;
    let c = owner_client(&app, &admin).await?;
    let def = store::update_channel(&c, id, &input)
        .await?
        .ok_or_else(channel_missing)?;
    audit(
        &app,
        &admin,
        "realtime.channel.update",
        json!({ "pattern": def.pattern }),
    )
    .await;
    Ok(Json(def))
}

/// `DELETE /p/{ref}/admin/v1/realtime/channels/{id}`.
#[utoipa::path(delete, path = "/p/{ref}/admin/v1/realtime/channels/{id}", tag = "realtime",
    params(("ref" = String, Path, description = "Project ref"), ("id" = String, Path, description = "Channel id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ApiError)))]
pub async fn delete_channel(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let id = channel_id(&path.0.1)?;
    let c = owner_client(&app, &admin).await?;
    if store::delete_channel(&c, id).await? {
        audit(&app, &admin, "realtime.channel.delete", json!({ "id": id })).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(channel_missing())
    }
}

/// `GET /p/{ref}/admin/v1/realtime/changes`: tables whose changes are captured.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/realtime/changes", tag = "realtime",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, body = [ChangeTable]), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list_changes(
    State(app): State<AppState>,
    admin: ProjectAdmin,
) -> ApiResult<Json<Vec<ChangeTable>>> {
    let c = owner_client(&app, &admin).await?;
    Ok(Json(store::change_tables(&c).await?))
}

/// Which operations to capture (all three when omitted).
#[derive(Debug, Clone, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeOps {
    /// Capture inserts (default true).
    #[serde(default = "yes")]
    pub insert: bool,
    /// Capture updates (default true).
    #[serde(default = "yes")]
    pub update: bool,
    /// Capture deletes (default true).
    #[serde(default = "yes")]
    pub delete: bool,
}

fn yes() -> bool {
    true
}

fn check_ident(name: &str) -> ApiResult<()> {
    if name.is_empty() || name.len() > 63 || name.chars().any(|c| c.is_control()) {
        return Err(ApiError::bad_request(
            "invalid_name",
            format!("{name:?} is not a valid identifier."),
        ));
    }
    Ok(())
}

/// `PUT /p/{ref}/admin/v1/realtime/changes/{schema}/{table}`: captures a
/// table's inserts/updates/deletes as events on `db:{schema}:{table}`.
#[utoipa::path(put, path = "/p/{ref}/admin/v1/realtime/changes/{schema}/{table}", tag = "realtime", request_body = ChangeOps,
    params(("ref" = String, Path, description = "Project ref"), ("schema" = String, Path, description = "Schema"),
        ("table" = String, Path, description = "Table")),
    responses((status = 200, body = ChangeTable), (status = 400, body = ApiError), (status = 404, body = ApiError)))]
pub async fn put_change(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String, String)>,
    AppJson(ops): AppJson<ChangeOps>,
) -> ApiResult<Json<ChangeTable>> {
    let Path((_, schema, table)) = path;
    check_ident(&schema)?;
    check_ident(&table)?;
    if [
        "realtime",
        "auth",
        "storage",
        "_ferrobase",
        "pg_catalog",
        "information_schema",
    ]
    .contains(&schema.as_str())
    {
        return Err(ApiError::bad_request(
            "reserved_schema",
            format!("Changes of the platform schema {schema:?} cannot be captured."),
        ));
    }
    let t = ChangeTable {
        schema,
        table,
        insert: ops.insert,
        update: ops.update,
        delete: ops.delete,
    };
    let mut c = owner_client(&app, &admin).await?;
    let client: &mut tokio_postgres::Client = &mut c;
    store::set_change_table(client, &t).await?;
    audit(&app, &admin, "realtime.changes.set", json!(t)).await;
    Ok(Json(t))
}

/// `DELETE /p/{ref}/admin/v1/realtime/changes/{schema}/{table}`.
#[utoipa::path(delete, path = "/p/{ref}/admin/v1/realtime/changes/{schema}/{table}", tag = "realtime",
    params(("ref" = String, Path, description = "Project ref"), ("schema" = String, Path, description = "Schema"),
        ("table" = String, Path, description = "Table")),
    responses((status = 204, description = "No longer captured"), (status = 404, body = ApiError)))]
pub async fn delete_change(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    let Path((_, schema, table)) = path;
    let mut c = owner_client(&app, &admin).await?;
    let client: &mut tokio_postgres::Client = &mut c;
    if store::remove_change_table(client, &schema, &table).await? {
        let details = json!({ "schema": schema, "table": table });
        audit(&app, &admin, "realtime.changes.remove", details).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "changes_not_enabled",
            format!("Changes of {schema}.{table} are not captured."),
        ))
    }
}
