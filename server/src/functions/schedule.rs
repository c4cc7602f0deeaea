//! Cron schedules that invoke functions, run exactly once per tick across
//! all nodes.
//!
//! Every node runs [`run_scheduler`]. Each pass claims due schedules in one
//! control-plane transaction: `select … for update skip locked` (a schedule
//! is handled by one node at a time), inserts the tick into
//! `function_schedule_runs` (its primary key `(schedule_id, tick_at)` is the
//! lease: a tick can be recorded only once, ever) and moves `next_run_at` to
//! the next occurrence after now (missed ticks are not replayed). After
//! commit, the claimed ticks are invoked (`POST` with the schedule's JSON
//! body, as the project's service role) and the run row gets the status or
//! the error. Cron parsing and the claim transaction are shared with backup
//! schedules ([`crate::db::cron`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use chrono::{DateTime, Utc};
use croner::Cron;
use http_body_util::BodyExt as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::FunctionsError;
use super::bundle::Slug;
use super::invoke::{Invocation, dispatch};
use super::runtime::RequestBody;
use crate::platform::Platform;
use crate::state::AppState;

/// Most schedules claimed per pass.
const CLAIM_BATCH: i64 = 100;
/// Largest `body`, in bytes of JSON.
const MAX_BODY: usize = 64 * 1024;

/// Body of schedule create/update.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ScheduleRequest {
    /// Name, unique per function (create only; `[a-z0-9][a-z0-9_-]*`).
    #[serde(default)]
    pub name: Option<String>,
    /// Cron expression, 5 fields (minute precision) or 6 (with seconds), UTC.
    pub cron: String,
    /// JSON sent as the request body.
    #[serde(default)]
    pub body: Option<Value>,
    /// Paused when false (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A schedule as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ScheduleInfo {
    /// Name.
    pub name: String,
    /// Cron expression.
    pub cron: String,
    /// JSON body sent.
    pub body: Option<Value>,
    /// Whether it runs.
    pub enabled: bool,
    /// Next tick.
    pub next_run_at: DateTime<Utc>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// One tick of a schedule.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunInfo {
    /// The tick this run is for.
    pub tick_at: DateTime<Utc>,
    /// The node that ran it.
    pub node: String,
    /// HTTP status of the invocation (null while running or when it failed to start).
    pub status: Option<i32>,
    /// Error code or message, if it failed.
    pub error: Option<String>,
    /// The invocation (see `/logs?invocation_id=`).
    pub invocation_id: Option<Uuid>,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End.
    pub finished_at: Option<DateTime<Utc>>,
}

fn parse_cron(expr: &str) -> Result<Cron, FunctionsError> {
    crate::db::cron::parse(expr).map_err(FunctionsError::Invalid)
}

fn next_after(cron: &Cron, t: DateTime<Utc>) -> Result<DateTime<Utc>, FunctionsError> {
    crate::db::cron::next_after(cron, t).map_err(FunctionsError::Invalid)
}

fn check_name(name: &str) -> Result<(), FunctionsError> {
    Slug::parse(name).map(|_| ()).map_err(|_| {
        FunctionsError::Invalid(format!(
            "{:?} is not a valid schedule name: use 1-63 lowercase letters, digits, '_' or '-'.",
            name.chars().take(80).collect::<String>()
        ))
    })
}

fn check_body(body: Option<&Value>) -> Result<(), FunctionsError> {
    if body.is_some_and(|b| b.to_string().len() > MAX_BODY) {
        return Err(FunctionsError::Invalid(format!(
            "The schedule body is larger than {MAX_BODY} bytes."
        )));
    }
    if body.is_some_and(has_nul) {
        return Err(FunctionsError::Invalid(
            "The schedule body contains a NUL character (\\u0000), which cannot be stored.".into(),
        ));
    }
    Ok(())
}

/// Whether a string or key in `v` holds a NUL (which `jsonb` refuses).
fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn info_from_row(r: &tokio_postgres::Row) -> ScheduleInfo {
    ScheduleInfo {
        name: r.get("name"),
        cron: r.get("cron"),
        body: r.get("body"),
        enabled: r.get("enabled"),
        next_run_at: r.get("next_run_at"),
        created_at: r.get("created_at"),
    }
}

const SCHEDULE_COLUMNS: &str = "s.name, s.cron, s.body, s.enabled, s.next_run_at, s.created_at";

/// Schedules of one function.
pub async fn list(
    platform: &Platform,
    project_id: Uuid,
    slug: &Slug,
) -> Result<Vec<ScheduleInfo>, FunctionsError> {
    let client = platform.control().get().await?;
    let f = function_id(&client, project_id, slug).await?;
    let rows = client
        .query(
            &format!("select {SCHEDULE_COLUMNS} from function_schedules s where s.function_id = $1 order by s.name"),
            &[&f],
        )
        .await?;
    Ok(rows.iter().map(info_from_row).collect())
}

async fn function_id(
    client: &deadpool_postgres::Client,
    project_id: Uuid,
    slug: &Slug,
) -> Result<Uuid, FunctionsError> {
    Ok(client
        .query_opt(
            "select id from functions where project_id = $1 and slug = $2",
            &[&project_id, &slug.as_str()],
        )
        .await?
        .ok_or_else(|| {
            FunctionsError::NotFound(format!("No function {:?} in this project.", slug.as_str()))
        })?
        .get(0))
}

/// Creates a schedule.
pub async fn create(
    platform: &Platform,
    project_id: Uuid,
    slug: &Slug,
    req: &ScheduleRequest,
) -> Result<ScheduleInfo, FunctionsError> {
    let name = req
        .name
        .as_deref()
        .ok_or_else(|| FunctionsError::Invalid("A schedule needs a `name`.".into()))?;
    check_name(name)?;
    check_body(req.body.as_ref())?;
    let cron = parse_cron(&req.cron)?;
    let next = next_after(&cron, Utc::now())?;
    let client = platform.control().get().await?;
    let f = function_id(&client, project_id, slug).await?;
    let row = client
        .query_opt(
            &format!(
                "insert into function_schedules as s (project_id, function_id, name, cron, body, enabled, next_run_at) \
                 values ($1, $2, $3, $4, $5, coalesce($6, true), $7) on conflict (function_id, name) do nothing \
                 returning {SCHEDULE_COLUMNS}"
            ),
            &[&project_id, &f, &name, &req.cron.trim(), &req.body, &req.enabled, &next],
        )
        .await?
        .ok_or_else(|| FunctionsError::Conflict(format!("A schedule named {name:?} already exists.")))?;
    Ok(info_from_row(&row))
}

/// Replaces a schedule's cron, body and enabled flag.
pub async fn update(
    platform: &Platform,
    project_id: Uuid,
    slug: &Slug,
    name: &str,
    req: &ScheduleRequest,
) -> Result<ScheduleInfo, FunctionsError> {
    check_name(name)?;
    check_body(req.body.as_ref())?;
    let cron = parse_cron(&req.cron)?;
    let next = next_after(&cron, Utc::now())?;
    let client = platform.control().get().await?;
    let f = function_id(&client, project_id, slug).await?;
    let row = client
        .query_opt(
            &format!(
                "update function_schedules s set cron = $3, body = $4, enabled = coalesce($5, enabled), next_run_at = $6 \
                 where s.function_id = $1 and s.name = $2 returning {SCHEDULE_COLUMNS}"
            ),
            &[&f, &name, &req.cron.trim(), &req.body, &req.enabled, &next],
        )
        .await?
        .ok_or_else(|| FunctionsError::NotFound(format!("No schedule named {name:?}.")))?;
    Ok(info_from_row(&row))
}

/// Deletes a schedule and its history.
pub async fn delete(
    platform: &Platform,
    project_id: Uuid,
    slug: &Slug,
    name: &str,
) -> Result<(), FunctionsError> {
    check_name(name)?;
    let client = platform.control().get().await?;
    let f = function_id(&client, project_id, slug).await?;
    let n = client
        .execute(
            "delete from function_schedules where function_id = $1 and name = $2",
            &[&f, &name],
        )
        .await?;
    if n == 0 {
        return Err(FunctionsError::NotFound(format!(
            "No schedule named {name:?}."
        )));
    }
    Ok(())
}

/// The last 100 runs of a schedule, newest first.
pub async fn runs(
    platform: &Platform,
    project_id: Uuid,
    slug: &Slug,
    name: &str,
) -> Result<Vec<RunInfo>, FunctionsError> {
    check_name(name)?;
    let client = platform.control().get().await?;
    let f = function_id(&client, project_id, slug).await?;
    let exists = client
        .query_opt(
            "select 1 from function_schedules where function_id = $1 and name = $2",
            &[&f, &name],
        )
        .await?;
    if exists.is_none() {
        return Err(FunctionsError::NotFound(format!(
            "No schedule named {name:?}."
        )));
    }
    let rows = client
        .query(
            "select r.tick_at, r.node, r.status, r.error, r.invocation_id, r.started_at, r.finished_at \
             from function_schedule_runs r join function_schedules s on s.id = r.schedule_id \
             where s.function_id = $1 and s.name = $2 order by r.tick_at desc limit 100",
            &[&f, &name],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| RunInfo {
            tick_at: r.get(0),
            node: r.get(1),
            status: r.get(2),
            error: r.get(3),
            invocation_id: r.get(4),
            started_at: r.get(5),
            finished_at: r.get(6),
        })
        .collect())
}

/// A tick claimed by this node.
struct Claimed {
    schedule_id: Uuid,
    tick_at: DateTime<Utc>,
    project_id: Uuid,
    project_ref: String,
    slug: String,
    body: Option<Value>,
}

/// Claims the due ticks (see the module docs and [`crate::db::cron`]).
async fn claim(platform: &Platform, node: &str) -> Result<Vec<Claimed>, FunctionsError> {
    let mut client = platform.control().get().await?;
    let won = crate::db::cron::claim_due(
        &mut client,
        crate::db::cron::Tables {
            schedules: "function_schedules",
            runs: "function_schedule_runs",
        },
        "select s.id, s.cron, s.next_run_at, s.body, s.project_id, p.ref, f.slug \
         from function_schedules s join functions f on f.id = s.function_id \
         join projects p on p.id = s.project_id \
         where s.enabled and s.next_run_at <= now() and p.status = 'ready' \
         order by s.next_run_at limit $1 for update of s skip locked",
        CLAIM_BATCH,
        node,
    )
    .await?;
    Ok(won
        .iter()
        .map(|row| Claimed {
            schedule_id: row.get(0),
            tick_at: row.get(2),
            project_id: row.get(4),
            project_ref: row.get(5),
            slug: row.get(6),
            body: row.get(3),
        })
        .collect())
}

/// Invokes one claimed tick and records the outcome.
async fn run_tick(app: AppState, tick: Claimed) {
    let outcome = invoke_tick(&app, &tick).await;
    let (status, error, invocation) = match outcome {
        Ok((status, invocation, error)) => (Some(status), error, invocation),
        Err(e) => (None, Some(e), None),
    };
    // It quotes the function's answer, which may hold a NUL.
    let error = error.map(super::logs::storable);
    let result = async {
        let client = app.platform.control().get().await?;
        client
            .execute(
                "update function_schedule_runs set status = $3, error = $4, invocation_id = $5, finished_at = now() \
                 where schedule_id = $1 and tick_at = $2",
                &[&tick.schedule_id, &tick.tick_at, &status, &error, &invocation],
            )
            .await?;
        Ok::<_, FunctionsError>(())
    }
    .await;
    if let Err(error) = result {
        tracing::warn!(%error, "could not record a schedule run");
    }
}

async fn invoke_tick(
    app: &AppState,
    tick: &Claimed,
) -> Result<(i32, Option<Uuid>, Option<String>), String> {
    let slug = Slug::parse(&tick.slug).map_err(|e| e.to_string())?;
    let tenant = app
        .projects
        .get(app, &tick.project_ref)
        .await
        .map_err(|e| e.message.clone())?
        .ok_or("the project is gone")?;
    let d = app
        .functions
        .deployment(tick.project_id, &tick.project_ref, &slug)
        .await
        .map_err(|e| e.to_string())?;
    let key = d
        .env
        .iter()
        .find(|(k, _)| k == "FERROBASE_SERVICE_ROLE_KEY")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {key}")) {
        headers.insert(header::AUTHORIZATION, v);
    }
    let claims = crate::tenant::authenticate(&tenant, &headers)
        .ok()
        .map(|c| c.claims);
    let body = tick
        .body
        .as_ref()
        .map(Value::to_string)
        .unwrap_or_else(|| "{}".to_owned());
    let target = format!("/{}", slug.as_str());
    let resp = dispatch(
        &app.functions,
        d,
        Method::POST,
        &target,
        headers,
        RequestBody::new(Body::from(body), MAX_BODY),
        Invocation {
            trigger: "schedule",
            request_id: None,
            claims,
            proto: "http",
        },
    )
    .await;
    let status = i32::from(resp.status().as_u16());
    let invocation = resp
        .headers()
        .get("x-ferrobase-invocation-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok());
    // Drain the body so the invocation completes (and is recorded).
    let collected = resp.into_body().collect().await;
    let error = match (status, collected) {
        (_, Err(e)) => Some(format!("the response body failed: {e}")),
        (s, Ok(body)) if s >= 400 => {
            let text = String::from_utf8_lossy(&body.to_bytes())
                .chars()
                .take(500)
                .collect::<String>();
            Some(format!("status {s}: {text}"))
        }
        _ => None,
    };
    Ok((status, invocation, error))
}

/// The scheduler loop of one node (spawned by [`crate::app::serve`]).
pub async fn run_scheduler(app: AppState) {
    let interval = Duration::from_millis(
        app.platform
            .config()
            .functions
            .functions_schedule_interval_ms
            .max(50),
    );
    let node: Arc<str> = format!("{}-{}", std::process::id(), crate::crypto::random_hex(4)).into();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match claim(&app.platform, &node).await {
            Ok(claimed) => {
                for t in claimed {
                    tokio::spawn(run_tick(app.clone(), t));
                }
            }
            Err(error) => tracing::debug!(%error, "schedule pass failed"),
        }
    }
}
