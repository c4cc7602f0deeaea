//! `POST /p/{ref}/admin/v1/sql`: run SQL as the project owner.
//!
//! Each request gets its own connection (not a pooled one), so session state
//! a statement leaves behind (settings, temporary tables, prepared
//! statements) never leaks into the data API. The statements are checked by
//! [`super::guard`], then run in one transaction with a statement timeout;
//! parameters are bound (sent as text, typed by Postgres), never spliced in.
//! Rows come back as JSON objects, converted by Postgres (`to_json`), with a
//! row limit enforced by a portal, so a huge result is never produced.
//!
//! Bounds (issue 8): rows are streamed, never read whole, and reading stops
//! at `max_rows` or `FERROBASE_ADMIN_SQL_MAX_BYTES` of row data
//! (`truncated: true`), for every kind of statement (`FETCH`, `EXECUTE`,
//! `SHOW` included); at most `FERROBASE_ADMIN_SQL_CONCURRENCY` requests run
//! at once per project and node (else 429); and a statement that outlives
//! its timeout (say a PL/pgSQL loop that traps `query_canceled`) has its
//! backend terminated with `pg_terminate_backend` [`TERMINATE_GRACE_MS`]
//! after the deadline.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use bytes::BytesMut;
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio_postgres::types::{Format, FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{NoTls, Transaction};

use super::ProjectAdmin;
use super::guard::{self, GuardError, Statement};
use crate::error::{ApiError, ApiResult, AppJson};
use crate::state::AppState;

/// Default and maximum statement timeout.
const DEFAULT_TIMEOUT_MS: u64 = 15_000;
const MAX_TIMEOUT_MS: u64 = 60_000;
/// How long after the statement timeout a backend that is still busy is
/// terminated (the server-side timeout cancels first; this catches code that
/// traps the cancel).
pub const TERMINATE_GRACE_MS: u64 = 1_000;
/// Default and maximum number of rows returned per statement.
const DEFAULT_MAX_ROWS: usize = 1000;
const MAX_MAX_ROWS: usize = 50_000;

/// Body of `POST /admin/v1/sql`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One or more SQL statements separated by `;`.
    pub query: String,
    /// Values for `$1`, `$2` … (sent as text; Postgres converts them to the
    /// parameter's type). Objects and arrays are sent as JSON text.
    #[serde(default)]
    pub params: Vec<Value>,
    /// Run `EXPLAIN (ANALYZE, FORMAT JSON)` on each statement instead, in a
    /// transaction that is rolled back.
    #[serde(default)]
    pub explain: bool,
    /// Statement timeout in milliseconds (default 15000, at most 60000).
    pub timeout_ms: Option<u64>,
    /// Most rows returned per statement (default 1000).
    pub max_rows: Option<usize>,
}

/// A result column.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SqlColumn {
    /// Column name.
    pub name: String,
    /// Postgres type name (e.g. `int4`, `text`, `jsonb`).
    #[serde(rename = "type")]
    pub pg_type: String,
}

/// The outcome of one statement.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SqlResult {
    /// Result columns (empty for statements that return no rows).
    pub columns: Vec<SqlColumn>,
    /// Rows as objects keyed by column name.
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<Map<String, Value>>,
    /// Rows returned, or rows affected for INSERT/UPDATE/DELETE without RETURNING.
    pub row_count: u64,
    /// Whether more rows existed than `max_rows`.
    pub truncated: bool,
    /// Command, e.g. `SELECT`, `CREATE TABLE`.
    pub command: String,
}

/// A parameter sent in text format, whatever type Postgres inferred for it.
#[derive(Debug)]
struct TextParam(Option<String>);

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

fn text_param(v: &Value) -> TextParam {
    TextParam(match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    })
}

/// A value of a statement whose rows cannot be converted by Postgres (SHOW,
/// EXPLAIN, FETCH …): text-like, numeric scalar and JSON types are decoded.
struct AnyValue(Value);

impl<'a> FromSql<'a> for AnyValue {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let v = match *ty {
            Type::BOOL => Value::Bool(bool::from_sql(ty, raw)?),
            Type::INT2 => json!(i16::from_sql(ty, raw)?),
            Type::INT4 => json!(i32::from_sql(ty, raw)?),
            Type::INT8 => json!(i64::from_sql(ty, raw)?),
            Type::OID => json!(u32::from_sql(ty, raw)?),
            Type::FLOAT4 => json!(f32::from_sql(ty, raw)?),
            Type::FLOAT8 => json!(f64::from_sql(ty, raw)?),
            Type::JSON => serde_json::from_slice(raw)?,
            Type::JSONB => serde_json::from_slice(raw.get(1..).unwrap_or_default())?,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
                Value::String(String::from_utf8_lossy(raw).into_owned())
            }
            _ => Value::Null,
        };
        Ok(AnyValue(v))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(AnyValue(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Run SQL as the project owner (service-role key or platform admin).
///
/// Each statement is checked first and refused (`sql_refused`) when it
/// reaches outside the project. One statement answers one result object;
/// several answer an array of them. All statements run in one transaction.
#[utoipa::path(post, path = "/p/{ref}/admin/v1/sql", tag = "project", request_body = SqlRequest,
    params(("ref" = String, Path, description = "Project ref")),
    responses((status = 200, body = SqlResult), (status = 400, body = ApiError),
              (status = 401, body = ApiError), (status = 403, body = ApiError),
              (status = 429, body = ApiError, description = "Too many admin SQL requests running for this project")))]
pub async fn run_sql(
    State(app): State<AppState>,
    admin: ProjectAdmin,
    AppJson(req): AppJson<SqlRequest>,
) -> ApiResult<Json<Value>> {
    let timeout_ms = req.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(ApiError::bad_request(
            "invalid_timeout",
            format!("timeout_ms must be between 1 and {MAX_TIMEOUT_MS}."),
        ));
    }
    let max_rows = req.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
    if !(1..=MAX_MAX_ROWS).contains(&max_rows) {
        return Err(ApiError::bad_request(
            "invalid_max_rows",
            format!("max_rows must be between 1 and {MAX_MAX_ROWS}."),
        ));
    }
    let project_ref = admin.tenant.project.project_ref.clone();
    let statements = match guard::check(&req.query) {
        Ok(s) => s,
        Err(e) => {
            let refused = matches!(e, GuardError::Refused { .. });
            if refused {
                app.platform
                    .audit(
                        &admin.actor,
                        "sql.refused",
                        &project_ref,
                        json!({ "reason": e.to_string(), "query": clip(&req.query) }),
                    )
                    .await;
            }
            return Err(guard_error(e));
        }
    };
    if req.explain && statements.iter().any(|s| s.no_transaction) {
        return Err(ApiError::bad_request(
            "invalid_explain",
            "EXPLAIN cannot be used with statements that run outside a transaction (VACUUM, CONCURRENTLY).",
        ));
    }
    if statements.len() > 1 && statements.iter().any(|s| s.no_transaction) {
        return Err(ApiError::bad_request(
            "sql_refused",
            "VACUUM and … CONCURRENTLY statements must be sent alone.",
        ));
    }
    let params: Vec<TextParam> = req.params.iter().map(text_param).collect();

    let Some(_permit) = app.throttles.admin_sql(admin.tenant.project.id) else {
        let mut e = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "Too many admin SQL requests are running for this project; retry when one has finished.",
        );
        e.retry_after = Some(1);
        return Err(e);
    };
    let mut client = crate::db::connect(&admin.tenant.project.db_config)
        .await
        .map_err(ApiError::from)?;
    client
        .batch_execute(&format!("set statement_timeout = {timeout_ms}"))
        .await?;
    let pid: i32 = client
        .query_one("select pg_backend_pid()", &[])
        .await?
        .get(0);
    let cancel = client.cancel_token();
    let limits = Limits {
        max_rows,
        max_bytes: app.platform.config().admin_sql_max_bytes,
    };
    let work = execute(
        &mut client,
        &statements,
        &params,
        limits,
        req.explain,
        timeout_ms,
    );
    // The server-side timeout cancels the statement; code that traps the
    // cancel (a PL/pgSQL loop catching `query_canceled`) is not stopped by
    // it, so shortly after the deadline the backend is terminated.
    let deadline = Duration::from_millis(timeout_ms + TERMINATE_GRACE_MS);
    let outcome = match tokio::time::timeout(deadline, work).await {
        Ok(r) => r,
        Err(_) => {
            let _ = cancel.cancel_query(NoTls).await;
            terminate(&app, &admin, pid).await;
            Err(timeout_error(timeout_ms))
        }
    };
    // The SQL may have changed users or sessions: `GET /auth/v1/user`
    // answers on this node must not predate it.
    admin.tenant.users.invalidate();
    for s in &statements {
        app.platform
            .audit(
                &admin.actor,
                "sql.execute",
                &project_ref,
                json!({
                    "statement": clip(&s.text),
                    "command": s.command,
                    "explain": req.explain,
                    "param_count": params.len(),
                    "ok": outcome.is_ok(),
                }),
            )
            .await;
    }
    let results = outcome?;
    if !req.explain && statements.iter().any(|s| s.is_ddl) {
        app.schema_caches.remove(admin.tenant.project.id);
    }
    let mut values: Vec<Value> = results
        .into_iter()
        .map(|r| serde_json::to_value(r).unwrap_or(Value::Null))
        .collect();
    Ok(Json(if values.len() == 1 {
        values.remove(0)
    } else {
        Value::Array(values)
    }))
}

/// Ends backend `pid` of an admin SQL request that outlived its deadline,
/// from a pooled connection of the same project (the owner may signal its
/// own backends).
async fn terminate(app: &AppState, admin: &ProjectAdmin, pid: i32) {
    let result = async {
        let client = app.project_pool(&admin.tenant).get().await?;
        let done: bool = client
            .query_one("select pg_terminate_backend($1)", &[&pid])
            .await?
            .get(0);
        Ok::<bool, ApiError>(done)
    }
    .await;
    match result {
        Ok(done) => tracing::warn!(
            project = %admin.tenant.project.project_ref,
            pid,
            terminated = done,
            "admin SQL outlived its statement timeout; backend terminated"
        ),
        Err(e) => tracing::warn!(error = %e, pid, "could not terminate an admin SQL backend"),
    }
}

/// About how many bytes `v` takes in the answer.
fn json_len(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::Null => 4,
        other => other.to_string().len(),
    }
}

/// How much of a result is read.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_rows: usize,
    max_bytes: usize,
}

fn clip(s: &str) -> String {
    s.chars().take(2000).collect()
}

fn guard_error(e: GuardError) -> ApiError {
    match e {
        GuardError::Syntax(m) => {
            ApiError::bad_request("42601", m).with_details("The SQL did not parse.")
        }
        GuardError::Empty => ApiError::bad_request("sql_empty", "The query has no statement."),
        GuardError::Refused { index, reason } => ApiError::bad_request(
            "sql_refused",
            format!("Statement {} was refused: {reason}.", index + 1),
        )
        .with_hint("Admin SQL may change only this project's own schemas and data."),
    }
}

fn timeout_error(timeout_ms: u64) -> ApiError {
    ApiError::bad_request(
        "statement_timeout",
        format!("The statement was cancelled after the statement timeout of {timeout_ms} ms."),
    )
    .with_hint(format!(
        "Send a larger timeout_ms (at most {MAX_TIMEOUT_MS}) or make the query faster."
    ))
}

/// A Postgres error in statement `index` → 400 with its SQLSTATE.
fn pg_error(e: tokio_postgres::Error, index: usize, timeout_ms: u64) -> ApiError {
    let Some(db) = e.as_db_error() else {
        return ApiError::from(e);
    };
    if crate::db::is_connection_error(&e) {
        return ApiError::from(e);
    }
    let code = db.code().code();
    if code == "57014" {
        return timeout_error(timeout_ms);
    }
    let mut details = format!("Statement {}", index + 1);
    if let Some(tokio_postgres::error::ErrorPosition::Original(p)) = db.position() {
        details.push_str(&format!(", position {p}"));
    }
    if let Some(d) = db.detail() {
        details.push_str(&format!(": {d}"));
    }
    let mut err = ApiError::bad_request(code, db.message()).with_details(details);
    if let Some(h) = db.hint() {
        err = err.with_hint(h);
    }
    err
}

async fn execute(
    client: &mut tokio_postgres::Client,
    statements: &[Statement],
    params: &[TextParam],
    limits: Limits,
    explain: bool,
    timeout_ms: u64,
) -> ApiResult<Vec<SqlResult>> {
    if let [only] = statements
        && only.no_transaction
    {
        let n = client
            .execute(only.text.as_str(), &[])
            .await
            .map_err(|e| pg_error(e, 0, timeout_ms))?;
        return Ok(vec![SqlResult {
            columns: vec![],
            rows: vec![],
            row_count: n,
            truncated: false,
            command: only.command.clone(),
        }]);
    }
    let tx = client.transaction().await?;
    let mut results = Vec::with_capacity(statements.len());
    for (index, s) in statements.iter().enumerate() {
        let r = run_one(&tx, s, params, limits, explain)
            .await
            .map_err(|e| match e {
                RunError::Pg(e) => pg_error(e, index, timeout_ms),
                RunError::Api(e) => e,
            })?;
        results.push(r);
    }
    if explain {
        tx.rollback().await?;
    } else {
        tx.commit()
            .await
            .map_err(|e| pg_error(e, statements.len() - 1, timeout_ms))?;
    }
    Ok(results)
}

enum RunError {
    Pg(tokio_postgres::Error),
    Api(ApiError),
}

impl From<tokio_postgres::Error> for RunError {
    fn from(e: tokio_postgres::Error) -> Self {
        RunError::Pg(e)
    }
}

async fn run_one(
    tx: &Transaction<'_>,
    s: &Statement,
    params: &[TextParam],
    limits: Limits,
    explain: bool,
) -> Result<SqlResult, RunError> {
    let max_rows = limits.max_rows;
    let text = if explain {
        format!("EXPLAIN (ANALYZE, FORMAT JSON) {}", s.text)
    } else {
        s.text.clone()
    };
    let prepared = tx.prepare(&text).await?;
    let wanted = prepared.params().len();
    if wanted > params.len() {
        return Err(RunError::Api(ApiError::bad_request(
            "sql_params",
            format!(
                "The statement uses ${wanted} but {} parameter(s) were given.",
                params.len()
            ),
        )));
    }
    let args: Vec<&(dyn ToSql + Sync)> = params[..wanted]
        .iter()
        .map(|p| p as &(dyn ToSql + Sync))
        .collect();
    let command = if explain {
        "EXPLAIN".to_owned()
    } else {
        s.command.clone()
    };
    let columns: Vec<SqlColumn> = prepared
        .columns()
        .iter()
        .map(|c| SqlColumn {
            name: c.name().to_owned(),
            pg_type: c.type_().name().to_owned(),
        })
        .collect();
    if columns.is_empty() {
        let n = tx.execute(&prepared, &args).await?;
        return Ok(SqlResult {
            columns,
            rows: vec![],
            row_count: n,
            truncated: false,
            command,
        });
    }
    let mut rows = Vec::new();
    let mut bytes = 0usize;
    let mut truncated = false;
    if s.wrappable && !explain {
        // Postgres converts every value to JSON (numeric as text, to stay exact).
        let n = columns.len();
        let aliases: Vec<String> = (1..=n).map(|i| format!("c{i}")).collect();
        let select: Vec<String> = prepared
            .columns()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if *c.type_() == Type::NUMERIC {
                    format!("_fb_r.c{}::text", i + 1)
                } else {
                    format!("to_json(_fb_r.c{})::text", i + 1)
                }
            })
            .collect();
        let wrapped = format!(
            "with _fb_r({}) as (\n{}\n) select {} from _fb_r",
            aliases.join(", "),
            s.text,
            select.join(", ")
        );
        // Belt and braces: the wrapper must still be one checked statement.
        if !matches!(guard::check(&wrapped).as_deref(), Ok([_])) {
            return Err(RunError::Api(ApiError::bad_request(
                "sql_refused",
                "The statement could not be run safely.",
            )));
        }
        let stmt = tx.prepare(&wrapped).await?;
        let portal = tx.bind(&stmt, &args).await?;
        let limit = i32::try_from(max_rows + 1).unwrap_or(i32::MAX);
        // Streamed: rows are counted (and their bytes) as they arrive.
        let stream = tx.query_portal_raw(&portal, limit).await?;
        futures_util::pin_mut!(stream);
        while let Some(row) = stream.try_next().await? {
            if rows.len() >= max_rows {
                truncated = true;
                break;
            }
            let mut obj = Map::new();
            for (i, col) in columns.iter().enumerate() {
                let text: Option<String> = row.try_get(i)?;
                bytes += text.as_ref().map_or(4, String::len) + col.name.len();
                let value = match text {
                    None => Value::Null,
                    Some(t) if prepared.columns()[i].type_() == &Type::NUMERIC => Value::String(t),
                    Some(t) => serde_json::from_str(&t).unwrap_or(Value::String(t)),
                };
                obj.insert(col.name.clone(), value);
            }
            if bytes > limits.max_bytes {
                truncated = true;
                break;
            }
            rows.push(obj);
        }
    } else {
        // FETCH, EXECUTE, SHOW, EXPLAIN: streamed too, never read whole.
        let stream = tx.query_raw(&prepared, args.iter().copied()).await?;
        futures_util::pin_mut!(stream);
        while let Some(row) = stream.try_next().await? {
            if rows.len() >= max_rows {
                truncated = true;
                break;
            }
            let mut obj = Map::new();
            for (i, col) in columns.iter().enumerate() {
                let AnyValue(v) = row.try_get(i)?;
                bytes += json_len(&v) + col.name.len();
                obj.insert(col.name.clone(), v);
            }
            if bytes > limits.max_bytes {
                truncated = true;
                break;
            }
            rows.push(obj);
        }
    }
    Ok(SqlResult {
        columns,
        row_count: rows.len() as u64,
        rows,
        truncated,
        command,
    })
}
