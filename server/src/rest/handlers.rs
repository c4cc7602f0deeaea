//! HTTP glue of the data API: mounts [`crate::rest`] at `/p/{ref}/rest/v1`,
//! runs each request in a role-switched transaction, and keeps one schema
//! cache per project.
//!
//! The schema cache is loaded on first use and tagged with the project's
//! schema version, a counter that an event trigger bumps on every DDL
//! statement. The statement opening each request's transaction also reads the
//! version; it travels in the same round trip as the request's first
//! statement (see [`PooledTx`]), so the check is optimistic: when the version
//! moved, the transaction is rolled back and the request replayed with a
//! reloaded cache. A change made through any path, on any node, is thus
//! picked up by the next request at no extra round trip. Where the trigger cannot be
//! installed (no superuser), a request that names something the cache does
//! not know reloads the cache and is retried once. One request per project
//! loads at a time ([`SingleFlight`]); those that found the cache wanting
//! meanwhile take its result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use uuid::Uuid;

use crate::db::PooledTx;
use crate::error::{ApiError, body_rejection};
use crate::rest::{RestError, RestRequest, SchemaCache, execute};
use crate::state::AppState;
use crate::tenant::{ProjectCtx, SharedCaller, Verified};
use crate::throttle::SingleFlight;

/// Minimum age of a cache before a miss may reload it (bounds reload storms
/// caused by requests for tables that really do not exist).
const MIN_RELOAD_INTERVAL: Duration = Duration::from_millis(500);

/// A loaded cache, the schema version it reflects, and when it was loaded.
/// Shared: every request takes an `Arc` of it, never a copy.
struct Entry {
    cache: Arc<SchemaCache>,
    version: i64,
    schemas: Vec<String>,
    loaded_at: Instant,
}

/// Schema caches by project id.
#[derive(Default)]
pub struct SchemaCaches {
    caches: Mutex<HashMap<Uuid, Arc<Entry>>>,
    /// One load per project at a time: after a schema change, or on a
    /// project's first requests, every request in flight finds the cache
    /// wanting at once; one introspects and the others wait for its result
    /// instead of each running the same catalog queries.
    loading: SingleFlight<Uuid>,
}

impl SchemaCaches {
    fn get(&self, id: Uuid) -> Option<Arc<Entry>> {
        self.caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }

    fn put(&self, id: Uuid, entry: Arc<Entry>) {
        self.caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, entry);
    }

    /// Forgets a project's cache (after delete).
    pub fn remove(&self, id: Uuid) {
        self.caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// Routes of the data API, relative to a project.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/rest/v1", any(handle))
        .route("/rest/v1/", any(handle))
        .route("/rest/v1/{*path}", any(handle))
}

/// Whether `e` may come from a stale schema cache.
fn is_cache_miss(e: &RestError) -> bool {
    matches!(
        e.code.as_str(),
        "PGRST200" | "PGRST202" | "PGRST204" | "PGRST205" | "42P01" | "42703" | "42883"
    )
}

fn rest_error(e: RestError, caller: &Verified) -> Response {
    let e = e.for_role(caller.role == "anon");
    if e.status.is_server_error() && e.status != axum::http::StatusCode::SERVICE_UNAVAILABLE {
        tracing::error!(code = %e.code, message = %e.message, "data API error");
    }
    let mut resp = (e.status, axum::Json(e.to_json())).into_response();
    if e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(1),
        );
    }
    resp
}

async fn handle(
    State(app): State<AppState>,
    ProjectCtx(tenant): ProjectCtx,
    SharedCaller(caller): SharedCaller,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_rejection(e.status(), e.body_text()).into_response(),
    };
    // Nesting has stripped `/p/{ref}`: the path is `/rest/v1/…`.
    let path = uri
        .path()
        .strip_prefix("/rest/v1")
        .unwrap_or_default()
        .trim_start_matches('/')
        .to_owned();
    let plan_allowed = app
        .platform
        .config()
        .rest_plan_roles
        .split(',')
        .any(|r| r.trim() == caller.role);
    let request = RestRequest {
        method,
        path,
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body,
        plan_allowed,
    };
    match run(&app, &tenant, &caller, request).await {
        Ok(resp) => resp,
        Err(Failure::Rest(e)) => rest_error(e, &caller),
        Err(Failure::Api(e)) => e.into_response(),
    }
}

enum Failure {
    Rest(RestError),
    Api(ApiError),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e)
    }
}

impl From<RestError> for Failure {
    fn from(e: RestError) -> Self {
        Failure::Rest(e)
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Self {
        Failure::Api(e.into())
    }
}

/// The project's schema cache at `version` or later: loaded here, unless
/// another request loaded one while this one waited its turn. `wanting` is
/// the entry this request found unusable (stale, for other schemas, or
/// missing a name); only a different one is taken.
async fn load(
    app: &AppState,
    client: &tokio_postgres::Client,
    id: Uuid,
    schemas: &[String],
    version: i64,
    wanting: Option<&Arc<Entry>>,
) -> Result<Arc<Entry>, Failure> {
    let _flight = app.schema_caches.loading.begin(&id).await;
    if let Some(e) = app.schema_caches.get(id) {
        let other = wanting.is_none_or(|w| !Arc::ptr_eq(w, &e));
        if other && e.schemas == schemas && e.version >= version {
            return Ok(e);
        }
    }
    metrics::counter!("ferrobase_rest_schema_loads_total").increment(1);
    let entry = Arc::new(Entry {
        cache: Arc::new(SchemaCache::load(client, schemas).await?),
        version,
        schemas: schemas.to_vec(),
        loaded_at: Instant::now(),
    });
    app.schema_caches.put(id, entry.clone());
    Ok(entry)
}

/// How many times a request is replayed because the schema changed under it
/// before it gives up (each replay reloads the cache; more than one means DDL
/// is arriving faster than requests complete).
const MAX_STALE_REPLAYS: usize = 3;

/// The project's schema version, read as the connection's own role.
async fn schema_version(conn: &deadpool_postgres::Object) -> Result<i64, Failure> {
    let stmt = conn
        .prepare_cached("select _ferrobase.schema_version()")
        .await?;
    let row = conn.query_one(&stmt, &[]).await?;
    Ok(row.try_get::<_, Option<i64>>(0)?.unwrap_or(-1))
}

async fn run(
    app: &AppState,
    tenant: &crate::tenant::Tenant,
    caller: &Verified,
    request: RestRequest,
) -> Result<Response, Failure> {
    let id = tenant.project.id;
    let schemas = &tenant.project.exposed_schemas;
    let pool = app.project_pool(tenant);
    let mut conn = pool.get().await.map_err(ApiError::from)?;
    let timeout = app.platform.config().statement_timeout_ms;

    let mut entry = app.schema_caches.get(id);
    let mut retried = false;
    let mut replays = 0;
    loop {
        let current = match &entry {
            Some(e) if e.schemas == *schemas => e.clone(),
            _ => {
                // Load as the owner, outside any caller's transaction.
                let version = schema_version(&conn).await?;
                entry = Some(load(app, &conn, id, schemas, version, entry.as_ref()).await?);
                continue;
            }
        };
        // The statements are built for `current.version`; the transaction's
        // prologue, sent with the first of them, reads the actual version.
        let tx = PooledTx::new(
            conn,
            &caller.role,
            caller.claims_json.clone(),
            timeout,
            Some(current.version),
        );
        let result = execute(&tx, &current.cache, schemas, &request).await;
        // A request that ran no statement (OpenAPI, OPTIONS, a bad request)
        // still checks that its cache is current.
        tx.open().await?;
        let version = tx.version().unwrap_or(current.version);
        // A write that committed in its statement's round trip stands (it
        // succeeded against the current schema): replaying it would write twice.
        let read = matches!(request.method, Method::GET | Method::HEAD);
        let committed_write = tx.is_committed() && result.is_ok() && !read;
        if tx.is_stale() && !committed_write && replays < MAX_STALE_REPLAYS {
            // Built against an old schema: undo and replay with a new cache.
            replays += 1;
            conn = tx.rollback().await?;
            tracing::debug!(version, "schema changed; replaying the request");
            entry = Some(load(app, &conn, id, schemas, version, Some(&current)).await?);
            continue;
        }
        match result {
            Ok(outcome) => {
                // Dropping the connection returns it to the pool.
                drop(if outcome.rollback {
                    tx.rollback().await?
                } else {
                    tx.commit().await?
                });
                let r = outcome.response;
                let mut resp = (r.status, r.body).into_response();
                resp.headers_mut().extend(r.headers);
                return Ok(resp);
            }
            Err(e) => {
                conn = tx.rollback().await?;
                let plan_gone =
                    (e.code == "0A000" && e.message.contains("cached plan")) || e.code == "26000";
                if plan_gone && !retried {
                    // "cached plan must not change result type": a prepared
                    // statement outlived a change of what it returns; 26000:
                    // it was deallocated behind our back (a function ran
                    // DEALLOCATE). Prepare afresh and try once more.
                    retried = true;
                    conn.statement_cache.clear();
                    continue;
                }
                let stale = is_cache_miss(&e) && current.loaded_at.elapsed() >= MIN_RELOAD_INTERVAL;
                if retried || !stale {
                    return Err(e.into());
                }
                retried = true;
                tracing::debug!(code = %e.code, "schema cache miss; reloading");
                entry = Some(load(app, &conn, id, schemas, version, Some(&current)).await?);
            }
        }
    }
}
