//! HTTP handlers of schema management (`/p/{ref}/admin/v1/…`), mounted by
//! [`crate::admin::routes`]. Each one: parse → build DDL ([`super::ddl`]) →
//! run it as the owner in one transaction → forget the data API's schema
//! cache → answer the new state.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ddl::{
    self, AlterTable, CreateIndex, CreatePolicy, CreateTable, Ident, writable_schema,
};
use super::{SchemaError, introspect};
use crate::admin::ProjectAdmin;
use crate::error::{ApiError, ApiResult, AppJson};
use crate::state::AppState;

/// Statement timeout of schema-management DDL.
const DDL_TIMEOUT: &str = "15s";

/// `?schema=` (and `?cascade=` for drops).
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SchemaQuery {
    /// Schema (default: `public` for a single object; all schemas for listings).
    pub schema: Option<String>,
    /// Drop dependent objects too.
    #[serde(default)]
    pub cascade: bool,
}

impl SchemaQuery {
    /// The schema a change applies to (default `public`), refused when the platform owns it.
    fn writable_schema(&self) -> Result<Ident, SchemaError> {
        writable_schema(self.schema.as_deref().unwrap_or("public"))
    }
}

/// Body of `PUT /admin/v1/tables/{table}/rls`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRls {
    /// Enable (true) or disable (false) row level security.
    pub enabled: bool,
    /// Also apply policies to the table owner (`FORCE ROW LEVEL SECURITY`).
    #[serde(default)]
    pub force: bool,
}

async fn read_client(app: &AppState, admin: &ProjectAdmin) -> ApiResult<deadpool_postgres::Object> {
    Ok(app.project_pool(&admin.tenant).get().await?)
}

fn listing_schema(q: &SchemaQuery) -> ApiResult<Option<String>> {
    match &q.schema {
        Some(s) => Ok(Some(Ident::parse(s, "schema")?.as_str().to_owned())),
        None => Ok(None),
    }
}

/// Runs `statements` as the owner in one transaction, then forgets the
/// project's data-API schema cache and audits the change.
async fn run_ddl(
    app: &AppState,
    admin: &ProjectAdmin,
    action: &str,
    statements: &[String],
) -> ApiResult<()> {
    let mut client = app.project_pool(&admin.tenant).get().await?;
    let tx = client.transaction().await?;
    tx.execute(
        "select set_config('statement_timeout', $1, true)",
        &[&DDL_TIMEOUT],
    )
    .await?;
    for s in statements {
        tx.batch_execute(s).await.map_err(super::db_error)?;
    }
    tx.commit().await.map_err(super::db_error)?;
    app.schema_caches.remove(admin.tenant.project.id);
    app.platform
        .audit(
            &admin.actor,
            action,
            &admin.tenant.project.project_ref,
            json!({ "statements": statements }),
        )
        .await;
    Ok(())
}

async fn one_table(
    app: &AppState,
    admin: &ProjectAdmin,
    schema: &str,
    table: &str,
) -> ApiResult<Value> {
    let client = read_client(app, admin).await?;
    let tables = introspect::tables(&**client, Some(schema), Some(table)).await?;
    tables
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .ok_or_else(|| SchemaError::NotFound(format!("No table {schema}.{table}.")).into())
}

/// List the project's schemas.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/schemas", tag = "project",
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, description = "[{name, owner, platform_owned}]"), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list_schemas(
    State(app): State<AppState>,
    admin: ProjectAdmin,
) -> ApiResult<Json<Value>> {
    let client = read_client(&app, &admin).await?;
    Ok(Json(introspect::schemas(&**client).await?))
}

/// List tables with columns, keys, indexes, RLS state, policies and row estimates.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/tables", tag = "project",
    params(("ref" = String, Path, description = "Project ref"), SchemaQuery),
    responses((status = 200, description = "Tables"), (status = 401, body = ApiError), (status = 403, body = ApiError)))]
pub async fn list_tables(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Query(q): Query<SchemaQuery>,
) -> ApiResult<Json<Value>> {
    let schema = listing_schema(&q)?;
    let client = read_client(&app, &admin).await?;
    Ok(Json(
        introspect::tables(&**client, schema.as_deref(), None).await?,
    ))
}

/// One table.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/tables/{table}", tag = "project",
    params(("ref" = String, Path, description = "Project ref"), ("table" = String, Path, description = "Table name"), SchemaQuery),
    responses((status = 200, description = "The table"), (status = 404, body = ApiError)))]
pub async fn get_table(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
    Query(q): Query<SchemaQuery>,
) -> ApiResult<Json<Value>> {
    let Path((_, table)) = path;
    let schema = Ident::parse(q.schema.as_deref().unwrap_or("public"), "schema")?;
    let table = Ident::parse(&table, "table")?;
    Ok(Json(
        one_table(&app, &admin, schema.as_str(), table.as_str()).await?,
    ))
}

/// Create a table from a typed definition (RLS enabled unless `rls: false`).
#[utoipa::path(post, path = "/p/{ref}/admin/v1/tables", tag = "project", request_body = CreateTable,
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 201, description = "The new table"), (status = 400, body = ApiError), (status = 409, body = ApiError)))]
pub async fn create_table(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    AppJson(def): AppJson<CreateTable>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let statements = {
        let client = read_client(&app, &admin).await?;
        ddl::create_table(&**client, &def).await?
    };
    run_ddl(&app, &admin, "schema.create_table", &statements).await?;
    let schema = def.schema.as_deref().unwrap_or("public");
    Ok((
        StatusCode::CREATED,
        Json(one_table(&app, &admin, schema, &def.name).await?),
    ))
}

/// Alter a table: add/drop/rename/retype columns, defaults, NOT NULL, foreign keys, rename.
#[utoipa::path(patch, path = "/p/{ref}/admin/v1/tables/{table}", tag = "project", request_body = AlterTable,
    params(("ref" = String, Path, description = "Project ref"), ("table" = String, Path, description = "Table name"), SchemaQuery),
    responses((status = 200, description = "The altered table"), (status = 400, body = ApiError)))]
pub async fn alter_table(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
    Query(q): Query<SchemaQuery>,
    AppJson(body): AppJson<AlterTable>,
) -> ApiResult<Json<Value>> {
    let Path((_, table)) = path;
    let schema = q.writable_schema()?;
    let table = Ident::parse(&table, "table")?;
    let statements = {
        let client = read_client(&app, &admin).await?;
        ddl::alter_table(&**client, &schema, &table, &body.actions).await?
    };
    run_ddl(&app, &admin, "schema.alter_table", &statements).await?;
    let name = body
        .actions
        .iter()
        .rev()
        .find_map(|a| match a {
            ddl::AlterAction::Rename { to } => Some(to.clone()),
            _ => None,
        })
        .unwrap_or_else(|| table.as_str().to_owned());
    Ok(Json(one_table(&app, &admin, schema.as_str(), &name).await?))
}

/// Drop a table (`?cascade=true` drops dependent objects too).
#[utoipa::path(delete, path = "/p/{ref}/admin/v1/tables/{table}", tag = "project",
    params(("ref" = String, Path, description = "Project ref"), ("table" = String, Path, description = "Table name"), SchemaQuery),
    responses((status = 204, description = "Dropped"), (status = 400, body = ApiError)))]
pub async fn drop_table(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
    Query(q): Query<SchemaQuery>,
) -> ApiResult<StatusCode> {
    let Path((_, table)) = path;
    let schema = q.writable_schema()?;
    let table = Ident::parse(&table, "table")?;
    let sql = format!(
        "drop table {}{}",
        ddl::qualified(&schema, &table),
        if q.cascade { " cascade" } else { "" }
    );
    run_ddl(&app, &admin, "schema.drop_table", &[sql]).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enable or disable row level security.
#[utoipa::path(put, path = "/p/{ref}/admin/v1/tables/{table}/rls", tag = "project", request_body = SetRls,
    params(("ref" = String, Path, description = "Project ref"), ("table" = String, Path, description = "Table name"), SchemaQuery),
    responses((status = 200, description = "The table"), (status = 400, body = ApiError)))]
pub async fn set_rls(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
    Query(q): Query<SchemaQuery>,
    AppJson(body): AppJson<SetRls>,
) -> ApiResult<Json<Value>> {
    let Path((_, table)) = path;
    let schema = q.writable_schema()?;
    let table = Ident::parse(&table, "table")?;
    let target = ddl::qualified(&schema, &table);
    let mut statements = vec![format!(
        "alter table {target} {} row level security",
        if body.enabled { "enable" } else { "disable" }
    )];
    statements.push(format!(
        "alter table {target} {} row level security",
        if body.force { "force" } else { "no force" }
    ));
    run_ddl(&app, &admin, "schema.set_rls", &statements).await?;
    Ok(Json(
        one_table(&app, &admin, schema.as_str(), table.as_str()).await?,
    ))
}

/// Create an index.
#[utoipa::path(post, path = "/p/{ref}/admin/v1/tables/{table}/indexes", tag = "project", request_body = CreateIndex,
    params(("ref" = String, Path, description = "Project ref"), ("table" = String, Path, description = "Table name"), SchemaQuery),
    responses((status = 201, description = "The table with its indexes"), (status = 400, body = ApiError)))]
pub async fn create_index(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
    Query(q): Query<SchemaQuery>,
    AppJson(body): AppJson<CreateIndex>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Path((_, table)) = path;
    let schema = q.writable_schema()?;
    let table = Ident::parse(&table, "table")?;
    let sql = ddl::create_index(&schema, &table, &body)?;
    run_ddl(&app, &admin, "schema.create_index", &[sql]).await?;
    Ok((
        StatusCode::CREATED,
        Json(one_table(&app, &admin, schema.as_str(), table.as_str()).await?),
    ))
}

/// Drop an index.
#[utoipa::path(delete, path = "/p/{ref}/admin/v1/indexes/{index}", tag = "project",
    params(("ref" = String, Path, description = "Project ref"), ("index" = String, Path, description = "Index name"), SchemaQuery),
    responses((status = 204, description = "Dropped"), (status = 400, body = ApiError)))]
pub async fn drop_index(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
    Query(q): Query<SchemaQuery>,
) -> ApiResult<StatusCode> {
    let Path((_, index)) = path;
    let schema = q.writable_schema()?;
    let index = Ident::parse(&index, "index")?;
    let sql = format!(
        "drop index {}{}",
        ddl::qualified(&schema, &index),
        if q.cascade { " cascade" } else { "" }
    );
    run_ddl(&app, &admin, "schema.drop_index", &[sql]).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a row level security policy.
#[utoipa::path(post, path = "/p/{ref}/admin/v1/tables/{table}/policies", tag = "project", request_body = CreatePolicy,
    params(("ref" = String, Path, description = "Project ref"), ("table" = String, Path, description = "Table name"), SchemaQuery),
    responses((status = 201, description = "The table with its policies"), (status = 400, body = ApiError)))]
pub async fn create_policy(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String)>,
    Query(q): Query<SchemaQuery>,
    AppJson(body): AppJson<CreatePolicy>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Path((_, table)) = path;
    let schema = q.writable_schema()?;
    let table = Ident::parse(&table, "table")?;
    let sql = ddl::create_policy(&schema, &table, &body)?;
    run_ddl(&app, &admin, "schema.create_policy", &[sql]).await?;
    Ok((
        StatusCode::CREATED,
        Json(one_table(&app, &admin, schema.as_str(), table.as_str()).await?),
    ))
}

/// Drop a policy.
#[utoipa::path(delete, path = "/p/{ref}/admin/v1/tables/{table}/policies/{policy}", tag = "project",
    params(("ref" = String, Path, description = "Project ref"), ("table" = String, Path, description = "Table name"),
           ("policy" = String, Path, description = "Policy name"), SchemaQuery),
    responses((status = 204, description = "Dropped"), (status = 400, body = ApiError)))]
pub async fn drop_policy(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    path: Path<(String, String, String)>,
    Query(q): Query<SchemaQuery>,
) -> ApiResult<StatusCode> {
    let Path((_, table, policy)) = path;
    let schema = q.writable_schema()?;
    let table = Ident::parse(&table, "table")?;
    let policy = Ident::parse(&policy, "policy")?;
    let sql = format!(
        "drop policy {} on {}",
        policy.q(),
        ddl::qualified(&schema, &table)
    );
    run_ddl(&app, &admin, "schema.drop_policy", &[sql]).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List views and materialized views.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/views", tag = "project",
    params(("ref" = String, Path, description = "Project ref"), SchemaQuery),
    responses((status = 200, description = "Views")))]
pub async fn list_views(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Query(q): Query<SchemaQuery>,
) -> ApiResult<Json<Value>> {
    let schema = listing_schema(&q)?;
    let client = read_client(&app, &admin).await?;
    Ok(Json(introspect::views(&**client, schema.as_deref()).await?))
}

/// List SQL functions and procedures (not those of extensions). Edge
/// functions live at `/admin/v1/functions` ([`crate::functions`]).
#[utoipa::path(get, path = "/p/{ref}/admin/v1/sql-functions", tag = "project",
    params(("ref" = String, Path, description = "Project ref"), SchemaQuery),
    responses((status = 200, description = "Functions")))]
pub async fn list_functions(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Query(q): Query<SchemaQuery>,
) -> ApiResult<Json<Value>> {
    let schema = listing_schema(&q)?;
    let client = read_client(&app, &admin).await?;
    Ok(Json(
        introspect::functions(&**client, schema.as_deref()).await?,
    ))
}

/// List user-defined triggers.
#[utoipa::path(get, path = "/p/{ref}/admin/v1/triggers", tag = "project",
    params(("ref" = String, Path, description = "Project ref"), SchemaQuery),
    responses((status = 200, description = "Triggers")))]
pub async fn list_triggers(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    Query(q): Query<SchemaQuery>,
) -> ApiResult<Json<Value>> {
    let schema = listing_schema(&q)?;
    let client = read_client(&app, &admin).await?;
    Ok(Json(
        introspect::triggers(&**client, schema.as_deref()).await?,
    ))
}
